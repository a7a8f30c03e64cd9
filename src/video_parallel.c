/* video_parallel.c: sampling an H.264 file on several decoders at once.
 *
 * One decoder is a chain: every reference frame waits for the one before,
 * so frame threads keep about 1.2 of 2 cores busy (measured: a 10-minute
 * 640x360 clip at 3 fps). The file splits into segments at IDR frames (no
 * frame reads across an IDR, see segment_assign in video.c); decoder w of n,
 * a Video of its own on its own thread, reads every packet but decodes only
 * the segments s with s % n == w. It passes on, in a bounded queue, only the
 * frames the sampler could choose: a frame whose successor rounds to the same
 * instant is never chosen (the rule of packet_skippable), so at 30 -> 3 fps
 * about one frame in ten crosses. video_sample_next takes the frames segment
 * by segment, in order, and runs vf_fps on them as before: the output is the
 * one decoder's, frame for frame and bit for bit.
 *
 * When a decoder meets a file that breaks a premise (see video_segment_next),
 * or a segment does not start after the previous one ends, parallel_next
 * says SEG_UNSAFE and the caller falls back to its own single decoder. */
#include <pthread.h>
#include <stdlib.h>

#include "video_private.h"

enum {
    MAX_WORKERS = 8,
    QUEUE_ITEMS = 64,   /* per decoder at most; at 30 -> 3 fps 2.5 segments of 250 frames */
    QUEUE_MIN_ITEMS = 8,
};
/* Decoded frames a decoder may hold in its queue, in bytes (yuv420p): all
 * 64 for 640x360, 21 for 1080p, 8 (96 MiB) for 4K. */
#define QUEUE_BYTES (64.0 * 1024 * 1024)

typedef enum ItemKind { ITEM_START, ITEM_FRAME, ITEM_END, ITEM_EOF, ITEM_UNSAFE } ItemKind;

typedef struct Item {
    ItemKind kind;
    int64_t seg;
    AVFrame *frame;      /* ITEM_FRAME */
    int64_t end_av;      /* ITEM_FRAME: the end of the frame */
    int64_t pts;         /* ITEM_START: the segment's first pts; ITEM_END: its last */
} Item;

typedef struct Worker {
    Parallel *par;
    Video *v;
    pthread_t thread;
    int started;
    Item items[QUEUE_ITEMS];
    int head, len, cap;
    int64_t decoded, skipped;   /* v's counts, published under the lock */
} Worker;

struct Parallel {
    int n;
    Worker w[MAX_WORKERS];
    pthread_mutex_t lock;
    pthread_cond_t changed;      /* an item was pushed or popped, or stop was set */
    int stop;
    int64_t seg;                 /* the segment the caller reads */
    int64_t last_pts;            /* the last frame of the segments read */
    int done;                    /* the end was reached: no decoder is left */
};

/* Queues an item; waits while the queue is full. 0, or -1 when stopping
 * (the item's frame is then freed). */
static int push(Worker *w, Item it) {
    Parallel *P = w->par;
    pthread_mutex_lock(&P->lock);
    while (!P->stop && w->len >= w->cap) pthread_cond_wait(&P->changed, &P->lock);
    int ok = !P->stop;
    if (ok) {
        w->items[(w->head + w->len) % QUEUE_ITEMS] = it;
        w->len++;
        w->decoded = w->v->frames_decoded;
        w->skipped = w->v->frames_skipped;
        pthread_cond_broadcast(&P->changed);
    }
    pthread_mutex_unlock(&P->lock);
    if (!ok) av_frame_free(&it.frame);
    return ok ? 0 : -1;
}

static int64_t instant(const Video *v, int64_t pts) {
    return av_rescale_q_rnd(pts, v->tb, v->out_tb, AV_ROUND_NEAR_INF | AV_ROUND_PASS_MINMAX);
}

static void *worker_main(void *arg) {
    Worker *w = arg;
    Video *v = w->v;
    AVFrame *pending = NULL;   /* the latest frame, passed on once its successor is known */
    int64_t pending_end = 0, seg = -1;
    int started = 0;
    for (;;) {
        int r = video_segment_next(v, &seg);
        if (r == SEG_FRAME) {
            AVFrame *f = av_frame_alloc();
            if (!f) r = SEG_UNSAFE;
            else av_frame_move_ref(f, v->frame);
            if (f && !started) {
                started = 1;
                if (push(w, (Item){.kind = ITEM_START, .seg = seg, .pts = f->pts}) < 0) {
                    av_frame_free(&f);
                    break;
                }
            }
            if (f && pending) {
                if (f->pts > pending->pts && instant(v, f->pts) == instant(v, pending->pts)) {
                    av_frame_free(&pending);   /* never chosen */
                } else if (push(w, (Item){.kind = ITEM_FRAME, .seg = seg, .frame = pending, .end_av = pending_end}) < 0) {
                    pending = NULL;
                    av_frame_free(&f);
                    break;
                }
            }
            if (f) {
                pending = f;
                pending_end = v->next_pts_av;
                continue;
            }
        }
        if (r == SEG_END) {
            int64_t last = pending ? pending->pts : AV_NOPTS_VALUE;
            if (pending && push(w, (Item){.kind = ITEM_FRAME, .seg = seg, .frame = pending, .end_av = pending_end}) < 0) {
                pending = NULL;
                break;
            }
            pending = NULL;
            started = 0;
            if (push(w, (Item){.kind = ITEM_END, .seg = seg, .pts = last}) < 0) break;
            continue;
        }
        push(w, (Item){.kind = r == SEG_EOF ? ITEM_EOF : ITEM_UNSAFE});
        break;
    }
    av_frame_free(&pending);
    return NULL;
}

static void parallel_free(Parallel *P) {
    pthread_mutex_lock(&P->lock);
    P->stop = 1;
    pthread_cond_broadcast(&P->changed);
    pthread_mutex_unlock(&P->lock);
    for (int i = 0; i < P->n; i++) {
        Worker *w = &P->w[i];
        if (w->started) pthread_join(w->thread, NULL);
        for (int k = 0; k < w->len; k++) av_frame_free(&w->items[(w->head + k) % QUEUE_ITEMS].frame);
        video_close(w->v);
    }
    pthread_cond_destroy(&P->changed);
    pthread_mutex_destroy(&P->lock);
    free(P);
}

int parallel_start(Video *v, int workers) {
    if (workers > MAX_WORKERS) workers = MAX_WORKERS;
    Parallel *P = calloc(1, sizeof *P);
    if (!P) return -1;
    if (pthread_mutex_init(&P->lock, NULL) != 0) {
        free(P);
        return -1;
    }
    if (pthread_cond_init(&P->changed, NULL) != 0) {
        pthread_mutex_destroy(&P->lock);
        free(P);
        return -1;
    }
    P->last_pts = AV_NOPTS_VALUE;
    double frame_bytes = 1.5 * v->info.width * v->info.height;
    int cap = frame_bytes > 0 ? (int)(QUEUE_BYTES / frame_bytes) : QUEUE_ITEMS;
    cap = cap < QUEUE_MIN_ITEMS ? QUEUE_MIN_ITEMS : cap > QUEUE_ITEMS ? QUEUE_ITEMS : cap;
    char err[VIDEO_ERR_LEN];
    for (int i = 0; i < workers; i++) {
        Worker *w = &P->w[i];
        w->par = P;
        w->cap = cap;
        w->v = video_open_threads(v->path, 1, err, sizeof err);
        P->n = i + 1;
        if (!w->v) {
            parallel_free(P);
            return -1;
        }
        video_segment_mode(w->v, i, workers, v->out_tb);
    }
    for (int i = 0; i < workers; i++) {
        Worker *w = &P->w[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            parallel_free(P);
            return -1;
        }
        w->started = 1;
    }
    v->par = P;
    return 0;
}

void parallel_stop(Video *v) {
    if (!v->par) return;
    int64_t decoded, skipped;
    parallel_stats(v, &decoded, &skipped);
    v->frames_decoded += decoded;
    v->frames_skipped += skipped;
    parallel_free(v->par);
    v->par = NULL;
}

void parallel_stats(const Video *v, int64_t *decoded, int64_t *skipped) {
    *decoded = *skipped = 0;
    Parallel *P = v->par;
    if (!P) return;
    pthread_mutex_lock(&P->lock);
    for (int i = 0; i < P->n; i++) {
        *decoded += P->w[i].decoded;
        *skipped += P->w[i].skipped;
    }
    pthread_mutex_unlock(&P->lock);
}

int parallel_decoders(const Video *v) { return v->par ? v->par->n : 1; }

int parallel_next(Video *v, AVFrame *dst, int64_t *end_av) {
    Parallel *P = v->par;
    if (P->done) return 0;
    for (;;) {
        Worker *w = &P->w[P->seg % P->n];
        pthread_mutex_lock(&P->lock);
        while (w->len == 0) pthread_cond_wait(&P->changed, &P->lock);
        Item it = w->items[w->head];
        w->head = (w->head + 1) % QUEUE_ITEMS;
        w->len--;
        pthread_cond_broadcast(&P->changed);
        pthread_mutex_unlock(&P->lock);
        switch (it.kind) {
        case ITEM_START:
            /* Segments must follow one another on screen. */
            if (it.seg != P->seg || (P->last_pts != AV_NOPTS_VALUE && it.pts <= P->last_pts)) return SEG_UNSAFE;
            break;
        case ITEM_FRAME:
            if (it.seg != P->seg) {
                av_frame_free(&it.frame);
                return SEG_UNSAFE;
            }
            av_frame_unref(dst);
            av_frame_move_ref(dst, it.frame);
            av_frame_free(&it.frame);
            *end_av = it.end_av;
            return 1;
        case ITEM_END:
            if (it.seg != P->seg) return SEG_UNSAFE;
            if (it.pts != AV_NOPTS_VALUE) P->last_pts = it.pts;
            P->seg++;
            break;
        case ITEM_EOF:
            P->done = 1;
            return 0;
        case ITEM_UNSAFE:
            return SEG_UNSAFE;
        }
    }
}

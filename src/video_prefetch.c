/* video_prefetch.c: see video_prefetch.h. One producer, one consumer, a ring
 * of `depth` slots under one mutex and two condition variables. */
#include "video_prefetch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Slot {
    float *data;
    double t;
} Slot;

struct Prefetch {
    Video *v;
    int h, w, depth;
    Slot *slots;
    int head, count;      /* the oldest ready slot; ready slots */
    int done;             /* the producer finished: 1 at the end, -1 on error */
    int stop;             /* the consumer asks the producer to finish */
    int64_t decoded, skipped; /* video_stats after the producer's latest frame */
    char err[VIDEO_ERR_LEN];
    pthread_mutex_t lock;
    pthread_cond_t ready, space;
    pthread_t thread;
};

static void *producer(void *arg) {
    Prefetch *p = arg;
    char err[VIDEO_ERR_LEN];
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (p->count == p->depth && !p->stop) pthread_cond_wait(&p->space, &p->lock);
        int stop = p->stop, tail = (p->head + p->count) % p->depth;
        pthread_mutex_unlock(&p->lock);
        if (stop) break;
        /* the tail slot is the producer's until count covers it */
        double t;
        int r = video_sample_next(p->v, &t, err, sizeof err);
        if (r > 0 && video_frame_to_float(p->v, p->slots[tail].data, p->h, p->w, err, sizeof err) < 0) r = -1;
        pthread_mutex_lock(&p->lock);
        video_stats(p->v, &p->decoded, &p->skipped);
        if (r > 0) {
            p->slots[tail].t = t;
            p->count++;
        } else {
            p->done = r == 0 ? 1 : -1;
            if (r < 0) snprintf(p->err, sizeof p->err, "%s", err);
        }
        pthread_cond_signal(&p->ready);
        pthread_mutex_unlock(&p->lock);
        if (r <= 0) break;
    }
    return NULL;
}

static void prefetch_free(Prefetch *p) {
    if (p->slots)
        for (int i = 0; i < p->depth; i++) free(p->slots[i].data);
    free(p->slots);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->ready);
    pthread_cond_destroy(&p->space);
    free(p);
}

Prefetch *prefetch_start(Video *v, int h, int w, int depth, char *err, size_t errlen) {
    Prefetch *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory for the decoding thread");
        return NULL;
    }
    p->v = v;
    p->h = h;
    p->w = w;
    p->depth = depth < 1 ? 1 : depth;
    video_stats(v, &p->decoded, &p->skipped);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->ready, NULL);
    pthread_cond_init(&p->space, NULL);
    p->slots = calloc((size_t)p->depth, sizeof *p->slots);
    int ok = p->slots != NULL;
    for (int i = 0; ok && i < p->depth; i++) ok = (p->slots[i].data = malloc((size_t)3 * h * w * sizeof(float))) != NULL;
    if (!ok) {
        snprintf(err, errlen, "out of memory for %d decoded frames of 3x%dx%d", p->depth, h, w);
        prefetch_free(p);
        return NULL;
    }
    int rc = pthread_create(&p->thread, NULL, producer, p);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the decoding thread: %s", strerror(rc));
        prefetch_free(p);
        return NULL;
    }
    return p;
}

int prefetch_next(Prefetch *p, float *dst, double *t, char *err, size_t errlen) {
    pthread_mutex_lock(&p->lock);
    while (p->count == 0 && !p->done) pthread_cond_wait(&p->ready, &p->lock);
    if (p->count == 0) { /* the producer finished and everything was taken */
        int r = p->done > 0 ? 0 : -1;
        if (r < 0) snprintf(err, errlen, "%s", p->err);
        pthread_mutex_unlock(&p->lock);
        return r;
    }
    Slot *s = &p->slots[p->head];
    pthread_mutex_unlock(&p->lock);
    /* the head slot is the consumer's until it gives it back */
    memcpy(dst, s->data, (size_t)3 * p->h * p->w * sizeof *dst);
    *t = s->t;
    pthread_mutex_lock(&p->lock);
    p->head = (p->head + 1) % p->depth;
    p->count--;
    pthread_cond_signal(&p->space);
    pthread_mutex_unlock(&p->lock);
    return 1;
}

void prefetch_stats(Prefetch *p, int64_t *decoded, int64_t *skipped) {
    pthread_mutex_lock(&p->lock);
    *decoded = p->decoded;
    *skipped = p->skipped;
    pthread_mutex_unlock(&p->lock);
}

void prefetch_stop(Prefetch *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_signal(&p->space);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    prefetch_free(p);
}

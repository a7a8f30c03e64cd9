/* video.c: video files through FFmpeg (see video.h), in plain C (no Lua).
 *
 * Reading mirrors what `ffmpeg -i f -vf fps=R -f rawvideo -pix_fmt rgb24 -`
 * does in FFmpeg 5.1, because that is the reference the tests hold us to:
 *   - timestamps are the decoder's best_effort_timestamp shifted by minus the
 *     container's start time (ffmpeg's default ts_offset);
 *   - fps sampling is libavfilter's vf_fps (fps_step below): round-to-nearest
 *     into units of 1/R, start at the first frame, output the latest frame at
 *     or before each instant, stop at the end of the last frame (its pts plus
 *     its duration, the EOF timestamp ffmpeg sends the filter graph);
 *   - rotation follows ffmpeg's autorotate (transpose / hflip / vflip);
 *   - RGB conversion uses swscale with ffmpeg's default flags (bicubic) and
 *     the frame's own colour matrix and range, like vf_scale.
 * Only the frames handed out are converted; a frame buffered by the sampler
 * is a reference, never a copy. Frames are decoded because later frames
 * depend on them, with one exception (see packet_skippable): when sampling
 * H.264, a non-reference frame that the timestamps prove can never be chosen
 * is not decoded at all. */
#include "video.h"
#include "video_private.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_int decoder_threads; /* video_set_decoder_threads; 0: three per core */

static atomic_llong max_pixels;    /* video_set_max_pixels; 0: FFmpeg's limit */

void video_set_decoder_threads(int n) { atomic_store(&decoder_threads, n > 0 ? n : 0); }
void video_set_max_pixels(int64_t n) { atomic_store(&max_pixels, n > 0 ? n : 0); }

/* ---- FFmpeg's log: remember the last error line of this thread ----
 * av_err2str alone often says only "Invalid data found when processing
 * input"; the line FFmpeg logged just before ("moov atom not found") is what
 * a user needs, so errors quote both. */

static _Thread_local char log_last[256];

static void log_callback(void *avcl, int level, const char *fmt, va_list vl) {
    if (level <= AV_LOG_ERROR) {
        char line[sizeof log_last];
        va_list copy;
        va_copy(copy, vl);
        vsnprintf(line, sizeof line, fmt, copy);
        va_end(copy);
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ')) line[--n] = 0;
        if (n > 0) memcpy(log_last, line, n + 1);
    }
    av_log_default_callback(avcl, level, fmt, vl);
}

/* FFmpeg prints nothing unless DD_FFMPEG_LOGLEVEL names a level (error,
 * warning, info, debug, ...): errors that matter reach the caller anyway,
 * and the chatter of a recoverable glitch (a damaged frame, a seek into an
 * open GOP) is noise in a library. */
void video_log_init(void) {
    static atomic_flag done = ATOMIC_FLAG_INIT;
    if (atomic_flag_test_and_set(&done)) return;
    static const struct { const char *name; int level; } levels[] = {
        {"quiet", AV_LOG_QUIET}, {"panic", AV_LOG_PANIC}, {"fatal", AV_LOG_FATAL}, {"error", AV_LOG_ERROR},
        {"warning", AV_LOG_WARNING}, {"info", AV_LOG_INFO}, {"verbose", AV_LOG_VERBOSE}, {"debug", AV_LOG_DEBUG},
        {"trace", AV_LOG_TRACE}};
    int level = AV_LOG_QUIET;
    const char *env = getenv("DD_FFMPEG_LOGLEVEL");
    for (size_t i = 0; env && i < sizeof levels / sizeof levels[0]; i++)
        if (strcmp(env, levels[i].name) == 0) level = levels[i].level;
    av_log_set_level(level);
    av_log_set_callback(log_callback);
}

static void log_clear(void) { log_last[0] = 0; }

/* Writes "<path>: <what>: <FFmpeg's message> (<last logged error>)" and returns -1. */
static int fail_av(char *err, size_t errlen, const char *path, const char *what, int averr) {
    char msg[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(averr, msg, sizeof msg);
    if (log_last[0] && strcmp(log_last, msg) != 0)
        snprintf(err, errlen, "%s: %s: %s (%s)", path, what, msg, log_last);
    else
        snprintf(err, errlen, "%s: %s: %s", path, what, msg);
    return -1;
}

static int fail_msg(char *err, size_t errlen, const char *path, const char *fmt, ...) {
    char msg[VIDEO_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s: %s", path, msg);
    return -1;
}

/* ---- vf_fps on timestamps (libavfilter/vf_fps.c, activate + write_frame) ---- */

void fps_init(FpsState *s) {
    s->next_pts = FPS_NOPTS;
    s->count = 0;
    s->eof = 0;
    s->eof_pts = FPS_NOPTS;
}

void fps_push(FpsState *s, int64_t pts) {
    if (s->count < 2) s->pts[s->count++] = pts;
}

void fps_push_eof(FpsState *s, int64_t end_pts) {
    s->eof = 1;
    s->eof_pts = end_pts;
}

static void fps_shift(FpsState *s) {
    s->pts[0] = s->pts[1];
    s->count--;
}

FpsAction fps_step(FpsState *s, int64_t *out_pts) {
    /* vf_fps decides only with two frames buffered, or with one at EOF. */
    if (!s->eof && s->count < 2) return FPS_NEED_INPUT;
    if (s->count == 0) return FPS_END;
    if (s->next_pts == FPS_NOPTS) {
        if (s->pts[0] == FPS_NOPTS) {   /* leading frames without a time are dropped */
            fps_shift(s);
            return FPS_DROP;
        }
        s->next_pts = s->pts[0];
    }
    /* Drop frame 0 when frame 1 is already due, or when the stream ended
     * before the next instant. */
    if ((s->count == 2 && s->pts[1] <= s->next_pts) || (s->eof && s->eof_pts <= s->next_pts)) {
        fps_shift(s);
        return FPS_DROP;
    }
    *out_pts = s->next_pts++;
    return FPS_EMIT;
}

/* ---- reading ---- */


/* ffmpeg's get_rotation (fftools/cmdutils.c): the clockwise angle the frame
 * must turn, in [0, 360). */
static double display_theta(const int32_t *m) {
    double theta = m ? -round(av_display_rotation_get(m)) : 0;
    theta -= 360 * floor(theta / 360 + 0.9 / 360);
    return theta;
}

/* ffmpeg's autorotate (fftools/ffmpeg_filter.c), as index arithmetic. */
static Orientation orientation_from(const int32_t *m, int *degrees) {
    Orientation o = {0, 0, 0};
    double theta = display_theta(m);
    *degrees = 0;
    if (!m) return o;
    if (fabs(theta - 90) < 1.0) {
        *degrees = 90;
        o.transpose = 1;
        if (m[3] > 0) { /* transpose=cclock_flip: a plain transpose */ }
        else o.flip_rows = 1;                        /* transpose=clock */
    } else if (fabs(theta - 180) < 1.0) {
        *degrees = 180;
        o.flip_cols = m[0] < 0;                      /* hflip */
        o.flip_rows = m[4] < 0;                      /* vflip */
    } else if (fabs(theta - 270) < 1.0) {
        *degrees = 270;
        o.transpose = 1;
        if (m[3] < 0) o.flip_rows = o.flip_cols = 1; /* transpose=clock_flip */
        else o.flip_cols = 1;                        /* transpose=cclock */
    } else if (fabs(theta) < 1.0) {
        o.flip_rows = m[4] < 0;                      /* vflip */
    }
    /* Other angles would need ffmpeg's rotate filter: left unrotated. */
    return o;
}

static void queue_clear(Video *v) {
    for (int i = 0; i < PACKET_QUEUE; i++)
        if (v->queue[i]) av_packet_unref(v->queue[i]);
    v->q_head = v->q_len = 0;
    for (int i = 0; i < RECENT_PTS; i++) v->recent_pts[i] = AV_NOPTS_VALUE;
    v->recent_pos = 0;
    v->flushed = 0;
    v->demux_eof = 0;
    v->last_out_pts = AV_NOPTS_VALUE;
}

static void input_close(Video *v) {
    queue_clear(v);
    avcodec_free_context(&v->dec);
    avformat_close_input(&v->fmt);
}

/* The best video stream that is not a cover picture, or a negative AVERROR. */
static int find_video_stream(AVFormatContext *fmt) {
    int s = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (s >= 0 && !(fmt->streams[s]->disposition & AV_DISPOSITION_ATTACHED_PIC)) return s;
    for (unsigned i = 0; i < fmt->nb_streams; i++) {
        const AVStream *st = fmt->streams[i];
        if (st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO && !(st->disposition & AV_DISPOSITION_ATTACHED_PIC))
            return (int)i;
    }
    return AVERROR_STREAM_NOT_FOUND;
}

/* FFmpeg opens every file through this: the video file itself, and nothing
 * else. Demuxers that follow names written inside a file (HLS playlists,
 * DASH manifests, image sequences) would otherwise read other files of this
 * machine on behalf of whoever wrote the file (a "clip.mp4" that is an HLS
 * playlist naming /home/you/private.mp4). */
static int io_open_self(AVFormatContext *s, AVIOContext **pb, const char *url, int flags, AVDictionary **opts) {
    Video *v = s->opaque;
    if (strcmp(url, v->path) != 0) {
        if (!v->refused[0]) snprintf(v->refused, sizeof v->refused, "%s", url);
        return AVERROR(EPERM);
    }
    return v->io_open_default(s, pb, url, flags, opts);
}

/* Opens the container and the decoder. The first call also fills v->info. */
static int input_open(Video *v, int fill_info, char *err, size_t errlen) {
    v->fmt = avformat_alloc_context();
    if (!v->fmt) return fail_av(err, errlen, v->path, "cannot open", AVERROR(ENOMEM));
    v->io_open_default = v->fmt->io_open;
    v->fmt->io_open = io_open_self;
    v->fmt->opaque = v;
    v->refused[0] = 0;
    int r = avformat_open_input(&v->fmt, v->path, NULL, NULL);   /* frees fmt on failure */
    if (r < 0 && v->refused[0])
        return fail_msg(err, errlen, v->path, "cannot open: it is a playlist or list naming another file ('%s'); "
                        "only the file itself is read", v->refused);
    if (r < 0) return fail_av(err, errlen, v->path, "cannot open", r);
    /* The concat and IMF demuxers open the files they list in contexts of
     * their own, past io_open_self: refused by name (their data never left). */
    const char *kind = v->fmt->iformat->name;
    if (strcmp(kind, "concat") == 0 || strcmp(kind, "imf") == 0)
        return fail_msg(err, errlen, v->path, "cannot open: it is a list of other files (FFmpeg's '%s' format); "
                        "only the file itself is read", kind);
    r = avformat_find_stream_info(v->fmt, NULL);
    if (r < 0) return fail_av(err, errlen, v->path, "cannot read the stream parameters", r);
    r = find_video_stream(v->fmt);
    if (r < 0) return fail_av(err, errlen, v->path, "no video stream", r);
    v->stream = r;
    AVStream *st = v->fmt->streams[v->stream];
    for (unsigned i = 0; i < v->fmt->nb_streams; i++)
        if ((int)i != v->stream) v->fmt->streams[i]->discard = AVDISCARD_ALL;

    const AVCodec *codec = avcodec_find_decoder(st->codecpar->codec_id);
    if (!codec) {
        char what[96];
        snprintf(what, sizeof what, "no decoder for codec '%s'", avcodec_get_name(st->codecpar->codec_id));
        return fail_av(err, errlen, v->path, what, AVERROR_DECODER_NOT_FOUND);
    }
    v->dec = avcodec_alloc_context3(codec);
    if (!v->dec) return fail_av(err, errlen, v->path, "cannot allocate the decoder", AVERROR(ENOMEM));
    r = avcodec_parameters_to_context(v->dec, st->codecpar);
    if (r < 0) return fail_av(err, errlen, v->path, "bad codec parameters", r);
    v->dec->pkt_timebase = st->time_base;
    /* Three frame threads per core: while the caller processes one frame
     * (silhouettes, resizing), the others keep decoding; with one per core
     * the decoder stalls whenever the caller works (measured on 2 cores:
     * ingest at 0.93x the ffmpeg CLI with two per core, 1.0x with three). */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int forced = v->threads > 0 ? v->threads : atomic_load(&decoder_threads);
    v->dec->thread_count = forced > 0 ? forced : (int)(cores > 0 ? (cores * 3 > 16 ? 16 : cores * 3) : 0);
    long long most = atomic_load(&max_pixels);
    if (most > 0) v->dec->max_pixels = most;
    v->dec->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
    /* FFmpeg 5.1's APNG decoder can deadlock across frame threads on a
     * damaged file: a 336-byte fuzzer input hung `ffmpeg -i` as well, for
     * good (fine with -threads 1). APNG frames are small: decode them on the
     * calling thread. */
    if (st->codecpar->codec_id == AV_CODEC_ID_APNG) v->dec->thread_type = FF_THREAD_SLICE;
    r = avcodec_open2(v->dec, codec, NULL);
    if (r < 0) return fail_av(err, errlen, v->path, "cannot open the decoder", r);

    v->tb = st->time_base;
    v->ts_offset = v->fmt->start_time == AV_NOPTS_VALUE
                       ? 0 : av_rescale_q(-v->fmt->start_time, AV_TIME_BASE_Q, v->tb);
    AVRational rate = st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0 ? st->avg_frame_rate
                                                                               : st->r_frame_rate;
    v->default_dur_av = rate.num > 0 && rate.den > 0 ? av_rescale_q(1, av_inv_q(rate), AV_TIME_BASE_Q) : 0;
    v->at_start = 1;
    queue_clear(v);
    v->next_pts_av = AV_NOPTS_VALUE;
    v->skip_ok = 1;
    v->h264_nal_len = -1;
    if (st->codecpar->codec_id == AV_CODEC_ID_H264) {
        const uint8_t *x = st->codecpar->extradata;
        v->h264_nal_len = st->codecpar->extradata_size >= 7 && x[0] == 1 ? (x[4] & 3) + 1 : 0;
    }

    if (fill_info) {
        VideoInfo *in = &v->info;
        const int32_t *matrix = (const int32_t *)av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, NULL);
        v->orient = orientation_from(matrix, &in->rotation);
        int w = st->codecpar->width, h = st->codecpar->height;
        if (w <= 0 || h <= 0)
            return fail_msg(err, errlen, v->path, "video stream has no frame size (%dx%d)", w, h);
        in->width = v->orient.transpose ? h : w;
        in->height = v->orient.transpose ? w : h;
        in->fps = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0;
        if (st->duration != AV_NOPTS_VALUE && st->duration > 0) in->duration = st->duration * av_q2d(st->time_base);
        else if (v->fmt->duration != AV_NOPTS_VALUE && v->fmt->duration > 0)
            in->duration = (double)v->fmt->duration / AV_TIME_BASE;
        else in->duration = 0;
        in->frame_count_exact = st->nb_frames > 0;
        in->frame_count = st->nb_frames > 0 ? st->nb_frames : (int64_t)llround(in->duration * in->fps);
        snprintf(in->codec, sizeof in->codec, "%s", avcodec_get_name(st->codecpar->codec_id));
    }
    return 0;
}

void video_close(Video *v) {
    if (!v) return;
    parallel_stop(v);
    input_close(v);
    for (int i = 0; i < PACKET_QUEUE; i++) av_packet_free(&v->queue[i]);
    av_frame_free(&v->frame);
    av_frame_free(&v->out);
    av_frame_free(&v->held[0]);
    av_frame_free(&v->held[1]);
    av_frame_free(&v->cand);
    av_frame_free(&v->lookahead);
    sws_freeContext(v->sws);
    av_free(v->rgb);
    free(v->path);
    free(v);
}

Video *video_open_threads(const char *path, int threads, char *err, size_t errlen) {
    log_clear();
    Video *v = calloc(1, sizeof *v);
    if (!v || !(v->path = strdup(path))) {
        free(v);
        fail_msg(err, errlen, path, "out of memory");
        return NULL;
    }
    v->threads = threads;
    v->cur_seg = -1;
    v->read_after = AV_NOPTS_VALUE;
    int packets_ok = 1;
    for (int i = 0; i < PACKET_QUEUE; i++) packets_ok &= (v->queue[i] = av_packet_alloc()) != NULL;
    v->frame = av_frame_alloc();
    v->out = av_frame_alloc();
    v->held[0] = av_frame_alloc();
    v->held[1] = av_frame_alloc();
    v->cand = av_frame_alloc();
    v->lookahead = av_frame_alloc();
    if (!packets_ok || !v->frame || !v->out || !v->held[0] || !v->held[1] || !v->cand || !v->lookahead) {
        fail_msg(err, errlen, path, "out of memory");
        video_close(v);
        return NULL;
    }
    v->sws_colorspace = v->sws_range = -1;
    for (int i = 0; i < 256; i++) v->byte_to_float[i] = (float)i / 255.0f;
    if (input_open(v, 1, err, errlen) < 0) {
        video_close(v);
        return NULL;
    }
    return v;
}

Video *video_open(const char *path, char *err, size_t errlen) { return video_open_threads(path, 0, err, errlen); }

const VideoInfo *video_info(const Video *v) { return &v->info; }

int video_decoders(const Video *v) { return parallel_decoders(v); }

void video_stats(const Video *v, int64_t *decoded, int64_t *skipped) {
    parallel_stats(v, decoded, skipped);
    *decoded += v->frames_decoded;
    *skipped += v->frames_skipped;
}

static void drop_buffered(Video *v) {
    parallel_stop(v);
    v->read_after = AV_NOPTS_VALUE;
    av_frame_unref(v->held[0]);
    av_frame_unref(v->held[1]);
    av_frame_unref(v->cand);
    av_frame_unref(v->lookahead);
    v->has_cand = v->has_lookahead = 0;
    v->seeking = 0;
    v->sampling = 0;
    fps_init(&v->fps);
}

/* Back to the first frame: a fresh open, which works for every container
 * (seeking to 0 does not, for some) and restarts exactly like ffmpeg. */
static int reopen_input(Video *v, char *err, size_t errlen) {
    input_close(v);
    if (input_open(v, 0, err, errlen) == 0) return 0;
    input_close(v);   /* no half-open state: the next call tries again */
    return -1;
}

static int rewind_input(Video *v, char *err, size_t errlen) {
    drop_buffered(v);
    if (v->at_start && v->dec) return 0;
    return reopen_input(v, err, errlen);
}

/* Tops the look-ahead queue up with video packets. A read error ends the
 * input like ffmpeg does (the frames so far stand) and is remembered. */
static void segment_assign(Video *v, int slot);

static void queue_fill(Video *v) {
    while (!v->demux_eof && v->q_len < PACKET_QUEUE) {
        AVPacket *p = v->queue[(v->q_head + v->q_len) % PACKET_QUEUE];
        int r = av_read_frame(v->fmt, p);
        v->at_start = 0;
        if (r == AVERROR(EAGAIN)) continue;
        if (r < 0) {
            if (r != AVERROR_EOF) v->last_error = r;
            v->demux_eof = 1;
            break;
        }
        if (p->stream_index != v->stream) {
            av_packet_unref(p);
            continue;
        }
        if (v->seg_n > 0) segment_assign(v, (v->q_head + v->q_len) % PACKET_QUEUE);
        v->q_len++;
    }
}

/* The next NAL unit of an H.264 access unit, from byte *at: 1 with the
 * unit in d[*start, *end) and *at moved past it, 0 at the end, -1 when the
 * units cannot be walked. nal_len is the NAL length size, 0 for Annex B
 * start codes. */
static int h264_next_unit(const uint8_t *d, int size, int nal_len, int *at, int *start, int *end) {
    int i = *at;
    if (i >= size) return 0;
    if (nal_len > 0) {
        if (size - i < nal_len) return -1;
        uint32_t n = 0;
        for (int k = 0; k < nal_len; k++) n = n << 8 | d[i + k];
        *start = i + nal_len;
        if (n == 0 || n > (uint32_t)(size - *start)) return -1;
        *end = *start + (int)n;
    } else {
        while (i + 3 <= size && !(d[i] == 0 && d[i + 1] == 0 && d[i + 2] == 1)) i++;
        if (i + 3 > size) return 0;
        int e = *start = i + 3;
        while (e + 3 <= size && !(d[e] == 0 && d[e + 1] == 0 && (d[e + 2] == 1 || d[e + 2] == 0))) e++;
        if (e + 3 > size) e = size;
        if (*start >= e) return -1;
        *end = e;
    }
    *at = *end;
    return 1;
}

/* The NAL unit types of an H.264 access unit, as bits NAL_BIT(type), plus
 * H264_REF_SLICE when a slice (type 1 or 5) has nal_ref_idc > 0, and
 * H264_MALFORMED when the units cannot be walked. */
#define NAL_BIT(t) (UINT64_C(1) << (t))
#define H264_REF_SLICE (UINT64_C(1) << 32)
#define H264_MALFORMED (UINT64_C(1) << 33)
static uint64_t h264_units(const uint8_t *d, int size, int nal_len) {
    uint64_t units = 0;
    int at = 0, start, end, r;
    while ((r = h264_next_unit(d, size, nal_len, &at, &start, &end)) > 0) {
        int type = d[start] & 0x1f, ref_idc = (d[start] >> 5) & 3;
        units |= NAL_BIT(type);
        if ((type == 1 || type == 5) && ref_idc != 0) units |= H264_REF_SLICE;
    }
    return r < 0 ? units | H264_MALFORMED : units;
}

/* 1 when an H.264 access unit holds only non-reference slices (nal_ref_idc
 * 0), plus at most SEI, delimiter or filler units: no other frame reads it,
 * and dropping it loses no parameter set. */
static int h264_disposable(const uint8_t *d, int size, int nal_len) {
    const uint64_t allowed = NAL_BIT(1) | NAL_BIT(6) | NAL_BIT(9) | NAL_BIT(12);
    uint64_t units = h264_units(d, size, nal_len);
    return (units & NAL_BIT(1)) && !(units & ~allowed);
}

/* Whether every parameter set (SPS, PPS) inside an access unit is one of
 * the container's (avcC extradata), byte for byte: then a decoder that never
 * sees the packet loses nothing. Extension and subset SPS never pass. */
static int h264_parameter_sets_known(const Video *v, const uint8_t *d, int size) {
    const AVCodecParameters *par = v->fmt->streams[v->stream]->codecpar;
    const uint8_t *x = par->extradata;
    const int xsize = par->extradata_size;
    int pos = 0, start, end, r;
    while ((r = h264_next_unit(d, size, v->h264_nal_len, &pos, &start, &end)) > 0) {
        const uint8_t *nal = d + start;
        const uint32_t n = (uint32_t)(end - start);
        int type = nal[0] & 0x1f;
        if (type == 13 || type == 15) return 0;
        if (type != 7 && type != 8) continue;
        /* avcC: 5 header bytes, SPS count (low 5 bits) and sets, PPS count and sets */
        int found = 0, at = 5;
        for (int list = 0; list < 2 && !found && at < xsize; list++) {
            int count = list == 0 ? x[at] & 0x1f : x[at];
            at++;
            for (int s = 0; s < count && at + 2 <= xsize; s++) {
                int len = x[at] << 8 | x[at + 1];
                at += 2;
                if (at + len > xsize) break;
                if ((uint32_t)len == n && memcmp(x + at, nal, n) == 0) found = 1;
                at += len;
            }
        }
        if (!found) return 0;
    }
    return r == 0;
}

/* Segment mode (a decoder of video_parallel.c): a segment starts at an IDR
 * access unit at least SEGMENT_MIN_PACKETS packets after the previous start.
 * Every decoder reads every packet, so all number the segments alike. A
 * parameter set inside a packet that differs from the container's would be
 * missed by the decoders that skip that packet's segment: unsafe. */
static void segment_assign(Video *v, int slot) {
    const AVPacket *p = v->queue[slot];
    uint64_t units = h264_units(p->data, p->size, v->h264_nal_len);
    if ((units & H264_MALFORMED) ||
        ((units & (NAL_BIT(7) | NAL_BIT(8) | NAL_BIT(13) | NAL_BIT(15))) &&
         !h264_parameter_sets_known(v, p->data, p->size)))
        v->seg_unsafe = 1;
    if ((units & NAL_BIT(5)) && (p->flags & AV_PKT_FLAG_KEY) && v->seg_packets >= SEGMENT_MIN_PACKETS) {
        v->seg_index++;
        v->seg_packets = 0;
    }
    v->seg_packets++;
    v->q_seg[slot] = v->seg_index;
}

/* Whether the packet at the head of the queue can be left undecoded: while
 * sampling at R fps, a frame F is never chosen when a later frame G (pts_G >
 * pts_F) rounds to the same instant (vf_fps drops F once its successor is
 * due, and the successor is due no later than G). Then F, if no frame
 * depends on it, need not be decoded: the chosen frames, their pixels, the
 * count and the end time are unchanged. The proof needs frames to come out
 * in pts order with their packet pts as time, which decode_next checks. */
static int packet_skippable(Video *v) {
    const AVPacket *f = v->queue[v->q_head];
    if (!v->sampling || !v->skip_ok || v->h264_nal_len < 0 || f->pts == AV_NOPTS_VALUE) return 0;
    if (!h264_disposable(f->data, f->size, v->h264_nal_len)) return 0;
    int64_t p = f->pts + v->ts_offset;
    int64_t q = av_rescale_q_rnd(p, v->tb, v->out_tb, AV_ROUND_NEAR_INF);
    for (int i = 1; i < v->q_len; i++) {
        int64_t x = v->queue[(v->q_head + i) % PACKET_QUEUE]->pts;
        if (x != AV_NOPTS_VALUE && x + v->ts_offset > p &&
            av_rescale_q_rnd(x + v->ts_offset, v->tb, v->out_tb, AV_ROUND_NEAR_INF) == q)
            return 1;
    }
    for (int i = 0; i < RECENT_PTS; i++) {
        int64_t x = v->recent_pts[i];
        if (x != AV_NOPTS_VALUE && x > p && av_rescale_q_rnd(x, v->tb, v->out_tb, AV_ROUND_NEAR_INF) == q) return 1;
    }
    return 0;
}

/* Sends the head of the queue to the decoder (or skips it), or the
 * end-of-stream packet once the queue is empty. */
/* Takes the head of the queue (the caller unrefs it), remembering its time
 * for packet_skippable. */
static AVPacket *queue_pop(Video *v) {
    AVPacket *p = v->queue[v->q_head];
    v->recent_pos = (v->recent_pos + 1) % RECENT_PTS;
    v->recent_pts[v->recent_pos] = p->pts == AV_NOPTS_VALUE ? AV_NOPTS_VALUE : p->pts + v->ts_offset;
    v->q_head = (v->q_head + 1) % PACKET_QUEUE;
    v->q_len--;
    return p;
}

/* How long a decoded frame lasts, in AV_TIME_BASE units: its packet's
 * duration, else one frame at the average rate. */
static int64_t frame_duration_av(const Video *v, const AVFrame *f) {
    return f->pkt_duration > 0 ? av_rescale_q(f->pkt_duration, v->tb, AV_TIME_BASE_Q) : v->default_dur_av;
}

static void feed_decoder(Video *v) {
    queue_fill(v);
    if (v->q_len == 0) {
        avcodec_send_packet(v->dec, NULL);
        v->flushed = 1;
        return;
    }
    int skip = packet_skippable(v);
    AVPacket *p = queue_pop(v);
    if (skip) {
        v->frames_skipped++;
        av_packet_unref(p);
        return;
    }
    int r = avcodec_send_packet(v->dec, p);
    av_packet_unref(p);
    if (r < 0 && r != AVERROR(EAGAIN)) v->last_error = r;
}

/* ---- segment mode (the decoders of video_parallel.c) ---- */

void video_segment_mode(Video *v, int worker, int workers, AVRational out_tb) {
    v->seg_n = workers;
    v->seg_w = worker;
    v->seg_index = 0;
    v->seg_packets = 0;
    v->cur_seg = -1;
    v->out_tb = out_tb;
    v->sampling = 1;   /* packet_skippable applies */
}

int video_segment_next(Video *v, int64_t *seg) {
    for (;;) {
        if (v->seg_unsafe) return SEG_UNSAFE;
        int r = avcodec_receive_frame(v->dec, v->frame);
        if (r >= 0) {
            AVFrame *f = v->frame;
            v->frames_decoded++;
            int64_t pts = f->best_effort_timestamp;
            /* A concealed error may borrow pixels from a frame before the
             * segment: only one decoder over the whole file has those. */
            if (pts == AV_NOPTS_VALUE || f->pts != pts || f->decode_error_flags || (f->flags & AV_FRAME_FLAG_CORRUPT) ||
                (v->last_out_pts != AV_NOPTS_VALUE && pts + v->ts_offset <= v->last_out_pts))
                return SEG_UNSAFE;
            f->best_effort_timestamp = f->pts = pts + v->ts_offset;
            v->last_out_pts = f->pts;
            v->next_pts_av = av_rescale_q(f->pts, v->tb, AV_TIME_BASE_Q) + frame_duration_av(v, f);
            *seg = v->cur_seg;
            return SEG_FRAME;
        }
        if (r == AVERROR_EOF) {   /* the own segment is drained */
            *seg = v->cur_seg;
            avcodec_flush_buffers(v->dec);
            v->flushed = 0;
            v->cur_seg = -1;
            return SEG_END;
        }
        if (r != AVERROR(EAGAIN) || v->flushed) return SEG_UNSAFE;   /* a damaged frame */
        queue_fill(v);
        if (v->seg_unsafe || v->last_error) return SEG_UNSAFE;
        if (v->q_len == 0 || (v->cur_seg >= 0 && v->q_seg[v->q_head] != v->cur_seg)) {
            if (v->cur_seg < 0) return SEG_EOF;
            avcodec_send_packet(v->dec, NULL);   /* the own segment ends: drain it */
            v->flushed = 1;
            continue;
        }
        int64_t s = v->q_seg[v->q_head];
        int own = s % v->seg_n == v->seg_w;
        int skip = !own || packet_skippable(v);
        AVPacket *p = queue_pop(v);
        if (skip) {
            if (own) v->frames_skipped++;
            av_packet_unref(p);
            continue;
        }
        v->cur_seg = s;
        r = avcodec_send_packet(v->dec, p);
        av_packet_unref(p);
        if (r < 0) return SEG_UNSAFE;
    }
}

/* The next decoded frame into v->frame, with pts set (offset applied) and
 * best_effort_timestamp left AV_NOPTS_VALUE when the frame has no time:
 * 1, 0 at the end, -1 on error. Broken packets are skipped like ffmpeg does;
 * only a file where no frame at all decodes is an error. */
static int decode_next(Video *v, char *err, size_t errlen) {
    if (!v->dec) return fail_msg(err, errlen, v->path, "the file could not be reopened; seek or restart frames{}");
    for (;;) {
        int r = avcodec_receive_frame(v->dec, v->frame);
        if (r >= 0) {
            AVFrame *f = v->frame;
            v->frames_decoded++;
            v->consecutive_errors = 0;
            if (f->best_effort_timestamp != AV_NOPTS_VALUE) {
                /* packet_skippable's premise: pts order, pts as the time. */
                if (f->pts != f->best_effort_timestamp ||
                    (v->last_out_pts != AV_NOPTS_VALUE && f->best_effort_timestamp + v->ts_offset <= v->last_out_pts))
                    v->skip_ok = 0;
                f->best_effort_timestamp += v->ts_offset;
                f->pts = f->best_effort_timestamp;
                v->last_out_pts = f->pts;
                v->next_pts_av = av_rescale_q(f->pts, v->tb, AV_TIME_BASE_Q);
            } else {
                v->skip_ok = 0;
                f->pts = v->next_pts_av == AV_NOPTS_VALUE ? 0 : av_rescale_q(v->next_pts_av, AV_TIME_BASE_Q, v->tb);
            }
            if (v->next_pts_av != AV_NOPTS_VALUE) v->next_pts_av += frame_duration_av(v, f);
            return 1;
        }
        if (r == AVERROR_EOF) {
            if (v->frames_decoded == 0 && v->last_error)
                return fail_av(err, errlen, v->path, "no frame could be decoded", v->last_error);
            return 0;
        }
        if (r != AVERROR(EAGAIN)) {
            /* A damaged frame: carry on like ffmpeg, unless the decoder
             * keeps failing without taking input (no progress). */
            v->last_error = r;
            if (++v->consecutive_errors > 1000)
                return fail_av(err, errlen, v->path, "decoding keeps failing", r);
            continue;
        }
        v->consecutive_errors = 0;
        if (v->flushed) return 0;   /* drained: not expected, but an end all the same */
        feed_decoder(v);
    }
}

static void hand_out(Video *v, AVFrame *src, double *t) {
    av_frame_unref(v->out);
    av_frame_move_ref(v->out, src);
    *t = v->out->pts * av_q2d(v->tb);
}

static int seek_to_key_frame(Video *v, int64_t target, double seconds);

/* read() after sampling goes on from the first frame after the last one
 * handed out, on this Video's own decoder (from a key frame before it, or
 * from the start), whether the sampler ran on it or on segment decoders. */
static int continue_after_sampling(Video *v, char *err, size_t errlen) {
    int64_t last = v->out->data[0] ? v->out->pts : AV_NOPTS_VALUE;
    drop_buffered(v);
    if (last == AV_NOPTS_VALUE) return v->at_start && v->dec ? 0 : reopen_input(v, err, errlen);
    if (!v->dec || seek_to_key_frame(v, last, last * av_q2d(v->tb)) < 0)
        if (reopen_input(v, err, errlen) < 0) return -1;
    v->read_after = last;
    return 0;
}

int video_read(Video *v, double *t, char *err, size_t errlen) {
    log_clear();
    if (v->sampling && continue_after_sampling(v, err, errlen) < 0) return -1;
    v->sampling = 0;
    if (v->has_lookahead) {
        v->has_lookahead = 0;
        hand_out(v, v->lookahead, t);
        return 1;
    }
    for (;;) {
        int r = decode_next(v, err, errlen);
        if (r < 0) return -1;
        if (r == 0) {
            if (v->seeking && v->has_cand) {
                /* The target is within the last frame unless past its end. */
                v->seeking = v->has_cand = 0;
                int64_t target_av = av_rescale_q(v->seek_target, v->tb, AV_TIME_BASE_Q);
                if (v->next_pts_av == AV_NOPTS_VALUE || target_av < v->next_pts_av) {
                    hand_out(v, v->cand, t);
                    return 1;
                }
                av_frame_unref(v->cand);
            }
            v->seeking = 0;
            return 0;
        }
        if (!v->seeking) {
            int64_t pts = v->frame->best_effort_timestamp;
            if (v->read_after != AV_NOPTS_VALUE && pts != AV_NOPTS_VALUE && pts <= v->read_after) {
                av_frame_unref(v->frame);
                continue;
            }
            v->read_after = AV_NOPTS_VALUE;
            hand_out(v, v->frame, t);
            return 1;
        }
        int64_t pts = v->frame->best_effort_timestamp;
        if (pts == AV_NOPTS_VALUE || pts <= v->seek_target) {
            if (pts != AV_NOPTS_VALUE) {
                av_frame_unref(v->cand);
                av_frame_move_ref(v->cand, v->frame);
                v->has_cand = 1;
            } else {
                av_frame_unref(v->frame);
            }
            continue;
        }
        v->seeking = 0;
        if (v->has_cand) {
            v->has_cand = 0;
            hand_out(v, v->cand, t);
            av_frame_move_ref(v->lookahead, v->frame);
            v->has_lookahead = 1;
        } else {
            hand_out(v, v->frame, t);   /* the target precedes the first frame */
        }
        return 1;
    }
}

/* Positions the demuxer on a key frame at or before target (in tb, offset
 * applied) and reads the first packets: 0, or -1 when that failed. Demuxers
 * without an index (MPEG-TS, ...) land on any frame, from which nothing
 * decodes, so a landing on a non-key frame retries further back. */
static int seek_to_key_frame(Video *v, int64_t target, double seconds) {
    int64_t back = 0, second = av_rescale_q(1, (AVRational){1, 1}, v->tb);
    for (int attempt = 0; attempt < 6; attempt++) {
        int64_t ts = target - back - v->ts_offset;
        if (avformat_seek_file(v->fmt, v->stream, INT64_MIN, ts, ts, 0) < 0) return -1;
        avcodec_flush_buffers(v->dec);
        queue_clear(v);
        v->at_start = 0;
        v->next_pts_av = AV_NOPTS_VALUE;
        queue_fill(v);
        if (v->q_len == 0) return attempt == 0 && v->info.duration > 0 && seconds >= v->info.duration ? 0 : -1;
        if (v->queue[v->q_head]->flags & AV_PKT_FLAG_KEY) return 0;
        back = back ? 2 * back : second;
    }
    return -1;
}

int video_seek(Video *v, double seconds, char *err, size_t errlen) {
    log_clear();
    if (!isfinite(seconds)) return fail_msg(err, errlen, v->path, "seek: time must be a finite number");
    if (seconds < 0) seconds = 0;
    drop_buffered(v);
    /* The tick on screen at `seconds`; the epsilon absorbs 2.3 * 30 = 68.999... */
    int64_t target = (int64_t)floor(seconds / av_q2d(v->tb) + 1e-6);
    if (!v->dec || (!(v->at_start && seconds == 0) && seek_to_key_frame(v, target, seconds) < 0)) {
        /* Not seekable, or no key frame found before the target: reopen and
         * decode forward from the start (exact, only slower). */
        if (reopen_input(v, err, errlen) < 0) return -1;
    }
    v->seeking = 1;
    v->seek_target = target;
    return 0;
}

/* Whether sampling at fps can run on segment decoders: H.264 with its
 * parameter sets in the container (checked again packet by packet), at most
 * half the frame rate (a decoder passes on only the frames that can be
 * chosen), and enough key frames in the index for every decoder. */
static int segments_worthwhile(const Video *v, double fps, int workers) {
    if (workers < 2 || v->h264_nal_len <= 0 || !(v->info.fps >= 2 * fps)) return 0;
    if (v->info.frame_count < (int64_t)2 * workers * SEGMENT_MIN_PACKETS) return 0;
    AVStream *st = v->fmt->streams[v->stream];
    int n = avformat_index_get_entries_count(st), keys = 0;
    for (int i = 0; i < n && keys < 2 * workers; i++) {
        const AVIndexEntry *e = avformat_index_get_entry(st, i);
        if (e && (e->flags & AVINDEX_KEYFRAME)) keys++;
    }
    return keys >= 2 * workers;
}

int video_sample_start(Video *v, double fps, int workers, char *err, size_t errlen) {
    log_clear();
    if (!(fps >= 0) || !isfinite(fps)) return fail_msg(err, errlen, v->path, "fps must be a positive number");
    if (rewind_input(v, err, errlen) < 0) return -1;
    v->emitted = v->replay_skip = 0;
    av_frame_unref(v->out);   /* read() after this continues after frames handed out from now on */
    if (fps > 0) {
        /* vf_fps: frame_rate = av_d2q(fps, INT_MAX), time base its inverse. */
        v->out_tb = av_inv_q(av_d2q(fps, INT32_MAX));
        v->sampling = 1;
        if (workers < 0) {
            long cores = sysconf(_SC_NPROCESSORS_ONLN);
            workers = cores < 1 ? 1 : cores > 8 ? 8 : (int)cores;
        }
        /* Any failure to start them leaves this Video on its own decoder. */
        if (v->dec && segments_worthwhile(v, fps, workers)) parallel_start(v, workers);
    }
    return 0;
}

/* The segment decoders cannot go on (see video_segment_next): this Video's
 * own decoder samples again from the start, and the frames handed out so far
 * are produced again without being handed out. */
static int fall_back_to_one_decoder(Video *v, char *err, size_t errlen) {
    parallel_stop(v);
    av_frame_unref(v->held[0]);
    av_frame_unref(v->held[1]);
    fps_init(&v->fps);
    v->replay_skip = v->emitted;
    v->emitted = 0;
    v->next_pts_av = AV_NOPTS_VALUE;
    v->last_out_pts = AV_NOPTS_VALUE;
    if (!v->at_start) return reopen_input(v, err, errlen);
    return 0;
}

/* The next frame for the sampler, from the segment decoders or this Video's
 * own: 1 (in v->frame), 0 at the end, -1 on error. */
static int sample_input(Video *v, char *err, size_t errlen) {
    if (v->par) {
        int64_t end_av;
        int r = parallel_next(v, v->frame, &end_av);
        if (r != SEG_UNSAFE) {
            if (r == 1) v->next_pts_av = end_av;
            return r;
        }
        if (fall_back_to_one_decoder(v, err, errlen) < 0) return -1;
    }
    return decode_next(v, err, errlen);
}

static int64_t to_out_tb(const Video *v, int64_t pts) {
    if (pts == AV_NOPTS_VALUE) return FPS_NOPTS;
    return av_rescale_q_rnd(pts, v->tb, v->out_tb, AV_ROUND_NEAR_INF | AV_ROUND_PASS_MINMAX);
}

int video_sample_next(Video *v, double *t, char *err, size_t errlen) {
    if (!v->sampling) return video_read(v, t, err, errlen);
    log_clear();
    for (;;) {
        int64_t out_pts;
        switch (fps_step(&v->fps, &out_pts)) {
        case FPS_NEED_INPUT: {
            int r = sample_input(v, err, errlen);
            if (r < 0) return -1;
            if (r == 0) {
                /* ffmpeg sends EOF at the end of the last frame, converted
                 * to the stream's time base and then to 1/fps, both rounded. */
                int64_t end = v->next_pts_av == AV_NOPTS_VALUE ? AV_NOPTS_VALUE
                              : av_rescale_q_rnd(v->next_pts_av, AV_TIME_BASE_Q, v->tb,
                                                 AV_ROUND_NEAR_INF | AV_ROUND_PASS_MINMAX);
                fps_push_eof(&v->fps, to_out_tb(v, end));
                break;
            }
            AVFrame *slot = v->held[v->fps.count];
            av_frame_unref(slot);
            av_frame_move_ref(slot, v->frame);
            fps_push(&v->fps, to_out_tb(v, slot->best_effort_timestamp));
            break;
        }
        case FPS_DROP: {
            AVFrame *gone = v->held[0];
            v->held[0] = v->held[1];
            v->held[1] = gone;
            av_frame_unref(gone);
            break;
        }
        case FPS_EMIT: {
            if (v->replay_skip > 0) {   /* handed out before a fall back */
                v->replay_skip--;
                break;
            }
            v->emitted++;
            av_frame_unref(v->out);
            int r = av_frame_ref(v->out, v->held[0]);
            if (r < 0) return fail_av(err, errlen, v->path, "cannot reference a frame", r);
            *t = out_pts * av_q2d(v->out_tb);
            return 1;
        }
        case FPS_END:
            return 0;
        }
    }
}

/* vf_scale's colour handling: the frame's own matrix ("auto") and range. */
static void sws_set_colors(Video *v, const AVFrame *f) {
    if ((int)f->colorspace == v->sws_colorspace && (int)f->color_range == v->sws_range) return;
    int *inv_table, *table, in_full, out_full, brightness, contrast, saturation;
    if (sws_getColorspaceDetails(v->sws, &inv_table, &in_full, &table, &out_full, &brightness, &contrast,
                                 &saturation) >= 0) {
        const int *coeffs = sws_getCoefficients(f->colorspace);
        if (f->color_range != AVCOL_RANGE_UNSPECIFIED) in_full = f->color_range == AVCOL_RANGE_JPEG;
        sws_setColorspaceDetails(v->sws, coeffs, in_full, coeffs, out_full, brightness, contrast, saturation);
    }
    v->sws_colorspace = f->colorspace;
    v->sws_range = f->color_range;
}

int video_frame_to_float(Video *v, float *dst, int out_h, int out_w, char *err, size_t errlen) {
    log_clear();
    const AVFrame *f = v->out;
    if (!f->data[0]) return fail_msg(err, errlen, v->path, "no frame to convert");
    const Orientation o = v->orient;
    int sw = o.transpose ? out_h : out_w, sh = o.transpose ? out_w : out_h;   /* coded orientation */
    /* ffmpeg's default scaler flags (bicubic) keep pixels identical to its
     * output at the native size; area averaging when shrinking. */
    int flags = SWS_BICUBIC;
    if ((int64_t)sw * sh < (int64_t)f->width * f->height && sw <= f->width && sh <= f->height) flags = SWS_AREA;
    struct SwsContext *c = sws_getCachedContext(v->sws, f->width, f->height, f->format, sw, sh, AV_PIX_FMT_RGB24,
                                                flags, NULL, NULL, NULL);
    if (!c) {
        /* sws_getCachedContext has freed the old context when it could not
         * make the new one: forget it (found by fuzz_video: a WebM whose
         * frames change to a size the scaler refuses; the next frame used
         * the freed context) */
        v->sws = NULL;
        v->sws_colorspace = v->sws_range = -1;
        const char *name = av_get_pix_fmt_name(f->format);
        return fail_msg(err, errlen, v->path, "cannot convert %dx%d %s frames to %dx%d RGB", f->width, f->height,
                        name ? name : "(unknown format)", sw, sh);
    }
    if (c != v->sws) v->sws_colorspace = v->sws_range = -1;
    v->sws = c;
    sws_set_colors(v, f);

    int linesize = (sw * 3 + 63) & ~63;
    size_t need = (size_t)linesize * sh + 64;
    if (need > v->rgb_size) {
        av_free(v->rgb);
        v->rgb = av_malloc(need);
        v->rgb_size = v->rgb ? need : 0;
        if (!v->rgb) return fail_msg(err, errlen, v->path, "out of memory for a %dx%d frame", sw, sh);
    }
    uint8_t *planes[4] = {v->rgb, NULL, NULL, NULL};
    int strides[4] = {linesize, 0, 0, 0};
    int r = sws_scale(v->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, planes, strides);
    if (r < 0) return fail_av(err, errlen, v->path, "pixel conversion failed", r);

    const float *lut = v->byte_to_float;
    /* dst is (3, out_h, out_w); each output row walks one source row or column. */
    size_t plane = (size_t)out_h * out_w;
    for (int y = 0; y < out_h; y++) {
        const uint8_t *p;
        ptrdiff_t step;
        if (!o.transpose) {
            int sr = o.flip_rows ? sh - 1 - y : y;
            p = v->rgb + (size_t)sr * linesize + (o.flip_cols ? (size_t)(sw - 1) * 3 : 0);
            step = o.flip_cols ? -3 : 3;
        } else {
            int sc = o.flip_cols ? sw - 1 - y : y;
            p = v->rgb + (size_t)sc * 3 + (o.flip_rows ? (size_t)(sh - 1) * linesize : 0);
            step = o.flip_rows ? -(ptrdiff_t)linesize : linesize;
        }
        float *R = dst + (size_t)y * out_w, *G = R + plane, *B = G + plane;
        for (int x = 0; x < out_w; x++, p += step) {
            R[x] = lut[p[0]];
            G[x] = lut[p[1]];
            B[x] = lut[p[2]];
        }
    }
    return 0;
}

/* ---- writing ---- */

typedef enum WriterKind { WRITER_H264, WRITER_GIF } WriterKind;

struct VideoWriter {
    char *path, *tmp_path;
    WriterKind kind;
    AVRational fps;
    int crf;
    char preset[32];
    AVFormatContext *fmt;
    AVCodecContext *enc;
    AVStream *st;
    AVFrame *frame;
    AVPacket *pkt;
    struct SwsContext *sws;
    int width, height;          /* of the frames given (0 before the first) */
    int enc_w, enc_h;           /* encoded: H.264 pads odd sizes to even */
    uint8_t *rgb;               /* RGB24 staging, enc_w x enc_h, packed */
    int64_t nframes;
    uint8_t **gif_frames;       /* GIF: every frame, RGB24 width x height, kept for the palette */
    int64_t gif_cap;
};

static atomic_uint tmp_counter;

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

static void writer_free(VideoWriter *w) {
    if (w->fmt) {
        if (w->fmt->pb) avio_closep(&w->fmt->pb);
        avformat_free_context(w->fmt);
    }
    avcodec_free_context(&w->enc);
    av_frame_free(&w->frame);
    av_packet_free(&w->pkt);
    sws_freeContext(w->sws);
    av_free(w->rgb);
    for (int64_t i = 0; i < w->nframes && w->gif_frames; i++) free(w->gif_frames[i]);
    free(w->gif_frames);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

void video_writer_abort(VideoWriter *w) {
    if (!w) return;
    if (w->fmt && w->fmt->pb) avio_closep(&w->fmt->pb);
    if (w->tmp_path) unlink(w->tmp_path);
    writer_free(w);
}

VideoWriter *video_writer_open(const char *path, const VideoWriterOptions *opt, char *err, size_t errlen) {
    log_clear();
    WriterKind kind;
    const char *muxer;
    if (ends_with(path, ".mp4") || ends_with(path, ".m4v")) kind = WRITER_H264, muxer = "mp4";
    else if (ends_with(path, ".mov")) kind = WRITER_H264, muxer = "mov";
    else if (ends_with(path, ".gif")) kind = WRITER_GIF, muxer = "gif";
    else {
        fail_msg(err, errlen, path, "unknown video file extension (expected .mp4, .m4v, .mov or .gif)");
        return NULL;
    }
    if (!(opt->fps > 0) || !isfinite(opt->fps) || opt->fps > 1000) {
        fail_msg(err, errlen, path, "fps must be a number in (0, 1000], got %g", opt->fps);
        return NULL;
    }
    if (opt->crf < -1 || opt->crf > 51) {
        fail_msg(err, errlen, path, "crf must be in [0, 51], got %d", opt->crf);
        return NULL;
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fail_msg(err, errlen, path, "is a directory");
        return NULL;
    }

    VideoWriter *w = calloc(1, sizeof *w);
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    int dirlen = slash ? (int)(slash - path) + 1 : 0;
    size_t tmplen = strlen(path) + 64;
    if (!w || !(w->path = strdup(path)) || !(w->tmp_path = malloc(tmplen))) {
        if (w) writer_free(w);
        fail_msg(err, errlen, path, "out of memory");
        return NULL;
    }
    w->kind = kind;
    w->fps = av_d2q(opt->fps, 100000);
    w->crf = opt->crf < 0 ? 18 : opt->crf;
    snprintf(w->preset, sizeof w->preset, "%s", opt->preset ? opt->preset : "medium");

    /* O_EXCL: the name is ours alone; libavformat then writes into it. */
    int fd = -1;
    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        snprintf(w->tmp_path, tmplen, "%.*s.%s.tmp.%ld.%u", dirlen, path, name, (long)getpid(),
                 atomic_fetch_add(&tmp_counter, 1));
        fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        fail_msg(err, errlen, path, "cannot create temporary file %s: %s", w->tmp_path, av_err2str(AVERROR(errno)));
        free(w->tmp_path);
        w->tmp_path = NULL;
        writer_free(w);
        return NULL;
    }
    close(fd);

    int r = avformat_alloc_output_context2(&w->fmt, NULL, muxer, w->tmp_path);
    if (r >= 0) r = avio_open(&w->fmt->pb, w->tmp_path, AVIO_FLAG_WRITE);
    if (r < 0) {
        fail_av(err, errlen, path, "cannot open for writing", r);
        video_writer_abort(w);
        return NULL;
    }
    w->frame = av_frame_alloc();
    w->pkt = av_packet_alloc();
    if (!w->frame || !w->pkt) {
        fail_msg(err, errlen, path, "out of memory");
        video_writer_abort(w);
        return NULL;
    }
    return w;
}

/* Sends packets the encoder has ready to the muxer. */
static int drain_packets(VideoWriter *w, char *err, size_t errlen) {
    for (;;) {
        int r = avcodec_receive_packet(w->enc, w->pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
        if (r < 0) return fail_av(err, errlen, w->path, "encoding failed", r);
        if (w->pkt->duration == 0) w->pkt->duration = 1;
        av_packet_rescale_ts(w->pkt, w->enc->time_base, w->st->time_base);
        w->pkt->stream_index = w->st->index;
        r = av_interleaved_write_frame(w->fmt, w->pkt);
        if (r < 0) return fail_av(err, errlen, w->path, "writing failed", r);
    }
}

/* Opens the encoder and the stream, writes the header. */
static int encoder_start(VideoWriter *w, const AVCodec *codec, enum AVPixelFormat pix_fmt, AVDictionary **opts,
                         AVDictionary **mux_opts, char *err, size_t errlen) {
    w->enc = avcodec_alloc_context3(codec);
    if (!w->enc) return fail_av(err, errlen, w->path, "cannot allocate the encoder", AVERROR(ENOMEM));
    w->enc->width = w->enc_w;
    w->enc->height = w->enc_h;
    w->enc->pix_fmt = pix_fmt;
    w->enc->time_base = av_inv_q(w->fps);
    w->enc->framerate = w->fps;
    w->enc->sample_aspect_ratio = (AVRational){1, 1};
    if (pix_fmt == AV_PIX_FMT_YUV420P) {
        /* What swscale's RGB->YUV default (BT.601, limited range) produces. */
        w->enc->color_range = AVCOL_RANGE_MPEG;
        w->enc->colorspace = AVCOL_SPC_SMPTE170M;
    }
    if (w->fmt->oformat->flags & AVFMT_GLOBALHEADER) w->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    int r = avcodec_open2(w->enc, codec, opts);
    if (r < 0) return fail_av(err, errlen, w->path, "cannot open the encoder", r);
    w->st = avformat_new_stream(w->fmt, NULL);
    if (!w->st) return fail_av(err, errlen, w->path, "cannot add a stream", AVERROR(ENOMEM));
    r = avcodec_parameters_from_context(w->st->codecpar, w->enc);
    if (r < 0) return fail_av(err, errlen, w->path, "bad encoder parameters", r);
    w->st->time_base = w->enc->time_base;
    w->st->avg_frame_rate = w->fps;
    r = avformat_write_header(w->fmt, mux_opts);
    if (r < 0) return fail_av(err, errlen, w->path, "cannot write the header", r);
    w->frame->format = pix_fmt;
    w->frame->width = w->enc_w;
    w->frame->height = w->enc_h;
    r = av_frame_get_buffer(w->frame, 0);
    if (r < 0) return fail_av(err, errlen, w->path, "cannot allocate a frame", r);
    return 0;
}

static int h264_start(VideoWriter *w, char *err, size_t errlen) {
    const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
    if (!codec) codec = avcodec_find_encoder(AV_CODEC_ID_H264);
    if (!codec) return fail_av(err, errlen, w->path, "no H.264 encoder in this FFmpeg", AVERROR_ENCODER_NOT_FOUND);
    AVDictionary *opts = NULL, *mux = NULL;
    char crf[16];
    snprintf(crf, sizeof crf, "%d", w->crf);
    av_dict_set(&opts, "crf", crf, 0);
    av_dict_set(&opts, "preset", w->preset, 0);
    av_dict_set(&mux, "movflags", "+faststart", 0);
    int r = encoder_start(w, codec, AV_PIX_FMT_YUV420P, &opts, &mux, err, errlen);
    av_dict_free(&opts);
    av_dict_free(&mux);
    if (r < 0) return -1;
    w->sws = sws_getContext(w->enc_w, w->enc_h, AV_PIX_FMT_RGB24, w->enc_w, w->enc_h, AV_PIX_FMT_YUV420P,
                            SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, NULL, NULL, NULL);
    if (!w->sws) return fail_msg(err, errlen, w->path, "cannot create the RGB to YUV converter");
    return 0;
}

static inline uint8_t float_to_byte(float x) {
    if (!(x > 0)) return 0;   /* also NaN */
    if (x >= 1) return 255;
    return (uint8_t)(x * 255.0f + 0.5f);
}

/* Packs a (c, h, wd) float frame into RGB24 rows of `linesize` bytes,
 * replicating the last column / row into the padding up to pw x ph. */
static void pack_rgb(uint8_t *dst, int linesize, int pw, int ph, const float *data, int c, int h, int wd,
                     const int64_t stride[3]) {
    for (int y = 0; y < h; y++) {
        uint8_t *row = dst + (size_t)y * linesize;
        for (int k = 0; k < 3; k++) {
            const float *src = data + (c == 3 ? k * stride[0] : 0) + y * stride[1];
            for (int x = 0; x < wd; x++) row[3 * x + k] = float_to_byte(src[x * stride[2]]);
        }
        for (int x = wd; x < pw; x++) memcpy(row + 3 * x, row + 3 * (wd - 1), 3);
    }
    for (int y = h; y < ph; y++) memcpy(dst + (size_t)y * linesize, dst + (size_t)(h - 1) * linesize, (size_t)pw * 3);
}

int video_writer_write(VideoWriter *w, const float *data, int c, int h, int wd, const int64_t stride[3], char *err,
                       size_t errlen) {
    log_clear();
    if (c != 3 && c != 1) return fail_msg(err, errlen, w->path, "frame must have 3 (RGB) or 1 (grey) channels, got %d", c);
    if (h < 1 || wd < 1 || h > 16384 || wd > 16384)
        return fail_msg(err, errlen, w->path, "frame size %dx%d (HxW) is out of range [1, 16384]", h, wd);
    if (w->width && (h != w->height || wd != w->width))
        return fail_msg(err, errlen, w->path, "frame of size %dx%d (HxW) differs from the first frame's %dx%d",
                        h, wd, w->height, w->width);
    if (!w->width) {
        w->width = wd;
        w->height = h;
        w->enc_w = w->kind == WRITER_H264 ? (wd + 1) & ~1 : wd;
        w->enc_h = w->kind == WRITER_H264 ? (h + 1) & ~1 : h;
        w->rgb = av_malloc((size_t)w->enc_w * w->enc_h * 3);
        if (!w->rgb) return fail_msg(err, errlen, w->path, "out of memory");
        if (w->kind == WRITER_H264 && h264_start(w, err, errlen) < 0) return -1;
    }
    if (w->kind == WRITER_GIF) {
        if (w->nframes == w->gif_cap) {
            int64_t cap = w->gif_cap ? 2 * w->gif_cap : 64;
            uint8_t **p = realloc(w->gif_frames, (size_t)cap * sizeof *p);
            if (!p) return fail_msg(err, errlen, w->path, "out of memory");
            w->gif_frames = p;
            w->gif_cap = cap;
        }
        uint8_t *buf = malloc((size_t)wd * h * 3);
        if (!buf) return fail_msg(err, errlen, w->path, "out of memory for frame %lld", (long long)w->nframes + 1);
        pack_rgb(buf, wd * 3, wd, h, data, c, h, wd, stride);
        w->gif_frames[w->nframes++] = buf;
        return 0;
    }
    pack_rgb(w->rgb, w->enc_w * 3, w->enc_w, w->enc_h, data, c, h, wd, stride);
    int r = av_frame_make_writable(w->frame);
    if (r < 0) return fail_av(err, errlen, w->path, "cannot allocate a frame", r);
    const uint8_t *src[4] = {w->rgb, NULL, NULL, NULL};
    int src_stride[4] = {w->enc_w * 3, 0, 0, 0};
    sws_scale(w->sws, src, src_stride, 0, w->enc_h, w->frame->data, w->frame->linesize);
    w->frame->pts = w->nframes++;
    r = avcodec_send_frame(w->enc, w->frame);
    if (r < 0) return fail_av(err, errlen, w->path, "encoding failed", r);
    return drain_packets(w, err, errlen);
}

/* ---- GIF: one global palette (median cut + k-means) and Floyd-Steinberg ---- */

typedef struct ColorBin {
    double rgb[3];   /* mean colour of the pixels in the bin */
    double n;        /* pixel count */
} ColorBin;

typedef struct Box {
    int lo, hi;      /* bins [lo, hi) */
    double sse;      /* sum of squared distances to the box mean: what splitting reduces */
} Box;

#define BIN_CMP(K)                                                                      \
    static int bin_cmp_##K(const void *a, const void *b) {                              \
        double x = ((const ColorBin *)a)->rgb[K], y = ((const ColorBin *)b)->rgb[K];    \
        return (x > y) - (x < y);                                                       \
    }
BIN_CMP(0)
BIN_CMP(1)
BIN_CMP(2)
#undef BIN_CMP
static int (*const bin_cmp[3])(const void *, const void *) = {bin_cmp_0, bin_cmp_1, bin_cmp_2};

static void box_stats(const ColorBin *bins, Box *b, double mean[3], double var[3]) {
    double n = 0, s[3] = {0, 0, 0}, q[3] = {0, 0, 0};
    for (int i = b->lo; i < b->hi; i++)
        for (int k = 0; k < 3; k++) {
            s[k] += bins[i].n * bins[i].rgb[k];
            q[k] += bins[i].n * bins[i].rgb[k] * bins[i].rgb[k];
        }
    for (int i = b->lo; i < b->hi; i++) n += bins[i].n;
    b->sse = 0;
    for (int k = 0; k < 3; k++) {
        mean[k] = n > 0 ? s[k] / n : 0;
        var[k] = n > 0 ? q[k] - s[k] * mean[k] : 0;
        b->sse += var[k];
    }
    if (b->hi - b->lo < 2) b->sse = 0;
}

/* Builds up to 256 colours (palette[i] = {r, g, b}) for the frames; returns the count. */
static int palette_build(uint8_t **frames, int64_t nframes, size_t npix, uint8_t palette[256][3]) {
    enum { BITS = 5, NBINS = 1 << (3 * BITS) };
    double (*acc)[4] = calloc(NBINS, sizeof *acc);
    ColorBin *bins = malloc(NBINS * sizeof *bins);
    if (!acc || !bins) {
        free(acc);
        free(bins);
        return -1;
    }
    for (int64_t f = 0; f < nframes; f++) {
        const uint8_t *p = frames[f];
        for (size_t i = 0; i < npix; i++, p += 3) {
            int key = (p[0] >> (8 - BITS)) << (2 * BITS) | (p[1] >> (8 - BITS)) << BITS | p[2] >> (8 - BITS);
            acc[key][0] += p[0];
            acc[key][1] += p[1];
            acc[key][2] += p[2];
            acc[key][3] += 1;
        }
    }
    int nb = 0;
    for (int i = 0; i < NBINS; i++)
        if (acc[i][3] > 0) {
            for (int k = 0; k < 3; k++) bins[nb].rgb[k] = acc[i][k] / acc[i][3];
            bins[nb++].n = acc[i][3];
        }
    free(acc);

    /* Median cut: split the box with the largest squared error along its
     * widest axis at the pixel-weighted median. */
    Box boxes[256];
    double mean[256][3], var[3];
    int nboxes = 1;
    boxes[0] = (Box){0, nb, 0};
    box_stats(bins, &boxes[0], mean[0], var);
    while (nboxes < 256) {
        int best = -1;
        for (int i = 0; i < nboxes; i++)
            if (boxes[i].sse > 0 && (best < 0 || boxes[i].sse > boxes[best].sse)) best = i;
        if (best < 0) break;
        Box *b = &boxes[best];
        box_stats(bins, b, mean[best], var);
        int axis = var[0] >= var[1] && var[0] >= var[2] ? 0 : var[1] >= var[2] ? 1 : 2;
        qsort(bins + b->lo, (size_t)(b->hi - b->lo), sizeof *bins, bin_cmp[axis]);
        double total = 0, run = 0;
        for (int i = b->lo; i < b->hi; i++) total += bins[i].n;
        int cut = b->lo + 1;
        for (int i = b->lo; i < b->hi - 1; i++) {
            run += bins[i].n;
            cut = i + 1;
            if (run >= total / 2) break;
        }
        boxes[nboxes] = (Box){cut, b->hi, 0};
        b->hi = cut;
        box_stats(bins, b, mean[best], var);
        box_stats(bins, &boxes[nboxes], mean[nboxes], var);
        nboxes++;
    }

    /* A few k-means rounds over the bins pull each colour to the centre of
     * the pixels that actually map to it. */
    for (int iter = 0; iter < 4; iter++) {
        double sum[256][4];
        memset(sum, 0, sizeof sum);
        for (int i = 0; i < nb; i++) {
            int bi = 0;
            double bd = INFINITY;
            for (int j = 0; j < nboxes; j++) {
                double d = 0;
                for (int k = 0; k < 3; k++) d += (bins[i].rgb[k] - mean[j][k]) * (bins[i].rgb[k] - mean[j][k]);
                if (d < bd) bd = d, bi = j;
            }
            for (int k = 0; k < 3; k++) sum[bi][k] += bins[i].n * bins[i].rgb[k];
            sum[bi][3] += bins[i].n;
        }
        for (int j = 0; j < nboxes; j++)
            if (sum[j][3] > 0)
                for (int k = 0; k < 3; k++) mean[j][k] = sum[j][k] / sum[j][3];
    }
    free(bins);
    for (int j = 0; j < nboxes; j++)
        for (int k = 0; k < 3; k++) palette[j][k] = (uint8_t)lrint(fmin(255, fmax(0, mean[j][k])));
    return nboxes;
}

typedef struct PaletteMap {
    uint8_t colors[256][3];
    int n;
    int16_t cache[1 << 18];   /* 6 bits per channel -> palette index, -1 = not yet computed */
} PaletteMap;

static int palette_nearest(PaletteMap *pm, int r, int g, int b) {
    int key = (r >> 2) << 12 | (g >> 2) << 6 | (b >> 2);
    if (pm->cache[key] >= 0) return pm->cache[key];
    int qr = (r & ~3) | 2, qg = (g & ~3) | 2, qb = (b & ~3) | 2;
    int best = 0, bd = INT32_MAX;
    for (int j = 0; j < pm->n; j++) {
        int dr = qr - pm->colors[j][0], dg = qg - pm->colors[j][1], db = qb - pm->colors[j][2];
        int d = dr * dr + dg * dg + db * db;
        if (d < bd) bd = d, best = j;
    }
    pm->cache[key] = (int16_t)best;
    return best;
}

/* Floyd-Steinberg with serpentine scan; err0/err1 hold (wd + 2) * 3 floats. */
static void dither_frame(PaletteMap *pm, uint8_t *out, int out_linesize, const uint8_t *rgb, int wd, int h,
                         float *err0, float *err1) {
    memset(err0, 0, sizeof(float) * 3 * (wd + 2));
    for (int y = 0; y < h; y++) {
        memset(err1, 0, sizeof(float) * 3 * (wd + 2));
        int dir = (y & 1) ? -1 : 1;
        for (int i = 0; i < wd; i++) {
            int x = dir > 0 ? i : wd - 1 - i;
            const uint8_t *p = rgb + ((size_t)y * wd + x) * 3;
            float *e = err0 + 3 * (x + 1);
            int v[3];
            for (int k = 0; k < 3; k++) {
                float f = p[k] + e[k];
                v[k] = f < 0 ? 0 : f > 255 ? 255 : (int)lrintf(f);
            }
            int idx = palette_nearest(pm, v[0], v[1], v[2]);
            out[(size_t)y * out_linesize + x] = (uint8_t)idx;
            for (int k = 0; k < 3; k++) {
                float q = (float)(v[k] - pm->colors[idx][k]);
                err0[3 * (x + 1 + dir) + k] += q * (7.0f / 16);
                err1[3 * (x + 1 - dir) + k] += q * (3.0f / 16);
                err1[3 * (x + 1) + k] += q * (5.0f / 16);
                err1[3 * (x + 1 + dir) + k] += q * (1.0f / 16);
            }
        }
        float *t = err0;
        err0 = err1;
        err1 = t;
    }
}

static int gif_finish(VideoWriter *w, char *err, size_t errlen) {
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_GIF);
    if (!codec) return fail_av(err, errlen, w->path, "no GIF encoder in this FFmpeg", AVERROR_ENCODER_NOT_FOUND);
    if (encoder_start(w, codec, AV_PIX_FMT_PAL8, NULL, NULL, err, errlen) < 0) return -1;
    PaletteMap *pm = malloc(sizeof *pm);
    float *e0 = malloc(sizeof(float) * 3 * (w->width + 2)), *e1 = malloc(sizeof(float) * 3 * (w->width + 2));
    int rc = 0;
    if (!pm || !e0 || !e1) {
        rc = fail_msg(err, errlen, w->path, "out of memory");
        goto done;
    }
    pm->n = palette_build(w->gif_frames, w->nframes, (size_t)w->width * w->height, pm->colors);
    if (pm->n < 0) {
        rc = fail_msg(err, errlen, w->path, "out of memory");
        goto done;
    }
    memset(pm->cache, 0xff, sizeof pm->cache);
    for (int64_t i = 0; i < w->nframes && rc == 0; i++) {
        int r = av_frame_make_writable(w->frame);
        if (r < 0) {
            rc = fail_av(err, errlen, w->path, "cannot allocate a frame", r);
            break;
        }
        uint32_t *pal = (uint32_t *)w->frame->data[1];
        for (int j = 0; j < 256; j++)
            pal[j] = j < pm->n ? 0xffu << 24 | (uint32_t)pm->colors[j][0] << 16 | (uint32_t)pm->colors[j][1] << 8 |
                                     pm->colors[j][2]
                               : 0xff000000u;
        dither_frame(pm, w->frame->data[0], w->frame->linesize[0], w->gif_frames[i], w->width, w->height, e0, e1);
        w->frame->pts = i;
        r = avcodec_send_frame(w->enc, w->frame);
        if (r < 0) rc = fail_av(err, errlen, w->path, "encoding failed", r);
        else rc = drain_packets(w, err, errlen);
    }
done:
    free(pm);
    free(e0);
    free(e1);
    return rc;
}

int video_writer_close(VideoWriter *w, char *err, size_t errlen) {
    log_clear();
    int rc = 0;
    if (w->nframes == 0) {
        rc = fail_msg(err, errlen, w->path, "no frames were written (file left as it was)");
        goto out;
    }
    if (w->kind == WRITER_GIF && gif_finish(w, err, errlen) < 0) {
        rc = -1;
        goto out;
    }
    int r = avcodec_send_frame(w->enc, NULL);
    if (r < 0 && r != AVERROR_EOF) {
        rc = fail_av(err, errlen, w->path, "encoding failed", r);
        goto out;
    }
    if (drain_packets(w, err, errlen) < 0) {
        rc = -1;
        goto out;
    }
    r = av_write_trailer(w->fmt);
    if (r < 0) {
        rc = fail_av(err, errlen, w->path, "cannot finish the file", r);
        goto out;
    }
    r = w->fmt->pb->error;
    int r2 = avio_closep(&w->fmt->pb);
    if (r >= 0) r = r2;
    if (r < 0) {
        rc = fail_av(err, errlen, w->path, "writing failed", r);
        goto out;
    }
    /* Durable before visible: fsync the data, then rename, then the directory. */
    int fd = open(w->tmp_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        rc = fail_msg(err, errlen, w->path, "fsync of %s failed: %s", w->tmp_path, strerror(errno));
        if (fd >= 0) close(fd);
        goto out;
    }
    close(fd);
    if (rename(w->tmp_path, w->path) != 0) {
        rc = fail_msg(err, errlen, w->path, "rename from %s failed: %s (file left as it was)", w->tmp_path,
                      strerror(errno));
        goto out;
    }
    free(w->tmp_path);
    w->tmp_path = NULL;   /* renamed: nothing to remove */
    const char *slash = strrchr(w->path, '/');
    char *dir = slash ? strndup(w->path, (size_t)(slash - w->path) + 1) : strdup(".");
    int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
out:
    video_writer_abort(w);
    return rc;
}

/* video_private.h: the inside of a Video, shared by video.c (one decoder)
 * and video_parallel.c (segment decoders on threads of their own). Not for
 * the bindings: they see video.h only. */
#ifndef DD_VIDEO_PRIVATE_H
#define DD_VIDEO_PRIVATE_H

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>

#include "video.h"

enum {
    PACKET_QUEUE = 16,          /* look-ahead for packet_skippable */
    RECENT_PTS = 32,
    SEGMENT_MIN_PACKETS = 48,   /* segment mode: shortest segment, in packets */
};

typedef struct Parallel Parallel;

/* How decoded (coded-orientation) pixels map to displayed ones: for output
 * pixel (r, c), swap to (c, r) if transpose, then mirror the source row
 * and/or column. */
typedef struct Orientation {
    int transpose, flip_rows, flip_cols;
} Orientation;

struct Video {
    char *path;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    int stream;
    int threads;                /* decoder threads; 0: video_set_decoder_threads' setting */
    AVRational tb;              /* the stream's time base */
    int64_t ts_offset;          /* added to every timestamp: minus the start time */
    int64_t default_dur_av;     /* one frame at the average rate, AV_TIME_BASE units */
    AVPacket *queue[PACKET_QUEUE]; /* video packets read ahead, oldest at q_head */
    int q_head, q_len;
    int64_t recent_pts[RECENT_PTS]; /* packet pts already passed on (offset applied) */
    int recent_pos;
    int flushed;                /* the decoder was sent the end-of-stream packet */
    int h264_nal_len;           /* H.264: NAL length size (0 = Annex B); -1 other codecs */
    int skip_ok;                /* frames come out in pts order with pts as their time */
    int64_t last_out_pts;
    int64_t frames_skipped;
    AVFrame *frame;             /* scratch for the decoder */
    AVFrame *out;               /* the frame handed out last (what to_float converts) */
    AVFrame *held[2];           /* the sampler's buffered frames, aligned with fps.pts */
    AVFrame *cand, *lookahead;  /* seeking: best frame so far, and the one after it */
    int has_cand, has_lookahead;

    int demux_eof;
    int at_start;               /* no packet read since the input was opened */
    int64_t frames_decoded;     /* since video_open, across rewinds */
    int last_error;             /* last decode/demux error, reported if no frame decodes */
    int consecutive_errors;     /* decoder errors without new input in between */
    int64_t next_pts_av;        /* end of the last decoded frame (ffmpeg's ist->next_pts) */

    int sampling;               /* video_sample_next resamples (fps > 0) */
    AVRational out_tb;          /* 1 / fps */
    FpsState fps;
    int seeking;
    int64_t seek_target;        /* in tb, offset applied */

    struct SwsContext *sws;
    int sws_colorspace, sws_range;
    uint8_t *rgb;               /* RGB24 conversion target */
    size_t rgb_size;
    float byte_to_float[256];   /* i / 255 */

    Orientation orient;
    VideoInfo info;
    /* FFmpeg's own opener, called by io_open_self for the file itself */
    int (*io_open_default)(AVFormatContext *s, AVIOContext **pb, const char *url, int flags, AVDictionary **opts);
    char refused[160];          /* the first other file the input asked to open */

    /* Sampling on segment decoders (video_parallel.c): par is non-NULL while
     * they run. emitted counts the frames video_sample_next handed out since
     * video_sample_start; after a fall back to this Video's own decoder,
     * replay_skip of them are produced again and not handed out. */
    Parallel *par;
    int64_t emitted, replay_skip;
    int64_t read_after;         /* video_read skips frames at or before this pts */

    /* Segment mode: this Video is one of seg_n decoders and decodes only the
     * segments s with s % seg_n == seg_w (video_segment_next). */
    int seg_n, seg_w;
    int64_t seg_index;          /* segment of the last packet queued */
    int seg_packets;            /* packets queued since that segment began */
    int64_t q_seg[PACKET_QUEUE]; /* segment of each queued packet */
    int64_t cur_seg;            /* the own segment being decoded; -1 between */
    int seg_unsafe;             /* a packet was malformed or carried parameter sets unlike the container's */
};

/* Segment mode, for video_parallel.c. */
enum { SEG_FRAME = 1, SEG_END, SEG_EOF, SEG_UNSAFE };
/* Opens path with `threads` decoder threads. */
Video *video_open_threads(const char *path, int threads, char *err, size_t errlen);
/* Puts a freshly opened Video into segment mode, sampling at out_tb. */
void video_segment_mode(Video *v, int worker, int workers, AVRational out_tb);
/* The next event of an own segment: SEG_FRAME (the frame in v->frame, pts
 * offset applied; v->next_pts_av its end), SEG_END (the segment *seg is
 * over), SEG_EOF, or SEG_UNSAFE: the file breaks a premise of segment
 * decoding (a frame without time, out of order, damaged or concealed, a
 * read error, a parameter set in a packet unlike the container's); only one
 * decoder over the whole file is exact there. */
int video_segment_next(Video *v, int64_t *seg);

/* video_parallel.c */
/* Starts `workers` segment decoders sampling v's file at v->out_tb: 0, or
 * -1 when they cannot (v stays on its own decoder). */
int parallel_start(Video *v, int workers);
/* The next frame in presentation order into dst, with the end of the frame
 * (AV_TIME_BASE units) in *end_av: 1, 0 at the end, SEG_UNSAFE. */
int parallel_next(Video *v, AVFrame *dst, int64_t *end_av);
/* Stops and frees the decoders (NULL par: nothing); their frame counts are
 * added to v's. */
void parallel_stop(Video *v);
void parallel_stats(const Video *v, int64_t *decoded, int64_t *skipped);
/* The segment decoders running (or run to the end), 1 without them. */
int parallel_decoders(const Video *v);

#endif

/* video.h: reading and writing video files with FFmpeg (libavformat,
 * libavcodec, libswscale), in plain C (no Lua).
 *
 * Reading: video_open picks the best video stream of any container FFmpeg
 * demuxes. Frames come out in presentation order, either one by one
 * (video_read, after an optional video_seek) or resampled to a constant rate
 * (video_sample_start / video_sample_next) exactly as `ffmpeg -i f -vf fps=R`
 * does: the same number of frames, the same instants, the same choice of
 * source frame. Either way the frame is held inside the Video and converted
 * on demand by video_frame_to_float, so frames that are decoded but not
 * chosen are never converted. Rotation metadata (the display matrix) is
 * applied: sizes and pixels are as displayed, as ffmpeg's autorotate does.
 *
 * Writing: video_writer_open picks the format from the extension: .mp4/.m4v/
 * .mov give H.264 (libx264 when present) in yuv420p, .gif an animated GIF
 * with one global 256-colour palette (median cut + Floyd-Steinberg). The
 * bytes go to a temporary file ".<name>.tmp.<pid>.<n>" next to the path,
 * renamed over it by video_writer_close; video_writer_abort removes it.
 *
 * Every function that can fail returns a negative value (or NULL) with
 * "<path>: <why>" in err, where <why> ends with FFmpeg's own message
 * (av_err2str, plus the last error FFmpeg logged when there is one). Nothing
 * aborts the process; a failed Video or VideoWriter can still be freed. */
#ifndef DD_VIDEO_H
#define DD_VIDEO_H

#include <stddef.h>
#include <stdint.h>

enum { VIDEO_ERR_LEN = 1024 };

typedef struct VideoInfo {
    int width, height;        /* as displayed (rotation applied) */
    double fps;               /* average frame rate; 0 when unknown */
    double duration;          /* seconds: the stream's, else the container's; 0 when unknown */
    int64_t frame_count;      /* the container's count, else round(duration * fps) */
    int frame_count_exact;    /* 1 when frame_count came from the container */
    int rotation;             /* degrees clockwise applied to decoded frames: 0, 90, 180, 270 */
    char codec[32];           /* FFmpeg's codec name: "h264", "vp9", "ffv1", ... */
} VideoInfo;

typedef struct Video Video;

/* Installs the FFmpeg log hook that lets errors quote FFmpeg's last logged
 * error, and silences FFmpeg's console output unless the environment
 * variable DD_FFMPEG_LOGLEVEL names a level ("error", "warning", "info",
 * "debug", ...). Process-wide; idempotent. */
void video_log_init(void);

/* Decoder threads of every Video opened afterwards: 0 (the default) for
 * three per core, else n. The fuzz harness decodes on one thread: FFmpeg's
 * thread pool is not ours to test, and starting six threads per input was
 * most of its time. */
void video_set_decoder_threads(int n);
/* Frames above n pixels are refused by the decoder (AVCodecContext
 * max_pixels) in every Video opened afterwards; 0 (the default) leaves
 * FFmpeg's own limit. The fuzz harness keeps its frames small with it. */
void video_set_max_pixels(int64_t n);
Video *video_open(const char *path, char *err, size_t errlen);
void video_close(Video *v);   /* accepts NULL */
const VideoInfo *video_info(const Video *v);

/* The next frame in presentation order: 1 with its time (seconds from the
 * start of the file) in *t, 0 at the end, -1 on error. After video_seek(s)
 * the first frame returned is the one on screen at s. */
int video_read(Video *v, double *t, char *err, size_t errlen);
int video_seek(Video *v, double seconds, char *err, size_t errlen);

/* Restarts from the beginning of the file and samples at fps frames per
 * second (fps > 0), or returns every frame when fps == 0. With workers >= 2
 * (-1: one per core, at most 8) an H.264 file sampled at no more than half
 * its frame rate is decoded by that many decoders at once, each on its own
 * segments between IDR frames (video_parallel.c); the frames are the same,
 * bit for bit, as with one decoder (workers 0 or 1), which is also what any
 * other file gets, and where a file turns out not to allow segments. */
int video_sample_start(Video *v, double fps, int workers, char *err, size_t errlen);
/* The next sampled frame: 1 with its time in *t (k / fps from the first
 * frame's rounded time), 0 at the end, -1 on error. */
int video_sample_next(Video *v, double *t, char *err, size_t errlen);

/* Frames decoded, and frames left undecoded because they could not be
 * chosen, since video_open. */
void video_stats(const Video *v, int64_t *decoded, int64_t *skipped);
/* Decoders of the current sampling: n while segment decoders run (or ran
 * to the end), 1 otherwise: one decoder, after a fall back to it, or once a
 * read or seek ended the sampling. */
int video_decoders(const Video *v);

/* Converts the frame last returned by video_read or video_sample_next into
 * dst, (3, out_h, out_w) planar RGB in [0, 1]; out_h and out_w are in the
 * displayed orientation. Scales with area averaging when shrinking. */
int video_frame_to_float(Video *v, float *dst, int out_h, int out_w, char *err, size_t errlen);

/* ---- the fps resampler of libavfilter's vf_fps, on timestamps only ----
 * Timestamps are integers in units of 1/fps (the caller rounds them to the
 * nearest, ties away from zero, as vf_fps does). The caller keeps up to two
 * frames aligned with pts[0], pts[1] and feeds them in presentation order. */
#define FPS_NOPTS INT64_MIN
typedef struct FpsState {
    int64_t next_pts;      /* time of the next output; FPS_NOPTS before the first */
    int64_t pts[2];        /* the buffered frames */
    int count;
    int eof;
    int64_t eof_pts;       /* end of the last frame */
} FpsState;

typedef enum FpsAction {
    FPS_NEED_INPUT,        /* call fps_push or fps_push_eof */
    FPS_EMIT,              /* output buffered frame 0 at time *out_pts */
    FPS_DROP,              /* buffered frame 0 is discarded: shift frame 1 down */
    FPS_END,               /* nothing more */
} FpsAction;

void fps_init(FpsState *s);
void fps_push(FpsState *s, int64_t pts);   /* only when fps_step said FPS_NEED_INPUT */
void fps_push_eof(FpsState *s, int64_t end_pts);
FpsAction fps_step(FpsState *s, int64_t *out_pts);

/* ---- writing ---- */
typedef struct VideoWriter VideoWriter;

typedef struct VideoWriterOptions {
    double fps;               /* > 0 */
    int crf;                  /* H.264 quality, 0..51 (lower is better); -1 = default 18 */
    const char *preset;       /* x264 preset; NULL = "medium" */
} VideoWriterOptions;

/* Checks the extension and options and creates the temporary file, so an
 * unwritable path fails here. */
VideoWriter *video_writer_open(const char *path, const VideoWriterOptions *opt, char *err, size_t errlen);
/* One frame: c is 3 (RGB) or 1 (grey, replicated), values in [0, 1]
 * (clamped), element (k, y, x) at data[k*stride[0] + y*stride[1] + x*stride[2]].
 * Every frame must have the size of the first. */
int video_writer_write(VideoWriter *w, const float *data, int c, int h, int wd, const int64_t stride[3],
                       char *err, size_t errlen);
/* Finishes the file and renames it over the path. Frees w either way; on
 * failure the temporary file is removed and a file at the path is untouched. */
int video_writer_close(VideoWriter *w, char *err, size_t errlen);
/* Discards everything: removes the temporary file, frees w. Accepts NULL. */
void video_writer_abort(VideoWriter *w);

#endif

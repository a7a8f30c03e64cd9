/* video_prefetch.h: decoding ahead on a thread of its own.
 *
 * While the caller works on one sampled frame (silhouettes, resizing, Lua),
 * a producer thread runs video_sample_next and video_frame_to_float for the
 * next ones into a ring of `depth` converted frames, so decoding and the
 * caller's work overlap. The frames, their times and any error are exactly
 * those of calling video_sample_next + video_frame_to_float in a loop; the
 * Video belongs to the producer until prefetch_stop returns. Plain C, no Lua. */
#ifndef DD_VIDEO_PREFETCH_H
#define DD_VIDEO_PREFETCH_H

#include <stddef.h>
#include "video.h"

typedef struct Prefetch Prefetch;

/* After video_sample_start(v, ...): starts decoding frames of (3, h, w).
 * NULL with a message in err when memory or a thread cannot be had. */
Prefetch *prefetch_start(Video *v, int h, int w, int depth, char *err, size_t errlen);
/* The next frame copied into dst (3*h*w floats) with its time in *t: 1; at
 * the end 0; -1 with the producer's error in err (then 0 or -1 again). */
int prefetch_next(Prefetch *p, float *dst, double *t, char *err, size_t errlen);
/* video_stats as of the producer's latest frame (the Video's own counters
 * are the producer's while it runs). */
void prefetch_stats(Prefetch *p, int64_t *decoded, int64_t *skipped);
/* Stops the producer, waits for it and frees p; the Video is the caller's
 * again, positioned somewhere past the frames returned. Accepts NULL. */
void prefetch_stop(Prefetch *p);

#endif

/* vision.h: the image kernels behind dd.vision, in plain C (no Lua, no malloc).
 *
 * Planes are row-major (h, w) float arrays; images are (C, H, W) planes back
 * to back. Masks are (h, w) arrays of bytes, 1 = foreground, 0 = background.
 * Every buffer, scratch included, is given by the caller: the Lua binding
 * allocates them as userdata so that an error cannot leak them. */
#ifndef DD_VISION_H
#define DD_VISION_H

#include <stddef.h>
#include <stdint.h>

/* ---- silhouettes ---- */

/* The paper's rule on n pixels: channel c of pixel p is
 * frame[c * channel_stride + p], channels 1 or 3, values in [0, 1]; each
 * channel is rounded to an 8-bit value k in 0..255 (as the original pipeline
 * read 8-bit frames) and a pixel whose k_r + k_g + k_b (3 k for grey) is
 * > sum_above is background (1.0), else dancer (0.0). out is (n). A whole
 * contiguous (channels, h, w) frame is one call (channel_stride = n = h*w);
 * a view with contiguous rows is one call per row. */
void silhouette_threshold(float *out, const float *frame, int channels, int64_t channel_stride, int64_t n,
                          double sum_above);

/* mask[p] = 1 where max over channels |frame - background| > threshold. */
void foreground_by_difference(uint8_t *mask, const float *frame, const float *background, int channels,
                              int64_t hw, float threshold);

/* ---- background model: per-value median over N frames ---- */

/* Samples are kept as 16-bit values round(clamp(v, 0, 1) * 65535), value-major
 * (the n samples of one value side by side): memory n * values * 2 bytes, exact
 * for 8-bit and 16-bit sources (k/255 = 257 k/65535). */
typedef struct BackgroundModel {
    uint16_t *samples;   /* (values, n) */
    int64_t values;      /* C * H * W */
    int n;               /* samples per value */
    int added;           /* frames added so far */
} BackgroundModel;

static inline size_t background_model_bytes(int64_t values, int n) { return (size_t)values * (size_t)n * sizeof(uint16_t); }
void background_model_init(BackgroundModel *m, uint16_t *samples, int64_t values, int n);
/* Adds one frame of m->values floats; the caller adds exactly n frames. */
void background_model_add(BackgroundModel *m, const float *frame);
/* out[v] = the median of the samples of v (mean of the two middle ones when
 * n is even). scratch holds n uint16_t. */
void background_model_median(const BackgroundModel *m, float *out, uint16_t *scratch);

/* ---- binary morphology ---- */

typedef enum MorphOp { MORPH_ERODE, MORPH_DILATE, MORPH_OPEN, MORPH_CLOSE } MorphOp;
/* Square: all offsets with |dy|, |dx| <= radius; disc: dy^2 + dx^2 <= radius^2. */
typedef enum MorphShape { MORPH_SQUARE, MORPH_DISC } MorphShape;

/* Scratch bytes for morph_apply on an (h, w) mask: a copy padded by radius,
 * its row prefix counts and the half-width of each row of the element. */
size_t morph_scratch_bytes(int64_t h, int64_t w, int radius);
/* Applies op in place, the mask taken as lying on an infinite background:
 * erosion eats shapes from the border; a closing does not fill the gap
 * between a shape and the border, an opening keeps thick shapes that touch
 * it. radius 0 leaves the mask unchanged. open = erode then dilate; close =
 * dilate then erode. */
void morph_apply(uint8_t *mask, int64_t h, int64_t w, MorphOp op, int radius, MorphShape shape, void *scratch);

/* ---- connected components (8-connectivity) ---- */

/* labels[p] = 0 on background, 1..count on the foreground, numbered in raster
 * order of each component's first pixel. stack holds h*w int32_t. h*w must be
 * below 2^31. Returns count. */
int32_t components_label(int32_t *labels, const uint8_t *mask, int64_t h, int64_t w, int32_t *stack);
/* areas[k] = pixel count of label k for k in 1..count (areas[0] = background). */
void components_areas(int64_t *areas, const int32_t *labels, int64_t hw, int32_t count);
/* The most 8-connected components an (h, w) mask can have: isolated pixels
 * on every other row and column. */
static inline int64_t components_max_count(int64_t h, int64_t w) { return ((h + 1) / 2) * ((w + 1) / 2); }
/* Clears the components smaller than min_pixels. labels and stack hold h*w
 * int32_t each, areas components_max_count(h, w) + 1 int64_t. */
void components_remove_small(uint8_t *mask, int64_t h, int64_t w, int64_t min_pixels, int32_t *labels,
                             int32_t *stack, int64_t *areas);

/* ---- resampling ---- */

typedef enum ResizeFilter {
    RESIZE_AREA,      /* exact box integration: each output pixel is the area-weighted mean of the input it covers */
    RESIZE_BILINEAR,  /* triangle filter widened by the scale when shrinking (PIL), plain bilinear when enlarging */
} ResizeFilter;

/* Maps the source window [src_y, src_y + src_h) x [src_x, src_x + src_w) of
 * an (in_h, in_w) plane (continuous pixel coordinates, pixel i spans [i, i+1);
 * the window lies inside the plane) onto an (out_h, out_w) plane. */
typedef struct ResizeSpec {
    int64_t in_h, in_w, out_h, out_w;
    double src_y, src_x, src_h, src_w;
    ResizeFilter filter;
} ResizeSpec;

/* Weight tables for both axes and one intermediate plane, computed once and
 * applied to any number of planes. */
typedef struct ResizePlan {
    ResizeSpec spec;
    int taps_y, taps_x;          /* weights per output row / column */
    int64_t *start_y, *start_x;  /* first input index of each output index */
    float *weight_y, *weight_x;  /* (out, taps), zero-padded */
    int64_t row_lo, row_hi;      /* input rows the vertical pass reads */
    float *tmp;                  /* (row_hi - row_lo, out_w) */
} ResizePlan;

/* The spec for a whole-plane (stretch) resize. */
ResizeSpec resize_spec_stretch(int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w, ResizeFilter filter);
size_t resize_plan_bytes(const ResizeSpec *spec);
/* mem holds resize_plan_bytes(spec) bytes, 8-byte aligned. */
void resize_plan_init(ResizePlan *plan, void *mem, const ResizeSpec *spec);
/* out rows are out_stride floats apart (out_w for a packed plane). */
void resize_plan_run(const ResizePlan *plan, float *out, int64_t out_stride, const float *in);

/* ---- augmentation ---- */

/* One image of c planes (h, w): mirrored left to right when flip, then moved
 * dx pixels right and dy down (negative: left, up); pixels that come from
 * outside the image get fill. out and in do not overlap. */
void image_flip_shift(float *out, const float *in, int64_t c, int64_t h, int64_t w, int flip, int64_t dx, int64_t dy,
                      float fill);

/* ---- colour ---- */

/* ITU-R BT.601 luma, as PIL's convert('L') (without its rounding to 8 bits):
 * out = 0.299 r + 0.587 g + 0.114 b over planes of hw values. */
void grey_from_rgb(float *out, const float *rgb, int64_t hw);

#endif

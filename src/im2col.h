/* im2col.h: the geometry of a 2-d convolution and the im2col / col2im
 * rearrangements that turn it into matrix products, shared by Conv2d and
 * ConvTranspose2d (plain C, no Lua); also the prototypes of the image
 * layers' kernels (nn_conv2d.c, nn_conv_transpose2d.c, nn_maxpool2d.c,
 * nn_upsample.c) for tests and benchmarks.
 *
 * A ConvShape describes a convolution from its "image" side to its "grid"
 * side: the image (N, C, H, W) is read through K kernels of (C, KH, KW) at
 * grid positions (OH, OW). Grid position (oy, ox) and kernel tap (i, j) read
 * image pixel (oy*sh - pt + i*dh, ox*sw - pl + j*dw); pixels outside the
 * image are zeros (the padding). Conv2d goes image -> grid; ConvTranspose2d,
 * its adjoint, goes grid -> image with the same weight layout (K, C, KH, KW),
 * which is PyTorch's (in, out, kh, kw) for a transposed convolution.
 *
 * The sizes are stored, not recomputed: a transposed convolution with
 * output_padding has image rows that no grid position reaches. */
#ifndef DD_IM2COL_H
#define DD_IM2COL_H

#include <stdint.h>

#include "activation.h"

typedef struct ConvShape {
    int64_t n;              /* batch */
    int64_t c, h, w;        /* image side: channels and size */
    int64_t k, oh, ow;      /* grid side: channels (one per kernel) and size */
    int64_t kh, kw;         /* kernel size */
    int64_t sh, sw;         /* stride */
    int64_t dh, dw;         /* dilation */
    int64_t pt, pb, pl, pr; /* zero padding: top, bottom, left, right */
} ConvShape;

/* TensorFlow's 'same' padding along one dimension: the grid is
 * ceil(image / stride) long and the padding is the least that makes it so,
 * split evenly with the odd pixel at the end (bottom / right). extent is the
 * dilated kernel size, dilation*(k-1) + 1. For stride 1 this is PyTorch's
 * padding='same' too. */
void conv_same_padding(int64_t *pad_begin, int64_t *pad_end, int64_t image, int64_t extent, int64_t stride);

/* Rows [oy0, oy1) of the grid as columns: col is (C*KH*KW, (oy1-oy0)*OW),
 * row (c*KH + i)*KW + j holding image channel c under tap (i, j); im is one
 * image (C, H, W). Padding positions get zeros. */
void im2col(float *col, const float *im, const ConvShape *s, int64_t oy0, int64_t oy1);
/* The adjoint: adds every entry of col (as laid out by im2col for grid rows
 * [oy0, oy1)) into the image pixel it came from; entries on padding are
 * dropped. im is (C, H, W) and is accumulated into, not overwritten. */
void col2im(float *im, const float *col, const ConvShape *s, int64_t oy0, int64_t oy1);

/* 1x1 kernel, stride 1, no padding: the image itself is the column matrix,
 * so no im2col is needed. */
int conv_is_pointwise(const ConvShape *s);
/* The column matrix of grid rows [oy0, oy1) of the image im (C, H, W):
 * im itself when pointwise (leading dimension OH*OW in *ld), else im2col
 * into tile (leading dimension (oy1-oy0)*OW). */
const float *conv_band_columns(float *tile, const float *im, const ConvShape *s, int64_t oy0, int64_t oy1,
                               int64_t *ld);
/* Grid rows per im2col tile: whole images when they are small, otherwise a
 * band of rows whose columns stay cache-sized (see im2col.c). */
int64_t conv_tile_rows(const ConvShape *s);

/* Threads the fast kernels split into: one block of images each, at most
 * parallel_threads() (dd_get_num_threads()) and at most N. */
int conv_threads(const ConvShape *s);
/* The scratch of the fast kernels, carved out of ws:
 *   tile      one im2col tile per thread, tile_floats apart
 *   part      one private dW (K*C*KH*KW) and db (max(K, C), at part_db)
 *             per thread after the first, part_floats apart: threads add
 *             their images' gradients there and the caller sums them in
 *             thread order, so results depend on the thread count but
 *             never on timing. */
typedef struct ConvScratch {
    int threads;
    float *tile, *part, *dz;
    int64_t tile_floats, part_floats, part_db, dz_floats;
    /* has_adjoint: s has stride 1 and dilation 1 (and is not pointwise), so
     * its adjoint is the convolution adj (conv_adjoint_shape) with the
     * weights conv_weight_flip writes into wflip; the tiles fit both. */
    int has_adjoint;
    ConvShape adj;
    float *wflip;
} ConvScratch;
/* dz: per thread dz_floats for one image's output gradient through a fused
 * activation (0 when there is none); wflip: K*C*KH*KW floats when
 * has_adjoint. */
void conv_scratch(ConvScratch *sc, float *ws, const ConvShape *s, int64_t dz_floats);
/* Floats of ws the fast kernels need: the sum of the above. Depends on
 * dd_get_num_threads(), so size the workspace right before the call. */
int64_t conv_workspace_floats(const ConvShape *s, int64_t dz_floats);
/* With stride 1 and dilation 1 the adjoint of the convolution s (grid to
 * image: Conv2d's input gradient, ConvTranspose2d's forward) is itself a
 * convolution: of the grid (K channels of OH x OW) by the kernel flipped in
 * space with in and out swapped, padded by KH-1-pt above (and so on), giving
 * the image (C channels of H x W). *f describes it; returns 0 (f untouched)
 * when s is not such a convolution, is pointwise, or has fewer image than
 * grid channels (C < K), where the direct way moves less memory. As a convolution the
 * product has K*KH*KW-deep GEMMs and im2col instead of
 * the shallow W^T GEMM and the accumulating col2im (see docs/layers-conv.md). */
int conv_adjoint_shape(ConvShape *f, const ConvShape *s);
/* wf (C, K, KH, KW) [c][k][i][j] = w (K, C, KH, KW) [k][c][KH-1-i][KW-1-j]. */
void conv_weight_flip(float *wf, const float *w, const ConvShape *s);
/* Task t's gradient targets in the backward kernels: task 0 adds into dw
 * and db themselves, the others into their own part, zeroed here (a NULL
 * target stays NULL). conv_tasks_reduce then adds the parts into dw and db
 * in task order. */
void conv_task_grads(const ConvScratch *sc, int t, float **dw, float **db, int64_t weights, int64_t biases);
void conv_tasks_reduce(const ConvScratch *sc, float *dw, float *db, int64_t weights, int64_t biases);
/* The gradient before a fused activation: dy itself when act is linear,
 * else dy * f'(y) for the n values of one image, in task t's dz. */
const float *conv_grad_through(const ConvScratch *sc, int t, Act act, const float *dy, const float *y, int64_t n);

/* Images [n0, n1) of y = act(conv(x)) through s (im2col + GEMM per band,
 * the activation applied to each band right after its GEMM): x is
 * (N, C, H, W), w is (K, C*KH*KW), b is (K) or NULL, y is (N, K, OH, OW);
 * tile holds one tile for s (ignored when pointwise). */
void conv_images_forward(float *y, const float *x, const float *w, const float *b, Act act, float *tile,
                         const ConvShape *s, int64_t n0, int64_t n1);
/* One image: dw (K, C*KH*KW) += dyn (K, OH*OW) @ im2col(xn)^T. */
void conv_image_weight_grad(float *dw, const float *dyn, const float *xn, float *tile, const ConvShape *s);
/* Both of the above take the direct kernels (conv_direct.h) when
 * conv_direct_usable(s); their tile then holds the padded image and, at
 * conv_direct_weights(tile, s), the packed weights. */
float *conv_direct_weights(float *tile, const ConvShape *s);

/* db[c] += sum of g[c, :] for g (channels, len): bias gradients. */
void channel_sums_add(float *db, const float *g, int64_t channels, int64_t len);
/* y[c, :] = b[c] for y (channels, len), or zeros when b is NULL. */
void channel_fill(float *y, const float *b, int64_t channels, int64_t len);

/* ---- kernels of the image layers; all tensors NCHW and contiguous ----
 * Outputs first; parameter gradients are added (+=), input gradients
 * overwritten; any gradient pointer may be NULL to skip it. ws holds
 * conv_workspace_floats(s, dz) floats (dz: 0 for forward, the _dz_floats
 * below for backward). The convolutions take a fused activation applied to
 * their output (ACT_LINEAR for none); their backward reads that output y.
 * The _ref versions are direct loops without activation. */

/* Conv2d: x is the image (N, C, H, W), w is (K, C, KH, KW), b is (K) or
 * NULL, y is the grid (N, K, OH, OW). */
void conv2d_forward(float *y, const float *x, const float *w, const float *b, Act act, float *ws,
                    const ConvShape *s);
void conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                     const float *y, Act act, float *ws, const ConvShape *s);
/* The dz_floats the backward pass of Conv2d / ConvTranspose2d needs for act. */
int64_t conv2d_dz_floats(const ConvShape *s, Act act);
int64_t conv_transpose2d_dz_floats(const ConvShape *s, Act act);
void conv2d_forward_ref(float *y, const float *x, const float *w, const float *b, const ConvShape *s);
void conv2d_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                         const ConvShape *s);

/* ConvTranspose2d, the adjoint of the Conv2d that s describes: x is the
 * grid (N, K, OH, OW) with K = in_channels, w is (K, C, KH, KW) = PyTorch's
 * (in, out, kh, kw), b is (C) or NULL, y is the image (N, C, H, W) with
 * C = out_channels. */
void conv_transpose2d_forward(float *y, const float *x, const float *w, const float *b, Act act, float *ws,
                              const ConvShape *s);
void conv_transpose2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                               const float *y, Act act, float *ws, const ConvShape *s);
void conv_transpose2d_forward_ref(float *y, const float *x, const float *w, const float *b, const ConvShape *s);
void conv_transpose2d_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x,
                                   const float *w, const ConvShape *s);

/* MaxPool2d over planes: x is (planes, H, W), y and argmax are
 * (planes, OH, OW); window (oy, ox) covers rows oy*stride - pad + [0, kernel)
 * and the same for columns, padding never wins. argmax receives the flat
 * index iy*W + ix of the winner within its plane: the first maximum, or the
 * last NaN (PyTorch's rule, so NaN propagates). */
void maxpool2d_forward(float *y, int32_t *argmax, const float *x, int64_t planes, int64_t h, int64_t w,
                       int64_t oh, int64_t ow, int64_t kernel, int64_t stride, int64_t pad);
/* dx (planes, H, W) is overwritten: each dy goes to its window's winner. */
void maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax, int64_t planes, int64_t h, int64_t w,
                        int64_t oh, int64_t ow);
void maxpool2d_forward_ref(float *y, const float *x, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                           int64_t kernel, int64_t stride, int64_t pad);
void maxpool2d_backward_ref(float *dx, const float *dy, const float *x, int64_t planes, int64_t h, int64_t w,
                            int64_t oh, int64_t ow, int64_t kernel, int64_t stride, int64_t pad);

/* Upsample, nearest, integer scale: x is (planes, H, W), y is
 * (planes, H*scale, W*scale); backward sums dy over each scale x scale block. */
void upsample_nearest_forward(float *y, const float *x, int64_t planes, int64_t h, int64_t w, int64_t scale);
void upsample_nearest_backward(float *dx, const float *dy, int64_t planes, int64_t h, int64_t w, int64_t scale);
void upsample_nearest_forward_ref(float *y, const float *x, int64_t planes, int64_t h, int64_t w, int64_t scale);
void upsample_nearest_backward_ref(float *dx, const float *dy, int64_t planes, int64_t h, int64_t w, int64_t scale);

#endif

/* conv_direct.h: direct stride-1 convolution kernels (no im2col, no GEMM
 * packing), used by Conv2d and ConvTranspose2d where they apply; plain C,
 * no Lua.
 *
 * For a ConvShape s (im2col.h) with stride 1 and dilation 1, the image is
 * copied once into a zero-padded buffer (conv_direct_pad: every tap of every
 * grid position is then an in-bounds read), and the kernels read it in
 * place:
 *   forward      y (K, OH, OW) = w (K, C, KH, KW) over the padded image,
 *                4 grid channels x 24 grid columns of one row per register
 *                tile, bias and ReLU fused;
 *   weight grad  dw (K, C, KH, KW) += dy (K, OH, OW) against the padded
 *                image, 4 grid channels x 3 taps per register tile, summed
 *                over bands of rows.
 * They need AVX2 and FMA (checked at run time) and K a multiple of 4;
 * conv_direct_usable says whether s qualifies, and the callers fall back to
 * im2col + GEMM otherwise. The summation order is fixed by the shapes, so
 * results do not depend on timing. */
#ifndef DD_CONV_DIRECT_H
#define DD_CONV_DIRECT_H

#include <stdint.h>

#include "activation.h"
#include "im2col.h"

/* 1 when s has stride 1, dilation 1, K % 4 == 0, is not pointwise (that is a
 * plain GEMM already), its padded image fits 16M floats (64 MiB; larger
 * images keep im2col's bands of rows), the CPU has AVX2 and FMA, and the
 * path is enabled. */
int conv_direct_usable(const ConvShape *s);
/* Tests and benchmarks compare both paths: 0 turns the direct kernels off
 * (every shape goes through im2col + GEMM), 1 back on (where usable). */
void conv_direct_set_enabled(int on);
int conv_direct_enabled(void);

/* Floats of one padded image (C, OH + KH - 1, conv_direct_row(s)) and of
 * the packed weights (K * C * KH * KW). */
int64_t conv_direct_row(const ConvShape *s);
int64_t conv_direct_pad_floats(const ConvShape *s);
int64_t conv_direct_pack_floats(const ConvShape *s);

/* xp (pad_floats) = the image x (C, H, W) with the padding as zeros: row r,
 * column q of channel c holds x[c][r - pt][q - pl] (0 outside the image). */
void conv_direct_pad(float *xp, const float *x, const ConvShape *s);
/* wp (pack_floats) = w (K, C, KH, KW) with 4 grid channels interleaved. */
void conv_direct_pack(float *wp, const float *w, const ConvShape *s);
/* One image: y (K, OH, OW) = act(conv(xp) + b); b may be NULL. */
void conv_direct_forward(float *y, const float *xp, const float *wp, const float *b, Act act, const ConvShape *s);
/* One image: dw (K, C, KH, KW) += dy (K, OH, OW) correlated with xp. */
void conv_direct_weight_grad(float *dw, const float *dy, const float *xp, const ConvShape *s);

#endif

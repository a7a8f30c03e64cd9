/* conv_direct.c: direct stride-1 convolutions on AVX2 + FMA (see
 * conv_direct.h for the contract).
 *
 * Why: as im2col + GEMM, a 32 -> 32 3x3 convolution of a 120x200 image
 * copies its 288 x 24,000 column matrix twice per pass (im2col, then
 * OpenBLAS packs it) and zeroes the output before the GEMM adds into it;
 * those copies were a quarter of the autoencoder's training step. Here the
 * image is padded once (1/9 of the column matrix) and each register tile
 * reads it in place.
 *
 * Forward tile: 4 grid channels x 3 vectors of 8 grid columns (12 of the 16
 * ymm registers hold sums); per tap (c, i, j) it loads 3 vectors of the
 * padded row shifted by j and broadcasts 4 weights: 7 loads per 12 FMAs.
 * Weight-gradient tile: 4 grid channels x 3 taps j of one (c, i); per 8 grid
 * columns it loads 4 vectors of dy and 3 of the image: 7 loads per 12 FMAs,
 * the 12 sums reduced once per band of rows. Vectors that run past OW are
 * masked (stores in forward, dy loads in the weight gradient), so the
 * padded buffer's extra columns never reach a result.
 *
 * Only the functions below carry target("avx2,fma") (avx2.h); the rest of
 * the program stays baseline x86-64, and conv_direct_usable checks the CPU. */
#include "conv_direct.h"
#include "avx2.h"

#include <string.h>

/* grid channels per tile, vectors of grid columns per forward tile, taps
 * per weight-gradient tile, grid rows per weight-gradient band */
enum { KB = 4, NV = 3, NJ = 3, BAND = 8 };

/* 64 MiB of padded image per thread at most */
#define DIRECT_MAX_PAD_FLOATS ((int64_t)1 << 24)

static int enabled = 1;

void conv_direct_set_enabled(int on) { enabled = on != 0; }
int conv_direct_enabled(void) { return enabled; }

int conv_direct_usable(const ConvShape *s) {
    if (!enabled || !cpu_has_avx2_fma()) return 0;
    if (s->sh != 1 || s->sw != 1 || s->dh != 1 || s->dw != 1 || s->k % KB != 0) return 0;
    if (conv_is_pointwise(s) || s->oh < 1 || s->ow < 1 || s->c < 1) return 0;
    /* the padded image is one whole image per thread; im2col, which works in
     * bands of rows, keeps huge images within a few MiB of scratch */
    return conv_direct_pad_floats(s) <= DIRECT_MAX_PAD_FLOATS;
}

static int64_t round8(int64_t n) { return (n + 7) & ~(int64_t)7; }

/* A padded row: the vectors of the last tile reach column round8(OW) - 1,
 * plus KW - 1 for the taps. */
int64_t conv_direct_row(const ConvShape *s) { return round8(round8(s->ow) + s->kw - 1); }
int64_t conv_direct_pad_floats(const ConvShape *s) { return s->c * (s->oh + s->kh - 1) * conv_direct_row(s); }
int64_t conv_direct_pack_floats(const ConvShape *s) { return s->k * s->c * s->kh * s->kw; }

void conv_direct_pad(float *xp, const float *x, const ConvShape *s) {
    const int64_t ph = s->oh + s->kh - 1, rw = conv_direct_row(s);
    /* the image's columns land on [pl, pl + W), clipped to the row */
    const int64_t qlo = s->pl < 0 ? 0 : s->pl < rw ? s->pl : rw, qend = s->pl + s->w, qhi = qend < rw ? qend : rw;
    for (int64_t c = 0; c < s->c; c++)
        for (int64_t r = 0; r < ph; r++) {
            float *row = xp + (c * ph + r) * rw;
            int64_t iy = r - s->pt;
            if (iy < 0 || iy >= s->h || qhi <= qlo) {
                memset(row, 0, (size_t)rw * sizeof *row);
                continue;
            }
            memset(row, 0, (size_t)qlo * sizeof *row);
            memcpy(row + qlo, x + (c * s->h + iy) * s->w + (qlo - s->pl), (size_t)(qhi - qlo) * sizeof *row);
            memset(row + qhi, 0, (size_t)(rw - qhi) * sizeof *row);
        }
}

void conv_direct_pack(float *wp, const float *w, const ConvShape *s) {
    const int64_t taps = s->kh * s->kw, ct = s->c * taps;
    for (int64_t kb = 0; kb < s->k / KB; kb++)
        for (int64_t e = 0; e < ct; e++)
            for (int q = 0; q < KB; q++) wp[(kb * ct + e) * KB + q] = w[(kb * KB + q) * ct + e];
}

#if DD_AVX2

AVX2_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* y[q][0 .. 8nv) for q < 4 (rows L apart; the last vector holds `tail`
 * valid columns) = b[q] + sum over c, i, j of wp[c][i][j][q] * xp[c][i][j + ..]. */
AVX2_INLINE void forward_tile(float *y, int64_t L, const float *xp, const float *wp, const float *b, int relu,
                              int64_t c_n, int64_t kh, int64_t kw, int64_t plane, int64_t rw, const int nv, int tail) {
    __m256 acc[KB][NV];
    for (int q = 0; q < KB; q++) {
        __m256 bq = b ? _mm256_set1_ps(b[q]) : _mm256_setzero_ps();
        for (int v = 0; v < nv; v++) acc[q][v] = bq;
    }
    for (int64_t c = 0; c < c_n; c++)
        for (int64_t i = 0; i < kh; i++) {
            const float *row = xp + c * plane + i * rw;
            for (int64_t j = 0; j < kw; j++, wp += KB) {
                __m256 xv[NV];
                for (int v = 0; v < nv; v++) xv[v] = _mm256_loadu_ps(row + j + 8 * v);
                for (int q = 0; q < KB; q++) {
                    __m256 wq = _mm256_broadcast_ss(wp + q);
                    for (int v = 0; v < nv; v++) acc[q][v] = _mm256_fmadd_ps(wq, xv[v], acc[q][v]);
                }
            }
        }
    __m256i last = avx2_lanes(tail);
    for (int q = 0; q < KB; q++)
        for (int v = 0; v < nv; v++) {
            __m256 a = relu ? _mm256_max_ps(acc[q][v], _mm256_setzero_ps()) : acc[q][v];
            if (v < nv - 1 || tail == 8) _mm256_storeu_ps(y + q * L + 8 * v, a);
            else _mm256_maskstore_ps(y + q * L + 8 * v, last, a);
        }
}

AVX2_TARGET static void forward_image(float *y, const float *xp, const float *wp, const float *b, int relu,
                                 const ConvShape *s) {
    const int64_t L = s->oh * s->ow, rw = conv_direct_row(s), plane = (s->oh + s->kh - 1) * rw;
    const int64_t kblock = s->c * s->kh * s->kw * KB;
    for (int64_t oy = 0; oy < s->oh; oy++)
        for (int64_t x0 = 0; x0 < s->ow; x0 += 8 * NV) {
            int64_t left = s->ow - x0;
            int nv = left >= 8 * NV ? NV : (int)((left + 7) / 8), tail = (int)(left - 8 * (nv - 1));
            const float *xt = xp + oy * rw + x0;
            for (int64_t kb = 0; kb < s->k / KB; kb++) {
                float *yt = y + kb * KB * L + oy * s->ow + x0;
                const float *wt = wp + kb * kblock, *bt = b ? b + kb * KB : NULL;
                if (nv == 3) forward_tile(yt, L, xt, wt, bt, relu, s->c, s->kh, s->kw, plane, rw, 3, tail);
                else if (nv == 2) forward_tile(yt, L, xt, wt, bt, relu, s->c, s->kh, s->kw, plane, rw, 2, tail);
                else forward_tile(yt, L, xt, wt, bt, relu, s->c, s->kh, s->kw, plane, rw, 1, tail);
            }
        }
}

/* dw[q][t] (rows wstride apart) += sum over rows r and columns x of
 * dy[q][r][x] * xp[r][x + t], for q < 4 (dy rows L apart) and t < nj. */
AVX2_INLINE void weight_tile(float *dw, int64_t wstride, const float *dy, int64_t L, const float *xp, int64_t rw,
                             int64_t ow, int64_t rows, const int nj) {
    __m256 acc[KB][NJ];
    for (int q = 0; q < KB; q++)
        for (int t = 0; t < nj; t++) acc[q][t] = _mm256_setzero_ps();
    const int64_t full = ow & ~(int64_t)7;
    const __m256i last = avx2_lanes((int)(ow - full));
    for (int64_t r = 0; r < rows; r++) {
        const float *d = dy + r * ow, *xr = xp + r * rw;
        for (int64_t x = 0; x <= ow - 8; x += 8) {
            __m256 xv[NJ];
            for (int t = 0; t < nj; t++) xv[t] = _mm256_loadu_ps(xr + x + t);
            for (int q = 0; q < KB; q++) {
                __m256 dq = _mm256_loadu_ps(d + q * L + x);
                for (int t = 0; t < nj; t++) acc[q][t] = _mm256_fmadd_ps(dq, xv[t], acc[q][t]);
            }
        }
        if (full < ow) { /* dy's lanes past OW load as zeros */
            __m256 xv[NJ];
            for (int t = 0; t < nj; t++) xv[t] = _mm256_loadu_ps(xr + full + t);
            for (int q = 0; q < KB; q++) {
                __m256 dq = _mm256_maskload_ps(d + q * L + full, last);
                for (int t = 0; t < nj; t++) acc[q][t] = _mm256_fmadd_ps(dq, xv[t], acc[q][t]);
            }
        }
    }
    for (int q = 0; q < KB; q++)
        for (int t = 0; t < nj; t++) dw[q * wstride + t] += hsum(acc[q][t]);
}

AVX2_TARGET static void weight_grad_image(float *dw, const float *dy, const float *xp, const ConvShape *s) {
    const int64_t L = s->oh * s->ow, rw = conv_direct_row(s), plane = (s->oh + s->kh - 1) * rw;
    const int64_t taps = s->kh * s->kw, wstride = s->c * taps;
    for (int64_t oy0 = 0; oy0 < s->oh; oy0 += BAND) {
        int64_t rows = s->oh - oy0 < BAND ? s->oh - oy0 : BAND;
        for (int64_t kb = 0; kb < s->k / KB; kb++) {
            const float *dyt = dy + kb * KB * L + oy0 * s->ow;
            for (int64_t c = 0; c < s->c; c++)
                for (int64_t i = 0; i < s->kh; i++)
                    for (int64_t j0 = 0; j0 < s->kw; j0 += NJ) {
                        float *dwt = dw + kb * KB * wstride + c * taps + i * s->kw + j0;
                        const float *xt = xp + c * plane + (oy0 + i) * rw + j0;
                        int64_t nj = s->kw - j0 < NJ ? s->kw - j0 : NJ;
                        if (nj == 3) weight_tile(dwt, wstride, dyt, L, xt, rw, s->ow, rows, 3);
                        else if (nj == 2) weight_tile(dwt, wstride, dyt, L, xt, rw, s->ow, rows, 2);
                        else weight_tile(dwt, wstride, dyt, L, xt, rw, s->ow, rows, 1);
                    }
        }
    }
}

#endif

void conv_direct_forward(float *y, const float *xp, const float *wp, const float *b, Act act, const ConvShape *s) {
#if DD_AVX2
    forward_image(y, xp, wp, b, act == ACT_RELU, s);
    if (act != ACT_LINEAR && act != ACT_RELU)
        for (int64_t k = 0; k < s->k; k++) act_forward(act, y + k * s->oh * s->ow, s->oh * s->ow);
#else
    (void)y, (void)xp, (void)wp, (void)b, (void)act, (void)s; /* never usable here */
#endif
}

void conv_direct_weight_grad(float *dw, const float *dy, const float *xp, const ConvShape *s) {
#if DD_AVX2
    weight_grad_image(dw, dy, xp, s);
#else
    (void)dw, (void)dy, (void)xp, (void)s;
#endif
}

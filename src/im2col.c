/* im2col.c: im2col / col2im for strided, dilated, asymmetrically padded 2-d
 * convolutions, and what both convolutions share: the per-thread scratch
 * layout, the im2col + GEMM loops over a block of images, channel helpers.
 *
 * The loops run over one kernel tap (c, i, j) at a time, so an output row of
 * the column matrix is a strided run of one image row. The range of grid
 * columns whose tap lands inside the image is worked out once per tap, so
 * the innermost loops have no bounds tests, divisions or modulos: a memcpy
 * (stride 1) or a strided copy between two zero-filled margins. */
#include "im2col.h"
#include "conv_direct.h"
#include "parallel.h"
#include "tensor_math.h"

#include <string.h>

/* Grid columns [lo, hi) whose tap at offset off (= j*dw - pl) lands inside
 * an image row of width w: 0 <= ox*sw + off < w. */
static void tap_range(int64_t *lo, int64_t *hi, int64_t off, int64_t sw, int64_t w, int64_t ow) {
    int64_t a = off >= 0 ? 0 : (-off + sw - 1) / sw;
    int64_t b = off > w - 1 ? 0 : (w - 1 - off) / sw + 1;
    if (a > ow) a = ow;
    if (b > ow) b = ow;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

void im2col(float *col, const float *im, const ConvShape *s, int64_t oy0, int64_t oy1) {
    const int64_t ow = s->ow, sw = s->sw;
    for (int64_t c = 0; c < s->c; c++) {
        const float *plane = im + c * s->h * s->w;
        for (int64_t i = 0; i < s->kh; i++) {
            for (int64_t j = 0; j < s->kw; j++) {
                int64_t off = j * s->dw - s->pl, lo, hi;
                tap_range(&lo, &hi, off, sw, s->w, ow);
                for (int64_t oy = oy0; oy < oy1; oy++, col += ow) {
                    int64_t iy = oy * s->sh - s->pt + i * s->dh;
                    if (iy < 0 || iy >= s->h) {
                        memset(col, 0, (size_t)ow * sizeof *col);
                        continue;
                    }
                    if (lo > 0) memset(col, 0, (size_t)lo * sizeof *col);
                    if (hi > lo) {
                        const float *src = plane + iy * s->w + off + lo * sw; /* pixel of column lo */
                        if (sw == 1) {
                            memcpy(col + lo, src, (size_t)(hi - lo) * sizeof *col);
                        } else {
                            for (int64_t ox = lo, k = 0; ox < hi; ox++, k += sw) col[ox] = src[k];
                        }
                    }
                    if (hi < ow) memset(col + hi, 0, (size_t)(ow - hi) * sizeof *col);
                }
            }
        }
    }
}

void col2im(float *im, const float *col, const ConvShape *s, int64_t oy0, int64_t oy1) {
    const int64_t ow = s->ow, sw = s->sw;
    for (int64_t c = 0; c < s->c; c++) {
        float *plane = im + c * s->h * s->w;
        for (int64_t i = 0; i < s->kh; i++) {
            for (int64_t j = 0; j < s->kw; j++) {
                int64_t off = j * s->dw - s->pl, lo, hi;
                tap_range(&lo, &hi, off, sw, s->w, ow);
                for (int64_t oy = oy0; oy < oy1; oy++, col += ow) {
                    int64_t iy = oy * s->sh - s->pt + i * s->dh;
                    if (iy < 0 || iy >= s->h || hi <= lo) continue;
                    float *dst = plane + iy * s->w + off + lo * sw; /* pixel of column lo */
                    if (sw == 1) {
                        floats_add(dst, col + lo, hi - lo);
                    } else {
                        for (int64_t ox = lo, k = 0; ox < hi; ox++, k += sw) dst[k] += col[ox];
                    }
                }
            }
        }
    }
}

void conv_same_padding(int64_t *pad_begin, int64_t *pad_end, int64_t image, int64_t extent, int64_t stride) {
    int64_t grid = (image + stride - 1) / stride;
    int64_t total = (grid - 1) * stride + extent - image;
    if (total < 0) total = 0;
    *pad_begin = total / 2;
    *pad_end = total - total / 2;
}

int conv_is_pointwise(const ConvShape *s) {
    return s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->pt == 0 && s->pb == 0 && s->pl == 0 &&
           s->pr == 0 && s->oh == s->h && s->ow == s->w;
}

/* A band of about 1M floats (4 MiB) of columns: im2col writes it and the
 * GEMMs read it right after, while it is still in cache (L2 is 1 MiB a core
 * and L3 32 MiB on the machine this was tuned on), and the GEMMs stay wide
 * enough (thousands of columns) to run near peak. Bands of 1/4 to 4 MiB
 * were within a few percent of each other on the autoencoder's 32->32 3x3
 * layers; whole 120x200 images (27 MiB) were 15-25% slower, and much
 * smaller bands multiply the GEMM calls (each a thread synchronisation). */
#ifndef CONV_TILE_FLOATS
#define CONV_TILE_FLOATS ((int64_t)1 << 20)
#endif

int64_t conv_tile_rows(const ConvShape *s) {
    if (conv_is_pointwise(s)) return s->oh;
    int64_t per_row = s->c * s->kh * s->kw * s->ow;
    int64_t rows = per_row > 0 ? CONV_TILE_FLOATS / per_row : s->oh;
    if (rows < 1) rows = 1;
    if (rows > s->oh) rows = s->oh;
    return rows;
}

int conv_threads(const ConvShape *s) {
    int t = parallel_threads();
    return s->n < t ? (s->n > 0 ? (int)s->n : 1) : t;
}

/* Scratch pieces start on 64-byte lines so two threads never share one. */
static int64_t round_line(int64_t floats) { return (floats + 15) & ~(int64_t)15; }

/* The direct kernels' tile: the padded image, then the packed weights. */
static int64_t direct_tile_floats(const ConvShape *s) {
    return round_line(conv_direct_pad_floats(s)) + conv_direct_pack_floats(s);
}

/* Room for an im2col tile, which the paths without a direct kernel use
 * (Conv2d's input gradient when it is no convolution, ConvTranspose2d's
 * forward), and for the direct kernels' tile when s has them. */
static int64_t tile_floats(const ConvShape *s) {
    int64_t t = conv_is_pointwise(s) ? 0 : s->c * s->kh * s->kw * conv_tile_rows(s) * s->ow;
    int64_t d = conv_direct_usable(s) ? direct_tile_floats(s) : 0;
    return t > d ? t : d;
}

float *conv_direct_weights(float *tile, const ConvShape *s) { return tile + round_line(conv_direct_pad_floats(s)); }

int conv_adjoint_shape(ConvShape *f, const ConvShape *s) {
    if (s->sh != 1 || s->sw != 1 || s->dh != 1 || s->dw != 1 || conv_is_pointwise(s)) return 0;
    /* Fewer image channels than grid channels (the decoder's 32 -> 1 output
     * layer): the adjoint's im2col would be K/C times larger than the
     * col2im it replaces and its GEMM C rows tall; the direct way is cheaper. */
    if (s->c < s->k) return 0;
    if (s->pt > s->kh - 1 || s->pb > s->kh - 1 || s->pl > s->kw - 1 || s->pr > s->kw - 1) return 0;
    ConvShape a = *s;
    a.c = s->k, a.h = s->oh, a.w = s->ow;
    a.k = s->c, a.oh = s->h, a.ow = s->w;
    a.pt = s->kh - 1 - s->pt, a.pb = s->kh - 1 - s->pb;
    a.pl = s->kw - 1 - s->pl, a.pr = s->kw - 1 - s->pr;
    /* stride 1: the grid is image + padding - kernel + 1 long both ways */
    if (a.h + a.pt + a.pb - a.kh + 1 != a.oh || a.w + a.pl + a.pr - a.kw + 1 != a.ow) return 0;
    *f = a;
    return 1;
}

void conv_weight_flip(float *wf, const float *w, const ConvShape *s) {
    const int64_t taps = s->kh * s->kw;
    for (int64_t k = 0; k < s->k; k++)
        for (int64_t c = 0; c < s->c; c++)
            for (int64_t t = 0; t < taps; t++) wf[(c * s->k + k) * taps + taps - 1 - t] = w[(k * s->c + c) * taps + t];
}

void conv_scratch(ConvScratch *sc, float *ws, const ConvShape *s, int64_t dz_floats) {
    const int64_t weights = s->k * s->c * s->kh * s->kw;
    sc->threads = conv_threads(s);
    sc->has_adjoint = conv_adjoint_shape(&sc->adj, s);
    int64_t tile = tile_floats(s), adj_tile = sc->has_adjoint ? tile_floats(&sc->adj) : 0;
    sc->tile_floats = round_line(tile > adj_tile ? tile : adj_tile);
    sc->part_db = round_line(weights);
    sc->part_floats = sc->part_db + round_line(s->k > s->c ? s->k : s->c);
    sc->dz_floats = round_line(dz_floats);
    sc->tile = ws;
    sc->part = ws ? ws + sc->threads * sc->tile_floats : NULL;
    sc->dz = ws ? sc->part + (sc->threads - 1) * sc->part_floats : NULL;
    sc->wflip = ws && sc->has_adjoint ? sc->dz + sc->threads * sc->dz_floats : NULL;
}

int64_t conv_workspace_floats(const ConvShape *s, int64_t dz_floats) {
    ConvScratch sc;
    conv_scratch(&sc, NULL, s, dz_floats);
    return sc.threads * sc.tile_floats + (sc.threads - 1) * sc.part_floats + sc.threads * sc.dz_floats +
           (sc.has_adjoint ? round_line(s->k * s->c * s->kh * s->kw) : 0);
}

void conv_task_grads(const ConvScratch *sc, int t, float **dw, float **db, int64_t weights, int64_t biases) {
    if (t == 0) return;
    float *part = sc->part + (t - 1) * sc->part_floats;
    if (*dw) memset(*dw = part, 0, (size_t)weights * sizeof **dw);
    if (*db) memset(*db = part + sc->part_db, 0, (size_t)biases * sizeof **db);
}

void conv_tasks_reduce(const ConvScratch *sc, float *dw, float *db, int64_t weights, int64_t biases) {
    for (int t = 1; t < sc->threads; t++) {
        const float *part = sc->part + (t - 1) * sc->part_floats;
        if (dw) floats_add(dw, part, weights);
        if (db) floats_add(db, part + sc->part_db, biases);
    }
}

const float *conv_grad_through(const ConvScratch *sc, int t, Act act, const float *dy, const float *y, int64_t n) {
    if (act == ACT_LINEAR) return dy;
    float *dz = sc->dz + t * sc->dz_floats;
    act_backward(act, dz, dy, y, n);
    return dz;
}

const float *conv_band_columns(float *tile, const float *im, const ConvShape *s, int64_t oy0, int64_t oy1,
                               int64_t *ld) {
    if (conv_is_pointwise(s)) {
        *ld = s->oh * s->ow;
        return im + oy0 * s->ow;
    }
    im2col(tile, im, s, oy0, oy1);
    *ld = (oy1 - oy0) * s->ow;
    return tile;
}

void conv_images_forward(float *y, const float *x, const float *w, const float *b, Act act, float *tile,
                         const ConvShape *s, int64_t n0, int64_t n1) {
    const int64_t L = s->oh * s->ow, ckk = s->c * s->kh * s->kw, rows = conv_tile_rows(s);
    if (conv_direct_usable(s)) {
        float *wp = conv_direct_weights(tile, s);
        conv_direct_pack(wp, w, s);
        for (int64_t n = n0; n < n1; n++) {
            conv_direct_pad(tile, x + n * s->c * s->h * s->w, s);
            conv_direct_forward(y + n * s->k * L, tile, wp, b, act, s);
        }
        return;
    }
    for (int64_t n = n0; n < n1; n++) {
        const float *xn = x + n * s->c * s->h * s->w;
        float *yn = y + n * s->k * L;
        for (int64_t oy0 = 0; oy0 < s->oh; oy0 += rows) {
            int64_t oy1 = oy0 + rows < s->oh ? oy0 + rows : s->oh, cols = (oy1 - oy0) * s->ow;
            int64_t ldcol;
            const float *col = conv_band_columns(tile, xn, s, oy0, oy1, &ldcol);
            /* y[n][:, band] (K, cols) = W (K, C*KH*KW) @ col (C*KH*KW, cols) */
            blas_sgemm(0, 0, (int)s->k, (int)cols, (int)ckk, 1.0f, w, (int)ckk, col, (int)ldcol, 0.0f,
                       yn + oy0 * s->ow, (int)L);
            /* the bias and the fused activation in one pass, while the band is in cache */
            if (b || act != ACT_LINEAR)
                for (int64_t k = 0; k < s->k; k++) act_forward_bias(act, yn + k * L + oy0 * s->ow, b ? b[k] : 0.0f, cols);
        }
    }
}

void conv_image_weight_grad(float *dw, const float *dyn, const float *xn, float *tile, const ConvShape *s) {
    const int64_t L = s->oh * s->ow, ckk = s->c * s->kh * s->kw, rows = conv_tile_rows(s);
    if (conv_direct_usable(s)) {
        conv_direct_pad(tile, xn, s);
        conv_direct_weight_grad(dw, dyn, tile, s);
        return;
    }
    for (int64_t oy0 = 0; oy0 < s->oh; oy0 += rows) {
        int64_t oy1 = oy0 + rows < s->oh ? oy0 + rows : s->oh, cols = (oy1 - oy0) * s->ow;
        int64_t ldcol;
        const float *col = conv_band_columns(tile, xn, s, oy0, oy1, &ldcol);
        /* dW (K, C*KH*KW) += dy[n][:, band] (K, cols) @ col^T */
        blas_sgemm(0, 1, (int)s->k, (int)ckk, (int)cols, 1.0f, dyn + oy0 * s->ow, (int)L, col, (int)ldcol, 1.0f,
                   dw, (int)ckk);
    }
}

void channel_sums_add(float *db, const float *g, int64_t channels, int64_t len) {
    for (int64_t c = 0; c < channels; c++, g += len) {
        /* Eight float lanes (vectorisable) summed into a double every 1024
         * elements, so a 24,000-pixel plane loses no more than a short sum. */
        double total = 0;
        int64_t i = 0;
        while (i < len) {
            int64_t end = i + 1024 < len ? i + 1024 : len;
            float acc[8] = {0};
            for (; i + 8 <= end; i += 8)
                for (int l = 0; l < 8; l++) acc[l] += g[i + l];
            for (; i < end; i++) acc[0] += g[i];
            total += ((double)acc[0] + acc[1] + acc[2] + acc[3]) + ((double)acc[4] + acc[5] + acc[6] + acc[7]);
        }
        db[c] += (float)total;
    }
}

void channel_fill(float *y, const float *b, int64_t channels, int64_t len) {
    for (int64_t c = 0; c < channels; c++, y += len) {
        float v = b ? b[c] : 0.0f;
        for (int64_t i = 0; i < len; i++) y[i] = v;
    }
}

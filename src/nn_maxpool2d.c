/* nn_maxpool2d.c: MaxPool2d over NCHW, PyTorch's semantics: floor-mode
 * output size, implicit padding that never wins, the first maximum of a
 * window in row-major order wins ties, NaN propagates (the last NaN of a
 * window wins, as PyTorch's CPU kernel).
 *
 * Forward records each output's winner (its flat index in the input plane)
 * so backward is a scatter-add. Memory: y (N, C, OH, OW) owned by the
 * binding, plus the argmax indices, N*C*OH*OW int32, kept in a SavedBuf. */
#include "im2col.h"
#include "layer.h"
#include "parallel.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* ---- kernels ---- */

/* The plain window scan, in the order that fixes the tie and NaN rules. */
static void maxpool2d_windows(float *y, int32_t *argmax, const float *x, int64_t planes, int64_t h, int64_t w,
                              int64_t oh, int64_t ow, int64_t kernel, int64_t stride, int64_t pad) {
    for (int64_t p = 0; p < planes; p++, x += h * w) {
        for (int64_t oy = 0; oy < oh; oy++) {
            int64_t y0 = oy * stride - pad, y1 = y0 + kernel < h ? y0 + kernel : h;
            if (y0 < 0) y0 = 0;
            for (int64_t ox = 0; ox < ow; ox++) {
                int64_t x0 = ox * stride - pad, x1 = x0 + kernel < w ? x0 + kernel : w;
                if (x0 < 0) x0 = 0;
                float best = -INFINITY;
                int64_t at = y0 * w + x0;
                for (int64_t iy = y0; iy < y1; iy++)
                    for (int64_t ix = x0; ix < x1; ix++) {
                        float v = x[iy * w + ix];
                        if (v > best || isnan(v)) {
                            best = v;
                            at = iy * w + ix;
                        }
                    }
                *y++ = best;
                if (argmax) *argmax++ = (int32_t)at;
            }
        }
    }
}

/* x is (planes, H, W), y and argmax are (planes, OH, OW). */
void maxpool2d_forward(float *y, int32_t *argmax, const float *x, int64_t planes, int64_t h, int64_t w,
                       int64_t oh, int64_t ow, int64_t kernel, int64_t stride, int64_t pad) {
    if (!(kernel == 2 && stride == 2 && pad == 0)) {
        maxpool2d_windows(y, argmax, x, planes, h, w, oh, ow, kernel, stride, pad);
        return;
    }
    /* The autoencoder's 2x2 / 2 case, unrolled; same visiting order. */
    for (int64_t p = 0; p < planes; p++, x += h * w) {
        for (int64_t oy = 0; oy < oh; oy++) {
            const float *r0 = x + 2 * oy * w, *r1 = r0 + w;
            int32_t base = (int32_t)(2 * oy * w);
            for (int64_t ox = 0; ox < ow; ox++) {
                int64_t ix = 2 * ox;
                float best = r0[ix];
                int32_t at = base + (int32_t)ix;
                if (r0[ix + 1] > best || isnan(r0[ix + 1])) best = r0[ix + 1], at = base + (int32_t)ix + 1;
                if (r1[ix] > best || isnan(r1[ix])) best = r1[ix], at = base + (int32_t)(w + ix);
                if (r1[ix + 1] > best || isnan(r1[ix + 1])) best = r1[ix + 1], at = base + (int32_t)(w + ix + 1);
                *y++ = best;
                *argmax++ = at;
            }
        }
    }
}

/* dy is (planes, OH, OW); dx (planes, H, W) is overwritten. */
void maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax, int64_t planes, int64_t h, int64_t w,
                        int64_t oh, int64_t ow) {
    memset(dx, 0, (size_t)(planes * h * w) * sizeof *dx);
    for (int64_t p = 0; p < planes; p++, dx += h * w)
        for (int64_t o = 0; o < oh * ow; o++) dx[*argmax++] += *dy++; /* += : windows may overlap */
}

/* The references: the window scan without indices, and a backward that
 * finds each window's winner again from x instead of trusting argmax. */
void maxpool2d_forward_ref(float *y, const float *x, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                           int64_t kernel, int64_t stride, int64_t pad) {
    maxpool2d_windows(y, NULL, x, planes, h, w, oh, ow, kernel, stride, pad);
}

void maxpool2d_backward_ref(float *dx, const float *dy, const float *x, int64_t planes, int64_t h, int64_t w,
                            int64_t oh, int64_t ow, int64_t kernel, int64_t stride, int64_t pad) {
    memset(dx, 0, (size_t)(planes * h * w) * sizeof *dx);
    for (int64_t p = 0; p < planes; p++)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                int64_t at = -1;
                for (int64_t i = 0; i < kernel; i++)
                    for (int64_t j = 0; j < kernel; j++) {
                        int64_t iy = oy * stride - pad + i, ix = ox * stride - pad + j;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                        float v = x[(p * h + iy) * w + ix];
                        if (at < 0 || v > x[at] || isnan(v)) at = (p * h + iy) * w + ix;
                    }
                dx[at] += dy[(p * oh + oy) * ow + ox];
            }
}

/* ---- the layer ---- */

typedef struct MaxPool2dCfg {
    int64_t kernel, stride, pad;
    SavedBuf argmax;
} MaxPool2dCfg;

enum { MP_KERNEL, MP_STRIDE, MP_PADDING };
static const LayerOption maxpool2d_options[] = {
    {"kernel_size", OPT_INT, "2", 1},
    {"stride", OPT_INT_OR_STRING, "kernel_size", 0}, /* PyTorch's stride=None */
    {"padding", OPT_INT, "0", 0},
    {NULL, 0, NULL, 0}};

#define POOL_MAX_KERNEL (1 << 12)

static int maxpool2d_init(Layer *m, const OptValues *v, char *err) {
    MaxPool2dCfg *c = m->cfg;
    double k = v->num[MP_KERNEL], p = v->num[MP_PADDING];
    if (k < 1 || k > POOL_MAX_KERNEL)
        return layer_fail(err, "kernel_size must be in [1, %d], got %.15g", POOL_MAX_KERNEL, k);
    c->kernel = (int64_t)k;
    if (v->is_string[MP_STRIDE]) {
        if (strcmp(v->str[MP_STRIDE], "kernel_size") != 0)
            return layer_fail(err, "stride must be an integer >= 1 or 'kernel_size', got '%s'", v->str[MP_STRIDE]);
        c->stride = c->kernel;
    } else {
        double s = v->num[MP_STRIDE];
        if (s < 1 || s > POOL_MAX_KERNEL)
            return layer_fail(err, "stride must be in [1, %d], got %.15g", POOL_MAX_KERNEL, s);
        c->stride = (int64_t)s;
    }
    if (p < 0) return layer_fail(err, "padding must be >= 0, got %.15g", p);
    /* PyTorch's rule: otherwise a window could hold only padding. */
    if (p > (double)(c->kernel / 2))
        return layer_fail(err, "padding must be at most half of kernel_size, got padding %.15g with kernel_size %lld", p,
                          (long long)c->kernel);
    c->pad = (int64_t)p;
    return 0;
}

static int64_t maxpool2d_dim(const MaxPool2dCfg *c, int64_t in) {
    int64_t padded = in + 2 * c->pad;
    return padded < c->kernel ? 0 : (padded - c->kernel) / c->stride + 1;
}

static int maxpool2d_shape(const Layer *m, int ndim, const int64_t *in, int *ondim, int64_t *out, char *err) {
    const MaxPool2dCfg *c = m->cfg;
    char sh[256];
    if (ndim != 4)
        return layer_fail(err, "expected a 4-d input (N, C, H, W), got shape %s", shape_format(sh, sizeof sh, ndim, in));
    int64_t oh = maxpool2d_dim(c, in[2]), ow = maxpool2d_dim(c, in[3]);
    if (oh < 1 || ow < 1) {
        int rows = oh < 1;
        const char *dim = rows ? "height" : "width";
        return layer_fail(err, "input %s is too small: output %s would be 0 (%s %lld + padding %lld+%lld is less than kernel_size %lld)",
                          shape_format(sh, sizeof sh, ndim, in), dim, dim, (long long)in[rows ? 2 : 3],
                          (long long)c->pad, (long long)c->pad, (long long)c->kernel);
    }
    if (in[2] * in[3] > INT32_MAX) /* argmax indices are int32 */
        return layer_fail(err, "input %s is too large: an image plane must have at most %d pixels",
                          shape_format(sh, sizeof sh, ndim, in), INT32_MAX);
    *ondim = 4;
    out[0] = in[0];
    out[1] = in[1];
    out[2] = oh;
    out[3] = ow;
    return 0;
}

/* The layer splits the planes over the thread pool (parallel.h); each
 * plane is independent, so the results do not depend on the split. */
typedef struct MaxPool2dJob {
    float *y, *dx;
    int32_t *argmax;
    const float *x, *dy;
    int64_t h, w, oh, ow;
    const MaxPool2dCfg *c;
} MaxPool2dJob;

static int64_t planes_per_block(int64_t h, int64_t w) {
    int64_t per = ((int64_t)1 << 16) / (h * w > 0 ? h * w : 1);
    return per > 0 ? per : 1;
}

static void maxpool2d_forward_range(void *arg, int64_t p0, int64_t p1) {
    const MaxPool2dJob *j = arg;
    const int64_t in = j->h * j->w, out = j->oh * j->ow;
    maxpool2d_forward(j->y + p0 * out, j->argmax + p0 * out, j->x + p0 * in, p1 - p0, j->h, j->w, j->oh, j->ow,
                      j->c->kernel, j->c->stride, j->c->pad);
}

static void maxpool2d_backward_range(void *arg, int64_t p0, int64_t p1) {
    const MaxPool2dJob *j = arg;
    const int64_t in = j->h * j->w, out = j->oh * j->ow;
    maxpool2d_backward(j->dx + p0 * in, j->dy + p0 * out, j->argmax + p0 * out, p1 - p0, j->h, j->w, j->oh, j->ow);
}

static int maxpool2d_fwd(Layer *m, const Tensor *x, Tensor *y, char *err) {
    MaxPool2dCfg *c = m->cfg;
    int64_t n = tensor_numel(y);
    /* int32 indices in the float-sized buffer: the storage is only ever
     * accessed as int32 */
    int32_t *argmax = (int32_t *)saved_reserve(&c->argmax, (size_t)n);
    if (!argmax) return layer_fail(err, "out of memory for the argmax indices of %lld outputs", (long long)n);
    MaxPool2dJob j = {.y = tensor_data(y), .argmax = argmax, .x = tensor_data(x), .h = x->shape[2],
                      .w = x->shape[3], .oh = y->shape[2], .ow = y->shape[3], .c = c};
    parallel_for(x->shape[0] * x->shape[1], planes_per_block(j.h, j.w), maxpool2d_forward_range, &j);
    return 0;
}

static int maxpool2d_bwd(Layer *m, const Tensor *x, const Tensor *y, const Tensor *dy, Tensor *dx, char *err) {
    MaxPool2dCfg *c = m->cfg;
    if (!c->argmax.data || c->argmax.cap < (size_t)tensor_numel(y))
        return layer_fail(err, "backward: call forward with this input first");
    MaxPool2dJob j = {.dx = tensor_data(dx), .argmax = (int32_t *)c->argmax.data, .dy = tensor_data(dy),
                      .h = x->shape[2], .w = x->shape[3], .oh = y->shape[2], .ow = y->shape[3], .c = c};
    parallel_for(x->shape[0] * x->shape[1], planes_per_block(j.h, j.w), maxpool2d_backward_range, &j);
    return 0;
}

static void maxpool2d_destroy(Layer *m) { saved_free(&((MaxPool2dCfg *)m->cfg)->argmax); }

const LayerKind maxpool2d_kind = {"MaxPool2d", maxpool2d_options, sizeof(MaxPool2dCfg), maxpool2d_init,
                                  maxpool2d_shape, maxpool2d_fwd, maxpool2d_bwd, maxpool2d_destroy, 0};

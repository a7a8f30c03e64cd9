/* nn_upsample.c: Upsample (Keras UpSampling2D), nearest neighbour with an
 * integer scale over NCHW: each pixel becomes a scale x scale block. Equal
 * to PyTorch's interpolate(mode='nearest', scale_factor=s) for integer s.
 * Memory: y (N, C, H*s, W*s) owned by the binding; nothing saved. */
#include "im2col.h"
#include "layer.h"
#include "parallel.h"

#include <string.h>

/* ---- kernels ---- */

/* x is (planes, H, W), y is (planes, H*scale, W*scale). */
void upsample_nearest_forward(float *y, const float *x, int64_t planes, int64_t h, int64_t w, int64_t scale) {
    const int64_t yw = w * scale;
    for (int64_t r = 0; r < planes * h; r++, x += w) {
        float *row = y + r * scale * yw;
        if (scale == 2) {
            for (int64_t ix = 0; ix < w; ix++) row[2 * ix] = row[2 * ix + 1] = x[ix];
        } else {
            for (int64_t ix = 0; ix < w; ix++)
                for (int64_t k = 0; k < scale; k++) row[ix * scale + k] = x[ix];
        }
        /* the other rows of the block repeat the first */
        for (int64_t k = 1; k < scale; k++) memcpy(row + k * yw, row, (size_t)yw * sizeof *row);
    }
}

/* dy is (planes, H*scale, W*scale); dx (planes, H, W) is overwritten with
 * the sum of each block. */
void upsample_nearest_backward(float *dx, const float *dy, int64_t planes, int64_t h, int64_t w, int64_t scale) {
    const int64_t yw = w * scale;
    for (int64_t r = 0; r < planes * h; r++, dx += w) {
        const float *block = dy + r * scale * yw;
        memset(dx, 0, (size_t)w * sizeof *dx);
        for (int64_t k = 0; k < scale; k++, block += yw) {
            if (scale == 2) {
                for (int64_t ix = 0; ix < w; ix++) dx[ix] += block[2 * ix] + block[2 * ix + 1];
            } else {
                for (int64_t ix = 0; ix < w; ix++)
                    for (int64_t j = 0; j < scale; j++) dx[ix] += block[ix * scale + j];
            }
        }
    }
}

/* The definition: output pixel (oy, ox) is input pixel (oy / scale, ox / scale). */
void upsample_nearest_forward_ref(float *y, const float *x, int64_t planes, int64_t h, int64_t w, int64_t scale) {
    for (int64_t p = 0; p < planes; p++)
        for (int64_t oy = 0; oy < h * scale; oy++)
            for (int64_t ox = 0; ox < w * scale; ox++)
                y[(p * h * scale + oy) * w * scale + ox] = x[(p * h + oy / scale) * w + ox / scale];
}

void upsample_nearest_backward_ref(float *dx, const float *dy, int64_t planes, int64_t h, int64_t w, int64_t scale) {
    memset(dx, 0, (size_t)(planes * h * w) * sizeof *dx);
    for (int64_t p = 0; p < planes; p++)
        for (int64_t oy = 0; oy < h * scale; oy++)
            for (int64_t ox = 0; ox < w * scale; ox++)
                dx[(p * h + oy / scale) * w + ox / scale] += dy[(p * h * scale + oy) * w * scale + ox];
}

/* ---- the layer ---- */

typedef struct UpsampleCfg {
    int64_t scale;
} UpsampleCfg;

enum { UP_SCALE, UP_MODE };
static const LayerOption upsample_options[] = {
    {"scale_factor", OPT_INT, "2", 1},
    {"mode", OPT_STRING, "nearest", 0},
    {NULL, 0, NULL, 0}};

#define UPSAMPLE_MAX_SCALE (1 << 12)

static int upsample_init(Layer *m, const OptValues *v, char *err) {
    UpsampleCfg *c = m->cfg;
    double s = v->num[UP_SCALE];
    if (s < 1 || s > UPSAMPLE_MAX_SCALE)
        return layer_fail(err, "scale_factor must be an integer in [1, %d], got %.15g", UPSAMPLE_MAX_SCALE, s);
    if (strcmp(v->str[UP_MODE], "nearest") != 0)
        return layer_fail(err, "unknown mode '%s' (known: 'nearest')", v->str[UP_MODE]);
    c->scale = (int64_t)s;
    return 0;
}

static int upsample_shape(const Layer *m, int ndim, const int64_t *in, int *ondim, int64_t *out, char *err) {
    const UpsampleCfg *c = m->cfg;
    char sh[256];
    if (ndim != 4)
        return layer_fail(err, "expected a 4-d input (N, C, H, W), got shape %s", shape_format(sh, sizeof sh, ndim, in));
    out[0] = in[0];
    out[1] = in[1];
    out[2] = in[2] * c->scale;
    out[3] = in[3] * c->scale;
    int64_t numel;
    if (shape_check(4, out, &numel) != TENSOR_OK)
        return layer_fail(err, "input %s is too large: the output would have more than %lld elements",
                          shape_format(sh, sizeof sh, ndim, in), (long long)TENSOR_MAX_NUMEL);
    *ondim = 4;
    return 0;
}

/* The layer splits the planes over the thread pool (parallel.h); each
 * plane is independent, so the results do not depend on the split. */
typedef struct UpsampleJob {
    float *out;
    const float *in;
    int64_t h, w, scale;
} UpsampleJob;

static int64_t planes_per_block(int64_t h, int64_t w) {
    int64_t per = ((int64_t)1 << 16) / (h * w > 0 ? h * w : 1);
    return per > 0 ? per : 1;
}

static void upsample_forward_range(void *arg, int64_t p0, int64_t p1) {
    const UpsampleJob *j = arg;
    const int64_t small = j->h * j->w, big = small * j->scale * j->scale;
    upsample_nearest_forward(j->out + p0 * big, j->in + p0 * small, p1 - p0, j->h, j->w, j->scale);
}

static void upsample_backward_range(void *arg, int64_t p0, int64_t p1) {
    const UpsampleJob *j = arg;
    const int64_t small = j->h * j->w, big = small * j->scale * j->scale;
    upsample_nearest_backward(j->out + p0 * small, j->in + p0 * big, p1 - p0, j->h, j->w, j->scale);
}

static int upsample_fwd(Layer *m, const Tensor *x, Tensor *y, char *err) {
    const UpsampleCfg *c = m->cfg;
    UpsampleJob j = {tensor_data(y), tensor_data(x), x->shape[2], x->shape[3], c->scale};
    parallel_for(x->shape[0] * x->shape[1], planes_per_block(j.h * c->scale, j.w * c->scale),
                 upsample_forward_range, &j);
    return 0;
}

static int upsample_bwd(Layer *m, const Tensor *x, const Tensor *y, const Tensor *dy, Tensor *dx, char *err) {
    const UpsampleCfg *c = m->cfg;
    UpsampleJob j = {tensor_data(dx), tensor_data(dy), x->shape[2], x->shape[3], c->scale};
    parallel_for(x->shape[0] * x->shape[1], planes_per_block(j.h * c->scale, j.w * c->scale),
                 upsample_backward_range, &j);
    return 0;
}

const LayerKind upsample_kind = {"Upsample", upsample_options, sizeof(UpsampleCfg), upsample_init, upsample_shape,
                                 upsample_fwd, upsample_bwd, NULL, 0};

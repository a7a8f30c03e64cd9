/* nn_reshape.c: Flatten ((N, ...) -> (N, prod)) and Reshape{c, h, w}
 * ((N, prod) -> (N, c, h, w)): copies in row-major order, so with NCHW a
 * flatten is channel, row, column order (Keras NHWC is row, column, channel). */
#include "layer.h"

#include <string.h>

static const LayerOption flatten_options[] = {{NULL, 0, NULL, 0}};

static int flatten_init(Layer *m, const OptValues *v, char *err) { return 0; }

static int flatten_shape(const Layer *m, int ndim, const int64_t *in, int *ondim, int64_t *out, char *err) {
    if (ndim < 1) return layer_fail(err, "input must have a batch dimension, got a 0-d tensor");
    out[0] = in[0];
    out[1] = 1;
    for (int i = 1; i < ndim; i++) out[1] *= in[i];
    *ondim = 2;
    return 0;
}

static int copy_fwd(Layer *m, const Tensor *x, Tensor *y, char *err) {
    memcpy(tensor_data(y), tensor_data(x), (size_t)tensor_numel(x) * sizeof(float));
    return 0;
}

static int copy_bwd(Layer *m, const Tensor *x, const Tensor *y, const Tensor *dy, Tensor *dx, char *err) {
    memcpy(tensor_data(dx), tensor_data(dy), (size_t)tensor_numel(dy) * sizeof(float));
    return 0;
}

const LayerKind flatten_kind = {"Flatten", flatten_options, 0, flatten_init, flatten_shape, copy_fwd, copy_bwd, NULL, 0};

typedef struct ReshapeCfg {
    int ndim;
    int64_t shape[3];
} ReshapeCfg;

static const LayerOption reshape_options[] = {
    {"c", OPT_INT, NULL, 1}, {"h", OPT_INT, "-1", 1}, {"w", OPT_INT, "-1", 1}, {NULL, 0, NULL, 0}};

static int reshape_init(Layer *m, const OptValues *v, char *err) {
    ReshapeCfg *c = m->cfg;
    c->ndim = 0;
    for (int i = 0; i < 3; i++) {
        int64_t s = (int64_t)v->num[i];
        if (s == -1 && i > 0) break; /* Reshape{n} or {c, h} */
        if (s < 1 || s > TENSOR_MAX_NUMEL) return layer_fail(err, "size %d must be a positive integer, got %lld", i + 1, (long long)s);
        c->shape[c->ndim++] = s;
    }
    return 0;
}

static int reshape_shape(const Layer *m, int ndim, const int64_t *in, int *ondim, int64_t *out, char *err) {
    const ReshapeCfg *c = m->cfg;
    int64_t want = 1, have = 1;
    for (int i = 0; i < c->ndim; i++) want *= c->shape[i];
    for (int i = 1; i < ndim; i++) have *= in[i];
    if (ndim < 1 || have != want) {
        char a[256], b[256];
        return layer_fail(err, "input of shape %s has %lld features per sample, target shape %s needs %lld",
                          shape_format(a, sizeof a, ndim, in), (long long)have, shape_format(b, sizeof b, c->ndim, c->shape),
                          (long long)want);
    }
    out[0] = in[0];
    memcpy(out + 1, c->shape, (size_t)c->ndim * sizeof *out);
    *ondim = c->ndim + 1;
    return 0;
}

const LayerKind reshape_kind = {"Reshape", reshape_options, sizeof(ReshapeCfg), reshape_init, reshape_shape,
                                copy_fwd, copy_bwd, NULL, 0};

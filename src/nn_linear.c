/* nn_linear.c: Linear (Keras Dense): y = act(x W^T + b) over the last
 * dimension. x is (..., in), W is (out, in), b is (out), y is (..., out);
 * act is the fused activation option (activation.h), linear by default. */
#include "activation.h"
#include "layer.h"
#include "tensor_math.h"

#include <string.h>

typedef struct LinearCfg {
    int64_t in, out;
    int bias;
    Act act;
} LinearCfg;

enum { LIN_IN, LIN_OUT, LIN_BIAS, LIN_WINIT, LIN_BINIT, LIN_ACT };
static const LayerOption linear_options[] = {
    {"in_features", OPT_INT, NULL, 1},
    {"out_features", OPT_INT, NULL, 1},
    {"bias", OPT_BOOL, "true", 0},
    {"weight_init", OPT_STRING, "glorot_uniform", 0},
    {"bias_init", OPT_STRING, "zeros", 0},
    {"activation", OPT_STRING, "linear", 0},
    {NULL, 0, NULL, 0}};

/* rows: the product of the leading dims. */
void linear_forward(float *y, const float *x, const float *w, const float *b, int64_t rows, int64_t in, int64_t out) {
    if (b) {
        for (int64_t r = 0; r < rows; r++) memcpy(y + r * out, b, (size_t)out * sizeof *y);
    }
    blas_sgemm(0, 1, (int)rows, (int)out, (int)in, 1.0f, x, (int)in, w, (int)in, b ? 1.0f : 0.0f, y, (int)out);
}

void linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                     int64_t rows, int64_t in, int64_t out) {
    blas_sgemm(1, 0, (int)out, (int)in, (int)rows, 1.0f, dy, (int)out, x, (int)in, 1.0f, dw, (int)in);
    if (db)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < out; j++) db[j] += dy[r * out + j];
    if (dx) blas_sgemm(0, 0, (int)rows, (int)in, (int)out, 1.0f, dy, (int)out, w, (int)in, 0.0f, dx, (int)in);
}

static int linear_init(Layer *m, const OptValues *v, char *err) {
    LinearCfg *c = m->cfg;
    c->in = (int64_t)v->num[LIN_IN];
    c->out = (int64_t)v->num[LIN_OUT];
    c->bias = v->num[LIN_BIAS] != 0;
    if (c->in < 1 || c->out < 1 || c->in > (1 << 30) || c->out > (1 << 30))
        return layer_fail(err, "in_features and out_features must be in [1, 2^30], got %lld and %lld",
                          (long long)c->in, (long long)c->out);
    ParamInit wi, bi;
    if (param_init_parse(v->str[LIN_WINIT], &wi)) return layer_fail(err, "unknown weight_init '%s' (known: %s)", v->str[LIN_WINIT], param_init_names);
    if (param_init_parse(v->str[LIN_BINIT], &bi)) return layer_fail(err, "unknown bias_init '%s' (known: %s)", v->str[LIN_BINIT], param_init_names);
    if (act_parse(v->str[LIN_ACT], &c->act)) return layer_fail(err, "unknown activation '%s' (known: %s)", v->str[LIN_ACT], act_names);
    int64_t ws[2] = {c->out, c->in};
    layer_add_param(m, "weight", 2, ws, wi, c->in, c->out);
    if (c->bias) layer_add_param(m, "bias", 1, &c->out, bi, c->in, c->out);
    return 0;
}

static int linear_shape(const Layer *m, int ndim, const int64_t *in, int *ondim, int64_t *out, char *err) {
    const LinearCfg *c = m->cfg;
    if (ndim < 1 || in[ndim - 1] != c->in) {
        char s[256];
        return layer_fail(err, "input of shape %s must have %lld features in its last dimension",
                          shape_format(s, sizeof s, ndim, in), (long long)c->in);
    }
    *ondim = ndim;
    memcpy(out, in, (size_t)ndim * sizeof *in);
    out[ndim - 1] = c->out;
    return 0;
}

static int linear_fwd(Layer *m, const Tensor *x, Tensor *y, char *err) {
    const LinearCfg *c = m->cfg;
    int64_t rows = tensor_numel(x) / c->in;
    linear_forward(tensor_data(y), tensor_data(x), tensor_data(m->params[0].value),
                   c->bias ? tensor_data(m->params[1].value) : NULL, rows, c->in, c->out);
    act_forward(c->act, tensor_data(y), rows * c->out);
    return 0;
}

static int linear_bwd(Layer *m, const Tensor *x, const Tensor *y, const Tensor *dy, Tensor *dx, char *err) {
    const LinearCfg *c = m->cfg;
    int64_t rows = tensor_numel(x) / c->in;
    const float *g = tensor_data(dy);
    if (c->act != ACT_LINEAR) { /* through the fused activation, from the output y */
        float *dz = workspace_get((size_t)(rows * c->out));
        if (!dz) return layer_fail(err, "out of memory for a gradient of %lld floats", (long long)(rows * c->out));
        act_backward(c->act, dz, g, tensor_data(y), rows * c->out);
        g = dz;
    }
    linear_backward(dx ? tensor_data(dx) : NULL, tensor_data(m->params[0].grad), c->bias ? tensor_data(m->params[1].grad) : NULL,
                    g, tensor_data(x), tensor_data(m->params[0].value), rows, c->in, c->out);
    return 0;
}

const LayerKind linear_kind = {"Linear", linear_options, sizeof(LinearCfg), linear_init, linear_shape,
                               linear_fwd, linear_bwd, NULL, .skips_dx = 1};

/* nn_conv_transpose2d.c: ConvTranspose2d (Keras Conv2DTranspose), NCHW with
 * PyTorch's weight layout (in, out, kh, kw) and output-size rule; 'same'
 * padding follows Keras/TensorFlow (output = input * stride).
 *
 * A transposed convolution is the adjoint of a convolution: the ConvShape
 * here describes that convolution, whose grid is our input (K = in_channels
 * channels of OH x OW) and whose image is our output (C = out_channels
 * channels of H x W). So forward is Conv2d's input gradient (GEMM, then
 * col2im) and our input gradient is Conv2d's forward (im2col, then GEMM).
 *
 * Images are split in blocks over the thread pool as in Conv2d.
 *
 * Memory: y (N, C, H, W) owned by the binding; scratch is the shared
 * workspace, conv_workspace_floats (per thread one band of about 4 MiB and
 * a private dW + db, see im2col.h); nothing is saved between forward and
 * backward. */
#include "conv_direct.h"
#include "im2col.h"
#include "layer.h"
#include "parallel.h"
#include "tensor_math.h"

#include <limits.h>
#include <string.h>

/* ---- kernels ---- */

/* What the tasks of one call share; task t takes a block of images (see
 * parallel.h) and ws slice t. */
typedef struct ConvTranspose2dJob {
    float *y, *dx, *dw, *db;
    const float *x, *w, *b, *dy, *out; /* out: the forward's y, for backward */
    Act act;
    const ConvShape *s;
    ConvScratch sc;
} ConvTranspose2dJob;

static void conv_transpose2d_forward_task(void *arg, int t, int nt) {
    const ConvTranspose2dJob *j = arg;
    const ConvShape *s = j->s;
    const int64_t L = s->oh * s->ow, ckk = s->c * s->kh * s->kw, rows = conv_tile_rows(s);
    const int64_t plane = s->h * s->w;
    float *tile = j->sc.tile + t * j->sc.tile_floats;
    int64_t n0, n1;
    parallel_split(&n0, &n1, s->n, t, nt);
    if (j->sc.has_adjoint) { /* a convolution of x by the flipped kernel (see conv_adjoint_shape) */
        conv_images_forward(j->y, j->x, j->sc.wflip, j->b, j->act, tile, &j->sc.adj, n0, n1);
        return;
    }
    const int pointwise = conv_is_pointwise(s);
    for (int64_t n = n0; n < n1; n++) {
        const float *xn = j->x + n * s->k * L;
        float *yn = j->y + n * s->c * plane;
        channel_fill(yn, j->b, s->c, plane); /* bias, or zeros: col2im accumulates */
        for (int64_t oy0 = 0; oy0 < s->oh; oy0 += rows) {
            int64_t oy1 = oy0 + rows < s->oh ? oy0 + rows : s->oh, cols = (oy1 - oy0) * s->ow;
            const float *xb = xn + oy0 * s->ow;
            /* col (C*KH*KW, cols) = W^T (C*KH*KW, K) @ x[n][:, band] (K, cols) */
            if (pointwise) {
                blas_sgemm(1, 0, (int)ckk, (int)cols, (int)s->k, 1.0f, j->w, (int)ckk, xb, (int)L, 1.0f,
                           yn + oy0 * s->ow, (int)L);
            } else {
                blas_sgemm(1, 0, (int)ckk, (int)cols, (int)s->k, 1.0f, j->w, (int)ckk, xb, (int)L, 0.0f, tile,
                           (int)cols);
                col2im(yn, tile, s, oy0, oy1);
            }
        }
        /* col2im adds across band edges, so the fused activation waits for the whole image */
        act_forward(j->act, yn, s->c * plane);
    }
}

/* x is (N, K, OH, OW), w is (K, C, KH, KW), b is (C) or NULL, y is (N, C, H, W). */
void conv_transpose2d_forward(float *y, const float *x, const float *w, const float *b, Act act, float *ws,
                              const ConvShape *s) {
    ConvTranspose2dJob j = {.y = y, .x = x, .w = w, .b = b, .act = act, .s = s};
    conv_scratch(&j.sc, ws, s, 0);
    if (j.sc.has_adjoint) conv_weight_flip(j.sc.wflip, w, s);
    parallel_run(j.sc.threads, conv_transpose2d_forward_task, &j);
}

static void conv_transpose2d_backward_task(void *arg, int t, int nt) {
    const ConvTranspose2dJob *j = arg;
    const ConvShape *s = j->s;
    const int64_t L = s->oh * s->ow, ckk = s->c * s->kh * s->kw, rows = conv_tile_rows(s);
    const int64_t plane = s->h * s->w;
    float *tile = j->sc.tile + t * j->sc.tile_floats;
    int64_t n0, n1;
    parallel_split(&n0, &n1, s->n, t, nt);
    float *dw = j->dw, *db = j->db;
    conv_task_grads(&j->sc, t, &dw, &db, s->k * ckk, s->c);
    const int direct = conv_direct_usable(s);
    float *wp = direct ? conv_direct_weights(tile, s) : NULL;
    if (direct && j->dx) conv_direct_pack(wp, j->w, s);
    for (int64_t n = n0; n < n1; n++) {
        const float *dyn = conv_grad_through(&j->sc, t, j->act, j->dy + n * s->c * plane, j->out + n * s->c * plane,
                                             s->c * plane);
        const float *xn = j->x + n * s->k * L;
        float *dxn = j->dx ? j->dx + n * s->k * L : NULL;
        if (db) channel_sums_add(db, dyn, s->c, plane);
        if (!dw && !dxn) continue;
        if (direct) { /* dy padded once serves both, as its columns do below */
            conv_direct_pad(tile, dyn, s);
            if (dw) conv_direct_weight_grad(dw, xn, tile, s);
            if (dxn) conv_direct_forward(dxn, tile, wp, NULL, ACT_LINEAR, s);
            continue;
        }
        for (int64_t oy0 = 0; oy0 < s->oh; oy0 += rows) {
            int64_t oy1 = oy0 + rows < s->oh ? oy0 + rows : s->oh, cols = (oy1 - oy0) * s->ow;
            /* one im2col of dy serves both products */
            int64_t ldcol;
            const float *col = conv_band_columns(tile, dyn, s, oy0, oy1, &ldcol);
            /* dW (K, C*KH*KW) += x[n][:, band] (K, cols) @ col^T */
            if (dw)
                blas_sgemm(0, 1, (int)s->k, (int)ckk, (int)cols, 1.0f, xn + oy0 * s->ow, (int)L, col, (int)ldcol,
                           1.0f, dw, (int)ckk);
            /* dx[n][:, band] (K, cols) = W (K, C*KH*KW) @ col */
            if (dxn)
                blas_sgemm(0, 0, (int)s->k, (int)cols, (int)ckk, 1.0f, j->w, (int)ckk, col, (int)ldcol, 0.0f,
                           dxn + oy0 * s->ow, (int)L);
        }
    }
}

/* dy is (N, C, H, W); adds into dw (K, C, KH, KW) and db (C), overwrites
 * dx (N, K, OH, OW); any of the three may be NULL. */
void conv_transpose2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                               const float *y, Act act, float *ws, const ConvShape *s) {
    if (!dx && !dw && !db) return;
    ConvTranspose2dJob j = {.dx = dx, .dw = dw, .db = db, .dy = dy, .x = x, .w = w, .out = y, .act = act, .s = s};
    conv_scratch(&j.sc, ws, s, conv_transpose2d_dz_floats(s, act));
    parallel_run(j.sc.threads, conv_transpose2d_backward_task, &j);
    conv_tasks_reduce(&j.sc, dw, db, s->k * s->c * s->kh * s->kw, s->c);
}

int64_t conv_transpose2d_dz_floats(const ConvShape *s, Act act) {
    return act == ACT_LINEAR ? 0 : s->c * s->h * s->w;
}

/* PyTorch's definition as direct loops: input pixel (gy, gx) of channel ki
 * adds x * w[ki, co, i, j] to output pixel (gy*sh - pt + i*dh, gx*sw - pl + j*dw).
 * Same shapes as conv_transpose2d_forward / _backward; no workspace. */
void conv_transpose2d_forward_ref(float *y, const float *x, const float *w, const float *b, const ConvShape *s) {
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t co = 0; co < s->c; co++)
            for (int64_t p = 0; p < s->h * s->w; p++) y[(n * s->c + co) * s->h * s->w + p] = b ? b[co] : 0.0f;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t ki = 0; ki < s->k; ki++)
            for (int64_t gy = 0; gy < s->oh; gy++)
                for (int64_t gx = 0; gx < s->ow; gx++) {
                    float v = x[((n * s->k + ki) * s->oh + gy) * s->ow + gx];
                    for (int64_t co = 0; co < s->c; co++)
                        for (int64_t i = 0; i < s->kh; i++)
                            for (int64_t j = 0; j < s->kw; j++) {
                                int64_t iy = gy * s->sh - s->pt + i * s->dh, ix = gx * s->sw - s->pl + j * s->dw;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                                y[((n * s->c + co) * s->h + iy) * s->w + ix] +=
                                    v * w[((ki * s->c + co) * s->kh + i) * s->kw + j];
                            }
                }
}

void conv_transpose2d_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x,
                                   const float *w, const ConvShape *s) {
    if (db)
        for (int64_t n = 0; n < s->n; n++)
            for (int64_t co = 0; co < s->c; co++)
                for (int64_t p = 0; p < s->h * s->w; p++) db[co] += dy[(n * s->c + co) * s->h * s->w + p];
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t ki = 0; ki < s->k; ki++)
            for (int64_t gy = 0; gy < s->oh; gy++)
                for (int64_t gx = 0; gx < s->ow; gx++) {
                    int64_t xi = ((n * s->k + ki) * s->oh + gy) * s->ow + gx;
                    double acc = 0;
                    for (int64_t co = 0; co < s->c; co++)
                        for (int64_t i = 0; i < s->kh; i++)
                            for (int64_t j = 0; j < s->kw; j++) {
                                int64_t iy = gy * s->sh - s->pt + i * s->dh, ix = gx * s->sw - s->pl + j * s->dw;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                                int64_t wi = ((ki * s->c + co) * s->kh + i) * s->kw + j;
                                float g = dy[((n * s->c + co) * s->h + iy) * s->w + ix];
                                acc += (double)g * w[wi];
                                if (dw) dw[wi] += g * x[xi];
                            }
                    if (dx) dx[xi] = (float)acc;
                }
}

/* ---- the layer ---- */

typedef struct ConvTranspose2dCfg {
    int64_t in, out, kernel, stride, dilation, padding, output_padding;
    int same, bias;
    Act act;
} ConvTranspose2dCfg;

enum { CT_IN, CT_OUT, CT_KERNEL, CT_STRIDE, CT_PADDING, CT_OUTPAD, CT_BIAS, CT_DILATION, CT_WINIT, CT_BINIT, CT_ACT };
static const LayerOption conv_transpose2d_options[] = {
    {"in_channels", OPT_INT, NULL, 1},
    {"out_channels", OPT_INT, NULL, 1},
    {"kernel_size", OPT_INT, "3", 0},
    {"stride", OPT_INT, "1", 0},
    {"padding", OPT_INT_OR_STRING, "0", 0},
    {"output_padding", OPT_INT, "0", 0},
    {"bias", OPT_BOOL, "true", 0},
    {"dilation", OPT_INT, "1", 0},
    {"weight_init", OPT_STRING, "glorot_uniform", 0},
    {"bias_init", OPT_STRING, "zeros", 0},
    {"activation", OPT_STRING, "linear", 0},
    {NULL, 0, NULL, 0}};

#define CONV_MAX_CHANNELS (1 << 24)
#define CONV_MAX_KERNEL (1 << 12)

static int option_in_range(char *err, const char *name, double v, int64_t lo, int64_t hi) {
    if (v < (double)lo) return layer_fail(err, "%s must be >= %lld, got %.15g", name, (long long)lo, v);
    if (v > (double)hi) return layer_fail(err, "%s must be at most %lld, got %.15g", name, (long long)hi, v);
    return 0;
}

static int conv_transpose2d_init(Layer *m, const OptValues *v, char *err) {
    ConvTranspose2dCfg *c = m->cfg;
    if (option_in_range(err, "in_channels", v->num[CT_IN], 1, CONV_MAX_CHANNELS) ||
        option_in_range(err, "out_channels", v->num[CT_OUT], 1, CONV_MAX_CHANNELS) ||
        option_in_range(err, "kernel_size", v->num[CT_KERNEL], 1, CONV_MAX_KERNEL) ||
        option_in_range(err, "stride", v->num[CT_STRIDE], 1, CONV_MAX_KERNEL) ||
        option_in_range(err, "dilation", v->num[CT_DILATION], 1, CONV_MAX_KERNEL) ||
        option_in_range(err, "output_padding", v->num[CT_OUTPAD], 0, CONV_MAX_KERNEL))
        return -1;
    c->in = (int64_t)v->num[CT_IN];
    c->out = (int64_t)v->num[CT_OUT];
    c->kernel = (int64_t)v->num[CT_KERNEL];
    c->stride = (int64_t)v->num[CT_STRIDE];
    c->dilation = (int64_t)v->num[CT_DILATION];
    c->output_padding = (int64_t)v->num[CT_OUTPAD];
    c->bias = v->num[CT_BIAS] != 0;
    if (v->is_string[CT_PADDING]) {
        if (strcmp(v->str[CT_PADDING], "same") == 0) c->same = 1;
        else if (strcmp(v->str[CT_PADDING], "valid") == 0) c->padding = 0;
        else return layer_fail(err, "unknown padding '%s' (known: 'same', 'valid', or an integer >= 0)", v->str[CT_PADDING]);
    } else {
        if (option_in_range(err, "padding", v->num[CT_PADDING], 0, CONV_MAX_CHANNELS)) return -1;
        c->padding = (int64_t)v->num[CT_PADDING];
    }
    if (c->same && c->output_padding != 0)
        return layer_fail(err, "output_padding must be 0 with padding='same' (the output is input * stride), got %lld",
                          (long long)c->output_padding);
    /* PyTorch's rule: a larger output_padding would add rows no input reaches
     * beyond what a different stride would give. */
    if (c->output_padding >= c->stride && c->output_padding >= c->dilation)
        return layer_fail(err, "output_padding must be smaller than stride or dilation, got output_padding %lld with "
                          "stride %lld and dilation %lld", (long long)c->output_padding, (long long)c->stride,
                          (long long)c->dilation);
    int64_t taps = c->kernel * c->kernel;
    if (c->in * taps > INT_MAX || c->out * taps > INT_MAX)
        return layer_fail(err, "channels * kernel_size^2 must be at most %d, got %lld * %lld^2", INT_MAX,
                          (long long)(c->in > c->out ? c->in : c->out), (long long)c->kernel);
    ParamInit wi, bi;
    if (param_init_parse(v->str[CT_WINIT], &wi))
        return layer_fail(err, "unknown weight_init '%s' (known: %s)", v->str[CT_WINIT], param_init_names);
    if (param_init_parse(v->str[CT_BINIT], &bi))
        return layer_fail(err, "unknown bias_init '%s' (known: %s)", v->str[CT_BINIT], param_init_names);
    if (act_parse(v->str[CT_ACT], &c->act))
        return layer_fail(err, "unknown activation '%s' (known: %s)", v->str[CT_ACT], act_names);
    /* Keras' fans for Conv2DTranspose: its kernel is (kh, kw, out, in). */
    int64_t ws[4] = {c->in, c->out, c->kernel, c->kernel};
    layer_add_param(m, "weight", 4, ws, wi, c->out * taps, c->in * taps);
    if (c->bias) layer_add_param(m, "bias", 1, &c->out, bi, c->out * taps, c->in * taps);
    return 0;
}

/* Output size and padding along one dimension for an input of size in; the
 * output may come out < 1, which the caller reports. */
static int64_t conv_transpose2d_dim(const ConvTranspose2dCfg *c, int64_t in, int64_t *pad_begin, int64_t *pad_end) {
    int64_t extent = c->dilation * (c->kernel - 1) + 1;
    if (c->same) {
        /* the padding of the 'same' convolution from in*stride back to in */
        conv_same_padding(pad_begin, pad_end, in * c->stride, extent, c->stride);
        return in * c->stride;
    }
    *pad_begin = *pad_end = c->padding;
    return (in - 1) * c->stride - 2 * c->padding + extent + c->output_padding;
}

/* The one shape check: fills s from the input shape (N, in, OH, OW). */
static int conv_transpose2d_geometry(const ConvTranspose2dCfg *c, int ndim, const int64_t *in, ConvShape *s,
                                     char *err) {
    char sh[256];
    if (ndim != 4)
        return layer_fail(err, "expected a 4-d input (N, C, H, W), got shape %s", shape_format(sh, sizeof sh, ndim, in));
    if (in[1] != c->in)
        return layer_fail(err, "input has %lld channels, layer expects %lld (input shape %s)", (long long)in[1],
                          (long long)c->in, shape_format(sh, sizeof sh, ndim, in));
    if (in[2] < 1 || in[3] < 1)
        return layer_fail(err, "input %s has no pixels: height and width must be >= 1", shape_format(sh, sizeof sh, ndim, in));
    memset(s, 0, sizeof *s);
    s->n = in[0];
    s->k = c->in;
    s->oh = in[2];
    s->ow = in[3];
    s->c = c->out;
    s->kh = s->kw = c->kernel;
    s->sh = s->sw = c->stride;
    s->dh = s->dw = c->dilation;
    s->h = conv_transpose2d_dim(c, s->oh, &s->pt, &s->pb);
    s->w = conv_transpose2d_dim(c, s->ow, &s->pl, &s->pr);
    const char *dim = s->h < 1 ? "height" : s->w < 1 ? "width" : NULL;
    if (dim) {
        int rows = s->h < 1;
        return layer_fail(err,
                          "input %s is too small: output %s would be %lld ((%s %lld - 1) * stride %lld - padding "
                          "%lld+%lld + kernel extent %lld + output_padding %lld)",
                          shape_format(sh, sizeof sh, ndim, in), dim, (long long)(rows ? s->h : s->w), dim,
                          (long long)(rows ? s->oh : s->ow), (long long)c->stride, (long long)c->padding,
                          (long long)c->padding, (long long)(c->dilation * (c->kernel - 1) + 1),
                          (long long)c->output_padding);
    }
    if (s->oh * s->ow > INT_MAX || s->h * s->w > INT_MAX)
        return layer_fail(err, "input %s is too large: an image plane must have at most %d pixels",
                          shape_format(sh, sizeof sh, ndim, in), INT_MAX);
    return 0;
}

static int conv_transpose2d_shape(const Layer *m, int ndim, const int64_t *in, int *ondim, int64_t *out, char *err) {
    ConvShape s;
    if (conv_transpose2d_geometry(m->cfg, ndim, in, &s, err)) return -1;
    *ondim = 4;
    out[0] = s.n;
    out[1] = s.c;
    out[2] = s.h;
    out[3] = s.w;
    return 0;
}

static float *conv_transpose2d_workspace(const ConvShape *s, int64_t dz_floats, char *err) {
    int64_t floats = conv_workspace_floats(s, dz_floats);
    float *ws = workspace_get((size_t)floats);
    if (!ws) layer_fail(err, "out of memory for the im2col workspace of %lld floats", (long long)floats);
    return ws;
}

static int conv_transpose2d_fwd(Layer *m, const Tensor *x, Tensor *y, char *err) {
    const ConvTranspose2dCfg *c = m->cfg;
    ConvShape s;
    if (conv_transpose2d_geometry(c, x->ndim, x->shape, &s, err)) return -1;
    float *ws = conv_transpose2d_workspace(&s, 0, err);
    if (!ws) return -1;
    conv_transpose2d_forward(tensor_data(y), tensor_data(x), tensor_data(m->params[0].value),
                             c->bias ? tensor_data(m->params[1].value) : NULL, c->act, ws, &s);
    return 0;
}

static int conv_transpose2d_bwd(Layer *m, const Tensor *x, const Tensor *y, const Tensor *dy, Tensor *dx, char *err) {
    const ConvTranspose2dCfg *c = m->cfg;
    ConvShape s;
    if (conv_transpose2d_geometry(c, x->ndim, x->shape, &s, err)) return -1;
    float *ws = conv_transpose2d_workspace(&s, conv_transpose2d_dz_floats(&s, c->act), err);
    if (!ws) return -1;
    conv_transpose2d_backward(dx ? tensor_data(dx) : NULL, tensor_data(m->params[0].grad),
                              c->bias ? tensor_data(m->params[1].grad) : NULL, tensor_data(dy), tensor_data(x),
                              tensor_data(m->params[0].value), tensor_data(y), c->act, ws, &s);
    return 0;
}

const LayerKind conv_transpose2d_kind = {"ConvTranspose2d", conv_transpose2d_options, sizeof(ConvTranspose2dCfg),
                                         conv_transpose2d_init, conv_transpose2d_shape, conv_transpose2d_fwd,
                                         conv_transpose2d_bwd, NULL, .skips_dx = 1};

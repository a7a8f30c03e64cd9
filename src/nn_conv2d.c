/* nn_conv2d.c: Conv2d, NCHW with PyTorch's weight layout and names, so
 * weights move to and from PyTorch unchanged; 'same' padding follows
 * TensorFlow (the original Keras model), which for stride 1 is PyTorch's.
 *
 * The fast kernels are im2col + one GEMM per band of output rows (see
 * im2col.c), the images split in blocks over the thread pool, each thread
 * with single-threaded GEMMs (parallel.h); the _ref kernels are the direct
 * loops the tests compare with.
 *
 * Memory: y (N, K, OH, OW) owned by the binding; scratch is the shared
 * workspace, conv_workspace_floats = per thread one band of C*KH*KW * rows
 * * OW floats (about 4 MiB), plus per thread after the first a private
 * dW + db; nothing is saved between forward and backward. */
#include "im2col.h"
#include "layer.h"
#include "parallel.h"
#include "tensor_math.h"

#include <limits.h>
#include <string.h>

/* ---- kernels ---- */

/* What the tasks of one call share; task t takes a block of images (see
 * parallel.h) and ws slice t. */
typedef struct Conv2dJob {
    float *y, *dx, *dw, *db;
    const float *x, *w, *b, *dy, *out; /* out: the forward's y, for backward */
    Act act;
    const ConvShape *s;
    ConvScratch sc;
} Conv2dJob;

static void conv2d_forward_task(void *arg, int t, int nt) {
    const Conv2dJob *j = arg;
    int64_t n0, n1;
    parallel_split(&n0, &n1, j->s->n, t, nt);
    conv_images_forward(j->y, j->x, j->w, j->b, j->act, j->sc.tile + t * j->sc.tile_floats, j->s, n0, n1);
}

/* x is (N, C, H, W), w is (K, C, KH, KW), b is (K) or NULL, y is (N, K, OH, OW);
 * y = act(conv(x) + b); ws holds conv_workspace_floats(s, 0) floats. */
void conv2d_forward(float *y, const float *x, const float *w, const float *b, Act act, float *ws,
                    const ConvShape *s) {
    Conv2dJob j = {.y = y, .x = x, .w = w, .b = b, .act = act, .s = s};
    conv_scratch(&j.sc, ws, s, 0);
    parallel_run(j.sc.threads, conv2d_forward_task, &j);
}

static void conv2d_backward_task(void *arg, int t, int nt) {
    const Conv2dJob *j = arg;
    const ConvShape *s = j->s;
    const int64_t L = s->oh * s->ow, ckk = s->c * s->kh * s->kw, rows = conv_tile_rows(s);
    const int64_t image = s->c * s->h * s->w;
    float *tile = j->sc.tile + t * j->sc.tile_floats;
    int64_t n0, n1;
    parallel_split(&n0, &n1, s->n, t, nt);
    float *dw = j->dw, *db = j->db;
    conv_task_grads(&j->sc, t, &dw, &db, s->k * ckk, s->k);
    const int pointwise = conv_is_pointwise(s);
    for (int64_t n = n0; n < n1; n++) {
        const float *dyn = conv_grad_through(&j->sc, t, j->act, j->dy + n * s->k * L, j->out + n * s->k * L, s->k * L);
        if (db) channel_sums_add(db, dyn, s->k, L);
        if (dw) conv_image_weight_grad(dw, dyn, j->x + n * image, tile, s);
        if (!j->dx) continue;
        float *dxn = j->dx + n * image;
        if (j->sc.has_adjoint) { /* dx[n] = the flipped kernel over dy[n] (see conv_adjoint_shape) */
            conv_images_forward(dxn, dyn, j->sc.wflip, NULL, ACT_LINEAR, tile, &j->sc.adj, 0, 1);
            continue;
        }
        if (!pointwise) memset(dxn, 0, (size_t)image * sizeof *dxn); /* col2im accumulates */
        for (int64_t oy0 = 0; oy0 < s->oh; oy0 += rows) {
            int64_t oy1 = oy0 + rows < s->oh ? oy0 + rows : s->oh, cols = (oy1 - oy0) * s->ow;
            const float *dyb = dyn + oy0 * s->ow;
            /* dcol (C*KH*KW, cols) = W^T @ dy[n][:, band]; then back onto the image */
            if (pointwise) {
                blas_sgemm(1, 0, (int)ckk, (int)cols, (int)s->k, 1.0f, j->w, (int)ckk, dyb, (int)L, 0.0f,
                           dxn + oy0 * s->ow, (int)L);
            } else {
                blas_sgemm(1, 0, (int)ckk, (int)cols, (int)s->k, 1.0f, j->w, (int)ckk, dyb, (int)L, 0.0f, tile,
                           (int)cols);
                col2im(dxn, tile, s, oy0, oy1);
            }
        }
    }
}

/* dy is (N, K, OH, OW), the gradient of the output y = act(conv(x) + b) of
 * the latest forward (y is read only when act is not linear); adds into dw
 * (K, C, KH, KW) and db (K) (either may be NULL) and overwrites dx
 * (N, C, H, W) (may be NULL). ws holds conv_workspace_floats(s, conv2d_dz_floats(s, act)). */
void conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                     const float *y, Act act, float *ws, const ConvShape *s) {
    Conv2dJob j = {.dx = dx, .dw = dw, .db = db, .dy = dy, .x = x, .w = w, .out = y, .act = act, .s = s};
    conv_scratch(&j.sc, ws, s, conv2d_dz_floats(s, act));
    if (dx && j.sc.has_adjoint) conv_weight_flip(j.sc.wflip, w, s);
    parallel_run(j.sc.threads, conv2d_backward_task, &j);
    conv_tasks_reduce(&j.sc, dw, db, s->k * s->c * s->kh * s->kw, s->k);
}

int64_t conv2d_dz_floats(const ConvShape *s, Act act) { return act == ACT_LINEAR ? 0 : s->k * s->oh * s->ow; }

/* The definition, as direct loops (double sums): what the tests trust.
 * Same shapes as conv2d_forward / conv2d_backward; no workspace. */
void conv2d_forward_ref(float *y, const float *x, const float *w, const float *b, const ConvShape *s) {
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t k = 0; k < s->k; k++)
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    double acc = b ? b[k] : 0;
                    for (int64_t c = 0; c < s->c; c++)
                        for (int64_t i = 0; i < s->kh; i++)
                            for (int64_t j = 0; j < s->kw; j++) {
                                int64_t iy = oy * s->sh - s->pt + i * s->dh, ix = ox * s->sw - s->pl + j * s->dw;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                                acc += (double)w[((k * s->c + c) * s->kh + i) * s->kw + j] *
                                       x[((n * s->c + c) * s->h + iy) * s->w + ix];
                            }
                    y[((n * s->k + k) * s->oh + oy) * s->ow + ox] = (float)acc;
                }
}

void conv2d_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                         const ConvShape *s) {
    if (dx) memset(dx, 0, (size_t)(s->n * s->c * s->h * s->w) * sizeof *dx);
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t k = 0; k < s->k; k++)
            for (int64_t oy = 0; oy < s->oh; oy++)
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    float g = dy[((n * s->k + k) * s->oh + oy) * s->ow + ox];
                    if (db) db[k] += g;
                    for (int64_t c = 0; c < s->c; c++)
                        for (int64_t i = 0; i < s->kh; i++)
                            for (int64_t j = 0; j < s->kw; j++) {
                                int64_t iy = oy * s->sh - s->pt + i * s->dh, ix = ox * s->sw - s->pl + j * s->dw;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                                int64_t wi = ((k * s->c + c) * s->kh + i) * s->kw + j;
                                int64_t xi = ((n * s->c + c) * s->h + iy) * s->w + ix;
                                if (dw) dw[wi] += g * x[xi];
                                if (dx) dx[xi] += g * w[wi];
                            }
                }
}

/* ---- the layer ---- */

typedef struct Conv2dCfg {
    int64_t in, out, kernel, stride, dilation, padding; /* padding: when not same */
    int same, bias;
    Act act;
} Conv2dCfg;

enum { CV_IN, CV_OUT, CV_KERNEL, CV_STRIDE, CV_PADDING, CV_BIAS, CV_DILATION, CV_WINIT, CV_BINIT, CV_ACT };
static const LayerOption conv2d_options[] = {
    {"in_channels", OPT_INT, NULL, 1},
    {"out_channels", OPT_INT, NULL, 1},
    {"kernel_size", OPT_INT, "3", 0},
    {"stride", OPT_INT, "1", 0},
    {"padding", OPT_INT_OR_STRING, "same", 0},
    {"bias", OPT_BOOL, "true", 0},
    {"dilation", OPT_INT, "1", 0},
    {"weight_init", OPT_STRING, "glorot_uniform", 0},
    {"bias_init", OPT_STRING, "zeros", 0},
    {"activation", OPT_STRING, "linear", 0},
    {NULL, 0, NULL, 0}};

/* Limits keep every product below (the BLAS ints) and every size sane. */
#define CONV_MAX_CHANNELS (1 << 24)
#define CONV_MAX_KERNEL (1 << 12)

static int option_in_range(char *err, const char *name, double v, int64_t lo, int64_t hi) {
    if (v < (double)lo) return layer_fail(err, "%s must be >= %lld, got %.15g", name, (long long)lo, v);
    if (v > (double)hi) return layer_fail(err, "%s must be at most %lld, got %.15g", name, (long long)hi, v);
    return 0;
}

static int conv2d_init(Layer *m, const OptValues *v, char *err) {
    Conv2dCfg *c = m->cfg;
    if (option_in_range(err, "in_channels", v->num[CV_IN], 1, CONV_MAX_CHANNELS) ||
        option_in_range(err, "out_channels", v->num[CV_OUT], 1, CONV_MAX_CHANNELS) ||
        option_in_range(err, "kernel_size", v->num[CV_KERNEL], 1, CONV_MAX_KERNEL) ||
        option_in_range(err, "stride", v->num[CV_STRIDE], 1, CONV_MAX_KERNEL) ||
        option_in_range(err, "dilation", v->num[CV_DILATION], 1, CONV_MAX_KERNEL))
        return -1;
    c->in = (int64_t)v->num[CV_IN];
    c->out = (int64_t)v->num[CV_OUT];
    c->kernel = (int64_t)v->num[CV_KERNEL];
    c->stride = (int64_t)v->num[CV_STRIDE];
    c->dilation = (int64_t)v->num[CV_DILATION];
    c->bias = v->num[CV_BIAS] != 0;
    if (v->is_string[CV_PADDING]) {
        if (strcmp(v->str[CV_PADDING], "same") == 0) c->same = 1;
        else if (strcmp(v->str[CV_PADDING], "valid") == 0) c->padding = 0;
        else return layer_fail(err, "unknown padding '%s' (known: 'same', 'valid', or an integer >= 0)", v->str[CV_PADDING]);
    } else {
        if (option_in_range(err, "padding", v->num[CV_PADDING], 0, CONV_MAX_CHANNELS)) return -1;
        c->padding = (int64_t)v->num[CV_PADDING];
    }
    int64_t taps = c->kernel * c->kernel;
    if (c->in * taps > INT_MAX || c->out * taps > INT_MAX)
        return layer_fail(err, "channels * kernel_size^2 must be at most %d, got %lld * %lld^2", INT_MAX,
                          (long long)(c->in > c->out ? c->in : c->out), (long long)c->kernel);
    ParamInit wi, bi;
    if (param_init_parse(v->str[CV_WINIT], &wi))
        return layer_fail(err, "unknown weight_init '%s' (known: %s)", v->str[CV_WINIT], param_init_names);
    if (param_init_parse(v->str[CV_BINIT], &bi))
        return layer_fail(err, "unknown bias_init '%s' (known: %s)", v->str[CV_BINIT], param_init_names);
    if (act_parse(v->str[CV_ACT], &c->act))
        return layer_fail(err, "unknown activation '%s' (known: %s)", v->str[CV_ACT], act_names);
    /* Keras' fans for Conv2D: receptive field times the channels on each side. */
    int64_t ws[4] = {c->out, c->in, c->kernel, c->kernel};
    layer_add_param(m, "weight", 4, ws, wi, c->in * taps, c->out * taps);
    if (c->bias) layer_add_param(m, "bias", 1, &c->out, bi, c->in * taps, c->out * taps);
    return 0;
}

/* Output size and padding along one dimension; the output may come out < 1,
 * which the caller reports. */
static int64_t conv2d_dim(const Conv2dCfg *c, int64_t in, int64_t *pad_begin, int64_t *pad_end) {
    int64_t extent = c->dilation * (c->kernel - 1) + 1;
    if (c->same) conv_same_padding(pad_begin, pad_end, in, extent, c->stride);
    else *pad_begin = *pad_end = c->padding;
    int64_t padded = in + *pad_begin + *pad_end;
    return padded < extent ? 0 : (padded - extent) / c->stride + 1;
}

/* The one shape check: fills s from the input shape (N, C, H, W). */
static int conv2d_geometry(const Conv2dCfg *c, int ndim, const int64_t *in, ConvShape *s, char *err) {
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
    s->c = c->in;
    s->h = in[2];
    s->w = in[3];
    s->k = c->out;
    s->kh = s->kw = c->kernel;
    s->sh = s->sw = c->stride;
    s->dh = s->dw = c->dilation;
    s->oh = conv2d_dim(c, s->h, &s->pt, &s->pb);
    s->ow = conv2d_dim(c, s->w, &s->pl, &s->pr);
    const char *dim = s->oh < 1 ? "height" : s->ow < 1 ? "width" : NULL;
    if (dim) {
        int rows = s->oh < 1;
        return layer_fail(err,
                          "input %s is too small: output %s would be 0 (%s %lld + padding %lld+%lld is less than the "
                          "kernel extent %lld = dilation %lld * (kernel_size %lld - 1) + 1)",
                          shape_format(sh, sizeof sh, ndim, in), dim, dim, (long long)(rows ? s->h : s->w),
                          (long long)(rows ? s->pt : s->pl), (long long)(rows ? s->pb : s->pr),
                          (long long)(c->dilation * (c->kernel - 1) + 1), (long long)c->dilation, (long long)c->kernel);
    }
    if (s->oh * s->ow > INT_MAX || s->h * s->w > INT_MAX)
        return layer_fail(err, "input %s is too large: an image plane must have at most %d pixels",
                          shape_format(sh, sizeof sh, ndim, in), INT_MAX);
    return 0;
}

static int conv2d_shape(const Layer *m, int ndim, const int64_t *in, int *ondim, int64_t *out, char *err) {
    ConvShape s;
    if (conv2d_geometry(m->cfg, ndim, in, &s, err)) return -1;
    *ondim = 4;
    out[0] = s.n;
    out[1] = s.k;
    out[2] = s.oh;
    out[3] = s.ow;
    return 0;
}

static float *conv2d_workspace(const ConvShape *s, int64_t dz_floats, char *err) {
    int64_t floats = conv_workspace_floats(s, dz_floats);
    float *ws = workspace_get((size_t)floats);
    if (!ws) layer_fail(err, "out of memory for the im2col workspace of %lld floats", (long long)floats);
    return ws;
}

static int conv2d_fwd(Layer *m, const Tensor *x, Tensor *y, char *err) {
    const Conv2dCfg *c = m->cfg;
    ConvShape s;
    if (conv2d_geometry(c, x->ndim, x->shape, &s, err)) return -1;
    float *ws = conv2d_workspace(&s, 0, err);
    if (!ws) return -1;
    conv2d_forward(tensor_data(y), tensor_data(x), tensor_data(m->params[0].value),
                   c->bias ? tensor_data(m->params[1].value) : NULL, c->act, ws, &s);
    return 0;
}

static int conv2d_bwd(Layer *m, const Tensor *x, const Tensor *y, const Tensor *dy, Tensor *dx, char *err) {
    const Conv2dCfg *c = m->cfg;
    ConvShape s;
    if (conv2d_geometry(c, x->ndim, x->shape, &s, err)) return -1;
    float *ws = conv2d_workspace(&s, conv2d_dz_floats(&s, c->act), err);
    if (!ws) return -1;
    conv2d_backward(dx ? tensor_data(dx) : NULL, tensor_data(m->params[0].grad),
                    c->bias ? tensor_data(m->params[1].grad) : NULL, tensor_data(dy), tensor_data(x),
                    tensor_data(m->params[0].value), tensor_data(y), c->act, ws, &s);
    return 0;
}

const LayerKind conv2d_kind = {"Conv2d", conv2d_options, sizeof(Conv2dCfg), conv2d_init, conv2d_shape,
                               conv2d_fwd, conv2d_bwd, NULL, .skips_dx = 1};

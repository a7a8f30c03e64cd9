/* nn_batchnorm.c: batch normalisation (Ioffe & Szegedy, 2015) as PyTorch's
 * BatchNorm1d ((N, C) or (N, C, L)) and BatchNorm2d ((N, C, H, W)), with an
 * optional fused activation like Conv2d's.
 *
 * Both kinds view x as (N, C, S) and normalise each channel over its N*S
 * values:
 *   training    y = act(weight * (x - mean) * invstd + bias), mean and the
 *               biased variance from the batch; running_mean and running_var
 *               move towards the batch's mean and unbiased variance by
 *               `momentum` (PyTorch's convention: new = (1-m) old + m batch)
 *   evaluation  the same with running_mean and running_var
 * running_mean and running_var are buffers: in state_dict() and checkpoints,
 * not in parameters(), so optimizers never touch them.
 * Memory: 3C saved floats (the mean as a float pair, invstd) for backward, which recomputes
 * x_hat from x; a backward without dx borrows N*C*S floats of workspace. */
#include "activation.h"
#include "layer.h"
#include "nn_batchnorm.h"
#include "parallel.h"

#include <math.h>
#include <string.h>

/* ---- kernels ---- */

typedef struct BnJob {
    float *y, *stats, *running_mean, *running_var;
    float *dx, *dgamma, *dbeta, *dz;
    const float *x, *gamma, *beta, *dy, *out;
    int training;
    float eps, momentum;
    Act act;
    const BatchNormShape *s;
} BnJob;

/* x is (N, C, S): channel ch of sample i is the S floats at (i*C + ch)*S. */
static const float *bn_slice(const float *t, const BatchNormShape *s, int64_t i, int64_t ch) {
    return t + (i * s->c + ch) * s->s;
}

/* Sums in eight double lanes: GCC vectorises fixed lanes, not one running
 * double (its order is fixed by C), and a lone accumulator would wait on
 * each add's latency. The lanes fix the order too: the same bits on any
 * thread count, and from the AVX2 clone as from the baseline one (no FMA
 * contraction in ISO C mode). */
#define LANES 8
static double lanes_total(const double *acc) {
    double t = 0;
    for (int l = 0; l < LANES; l++) t += acc[l];
    return t;
}

/* sum of x[k] - shift, and of its square, over n values */
__attribute__((target_clones("avx2", "default")))
static void sums_shifted(double *sum, double *sq, const float *x, int64_t n, double shift) {
    double a[LANES] = {0}, b[LANES] = {0};
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int l = 0; l < LANES; l++) {
            double d = (double)x[k + l] - shift;
            a[l] += d;
            b[l] += d * d;
        }
    for (; k < n; k++) {
        double d = (double)x[k] - shift;
        a[0] += d;
        b[0] += d * d;
    }
    *sum += lanes_total(a);
    *sq += lanes_total(b);
}

/* sum of dz, and of dz * x_hat with x_hat = ((x - hi) - lo) * is, over n values */
__attribute__((target_clones("avx2", "default")))
static void sums_grad(double *sum_dz, double *sum_dz_xhat, const float *dz, const float *x, int64_t n, float hi,
                      float lo, float is) {
    double a[LANES] = {0}, b[LANES] = {0};
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int l = 0; l < LANES; l++) {
            a[l] += dz[k + l];
            b[l] += dz[k + l] * (((x[k + l] - hi) - lo) * is);
        }
    for (; k < n; k++) {
        a[0] += dz[k];
        b[0] += dz[k] * (((x[k] - hi) - lo) * is);
    }
    *sum_dz += lanes_total(a);
    *sum_dz_xhat += lanes_total(b);
}

static void bn_forward_task(void *arg, int task, int ntasks) {
    const BnJob *j = arg;
    const BatchNormShape *s = j->s;
    int64_t c0, c1, m = s->n * s->s;
    parallel_split(&c0, &c1, s->c, task, ntasks);
    for (int64_t ch = c0; ch < c1; ch++) {
        double mu, var;
        if (j->training) {
            /* One pass in double around a shift (the channel's first value):
             * sum(d^2) - sum(d)^2/m with d = x - shift cancels only when
             * |mean - shift| is many standard deviations, and double has 29
             * bits more than the float data (a pass over memory is most of
             * this layer's time). */
            double shift = bn_slice(j->x, s, 0, ch)[0], sum = 0, sq = 0;
            for (int64_t i = 0; i < s->n; i++) sums_shifted(&sum, &sq, bn_slice(j->x, s, i, ch), s->s, shift);
            mu = shift + sum / (double)m;
            sq -= sum * sum / (double)m;
            if (sq < 0) sq = 0;
            var = sq / (double)m;
            if (j->running_mean) {
                double mo = j->momentum;
                j->running_mean[ch] = (float)((1 - mo) * j->running_mean[ch] + mo * mu);
                j->running_var[ch] = (float)((1 - mo) * j->running_var[ch] + mo * sq / (double)(m - 1));
            }
        } else {
            mu = j->running_mean[ch];
            var = j->running_var[ch];
        }
        /* the mean as hi + lo: x - hi is exact near the mean (Sterbenz), so
         * a large mean over a small spread keeps the spread's digits */
        float hi = (float)mu, lo = (float)(mu - hi), is = (float)(1.0 / sqrt(var + (double)j->eps));
        j->stats[ch] = hi;
        j->stats[s->c + ch] = lo;
        j->stats[2 * s->c + ch] = is;
        float g = j->gamma ? j->gamma[ch] : 1.0f, b = j->beta ? j->beta[ch] : 0.0f;
        float scale = g * is;
        for (int64_t i = 0; i < s->n; i++) {
            const float *x = bn_slice(j->x, s, i, ch);
            float *y = (float *)bn_slice(j->y, s, i, ch);
            for (int64_t k = 0; k < s->s; k++) y[k] = ((x[k] - hi) - lo) * scale + b;
            act_forward(j->act, y, s->s);
        }
    }
}

/* Channels go to the pool when the tensor is large enough to pay for it;
 * the split is static, so results do not depend on the thread count. */
static int bn_tasks(const BatchNormShape *s) {
    return s->n * s->c * s->s >= ((int64_t)1 << 15) ? parallel_threads() : 1;
}

void batchnorm_forward(float *y, float *stats, float *running_mean, float *running_var, const float *x,
                       const float *gamma, const float *beta, int training, float eps, float momentum, Act act,
                       const BatchNormShape *s) {
    BnJob j = {.y = y, .stats = stats, .running_mean = running_mean, .running_var = running_var,
               .x = x, .gamma = gamma, .beta = beta, .training = training, .eps = eps, .momentum = momentum,
               .act = act, .s = s};
    parallel_run(bn_tasks(s), bn_forward_task, &j);
}

static void bn_backward_task(void *arg, int task, int ntasks) {
    const BnJob *j = arg;
    const BatchNormShape *s = j->s;
    int64_t c0, c1, m = s->n * s->s;
    parallel_split(&c0, &c1, s->c, task, ntasks);
    for (int64_t ch = c0; ch < c1; ch++) {
        float hi = j->stats[ch], lo = j->stats[s->c + ch], is = j->stats[2 * s->c + ch];
        float g = j->gamma ? j->gamma[ch] : 1.0f;
        double sum_dz = 0, sum_dz_xhat = 0;
        for (int64_t i = 0; i < s->n; i++) {
            const float *x = bn_slice(j->x, s, i, ch), *dy = bn_slice(j->dy, s, i, ch), *y = bn_slice(j->out, s, i, ch);
            float *dz = (float *)bn_slice(j->dz, s, i, ch);
            act_backward(j->act, dz, dy, y, s->s);
            sums_grad(&sum_dz, &sum_dz_xhat, dz, x, s->s, hi, lo, is);
        }
        if (j->dgamma) j->dgamma[ch] += (float)sum_dz_xhat;
        if (j->dbeta) j->dbeta[ch] += (float)sum_dz;
        if (!j->dx) continue;
        /* training: the batch's mean and variance depend on x too, which
         * takes out the gradient's mean and its projection on x_hat */
        float k0 = g * is;
        float a = j->training ? (float)(sum_dz / (double)m) : 0.0f;
        float b = j->training ? (float)(sum_dz_xhat / (double)m) : 0.0f;
        for (int64_t i = 0; i < s->n; i++) {
            const float *x = bn_slice(j->x, s, i, ch), *dz = bn_slice(j->dz, s, i, ch);
            float *dx = (float *)bn_slice(j->dx, s, i, ch);
            for (int64_t k = 0; k < s->s; k++) dx[k] = k0 * (dz[k] - a - ((x[k] - hi) - lo) * is * b);
        }
    }
}

void batchnorm_backward(float *dx, float *dgamma, float *dbeta, float *dz, const float *dy, const float *y,
                        const float *x, const float *gamma, const float *stats, int training, Act act,
                        const BatchNormShape *s) {
    BnJob j = {.dx = dx, .dgamma = dgamma, .dbeta = dbeta, .dz = dz, .dy = dy, .out = y, .x = x, .gamma = gamma,
               .stats = (float *)stats, .training = training, .act = act, .s = s};
    parallel_run(bn_tasks(s), bn_backward_task, &j);
}

/* ---- the layer ---- */

typedef struct BatchNormCfg {
    int64_t features;
    int spatial; /* 1: BatchNorm2d, 0: BatchNorm1d */
    int affine;
    float eps, momentum;
    Act act;
    SavedBuf stats;  /* mean hi, mean lo, invstd (C each) of the latest forward */
    int trained;     /* whether the latest forward used the batch's statistics */
} BatchNormCfg;

enum { BN_FEATURES, BN_EPS, BN_MOMENTUM, BN_AFFINE, BN_ACT };
static const LayerOption batchnorm_options[] = {
    {"num_features", OPT_INT, NULL, 1},
    {"eps", OPT_NUMBER, "1e-5", 0},
    {"momentum", OPT_NUMBER, "0.1", 0},
    {"affine", OPT_BOOL, "true", 0},
    {"activation", OPT_STRING, "linear", 0},
    {NULL, 0, NULL, 0}};

static int batchnorm_init(Layer *m, const OptValues *v, char *err, int spatial) {
    BatchNormCfg *c = m->cfg;
    if (!(v->num[BN_FEATURES] >= 1 && v->num[BN_FEATURES] <= (1 << 24)))
        return layer_fail(err, "num_features must be in [1, %d], got %.15g", 1 << 24, v->num[BN_FEATURES]);
    if (!(v->num[BN_EPS] > 0 && v->num[BN_EPS] < 1)) return layer_fail(err, "eps must be in (0, 1), got %g", v->num[BN_EPS]);
    if (!(v->num[BN_MOMENTUM] >= 0 && v->num[BN_MOMENTUM] <= 1))
        return layer_fail(err, "momentum must be in [0, 1], got %g", v->num[BN_MOMENTUM]);
    if (act_parse(v->str[BN_ACT], &c->act))
        return layer_fail(err, "unknown activation '%s' (known: %s)", v->str[BN_ACT], act_names);
    c->features = (int64_t)v->num[BN_FEATURES];
    c->eps = (float)v->num[BN_EPS];
    c->momentum = (float)v->num[BN_MOMENTUM];
    c->affine = v->num[BN_AFFINE] != 0;
    c->spatial = spatial;
    if (c->affine) {
        layer_add_param(m, "weight", 1, &c->features, INIT_ONES, 0, 0);
        layer_add_param(m, "bias", 1, &c->features, INIT_ZEROS, 0, 0);
    }
    m->params[layer_add_param(m, "running_mean", 1, &c->features, INIT_ZEROS, 0, 0)].buffer = 1;
    m->params[layer_add_param(m, "running_var", 1, &c->features, INIT_ONES, 0, 0)].buffer = 1;
    return 0;
}

static int batchnorm1d_init(Layer *m, const OptValues *v, char *err) { return batchnorm_init(m, v, err, 0); }
static int batchnorm2d_init(Layer *m, const OptValues *v, char *err) { return batchnorm_init(m, v, err, 1); }

/* The one shape check: (N, C[, L]) for 1d, (N, C, H, W) for 2d. */
static int batchnorm_geometry(const BatchNormCfg *c, int ndim, const int64_t *in, BatchNormShape *s, char *err) {
    char sh[256];
    if (c->spatial ? ndim != 4 : ndim != 2 && ndim != 3)
        return layer_fail(err, "expected a %s input, got shape %s", c->spatial ? "4-d (N, C, H, W)" : "2-d (N, C) or 3-d (N, C, L)",
                          shape_format(sh, sizeof sh, ndim, in));
    if (in[1] != c->features)
        return layer_fail(err, "input has %lld channels, layer expects %lld (input shape %s)", (long long)in[1],
                          (long long)c->features, shape_format(sh, sizeof sh, ndim, in));
    s->n = in[0];
    s->c = in[1];
    s->s = 1;
    for (int d = 2; d < ndim; d++) s->s *= in[d];
    return 0;
}

static int batchnorm_shape(const Layer *m, int ndim, const int64_t *in, int *ondim, int64_t *out, char *err) {
    BatchNormShape s;
    if (batchnorm_geometry(m->cfg, ndim, in, &s, err)) return -1;
    *ondim = ndim;
    memcpy(out, in, (size_t)ndim * sizeof *in);
    return 0;
}

/* Parameter order: [weight, bias,] running_mean, running_var. */
static float *param_data(Layer *m, int i, int grad) {
    Tensor *t = grad ? m->params[i].grad : m->params[i].value;
    return tensor_data(t);
}

static int batchnorm_fwd(Layer *m, const Tensor *x, Tensor *y, char *err) {
    BatchNormCfg *c = m->cfg;
    BatchNormShape s;
    char sh[256];
    if (batchnorm_geometry(c, x->ndim, x->shape, &s, err)) return -1;
    if (m->training && s.n * s.s < 2)
        return layer_fail(err, "training needs more than 1 value per channel, got input shape %s (call eval() to use "
                          "the running statistics)", shape_format(sh, sizeof sh, x->ndim, x->shape));
    float *stats = saved_reserve(&c->stats, (size_t)(3 * s.c));
    if (!stats) return layer_fail(err, "out of memory for the statistics of %lld channels", (long long)s.c);
    int r = c->affine ? 2 : 0;
    c->trained = m->training;
    batchnorm_forward(tensor_data(y), stats, param_data(m, r, 0), param_data(m, r + 1, 0),
                      tensor_data(x), c->affine ? param_data(m, 0, 0) : NULL, c->affine ? param_data(m, 1, 0) : NULL,
                      m->training, c->eps, c->momentum, c->act, &s);
    return 0;
}

static int batchnorm_bwd(Layer *m, const Tensor *x, const Tensor *y, const Tensor *dy, Tensor *dx, char *err) {
    BatchNormCfg *c = m->cfg;
    BatchNormShape s;
    if (batchnorm_geometry(c, x->ndim, x->shape, &s, err)) return -1;
    if (!c->stats.data) return layer_fail(err, "backward: call forward with this input first");
    int64_t n = tensor_numel(x);
    /* dz (the gradient before the activation) lives in dx until dx is written */
    float *dz = dx ? tensor_data(dx) : workspace_get((size_t)n);
    if (!dz) return layer_fail(err, "out of memory for a workspace of %lld floats", (long long)n);
    batchnorm_backward(dx ? tensor_data(dx) : NULL, c->affine ? param_data(m, 0, 1) : NULL,
                       c->affine ? param_data(m, 1, 1) : NULL, dz, tensor_data(dy), tensor_data(y), tensor_data(x),
                       c->affine ? param_data(m, 0, 0) : NULL, c->stats.data, c->trained, c->act,
                       &s);
    return 0;
}

static void batchnorm_destroy(Layer *m) { saved_free(&((BatchNormCfg *)m->cfg)->stats); }

const LayerKind batchnorm1d_kind = {"BatchNorm1d", batchnorm_options, sizeof(BatchNormCfg), batchnorm1d_init,
                                    batchnorm_shape, batchnorm_fwd, batchnorm_bwd, batchnorm_destroy, .skips_dx = 1};
const LayerKind batchnorm2d_kind = {"BatchNorm2d", batchnorm_options, sizeof(BatchNormCfg), batchnorm2d_init,
                                    batchnorm_shape, batchnorm_fwd, batchnorm_bwd, batchnorm_destroy, .skips_dx = 1};

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
 * Memory: 2C saved floats (mean, invstd) for backward, which recomputes
 * x_hat from x; a backward without dx borrows N*C*S floats of workspace. */
#include "activation.h"
#include "layer.h"
#include "nn_batchnorm.h"
#include "parallel.h"

#include <math.h>
#include <string.h>

/* ---- kernels ---- */

typedef struct BnJob {
    float *y, *mean, *invstd, *running_mean, *running_var;
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

static void bn_forward_task(void *arg, int task, int ntasks) {
    const BnJob *j = arg;
    const BatchNormShape *s = j->s;
    int64_t lo, hi, m = s->n * s->s;
    parallel_split(&lo, &hi, s->c, task, ntasks);
    for (int64_t ch = lo; ch < hi; ch++) {
        double mu, var;
        if (j->training) { /* two passes in double: the variance of 10^5 values stays exact */
            double sum = 0, sq = 0;
            for (int64_t i = 0; i < s->n; i++) {
                const float *x = bn_slice(j->x, s, i, ch);
                for (int64_t k = 0; k < s->s; k++) sum += x[k];
            }
            mu = sum / (double)m;
            for (int64_t i = 0; i < s->n; i++) {
                const float *x = bn_slice(j->x, s, i, ch);
                for (int64_t k = 0; k < s->s; k++) sq += (x[k] - mu) * (x[k] - mu);
            }
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
        float fmu = (float)mu, is = (float)(1.0 / sqrt(var + (double)j->eps));
        j->mean[ch] = fmu;
        j->invstd[ch] = is;
        float g = j->gamma ? j->gamma[ch] : 1.0f, b = j->beta ? j->beta[ch] : 0.0f;
        float scale = g * is, shift = b - fmu * scale;
        for (int64_t i = 0; i < s->n; i++) {
            const float *x = bn_slice(j->x, s, i, ch);
            float *y = (float *)bn_slice(j->y, s, i, ch);
            for (int64_t k = 0; k < s->s; k++) y[k] = x[k] * scale + shift;
            act_forward(j->act, y, s->s);
        }
    }
}

/* Channels go to the pool when the tensor is large enough to pay for it;
 * the split is static, so results do not depend on the thread count. */
static int bn_tasks(const BatchNormShape *s) {
    return s->n * s->c * s->s >= ((int64_t)1 << 15) ? parallel_threads() : 1;
}

void batchnorm_forward(float *y, float *mean, float *invstd, float *running_mean, float *running_var,
                       const float *x, const float *gamma, const float *beta, int training, float eps,
                       float momentum, Act act, const BatchNormShape *s) {
    BnJob j = {.y = y, .mean = mean, .invstd = invstd, .running_mean = running_mean, .running_var = running_var,
               .x = x, .gamma = gamma, .beta = beta, .training = training, .eps = eps, .momentum = momentum,
               .act = act, .s = s};
    parallel_run(bn_tasks(s), bn_forward_task, &j);
}

static void bn_backward_task(void *arg, int task, int ntasks) {
    const BnJob *j = arg;
    const BatchNormShape *s = j->s;
    int64_t lo, hi, m = s->n * s->s;
    parallel_split(&lo, &hi, s->c, task, ntasks);
    for (int64_t ch = lo; ch < hi; ch++) {
        float mu = j->mean[ch], is = j->invstd[ch], g = j->gamma ? j->gamma[ch] : 1.0f;
        double sum_dz = 0, sum_dz_xhat = 0;
        for (int64_t i = 0; i < s->n; i++) {
            const float *x = bn_slice(j->x, s, i, ch), *dy = bn_slice(j->dy, s, i, ch), *y = bn_slice(j->out, s, i, ch);
            float *dz = (float *)bn_slice(j->dz, s, i, ch);
            act_backward(j->act, dz, dy, y, s->s);
            for (int64_t k = 0; k < s->s; k++) {
                sum_dz += dz[k];
                sum_dz_xhat += dz[k] * ((x[k] - mu) * is);
            }
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
            for (int64_t k = 0; k < s->s; k++) dx[k] = k0 * (dz[k] - a - (x[k] - mu) * is * b);
        }
    }
}

void batchnorm_backward(float *dx, float *dgamma, float *dbeta, float *dz, const float *dy, const float *y,
                        const float *x, const float *gamma, const float *mean, const float *invstd, int training,
                        Act act, const BatchNormShape *s) {
    BnJob j = {.dx = dx, .dgamma = dgamma, .dbeta = dbeta, .dz = dz, .dy = dy, .out = y, .x = x, .gamma = gamma,
               .mean = (float *)mean, .invstd = (float *)invstd, .training = training, .act = act, .s = s};
    parallel_run(bn_tasks(s), bn_backward_task, &j);
}

/* ---- the layer ---- */

typedef struct BatchNormCfg {
    int64_t features;
    int spatial; /* 1: BatchNorm2d, 0: BatchNorm1d */
    int affine;
    float eps, momentum;
    Act act;
    SavedBuf stats;  /* mean (C) then invstd (C) of the latest forward */
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
    float *stats = saved_reserve(&c->stats, (size_t)(2 * s.c));
    if (!stats) return layer_fail(err, "out of memory for the statistics of %lld channels", (long long)s.c);
    int r = c->affine ? 2 : 0;
    c->trained = m->training;
    batchnorm_forward(tensor_data(y), stats, stats + s.c, param_data(m, r, 0), param_data(m, r + 1, 0),
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
                       c->affine ? param_data(m, 0, 0) : NULL, c->stats.data, c->stats.data + s.c, c->trained, c->act,
                       &s);
    return 0;
}

static void batchnorm_destroy(Layer *m) { saved_free(&((BatchNormCfg *)m->cfg)->stats); }

const LayerKind batchnorm1d_kind = {"BatchNorm1d", batchnorm_options, sizeof(BatchNormCfg), batchnorm1d_init,
                                    batchnorm_shape, batchnorm_fwd, batchnorm_bwd, batchnorm_destroy, .skips_dx = 1};
const LayerKind batchnorm2d_kind = {"BatchNorm2d", batchnorm_options, sizeof(BatchNormCfg), batchnorm2d_init,
                                    batchnorm_shape, batchnorm_fwd, batchnorm_bwd, batchnorm_destroy, .skips_dx = 1};

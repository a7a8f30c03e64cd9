/* nn_mdn.c: MDN, a mixture-density output head (Bishop 1994; World Models'
 * MDN-RNN). The layer is a Linear map from in_features to K*(1+2D) raw
 * outputs, laid out per sample as in mdn_loss.h; it returns them untouched
 * except, with min_sigma > 0, the log sigmas: log(min_sigma + exp(raw)), a
 * smooth floor. Without a floor, a target dimension that is (nearly)
 * constant, like a latent that the autoencoder's ReLU keeps at 0, drives its
 * sigma to the clamp, the loss to -150 and the mean's gradient (z / sigma)
 * to thousands, which can wreck the shared trunk's training.
 * Softmax, exp and the log-sigma clamp happen where they are used: in the
 * loss (mdn_loss.c), in sampling and in the mixture mean (below). Sampling is
 * how generation keeps moving: a deterministic regressor on MSE settles on an
 * average pose.
 * x is (..., in), W is (K*(1+2D), in), b is (K*(1+2D)), y is (..., K*(1+2D)).
 * Memory: with min_sigma, backward borrows rows*K*(1+2D) floats of workspace. */
#include "nn_mdn.h"
#include "tensor_math.h"

#include <math.h>
#include <string.h>

typedef struct MdnCfg {
    int64_t in, width;
    int k, d;
    float min_sigma;
} MdnCfg;

enum { MDN_IN, MDN_OUT, MDN_MIX, MDN_WINIT, MDN_MIN_SIGMA };
static const LayerOption mdn_options[] = {
    {"in_features", OPT_INT, NULL, 1},
    {"out_features", OPT_INT, NULL, 1},
    {"mixtures", OPT_INT, NULL, 1},
    {"weight_init", OPT_STRING, "glorot_uniform", 0},
    {"min_sigma", OPT_NUMBER, "0", 0},
    {NULL, 0, NULL, 0}};

/* The log-sigma floor on rows (n, K*(1+2D)), in place: ls = log(f + exp(ls))
 * for f = min_sigma, as m + log1p(exp(-|ls - log f|)) with m = max(log f, ls),
 * so no exp overflows. */
void mdn_floor_forward(float *out, int64_t n, int k, int d, float min_sigma) {
    const int64_t w = mdn_width(k, d), first = (int64_t)k * (1 + d);
    const double lf = log((double)min_sigma);
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = first; i < w; i++) {
            double v = out[r * w + i], hi = v > lf ? v : lf;
            out[r * w + i] = (float)(hi + log1p(exp(-fabs(v - lf))));
        }
}

/* dz = dy through the floor, from its output: d/dv log(f + e^v) =
 * e^v / (f + e^v) = 1 - f / exp(out). The other entries pass through. */
void mdn_floor_backward(float *dz, const float *dy, const float *out, int64_t n, int k, int d, float min_sigma) {
    const int64_t w = mdn_width(k, d), first = (int64_t)k * (1 + d);
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < w; i++) {
            int64_t j = r * w + i;
            dz[j] = i < first ? dy[j] : (float)(dy[j] * (1.0 - (double)min_sigma * exp(-(double)out[j])));
        }
}

static int mdn_init(Layer *m, const OptValues *v, char *err) {
    MdnCfg *c = m->cfg;
    double in = v->num[MDN_IN], d = v->num[MDN_OUT], k = v->num[MDN_MIX];
    if (in < 1 || in > (1 << 30)) return layer_fail(err, "in_features must be in [1, 2^30], got %.0f", in);
    if (d < 1 || k < 1 || k * (1 + 2 * d) > (1 << 30))
        return layer_fail(err, "out_features and mixtures must be >= 1 with mixtures*(1+2*out_features) <= 2^30, got %.0f and %.0f",
                          d, k);
    double f = v->num[MDN_MIN_SIGMA];
    if (!(f >= 0 && f <= 1e3)) return layer_fail(err, "min_sigma must be in [0, 1000], got %g", f);
    ParamInit wi;
    if (param_init_parse(v->str[MDN_WINIT], &wi))
        return layer_fail(err, "unknown weight_init '%s' (known: %s)", v->str[MDN_WINIT], param_init_names);
    c->in = (int64_t)in;
    c->d = (int)d;
    c->k = (int)k;
    c->width = mdn_width(c->k, c->d);
    c->min_sigma = (float)f;
    int64_t ws[2] = {c->width, c->in};
    layer_add_param(m, "weight", 2, ws, wi, c->in, c->width);
    layer_add_param(m, "bias", 1, &c->width, INIT_ZEROS, c->in, c->width);
    return 0;
}

static int mdn_shape(const Layer *m, int ndim, const int64_t *in, int *ondim, int64_t *out, char *err) {
    const MdnCfg *c = m->cfg;
    if (ndim < 1 || in[ndim - 1] != c->in) {
        char s[256];
        return layer_fail(err, "input of shape %s must have %lld features in its last dimension",
                          shape_format(s, sizeof s, ndim, in), (long long)c->in);
    }
    *ondim = ndim;
    memcpy(out, in, (size_t)ndim * sizeof *in);
    out[ndim - 1] = c->width;
    return 0;
}

static int mdn_fwd(Layer *m, const Tensor *x, Tensor *y, char *err) {
    const MdnCfg *c = m->cfg;
    int64_t rows = tensor_numel(x) / c->in;
    const float *b = tensor_data(m->params[1].value);
    float *yd = tensor_data(y);
    for (int64_t r = 0; r < rows; r++) memcpy(yd + r * c->width, b, (size_t)c->width * sizeof *yd);
    if (rows)
        blas_sgemm(0, 1, (int)rows, (int)c->width, (int)c->in, 1.0f, tensor_data(x), (int)c->in,
                   tensor_data(m->params[0].value), (int)c->in, 1.0f, yd, (int)c->width);
    if (c->min_sigma > 0) mdn_floor_forward(yd, rows, c->k, c->d, c->min_sigma);
    return 0;
}

static int mdn_bwd(Layer *m, const Tensor *x, const Tensor *y, const Tensor *dy, Tensor *dx, char *err) {
    const MdnCfg *c = m->cfg;
    int64_t rows = tensor_numel(x) / c->in;
    if (!rows) return 0;
    const float *dyd = tensor_data(dy);
    if (c->min_sigma > 0) {
        float *dz = workspace_get((size_t)(rows * c->width));
        if (!dz) return layer_fail(err, "out of memory for a workspace of %lld floats", (long long)(rows * c->width));
        mdn_floor_backward(dz, dyd, tensor_data(y), rows, c->k, c->d, c->min_sigma);
        dyd = dz;
    }
    float *db = tensor_data(m->params[1].grad);
    blas_sgemm(1, 0, (int)c->width, (int)c->in, (int)rows, 1.0f, dyd, (int)c->width, tensor_data(x), (int)c->in, 1.0f,
               tensor_data(m->params[0].grad), (int)c->in);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < c->width; j++) db[j] += dyd[r * c->width + j];
    blas_sgemm(0, 0, (int)rows, (int)c->in, (int)c->width, 1.0f, dyd, (int)c->width, tensor_data(m->params[0].value),
               (int)c->in, 0.0f, tensor_data(dx), (int)c->in);
    return 0;
}

const LayerKind mdn_kind = {"MDN", mdn_options, sizeof(MdnCfg), mdn_init, mdn_shape, mdn_fwd, mdn_bwd, NULL, 0};

int mdn_mixtures(const Layer *m) { return ((const MdnCfg *)m->cfg)->k; }
int mdn_out_features(const Layer *m) { return ((const MdnCfg *)m->cfg)->d; }

static inline double clamp_log_sigma(float v) {
    return v < MDN_LOG_SIGMA_MIN ? MDN_LOG_SIGMA_MIN : v > MDN_LOG_SIGMA_MAX ? MDN_LOG_SIGMA_MAX : (double)v;
}

void mdn_sample(float *y, const float *out, int64_t n, int k, int d, double temperature, double sigma_temperature,
                Rng *rng) {
    const int64_t w = mdn_width(k, d), kd = (int64_t)k * d;
    const double noise_scale = sqrt(sigma_temperature);
    for (int64_t r = 0; r < n; r++) {
        const float *logits = out + r * w, *mu = logits + k, *ls = mu + kd;
        int j = 0;
        for (int i = 1; i < k; i++)
            if (logits[i] > logits[j]) j = i;
        if (temperature > 0) {
            /* inverse CDF of softmax(logits / T), shifted by the max so no exp overflows */
            double mx = logits[j] / temperature, sum = 0, acc = 0;
            for (int i = 0; i < k; i++) sum += exp(logits[i] / temperature - mx);
            double u = rng_uniform(rng) * sum;
            j = k - 1; /* where rounding leaves u just above the last partial sum */
            for (int i = 0; i < k; i++) {
                acc += exp(logits[i] / temperature - mx);
                if (u < acc) {
                    j = i;
                    break;
                }
            }
        }
        const float *mj = mu + (int64_t)j * d, *lj = ls + (int64_t)j * d;
        float *yr = y + r * d;
        for (int e = 0; e < d; e++)
            yr[e] = temperature > 0 ? (float)(mj[e] + exp(clamp_log_sigma(lj[e])) * noise_scale * rng_normal(rng)) : mj[e];
    }
}

void mdn_mean(float *y, const float *out, int64_t n, int k, int d) {
    const int64_t w = mdn_width(k, d);
    for (int64_t r = 0; r < n; r++) {
        const float *logits = out + r * w, *mu = logits + k;
        double mx = logits[0], sum = 0;
        for (int i = 1; i < k; i++)
            if (logits[i] > mx) mx = logits[i];
        for (int i = 0; i < k; i++) sum += exp(logits[i] - mx);
        float *yr = y + r * d;
        for (int e = 0; e < d; e++) {
            double acc = 0;
            for (int i = 0; i < k; i++) acc += exp(logits[i] - mx) * mu[(int64_t)i * d + e];
            yr[e] = (float)(acc / sum);
        }
    }
}

/* loss.c: the kernels of loss.h. */
#include "loss.h"

#include <math.h>

double mse_forward(const float *y, const float *t, int64_t n, LossReduction r) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)y[i] - (double)t[i];
        s += d * d;
    }
    return r == LOSS_MEAN ? s / (double)n : s;
}

void mse_backward(float *dy, const float *y, const float *t, int64_t n, LossReduction r) {
    const float scale = r == LOSS_MEAN ? (float)(2.0 / (double)n) : 2.0f;
    for (int64_t i = 0; i < n; i++) dy[i] = scale * (y[i] - t[i]);
}

static inline double clip(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

double bce_forward(const float *y, const float *t, int64_t n, float eps, LossReduction r) {
    const double lo = eps, hi = 1.0 - (double)eps;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double p = clip(y[i], lo, hi), tt = t[i];
        s -= tt * log(p) + (1.0 - tt) * log1p(-p);
    }
    return r == LOSS_MEAN ? s / (double)n : s;
}

void bce_backward(float *dy, const float *y, const float *t, int64_t n, float eps, LossReduction r) {
    const double lo = eps, hi = 1.0 - (double)eps;
    const double scale = r == LOSS_MEAN ? 1.0 / (double)n : 1.0;
    for (int64_t i = 0; i < n; i++) {
        const double p = y[i];
        dy[i] = p < lo || p > hi ? 0.0f : (float)(scale * (p - (double)t[i]) / (p * (1.0 - p)));
    }
}

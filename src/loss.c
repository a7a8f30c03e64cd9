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

/* The sums of one Dice sample: I = sum p g, S = sum p + sum g. */
static void dice_sums(const float *y, const float *t, int64_t len, int invert, double *inter, double *total) {
    double i = 0, s = 0;
    for (int64_t k = 0; k < len; k++) {
        const double p = invert ? 1.0 - (double)y[k] : (double)y[k], g = invert ? 1.0 - (double)t[k] : (double)t[k];
        i += p * g;
        s += p + g;
    }
    *inter = i;
    *total = s;
}

double dice_forward(const float *y, const float *t, int64_t samples, int64_t len, float smooth, int invert,
                    LossReduction r) {
    double sum = 0;
    for (int64_t n = 0; n < samples; n++) {
        double i, s;
        dice_sums(y + n * len, t + n * len, len, invert, &i, &s);
        sum += 1.0 - (2.0 * i + smooth) / (s + smooth);
    }
    return r == LOSS_MEAN ? sum / (double)samples : sum;
}

void dice_backward(float *dy, const float *y, const float *t, int64_t samples, int64_t len, float smooth, int invert,
                   LossReduction r) {
    const double scale = (r == LOSS_MEAN ? 1.0 / (double)samples : 1.0) * (invert ? -1.0 : 1.0);
    for (int64_t n = 0; n < samples; n++) {
        const float *yn = y + n * len, *tn = t + n * len;
        double i, s;
        dice_sums(yn, tn, len, invert, &i, &s);
        const double den = s + smooth, a = (2.0 * i + smooth) / (den * den), b = 2.0 / den;
        for (int64_t k = 0; k < len; k++) {
            const double g = invert ? 1.0 - (double)tn[k] : (double)tn[k];
            dy[n * len + k] = (float)(scale * (a - b * g));
        }
    }
}

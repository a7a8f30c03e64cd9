/* mdn_loss.c: the mixture-density NLL and its exact gradient with respect to
 * the raw output vector (layout and conventions in mdn_loss.h).
 *
 * Per sample, with a_j = logit_j and l_j = log N(y; mu_j, sigma_j):
 *   NLL = lse_j(a_j) - lse_j(a_j + l_j)
 *   dNLL/da_j        = pi_j - gamma_j       (gamma = posterior of component j)
 *   dNLL/dmu_je      = -gamma_j z_je / sigma_je,      z = (y - mu) / sigma
 *   dNLL/dlogsig_je  = -gamma_j (z_je^2 - 1)          (0 where clamped)
 * Both log-sum-exps are taken in one streaming pass, so no scratch of size K. */
#include "mdn_loss.h"

#include <math.h>

static inline double clamp_log_sigma(float v) {
    return v < MDN_LOG_SIGMA_MIN ? MDN_LOG_SIGMA_MIN : v > MDN_LOG_SIGMA_MAX ? MDN_LOG_SIGMA_MAX : (double)v;
}

/* log N(y; mu, diag(exp(ls))^2) over d dimensions. */
static double component_log_pdf(const float *mu, const float *ls, const float *y, int d) {
    double s = 0;
    for (int e = 0; e < d; e++) {
        double l = clamp_log_sigma(ls[e]);
        double z = ((double)y[e] - (double)mu[e]) * exp(-l);
        s += -0.5 * z * z - l;
    }
    return s - 0.5 * d * log(2.0 * M_PI);
}

/* Streaming log-sum-exp: (max, sum of exp(v - max)). */
static inline void lse_add(double *mx, double *sum, double v) {
    if (v <= *mx) {
        *sum += exp(v - *mx);
    } else {
        *sum = *sum * exp(*mx - v) + 1.0;
        *mx = v;
    }
}

/* lse of the logits (the softmax normaliser) and of logits + log pdf. */
static void row_lse(double *lse_logits, double *lse_joint, const float *row, const float *y, int k, int d) {
    const float *mu = row + k, *ls = row + k + (int64_t)k * d;
    double m1 = -INFINITY, s1 = 0, m2 = -INFINITY, s2 = 0;
    for (int j = 0; j < k; j++) {
        double a = row[j];
        lse_add(&m1, &s1, a);
        lse_add(&m2, &s2, a + component_log_pdf(mu + (int64_t)j * d, ls + (int64_t)j * d, y, d));
    }
    *lse_logits = m1 + log(s1);
    *lse_joint = m2 + log(s2);
}

double mdn_loss_forward(const float *out, const float *target, int64_t n, int k, int d) {
    const int64_t w = mdn_width(k, d);
    double total = 0;
    for (int64_t r = 0; r < n; r++) {
        double lse_logits, lse_joint;
        row_lse(&lse_logits, &lse_joint, out + r * w, target + r * d, k, d);
        total += lse_logits - lse_joint;
    }
    return total / (double)n;
}

void mdn_loss_backward(float *dout, const float *out, const float *target, int64_t n, int k, int d, float scale) {
    const int64_t w = mdn_width(k, d), kd = (int64_t)k * d;
    const double g = (double)scale / (double)n;
    for (int64_t r = 0; r < n; r++) {
        const float *row = out + r * w, *y = target + r * d;
        float *drow = dout + r * w;
        double lse_logits, lse_joint;
        row_lse(&lse_logits, &lse_joint, row, y, k, d);
        for (int j = 0; j < k; j++) {
            const float *mu = row + k + (int64_t)j * d, *ls = row + k + kd + (int64_t)j * d;
            float *dmu = drow + k + (int64_t)j * d, *dls = drow + k + kd + (int64_t)j * d;
            double a = row[j];
            double gamma = exp(a + component_log_pdf(mu, ls, y, d) - lse_joint);
            double pi = exp(a - lse_logits);
            drow[j] += (float)(g * (pi - gamma));
            for (int e = 0; e < d; e++) {
                double l = clamp_log_sigma(ls[e]), inv_sigma = exp(-l);
                double z = ((double)y[e] - (double)mu[e]) * inv_sigma;
                dmu[e] += (float)(g * -gamma * z * inv_sigma);
                if (ls[e] >= MDN_LOG_SIGMA_MIN && ls[e] <= MDN_LOG_SIGMA_MAX) dls[e] += (float)(g * -gamma * (z * z - 1.0));
            }
        }
    }
}

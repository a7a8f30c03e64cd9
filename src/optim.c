/* optim.c: the update rules of optim.h, one loop each over flat buffers.
 * Scalars derived from the step count (bias corrections) are computed in
 * double and rounded once to float, as PyTorch does; per-element arithmetic is
 * float32. */
#include "optim.h"

#include <math.h>
#include <string.h>

void sgd_step(float *w, const float *g, float *buf, int64_t n, const SgdParams *p, int64_t step) {
    const float lr = (float)p->lr, wd = (float)p->weight_decay, mu = (float)p->momentum;
    const float keep = (float)(1.0 - p->dampening);
    const int first = step <= 1;
    for (int64_t i = 0; i < n; i++) {
        float d = wd != 0.0f ? g[i] + wd * w[i] : g[i];
        if (mu != 0.0f) {
            buf[i] = first ? d : buf[i] * mu + keep * d;
            d = p->nesterov ? d + mu * buf[i] : buf[i];
        }
        w[i] -= lr * d;
    }
}

/* torch.lerp's formula, which PyTorch's Adam uses for the first moment. */
static inline float lerp(float a, float b, float t) {
    return t < 0.5f ? a + t * (b - a) : b - (b - a) * (1.0f - t);
}

void adam_step(float *w, const float *g, float *m, float *v, float *vmax, int64_t n, const AdamParams *p,
               int64_t step) {
    const double bc1 = 1.0 - pow(p->beta1, (double)step);
    const double bc2 = 1.0 - pow(p->beta2, (double)step);
    const float wd = (float)p->weight_decay, b2 = (float)p->beta2;
    const float one_minus_b1 = (float)(1.0 - p->beta1), one_minus_b2 = (float)(1.0 - p->beta2);
    const float eps = (float)p->eps;
    if (p->eps_mode == ADAM_EPS_TORCH) {
        /* torch.optim.Adam, single-tensor path:
         * denom = (sqrt(v) / sqrt(bc2)) + eps;  w.addcdiv_(m, denom, value=-lr/bc1),
         * which ATen evaluates as w + (value * m) / denom */
        const float step_size = (float)(p->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
        for (int64_t i = 0; i < n; i++) {
            const float d = wd != 0.0f ? g[i] + wd * w[i] : g[i];
            m[i] = lerp(m[i], d, one_minus_b1);
            v[i] = v[i] * b2 + one_minus_b2 * d * d;
            float s = v[i];
            if (p->amsgrad) {
                if (v[i] > vmax[i]) vmax[i] = v[i];
                s = vmax[i];
            }
            const float denom = sqrtf(s) / bc2_sqrt + eps;
            w[i] += -step_size * m[i] / denom;
        }
    } else {
        /* TF's ApplyAdam kernel: alpha = lr*sqrt(bc2)/bc1;
         * m += (g-m)*(1-b1); v += (g^2-v)*(1-b2); w -= m*alpha / (sqrt(v)+eps) */
        const float alpha = (float)(p->lr * sqrt(bc2) / bc1);
        for (int64_t i = 0; i < n; i++) {
            const float d = wd != 0.0f ? g[i] + wd * w[i] : g[i];
            m[i] += (d - m[i]) * one_minus_b1;
            v[i] += (d * d - v[i]) * one_minus_b2;
            float s = v[i];
            if (p->amsgrad) {
                if (v[i] > vmax[i]) vmax[i] = v[i];
                s = vmax[i];
            }
            w[i] -= m[i] * alpha / (sqrtf(s) + eps);
        }
    }
}

void rmsprop_step(float *w, const float *g, float *sq, float *mg, float *mom, int64_t n, const RmspropParams *p) {
    const float lr = (float)p->lr, rho = (float)p->rho, one_minus_rho = (float)(1.0 - p->rho);
    const float eps = (float)p->eps, wd = (float)p->weight_decay, mu = (float)p->momentum;
    for (int64_t i = 0; i < n; i++) {
        const float d = wd != 0.0f ? g[i] + wd * w[i] : g[i];
        sq[i] = rho * sq[i] + one_minus_rho * d * d;
        float den = sq[i];
        if (p->centered) {
            mg[i] = rho * mg[i] + one_minus_rho * d;
            den -= mg[i] * mg[i];
            /* sq >= mg^2 holds exactly; rounding can break it by an ulp when
             * the gradient is constant, which would make sqrt NaN. */
            if (den < 0.0f) den = 0.0f;
        }
        if (mu > 0.0f) {
            mom[i] = mu * mom[i] + lr * d / sqrtf(den + eps);
            w[i] -= mom[i];
        } else {
            w[i] -= lr * d / (sqrtf(den) + eps);
        }
    }
}

double grad_sum_squares(const float *g, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    return s;
}

void grad_scale(float *g, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) g[i] *= scale;
}

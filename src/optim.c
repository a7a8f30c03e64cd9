/* optim.c: the update rules of optim.h, one loop each over flat buffers.
 * Scalars derived from the step count (bias corrections) are computed in
 * double and rounded once to float, as PyTorch does; per-element arithmetic is
 * float32. */
#include "optim.h"
#include "parallel.h"

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

/* Adam's per-element update on [lo, hi). The flags are literal constants at
 * every call of adam_range (adam_task below), so GCC compiles one loop per
 * combination with no branch inside, and vectorises it; the arithmetic is the
 * same, element by element, as a single loop with the branches inside. */
typedef struct AdamJob {
    float *w, *m, *v, *vmax;
    const float *g;
    float wd, b1c, b2, b2c, eps, step_size, bc2_sqrt, alpha; /* b1c = 1 - beta1, b2c = 1 - beta2 */
} AdamJob;

static inline __attribute__((always_inline)) void adam_range(const AdamJob *j, int64_t lo, int64_t hi, int torch,
                                                             int amsgrad, int decay, int lerp_low) {
    float *restrict w = j->w, *restrict m = j->m, *restrict v = j->v, *restrict vmax = j->vmax;
    const float *restrict g = j->g;
    for (int64_t i = lo; i < hi; i++) {
        const float d = decay ? g[i] + j->wd * w[i] : g[i];
        float s;
        if (torch) {
            /* torch.optim.Adam, single-tensor path: m = lerp(m, d, 1 - beta1) (torch.lerp's
             * formula, chosen by the weight), denom = sqrt(v) / sqrt(bc2) + eps,
             * w.addcdiv_(m, denom, value=-lr/bc1), evaluated as w + (value * m) / denom */
            m[i] = lerp_low ? m[i] + j->b1c * (d - m[i]) : d - (d - m[i]) * (1.0f - j->b1c);
            v[i] = v[i] * j->b2 + j->b2c * d * d;
            s = v[i];
            if (amsgrad) {
                vmax[i] = v[i] > vmax[i] ? v[i] : vmax[i];
                s = vmax[i];
            }
            w[i] += -j->step_size * m[i] / (sqrtf(s) / j->bc2_sqrt + j->eps);
        } else {
            /* TF's ApplyAdam kernel: alpha = lr*sqrt(bc2)/bc1;
             * m += (g-m)*(1-b1); v += (g^2-v)*(1-b2); w -= m*alpha / (sqrt(v)+eps) */
            m[i] += (d - m[i]) * j->b1c;
            v[i] += (d * d - v[i]) * j->b2c;
            s = v[i];
            if (amsgrad) {
                vmax[i] = v[i] > vmax[i] ? v[i] : vmax[i];
                s = vmax[i];
            }
            w[i] -= m[i] * j->alpha / (sqrtf(s) + j->eps);
        }
    }
}

typedef struct AdamTask {
    AdamJob job;
    int torch, amsgrad, decay, lerp_low;
} AdamTask;

static void adam_task(void *ctx, int64_t lo, int64_t hi) {
    const AdamTask *t = ctx;
    const AdamJob *j = &t->job;
#define ADAM_CASE(T, A, D, L) \
    if (t->torch == T && t->amsgrad == A && t->decay == D && t->lerp_low == L) { adam_range(j, lo, hi, T, A, D, L); return; }
    ADAM_CASE(0, 0, 0, 0) ADAM_CASE(0, 0, 1, 0) ADAM_CASE(0, 1, 0, 0) ADAM_CASE(0, 1, 1, 0)
    ADAM_CASE(1, 0, 0, 0) ADAM_CASE(1, 0, 1, 0) ADAM_CASE(1, 1, 0, 0) ADAM_CASE(1, 1, 1, 0)
    ADAM_CASE(1, 0, 0, 1) ADAM_CASE(1, 0, 1, 1) ADAM_CASE(1, 1, 0, 1) ADAM_CASE(1, 1, 1, 1)
#undef ADAM_CASE
}

/* The update is element-wise, so splitting it over the thread pool (blocks of
 * at least 64K elements) gives the same bits on any number of threads; it is
 * bound by memory traffic (four float arrays), which two cores share better
 * than one. */
void adam_step(float *w, const float *g, float *m, float *v, float *vmax, int64_t n, const AdamParams *p,
               int64_t step) {
    const double bc1 = 1.0 - pow(p->beta1, (double)step);
    const double bc2 = 1.0 - pow(p->beta2, (double)step);
    AdamTask t = {
        .job = {.w = w, .m = m, .v = v, .vmax = vmax, .g = g, .wd = (float)p->weight_decay,
                .b1c = (float)(1.0 - p->beta1), .b2 = (float)p->beta2, .b2c = (float)(1.0 - p->beta2),
                .eps = (float)p->eps, .step_size = (float)(p->lr / bc1), .bc2_sqrt = (float)sqrt(bc2),
                .alpha = (float)(p->lr * sqrt(bc2) / bc1)},
        .torch = p->eps_mode == ADAM_EPS_TORCH, .amsgrad = p->amsgrad != 0, .decay = (float)p->weight_decay != 0.0f,
    };
    /* torch.lerp(a, b, t): a + t (b - a) when |t| < 0.5, else b - (b - a)(1 - t) */
    t.lerp_low = t.torch && t.job.b1c < 0.5f;
    parallel_for(n, 1 << 16, adam_task, &t);
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

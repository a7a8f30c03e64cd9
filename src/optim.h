/* optim.h: optimizer update rules over flat float buffers, in plain C (no Lua).
 *
 * Every rule updates n weights w in place from their gradients g, keeping its
 * state (moments, momentum buffers) in flat arrays of n floats that start at
 * zero. `step` is the 1-based count of the step being taken. Hyper-parameters
 * are doubles; the arithmetic is float32 per element, in the order of the
 * framework each rule follows, so results can be compared with it closely.
 * Weight decay, when non-zero, is L2: g + weight_decay * w is used in place of
 * g (as torch.optim.SGD/Adam/RMSprop do), g itself is not modified. */
#ifndef DD_OPTIM_H
#define DD_OPTIM_H

#include <stdint.h>

/* PyTorch's torch.optim.SGD:
 *   g' = g + wd*w
 *   buf = g'                                 (first step)
 *   buf = momentum*buf + (1-dampening)*g'    (later steps)
 *   d = nesterov ? g' + momentum*buf : buf   (d = g' when momentum == 0)
 *   w -= lr * d
 * buf may be NULL when momentum == 0. */
typedef struct SgdParams {
    double lr, momentum, dampening, weight_decay;
    int nesterov;
} SgdParams;
void sgd_step(float *w, const float *g, float *buf, int64_t n, const SgdParams *p, int64_t step);

typedef enum AdamEpsMode {
    ADAM_EPS_KERAS, /* TF/Keras 2: w -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps) */
    ADAM_EPS_TORCH, /* PyTorch:    w -= lr/(1-b1^t) * m/(sqrt(v)/sqrt(1-b2^t)+eps) */
} AdamEpsMode;

/* Adam (Kingma & Ba) with either placement of eps:
 *   g' = g + wd*w
 *   m = b1*m + (1-b1)*g'        v = b2*v + (1-b2)*g'^2
 *   amsgrad: vmax = max(vmax, v), and vmax replaces v below
 *   keras: w -= [lr*sqrt(1-b2^t)/(1-b1^t)] * m / (sqrt(v) + eps)
 *   torch: w -= [lr/(1-b1^t)] * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 * The two differ only in how eps is scaled: eps_keras = eps_torch*sqrt(1-b2^t).
 * vmax may be NULL unless amsgrad. */
typedef struct AdamParams {
    double lr, beta1, beta2, eps, weight_decay;
    int amsgrad;
    AdamEpsMode eps_mode;
} AdamParams;
void adam_step(float *w, const float *g, float *m, float *v, float *vmax, int64_t n, const AdamParams *p,
               int64_t step);

/* RMSprop as in TF/Keras 2 (tf.keras.optimizers.RMSprop):
 *   g' = g + wd*w
 *   sq = rho*sq + (1-rho)*g'^2
 *   centered: mg = rho*mg + (1-rho)*g', and den = sq - mg^2, else den = sq
 *   momentum == 0: w -= lr * g' / (sqrt(den) + eps)
 *   momentum  > 0: mom = momentum*mom + lr * g' / sqrt(den + eps);  w -= mom
 * (Keras 2 puts eps inside the square root when momentum is used, outside
 * otherwise: both are kept so its numbers can be matched.)
 * mg may be NULL unless centered, mom NULL unless momentum > 0. */
typedef struct RmspropParams {
    double lr, rho, eps, momentum, weight_decay;
    int centered;
} RmspropParams;
void rmsprop_step(float *w, const float *g, float *sq, float *mg, float *mom, int64_t n, const RmspropParams *p);

/* For gradient clipping: the sum of g^2 over n floats (accumulated in
 * double), and g *= scale. */
double grad_sum_squares(const float *g, int64_t n);
void grad_scale(float *g, int64_t n, float scale);

#endif

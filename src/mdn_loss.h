/* mdn_loss.h: negative log-likelihood of a mixture-density output (Bishop
 * 1994; the MDN-RNN of Ha & Schmidhuber's "World Models"). Plain C.
 *
 * Layout of one sample's raw output vector, width K*(1 + 2D), component-major:
 *   [0, K)                  mixture logits          pi = softmax(logits)
 *   [K + j*D, K + j*D + D)  mean of component j     mu_j (D)
 *   [K + K*D + j*D, ... +D) log standard deviation  log sigma_j (D), diagonal
 * out is (n, K*(1+2D)) row-major, target is (n, D).
 *
 * Loss = mean over the n samples of  -log sum_j pi_j N(y; mu_j, diag(sigma_j^2)),
 * summed over the D dimensions (not divided by D), as in World Models. It is
 * computed in double with log-sum-exp, so a far-off target or a peaked
 * mixture does not underflow.
 *
 * log sigma is clamped to [MDN_LOG_SIGMA_MIN, MDN_LOG_SIGMA_MAX] before use
 * (here and in sampling): without it a component that shrinks onto a few
 * targets drives sigma to 0 and the loss to -inf. Backward differentiates the
 * clamped function: a log sigma outside the range gets gradient 0. */
#ifndef DD_MDN_LOSS_H
#define DD_MDN_LOSS_H

#include <stdint.h>

#define MDN_LOG_SIGMA_MIN (-7.0)
#define MDN_LOG_SIGMA_MAX 7.0

/* Width of one sample's raw output vector. */
static inline int64_t mdn_width(int k, int d) { return (int64_t)k * (1 + 2 * (int64_t)d); }

/* The loss (a mean over the n samples). Caller checks shapes; n >= 1. */
double mdn_loss_forward(const float *out, const float *target, int64_t n, int k, int d);

/* dout (n, K*(1+2D)) += scale * dLoss/dout, with Loss as returned by
 * mdn_loss_forward (so the 1/n of the mean is included); scale is the
 * upstream gradient of the loss, 1 for a plain loss. Accumulates: zero dout
 * first for a plain gradient. */
void mdn_loss_backward(float *dout, const float *out, const float *target, int64_t n, int k, int d, float scale);

#endif

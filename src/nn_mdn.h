/* nn_mdn.h: the mixture-density head (dd.nn.MDN): sizes, sampling and the
 * mixture mean, used by bind_mdn.c. The raw output layout and the loss are
 * in mdn_loss.h. */
#ifndef DD_NN_MDN_H
#define DD_NN_MDN_H

#include "layer.h"
#include "mdn_loss.h"
#include "rng.h"

/* K (mixtures) and D (out_features) of an MDN layer (m->kind == &mdn_kind). */
int mdn_mixtures(const Layer *m);
int mdn_out_features(const Layer *m);

/* The min_sigma floor of the head's log sigmas on raw rows (n, K*(1+2D)),
 * in place: log(min_sigma + exp(v)); and its backward from the floored
 * output (dz may be dy). */
void mdn_floor_forward(float *out, int64_t n, int k, int d, float min_sigma);
void mdn_floor_backward(float *dz, const float *dy, const float *out, int64_t n, int k, int d, float min_sigma);

/* y (n, D): one draw per row of out (n, K*(1+2D)). The component comes from
 * softmax(logits / temperature), then y = mu + sigma * sqrt(sigma_temperature)
 * * noise (World Models, where the two are one temperature). Draws per row:
 * one uniform, then D normals, all from rng. temperature 0 draws nothing:
 * the most probable component's mean (the first on ties), whatever
 * sigma_temperature. Both must be >= 0 (the caller checks). */
void mdn_sample(float *y, const float *out, int64_t n, int k, int d, double temperature, double sigma_temperature,
                Rng *rng);

/* y (n, D) = sum_j pi_j mu_j, with pi = softmax(logits): the mixture's mean. */
void mdn_mean(float *y, const float *out, int64_t n, int k, int d);

#endif

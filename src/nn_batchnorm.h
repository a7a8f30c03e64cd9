/* nn_batchnorm.h: the batch-normalisation kernels of dd.nn.BatchNorm1d and
 * BatchNorm2d (nn_batchnorm.c), plain C, for the layer and the C tests. */
#ifndef DD_NN_BATCHNORM_H
#define DD_NN_BATCHNORM_H

#include <stdint.h>

#include "activation.h"

/* x viewed as (n, c, s): c channels, each normalised over n*s values. */
typedef struct BatchNormShape {
    int64_t n, c, s;
} BatchNormShape;

/* y = act(gamma * (x - mean) * invstd + beta), all (n, c, s); gamma and beta
 * (c) may be NULL (1 and 0). training: mean and invstd = 1/sqrt(var + eps)
 * from the batch (biased variance), and running_mean/running_var (c), when
 * not NULL, move by momentum towards the batch's mean and unbiased
 * variance. Otherwise from running_mean/running_var. stats (3c) receives
 * what was used, for backward: the mean as a float pair hi + lo (c each),
 * then invstd (c). */
void batchnorm_forward(float *y, float *stats, float *running_mean, float *running_var, const float *x,
                       const float *gamma, const float *beta, int training, float eps, float momentum, Act act,
                       const BatchNormShape *s);

/* Adds dgamma, dbeta (c; may be NULL) and writes dx (may be NULL) from dy and
 * the forward's x, y and stats. dz (n, c, s) is scratch for the gradient
 * before the activation and may be dx. training says whether the forward
 * used the batch's statistics (then they are differentiated too). */
void batchnorm_backward(float *dx, float *dgamma, float *dbeta, float *dz, const float *dy, const float *y,
                        const float *x, const float *gamma, const float *stats, int training, Act act,
                        const BatchNormShape *s);

#endif

/* loss.h: loss kernels in plain C (no Lua). y (the prediction), t (the target)
 * and dy (the gradient of the loss w.r.t. y) are n contiguous floats of the
 * same shape. Forward sums in double and returns the loss; backward writes
 * (does not accumulate) dy. */
#ifndef DD_LOSS_H
#define DD_LOSS_H

#include <stdint.h>

typedef enum LossReduction {
    LOSS_MEAN, /* divided by the number of elements (n == 0 gives NaN, like PyTorch) */
    LOSS_SUM,
} LossReduction;

/* Mean squared error: sum (y - t)^2 [/ n];  dy = 2 (y - t) [/ n]. */
double mse_forward(const float *y, const float *t, int64_t n, LossReduction r);
void mse_backward(float *dy, const float *y, const float *t, int64_t n, LossReduction r);

/* Binary cross-entropy on probabilities, Keras-style: p = clip(y, eps, 1-eps),
 * loss = -[t log p + (1-t) log(1-p)] summed [/ n]. The gradient follows the
 * clip: dy = (p - t) / (p (1-p)) [/ n] where eps <= y <= 1-eps, and 0 where y
 * was clipped (y < eps or y > 1-eps). */
double bce_forward(const float *y, const float *t, int64_t n, float eps, LossReduction r);
void bce_backward(float *dy, const float *y, const float *t, int64_t n, float eps, LossReduction r);

/* Soft Dice loss over `samples` samples of `len` elements each (y and t are
 * samples * len floats). The foreground is p = y, g = t, or with invert
 * p = 1 - y, g = 1 - t (dark silhouettes on white). Per sample
 *   loss = 1 - (2 sum p g + smooth) / (sum p + sum g + smooth),
 * then the mean (or sum) over samples. It weighs a small foreground as much
 * as a large one, so a thin shape on a big background is not lost to the
 * background's pixel count as it is under MSE or BCE. Gradient per element:
 *   d loss / d p = (2 I + smooth - 2 g (S + smooth)) / (S + smooth)^2
 * with I = sum p g and S = sum p + sum g (negated for y when inverted). */
double dice_forward(const float *y, const float *t, int64_t samples, int64_t len, float smooth, int invert,
                    LossReduction r);
void dice_backward(float *dy, const float *y, const float *t, int64_t samples, int64_t len, float smooth, int invert,
                   LossReduction r);

#endif

/* metrics.h: evaluation metrics in plain C (no Lua). Inputs are contiguous
 * floats; counts are exact (int64), fractions returned as double. */
#ifndef DD_METRICS_H
#define DD_METRICS_H

#include <stdint.h>

/* Keras binary_accuracy: the number of i with t[i] == (y[i] > threshold ? 1 : 0).
 * Exact equality: a grey target (0 < t < 1) never counts as correct. */
int64_t binary_accuracy_count(const float *y, const float *t, int64_t n, float threshold);

/* Keras categorical_accuracy over rows of `cols` classes: the number of rows
 * where argmax(y) == argmax(t), the first maximum winning ties (and NaN never
 * being a maximum). */
int64_t categorical_accuracy_count(const float *y, const float *t, int64_t rows, int64_t cols);
/* argmax of one row as above; 0 when cols == 0 or every value is NaN. */
int64_t row_argmax(const float *x, int64_t cols);

typedef enum MaskForeground {
    MASK_DARK,  /* foreground where value < threshold: a black dancer on white */
    MASK_LIGHT, /* foreground where value > threshold */
} MaskForeground;

/* Intersection over union of the masks of a and b, per sample: a and b are
 * (samples, per_sample); iou[s] = |A and B| / |A or B|, 1 when both are empty. */
void iou_per_sample(double *iou, const float *a, const float *b, int64_t samples, int64_t per_sample,
                    float threshold, MaskForeground fg);

#endif

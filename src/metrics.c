/* metrics.c: the kernels of metrics.h. */
#include "metrics.h"

int64_t binary_accuracy_count(const float *y, const float *t, int64_t n, float threshold) {
    int64_t hits = 0;
    for (int64_t i = 0; i < n; i++) hits += t[i] == (y[i] > threshold ? 1.0f : 0.0f);
    return hits;
}

int64_t row_argmax(const float *x, int64_t cols) {
    int64_t best = -1;
    for (int64_t j = 0; j < cols; j++)
        if (x[j] == x[j] && (best < 0 || x[j] > x[best])) best = j;
    return best < 0 ? 0 : best;
}

int64_t categorical_accuracy_count(const float *y, const float *t, int64_t rows, int64_t cols) {
    int64_t hits = 0;
    for (int64_t r = 0; r < rows; r++) hits += row_argmax(y + r * cols, cols) == row_argmax(t + r * cols, cols);
    return hits;
}

static inline int in_mask(float v, float threshold, MaskForeground fg) {
    return fg == MASK_DARK ? v < threshold : v > threshold;
}

void iou_per_sample(double *iou, const float *a, const float *b, int64_t samples, int64_t per_sample,
                    float threshold, MaskForeground fg) {
    for (int64_t s = 0; s < samples; s++) {
        const float *pa = a + s * per_sample, *pb = b + s * per_sample;
        int64_t inter = 0, uni = 0;
        for (int64_t i = 0; i < per_sample; i++) {
            const int ma = in_mask(pa[i], threshold, fg), mb = in_mask(pb[i], threshold, fg);
            inter += ma & mb;
            uni += ma | mb;
        }
        iou[s] = uni == 0 ? 1.0 : (double)inter / (double)uni;
    }
}

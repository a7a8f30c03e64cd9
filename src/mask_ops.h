/* mask_ops.h: bit-packed binary masks in plain C (no Lua), for evaluating
 * generated silhouettes at scale: the best IoU of each of 1000 generated masks
 * against 1000 reference masks of 120x200 pixels is 10^6 IoUs of 24,000 pixels,
 * which as floats is 2.4e10 comparisons and as 64-bit words 3.75e8 popcounts.
 *
 * Layout: a set of n masks of `pixels` pixels each is n * words uint64 words,
 * words = mask_words(pixels); pixel p of mask i is bit (p % 64) of word
 * i * words + p / 64. Bits past `pixels` in the last word of a mask are 0, so
 * popcounts over whole words are exact. `counts[i]` is the number of
 * foreground pixels of mask i. Which pixels are foreground follows
 * dd.metrics.iou: value < threshold (MASK_DARK, a black dancer on white) or
 * value > threshold (MASK_LIGHT); NaN is never foreground. */
#ifndef DD_MASK_OPS_H
#define DD_MASK_OPS_H

#include <stdint.h>

#include "metrics.h" /* MaskForeground */

/* Words per mask: ceil(pixels / 64). */
int64_t mask_words(int64_t pixels);

/* x is (n, pixels) floats, contiguous; bits is (n, words), counts is (n). */
void mask_pack(uint64_t *bits, int64_t *counts, const float *x, int64_t n, int64_t pixels, float threshold,
               MaskForeground fg);

/* The foreground pixels two masks share: popcount(a AND b) over `words`. */
int64_t mask_and_count(const uint64_t *a, const uint64_t *b, int64_t words);

/* For every mask g of gen (n_gen masks), the best IoU against the n_ref >= 1
 * masks of ref, |G and R| / |G or R| with 1 when both are empty, and the
 * 0-based index of the first reference that reaches it. Exact: references
 * whose count alone bounds the IoU at or below the best so far
 * (IoU <= min(|G|, |R|) / max(|G|, |R|)) are skipped without changing the
 * result. best and index are (n_gen). */
void mask_best_iou(double *best, int64_t *index, const uint64_t *gen, const int64_t *gen_counts, int64_t n_gen,
                   const uint64_t *ref, const int64_t *ref_counts, int64_t n_ref, int64_t words);

/* Motion: out[i] = (pixels that differ between masks i and i + 1) / pixels,
 * for i = 0 .. n - 2; out is (n - 1). */
void mask_change_fraction(double *out, const uint64_t *bits, int64_t n, int64_t words, int64_t pixels);

#endif

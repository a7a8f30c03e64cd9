/* mask_ops.c: the kernels of mask_ops.h. The inner loop is a popcount of
 * AND-ed words. The build targets baseline x86-64 (no -mpopcnt), where
 * __builtin_popcountll is a library call, so on x86 a copy of the loop is
 * compiled for the POPCNT instruction and chosen once at run time. */
#include "mask_ops.h"

int64_t mask_words(int64_t pixels) { return (pixels + 63) / 64; }

void mask_pack(uint64_t *bits, int64_t *counts, const float *x, int64_t n, int64_t pixels, float threshold,
               MaskForeground fg) {
    const int64_t words = mask_words(pixels);
    for (int64_t i = 0; i < n; i++) {
        const float *v = x + i * pixels;
        uint64_t *w = bits + i * words;
        int64_t count = 0;
        for (int64_t k = 0; k < words; k++) {
            const int64_t first = k * 64, last = first + 64 < pixels ? first + 64 : pixels;
            uint64_t word = 0;
            /* comparisons are false for NaN in both polarities: NaN is never foreground */
            if (fg == MASK_DARK) {
                for (int64_t p = first; p < last; p++) word |= (uint64_t)(v[p] < threshold) << (p - first);
            } else {
                for (int64_t p = first; p < last; p++) word |= (uint64_t)(v[p] > threshold) << (p - first);
            }
            w[k] = word;
            count += __builtin_popcountll(word);
        }
        counts[i] = count;
    }
}

static int64_t and_count_generic(const uint64_t *a, const uint64_t *b, int64_t words) {
    int64_t c = 0;
    for (int64_t k = 0; k < words; k++) c += __builtin_popcountll(a[k] & b[k]);
    return c;
}

static int64_t xor_count_generic(const uint64_t *a, const uint64_t *b, int64_t words) {
    int64_t c = 0;
    for (int64_t k = 0; k < words; k++) c += __builtin_popcountll(a[k] ^ b[k]);
    return c;
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("popcnt"))) static int64_t and_count_popcnt(const uint64_t *a, const uint64_t *b, int64_t words) {
    int64_t c = 0;
    for (int64_t k = 0; k < words; k++) c += __builtin_popcountll(a[k] & b[k]);
    return c;
}

__attribute__((target("popcnt"))) static int64_t xor_count_popcnt(const uint64_t *a, const uint64_t *b, int64_t words) {
    int64_t c = 0;
    for (int64_t k = 0; k < words; k++) c += __builtin_popcountll(a[k] ^ b[k]);
    return c;
}

static int have_popcnt(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("popcnt");
}
#endif

typedef int64_t (*CountFn)(const uint64_t *a, const uint64_t *b, int64_t words);

static CountFn pick_and_count(void) {
#if defined(__x86_64__) || defined(__i386__)
    if (have_popcnt()) return and_count_popcnt;
#endif
    return and_count_generic;
}

static CountFn pick_xor_count(void) {
#if defined(__x86_64__) || defined(__i386__)
    if (have_popcnt()) return xor_count_popcnt;
#endif
    return xor_count_generic;
}

int64_t mask_and_count(const uint64_t *a, const uint64_t *b, int64_t words) { return pick_and_count()(a, b, words); }

void mask_best_iou(double *best, int64_t *index, const uint64_t *gen, const int64_t *gen_counts, int64_t n_gen,
                   const uint64_t *ref, const int64_t *ref_counts, int64_t n_ref, int64_t words) {
    const CountFn and_count = pick_and_count();
    for (int64_t g = 0; g < n_gen; g++) {
        const uint64_t *mg = gen + g * words;
        const int64_t cg = gen_counts[g];
        double top = -1.0;
        int64_t at = 0;
        for (int64_t r = 0; r < n_ref; r++) {
            const int64_t cr = ref_counts[r];
            double iou;
            if (cg == 0 && cr == 0) {
                iou = 1.0;
            } else {
                /* |G and R| <= min and |G or R| >= max: a bound that needs no popcount.
                 * When it is reached, inter = min and union = max, so the bound is the
                 * same double as the IoU itself: skipping at "bound <= top" is exact. */
                const int64_t lo = cg < cr ? cg : cr, hi = cg < cr ? cr : cg;
                if ((double)lo / (double)hi <= top) continue;
                const int64_t inter = and_count(mg, ref + r * words, words);
                iou = (double)inter / (double)(cg + cr - inter);
            }
            if (iou > top) {
                top = iou;
                at = r;
                if (top == 1.0) break; /* nothing beats a perfect match; the first one wins */
            }
        }
        best[g] = top;
        index[g] = at;
    }
}

void mask_change_fraction(double *out, const uint64_t *bits, int64_t n, int64_t words, int64_t pixels) {
    const CountFn xor_count = pick_xor_count();
    for (int64_t i = 0; i + 1 < n; i++)
        out[i] = (double)xor_count(bits + i * words, bits + (i + 1) * words, words) / (double)pixels;
}

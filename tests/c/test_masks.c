/* test_masks.c: the bit-packed mask kernels of mask_ops.c against plain float
 * loops: packing (both polarities, NaN, sizes around word boundaries, zero
 * padding bits), the best IoU over references (exact values and the first
 * index on ties, empty masks, the pruning bound on crafted counts),
 * change fractions, and the 1000 x 1000 masks of 120x200 the evaluation runs
 * (timed, printed as a TAP comment).
 * Seed: env DD_TEST_SEED (default 1234). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "mask_ops.h"

static uint64_t rng_state;

static uint64_t splitmix(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(void) { return (double)(splitmix() >> 11) * 0x1.0p-53; }
static int64_t randint(int64_t lo, int64_t hi) { return lo + (int64_t)(splitmix() % (uint64_t)(hi - lo + 1)); }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* ---- plain references on floats ---- */

static int ref_in_mask(float v, float threshold, MaskForeground fg) {
    return fg == MASK_DARK ? v < threshold : v > threshold;
}

static double ref_iou(const float *a, const float *b, int64_t pixels, float threshold, MaskForeground fg) {
    int64_t inter = 0, uni = 0;
    for (int64_t p = 0; p < pixels; p++) {
        int ma = ref_in_mask(a[p], threshold, fg), mb = ref_in_mask(b[p], threshold, fg);
        inter += ma && mb;
        uni += ma || mb;
    }
    return uni == 0 ? 1.0 : (double)inter / (double)uni;
}

/* Random frames: each mask has its own density of dark pixels (0 and 1
 * included, giving empty and full masks), grey values near the threshold,
 * and some NaN. */
static void fill_masks(float *x, int64_t n, int64_t pixels) {
    for (int64_t i = 0; i < n; i++) {
        double density = (double)randint(0, 8) / 8.0;
        for (int64_t p = 0; p < pixels; p++) {
            double u = uniform();
            float v = uniform() < density ? (float)(0.5 * u) : (float)(0.5 + 0.5 * u);
            if (splitmix() % 97 == 0) v = 0.5f; /* exactly the threshold: never foreground */
            if (splitmix() % 211 == 0) v = NAN;
            x[i * pixels + p] = v;
        }
    }
}

typedef struct Packed {
    uint64_t *bits;
    int64_t *counts;
    int64_t words;
} Packed;

static Packed pack(const float *x, int64_t n, int64_t pixels, MaskForeground fg) {
    Packed p = {NULL, NULL, mask_words(pixels)};
    p.bits = xmalloc(sizeof(uint64_t) * (size_t)(n * p.words));
    p.counts = xmalloc(sizeof(int64_t) * (size_t)n);
    mask_pack(p.bits, p.counts, x, n, pixels, 0.5f, fg);
    return p;
}

static void packed_free(Packed *p) {
    free(p->bits);
    free(p->counts);
}

/* ---- tests ---- */

static void test_words(void **state) {
    assert_int_equal(mask_words(1), 1);
    assert_int_equal(mask_words(63), 1);
    assert_int_equal(mask_words(64), 1);
    assert_int_equal(mask_words(65), 2);
    assert_int_equal(mask_words(24000), 375);
}

static void test_pack_vs_reference(void **state) {
    const int64_t sizes[] = {1, 7, 63, 64, 65, 127, 128, 129, 24 * 16, 1000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (int polarity = 0; polarity < 2; polarity++) {
            const MaskForeground fg = polarity ? MASK_LIGHT : MASK_DARK;
            const int64_t n = 9, pixels = sizes[s];
            float *x = xmalloc(sizeof(float) * (size_t)(n * pixels));
            fill_masks(x, n, pixels);
            Packed p = pack(x, n, pixels, fg);
            for (int64_t i = 0; i < n; i++) {
                int64_t count = 0;
                for (int64_t q = 0; q < p.words * 64; q++) {
                    int bit = (int)((p.bits[i * p.words + q / 64] >> (q % 64)) & 1u);
                    int want = q < pixels ? ref_in_mask(x[i * pixels + q], 0.5f, fg) : 0;
                    if (bit != want)
                        fail_msg("pack %s, %lld pixels: mask %lld bit %lld is %d, expected %d (value %g)",
                                 polarity ? "light" : "dark", (long long)pixels, (long long)i, (long long)q, bit, want,
                                 q < pixels ? (double)x[i * pixels + q] : -1.0);
                    count += want;
                }
                assert_int_equal(p.counts[i], count);
            }
            packed_free(&p);
            free(x);
        }
    }
}

static void check_best(const float *gen, int64_t n_gen, const float *ref, int64_t n_ref, int64_t pixels,
                       MaskForeground fg, const char *what) {
    Packed g = pack(gen, n_gen, pixels, fg), r = pack(ref, n_ref, pixels, fg);
    double *best = xmalloc(sizeof(double) * (size_t)n_gen);
    int64_t *index = xmalloc(sizeof(int64_t) * (size_t)n_gen);
    mask_best_iou(best, index, g.bits, g.counts, n_gen, r.bits, r.counts, n_ref, g.words);
    for (int64_t i = 0; i < n_gen; i++) {
        double want = -1;
        int64_t at = -1;
        for (int64_t j = 0; j < n_ref; j++) {
            double v = ref_iou(gen + i * pixels, ref + j * pixels, pixels, 0.5f, fg);
            if (v > want) want = v, at = j;
        }
        if (best[i] != want || index[i] != at)
            fail_msg("%s: mask %lld: best IoU %.17g at %lld, reference %.17g at %lld", what, (long long)i, best[i],
                     (long long)index[i], want, (long long)at);
    }
    free(best);
    free(index);
    packed_free(&g);
    packed_free(&r);
}

static void test_best_iou_vs_reference(void **state) {
    const int64_t sizes[] = {1, 5, 64, 65, 200, 16 * 24};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (int polarity = 0; polarity < 2; polarity++) {
            const int64_t pixels = sizes[s], n_gen = randint(1, 40), n_ref = randint(1, 60);
            float *gen = xmalloc(sizeof(float) * (size_t)(n_gen * pixels));
            float *ref = xmalloc(sizeof(float) * (size_t)(n_ref * pixels));
            fill_masks(gen, n_gen, pixels);
            fill_masks(ref, n_ref, pixels);
            /* copies of references among the generated masks: exact matches */
            for (int64_t i = 0; i < n_gen; i += 3)
                memcpy(gen + i * pixels, ref + randint(0, n_ref - 1) * pixels, sizeof(float) * (size_t)pixels);
            char what[64];
            snprintf(what, sizeof what, "%lld pixels, %s", (long long)pixels, polarity ? "light" : "dark");
            check_best(gen, n_gen, ref, n_ref, pixels, polarity ? MASK_LIGHT : MASK_DARK, what);
            free(gen);
            free(ref);
        }
    }
}

/* Ties go to the first reference; empty against empty is 1; empty against
 * anything else is 0. */
static void test_best_iou_by_hand(void **state) {
    enum { P = 70 };
    float ref[4][P], gen[3][P];
    for (int p = 0; p < P; p++) {
        ref[0][p] = 1;                  /* empty */
        ref[1][p] = p < 10 ? 0.f : 1.f; /* pixels 0..9 */
        ref[2][p] = p >= 60 ? 0.f : 1.f; /* pixels 60..69: the same count as ref 1 */
        ref[3][p] = p < 10 ? 0.f : 1.f; /* a copy of ref 1 */
        gen[0][p] = 1;                   /* empty */
        gen[1][p] = p < 5 || p >= 65 ? 0.f : 1.f; /* 5 of ref 1 and 5 of ref 2: 5 / 15 each */
        gen[2][p] = p < 10 ? 0.f : 1.f;
    }
    Packed g = pack(&gen[0][0], 3, P, MASK_DARK), r = pack(&ref[0][0], 4, P, MASK_DARK);
    double best[3];
    int64_t index[3];
    mask_best_iou(best, index, g.bits, g.counts, 3, r.bits, r.counts, 4, g.words);
    assert_true(best[0] == 1.0 && index[0] == 0);
    assert_true(best[1] == 5.0 / 15.0 && index[1] == 1);
    assert_true(best[2] == 1.0 && index[2] == 1);
    /* without the empty reference, an empty mask scores 0 against the first */
    mask_best_iou(best, index, g.bits, g.counts, 1, r.bits + r.words, r.counts + 1, 3, g.words);
    assert_true(best[0] == 0.0 && index[0] == 0);
    packed_free(&g);
    packed_free(&r);
}

static void test_change_fraction(void **state) {
    const int64_t sizes[] = {1, 64, 129, 16 * 24};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        const int64_t n = 12, pixels = sizes[s];
        float *x = xmalloc(sizeof(float) * (size_t)(n * pixels));
        fill_masks(x, n, pixels);
        Packed p = pack(x, n, pixels, MASK_DARK);
        double out[11];
        mask_change_fraction(out, p.bits, n, p.words, pixels);
        for (int64_t i = 0; i + 1 < n; i++) {
            int64_t diff = 0;
            for (int64_t q = 0; q < pixels; q++)
                diff += ref_in_mask(x[i * pixels + q], 0.5f, MASK_DARK) != ref_in_mask(x[(i + 1) * pixels + q], 0.5f, MASK_DARK);
            if (out[i] != (double)diff / (double)pixels)
                fail_msg("change %lld pixels, pair %lld: %.17g, reference %.17g", (long long)pixels, (long long)i,
                         out[i], (double)diff / (double)pixels);
        }
        packed_free(&p);
        free(x);
    }
}

/* The evaluation's size: 1000 generated against 1000 references of 120x200.
 * Smooth blobs that move a little between masks, as silhouettes do; a sample
 * of the results is checked against the float reference. */
static void test_evaluation_size(void **state) {
    enum { N = 1000, H = 120, W = 200, P = H * W };
    float *gen = xmalloc(sizeof(float) * (size_t)N * P), *ref = xmalloc(sizeof(float) * (size_t)N * P);
    for (int set = 0; set < 2; set++) {
        float *x = set ? ref : gen;
        for (int i = 0; i < N; i++) {
            double cy = 30 + 60 * uniform(), cx = 40 + 120 * uniform(), ry = 10 + 30 * uniform(), rx = 8 + 25 * uniform();
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++) {
                    double d = (y - cy) * (y - cy) / (ry * ry) + (xx - cx) * (xx - cx) / (rx * rx);
                    x[(size_t)i * P + y * W + xx] = d < 1 ? 0.f : 1.f;
                }
        }
    }
    Packed g = pack(gen, N, P, MASK_DARK), r = pack(ref, N, P, MASK_DARK);
    double *best = xmalloc(sizeof(double) * N);
    int64_t *index = xmalloc(sizeof(int64_t) * N);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mask_best_iou(best, index, g.bits, g.counts, N, r.bits, r.counts, N, g.words);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("# best IoU of 1000 x 1000 masks of 120x200: %.3f s\n",
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    for (int i = 0; i < N; i += 97) {
        double want = -1;
        int64_t at = -1;
        for (int j = 0; j < N; j++) {
            double v = ref_iou(gen + (size_t)i * P, ref + (size_t)j * P, P, 0.5f, MASK_DARK);
            if (v > want) want = v, at = j;
        }
        if (best[i] != want || index[i] != at)
            fail_msg("mask %d: best IoU %.17g at %lld, reference %.17g at %lld", i, best[i], (long long)index[i], want,
                     (long long)at);
    }
    free(best);
    free(index);
    packed_free(&g);
    packed_free(&r);
    free(gen);
    free(ref);
}

int main(void) {
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const char *env = getenv("DD_TEST_SEED");
    uint64_t seed = env && *env ? strtoull(env, NULL, 10) : 1234;
    printf("# test_masks seed: %llu (env DD_TEST_SEED)\n", (unsigned long long)seed);
    rng_state = seed;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words),
        cmocka_unit_test(test_pack_vs_reference),
        cmocka_unit_test(test_best_iou_vs_reference),
        cmocka_unit_test(test_best_iou_by_hand),
        cmocka_unit_test(test_change_fraction),
        cmocka_unit_test(test_evaluation_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

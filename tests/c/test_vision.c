/* test_vision.c: the kernels of vision.c against plain reference loops:
 * area resampling vs a direct 2-D double-precision integration (random sizes,
 * non-integer ratios, fractional crop windows), bilinear vs the PyTorch
 * (align_corners=false) formula when enlarging and the PIL formula when
 * shrinking, morphology vs a brute-force structuring-element loop,
 * connected components vs a union-find, the median vs sorting, and the
 * threshold silhouette on hand-made pixels.
 * Seed: env DD_TEST_SEED (default 1234). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vision.h"

static uint64_t rng_state;

static uint64_t splitmix(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(void) { return (double)(splitmix() >> 11) * 0x1.0p-53; }
static int randint(int lo, int hi) { return lo + (int)(splitmix() % (uint64_t)(hi - lo + 1)); }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* ---- resampling ---- */

/* Runs the kernel on one plane; out is (out_h, out_w). */
static void resize_run(float *out, const float *in, const ResizeSpec *spec) {
    void *mem = xmalloc(resize_plan_bytes(spec));
    ResizePlan plan;
    resize_plan_init(&plan, mem, spec);
    resize_plan_run(&plan, out, spec->out_w, in);
    free(mem);
}

/* The mean of the input over the output pixel's rectangle, by direct 2-D integration. */
static double area_ref(const float *in, const ResizeSpec *s, int64_t oy, int64_t ox) {
    double sy = s->src_h / s->out_h, sx = s->src_w / s->out_w;
    double y0 = s->src_y + oy * sy, y1 = s->src_y + (oy + 1) * sy;
    double x0 = s->src_x + ox * sx, x1 = s->src_x + (ox + 1) * sx;
    double acc = 0, area = 0;
    for (int64_t iy = (int64_t)floor(y0); iy < (int64_t)ceil(y1) && iy < s->in_h; iy++) {
        double cy = fmin(y1, iy + 1.0) - fmax(y0, (double)iy);
        if (cy <= 0) continue;
        for (int64_t ix = (int64_t)floor(x0); ix < (int64_t)ceil(x1) && ix < s->in_w; ix++) {
            double cx = fmin(x1, ix + 1.0) - fmax(x0, (double)ix);
            if (cx <= 0) continue;
            acc += cy * cx * in[iy * s->in_w + ix];
            area += cy * cx;
        }
    }
    return acc / area;
}

static void check_area(int64_t ih, int64_t iw, int64_t oh, int64_t ow, double y, double x, double h, double w) {
    ResizeSpec s = {ih, iw, oh, ow, y, x, h, w, RESIZE_AREA};
    float *in = xmalloc(sizeof(float) * ih * iw), *out = xmalloc(sizeof(float) * oh * ow);
    for (int64_t i = 0; i < ih * iw; i++) in[i] = (float)uniform();
    resize_run(out, in, &s);
    for (int64_t oy = 0; oy < oh; oy++)
        for (int64_t ox = 0; ox < ow; ox++) {
            double want = area_ref(in, &s, oy, ox), got = out[oy * ow + ox];
            if (fabs(got - want) > 2e-6)
                fail_msg("area %lldx%lld -> %lldx%lld window (%g,%g,%g,%g): out(%lld,%lld) = %.9g, reference %.9g",
                         (long long)ih, (long long)iw, (long long)oh, (long long)ow, y, x, h, w, (long long)oy,
                         (long long)ox, got, want);
        }
    free(in);
    free(out);
}

static void test_resize_area(void **state) {
    (void)state;
    check_area(480, 800, 120, 200, 0, 0, 480, 800);   /* the paper's 4x reduction */
    check_area(360, 640, 120, 200, 0, 20, 360, 600);  /* 360x640 cropped to 5:3: 3x */
    check_area(7, 5, 3, 2, 0, 0, 7, 5);               /* non-integer ratios */
    check_area(5, 7, 5, 7, 0, 0, 5, 7);               /* identity */
    check_area(4, 6, 9, 13, 0, 0, 4, 6);              /* enlarging */
    check_area(1, 9, 1, 4, 0, 0, 1, 9);
    for (int trial = 0; trial < 200; trial++) {
        int ih = randint(1, 40), iw = randint(1, 40), oh = randint(1, 40), ow = randint(1, 40);
        double h = ih, w = iw, y = 0, x = 0;
        if (trial % 2) { /* a fractional window inside the input */
            h = ih * (0.3 + 0.7 * uniform());
            w = iw * (0.3 + 0.7 * uniform());
            y = (ih - h) * uniform();
            x = (iw - w) * uniform();
        }
        check_area(ih, iw, oh, ow, y, x, h, w);
    }
}

/* PyTorch's bilinear, align_corners=false: half-pixel centres, clamped at the borders. */
static void bilinear_coord(int64_t o, int64_t in, int64_t out, int64_t *i0, int64_t *i1, double *frac) {
    double src = (o + 0.5) * (double)in / (double)out - 0.5;
    if (src < 0) src = 0;
    *i0 = (int64_t)floor(src);
    if (*i0 > in - 1) *i0 = in - 1;
    *i1 = *i0 + 1 < in ? *i0 + 1 : in - 1;
    *frac = src - *i0;
}

/* PIL's antialiased bilinear along one axis: triangle of radius max(scale, 1). */
static double pil_weight(int64_t i, int64_t o, int64_t in, int64_t out, double *norm) {
    double scale = (double)in / out, support = scale > 1 ? scale : 1, center = (o + 0.5) * scale;
    *norm = 0;
    for (int64_t k = 0; k < in; k++) *norm += fmax(0.0, 1.0 - fabs(k + 0.5 - center) / support);
    return fmax(0.0, 1.0 - fabs(i + 0.5 - center) / support);
}

static void test_resize_bilinear(void **state) {
    (void)state;
    for (int trial = 0; trial < 100; trial++) {
        int enlarge = trial % 2 == 0;
        int64_t ih = randint(1, 20), iw = randint(1, 20);
        int64_t oh = enlarge ? ih + randint(0, 25) : randint(1, (int)ih);
        int64_t ow = enlarge ? iw + randint(0, 25) : randint(1, (int)iw);
        ResizeSpec s = resize_spec_stretch(ih, iw, oh, ow, RESIZE_BILINEAR);
        float *in = xmalloc(sizeof(float) * ih * iw), *out = xmalloc(sizeof(float) * oh * ow);
        for (int64_t i = 0; i < ih * iw; i++) in[i] = (float)uniform();
        resize_run(out, in, &s);
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                double want = 0;
                if (enlarge) {
                    int64_t y0, y1, x0, x1;
                    double fy, fx;
                    bilinear_coord(oy, ih, oh, &y0, &y1, &fy);
                    bilinear_coord(ox, iw, ow, &x0, &x1, &fx);
                    want = (1 - fy) * ((1 - fx) * in[y0 * iw + x0] + fx * in[y0 * iw + x1]) +
                           fy * ((1 - fx) * in[y1 * iw + x0] + fx * in[y1 * iw + x1]);
                } else {
                    for (int64_t iy = 0; iy < ih; iy++)
                        for (int64_t ix = 0; ix < iw; ix++) {
                            double ny, nx, wy = pil_weight(iy, oy, ih, oh, &ny), wx = pil_weight(ix, ox, iw, ow, &nx);
                            want += wy / ny * wx / nx * in[iy * iw + ix];
                        }
                }
                double got = out[oy * ow + ox];
                if (fabs(got - want) > 2e-6)
                    fail_msg("bilinear %lldx%lld -> %lldx%lld: out(%lld,%lld) = %.9g, reference %.9g", (long long)ih,
                             (long long)iw, (long long)oh, (long long)ow, (long long)oy, (long long)ox, got, want);
            }
        free(in);
        free(out);
    }
}

/* A constant plane stays constant whatever the sizes and filter (weights sum to 1). */
static void test_resize_constant(void **state) {
    (void)state;
    for (int trial = 0; trial < 50; trial++) {
        int64_t ih = randint(1, 50), iw = randint(1, 50), oh = randint(1, 50), ow = randint(1, 50);
        ResizeSpec s = resize_spec_stretch(ih, iw, oh, ow, trial % 2 ? RESIZE_AREA : RESIZE_BILINEAR);
        float *in = xmalloc(sizeof(float) * ih * iw), *out = xmalloc(sizeof(float) * oh * ow);
        for (int64_t i = 0; i < ih * iw; i++) in[i] = 0.375f;
        resize_run(out, in, &s);
        for (int64_t i = 0; i < oh * ow; i++) assert_float_equal(out[i], 0.375f, 1e-6);
        free(in);
        free(out);
    }
}

/* ---- morphology ---- */

/* Brute force over the structuring element; pixels outside are background. */
static void morph_ref_pass(uint8_t *out, const uint8_t *in, int h, int w, int dilate, int r, MorphShape shape) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int v = !dilate;
            for (int dy = -r; dy <= r; dy++)
                for (int dx = -r; dx <= r; dx++) {
                    if (shape == MORPH_DISC && dy * dy + dx * dx > r * r) continue;
                    int yy = y + dy, xx = x + dx;
                    int s = yy >= 0 && yy < h && xx >= 0 && xx < w && in[yy * w + xx];
                    if (dilate && s) v = 1;
                    if (!dilate && !s) v = 0;
                }
            out[y * w + x] = (uint8_t)v;
        }
}

/* The mask on a background margin wide enough (3 r) that nothing the first
 * pass grows can reach its edge: the infinite-background semantics. */
static void morph_ref(uint8_t *m, int h, int w, MorphOp op, int r, MorphShape shape) {
    int pad = 3 * r, ph = h + 2 * pad, pw = w + 2 * pad;
    uint8_t *a = calloc((size_t)ph * pw, 1), *b = calloc((size_t)ph * pw, 1);
    for (int y = 0; y < h; y++) memcpy(a + (y + pad) * pw + pad, m + y * w, (size_t)w);
    int first = op == MORPH_DILATE || op == MORPH_CLOSE;
    morph_ref_pass(b, a, ph, pw, first, r, shape);
    if (op == MORPH_OPEN || op == MORPH_CLOSE) {
        morph_ref_pass(a, b, ph, pw, !first, r, shape);
        memcpy(b, a, (size_t)ph * pw);
    }
    for (int y = 0; y < h; y++) memcpy(m + y * w, b + (y + pad) * pw + pad, (size_t)w);
    free(a);
    free(b);
}

static void morph_run(uint8_t *m, int h, int w, MorphOp op, int r, MorphShape shape) {
    void *scratch = xmalloc(morph_scratch_bytes(h, w, r));
    morph_apply(m, h, w, op, r, shape, scratch);
    free(scratch);
}

static void test_morph_by_hand(void **state) {
    (void)state;
    /* a lone pixel dilated by a radius-1 square is a 3x3 block, by a disc a plus */
    uint8_t m[25] = {0};
    m[12] = 1;
    morph_run(m, 5, 5, MORPH_DILATE, 1, MORPH_SQUARE);
    static const uint8_t block[25] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(m, block, 25);
    memset(m, 0, 25);
    m[12] = 1;
    morph_run(m, 5, 5, MORPH_DILATE, 1, MORPH_DISC);
    static const uint8_t plus[25] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(m, plus, 25);
    /* eroding the block gives the pixel back; opening a lone pixel removes it */
    memcpy(m, block, 25);
    morph_run(m, 5, 5, MORPH_ERODE, 1, MORPH_SQUARE);
    for (int i = 0; i < 25; i++) assert_int_equal(m[i], i == 12);
    morph_run(m, 5, 5, MORPH_OPEN, 1, MORPH_SQUARE);
    for (int i = 0; i < 25; i++) assert_int_equal(m[i], 0);
    /* closing fills a one-pixel hole in the block, and not the gap to the border */
    memcpy(m, block, 25);
    m[12] = 0;
    morph_run(m, 5, 5, MORPH_CLOSE, 1, MORPH_SQUARE);
    assert_memory_equal(m, block, 25);
    /* outside is background: a full mask erodes from the border (the disc of
     * radius 2 fits only at the centre), but a square opening gives it back whole */
    memset(m, 1, 25);
    morph_run(m, 5, 5, MORPH_ERODE, 2, MORPH_DISC);
    for (int i = 0; i < 25; i++) assert_int_equal(m[i], i == 12);
    memset(m, 1, 25);
    morph_run(m, 5, 5, MORPH_OPEN, 1, MORPH_SQUARE);
    for (int i = 0; i < 25; i++) assert_int_equal(m[i], 1);
}

static void test_morph_vs_reference(void **state) {
    (void)state;
    for (int trial = 0; trial < 300; trial++) {
        int h = randint(1, 24), w = randint(1, 24), r = randint(0, 4);
        MorphOp op = (MorphOp)randint(0, 3);
        MorphShape shape = trial % 2 ? MORPH_DISC : MORPH_SQUARE;
        double p = uniform();
        uint8_t *a = xmalloc((size_t)h * w), *b = xmalloc((size_t)h * w);
        for (int i = 0; i < h * w; i++) a[i] = b[i] = uniform() < p;
        morph_run(a, h, w, op, r, shape);
        morph_ref(b, h, w, op, r, shape);
        if (memcmp(a, b, (size_t)h * w) != 0)
            fail_msg("morph op %d radius %d shape %d on %dx%d differs from the reference", op, r, shape, h, w);
        free(a);
        free(b);
    }
}

/* ---- components ---- */

static int uf_find(int *parent, int i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
}

static void test_components_by_hand(void **state) {
    (void)state;
    /* two diagonal pixels are one component (8-connectivity); labels in raster order */
    static const uint8_t m[20] = {1, 0, 0, 1, 1,
                                  0, 1, 0, 0, 0,
                                  0, 0, 0, 1, 0,
                                  1, 1, 0, 0, 1};
    int32_t labels[20], stack[20];
    int32_t count = components_label(labels, m, 4, 5, stack);
    assert_int_equal(count, 4);
    static const int32_t want[20] = {1, 0, 0, 2, 2,
                                     0, 1, 0, 0, 0,
                                     0, 0, 0, 3, 0,
                                     4, 4, 0, 0, 3};
    assert_memory_equal(labels, want, sizeof want);
    int64_t areas[5];
    components_areas(areas, labels, 20, count);
    assert_int_equal(areas[1], 2);
    assert_int_equal(areas[2], 2);
    assert_int_equal(areas[3], 2);
    assert_int_equal(areas[4], 2);
    /* the worst case count: isolated pixels on every other row and column */
    uint8_t grid[35] = {0};
    for (int y = 0; y < 5; y += 2)
        for (int x = 0; x < 7; x += 2) grid[y * 7 + x] = 1;
    int32_t l2[35], s2[35];
    assert_int_equal(components_label(l2, grid, 5, 7, s2), components_max_count(5, 7));
}

static void test_components_vs_reference(void **state) {
    (void)state;
    for (int trial = 0; trial < 200; trial++) {
        int h = randint(1, 30), w = randint(1, 30), n = h * w;
        double p = uniform();
        uint8_t *m = xmalloc(n);
        int32_t *labels = xmalloc(sizeof(int32_t) * n), *stack = xmalloc(sizeof(int32_t) * n);
        int *parent = xmalloc(sizeof(int) * n), *map = xmalloc(sizeof(int) * (n + 1));
        for (int i = 0; i < n; i++) {
            m[i] = uniform() < p;
            parent[i] = i;
        }
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                if (!m[y * w + x]) continue;
                static const int dys[4] = {0, 1, 1, 1}, dxs[4] = {1, -1, 0, 1};
                for (int k = 0; k < 4; k++) {
                    int yy = y + dys[k], xx = x + dxs[k];
                    if (yy < h && xx >= 0 && xx < w && m[yy * w + xx])
                        parent[uf_find(parent, y * w + x)] = uf_find(parent, yy * w + xx);
                }
            }
        int roots = 0;
        for (int i = 0; i < n; i++) roots += m[i] && uf_find(parent, i) == i;
        int32_t count = components_label(labels, m, h, w, stack);
        assert_int_equal(count, roots);
        /* same partition: each label maps to one root and new labels appear in raster order */
        for (int i = 0; i <= n; i++) map[i] = -1;
        int32_t next = 1;
        for (int i = 0; i < n; i++) {
            if (!m[i]) {
                assert_int_equal(labels[i], 0);
                continue;
            }
            if (map[labels[i]] < 0) {
                assert_int_equal(labels[i], next);
                next++;
                map[labels[i]] = uf_find(parent, i);
            }
            assert_int_equal(map[labels[i]], uf_find(parent, i));
        }
        /* removal of the small ones keeps exactly the components of >= min pixels */
        int64_t *areas = xmalloc(sizeof(int64_t) * (components_max_count(h, w) + 1));
        int64_t *ref_area = calloc((size_t)n, sizeof(int64_t));
        for (int i = 0; i < n; i++)
            if (m[i]) ref_area[uf_find(parent, i)]++;
        int64_t min_pixels = randint(0, 6);
        uint8_t *kept = xmalloc(n);
        memcpy(kept, m, n);
        components_remove_small(kept, h, w, min_pixels, labels, stack, areas);
        for (int i = 0; i < n; i++)
            assert_int_equal(kept[i], m[i] && ref_area[uf_find(parent, i)] >= min_pixels);
        free(kept);
        free(ref_area);
        free(areas);
        free(m);
        free(labels);
        free(stack);
        free(parent);
        free(map);
    }
}

/* ---- background model ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_background_median(void **state) {
    (void)state;
    for (int trial = 0; trial < 100; trial++) {
        int n = randint(1, 12), values = randint(1, 50);
        int levels = trial % 2 ? 255 : 65535;
        float *frames = xmalloc(sizeof(float) * n * values), *out = xmalloc(sizeof(float) * values);
        uint16_t *samples = xmalloc(background_model_bytes(values, n)), *scratch = xmalloc(sizeof(uint16_t) * n);
        for (int i = 0; i < n * values; i++) frames[i] = (float)randint(0, levels) / (float)levels;
        BackgroundModel m;
        background_model_init(&m, samples, values, n);
        for (int f = 0; f < n; f++) background_model_add(&m, frames + f * values);
        background_model_median(&m, out, scratch);
        double sorted[12];
        for (int v = 0; v < values; v++) {
            for (int f = 0; f < n; f++) sorted[f] = round((double)frames[f * values + v] * levels);
            qsort(sorted, n, sizeof *sorted, cmp_double);
            double med = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
            double want = med / levels;
            if (n % 2 == 1) assert_true(out[v] == (float)want); /* exact for odd n */
            else assert_float_equal(out[v], want, 1e-7);
        }
        free(frames);
        free(out);
        free(samples);
        free(scratch);
    }
}

/* ---- silhouettes ---- */

static void test_silhouette_threshold(void **state) {
    (void)state;
    /* four pixels, 8-bit sums 230 (dancer: the rule is >), 231, 0, 765 */
    float rgb[12] = {100 / 255.0f, 100 / 255.0f, 0, 1,
                     100 / 255.0f, 100 / 255.0f, 0, 1,
                     30 / 255.0f, 31 / 255.0f, 0, 1};
    float out[4];
    silhouette_threshold(out, rgb, 3, 4, 4, 230);
    assert_float_equal(out[0], 0.0f, 0);
    assert_float_equal(out[1], 1.0f, 0);
    assert_float_equal(out[2], 0.0f, 0);
    assert_float_equal(out[3], 1.0f, 0);
    /* grey: 3 * 76 = 228 dancer, 3 * 77 = 231 background */
    float grey[2] = {76 / 255.0f, 77 / 255.0f};
    silhouette_threshold(out, grey, 1, 2, 2, 230);
    assert_float_equal(out[0], 0.0f, 0);
    assert_float_equal(out[1], 1.0f, 0);
}

int main(void) {
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const char *env = getenv("DD_TEST_SEED");
    uint64_t seed = env && *env ? strtoull(env, NULL, 10) : 1234;
    printf("# test_vision seed: %llu (env DD_TEST_SEED)\n", (unsigned long long)seed);
    rng_state = seed;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_area),
        cmocka_unit_test(test_resize_bilinear),
        cmocka_unit_test(test_resize_constant),
        cmocka_unit_test(test_morph_by_hand),
        cmocka_unit_test(test_morph_vs_reference),
        cmocka_unit_test(test_components_by_hand),
        cmocka_unit_test(test_components_vs_reference),
        cmocka_unit_test(test_background_median),
        cmocka_unit_test(test_silhouette_threshold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

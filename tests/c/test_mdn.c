/* test_mdn.c: the mixture-density head without Lua: the MDN layer kind
 * (nn_mdn.c), its NLL (mdn_loss.c), sampling and the mixture mean.
 *   - loss against a double-precision reference written from the density,
 *     including clamped log sigmas and a target far from every component;
 *   - the loss gradient w.r.t. the raw outputs against central differences;
 *   - the layer (a Linear map) against a plain loop and finite differences;
 *   - sample statistics over 1e5 draws: K=1 mean and std match mu and
 *     sigma*sqrt(sigma temperature) within 1%; component frequencies match softmax(logits/T)
 *     within 0.01; T=0 is the top component's mean and draws nothing.
 * The seed comes from DD_TEST_SEED (default 1234) and is printed. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layer.h"
#include "mdn_loss.h"
#include "nn_mdn.h"
#include "rng.h"

static uint64_t seed = 1234;

/* cmocka's assert_float_equal rounds to float; these checks need double. */
#define assert_close(a, b, tol) assert_close_at((double)(a), (double)(b), (double)(tol), #a, __FILE__, __LINE__)
static void assert_close_at(double a, double b, double tol, const char *what, const char *file, int line) {
    if (!(fabs(a - b) <= tol)) fail_msg("%s:%d: %s = %.10g, expected %.10g within %.3g", file, line, what, a, b, tol);
}

static void fill_normal(float *p, int64_t n, double mean, double sd) {
    for (int64_t i = 0; i < n; i++) p[i] = (float)(mean + sd * rng_normal(&rng_global));
}

/* A random raw output (n, K*(1+2D)) with log sigmas in [-1.5, 1.5]. */
static float *random_out(int64_t n, int k, int d) {
    int64_t w = mdn_width(k, d);
    float *o = malloc((size_t)(n * w) * sizeof *o);
    assert_non_null(o);
    for (int64_t r = 0; r < n; r++) {
        float *row = o + r * w;
        fill_normal(row, k, 0, 1.5);
        fill_normal(row + k, (int64_t)k * d, 0, 1);
        for (int64_t i = 0; i < (int64_t)k * d; i++) row[k + k * d + i] = (float)(3 * rng_uniform(&rng_global) - 1.5);
    }
    return o;
}

/* ---- the reference NLL, from the density ---- */

static double ref_nll(const float *out, const float *y, int64_t n, int k, int d) {
    int64_t w = mdn_width(k, d);
    double total = 0;
    for (int64_t r = 0; r < n; r++) {
        const float *row = out + r * w;
        double mx = -INFINITY, z = 0;
        for (int j = 0; j < k; j++) mx = fmax(mx, row[j]);
        for (int j = 0; j < k; j++) z += exp(row[j] - mx);
        /* log(pi_j N_j) per component, then a max-shifted log of the sum */
        double terms[64], tmax = -INFINITY;
        assert_true(k <= 64);
        for (int j = 0; j < k; j++) {
            double logp = row[j] - mx - log(z);
            for (int e = 0; e < d; e++) {
                double ls = fmin(fmax(row[k + j * d + e + k * d], -7.0), 7.0), sigma = exp(ls);
                double u = ((double)y[r * d + e] - row[k + j * d + e]) / sigma;
                logp += -0.5 * u * u - log(sigma) - 0.5 * log(2 * M_PI);
            }
            terms[j] = logp;
            tmax = fmax(tmax, logp);
        }
        double s = 0;
        for (int j = 0; j < k; j++) s += exp(terms[j] - tmax);
        total += -(tmax + log(s));
    }
    return total / (double)n;
}

static void test_loss_forward(void **state) {
    rng_seed(&rng_global, seed);
    const int64_t n = 6;
    const int k = 3, d = 4;
    float *out = random_out(n, k, d), y[6 * 4];
    fill_normal(y, n * d, 0, 1.5);
    double got = mdn_loss_forward(out, y, n, k, d), want = ref_nll(out, y, n, k, d);
    printf("# loss %.12g, reference %.12g\n", got, want);
    assert_close(got, want, 1e-9 * fabs(want));
    /* log sigma outside [-7, 7] is clamped; a very far target stays finite */
    out[k + k * d] = 9;
    out[k + k * d + 1] = -9;
    out[mdn_width(k, d) + k + k * d + 2] = -30;
    y[0] = 1e4f;
    got = mdn_loss_forward(out, y, n, k, d);
    want = ref_nll(out, y, n, k, d);
    assert_true(isfinite(got));
    assert_close(got, want, 1e-9 * fabs(want));
    /* K = 1, D = 1: the Gaussian NLL by hand */
    float o1[3] = {0.3f, 1.0f, (float)log(2.0)}, y1 = 2.0f;
    double by_hand = 0.5 * (0.5 * 0.5) + log(2.0) + 0.5 * log(2 * M_PI);
    assert_close(mdn_loss_forward(o1, &y1, 1, 1, 1), by_hand, 1e-7);
    free(out);
}

/* The loss is double from float inputs, so a central difference with eps =
 * 1e-3 is limited by truncation, eps^2 f''' / 6 ~ 1e-5 for the log-sigma
 * terms (f''' grows like z^2); gradients are stored as float (~1e-7). */
static void test_loss_gradient(void **state) {
    rng_seed(&rng_global, seed + 1);
    const int64_t n = 5;
    const int k = 4, d = 3;
    const int64_t w = mdn_width(k, d);
    float *out = random_out(n, k, d), y[5 * 3];
    fill_normal(y, n * d, 0, 1.2);
    out[k + k * d + 1] = 8.5f;        /* clamped high: no gradient */
    out[w + k + k * d + 4] = -8.5f;   /* clamped low */
    float *g = calloc((size_t)(n * w), sizeof *g);
    assert_non_null(g);
    const float scale = 2.5f;
    mdn_loss_backward(g, out, y, n, k, d, scale);
    double worst = 0;
    for (int64_t i = 0; i < n * w; i++) {
        float orig = out[i], vp = orig + 1e-3f, vm = orig - 1e-3f;
        out[i] = vp;
        double lp = mdn_loss_forward(out, y, n, k, d);
        out[i] = vm;
        double lm = mdn_loss_forward(out, y, n, k, d);
        out[i] = orig;
        double fd = scale * (lp - lm) / ((double)vp - (double)vm);
        double err = fabs(fd - g[i]);
        worst = fmax(worst, err);
        if (err > 1e-4 + 1e-3 * fabs(fd)) fail_msg("dout[%lld]: analytic %.8g, finite difference %.8g", (long long)i, g[i], fd);
    }
    assert_close(g[k + k * d + 1], 0, 0);
    assert_close(g[w + k + k * d + 4], 0, 0);
    printf("# max |analytic - finite difference| = %.3g\n", worst);
    /* backward accumulates */
    float *g2 = malloc((size_t)(n * w) * sizeof *g2);
    memcpy(g2, g, (size_t)(n * w) * sizeof *g2);
    mdn_loss_backward(g2, out, y, n, k, d, scale);
    for (int64_t i = 0; i < n * w; i++) assert_close(g2[i], 2 * g[i], 1e-6 + 1e-6 * fabsf(g[i]));
    free(g);
    free(g2);
    free(out);
}

/* ---- sampling ---- */

#define DRAWS 100000

static void test_sample_gaussian(void **state) {
    rng_seed(&rng_global, seed + 2);
    const int k = 1, d = 2;
    const float row[5] = {0.7f, 3.0f, -5.0f, (float)log(2.0), (float)log(0.5)};
    /* (temperature, sigma_temperature): the spread follows the second */
    const double temps[3][2] = {{1.0, 1.0}, {0.5, 0.5}, {1.0, 0.25}};
    float *out = malloc((size_t)DRAWS * 5 * sizeof *out), *y = malloc((size_t)DRAWS * d * sizeof *y);
    assert_true(out && y);
    for (int64_t r = 0; r < DRAWS; r++) memcpy(out + r * 5, row, sizeof row);
    for (int ti = 0; ti < 3; ti++) {
        double T = temps[ti][1];
        mdn_sample(y, out, DRAWS, k, d, temps[ti][0], T, &rng_global);
        for (int e = 0; e < d; e++) {
            double s = 0, s2 = 0;
            for (int64_t r = 0; r < DRAWS; r++) s += y[r * d + e];
            double mean = s / DRAWS;
            for (int64_t r = 0; r < DRAWS; r++) s2 += (y[r * d + e] - mean) * (y[r * d + e] - mean);
            double sd = sqrt(s2 / (DRAWS - 1)), want_sd = exp(row[3 + e]) * sqrt(T);
            printf("# sigma T=%g dim %d: mean %.4f (mu %.4f), std %.4f (sigma*sqrt(T) %.4f)\n", T, e, mean, row[1 + e], sd, want_sd);
            /* the std of the mean is want_sd / 316: 1% of |mu| is > 6 of those */
            assert_close(mean, row[1 + e], 0.01 * fabs(row[1 + e]));
            /* the relative std of sd is 1 / sqrt(2 * DRAWS) = 0.22% */
            assert_close(sd, want_sd, 0.01 * want_sd);
        }
    }
    free(out);
    free(y);
}

static void test_sample_components(void **state) {
    rng_seed(&rng_global, seed + 3);
    const int k = 3, d = 1;
    const double pi[3] = {0.2, 0.3, 0.5};
    /* layout [3 logits | 3 means | 3 log sigmas]; softmax ignores the +1.3 */
    float full[9] = {(float)(log(pi[0]) + 1.3), (float)(log(pi[1]) + 1.3), (float)(log(pi[2]) + 1.3),
                     -100, 0, 100, -5, -5, -5};
    float *out = malloc((size_t)DRAWS * 9 * sizeof *out), *y = malloc((size_t)DRAWS * sizeof *y);
    assert_true(out && y);
    for (int64_t r = 0; r < DRAWS; r++) memcpy(out + r * 9, full, sizeof full);
    const double temps[3] = {1.0, 2.0, 0.5};
    for (int ti = 0; ti < 3; ti++) {
        double T = temps[ti], want[3], z = 0;
        for (int j = 0; j < 3; j++) z += want[j] = pow(pi[j], 1.0 / T);
        mdn_sample(y, out, DRAWS, k, d, T, 0.0, &rng_global);   /* no spread: draws sit on their mean */
        int64_t count[3] = {0};
        for (int64_t r = 0; r < DRAWS; r++) {
            int j = (int)lround(y[r] / 100.0) + 1; /* sigma e^-5: draws sit on their mean */
            assert_true(j >= 0 && j < 3);
            count[j]++;
        }
        for (int j = 0; j < 3; j++) {
            double f = (double)count[j] / DRAWS;
            printf("# T=%g component %d: frequency %.4f, softmax(logits/T) %.4f\n", T, j, f, want[j] / z);
            /* the std of a frequency is at most 0.0016: 0.01 is > 6 of those */
            assert_close(f, want[j] / z, 0.01);
        }
    }
    free(out);
    free(y);
}

static void test_sample_zero_temperature(void **state) {
    rng_seed(&rng_global, seed + 4);
    const int k = 3, d = 2;
    /* rows: component 1 most probable; then a tie between 0 and 2 (first wins) */
    float out[2 * 15] = {0.1f, 2.0f, -1.0f, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0,
                         1.0f, 0.5f, 1.0f, 7, 8, 9, 10, 11, 12, 3, 3, 3, 3, 3, 3};
    float y[4];
    Rng before = rng_global;
    mdn_sample(y, out, 2, k, d, 0.0, 1.0, &rng_global);
    assert_memory_equal(&before.s, &rng_global.s, sizeof before.s);
    assert_close(y[0], 3, 0);
    assert_close(y[1], 4, 0);
    assert_close(y[2], 7, 0);
    assert_close(y[3], 8, 0);
    /* with T > 0 the draws move, and repeat under the same seed */
    float a[4], b[4];
    rng_seed(&rng_global, 99);
    mdn_sample(a, out, 2, k, d, 1.0, 1.0, &rng_global);
    rng_seed(&rng_global, 99);
    mdn_sample(b, out, 2, k, d, 1.0, 1.0, &rng_global);
    assert_memory_equal(a, b, sizeof a);
}

static void test_mean(void **state) {
    rng_seed(&rng_global, seed + 5);
    const int64_t n = 4;
    const int k = 5, d = 3;
    float *out = random_out(n, k, d), y[4 * 3];
    mdn_mean(y, out, n, k, d);
    int64_t w = mdn_width(k, d);
    for (int64_t r = 0; r < n; r++)
        for (int e = 0; e < d; e++) {
            double z = 0, acc = 0;
            for (int j = 0; j < k; j++) z += exp(out[r * w + j]);
            for (int j = 0; j < k; j++) acc += exp(out[r * w + j]) / z * out[r * w + k + j * d + e];
            assert_close(y[r * d + e], acc, 1e-6);
        }
    free(out);
}

/* ---- the layer ---- */

typedef struct TestLayer {
    Layer m;
    Tensor value[LAYER_MAX_PARAMS], grad[LAYER_MAX_PARAMS];
} TestLayer;

static int mdn_make(TestLayer *t, double in, double d, double k, const char *winit, char *err) {
    memset(t, 0, sizeof *t);
    t->m.cfg = calloc(1, mdn_kind.cfg_size);
    OptValues v;
    memset(&v, 0, sizeof v);
    v.num[0] = in;
    v.num[1] = d;
    v.num[2] = k;
    snprintf(v.str[3], sizeof v.str[3], "%s", winit);
    v.is_string[3] = 1;
    assert_string_equal(mdn_kind.options[3].name, "weight_init");
    if (mdn_kind.init(&t->m, &v, err)) {
        free(t->m.cfg);
        return -1;
    }
    t->m.kind = &mdn_kind;
    for (int i = 0; i < t->m.nparams; i++) {
        Param *p = &t->m.params[i];
        assert_int_equal(tensor_init(&t->value[i], p->ndim, p->shape), TENSOR_OK);
        assert_int_equal(tensor_init(&t->grad[i], p->ndim, p->shape), TENSOR_OK);
        p->value = &t->value[i];
        p->grad = &t->grad[i];
    }
    layer_reset_parameters(&t->m);
    return 0;
}

static void mdn_free(TestLayer *t) {
    for (int i = 0; i < t->m.nparams; i++) {
        tensor_release(&t->value[i]);
        tensor_release(&t->grad[i]);
    }
    free(t->m.cfg);
}

static double layer_loss(TestLayer *t, Tensor *x, Tensor *y, const double *r) {
    char err[LAYER_ERR];
    assert_int_equal(mdn_kind.forward(&t->m, x, y, err), 0);
    double s = 0;
    for (int64_t i = 0; i < tensor_numel(y); i++) s += tensor_data(y)[i] * r[i];
    return s;
}

static void test_layer(void **state) {
    rng_seed(&rng_global, seed + 6);
    TestLayer t;
    char err[LAYER_ERR];
    const int64_t in = 5;
    const int d = 2, k = 3, w = 15;
    assert_int_equal(mdn_make(&t, in, d, k, "glorot_uniform", err), 0);
    assert_string_equal(t.m.params[0].name, "weight");
    assert_int_equal(t.value[0].shape[0], w);
    assert_int_equal(t.value[0].shape[1], in);
    assert_string_equal(t.m.params[1].name, "bias");
    fill_normal(tensor_data(&t.value[1]), w, 0, 0.5);
    /* (2, 3, in) is flattened like Linear */
    Tensor x, y, dy, dx;
    int ond;
    int64_t os[TENSOR_MAX_DIMS];
    assert_int_equal(tensor_init(&x, 3, (int64_t[]){2, 3, in}), TENSOR_OK);
    fill_normal(tensor_data(&x), 2 * 3 * in, 0, 1);
    assert_int_equal(mdn_kind.shape(&t.m, 3, x.shape, &ond, os, err), 0);
    assert_int_equal(ond, 3);
    assert_int_equal(os[2], w);
    assert_int_equal(tensor_init(&y, 3, os), TENSOR_OK);
    assert_int_equal(mdn_kind.forward(&t.m, &x, &y, err), 0);
    const float *W = tensor_data(&t.value[0]), *b = tensor_data(&t.value[1]);
    for (int64_t r = 0; r < 6; r++)
        for (int64_t o = 0; o < w; o++) {
            double s = b[o];
            for (int64_t i = 0; i < in; i++) s += (double)W[o * in + i] * tensor_data(&x)[r * in + i];
            assert_close(tensor_data(&y)[r * w + o], s, 1e-5);
        }
    /* backward against finite differences of sum(y * r): the map is linear,
     * so only float rounding (~1e-6 in L, /2e-2) limits the agreement */
    double rr[6 * 15];
    assert_int_equal(tensor_init(&dy, 3, os), TENSOR_OK);
    for (int i = 0; i < 6 * w; i++) tensor_data(&dy)[i] = (float)(rr[i] = 2 * rng_uniform(&rng_global) - 1);
    assert_int_equal(tensor_init(&dx, 3, x.shape), TENSOR_OK);
    assert_int_equal(mdn_kind.backward(&t.m, &x, &y, &dy, &dx, err), 0);
    float *vals[3] = {tensor_data(&x), tensor_data(&t.value[0]), tensor_data(&t.value[1])};
    const float *grads[3] = {tensor_data(&dx), tensor_data(&t.grad[0]), tensor_data(&t.grad[1])};
    int64_t counts[3] = {6 * in, w * in, w};
    for (int a = 0; a < 3; a++)
        for (int64_t i = 0; i < counts[a]; i++) {
            float orig = vals[a][i], vp = orig + 1e-2f, vm = orig - 1e-2f;
            vals[a][i] = vp;
            double lp = layer_loss(&t, &x, &y, rr);
            vals[a][i] = vm;
            double lm = layer_loss(&t, &x, &y, rr);
            vals[a][i] = orig;
            double fd = (lp - lm) / ((double)vp - (double)vm);
            if (fabs(fd - grads[a][i]) > 1e-3 + 1e-3 * fabs(fd))
                fail_msg("%s[%lld]: analytic %.7g, finite difference %.7g", a == 0 ? "dx" : a == 1 ? "dweight" : "dbias",
                         (long long)i, grads[a][i], fd);
        }
    /* errors */
    assert_int_equal(mdn_kind.shape(&t.m, 2, (int64_t[]){4, 6}, &ond, os, err), -1);
    assert_non_null(strstr(err, "must have 5 features"));
    TestLayer bad;
    assert_int_equal(mdn_make(&bad, 5, 0, 3, "glorot_uniform", err), -1);
    assert_non_null(strstr(err, "out_features and mixtures must be >= 1"));
    assert_int_equal(mdn_make(&bad, 5, 2, 3, "nope", err), -1);
    assert_non_null(strstr(err, "unknown weight_init 'nope'"));
    tensor_release(&x);
    tensor_release(&y);
    tensor_release(&dy);
    tensor_release(&dx);
    mdn_free(&t);
}

int main(void) {
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const char *s = getenv("DD_TEST_SEED");
    if (s && *s) seed = strtoull(s, NULL, 10);
    printf("# test_mdn: seed %llu (DD_TEST_SEED)\n", (unsigned long long)seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_forward),
        cmocka_unit_test(test_loss_gradient),
        cmocka_unit_test(test_sample_gaussian),
        cmocka_unit_test(test_sample_components),
        cmocka_unit_test(test_sample_zero_temperature),
        cmocka_unit_test(test_mean),
        cmocka_unit_test(test_layer),
    };
    return cmocka_run_group_tests_name("mdn", tests, NULL, NULL) ? 1 : 0;
}

/* test_loss.c: the MSE and BCE kernels of loss.c against double-precision
 * reference loops, hand-computed values, and central finite differences of
 * their own forward (the gradient check), both reductions.
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

#include "loss.h"

#define N 301

static uint64_t rng_state;

static uint64_t splitmix(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(void) { return (double)(splitmix() >> 11) * 0x1.0p-53; }

static void assert_rel(double got, double want, double rtol, const char *what) {
    if (!(fabs(got - want) <= rtol * fmax(fabs(want), 1e-30)))
        fail_msg("%s: got %.17g, reference %.17g (relative error %.3g)", what, got, want, fabs(got - want) / fabs(want));
}

/* ---- references ---- */

static double mse_ref(const float *y, const float *t, int n, LossReduction r) {
    double s = 0;
    for (int i = 0; i < n; i++) s += ((double)y[i] - t[i]) * ((double)y[i] - t[i]);
    return r == LOSS_MEAN ? s / n : s;
}

static double bce_ref(const float *y, const float *t, int n, double eps, LossReduction r) {
    double s = 0;
    for (int i = 0; i < n; i++) {
        double p = fmin(fmax((double)y[i], eps), 1 - eps);
        s += -((double)t[i] * log(p) + (1.0 - (double)t[i]) * log(1.0 - p));
    }
    return r == LOSS_MEAN ? s / n : s;
}

static void fill_probs(float *y, float *t, int n, int grey_targets) {
    for (int i = 0; i < n; i++) {
        y[i] = (float)(0.02 + 0.96 * uniform());
        t[i] = grey_targets ? (float)uniform() : (float)(uniform() < 0.5);
    }
}

/* ---- forward vs reference ---- */

static void test_mse_forward(void **state) {
    float y[N], t[N];
    for (int i = 0; i < N; i++) {
        y[i] = (float)(uniform() * 4 - 2);
        t[i] = (float)(uniform() * 4 - 2);
    }
    assert_rel(mse_forward(y, t, N, LOSS_MEAN), mse_ref(y, t, N, LOSS_MEAN), 1e-12, "mse mean");
    assert_rel(mse_forward(y, t, N, LOSS_SUM), mse_ref(y, t, N, LOSS_SUM), 1e-12, "mse sum");
    /* by hand: ((1-0)^2 + (2-4)^2 + (-1-(-1))^2) = 5 */
    float a[3] = {1, 2, -1}, b[3] = {0, 4, -1};
    assert_float_equal(mse_forward(a, b, 3, LOSS_SUM), 5.0, 0);
    assert_float_equal(mse_forward(a, b, 3, LOSS_MEAN), 5.0 / 3, 1e-15);
}

static void test_bce_forward(void **state) {
    float y[N], t[N];
    fill_probs(y, t, N, 1);
    /* a few predictions in the clipped region */
    y[0] = 0;
    y[1] = 1;
    y[2] = 1e-9f;
    y[3] = -0.5f;
    assert_rel(bce_forward(y, t, N, 1e-7f, LOSS_MEAN), bce_ref(y, t, N, 1e-7f, LOSS_MEAN), 1e-10, "bce mean");
    assert_rel(bce_forward(y, t, N, 1e-7f, LOSS_SUM), bce_ref(y, t, N, 1e-7f, LOSS_SUM), 1e-10, "bce sum");
    assert_rel(bce_forward(y, t, N, 0.1f, LOSS_MEAN), bce_ref(y, t, N, 0.1f, LOSS_MEAN), 1e-10, "bce eps 0.1");
    /* by hand: y = 0.8, t = 1 -> -log 0.8; y = 0 (clipped to 1e-7), t = 1 -> -log 1e-7 */
    float a[2] = {0.8f, 0}, b[2] = {1, 1};
    assert_rel(bce_forward(a, b, 1, 1e-7f, LOSS_SUM), -log((double)0.8f), 1e-12, "bce by hand");
    assert_rel(bce_forward(a + 1, b + 1, 1, 1e-7f, LOSS_SUM), -log((double)1e-7f), 1e-12, "bce clipped by hand");
}

/* ---- backward vs reference and finite differences ---- */

typedef double (*ForwardFn)(const float *y, const float *t, int n, LossReduction r);
typedef void (*BackwardFn)(float *dy, const float *y, const float *t, int n, LossReduction r);

static double mse_fwd(const float *y, const float *t, int n, LossReduction r) { return mse_forward(y, t, n, r); }
static void mse_bwd(float *dy, const float *y, const float *t, int n, LossReduction r) { mse_backward(dy, y, t, n, r); }
static double bce_fwd(const float *y, const float *t, int n, LossReduction r) { return bce_forward(y, t, n, 1e-7f, r); }
static void bce_bwd(float *dy, const float *y, const float *t, int n, LossReduction r) { bce_backward(dy, y, t, n, 1e-7f, r); }

/* Central differences of the forward (double) at every element; the step
 * actually taken is measured after rounding y +- h to float. */
static void gradcheck(ForwardFn f, BackwardFn b, float *y, const float *t, int n, LossReduction r, double h,
                      double rtol, const char *what) {
    float dy[N];
    b(dy, y, t, n, r);
    for (int i = 0; i < n; i++) {
        float y0 = y[i];
        y[i] = (float)(y0 + h);
        double up = f(y, t, n, r), hu = (double)y[i] - y0;
        y[i] = (float)(y0 - h);
        double down = f(y, t, n, r), hd = y0 - (double)y[i];
        y[i] = y0;
        double num = (up - down) / (hu + hd);
        double tol = rtol * fmax(fabs(num), 1e-3 * (r == LOSS_MEAN ? 1.0 / n : 1.0));
        if (!(fabs(num - dy[i]) <= tol))
            fail_msg("%s: d/dy[%d] (y=%.9g, t=%.9g): analytic %.9g, numeric %.9g", what, i, (double)y0, (double)t[i],
                     (double)dy[i], num);
    }
}

static void test_mse_gradient(void **state) {
    float y[N], t[N];
    for (int i = 0; i < N; i++) {
        y[i] = (float)(uniform() * 4 - 2);
        t[i] = (float)(uniform() * 4 - 2);
    }
    gradcheck(mse_fwd, mse_bwd, y, t, N, LOSS_MEAN, 1e-2, 1e-4, "mse mean");
    gradcheck(mse_fwd, mse_bwd, y, t, N, LOSS_SUM, 1e-2, 1e-4, "mse sum");
    float dy[2], a[2] = {3, -1}, b[2] = {1, 1};
    mse_backward(dy, a, b, 2, LOSS_MEAN); /* 2 (y - t) / n */
    assert_float_equal(dy[0], 2.0f, 0);
    assert_float_equal(dy[1], -2.0f, 0);
}

static void test_bce_gradient(void **state) {
    float y[N], t[N];
    fill_probs(y, t, N, 1);
    gradcheck(bce_fwd, bce_bwd, y, t, N, LOSS_MEAN, 1e-4, 1e-4, "bce mean, grey targets");
    fill_probs(y, t, N, 0);
    gradcheck(bce_fwd, bce_bwd, y, t, N, LOSS_SUM, 1e-4, 1e-4, "bce sum, binary targets");
    /* In the clipped region (y < eps or y > 1 - eps) the loss is flat: the
     * analytic gradient is exactly 0 and so is the numeric one. */
    float yc[4] = {0, 1, 1e-9f, 1.5f}, tc[4] = {1, 0, 0.5f, 1};
    float dy[4];
    bce_backward(dy, yc, tc, 4, 1e-7f, LOSS_SUM);
    for (int i = 0; i < 4; i++) assert_float_equal(dy[i], 0.0f, 0);
    float yf[4] = {-0.5f, 1.5f, -2, 3}, tf[4] = {1, 0, 0.5f, 1};
    gradcheck(bce_fwd, bce_bwd, yf, tf, 4, LOSS_SUM, 1e-2, 1e-4, "bce clipped");
    /* by hand: y = 0.25, t = 1: d/dy -log y = -1/y = -4 */
    float a = 0.25f, b = 1;
    bce_backward(dy, &a, &b, 1, 1e-7f, LOSS_SUM);
    assert_float_equal(dy[0], -4.0f, 1e-6);
}

int main(void) {
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const char *env = getenv("DD_TEST_SEED");
    uint64_t seed = env && *env ? strtoull(env, NULL, 10) : 1234;
    printf("# test_loss seed: %llu (env DD_TEST_SEED)\n", (unsigned long long)seed);
    rng_state = seed;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mse_forward),
        cmocka_unit_test(test_bce_forward),
        cmocka_unit_test(test_mse_gradient),
        cmocka_unit_test(test_bce_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

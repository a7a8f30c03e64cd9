/* test_optim.c: the update rules of optim.c against plain double-precision
 * reference loops written from the formulas (PyTorch's and Keras 2's docs),
 * over several steps with fresh random gradients each step.
 *
 * Each case also checks that the feature it tests matters: the reference with
 * the feature switched off must differ from the kernel by far more than the
 * tolerance, so a kernel that ignored nesterov/amsgrad/centered/weight decay
 * or the eps placement would fail. Seed: env DD_TEST_SEED (default 1234). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "optim.h"

#define N 257   /* odd, so nothing depends on a multiple of a vector width */
#define STEPS 12

static uint64_t rng_state;

static uint64_t splitmix(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(void) { return (double)(splitmix() >> 11) * 0x1.0p-53; }

/* Normal-ish values with a spread of magnitudes (some tiny, some large). */
static float rand_value(void) {
    double u = uniform() * 2 - 1, scale = pow(10.0, uniform() * 3 - 2);
    return (float)(u * scale);
}

/* |got - want| <= atol + rtol |want| for every element; prints the worst. */
static void assert_close(const float *got, const double *want, int n, double atol, double rtol, const char *what) {
    int worst = -1;
    double worst_excess = 0;
    for (int i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]), lim = atol + rtol * fabs(want[i]);
        if (!(err <= lim) && (worst < 0 || err - lim > worst_excess)) {
            worst = i;
            worst_excess = err - lim;
        }
    }
    if (worst >= 0)
        fail_msg("%s: element %d is %.9g, reference %.9g (diff %.3g)", what, worst, (double)got[worst], want[worst],
                 fabs((double)got[worst] - want[worst]));
}

static double max_diff(const float *a, const double *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* The kernel's state after STEPS steps and a double reference run on the same
 * gradients (the reference is a callback: one step of double math). */
typedef struct Run {
    float w[N], g[N], s1[N], s2[N], s3[N];
    double rw[N], rs1[N], rs2[N], rs3[N];
} Run;

static void run_init(Run *r) {
    memset(r, 0, sizeof *r);
    for (int i = 0; i < N; i++) {
        r->w[i] = rand_value();
        r->rw[i] = r->w[i];
    }
}

static void new_grad(Run *r) {
    for (int i = 0; i < N; i++) r->g[i] = rand_value();
}

/* ---- SGD ---- */

static void sgd_ref(double *w, const float *g, double *buf, const SgdParams *p, int64_t step) {
    for (int i = 0; i < N; i++) {
        double d = g[i] + p->weight_decay * w[i];
        if (p->momentum != 0) {
            buf[i] = step == 1 ? d : p->momentum * buf[i] + (1 - p->dampening) * d;
            d = p->nesterov ? d + p->momentum * buf[i] : buf[i];
        }
        w[i] -= p->lr * d;
    }
}

static void sgd_case(const SgdParams *p, const SgdParams *off, const char *what) {
    Run r, alt;
    run_init(&r);
    alt = r;
    for (int64_t t = 1; t <= STEPS; t++) {
        new_grad(&r);
        sgd_step(r.w, r.g, r.s1, N, p, t);
        sgd_ref(r.rw, r.g, r.rs1, p, t);
        if (off) sgd_ref(alt.rw, r.g, alt.rs1, off, t);
    }
    assert_close(r.w, r.rw, N, 1e-6, 1e-5, what);
    if (off && max_diff(r.w, alt.rw, N) < 1e-3)
        fail_msg("%s: switching the feature off changes nothing (%.3g): the test cannot fail", what, max_diff(r.w, alt.rw, N));
}

static void test_sgd(void **state) {
    SgdParams plain = {.lr = 0.1};
    sgd_case(&plain, NULL, "sgd plain");
    SgdParams mom = {.lr = 0.05, .momentum = 0.9};
    SgdParams mom_off = {.lr = 0.05};
    sgd_case(&mom, &mom_off, "sgd momentum");
    SgdParams damp = {.lr = 0.05, .momentum = 0.9, .dampening = 0.5};
    sgd_case(&damp, &mom, "sgd dampening");
    SgdParams nest = {.lr = 0.05, .momentum = 0.9, .nesterov = 1};
    sgd_case(&nest, &mom, "sgd nesterov");
    SgdParams wd = {.lr = 0.05, .momentum = 0.5, .weight_decay = 0.3};
    SgdParams wd_off = {.lr = 0.05, .momentum = 0.5};
    sgd_case(&wd, &wd_off, "sgd weight decay");
}

/* ---- Adam ---- */

static void adam_ref(double *w, const float *g, double *m, double *v, double *vmax, const AdamParams *p, int64_t t) {
    double bc1 = 1 - pow(p->beta1, (double)t), bc2 = 1 - pow(p->beta2, (double)t);
    for (int i = 0; i < N; i++) {
        double d = g[i] + p->weight_decay * w[i];
        m[i] = p->beta1 * m[i] + (1 - p->beta1) * d;
        v[i] = p->beta2 * v[i] + (1 - p->beta2) * d * d;
        double s = v[i];
        if (p->amsgrad) s = vmax[i] = fmax(vmax[i], v[i]);
        if (p->eps_mode == ADAM_EPS_TORCH) w[i] -= p->lr / bc1 * m[i] / (sqrt(s) / sqrt(bc2) + p->eps);
        else w[i] -= p->lr * sqrt(bc2) / bc1 * m[i] / (sqrt(s) + p->eps);
    }
}

/* Gradients whose size varies a lot per step, so that v drops below its
 * earlier maximum (amsgrad matters) and sqrt(v) is near eps (eps mode matters). */
static void new_grad_varying(Run *r, int64_t t) {
    double scale = t % 3 == 1 ? 1.0 : 1e-3;
    for (int i = 0; i < N; i++) r->g[i] = (float)(rand_value() * scale);
}

static void adam_case(const AdamParams *p, const AdamParams *off, const char *what, double rtol) {
    Run r, alt;
    run_init(&r);
    alt = r;
    for (int64_t t = 1; t <= STEPS; t++) {
        new_grad_varying(&r, t);
        adam_step(r.w, r.g, r.s1, r.s2, r.s3, N, p, t);
        adam_ref(r.rw, r.g, r.rs1, r.rs2, r.rs3, p, t);
        if (off) adam_ref(alt.rw, r.g, alt.rs1, alt.rs2, alt.rs3, off, t);
    }
    assert_close(r.w, r.rw, N, 1e-6, rtol, what);
    double m_ref[N];
    for (int i = 0; i < N; i++) m_ref[i] = r.rs1[i];
    assert_close(r.s1, m_ref, N, 1e-8, 1e-5, "adam first moment");
    if (off && max_diff(r.w, alt.rw, N) < 1e-4)
        fail_msg("%s: switching the feature off changes nothing (%.3g): the test cannot fail", what, max_diff(r.w, alt.rw, N));
}

static void test_adam(void **state) {
    AdamParams keras = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-7, .eps_mode = ADAM_EPS_KERAS};
    adam_case(&keras, NULL, "adam keras", 1e-5);
    /* A large eps makes the two placements differ visibly. */
    AdamParams keras_big = keras, torch_big = keras;
    keras_big.eps = torch_big.eps = 1e-2;
    torch_big.eps_mode = ADAM_EPS_TORCH;
    adam_case(&keras_big, &torch_big, "adam keras eps placement", 1e-5);
    adam_case(&torch_big, &keras_big, "adam torch eps placement", 1e-5);
    AdamParams torch = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .eps_mode = ADAM_EPS_TORCH};
    adam_case(&torch, NULL, "adam torch defaults", 1e-5);
    /* beta2 = 0.9 lets v fall below its maximum within a few steps */
    AdamParams ams = keras_big, ams_off = keras_big;
    ams.beta2 = ams_off.beta2 = 0.9;
    ams.amsgrad = 1;
    adam_case(&ams, &ams_off, "adam keras amsgrad", 1e-5);
    AdamParams ams_t = torch_big, ams_t_off = torch_big;
    ams_t.beta2 = ams_t_off.beta2 = 0.9;
    ams_t.amsgrad = 1;
    adam_case(&ams_t, &ams_t_off, "adam torch amsgrad", 1e-5);
    AdamParams wd = keras, wd_off = keras;
    wd.weight_decay = 5.0;
    adam_case(&wd, &wd_off, "adam weight decay", 1e-5);
    AdamParams betas = {.lr = 1e-2, .beta1 = 0.5, .beta2 = 0.9, .eps = 1e-7, .eps_mode = ADAM_EPS_TORCH};
    adam_case(&betas, &torch, "adam other betas", 1e-5);
}

/* The first Adam step moves every weight by about lr (m/sqrt(v) = sign(g)):
 * a hand-checkable number independent of the reference above. */
static void test_adam_first_step(void **state) {
    float w[3] = {1, 1, 1}, g[3] = {0.5f, -2.0f, 0}, m[3] = {0}, v[3] = {0};
    AdamParams p = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-7, .eps_mode = ADAM_EPS_KERAS};
    adam_step(w, g, m, v, NULL, 3, &p, 1);
    assert_float_equal(w[0], 0.9f, 1e-5);
    assert_float_equal(w[1], 1.1f, 1e-5);
    assert_float_equal(w[2], 1.0f, 0);
}

/* ---- RMSprop ---- */

static void rmsprop_ref(double *w, const float *g, double *sq, double *mg, double *mom, const RmspropParams *p) {
    for (int i = 0; i < N; i++) {
        double d = g[i] + p->weight_decay * w[i];
        sq[i] = p->rho * sq[i] + (1 - p->rho) * d * d;
        double den = sq[i];
        if (p->centered) {
            mg[i] = p->rho * mg[i] + (1 - p->rho) * d;
            den -= mg[i] * mg[i];
        }
        if (p->momentum > 0) {
            mom[i] = p->momentum * mom[i] + p->lr * d / sqrt(den + p->eps);
            w[i] -= mom[i];
        } else {
            w[i] -= p->lr * d / (sqrt(den) + p->eps);
        }
    }
}

static void rmsprop_case(const RmspropParams *p, const RmspropParams *off, const char *what) {
    Run r, alt;
    run_init(&r);
    alt = r;
    for (int64_t t = 1; t <= STEPS; t++) {
        new_grad_varying(&r, t);
        rmsprop_step(r.w, r.g, r.s1, r.s2, r.s3, N, p);
        rmsprop_ref(r.rw, r.g, r.rs1, r.rs2, r.rs3, p);
        if (off) rmsprop_ref(alt.rw, r.g, alt.rs1, alt.rs2, alt.rs3, off);
    }
    assert_close(r.w, r.rw, N, 1e-6, 2e-5, what);
    if (off && max_diff(r.w, alt.rw, N) < 1e-4)
        fail_msg("%s: switching the feature off changes nothing (%.3g): the test cannot fail", what, max_diff(r.w, alt.rw, N));
}

static void test_rmsprop(void **state) {
    RmspropParams plain = {.lr = 1e-3, .rho = 0.9, .eps = 1e-7};
    rmsprop_case(&plain, NULL, "rmsprop plain");
    RmspropParams cen = plain, cen_off = plain;
    cen.centered = 1;
    cen.lr = cen_off.lr = 1e-2;
    rmsprop_case(&cen, &cen_off, "rmsprop centered");
    RmspropParams mom = {.lr = 1e-2, .rho = 0.9, .eps = 1e-7, .momentum = 0.9};
    RmspropParams mom_off = {.lr = 1e-2, .rho = 0.9, .eps = 1e-7};
    rmsprop_case(&mom, &mom_off, "rmsprop momentum");
    RmspropParams both = mom;
    both.centered = 1;
    rmsprop_case(&both, &mom, "rmsprop centered momentum");
    RmspropParams wd = plain, wd_off = plain;
    wd.weight_decay = 2.0;
    wd.lr = wd_off.lr = 1e-2;
    rmsprop_case(&wd, &wd_off, "rmsprop weight decay");
}

/* A constant gradient makes sq - mg^2 ~ 0 after many steps: no NaN. */
static void test_rmsprop_centered_constant_grad(void **state) {
    float w[4] = {0}, g[4] = {1, -1, 3e-3f, 100}, sq[4] = {0}, mg[4] = {0};
    RmspropParams p = {.lr = 1e-3, .rho = 0.9, .eps = 1e-7, .centered = 1};
    for (int t = 0; t < 2000; t++) rmsprop_step(w, g, sq, mg, NULL, 4, &p);
    for (int i = 0; i < 4; i++)
        if (!isfinite(w[i])) fail_msg("w[%d] = %f after 2000 constant-gradient steps", i, (double)w[i]);
}

/* ---- clipping helpers ---- */

static void test_grad_norm(void **state) {
    float g[5] = {3, 4, 0, -12, 0};
    assert_float_equal(grad_sum_squares(g, 5), 169.0, 0);
    grad_scale(g, 5, 0.5f);
    assert_float_equal(g[1], 2.0f, 0);
    assert_float_equal(g[3], -6.0f, 0);
    assert_float_equal(grad_sum_squares(g, 0), 0.0, 0);
}

int main(void) {
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const char *env = getenv("DD_TEST_SEED");
    uint64_t seed = env && *env ? strtoull(env, NULL, 10) : 1234;
    printf("# test_optim seed: %llu (env DD_TEST_SEED)\n", (unsigned long long)seed);
    rng_state = seed;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_adam_first_step),
        cmocka_unit_test(test_rmsprop),
        cmocka_unit_test(test_rmsprop_centered_constant_grad),
        cmocka_unit_test(test_grad_norm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

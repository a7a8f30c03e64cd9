/* test_lstm.c: the LSTM layer kind (nn_lstm.c) without Lua.
 *
 * 1. forward against a plain double-precision loop written from the equations
 *    (ref_lstm below), over 1/3 layers, sigmoid/hard_sigmoid, return_sequences
 *    on/off, batch 1/5, time 1/7, odd sizes (input 3, hidden 5);
 * 2. backward against central finite differences of L = sum(y * r) for dx and
 *    every parameter, with dropout between layers too (the rng is reseeded
 *    before every forward so the masks repeat);
 * 3. step() against forward() at every time step, state save/restore, errors;
 * 4. the step products' packed GEMM (gemm_packed.c) against a double loop on
 *    every tail of its 4 x 24 tile, and the layer with it against the layer
 *    with blas_sgemm.
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

#include "gemm_packed.h"
#include "layer.h"
#include "nn_lstm.h"
#include "rng.h"

static uint64_t seed = 1234;

/* cmocka's assert_float_equal rounds to float; these checks need double. */
#define assert_close(a, b, tol) assert_close_at((double)(a), (double)(b), (double)(tol), #a, __FILE__, __LINE__)
static void assert_close_at(double a, double b, double tol, const char *what, const char *file, int line) {
    if (!(fabs(a - b) <= tol)) fail_msg("%s:%d: %s = %.10g, expected %.10g within %.3g", file, line, what, a, b, tol);
}

/* ---- building layers without Lua ---- */

typedef struct TestLayer {
    Layer m;
    Tensor value[LAYER_MAX_PARAMS], grad[LAYER_MAX_PARAMS];
} TestLayer;

/* kv: "name", "value", ..., NULL. Unlisted options take their defaults. */
static const char *kv_get(const char *const *kv, const char *name) {
    for (int i = 0; kv[i]; i += 2)
        if (strcmp(kv[i], name) == 0) return kv[i + 1];
    return NULL;
}

static int layer_try(TestLayer *t, const LayerKind *k, const char *const *kv, char *err) {
    memset(t, 0, sizeof *t);
    t->m.cfg = calloc(1, k->cfg_size);
    t->m.training = 1;
    OptValues v;
    memset(&v, 0, sizeof v);
    for (int i = 0; k->options[i].name; i++) {
        const LayerOption *o = &k->options[i];
        const char *val = kv_get(kv, o->name);
        if (!val) val = o->dflt;
        if (!val) fail_msg("option %s is required", o->name);
        if (o->type == OPT_STRING) {
            snprintf(v.str[i], sizeof v.str[i], "%s", val);
            v.is_string[i] = 1;
        } else if (o->type == OPT_BOOL) {
            v.num[i] = strcmp(val, "true") == 0;
        } else {
            v.num[i] = strtod(val, NULL);
        }
    }
    if (k->init(&t->m, &v, err)) {
        free(t->m.cfg);
        return -1;
    }
    t->m.kind = k;
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

static TestLayer *layer_make(const LayerKind *k, const char *const *kv) {
    TestLayer *t = malloc(sizeof *t);
    char err[LAYER_ERR];
    assert_non_null(t);
    if (layer_try(t, k, kv, err)) fail_msg("%s: %s", k->name, err);
    return t;
}

static void layer_free(TestLayer *t) {
    if (t->m.kind->destroy) t->m.kind->destroy(&t->m);
    for (int i = 0; i < t->m.nparams; i++) {
        tensor_release(&t->value[i]);
        tensor_release(&t->grad[i]);
    }
    free(t->m.cfg);
    free(t);
}

static float *param(TestLayer *t, int i) { return tensor_data(&t->value[i]); }

static void fill_uniform(float *p, int64_t n, double scale) {
    for (int64_t i = 0; i < n; i++) p[i] = (float)((2 * rng_uniform(&rng_global) - 1) * scale);
}

/* Forward into a fresh tensor y (shaped by the kind's shape check). */
static void forward(TestLayer *t, Tensor *x, Tensor *y) {
    int ond;
    int64_t os[TENSOR_MAX_DIMS];
    char err[LAYER_ERR];
    if (t->m.kind->shape(&t->m, x->ndim, x->shape, &ond, os, err)) fail_msg("shape: %s", err);
    assert_int_equal(tensor_init(y, ond, os), TENSOR_OK);
    if (t->m.kind->forward(&t->m, x, y, err)) fail_msg("forward: %s", err);
}

/* ---- the reference ---- */

typedef struct Case {
    char name[128];
    int layers, hard, return_seq;
    int64_t batch, time, in, hidden;
    double dropout; /* with training on, masks drawn as the layer does */
} Case;

static double ref_gate(double v, int hard) {
    if (!hard) return 1.0 / (1.0 + exp(-v));
    double y = 0.2 * v + 0.5;
    return y < 0 ? 0 : y > 1 ? 1 : y;
}

/* The LSTM from its equations, one element at a time in double. x is
 * (B, T, in); y (B, T, H) or (B, H). pattern (may be NULL) receives, for every
 * sigmoid gate evaluated, which piece of the hard sigmoid it fell on (0 flat
 * low, 1 linear, 2 flat high), and min_kink (may be NULL) the smallest distance
 * of any sigmoid-gate pre-activation from the kinks at +-2.5. With dropout > 0 the masks are drawn from an Rng
 * seeded with drop_seed in the layer's documented order (layer 1, 2, ...;
 * within a layer time, batch, unit) and applied to the inputs of layers >= 1. */
static void ref_lstm(double *y, unsigned char *pattern, double *min_kink, TestLayer *t, const Case *cs, const float *x,
                     uint64_t drop_seed) {
    const int64_t B = cs->batch, T = cs->time, H = cs->hidden;
    int64_t width = cs->in, wmax = cs->in > H ? cs->in : H;
    double *seq = malloc((size_t)(B * T * wmax) * sizeof *seq), *next = malloc((size_t)(B * T * H) * sizeof *next);
    double *h = malloc((size_t)(B * H) * sizeof *h), *c = malloc((size_t)(B * H) * sizeof *c);
    double *gate = malloc((size_t)(4 * H) * sizeof *gate);
    assert_true(seq && next && h && c && gate);
    for (int64_t i = 0; i < B * T * cs->in; i++) seq[i] = x[i];
    Rng r;
    rng_seed(&r, drop_seed);
    float p = (float)cs->dropout, keep = 1.0f / (1.0f - p);
    if (min_kink) *min_kink = INFINITY;
    for (int k = 0; k < cs->layers; k++) {
        if (k > 0 && cs->dropout > 0)
            for (int64_t s = 0; s < T; s++)
                for (int64_t b = 0; b < B; b++)
                    for (int64_t j = 0; j < H; j++) seq[(b * T + s) * H + j] *= rng_uniform(&r) < p ? 0.0f : keep;
        const float *wih = param(t, 3 * k), *whh = param(t, 3 * k + 1), *bias = param(t, 3 * k + 2);
        memset(h, 0, (size_t)(B * H) * sizeof *h);
        memset(c, 0, (size_t)(B * H) * sizeof *c);
        for (int64_t s = 0; s < T; s++)
            for (int64_t b = 0; b < B; b++) {
                for (int64_t q = 0; q < 4 * H; q++) {
                    double pre = bias[q];
                    for (int64_t e = 0; e < width; e++) pre += (double)wih[q * width + e] * seq[(b * T + s) * width + e];
                    for (int64_t e = 0; e < H; e++) pre += (double)whh[q * H + e] * h[b * H + e];
                    int is_g = q / H == 2;
                    gate[q] = is_g ? tanh(pre) : ref_gate(pre, cs->hard);
                    if (min_kink && !is_g) *min_kink = fmin(*min_kink, fmin(fabs(pre - 2.5), fabs(pre + 2.5)));
                    if (pattern && !is_g) {
                        double v = 0.2 * pre + 0.5;
                        *pattern++ = v <= 0 ? 0 : v >= 1 ? 2 : 1;
                    }
                }
                for (int64_t j = 0; j < H; j++) {
                    double i = gate[j], f = gate[H + j], g = gate[2 * H + j], o = gate[3 * H + j];
                    c[b * H + j] = f * c[b * H + j] + i * g;
                    h[b * H + j] = o * tanh(c[b * H + j]);
                    next[(b * T + s) * H + j] = h[b * H + j];
                }
            }
        memcpy(seq, next, (size_t)(B * T * H) * sizeof *seq);
        width = H;
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < T; s++)
            for (int64_t j = 0; j < H; j++) {
                if (cs->return_seq) y[(b * T + s) * H + j] = seq[(b * T + s) * H + j];
                else if (s == T - 1) y[b * H + j] = seq[(b * T + s) * H + j];
            }
    free(seq);
    free(next);
    free(h);
    free(c);
    free(gate);
}

/* ---- setup shared by the tests ---- */

static TestLayer *make_case_layer(const Case *cs) {
    char in[32], hid[32], layers[32], drop[32];
    snprintf(in, sizeof in, "%lld", (long long)cs->in);
    snprintf(hid, sizeof hid, "%lld", (long long)cs->hidden);
    snprintf(layers, sizeof layers, "%d", cs->layers);
    snprintf(drop, sizeof drop, "%.17g", cs->dropout);
    const char *kv[] = {"input_size", in, "hidden_size", hid, "num_layers", layers, "dropout", drop,
                        "return_sequences", cs->return_seq ? "true" : "false",
                        "recurrent_activation", cs->hard ? "hard_sigmoid" : "sigmoid", NULL};
    TestLayer *t = layer_make(&lstm_kind, kv);
    /* weights large enough that many hard-sigmoid gates sit on the flat parts */
    for (int i = 0; i < t->m.nparams; i++) fill_uniform(param(t, i), tensor_numel(&t->value[i]), 0.8);
    return t;
}

static uint64_t case_seed(const Case *cs) {
    uint64_t h = seed;
    for (const char *p = cs->name; *p; p++) h = h * 131 + (unsigned char)*p;
    return h;
}

static void make_input(Tensor *x, const Case *cs) {
    int64_t shape[3] = {cs->batch, cs->time, cs->in};
    assert_int_equal(tensor_init(x, 3, shape), TENSOR_OK);
    float *p = tensor_data(x);
    for (int64_t i = 0; i < tensor_numel(x); i++) p[i] = (float)(2 * rng_normal(&rng_global));
}

static int64_t out_numel(const Case *cs) { return cs->batch * (cs->return_seq ? cs->time : 1) * cs->hidden; }

/* ---- 1. forward against the reference ---- */

/* float32 against double: each pre-activation sums at most 8 products, tanh
 * is approximated to 4e-7 and gates lie in [0, 1], so errors stay near 1e-6
 * through 3 layers and 7 steps; 2e-5 leaves room and still catches a wrong
 * gate, bias block or time index (those are O(0.1)). */
#define FWD_TOL 2e-5

static void test_forward(void **state) {
    const Case *cs = *state;
    rng_seed(&rng_global, case_seed(cs));
    TestLayer *t = make_case_layer(cs);
    Tensor x, y;
    make_input(&x, cs);
    uint64_t drop_seed = case_seed(cs) ^ 0x5eed;
    rng_seed(&rng_global, drop_seed);
    forward(t, &x, &y);
    int64_t n = out_numel(cs);
    assert_int_equal(tensor_numel(&y), n);
    double *ref = malloc((size_t)n * sizeof *ref);
    assert_non_null(ref);
    ref_lstm(ref, NULL, NULL, t, cs, tensor_data(&x), drop_seed);
    const float *yp = tensor_data(&y);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(yp[i] - ref[i]);
        if (e > worst) worst = e;
        if (e > FWD_TOL) fail_msg("%s: y[%lld] = %.9g, reference %.9g", cs->name, (long long)i, yp[i], ref[i]);
    }
    printf("# %s: max |y - ref| = %.3g\n", cs->name, worst);
    free(ref);
    tensor_release(&x);
    tensor_release(&y);
    layer_free(t);
}

/* ---- 2. backward against finite differences ---- */

static double weighted_sum(const Tensor *y, const double *r) {
    double s = 0;
    const float *p = tensor_data(y);
    for (int64_t i = 0; i < tensor_numel(y); i++) s += p[i] * r[i];
    return s;
}

/* L(x, params) with the dropout masks of drop_seed (reseeded every time). */
static double loss_at(TestLayer *t, Tensor *x, const double *r, uint64_t drop_seed) {
    Tensor y;
    rng_seed(&rng_global, drop_seed);
    forward(t, x, &y);
    double l = weighted_sum(&y, r);
    tensor_release(&y);
    return l;
}

/* The loss is summed in double from float32 outputs: each output carries
 * ~1e-7 of rounding, so L carries a few 1e-6 of noise. The derivative is the
 * Richardson combination (4 D(eps/2) - D(eps)) / 3 of two central
 * differences, which cancels the eps^2 truncation term: with a plain central
 * difference a weight multiplying an input of size 5 sees third derivatives
 * in the hundreds, and eps^2 f'''/6 reaches 1e-3. What remains is noise,
 * bounded by ~1.5 * 3e-6 / eps (5e-4 at eps = 1e-2 for the sigmoid; the hard
 * sigmoid uses 5e-3 so fewer perturbations cross a kink) and measured at
 * 3.3e-4 at worst over seeds 100..400. Tolerance 1e-3 + 5e-3 * |g|: 3x that,
 * and far below what a wrong term costs (a missing recurrent or cell-carry
 * term, a slope of 0.21 instead of 0.2 change gradients by 1e-2 and more). */
#define FD_ATOL 1e-3
#define FD_RTOL 5e-3

typedef struct FdStats {
    int64_t checked, skipped;
    double worst;
} FdStats;

/* Checks analytic gradient g[i] of the float array v[i] (the input or a
 * parameter) against a central difference. With the hard sigmoid, points
 * where a perturbation moves any gate across a kink (seen as a change in the
 * reference's pattern) are skipped: the difference quotient is meaningless
 * there. */
static void fd_check(TestLayer *t, const Case *cs, Tensor *x, const double *r, uint64_t drop_seed, float *v,
                     const float *g, int64_t n, const char *what, FdStats *st) {
    int64_t npat = (int64_t)cs->layers * cs->time * cs->batch * 3 * cs->hidden;
    unsigned char *base = NULL, *pat = NULL;
    double *yref = NULL;
    if (cs->hard) {
        base = malloc((size_t)npat);
        pat = malloc((size_t)npat);
        yref = malloc((size_t)out_numel(cs) * sizeof *yref);
        assert_true(base && pat && yref);
        ref_lstm(yref, base, NULL, t, cs, tensor_data(x), drop_seed);
    }
    const double eps = cs->hard ? 5e-3 : 1e-2;
    for (int64_t i = 0; i < n; i++) {
        float orig = v[i];
        float pts[4] = {(float)(orig + eps), (float)(orig - eps), (float)(orig + eps / 2), (float)(orig - eps / 2)};
        double l[4];
        int kink = 0;
        for (int q = 0; q < 4; q++) {
            v[i] = pts[q];
            l[q] = loss_at(t, x, r, drop_seed);
            if (cs->hard && q < 2) { /* the outer points bound the segment */
                ref_lstm(yref, pat, NULL, t, cs, tensor_data(x), drop_seed);
                kink |= memcmp(pat, base, (size_t)npat) != 0;
            }
        }
        v[i] = orig;
        if (kink) {
            st->skipped++;
            continue;
        }
        double d1 = (l[0] - l[1]) / ((double)pts[0] - pts[1]), d2 = (l[2] - l[3]) / ((double)pts[2] - pts[3]);
        double fd = (4 * d2 - d1) / 3, an = g[i];
        double err = fabs(fd - an);
        if (err > st->worst) st->worst = err;
        st->checked++;
        if (err > FD_ATOL + FD_RTOL * fabs(fd))
            fail_msg("%s: d%s[%lld]: analytic %.7g, finite difference %.7g", cs->name, what, (long long)i, an, fd);
    }
    free(base);
    free(pat);
    free(yref);
}

static void test_backward(void **state) {
    const Case *cs = *state;
    rng_seed(&rng_global, case_seed(cs));
    TestLayer *t = make_case_layer(cs);
    Tensor x, y, dy, dx;
    uint64_t drop_seed = case_seed(cs) ^ 0xd20;
    make_input(&x, cs);
    if (cs->hard) {
        /* A gate within a hair of a kink makes nearly every perturbation
         * cross it, and the check would skip most gradients: redraw the
         * input until every gate is at least 5e-3 (the perturbation size)
         * away. Typically this takes 1 or 2 draws. */
        double *yref = malloc((size_t)out_numel(cs) * sizeof *yref), dist = 0;
        assert_non_null(yref);
        int tries = 0;
        for (;;) {
            ref_lstm(yref, NULL, &dist, t, cs, tensor_data(&x), drop_seed);
            if (dist >= 5e-3) break;
            if (++tries == 100) fail_msg("%s: no input with all gates away from the kinks", cs->name);
            tensor_release(&x);
            make_input(&x, cs);
        }
        free(yref);
    }
    rng_seed(&rng_global, drop_seed);
    forward(t, &x, &y);
    int64_t n = out_numel(cs);
    double *r = malloc((size_t)n * sizeof *r);
    assert_non_null(r);
    assert_int_equal(tensor_init(&dy, y.ndim, y.shape), TENSOR_OK);
    for (int64_t i = 0; i < n; i++) tensor_data(&dy)[i] = (float)(r[i] = rng_uniform(&rng_global) * 2 - 1);
    assert_int_equal(tensor_init(&dx, x.ndim, x.shape), TENSOR_OK);
    char err[LAYER_ERR];
    if (lstm_kind.backward(&t->m, &x, &y, &dy, &dx, err)) fail_msg("backward: %s", err);

    if (cs->hard) { /* the test means something only if both flat parts occur */
        int64_t npat = (int64_t)cs->layers * cs->time * cs->batch * 3 * cs->hidden, cnt[3] = {0};
        unsigned char *pat = malloc((size_t)npat);
        double *yref = malloc((size_t)n * sizeof *yref);
        ref_lstm(yref, pat, NULL, t, cs, tensor_data(&x), drop_seed);
        for (int64_t i = 0; i < npat; i++) cnt[pat[i]]++;
        printf("# %s: hard-sigmoid gates low/linear/high = %lld/%lld/%lld\n", cs->name, (long long)cnt[0],
               (long long)cnt[1], (long long)cnt[2]);
        if (cs->batch * cs->time >= 10) assert_true(cnt[0] > 0 && cnt[2] > 0 && cnt[1] > 0);
        free(pat);
        free(yref);
    }
    FdStats st = {0, 0, 0};
    fd_check(t, cs, &x, r, drop_seed, tensor_data(&x), tensor_data(&dx), tensor_numel(&x), "x", &st);
    for (int i = 0; i < t->m.nparams; i++)
        fd_check(t, cs, &x, r, drop_seed, param(t, i), tensor_data(&t->grad[i]), tensor_numel(&t->value[i]),
                 t->m.params[i].name, &st);
    printf("# %s: %lld gradients checked, %lld skipped at kinks, max |error| %.3g\n", cs->name, (long long)st.checked,
           (long long)st.skipped, st.worst);
    /* skipping must stay the exception, or the check proves little */
    assert_true(st.skipped * 10 <= st.checked);
    free(r);
    tensor_release(&x);
    tensor_release(&y);
    tensor_release(&dy);
    tensor_release(&dx);
    layer_free(t);
}

/* Parameter gradients accumulate (+=): two backward calls give twice one. */
static void test_backward_accumulates(void **state) {
    Case cs = {"accumulate", 2, 0, 1, 3, 4, 3, 5, 0};
    rng_seed(&rng_global, seed);
    TestLayer *t = make_case_layer(&cs);
    Tensor x, y, dy, dx;
    make_input(&x, &cs);
    forward(t, &x, &y);
    assert_int_equal(tensor_init(&dy, y.ndim, y.shape), TENSOR_OK);
    fill_uniform(tensor_data(&dy), tensor_numel(&dy), 1);
    assert_int_equal(tensor_init(&dx, x.ndim, x.shape), TENSOR_OK);
    char err[LAYER_ERR];
    assert_int_equal(lstm_kind.backward(&t->m, &x, &y, &dy, &dx, err), 0);
    float *once[LAYER_MAX_PARAMS];
    for (int i = 0; i < t->m.nparams; i++) {
        int64_t n = tensor_numel(&t->grad[i]);
        once[i] = malloc((size_t)n * sizeof(float));
        memcpy(once[i], tensor_data(&t->grad[i]), (size_t)n * sizeof(float));
    }
    assert_int_equal(lstm_kind.backward(&t->m, &x, &y, &dy, &dx, err), 0);
    for (int i = 0; i < t->m.nparams; i++) {
        for (int64_t j = 0; j < tensor_numel(&t->grad[i]); j++)
            assert_close(tensor_data(&t->grad[i])[j], 2 * once[i][j], 1e-5 + 1e-5 * fabsf(once[i][j]));
        free(once[i]);
    }
    tensor_release(&x);
    tensor_release(&y);
    tensor_release(&dy);
    tensor_release(&dx);
    layer_free(t);
}

/* ---- 3. stepping ---- */

static void test_step_matches_forward(void **state) {
    const Case *cs = *state;
    rng_seed(&rng_global, case_seed(cs));
    TestLayer *t = make_case_layer(cs);
    t->m.training = 0; /* forward without dropout; step never drops */
    Tensor x, y, xt;
    make_input(&x, cs);
    forward(t, &x, &y);
    t->m.training = 1; /* step must ignore training mode */
    const int64_t B = cs->batch, T = cs->time, in = cs->in, H = cs->hidden;
    float *xs = malloc((size_t)(B * in) * sizeof(float)), *ys = malloc((size_t)(B * H) * sizeof(float));
    assert_true(xs && ys);
    char err[LAYER_ERR];
    lstm_state_reset(&t->m);
    assert_int_equal(lstm_state_batch(&t->m), 0);
    for (int64_t s = 0; s < T; s++) {
        for (int64_t b = 0; b < B; b++) memcpy(xs + b * in, tensor_data(&x) + (b * T + s) * in, (size_t)in * sizeof(float));
        if (lstm_step(&t->m, ys, xs, B, err)) fail_msg("step: %s", err);
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < H; j++) {
                float want = tensor_data(&y)[(b * T + s) * H + j];
                if (fabsf(ys[b * H + j] - want) > 1e-6f)
                    fail_msg("%s: step %lld, batch %lld, unit %lld: step gives %.9g, forward %.9g", cs->name,
                             (long long)s, (long long)b, (long long)j, ys[b * H + j], want);
            }
    }
    assert_int_equal(lstm_state_batch(&t->m), B);
    (void)xt;
    free(xs);
    free(ys);
    tensor_release(&x);
    tensor_release(&y);
    layer_free(t);
}

/* state -> more steps -> set_state -> the same steps give the same outputs. */
static void test_step_state_roundtrip(void **state) {
    Case cs = {"state", 3, 1, 1, 2, 1, 3, 5, 0};
    rng_seed(&rng_global, seed + 7);
    TestLayer *t = make_case_layer(&cs);
    const int64_t B = 2, H = 5, n = B * H;
    float x[6][2 * 3], ya[4][2 * 5], yb[4][2 * 5];
    for (int s = 0; s < 6; s++) fill_uniform(x[s], B * 3, 2);
    char err[LAYER_ERR];
    for (int s = 0; s < 2; s++) assert_int_equal(lstm_step(&t->m, ya[0], x[s], B, err), 0);
    float hs[3][10], csv[3][10];
    const float *hp[3], *cp[3];
    for (int k = 0; k < 3; k++) {
        memcpy(hs[k], lstm_state_h(&t->m, k), (size_t)n * sizeof(float));
        memcpy(csv[k], lstm_state_c(&t->m, k), (size_t)n * sizeof(float));
        hp[k] = hs[k];
        cp[k] = csv[k];
    }
    /* the top layer's h is what step returned */
    assert_memory_equal(hs[2], ya[0], (size_t)n * sizeof(float));
    for (int s = 0; s < 4; s++) assert_int_equal(lstm_step(&t->m, ya[s], x[2 + s], B, err), 0);
    lstm_state_reset(&t->m);
    assert_null(lstm_state_h(&t->m, 0));
    assert_int_equal(lstm_state_set(&t->m, B, hp, cp, err), 0);
    for (int s = 0; s < 4; s++) assert_int_equal(lstm_step(&t->m, yb[s], x[2 + s], B, err), 0);
    assert_memory_equal(ya, yb, sizeof ya);
    /* a changed batch is refused, naming both sizes; the state survives */
    int rc = lstm_step(&t->m, yb[0], x[0], 1, err);
    assert_int_equal(rc, -1);
    printf("# %s\n", err);
    assert_non_null(strstr(err, "batch 1"));
    assert_non_null(strstr(err, "batch 2"));
    assert_int_equal(lstm_state_batch(&t->m), 2);
    lstm_state_reset(&t->m);
    assert_int_equal(lstm_step(&t->m, yb[0], x[0], 1, err), 0);
    layer_free(t);
}

/* ---- init and errors ---- */

static void test_init(void **state) {
    rng_seed(&rng_global, seed);
    const char *kv[] = {"input_size", "7", "hidden_size", "6", "num_layers", "2", NULL};
    TestLayer *t = layer_make(&lstm_kind, kv);
    assert_int_equal(t->m.nparams, 6);
    assert_string_equal(t->m.params[0].name, "weight_ih_l0");
    assert_string_equal(t->m.params[4].name, "weight_hh_l1");
    assert_string_equal(t->m.params[5].name, "bias_l1");
    assert_string_equal(t->m.params[5].sum_of[0], "bias_ih_l1");
    assert_string_equal(t->m.params[5].sum_of[1], "bias_hh_l1");
    assert_int_equal(t->value[0].shape[0], 24);
    assert_int_equal(t->value[0].shape[1], 7);
    assert_int_equal(t->value[3].shape[1], 6);
    /* forget block of the bias is 1, the rest 0 (unit_forget_bias) */
    for (int j = 0; j < 24; j++) assert_close(param(t, 2)[j], j >= 6 && j < 12 ? 1 : 0, 0);
    /* weight_hh: orthonormal columns; weight_ih within the Glorot bound sqrt(6 / (in + 4H)) */
    for (int a = 0; a < 6; a++)
        for (int b = 0; b < 6; b++) {
            double dot = 0;
            for (int r = 0; r < 24; r++) dot += (double)param(t, 1)[r * 6 + a] * param(t, 1)[r * 6 + b];
            assert_close(dot, a == b, 1e-5);
        }
    double bound = sqrt(6.0 / (7 + 24));
    for (int i = 0; i < 24 * 7; i++) assert_true(fabs(param(t, 0)[i]) <= bound);
    layer_free(t);
    const char *kv2[] = {"input_size", "3", "hidden_size", "4", "unit_forget_bias", "false", NULL};
    t = layer_make(&lstm_kind, kv2);
    for (int j = 0; j < 16; j++) assert_close(param(t, 2)[j], 0, 0);
    layer_free(t);
}

static void expect_init_error(const char *const *kv, const char *want) {
    TestLayer t;
    char err[LAYER_ERR] = "";
    if (layer_try(&t, &lstm_kind, kv, err) == 0) fail_msg("accepted, expected an error containing '%s'", want);
    if (!strstr(err, want)) fail_msg("error '%s' does not contain '%s'", err, want);
}

static void test_errors(void **state) {
    const char *a[] = {"input_size", "3", "hidden_size", "4", "recurrent_activation", "relu", NULL};
    expect_init_error(a, "unknown recurrent_activation 'relu' (known: sigmoid, hard_sigmoid)");
    const char *b[] = {"input_size", "3", "hidden_size", "4", "num_layers", "6", NULL};
    expect_init_error(b, "num_layers must be in [1, 5]");
    const char *c[] = {"input_size", "3", "hidden_size", "4", "dropout", "1", NULL};
    expect_init_error(c, "dropout must be in [0, 1)");
    const char *d[] = {"input_size", "0", "hidden_size", "4", NULL};
    expect_init_error(d, "input_size and hidden_size");
    const char *e[] = {"input_size", "3", "hidden_size", "4", "weight_init", "nope", NULL};
    expect_init_error(e, "unknown weight_init 'nope'");

    const char *ok[] = {"input_size", "3", "hidden_size", "4", NULL};
    TestLayer *t = layer_make(&lstm_kind, ok);
    char err[LAYER_ERR];
    int ond;
    int64_t out[TENSOR_MAX_DIMS];
    assert_int_equal(lstm_kind.shape(&t->m, 2, (int64_t[]){2, 3}, &ond, out, err), -1);
    assert_non_null(strstr(err, "must be 3-d (batch, time, features)"));
    assert_int_equal(lstm_kind.shape(&t->m, 3, (int64_t[]){2, 5, 7}, &ond, out, err), -1);
    assert_non_null(strstr(err, "has 7 features, expected 3"));
    assert_int_equal(lstm_kind.shape(&t->m, 3, (int64_t[]){2, 0, 3}, &ond, out, err), -1);
    assert_non_null(strstr(err, "no time steps"));
    assert_int_equal(lstm_kind.shape(&t->m, 3, (int64_t[]){2, 5, 3}, &ond, out, err), 0);
    assert_int_equal(ond, 3);
    assert_int_equal(out[2], 4);
    /* backward before any forward */
    Tensor x, y, dy, dx;
    tensor_init(&x, 3, (int64_t[]){2, 5, 3});
    tensor_init(&y, 3, (int64_t[]){2, 5, 4});
    tensor_init(&dy, 3, (int64_t[]){2, 5, 4});
    tensor_init(&dx, 3, (int64_t[]){2, 5, 3});
    assert_int_equal(lstm_kind.backward(&t->m, &x, &y, &dy, &dx, err), -1);
    assert_non_null(strstr(err, "call forward"));
    tensor_release(&x);
    tensor_release(&y);
    tensor_release(&dy);
    tensor_release(&dx);
    layer_free(t);
}

/* gemm_packed against a double-precision loop: rows 1-9 (tiles of 4 and
 * their tails), columns 1-50 (panels of 24, masked vectors), depth 0-37,
 * B plain or transposed, beta 0 and 1, leading dimensions larger than the
 * rows. */
static void test_gemm_packed(void **state) {
    (void)state;
    if (!gemm_packed_usable()) skip();
    Rng rng;
    rng_seed(&rng, seed + 11);
    static const int64_t ms[] = {1, 3, 4, 5, 9}, ns[] = {1, 7, 8, 9, 23, 24, 25, 50}, ks[] = {0, 1, 5, 37};
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 8; b++)
            for (size_t d = 0; d < 4; d++)
                for (int tb = 0; tb < 2; tb++)
                    for (int beta = 0; beta < 2; beta++) {
                        const int64_t m = ms[a], n = ns[b], k = ks[d], lda = k + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
                        float *A = malloc(sizeof(float) * (size_t)(m * lda + 1));
                        float *B = malloc(sizeof(float) * (size_t)((tb ? n : k) * ldb + 1));
                        float *C = malloc(sizeof(float) * (size_t)(m * ldc));
                        float *C0 = malloc(sizeof(float) * (size_t)(m * ldc));
                        float *bp = malloc(sizeof(float) * (size_t)(gemm_packed_floats(k, n) + 1));
                        for (int64_t i = 0; i < m * lda; i++) A[i] = (float)(2 * rng_uniform(&rng) - 1);
                        for (int64_t i = 0; i < (tb ? n : k) * ldb; i++) B[i] = (float)(2 * rng_uniform(&rng) - 1);
                        for (int64_t i = 0; i < m * ldc; i++) C[i] = C0[i] = (float)(2 * rng_uniform(&rng) - 1);
                        gemm_pack_b(bp, B, tb, k, n, ldb);
                        gemm_packed(m, n, k, A, lda, bp, (float)beta, C, ldc);
                        for (int64_t i = 0; i < m; i++)
                            for (int64_t j = 0; j < ldc; j++) {
                                double want = C0[i * ldc + j]; /* columns past n are left alone */
                                if (j < n) {
                                    want = beta ? want : 0;
                                    for (int64_t q = 0; q < k; q++)
                                        want += (double)A[i * lda + q] * (tb ? B[j * ldb + q] : B[q * ldb + j]);
                                }
                                if (fabs(C[i * ldc + j] - want) > 1e-5 * (1 + fabs(want)))
                                    fail_msg("gemm_packed m %lld n %lld k %lld trans_b %d beta %d at (%lld, %lld): got %.9g, want %.9g",
                                             (long long)m, (long long)n, (long long)k, tb, beta, (long long)i, (long long)j,
                                             (double)C[i * ldc + j], want);
                            }
                        free(A), free(B), free(C), free(C0), free(bp);
                    }
}

/* The layer with the packed step products against the layer with
 * blas_sgemm: forward, input and parameter gradients of 3 layers whose 4H =
 * 120 spans 5 panels, batch 5 (a tile of 4 and one row). */
static void test_packed_matches_blas(void **state) {
    (void)state;
    if (!gemm_packed_usable()) skip();
    float *out[2][5];
    int64_t sizes[5];
    for (int on = 1; on >= 0; on--) {
        gemm_packed_set_enabled(on);
        rng_seed(&rng_global, seed + 12); /* the same weights both times */
        TestLayer *t = layer_make(&lstm_kind, (const char *[]){"input_size", "3", "hidden_size", "30", "num_layers", "3",
                                                             "recurrent_activation", "sigmoid", NULL});
        Rng rng;
        rng_seed(&rng, seed + 13);
        int64_t xs[3] = {5, 7, 3}, ys[3] = {5, 7, 30};
        Tensor x, y, dy, dx;
        tensor_init(&x, 3, xs), tensor_init(&y, 3, ys), tensor_init(&dy, 3, ys), tensor_init(&dx, 3, xs);
        for (int64_t i = 0; i < tensor_numel(&x); i++) tensor_data(&x)[i] = (float)(2 * rng_uniform(&rng) - 1);
        for (int64_t i = 0; i < tensor_numel(&dy); i++) tensor_data(&dy)[i] = (float)(2 * rng_uniform(&rng) - 1);
        char err[LAYER_ERR];
        if (lstm_kind.forward(&t->m, &x, &y, err) || lstm_kind.backward(&t->m, &x, &y, &dy, &dx, err)) fail_msg("%s", err);
        const Tensor *keep[5] = {&y, &dx, &t->grad[1], &t->grad[4], &t->grad[7]};
        for (int i = 0; i < 5; i++) {
            sizes[i] = tensor_numel(keep[i]);
            out[on][i] = malloc(sizeof(float) * (size_t)sizes[i]);
            memcpy(out[on][i], tensor_data(keep[i]), sizeof(float) * (size_t)sizes[i]);
        }
        tensor_release(&x), tensor_release(&y), tensor_release(&dy), tensor_release(&dx);
        layer_free(t);
    }
    gemm_packed_set_enabled(1);
    static const char *what[5] = {"y", "dx", "dW_hh layer 1", "dW_hh layer 2", "dW_hh layer 3"};
    for (int i = 0; i < 5; i++) {
        for (int64_t j = 0; j < sizes[i]; j++)
            if (fabs(out[1][i][j] - out[0][i][j]) > 1e-5 * (1 + fabs(out[0][i][j])))
                fail_msg("%s[%lld]: packed %.9g, blas %.9g", what[i], (long long)j, (double)out[1][i][j], (double)out[0][i][j]);
        free(out[0][i]), free(out[1][i]);
    }
}

/* ---- the table of cases ---- */

#define MAX_TESTS 96
static Case cases[MAX_TESTS];
static struct CMUnitTest tests[MAX_TESTS];
static int ncases, ntests;

static void add(const char *prefix, CMUnitTestFunction fn, Case cs) {
    Case *c = &cases[ncases++];
    *c = cs;
    snprintf(c->name, sizeof c->name, "%s: %d layer%s, %s, return_sequences=%s, batch %lld, time %lld%s", prefix,
             cs.layers, cs.layers > 1 ? "s" : "", cs.hard ? "hard_sigmoid" : "sigmoid", cs.return_seq ? "true" : "false",
             (long long)cs.batch, (long long)cs.time, cs.dropout > 0 ? ", dropout 0.3 (training)" : "");
    tests[ntests++] = (struct CMUnitTest){c->name, fn, NULL, NULL, c};
}

static void add_plain(const char *name, CMUnitTestFunction fn) {
    tests[ntests++] = (struct CMUnitTest){name, fn, NULL, NULL, NULL};
}

int main(void) {
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const char *s = getenv("DD_TEST_SEED");
    if (s && *s) seed = strtoull(s, NULL, 10);
    printf("# test_lstm: seed %llu (DD_TEST_SEED)\n", (unsigned long long)seed);

    static const int layer_counts[] = {1, 3};
    static const int64_t batches[] = {1, 5}, times[] = {1, 7};
    for (int l = 0; l < 2; l++)
        for (int hard = 0; hard < 2; hard++)
            for (int rs = 1; rs >= 0; rs--)
                for (int b = 0; b < 2; b++)
                    for (int tm = 0; tm < 2; tm++)
                        add("forward", test_forward,
                            (Case){"", layer_counts[l], hard, rs, batches[b], times[tm], 3, 5, 0});
    add("forward", test_forward, (Case){"", 3, 0, 1, 5, 7, 3, 5, 0.3});
    add_plain("gemm_packed against a double loop", test_gemm_packed);
    add_plain("the layer with packed step products equals it with blas_sgemm", test_packed_matches_blas);
    for (int l = 0; l < 2; l++)
        for (int hard = 0; hard < 2; hard++)
            for (int rs = 1; rs >= 0; rs--)
                add("backward", test_backward, (Case){"", layer_counts[l], hard, rs, 5, 7, 3, 5, 0});
    add("backward", test_backward, (Case){"", 3, 1, 0, 1, 1, 3, 5, 0});
    add("backward", test_backward, (Case){"", 3, 0, 1, 4, 6, 3, 5, 0.3});
    add("backward", test_backward, (Case){"", 2, 1, 0, 4, 6, 3, 5, 0.3});
    for (int hard = 0; hard < 2; hard++)
        for (int b = 0; b < 2; b++) add("step", test_step_matches_forward, (Case){"", 3, hard, 1, batches[b], 7, 3, 5, 0.3});
    add("step", test_step_matches_forward, (Case){"", 1, 1, 1, 5, 7, 3, 5, 0});
    add_plain("backward accumulates parameter gradients", test_backward_accumulates);
    add_plain("step: state, set_state, reset, batch change", test_step_state_roundtrip);
    add_plain("init: names, shapes, orthogonal, forget bias", test_init);
    add_plain("errors: options, shapes, backward before forward", test_errors);
    int failed = _cmocka_run_group_tests("lstm", tests, (size_t)ntests, NULL, NULL);
    workspace_free();
    return failed ? 1 : 0;
}

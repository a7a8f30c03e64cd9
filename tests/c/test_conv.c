/* test_conv.c: Conv2d, ConvTranspose2d, MaxPool2d and Upsample.
 *
 * Three kinds of evidence:
 *  - the fast paths (im2col + GEMM, tiled, pointwise; the direct stride-1
 *    kernels of conv_direct.c, and im2col + GEMM with those turned off; the
 *    2x2 pooling path) against the direct loops of the *_ref kernels, over
 *    many geometries;
 *    the reference geometry (padding, output size) is computed here from
 *    the TensorFlow / PyTorch rules, independently of the layers' code;
 *  - central finite differences of a weighted-sum loss L = sum(y * r)
 *    for the input and every parameter, through the LayerKind;
 *  - hand-computed cases: 'same' padding, ties and NaN in pooling, the
 *    adjoint identity <conv(x), g> = <x, conv_transpose(g)>, error texts.
 * Random data come from DD_TEST_SEED (default 1234), printed first. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conv_direct.h"
#include "im2col.h"
#include "layer.h"
#include "rng.h"
#include "tensor.h"

static uint64_t seed = 1234;
static Rng rng;

static void reseed(uint64_t salt) { rng_seed(&rng, seed * 1000003u + salt); }

static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)rng_uniform(&rng); }

static void fill_uniform(float *a, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) a[i] = uniform(lo, hi);
}

static float *alloc_floats(int64_t n) {
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    assert_non_null(p);
    return p;
}

/* Max |got - want| over max |want|: a relative error for the whole tensor,
 * so entries that are near zero by cancellation do not dominate. */
static void assert_close(const float *got, const float *want, int64_t n, double tol, const char *what,
                         const char *where) {
    double diff = 0, scale = 1e-6;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= diff)) { /* also catches NaN */
            diff = d;
            at = i;
        }
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    }
    if (!(diff / scale <= tol))
        fail_msg("%s: %s: relative error %.3g > %.3g at index %lld (got %.9g, want %.9g)", where, what, diff / scale,
                 tol, (long long)at, got[at], want[at]);
}

/* ---- layers built the way the binding builds them ---------------------- */

typedef struct TestLayer {
    Layer m;
    _Alignas(16) unsigned char cfg[512];
    Tensor value[LAYER_MAX_PARAMS], grad[LAYER_MAX_PARAMS];
} TestLayer;

static void opt_set(const LayerOption *o, OptValues *v, int i, const char *text) {
    char *end;
    double d = strtod(text, &end);
    int numeric = *text && *end == 0;
    v->is_string[i] = 0;
    if (o->type == OPT_BOOL) {
        v->num[i] = strcmp(text, "true") == 0;
    } else if (o->type == OPT_STRING || (o->type == OPT_INT_OR_STRING && !numeric)) {
        snprintf(v->str[i], sizeof v->str[i], "%s", text);
        v->is_string[i] = 1;
    } else {
        v->num[i] = d;
    }
}

/* opts: "key=value key=value ..."; the rest take the kind's defaults.
 * Returns kind->init's status; err receives its message. On success the
 * parameters are allocated and filled with uniform [-1, 1) values (not the
 * initialiser: a zero bias would hide bias bugs). */
static int layer_make(TestLayer *t, const LayerKind *kind, const char *opts, char *err) {
    memset(t, 0, sizeof *t);
    assert_true(kind->cfg_size <= sizeof t->cfg);
    OptValues v;
    memset(&v, 0, sizeof v);
    int n = 0;
    for (; kind->options[n].name; n++)
        if (kind->options[n].dflt) opt_set(&kind->options[n], &v, n, kind->options[n].dflt);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", opts);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        char *eq = strchr(tok, '=');
        assert_non_null(eq);
        *eq = 0;
        int i = 0;
        while (i < n && strcmp(kind->options[i].name, tok) != 0) i++;
        if (i == n) fail_msg("%s has no option '%s'", kind->name, tok);
        opt_set(&kind->options[i], &v, i, eq + 1);
    }
    t->m.cfg = t->cfg;
    t->m.training = 1;
    err[0] = 0;
    if (kind->init(&t->m, &v, err)) return -1;
    t->m.kind = kind;
    for (int i = 0; i < t->m.nparams; i++) {
        Param *p = &t->m.params[i];
        assert_int_equal(tensor_init(&t->value[i], p->ndim, p->shape), TENSOR_OK);
        assert_int_equal(tensor_init(&t->grad[i], p->ndim, p->shape), TENSOR_OK);
        p->value = &t->value[i];
        p->grad = &t->grad[i];
        fill_uniform(tensor_data(p->value), tensor_numel(p->value), -1, 1);
    }
    return 0;
}

static void layer_make_ok(TestLayer *t, const LayerKind *kind, const char *opts) {
    char err[LAYER_ERR];
    if (layer_make(t, kind, opts, err)) fail_msg("%s{%s}: %s", kind->name, opts, err);
}

static void layer_drop(TestLayer *t) {
    if (t->m.kind && t->m.kind->destroy) t->m.kind->destroy(&t->m);
    for (int i = 0; i < t->m.nparams; i++) {
        tensor_release(&t->value[i]);
        tensor_release(&t->grad[i]);
    }
}

static float *param_value(TestLayer *t, int i) { return i < t->m.nparams ? tensor_data(t->m.params[i].value) : NULL; }
static float *param_grad(TestLayer *t, int i) { return i < t->m.nparams ? tensor_data(t->m.params[i].grad) : NULL; }

static void zero_grads(TestLayer *t) {
    for (int i = 0; i < t->m.nparams; i++) tensor_fill(t->m.params[i].grad, 0);
}

/* y, allocated with the shape the layer reports for x. */
static void output_for(TestLayer *t, const Tensor *x, Tensor *y) {
    int ond;
    int64_t os[TENSOR_MAX_DIMS];
    char err[LAYER_ERR];
    if (t->m.kind->shape(&t->m, x->ndim, x->shape, &ond, os, err)) fail_msg("%s: shape: %s", t->m.kind->name, err);
    assert_int_equal(tensor_init(y, ond, os), TENSOR_OK);
}

static void run_forward(TestLayer *t, const Tensor *x, Tensor *y) {
    char err[LAYER_ERR];
    if (t->m.kind->forward(&t->m, x, y, err)) fail_msg("%s: forward: %s", t->m.kind->name, err);
}

static void run_backward(TestLayer *t, const Tensor *x, const Tensor *y, const Tensor *dy, Tensor *dx) {
    char err[LAYER_ERR];
    if (t->m.kind->backward(&t->m, x, y, dy, dx, err)) fail_msg("%s: backward: %s", t->m.kind->name, err);
}

static void tensor4(Tensor *t, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t s[4] = {a, b, c, d};
    assert_int_equal(tensor_init(t, 4, s), TENSOR_OK);
}

/* ---- geometry from the documented rules -------------------------------- */

typedef struct ConvCase {
    int n, cin, cout, h, w, kernel, stride, pad, dil, outpad, bias; /* pad -1: 'same' */
} ConvCase;

static void case_text(char *buf, size_t len, const char *kind, const ConvCase *cc) {
    char pad[16];
    if (cc->pad < 0) snprintf(pad, sizeof pad, "same");
    else snprintf(pad, sizeof pad, "%d", cc->pad);
    snprintf(buf, len, "%s in (%d,%d,%d,%d) out_channels %d kernel %d stride %d padding %s dilation %d output_padding %d bias %d",
             kind, cc->n, cc->cin, cc->h, cc->w, cc->cout, cc->kernel, cc->stride, pad, cc->dil, cc->outpad, cc->bias);
}

static void case_options(char *buf, size_t len, const ConvCase *cc, int transposed) {
    char pad[16];
    if (cc->pad < 0) snprintf(pad, sizeof pad, "same");
    else snprintf(pad, sizeof pad, "%d", cc->pad);
    int n = snprintf(buf, len, "in_channels=%d out_channels=%d kernel_size=%d stride=%d padding=%s dilation=%d bias=%s",
                     cc->cin, cc->cout, cc->kernel, cc->stride, pad, cc->dil, cc->bias ? "true" : "false");
    if (transposed) snprintf(buf + n, len - (size_t)n, " output_padding=%d", cc->outpad);
}

/* Conv2d: TensorFlow's 'same' (out = ceil(in / stride), the odd padding
 * pixel at the end) or PyTorch's symmetric integer padding. */
static void conv_dim_expected(int in, const ConvCase *cc, int64_t *out, int64_t *pb, int64_t *pe) {
    int extent = cc->dil * (cc->kernel - 1) + 1;
    if (cc->pad < 0) {
        int o = (in + cc->stride - 1) / cc->stride;
        int total = (o - 1) * cc->stride + extent - in;
        if (total < 0) total = 0;
        *out = o, *pb = total / 2, *pe = total - total / 2;
    } else {
        *out = (in + 2 * cc->pad - extent) / cc->stride + 1, *pb = *pe = cc->pad;
    }
}

static ConvShape conv2d_expected(const ConvCase *cc) {
    ConvShape s = {0};
    s.n = cc->n, s.c = cc->cin, s.h = cc->h, s.w = cc->w, s.k = cc->cout;
    s.kh = s.kw = cc->kernel, s.sh = s.sw = cc->stride, s.dh = s.dw = cc->dil;
    conv_dim_expected(cc->h, cc, &s.oh, &s.pt, &s.pb);
    conv_dim_expected(cc->w, cc, &s.ow, &s.pl, &s.pr);
    return s;
}

/* ConvTranspose2d: PyTorch's output size, or Keras' 'same' (out = in * stride,
 * padded like the 'same' convolution it is the gradient of:
 * total max(extent - stride, 0), the odd pixel at the end). */
static void convt_dim_expected(int in, const ConvCase *cc, int64_t *out, int64_t *pb, int64_t *pe) {
    int extent = cc->dil * (cc->kernel - 1) + 1;
    if (cc->pad < 0) {
        int total = extent - cc->stride > 0 ? extent - cc->stride : 0;
        *out = (int64_t)in * cc->stride, *pb = total / 2, *pe = total - total / 2;
    } else {
        *out = (int64_t)(in - 1) * cc->stride - 2 * cc->pad + extent + cc->outpad, *pb = *pe = cc->pad;
    }
}

/* The ConvShape of the convolution a ConvTranspose2d is the adjoint of:
 * its grid is our input, its image our output. */
static ConvShape convt_expected(const ConvCase *cc) {
    ConvShape s = {0};
    s.n = cc->n, s.k = cc->cin, s.oh = cc->h, s.ow = cc->w, s.c = cc->cout;
    s.kh = s.kw = cc->kernel, s.sh = s.sw = cc->stride, s.dh = s.dw = cc->dil;
    convt_dim_expected(cc->h, cc, &s.h, &s.pt, &s.pb);
    convt_dim_expected(cc->w, cc, &s.w, &s.pl, &s.pr);
    return s;
}

/* ---- fast path vs reference loops ------------------------------------- */

static const ConvCase conv_cases[] = {
    /* n cin cout h  w  k  s  pad dil op bias */
    {1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1},     /* 1x1 input, pointwise */
    {3, 4, 8, 7, 9, 1, 1, 0, 1, 0, 1},     /* pointwise fast path */
    {1, 3, 4, 7, 9, 1, 2, 0, 1, 0, 0},     /* 1x1 strided: im2col */
    {1, 3, 4, 7, 9, 1, 1, 1, 1, 0, 1},     /* 1x1 padded: im2col */
    {3, 1, 4, 7, 9, 3, 1, -1, 1, 0, 1},    /* the autoencoder's layer 1 */
    {1, 8, 8, 12, 20, 3, 1, -1, 1, 0, 1},
    {1, 3, 4, 1, 1, 3, 1, -1, 1, 0, 1},    /* 1x1 input, 'same' */
    {3, 3, 4, 7, 9, 2, 1, -1, 1, 0, 1},    /* even kernel 'same': pad 0 top/left, 1 bottom/right */
    {1, 4, 3, 8, 9, 4, 2, -1, 1, 0, 1},    /* stride 2 'same', even kernel */
    {3, 3, 4, 7, 9, 3, 2, -1, 1, 0, 1},    /* stride 2 'same' on odd sizes */
    {1, 3, 8, 9, 7, 5, 2, -1, 1, 0, 0},
    {1, 3, 4, 9, 7, 3, 3, -1, 1, 0, 1},    /* stride 3 'same' */
    {1, 3, 4, 7, 9, 2, 3, -1, 1, 0, 1},    /* kernel < stride: skipped pixels */
    {3, 3, 4, 7, 9, 3, 1, 0, 1, 0, 1},
    {1, 4, 3, 7, 9, 3, 1, 1, 1, 0, 1},
    {1, 3, 4, 7, 9, 3, 1, 2, 1, 0, 1},
    {3, 3, 1, 7, 9, 5, 1, 2, 1, 0, 1},
    {1, 3, 4, 8, 8, 2, 2, 0, 1, 0, 1},
    {1, 3, 4, 9, 11, 3, 2, 1, 1, 0, 1},
    {1, 3, 4, 10, 9, 5, 3, 2, 1, 0, 1},
    {1, 3, 4, 9, 11, 3, 1, 2, 2, 0, 1},    /* dilation 2 */
    {3, 3, 4, 9, 11, 3, 1, -1, 2, 0, 1},   /* dilation 2 'same' */
    {1, 3, 4, 9, 11, 3, 2, 1, 2, 0, 0},    /* dilation 2, stride 2 */
    {1, 4, 4, 9, 11, 2, 2, -1, 2, 0, 1},
    {1, 2, 3, 2, 3, 5, 1, 2, 1, 0, 1},     /* kernel larger than the image */
    {1, 8, 4, 15, 25, 3, 1, -1, 1, 0, 1},
};

static void conv2d_case(const ConvCase *cc) {
    char where[256], opts[256];
    case_text(where, sizeof where, "Conv2d", cc);
    case_options(opts, sizeof opts, cc, 0);
    ConvShape s = conv2d_expected(cc);
    TestLayer t;
    layer_make_ok(&t, &conv2d_kind, opts);
    Tensor x, y, dy, dx;
    tensor4(&x, cc->n, cc->cin, cc->h, cc->w);
    fill_uniform(tensor_data(&x), tensor_numel(&x), -1, 1);
    output_for(&t, &x, &y);
    if (y.shape[2] != s.oh || y.shape[3] != s.ow)
        fail_msg("%s: output %lldx%lld, expected %lldx%lld", where, (long long)y.shape[2], (long long)y.shape[3],
                 (long long)s.oh, (long long)s.ow);
    fill_uniform(tensor_data(&y), tensor_numel(&y), -5, 5); /* must be overwritten */
    run_forward(&t, &x, &y);
    int64_t ny = tensor_numel(&y), nx = tensor_numel(&x), nw = tensor_numel(&t.value[0]);
    float *want = alloc_floats(ny);
    conv2d_forward_ref(want, tensor_data(&x), param_value(&t, 0), cc->bias ? param_value(&t, 1) : NULL, &s);
    assert_close(tensor_data(&y), want, ny, 1e-4, "forward", where);

    tensor4(&dy, y.shape[0], y.shape[1], y.shape[2], y.shape[3]);
    fill_uniform(tensor_data(&dy), ny, -1, 1);
    tensor4(&dx, cc->n, cc->cin, cc->h, cc->w);
    fill_uniform(tensor_data(&dx), nx, -5, 5); /* must be overwritten */
    /* gradients accumulate: start from a known non-zero value */
    float *dw0 = alloc_floats(nw), *db0 = alloc_floats(cc->cout);
    fill_uniform(dw0, nw, -1, 1);
    fill_uniform(db0, cc->cout, -1, 1);
    memcpy(param_grad(&t, 0), dw0, (size_t)nw * sizeof(float));
    if (cc->bias) memcpy(param_grad(&t, 1), db0, (size_t)cc->cout * sizeof(float));
    run_backward(&t, &x, &y, &dy, &dx);
    float *rdx = alloc_floats(nx);
    conv2d_backward_ref(rdx, dw0, db0, tensor_data(&dy), tensor_data(&x), param_value(&t, 0), &s);
    assert_close(tensor_data(&dx), rdx, nx, 1e-4, "dx", where);
    assert_close(param_grad(&t, 0), dw0, nw, 1e-4, "dweight", where);
    if (cc->bias) assert_close(param_grad(&t, 1), db0, cc->cout, 1e-4, "dbias", where);
    free(want), free(dw0), free(db0), free(rdx);
    tensor_release(&x), tensor_release(&y), tensor_release(&dy), tensor_release(&dx);
    layer_drop(&t);
}

static void test_conv2d_matches_reference(void **state) {
    (void)state;
    reseed(1);
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) conv2d_case(&conv_cases[i]);
}

static const ConvCase convt_cases[] = {
    /* n cin cout h  w  k  s  pad dil op bias */
    {1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1},
    {3, 8, 4, 7, 9, 1, 1, 0, 1, 0, 1},     /* pointwise fast path */
    {1, 3, 4, 7, 9, 1, 2, 0, 1, 0, 1},
    {1, 3, 4, 7, 9, 1, 2, 0, 1, 1, 1},     /* output_padding: a row and column nothing reaches */
    {3, 4, 4, 7, 9, 3, 1, -1, 1, 0, 1},    /* the decoder's layers: 'same', stride 1 */
    {1, 4, 32, 15, 25, 3, 1, -1, 1, 0, 1},
    {1, 8, 1, 12, 20, 3, 1, -1, 1, 0, 1},
    {1, 3, 4, 1, 1, 3, 1, -1, 1, 0, 1},
    {3, 3, 4, 7, 9, 3, 2, -1, 1, 0, 1},    /* 'same' stride 2: asymmetric padding */
    {1, 3, 4, 7, 9, 2, 1, -1, 1, 0, 1},    /* even kernel 'same' */
    {1, 3, 4, 7, 9, 4, 2, -1, 1, 0, 1},
    {1, 3, 4, 7, 9, 2, 3, -1, 1, 0, 1},    /* kernel < stride 'same': output still in*stride */
    {1, 3, 4, 7, 9, 5, 3, -1, 1, 0, 0},
    {3, 3, 4, 7, 9, 3, 1, 0, 1, 0, 1},
    {1, 3, 4, 7, 9, 3, 1, 1, 1, 0, 1},
    {1, 3, 4, 7, 9, 3, 2, 1, 1, 1, 1},     /* output_padding 1 */
    {1, 3, 4, 7, 9, 3, 2, 0, 1, 1, 1},
    {1, 4, 3, 7, 9, 5, 3, 2, 1, 2, 1},
    {1, 3, 4, 7, 9, 2, 2, 0, 1, 0, 1},
    {1, 3, 4, 7, 9, 3, 1, 2, 2, 0, 1},     /* dilation 2 */
    {1, 3, 4, 7, 9, 3, 1, 0, 2, 1, 1},     /* output_padding < dilation, stride 1 */
    {3, 3, 4, 7, 9, 3, 2, -1, 2, 0, 1},
    {1, 3, 4, 9, 11, 3, 2, 1, 2, 1, 0},
};

static void convt_case(const ConvCase *cc) {
    char where[256], opts[256];
    case_text(where, sizeof where, "ConvTranspose2d", cc);
    case_options(opts, sizeof opts, cc, 1);
    ConvShape s = convt_expected(cc);
    TestLayer t;
    layer_make_ok(&t, &conv_transpose2d_kind, opts);
    Tensor x, y, dy, dx;
    tensor4(&x, cc->n, cc->cin, cc->h, cc->w);
    fill_uniform(tensor_data(&x), tensor_numel(&x), -1, 1);
    output_for(&t, &x, &y);
    if (y.shape[1] != cc->cout || y.shape[2] != s.h || y.shape[3] != s.w)
        fail_msg("%s: output (%lld,%lld,%lld), expected (%d,%lld,%lld)", where, (long long)y.shape[1],
                 (long long)y.shape[2], (long long)y.shape[3], cc->cout, (long long)s.h, (long long)s.w);
    fill_uniform(tensor_data(&y), tensor_numel(&y), -5, 5); /* must be overwritten */
    run_forward(&t, &x, &y);
    int64_t ny = tensor_numel(&y), nx = tensor_numel(&x), nw = tensor_numel(&t.value[0]);
    float *want = alloc_floats(ny);
    conv_transpose2d_forward_ref(want, tensor_data(&x), param_value(&t, 0), cc->bias ? param_value(&t, 1) : NULL, &s);
    assert_close(tensor_data(&y), want, ny, 1e-4, "forward", where);

    tensor4(&dy, y.shape[0], y.shape[1], y.shape[2], y.shape[3]);
    fill_uniform(tensor_data(&dy), ny, -1, 1);
    tensor4(&dx, cc->n, cc->cin, cc->h, cc->w);
    fill_uniform(tensor_data(&dx), nx, -5, 5);
    float *dw0 = alloc_floats(nw), *db0 = alloc_floats(cc->cout);
    fill_uniform(dw0, nw, -1, 1);
    fill_uniform(db0, cc->cout, -1, 1);
    memcpy(param_grad(&t, 0), dw0, (size_t)nw * sizeof(float));
    if (cc->bias) memcpy(param_grad(&t, 1), db0, (size_t)cc->cout * sizeof(float));
    run_backward(&t, &x, &y, &dy, &dx);
    float *rdx = alloc_floats(nx);
    conv_transpose2d_backward_ref(rdx, dw0, db0, tensor_data(&dy), tensor_data(&x), param_value(&t, 0), &s);
    assert_close(tensor_data(&dx), rdx, nx, 1e-4, "dx", where);
    assert_close(param_grad(&t, 0), dw0, nw, 1e-4, "dweight", where);
    if (cc->bias) assert_close(param_grad(&t, 1), db0, cc->cout, 1e-4, "dbias", where);
    free(want), free(dw0), free(db0), free(rdx);
    tensor_release(&x), tensor_release(&y), tensor_release(&dy), tensor_release(&dx);
    layer_drop(&t);
}

static void test_conv_transpose2d_matches_reference(void **state) {
    (void)state;
    reseed(2);
    for (size_t i = 0; i < sizeof convt_cases / sizeof convt_cases[0]; i++) convt_case(&convt_cases[i]);
}

/* Images whose columns span several im2col bands (the band is about 1M
 * floats), so the tiling of rows is exercised, with stride and padding
 * making bands overlap in the input. */
static void test_conv_tiled_bands(void **state) {
    (void)state;
    reseed(3);
    const ConvCase big[] = {
        {1, 64, 4, 70, 100, 3, 1, -1, 1, 0, 1}, /* 64*9*100 floats a row: bands of 18 rows */
        {2, 64, 3, 71, 99, 5, 2, 2, 1, 0, 1},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        ConvShape s = conv2d_expected(&big[i]);
        if (conv_tile_rows(&s) >= s.oh) fail_msg("case %zu is not tiled: %lld rows a band", i, (long long)conv_tile_rows(&s));
        conv2d_case(&big[i]);
    }
    const ConvCase bigt[] = {{1, 4, 64, 70, 100, 3, 1, -1, 1, 0, 1}, {1, 3, 64, 70, 100, 3, 2, -1, 1, 0, 1}};
    for (size_t i = 0; i < sizeof bigt / sizeof bigt[0]; i++) {
        ConvShape s = convt_expected(&bigt[i]);
        if (conv_tile_rows(&s) >= s.oh) fail_msg("transposed case %zu is not tiled", i);
        convt_case(&bigt[i]);
    }
}

/* The direct stride-1 kernels (conv_direct.c) where they apply, and the
 * im2col + GEMM path on the same shapes with them turned off: every tail of
 * the forward's 24-column tile and 8-column vector (OW 1..49), kernels 1-7
 * (the weight gradient's taps go in chunks of 3), one input channel,
 * 4..12 output channels, asymmetric 'same' padding, 'valid', a kernel
 * larger than the image, and transposed convolutions (their input gradient
 * and weight gradient, and their forward as the flipped convolution). */
static void test_conv_direct_matches_reference(void **state) {
    (void)state;
    reseed(9);
    const ConvCase cases[] = {
        /* n cin cout h  w  k  s  pad dil op bias */
        {2, 1, 4, 5, 1, 3, 1, -1, 1, 0, 1},
        {1, 3, 8, 6, 7, 3, 1, -1, 1, 0, 1},
        {1, 2, 4, 3, 8, 3, 1, -1, 1, 0, 0},
        {1, 2, 4, 4, 9, 3, 1, -1, 1, 0, 1},
        {1, 5, 12, 5, 23, 3, 1, -1, 1, 0, 1},
        {1, 2, 4, 4, 24, 3, 1, -1, 1, 0, 1},
        {1, 2, 4, 4, 25, 3, 1, -1, 1, 0, 1},
        {1, 3, 8, 3, 49, 3, 1, -1, 1, 0, 1},
        {1, 3, 4, 6, 13, 5, 1, 2, 1, 0, 1},
        {1, 3, 4, 6, 13, 4, 1, -1, 1, 0, 1},
        {1, 3, 4, 6, 13, 2, 1, 0, 1, 0, 1},
        {1, 3, 4, 6, 13, 1, 1, 1, 1, 0, 1},
        {1, 3, 4, 9, 13, 7, 1, 1, 1, 0, 1},
        {2, 4, 8, 9, 30, 3, 1, 0, 1, 0, 1},
        {1, 2, 4, 2, 3, 5, 1, 2, 1, 0, 1},
        {3, 32, 32, 15, 25, 3, 1, -1, 1, 0, 1}, /* the autoencoder's layers, at 1/8 */
    };
    const ConvCase tcases[] = {
        {1, 8, 8, 6, 13, 3, 1, -1, 1, 0, 1},
        {2, 4, 4, 5, 30, 3, 1, 1, 1, 0, 1},
        {1, 4, 8, 5, 9, 3, 1, 0, 1, 0, 1},
        {1, 8, 1, 12, 20, 3, 1, -1, 1, 0, 1}, /* the decoder's output layer */
        {1, 4, 4, 5, 9, 5, 1, 1, 1, 0, 0},
        {2, 32, 32, 15, 25, 3, 1, -1, 1, 0, 1},
    };
    ConvShape probe = conv2d_expected(&cases[1]);
    if (!conv_direct_usable(&probe)) {
        print_message("# the CPU has no AVX2 + FMA: only the im2col path is tested here\n");
    }
    for (int on = 1; on >= 0; on--) {
        conv_direct_set_enabled(on);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) conv2d_case(&cases[i]);
        for (size_t i = 0; i < sizeof tcases / sizeof tcases[0]; i++) convt_case(&tcases[i]);
    }
    conv_direct_set_enabled(1);
    /* the shapes above do take the direct kernels: stride 1 and K % 4 == 0 */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ConvShape s = conv2d_expected(&cases[i]);
        if (conv_direct_usable(&probe) && !conv_direct_usable(&s)) fail_msg("case %zu does not take the direct path", i);
    }
    ConvShape strided = conv2d_expected(&conv_cases[9]), odd = conv2d_expected(&conv_cases[14]);
    if (conv_direct_usable(&strided) || conv_direct_usable(&odd)) fail_msg("stride 2, or K %% 4 != 0, took the direct path");
    /* a padded image over 16M floats keeps im2col's bands of rows */
    ConvShape huge = conv2d_expected(&(ConvCase){1, 64, 8, 600, 600, 3, 1, -1, 1, 0, 1});
    if (conv_direct_usable(&huge)) fail_msg("a 64x600x600 image took the direct path (%lld floats of padded image)",
                                            (long long)conv_direct_pad_floats(&huge));
}

/* The autoencoder's 32 -> 32 3x3 layer at full size, 120x200 (the direct
 * kernels' multi-tile rows and bands of 8 rows), the direct path against
 * im2col + GEMM: forward, input and weight gradients. */
static void test_conv_direct_full_size(void **state) {
    (void)state;
    reseed(10);
    const char *opts = "in_channels=32 out_channels=32 kernel_size=3 padding=same activation=relu";
    TestLayer a, b;
    layer_make_ok(&a, &conv2d_kind, opts);
    layer_make_ok(&b, &conv2d_kind, opts);
    for (int i = 0; i < a.m.nparams; i++)
        memcpy(param_value(&b, i), param_value(&a, i), (size_t)tensor_numel(a.m.params[i].value) * sizeof(float));
    fill_uniform(param_value(&a, 1), 32, -0.1f, 0.1f);
    memcpy(param_value(&b, 1), param_value(&a, 1), 32 * sizeof(float));
    zero_grads(&a), zero_grads(&b);
    Tensor x, ya, yb, dy, dxa, dxb;
    tensor4(&x, 2, 32, 120, 200);
    fill_uniform(tensor_data(&x), tensor_numel(&x), -1, 1);
    output_for(&a, &x, &ya);
    output_for(&b, &x, &yb);
    conv_direct_set_enabled(1);
    run_forward(&a, &x, &ya);
    conv_direct_set_enabled(0);
    run_forward(&b, &x, &yb);
    int64_t ny = tensor_numel(&ya);
    assert_close(tensor_data(&ya), tensor_data(&yb), ny, 1e-5, "forward", "direct vs im2col");
    tensor4(&dy, 2, 32, 120, 200);
    fill_uniform(tensor_data(&dy), ny, -1, 1);
    tensor4(&dxa, 2, 32, 120, 200);
    tensor4(&dxb, 2, 32, 120, 200);
    conv_direct_set_enabled(1);
    run_backward(&a, &x, &ya, &dy, &dxa);
    conv_direct_set_enabled(0);
    run_backward(&b, &x, &yb, &dy, &dxb);
    conv_direct_set_enabled(1);
    assert_close(tensor_data(&dxa), tensor_data(&dxb), tensor_numel(&x), 1e-5, "dx", "direct vs im2col");
    assert_close(param_grad(&a, 0), param_grad(&b, 0), 32 * 32 * 9, 1e-5, "dweight", "direct vs im2col");
    assert_close(param_grad(&a, 1), param_grad(&b, 1), 32, 1e-5, "dbias", "direct vs im2col");
    tensor_release(&x), tensor_release(&ya), tensor_release(&yb), tensor_release(&dy);
    tensor_release(&dxa), tensor_release(&dxb);
    layer_drop(&a), layer_drop(&b);
}

/* ---- hand-computed cases ----------------------------------------------- */

/* 3x3 image 1..9, all-ones kernels, no bias. */
static void test_conv2d_same_padding_by_hand(void **state) {
    (void)state;
    TestLayer t;
    Tensor x, y;
    tensor4(&x, 1, 1, 3, 3);
    for (int i = 0; i < 9; i++) tensor_data(&x)[i] = (float)(i + 1);

    /* k=3 'same': pad 1 all round */
    layer_make_ok(&t, &conv2d_kind, "in_channels=1 out_channels=1 kernel_size=3 bias=false");
    tensor_fill(t.m.params[0].value, 1);
    output_for(&t, &x, &y);
    run_forward(&t, &x, &y);
    const float want3[9] = {12, 21, 16, 27, 45, 33, 24, 39, 28};
    assert_close(tensor_data(&y), want3, 9, 0, "k=3 same", "Conv2d");
    tensor_release(&y);
    layer_drop(&t);

    /* k=2 'same' (TensorFlow = PyTorch for stride 1): the padding goes
     * bottom/right, so y[0][0] = 1+2+4+5 and y[2][2] = 9 alone */
    layer_make_ok(&t, &conv2d_kind, "in_channels=1 out_channels=1 kernel_size=2 bias=false");
    tensor_fill(t.m.params[0].value, 1);
    output_for(&t, &x, &y);
    run_forward(&t, &x, &y);
    const float want2[9] = {12, 16, 9, 24, 28, 15, 15, 17, 9};
    assert_close(tensor_data(&y), want2, 9, 0, "k=2 same", "Conv2d");
    tensor_release(&y);
    layer_drop(&t);

    /* k=3 stride 2 'same' on 3x3: out 2x2, total padding 2 -> 1 each side */
    layer_make_ok(&t, &conv2d_kind, "in_channels=1 out_channels=1 kernel_size=3 stride=2 bias=false");
    tensor_fill(t.m.params[0].value, 1);
    output_for(&t, &x, &y);
    assert_int_equal(y.shape[2], 2);
    assert_int_equal(y.shape[3], 2);
    run_forward(&t, &x, &y);
    const float wants2[4] = {12, 16, 24, 28};
    assert_close(tensor_data(&y), wants2, 4, 0, "k=3 stride 2 same", "Conv2d");
    tensor_release(&y);
    layer_drop(&t);

    /* k=2 stride 2 'same' on 3x3: out 2x2, total 1 -> 0 top, 1 bottom */
    layer_make_ok(&t, &conv2d_kind, "in_channels=1 out_channels=1 kernel_size=2 stride=2 bias=false");
    tensor_fill(t.m.params[0].value, 1);
    output_for(&t, &x, &y);
    run_forward(&t, &x, &y);
    const float wantk2s2[4] = {12, 9, 15, 9};
    assert_close(tensor_data(&y), wantk2s2, 4, 0, "k=2 stride 2 same", "Conv2d");
    tensor_release(&y);
    layer_drop(&t);
    tensor_release(&x);
}

/* ConvTranspose2d on a 2x2 input 1..4 with all-ones 3x3 kernels. */
static void test_conv_transpose2d_by_hand(void **state) {
    (void)state;
    TestLayer t;
    Tensor x, y;
    tensor4(&x, 1, 1, 2, 2);
    for (int i = 0; i < 4; i++) tensor_data(&x)[i] = (float)(i + 1);

    /* stride 2, padding 0: output (2-1)*2 + 3 = 5; each input pixel stamps a
     * 3x3 block at 2*position, overlapping on the middle row and column */
    layer_make_ok(&t, &conv_transpose2d_kind, "in_channels=1 out_channels=1 kernel_size=3 stride=2 bias=false");
    tensor_fill(t.m.params[0].value, 1);
    output_for(&t, &x, &y);
    assert_int_equal(y.shape[2], 5);
    run_forward(&t, &x, &y);
    const float want[25] = {1, 1, 3, 2, 2, 1, 1, 3, 2, 2, 4, 4, 10, 6, 6, 3, 3, 7, 4, 4, 3, 3, 7, 4, 4};
    assert_close(tensor_data(&y), want, 25, 0, "stride 2", "ConvTranspose2d");
    tensor_release(&y);
    layer_drop(&t);

    /* 'same', stride 2 (Keras): output 4x4 = the 5x5 above without its last
     * row and column (padding total 1: 0 at the top, 1 at the bottom) */
    layer_make_ok(&t, &conv_transpose2d_kind,
                  "in_channels=1 out_channels=1 kernel_size=3 stride=2 padding=same bias=false");
    tensor_fill(t.m.params[0].value, 1);
    output_for(&t, &x, &y);
    assert_int_equal(y.shape[2], 4);
    assert_int_equal(y.shape[3], 4);
    run_forward(&t, &x, &y);
    const float wsame[16] = {1, 1, 3, 2, 1, 1, 3, 2, 4, 4, 10, 6, 3, 3, 7, 4};
    assert_close(tensor_data(&y), wsame, 16, 0, "stride 2 same", "ConvTranspose2d");
    tensor_release(&y);
    layer_drop(&t);

    /* 'same', stride 1, k 3: output = input, pad 1 each side: y = the
     * 3x3 all-ones correlation of x, i.e. every output is sum(x) = 10 */
    layer_make_ok(&t, &conv_transpose2d_kind, "in_channels=1 out_channels=1 kernel_size=3 padding=same bias=false");
    tensor_fill(t.m.params[0].value, 1);
    output_for(&t, &x, &y);
    assert_int_equal(y.shape[2], 2);
    run_forward(&t, &x, &y);
    const float w1[4] = {10, 10, 10, 10};
    assert_close(tensor_data(&y), w1, 4, 0, "stride 1 same", "ConvTranspose2d");
    tensor_release(&y);
    layer_drop(&t);

    /* output_padding 1 with stride 2: 6x6, last row and column untouched (bias) */
    layer_make_ok(&t, &conv_transpose2d_kind, "in_channels=1 out_channels=1 kernel_size=3 stride=2 output_padding=1");
    tensor_fill(t.m.params[0].value, 1);
    tensor_fill(t.m.params[1].value, 0.5f);
    output_for(&t, &x, &y);
    assert_int_equal(y.shape[2], 6);
    run_forward(&t, &x, &y);
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < 6; c++) {
            float v = tensor_data(&y)[r * 6 + c], e = r < 5 && c < 5 ? want[r * 5 + c] + 0.5f : 0.5f;
            if (v != e) fail_msg("output_padding: y[%d][%d] = %g, want %g", r, c, v, e);
        }
    tensor_release(&y);
    layer_drop(&t);
    tensor_release(&x);
}

/* The dot-product test: ConvTranspose2d is the adjoint of Conv2d with the
 * same weights, <conv(x), g> = <x, conv_transpose(g)>, for every geometry. */
static void test_conv_transpose_is_adjoint(void **state) {
    (void)state;
    reseed(4);
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) {
        ConvShape s = conv2d_expected(&conv_cases[i]);
        int64_t nx = s.n * s.c * s.h * s.w, ny = s.n * s.k * s.oh * s.ow, nw = s.k * s.c * s.kh * s.kw;
        float *x = alloc_floats(nx), *g = alloc_floats(ny), *w = alloc_floats(nw), *y = alloc_floats(ny),
              *xt = alloc_floats(nx), *ws = alloc_floats(conv_workspace_floats(&s, 0));
        fill_uniform(x, nx, -1, 1), fill_uniform(g, ny, -1, 1), fill_uniform(w, nw, -1, 1);
        conv2d_forward(y, x, w, NULL, ACT_LINEAR, ws, &s);
        conv_transpose2d_forward(xt, g, w, NULL, ACT_LINEAR, ws, &s);
        double a = 0, b = 0, scale = 0;
        for (int64_t j = 0; j < ny; j++) a += (double)y[j] * g[j], scale += fabs((double)y[j] * g[j]);
        for (int64_t j = 0; j < nx; j++) b += (double)x[j] * xt[j];
        if (fabs(a - b) > 1e-5 * (scale + 1)) fail_msg("case %zu: <conv(x), g> = %.9g, <x, convT(g)> = %.9g", i, a, b);
        free(x), free(g), free(w), free(y), free(xt), free(ws);
    }
}

/* ---- fused activations ---------------------------------------------------
 * A layer with activation=f must equal the same layer without it followed by
 * f, forward and backward; f and f' are written out here from their
 * definitions (in double), not taken from the library. */

static double act_ref(const char *a, double z) {
    if (strcmp(a, "relu") == 0) return z > 0 ? z : 0;
    if (strcmp(a, "sigmoid") == 0) return 1 / (1 + exp(-z));
    if (strcmp(a, "tanh") == 0) return tanh(z);
    double v = 0.2 * z + 0.5; /* hard_sigmoid */
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

static double act_ref_grad(const char *a, double z) {
    if (strcmp(a, "relu") == 0) return z > 0;
    if (strcmp(a, "sigmoid") == 0) return act_ref(a, z) * (1 - act_ref(a, z));
    if (strcmp(a, "tanh") == 0) return 1 - tanh(z) * tanh(z);
    double v = 0.2 * z + 0.5;
    return v > 0 && v < 1 ? 0.2 : 0;
}

static void fused_case(const LayerKind *kind, const char *base, const char *act, const int64_t *xs, int xnd) {
    char where[256], opts[320];
    snprintf(where, sizeof where, "%s{%s activation=%s}", kind->name, base, act);
    snprintf(opts, sizeof opts, "%s activation=%s", base, act);
    TestLayer plain, fused;
    layer_make_ok(&plain, kind, base);
    layer_make_ok(&fused, kind, opts);
    for (int i = 0; i < plain.m.nparams; i++) {
        memcpy(param_value(&fused, i), param_value(&plain, i), (size_t)tensor_numel(plain.m.params[i].value) * sizeof(float));
        zero_grads(&plain), zero_grads(&fused);
    }
    Tensor x, z, y, dy, dz, dx0, dx1;
    assert_int_equal(tensor_init(&x, xnd, xs), TENSOR_OK);
    fill_uniform(tensor_data(&x), tensor_numel(&x), -1, 1);
    output_for(&plain, &x, &z);
    output_for(&fused, &x, &y);
    run_forward(&plain, &x, &z);
    run_forward(&fused, &x, &y);
    int64_t n = tensor_numel(&y);
    float *want = alloc_floats(n);
    for (int64_t i = 0; i < n; i++) want[i] = (float)act_ref(act, tensor_data(&z)[i]);
    assert_close(tensor_data(&y), want, n, 1e-5, "forward", where);

    assert_int_equal(tensor_init(&dy, y.ndim, y.shape), TENSOR_OK);
    assert_int_equal(tensor_init(&dz, y.ndim, y.shape), TENSOR_OK);
    fill_uniform(tensor_data(&dy), n, -1, 1);
    for (int64_t i = 0; i < n; i++) tensor_data(&dz)[i] = (float)(tensor_data(&dy)[i] * act_ref_grad(act, tensor_data(&z)[i]));
    assert_int_equal(tensor_init(&dx0, x.ndim, x.shape), TENSOR_OK);
    assert_int_equal(tensor_init(&dx1, x.ndim, x.shape), TENSOR_OK);
    run_backward(&plain, &x, &z, &dz, &dx0);
    run_backward(&fused, &x, &y, &dy, &dx1);
    assert_close(tensor_data(&dx1), tensor_data(&dx0), tensor_numel(&x), 1e-5, "dx", where);
    for (int i = 0; i < plain.m.nparams; i++)
        assert_close(param_grad(&fused, i), param_grad(&plain, i), tensor_numel(plain.m.params[i].grad), 1e-5,
                     plain.m.params[i].name, where);
    free(want);
    tensor_release(&x), tensor_release(&z), tensor_release(&y), tensor_release(&dy), tensor_release(&dz);
    tensor_release(&dx0), tensor_release(&dx1);
    layer_drop(&plain), layer_drop(&fused);
}

static void test_fused_activation_matches_layer_then_activation(void **state) {
    (void)state;
    reseed(7);
    const char *acts[] = {"relu", "sigmoid", "tanh", "hard_sigmoid"};
    /* two images of several bands (conv_tile_rows), so per-band and per-image application both show */
    const int64_t img[4] = {2, 8, 70, 150}, small[4] = {3, 4, 7, 9}, rows[3] = {2, 5, 6};
    for (size_t a = 0; a < 4; a++) {
        fused_case(&conv2d_kind, "in_channels=8 out_channels=6 kernel_size=3 padding=same", acts[a], img, 4);
        fused_case(&conv2d_kind, "in_channels=8 out_channels=8 kernel_size=3 padding=same", acts[a], img, 4); /* direct */
        fused_case(&conv2d_kind, "in_channels=4 out_channels=5 kernel_size=1 padding=0", acts[a], small, 4);
        fused_case(&conv_transpose2d_kind, "in_channels=8 out_channels=6 kernel_size=3 padding=same", acts[a], img, 4);
        fused_case(&conv_transpose2d_kind, "in_channels=8 out_channels=8 kernel_size=3 padding=same", acts[a], img, 4);
        fused_case(&conv_transpose2d_kind, "in_channels=4 out_channels=3 kernel_size=3 stride=2 padding=1", acts[a],
                   small, 4);
        fused_case(&linear_kind, "in_features=6 out_features=4", acts[a], rows, 3);
    }
}

static void test_fused_activation_unknown(void **state) {
    (void)state;
    TestLayer t;
    char err[LAYER_ERR];
    assert_int_equal(layer_make(&t, &conv2d_kind, "in_channels=1 out_channels=1 activation=softmax", err), -1);
    if (!strstr(err, "unknown activation 'softmax'") || !strstr(err, "'relu'")) fail_msg("message: %s", err);
    layer_drop(&t);
}

/* ---- finite differences ------------------------------------------------- */

/* L = sum(y * r) in double from the layer's own (fast, float) forward. */
static double weighted_loss(TestLayer *t, const Tensor *x, Tensor *y, const float *r) {
    run_forward(t, x, y);
    double l = 0;
    const float *yd = tensor_data(y);
    for (int64_t i = 0, n = tensor_numel(y); i < n; i++) l += (double)yd[i] * r[i];
    return l;
}

/* Central differences with eps 1e-2 against backward, for x and every
 * parameter. The convolutions are linear in each of x, w, b (and pooling
 * and upsampling are piecewise linear, with inputs spaced further apart than
 * eps), so the differences have no truncation error: what is left is float
 * rounding of y (about 1e-7 relative over a few hundred terms) divided by
 * 2 eps, around 1e-4 absolute for these sizes. The tolerance, 1e-2 of
 * max(1, |gradient|), leaves a wide margin while a wrong tap or a missing
 * term (an error of order 1) still fails. */
static void gradcheck(TestLayer *t, Tensor *x, const char *where) {
    const double eps = 1e-2, tol = 1e-2;
    Tensor y, dy, dx;
    output_for(t, x, &y);
    int64_t ny = tensor_numel(&y);
    float *r = alloc_floats(ny);
    fill_uniform(r, ny, -1, 1);
    tensor4(&dy, y.shape[0], y.shape[1], y.shape[2], y.shape[3]);
    memcpy(tensor_data(&dy), r, (size_t)ny * sizeof *r);
    tensor4(&dx, x->shape[0], x->shape[1], x->shape[2], x->shape[3]);
    zero_grads(t);
    fill_uniform(tensor_data(&dx), tensor_numel(&dx), -5, 5); /* outputs must be overwritten */
    fill_uniform(tensor_data(&y), ny, -5, 5);
    run_forward(t, x, &y);
    run_backward(t, x, &y, &dy, &dx);
    for (int which = -1; which < t->m.nparams; which++) {
        float *v = which < 0 ? tensor_data(x) : param_value(t, which);
        const float *g = which < 0 ? tensor_data(&dx) : param_grad(t, which);
        int64_t n = which < 0 ? tensor_numel(x) : tensor_numel(t->m.params[which].value);
        const char *name = which < 0 ? "input" : t->m.params[which].name;
        for (int64_t i = 0; i < n; i++) {
            float keep = v[i];
            v[i] = keep + (float)eps;
            double lp = weighted_loss(t, x, &y, r);
            v[i] = keep - (float)eps;
            double lm = weighted_loss(t, x, &y, r);
            v[i] = keep;
            double num = (lp - lm) / (2 * eps), ana = g[i];
            double err = fabs(num - ana) / fmax(1.0, fmax(fabs(num), fabs(ana)));
            if (!(err <= tol))
                fail_msg("%s: d%s[%lld]: backward %.7g, finite difference %.7g (error %.3g > %.3g)", where, name,
                         (long long)i, ana, num, err, tol);
        }
    }
    free(r);
    tensor_release(&y), tensor_release(&dy), tensor_release(&dx);
}

static void gradcheck_conv(const LayerKind *kind, const ConvCase *cc) {
    char where[256], opts[256];
    case_text(where, sizeof where, kind->name, cc);
    case_options(opts, sizeof opts, cc, kind == &conv_transpose2d_kind);
    TestLayer t;
    layer_make_ok(&t, kind, opts);
    Tensor x;
    tensor4(&x, cc->n, cc->cin, cc->h, cc->w);
    fill_uniform(tensor_data(&x), tensor_numel(&x), -1, 1);
    gradcheck(&t, &x, where);
    tensor_release(&x);
    layer_drop(&t);
}

static void test_conv2d_gradcheck(void **state) {
    (void)state;
    reseed(5);
    const ConvCase cases[] = {
        {2, 3, 4, 5, 6, 3, 1, -1, 1, 0, 1},
        {1, 2, 3, 6, 7, 2, 2, -1, 1, 0, 1},
        {2, 2, 3, 7, 5, 3, 2, 1, 2, 0, 1},
        {1, 4, 2, 4, 5, 1, 1, 0, 1, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) gradcheck_conv(&conv2d_kind, &cases[i]);
}

static void test_conv_transpose2d_gradcheck(void **state) {
    (void)state;
    reseed(6);
    const ConvCase cases[] = {
        {2, 3, 4, 4, 5, 3, 1, -1, 1, 0, 1},
        {1, 2, 3, 3, 4, 3, 2, -1, 1, 0, 1},
        {2, 2, 3, 3, 4, 3, 2, 1, 1, 1, 1},
        {1, 2, 2, 4, 3, 3, 1, 0, 2, 1, 1},
        {1, 4, 2, 4, 5, 1, 1, 0, 1, 0, 1},
        {2, 4, 4, 4, 5, 3, 1, -1, 1, 0, 1}, /* direct kernels both ways */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) gradcheck_conv(&conv_transpose2d_kind, &cases[i]);
}

/* x filled with distinct values 0.1 apart in a random order, so no window
 * holds two values within eps of each other. */
static void fill_spaced(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(0.1 * (double)(i - n / 2));
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&rng, (uint64_t)i + 1);
        float tmp = x[i];
        x[i] = x[j], x[j] = tmp;
    }
}

static void test_maxpool2d_gradcheck(void **state) {
    (void)state;
    reseed(7);
    const char *opts[] = {"kernel_size=2", "kernel_size=3 stride=1 padding=1", "kernel_size=3 stride=2",
                          "kernel_size=2 stride=1"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        TestLayer t;
        layer_make_ok(&t, &maxpool2d_kind, opts[i]);
        Tensor x;
        tensor4(&x, 2, 3, 7, 6);
        fill_spaced(tensor_data(&x), tensor_numel(&x));
        char where[64];
        snprintf(where, sizeof where, "MaxPool2d{%s}", opts[i]);
        gradcheck(&t, &x, where);
        tensor_release(&x);
        layer_drop(&t);
    }
}

static void test_upsample_gradcheck(void **state) {
    (void)state;
    reseed(8);
    const char *opts[] = {"scale_factor=2", "scale_factor=3", "scale_factor=1"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        TestLayer t;
        layer_make_ok(&t, &upsample_kind, opts[i]);
        Tensor x;
        tensor4(&x, 2, 3, 3, 5);
        fill_uniform(tensor_data(&x), tensor_numel(&x), -1, 1);
        char where[64];
        snprintf(where, sizeof where, "Upsample{%s}", opts[i]);
        gradcheck(&t, &x, where);
        tensor_release(&x);
        layer_drop(&t);
    }
}

/* ---- pooling and upsampling -------------------------------------------- */

static void test_maxpool2d_matches_reference(void **state) {
    (void)state;
    reseed(9);
    const struct {
        int n, c, h, w, k, s, p;
    } cases[] = {{2, 3, 120, 200, 2, 2, 0}, {1, 2, 7, 9, 2, 2, 0}, {1, 2, 7, 9, 3, 2, 1}, {1, 2, 7, 9, 3, 3, 0},
                 {1, 1, 1, 1, 1, 1, 0},     {2, 2, 8, 5, 2, 1, 1}, {1, 3, 9, 9, 5, 2, 2}, {1, 1, 3, 4, 3, 1, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char opts[128], where[160];
        snprintf(opts, sizeof opts, "kernel_size=%d stride=%d padding=%d", cases[i].k, cases[i].s, cases[i].p);
        snprintf(where, sizeof where, "MaxPool2d{%s} on (%d,%d,%d,%d)", opts, cases[i].n, cases[i].c, cases[i].h,
                 cases[i].w);
        TestLayer t;
        layer_make_ok(&t, &maxpool2d_kind, opts);
        Tensor x, y, dy, dx;
        tensor4(&x, cases[i].n, cases[i].c, cases[i].h, cases[i].w);
        fill_uniform(tensor_data(&x), tensor_numel(&x), -1, 1);
        output_for(&t, &x, &y);
        int64_t oh = (cases[i].h + 2 * cases[i].p - cases[i].k) / cases[i].s + 1;
        int64_t ow = (cases[i].w + 2 * cases[i].p - cases[i].k) / cases[i].s + 1;
        if (y.shape[2] != oh || y.shape[3] != ow) fail_msg("%s: output %lldx%lld, want %lldx%lld", where,
                                                           (long long)y.shape[2], (long long)y.shape[3], (long long)oh, (long long)ow);
        run_forward(&t, &x, &y);
        int64_t ny = tensor_numel(&y), nx = tensor_numel(&x), planes = cases[i].n * cases[i].c;
        float *want = alloc_floats(ny);
        maxpool2d_forward_ref(want, tensor_data(&x), planes, cases[i].h, cases[i].w, oh, ow, cases[i].k, cases[i].s,
                              cases[i].p);
        assert_close(tensor_data(&y), want, ny, 0, "forward", where);
        /* backward against the reference, which finds the winners again */
        tensor4(&dy, y.shape[0], y.shape[1], oh, ow);
        fill_uniform(tensor_data(&dy), ny, -1, 1);
        tensor4(&dx, cases[i].n, cases[i].c, cases[i].h, cases[i].w);
        fill_uniform(tensor_data(&dx), nx, -5, 5); /* must be overwritten */
        run_backward(&t, &x, &y, &dy, &dx);
        float *rdx = alloc_floats(nx);
        maxpool2d_backward_ref(rdx, tensor_data(&dy), tensor_data(&x), planes, cases[i].h, cases[i].w, oh, ow,
                               cases[i].k, cases[i].s, cases[i].p);
        assert_close(tensor_data(&dx), rdx, nx, 1e-6, "dx", where);
        free(rdx);
        free(want);
        tensor_release(&x), tensor_release(&y), tensor_release(&dy), tensor_release(&dx);
        layer_drop(&t);
    }
}

/* PyTorch's rules: on a tie the first maximum (row-major) wins; a NaN always
 * wins (the last NaN if several); padding never wins. */
static void test_maxpool2d_ties_and_nan(void **state) {
    (void)state;
    /* the 2x2/2 fast path, and the generic path (padding 1 shifts the
     * windows: rows and columns {0}, {1,2}, {3}) */
    const char *opts[] = {"kernel_size=2", "kernel_size=2 stride=2 padding=1"};
    const float nan = NAN, inf = INFINITY;
    const float in[16] = {5, 5, 5, 1,
                          5, 2, nan, 3,
                          -inf, -inf, nan, 0,
                          -inf, -inf, 7, nan};
    for (int path = 0; path < 2; path++) {
        TestLayer t;
        layer_make_ok(&t, &maxpool2d_kind, opts[path]);
        Tensor x, y, dy, dx;
        tensor4(&x, 1, 1, 4, 4);
        memcpy(tensor_data(&x), in, sizeof in);
        output_for(&t, &x, &y);
        run_forward(&t, &x, &y);
        tensor4(&dy, 1, 1, y.shape[2], y.shape[3]);
        tensor_fill(&dy, 1);
        tensor4(&dx, 1, 1, 4, 4);
        run_backward(&t, &x, &y, &dy, &dx);
        const float *o = tensor_data(&y), *g = tensor_data(&dx);
        if (path == 0) {
            assert_int_equal(y.shape[2], 2);
            /* {5,5;5,2}: a three-way tie, the first cell wins */
            assert_true(o[0] == 5 && g[0] == 1 && g[1] == 0 && g[4] == 0);
            /* {5,1;NaN,3}: NaN beats the larger numbers */
            assert_true(isnan(o[1]) && g[6] == 1 && g[2] == 0);
            /* all -inf: -inf, the gradient to the first cell */
            assert_true(o[2] == -inf && g[8] == 1 && g[9] == 0 && g[12] == 0 && g[13] == 0);
            /* {NaN,0;7,NaN}: the last NaN wins */
            assert_true(isnan(o[3]) && g[15] == 1 && g[10] == 0 && g[14] == 0);
        } else {
            assert_int_equal(y.shape[2], 3);
            assert_true(o[0] == 5 && g[0] == 1);                 /* {5}, padding never wins */
            assert_true(o[1] == 5 && g[1] == 1 && g[2] == 0);    /* {5,5}: the first */
            assert_true(o[2] == 1 && g[3] == 1);
            assert_true(o[3] == 5 && g[4] == 1 && g[8] == 0);    /* {5;-inf} */
            assert_true(isnan(o[4]) && g[10] == 1 && g[6] == 0); /* {2,NaN;-inf,NaN}: the last NaN */
            assert_true(o[5] == 3 && g[7] == 1 && g[11] == 0);
            assert_true(o[6] == -inf && g[12] == 1);             /* {-inf}: padding still never wins */
            assert_true(o[7] == 7 && g[14] == 1 && g[13] == 0);
            assert_true(isnan(o[8]) && g[15] == 1);
        }
        tensor_release(&x), tensor_release(&y), tensor_release(&dy), tensor_release(&dx);
        layer_drop(&t);
    }
}

static void test_upsample_matches_reference(void **state) {
    (void)state;
    reseed(10);
    const struct {
        int n, c, h, w, scale;
    } cases[] = {{2, 32, 15, 25, 2}, {1, 3, 7, 9, 3}, {1, 2, 1, 1, 4}, {2, 3, 5, 4, 1}, {1, 1, 3, 5, 5}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char opts[64], where[128];
        snprintf(opts, sizeof opts, "scale_factor=%d", cases[i].scale);
        snprintf(where, sizeof where, "Upsample{%s} on (%d,%d,%d,%d)", opts, cases[i].n, cases[i].c, cases[i].h,
                 cases[i].w);
        TestLayer t;
        layer_make_ok(&t, &upsample_kind, opts);
        Tensor x, y, dy, dx;
        tensor4(&x, cases[i].n, cases[i].c, cases[i].h, cases[i].w);
        fill_uniform(tensor_data(&x), tensor_numel(&x), -1, 1);
        output_for(&t, &x, &y);
        assert_int_equal(y.shape[2], cases[i].h * cases[i].scale);
        assert_int_equal(y.shape[3], cases[i].w * cases[i].scale);
        int64_t ny = tensor_numel(&y), nx = tensor_numel(&x), planes = cases[i].n * cases[i].c;
        fill_uniform(tensor_data(&y), ny, -5, 5);
        run_forward(&t, &x, &y);
        float *want = alloc_floats(ny), *rdx = alloc_floats(nx);
        upsample_nearest_forward_ref(want, tensor_data(&x), planes, cases[i].h, cases[i].w, cases[i].scale);
        assert_close(tensor_data(&y), want, ny, 0, "forward", where);
        tensor4(&dy, y.shape[0], y.shape[1], y.shape[2], y.shape[3]);
        fill_uniform(tensor_data(&dy), ny, -1, 1);
        tensor4(&dx, cases[i].n, cases[i].c, cases[i].h, cases[i].w);
        fill_uniform(tensor_data(&dx), nx, -5, 5);
        run_backward(&t, &x, &y, &dy, &dx);
        upsample_nearest_backward_ref(rdx, tensor_data(&dy), planes, cases[i].h, cases[i].w, cases[i].scale);
        assert_close(tensor_data(&dx), rdx, nx, 1e-6, "dx", where);
        free(want), free(rdx);
        tensor_release(&x), tensor_release(&y), tensor_release(&dy), tensor_release(&dx);
        layer_drop(&t);
    }
}

static void test_upsample_by_hand(void **state) {
    (void)state;
    TestLayer t;
    layer_make_ok(&t, &upsample_kind, "");
    Tensor x, y, dy, dx;
    tensor4(&x, 1, 2, 2, 3);
    for (int i = 0; i < 12; i++) tensor_data(&x)[i] = (float)i;
    output_for(&t, &x, &y);
    assert_int_equal(y.shape[2], 4);
    assert_int_equal(y.shape[3], 6);
    run_forward(&t, &x, &y);
    for (int c = 0; c < 2; c++)
        for (int r = 0; r < 4; r++)
            for (int q = 0; q < 6; q++) {
                float v = tensor_data(&y)[(c * 4 + r) * 6 + q], e = (float)(c * 6 + (r / 2) * 3 + q / 2);
                if (v != e) fail_msg("y[%d][%d][%d] = %g, want %g", c, r, q, v, e);
            }
    tensor4(&dy, 1, 2, 4, 6);
    for (int i = 0; i < 48; i++) tensor_data(&dy)[i] = (float)i;
    tensor4(&dx, 1, 2, 2, 3);
    run_backward(&t, &x, &y, &dy, &dx);
    for (int c = 0; c < 2; c++)
        for (int r = 0; r < 2; r++)
            for (int q = 0; q < 3; q++) {
                int b = (c * 4 + 2 * r) * 6 + 2 * q;
                float e = (float)(b + (b + 1) + (b + 6) + (b + 7)), v = tensor_data(&dx)[(c * 2 + r) * 3 + q];
                if (v != e) fail_msg("dx[%d][%d][%d] = %g, want %g", c, r, q, v, e);
            }
    tensor_release(&x), tensor_release(&y), tensor_release(&dy), tensor_release(&dx);
    layer_drop(&t);
}

/* ---- errors ------------------------------------------------------------- */

static void expect_init_error(const LayerKind *kind, const char *opts, const char *part1, const char *part2) {
    TestLayer t;
    char err[LAYER_ERR];
    if (layer_make(&t, kind, opts, err) == 0) {
        layer_drop(&t);
        fail_msg("%s{%s} was accepted, expected an error containing '%s'", kind->name, opts, part1);
    }
    if (!strstr(err, part1) || (part2 && !strstr(err, part2)))
        fail_msg("%s{%s}: error '%s' should contain '%s'%s%s", kind->name, opts, err, part1, part2 ? " and " : "",
                 part2 ? part2 : "");
}

static void test_option_errors(void **state) {
    (void)state;
    const char *c2 = "in_channels=3 out_channels=4 ";
    char o[256];
#define WITH(extra) (snprintf(o, sizeof o, "%s%s", c2, extra), o)
    expect_init_error(&conv2d_kind, WITH("kernel_size=0"), "kernel_size must be >= 1", "got 0");
    expect_init_error(&conv2d_kind, WITH("stride=0"), "stride must be >= 1", "got 0");
    expect_init_error(&conv2d_kind, WITH("dilation=0"), "dilation must be >= 1", "got 0");
    expect_init_error(&conv2d_kind, WITH("padding=-1"), "padding must be >= 0", "got -1");
    expect_init_error(&conv2d_kind, WITH("padding=full"), "unknown padding 'full'", "'same', 'valid'");
    expect_init_error(&conv2d_kind, WITH("weight_init=xavier"), "unknown weight_init 'xavier'", "glorot_uniform");
    expect_init_error(&conv2d_kind, "in_channels=0 out_channels=4", "in_channels must be >= 1", "got 0");
    expect_init_error(&conv_transpose2d_kind, WITH("kernel_size=0"), "kernel_size must be >= 1", NULL);
    expect_init_error(&conv_transpose2d_kind, WITH("padding=full"), "unknown padding 'full'", "'same'");
    expect_init_error(&conv_transpose2d_kind, WITH("stride=2 output_padding=2"),
                      "output_padding must be smaller than stride or dilation", "output_padding 2 with stride 2");
    expect_init_error(&conv_transpose2d_kind, WITH("output_padding=1"), "output_padding must be smaller", NULL);
    expect_init_error(&conv_transpose2d_kind, WITH("stride=2 padding=same output_padding=1"),
                      "output_padding must be 0 with padding='same'", NULL);
#undef WITH
    expect_init_error(&maxpool2d_kind, "kernel_size=0", "kernel_size must be in [1,", "got 0");
    expect_init_error(&maxpool2d_kind, "stride=0", "stride must be in [1,", "got 0");
    expect_init_error(&maxpool2d_kind, "stride=big", "stride must be an integer >= 1 or 'kernel_size'", "'big'");
    expect_init_error(&maxpool2d_kind, "padding=-1", "padding must be >= 0", NULL);
    expect_init_error(&maxpool2d_kind, "kernel_size=3 padding=2", "at most half of kernel_size", "padding 2");
    expect_init_error(&upsample_kind, "scale_factor=0", "scale_factor must be", "got 0");
    expect_init_error(&upsample_kind, "mode=bilinear", "unknown mode 'bilinear'", "'nearest'");
}

static void expect_shape_error(const LayerKind *kind, const char *opts, int ndim, const int64_t *in,
                               const char *part1, const char *part2) {
    TestLayer t;
    layer_make_ok(&t, kind, opts);
    int ond;
    int64_t out[TENSOR_MAX_DIMS];
    char err[LAYER_ERR] = "";
    if (kind->shape(&t.m, ndim, in, &ond, out, err) == 0)
        fail_msg("%s{%s}: shape accepted, expected an error containing '%s'", kind->name, opts, part1);
    if (!strstr(err, part1) || (part2 && !strstr(err, part2)))
        fail_msg("%s{%s}: error '%s' should contain '%s' and '%s'", kind->name, opts, err, part1, part2 ? part2 : "");
    layer_drop(&t);
}

static void test_shape_errors(void **state) {
    (void)state;
    const int64_t wrong_c[4] = {8, 3, 120, 200}, three_d[3] = {32, 120, 200}, tiny[4] = {1, 32, 2, 9},
                  zero_h[4] = {1, 32, 0, 9};
    expect_shape_error(&conv2d_kind, "in_channels=32 out_channels=32", 4, wrong_c,
                       "input has 3 channels, layer expects 32", "(8,3,120,200)");
    expect_shape_error(&conv2d_kind, "in_channels=32 out_channels=32", 3, three_d, "4-d input", "(32,120,200)");
    expect_shape_error(&conv2d_kind, "in_channels=32 out_channels=32 kernel_size=3 padding=0", 4, tiny,
                       "output height would be 0", "height 2");
    expect_shape_error(&conv2d_kind, "in_channels=32 out_channels=32", 4, zero_h, "no pixels", "(1,32,0,9)");
    expect_shape_error(&conv_transpose2d_kind, "in_channels=4 out_channels=32", 4, wrong_c,
                       "input has 3 channels, layer expects 4", "(8,3,120,200)");
    expect_shape_error(&conv_transpose2d_kind, "in_channels=32 out_channels=4", 3, three_d, "4-d input", NULL);
    expect_shape_error(&conv_transpose2d_kind, "in_channels=32 out_channels=4 kernel_size=1 padding=2", 4, tiny,
                       "output height would be -2", "(1,32,2,9)");
    expect_shape_error(&maxpool2d_kind, "kernel_size=3", 4, tiny, "output height would be 0", "(1,32,2,9)");
    expect_shape_error(&maxpool2d_kind, "kernel_size=2", 3, three_d, "4-d input", NULL);
    expect_shape_error(&upsample_kind, "", 3, three_d, "4-d input", "(32,120,200)");

    /* and the shapes the autoencoder relies on */
    TestLayer t;
    int ond;
    int64_t out[4];
    char err[LAYER_ERR];
    const int64_t enc[4] = {1, 32, 120, 200}, dec[4] = {1, 32, 15, 25};
    layer_make_ok(&t, &maxpool2d_kind, "");
    assert_int_equal(t.m.kind->shape(&t.m, 4, enc, &ond, out, err), 0);
    assert_true(out[2] == 60 && out[3] == 100);
    layer_drop(&t);
    layer_make_ok(&t, &upsample_kind, "");
    assert_int_equal(t.m.kind->shape(&t.m, 4, dec, &ond, out, err), 0);
    assert_true(out[2] == 30 && out[3] == 50);
    layer_drop(&t);
}

int main(void) {
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const char *env = getenv("DD_TEST_SEED");
    if (env && *env) seed = strtoull(env, NULL, 10);
    printf("# test_conv: seed %llu (set DD_TEST_SEED to change)\n", (unsigned long long)seed);
    fflush(stdout);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d_matches_reference),
        cmocka_unit_test(test_conv_transpose2d_matches_reference),
        cmocka_unit_test(test_conv_tiled_bands),
        cmocka_unit_test(test_conv_direct_matches_reference),
        cmocka_unit_test(test_conv_direct_full_size),
        cmocka_unit_test(test_conv2d_same_padding_by_hand),
        cmocka_unit_test(test_conv_transpose2d_by_hand),
        cmocka_unit_test(test_conv_transpose_is_adjoint),
        cmocka_unit_test(test_fused_activation_matches_layer_then_activation),
        cmocka_unit_test(test_fused_activation_unknown),
        cmocka_unit_test(test_conv2d_gradcheck),
        cmocka_unit_test(test_conv_transpose2d_gradcheck),
        cmocka_unit_test(test_maxpool2d_gradcheck),
        cmocka_unit_test(test_upsample_gradcheck),
        cmocka_unit_test(test_maxpool2d_matches_reference),
        cmocka_unit_test(test_maxpool2d_ties_and_nan),
        cmocka_unit_test(test_upsample_matches_reference),
        cmocka_unit_test(test_upsample_by_hand),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_shape_errors),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    workspace_free();
    return failed;
}

/* tensor_math.c: element-wise kernels, reductions and matmul (OpenBLAS). */
#include "tensor_math.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

int broadcast_shapes_check(int an, const int64_t *as, int bn, const int64_t *bs,
                           int *on, int64_t *os, char *err, size_t errlen) {
    int n = an > bn ? an : bn;
    for (int i = 0; i < n; i++) {
        int ai = an - n + i, bi = bn - n + i;
        int64_t x = ai >= 0 ? as[ai] : 1, y = bi >= 0 ? bs[bi] : 1;
        if (x != y && x != 1 && y != 1) {
            char sa[128], sb[128];
            snprintf(err, errlen, "shapes %s and %s do not broadcast (dimension %d: %lld vs %lld)",
                     shape_format(sa, sizeof sa, an, as), shape_format(sb, sizeof sb, bn, bs), i + 1,
                     (long long)x, (long long)y);
            return -1;
        }
        os[i] = x == 1 ? y : x;
    }
    *on = n;
    return 0;
}

void tensor_broadcast_view(Tensor *view, const Tensor *t, int ndim, const int64_t *shape) {
    *view = *t; /* borrowed: no refcount change, lives only during a call */
    view->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        int ti = t->ndim - ndim + i;
        view->shape[i] = shape[i];
        view->stride[i] = (ti >= 0 && t->shape[ti] != 1) ? t->stride[ti] : 0;
    }
}

/* Walks the outer dims of up to three same-shaped views and hands each
 * innermost row to `row` with its three base pointers and strides. */
typedef struct RowWalk {
    int ndim;
    int64_t idx[TENSOR_MAX_DIMS];
    int64_t rows;
} RowWalk;

static inline void row_walk_init(RowWalk *w, const Tensor *t) {
    w->ndim = t->ndim;
    memset(w->idx, 0, sizeof w->idx);
    w->rows = 1;
    for (int i = 0; i < t->ndim - 1; i++) w->rows *= t->shape[i];
    if (t->ndim > 0 && t->shape[t->ndim - 1] == 0) w->rows = 0;
}

static inline int64_t row_offset(const RowWalk *w, const Tensor *t) {
    int64_t off = 0;
    for (int i = 0; i < w->ndim - 1; i++) off += w->idx[i] * t->stride[i];
    return off;
}

static inline void row_walk_next(RowWalk *w, const Tensor *t) {
    for (int d = w->ndim - 2; d >= 0; d--) {
        if (++w->idx[d] < t->shape[d]) return;
        w->idx[d] = 0;
    }
}

static inline float binary_apply(BinaryOp op, float x, float y) {
    switch (op) {
    case BIN_ADD: return x + y;
    case BIN_SUB: return x - y;
    case BIN_MUL: return x * y;
    case BIN_DIV: return x / y;
    case BIN_POW: return powf(x, y);
    case BIN_MAX: return x > y || isnan(x) ? x : y;
    case BIN_MIN: return x < y || isnan(x) ? x : y;
    case BIN_LT: return x < y;
    case BIN_LE: return x <= y;
    case BIN_GT: return x > y;
    case BIN_GE: return x >= y;
    case BIN_EQ: return x == y;
    case BIN_NE: return x != y;
    }
    return 0;
}

/* The switch sits outside the loop so each case compiles to a tight loop. */
#define BINARY_CASES(LOOP)                                                  \
    switch (op) {                                                           \
    case BIN_ADD: LOOP(x + y); break;                                       \
    case BIN_SUB: LOOP(x - y); break;                                       \
    case BIN_MUL: LOOP(x * y); break;                                       \
    case BIN_DIV: LOOP(x / y); break;                                       \
    default: LOOP(binary_apply(op, x, y)); break;                           \
    }

void tensor_binary(Tensor *out, const Tensor *a, const Tensor *b, BinaryOp op) {
    int64_t n = tensor_numel(out);
    if (tensor_is_contiguous(out) && tensor_is_contiguous(a) && tensor_is_contiguous(b) &&
        tensor_numel(a) == n && tensor_numel(b) == n) {
        float *o = tensor_data(out);
        const float *pa = tensor_data(a), *pb = tensor_data(b);
#define FLAT(EXPR) for (int64_t i = 0; i < n; i++) { float x = pa[i], y = pb[i]; o[i] = (EXPR); }
        BINARY_CASES(FLAT)
#undef FLAT
        return;
    }
    if (out->ndim == 0) {
        *tensor_data(out) = binary_apply(op, *tensor_data(a), *tensor_data(b));
        return;
    }
    RowWalk w;
    row_walk_init(&w, out);
    int last = out->ndim - 1;
    int64_t len = out->shape[last];
    int64_t so = out->stride[last], sa = a->stride[last], sb = b->stride[last];
    for (int64_t r = 0; r < w.rows; r++) {
        float *o = tensor_data(out) + row_offset(&w, out);
        const float *pa = tensor_data(a) + row_offset(&w, a);
        const float *pb = tensor_data(b) + row_offset(&w, b);
#define ROW(EXPR) for (int64_t i = 0; i < len; i++) { float x = pa[i * sa], y = pb[i * sb]; o[i * so] = (EXPR); }
        BINARY_CASES(ROW)
#undef ROW
        row_walk_next(&w, out);
    }
}

void tensor_binary_scalar(Tensor *out, const Tensor *a, float s, BinaryOp op, int scalar_left) {
    Tensor sv = *a; /* a 0-stride view holding s, so one kernel serves both */
    Storage st = {&s, 1, 1};
    sv.storage = &st;
    sv.offset = 0;
    for (int i = 0; i < sv.ndim; i++) sv.stride[i] = 0;
    sv.ndim = out->ndim;
    for (int i = 0; i < out->ndim; i++) {
        sv.shape[i] = out->shape[i];
        sv.stride[i] = 0;
    }
    if (tensor_is_contiguous(out) && tensor_is_contiguous(a)) {
        int64_t n = tensor_numel(out);
        float *o = tensor_data(out);
        const float *pa = tensor_data(a);
        if (!scalar_left) {
#define FLATS(EXPR) for (int64_t i = 0; i < n; i++) { float x = pa[i], y = s; o[i] = (EXPR); }
            BINARY_CASES(FLATS)
#undef FLATS
        } else {
#define FLATL(EXPR) for (int64_t i = 0; i < n; i++) { float x = s, y = pa[i]; o[i] = (EXPR); }
            BINARY_CASES(FLATL)
#undef FLATL
        }
        return;
    }
    if (scalar_left) tensor_binary(out, &sv, a, op);
    else tensor_binary(out, a, &sv, op);
}

static inline float unary_apply(UnaryOp op, float x) {
    switch (op) {
    case UN_NEG: return -x;
    case UN_EXP: return expf(x);
    case UN_LOG: return logf(x);
    case UN_SQRT: return sqrtf(x);
    case UN_ABS: return fabsf(x);
    case UN_TANH: return tanhf(x);
    case UN_SIGMOID: return x >= 0 ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
    case UN_RELU: return x > 0 || isnan(x) ? x : 0; /* NaN propagates, as in torch */
    case UN_SIN: return sinf(x);
    case UN_COS: return cosf(x);
    case UN_FLOOR: return floorf(x);
    case UN_CEIL: return ceilf(x);
    case UN_ROUND: return nearbyintf(x); /* half to even, like torch.round */
    case UN_SIGN: return isnan(x) ? x : (float)((x > 0) - (x < 0));
    case UN_SQUARE: return x * x;
    }
    return x;
}

void tensor_unary(Tensor *out, const Tensor *a, UnaryOp op) {
    if (tensor_is_contiguous(out) && tensor_is_contiguous(a)) {
        int64_t n = tensor_numel(out);
        float *o = tensor_data(out);
        const float *pa = tensor_data(a);
        for (int64_t i = 0; i < n; i++) o[i] = unary_apply(op, pa[i]);
        return;
    }
    TensorIter io, ia;
    tensor_iter_init(&io, out);
    tensor_iter_init(&ia, a);
    float *o, *x;
    while ((o = tensor_iter_next(&io)) && (x = tensor_iter_next(&ia))) *o = unary_apply(op, *x);
}

void tensor_clamp(Tensor *out, const Tensor *a, float lo, float hi) {
    TensorIter io, ia;
    tensor_iter_init(&io, out);
    tensor_iter_init(&ia, a);
    float *o, *x;
    while ((o = tensor_iter_next(&io)) && (x = tensor_iter_next(&ia))) {
        float v = *x;
        *o = v < lo ? lo : v > hi ? hi : v;
    }
}

/* Reduction state over a sequence; sums in double so large means stay exact. */
typedef struct Acc {
    double sum;
    float best;
    int64_t best_i, n;
} Acc;

static inline void acc_init(Acc *c) {
    c->sum = 0;
    c->best = NAN;
    c->best_i = 0;
    c->n = 0;
}

static inline void acc_add(Acc *c, ReduceOp op, float v) {
    if (op == RED_SUM || op == RED_MEAN) {
        c->sum += v;
    } else if (c->n == 0 || isnan(c->best)) {
        if (c->n == 0) { c->best = v; c->best_i = 0; }
    } else {
        /* NaN propagates like torch: the first NaN wins. */
        int better = isnan(v) || ((op == RED_MAX || op == RED_ARGMAX) ? v > c->best : v < c->best);
        if (better) { c->best = v; c->best_i = c->n; }
    }
    c->n++;
}

static inline double acc_result(const Acc *c, ReduceOp op) {
    switch (op) {
    case RED_SUM: return c->sum;
    case RED_MEAN: return c->n ? c->sum / (double)c->n : NAN;
    case RED_MAX: case RED_MIN: return c->n ? c->best : NAN;
    case RED_ARGMAX: case RED_ARGMIN: return c->n ? (double)c->best_i : NAN;
    }
    return NAN;
}

double tensor_reduce_all(const Tensor *a, ReduceOp op) {
    Acc c;
    acc_init(&c);
    TensorIter it;
    tensor_iter_init(&it, a);
    float *p;
    while ((p = tensor_iter_next(&it))) acc_add(&c, op, *p);
    return acc_result(&c, op);
}

void tensor_reduce_dim(Tensor *out, Tensor *idx, const Tensor *a, int dim, ReduceOp op) {
    /* View a as (outer, len, inner) without copying: iterate the kept dims. */
    Tensor kept = *a;
    tensor_select(&kept, dim, 0);
    Tensor o = *out, ix = idx ? *idx : *out;
    /* out may carry a kept size-1 dim (keepdim): drop it to match `kept`. */
    if (o.ndim == a->ndim) tensor_select(&o, dim, 0);
    if (idx && ix.ndim == a->ndim) tensor_select(&ix, dim, 0);
    int64_t len = a->shape[dim], step = a->stride[dim];
    TensorIter ik, io, ii;
    tensor_iter_init(&ik, &kept);
    tensor_iter_init(&io, &o);
    if (idx) tensor_iter_init(&ii, &ix);
    float *base;
    while ((base = tensor_iter_next(&ik))) {
        Acc c;
        acc_init(&c);
        for (int64_t j = 0; j < len; j++) acc_add(&c, op, base[j * step]);
        float *po = tensor_iter_next(&io);
        if (op == RED_MAX || op == RED_MIN) {
            *po = (float)acc_result(&c, op);
            if (idx) *tensor_iter_next(&ii) = (float)c.best_i;
        } else {
            *po = (float)acc_result(&c, op);
        }
    }
}

/* Unrolled by hand so that it is vector adds at any optimisation level. */
void floats_add(float *restrict dst, const float *restrict src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        dst[i + 0] += src[i + 0];
        dst[i + 1] += src[i + 1];
        dst[i + 2] += src[i + 2];
        dst[i + 3] += src[i + 3];
        dst[i + 4] += src[i + 4];
        dst[i + 5] += src[i + 5];
        dst[i + 6] += src[i + 6];
        dst[i + 7] += src[i + 7];
    }
    for (; i < n; i++) dst[i] += src[i];
}

static int threads_now = 0;

void dd_set_num_threads(int n) {
    if (n < 1) n = 1;
    threads_now = n;
    openblas_set_num_threads(n);
}

int dd_get_num_threads(void) {
    if (threads_now == 0) threads_now = openblas_get_num_threads();
    return threads_now;
}

/* A product with one row is a matrix-vector product: sgemv reads the matrix
 * once, where OpenBLAS 0.3.21's sgemm first copies (packs) all of it, which
 * for one row costs more than the arithmetic (an LSTM stepping one sequence:
 * 40% of its time in the copy). Only one row: with one column and several
 * rows, sgemv's rows come out with different roundings depending on how many
 * there are, so a batch split in two would change the numbers. Not for
 * k == 0, where sgemv would return without applying beta. */
void blas_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc) {
    if (m == 1 && k > 0) { /* c (1, n) = a (1, k) @ op(b) (k, n) */
        int inc_a = trans_a ? lda : 1;
        if (trans_b) cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, alpha, b, ldb, a, inc_a, beta, c, 1);
        else cblas_sgemv(CblasRowMajor, CblasTrans, k, n, alpha, b, ldb, a, inc_a, beta, c, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int matmul_check(const Tensor *a, const Tensor *b, int *cn, int64_t *cs, char *err, size_t errlen) {
    char sa[128], sb[128];
    int ok = (a->ndim == 2 && b->ndim == 2) || (a->ndim == 3 && (b->ndim == 2 || b->ndim == 3));
    if (!ok) {
        snprintf(err, errlen, "expected 2-d x 2-d, 3-d x 3-d or 3-d x 2-d tensors, got %s and %s",
                 shape_format(sa, sizeof sa, a->ndim, a->shape), shape_format(sb, sizeof sb, b->ndim, b->shape));
        return -1;
    }
    int64_t k = a->shape[a->ndim - 1], kb = b->shape[b->ndim - 2];
    int batch_ok = !(a->ndim == 3 && b->ndim == 3) || a->shape[0] == b->shape[0];
    if (k != kb || !batch_ok) {
        snprintf(err, errlen, "shapes %s and %s do not match",
                 shape_format(sa, sizeof sa, a->ndim, a->shape), shape_format(sb, sizeof sb, b->ndim, b->shape));
        return -1;
    }
    *cn = a->ndim;
    if (a->ndim == 3) cs[0] = a->shape[0];
    cs[*cn - 2] = a->shape[a->ndim - 2];
    cs[*cn - 1] = b->shape[b->ndim - 1];
    return 0;
}

/* A 2-d view usable by BLAS directly: row-major (stride[1]==1) or its
 * transpose (stride[0]==1). Returns 0 if neither (caller copies). */
static int blas_layout(const Tensor *t, int d0, int *trans, int *ld) {
    int64_t r = t->shape[d0], c = t->shape[d0 + 1];
    int64_t s0 = t->stride[d0], s1 = t->stride[d0 + 1];
    if ((s1 == 1 || c == 1) && s0 >= (c > 1 ? c : 1)) {
        *trans = 0;
        *ld = (int)(s0 > 0 ? s0 : 1);
        if (r == 1) *ld = (int)(c > 1 ? c : 1);
        return 1;
    }
    if ((s0 == 1 || r == 1) && s1 >= (r > 1 ? r : 1)) {
        *trans = 1;
        *ld = (int)(s1 > 0 ? s1 : 1);
        if (c == 1) *ld = (int)(r > 1 ? r : 1);
        return 1;
    }
    return 0;
}

TensorStatus tensor_matmul(Tensor *c, const Tensor *a, const Tensor *b) {
    int da = a->ndim - 2, db = b->ndim - 2;
    int64_t batch = a->ndim == 3 ? a->shape[0] : 1;
    int m = (int)a->shape[da], k = (int)a->shape[da + 1], n = (int)b->shape[db + 1];
    if (m == 0 || n == 0) return TENSOR_OK;
    if (k == 0) {
        tensor_fill(c, 0);
        return TENSOR_OK;
    }
    /* Operands BLAS cannot read in place are copied to contiguous temporaries. */
    Tensor ac = {0}, bc = {0};
    const Tensor *pa = a, *pb = b;
    int ta = 0, lda = 1, tb = 0, ldb = 1;
    if (!blas_layout(a, da, &ta, &lda) || (a->ndim == 3 && a->shape[0] > 1 && a->stride[0] == 0)) {
        if (tensor_init(&ac, a->ndim, a->shape) != TENSOR_OK) return TENSOR_ENOMEM;
        tensor_copy_data(&ac, a);
        pa = &ac;
        blas_layout(pa, da, &ta, &lda);
    }
    if (!blas_layout(b, db, &tb, &ldb)) {
        if (tensor_init(&bc, b->ndim, b->shape) != TENSOR_OK) {
            if (ac.storage) tensor_release(&ac);
            return TENSOR_ENOMEM;
        }
        tensor_copy_data(&bc, b);
        pb = &bc;
        blas_layout(pb, db, &tb, &ldb);
    }
    for (int64_t i = 0; i < batch; i++) {
        const float *xa = tensor_data(pa) + (a->ndim == 3 ? i * pa->stride[0] : 0);
        const float *xb = tensor_data(pb) + (b->ndim == 3 ? i * pb->stride[0] : 0);
        float *xc = tensor_data(c) + i * (int64_t)m * n;
        blas_sgemm(ta, tb, m, n, k, 1.0f, xa, lda, xb, ldb, 0.0f, xc, n);
    }
    if (ac.storage) tensor_release(&ac);
    if (bc.storage) tensor_release(&bc);
    return TENSOR_OK;
}

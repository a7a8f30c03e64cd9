/* test_tensor.c: C-level tests of the tensor kernels (tensor.c, tensor_math.c,
 * rng.c) with no Lua in the loop. Every fast path is compared against a plain
 * reference loop written here in double precision, over random shapes that
 * include 0-size dims, stride-0 (broadcast) dims and non-contiguous views.
 *
 * Tolerances: +, -, *, /, sqrt, comparisons and exact functions (abs, floor,
 * ...) must match the double reference rounded to float exactly (rounding a
 * double result to float is correctly rounded for these); transcendental
 * functions within 2e-6 relative; matmul within 1e-5 of sum(|a||b|) per entry.
 *
 * The random data comes from a private generator seeded from DD_TEST_SEED
 * (printed first), so a failure can be replayed. Output is TAP. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rng.h"
#include "tensor.h"
#include "tensor_math.h"

static Rng trng; /* test data; separate from rng_global so the rng tests own it */
static uint64_t test_seed;

/* ---- helpers ---- */

/* Multiples of 0.25 in [-3, 3]: exact in float, with ties and zeros. */
static float rand_quantized(void) { return ((int)rng_below(&trng, 25) - 12) * 0.25f; }

static float rand_range(double lo, double hi) { return (float)(lo + (hi - lo) * rng_uniform(&trng)); }

/* Advances a row-major multi-index; returns 0 after the last one. */
static int index_next(int ndim, const int64_t *shape, int64_t *idx) {
    for (int d = ndim - 1; d >= 0; d--) {
        if (++idx[d] < shape[d]) return 1;
        idx[d] = 0;
    }
    return 0;
}

static int64_t shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* Element pointer of a multi-index, straight from the strides. */
static float *elem(const Tensor *t, const int64_t *idx) {
    int64_t off = t->offset;
    for (int i = 0; i < t->ndim; i++) off += idx[i] * t->stride[i];
    return t->storage->data + off;
}

/* Element of `t` read through NumPy broadcasting for an index of an
 * out_ndim-d result: leading dims dropped, size-1 dims pinned to 0. */
static float elem_broadcast(const Tensor *t, int out_ndim, const int64_t *out_idx) {
    int64_t idx[TENSOR_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) {
        int oi = out_ndim - t->ndim + i;
        idx[i] = t->shape[i] == 1 ? 0 : out_idx[oi];
    }
    return *elem(t, idx);
}

static void fill_storage(Tensor *t, float (*gen)(void)) {
    for (int64_t i = 0; i < t->storage->size; i++) t->storage->data[i] = gen();
}

enum Layout { LAYOUT_CONTIGUOUS, LAYOUT_PADDED, LAYOUT_TRANSPOSED, LAYOUT_EXPANDED, LAYOUT_COUNT };

/* A view of the given shape in one of several memory layouts, over fresh
 * storage filled by gen. PADDED narrows a larger tensor (offset, gaps);
 * TRANSPOSED swaps the first and last dims of the storage order; EXPANDED
 * gives one dim stride 0 (read-only use). The view owns one storage ref. */
static Tensor make_view(int ndim, const int64_t *shape, int layout, float (*gen)(void)) {
    Tensor t;
    int64_t bs[TENSOR_MAX_DIMS];
    memcpy(bs, shape, (size_t)ndim * sizeof *bs);
    if (ndim == 0) layout = LAYOUT_CONTIGUOUS;
    if (layout == LAYOUT_TRANSPOSED && ndim < 2) layout = LAYOUT_PADDED;
    int ex = -1;
    if (layout == LAYOUT_EXPANDED) {
        for (int i = 0; i < ndim; i++)
            if (shape[i] > 1) ex = i;
        if (ex < 0) layout = LAYOUT_PADDED;
    }
    switch (layout) {
    case LAYOUT_PADDED:
        for (int i = 0; i < ndim; i++) bs[i] = shape[i] + 2;
        assert_int_equal(tensor_init(&t, ndim, bs), TENSOR_OK);
        for (int i = 0; i < ndim; i++) tensor_narrow(&t, i, 1, shape[i]);
        break;
    case LAYOUT_TRANSPOSED:
        bs[0] = shape[ndim - 1];
        bs[ndim - 1] = shape[0];
        assert_int_equal(tensor_init(&t, ndim, bs), TENSOR_OK);
        tensor_transpose(&t, 0, ndim - 1);
        break;
    case LAYOUT_EXPANDED:
        bs[ex] = 1;
        assert_int_equal(tensor_init(&t, ndim, bs), TENSOR_OK);
        t.shape[ex] = shape[ex];
        t.stride[ex] = 0;
        break;
    default:
        assert_int_equal(tensor_init(&t, ndim, shape), TENSOR_OK);
    }
    fill_storage(&t, gen);
    for (int i = 0; i < ndim; i++) assert_int_equal(t.shape[i], shape[i]);
    return t;
}

/* float32 result vs double reference: exact (rounded) when rtol == 0. */
static int close_to(float got, double ref, double rtol) {
    if (isnan(ref)) return isnan(got);
    float rf = (float)ref;
    if (isinf(rf) || rtol == 0) return got == rf || (isnan(got) && isnan(rf));
    return fabs((double)got - ref) <= rtol * fabs(ref) || got == rf;
}

/* Storage positions a view touches, so writes outside it can be detected. */
static unsigned char *view_mask(const Tensor *t) {
    unsigned char *m = calloc((size_t)t->storage->size + 1, 1);
    assert_non_null(m);
    int64_t idx[TENSOR_MAX_DIMS] = {0};
    if (tensor_numel(t) > 0) do m[elem(t, idx) - t->storage->data] = 1;
        while (index_next(t->ndim, t->shape, idx));
    return m;
}

/* Fails if any storage element outside the view changed from `before`. */
static void check_untouched(const Tensor *t, const float *before, const char *what) {
    unsigned char *m = view_mask(t);
    for (int64_t i = 0; i < t->storage->size; i++)
        if (!m[i] && memcmp(&before[i], &t->storage->data[i], sizeof(float)) != 0) {
            free(m);
            fail_msg("%s wrote outside its output view at storage element %lld", what, (long long)i);
        }
    free(m);
}

static float *storage_snapshot(const Tensor *t) {
    float *s = malloc((size_t)(t->storage->size + 1) * sizeof(float));
    assert_non_null(s);
    memcpy(s, t->storage->data, (size_t)t->storage->size * sizeof(float));
    return s;
}

static const char *binary_name[] = {"add", "sub", "mul", "div", "pow", "max", "min",
                                    "lt",  "le",  "gt",  "ge",  "eq",  "ne"};
static const char *unary_name[] = {"neg", "exp",  "log",   "sqrt",  "abs",  "tanh", "sigmoid", "relu",
                                   "sin", "cos",  "floor", "ceil",  "round", "sign", "square"};
static const char *reduce_name[] = {"sum", "mean", "max", "min", "argmax", "argmin"};

/* ---- shapes and storage ---- */

static void test_shape_check_limits(void **state) {
    int64_t n = -7;
    int64_t s[TENSOR_MAX_DIMS + 1] = {2, 3, 4, 1, 1, 1, 1, 1, 1};
    assert_int_equal(shape_check(0, s, &n), TENSOR_OK);
    assert_int_equal(n, 1); /* 0-d: one element */
    assert_int_equal(shape_check(3, s, &n), TENSOR_OK);
    assert_int_equal(n, 24);
    assert_int_equal(shape_check(TENSOR_MAX_DIMS, s, &n), TENSOR_OK);
    assert_int_equal(shape_check(TENSOR_MAX_DIMS + 1, s, &n), TENSOR_ESIZE);
    assert_int_equal(shape_check(-1, s, &n), TENSOR_ESIZE);
    assert_int_equal(shape_check(3, s, NULL), TENSOR_OK); /* numel is optional */

    int64_t neg[2] = {3, -1};
    assert_int_equal(shape_check(2, neg, &n), TENSOR_ESIZE);
    int64_t zero[3] = {5, 0, 7};
    assert_int_equal(shape_check(3, zero, &n), TENSOR_OK);
    assert_int_equal(n, 0);

    int64_t at_limit[2] = {TENSOR_MAX_NUMEL / 4, 4};
    assert_int_equal(shape_check(2, at_limit, &n), TENSOR_OK);
    assert_int_equal(n, TENSOR_MAX_NUMEL);
    int64_t over[2] = {TENSOR_MAX_NUMEL / 4 + 1, 4};
    assert_int_equal(shape_check(2, over, &n), TENSOR_ESIZE);
    int64_t one_over[1] = {TENSOR_MAX_NUMEL + 1};
    assert_int_equal(shape_check(1, one_over, &n), TENSOR_ESIZE);
}

static void test_shape_check_overflow(void **state) {
    int64_t n;
    /* Products that wrap int64 must be caught before they wrap. */
    int64_t wrap64[2] = {(int64_t)1 << 32, (int64_t)1 << 32};
    assert_int_equal(shape_check(2, wrap64, &n), TENSOR_ESIZE);
    int64_t wrap3[3] = {(int64_t)1 << 21, (int64_t)1 << 21, (int64_t)1 << 22};
    assert_int_equal(shape_check(3, wrap3, &n), TENSOR_ESIZE);
    int64_t max8[8] = {256, 256, 256, 256, 256, 256, 256, 256}; /* 2^64 */
    assert_int_equal(shape_check(8, max8, &n), TENSOR_ESIZE);
    int64_t huge[2] = {INT64_MAX, 2};
    assert_int_equal(shape_check(2, huge, &n), TENSOR_ESIZE);
    int64_t e12[2] = {1000000000000LL, 1000000000000LL};
    assert_int_equal(shape_check(2, e12, &n), TENSOR_ESIZE);
}

static void test_shape_format(void **state) {
    char buf[64];
    int64_t s[3] = {2, 3, 4};
    assert_string_equal(shape_format(buf, sizeof buf, 3, s), "(2,3,4)");
    assert_string_equal(shape_format(buf, sizeof buf, 1, s), "(2,)");
    assert_string_equal(shape_format(buf, sizeof buf, 0, s), "()");
    char tiny[6];
    shape_format(tiny, sizeof tiny, 3, s); /* truncates, stays terminated */
    assert_true(strlen(tiny) < sizeof tiny);
}

static long max_rss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_storage_limits(void **state) {
    int64_t max = storage_max_elements();
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    int64_t phys = (int64_t)pages * page / 4;
    assert_true(max > 0);
    assert_true(max <= TENSOR_MAX_NUMEL);
    assert_int_equal(max, phys < TENSOR_MAX_NUMEL ? phys : TENSOR_MAX_NUMEL);

    long rss = max_rss_kib();
    assert_null(storage_new(-1));
    assert_null(storage_new(max + 1));
    assert_null(storage_new(TENSOR_MAX_NUMEL + 1));
    assert_null(storage_new(INT64_MAX));
    assert_true(max_rss_kib() - rss < 16 * 1024); /* refused without touching memory */

    Tensor t;
    int64_t big[1] = {max + 1};
    assert_int_equal(tensor_init(&t, 1, big), max < TENSOR_MAX_NUMEL ? TENSOR_ENOMEM : TENSOR_ESIZE);
    assert_null(t.storage);
    int64_t toolarge[2] = {1000000000000LL, 1000000000000LL};
    assert_int_equal(tensor_init(&t, 2, toolarge), TENSOR_ESIZE);
    assert_null(t.storage);
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    assert_int_equal(tensor_init(&t, 9, nine), TENSOR_ESIZE);
    assert_null(t.storage);
}

static void test_storage_new_zeroed_and_refcounted(void **state) {
    Storage *s0 = storage_new(0);
    assert_non_null(s0);
    assert_non_null(s0->data); /* never NULL, even when empty */
    assert_int_equal(s0->size, 0);
    assert_int_equal(s0->refcount, 1);
    storage_release(s0);

    /* Both the malloc path and the mmap path (>= 1 MiB) come back zeroed and aligned. */
    int64_t sizes[] = {1, 17, 1000, (1 << 18) - 1, 1 << 18, 3 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        Storage *s = storage_new(sizes[k]);
        assert_non_null(s);
        assert_int_equal(s->size, sizes[k]);
        assert_int_equal((uintptr_t)s->data % 64, 0);
        for (int64_t i = 0; i < sizes[k]; i++)
            if (s->data[i] != 0.0f) fail_msg("storage_new(%lld): element %lld not zero", (long long)sizes[k], (long long)i);
        s->data[sizes[k] - 1] = 1.0f; /* writable to the end */
        storage_retain(s);
        assert_int_equal(s->refcount, 2);
        storage_release(s);
        assert_int_equal(s->refcount, 1);
        storage_release(s);
    }
}

static void test_storage_large_is_lazy(void **state) {
    /* 1 GiB of zeros must not be paid for until written (mmap path). */
    int64_t n = (int64_t)1 << 28;
    if (storage_max_elements() < 4 * n) skip();
    long rss = max_rss_kib();
    Storage *s = storage_new(n);
    assert_non_null(s);
    s->data[0] = 1;
    s->data[n - 1] = 2;
    assert_true(max_rss_kib() - rss < 64 * 1024);
    storage_release(s);
}

static void test_views_share_storage(void **state) {
    Tensor a, v;
    int64_t s[2] = {3, 4};
    assert_int_equal(tensor_init(&a, 2, s), TENSOR_OK);
    assert_int_equal(a.stride[0], 4);
    assert_int_equal(a.stride[1], 1);
    tensor_init_view(&v, &a);
    assert_int_equal(a.storage->refcount, 2);
    tensor_select(&v, 0, 2);   /* row 3 */
    tensor_narrow(&v, 0, 1, 2); /* columns 2..3 */
    assert_int_equal(v.ndim, 1);
    assert_int_equal(v.shape[0], 2);
    assert_int_equal(v.offset, 2 * 4 + 1);
    tensor_fill(&v, 5);
    assert_true(a.storage->data[9] == 5 && a.storage->data[10] == 5);
    assert_true(a.storage->data[8] == 0 && a.storage->data[11] == 0);
    tensor_release(&a);
    assert_int_equal(v.storage->refcount, 1);
    assert_true(tensor_data(&v)[1] == 5); /* still alive through the view */
    tensor_release(&v);

    /* Strides of a shape with a zero dim stay well defined. */
    int64_t z[3] = {2, 0, 3}, st[3];
    tensor_contiguous_strides(3, z, st);
    assert_int_equal(st[2], 1);
    assert_int_equal(st[1], 3);
    assert_int_equal(st[0], 3);
    /* Size-1 dims do not affect contiguity; a transposed view is not contiguous. */
    Tensor c;
    int64_t s3[3] = {2, 1, 3};
    assert_int_equal(tensor_init(&c, 3, s3), TENSOR_OK);
    c.stride[1] = 99;
    assert_true(tensor_is_contiguous(&c));
    tensor_transpose(&c, 0, 2);
    assert_false(tensor_is_contiguous(&c));
    tensor_release(&c);
}

/* ---- iteration and copy ---- */

static void test_iter_order_transposed_narrowed(void **state) {
    Tensor a;
    int64_t s[2] = {3, 4};
    assert_int_equal(tensor_init(&a, 2, s), TENSOR_OK);
    for (int i = 0; i < 12; i++) a.storage->data[i] = (float)i;

    Tensor t;
    tensor_init_view(&t, &a);
    tensor_transpose(&t, 0, 1);
    const float want_t[12] = {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11};
    TensorIter it;
    tensor_iter_init(&it, &t);
    for (int i = 0; i < 12; i++) {
        float *p = tensor_iter_next(&it);
        assert_non_null(p);
        assert_true(*p == want_t[i]);
    }
    assert_null(tensor_iter_next(&it));
    assert_null(tensor_iter_next(&it)); /* stays at the end */

    Tensor n;
    tensor_init_view(&n, &a);
    tensor_narrow(&n, 1, 1, 2);
    tensor_narrow(&n, 0, 1, 2);
    const float want_n[4] = {5, 6, 9, 10};
    tensor_iter_init(&it, &n);
    for (int i = 0; i < 4; i++) assert_true(*tensor_iter_next(&it) == want_n[i]);
    assert_null(tensor_iter_next(&it));

    /* Narrowed and then transposed: columns 2..3 read down the rows. */
    tensor_transpose(&n, 0, 1);
    const float want_nt[4] = {5, 9, 6, 10};
    tensor_iter_init(&it, &n);
    for (int i = 0; i < 4; i++) assert_true(*tensor_iter_next(&it) == want_nt[i]);
    assert_null(tensor_iter_next(&it));

    /* Empty and 0-d. */
    Tensor e;
    tensor_init_view(&e, &a);
    tensor_narrow(&e, 1, 2, 0);
    tensor_iter_init(&it, &e);
    assert_null(tensor_iter_next(&it));
    Tensor z;
    tensor_init_view(&z, &a);
    tensor_select(&z, 0, 2);
    tensor_select(&z, 0, 3);
    assert_int_equal(z.ndim, 0);
    tensor_iter_init(&it, &z);
    assert_true(*tensor_iter_next(&it) == 11);
    assert_null(tensor_iter_next(&it));

    tensor_release(&a);
    tensor_release(&t);
    tensor_release(&n);
    tensor_release(&e);
    tensor_release(&z);
}

static void test_iter_matches_strides_random(void **state) {
    for (int trial = 0; trial < 200; trial++) {
        int ndim = (int)rng_below(&trng, 6);
        int64_t shape[TENSOR_MAX_DIMS];
        for (int i = 0; i < ndim; i++) shape[i] = (int64_t)rng_below(&trng, 5);
        int layout = (int)rng_below(&trng, LAYOUT_COUNT);
        Tensor t = make_view(ndim, shape, layout, rand_quantized);
        TensorIter it;
        tensor_iter_init(&it, &t);
        int64_t idx[TENSOR_MAX_DIMS] = {0}, count = 0;
        if (tensor_numel(&t) > 0) do {
                float *p = tensor_iter_next(&it);
                if (p != elem(&t, idx)) {
                    char b[128];
                    fail_msg("trial %d layout %d shape %s: element %lld visited out of order", trial, layout,
                             shape_format(b, sizeof b, ndim, shape), (long long)count);
                }
                count++;
            } while (index_next(ndim, shape, idx));
        assert_null(tensor_iter_next(&it));
        assert_int_equal(count, shape_numel(ndim, shape));
        tensor_release(&t);
    }
}

static void test_copy_noncontiguous(void **state) {
    for (int trial = 0; trial < 200; trial++) {
        int ndim = 1 + (int)rng_below(&trng, 4);
        int64_t shape[TENSOR_MAX_DIMS];
        for (int i = 0; i < ndim; i++) shape[i] = (int64_t)rng_below(&trng, 5);
        int ls = (int)rng_below(&trng, LAYOUT_COUNT), ld = (int)rng_below(&trng, LAYOUT_EXPANDED);
        Tensor src = make_view(ndim, shape, ls, rand_quantized);
        Tensor dst = make_view(ndim, shape, ld, rand_quantized);
        float *before = storage_snapshot(&dst);
        tensor_copy_data(&dst, &src);
        int64_t idx[TENSOR_MAX_DIMS] = {0};
        if (tensor_numel(&dst) > 0) do {
                if (*elem(&dst, idx) != *elem(&src, idx)) {
                    char b[128];
                    fail_msg("copy layouts %d->%d at %s: got %g, want %g", ls, ld,
                             shape_format(b, sizeof b, ndim, idx), (double)*elem(&dst, idx),
                             (double)*elem(&src, idx));
                }
            } while (index_next(ndim, shape, idx));
        check_untouched(&dst, before, "tensor_copy_data");
        free(before);
        tensor_release(&src);
        tensor_release(&dst);
    }

    /* Different shapes, same numel: row-major logical order on both sides. */
    Tensor a, b;
    int64_t sa[2] = {3, 2}, sb[2] = {2, 3};
    assert_int_equal(tensor_init(&a, 2, sa), TENSOR_OK);
    assert_int_equal(tensor_init(&b, 2, sb), TENSOR_OK);
    for (int i = 0; i < 6; i++) a.storage->data[i] = (float)i;
    tensor_transpose(&a, 0, 1); /* (2,3): 0 2 4 / 1 3 5 */
    tensor_transpose(&b, 0, 1); /* (3,2) view of b's storage */
    tensor_copy_data(&b, &a);
    tensor_transpose(&b, 0, 1);
    const float want[6] = {0, 4, 3, 2, 1, 5}; /* b(3,2) logical = 0 2 4 1 3 5 */
    for (int i = 0; i < 6; i++) assert_true(b.storage->data[i] == want[i]);
    tensor_release(&a);
    tensor_release(&b);
}

static void test_copy_overlapping(void **state) {
    Tensor base, src, dst;
    int64_t n10[1] = {10};
    assert_int_equal(tensor_init(&base, 1, n10), TENSOR_OK);
    float *d = base.storage->data;

    /* Contiguous shift left and right (memmove semantics). */
    for (int i = 0; i < 10; i++) d[i] = (float)i;
    tensor_init_view(&src, &base);
    tensor_init_view(&dst, &base);
    tensor_narrow(&src, 0, 1, 9);
    tensor_narrow(&dst, 0, 0, 9);
    tensor_copy_data(&dst, &src);
    for (int i = 0; i < 9; i++) assert_true(d[i] == (float)(i + 1));
    assert_true(d[9] == 9);
    tensor_release(&src);
    tensor_release(&dst);

    for (int i = 0; i < 10; i++) d[i] = (float)i;
    tensor_init_view(&src, &base);
    tensor_init_view(&dst, &base);
    tensor_narrow(&src, 0, 0, 9);
    tensor_narrow(&dst, 0, 1, 9);
    tensor_copy_data(&dst, &src);
    assert_true(d[0] == 0);
    for (int i = 1; i < 10; i++) assert_true(d[i] == (float)(i - 1));
    tensor_release(&src);
    tensor_release(&dst);

    /* Strided overlap: even elements 0..6 copied onto even elements 2..8. A
     * naive forward copy would smear element 0 over all of them. */
    for (int i = 0; i < 10; i++) d[i] = (float)i;
    int64_t four[1] = {4};
    tensor_init_view(&src, &base);
    tensor_init_view(&dst, &base);
    tensor_view_as(&src, 1, four);
    tensor_view_as(&dst, 1, four);
    src.stride[0] = dst.stride[0] = 2;
    dst.offset = 2;
    tensor_copy_data(&dst, &src);
    const float want[10] = {0, 1, 0, 3, 2, 5, 4, 7, 6, 9};
    for (int i = 0; i < 10; i++)
        if (d[i] != want[i]) fail_msg("strided overlap: element %d is %g, want %g", i, (double)d[i], (double)want[i]);
    tensor_release(&src);
    tensor_release(&dst);
    tensor_release(&base);

    /* In-place transpose of a square matrix through copy. */
    Tensor m, mt;
    int64_t s44[2] = {4, 4};
    assert_int_equal(tensor_init(&m, 2, s44), TENSOR_OK);
    for (int i = 0; i < 16; i++) m.storage->data[i] = (float)i;
    tensor_init_view(&mt, &m);
    tensor_transpose(&mt, 0, 1);
    tensor_copy_data(&m, &mt);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            if (m.storage->data[i * 4 + j] != (float)(j * 4 + i))
                fail_msg("in-place transpose: (%d,%d) is %g, want %d", i, j, (double)m.storage->data[i * 4 + j], j * 4 + i);
    tensor_release(&m);
    tensor_release(&mt);
}

static void test_fill_views(void **state) {
    for (int trial = 0; trial < 50; trial++) {
        int ndim = (int)rng_below(&trng, 5);
        int64_t shape[TENSOR_MAX_DIMS];
        for (int i = 0; i < ndim; i++) shape[i] = (int64_t)rng_below(&trng, 5);
        Tensor t = make_view(ndim, shape, (int)rng_below(&trng, LAYOUT_EXPANDED), rand_quantized);
        float *before = storage_snapshot(&t);
        tensor_fill(&t, 7.5f);
        int64_t idx[TENSOR_MAX_DIMS] = {0};
        if (tensor_numel(&t) > 0) do assert_true(*elem(&t, idx) == 7.5f);
            while (index_next(ndim, shape, idx));
        check_untouched(&t, before, "tensor_fill");
        free(before);
        tensor_release(&t);
    }
}

/* ---- element-wise binary ---- */

static double ref_binary(BinaryOp op, double x, double y) {
    switch (op) {
    case BIN_ADD: return x + y;
    case BIN_SUB: return x - y;
    case BIN_MUL: return x * y;
    case BIN_DIV: return x / y;
    case BIN_POW: return pow(x, y);
    case BIN_MAX: return isnan(x) || isnan(y) ? NAN : x > y ? x : y;
    case BIN_MIN: return isnan(x) || isnan(y) ? NAN : x < y ? x : y;
    case BIN_LT: return x < y;
    case BIN_LE: return x <= y;
    case BIN_GT: return x > y;
    case BIN_GE: return x >= y;
    case BIN_EQ: return x == y;
    case BIN_NE: return x != y;
    }
    return NAN;
}

/* powf is not correctly rounded; everything else is exact after rounding. */
static double binary_rtol(BinaryOp op) { return op == BIN_POW ? 2e-6 : 0; }

static float rand_positive(void) { return 0.25f + (float)rng_below(&trng, 12) * 0.25f; }

/* A random shape for b (or a) that broadcasts to out: some leading dims
 * dropped, some dims set to 1. */
static int broadcast_source_shape(int n, const int64_t *out, int64_t *s) {
    int drop = n ? (int)rng_below(&trng, (uint64_t)n + 1) : 0;
    if (rng_below(&trng, 2)) drop = 0;
    int m = n - drop;
    for (int i = 0; i < m; i++) s[i] = rng_below(&trng, 3) == 0 ? 1 : out[drop + i];
    return m;
}

static void random_out_shape(int *n, int64_t *s) {
    static const int64_t sizes[] = {0, 1, 1, 2, 3, 3, 4, 5, 7, 2, 3, 1};
    *n = (int)rng_below(&trng, 5);
    for (int i = 0; i < *n; i++) s[i] = sizes[rng_below(&trng, sizeof sizes / sizeof sizes[0])];
}

static void test_binary_broadcast_vs_reference(void **state) {
    for (int op = BIN_ADD; op <= BIN_NE; op++) {
        for (int trial = 0; trial < 150; trial++) {
            int n;
            int64_t os[TENSOR_MAX_DIMS], as[TENSOR_MAX_DIMS], bs[TENSOR_MAX_DIMS];
            random_out_shape(&n, os);
            int an = broadcast_source_shape(n, os, as), bn = broadcast_source_shape(n, os, bs);
            int la = (int)rng_below(&trng, LAYOUT_COUNT), lb = (int)rng_below(&trng, LAYOUT_COUNT);
            int lo = (int)rng_below(&trng, LAYOUT_EXPANDED);
            Tensor a = make_view(an, as, la, op == BIN_POW ? rand_positive : rand_quantized);
            Tensor b = make_view(bn, bs, lb, rand_quantized);

            int cn;
            int64_t cs[TENSOR_MAX_DIMS];
            char err[256];
            if (broadcast_shapes_check(an, as, bn, bs, &cn, cs, err, sizeof err) != 0)
                fail_msg("broadcast_shapes_check refused compatible shapes: %s", err);
            /* Expected result shape, aligned on the trailing dims. */
            assert_int_equal(cn, an > bn ? an : bn);
            for (int i = 0; i < cn; i++) {
                int ai = i - (cn - an), bi = i - (cn - bn);
                int64_t x = ai >= 0 ? as[ai] : 1, y = bi >= 0 ? bs[bi] : 1;
                assert_int_equal(cs[i], x == 1 ? y : x);
            }
            Tensor out = make_view(cn, cs, lo, rand_quantized);
            float *before = storage_snapshot(&out);
            Tensor va, vb;
            tensor_broadcast_view(&va, &a, cn, cs);
            tensor_broadcast_view(&vb, &b, cn, cs);
            tensor_binary(&out, &va, &vb, (BinaryOp)op);

            int64_t idx[TENSOR_MAX_DIMS] = {0};
            if (shape_numel(cn, cs) > 0) do {
                    float x = elem_broadcast(&a, cn, idx), y = elem_broadcast(&b, cn, idx);
                    double ref = ref_binary((BinaryOp)op, x, y);
                    float got = *elem(&out, idx);
                    if (!close_to(got, ref, binary_rtol((BinaryOp)op))) {
                        char b1[128], b2[128], b3[128];
                        fail_msg("%s: a %s (layout %d) b %s (layout %d) out layout %d at %s: %g op %g = %.9g, want %.9g",
                                 binary_name[op], shape_format(b1, sizeof b1, an, as), la,
                                 shape_format(b2, sizeof b2, bn, bs), lb, lo, shape_format(b3, sizeof b3, cn, idx),
                                 (double)x, (double)y, (double)got, ref);
                    }
                } while (index_next(cn, cs, idx));
            check_untouched(&out, before, binary_name[op]);
            free(before);
            tensor_release(&a);
            tensor_release(&b);
            tensor_release(&out);
        }
    }
}

static void test_binary_inplace_alias(void **state) {
    /* out == a exactly (the in-place forms), contiguous and transposed. */
    for (int op = BIN_ADD; op <= BIN_NE; op++) {
        for (int layout = LAYOUT_CONTIGUOUS; layout < LAYOUT_EXPANDED; layout++) {
            int64_t s[3] = {3, 4, 5}, bs[1] = {5};
            Tensor a = make_view(3, s, layout, op == BIN_POW ? rand_positive : rand_quantized);
            Tensor b = make_view(1, bs, LAYOUT_CONTIGUOUS, rand_quantized);
            Tensor a0 = make_view(3, s, LAYOUT_CONTIGUOUS, rand_quantized);
            tensor_copy_data(&a0, &a);
            Tensor vb;
            tensor_broadcast_view(&vb, &b, 3, s);
            tensor_binary(&a, &a, &vb, (BinaryOp)op);
            int64_t idx[3] = {0};
            do {
                double ref = ref_binary((BinaryOp)op, *elem(&a0, idx), *elem(&b, idx + 2));
                if (!close_to(*elem(&a, idx), ref, binary_rtol((BinaryOp)op)))
                    fail_msg("in-place %s layout %d: got %g, want %g", binary_name[op], layout, (double)*elem(&a, idx), ref);
            } while (index_next(3, s, idx));
            tensor_release(&a);
            tensor_release(&b);
            tensor_release(&a0);
        }
    }
}

static void test_binary_nan_max_min(void **state) {
    int64_t s[1] = {4};
    Tensor a, b, out;
    assert_int_equal(tensor_init(&a, 1, s), TENSOR_OK);
    assert_int_equal(tensor_init(&b, 1, s), TENSOR_OK);
    assert_int_equal(tensor_init(&out, 1, s), TENSOR_OK);
    const float av[4] = {NAN, 1, NAN, -INFINITY}, bv[4] = {1, NAN, NAN, 2};
    memcpy(a.storage->data, av, sizeof av);
    memcpy(b.storage->data, bv, sizeof bv);
    tensor_binary(&out, &a, &b, BIN_MAX);
    assert_true(isnan(out.storage->data[0]) && isnan(out.storage->data[1]) && isnan(out.storage->data[2]));
    assert_true(out.storage->data[3] == 2);
    tensor_binary(&out, &a, &b, BIN_MIN);
    assert_true(isnan(out.storage->data[0]) && isnan(out.storage->data[1]) && isnan(out.storage->data[2]));
    assert_true(out.storage->data[3] == -INFINITY);
    tensor_binary(&out, &a, &b, BIN_NE); /* NaN != anything, including NaN */
    for (int i = 0; i < 3; i++) assert_true(out.storage->data[i] == 1);
    tensor_binary(&out, &a, &b, BIN_EQ);
    for (int i = 0; i < 3; i++) assert_true(out.storage->data[i] == 0);
    tensor_release(&a);
    tensor_release(&b);
    tensor_release(&out);
}

static void test_binary_scalar_both_sides(void **state) {
    const float scalars[] = {-2.5f, 0.0f, 1.0f, 3.0f};
    for (int op = BIN_ADD; op <= BIN_NE; op++) {
        for (int trial = 0; trial < 40; trial++) {
            int n;
            int64_t s[TENSOR_MAX_DIMS];
            random_out_shape(&n, s);
            int la = (int)rng_below(&trng, LAYOUT_COUNT), lo = (int)rng_below(&trng, LAYOUT_EXPANDED);
            int left = (int)rng_below(&trng, 2);
            float sc = scalars[rng_below(&trng, 4)];
            if (op == BIN_POW && left) sc = 2.0f;
            Tensor a = make_view(n, s, la, op == BIN_POW && !left ? rand_positive : rand_quantized);
            Tensor out = make_view(n, s, lo, rand_quantized);
            float *before = storage_snapshot(&out);
            tensor_binary_scalar(&out, &a, sc, (BinaryOp)op, left);
            int64_t idx[TENSOR_MAX_DIMS] = {0};
            if (shape_numel(n, s) > 0) do {
                    float x = *elem(&a, idx);
                    double ref = left ? ref_binary((BinaryOp)op, sc, x) : ref_binary((BinaryOp)op, x, sc);
                    float got = *elem(&out, idx);
                    if (!close_to(got, ref, binary_rtol((BinaryOp)op))) {
                        char b1[128];
                        fail_msg("%s scalar %s %g, a layout %d, out layout %d, shape %s: x=%g got %.9g want %.9g",
                                 binary_name[op], left ? "left" : "right", (double)sc, la, lo,
                                 shape_format(b1, sizeof b1, n, s), (double)x, (double)got, ref);
                    }
                } while (index_next(n, s, idx));
            check_untouched(&out, before, "tensor_binary_scalar");
            free(before);
            tensor_release(&a);
            tensor_release(&out);
        }
    }
    /* In place on a non-contiguous view: t = t - 1 and t = 10 - t. */
    int64_t s[2] = {3, 5};
    Tensor t = make_view(2, s, LAYOUT_TRANSPOSED, rand_quantized);
    Tensor t0 = make_view(2, s, LAYOUT_CONTIGUOUS, rand_quantized);
    tensor_copy_data(&t0, &t);
    tensor_binary_scalar(&t, &t, 1.0f, BIN_SUB, 0);
    tensor_binary_scalar(&t, &t, 10.0f, BIN_SUB, 1);
    int64_t idx[2] = {0};
    do assert_true(*elem(&t, idx) == 10.0f - (*elem(&t0, idx) - 1.0f));
    while (index_next(2, s, idx));
    tensor_release(&t);
    tensor_release(&t0);
}

/* ---- element-wise unary ---- */

static double ref_round_half_even(double x) {
    double f = floor(x), diff = x - f;
    if (diff > 0.5) return f + 1;
    if (diff < 0.5) return f;
    return fmod(f, 2.0) == 0 ? f : f + 1;
}

static double ref_unary(UnaryOp op, double x) {
    switch (op) {
    case UN_NEG: return -x;
    case UN_EXP: return exp(x);
    case UN_LOG: return log(x);
    case UN_SQRT: return sqrt(x);
    case UN_ABS: return fabs(x);
    case UN_TANH: return tanh(x);
    case UN_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case UN_RELU: return x > 0 ? x : 0;
    case UN_SIN: return sin(x);
    case UN_COS: return cos(x);
    case UN_FLOOR: return floor(x);
    case UN_CEIL: return ceil(x);
    case UN_ROUND: return ref_round_half_even(x);
    case UN_SIGN: return (x > 0) - (x < 0);
    case UN_SQUARE: return x * x;
    }
    return NAN;
}

static double unary_rtol(UnaryOp op) {
    switch (op) {
    case UN_EXP: case UN_LOG: case UN_TANH: case UN_SIGMOID: case UN_SIN: case UN_COS: return 2e-6;
    default: return 0;
    }
}

static UnaryOp cur_unary;
static float unary_input(void) {
    switch (cur_unary) {
    case UN_EXP: return rand_range(-20, 20);
    case UN_LOG: return rand_range(1e-6, 100);
    case UN_SQRT: return rand_range(0, 100);
    case UN_ROUND: /* half-way cases are where rounding modes differ */
        return rng_below(&trng, 2) ? ((int)rng_below(&trng, 21) - 10) * 0.5f : rand_range(-10, 10);
    default: return rand_range(-10, 10);
    }
}

static void test_unary_vs_libm(void **state) {
    for (int op = UN_NEG; op <= UN_SQUARE; op++) {
        cur_unary = (UnaryOp)op;
        for (int trial = 0; trial < 60; trial++) {
            int n;
            int64_t s[TENSOR_MAX_DIMS];
            random_out_shape(&n, s);
            int la = (int)rng_below(&trng, LAYOUT_COUNT), lo = (int)rng_below(&trng, LAYOUT_EXPANDED);
            Tensor a = make_view(n, s, la, unary_input);
            Tensor out = make_view(n, s, lo, rand_quantized);
            float *before = storage_snapshot(&out);
            tensor_unary(&out, &a, (UnaryOp)op);
            int64_t idx[TENSOR_MAX_DIMS] = {0};
            if (shape_numel(n, s) > 0) do {
                    float x = *elem(&a, idx), got = *elem(&out, idx);
                    double ref = ref_unary((UnaryOp)op, x);
                    if (!close_to(got, ref, unary_rtol((UnaryOp)op)))
                        fail_msg("%s(%.9g) = %.9g, want %.9g (layouts %d -> %d)", unary_name[op], (double)x, (double)got,
                                 ref, la, lo);
                } while (index_next(n, s, idx));
            check_untouched(&out, before, unary_name[op]);
            free(before);
            tensor_release(&a);
            tensor_release(&out);
        }
    }
}

static void test_unary_special_values(void **state) {
    const float in[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 88.0f, -104.0f};
    enum { N = sizeof in / sizeof in[0] };
    int64_t s[1] = {N};
    Tensor a, out;
    assert_int_equal(tensor_init(&a, 1, s), TENSOR_OK);
    assert_int_equal(tensor_init(&out, 1, s), TENSOR_OK);
    memcpy(a.storage->data, in, sizeof in);
    for (int op = UN_NEG; op <= UN_SQUARE; op++) {
        if (op == UN_RELU || op == UN_SIGN) continue; /* NaN handling checked below */
        tensor_unary(&out, &a, (UnaryOp)op);
        for (int i = 0; i < N; i++) {
            double ref = ref_unary((UnaryOp)op, in[i]);
            if (!close_to(out.storage->data[i], ref, unary_rtol((UnaryOp)op)))
                fail_msg("%s(%g) = %.9g, want %.9g", unary_name[op], (double)in[i], (double)out.storage->data[i], ref);
        }
    }
    /* The overflow-safe sigmoid must saturate, never give NaN. */
    tensor_unary(&out, &a, UN_SIGMOID);
    assert_true(out.storage->data[2] == 1.0f && out.storage->data[3] == 0.0f);
    assert_true(out.storage->data[11] >= 0.0f && out.storage->data[11] < 1e-30f);
    tensor_unary(&out, &a, UN_RELU);
    assert_true(out.storage->data[2] == INFINITY && out.storage->data[3] == 0.0f && out.storage->data[6] == 0.0f);
    tensor_unary(&out, &a, UN_SIGN);
    assert_true(out.storage->data[0] == 0 && out.storage->data[2] == 1 && out.storage->data[3] == -1 &&
                out.storage->data[6] == -1);
    tensor_release(&a);
    tensor_release(&out);
}

static void test_clamp(void **state) {
    const float lo[] = {-1.0f, -INFINITY, 0.0f, 2.0f}, hi[] = {1.0f, 0.5f, INFINITY, 2.0f};
    for (int k = 0; k < 4; k++) {
        int64_t s[2] = {4, 6};
        int layout = k % LAYOUT_EXPANDED;
        Tensor a = make_view(2, s, layout, rand_quantized);
        Tensor out = make_view(2, s, (k + 1) % LAYOUT_EXPANDED, rand_quantized);
        *elem(&a, (int64_t[]){1, 1}) = NAN;
        tensor_clamp(&out, &a, lo[k], hi[k]);
        int64_t idx[2] = {0};
        do {
            float x = *elem(&a, idx), got = *elem(&out, idx);
            float want = isnan(x) ? NAN : x < lo[k] ? lo[k] : x > hi[k] ? hi[k] : x;
            if (!(got == want || (isnan(got) && isnan(want))))
                fail_msg("clamp(%g, %g, %g) = %g, want %g", (double)x, (double)lo[k], (double)hi[k], (double)got,
                         (double)want);
        } while (index_next(2, s, idx));
        tensor_release(&a);
        tensor_release(&out);
    }
}

/* ---- reductions ---- */

/* Reference over a sequence, in the kernel's documented semantics: sums in
 * double; max/min/arg* propagate the first NaN; ties give the first index. */
static double ref_reduce(ReduceOp op, const float *v, int64_t n, int64_t *best_i) {
    double sum = 0;
    int64_t bi = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += v[i];
        if (isnan(v[bi])) continue;
        if (isnan(v[i])) { bi = i; continue; }
        if ((op == RED_MAX || op == RED_ARGMAX) ? v[i] > v[bi] : v[i] < v[bi]) bi = i;
    }
    if (best_i) *best_i = bi;
    switch (op) {
    case RED_SUM: return sum;
    case RED_MEAN: return n ? sum / (double)n : NAN;
    case RED_MAX: case RED_MIN: return n ? v[bi] : NAN;
    case RED_ARGMAX: case RED_ARGMIN: return n ? (double)bi : NAN;
    }
    return NAN;
}

static float rand_with_nan(void) { return rng_below(&trng, 40) == 0 ? NAN : rand_quantized(); }

static void test_reduce_all_views(void **state) {
    for (int op = RED_SUM; op <= RED_ARGMIN; op++) {
        for (int trial = 0; trial < 80; trial++) {
            int n;
            int64_t s[TENSOR_MAX_DIMS];
            random_out_shape(&n, s);
            int layout = (int)rng_below(&trng, LAYOUT_COUNT);
            int with_nan = trial % 3 == 0 && op != RED_SUM && op != RED_MEAN;
            Tensor a = make_view(n, s, layout, with_nan ? rand_with_nan : rand_quantized);
            int64_t numel = shape_numel(n, s);
            float *flat = malloc((size_t)(numel + 1) * sizeof(float));
            int64_t idx[TENSOR_MAX_DIMS] = {0}, k = 0;
            if (numel > 0) do flat[k++] = *elem(&a, idx);
                while (index_next(n, s, idx));
            double ref = ref_reduce((ReduceOp)op, flat, numel, NULL);
            double got = tensor_reduce_all(&a, (ReduceOp)op);
            free(flat);
            int ok = isnan(ref) ? isnan(got) : fabs(got - ref) <= 1e-12 * fabs(ref);
            if (!ok) {
                char b[128];
                fail_msg("reduce_all %s over %s (layout %d): got %.17g, want %.17g", reduce_name[op],
                         shape_format(b, sizeof b, n, s), layout, got, ref);
            }
            tensor_release(&a);
        }
    }
}

static void test_reduce_all_nan_and_ties(void **state) {
    int64_t s[1] = {6};
    Tensor a;
    assert_int_equal(tensor_init(&a, 1, s), TENSOR_OK);
    const float v[6] = {1, 5, NAN, 5, NAN, -3};
    memcpy(a.storage->data, v, sizeof v);
    assert_true(isnan(tensor_reduce_all(&a, RED_MAX)));
    assert_true(isnan(tensor_reduce_all(&a, RED_MIN)));
    assert_true(tensor_reduce_all(&a, RED_ARGMAX) == 2); /* the first NaN */
    assert_true(tensor_reduce_all(&a, RED_ARGMIN) == 2);
    assert_true(isnan(tensor_reduce_all(&a, RED_SUM)));
    a.storage->data[2] = a.storage->data[4] = 0;
    assert_true(tensor_reduce_all(&a, RED_ARGMAX) == 1); /* ties: first index */
    assert_true(tensor_reduce_all(&a, RED_MAX) == 5);
    a.storage->data[0] = NAN; /* NaN in first place propagates too */
    assert_true(isnan(tensor_reduce_all(&a, RED_MAX)));
    assert_true(tensor_reduce_all(&a, RED_ARGMIN) == 0);
    /* Empty: NaN, except the sum is 0. */
    tensor_narrow(&a, 0, 0, 0);
    assert_true(tensor_reduce_all(&a, RED_SUM) == 0);
    assert_true(isnan(tensor_reduce_all(&a, RED_MEAN)));
    assert_true(isnan(tensor_reduce_all(&a, RED_MAX)));
    tensor_release(&a);

    /* Large sums stay exact: 2^24 + 1 ones would stall in float. */
    int64_t big[1] = {(1 << 24) + 3};
    assert_int_equal(tensor_init(&a, 1, big), TENSOR_OK);
    tensor_fill(&a, 1.0f);
    assert_true(tensor_reduce_all(&a, RED_SUM) == (double)big[0]);
    assert_true(tensor_reduce_all(&a, RED_MEAN) == 1.0);
    tensor_release(&a);
}

static void test_reduce_dim_views(void **state) {
    for (int op = RED_SUM; op <= RED_MIN; op++) { /* argmax/argmin use MAX/MIN's idx */
        for (int trial = 0; trial < 100; trial++) {
            int n = 1 + (int)rng_below(&trng, 4);
            int64_t s[TENSOR_MAX_DIMS];
            for (int i = 0; i < n; i++) s[i] = 1 + (int64_t)rng_below(&trng, 5);
            if (op == RED_SUM && trial % 10 == 0) s[rng_below(&trng, (uint64_t)n)] = 0;
            int dim = (int)rng_below(&trng, (uint64_t)n), keepdim = (int)rng_below(&trng, 2);
            int la = (int)rng_below(&trng, LAYOUT_COUNT), lo = (int)rng_below(&trng, LAYOUT_EXPANDED);
            int with_nan = (op == RED_MAX || op == RED_MIN) && trial % 4 == 0;
            Tensor a = make_view(n, s, la, with_nan ? rand_with_nan : rand_quantized);
            int64_t os[TENSOR_MAX_DIMS];
            int on = 0;
            for (int i = 0; i < n; i++) {
                if (i != dim) os[on++] = s[i];
                else if (keepdim) os[on++] = 1;
            }
            Tensor out = make_view(on, os, lo, rand_quantized);
            Tensor idx_t = make_view(on, os, (lo + 1) % LAYOUT_EXPANDED, rand_quantized);
            int want_idx = op == RED_MAX || op == RED_MIN;
            float *before = storage_snapshot(&out);
            tensor_reduce_dim(&out, want_idx ? &idx_t : NULL, &a, dim, (ReduceOp)op);

            float *seq = malloc((size_t)(s[dim] + 1) * sizeof(float));
            int64_t oidx[TENSOR_MAX_DIMS] = {0};
            if (shape_numel(on, os) > 0) do {
                    int64_t aidx[TENSOR_MAX_DIMS];
                    for (int i = 0, k = 0; i < n; i++) {
                        if (i == dim) {
                            aidx[i] = 0;
                            if (keepdim) k++;
                        } else aidx[i] = oidx[k++];
                    }
                    for (int64_t j = 0; j < s[dim]; j++) {
                        aidx[dim] = j;
                        seq[j] = *elem(&a, aidx);
                    }
                    int64_t bi;
                    double ref = ref_reduce((ReduceOp)op, seq, s[dim], &bi);
                    float got = *elem(&out, oidx);
                    char b1[128], b2[128];
                    if (!close_to(got, ref, 1e-6))
                        fail_msg("reduce_dim %s dim %d keepdim %d over %s (layout %d) at %s: got %.9g, want %.9g",
                                 reduce_name[op], dim + 1, keepdim, shape_format(b1, sizeof b1, n, s), la,
                                 shape_format(b2, sizeof b2, on, oidx), (double)got, ref);
                    if (want_idx && *elem(&idx_t, oidx) != (float)bi)
                        fail_msg("reduce_dim %s dim %d over %s at %s: index %g, want %lld", reduce_name[op], dim + 1,
                                 shape_format(b1, sizeof b1, n, s), shape_format(b2, sizeof b2, on, oidx),
                                 (double)*elem(&idx_t, oidx), (long long)bi);
                } while (index_next(on, os, oidx));
            free(seq);
            check_untouched(&out, before, "tensor_reduce_dim");
            free(before);
            tensor_release(&a);
            tensor_release(&out);
            tensor_release(&idx_t);
        }
    }
}

/* ---- matmul ---- */

static void test_matmul_check_messages(void **state) {
    char err[256];
    int cn;
    int64_t cs[3];
    Tensor a = {0}, b = {0};
    a.ndim = 2, a.shape[0] = 3, a.shape[1] = 4;
    b.ndim = 2, b.shape[0] = 5, b.shape[1] = 2;
    assert_int_equal(matmul_check(&a, &b, &cn, cs, err, sizeof err), -1);
    assert_string_equal(err, "shapes (3,4) and (5,2) do not match");

    b.shape[0] = 4;
    assert_int_equal(matmul_check(&a, &b, &cn, cs, err, sizeof err), 0);
    assert_int_equal(cn, 2);
    assert_int_equal(cs[0], 3);
    assert_int_equal(cs[1], 2);

    a.ndim = 1;
    assert_int_equal(matmul_check(&a, &b, &cn, cs, err, sizeof err), -1);
    assert_string_equal(err, "expected 2-d x 2-d, 3-d x 3-d or 3-d x 2-d tensors, got (3,) and (4,2)");
    a.ndim = 2;
    b.ndim = 3, b.shape[0] = 2, b.shape[1] = 4, b.shape[2] = 6;
    assert_int_equal(matmul_check(&a, &b, &cn, cs, err, sizeof err), -1);
    assert_string_equal(err, "expected 2-d x 2-d, 3-d x 3-d or 3-d x 2-d tensors, got (3,4) and (2,4,6)");

    a.ndim = 3, a.shape[0] = 3, a.shape[1] = 5, a.shape[2] = 4; /* batch 3 vs 2 */
    assert_int_equal(matmul_check(&a, &b, &cn, cs, err, sizeof err), -1);
    assert_string_equal(err, "shapes (3,5,4) and (2,4,6) do not match");
    b.shape[0] = 3;
    assert_int_equal(matmul_check(&a, &b, &cn, cs, err, sizeof err), 0);
    assert_int_equal(cn, 3);
    assert_true(cs[0] == 3 && cs[1] == 5 && cs[2] == 6);
    b.ndim = 2, b.shape[0] = 4, b.shape[1] = 7; /* 3-d x 2-d */
    assert_int_equal(matmul_check(&a, &b, &cn, cs, err, sizeof err), 0);
    assert_true(cn == 3 && cs[0] == 3 && cs[1] == 5 && cs[2] == 7);
    a.ndim = 4, a.shape[3] = 4;
    assert_int_equal(matmul_check(&a, &b, &cn, cs, err, sizeof err), -1);
    assert_string_equal(err, "expected 2-d x 2-d, 3-d x 3-d or 3-d x 2-d tensors, got (3,5,4,4) and (4,7)");
}

enum MatLayout { MAT_CONTIGUOUS, MAT_TRANSPOSED, MAT_NARROWED, MAT_STRIDED, MAT_BROADCAST, MAT_COUNT };

/* A (batch?, r, c) operand in a given layout. TRANSPOSED and NARROWED are
 * read by BLAS in place (trans flag, leading dimension > cols); STRIDED
 * (every other column) and BROADCAST (stride-0 rows or batch) must be copied. */
static Tensor make_mat(int batch, int64_t r, int64_t c, int layout) {
    int ndim = batch ? 3 : 2;
    int64_t s[3], *m = s + (ndim - 2);
    if (batch) s[0] = batch;
    m[0] = r, m[1] = c;
    Tensor t;
    int64_t bs[3];
    memcpy(bs, s, sizeof s);
    int64_t *bm = bs + (ndim - 2);
    switch (layout) {
    case MAT_TRANSPOSED:
        bm[0] = c, bm[1] = r;
        assert_int_equal(tensor_init(&t, ndim, bs), TENSOR_OK);
        tensor_transpose(&t, ndim - 2, ndim - 1);
        break;
    case MAT_NARROWED:
        bm[0] = r + 3, bm[1] = c + 5;
        assert_int_equal(tensor_init(&t, ndim, bs), TENSOR_OK);
        tensor_narrow(&t, ndim - 2, 2, r);
        tensor_narrow(&t, ndim - 1, 3, c);
        break;
    case MAT_STRIDED:
        bm[1] = 2 * c;
        assert_int_equal(tensor_init(&t, ndim, bs), TENSOR_OK);
        t.shape[ndim - 1] = c;
        t.stride[ndim - 1] = 2;
        break;
    case MAT_BROADCAST:
        if (batch) bs[0] = 1;
        else bm[0] = 1;
        assert_int_equal(tensor_init(&t, ndim, bs), TENSOR_OK);
        t.shape[0] = s[0];
        t.stride[0] = 0;
        break;
    default:
        assert_int_equal(tensor_init(&t, ndim, s), TENSOR_OK);
    }
    for (int64_t i = 0; i < t.storage->size; i++) t.storage->data[i] = rand_range(-1, 1);
    return t;
}

/* c = a @ b against a double triple loop, |error| <= 1e-5 * sum |a||b|. */
static void check_matmul(int batch, int64_t m, int64_t k, int64_t n, int la, int lb, int b_batched) {
    Tensor a = make_mat(batch, m, k, la);
    Tensor b = make_mat(b_batched ? batch : 0, k, n, lb);
    int cn;
    int64_t cs[3];
    char err[256];
    if (matmul_check(&a, &b, &cn, cs, err, sizeof err) != 0) fail_msg("matmul_check: %s", err);
    Tensor c;
    assert_int_equal(tensor_init(&c, cn, cs), TENSOR_OK);
    tensor_fill(&c, 12345.0f); /* k = 0 must still write zeros */
    assert_int_equal(tensor_matmul(&c, &a, &b), TENSOR_OK);
    int nb = batch ? batch : 1;
    for (int64_t p = 0; p < nb; p++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double ref = 0, mag = 0;
                for (int64_t q = 0; q < k; q++) {
                    int64_t ia[3] = {p, i, q}, ib[3] = {p, q, j};
                    double x = *elem(&a, batch ? ia : ia + 1), y = *elem(&b, b_batched ? ib : ib + 1);
                    ref += x * y;
                    mag += fabs(x * y);
                }
                int64_t ic[3] = {p, i, j};
                float got = *elem(&c, batch ? ic : ic + 1);
                if (!(fabs(got - ref) <= 1e-5 * mag) && !(mag == 0 && got == 0))
                    fail_msg("matmul batch %d (%lld,%lld)x(%lld,%lld) layouts a=%d b=%d%s at [%lld,%lld,%lld]: got %.9g, "
                             "want %.9g",
                             batch, (long long)m, (long long)k, (long long)k, (long long)n, la, lb,
                             b_batched ? "" : " (b shared)", (long long)p, (long long)i, (long long)j, (double)got, ref);
            }
    tensor_release(&a);
    tensor_release(&b);
    tensor_release(&c);
}

static void test_matmul_2d_layouts(void **state) {
    for (int la = 0; la < MAT_COUNT; la++)
        for (int lb = 0; lb < MAT_COUNT; lb++)
            for (int trial = 0; trial < 4; trial++) {
                int64_t m = 1 + (int64_t)rng_below(&trng, 40), k = 1 + (int64_t)rng_below(&trng, 64),
                        n = 1 + (int64_t)rng_below(&trng, 40);
                if (trial == 0) m = 1; /* row and column vectors take the ld special cases */
                if (trial == 1) n = 1;
                if (trial == 2) k = 1;
                check_matmul(0, m, k, n, la, lb, 0);
            }
}

static void test_matmul_batched_layouts(void **state) {
    for (int la = 0; la < MAT_COUNT; la++)
        for (int lb = 0; lb < MAT_COUNT; lb++)
            for (int trial = 0; trial < 2; trial++) {
                int batch = 1 + (int)rng_below(&trng, 4);
                int64_t m = 1 + (int64_t)rng_below(&trng, 20), k = 1 + (int64_t)rng_below(&trng, 30),
                        n = 1 + (int64_t)rng_below(&trng, 20);
                check_matmul(batch, m, k, n, la, lb, 1);  /* 3-d x 3-d */
                check_matmul(batch, m, k, n, la, lb, 0);  /* 3-d x 2-d */
            }
}

static void test_matmul_batch_from_middle_dim(void **state) {
    /* (n, B, k) storage permuted to (B, n, k): rows of one batch are B*k apart. */
    int64_t s[3] = {5, 3, 7};
    Tensor a;
    assert_int_equal(tensor_init(&a, 3, s), TENSOR_OK);
    for (int64_t i = 0; i < a.storage->size; i++) a.storage->data[i] = rand_range(-1, 1);
    tensor_transpose(&a, 0, 1);
    Tensor b = make_mat(3, 7, 4, MAT_CONTIGUOUS);
    Tensor c;
    assert_int_equal(tensor_init(&c, 3, (int64_t[]){3, 5, 4}), TENSOR_OK);
    assert_int_equal(tensor_matmul(&c, &a, &b), TENSOR_OK);
    for (int64_t p = 0; p < 3; p++)
        for (int64_t i = 0; i < 5; i++)
            for (int64_t j = 0; j < 4; j++) {
                double ref = 0, mag = 0;
                for (int64_t q = 0; q < 7; q++) {
                    double x = *elem(&a, (int64_t[]){p, i, q}), y = *elem(&b, (int64_t[]){p, q, j});
                    ref += x * y;
                    mag += fabs(x * y);
                }
                float got = *elem(&c, (int64_t[]){p, i, j});
                if (!(fabs(got - ref) <= 1e-5 * mag)) fail_msg("permuted batch: got %g, want %g", (double)got, ref);
            }
    tensor_release(&a);
    tensor_release(&b);
    tensor_release(&c);
}

static void test_matmul_empty(void **state) {
    /* k = 0: the product is all zeros (c was filled with garbage first). */
    for (int la = 0; la < MAT_COUNT; la++) {
        check_matmul(0, 3, 0, 4, la, MAT_CONTIGUOUS, 0);
        check_matmul(2, 3, 0, 4, MAT_CONTIGUOUS, la, 1);
    }
    /* m = 0, n = 0 and batch 0: nothing to compute, nothing may be touched. */
    check_matmul(0, 0, 5, 4, MAT_CONTIGUOUS, MAT_CONTIGUOUS, 0);
    check_matmul(0, 3, 5, 0, MAT_TRANSPOSED, MAT_CONTIGUOUS, 0);
    check_matmul(0, 0, 0, 0, MAT_CONTIGUOUS, MAT_CONTIGUOUS, 0);
    Tensor a, b = make_mat(0, 5, 2, MAT_CONTIGUOUS);
    int64_t sa[3] = {0, 3, 5}; /* batch 0 x shared (5,2) */
    assert_int_equal(tensor_init(&a, 3, sa), TENSOR_OK);
    Tensor c;
    int64_t sc[3] = {0, 3, 2};
    assert_int_equal(tensor_init(&c, 3, sc), TENSOR_OK);
    assert_int_equal(tensor_matmul(&c, &a, &b), TENSOR_OK);
    tensor_release(&a);
    tensor_release(&b);
    tensor_release(&c);
}

/* ---- rng ---- */

static void test_rng_known_values(void **state) {
    /* splitmix64(0) outputs and xoshiro256** from state {1,2,3,4}: the
     * reference implementations' published sequences. */
    Rng r;
    rng_seed(&r, 0);
    assert_true(r.s[0] == 0xe220a8397b1dcdafull);
    assert_true(r.s[1] == 0x6e789e6aa1b965f4ull);
    assert_true(r.s[2] == 0x06c45d188009454full);
    assert_true(r.s[3] == 0xf88bb8a8724c81ecull);
    Rng x = {{1, 2, 3, 4}, 0, 0};
    const uint64_t want[6] = {11520ull, 0ull, 1509978240ull, 1215971899390074240ull, 1216172134540287360ull,
                              607988272756665600ull};
    for (int i = 0; i < 6; i++) assert_true(rng_next(&x) == want[i]);
}

static void test_rng_determinism(void **state) {
    Rng a, b, c;
    rng_seed(&a, test_seed);
    rng_seed(&b, test_seed);
    rng_seed(&c, test_seed + 1);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = rng_next(&a), y = rng_next(&b), z = rng_next(&c);
        assert_true(x == y);
        differ += x != z;
    }
    assert_true(differ > 990);
    /* Normals come in pairs: re-seeding drops the spare so streams repeat. */
    rng_seed(&a, 7);
    double n1 = rng_normal(&a);
    rng_normal(&a);
    rng_normal(&a); /* leaves a spare behind */
    rng_seed(&a, 7);
    assert_true(rng_normal(&a) == n1);
}

static void test_rng_uniform_range_and_moments(void **state) {
    Rng r;
    rng_seed(&r, test_seed);
    const int n = 1000000;
    double sum = 0, sum2 = 0, lo = 1, hi = 0;
    for (int i = 0; i < n; i++) {
        double u = rng_uniform(&r);
        if (!(u >= 0.0 && u < 1.0)) fail_msg("rng_uniform gave %.17g, outside [0, 1)", u);
        if (u * 0x1.0p53 != floor(u * 0x1.0p53)) fail_msg("rng_uniform gave %.17g, not a multiple of 2^-53", u);
        sum += u;
        sum2 += u * u;
        if (u < lo) lo = u;
        if (u > hi) hi = u;
    }
    double mean = sum / n, var = sum2 / n - mean * mean;
    /* The mean's standard error is 0.29/1000: 0.002 is about 7 sigma. */
    assert_true(fabs(mean - 0.5) < 0.002);
    assert_true(fabs(var - 1.0 / 12) < 0.002);
    assert_true(lo < 1e-4 && hi > 1 - 1e-4);
}

static void test_rng_normal_moments(void **state) {
    Rng r;
    rng_seed(&r, test_seed);
    const int n = 1000000;
    double sum = 0, sum2 = 0, sum4 = 0;
    int beyond3 = 0;
    for (int i = 0; i < n; i++) {
        double z = rng_normal(&r);
        if (!isfinite(z)) fail_msg("rng_normal gave %g", z);
        sum += z;
        sum2 += z * z;
        sum4 += z * z * z * z;
        beyond3 += fabs(z) > 3;
    }
    double mean = sum / n, sd = sqrt(sum2 / n - mean * mean);
    if (!(fabs(mean) < 0.01 && fabs(sd - 1) < 0.01)) fail_msg("normal mean %g, sd %g", mean, sd);
    assert_true(fabs(sum4 / n - 3) < 0.05);                    /* kurtosis of a normal */
    assert_true(beyond3 > 0.0027 * n * 0.8 && beyond3 < 0.0027 * n * 1.2); /* tails */
}

/* The dropout mask makes the decisions of rng_uniform(r) < p, draw for draw. */
static void test_rng_dropout_mask(void **state) {
    const double ps[] = {0, 0x1p-53, 1e-3, (double)0.2f, 0.25, 0.5, (double)0.7f, 1 - 0x1p-53, 1};
    enum { N = 200000 };
    static float mask[N];
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        Rng a, b;
        rng_seed(&a, test_seed + k);
        rng_seed(&b, test_seed + k);
        rng_dropout_mask(&a, mask, N, ps[k], 2.5f);
        int64_t dropped = 0;
        for (int64_t i = 0; i < N; i++) {
            float want = rng_uniform(&b) < ps[k] ? 0.0f : 2.5f;
            if (mask[i] != want) fail_msg("p = %.17g, draw %lld: mask %g, rng_uniform says %g", ps[k], (long long)i, mask[i], want);
            dropped += mask[i] == 0;
        }
        assert_true(a.s[0] == b.s[0] && a.s[3] == b.s[3]); /* N draws each */
        if (ps[k] == 0) assert_int_equal(dropped, 0);
        if (ps[k] == 1) assert_int_equal(dropped, N);
        if (ps[k] == 0.5 && (dropped < N / 2 - 2000 || dropped > N / 2 + 2000)) fail_msg("p = 0.5 dropped %lld of %d", (long long)dropped, N);
    }
}

static void test_rng_below_unbiased(void **state) {
    Rng r;
    rng_seed(&r, test_seed);
    assert_true(rng_below(&r, 0) == 0);
    for (int i = 0; i < 100; i++) assert_true(rng_below(&r, 1) == 0);
    /* Chi-square over 7 buckets (6 degrees of freedom): 99.99% quantile ~ 27.9. */
    const int buckets = 7, n = 700000;
    int count[7] = {0};
    for (int i = 0; i < n; i++) {
        uint64_t v = rng_below(&r, buckets);
        if (v >= (uint64_t)buckets) fail_msg("rng_below(7) gave %llu", (unsigned long long)v);
        count[v]++;
    }
    double chi2 = 0, e = (double)n / buckets;
    for (int i = 0; i < buckets; i++) chi2 += (count[i] - e) * (count[i] - e) / e;
    if (chi2 > 27.9) fail_msg("rng_below(7) chi-square %g over 6 dof", chi2);
    /* A bound just above 2^63: a plain modulo would put 2/3 of draws in the
     * lower half; rejection sampling keeps it at 1/2. */
    uint64_t big = (1ull << 63) + (1ull << 62);
    int low = 0;
    for (int i = 0; i < 100000; i++) {
        uint64_t v = rng_below(&r, big);
        assert_true(v < big);
        low += v < big / 2;
    }
    assert_true(low > 49000 && low < 51000);
    uint64_t top = UINT64_MAX;
    for (int i = 0; i < 1000; i++) assert_true(rng_below(&r, top) < top);
}

/* ---- threads ---- */

static void test_num_threads(void **state) {
    int before = dd_get_num_threads();
    assert_true(before >= 1);
    dd_set_num_threads(1);
    assert_int_equal(dd_get_num_threads(), 1);
    dd_set_num_threads(0); /* clamped */
    assert_int_equal(dd_get_num_threads(), 1);
    check_matmul(0, 33, 17, 29, MAT_CONTIGUOUS, MAT_TRANSPOSED, 0);
    dd_set_num_threads(2);
    assert_int_equal(dd_get_num_threads(), 2);
    check_matmul(0, 130, 60, 70, MAT_TRANSPOSED, MAT_NARROWED, 0);
    dd_set_num_threads(before);
}

int main(void) {
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const char *env = getenv("DD_TEST_SEED");
    test_seed = env && *env ? strtoull(env, NULL, 10) : 1234;
    printf("# test seed: %llu (set DD_TEST_SEED to replay)\n", (unsigned long long)test_seed);
    fflush(stdout);
    rng_seed(&trng, test_seed);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_check_limits),
        cmocka_unit_test(test_shape_check_overflow),
        cmocka_unit_test(test_shape_format),
        cmocka_unit_test(test_storage_limits),
        cmocka_unit_test(test_storage_new_zeroed_and_refcounted),
        cmocka_unit_test(test_storage_large_is_lazy),
        cmocka_unit_test(test_views_share_storage),
        cmocka_unit_test(test_iter_order_transposed_narrowed),
        cmocka_unit_test(test_iter_matches_strides_random),
        cmocka_unit_test(test_copy_noncontiguous),
        cmocka_unit_test(test_copy_overlapping),
        cmocka_unit_test(test_fill_views),
        cmocka_unit_test(test_binary_broadcast_vs_reference),
        cmocka_unit_test(test_binary_inplace_alias),
        cmocka_unit_test(test_binary_nan_max_min),
        cmocka_unit_test(test_binary_scalar_both_sides),
        cmocka_unit_test(test_unary_vs_libm),
        cmocka_unit_test(test_unary_special_values),
        cmocka_unit_test(test_clamp),
        cmocka_unit_test(test_reduce_all_views),
        cmocka_unit_test(test_reduce_all_nan_and_ties),
        cmocka_unit_test(test_reduce_dim_views),
        cmocka_unit_test(test_matmul_check_messages),
        cmocka_unit_test(test_matmul_2d_layouts),
        cmocka_unit_test(test_matmul_batched_layouts),
        cmocka_unit_test(test_matmul_batch_from_middle_dim),
        cmocka_unit_test(test_matmul_empty),
        cmocka_unit_test(test_rng_known_values),
        cmocka_unit_test(test_rng_determinism),
        cmocka_unit_test(test_rng_uniform_range_and_moments),
        cmocka_unit_test(test_rng_normal_moments),
        cmocka_unit_test(test_rng_below_unbiased),
        cmocka_unit_test(test_rng_dropout_mask),
        cmocka_unit_test(test_num_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* tensor_math.h: element-wise math with broadcasting, reductions and matmul
 * over Tensor views. Plain C; shapes are checked by the caller with the
 * *_check functions, which return 0 or write a message and return -1. */
#ifndef DD_TENSOR_MATH_H
#define DD_TENSOR_MATH_H

#include <stddef.h>
#include "tensor.h"

typedef enum BinaryOp {
    BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_POW, BIN_MAX, BIN_MIN,
    BIN_LT, BIN_LE, BIN_GT, BIN_GE, BIN_EQ, BIN_NE,
} BinaryOp;

typedef enum UnaryOp {
    UN_NEG, UN_EXP, UN_LOG, UN_SQRT, UN_ABS, UN_TANH, UN_SIGMOID, UN_RELU,
    UN_SIN, UN_COS, UN_FLOOR, UN_CEIL, UN_ROUND, UN_SIGN, UN_SQUARE,
} UnaryOp;

typedef enum ReduceOp { RED_SUM, RED_MEAN, RED_MAX, RED_MIN, RED_ARGMAX, RED_ARGMIN } ReduceOp;

/* NumPy broadcasting: aligns trailing dims; sizes must match or be 1. */
int broadcast_shapes_check(int an, const int64_t *as, int bn, const int64_t *bs,
                           int *on, int64_t *os, char *err, size_t errlen);
/* A view of t expanded to (ndim, shape) with stride 0 on broadcast dims. */
void tensor_broadcast_view(Tensor *view, const Tensor *t, int ndim, const int64_t *shape);

/* out = a op b; all three already have out's shape (use broadcast views).
 * out may alias a or b exactly (in-place forms). */
void tensor_binary(Tensor *out, const Tensor *a, const Tensor *b, BinaryOp op);
/* out = a op s, or s op a when scalar_left. */
void tensor_binary_scalar(Tensor *out, const Tensor *a, float s, BinaryOp op, int scalar_left);
void tensor_unary(Tensor *out, const Tensor *a, UnaryOp op);
void tensor_clamp(Tensor *out, const Tensor *a, float lo, float hi);

/* Over all elements; ARGMAX/ARGMIN give the 0-based flat index. Empty: NAN. */
double tensor_reduce_all(const Tensor *a, ReduceOp op);
/* Over dimension dim; out has a's shape without dim (or with size 1 when
 * keepdim). For MAX/MIN, idx (may be NULL) receives 0-based indices. */
void tensor_reduce_dim(Tensor *out, Tensor *idx, const Tensor *a, int dim, ReduceOp op);

/* c = a @ b for (n,k)x(k,m) or batched (B,n,k)x(B,k,m); b may be 2-D with a
 * 3-D a (shared across the batch). c is contiguous with the right shape. */
int matmul_check(const Tensor *a, const Tensor *b, int *cn, int64_t *cs, char *err, size_t errlen);
TensorStatus tensor_matmul(Tensor *c, const Tensor *a, const Tensor *b);

/* y = A x as sgemm with explicit layout; the one place that calls BLAS, so
 * the thread policy (see dd_set_num_threads) is applied in one spot. */
void blas_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc);

/* dst[i] += src[i] for n floats (the arrays must not overlap): col2im's rows,
 * and the sums of per-thread gradient parts. */
void floats_add(float *dst, const float *src, int64_t n);

void dd_set_num_threads(int n);
int dd_get_num_threads(void);

#endif

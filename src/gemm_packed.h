/* gemm_packed.h: C (M, N) (+)= A (M, K) @ B (K, N) with B packed once and
 * reused over many products: the LSTM's per-time-step products with its
 * recurrent weights (plain C, no Lua).
 *
 * OpenBLAS packs both operands on every call; for the LSTM's step, a few
 * dozen rows of h against a (H, 4H) weight matrix, packing the weights was
 * the largest cost after the multiply itself, paid T times per layer per
 * thread. Here the weights are packed once per forward or backward
 * (gemm_pack_b) into panels of 24 columns, k-major, and every step reads the
 * panels as they are. The kernel keeps 4 rows x 24 columns of C in 12 AVX2
 * registers; per k it loads 3 vectors of the panel and broadcasts 4 entries
 * of A. Single-threaded: the LSTM already runs one batch block per thread.
 *
 * gemm_packed_usable() says whether the CPU has AVX2 and FMA (and the path
 * is enabled); callers keep
 * their blas_sgemm path otherwise. The sums run over k in order, one
 * product at a time, so results do not depend on timing. */
#ifndef DD_GEMM_PACKED_H
#define DD_GEMM_PACKED_H

#include <stdint.h>

int gemm_packed_usable(void);
/* Tests compare both paths: 0 makes gemm_packed_usable() say 0. */
void gemm_packed_set_enabled(int on);

/* Floats of a packed (K, N) operand: N rounded up to 24, times K. */
int64_t gemm_packed_floats(int64_t k, int64_t n);
/* bp = B packed: B is (K, N) with leading dimension ldb, or with trans_b
 * the (N, K) matrix whose transpose is B. Columns past N are zeros. */
void gemm_pack_b(float *bp, const float *b, int trans_b, int64_t k, int64_t n, int64_t ldb);
/* C (M, N, leading dimension ldc) = beta * C + A (M, K, lda) @ B, B packed
 * by gemm_pack_b; beta is 0 (C is only written) or 1. */
void gemm_packed(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *bp, float beta, float *c,
                 int64_t ldc);

#endif

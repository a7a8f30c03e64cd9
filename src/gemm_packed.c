/* gemm_packed.c: products with a pre-packed right operand on AVX2 + FMA
 * (see gemm_packed.h for the contract and why). */
#include "gemm_packed.h"
#include "avx2.h"

/* rows of C per tile; columns per panel (3 vectors of 8) */
enum { MR = 4, NR = 24 };

static int enabled = 1;

void gemm_packed_set_enabled(int on) { enabled = on != 0; }

int gemm_packed_usable(void) { return enabled && cpu_has_avx2_fma(); }

int64_t gemm_packed_floats(int64_t k, int64_t n) { return (n + NR - 1) / NR * NR * k; }

void gemm_pack_b(float *bp, const float *b, int trans_b, int64_t k, int64_t n, int64_t ldb) {
    for (int64_t p = 0; p * NR < n; p++)
        for (int64_t kk = 0; kk < k; kk++, bp += NR)
            for (int64_t j = 0; j < NR; j++) {
                int64_t col = p * NR + j;
                bp[j] = col >= n ? 0.0f : trans_b ? b[col * ldb + kk] : b[kk * ldb + col];
            }
}

#if DD_AVX2

/* C[r][0 .. ncols) for r < mr: (beta C +) the sum over kk of A[r][kk] * panel[kk][..]. */
AVX2_INLINE void tile(int64_t k, const float *a, int64_t lda, const float *bp, float beta, float *c, int64_t ldc,
                      const int mr, int ncols) {
    __m256 acc[MR][3];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < 3; v++) acc[r][v] = _mm256_setzero_ps();
    for (int64_t kk = 0; kk < k; kk++, bp += NR) {
        __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8), b2 = _mm256_loadu_ps(bp + 16);
        for (int r = 0; r < mr; r++) {
            __m256 ar = _mm256_broadcast_ss(a + r * lda + kk);
            acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
            acc[r][2] = _mm256_fmadd_ps(ar, b2, acc[r][2]);
        }
    }
    for (int v = 0; v < 3; v++) {
        int cols = ncols - 8 * v;
        if (cols <= 0) break;
        __m256i mask = avx2_lanes(cols);
        for (int r = 0; r < mr; r++) {
            float *cp = c + r * ldc + 8 * v;
            __m256 sum = acc[r][v];
            if (cols >= 8) {
                if (beta != 0.0f) sum = _mm256_add_ps(_mm256_loadu_ps(cp), sum);
                _mm256_storeu_ps(cp, sum);
            } else {
                if (beta != 0.0f) sum = _mm256_add_ps(_mm256_maskload_ps(cp, mask), sum);
                _mm256_maskstore_ps(cp, mask, sum);
            }
        }
    }
}

AVX2_TARGET static void packed_x86(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *bp,
                              float beta, float *c, int64_t ldc) {
    for (int64_t p = 0; p * NR < n; p++) {
        const float *panel = bp + p * NR * k;
        int ncols = n - p * NR < NR ? (int)(n - p * NR) : NR;
        float *cp = c + p * NR;
        int64_t i = 0;
        for (; i + MR <= m; i += MR) tile(k, a + i * lda, lda, panel, beta, cp + i * ldc, ldc, 4, ncols);
        switch (m - i) {
        case 3: tile(k, a + i * lda, lda, panel, beta, cp + i * ldc, ldc, 3, ncols); break;
        case 2: tile(k, a + i * lda, lda, panel, beta, cp + i * ldc, ldc, 2, ncols); break;
        case 1: tile(k, a + i * lda, lda, panel, beta, cp + i * ldc, ldc, 1, ncols); break;
        default: break;
        }
    }
}

#endif

void gemm_packed(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *bp, float beta, float *c,
                 int64_t ldc) {
#if DD_AVX2
    packed_x86(m, n, k, a, lda, bp, beta, c, ldc);
#else
    (void)m, (void)n, (void)k, (void)a, (void)lda, (void)bp, (void)beta, (void)c, (void)ldc; /* never usable here */
#endif
}

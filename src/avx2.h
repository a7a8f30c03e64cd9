/* avx2.h: what the hand-vectorised kernels (conv_direct.c, gemm_packed.c)
 * share: the target attributes that let one function use AVX2 + FMA while
 * the rest of the program stays baseline x86-64, the run-time CPU check,
 * and the lane mask of masked loads and stores. Plain C, no Lua. */
#ifndef DD_AVX2_H
#define DD_AVX2_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DD_AVX2 1
#include <immintrin.h>
#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))

/* 1 when the CPU runs AVX2 and FMA (asked once). */
static inline int cpu_has_avx2_fma(void) {
    static int ok = -1;
    if (ok < 0) ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return ok;
}

/* lanes [0, n) on, the rest off: the mask of _mm256_mask{load,store}_ps */
AVX2_INLINE __m256i avx2_lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#else
#define DD_AVX2 0
static inline int cpu_has_avx2_fma(void) { return 0; }
#endif

#endif

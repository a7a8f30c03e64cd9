/* bench/sgemm.c: the reference point for dd.matmul: a direct cblas_sgemm on
 * n x n matrices. Prints {"n":..., "gflops":..., "threads":...} as JSON.
 * Usage: sgemm N REPS THREADS */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1024;
    int reps = argc > 2 ? atoi(argv[2]) : 10;
    int threads = argc > 3 ? atoi(argv[3]) : 2;
    if (n <= 0 || reps <= 0 || threads <= 0) return 2;
    openblas_set_num_threads(threads);
    float *a = aligned_alloc(64, (size_t)n * n * sizeof(float));
    float *b = aligned_alloc(64, (size_t)n * n * sizeof(float));
    float *c = aligned_alloc(64, (size_t)n * n * sizeof(float));
    if (!a || !b || !c) return 1;
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 7) * 0.25f;
        b[i] = (float)(i % 5) * 0.5f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n); /* warm-up */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("{\"n\": %d, \"threads\": %d, \"seconds\": %.6f, \"gflops\": %.3f}\n", n, threads, best,
           2.0 * n * n * (double)n / best * 1e-9);
    free(a);
    free(b);
    free(c);
    return 0;
}

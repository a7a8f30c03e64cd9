/* parallel.h: a small persistent thread pool for the image kernels (plain C,
 * no Lua).
 *
 * parallel_run(ntasks, fn, ctx) runs fn(ctx, t, ntasks) for t = 0 .. ntasks-1,
 * task t always on pool thread t (task 0 on the caller), and returns when all
 * are done. The assignment is static, so a kernel that splits its work by
 * task index gets the same split, and the same float results, on every run.
 *
 * While tasks run, OpenBLAS is held at one thread, so a task's GEMMs run on
 * its own thread and the pool never competes with BLAS's threads for the
 * cores; the BLAS thread count is restored afterwards. The pool has
 * dd_get_num_threads() threads (dd.set_num_threads), is created on first use
 * and joined at exit. Calls must come from one thread at a time (the Lua
 * thread); a task must not call parallel_run. */
#ifndef DD_PARALLEL_H
#define DD_PARALLEL_H

#include <stdint.h>

#define PARALLEL_MAX_THREADS 64

typedef void (*ParallelTask)(void *ctx, int task, int ntasks);

/* Threads a kernel may split into: dd_get_num_threads(), at most
 * PARALLEL_MAX_THREADS. */
int parallel_threads(void);

/* ntasks is clamped to [1, parallel_threads()]; with one task fn runs
 * inline and BLAS keeps its threads. */
void parallel_run(int ntasks, ParallelTask fn, void *ctx);

/* Task t's share [*lo, *hi) of n items in contiguous, nearly equal blocks. */
void parallel_split(int64_t *lo, int64_t *hi, int64_t n, int task, int ntasks);

/* Splits [0, n) over the pool for element-wise work: fn(ctx, lo, hi) on
 * blocks of at least min_block items (fewer tasks when n is small). */
typedef void (*ParallelRange)(void *ctx, int64_t lo, int64_t hi);
void parallel_for(int64_t n, int64_t min_block, ParallelRange fn, void *ctx);

#endif

/* parallel.c: the thread pool behind parallel.h.
 *
 * Workers sleep on a condition variable between calls: a call costs a
 * wake-up (tens of microseconds), small next to the convolutions it splits,
 * and idle workers burn no CPU the BLAS threads or the decoder could use.
 * A task whose worker could not be created runs on the caller after task 0,
 * so the split, and hence every float result, never depends on it. */
#include "parallel.h"
#include "tensor_math.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>

static struct {
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    pthread_t thread[PARALLEL_MAX_THREADS];
    int nworkers;              /* threads 1 .. nworkers exist */
    unsigned long born[PARALLEL_MAX_THREADS]; /* the generation each was created in */
    unsigned long generation;  /* bumped once per parallel_run */
    ParallelTask fn;
    void *ctx;
    int ntasks;    /* as given to every task */
    int nthreaded; /* tasks 1 .. nthreaded-1 run on workers, the rest on the caller */
    int pending, quit;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .start = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static void *worker_main(void *arg) {
    const int id = (int)(intptr_t)arg;
    pthread_mutex_lock(&pool.mu);
    unsigned long seen = pool.born[id]; /* its first job is the next generation */
    for (;;) {
        while (pool.generation == seen && !pool.quit) pthread_cond_wait(&pool.start, &pool.mu);
        if (pool.quit) break;
        seen = pool.generation;
        if (id >= pool.nthreaded) continue;
        ParallelTask fn = pool.fn;
        void *ctx = pool.ctx;
        int ntasks = pool.ntasks;
        pthread_mutex_unlock(&pool.mu);
        fn(ctx, id, ntasks);
        pthread_mutex_lock(&pool.mu);
        if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

static void pool_shutdown(void) {
    pthread_mutex_lock(&pool.mu);
    pool.quit = 1;
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.mu);
    for (int i = 1; i <= pool.nworkers; i++) pthread_join(pool.thread[i], NULL);
    pool.nworkers = 0;
}

/* Grows the pool to `want` workers (threads 1 .. want); returns how many
 * exist. Called with pool.mu held, never from a worker. */
static int pool_grow(int want) {
    static int registered;
    if (!registered) registered = atexit(pool_shutdown) == 0;
    if (!registered) return pool.nworkers; /* could not promise a join at exit: stay serial */
    while (pool.nworkers < want) {
        int id = pool.nworkers + 1;
        pool.born[id] = pool.generation;
        if (pthread_create(&pool.thread[id], NULL, worker_main, (void *)(intptr_t)id) != 0) break;
        pool.nworkers = id;
    }
    return pool.nworkers;
}

int parallel_threads(void) {
    int n = dd_get_num_threads();
    return n < 1 ? 1 : n > PARALLEL_MAX_THREADS ? PARALLEL_MAX_THREADS : n;
}

void parallel_run(int ntasks, ParallelTask fn, void *ctx) {
    int most = parallel_threads();
    if (ntasks > most) ntasks = most;
    if (ntasks <= 1) {
        fn(ctx, 0, 1);
        return;
    }
    /* One BLAS thread per task while the pool runs, set before any task
     * starts: no task's GEMM spawns BLAS threads next to the pool's. */
    int blas = dd_get_num_threads();
    if (blas > 1) openblas_set_num_threads(1);

    pthread_mutex_lock(&pool.mu);
    int workers = pool_grow(ntasks - 1);
    int threaded = workers < ntasks - 1 ? workers : ntasks - 1;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.ntasks = ntasks;
    pool.nthreaded = threaded + 1;
    pool.pending = threaded;
    pool.generation++;
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.mu);

    fn(ctx, 0, ntasks);
    for (int t = threaded + 1; t < ntasks; t++) fn(ctx, t, ntasks); /* tasks without a worker */

    pthread_mutex_lock(&pool.mu);
    while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    if (blas > 1) openblas_set_num_threads(blas);
}

void parallel_split(int64_t *lo, int64_t *hi, int64_t n, int task, int ntasks) {
    *lo = n * task / ntasks;
    *hi = n * (task + 1) / ntasks;
}

typedef struct RangeJob {
    int64_t n;
    ParallelRange fn;
    void *ctx;
} RangeJob;

static void range_task(void *arg, int task, int ntasks) {
    const RangeJob *job = arg;
    int64_t lo, hi;
    parallel_split(&lo, &hi, job->n, task, ntasks);
    if (hi > lo) job->fn(job->ctx, lo, hi);
}

void parallel_for(int64_t n, int64_t min_block, ParallelRange fn, void *ctx) {
    if (n <= 0) return;
    if (min_block < 1) min_block = 1;
    int64_t blocks = n / min_block;
    int ntasks = blocks < parallel_threads() ? (int)(blocks > 0 ? blocks : 1) : parallel_threads();
    if (ntasks <= 1) {
        fn(ctx, 0, n);
        return;
    }
    RangeJob job = {n, fn, ctx};
    parallel_run(ntasks, range_task, &job);
}

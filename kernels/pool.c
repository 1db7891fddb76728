/* pool.c - the process's compute thread pool.
 *
 * nthreads-1 pthread workers plus the calling thread (tid 0). ms_pool_run
 * publishes (fn, arg) and bumps a generation counter; workers that are spinning
 * see it at once, workers that went to sleep (futex on the generation word after
 * a short spin) are woken. The caller runs tid 0 itself, then waits for the
 * pending-worker count to reach zero (spin, then futex). Decode calls run a few
 * hundred times per token, so the hot path is two atomic RMWs and no syscalls
 * while the workers are still spinning from the previous call.
 *
 * Lost-wakeup freedom: a sleeper increments `sleepers` (seq_cst) before
 * futex_wait(gen, seen); the caller bumps gen (seq_cst) before reading
 * `sleepers`. Either the caller sees the sleeper and wakes it, or the sleeper's
 * futex_wait sees the new generation and returns at once. The completion wait
 * uses the same pattern with `caller_sleeping`.
 *
 * Workers block all signals. A 1-thread pool has no workers: ms_pool_run
 * calls fn inline. The pool also owns per-thread scratch buffers (tile buffers
 * of the prefill GEMM), the calling thread's buffer for prepared kernel inputs
 * (kept between calls: no malloc per matvec), and sets OpenBLAS to one thread
 * (we parallelise over row tiles ourselves). */
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cblas.h>

#include "kernels_impl.h"
#include "util.h"

/* Busy-wait iterations before sleeping (each one a pause; roughly 20-60 us). */
#define MS_POOL_SPIN 2048

typedef struct ms_pool_thread {
    struct ms_pool *pool;
    int tid;
    pthread_t th;
    void *scratch;
    size_t scratch_cap;
} ms_pool_thread;

struct ms_pool {
    int n;
    ms_pool_thread *t; /* [n]; t[0] is the caller (no pthread) */
    int started;       /* workers successfully created */
    /* The word workers spin on and the one they decrement live on separate
     * cache lines (no false sharing between waiting and finishing). */
    _Alignas(64) _Atomic uint32_t gen;
    _Atomic int sleepers;
    _Alignas(64) _Atomic int32_t pending;
    _Atomic int caller_sleeping;
    _Atomic int stop;
    ms_task_fn fn;
    void *arg;
    void *xbuf; /* the calling thread's input scratch (ms_pool_xbuf) */
    size_t xbuf_cap;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void futex_wait(void *addr, uint32_t val)
{
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(void *addr, int n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static void *worker_main(void *argp)
{
    ms_pool_thread *self = argp;
    ms_pool *p = self->pool;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int i = 0; g == seen && i < MS_POOL_SPIN; i++) {
            cpu_relax();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        while (g == seen) {
            atomic_fetch_add(&p->sleepers, 1);
            futex_wait(&p->gen, seen);
            atomic_fetch_sub(&p->sleepers, 1);
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        seen = g;
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        p->fn(p->arg, self->tid, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping)) futex_wake(&p->pending, 1);
    }
    return NULL;
}

ms_pool *ms_pool_create(int nthreads, ms_err *err)
{
    if (nthreads <= 0) nthreads = ms_physical_cores();
    if (nthreads > 1024) {
        ms_errf(err, EINVAL, "thread pool: %d threads is too many (max 1024)", nthreads);
        return NULL;
    }
    ms_pool *p = ms_aligned_alloc(64, sizeof *p);
    if (p) memset(p, 0, sizeof *p);
    ms_pool_thread *t = calloc((size_t)nthreads, sizeof *t);
    if (!p || !t) {
        free(p);
        free(t);
        ms_errf(err, ENOMEM, "thread pool: out of memory");
        return NULL;
    }
    p->n = nthreads;
    p->t = t;
    /* OpenBLAS must not start its own threads: we split GEMMs into row tiles. */
    openblas_set_num_threads(1);
    for (int i = 0; i < nthreads; i++) {
        t[i].pool = p;
        t[i].tid = i;
    }
    /* Workers block every signal (they inherit the mask at creation): signals
     * such as SIGINT go to the application's threads, never into a kernel. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    for (int i = 1; i < nthreads && !rc; i++) {
        rc = pthread_create(&t[i].th, NULL, worker_main, &t[i]);
        if (rc)
            ms_errf(err, rc, "thread pool: cannot start thread %d of %d: %s", i, nthreads, strerror(rc));
        else
            p->started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        ms_pool_destroy(p);
        return NULL;
    }
    return p;
}

void ms_pool_destroy(ms_pool *p)
{
    if (!p) return;
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    futex_wake(&p->gen, INT32_MAX);
    for (int i = 1; i <= p->started; i++) pthread_join(p->t[i].th, NULL);
    for (int i = 0; i < p->n; i++) free(p->t[i].scratch);
    free(p->xbuf);
    free(p->t);
    free(p);
}

int ms_pool_size(const ms_pool *p)
{
    return p ? p->n : 1;
}

void ms_pool_run(ms_pool *p, ms_task_fn fn, void *arg)
{
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: publishes fn/arg/pending */
    if (atomic_load(&p->sleepers) > 0) futex_wake(&p->gen, INT32_MAX);
    fn(arg, 0, p->n);
    int32_t v = atomic_load_explicit(&p->pending, memory_order_acquire);
    for (int i = 0; v != 0 && i < MS_POOL_SPIN; i++) {
        cpu_relax();
        v = atomic_load_explicit(&p->pending, memory_order_acquire);
    }
    if (v != 0) {
        atomic_store(&p->caller_sleeping, 1);
        while ((v = atomic_load(&p->pending)) != 0) futex_wait(&p->pending, (uint32_t)v);
        atomic_store(&p->caller_sleeping, 0);
    }
}

int ms_pool_reserve(ms_pool *p, size_t bytes)
{
    if (!p) return 0;
    bytes = MS_ALIGN_UP(bytes, 64);
    for (int i = 0; i < p->n; i++) {
        ms_pool_thread *t = &p->t[i];
        if (t->scratch_cap >= bytes) continue;
        void *nb = ms_aligned_alloc(64, bytes);
        if (!nb) return -ENOMEM;
        free(t->scratch);
        t->scratch = nb;
        t->scratch_cap = bytes;
    }
    return 0;
}

void *ms_pool_xbuf(ms_pool *p, size_t bytes)
{
    if (!p) return NULL;
    if (p->xbuf_cap < bytes) {
        size_t cap = MS_ALIGN_UP(bytes, 4096); /* exact: ms_compute_scratch_bytes bounds it */
        void *nb = ms_aligned_alloc(64, cap);
        if (!nb) return NULL;
        free(p->xbuf);
        p->xbuf = nb;
        p->xbuf_cap = cap;
    }
    return p->xbuf;
}

size_t ms_pool_scratch_bytes(const ms_pool *p)
{
    if (!p) return 0;
    size_t n = p->xbuf_cap;
    for (int i = 0; i < p->n; i++) n += p->t[i].scratch_cap;
    return n;
}

void *ms_pool_scratch(ms_pool *p, int tid)
{
    return p ? p->t[tid].scratch : NULL;
}

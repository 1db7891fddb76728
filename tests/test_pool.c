/* test_pool.c - the compute thread pool: every thread runs each task exactly
 * once with its own tid, the caller is tid 0, runs complete before ms_pool_run
 * returns (also after the workers went to sleep), a 1-thread pool runs inline,
 * many short runs are cheap, destroy is clean, and OpenBLAS is single-threaded. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "kernels_impl.h"
#include "ms_test.h"
#include "util.h"

typedef struct count_task {
    _Atomic int calls;
    _Atomic int tid_hits[64];
    pthread_t caller;
    _Atomic int caller_was_tid0;
    int nth_seen;
    int64_t sum[64]; /* each thread writes its own slot */
} count_task;

static void count_fn(void *arg, int tid, int nth)
{
    count_task *t = arg;
    atomic_fetch_add(&t->calls, 1);
    atomic_fetch_add(&t->tid_hits[tid], 1);
    if (tid == 0 && pthread_equal(pthread_self(), t->caller)) atomic_store(&t->caller_was_tid0, 1);
    t->nth_seen = nth;
    int64_t s = 0;
    for (int i = tid; i < 100000; i += nth) s += i;
    t->sum[tid] = s;
}

static void test_each_thread_once(void **state)
{
    (void)state;
    ms_err err = {0};
    for (int n = 1; n <= 6; n++) {
        ms_pool *p = ms_pool_create(n, &err);
        assert_non_null(p);
        assert_int_equal(ms_pool_size(p), n);
        for (int rep = 0; rep < 200; rep++) {
            count_task t = {0};
            t.caller = pthread_self();
            ms_pool_run(p, count_fn, &t);
            /* everything is finished and visible when run returns */
            assert_int_equal(atomic_load(&t.calls), n);
            for (int i = 0; i < n; i++) assert_int_equal(atomic_load(&t.tid_hits[i]), 1);
            assert_int_equal(atomic_load(&t.caller_was_tid0), 1);
            int64_t s = 0;
            for (int i = 0; i < n; i++) s += t.sum[i];
            assert_true(s == 100000LL * 99999 / 2);
            if (rep % 50 == 49) usleep(20000); /* let the workers fall asleep (futex path) */
        }
        ms_pool_destroy(p);
    }
}

static void test_default_and_null(void **state)
{
    (void)state;
    ms_err err = {0};
    ms_pool *p = ms_pool_create(0, &err); /* 0 = physical cores */
    assert_non_null(p);
    assert_int_equal(ms_pool_size(p), ms_physical_cores());
    ms_pool_destroy(p);
    ms_pool_destroy(NULL);
    assert_int_equal(ms_pool_size(NULL), 1);
    count_task t = {0};
    t.caller = pthread_self();
    ms_pool_run(NULL, count_fn, &t); /* NULL pool: inline on the caller */
    assert_int_equal(atomic_load(&t.calls), 1);
    assert_int_equal(t.nth_seen, 1);
    assert_null(ms_pool_create(100000, &err));
    assert_non_null(strstr(err.msg, "too many"));
    /* OpenBLAS is forced to one thread once a pool exists. */
    p = ms_pool_create(2, &err);
    assert_int_equal(openblas_get_num_threads(), 1);
    ms_pool_destroy(p);
}

static void noop_fn(void *arg, int tid, int nth)
{
    (void)tid;
    (void)nth;
    atomic_fetch_add((_Atomic int *)arg, 1);
}

/* Back-to-back runs (decode issues hundreds per token): 20000 runs complete and
 * the per-run overhead is reported (not asserted: the machine is shared). */
static void test_many_runs(void **state)
{
    (void)state;
    ms_err err = {0};
    ms_pool *p = ms_pool_create(2, &err);
    assert_non_null(p);
    _Atomic int c = 0;
    const int runs = 20000;
    uint64_t t0 = ms_now_ns();
    for (int i = 0; i < runs; i++) ms_pool_run(p, noop_fn, (void *)&c);
    uint64_t t1 = ms_now_ns();
    assert_int_equal(atomic_load(&c), 2 * runs);
    print_message("pool: %.2f us per ms_pool_run (2 threads)\n", (double)(t1 - t0) / runs / 1000.0);
    ms_pool_destroy(p);
}

static void scratch_fn(void *arg, int tid, int nth)
{
    ms_pool *p = arg;
    unsigned char *s = ms_pool_scratch(p, tid);
    memset(s, tid + 1, 1 << 16);
    assert_true(((uintptr_t)s & 63) == 0);
}

static void test_scratch(void **state)
{
    (void)state;
    ms_err err = {0};
    ms_pool *p = ms_pool_create(3, &err);
    assert_int_equal(ms_pool_reserve(p, 1 << 16), 0);
    void *a = ms_pool_scratch(p, 1);
    assert_int_equal(ms_pool_reserve(p, 100), 0); /* smaller: kept */
    assert_ptr_equal(a, ms_pool_scratch(p, 1));
    ms_pool_run(p, scratch_fn, p);
    for (int t = 0; t < 3; t++) assert_int_equal(((unsigned char *)ms_pool_scratch(p, t))[12345], t + 1);
    assert_int_equal(ms_pool_reserve(p, 1 << 20), 0);
    ms_pool_destroy(p);
}

typedef struct for_task {
    _Atomic int hits[1000];
    _Atomic int bad_tid;
    int nth;
} for_task;

static void for_fn(void *arg, int i, int tid)
{
    for_task *t = arg;
    atomic_fetch_add(&t->hits[i], 1);
    if (tid < 0 || tid >= t->nth) atomic_store(&t->bad_tid, 1);
}

/* ms_pool_for: every index exactly once, tids in range, on a pool and without one. */
static void test_pool_for(void **state)
{
    (void)state;
    ms_err err = {0};
    ms_pool *p = ms_pool_create(3, &err);
    assert_non_null(p);
    for (int variant = 0; variant < 3; variant++) {
        static for_task t;
        memset(&t, 0, sizeof t);
        int n = variant == 2 ? 1 : 1000;
        t.nth = variant ? 1 : 3;
        ms_pool_for(variant ? NULL : p, n, for_fn, &t);
        for (int i = 0; i < 1000; i++) assert_int_equal(atomic_load(&t.hits[i]), i < n);
        assert_int_equal(atomic_load(&t.bad_tid), 0);
    }
    ms_pool_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_thread_once),
        cmocka_unit_test(test_default_and_null),
        cmocka_unit_test(test_many_runs),
        cmocka_unit_test(test_scratch),
        cmocka_unit_test(test_pool_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

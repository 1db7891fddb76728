/* test_io_fault.c - fault injection through the "fault:" backend (issue 8):
 * short reads, EAGAIN, EINTR and delays are survived transparently (same bytes
 * as pread, through every inner backend); EIO surfaces as a clean per-request
 * error naming file, offset and errno, without a hang and without disturbing
 * the other requests; persistent EAGAIN gives up after the bounded retries; a
 * filesystem that refuses O_DIRECT reads falls back to buffered reads; the same
 * seed gives the same faults; MOESTREAM_IO_FAULT wraps any backend. Every test
 * is bounded by MST_TEST_DEADLINE_S (a hung reap fails in seconds). */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "ms_test.h"
#include "util.h"

static char *g_dir, *g_path[2];
static uint8_t *g_ref[2];
static uint64_t g_size[2] = {6u << 20, (3u << 20) + 777};

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static char *make_file(const char *name, uint64_t size, uint64_t seed, uint8_t **ref)
{
    char *path = mst_fmt("%s/%s", g_dir, name);
    uint8_t *b = malloc(size);
    uint64_t s = seed;
    for (uint64_t i = 0; i < size; i += 8) {
        uint64_t v = rng_next(&s);
        memcpy(b + i, &v, MS_MIN(8, size - i));
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_true(write(fd, b, size) == (ssize_t)size);
    assert_int_equal(fsync(fd), 0);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    *ref = b;
    return path;
}

typedef struct run_result {
    int ok, failed;
    ms_io_stats st;
    ms_err err;
    int64_t res[512];
} run_result;

/* n random requests (payload up to max_len) through backend; verify every
 * successful payload against the file; record results. */
static void run(const char *backend, unsigned flags, int n, uint64_t max_len, uint64_t seed, unsigned qd,
                run_result *out)
{
    assert_true(n <= 512);
    memset(out, 0, sizeof *out);
    const char *paths[2] = {g_path[0], g_path[1]};
    ms_io_config cfg = {.backend = backend, .queue_depth = qd, .chunk_bytes = 64 << 10, .n_threads = 3,
                        .max_retries = 20, .flags = flags};
    ms_io *io;
    ms_err err = {0};
    int rc = ms_io_open(&io, &cfg, paths, 2, &err);
    if (rc < 0) fprintf(stderr, "open %s: %s\n", backend, err.msg);
    assert_int_equal(rc, 0);
    uint64_t align = ms_io_alignment(io);
    ms_io_req *q = calloc((size_t)n, sizeof *q);
    ms_io_span *sp = calloc((size_t)n, sizeof *sp);
    uint64_t s = seed, total = 0;
    for (int i = 0; i < n; i++) {
        uint32_t f = (uint32_t)(rng_next(&s) % 2);
        uint64_t len = 1 + rng_next(&s) % max_len;
        uint64_t off = rng_next(&s) % (g_size[f] - len + 1);
        q[i] = (ms_io_req){.file = f, .offset = off, .len = len, .tag = (uint64_t)i};
        ms_io_span_align(align, off, len, &sp[i]);
        total += sp[i].aligned_len;
    }
    uint8_t *arena = ms_aligned_alloc(align, total);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        q[i].dst = arena + pos;
        pos += sp[i].aligned_len;
    }
    assert_int_equal(ms_io_register_buffers(io, arena, total, &err), 0);
    assert_int_equal(ms_io_queue(io, q, n, &err), n);
    assert_true(ms_io_submit(io, &err) >= 0);
    int got = 0;
    ms_io_cqe cq[16];
    while (got < n) {
        int k = ms_io_reap(io, cq, 16, 1, &out->err);
        assert_true(k > 0); /* never returns empty-handed while requests are pending */
        for (int j = 0; j < k; j++) {
            int i = (int)cq[j].tag;
            out->res[i] = cq[j].res;
            if (cq[j].res >= 0) {
                assert_int_equal(cq[j].res, q[i].len);
                assert_memory_equal(cq[j].data, g_ref[q[i].file] + q[i].offset, q[i].len);
                out->ok++;
            } else {
                assert_null(cq[j].data);
                out->failed++;
            }
        }
        got += k;
    }
    assert_int_equal(ms_io_pending(io), 0);
    ms_io_get_stats(io, &out->st);
    ms_io_close(io);
    free(arena);
    free(q);
    free(sp);
}

static void survive(const char *inner)
{
    if (!strcmp(inner, "uring") && !ms_io_uring_available()) {
        MST_SKIP("io_uring unavailable (refused by this kernel or sandbox)");
        return;
    }
    char spec[256];
    snprintf(spec, sizeof spec, "fault:inner=%s,short=0.3,eagain=0.2,eintr=0.1,delay_us=200,seed=5", inner);
    run_result r;
    run(spec, MS_IO_F_IGNORE_ENV, 300, 300 << 10, 42, 8, &r);
    assert_int_equal(r.failed, 0);
    assert_int_equal(r.ok, 300);
    assert_true(r.st.short_reads > 20);
    assert_true(r.st.retries > 20);
    char name[64];
    snprintf(name, sizeof name, "fault(%s)", inner);
    assert_string_equal(r.st.backend, name);
}

static void test_survive_uring(void **state) { (void)state; survive("uring"); }
static void test_survive_pread(void **state) { (void)state; survive("pread"); }
static void test_survive_mmap(void **state) { (void)state; survive("mmap"); }

/* Random EIO: the hit requests fail with file + offset + errno in the message,
 * the others deliver correct bytes, nothing hangs. */
static void test_eio_random(void **state)
{
    (void)state;
    run_result r;
    run("fault:inner=pread,eio=0.05,short=0.2,seed=9", MS_IO_F_IGNORE_ENV, 200, 200 << 10, 7, 8, &r);
    assert_true(r.failed > 0);
    assert_true(r.ok > 100);
    assert_int_equal(r.ok + r.failed, 200);
    assert_true(r.st.errors == (uint64_t)r.failed);
    assert_int_equal(r.err.code, EIO);
    assert_non_null(strstr(r.err.msg, "/f0.bin") ? strstr(r.err.msg, "/f0.bin") : strstr(r.err.msg, "/f1.bin"));
    assert_non_null(strstr(r.err.msg, "at offset"));
    assert_non_null(strstr(r.err.msg, "Input/output error"));
}

/* EIO at one offset (a bad sector): exactly the requests over it fail. */
static void test_eio_at_offset(void **state)
{
    (void)state;
    if (!ms_io_uring_available()) {
        MST_SKIP("io_uring unavailable (refused by this kernel or sandbox)");
        return;
    }
    const uint64_t bad = 2u << 20; /* byte 2 MiB, in either file */
    const char *paths[2] = {g_path[0], g_path[1]};
    ms_io_config cfg = {.backend = "fault:inner=uring,eio=1@2097152,delay_us=100", .chunk_bytes = 64 << 10,
                        .flags = MS_IO_F_IGNORE_ENV};
    ms_io *io;
    ms_err err = {0};
    assert_int_equal(ms_io_open(&io, &cfg, paths, 2, &err), 0);
    uint8_t *buf = ms_aligned_alloc(4096, 8 << 20);
    ms_io_req q[4] = {
        {.file = 0, .offset = bad - 1000000, .len = 2000000, .dst = buf, .tag = 0},      /* covers it */
        {.file = 0, .offset = 100, .len = 100000, .dst = buf + (2 << 20), .tag = 1},     /* far */
        {.file = 1, .offset = bad + 5, .len = 10, .dst = buf + (4 << 20), .tag = 2},     /* same block */
        {.file = 1, .offset = bad + 70000, .len = 5000, .dst = buf + (6 << 20), .tag = 3}, /* next chunk */
    };
    assert_int_equal(ms_io_queue(io, q, 4, &err), 4);
    ms_io_cqe cq[4];
    int n = 0;
    while (n < 4) {
        int k = ms_io_reap(io, cq + n, 4 - n, 1, &err);
        assert_true(k > 0);
        n += k;
    }
    for (int i = 0; i < 4; i++) {
        uint64_t t = cq[i].tag;
        if (t == 0 || t == 2) {
            assert_int_equal(cq[i].res, -EIO);
        } else {
            assert_int_equal(cq[i].res, q[t].len);
            assert_memory_equal(cq[i].data, g_ref[q[t].file] + q[t].offset, q[t].len);
        }
    }
    assert_non_null(strstr(err.msg, "Input/output error"));
    assert_non_null(strstr(err.msg, ".bin: read of"));
    ms_io_close(io);
    free(buf);
}

/* EAGAIN forever: bounded retries, then a clean error; no hang. */
static void test_eagain_forever(void **state)
{
    (void)state;
    double t0 = ms_now_s();
    run_result r;
    run("fault:inner=pread,eagain=1", MS_IO_F_IGNORE_ENV, 10, 50000, 3, 4, &r);
    assert_int_equal(r.failed, 10);
    assert_int_equal(r.err.code, EAGAIN);
    assert_non_null(strstr(r.err.msg, "after 20 retries"));
    assert_true(ms_now_s() - t0 < 20.0);
}

/* A filesystem that opens O_DIRECT but refuses the reads: buffered fallback,
 * reported, same bytes. */
static void test_nodirect_fallback(void **state)
{
    (void)state;
    const char *inners[2] = {"pread", "uring"};
    for (int k = 0; k < 2; k++) {
        if (!strcmp(inners[k], "uring") && !ms_io_uring_available())
            MST_SKIP("io_uring unavailable: only the pread inner backend was checked");
        char spec[128];
        snprintf(spec, sizeof spec, "fault:inner=%s,nodirect=1", inners[k]);
        const char *paths[2] = {g_path[0], g_path[1]};
        ms_io_config cfg = {.backend = spec, .flags = MS_IO_F_IGNORE_ENV};
        ms_io *io;
        ms_err err = {0};
        assert_int_equal(ms_io_open(&io, &cfg, paths, 2, &err), 0);
        if (!ms_io_file_direct(io, 0)) { /* scratch dir without O_DIRECT at all */
            ms_io_close(io);
            MST_SKIP("the scratch directory's filesystem refuses O_DIRECT");
            return;
        }
        ms_io_close(io);
        run_result r;
        run(spec, MS_IO_F_IGNORE_ENV, 100, 100000, 11, 8, &r);
        assert_int_equal(r.failed, 0);
        assert_int_equal(r.st.buffered_files, 2);
    }
}

/* Same seed, same request stream: the same faults, whatever the timing (here:
 * another queue depth). Which requests fail is fixed; the retry counters are
 * too when no request fails (a failed request's unstarted chunks are dropped,
 * and how many had started depends on timing). */
static void test_deterministic(void **state)
{
    (void)state;
    run_result a, b, c;
    run("fault:inner=pread,short=0.4,eagain=0.3,eio=0.02,seed=123", MS_IO_F_IGNORE_ENV, 200, 200000, 5, 8, &a);
    run("fault:inner=pread,short=0.4,eagain=0.3,eio=0.02,seed=123", MS_IO_F_IGNORE_ENV, 200, 200000, 5, 3, &b);
    assert_true(a.failed > 0);
    assert_int_equal(a.failed, b.failed);
    for (int i = 0; i < 200; i++) assert_true(a.res[i] == b.res[i]);
    run("fault:inner=pread,short=0.4,eagain=0.3,eio=0.02,seed=124", MS_IO_F_IGNORE_ENV, 200, 200000, 5, 8, &c);
    bool differ = false;
    for (int i = 0; i < 200; i++) differ |= a.res[i] != c.res[i];
    assert_true(differ);

    run("fault:inner=pread,short=0.4,eagain=0.3,seed=7", MS_IO_F_IGNORE_ENV, 200, 200000, 5, 8, &a);
    run("fault:inner=pread,short=0.4,eagain=0.3,seed=7", MS_IO_F_IGNORE_ENV, 200, 200000, 5, 2, &b);
    assert_int_equal(a.failed, 0);
    assert_true(a.st.short_reads > 0 && a.st.short_reads == b.st.short_reads);
    assert_true(a.st.retries > 0 && a.st.retries == b.st.retries);
    assert_true(a.st.reads == b.st.reads);
}

/* MOESTREAM_IO_FAULT wraps whatever backend was chosen. */
static void test_env(void **state)
{
    (void)state;
    setenv(MS_IO_FAULT_ENV, "eio=1", 1);
    const char *paths[1] = {g_path[0]};
    ms_io_config cfg = {.backend = "pread"};
    ms_io *io;
    ms_err err = {0};
    assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), 0);
    assert_string_equal(ms_io_backend(io), "fault(pread)");
    uint8_t *buf = ms_aligned_alloc(4096, 1 << 20);
    assert_int_equal(ms_io_read(io, 0, 5, 100, buf, &err), -EIO);
    assert_non_null(strstr(err.msg, "f0.bin: read of 100 bytes at offset 5 failed: Input/output error"));
    ms_io_close(io);
    cfg.flags = MS_IO_F_IGNORE_ENV;
    assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), 0);
    assert_string_equal(ms_io_backend(io), "pread");
    ms_io_close(io);
    setenv(MS_IO_FAULT_ENV, "eio=7", 1);
    cfg.flags = 0;
    ms_err_clear(&err);
    assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "eio=7"));
    unsetenv(MS_IO_FAULT_ENV);
    free(buf);
}

int main(void)
{
    g_dir = mst_tmpdir("test_io_fault");
    g_path[0] = make_file("f0.bin", g_size[0], 100, &g_ref[0]);
    g_path[1] = make_file("f1.bin", g_size[1], 200, &g_ref[1]);
    const struct CMUnitTest tests[] = {
        MST_BOUNDED_TEST(test_survive_uring),
        MST_BOUNDED_TEST(test_survive_pread),
        MST_BOUNDED_TEST(test_survive_mmap),
        MST_BOUNDED_TEST(test_eio_random),
        MST_BOUNDED_TEST(test_eio_at_offset),
        MST_BOUNDED_TEST(test_eagain_forever),
        MST_BOUNDED_TEST(test_nodirect_fallback),
        MST_BOUNDED_TEST(test_deterministic),
        MST_BOUNDED_TEST(test_env),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (int i = 0; i < 2; i++) {
        unlink(g_path[i]);
        free(g_path[i]);
        free(g_ref[i]);
    }
    free(g_dir);
    return rc;
}

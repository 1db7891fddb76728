/* test_io.c - the I/O layer (io/io.h) on real temp files: every backend returns
 * exactly the bytes pread returns for many random unaligned ranges, in one big
 * batch larger than the queue depth; range checks; files truncated or replaced
 * under an open context; the buffered fallback on tmpfs; and the page cache not
 * growing under the O_DIRECT backends (mincore), while it does grow under mmap.
 * Every test is bounded by MST_TEST_DEADLINE_S (a hung reap fails in seconds). */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "ms_test.h"
#include "util.h"

#define FILE_MB 16

static char *g_dir;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Write size pseudo-random bytes (content depends on seed), flush them to disk
 * and drop them from the page cache. */
static char *make_file(const char *dir, const char *name, uint64_t size, uint64_t seed)
{
    char *path = mst_fmt("%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    uint64_t buf[8192];
    uint64_t s = seed;
    for (uint64_t off = 0; off < size; off += sizeof buf) {
        for (size_t i = 0; i < MS_ARRAY_LEN(buf); i++) buf[i] = rng_next(&s);
        size_t n = (size_t)MS_MIN((uint64_t)sizeof buf, size - off);
        assert_true(write(fd, buf, n) == (ssize_t)n);
    }
    assert_int_equal(fsync(fd), 0);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    return path;
}

static uint8_t *slurp_bytes(const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *b = malloc((size_t)st.st_size + 1);
    assert_true(pread(fd, b, (size_t)st.st_size, 0) == st.st_size);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    *size = (uint64_t)st.st_size;
    return b;
}

/* Pages of the file resident in the page cache. */
static size_t resident_pages(const char *path)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = ((size_t)st.st_size + pg - 1) / pg;
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(m != MAP_FAILED);
    unsigned char *vec = malloc(n);
    assert_int_equal(mincore(m, (size_t)st.st_size, vec), 0);
    size_t r = 0;
    for (size_t i = 0; i < n; i++) r += vec[i] & 1;
    free(vec);
    munmap(m, (size_t)st.st_size);
    close(fd);
    return r;
}

static void drop_cache(const char *path)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

typedef struct batch {
    int n;
    ms_io_req *reqs;
    ms_io_span *spans;
    uint8_t *arena;
    size_t arena_len;
} batch;

/* n random requests over files[0..nf): lengths 1 B .. max_len, unaligned, each
 * given its aligned slot in one arena. */
static void batch_make(batch *b, int n, const uint64_t *sizes, int nf, uint64_t max_len, uint64_t align,
                       uint64_t seed)
{
    b->n = n;
    b->reqs = calloc((size_t)n, sizeof *b->reqs);
    b->spans = calloc((size_t)n, sizeof *b->spans);
    uint64_t s = seed, total = 0;
    for (int i = 0; i < n; i++) {
        uint32_t f = (uint32_t)(rng_next(&s) % (uint64_t)nf);
        uint64_t len = 1 + rng_next(&s) % max_len;
        if (i % 7 == 0) len = 1 + rng_next(&s) % 64; /* some tiny ones */
        if (len > sizes[f]) len = sizes[f];
        uint64_t off = rng_next(&s) % (sizes[f] - len + 1);
        if (i % 11 == 0) off = sizes[f] - len; /* some that end at EOF */
        b->reqs[i] = (ms_io_req){.file = f, .offset = off, .len = len, .tag = 1000 + (uint64_t)i};
        ms_io_span_align(align, off, len, &b->spans[i]);
        total += b->spans[i].aligned_len;
    }
    b->arena_len = total;
    b->arena = ms_aligned_alloc(align, total);
    assert_non_null(b->arena);
    memset(b->arena, 0xa5, total);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        b->reqs[i].dst = b->arena + pos;
        pos += b->spans[i].aligned_len;
    }
}

static void batch_free(batch *b)
{
    free(b->reqs);
    free(b->spans);
    free(b->arena);
}

/* Queue the whole batch, submit once, reap everything; check every payload
 * against the reference bytes. */
static void batch_run_check(ms_io *io, batch *b, uint8_t *const *ref, bool nocopy)
{
    ms_err err = {0};
    assert_int_equal(ms_io_queue(io, b->reqs, b->n, &err), b->n);
    assert_int_equal(ms_io_pending(io), b->n);
    assert_true(ms_io_submit(io, &err) >= 0);
    char *seen = calloc((size_t)b->n, 1);
    ms_io_cqe cq[32];
    int got = 0;
    while (got < b->n) {
        int k = ms_io_reap(io, cq, 32, 1, &err);
        if (k <= 0) fprintf(stderr, "reap: %d %s\n", k, err.msg);
        assert_true(k > 0);
        for (int j = 0; j < k; j++) {
            int i = (int)(cq[j].tag - 1000);
            assert_true(i >= 0 && i < b->n);
            assert_false(seen[i]);
            seen[i] = 1;
            if (cq[j].res != (int64_t)b->reqs[i].len) fprintf(stderr, "req %d: %s\n", i, err.msg);
            assert_int_equal(cq[j].res, b->reqs[i].len);
            const uint8_t *want = ref[b->reqs[i].file] + b->reqs[i].offset;
            if (!nocopy)
                assert_ptr_equal(cq[j].data, (uint8_t *)b->reqs[i].dst + b->spans[i].payload_skip);
            assert_memory_equal(cq[j].data, want, b->reqs[i].len);
        }
        got += k;
    }
    assert_int_equal(ms_io_pending(io), 0);
    assert_int_equal(ms_io_reap(io, cq, 32, 1, &err), 0); /* nothing left: returns, no hang */
    free(seen);
}

static bool backend_ok(const char *name)
{
    if (!strcmp(name, "uring") && !ms_io_uring_available()) return false;
    return true;
}

static void check_backend(const char *backend, unsigned flags, unsigned qd, uint64_t chunk)
{
    if (!backend_ok(backend)) {
        MST_SKIP("backend %s unavailable (io_uring refused by this kernel or sandbox)", backend);
        return;
    }
    const uint64_t sizes[2] = {(uint64_t)FILE_MB << 20, ((uint64_t)FILE_MB << 19) + 1234};
    char *p0 = make_file(g_dir, "a.bin", sizes[0], 1), *p1 = make_file(g_dir, "b.bin", sizes[1], 2);
    uint64_t sz;
    uint8_t *ref[2] = {slurp_bytes(p0, &sz), slurp_bytes(p1, &sz)};
    const char *paths[2] = {p0, p1};
    ms_io_config cfg = {.backend = backend, .queue_depth = qd, .chunk_bytes = chunk, .n_threads = 4,
                        .flags = flags | MS_IO_F_IGNORE_ENV};
    ms_io *io;
    ms_err err = {0};
    assert_int_equal(ms_io_open(&io, &cfg, paths, 2, &err), 0);
    assert_string_equal(ms_io_backend(io), backend);
    assert_int_equal(ms_io_n_files(io), 2);
    assert_true(ms_io_file_size(io, 1) == sizes[1]);
    uint64_t align = ms_io_alignment(io);
    assert_true(align >= MS_IO_ALIGN_MIN && (align & (align - 1)) == 0);
    batch b;
    batch_make(&b, 400, sizes, 2, 160 << 10, align, 77);
    bool nocopy = flags & MS_IO_F_MMAP_NOCOPY;
    if (!nocopy) assert_int_equal(ms_io_register_buffers(io, b.arena, b.arena_len, &err), 0);
    batch_run_check(io, &b, ref, nocopy);
    ms_io_stats st;
    ms_io_get_stats(io, &st);
    uint64_t payload = 0;
    for (int i = 0; i < b.n; i++) payload += b.reqs[i].len;
    assert_true(st.requests == (uint64_t)b.n);
    assert_true(st.errors == 0);
    assert_true(st.bytes_payload == payload);
    assert_true(st.bytes_read >= payload);
    assert_true(st.max_inflight <= qd);
    if (strcmp(backend, "mmap")) assert_true(st.max_inflight == qd); /* the queue was kept full */
    assert_true(st.submits >= 1);
    char line[512];
    ms_io_stats_line(io, line, sizeof line);
    assert_non_null(strstr(line, backend));
    if (!strcmp(backend, "uring")) {
        /* root or a generous memlock limit: the kernel accepts both */
        if (geteuid() == 0) {
            assert_true(st.fixed_files);
            assert_true(st.fixed_buffers);
        }
    }
    /* A second batch on the same context (slots reused). */
    batch b2;
    batch_make(&b2, 40, sizes, 2, 2 << 20, align, 78);
    batch_run_check(io, &b2, ref, nocopy);
    batch_free(&b2);
    ms_io_close(io);
    batch_free(&b);
    free(ref[0]);
    free(ref[1]);
    unlink(p0);
    unlink(p1);
    free(p0);
    free(p1);
}

static void test_span(void **state)
{
    (void)state;
    ms_io_span s;
    ms_io_span_align(4096, 0, 1, &s);
    assert_true(s.aligned_off == 0 && s.aligned_len == 4096 && s.payload_skip == 0);
    ms_io_span_align(4096, 4095, 2, &s);
    assert_true(s.aligned_off == 0 && s.aligned_len == 8192 && s.payload_skip == 4095);
    ms_io_span_align(4096, 8192, 4096, &s);
    assert_true(s.aligned_off == 8192 && s.aligned_len == 4096 && s.payload_skip == 0);
    ms_io_span_align(512, 1000, 100, &s);
    assert_true(s.aligned_off == 512 && s.aligned_len == 1024 && s.payload_skip == 488);
}

static void test_uring(void **state) { (void)state; check_backend("uring", 0, 8, 64 << 10); }
static void test_uring_big_chunks(void **state) { (void)state; check_backend("uring", 0, 64, 0); }
static void test_pread(void **state) { (void)state; check_backend("pread", 0, 8, 64 << 10); }
static void test_mmap(void **state) { (void)state; check_backend("mmap", 0, 16, 0); }
static void test_mmap_nocopy(void **state) { (void)state; check_backend("mmap", MS_IO_F_MMAP_NOCOPY, 16, 0); }
static void test_buffered_flag(void **state) { (void)state; check_backend("pread", MS_IO_F_NO_DIRECT, 4, 0); }

/* Bad requests are refused before anything is read, with the file named. */
static void test_bad_requests(void **state)
{
    (void)state;
    char *p = make_file(g_dir, "c.bin", 100000, 3);
    const char *paths[1] = {p};
    ms_io *io;
    ms_err err = {0};
    ms_io_config cfg = {.backend = "pread", .flags = MS_IO_F_IGNORE_ENV};
    assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), 0);
    uint8_t *buf = ms_aligned_alloc(4096, 1 << 20);
    ms_io_req q = {.file = 0, .offset = 99000, .len = 1001, .dst = buf};
    assert_int_equal(ms_io_queue(io, &q, 1, &err), -EIO);
    assert_non_null(strstr(err.msg, "c.bin"));
    assert_non_null(strstr(err.msg, "99000"));
    assert_non_null(strstr(err.msg, "past the end"));
    ms_err_clear(&err);
    q.offset = UINT64_MAX - 10; /* overflow */
    assert_int_equal(ms_io_queue(io, &q, 1, &err), -EIO);
    ms_err_clear(&err);
    q = (ms_io_req){.file = 1, .offset = 0, .len = 10, .dst = buf};
    assert_int_equal(ms_io_queue(io, &q, 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "file index 1"));
    ms_err_clear(&err);
    q = (ms_io_req){.file = 0, .offset = 0, .len = 10, .dst = buf + 8};
    assert_int_equal(ms_io_queue(io, &q, 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "not aligned"));
    ms_err_clear(&err);
    q = (ms_io_req){.file = 0, .offset = 5, .len = 0, .dst = buf};
    assert_int_equal(ms_io_queue(io, &q, 1, &err), -EINVAL);
    ms_err_clear(&err);
    /* all-or-nothing: one bad request, nothing queued */
    ms_io_req two[2] = {{.file = 0, .offset = 0, .len = 10, .dst = buf},
                        {.file = 0, .offset = 0, .len = 10, .dst = NULL}};
    assert_true(ms_io_queue(io, two, 2, &err) < 0);
    assert_int_equal(ms_io_pending(io), 0);
    ms_err_clear(&err);
    /* synchronous read; the last byte of the file */
    assert_int_equal(ms_io_read(io, 0, 99999, 1, buf, &err), 1);
    uint64_t sz;
    uint8_t *ref = slurp_bytes(p, &sz);
    assert_int_equal(buf[99999 % 4096], ref[99999]);
    free(ref);
    ms_io_close(io);
    free(buf);
    free(p);
}

static void test_open_errors(void **state)
{
    (void)state;
    ms_err err = {0};
    ms_io *io = NULL;
    char *missing = mst_fmt("%s/does-not-exist.safetensors", g_dir);
    const char *paths[1] = {missing};
    ms_io_config cfg = {.backend = "pread", .flags = MS_IO_F_IGNORE_ENV};
    assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), -ENOENT);
    assert_null(io);
    assert_non_null(strstr(err.msg, "does-not-exist.safetensors"));
    ms_err_clear(&err);
    const char *dirs[1] = {g_dir};
    assert_true(ms_io_open(&io, &cfg, dirs, 1, &err) < 0);
    assert_non_null(strstr(err.msg, "not a regular file"));
    ms_err_clear(&err);
    cfg.backend = "floppy";
    char *p = make_file(g_dir, "d.bin", 8192, 4);
    paths[0] = p;
    assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "floppy"));
    ms_err_clear(&err);
    cfg.backend = "fault:short=2";
    assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "short"));
    ms_err_clear(&err);
    cfg.backend = "fault:inner=tape";
    assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "tape"));
    ms_err_clear(&err);
    cfg.backend = "fault:bogus=1";
    assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "bogus"));
    ms_err_clear(&err);
    cfg.backend = NULL; /* auto */
    assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), 0);
    assert_string_equal(ms_io_backend(io), ms_io_uring_available() ? "uring" : "pread");
    ms_io_close(io);
    free(missing);
    free(p);
}

/* The file shrinks under an open context: reads past the new end fail cleanly
 * (-EIO naming file and offset); reads before it still work. A file replaced by
 * rename keeps serving the bytes of the inode that was opened. */
static void check_truncated(const char *backend)
{
    if (!backend_ok(backend)) {
        MST_SKIP("backend %s unavailable (io_uring refused by this kernel or sandbox)", backend);
        return;
    }
    char *p = make_file(g_dir, "t.bin", 4 << 20, 5);
    uint64_t sz;
    uint8_t *ref = slurp_bytes(p, &sz);
    const char *paths[1] = {p};
    ms_io *io;
    ms_err err = {0};
    ms_io_config cfg = {.backend = backend, .flags = MS_IO_F_IGNORE_ENV, .chunk_bytes = 256 << 10};
    assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), 0);
    assert_int_equal(truncate(p, (1 << 20) - 1000), 0); /* mid-block */
    uint8_t *buf = ms_aligned_alloc(4096, 4 << 20);
    ms_io_req q[3] = {
        {.file = 0, .offset = 1000, .len = 5000, .dst = buf, .tag = 1},                      /* inside */
        {.file = 0, .offset = (1 << 20) - 1100, .len = 300, .dst = buf + (1 << 20), .tag = 2}, /* straddles */
        {.file = 0, .offset = 3 << 20, .len = 7777, .dst = buf + (2 << 20), .tag = 3},        /* beyond */
    };
    assert_int_equal(ms_io_queue(io, q, 3, &err), 3);
    ms_io_cqe cq[3];
    int n = 0;
    while (n < 3) {
        int k = ms_io_reap(io, cq + n, 3 - n, 1, &err);
        assert_true(k > 0);
        n += k;
    }
    for (int i = 0; i < 3; i++) {
        if (cq[i].tag == 1) {
            assert_int_equal(cq[i].res, 5000);
            assert_memory_equal(cq[i].data, ref + 1000, 5000);
        } else {
            assert_int_equal(cq[i].res, -EIO);
            assert_null(cq[i].data);
        }
    }
    assert_non_null(strstr(err.msg, "t.bin"));
    assert_non_null(strstr(err.msg, "unexpected end of file (now 1047576 bytes, 4194304 at open"));
    ms_io_stats st;
    ms_io_get_stats(io, &st);
    assert_true(st.errors == 2);
    ms_io_close(io);

    /* replaced by rename: the open descriptor keeps the old inode */
    char *p2 = make_file(g_dir, "t2.bin", 2 << 20, 6);
    char *p3 = make_file(g_dir, "t3.bin", 2 << 20, 7);
    uint8_t *ref2 = slurp_bytes(p2, &sz);
    paths[0] = p2;
    assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), 0);
    assert_int_equal(rename(p3, p2), 0);
    ms_err_clear(&err);
    assert_int_equal(ms_io_read(io, 0, 12345, 100000, buf, &err), 100000);
    assert_memory_equal(buf + 12345 % 4096, ref2 + 12345, 100000);
    ms_io_close(io);
    free(ref2);
    free(p2);
    free(p3);
    free(buf);
    free(ref);
    free(p);
}

static void test_truncated_uring(void **state) { (void)state; check_truncated("uring"); }
static void test_truncated_pread(void **state) { (void)state; check_truncated("pread"); }
static void test_truncated_mmap(void **state) { (void)state; check_truncated("mmap"); }

/* tmpfs: reads go through the page cache whatever the flags; the context says
 * so (buffered fallback) and the bytes are right. */
static void test_tmpfs_fallback(void **state)
{
    (void)state;
    struct stat st;
    if (stat("/dev/shm", &st) != 0 || access("/dev/shm", W_OK) != 0) {
        MST_SKIP("no writable /dev/shm (tmpfs)");
        return;
    }
    char name[64];
    snprintf(name, sizeof name, "ms-test-io-%d.bin", (int)getpid());
    char *p = make_file("/dev/shm", name, 3 << 20, 8);
    uint64_t sz;
    uint8_t *ref = slurp_bytes(p, &sz);
    const char *paths[1] = {p};
    const char *backends[2] = {"pread", "uring"};
    for (int b = 0; b < 2; b++) {
        if (!backend_ok(backends[b])) continue;
        ms_io *io;
        ms_err err = {0};
        ms_io_config cfg = {.backend = backends[b], .flags = MS_IO_F_IGNORE_ENV};
        assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), 0);
        assert_false(ms_io_file_direct(io, 0));
        uint8_t *buf = ms_aligned_alloc(4096, 2 << 20);
        assert_int_equal(ms_io_read(io, 0, 4097, (1 << 20) + 3, buf, &err), (1 << 20) + 3);
        assert_memory_equal(buf + 1, ref + 4097, (1 << 20) + 3);
        ms_io_stats s;
        ms_io_get_stats(io, &s);
        assert_int_equal(s.buffered_files, 1);
        char line[512];
        ms_io_stats_line(io, line, sizeof line);
        assert_non_null(strstr(line, "without O_DIRECT"));
        ms_io_close(io);
        free(buf);
    }
    unlink(p);
    free(ref);
    free(p);
}

/* O_DIRECT backends leave the page cache alone; mmap fills it (which also
 * shows the measurement works). */
static void check_page_cache(const char *backend, unsigned flags, bool expect_cached)
{
    if (!backend_ok(backend)) {
        MST_SKIP("backend %s unavailable (io_uring refused by this kernel or sandbox)", backend);
        return;
    }
    uint64_t size = (8 << 20) + 1000; /* the last page is partial */
    char *p = make_file(g_dir, "pc.bin", size, 9);
    drop_cache(p);
    size_t before = resident_pages(p);
    const char *paths[1] = {p};
    ms_io *io;
    ms_err err = {0};
    ms_io_config cfg = {.backend = backend, .flags = flags | MS_IO_F_IGNORE_ENV};
    assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), 0);
    if (!expect_cached && !(flags & MS_IO_F_NO_DIRECT) && !ms_io_file_direct(io, 0)) {
        ms_io_close(io); /* scratch dir on a filesystem without O_DIRECT */
        free(p);
        MST_SKIP("the scratch directory's filesystem refuses O_DIRECT");
        return;
    }
    uint8_t *buf = ms_aligned_alloc(4096, size + 16384);
    /* many unaligned pieces, like the parts of experts */
    uint64_t step = 300001;
    int n = 0;
    for (uint64_t off = 17; off + step <= size; off += step) n++;
    n++; /* and the end of the file */
    ms_io_req *q = calloc((size_t)n, sizeof *q);
    uint64_t pos = 0;
    int i = 0;
    for (uint64_t off = 17; off + step <= size; off += step, i++) {
        ms_io_span s;
        ms_io_span_of(io, off, step - 1000, &s);
        q[i] = (ms_io_req){.file = 0, .offset = off, .len = step - 1000, .dst = buf + pos, .tag = (uint64_t)i};
        pos += s.aligned_len;
    }
    q[i] = (ms_io_req){.file = 0, .offset = size - 5000, .len = 5000, .dst = buf + pos, .tag = (uint64_t)i};
    pos += 8192;
    assert_true(pos <= size + 16384);
    assert_int_equal(ms_io_queue(io, q, n, &err), n);
    ms_io_cqe cq[16];
    int got = 0;
    while (got < n) {
        int k = ms_io_reap(io, cq, 16, 1, &err);
        assert_true(k > 0);
        for (int j = 0; j < k; j++) assert_true(cq[j].res > 0);
        got += k;
    }
    size_t after = resident_pages(p);
    size_t total = size / 4096;
    if (expect_cached) {
        assert_true(after > total / 2);
    } else {
        if (after > before)
            fprintf(stderr, "%s: %zu of %zu pages resident after reading (before %zu)\n", backend, after, total,
                    before);
        assert_true(after <= before);
    }
    ms_io_close(io);
    free(q);
    free(buf);
    free(p);
}

static void test_page_cache_uring(void **state) { (void)state; check_page_cache("uring", 0, false); }
static void test_page_cache_pread(void **state) { (void)state; check_page_cache("pread", 0, false); }
static void test_page_cache_buffered(void **state) { (void)state; check_page_cache("pread", MS_IO_F_NO_DIRECT, false); }
static void test_page_cache_buffered_short(void **state)
{
    (void)state; /* resumed short reads start mid-page: the page must still go */
    check_page_cache("fault:inner=pread,short=0.5,seed=3", MS_IO_F_NO_DIRECT, false);
}
static void test_page_cache_mmap(void **state) { (void)state; check_page_cache("mmap", 0, true); }

/* Closing with reads in flight waits for them (ASan would catch a write into
 * freed memory) and drops the rest; polling with min_complete = 0 never blocks. */
static void test_close_inflight_and_poll(void **state)
{
    (void)state;
    const uint64_t sizes[1] = {(uint64_t)FILE_MB << 20};
    char *p = make_file(g_dir, "e.bin", sizes[0], 10);
    const char *paths[1] = {p};
    const char *backends[3] = {"uring", "pread", "mmap"};
    for (int k = 0; k < 3; k++) {
        if (!backend_ok(backends[k])) continue;
        ms_io *io;
        ms_err err = {0};
        ms_io_config cfg = {.backend = backends[k], .queue_depth = 16, .chunk_bytes = 128 << 10,
                            .flags = MS_IO_F_IGNORE_ENV};
        assert_int_equal(ms_io_open(&io, &cfg, paths, 1, &err), 0);
        batch b;
        batch_make(&b, 200, sizes, 1, 256 << 10, ms_io_alignment(io), 11);
        assert_int_equal(ms_io_queue(io, b.reqs, b.n, &err), b.n);
        assert_true(ms_io_submit(io, &err) >= 0);
        /* poll until some are done */
        ms_io_cqe cq[8];
        int got = 0;
        long spins = 0;
        while (got < 20 && spins < 100000000L) {
            int r = ms_io_reap(io, cq, 8, 0, &err);
            assert_true(r >= 0);
            got += r;
            spins++;
        }
        assert_true(got >= 20);
        assert_true(ms_io_pending(io) == b.n - got);
        ms_io_close(io); /* the rest are pending or in flight */
        batch_free(&b);
    }
    free(p);
}

int main(void)
{
    g_dir = mst_tmpdir("test_io");
    const struct CMUnitTest tests[] = {
        MST_BOUNDED_TEST(test_span),
        MST_BOUNDED_TEST(test_uring),
        MST_BOUNDED_TEST(test_uring_big_chunks),
        MST_BOUNDED_TEST(test_pread),
        MST_BOUNDED_TEST(test_mmap),
        MST_BOUNDED_TEST(test_mmap_nocopy),
        MST_BOUNDED_TEST(test_buffered_flag),
        MST_BOUNDED_TEST(test_bad_requests),
        MST_BOUNDED_TEST(test_open_errors),
        MST_BOUNDED_TEST(test_truncated_uring),
        MST_BOUNDED_TEST(test_truncated_pread),
        MST_BOUNDED_TEST(test_truncated_mmap),
        MST_BOUNDED_TEST(test_tmpfs_fallback),
        MST_BOUNDED_TEST(test_page_cache_uring),
        MST_BOUNDED_TEST(test_page_cache_pread),
        MST_BOUNDED_TEST(test_page_cache_buffered),
        MST_BOUNDED_TEST(test_page_cache_buffered_short),
        MST_BOUNDED_TEST(test_page_cache_mmap),
        MST_BOUNDED_TEST(test_close_inflight_and_poll),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(g_dir);
    return rc;
}

/* io.c - the I/O driver behind io.h: files, requests, chunks, retries, stats.
 *
 * Design (docs/IO.md):
 *  - Each request (file, payload range, dst, tag) is widened to its aligned
 *    superset (ms_io_span) and split into chunks of <= chunk_bytes. Chunks wait
 *    in a FIFO and are handed to the backend (io_engine.h) while fewer than
 *    queue_depth are in flight; ms_io_submit hands over a whole batch with one
 *    backend submit, and reap tops the queue up as chunks complete.
 *  - A backend performs single read attempts. The driver looks at each result:
 *    complete -> the chunk is done; short -> resume from the aligned floor of
 *    what arrived; 0 before the payload ended -> the file shrank: -EIO;
 *    -EAGAIN/-EINTR -> retry (bounded, with a small backoff); -EINVAL on an
 *    O_DIRECT descriptor that never read successfully -> drop O_DIRECT on that
 *    file (fcntl F_SETFL) and read buffered with POSIX_FADV_DONTNEED afterwards;
 *    anything else -> the request fails with "file: read of N bytes at offset O
 *    failed: <errno string>".
 *  - A request is reported (FIFO of finished requests) only when none of its
 *    chunks is still in the backend, so its buffer is free to reuse; chunks of
 *    a failed request that have not started are dropped.
 * Requests live in a slot array (index = id), chunks in a pooled free list. */
#include "io.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "io_engine.h"
#include "util.h"

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif
#ifndef RAMFS_MAGIC
#define RAMFS_MAGIC 0x858458f6
#endif

#define MS_IO_MAX_REGIONS 64
#define CHUNK_BLOCK 256

typedef struct ms_io_file {
    char *path;
    int fd;
    bool direct;          /* reads currently use O_DIRECT */
    bool direct_ok;       /* at least one O_DIRECT read succeeded */
    bool fell_back;       /* O_DIRECT dropped: buffered + DONTNEED */
    const char *why;      /* why the file is read buffered (static string) */
    uint64_t size;        /* at open */
} ms_io_file;

typedef struct ms_io_rq {
    uint64_t tag;
    uint32_t file;
    uint64_t off, len;    /* payload */
    uint8_t *dst;
    uint64_t aoff, alen;  /* aligned superset */
    uint64_t need;        /* bytes from aoff that must arrive: payload_skip + len */
    uint32_t chunks_left; /* chunks queued or in flight */
    int err;              /* first -errno, 0 if fine */
    char *msg;            /* message of err (malloc'd) */
    void *data;           /* payload address once done */
    int32_t next;         /* free list / done FIFO */
    bool used;
} ms_io_rq;

typedef struct ms_io_region {
    uint8_t *base;
    size_t len;
} ms_io_region;

struct ms_io {
    ms_io_file *files;
    int n_files;
    uint64_t align;
    unsigned qd, n_threads, max_retries, flags;
    uint64_t chunk_bytes;

    const ms_io_engine_ops *ops;      /* the engine driven (maybe the fault wrapper) */
    const ms_io_engine_ops *data_ops; /* the engine that really reads */
    bool nocopy;                      /* mmap NOCOPY: completions point into the mapping */
    ms_io_engine eng;
    bool eng_up;
    char fault_spec[512];

    ms_io_rq *rq;
    uint32_t rq_cap;
    int32_t rq_free;              /* free slot list */
    uint32_t rq_nfree;
    int32_t done_head, done_tail; /* finished, not yet reaped */
    int pending;                  /* requests queued and not reaped */

    ms_io_chunk **blocks;         /* chunk pool blocks */
    int n_blocks;
    ms_io_chunk *chunk_free;
    uint32_t n_chunk_free;
    ms_io_chunk *pend_head, *pend_tail; /* waiting to be handed to the engine */
    unsigned inflight;            /* chunks inside the engine */
    ms_io_chunk **reap_buf;       /* qd slots */
    bool closing;

    ms_io_region regions[MS_IO_MAX_REGIONS];
    int n_regions;
    struct iovec *iov;            /* regions split into <= 1 GiB pieces, sorted */
    int n_iov;

    ms_io_stats st;
    uint64_t busy_since;
};

/* ---------------------------------------------------------------- helpers */

static void sleep_us(unsigned us)
{
    struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

static bool is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

const ms_io_engine_ops *ms_io_engine_find(const char *name)
{
    if (!strcmp(name, "uring")) return &ms_io_engine_uring;
    if (!strcmp(name, "pread")) return &ms_io_engine_pread;
    if (!strcmp(name, "mmap")) return &ms_io_engine_mmap;
    return NULL;
}

bool ms_io_uring_available(void)
{
    struct io_uring ring;
    if (io_uring_queue_init(4, &ring, 0) < 0) return false;
    io_uring_queue_exit(&ring);
    return true;
}

/* ---------------------------------------------------------------- files */

/* Drop O_DIRECT on a file: reads go through the page cache from now on and each
 * one is followed by POSIX_FADV_DONTNEED. */
static int file_go_buffered(ms_io_file *f, const char *why, ms_err *err)
{
    if (!f->direct) return 0;
    int fl = fcntl(f->fd, F_GETFL);
    if (fl < 0 || fcntl(f->fd, F_SETFL, fl & ~O_DIRECT) < 0)
        return ms_errf(err, errno, "%s: cannot drop O_DIRECT: %s", f->path, strerror(errno));
    f->direct = false;
    f->fell_back = true;
    f->why = why;
    posix_fadvise(f->fd, 0, 0, POSIX_FADV_RANDOM); /* no readahead DONTNEED would miss */
    return 0;
}

/* Open one file. want_direct: the engine reads through the fd and O_DIRECT is
 * not disabled; buffered: the engine reads through the fd but O_DIRECT is
 * disabled (MS_IO_F_NO_DIRECT): buffered + DONTNEED. Neither: mmap. */
static int file_open(ms_io_file *f, const char *path, bool want_direct, bool buffered, uint64_t *align,
                     ms_err *err)
{
    f->fd = -1;
    f->path = strdup(path);
    if (!f->path) return ms_errf(err, ENOMEM, "%s: out of memory", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | (want_direct ? O_DIRECT : 0));
    bool direct = want_direct;
    const char *why = want_direct ? NULL : buffered ? "O_DIRECT disabled by configuration" : "mmap";
    if (fd < 0 && want_direct && errno == EINVAL) {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        direct = false;
        why = "O_DIRECT refused at open";
    }
    if (fd < 0) return ms_errf(err, errno, "%s: open: %s", path, strerror(errno));
    f->fd = fd;
    struct stat st;
    if (fstat(fd, &st) < 0) return ms_errf(err, errno, "%s: fstat: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return ms_errf(err, EINVAL, "%s: not a regular file", path);
    f->size = (uint64_t)st.st_size;
    f->direct = direct;
    f->why = why;
    if (!direct) {
        f->fell_back = want_direct || buffered;
        if (f->fell_back) posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
        return 0;
    }
    /* Ask the filesystem what direct I/O needs. */
    uint64_t a = MS_IO_ALIGN_MIN;
    bool known = false;
#ifdef STATX_DIOALIGN
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
        known = true;
        if (sx.stx_dio_offset_align == 0)
            return file_go_buffered(f, "filesystem reports no direct I/O support", err);
        a = MS_MAX(a, (uint64_t)sx.stx_dio_offset_align);
        a = MS_MAX(a, (uint64_t)sx.stx_dio_mem_align);
    }
#endif
    if (!known) {
        /* tmpfs accepts O_DIRECT on recent kernels, but its pages are the page
         * cache itself: nothing is bypassed, so say so. */
        struct statfs sf;
        if (fstatfs(fd, &sf) == 0 && (sf.f_type == TMPFS_MAGIC || sf.f_type == (typeof(sf.f_type))RAMFS_MAGIC))
            return file_go_buffered(f, "tmpfs/ramfs: no direct I/O", err);
    }
    if (!is_pow2(a) || a > (1u << 20))
        return file_go_buffered(f, "unusual direct I/O alignment", err);
    *align = MS_MAX(*align, a);
    return 0;
}

/* ---------------------------------------------------------------- pools */

static int chunk_reserve(ms_io *io, uint32_t n)
{
    while (io->n_chunk_free < n) {
        ms_io_chunk *b = calloc(CHUNK_BLOCK, sizeof *b);
        if (!b) return -ENOMEM;
        ms_io_chunk **nb = realloc(io->blocks, (size_t)(io->n_blocks + 1) * sizeof *nb);
        if (!nb) {
            free(b);
            return -ENOMEM;
        }
        io->blocks = nb;
        io->blocks[io->n_blocks++] = b;
        for (int i = 0; i < CHUNK_BLOCK; i++) {
            b[i].next = io->chunk_free;
            io->chunk_free = &b[i];
        }
        io->n_chunk_free += CHUNK_BLOCK;
    }
    return 0;
}

static ms_io_chunk *chunk_get(ms_io *io)
{
    ms_io_chunk *c = io->chunk_free;
    io->chunk_free = c->next;
    io->n_chunk_free--;
    memset(c, 0, sizeof *c);
    return c;
}

static void chunk_put(ms_io *io, ms_io_chunk *c)
{
    c->next = io->chunk_free;
    io->chunk_free = c;
    io->n_chunk_free++;
}

static int rq_reserve(ms_io *io, uint32_t n)
{
    if (io->rq_nfree >= n) return 0;
    uint64_t want = (uint64_t)io->rq_cap + (n - io->rq_nfree);
    uint64_t cap = io->rq_cap ? io->rq_cap : 64;
    while (cap < want) cap *= 2;
    if (cap > INT32_MAX) return -ENOMEM;
    ms_io_rq *r = realloc(io->rq, cap * sizeof *r);
    if (!r) return -ENOMEM;
    io->rq = r;
    for (uint64_t i = cap; i-- > io->rq_cap;) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].next = io->rq_free;
        io->rq_free = (int32_t)i;
    }
    io->rq_nfree += (uint32_t)(cap - io->rq_cap);
    io->rq_cap = (uint32_t)cap;
    return 0;
}

/* ---------------------------------------------------------------- open/close */

static int resolve_backend(ms_io *io, const char *name, ms_err *err)
{
    const char *env = (io->flags & MS_IO_F_IGNORE_ENV) ? NULL : getenv(MS_IO_FAULT_ENV);
    if (env && !*env) env = NULL;
    const char *inner = NULL;
    if (!name || !*name || !strcmp(name, "auto")) {
        inner = ms_io_uring_available() ? "uring" : "pread";
    } else if (!strncmp(name, "fault:", 6) || !strcmp(name, "fault")) {
        const char *spec = name[5] == ':' ? name + 6 : "";
        int n = snprintf(io->fault_spec, sizeof io->fault_spec, "%s%s%s", spec, env ? "," : "", env ? env : "");
        if (n < 0 || (size_t)n >= sizeof io->fault_spec)
            return ms_errf(err, EINVAL, "io backend '%s': fault spec too long", name);
        io->ops = &ms_io_engine_fault;
        return 0;
    } else {
        if (!ms_io_engine_find(name))
            return ms_errf(err, EINVAL, "io backend '%s': unknown (expected uring, pread, mmap or fault:<spec>)",
                           name);
        inner = name;
    }
    if (env) {
        int n = snprintf(io->fault_spec, sizeof io->fault_spec, "inner=%s,%s", inner, env);
        if (n < 0 || (size_t)n >= sizeof io->fault_spec)
            return ms_errf(err, EINVAL, "%s: fault spec too long", MS_IO_FAULT_ENV);
        io->ops = &ms_io_engine_fault;
        return 0;
    }
    io->ops = ms_io_engine_find(inner);
    return 0;
}

int ms_io_open(ms_io **out, const ms_io_config *cfg, const char *const *paths, int n_paths, ms_err *err)
{
    *out = NULL;
    ms_io_config def = {0};
    if (!cfg) cfg = &def;
    if (n_paths < 0 || (n_paths > 0 && !paths)) return ms_errf(err, EINVAL, "io: bad file list");
    ms_io *io = calloc(1, sizeof *io);
    if (!io) return ms_errf(err, ENOMEM, "io: out of memory");
    io->rq_free = io->done_head = io->done_tail = -1;
    io->flags = cfg->flags;
    io->qd = cfg->queue_depth ? cfg->queue_depth : MS_IO_DEFAULT_QD;
    if (io->qd > 4096) io->qd = 4096;
    io->n_threads = cfg->n_threads ? cfg->n_threads : MS_IO_DEFAULT_THREADS;
    if (io->n_threads > io->qd) io->n_threads = io->qd;
    io->max_retries = cfg->max_retries ? cfg->max_retries : MS_IO_DEFAULT_RETRIES;
    int rc = resolve_backend(io, cfg->backend, err);
    if (rc < 0) goto fail;

    const ms_io_engine_ops *data_ops = io->ops;
    if (io->ops == &ms_io_engine_fault) {
        data_ops = ms_io_fault_inner(io->fault_spec, err);
        if (!data_ops) {
            rc = -EINVAL;
            goto fail;
        }
    }
    if (io->ops->version != MS_IO_OPS_VERSION || data_ops->version != MS_IO_OPS_VERSION) {
        rc = ms_errf(err, EINVAL, "io backend '%s': ops version %d, expected %d", io->ops->name,
                     io->ops->version, MS_IO_OPS_VERSION);
        goto fail;
    }
    io->data_ops = data_ops;
    io->nocopy = (io->flags & MS_IO_F_MMAP_NOCOPY) && data_ops == &ms_io_engine_mmap;

    io->files = calloc(n_paths ? (size_t)n_paths : 1, sizeof *io->files);
    if (!io->files) {
        rc = ms_errf(err, ENOMEM, "io: out of memory");
        goto fail;
    }
    for (int i = 0; i < n_paths; i++) io->files[i].fd = -1;
    io->n_files = n_paths;
    io->align = MS_IO_ALIGN_MIN;
    if (cfg->min_align) {
        if (!is_pow2(cfg->min_align) || cfg->min_align > (1u << 20)) {
            rc = ms_errf(err, EINVAL, "io: alignment %llu is not a power of two <= 1 MiB",
                         (unsigned long long)cfg->min_align);
            goto fail;
        }
        io->align = MS_MAX(io->align, cfg->min_align);
    }
    bool via_fd = data_ops->caps & MS_IO_CAP_DIRECT;
    bool want_direct = via_fd && !(io->flags & MS_IO_F_NO_DIRECT);
    for (int i = 0; i < n_paths; i++) {
        rc = file_open(&io->files[i], paths[i], want_direct, via_fd && !want_direct, &io->align, err);
        if (rc < 0) goto fail;
    }
    uint64_t cb = cfg->chunk_bytes ? cfg->chunk_bytes : MS_IO_DEFAULT_CHUNK;
    if (data_ops->caps & MS_IO_CAP_NOCHUNK) cb = MS_IO_MAX_CHUNK;
    if (cb > MS_IO_MAX_CHUNK) cb = MS_IO_MAX_CHUNK;
    io->chunk_bytes = MS_ALIGN_UP(cb, io->align);

    io->reap_buf = calloc(io->qd, sizeof *io->reap_buf);
    int *fds = calloc(n_paths ? (size_t)n_paths : 1, sizeof *fds);
    bool *dir = calloc(n_paths ? (size_t)n_paths : 1, sizeof *dir);
    uint64_t *sizes = calloc(n_paths ? (size_t)n_paths : 1, sizeof *sizes);
    if (!io->reap_buf || !fds || !dir || !sizes) {
        free(fds);
        free(dir);
        free(sizes);
        rc = ms_errf(err, ENOMEM, "io: out of memory");
        goto fail;
    }
    for (int i = 0; i < n_paths; i++) {
        fds[i] = io->files[i].fd;
        dir[i] = io->files[i].direct;
        sizes[i] = io->files[i].size;
    }
    ms_io_engine_args a = {.fds = fds, .direct = dir, .sizes = sizes, .n_files = n_paths,
                           .queue_depth = io->qd, .n_threads = io->n_threads, .flags = io->flags,
                           .spec = io->fault_spec};
    io->eng.ops = io->ops;
    snprintf(io->eng.name, sizeof io->eng.name, "%s", io->ops->name);
    rc = io->ops->init(&io->eng, &a, err);
    free(fds);
    free(dir);
    free(sizes);
    if (rc < 0) goto fail;
    io->eng_up = true;
    *out = io;
    return 0;
fail:
    ms_io_close(io);
    return rc < 0 ? rc : -EINVAL;
}

/* ---------------------------------------------------------------- chunk life */

static void rq_fail(ms_io *io, ms_io_rq *r, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void rq_fail(ms_io *io, ms_io_rq *r, int code, const char *fmt, ...)
{
    (void)io;
    if (r->err) return;
    r->err = -code;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&r->msg, fmt, ap) < 0) r->msg = NULL;
    va_end(ap);
}

static void rq_finish(ms_io *io, uint32_t id)
{
    ms_io_rq *r = &io->rq[id];
    r->next = -1;
    if (io->done_tail >= 0) io->rq[io->done_tail].next = (int32_t)id;
    else io->done_head = (int32_t)id;
    io->done_tail = (int32_t)id;
}

/* A chunk leaves the driver for good (done, or dropped because its request failed). */
static void chunk_finish(ms_io *io, ms_io_chunk *c)
{
    uint32_t id = c->req;
    chunk_put(io, c);
    ms_io_rq *r = &io->rq[id];
    if (--r->chunks_left == 0) rq_finish(io, id);
}

static void pend_push_back(ms_io *io, ms_io_chunk *c)
{
    c->next = NULL;
    if (io->pend_tail) io->pend_tail->next = c;
    else io->pend_head = c;
    io->pend_tail = c;
}

static void pend_push_front(ms_io *io, ms_io_chunk *c)
{
    c->next = io->pend_head;
    io->pend_head = c;
    if (!io->pend_tail) io->pend_tail = c;
}

static int find_buf_index(const ms_io *io, const uint8_t *p, uint64_t len)
{
    int lo = 0, hi = io->n_iov - 1, hit = -1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if ((const uint8_t *)io->iov[mid].iov_base <= p) {
            hit = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    if (hit < 0) return -1;
    const uint8_t *b = io->iov[hit].iov_base;
    return p + len <= b + io->iov[hit].iov_len ? hit : -1;
}

/* Fill in the next read attempt of a chunk. */
static void chunk_prepare(ms_io *io, ms_io_chunk *c)
{
    ms_io_rq *r = &io->rq[c->req];
    ms_io_file *f = &io->files[r->file];
    uint64_t pos = c->c_start + c->done;
    c->fd = f->fd;
    c->file = r->file;
    c->direct = f->direct;
    c->off = r->aoff + pos;
    c->len = (uint32_t)(c->c_end - pos);
    c->buf = io->nocopy ? NULL : r->dst + pos;
    c->buf_index = (io->eng.fixed_buffers && c->buf) ? find_buf_index(io, c->buf, c->len) : -1;
    c->res = 0;
    c->map = NULL;
    c->elink = NULL;
}

static void busy_enter(ms_io *io, unsigned n)
{
    if (io->inflight == 0 && n) io->busy_since = ms_now_ns();
    io->inflight += n;
    if (io->inflight > io->st.max_inflight) io->st.max_inflight = io->inflight;
}

static void busy_leave(ms_io *io)
{
    if (--io->inflight == 0) io->st.busy_ns += ms_now_ns() - io->busy_since;
}

/* Hand waiting chunks to the engine (up to the queue depth) and submit them as
 * one batch. Returns the number handed over or -errno. */
static int fill(ms_io *io, ms_err *err)
{
    int n = 0;
    while (io->inflight + n < io->qd && io->pend_head) {
        ms_io_chunk *c = io->pend_head;
        io->pend_head = c->next;
        if (!io->pend_head) io->pend_tail = NULL;
        if (io->rq[c->req].err || io->closing) { /* its request failed: do not read */
            chunk_finish(io, c);
            continue;
        }
        chunk_prepare(io, c);
        io->ops->queue(&io->eng, c);
        n++;
    }
    if (n == 0) return 0;
    busy_enter(io, (unsigned)n);
    io->st.reads += (uint64_t)n;
    io->st.submits++;
    int rc = io->ops->submit(&io->eng, err);
    return rc < 0 ? rc : n;
}

/* The file ends before the payload does (truncated under us). */
static void eof_fail(ms_io *io, ms_io_rq *r, const ms_io_file *f, ms_io_chunk *c)
{
    struct stat st;
    char now[64] = "";
    if (fstat(c->fd, &st) == 0) snprintf(now, sizeof now, "now %" PRIu64 " bytes, ", (uint64_t)st.st_size);
    rq_fail(io, r, EIO,
            "%s: read of %" PRIu64 " bytes at offset %" PRIu64 ": unexpected end of file (%s%" PRIu64
            " at open: truncated?)",
            f->path, r->len, r->off, now, f->size);
    chunk_finish(io, c);
}

/* Judge one finished read attempt. */
static void process(ms_io *io, ms_io_chunk *c)
{
    busy_leave(io);
    ms_io_rq *r = &io->rq[c->req];
    ms_io_file *f = &io->files[r->file];
    int64_t res = c->res;
    if (r->err || io->closing) {
        chunk_finish(io, c);
        return;
    }
    if (res < 0) {
        int e = (int)-res;
        if (e == EAGAIN || e == EINTR) {
            if (c->attempt < io->max_retries) {
                c->attempt++;
                io->st.retries++;
                if (c->attempt > 2) sleep_us(MS_MIN(10u * c->attempt, 1000u));
                pend_push_front(io, c);
                return;
            }
            rq_fail(io, r, e, "%s: read of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s (after %u retries)",
                    f->path, r->len, r->off, strerror(e), c->attempt);
            chunk_finish(io, c);
            return;
        }
        if (e == EINVAL && c->direct && !f->direct_ok) {
            ms_err ferr = {0};
            if (file_go_buffered(f, "O_DIRECT read refused (EINVAL)", &ferr) == 0) {
                c->attempt++;
                pend_push_front(io, c);
                return;
            }
            rq_fail(io, r, ferr.code, "%s", ferr.msg);
            chunk_finish(io, c);
            return;
        }
        if (e == EINVAL && c->direct && !f->direct) { /* raced with the fallback above */
            c->attempt++;
            pend_push_front(io, c);
            return;
        }
        rq_fail(io, r, e, "%s: read of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s", f->path, r->len,
                r->off, strerror(e));
        chunk_finish(io, c);
        return;
    }
    if ((uint64_t)res > c->len) res = c->len; /* never trust more than asked */
    io->st.bytes_read += (uint64_t)res;
    if (c->direct) f->direct_ok = true;
    else if (f->fell_back && res > 0) { /* whole pages: DONTNEED keeps partial first/last pages */
        uint64_t a = c->off / io->align * io->align, b = MS_ALIGN_UP(c->off + (uint64_t)res, io->align);
        posix_fadvise(c->fd, (off_t)a, (off_t)(b - a), POSIX_FADV_DONTNEED);
    }
    uint64_t got = c->done + (uint64_t)res;            /* bytes of the chunk now valid */
    uint64_t want = MS_MIN(c->c_end, r->need) - c->c_start; /* bytes of it the payload needs */
    if (got >= want) {
        if (io->nocopy) r->data = (uint8_t *)((uintptr_t)c->map - c->off + r->off); /* into the mapping */
        chunk_finish(io, c);
        return;
    }
    if (res == 0) {
        eof_fail(io, r, f, c);
        return;
    }
    /* Short read: resume. O_DIRECT needs an aligned offset, so resume from the
     * aligned floor of what arrived (re-reading a partial block is harmless). */
    io->st.short_reads++;
    uint64_t nd = c->direct ? got / io->align * io->align : got;
    if (nd <= c->done) {
        /* No progress: an O_DIRECT read that stops mid-block stops at EOF. */
        struct stat st;
        if (fstat(c->fd, &st) == 0 && (uint64_t)st.st_size < r->aoff + c->c_start + want) {
            eof_fail(io, r, f, c);
            return;
        }
        if (c->attempt >= io->max_retries) {
            rq_fail(io, r, EIO,
                    "%s: read of %" PRIu64 " bytes at offset %" PRIu64 " makes no progress (%u short reads at offset %" PRIu64 ")",
                    f->path, r->len, r->off, c->attempt, c->off);
            chunk_finish(io, c);
            return;
        }
        io->st.retries++;
    }
    c->attempt++;
    c->done = MS_MAX(c->done, nd);
    pend_push_front(io, c);
}

/* Wait for and judge whatever the engine has finished. */
static int harvest(ms_io *io, bool wait, ms_err *err)
{
    if (io->inflight == 0) return 0;
    uint64_t t0 = wait ? ms_now_ns() : 0;
    int k = io->ops->reap(&io->eng, io->reap_buf, (int)io->qd, wait, err);
    if (wait) io->st.wait_ns += ms_now_ns() - t0;
    if (k < 0) return k;
    for (int i = 0; i < k; i++) process(io, io->reap_buf[i]);
    return k;
}

void ms_io_close(ms_io *io)
{
    if (!io) return;
    if (io->eng_up) {
        /* Drop what has not started, wait for what has: the kernel must be done
         * with the caller's memory before we return. */
        io->closing = true;
        while (io->pend_head) {
            ms_io_chunk *c = io->pend_head;
            io->pend_head = c->next;
            chunk_finish(io, c);
        }
        io->pend_tail = NULL;
        while (io->inflight > 0) {
            if (harvest(io, true, NULL) < 0) break;
            while (io->pend_head) { /* (process never requeues while closing) */
                ms_io_chunk *c = io->pend_head;
                io->pend_head = c->next;
                chunk_finish(io, c);
            }
        }
        io->ops->exit(&io->eng);
    }
    for (int i = 0; i < io->n_files; i++) {
        if (io->files[i].fd >= 0) close(io->files[i].fd);
        free(io->files[i].path);
    }
    free(io->files);
    if (io->rq)
        for (uint32_t i = 0; i < io->rq_cap; i++) free(io->rq[i].msg);
    free(io->rq);
    for (int i = 0; i < io->n_blocks; i++) free(io->blocks[i]);
    free(io->blocks);
    free(io->reap_buf);
    free(io->iov);
    free(io);
}

/* ---------------------------------------------------------------- buffers */

static int iov_cmp(const void *a, const void *b)
{
    const struct iovec *x = a, *y = b;
    uintptr_t p = (uintptr_t)x->iov_base, q = (uintptr_t)y->iov_base;
    return p < q ? -1 : p > q;
}

int ms_io_register_buffers(ms_io *io, void *base, size_t len, ms_err *err)
{
    if (!base || !len) return ms_errf(err, EINVAL, "io: register_buffers: empty region");
    if (io->inflight || io->pend_head) return ms_errf(err, EBUSY, "io: register_buffers with reads in flight");
    if (!io->ops->register_buffers) return 0;
    if (io->n_regions >= MS_IO_MAX_REGIONS)
        return ms_errf(err, ENOSPC, "io: register_buffers: more than %d regions", MS_IO_MAX_REGIONS);
    uint8_t *b = base;
    for (int i = 0; i < io->n_regions; i++) {
        const ms_io_region *r = &io->regions[i];
        if (b < r->base + r->len && r->base < b + len)
            return ms_errf(err, EINVAL, "io: register_buffers: region overlaps one already registered");
    }
    size_t pieces = (len + MS_IO_MAX_CHUNK - 1) / MS_IO_MAX_CHUNK;
    struct iovec *iov = realloc(io->iov, (io->n_iov + pieces) * sizeof *iov);
    if (!iov) return ms_errf(err, ENOMEM, "io: out of memory");
    io->iov = iov;
    io->regions[io->n_regions++] = (ms_io_region){b, len};
    for (size_t off = 0; off < len; off += MS_IO_MAX_CHUNK) {
        iov[io->n_iov].iov_base = b + off;
        iov[io->n_iov].iov_len = MS_MIN((size_t)MS_IO_MAX_CHUNK, len - off);
        io->n_iov++;
    }
    qsort(io->iov, io->n_iov, sizeof *io->iov, iov_cmp);
    /* A refusal (EPERM, ENOMEM, memlock limit, ...) is not an error: plain
     * reads work the same, a little slower. */
    if (io->ops->register_buffers(&io->eng, io->iov, io->n_iov, NULL) < 0) io->eng.fixed_buffers = false;
    return 0;
}

/* ---------------------------------------------------------------- queue/reap */

uint64_t ms_io_alignment(const ms_io *io) { return io->align; }

int ms_io_probe_alignment(const ms_io_config *cfg, const char *const *paths, int n_paths, uint64_t *align,
                          ms_err *err)
{
    ms_io *io;
    int rc = ms_io_open(&io, cfg, paths, n_paths, err);
    if (rc < 0) return rc;
    *align = io->align;
    ms_io_close(io);
    return 0;
}

void ms_io_span_of(const ms_io *io, uint64_t offset, uint64_t len, ms_io_span *s)
{
    ms_io_span_align(io->align, offset, len, s);
}

int ms_io_queue(ms_io *io, const ms_io_req *reqs, int n, ms_err *err)
{
    if (n < 0 || (n > 0 && !reqs)) return ms_errf(err, EINVAL, "io: queue: bad request array");
    bool nocopy = io->nocopy;
    uint64_t nchunks = 0;
    for (int i = 0; i < n; i++) {
        const ms_io_req *q = &reqs[i];
        if (q->file >= (uint32_t)io->n_files)
            return ms_errf(err, EINVAL, "io: request %d: file index %u out of range (%d files)", i, q->file,
                           io->n_files);
        const ms_io_file *f = &io->files[q->file];
        uint64_t end;
        if (q->len == 0) return ms_errf(err, EINVAL, "%s: read of 0 bytes at offset %" PRIu64, f->path, q->offset);
        if (!ms_add_u64(q->offset, q->len, &end) || end > f->size)
            return ms_errf(err, EIO,
                           "%s: read of %" PRIu64 " bytes at offset %" PRIu64 " runs past the end of the file (%" PRIu64
                           " bytes)",
                           f->path, q->len, q->offset, f->size);
        if (!q->dst && !nocopy)
            return ms_errf(err, EINVAL, "%s: read at offset %" PRIu64 ": no destination buffer", f->path, q->offset);
        if (!nocopy && (uintptr_t)q->dst % io->align)
            return ms_errf(err, EINVAL,
                           "%s: read at offset %" PRIu64 ": destination %p is not aligned to %" PRIu64
                           " bytes (see ms_io_span)",
                           f->path, q->offset, q->dst, io->align);
        ms_io_span s;
        ms_io_span_align(io->align, q->offset, q->len, &s);
        nchunks += (s.aligned_len + io->chunk_bytes - 1) / io->chunk_bytes;
    }
    if (nchunks > UINT32_MAX || rq_reserve(io, (uint32_t)n) < 0 || chunk_reserve(io, (uint32_t)nchunks) < 0)
        return ms_errf(err, ENOMEM, "io: queue: out of memory for %d requests", n);
    for (int i = 0; i < n; i++) {
        const ms_io_req *q = &reqs[i];
        int32_t id = io->rq_free;
        ms_io_rq *r = &io->rq[id];
        io->rq_free = r->next;
        io->rq_nfree--;
        ms_io_span s;
        ms_io_span_align(io->align, q->offset, q->len, &s);
        *r = (ms_io_rq){.tag = q->tag, .file = q->file, .off = q->offset, .len = q->len, .dst = q->dst,
                        .aoff = s.aligned_off, .alen = s.aligned_len, .need = s.payload_skip + q->len,
                        .next = -1, .used = true};
        r->data = nocopy ? NULL : (uint8_t *)q->dst + s.payload_skip;
        for (uint64_t o = 0; o < s.aligned_len; o += io->chunk_bytes) {
            ms_io_chunk *c = chunk_get(io);
            c->req = (uint32_t)id;
            c->c_start = o;
            c->c_end = MS_MIN(o + io->chunk_bytes, s.aligned_len);
            r->chunks_left++;
            pend_push_back(io, c);
        }
        io->pending++;
    }
    return n;
}

int ms_io_submit(ms_io *io, ms_err *err) { return fill(io, err); }

static int deliver(ms_io *io, ms_io_cqe *out, int max, ms_err *err)
{
    int n = 0;
    while (n < max && io->done_head >= 0) {
        int32_t id = io->done_head;
        ms_io_rq *r = &io->rq[id];
        io->done_head = r->next;
        if (io->done_head < 0) io->done_tail = -1;
        out[n].tag = r->tag;
        if (r->err) {
            out[n].res = r->err;
            out[n].data = NULL;
            ms_errf(err, -r->err, "%s", r->msg ? r->msg : strerror(-r->err));
            io->st.errors++;
        } else {
            out[n].res = (int64_t)r->len;
            out[n].data = r->data;
            io->st.bytes_payload += r->len;
        }
        io->st.requests++;
        free(r->msg);
        r->msg = NULL;
        r->used = false;
        r->next = io->rq_free;
        io->rq_free = id;
        io->rq_nfree++;
        io->pending--;
        n++;
    }
    return n;
}

int ms_io_reap(ms_io *io, ms_io_cqe *out, int max, int min_complete, ms_err *err)
{
    if (max <= 0) return 0;
    if (min_complete > max) min_complete = max;
    int n = 0;
    for (;;) {
        int rc = fill(io, err);
        if (rc < 0) return rc;
        rc = harvest(io, false, err);
        if (rc < 0) return rc;
        rc = fill(io, err); /* resubmit retries and top the queue up before returning */
        if (rc < 0) return rc;
        n += deliver(io, out + n, max - n, err);
        if (n >= min_complete || n == max) return n;
        if (io->done_head >= 0) continue;
        if (io->inflight == 0) {
            if (!io->pend_head) return n; /* nothing more will come */
            continue;
        }
        rc = harvest(io, true, err);
        if (rc < 0) return rc;
    }
}

int ms_io_pending(const ms_io *io) { return io->pending; }

int64_t ms_io_read(ms_io *io, uint32_t file, uint64_t offset, uint64_t len, void *dst, ms_err *err)
{
    if (io->pending) return ms_errf(err, EBUSY, "io: synchronous read with %d requests pending", io->pending);
    ms_io_req q = {.file = file, .offset = offset, .len = len, .dst = dst, .tag = 0};
    int rc = ms_io_queue(io, &q, 1, err);
    if (rc < 0) return rc;
    ms_io_cqe cqe;
    rc = ms_io_reap(io, &cqe, 1, 1, err);
    if (rc < 0) return rc;
    if (rc != 1) return ms_errf(err, EIO, "io: synchronous read did not complete");
    return cqe.res;
}

/* ---------------------------------------------------------------- info */

int ms_io_n_files(const ms_io *io) { return io->n_files; }

uint64_t ms_io_file_size(const ms_io *io, int file)
{
    return file >= 0 && file < io->n_files ? io->files[file].size : 0;
}

bool ms_io_file_direct(const ms_io *io, int file)
{
    return file >= 0 && file < io->n_files && io->files[file].direct;
}

const char *ms_io_backend(const ms_io *io) { return io->eng.name; }

void ms_io_get_stats(const ms_io *io, ms_io_stats *out)
{
    *out = io->st;
    snprintf(out->backend, sizeof out->backend, "%s", io->eng.name);
    out->fixed_files = io->eng.fixed_files;
    out->fixed_buffers = io->eng.fixed_buffers;
    out->n_files = io->n_files;
    out->buffered_files = 0;
    for (int i = 0; i < io->n_files; i++) out->buffered_files += !io->files[i].direct;
    if (io->inflight) out->busy_ns += ms_now_ns() - io->busy_since;
}

void ms_io_stats_reset(ms_io *io)
{
    unsigned inflight = io->inflight;
    memset(&io->st, 0, sizeof io->st);
    if (inflight) io->busy_since = ms_now_ns();
}

char *ms_io_stats_line(const ms_io *io, char *buf, size_t len)
{
    ms_io_stats s;
    ms_io_get_stats(io, &s);
    char b1[32];
    double busy = (double)s.busy_ns * 1e-9;
    const char *why = NULL;
    for (int i = 0; i < io->n_files && !why; i++)
        if (!io->files[i].direct) why = io->files[i].why;
    char tail[160];
    if (s.buffered_files)
        snprintf(tail, sizeof tail, "%d of %d files without O_DIRECT (buffered + DONTNEED: %s)", s.buffered_files,
                 s.n_files, why ? why : "?");
    else
        snprintf(tail, sizeof tail, "all files O_DIRECT");
    snprintf(buf, len,
             "io %s%s%s%s: %" PRIu64 " requests (%" PRIu64 " failed), %s in %.3f s busy (%.2f GB/s), %" PRIu64
             " short reads, %" PRIu64 " retries, %s",
             s.backend, s.fixed_files || s.fixed_buffers ? " (" : "",
             s.fixed_files ? (s.fixed_buffers ? "fixed files, fixed buffers" : "fixed files")
                           : (s.fixed_buffers ? "fixed buffers" : ""),
             s.fixed_files || s.fixed_buffers ? ")" : "", s.requests, s.errors, ms_fmt_bytes(s.bytes_read, b1, sizeof b1),
             busy, busy > 0 ? (double)s.bytes_read / busy * 1e-9 : 0.0, s.short_reads, s.retries,
             io->data_ops == &ms_io_engine_mmap ? "through the page cache (mmap baseline)" : tail);
    return buf;
}

/* bench_io_core.c - see bench_io_core.h: expert-read GB/s per I/O backend vs a
 * raw O_DIRECT io_uring reader over the same bytes.
 *
 * Per backend: open an ms_io on the files, lay out an arena of batch_experts
 * slots (each slot = the aligned spans of an expert's parts, the layout the
 * expert cache uses), touch it and register it, then time only the reads:
 * queue every part of a batch, one submit, reap to the end, next batch. The raw
 * reader gets the aligned spans of the same experts merged into extents per
 * file and reads them in raw_block pieces with raw_qd reads in flight. Raw runs
 * first in every round and once more after the last; its best figure is the
 * reference, so the ratio never flatters a backend. */
#include "bench_io_core.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "io.h"
#include "util.h"

typedef struct extent {
    uint32_t file;
    uint64_t off, end;
} extent;

static int extent_cmp(const void *a, const void *b)
{
    const extent *x = a, *y = b;
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

static void drop_caches(const ms_bench_io_workload *w, bool global)
{
    for (int i = 0; i < w->n_files; i++) {
        int fd = open(w->paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    if (global && geteuid() == 0) {
        sync();
        int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (write(fd, "1", 1) < 0) { /* not permitted (container): per-file drop only */
            }
            close(fd);
        }
    }
}

/* The raw reference: extents in block-sized aligned reads, qd in flight. */
static int raw_run(const ms_bench_io_workload *w, const extent *ex, size_t n_ex, unsigned qd, uint64_t block,
                   ms_bench_io_row *row, ms_err *err)
{
    int rc = 0;
    int *fds = calloc((size_t)w->n_files, sizeof *fds);
    uint8_t *bufs = ms_aligned_alloc(4096, (size_t)qd * block);
    int *free_slots = calloc(qd, sizeof *free_slots);
    struct io_uring ring;
    bool ring_up = false, direct = true;
    if (!fds || !bufs || !free_slots) {
        rc = ms_errf(err, ENOMEM, "bench io: raw reader: out of memory");
        goto out;
    }
    for (int i = 0; i < w->n_files; i++) fds[i] = -1;
    for (int i = 0; i < w->n_files; i++) {
        fds[i] = open(w->paths[i], O_RDONLY | O_CLOEXEC | O_DIRECT);
        if (fds[i] < 0 && errno == EINVAL) {
            fds[i] = open(w->paths[i], O_RDONLY | O_CLOEXEC);
            direct = false;
        }
        if (fds[i] < 0) {
            rc = ms_errf(err, errno, "%s: open: %s", w->paths[i], strerror(errno));
            goto out;
        }
    }
    memset(bufs, 0, (size_t)qd * block);
    unsigned entries = 8;
    while (entries < qd) entries *= 2;
    rc = io_uring_queue_init(entries, &ring, 0);
    if (rc < 0) {
        rc = ms_errf(err, -rc, "bench io: raw reader: io_uring: %s", strerror(-rc));
        goto out;
    }
    ring_up = true;
    for (unsigned i = 0; i < qd; i++) free_slots[i] = (int)i;
    unsigned n_free = qd, inflight = 0;
    size_t e = 0;
    uint64_t pos = n_ex ? ex[0].off : 0, bytes = 0, reads = 0;
    double t0 = ms_now_s();
    while (e < n_ex || inflight) {
        unsigned queued = 0;
        while (n_free && e < n_ex) {
            uint64_t len = MS_MIN(block, ex[e].end - pos);
            int slot = free_slots[--n_free];
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            io_uring_prep_read(sqe, fds[ex[e].file], bufs + (size_t)slot * block, (unsigned)len, pos);
            io_uring_sqe_set_data64(sqe, (uint64_t)slot);
            queued++;
            pos += len;
            if (pos >= ex[e].end && ++e < n_ex) pos = ex[e].off;
        }
        inflight += queued;
        int s = io_uring_submit_and_wait(&ring, 1);
        if (s < 0 && s != -EINTR && s != -EAGAIN && s != -EBUSY) {
            rc = ms_errf(err, -s, "bench io: raw reader: io_uring_submit: %s", strerror(-s));
            goto out;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            if (cqe->res < 0) {
                rc = ms_errf(err, -cqe->res, "bench io: raw reader: read failed: %s", strerror(-cqe->res));
                io_uring_cq_advance(&ring, seen + 1);
                inflight -= seen + 1;
                goto drain;
            }
            bytes += (uint64_t)cqe->res;
            reads++;
            free_slots[n_free++] = (int)cqe->user_data;
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
        inflight -= seen;
    }
    double t = ms_now_s() - t0;
    snprintf(row->backend, sizeof row->backend, "raw");
    row->bytes = row->bytes_read = bytes;
    row->requests = reads;
    row->seconds = t;
    row->gbps = t > 0 ? (double)bytes / t * 1e-9 : 0;
    snprintf(row->note, sizeof row->note, "io_uring %s, %u x %" PRIu64 " KiB reads", direct ? "O_DIRECT" : "buffered",
             qd, block >> 10);
    goto out;
drain: /* an error: wait for what is still in flight before freeing buffers */
    while (inflight) {
        struct io_uring_cqe *c;
        if (io_uring_wait_cqe(&ring, &c) < 0) break;
        io_uring_cqe_seen(&ring, c);
        inflight--;
    }
out:
    if (ring_up) io_uring_queue_exit(&ring);
    if (fds)
        for (int i = 0; i < w->n_files; i++)
            if (fds[i] >= 0) close(fds[i]);
    free(fds);
    free(bufs);
    free(free_slots);
    return rc;
}

/* One backend over the experts order[0..n_used), in batches. */
static int backend_run(const char *name, const ms_bench_io_workload *w, const size_t *order, size_t n_used,
                       const ms_bench_io_opts *o, unsigned batch, ms_bench_io_row *row, ms_err *err)
{
    ms_io_config cfg = {.backend = name, .queue_depth = o->queue_depth, .n_threads = o->n_threads,
                        .chunk_bytes = o->chunk_bytes};
    ms_io *io = NULL;
    uint8_t *arena = NULL;
    ms_io_req *reqs = NULL;
    ms_io_cqe *cqes = NULL;
    int rc = ms_io_open(&io, &cfg, w->paths, w->n_files, err);
    if (rc < 0) return rc;
    uint64_t align = ms_io_alignment(io);
    /* slot size: the largest expert's aligned spans */
    uint64_t slot = 0;
    size_t max_parts = 0;
    for (size_t k = 0; k < n_used; k++) {
        size_t e = order[k];
        uint64_t s = 0;
        for (size_t r = w->expert_start[e]; r < w->expert_start[e + 1]; r++) {
            ms_io_span sp;
            ms_io_span_align(align, w->ranges[r].offset, w->ranges[r].len, &sp);
            s += sp.aligned_len;
        }
        slot = MS_MAX(slot, s);
        max_parts = MS_MAX(max_parts, w->expert_start[e + 1] - w->expert_start[e]);
    }
    if (batch > n_used) batch = (unsigned)n_used;
    size_t arena_len = (size_t)slot * batch;
    uint64_t avail = ms_mem_available();
    if (avail && arena_len > avail / 2) {
        rc = ms_errf(err, ENOMEM,
                     "bench io: an arena of %u experts x %" PRIu64 " bytes is more than half the available memory (%" PRIu64
                     " bytes): use a smaller batch",
                     batch, slot, avail);
        goto out;
    }
    arena = ms_aligned_alloc(align, arena_len ? arena_len : align);
    reqs = calloc(max_parts * batch + 1, sizeof *reqs);
    cqes = calloc(max_parts * batch + 1, sizeof *cqes);
    if (!arena || !reqs || !cqes) {
        rc = ms_errf(err, ENOMEM, "bench io: %s: cannot allocate a %" PRIu64 "-byte arena", name, (uint64_t)arena_len);
        goto out;
    }
    memset(arena, 0, arena_len); /* fault the pages in outside the timing */
    if (!o->no_register && (rc = ms_io_register_buffers(io, arena, arena_len, err)) < 0) goto out;
    ms_io_stats_reset(io);
    uint64_t payload = 0;
    double t0 = ms_now_s();
    for (size_t k0 = 0; k0 < n_used; k0 += batch) {
        int nq = 0;
        for (size_t k = k0; k < n_used && k < k0 + batch; k++) {
            size_t e = order[k];
            uint8_t *dst = arena + (k - k0) * slot;
            for (size_t r = w->expert_start[e]; r < w->expert_start[e + 1]; r++) {
                ms_io_span sp;
                ms_io_span_align(align, w->ranges[r].offset, w->ranges[r].len, &sp);
                reqs[nq++] = (ms_io_req){.file = w->ranges[r].file, .offset = w->ranges[r].offset,
                                         .len = w->ranges[r].len, .dst = dst, .tag = r};
                dst += sp.aligned_len;
            }
        }
        if ((rc = ms_io_queue(io, reqs, nq, err)) < 0) goto out;
        if ((rc = ms_io_submit(io, err)) < 0) goto out;
        for (int got = 0; got < nq;) {
            rc = ms_io_reap(io, cqes, nq, 1, err);
            if (rc < 0) goto out;
            if (rc == 0) {
                rc = ms_errf(err, EIO, "bench io: %s: reads vanished", name);
                goto out;
            }
            for (int i = 0; i < rc; i++) {
                if (cqes[i].res < 0) {
                    rc = (int)cqes[i].res;
                    goto out;
                }
                payload += (uint64_t)cqes[i].res;
            }
            got += rc;
        }
    }
    double t = ms_now_s() - t0;
    rc = 0;
    ms_io_stats st;
    ms_io_get_stats(io, &st);
    snprintf(row->backend, sizeof row->backend, "%s", ms_io_backend(io));
    row->bytes = payload;
    row->bytes_read = st.bytes_read;
    row->requests = st.requests;
    row->seconds = t;
    row->gbps = t > 0 ? (double)payload / t * 1e-9 : 0;
    if (!strcmp(row->backend, "mmap")) snprintf(row->note, sizeof row->note, "page cache (baseline)");
    else if (st.buffered_files)
        snprintf(row->note, sizeof row->note, "%d of %d files buffered (no O_DIRECT)", st.buffered_files, st.n_files);
    else
        snprintf(row->note, sizeof row->note, "O_DIRECT%s%s, qd %u", st.fixed_files ? ", fixed files" : "",
                 st.fixed_buffers ? ", fixed buffers" : "", st.max_inflight);
out:
    ms_io_close(io); /* before freeing the arena: waits for reads in flight */
    free(arena);
    free(reqs);
    free(cqes);
    return rc;
}

int ms_bench_io_run(const ms_bench_io_workload *w, const ms_bench_io_opts *o, ms_bench_io_row **rows_out,
                    int *n_rows_out, ms_err *err)
{
    *rows_out = NULL;
    *n_rows_out = 0;
    ms_bench_io_opts def = {0};
    if (!o) o = &def;
    static const char *const default_backends[] = {"uring", "pread", "mmap"};
    const char *const *backends = o->backends ? o->backends : default_backends;
    int n_backends = o->backends ? o->n_backends : 3;
    unsigned batch = o->batch_experts ? o->batch_experts : 8;
    /* the reference gets at least the backends' concurrency */
    unsigned raw_qd = o->raw_qd ? o->raw_qd : MS_MAX(32u, o->queue_depth ? o->queue_depth : MS_IO_DEFAULT_QD);
    uint64_t raw_block = o->raw_block ? MS_ALIGN_UP(o->raw_block, 4096) : (1u << 20);
    if (raw_block >= (1u << 30)) return ms_errf(err, EINVAL, "bench io: raw block too large");
    if (!w->n_experts) return ms_errf(err, EINVAL, "bench io: no experts to read");
    for (size_t r = 0; r < w->n_ranges; r++)
        if (w->ranges[r].file >= (uint32_t)w->n_files || !w->ranges[r].len)
            return ms_errf(err, EINVAL, "bench io: range %zu: bad file index or empty", r);

    /* expert order: shuffled (Fisher-Yates, splitmix64), then the prefix that
     * fits max_bytes */
    size_t *order = malloc(w->n_experts * sizeof *order);
    int n_rows = n_backends + 1 + (o->raw_expert_order ? 1 : 0);
    ms_bench_io_row *rows = calloc((size_t)n_rows, sizeof *rows);
    extent *ex = calloc(w->n_ranges + 1, sizeof *ex), *exo = NULL;
    int rc = 0;
    if (!order || !rows || !ex) {
        rc = ms_errf(err, ENOMEM, "bench io: out of memory");
        goto out;
    }
    for (size_t i = 0; i < w->n_experts; i++) order[i] = i;
    if (o->seed) {
        uint64_t s = o->seed;
        for (size_t i = w->n_experts - 1; i > 0; i--) {
            uint64_t x = (s += 0x9e3779b97f4a7c15ull);
            x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
            x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
            x ^= x >> 31;
            size_t j = (size_t)(x % (i + 1));
            size_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }
    size_t n_used = 0;
    uint64_t total = 0;
    while (n_used < w->n_experts) {
        size_t e = order[n_used];
        uint64_t s = 0;
        for (size_t r = w->expert_start[e]; r < w->expert_start[e + 1]; r++) s += w->ranges[r].len;
        if (o->max_bytes && n_used > 0 && total + s > o->max_bytes) break;
        total += s;
        n_used++;
    }
    /* the raw reader's extents: aligned spans of the same parts, merged; the
     * expert-order variant keeps them unmerged in reading order */
    size_t n_ex = 0;
    for (size_t k = 0; k < n_used; k++) {
        size_t e = order[k];
        for (size_t r = w->expert_start[e]; r < w->expert_start[e + 1]; r++) {
            ms_io_span sp;
            ms_io_span_align(MS_IO_ALIGN_MIN, w->ranges[r].offset, w->ranges[r].len, &sp);
            ex[n_ex++] = (extent){w->ranges[r].file, sp.aligned_off, sp.aligned_off + sp.aligned_len};
        }
    }
    size_t n_exo = n_ex;
    if (o->raw_expert_order) {
        if (!(exo = malloc((n_ex + 1) * sizeof *exo))) {
            rc = ms_errf(err, ENOMEM, "bench io: out of memory");
            goto out;
        }
        memcpy(exo, ex, n_ex * sizeof *exo);
    }
    qsort(ex, n_ex, sizeof *ex, extent_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n_ex; i++) {
        if (m && ex[m - 1].file == ex[i].file && ex[i].off <= ex[m - 1].end)
            ex[m - 1].end = MS_MAX(ex[m - 1].end, ex[i].end);
        else ex[m++] = ex[i];
    }
    n_ex = m;

    unsigned rounds = o->repeat ? o->repeat : 1;
    for (unsigned round = 0; round <= rounds; round++) {
        ms_bench_io_row r = {0};
        drop_caches(w, o->drop_global);
        if ((rc = raw_run(w, ex, n_ex, raw_qd, raw_block, &r, err)) < 0) goto out;
        if (r.gbps > rows[0].gbps) rows[0] = r;
        if (round == rounds) break; /* a last raw run after the backends */
        for (int b = 0; b < n_backends; b++) {
            drop_caches(w, o->drop_global);
            memset(&r, 0, sizeof r);
            rc = backend_run(backends[b], w, order, n_used, o, batch, &r, err);
            if (rc < 0) {
                ms_err_prefix(err, "bench io: backend %s: ", backends[b]);
                goto out;
            }
            if (r.gbps > rows[1 + b].gbps) rows[1 + b] = r;
        }
        if (exo) {
            drop_caches(w, o->drop_global);
            memset(&r, 0, sizeof r);
            if ((rc = raw_run(w, exo, n_exo, raw_qd, raw_block, &r, err)) < 0) goto out;
            snprintf(r.backend, sizeof r.backend, "raw-expert-order");
            if (r.gbps > rows[n_rows - 1].gbps) rows[n_rows - 1] = r;
        }
    }
    drop_caches(w, o->drop_global);
    rows[0].ratio_to_raw = 1.0;
    for (int b = 1; b < n_rows; b++) rows[b].ratio_to_raw = rows[0].gbps > 0 ? rows[b].gbps / rows[0].gbps : 0;
    *rows_out = rows;
    *n_rows_out = n_rows;
    rows = NULL;
out:
    free(order);
    free(rows);
    free(ex);
    free(exo);
    return rc < 0 ? rc : 0;
}

int ms_bench_io_file(const char *path, uint32_t hidden, uint32_t inter, const ms_bench_io_opts *o,
                     ms_bench_io_row **rows, int *n_rows, ms_err *err)
{
    *rows = NULL;
    *n_rows = 0;
    if (!hidden) hidden = 7168;
    if (!inter) inter = 2048;
    if (hidden % 64 || inter % 64)
        return ms_errf(err, EINVAL, "bench io: hidden %u / inter %u must be multiples of the group size 64", hidden,
                       inter);
    struct stat st;
    if (stat(path, &st) < 0) return ms_errf(err, errno, "%s: %s", path, strerror(errno));
    /* MLX 4-bit, group 64: weight = out*in/2 bytes, scales = biases = out*in/64*2 */
    uint64_t w_bytes = (uint64_t)hidden * inter / 2, sb_bytes = (uint64_t)hidden * inter / 64 * 2;
    uint64_t per_expert = 3 * (w_bytes + 2 * sb_bytes);
    const uint64_t header = 12345; /* an unaligned safetensors-like header */
    if ((uint64_t)st.st_size < header + per_expert)
        return ms_errf(err, EINVAL, "%s: %" PRIu64 " bytes: too small for one expert of %" PRIu64 " bytes", path,
                       (uint64_t)st.st_size, per_expert);
    size_t n_exp = (size_t)(((uint64_t)st.st_size - header) / per_expert);
    /* 9 stacked tensors: gate.w, gate.s, gate.b, up.w, up.s, up.b, down.w, down.s, down.b */
    uint64_t part[9], base[9], b = header;
    for (int t = 0; t < 9; t++) {
        part[t] = t % 3 == 0 ? w_bytes : sb_bytes;
        base[t] = b;
        b += part[t] * n_exp;
    }
    ms_bench_io_range *ranges = calloc(n_exp * 9, sizeof *ranges);
    size_t *start = calloc(n_exp + 1, sizeof *start);
    if (!ranges || !start) {
        free(ranges);
        free(start);
        return ms_errf(err, ENOMEM, "bench io: out of memory");
    }
    for (size_t e = 0; e < n_exp; e++) {
        start[e] = e * 9;
        for (int t = 0; t < 9; t++) ranges[e * 9 + t] = (ms_bench_io_range){0, base[t] + e * part[t], part[t]};
    }
    start[n_exp] = n_exp * 9;
    const char *paths[1] = {path};
    ms_bench_io_workload w = {.paths = paths, .n_files = 1, .ranges = ranges, .n_ranges = n_exp * 9,
                              .expert_start = start, .n_experts = n_exp};
    int rc = ms_bench_io_run(&w, o, rows, n_rows, err);
    free(ranges);
    free(start);
    return rc;
}

void ms_bench_io_print(FILE *f, const ms_bench_io_row *rows, int n, bool json)
{
    if (json) {
        fprintf(f, "[");
        for (int i = 0; i < n; i++) {
            const ms_bench_io_row *r = &rows[i];
            fprintf(f,
                    "%s\n  {\"backend\": \"%s\", \"bytes\": %" PRIu64 ", \"bytes_read\": %" PRIu64
                    ", \"requests\": %" PRIu64 ", \"seconds\": %.6f, \"gbps\": %.4f, \"ratio_to_raw\": %.4f, "
                    "\"note\": \"%s\"}",
                    i ? "," : "", r->backend, r->bytes, r->bytes_read, r->requests, r->seconds, r->gbps,
                    r->ratio_to_raw, r->note);
        }
        fprintf(f, "\n]\n");
        return;
    }
    fprintf(f, "%-18s %12s %9s %8s %8s  %s\n", "backend", "bytes", "seconds", "GB/s", "vs raw", "note");
    for (int i = 0; i < n; i++) {
        const ms_bench_io_row *r = &rows[i];
        char b[32];
        fprintf(f, "%-18s %12s %9.3f %8.3f %8.3f  %s\n", r->backend, ms_fmt_bytes(r->bytes, b, sizeof b), r->seconds,
                r->gbps, r->ratio_to_raw, r->note);
    }
}

/* experts_mem.c - the in-memory expert sources (see experts.h): one pointer per
 * (MoE layer, expert, part), computed at creation, then acquire/next/release
 * are bookkeeping only.
 *
 *   resident: every expert is read once at start-up with pread into one 64-byte
 *             aligned allocation (each part 64-byte aligned), the page cache
 *             dropped behind each read. The reference the streaming cache must
 *             match bit for bit, and the fastest choice when everything fits.
 *   mmap:     every shard is mapped read-only; parts are used in place, so the
 *             kernel's page cache (with its read-ahead) is the cache. Not bounded
 *             by --ram: it exists to be measured against the io_uring cache.
 * next() hands experts out in acquire order; the ids of one acquire are copied
 * into a buffer sized for the largest acquire the source allows (every expert
 * of a layer). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "experts.h"
#include "util.h"

typedef struct mem_src {
    const ms_expert_table *t;
    ms_experts_mem_mode mode;
    const uint8_t **ptr;   /* [n_moe_layers][n_experts][n_parts] payload (NULL = absent part) */
    uint8_t *mem;          /* resident: all experts */
    uint8_t **map;         /* mmap: [n_files] mappings */
    size_t *map_len;
    int li;                /* MoE layer of the current acquire */
    int *ids;              /* [n_experts] */
    int n, next;
} mem_src;

static int s_max_acquire(void *impl) { return ((mem_src *)impl)->t->n_experts; }

static int s_acquire(void *impl, int layer, const int *ids, int n, ms_err *err)
{
    mem_src *s = impl;
    const ms_expert_table *t = s->t;
    if (layer < 0 || layer >= t->n_layers || t->moe_index[layer] < 0)
        return ms_errf(err, EINVAL, "layer %d has no routed experts", layer);
    if (n < 1 || n > t->n_experts)
        return ms_errf(err, EINVAL, "acquire of %d experts (a layer has %d)", n, t->n_experts);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_experts)
            return ms_errf(err, EINVAL, "expert id %d is outside 0..%d", ids[i], t->n_experts - 1);
    s->li = t->moe_index[layer];
    memcpy(s->ids, ids, (size_t)n * sizeof *ids);
    s->n = n;
    s->next = 0;
    return 0;
}

static int s_next(void *impl, ms_expert_ptrs *out, ms_err *err)
{
    mem_src *s = impl;
    if (s->next >= s->n) return ms_errf(err, EINVAL, "next() called more often than experts were acquired");
    int pos = s->next++, P = s->t->n_parts;
    const uint8_t **p = s->ptr + ((size_t)s->li * (size_t)s->t->n_experts + (size_t)s->ids[pos]) * (size_t)P;
    out->pos = pos;
    for (int r = 0; r < P; r++) out->p[r] = p[r];
    return pos;
}

static void s_release(void *impl)
{
    mem_src *s = impl;
    s->n = s->next = 0;
}

static void s_destroy(void *impl)
{
    mem_src *s = impl;
    if (!s) return;
    if (s->map)
        for (int i = 0; i < s->t->n_files; i++)
            if (s->map[i]) munmap(s->map[i], s->map_len[i]);
    free(s->map);
    free(s->map_len);
    free(s->mem);
    free(s->ptr);
    free(s->ids);
    free(s);
}

static const ms_expert_src_ops resident_ops = {
    .name = "resident",
    .max_acquire = s_max_acquire,
    .acquire = s_acquire,
    .next = s_next,
    .release = s_release,
    .prefetch = NULL,
    .destroy = s_destroy,
};

static const ms_expert_src_ops mmap_ops = {
    .name = "mmap",
    .max_acquire = s_max_acquire,
    .acquire = s_acquire,
    .next = s_next,
    .release = s_release,
    .prefetch = NULL,
    .destroy = s_destroy,
};

/* Map every shard read-only; ptr[] points into the mappings. */
static int map_files(mem_src *s, ms_err *err)
{
    const ms_expert_table *t = s->t;
    s->map = calloc((size_t)(t->n_files ? t->n_files : 1), sizeof *s->map);
    s->map_len = calloc((size_t)(t->n_files ? t->n_files : 1), sizeof *s->map_len);
    if (!s->map || !s->map_len) return ms_errf(err, ENOMEM, "out of memory");
    for (int i = 0; i < t->n_files; i++) {
        int fd = open(t->files[i], O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
            int e = errno;
            if (fd >= 0) close(fd);
            return ms_errf(err, e, "%s: %s", t->files[i], strerror(e));
        }
        if (st.st_size == 0) {
            close(fd);
            continue;
        }
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        int e = errno;
        close(fd);
        if (p == MAP_FAILED) return ms_errf(err, e, "%s: mmap failed: %s", t->files[i], strerror(e));
        s->map[i] = p;
        s->map_len[i] = (size_t)st.st_size;
    }
    size_t n = (size_t)t->n_moe_layers * (size_t)t->n_experts * (size_t)t->n_parts;
    for (size_t i = 0; i < n; i++) {
        const ms_range *r = &t->ranges[i];
        if (!r->len) continue;
        if (r->file < 0 || r->file >= t->n_files || r->offset + r->len > s->map_len[r->file])
            return ms_errf(err, EINVAL, "expert table: range past the end of %s",
                           r->file >= 0 && r->file < t->n_files ? t->files[r->file] : "?");
        s->ptr[i] = s->map[r->file] + r->offset;
    }
    return 0;
}

/* Read every part into one allocation; ptr[] points into it. */
static int read_all(mem_src *s, uint64_t *bytes_out, ms_err *err)
{
    const ms_expert_table *t = s->t;
    size_t n = (size_t)t->n_moe_layers * (size_t)t->n_experts * (size_t)t->n_parts;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) total += MS_ALIGN_UP(t->ranges[i].len, 64);
    s->mem = ms_aligned_alloc(64, total ? total : 64);
    if (!s->mem)
        return ms_errf(err, ENOMEM, "cannot allocate %llu bytes for resident experts", (unsigned long long)total);
    int *fds = malloc((size_t)(t->n_files ? t->n_files : 1) * sizeof *fds);
    if (!fds) return ms_errf(err, ENOMEM, "out of memory");
    int rc = 0, opened = 0;
    for (; opened < t->n_files; opened++) {
        fds[opened] = open(t->files[opened], O_RDONLY | O_CLOEXEC);
        if (fds[opened] < 0) {
            rc = ms_errf(err, errno, "%s: %s", t->files[opened], strerror(errno));
            goto out;
        }
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const ms_range *r = &t->ranges[i];
        if (!r->len) continue;
        uint8_t *dst = s->mem + off;
        off += MS_ALIGN_UP(r->len, 64);
        s->ptr[i] = dst;
        int fd = fds[r->file];
        uint64_t got = 0;
        while (got < r->len) {
            ssize_t k = pread(fd, dst + got, r->len - got, (off_t)(r->offset + got));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) {
                int e = k < 0 ? errno : EIO;
                rc = ms_errf(err, e, "%s: reading expert bytes at offset %llu failed: %s", t->files[r->file],
                             (unsigned long long)(r->offset + got),
                             k < 0 ? strerror(e) : "unexpected end of file (truncated?)");
                goto out;
            }
            got += (uint64_t)k;
        }
        uint64_t a = r->offset / 4096 * 4096;
        posix_fadvise(fd, (off_t)a, (off_t)(MS_ALIGN_UP(r->offset + r->len, 4096) - a), POSIX_FADV_DONTNEED);
    }
    *bytes_out = total;
out:
    for (int i = 0; i < opened; i++) close(fds[i]);
    free(fds);
    return rc;
}

int ms_experts_mem_create(const ms_expert_table *t, ms_experts_mem_mode mode, ms_expert_src *out, uint64_t *bytes_out,
                          ms_err *err)
{
    if (t->n_parts < 1 || t->n_parts > MS_MAX_EXPERT_PARTS)
        return ms_errf(err, EINVAL, "expert table: %d parts per expert (1..%d)", t->n_parts, MS_MAX_EXPERT_PARTS);
    mem_src *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "out of memory");
    s->t = t;
    s->mode = mode;
    size_t n = (size_t)t->n_moe_layers * (size_t)t->n_experts * (size_t)t->n_parts;
    s->ptr = calloc(n ? n : 1, sizeof *s->ptr);
    s->ids = malloc((size_t)(t->n_experts ? t->n_experts : 1) * sizeof *s->ids);
    uint64_t bytes = 0;
    int rc = !s->ptr || !s->ids ? ms_errf(err, ENOMEM, "out of memory")
             : mode == MS_EXPERTS_MMAP ? map_files(s, err)
                                       : read_all(s, &bytes, err);
    if (rc < 0) {
        s_destroy(s);
        return rc;
    }
    out->ops = mode == MS_EXPERTS_MMAP ? &mmap_ops : &resident_ops;
    out->impl = s;
    if (bytes_out) *bytes_out = bytes;
    return 0;
}

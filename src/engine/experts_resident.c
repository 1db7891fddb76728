/* experts_resident.c - expert source that holds every routed expert in memory
 * (read once at start-up through the expert table's byte ranges). Used when the
 * whole model fits the budget, and as the reference the streaming cache must
 * match bit for bit. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "experts.h"
#include "util.h"

typedef struct res_src {
    const ms_model *m;
    uint8_t *mem;          /* all experts, each range 64-byte aligned */
    uint64_t *off;         /* [n_moe_layers][E][9] offset of each range in mem */
    int layer_idx;         /* moe index of the current acquire */
    int ids[4096];
    int n, next;
} res_src;

static int r_max_acquire(void *impl)
{
    res_src *s = impl;
    return s->m->cfg.n_routed_experts;
}

static int r_acquire(void *impl, int layer, const int *ids, int n, ms_err *err)
{
    res_src *s = impl;
    int mi = s->m->moe_index[layer];
    if (mi < 0) return ms_errf(err, EINVAL, "layer %d has no routed experts", layer);
    if (n > (int)(sizeof s->ids / sizeof s->ids[0])) return ms_errf(err, EINVAL, "too many experts in one acquire");
    s->layer_idx = mi;
    memcpy(s->ids, ids, (size_t)n * sizeof *ids);
    s->n = n;
    s->next = 0;
    return 0;
}

static int r_next(void *impl, ms_expert_ptrs *out, ms_err *err)
{
    res_src *s = impl;
    if (s->next >= s->n) return ms_errf(err, EINVAL, "next() called more often than experts were acquired");
    int pos = s->next++;
    int E = s->m->cfg.n_routed_experts;
    const ms_moe_layer *ml = &s->m->moe[s->layer_idx];
    size_t base = ((size_t)s->layer_idx * (size_t)E + (size_t)s->ids[pos]) * MS_EXPERT_RANGES;
    out->pos = pos;
    for (int r = 0; r < MS_EXPERT_RANGES; r++)
        out->p[r] = ml->ranges[(size_t)s->ids[pos] * MS_EXPERT_RANGES + r].len ? s->mem + s->off[base + r] : NULL;
    return pos;
}

static void r_release(void *impl)
{
    res_src *s = impl;
    s->n = s->next = 0;
}

static void r_destroy(void *impl)
{
    res_src *s = impl;
    if (!s) return;
    free(s->mem);
    free(s->off);
    free(s);
}

static const ms_expert_src_ops resident_ops = {
    .name = "resident",
    .max_acquire = r_max_acquire,
    .acquire = r_acquire,
    .next = r_next,
    .release = r_release,
    .prefetch = NULL,
    .destroy = r_destroy,
};

int ms_experts_resident_create(const ms_model *m, ms_expert_src *out, uint64_t *bytes_out, ms_err *err)
{
    int E = m->cfg.n_routed_experts;
    res_src *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "out of memory");
    s->m = m;
    size_t nr = (size_t)m->n_moe_layers * (size_t)E * MS_EXPERT_RANGES;
    s->off = malloc((nr ? nr : 1) * sizeof *s->off);
    if (!s->off) {
        r_destroy(s);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    uint64_t total = 0;
    for (int li = 0; li < m->n_moe_layers; li++)
        for (size_t i = 0; i < (size_t)E * MS_EXPERT_RANGES; i++) {
            s->off[(size_t)li * E * MS_EXPERT_RANGES + i] = total;
            total += MS_ALIGN_UP(m->moe[li].ranges[i].len, 64);
        }
    s->mem = ms_aligned_alloc(64, total ? total : 64);
    if (!s->mem) {
        r_destroy(s);
        return ms_errf(err, ENOMEM, "cannot allocate %llu bytes for resident experts", (unsigned long long)total);
    }
    for (int li = 0; li < m->n_moe_layers; li++)
        for (size_t i = 0; i < (size_t)E * MS_EXPERT_RANGES; i++) {
            const ms_range *r = &m->moe[li].ranges[i];
            if (!r->len) continue;
            const ms_st_file *f = &m->tt.files[r->file];
            uint8_t *dst = s->mem + s->off[(size_t)li * E * MS_EXPERT_RANGES + i];
            uint64_t got = 0;
            while (got < r->len) {
                ssize_t k = pread(f->fd, dst + got, r->len - got, (off_t)(r->offset + got));
                if (k < 0 && errno == EINTR) continue;
                if (k <= 0) {
                    int e = k < 0 ? errno : EIO;
                    r_destroy(s);
                    return ms_errf(err, e, "%s: reading expert bytes at offset %llu failed: %s", f->path,
                                   (unsigned long long)(r->offset + got),
                                   k < 0 ? strerror(e) : "unexpected end of file (truncated?)");
                }
                got += (uint64_t)k;
            }
            uint64_t a = r->offset / 4096 * 4096;
            posix_fadvise(f->fd, (off_t)a, (off_t)(MS_ALIGN_UP(r->offset + r->len, 4096) - a), POSIX_FADV_DONTNEED);
        }
    out->ops = &resident_ops;
    out->impl = s;
    if (bytes_out) *bytes_out = total;
    return 0;
}

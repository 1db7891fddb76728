/* experts_mmap.c - the page-cache baseline (what llama.cpp users live with):
 * every shard file is mapped read-only and experts are used in place, so the
 * kernel's page cache (with its read-ahead) is the cache. The --ram budget does
 * not bound it; it exists to be measured against the io_uring cache. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "experts.h"
#include "util.h"

typedef struct mm_src {
    const ms_model *m;
    uint8_t **map;   /* [n_files] */
    size_t *len;
    int n_files;
    int li, ids[4096], n, next;
} mm_src;

static int m_max_acquire(void *impl) { return ((mm_src *)impl)->m->cfg.n_routed_experts; }

static int m_acquire(void *impl, int layer, const int *ids, int n, ms_err *err)
{
    mm_src *s = impl;
    s->li = s->m->moe_index[layer];
    if (s->li < 0 || n > (int)MS_ARRAY_LEN(s->ids)) return ms_errf(err, EINVAL, "bad acquire");
    memcpy(s->ids, ids, (size_t)n * sizeof *ids);
    s->n = n;
    s->next = 0;
    return 0;
}

static int m_next(void *impl, ms_expert_ptrs *out, ms_err *err)
{
    mm_src *s = impl;
    if (s->next >= s->n) return ms_errf(err, EINVAL, "next() called more often than experts were acquired");
    int pos = s->next++;
    const ms_range *rg = &s->m->moe[s->li].ranges[(size_t)s->ids[pos] * MS_EXPERT_RANGES];
    out->pos = pos;
    for (int r = 0; r < MS_EXPERT_RANGES; r++) out->p[r] = rg[r].len ? s->map[rg[r].file] + rg[r].offset : NULL;
    return pos;
}

static void m_release(void *impl) { ((mm_src *)impl)->n = 0; }

static void m_destroy(void *impl)
{
    mm_src *s = impl;
    if (!s) return;
    for (int i = 0; i < s->n_files; i++)
        if (s->map[i]) munmap(s->map[i], s->len[i]);
    free(s->map);
    free(s->len);
    free(s);
}

static const ms_expert_src_ops mmap_ops = {
    .name = "mmap",
    .max_acquire = m_max_acquire,
    .acquire = m_acquire,
    .next = m_next,
    .release = m_release,
    .prefetch = NULL,
    .destroy = m_destroy,
};

int ms_experts_mmap_create(const ms_model *m, ms_expert_src *out, ms_err *err)
{
    mm_src *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "out of memory");
    s->m = m;
    s->n_files = m->tt.n_files;
    s->map = calloc((size_t)s->n_files, sizeof *s->map);
    s->len = calloc((size_t)s->n_files, sizeof *s->len);
    if (!s->map || !s->len) {
        m_destroy(s);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    for (int i = 0; i < s->n_files; i++) {
        const ms_st_file *f = &m->tt.files[i];
        s->len[i] = f->size;
        void *p = mmap(NULL, f->size, PROT_READ, MAP_SHARED, f->fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            m_destroy(s);
            return ms_errf(err, e, "%s: mmap failed: %s", f->path, strerror(e));
        }
        s->map[i] = p;
    }
    out->ops = &mmap_ops;
    out->impl = s;
    return 0;
}

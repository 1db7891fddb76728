/* plan.c - budget split (see plan.h). Uses the architecture's exact state size
 * and the expert cache's slot geometry at the shard files' O_DIRECT alignment. */
#include "plan.h"

#include <stdio.h>
#include <string.h>

#include "arch.h"
#include "io.h"
#include "util.h"

uint64_t ms_plan_default_budget(void)
{
    uint64_t avail = ms_mem_available();
    if (avail == 0) return 4ull << 30;
    uint64_t b = avail / 100 * 85;
    return b > (2ull << 30) ? b - (1ull << 30) : b;
}

int ms_plan_compute(const ms_model *m, uint64_t budget, int ctx, int batch, int threads, ms_plan *p, ms_err *err)
{
    ms_plan_opts o = {.budget = budget, .ctx = ctx, .batch = batch, .threads = threads};
    return ms_plan_make(m, &o, p, err);
}

static int plan_one(const ms_model *m, const ms_plan_opts *o, ms_plan *p, ms_err *err);

int ms_plan_make(const ms_model *m, const ms_plan_opts *o, ms_plan *p, ms_err *err)
{
    if (o->batch > 0) return plan_one(m, o, p, err);
    /* auto: the largest chunk that fits with modest scratch; the minimum is 128's */
    static const int cand[] = {512, 256, 128};
    ms_plan_opts q = *o;
    int rc;
    q.batch = 128;
    if ((rc = plan_one(m, &q, p, err)) < 0) return rc;
    uint64_t min128 = p->min_budget;
    if (!q.align) q.align = p->align; /* probe the files once */
    for (size_t i = 0; i < MS_ARRAY_LEN(cand) - 1; i++) {
        q.batch = cand[i];
        if ((rc = plan_one(m, &q, p, err)) < 0) return rc;
        if (p->fits && p->scratch_bytes <= o->budget / 32) break;
        q.batch = 128;
    }
    if (q.batch == 128 && (rc = plan_one(m, &q, p, err)) < 0) return rc;
    p->min_budget = min128;
    p->fits = o->budget >= p->min_budget;
    return 0;
}

static int plan_one(const ms_model *m, const ms_plan_opts *o, ms_plan *p, ms_err *err)
{
    const ms_config *c = &m->cfg;
    memset(p, 0, sizeof *p);
    if (o->ctx <= 0) return ms_errf(err, EINVAL, "--ctx must be positive");
    int batch = o->batch > 0 ? o->batch : 1;
    int threads = o->threads > 0 ? o->threads : ms_physical_cores();
    const ms_arch_ops *arch = ms_arch_for(c, err);
    if (!arch) return -ENOTSUP;
    p->budget = o->budget;
    p->ctx = o->ctx;
    p->batch = batch;
    p->threads = threads;
    p->resident_bytes = m->resident_bytes;
    p->n_seq = o->n_seq > 0 ? o->n_seq : 1;
    uint64_t state = arch->state_bytes(c, o->ctx, batch, p->n_seq, threads, o->kv_bf16, &p->kv_bytes);
    p->scratch_bytes = state - p->kv_bytes;
    p->overhead_bytes = MS_PLAN_OVERHEAD;
    uint64_t fixed = p->resident_bytes + state + p->overhead_bytes;
    p->total_experts = (int64_t)m->n_moe_layers * c->n_routed_experts;
    p->expert_bytes_total = m->expert_bytes_total;
    p->align = o->align;
    if (m->n_moe_layers) {
        int rc;
        if (!p->align) {
            ms_io_config ioc = {.backend = o->io && strcmp(o->io, "mmap") && strcmp(o->io, "resident") ? o->io : NULL};
            if ((rc = ms_io_probe_alignment(&ioc, m->paths, m->tt.n_files, &p->align, err)) < 0) return rc;
        }
        ms_cache_layout *lay = &p->layout;
        if ((rc = ms_cache_layout_init(&m->experts, p->align, lay, err)) < 0) return rc;
        p->min_cache_bytes = lay->min_bytes;
        p->all_fit_budget = fixed + lay->all_bytes;
        p->n_classes = lay->n_classes;
        if (o->budget > fixed) p->cache_bytes = o->budget - fixed;
        if (p->cache_bytes >= lay->min_bytes) {
            p->cache_used = ms_cache_layout_split(lay, p->cache_bytes);
            p->expert_slots = ms_cache_layout_slots(lay);
        }
    } else {
        p->all_fit_budget = fixed;
        if (o->budget > fixed) p->cache_bytes = o->budget - fixed;
    }
    p->min_budget = fixed + p->min_cache_bytes;
    p->fits = o->budget >= p->min_budget;
    p->all_fit = p->fits && p->expert_slots >= p->total_experts;
    return 0;
}

int ms_plan_refuse(const ms_plan *p, ms_err *err)
{
    char b[7][32];
    return ms_errf(err, ENOMEM,
                   "--ram %s is too small: need at least %s = resident %s + KV cache %s (ctx %d) + scratch %s + "
                   "overhead %s + minimum expert cache %s",
                   ms_fmt_bytes(p->budget, b[0], 32), ms_fmt_bytes(p->min_budget, b[1], 32),
                   ms_fmt_bytes(p->resident_bytes, b[2], 32), ms_fmt_bytes(p->kv_bytes, b[3], 32), p->ctx,
                   ms_fmt_bytes(p->scratch_bytes, b[4], 32), ms_fmt_bytes(p->overhead_bytes, b[5], 32),
                   ms_fmt_bytes(p->min_cache_bytes, b[6], 32));
}

int ms_plan_expert_slots(const char *model_dir, uint64_t ram, int ctx, int batch, int threads, bool kv_bf16,
                         int64_t *slots, ms_err *err)
{
    ms_model m;
    int rc = ms_model_open(model_dir, &m, err);
    if (rc < 0) return rc;
    ms_plan p;
    if (ctx <= 0) ctx = (int)MS_MIN((int64_t)4096, m.cfg.max_position_embeddings);
    ms_plan_opts o = {.budget = ram, .ctx = ctx,
                      .batch = batch,
                      .threads = threads, .kv_bf16 = kv_bf16};
    rc = ms_plan_make(&m, &o, &p, err);
    if (rc == 0 && !p.fits) rc = ms_plan_refuse(&p, err);
    if (rc == 0) *slots = p.expert_slots;
    ms_model_close(&m);
    return rc;
}

/* plan.c - budget split (see plan.h). Uses the architecture's exact state size
 * and the expert cache's slot geometry at the minimum O_DIRECT alignment. */
#include "plan.h"

#include <stdio.h>
#include <string.h>

#include "arch.h"
#include "expert_cache.h"
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
    return ms_plan_compute_kv(m, budget, ctx, batch, threads, false, p, err);
}

int ms_plan_compute_kv(const ms_model *m, uint64_t budget, int ctx, int batch, int threads, bool kv_bf16, ms_plan *p,
                       ms_err *err)
{
    const ms_config *c = &m->cfg;
    memset(p, 0, sizeof *p);
    if (ctx <= 0) return ms_errf(err, EINVAL, "--ctx must be positive");
    if (batch <= 0) batch = 1;
    if (threads <= 0) threads = ms_physical_cores();
    const ms_arch_ops *arch = ms_arch_for(c, err);
    if (!arch) return -ENOTSUP;
    p->budget = budget;
    p->ctx = ctx;
    p->batch = batch;
    p->threads = threads;
    p->resident_bytes = m->resident_bytes;
    uint64_t state = arch->state_bytes(c, ctx, batch, threads, kv_bf16, &p->kv_bytes);
    p->scratch_bytes = state - p->kv_bytes;
    p->overhead_bytes = MS_PLAN_OVERHEAD;
    uint64_t fixed = p->resident_bytes + state + p->overhead_bytes;
    p->total_experts = (int64_t)m->n_moe_layers * c->n_routed_experts;
    p->expert_bytes_total = m->expert_bytes_total;
    if (m->n_moe_layers) {
        ms_cache_layout lay;
        int rc = ms_cache_layout_init(m, 4096, &lay, err);
        if (rc < 0) return rc;
        p->min_cache_bytes = lay.min_bytes;
        p->all_fit_budget = fixed + lay.all_bytes;
        p->n_classes = lay.n_classes;
        if (budget > fixed) p->cache_bytes = budget - fixed;
        if (p->cache_bytes >= lay.min_bytes) {
            p->cache_used = ms_cache_layout_split(m, &lay, p->cache_bytes);
            for (int k = 0; k < lay.n_classes; k++) p->expert_slots += lay.cls[k].n_slots;
        }
        ms_cache_layout_free(&lay);
    } else {
        p->all_fit_budget = fixed;
        if (budget > fixed) p->cache_bytes = budget - fixed;
    }
    p->min_budget = fixed + p->min_cache_bytes;
    p->fits = budget >= p->min_budget;
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
    rc = ms_plan_compute_kv(&m, ram, ctx, batch > 0 ? batch : 128, threads > 0 ? threads : 0, kv_bf16, &p, err);
    if (rc == 0 && !p.fits) rc = ms_plan_refuse(&p, err);
    if (rc == 0) *slots = p.expert_slots;
    ms_model_close(&m);
    return rc;
}

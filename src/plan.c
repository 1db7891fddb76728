/* plan.c - budget split (see plan.h). The scratch estimate mirrors the buffers
 * the forward pass allocates for a prefill chunk of `prefill_chunk` tokens. */
#include "plan.h"

#include <string.h>

#include "util.h"

#define MS_FIXED_OVERHEAD (64ull << 20) /* allocator slack, io ring, tables, thread stacks */

uint64_t ms_plan_default_budget(void)
{
    uint64_t avail = ms_mem_available();
    if (avail == 0) return 4ull << 30;
    uint64_t b = avail / 100 * 85;
    return b > (2ull << 30) ? b - (1ull << 30) : b;
}

uint64_t ms_plan_kv_bytes_per_token(const ms_config *c)
{
    return (uint64_t)c->n_layers * (uint64_t)(c->kv_lora_rank + c->qk_rope_head_dim) * sizeof(float);
}

static uint64_t scratch_estimate(const ms_config *c, int n, int ctx)
{
    uint64_t D = (uint64_t)c->hidden_size, H = (uint64_t)c->n_heads;
    uint64_t qd = H * (uint64_t)(c->qk_nope_head_dim + c->qk_rope_head_dim);
    uint64_t lat = (uint64_t)c->kv_lora_rank + (uint64_t)c->qk_rope_head_dim;
    uint64_t inter = (uint64_t)MS_MAX(c->intermediate_size, c->moe_intermediate_size * MS_MAX(1, c->n_shared_experts));
    uint64_t k = (uint64_t)MS_MAX(1, c->n_experts_per_tok);
    uint64_t per_tok = 4 * D                        /* h, x, attention out, moe out */
                       + qd + (uint64_t)c->q_lora_rank + lat
                       + H * (uint64_t)c->kv_lora_rank /* absorbed q / latent outputs */
                       + H * (uint64_t)c->v_head_dim
                       + 3 * inter                    /* ffn gate/up */
                       + k * D                        /* per-expert outputs (fixed-order sum) */
                       + (uint64_t)MS_MAX(1, c->n_routed_experts) * 2;
    uint64_t attn = H * (uint64_t)ctx;              /* scores for one token over the context */
    uint64_t logits = (uint64_t)c->vocab_size;
    return ((uint64_t)n * per_tok + attn + logits + D * 4) * sizeof(float);
}

int ms_plan_compute(const ms_model *m, uint64_t budget, int ctx, int prefill_chunk, ms_plan *p, ms_err *err)
{
    const ms_config *c = &m->cfg;
    memset(p, 0, sizeof *p);
    if (ctx <= 0) return ms_errf(err, EINVAL, "--ctx must be positive");
    if (prefill_chunk <= 0) prefill_chunk = 1;
    p->budget = budget;
    p->ctx = ctx;
    p->prefill_chunk = prefill_chunk;
    p->resident_bytes = m->resident_bytes;
    p->kv_bytes = ms_plan_kv_bytes_per_token(c) * (uint64_t)ctx;
    p->scratch_bytes = scratch_estimate(c, prefill_chunk, ctx);
    p->overhead_bytes = MS_FIXED_OVERHEAD;
    uint64_t k = (uint64_t)c->n_experts_per_tok;
    p->min_cache_bytes = m->n_moe_layers ? 2 * k * m->max_expert_bytes : 0;
    uint64_t fixed = p->resident_bytes + p->kv_bytes + p->scratch_bytes + p->overhead_bytes;
    p->min_budget = fixed + p->min_cache_bytes;
    p->total_experts = (int64_t)m->n_moe_layers * c->n_routed_experts;
    p->expert_bytes_total = m->expert_bytes_total;
    p->fits = budget >= p->min_budget;
    if (budget > fixed) p->cache_bytes = budget - fixed;
    if (m->max_expert_bytes) p->expert_slots = (int64_t)(p->cache_bytes / m->max_expert_bytes);
    if (p->expert_slots > p->total_experts) p->expert_slots = p->total_experts;
    p->all_fit = p->expert_slots >= p->total_experts;
    return 0;
}

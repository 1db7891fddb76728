/* plan.h - split one RAM budget (--ram) into its parts, before anything is loaded:
 *
 *   budget = resident weights            (embeddings, attention, routers, shared
 *                                         experts, dense MLPs, norms, lm_head)
 *          + KV cache for --ctx tokens   (latent c_kv + k_pe per layer, f32)
 *          + scratch                     (activations for a prefill chunk, logits)
 *          + I/O and runtime overhead    (fixed allowance: ring, tables, stacks)
 *          + expert cache                (the rest, in whole expert slots)
 *
 * The minimum budget is the fixed parts plus the experts one MoE layer needs at
 * once (top-k of the largest layer) plus prefetch headroom (another top-k). */
#ifndef MS_PLAN_H
#define MS_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "model.h"

typedef struct ms_plan {
    uint64_t budget;
    uint64_t resident_bytes;
    uint64_t kv_bytes;        /* for ctx tokens */
    uint64_t scratch_bytes;
    uint64_t overhead_bytes;  /* fixed allowance */
    uint64_t cache_bytes;     /* budget minus the above (0 if it does not fit) */
    uint64_t min_cache_bytes; /* top-k experts of the largest layer + prefetch headroom */
    uint64_t min_budget;
    int64_t expert_slots;     /* experts the cache holds (by the largest expert size) */
    int64_t total_experts;    /* n_moe_layers * n_experts */
    uint64_t expert_bytes_total;
    int ctx;
    int prefill_chunk;
    bool fits;                /* budget >= min_budget */
    bool all_fit;             /* every expert fits in the cache */
} ms_plan;

/* Default --ram: a safe fraction (85%) of MemAvailable minus 1 GiB. */
uint64_t ms_plan_default_budget(void);

/* Compute the split. Never fails for a too-small budget: check plan->fits. */
int ms_plan_compute(const ms_model *m, uint64_t budget, int ctx, int prefill_chunk, ms_plan *p, ms_err *err);

/* KV bytes per token (all layers). */
uint64_t ms_plan_kv_bytes_per_token(const ms_config *c);

#endif

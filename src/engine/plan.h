/* plan.h - split one RAM budget (--ram) into its parts, before anything is loaded:
 *
 *   budget = resident weights            (embeddings, attention, routers, shared
 *                                         experts, dense MLPs, norms, lm_head)
 *          + KV cache for --ctx tokens   (the family's layout, f32 or bf16), one per
 *                                        sequence that decodes at the same time
 *          + scratch                     (activations for a --batch chunk, logits,
 *                                         per-thread attention rows)
 *          + fixed overhead              (I/O rings and tables, thread stacks,
 *                                         allocator slack, the binary itself)
 *          + expert cache                (the rest, in whole expert slots)
 *
 * The minimum budget is the fixed parts plus 2 x top-k expert slots per size
 * class: the experts one MoE layer needs at once plus the same again as
 * prefetch headroom.
 *
 * The split is made once, here: the slot geometry uses the I/O alignment the
 * shard files really need (probed unless given), and the engine hands the
 * resulting cache layout to the expert cache unchanged, so `plan`,
 * `simulate --ram` and `run` agree on every slot. */
#ifndef MS_PLAN_H
#define MS_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "expert_cache.h"
#include "model.h"

#define MS_PLAN_OVERHEAD (96ull << 20) /* fixed allowance, documented in the README */

typedef struct ms_plan {
    uint64_t budget;
    uint64_t resident_bytes;
    uint64_t kv_bytes;        /* for ctx tokens */
    uint64_t scratch_bytes;   /* state minus KV */
    uint64_t overhead_bytes;  /* fixed allowance */
    uint64_t cache_bytes;     /* what the expert cache may use (0 if it does not fit) */
    uint64_t cache_used;      /* bytes of whole slots */
    uint64_t min_cache_bytes;
    uint64_t min_budget;
    uint64_t all_fit_budget;  /* budget at which every expert is cached */
    int64_t expert_slots;     /* experts the cache holds */
    int64_t total_experts;    /* n_moe_layers * n_experts */
    int n_classes;            /* expert size classes */
    uint64_t expert_bytes_total;
    int ctx, batch, threads;
    int n_seq;                /* sequences with a KV cache of ctx positions each */
    uint64_t align;           /* I/O alignment the slots are sized for */
    bool fits;                /* budget >= min_budget */
    bool all_fit;             /* every expert fits in the cache */
    ms_cache_layout layout;   /* the expert cache's slots (valid when fits) */
} ms_plan;

typedef struct ms_plan_opts {
    uint64_t budget;          /* --ram */
    int ctx;                  /* KV positions (> 0) */
    int batch;                /* rows of one forward step: the prefill chunk. 0 = auto: the
                                 largest of 512, 256 and 128 tokens that fits the budget with its
                                 scratch within 1/32 of it (bigger chunks read each routed expert
                                 once for more tokens and give the GEMMs larger panels); the
                                 minimum budget is then the one for 128. run, plan, inspect and
                                 simulate --ram all default to it. */
    int n_seq;                /* sequences decoding together, each with its KV cache (0 = 1) */
    int threads;              /* 0 = physical cores */
    bool kv_bf16;             /* KV cache in bf16 */
    const char *io;           /* backend whose alignment to probe (NULL = uring) */
    uint64_t align;           /* I/O alignment (0 = probe the shard files) */
} ms_plan_opts;

/* Default --ram: 85% of MemAvailable minus 1 GiB. */
uint64_t ms_plan_default_budget(void);

/* Compute the split. Never fails for a too-small budget: check plan->fits. */
int ms_plan_make(const ms_model *m, const ms_plan_opts *o, ms_plan *p, ms_err *err);
/* The same with an f32 KV cache and the probed alignment. */
int ms_plan_compute(const ms_model *m, uint64_t budget, int ctx, int batch, int threads, ms_plan *p, ms_err *err);

/* Expert slots a budget gives for a model directory: what `run --ram` gets
 * with the same --ctx, --batch, --threads and --kv (0 / false = run's
 * defaults: min(4096, model maximum), 128, physical cores, f32); an error
 * with the plan's numbers if the budget is below the minimum. For
 * `simulate --ram --model`. */
int ms_plan_expert_slots(const char *model_dir, uint64_t ram, int ctx, int batch, int threads, bool kv_bf16,
                         int64_t *slots, ms_err *err);

/* One error line for a budget that does not fit, with the numbers. */
int ms_plan_refuse(const ms_plan *p, ms_err *err);

#endif

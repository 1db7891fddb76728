/* moe.h - the MoE block every family calls, and the forward-pass environment.
 *
 *   routing (the family's router op) -> ids[n][K], weights[n][K]
 *     -> experts acquired through the expert source in the acquisition
 *        schedule of cache/schedule.h (order of first appearance, waves that
 *        fit the cache), the shared expert computed while the first wave reads
 *     -> each (token, rank) output in its own buffer, combined afterwards in
 *        the router's order: the result never depends on which experts were
 *        hits, in which order reads completed, the budget, the policy or the
 *        backend.
 * Next-layer prefetch (decode, --prefetch next-layer): once layer L's first
 * wave is pinned, the family's predict op guesses layer L+1's experts from the
 * current state; they are read behind L's demand reads and the guess is scored
 * when L+1 routes (ms_pred_stats).
 *
 * A family binds, per MoE layer, an ms_moe_block (expert formats from the model
 * store, its shared expert) and provides an ms_moe_router; the MoE scratch
 * (ms_moe) is part of the family's state and counted in its state_bytes. */
#ifndef MS_MOE_H
#define MS_MOE_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "experts.h"
#include "kernels.h"
#include "model.h"

/* Called for every token and MoE layer with the experts the router chose (best
 * first) and their weights (NULL for predictions) - the source of routing traces. */
typedef void (*ms_route_cb)(void *arg, int layer, int token_index, const int *ids, const float *w, int k);

/* Next-layer prediction quality: of the experts predicted for a layer, how many
 * the router then chose (precision = recall = correct / predicted at top-k). */
typedef struct ms_pred_stats {
    uint64_t predicted, correct;
} ms_pred_stats;

/* What a forward pass needs from outside the model. */
typedef struct ms_fwd_env {
    ms_compute compute;        /* kernels + pool */
    ms_expert_src experts;     /* routed experts */
    ms_route_cb on_route;      /* optional */
    void *on_route_arg;
    bool prefetch;             /* next-layer prefetch (decode) */
    bool exact;                /* batch-invariant step: every row computed exactly as a one-row
                                  step would (decode over several sequences, MTP verification) */
    ms_pred_stats *pred;       /* optional counters */
    ms_route_cb on_predict;    /* optional: each prediction (w is NULL) */
    void *on_predict_arg;
} ms_fwd_env;

/* The routing a family provides. fam is the family's bound weights + state. */
typedef struct ms_moe_router {
    void *fam;
    /* ids[n][K] (best first) and wts[n][K] for n tokens at MoE layer `layer`:
     * x[n][D] is the block's normalized input, tokens[n] the chunk's token ids
     * (hash-routed layers choose by token). Returns 0 or -errno. */
    int (*route)(void *fam, const ms_fwd_env *env, int layer, const float *x, const int *tokens, int n, int *ids,
                 float *wts, ms_err *err);
    /* Optional. One token: the experts MoE layer `layer` will probably choose,
     * guessed from the current state (called during the previous layer's MoE
     * block). Writes ids[K]; returns K, or 0 when there is nothing to predict. */
    int (*predict)(void *fam, const ms_fwd_env *env, int layer, int *ids);
} ms_moe_router;

/* One MoE layer as the family binds it. */
typedef struct ms_moe_block {
    const ms_moe_layer *experts;            /* formats and parts (model store) */
    const ms_mat *sh_gate, *sh_up, *sh_down; /* shared expert, NULL if none */
    ms_act act_routed, act_shared;          /* gated activations ({0} = plain SwiGLU) */
} ms_moe_block;

/* Sizes the MoE scratch is built for. */
typedef struct ms_moe_dims {
    int n_layers;      /* model layers (predictions are kept per layer) */
    int D;             /* hidden size */
    int E, K;          /* routed experts, experts per token */
    int batch;         /* most tokens one forward pass holds */
    int ffn_widest;    /* widest FFN run through ms_moe_ffn_scratch (experts, shared, and the
                          family's dense MLPs if it shares the scratch) */
} ms_moe_dims;

typedef struct ms_moe ms_moe;

/* Bytes ms_moe_create allocates for these dims (the plan counts them). */
uint64_t ms_moe_bytes(const ms_moe_dims *d);
int ms_moe_create(const ms_moe_dims *d, ms_moe **out, ms_err *err);
void ms_moe_destroy(ms_moe *moe);
/* ms_ffn scratch for `batch` tokens of the widest FFN (the family may use it
 * for its dense MLPs between MoE blocks). */
float *ms_moe_ffn_scratch(ms_moe *moe);

/* Decode with prefetch on: read now the experts MoE layer `layer` will use, as
 * the router's predict op names them (nothing if a prediction for it is
 * pending). The MoE block does this for the next layer; a family calls it
 * where it knows a layer's experts earlier (DeepSeek-V4's hash-routed first
 * layer, before any attention). Scored like next-layer predictions. */
void ms_moe_prefetch(ms_moe *moe, const ms_fwd_env *env, const ms_moe_router *r, int layer);

/* out[n][D] = MoE(x[n][D]) at model layer `layer` (see the top of this file). */
int ms_moe_forward(ms_moe *moe, const ms_fwd_env *env, const ms_moe_router *r, const ms_moe_block *blk, int layer,
                   const float *x, const int *tokens, int n, float *out, ms_err *err);

#endif

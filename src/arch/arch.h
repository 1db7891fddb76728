/* arch.h - the architecture ops table. Each model family lives in one file
 * (src/arch/<family>.c) behind this table: bind the resident weights, create the
 * per-session state (KV cache + scratch), run the forward pass over a chunk of
 * tokens. deepseek_v3 is the first family; glm4_moe_lite shares its code. */
#ifndef MS_ARCH_H
#define MS_ARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "experts.h"
#include "kernels.h"
#include "model.h"
#include "resident.h"

/* Called for every token and MoE layer with the experts the router chose (best
 * first) - the source of routing traces. */
typedef void (*ms_route_cb)(void *arg, int layer, int token_index, const int *ids, const float *w, int k);
/* Called after layer L's attention with the normalized hidden state that layer
 * L+1's router would see approximately (next-layer prefetch), n tokens. */
typedef void (*ms_lookahead_cb)(void *arg, int layer, const float *h, int n);

/* Next-layer prediction quality: of the experts predicted for a layer, how many
 * the router then chose (precision = recall = correct / predicted at top-k). */
typedef struct ms_pred_stats {
    uint64_t predicted, correct;
} ms_pred_stats;

typedef struct ms_fwd_env {
    ms_compute compute;        /* kernels + pool */
    ms_expert_src experts;     /* routed experts */
    ms_route_cb on_route;      /* optional */
    void *on_route_arg;
    ms_lookahead_cb on_attn_done; /* optional */
    void *on_attn_done_arg;
    /* Next-layer prefetch (decode): after layer L's experts are acquired, layer
     * L+1's router is applied to the current hidden state and its top-k handed
     * to experts.prefetch. on_predict reports each prediction (traces). */
    bool prefetch;
    ms_pred_stats *pred;       /* optional counters */
    ms_route_cb on_predict;    /* optional; w is NULL */
    void *on_predict_arg;
} ms_fwd_env;

typedef struct ms_arch_ops {
    const char *name;
    /* Validate every resident tensor against the config and bind them. */
    int (*bind)(const ms_model *m, const ms_resident *r, void **weights, uint64_t *extra_bytes, ms_err *err);
    void (*unbind)(void *weights);
    /* KV cache for ctx positions and scratch for chunks of up to batch tokens. */
    /* kv_bf16: keep the KV cache in bf16 (half the memory; lossy, opt-in). */
    int (*state_create)(const void *weights, int ctx, int batch, int nthreads, bool kv_bf16, void **state,
                        uint64_t *bytes, ms_err *err);
    void (*state_destroy)(void *state);
    /* Bytes state_create will allocate (kv_bytes: the KV-cache part). */
    uint64_t (*state_bytes)(const ms_config *c, int ctx, int batch, int nthreads, bool kv_bf16, uint64_t *kv_bytes);
    /* Run tokens[0..n) at positions pos0.. (n <= batch, pos0 + n <= ctx). Writes
     * logits for the last token (logits[vocab]) or, with all_logits, for every
     * token (logits[n][vocab]). logits may be NULL (prompt prefix). */
    int (*forward)(const void *weights, void *state, const ms_fwd_env *env, const int *tokens, int n, int pos0,
                   float *logits, bool all_logits, ms_err *err);
    /* Router of MoE layer `layer` applied to normalized hidden states x[n][D]:
     * top-k ids per token (prediction for prefetch). Returns k or -errno. */
    int (*route)(const void *weights, void *state, const ms_fwd_env *env, int layer, const float *x, int n, int *ids,
                 ms_err *err);
} ms_arch_ops;

/* The ops for a config (NULL + error if the family is not supported). */
const ms_arch_ops *ms_arch_for(const ms_config *c, ms_err *err);

extern const ms_arch_ops ms_arch_deepseek_v3;

#endif

/* arch.h - model families. A family is one file of model math
 * (src/arch/<family>.c) behind two tables:
 *
 *   ms_family    what the registry knows: the model_type values it runs, how
 *                to read its config.json (common fields from its own key names,
 *                private fields into cfg->arch), where its experts live, how
 *                `inspect` describes it, and its ops;
 *   ms_arch_ops  bind the resident weights, create the per-session state (KV
 *                cache + scratch, sized exactly for the plan), run the forward
 *                pass over a chunk of tokens.
 *
 * The registry (arch.c) maps model_type to a family, unwrapping VLM configs
 * that nest the text model in `text_config` (e.g. step3p7 around step3p5), and
 * is the only way config.json is read: ms_config_load / ms_model_open.
 * What every family shares lives beside it: the MoE block (moe.h). Adding a
 * family: see docs/ARCHITECTURE.md "Adding a family". */
#ifndef MS_ARCH_H
#define MS_ARCH_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "json.h"
#include "kernels.h"
#include "model.h"
#include "moe.h"
#include "resident.h"
#include "strbuf.h"

/* One part of a family's KV cache, for `plan` and `inspect` ("window ring", ...). */
typedef struct ms_kv_part {
    const char *name;
    uint64_t bytes;
} ms_kv_part;
#define MS_MAX_KV_PARTS 8

/* One forward step: n rows, each a token of sequence seq[i] at position pos[i].
 * Rows of one sequence are consecutive and in increasing position order; a row
 * sees its sequence's cache up to its own position, including the rows of the
 * same step before it (prefill chunks, MTP verification). Positions may go back
 * (a rejected draft, a new request reusing a prefix): the caches are indexed by
 * position, so a later step simply overwrites them. */
typedef struct ms_batch {
    int n;                  /* rows (<= the state's batch) */
    const int *tokens;      /* [n] token ids */
    const int *pos;         /* [n] position of each row in its sequence (< ctx) */
    const int *seq;         /* [n] sequence (KV cache) of each row; NULL = all 0 */
    float *logits;          /* NULL, or [n][vocab] (all_logits) / [vocab] (last row) */
    bool all_logits;
    float *hidden;          /* NULL, or [n][D]: each row's final hidden state, the one the
                               family's MTP head takes: after the final norm (what lm_head
                               multiplies) for DeepSeek-V3, before it for Step-3.5 */
} ms_batch;

typedef struct ms_arch_ops {
    const char *name;
    /* Validate every resident tensor against the config and bind them. */
    int (*bind)(const ms_model *m, const ms_resident *r, void **weights, uint64_t *extra_bytes, ms_err *err);
    void (*unbind)(void *weights);
    /* KV caches of n_seq sequences of ctx positions each, and scratch for steps
     * of up to batch rows (kv_bf16: KV cache in bf16; half the memory, lossy). */
    int (*state_create)(const void *weights, int ctx, int batch, int n_seq, int nthreads, bool kv_bf16, void **state,
                        uint64_t *bytes, ms_err *err);
    void (*state_destroy)(void *state);
    /* Bytes state_create will allocate (kv_bytes: the KV-cache part). */
    uint64_t (*state_bytes)(const ms_config *c, int ctx, int batch, int n_seq, int nthreads, bool kv_bf16,
                            uint64_t *kv_bytes);
    /* Run one step (see ms_batch). With env->exact every row's arithmetic is that
     * of a one-row step (the logits of a row do not depend on the other rows);
     * otherwise prefill kernels (GEMM) may be used. */
    int (*forward)(const void *weights, void *state, const ms_fwd_env *env, const ms_batch *b, ms_err *err);
    /* Optional: the MTP draft head (multi-token prediction), when the model was
     * opened with MTP layers. Row i: b->tokens[i] is the token that follows
     * position b->pos[i] (sampled or verified), hidden[i][D] the main model's
     * final hidden state at that position (ms_batch.hidden), or the previous
     * draft step's out_hidden for chained drafts. Every draft depth runs the
     * first MTP layer (the engine opens one; docs/ARCHITECTURE.md "MTP"). Writes b->logits ([n][vocab]:
     * the draft distribution for position pos + 2) and, if b->hidden is set,
     * the MTP layer's output state for the next draft step. The MTP layer has
     * its own KV cache per sequence, indexed by pos. */
    int (*mtp_forward)(const void *weights, void *state, const ms_fwd_env *env, const ms_batch *b,
                       const float *hidden, ms_err *err);
    /* Optional: the KV cache's parts for n_seq sequences of ctx positions (their
     * bytes add up to state_bytes' kv_bytes); returns how many (<= MS_MAX_KV_PARTS). */
    int (*kv_parts)(const ms_config *c, int ctx, int n_seq, bool kv_bf16, ms_kv_part *parts);
} ms_arch_ops;

typedef struct ms_family {
    const char *name;                 /* e.g. "deepseek_v3" */
    const char *const *model_types;   /* NULL-terminated model_type values it runs */
    const char *const *moe_modules;   /* MoE module names to probe for experts (NULL = default) */
    /* Read the family's keys of the text model's config o (root = the whole
     * document): the common MoE fields (which layers, experts, widths) and
     * everything private into cfg->arch (one malloc'd block). The registry has
     * already parsed the common non-MoE fields and set model_type/wrapper_type.
     * Errors: one line naming jc->what and the field. */
    int (*parse_config)(const ms_jctx *jc, json_object *o, json_object *root, ms_config *cfg);
    /* For `inspect`: architecture lines (each ending in '\n', aligned like
     * "widths       hidden 4096, ...") and the same facts as JSON members. */
    void (*describe)(const ms_config *c, ms_strbuf *text, json_object *json);
    const ms_arch_ops *ops;
} ms_family;

/* ---- pieces family files share (family.c) ---- */

/* An f32 copy of the resident vector `name` ([n], any float dtype) at *cursor
 * (advanced by n); non-finite values are an error naming the tensor. */
int ms_arch_bind_vec(const ms_model *m, const ms_resident *r, const char *name, int64_t n, float **cursor,
                     const float **out, ms_err *err);
/* The resident linear module `module` ([rows, cols], shape and quantization checked). */
int ms_arch_bind_mat(const ms_model *m, const ms_resident *r, const char *module, int64_t rows, int64_t cols,
                     ms_mat *out, ms_err *err);
/* Y[n][rows] = X[n][cols] W^T in a forward step: one-row arithmetic per row
 * when n == 1 or the step is exact (ms_mat_apply), a GEMM for prefill chunks. */
void ms_arch_linear(const ms_fwd_env *env, const ms_mat *m, const float *X, int n, float *Y);
/* The sequence of row r of a step (0 when the step names none). */
static inline int ms_arch_row_seq(const ms_batch *b, int r) { return b->seq ? b->seq[r] : 0; }
/* A step's rows are valid: 1..batch rows, token ids in the vocabulary,
 * sequences < n_seq, positions < ctx (ENOSPC: "context is full"), rows of a
 * sequence in increasing position order. */
int ms_arch_check_rows(const ms_batch *b, int batch, int n_seq, int ctx, int vocab, ms_err *err);
/* b->logits = head(rmsnorm(h, norm)) for the last row or every row
 * (b->all_logits); x is [n][D] scratch. */
void ms_arch_head(const ms_fwd_env *env, const float *norm, const ms_mat *head, const ms_batch *b, const float *h,
                  float *x, float eps);
/* The MTP input fusion (DeepSeek-V3, GLM and Step draft heads), per row t of b:
 * h[t] = eh_proj([rmsnorm(embed(tokens[t]), enorm) | rmsnorm(hidden[t], hnorm)])
 * (embedding half first). x is [n][D] and cat [n][2D] scratch; h is [n][D]. */
void ms_arch_mtp_fuse(const ms_fwd_env *env, const ms_mat *embed, const float *enorm, const float *hnorm,
                      const ms_mat *eh_proj, const ms_batch *b, const float *hidden, float *x, float *cat, float *h,
                      float eps);

/* The sigmoid router (DeepSeek-V3 noaux_tc, Step): s = sigmoid(logits), the K
 * experts with the largest s + bias (bias may be NULL), within the topk_group
 * best of n_group groups (group score = sum of its top 2; n_group 1 = no
 * limit); weights s[ids], divided by (sum + 1e-20) when norm, times scale. */
typedef struct ms_sigmoid_router {
    int E, K, n_group, topk_group;
    bool norm;
    double scale;
} ms_sigmoid_router;
/* One token: ids[K] best first, wts[K]; tmp holds 2E floats. */
void ms_route_sigmoid(const ms_sigmoid_router *r, const float *logits, const float *bias, int *ids, float *wts,
                      float *tmp);
/* n tokens x[n][D]: rlog[n][E] = router x, then ms_route_sigmoid per token into
 * ids[n][K], wts[n][K] (the body of a family's route and predict ops). */
void ms_arch_route_sigmoid(const ms_fwd_env *env, const ms_sigmoid_router *r, const ms_mat *router, const float *bias,
                           const float *x, int n, float *rlog, float *tmp, int *ids, float *wts);

/* The family running model_type, or NULL. */
const ms_family *ms_family_find(const char *model_type);
/* "deepseek_v3, kimi_k2, ..." : every model_type the registry knows. */
void ms_family_list(ms_strbuf *out);

/* Parse config.json text (`what` names it in errors) through the registry. */
int ms_config_parse(const char *json, const char *what, ms_config *cfg, ms_err *err);
/* Read DIR/config.json (or a .json path) and parse it. */
int ms_config_load(const char *path, ms_config *cfg, ms_err *err);

/* The ops for a parsed config (NULL + error if it has no family). */
const ms_arch_ops *ms_arch_for(const ms_config *c, ms_err *err);

/* Open a model directory: config through the registry, then the model store. */
int ms_model_open(const char *dir, ms_model *m, ms_err *err);
/* The same including the checkpoint's first mtp_layers MTP layers (their
 * experts become routed experts of the expert table, their other tensors
 * resident); an error when the checkpoint or the family has none. */
int ms_model_open_mtp(const char *dir, int mtp_layers, ms_model *m, ms_err *err);

#endif

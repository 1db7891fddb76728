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

typedef struct ms_arch_ops {
    const char *name;
    /* Validate every resident tensor against the config and bind them. */
    int (*bind)(const ms_model *m, const ms_resident *r, void **weights, uint64_t *extra_bytes, ms_err *err);
    void (*unbind)(void *weights);
    /* KV cache for ctx positions and scratch for chunks of up to batch tokens
     * (kv_bf16: keep the KV cache in bf16; half the memory, lossy, opt-in). */
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
    /* Optional: the KV cache's parts for ctx positions (their bytes add up to
     * state_bytes' kv_bytes); returns how many (<= MS_MAX_KV_PARTS). */
    int (*kv_parts)(const ms_config *c, int ctx, bool kv_bf16, ms_kv_part *parts);
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

#endif

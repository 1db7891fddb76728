/* model.h - the model store: one model directory as published on the hub, opened
 * and validated without reading any weight data.
 *
 *   ms_model = config.json (ms_config + ms_qconfig)
 *            + tensor table (safetensors headers of every shard)
 *            + expert table: for every (MoE layer, expert) the byte ranges of its
 *              parts (expert_layout.h: which tensors, how many parts)
 *            + the resident set: every other tensor of the main layers
 *
 * Tensors of layers >= num_hidden_layers (MTP), rotary inv_freq and tensors
 * outside the text model (vision towers of VLM wrappers) are ignored.
 *
 * Quantization of a module is decided by the presence of <module>.scales (mlx-lm's
 * rule); bits and group size come from the shapes and must agree with config.json.
 */
#ifndef MS_MODEL_H
#define MS_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "expert_layout.h"
#include "experts.h"
#include "kernels.h"
#include "safetensors.h"

/* A linear module as stored: format, logical [rows, cols] per slice, and the
 * tensors holding it. `lead` > 0 for stacked tensors ([lead, rows, ...]: experts
 * or attention heads); slice i starts at i * (tensor bytes / lead). */
typedef struct ms_linear {
    ms_wtype type;
    int bits, group_size;   /* affine */
    ms_dtype sb_dtype;      /* affine scales/biases dtype */
    int64_t lead, rows, cols;
    const ms_tensor *w, *scales, *biases; /* scales/biases NULL when dense */
} ms_linear;

/* One projection (gate, up, down) of every expert of a layer: its format and
 * the part indices (into the expert's ranges / ms_expert_ptrs.p) holding it. */
typedef struct ms_expert_proj {
    ms_linear fmt;                 /* one expert's matrix: rows/cols, quantization */
    int part[MS_PART_KINDS];       /* weight / scales / biases / linear bias; -1 = none */
} ms_expert_proj;

typedef struct ms_moe_layer {
    int layer;                     /* model layer index */
    const ms_expert_layout *layout;
    char module[96];               /* the MoE module, e.g. "model.layers.3.mlp" (no prefix) */
    ms_expert_proj proj[MS_EXPERT_PROJS];
    uint64_t expert_bytes;         /* payload bytes of one expert (sum of its ranges) */
    const ms_range *ranges;        /* [n_experts][n_parts] (inside ms_model.ranges) */
} ms_moe_layer;

typedef struct ms_model {
    char *dir;
    ms_config cfg;
    ms_qconfig qcfg;
    ms_tensor_table tt;
    char prefix[32];               /* "" or "language_model." (mlx-vlm wrappers) */
    const ms_expert_layout *layout; /* of the first MoE layer (NULL without experts) */
    int n_moe_layers;
    ms_moe_layer *moe;             /* [n_moe_layers] */
    int *moe_index;                /* [n_layers + mtp_layers]: index into moe, or -1 for dense layers */
    int n_parts;                   /* parts per expert */
    ms_range *ranges;              /* [n_moe_layers][n_experts][n_parts] */
    const char **paths;            /* [n_files] shard paths */
    ms_expert_table experts;       /* the cache's view of the above */
    uint8_t *role;                 /* [n_tensors]: MS_ROLE_* */
    uint64_t resident_bytes;       /* bytes of all resident tensors */
    uint64_t expert_bytes_total;   /* bytes of all routed experts */
    uint64_t max_expert_bytes, min_expert_bytes;
    uint64_t ignored_bytes;        /* MTP layers and other ignored tensors */
} ms_model;

enum { MS_ROLE_RESIDENT = 0, MS_ROLE_EXPERT = 1, MS_ROLE_IGNORED = 2 };

/* Open a model directory with its config.json already parsed (cfg moves into
 * m). src/arch's ms_model_open parses config.json through the family registry
 * and calls this. */
int ms_model_open_cfg(const char *dir, ms_config *cfg, ms_model *m, ms_err *err);
void ms_model_close(ms_model *m);

/* Resolve a linear module (path without ".weight", prefix added automatically) and
 * check it against the expected logical shape: lead (0 for a plain 2-D weight),
 * rows, cols. Errors name the tensor and both shapes. */
int ms_model_linear(const ms_model *m, const char *module, int64_t lead, int64_t rows, int64_t cols,
                    ms_linear *out, ms_err *err);
/* Find a resident tensor by name (prefix added) and check dtype is float and the
 * shape is exactly [n] (1-D) — for norms and biases. */
int ms_model_vector(const ms_model *m, const char *name, int64_t n, const ms_tensor **out, ms_err *err);
/* Prefixed tensor lookup, NULL if absent. */
const ms_tensor *ms_model_find(const ms_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The matrix of projection p of an acquired expert (its parts' payloads). */
ms_mat ms_expert_mat(const ms_moe_layer *ml, int proj, const ms_expert_ptrs *ep);
/* The linear bias of projection p of an acquired expert, or NULL. */
const void *ms_expert_bias(const ms_moe_layer *ml, int proj, const ms_expert_ptrs *ep);

/* Check a tensor's shape against ndim/want; error names the tensor and both shapes. */
int ms_model_check_shape(const ms_model *m, const ms_tensor *t, int ndim, const int64_t *want, ms_err *err);
/* Build the expert table (expert_layout.c; called by ms_model_open). */
int ms_model_build_experts(ms_model *m, ms_err *err);

/* An ms_mat for slice i of a linear whose tensors are in memory at w/s/b (the
 * start of the whole tensors; the slice offset is applied here). */
ms_mat ms_linear_mat(const ms_linear *l, int64_t slice, const void *w, const void *s, const void *b);
/* Bytes of one slice (or of the whole tensor when lead == 0) of w / scales / biases. */
uint64_t ms_linear_slice_bytes(const ms_linear *l, int part);

/* The MoE layer record for model layer l, or NULL for a dense layer. */
static inline const ms_moe_layer *ms_model_moe(const ms_model *m, int l)
{
    return (l >= 0 && l < ms_config_n_layers_all(&m->cfg) && m->moe_index[l] >= 0) ? &m->moe[m->moe_index[l]] : NULL;
}

/* Describe the model's quantization as (pattern, bits, group, count) rows like the
 * hub cards' tables: module patterns with layer numbers replaced by '*'. */
typedef struct ms_qrow {
    char pattern[160];
    char format[24];  /* "4-bit g64", "bf16", ... */
    int count;
    uint64_t bytes;
} ms_qrow;
int ms_model_quant_table(const ms_model *m, ms_qrow **rows, int *n, ms_err *err);

#endif

/* model.h - the model store: one model directory as published on the hub, opened
 * and validated without reading any weight data.
 *
 *   ms_model = config.json (ms_config + ms_qconfig)
 *            + tensor table (safetensors headers of every shard)
 *            + expert table: for every (MoE layer, expert) the byte ranges of its
 *              parts, 3 projections x {weight, scales, biases} = up to 9 ranges
 *            + the resident set: every other tensor of the main layers
 *
 * Expert layouts recognised (by key presence):
 *   MLX stacked   mlp.switch_mlp.{gate,up,down}_proj.{weight,scales,biases} [E, ...]
 *                 expert e = slice e of each stacked tensor (contiguous, row-major)
 *   HF per-expert mlp.experts.<e>.{gate,up,down}_proj.weight
 *   HF fused (transformers v5) mlp.experts.gate_up_proj [E, 2I, D] + down_proj [E, D, I]
 * Tensors of layers >= num_hidden_layers (MTP) and rotary inv_freq are ignored.
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
#include "kernels.h"
#include "safetensors.h"

/* One byte range of a shard file. */
typedef struct ms_range {
    int file;
    uint64_t offset, len;
} ms_range;

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

enum { MS_PROJ_GATE = 0, MS_PROJ_UP = 1, MS_PROJ_DOWN = 2 };
enum { MS_PART_W = 0, MS_PART_SCALES = 1, MS_PART_BIASES = 2 };
#define MS_EXPERT_RANGES 9 /* index proj * 3 + part */

typedef enum ms_expert_layout { MS_EXPERTS_MLX_STACKED = 0, MS_EXPERTS_HF, MS_EXPERTS_HF_FUSED } ms_expert_layout;

typedef struct ms_moe_layer {
    int layer;                     /* model layer index */
    ms_linear fmt[3];              /* gate, up, down: format of one expert (rows/cols per expert) */
    uint64_t expert_bytes;         /* payload bytes of one expert (sum of its ranges) */
    ms_range *ranges;              /* [n_experts][MS_EXPERT_RANGES]; len 0 = absent part */
} ms_moe_layer;

typedef struct ms_model {
    char *dir;
    ms_config cfg;
    ms_qconfig qcfg;
    ms_tensor_table tt;
    char prefix[32];               /* "" or "language_model." (mlx-vlm wrappers) */
    ms_expert_layout layout;
    int n_moe_layers;
    ms_moe_layer *moe;             /* [n_moe_layers] */
    int *moe_index;                /* [n_layers]: index into moe, or -1 for dense layers */
    uint8_t *role;                 /* [n_tensors]: MS_ROLE_* */
    uint64_t resident_bytes;       /* bytes of all resident tensors */
    uint64_t expert_bytes_total;   /* bytes of all routed experts */
    uint64_t max_expert_bytes, min_expert_bytes;
    uint64_t ignored_bytes;        /* MTP layers and other ignored tensors */
} ms_model;

enum { MS_ROLE_RESIDENT = 0, MS_ROLE_EXPERT = 1, MS_ROLE_IGNORED = 2 };

int ms_model_open(const char *dir, ms_model *m, ms_err *err);
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

/* An ms_mat for slice i of a linear whose tensors are in memory at w/s/b (the
 * start of the whole tensors; the slice offset is applied here). */
ms_mat ms_linear_mat(const ms_linear *l, int64_t slice, const void *w, const void *s, const void *b);
/* Bytes of one slice (or of the whole tensor when lead == 0) of w / scales / biases. */
uint64_t ms_linear_slice_bytes(const ms_linear *l, int part);

/* The MoE layer record for model layer l, or NULL for a dense layer. */
static inline const ms_moe_layer *ms_model_moe(const ms_model *m, int l)
{
    return (l >= 0 && l < m->cfg.n_layers && m->moe_index[l] >= 0) ? &m->moe[m->moe_index[l]] : NULL;
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

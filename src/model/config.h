/* config.h - config.json of a model directory: the numbers every family has
 * (ms_config) and the MLX quantization block (ms_qconfig).
 *
 * ms_config holds what the core needs whatever the family: vocabulary, widths,
 * layer count, which layers carry routed experts and how many, norms, BOS/EOS,
 * the tensor-name conventions. The family that runs the model (src/arch: the
 * registry maps model_type to a family) parses config.json, fills these
 * common fields from its own key names and keeps its private fields (attention
 * geometry, router rules, RoPE variants) in `arch`, one malloc'd block it owns.
 * Values are range-checked so later allocations cannot be driven by a hostile
 * file.
 *
 * This file also holds the parsers families share: RoPE scaling blocks
 * (rope_scaling / rope_parameters: default, linear, yarn, llama3) and
 * eos_token_id (an int or a list).
 *
 * ms_qconfig reproduces mlx-lm's rule: "quantization" first, else an MLX-style
 * "quantization_config" (one with bits/group_size, not a foreign quant_method);
 * top-level defaults plus per-module overrides that are a dict, true or false.
 */
#ifndef MS_CONFIG_H
#define MS_CONFIG_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "json.h"
#include "strmap.h"

#define MS_MAX_LAYERS 4096
#define MS_MAX_EOS 8

typedef enum ms_rope_type { MS_ROPE_DEFAULT = 0, MS_ROPE_YARN, MS_ROPE_LINEAR, MS_ROPE_LLAMA3 } ms_rope_type;

typedef struct ms_rope_cfg {
    ms_rope_type type;
    double theta;            /* rope_theta */
    double factor;           /* scaling factor (1 = none) */
    int64_t orig_max_pos;    /* original_max_position_embeddings */
    double beta_fast, beta_slow, mscale, mscale_all_dim; /* yarn */
    double low_freq_factor, high_freq_factor;            /* llama3 */
} ms_rope_cfg;

struct ms_family; /* src/arch/arch.h */

typedef struct ms_config {
    char model_type[64];        /* the text model's type (the family's name for it) */
    char wrapper_type[64];      /* a VLM wrapper's model_type ("" when not wrapped) */
    const struct ms_family *family;
    void *arch;                 /* the family's private config (one malloc'd block; ms_config_free) */
    int vocab_size;
    int hidden_size;            /* D */
    int n_layers;               /* num_hidden_layers (MTP layers not counted) */
    int intermediate_size;      /* dense MLP width (0 when every layer is MoE) */
    int moe_intermediate_size;  /* routed expert width */
    int n_routed_experts;       /* E (0 = no MoE layer) */
    int n_experts_per_tok;      /* K */
    int n_shared_experts;
    uint8_t moe_layer[MS_MAX_LAYERS]; /* [n_layers + num_nextn_predict_layers] 1 = routed experts */
    double rms_norm_eps;
    int64_t max_position_embeddings;
    bool tie_word_embeddings;
    int num_nextn_predict_layers;
    int mtp_layers;             /* MTP layers the model store includes (0 = ignored; set by the
                                   opener for --mtp): layers n_layers .. n_layers + mtp_layers - 1 */
    int bos_token_id;           /* -1 if absent */
    int eos_token_ids[MS_MAX_EOS];
    int n_eos;
    char torch_dtype[16];
    const char *const *moe_modules; /* MoE module names to probe for experts (NULL = default list) */
} ms_config;

/* Release the family's private block. */
void ms_config_free(ms_config *c);

/* Layers the model store includes: n_layers + mtp_layers. */
static inline int ms_config_n_layers_all(const ms_config *c) { return c->n_layers + c->mtp_layers; }
/* Is layer l (< ms_config_n_layers_all) a MoE layer? */
bool ms_config_is_moe_layer(const ms_config *c, int l);
/* MoE layers among the included layers. */
int ms_config_n_moe_layers(const ms_config *c);

/* Fields every family reads the same way, from the text model's config object
 * o (root: the whole document, for keys wrappers keep at the top level such
 * as eos_token_id): vocab_size, hidden_size, num_hidden_layers, rms_norm_eps
 * (default rms_eps_default), max_position_embeddings, tie_word_embeddings,
 * num_nextn_predict_layers, bos_token_id, eos_token_id, torch_dtype / dtype. */
int ms_config_parse_common(const ms_jctx *jc, json_object *o, json_object *root, double rms_eps_default,
                           ms_config *cfg);
/* A RoPE block of o: the scaling from rope_scaling or rope_parameters (types
 * default, linear, yarn / deepseek_yarn, llama3) and, with scalar_theta, a
 * numeric rope_theta (top level, else rope_parameters.rope_theta, else 10000;
 * families with per-layer lists read theta themselves). */
int ms_config_parse_rope(const ms_jctx *jc, json_object *o, bool scalar_theta, int64_t max_pos, ms_rope_cfg *r);
/* The inverse frequencies of a rotation over `dims` dimensions (dims/2 pairs)
 * with base `theta` under the scaling r, as mlx-lm's initialize_rope builds
 * them: default, linear (/factor), yarn (ramp between the correction dims) and
 * llama3 (wavelength bands: divided by factor, smoothed, kept). inv[dims/2];
 * *mscale: YaRN's magnitude factor for cos/sin (1 for the other types). */
void ms_rope_inv_freq(const ms_rope_cfg *r, double theta, int dims, double *inv, float *mscale);
/* YaRN's get_mscale: 0.1 * m * ln(factor) + 1, or 1 when factor <= 1. */
double ms_rope_yarn_get_m(double factor, double m);

/* Read config.json: path is the file or the model directory holding it;
 * file[flen] receives the file's path (for messages). */
int ms_config_read(const char *path, char *file, size_t flen, char **text, ms_err *err);

/* ---- quantization ---- */

typedef struct ms_qparams {
    bool quantized;
    int bits, group_size;
    char mode[16];     /* "affine", "mxfp4", ... */
    bool explicit_bits, explicit_gs; /* given by the config (vs inherited) */
} ms_qparams;

typedef struct ms_qoverride {
    char *path;        /* module path, e.g. model.layers.3.mlp.switch_mlp.down_proj */
    ms_qparams p;      /* quantized=false for a `false` entry */
} ms_qoverride;

typedef struct ms_qconfig {
    bool present;          /* an MLX quantization block exists */
    char foreign[32];      /* quant_method of a non-MLX quantization_config ("fp8", ...) or "" */
    ms_qparams def;        /* top-level defaults */
    ms_qoverride *ov;
    int n_ov;
    ms_strmap map;         /* path -> override index */
} ms_qconfig;

int ms_qconfig_load(const char *path, ms_qconfig *q, ms_err *err);
int ms_qconfig_parse(const char *json, const char *what, ms_qconfig *q, ms_err *err);
/* Parameters for a module path: the per-path entry (tried with and without a
 * "language_model." prefix) or the defaults. Returns 1 if an explicit entry
 * was found, 0 if defaults apply. */
int ms_qconfig_lookup(const ms_qconfig *q, const char *module_path, ms_qparams *out);
void ms_qconfig_free(ms_qconfig *q);

#endif

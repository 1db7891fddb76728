/* config.h - config.json of a model directory: the architecture numbers
 * (ms_config) and the MLX quantization block (ms_qconfig).
 *
 * ms_config covers deepseek_v3 (DeepSeek-V3/R1, GigaChat3/3.1, Kimi-K2) and its
 * close relative glm4_moe_lite (GLM-4.7-Flash): every field of
 * ../shared/spec/deepseek-v3.md §1, with `q_lora_rank: null`, RoPE settings
 * under `rope_scaling` or `rope_parameters`, eos as an int or a list. Values are
 * range-checked so later allocations cannot be driven by a hostile file.
 *
 * ms_qconfig reproduces mlx-lm's rule: "quantization" first, else an MLX-style
 * "quantization_config" (one with bits/group_size, not a foreign quant_method);
 * top-level defaults plus per-module overrides that are a dict, true or false.
 */
#ifndef MS_CONFIG_H
#define MS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "strmap.h"

typedef enum ms_arch {
    MS_ARCH_DEEPSEEK_V3 = 0, /* deepseek_v3, kimi_k2 */
    MS_ARCH_GLM4_MOE_LITE,   /* glm4_moe_lite: latent norms use rms_norm_eps */
} ms_arch;

typedef enum ms_rope_type { MS_ROPE_DEFAULT = 0, MS_ROPE_YARN, MS_ROPE_LINEAR } ms_rope_type;

typedef struct ms_rope_cfg {
    ms_rope_type type;
    double theta;            /* rope_theta */
    double factor;           /* scaling factor (1 = none) */
    int64_t orig_max_pos;    /* original_max_position_embeddings */
    double beta_fast, beta_slow, mscale, mscale_all_dim;
} ms_rope_cfg;

#define MS_MAX_EOS 8

typedef struct ms_config {
    char model_type[64];
    ms_arch arch;
    int vocab_size;
    int hidden_size;            /* D */
    int intermediate_size;      /* dense MLP width */
    int moe_intermediate_size;  /* per-expert width */
    int n_layers;               /* num_hidden_layers (MTP layers not counted) */
    int n_heads;                /* H */
    int q_lora_rank;            /* 0 = null: plain q_proj */
    int kv_lora_rank;
    int qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int n_routed_experts;       /* E */
    int n_shared_experts;
    int n_experts_per_tok;      /* k */
    int n_group, topk_group;
    bool norm_topk_prob;
    double routed_scaling_factor;
    int first_k_dense_replace, moe_layer_freq;
    double rms_norm_eps;
    double latent_norm_eps;     /* q_a/kv_a layernorm eps: 1e-6 (deepseek_v3) or rms_norm_eps (glm) */
    ms_rope_cfg rope;
    int64_t max_position_embeddings;
    bool attention_bias;
    bool tie_word_embeddings;
    int num_nextn_predict_layers;
    int bos_token_id;           /* -1 if absent */
    int eos_token_ids[MS_MAX_EOS];
    int n_eos;
    char torch_dtype[16];
    const char *const *moe_modules; /* MoE module names to probe for experts (NULL = default list) */
} ms_config;

/* Parse dir/config.json (or a config file path). */
int ms_config_load(const char *path, ms_config *cfg, ms_err *err);
/* Parse from a JSON string; `what` names the source in errors. */
int ms_config_parse(const char *json, const char *what, ms_config *cfg, ms_err *err);

/* Is layer l a MoE layer (mlx-lm rule: l >= first_k_dense_replace && l % moe_layer_freq == 0)? */
bool ms_config_is_moe_layer(const ms_config *c, int l);
int ms_config_n_moe_layers(const ms_config *c);
/* Attention softmax scale including the YaRN mscale correction (spec §3.4). */
double ms_config_softmax_scale(const ms_config *c);

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

/* synth.h - generate a complete model directory with random weights in the
 * exact layouts of the hub: MLX (mlx_lm conversion of deepseek_v3 /
 * glm4_moe_lite: stacked switch_mlp experts, split MLA embed_q / unembed_out,
 * affine-quantized modules as weight/scales/biases triples) or HF (per-expert
 * bf16/f16/f32 tensors, kv_b_proj). Step-3.7-Flash (step3p5, synth_step.c):
 * MLX is mlx-vlm's step3p7 wrapper (language_model.*, vision tensors, bf16
 * router_bias), HF the original layout (stacked moe.*, share_expert,
 * zero-centered norms). The directory holds config.json, sharded
 * safetensors + model.safetensors.index.json, tokenizer.json and
 * tokenizer_config.json (from ms_synth_tokenizer_write).
 *
 * Generation streams: tensors are produced chunk by chunk into the writer's
 * bounded buffer (st_write.h), so model size is limited by disk, not RAM.
 * Every tensor draws from its own PRNG stream (seed, hash of its name), so the
 * bytes depend only on the options, never on chunking or shard size.
 *
 * Weight statistics (chosen so activations stay finite through every layer):
 *   embeddings N(0, 1); projections std 1/sqrt(fan_in); output projections
 *   (o_proj, down_proj) additionally / sqrt(2 * num_hidden_layers); norms
 *   1 + N(0, 0.02); router gate std 1/sqrt(hidden). Float tensors use the fast
 *   Irwin-Hall normals of rng.h (two per draw). Quantized tensors are generated directly, not by
 *   quantizing floats: codes are uniform random bits, each group's scale is
 *   +-base * U(0.75, 1.25) (random sign, as real MLX scales are), its bias
 *   -scale * (2^bits - 1) / 2 (computed from the rounded scale), so every group
 *   is zero-mean with the module's target std. This runs at memory speed.
 * Router skew: e_score_correction_bias (f32) of MoE layer l gives expert e the
 *   bias -skew_l * 0.25 * ln(1 + 15 * rank_l(e) / E) / ln 16, with rank_l a
 *   random permutation per layer and skew_l = route_skew * U(0.75, 1.25): a
 *   Zipf-like minority of experts wins most selections (route_skew 1: with
 *   E = 256, k = 8 the top 10% of experts take ~40% of the slots, the top 25%
 *   ~70%; 0 = uniform routing, no bias). */
#ifndef MS_SYNTH_H
#define MS_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "dtype.h"
#include "err.h"
#include "st_write.h"

typedef enum ms_synth_format { MS_SYNTH_MLX = 0, MS_SYNTH_HF } ms_synth_format;

typedef enum ms_synth_recipe {
    MS_SYNTH_UNIFORM = 0, /* every quantizable module at `bits` */
    MS_SYNTH_MIXED_8_5,   /* 8-bit everything, 5-bit routed experts (GLM-4.7-Flash "8/5" card) */
    MS_SYNTH_DQ4,         /* 8-bit backbone, 4-bit experts, down_proj 6-bit (layers < 5) / 5-bit (every 5th) */
} ms_synth_recipe;

/* The architecture numbers (deepseek_v3 family, or step3p5), written to config.json. */
typedef struct ms_synth_arch {
    char model_type[32];    /* "deepseek_v3", "glm4_moe_lite" or "step3p5" */
    char architecture[48];  /* "DeepseekV3ForCausalLM", "Glm4MoeLiteForCausalLM" */
    int vocab_size;
    int hidden_size;
    int intermediate_size;       /* dense MLP width */
    int moe_intermediate_size;   /* per-expert width */
    int n_layers;                /* num_hidden_layers */
    int n_heads;
    int q_lora_rank;             /* 0 = null (plain q_proj) */
    int kv_lora_rank;
    int qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int n_routed_experts, n_shared_experts, n_experts_per_tok;
    int n_group, topk_group;
    int first_k_dense_replace, moe_layer_freq;
    bool norm_topk_prob;
    double routed_scaling_factor;
    double rms_norm_eps;
    double rope_theta;
    bool yarn;                   /* rope_scaling YaRN block (else null) */
    double yarn_factor;
    int yarn_original_max_pos;
    double yarn_beta_fast, yarn_beta_slow, yarn_mscale, yarn_mscale_all_dim;
    int max_position_embeddings;
    int bos_token_id, eos_token_id;
    int n_mtp;                   /* num_nextn_predict_layers: MTP layers at index n_layers.. */
    int n_mtp_hf;                /* MTP layers the published HF checkpoint carries (written by
                                    --format hf unless --mtp says otherwise; mlx-lm drops them) */
    /* step3p5 family (model_type "step3p5"): n_heads, rope_theta, routed_scaling_factor,
     * first_k_dense_replace (the first MoE layer) as above, and */
    int n_kv_heads;              /* num_attention_groups of full layers */
    int n_heads_sliding, n_kv_heads_sliding; /* attention_other_setting */
    int head_dim;
    int sliding_window;
    int share_expert_dim;
    int full_every;              /* layer l is full_attention when l % full_every == 0 (release: 4) */
    double rope_theta_sliding;   /* rope_theta of sliding layers */
    double partial_rotary_full;  /* partial_rotary_factors of full layers (sliding: 1) */
    double llama3_factor, llama3_low, llama3_high; /* rope_scaling of full layers */
    int llama3_original_max_pos;
    double swiglu_limit;         /* swiglu_limits of the last two layers (release: 7) */
    double swiglu_limit_shared;  /* swiglu_limits_shared of the last layer (release: 16) */
} ms_synth_arch;

typedef struct ms_synth_opts {
    char preset[32];
    ms_synth_arch arch;
    ms_synth_format format;      /* default MLX */
    ms_synth_recipe recipe;      /* default uniform (MLX only) */
    int bits;                    /* uniform recipe, default 4 */
    int group_size;              /* default 64 */
    ms_dtype dtype;              /* float tensors (and MLX scales/biases): BF16 (default), F16, F32 */
    uint64_t seed;
    double route_skew;           /* default 1.0, 0 = uniform routing */
    uint64_t shard_bytes;        /* max tensor bytes per shard */
    bool fsync;                  /* fsync every shard */
    int drop_cache;              /* -1 auto (models > 1 GiB), 0 keep page cache, 1 drop */
    ms_stw_progress_fn progress; /* optional progress callback (bytes of tensor data) */
    void *progress_ctx;
} ms_synth_opts;

typedef struct ms_synth_result {
    int n_tensors, n_shards;
    uint64_t tensor_bytes;       /* index total_size */
    uint64_t file_bytes;         /* shard files incl. headers */
    uint64_t n_params;           /* logical parameters (quantized weights counted unpacked) */
    double seconds;              /* wall time of ms_synth_write */
} ms_synth_result;

/* Comma-separated preset names, for help texts. */
const char *ms_synth_preset_list(void);

/* Fill opts with the defaults of a preset ("tiny", "demo", "gigachat-702b",
 * "glm-4.7-flash", "step-3.7-flash", "step-tiny"); -EINVAL (message lists
 * the presets) for an unknown name. */
int ms_synth_preset(const char *name, ms_synth_opts *opts, ms_err *err);

int ms_synth_parse_format(const char *s, ms_synth_format *out, ms_err *err);
int ms_synth_parse_recipe(const char *s, ms_synth_recipe *out, ms_err *err);
const char *ms_synth_recipe_name(ms_synth_recipe r);

/* Check every option and architecture number; the message names the option. */
int ms_synth_validate(const ms_synth_opts *opts, ms_err *err);

/* Bits a module gets under the options, 0 if it stays unquantized (HF format,
 * not a quantizable module, or input width not divisible by the group size).
 * role: "embed", "attn", "dense", "shared", "routed", "lm_head", "mtp_proj",
 * "router" (Step's quantized router), "projector" (a VLM's vision projector);
 * is_down marks down_proj. Exposed for tests. */
int ms_synth_module_bits(const ms_synth_opts *opts, const char *role, int layer, bool is_down, int64_t in_features);

/* Build the tensor plan (names, dtypes, shapes, shards) without writing:
 * plan must be freed with ms_stw_plan_free. res (optional) gets the sizes. */
int ms_synth_plan(const ms_synth_opts *opts, ms_stw_plan *plan, ms_synth_result *res, ms_err *err);

/* The config.json text for the options (malloc'd). */
int ms_synth_config_json(const ms_synth_opts *opts, char **out, ms_err *err);

/* Write the model directory (created if missing; existing files of the same
 * names are replaced). Tokenizer first, then the shards, the index and
 * config.json last; on failure the shards written so far are removed. */
int ms_synth_write(const char *dir, const ms_synth_opts *opts, ms_synth_result *res, ms_err *err);

#endif

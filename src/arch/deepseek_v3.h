/* deepseek_v3.h - the DeepSeek-V3 family's private config (DeepSeek-V3/R1,
 * GigaChat3/3.1, Kimi-K2 and GLM-4.7-Flash's glm4_moe_lite), for the few
 * places outside the family that need it: the HF -> MLX converter (which
 * splits kv_b_proj) and tests. The keys are those of the HF DeepseekV3Config
 * (docs/VERIFICATION.md lists the sources the forward pass was checked against). */
#ifndef MS_DEEPSEEK_V3_H
#define MS_DEEPSEEK_V3_H

#include <stdbool.h>

#include "config.h"

typedef struct ms_ds3_config {
    bool glm;                   /* glm4_moe_lite: latent norms use rms_norm_eps, norm_topk_prob default true */
    int n_heads;                /* H */
    int q_lora_rank;            /* 0 = null: plain q_proj */
    int kv_lora_rank;
    int qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int n_group, topk_group;
    bool norm_topk_prob;
    double routed_scaling_factor;
    int first_k_dense_replace, moe_layer_freq;
    double latent_norm_eps;     /* q_a/kv_a layernorm eps: 1e-6 (deepseek_v3) or rms_norm_eps (glm) */
    ms_rope_cfg rope;
    bool attention_bias;
} ms_ds3_config;

/* The private config of a DeepSeek-V3-family config, NULL for other families. */
const ms_ds3_config *ms_ds3_config_of(const ms_config *c);
/* Attention softmax scale including the YaRN mscale correction (spec §3.4). */
double ms_ds3_softmax_scale(const ms_ds3_config *d);

#endif

/* synth_step.c - generated Step-3.5/3.7-Flash models (the step3p5 family of
 * src/arch/step3p5.c) for synth.c: presets, checks, the tensor inventory and
 * config.json, in two layouts:
 *
 *   --format mlx  what mlx-vlm's `step3p7` conversion of Step-3.7-Flash writes:
 *                 config model_type step3p7 with the decoder in text_config,
 *                 tensors language_model.model.* / language_model.lm_head,
 *                 experts mlp.switch_mlp.*, router mlp.gate.gate (a Linear:
 *                 8-bit g64 by the model's quant_predicate) + mlp.gate.router_bias
 *                 (bf16, errata 9), shared expert mlp.share_expert.*, norms as
 *                 1 + w, plus vision_model.* (bf16) and vit_large_projector
 *                 (quantized) that a text run ignores; no total_parameters in
 *                 the index, no top-level torch_dtype (errata 11);
 *   --format hf   the original checkpoint: model_type step3p5, model.layers.*
 *                 with stacked experts moe.{gate,up,down}_proj [E, ...],
 *                 moe.gate.weight, moe.router_bias (f32), share_expert.* beside
 *                 mlp, zero-centered norms (stored w, used as 1 + w).
 *
 * Geometry of the release: layer l is full_attention when l % 4 == 0 (64 query
 * / 8 KV heads, rope_theta 5e6, half the head rotated, llama3 scaling), else
 * sliding (96 / 8 heads, theta 1e4, whole head, window 512); layers 0-2 dense,
 * 3.. MoE (288 experts of 1280, top-8, shared expert 1280); SwiGLU limits 7 on
 * the routed experts of the last two layers and 16 on the last shared expert.
 * Per-layer lists have num_hidden_layers + 3 entries, as in the release (its
 * lists also cover the 3 MTP layers).
 *
 * MTP layers (--mtp N, at index num_hidden_layers + k) as the release's HF
 * checkpoint stores them (17 tensors per layer; docs/ARCHITECTURE.md "MTP"):
 * enorm, hnorm, eh_proj [D, 2D], a sliding-attention decoder block with a
 * dense MLP of intermediate_size (the layer is not in moe_layers_enum) under
 * the layer's own prefix, and transformer.shared_head.{norm, output} (output:
 * the layer's own [vocab, D] head); no embed_tokens copy. Their per-layer list
 * entries: sliding_attention, the sliding theta / rotary share, no clamp
 * (the release's values there were not seen; UNCONFIRMED). --format mlx
 * writes the same tensors under language_model. (a converter that kept them;
 * MLX conversions drop them, errata 3). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "synth_impl.h"

#define STEP_MTP_ENTRIES 3 /* the release's per-layer lists cover 3 MTP layers */

bool synth_is_step(const ms_synth_arch *a) { return !strcmp(a->model_type, "step3p5"); }

void synth_step_preset(ms_synth_opts *o, bool tiny)
{
    ms_synth_arch *a = &o->arch;
    snprintf(a->model_type, sizeof a->model_type, "step3p5");
    snprintf(a->architecture, sizeof a->architecture, "Step3p5ForCausalLM");
    o->recipe = MS_SYNTH_DQ4;
    a->moe_layer_freq = 1;
    a->n_group = a->topk_group = 1;
    a->norm_topk_prob = true;
    a->routed_scaling_factor = 3.0;
    a->rms_norm_eps = 1e-5;
    a->max_position_embeddings = 262144;
    a->bos_token_id = 0;
    a->eos_token_id = 1;
    a->full_every = 4;
    a->partial_rotary_full = 0.5;
    a->llama3_low = 1.0;
    if (tiny) { /* a few MB: window 8, clamps that trigger on random weights */
        a->vocab_size = 512;
        a->hidden_size = 128;
        a->intermediate_size = 192;
        a->moe_intermediate_size = 64;
        a->share_expert_dim = 64;
        a->n_layers = 6;
        a->first_k_dense_replace = 2;
        a->n_heads = 4;
        a->n_kv_heads = 2;
        a->n_heads_sliding = 6;
        a->n_kv_heads_sliding = 2;
        a->head_dim = 64;
        a->n_routed_experts = 16;
        a->n_experts_per_tok = 4;
        a->sliding_window = 8;
        a->rope_theta = 1e5;
        a->rope_theta_sliding = 1e4;
        a->llama3_factor = 4.0;
        a->llama3_original_max_pos = 128;
        a->llama3_high = 8.0;
        a->swiglu_limit = 1.5;
        a->swiglu_limit_shared = 1.0;
        o->shard_bytes = 512ull << 10;
    } else { /* Step-3.7-Flash */
        a->vocab_size = 128896;
        a->hidden_size = 4096;
        a->intermediate_size = 11264;
        a->moe_intermediate_size = 1280;
        a->share_expert_dim = 1280;
        a->n_layers = 45;
        a->first_k_dense_replace = 3;
        a->n_heads = 64;
        a->n_kv_heads = 8;
        a->n_heads_sliding = 96;
        a->n_kv_heads_sliding = 8;
        a->head_dim = 128;
        a->n_routed_experts = 288;
        a->n_experts_per_tok = 8;
        a->sliding_window = 512;
        a->rope_theta = 5e6;
        a->rope_theta_sliding = 1e4;
        a->llama3_factor = 2.0;
        a->llama3_original_max_pos = 131072;
        a->llama3_high = 32.0;
        a->swiglu_limit = 7.0;
        a->swiglu_limit_shared = 16.0;
    }
}

int synth_step_validate(const ms_synth_opts *o, ms_err *err)
{
    const ms_synth_arch *a = &o->arch;
    if (a->n_group != 1 || a->topk_group != 1)
        return ms_errf(err, EINVAL, "--n-group / --topk-group: step presets route without groups");
    if (a->q_lora_rank) return ms_errf(err, EINVAL, "--q-lora-rank: step presets have no MLA");
    CHECK_RANGE(a->n_kv_heads, 1, a->n_heads, "num_attention_groups");
    CHECK_RANGE(a->n_heads_sliding, 1, 1024, "attention_other_setting.num_attention_heads");
    CHECK_RANGE(a->n_kv_heads_sliding, 1, a->n_heads_sliding, "attention_other_setting.num_attention_groups");
    if (a->n_heads % a->n_kv_heads || a->n_heads_sliding % a->n_kv_heads_sliding)
        return ms_errf(err, EINVAL, "num_attention_heads must be a multiple of num_attention_groups");
    CHECK_RANGE(a->head_dim, 4, 4096, "head_dim");
    if (a->head_dim % 4) return ms_errf(err, EINVAL, "head_dim: %d is not a multiple of 4", a->head_dim);
    CHECK_RANGE(a->sliding_window, 1, 1 << 30, "sliding_window");
    CHECK_RANGE(a->share_expert_dim, 1, 1 << 20, "share_expert_dim");
    CHECK_RANGE(a->full_every, 1, 1024, "full_every");
    if (!(a->rope_theta_sliding > 0) || !(a->llama3_factor >= 1) || !(a->llama3_high > a->llama3_low) ||
        a->llama3_original_max_pos < 1)
        return ms_errf(err, EINVAL, "rope: theta must be > 0, llama3 factor >= 1, high_freq_factor > low_freq_factor");
    return 0;
}

static bool is_full(const ms_synth_arch *a, int l)
{
    if (l >= a->n_layers) return false; /* MTP layers: sliding_attention */
    return l % a->full_every == 0;
}

/* Decoder layer l (or MTP layer l >= n_layers) under P ("[language_model.]model"). */
static int add_layer(synth_build *b, const char *P, int l)
{
    const ms_synth_opts *o = b->o;
    const ms_synth_arch *a = &o->arch;
    const bool mlx = o->format == MS_SYNTH_MLX, full = is_full(a, l);
    const int64_t D = a->hidden_size, hd = a->head_dim;
    const int64_t H = full ? a->n_heads : a->n_heads_sliding, KV = full ? a->n_kv_heads : a->n_kv_heads_sliding;
    const float out_scale = (float)(1.0 / sqrt(2.0 * a->n_layers)), in_std = (float)(1.0 / sqrt((double)D));
    const float norm_mean = mlx ? 1.0f : 0.0f; /* MLX stores 1 + w of the zero-centered HF norm */
    char pre[96], p[192];
    snprintf(pre, sizeof pre, "%s.layers.%d", P, l);
    int rc = 0;
#define N(fmt) (snprintf(p, sizeof p, "%s." fmt, pre), p)
    const bool mtp = l >= a->n_layers;
    if (mtp) { /* MTP module around a decoder layer (HF names) */
        SYNTH_TRY(synth_add_vector(b, N("enorm"), D, norm_mean, 0.02f));
        SYNTH_TRY(synth_add_vector(b, N("hnorm"), D, norm_mean, 0.02f));
        SYNTH_TRY(synth_add_module(b, N("eh_proj"), "weight", ROLE_MTP_PROJ, l, false, 2, SHAPE2(D, 2 * D), 0,
                             (float)(1.0 / sqrt(2.0 * D))));
    }
    SYNTH_TRY(synth_add_vector(b, N("input_layernorm"), D, norm_mean, 0.02f));
    /* attention: GQA with q/k norms and the head-wise gate */
    SYNTH_TRY(synth_add_module(b, N("self_attn.q_proj"), "weight", ROLE_ATTN, l, false, 2, SHAPE2(H * hd, D), 0, in_std));
    SYNTH_TRY(synth_add_module(b, N("self_attn.k_proj"), "weight", ROLE_ATTN, l, false, 2, SHAPE2(KV * hd, D), 0, in_std));
    SYNTH_TRY(synth_add_module(b, N("self_attn.v_proj"), "weight", ROLE_ATTN, l, false, 2, SHAPE2(KV * hd, D), 0, in_std));
    SYNTH_TRY(synth_add_module(b, N("self_attn.o_proj"), "weight", ROLE_ATTN, l, false, 2, SHAPE2(D, H * hd), 0,
                         (float)(out_scale / sqrt((double)(H * hd)))));
    SYNTH_TRY(synth_add_module(b, N("self_attn.g_proj"), "weight", ROLE_ATTN, l, false, 2, SHAPE2(H, D), 0, in_std));
    SYNTH_TRY(synth_add_vector(b, N("self_attn.q_norm"), hd, norm_mean, 0.02f));
    SYNTH_TRY(synth_add_vector(b, N("self_attn.k_norm"), hd, norm_mean, 0.02f));
    SYNTH_TRY(synth_add_vector(b, N("post_attention_layernorm"), D, norm_mean, 0.02f));
    if (l < a->first_k_dense_replace || mtp) { /* dense MLP (MTP layers: always) */
        const int64_t I = a->intermediate_size;
        SYNTH_TRY(synth_add_module(b, N("mlp.gate_proj"), "weight", ROLE_DENSE, l, false, 2, SHAPE2(I, D), 0, in_std));
        SYNTH_TRY(synth_add_module(b, N("mlp.up_proj"), "weight", ROLE_DENSE, l, false, 2, SHAPE2(I, D), 0, in_std));
        SYNTH_TRY(synth_add_module(b, N("mlp.down_proj"), "weight", ROLE_DENSE, l, true, 2, SHAPE2(D, I), 0,
                             (float)(out_scale / sqrt((double)I))));
    } else { /* router + routed experts + shared expert */
        const int64_t E = a->n_routed_experts, M = a->moe_intermediate_size, S = a->share_expert_dim;
        const float down_std = (float)(out_scale / sqrt((double)M));
        if (mlx) {
            SYNTH_TRY(synth_add_module(b, N("mlp.gate.gate"), "weight", ROLE_ROUTER, l, false, 2, SHAPE2(E, D), 0, in_std));
            SYNTH_TRY(synth_add_router_bias(b, N("mlp.gate.router_bias"), l, E, MS_DT_BF16));
        } else {
            SYNTH_TRY(synth_add_module(b, N("moe.gate"), "weight", ROLE_NONE, l, false, 2, SHAPE2(E, D), 0, in_std));
            SYNTH_TRY(synth_add_router_bias(b, N("moe.router_bias"), l, E, MS_DT_F32));
        }
        const char *ex = mlx ? "mlp.switch_mlp" : "moe", *sh = mlx ? "mlp.share_expert" : "share_expert";
        snprintf(p, sizeof p, "%s.%s", pre, ex);
        SYNTH_TRY(synth_add_ffn(b, p, ROLE_ROUTED, l, E, M, D, in_std, down_std));
        snprintf(p, sizeof p, "%s.%s", pre, sh);
        SYNTH_TRY(synth_add_ffn(b, p, ROLE_SHARED, l, 0, S, D, in_std, (float)(out_scale / sqrt((double)S))));
    }
    if (mtp) { /* the layer's own head, under `transformer.` as in the release */
        SYNTH_TRY(synth_add_vector(b, N("transformer.shared_head.norm"), D, norm_mean, 0.02f));
        SYNTH_TRY(synth_add_module(b, N("transformer.shared_head.output"), "weight", ROLE_LM_HEAD, l, false, 2,
                                   SHAPE2(a->vocab_size, D), 0, in_std));
    }
#undef N
    return 0;
}

/* A few tensors of the vision tower (bf16) and its projector (quantized like
 * mlx-vlm does): present in the wrapper's files, never read for text. */
static int add_vision(synth_build *b)
{
    const int64_t W = 64, D = b->o->arch.hidden_size;
    int rc = synth_add_module(b, "vision_model.conv1", "weight", ROLE_NONE, -1, false, 4, ((const int64_t[]){W, 3, 14, 14}),
                              0, 0.02f);
    if (rc == 0) rc = synth_add_vector(b, "vision_model.ln_pre", W, 1.0f, 0.02f);
    if (rc == 0)
        rc = synth_add_module(b, "vision_model.transformer.resblocks.0.attn", "in_proj_weight", ROLE_NONE, -1, false,
                              2, SHAPE2(3 * W, W), 0, 0.125f);
    if (rc == 0)
        rc = synth_add_module(b, "vit_large_projector", "weight", ROLE_PROJECTOR, -1, false, 2, SHAPE2(D, 4 * W), 0,
                              0.0625f);
    return rc;
}

int synth_step_inventory(synth_build *b)
{
    const ms_synth_opts *o = b->o;
    const ms_synth_arch *a = &o->arch;
    const bool mlx = o->format == MS_SYNTH_MLX;
    const char *P = mlx ? "language_model.model" : "model";
    const int64_t D = a->hidden_size, V = a->vocab_size;
    char p[64];
    snprintf(p, sizeof p, "%s.embed_tokens", P);
    int rc = synth_add_module(b, p, "weight", ROLE_EMBED, -1, false, 2, SHAPE2(V, D), 0, 1.0f);
    for (int l = 0; rc == 0 && l < a->n_layers + a->n_mtp; l++) rc = add_layer(b, P, l);
    snprintf(p, sizeof p, "%s.norm", P);
    if (rc == 0) rc = synth_add_vector(b, p, D, mlx ? 1.0f : 0.0f, 0.02f);
    if (rc == 0)
        rc = synth_add_module(b, mlx ? "language_model.lm_head" : "lm_head", "weight", ROLE_LM_HEAD, -1, false, 2,
                              SHAPE2(V, D), 0, (float)(1.0 / sqrt((double)D)));
    if (rc == 0 && mlx) rc = add_vision(b);
    return rc;
}

/* ---- config.json ---- */

/* Entries of the per-layer lists: num_hidden_layers + the MTP layers (3 in the release). */
static int list_len(const ms_synth_arch *a) { return a->n_layers + (a->n_mtp > STEP_MTP_ENTRIES ? a->n_mtp : STEP_MTP_ENTRIES); }

/* A SwiGLU limit list: `last2` on layer N-2, `last1` on layer N-1, 0 elsewhere. */
static json_object *clamp_list(const ms_synth_arch *a, double last2, double last1)
{
    json_object *arr = json_object_new_array();
    for (int l = 0; l < list_len(a); l++)
        json_object_array_add(arr, json_object_new_double(l == a->n_layers - 1 ? last1 : l == a->n_layers - 2 ? last2 : 0));
    return arr;
}

json_object *synth_step_config(const ms_synth_opts *o, const synth_build *b)
{
    const ms_synth_arch *a = &o->arch;
    const bool mlx = o->format == MS_SYNTH_MLX;
    json_object *t = json_object_new_object(), *arr;
#define ADD(k, v) json_object_object_add(t, k, v)
#define I(x) json_object_new_int(x)
#define F(x) json_object_new_double(x)
#define B(x) json_object_new_boolean(x)
#define S(x) json_object_new_string(x)
    arr = json_object_new_array();
    json_object_array_add(arr, S(a->architecture));
    ADD("architectures", arr);
    json_object *aos = json_object_new_object();
    json_object_object_add(aos, "num_attention_heads", I(a->n_heads_sliding));
    json_object_object_add(aos, "num_attention_groups", I(a->n_kv_heads_sliding));
    json_object_object_add(aos, "head_dim", I(a->head_dim));
    ADD("attention_other_setting", aos);
    ADD("bos_token_id", I(a->bos_token_id));
    ADD("eos_token_id", I(a->eos_token_id));
    ADD("head_dim", I(a->head_dim));
    ADD("hidden_size", I(a->hidden_size));
    ADD("intermediate_size", I(a->intermediate_size));
    /* per-layer type, rope base and rotated share: full or sliding pattern */
    arr = json_object_new_array();
    json_object *thetas = json_object_new_array(), *prf = json_object_new_array();
    for (int l = 0; l < list_len(a); l++) {
        bool full = is_full(a, l);
        json_object_array_add(arr, S(full ? "full_attention" : "sliding_attention"));
        json_object_array_add(thetas, F(full ? a->rope_theta : a->rope_theta_sliding));
        json_object_array_add(prf, F(full ? a->partial_rotary_full : 1.0));
    }
    ADD("layer_types", arr);
    ADD("max_position_embeddings", I(a->max_position_embeddings));
    ADD("max_seq_len", I(a->max_position_embeddings));
    ADD("model_type", S("step3p5"));
    ADD("moe_intermediate_size", I(a->moe_intermediate_size));
    char moe[8192];
    size_t len = 0;
    moe[0] = 0;
    for (int l = a->first_k_dense_replace; l < a->n_layers && len + 16 < sizeof moe; l++)
        len += (size_t)snprintf(moe + len, sizeof moe - len, "%s%d", len ? "," : "", l);
    ADD("moe_layers_enum", S(moe));
    ADD("moe_num_experts", I(a->n_routed_experts));
    ADD("moe_router_activation", S("sigmoid"));
    ADD("moe_router_scaling_factor", F(a->routed_scaling_factor));
    ADD("moe_top_k", I(a->n_experts_per_tok));
    ADD("need_fp32_gate", B(1));
    ADD("norm_expert_weight", B(a->norm_topk_prob));
    ADD("num_attention_groups", I(a->n_kv_heads));
    ADD("num_attention_heads", I(a->n_heads));
    ADD("num_hidden_layers", I(a->n_layers));
    /* the MTP layers written (3 in the release; without --mtp the release's 3 the config keeps) */
    ADD("num_nextn_predict_layers", I(a->n_mtp ? a->n_mtp : list_len(a) - a->n_layers));
    ADD("partial_rotary_factors", prf);
    ADD("rms_norm_eps", F(a->rms_norm_eps));
    json_object *rs = json_object_new_object();
    json_object_object_add(rs, "rope_type", S("llama3"));
    json_object_object_add(rs, "factor", F(a->llama3_factor));
    json_object_object_add(rs, "original_max_position_embeddings", I(a->llama3_original_max_pos));
    json_object_object_add(rs, "low_freq_factor", F(a->llama3_low));
    json_object_object_add(rs, "high_freq_factor", F(a->llama3_high));
    ADD("rope_scaling", rs);
    ADD("rope_theta", thetas);
    ADD("share_expert_dim", I(a->share_expert_dim));
    ADD("sliding_window", I(a->sliding_window));
    ADD("swiglu_limits", clamp_list(a, a->swiglu_limit, a->swiglu_limit));
    ADD("swiglu_limits_shared", clamp_list(a, 0, a->swiglu_limit_shared));
    ADD("tie_word_embeddings", B(0));
    ADD("torch_dtype", S(o->dtype == MS_DT_BF16 ? "bfloat16" : o->dtype == MS_DT_F16 ? "float16" : "float32"));
    ADD("use_head_wise_attn_gate", B(1));
    ADD("use_moe_router_bias", B(1));
    ADD("use_qk_norm", B(1));
    ADD("vocab_size", I(a->vocab_size));
    arr = json_object_new_array();
    json_object_array_add(arr, S("full_attention"));
    ADD("yarn_only_types", arr);
    ADD("zero_centered", B(1));
#undef ADD
    if (!mlx) return t;
    /* mlx-vlm's step3p7 wrapper around the text config */
    json_object *c = json_object_new_object();
#define ADD(k, v) json_object_object_add(c, k, v)
    arr = json_object_new_array();
    json_object_array_add(arr, S("Step3p7ForConditionalGeneration"));
    ADD("architectures", arr);
    ADD("bos_token_id", I(a->bos_token_id));
    ADD("eos_token_id", I(a->eos_token_id));
    ADD("image_token_id", I(a->vocab_size - 1));
    ADD("model_type", S("step3p7"));
    ADD("projector_bias", B(0));
    ADD("quantization", synth_quant_block(o, b));
    ADD("quantization_config", synth_quant_block(o, b));
    ADD("text_config", t);
    ADD("understand_projector_stride", I(2));
    json_object *vc = json_object_new_object();
    json_object_object_add(vc, "model_type", S("perception_encoder"));
    json_object_object_add(vc, "width", I(64));
    json_object_object_add(vc, "layers", I(1));
    json_object_object_add(vc, "heads", I(2));
    json_object_object_add(vc, "patch_size", I(14));
    ADD("vision_config", vc);
    ADD("vocab_size", I(a->vocab_size));
#undef ADD
#undef I
#undef F
#undef B
#undef S
    return c;
}

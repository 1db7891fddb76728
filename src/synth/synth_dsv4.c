/* synth_dsv4.c - generated DeepSeek-V4 models (model_type deepseek_v4) in the
 * layout of the seed, Thump604/DeepSeek-V4-Flash-MLX-Q3-mixed-gs128-affine
 * (its mlx-lm fork's converter; tests/data/golden/dsv4-tiny/README.md):
 *
 *   model.embed_tokens, lm_head                  quantized (6-bit in mixed-3-6)
 *   model.norm.weight                            --dtype
 *   model.hc_head.{fn [HC, HC*D], base [HC], scale [1]}             f32
 *   model.layers.L.attn_norm / ffn_norm.weight   --dtype
 *   model.layers.L.hc_{attn,ffn}.{fn [NM, HC*D], base [NM], scale [3]}  f32
 *   model.layers.L.attn.{wq_a, wq_b, wkv, wo_a [G*R, H/G*hd], wo_b}  quantized
 *   model.layers.L.attn.{q_norm, kv_norm}.weight --dtype, attn_sink [H] f32
 *   model.layers.L.attn.compressor.{wkv, wgate, ape, norm}   (ratio > 0; ape --dtype)
 *   model.layers.L.attn.indexer.{wq_b, weights_proj, compressor.*}  (ratio 4)
 *   model.layers.L.ffn.gate.weight [E, D]        --dtype, never quantized
 *   model.layers.L.ffn.gate.tid2eid [V, K] int64 (L < num_hash_layers) or
 *   model.layers.L.ffn.gate.e_score_correction_bias [E] f32 (--route-skew)
 *   model.layers.L.ffn.switch_mlp.{gate,up,down}_proj [E, ...]  routed experts
 *   model.layers.L.ffn.shared_experts.{gate,up,down}_proj
 *
 * config.json has the published keys (compress_ratios with one more entry for
 * the MTP layer, num_nextn_predict_layers 1; the seed has no MTP tensors).
 * Weight statistics follow synth.h; the mixers start near the identity mix
 * (fn std 1/sqrt(HC*D), scale 0.1, base N(0, 0.1)), sinks N(0, 1), ape
 * N(0, 0.1). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "synth_impl.h"
#include "util.h"

bool synth_is_dsv4(const ms_synth_arch *a) { return !strcmp(a->model_type, "deepseek_v4"); }

static int ratio_of(const ms_synth_arch *a, int l)
{
    if (l < a->v4.first_compressed) return 0;
    return (l - a->v4.first_compressed) % 2 == 0 ? 4 : a->v4.plain_ratio;
}

void synth_dsv4_preset(ms_synth_opts *o, bool tiny)
{
    ms_synth_arch *a = &o->arch;
    synth_arch_base(a, "deepseek_v4", "DeepseekV4ForCausalLM");
    o->recipe = MS_SYNTH_MIXED_3_6;
    o->group_size = 128;
    a->routed_scaling_factor = 1.5;
    a->yarn_factor = 16;
    a->yarn_original_max_pos = 65536;
    a->max_position_embeddings = 1048576;
    a->v4.hc_mult = 4;
    a->v4.hc_iters = 20;
    a->v4.swiglu_limit = 10;
    a->v4.compress_rope_theta = 160000;
    if (!tiny) { /* DeepSeek-V4-Flash as published (config.json of the seed) */
        a->vocab_size = 129280;
        a->hidden_size = 4096;
        a->n_layers = 43;
        a->n_heads = 64;
        a->q_lora_rank = 1024;
        a->n_routed_experts = 256;
        a->n_experts_per_tok = 6;
        a->moe_intermediate_size = 2048;
        a->v4.head_dim = 512;
        a->v4.rope_dim = 64;
        a->v4.o_groups = 8;
        a->v4.o_lora_rank = 1024;
        a->v4.window = 128;
        a->v4.index_heads = 64;
        a->v4.index_dim = 128;
        a->v4.index_topk = 512;
        a->v4.n_hash_layers = 3;
        a->v4.first_compressed = 2;
        a->v4.plain_ratio = 128;
    } else { /* the same structure at test size: ratios 0,4,32,4,32, window 32, top-16 of 2 index heads */
        a->vocab_size = 512;
        a->hidden_size = 256;
        a->n_layers = 5;
        a->n_heads = 4;
        a->q_lora_rank = 128;
        a->n_routed_experts = 16;
        a->n_experts_per_tok = 4;
        a->moe_intermediate_size = 128;
        a->v4.head_dim = 128;
        a->v4.rope_dim = 32;
        a->v4.o_groups = 2;
        a->v4.o_lora_rank = 64;
        a->v4.window = 32;
        a->v4.index_heads = 2;
        a->v4.index_dim = 64;
        a->v4.index_topk = 16;
        a->v4.n_hash_layers = 2;
        a->v4.first_compressed = 1;
        a->v4.plain_ratio = 32;
        o->shard_bytes = 512ull << 10; /* several shards */
    }
}

int synth_dsv4_validate(const ms_synth_opts *o, ms_err *err)
{
    const ms_synth_arch *a = &o->arch;
    if (o->format != MS_SYNTH_MLX)
        return ms_errf(err, EINVAL, "--format hf: deepseek_v4 is generated in the seed's MLX layout only");
    if (a->n_mtp) return ms_errf(err, EINVAL, "--mtp: deepseek_v4 conversions carry no MTP tensors");
    if (a->first_k_dense_replace) return ms_errf(err, EINVAL, "--first-dense: every deepseek_v4 layer is MoE");
    CHECK_RANGE(a->vocab_size, 512, 1 << 24, "--vocab");
    CHECK_RANGE(a->hidden_size, 1, 1 << 16, "hidden_size");
    CHECK_RANGE(a->n_layers, 1, 1024, "--layers");
    CHECK_RANGE(a->n_heads, 1, 1024, "num_attention_heads");
    CHECK_RANGE(a->q_lora_rank, 1, 1 << 16, "q_lora_rank");
    CHECK_RANGE(a->n_routed_experts, 1, 65536, "--experts");
    CHECK_RANGE(a->n_experts_per_tok, 1, a->n_routed_experts, "--top-k");
    CHECK_RANGE(a->moe_intermediate_size, 1, 1 << 20, "moe_intermediate_size");
    CHECK_RANGE(a->v4.o_groups, 1, a->n_heads, "o_groups");
    if (a->n_heads % a->v4.o_groups) return ms_errf(err, EINVAL, "o_groups must divide num_attention_heads");
    CHECK_RANGE(a->v4.rope_dim, 2, MS_MIN(a->v4.head_dim, a->v4.index_dim), "qk_rope_head_dim");
    CHECK_RANGE(a->v4.n_hash_layers, 0, a->n_layers, "num_hash_layers");
    CHECK_RANGE(a->max_position_embeddings, 1, 1 << 30, "max_position_embeddings");
    CHECK_RANGE(a->bos_token_id, 0, a->vocab_size - 1, "bos_token_id");
    CHECK_RANGE(a->eos_token_id, 0, a->vocab_size - 1, "eos_token_id");
    return 0;
}

/* One layer in the seed's names. */
static int add_layer(synth_build *b, int l)
{
    const ms_synth_arch *a = &b->o->arch;
    const int64_t D = a->hidden_size, H = a->n_heads, hd = a->v4.head_dim, ql = a->q_lora_rank;
    const int64_t G = a->v4.o_groups, R = a->v4.o_lora_rank, HC = a->v4.hc_mult, NM = (2 + HC) * HC;
    const int64_t E = a->n_routed_experts, M = a->moe_intermediate_size, S = a->n_shared_experts * M;
    const int64_t IH = a->v4.index_heads, ID = a->v4.index_dim;
    const int ratio = ratio_of(a, l);
    const float in_std = (float)(1.0 / sqrt((double)D)), out_scale = (float)(1.0 / sqrt(2.0 * a->n_layers));
    char pre[64], p[192];
    snprintf(pre, sizeof pre, "model.layers.%d", l);
    int rc;
#define P(fmt) (snprintf(p, sizeof p, "%s." fmt, pre), p)
#define MOD(name, r, down, rows, cols, std)                                                                       \
    SYNTH_TRY(synth_add_module(b, P(name), "weight", r, l, down, 2, SHAPE2(rows, cols), 0, std))
    SYNTH_TRY(synth_add_vector(b, P("attn_norm"), D, 1.0f, 0.02f));
    SYNTH_TRY(synth_add_vector(b, P("ffn_norm"), D, 1.0f, 0.02f));
    for (int k = 0; k < 2; k++) { /* hc_attn, hc_ffn */
        const char *hcn = k ? "hc_ffn" : "hc_attn";
        snprintf(p, sizeof p, "%s.%s.fn", pre, hcn);
        SYNTH_TRY(synth_add_float(b, p, MS_DT_F32, 2, SHAPE2(NM, HC * D), 0, (float)(1.0 / sqrt((double)(HC * D)))));
        snprintf(p, sizeof p, "%s.%s.base", pre, hcn);
        SYNTH_TRY(synth_add_float(b, p, MS_DT_F32, 1, &NM, 0, 0.1f));
        snprintf(p, sizeof p, "%s.%s.scale", pre, hcn);
        SYNTH_TRY(synth_add_float(b, p, MS_DT_F32, 1, (const int64_t[]){3}, 0.1f, 0.01f));
    }
    /* attention */
    MOD("attn.wq_a", ROLE_ATTN, false, ql, D, in_std);
    SYNTH_TRY(synth_add_vector(b, P("attn.q_norm"), ql, 1.0f, 0.02f));
    MOD("attn.wq_b", ROLE_ATTN, false, H * hd, ql, (float)(1.0 / sqrt((double)ql)));
    MOD("attn.wkv", ROLE_ATTN, false, hd, D, in_std);
    SYNTH_TRY(synth_add_vector(b, P("attn.kv_norm"), hd, 1.0f, 0.02f));
    SYNTH_TRY(synth_add_float(b, P("attn.attn_sink"), MS_DT_F32, 1, &H, 0, 1.0f));
    MOD("attn.wo_a", ROLE_ATTN, false, G * R, H / G * hd, (float)(1.0 / sqrt((double)(H / G * hd))));
    MOD("attn.wo_b", ROLE_ATTN, false, D, G * R, (float)(out_scale / sqrt((double)(G * R))));
    for (int k = 0; ratio > 0 && k < (ratio == 4 ? 2 : 1); k++) { /* compressor; the indexer's at ratio 4 */
        const char *cn = k ? "attn.indexer.compressor" : "attn.compressor";
        int64_t d = k ? ID : hd, w = ratio == 4 ? 2 * d : d;
        snprintf(p, sizeof p, "%s.%s.wkv", pre, cn);
        SYNTH_TRY(synth_add_module(b, p, "weight", ROLE_ATTN, l, false, 2, SHAPE2(w, D), 0, in_std));
        snprintf(p, sizeof p, "%s.%s.wgate", pre, cn);
        SYNTH_TRY(synth_add_module(b, p, "weight", ROLE_ATTN, l, false, 2, SHAPE2(w, D), 0, in_std));
        snprintf(p, sizeof p, "%s.%s.ape", pre, cn);
        SYNTH_TRY(synth_add_float(b, p, b->o->dtype, 2, SHAPE2(ratio, w), 0, 0.1f));
        snprintf(p, sizeof p, "%s.%s.norm", pre, cn);
        SYNTH_TRY(synth_add_vector(b, p, d, 1.0f, 0.02f));
    }
    if (ratio == 4) {
        MOD("attn.indexer.wq_b", ROLE_ATTN, false, IH * ID, ql, (float)(1.0 / sqrt((double)ql)));
        MOD("attn.indexer.weights_proj", ROLE_ATTN, false, IH, D, in_std);
    }
    /* router: a bare bf16 weight, then token ids or the correction bias */
    MOD("ffn.gate", ROLE_NONE, false, E, D, in_std);
    if (l < a->v4.n_hash_layers) {
        snprintf(p, sizeof p, "%s.ffn.gate.tid2eid", pre);
        sgen g = {.kind = GEN_TID2EID, .layer = l, .arg = (int32_t)E, .stream = ms_hash64(p)};
        b->n_params += (uint64_t)a->vocab_size * (uint64_t)a->n_experts_per_tok;
        SYNTH_TRY(synth_add_tensor(b, p, MS_DT_I64, 2, SHAPE2(a->vocab_size, a->n_experts_per_tok), &g));
    } else {
        snprintf(p, sizeof p, "%s.ffn.gate.e_score_correction_bias", pre);
        SYNTH_TRY(synth_add_router_bias(b, p, l, E, MS_DT_F32));
    }
    /* routed experts (stacked) and the shared expert */
    const float down_std = (float)(out_scale / sqrt((double)M));
    SYNTH_TRY(synth_add_ffn(b, P("ffn.switch_mlp"), ROLE_ROUTED, l, E, M, D, in_std, down_std));
    if (S > 0)
        SYNTH_TRY(synth_add_ffn(b, P("ffn.shared_experts"), ROLE_SHARED, l, 0, S, D, in_std,
                                (float)(out_scale / sqrt((double)S))));
#undef MOD
#undef P
    return 0;
}

int synth_dsv4_inventory(synth_build *b)
{
    const ms_synth_arch *a = &b->o->arch;
    const int64_t D = a->hidden_size, HC = a->v4.hc_mult;
    int rc = synth_add_module(b, "model.embed_tokens", "weight", ROLE_EMBED, -1, false, 2, SHAPE2(a->vocab_size, D),
                              0, 1.0f);
    for (int l = 0; rc == 0 && l < a->n_layers; l++) rc = add_layer(b, l);
    if (rc == 0) rc = synth_add_vector(b, "model.norm", D, 1.0f, 0.02f);
    if (rc == 0)
        rc = synth_add_float(b, "model.hc_head.fn", MS_DT_F32, 2, SHAPE2(HC, HC * D), 0,
                             (float)(1.0 / sqrt((double)(HC * D))));
    if (rc == 0) rc = synth_add_float(b, "model.hc_head.base", MS_DT_F32, 1, &HC, 0, 0.1f);
    if (rc == 0) rc = synth_add_float(b, "model.hc_head.scale", MS_DT_F32, 1, (const int64_t[]){1}, 0.1f, 0.01f);
    if (rc == 0)
        rc = synth_add_module(b, "lm_head", "weight", ROLE_LM_HEAD, -1, false, 2, SHAPE2(a->vocab_size, D), 0,
                              (float)(1.0 / sqrt((double)D)));
    return rc;
}

int synth_tid2eid(ms_rng *r, int64_t vocab, int64_t k, int n_experts, void *out, ms_err *err)
{
    if (k > n_experts) return ms_errf(err, EINVAL, "tid2eid: %lld experts per token exceed %d", (long long)k, n_experts);
    int64_t *ids = out;
    for (int64_t v = 0; v < vocab; v++) {
        int64_t *row = ids + v * k;
        for (int64_t j = 0; j < k; j++) { /* distinct: redraw a repeat */
            bool dup;
            do {
                row[j] = (int64_t)ms_rng_below(r, (uint64_t)n_experts);
                dup = false;
                for (int64_t i = 0; i < j; i++) dup |= row[i] == row[j];
            } while (dup);
        }
    }
    return 0;
}

json_object *synth_dsv4_config(const ms_synth_opts *o, const synth_build *b)
{
    const ms_synth_arch *a = &o->arch;
    json_object *c = json_object_new_object();
    if (!c) return NULL;
#define ADD(k, v) json_object_object_add(c, k, v)
#define I(x) json_object_new_int(x)
#define F(x) json_object_new_double(x)
    json_object *arr = json_object_new_array();
    json_object_array_add(arr, json_object_new_string(a->architecture));
    ADD("architectures", arr);
    ADD("attention_bias", json_object_new_boolean(0));
    ADD("attention_dropout", F(0.0));
    ADD("bos_token_id", I(a->bos_token_id));
    json_object *ratios = json_object_new_array();
    for (int l = 0; l <= a->n_layers; l++) /* + the MTP layer's entry */
        json_object_array_add(ratios, I(l < a->n_layers ? ratio_of(a, l) : 0));
    ADD("compress_ratios", ratios);
    ADD("compress_rope_theta", F(a->v4.compress_rope_theta));
    ADD("eos_token_id", I(a->eos_token_id));
    ADD("hc_eps", F(1e-6));
    ADD("hc_mult", I(a->v4.hc_mult));
    ADD("hc_sinkhorn_iters", I(a->v4.hc_iters));
    ADD("head_dim", I(a->v4.head_dim));
    ADD("hidden_act", json_object_new_string("silu"));
    ADD("hidden_size", I(a->hidden_size));
    ADD("index_head_dim", I(a->v4.index_dim));
    ADD("index_n_heads", I(a->v4.index_heads));
    ADD("index_topk", I(a->v4.index_topk));
    ADD("initializer_range", F(0.02));
    ADD("max_position_embeddings", I(a->max_position_embeddings));
    ADD("model_type", json_object_new_string(a->model_type));
    ADD("moe_intermediate_size", I(a->moe_intermediate_size));
    ADD("n_routed_experts", I(a->n_routed_experts));
    ADD("n_shared_experts", I(a->n_shared_experts));
    ADD("norm_topk_prob", json_object_new_boolean(a->norm_topk_prob));
    ADD("num_attention_heads", I(a->n_heads));
    ADD("num_experts_per_tok", I(a->n_experts_per_tok));
    ADD("num_hash_layers", I(a->v4.n_hash_layers));
    ADD("num_hidden_layers", I(a->n_layers));
    ADD("num_key_value_heads", I(1));
    ADD("num_nextn_predict_layers", I(1));
    ADD("o_groups", I(a->v4.o_groups));
    ADD("o_lora_rank", I(a->v4.o_lora_rank));
    ADD("q_lora_rank", I(a->q_lora_rank));
    ADD("qk_rope_head_dim", I(a->v4.rope_dim));
    ADD("rms_norm_eps", F(a->rms_norm_eps));
    json_object *r = json_object_new_object();
    json_object_object_add(r, "beta_fast", I((int)a->yarn_beta_fast));
    json_object_object_add(r, "beta_slow", I((int)a->yarn_beta_slow));
    json_object_object_add(r, "factor", I((int)a->yarn_factor));
    json_object_object_add(r, "original_max_position_embeddings", I(a->yarn_original_max_pos));
    json_object_object_add(r, "type", json_object_new_string("yarn"));
    ADD("rope_scaling", r);
    ADD("rope_theta", F(a->rope_theta));
    ADD("routed_scaling_factor", F(a->routed_scaling_factor));
    ADD("scoring_func", json_object_new_string("sqrtsoftplus"));
    ADD("sliding_window", I(a->v4.window));
    ADD("swiglu_limit", F(a->v4.swiglu_limit));
    ADD("tie_word_embeddings", json_object_new_boolean(0));
    ADD("topk_method", json_object_new_string("noaux_tc"));
    ADD("torch_dtype", json_object_new_string(o->dtype == MS_DT_BF16 ? "bfloat16"
                                              : o->dtype == MS_DT_F16 ? "float16" : "float32"));
    ADD("use_cache", json_object_new_boolean(1));
    ADD("vocab_size", I(a->vocab_size));
    ADD("quantization", synth_quant_block(o, b)); /* the same dict twice, as mlx_lm writes it */
    ADD("quantization_config", synth_quant_block(o, b));
#undef ADD
#undef I
#undef F
    return c;
}

/* synth.c - generated models in exact hub layouts (see synth.h).
 *
 * Three steps. (1) The inventory: walk the architecture (embed, layers 0..N-1,
 * MTP layers, norm, lm_head) and emit one "module" per weight with its logical
 * shape, role and target statistics; the recipe decides its bits and each
 * module becomes one float tensor or an MLX weight/scales/biases triple. Every
 * emitted tensor gets a generator record (kind, dtype, std, PRNG stream) kept
 * beside the st_write plan. (2) The data: ms_stw_write_all pulls each tensor in
 * chunks and gen_fill produces them from the tensor's own PRNG stream. A biases
 * tensor replays its scales' stream to compute bias = -scale * (2^bits-1)/2, so
 * no tensor needs another one in memory. (3) Metadata: the index and
 * config.json (json-c tree printed like Python's json.dump, because mlx_lm and
 * transformers write them that way: MLX sorts top-level keys with indent 4,
 * transformers sorts all keys with indent 2). */
#include "synth.h"
#include "synth_impl.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "quant.h"
#include "rng.h"
#include "synth_tokenizer.h"
#include "strbuf.h"
#include "util.h"

/* ---- presets ---- */

const char *ms_synth_preset_list(void)
{
    return "tiny, demo, gigachat-702b, gigachat3-10b, glm-4.7-flash, glm-tiny, step-3.7-flash, step-tiny, "
           "deepseek-v4-flash, deepseek-v4-tiny";
}

void synth_arch_base(ms_synth_arch *a, const char *model_type, const char *architecture)
{
    memset(a, 0, sizeof *a);
    snprintf(a->model_type, sizeof a->model_type, "%s", model_type);
    snprintf(a->architecture, sizeof a->architecture, "%s", architecture);
    a->n_shared_experts = 1;
    a->moe_layer_freq = 1;
    a->norm_topk_prob = true;
    a->rms_norm_eps = 1e-6;
    a->rope_theta = 10000.0;
    a->yarn = true;
    a->yarn_beta_fast = 32;
    a->yarn_beta_slow = 1;
    a->bos_token_id = 0;
    a->eos_token_id = 1;
}

static void arch_deepseek(ms_synth_arch *a)
{
    synth_arch_base(a, "deepseek_v3", "DeepseekV3ForCausalLM");
    a->routed_scaling_factor = 2.5;
    a->yarn_mscale = 1.0;
    a->yarn_mscale_all_dim = 1.0;
}

int ms_synth_preset(const char *name, ms_synth_opts *o, ms_err *err)
{
    memset(o, 0, sizeof *o);
    ms_synth_arch *a = &o->arch;
    o->format = MS_SYNTH_MLX;
    o->recipe = MS_SYNTH_UNIFORM;
    o->bits = 4;
    o->group_size = 64;
    o->dtype = MS_DT_BF16;
    o->seed = 1;
    o->route_skew = 1.0;
    o->shard_bytes = 5ull << 30; /* mlx_lm MAX_FILE_SIZE_GB */
    o->drop_cache = -1;
    if (!name) name = "";
    if (!strcmp(name, "tiny")) {
        /* A few MB; group routing, YaRN ramp inside the 8 rotary pairs, v != nope. */
        arch_deepseek(a);
        a->vocab_size = 512;
        a->hidden_size = 128;
        a->intermediate_size = 256;
        a->moe_intermediate_size = 128;
        a->n_layers = 4;
        a->n_heads = 4;
        a->q_lora_rank = 64;
        a->kv_lora_rank = 64;
        a->qk_nope_head_dim = 64;
        a->qk_rope_head_dim = 16;
        a->v_head_dim = 32;
        a->n_routed_experts = 16;
        a->n_experts_per_tok = 4;
        a->n_group = 4;
        a->topk_group = 2;
        a->first_k_dense_replace = 1;
        a->yarn_factor = 4;
        a->yarn_original_max_pos = 1024;
        a->max_position_embeddings = 4096;
        o->shard_bytes = 512ull << 10; /* several shards even at 4 bits */
    } else if (!strcmp(name, "demo")) {
        /* ~1.6 GB at 4 bits: the README demo; decodes at a few tok/s on 2 cores. */
        arch_deepseek(a);
        a->vocab_size = 32000;
        a->hidden_size = 2048;
        a->intermediate_size = 4096;
        a->moe_intermediate_size = 640;
        a->n_layers = 12;
        a->n_heads = 16;
        a->q_lora_rank = 512;
        a->kv_lora_rank = 512;
        a->qk_nope_head_dim = 128;
        a->qk_rope_head_dim = 64;
        a->v_head_dim = 128;
        a->n_routed_experts = 64;
        a->n_experts_per_tok = 6;
        a->n_group = 8;
        a->topk_group = 4;
        a->first_k_dense_replace = 1;
        a->yarn_factor = 4;
        a->yarn_original_max_pos = 4096;
        a->max_position_embeddings = 16384;
    } else if (!strcmp(name, "gigachat-702b")) {
        /* DeepSeek-V3 widths (GigaChat3.1-702B is deepseek_v3 with 64 layers);
         * 4 layers by default (1 dense + 3 MoE, ~20 GB at 4 bits). */
        arch_deepseek(a);
        a->vocab_size = 129280;
        a->hidden_size = 7168;
        a->intermediate_size = 18432;
        a->moe_intermediate_size = 2048;
        a->n_layers = 4;
        a->n_heads = 128;
        a->q_lora_rank = 1536;
        a->kv_lora_rank = 512;
        a->qk_nope_head_dim = 128;
        a->qk_rope_head_dim = 64;
        a->v_head_dim = 128;
        a->n_routed_experts = 256;
        a->n_experts_per_tok = 8;
        a->n_group = 8;
        a->topk_group = 4;
        a->first_k_dense_replace = 1;
        a->yarn_factor = 40;
        a->yarn_original_max_pos = 4096;
        a->max_position_embeddings = 163840;
        a->n_mtp_hf = 1; /* the HF checkpoint keeps its MTP layer at index 64 */
    } else if (!strcmp(name, "gigachat3-10b")) {
        /* GigaChat3.1-10B-A1.8B ("Lightning"), published as bf16 HF safetensors with
         * one MTP layer (its card serves it with vLLM MTP speculation). Known: model_type
         * deepseek_v3, 26 layers (llama.cpp #17420 detects it by that count as the
         * "lite" DeepSeek variant: no q_lora), MLA, MTP, ~10B total / ~1.8B active,
         * 256K context. Its config.json was not reachable here; the widths below are
         * inferred to match those totals with the lite DeepSeek layout: hidden 1536,
         * 16 heads, 64 routed experts of 1280 (top-6) + 2 shared -> 10.4B, ~1.7B
         * active. ~21 GB in bf16. */
        arch_deepseek(a);
        a->vocab_size = 128256;
        a->hidden_size = 1536;
        a->intermediate_size = 8960;
        a->moe_intermediate_size = 1280;
        a->n_layers = 26;
        a->n_heads = 16;
        a->q_lora_rank = 0;
        a->kv_lora_rank = 512;
        a->qk_nope_head_dim = 128;
        a->qk_rope_head_dim = 64;
        a->v_head_dim = 128;
        a->n_routed_experts = 64;
        a->n_shared_experts = 2;
        a->n_experts_per_tok = 6;
        a->n_group = 1;
        a->topk_group = 1;
        a->first_k_dense_replace = 1;
        a->yarn_factor = 64;
        a->yarn_original_max_pos = 4096;
        a->max_position_embeddings = 262144;
        a->n_mtp_hf = 1;
        o->format = MS_SYNTH_HF;
    } else if (!strcmp(name, "glm-4.7-flash") || !strcmp(name, "glm-tiny")) {
        /* GLM-4.7-Flash geometry (glm4_moe_lite): no YaRN, no group routing,
         * latent norms at rms_norm_eps; 4 of its 47 layers by default. glm-tiny:
         * the same family at test size (widths below, after the real ones). */
        arch_deepseek(a);
        snprintf(a->model_type, sizeof a->model_type, "glm4_moe_lite");
        snprintf(a->architecture, sizeof a->architecture, "Glm4MoeLiteForCausalLM");
        a->vocab_size = 154880;
        a->hidden_size = 2048;
        a->intermediate_size = 10240;
        a->moe_intermediate_size = 1536;
        a->n_layers = 4;
        a->n_heads = 20;
        a->q_lora_rank = 768;
        a->kv_lora_rank = 512;
        a->qk_nope_head_dim = 192;
        a->qk_rope_head_dim = 64;
        a->v_head_dim = 256;
        a->n_routed_experts = 64;
        a->n_experts_per_tok = 4;
        a->n_group = 1;
        a->topk_group = 1;
        a->first_k_dense_replace = 1;
        a->routed_scaling_factor = 1.8;
        a->rms_norm_eps = 1e-5;
        a->rope_theta = 1000000.0;
        a->yarn = false;
        a->max_position_embeddings = 202752;
        a->n_mtp_hf = 1; /* GLM-4.7-Flash's HF checkpoint has its MTP layer at index 47 */
        if (!strcmp(name, "glm-tiny")) { /* a few MB; v_head != qk_nope as in the real one */
            a->vocab_size = 512;
            a->hidden_size = 128;
            a->intermediate_size = 256;
            a->moe_intermediate_size = 64;
            a->n_layers = 3;
            a->n_heads = 4;
            a->q_lora_rank = 64;
            a->kv_lora_rank = 64;
            a->qk_nope_head_dim = 48;
            a->qk_rope_head_dim = 16;
            a->v_head_dim = 64;
            a->n_routed_experts = 8;
            a->n_experts_per_tok = 2;
            a->max_position_embeddings = 4096;
        }
    } else if (!strcmp(name, "step-3.7-flash") || !strcmp(name, "step-tiny")) {
        synth_step_preset(o, !strcmp(name, "step-tiny"));
    } else if (!strcmp(name, "deepseek-v4-flash") || !strcmp(name, "deepseek-v4-tiny")) {
        synth_dsv4_preset(o, !strcmp(name, "deepseek-v4-tiny"));
    } else {
        return ms_errf(err, EINVAL, "--preset: unknown preset '%s' (expected one of: %s)", name,
                       ms_synth_preset_list());
    }
    snprintf(o->preset, sizeof o->preset, "%s", name);
    return 0;
}

int ms_synth_parse_format(const char *s, ms_synth_format *out, ms_err *err)
{
    if (s && !strcmp(s, "mlx")) *out = MS_SYNTH_MLX;
    else if (s && !strcmp(s, "hf")) *out = MS_SYNTH_HF;
    else return ms_errf(err, EINVAL, "--format: unknown format '%s' (expected mlx or hf)", s ? s : "");
    return 0;
}

static const char *const recipe_names[] = {"uniform", "mixed-8-5", "dq4", "mixed-3-6"};

int ms_synth_parse_recipe(const char *s, ms_synth_recipe *out, ms_err *err)
{
    for (int i = 0; i < (int)MS_ARRAY_LEN(recipe_names); i++)
        if (s && !strcmp(s, recipe_names[i])) {
            *out = (ms_synth_recipe)i;
            return 0;
        }
    return ms_errf(err, EINVAL, "--recipe: unknown recipe '%s' (expected uniform, mixed-8-5, dq4 or mixed-3-6)",
                   s ? s : "");
}

const char *ms_synth_recipe_name(ms_synth_recipe r)
{
    return (int)r >= 0 && (int)r < (int)MS_ARRAY_LEN(recipe_names) ? recipe_names[r] : "?";
}

/* ---- validation ---- */

static bool is_moe_layer(const ms_synth_arch *a, int l)
{
    return l >= a->first_k_dense_replace && l % a->moe_layer_freq == 0;
}

/* The deepseek_v3 family's numbers: MLA widths, shared experts, group routing, YaRN. */
static int ds3_validate(const ms_synth_arch *a, ms_err *err)
{
    CHECK_RANGE(a->q_lora_rank, 0, 1 << 16, "--q-lora-rank");
    CHECK_RANGE(a->kv_lora_rank, 1, 1 << 16, "kv_lora_rank");
    CHECK_RANGE(a->qk_nope_head_dim, 1, 4096, "qk_nope_head_dim");
    CHECK_RANGE(a->qk_rope_head_dim, 2, 4096, "qk_rope_head_dim");
    if (a->qk_rope_head_dim % 2) return ms_errf(err, EINVAL, "qk_rope_head_dim: %d is odd", a->qk_rope_head_dim);
    CHECK_RANGE(a->v_head_dim, 1, 4096, "v_head_dim");
    CHECK_RANGE(a->n_shared_experts, 0, 64, "n_shared_experts");
    CHECK_RANGE(a->n_group, 1, a->n_routed_experts, "--n-group");
    if (a->n_routed_experts % a->n_group)
        return ms_errf(err, EINVAL, "--n-group: %d does not divide the %d experts", a->n_group, a->n_routed_experts);
    if (a->n_group > 1 && a->n_routed_experts / a->n_group < 2)
        return ms_errf(err, EINVAL, "--n-group: %d groups of %d experts (group scores need >= 2 experts per group)",
                       a->n_group, a->n_routed_experts / a->n_group);
    CHECK_RANGE(a->topk_group, 1, a->n_group, "--topk-group");
    if ((long long)a->topk_group * (a->n_routed_experts / a->n_group) < a->n_experts_per_tok)
        return ms_errf(err, EINVAL, "--topk-group: %d groups of %d experts cannot supply top-%d", a->topk_group,
                       a->n_routed_experts / a->n_group, a->n_experts_per_tok);
    if (a->yarn && (!(a->yarn_factor >= 1) || a->yarn_original_max_pos < 1))
        return ms_errf(err, EINVAL, "rope_scaling: YaRN factor must be >= 1 and original_max_position_embeddings >= 1");
    return 0;
}

int ms_synth_validate(const ms_synth_opts *o, ms_err *err)
{
    const ms_synth_arch *a = &o->arch;
    if (o->format != MS_SYNTH_MLX && o->format != MS_SYNTH_HF) return ms_errf(err, EINVAL, "--format: invalid");
    if ((int)o->recipe < 0 || o->recipe > MS_SYNTH_MIXED_3_6) return ms_errf(err, EINVAL, "--recipe: invalid");
    if (o->format == MS_SYNTH_HF && o->recipe != MS_SYNTH_UNIFORM)
        return ms_errf(err, EINVAL, "--recipe %s: quantization recipes apply to --format mlx only",
                       ms_synth_recipe_name(o->recipe));
    if (!ms_affine_bits_ok(o->bits))
        return ms_errf(err, EINVAL, "--bits: %d is not a valid MLX affine width (2, 3, 4, 5, 6 or 8)", o->bits);
    if (!ms_affine_group_ok(o->group_size))
        return ms_errf(err, EINVAL, "--group-size: %d is not a valid MLX group size (32, 64 or 128)", o->group_size);
    if (o->dtype != MS_DT_BF16 && o->dtype != MS_DT_F16 && o->dtype != MS_DT_F32)
        return ms_errf(err, EINVAL, "--dtype: must be bf16, f16 or f32");
    if (!(o->route_skew >= 0 && o->route_skew <= 100))
        return ms_errf(err, EINVAL, "--route-skew: %g is out of range [0, 100]", o->route_skew);
    if (o->shard_bytes == 0) return ms_errf(err, EINVAL, "--shard-size: must be > 0");
    if (synth_is_dsv4(a)) return synth_dsv4_validate(o, err);

    CHECK_RANGE(a->vocab_size, 512, 1 << 24, "--vocab");
    CHECK_RANGE(a->hidden_size, 1, 1 << 16, "hidden_size");
    CHECK_RANGE(a->n_layers, 1, 1024, "--layers");
    CHECK_RANGE(a->first_k_dense_replace, 0, a->n_layers, "--first-dense");
    CHECK_RANGE(a->moe_layer_freq, 1, 1024, "moe_layer_freq");
    CHECK_RANGE(a->n_heads, 1, 1024, "num_attention_heads");
    CHECK_RANGE(a->n_routed_experts, 1, 65536, "--experts");
    CHECK_RANGE(a->n_experts_per_tok, 1, a->n_routed_experts, "--top-k");
    int rc = synth_is_step(a) ? synth_step_validate(o, err) : ds3_validate(a, err);
    if (rc < 0) return rc;
    CHECK_RANGE(a->n_mtp, 0, 16, "--mtp");
    bool any_dense = false, any_moe = false;
    for (int l = 0; l < a->n_layers + a->n_mtp; l++) {
        if (is_moe_layer(a, l)) any_moe = true;
        else any_dense = true;
    }
    if (any_dense) CHECK_RANGE(a->intermediate_size, 1, 1 << 20, "intermediate_size");
    if (any_moe) CHECK_RANGE(a->moe_intermediate_size, 1, 1 << 20, "moe_intermediate_size");
    if (!(a->routed_scaling_factor > 0) || !(a->rms_norm_eps > 0) || !(a->rope_theta > 0))
        return ms_errf(err, EINVAL, "routed_scaling_factor, rms_norm_eps and rope_theta must be > 0");
    CHECK_RANGE(a->max_position_embeddings, 1, 1 << 30, "max_position_embeddings");
    CHECK_RANGE(a->bos_token_id, 0, a->vocab_size - 1, "bos_token_id");
    CHECK_RANGE(a->eos_token_id, 0, a->vocab_size - 1, "eos_token_id");
    return 0;
}

/* ---- recipes ---- */

static const char *const role_names[] = {"embed",   "attn",     "dense",  "shared",   "routed",
                                         "lm_head", "mtp_proj", "router", "projector"};

static int recipe_bits(const ms_synth_opts *o, synth_role r, int layer, bool is_down)
{
    if (r == ROLE_ROUTER) return 8; /* mlx-lm's quant_predicate for Step's mlp.gate.gate, any recipe */
    if (r == ROLE_PROJECTOR) return synth_recipe_default_bits(o);
    switch (o->recipe) {
    case MS_SYNTH_UNIFORM: return o->bits;
    case MS_SYNTH_MIXED_8_5: return r == ROLE_ROUTED ? 5 : 8;
    case MS_SYNTH_DQ4:
        if (r == ROLE_ROUTED || r == ROLE_SHARED) {
            if (!is_down) return 4;
            if (layer < 5) return 6;
            return layer % 5 == 0 ? 5 : 4;
        }
        return 8;
    case MS_SYNTH_MIXED_3_6: {
        if (r != ROLE_ROUTED && r != ROLE_DENSE && r != ROLE_MTP_PROJ) return 6;
        int n8 = o->arch.n_layers / 8;
        bool more = layer < n8 || layer >= 7 * o->arch.n_layers / 8 || (layer - n8) % 3 == 2;
        return is_down && more ? 6 : 3;
    }
    }
    return o->bits;
}

/* Top-level "bits" of the quantization block. */
int synth_recipe_default_bits(const ms_synth_opts *o)
{
    switch (o->recipe) {
    case MS_SYNTH_MIXED_8_5: return 5;
    case MS_SYNTH_DQ4: return 4;
    case MS_SYNTH_MIXED_3_6: return 4; /* mlx_lm's default: --q-bits not given */
    default: return o->bits;
    }
}

/* Group size of a quantized module: the router's predicate fixes 64. */
static int module_group(const ms_synth_opts *o, synth_role r) { return r == ROLE_ROUTER ? 64 : o->group_size; }

static int module_bits(const ms_synth_opts *o, synth_role r, int layer, bool is_down, int64_t in)
{
    if (o->format != MS_SYNTH_MLX || r == ROLE_NONE) return 0;
    if (in <= 0 || in % module_group(o, r)) return 0; /* mlx_lm leaves such modules unquantized */
    return recipe_bits(o, r, layer, is_down);
}

int ms_synth_module_bits(const ms_synth_opts *o, const char *role_name, int layer, bool is_down, int64_t in)
{
    for (int r = 0; r < (int)MS_ARRAY_LEN(role_names); r++)
        if (!strcmp(role_name, role_names[r])) return module_bits(o, (synth_role)r, layer, is_down, in);
    return 0;
}

/* ---- inventory ---- */

#define SALT_SCALES 0x5ca1e5b1a5e5ull

static int push_gen(synth_build *b, const sgen *g)
{
    if (b->n_gens == b->cap_gens) {
        int cap = b->cap_gens ? b->cap_gens * 2 : 256;
        sgen *n = realloc(b->gens, (size_t)cap * sizeof *n);
        if (!n) return ms_errf(b->err, ENOMEM, "out of memory");
        b->gens = n;
        b->cap_gens = cap;
    }
    b->gens[b->n_gens++] = *g;
    return 0;
}

static int push_override(synth_build *b, const char *path, int bits, int group, bool predicate)
{
    if (b->n_ov == b->cap_ov) {
        int cap = b->cap_ov ? b->cap_ov * 2 : 64;
        qoverride *n = realloc(b->ov, (size_t)cap * sizeof *n);
        if (!n) return ms_errf(b->err, ENOMEM, "out of memory");
        b->ov = n;
        b->cap_ov = cap;
    }
    b->ov[b->n_ov].path = strdup(path);
    if (!b->ov[b->n_ov].path) return ms_errf(b->err, ENOMEM, "out of memory");
    b->ov[b->n_ov].bits = bits;
    b->ov[b->n_ov].group = group;
    b->ov[b->n_ov].predicate = predicate;
    b->n_ov++;
    return 0;
}

int synth_add_tensor(synth_build *b, const char *name, ms_dtype dt, int ndim, const int64_t *shape, const sgen *g)
{
    int rc = ms_stw_plan_add(b->plan, name, dt, ndim, shape, b->err);
    if (rc < 0) return rc;
    sgen gg = *g;
    gg.dtype = dt;
    return push_gen(b, &gg);
}

/* One weight: a float tensor `path.leaf`, or (quantized) path.{weight,scales,biases}. */
int synth_add_module(synth_build *b, const char *path, const char *leaf, synth_role r, int layer, bool is_down, int ndim,
                      const int64_t *shape, float mean, float std)
{
    const ms_synth_opts *o = b->o;
    char name[256], src[256];
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (uint64_t)shape[i];
    b->n_params += numel;
    /* An MTP layer's embed_tokens and shared_head.head are exact copies of the
     * main embedding and lm_head, as in DeepSeek-V3 checkpoints: same values,
     * same quantization (generated from the main tensor's stream). */
    const char *from = path, *layers = strstr(path, "model.layers.");
    char main_name[96];
    int pre = layers ? (int)(layers - path) : 0; /* "" or a wrapper's "language_model." */
    if (layer >= 0 && strstr(path, ".embed_tokens"))
        from = (snprintf(main_name, sizeof main_name, "%.*smodel.embed_tokens", pre, path), main_name);
    else if (layer >= 0 && strstr(path, ".shared_head.head"))
        from = (snprintf(main_name, sizeof main_name, "%.*slm_head", pre, path), main_name);
    if (from != path) layer = -1;
    int64_t in = shape[ndim - 1];
    int bits = module_bits(o, r, layer, is_down, in);
    if (!bits) {
        snprintf(name, sizeof name, "%s.%s", path, leaf);
        snprintf(src, sizeof src, "%s.%s", from, leaf);
        sgen g = {.kind = GEN_FLOAT, .mean = mean, .std = std, .layer = layer, .stream = ms_hash64(src)};
        return synth_add_tensor(b, name, o->dtype, ndim, shape, &g);
    }
    int64_t qs[MS_STW_MAX_DIMS];
    memcpy(qs, shape, (size_t)ndim * sizeof *qs);
    snprintf(name, sizeof name, "%s.weight", path);
    snprintf(src, sizeof src, "%s.weight", from);
    qs[ndim - 1] = in * bits / 32;
    sgen g = {.kind = GEN_QWEIGHT, .bits = (uint8_t)bits, .std = std, .layer = layer, .stream = ms_hash64(src)};
    int rc = synth_add_tensor(b, name, MS_DT_U32, ndim, qs, &g);
    if (rc < 0) return rc;
    int group = module_group(o, r);
    qs[ndim - 1] = in / group;
    g.stream = ms_hash64(from) ^ SALT_SCALES; /* shared by scales and biases: biases replay the scales */
    g.kind = GEN_QSCALES;
    snprintf(name, sizeof name, "%s.scales", path);
    rc = synth_add_tensor(b, name, o->dtype, ndim, qs, &g);
    if (rc < 0) return rc;
    g.kind = GEN_QBIASES;
    snprintf(name, sizeof name, "%s.biases", path);
    rc = synth_add_tensor(b, name, o->dtype, ndim, qs, &g);
    if (rc < 0) return rc;
    if (r == ROLE_ROUTER) return push_override(b, path, bits, group, true);
    if (o->recipe != MS_SYNTH_UNIFORM && r != ROLE_PROJECTOR) return push_override(b, path, bits, group, false);
    return 0;
}

int synth_add_ffn(synth_build *b, const char *path, synth_role r, int layer, int64_t E, int64_t M, int64_t D,
                  float in_std, float down_std)
{
    static const char *const proj[3] = {"gate_proj", "up_proj", "down_proj"};
    char p[256];
    int rc;
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s.%s", path, proj[k]);
        int64_t rows = k == 2 ? D : M, cols = k == 2 ? M : D;
        const int64_t *shape = E ? SHAPE3(E, rows, cols) : SHAPE2(rows, cols);
        SYNTH_TRY(synth_add_module(b, p, "weight", r, layer, k == 2, E ? 3 : 2, shape, 0, k == 2 ? down_std : in_std));
    }
    return 0;
}

int synth_add_vector(synth_build *b, const char *path, int64_t dim, float mean, float std)
{
    return synth_add_module(b, path, "weight", ROLE_NONE, -1, false, 1, &dim, mean, std);
}

static int add_norm(synth_build *b, const char *path, int64_t dim) { return synth_add_vector(b, path, dim, 1.0f, 0.02f); }

int synth_add_float(synth_build *b, const char *name, ms_dtype dt, int ndim, const int64_t *shape, float mean,
                    float std)
{
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (uint64_t)shape[i];
    b->n_params += numel;
    sgen g = {.kind = GEN_FLOAT, .mean = mean, .std = std, .layer = -1, .stream = ms_hash64(name)};
    return synth_add_tensor(b, name, dt, ndim, shape, &g);
}

int synth_add_router_bias(synth_build *b, const char *name, int layer, int64_t E, ms_dtype dt)
{
    sgen g = {.kind = GEN_RBIAS, .layer = layer, .stream = ms_hash64(name)};
    b->n_params += (uint64_t)E;
    return synth_add_tensor(b, name, dt, 1, &E, &g);
}

static int add_layer(synth_build *b, int l)
{
    const ms_synth_opts *o = b->o;
    const ms_synth_arch *a = &o->arch;
    const bool mlx = o->format == MS_SYNTH_MLX;
    const bool mtp = l >= a->n_layers;
    const int64_t D = a->hidden_size, H = a->n_heads, nope = a->qk_nope_head_dim, rope = a->qk_rope_head_dim,
                  v = a->v_head_dim, kvl = a->kv_lora_rank, ql = a->q_lora_rank;
    const float out_scale = (float)(1.0 / sqrt(2.0 * a->n_layers));
    char pre[64], p[192];
    snprintf(pre, sizeof pre, "model.layers.%d", l);
    int rc = 0;
#define P(fmt) (snprintf(p, sizeof p, "%s." fmt, pre), p)

    if (mtp) { /* DeepSeek-V3 MTP module (HF names, spec §2.3) around a full decoder layer */
        SYNTH_TRY(synth_add_module(b, P("embed_tokens"), "weight", ROLE_EMBED, l, false, 2, SHAPE2(a->vocab_size, D), 0, 1.0f));
        SYNTH_TRY(add_norm(b, P("enorm"), D));
        SYNTH_TRY(add_norm(b, P("hnorm"), D));
        SYNTH_TRY(synth_add_module(b, P("eh_proj"), "weight", ROLE_MTP_PROJ, l, false, 2, SHAPE2(D, 2 * D), 0,
                       (float)(1.0 / sqrt(2.0 * D))));
    }
    SYNTH_TRY(add_norm(b, P("input_layernorm"), D));
    /* attention (MLA) */
    if (ql > 0) {
        SYNTH_TRY(synth_add_module(b, P("self_attn.q_a_proj"), "weight", ROLE_ATTN, l, false, 2, SHAPE2(ql, D), 0,
                       (float)(1.0 / sqrt((double)D))));
        SYNTH_TRY(add_norm(b, P("self_attn.q_a_layernorm"), ql));
        SYNTH_TRY(synth_add_module(b, P("self_attn.q_b_proj"), "weight", ROLE_ATTN, l, false, 2, SHAPE2(H * (nope + rope), ql), 0,
                       (float)(1.0 / sqrt((double)ql))));
    } else {
        SYNTH_TRY(synth_add_module(b, P("self_attn.q_proj"), "weight", ROLE_ATTN, l, false, 2, SHAPE2(H * (nope + rope), D), 0,
                       (float)(1.0 / sqrt((double)D))));
    }
    SYNTH_TRY(synth_add_module(b, P("self_attn.kv_a_proj_with_mqa"), "weight", ROLE_ATTN, l, false, 2, SHAPE2(kvl + rope, D), 0,
                   (float)(1.0 / sqrt((double)D))));
    SYNTH_TRY(add_norm(b, P("self_attn.kv_a_layernorm"), kvl));
    const float kvb_std = (float)(1.0 / sqrt((double)kvl));
    if (mlx) { /* mlx-lm >= 0.30.6: kv_b_proj split into per-head MultiLinear weights */
        SYNTH_TRY(synth_add_module(b, P("self_attn.embed_q"), "weight", ROLE_ATTN, l, false, 3, SHAPE3(H, kvl, nope), 0, kvb_std));
        SYNTH_TRY(synth_add_module(b, P("self_attn.unembed_out"), "weight", ROLE_ATTN, l, false, 3, SHAPE3(H, v, kvl), 0,
                       kvb_std));
    } else {
        SYNTH_TRY(synth_add_module(b, P("self_attn.kv_b_proj"), "weight", ROLE_ATTN, l, false, 2, SHAPE2(H * (nope + v), kvl), 0,
                       kvb_std));
    }
    SYNTH_TRY(synth_add_module(b, P("self_attn.o_proj"), "weight", ROLE_ATTN, l, false, 2, SHAPE2(D, H * v), 0,
                   (float)(out_scale / sqrt((double)(H * v)))));
    SYNTH_TRY(add_norm(b, P("post_attention_layernorm"), D));

    const float in_std = (float)(1.0 / sqrt((double)D));
    if (!is_moe_layer(a, l)) {
        const int64_t I = a->intermediate_size;
        const float down_std = (float)(out_scale / sqrt((double)I));
        SYNTH_TRY(synth_add_ffn(b, P("mlp"), ROLE_DENSE, l, 0, I, D, in_std, down_std));
    } else {
        const int64_t E = a->n_routed_experts, M = a->moe_intermediate_size;
        const float down_std = (float)(out_scale / sqrt((double)M));
        /* router: a bare parameter (never quantized) + f32 correction bias */
        SYNTH_TRY(synth_add_module(b, P("mlp.gate"), "weight", ROLE_NONE, l, false, 2, SHAPE2(E, D), 0, in_std));
        SYNTH_TRY(synth_add_router_bias(b, P("mlp.gate.e_score_correction_bias"), l, E, MS_DT_F32));
        if (mlx) { /* stacked SwitchLinear weights */
            SYNTH_TRY(synth_add_ffn(b, P("mlp.switch_mlp"), ROLE_ROUTED, l, E, M, D, in_std, down_std));
        } else { /* one tensor per expert and projection */
            for (int e = 0; e < E; e++) {
                char q[192];
                snprintf(q, sizeof q, "%s.mlp.experts.%d.gate_proj", pre, e);
                SYNTH_TRY(synth_add_module(b, q, "weight", ROLE_ROUTED, l, false, 2, SHAPE2(M, D), 0, in_std));
                snprintf(q, sizeof q, "%s.mlp.experts.%d.up_proj", pre, e);
                SYNTH_TRY(synth_add_module(b, q, "weight", ROLE_ROUTED, l, false, 2, SHAPE2(M, D), 0, in_std));
                snprintf(q, sizeof q, "%s.mlp.experts.%d.down_proj", pre, e);
                SYNTH_TRY(synth_add_module(b, q, "weight", ROLE_ROUTED, l, true, 2, SHAPE2(D, M), 0, down_std));
            }
        }
        if (a->n_shared_experts > 0) {
            const int64_t S = (int64_t)a->n_shared_experts * M;
            SYNTH_TRY(synth_add_ffn(b, P("mlp.shared_experts"), ROLE_SHARED, l, 0, S, D, in_std,
                                    (float)(out_scale / sqrt((double)S))));
        }
    }
    if (mtp) {
        SYNTH_TRY(add_norm(b, P("shared_head.norm"), D));
        SYNTH_TRY(synth_add_module(b, P("shared_head.head"), "weight", ROLE_LM_HEAD, l, false, 2, SHAPE2(a->vocab_size, D), 0,
                       in_std));
    }
#undef P
    return 0;
}

void synth_build_free(synth_build *b)
{
    free(b->gens);
    for (int i = 0; i < b->n_ov; i++) free(b->ov[i].path);
    free(b->ov);
}

static int build_inventory(const ms_synth_opts *o, ms_stw_plan *plan, synth_build *b, ms_err *err)
{
    memset(b, 0, sizeof *b);
    b->o = o;
    b->plan = plan;
    b->err = err;
    const ms_synth_arch *a = &o->arch;
    ms_stw_plan_init(plan, o->shard_bytes);
    plan->sort_header_keys = o->format == MS_SYNTH_MLX; /* mx.save_safetensors' JSON object is sorted */
    int rc = ms_stw_plan_meta(plan, "format", o->format == MS_SYNTH_MLX ? "mlx" : "pt", err);
    const int64_t D = a->hidden_size;
    if (rc == 0 && synth_is_step(a)) {
        rc = synth_step_inventory(b);
    } else if (rc == 0 && synth_is_dsv4(a)) {
        rc = synth_dsv4_inventory(b);
    } else if (rc == 0) {
        rc = synth_add_module(b, "model.embed_tokens", "weight", ROLE_EMBED, -1, false, 2, SHAPE2(a->vocab_size, D),
                              0, 1.0f);
        for (int l = 0; rc == 0 && l < a->n_layers + a->n_mtp; l++) rc = add_layer(b, l);
        if (rc == 0) rc = add_norm(b, "model.norm", D);
        if (rc == 0)
            rc = synth_add_module(b, "lm_head", "weight", ROLE_LM_HEAD, -1, false, 2, SHAPE2(a->vocab_size, D), 0,
                                  (float)(1.0 / sqrt((double)D)));
    }
    if (rc == 0) rc = ms_stw_plan_finish(plan, err);
    if (rc < 0) {
        synth_build_free(b);
        ms_stw_plan_free(plan);
    }
    return rc;
}

int ms_synth_plan(const ms_synth_opts *o, ms_stw_plan *plan, ms_synth_result *res, ms_err *err)
{
    int rc = ms_synth_validate(o, err);
    if (rc < 0) return rc;
    synth_build b;
    rc = build_inventory(o, plan, &b, err);
    if (rc < 0) return rc;
    if (res) {
        memset(res, 0, sizeof *res);
        res->n_tensors = plan->n_tensors;
        res->n_shards = plan->n_shards;
        res->tensor_bytes = plan->total_bytes;
        res->file_bytes = ms_stw_plan_file_bytes(plan);
        res->n_params = b.n_params;
    }
    synth_build_free(&b);
    return 0;
}

/* ---- data generation ---- */

typedef struct fill_ctx {
    const ms_synth_opts *o;
    const ms_stw_plan *plan;
    const sgen *gens;
    int cur;              /* tensor being generated */
    uint64_t next_off;    /* expected next offset in it */
    ms_rng rng;
    void *whole;          /* a tensor generated whole at offset 0 (router bias, tid2eid) */
} fill_ctx;

/* Store v as dtype dt at dst[i]; return the value actually stored. */
static inline float store_dt(ms_dtype dt, void *dst, size_t i, float v)
{
    switch (dt) {
    case MS_DT_BF16: {
        uint16_t h = ms_f32_to_bf16(v);
        ((uint16_t *)dst)[i] = h;
        return ms_bf16_to_f32(h);
    }
    case MS_DT_F16: {
        uint16_t h = ms_f32_to_f16(v);
        ((uint16_t *)dst)[i] = h;
        return ms_f16_to_f32(h);
    }
    default: ((float *)dst)[i] = v; return v;
    }
}

/* n values mean + std * N(0,1) (two per PRNG draw) stored as dt; the dtype
 * switch is hoisted out of the loops. */
static void gen_normals(ms_rng *r, ms_dtype dt, float mean, float std, void *dst, size_t n)
{
    float z[2];
    size_t i = 0;
    switch (dt) {
    case MS_DT_BF16:
        for (; i + 1 < n; i += 2) {
            ms_rng_gauss_fast2(r, z);
            ((uint16_t *)dst)[i] = ms_f32_to_bf16(mean + std * z[0]);
            ((uint16_t *)dst)[i + 1] = ms_f32_to_bf16(mean + std * z[1]);
        }
        break;
    case MS_DT_F16:
        for (; i + 1 < n; i += 2) {
            ms_rng_gauss_fast2(r, z);
            ((uint16_t *)dst)[i] = ms_f32_to_f16(mean + std * z[0]);
            ((uint16_t *)dst)[i + 1] = ms_f32_to_f16(mean + std * z[1]);
        }
        break;
    default:
        for (; i + 1 < n; i += 2) {
            ms_rng_gauss_fast2(r, z);
            ((float *)dst)[i] = mean + std * z[0];
            ((float *)dst)[i + 1] = mean + std * z[1];
        }
        break;
    }
    if (i < n) { /* odd count: only at the end of a tensor */
        ms_rng_gauss_fast2(r, z);
        store_dt(dt, dst, i, mean + std * z[0]);
    }
}

/* Per-group scale: random sign, magnitude base * U(0.75, 1.25). */
static inline float draw_scale(ms_rng *r, float base)
{
    uint64_t v = ms_rng_u64(r);
    float u = (float)((v >> 20) & 0xffffffu) * 0x1.0p-24f;
    float s = base * (0.75f + 0.5f * u);
    return (v >> 63) ? -s : s;
}

static int router_bias(const fill_ctx *c, const sgen *g, float *out, int E, ms_err *err)
{
    ms_rng r;
    ms_rng_seed(&r, c->o->seed, g->stream);
    int *rank = malloc((size_t)E * sizeof *rank);
    if (!rank) return ms_errf(err, ENOMEM, "out of memory");
    for (int e = 0; e < E; e++) rank[e] = e;
    for (int e = E - 1; e > 0; e--) { /* Fisher-Yates */
        int j = (int)ms_rng_below(&r, (uint64_t)e + 1);
        int t = rank[e];
        rank[e] = rank[j];
        rank[j] = t;
    }
    double skew = c->o->route_skew * (0.75 + 0.5 * ms_rng_uniform(&r));
    for (int e = 0; e < E; e++)
        out[e] = (float)(-skew * 0.25 * log1p(15.0 * rank[e] / E) / log(16.0));
    free(rank);
    return 0;
}

static int gen_fill(void *vctx, int tensor, uint64_t offset, void *dst, size_t len, ms_err *err)
{
    fill_ctx *c = vctx;
    const sgen *g = &c->gens[tensor];
    const ms_stw_tensor *t = &c->plan->tensors[tensor];
    if (offset == 0) {
        c->cur = tensor;
        ms_rng_seed(&c->rng, c->o->seed, g->stream);
        if (g->kind == GEN_RBIAS || g->kind == GEN_TID2EID) {
            free(c->whole);
            c->whole = malloc(g->kind == GEN_RBIAS ? (size_t)t->shape[0] * sizeof(float) + 1 : t->nbytes + 1);
            if (!c->whole) return ms_errf(err, ENOMEM, "out of memory");
            int rc = g->kind == GEN_RBIAS ? router_bias(c, g, c->whole, (int)t->shape[0], err)
                                          : synth_tid2eid(&c->rng, t->shape[0], t->shape[1], g->arg, c->whole, err);
            if (rc < 0) return rc;
        }
    } else if (tensor != c->cur || offset != c->next_off) {
        return ms_errf(err, EINVAL, "generator called out of order (offset %" PRIu64 ")", offset);
    }
    c->next_off = offset + len;
    uint8_t *out = dst;
    uint64_t blk[512]; /* 4 KiB, aligned staging for typed stores */
    switch (g->kind) {
    case GEN_QWEIGHT: /* uniform random codes: every bits-wide field of a random word is uniform */
        while (len > 0) {
            size_t n = len < sizeof blk ? len : sizeof blk;
            for (size_t i = 0; i < (n + 7) / 8; i++) blk[i] = ms_rng_u64(&c->rng);
            memcpy(out, blk, n);
            out += n;
            len -= n;
        }
        return 0;
    case GEN_RBIAS: /* f32 or bf16 */
        if (g->dtype == MS_DT_BF16)
            for (size_t i = 0; i < len / 2; i++) ((uint16_t *)dst)[i] = ms_f32_to_bf16(((const float *)c->whole)[offset / 2 + i]);
        else
            memcpy(out, (const uint8_t *)c->whole + offset, len);
        return 0;
    case GEN_TID2EID: /* int64 */
        memcpy(out, (const uint8_t *)c->whole + offset, len);
        return 0;
    default: break;
    }
    const size_t es = ms_dtype_size(g->dtype);
    const size_t per_blk = sizeof blk / es;
    size_t count = len / es;
    float base = 0, half = 0;
    if (g->kind == GEN_QSCALES || g->kind == GEN_QBIASES) {
        double levels = (double)((1u << g->bits) - 1);
        base = (float)(g->std / sqrt((levels + 2) * levels / 12.0)); /* std of U{0..n} is sqrt(((n+1)^2-1)/12) */
        half = (float)(levels / 2);
    }
    while (count > 0) {
        size_t n = count < per_blk ? count : per_blk;
        switch (g->kind) {
        case GEN_FLOAT: /* pairs of normals per draw; chunks hold whole pairs except at a tensor's end */
            gen_normals(&c->rng, g->dtype, g->mean, g->std, blk, n);
            break;
        case GEN_QSCALES:
            for (size_t i = 0; i < n; i++) store_dt(g->dtype, blk, i, draw_scale(&c->rng, base));
            break;
        case GEN_QBIASES:
            for (size_t i = 0; i < n; i++) {
                float s = store_dt(g->dtype, blk, i, draw_scale(&c->rng, base)); /* the scale as stored */
                store_dt(g->dtype, blk, i, -s * half);
            }
            break;
        default: return ms_errf(err, EINVAL, "bad generator kind %d", g->kind);
        }
        memcpy(out, blk, n * es);
        out += n * es;
        count -= n;
    }
    return 0;
}

/* ---- config.json ---- */

static struct json_object *qparams_obj(int gs, int bits)
{
    struct json_object *q = json_object_new_object();
    json_object_object_add(q, "group_size", json_object_new_int(gs));
    json_object_object_add(q, "bits", json_object_new_int(bits));
    json_object_object_add(q, "mode", json_object_new_string("affine"));
    return q;
}

json_object *synth_quant_block(const ms_synth_opts *o, const synth_build *b)
{
    /* mlx_lm quantize_model: defaults, then one dict per module the recipe or
     * the model's predicate decided (none for a uniform run) */
    struct json_object *q = qparams_obj(o->group_size, synth_recipe_default_bits(o));
    for (int i = 0; i < b->n_ov; i++) {
        json_object *e = qparams_obj(b->ov[i].group, b->ov[i].bits);
        if (b->ov[i].predicate) json_object_object_del(e, "mode");
        json_object_object_add(q, b->ov[i].path, e);
    }
    return q;
}

/* config.json of the deepseek_v3 family. */
static json_object *ds3_config(const ms_synth_opts *o, const synth_build *b)
{
    const ms_synth_arch *a = &o->arch;
    struct json_object *c = json_object_new_object();
    if (!c) return NULL;
#define ADD(k, v) json_object_object_add(c, k, v)
#define I(x) json_object_new_int(x)
#define F(x) json_object_new_double(x)
#define B(x) json_object_new_boolean(x)
#define S(x) json_object_new_string(x)
    struct json_object *arr = json_object_new_array();
    json_object_array_add(arr, S(a->architecture));
    ADD("architectures", arr);
    ADD("attention_bias", B(0));
    ADD("attention_dropout", F(0.0));
    ADD("bos_token_id", I(a->bos_token_id));
    ADD("eos_token_id", I(a->eos_token_id));
    ADD("first_k_dense_replace", I(a->first_k_dense_replace));
    ADD("hidden_act", S("silu"));
    ADD("hidden_size", I(a->hidden_size));
    ADD("initializer_range", F(0.02));
    ADD("intermediate_size", I(a->intermediate_size));
    ADD("kv_lora_rank", I(a->kv_lora_rank));
    ADD("max_position_embeddings", I(a->max_position_embeddings));
    ADD("model_type", S(a->model_type));
    ADD("moe_intermediate_size", I(a->moe_intermediate_size));
    ADD("moe_layer_freq", I(a->moe_layer_freq));
    ADD("n_group", I(a->n_group));
    ADD("n_routed_experts", I(a->n_routed_experts));
    ADD("n_shared_experts", I(a->n_shared_experts));
    ADD("norm_topk_prob", B(a->norm_topk_prob));
    ADD("num_attention_heads", I(a->n_heads));
    ADD("num_experts_per_tok", I(a->n_experts_per_tok));
    ADD("num_hidden_layers", I(a->n_layers));
    ADD("num_key_value_heads", I(a->n_heads));
    ADD("num_nextn_predict_layers", I(a->n_mtp));
    if (!strcmp(a->model_type, "glm4_moe_lite")) ADD("partial_rotary_factor", F(1.0));
    ADD("q_lora_rank", a->q_lora_rank > 0 ? I(a->q_lora_rank) : NULL);
    ADD("qk_nope_head_dim", I(a->qk_nope_head_dim));
    ADD("qk_rope_head_dim", I(a->qk_rope_head_dim));
    ADD("rms_norm_eps", F(a->rms_norm_eps));
    if (a->yarn) {
        struct json_object *r = json_object_new_object();
        json_object_object_add(r, "beta_fast", I((int)a->yarn_beta_fast));
        json_object_object_add(r, "beta_slow", I((int)a->yarn_beta_slow));
        json_object_object_add(r, "factor", F(a->yarn_factor));
        json_object_object_add(r, "mscale", F(a->yarn_mscale));
        json_object_object_add(r, "mscale_all_dim", F(a->yarn_mscale_all_dim));
        json_object_object_add(r, "original_max_position_embeddings", I(a->yarn_original_max_pos));
        json_object_object_add(r, "type", S("yarn"));
        ADD("rope_scaling", r);
    } else {
        ADD("rope_scaling", NULL);
    }
    ADD("rope_theta", F(a->rope_theta));
    ADD("routed_scaling_factor", F(a->routed_scaling_factor));
    ADD("scoring_func", S("sigmoid"));
    ADD("tie_word_embeddings", B(0));
    ADD("topk_group", I(a->topk_group));
    ADD("topk_method", S("noaux_tc"));
    ADD("torch_dtype", S(o->dtype == MS_DT_BF16 ? "bfloat16" : o->dtype == MS_DT_F16 ? "float16" : "float32"));
    ADD("use_cache", B(1));
    ADD("v_head_dim", I(a->v_head_dim));
    ADD("vocab_size", I(a->vocab_size));
    if (o->format == MS_SYNTH_MLX) { /* the same dict twice, as mlx_lm writes it */
        ADD("quantization", synth_quant_block(o, b));
        ADD("quantization_config", synth_quant_block(o, b));
    }
#undef ADD
#undef I
#undef F
#undef B
#undef S
    return c;
}

static int config_json(const ms_synth_opts *o, const synth_build *b, char **out, ms_err *err)
{
    json_object *c = synth_is_step(&o->arch)   ? synth_step_config(o, b)
                     : synth_is_dsv4(&o->arch) ? synth_dsv4_config(o, b)
                                               : ds3_config(o, b);
    if (!c) return ms_errf(err, ENOMEM, "out of memory");
    ms_strbuf jb = {0};
    bool mlx = o->format == MS_SYNTH_MLX;
    /* mlx_lm save_config sorts the top level only (indent 4, no newline);
     * transformers sorts every level (indent 2, trailing newline). */
    ms_json_dump_py(&jb, c, mlx ? 4 : 2, mlx ? 1 : 1000);
    if (!mlx) ms_sb_putn(&jb, "\n", 1);
    json_object_put(c);
    if (jb.oom) {
        free(jb.s);
        return ms_errf(err, ENOMEM, "out of memory rendering config.json");
    }
    *out = jb.s;
    return 0;
}

int ms_synth_config_json(const ms_synth_opts *o, char **out, ms_err *err)
{
    int rc = ms_synth_validate(o, err);
    if (rc < 0) return rc;
    ms_stw_plan plan;
    synth_build b;
    rc = build_inventory(o, &plan, &b, err);
    if (rc < 0) return rc;
    rc = config_json(o, &b, out, err);
    synth_build_free(&b);
    ms_stw_plan_free(&plan);
    return rc;
}

/* ---- directory ---- */

static int mkdir_p(const char *dir, ms_err *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return ms_errf(err, ENAMETOOLONG, "%s: path too long", dir);
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(path, 0755) < 0 && errno != EEXIST) {
                int e = errno;
                return ms_errf(err, e, "%s: cannot create directory: %s", path, strerror(e));
            }
            *p = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) return ms_errf(err, ENOTDIR, "%s: not a directory", dir);
    return 0;
}

/* A checkpoint file name a loader would pick up (stale shards must go). */
static bool is_checkpoint_file(const char *n)
{
    if (!strcmp(n, "model.safetensors") || !strcmp(n, "model.safetensors.index.json")) return true;
    unsigned a, b;
    int end = 0;
    return sscanf(n, "model-%5u-of-%5u.safetensors%n", &a, &b, &end) == 2 && n[end] == 0;
}

static int remove_old_checkpoint(const char *dir, ms_err *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        return ms_errf(err, e, "%s: cannot list: %s", dir, strerror(e));
    }
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (!is_checkpoint_file(de->d_name)) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (unlink(path) < 0 && errno != ENOENT) {
            int e = errno;
            rc = ms_errf(err, e, "%s: cannot remove: %s", path, strerror(e));
            break;
        }
    }
    closedir(d);
    return rc;
}

static void remove_shards(const char *dir, const ms_stw_plan *plan)
{
    for (int s = 0; s < plan->n_shards; s++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, plan->shards[s].name);
        unlink(path);
    }
}

int ms_synth_write(const char *dir, const ms_synth_opts *o, ms_synth_result *res, ms_err *err)
{
    double t0 = ms_now_s();
    int rc = ms_synth_validate(o, err);
    if (rc < 0) return rc;
    if (!dir || !*dir) return ms_errf(err, EINVAL, "--out: empty directory name");
    rc = mkdir_p(dir, err);
    if (rc < 0) return rc;
    ms_stw_plan plan;
    synth_build b;
    rc = build_inventory(o, &plan, &b, err);
    if (rc < 0) return rc;

    char *config = NULL;
    rc = config_json(o, &b, &config, err);
    if (rc == 0) rc = remove_old_checkpoint(dir, err);
    if (rc == 0) {
        /* DeepSeek-V4 ships no chat template (a Python encoder): run/chat use chat_dsv4.c */
        rc = ms_synth_tokenizer_write(dir, o->arch.vocab_size, o->seed, strcmp(o->arch.model_type, "deepseek_v4") != 0,
                                      err);
        if (rc < 0) ms_err_prefix(err, "tokenizer: ");
    }
    if (rc == 0) {
        ms_stw_writer_opts wo = {
            .fsync = o->fsync,
            .drop_cache = o->drop_cache > 0 || (o->drop_cache < 0 && plan.total_bytes > (1ull << 30)),
            .progress = o->progress,
            .progress_ctx = o->progress_ctx,
        };
        fill_ctx fc = {.o = o, .plan = &plan, .gens = b.gens, .cur = -1};
        rc = ms_stw_write_all(&plan, dir, &wo, gen_fill, &fc, err);
        free(fc.whole);
        if (rc == 0 && (o->format == MS_SYNTH_MLX || plan.n_shards > 1)) {
            /* mlx_lm always writes the index (with total_parameters; mlx-vlm, for the
             * step3p7 wrapper, without); transformers only when sharded */
            bool mlx = o->format == MS_SYNTH_MLX;
            ms_stw_index_opts io = {.indent = mlx ? 4 : 2,
                                    .total_parameters = mlx && !synth_is_step(&o->arch) ? b.n_params : 0};
            rc = ms_stw_write_index(&plan, dir, &io, err);
            if (rc < 0) remove_shards(dir, &plan);
        }
    }
    if (rc == 0) {
        rc = ms_stw_write_text(dir, "config.json", config, err);
        if (rc < 0) {
            remove_shards(dir, &plan);
            char path[4200];
            snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
            unlink(path);
        }
    }
    if (rc == 0 && res) {
        memset(res, 0, sizeof *res);
        res->n_tensors = plan.n_tensors;
        res->n_shards = plan.n_shards;
        res->tensor_bytes = plan.total_bytes;
        res->file_bytes = ms_stw_plan_file_bytes(&plan);
        res->n_params = b.n_params;
        res->seconds = ms_now_s() - t0;
    }
    free(config);
    synth_build_free(&b);
    ms_stw_plan_free(&plan);
    return rc;
}

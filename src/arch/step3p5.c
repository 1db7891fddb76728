/* step3p5.c - the Step-3.5/3.7-Flash family: mlx-lm `step3p5` (text only,
 * `model.*`), mlx-vlm's `step3p7` wrapper (the same decoder in `text_config`,
 * weights under `language_model.`, vision tensors ignored) and the original HF
 * checkpoints (`.moe.*` / `.share_expert.` names, zero-centered norms: +1 on
 * load). Spec: ../shared/spec/other-archs.md section B and its errata A/B
 * (the errata win); docs/VERIFICATION.md lists what was checked. All
 * activations in f32.
 *
 *   h = embed[token]
 *   for each layer l (type full or sliding, its own heads, RoPE and clamps):
 *       x = rmsnorm(h)                                 input_layernorm
 *       h += attention_l(x)                            GQA, see below
 *       x = rmsnorm(h)                                 post_attention_layernorm
 *       h += l in moe_layers_enum ? MoE(x) : mlp(x)    moe.c: shared + sum_j w_j expert_j(x)
 *   logits = lm_head(rmsnorm(h))
 *
 * Attention at layer l (Hq query heads, Hkv KV heads, head_dim hd):
 *   q = q_norm(q_proj x), k = k_norm(k_proj x)   per head   [Hq, hd], [Hkv, hd]
 *   v = v_proj x                                            [Hkv, hd]
 *   RoPE half-split on the first rd = int(hd * partial_rotary_factors[l])
 *   dims, base rope_theta[l], rope_scaling only on yarn_only_types
 *   o_h = softmax(q_h . k_j / sqrt(hd)) v_j  over j <= i (full) or
 *         i - window < j <= i (sliding); query head h reads KV head h / (Hq/Hkv)
 *   o_h *= sigmoid(g_proj x)_h                 (use_head_wise_attn_gate)
 *   out = o_proj(concat o)
 * KV cache: a full layer keeps ctx positions, a sliding layer a ring of
 * min(window, ctx) positions (slot = position mod ring). A chunk attends to
 * its own keys from scratch and to earlier ones from the cache, and writes its
 * last keys to the cache afterwards, so any chunking of a prompt sees exactly
 * the keys token-by-token decode sees.
 *
 * FFN: SwiGLU clamped as min(silu(g), L) * clip(u, -L, L) when L > 0
 * (swiglu_limits for routed experts, swiglu_limits_shared for the shared
 * expert and dense MLPs). Router (this family's ms_moe_router): sigmoid of
 * mlp.gate.gate x, top-k by score + router_bias, weights score / (sum + 1e-20)
 * (norm_expert_weight) x moe_router_scaling_factor.
 *
 * Defaults for missing keys follow the loader that wrote the checkpoint:
 * mlx-lm for plain step3p5, mlx-vlm for a step3p7 wrapper (errata 5).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "util.h"

/* ---- config ---------------------------------------------------------------- */

typedef struct step_layer_cfg {
    bool sliding;            /* sliding_attention (else full_attention) */
    int n_heads, n_kv;       /* query / KV heads */
    int rope_dims;           /* rotated dims of each head (even, <= head_dim) */
    double theta;            /* rope_theta of the layer */
    bool scaled;             /* rope_scaling applies (type in yarn_only_types) */
    float limit_routed;      /* swiglu_limits (<= 0: none) */
    float limit_shared;      /* swiglu_limits_shared: shared expert / dense MLP */
} step_layer_cfg;

typedef struct step_config {
    bool vlm;                /* step3p7 wrapper: mlx-vlm defaults */
    int head_dim;
    int window;              /* sliding_window; 0 = none (sliding layers see everything) */
    bool head_gate;          /* use_head_wise_attn_gate */
    bool norm_expert_weight;
    double scaling;          /* moe_router_scaling_factor */
    int share_dim;           /* share_expert_dim */
    int max_heads, max_kv;   /* over all layers (scratch sizes) */
    ms_rope_cfg rope;        /* rope_scaling */
    int n_cfg;               /* layers with a config: n_layers + the MTP layers the per-layer lists cover */
    const char *short_list;  /* the list that stopped n_cfg short of num_nextn_predict_layers (or NULL) */
    step_layer_cfg layer[];  /* [n_layers + num_nextn_predict_layers] (MTP layers: entry N + k) */
} step_config;

/* A per-layer list: absent, null or [] -> *out = NULL (the key's default);
 * else a list with at least N entries (later ones belong to MTP layers). */
static int layer_list(const ms_jctx *jc, json_object *o, const char *key, int N, json_object **out)
{
    json_object *v = ms_json_get(o, key);
    *out = NULL;
    if (ms_json_null(v)) return 0;
    if (!json_object_is_type(v, json_type_array))
        return ms_errf(jc->err, EINVAL, "%s: field \"%s\" must be a list", jc->what, key);
    size_t n = json_object_array_length(v);
    if (n == 0) return 0;
    if (n < (size_t)N)
        return ms_errf(jc->err, EINVAL, "%s: field \"%s\" has %zu entries but num_hidden_layers is %d", jc->what,
                       key, n, N);
    *out = v;
    return 0;
}

/* The layers a per-layer list (NULL = absent) gives a config for: every main
 * layer and the MTP layers its entries cover (entry N + k = MTP layer k, as
 * vLLM and SGLang index them); lowers d->n_cfg to that. */
static int list_cover(step_config *d, json_object *list, const char *key)
{
    if (list && (int)json_object_array_length(list) < d->n_cfg) {
        d->n_cfg = (int)json_object_array_length(list);
        d->short_list = key;
    }
    return d->n_cfg;
}

/* Entry i of a list of numbers; null -> def when nullable. */
static int list_num(const ms_jctx *jc, json_object *list, const char *key, int i, bool nullable, double def,
                    double lo, double hi, double *out)
{
    json_object *v = json_object_array_get_idx(list, (size_t)i);
    if (ms_json_null(v) && nullable) {
        *out = def;
        return 0;
    }
    if (!v || (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)))
        return ms_errf(jc->err, EINVAL, "%s: %s[%d] must be a number%s", jc->what, key, i, nullable ? " or null" : "");
    double d = json_object_get_double(v);
    if (!isfinite(d) || d < lo || d > hi)
        return ms_errf(jc->err, ERANGE, "%s: %s[%d] = %g is out of range [%g, %g]", jc->what, key, i, d, lo, hi);
    *out = d;
    return 0;
}

/* moe_layers_enum: "3,4,5" (mlx-lm) or [3, 4, 5] (mlx-vlm); entries >= N + M
 * (mlx-vlm's default 3..44 on a shorter model) do not apply; an entry N + k
 * makes MTP layer k a MoE layer (vLLM's rule; the release lists none: its MTP
 * blocks are dense). Without the key no MTP layer is MoE. */
static int parse_moe_layers(const ms_jctx *jc, json_object *o, bool vlm, ms_config *cfg)
{
    int N = cfg->n_layers + cfg->num_nextn_predict_layers;
    json_object *v = ms_json_get(o, "moe_layers_enum");
    memset(cfg->moe_layer, 0, sizeof cfg->moe_layer);
    bool empty_str = !ms_json_null(v) && json_object_is_type(v, json_type_string) && !json_object_get_string_len(v);
    if (ms_json_null(v) || (empty_str && !vlm)) { /* mlx-lm: layers 1..N-1, mlx-vlm: 3..44 */
        for (int l = vlm ? 3 : 1; l < cfg->n_layers && l < (vlm ? 45 : N); l++) cfg->moe_layer[l] = 1;
        return 0;
    }
    if (json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            int64_t x;
            if (!ms_json_i64(json_object_array_get_idx(v, i), &x) || x < 0)
                return ms_errf(jc->err, EINVAL, "%s: moe_layers_enum[%zu] must be a layer index", jc->what, i);
            if (x < N) cfg->moe_layer[x] = 1;
        }
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return ms_errf(jc->err, EINVAL, "%s: field \"moe_layers_enum\" must be a string like \"3,4,5\" or a list",
                       jc->what);
    const char *s = json_object_get_string(v);
    while (*s) {
        while (*s == ' ' || *s == ',') s++;
        if (!*s) break;
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < 0 || x > 1000000)
            return ms_errf(jc->err, EINVAL, "%s: moe_layers_enum \"%s\": \"%.16s\" is not a layer index", jc->what,
                           json_object_get_string(v), s);
        if (x < N) cfg->moe_layer[x] = 1;
        s = end;
        while (*s == ' ') s++;
        if (*s && *s != ',')
            return ms_errf(jc->err, EINVAL, "%s: moe_layers_enum \"%s\": expected a comma after %ld", jc->what,
                           json_object_get_string(v), x);
    }
    return 0;
}

/* layer_types, attention_other_setting: the type and head counts of every layer. */
static int parse_attention(const ms_jctx *jc, json_object *o, ms_config *cfg, step_config *d)
{
    int N = cfg->n_layers, rc;
    int heads, kv, sw_heads, sw_kv;
    if ((rc = ms_json_int32(jc, o, "head_dim", !d->vlm, 128, 2, 1 << 16, &d->head_dim)) < 0) return rc;
    if ((rc = ms_json_int32(jc, o, "num_attention_heads", !d->vlm, 64, 1, 4096, &heads)) < 0) return rc;
    if ((rc = ms_json_int32(jc, o, "num_attention_groups", !d->vlm, 8, 1, 4096, &kv)) < 0) return rc;
    sw_heads = heads;
    sw_kv = kv;
    json_object *other = ms_json_get(o, "attention_other_setting");
    if (!ms_json_null(other)) {
        if (!json_object_is_type(other, json_type_object))
            return ms_errf(jc->err, EINVAL, "%s: field \"attention_other_setting\" must be an object", jc->what);
        if (json_object_object_length(other) > 0) { /* its head_dim is ignored (errata 4) */
            char what[4200];
            snprintf(what, sizeof what, "%s: attention_other_setting", jc->what);
            ms_jctx sub = {what, jc->err};
            if ((rc = ms_json_int32(&sub, other, "num_attention_heads", true, 0, 1, 4096, &sw_heads)) < 0) return rc;
            if ((rc = ms_json_int32(&sub, other, "num_attention_groups", true, 0, 1, 4096, &sw_kv)) < 0) return rc;
        }
    }
    json_object *types;
    if ((rc = layer_list(jc, o, "layer_types", N, &types)) < 0) return rc;
    int NL = list_cover(d, types, "layer_types");
    for (int l = 0; l < NL; l++) {
        step_layer_cfg *y = &d->layer[l];
        if (types) {
            json_object *t = json_object_array_get_idx(types, (size_t)l);
            const char *s = json_object_is_type(t, json_type_string) ? json_object_get_string(t) : "";
            if (strcmp(s, "full_attention") && strcmp(s, "sliding_attention"))
                return ms_errf(jc->err, EINVAL, "%s: layer_types[%d] must be \"full_attention\" or "
                               "\"sliding_attention\"", jc->what, l);
            y->sliding = !strcmp(s, "sliding_attention");
        } else {
            y->sliding = l % 2 == 0; /* every upstream without layer_types */
        }
        y->n_heads = y->sliding ? sw_heads : heads;
        y->n_kv = y->sliding ? sw_kv : kv;
        if (y->n_heads % y->n_kv)
            return ms_errf(jc->err, EINVAL, "%s: %s layers have %d query heads, not a multiple of %d KV heads "
                           "(num_attention_groups)", jc->what, y->sliding ? "sliding" : "full", y->n_heads, y->n_kv);
        d->max_heads = MS_MAX(d->max_heads, y->n_heads);
        d->max_kv = MS_MAX(d->max_kv, y->n_kv);
    }
    /* sliding_window: mlx-lm 512 when absent, no window when null; mlx-vlm has no default */
    bool any_sliding = false;
    for (int l = 0; l < N; l++) any_sliding |= d->layer[l].sliding;
    bool has_window = json_object_object_get_ex(o, "sliding_window", NULL); /* true for an explicit null too */
    if ((rc = ms_json_int32(jc, o, "sliding_window", false, d->vlm || has_window ? 0 : 512, 1, 1 << 30,
                            &d->window)) < 0)
        return rc;
    if (any_sliding && d->vlm && !d->window)
        return ms_errf(jc->err, EINVAL, "%s: missing field \"sliding_window\" (layer_types has sliding layers and "
                       "step3p7 has no default)", jc->what);
    return 0;
}

/* rope_theta, partial_rotary_factors, rope_scaling, yarn_only_types per layer. */
static int parse_rope(const ms_jctx *jc, json_object *o, ms_config *cfg, step_config *d)
{
    int N = cfg->n_layers, rc;
    json_object *thetas = NULL, *prf, *yot, *types = ms_json_get(o, "layer_types");
    double theta = 10000.0;
    json_object *tv = ms_json_get(o, "rope_theta");
    if (!ms_json_null(tv) && json_object_is_type(tv, json_type_array)) {
        if ((rc = layer_list(jc, o, "rope_theta", N, &thetas)) < 0) return rc;
    } else if ((rc = ms_json_num(jc, o, "rope_theta", false, 10000.0, 1e-3, 1e12, &theta)) < 0) {
        return rc;
    }
    if ((rc = layer_list(jc, o, "partial_rotary_factors", N, &prf)) < 0) return rc;
    /* rope_scaling only: no upstream reads rope_parameters (errata 7) */
    json_object *scal = json_object_new_object();
    if (!scal) return ms_errf(jc->err, ENOMEM, "out of memory");
    json_object *rs = ms_json_get(o, "rope_scaling");
    if (rs) json_object_object_add(scal, "rope_scaling", json_object_get(rs));
    rc = ms_config_parse_rope(jc, scal, false, cfg->max_position_embeddings, &d->rope);
    json_object_put(scal);
    if (rc < 0) return rc;
    if ((rc = layer_list(jc, o, "yarn_only_types", 1, &yot)) < 0) return rc;
    list_cover(d, thetas, "rope_theta");
    int NL = list_cover(d, prf, "partial_rotary_factors");
    for (int l = 0; l < NL; l++) {
        step_layer_cfg *y = &d->layer[l];
        y->theta = theta;
        if (thetas && (rc = list_num(jc, thetas, "rope_theta", l, false, 0, 1e-3, 1e12, &y->theta)) < 0) return rc;
        double f = 1.0;
        if (prf && (rc = list_num(jc, prf, "partial_rotary_factors", l, false, 1.0, 0, 1, &f)) < 0) return rc;
        y->rope_dims = (int)((double)d->head_dim * f); /* Python int(): toward zero */
        if (y->rope_dims < 2 || y->rope_dims % 2)
            return ms_errf(jc->err, EINVAL, "%s: partial_rotary_factors[%d] = %g rotates %d of %d dims (must be an "
                           "even number >= 2)", jc->what, l, f, y->rope_dims, d->head_dim);
        /* scaling applies to every layer unless yarn_only_types lists others;
         * without layer_types a layer's type is "full_attention" here */
        y->scaled = d->rope.type != MS_ROPE_DEFAULT;
        if (yot && y->scaled) {
            json_object *t = types && json_object_is_type(types, json_type_array) && json_object_array_length(types)
                                 ? json_object_array_get_idx(types, (size_t)l) : NULL;
            const char *type = t ? json_object_get_string(t) : "full_attention";
            y->scaled = false;
            for (size_t i = 0; i < json_object_array_length(yot); i++) {
                json_object *e = json_object_array_get_idx(yot, i);
                if (!json_object_is_type(e, json_type_string))
                    return ms_errf(jc->err, EINVAL, "%s: yarn_only_types[%zu] must be a string", jc->what, i);
                y->scaled |= !strcmp(json_object_get_string(e), type);
            }
        }
    }
    return 0;
}

/* swiglu_limits / swiglu_limits_shared: null or <= 0 = no clamp (errata 8). */
static int parse_clamps(const ms_jctx *jc, json_object *o, ms_config *cfg, step_config *d)
{
    int rc;
    json_object *lr, *ls;
    if ((rc = layer_list(jc, o, "swiglu_limits", cfg->n_layers, &lr)) < 0) return rc;
    if ((rc = layer_list(jc, o, "swiglu_limits_shared", cfg->n_layers, &ls)) < 0) return rc;
    list_cover(d, lr, "swiglu_limits");
    int NL = list_cover(d, ls, "swiglu_limits_shared");
    for (int l = 0; l < NL; l++) {
        double a = 0, b = 0;
        if (lr && (rc = list_num(jc, lr, "swiglu_limits", l, true, 0, -1e30, 1e30, &a)) < 0) return rc;
        if (ls && (rc = list_num(jc, ls, "swiglu_limits_shared", l, true, 0, -1e30, 1e30, &b)) < 0) return rc;
        d->layer[l].limit_routed = a > 0 ? (float)a : 0.0f;
        d->layer[l].limit_shared = b > 0 ? (float)b : 0.0f;
    }
    return 0;
}

/* The family's keys of config.json; common fields are parsed already. */
static int step_parse_config(const ms_jctx *jc, json_object *o, json_object *root, ms_config *cfg)
{
    (void)root;
    ms_err *err = jc->err;
    const char *what = jc->what;
    int N = cfg->n_layers, rc;
    if (N + cfg->num_nextn_predict_layers > MS_MAX_LAYERS)
        return ms_errf(err, EINVAL, "%s: num_hidden_layers + num_nextn_predict_layers exceed %d", what, MS_MAX_LAYERS);
    step_config *d = calloc(1, sizeof *d + (size_t)(N + cfg->num_nextn_predict_layers) * sizeof d->layer[0]);
    if (!d) return ms_errf(err, ENOMEM, "out of memory");
    cfg->arch = d;
    d->n_cfg = N + cfg->num_nextn_predict_layers; /* lowered by lists that stop before the MTP entries */
    d->vlm = !strcmp(cfg->wrapper_type, "step3p7");
    /* both upstreams: rms_norm_eps 1e-5, max_position_embeddings 262144 */
    if ((rc = ms_json_num(jc, o, "rms_norm_eps", false, 1e-5, 0, 1, &cfg->rms_norm_eps)) < 0) return rc;
    if ((rc = ms_json_int(jc, o, "max_position_embeddings", false, 262144, 1, (int64_t)1 << 40,
                          &cfg->max_position_embeddings)) < 0)
        return rc;
    if ((rc = parse_attention(jc, o, cfg, d)) < 0) return rc;
    if ((rc = parse_rope(jc, o, cfg, d)) < 0) return rc;
    if ((rc = parse_clamps(jc, o, cfg, d)) < 0) return rc;
    if ((rc = ms_json_bool(jc, o, "use_head_wise_attn_gate", !d->vlm, &d->head_gate)) < 0) return rc;
    /* MoE */
    if ((rc = parse_moe_layers(jc, o, d->vlm, cfg)) < 0) return rc;
    bool any_moe = false, any_dense = false;
    for (int l = 0; l < N; l++) {
        any_moe |= cfg->moe_layer[l];
        any_dense |= !cfg->moe_layer[l];
    }
    if ((rc = ms_json_int32(jc, o, "intermediate_size", any_dense && !d->vlm, 11264, 1, 1 << 22,
                            &cfg->intermediate_size)) < 0)
        return rc;
    if ((rc = ms_json_int32(jc, o, "moe_num_experts", false, 288, 1, 1 << 16, &cfg->n_routed_experts)) < 0) return rc;
    if ((rc = ms_json_int32(jc, o, "moe_top_k", false, 8, 1, 1 << 16, &cfg->n_experts_per_tok)) < 0) return rc;
    if ((rc = ms_json_int32(jc, o, "moe_intermediate_size", false, 1280, 1, 1 << 22, &cfg->moe_intermediate_size)) <
        0)
        return rc;
    if ((rc = ms_json_int32(jc, o, "share_expert_dim", false, 1280, 1, 1 << 22, &d->share_dim)) < 0) return rc;
    if (d->vlm && (rc = ms_json_int32(jc, o, "share_expert_dims", false, d->share_dim, 1, 1 << 22, &d->share_dim)) < 0)
        return rc;
    if ((rc = ms_json_num(jc, o, "moe_router_scaling_factor", false, d->vlm ? 1.0 : 3.0, 0, 1e6, &d->scaling)) < 0)
        return rc;
    if ((rc = ms_json_bool(jc, o, "norm_expert_weight", true, &d->norm_expert_weight)) < 0) return rc;
    if (any_moe && cfg->n_experts_per_tok > cfg->n_routed_experts)
        return ms_errf(err, EINVAL, "%s: moe_top_k %d exceeds moe_num_experts %d", what, cfg->n_experts_per_tok,
                       cfg->n_routed_experts);
    cfg->n_shared_experts = any_moe ? 1 : 0;
    if (!any_moe) cfg->n_routed_experts = 0;
    /* use_moe_router_bias, moe_router_activation, need_fp32_gate, use_qk_norm and
     * zero_centered are read by neither MLX loader (errata 6): always sigmoid + bias */
    return 0;
}

/* "x (full) / y (sliding)" or one value when the layer types agree. */
static void describe_rope(const ms_config *c, const step_config *d, ms_strbuf *t)
{
    bool first_type = true;
    for (int s = 0; s < 2; s++) {
        int first = -1, n = 0;
        bool same = true;
        for (int l = 0; l < c->n_layers; l++) {
            const step_layer_cfg *y = &d->layer[l];
            if (y->sliding != (s == 1)) continue;
            n++;
            if (first < 0) first = l;
            const step_layer_cfg *f = &d->layer[first];
            same &= y->theta == f->theta && y->rope_dims == f->rope_dims && y->scaled == f->scaled;
        }
        if (!n) continue;
        const step_layer_cfg *f = &d->layer[first];
        ms_sb_printf(t, "%s%s: theta %g, %d of %d dims%s%s", first_type ? "" : "; ", s ? "sliding" : "full", f->theta,
                     f->rope_dims, d->head_dim, f->scaled ? (d->rope.type == MS_ROPE_LLAMA3 ? ", llama3" : ", scaled") : "",
                     same ? "" : " (varies by layer)");
        if (f->scaled) ms_sb_printf(t, " x%g over %lld", d->rope.factor, (long long)d->rope.orig_max_pos);
        first_type = false;
    }
}

static void step_describe(const ms_config *c, ms_strbuf *text, json_object *json)
{
    const step_config *d = c->arch;
    int nfull = 0, nslide = 0, fl = -1, sl = -1, nclamp = 0;
    for (int l = 0; l < c->n_layers; l++) {
        if (d->layer[l].sliding) {
            nslide++;
            if (sl < 0) sl = l;
        } else {
            nfull++;
            if (fl < 0) fl = l;
        }
        nclamp += d->layer[l].limit_routed > 0 || d->layer[l].limit_shared > 0;
    }
    ms_sb_printf(text, "widths       hidden %d, vocab %d, head_dim %d, dense MLP %d, shared expert %d\n",
                 c->hidden_size, c->vocab_size, d->head_dim, c->intermediate_size, d->share_dim);
    ms_sb_printf(text, "attention    GQA, q/k norms%s", d->head_gate ? ", head-wise gate" : "");
    if (nfull) ms_sb_printf(text, "; %d full (%d/%d heads)", nfull, d->layer[fl].n_heads, d->layer[fl].n_kv);
    if (nslide) {
        ms_sb_printf(text, "; %d sliding (%d/%d heads, ", nslide, d->layer[sl].n_heads, d->layer[sl].n_kv);
        if (d->window) ms_sb_printf(text, "window %d)", d->window);
        else ms_sb_printf(text, "no window)");
    }
    ms_sb_printf(text, "\nrope         half-split; ");
    describe_rope(c, d, text);
    ms_sb_printf(text, ", max positions %lld\n", (long long)c->max_position_embeddings);
    if (c->n_routed_experts)
        ms_sb_printf(text, "router       sigmoid + router bias, scaling %g%s\n", d->scaling,
                     d->norm_expert_weight ? ", normalized" : "");
    if (nclamp) {
        ms_sb_printf(text, "clamps       SwiGLU limits (routed/shared):");
        for (int l = 0; l < c->n_layers; l++)
            if (d->layer[l].limit_routed > 0 || d->layer[l].limit_shared > 0)
                ms_sb_printf(text, " %d: %g/%g", l, d->layer[l].limit_routed, d->layer[l].limit_shared);
        ms_sb_printf(text, "\n");
    }
    json_object_object_add(json, "head_dim", json_object_new_int(d->head_dim));
    json_object_object_add(json, "n_full_layers", json_object_new_int(nfull));
    json_object_object_add(json, "n_sliding_layers", json_object_new_int(nslide));
    if (nfull) {
        json_object_object_add(json, "n_heads", json_object_new_int(d->layer[fl].n_heads));
        json_object_object_add(json, "n_kv_heads", json_object_new_int(d->layer[fl].n_kv));
    }
    if (nslide) {
        json_object_object_add(json, "n_heads_sliding", json_object_new_int(d->layer[sl].n_heads));
        json_object_object_add(json, "n_kv_heads_sliding", json_object_new_int(d->layer[sl].n_kv));
    }
    json_object_object_add(json, "sliding_window", d->window ? json_object_new_int(d->window) : NULL);
    json_object_object_add(json, "head_gate", json_object_new_boolean(d->head_gate));
    json_object_object_add(json, "share_expert_dim", json_object_new_int(d->share_dim));
    json_object_object_add(json, "router_scaling", json_object_new_double(d->scaling));
}

/* ---- weights ------------------------------------------------------------ */

typedef struct step_layer {
    const step_layer_cfg *cfg;
    bool moe;
    const float *attn_norm, *ffn_norm;  /* [D] */
    ms_mat q, k, v, o;                  /* [Hq*hd, D], [Hkv*hd, D] x2, [D, Hq*hd] */
    ms_mat g;                           /* [Hq, D] head-wise gate (head_gate) */
    const float *q_norm, *k_norm;       /* [hd] */
    const double *inv_freq;             /* [rope_dims/2] */
    float rope_mscale;                  /* YaRN magnitude on cos/sin (1 otherwise) */
    ms_mat gate, up, down;              /* dense MLP [I, D], [I, D], [D, I] */
    ms_act act;                         /* dense MLP activation (shared clamp) */
    ms_mat router;                      /* [E, D] */
    const float *router_bias;           /* [E] (NULL = zeros) */
    ms_mat sh_gate, sh_up, sh_down;     /* [S, D], [S, D], [D, S] */
    ms_moe_block blk;                   /* experts + shared expert, for moe.c */
} step_layer;

typedef struct step_weights {
    const ms_model *m;
    const ms_config *c;
    const step_config *d;
    int D, hd, E, K;
    float scale;              /* head_dim^-0.5 */
    bool zero_centered;       /* original HF names: norms stored as w, used as 1 + w */
    ms_mat embed, lm_head;    /* [vocab, D] */
    const float *final_norm;  /* [D] */
    step_layer *layers;       /* [n_layers + n_mtp]: the MTP layers' decoder blocks after the main ones */
    int n_mtp;                /* MTP layers bound (cfg->mtp_layers) */
    struct step_mtp {
        const float *enorm, *hnorm; /* [D] norms of the embedding / hidden half */
        ms_mat eh_proj;             /* [D, 2D]: columns 0..D-1 take enorm(e), D..2D-1 hnorm(h) */
        const float *head_norm;     /* [D] (transformer.)shared_head.norm */
        ms_mat head;                /* [vocab, D] the layer's own shared_head.output / .head (else lm_head) */
    } *mtp;                   /* [n_mtp] */
    float *vecs;              /* f32 copies of norms and router biases */
    double *inv;              /* [n_layers + n_mtp][hd/2] RoPE inverse frequencies */
} step_weights;

/* Original HF checkpoints name the MoE block `moe` and the shared expert
 * `share_expert` beside `mlp`; mlx-lm / mlx-vlm sanitize renames them and adds
 * 1 to every norm weight of such a "vanilla" checkpoint (errata 10). */
static bool hf_vanilla(const ms_model *m)
{
    static const char *const pat[][2] = {
        {".moe.gate_proj.", ".mlp.switch_mlp.gate_proj."}, {".moe.up_proj.", ".mlp.switch_mlp.up_proj."},
        {".moe.down_proj.", ".mlp.switch_mlp.down_proj."}, {".moe.gate.", ".mlp.gate.gate."},
        {".moe.router_bias", ".mlp.gate.router_bias"},     {".share_expert.", ".mlp.share_expert."},
    };
    for (int i = 0; i < m->tt.n_tensors; i++)
        for (size_t p = 0; p < MS_ARRAY_LEN(pat); p++)
            if (strstr(m->tt.tensors[i].name, pat[p][0]) && !strstr(m->tt.tensors[i].name, pat[p][1])) return true;
    return false;
}

/* A norm weight: f32 copy, +1 for zero-centered (HF) checkpoints. */
static int bind_norm(const step_weights *w, const ms_resident *r, const char *name, int64_t n, float **cursor,
                     const float **out, ms_err *err)
{
    float *dst = *cursor;
    int rc = ms_arch_bind_vec(w->m, r, name, n, cursor, out, err);
    if (rc == 0 && w->zero_centered)
        for (int64_t i = 0; i < n; i++) dst[i] += 1.0f;
    return rc;
}

/* The MLX name of a module, else the original HF one (`alt`). */
static const char *pick(const ms_model *m, const char *mlx, const char *alt, const char *suffix)
{
    return ms_model_find(m, "%s%s", mlx, suffix) || !ms_model_find(m, "%s%s", alt, suffix) ? mlx : alt;
}

static void step_unbind(void *wp)
{
    step_weights *w = wp;
    if (!w) return;
    free(w->layers);
    free(w->mtp);
    free(w->vecs);
    free(w->inv);
    free(w);
}

/* Layer l's attention weights. */
static int bind_attention(step_weights *w, const ms_resident *r, int l, float **vc, ms_err *err)
{
    const ms_model *m = w->m;
    step_layer *ly = &w->layers[l];
    const step_layer_cfg *y = ly->cfg;
    int64_t D = w->D, hd = w->hd, qr = (int64_t)y->n_heads * hd, kr = (int64_t)y->n_kv * hd;
    char name[192];
    int rc;
#define NAME(fmt) (snprintf(name, sizeof name, "model.layers.%d." fmt, l), name)
    if ((rc = ms_arch_bind_mat(m, r, NAME("self_attn.q_proj"), qr, D, &ly->q, err)) < 0) return rc;
    if ((rc = ms_arch_bind_mat(m, r, NAME("self_attn.k_proj"), kr, D, &ly->k, err)) < 0) return rc;
    if ((rc = ms_arch_bind_mat(m, r, NAME("self_attn.v_proj"), kr, D, &ly->v, err)) < 0) return rc;
    if ((rc = ms_arch_bind_mat(m, r, NAME("self_attn.o_proj"), D, qr, &ly->o, err)) < 0) return rc;
    if ((rc = bind_norm(w, r, NAME("self_attn.q_norm.weight"), hd, vc, &ly->q_norm, err)) < 0) return rc;
    if ((rc = bind_norm(w, r, NAME("self_attn.k_norm.weight"), hd, vc, &ly->k_norm, err)) < 0) return rc;
    if (w->d->head_gate) {
        if ((rc = ms_arch_bind_mat(m, r, NAME("self_attn.g_proj"), y->n_heads, D, &ly->g, err)) < 0) return rc;
    } else if (ms_model_find(m, "model.layers.%d.self_attn.g_proj.weight", l)) {
        return ms_errf(err, EINVAL, "%s: tensor %smodel.layers.%d.self_attn.g_proj.weight exists, but config.json "
                       "has use_head_wise_attn_gate false%s", m->dir, m->prefix, l,
                       w->d->vlm ? " (the step3p7 default when the key is missing)" : "");
    }
#undef NAME
    return 0;
}

/* Layer l's feed-forward weights: a dense MLP, or router + shared expert (the
 * routed experts are the model store's). */
static int bind_ffn(step_weights *w, const ms_resident *r, int l, float **vc, ms_err *err)
{
    const ms_model *m = w->m;
    const ms_config *c = w->c;
    step_layer *ly = &w->layers[l];
    int64_t D = w->D;
    char p[64], mod[192];
    int rc;
    snprintf(p, sizeof p, "model.layers.%d", l);
    ms_act shared = {MS_ACT_SWIGLU_CLAMP_AFTER, ly->cfg->limit_shared};
    if (!ly->moe) {
        int64_t I = c->intermediate_size;
#define MOD(fmt) (snprintf(mod, sizeof mod, "%s." fmt, p), mod)
        if ((rc = ms_arch_bind_mat(m, r, MOD("mlp.gate_proj"), I, D, &ly->gate, err)) < 0) return rc;
        if ((rc = ms_arch_bind_mat(m, r, MOD("mlp.up_proj"), I, D, &ly->up, err)) < 0) return rc;
        if ((rc = ms_arch_bind_mat(m, r, MOD("mlp.down_proj"), D, I, &ly->down, err)) < 0) return rc;
        ly->act = shared;
        return 0;
    }
    char mlx[128], hf[128];
    /* router: mlp.gate.gate (MLX, a Linear) or moe.gate (HF) */
    snprintf(mlx, sizeof mlx, "%s.mlp.gate.gate", p);
    snprintf(hf, sizeof hf, "%s.moe.gate", p);
    if ((rc = ms_arch_bind_mat(m, r, pick(m, mlx, hf, ".weight"), w->E, D, &ly->router, err)) < 0) return rc;
    snprintf(mlx, sizeof mlx, "%s.mlp.gate.router_bias", p);
    snprintf(hf, sizeof hf, "%s.moe.router_bias", p);
    const char *bias = pick(m, mlx, hf, "");
    ly->router_bias = NULL;
    if (ms_model_find(m, "%s", bias) && (rc = ms_arch_bind_vec(m, r, bias, w->E, vc, &ly->router_bias, err)) < 0)
        return rc;
    /* shared expert: mlp.share_expert (MLX) or share_expert (HF) */
    snprintf(mlx, sizeof mlx, "%s.mlp.share_expert", p);
    snprintf(hf, sizeof hf, "%s.share_expert", p);
    const char *se = pick(m, mlx, hf, ".gate_proj.weight");
    int64_t S = w->d->share_dim;
    snprintf(mod, sizeof mod, "%s.gate_proj", se);
    if ((rc = ms_arch_bind_mat(m, r, mod, S, D, &ly->sh_gate, err)) < 0) return rc;
    snprintf(mod, sizeof mod, "%s.up_proj", se);
    if ((rc = ms_arch_bind_mat(m, r, mod, S, D, &ly->sh_up, err)) < 0) return rc;
    snprintf(mod, sizeof mod, "%s.down_proj", se);
    if ((rc = ms_arch_bind_mat(m, r, mod, D, S, &ly->sh_down, err)) < 0) return rc;
#undef MOD
    ly->blk = (ms_moe_block){.experts = ms_model_moe(m, l), .sh_gate = &ly->sh_gate, .sh_up = &ly->sh_up,
                             .sh_down = &ly->sh_down,
                             .act_routed = {MS_ACT_SWIGLU_CLAMP_AFTER, ly->cfg->limit_routed}, .act_shared = shared};
    return 0;
}

static int step_bind(const ms_model *m, const ms_resident *r, void **out, uint64_t *extra_bytes, ms_err *err)
{
    extern const ms_family ms_family_step3p5;
    const ms_config *c = &m->cfg;
    if (c->family != &ms_family_step3p5) return ms_errf(err, EINVAL, "%s: not a step3p5-family config", m->dir);
    const step_config *d = c->arch;
    step_weights *w = calloc(1, sizeof *w);
    if (!w) return ms_errf(err, ENOMEM, "out of memory");
    w->m = m;
    w->c = c;
    w->d = d;
    w->D = c->hidden_size;
    w->hd = d->head_dim;
    w->E = c->n_routed_experts;
    w->K = c->n_experts_per_tok;
    w->scale = (float)(1.0 / sqrt((double)w->hd));
    w->zero_centered = hf_vanilla(m);
    w->n_mtp = c->mtp_layers;
    int L = c->n_layers + w->n_mtp, D = w->D, rc = 0; /* layers with a decoder block */
    if (L > d->n_cfg) {
        rc = ms_errf(err, EINVAL, "%s/config.json: %s has %d entries, but MTP layer %d needs entry %d", m->dir,
                     d->short_list, d->n_cfg, d->n_cfg - c->n_layers, d->n_cfg);
        goto fail;
    }
    size_t nvec = (size_t)D + (size_t)L * (2 * (size_t)D + 2 * (size_t)w->hd + (size_t)w->E) +
                  (size_t)w->n_mtp * 3 * (size_t)D;
    size_t half = (size_t)w->hd / 2;
    w->layers = calloc((size_t)L, sizeof *w->layers);
    w->mtp = calloc((size_t)MS_MAX(1, w->n_mtp), sizeof *w->mtp);
    w->vecs = malloc(nvec * sizeof(float));
    w->inv = calloc((size_t)L * half, sizeof *w->inv);
    if (!w->layers || !w->mtp || !w->vecs || !w->inv) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto fail;
    }
    *extra_bytes = nvec * sizeof(float) + (size_t)L * half * sizeof(double);
    float *vc = w->vecs;
    /* embeddings, final norm, head */
    if ((rc = ms_arch_bind_mat(m, r, "model.embed_tokens", c->vocab_size, D, &w->embed, err)) < 0) goto fail;
    if ((rc = bind_norm(w, r, "model.norm.weight", D, &vc, &w->final_norm, err)) < 0) goto fail;
    if (ms_model_find(m, "lm_head.weight")) {
        if ((rc = ms_arch_bind_mat(m, r, "lm_head", c->vocab_size, D, &w->lm_head, err)) < 0) goto fail;
    } else if (c->tie_word_embeddings) {
        w->lm_head = w->embed;
    } else {
        rc = ms_errf(err, ENOENT, "%s: tensor %slm_head.weight is missing (and tie_word_embeddings is false)", m->dir,
                     m->prefix);
        goto fail;
    }
    for (int l = 0; l < L; l++) {
        step_layer *ly = &w->layers[l];
        char name[128];
        ly->cfg = &d->layer[l];
        ly->moe = ms_config_is_moe_layer(c, l);
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        if ((rc = bind_norm(w, r, name, D, &vc, &ly->attn_norm, err)) < 0) goto fail;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if ((rc = bind_norm(w, r, name, D, &vc, &ly->ffn_norm, err)) < 0) goto fail;
        if ((rc = bind_attention(w, r, l, &vc, err)) < 0) goto fail;
        if ((rc = bind_ffn(w, r, l, &vc, err)) < 0) goto fail;
        /* RoPE frequencies of the layer: its base, rotated dims, scaling if its type has it */
        ms_rope_cfg plain = {.type = MS_ROPE_DEFAULT, .factor = 1};
        double *inv = w->inv + (size_t)l * half;
        ms_rope_inv_freq(ly->cfg->scaled ? &d->rope : &plain, ly->cfg->theta, ly->cfg->rope_dims, inv,
                         &ly->rope_mscale);
        ly->inv_freq = inv;
    }
    /* MTP layers (HF names): enorm, hnorm, eh_proj, the decoder block above and
     * transformer.shared_head.{norm, output} (also accepted: shared_head.{norm, head}) */
    for (int i = 0; i < w->n_mtp; i++) {
        struct step_mtp *mt = &w->mtp[i];
        char name[160], a[128], b[128];
        int l = c->n_layers + i;
        snprintf(name, sizeof name, "model.layers.%d.enorm.weight", l);
        if ((rc = bind_norm(w, r, name, D, &vc, &mt->enorm, err)) < 0) goto fail;
        snprintf(name, sizeof name, "model.layers.%d.hnorm.weight", l);
        if ((rc = bind_norm(w, r, name, D, &vc, &mt->hnorm, err)) < 0) goto fail;
        snprintf(name, sizeof name, "model.layers.%d.eh_proj", l);
        if ((rc = ms_arch_bind_mat(m, r, name, D, 2 * (int64_t)D, &mt->eh_proj, err)) < 0) goto fail;
        snprintf(a, sizeof a, "model.layers.%d.transformer.shared_head.norm", l);
        snprintf(b, sizeof b, "model.layers.%d.shared_head.norm", l);
        snprintf(name, sizeof name, "%s.weight", pick(m, a, b, ".weight"));
        if ((rc = bind_norm(w, r, name, D, &vc, &mt->head_norm, err)) < 0) goto fail;
        snprintf(a, sizeof a, "model.layers.%d.transformer.shared_head.output", l);
        snprintf(b, sizeof b, "model.layers.%d.shared_head.head", l);
        const char *head = pick(m, a, b, ".weight");
        if (ms_model_find(m, "%s.weight", head)) {
            if ((rc = ms_arch_bind_mat(m, r, head, c->vocab_size, D, &mt->head, err)) < 0) goto fail;
        } else {
            mt->head = w->lm_head; /* a conversion that dropped the per-layer head */
        }
    }
    *out = w;
    return 0;
fail:
    step_unbind(w);
    return rc;
}

/* ---- state: KV cache + scratch ------------------------------------------ */

/* Cache slots of layer l for ctx positions: ctx (full), or a ring of
 * min(window, ctx) (sliding). With MTP a verify step of up to `batch` rows
 * writes rows that may be rejected (the sequence goes back up to batch - 1
 * positions, and the draft head's chain as well), so a ring keeps batch - 1
 * more slots: the window before any position a later step starts from stays
 * in the ring. */
static int layer_slots(const ms_config *c, int l, int ctx, int batch)
{
    const step_config *d = c->arch;
    if (!d->layer[l].sliding || !d->window) return ctx;
    int extra = c->mtp_layers > 0 ? batch - 1 : 0;
    return (int)MS_MIN((int64_t)d->window + extra, (int64_t)ctx);
}

/* One sequence's KV cache: layer l (a main layer, or MTP layer l - n_layers:
 * the draft head's own cache) holds K then V, each [slots_l][Hkv_l][hd].
 * Returns its elements; off[l] (optional) receives layer l's offset, and
 * *ring (optional) the slots of all sliding layers (their position tags). */
static size_t kv_elems(const ms_config *c, int ctx, int batch, size_t *off, size_t *ring)
{
    const step_config *d = c->arch;
    size_t total = 0, tags = 0;
    for (int l = 0; l < ms_config_n_layers_all(c); l++) {
        size_t slots = (size_t)layer_slots(c, l, ctx, batch);
        if (off) off[l] = total;
        total += 2 * slots * (size_t)d->layer[l].n_kv * (size_t)d->head_dim;
        if (d->layer[l].sliding && d->window) tags += slots;
    }
    if (ring) *ring = tags;
    return total;
}

/* Every buffer of the state: X(name, type, element count). One list drives the
 * struct, the allocation and the size report (the plan uses the size before
 * anything is allocated). The MoE block's scratch (moe.c) comes on top. */
#define STEP_BUFFERS(X)                                                                            \
    X(kv_off, size_t, L)                  /* [L] offset of layer l's K in a sequence's cache */    \
    X(tag_off, size_t, L)                 /* [L] offset of a sliding layer's ring tags */          \
    X(kv, float, S * KVF)                 /* [S] f32 KV caches: per layer K, V [slots][Hkv][hd] */ \
    X(kv16, uint16_t, S * KVH)            /* [S] the same in bf16 (--kv bf16) */                   \
    X(tag, int, S * RING)                 /* [S][sliding layers][slots] position held, -1 none */  \
    X(h, float, B * D)                    /* [B][D] residual stream */                             \
    X(x, float, B * D)                    /* [B][D] normed input */                                \
    X(q, float, B * HQ * hd)              /* [B][Hq][hd] queries (normed, rotated) */              \
    X(k, float, B * HK * hd)              /* [B][Hkv][hd] the step's keys */                       \
    X(v, float, B * HK * hd)              /* [B][Hkv][hd] the step's values */                     \
    X(g, float, B * HQ)                   /* [B][Hq] head gates */                                 \
    X(o, float, B * HQ * hd)              /* [B][Hq][hd] attention outputs */                      \
    X(attn, float, B * D)                 /* [B][D] */                                             \
    X(cosb, float, B * hd / 2)            /* [B][rope/2] */                                        \
    X(sinb, float, B * hd / 2)            /* [B][rope/2] */                                        \
    X(run0, int, B)                       /* [B] first row of each row's sequence in the step */   \
    X(tls, float, nth * tls_stride)       /* [nth][ctx scores + 3 hd] per thread */                \
    X(ffn_out, float, B * D)              /* [B][D] */                                             \
    X(rlog, float, B * E)                 /* [B][E] router logits */                               \
    X(rtmp, float, 2 * E)                 /* [2E] router scratch */                                \
    X(px, float, D)                       /* [D] hidden state normed for the next router */        \
    X(pwt, float, K)                      /* [K] weights of a prediction (unused) */               \
    X(cat, float, M * B * 2 * D)          /* [B][2D] MTP: enorm(e) | hnorm(h) */

typedef struct step_state {
    const step_weights *w;
    int ctx, batch, n_seq, nth;
    bool kv_bf16;
    size_t tls_stride, seq_kv, seq_tags; /* per-sequence KV elements and ring tags */
    ms_moe *moe;
    ms_moe_router router;
#define X(name, type, count) type *name;
    STEP_BUFFERS(X)
#undef X
} step_state;

/* The sizes the list above needs. */
#define STEP_DIMS(c, ctx_, batch_, nseq_, nth_, kvbf_)                                                       \
    const step_config *d_ = (c)->arch;                                                                       \
    size_t L = (size_t)ms_config_n_layers_all(c), M = (size_t)((c)->mtp_layers > 0);                         \
    size_t ctx = (size_t)(ctx_), B = (size_t)(batch_), nth = (size_t)(nth_);                                 \
    size_t S = (size_t)(nseq_), D = (size_t)(c)->hidden_size, hd = (size_t)d_->head_dim;                     \
    size_t HQ = (size_t)d_->max_heads, HK = (size_t)d_->max_kv, RING;                                        \
    size_t KV = kv_elems((c), (int)ctx, (int)B, NULL, &RING), KVF = (kvbf_) ? 0 : KV, KVH = (kvbf_) ? KV : 0;        \
    size_t E = (size_t)MS_MAX(1, (c)->n_routed_experts), K = (size_t)MS_MAX(1, (c)->n_experts_per_tok);     \
    size_t tls_stride = MS_ALIGN_UP(ctx + 3 * hd + 16, 16);                                                  \
    (void)L; (void)ctx; (void)B; (void)nth; (void)D; (void)hd; (void)HQ; (void)HK; (void)KVF; (void)KVH;     \
    (void)E; (void)K; (void)tls_stride; (void)S; (void)M

/* The MoE scratch's dims; its FFN scratch also serves the dense MLPs. */
static ms_moe_dims moe_dims(const ms_config *c, int batch)
{
    const step_config *d = c->arch;
    int widest = MS_MAX(c->intermediate_size, MS_MAX(c->moe_intermediate_size, d->share_dim));
    return (ms_moe_dims){.n_layers = ms_config_n_layers_all(c), .D = c->hidden_size,
                         .E = MS_MAX(1, c->n_routed_experts), .K = MS_MAX(1, c->n_experts_per_tok), .batch = batch,
                         .ffn_widest = widest};
}

static uint64_t step_state_bytes(const ms_config *c, int ctx_, int batch_, int n_seq, int nth_, bool kv_bf16,
                                 uint64_t *kv_bytes)
{
    STEP_DIMS(c, ctx_, batch_, MS_MAX(1, n_seq), nth_ > 0 ? nth_ : 1, kv_bf16);
    uint64_t total = 0;
#define X(name, type, count) total += (uint64_t)MS_MAX((size_t)(count), (size_t)1) * sizeof(type);
    STEP_BUFFERS(X)
#undef X
    ms_moe_dims md = moe_dims(c, batch_);
    total += ms_moe_bytes(&md);
    if (kv_bytes) *kv_bytes = (uint64_t)S * KV * (kv_bf16 ? sizeof(uint16_t) : sizeof(float));
    return total;
}

static void step_state_destroy(void *sp)
{
    step_state *s = sp;
    if (!s) return;
#define X(name, type, count) free(s->name);
    STEP_BUFFERS(X)
#undef X
    ms_moe_destroy(s->moe);
    free(s);
}

static int step_route(void *fam, const ms_fwd_env *env, int layer, const float *x, const int *tokens, int n, int *ids,
                      float *wts, ms_err *err);
static int step_predict(void *fam, const ms_fwd_env *env, int layer, int *ids);

static int step_state_create(const void *wp, int ctx_, int batch_, int n_seq, int nthreads, bool kv_bf16, void **out,
                             uint64_t *bytes, ms_err *err)
{
    const step_weights *w = wp;
    const ms_config *c = w->c;
    if (ctx_ <= 0 || batch_ <= 0 || n_seq <= 0)
        return ms_errf(err, EINVAL, "context, batch and sequences must be positive");
    step_state *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "out of memory");
    s->w = w;
    s->ctx = ctx_;
    s->batch = batch_;
    s->n_seq = n_seq;
    s->nth = nthreads > 0 ? nthreads : 1;
    s->kv_bf16 = kv_bf16;
    s->router = (ms_moe_router){.fam = s, .route = step_route, .predict = step_predict};
    STEP_DIMS(c, ctx_, batch_, n_seq, s->nth, kv_bf16);
    s->tls_stride = tls_stride;
    s->seq_kv = KV;
    s->seq_tags = RING;
#define X(name, type, count)                                                   \
    s->name = calloc(MS_MAX((size_t)(count), (size_t)1), sizeof(type));        \
    if (!s->name) goto oom;
    STEP_BUFFERS(X)
#undef X
    kv_elems(c, ctx_, batch_, s->kv_off, NULL);
    for (size_t l = 0, t = 0; l < L; l++) { /* ring tags of the sliding layers, all empty */
        s->tag_off[l] = t;
        if (w->d->layer[l].sliding && w->d->window) t += (size_t)layer_slots(c, (int)l, ctx_, batch_);
    }
    for (size_t i = 0; i < S * RING; i++) s->tag[i] = -1;
    ms_moe_dims md = moe_dims(c, batch_);
    int rc = ms_moe_create(&md, &s->moe, err);
    if (rc < 0) {
        step_state_destroy(s);
        return rc;
    }
    *out = s;
    if (bytes) *bytes = step_state_bytes(c, ctx_, batch_, n_seq, s->nth, kv_bf16, NULL);
    return 0;
oom:
    step_state_destroy(s);
    return ms_errf(err, ENOMEM, "cannot allocate the KV cache / scratch for ctx %d, batch %d", ctx_, batch_);
}

/* ---- attention ------------------------------------------------------------ */

typedef struct attn_task {
    const step_weights *w;
    const step_layer *ly;
    step_state *s;
    const ms_batch *b;
    int layer, slots;
} attn_task;

/* Element offset of (sequence, layer, K or V, slot) in the KV cache. */
static size_t kv_at(const step_state *s, int seq, int layer, int which, int slots, int slot)
{
    size_t row = (size_t)s->w->d->layer[layer].n_kv * (size_t)s->w->hd;
    return (size_t)seq * s->seq_kv + s->kv_off[layer] + ((size_t)which * (size_t)slots + (size_t)slot) * row;
}

/* Key (which 0) or value (1) of position j for row ti, KV head kh: a row of
 * the step (its sequence's rows up to ti, found by walking *k forward from the
 * sequence's first row) from scratch, else the cache (bf16 widened into buf). */
static const float *kv_row(const attn_task *t, int which, int ti, int j, int *k, int kh, float *buf)
{
    const step_state *s = t->s;
    const ms_batch *b = t->b;
    int hd = t->w->hd, nkv = t->ly->cfg->n_kv;
    while (*k < ti && b->pos[*k] < j) (*k)++;
    if (b->pos[*k] == j) return (which ? s->v : s->k) + ((size_t)*k * nkv + kh) * hd;
    size_t at = kv_at(s, ms_arch_row_seq(b, ti), t->layer, which, t->slots, j % t->slots) + (size_t)kh * hd;
    if (!s->kv_bf16) return s->kv + at;
    for (int i = 0; i < hd; i++) buf[i] = ms_bf16_to_f32(s->kv16[at + i]);
    return buf;
}

/* One (row, query head): softmax attention over its visible keys, gated. */
static void attn_one(attn_task *t, int idx, float *tls)
{
    const step_layer *ly = t->ly;
    const step_layer_cfg *y = ly->cfg;
    const step_state *s = t->s;
    int hd = t->w->hd, H = y->n_heads;
    int ti = idx / H, h = idx % H, kh = h / (H / y->n_kv), pos = t->b->pos[ti];
    int window = t->w->d->window;
    int lo = y->sliding && window ? MS_MAX(0, pos - window + 1) : 0;
    const float *q = s->q + ((size_t)ti * H + h) * hd;
    float *sc = tls;                          /* [pos - lo + 1] */
    float *acc = tls + s->ctx;                /* [hd] */
    float *row = acc + hd;                    /* [hd] bf16 rows widened */
    int k = s->run0[ti];
    for (int j = lo; j <= pos; j++) sc[j - lo] = t->w->scale * ms_dot_f32(q, kv_row(t, 0, ti, j, &k, kh, row), hd);
    ms_softmax(sc, pos - lo + 1);
    memset(acc, 0, (size_t)hd * sizeof *acc);
    k = s->run0[ti];
    for (int j = lo; j <= pos; j++) {
        const float *vj = kv_row(t, 1, ti, j, &k, kh, row);
        float p = sc[j - lo];
        for (int i = 0; i < hd; i++) acc[i] += p * vj[i];
    }
    float gate = ly->g.w ? 1.0f / (1.0f + expf(-s->g[(size_t)ti * H + h])) : 1.0f;
    float *o = s->o + ((size_t)ti * H + h) * hd;
    for (int i = 0; i < hd; i++) o[i] = acc[i] * gate;
}

static void attn_index(void *arg, int idx, int tid)
{
    attn_task *t = arg;
    attn_one(t, idx, t->s->tls + (size_t)tid * t->s->tls_stride);
}

/* A sliding layer's ring must still hold every earlier position a row reads
 * from it: positions that went back further than the window (a rewound
 * sequence) would find newer keys in their slots. */
static int check_ring(const step_state *s, const ms_batch *b, int layer, int slots, ms_err *err)
{
    const int *tags = s->tag + s->tag_off[layer];
    int window = s->w->d->window;
    for (int r = 0; r < b->n; r++) {
        int seq = ms_arch_row_seq(b, r), k = s->run0[r], pos = b->pos[r];
        for (int j = MS_MAX(0, pos - window + 1); j < pos; j++) {
            while (k < r && b->pos[k] < j) k++;
            if (b->pos[k] == j) continue; /* a row of this step */
            if (tags[(size_t)seq * s->seq_tags + (size_t)(j % slots)] != j)
                return ms_errf(err, EINVAL, "layer %d: the sliding-window cache of sequence %d no longer holds "
                               "position %d (the sequence went back more than the window)", layer, seq, j);
        }
    }
    return 0;
}

/* h[n][D] += attention_l(x[n][D]) for the step's rows; then their keys and
 * values go to the layer's cache. */
static int attention(const step_weights *w, const step_layer *ly, step_state *s, const ms_fwd_env *env, int layer,
                     const ms_batch *b, ms_err *err)
{
    const step_layer_cfg *y = ly->cfg;
    int n = b->n, hd = w->hd, H = y->n_heads, HK = y->n_kv, rd = y->rope_dims, half = rd / 2;
    float eps = (float)w->c->rms_norm_eps;
    int slots = layer_slots(w->c, layer, s->ctx, s->batch);
    bool ring = y->sliding && w->d->window;
    if (ring) {
        int rc = check_ring(s, b, layer, slots, err);
        if (rc < 0) return rc;
    }
    /* 1. projections (and the head gates' logits) */
    ms_arch_linear(env, &ly->q, s->x, n, s->q);
    ms_arch_linear(env, &ly->k, s->x, n, s->k);
    ms_arch_linear(env, &ly->v, s->x, n, s->v);
    if (ly->g.w) ms_arch_linear(env, &ly->g, s->x, n, s->g);
    /* 2. RoPE tables for the rows' positions */
    for (int t = 0; t < n; t++)
        for (int i = 0; i < half; i++) {
            double a = (double)b->pos[t] * ly->inv_freq[i];
            s->cosb[(size_t)t * half + i] = (float)cos(a) * ly->rope_mscale;
            s->sinb[(size_t)t * half + i] = (float)sin(a) * ly->rope_mscale;
        }
    /* 3. per-head q/k norms, then RoPE on the first rd dims of every head */
    for (int t = 0; t < n; t++) {
        const float *cs = s->cosb + (size_t)t * half, *sn = s->sinb + (size_t)t * half;
        for (int h = 0; h < H; h++) {
            float *qh = s->q + ((size_t)t * H + h) * hd;
            ms_rmsnorm(qh, qh, ly->q_norm, hd, eps);
            ms_rope_halfsplit(qh, rd, cs, sn);
        }
        for (int h = 0; h < HK; h++) {
            float *kh = s->k + ((size_t)t * HK + h) * hd;
            ms_rmsnorm(kh, kh, ly->k_norm, hd, eps);
            ms_rope_halfsplit(kh, rd, cs, sn);
        }
    }
    /* 4. bf16 KV: the step's own keys/values rounded as the cache will hold them */
    size_t kvn = (size_t)n * HK * hd;
    if (s->kv_bf16)
        for (size_t i = 0; i < kvn; i++) {
            s->k[i] = ms_bf16_to_f32(ms_f32_to_bf16(s->k[i]));
            s->v[i] = ms_bf16_to_f32(ms_f32_to_bf16(s->v[i]));
        }
    /* 5. attention per (row, query head) */
    attn_task task = {.w = w, .ly = ly, .s = s, .b = b, .layer = layer, .slots = slots};
    ms_pool_for(env->compute.pool, b->n * y->n_heads, attn_index, &task);
    /* 6. the rows' keys/values into the cache, in row order (a ring keeps the latest) */
    size_t row = (size_t)HK * hd;
    for (int t = 0; t < n; t++) {
        int seq = ms_arch_row_seq(b, t), slot = b->pos[t] % slots;
        size_t ka = kv_at(s, seq, layer, 0, slots, slot), va = kv_at(s, seq, layer, 1, slots, slot);
        const float *kt = s->k + (size_t)t * row, *vt = s->v + (size_t)t * row;
        if (s->kv_bf16) {
            for (size_t i = 0; i < row; i++) {
                s->kv16[ka + i] = ms_f32_to_bf16(kt[i]);
                s->kv16[va + i] = ms_f32_to_bf16(vt[i]);
            }
        } else {
            memcpy(s->kv + ka, kt, row * sizeof(float));
            memcpy(s->kv + va, vt, row * sizeof(float));
        }
        if (ring) s->tag[s->tag_off[layer] + (size_t)seq * s->seq_tags + (size_t)slot] = b->pos[t];
    }
    /* 7. output projection, residual */
    ms_arch_linear(env, &ly->o, s->o, n, s->attn);
    for (size_t i = 0; i < (size_t)n * w->D; i++) s->h[i] += s->attn[i];
    return 0;
}

/* ---- router ---------------------------------------------------------------- */

/* This layer's router on n tokens x[n][D]: ids[n][K] (best first), wts[n][K]. */
static void route(const step_weights *w, step_state *s, const ms_fwd_env *env, const step_layer *ly, const float *x,
                  int n, int *ids, float *wts)
{
    ms_sigmoid_router r = {.E = w->E, .K = w->K, .n_group = 1, .topk_group = 1, .norm = w->d->norm_expert_weight,
                           .scale = w->d->scaling};
    ms_arch_route_sigmoid(env, &r, &ly->router, ly->router_bias, x, n, s->rlog, s->rtmp, ids, wts);
}

/* The router op (moe.h): this layer's router on the block's input. */
static int step_route(void *fam, const ms_fwd_env *env, int layer, const float *x, const int *tokens, int n, int *ids,
                      float *wts, ms_err *err)
{
    (void)tokens;
    step_state *s = fam;
    const step_weights *w = s->w;
    const step_layer *ly = &w->layers[layer];
    if (!ly->moe) return ms_errf(err, EINVAL, "layer %d is not a MoE layer", layer);
    route(w, s, env, ly, x, n, ids, wts);
    return 0;
}

/* The predict op (moe.h), one token: layer's router on the current residual
 * stream normed with layer's post-attention norm (the input it will see, up to
 * its own attention's contribution). */
static int step_predict(void *fam, const ms_fwd_env *env, int layer, int *ids)
{
    step_state *s = fam;
    const step_weights *w = s->w;
    if (layer >= w->c->n_layers || !w->layers[layer].moe) return 0;
    const step_layer *ny = &w->layers[layer];
    ms_rmsnorm(s->px, s->h, ny->ffn_norm, w->D, (float)w->c->rms_norm_eps);
    route(w, s, env, ny, s->px, 1, ids, s->pwt);
    return w->K;
}

/* ---- forward ------------------------------------------------------------------ */

/* One decoder block over the step's residual stream h[n][D] (layer l: a main
 * layer, or an MTP layer's block). */
static int block(const step_weights *w, step_state *s, const ms_fwd_env *env, int l, const ms_batch *b, ms_err *err)
{
    const step_layer *ly = &w->layers[l];
    int n = b->n, D = w->D, rc;
    float eps = (float)w->c->rms_norm_eps;
    /* attention block: h += attention(rmsnorm(h)) */
    for (int t = 0; t < n; t++) ms_rmsnorm(s->x + (size_t)t * D, s->h + (size_t)t * D, ly->attn_norm, D, eps);
    if ((rc = attention(w, ly, s, env, l, b, err)) < 0) return rc;
    /* feed-forward block: h += MoE or MLP (rmsnorm(h)) */
    for (int t = 0; t < n; t++) ms_rmsnorm(s->x + (size_t)t * D, s->h + (size_t)t * D, ly->ffn_norm, D, eps);
    if (ly->moe) {
        if ((rc = ms_moe_forward(s->moe, env, &s->router, &ly->blk, l, s->x, b->tokens, n, s->ffn_out, err)) < 0)
            return rc;
    } else {
        ms_ffn_act(&env->compute, &ly->gate, &ly->up, &ly->down, s->x, n, s->ffn_out, ms_moe_ffn_scratch(s->moe),
                   &ly->act, env->exact);
    }
    for (size_t i = 0; i < (size_t)n * D; i++) s->h[i] += s->ffn_out[i];
    return 0;
}

/* Rows' validity and each row's first row of its sequence in the step. */
static int step_rows(const step_weights *w, step_state *s, const ms_batch *b, ms_err *err)
{
    int rc = ms_arch_check_rows(b, s->batch, s->n_seq, s->ctx, w->c->vocab_size, err);
    if (rc < 0) return rc;
    for (int t = 0; t < b->n; t++)
        s->run0[t] = t > 0 && ms_arch_row_seq(b, t) == ms_arch_row_seq(b, t - 1) ? s->run0[t - 1] : t;
    return 0;
}

/* The forward pass over one step's rows (see ms_batch). b->hidden receives the
 * residual stream after the last layer, before the final norm: the state
 * Step's MTP layers take (vLLM's and SGLang's step3p5 hand the draft head the
 * pre-norm hidden state; docs/ARCHITECTURE.md "MTP"). */
static int step_forward(const void *wp, void *sp, const ms_fwd_env *env, const ms_batch *b, ms_err *err)
{
    const step_weights *w = wp;
    step_state *s = sp;
    const ms_config *c = w->c;
    int n = b->n, D = w->D, rc;
    float eps = (float)c->rms_norm_eps;
    if ((rc = step_rows(w, s, b, err)) < 0) return rc;
    /* 1. embeddings */
    for (int t = 0; t < n; t++) ms_mat_get_row(env->compute.kern, &w->embed, b->tokens[t], s->h + (size_t)t * D);
    /* 2-3. the decoder blocks */
    for (int l = 0; l < c->n_layers; l++)
        if ((rc = block(w, s, env, l, b, err)) < 0) return rc;
    /* 4. the pre-norm hidden states (MTP's input), final norm + lm_head */
    if (b->hidden) memcpy(b->hidden, s->h, (size_t)n * D * sizeof(float));
    if (b->logits) ms_arch_head(env, w->final_norm, &w->lm_head, b, s->h, s->x, eps);
    return 0;
}

/* The MTP draft head (Step-3.5-Flash multi-token prediction, as vLLM's
 * step3p5_mtp and SGLang's step3p5_mtp compute it), row i = (token x at pos+1,
 * hidden h at pos: the main model's pre-norm state, or the previous draft's
 * output), MTP layer 0 (model layer n_layers) at every draft depth:
 *   u = eh_proj([enorm(embed(x)) | hnorm(h)])     embedding half first
 *   y = the layer's decoder block over u          its own KV cache, RoPE position pos
 *   logits = head(shared_head.norm(y))            the layer's own head: the draft for pos + 2
 * b->hidden receives y (pre-norm: the next draft's h). All norms zero-centered
 * in HF files (+1 on load). Routing of a MoE block would go through the same
 * expert cache, not reported to traces, without prefetch. */
static int step_mtp_forward(const void *wp, void *sp, const ms_fwd_env *env0, const ms_batch *b, const float *hidden,
                            ms_err *err)
{
    const step_weights *w = wp;
    step_state *s = sp;
    int n = b->n, D = w->D, rc;
    float eps = (float)w->c->rms_norm_eps;
    if (w->n_mtp < 1) return ms_errf(err, EINVAL, "the model was opened without its MTP layer");
    if ((rc = step_rows(w, s, b, err)) < 0) return rc;
    ms_fwd_env env = *env0;
    env.on_route = env.on_predict = NULL;
    env.prefetch = false;
    const struct step_mtp *mt = &w->mtp[0];
    /* 1-2. u = eh_proj([enorm(embed(x)) | hnorm(h)]): the block's residual stream */
    ms_arch_mtp_fuse(&env, &w->embed, mt->enorm, mt->hnorm, &mt->eh_proj, b, hidden, s->x, s->cat, s->h, eps);
    /* 3. the MTP layer's decoder block */
    if ((rc = block(w, s, &env, w->c->n_layers, b, err)) < 0) return rc;
    /* 4. its output state (the next draft step's hidden) and the draft logits */
    if (b->hidden) memcpy(b->hidden, s->h, (size_t)n * D * sizeof(float));
    if (b->logits) ms_arch_head(&env, mt->head_norm, &mt->head, b, s->h, s->x, eps);
    return 0;
}

static const ms_arch_ops step_ops = {
    .name = "step3p5",
    .bind = step_bind,
    .unbind = step_unbind,
    .state_create = step_state_create,
    .state_destroy = step_state_destroy,
    .state_bytes = step_state_bytes,
    .forward = step_forward,
    .mtp_forward = step_mtp_forward,
};

static const char *const step_types[] = {"step3p5", NULL};
static const char *const step_modules[] = {"mlp", "moe", NULL}; /* MLX switch_mlp / HF stacked moe.* */

const ms_family ms_family_step3p5 = {
    .name = "step3p5",
    .model_types = step_types,
    .moe_modules = step_modules,
    .parse_config = step_parse_config,
    .describe = step_describe,
    .ops = &step_ops,
};

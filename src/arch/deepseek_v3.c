/* deepseek_v3.c - the DeepSeek-V3 family (DeepSeek-V3/R1, GigaChat3/3.1,
 * Kimi-K2; glm4_moe_lite differs only in config values): config keys, weight
 * binding and the forward pass, all activations in f32. See
 * docs/VERIFICATION.md (sources, reference checks) and deepseek_v3.h.
 *
 *   h = embed[token]
 *   for each layer:
 *       x = rmsnorm(h)                                   input_layernorm
 *       h += MLA(x)                                      absorbed form, latent KV cache
 *       x = rmsnorm(h)                                   post_attention_layernorm
 *       h += dense ? mlp(x) : MoE(x)                     moe.c: shared + sum_j w_j expert_j(x)
 *   logits = lm_head(rmsnorm(h))
 *
 * MLA, absorbed (one form for decode and prefill; a chunk of n tokens first
 * writes its latents to the cache, then each (token, head) attends causally):
 *   q        = q_b(rmsnorm(q_a x))  or q_proj x          [H, nope+rope]
 *   kv       = kv_a x                                    [kv_lora + rope]
 *   c_kv     = rmsnorm(kv[:kv_lora])  -> cache            [kv_lora]
 *   k_pe     = rope(kv[kv_lora:])     -> cache            [rope]
 *   q_lat[h] = W_UK[h]^T q_nope[h]                        [kv_lora]
 *   s[h, j]  = scale * (q_lat[h] . c_kv[j] + rope(q_pe[h]) . k_pe[j]),  j <= pos
 *   o[h]     = W_UV[h] (sum_j softmax(s)[j] c_kv[j])      [v]
 *   out      = o_proj(concat o)
 * W_UK / W_UV come from embed_q / unembed_out (MLX >= 0.30.6) or from the rows
 * of kv_b_proj (HF and older MLX); q_lat from kv_b_proj is a transposed product.
 *
 * Router (this family's ms_moe_router): sigmoid scores,
 * e_score_correction_bias for selection only, group-limited top-k (sum of the
 * top-2 of each group), norm_topk_prob, routed_scaling_factor. The MoE block
 * itself (acquisition, waves, fixed-order combine) is moe.c's.
 */
#include "deepseek_v3.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "util.h"

/* ---- config ---------------------------------------------------------------- */

const ms_ds3_config *ms_ds3_config_of(const ms_config *c)
{
    extern const ms_family ms_family_deepseek_v3;
    return c->family == &ms_family_deepseek_v3 ? c->arch : NULL;
}

double ms_ds3_softmax_scale(const ms_ds3_config *d)
{
    double s = 1.0 / sqrt((double)(d->qk_nope_head_dim + d->qk_rope_head_dim));
    if (d->rope.type == MS_ROPE_YARN && d->rope.mscale_all_dim != 0 && d->rope.factor > 1) {
        double m = ms_rope_yarn_get_m(d->rope.factor, d->rope.mscale_all_dim);
        s *= m * m;
    }
    return s;
}

/* The family's keys of config.json (spec §1); common fields are parsed already. */
static int ds3_parse_config(const ms_jctx *jc, json_object *o, json_object *root, ms_config *cfg)
{
    (void)root;
    ms_err *err = jc->err;
    const char *what = jc->what;
    ms_ds3_config *d = calloc(1, sizeof *d);
    if (!d) return ms_errf(err, ENOMEM, "out of memory");
    cfg->arch = d;
    d->glm = !strcmp(cfg->model_type, "glm4_moe_lite");
    int rc;
    if ((rc = ms_json_int32(jc, o, "num_attention_heads", true, 0, 1, 4096, &d->n_heads)) < 0) return rc;
    if ((rc = ms_json_int32(jc, o, "q_lora_rank", false, 0, 0, 1 << 20, &d->q_lora_rank)) < 0) return rc;
    if ((rc = ms_json_int32(jc, o, "kv_lora_rank", true, 0, 1, 1 << 20, &d->kv_lora_rank)) < 0) return rc;
    if ((rc = ms_json_int32(jc, o, "qk_nope_head_dim", true, 0, 1, 1 << 16, &d->qk_nope_head_dim)) < 0) return rc;
    if ((rc = ms_json_int32(jc, o, "qk_rope_head_dim", true, 0, 2, 1 << 16, &d->qk_rope_head_dim)) < 0) return rc;
    if ((rc = ms_json_int32(jc, o, "v_head_dim", true, 0, 1, 1 << 16, &d->v_head_dim)) < 0) return rc;
    if (d->qk_rope_head_dim % 2)
        return ms_errf(err, EINVAL, "%s: qk_rope_head_dim %d must be even", what, d->qk_rope_head_dim);
    if ((rc = ms_json_int32(jc, o, "first_k_dense_replace", false, 0, 0, 4096, &d->first_k_dense_replace)) < 0)
        return rc;
    if ((rc = ms_json_int32(jc, o, "moe_layer_freq", false, 1, 1, 4096, &d->moe_layer_freq)) < 0) return rc;
    /* MoE layers (mlx-lm rule): l >= first_k_dense_replace && l % moe_layer_freq == 0;
     * the MTP layers after the main ones follow the same rule */
    bool any_moe = false;
    if (cfg->n_layers + cfg->num_nextn_predict_layers > MS_MAX_LAYERS)
        return ms_errf(err, EINVAL, "%s: num_hidden_layers + num_nextn_predict_layers exceed %d", what, MS_MAX_LAYERS);
    for (int l = 0; l < cfg->n_layers + cfg->num_nextn_predict_layers; l++) {
        cfg->moe_layer[l] = l >= d->first_k_dense_replace && l % d->moe_layer_freq == 0;
        if (l < cfg->n_layers) any_moe |= cfg->moe_layer[l];
    }
    bool any_dense = d->first_k_dense_replace > 0 || d->moe_layer_freq > 1;
    if ((rc = ms_json_int32(jc, o, "intermediate_size", any_dense, 0, 1, 1 << 22, &cfg->intermediate_size)) < 0)
        return rc;
    if ((rc = ms_json_int32(jc, o, "n_routed_experts", any_moe, 0, 1, 1 << 16, &cfg->n_routed_experts)) < 0) return rc;
    if ((rc = ms_json_int32(jc, o, "moe_intermediate_size", any_moe, 0, 1, 1 << 22, &cfg->moe_intermediate_size)) < 0)
        return rc;
    if ((rc = ms_json_int32(jc, o, "num_experts_per_tok", any_moe, 0, 1, 1 << 16, &cfg->n_experts_per_tok)) < 0)
        return rc;
    if ((rc = ms_json_int32(jc, o, "n_shared_experts", false, 0, 0, 1024, &cfg->n_shared_experts)) < 0) return rc;
    if ((rc = ms_json_int32(jc, o, "n_group", false, 1, 1, 1024, &d->n_group)) < 0) return rc;
    if ((rc = ms_json_int32(jc, o, "topk_group", false, 1, 1, 1 << 16, &d->topk_group)) < 0) return rc;
    if (any_moe) {
        int E = cfg->n_routed_experts;
        if (cfg->n_experts_per_tok > E)
            return ms_errf(err, EINVAL, "%s: num_experts_per_tok %d exceeds n_routed_experts %d", what,
                           cfg->n_experts_per_tok, E);
        if (E % d->n_group)
            return ms_errf(err, EINVAL, "%s: n_routed_experts %d is not divisible by n_group %d", what, E, d->n_group);
        if (d->topk_group > d->n_group)
            return ms_errf(err, EINVAL, "%s: topk_group %d exceeds n_group %d", what, d->topk_group, d->n_group);
        if (cfg->n_experts_per_tok > d->topk_group * (E / d->n_group))
            return ms_errf(err, EINVAL, "%s: num_experts_per_tok %d exceeds the experts in topk_group groups (%d)",
                           what, cfg->n_experts_per_tok, d->topk_group * (E / d->n_group));
        if (d->n_group > 1 && E / d->n_group < 2)
            return ms_errf(err, EINVAL, "%s: group-limited routing needs at least 2 experts per group", what);
        char method[32], scoring[32];
        if ((rc = ms_json_str(jc, o, "topk_method", false, "noaux_tc", method, sizeof method)) < 0) return rc;
        if ((rc = ms_json_str(jc, o, "scoring_func", false, "sigmoid", scoring, sizeof scoring)) < 0) return rc;
        if (strcmp(method, "noaux_tc") != 0)
            return ms_errf(err, EINVAL, "%s: topk_method \"%s\" is not supported (deepseek_v3 uses noaux_tc)", what,
                           method);
        if (strcmp(scoring, "sigmoid") != 0)
            return ms_errf(err, EINVAL, "%s: scoring_func \"%s\" is not supported (deepseek_v3 uses sigmoid)", what,
                           scoring);
    } else {
        cfg->n_routed_experts = 0;
    }
    char act[32];
    if ((rc = ms_json_str(jc, o, "hidden_act", false, "silu", act, sizeof act)) < 0) return rc;
    if (strcmp(act, "silu") != 0) return ms_errf(err, EINVAL, "%s: hidden_act \"%s\" is not supported (silu)", what, act);
    if ((rc = ms_json_bool(jc, o, "norm_topk_prob", d->glm, &d->norm_topk_prob)) < 0) return rc;
    if ((rc = ms_json_num(jc, o, "routed_scaling_factor", false, 1.0, 0, 1e6, &d->routed_scaling_factor)) < 0)
        return rc;
    d->latent_norm_eps = d->glm ? cfg->rms_norm_eps : 1e-6;
    if ((rc = ms_config_parse_rope(jc, o, true, cfg->max_position_embeddings, &d->rope)) < 0) return rc;
    if (d->rope.type == MS_ROPE_LLAMA3)
        return ms_errf(err, EINVAL, "%s: rope scaling \"llama3\" is not supported by %s (yarn, linear, default)", what,
                       cfg->model_type);
    if ((rc = ms_json_bool(jc, o, "attention_bias", false, &d->attention_bias)) < 0) return rc;
    return 0;
}

static void ds3_describe(const ms_config *c, ms_strbuf *text, json_object *json)
{
    const ms_ds3_config *d = c->arch;
    ms_sb_printf(text, "widths       hidden %d, vocab %d, heads %d, q_lora %s%d, kv_lora %d, nope/rope/v %d/%d/%d\n",
                 c->hidden_size, c->vocab_size, d->n_heads, d->q_lora_rank ? "" : "null ", d->q_lora_rank,
                 d->kv_lora_rank, d->qk_nope_head_dim, d->qk_rope_head_dim, d->v_head_dim);
    if (c->n_routed_experts)
        ms_sb_printf(text, "router       sigmoid + correction bias, groups %d keep %d, scaling %g%s\n", d->n_group,
                     d->topk_group, d->routed_scaling_factor, d->norm_topk_prob ? ", normalized" : "");
    ms_sb_printf(text, "rope         theta %g%s", d->rope.theta, d->rope.type == MS_ROPE_YARN ? ", YaRN" : "");
    if (d->rope.type == MS_ROPE_YARN)
        ms_sb_printf(text, " factor %g over %lld", d->rope.factor, (long long)d->rope.orig_max_pos);
    ms_sb_printf(text, ", max positions %lld\n", (long long)c->max_position_embeddings);
    json_object_object_add(json, "n_heads", json_object_new_int(d->n_heads));
    json_object_object_add(json, "q_lora_rank", d->q_lora_rank ? json_object_new_int(d->q_lora_rank) : NULL);
    json_object_object_add(json, "kv_lora_rank", json_object_new_int(d->kv_lora_rank));
    json_object_object_add(json, "n_group", json_object_new_int(d->n_group));
    json_object_object_add(json, "topk_group", json_object_new_int(d->topk_group));
}

/* ---- weights ------------------------------------------------------------ */

typedef struct ds3_layer {
    bool moe;
    const float *attn_norm;   /* [D] */
    const float *ffn_norm;    /* [D] */
    /* attention */
    ms_mat q_a;               /* [q_lora, D]            (q_lora_rank > 0) */
    const float *q_a_norm;    /* [q_lora] */
    ms_mat q_b;               /* [H*(nope+rope), q_lora] */
    ms_mat q;                 /* [H*(nope+rope), D]     (q_lora_rank == 0) */
    ms_mat kv_a;              /* [kv_lora + rope, D] */
    const float *kv_a_norm;   /* [kv_lora] */
    bool split_mla;           /* embed_q/unembed_out (else kv_b_proj rows) */
    ms_mat *wk;               /* [H]: split: embed_q[h] [kv_lora, nope]; legacy: W_UK[h] [nope, kv_lora] */
    ms_mat *wv;               /* [H]: [v, kv_lora] */
    ms_mat o;                 /* [D, H*v] */
    /* dense MLP */
    ms_mat gate, up, down;    /* [I, D], [I, D], [D, I] */
    /* MoE */
    ms_mat router;            /* [E, D] */
    const float *router_bias; /* [E] (NULL = zeros) */
    ms_mat sh_gate, sh_up, sh_down; /* [S, D], [S, D], [D, S] */
    ms_moe_block blk;         /* experts + shared expert, for moe.c */
} ds3_layer;

typedef struct ds3_weights {
    const ms_model *m;
    const ms_config *c;
    const ms_ds3_config *d;
    int D, H, nope, rope, vd, kvl, qdim, E, K;
    float scale;              /* softmax scale incl. YaRN mscale */
    float rope_mscale;        /* YaRN magnitude factor on cos/sin */
    double *inv_freq;         /* [rope/2] */
    ms_mat embed;             /* [vocab, D] */
    ms_mat lm_head;           /* [vocab, D] */
    const float *final_norm;  /* [D] */
    ds3_layer *layers;        /* [n_layers + n_mtp]: the MTP decoder blocks after the main ones */
    int n_mtp;                /* MTP layers bound (cfg->mtp_layers) */
    struct ds3_mtp {
        const float *enorm, *hnorm; /* [D] norms of the embedding / hidden half */
        ms_mat eh_proj;             /* [D, 2D]: columns 0..D-1 take enorm(e), D..2D-1 hnorm(h) */
        const float *head_norm;     /* [D] shared_head.norm (lm_head is the main one's copy) */
    } *mtp;                   /* [n_mtp] */
    float *vecs;              /* f32 copies of norm / bias vectors */
    ms_mat *head_mats;        /* storage for wk / wv */
} ds3_weights;

static void ds3_unbind(void *wp)
{
    ds3_weights *w = wp;
    if (!w) return;
    free(w->inv_freq);
    free(w->layers);
    free(w->vecs);
    free(w->head_mats);
    free(w->mtp);
    free(w);
}

/* One decoder block (model layer l: a main layer, or an MTP layer's block). */
static int bind_layer(const ms_model *m, const ms_resident *r, ds3_weights *w, int l, float **cursor, ms_err *err)
{
    const ms_config *c = w->c;
    const ms_ds3_config *d = w->d;
    int D = w->D, H = w->H, rc;
    float *vc = *cursor;
    char name[256];
    ds3_layer *ly = &w->layers[l];
    char p[128];
    snprintf(p, sizeof p, "model.layers.%d", l);
#define NAME(fmt) (snprintf(name, sizeof name, "%s." fmt, p), name)
    if ((rc = ms_arch_bind_vec(m, r, NAME("input_layernorm.weight"), D, &vc, &ly->attn_norm, err)) < 0) return rc;
    if ((rc = ms_arch_bind_vec(m, r, NAME("post_attention_layernorm.weight"), D, &vc, &ly->ffn_norm, err)) < 0) return rc;
    /* attention */
    int64_t qrows = (int64_t)H * w->qdim;
    if (d->q_lora_rank > 0) {
        if ((rc = ms_arch_bind_mat(m, r, NAME("self_attn.q_a_proj"), d->q_lora_rank, D, &ly->q_a, err)) < 0) return rc;
        if ((rc = ms_arch_bind_vec(m, r, NAME("self_attn.q_a_layernorm.weight"), d->q_lora_rank, &vc, &ly->q_a_norm,
                           err)) < 0)
            return rc;
        if ((rc = ms_arch_bind_mat(m, r, NAME("self_attn.q_b_proj"), qrows, d->q_lora_rank, &ly->q_b, err)) < 0) return rc;
    } else {
        if ((rc = ms_arch_bind_mat(m, r, NAME("self_attn.q_proj"), qrows, D, &ly->q, err)) < 0) return rc;
    }
    if ((rc = ms_arch_bind_mat(m, r, NAME("self_attn.kv_a_proj_with_mqa"), w->kvl + w->rope, D, &ly->kv_a, err)) < 0)
        return rc;
    if ((rc = ms_arch_bind_vec(m, r, NAME("self_attn.kv_a_layernorm.weight"), w->kvl, &vc, &ly->kv_a_norm, err)) < 0)
        return rc;
    ly->wk = &w->head_mats[(size_t)l * 2 * H];
    ly->wv = ly->wk + H;
    if (ms_model_find(m, "%s.self_attn.embed_q.weight", p)) {
        ms_linear eq, uo;
        ly->split_mla = true;
        if ((rc = ms_model_linear(m, NAME("self_attn.embed_q"), H, w->kvl, w->nope, &eq, err)) < 0) return rc;
        if ((rc = ms_model_linear(m, NAME("self_attn.unembed_out"), H, w->vd, w->kvl, &uo, err)) < 0) return rc;
        for (int h = 0; h < H; h++) {
            ly->wk[h] = ms_linear_mat(&eq, h, ms_resident_data(r, m, eq.w), ms_resident_data(r, m, eq.scales),
                                      ms_resident_data(r, m, eq.biases));
            ly->wv[h] = ms_linear_mat(&uo, h, ms_resident_data(r, m, uo.w), ms_resident_data(r, m, uo.scales),
                                      ms_resident_data(r, m, uo.biases));
        }
    } else {
        ms_mat kvb;
        if ((rc = ms_arch_bind_mat(m, r, NAME("self_attn.kv_b_proj"), (int64_t)H * (w->nope + w->vd), w->kvl, &kvb,
                           err)) < 0)
            return rc;
        for (int h = 0; h < H; h++) {
            ly->wk[h] = ms_mat_rows(&kvb, (int64_t)h * (w->nope + w->vd), w->nope);
            ly->wv[h] = ms_mat_rows(&kvb, (int64_t)h * (w->nope + w->vd) + w->nope, w->vd);
        }
    }
    if ((rc = ms_arch_bind_mat(m, r, NAME("self_attn.o_proj"), D, (int64_t)H * w->vd, &ly->o, err)) < 0) return rc;
    /* feed-forward */
    ly->moe = ms_config_is_moe_layer(c, l);
    if (!ly->moe) {
        int I = c->intermediate_size;
        if ((rc = ms_arch_bind_mat(m, r, NAME("mlp.gate_proj"), I, D, &ly->gate, err)) < 0) return rc;
        if ((rc = ms_arch_bind_mat(m, r, NAME("mlp.up_proj"), I, D, &ly->up, err)) < 0) return rc;
        if ((rc = ms_arch_bind_mat(m, r, NAME("mlp.down_proj"), D, I, &ly->down, err)) < 0) return rc;
    } else {
        ly->blk.experts = ms_model_moe(m, l);
        if ((rc = ms_arch_bind_mat(m, r, NAME("mlp.gate"), w->E, D, &ly->router, err)) < 0) return rc;
        ly->router_bias = NULL;
        if (ms_model_find(m, "%s.mlp.gate.e_score_correction_bias", p)) {
            if ((rc = ms_arch_bind_vec(m, r, NAME("mlp.gate.e_score_correction_bias"), w->E, &vc, &ly->router_bias,
                               err)) < 0)
                return rc;
        }
        if (c->n_shared_experts > 0) {
            int S = c->n_shared_experts * c->moe_intermediate_size;
            if ((rc = ms_arch_bind_mat(m, r, NAME("mlp.shared_experts.gate_proj"), S, D, &ly->sh_gate, err)) < 0) return rc;
            if ((rc = ms_arch_bind_mat(m, r, NAME("mlp.shared_experts.up_proj"), S, D, &ly->sh_up, err)) < 0) return rc;
            if ((rc = ms_arch_bind_mat(m, r, NAME("mlp.shared_experts.down_proj"), D, S, &ly->sh_down, err)) < 0)
                return rc;
            ly->blk.sh_gate = &ly->sh_gate;
            ly->blk.sh_up = &ly->sh_up;
            ly->blk.sh_down = &ly->sh_down;
        }
    }
#undef NAME
    *cursor = vc;
    return 0;
}

static int ds3_bind(const ms_model *m, const ms_resident *r, void **out, uint64_t *extra_bytes, ms_err *err)
{
    const ms_config *c = &m->cfg;
    const ms_ds3_config *d = ms_ds3_config_of(c);
    if (!d) return ms_errf(err, EINVAL, "%s: not a deepseek_v3-family config", m->dir);
    ds3_weights *w = calloc(1, sizeof *w);
    if (!w) return ms_errf(err, ENOMEM, "out of memory");
    w->m = m;
    w->c = c;
    w->d = d;
    w->D = c->hidden_size;
    w->H = d->n_heads;
    w->nope = d->qk_nope_head_dim;
    w->rope = d->qk_rope_head_dim;
    w->vd = d->v_head_dim;
    w->kvl = d->kv_lora_rank;
    w->qdim = w->nope + w->rope;
    w->E = c->n_routed_experts;
    w->K = c->n_experts_per_tok;
    w->scale = (float)ms_ds3_softmax_scale(d);
    int L = c->n_layers, D = w->D, H = w->H;
    w->n_mtp = c->mtp_layers;
    int LA = L + w->n_mtp; /* layers with a decoder block */
    int rc = 0;
    if (d->attention_bias) {
        rc = ms_errf(err, ENOTSUP, "%s/config.json: attention_bias: true is not supported", m->dir);
        goto fail;
    }
    w->inv_freq = calloc((size_t)w->rope / 2, sizeof *w->inv_freq);
    w->layers = calloc((size_t)LA, sizeof *w->layers);
    w->mtp = calloc((size_t)MS_MAX(1, w->n_mtp), sizeof *w->mtp);
    size_t nvec = (size_t)D + (size_t)LA * (2 * (size_t)D + (size_t)d->q_lora_rank + (size_t)w->kvl + (size_t)w->E) +
                  (size_t)w->n_mtp * 3 * (size_t)D;
    w->vecs = malloc(nvec * sizeof(float));
    w->head_mats = calloc((size_t)LA * 2 * (size_t)H, sizeof(ms_mat));
    if (!w->inv_freq || !w->layers || !w->mtp || !w->vecs || !w->head_mats) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto fail;
    }
    *extra_bytes = nvec * sizeof(float) + (size_t)LA * 2 * (size_t)H * sizeof(ms_mat);
    ms_rope_inv_freq(&d->rope, d->rope.theta, w->rope, w->inv_freq, &w->rope_mscale);
    float *vc = w->vecs;
    char name[256];

    if ((rc = ms_arch_bind_mat(m, r, "model.embed_tokens", c->vocab_size, D, &w->embed, err)) < 0) goto fail;
    if ((rc = ms_arch_bind_vec(m, r, "model.norm.weight", D, &vc, &w->final_norm, err)) < 0) goto fail;
    if (ms_model_find(m, "lm_head.weight")) {
        if ((rc = ms_arch_bind_mat(m, r, "lm_head", c->vocab_size, D, &w->lm_head, err)) < 0) goto fail;
    } else if (c->tie_word_embeddings) {
        w->lm_head = w->embed;
    } else {
        rc = ms_errf(err, ENOENT, "%s: tensor lm_head.weight is missing (and tie_word_embeddings is false)", m->dir);
        goto fail;
    }
    for (int l = 0; l < L; l++)
        if ((rc = bind_layer(m, r, w, l, &vc, err)) < 0) goto fail;
    /* MTP draft head(s): enorm, hnorm, eh_proj, shared_head.norm + a decoder block */
    for (int i = 0; i < w->n_mtp; i++) {
        int l = c->n_layers + i;
        struct ds3_mtp *mt = &w->mtp[i];
        snprintf(name, sizeof name, "model.layers.%d.enorm.weight", l);
        if ((rc = ms_arch_bind_vec(m, r, name, D, &vc, &mt->enorm, err)) < 0) goto fail;
        snprintf(name, sizeof name, "model.layers.%d.hnorm.weight", l);
        if ((rc = ms_arch_bind_vec(m, r, name, D, &vc, &mt->hnorm, err)) < 0) goto fail;
        snprintf(name, sizeof name, "model.layers.%d.shared_head.norm.weight", l);
        if ((rc = ms_arch_bind_vec(m, r, name, D, &vc, &mt->head_norm, err)) < 0) goto fail;
        snprintf(name, sizeof name, "model.layers.%d.eh_proj", l);
        if ((rc = ms_arch_bind_mat(m, r, name, D, 2 * (int64_t)D, &mt->eh_proj, err)) < 0) goto fail;
        if ((rc = bind_layer(m, r, w, l, &vc, err)) < 0) goto fail;
    }
    *out = w;
    return 0;
fail:
    ds3_unbind(w);
    return rc;
}

/* ---- state: KV cache + scratch ------------------------------------------ */

/* Tiles of the naive-form attention: query rows and keys per score tile. */
#define NV_ROWS 64
#define NV_KEYS 256

/* Every buffer of the state: X(name, type, element count). One list drives the
 * struct, the allocation and the size report (plan uses the size before
 * anything is allocated). The MoE block's scratch (moe.c) comes on top. */
#define DS3_BUFFERS(X)                                                                          \
    X(ckv, float, KL * ctx * kvl)          /* [S][L][ctx][kv_lora] normalized latents (f32 KV), or */ \
    X(kpe, float, KL * ctx * rope)         /* [S][L][ctx][rope] rotated rope keys; with a bf16 KV: */ \
                                           /* one sequence's layer rows widened for attention */  \
    X(ckv16, uint16_t, BL * ctx * kvl)     /* [S][L][ctx][kv_lora] bf16 KV cache (--kv bf16) */   \
    X(kpe16, uint16_t, BL * ctx * rope)    /* [S][L][ctx][rope] */                               \
    X(h, float, B * D)                     /* [B][D] residual stream */                          \
    X(x, float, B * D)                     /* [B][D] normed input */                             \
    X(qa, float, B * qlr)                  /* [B][q_lora] */                                     \
    X(q, float, B * H * qdim)              /* [B][H][nope+rope] */                               \
    X(kv, float, B * (kvl + rope))         /* [B][kv_lora+rope] */                               \
    X(o, float, B * H * vd)                /* [B][H][v] */                                       \
    X(attn, float, B * D)                  /* [B][D] */                                          \
    X(cosb, float, B * rope / 2)           /* [B][rope/2] */                                     \
    X(sinb, float, B * rope / 2)           /* [B][rope/2] */                                     \
    X(tls, float, nth * tls_stride)        /* [nth][2 kv_lora + 2 ctx + rope] per-thread */        \
    X(nv, float, nth * nv_stride)          /* [nth] naive-form prefill scratch (B > 1): W_UK and */ \
                                           /* W_UV of a head [kv_lora][nope+v], a key tile's */    \
                                           /* K [NV_KEYS][nope] and V [NV_KEYS][v], scores */      \
                                           /* [NV_ROWS][NV_KEYS], O [B][v], max [B], sum [B] */    \
    X(ffn_out, float, B * D)               /* [B][D] */                                          \
    X(rlog, float, B * E)                  /* [B][E] router logits */                            \
    X(rtmp, float, 2 * E)                  /* [2E] router scratch */                             \
    X(px, float, D)                        /* [D] hidden state normed for the next router */     \
    X(pwt, float, K)                       /* [K] weights of a prediction (unused) */            \
    X(cat, float, M * B * 2 * D)           /* [B][2D] MTP: enorm(e) | hnorm(h) */

typedef struct ds3_state {
    const ds3_weights *w;
    int ctx, batch, n_seq, nth;
    bool kv_bf16;
    size_t tls_stride, nv_stride;
    ms_moe *moe;
    ms_moe_router router;
#define X(name, type, count) type *name;
    DS3_BUFFERS(X)
#undef X
} ds3_state;

/* The sizes the list above needs. */
#define DS3_DIMS(c, d, ctx_, batch_, nseq_, nth_, kvbf_)                                                    \
    size_t L = (size_t)ms_config_n_layers_all(c), M = (size_t)((c)->mtp_layers > 0);                        \
    size_t ctx = (size_t)(ctx_), B = (size_t)(batch_), nth = (size_t)(nth_);                               \
    size_t S = (size_t)(nseq_);                                                                             \
    size_t KL = (kvbf_) ? 1 : S * L, BL = (kvbf_) ? S * L : 0;                                              \
    size_t D = (size_t)(c)->hidden_size, H = (size_t)(d)->n_heads, kvl = (size_t)(d)->kv_lora_rank;          \
    size_t rope = (size_t)(d)->qk_rope_head_dim, vd = (size_t)(d)->v_head_dim;                              \
    size_t qdim = (size_t)((d)->qk_nope_head_dim + (d)->qk_rope_head_dim);                                  \
    size_t qlr = (size_t)MS_MAX(1, (d)->q_lora_rank);                                                       \
    size_t E = (size_t)MS_MAX(1, (c)->n_routed_experts), K = (size_t)MS_MAX(1, (c)->n_experts_per_tok);    \
    size_t tls_stride = MS_ALIGN_UP(kvl * 2 + 2 * ctx + rope + 16, 16);                                          \
    size_t nope_ = (size_t)(d)->qk_nope_head_dim;                                                           \
    size_t nv_stride = B > 1 ? MS_ALIGN_UP(kvl * (nope_ + vd) + NV_KEYS * (nope_ + vd + NV_ROWS) + B * (vd + 2), 16) \
                             : 0;                                                                            \
    (void)L; (void)ctx; (void)B; (void)nth; (void)D; (void)H; (void)kvl; (void)rope; (void)vd; (void)qdim;   \
    (void)KL; (void)BL; (void)qlr; (void)E; (void)K; (void)tls_stride; (void)S; (void)M; (void)nv_stride

/* The MoE scratch's dims; its FFN scratch also serves the dense MLPs. */
static ms_moe_dims moe_dims(const ms_config *c, int batch)
{
    int widest = MS_MAX(c->intermediate_size, c->moe_intermediate_size * MS_MAX(1, c->n_shared_experts));
    widest = MS_MAX(widest, c->moe_intermediate_size);
    return (ms_moe_dims){.n_layers = ms_config_n_layers_all(c), .D = c->hidden_size, .E = MS_MAX(1, c->n_routed_experts),
                         .K = MS_MAX(1, c->n_experts_per_tok), .batch = batch, .ffn_widest = widest};
}

static uint64_t ds3_state_bytes(const ms_config *c, int ctx_, int batch_, int n_seq, int nth_, bool kv_bf16,
                                uint64_t *kv_bytes)
{
    const ms_ds3_config *d = c->arch;
    DS3_DIMS(c, d, ctx_, batch_, MS_MAX(1, n_seq), nth_ > 0 ? nth_ : 1, kv_bf16);
    uint64_t total = 0;
#define X(name, type, count) total += (uint64_t)MS_MAX((size_t)(count), (size_t)1) * sizeof(type);
    DS3_BUFFERS(X)
#undef X
    ms_moe_dims md = moe_dims(c, batch_);
    total += ms_moe_bytes(&md);
    if (kv_bytes) *kv_bytes = (uint64_t)S * L * ctx * (kvl + rope) * (kv_bf16 ? sizeof(uint16_t) : sizeof(float));
    return total;
}

static void ds3_state_destroy(void *sp)
{
    ds3_state *s = sp;
    if (!s) return;
#define X(name, type, count) free(s->name);
    DS3_BUFFERS(X)
#undef X
    ms_moe_destroy(s->moe);
    free(s);
}

static int ds3_route(void *fam, const ms_fwd_env *env, int layer, const float *x, const int *tokens, int n, int *ids,
                     float *wts, ms_err *err);
static int ds3_predict(void *fam, const ms_fwd_env *env, int layer, int *ids);

static int ds3_state_create(const void *wp, int ctx_, int batch_, int n_seq, int nthreads, bool kv_bf16, void **out,
                            uint64_t *bytes, ms_err *err)
{
    const ds3_weights *w = wp;
    const ms_config *c = w->c;
    if (ctx_ <= 0 || batch_ <= 0 || n_seq <= 0)
        return ms_errf(err, EINVAL, "context, batch and sequences must be positive");
    ds3_state *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "out of memory");
    s->w = w;
    s->ctx = ctx_;
    s->batch = batch_;
    s->n_seq = n_seq;
    s->nth = nthreads > 0 ? nthreads : 1;
    s->kv_bf16 = kv_bf16;
    s->router = (ms_moe_router){.fam = s, .route = ds3_route, .predict = ds3_predict};
    DS3_DIMS(c, w->d, ctx_, batch_, n_seq, s->nth, kv_bf16);
    s->tls_stride = tls_stride;
    s->nv_stride = nv_stride;
#define X(name, type, count)                                                   \
    s->name = calloc(MS_MAX((size_t)(count), (size_t)1), sizeof(type));        \
    if (!s->name) goto oom;
    DS3_BUFFERS(X)
#undef X
    ms_moe_dims md = moe_dims(c, batch_);
    int rc = ms_moe_create(&md, &s->moe, err);
    if (rc < 0) {
        ds3_state_destroy(s);
        return rc;
    }
    *out = s;
    if (bytes) *bytes = ds3_state_bytes(c, ctx_, batch_, n_seq, s->nth, kv_bf16, NULL);
    return 0;
oom:
    ds3_state_destroy(s);
    return ms_errf(err, ENOMEM, "cannot allocate the KV cache / scratch for ctx %d, batch %d", ctx_, batch_);
}

/* ---- pieces of the forward pass ------------------------------------------ */

static void rope_pair_rotate(float *x, int d, const float *cs, const float *sn)
{
    ms_rope_interleaved(x, d, cs, sn);
}

typedef struct attn_task {
    const ds3_weights *w;
    const ds3_layer *ly;
    ds3_state *s;
    const ms_kern *kern;
    const ms_batch *b;
    int layer, r0, n;      /* rows r0 .. r0+n-1 of the step */
} attn_task;

/* First cache row of (sequence, layer): f32 caches hold every (sequence, layer);
 * a bf16 cache's f32 staging holds the one (sequence, layer) being attended. */
static size_t cache_base(const ds3_state *s, int seq, int layer, bool staging)
{
    if (staging) return 0;
    return ((size_t)seq * (size_t)ms_config_n_layers_all(s->w->c) + (size_t)layer) * (size_t)s->ctx;
}

/* One (token, head): absorbed attention over positions 0..pos. */
static void attn_one(attn_task *t, int idx, float *tls)
{
    const ds3_weights *w = t->w;
    const ds3_layer *ly = t->ly;
    ds3_state *s = t->s;
    int H = w->H, kvl = w->kvl, rope = w->rope, nope = w->nope;
    int ti = t->r0 + idx / H, h = idx % H, pos = t->b->pos[ti];
    const float *qh = s->q + ((size_t)ti * H + h) * w->qdim; /* q_nope | q_pe (already rotated) */
    float *qlat = tls;             /* [kvl] */
    float *olat = tls + kvl;       /* [kvl] */
    float *sc = tls + 2 * kvl;     /* [pos+1] scores */
    float *sr = sc + s->ctx;       /* [pos+1] their rope parts */
    (void)rope;
    ms_compute single = {t->kern, NULL};
    /* q_lat = W_UK^T q_nope */
    if (ly->split_mla) {
        ms_matvec(&single, &ly->wk[h], qh, qlat);
    } else {
        /* W_UK[h] is [nope, kvl]: accumulate rows weighted by q_nope, in row order. */
        memset(qlat, 0, (size_t)kvl * sizeof *qlat);
        float *tmp = olat; /* borrow */
        for (int i = 0; i < nope; i++) {
            ms_mat_get_row(t->kern, &ly->wk[h], i, tmp);
            ms_axpy_f32(t->kern, qlat, qh[i], tmp, kvl);
        }
    }
    size_t lo = cache_base(s, ms_arch_row_seq(t->b, ti), t->layer, s->kv_bf16);
    const float *ckv = s->ckv + lo * kvl;
    const float *kpe = s->kpe + lo * w->rope;
    const float *qpe = qh + nope;
    /* scores: the cached latents and rope keys against q (SIMD row dots) */
    ms_rows_dot_f32(t->kern, ckv, pos + 1, kvl, qlat, sc);
    ms_rows_dot_f32(t->kern, kpe, pos + 1, w->rope, qpe, sr);
    for (int j = 0; j <= pos; j++) sc[j] = w->scale * (sc[j] + sr[j]);
    ms_softmax(sc, pos + 1);
    /* o_lat = sum_j p_j c_j, in position order */
    memset(olat, 0, (size_t)kvl * sizeof *olat);
    for (int j = 0; j <= pos; j++) ms_axpy_f32(t->kern, olat, sc[j], ckv + (size_t)j * kvl, kvl);
    ms_matvec(&single, &ly->wv[h], olat, s->o + ((size_t)ti * H + h) * w->vd);
}

static void attn_index(void *arg, int idx, int tid)
{
    attn_task *t = arg;
    attn_one(t, idx, t->s->tls + (size_t)tid * t->s->tls_stride);
}

/* MLA in the naive form, for a prefill chunk of one sequence (rows at
 * positions p0 .. p0+n-1, keys 0 .. P-1 = p0+n-1): per head and tile of
 * NV_KEYS keys, decompress the cached latents into K_nope and V, then GEMMs:
 *   S = scale (Q_nope K_nope^T + Q_pe K_pe^T)   [rows][keys], causal
 *   O += softmax-so-far(S) V                    online softmax (running max, sum)
 * Fewer operations than the absorbed form once many queries share the keys
 * (naive_cheaper), GEMM-shaped, scratch independent of the context length.
 * Same result within float rounding; tiles depend on the shape only, so the
 * result does not depend on the thread count. */
typedef struct naive_task {
    const ds3_weights *w;
    const ds3_layer *ly;
    ds3_state *s;
    const ms_kern *kern;
    const float *ckv, *kpe;  /* [P][kv_lora], [P][rope]: the sequence's layer cache (f32) */
    int n, p0, P;
} naive_task;

static bool naive_cheaper(const ds3_weights *w, int n, int P)
{
    double kvl = w->kvl, nope = w->nope, rope = w->rope, vd = w->vd;
    double absorbed = (double)n * (nope * kvl + (double)P * (2 * kvl + rope) + vd * kvl);
    double naive = (double)P * kvl * (nope + vd) + (double)n * (double)P * (nope + rope + vd) + kvl * (nope + vd);
    return naive < absorbed;
}

static void naive_head(naive_task *t, int h, float *scr)
{
    const ds3_weights *w = t->w;
    const ds3_layer *ly = t->ly;
    ds3_state *s = t->s;
    int H = w->H, kvl = w->kvl, nope = w->nope, rope = w->rope, vd = w->vd, n = t->n, P = t->P;
    float *wk = scr;                              /* split: [kv_lora][nope]; else [nope][kv_lora] */
    float *wv = wk + (size_t)kvl * nope;          /* [v][kv_lora] */
    float *K = wv + (size_t)kvl * vd;             /* [NV_KEYS][nope] this key tile's K_nope */
    float *V = K + (size_t)NV_KEYS * nope;        /* [NV_KEYS][v] */
    float *S = V + (size_t)NV_KEYS * vd;          /* [NV_ROWS][NV_KEYS] scores of a query tile */
    float *O = S + (size_t)NV_ROWS * NV_KEYS;     /* [n][v] running output */
    float *mx = O + (size_t)n * vd;               /* [n] running max of each row's scores */
    float *sum = mx + n;                          /* [n] running softmax denominator */
    int ldq = H * w->qdim;
    /* 1. this head's W_UK and W_UV in f32 */
    int wk_rows = ly->split_mla ? kvl : nope;
    for (int r = 0; r < wk_rows; r++) ms_mat_get_row(t->kern, &ly->wk[h], r, wk + (size_t)r * ly->wk[h].cols);
    for (int r = 0; r < vd; r++) ms_mat_get_row(t->kern, &ly->wv[h], r, wv + (size_t)r * kvl);
    memset(O, 0, (size_t)n * vd * sizeof *O);
    for (int i = 0; i < n; i++) {
        mx[i] = -INFINITY;
        sum[i] = 0.0f;
    }
    /* 2. one key tile at a time (online softmax: scratch independent of the context) */
    for (int k0 = 0; k0 < P; k0 += NV_KEYS) {
        int kt = MS_MIN(NV_KEYS, P - k0);
        /* 2a. decompress the tile: K_nope = C W_UK^T, V = C W_UV^T */
        const float *C = t->ckv + (size_t)k0 * kvl;
        ms_sgemm(false, !ly->split_mla, kt, nope, kvl, 1.0f, C, kvl, wk, ly->split_mla ? nope : kvl, 0.0f, K, nope);
        ms_sgemm(false, true, kt, vd, kvl, 1.0f, C, kvl, wv, kvl, 0.0f, V, vd);
        /* 2b. per query tile that sees any of these keys */
        for (int i0 = 0; i0 < n; i0 += NV_ROWS) {
            int m = MS_MIN(NV_ROWS, n - i0);
            if (t->p0 + i0 + m - 1 < k0) continue; /* causal: none of its rows reaches this tile */
            const float *q = s->q + (size_t)i0 * ldq + (size_t)h * w->qdim;
            ms_sgemm(false, true, m, kt, nope, w->scale, q, ldq, K, nope, 0.0f, S, kt);
            ms_sgemm(false, true, m, kt, rope, w->scale, q + nope, ldq, t->kpe + (size_t)k0 * rope, rope, 1.0f, S, kt);
            for (int i = 0; i < m; i++) {
                int r = i0 + i, valid = MS_MIN(kt, t->p0 + r - k0 + 1); /* keys k0 .. p0+r */
                float *row = S + (size_t)i * kt;
                if (valid <= 0) {
                    memset(row, 0, (size_t)kt * sizeof *row);
                    continue;
                }
                float nm = mx[r];
                for (int j = 0; j < valid; j++) nm = fmaxf(nm, row[j]);
                float f = expf(mx[r] - nm); /* rescale what the earlier tiles summed */
                sum[r] *= f;
                for (int c = 0; c < vd; c++) O[(size_t)r * vd + c] *= f;
                mx[r] = nm;
                float add = 0.0f;
                for (int j = 0; j < valid; j++) {
                    row[j] = expf(row[j] - nm);
                    add += row[j];
                }
                for (int j = valid; j < kt; j++) row[j] = 0.0f;
                sum[r] += add;
            }
            ms_sgemm(false, false, m, vd, kt, 1.0f, S, kt, V, vd, 1.0f, O + (size_t)i0 * vd, vd);
        }
    }
    /* 3. O / sum into the head's slot of each row */
    for (int r = 0; r < n; r++) {
        float inv = 1.0f / sum[r];
        float *dst = s->o + ((size_t)r * H + h) * vd;
        for (int c = 0; c < vd; c++) dst[c] = O[(size_t)r * vd + c] * inv;
    }
}

static void naive_index(void *arg, int h, int tid)
{
    naive_task *t = arg;
    naive_head(t, h, t->s->nv + (size_t)tid * t->s->nv_stride);
}

/* h[n][D] += MLA(x[n][D]) for the step's rows; writes the layer's KV cache. */
static void attention(const ds3_weights *w, const ds3_layer *ly, ds3_state *s, const ms_fwd_env *env, int layer,
                      const ms_batch *b)
{
    const ms_ds3_config *c = w->d;
    const ms_compute *cp = &env->compute;
    int n = b->n, H = w->H, kvl = w->kvl, rope = w->rope, half = rope / 2;
    /* 1. queries */
    if (c->q_lora_rank > 0) {
        ms_arch_linear(env, &ly->q_a, s->x, n, s->qa);
        for (int t = 0; t < n; t++) {
            float *r = s->qa + (size_t)t * c->q_lora_rank;
            ms_rmsnorm(r, r, ly->q_a_norm, c->q_lora_rank, (float)c->latent_norm_eps);
        }
        ms_arch_linear(env, &ly->q_b, s->qa, n, s->q);
    } else {
        ms_arch_linear(env, &ly->q, s->x, n, s->q);
    }
    /* 2. latent kv */
    ms_arch_linear(env, &ly->kv_a, s->x, n, s->kv);
    /* 3. rope tables for the rows' positions */
    for (int t = 0; t < n; t++)
        for (int i = 0; i < half; i++) {
            double a = (double)b->pos[t] * w->inv_freq[i];
            s->cosb[(size_t)t * half + i] = (float)cos(a) * w->rope_mscale;
            s->sinb[(size_t)t * half + i] = (float)sin(a) * w->rope_mscale;
        }
    /* 4. write the cache: normalized latent + rotated k_pe; rotate q_pe */
    for (int t = 0; t < n; t++) {
        const float *cs = s->cosb + (size_t)t * half, *sn = s->sinb + (size_t)t * half;
        float *kvt = s->kv + (size_t)t * (kvl + rope);
        size_t at = cache_base(s, ms_arch_row_seq(b, t), layer, false) + (size_t)b->pos[t];
        size_t row = s->kv_bf16 ? (size_t)b->pos[t] : at; /* bf16: f32 staging row */
        float *ck = s->ckv + row * kvl;
        float *kp = s->kpe + row * rope;
        ms_rmsnorm(ck, kvt, ly->kv_a_norm, kvl, (float)c->latent_norm_eps);
        memcpy(kp, kvt + kvl, (size_t)rope * sizeof *kp);
        rope_pair_rotate(kp, rope, cs, sn);
        if (s->kv_bf16) { /* store rounded; attention below reads the rounded values back */
            for (int i = 0; i < kvl; i++) s->ckv16[at * kvl + i] = ms_f32_to_bf16(ck[i]);
            for (int i = 0; i < rope; i++) s->kpe16[at * rope + i] = ms_f32_to_bf16(kp[i]);
        }
        for (int h = 0; h < H; h++) rope_pair_rotate(s->q + ((size_t)t * H + h) * w->qdim + w->nope, rope, cs, sn);
    }
    /* 5-6. attention per (row, head); a bf16 cache first widens one sequence's
     *      rows 0 .. its last position into the f32 staging rows, so it goes one
     *      run of same-sequence rows at a time. A prefill chunk of one sequence
     *      takes the naive form when that is cheaper. */
    int P = b->pos[n - 1] + 1;
    bool one_run = n > 1 && ms_arch_row_seq(b, 0) == ms_arch_row_seq(b, n - 1) && b->pos[n - 1] - b->pos[0] == n - 1;
    if (!env->exact && one_run && s->nv_stride && naive_cheaper(w, n, P)) {
        size_t base = cache_base(s, ms_arch_row_seq(b, 0), layer, false);
        if (s->kv_bf16) {
            for (size_t j = 0; j < (size_t)P * kvl; j++) s->ckv[j] = ms_bf16_to_f32(s->ckv16[base * kvl + j]);
            for (size_t j = 0; j < (size_t)P * rope; j++) s->kpe[j] = ms_bf16_to_f32(s->kpe16[base * rope + j]);
            base = 0;
        }
        naive_task nt = {.w = w, .ly = ly, .s = s, .kern = cp->kern, .ckv = s->ckv + base * kvl,
                         .kpe = s->kpe + base * rope, .n = n, .p0 = b->pos[0], .P = P};
        ms_pool_for(cp->pool, w->H, naive_index, &nt);
    } else {
        for (int r0 = 0; r0 < n;) {
            int r1 = r0 + 1;
            if (s->kv_bf16) {
                while (r1 < n && ms_arch_row_seq(b, r1) == ms_arch_row_seq(b, r0)) r1++;
                size_t nrow = (size_t)b->pos[r1 - 1] + 1, base = cache_base(s, ms_arch_row_seq(b, r0), layer, false);
                for (size_t j = 0; j < nrow * kvl; j++) s->ckv[j] = ms_bf16_to_f32(s->ckv16[base * kvl + j]);
                for (size_t j = 0; j < nrow * rope; j++) s->kpe[j] = ms_bf16_to_f32(s->kpe16[base * rope + j]);
            } else {
                r1 = n;
            }
            attn_task task = {.w = w, .ly = ly, .s = s, .kern = cp->kern, .b = b, .layer = layer, .r0 = r0,
                              .n = r1 - r0};
            ms_pool_for(cp->pool, (r1 - r0) * w->H, attn_index, &task);
            r0 = r1;
        }
    }
    /* 7. output projection, residual */
    ms_arch_linear(env, &ly->o, s->o, n, s->attn);
    for (size_t i = 0; i < (size_t)n * w->D; i++) s->h[i] += s->attn[i];
}

/* This layer's router on n tokens x[n][D]: ids[n][K] (best first), wts[n][K]. */
static void route(const ds3_weights *w, ds3_state *s, const ms_fwd_env *env, const ds3_layer *ly, const float *x,
                  int n, int *ids, float *wts)
{
    const ms_ds3_config *c = w->d;
    ms_sigmoid_router r = {.E = w->E, .K = w->K, .n_group = c->n_group, .topk_group = c->topk_group,
                           .norm = c->norm_topk_prob, .scale = c->routed_scaling_factor};
    ms_arch_route_sigmoid(env, &r, &ly->router, ly->router_bias, x, n, s->rlog, s->rtmp, ids, wts);
}

/* The router op (moe.h): this layer's router on the block's input. */
static int ds3_route(void *fam, const ms_fwd_env *env, int layer, const float *x, const int *tokens, int n, int *ids,
                     float *wts, ms_err *err)
{
    (void)tokens;
    ds3_state *s = fam;
    const ds3_weights *w = s->w;
    const ds3_layer *ly = &w->layers[layer];
    if (!ly->moe) return ms_errf(err, EINVAL, "layer %d is not a MoE layer", layer);
    route(w, s, env, ly, x, n, ids, wts);
    return 0;
}

/* The predict op (moe.h), one token: layer's router on the current residual
 * stream normed with layer's post-attention norm (the input it will see, up to
 * its own attention's contribution). */
static int ds3_predict(void *fam, const ms_fwd_env *env, int layer, int *ids)
{
    ds3_state *s = fam;
    const ds3_weights *w = s->w;
    if (layer >= w->c->n_layers || !w->layers[layer].moe) return 0;
    const ds3_layer *ny = &w->layers[layer];
    ms_rmsnorm(s->px, s->h, ny->ffn_norm, w->D, (float)w->c->rms_norm_eps);
    route(w, s, env, ny, s->px, 1, ids, s->pwt);
    return w->K;
}

/* One decoder block over the step's residual stream h[n][D] (layer l: main or MTP). */
static int block(const ds3_weights *w, ds3_state *s, const ms_fwd_env *env, int l, const ms_batch *b, ms_err *err)
{
    const ds3_layer *ly = &w->layers[l];
    int n = b->n, D = w->D;
    float eps = (float)w->c->rms_norm_eps;
    /* attention: h += MLA(rmsnorm(h)) */
    for (int t = 0; t < n; t++) ms_rmsnorm(s->x + (size_t)t * D, s->h + (size_t)t * D, ly->attn_norm, D, eps);
    attention(w, ly, s, env, l, b);
    /* feed-forward: h += MoE or MLP (rmsnorm(h)) */
    for (int t = 0; t < n; t++) ms_rmsnorm(s->x + (size_t)t * D, s->h + (size_t)t * D, ly->ffn_norm, D, eps);
    if (ly->moe) {
        int rc = ms_moe_forward(s->moe, env, &s->router, &ly->blk, l, s->x, b->tokens, n, s->ffn_out, err);
        if (rc < 0) return rc;
    } else {
        ms_ffn_act(&env->compute, &ly->gate, &ly->up, &ly->down, s->x, n, s->ffn_out, ms_moe_ffn_scratch(s->moe),
                   NULL, env->exact);
    }
    for (size_t i = 0; i < (size_t)n * D; i++) s->h[i] += s->ffn_out[i];
    return 0;
}

/* The forward pass over one step's rows (see ms_batch). */
static int ds3_forward(const void *wp, void *sp, const ms_fwd_env *env, const ms_batch *b, ms_err *err)
{
    const ds3_weights *w = wp;
    ds3_state *s = sp;
    const ms_config *c = w->c;
    int n = b->n, D = w->D, rc;
    if ((rc = ms_arch_check_rows(b, s->batch, s->n_seq, s->ctx, w->c->vocab_size, err)) < 0) return rc;
    /* 1. embeddings */
    for (int t = 0; t < n; t++) ms_mat_get_row(env->compute.kern, &w->embed, b->tokens[t], s->h + (size_t)t * D);
    /* 2. the decoder blocks */
    for (int l = 0; l < c->n_layers; l++)
        if ((rc = block(w, s, env, l, b, err)) < 0) return rc;
    /* 3. final norm (every row when the hidden states are wanted: MTP's input) + lm_head */
    if (b->hidden)
        for (int t = 0; t < n; t++)
            ms_rmsnorm(b->hidden + (size_t)t * D, s->h + (size_t)t * D, w->final_norm, D, (float)c->rms_norm_eps);
    if (b->logits) ms_arch_head(env, w->final_norm, &w->lm_head, b, s->h, s->x, (float)c->rms_norm_eps);
    return 0;
}

/* The MTP draft head (DeepSeek-V3 multi-token prediction, as vLLM's and
 * SGLang's deepseek_mtp compute it), row i = (token x at pos+1, hidden h at pos):
 *   u = eh_proj([enorm(embed(x)) | hnorm(h)])     embedding half first
 *   y = MTP decoder block over u (its own KV cache, RoPE position pos)
 *   logits = lm_head(shared_head.norm(y))         the draft for pos + 2
 * Routing of the MTP block is not reported to traces (they record the main
 * model's), and it does not prefetch. */
static int ds3_mtp_forward(const void *wp, void *sp, const ms_fwd_env *env0, const ms_batch *b, const float *hidden,
                           ms_err *err)
{
    const ds3_weights *w = wp;
    ds3_state *s = sp;
    int n = b->n, D = w->D, rc;
    float eps = (float)w->c->rms_norm_eps;
    if (w->n_mtp < 1) return ms_errf(err, EINVAL, "the model was opened without its MTP layer");
    if ((rc = ms_arch_check_rows(b, s->batch, s->n_seq, s->ctx, w->c->vocab_size, err)) < 0) return rc;
    ms_fwd_env env = *env0;
    env.on_route = env.on_predict = NULL;
    env.prefetch = false;
    const struct ds3_mtp *mt = &w->mtp[0];
    /* 1-2. u = eh_proj([enorm(embed(x)) | hnorm(h)]): the block's residual stream */
    ms_arch_mtp_fuse(&env, &w->embed, mt->enorm, mt->hnorm, &mt->eh_proj, b, hidden, s->x, s->cat, s->h, eps);
    /* 3. the MTP decoder block (layer index n_layers) */
    if ((rc = block(w, s, &env, w->c->n_layers, b, err)) < 0) return rc;
    /* 4. its output state (the next draft step's hidden) and the draft logits */
    if (b->hidden) memcpy(b->hidden, s->h, (size_t)n * D * sizeof(float));
    if (b->logits) ms_arch_head(&env, mt->head_norm, &w->lm_head, b, s->h, s->x, eps);
    return 0;
}

static const ms_arch_ops ds3_ops = {
    .name = "deepseek_v3",
    .bind = ds3_bind,
    .unbind = ds3_unbind,
    .state_create = ds3_state_create,
    .state_destroy = ds3_state_destroy,
    .state_bytes = ds3_state_bytes,
    .forward = ds3_forward,
    .mtp_forward = ds3_mtp_forward,
};

static const char *const ds3_types[] = {"deepseek_v3", "kimi_k2", "glm4_moe_lite", NULL};

const ms_family ms_family_deepseek_v3 = {
    .name = "deepseek_v3",
    .model_types = ds3_types,
    .moe_modules = NULL,
    .parse_config = ds3_parse_config,
    .describe = ds3_describe,
    .ops = &ds3_ops,
};

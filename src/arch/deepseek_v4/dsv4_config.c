/* dsv4_config.c - the DeepSeek-V4 family's config.json keys, its description
 * for `inspect`, the cache parts `plan` shows, and the family table.
 *
 * Keys (HF DeepseekV4Config as written by DeepSeek and the mlx-lm converter):
 * widths (head_dim, qk_rope_head_dim, q_lora_rank, o_groups, o_lora_rank),
 * sliding_window, compress_ratios (one per layer, optionally one more per MTP
 * layer, which is ignored), compress_rope_theta + rope_theta + rope_scaling,
 * the indexer (index_n_heads, index_head_dim, index_topk), the
 * hyper-connections (hc_mult, hc_sinkhorn_iters, hc_eps), the router
 * (scoring_func sqrtsoftplus, num_hash_layers, routed_scaling_factor,
 * norm_topk_prob) and swiglu_limit. Every layer is a MoE layer. Each bad key
 * is one error line naming the file and the key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsv4.h"
#include "util.h"

extern const ms_family ms_family_deepseek_v4;

const ms_dsv4_config *ms_dsv4_config_of(const ms_config *c)
{
    return c->family == &ms_family_deepseek_v4 ? c->arch : NULL;
}

/* compress_ratios: one entry per layer, plus optionally one per MTP layer. */
static int parse_ratios(const ms_jctx *jc, json_object *o, const ms_config *cfg, ms_dsv4_config *d)
{
    json_object *a = ms_json_get(o, "compress_ratios");
    if (ms_json_null(a)) return 0; /* no compressed layers */
    if (!json_object_is_type(a, json_type_array))
        return ms_errf(jc->err, EINVAL, "%s: field \"compress_ratios\" must be a list", jc->what);
    int n = (int)json_object_array_length(a), L = cfg->n_layers, mtp = cfg->num_nextn_predict_layers;
    if (n != L && n != L + mtp)
        return ms_errf(jc->err, EINVAL,
                       "%s: compress_ratios has %d entries, but num_hidden_layers is %d (and num_nextn_predict_layers "
                       "%d): expected %d%s", jc->what, n, L, mtp, L, mtp ? " or that plus one per MTP layer" : "");
    for (int l = 0; l < L; l++) {
        int64_t r;
        if (!ms_json_i64(json_object_array_get_idx(a, (size_t)l), &r) || r < 0 || r > (1 << 20))
            return ms_errf(jc->err, EINVAL, "%s: compress_ratios[%d] must be an integer in [0, %d]", jc->what, l,
                           1 << 20);
        d->ratio[l] = (int)r;
    }
    return 0;
}

static int dsv4_parse_config(const ms_jctx *jc, json_object *o, json_object *root, ms_config *cfg)
{
    (void)root;
    ms_err *err = jc->err;
    const char *what = jc->what;
    ms_dsv4_config *d = calloc(1, sizeof *d);
    if (!d) return ms_errf(err, ENOMEM, "out of memory");
    cfg->arch = d;
    int rc;
#define INT(key, req, def, lo, hi, dst)                                                  \
    if ((rc = ms_json_int32(jc, o, key, req, def, lo, hi, dst)) < 0) return rc
    INT("num_attention_heads", true, 0, 1, 4096, &d->n_heads);
    INT("head_dim", true, 0, 2, 1 << 14, &d->head_dim);
    INT("qk_rope_head_dim", true, 0, 2, 512, &d->rope_dim);
    INT("q_lora_rank", true, 0, 1, 1 << 20, &d->q_lora_rank);
    INT("o_groups", true, 0, 1, 4096, &d->o_groups);
    INT("o_lora_rank", true, 0, 1, 1 << 20, &d->o_lora_rank);
    INT("sliding_window", true, 0, 1, 1 << 20, &d->window);
    INT("index_n_heads", false, 64, 1, 4096, &d->index_heads);
    INT("index_head_dim", false, 128, 2, 1 << 14, &d->index_dim);
    INT("index_topk", false, 512, 1, 1 << 24, &d->index_topk);
    INT("hc_mult", false, 4, 1, 16, &d->hc_mult);
    INT("hc_sinkhorn_iters", false, 20, 1, 1000, &d->hc_iters);
    INT("num_hash_layers", false, 0, 0, MS_MAX_LAYERS, &d->n_hash_layers);
    int kv_heads;
    INT("num_key_value_heads", false, 1, 1, 4096, &kv_heads);
    INT("n_routed_experts", true, 0, 1, 1 << 16, &cfg->n_routed_experts);
    INT("num_experts_per_tok", true, 0, 1, 1 << 16, &cfg->n_experts_per_tok);
    INT("moe_intermediate_size", true, 0, 1, 1 << 22, &cfg->moe_intermediate_size);
    INT("n_shared_experts", false, 0, 0, 1024, &cfg->n_shared_experts);
#undef INT
    if (kv_heads != 1)
        return ms_errf(err, EINVAL, "%s: num_key_value_heads %d: deepseek_v4 has one shared key = value head", what,
                       kv_heads);
    if (d->rope_dim % 2 || d->rope_dim > d->head_dim || d->rope_dim > d->index_dim)
        return ms_errf(err, EINVAL,
                       "%s: qk_rope_head_dim %d must be even and at most head_dim %d and index_head_dim %d", what,
                       d->rope_dim, d->head_dim, d->index_dim);
    if (d->n_heads % d->o_groups)
        return ms_errf(err, EINVAL, "%s: num_attention_heads %d is not divisible by o_groups %d", what, d->n_heads,
                       d->o_groups);
    if (cfg->n_experts_per_tok > cfg->n_routed_experts)
        return ms_errf(err, EINVAL, "%s: num_experts_per_tok %d exceeds n_routed_experts %d", what,
                       cfg->n_experts_per_tok, cfg->n_routed_experts);
    if (d->n_hash_layers > cfg->n_layers)
        return ms_errf(err, EINVAL, "%s: num_hash_layers %d exceeds num_hidden_layers %d", what, d->n_hash_layers,
                       cfg->n_layers);
    if ((rc = ms_json_num(jc, o, "hc_eps", false, 1e-6, 0, 1, &d->hc_eps)) < 0) return rc;
    if ((rc = ms_json_num(jc, o, "swiglu_limit", false, 0, -1e30, 1e30, &d->swiglu_limit)) < 0) return rc;
    if ((rc = ms_json_num(jc, o, "routed_scaling_factor", false, 1.0, 0, 1e6, &d->routed_scaling_factor)) < 0)
        return rc;
    if ((rc = ms_json_bool(jc, o, "norm_topk_prob", true, &d->norm_topk_prob)) < 0) return rc;
    if ((rc = ms_json_num(jc, o, "compress_rope_theta", false, 160000, 1e-3, 1e12, &d->compress_rope_theta)) < 0)
        return rc;
    char s[32];
    if ((rc = ms_json_str(jc, o, "scoring_func", false, "sqrtsoftplus", s, sizeof s)) < 0) return rc;
    if (strcmp(s, "sqrtsoftplus"))
        return ms_errf(err, EINVAL, "%s: scoring_func \"%s\" is not supported (deepseek_v4 uses sqrtsoftplus)", what, s);
    if ((rc = ms_json_str(jc, o, "hidden_act", false, "silu", s, sizeof s)) < 0) return rc;
    if (strcmp(s, "silu")) return ms_errf(err, EINVAL, "%s: hidden_act \"%s\" is not supported (silu)", what, s);
    if ((rc = ms_config_parse_rope(jc, o, true, cfg->max_position_embeddings, &d->rope)) < 0) return rc;
    if (d->rope.type != MS_ROPE_DEFAULT && d->rope.type != MS_ROPE_YARN)
        return ms_errf(err, EINVAL, "%s: rope scaling: deepseek_v4 uses yarn (or none)", what);
    if ((rc = parse_ratios(jc, o, cfg, d)) < 0) return rc;
    for (int l = 0; l < cfg->n_layers; l++) cfg->moe_layer[l] = 1; /* every layer is MoE */
    cfg->intermediate_size = 0;
    return 0;
}

void dsv4_cache_parts(const ms_config *c, int ctx, bool kv_bf16, uint64_t *ring, uint64_t *pool, uint64_t *ikey,
                      uint64_t *acc)
{
    const ms_dsv4_config *d = c->arch;
    uint64_t e = kv_bf16 ? 2 : 4, hd = (uint64_t)d->head_dim, id = (uint64_t)d->index_dim;
    *ring = *pool = *ikey = *acc = 0;
    for (int l = 0; l < c->n_layers; l++) {
        int r = d->ratio[l];
        *ring += (uint64_t)d->window * hd * e;
        if (!r) continue;
        uint64_t np = (uint64_t)ctx / (uint64_t)r;
        *pool += np * hd * e;
        *acc += 2 * (uint64_t)dsv4_acc_rows(r) * hd * (r == 4 ? 2 : 1) * sizeof(float);
        if (r == 4) {
            *ikey += np * id * e;
            *acc += 2 * (uint64_t)dsv4_acc_rows(r) * 2 * id * sizeof(float);
        }
    }
}

static int dsv4_kv_parts(const ms_config *c, int ctx, int n_seq, bool kv_bf16, ms_kv_part *parts)
{
    uint64_t b[4];
    dsv4_cache_parts(c, ctx, kv_bf16, &b[0], &b[1], &b[2], &b[3]);
    static const char *const names[4] = {"sliding-window ring", "pooled entries", "indexer keys",
                                         "open-window buffers"};
    for (int i = 0; i < 4; i++) parts[i] = (ms_kv_part){names[i], (uint64_t)MS_MAX(1, n_seq) * b[i]};
    return 4;
}

static void dsv4_describe(const ms_config *c, ms_strbuf *text, json_object *json)
{
    const ms_dsv4_config *d = c->arch;
    ms_sb_printf(text, "widths       hidden %d, vocab %d, heads %d x %d (rope %d, one kv head), q_lora %d, output %d "
                       "groups x %d\n", c->hidden_size, c->vocab_size, d->n_heads, d->head_dim, d->rope_dim,
                 d->q_lora_rank, d->o_groups, d->o_lora_rank);
    ms_sb_printf(text, "streams      %d hyper-connections, Sinkhorn %d iterations\n", d->hc_mult, d->hc_iters);
    ms_sb_printf(text, "attention    window %d + sinks; compress ratios", d->window);
    for (int l = 0; l < c->n_layers; l++) ms_sb_printf(text, "%s%d", l ? "," : " ", d->ratio[l]);
    ms_sb_printf(text, " (4: overlapping + indexer top-%d of %d heads x %d)\n", d->index_topk, d->index_heads,
                 d->index_dim);
    ms_sb_printf(text, "router       sqrtsoftplus + correction bias, %d hash layer%s, scaling %g%s, SwiGLU clamp %g\n",
                 d->n_hash_layers, d->n_hash_layers == 1 ? "" : "s", d->routed_scaling_factor,
                 d->norm_topk_prob ? ", normalized" : "", d->swiglu_limit);
    ms_sb_printf(text, "rope         theta %g on ratio-0 layers, %g", d->rope.theta, d->compress_rope_theta);
    if (d->rope.type == MS_ROPE_YARN)
        ms_sb_printf(text, " + YaRN factor %g over %lld", d->rope.factor, (long long)d->rope.orig_max_pos);
    ms_sb_printf(text, " on compressed layers, max positions %lld\n", (long long)c->max_position_embeddings);
    json_object_object_add(json, "n_heads", json_object_new_int(d->n_heads));
    json_object_object_add(json, "head_dim", json_object_new_int(d->head_dim));
    json_object_object_add(json, "q_lora_rank", json_object_new_int(d->q_lora_rank));
    json_object_object_add(json, "hc_mult", json_object_new_int(d->hc_mult));
    json_object_object_add(json, "sliding_window", json_object_new_int(d->window));
    json_object_object_add(json, "num_hash_layers", json_object_new_int(d->n_hash_layers));
    json_object *ra = json_object_new_array();
    for (int l = 0; l < c->n_layers; l++) json_object_array_add(ra, json_object_new_int(d->ratio[l]));
    json_object_object_add(json, "compress_ratios", ra);
}

uint64_t dsv4_state_bytes(const ms_config *c, int ctx, int batch, int n_seq, int nthreads, bool kv_bf16,
                          uint64_t *kv_bytes);
int dsv4_state_create(const void *w, int ctx, int batch, int n_seq, int nthreads, bool kv_bf16, void **state,
                      uint64_t *bytes, ms_err *err);
void dsv4_state_destroy(void *state);
int dsv4_forward(const void *w, void *state, const ms_fwd_env *env, const ms_batch *b, ms_err *err);

static const ms_arch_ops dsv4_ops = {
    .name = "deepseek_v4",
    .bind = dsv4_bind,
    .unbind = dsv4_unbind,
    .state_create = dsv4_state_create,
    .state_destroy = dsv4_state_destroy,
    .state_bytes = dsv4_state_bytes,
    .forward = dsv4_forward,
    .kv_parts = dsv4_kv_parts,
};

static const char *const dsv4_types[] = {"deepseek_v4", NULL};
static const char *const dsv4_moe_modules[] = {"ffn", NULL};

const ms_family ms_family_deepseek_v4 = {
    .name = "deepseek_v4",
    .model_types = dsv4_types,
    .moe_modules = dsv4_moe_modules,
    .parse_config = dsv4_parse_config,
    .describe = dsv4_describe,
    .ops = &dsv4_ops,
};

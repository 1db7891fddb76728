/* config.c - parse and validate config.json (architecture + MLX quantization);
 * see config.h. Every error names the file and the field. */
#include "config.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- typed field getters: absent -> default (or error if required) ---- */

typedef struct jctx {
    json_object *obj;
    const char *what; /* file name for messages */
    ms_err *err;
} jctx;

static json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!o || !json_object_object_get_ex(o, key, &v)) return NULL;
    return v;
}

static bool jnull(json_object *v) { return v == NULL || json_object_is_type(v, json_type_null); }

/* integer field in [lo, hi]; required: error if absent/null */
static int get_int(jctx *c, const char *key, bool required, int64_t def, int64_t lo, int64_t hi, int64_t *out)
{
    json_object *v = jget(c->obj, key);
    if (jnull(v)) {
        if (required) return ms_errf(c->err, EINVAL, "%s: missing field \"%s\"", c->what, key);
        *out = def;
        return 0;
    }
    int64_t x;
    if (json_object_is_type(v, json_type_int)) {
        x = json_object_get_int64(v);
    } else if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (d != floor(d) || fabs(d) > 9e15)
            return ms_errf(c->err, EINVAL, "%s: field \"%s\" must be an integer", c->what, key);
        x = (int64_t)d;
    } else {
        return ms_errf(c->err, EINVAL, "%s: field \"%s\" must be an integer", c->what, key);
    }
    if (x < lo || x > hi)
        return ms_errf(c->err, ERANGE, "%s: field \"%s\" = %lld is out of range [%lld, %lld]", c->what, key,
                       (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

static int get_i(jctx *c, const char *key, bool required, int def, int lo, int hi, int *out)
{
    int64_t v;
    int rc = get_int(c, key, required, def, lo, hi, &v);
    if (rc == 0) *out = (int)v;
    return rc;
}

static int get_num(jctx *c, json_object *o, const char *key, bool required, double def, double lo, double hi,
                   double *out)
{
    json_object *v = jget(o, key);
    if (jnull(v)) {
        if (required) return ms_errf(c->err, EINVAL, "%s: missing field \"%s\"", c->what, key);
        *out = def;
        return 0;
    }
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return ms_errf(c->err, EINVAL, "%s: field \"%s\" must be a number", c->what, key);
    double d = json_object_get_double(v);
    if (!isfinite(d) || d < lo || d > hi)
        return ms_errf(c->err, ERANGE, "%s: field \"%s\" = %g is out of range [%g, %g]", c->what, key, d, lo, hi);
    *out = d;
    return 0;
}

static int get_bool(jctx *c, const char *key, bool def, bool *out)
{
    json_object *v = jget(c->obj, key);
    if (jnull(v)) {
        *out = def;
        return 0;
    }
    if (!json_object_is_type(v, json_type_boolean))
        return ms_errf(c->err, EINVAL, "%s: field \"%s\" must be true or false", c->what, key);
    *out = json_object_get_boolean(v);
    return 0;
}

static int get_str(jctx *c, json_object *o, const char *key, bool required, const char *def, char *out, size_t len)
{
    json_object *v = jget(o, key);
    if (jnull(v)) {
        if (required) return ms_errf(c->err, EINVAL, "%s: missing field \"%s\"", c->what, key);
        snprintf(out, len, "%s", def);
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return ms_errf(c->err, EINVAL, "%s: field \"%s\" must be a string", c->what, key);
    const char *s = json_object_get_string(v);
    if (strlen(s) >= len) return ms_errf(c->err, EINVAL, "%s: field \"%s\" is too long", c->what, key);
    snprintf(out, len, "%s", s);
    return 0;
}

/* ---- RoPE: rope_theta + rope_scaling, or transformers v5 rope_parameters ---- */

static int parse_rope(jctx *c, ms_config *cfg)
{
    ms_rope_cfg *r = &cfg->rope;
    int rc;
    json_object *params = jget(c->obj, "rope_parameters");
    json_object *scal = jget(c->obj, "rope_scaling");
    if (!jnull(params) && !json_object_is_type(params, json_type_object))
        return ms_errf(c->err, EINVAL, "%s: field \"rope_parameters\" must be an object", c->what);
    if (!jnull(scal) && !json_object_is_type(scal, json_type_object))
        return ms_errf(c->err, EINVAL, "%s: field \"rope_scaling\" must be an object or null", c->what);
    /* theta: top level, else rope_parameters.rope_theta */
    double theta_default = 10000.0;
    if (!jnull(params) && !jnull(jget(params, "rope_theta")))
        if ((rc = get_num(c, params, "rope_theta", false, 10000.0, 1e-3, 1e12, &theta_default)) < 0) return rc;
    if ((rc = get_num(c, c->obj, "rope_theta", false, theta_default, 1e-3, 1e12, &r->theta)) < 0) return rc;
    json_object *s = !jnull(scal) ? scal : (!jnull(params) ? params : NULL);
    r->type = MS_ROPE_DEFAULT;
    r->factor = 1.0;
    r->orig_max_pos = cfg->max_position_embeddings;
    r->beta_fast = 32;
    r->beta_slow = 1;
    r->mscale = 1;
    r->mscale_all_dim = 0;
    if (!s) return 0;
    char type[32] = "";
    json_object *tv = jget(s, "type");
    if (jnull(tv)) tv = jget(s, "rope_type");
    if (!jnull(tv)) {
        if (!json_object_is_type(tv, json_type_string))
            return ms_errf(c->err, EINVAL, "%s: rope type must be a string", c->what);
        snprintf(type, sizeof type, "%s", json_object_get_string(tv));
    }
    if (!strcmp(type, "yarn") || !strcmp(type, "deepseek_yarn")) {
        r->type = MS_ROPE_YARN;
    } else if (!strcmp(type, "linear")) {
        r->type = MS_ROPE_LINEAR;
    } else if (!strcmp(type, "") || !strcmp(type, "default")) {
        r->type = MS_ROPE_DEFAULT;
        return 0;
    } else {
        return ms_errf(c->err, EINVAL, "%s: unsupported rope scaling type \"%s\" (supported: yarn, linear, default)",
                       c->what, type);
    }
    if ((rc = get_num(c, s, "factor", true, 1, 1e-6, 1e6, &r->factor)) < 0) return rc;
    double omp;
    if ((rc = get_num(c, s, "original_max_position_embeddings", r->type == MS_ROPE_YARN,
                      (double)cfg->max_position_embeddings, 1, 1e12, &omp)) < 0)
        return rc;
    r->orig_max_pos = (int64_t)omp;
    if ((rc = get_num(c, s, "beta_fast", false, 32, 0, 1e6, &r->beta_fast)) < 0) return rc;
    if ((rc = get_num(c, s, "beta_slow", false, 1, 0, 1e6, &r->beta_slow)) < 0) return rc;
    if ((rc = get_num(c, s, "mscale", false, 1, -1e6, 1e6, &r->mscale)) < 0) return rc;
    if ((rc = get_num(c, s, "mscale_all_dim", false, 0, -1e6, 1e6, &r->mscale_all_dim)) < 0) return rc;
    return 0;
}

static int parse_eos(jctx *c, ms_config *cfg)
{
    json_object *v = jget(c->obj, "eos_token_id");
    cfg->n_eos = 0;
    if (jnull(v)) return 0;
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        if (x < 0 || x >= cfg->vocab_size)
            return ms_errf(c->err, ERANGE, "%s: eos_token_id %lld is outside the vocabulary", c->what, (long long)x);
        cfg->eos_token_ids[cfg->n_eos++] = (int)x;
        return 0;
    }
    if (!json_object_is_type(v, json_type_array))
        return ms_errf(c->err, EINVAL, "%s: field \"eos_token_id\" must be an integer or a list", c->what);
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        json_object *e = json_object_array_get_idx(v, i);
        if (!json_object_is_type(e, json_type_int))
            return ms_errf(c->err, EINVAL, "%s: eos_token_id[%zu] must be an integer", c->what, i);
        int64_t x = json_object_get_int64(e);
        if (x < 0 || x >= cfg->vocab_size)
            return ms_errf(c->err, ERANGE, "%s: eos_token_id %lld is outside the vocabulary", c->what, (long long)x);
        if (cfg->n_eos < MS_MAX_EOS) cfg->eos_token_ids[cfg->n_eos++] = (int)x;
    }
    return 0;
}

int ms_config_parse(const char *json, const char *what, ms_config *cfg, ms_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    json_tokener *tok = json_tokener_new();
    if (!tok) return ms_errf(err, ENOMEM, "out of memory");
    json_object *root = json_tokener_parse_ex(tok, json, (int)strlen(json));
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success) {
        if (root) json_object_put(root);
        return ms_errf(err, EINVAL, "%s: not valid JSON (%s)", what, json_tokener_error_desc(jerr));
    }
    int rc = 0;
    jctx c = {root, what, err};
    if (!json_object_is_type(root, json_type_object)) {
        rc = ms_errf(err, EINVAL, "%s: not a JSON object", what);
        goto out;
    }
    /* VLM wrappers keep the decoder config in text_config. */
    json_object *tc = jget(root, "text_config");
    if (!jnull(tc) && json_object_is_type(tc, json_type_object) && jget(tc, "hidden_size")) c.obj = tc;

    if ((rc = get_str(&c, c.obj, "model_type", false, "", cfg->model_type, sizeof cfg->model_type)) < 0) goto out;
    if (!cfg->model_type[0])
        if ((rc = get_str(&c, root, "model_type", true, "", cfg->model_type, sizeof cfg->model_type)) < 0) goto out;
    if (!strcmp(cfg->model_type, "deepseek_v3") || !strcmp(cfg->model_type, "kimi_k2")) {
        cfg->arch = MS_ARCH_DEEPSEEK_V3;
    } else if (!strcmp(cfg->model_type, "glm4_moe_lite")) {
        cfg->arch = MS_ARCH_GLM4_MOE_LITE;
    } else {
        rc = ms_errf(err, EINVAL, "%s: model_type \"%s\" is not supported (supported: deepseek_v3, kimi_k2, "
                     "glm4_moe_lite)", what, cfg->model_type);
        goto out;
    }
    const int BIG = 1 << 24;
    if ((rc = get_i(&c, "vocab_size", true, 0, 1, BIG, &cfg->vocab_size)) < 0) goto out;
    if ((rc = get_i(&c, "hidden_size", true, 0, 1, 1 << 20, &cfg->hidden_size)) < 0) goto out;
    if ((rc = get_i(&c, "num_hidden_layers", true, 0, 1, 4096, &cfg->n_layers)) < 0) goto out;
    if ((rc = get_i(&c, "num_attention_heads", true, 0, 1, 4096, &cfg->n_heads)) < 0) goto out;
    if ((rc = get_i(&c, "q_lora_rank", false, 0, 0, 1 << 20, &cfg->q_lora_rank)) < 0) goto out;
    if ((rc = get_i(&c, "kv_lora_rank", true, 0, 1, 1 << 20, &cfg->kv_lora_rank)) < 0) goto out;
    if ((rc = get_i(&c, "qk_nope_head_dim", true, 0, 1, 1 << 16, &cfg->qk_nope_head_dim)) < 0) goto out;
    if ((rc = get_i(&c, "qk_rope_head_dim", true, 0, 2, 1 << 16, &cfg->qk_rope_head_dim)) < 0) goto out;
    if ((rc = get_i(&c, "v_head_dim", true, 0, 1, 1 << 16, &cfg->v_head_dim)) < 0) goto out;
    if (cfg->qk_rope_head_dim % 2) {
        rc = ms_errf(err, EINVAL, "%s: qk_rope_head_dim %d must be even", what, cfg->qk_rope_head_dim);
        goto out;
    }
    if ((rc = get_i(&c, "first_k_dense_replace", false, 0, 0, 4096, &cfg->first_k_dense_replace)) < 0) goto out;
    if ((rc = get_i(&c, "moe_layer_freq", false, 1, 1, 4096, &cfg->moe_layer_freq)) < 0) goto out;
    bool any_moe = false;
    for (int l = 0; l < cfg->n_layers; l++)
        any_moe |= l >= cfg->first_k_dense_replace && l % cfg->moe_layer_freq == 0;
    bool any_dense = cfg->first_k_dense_replace > 0 || cfg->moe_layer_freq > 1;
    if ((rc = get_i(&c, "intermediate_size", any_dense, 0, 1, 1 << 22, &cfg->intermediate_size)) < 0) goto out;
    if ((rc = get_i(&c, "n_routed_experts", any_moe, 0, 1, 1 << 16, &cfg->n_routed_experts)) < 0) goto out;
    if ((rc = get_i(&c, "moe_intermediate_size", any_moe, 0, 1, 1 << 22, &cfg->moe_intermediate_size)) < 0)
        goto out;
    if ((rc = get_i(&c, "num_experts_per_tok", any_moe, 0, 1, 1 << 16, &cfg->n_experts_per_tok)) < 0) goto out;
    if ((rc = get_i(&c, "n_shared_experts", false, 0, 0, 1024, &cfg->n_shared_experts)) < 0) goto out;
    if ((rc = get_i(&c, "n_group", false, 1, 1, 1024, &cfg->n_group)) < 0) goto out;
    if ((rc = get_i(&c, "topk_group", false, 1, 1, 1 << 16, &cfg->topk_group)) < 0) goto out;
    if (any_moe) {
        int E = cfg->n_routed_experts;
        if (cfg->n_experts_per_tok > E) {
            rc = ms_errf(err, EINVAL, "%s: num_experts_per_tok %d exceeds n_routed_experts %d", what,
                         cfg->n_experts_per_tok, E);
            goto out;
        }
        if (E % cfg->n_group) {
            rc = ms_errf(err, EINVAL, "%s: n_routed_experts %d is not divisible by n_group %d", what, E,
                         cfg->n_group);
            goto out;
        }
        if (cfg->topk_group > cfg->n_group) {
            rc = ms_errf(err, EINVAL, "%s: topk_group %d exceeds n_group %d", what, cfg->topk_group, cfg->n_group);
            goto out;
        }
        if (cfg->n_experts_per_tok > cfg->topk_group * (E / cfg->n_group)) {
            rc = ms_errf(err, EINVAL, "%s: num_experts_per_tok %d exceeds the experts in topk_group groups (%d)",
                         what, cfg->n_experts_per_tok, cfg->topk_group * (E / cfg->n_group));
            goto out;
        }
        if (cfg->n_group > 1 && E / cfg->n_group < 2) {
            rc = ms_errf(err, EINVAL, "%s: group-limited routing needs at least 2 experts per group", what);
            goto out;
        }
        char method[32], scoring[32];
        if ((rc = get_str(&c, c.obj, "topk_method", false, "noaux_tc", method, sizeof method)) < 0) goto out;
        if ((rc = get_str(&c, c.obj, "scoring_func", false, "sigmoid", scoring, sizeof scoring)) < 0) goto out;
        if (strcmp(method, "noaux_tc") != 0) {
            rc = ms_errf(err, EINVAL, "%s: topk_method \"%s\" is not supported (deepseek_v3 uses noaux_tc)", what,
                         method);
            goto out;
        }
        if (strcmp(scoring, "sigmoid") != 0) {
            rc = ms_errf(err, EINVAL, "%s: scoring_func \"%s\" is not supported (deepseek_v3 uses sigmoid)", what,
                         scoring);
            goto out;
        }
    }
    char act[32];
    if ((rc = get_str(&c, c.obj, "hidden_act", false, "silu", act, sizeof act)) < 0) goto out;
    if (strcmp(act, "silu") != 0) {
        rc = ms_errf(err, EINVAL, "%s: hidden_act \"%s\" is not supported (silu)", what, act);
        goto out;
    }
    if ((rc = get_bool(&c, "norm_topk_prob", cfg->arch == MS_ARCH_GLM4_MOE_LITE, &cfg->norm_topk_prob)) < 0) goto out;
    if ((rc = get_num(&c, c.obj, "routed_scaling_factor", false, 1.0, 0, 1e6, &cfg->routed_scaling_factor)) < 0)
        goto out;
    if ((rc = get_num(&c, c.obj, "rms_norm_eps", false, 1e-6, 0, 1, &cfg->rms_norm_eps)) < 0) goto out;
    cfg->latent_norm_eps = cfg->arch == MS_ARCH_GLM4_MOE_LITE ? cfg->rms_norm_eps : 1e-6;
    if ((rc = get_int(&c, "max_position_embeddings", false, 4096, 1, (int64_t)1 << 40,
                      &cfg->max_position_embeddings)) < 0)
        goto out;
    if ((rc = parse_rope(&c, cfg)) < 0) goto out;
    if ((rc = get_bool(&c, "attention_bias", false, &cfg->attention_bias)) < 0) goto out;
    if ((rc = get_bool(&c, "tie_word_embeddings", false, &cfg->tie_word_embeddings)) < 0) goto out;
    if ((rc = get_i(&c, "num_nextn_predict_layers", false, 0, 0, 64, &cfg->num_nextn_predict_layers)) < 0) goto out;
    if ((rc = get_i(&c, "bos_token_id", false, -1, -1, cfg->vocab_size - 1, &cfg->bos_token_id)) < 0) goto out;
    if ((rc = parse_eos(&c, cfg)) < 0) goto out;
    if ((rc = get_str(&c, c.obj, "torch_dtype", false, "", cfg->torch_dtype, sizeof cfg->torch_dtype)) < 0) goto out;
    if (!cfg->torch_dtype[0])
        if ((rc = get_str(&c, c.obj, "dtype", false, "bfloat16", cfg->torch_dtype, sizeof cfg->torch_dtype)) < 0)
            goto out;
out:
    json_object_put(root);
    return rc;
}

/* Read config.json: path is the file itself or the model directory holding it.
 * file (PATH_MAX bytes) receives the file name for messages. */
static int read_config(const char *path, char *file, size_t flen, char **text, ms_err *err)
{
    size_t l = strlen(path);
    int rc = 0;
    if (l < 5 || strcmp(path + l - 5, ".json") != 0) rc = ms_path_join(file, flen, path, "config.json", err);
    else snprintf(file, flen, "%s", path);
    if (rc < 0) return rc;
    return ms_read_file(file, 16u << 20, text, NULL, err);
}

int ms_config_load(const char *path, ms_config *cfg, ms_err *err)
{
    char file[4096], *text;
    int rc = read_config(path, file, sizeof file, &text, err);
    if (rc < 0) return rc;
    rc = ms_config_parse(text, file, cfg, err);
    free(text);
    return rc;
}

bool ms_config_is_moe_layer(const ms_config *c, int l)
{
    return l >= c->first_k_dense_replace && l % c->moe_layer_freq == 0 && c->n_routed_experts > 0;
}

int ms_config_n_moe_layers(const ms_config *c)
{
    int n = 0;
    for (int l = 0; l < c->n_layers; l++) n += ms_config_is_moe_layer(c, l);
    return n;
}

static double yarn_get_m(double factor, double m) { return factor <= 1 ? 1.0 : 0.1 * m * log(factor) + 1.0; }

double ms_config_softmax_scale(const ms_config *c)
{
    double s = 1.0 / sqrt((double)(c->qk_nope_head_dim + c->qk_rope_head_dim));
    if (c->rope.type == MS_ROPE_YARN && c->rope.mscale_all_dim != 0 && c->rope.factor > 1) {
        double m = yarn_get_m(c->rope.factor, c->rope.mscale_all_dim);
        s *= m * m;
    }
    return s;
}

/* ---- quantization ---- */

static int parse_qparams(jctx *c, json_object *o, const ms_qparams *def, const char *path, ms_qparams *out)
{
    *out = *def;
    out->quantized = true;
    out->explicit_bits = out->explicit_gs = false;
    json_object *v;
    if ((v = jget(o, "bits")) && !jnull(v)) {
        if (!json_object_is_type(v, json_type_int))
            return ms_errf(c->err, EINVAL, "%s: quantization entry %s: \"bits\" must be an integer", c->what, path);
        out->bits = json_object_get_int(v);
        out->explicit_bits = true;
    }
    if ((v = jget(o, "group_size")) && !jnull(v)) {
        if (!json_object_is_type(v, json_type_int))
            return ms_errf(c->err, EINVAL, "%s: quantization entry %s: \"group_size\" must be an integer", c->what,
                           path);
        out->group_size = json_object_get_int(v);
        out->explicit_gs = true;
    }
    if ((v = jget(o, "mode")) && !jnull(v)) {
        if (!json_object_is_type(v, json_type_string) || strlen(json_object_get_string(v)) >= sizeof out->mode)
            return ms_errf(c->err, EINVAL, "%s: quantization entry %s: \"mode\" must be a short string", c->what,
                           path);
        snprintf(out->mode, sizeof out->mode, "%s", json_object_get_string(v));
    }
    return 0;
}

int ms_qconfig_parse(const char *json, const char *what, ms_qconfig *q, ms_err *err)
{
    memset(q, 0, sizeof *q);
    json_object *root = json_tokener_parse(json);
    if (!root || !json_object_is_type(root, json_type_object)) {
        if (root) json_object_put(root);
        return ms_errf(err, EINVAL, "%s: not a valid JSON object", what);
    }
    jctx c = {root, what, err};
    int rc = 0;
    json_object *blk = jget(root, "quantization");
    if (jnull(blk)) {
        json_object *qc = jget(root, "quantization_config");
        json_object *tc = jget(root, "text_config");
        if (jnull(qc) && !jnull(tc)) qc = jget(tc, "quantization_config");
        if (!jnull(qc) && json_object_is_type(qc, json_type_object)) {
            json_object *qm = jget(qc, "quant_method");
            if (!jnull(qm)) {
                snprintf(q->foreign, sizeof q->foreign, "%s",
                         json_object_is_type(qm, json_type_string) ? json_object_get_string(qm) : "?");
            } else if (jget(qc, "bits") || jget(qc, "group_size")) {
                blk = qc;
            }
        }
    }
    if (jnull(blk)) goto out;
    if (!json_object_is_type(blk, json_type_object)) {
        rc = ms_errf(err, EINVAL, "%s: \"quantization\" must be an object", what);
        goto out;
    }
    q->present = true;
    ms_qparams base = {.quantized = true, .bits = 4, .group_size = 64};
    snprintf(base.mode, sizeof base.mode, "affine");
    if ((rc = parse_qparams(&c, blk, &base, "(defaults)", &q->def)) < 0) goto out;
    size_t n = (size_t)json_object_object_length(blk);
    q->ov = calloc(n ? n : 1, sizeof *q->ov);
    if (!q->ov) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto out;
    }
    json_object_object_foreach(blk, key, val)
    {
        if (!strcmp(key, "bits") || !strcmp(key, "group_size") || !strcmp(key, "mode")) continue;
        ms_qoverride *o = &q->ov[q->n_ov];
        if (json_object_is_type(val, json_type_boolean)) {
            o->p = q->def;
            o->p.quantized = json_object_get_boolean(val);
            o->p.explicit_bits = o->p.explicit_gs = false;
        } else if (json_object_is_type(val, json_type_object)) {
            if ((rc = parse_qparams(&c, val, &q->def, key, &o->p)) < 0) goto out;
        } else {
            /* Unknown scalar keys (e.g. "quant_method") are ignored like mlx-lm does. */
            continue;
        }
        o->path = strdup(key);
        if (!o->path) {
            rc = ms_errf(err, ENOMEM, "out of memory");
            goto out;
        }
        q->n_ov++;
    }
    for (int i = 0; i < q->n_ov; i++)
        if (ms_strmap_put(&q->map, q->ov[i].path, i) < 0) {
            rc = ms_errf(err, ENOMEM, "out of memory");
            goto out;
        }
out:
    json_object_put(root);
    if (rc < 0) ms_qconfig_free(q);
    return rc;
}

int ms_qconfig_load(const char *path, ms_qconfig *q, ms_err *err)
{
    char file[4096], *text;
    int rc = read_config(path, file, sizeof file, &text, err);
    if (rc < 0) return rc;
    rc = ms_qconfig_parse(text, file, q, err);
    free(text);
    return rc;
}

int ms_qconfig_lookup(const ms_qconfig *q, const char *module_path, ms_qparams *out)
{
    int64_t i = ms_strmap_get(&q->map, module_path);
    if (i < 0) {
        char alt[600];
        if (!strncmp(module_path, "language_model.", 15)) snprintf(alt, sizeof alt, "%s", module_path + 15);
        else snprintf(alt, sizeof alt, "language_model.%s", module_path);
        i = ms_strmap_get(&q->map, alt);
    }
    if (i >= 0) {
        *out = q->ov[i].p;
        return 1;
    }
    *out = q->def;
    out->explicit_bits = out->explicit_gs = q->present;
    return 0;
}

void ms_qconfig_free(ms_qconfig *q)
{
    for (int i = 0; i < q->n_ov; i++) free(q->ov[i].path);
    free(q->ov);
    ms_strmap_free(&q->map);
    memset(q, 0, sizeof *q);
}

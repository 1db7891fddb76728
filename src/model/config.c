/* config.c - the family-neutral parts of config.json (common fields, RoPE
 * blocks, eos lists) and the MLX quantization block; see config.h. Every
 * error names the file and the field. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"


void ms_config_free(ms_config *c)
{
    free(c->arch);
    c->arch = NULL;
}

bool ms_config_is_moe_layer(const ms_config *c, int l)
{
    return l >= 0 && l < ms_config_n_layers_all(c) && c->moe_layer[l] && c->n_routed_experts > 0;
}

int ms_config_n_moe_layers(const ms_config *c)
{
    int n = 0;
    for (int l = 0; l < ms_config_n_layers_all(c); l++) n += ms_config_is_moe_layer(c, l);
    return n;
}

/* ---- RoPE: rope_theta + rope_scaling, or transformers v5 rope_parameters ---- */

int ms_config_parse_rope(const ms_jctx *c, json_object *o, bool scalar_theta, int64_t max_pos, ms_rope_cfg *r)
{
    int rc;
    json_object *params = ms_json_get(o, "rope_parameters");
    json_object *scal = ms_json_get(o, "rope_scaling");
    if (!ms_json_null(params) && !json_object_is_type(params, json_type_object))
        return ms_errf(c->err, EINVAL, "%s: field \"rope_parameters\" must be an object", c->what);
    if (!ms_json_null(scal) && !json_object_is_type(scal, json_type_object))
        return ms_errf(c->err, EINVAL, "%s: field \"rope_scaling\" must be an object or null", c->what);
    /* theta: top level, else rope_parameters.rope_theta */
    r->theta = 10000.0;
    if (scalar_theta) {
        double theta_default = 10000.0;
        if (!ms_json_null(params) && !ms_json_null(ms_json_get(params, "rope_theta")))
            if ((rc = ms_json_num(c, params, "rope_theta", false, 10000.0, 1e-3, 1e12, &theta_default)) < 0) return rc;
        if ((rc = ms_json_num(c, o, "rope_theta", false, theta_default, 1e-3, 1e12, &r->theta)) < 0) return rc;
    }
    json_object *s = !ms_json_null(scal) ? scal : (!ms_json_null(params) ? params : NULL);
    r->type = MS_ROPE_DEFAULT;
    r->factor = 1.0;
    r->orig_max_pos = max_pos;
    r->beta_fast = 32;
    r->beta_slow = 1;
    r->mscale = 1;
    r->mscale_all_dim = 0;
    r->low_freq_factor = 1;
    r->high_freq_factor = 4;
    if (!s) return 0;
    char type[32] = "";
    json_object *tv = ms_json_get(s, "type");
    if (ms_json_null(tv)) tv = ms_json_get(s, "rope_type");
    if (!ms_json_null(tv)) {
        if (!json_object_is_type(tv, json_type_string))
            return ms_errf(c->err, EINVAL, "%s: rope type must be a string", c->what);
        snprintf(type, sizeof type, "%s", json_object_get_string(tv));
    }
    if (!strcmp(type, "yarn") || !strcmp(type, "deepseek_yarn")) {
        r->type = MS_ROPE_YARN;
    } else if (!strcmp(type, "linear")) {
        r->type = MS_ROPE_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        r->type = MS_ROPE_LLAMA3;
    } else if (!strcmp(type, "") || !strcmp(type, "default")) {
        r->type = MS_ROPE_DEFAULT;
        return 0;
    } else {
        return ms_errf(c->err, EINVAL,
                       "%s: unsupported rope scaling type \"%s\" (supported: yarn, linear, llama3, default)", c->what,
                       type);
    }
    if ((rc = ms_json_num(c, s, "factor", true, 1, 1e-6, 1e6, &r->factor)) < 0) return rc;
    double omp;
    if ((rc = ms_json_num(c, s, "original_max_position_embeddings", r->type == MS_ROPE_YARN || r->type == MS_ROPE_LLAMA3,
                          (double)max_pos, 1, 1e12, &omp)) < 0)
        return rc;
    r->orig_max_pos = (int64_t)omp;
    if ((rc = ms_json_num(c, s, "beta_fast", false, 32, 0, 1e6, &r->beta_fast)) < 0) return rc;
    if ((rc = ms_json_num(c, s, "beta_slow", false, 1, 0, 1e6, &r->beta_slow)) < 0) return rc;
    if ((rc = ms_json_num(c, s, "mscale", false, 1, -1e6, 1e6, &r->mscale)) < 0) return rc;
    if ((rc = ms_json_num(c, s, "mscale_all_dim", false, 0, -1e6, 1e6, &r->mscale_all_dim)) < 0) return rc;
    if ((rc = ms_json_num(c, s, "low_freq_factor", false, 1, 1e-6, 1e6, &r->low_freq_factor)) < 0) return rc;
    if ((rc = ms_json_num(c, s, "high_freq_factor", false, 4, 1e-6, 1e6, &r->high_freq_factor)) < 0) return rc;
    if (r->type == MS_ROPE_LLAMA3 && r->high_freq_factor <= r->low_freq_factor)
        return ms_errf(c->err, EINVAL, "%s: rope_scaling: high_freq_factor must exceed low_freq_factor", c->what);
    return 0;
}

double ms_rope_yarn_get_m(double factor, double m) { return factor <= 1 ? 1.0 : 0.1 * m * log(factor) + 1.0; }

void ms_rope_inv_freq(const ms_rope_cfg *r, double theta, int d, double *inv, float *mscale)
{
    double base = theta;
    *mscale = 1.0f;
    for (int i = 0; i < d / 2; i++) inv[i] = pow(base, -2.0 * i / d);
    if (r->type == MS_ROPE_LINEAR) {
        for (int i = 0; i < d / 2; i++) inv[i] /= r->factor;
    } else if (r->type == MS_ROPE_LLAMA3) {
        /* periods P_i = base^(2i/d), wavelengths 2 pi P_i against the bands of L0 */
        double f = r->factor, L0 = (double)r->orig_max_pos;
        double low_wl = L0 / r->low_freq_factor, high_wl = L0 / r->high_freq_factor;
        for (int i = 0; i < d / 2; i++) {
            double P = pow(base, 2.0 * i / d), wl = 2.0 * M_PI * P;
            if (wl > low_wl) {
                P *= f;
            } else if (wl > high_wl && wl < low_wl) {
                double s = (L0 / wl - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
                P /= (1.0 - s) / f + s;
            }
            inv[i] = 1.0 / P;
        }
    } else if (r->type == MS_ROPE_YARN) {
        double f = r->factor, L0 = (double)r->orig_max_pos;
#define CORR(b) ((double)d * log(L0 / (2.0 * M_PI * (b))) / (2.0 * log(base)))
        double low = floor(CORR(r->beta_fast)), high = ceil(CORR(r->beta_slow));
#undef CORR
        if (low < 0) low = 0;
        if (high > d - 1) high = d - 1;
        if (low == high) high += 0.001;
        for (int i = 0; i < d / 2; i++) {
            double ramp = ((double)i - low) / (high - low);
            if (ramp < 0) ramp = 0;
            if (ramp > 1) ramp = 1;
            double keep = 1.0 - ramp;
            inv[i] = inv[i] * keep + inv[i] / f * (1.0 - keep);
        }
        *mscale = (float)(ms_rope_yarn_get_m(f, r->mscale) / ms_rope_yarn_get_m(f, r->mscale_all_dim));
    }
}

static int parse_eos(const ms_jctx *c, json_object *v, ms_config *cfg)
{
    cfg->n_eos = 0;
    if (ms_json_null(v)) return 0;
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

int ms_config_parse_common(const ms_jctx *c, json_object *o, json_object *root, double rms_eps_default,
                           ms_config *cfg)
{
    int rc;
    const int BIG = 1 << 24;
    if ((rc = ms_json_int32(c, o, "vocab_size", true, 0, 1, BIG, &cfg->vocab_size)) < 0) return rc;
    if ((rc = ms_json_int32(c, o, "hidden_size", true, 0, 1, 1 << 20, &cfg->hidden_size)) < 0) return rc;
    if ((rc = ms_json_int32(c, o, "num_hidden_layers", true, 0, 1, MS_MAX_LAYERS, &cfg->n_layers)) < 0) return rc;
    if ((rc = ms_json_num(c, o, "rms_norm_eps", false, rms_eps_default, 0, 1, &cfg->rms_norm_eps)) < 0) return rc;
    if ((rc = ms_json_int(c, o, "max_position_embeddings", false, 4096, 1, (int64_t)1 << 40,
                          &cfg->max_position_embeddings)) < 0)
        return rc;
    if ((rc = ms_json_bool(c, o, "tie_word_embeddings", false, &cfg->tie_word_embeddings)) < 0) return rc;
    if ((rc = ms_json_int32(c, o, "num_nextn_predict_layers", false, 0, 0, 64, &cfg->num_nextn_predict_layers)) < 0)
        return rc;
    json_object *bo = ms_json_null(ms_json_get(o, "bos_token_id")) ? root : o;
    if ((rc = ms_json_int32(c, bo, "bos_token_id", false, -1, -1, cfg->vocab_size - 1, &cfg->bos_token_id)) < 0)
        return rc;
    json_object *eos = ms_json_get(o, "eos_token_id");
    if ((rc = parse_eos(c, ms_json_null(eos) ? ms_json_get(root, "eos_token_id") : eos, cfg)) < 0) return rc;
    if ((rc = ms_json_str(c, o, "torch_dtype", false, "", cfg->torch_dtype, sizeof cfg->torch_dtype)) < 0) return rc;
    if (!cfg->torch_dtype[0])
        if ((rc = ms_json_str(c, o, "dtype", false, "bfloat16", cfg->torch_dtype, sizeof cfg->torch_dtype)) < 0)
            return rc;
    return 0;
}

/* Read config.json: path is the file itself or the model directory holding it.
 * file (PATH_MAX bytes) receives the file name for messages. */
int ms_config_read(const char *path, char *file, size_t flen, char **text, ms_err *err)
{
    size_t l = strlen(path);
    int rc = 0;
    if (l < 5 || strcmp(path + l - 5, ".json") != 0) rc = ms_path_join(file, flen, path, "config.json", err);
    else snprintf(file, flen, "%s", path);
    if (rc < 0) return rc;
    return ms_read_file(file, 16u << 20, text, NULL, err);
}

/* ---- quantization ---- */

static int parse_qparams(const ms_jctx *c, json_object *o, const ms_qparams *def, const char *path, ms_qparams *out)
{
    *out = *def;
    out->quantized = true;
    out->explicit_bits = out->explicit_gs = false;
    json_object *v;
    if ((v = ms_json_get(o, "bits")) && !ms_json_null(v)) {
        if (!json_object_is_type(v, json_type_int))
            return ms_errf(c->err, EINVAL, "%s: quantization entry %s: \"bits\" must be an integer", c->what, path);
        out->bits = json_object_get_int(v);
        out->explicit_bits = true;
    }
    if ((v = ms_json_get(o, "group_size")) && !ms_json_null(v)) {
        if (!json_object_is_type(v, json_type_int))
            return ms_errf(c->err, EINVAL, "%s: quantization entry %s: \"group_size\" must be an integer", c->what,
                           path);
        out->group_size = json_object_get_int(v);
        out->explicit_gs = true;
    }
    if ((v = ms_json_get(o, "mode")) && !ms_json_null(v)) {
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
    ms_jctx c = {what, err};
    int rc = 0;
    json_object *blk = ms_json_get(root, "quantization");
    if (ms_json_null(blk)) {
        json_object *qc = ms_json_get(root, "quantization_config");
        json_object *tc = ms_json_get(root, "text_config");
        if (ms_json_null(qc) && !ms_json_null(tc)) qc = ms_json_get(tc, "quantization_config");
        if (!ms_json_null(qc) && json_object_is_type(qc, json_type_object)) {
            json_object *qm = ms_json_get(qc, "quant_method");
            if (!ms_json_null(qm)) {
                snprintf(q->foreign, sizeof q->foreign, "%s",
                         json_object_is_type(qm, json_type_string) ? json_object_get_string(qm) : "?");
            } else if (ms_json_get(qc, "bits") || ms_json_get(qc, "group_size")) {
                blk = qc;
            }
        }
    }
    if (ms_json_null(blk)) goto out;
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
    int rc = ms_config_read(path, file, sizeof file, &text, err);
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

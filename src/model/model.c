/* model.c - open a model directory: config, tensor table, quantization of each
 * module, the routed-expert table and the resident set (see model.h). */
#include "model.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "util.h"

const ms_tensor *ms_model_find(const ms_model *m, const char *fmt, ...)
{
    char name[512];
    int n = snprintf(name, sizeof name, "%s", m->prefix);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(name + n, sizeof name - (size_t)n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)(n + k) >= sizeof name) return NULL;
    return ms_tt_find(&m->tt, name);
}

static const char *file_of(const ms_model *m, const ms_tensor *t) { return m->tt.files[t->file].path; }

int ms_model_check_shape(const ms_model *m, const ms_tensor *t, int ndim, const int64_t *want, ms_err *err)
{
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
    if (ok) return 0;
    ms_tensor tmp = {.ndim = ndim};
    memcpy(tmp.shape, want, (size_t)ndim * sizeof *want);
    char a[128], b[128];
    return ms_errf(err, EINVAL, "%s: tensor %s has shape %s, but config.json implies %s", file_of(m, t), t->name,
                   ms_tensor_shape_str(t, a, sizeof a), ms_tensor_shape_str(&tmp, b, sizeof b));
}

static bool is_float_dt(ms_dtype d) { return d == MS_DT_F32 || d == MS_DT_F16 || d == MS_DT_BF16; }

static ms_wtype dense_wtype(ms_dtype d)
{
    return d == MS_DT_F32 ? MS_WT_F32 : d == MS_DT_F16 ? MS_WT_F16 : MS_WT_BF16;
}

int ms_model_linear(const ms_model *m, const char *module, int64_t lead, int64_t rows, int64_t cols,
                    ms_linear *out, ms_err *err)
{
    memset(out, 0, sizeof *out);
    const ms_tensor *w = ms_model_find(m, "%s.weight", module);
    if (!w) return ms_errf(err, ENOENT, "%s: tensor %s%s.weight is missing", m->dir, m->prefix, module);
    const ms_tensor *s = ms_model_find(m, "%s.scales", module);
    const ms_tensor *b = ms_model_find(m, "%s.biases", module);
    int nd = lead > 0 ? 3 : 2;
    int64_t want[3];
    int o = 0;
    if (lead > 0) want[o++] = lead;
    want[o] = rows;
    out->lead = lead;
    out->rows = rows;
    out->cols = cols;
    out->w = w;
    const char *fp = file_of(m, w);
    char qpath[600];
    snprintf(qpath, sizeof qpath, "%s%s", m->prefix, module);
    ms_qparams qp;
    int explicit_entry = ms_qconfig_lookup(&m->qcfg, qpath, &qp);
    if (!s) {
        if (w->dtype == MS_DT_F8_E4M3 || w->dtype == MS_DT_F8_E5M2)
            return ms_errf(err, ENOTSUP,
                           "%s: module %s: FP8 block-quantized weights (weight_scale_inv) are not supported yet; "
                           "use the bf16 or an MLX checkpoint", fp, qpath);
        if (w->dtype == MS_DT_U32 || w->dtype == MS_DT_U8)
            return ms_errf(err, EINVAL, "%s: module %s: weight is %s (packed) but %s.scales is missing", fp, qpath,
                           ms_dtype_name(w->dtype), qpath);
        if (!is_float_dt(w->dtype))
            return ms_errf(err, EINVAL, "%s: module %s: unsupported weight dtype %s", fp, qpath,
                           ms_dtype_name(w->dtype));
        if (b)
            return ms_errf(err, EINVAL, "%s: module %s: has .biases but no .scales", fp, qpath);
        want[o + 1] = cols;
        int rc = ms_model_check_shape(m, w, nd, want, err);
        if (rc < 0) return rc;
        out->type = dense_wtype(w->dtype);
        return 0;
    }
    /* Quantized. */
    if (strcmp(qp.mode, "affine") != 0)
        return ms_errf(err, ENOTSUP, "%s: module %s: quantization mode \"%s\" is not supported yet (affine only)", fp,
                       qpath, qp.mode);
    if (explicit_entry && !qp.quantized)
        return ms_errf(err, EINVAL, "%s: module %s: config.json says it is not quantized, but %s.scales exists", fp,
                       qpath, qpath);
    if (s->dtype == MS_DT_U8)
        return ms_errf(err, ENOTSUP,
                       "%s: module %s: U8 scales without biases look like mxfp4/mxfp8/nvfp4 quantization, which is "
                       "not supported yet", fp, qpath);
    if (!b) return ms_errf(err, EINVAL, "%s: module %s: affine quantization needs %s.biases, which is missing", fp,
                           qpath, qpath);
    if (w->dtype != MS_DT_U32)
        return ms_errf(err, EINVAL, "%s: module %s: quantized weight must be U32, found %s", fp, qpath,
                       ms_dtype_name(w->dtype));
    if (!is_float_dt(s->dtype) || s->dtype != b->dtype)
        return ms_errf(err, EINVAL, "%s: module %s: scales/biases must share a float dtype (found %s / %s)", fp,
                       qpath, ms_dtype_name(s->dtype), ms_dtype_name(b->dtype));
    if (w->ndim != nd || s->ndim != nd || b->ndim != nd)
        return ms_errf(err, EINVAL, "%s: module %s: quantized tensors must have %d dimensions", fp, qpath, nd);
    int64_t packed = w->shape[nd - 1], ng = s->shape[nd - 1];
    if (packed <= 0 || ng <= 0 || (packed * 32) % cols != 0 || cols % ng != 0)
        return ms_errf(err, EINVAL,
                       "%s: module %s: packed shapes (weight %lld words, %lld groups per row) do not fit %lld input "
                       "columns", fp, qpath, (long long)packed, (long long)ng, (long long)cols);
    int bits = (int)(packed * 32 / cols), gs = (int)(cols / ng);
    if (!ms_affine_bits_ok(bits) || !ms_affine_group_ok(gs))
        return ms_errf(err, EINVAL,
                       "%s: module %s: packed shapes give %d-bit group %d, which is not a valid affine quantization",
                       fp, qpath, bits, gs);
    if ((qp.explicit_bits && qp.bits != bits) || (qp.explicit_gs && qp.group_size != gs))
        return ms_errf(err, EINVAL,
                       "%s: module %s: config.json says %d-bit group %d, but the packed shapes give %d-bit group %d",
                       fp, qpath, qp.bits, qp.group_size, bits, gs);
    want[o + 1] = packed;
    int rc = ms_model_check_shape(m, w, nd, want, err);
    if (rc < 0) return rc;
    want[o + 1] = ng;
    if ((rc = ms_model_check_shape(m, s, nd, want, err)) < 0) return rc;
    if ((rc = ms_model_check_shape(m, b, nd, want, err)) < 0) return rc;
    out->type = MS_WT_AFFINE;
    out->bits = bits;
    out->group_size = gs;
    out->sb_dtype = s->dtype;
    out->scales = s;
    out->biases = b;
    return 0;
}

int ms_model_vector(const ms_model *m, const char *name, int64_t n, const ms_tensor **out, ms_err *err)
{
    const ms_tensor *t = ms_model_find(m, "%s", name);
    if (!t) return ms_errf(err, ENOENT, "%s: tensor %s%s is missing", m->dir, m->prefix, name);
    if (!is_float_dt(t->dtype) && t->dtype != MS_DT_F64)
        return ms_errf(err, EINVAL, "%s: tensor %s: expected a float dtype, found %s", file_of(m, t), t->name,
                       ms_dtype_name(t->dtype));
    int64_t want[1] = {n};
    int rc = ms_model_check_shape(m, t, 1, want, err);
    if (rc < 0) return rc;
    *out = t;
    return 0;
}

uint64_t ms_linear_slice_bytes(const ms_linear *l, int part)
{
    const ms_tensor *t = part == MS_PART_W ? l->w : part == MS_PART_SCALES ? l->scales : l->biases;
    if (!t) return 0;
    return l->lead > 0 ? t->nbytes / (uint64_t)l->lead : t->nbytes;
}

ms_mat ms_linear_mat(const ms_linear *l, int64_t slice, const void *w, const void *s, const void *b)
{
    ms_mat mt = {0};
    mt.type = l->type;
    mt.bits = l->bits;
    mt.group_size = l->group_size;
    mt.sb_dtype = l->sb_dtype;
    mt.rows = l->rows;
    mt.cols = l->cols;
    mt.w = (const char *)w + (uint64_t)slice * ms_linear_slice_bytes(l, MS_PART_W);
    if (l->type == MS_WT_AFFINE) {
        mt.scales = (const char *)s + (uint64_t)slice * ms_linear_slice_bytes(l, MS_PART_SCALES);
        mt.biases = (const char *)b + (uint64_t)slice * ms_linear_slice_bytes(l, MS_PART_BIASES);
    }
    return mt;
}

/* "model.layers.12.xxx" -> 12, else -1 */
static int layer_of(const char *name, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0) return -1;
    name += pl;
    if (strncmp(name, "model.layers.", 13) != 0) return -1;
    const char *p = name + 13;
    if (!isdigit((unsigned char)*p)) return -1;
    long v = strtol(p, (char **)&p, 10);
    if (*p != '.' || v > 1000000) return -1;
    return (int)v;
}

/* Is tensor name (prefix stripped) under a routed-expert container of MoE layer
 * record ml ("<module>.switch_mlp." / "<module>.experts.")? Such tensors are never
 * resident even when the expert table does not use them. */
static bool under_experts(const ms_moe_layer *ml, const char *name)
{
    size_t n = strlen(ml->module);
    if (strncmp(name, ml->module, n) != 0 || name[n] != '.') return false;
    return !strncmp(name + n + 1, "switch_mlp.", 11) || !strncmp(name + n + 1, "experts.", 8);
}

/* An included MTP layer's embed_tokens and shared_head.head are copies of the
 * main model's embedding and lm_head (DeepSeek-V3's README_WEIGHTS: they "share
 * parameters"); like SGLang we use the main tensors and never load the copies. */
static bool mtp_shared_copy(const char *name)
{
    const char *p = strstr(name, ".embed_tokens.");
    const char *q = strstr(name, ".shared_head.head.");
    return p || q;
}

/* Mark tensors: experts (the expert table's, marked while it was built, and
 * the rest of their containers), ignored (MTP layers and ".mtp" modules, inv_freq, foreign
 * prefixes such as vision towers), resident (the rest). */
static void classify(ms_model *m)
{
    size_t pl = strlen(m->prefix);
    for (int i = 0; i < m->tt.n_tensors; i++) {
        const ms_tensor *t = &m->tt.tensors[i];
        uint8_t role = MS_ROLE_RESIDENT;
        int l = layer_of(t->name, m->prefix);
        if (m->role[i] == MS_ROLE_EXPERT)
            role = MS_ROLE_EXPERT;
        else if (strncmp(t->name, m->prefix, pl) != 0 ||
                 (strncmp(t->name + pl, "model.", 6) != 0 && strncmp(t->name + pl, "lm_head.", 8) != 0))
            role = MS_ROLE_IGNORED;
        else if (strstr(t->name, "rotary_emb.inv_freq") || strstr(t->name, ".mtp"))
            role = MS_ROLE_IGNORED; /* rotary tables; MTP modules outside model.layers (Step) */
        else if (l >= ms_config_n_layers_all(&m->cfg))
            role = MS_ROLE_IGNORED; /* MTP / next-n prediction layers (unless included) */
        else if (l >= m->cfg.n_layers && mtp_shared_copy(t->name + pl))
            role = MS_ROLE_IGNORED; /* the MTP layer's copies of embed_tokens / lm_head */
        else if (l >= 0 && m->moe_index[l] >= 0 && under_experts(&m->moe[m->moe_index[l]], t->name + pl))
            role = MS_ROLE_EXPERT;
        m->role[i] = role;
        if (role == MS_ROLE_RESIDENT) m->resident_bytes += t->nbytes;
        else if (role == MS_ROLE_IGNORED) m->ignored_bytes += t->nbytes;
    }
}

int ms_model_open_cfg(const char *dir, ms_config *cfg, ms_model *m, ms_err *err)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg; /* ownership of the family's block moves here */
    cfg->arch = NULL;
    int rc;
    m->dir = strdup(dir);
    if (!m->dir) {
        ms_config_free(&m->cfg);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    if ((rc = ms_qconfig_load(dir, &m->qcfg, err)) < 0) goto fail;
    if ((rc = ms_tt_open_dir(dir, &m->tt, err)) < 0) goto fail;
    if (ms_tt_find(&m->tt, "model.embed_tokens.weight")) m->prefix[0] = 0;
    else if (ms_tt_find(&m->tt, "language_model.model.embed_tokens.weight"))
        snprintf(m->prefix, sizeof m->prefix, "language_model.");
    else {
        rc = ms_errf(err, ENOENT, "%s: tensor model.embed_tokens.weight is missing", dir);
        goto fail;
    }
    /* Foreign quantization (FP8 blocks etc.): refuse, naming a module. */
    for (int i = 0; i < m->tt.n_tensors; i++) {
        const char *n = m->tt.tensors[i].name;
        size_t l = strlen(n);
        if (l > 17 && !strcmp(n + l - 17, ".weight_scale_inv")) {
            rc = ms_errf(err, ENOTSUP,
                         "%s: module %.*s: FP8 block quantization (%s) is not supported yet; use the bf16 or an MLX "
                         "checkpoint", m->tt.files[m->tt.tensors[i].file].path, (int)(l - 17), n,
                         m->qcfg.foreign[0] ? m->qcfg.foreign : "weight_scale_inv");
            goto fail;
        }
    }
    if (m->qcfg.foreign[0] && strcmp(m->qcfg.foreign, "mlx") != 0) {
        rc = ms_errf(err, ENOTSUP, "%s/config.json: quantization_config.quant_method \"%s\" is not supported",
                     dir, m->qcfg.foreign);
        goto fail;
    }
    const ms_config *c = &m->cfg;
    int n_all = ms_config_n_layers_all(c);
    m->moe_index = malloc((size_t)n_all * sizeof *m->moe_index);
    m->role = calloc((size_t)(m->tt.n_tensors ? m->tt.n_tensors : 1), 1);
    int nmoe = ms_config_n_moe_layers(c);
    m->moe = calloc((size_t)(nmoe ? nmoe : 1), sizeof *m->moe);
    if (!m->moe_index || !m->role || !m->moe) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto fail;
    }
    m->min_expert_bytes = UINT64_MAX;
    for (int l = 0; l < n_all; l++) {
        m->moe_index[l] = -1;
        if (!ms_config_is_moe_layer(c, l)) continue;
        m->moe[m->n_moe_layers].layer = l;
        m->moe_index[l] = m->n_moe_layers++;
    }
    if ((rc = ms_model_build_experts(m, err)) < 0) goto fail;
    for (int li = 0; li < m->n_moe_layers; li++) {
        const ms_moe_layer *ml = &m->moe[li];
        m->expert_bytes_total += ml->expert_bytes * (uint64_t)c->n_routed_experts;
        m->max_expert_bytes = MS_MAX(m->max_expert_bytes, ml->expert_bytes);
        m->min_expert_bytes = MS_MIN(m->min_expert_bytes, ml->expert_bytes);
    }
    if (m->n_moe_layers == 0) m->min_expert_bytes = 0;
    m->paths = malloc((size_t)(m->tt.n_files ? m->tt.n_files : 1) * sizeof *m->paths);
    if (!m->paths) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < m->tt.n_files; i++) m->paths[i] = m->tt.files[i].path;
    m->experts = (ms_expert_table){.files = m->paths, .n_files = m->tt.n_files, .n_layers = n_all,
                                   .moe_index = m->moe_index, .n_moe_layers = m->n_moe_layers,
                                   .n_experts = c->n_routed_experts, .top_k = c->n_experts_per_tok,
                                   .n_parts = m->n_parts, .ranges = m->ranges};
    classify(m);
    return 0;
fail:
    ms_model_close(m);
    return rc;
}

void ms_model_close(ms_model *m)
{
    free(m->moe);
    free(m->ranges);
    free(m->paths);
    free(m->moe_index);
    free(m->role);
    ms_tt_free(&m->tt);
    ms_qconfig_free(&m->qcfg);
    ms_config_free(&m->cfg);
    free(m->dir);
    memset(m, 0, sizeof *m);
}

/* ---- quantization table for inspect ---- */

/* Replace every ".<digits>." component with ".*." */
static void pattern_of(const char *name, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = name; *p && o + 3 < len;) {
        if (*p == '.' && isdigit((unsigned char)p[1])) {
            const char *q = p + 1;
            while (isdigit((unsigned char)*q)) q++;
            if (*q == '.' || *q == 0) {
                out[o++] = '.';
                out[o++] = '*';
                p = q;
                continue;
            }
        }
        out[o++] = *p++;
    }
    out[o] = 0;
}

int ms_model_quant_table(const ms_model *m, ms_qrow **rows_out, int *n_out, ms_err *err)
{
    ms_qrow *rows = NULL;
    int n = 0, cap = 0;
    for (int i = 0; i < m->tt.n_tensors; i++) {
        if (m->role[i] == MS_ROLE_IGNORED) continue;
        const ms_tensor *t = &m->tt.tensors[i];
        size_t l = strlen(t->name);
        if ((l > 7 && !strcmp(t->name + l - 7, ".scales")) || (l > 7 && !strcmp(t->name + l - 7, ".biases")))
            continue;
        char mod[512], pat[160], fmt[24];
        uint64_t bytes = t->nbytes;
        snprintf(mod, sizeof mod, "%s", t->name);
        bool is_w = l > 7 && !strcmp(t->name + l - 7, ".weight");
        if (is_w) mod[l - 7] = 0;
        const ms_tensor *s = NULL, *b = NULL;
        if (is_w) {
            s = ms_tt_findf(&m->tt, "%s.scales", mod);
            b = ms_tt_findf(&m->tt, "%s.biases", mod);
        }
        if (s && t->ndim >= 1 && s->ndim == t->ndim && t->shape[t->ndim - 1] > 0 && s->shape[s->ndim - 1] > 0) {
            /* bits = packed*32/cols, gs = cols/groups; cols = gs * groups */
            int64_t packed = t->shape[t->ndim - 1], groups = s->shape[s->ndim - 1];
            /* Shapes alone are ambiguous (4-bit g64 and 2-bit g128 pack alike): prefer
             * the candidate config.json names, else the first valid one. */
            ms_qparams qp;
            ms_qconfig_lookup(&m->qcfg, mod, &qp);
            int bits = 0, gs = 0;
            for (int cand = 2; cand <= 8; cand++) {
                if (!ms_affine_bits_ok(cand) || (packed * 32) % cand) continue;
                int64_t cols = packed * 32 / cand;
                if (cols % groups || !ms_affine_group_ok((int)(cols / groups))) continue;
                bool preferred = cand == qp.bits && cols / groups == qp.group_size;
                if (!bits || preferred) {
                    bits = cand;
                    gs = (int)(cols / groups);
                }
                if (preferred) break;
            }
            snprintf(fmt, sizeof fmt, "%d-bit g%d", bits, gs);
            bytes += s->nbytes + (b ? b->nbytes : 0);
        } else {
            snprintf(fmt, sizeof fmt, "%s", ms_dtype_name(t->dtype));
            for (char *q = fmt; *q; q++) *q = (char)tolower((unsigned char)*q);
        }
        pattern_of(is_w ? mod : t->name, pat, sizeof pat);
        int j;
        for (j = 0; j < n; j++)
            if (!strcmp(rows[j].pattern, pat) && !strcmp(rows[j].format, fmt)) break;
        if (j == n) {
            if (n == cap) {
                cap = cap ? cap * 2 : 32;
                ms_qrow *r2 = realloc(rows, (size_t)cap * sizeof *rows);
                if (!r2) {
                    free(rows);
                    return ms_errf(err, ENOMEM, "out of memory");
                }
                rows = r2;
            }
            memset(&rows[n], 0, sizeof rows[n]);
            snprintf(rows[n].pattern, sizeof rows[n].pattern, "%s", pat);
            snprintf(rows[n].format, sizeof rows[n].format, "%s", fmt);
            n++;
        }
        rows[j].count++;
        rows[j].bytes += bytes;
    }
    *rows_out = rows;
    *n_out = n;
    return 0;
}

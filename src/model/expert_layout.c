/* expert_layout.c - the expert layout table and the builder of the model's
 * expert table (see expert_layout.h).
 *
 * Steps (ms_model_build_experts):
 *   1. per MoE layer, probe the family's MoE module names x the layouts in table
 *      order; the first whose gate tensor exists is the layer's layout;
 *   2. resolve each projection's format (ms_model_linear: shapes, quantization),
 *      noting which parts (weight, scales, biases, linear bias) exist;
 *   3. number the parts present anywhere in the model in canonical order;
 *   4. fill the flat range table [moe layer][expert][part] from tensor offsets:
 *      stacked and fused tensors hold expert e at slice e (contiguous bytes),
 *      per-expert tensors whole;
 *   5. mark every tensor the table references as an expert tensor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "util.h"

const ms_expert_layout ms_expert_layouts[] = {
    {MS_EXPERTS_MLX_STACKED, "mlx-stacked", MS_XL_STACKED,
     {"switch_mlp.gate_proj", "switch_mlp.up_proj", "switch_mlp.down_proj"}},
    {MS_EXPERTS_HF, "hf-per-expert", MS_XL_PER_EXPERT, {"experts.%d.gate_proj", "experts.%d.up_proj", "experts.%d.down_proj"}},
    {MS_EXPERTS_MIXTRAL, "mixtral", MS_XL_PER_EXPERT, {"experts.%d.w1", "experts.%d.w3", "experts.%d.w2"}},
    {MS_EXPERTS_HF_FUSED, "hf-fused", MS_XL_FUSED, {"experts.gate_up_proj", NULL, "experts.down_proj"}},
    {MS_EXPERTS_HF_STACKED, "hf-stacked", MS_XL_STACKED, {"gate_proj", "up_proj", "down_proj"}},
};
const int ms_n_expert_layouts = (int)MS_ARRAY_LEN(ms_expert_layouts);

static const char *const default_modules[] = {"mlp", "block_sparse_moe", "moe", "ffn", NULL};

/* Per-layer result of steps 1-2, before parts are numbered. */
typedef struct layer_parts {
    const ms_tensor *t[MS_EXPERT_PROJS][MS_PART_KINDS]; /* stacked/fused: the tensor; per expert: expert 0's */
} layer_parts;

static bool is_float_dt(ms_dtype d) { return d == MS_DT_F32 || d == MS_DT_F16 || d == MS_DT_BF16; }

/* Does layer l store experts under module `mod` in layout `xl`? */
static bool probe(const ms_model *m, int l, const char *mod, const ms_expert_layout *xl)
{
    char name[256];
    if (xl->kind == MS_XL_PER_EXPERT) {
        char rel[96];
        snprintf(rel, sizeof rel, xl->proj[MS_PROJ_GATE], 0);
        snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, mod, rel);
    } else if (xl->kind == MS_XL_FUSED) {
        snprintf(name, sizeof name, "model.layers.%d.%s.%s", l, mod, xl->proj[MS_PROJ_GATE]);
    } else {
        snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, mod, xl->proj[MS_PROJ_GATE]);
    }
    const ms_tensor *t = ms_model_find(m, "%s", name);
    /* the bare stacked layout must not mistake a dense MLP for experts */
    return t && (xl->id != MS_EXPERTS_HF_STACKED || t->ndim == 3);
}

static bool same_format(const ms_linear *a, const ms_linear *b)
{
    return a->type == b->type && a->bits == b->bits && a->group_size == b->group_size &&
           (a->type != MS_WT_AFFINE || a->sb_dtype == b->sb_dtype) && a->w->dtype == b->w->dtype;
}

/* A linear bias of n values per expert: <module>.bias, stacked [E, n] or per expert [n]. */
static int find_bias(const ms_model *m, const char *module, int64_t lead, int64_t n, const ms_tensor **out,
                     ms_err *err)
{
    *out = ms_model_find(m, "%s.bias", module);
    if (!*out) return 0;
    int64_t want[2] = {lead, n};
    if (!is_float_dt((*out)->dtype))
        return ms_errf(err, EINVAL, "%s: tensor %s: expected a float dtype, found %s", m->tt.files[(*out)->file].path,
                       (*out)->name, ms_dtype_name((*out)->dtype));
    return lead > 0 ? ms_model_check_shape(m, *out, 2, want, err) : ms_model_check_shape(m, *out, 1, want + 1, err);
}

static void note_linear(layer_parts *lp, int p, const ms_linear *f)
{
    lp->t[p][MS_PART_W] = f->w;
    lp->t[p][MS_PART_SCALES] = f->scales;
    lp->t[p][MS_PART_BIASES] = f->biases;
}

/* Steps 1-2 for one layer. */
static int resolve_layer(ms_model *m, int l, ms_moe_layer *ml, layer_parts *lp, ms_err *err)
{
    const ms_config *c = &m->cfg;
    int E = c->n_routed_experts;
    int64_t I = c->moe_intermediate_size, D = c->hidden_size;
    const char *const *mods = c->moe_modules ? c->moe_modules : default_modules;
    const ms_expert_layout *xl = NULL;
    const char *mod = NULL;
    for (int i = 0; mods[i] && !xl; i++)
        for (int k = 0; k < ms_n_expert_layouts && !xl; k++)
            if (probe(m, l, mods[i], &ms_expert_layouts[k])) {
                xl = &ms_expert_layouts[k];
                mod = mods[i];
            }
    if (!xl)
        return ms_errf(err, ENOENT,
                       "%s: layer %d is a MoE layer in config.json but has no routed experts (expected "
                       "%smodel.layers.%d.%s.switch_mlp.* or %s.experts.<e>.*)", m->dir, l, m->prefix, l,
                       mods[0], mods[0]);
    ml->layer = l;
    ml->layout = xl;
    snprintf(ml->module, sizeof ml->module, "model.layers.%d.%s", l, mod);
    memset(lp, 0, sizeof *lp);
    char path[256];
    int rc;
    if (xl->kind == MS_XL_STACKED) {
        for (int p = 0; p < MS_EXPERT_PROJS; p++) {
            snprintf(path, sizeof path, "%s.%s", ml->module, xl->proj[p]);
            ms_linear *f = &ml->proj[p].fmt;
            if ((rc = ms_model_linear(m, path, E, p == MS_PROJ_DOWN ? D : I, p == MS_PROJ_DOWN ? I : D, f, err)) < 0)
                return rc;
            note_linear(lp, p, f);
            if ((rc = find_bias(m, path, E, f->rows, &lp->t[p][MS_PART_BIAS], err)) < 0) return rc;
        }
    } else if (xl->kind == MS_XL_PER_EXPERT) {
        for (int e = 0; e < E; e++)
            for (int p = 0; p < MS_EXPERT_PROJS; p++) {
                char rel[96];
                snprintf(rel, sizeof rel, xl->proj[p], e);
                snprintf(path, sizeof path, "%s.%s", ml->module, rel);
                ms_linear f;
                if ((rc = ms_model_linear(m, path, 0, p == MS_PROJ_DOWN ? D : I, p == MS_PROJ_DOWN ? I : D, &f, err)) <
                    0)
                    return rc;
                const ms_tensor *bias;
                if ((rc = find_bias(m, path, 0, f.rows, &bias, err)) < 0) return rc;
                if (e == 0) {
                    ml->proj[p].fmt = f;
                    note_linear(lp, p, &f);
                    lp->t[p][MS_PART_BIAS] = bias;
                } else if (!same_format(&f, &ml->proj[p].fmt) || (bias != NULL) != (lp->t[p][MS_PART_BIAS] != NULL)) {
                    return ms_errf(err, EINVAL, "%s: tensor %s: experts of layer %d are stored in different formats",
                                   m->dir, f.w->name, l);
                }
            }
        /* No extra experts beyond n_routed_experts. */
        char rel[96];
        snprintf(rel, sizeof rel, xl->proj[MS_PROJ_GATE], E);
        if (ms_model_find(m, "%s.%s.weight", ml->module, rel))
            return ms_errf(err, EINVAL, "%s: layer %d has more experts than n_routed_experts = %d", m->dir, l, E);
    } else { /* fused: gate_up [E, 2I, D] + down [E, D, I], dense floats */
        const ms_tensor *gu = ms_model_find(m, "%s.%s", ml->module, xl->proj[MS_PROJ_GATE]);
        const ms_tensor *dn = ms_model_find(m, "%s.%s", ml->module, xl->proj[MS_PROJ_DOWN]);
        if (!dn)
            return ms_errf(err, ENOENT, "%s: layer %d: %s.%s is missing", m->dir, l, mod, xl->proj[MS_PROJ_DOWN]);
        int64_t w1[3] = {E, 2 * I, D}, w2[3] = {E, D, I};
        if ((rc = ms_model_check_shape(m, gu, 3, w1, err)) < 0 || (rc = ms_model_check_shape(m, dn, 3, w2, err)) < 0)
            return rc;
        if (!is_float_dt(gu->dtype) || gu->dtype != dn->dtype)
            return ms_errf(err, EINVAL, "%s: layer %d: fused experts must be f32/f16/bf16", m->dir, l);
        for (int p = 0; p < MS_EXPERT_PROJS; p++) {
            ms_linear *f = &ml->proj[p].fmt;
            memset(f, 0, sizeof *f);
            f->type = gu->dtype == MS_DT_F32 ? MS_WT_F32 : gu->dtype == MS_DT_F16 ? MS_WT_F16 : MS_WT_BF16;
            f->rows = p == MS_PROJ_DOWN ? D : I;
            f->cols = p == MS_PROJ_DOWN ? I : D;
            f->w = p == MS_PROJ_DOWN ? dn : gu;
            lp->t[p][MS_PART_W] = f->w;
        }
        /* biases: <gate_up>_bias [E, 2I], <down>_bias [E, D] */
        const ms_tensor *gub = ms_model_find(m, "%s.%s_bias", ml->module, xl->proj[MS_PROJ_GATE]);
        const ms_tensor *dnb = ms_model_find(m, "%s.%s_bias", ml->module, xl->proj[MS_PROJ_DOWN]);
        int64_t b1[2] = {E, 2 * I}, b2[2] = {E, D};
        if (gub && ((rc = ms_model_check_shape(m, gub, 2, b1, err)) < 0)) return rc;
        if (dnb && ((rc = ms_model_check_shape(m, dnb, 2, b2, err)) < 0)) return rc;
        if ((gub && gub->dtype != gu->dtype) || (dnb && dnb->dtype != gu->dtype))
            return ms_errf(err, EINVAL, "%s: layer %d: fused expert biases must have the weights' dtype", m->dir, l);
        lp->t[MS_PROJ_GATE][MS_PART_BIAS] = lp->t[MS_PROJ_UP][MS_PART_BIAS] = gub;
        lp->t[MS_PROJ_DOWN][MS_PART_BIAS] = dnb;
    }
    return 0;
}

/* Step 4: the byte range of (expert e, projection p, part kind k) of a layer;
 * step 5: its tensor is marked as an expert tensor. */
static ms_range range_of(ms_model *m, const ms_moe_layer *ml, const layer_parts *lp, int e, int p, int k)
{
    ms_range r = {0};
    const ms_tensor *t = lp->t[p][k];
    if (!t) return r;
    int E = m->cfg.n_routed_experts;
    if (ml->layout->kind == MS_XL_PER_EXPERT && e > 0) {
        char rel[96];
        snprintf(rel, sizeof rel, ml->layout->proj[p], e);
        static const char *const suffix[MS_PART_KINDS] = {"weight", "scales", "biases", "bias"};
        t = ms_model_find(m, "%s.%s.%s", ml->module, rel, suffix[k]);
        if (!t) return r; /* cannot happen: resolve_layer checked every expert */
    }
    m->role[t - m->tt.tensors] = MS_ROLE_EXPERT;
    r.file = t->file;
    if (ml->layout->kind == MS_XL_PER_EXPERT) {
        r.offset = t->offset;
        r.len = t->nbytes;
    } else if (ml->layout->kind == MS_XL_FUSED && p != MS_PROJ_DOWN) {
        /* gate_up (and its bias): expert e's slice holds gate rows then up rows */
        uint64_t half = t->nbytes / (uint64_t)E / 2;
        r.offset = t->offset + (uint64_t)e * 2 * half + (p == MS_PROJ_UP ? half : 0);
        r.len = half;
    } else {
        uint64_t sb = t->nbytes / (uint64_t)E;
        r.offset = t->offset + (uint64_t)e * sb;
        r.len = sb;
    }
    return r;
}

int ms_model_build_experts(ms_model *m, ms_err *err)
{
    const ms_config *c = &m->cfg;
    int E = c->n_routed_experts, L = m->n_moe_layers;
    layer_parts *lp = calloc((size_t)(L ? L : 1), sizeof *lp);
    if (!lp) return ms_errf(err, ENOMEM, "out of memory");
    int rc = 0;
    /* 1-2 */
    for (int li = 0; li < L && rc == 0; li++) rc = resolve_layer(m, m->moe[li].layer, &m->moe[li], &lp[li], err);
    if (rc < 0) goto out;
    /* 3. part numbering: present in any layer, canonical order */
    int index[MS_EXPERT_PROJS][MS_PART_KINDS];
    m->n_parts = 0;
    for (int p = 0; p < MS_EXPERT_PROJS; p++)
        for (int k = 0; k < MS_PART_KINDS; k++) {
            bool any = false;
            for (int li = 0; li < L; li++) any |= lp[li].t[p][k] != NULL;
            index[p][k] = any ? m->n_parts++ : -1;
        }
    if (m->n_parts > MS_MAX_EXPERT_PARTS) {
        rc = ms_errf(err, ENOTSUP, "%s: experts have %d parts (at most %d)", m->dir, m->n_parts, MS_MAX_EXPERT_PARTS);
        goto out;
    }
    /* 4. ranges */
    size_t n = (size_t)L * (size_t)E * (size_t)(m->n_parts ? m->n_parts : 1);
    m->ranges = calloc(n ? n : 1, sizeof *m->ranges);
    if (!m->ranges) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto out;
    }
    for (int li = 0; li < L; li++) {
        ms_moe_layer *ml = &m->moe[li];
        ms_range *lr = m->ranges + (size_t)li * E * (size_t)m->n_parts;
        ml->ranges = lr;
        for (int p = 0; p < MS_EXPERT_PROJS; p++)
            for (int k = 0; k < MS_PART_KINDS; k++) ml->proj[p].part[k] = lp[li].t[p][k] ? index[p][k] : -1;
        for (int e = 0; e < E; e++)
            for (int p = 0; p < MS_EXPERT_PROJS; p++)
                for (int k = 0; k < MS_PART_KINDS; k++)
                    if (index[p][k] >= 0)
                        lr[(size_t)e * m->n_parts + index[p][k]] = range_of(m, ml, &lp[li], e, p, k);
        ml->expert_bytes = 0;
        for (int r = 0; r < m->n_parts; r++) ml->expert_bytes += lr[r].len;
    }
    m->layout = L ? m->moe[0].layout : NULL;
out:
    free(lp);
    return rc;
}

ms_mat ms_expert_mat(const ms_moe_layer *ml, int proj, const ms_expert_ptrs *ep)
{
    const ms_expert_proj *pr = &ml->proj[proj];
    const void *w = ep->p[pr->part[MS_PART_W]];
    const void *s = pr->part[MS_PART_SCALES] >= 0 ? ep->p[pr->part[MS_PART_SCALES]] : NULL;
    const void *b = pr->part[MS_PART_BIASES] >= 0 ? ep->p[pr->part[MS_PART_BIASES]] : NULL;
    return ms_linear_mat(&pr->fmt, 0, w, s, b);
}

const void *ms_expert_bias(const ms_moe_layer *ml, int proj, const ms_expert_ptrs *ep)
{
    int k = ml->proj[proj].part[MS_PART_BIAS];
    return k >= 0 ? ep->p[k] : NULL;
}

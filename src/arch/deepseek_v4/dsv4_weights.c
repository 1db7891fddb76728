/* dsv4_weights.c - bind DeepSeek-V4's resident weights, every shape checked
 * against config.json (the tensor and both shapes named in errors).
 *
 * Names are those of the seed's converter (mlx-lm fork, see
 * tests/data/golden/dsv4-tiny/README.md): model.embed_tokens, lm_head,
 * model.norm, model.hc_head.{fn,base,scale}; per layer attn_norm, ffn_norm,
 * hc_{attn,ffn}.{fn,base,scale}, attn.{wq_a,q_norm,wq_b,wkv,kv_norm,attn_sink,
 * wo_a,wo_b}, attn.compressor.{wkv,wgate,ape,norm} (ratio > 0),
 * attn.indexer.{wq_b,weights_proj,compressor.*} (ratio 4), ffn.gate.weight with
 * ffn.gate.tid2eid (hash layers, integer ids checked against the expert count)
 * or ffn.gate.e_score_correction_bias, ffn.shared_experts.*; the routed experts
 * (ffn.switch_mlp.*) are the expert table's. mtp.* is never looked at.
 *
 * Matrices stay where the resident loader put them (quantized or not);
 * vectors, ape and non-f32 mixer tensors get f32 copies owned here (their
 * bytes are reported as extra resident bytes). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsv4.h"
#include "util.h"

typedef struct binder {
    const ms_model *m;
    const ms_resident *r;
    dsv4_weights *w;
    uint64_t extra;
    ms_err *err;
} binder;

static void *own(binder *b, size_t bytes)
{
    dsv4_weights *w = b->w;
    if (w->n_owned == w->cap_owned) {
        int cap = w->cap_owned ? 2 * w->cap_owned : 64;
        void **n = realloc(w->owned, (size_t)cap * sizeof *n);
        if (!n) return NULL;
        w->owned = n;
        w->cap_owned = cap;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (p) {
        w->owned[w->n_owned++] = p;
        b->extra += bytes;
    }
    return p;
}

/* A float tensor called `name` of exactly the shape given; f32 data (owned
 * copy unless it is f32 already and copy is false), finite. */
static int float_tensor(binder *b, const char *name, int ndim, const int64_t *shape, bool copy, const float **out)
{
    const ms_model *m = b->m;
    const ms_tensor *t = ms_model_find(m, "%s", name);
    if (!t) return ms_errf(b->err, ENOENT, "%s: tensor %s%s is missing", m->dir, m->prefix, name);
    const char *file = m->tt.files[t->file].path;
    if (t->dtype != MS_DT_F32 && t->dtype != MS_DT_F16 && t->dtype != MS_DT_BF16 && t->dtype != MS_DT_F64)
        return ms_errf(b->err, EINVAL, "%s: tensor %s: expected a float dtype, found %s", file, t->name,
                       ms_dtype_name(t->dtype));
    int rc = ms_model_check_shape(m, t, ndim, shape, b->err);
    if (rc < 0) return rc;
    size_t n = (size_t)ms_tensor_numel(t);
    const void *src = ms_resident_data(b->r, m, t);
    const float *f = src;
    if (copy || t->dtype != MS_DT_F32) {
        float *dst = own(b, n * sizeof(float));
        if (!dst) return ms_errf(b->err, ENOMEM, "out of memory");
        ms_convert_to_f32(t->dtype, src, dst, n);
        f = dst;
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(f[i]))
            return ms_errf(b->err, EINVAL, "%s: tensor %s holds a non-finite value at %zu", file, t->name, i);
    *out = f;
    return 0;
}

static int vec(binder *b, const char *name, int64_t n, const float **out)
{
    return float_tensor(b, name, 1, &n, true, out);
}

static int mat(binder *b, const char *module, int64_t rows, int64_t cols, ms_mat *out)
{
    return ms_arch_bind_mat(b->m, b->r, module, rows, cols, out, b->err);
}

/* A hyper-connection mixer `<p>.{fn,base,scale}` with `rows` outputs. */
static int hc(binder *b, const char *p, int rows, int nscale, dsv4_hc *out)
{
    const dsv4_weights *w = b->w;
    char name[256];
    const float *fn;
    int64_t shape[2] = {rows, (int64_t)w->HC * w->D};
    int rc;
    snprintf(name, sizeof name, "%s.fn", p);
    if ((rc = float_tensor(b, name, 2, shape, false, &fn)) < 0) return rc;
    out->fn = (ms_mat){.type = MS_WT_F32, .rows = rows, .cols = shape[1], .w = fn};
    snprintf(name, sizeof name, "%s.base", p);
    if ((rc = vec(b, name, rows, &out->base)) < 0) return rc;
    snprintf(name, sizeof name, "%s.scale", p);
    return vec(b, name, nscale, &out->scale);
}

/* A compressor `<p>.{wkv,wgate,ape,norm}` of d channels at this ratio. */
static int comp(binder *b, const char *p, int ratio, int d, dsv4_comp *c)
{
    const dsv4_weights *w = b->w;
    char name[256];
    int rc;
    c->ratio = ratio;
    c->d = d;
    c->overlap = ratio == 4;
    c->width = c->overlap ? 2 * d : d;
    snprintf(name, sizeof name, "%s.wkv", p);
    if ((rc = mat(b, name, c->width, w->D, &c->wkv)) < 0) return rc;
    snprintf(name, sizeof name, "%s.wgate", p);
    if ((rc = mat(b, name, c->width, w->D, &c->wgate)) < 0) return rc;
    int64_t shape[2] = {ratio, c->width};
    snprintf(name, sizeof name, "%s.ape", p);
    if ((rc = float_tensor(b, name, 2, shape, true, &c->ape)) < 0) return rc;
    snprintf(name, sizeof name, "%s.norm.weight", p);
    return vec(b, name, d, &c->norm);
}

/* tid2eid [vocab, K]: integer expert ids, each in [0, E). */
static int tid2eid(binder *b, const char *name, const int32_t **out)
{
    const ms_model *m = b->m;
    const dsv4_weights *w = b->w;
    const ms_tensor *t = ms_model_find(m, "%s", name);
    if (!t) return ms_errf(b->err, ENOENT, "%s: tensor %s%s is missing (num_hash_layers routes this layer by token)",
                           m->dir, m->prefix, name);
    const char *file = m->tt.files[t->file].path;
    if (t->dtype != MS_DT_I64 && t->dtype != MS_DT_I32 && t->dtype != MS_DT_U32 && t->dtype != MS_DT_U64)
        return ms_errf(b->err, EINVAL, "%s: tensor %s: expected integer expert ids, found %s", file, t->name,
                       ms_dtype_name(t->dtype));
    int64_t shape[2] = {w->c->vocab_size, w->K};
    int rc = ms_model_check_shape(m, t, 2, shape, b->err);
    if (rc < 0) return rc;
    size_t n = (size_t)shape[0] * (size_t)shape[1];
    int32_t *ids = own(b, n * sizeof *ids);
    if (!ids) return ms_errf(b->err, ENOMEM, "out of memory");
    const void *src = ms_resident_data(b->r, m, t);
    for (size_t i = 0; i < n; i++) {
        int64_t v;
        switch (t->dtype) {
        case MS_DT_I64: memcpy(&v, (const char *)src + 8 * i, 8); break;
        case MS_DT_U64: {
            uint64_t u;
            memcpy(&u, (const char *)src + 8 * i, 8);
            v = u > INT64_MAX ? -1 : (int64_t)u;
            break;
        }
        case MS_DT_I32: {
            int32_t x;
            memcpy(&x, (const char *)src + 4 * i, 4);
            v = x;
            break;
        }
        default: {
            uint32_t x;
            memcpy(&x, (const char *)src + 4 * i, 4);
            v = x;
            break;
        }
        }
        if (v < 0 || v >= w->E)
            return ms_errf(b->err, ERANGE, "%s: tensor %s: token %zu maps to expert %lld, outside 0..%d", file,
                           t->name, i / (size_t)w->K, (long long)v, w->E - 1);
        ids[i] = (int32_t)v;
    }
    *out = ids;
    return 0;
}

void dsv4_unbind(void *wp)
{
    dsv4_weights *w = wp;
    if (!w) return;
    for (int i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->owned);
    free(w->layers);
    free(w);
}

static int bind_layer(binder *b, int l)
{
    dsv4_weights *w = b->w;
    const ms_model *m = b->m;
    dsv4_layer *ly = &w->layers[l];
    char p[64], name[256];
    int rc;
    snprintf(p, sizeof p, "model.layers.%d", l);
#define NAME(fmt) (snprintf(name, sizeof name, "%s." fmt, p), name)
#define TRY(x)                                                                                                      \
    do {                                                                                                            \
        if ((rc = (x)) < 0) return rc;                                                                              \
    } while (0)
    ly->ratio = w->d->ratio[l];
    ly->hash = l < w->d->n_hash_layers;
    TRY(vec(b, NAME("attn_norm.weight"), w->D, &ly->attn_norm));
    TRY(vec(b, NAME("ffn_norm.weight"), w->D, &ly->ffn_norm));
    TRY(hc(b, NAME("hc_attn"), w->NM, 3, &ly->hc_attn));
    TRY(hc(b, NAME("hc_ffn"), w->NM, 3, &ly->hc_ffn));
    /* attention */
    TRY(mat(b, NAME("attn.wq_a"), w->ql, w->D, &ly->wq_a));
    TRY(vec(b, NAME("attn.q_norm.weight"), w->ql, &ly->q_norm));
    TRY(mat(b, NAME("attn.wq_b"), (int64_t)w->H * w->hd, w->ql, &ly->wq_b));
    TRY(mat(b, NAME("attn.wkv"), w->hd, w->D, &ly->wkv));
    TRY(vec(b, NAME("attn.kv_norm.weight"), w->hd, &ly->kv_norm));
    TRY(vec(b, NAME("attn.attn_sink"), w->H, &ly->sink));
    TRY(mat(b, NAME("attn.wo_a"), (int64_t)w->G * w->R, (int64_t)(w->H / w->G) * w->hd, &ly->wo_a));
    TRY(mat(b, NAME("attn.wo_b"), w->D, (int64_t)w->G * w->R, &ly->wo_b));
    if (ly->ratio > 0) TRY(comp(b, NAME("attn.compressor"), ly->ratio, w->hd, &ly->comp));
    if (ly->ratio == 4) {
        TRY(mat(b, NAME("attn.indexer.wq_b"), (int64_t)w->IH * w->ID, w->ql, &ly->iwq_b));
        TRY(mat(b, NAME("attn.indexer.weights_proj"), w->IH, w->D, &ly->iw));
        TRY(comp(b, NAME("attn.indexer.compressor"), 4, w->ID, &ly->icomp));
    }
    /* router and experts */
    TRY(mat(b, NAME("ffn.gate"), w->E, w->D, &ly->gate));
    if (ly->hash) TRY(tid2eid(b, NAME("ffn.gate.tid2eid"), &ly->tid2eid));
    else TRY(vec(b, NAME("ffn.gate.e_score_correction_bias"), w->E, &ly->bias));
    ly->blk.experts = ms_model_moe(m, l);
    if (!ly->blk.experts) return ms_errf(b->err, ENOENT, "%s: layer %d has no routed experts", m->dir, l);
    ms_act act = {MS_ACT_SWIGLU_CLAMP_BEFORE, (float)w->d->swiglu_limit};
    ly->blk.act_routed = ly->blk.act_shared = act;
    if (w->c->n_shared_experts > 0) {
        int S = w->c->n_shared_experts * w->c->moe_intermediate_size;
        TRY(mat(b, NAME("ffn.shared_experts.gate_proj"), S, w->D, &ly->sh_gate));
        TRY(mat(b, NAME("ffn.shared_experts.up_proj"), S, w->D, &ly->sh_up));
        TRY(mat(b, NAME("ffn.shared_experts.down_proj"), w->D, S, &ly->sh_down));
        ly->blk.sh_gate = &ly->sh_gate;
        ly->blk.sh_up = &ly->sh_up;
        ly->blk.sh_down = &ly->sh_down;
    }
#undef NAME
#undef TRY
    return 0;
}

int dsv4_bind(const ms_model *m, const ms_resident *r, void **out, uint64_t *extra_bytes, ms_err *err)
{
    const ms_config *c = &m->cfg;
    const ms_dsv4_config *d = ms_dsv4_config_of(c);
    if (!d) return ms_errf(err, EINVAL, "%s: not a deepseek_v4 config", m->dir);
    dsv4_weights *w = calloc(1, sizeof *w);
    if (!w) return ms_errf(err, ENOMEM, "out of memory");
    binder b = {.m = m, .r = r, .w = w, .err = err};
    w->m = m;
    w->c = c;
    w->d = d;
    w->D = c->hidden_size;
    w->HC = d->hc_mult;
    w->NM = (2 + d->hc_mult) * d->hc_mult;
    w->H = d->n_heads;
    w->hd = d->head_dim;
    w->rd = d->rope_dim;
    w->ql = d->q_lora_rank;
    w->G = d->o_groups;
    w->R = d->o_lora_rank;
    w->W = d->window;
    w->IH = d->index_heads;
    w->ID = d->index_dim;
    w->TK = d->index_topk;
    w->E = c->n_routed_experts;
    w->K = c->n_experts_per_tok;
    /* RoPE: rope_theta without scaling (ratio-0 layers), compress_rope_theta
     * with the YaRN block (compressed layers) */
    ms_rope_cfg plain = {.type = MS_ROPE_DEFAULT, .factor = 1};
    float mscale; /* DeepSeek-V4 scales neither cos/sin nor the softmax by YaRN's mscale */
    ms_rope_inv_freq(&plain, d->rope.theta, w->rd, w->inv_freq[0], &mscale);
    ms_rope_inv_freq(&d->rope, d->compress_rope_theta, w->rd, w->inv_freq[1], &mscale);
    int rc;
    w->layers = calloc((size_t)c->n_layers, sizeof *w->layers);
    if (!w->layers) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = mat(&b, "model.embed_tokens", c->vocab_size, w->D, &w->embed)) < 0) goto fail;
    if ((rc = mat(&b, "lm_head", c->vocab_size, w->D, &w->lm_head)) < 0) goto fail;
    if ((rc = vec(&b, "model.norm.weight", w->D, &w->final_norm)) < 0) goto fail;
    if ((rc = hc(&b, "model.hc_head", w->HC, 1, &w->hc_head)) < 0) goto fail;
    for (int l = 0; l < c->n_layers; l++)
        if ((rc = bind_layer(&b, l)) < 0) goto fail;
    *extra_bytes = b.extra + (uint64_t)c->n_layers * sizeof *w->layers;
    *out = w;
    return 0;
fail:
    dsv4_unbind(w);
    return rc;
}

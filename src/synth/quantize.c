/* quantize.c - HF bf16/f16/f32 checkpoint -> MLX affine checkpoint, the
 * conversion `mlx_lm.convert -q` does for deepseek_v3-family models:
 *
 *   1. sanitize like mlx-lm: drop MTP layers (index >= num_hidden_layers) and
 *      rotary inv_freq; stack mlp.experts.<e>.<proj> into mlp.switch_mlp.<proj>
 *      [E, out, in]; split kv_b_proj into embed_q [H, kv_lora, nope] (= W_UK^T)
 *      and unembed_out [H, v, kv_lora] (= W_UV), as mlx-lm >= 0.30.6 stores them;
 *   2. quantize every Linear / Embedding / SwitchLinear / MultiLinear whose input
 *      width is divisible by the group size (the router `mlp.gate` is a bare
 *      parameter and is never quantized; norms and e_score_correction_bias are
 *      not modules), with MLX's affine quantizer (kernels/quant.h), bits per
 *      module from the recipe;
 *   3. float tensors keep the source dtype (or --dtype), except
 *      e_score_correction_bias which stays f32 (mlx-lm's cast_predicate);
 *   4. config.json gains "quantization" and "quantization_config" (the same
 *      dict), with per-module {group_size, bits} entries for mixed recipes;
 *      tokenizer and generation files are copied.
 * Each output module is quantized in memory (one stacked projection of one layer
 * at a time) and streamed to sharded safetensors through st_write.
 */
#include "quantize.h"

#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "arch.h"
#include "deepseek_v3.h"
#include "model.h"
#include "quant.h"
#include "st_write.h"
#include "synth.h"
#include "util.h"

typedef enum job_kind {
    JOB_COPY = 0,      /* float tensor copied (converted to out dtype) */
    JOB_LINEAR,        /* 2-D module; quantized or float */
    JOB_STACK,         /* E experts' 2-D weights stacked [E, out, in] */
    JOB_EMBED_Q,       /* from kv_b_proj: [H, kv_lora, nope] */
    JOB_UNEMBED_OUT,   /* from kv_b_proj: [H, v, kv_lora] */
} job_kind;

typedef struct job {
    job_kind kind;
    char out[256];             /* output module path (LINEAR/STACK/...) or tensor name (COPY) */
    const ms_tensor *src;      /* COPY / LINEAR / kv_b_proj */
    const ms_tensor **srcs;    /* STACK: [lead] */
    int64_t lead, rows, cols;  /* logical shape of one slice */
    int bits;                  /* 0 = float */
    ms_dtype out_dtype;        /* float output dtype */
} job;

typedef struct qctx {
    const ms_model *m;
    const ms_quantize_opts *o;
    job *jobs;
    int n_jobs, cap_jobs;
    ms_err *err;
    const ms_tensor *kvb_src; /* kv_b_proj currently held in kvb (f32) */
    float *kvb;               /* [H*(nope+v)][kv_lora] */
    const ms_ds3_config *d;      /* the input's DeepSeek-V3-family config */
} qctx;

/* kv_b_proj of a layer as f32, read once for its embed_q and unembed_out jobs. */
static int load_kvb(qctx *q, const ms_tensor *t, ms_err *err)
{
    if (q->kvb_src == t) return 0;
    int64_t n = ms_tensor_numel(t);
    void *raw = malloc(t->nbytes);
    float *f = realloc(q->kvb, (size_t)n * sizeof(float));
    if (!raw || !f) {
        free(raw);
        if (f) q->kvb = f;
        return ms_errf(err, ENOMEM, "out of memory");
    }
    q->kvb = f;
    int rc = ms_tt_read(&q->m->tt, t, raw, false, err);
    if (rc == 0) ms_convert_to_f32(t->dtype, raw, f, (size_t)n);
    free(raw);
    q->kvb_src = rc == 0 ? t : NULL;
    return rc;
}

static int push(qctx *q, const job *j)
{
    if (q->n_jobs == q->cap_jobs) {
        int cap = q->cap_jobs ? q->cap_jobs * 2 : 256;
        job *n = realloc(q->jobs, (size_t)cap * sizeof *n);
        if (!n) return ms_errf(q->err, ENOMEM, "out of memory");
        q->jobs = n;
        q->cap_jobs = cap;
    }
    q->jobs[q->n_jobs++] = *j;
    return 0;
}

/* mlx-lm's built-in mixed_<lo>_<hi> predicate (mlx_lm/convert.py). */
static int mlx_mixed_bits(int lo, int hi, const char *path, int layer, int n_layers)
{
    bool more = layer >= 0 && (layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2);
    if (strstr(path, "lm_head")) return hi;
    if (more && (strstr(path, "v_proj") || strstr(path, "v_a_proj") || strstr(path, "v_b_proj") ||
                 strstr(path, "down_proj")))
        return hi;
    return lo;
}

/* Bits for a module (0 = keep float). role as in ms_synth_module_bits. */
static int bits_for(const qctx *q, const char *path, const char *role, int layer, bool is_down, int64_t in)
{
    const ms_quantize_opts *o = q->o;
    if (in <= 0 || in % o->group_size) return 0;
    if (!strncmp(o->recipe, "mixed_", 6)) {
        int lo, hi;
        if (sscanf(o->recipe, "mixed_%d_%d", &lo, &hi) != 2) return o->bits;
        return mlx_mixed_bits(lo, hi, path, layer, q->m->cfg.n_layers);
    }
    ms_synth_opts so = {0};
    so.format = MS_SYNTH_MLX;
    so.bits = o->bits;
    so.group_size = o->group_size;
    ms_synth_parse_recipe(o->recipe, &so.recipe, NULL);
    so.arch.n_layers = q->m->cfg.n_layers;
    return ms_synth_module_bits(&so, role, layer, is_down, in);
}

static int add_linear(qctx *q, const char *src_module, const char *out_module, const char *role, int layer,
                      bool is_down, int64_t rows, int64_t cols)
{
    ms_linear l;
    int rc = ms_model_linear(q->m, src_module, 0, rows, cols, &l, q->err);
    if (rc < 0) return rc;
    if (l.type == MS_WT_AFFINE)
        return ms_errf(q->err, EINVAL, "%s: module %s is already quantized; quantize takes a float checkpoint",
                       q->m->dir, src_module);
    job j = {.kind = JOB_LINEAR, .src = l.w, .rows = rows, .cols = cols, .out_dtype = q->o->dtype};
    if (j.out_dtype == MS_DT_COUNT) j.out_dtype = l.w->dtype;
    snprintf(j.out, sizeof j.out, "%s", out_module);
    j.bits = bits_for(q, out_module, role, layer, is_down, cols);
    return push(q, &j);
}

static int add_copy(qctx *q, const ms_tensor *t, ms_dtype dt)
{
    job j = {.kind = JOB_COPY, .src = t, .out_dtype = dt == MS_DT_COUNT ? t->dtype : dt};
    snprintf(j.out, sizeof j.out, "%s", t->name);
    return push(q, &j);
}

static int build_jobs(qctx *q)
{
    const ms_model *m = q->m;
    const ms_config *c = &m->cfg;
    const ms_ds3_config *d = q->d;
    int rc;
    char a[256], b[256];
    int D = c->hidden_size, H = d->n_heads;
    if (m->prefix[0]) return ms_errf(q->err, ENOTSUP, "%s: wrapped (language_model.) checkpoints are not supported", m->dir);
    if ((rc = add_linear(q, "model.embed_tokens", "model.embed_tokens", "embed", -1, false, c->vocab_size, D)) < 0)
        return rc;
    for (int l = 0; l < c->n_layers; l++) {
        const ms_tensor *t;
#define P(fmt) (snprintf(a, sizeof a, "model.layers.%d." fmt, l), a)
#define VEC(name)                                                                        \
    do {                                                                                 \
        if (!(t = ms_model_find(m, "model.layers.%d." name, l)))                          \
            return ms_errf(q->err, ENOENT, "%s: tensor model.layers.%d.%s is missing", m->dir, l, name); \
        if ((rc = add_copy(q, t, q->o->dtype)) < 0) return rc;                           \
    } while (0)
        VEC("input_layernorm.weight");
        if (d->q_lora_rank > 0) {
            if ((rc = add_linear(q, P("self_attn.q_a_proj"), a, "attn", l, false, d->q_lora_rank, D)) < 0) return rc;
            VEC("self_attn.q_a_layernorm.weight");
            if ((rc = add_linear(q, P("self_attn.q_b_proj"), a, "attn", l, false,
                                 (int64_t)H * (d->qk_nope_head_dim + d->qk_rope_head_dim), d->q_lora_rank)) < 0)
                return rc;
        } else {
            if ((rc = add_linear(q, P("self_attn.q_proj"), a, "attn", l, false,
                                 (int64_t)H * (d->qk_nope_head_dim + d->qk_rope_head_dim), D)) < 0)
                return rc;
        }
        if ((rc = add_linear(q, P("self_attn.kv_a_proj_with_mqa"), a, "attn", l, false,
                             d->kv_lora_rank + d->qk_rope_head_dim, D)) < 0)
            return rc;
        VEC("self_attn.kv_a_layernorm.weight");
        /* kv_b_proj -> embed_q / unembed_out */
        ms_linear kvb;
        if ((rc = ms_model_linear(m, P("self_attn.kv_b_proj"), 0, (int64_t)H * (d->qk_nope_head_dim + d->v_head_dim),
                                  d->kv_lora_rank, &kvb, q->err)) < 0)
            return rc;
        if (kvb.type == MS_WT_AFFINE) return ms_errf(q->err, EINVAL, "%s: kv_b_proj is already quantized", m->dir);
        job j = {.kind = JOB_EMBED_Q, .src = kvb.w, .lead = H, .rows = d->kv_lora_rank, .cols = d->qk_nope_head_dim,
                 .out_dtype = q->o->dtype == MS_DT_COUNT ? kvb.w->dtype : q->o->dtype};
        snprintf(j.out, sizeof j.out, "model.layers.%d.self_attn.embed_q", l);
        j.bits = bits_for(q, j.out, "attn", l, false, j.cols);
        if ((rc = push(q, &j)) < 0) return rc;
        j.kind = JOB_UNEMBED_OUT;
        j.rows = d->v_head_dim;
        j.cols = d->kv_lora_rank;
        snprintf(j.out, sizeof j.out, "model.layers.%d.self_attn.unembed_out", l);
        j.bits = bits_for(q, j.out, "attn", l, false, j.cols);
        if ((rc = push(q, &j)) < 0) return rc;
        if ((rc = add_linear(q, P("self_attn.o_proj"), a, "attn", l, false, D, (int64_t)H * d->v_head_dim)) < 0)
            return rc;
        VEC("post_attention_layernorm.weight");
        if (!ms_config_is_moe_layer(c, l)) {
            int I = c->intermediate_size;
            if ((rc = add_linear(q, P("mlp.gate_proj"), a, "dense", l, false, I, D)) < 0) return rc;
            if ((rc = add_linear(q, P("mlp.up_proj"), a, "dense", l, false, I, D)) < 0) return rc;
            if ((rc = add_linear(q, P("mlp.down_proj"), a, "dense", l, true, D, I)) < 0) return rc;
            continue;
        }
        /* router: a bare parameter, never quantized */
        if (!(t = ms_model_find(m, "model.layers.%d.mlp.gate.weight", l)))
            return ms_errf(q->err, ENOENT, "%s: tensor model.layers.%d.mlp.gate.weight is missing", m->dir, l);
        if ((rc = add_copy(q, t, q->o->dtype)) < 0) return rc;
        if ((t = ms_model_find(m, "model.layers.%d.mlp.gate.e_score_correction_bias", l)))
            if ((rc = add_copy(q, t, MS_DT_F32)) < 0) return rc;
        if (c->n_shared_experts > 0) {
            int S = c->n_shared_experts * c->moe_intermediate_size;
            if ((rc = add_linear(q, P("mlp.shared_experts.gate_proj"), a, "shared", l, false, S, D)) < 0) return rc;
            if ((rc = add_linear(q, P("mlp.shared_experts.up_proj"), a, "shared", l, false, S, D)) < 0) return rc;
            if ((rc = add_linear(q, P("mlp.shared_experts.down_proj"), a, "shared", l, true, D, S)) < 0) return rc;
        }
        /* routed experts: stack */
        const ms_moe_layer *ml = ms_model_moe(m, l);
        if (!m->layout || m->layout->id != MS_EXPERTS_HF)
            return ms_errf(q->err, ENOTSUP, "%s: layer %d: quantize needs per-expert HF tensors (mlp.experts.<e>.*)",
                           m->dir, l);
        static const char *proj[3] = {"gate_proj", "up_proj", "down_proj"};
        for (int p = 0; p < 3; p++) {
            int E = c->n_routed_experts;
            job s = {.kind = JOB_STACK, .lead = E, .rows = ml->proj[p].fmt.rows, .cols = ml->proj[p].fmt.cols,
                     .out_dtype = q->o->dtype == MS_DT_COUNT ? ml->proj[p].fmt.w->dtype : q->o->dtype};
            s.srcs = malloc((size_t)E * sizeof *s.srcs);
            if (!s.srcs) return ms_errf(q->err, ENOMEM, "out of memory");
            for (int e = 0; e < E; e++) {
                snprintf(b, sizeof b, "model.layers.%d.mlp.experts.%d.%s.weight", l, e, proj[p]);
                s.srcs[e] = ms_tt_find(&m->tt, b);
            }
            snprintf(s.out, sizeof s.out, "model.layers.%d.mlp.switch_mlp.%s", l, proj[p]);
            s.bits = bits_for(q, s.out, "routed", l, p == 2, s.cols);
            if ((rc = push(q, &s)) < 0) {
                free(s.srcs);
                return rc;
            }
        }
#undef P
#undef VEC
    }
    const ms_tensor *t = ms_model_find(m, "model.norm.weight");
    if (!t) return ms_errf(q->err, ENOENT, "%s: tensor model.norm.weight is missing", m->dir);
    if ((rc = add_copy(q, t, q->o->dtype)) < 0) return rc;
    if (ms_model_find(m, "lm_head.weight"))
        if ((rc = add_linear(q, "lm_head", "lm_head", "lm_head", -1, false, c->vocab_size, D)) < 0) return rc;
    return 0;
}

/* Plan the tensors of one job. */
static int plan_job(ms_stw_plan *p, const job *j, ms_err *err)
{
    int rc;
    char name[300];
    if (j->kind == JOB_COPY) return ms_stw_plan_add(p, j->out, j->out_dtype, j->src->ndim, j->src->shape, err);
    int64_t shape[3];
    int nd = 0;
    if (j->kind != JOB_LINEAR) shape[nd++] = j->lead;
    shape[nd] = j->rows;
    if (!j->bits) {
        shape[nd + 1] = j->cols;
        snprintf(name, sizeof name, "%s.weight", j->out);
        return ms_stw_plan_add(p, name, j->out_dtype, nd + 2, shape, err);
    }
    shape[nd + 1] = j->cols * j->bits / 32;
    snprintf(name, sizeof name, "%s.weight", j->out);
    if ((rc = ms_stw_plan_add(p, name, MS_DT_U32, nd + 2, shape, err)) < 0) return rc;
    return 0;
}

static int plan_job_sb(ms_stw_plan *p, const job *j, const ms_quantize_opts *o, ms_err *err)
{
    if (j->kind == JOB_COPY || !j->bits) return 0;
    int64_t shape[3];
    int nd = 0;
    if (j->kind != JOB_LINEAR) shape[nd++] = j->lead;
    shape[nd] = j->rows;
    shape[nd + 1] = j->cols / o->group_size;
    char name[300];
    int rc;
    snprintf(name, sizeof name, "%s.scales", j->out);
    if ((rc = ms_stw_plan_add(p, name, j->out_dtype, nd + 2, shape, err)) < 0) return rc;
    snprintf(name, sizeof name, "%s.biases", j->out);
    return ms_stw_plan_add(p, name, j->out_dtype, nd + 2, shape, err);
}

/* Row r (f32) of slice s of a job's logical matrix. */
static int get_row(qctx *q, const job *j, int64_t s, int64_t r, float *row, float *tmp, ms_err *err)
{
    const ms_tensor *t;
    const ms_ds3_config *d = q->d;
    size_t es;
    switch (j->kind) {
    case JOB_LINEAR:
    case JOB_STACK: {
        t = j->kind == JOB_LINEAR ? j->src : j->srcs[s];
        es = ms_dtype_size(t->dtype);
        int rc = ms_tt_read_range(&q->m->tt, t, (uint64_t)r * (uint64_t)j->cols * es, (uint64_t)j->cols * es, tmp,
                                  false, err);
        if (rc < 0) return rc;
        return ms_convert_to_f32(t->dtype, tmp, row, (size_t)j->cols) < 0
                   ? ms_errf(err, EINVAL, "tensor %s: unsupported dtype", t->name)
                   : 0;
    }
    case JOB_EMBED_Q:
    case JOB_UNEMBED_OUT: {
        int rc = load_kvb((qctx *)q, j->src, err);
        if (rc < 0) return rc;
        int64_t kvl = d->kv_lora_rank, stride = d->qk_nope_head_dim + d->v_head_dim;
        const float *w = q->kvb + (size_t)(s * stride) * (size_t)kvl; /* head s: [nope+v][kv_lora] */
        if (j->kind == JOB_EMBED_Q) /* embed_q[s][r][i] = W_UK[s][i][r] */
            for (int64_t i = 0; i < j->cols; i++) row[i] = w[(size_t)i * kvl + (size_t)r];
        else /* unembed_out[s][r] = W_UV[s][r] */
            memcpy(row, w + (size_t)(d->qk_nope_head_dim + r) * kvl, (size_t)kvl * sizeof(float));
        (void)tmp;
        return 0;
    }
    default: return ms_errf(err, EINVAL, "bad job");
    }
}

static void f32_to(ms_dtype dt, const float *x, void *out, size_t n)
{
    switch (dt) {
    case MS_DT_BF16:
        for (size_t i = 0; i < n; i++) ((uint16_t *)out)[i] = ms_f32_to_bf16(x[i]);
        break;
    case MS_DT_F16:
        for (size_t i = 0; i < n; i++) ((uint16_t *)out)[i] = ms_f32_to_f16(x[i]);
        break;
    default: memcpy(out, x, n * sizeof(float)); break;
    }
}

/* Produce and write the bytes of one job (all of its tensors, in plan order). */
static int write_job(qctx *q, const job *j, ms_stw_writer *w, ms_err *err)
{
    int rc = 0;
    if (j->kind == JOB_COPY) {
        const ms_tensor *t = j->src;
        int64_t n = ms_tensor_numel(t);
        void *raw = malloc(t->nbytes ? t->nbytes : 1);
        float *f = malloc((size_t)(n ? n : 1) * sizeof(float));
        void *out = malloc((size_t)(n ? n : 1) * ms_dtype_size(j->out_dtype));
        if (!raw || !f || !out) rc = ms_errf(err, ENOMEM, "out of memory");
        if (!rc) rc = ms_tt_read(&q->m->tt, t, raw, false, err);
        if (!rc && ms_convert_to_f32(t->dtype, raw, f, (size_t)n) < 0)
            rc = ms_errf(err, EINVAL, "tensor %s: unsupported dtype %s", t->name, ms_dtype_name(t->dtype));
        if (!rc) {
            f32_to(j->out_dtype, f, out, (size_t)n);
            rc = ms_stw_writer_write(w, out, (size_t)n * ms_dtype_size(j->out_dtype), err);
        }
        free(raw);
        free(f);
        free(out);
        return rc;
    }
    int64_t S = j->kind == JOB_LINEAR ? 1 : j->lead, R = j->rows, C = j->cols;
    int gs = q->o->group_size;
    float *row = malloc((size_t)C * sizeof(float));
    void *tmp = malloc((size_t)MS_MAX(C, q->d->kv_lora_rank) * 8);
    if (!row || !tmp) {
        free(row);
        free(tmp);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    if (!j->bits) {
        size_t ob = (size_t)C * ms_dtype_size(j->out_dtype);
        void *out = malloc(ob);
        for (int64_t s = 0; s < S && !rc; s++)
            for (int64_t r = 0; r < R && !rc; r++) {
                rc = get_row(q, j, s, r, row, tmp, err);
                if (!rc) {
                    f32_to(j->out_dtype, row, out, (size_t)C);
                    rc = ms_stw_writer_write(w, out, ob, err);
                }
            }
        free(out);
    } else {
        /* weight rows stream out; scales and biases are kept for their own tensors */
        size_t wb = (size_t)C * j->bits / 8, ng = (size_t)(C / gs), sbe = ms_dtype_size(j->out_dtype);
        uint8_t *packed = malloc(wb);
        uint8_t *scales = malloc((size_t)S * R * ng * sbe), *biases = malloc((size_t)S * R * ng * sbe);
        if (!packed || !scales || !biases) rc = ms_errf(err, ENOMEM, "out of memory for module %s", j->out);
        for (int64_t s = 0; s < S && !rc; s++)
            for (int64_t r = 0; r < R && !rc; r++) {
                rc = get_row(q, j, s, r, row, tmp, err);
                if (rc) break;
                size_t at = ((size_t)s * R + (size_t)r) * ng * sbe;
                ms_affine_quantize_row_dt(row, C, j->bits, gs, j->out_dtype, (uint32_t *)packed, scales + at,
                                          biases + at);
                rc = ms_stw_writer_write(w, packed, wb, err);
            }
        if (!rc) rc = ms_stw_writer_write(w, scales, (size_t)S * R * ng * sbe, err);
        if (!rc) rc = ms_stw_writer_write(w, biases, (size_t)S * R * ng * sbe, err);
        free(packed);
        free(scales);
        free(biases);
    }
    free(row);
    free(tmp);
    return rc;
}

static int copy_file(const char *src, const char *dst_dir, const char *name, ms_err *err)
{
    char *text;
    size_t len;
    int rc = ms_read_file(src, 256u << 20, &text, &len, err);
    if (rc < 0) return rc;
    char p[4096];
    rc = ms_path_join(p, sizeof p, dst_dir, name, err);
    if (rc == 0) {
        FILE *f = fopen(p, "wb");
        if (!f || fwrite(text, 1, len, f) != len) rc = ms_errf(err, EIO, "%s: cannot write", p);
        if (f && fclose(f) != 0 && !rc) rc = ms_errf(err, EIO, "%s: cannot write", p);
    }
    free(text);
    return rc;
}

static int write_config(qctx *q, const char *out_dir, ms_err *err)
{
    char p[4096];
    int rc = ms_path_join(p, sizeof p, q->m->dir, "config.json", err);
    if (rc < 0) return rc;
    json_object *root = json_object_from_file(p);
    if (!root) return ms_errf(err, EINVAL, "%s: cannot re-read", p);
    json_object *qb = json_object_new_object();
    json_object_object_add(qb, "group_size", json_object_new_int(q->o->group_size));
    int def_bits = q->o->bits;
    if (!strcmp(q->o->recipe, "mixed-8-5")) def_bits = 5;
    else if (!strcmp(q->o->recipe, "dq4")) def_bits = 4;
    else if (!strncmp(q->o->recipe, "mixed_", 6)) sscanf(q->o->recipe, "mixed_%d", &def_bits);
    json_object_object_add(qb, "bits", json_object_new_int(def_bits));
    json_object_object_add(qb, "mode", json_object_new_string("affine"));
    bool uniform = !strcmp(q->o->recipe, "uniform");
    for (int i = 0; i < q->n_jobs && !uniform; i++) {
        const job *j = &q->jobs[i];
        if (j->kind == JOB_COPY || !j->bits) continue;
        json_object *e = json_object_new_object();
        json_object_object_add(e, "group_size", json_object_new_int(q->o->group_size));
        json_object_object_add(e, "bits", json_object_new_int(j->bits));
        json_object_object_add(qb, j->out, e);
    }
    json_object_object_add(root, "quantization", json_object_get(qb));
    json_object_object_add(root, "quantization_config", qb);
    if (q->o->dtype != MS_DT_COUNT)
        json_object_object_add(root, "torch_dtype",
                               json_object_new_string(q->o->dtype == MS_DT_F32   ? "float32"
                                                      : q->o->dtype == MS_DT_F16 ? "float16"
                                                                                 : "bfloat16"));
    const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED);
    rc = ms_stw_write_text(out_dir, "config.json", text, err);
    json_object_put(root);
    return rc;
}

int ms_quantize(const char *in_dir, const char *out_dir, const ms_quantize_opts *o, ms_quantize_result *res,
                ms_err *err)
{
    if (!ms_affine_bits_ok(o->bits)) return ms_errf(err, EINVAL, "--bits %d: supported 2, 3, 4, 5, 6, 8", o->bits);
    if (!ms_affine_group_ok(o->group_size))
        return ms_errf(err, EINVAL, "--group-size %d: supported 32, 64, 128", o->group_size);
    ms_synth_recipe sr;
    if (strncmp(o->recipe, "mixed_", 6) != 0 && ms_synth_parse_recipe(o->recipe, &sr, NULL) < 0)
        return ms_errf(err, EINVAL, "--recipe %s: use uniform, mixed-8-5, dq4, mixed_2_6, mixed_3_4, mixed_3_6, mixed_4_6",
                       o->recipe);
    int lo, hi;
    if (!strncmp(o->recipe, "mixed_", 6) &&
        (sscanf(o->recipe, "mixed_%d_%d", &lo, &hi) != 2 || !ms_affine_bits_ok(lo) || !ms_affine_bits_ok(hi)))
        return ms_errf(err, EINVAL, "--recipe %s: expected mixed_<low>_<high> with valid bit widths", o->recipe);
    double t0 = ms_now_s();
    ms_model m;
    int rc = ms_model_open(in_dir, &m, err);
    if (rc < 0) return rc;
    qctx q = {.m = &m, .o = o, .err = err, .d = ms_ds3_config_of(&m.cfg)};
    if (!q.d) {
        rc = ms_errf(err, ENOTSUP, "%s: quantize converts deepseek_v3-family checkpoints (model_type %s)", in_dir,
                     m.cfg.model_type);
        ms_model_close(&m);
        return rc;
    }
    ms_stw_plan plan;
    ms_stw_plan_init(&plan, o->shard_bytes);
    if ((rc = build_jobs(&q)) < 0) goto out;
    if ((rc = ms_stw_plan_meta(&plan, "format", "mlx", err)) < 0) goto out;
    for (int i = 0; i < q.n_jobs && rc == 0; i++) {
        rc = plan_job(&plan, &q.jobs[i], err);
        if (rc == 0) rc = plan_job_sb(&plan, &q.jobs[i], o, err);
    }
    if (rc < 0 || (rc = ms_stw_plan_finish(&plan, err)) < 0) goto out;
    if (mkdir(out_dir, 0755) < 0 && errno != EEXIST) {
        rc = ms_errf(err, errno, "%s: cannot create: %s", out_dir, strerror(errno));
        goto out;
    }
    if (!strcmp(in_dir, out_dir)) {
        rc = ms_errf(err, EINVAL, "output directory must differ from the input");
        goto out;
    }
    ms_stw_writer_opts wo = {.progress = o->progress, .progress_ctx = o->progress_ctx};
    ms_stw_writer w;
    if ((rc = ms_stw_writer_open(&w, &plan, out_dir, &wo, err)) < 0) goto out;
    for (int i = 0; i < q.n_jobs && rc == 0; i++) rc = write_job(&q, &q.jobs[i], &w, err);
    if (rc < 0) {
        ms_stw_writer_abort(&w);
        goto out;
    }
    if ((rc = ms_stw_writer_close(&w, err)) < 0) goto out;
    if ((rc = ms_stw_write_index(&plan, out_dir, NULL, err)) < 0) goto out;
    if ((rc = write_config(&q, out_dir, err)) < 0) goto out;
    /* tokenizer & generation files travel unchanged */
    DIR *d = opendir(in_dir);
    struct dirent *de;
    while (d && rc == 0 && (de = readdir(d))) {
        const char *n = de->d_name;
        size_t l = strlen(n);
        bool take = (l > 5 && !strcmp(n + l - 5, ".json") && strcmp(n, "config.json") &&
                     strcmp(n, "model.safetensors.index.json")) ||
                    (l > 6 && !strcmp(n + l - 6, ".jinja")) || !strcmp(n, "tokenizer.model");
        if (!take) continue;
        char p[4096];
        if ((rc = ms_path_join(p, sizeof p, in_dir, n, err)) == 0) rc = copy_file(p, out_dir, n, err);
    }
    if (d) closedir(d);
    if (res) {
        res->n_tensors = plan.n_tensors;
        res->n_shards = plan.n_shards;
        res->bytes = ms_stw_plan_file_bytes(&plan);
        res->seconds = ms_now_s() - t0;
    }
out:
    for (int i = 0; i < q.n_jobs; i++) free(q.jobs[i].srcs);
    free(q.jobs);
    free(q.kvb);
    ms_stw_plan_free(&plan);
    ms_model_close(&m);
    return rc;
}

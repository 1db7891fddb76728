/* test_synth.c - `moestream synth` end to end (through MS_BIN) and the synth
 * library: presets and their sizes (deepseek_v3 and step3p5), recipe bit
 * assignment, the MLX and HF (and Step's step3p7 wrapper / original HF)
 * layouts (tensor names, dtypes, shapes, index <-> shard headers, config.json
 * fields and formatting), mixed-recipe per-module overrides consistent with the
 * packed shapes, weight statistics, router skew, determinism, a single-token
 * forward pass through every layer (activations stay finite), and the CLI's
 * option errors (exit 2, one clear line).
 *
 * The checkpoint reader here is written from the format, independent of the
 * runtime's loader: it parses every shard header strictly (padding, contiguous
 * offsets) and cross-checks it with the index. */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtype.h"
#include "ms_test.h"
#include "quant.h"
#include "rng.h"
#include "synth.h"

/* ---- checkpoint reader ---- */

typedef struct mt {
    char *name;
    int file;
    char dtype[16];
    int ndim;
    int64_t shape[8];
    uint64_t begin, nbytes; /* within the file's data area */
} mt;

typedef struct mfile {
    char *name;
    uint8_t *buf; /* whole file */
    size_t len;
    uint64_t data; /* 8 + header length */
    char format[16];
} mfile;

typedef struct model {
    char *dir;
    mfile f[64];
    int nf;
    mt *t;
    int nt, cap;
    struct json_object *config, *index;
    char *config_text;
} model;

static int cmp_mt_begin(const void *a, const void *b)
{
    const mt *x = *(const mt *const *)a, *y = *(const mt *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int load_file(model *m, const char *name)
{
    for (int i = 0; i < m->nf; i++)
        if (!strcmp(m->f[i].name, name)) return i;
    assert_true(m->nf < 64);
    mfile *f = &m->f[m->nf];
    f->name = strdup(name);
    char *path = mst_fmt("%s/%s", m->dir, name);
    f->buf = (uint8_t *)mst_slurp(path, &f->len);
    assert_non_null(f->buf);
    free(path);
    assert_true(f->len >= 8);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)f->buf[i] << (8 * i);
    assert_int_equal(hl % 8, 0);
    assert_true(8 + hl <= f->len);
    f->data = 8 + hl;
    char *hdr = strndup((const char *)f->buf + 8, hl);
    size_t e = hl;
    while (e > 0 && hdr[e - 1] == ' ') e--;
    assert_true(e > 0 && hdr[e - 1] == '}' && hl - e < 8);
    struct json_object *j = json_tokener_parse(hdr);
    assert_non_null(j);
    free(hdr);
    int first = m->nt;
    json_object_object_foreach(j, key, val)
    {
        if (!strcmp(key, "__metadata__")) {
            struct json_object *fmt;
            assert_true(json_object_object_get_ex(val, "format", &fmt));
            snprintf(f->format, sizeof f->format, "%s", json_object_get_string(fmt));
            continue;
        }
        if (m->nt == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 256;
            m->t = realloc(m->t, (size_t)m->cap * sizeof *m->t);
        }
        mt *t = &m->t[m->nt++];
        memset(t, 0, sizeof *t);
        t->name = strdup(key);
        t->file = m->nf;
        struct json_object *dt, *sh, *off;
        assert_true(json_object_object_get_ex(val, "dtype", &dt));
        assert_true(json_object_object_get_ex(val, "shape", &sh));
        assert_true(json_object_object_get_ex(val, "data_offsets", &off));
        snprintf(t->dtype, sizeof t->dtype, "%s", json_object_get_string(dt));
        t->ndim = (int)json_object_array_length(sh);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            t->shape[d] = json_object_get_int64(json_object_array_get_idx(sh, d));
            numel *= (uint64_t)t->shape[d];
        }
        t->begin = (uint64_t)json_object_get_int64(json_object_array_get_idx(off, 0));
        t->nbytes = (uint64_t)json_object_get_int64(json_object_array_get_idx(off, 1)) - t->begin;
        ms_dtype dd;
        assert_int_equal(ms_dtype_parse(t->dtype, &dd), 0);
        assert_true(t->nbytes == numel * ms_dtype_size(dd));
    }
    json_object_put(j);
    /* contiguous data area, no gaps, nothing after it */
    int n = m->nt - first;
    mt **v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int i = 0; i < n; i++) v[i] = &m->t[first + i];
    qsort(v, (size_t)n, sizeof *v, cmp_mt_begin);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        assert_true(v[i]->begin == pos);
        pos += v[i]->nbytes;
    }
    assert_true(f->data + pos == f->len);
    free(v);
    return m->nf++;
}

static const mt *mfind(const model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const mt *mfind(const model *m, const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    for (int i = 0; i < m->nt; i++)
        if (!strcmp(m->t[i].name, name)) return &m->t[i];
    return NULL;
}

static const uint8_t *mdata(const model *m, const mt *t) { return m->f[t->file].buf + m->f[t->file].data + t->begin; }

static void model_open(model *m, const char *dir)
{
    memset(m, 0, sizeof *m);
    m->dir = strdup(dir);
    char *p = mst_fmt("%s/config.json", dir);
    m->config_text = mst_slurp(p, NULL);
    assert_non_null(m->config_text);
    m->config = json_tokener_parse(m->config_text);
    assert_non_null(m->config);
    free(p);
    p = mst_fmt("%s/model.safetensors.index.json", dir);
    char *idx = mst_slurp(p, NULL);
    free(p);
    if (!idx) {
        load_file(m, "model.safetensors");
        return;
    }
    m->index = json_tokener_parse(idx);
    free(idx);
    assert_non_null(m->index);
    struct json_object *wm, *meta, *ts;
    assert_true(json_object_object_get_ex(m->index, "weight_map", &wm));
    assert_true(json_object_object_get_ex(m->index, "metadata", &meta));
    assert_true(json_object_object_get_ex(meta, "total_size", &ts));
    const char *prev = "";
    json_object_object_foreach(wm, key, val)
    {
        assert_true(strcmp(prev, key) < 0); /* sorted keys */
        prev = key;
        int fi = load_file(m, json_object_get_string(val));
        const mt *t = mfind(m, "%s", key);
        assert_non_null(t);
        assert_int_equal(t->file, fi); /* the index names the shard that holds it */
    }
    assert_int_equal(json_object_object_length(wm), m->nt); /* and every tensor is indexed */
    uint64_t total = 0;
    for (int i = 0; i < m->nt; i++) total += m->t[i].nbytes;
    assert_true((uint64_t)json_object_get_int64(ts) == total);
}

static void model_close(model *m)
{
    for (int i = 0; i < m->nf; i++) {
        free(m->f[i].name);
        free(m->f[i].buf);
    }
    for (int i = 0; i < m->nt; i++) free(m->t[i].name);
    free(m->t);
    json_object_put(m->config);
    if (m->index) json_object_put(m->index);
    free(m->config_text);
    free(m->dir);
}

static int64_t cfg_int(const model *m, const char *key)
{
    struct json_object *v;
    if (!json_object_object_get_ex(m->config, key, &v)) fail_msg("config.json: no %s", key);
    return json_object_get_int64(v);
}

static void assert_shape(const mt *t, const char *dtype, int ndim, int64_t a, int64_t b, int64_t c)
{
    assert_non_null(t);
    if (strcmp(t->dtype, dtype)) fail_msg("%s: dtype %s, expected %s", t->name, t->dtype, dtype);
    assert_int_equal(t->ndim, ndim);
    int64_t e[3] = {a, b, c};
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != e[d]) fail_msg("%s: dim %d is %lld, expected %lld", t->name, d, (long long)t->shape[d], (long long)e[d]);
}

/* A module resolved once: its weight (and scales/biases when quantized). */
typedef struct qmod {
    const mt *w, *s, *b;
    int64_t in, wc, sc;
    int bits, gs;
    ms_dtype dt, sdt;
} qmod;

static qmod mresolve(const model *m, const char *path, int64_t in)
{
    qmod q = {.in = in};
    assert_true(in <= 4096);
    q.w = mfind(m, "%s.weight", path);
    if (!q.w) fail_msg("missing %s.weight", path);
    q.s = mfind(m, "%s.scales", path);
    q.b = mfind(m, "%s.biases", path);
    assert_int_equal(ms_dtype_parse(q.w->dtype, &q.dt), 0);
    q.wc = q.w->shape[q.w->ndim - 1];
    if (q.s) {
        assert_non_null(q.b);
        q.sc = q.s->shape[q.s->ndim - 1];
        q.bits = (int)(q.wc * 32 / in);
        q.gs = (int)(in / q.sc);
        assert_true(q.bits * in == q.wc * 32 && q.gs * q.sc == in);
        assert_int_equal(ms_dtype_parse(q.s->dtype, &q.sdt), 0);
    } else {
        assert_true(q.wc == in);
    }
    return q;
}

/* Logical row r (over the flattened leading dims) as floats (staged on the
 * stack so typed reads are aligned). */
static void qrow(const model *m, const qmod *q, int64_t r, float *out)
{
    uint32_t wr[4096];
    uint8_t sr[512], br[512];
    if (q->s) {
        size_t es = ms_dtype_size(q->sdt);
        memcpy(wr, mdata(m, q->w) + (uint64_t)r * (uint64_t)q->wc * 4, (size_t)q->wc * 4);
        memcpy(sr, mdata(m, q->s) + (uint64_t)r * (uint64_t)q->sc * es, (size_t)q->sc * es);
        memcpy(br, mdata(m, q->b) + (uint64_t)r * (uint64_t)q->sc * es, (size_t)q->sc * es);
        ms_affine_dequantize_row(wr, sr, br, q->sdt, q->in, q->bits, q->gs, out);
        return;
    }
    size_t es = ms_dtype_size(q->dt);
    memcpy(wr, mdata(m, q->w) + (uint64_t)r * (uint64_t)q->in * es, (size_t)q->in * es);
    assert_int_equal(ms_convert_to_f32(q->dt, wr, out, (size_t)q->in), 0);
}

static void mrow(const model *m, const char *path, int64_t r, int64_t in, float *out)
{
    qmod q = mresolve(m, path, in);
    qrow(m, &q, r, out);
}

/* y[rows] = W x for module path (rows starting at row0). */
static void mmatvec(const model *m, const char *path, int64_t row0, int64_t rows, int64_t in, const float *x, float *y)
{
    qmod q = mresolve(m, path, in);
    float row[4096];
    for (int64_t r = 0; r < rows; r++) {
        qrow(m, &q, row0 + r, row);
        double acc = 0;
        for (int64_t j = 0; j < in; j++) acc += (double)row[j] * x[j];
        y[r] = (float)acc;
    }
}

/* Row/column statistics of a whole module. */
static void mstats(const model *m, const char *path, int64_t rows, int64_t in, double *mean, double *std)
{
    float *row = malloc((size_t)in * sizeof *row);
    double s = 0, s2 = 0;
    qmod q = mresolve(m, path, in);
    for (int64_t r = 0; r < rows; r++) {
        qrow(m, &q, r, row);
        for (int64_t j = 0; j < in; j++) {
            s += row[j];
            s2 += (double)row[j] * row[j];
        }
    }
    double n = (double)rows * (double)in;
    *mean = s / n;
    *std = sqrt(s2 / n - *mean * *mean);
    free(row);
}

/* ---- running the CLI ---- */

static int synth(char **err_out, const char *dir, const char *args)
{
    char *out = NULL, *err = NULL;
    int rc = mst_run(&out, &err, "'%s' synth --out '%s' -q --no-progress %s", MS_BIN, dir, args);
    if (rc != 0) fprintf(stderr, "synth %s failed (%d): %s\n", args, rc, err ? err : "");
    if (err_out) *err_out = err;
    else free(err);
    free(out);
    return rc;
}

static char *fresh(const char *name)
{
    char *d = mst_tmpdir(name);
    assert_non_null(d);
    rmdir(d); /* synth creates it */
    return d;
}

/* ---- library tests ---- */

static void test_presets(void **state)
{
    (void)state;
    ms_err err = {0};
    ms_synth_opts o;
    struct {
        const char *name;
        const char *fmt;
        double lo, hi; /* bytes */
    } want[] = {
        {"tiny", "mlx", 1.0e6, 4.0e6},       {"tiny", "hf", 4.0e6, 8.0e6},
        {"demo", "mlx", 1.0e9, 2.0e9},       {"gigachat-702b", "mlx", 19.0e9, 23.0e9},
        {"glm-4.7-flash", "mlx", 1.0e9, 2.0e9},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(ms_synth_preset(want[i].name, &o, &err), 0);
        assert_int_equal(ms_synth_parse_format(want[i].fmt, &o.format, &err), 0);
        assert_int_equal(ms_synth_validate(&o, &err), 0);
        ms_stw_plan p;
        ms_synth_result r;
        assert_int_equal(ms_synth_plan(&o, &p, &r, &err), 0);
        if ((double)r.file_bytes < want[i].lo || (double)r.file_bytes > want[i].hi)
            fail_msg("%s %s: %llu bytes", want[i].name, want[i].fmt, (unsigned long long)r.file_bytes);
        assert_int_equal(r.n_shards, p.n_shards);
        assert_true(r.n_params > 0);
        ms_stw_plan_free(&p);
    }
    /* tiny sees several shards at 4 bits */
    assert_int_equal(ms_synth_preset("tiny", &o, &err), 0);
    ms_stw_plan p;
    assert_int_equal(ms_synth_plan(&o, &p, NULL, &err), 0);
    assert_true(p.n_shards >= 3);
    ms_stw_plan_free(&p);
    /* real DeepSeek-V3 widths, each MoE layer ~6.3 GB at 4 bits */
    assert_int_equal(ms_synth_preset("gigachat-702b", &o, &err), 0);
    assert_int_equal(o.arch.hidden_size, 7168);
    assert_int_equal(o.arch.n_routed_experts, 256);
    assert_int_equal(o.arch.vocab_size, 129280);
    ms_synth_result r2, r3;
    o.arch.n_layers = 2;
    assert_int_equal(ms_synth_plan(&o, &p, &r2, &err), 0);
    ms_stw_plan_free(&p);
    o.arch.n_layers = 3;
    assert_int_equal(ms_synth_plan(&o, &p, &r3, &err), 0);
    ms_stw_plan_free(&p);
    double per_layer = (double)(r3.file_bytes - r2.file_bytes);
    assert_true(per_layer > 6.2e9 && per_layer < 6.6e9);
    /* unknown preset: the message lists the valid ones */
    assert_true(ms_synth_preset("huge", &o, &err) < 0);
    assert_non_null(strstr(err.msg, "huge"));
    assert_non_null(strstr(err.msg, "gigachat-702b"));
}

static void test_recipe_bits(void **state)
{
    (void)state;
    ms_err err = {0};
    ms_synth_opts o;
    assert_int_equal(ms_synth_preset("tiny", &o, &err), 0);
    assert_int_equal(ms_synth_module_bits(&o, "routed", 1, false, 128), 4);
    assert_int_equal(ms_synth_module_bits(&o, "attn", 1, false, 96), 0); /* 96 % 64 */
    o.bits = 3;
    o.group_size = 32;
    assert_int_equal(ms_synth_module_bits(&o, "attn", 1, false, 96), 3);
    o.group_size = 64;
    o.recipe = MS_SYNTH_MIXED_8_5;
    assert_int_equal(ms_synth_module_bits(&o, "routed", 1, true, 128), 5);
    assert_int_equal(ms_synth_module_bits(&o, "shared", 1, true, 128), 8);
    assert_int_equal(ms_synth_module_bits(&o, "attn", 2, false, 128), 8);
    assert_int_equal(ms_synth_module_bits(&o, "embed", -1, false, 128), 8);
    assert_int_equal(ms_synth_module_bits(&o, "lm_head", -1, false, 128), 8);
    assert_int_equal(ms_synth_module_bits(&o, "dense", 0, true, 256), 8);
    o.recipe = MS_SYNTH_DQ4;
    assert_int_equal(ms_synth_module_bits(&o, "routed", 1, false, 128), 4);
    assert_int_equal(ms_synth_module_bits(&o, "routed", 4, true, 128), 6);
    assert_int_equal(ms_synth_module_bits(&o, "routed", 5, true, 128), 5);
    assert_int_equal(ms_synth_module_bits(&o, "routed", 7, true, 128), 4);
    assert_int_equal(ms_synth_module_bits(&o, "routed", 10, true, 128), 5);
    assert_int_equal(ms_synth_module_bits(&o, "shared", 3, true, 128), 6);
    assert_int_equal(ms_synth_module_bits(&o, "shared", 3, false, 128), 4);
    assert_int_equal(ms_synth_module_bits(&o, "attn", 3, false, 128), 8);
    assert_int_equal(ms_synth_module_bits(&o, "dense", 0, true, 256), 8);
    o.format = MS_SYNTH_HF;
    assert_int_equal(ms_synth_module_bits(&o, "routed", 1, false, 128), 0);
}

static void test_validate(void **state)
{
    (void)state;
    ms_err err = {0};
    ms_synth_opts o;
    static const char *const needles[] = {"--bits", "--group-size", "--n-group", "--top-k", "--topk-group",
                                          "--vocab", "--layers", "--first-dense", "--mtp", "--route-skew",
                                          "--shard-size", "--dtype", "--recipe", "qk_rope_head_dim"};
    for (int i = 0; i < (int)(sizeof needles / sizeof needles[0]); i++) {
        assert_int_equal(ms_synth_preset("tiny", &o, &err), 0);
        assert_int_equal(ms_synth_validate(&o, &err), 0);
        switch (i) {
        case 0: o.bits = 7; break;
        case 1: o.group_size = 48; break;
        case 2: o.arch.n_group = 3; break;
        case 3: o.arch.n_experts_per_tok = 17; break;
        case 4: o.arch.topk_group = 1; o.arch.n_experts_per_tok = 5; break;
        case 5: o.arch.vocab_size = 100; break;
        case 6: o.arch.n_layers = 0; break;
        case 7: o.arch.first_k_dense_replace = 9; break;
        case 8: o.arch.n_mtp = 17; break;
        case 9: o.route_skew = -1; break;
        case 10: o.shard_bytes = 0; break;
        case 11: o.dtype = MS_DT_U8; break;
        case 12: o.format = MS_SYNTH_HF; o.recipe = MS_SYNTH_DQ4; break;
        case 13: o.arch.qk_rope_head_dim = 15; break;
        }
        ms_err_clear(&err);
        assert_true(ms_synth_validate(&o, &err) < 0);
        if (!strstr(err.msg, needles[i])) fail_msg("case %d: '%s' lacks '%s'", i, err.msg, needles[i]);
    }
}

/* ---- end to end: MLX ---- */

static void check_common_config(const model *m, int layers)
{
    assert_int_equal(cfg_int(m, "vocab_size"), 512);
    assert_int_equal(cfg_int(m, "hidden_size"), 128);
    assert_int_equal(cfg_int(m, "num_hidden_layers"), layers);
    assert_int_equal(cfg_int(m, "n_routed_experts"), 16);
    assert_int_equal(cfg_int(m, "num_experts_per_tok"), 4);
    assert_int_equal(cfg_int(m, "n_group"), 4);
    assert_int_equal(cfg_int(m, "topk_group"), 2);
    assert_int_equal(cfg_int(m, "first_k_dense_replace"), 1);
    assert_int_equal(cfg_int(m, "kv_lora_rank"), 64);
    assert_int_equal(cfg_int(m, "qk_nope_head_dim"), 64);
    assert_int_equal(cfg_int(m, "qk_rope_head_dim"), 16);
    assert_int_equal(cfg_int(m, "v_head_dim"), 32);
    assert_int_equal(cfg_int(m, "moe_layer_freq"), 1);
    assert_int_equal(cfg_int(m, "bos_token_id"), 0);
    assert_int_equal(cfg_int(m, "eos_token_id"), 1);
    struct json_object *v, *r;
    assert_true(json_object_object_get_ex(m->config, "model_type", &v));
    assert_string_equal(json_object_get_string(v), "deepseek_v3");
    assert_true(json_object_object_get_ex(m->config, "topk_method", &v));
    assert_string_equal(json_object_get_string(v), "noaux_tc");
    assert_true(json_object_object_get_ex(m->config, "scoring_func", &v));
    assert_string_equal(json_object_get_string(v), "sigmoid");
    assert_true(json_object_object_get_ex(m->config, "routed_scaling_factor", &v));
    assert_true(json_object_get_double(v) == 2.5);
    assert_true(json_object_object_get_ex(m->config, "rms_norm_eps", &v));
    assert_true(json_object_get_double(v) == 1e-6);
    assert_true(json_object_object_get_ex(m->config, "norm_topk_prob", &v));
    assert_true(json_object_get_boolean(v));
    assert_true(json_object_object_get_ex(m->config, "tie_word_embeddings", &v));
    assert_false(json_object_get_boolean(v));
    assert_true(json_object_object_get_ex(m->config, "rope_scaling", &r));
    assert_true(json_object_object_get_ex(r, "type", &v));
    assert_string_equal(json_object_get_string(v), "yarn");
    assert_true(json_object_object_get_ex(r, "factor", &v));
    assert_true(json_object_get_double(v) == 4.0);
    assert_true(json_object_object_get_ex(r, "original_max_position_embeddings", &v));
    assert_int_equal(json_object_get_int(v), 1024);
    assert_true(json_object_object_get_ex(r, "mscale_all_dim", &v));
    assert_true(json_object_object_get_ex(m->config, "architectures", &v));
    assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 0)), "DeepseekV3ForCausalLM");
}

static void test_tiny_mlx(void **state)
{
    (void)state;
    char *dir = fresh("synth_mlx");
    assert_int_equal(synth(NULL, dir, "--preset tiny"), 0);
    const char *files[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors.index.json",
                           "model-00001-of-00004.safetensors", "model-00004-of-00004.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = mst_fmt("%s/%s", dir, files[i]);
        if (!mst_exists(p)) fail_msg("missing %s", p);
        free(p);
    }
    model m;
    model_open(&m, dir);
    assert_int_equal(m.nf, 4);
    for (int i = 0; i < m.nf; i++) assert_string_equal(m.f[i].format, "mlx");
    for (int i = 1; i < m.nt; i++) /* header keys sorted, as mx.save_safetensors writes them */
        if (m.t[i - 1].file == m.t[i].file) assert_true(strcmp(m.t[i - 1].name, m.t[i].name) < 0);
    check_common_config(&m, 4);
    assert_int_equal(cfg_int(&m, "q_lora_rank"), 64);
    assert_int_equal(cfg_int(&m, "num_nextn_predict_layers"), 0);
    /* mlx_lm formatting: top-level keys sorted, indent 4, same dict twice */
    assert_true(!strncmp(m.config_text, "{\n    \"architectures\": [\n        \"DeepseekV3ForCausalLM\"\n    ],", 60));
    struct json_object *q, *qc, *v;
    assert_true(json_object_object_get_ex(m.config, "quantization", &q));
    assert_true(json_object_object_get_ex(m.config, "quantization_config", &qc));
    assert_string_equal(json_object_to_json_string(q), json_object_to_json_string(qc));
    assert_int_equal(json_object_object_length(q), 3); /* uniform: defaults only */
    assert_true(json_object_object_get_ex(q, "bits", &v) && json_object_get_int(v) == 4);
    assert_true(json_object_object_get_ex(q, "group_size", &v) && json_object_get_int(v) == 64);
    assert_true(json_object_object_get_ex(q, "mode", &v) && !strcmp(json_object_get_string(v), "affine"));
    const char *prev = "";
    json_object_object_foreach(m.config, key, val)
    {
        (void)val;
        assert_true(strcmp(prev, key) < 0);
        prev = key;
    }
    struct json_object *meta, *tp;
    assert_true(json_object_object_get_ex(m.index, "metadata", &meta));
    assert_true(json_object_object_get_ex(meta, "total_parameters", &tp));
    assert_true(json_object_get_int64(tp) > 2000000);

    const int64_t D = 128, V = 512, E = 16, M = 128, H = 4, KVL = 64, NOPE = 64, ROPE = 16, VD = 32, QL = 64;
    assert_shape(mfind(&m, "model.embed_tokens.weight"), "U32", 2, V, D / 8, 0);
    assert_shape(mfind(&m, "model.embed_tokens.scales"), "BF16", 2, V, D / 64, 0);
    assert_shape(mfind(&m, "model.embed_tokens.biases"), "BF16", 2, V, D / 64, 0);
    assert_shape(mfind(&m, "lm_head.weight"), "U32", 2, V, D / 8, 0);
    assert_shape(mfind(&m, "model.norm.weight"), "BF16", 1, D, 0, 0);
    for (int l = 0; l < 4; l++) {
        assert_shape(mfind(&m, "model.layers.%d.input_layernorm.weight", l), "BF16", 1, D, 0, 0);
        assert_shape(mfind(&m, "model.layers.%d.self_attn.q_a_proj.weight", l), "U32", 2, QL, D / 8, 0);
        assert_shape(mfind(&m, "model.layers.%d.self_attn.q_a_layernorm.weight", l), "BF16", 1, QL, 0, 0);
        assert_shape(mfind(&m, "model.layers.%d.self_attn.q_b_proj.weight", l), "U32", 2, H * (NOPE + ROPE), QL / 8, 0);
        assert_shape(mfind(&m, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l), "U32", 2, KVL + ROPE, D / 8, 0);
        assert_shape(mfind(&m, "model.layers.%d.self_attn.embed_q.weight", l), "U32", 3, H, KVL, NOPE / 8);
        assert_shape(mfind(&m, "model.layers.%d.self_attn.embed_q.scales", l), "BF16", 3, H, KVL, NOPE / 64);
        assert_shape(mfind(&m, "model.layers.%d.self_attn.unembed_out.weight", l), "U32", 3, H, VD, KVL / 8);
        assert_shape(mfind(&m, "model.layers.%d.self_attn.unembed_out.biases", l), "BF16", 3, H, VD, KVL / 64);
        assert_shape(mfind(&m, "model.layers.%d.self_attn.o_proj.weight", l), "U32", 2, D, H * VD / 8, 0);
        assert_null(mfind(&m, "model.layers.%d.self_attn.kv_b_proj.weight", l));
        assert_null(mfind(&m, "model.layers.%d.self_attn.q_proj.weight", l));
        if (l == 0) {
            assert_shape(mfind(&m, "model.layers.0.mlp.gate_proj.weight"), "U32", 2, 256, D / 8, 0);
            assert_shape(mfind(&m, "model.layers.0.mlp.down_proj.weight"), "U32", 2, D, 256 / 8, 0);
            assert_null(mfind(&m, "model.layers.0.mlp.gate.weight"));
            continue;
        }
        assert_shape(mfind(&m, "model.layers.%d.mlp.gate.weight", l), "BF16", 2, E, D, 0);
        assert_null(mfind(&m, "model.layers.%d.mlp.gate.scales", l));
        assert_shape(mfind(&m, "model.layers.%d.mlp.gate.e_score_correction_bias", l), "F32", 1, E, 0, 0);
        assert_shape(mfind(&m, "model.layers.%d.mlp.switch_mlp.gate_proj.weight", l), "U32", 3, E, M, D * 4 / 32);
        assert_shape(mfind(&m, "model.layers.%d.mlp.switch_mlp.gate_proj.scales", l), "BF16", 3, E, M, D / 64);
        assert_shape(mfind(&m, "model.layers.%d.mlp.switch_mlp.up_proj.biases", l), "BF16", 3, E, M, D / 64);
        assert_shape(mfind(&m, "model.layers.%d.mlp.switch_mlp.down_proj.weight", l), "U32", 3, E, D, M * 4 / 32);
        assert_shape(mfind(&m, "model.layers.%d.mlp.switch_mlp.down_proj.scales", l), "BF16", 3, E, D, M / 64);
        assert_shape(mfind(&m, "model.layers.%d.mlp.shared_experts.gate_proj.weight", l), "U32", 2, M, D / 8, 0);
        assert_shape(mfind(&m, "model.layers.%d.mlp.shared_experts.down_proj.weight", l), "U32", 2, D, M / 8, 0);
        assert_null(mfind(&m, "model.layers.%d.mlp.experts.0.gate_proj.weight", l));
    }
    assert_null(mfind(&m, "model.layers.4.input_layernorm.weight")); /* no MTP */

    /* weight statistics: zero-mean groups with the target std, scales of both signs */
    double mean, std;
    mstats(&m, "model.layers.1.mlp.switch_mlp.gate_proj", E * M, D, &mean, &std);
    assert_true(fabs(mean) < 0.05 * std);
    assert_true(fabs(std / (1 / sqrt(128.0)) - 1) < 0.1);
    mstats(&m, "model.layers.2.mlp.switch_mlp.down_proj", E * D, M, &mean, &std);
    assert_true(fabs(std / (1 / sqrt(128.0) / sqrt(8.0)) - 1) < 0.1);
    mstats(&m, "model.embed_tokens", V, D, &mean, &std);
    assert_true(fabs(mean) < 0.05 && fabs(std - 1) < 0.1);
    const mt *sc = mfind(&m, "model.layers.1.mlp.switch_mlp.gate_proj.scales");
    int neg = 0, n = (int)(sc->nbytes / 2);
    for (int i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, mdata(&m, sc) + 2 * i, 2);
        neg += ms_bf16_to_f32(h) < 0;
    }
    assert_true(neg > n / 3 && neg < 2 * n / 3);
    float nw[128];
    mrow(&m, "model.layers.2.post_attention_layernorm", 0, D, nw);
    for (int i = 0; i < D; i++) assert_true(nw[i] > 0.85f && nw[i] < 1.15f);
    /* router bias: skewed, <= 0, one expert at 0, different per layer */
    float b1[16], b2[16];
    memcpy(b1, mdata(&m, mfind(&m, "model.layers.1.mlp.gate.e_score_correction_bias")), sizeof b1);
    memcpy(b2, mdata(&m, mfind(&m, "model.layers.2.mlp.gate.e_score_correction_bias")), sizeof b2);
    float mx = -1, mn = 1;
    for (int e = 0; e < 16; e++) {
        assert_true(b1[e] <= 0);
        mx = fmaxf(mx, b1[e]);
        mn = fminf(mn, b1[e]);
    }
    assert_true(mx == 0 && mn < -0.1f && mn > -0.4f);
    assert_memory_not_equal(b1, b2, sizeof b1);
    model_close(&m);
    free(dir);
}

/* ---- end to end: HF ---- */

static void test_tiny_hf(void **state)
{
    (void)state;
    char *dir = fresh("synth_hf");
    assert_int_equal(synth(NULL, dir, "--preset tiny --format hf --mtp 1"), 0);
    model m;
    model_open(&m, dir);
    assert_true(m.nf >= 3);
    for (int i = 0; i < m.nf; i++) assert_string_equal(m.f[i].format, "pt");
    check_common_config(&m, 4);
    assert_int_equal(cfg_int(&m, "num_nextn_predict_layers"), 1);
    struct json_object *v, *meta;
    assert_false(json_object_object_get_ex(m.config, "quantization", &v));
    assert_false(json_object_object_get_ex(m.config, "quantization_config", &v));
    assert_true(json_object_object_get_ex(m.config, "torch_dtype", &v));
    assert_string_equal(json_object_get_string(v), "bfloat16");
    /* transformers formatting: indent 2, sorted at every level, trailing newline */
    assert_true(!strncmp(m.config_text, "{\n  \"architectures\": [\n    \"DeepseekV3ForCausalLM\"\n  ],", 50));
    assert_true(m.config_text[strlen(m.config_text) - 1] == '\n');
    assert_non_null(strstr(m.config_text, "\"beta_fast\": 32,\n    \"beta_slow\": 1,"));
    assert_true(json_object_object_get_ex(m.index, "metadata", &meta));
    assert_false(json_object_object_get_ex(meta, "total_parameters", &v));

    const int64_t D = 128, V = 512, M = 128, H = 4, KVL = 64, NOPE = 64, ROPE = 16, VD = 32;
    assert_shape(mfind(&m, "model.embed_tokens.weight"), "BF16", 2, V, D, 0);
    assert_shape(mfind(&m, "lm_head.weight"), "BF16", 2, V, D, 0);
    for (int l = 0; l < 5; l++) {
        assert_shape(mfind(&m, "model.layers.%d.self_attn.q_b_proj.weight", l), "BF16", 2, H * (NOPE + ROPE), 64, 0);
        assert_shape(mfind(&m, "model.layers.%d.self_attn.kv_b_proj.weight", l), "BF16", 2, H * (NOPE + VD), KVL, 0);
        assert_shape(mfind(&m, "model.layers.%d.self_attn.o_proj.weight", l), "BF16", 2, D, H * VD, 0);
        assert_null(mfind(&m, "model.layers.%d.self_attn.embed_q.weight", l));
        assert_null(mfind(&m, "model.layers.%d.self_attn.q_b_proj.scales", l));
        if (l == 0) continue;
        assert_shape(mfind(&m, "model.layers.%d.mlp.gate.weight", l), "BF16", 2, 16, D, 0);
        assert_shape(mfind(&m, "model.layers.%d.mlp.gate.e_score_correction_bias", l), "F32", 1, 16, 0, 0);
        for (int e = 0; e < 16; e++) {
            assert_shape(mfind(&m, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e), "BF16", 2, M, D, 0);
            assert_shape(mfind(&m, "model.layers.%d.mlp.experts.%d.up_proj.weight", l, e), "BF16", 2, M, D, 0);
            assert_shape(mfind(&m, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, e), "BF16", 2, D, M, 0);
        }
        assert_null(mfind(&m, "model.layers.%d.mlp.experts.16.gate_proj.weight", l));
        assert_null(mfind(&m, "model.layers.%d.mlp.switch_mlp.gate_proj.weight", l));
        assert_shape(mfind(&m, "model.layers.%d.mlp.shared_experts.up_proj.weight", l), "BF16", 2, M, D, 0);
    }
    /* the MTP module at index num_hidden_layers (spec §2.3) */
    assert_shape(mfind(&m, "model.layers.4.enorm.weight"), "BF16", 1, D, 0, 0);
    assert_shape(mfind(&m, "model.layers.4.hnorm.weight"), "BF16", 1, D, 0, 0);
    assert_shape(mfind(&m, "model.layers.4.eh_proj.weight"), "BF16", 2, D, 2 * D, 0);
    assert_shape(mfind(&m, "model.layers.4.embed_tokens.weight"), "BF16", 2, V, D, 0);
    assert_shape(mfind(&m, "model.layers.4.shared_head.norm.weight"), "BF16", 1, D, 0, 0);
    assert_shape(mfind(&m, "model.layers.4.shared_head.head.weight"), "BF16", 2, V, D, 0);
    assert_null(mfind(&m, "model.layers.5.input_layernorm.weight"));
    double mean, std;
    mstats(&m, "model.layers.3.mlp.experts.7.gate_proj", M, D, &mean, &std);
    assert_true(fabs(std * sqrt(128.0) - 1) < 0.1 && fabs(mean) < 0.1 * std);
    model_close(&m);
    free(dir);

    /* f32, q_lora_rank null, one shard: model.safetensors and (transformers) no index */
    dir = fresh("synth_hf32");
    assert_int_equal(synth(NULL, dir, "--preset tiny --format hf --dtype f32 --q-lora-rank null --shard-size 1G"), 0);
    char *idx = mst_fmt("%s/model.safetensors.index.json", dir);
    assert_false(mst_exists(idx));
    free(idx);
    model_open(&m, dir);
    assert_int_equal(m.nf, 1);
    struct json_object *ql;
    assert_true(json_object_object_get_ex(m.config, "q_lora_rank", &ql));
    assert_null(ql); /* JSON null */
    assert_shape(mfind(&m, "model.layers.1.self_attn.q_proj.weight"), "F32", 2, H * (NOPE + ROPE), D, 0);
    assert_null(mfind(&m, "model.layers.1.self_attn.q_a_proj.weight"));
    assert_shape(mfind(&m, "model.layers.1.mlp.gate.e_score_correction_bias"), "F32", 1, 16, 0, 0);
    assert_true(json_object_object_get_ex(m.config, "torch_dtype", &v));
    assert_string_equal(json_object_get_string(v), "float32");
    model_close(&m);
    free(dir);
}

/* ---- mixed recipes ---- */

/* Every quantized module has a config entry whose bits/group size match its packed shapes. */
static int check_overrides(const model *m, struct json_object *q, int (*expect)(const char *path))
{
    int n = 0;
    for (int i = 0; i < m->nt; i++) {
        const char *name = m->t[i].name;
        size_t len = strlen(name);
        if (len < 7 || strcmp(name + len - 7, ".scales")) continue;
        char path[256];
        snprintf(path, sizeof path, "%.*s", (int)(len - 7), name);
        struct json_object *e, *bits, *gs, *mode;
        if (!json_object_object_get_ex(q, path, &e)) fail_msg("no quantization entry for %s", path);
        assert_true(json_object_object_get_ex(e, "bits", &bits));
        assert_true(json_object_object_get_ex(e, "group_size", &gs));
        assert_true(json_object_object_get_ex(e, "mode", &mode));
        assert_string_equal(json_object_get_string(mode), "affine");
        const mt *w = mfind(m, "%s.weight", path), *s = &m->t[i];
        int64_t in = s->shape[s->ndim - 1] * json_object_get_int(gs);
        assert_true(w->shape[w->ndim - 1] * 32 == in * json_object_get_int(bits));
        if (json_object_get_int(bits) != expect(path))
            fail_msg("%s: %d bits, expected %d", path, json_object_get_int(bits), expect(path));
        n++;
    }
    return n;
}

static int expect_8_5(const char *path) { return strstr(path, "switch_mlp") ? 5 : 8; }

static int expect_dq4(const char *path)
{
    if (!strstr(path, "switch_mlp") && !strstr(path, "shared_experts")) return 8;
    if (!strstr(path, "down_proj")) return 4;
    int l = atoi(path + strlen("model.layers."));
    return l < 5 ? 6 : l % 5 == 0 ? 5 : 4;
}

static void test_mixed_recipes(void **state)
{
    (void)state;
    struct {
        const char *args;
        int top_bits;
        int (*expect)(const char *);
    } runs[] = {
        {"--preset tiny --recipe mixed-8-5", 5, expect_8_5},
        {"--preset tiny --recipe dq4 --layers 6", 4, expect_dq4},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        char *dir = fresh("synth_mixed");
        assert_int_equal(synth(NULL, dir, runs[r].args), 0);
        model m;
        model_open(&m, dir);
        struct json_object *q, *qc, *v;
        assert_true(json_object_object_get_ex(m.config, "quantization", &q));
        assert_true(json_object_object_get_ex(m.config, "quantization_config", &qc));
        assert_string_equal(json_object_to_json_string(q), json_object_to_json_string(qc));
        assert_true(json_object_object_get_ex(q, "bits", &v) && json_object_get_int(v) == runs[r].top_bits);
        int n = check_overrides(&m, q, runs[r].expect);
        assert_int_equal(json_object_object_length(q), 3 + n); /* nothing but defaults + quantized modules */
        assert_null(json_object_object_get(q, "model.layers.1.mlp.gate")); /* the router stays bf16 */
        assert_shape(mfind(&m, "model.layers.1.mlp.gate.weight"), "BF16", 2, 16, 128, 0);
        if (r == 1) { /* bit widths that straddle words: 6 and 5 */
            assert_shape(mfind(&m, "model.layers.2.mlp.switch_mlp.down_proj.weight"), "U32", 3, 16, 128, 128 * 6 / 32);
            assert_shape(mfind(&m, "model.layers.5.mlp.switch_mlp.down_proj.weight"), "U32", 3, 16, 128, 128 * 5 / 32);
            double mean, std;
            mstats(&m, "model.layers.5.mlp.switch_mlp.down_proj", 16 * 128, 128, &mean, &std);
            assert_true(fabs(std / (1 / sqrt(128.0) / sqrt(12.0)) - 1) < 0.1);
        }
        model_close(&m);
        free(dir);
    }
    /* group size 128: modules with 64 inputs stay float (like mlx_lm), no config entry */
    char *dir = fresh("synth_g128");
    assert_int_equal(synth(NULL, dir, "--preset tiny --group-size 128 --bits 8"), 0);
    model m;
    model_open(&m, dir);
    assert_shape(mfind(&m, "model.layers.1.self_attn.q_b_proj.weight"), "BF16", 2, 4 * 80, 64, 0);
    assert_null(mfind(&m, "model.layers.1.self_attn.q_b_proj.scales"));
    assert_shape(mfind(&m, "model.layers.1.self_attn.embed_q.weight"), "BF16", 3, 4, 64, 64);
    assert_shape(mfind(&m, "model.layers.1.self_attn.unembed_out.weight"), "BF16", 3, 4, 32, 64);
    assert_shape(mfind(&m, "model.layers.1.self_attn.kv_a_proj_with_mqa.weight"), "U32", 2, 80, 128 * 8 / 32, 0);
    assert_shape(mfind(&m, "model.layers.1.self_attn.kv_a_proj_with_mqa.scales"), "BF16", 2, 80, 1, 0);
    struct json_object *q;
    assert_true(json_object_object_get_ex(m.config, "quantization", &q));
    assert_int_equal(json_object_object_length(q), 3);
    model_close(&m);
    free(dir);
    /* MLX with --mtp: the MTP layer in MLX naming (a badly converted checkpoint) */
    dir = fresh("synth_mlx_mtp");
    assert_int_equal(synth(NULL, dir, "--preset tiny --mtp 1 --q-lora-rank null"), 0);
    model_open(&m, dir);
    assert_shape(mfind(&m, "model.layers.4.eh_proj.weight"), "U32", 2, 128, 256 / 8, 0);
    assert_shape(mfind(&m, "model.layers.4.mlp.switch_mlp.up_proj.weight"), "U32", 3, 16, 128, 128 / 8);
    assert_shape(mfind(&m, "model.layers.4.shared_head.head.scales"), "BF16", 2, 512, 2, 0);
    assert_shape(mfind(&m, "model.layers.2.self_attn.q_proj.weight"), "U32", 2, 320, 128 / 8, 0);
    assert_int_equal(cfg_int(&m, "num_nextn_predict_layers"), 1);
    model_close(&m);
    free(dir);
}

/* ---- determinism ---- */

static bool same_file(const char *a, const char *b)
{
    size_t la, lb;
    char *x = mst_slurp(a, &la), *y = mst_slurp(b, &lb);
    bool same = x && y && la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return same;
}

static void test_determinism(void **state)
{
    (void)state;
    char *a = fresh("synth_det_a"), *b = fresh("synth_det_b"), *c = fresh("synth_det_c"), *d = fresh("synth_det_d");
    assert_int_equal(synth(NULL, a, "--preset tiny --seed 7"), 0);
    assert_int_equal(synth(NULL, b, "--preset tiny --seed 7"), 0);
    assert_int_equal(synth(NULL, c, "--preset tiny --seed 7 --shard-size 100K"), 0);
    assert_int_equal(synth(NULL, d, "--preset tiny --seed 8"), 0);
    const char *files[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors.index.json",
                           "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                           "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *pa = mst_fmt("%s/%s", a, files[i]), *pb = mst_fmt("%s/%s", b, files[i]);
        if (!same_file(pa, pb)) fail_msg("%s differs between two runs with the same seed", files[i]);
        free(pa);
        free(pb);
    }
    /* another shard size: other files, same tensor bytes */
    model ma, mc, md;
    model_open(&ma, a);
    model_open(&mc, c);
    model_open(&md, d);
    assert_true(mc.nf > ma.nf);
    assert_int_equal(ma.nt, mc.nt);
    int differ = 0;
    for (int i = 0; i < ma.nt; i++) {
        const mt *x = &ma.t[i], *y = mfind(&mc, "%s", x->name), *z = mfind(&md, "%s", x->name);
        assert_non_null(y);
        assert_non_null(z);
        assert_true(x->nbytes == y->nbytes);
        assert_memory_equal(mdata(&ma, x), mdata(&mc, y), x->nbytes);
        differ += memcmp(mdata(&ma, x), mdata(&md, z), x->nbytes) != 0;
    }
    assert_true(differ > ma.nt * 9 / 10); /* another seed changes (nearly) every tensor */
    model_close(&ma);
    model_close(&mc);
    model_close(&md);
    free(a);
    free(b);
    free(c);
    free(d);
}

/* ---- forward pass: activations stay finite ---- */

typedef struct cfg {
    int D, V, L, H, nope, rope, vd, kvl, E, M, NS, K, NG, TG, FKD, I;
    double eps;
    bool hf;
} cfg;

static void rmsnorm(const float *x, const float *w, int n, double eps, float *y)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    double r = 1.0 / sqrt(s / n + eps);
    for (int i = 0; i < n; i++) y[i] = (float)(x[i] * r * w[i]);
}

static double rms(const float *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s / n);
}

static float silu(float z) { return z / (1 + expf(-z)); }

/* SwiGLU MLP with weights at rows [row0, row0+width) of gate/up and the
 * matching down rows (down row index base down0). */
static void ffn(const model *m, const char *gate, const char *up, const char *down, int64_t row0, int64_t down0,
                int width, int D, const float *x, float *y)
{
    float *g = malloc((size_t)width * 4), *u = malloc((size_t)width * 4);
    mmatvec(m, gate, row0, width, D, x, g);
    mmatvec(m, up, row0, width, D, x, u);
    for (int i = 0; i < width; i++) g[i] = silu(g[i]) * u[i];
    mmatvec(m, down, down0, D, width, g, y);
    free(g);
    free(u);
}

/* Router (sigmoid + bias, group-limited top-k): chosen ids and weights. */
static void route(const cfg *c, const float *logits, const float *bias, int *ids, float *w)
{
    float s[256], sel[256];
    for (int e = 0; e < c->E; e++) {
        s[e] = 1.0f / (1.0f + expf(-logits[e]));
        sel[e] = s[e] + bias[e];
    }
    int per = c->E / c->NG;
    if (c->NG > 1) {
        float gsc[64];
        for (int g = 0; g < c->NG; g++) {
            float a = -INFINITY, b = -INFINITY;
            for (int j = 0; j < per; j++) {
                float v = sel[g * per + j];
                if (v > a) {
                    b = a;
                    a = v;
                } else if (v > b) b = v;
            }
            gsc[g] = a + b;
        }
        bool keep[64] = {0};
        for (int t = 0; t < c->TG; t++) {
            int best = -1;
            for (int g = 0; g < c->NG; g++)
                if (!keep[g] && (best < 0 || gsc[g] > gsc[best])) best = g;
            keep[best] = true;
        }
        for (int e = 0; e < c->E; e++)
            if (!keep[e / per]) sel[e] = -INFINITY;
    }
    bool used[256] = {0};
    float sum = 0;
    for (int k = 0; k < c->K; k++) {
        int best = -1;
        for (int e = 0; e < c->E; e++)
            if (!used[e] && (best < 0 || sel[e] > sel[best])) best = e;
        used[best] = true;
        ids[k] = best;
        w[k] = s[best];
        sum += s[best];
    }
    for (int k = 0; k < c->K; k++) w[k] = w[k] / sum * 2.5f;
}

static void read_vec(const model *m, const char *name, float *out, int n)
{
    const mt *t = mfind(m, "%s", name);
    if (!t) fail_msg("missing %s", name);
    ms_dtype dt;
    assert_int_equal(ms_dtype_parse(t->dtype, &dt), 0);
    void *tmp = malloc(t->nbytes);
    memcpy(tmp, mdata(m, t), t->nbytes);
    assert_int_equal(ms_convert_to_f32(dt, tmp, out, (size_t)n), 0);
    free(tmp);
}

/* One token at position 0 (RoPE is the identity, attention weight is 1 on
 * itself): returns the largest residual rms seen after any layer. */
static double forward_one(const model *m, const cfg *c, int tok, float *logits)
{
    const int D = c->D;
    float *h = calloc((size_t)D, 4), *x = malloc((size_t)D * 4), *nw = malloc((size_t)D * 4),
          *y = malloc((size_t)D * 4), *t = malloc((size_t)D * 4);
    float *kv = malloc((size_t)(c->kvl + c->rope) * 4), *cl = malloc((size_t)c->kvl * 4),
          *kvn = malloc((size_t)c->kvl * 4), *o = malloc((size_t)(c->H * c->vd) * 4);
    char p[256], q[256], r[256];
    mrow(m, "model.embed_tokens", tok, D, h);
    double worst = rms(h, D);
    for (int l = 0; l < c->L; l++) {
        snprintf(p, sizeof p, "model.layers.%d.input_layernorm.weight", l);
        read_vec(m, p, nw, D);
        rmsnorm(h, nw, D, c->eps, x);
        snprintf(p, sizeof p, "model.layers.%d.self_attn.kv_a_proj_with_mqa", l);
        mmatvec(m, p, 0, c->kvl + c->rope, D, x, kv);
        snprintf(p, sizeof p, "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
        read_vec(m, p, kvn, c->kvl);
        rmsnorm(kv, kvn, c->kvl, 1e-6, cl);
        for (int hh = 0; hh < c->H; hh++) {
            if (c->hf) {
                snprintf(p, sizeof p, "model.layers.%d.self_attn.kv_b_proj", l);
                mmatvec(m, p, (int64_t)hh * (c->nope + c->vd) + c->nope, c->vd, c->kvl, cl, o + hh * c->vd);
            } else {
                snprintf(p, sizeof p, "model.layers.%d.self_attn.unembed_out", l);
                mmatvec(m, p, (int64_t)hh * c->vd, c->vd, c->kvl, cl, o + hh * c->vd);
            }
        }
        snprintf(p, sizeof p, "model.layers.%d.self_attn.o_proj", l);
        mmatvec(m, p, 0, D, c->H * c->vd, o, y);
        for (int i = 0; i < D; i++) h[i] += y[i];
        snprintf(p, sizeof p, "model.layers.%d.post_attention_layernorm.weight", l);
        read_vec(m, p, nw, D);
        rmsnorm(h, nw, D, c->eps, x);
        if (l < c->FKD) {
            snprintf(p, sizeof p, "model.layers.%d.mlp.gate_proj", l);
            snprintf(q, sizeof q, "model.layers.%d.mlp.up_proj", l);
            snprintf(r, sizeof r, "model.layers.%d.mlp.down_proj", l);
            ffn(m, p, q, r, 0, 0, c->I, D, x, y);
        } else {
            float lg[256], bias[256], w[16];
            int ids[16];
            snprintf(p, sizeof p, "model.layers.%d.mlp.gate", l);
            mmatvec(m, p, 0, c->E, D, x, lg);
            snprintf(p, sizeof p, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
            read_vec(m, p, bias, c->E);
            route(c, lg, bias, ids, w);
            snprintf(p, sizeof p, "model.layers.%d.mlp.shared_experts.gate_proj", l);
            snprintf(q, sizeof q, "model.layers.%d.mlp.shared_experts.up_proj", l);
            snprintf(r, sizeof r, "model.layers.%d.mlp.shared_experts.down_proj", l);
            ffn(m, p, q, r, 0, 0, c->NS * c->M, D, x, y);
            for (int k = 0; k < c->K; k++) {
                int e = ids[k];
                if (c->hf) {
                    snprintf(p, sizeof p, "model.layers.%d.mlp.experts.%d.gate_proj", l, e);
                    snprintf(q, sizeof q, "model.layers.%d.mlp.experts.%d.up_proj", l, e);
                    snprintf(r, sizeof r, "model.layers.%d.mlp.experts.%d.down_proj", l, e);
                    ffn(m, p, q, r, 0, 0, c->M, D, x, t);
                } else {
                    snprintf(p, sizeof p, "model.layers.%d.mlp.switch_mlp.gate_proj", l);
                    snprintf(q, sizeof q, "model.layers.%d.mlp.switch_mlp.up_proj", l);
                    snprintf(r, sizeof r, "model.layers.%d.mlp.switch_mlp.down_proj", l);
                    ffn(m, p, q, r, (int64_t)e * c->M, (int64_t)e * D, c->M, D, x, t);
                }
                for (int i = 0; i < D; i++) y[i] += w[k] * t[i];
            }
        }
        for (int i = 0; i < D; i++) {
            h[i] += y[i];
            assert_true(isfinite(h[i]));
        }
        double rr = rms(h, D);
        if (rr > worst) worst = rr;
    }
    read_vec(m, "model.norm.weight", nw, D);
    rmsnorm(h, nw, D, c->eps, x);
    mmatvec(m, "lm_head", 0, c->V, D, x, logits);
    free(h);
    free(x);
    free(nw);
    free(y);
    free(t);
    free(kv);
    free(cl);
    free(kvn);
    free(o);
    return worst;
}

static void check_forward(const char *name, const char *args, bool hf)
{
    char *dir = fresh(name);
    assert_int_equal(synth(NULL, dir, args), 0);
    model m;
    model_open(&m, dir);
    cfg c = {.D = (int)cfg_int(&m, "hidden_size"), .V = (int)cfg_int(&m, "vocab_size"),
             .L = (int)cfg_int(&m, "num_hidden_layers"), .H = (int)cfg_int(&m, "num_attention_heads"),
             .nope = (int)cfg_int(&m, "qk_nope_head_dim"), .rope = (int)cfg_int(&m, "qk_rope_head_dim"),
             .vd = (int)cfg_int(&m, "v_head_dim"), .kvl = (int)cfg_int(&m, "kv_lora_rank"),
             .E = (int)cfg_int(&m, "n_routed_experts"), .M = (int)cfg_int(&m, "moe_intermediate_size"),
             .NS = (int)cfg_int(&m, "n_shared_experts"), .K = (int)cfg_int(&m, "num_experts_per_tok"),
             .NG = (int)cfg_int(&m, "n_group"), .TG = (int)cfg_int(&m, "topk_group"),
             .FKD = (int)cfg_int(&m, "first_k_dense_replace"), .I = (int)cfg_int(&m, "intermediate_size"),
             .eps = 1e-6, .hf = hf};
    float *logits = malloc((size_t)c.V * 4);
    const int toks[] = {0, 77, 300, 511};
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        double worst = forward_one(&m, &c, toks[i], logits);
        if (!(worst < 4.0)) fail_msg("%s: residual rms reached %g", args, worst);
        if (i == 0) print_message("forward %s: max residual rms %.3f\n", args, worst);
        double s = 0, s2 = 0;
        for (int v = 0; v < c.V; v++) {
            assert_true(isfinite(logits[v]));
            s += logits[v];
            s2 += (double)logits[v] * logits[v];
        }
        double sd = sqrt(s2 / c.V - (s / c.V) * (s / c.V));
        if (!(sd > 0.3 && sd < 3)) fail_msg("%s: logit std %g", args, sd);
    }
    free(logits);
    model_close(&m);
    free(dir);
}

static void test_forward_finite(void **state)
{
    (void)state;
    check_forward("synth_fwd_mlx", "--preset tiny", false);
    check_forward("synth_fwd_hf", "--preset tiny --format hf", true);
    check_forward("synth_fwd_deep", "--preset tiny --layers 32 --bits 3 --group-size 32", false);
}

/* ---- router skew ---- */

/* Share of the routed slots taken by the 4 most used experts (of 16), over
 * random unit-rms inputs through every MoE layer's real router. */
static double top_share(const char *args)
{
    char *dir = fresh("synth_skew");
    assert_int_equal(synth(NULL, dir, args), 0);
    model m;
    model_open(&m, dir);
    cfg c = {.E = 16, .K = 4, .NG = 4, .TG = 2};
    ms_rng r;
    ms_rng_seed(&r, 99, 0);
    double share = 0;
    for (int l = 1; l < 4; l++) {
        int cnt[16] = {0};
        float x[128], lg[16], bias[16], w[4];
        int ids[4];
        char p[128];
        snprintf(p, sizeof p, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
        read_vec(&m, p, bias, 16);
        snprintf(p, sizeof p, "model.layers.%d.mlp.gate", l);
        for (int t = 0; t < 800; t++) {
            for (int i = 0; i < 128; i++) x[i] = (float)ms_rng_normal(&r);
            mmatvec(&m, p, 0, 16, 128, x, lg);
            route(&c, lg, bias, ids, w);
            for (int k = 0; k < 4; k++) cnt[ids[k]]++;
        }
        for (int a = 0; a < 16; a++) /* sort descending */
            for (int b = a + 1; b < 16; b++)
                if (cnt[b] > cnt[a]) {
                    int tmp = cnt[a];
                    cnt[a] = cnt[b];
                    cnt[b] = tmp;
                }
        share += (cnt[0] + cnt[1] + cnt[2] + cnt[3]) / (800.0 * 4) / 3;
    }
    model_close(&m);
    free(dir);
    return share;
}

static void test_route_skew(void **state)
{
    (void)state;
    double flat = top_share("--preset tiny --route-skew 0");
    double skewed = top_share("--preset tiny");
    double strong = top_share("--preset tiny --route-skew 3");
    print_message("top-4 of 16 experts share: skew 0 %.3f, 1 %.3f, 3 %.3f\n", flat, skewed, strong);
    if (!(flat < 0.33 && skewed > flat + 0.04 && strong > skewed + 0.05))
        fail_msg("top-4 share: skew 0 %.3f, 1 %.3f, 3 %.3f", flat, skewed, strong);
    /* skew 0: the correction bias is exactly zero */
    char *dir = fresh("synth_skew0");
    assert_int_equal(synth(NULL, dir, "--preset tiny --route-skew 0"), 0);
    model m;
    model_open(&m, dir);
    float b[16];
    read_vec(&m, "model.layers.3.mlp.gate.e_score_correction_bias", b, 16);
    for (int e = 0; e < 16; e++) assert_true(b[e] == 0);
    model_close(&m);
    free(dir);
}

/* ---- CLI errors ---- */

static void expect_usage_error(const char *args, const char *needle)
{
    char *out = NULL, *err = NULL;
    int rc = mst_run(&out, &err, "'%s' synth %s", MS_BIN, args);
    if (rc != 2) fail_msg("synth %s: exit %d (expected 2), stderr: %s", args, rc, err ? err : "");
    if (!err || !strstr(err, needle)) fail_msg("synth %s: stderr '%s' lacks '%s'", args, err ? err : "", needle);
    assert_non_null(strstr(err, "moestream synth: "));
    assert_true(strchr(err, '\n') == err + strlen(err) - 1); /* exactly one line */
    free(out);
    free(err);
}

static void test_cli_errors(void **state)
{
    (void)state;
    char *dir = fresh("synth_cli");
    char *a = NULL;
#define E(args, needle)                                                                                           \
    do {                                                                                                          \
        a = mst_fmt(args, dir);                                                                                   \
        expect_usage_error(a, needle);                                                                            \
        free(a);                                                                                                  \
    } while (0)
    E("--preset nope --out %s", "unknown preset 'nope'");
    E("--preset nope --out %s", "tiny, demo");
    E("--preset tiny --bits 7 --out %s", "--bits: 7");
    E("--preset tiny --group-size 48 --out %s", "--group-size: 48");
    E("--preset tiny --recipe mixed-8-5 --format hf --out %s", "--format mlx only");
    E("--preset tiny --recipe dq4 --bits 4 --out %s", "--bits applies to --recipe uniform");
    E("--preset tiny --recipe q2 --out %s", "--recipe");
    E("--preset tiny --format gguf --out %s", "--format");
    E("--preset tiny --dtype f8 --out %s", "--dtype");
    E("--preset tiny --n-group 3 --out %s", "--n-group");
    E("--preset tiny --top-k 17 --out %s", "--top-k");
    E("--preset tiny --vocab 100 --out %s", "--vocab");
    E("--preset tiny --layers 0 --out %s", "--layers");
    E("--preset tiny --layers x --out %s", "--layers");
    E("--preset tiny --q-lora-rank abc --out %s", "--q-lora-rank");
    E("--preset tiny --shard-size 12X --out %s", "--shard-size");
    E("--preset tiny --route-skew -2 --out %s", "--route-skew");
    E("--preset tiny --mtp 99 --out %s", "--mtp");
    E("--preset tiny --bogus --out %s", "unknown option '--bogus'");
    E("--preset tiny --out %s extra", "unexpected argument 'extra'");
    E("--preset tiny --out %s --seed", "needs a value");
    E("--out %s", "--preset is required");
    expect_usage_error("--preset tiny", "--out DIR is required");
    expect_usage_error("--preset tiny --out ''", "--out: empty");
    /* unwritable --out */
    expect_usage_error("--preset tiny --out /proc/moestream-synth-test", "--out /proc/moestream-synth-test");
    char *file = mst_fmt("%s.file", dir);
    FILE *f = fopen(file, "w");
    fputs("x", f);
    fclose(f);
    a = mst_fmt("--preset tiny --out %s", file);
    expect_usage_error(a, "not a directory");
    free(a);
    a = mst_fmt("--preset tiny --out %s/sub", file);
    expect_usage_error(a, "--out");
    free(a);
    unlink(file);
    free(file);
    /* non-empty directory needs --force */
    assert_int_equal(synth(NULL, dir, "--preset tiny"), 0);
    E("--preset tiny --out %s", "not empty");
    assert_int_equal(synth(NULL, dir, "--preset tiny --force --shard-size 1G"), 0);
    char *stale = mst_fmt("%s/model-00001-of-00004.safetensors", dir);
    assert_false(mst_exists(stale)); /* the old shards were replaced, not mixed in */
    free(stale);
    char *one = mst_fmt("%s/model.safetensors", dir);
    assert_true(mst_exists(one));
    free(one);
#undef E
    /* --help and --dry-run */
    char *out = NULL, *err = NULL;
    assert_int_equal(mst_run(&out, &err, "'%s' synth --help", MS_BIN), 0);
    const char *opts[] = {"--preset", "--out", "--format", "--recipe", "--bits", "--group-size", "--dtype",
                          "--seed", "--layers", "--experts", "--top-k", "--n-group", "--topk-group", "--vocab",
                          "--q-lora-rank", "--mtp", "--route-skew", "--shard-size", "--dry-run", "mixed-8-5", "dq4"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (!strstr(out, opts[i])) fail_msg("--help lacks %s", opts[i]);
    free(out);
    free(err);
    char *nodir = mst_fmt("%s/never", dir);
    assert_int_equal(mst_run(&out, &err, "'%s' synth --preset gigachat-702b --dry-run --out %s", MS_BIN, nodir), 0);
    assert_non_null(strstr(out, "model-00005-of-00005.safetensors"));
    assert_false(mst_exists(nodir));
    free(nodir);
    free(out);
    free(err);
    free(dir);
}

/* ---- step3p5 presets ---- */

static json_object *jget(json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v)) fail_msg("config.json: no %s", k);
    return v;
}

/* Every per-layer list of a step text config has num_hidden_layers + 3 entries (the
 * release's lists also cover its 3 MTP layers); layer l is full when l % 4 == 0, the
 * MTP entries are sliding; num_nextn_predict_layers is the MTP layers written (--mtp N),
 * else the release's 3. */
static void check_step_text_config(json_object *tc, int n_layers, int n_nextn)
{
    const char *lists[] = {"layer_types", "rope_theta", "partial_rotary_factors", "swiglu_limits",
                           "swiglu_limits_shared"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        assert_int_equal(json_object_array_length(jget(tc, lists[i])), n_layers + 3);
    json_object *lt = jget(tc, "layer_types");
    for (int l = 0; l < n_layers; l++)
        assert_string_equal(json_object_get_string(json_object_array_get_idx(lt, (size_t)l)),
                            l % 4 == 0 ? "full_attention" : "sliding_attention");
    for (int l = n_layers; l < n_layers + 3; l++)
        assert_string_equal(json_object_get_string(json_object_array_get_idx(lt, (size_t)l)), "sliding_attention");
    assert_int_equal(json_object_get_int(jget(tc, "num_nextn_predict_layers")), n_nextn);
    assert_string_equal(json_object_get_string(jget(tc, "model_type")), "step3p5");
    assert_int_equal(json_object_get_int(jget(jget(tc, "attention_other_setting"), "num_attention_heads")), 6);
    /* the clamps sit on the last two (routed) / last (shared) layers */
    assert_true(json_object_get_double(json_object_array_get_idx(jget(tc, "swiglu_limits"), (size_t)n_layers - 2)) > 0);
    assert_true(json_object_get_double(json_object_array_get_idx(jget(tc, "swiglu_limits_shared"), (size_t)n_layers - 1)) > 0);
    assert_true(json_object_get_double(json_object_array_get_idx(jget(tc, "swiglu_limits"), 0)) == 0);
}

static void test_step_presets(void **state)
{
    (void)state;
    ms_err err = {0};
    ms_synth_opts o;
    /* Step-3.7-Flash: 45 layers, 197B parameters, DQ4 ~108 GiB; --layers 12 ~25 GiB */
    assert_int_equal(ms_synth_preset("step-3.7-flash", &o, &err), 0);
    assert_int_equal(o.arch.hidden_size, 4096);
    assert_int_equal(o.arch.n_routed_experts, 288);
    assert_int_equal(o.arch.n_layers, 45);
    assert_int_equal(o.recipe, MS_SYNTH_DQ4);
    ms_stw_plan p;
    ms_synth_result r;
    assert_int_equal(ms_synth_plan(&o, &p, &r, &err), 0);
    ms_stw_plan_free(&p);
    print_message("step-3.7-flash: %.3f B parameters, %.2f GiB\n", r.n_params / 1e9, r.file_bytes / 1073741824.0);
    assert_true(r.n_params > 196.5e9 && r.n_params < 197.5e9);
    assert_true(r.file_bytes > 105e9 && r.file_bytes < 120e9);
    o.arch.n_layers = 12;
    assert_int_equal(ms_synth_plan(&o, &p, &r, &err), 0);
    ms_stw_plan_free(&p);
    assert_true(r.file_bytes > 20e9 && r.file_bytes < 30e9);
    /* the router is 8-bit g64 in every MLX recipe (mlx-lm's quant_predicate) */
    assert_int_equal(ms_synth_module_bits(&o, "router", 5, false, 4096), 8);
    o.recipe = MS_SYNTH_UNIFORM;
    o.bits = 3;
    o.group_size = 32;
    assert_int_equal(ms_synth_module_bits(&o, "router", 5, false, 4096), 8);
    assert_int_equal(ms_synth_module_bits(&o, "projector", -1, false, 256), 3);
    /* no group routing, no MLA */
    assert_int_equal(ms_synth_preset("step-tiny", &o, &err), 0);
    o.arch.n_group = 2;
    assert_true(ms_synth_validate(&o, &err) < 0);
    assert_non_null(strstr(err.msg, "--n-group"));
}

/* The step3p7 wrapper as mlx-vlm writes it, and the original HF layout. */
static void test_step_layouts(void **state)
{
    (void)state;
    char *dir = fresh("synth_step_mlx");
    assert_int_equal(synth(NULL, dir, "--preset step-tiny --recipe uniform --bits 4 --group-size 32"), 0);
    model m;
    model_open(&m, dir);
    /* config: the wrapper, its text_config, no top-level torch_dtype; index without total_parameters */
    assert_string_equal(json_object_get_string(jget(m.config, "model_type")), "step3p7");
    assert_false(json_object_object_get_ex(m.config, "torch_dtype", NULL));
    json_object *tc = jget(m.config, "text_config");
    check_step_text_config(tc, 6, 3);
    assert_false(json_object_object_get_ex(jget(m.index, "metadata"), "total_parameters", NULL));
    json_object *q = jget(m.config, "quantization"), *rq = jget(q, "language_model.model.layers.3.mlp.gate.gate");
    assert_int_equal(json_object_get_int(jget(rq, "bits")), 8);
    assert_int_equal(json_object_get_int(jget(rq, "group_size")), 64);
    assert_false(json_object_object_get_ex(rq, "mode", NULL)); /* as the predicate returns it */
    assert_false(json_object_object_get_ex(q, "language_model.model.layers.3.mlp.switch_mlp.up_proj", NULL));
    /* tensors: language_model.*, GQA with more heads on sliding layers, quantized router, bf16 bias */
    const char *P = "language_model.model.layers";
    assert_shape(mfind(&m, "%s.0.self_attn.q_proj.weight", P), "U32", 2, 4 * 64, 128 * 4 / 32, 0);
    assert_shape(mfind(&m, "%s.1.self_attn.q_proj.weight", P), "U32", 2, 6 * 64, 128 * 4 / 32, 0);
    assert_shape(mfind(&m, "%s.1.self_attn.k_proj.weight", P), "U32", 2, 2 * 64, 128 * 4 / 32, 0);
    assert_shape(mfind(&m, "%s.1.self_attn.o_proj.weight", P), "U32", 2, 128, 6 * 64 * 4 / 32, 0);
    assert_shape(mfind(&m, "%s.1.self_attn.g_proj.weight", P), "U32", 2, 6, 128 * 4 / 32, 0);
    assert_shape(mfind(&m, "%s.1.self_attn.q_norm.weight", P), "BF16", 1, 64, 0, 0);
    assert_shape(mfind(&m, "%s.0.mlp.gate_proj.weight", P), "U32", 2, 192, 128 * 4 / 32, 0);
    assert_shape(mfind(&m, "%s.3.mlp.gate.gate.weight", P), "U32", 2, 16, 128 * 8 / 32, 0);
    assert_shape(mfind(&m, "%s.3.mlp.gate.gate.scales", P), "BF16", 2, 16, 2, 0);
    assert_shape(mfind(&m, "%s.3.mlp.gate.router_bias", P), "BF16", 1, 16, 0, 0);
    assert_shape(mfind(&m, "%s.3.mlp.switch_mlp.down_proj.weight", P), "U32", 3, 16, 128, 64 * 4 / 32);
    assert_shape(mfind(&m, "%s.3.mlp.share_expert.up_proj.weight", P), "U32", 2, 64, 128 * 4 / 32, 0);
    assert_non_null(mfind(&m, "language_model.lm_head.weight"));
    assert_null(mfind(&m, "model.embed_tokens.weight"));
    const mt *cv = mfind(&m, "vision_model.conv1.weight");
    assert_non_null(cv);
    assert_string_equal(cv->dtype, "BF16");
    assert_int_equal(cv->ndim, 4);
    assert_non_null(mfind(&m, "vit_large_projector.scales"));
    /* norms hold 1 + w */
    double mean, std;
    mstats(&m, "language_model.model.layers.2.input_layernorm", 1, 128, &mean, &std);
    assert_true(fabs(mean - 1) < 0.01);
    model_close(&m);
    free(dir);
    /* original HF: stacked moe.*, share_expert beside mlp, f32 router_bias, zero-centered norms, MTP */
    dir = fresh("synth_step_hf");
    assert_int_equal(synth(NULL, dir, "--preset step-tiny --format hf --mtp 1"), 0);
    model_open(&m, dir);
    assert_string_equal(json_object_get_string(jget(m.config, "model_type")), "step3p5");
    assert_false(json_object_object_get_ex(m.config, "quantization", NULL));
    check_step_text_config(m.config, 6, 1);
    assert_shape(mfind(&m, "model.layers.3.moe.gate_proj.weight"), "BF16", 3, 16, 64, 128);
    assert_shape(mfind(&m, "model.layers.3.moe.down_proj.weight"), "BF16", 3, 16, 128, 64);
    assert_shape(mfind(&m, "model.layers.3.moe.gate.weight"), "BF16", 2, 16, 128, 0);
    assert_shape(mfind(&m, "model.layers.3.moe.router_bias"), "F32", 1, 16, 0, 0);
    assert_shape(mfind(&m, "model.layers.3.share_expert.down_proj.weight"), "BF16", 2, 128, 64, 0);
    assert_shape(mfind(&m, "model.layers.6.eh_proj.weight"), "BF16", 2, 128, 256, 0);
    /* the MTP layer as the release stores it: dense MLP, its own head under transformer. */
    assert_shape(mfind(&m, "model.layers.6.mlp.gate_proj.weight"), "BF16", 2, 192, 128, 0);
    assert_shape(mfind(&m, "model.layers.6.self_attn.q_proj.weight"), "BF16", 2, 6 * 64, 128, 0);
    assert_shape(mfind(&m, "model.layers.6.transformer.shared_head.output.weight"), "BF16", 2, 512, 128, 0);
    assert_non_null(mfind(&m, "model.layers.6.transformer.shared_head.norm.weight"));
    assert_null(mfind(&m, "model.layers.6.moe.gate.weight"));
    assert_null(mfind(&m, "model.layers.6.shared_head.head.weight"));
    assert_null(mfind(&m, "model.layers.6.embed_tokens.weight"));
    assert_null(mfind(&m, "model.layers.3.mlp.switch_mlp.gate_proj.weight"));
    mstats(&m, "model.layers.2.post_attention_layernorm", 1, 128, &mean, &std);
    assert_true(fabs(mean) < 0.01 && std > 0.005 && std < 0.05);
    model_close(&m);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),       cmocka_unit_test(test_recipe_bits),
        cmocka_unit_test(test_validate),      cmocka_unit_test(test_tiny_mlx),
        cmocka_unit_test(test_tiny_hf),       cmocka_unit_test(test_mixed_recipes),
        cmocka_unit_test(test_determinism),   cmocka_unit_test(test_forward_finite),
        cmocka_unit_test(test_route_skew),    cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_step_presets),  cmocka_unit_test(test_step_layouts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

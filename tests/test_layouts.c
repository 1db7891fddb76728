/* test_layouts.c - the expert layout table (src/model/expert_layout.c) on
 * checkpoints written here tensor by tensor: a Mixtral-style per-expert layout
 * (block_sparse_moe.experts.<e>.w1/w2/w3) and a transformers-v5 fused layout
 * with linear biases (experts.gate_up_proj [E, 2I, D] + down_proj, and their
 * _bias tensors). For each, the byte range of every part of every expert must
 * be exactly where the tensor offsets say, the parts numbered in canonical
 * order, every expert tensor kept out of the resident set; a layer mixing
 * formats, and an expert past n_routed_experts, are errors. Also: the budget
 * plan and the expert cache agree on the slot count at an I/O alignment above
 * 4 KiB (the split is made once, by the plan). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "expert_cache.h"
#include "model.h"
#include "ms_test.h"
#include "plan.h"

enum { D = 8, I = 4, E = 3, K = 2, V = 16 };

/* A checkpoint in the making: tensors with sequential data offsets. */
typedef struct ckpt {
    char hdr[16384];
    size_t hl;
    uint64_t off;
    struct {
        char name[128];
        uint64_t begin, len;
    } t[64];
    int n;
} ckpt;

static void add(ckpt *c, const char *name, const char *dtype, int es, int ndim, const int64_t *shape)
{
    uint64_t n = (uint64_t)es;
    char sh[64] = "";
    size_t sl = 0;
    for (int i = 0; i < ndim; i++) {
        n *= (uint64_t)shape[i];
        sl += (size_t)snprintf(sh + sl, sizeof sh - sl, "%s%lld", i ? "," : "", (long long)shape[i]);
    }
    c->hl += (size_t)snprintf(c->hdr + c->hl, sizeof c->hdr - c->hl, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],"
                              "\"data_offsets\":[%llu,%llu]}", c->hl > 1 ? "," : "", name, dtype, sh,
                              (unsigned long long)c->off, (unsigned long long)(c->off + n));
    snprintf(c->t[c->n].name, sizeof c->t[c->n].name, "%s", name);
    c->t[c->n].begin = c->off;
    c->t[c->n].len = n;
    c->n++;
    c->off += n;
}

/* Write dir/model.safetensors and dir/config.json; returns the data start. */
static uint64_t finish(ckpt *c, const char *dir)
{
    c->hl += (size_t)snprintf(c->hdr + c->hl, sizeof c->hdr - c->hl, "}");
    while (c->hl % 8) c->hdr[c->hl++] = ' ';
    char *p = mst_fmt("%s/model.safetensors", dir);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)((uint64_t)c->hl >> (8 * i));
    fwrite(lb, 1, 8, f);
    fwrite(c->hdr, 1, c->hl, f);
    for (uint64_t i = 0; i < c->off; i++) fputc((int)(i * 13 % 251), f);
    fclose(f);
    free(p);
    p = mst_fmt("%s/config.json", dir);
    f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "{\"model_type\":\"deepseek_v3\",\"vocab_size\":%d,\"hidden_size\":%d,\"intermediate_size\":%d,"
               "\"moe_intermediate_size\":%d,\"num_hidden_layers\":2,\"num_attention_heads\":2,"
               "\"n_routed_experts\":%d,\"num_experts_per_tok\":%d,\"kv_lora_rank\":4,\"qk_nope_head_dim\":4,"
               "\"qk_rope_head_dim\":2,\"v_head_dim\":4,\"first_k_dense_replace\":1}",
            V, D, 2 * I, I, E, K);
    fclose(f);
    free(p);
    return 8 + c->hl;
}

static const char *tag_name(const ckpt *c, const char *name, uint64_t *begin, uint64_t *len)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->t[i].name, name)) {
            *begin = c->t[i].begin;
            *len = c->t[i].len;
            return name;
        }
    fail_msg("no tensor %s", name);
    return NULL;
}

static void expect_range(const ms_range *r, uint64_t data0, uint64_t begin, uint64_t len)
{
    assert_int_equal(r->file, 0);
    assert_int_equal(r->offset, data0 + begin);
    assert_int_equal(r->len, len);
}

static void test_mixtral(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("layout-mixtral");
    ckpt c = {.hdr = "{", .hl = 1};
    int64_t emb[2] = {V, D}, w13[2] = {I, D}, w2[2] = {D, I};
    add(&c, "model.embed_tokens.weight", "F32", 4, 2, emb);
    char n[128];
    for (int e = 0; e < E; e++) {
        /* stored in an order that differs from the projection order on purpose */
        snprintf(n, sizeof n, "model.layers.1.block_sparse_moe.experts.%d.w2.weight", e);
        add(&c, n, "BF16", 2, 2, w2);
        snprintf(n, sizeof n, "model.layers.1.block_sparse_moe.experts.%d.w1.weight", e);
        add(&c, n, "BF16", 2, 2, w13);
        snprintf(n, sizeof n, "model.layers.1.block_sparse_moe.experts.%d.w3.weight", e);
        add(&c, n, "BF16", 2, 2, w13);
    }
    uint64_t data0 = finish(&c, dir);
    ms_model m;
    ms_err err = {0};
    if (ms_model_open(dir, &m, &err) < 0) fail_msg("open: %s", err.msg);
    assert_int_equal(m.n_moe_layers, 1);
    assert_int_equal(m.layout->id, MS_EXPERTS_MIXTRAL);
    assert_string_equal(m.moe[0].module, "model.layers.1.block_sparse_moe");
    assert_int_equal(m.n_parts, 3); /* bf16: gate (w1), up (w3), down (w2) weights */
    const ms_moe_layer *ml = ms_model_moe(&m, 1);
    assert_int_equal(ml->proj[MS_PROJ_GATE].part[MS_PART_W], 0);
    assert_int_equal(ml->proj[MS_PROJ_UP].part[MS_PART_W], 1);
    assert_int_equal(ml->proj[MS_PROJ_DOWN].part[MS_PART_W], 2);
    assert_int_equal(ml->proj[MS_PROJ_GATE].part[MS_PART_SCALES], -1);
    assert_int_equal(ml->proj[MS_PROJ_DOWN].fmt.rows, D);
    assert_int_equal(ml->proj[MS_PROJ_DOWN].fmt.cols, I);
    for (int e = 0; e < E; e++) {
        const ms_range *r = ms_expert_ranges(&m.experts, 0, e);
        uint64_t b, l;
        static const char *w[3] = {"w1", "w3", "w2"};
        for (int p = 0; p < 3; p++) {
            snprintf(n, sizeof n, "model.layers.1.block_sparse_moe.experts.%d.%s.weight", e, w[p]);
            tag_name(&c, n, &b, &l);
            expect_range(&r[p], data0, b, l);
        }
    }
    assert_int_equal(ml->expert_bytes, (2 * I * D + D * I) * 2);
    assert_int_equal(m.resident_bytes, V * D * 4); /* only the embedding */
    assert_int_equal(m.expert_bytes_total, (uint64_t)E * ml->expert_bytes);
    ms_model_close(&m);

    /* an expert past n_routed_experts is an error naming the layer */
    int64_t extra[2] = {I, D};
    ckpt c3 = {.hdr = "{", .hl = 1};
    add(&c3, "model.embed_tokens.weight", "F32", 4, 2, emb);
    for (int e = 0; e <= E; e++)
        for (int p = 1; p <= 3; p++) {
            snprintf(n, sizeof n, "model.layers.1.block_sparse_moe.experts.%d.w%d.weight", e, p);
            add(&c3, n, "BF16", 2, 2, p == 2 ? w2 : extra);
        }
    finish(&c3, dir);
    assert_true(ms_model_open(dir, &m, &err) < 0);
    assert_non_null(strstr(err.msg, "more experts than n_routed_experts"));
    free(dir);
}

static void test_fused_with_biases(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("layout-fused");
    ckpt c = {.hdr = "{", .hl = 1};
    int64_t emb[2] = {V, D}, gu[3] = {E, 2 * I, D}, dn[3] = {E, D, I}, gub[2] = {E, 2 * I}, dnb[2] = {E, D};
    add(&c, "model.embed_tokens.weight", "F32", 4, 2, emb);
    add(&c, "model.layers.1.mlp.experts.down_proj_bias", "F32", 4, 2, dnb);
    add(&c, "model.layers.1.mlp.experts.gate_up_proj", "F32", 4, 3, gu);
    add(&c, "model.layers.1.mlp.experts.down_proj", "F32", 4, 3, dn);
    add(&c, "model.layers.1.mlp.experts.gate_up_proj_bias", "F32", 4, 2, gub);
    uint64_t data0 = finish(&c, dir);
    ms_model m;
    ms_err err = {0};
    if (ms_model_open(dir, &m, &err) < 0) fail_msg("open: %s", err.msg);
    assert_int_equal(m.layout->id, MS_EXPERTS_HF_FUSED);
    /* parts in canonical order: gate.w, gate.bias, up.w, up.bias, down.w, down.bias */
    assert_int_equal(m.n_parts, 6);
    const ms_moe_layer *ml = ms_model_moe(&m, 1);
    assert_int_equal(ml->proj[MS_PROJ_GATE].part[MS_PART_W], 0);
    assert_int_equal(ml->proj[MS_PROJ_GATE].part[MS_PART_BIAS], 1);
    assert_int_equal(ml->proj[MS_PROJ_UP].part[MS_PART_W], 2);
    assert_int_equal(ml->proj[MS_PROJ_UP].part[MS_PART_BIAS], 3);
    assert_int_equal(ml->proj[MS_PROJ_DOWN].part[MS_PART_W], 4);
    assert_int_equal(ml->proj[MS_PROJ_DOWN].part[MS_PART_BIAS], 5);
    uint64_t gb, gl, db, dl, gbb, gbl, dbb, dbl;
    tag_name(&c, "model.layers.1.mlp.experts.gate_up_proj", &gb, &gl);
    tag_name(&c, "model.layers.1.mlp.experts.down_proj", &db, &dl);
    tag_name(&c, "model.layers.1.mlp.experts.gate_up_proj_bias", &gbb, &gbl);
    tag_name(&c, "model.layers.1.mlp.experts.down_proj_bias", &dbb, &dbl);
    uint64_t half = (uint64_t)I * D * 4, bhalf = (uint64_t)I * 4;
    for (int e = 0; e < E; e++) {
        const ms_range *r = ms_expert_ranges(&m.experts, 0, e);
        expect_range(&r[0], data0, gb + (uint64_t)e * 2 * half, half);          /* gate rows of expert e */
        expect_range(&r[1], data0, gbb + (uint64_t)e * 2 * bhalf, bhalf);       /* gate bias */
        expect_range(&r[2], data0, gb + (uint64_t)e * 2 * half + half, half);   /* up rows */
        expect_range(&r[3], data0, gbb + (uint64_t)e * 2 * bhalf + bhalf, bhalf);
        expect_range(&r[4], data0, db + (uint64_t)e * (dl / E), dl / E);        /* down */
        expect_range(&r[5], data0, dbb + (uint64_t)e * (dbl / E), dbl / E);
    }
    assert_int_equal(ml->expert_bytes, 2 * half + 2 * bhalf + dl / E + dbl / E);
    assert_int_equal(m.resident_bytes, V * D * 4);
    /* an acquired expert's bias pointers are its bias parts */
    ms_expert_ptrs ep = {0};
    for (int p = 0; p < m.n_parts; p++) ep.p[p] = (const void *)(uintptr_t)(0x1000 * (p + 1));
    assert_ptr_equal(ms_expert_bias(ml, MS_PROJ_UP, &ep), (const void *)0x4000);
    assert_ptr_equal(ms_expert_mat(ml, MS_PROJ_DOWN, &ep).w, (const void *)0x5000);
    ms_model_close(&m);

    /* a bias whose shape disagrees is an error naming the tensor */
    ckpt c2 = {.hdr = "{", .hl = 1};
    int64_t bad[2] = {E, D + 1};
    add(&c2, "model.embed_tokens.weight", "F32", 4, 2, emb);
    add(&c2, "model.layers.1.mlp.experts.gate_up_proj", "F32", 4, 3, gu);
    add(&c2, "model.layers.1.mlp.experts.down_proj", "F32", 4, 3, dn);
    add(&c2, "model.layers.1.mlp.experts.down_proj_bias", "F32", 4, 2, bad);
    finish(&c2, dir);
    assert_true(ms_model_open(dir, &m, &err) < 0);
    assert_non_null(strstr(err.msg, "down_proj_bias"));
    free(dir);
}

/* The plan's split at a 16 KiB alignment is the cache's: same slots per class. */
static void test_plan_cache_align(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("layout-align");
    char *cmd = mst_fmt("%s synth --preset tiny --out %s --force >/dev/null 2>&1", MS_BIN, dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    ms_model m;
    ms_err err = {0};
    if (ms_model_open(dir, &m, &err) < 0) fail_msg("open: %s", err.msg);
    ms_plan p4, p16;
    ms_plan_opts o = {.budget = 0, .ctx = 256, .batch = 16, .threads = 1, .align = 16384};
    assert_int_equal(ms_plan_make(&m, &o, &p16, &err), 0);
    o.budget = p16.min_budget + (p16.all_fit_budget - p16.min_budget) / 2;
    assert_int_equal(ms_plan_make(&m, &o, &p16, &err), 0);
    assert_true(p16.fits);
    o.align = 4096;
    assert_int_equal(ms_plan_make(&m, &o, &p4, &err), 0);
    /* bigger aligned supersets: fewer slots for the same bytes */
    assert_true(p16.layout.cls[0].slot_bytes > p4.layout.cls[0].slot_bytes);
    assert_true(p16.expert_slots < p4.expert_slots);
    ms_cache *cache;
    ms_cache_opts co = {.layout = &p16.layout, .io_backend = "pread"};
    if (ms_cache_create(&m.experts, &co, &cache, &err) < 0) fail_msg("cache: %s", err.msg);
    ms_cache_stats st;
    ms_cache_get_stats(cache, &st);
    assert_int_equal(st.slots, p16.expert_slots);
    assert_int_equal(st.arena_bytes, p16.cache_used);
    ms_cache_destroy(cache);
    /* a layout planned for 4 KiB handed to I/O that must use 16 KiB is refused */
    co = (ms_cache_opts){.layout = &p4.layout, .io_backend = "pread", .io_min_align = 16384};
    assert_true(ms_cache_create(&m.experts, &co, &cache, &err) < 0);
    assert_non_null(strstr(err.msg, "budget plan used 4096"));
    ms_model_close(&m);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixtral),
        cmocka_unit_test(test_fused_with_biases),
        cmocka_unit_test(test_plan_cache_align),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

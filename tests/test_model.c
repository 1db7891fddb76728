/* test_model.c - the model store on crafted files: every kind of bad
 * safetensors / index / config.json gives an error that names the file and the
 * tensor or field, and nothing crashes. Also: the golden checkpoint opens with
 * the expected expert table, MTP layers are ignored, and config variants
 * (q_lora_rank null, rope_parameters, eos lists) parse. */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "deepseek_v3.h"
#include "config.h"
#include "model.h"
#include "ms_test.h"
#include "safetensors.h"

#define GOLDEN MS_TEST_DATA "/golden/ds3-tiny"

/* Write a safetensors file: header JSON + data_len bytes of data (pattern), or
 * a raw length field when hlen_override != 0. */
static void write_st(const char *path, const char *header, size_t data_len, uint64_t hlen_override)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t n = hlen_override ? hlen_override : strlen(header);
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(n >> (8 * i));
    fwrite(lb, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i * 7 % 251), f);
    fclose(f);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Open dir; expect failure whose message contains every needle. */
static void expect_tt_error(const char *dir, const char *n1, const char *n2)
{
    ms_tensor_table tt;
    ms_err err = {0};
    int rc = ms_tt_open_dir(dir, &tt, &err);
    if (rc >= 0) fail_msg("%s: expected an error containing '%s'", dir, n1);
    if (!strstr(err.msg, n1) || (n2 && !strstr(err.msg, n2)))
        fail_msg("message '%s' lacks '%s' / '%s'", err.msg, n1, n2 ? n2 : "");
    ms_tt_free(&tt);
}

static char *case_dir(const char *name)
{
    char *d = mst_tmpdir(name);
    assert_non_null(d);
    return d;
}

static void test_bad_safetensors(void **state)
{
    (void)state;
    struct {
        const char *name, *header;
        size_t data;
        uint64_t hlen;
        const char *needle, *needle2;
    } cases[] = {
        {"truncated", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, 0, "run past", "tensor a"},
        {"hdr_past_eof", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 100000, "past the end", NULL},
        {"hdr_huge", "{}", 0, (uint64_t)1 << 40, "implausible header length", NULL},
        {"overlap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24, 0, "overlap", NULL},
        {"past_data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}", 16, 0, "run past", "tensor a"},
        {"dtype_shape", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, 0, "needs 8", "tensor a"},
        {"bad_json", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}", 16, 0, "not valid JSON", NULL},
        {"dup_names",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0, "duplicate", NULL},
        {"unknown_dtype", "{\"a\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0, "unknown dtype", "tensor a"},
        {"neg_shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, 0, "shape[0]", NULL},
        {"bad_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, 0, "invalid data_offsets", NULL},
        {"not_object", "[1,2,3]", 0, 0, "does not start with", NULL},
        {"overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, 0,
         "overflow", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *d = case_dir(cases[i].name);
        char *p = mst_fmt("%s/model.safetensors", d);
        write_st(p, cases[i].header, cases[i].data, cases[i].hlen);
        expect_tt_error(d, cases[i].needle, cases[i].needle2);
        expect_tt_error(d, "model.safetensors", NULL); /* the file is named */
        free(p);
        free(d);
    }
    /* too small to hold the length */
    char *d = case_dir("tiny_file");
    char *p = mst_fmt("%s/model.safetensors", d);
    write_text(p, "abc");
    expect_tt_error(d, "too small", NULL);
    free(p);
    free(d);
    /* empty directory */
    d = case_dir("empty_dir");
    expect_tt_error(d, "no model.safetensors", NULL);
    free(d);
}

static void test_index(void **state)
{
    (void)state;
    const char *h1 = "{\"__metadata__\":{\"format\":\"mlx\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    const char *h2 = "{\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}";
    char *d = case_dir("index_ok");
    char *p1 = mst_fmt("%s/model-00001-of-00002.safetensors", d), *p2 = mst_fmt("%s/model-00002-of-00002.safetensors", d);
    write_st(p1, h1, 8, 0);
    write_st(p2, h2, 8, 0);
    char *ip = mst_fmt("%s/model.safetensors.index.json", d);
    write_text(ip, "{\"metadata\":{\"total_size\":16},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                   "\"b\":\"model-00002-of-00002.safetensors\"}}");
    ms_tensor_table tt;
    ms_err err = {0};
    assert_int_equal(ms_tt_open_dir(d, &tt, &err), 0);
    assert_int_equal(tt.n_files, 2);
    const ms_tensor *b = ms_tt_find(&tt, "b");
    assert_non_null(b);
    assert_int_equal(b->file, 1);
    assert_int_equal(b->offset, 8 + strlen(h2));
    assert_int_equal(b->ndim, 2);
    assert_string_equal(tt.files[0].format, "mlx");
    uint16_t buf[4];
    assert_int_equal(ms_tt_read(&tt, b, buf, false, &err), 0);
    ms_tt_free(&tt);
    /* index names a tensor the shard lacks */
    write_text(ip, "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00002-of-00002.safetensors\"}}");
    expect_tt_error(d, "no such tensor", "c");
    /* index names a missing shard */
    write_text(ip, "{\"weight_map\":{\"a\":\"model-00003-of-00003.safetensors\"}}");
    expect_tt_error(d, "model-00003-of-00003.safetensors", "cannot open");
    /* path traversal */
    write_text(ip, "{\"weight_map\":{\"a\":\"../x.safetensors\"}}");
    expect_tt_error(d, "invalid file", NULL);
    /* tensor in the wrong shard */
    write_text(ip, "{\"weight_map\":{\"a\":\"model-00002-of-00002.safetensors\",\"b\":\"model-00002-of-00002.safetensors\"}}");
    expect_tt_error(d, "no such tensor", NULL);
    /* same tensor in two shards */
    write_st(p2, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0);
    write_text(ip, "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"x\":\"model-00002-of-00002.safetensors\"}}");
    expect_tt_error(d, "another shard", NULL);
    /* bad index JSON */
    write_text(ip, "{\"weight_map\":");
    expect_tt_error(d, "model.safetensors.index.json", NULL);
    free(p1);
    free(p2);
    free(ip);
    free(d);
}

static const char *BASE_CFG =
    "{\"model_type\":\"deepseek_v3\",\"vocab_size\":259,\"hidden_size\":64,\"intermediate_size\":128,"
    "\"moe_intermediate_size\":32,\"num_hidden_layers\":4,\"num_attention_heads\":4,\"n_shared_experts\":2,"
    "\"n_routed_experts\":16,\"routed_scaling_factor\":2.5,\"kv_lora_rank\":32,\"q_lora_rank\":32,"
    "\"qk_rope_head_dim\":8,\"v_head_dim\":16,\"qk_nope_head_dim\":16,\"n_group\":4,\"topk_group\":2,"
    "\"num_experts_per_tok\":4,\"first_k_dense_replace\":1,\"norm_topk_prob\":true,\"rms_norm_eps\":1e-6,"
    "\"rope_theta\":10000.0,\"max_position_embeddings\":256,"
    "\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4.0,\"original_max_position_embeddings\":64,\"mscale\":1.0,"
    "\"mscale_all_dim\":1.0},\"eos_token_id\":[1,2]%s}";

static int parse_cfg(const char *extra, ms_config *c, ms_err *err)
{
    char *j = mst_fmt(BASE_CFG, extra);
    int rc = ms_config_parse(j, "config.json", c, err);
    free(j);
    return rc;
}

static void test_config(void **state)
{
    (void)state;
    ms_config c;
    ms_err err = {0};
    assert_int_equal(parse_cfg("", &c, &err), 0);
    assert_int_equal(c.n_eos, 2);
    const ms_ds3_config *d = ms_ds3_config_of(&c);
    assert_non_null(d);
    assert_string_equal(c.family->name, "deepseek_v3");
    assert_int_equal(d->rope.type, MS_ROPE_YARN);
    assert_int_equal(ms_config_n_moe_layers(&c), 3);
    assert_true(fabs(ms_ds3_softmax_scale(d) - pow(24, -0.5) * pow(1 + 0.1 * log(4), 2)) < 1e-12);
    ms_config_free(&c);
    /* q_lora_rank null, rope_parameters (transformers v5) */
    assert_int_equal(parse_cfg(",\"q_lora_rank\":null,\"rope_scaling\":null,\"rope_parameters\":{\"rope_theta\":50000,"
                               "\"rope_type\":\"yarn\",\"factor\":8,\"original_max_position_embeddings\":32}",
                               &c, &err),
                     0);
    d = ms_ds3_config_of(&c);
    assert_int_equal(d->q_lora_rank, 0);
    assert_true(d->rope.theta == 10000.0); /* top-level rope_theta wins */
    assert_true(d->rope.factor == 8.0);
    assert_int_equal(d->rope.orig_max_pos, 32);
    ms_config_free(&c);
    /* deepseek_v3 keeps 1e-6 for the latent norms, glm uses the config eps */
    assert_int_equal(parse_cfg(",\"rms_norm_eps\":1e-5", &c, &err), 0);
    assert_true(ms_ds3_config_of(&c)->latent_norm_eps == 1e-6);
    ms_config_free(&c);
    assert_int_equal(parse_cfg(",\"rms_norm_eps\":1e-5,\"model_type\":\"glm4_moe_lite\"", &c, &err), 0);
    assert_true(ms_ds3_config_of(&c)->latent_norm_eps == 1e-5);
    assert_true(ms_ds3_config_of(&c)->norm_topk_prob);
    ms_config_free(&c);
    struct {
        const char *extra, *needle;
    } bad[] = {
        {",\"num_experts_per_tok\":17", "exceeds n_routed_experts"},
        {",\"n_group\":3", "not divisible by n_group"},
        {",\"topk_group\":5", "exceeds n_group"},
        {",\"num_experts_per_tok\":9", "topk_group groups"},
        {",\"hidden_size\":\"big\"", "\"hidden_size\" must be an integer"},
        {",\"hidden_size\":-3", "\"hidden_size\""},
        {",\"model_type\":\"llama\"", "model_type \"llama\" is not supported"},
        {",\"scoring_func\":\"softmax\"", "scoring_func"},
        {",\"topk_method\":\"greedy\"", "topk_method"},
        {",\"eos_token_id\":300", "outside the vocabulary"},
        {",\"rope_scaling\":{\"type\":\"ntk\",\"factor\":2}", "unsupported rope scaling"},
        {",\"qk_rope_head_dim\":7", "must be even"},
        {",\"kv_lora_rank\":null", "missing field \"kv_lora_rank\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms_err e = {0};
        if (parse_cfg(bad[i].extra, &c, &e) >= 0) fail_msg("case %zu (%s) parsed", i, bad[i].extra);
        if (!strstr(e.msg, bad[i].needle) || !strstr(e.msg, "config.json"))
            fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, bad[i].needle);
    }
    ms_err e = {0};
    assert_true(ms_config_parse("{\"model_type\":", "x/config.json", &c, &e) < 0);
    assert_non_null(strstr(e.msg, "invalid JSON"));
}

static void test_qconfig(void **state)
{
    (void)state;
    ms_qconfig q;
    ms_err err = {0};
    const char *j = "{\"quantization\":{\"group_size\":64,\"bits\":4,\"mode\":\"affine\","
                    "\"model.layers.0.self_attn.q_a_proj\":{\"group_size\":32,\"bits\":8},"
                    "\"model.layers.3.mlp.gate\":false,\"lm_head\":true},"
                    "\"quantization_config\":{\"group_size\":64,\"bits\":4}}";
    assert_int_equal(ms_qconfig_parse(j, "config.json", &q, &err), 0);
    ms_qparams p;
    assert_int_equal(ms_qconfig_lookup(&q, "model.layers.0.self_attn.q_a_proj", &p), 1);
    assert_int_equal(p.bits, 8);
    assert_int_equal(p.group_size, 32);
    assert_int_equal(ms_qconfig_lookup(&q, "language_model.model.layers.0.self_attn.q_a_proj", &p), 1);
    assert_int_equal(ms_qconfig_lookup(&q, "model.layers.3.mlp.gate", &p), 1);
    assert_false(p.quantized);
    assert_int_equal(ms_qconfig_lookup(&q, "lm_head", &p), 1);
    assert_true(p.quantized && p.bits == 4);
    assert_int_equal(ms_qconfig_lookup(&q, "model.embed_tokens", &p), 0);
    assert_int_equal(p.bits, 4);
    ms_qconfig_free(&q);
    /* quantization_config only (HF UI copy) and foreign fp8 */
    assert_int_equal(ms_qconfig_parse("{\"quantization_config\":{\"bits\":8,\"group_size\":32}}", "c", &q, &err), 0);
    assert_true(q.present && q.def.bits == 8);
    ms_qconfig_free(&q);
    assert_int_equal(ms_qconfig_parse("{\"quantization_config\":{\"quant_method\":\"fp8\"}}", "c", &q, &err), 0);
    assert_false(q.present);
    assert_string_equal(q.foreign, "fp8");
    ms_qconfig_free(&q);
}

static void test_golden_opens(void **state)
{
    (void)state;
    ms_model m;
    ms_err err = {0};
    assert_int_equal(ms_model_open(GOLDEN, &m, &err), 0);
    assert_int_equal(m.n_moe_layers, 3);
    assert_non_null(m.layout);
    assert_int_equal(m.layout->id, MS_EXPERTS_HF);
    assert_int_equal(m.n_parts, 3); /* f32: gate, up, down weights */
    const ms_moe_layer *ml = ms_model_moe(&m, 1);
    assert_non_null(ml);
    assert_null(ms_model_moe(&m, 0));
    /* expert 5 of layer 2 = its three f32 tensors */
    ml = ms_model_moe(&m, 2);
    const ms_tensor *t = ms_tt_find(&m.tt, "model.layers.2.mlp.experts.5.up_proj.weight");
    const ms_range *r = &ml->ranges[5 * m.n_parts + 1];
    assert_int_equal(ml->proj[MS_PROJ_UP].part[MS_PART_W], 1);
    assert_int_equal(ml->proj[MS_PROJ_UP].part[MS_PART_SCALES], -1);
    assert_int_equal(r->offset, t->offset);
    assert_int_equal(r->len, 32 * 64 * 4);
    assert_int_equal(ml->expert_bytes, 3 * 32 * 64 * 4);
    assert_int_equal(m.expert_bytes_total, 3ull * 16 * 3 * 32 * 64 * 4);
    assert_int_equal(m.resident_bytes + m.expert_bytes_total, 1850056 - 8 - m.tt.files[0].data_start + 8);
    ms_model_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_safetensors), cmocka_unit_test(test_index),      cmocka_unit_test(test_config),
        cmocka_unit_test(test_qconfig),         cmocka_unit_test(test_golden_opens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_quantize.c - `moestream quantize` (HF float -> MLX affine):
 *   - the golden checkpoint quantized at 8 and 4 bits (groups 32 and 64) loads
 *     from the directory alone and its logits stay close to the golden ones
 *     (errors reported per bit width; thresholds below are what random weights
 *     at these widths give, with margin);
 *   - structure: experts stacked into switch_mlp, kv_b_proj split into
 *     embed_q / unembed_out exactly (float when not quantizable), router float,
 *     config "quantization" == "quantization_config";
 *   - every quantized module dequantizes to within one quantization step of the
 *     source rows;
 *   - an HF synth model with an MTP layer converts (MTP dropped) and mixed
 *     recipes write per-module overrides the loader accepts;
 *   - the bit map of every recipe (mixed-8-5, dq4, mlx-lm's mixed_3_6) on an
 *     8-layer model, module by module against tables written out here;
 *   - the output is byte-identical, tensor by tensor, to the independent
 *     quantizer tests/ref/ckpt_write.py (numpy, from mlx-quant.md) for uniform
 *     and mixed recipes (tests/ref/compare_ckpt.py; needs python3-numpy). */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "engine.h"
#include "model.h"
#include "ms_test.h"
#include "quant.h"
#include "quantize.h"
#include "resident.h"
#include "synth.h"

#define GOLDEN MS_TEST_DATA "/golden/ds3-tiny"

static double *golden_logits(int *n, int *V, int *toks)
{
    char *text = mst_slurp(GOLDEN "/ref.json", NULL);
    json_object *r = json_tokener_parse(text), *tk, *lg;
    free(text);
    json_object_object_get_ex(r, "tokens", &tk);
    json_object_object_get_ex(r, "logits", &lg);
    *n = (int)json_object_array_length(tk);
    *V = (int)json_object_array_length(json_object_array_get_idx(lg, 0));
    double *out = malloc(sizeof(double) * (size_t)*n * *V);
    for (int p = 0; p < *n; p++) {
        toks[p] = json_object_get_int(json_object_array_get_idx(tk, p));
        json_object *row = json_object_array_get_idx(lg, p);
        for (int v = 0; v < *V; v++) out[(size_t)p * *V + v] = json_object_get_double(json_object_array_get_idx(row, v));
    }
    json_object_put(r);
    return out;
}

static void quantize_to(const char *in, const char *out, int bits, int gs, const char *recipe)
{
    ms_quantize_opts o = {.bits = bits, .group_size = gs, .recipe = recipe, .dtype = MS_DT_COUNT, .shard_bytes = 256 << 10};
    ms_quantize_result r;
    ms_err err = {0};
    if (ms_quantize(in, out, &o, &r, &err) < 0) fail_msg("quantize: %s", err.msg);
}

static void test_golden_logits_per_width(void **state)
{
    (void)state;
    int n, V, toks[64];
    double *ref = golden_logits(&n, &V, toks);
    struct {
        int bits, gs;
        double max_err;  /* relative to max(1,|ref|) */
        int min_argmax;  /* positions whose top-1 matches */
    } cases[] = {{8, 32, 0.1, 16}, {8, 64, 0.6, 14}, {4, 32, 1.6, 8}, {4, 64, 1.8, 8}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *dir = mst_tmpdir("quant_golden");
        quantize_to(GOLDEN, dir, cases[c].bits, cases[c].gs, "uniform");
        ms_engine_opts o = {.threads = 2, .ctx = 32, .batch = 1, .io = "uring", .ram = 1ull << 30};
        ms_engine *e;
        ms_err err = {0};
        if (ms_engine_open(dir, &o, &e, &err) < 0) fail_msg("%s", err.msg);
        float *lg = malloc(sizeof(float) * (size_t)V);
        double worst = 0;
        int match = 0;
        for (int p = 0; p < n; p++) {
            assert_int_equal(ms_engine_eval(e, toks + p, 1, lg, false, &err), 0);
            int am = 0, ar = 0;
            for (int v = 0; v < V; v++) {
                double d = fabs(lg[v] - ref[(size_t)p * V + v]) / fmax(1.0, fabs(ref[(size_t)p * V + v]));
                if (d > worst) worst = d;
                if (lg[v] > lg[am]) am = v;
                if (ref[(size_t)p * V + v] > ref[(size_t)p * V + ar]) ar = v;
            }
            match += am == ar;
        }
        print_message("MLX %d-bit g%d: max rel logit error %.4f, top-1 equal at %d/%d positions\n", cases[c].bits,
                      cases[c].gs, worst, match, n);
        assert_true(worst <= cases[c].max_err);
        assert_true(match >= cases[c].min_argmax);
        free(lg);
        ms_engine_close(e);
        free(dir);
    }
    free(ref);
}

static json_object *load_json(const char *dir, const char *name)
{
    char *p = mst_fmt("%s/%s", dir, name);
    json_object *o = json_object_from_file(p);
    free(p);
    assert_non_null(o);
    return o;
}

static void test_structure_and_dequant(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("quant_struct");
    quantize_to(GOLDEN, dir, 8, 32, "uniform");
    ms_model src, q;
    ms_err err = {0};
    assert_int_equal(ms_model_open(GOLDEN, &src, &err), 0);
    assert_int_equal(ms_model_open(dir, &q, &err), 0);
    assert_int_equal(q.layout->id, MS_EXPERTS_MLX_STACKED);
    assert_true(q.tt.n_files > 1); /* 256 KiB shards */
    assert_non_null(ms_tt_find(&q.tt, "model.layers.1.mlp.switch_mlp.gate_proj.scales"));
    assert_null(ms_tt_find(&q.tt, "model.layers.1.self_attn.kv_b_proj.weight"));
    assert_null(ms_tt_find(&q.tt, "model.layers.1.mlp.gate.scales")); /* router stays float */
    const ms_tensor *bias = ms_tt_find(&q.tt, "model.layers.1.mlp.gate.e_score_correction_bias");
    assert_non_null(bias);
    assert_int_equal(bias->dtype, MS_DT_F32);
    json_object *cfg = load_json(dir, "config.json"), *qa, *qb, *bits;
    assert_true(json_object_object_get_ex(cfg, "quantization", &qa));
    assert_true(json_object_object_get_ex(cfg, "quantization_config", &qb));
    assert_true(json_object_equal(qa, qb));
    assert_true(json_object_object_get_ex(qa, "bits", &bits));
    assert_int_equal(json_object_get_int(bits), 8);
    json_object_put(cfg);
    ms_resident rs, rq;
    assert_int_equal(ms_resident_load(&src, &rs, NULL, NULL, &err), 0);
    assert_int_equal(ms_resident_load(&q, &rq, NULL, NULL, &err), 0);
    /* embed_q[h] = W_UK[h]^T exactly (nope = 16 is not a multiple of 32: stays f32) */
    const ms_tensor *kvb = ms_tt_find(&src.tt, "model.layers.2.self_attn.kv_b_proj.weight");
    const ms_tensor *eq = ms_tt_find(&q.tt, "model.layers.2.self_attn.embed_q.weight");
    assert_int_equal(eq->dtype, MS_DT_F32);
    const float *K = ms_resident_data(&rs, &src, kvb), *EQ = ms_resident_data(&rq, &q, eq);
    for (int h = 0; h < 4; h++)
        for (int r = 0; r < 32; r++)
            for (int i = 0; i < 16; i++) assert_true(EQ[(h * 32 + r) * 16 + i] == K[(h * 32 + i) * 32 + r]);
    /* quantized modules dequantize within one step of the source */
    const char *mods[] = {"model.layers.0.self_attn.q_a_proj", "model.layers.3.mlp.shared_experts.up_proj", "lm_head"};
    const ms_kern *kern = ms_kern_select(false);
    for (int i = 0; i < 3; i++) {
        char wn[128];
        snprintf(wn, sizeof wn, "%s.weight", mods[i]);
        const ms_tensor *sw = ms_tt_find(&src.tt, wn);
        ms_linear l;
        assert_int_equal(ms_model_linear(&q, mods[i], 0, sw->shape[0], sw->shape[1], &l, &err), 0);
        assert_int_equal(l.type, MS_WT_AFFINE);
        assert_int_equal(l.bits, 8);
        ms_mat mt = ms_linear_mat(&l, 0, ms_resident_data(&rq, &q, l.w), ms_resident_data(&rq, &q, l.scales),
                                  ms_resident_data(&rq, &q, l.biases));
        const float *W = ms_resident_data(&rs, &src, sw);
        float *row = malloc(sizeof(float) * (size_t)mt.cols);
        for (int64_t r = 0; r < mt.rows; r++) {
            ms_mat_get_row(kern, &mt, r, row);
            for (int64_t c = 0; c < mt.cols; c++) {
                float s = fabsf(ms_sb_get(mt.scales, mt.sb_dtype, r * (mt.cols / 32) + c / 32));
                assert_true(fabsf(row[c] - W[r * mt.cols + c]) <= s * 1.001f + 1e-6f);
            }
        }
        free(row);
    }
    ms_resident_free(&rs);
    ms_resident_free(&rq);
    ms_model_close(&src);
    ms_model_close(&q);
    free(dir);
}

static void test_hf_synth_with_mtp_and_recipes(void **state)
{
    (void)state;
    char *hf = mst_synth_hf("quant_hf", 0, 1, 3);
    ms_err err = {0};
    const char *recipes[] = {"uniform", "mixed-8-5", "dq4", "mixed_3_6"};
    for (int i = 0; i < 4; i++) {
        char *out = mst_tmpdir("quant_hf_out");
        quantize_to(hf, out, 4, 64, recipes[i]);
        ms_model m;
        if (ms_model_open(out, &m, &err) < 0) fail_msg("%s: %s", recipes[i], err.msg);
        assert_null(ms_tt_find(&m.tt, "model.layers.4.eh_proj.weight")); /* MTP dropped */
        assert_non_null(ms_tt_find(&m.tt, "model.layers.3.mlp.switch_mlp.down_proj.weight"));
        if (!strcmp(recipes[i], "mixed-8-5")) {
            assert_int_equal(ms_model_moe(&m, 2)->proj[0].fmt.bits, 5);
            ms_linear l;
            assert_int_equal(ms_model_linear(&m, "model.layers.0.self_attn.o_proj", 0, 128, 4 * 32, &l, &err), 0);
            assert_int_equal(l.bits, 8);
        }
        ms_model_close(&m);
        /* and it runs */
        char *errs = NULL;
        int rc = mst_run(NULL, &errs, "%s run --model %s --tokens 1,2,3 -n 4 --temp 0 --quiet", MS_BIN, out);
        if (rc != 0) fail_msg("%s: %s", recipes[i], errs);
        free(errs);
        free(out);
    }
    /* refuses an already quantized checkpoint, and a bad recipe */
    char *out2 = mst_tmpdir("quant_hf_out2");
    char *src2 = mst_tmpdir("quant_hf_q");
    quantize_to(hf, src2, 4, 64, "uniform");
    ms_quantize_opts qo = {.bits = 4, .group_size = 64, .recipe = "uniform", .dtype = MS_DT_COUNT};
    ms_err e2 = {0};
    assert_true(ms_quantize(src2, out2, &qo, NULL, &e2) < 0);
    qo.recipe = "mixed_7_9";
    ms_err e3 = {0};
    assert_true(ms_quantize(hf, out2, &qo, NULL, &e3) < 0);
    assert_non_null(strstr(e3.msg, "--recipe"));
    free(out2);
    free(src2);
    free(hf);
}

/* An 8-layer HF bf16 model with an MTP layer (layer 0 dense, 1-7 MoE). */
static char *hf8_model(void) { return mst_synth_hf("quant_hf8", 8, 1, 3); }

/* Layer index of a module path ("model.layers.N....", else -1). */
static int module_layer(const char *mod)
{
    int l;
    return sscanf(mod, "model.layers.%d.", &l) == 1 ? l : -1;
}

static bool has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

/* The recipes as their documentation states them, for this 8-layer model. */
static int expected_bits(const char *recipe, const char *mod)
{
    int l = module_layer(mod);
    bool expert = has(mod, ".switch_mlp.") || has(mod, ".shared_experts."), down = has(mod, "down_proj");
    if (!strcmp(recipe, "mixed-8-5")) return has(mod, ".switch_mlp.") ? 5 : 8;
    if (!strcmp(recipe, "dq4")) {
        if (!expert) return 8;
        if (!down) return 4;
        static const int dq4_down[8] = {0, 6, 6, 6, 6, 5, 4, 4}; /* < 5: 6; every 5th: 5 */
        return dq4_down[l];
    }
    /* mixed_3_6, 8 layers: high bits in layers 0 (< 8/8), 7 (>= 7*8/8), 3 and 6
     * ((i - 1) % 3 == 2), for down_proj and v_*_proj (here kv_a_proj_with_mqa) */
    bool more = l == 0 || l == 3 || l == 6 || l == 7;
    if (has(mod, "lm_head")) return 6;
    if (more && (down || has(mod, "kv_a_proj_with_mqa"))) return 6;
    return 3;
}

static void test_recipe_bit_maps(void **state)
{
    (void)state;
    char *hf = hf8_model();
    const char *recipes[] = {"mixed-8-5", "dq4", "mixed_3_6"};
    for (int i = 0; i < 3; i++) {
        char *out = mst_tmpdir("quant_bitmap");
        quantize_to(hf, out, 4, 64, recipes[i]);
        json_object *cfg = load_json(out, "config.json"), *q;
        assert_true(json_object_object_get_ex(cfg, "quantization", &q));
        ms_model m;
        ms_err err = {0};
        assert_int_equal(ms_model_open(out, &m, &err), 0);
        int checked = 0, hist[9] = {0};
        for (int t = 0; t < m.tt.n_tensors; t++) {
            const char *nm = m.tt.tensors[t].name;
            size_t l = strlen(nm);
            if (l < 8 || strcmp(nm + l - 7, ".scales")) continue;
            char mod[256];
            snprintf(mod, sizeof mod, "%.*s", (int)(l - 7), nm);
            json_object *e, *b;
            if (!json_object_object_get_ex(q, mod, &e) || !json_object_object_get_ex(e, "bits", &b))
                fail_msg("%s: quantized module %s has no config entry", recipes[i], mod);
            int want = expected_bits(recipes[i], mod), got = json_object_get_int(b);
            if (got != want) fail_msg("%s: %s is %d-bit, the recipe says %d", recipes[i], mod, got, want);
            /* and the packed weight has that width: words * 32 / bits = input width */
            char wn[300];
            snprintf(wn, sizeof wn, "%s.weight", mod);
            const ms_tensor *w = ms_tt_find(&m.tt, wn), *s = &m.tt.tensors[t];
            assert_non_null(w);
            assert_int_equal(w->shape[w->ndim - 1] * 32, s->shape[s->ndim - 1] * 64 * want);
            hist[want]++;
            checked++;
        }
        print_message("%s: %d modules, bits 3:%d 4:%d 5:%d 6:%d 8:%d\n", recipes[i], checked, hist[3], hist[4],
                      hist[5], hist[6], hist[8]);
        /* embed + 8 x (q_a, q_b, kv_a, embed_q, unembed_out, o) + dense 3 + 7 x (shared 3 + routed 3) + lm_head */
        assert_int_equal(checked, 1 + 8 * 6 + 3 + 7 * 6 + 1);
        ms_model_close(&m);
        json_object_put(cfg);
        free(out);
    }
    free(hf);
}

/* moestream quantize == tests/ref/ckpt_write.py, byte for byte per tensor, with the
 * same config (compare_ckpt.py), for uniform widths and every kind of recipe. */
static void test_matches_independent_quantizer(void **state)
{
    (void)state;
    if (!mst_have_numpy()) MST_SKIP("/usr/bin/python3 with numpy not found (python3-numpy)");
    char *hf = hf8_model();
    const char *args[] = {"--bits 4 --group-size 64", "--bits 3 --group-size 128", "--bits 8 --group-size 32",
                          "--recipe mixed-8-5", "--recipe dq4", "--recipe mixed_3_6", "--recipe mixed_2_6 --group-size 32"};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        char *a = mst_tmpdir("quant_cmp_c"), *b = mst_tmpdir("quant_cmp_py");
        char *out = NULL, *errs = NULL;
        int rc = mst_run(&out, &errs,
                         "%s quantize %s %s %s >/dev/null && %s %s/../ref/ckpt_write.py %s %s %s --shard-size 1000000000 && "
                         "%s %s/../ref/compare_ckpt.py %s %s",
                         MS_BIN, hf, a, args[i], MST_PYTHON, MS_TEST_DATA, hf, b, args[i], MST_PYTHON, MS_TEST_DATA, a,
                         b);
        print_message("%s: %s%s", args[i], out ? out : "", rc ? errs : "");
        assert_int_equal(rc, 0);
        assert_non_null(strstr(out, "identical: "));
        free(out);
        free(errs);
        free(a);
        free(b);
    }
    free(hf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_logits_per_width),
        cmocka_unit_test(test_structure_and_dequant),
        cmocka_unit_test(test_hf_synth_with_mtp_and_recipes),
        cmocka_unit_test(test_recipe_bit_maps),
        cmocka_unit_test(test_matches_independent_quantizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_step.c - the Step-3.5/3.7-Flash family (src/arch/step3p5.c).
 *
 *   - golden tests/data/golden/step-tiny (mlx-vlm step3p7 wrapper, DQ4 4/5/6/8
 *     bits, window 8 over 32 positions, clamps that trigger, per-layer theta and
 *     partial rotary, llama3 on full layers, more heads on sliding layers): every
 *     logit within 1e-3 x max(1, |ref|) and the same argmax (the golden rule),
 *     and within 5e-6 (we reach 1.4e-6..2.3e-6 with the AVX-512 or AVX2 kernels,
 *     4.3e-6 with the scalar references, bound 1e-5 there; the reference's own
 *     float32 run is at 1.4e-6), through decode and prefill in chunks of 32, 16, 9, 8, 7, 5, 3 and
 *     1 (chunks that end inside, at and across the window, so the sliding
 *     layers' ring wraps inside chunks), 1 / 2 / 3 threads bit-identical, the
 *     scalar reference kernels, and the bf16 KV cache;
 *   - the KV cache the plan counts: ctx rows on full layers, min(window, ctx)
 *     on sliding layers, exactly (f32 and bf16); a step that goes back further
 *     than a ring still holds is refused;
 *   - defaults for missing keys: mlx-lm's for a plain step3p5 config, mlx-vlm's
 *     for the step3p7 wrapper;
 *   - bad configs: one error line each, naming config.json and the key.
 * Generated step models (bit-identical across budgets, backends, threads,
 * policies, prefetch; trace replay) are in test_stream.c; the independent
 * numpy reference (tests/ref/step_ref.py), the mlx-lm and original HF layouts
 * of the golden checkpoint and generated cases in test_crosscheck.c; the
 * presets' layouts in test_synth.c. */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch.h"
#include "engine.h"
#include "ms_golden.h"
#include "ms_test.h"
#include "plan.h"

#define GOLDEN MS_TEST_DATA "/golden/step-tiny"

static void test_decode_matches_golden(void **state)
{
    (void)state;
    mst_golden g;
    mst_golden_load(GOLDEN, &g);
    mst_golden_check(&g, 2, false, 1, false, 5e-6);
    mst_golden_free(&g);
}

static void test_prefill_matches_golden(void **state)
{
    (void)state;
    mst_golden g;
    mst_golden_load(GOLDEN, &g);
    static const int batches[] = {32, 16, 9, 8, 7, 5, 3, 1};
    for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++)
        for (int threads = 1; threads <= 2; threads++) mst_golden_check(&g, threads, false, batches[i], true, 5e-6);
    mst_golden_free(&g);
}

static void test_threads_bit_identical(void **state)
{
    (void)state;
    mst_golden g;
    mst_golden_load(GOLDEN, &g);
    mst_golden_threads_identical(&g, 5);
    mst_golden_free(&g);
}

/* the scalar sums in another order: 4.3e-6 reached */
static void test_reference_kernels(void **state)
{
    (void)state;
    mst_golden g;
    mst_golden_load(GOLDEN, &g);
    mst_golden_check(&g, 2, true, 1, false, 1e-5);
    mst_golden_free(&g);
}

/* --kv bf16: lossy but bounded; decode and prefill read the same rounded keys
 * (the chunk's own keys are rounded like the cache), so they agree exactly. */
static void test_kv_bf16(void **state)
{
    (void)state;
    mst_golden g;
    mst_golden_load(GOLDEN, &g);
    ms_engine_opts od = {.threads = 2, .ctx = 64, .batch = 1, .kv_bf16 = true};
    ms_engine_opts op = {.threads = 2, .ctx = 64, .batch = 5, .kv_bf16 = true};
    float *dec = mst_golden_run(&g, &od, false), *pre = mst_golden_run(&g, &op, true);
    double wd = mst_golden_compare(&g, dec), wp = mst_golden_compare(&g, pre);
    print_message("bf16 KV: max rel error decode %.3g, prefill %.3g\n", wd, wp);
    assert_true(wd < 1e-2 && wp < 1e-2);
    assert_true(wd > 1e-5); /* it really is bf16 */
    for (size_t i = 0; i < (size_t)g.n * g.vocab; i++)
        assert_true(fabsf(dec[i] - pre[i]) <= 1e-5f * fmaxf(1.0f, fabsf(dec[i])));
    free(dec);
    free(pre);
    mst_golden_free(&g);
}

/* step-tiny: layers full, sliding, sliding, full, sliding; 2 KV heads of 64
 * everywhere; window 8. */
static uint64_t expected_kv(int ctx, size_t elem)
{
    uint64_t row = 2 * 2 * 64 * elem; /* K and V of one position */
    return 2 * (uint64_t)ctx * row + 3 * (uint64_t)(ctx < 8 ? ctx : 8) * row;
}

static void test_kv_bytes(void **state)
{
    (void)state;
    ms_model m;
    ms_err err = {0};
    assert_int_equal(ms_model_open(GOLDEN, &m, &err), 0);
    static const int ctxs[] = {1, 5, 8, 9, 64, 4096};
    for (size_t i = 0; i < sizeof ctxs / sizeof ctxs[0]; i++)
        for (int bf = 0; bf < 2; bf++) {
            ms_plan p;
            ms_plan_opts po = {.budget = 1ull << 40, .ctx = ctxs[i], .batch = 4, .threads = 2, .kv_bf16 = bf};
            assert_int_equal(ms_plan_make(&m, &po, &p, &err), 0);
            assert_int_equal(p.kv_bytes, expected_kv(ctxs[i], bf ? 2 : 4));
        }
    ms_model_close(&m);
    /* the engine allocates what the plan counted */
    ms_engine_opts o = {.threads = 2, .ctx = 5, .batch = 3};
    ms_engine *e;
    assert_int_equal(ms_engine_open(GOLDEN, &o, &e, &err), 0);
    uint64_t kv = 0, total = e->arch->state_bytes(&e->model.cfg, 5, 3, 1, 2, false, &kv);
    assert_int_equal(e->stats.state_bytes, total);
    assert_int_equal(kv, expected_kv(5, 4));
    assert_int_equal(e->plan->kv_bytes, kv);
    /* a ring shorter than the window (ctx 5 < 8) still gives the golden logits */
    int toks[5];
    float lg[5 * 288];
    mst_golden g;
    mst_golden_load(GOLDEN, &g);
    memcpy(toks, g.tokens, sizeof toks);
    assert_int_equal(ms_engine_eval(e, toks, 5, lg, true, &err), 0);
    for (int i = 0; i < 5 * 288; i++) assert_true(fabs(lg[i] - g.logits[i]) <= 5e-6 * fmax(1.0, fabs(g.logits[i])));
    mst_golden_free(&g);
    ms_engine_close(e);
    /* inspect --json reports the same KV bytes */
    char *out = NULL;
    assert_int_equal(mst_run(&out, NULL, "%s inspect %s --json --ctx 9", MS_BIN, GOLDEN), 0);
    char *want = mst_fmt("\"kv_bytes\":%llu", (unsigned long long)expected_kv(9, 4));
    assert_non_null(strstr(out, want));
    free(want);
    free(out);
}

/* Positions may go back (a new request over a kept prefix, a rejected draft):
 * full layers simply overwrite by position, but a sliding layer's ring only
 * holds the last 8 positions, so a step that needs an older one it no longer
 * holds is refused with one clear line; starting over from 0 needs none. */
static void test_ring_rewind(void **state)
{
    (void)state;
    mst_golden g;
    mst_golden_load(GOLDEN, &g);
    ms_engine_opts o = {.threads = 2, .ctx = 64, .batch = 4};
    ms_engine *e;
    ms_err err = {0};
    assert_int_equal(ms_engine_open(GOLDEN, &o, &e, &err), 0);
    float *lg = malloc(sizeof(float) * (size_t)g.n * g.vocab);
    assert_int_equal(ms_engine_eval(e, g.tokens, 12, NULL, false, &err), 0);
    /* back to position 3: its window needs positions 0..2, whose slots now hold 8..10 */
    int pos = 3;
    ms_batch b = {.n = 1, .tokens = g.tokens + 3, .pos = &pos, .logits = lg};
    assert_true(ms_engine_step(e, &b, false, &err) < 0);
    print_message("%s\n", err.msg);
    assert_non_null(strstr(err.msg, "no longer holds position 0"));
    assert_null(strchr(err.msg, '\n'));
    /* back to position 11 (re-running the last position) needs nothing lost */
    pos = 11;
    b.tokens = g.tokens + 11;
    assert_int_equal(ms_engine_step(e, &b, false, &err), 0);
    for (int v = 0; v < g.vocab; v++)
        assert_true(fabs(lg[v] - g.logits[(size_t)11 * g.vocab + v]) <= 5e-6 * fmax(1.0, fabs(g.logits[(size_t)11 * g.vocab + v])));
    /* starting over from position 0 reads nothing from the rings */
    ms_engine_reset(e);
    assert_int_equal(ms_engine_eval(e, g.tokens, g.n, lg, true, &err), 0);
    assert_true(mst_golden_compare(&g, lg) < 5e-6);
    ms_engine_close(e);
    free(lg);
    mst_golden_free(&g);
}

/* ---- config.json variants ---- */

/* The golden config.json, parsed with json-c; *tc = its text_config. */
static json_object *golden_config(json_object **tc)
{
    char *text = mst_slurp(GOLDEN "/config.json", NULL);
    assert_non_null(text);
    json_object *root = json_tokener_parse(text);
    free(text);
    assert_non_null(root);
    assert_true(json_object_object_get_ex(root, "text_config", tc));
    return root;
}

/* Parse doc through the registry; returns the rc, message in err. */
static int parse_doc(json_object *doc, ms_config *cfg, ms_err *err)
{
    const char *s = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN);
    return ms_config_parse(s, "x/config.json", cfg, err);
}

/* The family's facts about a parsed config, as `inspect --json` has them. */
static json_object *describe(const ms_config *c)
{
    json_object *j = json_object_new_object();
    ms_strbuf t = {0};
    c->family->describe(c, &t, j);
    ms_sb_free(&t);
    return j;
}

static int jint(json_object *j, const char *k)
{
    json_object *v;
    assert_true(json_object_object_get_ex(j, k, &v));
    return json_object_get_int(v);
}

static double jnum(json_object *j, const char *k)
{
    json_object *v;
    assert_true(json_object_object_get_ex(j, k, &v));
    return json_object_get_double(v);
}

static void test_defaults(void **state)
{
    (void)state;
    static const char *const dropped[] = {"use_head_wise_attn_gate", "moe_router_scaling_factor", "moe_layers_enum"};
    ms_config cfg;
    ms_err err = {0};
    /* mlx-vlm (step3p7 wrapper): no gate, scaling 1, MoE layers 3..44 */
    json_object *tc, *root = golden_config(&tc);
    for (size_t i = 0; i < 3; i++) json_object_object_del(tc, dropped[i]);
    assert_int_equal(parse_doc(root, &cfg, &err), 0);
    assert_string_equal(cfg.wrapper_type, "step3p7");
    json_object *j = describe(&cfg);
    assert_int_equal(json_object_get_boolean(json_object_object_get(j, "head_gate")), 0);
    assert_true(jnum(j, "router_scaling") == 1.0);
    assert_int_equal(jint(j, "sliding_window"), 8);
    for (int l = 0; l < 5; l++) assert_int_equal(cfg.moe_layer[l], l >= 3);
    json_object_put(j);
    ms_config_free(&cfg);
    /* ... and no default window: a wrapper with sliding layers must give one */
    json_object_object_del(tc, "sliding_window");
    assert_true(parse_doc(root, &cfg, &err) < 0);
    assert_non_null(strstr(err.msg, "sliding_window"));
    /* mlx-lm (the text model alone): gate, scaling 3, window 512, MoE layers 1..N-1 */
    json_object *lm = json_object_get(tc);
    json_object_put(root);
    assert_int_equal(parse_doc(lm, &cfg, &err), 0);
    assert_string_equal(cfg.wrapper_type, "");
    j = describe(&cfg);
    assert_int_equal(json_object_get_boolean(json_object_object_get(j, "head_gate")), 1);
    assert_true(jnum(j, "router_scaling") == 3.0);
    assert_int_equal(jint(j, "sliding_window"), 512);
    for (int l = 0; l < 5; l++) assert_int_equal(cfg.moe_layer[l], l >= 1);
    json_object_put(j);
    ms_config_free(&cfg);
    /* without layer_types both upstreams make the even layers sliding */
    json_object_object_del(lm, "layer_types");
    assert_int_equal(parse_doc(lm, &cfg, &err), 0);
    j = describe(&cfg);
    assert_int_equal(jint(j, "n_sliding_layers"), 3);
    assert_int_equal(jint(j, "n_heads_sliding"), 6);
    json_object_put(j);
    ms_config_free(&cfg);
    json_object_put(lm);
}

/* One bad variant of the golden config: key set to the JSON text `value`
 * ("-" deletes it) inside text_config (or inside attention_other_setting when
 * key starts with "aos."); the error must be one line naming config.json and
 * containing `want`. */
static void expect_bad(const char *key, const char *value, const char *want)
{
    json_object *tc, *root = golden_config(&tc);
    json_object *where = tc;
    if (!strncmp(key, "aos.", 4)) {
        where = json_object_object_get(tc, "attention_other_setting");
        key += 4;
    }
    if (!strcmp(value, "-")) json_object_object_del(where, key);
    else json_object_object_add(where, key, json_tokener_parse(value));
    ms_config cfg;
    ms_err err = {0};
    int rc = parse_doc(root, &cfg, &err);
    if (rc == 0) fail_msg("%s = %s was accepted", key, value);
    print_message("%s = %s: %s\n", key, value, err.msg);
    assert_null(strchr(err.msg, '\n'));
    assert_non_null(strstr(err.msg, "config.json"));
    if (!strstr(err.msg, want)) fail_msg("error \"%s\" does not mention \"%s\"", err.msg, want);
    json_object_put(root);
}

static void test_bad_configs(void **state)
{
    (void)state;
    expect_bad("aos.num_attention_groups", "-", "attention_other_setting: missing field \"num_attention_groups\"");
    expect_bad("aos.num_attention_heads", "-", "attention_other_setting: missing field \"num_attention_heads\"");
    expect_bad("attention_other_setting", "[1]", "attention_other_setting");
    expect_bad("layer_types", "[\"full_attention\",\"sliding_attention\",\"full_attention\",\"full_attention\"]",
               "\"layer_types\" has 4 entries but num_hidden_layers is 5");
    expect_bad("layer_types", "[\"full_attention\",\"local\",\"full_attention\",\"full_attention\",\"full_attention\"]",
               "layer_types[1]");
    expect_bad("swiglu_limits", "[0, 0, 2]", "\"swiglu_limits\" has 3 entries");
    expect_bad("swiglu_limits_shared", "[0, 0, 0, 0]", "\"swiglu_limits_shared\" has 4 entries");
    expect_bad("swiglu_limits", "[0, \"7\", 0, 0, 0]", "swiglu_limits[1]");
    expect_bad("partial_rotary_factors", "[0.5, 1.0]", "\"partial_rotary_factors\" has 2 entries");
    expect_bad("partial_rotary_factors", "[0.3, 1, 1, 1, 1]", "partial_rotary_factors[0]");
    expect_bad("rope_theta", "[10000.0]", "\"rope_theta\" has 1 entries");
    expect_bad("rope_theta", "[10000, 10000, -1, 10000, 10000]", "rope_theta[2]");
    expect_bad("sliding_window", "0", "sliding_window");
    expect_bad("sliding_window", "-", "sliding_window");
    expect_bad("moe_layers_enum", "\"2,x\"", "moe_layers_enum");
    expect_bad("moe_layers_enum", "{}", "moe_layers_enum");
    expect_bad("num_attention_groups", "3", "not a multiple of 3 KV heads");
    expect_bad("moe_top_k", "17", "moe_top_k 17 exceeds moe_num_experts 16");
    expect_bad("rope_scaling", "{\"rope_type\": \"dynamic\", \"factor\": 2}", "dynamic");
    expect_bad("rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 2}", "original_max_position_embeddings");
    expect_bad("yarn_only_types", "[1]", "yarn_only_types[0]");
    expect_bad("head_dim", "0", "head_dim");
    /* a plain step3p5 config needs the head counts (mlx-lm has no defaults for them) */
    json_object *tc, *root = golden_config(&tc);
    json_object *lm = json_object_get(tc);
    json_object_put(root);
    json_object_object_del(lm, "num_attention_groups");
    ms_config cfg;
    ms_err err = {0};
    assert_true(parse_doc(lm, &cfg, &err) < 0);
    assert_non_null(strstr(err.msg, "missing field \"num_attention_groups\""));
    json_object_put(lm);
}

/* A model directory: the golden tensors with a modified config (text_config
 * key set to value, "-" deletes). */
static char *golden_variant(const char *name, const char *key, const char *value)
{
    char *dir = mst_tmpdir(name);
    const char *files[] = {"model.safetensors", "model.safetensors.index.json"};
    for (int i = 0; i < 2; i++) {
        char *src = mst_fmt("%s/%s", GOLDEN, files[i]), *dst = mst_fmt("%s/%s", dir, files[i]);
        assert_int_equal(symlink(src, dst), 0);
        free(src);
        free(dst);
    }
    json_object *tc, *root = golden_config(&tc);
    if (!strcmp(value, "-")) json_object_object_del(tc, key);
    else json_object_object_add(tc, key, json_tokener_parse(value));
    char *path = mst_fmt("%s/config.json", dir);
    assert_int_equal(json_object_to_file(path, root), 0);
    free(path);
    json_object_put(root);
    return dir;
}

static void test_bad_models(void **state)
{
    (void)state;
    /* g_proj tensors but no gate in the config (the step3p7 default): refused, not ignored */
    char *dir = golden_variant("step_nogate", "use_head_wise_attn_gate", "-");
    char *out = NULL, *errs = NULL;
    int rc = mst_run(&out, &errs, "%s logits --model %s --tokens 1,2", MS_BIN, dir);
    assert_int_not_equal(rc, 0);
    print_message("%s", errs);
    assert_non_null(strstr(errs, "g_proj"));
    assert_non_null(strstr(errs, "use_head_wise_attn_gate"));
    assert_non_null(strstr(errs, "step3p7 default"));
    assert_int_equal(strchr(errs, '\n') - errs + 1, (long)strlen(errs)); /* one line */
    free(out);
    free(errs);
    free(dir);
    /* the CLI reports a bad config in one line and exits non-zero */
    dir = golden_variant("step_window0", "sliding_window", "0");
    rc = mst_run(&out, &errs, "%s inspect %s", MS_BIN, dir);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(errs, "sliding_window"));
    assert_int_equal(strchr(errs, '\n') - errs + 1, (long)strlen(errs));
    free(out);
    free(errs);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_matches_golden), cmocka_unit_test(test_prefill_matches_golden),
        cmocka_unit_test(test_threads_bit_identical), cmocka_unit_test(test_reference_kernels),
        cmocka_unit_test(test_kv_bf16),               cmocka_unit_test(test_kv_bytes),
        cmocka_unit_test(test_ring_rewind),
        cmocka_unit_test(test_defaults),              cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_bad_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

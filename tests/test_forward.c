/* test_forward.c - the DeepSeek-V3 forward pass against the golden logits of
 * tests/data/golden/ds3-tiny (computed by llama.cpp and an independent numpy
 * float64 pass; they agree to 1e-6). Tolerance from the golden README:
 * |logit - ref| <= 1e-3 * max(1, |ref|) and the same argmax at every position;
 * we also assert the error we actually reach (< 2e-5) so a regression that is
 * still inside the loose bound does not go unnoticed. Both paths (decode one
 * token at a time, prefill in one or several chunks), 1 and N threads
 * (bit-identical), and the scalar reference kernels are checked.
 * ds3-tiny has n_group 1; tests/data/golden/ds3-tiny-grouped is the same weights
 * with 4 groups keeping 2 and logits from the independent numpy reference
 * tests/ref/ds3_ref.py, so a router that scores groups wrongly fails here too. */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "ms_golden.h"
#include "ms_test.h"

#define GOLDEN MS_TEST_DATA "/golden/ds3-tiny"
#define GROUPED MS_TEST_DATA "/golden/ds3-tiny-grouped"

/* Group-limited routing: ds3-tiny's weights with the grouped config (a scratch
 * directory: that config.json and ref.json + a link to ds3-tiny's safetensors),
 * against the numpy reference's logits; decode, prefill, and the scalar kernels.
 * The grouped reference must differ from the ungrouped golden logits, or the case
 * would not test grouping at all. */
static void test_grouped_routing(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("forward_grouped");
    assert_non_null(dir);
    char *cmd = mst_fmt("cp '%s/config.json' '%s/ref.json' '%s/' && ln -sf '%s/model.safetensors' '%s/'", GROUPED,
                        GROUPED, dir, GOLDEN, dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    mst_golden g, plain;
    mst_golden_load(dir, &g);
    mst_golden_load(GOLDEN, &plain);
    assert_int_equal(g.n, plain.n);
    assert_memory_equal(g.tokens, plain.tokens, sizeof(int) * (size_t)g.n);
    double apart = 0;
    for (size_t i = 0; i < (size_t)g.n * g.vocab; i++) apart = fmax(apart, fabs(g.logits[i] - plain.logits[i]));
    print_message("grouped vs ungrouped reference logits differ by up to %.3g\n", apart);
    assert_true(apart > 0.1); /* grouping changes the routing of this prompt */
    mst_golden_check(&g, 2, false, 1, false, 2e-5);
    mst_golden_check(&g, 2, false, 16, true, 2e-5);
    mst_golden_check(&g, 2, false, 5, true, 2e-5);
    mst_golden_check(&g, 2, true, 1, false, 2e-5);
    mst_golden_free(&g);
    mst_golden_free(&plain);
    free(dir);
}

static void test_decode_matches_golden(void **state)
{
    (void)state;
    mst_golden g;
    mst_golden_load(GOLDEN, &g);
    mst_golden_check(&g, 2, false, 1, false, 2e-5);
    mst_golden_free(&g);
}

static void test_prefill_matches_golden(void **state)
{
    (void)state;
    mst_golden g;
    mst_golden_load(GOLDEN, &g);
    int batches[] = {16, 5, 1};
    for (int i = 0; i < 3; i++) mst_golden_check(&g, 2, false, batches[i], true, 2e-5);
    mst_golden_free(&g);
}

static void test_threads_bit_identical(void **state)
{
    (void)state;
    mst_golden g;
    mst_golden_load(GOLDEN, &g);
    mst_golden_threads_identical(&g, 8);
    mst_golden_free(&g);
}

static void test_reference_kernels(void **state)
{
    (void)state;
    mst_golden g;
    mst_golden_load(GOLDEN, &g);
    mst_golden_check(&g, 2, true, 1, false, 2e-5);
    mst_golden_free(&g);
}

/* --kv bf16 is lossy but bounded: decode and prefill still agree exactly with each
 * other (both read the rounded cache) and the top-1 stays the golden one. */
static void test_kv_bf16(void **state)
{
    (void)state;
    mst_golden g;
    mst_golden_load(GOLDEN, &g);
    float *lg[2];
    for (int p = 0; p < 2; p++) {
        ms_engine_opts o = {.threads = 2, .ctx = 64, .batch = p ? 16 : 1, .kv_bf16 = true};
        lg[p] = mst_golden_run(&g, &o, p == 1);
    }
    double worst = mst_golden_compare(&g, lg[0]), wp = mst_golden_compare(&g, lg[1]);
    print_message("bf16 KV: max rel error decode %.3g, prefill %.3g\n", worst, wp);
    assert_true(worst < 2e-2 && wp < 2e-2);
    assert_true(worst > 1e-5); /* it really is bf16 */
    for (size_t i = 0; i < (size_t)g.n * g.vocab; i++) assert_true(fabsf(lg[0][i] - lg[1][i]) <= 1e-4f * fmaxf(1.0f, fabsf(lg[0][i])));
    free(lg[0]);
    free(lg[1]);
    mst_golden_free(&g);
}

static void test_context_full_and_bad_token(void **state)
{
    (void)state;
    ms_engine_opts o = {.threads = 1, .ctx = 4, .batch = 4};
    ms_engine *e;
    ms_err err = {0};
    assert_int_equal(ms_engine_open(GOLDEN, &o, &e, &err), 0);
    int toks[5] = {1, 2, 3, 4, 5};
    assert_int_equal(ms_engine_eval(e, toks, 4, NULL, false, &err), 0);
    assert_true(ms_engine_eval(e, toks, 1, NULL, false, &err) < 0);
    assert_non_null(strstr(err.msg, "context is full"));
    ms_engine_reset(e);
    ms_err_clear(&err);
    int bad = 259;
    assert_true(ms_engine_eval(e, &bad, 1, NULL, false, &err) < 0);
    assert_non_null(strstr(err.msg, "outside the vocabulary"));
    ms_engine_close(e);
}

static void test_cli_logits(void **state)
{
    (void)state;
    char *out = NULL, *errs = NULL;
    int rc = mst_run(&out, &errs, "%s logits --model %s --tokens 1,75,104 --all-positions --threads 1 --ctx 8", MS_BIN,
                     GOLDEN);
    assert_int_equal(rc, 0);
    json_object *r = json_tokener_parse(out);
    assert_non_null(r);
    json_object *nv, *pos;
    assert_true(json_object_object_get_ex(r, "n_vocab", &nv));
    assert_int_equal(json_object_get_int(nv), 259);
    assert_true(json_object_object_get_ex(r, "positions", &pos));
    assert_int_equal(json_object_array_length(pos), 3);
    json_object_put(r);
    free(out);
    free(errs);
    /* decode and prefill agree within 1e-5 relative on the last position */
    char *a = NULL, *b = NULL;
    assert_int_equal(mst_run(&a, NULL, "%s logits --model %s --tokens 1,75,104,111", MS_BIN, GOLDEN), 0);
    assert_int_equal(mst_run(&b, NULL, "%s logits --model %s --tokens 1,75,104,111 --prefill", MS_BIN, GOLDEN), 0);
    json_object *ja = json_tokener_parse(a), *jb = json_tokener_parse(b), *pa, *pb;
    json_object_object_get_ex(ja, "positions", &pa);
    json_object_object_get_ex(jb, "positions", &pb);
    json_object *la, *lb;
    json_object_object_get_ex(json_object_array_get_idx(pa, 0), "logits", &la);
    json_object_object_get_ex(json_object_array_get_idx(pb, 0), "logits", &lb);
    for (int v = 0; v < 259; v++) {
        double x = json_object_get_double(json_object_array_get_idx(la, v));
        double y = json_object_get_double(json_object_array_get_idx(lb, v));
        assert_true(fabs(x - y) <= 1e-5 * fmax(1.0, fabs(x)));
    }
    json_object_put(ja);
    json_object_put(jb);
    free(a);
    free(b);
    /* bad token id: one error line, exit 1 */
    rc = mst_run(NULL, &errs, "%s logits --model %s --tokens 1,999", MS_BIN, GOLDEN);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(errs, "outside the vocabulary"));
    free(errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_matches_golden),  cmocka_unit_test(test_prefill_matches_golden),
        cmocka_unit_test(test_threads_bit_identical),  cmocka_unit_test(test_reference_kernels),
        cmocka_unit_test(test_context_full_and_bad_token), cmocka_unit_test(test_cli_logits),
        cmocka_unit_test(test_kv_bf16),               cmocka_unit_test(test_grouped_routing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

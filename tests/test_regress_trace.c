/* test_regress_trace.c - regression tests for trace-reader bugs found by
 * fuzzing (tests/fuzz/fuzz_trace.c).
 *
 * 1. The binary reader accepted a record whose "predicted" list repeats an
 *    expert in one layer, which the JSON reader and the writer reject; such a
 *    trace could be read but not written back (round trip failed). Now every
 *    reader rejects it with an error naming the record and the expert. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_test.h"
#include "trace.h"

/* A binary trace: 1 MoE layer, 16 experts, top-2; one tag-2 record (token with
 * predictions) with experts {1, 2} and the given two predicted ids (0xFF = none). */
static char *write_bin(const char *name, uint8_t p0, uint8_t p1)
{
    char *dir = mst_tmpdir("regress_trace");
    assert_non_null(dir);
    char *path = mst_fmt("%s/%s", dir, name);
    free(dir);
    const char *hdr = "{\"format\":\"moestream-trace\",\"version\":1,\"model\":\"m\",\"n_layers\":1,\"n_experts\":16,"
                      "\"top_k\":2}";
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint32_t hl = (uint32_t)strlen(hdr);
    uint8_t le[4] = {(uint8_t)hl, (uint8_t)(hl >> 8), (uint8_t)(hl >> 16), (uint8_t)(hl >> 24)};
    fwrite("MSTRACE1", 1, 8, f);
    fwrite(le, 1, 4, f);
    fwrite(hdr, 1, hl, f);
    /* tag 2, seq 0, pos 0, n_pred 2, experts 1 2, predicted p0 p1 */
    uint8_t rec[] = {2, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, p0, p1};
    fwrite(rec, 1, sizeof rec, f);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void test_binary_repeated_prediction_rejected(void **state)
{
    (void)state;
    char *path = write_bin("dup.bin", 5, 5);
    ms_trace t;
    ms_err err = {0};
    assert_true(ms_trace_read(path, &t, &err) < 0);
    assert_non_null(strstr(err.msg, "record 1"));
    assert_non_null(strstr(err.msg, "predicted expert 5 listed twice"));
    assert_null(t.experts); /* nothing left allocated */
    free(path);
}

static void test_binary_predictions_round_trip(void **state)
{
    (void)state;
    /* distinct ids and a "none" entry: read, write both encodings, read back */
    char *path = write_bin("ok.bin", 5, 0xFF);
    ms_trace t;
    ms_err err = {0};
    assert_int_equal(ms_trace_read(path, &t, &err), 0);
    assert_int_equal(t.n_tokens, 1);
    assert_int_equal(t.max_pred, 2);
    assert_int_equal(t.predicted[0], 5);
    assert_int_equal(t.predicted[1], -1);
    const ms_trace_format fmts[2] = {MS_TRACE_BINARY, MS_TRACE_JSONL};
    for (int i = 0; i < 2; i++) {
        char *out = mst_fmt("%s.rt%d", path, i);
        assert_int_equal(ms_trace_write(&t, out, fmts[i], &err), 0);
        ms_trace u;
        assert_int_equal(ms_trace_read(out, &u, &err), 0);
        assert_int_equal(u.n_tokens, 1);
        assert_memory_equal(u.experts, t.experts, 2 * sizeof *t.experts);
        assert_int_equal(u.predicted[0], 5);
        ms_trace_free(&u);
        free(out);
    }
    ms_trace_free(&t);
    free(path);
}

/* The JSON reader already rejected the same trace: keep both in step. */
static void test_jsonl_repeated_prediction_rejected(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("regress_trace_jsonl");
    char *path = mst_fmt("%s/dup.jsonl", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"format\":\"moestream-trace\",\"version\":1,\"n_layers\":1,\"n_experts\":16,\"top_k\":2}\n"
          "{\"seq\":0,\"pos\":0,\"experts\":[[1,2]],\"predicted\":[[5,5]]}\n",
          f);
    fclose(f);
    ms_trace t;
    ms_err err = {0};
    assert_true(ms_trace_read(path, &t, &err) < 0);
    assert_non_null(strstr(err.msg, "listed twice"));
    free(path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_repeated_prediction_rejected),
        cmocka_unit_test(test_binary_predictions_round_trip),
        cmocka_unit_test(test_jsonl_repeated_prediction_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

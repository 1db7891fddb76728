/* test_trace.c - routing traces (cache/trace.c): JSON-lines and binary round trips
 * (with and without "predicted" lists), auto-detection, and strict validation on
 * crafted bad files: each error names the line (or record) at fault. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_test.h"
#include "trace.h"

static char *tmp;

static int setup(void **state)
{
    (void)state;
    tmp = mst_tmpdir("trace");
    return tmp ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(tmp);
    return 0;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *write_file(const char *name, const char *text)
{
    char *p = mst_fmt("%s/%s", tmp, name);
    write_bytes(p, text, strlen(text));
    return p;
}

static uint32_t rng(uint64_t *x)
{
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*x >> 33);
}

/* Write a random trace with the streaming writer; returns the experts written. */
static uint32_t *write_random(const char *path, ms_trace_format fmt, uint32_t L, uint32_t E, uint32_t K, uint32_t T,
                              bool preds)
{
    ms_trace_info info = {.n_layers = L, .n_experts = E, .top_k = K};
    snprintf(info.model, sizeof info.model, "test \"model\" \\ %u", E);
    snprintf(info.source, sizeof info.source, "unit test");
    int32_t layers[64];
    for (uint32_t l = 0; l < L; l++) layers[l] = (int32_t)(3 + l);
    info.layers = layers;
    ms_trace_writer *w;
    ms_err err = {0};
    assert_int_equal(ms_trace_writer_open(path, fmt, &info, &w, &err), 0);
    uint32_t *all = malloc((size_t)T * L * K * sizeof *all);
    uint64_t x = E * 31 + T;
    for (uint32_t t = 0; t < T; t++) {
        uint32_t *ex = all + (size_t)t * L * K;
        for (uint32_t l = 0; l < L; l++)
            for (uint32_t j = 0; j < K; j++) {
            again:
                ex[l * K + j] = rng(&x) % E;
                for (uint32_t q = 0; q < j; q++)
                    if (ex[l * K + q] == ex[l * K + j]) goto again;
            }
        int32_t pr[64 * 3];
        for (uint32_t q = 0; q < L * 3; q++) {
            pr[q] = q % 3 == 2 && t % 2 ? -1 : (int32_t)(rng(&x) % E);
            for (uint32_t r = q - q % 3; r < q; r++)
                if (pr[r] == pr[q]) pr[q] = -1;
        }
        if (t == 0) pr[0] = -1;
        /* tokens 2..6 of every seq (of 10) are one forward pass */
        if (t % 10 == 2 && t + 5 <= T && ms_trace_writer_batch(w, 5, &err) < 0) fail_msg("%s", err.msg);
        int rc = ms_trace_writer_add(w, t / 10, t % 10, ex, preds ? pr : NULL, preds ? 3 : 0, &err);
        if (rc < 0) fail_msg("%s", err.msg);
    }
    assert_int_equal(ms_trace_writer_close(w, &err), 0);
    return all;
}

static void check_equal(const ms_trace *a, const ms_trace *b)
{
    assert_int_equal(a->n_tokens, b->n_tokens);
    assert_int_equal(a->info.n_layers, b->info.n_layers);
    assert_int_equal(a->info.n_experts, b->info.n_experts);
    assert_int_equal(a->info.top_k, b->info.top_k);
    assert_string_equal(a->info.model, b->info.model);
    assert_memory_equal(a->info.layers, b->info.layers, a->info.n_layers * sizeof(int32_t));
    size_t per = (size_t)a->info.n_layers * a->info.top_k;
    assert_memory_equal(a->experts, b->experts, a->n_tokens * per * sizeof(uint16_t));
    assert_memory_equal(a->seq, b->seq, a->n_tokens * sizeof(uint32_t));
    assert_memory_equal(a->pos, b->pos, a->n_tokens * sizeof(uint32_t));
    assert_memory_equal(a->batch, b->batch, a->n_tokens * sizeof(uint32_t));
    assert_int_equal(a->max_pred, b->max_pred);
    if (a->max_pred)
        assert_memory_equal(a->predicted, b->predicted, a->n_tokens * a->info.n_layers * a->max_pred * sizeof(int32_t));
}

static void round_trip(uint32_t L, uint32_t E, uint32_t K, uint32_t T, bool preds)
{
    char *pj = mst_fmt("%s/rt.jsonl", tmp), *pb = mst_fmt("%s/rt.bin", tmp), *pj2 = mst_fmt("%s/rt2.jsonl", tmp);
    uint32_t *ex = write_random(pj, MS_TRACE_JSONL, L, E, K, T, preds);
    free(write_random(pb, MS_TRACE_BINARY, L, E, K, T, preds));
    ms_trace a, b, c;
    ms_err err = {0};
    if (ms_trace_read(pj, &a, &err) < 0) fail_msg("%s", err.msg);
    if (ms_trace_read(pb, &b, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(a.n_tokens, T);
    for (uint32_t t = 0; t < T; t++) {
        assert_int_equal(a.seq[t], t / 10);
        assert_int_equal(a.pos[t], t % 10);
        assert_int_equal(a.batch[t], t % 10 == 2 && t + 5 <= T ? 5 : t % 10 > 2 && t % 10 < 7 && t - t % 10 + 7 <= T ? 0 : 1);
        for (uint32_t l = 0; l < L; l++)
            for (uint32_t j = 0; j < K; j++)
                assert_int_equal(ms_trace_experts(&a, t, l)[j], ex[((size_t)t * L + l) * K + j]);
    }
    assert_string_equal(a.info.source, "unit test");
    assert_int_equal(a.info.layers[0], 3);
    if (preds) {
        assert_int_equal(a.max_pred, 3);
        assert_int_equal(a.predicted[2], -1); /* token 0 layer 0: first of 3 was "none": compacted */
        assert_true(a.predicted[0] >= 0);
    } else {
        assert_int_equal(a.max_pred, 0);
        assert_null(a.predicted);
    }
    check_equal(&a, &b);
    /* write what was read, read again: identical */
    assert_int_equal(ms_trace_write(&b, pj2, MS_TRACE_JSONL, &err), 0);
    assert_int_equal(ms_trace_read(pj2, &c, &err), 0);
    check_equal(&a, &c);
    /* the binary form is compact */
    size_t lj, lb;
    free(mst_slurp(pj, &lj));
    free(mst_slurp(pb, &lb));
    assert_true(lb * 2 < lj);
    ms_trace_free(&a);
    ms_trace_free(&b);
    ms_trace_free(&c);
    free(ex);
    free(pj);
    free(pb);
    free(pj2);
}

static void test_round_trip(void **state)
{
    (void)state;
    round_trip(3, 16, 2, 50, false);
    round_trip(4, 300, 8, 40, true);  /* u16 ids in binary */
    round_trip(2, 64, 6, 1500, true); /* several array growths */
}

#define HDR "{\"format\": \"moestream-trace\", \"version\": 1, \"model\": \"m\", \"n_layers\": 2, \"n_experts\": 8, \"top_k\": 2}\n"

static void expect_error(const char *name, const char *text, const char *needle)
{
    char *p = write_file(name, text);
    ms_trace t;
    ms_err err = {0};
    int rc = ms_trace_read(p, &t, &err);
    if (rc >= 0) fail_msg("%s: accepted a bad trace", name);
    if (!strstr(err.msg, needle)) fail_msg("%s: error '%s' lacks '%s'", name, err.msg, needle);
    assert_non_null(strstr(err.msg, name)); /* names the file */
    free(p);
}

static void test_reader_accepts_readme_format(void **state)
{
    (void)state;
    char *p = write_file("ok.jsonl", HDR "{\"seq\":0,\"pos\":0,\"experts\":[[1,2],[3,4]],\"weights\":[[0.5,0.5],[1,0]]}\n"
                                         "{\"seq\":0,\"pos\":1,\"experts\":[[7,0],[3,5]],\"predicted\":[[1],[2,3,4]]}");
    ms_trace t;
    ms_err err = {0};
    if (ms_trace_read(p, &t, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(t.n_tokens, 2);
    assert_int_equal(ms_trace_experts(&t, 1, 0)[0], 7);
    assert_int_equal(t.max_pred, 3);
    assert_int_equal(t.predicted[0], -1);                  /* token 0: no predictions */
    assert_int_equal(t.predicted[(1 * 2 + 1) * 3 + 2], 4); /* token 1, layer 1, third */
    assert_int_equal(t.info.layers, NULL);                 /* no "layers" in this header */
    ms_trace_free(&t);
    free(p);
    /* header only = zero tokens, valid */
    p = write_file("empty.jsonl", HDR);
    assert_int_equal(ms_trace_read(p, &t, &err), 0);
    assert_int_equal(t.n_tokens, 0);
    ms_trace_free(&t);
    free(p);
}

static void test_reader_errors(void **state)
{
    (void)state;
    expect_error("e_empty.jsonl", "", "empty file");
    expect_error("e_fmt.jsonl", "{\"format\": \"other\", \"version\": 1, \"n_layers\": 2, \"n_experts\": 8, \"top_k\": 2}\n",
                 "line 1");
    expect_error("e_ver.jsonl", "{\"format\": \"moestream-trace\", \"version\": 2, \"n_layers\": 2, \"n_experts\": 8, \"top_k\": 2}\n",
                 "version");
    expect_error("e_nl.jsonl", "{\"format\": \"moestream-trace\", \"version\": 1, \"n_experts\": 8, \"top_k\": 2}\n",
                 "n_layers");
    expect_error("e_k.jsonl", "{\"format\": \"moestream-trace\", \"version\": 1, \"n_layers\": 2, \"n_experts\": 8, \"top_k\": 9}\n",
                 "top_k");
    expect_error("e_layers.jsonl",
                 "{\"format\": \"moestream-trace\", \"version\": 1, \"n_layers\": 2, \"n_experts\": 8, \"top_k\": 2, \"layers\": [1]}\n",
                 "layers");
    expect_error("e_hdrjson.jsonl", "{\"format\": \"moestream-trace\",\n", "line 1");
    expect_error("e_wrongk.jsonl", HDR "{\"seq\":0,\"pos\":0,\"experts\":[[1,2],[3,4]]}\n{\"seq\":0,\"pos\":1,\"experts\":[[1,2,3],[3,4]]}\n",
                 "line 3");
    expect_error("e_wrongL.jsonl", HDR "{\"seq\":0,\"pos\":0,\"experts\":[[1,2]]}\n", "line 2: \"experts\" has 1 layers");
    expect_error("e_range.jsonl", HDR "{\"seq\":0,\"pos\":0,\"experts\":[[1,8],[3,4]]}\n", "out of range");
    expect_error("e_neg.jsonl", HDR "{\"seq\":0,\"pos\":0,\"experts\":[[1,-1],[3,4]]}\n", "line 2");
    expect_error("e_dup.jsonl", HDR "{\"seq\":0,\"pos\":0,\"experts\":[[1,1],[3,4]]}\n", "twice");
    expect_error("e_float.jsonl", HDR "{\"seq\":0,\"pos\":0,\"experts\":[[1,2.5],[3,4]]}\n", "not an integer");
    expect_error("e_seq.jsonl", HDR "{\"pos\":0,\"experts\":[[1,2],[3,4]]}\n", "seq");
    expect_error("e_trunc.jsonl", HDR "{\"seq\":0,\"pos\":0,\"experts\":[[1,2],[3,4]]}\n{\"seq\":0,\"pos\":1,\"experts\":[[1,2],[3",
                 "line 3: truncated");
    expect_error("e_blank.jsonl", HDR "\n{\"seq\":0,\"pos\":0,\"experts\":[[1,2],[3,4]]}\n", "line 2: empty line");
    expect_error("e_trail.jsonl", HDR "{\"seq\":0,\"pos\":0,\"experts\":[[1,2],[3,4]]} x\n", "line 2");
    expect_error("e_pred.jsonl", HDR "{\"seq\":0,\"pos\":0,\"experts\":[[1,2],[3,4]],\"predicted\":[[9],[]]}\n",
                 "out of range");
    expect_error("e_predL.jsonl", HDR "{\"seq\":0,\"pos\":0,\"experts\":[[1,2],[3,4]],\"predicted\":[[1]]}\n", "predicted");
    ms_trace t;
    ms_err err = {0};
    assert_true(ms_trace_read("/nonexistent/x.jsonl", &t, &err) < 0);
    assert_non_null(strstr(err.msg, "/nonexistent/x.jsonl"));
}

static void test_binary_errors(void **state)
{
    (void)state;
    char *pb = mst_fmt("%s/b.bin", tmp);
    free(write_random(pb, MS_TRACE_BINARY, 2, 8, 2, 5, false));
    size_t len;
    char *data = mst_slurp(pb, &len);
    /* truncated last record */
    char *pt = mst_fmt("%s/b_trunc.bin", tmp);
    write_bytes(pt, data, len - 2);
    ms_trace t;
    ms_err err = {0};
    assert_true(ms_trace_read(pt, &t, &err) < 0);
    assert_non_null(strstr(err.msg, "record 5"));
    assert_non_null(strstr(err.msg, "truncated"));
    /* bad tag in record 2: each record is 1 + 8 + 4 bytes here */
    char *pg = mst_fmt("%s/b_tag.bin", tmp);
    data[len - 4 * 13] = 7;
    write_bytes(pg, data, len);
    ms_err_clear(&err);
    assert_true(ms_trace_read(pg, &t, &err) < 0);
    assert_non_null(strstr(err.msg, "record 2"));
    assert_non_null(strstr(err.msg, "bad tag"));
    /* expert out of range in the last record */
    data[len - 4 * 13] = 1;
    data[len - 1] = 9;
    write_bytes(pg, data, len);
    ms_err_clear(&err);
    assert_true(ms_trace_read(pg, &t, &err) < 0);
    assert_non_null(strstr(err.msg, "record 5"));
    assert_non_null(strstr(err.msg, "out of range"));
    /* truncated header */
    write_bytes(pg, data, 20);
    ms_err_clear(&err);
    assert_true(ms_trace_read(pg, &t, &err) < 0);
    assert_non_null(strstr(err.msg, "header"));
    free(data);
    free(pb);
    free(pt);
    free(pg);
}

static void test_writer_validation(void **state)
{
    (void)state;
    ms_trace_info info = {.n_layers = 2, .n_experts = 8, .top_k = 2};
    ms_trace_writer *w;
    ms_err err = {0};
    char *p = mst_fmt("%s/w.jsonl", tmp);
    assert_int_equal(ms_trace_writer_open(p, MS_TRACE_JSONL, &info, &w, &err), 0);
    uint32_t bad[4] = {1, 8, 2, 3}, dup[4] = {1, 1, 2, 3}, ok[4] = {1, 2, 3, 4};
    assert_int_equal(ms_trace_writer_add(w, 0, 0, bad, NULL, 0, &err), -EINVAL);
    ms_err_clear(&err);
    assert_int_equal(ms_trace_writer_add(w, 0, 0, dup, NULL, 0, &err), -EINVAL);
    int32_t pdup[4] = {1, 1, 2, -1};
    ms_err_clear(&err);
    assert_int_equal(ms_trace_writer_add(w, 0, 0, ok, pdup, 2, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
    assert_int_equal(ms_trace_writer_add(w, 0, 0, ok, NULL, 0, &err), 0);
    assert_int_equal(ms_trace_writer_close(w, &err), 0);
    ms_trace t;
    assert_int_equal(ms_trace_read(p, &t, &err), 0);
    assert_int_equal(t.n_tokens, 1);
    ms_trace_free(&t);
    info.top_k = 9;
    ms_err_clear(&err);
    assert_true(ms_trace_writer_open(p, MS_TRACE_JSONL, &info, &w, &err) < 0);
    info.top_k = 2;
    assert_true(ms_trace_writer_open("/nonexistent/dir/t.jsonl", MS_TRACE_JSONL, &info, &w, &err) < 0);
    free(p);
}

#define TOK(s, p, extra) "{\"seq\":" #s ",\"pos\":" #p ",\"experts\":[[1,2],[3,4]]" extra "}\n"

static void test_batch_reader(void **state)
{
    (void)state;
    char *p = write_file("batch.jsonl", HDR TOK(0, 0, "") TOK(0, 1, ",\"batch\":3") TOK(0, 2, "") TOK(0, 3, "")
                                            TOK(0, 4, ",\"batch\":1") TOK(1, 0, ",\"batch\":2") TOK(1, 1, ""));
    ms_trace t;
    ms_err err = {0};
    if (ms_trace_read(p, &t, &err) < 0) fail_msg("%s", err.msg);
    const uint32_t want[7] = {1, 3, 0, 0, 1, 2, 0};
    assert_int_equal(t.n_tokens, 7);
    assert_memory_equal(t.batch, want, sizeof want);
    ms_trace_free(&t);
    free(p);
    expect_error("e_b_nest.jsonl", HDR TOK(0, 0, ",\"batch\":3") TOK(0, 1, ",\"batch\":2") TOK(0, 2, ""),
                 "line 3: a batch starts inside the batch of line 2");
    expect_error("e_b_one.jsonl", HDR TOK(0, 0, ",\"batch\":2") TOK(0, 1, ",\"batch\":1"), "inside the batch of line 2");
    expect_error("e_b_seq.jsonl", HDR TOK(0, 0, ",\"batch\":2") TOK(1, 0, ""), "line 3: seq 1 inside the batch of line 2");
    expect_error("e_b_end.jsonl", HDR TOK(0, 0, "") TOK(0, 1, ",\"batch\":4") TOK(0, 2, ""),
                 "ends inside the batch of line 3 (2 tokens missing)");
    expect_error("e_b_zero.jsonl", HDR TOK(0, 0, ",\"batch\":0"), "out of range");
    expect_error("e_b_big.jsonl", HDR TOK(0, 0, ",\"batch\":99999999"), "out of range");
    expect_error("e_b_str.jsonl", HDR TOK(0, 0, ",\"batch\":\"2\""), "not an integer");
}

static void test_batch_binary_and_writer(void **state)
{
    (void)state;
    ms_trace_info info = {.n_layers = 2, .n_experts = 8, .top_k = 2};
    uint32_t ex[4] = {1, 2, 3, 4};
    ms_err err = {0};
    ms_trace_writer *w;
    char *p = mst_fmt("%s/wb.bin", tmp);
    /* writer errors: nested batch, a seq change inside one, closing inside one */
    assert_int_equal(ms_trace_writer_open(p, MS_TRACE_BINARY, &info, &w, &err), 0);
    assert_int_equal(ms_trace_writer_batch(w, 3, &err), 0);
    assert_int_equal(ms_trace_writer_batch(w, 2, &err), -EINVAL);
    assert_int_equal(ms_trace_writer_batch(w, 0, &err), -EINVAL);
    assert_int_equal(ms_trace_writer_add(w, 0, 0, ex, NULL, 0, &err), 0);
    ms_err_clear(&err);
    assert_int_equal(ms_trace_writer_add(w, 1, 0, ex, NULL, 0, &err), -EINVAL);
    if (!strstr(err.msg, "seq 1 inside a batch of seq 0")) fail_msg("%s", err.msg);
    assert_int_equal(ms_trace_writer_add(w, 0, 1, ex, NULL, 0, &err), 0);
    ms_err_clear(&err);
    assert_int_equal(ms_trace_writer_close(w, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "closed inside a batch (1 tokens missing)"));
    /* a good one: [alone] [batch of 2]; the batch record is 1 + 4 bytes */
    assert_int_equal(ms_trace_writer_open(p, MS_TRACE_BINARY, &info, &w, &err), 0);
    assert_int_equal(ms_trace_writer_batch(w, 1, &err), 0); /* nothing to record */
    assert_int_equal(ms_trace_writer_add(w, 0, 0, ex, NULL, 0, &err), 0);
    assert_int_equal(ms_trace_writer_batch(w, 2, &err), 0);
    assert_int_equal(ms_trace_writer_add(w, 0, 1, ex, NULL, 0, &err), 0);
    assert_int_equal(ms_trace_writer_add(w, 0, 2, ex, NULL, 0, &err), 0);
    assert_int_equal(ms_trace_writer_close(w, &err), 0);
    ms_trace t;
    if (ms_trace_read(p, &t, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(t.n_tokens, 3);
    assert_int_equal(t.batch[0], 1);
    assert_int_equal(t.batch[1], 2);
    assert_int_equal(t.batch[2], 0);
    ms_trace_free(&t);
    size_t len;
    unsigned char *d = (unsigned char *)mst_slurp(p, &len);
    const size_t rec = 1 + 8 + 4; /* tag, seq, pos, 2 layers x 2 u8 ids */
    size_t mark = len - 2 * rec - 5;
    assert_int_equal(d[mark], 3);
    assert_int_equal(d[mark + 1], 2);
    char *q = mst_fmt("%s/wb_bad.bin", tmp);
    struct {
        size_t cut;       /* write the first len - cut bytes */
        unsigned char n0; /* batch length byte */
        const char *needle;
    } cases[] = {
        {rec, 2, "ends inside the batch of record 2 (1 tokens missing)"},
        {2 * rec, 2, "ends after the batch record 2 (no tokens follow)"},
        {0, 1, "record 2: batch of 1 tokens out of range [2, "},
        {0, 3, "ends inside the batch of record 2 (1 tokens missing)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        d[mark + 1] = cases[i].n0;
        write_bytes(q, d, len - cases[i].cut);
        ms_err_clear(&err);
        assert_true(ms_trace_read(q, &t, &err) < 0);
        if (!strstr(err.msg, cases[i].needle)) fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].needle);
    }
    /* two batch records in a row */
    d[mark + 1] = 2;
    unsigned char *d2 = malloc(len + 5);
    memcpy(d2, d, mark + 5);
    memcpy(d2 + mark + 5, d + mark, len - mark);
    write_bytes(q, d2, len + 5);
    free(d2);
    ms_err_clear(&err);
    assert_true(ms_trace_read(q, &t, &err) < 0);
    assert_non_null(strstr(err.msg, "record 3: a batch starts inside the batch of record 2"));
    free(d);
    free(q);
    free(p);
}

static void test_shared_trace(void **state)
{
    (void)state;
    const char *p = MS_SHARED_DIR "/data/traces/flame-moe-290m.trace.jsonl";
    if (!mst_exists(p)) MST_SKIP("%s not found (not redistributable: read from ../shared only)", p);
    ms_trace t, b;
    ms_err err = {0};
    if (ms_trace_read(p, &t, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(t.n_tokens, 2048);
    assert_int_equal(t.info.n_layers, 8);
    assert_int_equal(t.info.n_experts, 64);
    assert_int_equal(t.info.top_k, 6);
    assert_int_equal(t.info.layers[0], 2);
    assert_int_equal(ms_trace_experts(&t, 0, 0)[0], 34);
    assert_int_equal(t.seq[2047], 3);
    char *pb = mst_fmt("%s/flame.bin", tmp);
    assert_int_equal(ms_trace_write(&t, pb, MS_TRACE_BINARY, &err), 0);
    assert_int_equal(ms_trace_read(pb, &b, &err), 0);
    check_equal(&t, &b);
    ms_trace_free(&t);
    ms_trace_free(&b);
    free(pb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_reader_accepts_readme_format),
        cmocka_unit_test(test_reader_errors),
        cmocka_unit_test(test_binary_errors),
        cmocka_unit_test(test_writer_validation),
        cmocka_unit_test(test_batch_reader),
        cmocka_unit_test(test_batch_binary_and_writer),
        cmocka_unit_test(test_shared_trace),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

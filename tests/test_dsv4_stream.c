/* test_dsv4_stream.c - the DeepSeek-V4 family through every engine feature, on
 * a generated model (synth --preset deepseek-v4-tiny: ratios 0,4,32,4,32,
 * window 32, indexer top-16, 2 hash-routed layers, mixed 3/6-bit g128):
 *   - decode logits over 90 positions (windows wrap, every compressor pools,
 *     the indexer drops entries) bit-identical for the minimum budget (which
 *     really streams), larger budgets, uring / pread / mmap / resident, 1-3
 *     threads, several eviction policies and next-layer prefetch; the
 *     prefetch predictions of hash-routed layers are exact;
 *   - greedy tokens from `run` identical across budgets, backends, threads
 *     and prefill chunk sizes;
 *   - a trace recorded by `run` replays in `simulate` to the runtime's hits.
 * The long-context test is test_dsv4_long.c. */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "expert_cache.h"
#include "ms_test.h"
#include "plan.h"
#include "synth.h"

static char *g_model;
#define NT 90
static int g_tokens[NT];

static int setup(void **state)
{
    (void)state;
    g_model = mst_tmpdir("dsv4_stream_model");
    ms_synth_opts o;
    ms_err err = {0};
    if (ms_synth_preset("deepseek-v4-tiny", &o, &err) < 0) return -1;
    o.seed = 4;
    if (ms_synth_write(g_model, &o, NULL, &err) < 0) {
        fprintf(stderr, "synth: %s\n", err.msg);
        return -1;
    }
    for (int i = 0; i < NT; i++) g_tokens[i] = (i * 131 + 7) % 512;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(g_model);
    return 0;
}

typedef struct run_opts {
    const char *io, *policy, *prefetch;
    uint64_t ram;
    int threads;
} run_opts;

/* Decode logits [NT][vocab]; cache and prediction counters when asked. */
static float *run_logits(const run_opts *r, ms_cache_stats *cs, ms_pred_stats *pred)
{
    ms_engine_opts o = {.ram = r->ram, .io = r->io, .threads = r->threads, .ctx = 128, .batch = 1,
                        .policy = r->policy, .prefetch = r->prefetch};
    ms_engine *e;
    ms_err err = {0};
    if (ms_engine_open(g_model, &o, &e, &err) < 0) fail_msg("engine (%s): %s", r->io, err.msg);
    int V = ms_engine_vocab(e);
    float *lg = malloc(sizeof(float) * (size_t)V * NT);
    for (int i = 0; i < NT; i++)
        if (ms_engine_eval(e, g_tokens + i, 1, lg + (size_t)i * V, false, &err) < 0) fail_msg("eval: %s", err.msg);
    if (cs) {
        memset(cs, 0, sizeof *cs);
        if (e->cache) ms_cache_get_stats(e->cache, cs);
    }
    if (pred) *pred = e->pred;
    ms_engine_close(e);
    return lg;
}

static void test_bit_identical(void **state)
{
    (void)state;
    size_t bytes = sizeof(float) * 512 * NT;
    float *ref = run_logits(&(run_opts){"resident", NULL, NULL, 1ull << 30, 2}, NULL, NULL);
    for (size_t i = 0; i < bytes / sizeof(float); i++) assert_true(isfinite(ref[i]));
    uint64_t lo = mst_min_budget(g_model, 128, 1, 2);
    ms_cache_stats cs;
    float *a = run_logits(&(run_opts){"uring", NULL, NULL, lo, 2}, &cs, NULL);
    assert_memory_equal(a, ref, bytes);
    mst_check_streamed(&cs);
    free(a);
    const char *ios[] = {"uring", "pread", "mmap"};
    uint64_t rams[] = {lo, lo + (1u << 20), 1ull << 30};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            float *b = run_logits(&(run_opts){ios[i], NULL, NULL, rams[j], 1 + (i + j) % 3}, NULL, NULL);
            if (memcmp(b, ref, bytes)) fail_msg("io %s ram %llu differs", ios[i], (unsigned long long)rams[j]);
            free(b);
        }
    const char *pols[] = {"lru", "lfu", "next-use", "2q", "eva-duel"};
    for (int i = 0; i < 5; i++) {
        float *b = run_logits(&(run_opts){"uring", pols[i], NULL, lo, 2}, NULL, NULL);
        if (memcmp(b, ref, bytes)) fail_msg("policy %s differs", pols[i]);
        free(b);
    }
    /* prefetch: same output; layers 0 and 1 route by token, so their
     * predictions (at the start of the pass, during layer 0) are all right */
    ms_pred_stats pred;
    float *b = run_logits(&(run_opts){"uring", NULL, "next-layer", lo + (1u << 20), 2}, &cs, &pred);
    assert_memory_equal(b, ref, bytes);
    print_message("prefetch: %llu issued, %llu used; predictions %llu of %llu right\n",
                  (unsigned long long)cs.prefetch_issued, (unsigned long long)cs.prefetch_used,
                  (unsigned long long)pred.correct, (unsigned long long)pred.predicted);
    assert_true(cs.prefetch_issued > 0);
    assert_int_equal(pred.predicted, (uint64_t)5 * 4 * NT); /* 5 layers x top-4, every token */
    assert_true(pred.correct >= 2 * pred.predicted / 5);     /* the hash layers' share, at least */
    free(b);
    free(ref);
}

static char *token_list(const int *t, int n)
{
    size_t cap = (size_t)n * 8 + 1, len = 0;
    char *s = malloc(cap);
    s[0] = 0;
    for (int i = 0; i < n; i++) len += (size_t)snprintf(s + len, cap - len, "%s%d", i ? "," : "", t[i]);
    return s;
}

static void test_greedy_tokens(void **state)
{
    (void)state;
    char *toks = token_list(g_tokens, 70);
    uint64_t lo = mst_min_budget(g_model, 128, 16, 2);
    char *ref = NULL;
    assert_int_equal(mst_run(&ref, NULL, "%s run --model %s --tokens %s -n 20 --temp 0 --ctx 128 --batch 1 --threads 1 "
                                         "--io resident --quiet", MS_BIN, g_model, toks), 0);
    print_message("greedy: %s", ref);
    struct {
        const char *io;
        uint64_t ram;
        int threads, batch;
    } v[] = {{"uring", lo, 2, 16}, {"pread", lo + (2u << 20), 1, 7}, {"mmap", 1ull << 30, 2, 70}, {"uring", 1ull << 30, 3, 5}};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        char *out = NULL, *errs = NULL;
        int rc = mst_run(&out, &errs, "%s run --model %s --tokens %s -n 20 --temp 0 --ctx 128 --batch %d --threads %d "
                                      "--io %s --ram %llu --quiet", MS_BIN, g_model, toks, v[i].batch, v[i].threads,
                         v[i].io, (unsigned long long)v[i].ram);
        if (rc) fail_msg("%s", errs);
        assert_string_equal(out, ref);
        free(out);
        free(errs);
    }
    free(ref);
    free(toks);
}

/* The simulator models one expert size (slot table); the mixed recipe gives
 * two (6-bit down_proj layers), so this model is uniform 4-bit. */
static void test_trace_replay(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("dsv4_trace"), *model = mst_tmpdir("dsv4_trace_model"), *toks = token_list(g_tokens, 40);
    ms_synth_opts o;
    ms_err err = {0};
    assert_int_equal(ms_synth_preset("deepseek-v4-tiny", &o, &err), 0);
    o.recipe = MS_SYNTH_UNIFORM;
    o.bits = 4;
    o.seed = 6;
    if (ms_synth_write(model, &o, NULL, &err) < 0) fail_msg("synth: %s", err.msg);
    for (int batch = 1; batch <= 16; batch += 15) {
        uint64_t ram = mst_min_budget(model, 128, batch, 2) + (2u << 20);
        int rc = mst_run(NULL, NULL, "%s run --model %s --tokens %s -n 16 --temp 0.8 --seed 2 --batch %d --ctx 128 "
                                     "--threads 2 --ram %llu --policy lru --trace %s/t.jsonl --stats-json %s/s.json --quiet",
                         MS_BIN, model, toks, batch, (unsigned long long)ram, dir, dir);
        assert_int_equal(rc, 0);
        char *sp = mst_fmt("%s/s.json", dir), *txt = mst_slurp(sp, NULL);
        json_object *st = json_tokener_parse(txt);
        char *out = NULL;
        rc = mst_run(&out, NULL, "%s simulate --trace %s/t.jsonl --slots %lld --policy lru --json", MS_BIN, dir,
                     (long long)mst_json_int(st, "cache_slots"));
        assert_int_equal(rc, 0);
        json_object *sim = json_tokener_parse(out), *row = json_object_array_get_idx(sim, 0);
        print_message("batch %d: runtime %lld/%lld hits, simulator %lld/%lld\n", batch, (long long)mst_json_int(st, "hits"),
                      (long long)mst_json_int(st, "accesses"), (long long)mst_json_int(row, "hits"), (long long)mst_json_int(row, "accesses"));
        assert_int_equal(mst_json_int(row, "accesses"), mst_json_int(st, "accesses"));
        assert_int_equal(mst_json_int(row, "hits"), mst_json_int(st, "hits"));
        assert_true(mst_json_int(st, "hits") < mst_json_int(st, "accesses"));
        json_object_put(sim);
        json_object_put(st);
        free(out);
        free(txt);
        free(sp);
    }
    free(toks);
    free(model);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bit_identical),
        cmocka_unit_test(test_greedy_tokens),
        cmocka_unit_test(test_trace_replay),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

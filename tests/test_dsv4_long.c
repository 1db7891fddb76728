/* test_dsv4_long.c - a long context on DeepSeek-V4: 32768 positions on a
 * generated model shaped like the real one (window 128, ratios 0/4/128/4, an
 * indexer keeping 16 of up to 8192 entries), small enough to run. The plan's
 * cache bytes follow the formula of the config, the engine runs the context
 * under the minimum streaming budget (misses, evictions), and two prefill
 * chunkings (512 with the last two positions decoded; 1000, all resident)
 * agree on the last positions. Sanitizer builds, ~20x slower, run 8192
 * positions (same code paths: windows wrap, the indexer drops entries) and
 * say so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "expert_cache.h"
#include "ms_test.h"
#include "plan.h"
#include "synth.h"

#if defined(__SANITIZE_ADDRESS__)
#define LONG_CTX 8192
#else
#define LONG_CTX 32768
#endif

/* 32768 positions on a model shaped like the real one (window 128, ratio 128,
 * an indexer that keeps 16 of up to 8192 entries), small enough to run. */
static void test_long_context(void **state)
{
    (void)state;
    enum { CTX = LONG_CTX };
    char *dir = mst_tmpdir("dsv4_long");
    ms_synth_opts o;
    ms_err err = {0};
    assert_int_equal(ms_synth_preset("deepseek-v4-tiny", &o, &err), 0);
    o.arch.n_layers = 4; /* ratios 0, 4, 128, 4 */
    o.arch.v4.plain_ratio = 128;
    o.arch.v4.window = 128;
    o.arch.v4.index_heads = 1;
    o.arch.v4.index_dim = 32;
    o.arch.v4.rope_dim = 16;
    o.seed = 8;
    if (ms_synth_write(dir, &o, NULL, &err) < 0) fail_msg("synth: %s", err.msg);
    /* the budget arithmetic: caches for 32768 positions, by hand */
    ms_model m;
    assert_int_equal(ms_model_open(dir, &m, &err), 0);
    ms_plan p;
    assert_int_equal(ms_plan_compute(&m, 1ull << 40, CTX, 512, 2, &p, &err), 0);
    uint64_t want = 4 * 128 * 128 * 4                   /* rings */
                    + (2 * CTX / 4 + CTX / 128) * 128 * 4 /* pooled entries */
                    + 2 * CTX / 4 * 32 * 4                /* index keys */
                    + (2 * (2 * 8 * 256 + 2 * 8 * 64) + 2 * 128 * 128) * 4; /* open windows */
    assert_int_equal(p.kv_bytes, want);
    uint64_t budget = p.min_budget + (1u << 20);
    print_message("ctx %d: KV %llu bytes, minimum --ram %llu\n", CTX, (unsigned long long)p.kv_bytes,
                  (unsigned long long)p.min_budget);
    ms_model_close(&m);
    if (CTX != 32768) print_message("sanitizer build: %d positions instead of 32768\n", CTX);
    int *toks = malloc(CTX * sizeof *toks);
    for (int i = 0; i < CTX; i++) toks[i] = (int)((i * 2654435761u) >> 7) % 509 + 3;
    /* A: streaming at the minimum budget, chunks of 512, the last 2 positions decoded */
    float *la = malloc(2 * 512 * sizeof(float)), *lb = malloc(2 * 512 * sizeof(float));
    ms_engine_opts oa = {.ram = budget, .io = "uring", .threads = 2, .ctx = CTX, .batch = 512};
    ms_engine *e;
    if (ms_engine_open(dir, &oa, &e, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(ms_engine_eval(e, toks, CTX - 2, NULL, false, &err), 0);
    for (int i = 0; i < 2; i++) assert_int_equal(ms_engine_eval(e, toks + CTX - 2 + i, 1, la + i * 512, false, &err), 0);
    ms_cache_stats cs;
    ms_cache_get_stats(e->cache, &cs);
    print_message("A: prefill %.1f tok/s, %llu expert reads\n", e->stats.prefill_tokens / e->stats.prefill_s,
                  (unsigned long long)cs.expert_reads);
    assert_true(cs.evictions > 0);
    ms_engine_close(e);
    /* B: everything resident, chunks of 1000 (boundaries inside pooling windows), last chunk ends at CTX */
    ms_engine_opts ob = {.io = "resident", .threads = 2, .ctx = CTX, .batch = 1000};
    if (ms_engine_open(dir, &ob, &e, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(ms_engine_eval(e, toks, CTX - 2, NULL, false, &err), 0);
    assert_int_equal(ms_engine_eval(e, toks + CTX - 2, 2, lb, true, &err), 0);
    assert_true(ms_engine_eval(e, toks, 1, NULL, false, &err) < 0); /* full */
    ms_engine_close(e);
    double worst = 0;
    for (int i = 0; i < 2 * 512; i++) {
        assert_true(isfinite(la[i]));
        worst = fmax(worst, fabs(la[i] - lb[i]) / fmax(1.0, fabs(lb[i])));
    }
    print_message("%d-token context: decode vs prefill max rel difference %.3g\n", CTX, worst);
    assert_true(worst < 1e-4);
    free(la);
    free(lb);
    free(toks);
    free(dir);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_context),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_cli.c - the user-facing commands end to end through the built binary:
 * synth -> inspect --json (the acceptance keys), plan, run (ids and text, fixed
 * seed reproducible and pinned, stats JSON keys), chat (KV cache reused across
 * turns), and the one-line errors with exit 1 (runtime) / 2 (usage). */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_test.h"

static char *g_dir;

static int setup(void **state)
{
    (void)state;
    g_dir = mst_synth_tiny("cli_tiny");
    return g_dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(g_dir);
    return 0;
}

static json_object *jparse(const char *s)
{
    json_object *o = json_tokener_parse(s);
    if (!o) fail_msg("not JSON: %.200s", s);
    return o;
}

static int64_t jint(json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v)) fail_msg("missing key %s", k);
    return json_object_get_int64(v);
}

static void test_help_lists_commands(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(mst_run(&out, NULL, "%s --help", MS_BIN), 0);
    const char *cmds[] = {"run", "chat", "logits", "plan", "inspect", "synth", "quantize", "tokenize", "template", "simulate", "bench"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char *needle = mst_fmt("  %s ", cmds[i]);
        assert_non_null(strstr(out, needle));
        free(needle);
    }
    free(out);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char *o = NULL;
        const char *extra = strcmp(cmds[i], "bench") ? "" : " decode";
        assert_int_equal(mst_run(&o, NULL, "%s %s%s --help", MS_BIN, cmds[i], extra), 0);
        assert_non_null(strstr(o, "usage"));
        free(o);
    }
}

static void test_inspect_json(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(mst_run(&out, NULL, "%s inspect %s --json", MS_BIN, g_dir), 0);
    json_object *o = jparse(out);
    json_object *mt;
    assert_true(json_object_object_get_ex(o, "model_type", &mt));
    assert_string_equal(json_object_get_string(mt), "deepseek_v3");
    assert_int_equal(jint(o, "n_moe_layers"), 3);
    assert_int_equal(jint(o, "n_experts"), 16);
    assert_int_equal(jint(o, "top_k"), 4);
    int64_t res = jint(o, "resident_bytes"), exp = jint(o, "expert_bytes");
    assert_true(res > 0 && exp > 0);
    /* every byte of the shards is either resident, expert or header */
    char *idx = mst_fmt("%s/model.safetensors.index.json", g_dir);
    json_object *ix = json_object_from_file(idx), *md, *ts;
    assert_non_null(ix);
    assert_true(json_object_object_get_ex(ix, "metadata", &md));
    assert_true(json_object_object_get_ex(md, "total_size", &ts));
    assert_int_equal(res + exp, json_object_get_int64(ts));
    assert_true(jint(o, "min_ram_bytes") > res);
    json_object_put(ix);
    json_object_put(o);
    free(idx);
    free(out);
}

static void test_plan(void **state)
{
    (void)state;
    char *out = NULL, *errs = NULL;
    assert_int_equal(mst_run(&out, NULL, "%s plan --model %s --ram 1G --ctx 512 --json", MS_BIN, g_dir), 0);
    json_object *o = jparse(out);
    int64_t min = jint(o, "min_ram_bytes");
    assert_true(jint(o, "expert_slots") == jint(o, "total_experts")); /* 1G holds everything */
    json_object_put(o);
    free(out);
    assert_int_equal(mst_run(&out, &errs, "%s plan --model %s --ram %lld --ctx 512", MS_BIN, g_dir, (long long)min - 1), 1);
    assert_non_null(strstr(errs, "too small"));
    free(out);
    free(errs);
}

static double jdbl(json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v)) fail_msg("missing key %s", k);
    return json_object_get_double(v);
}

/* bench decode reports reads per decode token against the minimum: belady on
 * the run's own routing at its slots. Routing does not depend on the policy
 * (outputs are bit-identical), so the minimum is the same for every policy of
 * a phase, and the ratio is ours / minimum, at least about 1. */
static void test_bench_decode_min(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(mst_run(&out, NULL, "%s plan --model %s --ram 1G --ctx 64 --batch 64 --json", MS_BIN, g_dir), 0);
    json_object *p = jparse(out);
    long long ram = (long long)jint(p, "min_ram_bytes") + 150000; /* a few slots: the cache evicts */
    json_object_put(p);
    free(out);
    assert_int_equal(mst_run(&out, NULL, "%s bench decode --model %s --ram %lld --policy lru,eva-duel --device-gbps 1 "
                                         "-n 24 --prompt-tokens 8 --ctx 64 --json", MS_BIN, g_dir, ram), 0);
    json_object *a = jparse(out);
    assert_int_equal(json_object_array_length(a), 4); /* 2 policies x cold, warm */
    double mins[4];
    for (int i = 0; i < 4; i++) {
        json_object *r = json_object_array_get_idx(a, i);
        double ours = jdbl(r, "experts_read_per_token"), mn = jdbl(r, "min_experts_read_per_token");
        double vs = jdbl(r, "reads_vs_min");
        print_message("%s %s: %.2f experts read per token, minimum %.2f (%.2fx)\n",
                      json_object_get_string(json_object_object_get(r, "policy")),
                      json_object_get_string(json_object_object_get(r, "phase")), ours, mn, vs);
        assert_true(mn > 0);
        assert_true(fabs(vs - ours / mn) < 1e-9);
        assert_true(vs > 0.95 && vs < 20);
        mins[i] = mn;
    }
    assert_true(mins[0] == mins[2] && mins[1] == mins[3]); /* same phase, other policy: the same minimum */
    json_object_put(a);
    free(out);
}

static const char *RUN = "%s run --model %s --tokens 0,5,77,300,12 -n 20 --temp 0.8 --seed %d --ram 256M --quiet %s";

static void test_run_reproducible(void **state)
{
    (void)state;
    char *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(mst_run(&a, NULL, RUN, MS_BIN, g_dir, 42, ""), 0);
    assert_int_equal(mst_run(&b, NULL, RUN, MS_BIN, g_dir, 42, "--threads 1 --io pread"), 0);
    assert_int_equal(mst_run(&c, NULL, RUN, MS_BIN, g_dir, 7, ""), 0);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    /* ids, comma-separated, 20 of them */
    int commas = 0;
    for (char *p = a; *p; p++) commas += *p == ',';
    assert_int_equal(commas, 19);
    free(a);
    free(b);
    free(c);
    /* greedy output of the tiny preset (seed 1) with the scalar reference kernels (the
     * same on every CPU), pinned: a change here means the forward pass, the sampler or
     * the generator changed behaviour */
    char *g = NULL;
    assert_int_equal(
        mst_run(&g, NULL, "%s run --model %s --tokens 0,5,77,300,12 -n 12 --temp 0 --ref-kernels --quiet", MS_BIN, g_dir), 0);
    assert_string_equal(g, "33,353,441,76,65,360,486,227,495,370,268,382\n");
    free(g);
}

static void test_run_text_and_stats(void **state)
{
    (void)state;
    char *out = NULL, *errs = NULL;
    char *sj = mst_fmt("%s/stats.json", MS_TMP_DIR);
    assert_int_equal(mst_run(&out, &errs, "%s run --model %s --prompt 'Hello world' -n 8 --ram 256M --stats-json %s",
                             MS_BIN, g_dir, sj),
                     0);
    assert_non_null(strstr(errs, "decode"));
    assert_non_null(strstr(errs, "tok/s"));
    char *txt = mst_slurp(sj, NULL);
    json_object *o = jparse(txt);
    const char *keys[] = {"decode_tok_s", "prefill_tok_s", "hit_rate", "expert_reads", "bytes_read", "read_gbps",
                          "io_wait_fraction", "peak_rss_bytes", "ram_budget_bytes", "io_backend", "policy"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_object *v;
        if (!json_object_object_get_ex(o, keys[i], &v)) fail_msg("stats JSON lacks %s", keys[i]);
    }
    assert_int_equal(jint(o, "ram_budget_bytes"), 256 << 20);
    assert_true(jint(o, "peak_rss_bytes") <= 256 << 20);
    json_object_put(o);
    free(txt);
    free(out);
    free(errs);
    /* prefetch: precision / recall and the wait it saved (estimate = used x wait per demand miss) */
    assert_int_equal(mst_run(&out, &errs,
                             "%s run --model %s --prompt 'Hello world' -n 8 --ram 256M --prefetch next-layer "
                             "--stats-json %s",
                             MS_BIN, g_dir, sj),
                     0);
    assert_non_null(strstr(errs, "(= recall at top-k)"));
    assert_non_null(strstr(errs, "s wait saved"));
    txt = mst_slurp(sj, NULL);
    o = jparse(txt);
    json_object *v;
    const char *pk[] = {"prefetch_precision", "prefetch_recall", "prefetch_use_rate", "prefetch_wait_saved_s", "io_wait_s"};
    double pv[5];
    for (int i = 0; i < 5; i++) {
        if (!json_object_object_get_ex(o, pk[i], &v)) fail_msg("stats JSON lacks %s", pk[i]);
        pv[i] = json_object_get_double(v);
        assert_true(pv[i] >= 0);
    }
    assert_true(pv[0] <= 1 && pv[1] == pv[0] && pv[2] <= 1);
    int64_t used = jint(o, "prefetch_used"), misses = jint(o, "misses");
    assert_true(jint(o, "prefetch_issued") > 0);
    double want = misses ? (double)used * pv[4] / (double)misses : 0;
    assert_true(fabs(pv[3] - want) <= 1e-9 * (1 + want));
    json_object_put(o);
    free(txt);
    free(sj);
    free(out);
    free(errs);
}

static void test_chat_keeps_cache(void **state)
{
    (void)state;
    char *out = NULL, *errs = NULL;
    int rc = mst_run(&out, &errs,
                     "printf 'Tell me a long story about the sea and the ships on it\\n/stats\\nok\\n' | %s chat --model %s "
                     "-n 6 --temp 0 --ram 256M",
                     MS_BIN, g_dir);
    assert_int_equal(rc, 0);
    /* two answers */
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 2);
    /* stderr: "/stats" after turn 1, then the final line; prefill counts */
    unsigned p1 = 0, p2 = 0;
    char *s1 = strstr(errs, "prefill ");
    assert_non_null(s1);
    sscanf(s1, "prefill %u", &p1);
    char *s2 = strstr(s1 + 1, "prefill ");
    assert_non_null(s2);
    sscanf(s2, "prefill %u", &p2);
    print_message("prefill tokens: turn 1 %u, both turns %u\n", p1, p2);
    assert_true(p1 > 10);
    assert_true(p2 - p1 < p1); /* turn 2 fed only its new tokens, not the whole conversation */
    free(out);
    free(errs);
}

static void test_errors(void **state)
{
    (void)state;
    char *errs = NULL;
    assert_int_equal(mst_run(NULL, &errs, "%s run --model /nonexistent --tokens 1 -n 1", MS_BIN), 1);
    assert_non_null(strstr(errs, "/nonexistent"));
    assert_null(strchr(strchr(errs, '\n') + 1, '\n')); /* one line */
    free(errs);
    assert_int_equal(mst_run(NULL, &errs, "%s run --model %s --tokens 1 --ram 12Q", MS_BIN, g_dir), 2);
    assert_non_null(strstr(errs, "--ram"));
    free(errs);
    assert_int_equal(mst_run(NULL, &errs, "%s run --model %s --tokens 1,x", MS_BIN, g_dir), 2);
    free(errs);
    assert_int_equal(mst_run(NULL, &errs, "%s run --model %s --tokens 1,99999 -n 1", MS_BIN, g_dir), 1);
    assert_non_null(strstr(errs, "outside the vocabulary"));
    free(errs);
    assert_int_equal(mst_run(NULL, &errs, "%s frobnicate", MS_BIN), 2);
    free(errs);
    assert_int_equal(mst_run(NULL, &errs, "%s inspect %s/config.json", MS_BIN, g_dir), 1);
    assert_non_null(strstr(errs, "not a directory"));
    free(errs);
    /* option errors are one line of ours, not getopt's message plus ours; a run that
     * cannot start prints its error only */
    static const struct {
        const char *args, *want;
        int rc;
    } cases[] = {
        {"logits --model %s --tokens", "option --tokens needs a value", 2},
        {"run --model %s --bogus", "unknown option '--bogus'", 2},
        {"plan --model %s -Z", "unknown option '-Z'", 2},
        {"bench decode --model %s --ram 1G --io bogus", "--io: unknown backend 'bogus'", 2},
        {"bench decode --model %s --ram 1G --policy nope", "unknown policy 'nope'", 2},
        {"bench decode --model %s --ram 1G --prefetch all", "--prefetch all", 2},
        {"run --model %s --tokens 1 --ram 0", "--ram 0", 2},
        {"run --model %s --tokens 1,2,3 --ctx 2 -n 4", "does not fit the context", 1}, /* no stats line either */
        /* run and chat share one sampling-option parser, checked before the load */
        {"run --model %s --tokens 1 --top-k abc", "run: --top-k: 'abc' is not an integer", 2},
        {"chat --model %s --top-k abc", "chat: --top-k: 'abc' is not an integer", 2},
        {"run --model %s --tokens 1 --temp -1", "--temp must be >= 0", 2},
        {"chat --model %s --temp -1", "--temp must be >= 0", 2},
        {"chat --model %s --repeat-penalty x", "--repeat-penalty", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *cmd = mst_fmt(cases[i].args, g_dir);
        int rc = mst_run(NULL, &errs, "%s %s", MS_BIN, cmd);
        if (rc != cases[i].rc || !strstr(errs, cases[i].want) || strchr(errs, '\n') != errs + strlen(errs) - 1)
            fail_msg("moestream %s: exit %d, stderr '%s' (want exit %d, one line with '%s')", cmd, rc, errs, cases[i].rc,
                     cases[i].want);
        free(errs);
        free(cmd);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_lists_commands), cmocka_unit_test(test_inspect_json),
        cmocka_unit_test(test_plan),                cmocka_unit_test(test_run_reproducible),
        cmocka_unit_test(test_run_text_and_stats),  cmocka_unit_test(test_chat_keeps_cache),
        cmocka_unit_test(test_errors),              cmocka_unit_test(test_bench_decode_min),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

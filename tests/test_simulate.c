/* test_simulate.c - `moestream simulate` end to end through the built CLI
 * (MS_BIN): JSON schema and the "default" flag, JSON hits equal the library
 * simulator (= the runtime's slot core), the table, a well-formed SVG with one
 * polyline per policy, JSONL and binary traces give identical results, profiles
 * and prefetch replay, and every bad input gives one clear line and the right
 * exit code (2 usage, 1 runtime). */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_test.h"
#include "policy.h"
#include "sim.h"
#include "trace.h"

#define SMALL MS_TEST_DATA "/traces/small-topics.jsonl"

static char *tmp;

static int setup(void **state)
{
    (void)state;
    tmp = mst_tmpdir("simulate");
    return tmp ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(tmp);
    return 0;
}

static json_object *run_json(const char *args)
{
    char *out = NULL, *errs = NULL;
    int rc = mst_run(&out, &errs, "%s simulate %s --json", MS_BIN, args);
    if (rc != 0) fail_msg("simulate %s: exit %d: %s", args, rc, errs ? errs : "");
    json_object *j = json_tokener_parse(out);
    if (!j || !json_object_is_type(j, json_type_array)) fail_msg("not a JSON array: %.200s", out);
    free(out);
    free(errs);
    return j;
}

static json_object *field(json_object *o, const char *name, json_type type)
{
    json_object *v;
    if (!json_object_object_get_ex(o, name, &v)) fail_msg("row lacks \"%s\"", name);
    if (!json_object_is_type(v, type)) fail_msg("\"%s\" has the wrong JSON type", name);
    return v;
}

static void test_help(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(mst_run(&out, NULL, "%s simulate --help", MS_BIN), 0);
    const char *opts[] = {"--trace", "--slots", "--capacity", "--ram", "--model", "--policy", "--profile",
                          "--save-profile", "--prefetch", "--json", "--plot", "default"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (!strstr(out, opts[i])) fail_msg("--help does not explain %s", opts[i]);
    for (size_t i = 0; i < ms_policy_count(); i++) assert_non_null(strstr(out, ms_policy_at(i)->name));
    free(out);
}

static void test_json_schema(void **state)
{
    (void)state;
    json_object *j = run_json("--trace " SMALL " --slots 8,16 --policy lru,eva-duel,lfu-decay:hl=4,belady");
    assert_int_equal(json_object_array_length(j), 8);
    ms_trace t;
    ms_err err = {0};
    assert_int_equal(ms_trace_read(SMALL, &t, &err), 0);
    for (size_t i = 0; i < 8; i++) {
        json_object *r = json_object_array_get_idx(j, i);
        const char *pol = json_object_get_string(field(r, "policy", json_type_string));
        bool def = json_object_get_boolean(field(r, "default", json_type_boolean));
        int64_t slots = json_object_get_int64(field(r, "slots", json_type_int));
        double hr = json_object_get_double(field(r, "hit_rate", json_type_double));
        int64_t hits = json_object_get_int64(field(r, "hits", json_type_int));
        int64_t acc = json_object_get_int64(field(r, "accesses", json_type_int));
        assert_int_equal(def, !strcmp(pol, ms_policy_default()));
        assert_int_equal(slots, i % 2 ? 16 : 8);
        assert_int_equal(acc, 300 * 4 * 2);
        assert_true(hits >= 0 && hits <= acc);
        assert_true(fabs(hr - (double)hits / acc) < 1e-6);
        /* same number as the library simulator */
        ms_sim_result sr;
        assert_int_equal(ms_simulate(&t, NULL, 0, pol, (uint32_t)slots, NULL, &sr, &err), 0);
        assert_int_equal(sr.stats.hits, hits);
        /* belady rows (last two) bound the others */
        json_object *b = json_object_array_get_idx(j, 6 + i % 2);
        assert_true(hits <= json_object_get_int64(field(b, "hits", json_type_int)));
        /* reads against the minimum: reads = misses + prefetches, the minimum is
         * belady's misses per token, belady's own row is exactly 1 */
        int64_t reads = json_object_get_int64(field(r, "reads", json_type_int));
        int64_t bm = json_object_get_int64(field(b, "misses", json_type_int));
        assert_int_equal(reads, sr.stats.misses + sr.stats.prefetch_inserted);
        assert_true(fabs(json_object_get_double(field(r, "reads_per_token", json_type_double)) - reads / 300.0) < 1e-5);
        assert_true(fabs(json_object_get_double(field(r, "min_reads_per_token", json_type_double)) - bm / 300.0) < 1e-5);
        double vs = json_object_get_double(field(r, "reads_vs_min", json_type_double));
        assert_true(fabs(vs - (double)reads / (double)bm) < 1e-5);
        assert_true(vs >= 1.0 - 1e-9);
        if (i >= 6) assert_true(fabs(vs - 1.0) < 1e-9);
    }
    assert_string_equal(json_object_get_string(field(json_object_array_get_idx(j, 2), "policy", json_type_string)),
                        ms_policy_default());
    json_object_put(j);
    ms_trace_free(&t);
    /* default capacity sweep and policy list: all online policies x 3 capacities */
    j = run_json("--trace " SMALL);
    size_t n_online = 0;
    for (size_t i = 0; i < ms_policy_count(); i++)
        if (!(ms_policy_at(i)->flags & MS_POLICY_NEEDS_PROFILE)) n_online++;
    assert_int_equal(json_object_array_length(j), n_online * 3);
    int n_default = 0;
    for (size_t i = 0; i < json_object_array_length(j); i++)
        n_default += json_object_get_boolean(field(json_object_array_get_idx(j, i), "default", json_type_boolean));
    assert_int_equal(n_default, 3);
    json_object_put(j);
}

static void test_table(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(mst_run(&out, NULL, "%s simulate --trace %s --capacity 25%%,50%%", MS_BIN, SMALL), 0);
    char *star = mst_fmt("*%s", ms_policy_default());
    assert_non_null(strstr(out, star));
    assert_non_null(strstr(out, "16 (25.0%)"));
    assert_non_null(strstr(out, "32 (50.0%)"));
    assert_non_null(strstr(out, "belady"));
    assert_non_null(strstr(out, "(100%)"));
    free(star);
    free(out);
}

/* Minimal XML well-formedness check: tags nest and close, attributes quoted. */
static bool xml_ok(const char *s, int *n_polyline)
{
    const char *stack[64];
    size_t lens[64];
    int depth = 0;
    *n_polyline = 0;
    while ((s = strchr(s, '<'))) {
        if (s[1] == '?') {
            s = strstr(s, "?>");
            if (!s) return false;
            continue;
        }
        const char *end = strchr(s, '>');
        if (!end) return false;
        int quotes = 0;
        for (const char *q = s; q < end; q++) quotes += *q == '"';
        if (quotes % 2) return false;
        if (s[1] == '/') {
            size_t n = strcspn(s + 2, " >");
            if (!depth || lens[depth - 1] != n || strncmp(stack[depth - 1], s + 2, n)) return false;
            depth--;
        } else {
            size_t n = strcspn(s + 1, " />\n");
            if (!strncmp(s + 1, "polyline", 8)) (*n_polyline)++;
            if (end[-1] != '/') {
                if (depth == 64) return false;
                stack[depth] = s + 1;
                lens[depth++] = n;
            }
        }
        s = end + 1;
    }
    return depth == 0;
}

static void test_plot(void **state)
{
    (void)state;
    char *svg = mst_fmt("%s/plot.svg", tmp);
    char *out = NULL;
    assert_int_equal(mst_run(&out, NULL, "%s simulate --trace %s --slots 4,8,16,32 --policy lru,lfu,next-use,belady --plot %s",
                             MS_BIN, SMALL, svg),
                     0);
    size_t len;
    char *s = mst_slurp(svg, &len);
    assert_non_null(s);
    assert_true(!strncmp(s, "<?xml", 5));
    assert_non_null(strstr(s, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_non_null(strstr(s, "</svg>"));
    int n_poly;
    assert_true(xml_ok(s, &n_poly));
    assert_int_equal(n_poly, 8); /* hit rate, then reads x the minimum */
    assert_non_null(strstr(s, ">next-use</text>")); /* legend */
    assert_non_null(strstr(s, "hit rate"));          /* axis label */
    assert_non_null(strstr(s, "reads / minimum reads"));
    assert_non_null(strstr(s, "height=\"1040\""));   /* two stacked panels */
    /* each polyline has 4 points */
    for (const char *p = strstr(s, "<polyline"); p; p = strstr(p + 1, "<polyline")) {
        const char *pts = strstr(p, "points=\"") + 8;
        int commas = 0;
        for (; *pts != '"'; pts++) commas += *pts == ',';
        assert_int_equal(commas, 4);
    }
    free(s);
    free(out);
    free(svg);
}

static void test_binary_and_profile_and_prefetch(void **state)
{
    (void)state;
    ms_trace t;
    ms_err err = {0};
    assert_int_equal(ms_trace_read(SMALL, &t, &err), 0);
    char *bin = mst_fmt("%s/small.bin", tmp), *pred = mst_fmt("%s/pred.jsonl", tmp), *prof = mst_fmt("%s/p.prof", tmp);
    assert_int_equal(ms_trace_write(&t, bin, MS_TRACE_BINARY, &err), 0);
    char *o1 = NULL, *o2 = NULL;
    assert_int_equal(mst_run(&o1, NULL, "%s simulate --trace %s --slots 8,16 --json", MS_BIN, SMALL), 0);
    assert_int_equal(mst_run(&o2, NULL, "%s simulate --trace %s --slots 8,16 --json", MS_BIN, bin), 0);
    assert_string_equal(o1, o2);
    free(o1);
    free(o2);
    /* profile: save from the trace, then run pin with it */
    char *args = mst_fmt("--trace %s --slots 16 --policy lru --save-profile %s", SMALL, prof);
    json_object *j = run_json(args);
    json_object_put(j);
    free(args);
    assert_true(mst_exists(prof));
    args = mst_fmt("--trace %s --slots 16 --policy pin,pin:frac=0.25 --profile %s", SMALL, prof);
    j = run_json(args);
    assert_int_equal(json_object_array_length(j), 2);
    json_object_put(j);
    free(args);
    /* prefetch replay: the next layer predicted perfectly */
    t.max_pred = t.info.top_k;
    t.predicted = malloc(t.n_tokens * t.info.n_layers * t.max_pred * sizeof *t.predicted);
    for (uint64_t i = 0; i < t.n_tokens; i++)
        for (uint32_t l = 0; l < t.info.n_layers; l++)
            for (uint32_t q = 0; q < t.max_pred; q++)
                t.predicted[(i * t.info.n_layers + l) * t.max_pred + q] = ms_trace_experts(&t, i, l)[q];
    assert_int_equal(ms_trace_write(&t, pred, MS_TRACE_JSONL, &err), 0);
    args = mst_fmt("--trace %s --slots 8 --policy lru --prefetch", pred);
    j = run_json(args);
    json_object *r = json_object_array_get_idx(j, 0);
    assert_true(json_object_get_int64(field(r, "hits_loading", json_type_int)) > 0);
    /* only the very first group misses: a predicted set never evicts its own members */
    assert_int_equal(json_object_get_int64(field(r, "misses", json_type_int)), 2);
    assert_int_equal(json_object_get_int64(field(r, "prefetch_used", json_type_int)),
                     json_object_get_int64(field(r, "hits_loading", json_type_int)));
    json_object_put(j);
    free(args);
    ms_trace_free(&t);
    free(bin);
    free(pred);
    free(prof);
}

static void expect_exit(int code, const char *needle, const char *fmt, const char *arg)
{
    char *cmd = mst_fmt(fmt, arg ? arg : "");
    char *out = NULL, *errs = NULL;
    int rc = mst_run(&out, &errs, "%s simulate %s", MS_BIN, cmd);
    if (rc != code) fail_msg("simulate %s: exit %d, expected %d (%s)", cmd, rc, code, errs);
    if (needle && !strstr(errs, needle)) fail_msg("simulate %s: stderr '%s' lacks '%s'", cmd, errs, needle);
    /* one line */
    char *nl = strchr(errs, '\n');
    if (code && (!nl || nl[1])) fail_msg("simulate %s: error is not one line: '%s'", cmd, errs);
    free(cmd);
    free(out);
    free(errs);
}

static void test_errors(void **state)
{
    (void)state;
    expect_exit(2, "--trace FILE is required", "--slots 8", NULL);
    expect_exit(2, "unknown policy 'fifo'", "--trace %s --policy fifo", SMALL);
    expect_exit(2, "--policy pin needs --profile", "--trace %s --policy pin", SMALL);
    expect_exit(2, "unknown option 'x'", "--trace %s --policy lru:x=1", SMALL);
    expect_exit(2, "--slots", "--trace %s --slots 1", SMALL);
    expect_exit(2, "--slots", "--trace %s --slots 8,,9", SMALL);
    expect_exit(2, "64 (layer, expert) pairs", "--trace %s --slots 65", SMALL);
    expect_exit(2, "--capacity", "--trace %s --capacity 0%%", SMALL);
    expect_exit(2, "--capacity", "--trace %s --capacity 1%%", SMALL); /* < top_k slots */
    expect_exit(2, "only one of", "--trace %s --slots 8 --capacity 50%%", SMALL);
    expect_exit(2, "--ram needs --model", "--trace %s --ram 8G", SMALL);
    expect_exit(2, "--ram", "--trace %s --ram 8X --model /tmp", SMALL);
    expect_exit(1, "config.json", "--trace %s --ram 8G,16G --model /nonexistent-model", SMALL);
    expect_exit(2, "only used with --ram", "--trace %s --slots 8 --batch 16", SMALL);
    expect_exit(2, "--batch", "--trace %s --ram 8G --model /tmp --batch 0", SMALL);
    expect_exit(2, "--kv f16: use f32 or bf16", "--trace %s --ram 8G --model /tmp --kv f16", SMALL);
    expect_exit(2, "unknown option", "--trace %s --bogus", SMALL);
    expect_exit(2, "unexpected argument", "--trace %s extra", SMALL);
    expect_exit(1, "cannot open", "--trace %s", "/nonexistent/trace.jsonl");
    char *bad = mst_fmt("%s/bad.jsonl", tmp);
    FILE *f = fopen(bad, "w");
    fputs("{\"format\": \"moestream-trace\", \"version\": 1, \"n_layers\": 1, \"n_experts\": 4, \"top_k\": 2}\n"
          "{\"seq\":0,\"pos\":0,\"experts\":[[0,1]]}\n{\"seq\":0,\"pos\":1,\"experts\":[[0,4]]}\n",
          f);
    fclose(f);
    expect_exit(1, "line 3", "--trace %s --slots 2", bad);
    expect_exit(1, "cannot create", "--trace " SMALL " --plot %s", "/nonexistent/dir/x.svg");
    free(bad);
}

/* --ram + --model: slots come from the runtime's budget plan for that model. */
static void test_ram_model(void **state)
{
    (void)state;
    char *model = mst_fmt("%s/tiny", tmp), *tr = mst_fmt("%s/tiny.jsonl", tmp);
    char *out = NULL, *errs = NULL;
    if (mst_run(NULL, &errs, "%s synth --preset tiny --out %s", MS_BIN, model) != 0) fail_msg("synth: %s", errs);
    free(errs);
    /* a trace with the tiny model's geometry: 3 MoE layers x 16 experts, top-4 */
    ms_trace_info info = {.n_layers = 3, .n_experts = 16, .top_k = 4};
    ms_trace_writer *w;
    ms_err err = {0};
    assert_int_equal(ms_trace_writer_open(tr, MS_TRACE_BINARY, &info, &w, &err), 0);
    for (uint32_t t = 0; t < 100; t++) {
        uint32_t ex[12];
        for (uint32_t l = 0; l < 3; l++)
            for (uint32_t j = 0; j < 4; j++) ex[l * 4 + j] = (t * (l + 1) + j * 5 + (t % 3 ? 0 : 1)) % 16;
        assert_int_equal(ms_trace_writer_add(w, 0, t, ex, NULL, 0, &err), 0);
    }
    assert_int_equal(ms_trace_writer_close(w, &err), 0);
    char *args = mst_fmt("--trace %s --model %s --ram 104M,106M,1G --policy lru,next-use", tr, model);
    json_object *j = run_json(args);
    assert_int_equal(json_object_array_length(j), 6);
    const char *rams[3] = {"104M", "106M", "1G"};
    for (int i = 0; i < 3; i++) {
        /* the same number of slots as `plan` reports for that budget */
        assert_int_equal(mst_run(&out, NULL, "%s plan --model %s --ram %s --json", MS_BIN, model, rams[i]), 0);
        json_object *pl = json_tokener_parse(out);
        assert_non_null(pl);
        int64_t want = json_object_get_int64(field(pl, "expert_slots", json_type_int));
        json_object *r = json_object_array_get_idx(j, i);
        assert_int_equal(json_object_get_int64(field(r, "slots", json_type_int)), want);
        assert_int_equal(json_object_get_int64(field(r, "ram_bytes", json_type_int)),
                         json_object_get_int64(field(pl, "ram_budget_bytes", json_type_int)));
        json_object_put(pl);
        free(out);
    }
    /* 1G holds every expert: only compulsory misses */
    assert_int_equal(json_object_get_int64(field(json_object_array_get_idx(j, 2), "slots", json_type_int)), 48);
    json_object_put(j);
    free(args);
    /* budget below the plan's minimum, and a trace of another geometry */
    args = mst_fmt("--trace %s --model %s --ram 10M", tr, model);
    expect_exit(1, "too small", "%s", args);
    free(args);
    args = mst_fmt("--trace " SMALL " --model %s --ram 1G", model);
    expect_exit(1, "has 3 MoE layers x 16 experts but the trace", "%s", args);
    free(args);
    free(model);
    free(tr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_json_schema),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_plot),
        cmocka_unit_test(test_binary_and_profile_and_prefetch),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_ram_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

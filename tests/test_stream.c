/* test_stream.c - expert streaming end to end on generated models:
 *   - logits are bit-identical for the minimum budget, a middle budget and
 *     everything cached, for the uring / pread / mmap / resident sources, 1 and
 *     N threads, and several eviction policies;
 *   - a small budget really streams (misses and evictions happen) and stays
 *     within the budget (peak RSS of a child process);
 *   - the page cache does not fill with the model (mincore on the shards);
 *   - a trace recorded by `run` (token by token, or with prefill chunks and
 *     waves) replays in `simulate` to exactly the runtime's hit count;
 *   - faults: injected short reads / EAGAIN give the same logits, an injected
 *     EIO and a shard truncated under a running engine give a clean error. */
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch.h"
#include "engine.h"
#include "expert_cache.h"
#include "ms_test.h"
#include "plan.h"
#include "synth.h"

static char *g_model; /* generated once per test binary */
static const int g_tokens[] = {0, 17, 300, 45, 99, 2, 311, 7, 64, 128, 256, 5};
#define NT ((int)(sizeof g_tokens / sizeof g_tokens[0]))

static int setup(void **state)
{
    (void)state;
    g_model = mst_tmpdir("stream_model");
    ms_synth_opts o;
    ms_err err = {0};
    if (ms_synth_preset("tiny", &o, &err) < 0) return -1;
    o.arch.n_layers = 5; /* 4 MoE layers */
    o.seed = 11;
    ms_synth_result r;
    if (ms_synth_write(g_model, &o, &r, &err) < 0) {
        fprintf(stderr, "synth: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(g_model);
    return 0;
}

static uint64_t min_budget(int ctx, int batch, int threads)
{
    ms_model m;
    ms_err err = {0};
    assert_int_equal(ms_model_open(g_model, &m, &err), 0);
    ms_plan p;
    assert_int_equal(ms_plan_compute(&m, 1ull << 40, ctx, batch, threads, &p, &err), 0);
    ms_model_close(&m);
    return p.min_budget;
}

/* Decode logits at every position (vocab * NT floats) with the given source. */
static const char *g_prefetch; /* prefetch mode for run_logits */

static float *run_logits(const char *io, uint64_t ram, int threads, const char *policy, ms_cache_stats *cs)
{
    ms_engine_opts o = {.ram = ram, .io = io, .threads = threads, .ctx = 64, .batch = 1, .policy = policy,
                        .prefetch = g_prefetch};
    ms_engine *e;
    ms_err err = {0};
    if (ms_engine_open(g_model, &o, &e, &err) < 0) fail_msg("engine (%s, %llu): %s", io, (unsigned long long)ram, err.msg);
    int V = ms_engine_vocab(e);
    float *lg = malloc(sizeof(float) * (size_t)V * NT);
    for (int i = 0; i < NT; i++)
        if (ms_engine_eval(e, g_tokens + i, 1, lg + (size_t)i * V, false, &err) < 0) fail_msg("eval: %s", err.msg);
    if (cs) {
        memset(cs, 0, sizeof *cs);
        if (e->cache) ms_cache_get_stats(e->cache, cs);
    }
    ms_engine_close(e);
    return lg;
}

static void test_bit_identical(void **state)
{
    (void)state;
    ms_model m;
    ms_err err = {0};
    assert_int_equal(ms_model_open(g_model, &m, &err), 0);
    size_t n = (size_t)m.cfg.vocab_size * NT;
    ms_model_close(&m);
    float *ref = run_logits("resident", 1ull << 30, 2, NULL, NULL);
    uint64_t lo = min_budget(64, 1, 2);
    ms_cache_stats cs;
    /* minimum budget streams: misses, evictions */
    float *a = run_logits("uring", lo, 2, NULL, &cs);
    assert_memory_equal(a, ref, n * sizeof(float));
    print_message("min budget: %lld slots, %llu hits / %llu accesses, %llu evictions\n", (long long)cs.slots,
                  (unsigned long long)cs.hits, (unsigned long long)cs.accesses, (unsigned long long)cs.evictions);
    assert_true(cs.misses > 0 && cs.evictions > 0);
    free(a);
    const char *ios[] = {"uring", "pread", "mmap"};
    uint64_t rams[] = {lo, lo + (1u << 20), 1ull << 30};
    int threads[] = {1, 2, 3};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            float *b = run_logits(ios[i], rams[j], threads[(i + j) % 3], NULL, NULL);
            if (memcmp(b, ref, n * sizeof(float)) != 0) fail_msg("io %s ram %llu differs", ios[i], (unsigned long long)rams[j]);
            free(b);
        }
    /* next-layer prefetch changes what is cached, never the output */
    g_prefetch = "next-layer";
    for (int j = 0; j < 2; j++) {
        float *b = run_logits("uring", rams[j], 2, NULL, &cs);
        if (memcmp(b, ref, n * sizeof(float)) != 0) fail_msg("prefetch at ram %llu differs", (unsigned long long)rams[j]);
        print_message("prefetch at %llu: %llu prefetched, %llu used\n", (unsigned long long)rams[j],
                      (unsigned long long)cs.prefetch_issued, (unsigned long long)cs.prefetch_used);
        assert_true(cs.prefetch_issued > 0);
        free(b);
    }
    g_prefetch = NULL;
    const char *pols[] = {"lru", "lfu", "lru-layer", "2q", "tinylfu"};
    for (size_t i = 0; i < sizeof pols / sizeof pols[0]; i++) {
        float *b = run_logits("uring", lo, 2, pols[i], NULL);
        if (memcmp(b, ref, n * sizeof(float)) != 0) fail_msg("policy %s differs", pols[i]);
        free(b);
    }
    free(ref);
}

static void test_faults(void **state)
{
    (void)state;
    ms_model m;
    ms_err err = {0};
    assert_int_equal(ms_model_open(g_model, &m, &err), 0);
    size_t n = (size_t)m.cfg.vocab_size * NT;
    ms_model_close(&m);
    uint64_t lo = min_budget(64, 1, 2);
    float *ref = run_logits("resident", 1ull << 30, 2, NULL, NULL);
    float *a = run_logits("fault:short=0.4,eagain=0.3,eintr=0.1,delay_us=50,seed=7", lo, 2, NULL, NULL);
    assert_memory_equal(a, ref, n * sizeof(float));
    free(a);
    free(ref);
    /* EIO: a clean error naming the file and offset, from the CLI too */
    char *errs = NULL;
    int rc = mst_run(NULL, &errs, "%s run --model %s --tokens 1,2,3,4 -n 4 --ctx 64 --batch 1 --ram %llu --io fault:eio=1 --quiet", MS_BIN,
                     g_model, (unsigned long long)(lo + (8u << 20)));
    assert_int_equal(rc, 1);
    assert_non_null(strstr(errs, "safetensors"));
    assert_non_null(strstr(errs, "offset"));
    assert_non_null(strstr(errs, "Input/output error"));
    free(errs);
}

static void test_truncated_under_run(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("stream_trunc");
    char *cmd = mst_fmt("cp -r %s/. %s/", g_model, dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    uint64_t lo = min_budget(64, 1, 2);
    ms_engine_opts o = {.ram = lo, .io = "uring", .threads = 2, .ctx = 64, .batch = 1};
    ms_engine *e;
    ms_err err = {0};
    assert_int_equal(ms_engine_open(dir, &o, &e, &err), 0);
    /* cut every shard to its header: expert reads now run past EOF */
    for (int i = 0; i < e->model.tt.n_files; i++)
        assert_int_equal(truncate(e->model.tt.files[i].path, (off_t)e->model.tt.files[i].data_start), 0);
    int rc = 0;
    for (int i = 0; i < NT && rc == 0; i++) rc = ms_engine_eval(e, g_tokens + i, 1, NULL, false, &err);
    assert_true(rc < 0);
    print_message("truncated: %s\n", err.msg);
    assert_non_null(strstr(err.msg, ".safetensors"));
    ms_engine_close(e);
    /* and a truncated shard is refused at open */
    ms_err e2 = {0};
    assert_true(ms_engine_open(dir, &o, &e, &e2) < 0);
    assert_non_null(strstr(e2.msg, "run past"));
    free(dir);
}

static json_object *read_json(const char *path)
{
    char *t = mst_slurp(path, NULL);
    assert_non_null(t);
    json_object *o = json_tokener_parse(t);
    free(t);
    assert_non_null(o);
    return o;
}

static int64_t jint(json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v)) fail_msg("missing %s", k);
    return json_object_get_int64(v);
}

/* Record a trace with `run`, replay it with `simulate` (same slots and policy,
 * or the same --ram and run settings through the budget plan): the hit and
 * access counts must be the runtime's exactly. Decode tokens one by one
 * (--batch 1), and prefill in chunks (--batch 16: passes marked "batch" in the
 * trace, the union of a chunk's experts acquired in waves when it exceeds the
 * cache's max_acquire). */
static void test_trace_replay_matches_runtime(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("stream_trace");
    char prompt[512] = "1";
    for (int i = 2; i <= 40; i++) snprintf(prompt + strlen(prompt), sizeof prompt - strlen(prompt), ",%d", i * 7);
    struct {
        int batch;
        const char *tokens;
        uint64_t ram;
        bool by_ram; /* simulate --ram ... --model (else --slots) */
    } cases[] = {
        {1, "1,2,3,4,5,6,7,8", min_budget(64, 1, 2) + (200u << 10), false},
        {16, prompt, min_budget(64, 16, 2) + (64u << 10), true},
        {16, prompt, min_budget(64, 16, 2) + (400u << 10), true},
    };
    const char *pols[] = {"lru", "next-use", "lfu", "lru-layer"};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int p = 0; p < 4; p++) {
            int rc = mst_run(NULL, NULL,
                             "%s run --model %s --tokens %s -n 24 --temp 0.8 --seed 3 --batch %d --ctx 64 --threads 2 "
                             "--ram %llu --policy %s --trace %s/t.jsonl --stats-json %s/s.json --quiet",
                             MS_BIN, g_model, cases[ci].tokens, cases[ci].batch, (unsigned long long)cases[ci].ram,
                             pols[p], dir, dir);
            assert_int_equal(rc, 0);
            char *sp = mst_fmt("%s/s.json", dir);
            json_object *st = read_json(sp);
            free(sp);
            int64_t slots = jint(st, "cache_slots"), hits = jint(st, "hits"), acc = jint(st, "accesses");
            char *out = NULL;
            if (cases[ci].by_ram)
                rc = mst_run(&out, NULL,
                             "%s simulate --trace %s/t.jsonl --ram %llu --model %s --ctx 64 --batch %d --threads 2 "
                             "--policy %s --json",
                             MS_BIN, dir, (unsigned long long)cases[ci].ram, g_model, cases[ci].batch, pols[p]);
            else
                rc = mst_run(&out, NULL, "%s simulate --trace %s/t.jsonl --slots %lld --policy %s --json", MS_BIN, dir,
                             (long long)slots, pols[p]);
            assert_int_equal(rc, 0);
            json_object *sim = json_tokener_parse(out);
            assert_non_null(sim);
            json_object *row = json_object_array_get_idx(sim, 0);
            print_message("batch %d, %s: %lld slots, runtime %lld/%lld hits, simulator %lld/%lld (%lld slots)\n",
                          cases[ci].batch, pols[p], (long long)slots, (long long)hits, (long long)acc,
                          (long long)jint(row, "hits"), (long long)jint(row, "accesses"), (long long)jint(row, "slots"));
            assert_int_equal(jint(row, "slots"), slots);
            assert_int_equal(jint(row, "accesses"), acc);
            assert_int_equal(jint(row, "hits"), hits);
            assert_true(hits < acc); /* the cache really was too small */
            if (cases[ci].batch > 1) { /* chunks share experts: fewer accesses than tokens x layers x top_k */
                char *tp = mst_fmt("%s/t.jsonl", dir);
                char *txt = mst_slurp(tp, NULL);
                assert_non_null(strstr(txt, "\"batch\":16"));
                assert_non_null(strstr(txt, "\"batch\":8")); /* 40 = 16 + 16 + 8 */
                free(txt);
                free(tp);
            }
            json_object_put(sim);
            json_object_put(st);
            free(out);
        }
    free(dir);
}

/* Pages of a file resident in the page cache. */
static size_t cached_pages(const char *path)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    fstat(fd, &st);
    size_t len = (size_t)st.st_size, pg = (size_t)sysconf(_SC_PAGESIZE), n = (len + pg - 1) / pg, c = 0;
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(p != MAP_FAILED);
    unsigned char *v = malloc(n);
    assert_int_equal(mincore(p, len, v), 0);
    for (size_t i = 0; i < n; i++) c += v[i] & 1;
    free(v);
    munmap(p, len);
    close(fd);
    return c;
}

static void test_budget_and_page_cache(void **state)
{
    (void)state;
    /* a model whose experts are several times the cache: hidden 512, 32 experts */
    char *dir = mst_tmpdir("stream_budget");
    ms_synth_opts o;
    ms_err err = {0};
    assert_int_equal(ms_synth_preset("tiny", &o, &err), 0);
    o.arch.hidden_size = 512;
    o.arch.moe_intermediate_size = 512;
    o.arch.intermediate_size = 1024;
    o.arch.n_routed_experts = 32;
    o.arch.n_group = 4;
    o.arch.n_layers = 6;
    o.seed = 5;
    ms_synth_result r;
    if (ms_synth_write(dir, &o, &r, &err) < 0) fail_msg("synth: %s", err.msg);
    ms_model m;
    assert_int_equal(ms_model_open(dir, &m, &err), 0);
    ms_plan p;
    assert_int_equal(ms_plan_compute(&m, 1ull << 40, 64, 1, 2, &p, &err), 0);
    uint64_t budget = p.min_budget + m.expert_bytes_total / 4 - p.min_cache_bytes;
    if (budget < p.min_budget) budget = p.min_budget;
    assert_true(m.expert_bytes_total > 2 * (budget - p.min_budget + p.min_cache_bytes));
    /* drop the page cache of the shards (written just now) */
    for (int i = 0; i < m.tt.n_files; i++) {
        int fd = open(m.tt.files[i].path, O_RDONLY);
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    size_t before = 0;
    for (int i = 0; i < m.tt.n_files; i++) before += cached_pages(m.tt.files[i].path);
    char *sj = mst_fmt("%s/s.json", dir);
    int rc = mst_run(NULL, NULL,
                     "%s run --model %s --tokens 1,2,3,4,5,6,7,8 -n 32 --temp 0.7 --batch 1 --ctx 64 --threads 2 "
                     "--ram %llu --stats-json %s --quiet",
                     MS_BIN, dir, (unsigned long long)budget, sj);
    assert_int_equal(rc, 0);
    size_t after = 0;
    for (int i = 0; i < m.tt.n_files; i++) after += cached_pages(m.tt.files[i].path);
    json_object *st = read_json(sj);
    int64_t peak = jint(st, "peak_rss_bytes"), reads = jint(st, "expert_reads");
    print_message("budget %llu: peak RSS %lld, %lld expert reads, shard pages cached %zu -> %zu\n",
                  (unsigned long long)budget, (long long)peak, (long long)reads, before, after);
    assert_true(reads > 0);
    assert_true((uint64_t)peak <= budget);
    /* O_DIRECT reads and DONTNEED after resident loads: at most a few headers stay cached */
    assert_true((after - (after > before ? before : after)) * (size_t)sysconf(_SC_PAGESIZE) < (2u << 20));
    /* the mmap baseline, for contrast, leaves the model in the page cache */
    rc = mst_run(NULL, NULL, "%s run --model %s --tokens 1,2,3,4 -n 8 --ctx 64 --io mmap --ram %llu --quiet", MS_BIN,
                 dir, (unsigned long long)budget);
    assert_int_equal(rc, 0);
    size_t mm = 0;
    for (int i = 0; i < m.tt.n_files; i++) mm += cached_pages(m.tt.files[i].path);
    print_message("after the mmap baseline: %zu pages cached\n", mm);
    assert_true(mm > after);
    json_object_put(st);
    free(sj);
    ms_model_close(&m);
    free(dir);
}

static void test_refuses_small_budget(void **state)
{
    (void)state;
    uint64_t lo = min_budget(64, 1, 2);
    char *errs = NULL;
    int rc = mst_run(NULL, &errs, "%s run --model %s --tokens 1,2 -n 2 --ctx 64 --batch 1 --threads 2 --ram %llu", MS_BIN,
                     g_model, (unsigned long long)(lo - 4096));
    assert_int_equal(rc, 1);
    assert_non_null(strstr(errs, "too small"));
    assert_non_null(strstr(errs, "resident"));
    free(errs);
    rc = mst_run(NULL, NULL, "%s run --model %s --tokens 1,2 -n 2 --ctx 64 --batch 1 --threads 2 --ram %llu --quiet",
                 MS_BIN, g_model, (unsigned long long)lo);
    assert_int_equal(rc, 0);
}

/* Prefill chunks larger than the cache: experts come in waves; every policy must
 * find victims in groups far larger than top_k (regression: next-use once found
 * none when a group's recent keys overflowed its recent lists). */
static void test_prefill_waves(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("stream_waves");
    ms_synth_opts o;
    ms_err err = {0};
    assert_int_equal(ms_synth_preset("tiny", &o, &err), 0);
    o.arch.n_routed_experts = 64;
    o.arch.n_group = 8;
    o.arch.topk_group = 4;
    o.arch.n_experts_per_tok = 6;
    o.seed = 9;
    ms_synth_result r;
    if (ms_synth_write(dir, &o, &r, &err) < 0) fail_msg("synth: %s", err.msg);
    ms_model m;
    assert_int_equal(ms_model_open(dir, &m, &err), 0);
    ms_plan p;
    assert_int_equal(ms_plan_compute(&m, 1ull << 40, 64, 48, 2, &p, &err), 0);
    ms_model_close(&m);
    const char *toks = "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,"
                       "35,36,37,38,39,40,41,42,43,44,45,46,47,48";
    char *ref = NULL;
    assert_int_equal(mst_run(&ref, NULL, "%s run --model %s --tokens %s -n 6 --temp 0 --batch 48 --ctx 64 --threads 2 "
                                         "--io resident --quiet", MS_BIN, dir, toks), 0);
    const char *pols[] = {"next-use", "lru", "lfu", "lru-layer", "2q", "tinylfu", "lfu-decay"};
    for (size_t i = 0; i < sizeof pols / sizeof pols[0]; i++) {
        char *out = NULL, *errs = NULL;
        int rc = mst_run(&out, &errs, "%s run --model %s --tokens %s -n 6 --temp 0 --batch 48 --ctx 64 --threads 2 "
                                      "--ram %llu --policy %s --quiet", MS_BIN, dir, toks,
                         (unsigned long long)p.min_budget, pols[i]);
        if (rc != 0) fail_msg("%s: %s", pols[i], errs);
        assert_string_equal(out, ref);
        free(out);
        free(errs);
    }
    free(ref);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bit_identical),       cmocka_unit_test(test_faults),
        cmocka_unit_test(test_truncated_under_run), cmocka_unit_test(test_trace_replay_matches_runtime),
        cmocka_unit_test(test_budget_and_page_cache), cmocka_unit_test(test_refuses_small_budget),
        cmocka_unit_test(test_prefill_waves),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_stream.c - expert streaming end to end on generated models (a
 * deepseek_v3 one, and for the family-dependent tests also a step3p5 one):
 *   - logits are bit-identical for the minimum budget, a middle budget and
 *     everything cached, for the uring / pread / mmap / resident sources, 1 and
 *     N threads, every eviction policy (pin with a profile of this model), the
 *     bf16 KV cache, prefill chunks larger than the cache (every position's
 *     logits), and a model with several expert size classes (mlx-lm's
 *     mixed_3_6: the streamed layers' slots differ in size) at its minimum budget;
 *   - a small budget really streams (misses and evictions happen) and stays
 *     within the budget (peak RSS of a child process);
 *   - the page cache does not fill with the model (mincore on the shards);
 *   - a trace recorded by `run` (token by token, or with prefill chunks and
 *     waves) replays in `simulate` to exactly the runtime's hit count;
 *   - faults: injected short reads / EAGAIN give the same logits, an injected
 *     EIO and a shard truncated under a running engine give a clean error;
 *   - step3p5: greedy tokens after a chunked prefill are the same for every
 *     budget, backend and thread count. */
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
#include "quantize.h"
#include "synth.h"

static char *g_model; /* generated once per test binary */
static const int g_tokens[] = {0, 17, 300, 45, 99, 2, 311, 7, 64, 128, 256, 5};
#define NT ((int)(sizeof g_tokens / sizeof g_tokens[0]))

/* The generated model every test of a group runs on. */
static int make_model(const char *preset, const char *dir, int layers)
{
    g_model = mst_tmpdir(dir);
    ms_synth_opts o;
    ms_err err = {0};
    if (ms_synth_preset(preset, &o, &err) < 0) return -1;
    o.arch.n_layers = layers;
    o.seed = 11;
    ms_synth_result r;
    if (ms_synth_write(g_model, &o, &r, &err) < 0) {
        fprintf(stderr, "synth: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return make_model("tiny", "stream_model", 5); /* deepseek_v3: 4 MoE layers */
}

/* step3p5 (mlx-vlm wrapper, DQ4): 6 layers (2 dense, 4 MoE), full and sliding
 * (window 8) attention, so prompts here wrap the sliding layers' rings. */
static int setup_step(void **state)
{
    (void)state;
    return make_model("step-tiny", "stream_step_model", 6);
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

/* Logits at every position (vocab floats per token) of a model (NULL = g_model)
 * for `tokens`: the first n_prefill as one prefill (chunks of o->batch, logits
 * at every position), the rest decoded one by one. */
static float *logits_of(const char *model, const ms_engine_opts *o, const int *tokens, int n, int n_prefill,
                        ms_cache_stats *cs)
{
    ms_engine *e;
    ms_err err = {0};
    if (ms_engine_open(model ? model : g_model, o, &e, &err) < 0)
        fail_msg("engine (%s, %llu, %s): %s", o->io, (unsigned long long)o->ram, o->policy ? o->policy : "default",
                 err.msg);
    int V = ms_engine_vocab(e);
    float *lg = malloc(sizeof(float) * (size_t)V * (size_t)n);
    if (n_prefill > 0 && ms_engine_eval(e, tokens, n_prefill, lg, true, &err) < 0) fail_msg("prefill: %s", err.msg);
    for (int i = n_prefill; i < n; i++)
        if (ms_engine_eval(e, tokens + i, 1, lg + (size_t)i * V, false, &err) < 0) fail_msg("eval: %s", err.msg);
    if (cs) {
        memset(cs, 0, sizeof *cs);
        if (e->cache) ms_cache_get_stats(e->cache, cs);
    }
    ms_engine_close(e);
    return lg;
}

/* Decode logits at every position of g_tokens (vocab * NT floats) with the given source. */
static const char *g_prefetch; /* prefetch mode for run_logits */

static float *run_logits(const char *io, uint64_t ram, int threads, const char *policy, ms_cache_stats *cs)
{
    ms_engine_opts o = {.ram = ram, .io = io, .threads = threads, .ctx = 64, .batch = 1, .policy = policy,
                        .prefetch = g_prefetch};
    return logits_of(NULL, &o, g_tokens, NT, 0, cs);
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
    /* every policy at the minimum budget, evicting; pin with a profile of this model */
    char *tdir = mst_tmpdir("stream_pin");
    assert_int_equal(mst_run(NULL, NULL,
                             "%s run --model %s --tokens 1,2,3,4,5,6,7,8 -n 24 --temp 0.8 --seed 5 --ctx 64 "
                             "--batch 1 --threads 2 --ram %llu --trace %s/t.jsonl --quiet && "
                             "%s simulate --trace %s/t.jsonl --slots 8 --policy lru --save-profile %s/p.json",
                             MS_BIN, g_model, (unsigned long long)lo, tdir, MS_BIN, tdir, tdir),
                     0);
    char *profile = mst_fmt("%s/p.json", tdir);
    const char *pols[] = {"lru", "lfu", "lru-layer", "2q", "tinylfu", "lfu-decay", "lfu-decay:hl=4", "pin", "next-use", "eva-duel"};
    for (size_t i = 0; i < sizeof pols / sizeof pols[0]; i++) {
        ms_engine_opts o = {.ram = lo, .io = "uring", .threads = 2, .ctx = 64, .batch = 1, .policy = pols[i],
                            .profile = strcmp(pols[i], "pin") ? NULL : profile};
        float *b = logits_of(NULL, &o, g_tokens, NT, 0, &cs);
        if (memcmp(b, ref, n * sizeof(float)) != 0) fail_msg("policy %s differs", pols[i]);
        if (cs.evictions == 0) fail_msg("policy %s: no eviction at the minimum budget", pols[i]);
        free(b);
    }
    free(profile);
    free(tdir);
    free(ref);
}

/* --kv bf16: lossy, but the same logits whatever the expert source and budget
 * (the bf16 KV plan's minimum budget evicts). */
static void test_bit_identical_kv_bf16(void **state)
{
    (void)state;
    ms_model m;
    ms_err err = {0};
    assert_int_equal(ms_model_open(g_model, &m, &err), 0);
    size_t n = (size_t)m.cfg.vocab_size * NT;
    ms_plan p;
    ms_plan_opts po = {.budget = 1ull << 40, .ctx = 64, .batch = 1, .threads = 2, .kv_bf16 = true};
    assert_int_equal(ms_plan_make(&m, &po, &p, &err), 0);
    ms_model_close(&m);
    ms_engine_opts o = {.ram = 1ull << 30, .io = "resident", .threads = 2, .ctx = 64, .batch = 1, .kv_bf16 = true};
    float *ref = logits_of(NULL, &o, g_tokens, NT, 0, NULL);
    o.kv_bf16 = false;
    float *f32 = logits_of(NULL, &o, g_tokens, NT, 0, NULL);
    assert_true(memcmp(ref, f32, n * sizeof(float)) != 0); /* the KV cache really is bf16 */
    free(f32);
    const char *ios[] = {"uring", "pread", "uring"};
    const uint64_t rams[] = {p.min_budget, p.min_budget, p.min_budget + (1u << 20)};
    for (int i = 0; i < 3; i++) {
        ms_cache_stats cs;
        ms_engine_opts s = {.ram = rams[i], .io = ios[i], .threads = 1 + i, .ctx = 64, .batch = 1, .kv_bf16 = true};
        float *b = logits_of(NULL, &s, g_tokens, NT, 0, &cs);
        if (memcmp(b, ref, n * sizeof(float)) != 0) fail_msg("bf16 KV: io %s ram %llu differs", ios[i],
                                                              (unsigned long long)rams[i]);
        assert_true(cs.evictions > 0);
        free(b);
    }
    free(ref);
}

/* Several expert size classes: an HF model of 8 layers quantized with mlx-lm's
 * mixed_3_6 (down_proj at 6 bits in layers 0, 3, 6, 7, 3 bits elsewhere, so the
 * MoE layers' experts come in two sizes) streams through per-class slots at its
 * minimum budget, evicting, to the resident logits bit for bit (decode and a
 * prefill in chunks of 5). A cache that put every layer in one class would read
 * a large expert into a small slot. */
static void test_mixed_size_classes(void **state)
{
    (void)state;
    char *hf = mst_synth_hf("stream_mixed_hf", 8, 0, 17), *dir = mst_tmpdir("stream_mixed");
    ms_err err = {0};
    ms_quantize_opts qo = {.bits = 3, .group_size = 64, .recipe = "mixed_3_6", .dtype = MS_DT_COUNT};
    if (ms_quantize(hf, dir, &qo, NULL, &err) < 0) fail_msg("quantize: %s", err.msg);
    ms_model m;
    assert_int_equal(ms_model_open(dir, &m, &err), 0);
    size_t V = (size_t)m.cfg.vocab_size;
    ms_plan p;
    assert_int_equal(ms_plan_compute(&m, 1ull << 40, 64, 1, 2, &p, &err), 0);
    ms_plan pb;
    assert_int_equal(ms_plan_compute(&m, 1ull << 40, 64, 5, 2, &pb, &err), 0);
    print_message("mixed_3_6: %d size classes, experts %llu..%llu bytes, minimum budget %llu\n", p.n_classes,
                  (unsigned long long)m.min_expert_bytes, (unsigned long long)m.max_expert_bytes,
                  (unsigned long long)p.min_budget);
    assert_true(p.n_classes >= 2);
    assert_true(m.max_expert_bytes > m.min_expert_bytes);
    ms_model_close(&m);
    for (int prefill = 0; prefill < 2; prefill++) {
        ms_engine_opts o = {.ram = 1ull << 30, .io = "resident", .threads = 2, .ctx = 64, .batch = prefill ? 5 : 1};
        float *ref = logits_of(dir, &o, g_tokens, NT, prefill ? NT : 0, NULL);
        o.io = "uring";
        o.ram = prefill ? pb.min_budget : p.min_budget;
        ms_cache_stats cs;
        float *b = logits_of(dir, &o, g_tokens, NT, prefill ? NT : 0, &cs);
        print_message("  %s at the minimum budget: %lld slots, %llu misses, %llu evictions\n",
                      prefill ? "prefill (chunks of 5)" : "decode", (long long)cs.slots,
                      (unsigned long long)cs.misses, (unsigned long long)cs.evictions);
        assert_true(cs.evictions > 0);
        if (memcmp(b, ref, V * NT * sizeof(float)) != 0) fail_msg("mixed size classes: %s logits differ",
                                                                   prefill ? "prefill" : "decode");
        free(b);
        free(ref);
    }
    free(hf);
    free(dir);
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
    /* EIO: exactly one clean error line naming the file and offset, from the CLI
     * too, within seconds (a hang is killed by timeout: exit 124) */
    char *errs = NULL;
    int rc = mst_run(NULL, &errs,
                     "timeout -k 5 30 %s run --model %s --tokens 1,2,3,4 -n 4 --ctx 64 --batch 1 --threads 2 --ram %llu "
                     "--io fault:eio=1 --quiet",
                     MS_BIN, g_model, (unsigned long long)(lo + (8u << 20)));
    print_message("EIO run (exit %d): %s", rc, errs);
    assert_int_equal(rc, 1);
    const char *nl = strchr(errs, '\n');
    assert_non_null(nl);
    assert_int_equal(nl[1], 0); /* one line */
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
    const char *pols[] = {"lru", "next-use", "eva-duel", "lfu", "lru-layer"};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int p = 0; p < (int)(sizeof pols / sizeof pols[0]); p++) {
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

/* Page-cache residency of every shard: one byte per page (bit 0 = cached),
 * concatenated over the files in table order. */
static unsigned char *cache_map(const ms_model *m, size_t *n_pages)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), total = 0;
    for (int i = 0; i < m->tt.n_files; i++) total += (m->tt.files[i].size + pg - 1) / pg;
    unsigned char *v = calloc(total ? total : 1, 1), *at = v;
    for (int i = 0; i < m->tt.n_files; i++) {
        int fd = open(m->tt.files[i].path, O_RDONLY);
        assert_true(fd >= 0);
        size_t len = (size_t)m->tt.files[i].size;
        void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        assert_true(p != MAP_FAILED);
        assert_int_equal(mincore(p, len, at), 0);
        munmap(p, len);
        close(fd);
        at += (len + pg - 1) / pg;
    }
    *n_pages = total;
    return v;
}

static size_t count_cached(const unsigned char *v, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += v[i] & 1;
    return c;
}

/* The map once it stops changing (read-ahead started by a load may land a little
 * after the read returned): two equal snapshots 50 ms apart, at most 2 s. */
static unsigned char *settled_cache_map(const ms_model *m, size_t *n)
{
    unsigned char *a = cache_map(m, n);
    for (int i = 0; i < 40; i++) {
        usleep(50000);
        unsigned char *b = cache_map(m, n);
        bool same = memcmp(a, b, *n) == 0;
        free(a);
        a = b;
        if (same) break;
    }
    return a;
}

static void drop_page_cache(const ms_model *m)
{
    for (int i = 0; i < m->tt.n_files; i++) {
        int fd = open(m->tt.files[i].path, O_RDONLY);
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

/* A model whose experts are several times the cache (hidden 512, 32 experts, 5 MoE
 * layers, 43 shards) at a budget that caches a quarter of them:
 *   - the budget, measured on `run` (a child process): the expert arena is the
 *     plan's split and never takes the fixed allowance, peak RSS >= resident +
 *     arena and <= resident + KV + scratch + arena + MST_RSS_SLACK;
 *   - the page cache, in process: loading the engine leaves no page of any shard
 *     cached (the header and resident tensors are read without read-ahead and
 *     dropped), and decoding, which reads experts with O_DIRECT, adds none: both
 *     exactly 0 pages whatever the shard count; the mmap baseline, for contrast,
 *     fills it. */
static void test_budget_and_page_cache(void **state)
{
    (void)state;
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

    /* 1. the budget, in a child process */
    drop_page_cache(&m);
    char *sj = mst_fmt("%s/s.json", dir);
    int rc = mst_run(NULL, NULL,
                     "%s run --model %s --tokens 1,2,3,4,5,6,7,8 -n 32 --temp 0.7 --batch 1 --ctx 64 --threads 2 "
                     "--ram %llu --stats-json %s --quiet",
                     MS_BIN, dir, (unsigned long long)budget, sj);
    assert_int_equal(rc, 0);
    json_object *st = read_json(sj);
    int64_t reads = jint(st, "expert_reads"), buffered = jint(st, "buffered_files");
    json_object_put(st);
    assert_true(reads > 0);
    mst_check_budget_split(dir, budget, 64, 1, 2, sj, -1, true, "run, a quarter of the experts cached");
    if (buffered > 0) MST_SKIP("the scratch directory's filesystem refuses O_DIRECT: the page cache cannot stay empty");

    /* 2. the page cache, in process: after loading, after decoding */
    drop_page_cache(&m);
    size_t n_pages;
    unsigned char *before = settled_cache_map(&m, &n_pages);
    assert_int_equal(count_cached(before, n_pages), 0);
    ms_engine_opts eo = {.ram = budget, .io = "uring", .threads = 2, .ctx = 64, .batch = 1};
    ms_engine *e;
    if (ms_engine_open(dir, &eo, &e, &err) < 0) fail_msg("engine: %s", err.msg);
    unsigned char *loaded = settled_cache_map(&m, &n_pages);
    size_t after_load = count_cached(loaded, n_pages);
    for (int i = 0; i < NT; i++)
        if (ms_engine_eval(e, g_tokens + i, 1, NULL, false, &err) < 0) fail_msg("eval: %s", err.msg);
    ms_cache_stats cs;
    ms_cache_get_stats(e->cache, &cs);
    ms_engine_close(e);
    unsigned char *decoded = settled_cache_map(&m, &n_pages);
    size_t added = 0;
    for (size_t i = 0; i < n_pages; i++) added += (decoded[i] & 1) && !(loaded[i] & 1);
    print_message("%d shards, %zu pages: cached after loading %zu, added by decoding (%llu expert reads) %zu\n",
                  m.tt.n_files, n_pages, after_load, (unsigned long long)cs.expert_reads, added);
    assert_true(cs.expert_reads > 0);
    assert_int_equal(after_load, 0);
    assert_int_equal(added, 0);
    /* the mmap baseline, for contrast, leaves the model in the page cache */
    rc = mst_run(NULL, NULL, "%s run --model %s --tokens 1,2,3,4 -n 8 --ctx 64 --io mmap --ram %llu --quiet", MS_BIN,
                 dir, (unsigned long long)budget);
    assert_int_equal(rc, 0);
    unsigned char *mm = cache_map(&m, &n_pages);
    size_t mm_cached = count_cached(mm, n_pages);
    print_message("after the mmap baseline: %zu of %zu pages cached\n", mm_cached, n_pages);
    assert_true(mm_cached > n_pages / 4);
    free(before), free(loaded), free(decoded), free(mm);
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
 * none when a group's recent keys overflowed its recent lists), and the logits of
 * every prompt position (one 48-token chunk) and of 6 decoded tokens after it are
 * the resident run's, bit for bit. */
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
    size_t V = (size_t)m.cfg.vocab_size;
    ms_plan p;
    assert_int_equal(ms_plan_compute(&m, 1ull << 40, 64, 48, 2, &p, &err), 0);
    ms_model_close(&m);
    enum { NP = 48, ND = 6 };
    int toks[NP + ND];
    for (int i = 0; i < NP + ND; i++) toks[i] = 1 + (i * 37) % 500;
    ms_engine_opts ro = {.ram = 1ull << 30, .io = "resident", .threads = 2, .ctx = 64, .batch = NP};
    float *ref = logits_of(dir, &ro, toks, NP + ND, NP, NULL);
    const char *pols[] = {"eva-duel", "next-use", "lru", "lfu", "lru-layer", "2q", "tinylfu", "lfu-decay"};
    for (size_t i = 0; i < sizeof pols / sizeof pols[0]; i++) {
        ms_engine_opts so = {.ram = p.min_budget, .io = "uring", .threads = 2, .ctx = 64, .batch = NP,
                             .policy = pols[i]};
        ms_cache_stats cs;
        float *b = logits_of(dir, &so, toks, NP + ND, NP, &cs);
        if (i == 0)
            print_message("prefill of %d tokens at the minimum budget: %lld slots, %llu misses, %llu evictions\n", NP,
                          (long long)cs.slots, (unsigned long long)cs.misses, (unsigned long long)cs.evictions);
        assert_true(cs.evictions > 0);
        if (memcmp(b, ref, V * (NP + ND) * sizeof(float)) != 0) fail_msg("%s: prefill under eviction differs", pols[i]);
        free(b);
    }
    free(ref);
    free(dir);
}

/* Greedy generation after a prompt prefilled in chunks of 5 (chunks across the
 * window): the same tokens for every budget, backend and thread count. */
static void test_run_tokens_identical(void **state)
{
    (void)state;
    const char *toks = "1,17,300,45,99,2,311,7,64,128,256,5,88,401,3,9,27,81,243,500";
    char *ref = NULL;
    assert_int_equal(mst_run(&ref, NULL, "%s run --model %s --tokens %s -n 24 --temp 0 --batch 5 --ctx 64 --threads 2 "
                                         "--io resident --quiet", MS_BIN, g_model, toks), 0);
    assert_true(strlen(ref) > 24);
    uint64_t lo = min_budget(64, 5, 2);
    const char *ios[] = {"uring", "pread", "mmap"};
    uint64_t rams[] = {lo, lo + (300u << 10), 1ull << 30};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            char *out = NULL;
            int threads = 1 + (i + j) % 3;
            assert_int_equal(mst_run(&out, NULL, "%s run --model %s --tokens %s -n 24 --temp 0 --batch 5 --ctx 64 "
                                                 "--threads %d --io %s --ram %llu --quiet", MS_BIN, g_model, toks,
                                     threads, ios[i], (unsigned long long)rams[j]), 0);
            if (strcmp(out, ref)) fail_msg("io %s ram %llu threads %d: %s vs %s", ios[i], (unsigned long long)rams[j],
                                           threads, out, ref);
            free(out);
        }
    free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bit_identical),       cmocka_unit_test(test_faults),
        cmocka_unit_test(test_truncated_under_run), cmocka_unit_test(test_trace_replay_matches_runtime),
        cmocka_unit_test(test_budget_and_page_cache), cmocka_unit_test(test_refuses_small_budget),
        cmocka_unit_test(test_prefill_waves),       cmocka_unit_test(test_bit_identical_kv_bf16),
        cmocka_unit_test(test_mixed_size_classes),
    };
    /* what depends on the family (the forward pass, its routing, its KV cache) again on a step model */
    const struct CMUnitTest step_tests[] = {
        cmocka_unit_test(test_bit_identical),       cmocka_unit_test(test_faults),
        cmocka_unit_test(test_trace_replay_matches_runtime), cmocka_unit_test(test_refuses_small_budget),
        cmocka_unit_test(test_run_tokens_identical),
    };
    int rc = cmocka_run_group_tests_name("deepseek_v3", tests, setup, teardown);
    return rc | cmocka_run_group_tests_name("step3p5", step_tests, setup_step, teardown);
}

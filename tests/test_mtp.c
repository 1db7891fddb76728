/* test_mtp.c - MTP speculative decoding.
 *   1. The draft head against the independent float64 reference of
 *      tests/data/golden/ds3-mtp-draft (mtp_logits[t]: the draft for token
 *      t+2 from the main hidden state at t and the true token t+1): every entry
 *      within 1e-3 x max(1, |ref|), the error actually reached (< 2e-5), the
 *      same argmax; decode and prefill paths.
 *   2. Greedy output with --mtp 1, 2 and 7 is bit-identical to greedy output
 *      without it: on the golden checkpoint (HF f32), on a generated MLX
 *      4-bit model and on a generated Step-3.5 HF model (step-tiny: sliding
 *      window 8, its MTP layer sliding too), at the minimum budget (experts
 *      evicted), a middle one and all resident, with 1 and 2 threads; with
 *      --mtp 1 and 2 on a generated GLM HF model (glm-tiny: glm4_moe_lite
 *      through the DeepSeek-V3 code, its MTP layer MoE: routed through the
 *      same expert cache), minimum budget and resident, 1 and 2 threads.
 *   3. The draft head's cache follows the emitted sequence: each round's
 *      first draft equals the teacher-forced draft (every draft accepted,
 *      so the deferred refill of settled slots runs every round); golden
 *      DeepSeek-V3 and step-tiny (whose MTP cache is a sliding ring).
 *   4. Rejection sampling keeps the distribution: ms_sampler_sample_draft
 *      against drafts with P(draft) = 0, small, large and 1 gives token
 *      frequencies within a stated bound of the target probabilities; and
 *      end to end, the second generated token's distribution over 2,000 seeds
 *      with --mtp 1 matches the one without it (total variation < 0.06; two
 *      samples of the same distribution at this size stay near 0.03). */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "generate.h"
#include "ms_golden.h"
#include "ms_test.h"
#include "sampler.h"

#define GOLDEN MS_TEST_DATA "/golden/ds3-mtp-draft"

typedef struct ref {
    int tokens[64], n, V;
    double *logits, *mtp; /* [n][V], [n-1][V] */
} ref;

static void load_ref(ref *r)
{
    char *text = mst_slurp(GOLDEN "/ref.json", NULL);
    assert_non_null(text);
    json_object *o = json_tokener_parse(text), *tk, *lg, *ml, *nv;
    free(text);
    assert_true(json_object_object_get_ex(o, "tokens", &tk) && json_object_object_get_ex(o, "logits", &lg) &&
                json_object_object_get_ex(o, "mtp_logits", &ml) && json_object_object_get_ex(o, "n_vocab", &nv));
    r->n = (int)json_object_array_length(tk);
    r->V = json_object_get_int(nv);
    for (int i = 0; i < r->n; i++) r->tokens[i] = json_object_get_int(json_object_array_get_idx(tk, i));
    r->logits = malloc(sizeof(double) * (size_t)r->n * r->V);
    r->mtp = malloc(sizeof(double) * (size_t)r->n * r->V);
    assert_int_equal(json_object_array_length(ml), r->n - 1);
    for (int p = 0; p < r->n; p++)
        for (int v = 0; v < r->V; v++) {
            r->logits[(size_t)p * r->V + v] =
                json_object_get_double(json_object_array_get_idx(json_object_array_get_idx(lg, p), v));
            if (p < r->n - 1)
                r->mtp[(size_t)p * r->V + v] =
                    json_object_get_double(json_object_array_get_idx(json_object_array_get_idx(ml, p), v));
        }
    json_object_put(o);
}

/* max |got - ref| / max(1, |ref|) over rows; argmax must agree in every row */
static double compare(const float *got, const double *want, int rows, int V)
{
    double worst = 0;
    for (int p = 0; p < rows; p++) {
        for (int v = 0; v < V; v++) {
            double d = fabs((double)got[(size_t)p * V + v] - want[(size_t)p * V + v]) /
                       fmax(1.0, fabs(want[(size_t)p * V + v]));
            worst = fmax(worst, d);
        }
        assert_int_equal(mst_argmax_f(got + (size_t)p * V, V), mst_argmax_d(want + (size_t)p * V, V));
    }
    return worst;
}

static void test_draft_logits_match_reference(void **state)
{
    (void)state;
    ref r;
    load_ref(&r);
    int steps[2] = {1, 7}; /* decode (one row per step) and prefill chunks of 7 */
    for (int si = 0; si < 2; si++) {
        int step = steps[si];
        ms_engine_opts o = {.threads = 2, .ctx = 64, .batch = 8, .mtp = 1};
        ms_engine *e;
        ms_err err = {0};
        if (ms_engine_open(GOLDEN, &o, &e, &err) < 0) fail_msg("%s", err.msg);
        int V = r.V, D = e->model.cfg.hidden_size, n = r.n, pos[64];
        float *lg = malloc(sizeof(float) * n * V), *ml = malloc(sizeof(float) * n * V), *hid = malloc(sizeof(float) * n * D);
        for (int i = 0; i < n; i++) pos[i] = i;
        for (int i = 0; i < n; i += step) {
            int c = i + step <= n ? step : n - i;
            ms_batch b = {.n = c, .tokens = r.tokens + i, .pos = pos + i, .logits = lg + (size_t)i * V,
                          .all_logits = true, .hidden = hid + (size_t)i * D};
            if (ms_engine_step(e, &b, false, &err) < 0) fail_msg("%s", err.msg);
        }
        for (int i = 0; i < n - 1; i += step) {
            int c = i + step <= n - 1 ? step : n - 1 - i;
            ms_batch b = {.n = c, .tokens = r.tokens + i + 1, .pos = pos + i, .logits = ml + (size_t)i * V,
                          .all_logits = true};
            if (ms_engine_mtp(e, &b, hid + (size_t)i * D, false, &err) < 0) fail_msg("%s", err.msg);
        }
        double wm = compare(lg, r.logits, n, V), wd = compare(ml, r.mtp, n - 1, V);
        print_message("steps of %d: main max rel error %.3g, draft head %.3g\n", step, wm, wd);
        assert_true(wm <= 1e-3 && wd <= 1e-3);
        assert_true(wm < 2e-5 && wd < 2e-5);
        ms_engine_close(e);
        free(lg);
        free(ml);
        free(hid);
    }
    free(r.logits);
    free(r.mtp);
}

/* An engine (ctx 96, batch 8) and a greedy generator of n tokens on it. */
static ms_engine *open_greedy(const char *dir, int mtp, int threads, const char *io, uint64_t ram, int n, ms_gen *g)
{
    ms_engine_opts o = {.threads = threads, .ctx = 96, .batch = 8, .mtp = mtp, .io = io, .ram = ram};
    ms_engine *e;
    ms_err err = {0};
    if (ms_engine_open(dir, &o, &e, &err) < 0) fail_msg("%s: %s", dir, err.msg);
    ms_gen_params p = {.sampling = ms_sampler_defaults(), .max_new = n, .ignore_eos = true};
    p.sampling.temperature = 0;
    if (ms_gen_init(g, e, &p, &err) < 0) fail_msg("%s", err.msg);
    return e;
}

/* n greedy tokens after a prompt, with --mtp mtp. */
static void greedy(const char *dir, const int *prompt, int np, int mtp, int threads, const char *io, uint64_t ram,
                   int n, int *out, double *acceptance)
{
    ms_gen g;
    ms_err err = {0};
    ms_engine *e = open_greedy(dir, mtp, threads, io, ram, n, &g);
    if (ms_gen_prompt(&g, prompt, np, &err) < 0) fail_msg("%s", err.msg);
    int k = 0, t;
    while (k < n && ms_gen_next(&g, &t, &err) > 0) out[k++] = t;
    assert_int_equal(k, n);
    ms_gen_stats st;
    ms_gen_get_stats(&g, &st);
    if (acceptance) *acceptance = st.mtp_acceptance;
    if (mtp) assert_true(st.mtp_steps > 0);
    ms_gen_free(&g);
    ms_engine_close(e);
}

static uint64_t min_ram(const char *dir, int mtp)
{
    char *out = NULL;
    assert_int_equal(mst_run(&out, NULL, "%s plan --model %s --ram 1G --ctx 96 --batch 8 --json", MS_BIN, dir), 0);
    const char *k = strstr(out, "\"min_ram_bytes\":");
    assert_non_null(k);
    uint64_t v = strtoull(k + strlen("\"min_ram_bytes\":"), NULL, 10);
    free(out);
    /* the MTP layer adds resident weights, a KV layer and its experts' size class */
    return v + (mtp ? (4u << 20) : 0);
}

/* The engine's own minimum --ram with --mtp mtp (ctx 96, batch 8): what its
 * refusal of a 1 MiB budget names ("need at least X MiB"), rounded up. */
static uint64_t engine_min_ram(const char *dir, int mtp)
{
    ms_engine_opts o = {.threads = 1, .ctx = 96, .batch = 8, .mtp = mtp, .io = "uring", .ram = 1u << 20};
    ms_engine *e;
    ms_err err = {0};
    assert_true(ms_engine_open(dir, &o, &e, &err) < 0);
    const char *k = strstr(err.msg, "need at least ");
    if (!k) fail_msg("%s", err.msg);
    double mib = strtod(k + strlen("need at least "), NULL);
    assert_non_null(strstr(k, " MiB"));
    return (uint64_t)ceil((mib + 0.01) * 1048576.0);
}

static void check_identical(const char *dir)
{
    enum { N = 40 };
    static const int prompt[6] = {1, 80, 87, 83, 35, 103};
    int base[N], got[N];
    greedy(dir, prompt, 6, 0, 2, "resident", 0, N, base, NULL);
    uint64_t lo = min_ram(dir, 1);
    struct {
        const char *io;
        uint64_t ram;
        int threads;
    } cfg[] = {{"uring", lo, 1}, {"uring", lo + (2u << 20), 2}, {"pread", lo, 2}, {"resident", 0, 1}};
    /* 7 drafts make an 8-row verify step: at the kernels' GEMM threshold, so a
     * verify step that were not exact would show */
    static const int mtps[3] = {1, 2, 7};
    for (int mi = 0; mi < 3; mi++)
        for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
            int mtp = mtps[mi];
            double acc;
            greedy(dir, prompt, 6, mtp, cfg[c].threads, cfg[c].io, cfg[c].ram, N, got, &acc);
            for (int i = 0; i < N; i++)
                if (got[i] != base[i])
                    fail_msg("%s: --mtp %d (%s, %d threads): token %d is %d, without MTP %d", dir, mtp, cfg[c].io,
                             cfg[c].threads, i, got[i], base[i]);
        }
}

static void test_greedy_identical_golden(void **state)
{
    (void)state;
    check_identical(GOLDEN);
}

/* A generated model in MS_TMP_DIR/<name> (`moestream synth <args>`); malloc'd path. */
static char *synth_model(const char *name, const char *args)
{
    char *dir = mst_tmpdir(name);
    char *cmd = mst_fmt("%s synth %s --out %s --force >/dev/null 2>&1", MS_BIN, args, dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    return dir;
}

static void test_greedy_identical_step(void **state)
{
    (void)state;
    char *dir = synth_model("mtp-step", "--preset step-tiny --format hf --mtp 1 --seed 6");
    check_identical(dir);
    free(dir);
}

/* glm-tiny (glm4_moe_lite through the DeepSeek-V3 code): its MTP layer is MoE,
 * so the draft head's experts share the expert cache. The low budget is the
 * engine's own minimum for 1 thread (plan's minimum + 4 MiB, check_identical's,
 * would hold all of this 2.8 MiB model's experts). */
static void test_greedy_identical_glm(void **state)
{
    (void)state;
    enum { N = 24 };
    static const int prompt[6] = {1, 80, 87, 83, 35, 103};
    char *dir = synth_model("mtp-glm", "--preset glm-tiny --format hf --seed 3");
    int base[N], got[N];
    greedy(dir, prompt, 6, 0, 2, "resident", 0, N, base, NULL);
    uint64_t lo = engine_min_ram(dir, 1);
    for (int mtp = 1; mtp <= 2; mtp++)
        for (int c = 0; c < 2; c++) {
            greedy(dir, prompt, 6, mtp, c ? 2 : 1, c ? "resident" : "uring", c ? 0 : lo, N, got, NULL);
            for (int i = 0; i < N; i++)
                if (got[i] != base[i])
                    fail_msg("glm --mtp %d (%s): token %d is %d, without MTP %d", mtp, c ? "resident" : "uring", i,
                             got[i], base[i]);
        }
    free(dir);
}

static void test_greedy_identical_synth(void **state)
{
    (void)state;
    char *dir = synth_model("mtp-synth", "--preset tiny --mtp 1");
    check_identical(dir);
    free(dir);
}

/* The draft head's KV cache follows the sequence during generation: every
 * round's first draft (made from the main model's true hidden state and the
 * pending token) has the argmax of the teacher-forced draft logits over the
 * emitted sequence. With every draft taken (--mtp-force-accept: each round
 * settles N+1 positions), this checks the deferred refill of the slots a verify
 * step settled; a missing or misplaced refill row changes the attention of
 * later drafts. Minimum budget and resident, 1 and 2 threads, --mtp 1 and 3. */
typedef struct draft_log {
    int n, pos[128], tok[128];
} draft_log;

static void log_draft(void *arg, int k, int pos, int32_t tok)
{
    draft_log *l = arg;
    if (k != 0 || l->n >= 128) return;
    l->pos[l->n] = pos;
    l->tok[l->n++] = tok;
}

static void check_drafts_follow(const char *dir, int mtp, const char *io, uint64_t ram, int threads)
{
    enum { NP = 6, N = 40 };
    static const int prompt[NP] = {1, 80, 87, 83, 35, 103};
    ms_gen g;
    ms_err err = {0};
    ms_engine *e = open_greedy(dir, mtp, threads, io, ram, N, &g);
    draft_log lg = {0};
    g.mtp_force_accept = true;
    g.on_draft = log_draft;
    g.on_draft_arg = &lg;
    int seq[NP + N], n = NP, t;
    memcpy(seq, prompt, sizeof prompt);
    if (ms_gen_prompt(&g, prompt, NP, &err) < 0) fail_msg("%s", err.msg);
    while (n < NP + N && ms_gen_next(&g, &t, &err) > 0) seq[n++] = t;
    assert_int_equal(n, NP + N);
    ms_gen_free(&g);
    ms_engine_close(e);
    assert_true(lg.n >= N / (mtp + 1) - 1);
    /* teacher forcing over the emitted sequence, on a fresh engine of the same options */
    ms_engine_opts o = {.threads = threads, .ctx = 96, .batch = 8, .mtp = mtp, .io = io, .ram = ram};
    if (ms_engine_open(dir, &o, &e, &err) < 0) fail_msg("%s", err.msg);
    int V = ms_engine_vocab(e), D = e->model.cfg.hidden_size, pos[NP + N];
    float *hid = malloc(sizeof(float) * (size_t)n * D), *ml = malloc(sizeof(float) * (size_t)V);
    for (int i = 0; i < n; i++) pos[i] = i;
    for (int i = 0; i < n; i += 8) {
        int c = i + 8 <= n ? 8 : n - i;
        ms_batch b = {.n = c, .tokens = seq + i, .pos = pos + i, .hidden = hid + (size_t)i * D};
        if (ms_engine_step(e, &b, false, &err) < 0) fail_msg("%s", err.msg);
    }
    int checked = 0;
    for (int r = 0, q = 0; q + 1 < n - 1; q++) { /* slot q = (hidden at q, token q+1): the draft for q+2 */
        ms_batch b = {.n = 1, .tokens = seq + q + 1, .pos = pos + q, .logits = ml};
        if (ms_engine_mtp(e, &b, hid + (size_t)q * D, true, &err) < 0) fail_msg("%s", err.msg);
        while (r < lg.n && lg.pos[r] < q + 2) r++;
        if (r < lg.n && lg.pos[r] == q + 2) {
            int want = mst_argmax_f(ml, V);
            if (lg.tok[r] != want)
                fail_msg("%s --mtp %d (%s, %d threads): the draft for position %d is %d, teacher-forced %d", dir, mtp,
                         io, threads, q + 2, lg.tok[r], want);
            checked++;
        }
    }
    assert_int_equal(checked, lg.n);
    free(hid);
    free(ml);
    ms_engine_close(e);
}

static void test_drafts_follow_sequence(void **state)
{
    (void)state;
    uint64_t lo = min_ram(GOLDEN, 1);
    int mtps[2] = {1, 3};
    for (int i = 0; i < 2; i++) {
        check_drafts_follow(GOLDEN, mtps[i], "uring", lo, 1);
        check_drafts_follow(GOLDEN, mtps[i], "resident", 0, 2);
    }
    char *step = synth_model("mtp-step-follow", "--preset step-tiny --format hf --mtp 1 --seed 6");
    lo = min_ram(step, 1);
    for (int i = 0; i < 2; i++) {
        check_drafts_follow(step, mtps[i], "uring", lo, 1);
        check_drafts_follow(step, mtps[i], "resident", 0, 2);
    }
    free(step);
}

/* The rejection rule on its own: target p over 4 tokens (through the sampler's
 * softmax at temperature 1), drafts with every kind of P(draft). */
static void test_sample_draft_distribution(void **state)
{
    (void)state;
    enum { V = 6, N = 40000 };
    const float logits0[V] = {2.0f, 1.0f, 0.5f, 0.0f, -30.0f, -30.0f};
    double p[V], z = 0;
    for (int v = 0; v < V; v++) z += exp(logits0[v]);
    for (int v = 0; v < V; v++) p[v] = exp(logits0[v]) / z;
    const int drafts[4] = {0, 2, 4, 1}; /* large, small, ~zero, middle */
    for (int di = 0; di < 4; di++) {
        ms_sampler s;
        ms_sampler_params sp = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                                .repetition_penalty = 1.0f, .seed = 1234 + (uint64_t)di};
        ms_err err = {0};
        assert_int_equal(ms_sampler_init(&s, &sp, V, &err), 0);
        int cnt[V] = {0}, acc = 0;
        for (int i = 0; i < N; i++) {
            float lg[V];
            memcpy(lg, logits0, sizeof lg);
            bool ok;
            int t = ms_sampler_sample_draft(&s, lg, drafts[di], &ok);
            cnt[t]++;
            acc += ok;
            if (ok) assert_int_equal(t, drafts[di]);
            else assert_int_not_equal(t, drafts[di]);
        }
        for (int v = 0; v < V; v++) {
            double f = (double)cnt[v] / N, sd = sqrt(p[v] * (1 - p[v]) / N);
            if (fabs(f - p[v]) > 5 * sd + 1e-4)
                fail_msg("draft %d: token %d frequency %.4f, target %.4f (5 sd = %.4f)", drafts[di], v, f, p[v], 5 * sd);
        }
        /* accepted exactly as often as P(draft) */
        double pa = p[drafts[di]], fa = (double)acc / N;
        assert_true(fabs(fa - pa) <= 5 * sqrt(pa * (1 - pa) / N) + 1e-4);
        ms_sampler_free(&s);
    }
    /* greedy: accepted iff the draft is the argmax */
    ms_sampler s;
    ms_sampler_params sp = ms_sampler_defaults();
    sp.temperature = 0;
    ms_err err = {0};
    assert_int_equal(ms_sampler_init(&s, &sp, V, &err), 0);
    float lg[V];
    bool ok;
    memcpy(lg, logits0, sizeof lg);
    assert_int_equal(ms_sampler_sample_draft(&s, lg, 0, &ok), 0);
    assert_true(ok);
    memcpy(lg, logits0, sizeof lg);
    assert_int_equal(ms_sampler_sample_draft(&s, lg, 1, &ok), 0);
    assert_false(ok);
    ms_sampler_free(&s);
}

/* End to end: the second token's distribution over seeds, with and without MTP.
 * Returns the total variation between the two histograms of bin(t2); counts
 * the drafts made and accepted. */
static double second_token_tv(const char *dir, float temp, int top_k, int bins, uint64_t *drafted, uint64_t *accepted)
{
    enum { RUNS = 2000, MAXV = 600 };
    static const int prompt[4] = {1, 80, 87, 83};
    static int cnt[2][MAXV];
    memset(cnt, 0, sizeof cnt);
    *drafted = *accepted = 0;
    for (int mtp = 0; mtp <= 1; mtp++) {
        ms_engine_opts o = {.threads = 1, .ctx = 16, .batch = 4, .mtp = mtp, .io = "resident"};
        ms_engine *e;
        ms_err err = {0};
        if (ms_engine_open(dir, &o, &e, &err) < 0) fail_msg("%s", err.msg);
        assert_true(ms_engine_vocab(e) <= MAXV);
        for (int r = 0; r < RUNS; r++) {
            ms_engine_reset(e);
            ms_gen g;
            ms_gen_params p = {.sampling = ms_sampler_defaults(), .max_new = 2, .ignore_eos = true};
            p.sampling.temperature = temp;
            p.sampling.top_k = top_k;
            p.sampling.top_p = 1.0f;
            p.sampling.min_p = 0.0f;
            p.sampling.seed = 1000 + (uint64_t)r;
            assert_int_equal(ms_gen_init(&g, e, &p, &err), 0);
            assert_int_equal(ms_gen_prompt(&g, prompt, 4, &err), 0);
            int t1, t2;
            assert_int_equal(ms_gen_next(&g, &t1, &err), 1);
            assert_int_equal(ms_gen_next(&g, &t2, &err), 1);
            cnt[mtp][bins ? t2 % bins : t2]++;
            *drafted += g.drafted;
            *accepted += g.accepted;
            ms_gen_free(&g);
        }
        ms_engine_close(e);
    }
    double tv = 0;
    for (int v = 0; v < MAXV; v++) tv += fabs((double)cnt[0][v] - cnt[1][v]) / RUNS;
    assert_int_equal(*drafted, RUNS);
    return tv / 2;
}

static void test_sampling_keeps_distribution(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("mtp-sample");
    char *cmd = mst_fmt("%s synth --preset tiny --mtp 1 --out %s --force >/dev/null 2>&1", MS_BIN, dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    uint64_t drafted, accepted;
    /* concentrated: 8 candidates, compared token by token */
    double tv = second_token_tv(dir, 1.5f, 8, 0, &drafted, &accepted);
    print_message("top-k 8: total variation %.4f; %llu of %llu drafts accepted\n", tv, (unsigned long long)accepted,
                  (unsigned long long)drafted);
    assert_true(tv < 0.06);
    /* every token a candidate (the draft always has some probability, so the
     * acceptance branch runs too), compared on 8 bins of the token id */
    tv = second_token_tv(dir, 1.0f, 0, 8, &drafted, &accepted);
    print_message("all tokens: total variation %.4f (8 bins); %llu of %llu drafts accepted\n", tv,
                  (unsigned long long)accepted, (unsigned long long)drafted);
    assert_true(accepted > 0 && accepted < drafted);
    assert_true(tv < 0.06);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_draft_logits_match_reference),
        cmocka_unit_test(test_greedy_identical_golden),
        cmocka_unit_test(test_greedy_identical_synth),
        cmocka_unit_test(test_greedy_identical_step),
        cmocka_unit_test(test_greedy_identical_glm),
        cmocka_unit_test(test_drafts_follow_sequence),
        cmocka_unit_test(test_sample_draft_distribution),
        cmocka_unit_test(test_sampling_keeps_distribution),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

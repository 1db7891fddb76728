/* test_serve_mtp.c - MTP speculative decoding inside the serving scheduler
 * (`serve --mtp N`), on a generated model with an MTP layer (`synth --preset
 * tiny --mtp 1`: 4 layers, 3 MoE x 16 experts top-4), driven in-process with
 * --batch 12 (4 slots x 3 verify rows):
 *   - greedy: --mtp 1 and 2, 4 requests together and each alone give exactly
 *     the tokens of `moestream run --temp 0` without MTP, at the minimum budget
 *     (experts evicted mid-step) and with every expert cached;
 *   - sampling: seeded requests at temperature 0.8 give exactly the tokens of
 *     `run --mtp N --temp 0.8 --seed S`, together and alone;
 *   - the draft head's cache follows each slot: with every draft taken
 *     (mtp_force_accept, as test_mtp does for run; the generated model's draft
 *     head never agrees with its main model, so nothing would be accepted
 *     otherwise), each round settles N+1 positions and the drafts decide the
 *     tokens, so 4 requests together must give exactly the tokens of ms_gen
 *     (the loop of `run`) with the same forced acceptance, greedy and sampled;
 *     a dropped, misplaced or non-exact refill changes later drafts; and after
 *     the requests together, each slot's draft-head and main caches equal
 *     ms_gen's bit for bit (one exact probe row through each), also with
 *     draft calls and verify steps of 24 rows, past the GEMM threshold;
 *   - a stop token and max_tokens ending a request mid-round (positions after
 *     the token roll back), then a second request on the same slot reusing the
 *     prefix: with reuse `any` it continues from the stop exactly as a chat turn
 *     of ms_gen does (the deferred refill rows before it, the hidden state
 *     before the stop token); with reuse `exact` it restarts at a whole chunk
 *     and equals a fresh ms_gen / `run --mtp 2`;
 *   - the end of the context (drafts shrink to fit; the last token is at
 *     position ctx, as `run`); a cancelled request frees its slot and the next
 *     one reusing its chunks still equals `run --mtp 2`; log-probs for every
 *     published token, equal together and alone;
 *   - --parallel x (N+1) rows beyond --batch is refused with one line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "engine.h"
#include "generate.h"
#include "ms_test.h"
#include "mst_serve.h"
#include "plan.h"
#include "serve_resp.h"
#include "serve_sched.h"
#include "tokenizer.h"

enum { CTX = 256, BATCH = 12, NGEN = 20, NP = 4 };

static char *g_model;
static ms_tokenizer *g_tok;
static int32_t g_prompts[NP][40];
static float g_rep_penalty = 1.0f; /* requests and ms_gen alike (reset before each test) */
static int g_batch = BATCH;         /* --batch of every engine (reset before each test) */
static int g_ctx = CTX;             /* --ctx likewise */
static const int g_plen[NP] = {5, 13, 21, 37};

static int setup(void **state)
{
    (void)state;
    g_model = mst_tmpdir("serve_mtp_model");
    char *cmd = mst_fmt("%s synth --preset tiny --mtp 1 --out %s --force >/dev/null 2>&1", MS_BIN, g_model);
    int rc = system(cmd);
    free(cmd);
    ms_err err = {0};
    if (rc != 0 || ms_tokenizer_load(g_model, &g_tok, &err) < 0) {
        fprintf(stderr, "setup: synth exit %d %s\n", rc, err.msg);
        return -1;
    }
    for (int p = 0; p < NP; p++)
        for (int i = 0; i < g_plen[p]; i++) g_prompts[p][i] = i == 0 ? 0 : (int32_t)(3 + (p * 131 + i * 37) % 500);
    return 0;
}

static int reset(void **state)
{
    (void)state;
    g_rep_penalty = 1.0f;
    g_batch = BATCH;
    g_ctx = CTX;
    return 0;
}

static int teardown(void **state)
{
    ms_tokenizer_free(g_tok);
    free(g_model);
    return reset(state);
}

/* The plan's minimum --ram for n_seq sequences, the MTP layer included. */
static uint64_t min_budget(int n_seq) { return mst_sched_min_budget(g_model, 1, g_ctx, g_batch, n_seq); }

static mst_server start(int parallel, int mtp, uint64_t ram, ms_reuse_mode reuse, bool force)
{
    ms_engine_opts o = {.ram = ram, .threads = 2, .ctx = g_ctx, .batch = g_batch, .n_seq = parallel, .mtp = mtp};
    ms_sched_opts so = {.reuse = reuse, .mtp_force_accept = force};
    return mst_server_start(g_model, g_tok, &o, &so);
}

static ms_sched_req *request(const int32_t *prompt, int n, int max_tokens, float temp, uint64_t seed)
{
    ms_sched_req *r = mst_sched_request(prompt, n, max_tokens, temp, seed);
    r->sampling.repetition_penalty = g_rep_penalty;
    r->sampling.repeat_last_n = 8;
    return r;
}

/* The caches of sequence seq, bit for bit: the logits of one exact probe row at
 * position q (the end of the sequence) through the draft head and through the
 * main model. Every cache entry the row attends to (positions < q) shows in
 * its bits, so two engines that ran the same calls agree exactly, and a
 * dropped, misplaced or non-exact call shows even where no argmax flips. The
 * probe overwrites position q: the last thing done with an engine. */
typedef struct probe {
    int pos;
    float *mtp, *main; /* [V] each */
} probe;

static probe probe_caches(ms_engine *e, int seq, int q)
{
    int V = ms_engine_vocab(e), D = e->model.cfg.hidden_size, tok = 5;
    probe pr = {.pos = q, .mtp = malloc((size_t)V * sizeof(float)), .main = malloc((size_t)V * sizeof(float))};
    float *h = malloc((size_t)D * sizeof *h);
    for (int i = 0; i < D; i++) h[i] = (float)((i * 37 % 17) - 8) / 8.0f;
    ms_err err = {0};
    ms_batch b = {.n = 1, .tokens = &tok, .pos = &q, .seq = &seq, .logits = pr.mtp};
    if (ms_engine_mtp(e, &b, h, true, &err) < 0) fail_msg("probe: %s", err.msg);
    b.logits = pr.main;
    if (ms_engine_step(e, &b, true, &err) < 0) fail_msg("probe: %s", err.msg);
    free(h);
    return pr;
}

static void probe_check(probe *got, probe *want, int V, const char *what)
{
    if (got->pos != want->pos) fail_msg("%s: the sequence ends at %d, ms_gen's at %d", what, got->pos, want->pos);
    if (memcmp(got->mtp, want->mtp, (size_t)V * sizeof(float)))
        fail_msg("%s: the draft head's cache differs from ms_gen's (probe at position %d)", what, got->pos);
    if (memcmp(got->main, want->main, (size_t)V * sizeof(float)))
        fail_msg("%s: the main model's cache differs from ms_gen's (probe at position %d)", what, got->pos);
    free(got->mtp);
    free(got->main);
    free(want->mtp);
    free(want->main);
}

/* `moestream run` on a prompt (what a user compares with). */
static char *run_cli(const int32_t *prompt, int n, int mtp, float temp, uint64_t seed, uint64_t ram, int ngen)
{
    char *ids = mst_ids_str(prompt, n), *out = NULL;
    int rc = mst_run(&out, NULL,
                     "%s run --model %s --tokens %s -n %d --temp %g --seed %llu --ignore-eos --batch %d --ctx %d "
                     "--threads 2 --ram %llu --mtp %d --quiet",
                     MS_BIN, g_model, ids, ngen, temp, (unsigned long long)seed, g_batch, g_ctx, (unsigned long long)ram,
                     mtp);
    free(ids);
    assert_int_equal(rc, 0);
    out[strcspn(out, "\n")] = 0;
    return out;
}

/* r's tokens equal `run --mtp mtp` on the same prompt (ram, temperature, seed). */
static void expect_run(const ms_sched_req *r, int mtp, float temp, uint64_t seed, uint64_t ram, const char *what)
{
    char *a = mst_sched_ids(r), *w = run_cli(r->prompt, r->n_prompt, mtp, temp, seed, ram, r->n_gen);
    if (strcmp(a, w)) fail_msg("%s:\n got  %s\n want %s", what, a, w);
    free(a);
    free(w);
}

/* Release two requests and stop their server. */
static void release_stop(mst_server *sv, ms_sched_req *a, ms_sched_req *b)
{
    ms_sched_release(sv->s, a);
    ms_sched_release(sv->s, b);
    mst_server_stop(sv);
}

/* 4 requests together, then (alone) each alone: every one equals want[p].
 * slot_of / end_of (optional): where the requests together ended. */
static void check_server(mst_server *sv, float temp, char *const *want, const char *what, bool alone, int *slot_of,
                         int *end_of)
{
    ms_sched_req *r[NP];
    for (int p = 0; p < NP; p++) mst_sched_submit(sv, r[p] = request(g_prompts[p], g_plen[p], NGEN, temp, 100 + p));
    for (int p = 0; p < NP; p++) mst_sched_wait_done(sv, r[p], 120);
    ms_sched_metrics m;
    ms_sched_get_metrics(sv->s, &m);
    assert_true(m.decode_rows > 2 * m.decode_steps); /* they really shared steps */
    assert_true(m.mtp_drafted > 0 && m.mtp_verify_rows > m.decode_steps);
    /* /metrics shows them */
    ms_strbuf mt = {0};
    ms_srv_http_counts hc = {0};
    ms_srv_metrics_text(&mt, &m, &hc);
    char line[96];
    snprintf(line, sizeof line, "\nmoestream_mtp_drafted_tokens_total %llu\n", (unsigned long long)m.mtp_drafted);
    assert_non_null(strstr(ms_sb_str(&mt), line));
    snprintf(line, sizeof line, "\nmoestream_mtp_accepted_tokens_total %llu\n", (unsigned long long)m.mtp_accepted);
    assert_non_null(strstr(ms_sb_str(&mt), line));
    ms_sb_free(&mt);
    for (int p = 0; p < NP; p++) {
        ms_sched_req *q = NULL;
        if (alone) {
            q = request(g_prompts[p], g_plen[p], NGEN, temp, 100 + p);
            mst_sched_submit(sv, q);
            mst_sched_wait_done(sv, q, 120);
        }
        char *a = mst_sched_ids(r[p]), *b = q ? mst_sched_ids(q) : strdup(want[p]);
        if (strcmp(a, want[p]) || strcmp(b, want[p]))
            fail_msg("%s, prompt %d:\n together %s\n alone    %s\n expected %s", what, p, a, b, want[p]);
        assert_int_equal(r[p]->n_gen, NGEN);
        assert_int_equal(r[p]->n_lps, NGEN); /* log-probs of every published token */
        for (int i = 0; q && i < NGEN; i++) assert_true(r[p]->lps[i].lp == q->lps[i].lp && r[p]->lps[i].lp <= 0);
        assert_string_equal(r[p]->finish, "length");
        assert_true(r[p]->mtp_drafted > 0);
        if (slot_of) {
            slot_of[p] = r[p]->slot;
            end_of[p] = r[p]->n_prompt + r[p]->n_gen - 1; /* the last token is not fed */
        }
        free(a);
        free(b);
        if (q) ms_sched_release(sv->s, q);
        ms_sched_release(sv->s, r[p]);
    }
}

/* (a) greedy with --mtp 1 and 2 == run without MTP */
static void test_greedy_equals_no_mtp(void **state)
{
    (void)state;
    uint64_t rams[2] = {min_budget(NP), 4ull << 30};
    for (int ri = 0; ri < 2; ri++) {
        char *want[NP];
        for (int p = 0; p < NP; p++) want[p] = run_cli(g_prompts[p], g_plen[p], 0, 0.0f, 0, rams[ri], NGEN);
        for (int mtp = 1; mtp <= 2; mtp++) {
            mst_server sv = start(NP, mtp, rams[ri], MS_REUSE_EXACT, false);
            char what[96];
            snprintf(what, sizeof what, "greedy --mtp %d, ram %llu vs run without MTP", mtp,
                     (unsigned long long)rams[ri]);
            check_server(&sv, 0.0f, want, what, true, NULL, NULL);
            if (ri == 0) {
                ms_cache_stats cs;
                ms_cache_get_stats(sv.e->cache, &cs);
                mst_check_streamed(&cs);
            }
            mst_server_stop(&sv);
        }
        for (int p = 0; p < NP; p++) free(want[p]);
    }
}

/* (b) seeded sampling == run --mtp N with the same seed */
static void test_sampling_equals_run_mtp(void **state)
{
    (void)state;
    uint64_t ram = min_budget(NP);
    for (int mtp = 1; mtp <= 2; mtp++) {
        char *want[NP];
        for (int p = 0; p < NP; p++) want[p] = run_cli(g_prompts[p], g_plen[p], mtp, 0.8f, 100 + p, ram, NGEN);
        mst_server sv = start(NP, mtp, ram, MS_REUSE_EXACT, false);
        char what[64];
        snprintf(what, sizeof what, "temperature 0.8, --mtp %d vs run --mtp %d", mtp, mtp);
        check_server(&sv, 0.8f, want, what, true, NULL, NULL);
        mst_server_stop(&sv);
        for (int p = 0; p < NP; p++) free(want[p]);
    }
}

/* ms_gen (the loop of `run`) with every draft taken. */
typedef struct gen_ref {
    ms_engine *e;
    ms_gen g;
} gen_ref;

static void gen_open(gen_ref *G, int mtp, uint64_t ram, float temp, uint64_t seed, const int32_t *stop_id)
{
    ms_engine_opts o = {.ram = ram, .threads = 2, .ctx = g_ctx, .batch = g_batch, .mtp = mtp};
    ms_err err = {0};
    if (ms_engine_open(g_model, &o, &G->e, &err) < 0) fail_msg("engine: %s", err.msg);
    ms_gen_params p = {.sampling = ms_sampler_defaults(), .max_new = NGEN, .ignore_eos = stop_id == NULL,
                       .stop = stop_id, .n_stop = stop_id ? 1 : 0};
    p.sampling.temperature = temp;
    p.sampling.seed = seed;
    p.sampling.repetition_penalty = g_rep_penalty;
    p.sampling.repeat_last_n = 8;
    if (ms_gen_init(&G->g, G->e, &p, &err) < 0) fail_msg("gen: %s", err.msg);
    G->g.mtp_force_accept = true;
}

/* Feed a prompt and generate up to max_new tokens into out; returns how many. */
static int gen_turn(gen_ref *G, const int32_t *prompt, int n, int max_new, int32_t *out)
{
    ms_err err = {0};
    ms_gen_new_turn(&G->g, max_new);
    if (ms_gen_prompt(&G->g, prompt, n, &err) < 0) fail_msg("prompt: %s", err.msg);
    int k = 0, t, rc = 0;
    while (k < max_new && (rc = ms_gen_next(&G->g, &t, &err)) > 0) out[k++] = t;
    if (rc < 0) fail_msg("gen: %s", err.msg);
    return k;
}

static void gen_close(gen_ref *G)
{
    ms_gen_free(&G->g);
    ms_engine_close(G->e);
}

static char *gen_once(const int32_t *prompt, int n, int mtp, uint64_t ram, float temp, uint64_t seed, int max_new,
                      probe *pr)
{
    gen_ref G;
    int32_t out[256];
    gen_open(&G, mtp, ram, temp, seed, NULL);
    int k = gen_turn(&G, prompt, n, max_new, out);
    if (pr) *pr = probe_caches(G.e, 0, G.e->pos);
    gen_close(&G);
    return mst_ids_str(out, k);
}

/* With every draft taken the drafts are the tokens: serve's draft head must
 * follow each slot exactly as ms_gen's follows its sequence. 4 requests
 * together and alone give ms_gen's tokens; after the ones together, each
 * slot's caches equal ms_gen's bit for bit. */
static void check_force(int mtp, float temp, bool alone)
{
    uint64_t ram = min_budget(NP);
    char *want[NP];
    probe pw[NP];
    for (int p = 0; p < NP; p++) want[p] = gen_once(g_prompts[p], g_plen[p], mtp, ram, temp, 100 + p, NGEN, &pw[p]);
    char what[128];
    snprintf(what, sizeof what, "every draft taken, --mtp %d, --batch %d, temperature %g, repetition %g vs ms_gen", mtp,
             g_batch, temp, g_rep_penalty);
    mst_server sv;
    if (alone) {
        sv = start(NP, mtp, ram, MS_REUSE_EXACT, true);
        check_server(&sv, temp, want, what, true, NULL, NULL);
        ms_sched_metrics m;
        ms_sched_get_metrics(sv.s, &m);
        assert_true(m.mtp_accepted == m.mtp_drafted);
        assert_true(m.decode_rows >= (uint64_t)mtp * m.decode_steps); /* rounds settled N+1 tokens per slot */
        mst_server_stop(&sv);
    }
    sv = start(NP, mtp, ram, MS_REUSE_EXACT, true);
    int slot_of[NP], end_of[NP];
    check_server(&sv, temp, want, what, false, slot_of, end_of);
    ms_sched_stop(sv.s); /* the engine is the test's again */
    for (int p = 0; p < NP; p++) {
        probe pg = probe_caches(sv.e, slot_of[p], end_of[p]);
        probe_check(&pg, &pw[p], ms_engine_vocab(sv.e), what);
    }
    mst_server_stop(&sv);
    for (int p = 0; p < NP; p++) free(want[p]);
}

static void test_force_accept_follows_gen(void **state)
{
    (void)state;
    for (int mtp = 1; mtp <= 2; mtp++) {
        check_force(mtp, 0.0f, true);
        /* a short repetition window: each token enters the history once, when published */
        g_rep_penalty = 1.5f;
        check_force(mtp, 0.8f, true);
        g_rep_penalty = 1.0f;
    }
}

/* Draft calls and verify steps of 4 x 6 = 24 rows, past the 4-bit kernels' GEMM
 * threshold (20 on AVX-512 and AVX2): rows that were not computed exactly would
 * change the caches' bits. */
static void test_force_accept_gemm_width(void **state)
{
    (void)state;
    g_batch = 24;
    check_force(5, 0.0f, false);
}

/* (c) a request that ends mid-round (stop token, max_tokens), then a second one
 * on the same slot reusing its prefix and adding n_extra tokens (a whole
 * --batch of them: the refill rows before the stop no longer fit the first
 * chunk's draft-head call). */
static void check_mid_round(bool by_stop, int n_extra)
{
    enum { MTP = 2 };
    uint64_t ram = min_budget(1);
    const int32_t *P = g_prompts[1];
    int np = g_plen[1];
    /* the answer with every draft taken: token 0 from the prompt, then rounds of 3 */
    int32_t G0[NGEN];
    gen_ref G;
    gen_open(&G, MTP, ram, 0.0f, 0, NULL);
    assert_int_equal(gen_turn(&G, P, np, NGEN, G0), NGEN);
    gen_close(&G);
    int j = -1; /* where the first request ends: inside a round (not its last token) */
    for (int i = 4; i < NGEN - 4 && j < 0; i++) {
        bool fresh = true;
        for (int k = 0; k < i; k++) fresh &= G0[k] != G0[i];
        if ((i - 1) % (MTP + 1) == 1 && (!by_stop || fresh)) j = i; /* the 2nd of its round's 3 */
    }
    assert_true(j > 0);
    int32_t stop_id = G0[j], extra[32];
    assert_true(n_extra <= 32);
    for (int i = 0; i < n_extra; i++) extra[i] = (int32_t)(7 + 70 * i % 500);
    for (int mode = 0; mode < 2; mode++) { /* reuse any, then exact */
        ms_reuse_mode reuse = mode == 0 ? MS_REUSE_ANY : MS_REUSE_EXACT;
        mst_server sv = start(1, MTP, ram, reuse, true);
        ms_sched_req *r1 = request(P, np, by_stop ? NGEN : j + 1, 0.0f, 0);
        if (by_stop) {
            r1->ignore_eos = false;
            r1->stop_ids[r1->n_stop_ids++] = stop_id;
        }
        mst_sched_submit(&sv, r1);
        mst_sched_wait_done(&sv, r1, 120);
        char *a = mst_sched_ids(r1), *want1 = mst_ids_str(G0, j + 1);
        if (strcmp(a, want1)) fail_msg("first request (%s):\n got  %s\n want %s", by_stop ? "stop" : "length", a, want1);
        assert_string_equal(r1->finish, by_stop ? "stop" : "length");
        assert_true(r1->mtp_accepted == r1->mtp_drafted && r1->mtp_drafted > 0);
        /* the second request: the history (prompt, answer) and more */
        int32_t p2[96];
        int n2 = 0;
        memcpy(p2, P, (size_t)np * sizeof *p2);
        n2 = np;
        memcpy(p2 + n2, G0, (size_t)(j + 1) * sizeof *p2);
        n2 += j + 1;
        memcpy(p2 + n2, extra, (size_t)n_extra * sizeof *p2);
        n2 += n_extra;
        ms_sched_req *r2 = request(p2, n2, NGEN, 0.0f, 0);
        mst_sched_submit(&sv, r2);
        mst_sched_wait_done(&sv, r2, 120);
        int32_t want2[NGEN];
        int k2;
        probe pw;
        if (mode == 0) { /* any: continues at the stop token's position, as a chat turn of ms_gen */
            assert_int_equal(r2->n_cached, np + j);
            gen_open(&G, MTP, ram, 0.0f, 0, by_stop ? &stop_id : NULL);
            int32_t tmp[NGEN];
            assert_int_equal(gen_turn(&G, P, np, by_stop ? NGEN : j + 1, tmp), j + 1);
            G.g.p.ignore_eos = true;
            G.g.p.n_stop = 0;
            k2 = gen_turn(&G, p2 + np + j, n2 - np - j, NGEN, want2);
            pw = probe_caches(G.e, 0, G.e->pos);
            gen_close(&G);
        } else { /* exact: whole chunks of the first prompt, then as a fresh run */
            assert_int_equal(r2->n_cached, np / BATCH * BATCH);
            gen_open(&G, MTP, ram, 0.0f, 0, NULL);
            k2 = gen_turn(&G, p2, n2, NGEN, want2);
            pw = probe_caches(G.e, 0, G.e->pos);
            gen_close(&G);
        }
        char *b = mst_sched_ids(r2), *w2 = mst_ids_str(want2, k2);
        if (strcmp(b, w2))
            fail_msg("second request (reuse %s, after %s at token %d):\n got  %s\n want %s", mode ? "exact" : "any",
                     by_stop ? "a stop" : "max_tokens", j, b, w2);
        assert_true(r2->mtp_accepted == r2->mtp_drafted);
        ms_sched_stop(sv.s); /* the engine is the test's again */
        probe pg = probe_caches(sv.e, 0, n2 + r2->n_gen - 1);
        char what[96];
        snprintf(what, sizeof what, "second request (reuse %s, after %s)", mode ? "exact" : "any",
                 by_stop ? "a stop" : "max_tokens");
        probe_check(&pg, &pw, ms_engine_vocab(sv.e), what);
        free(a);
        free(b);
        free(want1);
        free(w2);
        if (mode == 1) { /* without forced acceptance: equal to `run --mtp 2` on the same prompt */
            ms_sched_req *r3 = request(P, np, j + 1, 0.0f, 0), *r4 = request(p2, n2, NGEN, 0.0f, 0);
            mst_server sv2 = start(1, MTP, ram, MS_REUSE_EXACT, false);
            mst_sched_submit(&sv2, r3);
            mst_sched_wait_done(&sv2, r3, 120);
            mst_sched_submit(&sv2, r4);
            mst_sched_wait_done(&sv2, r4, 120);
            assert_int_equal(r4->n_cached, np / BATCH * BATCH);
            assert_int_equal(r4->n_gen, NGEN);
            expect_run(r4, MTP, 0.0f, 0, ram, "second request vs run --mtp 2");
            release_stop(&sv2, r3, r4);
        }
        release_stop(&sv, r1, r2);
    }
}

static void test_stop_mid_round_then_reuse(void **state)
{
    (void)state;
    check_mid_round(true, 6);
    check_mid_round(true, BATCH + 2);
}

static void test_length_mid_round_then_reuse(void **state)
{
    (void)state;
    check_mid_round(false, 6);
    check_mid_round(false, BATCH + 2);
}

/* Requests that run into the end of the context (no max_tokens, --ctx 40):
 * drafts shrink to what the verify step can hold, the last token is the one at
 * position ctx, as `run`; 4 together, ending at different rounds. */
static void test_context_end(void **state)
{
    (void)state;
    g_ctx = 40;
    uint64_t ram = min_budget(NP);
    for (int force = 0; force < 2; force++) {
        char *want[NP];
        for (int p = 0; p < 3; p++)
            want[p] = force ? gen_once(g_prompts[p], g_plen[p], 2, ram, 0.0f, 0, 100, NULL)
                            : run_cli(g_prompts[p], g_plen[p], 0, 0.0f, 0, ram, 100);
        mst_server sv = start(NP, 2, ram, MS_REUSE_EXACT, force);
        ms_sched_req *r[3];
        for (int p = 0; p < 3; p++) mst_sched_submit(&sv, r[p] = request(g_prompts[p], g_plen[p], -1, 0.0f, 0));
        for (int p = 0; p < 3; p++) {
            mst_sched_wait_done(&sv, r[p], 120);
            char *a = mst_sched_ids(r[p]);
            if (strcmp(a, want[p]))
                fail_msg("context end (%s), prompt %d:\n got  %s\n want %s", force ? "every draft taken" : "greedy",
                         p, a, want[p]);
            assert_int_equal(r[p]->n_gen, g_ctx - g_plen[p] + 1);
            assert_string_equal(r[p]->finish, "length");
            free(a);
            free(want[p]);
            ms_sched_release(sv.s, r[p]);
        }
        mst_server_stop(&sv);
    }
}

/* A request cancelled while it decodes frees its slot; the next request on
 * the slot reuses its prompt's chunks and still equals `run --mtp 2`. */
static void test_cancel_then_reuse(void **state)
{
    (void)state;
    uint64_t ram = min_budget(1);
    mst_server sv = start(1, 2, ram, MS_REUSE_EXACT, false);
    ms_sched_req *r1 = request(g_prompts[3], g_plen[3], -1, 0.8f, 5);
    mst_sched_submit(&sv, r1);
    ms_sched_lock(sv.s);
    for (int i = 0; r1->n_gen < 5 && !r1->finish && i < 600; i++) ms_sched_wait(sv.s, r1, 100);
    ms_sched_unlock(sv.s);
    ms_sched_cancel(sv.s, r1);
    mst_sched_wait_done(&sv, r1, 120);
    assert_string_equal(r1->finish, "cancelled");
    assert_true(r1->n_gen >= 5 && r1->n_gen < CTX - g_plen[3]);
    ms_sched_req *r2 = request(g_prompts[3], g_plen[3], NGEN, 0.8f, 7);
    mst_sched_submit(&sv, r2);
    mst_sched_wait_done(&sv, r2, 120);
    assert_int_equal(r2->n_cached, g_plen[3] / BATCH * BATCH);
    assert_int_equal(r2->n_gen, NGEN);
    expect_run(r2, 2, 0.8f, 7, ram, "after a cancel vs run --mtp 2");
    release_stop(&sv, r1, r2);
}

/* The verify step must fit --batch: one clear line otherwise. */
static void test_batch_too_small(void **state)
{
    (void)state;
    ms_engine_opts o = {.ram = 4ull << 30, .threads = 2, .ctx = CTX, .batch = 7, .n_seq = 4, .mtp = 1};
    ms_engine *e;
    ms_sched *s = NULL;
    ms_err err = {0};
    assert_int_equal(ms_engine_open(g_model, &o, &e, &err), 0);
    ms_sched_opts so = {0};
    assert_int_equal(ms_sched_start(e, g_tok, &so, &s, &err), -EINVAL);
    assert_string_equal(err.msg, "--parallel 4 with --mtp 1 needs --batch of at least 8 (a verify step holds 2 rows "
                                 "per slot)");
    ms_engine_close(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_greedy_equals_no_mtp, reset),
        cmocka_unit_test_setup(test_sampling_equals_run_mtp, reset),
        cmocka_unit_test_setup(test_force_accept_follows_gen, reset),
        cmocka_unit_test_setup(test_force_accept_gemm_width, reset),
        cmocka_unit_test_setup(test_stop_mid_round_then_reuse, reset),
        cmocka_unit_test_setup(test_length_mid_round_then_reuse, reset),
        cmocka_unit_test_setup(test_context_end, reset),
        cmocka_unit_test_setup(test_cancel_then_reuse, reset),
        cmocka_unit_test_setup(test_batch_too_small, reset),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

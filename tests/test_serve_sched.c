/* test_serve_sched.c - the serving scheduler on a generated model (4 MoE
 * layers x 16 experts, top-4), driven in-process:
 *   - batch invariance: 4 greedy requests running together give exactly the
 *     tokens of the same 4 run one after another, and of `moestream run --temp
 *     0` with the same --batch (prefill over several chunks), at the minimum
 *     budget (experts evicted mid-step) and with every expert cached; seeded
 *     sampling likewise equals `run --temp 0.9 --seed S`;
 *   - sharing: at the minimum budget, 4 concurrent requests read fewer expert
 *     bytes per generated token than the same 4 sequentially, and their decode
 *     steps carry ~4 rows each;
 *   - prefix reuse: exact reuse takes whole --batch chunks of the previous
 *     prompt and keeps the tokens bit-identical; `any` reuses the whole common
 *     prefix;
 *   - stop strings end the answer before the match; max_tokens; cancellation
 *     frees the slot; a full queue refuses (EBUSY);
 *   - a scripted DeepSeek-V3 tool call comes out as content + tool_calls with
 *     finish "tool_calls" through the same path as sampled tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "ms_test.h"
#include "mst_serve.h"
#include "plan.h"
#include "chat_template.h"
#include "serve_chat.h"
#include "serve_sched.h"
#include "tokenizer.h"

enum { CTX = 512, BATCH = 8, NGEN = 16, NP = 4 };

static char *g_model;
static ms_tokenizer *g_tok;
static int32_t g_prompts[NP][40];
static const int g_plen[NP] = {5, 13, 21, 37};

static int setup(void **state)
{
    (void)state;
    g_model = mst_serve_model("serve_sched_model");
    ms_err err = {0};
    if (!g_model || ms_tokenizer_load(g_model, &g_tok, &err) < 0) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    for (int p = 0; p < NP; p++)
        for (int i = 0; i < g_plen[p]; i++) g_prompts[p][i] = i == 0 ? 0 : (int32_t)(3 + (p * 131 + i * 37) % 500);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ms_tokenizer_free(g_tok);
    free(g_model);
    return 0;
}

static uint64_t min_budget(int n_seq) { return mst_sched_min_budget(g_model, 0, CTX, BATCH, n_seq); }

typedef mst_server server;

static server start(int parallel, uint64_t ram, ms_reuse_mode reuse, int queue)
{
    ms_engine_opts o = {.ram = ram, .threads = 2, .ctx = CTX, .batch = BATCH, .n_seq = parallel};
    ms_sched_opts so = {.queue = queue, .reuse = reuse};
    return mst_server_start(g_model, g_tok, &o, &so);
}

/* The same prompts through `moestream run --temp T` (what a user compares with). */
static char *run_cli(int p, float temp, uint64_t seed, uint64_t ram)
{
    char ids[512] = "";
    for (int i = 0; i < g_plen[p]; i++) sprintf(ids + strlen(ids), i ? ",%d" : "%d", g_prompts[p][i]);
    char *out = NULL;
    int rc = mst_run(&out, NULL,
                     "%s run --model %s --tokens %s -n %d --temp %g --seed %llu --ignore-eos --batch %d --ctx %d "
                     "--threads 2 --ram %llu --quiet",
                     MS_BIN, g_model, ids, NGEN, temp, (unsigned long long)seed, BATCH, CTX, (unsigned long long)ram);
    assert_int_equal(rc, 0);
    out[strcspn(out, "\n")] = 0;
    return out;
}

/* 4 requests together and one after another; both equal run's tokens. */
static void check_invariance(uint64_t ram, float temp)
{
    server sv = start(NP, ram, MS_REUSE_EXACT, 0);
    ms_sched_req *r[NP];
    for (int p = 0; p < NP; p++) mst_sched_submit(&sv, r[p] = mst_sched_request(g_prompts[p], g_plen[p], NGEN, temp, 100 + p));
    for (int p = 0; p < NP; p++) mst_sched_wait_done(&sv, r[p], 60);
    ms_sched_metrics m;
    ms_sched_get_metrics(sv.s, &m);
    assert_true(m.decode_rows > 2 * m.decode_steps); /* they really shared steps */
    for (int p = 0; p < NP; p++) {
        ms_sched_req *q = mst_sched_request(g_prompts[p], g_plen[p], NGEN, temp, 100 + p);
        mst_sched_submit(&sv, q);
        mst_sched_wait_done(&sv, q, 60);
        char *a = mst_sched_ids(r[p]), *b = mst_sched_ids(q), *c = run_cli(p, temp, 100 + p, ram);
        if (strcmp(a, b) || strcmp(a, c))
            fail_msg("prompt %d (ram %llu, temp %g):\n together   %s\n sequential %s\n run        %s", p,
                     (unsigned long long)ram, temp, a, b, c);
        assert_int_equal(r[p]->n_gen, NGEN);
        assert_string_equal(r[p]->finish, "length");
        /* the text is the detokenized ids */
        char *text = NULL;
        size_t tl;
        ms_err err = {0};
        int32_t ids[NGEN];
        for (int i = 0; i < NGEN; i++) ids[i] = r[p]->lps[i].token;
        assert_int_equal(ms_tokenizer_decode(g_tok, ids, NGEN, MS_TOK_SKIP_SPECIAL, &text, &tl, &err), 0);
        assert_string_equal(ms_sb_str(&r[p]->content), text);
        free(text);
        free(a);
        free(b);
        free(c);
        ms_sched_release(sv.s, q);
        ms_sched_release(sv.s, r[p]);
    }
    mst_server_stop(&sv);
}

static void test_invariance_min_budget(void **state)
{
    (void)state;
    check_invariance(min_budget(NP), 0.0f);
}

static void test_invariance_all_cached(void **state)
{
    (void)state;
    check_invariance(4ull << 30, 0.0f);
}

static void test_invariance_sampling(void **state)
{
    (void)state;
    check_invariance(min_budget(NP), 0.9f);
}

/* Routing seen by the MoE blocks: per (step, layer) the distinct experts. */
typedef struct route_count {
    uint8_t seen[64];
    uint64_t distinct, pairs; /* sum over (step, layer) of |union|; token-expert pairs */
} route_count;

static void on_route(void *arg, int layer, int t, const int *ids, const float *w, int k)
{
    (void)layer;
    (void)w;
    route_count *rc = arg;
    if (t == 0) memset(rc->seen, 0, sizeof rc->seen); /* a layer of a new step */
    for (int j = 0; j < k; j++) {
        rc->distinct += !rc->seen[ids[j]];
        rc->seen[ids[j]] = 1;
    }
    rc->pairs += (uint64_t)k;
}

/* Expert bytes read per generated token in decode steps, for 4 requests. */
static double bytes_per_token(bool together, double *rows_per_step)
{
    server sv = start(NP, min_budget(NP), MS_REUSE_EXACT, 0);
    route_count rc = {0};
    sv.e->env.on_route = on_route; /* before any step: the scheduler thread reads env */
    sv.e->env.on_route_arg = &rc;
    ms_sched_req *r[NP];
    for (int p = 0; p < NP; p++) { /* short prompts: one prefill chunk each, then 4 rows per step */
        r[p] = mst_sched_request(g_prompts[p], 5, 32, 0.0f, 0);
        mst_sched_submit(&sv, r[p]);
        if (!together) mst_sched_wait_done(&sv, r[p], 60);
    }
    for (int p = 0; p < NP; p++) mst_sched_wait_done(&sv, r[p], 60);
    ms_sched_metrics m;
    ms_sched_get_metrics(sv.s, &m);
    for (int p = 0; p < NP; p++) ms_sched_release(sv.s, r[p]);
    mst_server_stop(&sv);
    /* no expert is read twice in a step: reads <= the steps' unions of experts */
    print_message("%s: %llu experts read, %llu distinct per (step, layer), %llu token-expert pairs\n",
                  together ? "together" : "sequential", (unsigned long long)m.expert_reads,
                  (unsigned long long)rc.distinct, (unsigned long long)rc.pairs);
    assert_true(m.expert_reads <= rc.distinct);
    if (together) assert_true(rc.distinct < rc.pairs * 3 / 4); /* steps shared experts */
    assert_true(m.cache && m.decode_rows == NP * 31); /* the first token of each comes from its prefill */
    *rows_per_step = (double)m.decode_rows / (double)m.decode_steps;
    return (double)m.decode_bytes_read / (double)m.decode_rows;
}

static void test_sharing(void **state)
{
    (void)state;
    double seq_rows, tog_rows;
    double seq = bytes_per_token(false, &seq_rows), tog = bytes_per_token(true, &tog_rows);
    print_message("expert bytes read per decode token: sequential %.0f (%.2f rows/step), together %.0f (%.2f rows/step)\n",
                  seq, seq_rows, tog, tog_rows);
    assert_true(seq_rows == 1.0);
    assert_true(tog_rows > 3.0);
    assert_true(tog < 0.85 * seq);
}

static void test_prefix_reuse(void **state)
{
    (void)state;
    int32_t a[40], b[40];
    memcpy(a, g_prompts[3], sizeof a);
    memcpy(b, g_prompts[3], sizeof b);
    b[19] = 7; /* common prefix 19 of 37 */
    uint64_t ram = min_budget(1);
    for (int mode = 0; mode < 2; mode++) {
        server sv = start(1, ram, mode == 0 ? MS_REUSE_EXACT : MS_REUSE_ANY, 0);
        ms_sched_req *r1 = mst_sched_request(a, 37, NGEN, 0.0f, 0), *r2 = mst_sched_request(b, 37, NGEN, 0.0f, 0);
        mst_sched_submit(&sv, r1);
        mst_sched_wait_done(&sv, r1, 60);
        mst_sched_submit(&sv, r2);
        mst_sched_wait_done(&sv, r2, 60);
        assert_int_equal(r1->n_cached, 0);
        assert_int_equal(r2->n_cached, mode == 0 ? 16 : 19); /* exact: whole chunks of 8 */
        server fresh = start(1, ram, MS_REUSE_OFF, 0);
        ms_sched_req *r3 = mst_sched_request(b, 37, NGEN, 0.0f, 0);
        mst_sched_submit(&fresh, r3);
        mst_sched_wait_done(&fresh, r3, 60);
        char *x = mst_sched_ids(r2), *y = mst_sched_ids(r3);
        if (mode == 0) assert_string_equal(x, y); /* bit-identical to a fresh prefill */
        else assert_int_equal(r2->n_gen, NGEN);
        free(x);
        free(y);
        ms_sched_release(fresh.s, r3);
        mst_server_stop(&fresh);
        ms_sched_release(sv.s, r1);
        ms_sched_release(sv.s, r2);
        mst_server_stop(&sv);
    }
}

static void test_stop_strings_and_cancel(void **state)
{
    (void)state;
    server sv = start(2, 4ull << 30, MS_REUSE_EXACT, 1);
    ms_sched_req *r = mst_sched_request(g_prompts[2], g_plen[2], 24, 0.0f, 0);
    mst_sched_submit(&sv, r);
    mst_sched_wait_done(&sv, r, 60);
    const char *full = ms_sb_str(&r->content);
    size_t fl = strlen(full);
    assert_true(fl >= 8);
    /* a stop string from the middle of the answer: the answer ends before it */
    char stopstr[5];
    memcpy(stopstr, full + fl / 2, 4);
    stopstr[4] = 0;
    const char *at = strstr(full, stopstr);
    ms_sched_req *q = mst_sched_request(g_prompts[2], g_plen[2], 24, 0.0f, 0);
    q->stop[q->n_stop++] = strdup("this never appears");
    q->stop[q->n_stop++] = strdup(stopstr);
    mst_sched_submit(&sv, q);
    mst_sched_wait_done(&sv, q, 60);
    assert_string_equal(q->finish, "stop");
    assert_int_equal(q->content.len, (size_t)(at - full));
    assert_memory_equal(ms_sb_str(&q->content), full, q->content.len);
    assert_true(q->n_gen < 24);
    /* cancel a long request; a full queue refuses */
    ms_sched_req *l1 = mst_sched_request(g_prompts[0], g_plen[0], 10000, 0.0f, 0),
                 *l2 = mst_sched_request(g_prompts[1], g_plen[1], 10000, 0.0f, 0),
                 *w = mst_sched_request(g_prompts[1], g_plen[1], 4, 0.0f, 0), *x = mst_sched_request(g_prompts[1], g_plen[1], 4, 0.0f, 0);
    mst_sched_submit(&sv, l1);
    mst_sched_submit(&sv, l2);
    mst_sched_submit(&sv, w); /* waits: both slots are busy, queue 1 */
    ms_err err = {0};
    assert_int_equal(ms_sched_submit(sv.s, x, &err), -EBUSY);
    ms_sched_cancel(sv.s, l1);
    mst_sched_wait_done(&sv, l1, 60);
    assert_string_equal(l1->finish, "cancelled");
    mst_sched_wait_done(&sv, w, 60); /* got l1's slot */
    assert_string_equal(w->finish, "length");
    ms_sched_cancel(sv.s, l2);
    mst_sched_wait_done(&sv, l2, 60);
    ms_sched_metrics m;
    ms_sched_get_metrics(sv.s, &m);
    assert_int_equal(m.active, 0);
    assert_int_equal(m.cancelled, 2);
    assert_true(l1->n_gen < 10000);
    ms_sched_req *all[] = {r, q, l1, l2, w, x};
    for (size_t i = 0; i < 6; i++) ms_sched_release(sv.s, all[i]);
    mst_server_stop(&sv);
}

static void test_scripted_tool_call(void **state)
{
    (void)state;
    ms_srv_chat *chat;
    ms_err err = {0};
    ms_chat_template *ct;
    assert_int_equal(ms_chat_template_load(g_model, NULL, g_tok, &ct, &err), 0);
    assert_int_equal(ms_srv_chat_new(ct, NULL, g_tok, &chat, &err), 0);
    assert_string_equal(ms_srv_chat_format(chat), "deepseek_v3");
    server sv = start(2, 4ull << 30, MS_REUSE_EXACT, 0);
    static const char script[] =
        "Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        "{\"city\": \"Paris\", \"days\": 2}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n"
        "```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    json_object *tools = json_tokener_parse("[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}]");
    ms_sched_req *r = mst_sched_request(g_prompts[1], g_plen[1], 1000, 0.0f, 0);
    size_t n;
    assert_int_equal(ms_tokenizer_encode(g_tok, script, strlen(script), 0, &r->script, &n, &err), 0);
    r->n_script = (int)n;
    r->detok_flags = 0;
    r->ignore_eos = false;
    assert_int_equal(ms_srv_parser_new(chat, tools, "<｜User｜>hi<｜Assistant｜>", 10, NULL, &r->parser, &err), 0);
    mst_sched_submit(&sv, r);
    mst_sched_wait_done(&sv, r, 60);
    assert_string_equal(r->finish, "tool_calls");
    assert_string_equal(ms_sb_str(&r->content), "Let me check.");
    assert_int_equal(r->n_calls, 2);
    assert_string_equal(r->calls[0].name, "get_weather");
    assert_string_equal(r->calls[0].arguments, "{\"city\": \"Paris\", \"days\": 2}");
    assert_string_equal(r->calls[1].name, "get_time");
    assert_int_equal(r->n_gen, (int)n); /* the script's tokens; the end of the script is the stop */
    ms_sched_release(sv.s, r);
    json_object_put(tools);
    mst_server_stop(&sv);
    ms_srv_chat_free(chat);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invariance_min_budget), cmocka_unit_test(test_invariance_all_cached),
        cmocka_unit_test(test_invariance_sampling),   cmocka_unit_test(test_sharing),
        cmocka_unit_test(test_prefix_reuse),          cmocka_unit_test(test_stop_strings_and_cancel),
        cmocka_unit_test(test_scripted_tool_call),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

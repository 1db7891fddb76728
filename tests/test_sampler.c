/* test_sampler.c - the sampler's filters against their definitions:
 *   - top-k picks exactly the k best (ties to the lower id): at a high
 *     temperature every one of them is drawn and nothing else is;
 *   - presence/frequency penalties follow OpenAI's rule over generated tokens
 *     only (prompt tokens do not count), logit bias is added first;
 *   - ms_logprobs equals a float64 log-softmax, its top list is sorted with
 *     ties broken by id;
 *   - the same seed gives the same draws. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_test.h"
#include "sampler.h"

enum { V = 1000 };

static ms_sampler make(ms_sampler_params p)
{
    ms_sampler s;
    ms_err err = {0};
    if (ms_sampler_init(&s, &p, V, &err) < 0) fail_msg("%s", err.msg);
    return s;
}

/* logits with many ties: value = (i * 7919) % 97 / 10 */
static void fill(float *lg)
{
    for (int i = 0; i < V; i++) lg[i] = (float)((i * 7919) % 97) / 10.0f;
}

static void test_top_k_exact_set(void **state)
{
    (void)state;
    float lg[V], w[V];
    fill(lg);
    for (int k = 1; k <= 40; k += 13) {
        /* the reference set: sort (logit desc, id asc), first k */
        int ref[V];
        for (int i = 0; i < V; i++) ref[i] = i;
        for (int i = 0; i < k; i++)
            for (int j = i + 1; j < V; j++)
                if (lg[ref[j]] > lg[ref[i]] || (lg[ref[j]] == lg[ref[i]] && ref[j] < ref[i])) {
                    int t = ref[i];
                    ref[i] = ref[j];
                    ref[j] = t;
                }
        bool in_ref[V] = {0}, seen[V] = {0};
        for (int i = 0; i < k; i++) in_ref[ref[i]] = true;
        ms_sampler_params p = {.temperature = 1000.0f, .top_k = k, .top_p = 1.0f, .repetition_penalty = 1.0f, .seed = 3};
        ms_sampler s = make(p);
        for (int n = 0; n < 4000; n++) {
            memcpy(w, lg, sizeof w);
            int t = ms_sampler_sample(&s, w);
            if (!in_ref[t]) fail_msg("top_k %d drew %d (logit %g), not among the %d best", k, t, lg[t], k);
            seen[t] = true;
        }
        for (int i = 0; i < k; i++)
            if (!seen[ref[i]]) fail_msg("top_k %d never drew %d", k, ref[i]);
        ms_sampler_free(&s);
    }
}

static void test_penalties_and_bias(void **state)
{
    (void)state;
    float lg[V];
    for (int i = 0; i < V; i++) lg[i] = 0;
    ms_sampler_params p = {.temperature = 0, .top_p = 1.0f, .repetition_penalty = 1.0f};
    /* frequency: token 5 at 5.0, token 9 at 4.0; after 5 was generated twice,
     * 5 - 2 x 0.6 = 3.8 < 4.0 */
    p.frequency_penalty = 0.6f;
    ms_sampler s = make(p);
    ms_sampler_accept(&s, 5); /* prompt: does not count */
    ms_sampler_accept(&s, 5);
    ms_sampler_begin_output(&s);
    lg[5] = 5.0f;
    lg[9] = 4.0f;
    float w[V];
    memcpy(w, lg, sizeof w);
    assert_int_equal(ms_sampler_sample(&s, w), 5);
    assert_true(w[5] == 5.0f);
    ms_sampler_accept(&s, 5);
    memcpy(w, lg, sizeof w);
    assert_int_equal(ms_sampler_sample(&s, w), 5); /* 5 - 0.6 = 4.4 */
    assert_true(fabsf(w[5] - 4.4f) < 1e-6f);
    ms_sampler_accept(&s, 5);
    memcpy(w, lg, sizeof w);
    assert_int_equal(ms_sampler_sample(&s, w), 9);
    assert_true(fabsf(w[5] - 3.8f) < 1e-6f && w[9] == 4.0f);
    ms_sampler_free(&s);
    /* presence: once per token, whatever its count */
    p.frequency_penalty = 0;
    p.presence_penalty = 0.7f;
    s = make(p);
    ms_sampler_begin_output(&s);
    ms_sampler_accept(&s, 5);
    ms_sampler_accept(&s, 5);
    ms_sampler_accept(&s, 9);
    memcpy(w, lg, sizeof w);
    assert_int_equal(ms_sampler_sample(&s, w), 5); /* 4.3 > 3.3 */
    assert_true(fabsf(w[5] - 4.3f) < 1e-6f && fabsf(w[9] - 3.3f) < 1e-6f);
    ms_sampler_free(&s);
    /* logit bias first */
    int32_t ids[2] = {9, 11};
    float bias[2] = {1.5f, -100.0f};
    p.presence_penalty = 0;
    p.bias_ids = ids;
    p.bias = bias;
    p.n_bias = 2;
    s = make(p);
    memcpy(w, lg, sizeof w);
    assert_int_equal(ms_sampler_sample(&s, w), 9);
    assert_true(w[9] == 5.5f && w[11] == -100.0f);
    ms_sampler_free(&s);
}

static void test_logprobs(void **state)
{
    (void)state;
    float lg[V];
    fill(lg);
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) mx = fmax(mx, lg[i]);
    for (int i = 0; i < V; i++) sum += exp((double)lg[i] - mx);
    int32_t top[20];
    float tlp[20], lp;
    assert_int_equal(ms_logprobs(lg, V, 123, 20, &lp, top, tlp), 20);
    assert_true(fabs(lp - ((double)lg[123] - mx - log(sum))) < 1e-5);
    for (int k = 0; k < 20; k++) {
        assert_true(fabs(tlp[k] - ((double)lg[top[k]] - mx - log(sum))) < 1e-5);
        if (k) assert_true(lg[top[k - 1]] > lg[top[k]] || (lg[top[k - 1]] == lg[top[k]] && top[k - 1] < top[k]));
    }
    double total = 0;
    for (int i = 0; i < V; i++) total += exp((double)lg[i] - mx - log(sum));
    assert_true(fabs(total - 1.0) < 1e-9);
    assert_int_equal(ms_logprobs(lg, V, 0, 0, &lp, top, tlp), 0);
}

static void test_seed(void **state)
{
    (void)state;
    float lg[V], w[V];
    fill(lg);
    int a[64], b[64];
    for (int run = 0; run < 2; run++) {
        ms_sampler_params p = ms_sampler_defaults();
        p.temperature = 2.0f;
        p.seed = 42;
        ms_sampler s = make(p);
        for (int i = 0; i < 64; i++) {
            memcpy(w, lg, sizeof w);
            (run ? b : a)[i] = ms_sampler_sample(&s, w);
        }
        ms_sampler_free(&s);
    }
    assert_memory_equal(a, b, sizeof a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_top_k_exact_set),
        cmocka_unit_test(test_penalties_and_bias),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_seed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

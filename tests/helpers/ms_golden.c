/* ms_golden.c - see ms_golden.h. */
#include "ms_golden.h"

#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ms_test.h"

void mst_golden_load(const char *dir, mst_golden *g)
{
    char *path = mst_fmt("%s/ref.json", dir);
    char *text = mst_slurp(path, NULL);
    free(path);
    assert_non_null(text);
    json_object *r = json_tokener_parse(text);
    free(text);
    assert_non_null(r);
    json_object *tk, *lg, *nv;
    assert_true(json_object_object_get_ex(r, "tokens", &tk));
    assert_true(json_object_object_get_ex(r, "logits", &lg));
    assert_true(json_object_object_get_ex(r, "n_vocab", &nv));
    g->dir = dir;
    g->n = (int)json_object_array_length(tk);
    g->vocab = json_object_get_int(nv);
    assert_int_equal((int)json_object_array_length(lg), g->n);
    g->tokens = malloc(sizeof(int) * (size_t)g->n);
    g->logits = malloc(sizeof(double) * (size_t)g->n * g->vocab);
    assert_true(g->tokens && g->logits);
    for (int i = 0; i < g->n; i++) g->tokens[i] = json_object_get_int(json_object_array_get_idx(tk, i));
    for (int p = 0; p < g->n; p++) {
        json_object *row = json_object_array_get_idx(lg, p);
        assert_int_equal(json_object_array_length(row), g->vocab);
        for (int v = 0; v < g->vocab; v++)
            g->logits[(size_t)p * g->vocab + v] = json_object_get_double(json_object_array_get_idx(row, v));
    }
    json_object_put(r);
}

void mst_golden_free(mst_golden *g)
{
    free(g->tokens);
    free(g->logits);
    g->tokens = NULL;
    g->logits = NULL;
}

int mst_argmax_f(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

int mst_argmax_d(const double *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

double mst_golden_compare(const mst_golden *g, const float *lg)
{
    double worst = 0;
    for (int p = 0; p < g->n; p++) {
        const double *ref = g->logits + (size_t)p * g->vocab;
        const float *got = lg + (size_t)p * g->vocab;
        for (int v = 0; v < g->vocab; v++) {
            double d = fabs((double)got[v] - ref[v]) / fmax(1.0, fabs(ref[v]));
            if (d > worst) worst = d;
        }
        assert_int_equal(mst_argmax_f(got, g->vocab), mst_argmax_d(ref, g->vocab));
    }
    return worst;
}

float *mst_golden_run(const mst_golden *g, const ms_engine_opts *o, bool prefill)
{
    ms_engine *e;
    ms_err err = {0};
    if (ms_engine_open(g->dir, o, &e, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(ms_engine_vocab(e), g->vocab);
    float *lg = malloc(sizeof(float) * (size_t)g->n * g->vocab);
    assert_non_null(lg);
    if (prefill) {
        if (ms_engine_eval(e, g->tokens, g->n, lg, true, &err) < 0) fail_msg("%s", err.msg);
    } else {
        for (int i = 0; i < g->n; i++)
            if (ms_engine_eval(e, g->tokens + i, 1, lg + (size_t)i * g->vocab, false, &err) < 0)
                fail_msg("%s", err.msg);
    }
    ms_engine_close(e);
    return lg;
}

double mst_golden_check(const mst_golden *g, int threads, bool force_ref, int batch, bool prefill, double bound)
{
    ms_engine_opts o = {.threads = threads, .force_ref = force_ref, .ctx = 64, .batch = batch};
    float *lg = mst_golden_run(g, &o, prefill);
    double worst = mst_golden_compare(g, lg);
    print_message("%s%s, chunks of %d, %d thread(s): max rel error %.3g (bound %.3g)\n", prefill ? "prefill" : "decode",
                  force_ref ? " (scalar kernels)" : "", batch, threads, worst, bound);
    assert_true(worst <= 1e-3);
    assert_true(worst < bound);
    free(lg);
    return worst;
}

void mst_golden_threads_identical(const mst_golden *g, int batch)
{
    size_t bytes = sizeof(float) * (size_t)g->n * g->vocab;
    float *lg[5];
    for (int i = 0; i < 5; i++) {
        ms_engine_opts o = {.threads = i < 3 ? i + 1 : (i == 3 ? 1 : 3), .ctx = 64, .batch = i < 3 ? 1 : batch};
        lg[i] = mst_golden_run(g, &o, i >= 3);
    }
    assert_memory_equal(lg[0], lg[1], bytes);
    assert_memory_equal(lg[0], lg[2], bytes);
    assert_memory_equal(lg[3], lg[4], bytes);
    for (int i = 0; i < 5; i++) free(lg[i]);
}

/* golden.c - see golden.h. */
#include "golden.h"

#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>

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
    g->n = (int)json_object_array_length(tk);
    assert_true(g->n > 0 && g->n <= MST_GOLDEN_MAX_TOKENS);
    g->vocab = json_object_get_int(nv);
    for (int i = 0; i < g->n; i++) g->tokens[i] = json_object_get_int(json_object_array_get_idx(tk, i));
    assert_int_equal(json_object_array_length(lg), g->n);
    g->logits = malloc(sizeof(double) * (size_t)g->n * g->vocab);
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
    free(g->logits);
    g->logits = NULL;
}

static int argmax_f(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int argmax_d(const double *x, int n)
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
            if (!(d <= worst)) worst = d; /* NaN becomes the worst */
        }
        assert_int_equal(argmax_f(got, g->vocab), argmax_d(ref, g->vocab));
    }
    return worst;
}

float *mst_golden_run(const char *dir, const mst_golden *g, const ms_engine_opts *o, bool prefill)
{
    ms_engine *e;
    ms_err err = {0};
    if (ms_engine_open(dir, o, &e, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(ms_engine_vocab(e), g->vocab);
    float *lg = malloc(sizeof(float) * (size_t)g->n * g->vocab);
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

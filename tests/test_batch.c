/* test_batch.c - batch invariance of the forward step (ms_engine_step with
 * exact = true): a row's logits are bit-identical to those of a one-row decode
 * step, whatever else shares the step. Checked on the ds3-tiny golden model
 * (f32, HF layout) and a generated MLX 4-bit model with group-limited routing:
 *   - two sequences decoding together == each decoded alone (memcmp);
 *   - two consecutive positions of one sequence in one step (MTP verification)
 *     == two one-row steps;
 *   - a rejected row is rolled back by re-running its position: the KV cache is
 *     indexed by position, so the redo equals the first-time result;
 *   - the same at the minimum budget (experts evicted mid-run), with 1 and 2
 *     threads, and with every expert resident;
 *   - all of it again on the step3p5 golden and a generated step model (sliding
 *     layers with a ring of 8 positions that the 12-position sequences wrap).
 * The non-exact step (prefill GEMM) is not bit-identical, and this test also
 * checks it is used: without `exact`, two rows generally differ from decode. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "ms_test.h"

#define GOLDEN MS_TEST_DATA "/golden/ds3-tiny"

enum { T = 12 };
static const int SEQ_A[T] = {1, 75, 104, 111, 32, 119, 97, 115, 32, 116, 104, 101};
static const int SEQ_B[T] = {1, 46, 13, 114, 101, 104, 116, 32, 115, 97, 119, 32};

static ms_engine *open_engine(const char *dir, int n_seq, int threads, const char *io, uint64_t ram)
{
    ms_engine_opts o = {.threads = threads, .ctx = 32, .batch = 8, .n_seq = n_seq, .io = io, .ram = ram};
    ms_engine *e;
    ms_err err = {0};
    if (ms_engine_open(dir, &o, &e, &err) < 0) fail_msg("%s: %s", dir, err.msg);
    return e;
}

/* Reference: one sequence, one token per step: lg[t][V]. */
static float *decode_alone(const char *dir, const int *toks, int threads, const char *io, uint64_t ram)
{
    ms_engine *e = open_engine(dir, 1, threads, io, ram);
    int V = ms_engine_vocab(e);
    float *lg = malloc(sizeof(float) * T * V);
    ms_err err = {0};
    for (int t = 0; t < T; t++) assert_int_equal(ms_engine_eval(e, toks + t, 1, lg + (size_t)t * V, false, &err), 0);
    ms_engine_close(e);
    return lg;
}

static void check_model(const char *dir, int threads, const char *io, uint64_t ram)
{
    float *ra = decode_alone(dir, SEQ_A, threads, io, ram);
    float *rb = decode_alone(dir, SEQ_B, threads, io, ram);
    ms_engine *e = open_engine(dir, 2, threads, io, ram);
    int V = ms_engine_vocab(e);
    float *lg = malloc(sizeof(float) * 8 * V);
    ms_err err = {0};
    /* 1. two sequences per step */
    for (int t = 0; t < T; t++) {
        int tok[2] = {SEQ_A[t], SEQ_B[t]}, pos[2] = {t, t}, seq[2] = {0, 1};
        ms_batch b = {.n = 2, .tokens = tok, .pos = pos, .seq = seq, .logits = lg, .all_logits = true};
        if (ms_engine_step(e, &b, true, &err) < 0) fail_msg("%s", err.msg);
        if (memcmp(lg, ra + (size_t)t * V, sizeof(float) * V)) fail_msg("%s: seq A row %d differs from decode", dir, t);
        if (memcmp(lg + V, rb + (size_t)t * V, sizeof(float) * V)) fail_msg("%s: seq B row %d differs", dir, t);
    }
    /* 2. verification steps: positions t, t+1 of sequence 1 rewritten with A's tokens,
     *    after a wrong guess at t+1 that the next step overwrites (rollback) */
    int wrong = SEQ_A[1] == 7 ? 8 : 7;
    for (int t = 0; t + 1 < T; t += 2) {
        int tok[2] = {SEQ_A[t], wrong}, pos[2] = {t, t + 1}, seq[2] = {1, 1};
        ms_batch b = {.n = 2, .tokens = tok, .pos = pos, .seq = seq, .logits = lg, .all_logits = true};
        if (ms_engine_step(e, &b, true, &err) < 0) fail_msg("%s", err.msg);
        if (memcmp(lg, ra + (size_t)t * V, sizeof(float) * V)) fail_msg("%s: verify row %d differs", dir, t);
        tok[1] = SEQ_A[t + 1]; /* the redo of position t+1 with the right token */
        b.n = 1;
        b.tokens = tok + 1;
        b.pos = pos + 1;
        if (ms_engine_step(e, &b, true, &err) < 0) fail_msg("%s", err.msg);
        if (memcmp(lg, ra + (size_t)(t + 1) * V, sizeof(float) * V)) fail_msg("%s: redo row %d differs", dir, t + 1);
    }
    /* 3. eight rows of one sequence (at the kernels' GEMM threshold for f32
     *    weights): exact == decode bit for bit; the prefill path within rounding */
    enum { R = 8 };
    int tok[R], pos[R], seq[R];
    for (int i = 0; i < R; i++) {
        tok[i] = SEQ_A[i];
        pos[i] = i;
        seq[i] = 0;
    }
    ms_batch b = {.n = R, .tokens = tok, .pos = pos, .seq = seq, .logits = lg, .all_logits = true};
    assert_int_equal(ms_engine_step(e, &b, true, &err), 0);
    if (memcmp(lg, ra, sizeof(float) * R * V)) fail_msg("%s: %d-row exact step differs from decode", dir, R);
    assert_int_equal(ms_engine_step(e, &b, false, &err), 0);
    double worst = 0;
    bool differs = false;
    for (int i = 0; i < R * V; i++) {
        double d = fabs((double)lg[i] - ra[i]);
        worst = d > worst ? d : worst;
        differs |= lg[i] != ra[i];
    }
    assert_true(worst < 1e-3);
    print_message("%s: prefill-path %d-row step vs decode: max |d| %.3g (%s)\n", dir, R, worst,
                  differs ? "differs: GEMM" : "identical");
    ms_engine_close(e);
    free(lg);
    free(ra);
    free(rb);
}

static void test_golden_two_sequences(void **state)
{
    (void)state;
    check_model(GOLDEN, 1, NULL, 0);
    check_model(GOLDEN, 2, "resident", 0);
}

/* A generated model of `preset` in MS_TMP_DIR/name; *min_ram = the minimum
 * budget for this engine shape (experts are evicted between steps). */
static char *synth_model(const char *preset, const char *name, uint64_t *min_ram)
{
    char *dir = mst_tmpdir(name);
    char *cmd = mst_fmt("%s synth --preset %s --out %s --force >/dev/null 2>&1", MS_BIN, preset, dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    char *out = NULL;
    assert_int_equal(mst_run(&out, NULL, "%s plan --model %s --ram 1G --ctx 32 --batch 8 --json", MS_BIN, dir), 0);
    const char *k = strstr(out, "\"min_ram_bytes\":");
    assert_non_null(k);
    *min_ram = strtoull(k + strlen("\"min_ram_bytes\":"), NULL, 10);
    free(out);
    return dir;
}

static void test_synth_under_eviction(void **state)
{
    (void)state;
    uint64_t min_ram;
    char *dir = synth_model("tiny", "batch-synth", &min_ram);
    /* two sequences need a second KV cache: a little more than one */
    check_model(dir, 2, "uring", min_ram + (1u << 20));
    check_model(dir, 1, "pread", min_ram + (1u << 20));
    check_model(dir, 2, "resident", 0);
    free(dir);
}

/* The same on step3p5 models: per-sequence KV caches whose sliding layers keep
 * a ring of 8 positions (12 positions wrap it; the rewrite of sequence 1 from
 * position 0 and the one-position rollback must find the right keys in it). */
static void test_step_models(void **state)
{
    (void)state;
    check_model(MS_TEST_DATA "/golden/step-tiny", 2, NULL, 0);
    uint64_t min_ram;
    char *dir = synth_model("step-tiny", "batch-step", &min_ram);
    check_model(dir, 2, "uring", min_ram + (1u << 20));
    check_model(dir, 1, "resident", 0);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_two_sequences),
        cmocka_unit_test(test_synth_under_eviction),
        cmocka_unit_test(test_step_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

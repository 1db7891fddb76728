/* ms_golden.h - golden-logit cases for the forward-pass tests: load a case's
 * ref.json (prompt tokens and reference logits at every position, the format
 * of tests/data/golden/<case>/), run the engine over the prompt (decode one
 * token at a time, or prefill in chunks of opts->batch) and compare with the
 * golden rule: the same argmax at every position (asserted) and the largest
 * |logit - ref| / max(1, |ref|) (returned, for the test's own bounds). */
#ifndef MS_GOLDEN_H
#define MS_GOLDEN_H

#include <stdbool.h>

#include "engine.h"

typedef struct mst_golden {
    const char *dir;   /* the case's directory (model + ref.json) */
    int *tokens;       /* [n] */
    int n, vocab;
    double *logits;    /* [n][vocab] */
} mst_golden;

void mst_golden_load(const char *dir, mst_golden *g);
/* Index of the largest value (the first of equal ones). */
int mst_argmax_f(const float *x, int n);
int mst_argmax_d(const double *x, int n);
void mst_golden_free(mst_golden *g);
/* Max relative error of lg[n][vocab] against the reference; asserts the argmax. */
double mst_golden_compare(const mst_golden *g, const float *lg);
/* Logits at every position (malloc'd [n][vocab]) from an engine opened with o:
 * token by token (prefill false) or one ms_engine_eval of the whole prompt,
 * which runs in chunks of o->batch. */
float *mst_golden_run(const mst_golden *g, const ms_engine_opts *o, bool prefill);
/* One run (ctx 64, `threads`, scalar kernels if force_ref, chunks of `batch`)
 * checked against the golden rule and the tighter `bound` the test reaches;
 * prints and returns the max relative error. */
double mst_golden_check(const mst_golden *g, int threads, bool force_ref, int batch, bool prefill, double bound);
/* Decode with 1, 2 and 3 threads and prefill in chunks of `batch` with 1 and
 * 3 threads give byte-identical logits. */
void mst_golden_threads_identical(const mst_golden *g, int batch);

#endif

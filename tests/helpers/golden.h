/* golden.h - golden logits cases (tests/data/golden/<case>/ref.json: the
 * prompt's token ids and reference logits at every position) and running a
 * model directory through the engine to compare with them. The tolerance the
 * golden READMEs give is |logit - ref| <= 1e-3 * max(1, |ref|) with the same
 * argmax at every position; mst_golden_compare asserts the argmax and returns
 * the worst relative error so each test can also bound what it really reaches. */
#ifndef MST_GOLDEN_H
#define MST_GOLDEN_H

#include <stdbool.h>

#include "engine.h"

#define MST_GOLDEN_MAX_TOKENS 4096

typedef struct mst_golden {
    int tokens[MST_GOLDEN_MAX_TOKENS];
    int n, vocab;
    double *logits; /* [n][vocab] */
} mst_golden;

/* Load dir/ref.json (asserts on any problem). */
void mst_golden_load(const char *dir, mst_golden *g);
void mst_golden_free(mst_golden *g);
/* Max over positions and entries of |got - ref| / max(1, |ref|); asserts the
 * argmax at every position. lg: [n][vocab]. */
double mst_golden_compare(const mst_golden *g, const float *lg);
/* Logits [n][vocab] (malloc'd) of g's prompt through the model in dir:
 * prefill (chunks of o->batch) or decode (one token per eval). */
float *mst_golden_run(const char *dir, const mst_golden *g, const ms_engine_opts *o, bool prefill);

#endif

/* trace.h - routing traces: which experts every MoE layer selected for every
 * token, in processing order. Written by `run --trace FILE`, read by `simulate`.
 *
 * Two encodings, auto-detected by the reader:
 *  - JSON lines (moestream trace v1, see docs/POLICIES.md and
 *    shared/data/traces/README.md): a header object, then one object per token
 *    {"seq":S,"pos":P,"experts":[[K ids of layer 0],...]} with an optional
 *    "predicted":[[ids predicted for layer 0],...] (prefetch predictions, any
 *    count per layer) and an optional "batch":N on the first token of N > 1
 *    tokens that were computed in one forward pass (a prefill chunk: the
 *    runtime acquires the union of their experts per layer at once, so the
 *    simulator must replay them as one pass); unknown fields are ignored.
 *    The tokens of a batch follow each other and share one seq.
 *  - binary (compact, for long runs): "MSTRACE1", u32 little-endian length and the
 *    same JSON header text, then records: u8 tag (1 = token, 2 = token with
 *    predictions), u32 seq, u32 pos, [tag 2: u8 n_pred], n_layers*top_k expert ids,
 *    [tag 2: n_layers*n_pred predicted ids, "none" = all ones]; or tag 3 = batch:
 *    u32 N, the next N token records are one forward pass (N >= 2). Ids are u8
 *    when n_experts < 255, else u16 (little-endian).
 * Reading is strict: a bad header, a wrong number of layers or experts, an id
 * out of range or repeated, a truncated line/record each give one error naming
 * the file and line (record) number. */
#ifndef MS_TRACE_H
#define MS_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MS_TRACE_MAX_LAYERS 4096u
#define MS_TRACE_MAX_EXPERTS 65534u
#define MS_TRACE_MAX_TOPK 256u
#define MS_TRACE_MAX_PRED 255u
#define MS_TRACE_MAX_BATCH (1u << 20)

typedef enum ms_trace_format {
    MS_TRACE_JSONL = 0,
    MS_TRACE_BINARY = 1,
} ms_trace_format;

typedef struct ms_trace_info {
    char model[256];
    char source[512];
    uint32_t n_layers, n_experts, top_k;
    int32_t *layers; /* [n_layers] model layer index of each traced MoE layer; malloc'd
                        (owned by the ms_trace it belongs to); NULL = 0..n_layers-1 */
} ms_trace_info;

typedef struct ms_trace {
    ms_trace_info info;
    uint64_t n_tokens;
    uint32_t *seq, *pos;   /* [n_tokens] */
    uint32_t *batch;       /* [n_tokens] tokens in the forward pass that starts at this
                              token (1 = computed alone), 0 = inside the previous pass */
    uint16_t *experts;     /* [n_tokens][n_layers][top_k] */
    uint32_t max_pred;     /* widest "predicted" list of any (token, layer); 0 = none */
    int32_t *predicted;    /* [n_tokens][n_layers][max_pred]: the predicted ids of each
                              (token, layer) first, then -1 padding; NULL if max_pred == 0 */
} ms_trace;

/* Read a trace in either encoding. */
int ms_trace_read(const char *path, ms_trace *t, ms_err *err);
void ms_trace_free(ms_trace *t);

/* Append the tokens of src to dst (same n_layers, n_experts, top_k; e.g. two
 * phases of one run). -EINVAL on a geometry mismatch, -ENOMEM; dst unchanged
 * on error. */
int ms_trace_append(ms_trace *dst, const ms_trace *src, ms_err *err);

static inline const uint16_t *ms_trace_experts(const ms_trace *t, uint64_t token, uint32_t layer)
{
    return t->experts + ((size_t)token * t->info.n_layers + layer) * t->info.top_k;
}

/* Streaming writer: open (writes the header), add one token at a time, close. */
typedef struct ms_trace_writer ms_trace_writer;

int ms_trace_writer_open(const char *path, ms_trace_format fmt, const ms_trace_info *info, ms_trace_writer **out,
                         ms_err *err);
/* experts: [n_layers * top_k] ids; predicted: NULL or [n_layers * n_pred] ids
 * (negative = none), n_pred <= MS_TRACE_MAX_PRED. */
int ms_trace_writer_add(ms_trace_writer *w, uint32_t seq, uint32_t pos, const uint32_t *experts,
                        const int32_t *predicted, uint32_t n_pred, ms_err *err);
/* Announce that the next n tokens were computed in one forward pass (n = 1:
 * nothing to record). They must all be added, with one seq, before the next
 * batch or close. */
int ms_trace_writer_batch(ms_trace_writer *w, uint32_t n, ms_err *err);
/* Flush and close (also frees w; safe with NULL). Returns the first error. */
int ms_trace_writer_close(ms_trace_writer *w, ms_err *err);

/* Write a whole trace. */
int ms_trace_write(const ms_trace *t, const char *path, ms_trace_format fmt, ms_err *err);

#endif

/* engine.h - one loaded model ready to compute: model store + resident weights
 * + architecture weights + expert source + KV cache/scratch + thread pool and
 * kernels. One engine holds one conversation (its KV cache); ms_engine_reset
 * starts over. ms_engine_eval feeds tokens (split into chunks of --batch) and
 * returns logits. */
#ifndef MS_ENGINE_H
#define MS_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "arch.h"
#include "err.h"
#include "experts.h"
#include "model.h"
#include "resident.h"

typedef struct ms_engine_opts {
    uint64_t ram;     /* the one budget (0 = ms_plan_default_budget()) */
    const char *io;   /* expert source: "uring" (default), "pread", "fault:<spec>" (expert
                         cache in the budget), "mmap" (page-cache baseline, not bounded by
                         the budget), "resident" (read every expert at start-up) */
    unsigned queue_depth; /* reads in flight (0 = default) */
    uint64_t io_align;    /* I/O alignment to size cache slots for (0 = what the files need) */
    const char *policy;   /* eviction policy spec (NULL = default) */
    const char *profile;  /* policy profile file (optional) */
    bool mlock;           /* lock the expert cache in RAM */
    const char *prefetch; /* "none" (default) or "next-layer" */
    int threads;      /* 0 = physical cores */
    bool force_ref;   /* scalar reference kernels */
    int ctx;          /* KV cache positions (0 = min(4096, max_position_embeddings)) */
    bool kv_bf16;     /* KV cache in bf16 (half the memory, lossy: logits change slightly) */
    int batch;        /* prefill chunk in tokens (0 = 128) */
    int n_seq;        /* sequences with their own KV cache (0 = 1; serve --parallel) */
    int mtp;          /* MTP draft tokens per step (0 = off): loads the checkpoint's MTP layer */
    /* progress(what, done, total, arg) while loading (may be NULL) */
    void (*progress)(const char *what, uint64_t done, uint64_t total, void *arg);
    void *progress_arg;
} ms_engine_opts;

typedef struct ms_cache ms_cache;
typedef struct ms_plan ms_plan;

typedef struct ms_engine_stats {
    uint64_t prefill_tokens, decode_tokens;
    double prefill_s, decode_s;
    uint64_t resident_bytes, state_bytes, expert_mem_bytes;
    double load_s;
    uint64_t draft_rows;        /* MTP draft-head rows computed */
    double draft_s;
} ms_engine_stats;

typedef struct ms_engine {
    ms_model model;
    ms_resident res;
    const ms_arch_ops *arch;
    void *weights;
    void *state;
    ms_pool *pool;
    ms_fwd_env env;
    ms_cache *cache;  /* NULL unless the expert source is the streaming cache */
    ms_plan *plan;    /* the budget split the engine was built with */
    char io_name[32];
    uint64_t budget;
    int ctx, batch, threads, n_seq, mtp;
    int pos;          /* tokens in sequence 0's KV cache (ms_engine_eval) */
    ms_engine_stats stats;
    ms_pred_stats pred;
    char prefetch_mode[16];
} ms_engine;

int ms_engine_open(const char *dir, const ms_engine_opts *o, ms_engine **out, ms_err *err);
void ms_engine_close(ms_engine *e);

/* Feed n tokens after the current position. logits: [vocab] for the last token,
 * or [n][vocab] with all_logits; may be NULL. Chunks of n > 1 go through the
 * prefill path (timed as prefill), n == 1 through decode. */
int ms_engine_eval(ms_engine *e, const int *tokens, int n, float *logits, bool all_logits, ms_err *err);
void ms_engine_reset(ms_engine *e);

/* One forward step over rows of any sequences at any positions (see ms_batch
 * in arch.h; rows <= batch). exact: every row's logits are bit-identical to a
 * one-row step's (decode of several sequences, MTP verification). Counted as
 * decode when exact or one row, else as prefill. */
int ms_engine_step(ms_engine *e, const ms_batch *b, bool exact, ms_err *err);

/* The MTP draft head over rows (token after pos, hidden state at pos; see the
 * mtp_forward op in arch.h). Needs an engine opened with mtp > 0. */
int ms_engine_mtp(ms_engine *e, const ms_batch *b, const float *hidden, bool exact, ms_err *err);
int ms_engine_vocab(const ms_engine *e);

#endif

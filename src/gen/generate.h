/* generate.h - the generation loop shared by run, chat and bench decode:
 * prefill a prompt, then sample tokens one at a time until -n, a stop token or
 * an interrupt, optionally recording the routing trace, and summarize the run
 * (throughput, expert-cache figures, memory) as one stats line or JSON.
 *
 *   ms_gen g;  ms_gen_init(&g, engine, &params, err);
 *   ms_gen_trace_open(&g, "run.trace.jsonl", err);          optional
 *   ms_gen_prompt(&g, ids, n, err);                          prefill
 *   while (ms_gen_next(&g, &tok, err) > 0) print(tok);       decode
 *   ms_gen_get_stats(&g, &st); ms_gen_stats_line / _json
 */
#ifndef MS_GENERATE_H
#define MS_GENERATE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "err.h"
#include "sampler.h"
#include "trace.h"

typedef struct ms_gen_params {
    ms_sampler_params sampling;
    int max_new;                /* tokens to generate */
    const int32_t *stop;        /* stop ids (generation ends after emitting one; it is returned) */
    int n_stop;
    bool ignore_eos;
    volatile sig_atomic_t *interrupted; /* optional: set by a signal handler to stop early */
} ms_gen_params;

typedef struct ms_gen_stats {
    uint64_t prompt_tokens, generated_tokens;
    double prefill_s, decode_s, prefill_tok_s, decode_tok_s, load_s;
    /* expert cache (zero when the source is not the streaming cache) */
    bool cache;
    uint64_t accesses, hits, misses, expert_reads, bytes_read, bytes_payload;
    double hit_rate, decode_hit_rate;
    double experts_read_per_token, bytes_read_per_token; /* decode phase */
    double disk_bytes_per_token; /* decode phase, as the kernel counts storage reads (all backends) */
    double read_gbps, read_busy_s, io_wait_s, io_wait_fraction, io_submit_s;
    uint64_t prefetch_issued, prefetch_used, prefetch_wasted;
    const char *prefetch;        /* mode */
    double prefetch_precision;   /* predicted experts the router then chose (= recall at top-k) */
    double prefetch_use_rate;    /* prefetched experts later used / prefetched and resolved */
    double prefetch_wait_saved_s; /* estimate: prefetched experts used x this run's I/O wait
                                     per demand miss (bench decode measures none vs next-layer) */
    bool prefetch_stopped;
    uint64_t prefetch_stopped_at;
    int64_t slots;
    uint64_t cache_bytes;
    uint64_t peak_rss, budget, resident_bytes, state_bytes;
    const char *io_backend, *policy;
    char io_line[256];
    int buffered_files;          /* shard files read without O_DIRECT (filesystem refused it) */
    int mtp;                     /* draft tokens per step (0 = off) */
    uint64_t mtp_drafted, mtp_accepted, mtp_steps;
    double mtp_acceptance;       /* accepted / drafted */
    double mtp_tokens_per_step;  /* tokens emitted per verify forward pass */
    bool interrupted;
    const char *stop_reason;    /* "length", "stop", "interrupt", "context" */
} ms_gen_stats;

typedef struct ms_gen {
    ms_engine *e;
    ms_gen_params p;
    ms_sampler sampler;
    float *logits;              /* [vocab] */
    int last;                   /* last token fed (the next one is sampled from logits) */
    bool have_logits;
    int generated;
    const char *stop_reason;
    /* trace */
    ms_trace_writer *trace;
    uint32_t *trace_rows;       /* [batch][n_moe][K] */
    int32_t *trace_pred;        /* [n_moe][K] predictions for the token being decoded (-1 none) */
    bool trace_has_pred;
    uint32_t trace_seq, trace_pos;
    /* cache counters when this generator started (its figures are deltas) and at
     * its first decode step (decode-phase figures) */
    struct ms_gen_snap {
        uint64_t hits, accesses, misses, reads, bytes, payload, prefetch_issued, prefetch_used, prefetch_wasted;
        uint64_t predicted, correct;
        uint64_t disk;       /* /proc/self/io read_bytes */
        double busy_s, wait_s;
    } base, snap;
    bool snapped;
    /* MTP speculative decoding (engine opened with --mtp N) */
    int mtp;                    /* N draft tokens per verify step (0 = off) */
    bool mtp_force_accept;      /* debug (bench): take every draft as accepted (output not valid) */
    /* observer (tests, verbose output): draft k of a round, for position pos */
    void (*on_draft)(void *arg, int k, int pos, int32_t token);
    void *on_draft_arg;
    int pending;                /* emitted token not fed yet (at position e->pos), -1 none */
    float *hid;                 /* [max(batch, N+1)][D] final hidden states of the last main step */
    float *h_last;              /* [D] hidden state at position e->pos - 1 */
    float *mhid;                /* [N+1][D] MTP rows: hidden inputs / chained outputs */
    float *vlg;                 /* [N+1][vocab] verify-step logits */
    int *rows_tok, *rows_pos;   /* [max(batch, N+1)] scratch rows */
    int out_q[16], out_pos[16]; /* emitted tokens (and positions) waiting to be returned */
    int out_n, out_i;
    int hid_p0;                 /* position of hid's row 0 after a verify step */
    /* The draft head's refill of the slots a verify step settled, deferred into
     * the next draft call (one multi-row call instead of two): rows (verified
     * hidden, accepted token) at fold_pos[] */
    int fold_n;                 /* deferred rows, 0..N */
    int fold_tok[16], fold_pos[16];
    float *fin, *fout;          /* [N+1][D] that call's hidden inputs / output states */
    uint64_t drafted, accepted, verify_steps;
} ms_gen;

int ms_gen_init(ms_gen *g, ms_engine *e, const ms_gen_params *p, ms_err *err);
void ms_gen_free(ms_gen *g);

/* Record routing to a trace file (.bin = binary encoding, else JSON lines). */
int ms_gen_trace_open(ms_gen *g, const char *path, ms_err *err);
/* Start a new sequence in the trace (chat turns share a sequence). */
void ms_gen_trace_new_seq(ms_gen *g);

/* Feed prompt tokens (appended to the conversation); logits of the last one are kept. */
int ms_gen_prompt(ms_gen *g, const int32_t *ids, int n, ms_err *err);
/* Sample the next token and feed it. Returns 1 with *tok set, 0 when generation
 * is over (length, interrupt, context full; a stop token is returned first with 1
 * and ends the next call), -errno on error. */
int ms_gen_next(ms_gen *g, int32_t *tok, ms_err *err);
/* MTP (engine opened with --mtp N): ms_gen_next drafts N tokens with the
 * checkpoint's draft head, verifies them and the pending token in ONE exact
 * forward step, and returns the accepted prefix and the next token one call at
 * a time. Greedy output is bit-identical to decoding without MTP; sampling uses
 * ms_sampler_sample_draft (the same distribution). */
/* Reset the per-turn counter (chat: a new answer). */
void ms_gen_new_turn(ms_gen *g, int max_new);

void ms_gen_get_stats(const ms_gen *g, ms_gen_stats *st);
/* One human line ("prefill 512 tok 85.1 tok/s | decode 64 tok 3.2 tok/s | hit 62.5% ..."). */
char *ms_gen_stats_line(const ms_gen_stats *st, char *buf, size_t len);
/* Write the stats JSON object to path ("-" = stdout). */
int ms_gen_stats_json(const ms_gen_stats *st, const char *path, ms_err *err);

#endif

/* serve_sched.h - the serving scheduler: up to --parallel sequences decode together,
 * one forward step for all of them per iteration, so the MoE block acquires
 * the union of their experts once per step (each routed expert read from disk
 * at most once per step, whatever number of sequences use it).
 *
 * One thread owns the engine. Each iteration it
 *   1. admits queued requests into idle slots (continuous batching; the slot
 *      whose kept tokens share the longest reusable prefix wins, else the least
 *      recently used), and retires cancelled ones;
 *   2. runs ONE prefill chunk of one prefilling slot (round robin) as its own
 *      step (exact = false: the GEMM path, chunks of --batch from a multiple of
 *      --batch, exactly as `run` chunks a prompt);
 *   3. runs ONE exact decode step over every decoding slot (one row each: its
 *      pending token at its next position, in its own KV cache);
 *   4. samples each slot's next token from its own logits and sampler state,
 *      detokenizes it, applies stop strings and feeds the chat parser.
 * A long prompt thus advances one chunk per iteration while the others keep
 * decoding. Because decode rows are exact and prefill chunks never mix
 * requests, a request's tokens do not depend on what runs with it: greedy
 * output equals `run --temp 0` with the same --batch, alone or with others.
 *
 * Prefix reuse (a slot keeps its tokens; the next request rewinds positions):
 *   exact  (default) only whole --batch chunks of the previous prompt, which are
 *          computed exactly as a fresh prefill computes them: output stays
 *          bit-identical to a fresh run;
 *   any    the longest common prefix, generated tokens included (more reuse for
 *          chat clients that resend the history; the reused part was computed
 *          by decode steps, so logits may differ from a fresh prefill in the
 *          last bits);
 *   off    nothing is reused.
 *
 * MTP (engine opened with --mtp N): step 3 becomes a round of speculative
 * decoding over every decoding slot, the protocol of src/gen/generate.c per
 * slot: N exact draft calls of the checkpoint's draft head (one row per slot;
 * the first also carries each slot's deferred refill of the rows its previous
 * verify step settled), ONE exact verify step of every slot's pending token
 * and drafts (slots x (N+1) rows <= --batch), acceptance per slot (greedy: the
 * longest agreeing prefix plus one; sampling: rejection sampling), and the
 * round's tokens published one at a time (a stop, a stop string or max_tokens
 * ends the request at that token; the positions after it roll back). Prefill
 * chunks feed the draft head as `run` does. A request's tokens equal `run --mtp
 * N` with the same prompt, seed and parameters, alone or with others; greedy
 * ones also equal decoding without MTP. Prefix reuse restarts where the slot
 * kept the hidden state the draft head needs: the end of its sequence or its
 * last prefill chunk boundary (exact reuse: always a whole chunk).
 *
 * Requests are shared between the HTTP threads and the scheduler: inputs are
 * set before ms_sched_submit and not touched after; outputs change under the
 * scheduler lock, and each change bumps `version` and signals the request.
 * A request is reference counted (the submitter's reference + the scheduler's
 * while it is queued or running). */
#ifndef MS_SCHED_H
#define MS_SCHED_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "sampler.h"
#include "serve_chat.h"
#include "strbuf.h"
#include "tokenizer.h"

typedef enum { MS_REUSE_EXACT, MS_REUSE_ANY, MS_REUSE_OFF } ms_reuse_mode;

typedef struct ms_sched_opts {
    int queue;          /* requests waiting beyond the busy slots before 429 (0 = 64) */
    ms_reuse_mode reuse;
    bool mtp_force_accept; /* debug (tests, bench serve): take every draft as accepted, as
                              ms_gen's mtp_force_accept (the output is not the model's) */
} ms_sched_opts;

/* Log-probabilities of one generated token (the model's distribution). */
typedef struct ms_sched_lp {
    int32_t token;
    float lp;
    int n_top;
    int32_t top_ids[20];
    float top_lp[20];
} ms_sched_lp;

typedef struct ms_sched_req {
    /* input (owned; fixed once submitted) */
    int32_t *prompt;
    int n_prompt;
    ms_sampler_params sampling; /* bias arrays: set bias_ids/bias below, the scheduler points at them */
    int32_t *bias_ids;
    float *bias;
    int max_tokens;             /* -1: until the context is full */
    bool ignore_eos;
    int32_t stop_ids[64];
    int n_stop_ids;
    char *stop[16];             /* stop strings (owned copies) */
    int n_stop;
    bool logprobs;
    int top_logprobs;
    unsigned detok_flags;       /* MS_TOK_SKIP_SPECIAL for plain text, 0 for a chat parser */
    ms_srv_parser *parser;      /* chat: output parser (owned); NULL: text is content */
    int32_t *script;            /* test hook: these tokens replace the sampled ones, then a stop */
    int n_script;
    /* output (under the scheduler lock) */
    ms_strbuf content, reasoning;
    ms_srv_call *calls;         /* completed tool calls (owned copies) */
    int n_calls;
    ms_sched_lp *lps;           /* per generated token when logprobs */
    int n_lps, cap_lps;
    int n_gen;                  /* generated (sampled) tokens, a stop token included */
    int n_cached;               /* prompt tokens reused from the slot's KV cache */
    int mtp_drafted, mtp_accepted; /* --mtp: draft tokens proposed / accepted for this request */
    int slot;                   /* -1 while queued */
    const char *finish;         /* NULL while running; "stop", "length", "tool_calls", "cancelled", "error" */
    char error[256];            /* finish == "error" */
    uint64_t version;           /* bumped on every change */
    double t_submit, t_first, t_done;
    /* private */
    bool cancelled;
    int refs;
    pthread_cond_t cond;
    struct ms_sched_req *next;
} ms_sched_req;

/* Figures for /metrics and bench serve (a consistent snapshot). */
typedef struct ms_sched_metrics {
    uint64_t requests, completed, cancelled, failed; /* submitted; finished by stop/length, cancelled, error */
    uint64_t prompt_tokens, cached_tokens, generated_tokens;
    uint64_t prefill_steps, prefill_rows, decode_steps, decode_rows;
    double prefill_s, decode_s;
    uint64_t decode_bytes_read, prefill_bytes_read; /* expert bytes read during those steps */
    uint64_t decode_experts_read;
    /* --mtp N (0 = off): a decode step is a round of N draft calls and one verify
     * step; decode_rows counts the tokens the rounds published */
    int mtp;
    uint64_t mtp_drafted, mtp_accepted;         /* draft tokens proposed / accepted */
    uint64_t mtp_draft_rows, mtp_verify_rows;   /* rows of the draft calls / the verify steps */
    /* expert cache totals (zero without the streaming cache) */
    bool cache;
    uint64_t accesses, hits, bytes_read, expert_reads;
    double read_busy_s, io_wait_s;
    int64_t cache_slots;
    uint64_t cache_bytes;
    int queued, active, parallel;
    uint64_t peak_rss, budget;
} ms_sched_metrics;

typedef struct ms_sched ms_sched;

/* Start the scheduler thread on an engine opened with n_seq = --parallel (tok
 * NULL: token ids only, no text). */
int ms_sched_start(ms_engine *e, const ms_tokenizer *tok, const ms_sched_opts *o, ms_sched **out, ms_err *err);
/* Finish every request (cancelled), refuse new ones (-ESHUTDOWN) and join the
 * thread; the scheduler stays valid for connections still reading results. */
void ms_sched_stop(ms_sched *s);
/* Free it (after ms_sched_stop and after every connection is gone). */
void ms_sched_free(ms_sched *s);

/* A new request (refs = 1, the caller's), NULL when out of memory. */
ms_sched_req *ms_sched_req_new(void);
/* Queue it. -EBUSY: the queue is full (429); -ESHUTDOWN: stopping; -EINVAL:
 * a bad input (message in err). */
int ms_sched_submit(ms_sched *s, ms_sched_req *r, ms_err *err);
/* Ask a queued or running request to stop (the client went away). */
void ms_sched_cancel(ms_sched *s, ms_sched_req *r);
/* Drop the caller's reference. */
void ms_sched_release(ms_sched *s, ms_sched_req *r);

/* Output access: lock, read the request's outputs, wait for a change
 * (timeout_ms; returns when signalled or timed out), unlock. */
void ms_sched_lock(ms_sched *s);
void ms_sched_unlock(ms_sched *s);
void ms_sched_wait(ms_sched *s, ms_sched_req *r, int timeout_ms);

void ms_sched_get_metrics(ms_sched *s, ms_sched_metrics *m);

#endif

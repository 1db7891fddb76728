/* sampler.h - next-token choice from logits: greedy, or temperature with top-k,
 * top-p, min-p filters, a repetition penalty, OpenAI's presence/frequency
 * penalties and logit bias, from a seeded PRNG (the same seed gives the same
 * text). Defaults follow the seed model cards: temp 0.2, top_k 50, top_p 0.95,
 * min_p 0.01 (temp 0 = greedy). */
#ifndef MS_SAMPLER_H
#define MS_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

typedef struct ms_sampler_params {
    float temperature;         /* 0 = greedy (argmax) */
    int top_k;                 /* 0 = off */
    float top_p;               /* 1 = off */
    float min_p;               /* 0 = off */
    float repetition_penalty;  /* 1 = off (HF/llama.cpp rule: divide positive, multiply negative logits) */
    int repeat_last_n;         /* window for the penalty (0 = everything seen) */
    float presence_penalty;    /* 0 = off; OpenAI rule over the generated tokens: logit -= presence
                                  (once per token that appeared) + frequency x its count */
    float frequency_penalty;   /* 0 = off */
    const int32_t *bias_ids;   /* logit bias: logit[bias_ids[i]] += bias[i] first (caller's arrays) */
    const float *bias;
    int n_bias;
    uint64_t seed;
} ms_sampler_params;

typedef struct ms_sampler {
    ms_sampler_params p;
    uint64_t rng[2];
    int n_vocab;
    int *hist;      /* tokens seen (for the repetition penalty) */
    int n_hist, cap_hist;
    int gen_from;   /* hist[gen_from..] are generated tokens (presence/frequency penalties) */
    int *counts;    /* [n_vocab] zeroed scratch for the counts (allocated when needed) */
    float *probs;   /* [n_vocab] work buffers */
    int *idx;       /* [n_vocab] */
} ms_sampler;

ms_sampler_params ms_sampler_defaults(void);
int ms_sampler_init(ms_sampler *s, const ms_sampler_params *p, int n_vocab, ms_err *err);
void ms_sampler_free(ms_sampler *s);
/* Record a token (prompt or generated) for the repetition penalty. */
void ms_sampler_accept(ms_sampler *s, int token);
/* The tokens accepted from now on are generated ones (presence/frequency
 * penalties count only those; call after the prompt's tokens). */
void ms_sampler_begin_output(ms_sampler *s);
/* Choose the next token; logits are modified in place. */
int ms_sampler_sample(ms_sampler *s, float *logits);
/* Index of the largest of x[0..n) (the first of equals): greedy choice, MTP drafts. */
int ms_argmax(const float *x, int n);
/* Speculative decoding with a greedy draft (the draft distribution is one-hot
 * at `draft`): return the draft with probability P(draft) under the sampling
 * distribution of logits (*accepted = true), else a draw from that distribution
 * with the draft removed (*accepted = false). The emitted token is distributed
 * exactly as ms_sampler_sample's. Greedy sampling: the argmax, accepted iff it
 * equals the draft. */
int ms_sampler_sample_draft(ms_sampler *s, float *logits, int draft, bool *accepted);

/* Log-probabilities of the model's distribution (log-softmax of the raw logits,
 * before any sampling filter): *lp_tok for `token`, and the top_n most likely
 * tokens (ids, log-probs; descending, ties by lower id) into top_ids/top_lp.
 * Returns how many top entries were written (<= top_n, <= vocab). */
int ms_logprobs(const float *logits, int n_vocab, int token, int top_n, float *lp_tok, int32_t *top_ids,
                float *top_lp);

#endif

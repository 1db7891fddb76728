/* sampler.c - see sampler.h. Filters are applied in llama.cpp's order:
 * logit bias -> repetition penalty -> presence/frequency penalties -> top-k ->
 * softmax with temperature -> top-p -> min-p -> draw. Ties are broken by the
 * lower token id so results are reproducible; top-k selects its candidates with
 * a bounded heap, which gives exactly the first k of the full sort. */
#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

ms_sampler_params ms_sampler_defaults(void)
{
    ms_sampler_params p = {.temperature = 0.2f, .top_k = 50, .top_p = 0.95f, .min_p = 0.01f,
                           .repetition_penalty = 1.0f, .repeat_last_n = 64, .seed = 0};
    return p;
}

/* xoroshiro128+ seeded by splitmix64 */
static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static double rng_uniform(ms_sampler *s)
{
    uint64_t a = s->rng[0], b = s->rng[1], r = a + b;
    b ^= a;
    s->rng[0] = rotl(a, 24) ^ b ^ (b << 16);
    s->rng[1] = rotl(b, 37);
    return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

int ms_sampler_init(ms_sampler *s, const ms_sampler_params *p, int n_vocab, ms_err *err)
{
    memset(s, 0, sizeof *s);
    if (p->temperature < 0 || !isfinite(p->temperature)) return ms_errf(err, EINVAL, "--temp must be >= 0");
    if (p->top_k < 0) return ms_errf(err, EINVAL, "--top-k must be >= 0");
    if (!(p->top_p > 0 && p->top_p <= 1)) return ms_errf(err, EINVAL, "--top-p must be in (0, 1]");
    if (!(p->min_p >= 0 && p->min_p < 1)) return ms_errf(err, EINVAL, "--min-p must be in [0, 1)");
    if (!(p->repetition_penalty > 0) || !isfinite(p->repetition_penalty))
        return ms_errf(err, EINVAL, "--repeat-penalty must be > 0");
    s->p = *p;
    s->n_vocab = n_vocab;
    uint64_t x = p->seed;
    s->rng[0] = splitmix(&x);
    s->rng[1] = splitmix(&x);
    s->probs = malloc((size_t)n_vocab * sizeof *s->probs);
    s->idx = malloc((size_t)n_vocab * sizeof *s->idx);
    if (!s->probs || !s->idx) {
        ms_sampler_free(s);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    return 0;
}

void ms_sampler_free(ms_sampler *s)
{
    free(s->hist);
    free(s->counts);
    free(s->probs);
    free(s->idx);
    memset(s, 0, sizeof *s);
}

void ms_sampler_accept(ms_sampler *s, int token)
{
    if (s->n_hist == s->cap_hist) {
        int cap = s->cap_hist ? s->cap_hist * 2 : 256;
        int *h = realloc(s->hist, (size_t)cap * sizeof *h);
        if (!h) return; /* the penalty just sees less history */
        s->hist = h;
        s->cap_hist = cap;
    }
    s->hist[s->n_hist++] = token;
}

void ms_sampler_begin_output(ms_sampler *s) { s->gen_from = s->n_hist; }

int ms_argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* The candidates' order: higher logit first, then lower id. */
static bool before(const float *k, int i, int j) { return k[i] > k[j] || (k[i] == k[j] && i < j); }

static int cmp_desc(const void *a, const void *b, void *keys)
{
    int i = *(const int *)a, j = *(const int *)b;
    const float *k = keys;
    float x = k[i], y = k[j];
    if (x != y) return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

/* idx[0..k) = the first k of the order above, sorted: a heap whose root is the
 * worst of the k best seen so far. */
static void top_k_sorted(const float *keys, int V, int k, int *idx)
{
    int n = 0;
    for (int v = 0; v < V; v++) {
        int i;
        if (n < k) { /* sift up */
            i = n++;
            while (i > 0 && before(keys, idx[(i - 1) / 2], v)) {
                idx[i] = idx[(i - 1) / 2];
                i = (i - 1) / 2;
            }
            idx[i] = v;
            continue;
        }
        if (!before(keys, v, idx[0])) continue;
        i = 0; /* replace the root, sift down */
        for (;;) {
            int c = 2 * i + 1;
            if (c >= n) break;
            if (c + 1 < n && before(keys, idx[c], idx[c + 1])) c++;
            if (!before(keys, v, idx[c])) break;
            idx[i] = idx[c];
            i = c;
        }
        idx[i] = v;
    }
    qsort_r(idx, (size_t)n, sizeof *idx, cmp_desc, (void *)keys);
}

/* OpenAI's presence/frequency penalties over the generated tokens. */
static void penalize_output(ms_sampler *s, float *logits)
{
    const ms_sampler_params *p = &s->p;
    if ((p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f) || s->n_hist <= s->gen_from) return;
    if (!s->counts && !(s->counts = calloc((size_t)s->n_vocab, sizeof *s->counts))) return;
    int n = 0; /* distinct tokens, in order of first appearance, listed in idx */
    for (int i = s->gen_from; i < s->n_hist; i++) {
        int t = s->hist[i];
        if (t < 0 || t >= s->n_vocab) continue;
        if (s->counts[t]++ == 0) s->idx[n++] = t;
    }
    for (int i = 0; i < n; i++) {
        int t = s->idx[i];
        logits[t] -= p->presence_penalty + p->frequency_penalty * (float)s->counts[t];
        s->counts[t] = 0;
    }
}

/* Steps 1-5: the penalty, then (temperature > 0) the candidates idx[0..n) with
 * their probabilities (unnormalized mass *tot). Returns n; 0 for greedy. */
static int candidates(ms_sampler *s, float *logits, double *tot)
{
    int V = s->n_vocab;
    const ms_sampler_params *p = &s->p;
    /* 0. logit bias */
    for (int i = 0; i < p->n_bias; i++)
        if (p->bias_ids[i] >= 0 && p->bias_ids[i] < V) logits[p->bias_ids[i]] += p->bias[i];
    /* 1. repetition penalty over the recent window (each token once) */
    if (p->repetition_penalty != 1.0f && s->n_hist) {
        int from = p->repeat_last_n > 0 && s->n_hist > p->repeat_last_n ? s->n_hist - p->repeat_last_n : 0;
        for (int i = from; i < s->n_hist; i++) {
            int t = s->hist[i];
            if (t < 0 || t >= V) continue;
            bool dup = false;
            for (int j = from; j < i && !dup; j++) dup = s->hist[j] == t;
            if (dup) continue;
            logits[t] = logits[t] > 0 ? logits[t] / p->repetition_penalty : logits[t] * p->repetition_penalty;
        }
    }
    penalize_output(s, logits);
    if (p->temperature == 0.0f) return 0;
    /* 2. candidates sorted by logit (top-k bounds the sort) */
    int n = V;
    if (p->top_k > 0 && p->top_k < V) {
        n = p->top_k;
        top_k_sorted(logits, V, n, s->idx);
    } else {
        for (int i = 0; i < V; i++) s->idx[i] = i;
        qsort_r(s->idx, (size_t)V, sizeof *s->idx, cmp_desc, logits);
    }
    /* 3. softmax with temperature over the candidates */
    double mx = logits[s->idx[0]], sum = 0;
    for (int i = 0; i < n; i++) {
        double e = exp(((double)logits[s->idx[i]] - mx) / p->temperature);
        s->probs[i] = (float)e;
        sum += e;
    }
    for (int i = 0; i < n; i++) s->probs[i] = (float)(s->probs[i] / sum);
    /* 4. top-p: smallest prefix with mass >= top_p */
    if (p->top_p < 1.0f) {
        double c = 0;
        for (int i = 0; i < n; i++) {
            c += s->probs[i];
            if (c >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    /* 5. min-p: drop candidates below min_p x the best probability */
    if (p->min_p > 0) {
        float lim = p->min_p * s->probs[0];
        int m = 1;
        while (m < n && s->probs[m] >= lim) m++;
        n = m;
    }
    *tot = 0;
    for (int i = 0; i < n; i++) *tot += s->probs[i];
    return n;
}

/* 6. draw from the candidates, skipping index `skip` (-1: none) whose mass
 * `tot` already excludes. */
static int draw(ms_sampler *s, int n, double tot, int skip)
{
    double r = rng_uniform(s) * tot, c = 0;
    int last = -1;
    for (int i = 0; i < n; i++) {
        if (i == skip) continue;
        c += s->probs[i];
        last = i;
        if (r < c) return s->idx[i];
    }
    return s->idx[last >= 0 ? last : 0];
}

int ms_sampler_sample(ms_sampler *s, float *logits)
{
    double tot = 0;
    int n = candidates(s, logits, &tot);
    if (n == 0) return ms_argmax(logits, s->n_vocab);
    return draw(s, n, tot, -1);
}

int ms_sampler_sample_draft(ms_sampler *s, float *logits, int draft, bool *accepted)
{
    double tot = 0;
    int n = candidates(s, logits, &tot);
    if (n == 0) { /* greedy: the draft stands iff it is the argmax */
        int t = ms_argmax(logits, s->n_vocab);
        *accepted = t == draft;
        return t;
    }
    int k = -1;
    for (int i = 0; i < n && k < 0; i++)
        if (s->idx[i] == draft) k = i;
    double pd = k >= 0 ? s->probs[k] / tot : 0.0;
    /* accept with probability P(draft); else draw from P without the draft */
    if (k >= 0 && (pd >= 1.0 || rng_uniform(s) < pd)) {
        *accepted = true;
        return draft;
    }
    *accepted = false;
    return draw(s, n, k >= 0 ? tot - s->probs[k] : tot, k);
}

int ms_logprobs(const float *logits, int n_vocab, int token, int top_n, float *lp_tok, int32_t *top_ids,
                float *top_lp)
{
    float mx = logits[0];
    for (int v = 1; v < n_vocab; v++)
        if (logits[v] > mx) mx = logits[v];
    double sum = 0;
    for (int v = 0; v < n_vocab; v++) sum += exp((double)logits[v] - mx);
    double lse = (double)mx + log(sum);
    if (lp_tok) *lp_tok = token >= 0 && token < n_vocab ? (float)((double)logits[token] - lse) : -INFINITY;
    int n = top_n < n_vocab ? top_n : n_vocab;
    if (n <= 0) return 0;
    int *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return 0;
    top_k_sorted(logits, n_vocab, n, ids);
    for (int k = 0; k < n; k++) {
        top_ids[k] = ids[k];
        top_lp[k] = (float)((double)logits[ids[k]] - lse);
    }
    free(ids);
    return n;
}

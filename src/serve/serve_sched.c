/* serve_sched.c - the serving scheduler (see serve_sched.h for the design).
 *
 * Locking: one mutex guards the queue, the requests' outputs and flags, and
 * the metrics. Slots and the engine belong to the scheduler thread alone, so
 * it drops the lock around forward steps and sampling and takes it again to
 * publish tokens. */
#include "serve_sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "expert_cache.h"
#include "util.h"

enum { S_IDLE, S_PREFILL, S_DECODE };
enum { MAX_MTP = 8 }; /* --mtp N: at most 8 draft tokens (the CLI's limit) */

typedef struct slot {
    int id;
    int32_t *toks;        /* [ctx] the token at each position of this sequence's KV cache */
    int n_valid;          /* positions 0 .. n_valid-1 hold toks */
    int canon;            /* positions 0 .. canon-1 are whole prefill chunks (exact reuse) */
    ms_sched_req *req;
    int state;
    int pf;               /* next prompt position to prefill */
    int32_t pending;      /* sampled, fed by the next decode step at n_valid */
    int32_t next;         /* sampled in this iteration (-1: the script ended) */
    ms_sampler sampler;
    bool have_sampler;
    ms_detok *detok;
    ms_strbuf hold;       /* text held back while it may be the start of a stop string */
    uint64_t used;        /* when the slot was last released (LRU among equals) */
    ms_sched_lp lp;       /* log-probs of `next` */
    float *raw;           /* [V] raw logits for log-probs (allocated when needed) */
    /* MTP (--mtp N): the draft head's state of this sequence, as src/gen/generate.c
     * keeps it for one. Its KV cache slot t = (hidden at t, token at t+1). */
    float *h_last;        /* [D] final hidden state at position h_last_pos (-1: none) */
    int h_last_pos;
    float *h_chunk;       /* [D] the hidden state at the end of the last prefill chunk that ended at a
                             multiple of --batch (prefix reuse restarts there), at h_chunk_pos (-1: none) */
    int h_chunk_pos;
    float *mhid;          /* [N][D] the draft head's chained output states this round */
    float *fin;           /* [N][D] deferred refill rows (slots a verify step settled): verified hidden */
    int fold_n, fold_tok[MAX_MTP], fold_pos[MAX_MTP];
    int32_t drafts[MAX_MTP];
    int nd, row0, drow;   /* this round: drafts, first verify row, row in the draft call */
    int32_t out_q[MAX_MTP + 1]; /* tokens the round emits, with their log-probs */
    ms_sched_lp out_lp[MAX_MTP + 1];
    int out_n;
} slot;

struct ms_sched {
    ms_engine *e;
    const ms_tokenizer *tok;
    ms_sched_opts o;
    int V, ctx, batch, n;
    slot *slots;
    pthread_mutex_t mu;
    pthread_cond_t work;
    pthread_t th;
    bool started, stopping;
    ms_sched_req *q_head, *q_tail;
    int n_queued, rr;
    uint64_t tick;
    int *rows_tok, *rows_pos, *rows_seq; /* [max(batch, n)] */
    float *lg;                           /* [rows_step][V] decode, draft and verify logits */
    float *lg_pf;                        /* [V] last prefill row */
    /* MTP: rows of a verify step (slots x (N+1)) or a prefill chunk, whichever is more */
    int mtp, D, rows_step, rows_max;
    float *hid;                          /* [rows_max][D] final hidden states of a main step */
    float *m_in, *m_out;                 /* [rows_max][D] draft-head inputs / output states */
    ms_sched_metrics m;
};

/* ---- requests ---- */

ms_sched_req *ms_sched_req_new(void)
{
    ms_sched_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    r->refs = 1;
    r->slot = -1;
    r->max_tokens = -1;
    return r;
}

static void req_free(ms_sched_req *r)
{
    free(r->prompt);
    free(r->bias_ids);
    free(r->bias);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    ms_srv_parser_free(r->parser);
    free(r->script);
    ms_sb_free(&r->content);
    ms_sb_free(&r->reasoning);
    for (int i = 0; i < r->n_calls; i++) {
        free(r->calls[i].id);
        free(r->calls[i].name);
        free(r->calls[i].arguments);
    }
    free(r->calls);
    free(r->lps);
    pthread_cond_destroy(&r->cond);
    free(r);
}

static void unref(ms_sched_req *r)
{
    if (--r->refs == 0) req_free(r);
}

void ms_sched_release(ms_sched *s, ms_sched_req *r)
{
    if (!r) return;
    pthread_mutex_lock(&s->mu);
    unref(r);
    pthread_mutex_unlock(&s->mu);
}

void ms_sched_lock(ms_sched *s) { pthread_mutex_lock(&s->mu); }
void ms_sched_unlock(ms_sched *s) { pthread_mutex_unlock(&s->mu); }

void ms_sched_wait(ms_sched *s, ms_sched_req *r, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&r->cond, &s->mu, &ts);
}

static void changed(ms_sched_req *r)
{
    r->version++;
    pthread_cond_broadcast(&r->cond);
}

/* ---- output: text -> stop strings -> parser -> the request's fields ---- */

static int pull_delta(ms_sched_req *r)
{
    ms_srv_delta d;
    ms_srv_parser_delta(r->parser, &d);
    ms_sb_putn(&r->content, d.content, d.content_len);
    ms_sb_putn(&r->reasoning, d.reasoning, d.reasoning_len);
    if (d.n_calls) {
        ms_srv_call *nc = realloc(r->calls, (size_t)(r->n_calls + (int)d.n_calls) * sizeof *nc);
        if (!nc) return -ENOMEM;
        r->calls = nc;
        for (size_t i = 0; i < d.n_calls; i++) {
            ms_srv_call c;
            if (ms_srv_parser_call(r->parser, d.first_call + i, &c) < 0) return -EINVAL;
            ms_srv_call *dst = &r->calls[r->n_calls++];
            *dst = (ms_srv_call){.id = strdup(c.id), .name = strdup(c.name), .arguments = strdup(c.arguments)};
            if (!dst->id || !dst->name || !dst->arguments) return -ENOMEM;
        }
    }
    return r->content.oom || r->reasoning.oom ? -ENOMEM : 0;
}

static int deliver(ms_sched_req *r, const char *text, size_t len, ms_err *err)
{
    if (!len) return 0;
    if (!r->parser) {
        ms_sb_putn(&r->content, text, len);
        return ms_sb_error(&r->content, "answer", err);
    }
    int rc = ms_srv_parser_feed(r->parser, text, len, err);
    if (rc == 0 && pull_delta(r) < 0) rc = ms_errf(err, ENOMEM, "out of memory");
    return rc;
}

/* New text of slot s's answer. Returns 1 when a stop string ended it (the text
 * before it is delivered), 0 otherwise, -errno on error. */
static int emit_text(slot *s, const char *text, size_t len, ms_err *err)
{
    ms_sched_req *r = s->req;
    if (r->n_stop == 0) return deliver(r, text, len, err);
    ms_sb_putn(&s->hold, text, len);
    if (s->hold.oom) return ms_errf(err, ENOMEM, "out of memory");
    const char *h = ms_sb_str(&s->hold);
    size_t n = s->hold.len, cut = n, keep = 0;
    for (int i = 0; i < r->n_stop; i++) {
        size_t sl = strlen(r->stop[i]);
        const char *f = memmem(h, n, r->stop[i], sl);
        if (f && (size_t)(f - h) < cut) cut = (size_t)(f - h);
        for (size_t l = MS_MIN(sl - 1, n); l > keep; l--) /* a tail that may still become this stop string */
            if (!memcmp(h + n - l, r->stop[i], l)) {
                keep = l;
                break;
            }
    }
    if (cut < n) {
        int rc = deliver(r, h, cut, err);
        ms_sb_truncate(&s->hold, 0);
        return rc < 0 ? rc : 1;
    }
    int rc = deliver(r, h, n - keep, err);
    memmove(s->hold.s, h + n - keep, keep);
    ms_sb_truncate(&s->hold, keep);
    return rc;
}

static void slot_release(ms_sched *s, slot *sl)
{
    sl->req = NULL;
    sl->state = S_IDLE;
    sl->used = ++s->tick;
    ms_detok_free(sl->detok);
    sl->detok = NULL;
    ms_sb_free(&sl->hold);
}

/* End slot sl's request: flush what is held back (unless a stop string ended
 * it), finish the parser, publish. Locked. */
static void finish(ms_sched *s, slot *sl, const char *reason, const char *errmsg)
{
    ms_sched_req *r = sl->req;
    ms_err err = {0};
    int rc = 0;
    if (!errmsg && strcmp(reason, "cancelled")) {
        if (sl->detok) {
            const char *t;
            size_t l;
            ms_detok_flush(sl->detok, &t, &l);
            rc = emit_text(sl, t, l, &err);
        }
        if (rc == 0) rc = deliver(r, ms_sb_str(&sl->hold), sl->hold.len, &err);
        else if (rc == 1) rc = 0, reason = "stop";
        if (rc == 0 && r->parser) {
            rc = ms_srv_parser_finish(r->parser, &err);
            if (rc == 0 && pull_delta(r) < 0) rc = ms_errf(&err, ENOMEM, "out of memory");
        }
        if (rc < 0) errmsg = err.msg;
    }
    if (errmsg) {
        reason = "error";
        snprintf(r->error, sizeof r->error, "%.255s", errmsg);
        s->m.failed++;
    } else if (!strcmp(reason, "cancelled")) {
        s->m.cancelled++;
    } else {
        s->m.completed++;
        if (!strcmp(reason, "stop") && r->n_calls > 0) reason = "tool_calls";
    }
    r->finish = reason;
    r->t_done = ms_now_s();
    changed(r);
    slot_release(s, sl);
    unref(r);
}

static bool is_stop_id(const ms_sched_req *r, int32_t t)
{
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] == t) return true;
    return false;
}

/* Publish slot sl's sampled token sl->next (locked): log-probs, stop token,
 * text, stop strings, length and context limits. The slot keeps decoding
 * (pending = the token) unless it finished. */
static void take_token(ms_sched *s, slot *sl)
{
    ms_sched_req *r = sl->req;
    int32_t t = sl->next;
    if (r->t_first == 0) r->t_first = ms_now_s();
    if (t >= 0) {
        r->n_gen++;
        s->m.generated_tokens++;
        if (r->logprobs) {
            if (r->n_lps == r->cap_lps) {
                int cap = r->cap_lps ? 2 * r->cap_lps : 64;
                ms_sched_lp *nl = realloc(r->lps, (size_t)cap * sizeof *nl);
                if (!nl) return finish(s, sl, "error", "out of memory");
                r->lps = nl;
                r->cap_lps = cap;
            }
            r->lps[r->n_lps++] = sl->lp;
        }
    }
    if (t < 0 || (!r->ignore_eos && is_stop_id(r, t))) return finish(s, sl, "stop", NULL);
    ms_err err = {0};
    const char *text = "";
    size_t len = 0;
    if (sl->detok && ms_detok_feed(sl->detok, t, &text, &len, &err) < 0) return finish(s, sl, "error", err.msg);
    int rc = emit_text(sl, text, len, &err);
    if (rc < 0) return finish(s, sl, "error", err.msg);
    if (rc == 1) { /* a stop string: what it held is dropped */
        ms_detok_free(sl->detok);
        sl->detok = NULL;
        return finish(s, sl, "stop", NULL);
    }
    if ((r->max_tokens >= 0 && r->n_gen >= r->max_tokens) || sl->n_valid + 1 > s->ctx)
        return finish(s, sl, "length", NULL);
    sl->pending = t;
    sl->state = S_DECODE;
    changed(r);
}

/* Choose slot sl's next token from logits (unlocked: slot state only). The
 * log-probs are those of the model's distribution: taken from a copy of the
 * raw logits, since the sampler's penalties change them in place. */
static void sample(ms_sched *s, slot *sl, float *logits)
{
    ms_sched_req *r = sl->req;
    if (r->logprobs && (sl->raw || (sl->raw = malloc((size_t)s->V * sizeof *sl->raw))))
        memcpy(sl->raw, logits, (size_t)s->V * sizeof *sl->raw);
    int32_t t;
    if (r->script) t = r->n_gen < r->n_script ? r->script[r->n_gen] : -1;
    else t = ms_sampler_sample(&sl->sampler, logits);
    if (t >= 0) ms_sampler_accept(&sl->sampler, t);
    sl->next = t;
    sl->lp.token = t;
    sl->lp.n_top = 0;
    sl->lp.lp = 0;
    if (r->logprobs && sl->raw && t >= 0) {
        int top = MS_MIN(r->top_logprobs, (int)MS_ARRAY_LEN(sl->lp.top_ids));
        sl->lp.n_top = ms_logprobs(sl->raw, s->V, t, top, &sl->lp.lp, sl->lp.top_ids, sl->lp.top_lp);
    }
}

/* ---- admission ---- */

static int reusable(const ms_sched *s, const slot *sl, const ms_sched_req *r)
{
    if (s->o.reuse == MS_REUSE_OFF) return 0;
    int n = MS_MIN(sl->n_valid, r->n_prompt - 1), l = 0;
    while (l < n && sl->toks[l] == r->prompt[l]) l++;
    if (s->o.reuse == MS_REUSE_EXACT) l = MS_MIN(l, sl->canon) / s->batch * s->batch;
    if (!s->mtp || l == 0) return l;
    /* MTP: the draft head's slot l-1 is (hidden at l-1, token l), recomputed with
     * the new prompt's first chunk, so the reuse point needs the hidden state at
     * l-1: the slot keeps it at the end of its sequence and at its last prefill
     * chunk boundary (exact reuse: a whole chunk, as a fresh prefill) */
    int best = 0;
    const int cand[2] = {sl->h_last_pos + 1, sl->h_chunk_pos + 1};
    for (int i = 0; i < 2; i++)
        if (cand[i] > best && cand[i] <= l && (s->o.reuse != MS_REUSE_EXACT || cand[i] % s->batch == 0))
            best = cand[i];
    return best;
}

/* MTP: slot sl continues from position reuse (see reusable): the hidden state at
 * reuse-1 into h_last; a chunk boundary past it is gone; deferred refill rows at
 * or past reuse-1 are dropped by the next mtp_follow. */
static void mtp_restart(ms_sched *s, slot *sl, int reuse)
{
    if (reuse == 0) {
        sl->h_last_pos = -1;
        sl->fold_n = 0;
    } else if (sl->h_last_pos != reuse - 1) { /* reusable() chose the chunk boundary */
        memcpy(sl->h_last, sl->h_chunk, (size_t)s->D * sizeof(float));
        sl->h_last_pos = reuse - 1;
    }
    if (sl->h_chunk_pos >= reuse) sl->h_chunk_pos = -1;
}

/* MTP: forget slot sl's draft-head state (after an error: nothing is reused). */
static void mtp_forget(slot *sl)
{
    sl->n_valid = sl->canon = 0;
    sl->h_last_pos = sl->h_chunk_pos = -1;
    sl->fold_n = 0;
}

static void start(ms_sched *s, slot *sl, ms_sched_req *r, int reuse)
{
    ms_err err = {0};
    sl->req = r;
    r->slot = sl->id;
    r->n_cached = reuse;
    s->m.prompt_tokens += (uint64_t)r->n_prompt;
    s->m.cached_tokens += (uint64_t)reuse;
    if (sl->have_sampler) ms_sampler_free(&sl->sampler);
    sl->have_sampler = false;
    r->sampling.bias_ids = r->bias_ids;
    r->sampling.bias = r->bias;
    if (ms_sampler_init(&sl->sampler, &r->sampling, s->V, &err) < 0) return finish(s, sl, "error", err.msg);
    sl->have_sampler = true;
    for (int i = 0; i < r->n_prompt; i++) ms_sampler_accept(&sl->sampler, r->prompt[i]);
    ms_sampler_begin_output(&sl->sampler);
    if (s->tok && ms_detok_new(s->tok, r->detok_flags, &sl->detok, &err) < 0) return finish(s, sl, "error", err.msg);
    ms_sb_truncate(&sl->hold, 0);
    sl->state = S_PREFILL;
    sl->pf = reuse;
    sl->n_valid = MS_MIN(sl->n_valid, reuse);
    sl->canon = MS_MIN(sl->canon, reuse);
    if (s->mtp) mtp_restart(s, sl, reuse);
    changed(r);
}

static void admit(ms_sched *s)
{
    while (s->q_head) {
        ms_sched_req *r = s->q_head;
        slot *best = NULL;
        int best_l = -1;
        for (int i = 0; i < s->n; i++) {
            slot *sl = &s->slots[i];
            if (sl->req) continue;
            int l = reusable(s, sl, r);
            if (l > best_l || (l == best_l && sl->used < best->used)) {
                best = sl;
                best_l = l;
            }
        }
        if (!best) return;
        s->q_head = r->next;
        if (!s->q_head) s->q_tail = NULL;
        r->next = NULL;
        s->n_queued--;
        start(s, best, r, best_l);
    }
}

static void retire_cancelled(ms_sched *s)
{
    ms_sched_req **pp = &s->q_head, *last = NULL;
    while (*pp) {
        ms_sched_req *r = *pp;
        if (r->cancelled || s->stopping) {
            *pp = r->next;
            s->n_queued--;
            r->finish = "cancelled";
            s->m.cancelled++;
            changed(r);
            unref(r);
        } else {
            last = r;
            pp = &r->next;
        }
    }
    s->q_tail = last;
    for (int i = 0; i < s->n; i++) {
        slot *sl = &s->slots[i];
        if (sl->req && (sl->req->cancelled || s->stopping)) finish(s, sl, "cancelled", NULL);
    }
}

/* ---- steps ---- */

static void cache_stats(ms_sched *s, ms_cache_stats *cs)
{
    memset(cs, 0, sizeof *cs);
    if (s->e->cache) ms_cache_get_stats(s->e->cache, cs);
}

/* Expert-cache totals into the metrics (locked). */
static void cache_metrics(ms_sched *s, const ms_cache_stats *cs)
{
    ms_sched_metrics *m = &s->m;
    m->cache = s->e->cache != NULL;
    m->accesses = cs->accesses;
    m->hits = cs->hits;
    m->bytes_read = cs->bytes_read;
    m->expert_reads = cs->expert_reads;
    m->read_busy_s = cs->read_busy_s;
    m->io_wait_s = cs->wait_s;
    m->cache_slots = cs->slots;
    m->cache_bytes = cs->arena_bytes;
}

/* Run a step unlocked; returns its result with the cache counters before/after. */
static int step(ms_sched *s, const ms_batch *b, bool exact, ms_cache_stats *before, ms_cache_stats *after,
                double *dt, ms_err *err)
{
    pthread_mutex_unlock(&s->mu);
    cache_stats(s, before);
    double t0 = ms_now_s();
    int rc = ms_engine_step(s->e, b, exact, err);
    *dt = ms_now_s() - t0;
    cache_stats(s, after);
    pthread_mutex_lock(&s->mu);
    cache_metrics(s, after);
    return rc;
}

/* ---- MTP speculative decoding ----
 * Per round, for every decoding slot at once, what src/gen/generate.c does for
 * one sequence (mtp_round there): N exact draft calls of the draft head, each
 * holding one row per slot that drafts (the first call also carries each
 * slot's deferred refill rows before its draft row); ONE exact verify step
 * holding every slot's pending token and drafts; acceptance per slot with its
 * own sampler (greedy: the longest agreeing prefix plus one token; sampling:
 * ms_sampler_sample_draft); the refill of the slots the step settled deferred
 * into the slot's next draft call, or into its next prompt's mtp_follow. Every
 * decode-time call is exact (each row gets the bits of a one-row call) and
 * prefill calls hold one request's rows as `run` makes them, so a request's
 * tokens equal `run --mtp N`, alone or with others. */

/* The draft head over rows (unlocked around the call). */
static int mtp_call(ms_sched *s, const ms_batch *b, const float *hidden, bool exact, ms_err *err)
{
    pthread_mutex_unlock(&s->mu);
    int rc = ms_engine_mtp(s->e, b, hidden, exact, err);
    pthread_mutex_lock(&s->mu);
    return rc;
}

/* One row of the draft head for slot sl into row m of the scratch. */
static void mtp_row(ms_sched *s, int m, const slot *sl, const float *h, int32_t tok, int pos)
{
    memcpy(s->m_in + (size_t)m * s->D, h, (size_t)s->D * sizeof(float));
    s->rows_tok[m] = tok;
    s->rows_pos[m] = pos;
    s->rows_seq[m] = sl->id;
}

/* After slot sl's main rows p0 .. p0+n-1 (final hidden states in s->hid): the
 * draft head's slots p0-1 .. p0+n-2 (teacher forcing over the prompt), after
 * the deferred refill rows before them (a stop may have rolled the sequence
 * back over some). sl->h_last holds the hidden state at p0-1. Locked. */
static int mtp_follow(ms_sched *s, slot *sl, const int32_t *ids, int n, int p0, ms_err *err)
{
    int D = s->D, m = 0, rc;
    for (int k = 0; k < sl->fold_n && sl->fold_pos[k] < p0 - 1; k++, m++)
        mtp_row(s, m, sl, sl->fin + (size_t)k * D, sl->fold_tok[k], sl->fold_pos[k]);
    sl->fold_n = 0;
    if (m > 0 && m + n > s->batch) { /* one call would not fit the batch: the refill rows first */
        ms_batch b = {.n = m, .tokens = s->rows_tok, .pos = s->rows_pos, .seq = s->rows_seq};
        if ((rc = mtp_call(s, &b, s->m_in, false, err)) < 0) return rc;
        m = 0;
    }
    for (int t = MS_MAX(p0 - 1, 0); t <= p0 + n - 2; t++, m++)
        mtp_row(s, m, sl, t == p0 - 1 ? sl->h_last : s->hid + (size_t)(t - p0) * D, ids[t + 1 - p0], t);
    memcpy(sl->h_last, s->hid + (size_t)(n - 1) * D, (size_t)D * sizeof(float));
    sl->h_last_pos = p0 + n - 1;
    if ((p0 + n) % s->batch == 0) { /* a chunk boundary: prefix reuse may restart here */
        memcpy(sl->h_chunk, sl->h_last, (size_t)D * sizeof(float));
        sl->h_chunk_pos = sl->h_last_pos;
    }
    if (m == 0) return 0;
    ms_batch b = {.n = m, .tokens = s->rows_tok, .pos = s->rows_pos, .seq = s->rows_seq};
    return mtp_call(s, &b, s->m_in, false, err);
}


/* Slot sl's emitted token k of this round from verify row lg: the sampler's
 * accept/reject of draft d (*ok), or a plain draw when d < 0; its log-probs
 * from the raw logits (unlocked: slot state only). */
static int32_t mtp_choose(ms_sched *s, slot *sl, float *lg, int k, int32_t d, bool *ok)
{
    ms_sched_req *r = sl->req;
    if (r->logprobs && (sl->raw || (sl->raw = malloc((size_t)s->V * sizeof *sl->raw))))
        memcpy(sl->raw, lg, (size_t)s->V * sizeof *sl->raw);
    int32_t t;
    *ok = false;
    if (r->script) { /* the script's next token stands in for the sampled one */
        int i = r->n_gen + k;
        t = i < r->n_script ? r->script[i] : -1;
        *ok = d >= 0 && t == d;
    } else if (d >= 0) {
        t = ms_sampler_sample_draft(&sl->sampler, lg, d, ok);
        if (s->o.mtp_force_accept) {
            *ok = true;
            t = d;
        }
    } else {
        t = ms_sampler_sample(&sl->sampler, lg);
    }
    ms_sched_lp *lp = &sl->out_lp[k];
    *lp = (ms_sched_lp){.token = t};
    if (r->logprobs && sl->raw && t >= 0) {
        int top = MS_MIN(r->top_logprobs, (int)MS_ARRAY_LEN(lp->top_ids));
        lp->n_top = ms_logprobs(sl->raw, s->V, t, top, &lp->lp, lp->top_ids, lp->top_lp);
    }
    return t;
}

/* The draft calls of a round: call k holds row (state, token, p-1+k) of every
 * slot drafting k, the first also each slot's deferred refill rows before its
 * draft row (positions increase within a slot). Locked. */
static int mtp_draft(ms_sched *s, slot **sl_, int n, ms_err *err)
{
    int N = s->mtp, D = s->D, rc;
    for (int k = 0; k < N; k++) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            slot *sl = sl_[i];
            if (k >= sl->nd) continue;
            int p = sl->n_valid;
            if (k == 0) {
                for (int f = 0; f < sl->fold_n; f++, m++)
                    mtp_row(s, m, sl, sl->fin + (size_t)f * D, sl->fold_tok[f], sl->fold_pos[f]);
                sl->fold_n = 0;
                mtp_row(s, m, sl, sl->h_last, sl->pending, p - 1);
            } else {
                mtp_row(s, m, sl, sl->mhid + (size_t)(k - 1) * D, sl->drafts[k - 1], p - 1 + k);
            }
            sl->drow = m++;
        }
        if (m == 0) break;
        ms_batch b = {.n = m, .tokens = s->rows_tok, .pos = s->rows_pos, .seq = s->rows_seq, .logits = s->lg,
                      .all_logits = true, .hidden = s->m_out};
        if ((rc = mtp_call(s, &b, s->m_in, true, err)) < 0) return rc;
        s->m.mtp_draft_rows += (uint64_t)m;
        for (int i = 0; i < n; i++) {
            slot *sl = sl_[i];
            if (k >= sl->nd) continue;
            sl->drafts[k] = ms_argmax(s->lg + (size_t)sl->drow * s->V, s->V);
            memcpy(sl->mhid + (size_t)k * D, s->m_out + (size_t)sl->drow * D, (size_t)D * sizeof(float));
        }
    }
    return 0;
}

/* Slot sl after the verify step: accept, settle the verified rows, defer the
 * draft head's refill (unlocked: slot state only). Returns the accepted drafts. */
static int mtp_accept(ms_sched *s, slot *sl)
{
    int V = s->V, D = s->D, p = sl->n_valid, acc = 0, h0 = sl->sampler.n_hist;
    bool ok = true;
    sl->out_n = 0;
    for (; acc < sl->nd; acc++) {
        int32_t t = mtp_choose(s, sl, s->lg + (size_t)(sl->row0 + acc) * V, sl->out_n, sl->drafts[acc], &ok);
        sl->out_q[sl->out_n++] = t;
        if (!ok) break;
        ms_sampler_accept(&sl->sampler, t); /* the next row's penalties see it */
    }
    if (acc == sl->nd) {
        sl->out_q[sl->out_n] = mtp_choose(s, sl, s->lg + (size_t)(sl->row0 + acc) * V, sl->out_n, -1, &ok);
        sl->out_n++;
    }
    sl->sampler.n_hist = h0; /* provisional: each token enters the history when it is published */
    /* the caches now hold the pending token and the accepted drafts */
    sl->toks[p] = sl->pending;
    for (int k = 0; k < acc; k++) sl->toks[p + 1 + k] = sl->drafts[k];
    memcpy(sl->h_last, s->hid + (size_t)(sl->row0 + acc) * D, (size_t)D * sizeof(float));
    sl->h_last_pos = p + acc;
    for (int k = 0; k < acc; k++) { /* appended: a round without drafts (context end) left its rows */
        memcpy(sl->fin + (size_t)(sl->fold_n + k) * D, s->hid + (size_t)(sl->row0 + k) * D, (size_t)D * sizeof(float));
        sl->fold_tok[sl->fold_n + k] = sl->drafts[k];
        sl->fold_pos[sl->fold_n + k] = p + k;
    }
    sl->fold_n += acc;
    return acc;
}

/* One MTP round over every decoding slot (locked on entry and exit). */
static void mtp_round(ms_sched *s)
{
    slot *sl_[s->n];
    int n = 0, N = s->mtp, D = s->D, rc = 0;
    for (int i = 0; i < s->n; i++)
        if (s->slots[i].req && s->slots[i].state == S_DECODE) sl_[n++] = &s->slots[i];
    if (n == 0) return;
    ms_err err = {0};
    ms_cache_stats c0, c1;
    cache_stats(s, &c0);
    double t0 = ms_now_s();
    int R = 0;
    for (int i = 0; i < n; i++) { /* drafts that fit the context (the verify step must) */
        slot *sl = sl_[i];
        sl->nd = MS_MIN(N, s->ctx - 1 - sl->n_valid);
        sl->row0 = R;
        R += sl->nd + 1;
    }
    rc = mtp_draft(s, sl_, n, &err);
    if (rc == 0) { /* verify: [pending @ p, d1 @ p+1, ..., d_nd @ p+nd] of every slot, one exact step */
        for (int i = 0; i < n; i++)
            for (int k = 0; k <= sl_[i]->nd; k++) {
                int j = sl_[i]->row0 + k;
                s->rows_tok[j] = k ? sl_[i]->drafts[k - 1] : sl_[i]->pending;
                s->rows_pos[j] = sl_[i]->n_valid + k;
                s->rows_seq[j] = sl_[i]->id;
            }
        ms_batch b = {.n = R, .tokens = s->rows_tok, .pos = s->rows_pos, .seq = s->rows_seq, .logits = s->lg,
                      .all_logits = true, .hidden = s->hid};
        pthread_mutex_unlock(&s->mu);
        rc = ms_engine_step(s->e, &b, true, &err);
        pthread_mutex_lock(&s->mu);
    }
    cache_stats(s, &c1);
    cache_metrics(s, &c1);
    s->m.decode_steps++;
    s->m.decode_s += ms_now_s() - t0;
    s->m.decode_bytes_read += c1.bytes_read - c0.bytes_read;
    s->m.decode_experts_read += c1.expert_reads - c0.expert_reads;
    if (rc < 0) {
        for (int i = 0; i < n; i++) {
            mtp_forget(sl_[i]);
            finish(s, sl_[i], "error", err.msg);
        }
        return;
    }
    s->m.mtp_verify_rows += (uint64_t)R;
    int acc[s->n];
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++) acc[i] = mtp_accept(s, sl_[i]);
    pthread_mutex_lock(&s->mu);
    /* publish one token at a time as without MTP: a token may end the request,
     * which then stands at that token's position (the rows after it roll back) */
    for (int i = 0; i < n; i++) {
        slot *sl = sl_[i];
        ms_sched_req *r = sl->req;
        int p = sl->n_valid, k = 0;
        s->m.mtp_drafted += (uint64_t)sl->nd;
        s->m.mtp_accepted += (uint64_t)acc[i];
        r->mtp_drafted += sl->nd;
        r->mtp_accepted += acc[i];
        for (; k < sl->out_n && sl->req == r; k++) {
            sl->n_valid = p + 1 + k; /* where this token would be fed */
            sl->next = sl->out_q[k];
            sl->lp = sl->out_lp[k];
            if (sl->next >= 0) {
                ms_sampler_accept(&sl->sampler, sl->next);
                s->m.decode_rows++;
            }
            take_token(s, sl);
        }
        if (sl->req != r && k - 1 < acc[i]) { /* ended before the last: the hidden state before its token */
            memcpy(sl->h_last, s->hid + (size_t)(sl->row0 + k - 1) * D, (size_t)D * sizeof(float));
            sl->h_last_pos = p + k - 1;
        }
    }
}

/* One prefill chunk of slot sl (locked on entry and exit). */
static void prefill_chunk(ms_sched *s, slot *sl)
{
    ms_sched_req *r = sl->req;
    int p0 = sl->pf, c = MS_MIN(s->batch, r->n_prompt - p0);
    bool last = p0 + c == r->n_prompt;
    for (int i = 0; i < c; i++) {
        s->rows_pos[i] = p0 + i;
        s->rows_seq[i] = sl->id;
    }
    ms_batch b = {.n = c, .tokens = r->prompt + p0, .pos = s->rows_pos, .seq = s->rows_seq,
                  .logits = last ? s->lg_pf : NULL, .hidden = s->mtp ? s->hid : NULL};
    ms_cache_stats c0, c1;
    ms_err err = {0};
    double dt;
    int rc = step(s, &b, false, &c0, &c1, &dt, &err);
    s->m.prefill_steps++;
    s->m.prefill_rows += (uint64_t)c;
    s->m.prefill_s += dt;
    s->m.prefill_bytes_read += c1.bytes_read - c0.bytes_read;
    if (rc < 0) {
        sl->n_valid = MS_MIN(sl->n_valid, p0);
        return finish(s, sl, "error", err.msg);
    }
    memcpy(sl->toks + p0, r->prompt + p0, (size_t)c * sizeof *sl->toks);
    sl->n_valid = p0 + c;
    sl->pf = p0 + c;
    sl->canon = s->o.reuse == MS_REUSE_EXACT ? sl->n_valid / s->batch * s->batch : 0;
    if (s->mtp && (rc = mtp_follow(s, sl, r->prompt + p0, c, p0, &err)) < 0) {
        mtp_forget(sl);
        return finish(s, sl, "error", err.msg);
    }
    if (!last) return;
    pthread_mutex_unlock(&s->mu);
    sample(s, sl, s->lg_pf);
    pthread_mutex_lock(&s->mu);
    take_token(s, sl);
}

/* One exact step over every decoding slot (locked on entry and exit). */
static void decode_step(ms_sched *s)
{
    slot *rows[s->n];
    int n = 0;
    for (int i = 0; i < s->n; i++) {
        slot *sl = &s->slots[i];
        if (sl->req && sl->state == S_DECODE) {
            s->rows_tok[n] = sl->pending;
            s->rows_pos[n] = sl->n_valid;
            s->rows_seq[n] = sl->id;
            rows[n++] = sl;
        }
    }
    if (n == 0) return;
    ms_batch b = {.n = n, .tokens = s->rows_tok, .pos = s->rows_pos, .seq = s->rows_seq, .logits = s->lg,
                  .all_logits = true};
    ms_cache_stats c0, c1;
    ms_err err = {0};
    double dt;
    int rc = step(s, &b, true, &c0, &c1, &dt, &err);
    s->m.decode_steps++;
    s->m.decode_rows += (uint64_t)n;
    s->m.decode_s += dt;
    s->m.decode_bytes_read += c1.bytes_read - c0.bytes_read;
    s->m.decode_experts_read += c1.expert_reads - c0.expert_reads;
    if (rc < 0) {
        for (int i = 0; i < n; i++) finish(s, rows[i], "error", err.msg);
        return;
    }
    for (int i = 0; i < n; i++) {
        slot *sl = rows[i];
        sl->toks[sl->n_valid++] = sl->pending;
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++) sample(s, rows[i], s->lg + (size_t)i * s->V);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < n; i++) take_token(s, rows[i]);
}

static slot *next_prefill(ms_sched *s)
{
    for (int k = 0; k < s->n; k++) {
        slot *sl = &s->slots[(s->rr + k) % s->n];
        if (sl->req && sl->state == S_PREFILL) {
            s->rr = (sl->id + 1) % s->n;
            return sl;
        }
    }
    return NULL;
}

static void *loop(void *arg)
{
    ms_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        retire_cancelled(s);
        if (s->stopping) break;
        admit(s);
        slot *pf = next_prefill(s);
        bool dec = false;
        for (int i = 0; i < s->n && !dec; i++) dec = s->slots[i].req && s->slots[i].state == S_DECODE;
        if (!pf && !dec) {
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        if (pf) prefill_chunk(s, pf);
        if (s->mtp) mtp_round(s);
        else decode_step(s);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- lifetime ---- */

static void sched_free(ms_sched *s)
{
    if (!s) return;
    for (int i = 0; s->slots && i < s->n; i++) {
        slot *sl = &s->slots[i];
        free(sl->toks);
        free(sl->raw);
        free(sl->h_last);
        free(sl->h_chunk);
        free(sl->mhid);
        free(sl->fin);
        if (sl->have_sampler) ms_sampler_free(&sl->sampler);
        ms_detok_free(sl->detok);
        ms_sb_free(&sl->hold);
    }
    free(s->slots);
    free(s->rows_tok);
    free(s->rows_pos);
    free(s->rows_seq);
    free(s->lg);
    free(s->lg_pf);
    free(s->hid);
    free(s->m_in);
    free(s->m_out);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    free(s);
}

int ms_sched_start(ms_engine *e, const ms_tokenizer *tok, const ms_sched_opts *o, ms_sched **out, ms_err *err)
{
    int rows_step = e->n_seq * (e->mtp + 1); /* a decode step: one row per slot; with --mtp N, N+1 */
    if (e->mtp > MAX_MTP) return ms_errf(err, EINVAL, "--mtp %d: serve drafts at most %d tokens", e->mtp, MAX_MTP);
    if (rows_step > e->batch) {
        if (e->mtp)
            return ms_errf(err, EINVAL,
                           "--parallel %d with --mtp %d needs --batch of at least %d (a verify step holds %d rows per slot)",
                           e->n_seq, e->mtp, rows_step, e->mtp + 1);
        return ms_errf(err, EINVAL, "--parallel %d needs --batch of at least %d (a decode step holds one row per slot)",
                       e->n_seq, e->n_seq);
    }
    ms_sched *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    s->e = e;
    s->tok = tok;
    s->o = *o;
    if (s->o.queue <= 0) s->o.queue = 64;
    s->V = ms_engine_vocab(e);
    s->ctx = e->ctx;
    s->batch = e->batch;
    s->n = e->n_seq;
    s->mtp = e->mtp;
    s->D = e->model.cfg.hidden_size;
    s->rows_step = rows_step;
    s->rows_max = MS_MAX(s->batch, rows_step);
    int rows = s->rows_max;
    s->slots = calloc((size_t)s->n, sizeof *s->slots);
    s->rows_tok = malloc((size_t)rows * sizeof *s->rows_tok);
    s->rows_pos = malloc((size_t)rows * sizeof *s->rows_pos);
    s->rows_seq = malloc((size_t)rows * sizeof *s->rows_seq);
    s->lg = malloc((size_t)rows_step * s->V * sizeof *s->lg);
    s->lg_pf = malloc((size_t)s->V * sizeof *s->lg_pf);
    bool ok = s->slots && s->rows_tok && s->rows_pos && s->rows_seq && s->lg && s->lg_pf;
    if (ok && s->mtp) {
        size_t hd = (size_t)rows * s->D * sizeof(float);
        ok = (s->hid = malloc(hd)) && (s->m_in = malloc(hd)) && (s->m_out = malloc(hd));
    }
    for (int i = 0; ok && i < s->n; i++) {
        slot *sl = &s->slots[i];
        sl->id = i;
        sl->h_last_pos = sl->h_chunk_pos = -1;
        ok = (sl->toks = malloc((size_t)s->ctx * sizeof(int32_t))) != NULL;
        size_t d = (size_t)s->D * sizeof(float), nd = (size_t)s->mtp * d;
        if (ok && s->mtp)
            ok = (sl->h_last = malloc(d)) && (sl->h_chunk = malloc(d)) && (sl->mhid = malloc(nd)) &&
                 (sl->fin = malloc(nd));
    }
    if (!ok) {
        sched_free(s);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    s->m.parallel = s->n;
    s->m.budget = e->budget;
    ms_cache_stats cs;
    cache_stats(s, &cs);
    cache_metrics(s, &cs);
    int rc = pthread_create(&s->th, NULL, loop, s);
    if (rc != 0) {
        sched_free(s);
        return ms_errf(err, rc, "cannot start the scheduler thread: %s", strerror(rc));
    }
    s->started = true;
    *out = s;
    return 0;
}

void ms_sched_stop(ms_sched *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    if (s->started) pthread_join(s->th, NULL);
    s->started = false;
}

void ms_sched_free(ms_sched *s)
{
    if (s && s->started) ms_sched_stop(s);
    sched_free(s);
}

int ms_sched_submit(ms_sched *s, ms_sched_req *r, ms_err *err)
{
    if (r->n_prompt < 1) return ms_errf(err, EINVAL, "the prompt is empty");
    if (r->n_prompt >= s->ctx)
        return ms_errf(err, EINVAL, "the prompt has %d tokens; the context holds %d (--ctx), leaving no room for an answer",
                       r->n_prompt, s->ctx);
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= s->V)
            return ms_errf(err, EINVAL, "prompt token id %d is outside the vocabulary (0..%d)", r->prompt[i], s->V - 1);
    for (int i = 0; i < r->sampling.n_bias; i++)
        if (r->bias_ids[i] >= s->V)
            return ms_errf(err, EINVAL, "logit_bias token id %d is outside the vocabulary (0..%d)", r->bias_ids[i],
                           s->V - 1);
    pthread_mutex_lock(&s->mu);
    int rc = 0, idle = 0;
    for (int i = 0; i < s->n; i++) idle += s->slots[i].req == NULL;
    if (s->stopping) rc = ms_errf(err, ESHUTDOWN, "the server is shutting down");
    else if (s->n_queued >= s->o.queue + idle)
        rc = ms_errf(err, EBUSY, "too many requests: %d slots busy and %d queued (--queue %d)", s->n - idle, s->n_queued,
                     s->o.queue);
    if (rc == 0) {
        r->refs++;
        r->t_submit = ms_now_s();
        r->next = NULL;
        if (s->q_tail) s->q_tail->next = r;
        else s->q_head = r;
        s->q_tail = r;
        s->n_queued++;
        s->m.requests++;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void ms_sched_cancel(ms_sched *s, ms_sched_req *r)
{
    pthread_mutex_lock(&s->mu);
    if (!r->finish) {
        r->cancelled = true;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
}

void ms_sched_get_metrics(ms_sched *s, ms_sched_metrics *m)
{
    pthread_mutex_lock(&s->mu);
    *m = s->m;
    m->queued = s->n_queued;
    m->mtp = s->mtp;
    m->active = 0;
    for (int i = 0; i < s->n; i++) m->active += s->slots[i].req != NULL;
    pthread_mutex_unlock(&s->mu);
    m->peak_rss = ms_peak_rss();
}

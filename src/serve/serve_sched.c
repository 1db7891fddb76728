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
    float *lg;                           /* [n][V] decode logits */
    float *lg_pf;                        /* [V] last prefill row */
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
    if (s->o.reuse == MS_REUSE_ANY) return l;
    l = MS_MIN(l, sl->canon);
    return l / s->batch * s->batch;
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
                  .logits = last ? s->lg_pf : NULL};
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
        decode_step(s);
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
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    free(s);
}

int ms_sched_start(ms_engine *e, const ms_tokenizer *tok, const ms_sched_opts *o, ms_sched **out, ms_err *err)
{
    if (e->n_seq > e->batch)
        return ms_errf(err, EINVAL, "--parallel %d needs --batch of at least %d (a decode step holds one row per slot)",
                       e->n_seq, e->n_seq);
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
    int rows = MS_MAX(s->batch, s->n);
    s->slots = calloc((size_t)s->n, sizeof *s->slots);
    s->rows_tok = malloc((size_t)rows * sizeof *s->rows_tok);
    s->rows_pos = malloc((size_t)rows * sizeof *s->rows_pos);
    s->rows_seq = malloc((size_t)rows * sizeof *s->rows_seq);
    s->lg = malloc((size_t)s->n * s->V * sizeof *s->lg);
    s->lg_pf = malloc((size_t)s->V * sizeof *s->lg_pf);
    bool ok = s->slots && s->rows_tok && s->rows_pos && s->rows_seq && s->lg && s->lg_pf;
    for (int i = 0; ok && i < s->n; i++) {
        s->slots[i].id = i;
        ok = (s->slots[i].toks = malloc((size_t)s->ctx * sizeof(int32_t))) != NULL;
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
    m->active = 0;
    for (int i = 0; i < s->n; i++) m->active += s->slots[i].req != NULL;
    pthread_mutex_unlock(&s->mu);
    m->peak_rss = ms_peak_rss();
}

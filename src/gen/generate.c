/* generate.c - generation loop, trace recording and run statistics (see generate.h). */
#include "generate.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expert_cache.h"
#include "io.h"
#include "util.h"

static void take_snap(const ms_gen *g, struct ms_gen_snap *s);

/* Router callback: row[token][moe layer][rank] for the chunk being computed. */
static void on_route(void *arg, int layer, int t, const int *ids, const float *w, int k)
{
    (void)w;
    ms_gen *g = arg;
    const ms_model *m = &g->e->model;
    int li = m->moe_index[layer];
    if (li < 0) return;
    uint32_t *row = g->trace_rows + ((size_t)t * m->n_moe_layers + li) * (size_t)k;
    for (int j = 0; j < k; j++) row[j] = (uint32_t)ids[j];
}

/* Prediction callback: the next layer's predicted experts for the token being decoded. */
static void on_predict(void *arg, int layer, int t, const int *ids, const float *w, int k)
{
    (void)w;
    (void)t;
    ms_gen *g = arg;
    int li = g->e->model.moe_index[layer];
    if (li < 0) return;
    for (int j = 0; j < k; j++) g->trace_pred[(size_t)li * k + j] = ids[j];
    g->trace_has_pred = true;
}

int ms_gen_init(ms_gen *g, ms_engine *e, const ms_gen_params *p, ms_err *err)
{
    memset(g, 0, sizeof *g);
    g->e = e;
    g->p = *p;
    int V = ms_engine_vocab(e);
    g->logits = malloc((size_t)V * sizeof *g->logits);
    if (!g->logits) return ms_errf(err, ENOMEM, "out of memory");
    int rc = ms_sampler_init(&g->sampler, &p->sampling, V, err);
    if (rc < 0) {
        free(g->logits);
        return rc;
    }
    g->last = -1;
    g->pending = -1;
    g->mtp = e->mtp;
    if (g->mtp > 0) {
        int N = g->mtp, D = e->model.cfg.hidden_size, R = MS_MAX(e->batch, N + 1);
        if (N + 1 > e->batch) {
            ms_gen_free(g);
            return ms_errf(err, EINVAL, "--mtp %d needs --batch of at least %d (a verify step holds %d rows)", N, N + 1,
                           N + 1);
        }
        if (N > (int)MS_ARRAY_LEN(g->out_q) - 1) {
            ms_gen_free(g);
            return ms_errf(err, EINVAL, "--mtp %d: at most %d draft tokens", N, (int)MS_ARRAY_LEN(g->out_q) - 1);
        }
        g->hid = malloc((size_t)R * D * sizeof(float));
        g->h_last = malloc((size_t)D * sizeof(float));
        g->mhid = malloc((size_t)R * D * sizeof(float));
        g->vlg = malloc((size_t)(N + 1) * V * sizeof(float));
        g->rows_tok = malloc((size_t)R * sizeof(int));
        g->rows_pos = malloc((size_t)R * sizeof(int));
        g->fin = malloc((size_t)(N + 1) * D * sizeof(float));
        g->fout = malloc((size_t)(N + 1) * D * sizeof(float));
        if (!g->hid || !g->h_last || !g->mhid || !g->vlg || !g->rows_tok || !g->rows_pos || !g->fin || !g->fout) {
            ms_gen_free(g);
            return ms_errf(err, ENOMEM, "out of memory");
        }
    }
    take_snap(g, &g->base);
    return 0;
}

void ms_gen_free(ms_gen *g)
{
    if (g->trace) {
        ms_err err = {0};
        ms_trace_writer_close(g->trace, &err);
        g->e->env.on_route = NULL;
    }
    free(g->trace_rows);
    free(g->trace_pred);
    if (g->e) g->e->env.on_predict = NULL;
    free(g->logits);
    free(g->hid);
    free(g->h_last);
    free(g->mhid);
    free(g->vlg);
    free(g->rows_tok);
    free(g->rows_pos);
    free(g->fin);
    free(g->fout);
    ms_sampler_free(&g->sampler);
    memset(g, 0, sizeof *g);
}

int ms_gen_trace_open(ms_gen *g, const char *path, ms_err *err)
{
    const ms_model *m = &g->e->model;
    if (g->mtp) return ms_errf(err, EINVAL, "--trace records the main model's routing: use it without --mtp");
    if (m->n_moe_layers == 0) return ms_errf(err, EINVAL, "--trace: the model has no MoE layers");
    ms_trace_info info = {0};
    const char *slash = strrchr(m->dir, '/');
    snprintf(info.model, sizeof info.model, "%s", slash && slash[1] ? slash + 1 : m->dir);
    snprintf(info.source, sizeof info.source, "moestream run (decode routing, %s)", m->cfg.model_type);
    info.n_layers = (uint32_t)m->n_moe_layers;
    info.n_experts = (uint32_t)m->cfg.n_routed_experts;
    info.top_k = (uint32_t)m->cfg.n_experts_per_tok;
    int32_t *layers = malloc((size_t)m->n_moe_layers * sizeof *layers);
    if (!layers) return ms_errf(err, ENOMEM, "out of memory");
    for (int i = 0; i < m->n_moe_layers; i++) layers[i] = m->moe[i].layer;
    info.layers = layers;
    size_t l = strlen(path);
    ms_trace_format fmt = l > 4 && !strcmp(path + l - 4, ".bin") ? MS_TRACE_BINARY : MS_TRACE_JSONL;
    int rc = ms_trace_writer_open(path, fmt, &info, &g->trace, err);
    free(layers);
    if (rc < 0) return rc;
    g->trace_rows = calloc((size_t)g->e->batch * m->n_moe_layers * info.top_k, sizeof *g->trace_rows);
    g->trace_pred = malloc((size_t)m->n_moe_layers * info.top_k * sizeof *g->trace_pred);
    if (!g->trace_rows || !g->trace_pred) return ms_errf(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < (size_t)m->n_moe_layers * info.top_k; i++) g->trace_pred[i] = -1;
    g->e->env.on_predict = on_predict;
    g->e->env.on_predict_arg = g;
    g->e->env.on_route = on_route;
    g->e->env.on_route_arg = g;
    return 0;
}

void ms_gen_trace_new_seq(ms_gen *g)
{
    if (g->trace && g->trace_pos) {
        g->trace_seq++;
        g->trace_pos = 0;
    }
}

/* MTP, after main rows at positions p0 .. p0+n-1 with final hidden states
 * hid[n][D]: the draft head's slots p0-1 .. p0+n-2, slot t = (hidden at t,
 * token at t+1), so its KV cache follows the main model's (teacher forcing over
 * the prompt). h_last holds the hidden state at p0-1 from the previous call. */
static int mtp_follow(ms_gen *g, const int32_t *ids, int n, int p0, ms_err *err)
{
    int D = g->e->model.cfg.hidden_size, m = 0;
    /* the refill a verify step deferred, for the slots before this chunk's
     * (a stop may have rolled the sequence back over some of them) */
    for (int k = 0; k < g->fold_n; k++) {
        if (g->fold_pos[k] >= p0 - 1) break;
        memcpy(g->mhid + (size_t)m * D, g->fin + (size_t)k * D, (size_t)D * sizeof(float));
        g->rows_tok[m] = g->fold_tok[k];
        g->rows_pos[m++] = g->fold_pos[k];
    }
    g->fold_n = 0;
    if (m > 0 && m + n > g->e->batch) { /* one call would not fit the batch: the refill rows first */
        ms_batch b = {.n = m, .tokens = g->rows_tok, .pos = g->rows_pos};
        int rc = ms_engine_mtp(g->e, &b, g->mhid, false, err);
        if (rc < 0) return rc;
        m = 0;
    }
    for (int t = p0 - 1; t <= p0 + n - 2; t++) {
        if (t < 0) continue;
        const float *h = t == p0 - 1 ? g->h_last : g->hid + (size_t)(t - p0) * D;
        memcpy(g->mhid + (size_t)m * D, h, (size_t)D * sizeof(float));
        g->rows_tok[m] = ids[t + 1 - p0];
        g->rows_pos[m] = t;
        m++;
    }
    memcpy(g->h_last, g->hid + (size_t)(n - 1) * D, (size_t)D * sizeof(float));
    if (m == 0) return 0;
    ms_batch b = {.n = m, .tokens = g->rows_tok, .pos = g->rows_pos};
    return ms_engine_mtp(g->e, &b, g->mhid, false, err);
}

/* Feed n <= batch tokens and record their routing. */
static int feed(ms_gen *g, const int32_t *ids, int n, ms_err *err)
{
    int rc;
    if (g->mtp) { /* keep every row's hidden state for the draft head */
        int p0 = g->e->pos;
        for (int i = 0; i < n; i++) g->rows_pos[i] = p0 + i;
        ms_batch b = {.n = n, .tokens = ids, .pos = g->rows_pos, .logits = g->logits, .hidden = g->hid};
        if ((rc = ms_engine_step(g->e, &b, false, err)) < 0) return rc;
        g->e->pos += n;
        if ((rc = mtp_follow(g, ids, n, p0, err)) < 0) return rc;
    } else if ((rc = ms_engine_eval(g->e, ids, n, g->logits, false, err)) < 0) {
        return rc;
    }
    g->have_logits = true;
    g->last = ids[n - 1];
    if (g->trace) {
        const ms_model *m = &g->e->model;
        size_t row = (size_t)m->n_moe_layers * m->cfg.n_experts_per_tok;
        /* one forward pass (n <= batch): the simulator replays it as one */
        if ((rc = ms_trace_writer_batch(g->trace, (uint32_t)n, err)) < 0) return rc;
        for (int t = 0; t < n; t++) {
            bool pred = n == 1 && g->trace_has_pred;
            rc = ms_trace_writer_add(g->trace, g->trace_seq, g->trace_pos++, g->trace_rows + (size_t)t * row,
                                     pred ? g->trace_pred : NULL, pred ? (uint32_t)m->cfg.n_experts_per_tok : 0, err);
            if (rc < 0) return rc;
        }
        if (g->trace_has_pred) {
            for (size_t i = 0; i < row; i++) g->trace_pred[i] = -1;
            g->trace_has_pred = false;
        }
    }
    return 0;
}

int ms_gen_prompt(ms_gen *g, const int32_t *ids, int n, ms_err *err)
{
    if (n <= 0) return ms_errf(err, EINVAL, "empty prompt");
    if (g->e->pos + n > g->e->ctx)
        return ms_errf(err, ENOSPC, "the prompt (%d tokens) does not fit the context (--ctx %d, %d used)", n, g->e->ctx,
                       g->e->pos);
    for (int i = 0; i < n; i++) ms_sampler_accept(&g->sampler, ids[i]);
    for (int i = 0; i < n;) {
        if (g->p.interrupted && *g->p.interrupted) {
            g->stop_reason = "interrupt"; /* a long prompt stops between chunks */
            return 0;
        }
        int c = MS_MIN(g->e->batch, n - i);
        int rc = feed(g, ids + i, c, err);
        if (rc < 0) return rc;
        i += c;
    }
    return 0;
}

static void take_snap(const ms_gen *g, struct ms_gen_snap *s)
{
    memset(s, 0, sizeof *s);
    s->disk = ms_io_read_bytes();
    if (!g->e->cache) return;
    ms_cache_stats cs;
    ms_cache_get_stats(g->e->cache, &cs);
    *s = (struct ms_gen_snap){.hits = cs.hits, .accesses = cs.accesses, .misses = cs.misses, .reads = cs.expert_reads,
                              .bytes = cs.bytes_read, .payload = cs.bytes_payload, .prefetch_issued = cs.prefetch_issued,
                              .prefetch_used = cs.prefetch_used, .prefetch_wasted = cs.prefetch_wasted,
                              .busy_s = cs.read_busy_s, .wait_s = cs.wait_s, .predicted = g->e->pred.predicted,
                              .correct = g->e->pred.correct, .disk = s->disk};
}

static void snapshot(ms_gen *g)
{
    if (g->snapped) return;
    take_snap(g, &g->snap);
    g->snapped = true;
}

/* Pop the next emitted token of a verify step. A token that ends generation
 * (stop id, length) leaves the model at its position: tokens after it that the
 * verify step fed are rolled back (the caches are indexed by position). */
static int mtp_pop(ms_gen *g, int32_t *tok)
{
    int i = g->out_i++;
    int32_t t = g->out_q[i];
    ms_sampler_accept(&g->sampler, t);
    g->generated++;
    *tok = t;
    bool stop = false;
    if (!g->p.ignore_eos)
        for (int k = 0; k < g->p.n_stop; k++) stop |= g->p.stop[k] == t;
    if (stop || g->generated >= g->p.max_new) {
        g->stop_reason = stop ? "stop" : "length";
        g->e->pos = g->out_pos[i]; /* as without MTP: the last token is not fed */
        int r = g->out_pos[i] - 1 - g->hid_p0; /* the hidden state before it (for the next prompt) */
        if (g->verify_steps && r >= 0 && r <= g->mtp)
            memcpy(g->h_last, g->hid + (size_t)r * g->e->model.cfg.hidden_size,
                   (size_t)g->e->model.cfg.hidden_size * sizeof(float));
        g->pending = -1;
        g->out_n = g->out_i = 0;
    }
    return 1;
}

/* One MTP round: draft N tokens after the pending one, verify the pending token
 * and the drafts in one exact step, emit the accepted drafts and one more. */
static int mtp_round(ms_gen *g, ms_err *err)
{
    ms_engine *e = g->e;
    int V = ms_engine_vocab(e), D = e->model.cfg.hidden_size, p = e->pos, rc;
    int N = MS_MIN(g->mtp, e->ctx - 1 - p); /* the verify step must fit the context */
    int drafts[16];
    /* 1. drafts: slot p-1 = (hidden at p-1, pending token) -> d1; slot p+k-1 =
     *    (the draft head's own output, d_k) -> d_{k+1} */
    for (int k = 0; k < N; k++) {
        const float *h = k == 0 ? g->h_last : g->mhid + (size_t)(k - 1) * D;
        int tokk = k == 0 ? g->pending : drafts[k - 1], posk = p - 1 + k;
        if (posk < 0) { /* no hidden state before the first position: no draft */
            N = 0;
            break;
        }
        if (k == 0 && g->fold_n > 0) { /* the previous round's refill rows first, then this draft row */
            int m = g->fold_n;
            memcpy(g->fin + (size_t)m * D, h, (size_t)D * sizeof(float));
            g->fold_tok[m] = tokk;
            g->fold_pos[m] = posk;
            ms_batch b = {.n = m + 1, .tokens = g->fold_tok, .pos = g->fold_pos, .logits = g->vlg, .hidden = g->fout};
            if ((rc = ms_engine_mtp(e, &b, g->fin, true, err)) < 0) return rc;
            memcpy(g->mhid, g->fout + (size_t)m * D, (size_t)D * sizeof(float));
            g->fold_n = 0;
        } else {
            ms_batch b = {.n = 1, .tokens = &tokk, .pos = &posk, .logits = g->vlg, .hidden = g->mhid + (size_t)k * D};
            if ((rc = ms_engine_mtp(e, &b, h, true, err)) < 0) return rc;
        }
        int best = ms_argmax(g->vlg, V);
        drafts[k] = best;
        if (g->on_draft) g->on_draft(g->on_draft_arg, k, p + 1 + k, best);
    }
    /* 2. verify: rows [pending @ p, d1 @ p+1, ..., dN @ p+N], exact */
    g->rows_tok[0] = g->pending;
    for (int k = 0; k < N; k++) g->rows_tok[k + 1] = drafts[k];
    for (int k = 0; k <= N; k++) g->rows_pos[k] = p + k;
    ms_batch b = {.n = N + 1, .tokens = g->rows_tok, .pos = g->rows_pos, .logits = g->vlg, .all_logits = true,
                  .hidden = g->hid};
    if ((rc = ms_engine_step(e, &b, true, err)) < 0) return rc;
    /* 3. accept the longest prefix of drafts the target agrees with, then one more */
    int acc = 0, h0 = g->sampler.n_hist;
    g->out_n = g->out_i = 0;
    for (; acc < N; acc++) {
        bool ok;
        int t = ms_sampler_sample_draft(&g->sampler, g->vlg + (size_t)acc * V, drafts[acc], &ok);
        if (g->mtp_force_accept) {
            ok = true;
            t = drafts[acc];
        }
        g->out_q[g->out_n] = t;
        g->out_pos[g->out_n++] = p + 1 + acc;
        if (!ok) break;
        ms_sampler_accept(&g->sampler, t); /* the next row's penalty sees it */
    }
    if (acc == N) {
        int t = ms_sampler_sample(&g->sampler, g->vlg + (size_t)N * V);
        g->out_q[g->out_n] = t;
        g->out_pos[g->out_n++] = p + 1 + N;
    }
    g->sampler.n_hist = h0; /* provisional: each token enters the history when it is returned */
    /* 4. the model now holds pending + the accepted drafts; the last emitted token
     *    is the new pending one; rejected rows are overwritten later */
    e->stats.decode_tokens -= (uint64_t)(N - acc); /* rows of rejected drafts are not decoded tokens */
    e->pos = p + acc + 1;
    g->pending = g->out_q[g->out_n - 1];
    g->drafted += (uint64_t)N;
    g->accepted += (uint64_t)acc;
    g->verify_steps++;
    /* 5. the draft head follows: slots p .. p+acc-1 with the verified hidden
     *    states, deferred into the next round's first draft call (or the next
     *    prompt's mtp_follow) */
    memcpy(g->h_last, g->hid + (size_t)acc * D, (size_t)D * sizeof(float)); /* hidden at p + acc */
    g->hid_p0 = p;
    for (int k = 0; k < acc; k++) { /* appended: a round without drafts (context end) left its rows */
        memcpy(g->fin + (size_t)(g->fold_n + k) * D, g->hid + (size_t)k * D, (size_t)D * sizeof(float));
        g->fold_tok[g->fold_n + k] = drafts[k];
        g->fold_pos[g->fold_n + k] = p + k;
    }
    g->fold_n += acc;
    return 0;
}

static int mtp_next(ms_gen *g, int32_t *tok, ms_err *err)
{
    if (g->out_i < g->out_n) return mtp_pop(g, tok);
    snapshot(g);
    if (g->pending < 0) { /* right after the prompt: the first token comes from the prompt's logits */
        int32_t t = ms_sampler_sample(&g->sampler, g->logits);
        g->out_q[0] = t;
        g->out_pos[0] = g->e->pos;
        g->out_n = 1;
        g->out_i = 0;
        g->pending = t;
        return mtp_pop(g, tok);
    }
    if (g->e->pos + 1 > g->e->ctx) {
        g->stop_reason = "context";
        return 0;
    }
    int rc = mtp_round(g, err);
    if (rc < 0) return rc;
    return mtp_pop(g, tok);
}

int ms_gen_next(ms_gen *g, int32_t *tok, ms_err *err)
{
    if (g->stop_reason) return 0;
    if (!g->have_logits) return ms_errf(err, EINVAL, "generation needs a prompt first");
    if (g->p.interrupted && *g->p.interrupted) {
        g->stop_reason = "interrupt";
        return 0;
    }
    if (g->generated >= g->p.max_new) {
        g->stop_reason = "length";
        return 0;
    }
    if (g->mtp) return mtp_next(g, tok, err);
    snapshot(g);
    int32_t t = ms_sampler_sample(&g->sampler, g->logits);
    ms_sampler_accept(&g->sampler, t);
    g->generated++;
    *tok = t;
    bool stop = false;
    if (!g->p.ignore_eos)
        for (int i = 0; i < g->p.n_stop; i++) stop |= g->p.stop[i] == t;
    if (stop) {
        g->stop_reason = "stop";
        return 1;
    }
    if (g->generated >= g->p.max_new) {
        g->stop_reason = "length";
        return 1;
    }
    if (g->e->pos + 1 > g->e->ctx) {
        g->stop_reason = "context";
        return 1;
    }
    int rc = feed(g, &t, 1, err);
    if (rc < 0) return rc;
    return 1;
}

void ms_gen_new_turn(ms_gen *g, int max_new)
{
    g->generated = 0;
    g->stop_reason = NULL;
    g->p.max_new = max_new;
}

void ms_gen_get_stats(const ms_gen *g, ms_gen_stats *st)
{
    const ms_engine *e = g->e;
    memset(st, 0, sizeof *st);
    st->prompt_tokens = e->stats.prefill_tokens;
    st->generated_tokens = e->stats.decode_tokens;
    st->prefill_s = e->stats.prefill_s;
    st->decode_s = e->stats.decode_s + e->stats.draft_s; /* MTP: drafting is part of decoding */
    st->mtp = g->mtp;
    st->mtp_drafted = g->drafted;
    st->mtp_accepted = g->accepted;
    st->mtp_steps = g->verify_steps;
    st->mtp_acceptance = g->drafted ? (double)g->accepted / (double)g->drafted : 0;
    st->mtp_tokens_per_step = g->verify_steps ? (double)(g->accepted + g->verify_steps) / (double)g->verify_steps : 0;
    st->prefill_tok_s = st->prefill_s > 0 ? (double)st->prompt_tokens / st->prefill_s : 0;
    st->decode_tok_s = st->decode_s > 0 ? (double)st->generated_tokens / st->decode_s : 0;
    st->load_s = e->stats.load_s;
    st->peak_rss = ms_peak_rss();
    st->budget = e->budget;
    st->resident_bytes = e->stats.resident_bytes;
    st->state_bytes = e->stats.state_bytes;
    st->io_backend = e->io_name;
    st->policy = "none";
    st->prefetch = e->prefetch_mode;
    st->interrupted = g->stop_reason && !strcmp(g->stop_reason, "interrupt");
    st->stop_reason = g->stop_reason ? g->stop_reason : "none";
    if (g->snapped && st->generated_tokens) {
        struct ms_gen_snap now;
        take_snap(g, &now);
        st->disk_bytes_per_token = (double)(now.disk - g->snap.disk) / (double)st->generated_tokens;
    }
    if (e->cache) {
        ms_cache_stats cs;
        ms_cache_get_stats(e->cache, &cs);
        struct ms_gen_snap now, b = g->base, d;
        take_snap(g, &now);
        d = g->snapped ? g->snap : now;
        st->cache = true;
        st->policy = ms_cache_policy_name(e->cache);
        st->accesses = now.accesses - b.accesses;
        st->hits = now.hits - b.hits;
        st->misses = now.misses - b.misses;
        st->expert_reads = now.reads - b.reads;
        st->bytes_read = now.bytes - b.bytes;
        st->bytes_payload = now.payload - b.payload;
        st->hit_rate = st->accesses ? (double)st->hits / (double)st->accesses : 0;
        uint64_t da = now.accesses - d.accesses, dh = now.hits - d.hits;
        st->decode_hit_rate = da ? (double)dh / (double)da : 0;
        uint64_t dt = st->generated_tokens;
        if (dt && g->snapped) {
            st->experts_read_per_token = (double)(now.reads - d.reads) / (double)dt;
            st->bytes_read_per_token = (double)(now.bytes - d.bytes) / (double)dt;
        }
        st->read_busy_s = now.busy_s - b.busy_s;
        st->read_gbps = st->read_busy_s > 0 ? (double)st->bytes_read / st->read_busy_s / 1e9 : 0;
        st->io_wait_s = now.wait_s - b.wait_s;
        st->io_submit_s = cs.submit_s;
        double total = st->prefill_s + st->decode_s;
        st->io_wait_fraction = total > 0 ? st->io_wait_s / total : 0;
        st->prefetch_issued = now.prefetch_issued - b.prefetch_issued;
        st->prefetch_used = now.prefetch_used - b.prefetch_used;
        st->prefetch_wasted = now.prefetch_wasted - b.prefetch_wasted;
        uint64_t pp = now.predicted - b.predicted, pc = now.correct - b.correct;
        st->prefetch_precision = pp ? (double)pc / (double)pp : 0;
        uint64_t resolved = st->prefetch_used + st->prefetch_wasted;
        st->prefetch_use_rate = resolved ? (double)st->prefetch_used / (double)resolved : 0;
        /* each prefetched expert used would have been a demand miss; price it at
         * what a demand miss cost on the critical path in this run */
        st->prefetch_wait_saved_s =
            st->misses ? (double)st->prefetch_used * st->io_wait_s / (double)st->misses : 0;
        st->prefetch_stopped = cs.prefetch_stopped;
        st->prefetch_stopped_at = cs.prefetch_stopped_at;
        st->slots = cs.slots;
        st->cache_bytes = cs.arena_bytes;
        ms_io_stats_line(ms_cache_io(e->cache), st->io_line, sizeof st->io_line);
        ms_io_stats ios;
        ms_io_get_stats(ms_cache_io(e->cache), &ios);
        st->buffered_files = ios.buffered_files;
    }
}

char *ms_gen_stats_line(const ms_gen_stats *st, char *buf, size_t len)
{
    char a[32], b[32], c[32];
    int n = snprintf(buf, len, "prefill %llu tok %.1f tok/s | decode %llu tok %.2f tok/s",
                     (unsigned long long)st->prompt_tokens, st->prefill_tok_s,
                     (unsigned long long)st->generated_tokens, st->decode_tok_s);
    if (st->cache && n > 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n,
                      " | experts: hit %.1f%% (decode %.1f%%), %.1f read/tok, %s/tok, read %.2f GB/s, io wait %.0f%%"
                      " | cache %lld slots %s (%s, %s)",
                      100 * st->hit_rate, 100 * st->decode_hit_rate, st->experts_read_per_token,
                      ms_fmt_bytes((uint64_t)st->bytes_read_per_token, a, sizeof a), st->read_gbps,
                      100 * st->io_wait_fraction, (long long)st->slots, ms_fmt_bytes(st->cache_bytes, b, sizeof b),
                      st->policy, st->io_backend);
    else if (n > 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, " | experts: %s", st->io_backend);
    if (st->cache && strcmp(st->prefetch, "none") && n > 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n,
                      " | prefetch %s: %llu read, precision %.0f%% (= recall at top-k), %.0f%% used, ~%.3f s wait saved%s",
                      st->prefetch, (unsigned long long)st->prefetch_issued, 100 * st->prefetch_precision,
                      100 * st->prefetch_use_rate, st->prefetch_wait_saved_s,
                      st->prefetch_stopped ? ", stopped itself" : "");
    if (st->mtp && n > 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, " | mtp %d: %.0f%% of drafts accepted, %.2f tok/step", st->mtp,
                      100 * st->mtp_acceptance, st->mtp_tokens_per_step);
    if (st->buffered_files && n > 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, " | %d shard file(s) refused O_DIRECT: read buffered + DONTNEED",
                      st->buffered_files);
    if (n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, " | peak RSS %s of --ram %s", ms_fmt_bytes(st->peak_rss, c, sizeof c),
                 ms_fmt_bytes(st->budget, a, sizeof a));
    return buf;
}

int ms_gen_stats_json(const ms_gen_stats *st, const char *path, ms_err *err)
{
    json_object *o = json_object_new_object();
#define D(k, v) json_object_object_add(o, k, json_object_new_double(v))
#define I(k, v) json_object_object_add(o, k, json_object_new_int64((int64_t)(v)))
#define S(k, v) json_object_object_add(o, k, json_object_new_string(v))
    I("prompt_tokens", st->prompt_tokens);
    I("generated_tokens", st->generated_tokens);
    D("prefill_tok_s", st->prefill_tok_s);
    D("decode_tok_s", st->decode_tok_s);
    D("load_s", st->load_s);
    D("hit_rate", st->hit_rate);
    D("decode_hit_rate", st->decode_hit_rate);
    I("accesses", st->accesses);
    I("hits", st->hits);
    I("misses", st->misses);
    I("expert_reads", st->expert_reads);
    I("bytes_read", st->bytes_read);
    D("experts_read_per_token", st->experts_read_per_token);
    D("bytes_read_per_token", st->bytes_read_per_token);
    D("disk_bytes_per_token", st->disk_bytes_per_token);
    D("read_gbps", st->read_gbps);
    D("io_wait_s", st->io_wait_s);
    D("io_wait_fraction", st->io_wait_fraction);
    D("io_submit_s", st->io_submit_s);
    I("prefetch_issued", st->prefetch_issued);
    I("prefetch_used", st->prefetch_used);
    I("prefetch_wasted", st->prefetch_wasted);
    S("prefetch", st->prefetch);
    D("prefetch_precision", st->prefetch_precision);
    D("prefetch_recall", st->prefetch_precision);
    D("prefetch_use_rate", st->prefetch_use_rate);
    D("prefetch_wait_saved_s", st->prefetch_wait_saved_s);
    json_object_object_add(o, "prefetch_stopped", json_object_new_boolean(st->prefetch_stopped));
    I("cache_slots", st->slots);
    I("cache_bytes", st->cache_bytes);
    I("resident_bytes", st->resident_bytes);
    I("state_bytes", st->state_bytes);
    I("peak_rss_bytes", st->peak_rss);
    I("ram_budget_bytes", st->budget);
    S("io_backend", st->io_backend);
    I("buffered_files", st->buffered_files);
    S("io", st->io_line);
    S("policy", st->policy);
    S("stop_reason", st->stop_reason);
    I("mtp", st->mtp);
    I("mtp_drafted", st->mtp_drafted);
    I("mtp_accepted", st->mtp_accepted);
    I("mtp_steps", st->mtp_steps);
    D("mtp_acceptance", st->mtp_acceptance);
    D("mtp_tokens_per_step", st->mtp_tokens_per_step);
    json_object_object_add(o, "interrupted", json_object_new_boolean(st->interrupted));
#undef D
#undef I
#undef S
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    int rc = 0;
    FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
    if (!f) {
        rc = ms_errf(err, errno, "--stats-json %s: %s", path, strerror(errno));
    } else {
        fprintf(f, "%s\n", text);
        if (f != stdout && fclose(f) != 0) rc = ms_errf(err, errno, "--stats-json %s: write failed", path);
    }
    json_object_put(o);
    return rc;
}

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
    g->e->env.on_predict = NULL;
    free(g->logits);
    ms_sampler_free(&g->sampler);
    memset(g, 0, sizeof *g);
}

int ms_gen_trace_open(ms_gen *g, const char *path, ms_err *err)
{
    const ms_model *m = &g->e->model;
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

/* Feed n <= batch tokens and record their routing. */
static int feed(ms_gen *g, const int32_t *ids, int n, ms_err *err)
{
    int rc = ms_engine_eval(g->e, ids, n, g->logits, false, err);
    if (rc < 0) return rc;
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
    st->decode_s = e->stats.decode_s;
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

/* sim.c - see sim.h. One ms_slots instance per (policy, capacity) run; the
 * access stream is the runtime's: per forward pass (one token, or a recorded
 * batch) and layer, the experts in the acquisition schedule of
 * cache/schedule.h (the function the runtime's MoE block and the expert cache
 * use too). */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "schedule.h"

/* Length of the forward pass starting at token i. */
static uint64_t pass_len(const ms_trace *t, uint64_t i)
{
    uint64_t n = t->batch && t->batch[i] > 1 ? t->batch[i] : 1;
    return i + n <= t->n_tokens ? n : t->n_tokens - i;
}

/* Longest forward pass of the trace (tokens). */
static uint64_t max_pass(const ms_trace *t)
{
    uint64_t mx = 1;
    for (uint64_t i = 0; i < t->n_tokens;) {
        uint64_t np = pass_len(t, i);
        if (np > mx) mx = np;
        i += np;
    }
    return mx;
}

/* keys of layer l's experts over tokens [i, i + n) in the acquisition order of
 * cache/schedule.h (the order the runtime's MoE block acquires them); for one
 * token, the trace's order. ids has room for n * top_k, seen[n_experts] is all
 * zero on entry and on return. */
static uint32_t pass_union(const ms_trace *t, uint64_t i, uint64_t n, uint32_t l, uint8_t *seen, int *ids,
                           uint32_t *out)
{
    const ms_trace_info *in = &t->info;
    int m = 0;
    for (uint64_t q = i; q < i + n; q++) {
        const uint16_t *e = ms_trace_experts(t, q, l);
        for (uint32_t j = 0; j < in->top_k; j++) ids[m++] = e[j];
    }
    m = ms_sched_union(ids, m, seen, ids);
    for (int r = 0; r < m; r++) out[r] = (uint32_t)ids[r] + l * in->n_experts;
    return (uint32_t)m;
}

int ms_trace_keys(const ms_trace *t, uint32_t **keys, size_t *n, ms_err *err)
{
    const ms_trace_info *in = &t->info;
    size_t total = (size_t)t->n_tokens * in->n_layers * in->top_k; /* an upper bound (batches share experts) */
    uint32_t *k = malloc((total ? total : 1) * sizeof *k);
    uint8_t *seen = calloc(in->n_experts, 1);
    int *ids = malloc((size_t)max_pass(t) * in->top_k * sizeof *ids);
    if (!k || !seen || !ids) {
        free(k);
        free(seen);
        free(ids);
        return ms_errf(err, ENOMEM, "simulate: out of memory for %zu accesses", total);
    }
    size_t m = 0;
    for (uint64_t i = 0; i < t->n_tokens;) {
        uint64_t np = pass_len(t, i);
        for (uint32_t l = 0; l < in->n_layers; l++) m += pass_union(t, i, np, l, seen, ids, k + m);
        i += np;
    }
    free(seen);
    free(ids);
    *keys = k;
    *n = m;
    return 0;
}

int ms_profile_from_trace(const ms_trace *t, ms_profile *p, ms_err *err)
{
    const ms_trace_info *in = &t->info;
    int rc = ms_profile_init(p, in->n_layers, in->n_experts, in->top_k, err);
    if (rc < 0) return rc;
    for (uint64_t i = 0; i < t->n_tokens; i++)
        for (uint32_t l = 0; l < in->n_layers; l++) {
            const uint16_t *e = ms_trace_experts(t, i, l);
            for (uint32_t j = 0; j < in->top_k; j++) p->count[(size_t)l * in->n_experts + e[j]]++;
        }
    p->tokens = t->n_tokens;
    return 0;
}

/* Issue the prefetches predicted for (token, layer); remember the slots. */
static int issue_prefetch(ms_slots *s, const ms_trace *t, uint64_t token, uint32_t layer, uint32_t *pending,
                          uint32_t *n_pending, ms_err *err)
{
    const ms_trace_info *in = &t->info;
    const int32_t *row = t->predicted + ((size_t)token * in->n_layers + layer) * t->max_pred;
    uint32_t keys[MS_TRACE_MAX_PRED];
    int64_t slots[MS_TRACE_MAX_PRED];
    uint32_t n = 0;
    for (uint32_t j = 0; j < t->max_pred; j++)
        if (row[j] >= 0) keys[n++] = layer * in->n_experts + (uint32_t)row[j];
    if (n == 0) return 0;
    int rc = ms_slots_prefetch_set(s, keys, (int)n, slots, err);
    if (rc < 0) return rc;
    for (uint32_t j = 0; j < n; j++)
        if (slots[j] >= 0 && ms_slots_state(s, (uint32_t)slots[j]) == MS_SLOT_LOADING)
            pending[(*n_pending)++] = (uint32_t)slots[j];
    return 0;
}

/* Counters of b minus those of a (a counting window). */
static ms_slots_stats stats_since(const ms_slots_stats *a, const ms_slots_stats *b)
{
    _Static_assert(sizeof(ms_slots_stats) % sizeof(uint64_t) == 0, "ms_slots_stats holds only uint64_t counters");
    enum { N = sizeof(ms_slots_stats) / sizeof(uint64_t) };
    uint64_t x[N], y[N];
    memcpy(x, a, sizeof x);
    memcpy(y, b, sizeof y);
    for (int i = 0; i < N; i++) y[i] -= x[i];
    ms_slots_stats d;
    memcpy(&d, y, sizeof d);
    return d;
}

int ms_simulate(const ms_trace *t, const uint32_t *keys, size_t n_keys_in, const char *policy_spec, uint32_t n_slots,
                const ms_sim_opts *opts, ms_sim_result *out, ms_err *err)
{
    memset(out, 0, sizeof *out);
    const ms_trace_info *in = &t->info;
    ms_sim_opts o = {0};
    if (opts) o = *opts;
    uint32_t *own_keys = NULL;
    size_t n_keys = 0;
    int rc;
    if (!keys || !n_keys_in) {
        if ((rc = ms_trace_keys(t, &own_keys, &n_keys, err)) < 0) return rc;
        keys = own_keys;
    } else {
        n_keys = n_keys_in;
    }
    char *spec = strdup(policy_spec);
    ms_policy_params pp = {.profile_path = o.profile_path};
    const ms_policy_ops *ops = NULL;
    ms_slots *s = NULL;
    ms_slot_ref *refs = malloc(in->n_experts * sizeof *refs);
    uint32_t *grp = malloc(in->n_experts * sizeof *grp);
    uint8_t *seen = calloc(in->n_experts, 1);
    int *ids = malloc((size_t)max_pass(t) * in->top_k * sizeof *ids);
    uint32_t *pending = malloc(((size_t)MS_TRACE_MAX_PRED + 1) * sizeof *pending);
    if (!spec || !refs || !grp || !seen || !ids || !pending) {
        rc = ms_errf(err, ENOMEM, "simulate: out of memory");
        goto out;
    }
    if ((rc = ms_policy_parse_spec(spec, &ops, &pp, err)) < 0) goto out;
    ms_slots_cfg cfg = {.n_slots = n_slots, .n_layers = in->n_layers, .n_experts = in->n_experts,
                        .top_k = in->top_k, .policy = ops, .policy_params = &pp};
    if ((rc = ms_slots_create(&cfg, &s, err)) < 0) goto out;
    ms_policy *pol = ms_slots_policy(s);
    if (pol->ops->set_future && (rc = pol->ops->set_future(pol->state, keys, n_keys, err)) < 0) goto out;
    bool prefetch = o.prefetch && t->max_pred > 0;
    uint32_t n_pending = 0;
    uint32_t wave = (uint32_t)ms_sched_wave(n_slots, (int)in->top_k); /* the cache's max_acquire */
    ms_slots_stats w0s = {0}, w1s = {0};
    bool w0 = false, w1 = false;
    for (uint64_t i = 0; i < t->n_tokens;) {
        uint64_t np = pass_len(t, i);
        if (!w0 && i >= o.from_token) { /* counting window: passes starting in [from, to) */
            w0s = *ms_slots_get_stats(s);
            w0 = true;
        }
        if (o.to_token && i >= o.to_token && !w1) {
            w1s = *ms_slots_get_stats(s);
            w1 = true;
        }
        ms_slots_tick(s); /* one tick per forward pass, as the runtime */
        for (uint32_t l = 0; l < in->n_layers; l++) {
            uint32_t m = pass_union(t, i, np, l, seen, ids, grp); /* the same group as in ms_trace_keys */
            for (uint32_t w0 = 0; w0 < m; w0 += wave) {
                int nw = (int)(m - w0 < wave ? m - w0 : wave);
                rc = ms_slots_acquire(s, grp + w0, nw, refs, err);
                if (rc < 0) goto out;
                for (int j = 0; j < nw; j++)
                    if (refs[j].outcome == MS_SLOT_MISS) ms_slots_ready(s, refs[j].slot);
                /* Prefetches issued one layer ago land now. */
                for (uint32_t j = 0; j < n_pending; j++)
                    if (ms_slots_state(s, pending[j]) == MS_SLOT_LOADING) ms_slots_ready(s, pending[j]);
                n_pending = 0;
                if (prefetch && np == 1 && w0 == 0) { /* the runtime predicts during decode only */
                    uint64_t ti = l + 1 < in->n_layers ? i : i + 1;
                    uint32_t tl = l + 1 < in->n_layers ? l + 1 : 0;
                    if (ti < t->n_tokens && (rc = issue_prefetch(s, t, ti, tl, pending, &n_pending, err)) < 0)
                        goto out;
                }
                ms_slots_release(s, refs, nw);
            }
        }
        i += np;
    }
    rc = 0;
    out->n_slots = n_slots;
    if (!w1) w1s = *ms_slots_get_stats(s);
    if (!w0) w0s = w1s; /* the window starts after the trace: nothing counted */
    out->stats = stats_since(&w0s, &w1s);
    out->hit_rate = out->stats.accesses ? (double)out->stats.hits / (double)out->stats.accesses : 0.0;
out:
    if (rc < 0) ms_err_prefix(err, "simulate %s, %u slots: ", policy_spec, n_slots);
    ms_slots_destroy(s);
    free(spec);
    free(refs);
    free(grp);
    free(seen);
    free(ids);
    free(pending);
    free(own_keys);
    return rc;
}

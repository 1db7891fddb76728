/* sim.c - see sim.h. One ms_slots instance per (policy, capacity) run; the
 * access stream is the trace in token, layer, rank order. */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ms_trace_keys(const ms_trace *t, uint32_t **keys, size_t *n, ms_err *err)
{
    const ms_trace_info *in = &t->info;
    size_t per = (size_t)in->n_layers * in->top_k;
    size_t total = (size_t)t->n_tokens * per;
    uint32_t *k = malloc((total ? total : 1) * sizeof *k);
    if (!k) return ms_errf(err, ENOMEM, "simulate: out of memory for %zu accesses", total);
    for (uint64_t i = 0; i < t->n_tokens; i++)
        for (uint32_t l = 0; l < in->n_layers; l++) {
            const uint16_t *e = ms_trace_experts(t, i, l);
            for (uint32_t j = 0; j < in->top_k; j++)
                k[i * per + (size_t)l * in->top_k + j] = l * in->n_experts + e[j];
        }
    *keys = k;
    *n = total;
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

int ms_simulate(const ms_trace *t, const uint32_t *keys, const char *policy_spec, uint32_t n_slots,
                const ms_sim_opts *opts, ms_sim_result *out, ms_err *err)
{
    memset(out, 0, sizeof *out);
    const ms_trace_info *in = &t->info;
    ms_sim_opts o = {0};
    if (opts) o = *opts;
    uint32_t *own_keys = NULL;
    size_t n_keys = (size_t)t->n_tokens * in->n_layers * in->top_k;
    int rc;
    if (!keys) {
        if ((rc = ms_trace_keys(t, &own_keys, &n_keys, err)) < 0) return rc;
        keys = own_keys;
    }
    char *spec = strdup(policy_spec);
    ms_policy_params pp = {.profile_path = o.profile_path};
    const ms_policy_ops *ops = NULL;
    ms_slots *s = NULL;
    ms_slot_ref *refs = malloc(in->top_k * sizeof *refs);
    uint32_t *pending = malloc(((size_t)MS_TRACE_MAX_PRED + 1) * sizeof *pending);
    if (!spec || !refs || !pending) {
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
    for (uint64_t i = 0; i < t->n_tokens; i++) {
        ms_slots_tick(s);
        for (uint32_t l = 0; l < in->n_layers; l++) {
            const uint32_t *g = keys + ((size_t)i * in->n_layers + l) * in->top_k;
            rc = ms_slots_acquire(s, g, (int)in->top_k, refs, err);
            if (rc < 0) goto out;
            for (uint32_t j = 0; j < in->top_k; j++)
                if (refs[j].outcome == MS_SLOT_MISS) ms_slots_ready(s, refs[j].slot);
            /* Prefetches issued one layer ago land now. */
            for (uint32_t j = 0; j < n_pending; j++)
                if (ms_slots_state(s, pending[j]) == MS_SLOT_LOADING) ms_slots_ready(s, pending[j]);
            n_pending = 0;
            if (prefetch) {
                uint64_t ti = l + 1 < in->n_layers ? i : i + 1;
                uint32_t tl = l + 1 < in->n_layers ? l + 1 : 0;
                if (ti < t->n_tokens && (rc = issue_prefetch(s, t, ti, tl, pending, &n_pending, err)) < 0) goto out;
            }
            ms_slots_release(s, refs, (int)in->top_k);
        }
    }
    rc = 0;
    out->n_slots = n_slots;
    out->stats = *ms_slots_get_stats(s);
    out->hit_rate = out->stats.accesses ? (double)out->stats.hits / (double)out->stats.accesses : 0.0;
out:
    if (rc < 0) ms_err_prefix(err, "simulate %s, %u slots: ", policy_spec, n_slots);
    ms_slots_destroy(s);
    free(spec);
    free(refs);
    free(pending);
    free(own_keys);
    return rc;
}

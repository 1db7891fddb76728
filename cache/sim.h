/* sim.h - replay a routing trace through the expert cache core (cache/slots.h)
 * without memory: the simulator behind `moestream simulate`.
 *
 * Model: one global cache of n_slots equal slots; forward passes in order
 * (one per token, or one per batch of tokens the trace marks as computed
 * together: a prefill chunk), layers in order; the experts of one (pass,
 * layer), in order of first appearance, are acquired as one group (pinned together, so they never
 * evict each other; a union larger than the cache's max_acquire goes in waves
 * as in the runtime), every miss completes at once, then the group is
 * released. One policy tick per pass. Because it drives the same ms_slots code as the
 * runtime with the same call sequence, a trace recorded by `run` and replayed
 * here with the same slots and policy gives the runtime's hit count exactly.
 *
 * Optional prefetch replay: when the trace carries "predicted" experts and
 * opts.prefetch is set, predicted[l] is prefetched while layer l-1 is being
 * processed (for l = 0: during the previous token's last layer) and completes
 * just after layer l is acquired (so a prefetch that arrives "in time" counts as
 * a LOADING hit). */
#ifndef MS_SIM_H
#define MS_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "profile.h"
#include "slots.h"
#include "trace.h"

typedef struct ms_sim_opts {
    const char *profile_path; /* for policies that need a profile (pin) */
    bool prefetch;            /* replay the trace's "predicted" experts */
    /* Count only the passes that start in tokens [from_token, to_token) (to_token
     * 0 = to the end): the cache still sees the whole trace, e.g. the decode
     * part of a run whose prefill warmed it. Both 0 = everything. */
    uint64_t from_token, to_token;
} ms_sim_opts;

typedef struct ms_sim_result {
    uint32_t n_slots;
    double hit_rate;          /* hits / accesses */
    ms_slots_stats stats;
} ms_sim_result;

/* The flattened demand access stream of a trace, in the runtime's order: per
 * forward pass (a token, or a recorded batch of tokens) and MoE layer, the
 * union of the pass's experts in order of first appearance (token, then rank:
 * for one token the trace's order); key = layer * n_experts +
 * expert. *n = number of accesses (< tokens x layers x top_k when batches
 * share experts). *keys is malloc'd. */
int ms_trace_keys(const ms_trace *t, uint32_t **keys, size_t *n, ms_err *err);

/* Simulate one policy spec ("name[:opt=value...]") at one capacity. keys may be
 * NULL (computed here); pass ms_trace_keys' output (keys, n_keys) to share it
 * across runs. */
int ms_simulate(const ms_trace *t, const uint32_t *keys, size_t n_keys, const char *policy_spec, uint32_t n_slots,
                const ms_sim_opts *opts, ms_sim_result *out, ms_err *err);

/* Per-(layer, expert) selection counts of a trace (for the pin policy). */
int ms_profile_from_trace(const ms_trace *t, ms_profile *p, ms_err *err);

#endif

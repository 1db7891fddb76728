/* policy.h - eviction policies of the expert cache, behind a small versioned ops
 * table (like fio's I/O engines).
 *
 * The cache core (cache/slots.h) owns N equal slots and the key -> slot map; a
 * policy only orders the resident slots and names a victim when the core needs
 * one. Keys are 32-bit: key = layer * n_experts + expert, where layer is the MoE
 * layer's index among the traced/streamed MoE layers (0..n_layers-1), so every
 * key is < n_layers * n_experts and policies may keep dense per-key arrays (for
 * history of non-resident keys).
 *
 * Call protocol (the core guarantees it, so policies stay simple):
 *   - every demand access produces exactly one on_hit(slot,key) (key resident) or
 *     one on_insert(slot,key,prefetch=false) (key was missing and now occupies
 *     slot), in access order: tokens in order, layers in order, the k keys of a
 *     group in the order given. Policies that count accesses (frequency, belady's
 *     cursor) rely on this.
 *   - a prefetch insert produces on_insert(slot,key,prefetch=true): not an access.
 *   - victim() is asked only when no EMPTY slot exists (unless the policy sets
 *     MS_POLICY_VICTIM_FIRST, see below); it must return an eligible
 *     slot (eligible(ctx,slot) true: resident, not pinned, not loading) whenever
 *     one exists, and -1 only when none does. It must not change the policy's
 *     ordering except for internal bookkeeping; the core then calls
 *     on_evict(victim) followed by on_insert(victim, new key).
 *   - on_evict(slot,key) removes a resident slot (eviction or failed load).
 *   - on_tick(token) is called at every token boundary (before the token's first
 *     layer); time-based policies (aging, decay) use it.
 * All decisions are deterministic: same calls -> same answers.
 *
 * Cost: every op is O(1) or O(log n) in the number of slots (victim additionally
 * skips the few pinned/loading slots it meets). */
#ifndef MS_POLICY_H
#define MS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MS_POLICY_API_VERSION 1

/* Flags of an ops table. */
enum {
    MS_POLICY_NEEDS_FUTURE = 1u << 0,  /* offline: needs set_future() (simulator only) */
    MS_POLICY_NEEDS_PROFILE = 1u << 1, /* needs params.profile_path */
    /* victim() is asked even while EMPTY slots exist (partitioned policies): it
     * returns a slot to evict, or MS_POLICY_USE_EMPTY to take an EMPTY slot. */
    MS_POLICY_VICTIM_FIRST = 1u << 2,
};

/* victim() answer under MS_POLICY_VICTIM_FIRST: "use an EMPTY slot". */
#define MS_POLICY_USE_EMPTY (-2)

/* Maximum number of "name=value" options a policy spec may carry. */
#define MS_POLICY_MAX_OPTS 8

typedef struct ms_policy_params {
    uint32_t n_slots;    /* cache capacity in slots (>= top_k) */
    uint32_t n_layers;   /* MoE layers (keys are < n_layers * n_experts) */
    uint32_t n_experts;  /* routed experts per layer */
    uint32_t top_k;      /* experts per token per layer */
    const char *profile_path; /* optional: learned profile (see profile.h) */
    /* Optional tuning options from a spec "name:opt=val:opt=val". */
    int n_opts;
    const char *opt_name[MS_POLICY_MAX_OPTS];
    double opt_value[MS_POLICY_MAX_OPTS];
} ms_policy_params;

/* Eligibility predicate the core passes to victim(). */
typedef bool (*ms_policy_eligible_fn)(const void *ctx, uint32_t slot);

typedef struct ms_policy_ops {
    const char *name;
    int version;          /* MS_POLICY_API_VERSION the table was written for */
    unsigned flags;       /* MS_POLICY_* */
    const char *summary;  /* one line for --help / docs */
    const char *const *opt_names; /* NULL-terminated accepted option names, or NULL */

    int (*create)(const ms_policy_params *p, void **state, ms_err *err);
    void (*destroy)(void *state);
    void (*on_hit)(void *state, uint32_t slot, uint32_t key);
    void (*on_insert)(void *state, uint32_t slot, uint32_t key, bool prefetch);
    void (*on_evict)(void *state, uint32_t slot, uint32_t key);
    /* Slot to give up for incoming_key, or -1 if no slot is eligible. n_empty is
     * the number of EMPTY slots the core could use instead (always 0 unless the
     * policy sets MS_POLICY_VICTIM_FIRST); MS_POLICY_USE_EMPTY is only valid when
     * n_empty > 0. */
    int64_t (*victim)(void *state, uint32_t incoming_key, uint32_t n_empty, ms_policy_eligible_fn eligible,
                      const void *ctx);
    /* Optional: may a prefetch of key replace victim_key (UINT32_MAX: an empty
     * slot)? NULL = always admit. */
    bool (*admit)(void *state, uint32_t key, uint32_t victim_key);
    /* Optional: token boundary (token = 0, 1, 2, ...). */
    void (*on_tick)(void *state, uint64_t token);
    /* Optional (required with MS_POLICY_NEEDS_FUTURE): the whole future demand
     * access stream, keys[0..n) in access order. The array must outlive the policy. */
    int (*set_future)(void *state, const uint32_t *keys, size_t n, ms_err *err);
    /* Optional: the keys of a demand group, announced once before their on_hit /
     * on_insert calls (a successful ms_slots_acquire). */
    void (*on_group)(void *state, const uint32_t *keys, int n);
} ms_policy_ops;

/* An instance: ops + state. */
typedef struct ms_policy {
    const ms_policy_ops *ops;
    void *state;
} ms_policy;

/* Registry. */
size_t ms_policy_count(void);
const ms_policy_ops *ms_policy_at(size_t i);
const ms_policy_ops *ms_policy_find(const char *name);
/* Name of the policy `run` uses by default. */
const char *ms_policy_default(void);

/* Parse a policy spec "name" or "name:opt=value[:opt=value...]" into the ops
 * table and the options of params (option names point into spec, which must
 * outlive params). Unknown policy, unknown option name or malformed option ->
 * -EINVAL. */
int ms_policy_parse_spec(char *spec, const ms_policy_ops **ops, ms_policy_params *params, ms_err *err);

/* Create / destroy an instance. create validates params (n_slots >= top_k >= 1,
 * n_experts >= top_k, key space fits 32 bits) and rejects unknown options. */
int ms_policy_create(const ms_policy_ops *ops, const ms_policy_params *p, ms_policy *out, ms_err *err);
void ms_policy_destroy(ms_policy *pol);

/* For policy implementations: option `name` of the spec, or def if absent.
 * (ms_policy_create already rejected names not listed in ops->opt_names.) */
double ms_policy_opt(const ms_policy_params *p, const char *name, double def);

#endif

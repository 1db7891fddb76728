/* slots.h - the bookkeeping core of the expert cache: N equal slots, the map
 * key -> slot, per-slot state and pin counts, and an eviction policy. It owns no
 * expert memory: the runtime cache pairs slot i with its i-th arena buffer, and
 * the simulator drives the very same core without memory, so a trace replayed
 * by `simulate` gives exactly the runtime's hit counts by construction.
 *
 * Keys: key = layer * n_experts + expert (layer = MoE layer index 0..n_layers-1).
 * Lookup is a direct-mapped table over the dense key space (a perfect hash:
 * n_layers * n_experts entries, 60 KiB for 256 experts x 60 layers).
 *
 * Slot states: EMPTY (free), LOADING (mapped, read in flight), READY (mapped,
 * data valid). A slot is a possible victim only when READY and unpinned; EMPTY
 * slots are used first (lowest index first), except that a partitioned policy
 * (MS_POLICY_VICTIM_FIRST, e.g. lru-layer) may evict within its partition
 * instead of growing past its share.
 *
 * One (token, layer) group: the runtime (or simulator) does
 *     n_miss = ms_slots_acquire(s, keys, k, refs, err);   // all k keys pinned
 *     for misses: start the read into slot refs[i].slot, then
 *         ms_slots_ready(s, slot) or ms_slots_fail(s, slot)
 *     ... compute ...
 *     ms_slots_release(s, refs, k);                        // unpin
 * and calls ms_slots_tick(s) once before each token's first layer.
 *
 * Hit accounting: a key found READY is a hit; a key found LOADING (a prefetch
 * still in flight, or a demand read of another group) is also counted as a hit
 * (no new read is issued) and reported separately in hits_loading. A miss
 * selects a victim: the k keys of the group are pinned before any victim is
 * chosen, so misses inside one group never evict each other; policy hooks are
 * called in key order (hit: on_hit; miss: victim, on_evict, on_insert), exactly
 * as if the keys were accessed one after the other.
 *
 * Deterministic: the same sequence of calls gives the same decisions.
 * Not thread-safe: the caller serialises calls (the runtime drives each slot
 * table from the one thread that runs the forward pass). */
#ifndef MS_SLOTS_H
#define MS_SLOTS_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "policy.h"

typedef enum ms_slot_state {
    MS_SLOT_EMPTY = 0,
    MS_SLOT_LOADING = 1,
    MS_SLOT_READY = 2,
} ms_slot_state;

/* How a key of a group was found by ms_slots_acquire. */
typedef enum ms_slot_outcome {
    MS_SLOT_MISS = 0,        /* mapped to a fresh (LOADING) slot: the caller must read it */
    MS_SLOT_HIT = 1,         /* READY */
    MS_SLOT_HIT_LOADING = 2, /* LOADING (read already in flight): wait for it, no new read */
} ms_slot_outcome;

typedef struct ms_slot_ref {
    uint32_t slot;
    uint8_t outcome; /* ms_slot_outcome */
} ms_slot_ref;

typedef struct ms_slots_stats {
    uint64_t accesses;          /* keys acquired */
    uint64_t hits;              /* READY + LOADING hits */
    uint64_t hits_loading;      /* of which LOADING */
    uint64_t misses;
    uint64_t evictions;         /* a resident key replaced */
    uint64_t failed;            /* loads marked failed */
    uint64_t prefetch_inserted; /* prefetches that took a slot */
    uint64_t prefetch_used;     /* ... later hit by a demand access */
    uint64_t prefetch_wasted;   /* ... evicted (or failed) before any use */
    uint64_t prefetch_refused;  /* no eligible slot or the policy did not admit */
    uint64_t groups;            /* successful acquire calls */
    uint64_t tokens;            /* tick calls */
} ms_slots_stats;

typedef struct ms_slots_cfg {
    uint32_t n_slots, n_layers, n_experts, top_k;
    const ms_policy_ops *policy;  /* NULL: ms_policy_default() */
    const ms_policy_params *policy_params; /* optional: options / profile; geometry is taken from here */
} ms_slots_cfg;

typedef struct ms_slots ms_slots;

int ms_slots_create(const ms_slots_cfg *cfg, ms_slots **out, ms_err *err);
void ms_slots_destroy(ms_slots *s);

/* The policy instance (e.g. to call set_future for belady). */
ms_policy *ms_slots_policy(ms_slots *s);

/* Acquire the k keys of one (token, layer): every key ends up mapped and pinned;
 * refs[i] gets its slot and outcome. Returns the number of misses (slots now
 * LOADING that the caller must read), or:
 *   -EINVAL  a key out of range, a duplicate key in the group, k < 1;
 *   -ENOSPC  not enough eligible slots (all pinned/loading); nothing changed.
 * k may exceed top_k (e.g. shared prefill of several tokens) as long as the
 * slots suffice. */
int ms_slots_acquire(ms_slots *s, const uint32_t *keys, int k, ms_slot_ref *refs, ms_err *err);

/* Loading finished: LOADING -> READY. -EINVAL if the slot is not LOADING. */
int ms_slots_ready(ms_slots *s, uint32_t slot);
/* Loading failed: the key is unmapped (LOADING -> EMPTY); the slot returns to
 * the free list once its pins are released. -EINVAL if not LOADING. */
int ms_slots_fail(ms_slots *s, uint32_t slot);
/* Unpin the slots of a group (refs as filled by acquire). */
void ms_slots_release(ms_slots *s, const ms_slot_ref *refs, int k);

/* Prefetch: map key into a slot without pinning it. Returns 1 with *slot set
 * (state LOADING: the caller reads it then calls ready/fail), 0 if the key is
 * already mapped (*slot set), -EBUSY if refused (no eligible victim, or the
 * policy's admit() declined replacing its victim), -EINVAL on a bad key. Never
 * evicts a pinned or loading slot. */
int ms_slots_prefetch(ms_slots *s, uint32_t key, uint32_t *slot, ms_err *err);

/* Prefetch a predicted set (e.g. the next layer's likely experts) so that its
 * members never evict each other: keys of the set already mapped are protected
 * while the missing ones are prefetched. slots[i] (optional) gets the slot of
 * keys[i] or -1 if its prefetch was refused. Returns the number of slots newly
 * inserted (each LOADING: read it, then ready/fail), or -EINVAL on a bad key. */
int ms_slots_prefetch_set(ms_slots *s, const uint32_t *keys, int n, int64_t *slots, ms_err *err);

/* Token boundary (call before the first layer of every token). */
void ms_slots_tick(ms_slots *s);

/* Slot of key, or -1 if not mapped. */
int64_t ms_slots_lookup(const ms_slots *s, uint32_t key);
ms_slot_state ms_slots_state(const ms_slots *s, uint32_t slot);
uint32_t ms_slots_pins(const ms_slots *s, uint32_t slot);
/* Key held by a slot (UINT32_MAX if EMPTY). */
uint32_t ms_slots_key(const ms_slots *s, uint32_t slot);
uint32_t ms_slots_count(const ms_slots *s);
/* Check every invariant of the table (O(slots + keys)); 0, or -EPROTO with the
 * first violation in err. Every call above checks them itself in builds with
 * MS_INVARIANTS (invariant.h): key <-> slot maps agree, EMPTY slots hold no key,
 * the free stack holds exactly the EMPTY unpinned slots, n_avail counts the
 * slots a miss could take, pinned or LOADING slots are never eviction
 * candidates, counters agree (accesses = hits + misses, ...). */
int ms_slots_check(const ms_slots *s, ms_err *err);
const ms_slots_stats *ms_slots_get_stats(const ms_slots *s);

#endif

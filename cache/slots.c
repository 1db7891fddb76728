/* slots.c - see slots.h. Data: a direct-mapped key -> slot table, per-slot key,
 * state, pin count and "prefetched, not yet used" flag, a stack of free (EMPTY,
 * unpinned) slots, and a running count of slots a miss could take (free, or
 * READY and unpinned) so -ENOSPC is decided before anything changes. */
#include "slots.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "invariant.h"

#define NIL UINT32_MAX

struct ms_slots {
    uint32_t n_slots, n_layers, n_experts, top_k, n_keys;
    uint32_t *map;        /* [n_keys] slot or NIL */
    uint32_t *key;        /* [n_slots] key or NIL */
    uint8_t *state;       /* [n_slots] ms_slot_state */
    uint8_t *prefetched;  /* [n_slots] 1 = prefetched and not used yet */
    uint32_t *pins;       /* [n_slots] */
    uint32_t *free_stack; /* [n_slots] */
    uint32_t n_free;
    uint32_t n_avail;     /* slots with pins == 0 and state EMPTY or READY */
    uint32_t *mark;       /* [n_keys] duplicate detection generation */
    uint32_t mark_gen;
    ms_policy policy;
    ms_slots_stats st;
};

static uint32_t next_gen(ms_slots *s);

/* Full check after each public mutation, in builds with invariants. */
static void check_all(const ms_slots *s)
{
#if MS_INVARIANTS_ON
    ms_err e = {0};
    if (ms_slots_check(s, &e) < 0) {
        fprintf(stderr, "moestream: %s\n", e.msg);
        MS_INVARIANT(!"slot table invariant");
    }
#else
    (void)s;
#endif
}

static inline bool avail(const ms_slots *s, uint32_t i)
{
    return s->pins[i] == 0 && s->state[i] != MS_SLOT_LOADING;
}

static bool eligible(const void *ctx, uint32_t i)
{
    const ms_slots *s = ctx;
    return i < s->n_slots && s->pins[i] == 0 && s->state[i] == MS_SLOT_READY;
}

void ms_slots_destroy(ms_slots *s)
{
    if (!s) return;
    ms_policy_destroy(&s->policy);
    free(s->map);
    free(s->key);
    free(s->state);
    free(s->prefetched);
    free(s->pins);
    free(s->free_stack);
    free(s->mark);
    free(s);
}

int ms_slots_create(const ms_slots_cfg *cfg, ms_slots **out, ms_err *err)
{
    *out = NULL;
    if (!cfg->n_slots || !cfg->n_layers || !cfg->n_experts || !cfg->top_k || cfg->top_k > cfg->n_experts)
        return ms_errf(err, EINVAL, "slots: bad geometry (slots %u, layers %u, experts %u, top_k %u)", cfg->n_slots,
                       cfg->n_layers, cfg->n_experts, cfg->top_k);
    if (cfg->n_slots < cfg->top_k)
        return ms_errf(err, EINVAL, "slots: %u slots cannot hold the %u experts one layer needs at once",
                       cfg->n_slots, cfg->top_k);
    if ((uint64_t)cfg->n_layers * cfg->n_experts >= NIL || cfg->n_slots >= NIL)
        return ms_errf(err, EINVAL, "slots: key space or slot count does not fit 32 bits");
    ms_slots *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "slots: out of memory");
    s->n_slots = cfg->n_slots;
    s->n_layers = cfg->n_layers;
    s->n_experts = cfg->n_experts;
    s->top_k = cfg->top_k;
    s->n_keys = cfg->n_layers * cfg->n_experts;
    s->map = malloc((size_t)s->n_keys * sizeof *s->map);
    s->key = malloc((size_t)s->n_slots * sizeof *s->key);
    s->state = calloc(s->n_slots, 1);
    s->prefetched = calloc(s->n_slots, 1);
    s->pins = calloc(s->n_slots, sizeof *s->pins);
    s->free_stack = malloc((size_t)s->n_slots * sizeof *s->free_stack);
    s->mark = calloc(s->n_keys, sizeof *s->mark);
    if (!s->map || !s->key || !s->state || !s->prefetched || !s->pins || !s->free_stack || !s->mark) {
        ms_slots_destroy(s);
        return ms_errf(err, ENOMEM, "slots: out of memory for %u slots", cfg->n_slots);
    }
    memset(s->map, 0xff, (size_t)s->n_keys * sizeof *s->map);
    memset(s->key, 0xff, (size_t)s->n_slots * sizeof *s->key);
    for (uint32_t i = 0; i < s->n_slots; i++) s->free_stack[i] = s->n_slots - 1 - i; /* pop 0 first */
    s->n_free = s->n_avail = s->n_slots;

    ms_policy_params pp = {0};
    if (cfg->policy_params) pp = *cfg->policy_params;
    pp.n_slots = cfg->n_slots;
    pp.n_layers = cfg->n_layers;
    pp.n_experts = cfg->n_experts;
    pp.top_k = cfg->top_k;
    const ms_policy_ops *ops = cfg->policy ? cfg->policy : ms_policy_find(ms_policy_default());
    int rc = ms_policy_create(ops, &pp, &s->policy, err);
    if (rc < 0) {
        ms_slots_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}

ms_policy *ms_slots_policy(ms_slots *s) { return &s->policy; }

/* Remove the resident key of slot i (eviction or failed load). */
static void unmap(ms_slots *s, uint32_t i)
{
    uint32_t old = s->key[i];
    s->policy.ops->on_evict(s->policy.state, i, old);
    s->map[old] = NIL;
    s->key[i] = NIL;
    if (s->prefetched[i]) {
        s->st.prefetch_wasted++;
        s->prefetched[i] = 0;
    }
}

/* A slot for a new key: a free one, else the policy's victim (evicted). NIL if
 * none. The returned slot is EMPTY, unmapped and unpinned. */
static uint32_t take_slot(ms_slots *s, uint32_t key, bool prefetch, int *refused)
{
    const ms_policy_ops *ops = s->policy.ops;
    int64_t v;
    if (s->n_free > 0 && !(ops->flags & MS_POLICY_VICTIM_FIRST)) return s->free_stack[--s->n_free];
    v = ops->victim(s->policy.state, key, s->n_free, eligible, s);
    if (v == MS_POLICY_USE_EMPTY && s->n_free > 0) return s->free_stack[--s->n_free];
    if (v < 0 && s->n_free > 0) return s->free_stack[--s->n_free];
    if (v < 0 || !eligible(s, (uint32_t)v)) return NIL;
    uint32_t i = (uint32_t)v;
    MS_INVARIANT(s->pins[i] == 0 && s->state[i] == MS_SLOT_READY); /* pinned slots are never victims */
    if (prefetch && s->policy.ops->admit && !s->policy.ops->admit(s->policy.state, key, s->key[i])) {
        *refused = 1;
        return NIL;
    }
    unmap(s, i);
    s->state[i] = MS_SLOT_EMPTY;
    s->st.evictions++;
    return i;
}

int ms_slots_acquire(ms_slots *s, const uint32_t *keys, int k, ms_slot_ref *refs, ms_err *err)
{
    if (k < 1) return ms_errf(err, EINVAL, "slots: empty group");
    uint32_t gen = next_gen(s);
    uint32_t misses = 0, hits_avail = 0;
    for (int j = 0; j < k; j++) {
        uint32_t key = keys[j];
        if (key >= s->n_keys)
            return ms_errf(err, EINVAL, "slots: key %u (layer %u, expert %u) out of range (%u layers x %u experts)",
                           key, key / s->n_experts, key % s->n_experts, s->n_layers, s->n_experts);
        if (s->mark[key] == gen)
            return ms_errf(err, EINVAL, "slots: key %u (layer %u, expert %u) twice in one group", key,
                           key / s->n_experts, key % s->n_experts);
        s->mark[key] = gen;
        uint32_t i = s->map[key];
        if (i == NIL) misses++;
        else if (avail(s, i)) hits_avail++;
    }
    if (misses > s->n_avail - hits_avail)
        return ms_errf(err, ENOSPC, "slots: %u misses but only %u slots can be given up (%u slots, others pinned or loading)",
                       misses, s->n_avail - hits_avail, s->n_slots);
    if (s->policy.ops->on_group) s->policy.ops->on_group(s->policy.state, keys, k);
    /* Pin every resident key first: a miss below can never evict a key of its own group. */
    for (int j = 0; j < k; j++) {
        uint32_t i = s->map[keys[j]];
        if (i == NIL) continue;
        if (avail(s, i)) s->n_avail--;
        s->pins[i]++;
    }
    for (int j = 0; j < k; j++) {
        uint32_t key = keys[j], i = s->map[key];
        s->st.accesses++;
        if (i != NIL) {
            s->st.hits++;
            refs[j].slot = i;
            if (s->state[i] == MS_SLOT_LOADING) {
                s->st.hits_loading++;
                refs[j].outcome = MS_SLOT_HIT_LOADING;
            } else {
                refs[j].outcome = MS_SLOT_HIT;
            }
            if (s->prefetched[i]) {
                s->prefetched[i] = 0;
                s->st.prefetch_used++;
            }
            s->policy.ops->on_hit(s->policy.state, i, key);
            continue;
        }
        int refused = 0;
        i = take_slot(s, key, false, &refused);
        if (i == NIL)
            /* Cannot happen with a policy that honours its contract: n_avail said
             * a slot was eligible. Leave the group pinned so nothing is reused. */
            return ms_errf(err, EPROTO, "slots: policy %s found no victim although %u slots are eligible",
                           s->policy.ops->name, s->n_avail);
        s->n_avail--; /* free or READY+unpinned -> LOADING+pinned */
        s->st.misses++;
        s->map[key] = i;
        s->key[i] = key;
        s->state[i] = MS_SLOT_LOADING;
        s->pins[i] = 1;
        refs[j].slot = i;
        refs[j].outcome = MS_SLOT_MISS;
        s->policy.ops->on_insert(s->policy.state, i, key, false);
    }
    s->st.groups++;
    check_all(s);
    return (int)misses;
}

int ms_slots_ready(ms_slots *s, uint32_t slot)
{
    if (slot >= s->n_slots || s->state[slot] != MS_SLOT_LOADING) return -EINVAL;
    s->state[slot] = MS_SLOT_READY;
    if (s->pins[slot] == 0) s->n_avail++;
    check_all(s);
    return 0;
}

int ms_slots_fail(ms_slots *s, uint32_t slot)
{
    if (slot >= s->n_slots || s->state[slot] != MS_SLOT_LOADING) return -EINVAL;
    unmap(s, slot);
    s->state[slot] = MS_SLOT_EMPTY;
    s->st.failed++;
    if (s->pins[slot] == 0) {
        s->free_stack[s->n_free++] = slot;
        s->n_avail++;
    }
    check_all(s);
    return 0;
}

void ms_slots_release(ms_slots *s, const ms_slot_ref *refs, int k)
{
    for (int j = 0; j < k; j++) {
        uint32_t i = refs[j].slot;
        if (i >= s->n_slots || s->pins[i] == 0) continue;
        if (--s->pins[i] > 0) continue;
        if (s->state[i] == MS_SLOT_EMPTY) { /* failed while pinned */
            s->free_stack[s->n_free++] = i;
            s->n_avail++;
        } else if (s->state[i] == MS_SLOT_READY) {
            s->n_avail++;
        }
    }
    check_all(s);
}

int ms_slots_prefetch(ms_slots *s, uint32_t key, uint32_t *slot, ms_err *err)
{
    if (key >= s->n_keys) return ms_errf(err, EINVAL, "slots: prefetch key %u out of range", key);
    if (s->map[key] != NIL) {
        *slot = s->map[key];
        return 0;
    }
    int refused = 0;
    uint32_t i = take_slot(s, key, true, &refused);
    if (i == NIL) {
        s->st.prefetch_refused++;
        return -EBUSY;
    }
    s->n_avail--; /* -> LOADING */
    s->map[key] = i;
    s->key[i] = key;
    s->state[i] = MS_SLOT_LOADING;
    s->prefetched[i] = 1;
    s->st.prefetch_inserted++;
    s->policy.ops->on_insert(s->policy.state, i, key, true);
    *slot = i;
    return 1;
}

/* Advance the duplicate-detection generation (resetting marks on wrap). */
static uint32_t next_gen(ms_slots *s)
{
    if (++s->mark_gen == 0) {
        memset(s->mark, 0, (size_t)s->n_keys * sizeof *s->mark);
        s->mark_gen = 1;
    }
    return s->mark_gen;
}

int ms_slots_prefetch_set(ms_slots *s, const uint32_t *keys, int n, int64_t *slots, ms_err *err)
{
    for (int j = 0; j < n; j++)
        if (keys[j] >= s->n_keys) return ms_errf(err, EINVAL, "slots: prefetch key %u out of range", keys[j]);
    /* Protect the members already present with a temporary pin (once per key). */
    uint32_t gen = next_gen(s);
    for (int j = 0; j < n; j++) {
        uint32_t i = s->map[keys[j]];
        if (s->mark[keys[j]] == gen) continue;
        s->mark[keys[j]] = gen;
        if (i == NIL) continue;
        if (avail(s, i)) s->n_avail--;
        s->pins[i]++;
    }
    int inserted = 0;
    for (int j = 0; j < n; j++) {
        uint32_t slot;
        int rc = s->map[keys[j]] != NIL ? 0 : ms_slots_prefetch(s, keys[j], &slot, err);
        if (rc == 1) {
            inserted++;
            s->pins[slot]++; /* LOADING: protect it from the rest of the set too */
        }
        if (slots) slots[j] = rc >= 0 ? (int64_t)s->map[keys[j]] : -1;
    }
    /* Drop the temporary pins: every mapped member holds exactly one. */
    gen = next_gen(s);
    for (int j = 0; j < n; j++) {
        uint32_t i = s->map[keys[j]];
        if (s->mark[keys[j]] == gen || i == NIL) continue;
        s->mark[keys[j]] = gen;
        ms_slot_ref r = {.slot = i};
        ms_slots_release(s, &r, 1);
    }
    check_all(s);
    return inserted;
}

void ms_slots_tick(ms_slots *s)
{
    if (s->policy.ops->on_tick) s->policy.ops->on_tick(s->policy.state, s->st.tokens);
    s->st.tokens++;
}

int64_t ms_slots_lookup(const ms_slots *s, uint32_t key)
{
    if (key >= s->n_keys || s->map[key] == NIL) return -1;
    return s->map[key];
}

ms_slot_state ms_slots_state(const ms_slots *s, uint32_t slot)
{
    return slot < s->n_slots ? (ms_slot_state)s->state[slot] : MS_SLOT_EMPTY;
}

uint32_t ms_slots_pins(const ms_slots *s, uint32_t slot) { return slot < s->n_slots ? s->pins[slot] : 0; }

uint32_t ms_slots_key(const ms_slots *s, uint32_t slot) { return slot < s->n_slots ? s->key[slot] : NIL; }

uint32_t ms_slots_count(const ms_slots *s) { return s->n_slots; }

const ms_slots_stats *ms_slots_get_stats(const ms_slots *s) { return &s->st; }

int ms_slots_check(const ms_slots *s, ms_err *err)
{
#define FAIL(...) return ms_errf(err, EPROTO, "slots invariant: " __VA_ARGS__)
    uint32_t avail_n = 0, free_empty = 0;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        uint32_t k = s->key[i];
        if (s->state[i] > MS_SLOT_READY) FAIL("slot %u has state %u", i, s->state[i]);
        if ((k == NIL) != (s->state[i] == MS_SLOT_EMPTY)) FAIL("slot %u: key %u with state %u", i, k, s->state[i]);
        if (k != NIL && (k >= s->n_keys || s->map[k] != i)) FAIL("slot %u holds key %u, which maps elsewhere", i, k);
        if (s->prefetched[i] && k == NIL) FAIL("slot %u is marked prefetched but empty", i);
        if (s->pins[i] == 0 && s->state[i] != MS_SLOT_LOADING) avail_n++;
        if (s->pins[i] == 0 && s->state[i] == MS_SLOT_EMPTY) free_empty++;
    }
    for (uint32_t k = 0; k < s->n_keys; k++)
        if (s->map[k] != NIL && (s->map[k] >= s->n_slots || s->key[s->map[k]] != k))
            FAIL("key %u maps to slot %u, which does not hold it", k, s->map[k]);
    if (avail_n != s->n_avail) FAIL("n_avail %u, but %u slots are unpinned and not loading", s->n_avail, avail_n);
    if (free_empty != s->n_free) FAIL("%u slots on the free stack, but %u are empty and unpinned", s->n_free, free_empty);
    for (uint32_t j = 0; j < s->n_free; j++) {
        uint32_t i = s->free_stack[j];
        if (i >= s->n_slots || s->state[i] != MS_SLOT_EMPTY || s->pins[i]) FAIL("free stack entry %u is slot %u, not free", j, i);
    }
    const ms_slots_stats *st = &s->st;
    if (st->accesses != st->hits + st->misses)
        FAIL("accesses %llu != hits %llu + misses %llu", (unsigned long long)st->accesses,
             (unsigned long long)st->hits, (unsigned long long)st->misses);
    if (st->hits_loading > st->hits) FAIL("LOADING hits exceed hits");
    if (st->prefetch_used + st->prefetch_wasted > st->prefetch_inserted) FAIL("more prefetches used/wasted than inserted");
    if (st->evictions > st->misses + st->prefetch_inserted) FAIL("more evictions than insertions");
#undef FAIL
    return 0;
}

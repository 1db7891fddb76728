/* test_slots.c - the cache slot-table core (cache/slots.c): hand-computed hit
 * counts on classic paging sequences, the k-group constraint (misses of one group
 * never evict each other, N == k works, N < k is refused, -ENOSPC leaves the
 * state untouched), ready/fail/release life cycle, prefetch accounting (never
 * evicts pinned or loading slots, used/wasted counts) and determinism. */
#include <stdlib.h>
#include <string.h>

#include "ms_test.h"
#include "policy.h"
#include "slots.h"

static ms_slots *mk(uint32_t n_slots, uint32_t n_layers, uint32_t n_experts, uint32_t k, const char *policy)
{
    ms_slots_cfg cfg = {.n_slots = n_slots, .n_layers = n_layers, .n_experts = n_experts, .top_k = k,
                        .policy = policy ? ms_policy_find(policy) : NULL};
    ms_slots *s = NULL;
    ms_err err = {0};
    int rc = ms_slots_create(&cfg, &s, &err);
    if (rc < 0) fail_msg("create %s: %s", policy ? policy : "(default)", err.msg);
    return s;
}

/* Replay single-key accesses (top_k = 1, one layer) the way the runtime does;
 * returns hits. */
static uint64_t replay1(ms_slots *s, const uint32_t *seq, int n)
{
    ms_err err = {0};
    for (int i = 0; i < n; i++) {
        ms_slots_tick(s);
        ms_slot_ref r;
        int m = ms_slots_acquire(s, &seq[i], 1, &r, &err);
        assert_true(m >= 0);
        if (r.outcome == MS_SLOT_MISS) assert_int_equal(ms_slots_ready(s, r.slot), 0);
        ms_slots_release(s, &r, 1);
    }
    return ms_slots_get_stats(s)->hits;
}

/* The textbook sequence 1 2 3 4 1 2 5 1 2 3 4 5 with 3 frames: LRU faults 10
 * times (2 hits), OPT 7 times (5 hits). LFU (history kept for evicted pages,
 * ties to least recent) worked by hand: hits at the 8th and 9th access only. */
static const uint32_t classic[] = {1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5};

static void test_classic_lru_lfu(void **state)
{
    (void)state;
    ms_slots *s = mk(3, 1, 8, 1, "lru");
    assert_int_equal(replay1(s, classic, 12), 2);
    const ms_slots_stats *st = ms_slots_get_stats(s);
    assert_int_equal(st->misses, 10);
    assert_int_equal(st->evictions, 7);
    assert_int_equal(st->accesses, 12);
    ms_slots_destroy(s);
    s = mk(3, 1, 8, 1, "lfu");
    assert_int_equal(replay1(s, classic, 12), 2);
    /* final content of hand-run LFU: {1, 2, 5} */
    assert_true(ms_slots_lookup(s, 1) >= 0 && ms_slots_lookup(s, 2) >= 0 && ms_slots_lookup(s, 5) >= 0);
    assert_true(ms_slots_lookup(s, 3) < 0 && ms_slots_lookup(s, 4) < 0);
    ms_slots_destroy(s);
    /* LRU with 4 frames: 8 faults (Belady's anomaly sequence, LRU has none). */
    s = mk(4, 1, 8, 1, "lru");
    assert_int_equal(replay1(s, classic, 12), 4);
    ms_slots_destroy(s);
}

static void test_classic_belady(void **state)
{
    (void)state;
    ms_slots *s = mk(3, 1, 8, 1, "belady");
    ms_policy *p = ms_slots_policy(s);
    ms_err err = {0};
    assert_int_equal(p->ops->set_future(p->state, classic, 12, &err), 0);
    assert_int_equal(replay1(s, classic, 12), 5);
    ms_slots_destroy(s);
}

/* Per-layer LRU partitions: 2 layers x 4 experts, 4 slots -> 2 per layer. Layer 0
 * cycles 0,1,2 (always misses in 2 slots under LRU); layer 1 repeats expert 0
 * (always hits after the first). A global LRU would let layer 0 steal. */
static void test_lru_layer_partition(void **state)
{
    (void)state;
    ms_slots *s = mk(4, 2, 4, 1, "lru-layer");
    ms_err err = {0};
    uint64_t hits_l1 = 0;
    for (int t = 0; t < 30; t++) {
        uint32_t k0 = (uint32_t)(t % 3), k1 = 4 + 0;
        ms_slot_ref r;
        ms_slots_tick(s);
        assert_true(ms_slots_acquire(s, &k0, 1, &r, &err) >= 0);
        if (r.outcome == MS_SLOT_MISS) ms_slots_ready(s, r.slot);
        ms_slots_release(s, &r, 1);
        assert_true(ms_slots_acquire(s, &k1, 1, &r, &err) >= 0);
        if (r.outcome == MS_SLOT_MISS) ms_slots_ready(s, r.slot);
        else hits_l1++;
        ms_slots_release(s, &r, 1);
    }
    assert_int_equal(hits_l1, 29);
    assert_int_equal(ms_slots_get_stats(s)->hits, 29); /* layer 0 never hits: cycle of 3 in 2 slots */
    ms_slots_destroy(s);
}

static uint32_t rng_next(uint64_t *x)
{
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*x >> 33);
}

/* Random groups through every (online) policy: after each acquire the k keys are
 * mapped to k distinct slots that hold them, all pinned; after release unpinned. */
static void test_group_constraint_all_policies(void **state)
{
    (void)state;
    const uint32_t L = 4, E = 16, K = 4;
    for (size_t pi = 0; pi < ms_policy_count(); pi++) {
        const ms_policy_ops *ops = ms_policy_at(pi);
        if (ops->flags & (MS_POLICY_NEEDS_FUTURE | MS_POLICY_NEEDS_PROFILE)) continue;
        for (uint32_t n_slots = K; n_slots <= 24; n_slots += 5) {
            ms_slots *s = mk(n_slots, L, E, K, ops->name);
            uint64_t x = 42 + n_slots;
            ms_err err = {0};
            for (int t = 0; t < 300; t++) {
                ms_slots_tick(s);
                for (uint32_t l = 0; l < L; l++) {
                    uint32_t keys[K];
                    ms_slot_ref refs[K];
                    for (uint32_t j = 0; j < K; j++) {
                    again:
                        keys[j] = l * E + rng_next(&x) % (j < 2 ? 5 : E); /* skewed */
                        for (uint32_t q = 0; q < j; q++)
                            if (keys[q] == keys[j]) goto again;
                    }
                    int m = ms_slots_acquire(s, keys, K, refs, &err);
                    if (m < 0) fail_msg("%s slots %u: %s", ops->name, n_slots, err.msg);
                    for (uint32_t j = 0; j < K; j++) {
                        assert_int_equal(ms_slots_key(s, refs[j].slot), keys[j]);
                        assert_true(ms_slots_pins(s, refs[j].slot) >= 1);
                        for (uint32_t q = 0; q < j; q++) assert_int_not_equal(refs[q].slot, refs[j].slot);
                        if (refs[j].outcome == MS_SLOT_MISS) {
                            assert_int_equal(ms_slots_state(s, refs[j].slot), MS_SLOT_LOADING);
                            ms_slots_ready(s, refs[j].slot);
                        }
                    }
                    ms_slots_release(s, refs, K);
                    for (uint32_t j = 0; j < K; j++) assert_int_equal(ms_slots_pins(s, refs[j].slot), 0);
                }
            }
            const ms_slots_stats *st = ms_slots_get_stats(s);
            assert_int_equal(st->hits + st->misses, st->accesses);
            assert_int_equal(st->accesses, 300ull * L * K);
            /* free slots are used before anything is evicted, and once full every
             * miss evicts (N == k included: each new group replaces the cache) */
            assert_true(st->misses > n_slots);
            assert_int_equal(st->evictions, st->misses - n_slots);
            ms_slots_destroy(s);
        }
    }
}

static void test_too_few_slots(void **state)
{
    (void)state;
    ms_slots_cfg cfg = {.n_slots = 3, .n_layers = 2, .n_experts = 8, .top_k = 4};
    ms_slots *s = NULL;
    ms_err err = {0};
    assert_int_equal(ms_slots_create(&cfg, &s, &err), -EINVAL);
    assert_null(s);
    assert_non_null(strstr(err.msg, "3 slots"));
    /* N == k: every new group replaces the whole cache. */
    s = mk(4, 2, 8, 4, "lru");
    uint32_t g0[4] = {0, 1, 2, 3}, g1[4] = {8, 9, 10, 11};
    ms_slot_ref r[4];
    ms_err_clear(&err);
    assert_int_equal(ms_slots_acquire(s, g0, 4, r, &err), 4);
    for (int j = 0; j < 4; j++) ms_slots_ready(s, r[j].slot);
    /* While g0 is pinned a disjoint group cannot get slots: -ENOSPC, nothing changes. */
    ms_slots_stats before = *ms_slots_get_stats(s);
    ms_slot_ref r1[4];
    assert_int_equal(ms_slots_acquire(s, g1, 4, r1, &err), -ENOSPC);
    assert_memory_equal(&before, ms_slots_get_stats(s), sizeof before);
    for (int j = 0; j < 4; j++) {
        assert_int_equal(ms_slots_lookup(s, g0[j]), r[j].slot);
        assert_int_equal(ms_slots_pins(s, r[j].slot), 1);
        assert_int_equal(ms_slots_lookup(s, g1[j]), -1);
    }
    ms_slots_release(s, r, 4);
    ms_err_clear(&err);
    assert_int_equal(ms_slots_acquire(s, g1, 4, r1, &err), 4);
    assert_int_equal(ms_slots_get_stats(s)->evictions, 4);
    /* k > n_slots in one group */
    uint32_t big[5] = {0, 1, 2, 3, 4};
    ms_slot_ref rb[5];
    ms_slots_release(s, r1, 4);
    for (int j = 0; j < 4; j++) ms_slots_ready(s, r1[j].slot);
    assert_int_equal(ms_slots_acquire(s, big, 5, rb, &err), -ENOSPC);
    /* bad keys */
    uint32_t bad[2] = {3, 16};
    ms_err_clear(&err);
    assert_int_equal(ms_slots_acquire(s, bad, 2, rb, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "out of range"));
    uint32_t dup[2] = {3, 3};
    ms_err_clear(&err);
    assert_int_equal(ms_slots_acquire(s, dup, 2, rb, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
    ms_slots_destroy(s);
}

/* A miss inside a group may not evict a key of the same group even when that key
 * is the policy's favourite victim (LRU: the oldest). */
static void test_group_keys_protected(void **state)
{
    (void)state;
    ms_slots *s = mk(3, 1, 8, 2, "lru");
    ms_err err = {0};
    ms_slot_ref r[2];
    uint32_t a[2] = {0, 1}, b[2] = {2, 3}, c[2] = {0, 4};
    assert_int_equal(ms_slots_acquire(s, a, 2, r, &err), 2); /* 0,1 */
    ms_slots_ready(s, r[0].slot), ms_slots_ready(s, r[1].slot), ms_slots_release(s, r, 2);
    assert_int_equal(ms_slots_acquire(s, b, 2, r, &err), 2); /* 2 free, then evicts LRU 0 */
    ms_slots_ready(s, r[0].slot), ms_slots_ready(s, r[1].slot), ms_slots_release(s, r, 2);
    assert_int_equal(ms_slots_lookup(s, 0), -1);
    /* now LRU order: 1 (oldest), 2, 3. Group {0, 4}: both miss, evict 1 then 2. */
    assert_int_equal(ms_slots_acquire(s, c, 2, r, &err), 2);
    assert_true(ms_slots_lookup(s, 3) >= 0);
    assert_int_equal(ms_slots_lookup(s, 1), -1);
    assert_int_equal(ms_slots_lookup(s, 2), -1);
    ms_slots_release(s, r, 2);
    /* group {3, 5}: 3 hits and is pinned first, so 5 evicts the LRU among the rest
     * (0 or 4, whichever is older: 0) and never 3 even if 3 were oldest. */
    ms_slots_ready(s, r[0].slot), ms_slots_ready(s, r[1].slot);
    uint32_t d[2] = {5, 3};
    assert_int_equal(ms_slots_acquire(s, d, 2, r, &err), 1);
    assert_int_equal(r[1].outcome, MS_SLOT_HIT);
    assert_int_equal(ms_slots_lookup(s, 0), -1);
    ms_slots_destroy(s);
}

static void test_fail_and_release(void **state)
{
    (void)state;
    ms_slots *s = mk(2, 1, 8, 1, "lru");
    ms_err err = {0};
    ms_slot_ref r;
    uint32_t k = 5;
    assert_int_equal(ms_slots_acquire(s, &k, 1, &r, &err), 1);
    assert_int_equal(ms_slots_fail(s, r.slot), 0);
    assert_int_equal(ms_slots_lookup(s, 5), -1);
    assert_int_equal(ms_slots_state(s, r.slot), MS_SLOT_EMPTY);
    assert_int_equal(ms_slots_fail(s, r.slot), -EINVAL);  /* not loading any more */
    assert_int_equal(ms_slots_ready(s, r.slot), -EINVAL);
    ms_slots_release(s, &r, 1);
    assert_int_equal(ms_slots_get_stats(s)->failed, 1);
    /* the slot is free again: two new keys fit without eviction */
    uint32_t g[2] = {1, 2};
    ms_slot_ref rr[2];
    ms_slots_destroy(s);
    s = mk(2, 1, 8, 2, "lru");
    assert_int_equal(ms_slots_acquire(s, &k, 1, &r, &err), 1);
    ms_slots_fail(s, r.slot);
    ms_slots_release(s, &r, 1);
    assert_int_equal(ms_slots_acquire(s, g, 2, rr, &err), 2);
    assert_int_equal(ms_slots_get_stats(s)->evictions, 0);
    /* a key found LOADING (another group's read in flight) is a LOADING hit */
    ms_slot_ref r2;
    uint32_t k1 = 1;
    assert_int_equal(ms_slots_acquire(s, &k1, 1, &r2, &err), 0);
    assert_int_equal(r2.outcome, MS_SLOT_HIT_LOADING);
    assert_int_equal(ms_slots_get_stats(s)->hits_loading, 1);
    assert_int_equal(ms_slots_pins(s, r2.slot), 2);
    ms_slots_destroy(s);
}

static void test_prefetch(void **state)
{
    (void)state;
    ms_slots *s = mk(3, 2, 8, 2, "lru");
    ms_err err = {0};
    uint32_t slot, slot2;
    assert_int_equal(ms_slots_prefetch(s, 9, &slot, &err), 1);
    assert_int_equal(ms_slots_state(s, slot), MS_SLOT_LOADING);
    assert_int_equal(ms_slots_pins(s, slot), 0);
    assert_int_equal(ms_slots_prefetch(s, 9, &slot2, &err), 0); /* already there */
    assert_int_equal(slot2, slot);
    /* pin the two other slots with a group: the loading prefetch is no victim */
    uint32_t g[2] = {0, 1};
    ms_slot_ref r[2];
    assert_int_equal(ms_slots_acquire(s, g, 2, r, &err), 2);
    assert_int_equal(ms_slots_prefetch(s, 10, &slot2, &err), -EBUSY);
    assert_int_equal(ms_slots_get_stats(s)->prefetch_refused, 1);
    ms_slots_ready(s, slot);
    assert_int_equal(ms_slots_prefetch(s, 10, &slot2, &err), 1); /* evicts the ready, unpinned prefetch */
    assert_int_equal(slot2, slot);
    assert_int_equal(ms_slots_get_stats(s)->prefetch_wasted, 1);
    ms_slots_ready(s, slot2);
    ms_slots_ready(s, r[0].slot), ms_slots_ready(s, r[1].slot);
    ms_slots_release(s, r, 2);
    uint32_t h[2] = {10, 11};
    assert_int_equal(ms_slots_acquire(s, h, 2, r, &err), 1);
    assert_int_equal(r[0].outcome, MS_SLOT_HIT);
    const ms_slots_stats *st = ms_slots_get_stats(s);
    assert_int_equal(st->prefetch_inserted, 2);
    assert_int_equal(st->prefetch_used, 1);
    assert_int_equal(st->prefetch_wasted, 1);
    assert_int_equal(st->hits, 1);
    assert_int_equal(ms_slots_prefetch(s, 99, &slot, &err), -EINVAL);
    ms_slots_destroy(s);
}

/* A predicted set never evicts its own members, even the policy's favourite victim. */
static void test_prefetch_set(void **state)
{
    (void)state;
    ms_slots *s = mk(3, 1, 8, 1, "lru");
    ms_err err = {0};
    uint32_t seq[3] = {0, 1, 2};
    replay1(s, seq, 3); /* LRU order: 0 (oldest), 1, 2 */
    uint32_t set[3] = {0, 5, 0};
    int64_t slots[3];
    assert_int_equal(ms_slots_prefetch_set(s, set, 3, slots, &err), 1);
    assert_true(slots[0] >= 0 && slots[1] >= 0 && slots[2] == slots[0]);
    assert_int_equal(ms_slots_lookup(s, 0), slots[0]); /* kept although it was the LRU */
    assert_int_equal(ms_slots_lookup(s, 1), -1);       /* the next one went */
    assert_int_equal(ms_slots_state(s, (uint32_t)slots[1]), MS_SLOT_LOADING);
    for (uint32_t i = 0; i < 3; i++) assert_int_equal(ms_slots_pins(s, i), 0); /* temporary pins dropped */
    /* all other slots pinned or loading: the rest of a set is refused, not forced */
    uint32_t g = 2;
    ms_slot_ref r;
    assert_int_equal(ms_slots_acquire(s, &g, 1, &r, &err), 0);
    uint32_t set2[2] = {0, 6};
    assert_int_equal(ms_slots_prefetch_set(s, set2, 2, slots, &err), 0);
    assert_true(slots[0] >= 0);
    assert_int_equal(slots[1], -1);
    uint32_t bad = 8;
    assert_int_equal(ms_slots_prefetch_set(s, &bad, 1, NULL, &err), -EINVAL);
    ms_slots_destroy(s);
}

/* Random interleavings of acquire / ready / fail / release / prefetch / tick with
 * several groups in flight, for every online policy: the map and the slots agree,
 * pins match the outstanding groups, no pinned or loading slot is ever evicted
 * (a held slot keeps its key), and the counters add up. Run under ASan in CI. */
static void test_random_ops_invariants(void **state)
{
    (void)state;
    enum { L = 3, E = 8, K = 2, N = 7, MAXG = 3 };
    for (size_t pi = 0; pi < ms_policy_count(); pi++) {
        const ms_policy_ops *ops = ms_policy_at(pi);
        if (ops->flags & (MS_POLICY_NEEDS_FUTURE | MS_POLICY_NEEDS_PROFILE)) continue;
        ms_slots *s = mk(N, L, E, K, ops->name);
        ms_err err = {0};
        uint64_t x = 99;
        struct { uint32_t keys[K]; ms_slot_ref refs[K]; bool live; } g[MAXG] = {0};
        uint32_t expect_pins[N] = {0};
        for (int step = 0; step < 4000; step++) {
            uint32_t op = rng_next(&x) % 10, gi = rng_next(&x) % MAXG;
            if (op < 4 && !g[gi].live) { /* acquire */
                uint32_t l = rng_next(&x) % L;
                g[gi].keys[0] = l * E + rng_next(&x) % E;
                do g[gi].keys[1] = l * E + rng_next(&x) % E; while (g[gi].keys[1] == g[gi].keys[0]);
                ms_err_clear(&err);
                int m = ms_slots_acquire(s, g[gi].keys, K, g[gi].refs, &err);
                if (m == -ENOSPC) continue;
                if (m < 0) fail_msg("%s step %d: acquire %d: %s", ops->name, step, m, err.msg);
                g[gi].live = true;
                for (int j = 0; j < K; j++) expect_pins[g[gi].refs[j].slot]++;
            } else if (op < 6 && g[gi].live) { /* complete loads (some fail), then release */
                for (int j = 0; j < K; j++) {
                    uint32_t sl = g[gi].refs[j].slot;
                    if (ms_slots_state(s, sl) == MS_SLOT_LOADING) {
                        if (rng_next(&x) % 8 == 0) assert_int_equal(ms_slots_fail(s, sl), 0);
                        else assert_int_equal(ms_slots_ready(s, sl), 0);
                    }
                }
                ms_slots_release(s, g[gi].refs, K);
                for (int j = 0; j < K; j++) expect_pins[g[gi].refs[j].slot]--;
                g[gi].live = false;
            } else if (op < 7) { /* prefetch, sometimes completing it */
                uint32_t sl, key = rng_next(&x) % (L * E);
                int rc = ms_slots_prefetch(s, key, &sl, &err);
                assert_true(rc == 0 || rc == 1 || rc == -EBUSY);
                if (rc == 1 && rng_next(&x) % 4) ms_slots_ready(s, sl);
            } else if (op < 8) { /* prefetch a predicted set of one layer */
                uint32_t l = rng_next(&x) % L, set[3];
                int64_t sl[3];
                for (int j = 0; j < 3; j++) set[j] = l * E + rng_next(&x) % E;
                int rc = ms_slots_prefetch_set(s, set, 3, sl, &err);
                assert_true(rc >= 0 && rc <= 3);
                for (int j = 0; j < 3; j++)
                    if (sl[j] >= 0) assert_int_equal(ms_slots_key(s, (uint32_t)sl[j]), set[j]);
            } else if (op == 8) {
                ms_slots_tick(s);
            } else { /* finish every loading prefetch nobody holds */
                for (uint32_t i = 0; i < N; i++)
                    if (ms_slots_state(s, i) == MS_SLOT_LOADING && expect_pins[i] == 0) ms_slots_ready(s, i);
            }
            /* invariants */
            uint32_t mapped = 0;
            for (uint32_t key = 0; key < L * E; key++) {
                int64_t sl = ms_slots_lookup(s, key);
                if (sl < 0) continue;
                mapped++;
                assert_int_equal(ms_slots_key(s, (uint32_t)sl), key);
                assert_int_not_equal(ms_slots_state(s, (uint32_t)sl), MS_SLOT_EMPTY);
            }
            uint32_t nonempty = 0;
            for (uint32_t i = 0; i < N; i++) {
                nonempty += ms_slots_state(s, i) != MS_SLOT_EMPTY;
                assert_int_equal(ms_slots_pins(s, i), expect_pins[i]);
            }
            assert_int_equal(mapped, nonempty);
            for (int q = 0; q < MAXG; q++)
                if (g[q].live)
                    for (int j = 0; j < K; j++) {
                        uint32_t sl = g[q].refs[j].slot;
                        /* a held slot keeps its key unless its load failed */
                        if (ms_slots_state(s, sl) != MS_SLOT_EMPTY) assert_int_equal(ms_slots_key(s, sl), g[q].keys[j]);
                    }
            const ms_slots_stats *st = ms_slots_get_stats(s);
            assert_int_equal(st->hits + st->misses, st->accesses);
            assert_true(st->prefetch_used + st->prefetch_wasted <= st->prefetch_inserted);
        }
        ms_slots_destroy(s);
    }
}

static void test_deterministic(void **state)
{
    (void)state;
    uint32_t seq[500];
    uint64_t x = 7;
    for (int i = 0; i < 500; i++) seq[i] = rng_next(&x) % 3 ? rng_next(&x) % 6 : rng_next(&x) % 32;
    for (size_t pi = 0; pi < ms_policy_count(); pi++) {
        const ms_policy_ops *ops = ms_policy_at(pi);
        if (ops->flags & (MS_POLICY_NEEDS_FUTURE | MS_POLICY_NEEDS_PROFILE)) continue;
        ms_slots *a = mk(8, 1, 32, 1, ops->name), *b = mk(8, 1, 32, 1, ops->name);
        replay1(a, seq, 500);
        replay1(b, seq, 500);
        assert_memory_equal(ms_slots_get_stats(a), ms_slots_get_stats(b), sizeof(ms_slots_stats));
        for (uint32_t i = 0; i < 8; i++) assert_int_equal(ms_slots_key(a, i), ms_slots_key(b, i));
        ms_slots_destroy(a);
        ms_slots_destroy(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classic_lru_lfu),
        cmocka_unit_test(test_classic_belady),
        cmocka_unit_test(test_lru_layer_partition),
        cmocka_unit_test(test_group_constraint_all_policies),
        cmocka_unit_test(test_too_few_slots),
        cmocka_unit_test(test_group_keys_protected),
        cmocka_unit_test(test_fail_and_release),
        cmocka_unit_test(test_prefetch),
        cmocka_unit_test(test_prefetch_set),
        cmocka_unit_test(test_random_ops_invariants),
        cmocka_unit_test(test_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

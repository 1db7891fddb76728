/* lfu.c - frequency policies. Both keep history for every key of the key space
 * (dense arrays, n_layers * n_experts entries), so an expert that was evicted
 * and comes back keeps its count: this "perfect LFU" is what the reference
 * table of the traces README measures. The victim is the resident eligible slot
 * with the smallest (score, last use): a min-heap over slots, O(log n) per op.
 *
 * lfu:       score = access count. Aging: every `period` tokens (option
 *            period=, default 1024 * n_experts / top_k tokens, i.e. each expert
 *            of a layer expected ~1024 times; 0 disables) all counts are halved,
 *            so in a long-running session popularity that has gone stale fades
 *            instead of pinning the cache forever. On short traces this is the
 *            plain (perfect) LFU of the reference tables.
 * lfu-decay: score = sum over past accesses of 2^(-(now - t_i) / H), an
 *            exponentially decayed frequency (LRFU family) with half-life H tokens
 *            (option hl=, default see below), ties to the least recent. It behaves
 *            like LFU over ~H tokens and like LRU for H -> 0. Implemented with
 *            growing weights 2^(t/H) (the ordering of decayed scores is that of
 *            the undecayed sums) and a renormalisation far before overflow.
 * pin:       lfu-decay plus pins learned from a previous trace of the same model
 *            (a profile, see profile.h): the frac= (default 0.5) x n_slots most
 *            popular (layer, expert) keys of the profile are protected: once
 *            loaded they are victims only when no unprotected slot is eligible.
 *            Protected slots live in a second heap. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "policies_all.h"
#include "profile.h"
#include "policy_util.h"

typedef struct lfu_state {
    uint32_t n_keys, n_slots;
    bool decay;
    double *score;     /* [n_keys] count (lfu) or sum of 2^((t_i - base)/H) (lfu-decay) */
    uint32_t *key_of;  /* [n_slots] resident key */
    ms_iheap heap;     /* resident slots by (score, last use) */
    uint64_t clock;    /* accesses so far (tie-break stamp) */
    uint64_t token;    /* current token */
    /* lfu aging */
    uint64_t period, next_age;
    /* lfu-decay */
    double half_life, base, weight; /* weight = 2^((token - base)/H) */
    /* pin */
    uint8_t *protect;  /* [n_keys] or NULL */
    ms_iheap pheap;    /* resident protected slots */
} lfu_state;

static void lfu_destroy(void *st)
{
    lfu_state *s = st;
    if (!s) return;
    free(s->score);
    free(s->key_of);
    free(s->protect);
    ms_iheap_free(&s->heap);
    if (s->pheap.heap) ms_iheap_free(&s->pheap);
    free(s);
}

static int lfu_create_common(const ms_policy_params *p, bool decay, void **out, ms_err *err)
{
    const char *name = decay ? "lfu-decay" : "lfu";
    lfu_state *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "%s: out of memory", name);
    s->n_keys = p->n_layers * p->n_experts;
    s->n_slots = p->n_slots;
    s->decay = decay;
    s->score = calloc(s->n_keys, sizeof *s->score);
    s->key_of = calloc(p->n_slots, sizeof *s->key_of);
    if (!s->score || !s->key_of || ms_iheap_init(&s->heap, p->n_slots) < 0) {
        lfu_destroy(s);
        return ms_errf(err, ENOMEM, "%s: out of memory", name);
    }
    if (decay) {
        /* Default half-life: 2 x the number of tokens it takes to touch as many
         * (layer, expert) pairs as the cache holds, at least 16 tokens. */
        double turnover = (double)p->n_slots / ((double)p->n_layers * p->top_k);
        double hl = ms_policy_opt(p, "hl", fmax(16.0, 2.0 * turnover));
        if (!(hl > 0) || hl > 1e9) {
            lfu_destroy(s);
            return ms_errf(err, EINVAL, "lfu-decay: hl must be in (0, 1e9] tokens, got %g", hl);
        }
        s->half_life = hl;
        s->weight = 1.0;
    } else {
        double per = ms_policy_opt(p, "period", 1024.0 * p->n_experts / p->top_k);
        if (per < 0 || per > 1e15) {
            lfu_destroy(s);
            return ms_errf(err, EINVAL, "lfu: period must be in [0, 1e15] tokens, got %g", per);
        }
        s->period = (uint64_t)llround(per);
        s->next_age = s->period;
    }
    *out = s;
    return 0;
}

static int lfu_create(const ms_policy_params *p, void **out, ms_err *err) { return lfu_create_common(p, false, out, err); }
static int lfud_create(const ms_policy_params *p, void **out, ms_err *err) { return lfu_create_common(p, true, out, err); }

static void resync(lfu_state *s, ms_iheap *h)
{
    for (uint32_t i = 0; i < h->n; i++) {
        uint32_t slot = h->heap[i];
        h->score[slot] = s->score[s->key_of[slot]];
    }
    ms_iheap_rebuild(h);
}

static void lfu_resync_heap(lfu_state *s)
{
    resync(s, &s->heap);
    if (s->protect) resync(s, &s->pheap);
}

static inline ms_iheap *heap_of(lfu_state *s, uint32_t key)
{
    return s->protect && s->protect[key] ? &s->pheap : &s->heap;
}

static void lfu_on_tick(void *st, uint64_t token)
{
    lfu_state *s = st;
    s->token = token;
    if (s->decay) {
        double e = ((double)token - s->base) / s->half_life;
        if (e > 512) {
            /* Renormalise: divide every score by 2^e (order preserved). */
            double f = exp2(-e);
            for (uint32_t k = 0; k < s->n_keys; k++) s->score[k] *= f;
            s->base = (double)token;
            e = 0;
            lfu_resync_heap(s);
        }
        s->weight = exp2(e);
    } else if (s->period && token >= s->next_age) {
        for (uint32_t k = 0; k < s->n_keys; k++) s->score[k] = floor(s->score[k] / 2);
        s->next_age = token + s->period;
        lfu_resync_heap(s);
    }
}

static inline void lfu_touch(lfu_state *s, uint32_t slot, uint32_t key, bool access)
{
    if (access) {
        s->score[key] += s->decay ? s->weight : 1.0;
        s->clock++;
    }
    s->key_of[slot] = key;
    ms_iheap_set(heap_of(s, key), slot, s->score[key], s->clock);
}

static void lfu_on_hit(void *st, uint32_t slot, uint32_t key) { lfu_touch(st, slot, key, true); }

static void lfu_on_insert(void *st, uint32_t slot, uint32_t key, bool prefetch) { lfu_touch(st, slot, key, !prefetch); }

static void lfu_on_evict(void *st, uint32_t slot, uint32_t key)
{
    lfu_state *s = st;
    ms_iheap_remove(heap_of(s, key), slot);
}

static int64_t lfu_victim(void *st, uint32_t key, uint32_t n_empty, ms_policy_eligible_fn ok, const void *ctx)
{
    lfu_state *s = st;
    uint32_t v = ms_iheap_min_eligible(&s->heap, ok, ctx);
    if (v == MS_NIL && s->protect) v = ms_iheap_min_eligible(&s->pheap, ok, ctx);
    return v == MS_NIL ? -1 : (int64_t)v;
}

/* Prefetch admission: only replace a resident expert that is colder. */
static bool lfu_admit(void *st, uint32_t key, uint32_t victim_key)
{
    lfu_state *s = st;
    if (victim_key == UINT32_MAX) return true;
    return s->score[key] > s->score[victim_key];
}

/* pin: lfu-decay + protected keys from a profile. */
static int pin_create(const ms_policy_params *p, void **out, ms_err *err)
{
    double frac = ms_policy_opt(p, "frac", 0.5);
    if (!(frac >= 0 && frac <= 1)) return ms_errf(err, EINVAL, "pin: frac must be in [0,1]");
    ms_profile prof;
    int rc = ms_profile_load(p->profile_path, &prof, err);
    if (rc < 0) return rc;
    if (prof.n_layers != p->n_layers || prof.n_experts != p->n_experts) {
        ms_errf(err, EINVAL, "%s: profile is for %u layers x %u experts, the cache for %u x %u", p->profile_path,
                prof.n_layers, prof.n_experts, p->n_layers, p->n_experts);
        ms_profile_free(&prof);
        return -EINVAL;
    }
    rc = lfu_create_common(p, true, out, err);
    if (rc < 0) {
        ms_profile_free(&prof);
        return rc;
    }
    lfu_state *s = *out;
    uint32_t n_keys = s->n_keys;
    uint32_t *order = malloc((size_t)n_keys * sizeof *order);
    s->protect = calloc(n_keys, 1);
    if (!order || !s->protect || ms_iheap_init(&s->pheap, p->n_slots) < 0) {
        free(order);
        ms_profile_free(&prof);
        lfu_destroy(s);
        *out = NULL;
        return ms_errf(err, ENOMEM, "pin: out of memory");
    }
    /* Top n keys by count (ties: lower key), by partial selection sort over a
     * counting pass: n_keys is small (<= a few 10^5). */
    for (uint32_t k = 0; k < n_keys; k++) order[k] = k;
    const uint64_t *cnt = prof.count;
    uint32_t want = (uint32_t)(frac * p->n_slots);
    if (want > n_keys) want = n_keys;
    /* heap-select would be O(n log k); a simple sort keeps this obviously right. */
    for (uint32_t gap = n_keys / 2; gap > 0; gap /= 2) /* shell sort, descending count */
        for (uint32_t i = gap; i < n_keys; i++) {
            uint32_t x = order[i], j = i;
            while (j >= gap && (cnt[order[j - gap]] < cnt[x] || (cnt[order[j - gap]] == cnt[x] && order[j - gap] > x))) {
                order[j] = order[j - gap];
                j -= gap;
            }
            order[j] = x;
        }
    for (uint32_t i = 0; i < want; i++)
        if (cnt[order[i]] > 0) s->protect[order[i]] = 1;
    free(order);
    ms_profile_free(&prof);
    return 0;
}

static const char *const lfu_opts[] = {"period", NULL};
static const char *const pin_opts[] = {"hl", "frac", NULL};
static const char *const lfud_opts[] = {"hl", NULL};

const ms_policy_ops ms_policy_lfu = {
    .name = "lfu",
    .version = MS_POLICY_API_VERSION,
    .summary = "least frequently used, counts kept for evicted experts, halved every period tokens",
    .opt_names = lfu_opts,
    .create = lfu_create,
    .destroy = lfu_destroy,
    .on_hit = lfu_on_hit,
    .on_insert = lfu_on_insert,
    .on_evict = lfu_on_evict,
    .victim = lfu_victim,
    .admit = lfu_admit,
    .on_tick = lfu_on_tick,
};

const ms_policy_ops ms_policy_lfu_decay = {
    .name = "lfu-decay",
    .version = MS_POLICY_API_VERSION,
    .summary = "exponentially decayed frequency (half-life hl tokens), ties to least recent",
    .opt_names = lfud_opts,
    .create = lfud_create,
    .destroy = lfu_destroy,
    .on_hit = lfu_on_hit,
    .on_insert = lfu_on_insert,
    .on_evict = lfu_on_evict,
    .victim = lfu_victim,
    .admit = lfu_admit,
    .on_tick = lfu_on_tick,
};

const ms_policy_ops ms_policy_pin = {
    .name = "pin",
    .version = MS_POLICY_API_VERSION,
    .flags = MS_POLICY_NEEDS_PROFILE,
    .summary = "lfu-decay + the most popular experts of a profile (previous trace) protected",
    .opt_names = pin_opts,
    .create = pin_create,
    .destroy = lfu_destroy,
    .on_hit = lfu_on_hit,
    .on_insert = lfu_on_insert,
    .on_evict = lfu_on_evict,
    .victim = lfu_victim,
    .admit = lfu_admit,
    .on_tick = lfu_on_tick,
};

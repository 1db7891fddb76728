/* lru.c - recency policies.
 *
 * lru:       one global recency list of resident slots; the victim is the least
 *            recently used eligible slot. O(1) per op (victim skips pinned slots
 *            near the tail, of which there are at most a group's worth).
 * lru-layer: the capacity is partitioned equally between the MoE layers (quota
 *            n_slots / n_layers, the remainder to the first layers) and each layer
 *            keeps its own recency list. A miss of layer l evicts layer l's LRU
 *            when l holds its quota; otherwise (the cache is full because other
 *            layers are over quota, e.g. while it fills) it takes the least
 *            recently used slot among over-quota layers, and as a last resort the
 *            globally least recent eligible slot. O(n_layers) per victim.
 * Both are the textbook baselines the better policies are measured against. */
#include <errno.h>
#include <stdlib.h>

#include "policies_all.h"
#include "policy_util.h"

/* ---------------- lru ---------------- */

typedef struct lru_state {
    ms_ilinks links; /* [n_slots] */
    ms_ilist list;
} lru_state;

static int lru_create(const ms_policy_params *p, void **out, ms_err *err)
{
    lru_state *s = calloc(1, sizeof *s);
    if (!s || ms_ilinks_init(&s->links, p->n_slots) < 0) {
        free(s);
        return ms_errf(err, ENOMEM, "lru: out of memory");
    }
    ms_ilist_init(&s->list);
    *out = s;
    return 0;
}

static void lru_destroy(void *st)
{
    lru_state *s = st;
    if (!s) return;
    ms_ilinks_free(&s->links);
    free(s);
}

static void lru_on_hit(void *st, uint32_t slot, uint32_t key)
{
    lru_state *s = st;
    ms_ilist_move_head(&s->list, &s->links, slot);
}

static void lru_on_insert(void *st, uint32_t slot, uint32_t key, bool prefetch)
{
    lru_state *s = st;
    ms_ilist_push_head(&s->list, &s->links, slot);
}

static void lru_on_evict(void *st, uint32_t slot, uint32_t key)
{
    lru_state *s = st;
    ms_ilist_unlink(&s->list, &s->links, slot);
}

static int64_t lru_victim(void *st, uint32_t key, uint32_t n_empty, ms_policy_eligible_fn ok, const void *ctx)
{
    lru_state *s = st;
    uint32_t v = ms_ilist_last_eligible(&s->list, &s->links, ok, ctx);
    return v == MS_NIL ? -1 : (int64_t)v;
}

const ms_policy_ops ms_policy_lru = {
    .name = "lru",
    .version = MS_POLICY_API_VERSION,
    .summary = "least recently used (global)",
    .create = lru_create,
    .destroy = lru_destroy,
    .on_hit = lru_on_hit,
    .on_insert = lru_on_insert,
    .on_evict = lru_on_evict,
    .victim = lru_victim,
};

/* ---------------- lru-layer ---------------- */

typedef struct lrul_state {
    uint32_t n_layers, n_experts;
    ms_ilinks links;   /* [n_slots] */
    ms_ilist *lists;   /* [n_layers] */
    uint32_t *quota;   /* [n_layers] */
    uint32_t *layer;   /* [n_slots] layer of the resident key */
    uint64_t *stamp;   /* [n_slots] last use */
    uint64_t clock;
} lrul_state;

static void lrul_destroy(void *st)
{
    lrul_state *s = st;
    if (!s) return;
    ms_ilinks_free(&s->links);
    free(s->lists);
    free(s->quota);
    free(s->layer);
    free(s->stamp);
    free(s);
}

static int lrul_create(const ms_policy_params *p, void **out, ms_err *err)
{
    lrul_state *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "lru-layer: out of memory");
    s->n_layers = p->n_layers;
    s->n_experts = p->n_experts;
    s->lists = calloc(p->n_layers, sizeof *s->lists);
    s->quota = calloc(p->n_layers, sizeof *s->quota);
    s->layer = calloc(p->n_slots, sizeof *s->layer);
    s->stamp = calloc(p->n_slots, sizeof *s->stamp);
    if (!s->lists || !s->quota || !s->layer || !s->stamp || ms_ilinks_init(&s->links, p->n_slots) < 0) {
        lrul_destroy(s);
        return ms_errf(err, ENOMEM, "lru-layer: out of memory");
    }
    for (uint32_t l = 0; l < p->n_layers; l++) {
        ms_ilist_init(&s->lists[l]);
        s->quota[l] = p->n_slots / p->n_layers + (l < p->n_slots % p->n_layers ? 1 : 0);
    }
    *out = s;
    return 0;
}

static void lrul_on_hit(void *st, uint32_t slot, uint32_t key)
{
    lrul_state *s = st;
    ms_ilist_move_head(&s->lists[s->layer[slot]], &s->links, slot);
    s->stamp[slot] = ++s->clock;
}

static void lrul_on_insert(void *st, uint32_t slot, uint32_t key, bool prefetch)
{
    lrul_state *s = st;
    uint32_t l = key / s->n_experts;
    s->layer[slot] = l;
    s->stamp[slot] = ++s->clock;
    ms_ilist_push_head(&s->lists[l], &s->links, slot);
}

static void lrul_on_evict(void *st, uint32_t slot, uint32_t key)
{
    lrul_state *s = st;
    ms_ilist_unlink(&s->lists[s->layer[slot]], &s->links, slot);
}

/* Least recent eligible slot among layers (all, or only over-quota ones). */
static uint32_t lrul_oldest(lrul_state *s, bool over_only, ms_policy_eligible_fn ok, const void *ctx)
{
    uint32_t best = MS_NIL;
    for (uint32_t m = 0; m < s->n_layers; m++) {
        if (over_only && s->lists[m].count <= s->quota[m]) continue;
        uint32_t v = ms_ilist_last_eligible(&s->lists[m], &s->links, ok, ctx);
        if (v != MS_NIL && (best == MS_NIL || s->stamp[v] < s->stamp[best])) best = v;
    }
    return best;
}

static int64_t lrul_victim(void *st, uint32_t key, uint32_t n_empty, ms_policy_eligible_fn ok, const void *ctx)
{
    lrul_state *s = st;
    uint32_t l = key / s->n_experts;
    uint32_t v = MS_NIL;
    if (s->lists[l].count >= s->quota[l]) v = ms_ilist_last_eligible(&s->lists[l], &s->links, ok, ctx);
    if (v == MS_NIL && n_empty > 0) return MS_POLICY_USE_EMPTY;
    if (v == MS_NIL) v = lrul_oldest(s, true, ok, ctx);
    if (v == MS_NIL) v = lrul_oldest(s, false, ok, ctx);
    return v == MS_NIL ? -1 : (int64_t)v;
}

const ms_policy_ops ms_policy_lru_layer = {
    .name = "lru-layer",
    .version = MS_POLICY_API_VERSION,
    .flags = MS_POLICY_VICTIM_FIRST,
    .summary = "per-layer LRU: capacity split equally between MoE layers",
    .create = lrul_create,
    .destroy = lrul_destroy,
    .on_hit = lrul_on_hit,
    .on_insert = lrul_on_insert,
    .on_evict = lrul_on_evict,
    .victim = lrul_victim,
};

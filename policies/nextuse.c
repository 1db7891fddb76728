/* nextuse.c - "next-use": an online estimate of Belady's rule. Evict the
 * resident expert with the largest EXPECTED time to its next use, estimated from
 *   p_k  = decayed per-token selection frequency of key k (half-life hl tokens,
 *          smoothed towards top_k / n_experts with a prior of `prior` tokens), and
 *   d_k  = groups until layer(k) comes round again: layers are visited in a fixed
 *          cycle, so while layer c is processed an expert of layer c (not in the
 *          current group) cannot be used for n_layers groups, one of layer c+1
 *          may be needed in 1 group.
 * E[next use of k] = d_k + n_layers * (1 / p_k - 1) groups (geometric over tokens).
 * Frequency alone ignores d_k and evicts experts of the layer about to run (the
 * "cyclic depletion" that makes global LRU/LFU lose to a per-layer split on
 * uniform routing); a fixed per-layer split ignores that layers differ in skew.
 * This rule gets both: among equal p it takes from the layer just processed,
 * among equal layers it takes the rarest expert.
 *
 * Structure: one min-heap per layer ordered by (decayed score, last use) - all
 * experts of a layer share d_k, so each layer's candidate is its heap minimum -
 * and the victim is the best of the n_layers candidates: O(n_layers + log n) per
 * victim, O(log n) per hit/insert. Scores use growing weights 2^(t/hl) with
 * renormalisation (as lfu-decay), history is kept for non-resident experts. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "policies_all.h"
#include "policy_util.h"

typedef struct lheap {
    uint32_t *h; /* slot ids */
    uint32_t n, cap;
} lheap;

typedef struct nu_state {
    uint32_t n_layers, n_experts, n_keys, n_slots;
    double half_life, prior, p0;
    double *score;     /* [n_keys] sum of 2^((t_i - base)/hl) */
    double weight;     /* 2^((now - base)/hl) */
    double zsum;       /* sum over ticks of the weight at that tick (normaliser) */
    double base;
    uint64_t clock;
    uint32_t cur_layer;
    bool part;         /* option part=1: strict equal per-layer partitions */
    uint32_t resident;
    uint32_t *key_of;  /* [n_slots] */
    uint32_t *pos;     /* [n_slots] index in its layer heap or MS_NIL */
    double *hscore;    /* [n_slots] score snapshot used for ordering */
    uint64_t *stamp;   /* [n_slots] */
    uint32_t *tmp;     /* [n_slots] scratch */
    lheap *heaps;      /* [n_layers] */
} nu_state;

static inline bool nu_less(const nu_state *s, uint32_t a, uint32_t b)
{
    if (s->hscore[a] != s->hscore[b]) return s->hscore[a] < s->hscore[b];
    if (s->stamp[a] != s->stamp[b]) return s->stamp[a] < s->stamp[b];
    return a < b;
}

static inline void nu_place(nu_state *s, lheap *h, uint32_t i, uint32_t slot)
{
    h->h[i] = slot;
    s->pos[slot] = i;
}

static void nu_up(nu_state *s, lheap *h, uint32_t i)
{
    uint32_t x = h->h[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!nu_less(s, x, h->h[p])) break;
        nu_place(s, h, i, h->h[p]);
        i = p;
    }
    nu_place(s, h, i, x);
}

static void nu_down(nu_state *s, lheap *h, uint32_t i)
{
    uint32_t x = h->h[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && nu_less(s, h->h[c + 1], h->h[c])) c++;
        if (!nu_less(s, h->h[c], x)) break;
        nu_place(s, h, i, h->h[c]);
        i = c;
    }
    nu_place(s, h, i, x);
}

static int nu_push(nu_state *s, lheap *h, uint32_t slot)
{
    if (h->n == h->cap) {
        uint32_t nc = h->cap ? h->cap * 2 : 16;
        if (nc > s->n_slots) nc = s->n_slots;
        uint32_t *nh = realloc(h->h, (size_t)nc * sizeof *nh);
        if (!nh) return -ENOMEM;
        h->h = nh;
        h->cap = nc;
    }
    nu_place(s, h, h->n++, slot);
    nu_up(s, h, h->n - 1);
    return 0;
}

static void nu_remove(nu_state *s, lheap *h, uint32_t slot)
{
    uint32_t i = s->pos[slot];
    if (i == MS_NIL) return;
    s->pos[slot] = MS_NIL;
    h->n--;
    if (i == h->n) return;
    uint32_t x = h->h[h->n];
    nu_place(s, h, i, x);
    nu_up(s, h, i);
    nu_down(s, h, s->pos[x]);
}

static void nu_destroy(void *st)
{
    nu_state *s = st;
    if (!s) return;
    if (s->heaps)
        for (uint32_t l = 0; l < s->n_layers; l++) free(s->heaps[l].h);
    free(s->heaps);
    free(s->score);
    free(s->key_of);
    free(s->pos);
    free(s->hscore);
    free(s->stamp);
    free(s->tmp);
    free(s);
}

static int nu_create(const ms_policy_params *p, void **out, ms_err *err)
{
    double turnover = (double)p->n_slots / ((double)p->n_layers * p->top_k);
    double hl = ms_policy_opt(p, "hl", fmax(16.0, 2.0 * turnover));
    double prior = ms_policy_opt(p, "prior", 1.0);
    if (!(hl > 0 && hl <= 1e9) || !(prior > 0 && prior <= 1e9))
        return ms_errf(err, EINVAL, "next-use: hl and prior must be in (0, 1e9] tokens");
    nu_state *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "next-use: out of memory");
    s->n_layers = p->n_layers;
    s->n_experts = p->n_experts;
    s->n_keys = p->n_layers * p->n_experts;
    s->n_slots = p->n_slots;
    s->half_life = hl;
    s->prior = prior;
    s->part = ms_policy_opt(p, "part", 0) != 0;
    s->p0 = (double)p->top_k / p->n_experts;
    s->weight = 1.0;
    s->score = calloc(s->n_keys, sizeof *s->score);
    s->key_of = calloc(p->n_slots, sizeof *s->key_of);
    s->pos = malloc((size_t)p->n_slots * sizeof *s->pos);
    s->hscore = calloc(p->n_slots, sizeof *s->hscore);
    s->stamp = calloc(p->n_slots, sizeof *s->stamp);
    s->tmp = malloc((size_t)p->n_slots * sizeof *s->tmp);
    s->heaps = calloc(p->n_layers, sizeof *s->heaps);
    if (!s->score || !s->key_of || !s->pos || !s->hscore || !s->stamp || !s->tmp || !s->heaps) {
        nu_destroy(s);
        return ms_errf(err, ENOMEM, "next-use: out of memory");
    }
    for (uint32_t i = 0; i < p->n_slots; i++) s->pos[i] = MS_NIL;
    *out = s;
    return 0;
}

static void nu_on_tick(void *st, uint64_t token)
{
    nu_state *s = st;
    double e = ((double)token - s->base) / s->half_life;
    if (e > 512) {
        double f = exp2(-e);
        for (uint32_t k = 0; k < s->n_keys; k++) s->score[k] *= f;
        s->zsum *= f;
        s->base = (double)token;
        e = 0;
        for (uint32_t l = 0; l < s->n_layers; l++) {
            lheap *h = &s->heaps[l];
            for (uint32_t i = 0; i < h->n; i++) s->hscore[h->h[i]] = s->score[s->key_of[h->h[i]]];
            for (uint32_t i = h->n / 2; i-- > 0;) nu_down(s, h, i);
        }
    }
    s->weight = exp2(e);
    s->zsum += s->weight;
}

static void nu_touch(nu_state *s, uint32_t slot, uint32_t key, bool access, bool fresh)
{
    uint32_t l = key / s->n_experts;
    s->cur_layer = l;
    if (access) {
        s->score[key] += s->weight;
        s->clock++;
    }
    s->key_of[slot] = key;
    s->hscore[slot] = s->score[key];
    s->stamp[slot] = s->clock;
    lheap *h = &s->heaps[l];
    if (fresh) {
        s->resident++;
        /* Cannot fail: each layer heap grows up to n_slots on demand; on ENOMEM
         * the slot is simply not a candidate (victim() falls back to others). */
        (void)nu_push(s, h, slot);
    } else if (s->pos[slot] != MS_NIL) {
        nu_up(s, h, s->pos[slot]);
        nu_down(s, h, s->pos[slot]);
    }
}

static void nu_on_hit(void *st, uint32_t slot, uint32_t key) { nu_touch(st, slot, key, true, false); }

static void nu_on_insert(void *st, uint32_t slot, uint32_t key, bool prefetch)
{
    nu_touch(st, slot, key, !prefetch, true);
}

static void nu_on_evict(void *st, uint32_t slot, uint32_t key)
{
    nu_state *s = st;
    s->resident--;
    nu_remove(s, &s->heaps[key / s->n_experts], slot);
}

/* Minimum eligible slot of a layer heap (heap unchanged afterwards). */
static uint32_t nu_min_eligible(nu_state *s, lheap *h, ms_policy_eligible_fn ok, const void *ctx)
{
    uint32_t ns = 0, found = MS_NIL;
    while (h->n > 0) {
        uint32_t top = h->h[0];
        if (ok(ctx, top)) {
            found = top;
            break;
        }
        s->tmp[ns++] = top;
        nu_remove(s, h, top);
    }
    for (uint32_t i = 0; i < ns; i++) {
        nu_place(s, h, h->n++, s->tmp[i]);
        nu_up(s, h, h->n - 1);
    }
    return found;
}

/* Expected groups until key is used again, seen from layer c. */
static double nu_eta(const nu_state *s, uint32_t key, uint32_t c)
{
    uint32_t l = key / s->n_experts;
    double d = (double)((l + s->n_layers - c) % s->n_layers);
    if (d == 0) d = s->n_layers;
    double p = (s->score[key] + s->prior * s->p0 * s->weight) / (s->zsum + s->prior * s->weight);
    if (p > 1) p = 1;
    if (p < 1e-12) p = 1e-12;
    return d + s->n_layers * (1.0 / p - 1.0);
}

static int64_t nu_victim(void *st, uint32_t key, ms_policy_eligible_fn ok, const void *ctx)
{
    nu_state *s = st;
    if (!s->part && s->resident < s->n_slots) return MS_POLICY_USE_EMPTY;
    uint32_t c = key / s->n_experts;
    uint32_t best = MS_NIL;
    double best_eta = -1;
    if (s->part) {
        uint32_t quota = s->n_slots / s->n_layers + (c < s->n_slots % s->n_layers ? 1 : 0);
        if (s->heaps[c].n >= quota) {
            uint32_t v = nu_min_eligible(s, &s->heaps[c], ok, ctx);
            if (v != MS_NIL) return v;
        }
        if (s->resident < s->n_slots) return MS_POLICY_USE_EMPTY;
    }
    for (uint32_t l = 0; l < s->n_layers; l++) {
        if (!s->heaps[l].n) continue;
        uint32_t v = nu_min_eligible(s, &s->heaps[l], ok, ctx);
        if (v == MS_NIL) continue;
        double eta = nu_eta(s, s->key_of[v], c);
        if (eta > best_eta) {
            best_eta = eta;
            best = v;
        }
    }
    return best == MS_NIL ? -1 : (int64_t)best;
}

static bool nu_admit(void *st, uint32_t key, uint32_t victim_key)
{
    nu_state *s = st;
    if (victim_key == UINT32_MAX) return true;
    return nu_eta(s, key, s->cur_layer) < nu_eta(s, victim_key, s->cur_layer);
}

static const char *const nu_opts[] = {"hl", "prior", "part", NULL};

const ms_policy_ops ms_policy_next_use = {
    .name = "next-use",
    .version = MS_POLICY_API_VERSION,
    .flags = MS_POLICY_VICTIM_FIRST,
    .summary = "evict the largest expected time to next use (decayed frequency + layer cycle distance)",
    .opt_names = nu_opts,
    .create = nu_create,
    .destroy = nu_destroy,
    .on_hit = nu_on_hit,
    .on_insert = nu_on_insert,
    .on_evict = nu_on_evict,
    .victim = nu_victim,
    .admit = nu_admit,
    .on_tick = nu_on_tick,
};

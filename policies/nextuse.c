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
 * Recency lift (option lift=, default 1): p_k under-rates experts reused at the
 * very next token when routing is bursty, so the policy learns online the ratio
 * "observed reuse at the next opportunity / p estimate" over the previous token's
 * experts of every layer (forgotten with factor 0.995 per token, clamped to
 * [0.25, 64]) and multiplies p_k by it for experts used at their previous
 * opportunity. Near 1 (no effect) when routing has no short-range reuse.
 * Option part=1 switches to strict equal per-layer partitions (experiments).
 *
 * Adaptive half-life (default; hl=N fixes it, adapt=0 fixes the default): how
 * fast popularity moves differs between models, prompts and capacities, so
 * p_k is kept for 7 half-lives (the default x 1/4, 1/2, 1, 2, 4, 16, 128), all
 * updated on every access. Each is scored on what matters, hits: every 4
 * tokens, thr = the score of its n_slots-th most frequent key (quickselect,
 * O(n_keys)); every access whose key scores above thr counts as a hit of that
 * estimate (a cache holding its top n_slots keys would have hit). Counts are
 * forgotten with factor 0.998 per token (about 500 tokens) and the policy
 * follows the estimate with the most, switching (and re-keying the heaps,
 * O(n_slots)) only on a 0.2% lead. Cost: 7 adds per access, 7 selections of
 * n_keys every 4 tokens: about 0.2 ms per token at 58 x 256 keys (simulate on
 * syn-dsv3-topics, 600 tokens: 0.73 s against 0.61 s with adapt=0).
 *
 * Prefetch: a predicted key (the runtime's router lookahead for the next layer)
 * is admitted when its expected next use, d_k + (1 - q) * n_layers * (1/p_k - 1)
 * with q the precision of this run's prefetches so far (prefetched slots hit
 * before eviction / prefetches, prior 1/2), comes before the victim's. The
 * layer being computed (cur_layer) follows demand accesses only, so a prefetch
 * for layer c+1 does not make layer c+1 look "just processed".
 *
 * Structure: one min-heap per layer ordered by (decayed score, last use) - all
 * experts of a layer share d_k, so each layer's candidate is its heap minimum -
 * and the victim is the best of the n_layers candidates (recent experts, a few
 * per layer, are skipped in the heap and scored from the recent lists):
 * O(n_layers x (top_k + log n)) per victim, O(log n) per hit/insert (measured:
 * about 3 us per victim at 58 layers x 256 experts). Scores use growing weights 2^(t/hl) with
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

/* One decayed-frequency estimate: p_k for one half-life. */
#define NU_MAX_EST 7
#define NU_THR_EVERY 4   /* tokens between threshold updates */
#define NU_LL_FORGET 0.998 /* per token: the likelihoods cover about the last 500 tokens */
#define NU_LL_MARGIN 0.002 /* switch when 0.2% more likely than the estimate in use */
typedef struct nu_est {
    double hl;         /* half-life in tokens */
    double *score;     /* [n_keys] sum of 2^((t_i - base)/hl) over k's accesses */
    double weight;     /* 2^((now - base)/hl) */
    double zsum;       /* sum over ticks of the weight at that tick (normaliser) */
    double base;
    double ll;         /* decayed count of accesses a cache of its top n_slots keys would hit */
    double thr;        /* score / weight of its n_slots-th most frequent key, updated
                        * every NU_THR_EVERY tokens (relative to weight: stays valid
                        * as weights grow and across renormalisation) */
} nu_est;

typedef struct nu_state {
    uint32_t n_layers, n_experts, n_keys, n_slots;
    double prior, p0;
    nu_est est[NU_MAX_EST]; /* candidate frequency estimates, one per half-life */
    uint32_t n_est, a;      /* how many; the one in use */
    uint64_t switches;      /* times the estimate in use changed */
    double *sel;            /* [n_keys] scratch of nu_kth */
    uint64_t clock;
    uint32_t cur_layer;  /* layer of the last demand access */
    uint8_t *pf;         /* [n_slots] 1 = prefetched, not used yet */
    double pf_in, pf_used; /* prefetches admitted / used before eviction */
    /* recency lift (option lift=0 disables): P(use | used at the previous
     * opportunity) / p estimate, learned online from the keys of the previous
     * token of each layer (O(top_k) per layer per token). */
    bool use_lift;
    uint64_t token;
    uint64_t *last_tok;  /* [n_keys] token of the last access + 1, 0 = never */
    uint32_t *slot_of;   /* [n_keys] resident slot or MS_NIL */
    uint32_t rmax;       /* per-layer capacity of the recent lists */
    uint32_t *prev, *cur;/* [n_layers * rmax] keys used in the previous / current token */
    uint32_t *nprev, *ncur; /* [n_layers] */
    double *snap;        /* [n_layers * rmax] p of prev keys at the start of this token */
    double ev, ex, lift; /* decayed observed reuses, expected reuses, their ratio */
    bool part;         /* option part=1: strict equal per-layer partitions */
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
    for (uint32_t i = 0; i < NU_MAX_EST; i++) free(s->est[i].score);
    free(s->sel);
    free(s->key_of);
    free(s->pos);
    free(s->hscore);
    free(s->stamp);
    free(s->tmp);
    free(s->last_tok);
    free(s->slot_of);
    free(s->prev);
    free(s->cur);
    free(s->nprev);
    free(s->ncur);
    free(s->snap);
    free(s->pf);
    free(s);
}

static int nu_create(const ms_policy_params *p, void **out, ms_err *err)
{
    double turnover = (double)p->n_slots / ((double)p->n_layers * p->top_k);
    /* Default half-life: 2 x the tokens it takes to touch as many (layer, expert)
     * pairs as the cache holds, at least 32 tokens (see docs/POLICIES.md). */
    double hl_def = fmax(32.0, 2.0 * turnover);
    double hl = ms_policy_opt(p, "hl", NAN);
    double prior = ms_policy_opt(p, "prior", 1.0);
    bool adapt = isnan(hl) && ms_policy_opt(p, "adapt", 1) != 0;
    if (isnan(hl)) hl = hl_def;
    if (!(hl > 0 && hl <= 1e9) || !(prior > 0 && prior <= 1e9))
        return ms_errf(err, EINVAL, "next-use: hl and prior must be in (0, 1e9] tokens");
    nu_state *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "next-use: out of memory");
    s->n_layers = p->n_layers;
    s->n_experts = p->n_experts;
    s->n_keys = p->n_layers * p->n_experts;
    s->n_slots = p->n_slots;
    /* Candidate half-lives (adapt): the default x 1/4 .. 128, the default first. */
    static const double mult[NU_MAX_EST] = {1, 0.25, 0.5, 2, 4, 16, 128};
    s->n_est = adapt ? NU_MAX_EST : 1;
    s->sel = malloc((size_t)s->n_keys * sizeof *s->sel);
    if (!s->sel) {
        nu_destroy(s);
        return ms_errf(err, ENOMEM, "next-use: out of memory");
    }
    for (uint32_t i = 0; i < s->n_est; i++) {
        s->est[i].hl = hl * mult[i];
        s->est[i].weight = 1.0;
        s->est[i].score = calloc(s->n_keys, sizeof *s->est[i].score);
        if (!s->est[i].score) {
            nu_destroy(s);
            return ms_errf(err, ENOMEM, "next-use: out of memory");
        }
    }
    s->prior = prior;
    s->part = ms_policy_opt(p, "part", 0) != 0;
    s->use_lift = ms_policy_opt(p, "lift", 1) != 0;
    s->lift = 1.0;
    s->rmax = 4 * p->top_k;
    s->p0 = (double)p->top_k / p->n_experts;
    s->key_of = calloc(p->n_slots, sizeof *s->key_of);
    s->pos = malloc((size_t)p->n_slots * sizeof *s->pos);
    s->hscore = calloc(p->n_slots, sizeof *s->hscore);
    s->stamp = calloc(p->n_slots, sizeof *s->stamp);
    s->tmp = malloc((size_t)p->n_slots * sizeof *s->tmp);
    s->heaps = calloc(p->n_layers, sizeof *s->heaps);
    s->last_tok = calloc(s->n_keys, sizeof *s->last_tok);
    s->slot_of = malloc((size_t)s->n_keys * sizeof *s->slot_of);
    s->prev = calloc((size_t)p->n_layers * s->rmax, sizeof *s->prev);
    s->cur = calloc((size_t)p->n_layers * s->rmax, sizeof *s->cur);
    s->snap = calloc((size_t)p->n_layers * s->rmax, sizeof *s->snap);
    s->nprev = calloc(p->n_layers, sizeof *s->nprev);
    s->ncur = calloc(p->n_layers, sizeof *s->ncur);
    s->pf = calloc(p->n_slots, 1);
    if (!s->pf || !s->key_of || !s->pos || !s->hscore || !s->stamp || !s->tmp || !s->heaps || !s->last_tok ||
        !s->slot_of || !s->prev || !s->cur || !s->snap || !s->nprev || !s->ncur) {
        nu_destroy(s);
        return ms_errf(err, ENOMEM, "next-use: out of memory");
    }
    for (uint32_t i = 0; i < p->n_slots; i++) s->pos[i] = MS_NIL;
    for (uint32_t k = 0; k < s->n_keys; k++) s->slot_of[k] = MS_NIL;
    *out = s;
    return 0;
}

/* Decayed per-token selection probability of key under estimate e, smoothed
 * towards p0. */
static inline double nu_pe(const nu_state *s, const nu_est *e, uint32_t key)
{
    double p = (e->score[key] + s->prior * s->p0 * e->weight) / (e->zsum + s->prior * e->weight);
    return p > 1 ? 1 : p < 1e-12 ? 1e-12 : p;
}

static inline double nu_p(const nu_state *s, uint32_t key)
{
    return nu_pe(s, &s->est[s->a], key);
}

/* Re-key every layer heap on the active estimate (after a switch or a
 * renormalisation): O(n_slots). */
static void nu_rekey(nu_state *s)
{
    const double *score = s->est[s->a].score;
    for (uint32_t l = 0; l < s->n_layers; l++) {
        lheap *h = &s->heaps[l];
        for (uint32_t i = 0; i < h->n; i++) s->hscore[h->h[i]] = score[s->key_of[h->h[i]]];
        for (uint32_t i = h->n / 2; i-- > 0;) nu_down(s, h, i);
    }
}

/* Token boundary bookkeeping of the recency lift. */
static void nu_lift_tick(nu_state *s, uint64_t token)
{
    /* Keys used two tokens ago were snapshotted one token ago: were they reused? */
    for (uint32_t l = 0; l < s->n_layers; l++)
        for (uint32_t i = 0; i < s->nprev[l]; i++) {
            uint32_t q = s->prev[l * s->rmax + i];
            s->ex += s->snap[l * s->rmax + i];
            s->ev += s->last_tok[q] == token; /* used in the token that just ended (token - 1) */
        }
    s->ev *= 0.995;
    s->ex *= 0.995;
    double lift = (s->ev + 2.0) / (s->ex + 2.0);
    s->lift = lift < 0.25 ? 0.25 : lift > 64 ? 64 : lift;
    /* The keys of the token that just ended become "previous"; snapshot their p. */
    uint32_t *t = s->prev;
    s->prev = s->cur;
    s->cur = t;
    for (uint32_t l = 0; l < s->n_layers; l++) {
        s->nprev[l] = s->ncur[l];
        s->ncur[l] = 0;
        for (uint32_t i = 0; i < s->nprev[l]; i++) s->snap[l * s->rmax + i] = nu_p(s, s->prev[l * s->rmax + i]);
    }
}

/* The n_slots-th largest of score[0..n_keys) (quickselect on a copy). */
static double nu_kth(nu_state *s, const double *score)
{
    double *v = s->sel;
    uint32_t n = s->n_keys, k = s->n_slots - 1; /* index in descending order */
    if (k >= n) return -1;
    for (uint32_t i = 0; i < n; i++) v[i] = score[i];
    uint32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double piv = v[lo + (hi - lo) / 2];
        uint32_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] > piv) i++;
            while (v[j] < piv) j--;
            if (i <= j) {
                double t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
    return v[k];
}

static void nu_on_tick(void *st, uint64_t token)
{
    nu_state *s = st;
    bool rekey = false;
    for (uint32_t i = 0; i < s->n_est; i++) {
        nu_est *es = &s->est[i];
        double e = ((double)token - es->base) / es->hl;
        if (e > 512) {
            double f = exp2(-e);
            for (uint32_t k = 0; k < s->n_keys; k++) es->score[k] *= f;
            es->zsum *= f;
            es->base = (double)token;
            e = 0;
            rekey |= i == s->a;
        }
        es->weight = exp2(e);
        es->zsum += es->weight;
        es->ll *= NU_LL_FORGET;
    }
    if (s->n_est > 1 && token % NU_THR_EVERY == 0)
        for (uint32_t i = 0; i < s->n_est; i++) s->est[i].thr = nu_kth(s, s->est[i].score) / s->est[i].weight;
    /* Follow the estimate that has predicted recent accesses best (highest
     * log-likelihood), with a small hysteresis so that near-ties do not flip. */
    uint32_t best = s->a;
    for (uint32_t i = 0; i < s->n_est; i++)
        if (s->est[i].ll > s->est[best].ll + NU_LL_MARGIN * fabs(s->est[s->a].ll)) best = i;
    if (best != s->a) {
        s->a = best;
        s->switches++;
        rekey = true;
    }
    if (rekey) nu_rekey(s);
    s->token = token;
    if (s->use_lift) nu_lift_tick(s, token);
}

static void nu_touch(nu_state *s, uint32_t slot, uint32_t key, bool access, bool fresh)
{
    uint32_t l = key / s->n_experts;
    if (access) {
        s->cur_layer = l;
        for (uint32_t i = 0; i < s->n_est; i++) {
            nu_est *e = &s->est[i];
            if (s->n_est > 1) e->ll += e->score[key] > e->thr * e->weight;
            e->score[key] += e->weight;
        }
        s->clock++;
        if (s->last_tok[key] != s->token + 1 && s->ncur[l] < s->rmax) s->cur[l * s->rmax + s->ncur[l]++] = key;
        s->last_tok[key] = s->token + 1;
    }
    s->key_of[slot] = key;
    s->slot_of[key] = slot;
    s->hscore[slot] = s->est[s->a].score[key];
    s->stamp[slot] = s->clock;
    lheap *h = &s->heaps[l];
    if (fresh) {
        /* Cannot fail: each layer heap grows up to n_slots on demand; on ENOMEM
         * the slot is simply not a candidate (victim() falls back to others). */
        (void)nu_push(s, h, slot);
    } else if (s->pos[slot] != MS_NIL) {
        nu_up(s, h, s->pos[slot]);
        nu_down(s, h, s->pos[slot]);
    }
}

static void nu_on_hit(void *st, uint32_t slot, uint32_t key)
{
    nu_state *s = st;
    if (s->pf[slot]) {
        s->pf[slot] = 0;
        s->pf_used += 1;
    }
    nu_touch(st, slot, key, true, false);
}

static void nu_on_insert(void *st, uint32_t slot, uint32_t key, bool prefetch)
{
    nu_state *s = st;
    s->pf[slot] = prefetch;
    if (prefetch) s->pf_in += 1;
    nu_touch(st, slot, key, !prefetch, true);
}

static void nu_on_evict(void *st, uint32_t slot, uint32_t key)
{
    nu_state *s = st;
    s->slot_of[key] = MS_NIL;
    s->pf[slot] = 0;
    nu_remove(s, &s->heaps[key / s->n_experts], slot);
}

/* Is key "recent": used at the opportunity just before its next one, seen while
 * layer c of the current token is processed? (Layers after c still come this
 * token, layers up to c next token.) */
static inline bool nu_recent(const nu_state *s, uint32_t key, uint32_t c)
{
    uint64_t next_opp = key / s->n_experts > c ? s->token : s->token + 1;
    return s->last_tok[key] != 0 && s->last_tok[key] == next_opp; /* last use == next_opp - 1 */
}

/* Minimum eligible slot of a layer heap (heap unchanged afterwards); with
 * skip_recent, recent keys are skipped too (they are scored separately). */
static uint32_t nu_min_eligible2(nu_state *s, lheap *h, ms_policy_eligible_fn ok, const void *ctx, bool skip_recent,
                                 uint32_t c)
{
    uint32_t ns = 0, found = MS_NIL;
    while (h->n > 0) {
        uint32_t top = h->h[0];
        if (ok(ctx, top) && !(skip_recent && nu_recent(s, s->key_of[top], c))) {
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

static uint32_t nu_min_eligible(nu_state *s, lheap *h, ms_policy_eligible_fn ok, const void *ctx)
{
    return nu_min_eligible2(s, h, ok, ctx, false, 0);
}

/* Groups until key's layer comes round again, seen from layer c (1..n_layers). */
static inline double nu_dist(const nu_state *s, uint32_t key, uint32_t c)
{
    uint32_t d = (key / s->n_experts + s->n_layers - c) % s->n_layers;
    return d ? (double)d : (double)s->n_layers;
}

/* Expected groups until key is used again, seen from layer c. */
static double nu_eta(const nu_state *s, uint32_t key, uint32_t c)
{
    double d = nu_dist(s, key, c);
    double p = nu_p(s, key);
    if (s->use_lift && nu_recent(s, key, c)) {
        p *= s->lift;
        if (p > 1) p = 1;
    }
    return d + s->n_layers * (1.0 / p - 1.0);
}

static int64_t nu_victim(void *st, uint32_t key, uint32_t n_empty, ms_policy_eligible_fn ok, const void *ctx)
{
    nu_state *s = st;
    if (!s->part && n_empty > 0) return MS_POLICY_USE_EMPTY;
    uint32_t c = key / s->n_experts;
    uint32_t best = MS_NIL;
    double best_eta = -1;
    if (s->part) {
        uint32_t quota = s->n_slots / s->n_layers + (c < s->n_slots % s->n_layers ? 1 : 0);
        if (s->heaps[c].n >= quota) {
            uint32_t v = nu_min_eligible(s, &s->heaps[c], ok, ctx);
            if (v != MS_NIL) return v;
        }
        if (n_empty > 0) return MS_POLICY_USE_EMPTY;
    }
    for (uint32_t l = 0; l < s->n_layers; l++) {
        if (!s->heaps[l].n) continue;
        uint32_t v = nu_min_eligible2(s, &s->heaps[l], ok, ctx, s->use_lift, c);
        if (v != MS_NIL) {
            double eta = nu_eta(s, s->key_of[v], c);
            if (eta > best_eta) {
                best_eta = eta;
                best = v;
            }
        }
        if (!s->use_lift) continue;
        /* Recent keys of this layer (at most a few groups' worth) are scored with the lift. */
        const uint32_t *list = l > c ? s->prev + l * s->rmax : s->cur + l * s->rmax;
        uint32_t n = l > c ? s->nprev[l] : s->ncur[l];
        for (uint32_t i = 0; i < n; i++) {
            uint32_t q = list[i], slot = s->slot_of[q];
            if (slot == MS_NIL || !nu_recent(s, q, c) || !ok(ctx, slot)) continue;
            double eta = nu_eta(s, q, c);
            if (eta > best_eta) {
                best_eta = eta;
                best = slot;
            }
        }
    }
    if (best == MS_NIL && s->use_lift) {
        /* Recent keys beyond the recent lists' capacity (a large prefill group) were
         * skipped above and are in no list: take the best of them plainly. */
        for (uint32_t l = 0; l < s->n_layers; l++) {
            uint32_t v = s->heaps[l].n ? nu_min_eligible2(s, &s->heaps[l], ok, ctx, false, c) : MS_NIL;
            if (v == MS_NIL) continue;
            double eta = nu_eta(s, s->key_of[v], c);
            if (eta > best_eta) {
                best_eta = eta;
                best = v;
            }
        }
    }
    return best == MS_NIL ? -1 : (int64_t)best;
}

static bool nu_admit(void *st, uint32_t key, uint32_t victim_key)
{
    nu_state *s = st;
    if (victim_key == UINT32_MAX) return true;
    uint32_t c = s->cur_layer;
    double d = nu_dist(s, key, c);
    double q = (s->pf_used + 1.0) / (s->pf_in + 2.0); /* precision of the predictions so far */
    double eta = d + (1.0 - q) * (nu_eta(s, key, c) - d);
    return eta < nu_eta(s, victim_key, c);
}

static const char *const nu_opts[] = {"hl", "prior", "part", "lift", "adapt", NULL};

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

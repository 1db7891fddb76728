/* eva_duel.c - "eva-duel", the default eviction policy: value each resident
 * expert by its learned chance of reuse against what its slot could earn, and
 * follow whichever of a few such rules (and plain LRU) hits most on this run's
 * own accesses (set dueling with shadow tag directories).
 *
 * Statistics (shared by every rule). A (layer, expert) key's class is
 *   age   tokens (forward passes) since its last use, 18 log-spaced buckets;
 *   freq  its decayed selection frequency just after that use, relative to
 *         top_k / n_experts, in quarter octaves (33 buckets),
 * under 4 frequency half-lives h0 x {1, 1/4, 4, 32}, h0 = max(32, 2 x
 * turnover) tokens (turnover = slots / (n_layers x top_k)). At each turn of a
 * layer (its first acquire in a pass) every key of the layer is one
 * opportunity of its class, used or not; counts are forgotten by 0.998 per
 * token. r(class) = P(used at this turn | class) by empirical Bayes: bucket
 * rates around the overall rate, an age factor, then each class around bucket
 * rate x age factor, each level shrunk toward its parent by tau^2 / (tau^2 +
 * sampling variance) with tau^2 the between-item variance beyond noise. Classes
 * that differ only by noise get one rate (uniform routing: a single rate, and
 * the layer distance decides - per-key frequencies, as in next-use, were noise
 * there). A key's rate is interpolated between the two nearest frequency
 * buckets by its own frequency.
 *
 * Layer distance d = groups until the key's layer comes round again (1 for the
 * next layer, n_layers for the layer being processed): layers run in a fixed
 * cycle, so a key of the layer about to run is worth more than an equal one of
 * the layer just done.
 *
 * Rules (victim = smallest value among eligible resident keys):
 *   eva  value = r - lambda d + (1 - r) W(age + 1): the chance of a hit at the
 *        key's next turn, minus what a slot earns until then (lambda = hits per
 *        group per slot of this rule's shadow, at least a random key's), plus
 *        the option of keeping it longer, W(a) = max(0, -lambda L + r(a) +
 *        (1 - r(a)) W(a + 1)); after EVA (Beckmann and Sanchez, HPCA 2017). A
 *        key reused often only right after a use (bursty routing) is worth its
 *        slot for one turn, no longer. With each half-life.
 *   et   value = -(d + L (E[turns to next use] - 1)), the expected time to next
 *        use along the key's age with the class rates. With each half-life.
 *   pk   value = -(d + L (1/p - 1)) with p the key's own decayed frequency
 *        (next-use's estimate without its extras), with the two long half-lives.
 *   lru  value = time of last use.
 *
 * Set dueling: every rule (11) runs a shadow tag directory - the keys a cache
 * of the same size would hold under that rule alone on the same demand
 * accesses, the current group's keys protected. Shadow hits are forgotten by
 * 0.99 per token; the real cache follows the rule with the most, switching
 * when the lead is above 1% and above 2 standard deviations of the difference
 * (sqrt of the accesses where exactly one of the two hit), so rules tied
 * within noise do not take turns. It starts on lru when the cache holds about
 * one token's experts (turnover <= 1.5: recency is what can be kept; at
 * exactly n_layers x top_k slots LRU keeps the previous token's experts and
 * wins) and on pk otherwise. No single rule is best everywhere: lru at one
 * token's worth, et / pk on static skew, eva with bursty reuse and on uniform
 * routing.
 *
 * Prefetch: a predicted key is valued with r -> q + (1 - q) r (p likewise) at
 * its next turn, q = this run's prefetch precision so far (prior 1/2), and
 * admitted when its value exceeds the victim's (always under lru).
 *
 * Structure: each directory (the real cache and every shadow) keeps one
 * min-heap per layer of its keys ordered by (value without the d term, last
 * use, expert). A layer's keys change value only at the layer's turn (their
 * age at the next turn moves on), so that layer's heaps are re-keyed there; a
 * victim is the best of the n_layers heap minima with the d term added. Cost:
 * O(n_layers + log n) per victim and directory, O(slots) re-keying per token and
 * directory, O(n_experts) statistics per group, tables O(16 x 258 x 33) every 4
 * tokens; about 2 ms per token at 58 layers x 256 experts (simulate on
 * syn-dsv3-topics), 13 bytes per key per directory (12 directories).
 * Deterministic: same calls, same decisions. Option hl=H: one half-life
 * (4 rules); rule=0|1|2|3 (eva, et, lru, pk): that rule alone; d=0 drops the
 * layer distance (experiments). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "policies_all.h"
#include "policy_util.h"

#define ED_NA 18      /* age buckets */
#define ED_NB 33      /* frequency buckets (quarter octaves around top_k / n_experts) */
#define ED_RES 4.0    /* frequency buckets per octave */
#define ED_AMAX 257   /* ages tracked exactly by the tables (older = ED_AMAX) */
#define ED_NE 4       /* frequency half-lives */
#define ED_NV (2 * ED_NE + 1 + ED_NE / 2) /* eva, et per estimate; lru; pk for the long ones */
#define ED_FORGET 0.998    /* per token, class counts and lambda's hit counts */
#define ED_DUEL_FORGET 0.99 /* per token, shadow hit counts that choose the rule */
#define ED_DUEL_MARGIN 0.01 /* switch on a 1% lead ... */
#define ED_DUEL_Z 2.0       /* ... of more than 2 standard deviations */
#define ED_TABLES_EVERY 4   /* tokens between table updates (after the first 16) */

static const uint32_t ed_age_lo[ED_NA + 1] = {1,  2,  3,  4,  5,  6,   7,   8,   9,         13,
                                              17, 25, 33, 49, 65, 97, 129, 257, 1u << 30};

enum { ED_EVA = 0, ED_ET = 1, ED_LRU = 2, ED_PK = 3 };

/* One frequency estimate and the class statistics that use it. */
typedef struct ed_est {
    double hl, weight, zsum, base; /* decayed scores: weights 2^((t - base) / hl) */
    double *score;                 /* [n_keys] */
    float *fp;                     /* [n_keys] frequency position (bucket + fraction) just after the last use */
    double opp[ED_NA][ED_NB], used[ED_NA][ED_NB];
    double rg;                          /* overall rate */
    double r[ED_NA][ED_NB];             /* shrunk rate per class */
    double et[ED_AMAX + 2][ED_NB];      /* expected turns to next use from exact age a */
} ed_est;

/* A directory of resident keys: one min-heap per layer of local ids (expert
 * index) ordered by (v0, last use, id). */
typedef struct ed_dir {
    uint16_t *heap; /* [n_layers][n_experts] */
    uint16_t *pos;  /* [n_keys] position in its layer's heap, ED_OUT = not resident */
    uint32_t *hn;   /* [n_layers] heap sizes */
    double *v0;     /* [n_keys] value without the layer-distance term */
    uint32_t count;
} ed_dir;
#define ED_OUT UINT16_MAX

/* A rule: how v0 and the d weight are computed, its shadow and its hits. */
typedef struct ed_rule {
    int type;     /* ED_EVA, ED_ET, ED_LRU, ED_PK */
    uint32_t est; /* frequency estimate */
    double lam;   /* eva: hits per group per slot (opportunity cost) */
    double dw;    /* weight of d: lam (eva), 1 (et, pk), 0 (lru) */
    double hits;  /* shadow hits forgotten by ED_DUEL_FORGET: the duel */
    double hits_lam; /* shadow hits forgotten by ED_FORGET: lambda */
    ed_dir shadow;
    double (*w)[ED_NB];   /* eva: [ED_AMAX + 2] option value of keeping from age a */
    double (*val)[ED_NB]; /* eva, et: [ED_AMAX + 1] v0 at exact age and bucket centre */
} ed_rule;

typedef struct ed_state {
    uint32_t L, E, K, n_keys, n_slots;
    double p0;
    uint64_t token;        /* current tick */
    uint32_t cur;          /* layer of the current (or last) turn */
    int64_t done;          /* highest layer whose turn this token has begun, -1 after a tick */
    uint8_t abk[ED_AMAX + 1]; /* age bucket of each age */
    bool turn_open;
    uint64_t turn_tok;
    double groups;         /* turns, forgotten by ED_FORGET */
    uint64_t *last;        /* [n_keys] token of the last use + 1, 0 = never */
    uint64_t *kclock;      /* [n_keys] access clock of the last use */
    uint64_t clock;
    uint32_t *gmark, gen;  /* [n_keys] keys of the current group */
    ed_est est[ED_NE];
    uint32_t n_est;
    ed_rule rule[ED_NV];
    uint32_t n_rules, cur_rule, fixed_rule;
    uint64_t switches;
    /* the real cache */
    ed_dir real;
    uint32_t *slot_of;     /* [n_keys] resident slot or MS_NIL */
    uint8_t *pf;           /* [n_slots] prefetched, not used yet */
    double pf_in, pf_used;
    uint16_t *tmp;         /* [n_experts] scratch */
    uint32_t *grp;         /* [n_experts] scratch: keys new in this turn */
    double disc[ED_NV][ED_NV]; /* discordant accesses of each pair of shadows */
    bool use_d;            /* option d=0 drops the layer distance (experiments) */
} ed_state;

/* ---------------- directories ---------------- */

static inline bool ed_less(const ed_state *s, const ed_dir *dr, uint32_t l, uint16_t a, uint16_t b)
{
    uint32_t ka = l * s->E + a, kb = l * s->E + b;
    if (dr->v0[ka] != dr->v0[kb]) return dr->v0[ka] < dr->v0[kb];
    if (s->kclock[ka] != s->kclock[kb]) return s->kclock[ka] < s->kclock[kb];
    return a < b;
}

static inline void ed_place(const ed_state *s, ed_dir *dr, uint32_t l, uint32_t i, uint16_t x)
{
    dr->heap[(size_t)l * s->E + i] = x;
    dr->pos[l * s->E + x] = (uint16_t)i;
}

static void ed_up(const ed_state *s, ed_dir *dr, uint32_t l, uint32_t i)
{
    uint16_t *h = dr->heap + (size_t)l * s->E, x = h[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!ed_less(s, dr, l, x, h[p])) break;
        ed_place(s, dr, l, i, h[p]);
        i = p;
    }
    ed_place(s, dr, l, i, x);
}

static void ed_down(const ed_state *s, ed_dir *dr, uint32_t l, uint32_t i)
{
    uint16_t *h = dr->heap + (size_t)l * s->E, x = h[i];
    uint32_t n = dr->hn[l];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && ed_less(s, dr, l, h[c + 1], h[c])) c++;
        if (!ed_less(s, dr, l, h[c], x)) break;
        ed_place(s, dr, l, i, h[c]);
        i = c;
    }
    ed_place(s, dr, l, i, x);
}

/* Insert key or re-position it after its v0 changed. */
static void ed_dir_set(const ed_state *s, ed_dir *dr, uint32_t key, double v0)
{
    uint32_t l = key / s->E;
    dr->v0[key] = v0;
    if (dr->pos[key] == ED_OUT) {
        dr->count++;
        ed_place(s, dr, l, dr->hn[l]++, (uint16_t)(key % s->E));
        ed_up(s, dr, l, dr->hn[l] - 1);
    } else {
        ed_up(s, dr, l, dr->pos[key]);
        ed_down(s, dr, l, dr->pos[key]);
    }
}

static void ed_dir_remove(const ed_state *s, ed_dir *dr, uint32_t key)
{
    uint32_t l = key / s->E, i = dr->pos[key];
    if (i == ED_OUT) return;
    dr->pos[key] = ED_OUT;
    dr->count--;
    uint32_t n = --dr->hn[l];
    if (i == n) return;
    uint16_t x = dr->heap[(size_t)l * s->E + n];
    ed_place(s, dr, l, i, x);
    ed_up(s, dr, l, i);
    ed_down(s, dr, l, dr->pos[l * s->E + x]);
}

static int ed_dir_init(ed_dir *dr, uint32_t L, uint32_t E)
{
    size_t n = (size_t)L * E;
    dr->heap = malloc(n * sizeof *dr->heap);
    dr->pos = malloc(n * sizeof *dr->pos);
    dr->v0 = calloc(n, sizeof *dr->v0);
    dr->hn = calloc(L, sizeof *dr->hn);
    dr->count = 0;
    if (!dr->heap || !dr->pos || !dr->v0 || !dr->hn) return -ENOMEM;
    memset(dr->pos, 0xff, n * sizeof *dr->pos);
    return 0;
}

static void ed_dir_free(ed_dir *dr)
{
    free(dr->heap);
    free(dr->pos);
    free(dr->v0);
    free(dr->hn);
}

/* Eligibility of a directory entry: real = the core's predicate on its slot,
 * shadow = not in the current group. */
typedef struct ed_ok {
    const ed_state *s;
    ms_policy_eligible_fn fn; /* NULL: shadow */
    const void *ctx;
} ed_ok;

static inline bool ed_eligible(const ed_ok *ok, uint32_t key)
{
    if (!ok->fn) return ok->s->gmark[key] != ok->s->gen;
    return ok->fn(ok->ctx, ok->s->slot_of[key]);
}

/* Minimum eligible key of layer l (heap unchanged afterwards), or MS_NIL. */
static uint32_t ed_dir_min(ed_state *s, ed_dir *dr, uint32_t l, const ed_ok *ok)
{
    uint32_t ns = 0, found = MS_NIL;
    while (dr->hn[l] > 0) {
        uint32_t key = l * s->E + dr->heap[(size_t)l * s->E];
        if (ed_eligible(ok, key)) {
            found = key;
            break;
        }
        s->tmp[ns++] = (uint16_t)(key % s->E);
        ed_dir_remove(s, dr, key);
    }
    for (uint32_t i = 0; i < ns; i++) {
        uint32_t key = l * s->E + s->tmp[i];
        ed_dir_set(s, dr, key, dr->v0[key]);
    }
    return found;
}

/* ---------------- values ---------------- */

/* Position of frequency f on the bucket axis: bucket b covers [b, b + 1). */
static inline float ed_fpos(const ed_state *s, double f)
{
    double x = log2(f / s->p0) * ED_RES + ED_NB / 2;
    return x < 0 ? 0.0f : x >= ED_NB ? (float)ED_NB - 0.5f : (float)x;
}

static inline double ed_freq(const ed_state *s, const ed_est *e, uint32_t key)
{
    return (e->score[key] + s->p0 * e->weight) / (e->zsum + e->weight); /* one token of prior */
}

static inline uint32_t ed_age_bucket(const ed_state *s, uint64_t age)
{
    return s->abk[age > ED_AMAX ? ED_AMAX : age];
}

/* Groups until layer l comes round again, seen from layer c (1..L). */
static inline uint32_t ed_dist(const ed_state *s, uint32_t l, uint32_t c)
{
    uint32_t d = (l + s->L - c) % s->L;
    return d ? d : s->L;
}

/* Value without the layer-distance term of key under rule ru, as seen while
 * layer s->cur is processed; pf = a prefetch not used yet. */
static double ed_v0(const ed_state *s, const ed_rule *ru, uint32_t key, bool pf)
{
    if (ru->type == ED_LRU) return (double)(pf ? s->clock : s->kclock[key]); /* a prefetch is the newest */
    const ed_est *e = &s->est[ru->est];
    if (ru->type == ED_PK) {
        double q = pf ? (s->pf_used + 1.0) / (s->pf_in + 2.0) : 0.0;
        double pk = q + (1.0 - q) * ed_freq(s, e, key);
        return -(double)s->L * (1.0 / pk - 1.0);
    }
    uint64_t next = (int64_t)(key / s->E) > s->done ? s->token : s->token + 1; /* token of its next turn */
    uint64_t age = s->last[key] ? next + 1 - s->last[key] : ED_AMAX;
    if (age > ED_AMAX) age = ED_AMAX;
    /* interpolate between the two nearest bucket centres: per-key resolution,
     * class-pooled rates */
    double u = (s->last[key] ? e->fp[key] : ed_fpos(s, ed_freq(s, e, key))) - 0.5;
    int b = u < 0 ? 0 : u >= ED_NB - 1 ? ED_NB - 2 : (int)u;
    double t = u - b, v[2];
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    if (!pf) return ru->val[age][b] + t * (ru->val[age][b + 1] - ru->val[age][b]);
    double q = (s->pf_used + 1.0) / (s->pf_in + 2.0); /* prefetch precision so far */
    for (int j = 0; j < 2; j++) {
        if (ru->type == ED_ET) {
            v[j] = -(1.0 - q) * s->L * (e->et[age][b + j] - 1.0);
        } else {
            double r = q + (1.0 - q) * e->r[s->abk[age]][b + j];
            v[j] = r + (1.0 - r) * ru->w[age + 1][b + j];
        }
    }
    return v[0] + t * (v[1] - v[0]);
}

static inline double ed_dw(const ed_state *s, const ed_rule *ru) { return s->use_d ? ru->dw : 0.0; }

/* Re-key layer l of a directory under rule ru (O(keys of l)). */
static void ed_dir_rekey(ed_state *s, ed_dir *dr, const ed_rule *ru, uint32_t l, bool real)
{
    if (ru->type == ED_LRU) return; /* last use changes only on access */
    uint32_t n = dr->hn[l];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t key = l * s->E + dr->heap[(size_t)l * s->E + i];
        dr->v0[key] = ed_v0(s, ru, key, real && s->pf[s->slot_of[key]]);
    }
    for (uint32_t i = n / 2; i-- > 0;) ed_down(s, dr, l, i);
}

/* The victim of a directory for a key of layer c: best of the layer minima. */
static uint32_t ed_dir_victim(ed_state *s, ed_dir *dr, const ed_rule *ru, uint32_t c, const ed_ok *ok)
{
    uint32_t best = MS_NIL;
    double bv = 0;
    double dw = ed_dw(s, ru);
    for (uint32_t l = 0; l < s->L; l++) {
        if (!dr->hn[l]) continue;
        uint32_t k = ed_dir_min(s, dr, l, ok);
        if (k == MS_NIL) continue;
        double v = dr->v0[k] - dw * ed_dist(s, l, c);
        if (best == MS_NIL || v < bv || (v == bv && s->kclock[k] < s->kclock[best])) {
            best = k;
            bv = v;
        }
    }
    return best;
}

/* ---------------- tables ---------------- */

/* Between-item variance of raw rates x around their parents beyond what the
 * sampling noise var explains (method of moments, weights w = observations),
 * 0 when the items do not differ more than noise. */
static double ed_tau2(const double *x, const double *par, const double *var, const double *w, int n)
{
    double sw = 0, dev = 0, noise = 0;
    for (int i = 0; i < n; i++) {
        if (w[i] <= 0) continue;
        sw += w[i];
        dev += w[i] * (x[i] - par[i]) * (x[i] - par[i]);
        noise += w[i] * var[i];
    }
    return sw > 0 && dev > noise ? (dev - noise) / sw : 0;
}

/* Class rates by empirical Bayes in three levels: the overall rate, frequency
 * buckets around it, an age factor, then each (age, frequency) class around
 * bucket rate x age factor; every level is shrunk toward its parent by
 * tau^2 / (tau^2 + noise), so classes that differ only by noise get their
 * parent's rate (on uniform routing: one rate, and the layer distance decides). */
static void ed_est_tables(ed_state *s, ed_est *e)
{
    enum { NC = ED_NA * ED_NB };
    double ua = 0, oa = 0, ub[ED_NB], ob[ED_NB], rb[ED_NB], x[NC], par[NC], var[NC], w[NC];
    for (int b = 0; b < ED_NB; b++) {
        ub[b] = ob[b] = 0;
        for (int a = 0; a < ED_NA; a++) {
            ub[b] += e->used[a][b];
            ob[b] += e->opp[a][b];
        }
        ua += ub[b];
        oa += ob[b];
    }
    double rg = e->rg = (ua + s->p0) / (oa + 1); /* one observation of prior */
    for (int b = 0; b < ED_NB; b++) {
        x[b] = ob[b] > 0 ? ub[b] / ob[b] : rg;
        par[b] = rg;
        var[b] = ob[b] > 0 ? rg * (1 - rg) / ob[b] : 0;
        w[b] = ob[b];
    }
    double t = ed_tau2(x, par, var, w, ED_NB);
    for (int b = 0; b < ED_NB; b++) rb[b] = ob[b] > 0 ? rg + t / (t + var[b]) * (x[b] - rg) : rg;
    /* age factor: observed / expected uses from the bucket rates */
    double fa[ED_NA];
    for (int a = 0; a < ED_NA; a++) {
        double u = 0, ex = 0;
        for (int b = 0; b < ED_NB; b++) {
            u += e->used[a][b];
            ex += e->opp[a][b] * rb[b];
        }
        x[a] = ex > 0 ? u / ex : 1;
        par[a] = 1;
        var[a] = ex > 0 ? (1 - rg) / ex : 0;
        w[a] = ex;
    }
    t = ed_tau2(x, par, var, w, ED_NA);
    for (int a = 0; a < ED_NA; a++) fa[a] = w[a] > 0 ? 1 + t / (t + var[a]) * (x[a] - 1) : 1;
    for (int a = 0; a < ED_NA; a++)
        for (int b = 0; b < ED_NB; b++) {
            int i = a * ED_NB + b;
            double pr = rb[b] * fa[a];
            pr = pr < 1e-6 ? 1e-6 : pr > 1 - 1e-6 ? 1 - 1e-6 : pr;
            double o = e->opp[a][b];
            par[i] = pr;
            x[i] = o > 0 ? e->used[a][b] / o : pr;
            var[i] = o > 0 ? pr * (1 - pr) / o : 0;
            w[i] = o;
        }
    t = ed_tau2(x, par, var, w, NC);
    for (int a = 0; a < ED_NA; a++)
        for (int b = 0; b < ED_NB; b++) {
            int i = a * ED_NB + b;
            double r = w[i] > 0 ? par[i] + t / (t + var[i]) * (x[i] - par[i]) : par[i];
            e->r[a][b] = r < 1e-6 ? 1e-6 : r > 1 - 1e-6 ? 1 - 1e-6 : r;
        }
    for (int b = 0; b < ED_NB; b++) {
        e->et[ED_AMAX + 1][b] = 1.0 / e->r[ED_NA - 1][b];
        for (uint32_t a = ED_AMAX + 1, ab = ED_NA - 1; a-- > 0;) {
            while (ab > 0 && a < ed_age_lo[ab]) ab--;
            e->et[a][b] = 1.0 + (1.0 - e->r[ab][b]) * e->et[a + 1][b];
        }
    }
}

static void ed_rule_tables(ed_state *s, ed_rule *ru)
{
    if (ru->type == ED_LRU) {
        ru->dw = 0;
        return;
    }
    const ed_est *e = &s->est[ru->est];
    if (ru->type == ED_ET || ru->type == ED_PK) {
        ru->dw = 1;
        if (ru->type == ED_ET)
            for (uint32_t a = 0; a <= ED_AMAX; a++)
                for (int b = 0; b < ED_NB; b++) ru->val[a][b] = -(double)s->L * (e->et[a][b] - 1.0);
        return;
    }
    double lam = s->groups > 0 ? ru->hits_lam / s->groups / s->n_slots : 0;
    if (lam < e->rg / s->L) lam = e->rg / s->L; /* what a slot holding a random key earns */
    ru->lam = ru->dw = lam;
    double cycle = lam * s->L;
    for (int b = 0; b < ED_NB; b++) {
        double winf = 1.0 - cycle / e->r[ED_NA - 1][b]; /* geometric tail */
        ru->w[ED_AMAX + 1][b] = winf > 0 ? winf : 0;
        for (uint32_t a = ED_AMAX + 1, ab = ED_NA - 1; a-- > 0;) {
            while (ab > 0 && a < ed_age_lo[ab]) ab--;
            double r = e->r[ab][b];
            double v = -cycle + r + (1.0 - r) * ru->w[a + 1][b];
            ru->w[a][b] = v > 0 ? v : 0;
        }
    }
    for (uint32_t a = 0; a <= ED_AMAX; a++)
        for (int b = 0; b < ED_NB; b++) {
            double r = e->r[s->abk[a]][b];
            ru->val[a][b] = r + (1.0 - r) * ru->w[a + 1][b];
        }
}

/* ---------------- ops ---------------- */

static void ed_destroy(void *st)
{
    ed_state *s = st;
    if (!s) return;
    for (uint32_t i = 0; i < ED_NE; i++) {
        free(s->est[i].score);
        free(s->est[i].fp);
    }
    for (uint32_t i = 0; i < ED_NV; i++) {
        ed_dir_free(&s->rule[i].shadow);
        free(s->rule[i].w);
        free(s->rule[i].val);
    }
    ed_dir_free(&s->real);
    free(s->last);
    free(s->kclock);
    free(s->gmark);
    free(s->slot_of);
    free(s->pf);
    free(s->tmp);
    free(s->grp);
    free(s);
}

static int ed_create(const ms_policy_params *p, void **out, ms_err *err)
{
    if (p->n_experts >= ED_OUT)
        return ms_errf(err, EINVAL, "eva-duel: %u experts per layer, at most %u supported", p->n_experts, ED_OUT - 1);
    double turnover = (double)p->n_slots / ((double)p->n_layers * p->top_k);
    double h0 = fmax(32.0, 2.0 * turnover);
    double hl = ms_policy_opt(p, "hl", NAN);
    double rule = ms_policy_opt(p, "rule", -1);
    if (!isnan(hl) && !(hl > 0 && hl <= 1e9)) return ms_errf(err, EINVAL, "eva-duel: hl must be in (0, 1e9] tokens");
    if (rule != -1 && rule != ED_EVA && rule != ED_ET && rule != ED_LRU && rule != ED_PK)
        return ms_errf(err, EINVAL, "eva-duel: rule must be 0 (eva), 1 (et), 2 (lru) or 3 (pk); default: all, dueling");
    ed_state *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "eva-duel: out of memory");
    s->L = p->n_layers;
    s->E = p->n_experts;
    s->K = p->top_k;
    s->n_keys = s->L * s->E;
    s->n_slots = p->n_slots;
    s->p0 = (double)s->K / s->E;
    s->use_d = ms_policy_opt(p, "d", 1) != 0;
    s->done = -1;
    for (uint32_t a = 0, b = 0; a <= ED_AMAX; a++) {
        while (b + 1 < ED_NA && a >= ed_age_lo[b + 1]) b++;
        s->abk[a] = (uint8_t)b;
    }
    static const double mult[ED_NE] = {1, 0.25, 4, 32};
    s->n_est = isnan(hl) ? ED_NE : 1;
    int bad = 0;
    for (uint32_t i = 0; i < s->n_est; i++) {
        ed_est *e = &s->est[i];
        e->hl = isnan(hl) ? h0 * mult[i] : hl;
        e->weight = 1.0;
        e->rg = s->p0;
        e->score = calloc(s->n_keys, sizeof *e->score);
        e->fp = calloc(s->n_keys, sizeof *e->fp);
        bad |= !e->score || !e->fp;
        if (!bad) ed_est_tables(s, e);
    }
    /* rules: eva and et with each estimate, lru, pk with the two longest
     * half-lives (per-key frequencies are noise with short ones); the duel
     * starts on lru (no statistics yet) */
    for (int t = ED_EVA; t <= ED_PK && !bad; t++)
        for (uint32_t i = 0; i < (t == ED_LRU ? 1 : s->n_est) && !bad; i++) {
            if (t == ED_PK && s->n_est == ED_NE && i < ED_NE / 2) continue;
            ed_rule *ru = &s->rule[s->n_rules++];
            ru->type = t;
            ru->est = i;
            bad |= ed_dir_init(&ru->shadow, s->L, s->E) < 0;
            if (t == ED_EVA) bad |= !(ru->w = calloc(ED_AMAX + 2, sizeof *ru->w));
            if (t == ED_EVA || t == ED_ET) bad |= !(ru->val = calloc(ED_AMAX + 1, sizeof *ru->val));
        }
    /* The duel starts (no statistics yet) on lru when the cache holds about one
     * token's experts (recency is all that can be kept), else on pk with the
     * longer half-life (frequency). */
    s->cur_rule = turnover <= 1.5 ? 2 * s->n_est : s->n_rules - 1 - (s->n_est == ED_NE);
    s->fixed_rule = MS_NIL;
    if (!bad && rule != -1) { /* one rule only, no duel */
        for (uint32_t i = 0; i < s->n_rules; i++)
            if (s->rule[i].type == (int)rule) {
                s->fixed_rule = s->cur_rule = i;
                break;
            }
    }
    bad |= ed_dir_init(&s->real, s->L, s->E) < 0;
    s->last = calloc(s->n_keys, sizeof *s->last);
    s->kclock = calloc(s->n_keys, sizeof *s->kclock);
    s->gmark = calloc(s->n_keys, sizeof *s->gmark);
    s->slot_of = malloc((size_t)s->n_keys * sizeof *s->slot_of);
    s->pf = calloc(s->n_slots, 1);
    s->tmp = calloc(s->E, sizeof *s->tmp);
    s->grp = calloc(s->E, sizeof *s->grp);
    if (bad || !s->last || !s->kclock || !s->gmark || !s->slot_of || !s->pf || !s->tmp || !s->grp) {
        ed_destroy(s);
        return ms_errf(err, ENOMEM, "eva-duel: out of memory");
    }
    for (uint32_t k = 0; k < s->n_keys; k++) s->slot_of[k] = MS_NIL;
    for (uint32_t i = 0; i < s->n_rules; i++) ed_rule_tables(s, &s->rule[i]);
    *out = s;
    return 0;
}

static inline bool ed_dueling(const ed_state *s, const ed_rule *ru)
{
    return s->fixed_rule == MS_NIL || ru == &s->rule[s->fixed_rule];
}

static void ed_on_tick(void *st, uint64_t token)
{
    ed_state *s = st;
    s->token = token;
    s->turn_open = false;
    s->done = -1;
    s->groups *= ED_FORGET;
    bool tables = token < 16 || token % ED_TABLES_EVERY == 0;
    for (uint32_t i = 0; i < s->n_est; i++) {
        ed_est *e = &s->est[i];
        double x = ((double)token - e->base) / e->hl;
        if (x > 512) { /* renormalise long before overflow */
            double f = exp2(-x);
            for (uint32_t k = 0; k < s->n_keys; k++) e->score[k] *= f;
            e->zsum *= f;
            e->base = (double)token;
            x = 0;
        }
        e->weight = exp2(x);
        e->zsum += e->weight;
        for (int a = 0; a < ED_NA; a++)
            for (int b = 0; b < ED_NB; b++) {
                e->opp[a][b] *= ED_FORGET;
                e->used[a][b] *= ED_FORGET;
            }
        if (tables) ed_est_tables(s, e);
    }
    uint32_t best = s->cur_rule;
    for (uint32_t i = 0; i < s->n_rules; i++) {
        ed_rule *ru = &s->rule[i];
        ru->hits *= ED_DUEL_FORGET;
        ru->hits_lam *= ED_FORGET;
        for (uint32_t j = 0; j < s->n_rules; j++) s->disc[i][j] *= ED_DUEL_FORGET;
        if (!ed_dueling(s, ru)) continue;
        if (tables) ed_rule_tables(s, ru);
        if (ru->hits > s->rule[best].hits) best = i;
    }
    /* switch on a lead that is more than 1% and more than z standard deviations
     * of the difference (discordant accesses: one rule hit, the other missed) */
    const ed_rule *bst = &s->rule[best], *cu = &s->rule[s->cur_rule];
    double lead = bst->hits - cu->hits;
    if (best != s->cur_rule && (lead <= ED_DUEL_MARGIN * cu->hits || lead <= ED_DUEL_Z * sqrt(s->disc[best][s->cur_rule])))
        best = s->cur_rule;
    if (s->fixed_rule == MS_NIL && best != s->cur_rule) {
        s->cur_rule = best;
        s->switches++;
        for (uint32_t l = 0; l < s->L; l++) ed_dir_rekey(s, &s->real, &s->rule[best], l, true);
    }
}

/* A shadow sees one demand access of the group being acquired at layer c. */
static bool ed_shadow_access(ed_state *s, ed_rule *ru, uint32_t key, uint32_t c)
{
    ed_dir *dr = &ru->shadow;
    if (dr->pos[key] != ED_OUT) {
        ru->hits += 1;
        ru->hits_lam += 1;
        ed_dir_set(s, dr, key, ed_v0(s, ru, key, false));
        return true;
    }
    if (dr->count >= s->n_slots) {
        ed_ok ok = {.s = s};
        uint32_t v = ed_dir_victim(s, dr, ru, c, &ok);
        if (v == MS_NIL) return false; /* the group alone fills the cache */
        ed_dir_remove(s, dr, v);
    }
    ed_dir_set(s, dr, key, ed_v0(s, ru, key, false));
    return false;
}

/* Count one opportunity of its class for every key of layer l (all as unused;
 * the accesses of the turn then count as used). */
static void ed_open_turn(ed_state *s, uint32_t l)
{
    s->turn_open = true;
    s->cur = l;
    s->done = l;
    s->turn_tok = s->token;
    s->groups += 1;
    for (uint32_t x = 0; x < s->E; x++) {
        uint32_t k = l * s->E + x;
        if (!s->last[k]) continue;
        uint32_t ab = ed_age_bucket(s, s->token + 1 - s->last[k]);
        for (uint32_t i = 0; i < s->n_est; i++) s->est[i].opp[ab][(int)s->est[i].fp[k]] += 1;
    }
}

/* A demand group (announced by the core before its hits and inserts). */
static void ed_on_group(void *st, const uint32_t *keys, int n)
{
    ed_state *s = st;
    uint32_t l = keys[0] / s->E;
    bool fresh = !(s->turn_open && s->cur == l && s->turn_tok == s->token);
    if (fresh) ed_open_turn(s, l);
    if (++s->gen == 0) {
        memset(s->gmark, 0, (size_t)s->n_keys * sizeof *s->gmark);
        s->gen = 1;
    }
    for (int j = 0; j < n; j++) s->gmark[keys[j]] = s->gen;
    /* statistics: a key counts once per turn (a pass's waves are one turn) */
    uint32_t nnew = 0;
    for (int j = 0; j < n; j++) {
        uint32_t key = keys[j];
        s->kclock[key] = ++s->clock;
        if (s->last[key] == s->token + 1) continue;
        if (s->last[key]) {
            uint32_t ab = ed_age_bucket(s, s->token + 1 - s->last[key]);
            for (uint32_t i = 0; i < s->n_est; i++) s->est[i].used[ab][(int)s->est[i].fp[key]] += 1;
        }
        s->last[key] = s->token + 1;
        for (uint32_t i = 0; i < s->n_est; i++) {
            ed_est *e = &s->est[i];
            e->score[key] += e->weight;
            e->fp[key] = ed_fpos(s, ed_freq(s, e, key));
        }
        s->grp[nnew++] = key;
    }
    /* values: at a layer's turn all its keys move on; otherwise only the group's */
    const ed_rule *cr = &s->rule[s->cur_rule];
    if (fresh) {
        /* a prediction was for this turn: unused now, the key is valued as any other */
        for (uint32_t i = 0; i < s->real.hn[l]; i++) {
            uint32_t key = l * s->E + s->real.heap[(size_t)l * s->E + i];
            if (s->gmark[key] != s->gen) s->pf[s->slot_of[key]] = 0;
        }
        ed_dir_rekey(s, &s->real, cr, l, true);
        for (uint32_t i = 0; i < s->n_rules; i++)
            if (ed_dueling(s, &s->rule[i])) ed_dir_rekey(s, &s->rule[i].shadow, &s->rule[i], l, false);
    } else {
        for (uint32_t j = 0; j < nnew; j++)
            if (s->real.pos[s->grp[j]] != ED_OUT)
                ed_dir_set(s, &s->real, s->grp[j], ed_v0(s, cr, s->grp[j], s->pf[s->slot_of[s->grp[j]]]));
    }
    for (int j = 0; j < n; j++) {
        bool hit[ED_NV];
        for (uint32_t i = 0; i < s->n_rules; i++)
            hit[i] = ed_dueling(s, &s->rule[i]) && ed_shadow_access(s, &s->rule[i], keys[j], l);
        for (uint32_t a = 0; a < s->n_rules; a++)
            if (hit[a])
                for (uint32_t b = 0; b < s->n_rules; b++)
                    if (!hit[b]) {
                        s->disc[a][b] += 1;
                        s->disc[b][a] += 1;
                    }
    }
}

static void ed_on_hit(void *st, uint32_t slot, uint32_t key)
{
    ed_state *s = st;
    if (s->pf[slot]) {
        s->pf[slot] = 0;
        s->pf_used += 1;
    }
    ed_dir_set(s, &s->real, key, ed_v0(s, &s->rule[s->cur_rule], key, false));
}

static void ed_on_insert(void *st, uint32_t slot, uint32_t key, bool prefetch)
{
    ed_state *s = st;
    s->pf[slot] = prefetch;
    if (prefetch) s->pf_in += 1;
    s->slot_of[key] = slot;
    ed_dir_set(s, &s->real, key, ed_v0(s, &s->rule[s->cur_rule], key, prefetch));
}

static void ed_on_evict(void *st, uint32_t slot, uint32_t key)
{
    ed_state *s = st;
    ed_dir_remove(s, &s->real, key);
    s->slot_of[key] = MS_NIL;
    s->pf[slot] = 0;
}

static int64_t ed_victim(void *st, uint32_t key, uint32_t n_empty, ms_policy_eligible_fn ok, const void *ctx)
{
    ed_state *s = st;
    ed_ok o = {.s = s, .fn = ok, .ctx = ctx};
    /* distances from the layer being computed: a prefetch for the next layer
     * must not make that layer look just processed (its experts are due next) */
    (void)key;
    uint32_t v = ed_dir_victim(s, &s->real, &s->rule[s->cur_rule], s->cur, &o);
    return v == MS_NIL ? -1 : (int64_t)s->slot_of[v];
}

/* A predicted key replaces the victim when it is worth more (the rule in use
 * values it as needed at its next turn with the prefetch precision so far). */
static bool ed_admit(void *st, uint32_t key, uint32_t victim_key)
{
    ed_state *s = st;
    if (victim_key == UINT32_MAX) return true;
    const ed_rule *ru = &s->rule[s->cur_rule];
    if (ru->type == ED_LRU) return true;
    double dw = ed_dw(s, ru);
    double vk = ed_v0(s, ru, key, true) - dw * ed_dist(s, key / s->E, s->cur);
    double vv = s->real.v0[victim_key] - dw * ed_dist(s, victim_key / s->E, s->cur);
    return vk > vv;
}

static const char *const ed_opts[] = {"hl", "rule", "d", NULL};

const ms_policy_ops ms_policy_eva_duel = {
    .name = "eva-duel",
    .version = MS_POLICY_API_VERSION,
    .flags = 0,
    .summary = "keep experts whose learned reuse chance pays for their slot; set dueling of rule shadows incl. lru",
    .opt_names = ed_opts,
    .create = ed_create,
    .destroy = ed_destroy,
    .on_hit = ed_on_hit,
    .on_insert = ed_on_insert,
    .on_evict = ed_on_evict,
    .victim = ed_victim,
    .admit = ed_admit,
    .on_tick = ed_on_tick,
    .on_group = ed_on_group,
};

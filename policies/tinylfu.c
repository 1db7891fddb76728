/* tinylfu.c - W-TinyLFU (Einziger, Friedman, Manes; TOS 2017) on slots.
 *
 * Layout: a small LRU window (option window= fraction, default 1% of the slots,
 * at least 1) in front of a segmented-LRU main area (probation + protected, the
 * protected segment at most 80% of main). Frequency: one counter per key of the
 * (small, dense) key space instead of a count-min sketch, halved every
 * 10 x n_slots accesses ("reset" of the TinyLFU paper) so it tracks recent
 * popularity.
 * Admission on eviction: when the window is full, its LRU slot is the candidate
 * to enter main; it is compared with main's victim (probation LRU, else protected
 * LRU) and the one with the lower frequency gives up its slot (ties: the
 * candidate goes). A demand miss must always be loaded, so "rejecting" a key
 * means it only gets a window slot. Hits in probation promote to protected.
 * O(1) per op; aging is O(n_keys) every 10 x n_slots accesses. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "policies_all.h"
#include "policy_util.h"

enum { T_NONE = 0, T_WIN, T_PROB, T_PROT };

typedef struct tlfu_state {
    uint32_t n_keys, win_max, prot_max;
    uint64_t accesses, reset_every;
    uint32_t *freq;   /* [n_keys] */
    uint32_t *key_of; /* [n_slots] */
    uint8_t *seg;     /* [n_slots] T_* */
    ms_ilinks links;  /* [n_slots] */
    ms_ilist win, prob, prot;
} tlfu_state;

static void tlfu_destroy(void *st)
{
    tlfu_state *s = st;
    if (!s) return;
    free(s->freq);
    free(s->key_of);
    free(s->seg);
    ms_ilinks_free(&s->links);
    free(s);
}

static int tlfu_create(const ms_policy_params *p, void **out, ms_err *err)
{
    double wf = ms_policy_opt(p, "window", 0.01);
    if (!(wf >= 0 && wf < 1)) return ms_errf(err, EINVAL, "tinylfu: window must be a fraction in [0,1)");
    tlfu_state *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "tinylfu: out of memory");
    s->n_keys = p->n_layers * p->n_experts;
    s->win_max = (uint32_t)fmax(1.0, floor(wf * p->n_slots));
    if (s->win_max >= p->n_slots) s->win_max = p->n_slots - 1 ? p->n_slots - 1 : 1;
    s->prot_max = (uint32_t)floor(0.8 * (p->n_slots - s->win_max));
    s->reset_every = 10ull * p->n_slots;
    s->freq = calloc(s->n_keys, sizeof *s->freq);
    s->key_of = calloc(p->n_slots, sizeof *s->key_of);
    s->seg = calloc(p->n_slots, 1);
    if (!s->freq || !s->key_of || !s->seg || ms_ilinks_init(&s->links, p->n_slots) < 0) {
        tlfu_destroy(s);
        return ms_errf(err, ENOMEM, "tinylfu: out of memory");
    }
    ms_ilist_init(&s->win);
    ms_ilist_init(&s->prob);
    ms_ilist_init(&s->prot);
    *out = s;
    return 0;
}

static ms_ilist *seg_list(tlfu_state *s, uint8_t seg)
{
    return seg == T_WIN ? &s->win : seg == T_PROB ? &s->prob : &s->prot;
}

static void count_access(tlfu_state *s, uint32_t key)
{
    if (s->freq[key] < UINT32_MAX) s->freq[key]++;
    if (++s->accesses % s->reset_every == 0)
        for (uint32_t k = 0; k < s->n_keys; k++) s->freq[k] >>= 1;
}

static void tlfu_on_hit(void *st, uint32_t slot, uint32_t key)
{
    tlfu_state *s = st;
    count_access(s, key);
    switch (s->seg[slot]) {
    case T_WIN: ms_ilist_move_head(&s->win, &s->links, slot); break;
    case T_PROT: ms_ilist_move_head(&s->prot, &s->links, slot); break;
    case T_PROB:
        ms_ilist_unlink(&s->prob, &s->links, slot);
        s->seg[slot] = T_PROT;
        ms_ilist_push_head(&s->prot, &s->links, slot);
        if (s->prot.count > s->prot_max) {
            uint32_t d = s->prot.tail;
            ms_ilist_unlink(&s->prot, &s->links, d);
            s->seg[d] = T_PROB;
            ms_ilist_push_head(&s->prob, &s->links, d);
        }
        break;
    }
}

static void tlfu_on_insert(void *st, uint32_t slot, uint32_t key, bool prefetch)
{
    tlfu_state *s = st;
    if (!prefetch) count_access(s, key);
    s->key_of[slot] = key;
    s->seg[slot] = T_WIN;
    ms_ilist_push_head(&s->win, &s->links, slot);
    /* While the cache fills (empty slots, no victim asked) the window overflows
     * straight into probation. */
    while (s->win.count > s->win_max) {
        uint32_t c = s->win.tail;
        ms_ilist_unlink(&s->win, &s->links, c);
        s->seg[c] = T_PROB;
        ms_ilist_push_head(&s->prob, &s->links, c);
    }
}

static void tlfu_on_evict(void *st, uint32_t slot, uint32_t key)
{
    tlfu_state *s = st;
    if (s->seg[slot] != T_NONE) ms_ilist_unlink(seg_list(s, s->seg[slot]), &s->links, slot);
    s->seg[slot] = T_NONE;
}

static uint32_t main_victim(tlfu_state *s, ms_policy_eligible_fn ok, const void *ctx)
{
    uint32_t v = ms_ilist_last_eligible(&s->prob, &s->links, ok, ctx);
    if (v == MS_NIL) v = ms_ilist_last_eligible(&s->prot, &s->links, ok, ctx);
    return v;
}

static int64_t tlfu_victim(void *st, uint32_t key, uint32_t n_empty, ms_policy_eligible_fn ok, const void *ctx)
{
    tlfu_state *s = st;
    uint32_t cand = s->win.count >= s->win_max ? ms_ilist_last_eligible(&s->win, &s->links, ok, ctx) : MS_NIL;
    uint32_t v = main_victim(s, ok, ctx);
    if (cand == MS_NIL) {
        if (v == MS_NIL) v = ms_ilist_last_eligible(&s->win, &s->links, ok, ctx);
        return v == MS_NIL ? -1 : (int64_t)v;
    }
    if (v == MS_NIL) return cand;
    if (s->freq[s->key_of[cand]] > s->freq[s->key_of[v]]) {
        /* Admit the window's candidate into main; main's victim goes. */
        ms_ilist_unlink(&s->win, &s->links, cand);
        s->seg[cand] = T_PROB;
        ms_ilist_push_head(&s->prob, &s->links, cand);
        return v;
    }
    return cand;
}

static bool tlfu_admit(void *st, uint32_t key, uint32_t victim_key)
{
    tlfu_state *s = st;
    return victim_key == UINT32_MAX || s->freq[key] > s->freq[victim_key];
}

static const char *const tlfu_opts[] = {"window", NULL};

const ms_policy_ops ms_policy_tinylfu = {
    .name = "tinylfu",
    .version = MS_POLICY_API_VERSION,
    .summary = "W-TinyLFU: LRU window + SLRU main, frequency-based admission, periodic reset",
    .opt_names = tlfu_opts,
    .create = tlfu_create,
    .destroy = tlfu_destroy,
    .on_hit = tlfu_on_hit,
    .on_insert = tlfu_on_insert,
    .on_evict = tlfu_on_evict,
    .victim = tlfu_victim,
    .admit = tlfu_admit,
};

/* twoq.c - 2Q (Johnson & Shasha, VLDB'94, the "full" version) on slots.
 *
 * A1in: FIFO of slots loaded once (first touch), at most Kin = n_slots/4 (option
 *       kin= fraction) before it gives up slots; hits there do not promote.
 * Am:   LRU of slots whose key was referenced again after leaving A1in.
 * A1out: ghost FIFO of keys recently evicted from A1in (no slot), at most
 *       Kout = n_slots/2 (option kout= fraction); a miss on a ghost key goes
 *       straight into Am.
 * Victim: the A1in tail when A1in holds more than Kin, else the Am tail (falling
 * back to the other list when pins leave no eligible slot). A one-time burst of
 * experts flows through A1in without flushing the frequently reused ones in Am.
 * O(1) per op. Ghost membership is a dense per-key list (n_layers*n_experts). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "policies_all.h"
#include "policy_util.h"

enum { Q_NONE = 0, Q_A1IN, Q_AM };

typedef struct twoq_state {
    uint32_t kin, kout;
    ms_ilinks slinks;  /* [n_slots] */
    ms_ilist a1in, am;
    uint8_t *where;    /* [n_slots] Q_* */
    ms_ilinks glinks;  /* [n_keys] ghost list links */
    ms_ilist ghost;
    uint8_t *in_ghost; /* [n_keys] */
} twoq_state;

static void twoq_destroy(void *st)
{
    twoq_state *s = st;
    if (!s) return;
    ms_ilinks_free(&s->slinks);
    ms_ilinks_free(&s->glinks);
    free(s->where);
    free(s->in_ghost);
    free(s);
}

static int twoq_create(const ms_policy_params *p, void **out, ms_err *err)
{
    double fin = ms_policy_opt(p, "kin", 0.25), fout = ms_policy_opt(p, "kout", 0.5);
    if (!(fin > 0 && fin < 1) || !(fout >= 0 && fout <= 64))
        return ms_errf(err, EINVAL, "2q: kin must be in (0,1) and kout in [0,64] (fractions of the slots)");
    twoq_state *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "2q: out of memory");
    uint32_t n_keys = p->n_layers * p->n_experts;
    s->kin = (uint32_t)fmax(1.0, floor(fin * p->n_slots));
    s->kout = (uint32_t)floor(fout * p->n_slots);
    s->where = calloc(p->n_slots, 1);
    s->in_ghost = calloc(n_keys, 1);
    if (!s->where || !s->in_ghost || ms_ilinks_init(&s->slinks, p->n_slots) < 0 ||
        ms_ilinks_init(&s->glinks, n_keys) < 0) {
        twoq_destroy(s);
        return ms_errf(err, ENOMEM, "2q: out of memory");
    }
    ms_ilist_init(&s->a1in);
    ms_ilist_init(&s->am);
    ms_ilist_init(&s->ghost);
    *out = s;
    return 0;
}

static void twoq_on_hit(void *st, uint32_t slot, uint32_t key)
{
    twoq_state *s = st;
    if (s->where[slot] == Q_AM) ms_ilist_move_head(&s->am, &s->slinks, slot);
}

static void twoq_on_insert(void *st, uint32_t slot, uint32_t key, bool prefetch)
{
    twoq_state *s = st;
    if (s->in_ghost[key]) {
        ms_ilist_unlink(&s->ghost, &s->glinks, key);
        s->in_ghost[key] = 0;
        s->where[slot] = Q_AM;
        ms_ilist_push_head(&s->am, &s->slinks, slot);
    } else {
        s->where[slot] = Q_A1IN;
        ms_ilist_push_head(&s->a1in, &s->slinks, slot);
    }
}

static void twoq_on_evict(void *st, uint32_t slot, uint32_t key)
{
    twoq_state *s = st;
    if (s->where[slot] == Q_A1IN) {
        ms_ilist_unlink(&s->a1in, &s->slinks, slot);
        if (s->kout > 0) {
            s->in_ghost[key] = 1;
            ms_ilist_push_head(&s->ghost, &s->glinks, key);
            while (s->ghost.count > s->kout) {
                uint32_t old = s->ghost.tail;
                ms_ilist_unlink(&s->ghost, &s->glinks, old);
                s->in_ghost[old] = 0;
            }
        }
    } else if (s->where[slot] == Q_AM) {
        ms_ilist_unlink(&s->am, &s->slinks, slot);
    }
    s->where[slot] = Q_NONE;
}

static int64_t twoq_victim(void *st, uint32_t key, uint32_t n_empty, ms_policy_eligible_fn ok, const void *ctx)
{
    twoq_state *s = st;
    ms_ilist *first = s->a1in.count > s->kin ? &s->a1in : &s->am;
    ms_ilist *second = first == &s->am ? &s->a1in : &s->am;
    uint32_t v = ms_ilist_last_eligible(first, &s->slinks, ok, ctx);
    if (v == MS_NIL) v = ms_ilist_last_eligible(second, &s->slinks, ok, ctx);
    return v == MS_NIL ? -1 : (int64_t)v;
}

static const char *const twoq_opts[] = {"kin", "kout", NULL};

const ms_policy_ops ms_policy_2q = {
    .name = "2q",
    .version = MS_POLICY_API_VERSION,
    .summary = "2Q: FIFO for first-time experts, LRU for re-referenced ones, ghost history",
    .opt_names = twoq_opts,
    .create = twoq_create,
    .destroy = twoq_destroy,
    .on_hit = twoq_on_hit,
    .on_insert = twoq_on_insert,
    .on_evict = twoq_on_evict,
    .victim = twoq_victim,
};

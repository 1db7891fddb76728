/* belady.c - Belady's MIN (the offline optimum for a demand-paged cache): evict
 * the resident expert whose next use is farthest in the future (never used again
 * = infinitely far; ties to the least recently used). Simulator only: it needs
 * the whole future access stream (set_future) and must be driven with exactly
 * that stream, which is what the simulator does.
 *
 * With the k-group constraint (the keys of one (token, layer) may not evict each
 * other) this is the usual upper bound the traces README reports; it is not a
 * proof of optimality under that constraint, but no online policy beat it in
 * any of our experiments (tests check belady >= every policy on random traces).
 *
 * next[i] = position of the next access to keys[i] after i (precomputed in one
 * backward pass); a cursor follows the access stream. Resident slots sit in a
 * min-heap keyed by -(next use). O(log n) per op. */
#include <errno.h>
#include <stdlib.h>

#include "policies_all.h"
#include "policy_util.h"

#define NEVER UINT32_MAX

typedef struct belady_state {
    uint32_t n_keys;
    const uint32_t *keys;
    size_t n, cursor;
    uint32_t *next;     /* [n] next position of keys[i], NEVER if none */
    uint32_t *next_of;  /* [n_keys] next position >= cursor of each key */
    ms_iheap heap;      /* resident slots by (-next use, last use) */
    uint64_t clock;
} belady_state;

static void belady_destroy(void *st)
{
    belady_state *s = st;
    if (!s) return;
    free(s->next);
    free(s->next_of);
    ms_iheap_free(&s->heap);
    free(s);
}

static int belady_create(const ms_policy_params *p, void **out, ms_err *err)
{
    belady_state *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "belady: out of memory");
    s->n_keys = p->n_layers * p->n_experts;
    s->next_of = malloc((size_t)s->n_keys * sizeof *s->next_of);
    if (!s->next_of || ms_iheap_init(&s->heap, p->n_slots) < 0) {
        belady_destroy(s);
        return ms_errf(err, ENOMEM, "belady: out of memory");
    }
    for (uint32_t k = 0; k < s->n_keys; k++) s->next_of[k] = NEVER;
    *out = s;
    return 0;
}

static int belady_set_future(void *st, const uint32_t *keys, size_t n, ms_err *err)
{
    belady_state *s = st;
    if (n >= NEVER) return ms_errf(err, E2BIG, "belady: %zu accesses is more than supported (2^32-1)", n);
    free(s->next);
    s->next = malloc((n ? n : 1) * sizeof *s->next);
    if (!s->next) return ms_errf(err, ENOMEM, "belady: out of memory for %zu accesses", n);
    for (uint32_t k = 0; k < s->n_keys; k++) s->next_of[k] = NEVER;
    for (size_t i = n; i-- > 0;) {
        uint32_t k = keys[i];
        if (k >= s->n_keys) return ms_errf(err, EINVAL, "belady: access %zu: key %u out of range", i, k);
        s->next[i] = s->next_of[k];
        s->next_of[k] = (uint32_t)i;
    }
    s->keys = keys;
    s->n = n;
    s->cursor = 0;
    return 0;
}

/* Next use of key after the access being made now; advances the cursor when the
 * caller follows the announced stream. */
static uint32_t consume(belady_state *s, uint32_t key, bool access)
{
    if (access && s->cursor < s->n && s->keys[s->cursor] == key) {
        uint32_t nu = s->next[s->cursor++];
        s->next_of[key] = nu;
        return nu;
    }
    return s->next_of[key];
}

static void belady_touch(belady_state *s, uint32_t slot, uint32_t key, bool access)
{
    uint32_t nu = consume(s, key, access);
    ms_iheap_set(&s->heap, slot, -(double)nu, ++s->clock);
}

static void belady_on_hit(void *st, uint32_t slot, uint32_t key) { belady_touch(st, slot, key, true); }

static void belady_on_insert(void *st, uint32_t slot, uint32_t key, bool prefetch)
{
    belady_touch(st, slot, key, !prefetch);
}

static void belady_on_evict(void *st, uint32_t slot, uint32_t key)
{
    belady_state *s = st;
    ms_iheap_remove(&s->heap, slot);
}

static int64_t belady_victim(void *st, uint32_t key, uint32_t n_empty, ms_policy_eligible_fn ok, const void *ctx)
{
    belady_state *s = st;
    uint32_t v = ms_iheap_min_eligible(&s->heap, ok, ctx);
    return v == MS_NIL ? -1 : (int64_t)v;
}

/* A prefetch is worth it only if the key is used before the victim is. */
static bool belady_admit(void *st, uint32_t key, uint32_t victim_key)
{
    belady_state *s = st;
    return victim_key == UINT32_MAX || s->next_of[key] < s->next_of[victim_key];
}

const ms_policy_ops ms_policy_belady = {
    .name = "belady",
    .version = MS_POLICY_API_VERSION,
    .flags = MS_POLICY_NEEDS_FUTURE,
    .summary = "offline optimum: evict the expert used farthest in the future (simulator only)",
    .create = belady_create,
    .destroy = belady_destroy,
    .on_hit = belady_on_hit,
    .on_insert = belady_on_insert,
    .on_evict = belady_on_evict,
    .victim = belady_victim,
    .admit = belady_admit,
    .set_future = belady_set_future,
};

/* policy_util.c - see policy_util.h. Lists are intrusive (prev/next arrays indexed
 * by node id), the heap is a classic array binary heap with a position index so a
 * slot's entry can be updated or removed in O(log n). */
#include "policy_util.h"

#include <errno.h>
#include <stdlib.h>

int ms_ilinks_init(ms_ilinks *l, uint32_t n)
{
    l->prev = malloc((size_t)(n ? n : 1) * sizeof *l->prev);
    l->next = malloc((size_t)(n ? n : 1) * sizeof *l->next);
    if (!l->prev || !l->next) {
        ms_ilinks_free(l);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) l->prev[i] = l->next[i] = MS_NIL;
    return 0;
}

void ms_ilinks_free(ms_ilinks *l)
{
    free(l->prev);
    free(l->next);
    l->prev = l->next = NULL;
}

void ms_ilist_init(ms_ilist *q)
{
    q->head = q->tail = MS_NIL;
    q->count = 0;
}

void ms_ilist_push_head(ms_ilist *q, ms_ilinks *l, uint32_t x)
{
    l->prev[x] = MS_NIL;
    l->next[x] = q->head;
    if (q->head != MS_NIL) l->prev[q->head] = x;
    q->head = x;
    if (q->tail == MS_NIL) q->tail = x;
    q->count++;
}

void ms_ilist_unlink(ms_ilist *q, ms_ilinks *l, uint32_t x)
{
    uint32_t p = l->prev[x], n = l->next[x];
    if (p != MS_NIL) l->next[p] = n; else q->head = n;
    if (n != MS_NIL) l->prev[n] = p; else q->tail = p;
    l->prev[x] = l->next[x] = MS_NIL;
    q->count--;
}

uint32_t ms_ilist_last_eligible(const ms_ilist *q, const ms_ilinks *l, ms_policy_eligible_fn ok, const void *ctx)
{
    for (uint32_t x = q->tail; x != MS_NIL; x = l->prev[x])
        if (ok(ctx, x)) return x;
    return MS_NIL;
}

/* ---- heap ---- */

int ms_iheap_init(ms_iheap *h, uint32_t cap)
{
    size_t c = cap ? cap : 1;
    h->n = 0;
    h->cap = cap;
    h->heap = malloc(c * sizeof *h->heap);
    h->pos = malloc(c * sizeof *h->pos);
    h->score = malloc(c * sizeof *h->score);
    h->stamp = malloc(c * sizeof *h->stamp);
    h->tmp = malloc(c * sizeof *h->tmp);
    if (!h->heap || !h->pos || !h->score || !h->stamp || !h->tmp) {
        ms_iheap_free(h);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < cap; i++) h->pos[i] = MS_NIL;
    return 0;
}

void ms_iheap_free(ms_iheap *h)
{
    free(h->heap);
    free(h->pos);
    free(h->score);
    free(h->stamp);
    free(h->tmp);
    h->heap = h->pos = h->tmp = NULL;
    h->score = NULL;
    h->stamp = NULL;
}

static inline bool less(const ms_iheap *h, uint32_t a, uint32_t b)
{
    if (h->score[a] != h->score[b]) return h->score[a] < h->score[b];
    if (h->stamp[a] != h->stamp[b]) return h->stamp[a] < h->stamp[b];
    return a < b;
}

static inline void place(ms_iheap *h, uint32_t i, uint32_t slot)
{
    h->heap[i] = slot;
    h->pos[slot] = i;
}

static void sift_up(ms_iheap *h, uint32_t i)
{
    uint32_t x = h->heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!less(h, x, h->heap[p])) break;
        place(h, i, h->heap[p]);
        i = p;
    }
    place(h, i, x);
}

static void sift_down(ms_iheap *h, uint32_t i)
{
    uint32_t x = h->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && less(h, h->heap[c + 1], h->heap[c])) c++;
        if (!less(h, h->heap[c], x)) break;
        place(h, i, h->heap[c]);
        i = c;
    }
    place(h, i, x);
}

void ms_iheap_set(ms_iheap *h, uint32_t slot, double score, uint64_t stamp)
{
    h->score[slot] = score;
    h->stamp[slot] = stamp;
    if (h->pos[slot] == MS_NIL) {
        place(h, h->n++, slot);
        sift_up(h, h->n - 1);
    } else {
        uint32_t i = h->pos[slot];
        sift_up(h, i);
        sift_down(h, h->pos[slot]);
    }
}

void ms_iheap_remove(ms_iheap *h, uint32_t slot)
{
    uint32_t i = h->pos[slot];
    if (i == MS_NIL) return;
    h->pos[slot] = MS_NIL;
    h->n--;
    if (i == h->n) return;
    uint32_t x = h->heap[h->n];
    place(h, i, x);
    sift_up(h, i);
    sift_down(h, h->pos[x]);
}

uint32_t ms_iheap_min_eligible(ms_iheap *h, ms_policy_eligible_fn ok, const void *ctx)
{
    /* Pop ineligible minima aside, take the first eligible one, push the others
     * back: O((s + 1) log n) for s skipped (pinned / loading) slots. */
    uint32_t ns = 0, found = MS_NIL;
    while (h->n > 0) {
        uint32_t top = h->heap[0];
        if (ok(ctx, top)) {
            found = top;
            break;
        }
        h->tmp[ns++] = top;
        ms_iheap_remove(h, top);
    }
    for (uint32_t i = 0; i < ns; i++) {
        uint32_t s = h->tmp[i];
        place(h, h->n++, s);
        sift_up(h, h->n - 1);
    }
    return found;
}

void ms_iheap_rebuild(ms_iheap *h)
{
    if (h->n < 2) return;
    for (uint32_t i = h->n / 2; i-- > 0;) sift_down(h, i);
}

/* policy_util.h - building blocks shared by the eviction policies: an intrusive
 * doubly linked list over slot indices (recency order, O(1) touch/unlink) and an
 * indexed binary min-heap over slot indices ordered by (score, stamp) with O(log n)
 * update/remove, plus "first eligible" searches on both that skip pinned slots.
 * Internal to policies/: not part of the cache API. */
#ifndef MS_POLICY_UTIL_H
#define MS_POLICY_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

#define MS_NIL UINT32_MAX

/* ---- intrusive list: nodes are slot (or key) indices 0..n-1; prev/next arrays
 * are shared by several lists as long as a node is in at most one list. */
typedef struct ms_ilist {
    uint32_t head, tail; /* head = most recent, tail = least recent */
    uint32_t count;
} ms_ilist;

typedef struct ms_ilinks {
    uint32_t *prev, *next; /* [n] */
} ms_ilinks;

int ms_ilinks_init(ms_ilinks *l, uint32_t n);
void ms_ilinks_free(ms_ilinks *l);
void ms_ilist_init(ms_ilist *q);
void ms_ilist_push_head(ms_ilist *q, ms_ilinks *l, uint32_t x);
void ms_ilist_unlink(ms_ilist *q, ms_ilinks *l, uint32_t x);
static inline void ms_ilist_move_head(ms_ilist *q, ms_ilinks *l, uint32_t x)
{
    ms_ilist_unlink(q, l, x);
    ms_ilist_push_head(q, l, x);
}
/* Least recent eligible node walking from the tail, or MS_NIL. */
uint32_t ms_ilist_last_eligible(const ms_ilist *q, const ms_ilinks *l, ms_policy_eligible_fn ok, const void *ctx);

/* ---- indexed min-heap over slots, ordered by (score asc, stamp asc). */
typedef struct ms_iheap {
    uint32_t n, cap;
    uint32_t *heap;   /* [cap] slot ids */
    uint32_t *pos;    /* [cap] index in heap or MS_NIL */
    double *score;    /* [cap] */
    uint64_t *stamp;  /* [cap] tie-break: smaller goes first */
    uint32_t *tmp;    /* [cap] scratch for eligible search */
} ms_iheap;

int ms_iheap_init(ms_iheap *h, uint32_t cap);
void ms_iheap_free(ms_iheap *h);
/* Insert or update slot with (score, stamp). */
void ms_iheap_set(ms_iheap *h, uint32_t slot, double score, uint64_t stamp);
void ms_iheap_remove(ms_iheap *h, uint32_t slot);
static inline bool ms_iheap_has(const ms_iheap *h, uint32_t slot) { return h->pos[slot] != MS_NIL; }
/* Smallest eligible slot, or MS_NIL; the heap is unchanged afterwards. */
uint32_t ms_iheap_min_eligible(ms_iheap *h, ms_policy_eligible_fn ok, const void *ctx);
/* Re-establish heap order after scores were changed in place (O(n)). */
void ms_iheap_rebuild(ms_iheap *h);

#endif

/* experts.h - how the forward pass gets routed experts: one interface, several
 * backings (everything resident; the streaming expert cache).
 *
 * Per MoE layer the forward pass does:
 *     acquire(layer, ids, n)      request n distinct experts; hits become usable
 *                                 at once, misses are queued as one I/O batch
 *     ... computes the shared expert while reads run ...
 *     next(&ptrs) x n             each call returns one acquired expert that is
 *                                 ready (hits first, then in completion order)
 *                                 with the payload pointer of each of its ranges
 *     release()                   unpin everything acquired
 * The forward pass never depends on the order experts arrive in: it writes each
 * expert's output to its own buffer and sums them in a fixed order, so the
 * result is bit-identical whatever the backing, budget or policy.
 */
#ifndef MS_EXPERTS_H
#define MS_EXPERTS_H

#include <stdint.h>

#include "err.h"
#include "model.h"

typedef struct ms_expert_ptrs {
    int pos;                                  /* index into the acquired ids[] */
    const void *p[MS_EXPERT_RANGES];          /* payload of each range (NULL if absent) */
} ms_expert_ptrs;

typedef struct ms_expert_src_ops {
    const char *name;
    /* Most experts one acquire may hold at once (>= top_k). */
    int (*max_acquire)(void *impl);
    int (*acquire)(void *impl, int layer, const int *ids, int n, ms_err *err);
    int (*next)(void *impl, ms_expert_ptrs *out, ms_err *err);
    void (*release)(void *impl);
    /* Optional: hint that these experts of `layer` will be needed soon. */
    void (*prefetch)(void *impl, int layer, const int *ids, int n);
    void (*destroy)(void *impl);
} ms_expert_src_ops;

typedef struct ms_expert_src {
    const ms_expert_src_ops *ops;
    void *impl;
} ms_expert_src;

/* The "everything resident" backing: every routed expert is read into memory at
 * creation (through the same byte ranges the cache uses). progress may be NULL. */
int ms_experts_resident_create(const ms_model *m, ms_expert_src *out, uint64_t *bytes_out, ms_err *err);

/* The page-cache baseline: shard files mapped read-only, experts used in place. */
int ms_experts_mmap_create(const ms_model *m, ms_expert_src *out, ms_err *err);

#endif

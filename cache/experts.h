/* experts.h - routed experts as the cache layer sees them: where each expert's
 * bytes are (the expert table) and how the forward pass gets them (the expert
 * source, one interface with several backings).
 *
 * The expert table is pure data filled by the model store: for every (MoE
 * layer, expert) the byte ranges of its parts in the shard files. A "part" is
 * one tensor slice of the expert (gate weight, gate scales, ..., down biases,
 * a projection bias): the model decides how many parts its experts have
 * (n_parts <= MS_MAX_EXPERT_PARTS) and which projection each one belongs to;
 * everything below (cache slots, I/O, the simulator) only moves byte ranges.
 *
 * The expert source, per MoE layer of a forward pass:
 *     acquire(layer, ids, n)      request n distinct experts; hits become usable
 *                                 at once, misses are queued as one I/O batch
 *     ... computes the shared expert while reads run ...
 *     next(&ptrs) x n             each call returns one acquired expert that is
 *                                 ready (hits first, then in completion order)
 *                                 with the payload pointer of each of its parts
 *     release()                   unpin everything acquired
 * The forward pass never depends on the order experts arrive in: it writes each
 * expert's output to its own buffer and sums them in a fixed order, so the
 * result is bit-identical whatever the backing, budget or policy.
 *
 * Backings: the streaming cache (expert_cache.h, the default) and the in-memory
 * source below (every expert read at start-up, or the shard files mapped and
 * used in place: the page-cache baseline).
 */
#ifndef MS_EXPERTS_H
#define MS_EXPERTS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Most parts one expert may have (gate/up/down x weight/scales/biases = 9 for
 * MLX affine; projection biases add up to 3 more). */
#define MS_MAX_EXPERT_PARTS 16

/* One byte range of a shard file. len 0 = the part is absent for this expert. */
typedef struct ms_range {
    int file;
    uint64_t offset, len;
} ms_range;

typedef struct ms_expert_table {
    const char *const *files;  /* [n_files] shard paths (file indices of ranges) */
    int n_files;
    int n_layers;              /* model layers */
    const int *moe_index;      /* [n_layers]: MoE layer index, or -1 (no routed experts) */
    int n_moe_layers;
    int n_experts;             /* routed experts per MoE layer */
    int top_k;                 /* experts per token */
    int n_parts;               /* parts per expert (<= MS_MAX_EXPERT_PARTS) */
    const ms_range *ranges;    /* [n_moe_layers][n_experts][n_parts] */
} ms_expert_table;

/* The n_parts ranges of expert e of MoE layer li. */
static inline const ms_range *ms_expert_ranges(const ms_expert_table *t, int li, int e)
{
    return t->ranges + ((size_t)li * (size_t)t->n_experts + (size_t)e) * (size_t)t->n_parts;
}

typedef struct ms_expert_ptrs {
    int pos;                                  /* index into the acquired ids[] */
    const void *p[MS_MAX_EXPERT_PARTS];       /* payload of each part (NULL if absent) */
} ms_expert_ptrs;

typedef struct ms_expert_src_ops {
    const char *name;
    /* Most experts one acquire may hold at once (>= top_k). */
    int (*max_acquire)(void *impl);
    int (*acquire)(void *impl, int layer, const int *ids, int n, ms_err *err);
    int (*next)(void *impl, ms_expert_ptrs *out, ms_err *err);
    void (*release)(void *impl);
    /* Optional: hint that these experts of `layer` will be needed soon. Never
     * fails the forward pass: a refused or failed prefetch only costs a later
     * demand read (and a failed read is reported by that read). */
    void (*prefetch)(void *impl, int layer, const int *ids, int n);
    void (*destroy)(void *impl);
} ms_expert_src_ops;

typedef struct ms_expert_src {
    const ms_expert_src_ops *ops;
    void *impl;
} ms_expert_src;

/* In-memory expert sources over a table (the table must outlive the source).
 *   MS_EXPERTS_RESIDENT  every expert is read at creation into one allocation of
 *                        ours (counted in *bytes_out); the page cache is dropped
 *                        behind each read;
 *   MS_EXPERTS_MMAP      the shard files are mapped read-only and experts used in
 *                        place: the page cache is the cache (the baseline that
 *                        --ram does not bound; *bytes_out = 0). */
typedef enum ms_experts_mem_mode { MS_EXPERTS_RESIDENT = 0, MS_EXPERTS_MMAP = 1 } ms_experts_mem_mode;
int ms_experts_mem_create(const ms_expert_table *t, ms_experts_mem_mode mode, ms_expert_src *out, uint64_t *bytes_out,
                          ms_err *err);

#endif

/* expert_cache.h - the streaming expert cache: a RAM arena of whole expert slots
 * filled from the shard files through the I/O layer, behind the expert-source
 * interface of cache/experts.h.
 *
 *   arena (mmap'd anonymous, MADV_HUGEPAGE, optional mlock, NUMA-interleaved)
 *   +----------------------------------------------------------------------+
 *   | class 0: slot 0 | slot 1 | ... | class 1: slot 0 | ...               |
 *   +----------------------------------------------------------------------+
 *   one slot = the parts of one expert (n_parts byte ranges of the expert
 *   table), each at its own aligned offset; for MLX affine experts:
 *   | gate.w (+A) | gate.s (+A) | gate.b (+A) | up.w ... | down.b (+A) |
 *   each range buffer holds the O_DIRECT aligned superset of the payload; the
 *   payload starts at (file offset mod A) inside it.
 *
 * Size classes: layers whose experts need the same slot size share a class
 * (uniform recipes: one class; mixed recipes such as dq4: several). The cache
 * bytes are split so every class holds the same fraction of its experts, and
 * every class holds at least 2 x top_k slots. The split is computed ONCE, by the
 * budget plan (with the I/O alignment the files really need), and handed to
 * ms_cache_create: `plan`, `simulate --ram` and `run` agree on every slot. Each class has its own slot-table
 * core (cache/slots.h) and policy instance; the bookkeeping (hits, victims) is
 * exactly what `moestream simulate` replays.
 *
 * Per MoE layer: acquire() maps and pins every requested expert; the misses'
 * ranges are queued and submitted as ONE I/O batch; next() hands out hits
 * first, then experts in completion order; release() unpins. prefetch() maps
 * predicted experts without pinning and reads them behind the demand reads.
 * A failed read marks the slot EMPTY again and surfaces as an error naming the
 * file, offset and errno; the run stops cleanly.
 */
#ifndef MS_EXPERT_CACHE_H
#define MS_EXPERT_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "experts.h"
#include "io.h"
#include "policy.h"

#define MS_CACHE_MAX_CLASSES 16
#define MS_CACHE_MAX_LAYERS 4096       /* MoE layers a layout describes */

typedef struct ms_cache_class {
    uint64_t slot_bytes;               /* bytes of one slot (aligned range buffers) */
    uint64_t range_off[MS_MAX_EXPERT_PARTS]; /* offset of each part's buffer in a slot */
    int n_layers;                      /* MoE layers in this class */
    int64_t n_experts_total;           /* n_layers * E */
    int64_t n_slots;                   /* filled in by ms_cache_layout_split */
} ms_cache_class;

typedef struct ms_cache_layout {
    uint64_t align;
    int top_k;
    int n_classes;
    ms_cache_class cls[MS_CACHE_MAX_CLASSES];
    int n_moe_layers;
    uint8_t layer_class[MS_CACHE_MAX_LAYERS]; /* [n_moe_layers] */
    uint64_t min_bytes;                /* 2 * top_k slots of every class */
    uint64_t all_bytes;                /* every expert cached */
    uint64_t used_bytes;               /* whole slots after ms_cache_layout_split */
} ms_cache_layout;

/* Slot geometry of a table's experts for an I/O alignment (>= 4096). */
int ms_cache_layout_init(const ms_expert_table *t, uint64_t align, ms_cache_layout *lay, ms_err *err);
/* Split cache_bytes into slots per class; returns the bytes actually used. */
uint64_t ms_cache_layout_split(ms_cache_layout *lay, uint64_t cache_bytes);
/* Slots of every class together. */
int64_t ms_cache_layout_slots(const ms_cache_layout *lay);
/* The smallest class: what one acquire may pin is ms_sched_wave(this, top_k). */
int64_t ms_cache_layout_min_slots(const ms_cache_layout *lay);

typedef struct ms_cache_opts {
    const ms_cache_layout *layout; /* split by the plan (ms_cache_layout_split); its
                                      alignment must be a multiple of what the files need */
    const char *io_backend;   /* "uring" (default), "pread", "fault:..." */
    uint64_t io_min_align;    /* alignment the I/O layer must use at least (0 = 4096) */
    unsigned queue_depth;     /* 0 = default */
    const char *policy;       /* spec "name[:opt=v...]"; NULL = default */
    const char *profile_path; /* optional policy profile */
    bool mlock;               /* lock the arena in RAM */
} ms_cache_opts;

typedef struct ms_cache_stats {
    uint64_t accesses, hits, misses, hits_loading, evictions;
    uint64_t expert_reads;    /* experts read (demand + prefetch) */
    uint64_t bytes_read;      /* bytes read from files (aligned) */
    uint64_t bytes_payload;
    double read_busy_s;       /* wall time with reads in flight */
    double wait_s;            /* time compute waited on reads */
    double submit_s;          /* time spent submitting reads */
    uint64_t prefetch_issued, prefetch_used, prefetch_wasted, prefetch_refused;
    bool prefetch_stopped;           /* prefetching judged wasteful and stopped */
    uint64_t prefetch_stopped_at;    /* token at which it stopped */
    int64_t slots;            /* total slots */
    uint64_t arena_bytes;
    bool mlocked, hugepages;
    int numa_nodes;
} ms_cache_stats;

typedef struct ms_cache ms_cache;

int ms_cache_create(const ms_expert_table *t, const ms_cache_opts *o, ms_cache **out, ms_err *err);
void ms_cache_destroy(ms_cache *c);
/* The expert-source view (ops + impl) for the forward pass. */
ms_expert_src ms_cache_source(ms_cache *c);
void ms_cache_get_stats(const ms_cache *c, ms_cache_stats *st);
ms_io *ms_cache_io(ms_cache *c);
/* Token boundary (policy aging); the engine calls it before each token. */
void ms_cache_tick(ms_cache *c);
const char *ms_cache_policy_name(const ms_cache *c);

#endif

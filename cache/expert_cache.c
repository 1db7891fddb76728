/* expert_cache.c - the streaming expert cache (design in expert_cache.h).
 *
 * Steps of one MoE layer, as the forward pass drives them:
 *   1. acquire: keys -> ms_slots_acquire (pins all; misses get LOADING slots);
 *      for each miss queue one read per range into the slot's range buffers;
 *      one ms_io_submit for the whole layer.
 *   2. next: return a READY acquired expert if there is one (hits first);
 *      otherwise reap completions (blocking) until one becomes READY.
 *   3. release: unpin.
 * A completion carries (class, slot, range) in its tag; when the last range of
 * a slot lands the slot becomes READY. Any failed read breaks the cache: all
 * reads in flight are drained (the kernel must stop writing into the arena)
 * and every later call returns the first error.
 */
#include "expert_cache.h"

#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "invariant.h"
#include "schedule.h"
#include "slots.h"
#include "util.h"

/* ---- layout ---------------------------------------------------------------- */

static void range_bounds(const ms_expert_table *t, int li, uint64_t align, uint64_t *bound)
{
    for (int r = 0; r < MS_MAX_EXPERT_PARTS; r++) bound[r] = 0;
    for (int e = 0; e < t->n_experts; e++) {
        const ms_range *rg = ms_expert_ranges(t, li, e);
        for (int r = 0; r < t->n_parts; r++) {
            if (!rg[r].len) continue;
            ms_io_span sp;
            ms_io_span_align(align, rg[r].offset, rg[r].len, &sp);
            if (sp.aligned_len > bound[r]) bound[r] = sp.aligned_len;
        }
    }
}

int ms_cache_layout_init(const ms_expert_table *t, uint64_t align, ms_cache_layout *lay, ms_err *err)
{
    memset(lay, 0, sizeof *lay);
    lay->align = align;
    lay->top_k = t->top_k;
    int nl = t->n_moe_layers;
    if (nl > MS_CACHE_MAX_LAYERS)
        return ms_errf(err, EINVAL, "expert cache: %d MoE layers (at most %d)", nl, MS_CACHE_MAX_LAYERS);
    if (t->n_parts < 1 || t->n_parts > MS_MAX_EXPERT_PARTS)
        return ms_errf(err, EINVAL, "expert cache: %d parts per expert (1..%d)", t->n_parts, MS_MAX_EXPERT_PARTS);
    lay->n_moe_layers = nl;
    uint64_t bounds[MS_CACHE_MAX_CLASSES][MS_MAX_EXPERT_PARTS];
    for (int li = 0; li < nl; li++) {
        uint64_t b[MS_MAX_EXPERT_PARTS];
        range_bounds(t, li, align, b);
        int c;
        for (c = 0; c < lay->n_classes; c++)
            if (!memcmp(bounds[c], b, sizeof b)) break;
        if (c == lay->n_classes) {
            if (c == MS_CACHE_MAX_CLASSES) {
                /* Too many distinct layouts: merge into the largest-bound class. */
                for (int r = 0; r < MS_MAX_EXPERT_PARTS; r++)
                    if (b[r] > bounds[c - 1][r]) bounds[c - 1][r] = b[r];
                c = c - 1;
            } else {
                memcpy(bounds[c], b, sizeof b);
                lay->n_classes++;
            }
        }
        lay->layer_class[li] = (uint8_t)c;
        lay->cls[c].n_layers++;
    }
    for (int c = 0; c < lay->n_classes; c++) {
        ms_cache_class *k = &lay->cls[c];
        uint64_t off = 0;
        for (int r = 0; r < MS_MAX_EXPERT_PARTS; r++) {
            k->range_off[r] = off;
            off += bounds[c][r];
        }
        k->slot_bytes = off;
        k->n_experts_total = (int64_t)k->n_layers * t->n_experts;
        lay->min_bytes += 2ull * (uint64_t)t->top_k * k->slot_bytes;
        lay->all_bytes += (uint64_t)k->n_experts_total * k->slot_bytes;
    }
    return 0;
}

uint64_t ms_cache_layout_split(ms_cache_layout *lay, uint64_t cache_bytes)
{
    int K = lay->top_k;
    uint64_t used = 0;
    double f = lay->all_bytes ? (double)cache_bytes / (double)lay->all_bytes : 0;
    if (f > 1) f = 1;
    for (int c = 0; c < lay->n_classes; c++) {
        ms_cache_class *k = &lay->cls[c];
        int64_t n = (int64_t)(f * (double)k->n_experts_total);
        if (n < 2 * K) n = 2 * K;
        if (n > k->n_experts_total) n = k->n_experts_total;
        k->n_slots = n;
        used += (uint64_t)n * k->slot_bytes;
    }
    /* Rounding up to the per-class minimum may overshoot: take slots back from
     * the classes that hold the most. */
    while (used > cache_bytes && cache_bytes >= lay->min_bytes) {
        int best = -1;
        for (int c = 0; c < lay->n_classes; c++)
            if (lay->cls[c].n_slots > 2 * K && (best < 0 || lay->cls[c].n_slots > lay->cls[best].n_slots)) best = c;
        if (best < 0) break;
        lay->cls[best].n_slots--;
        used -= lay->cls[best].slot_bytes;
    }
    lay->used_bytes = used;
    return used;
}

int64_t ms_cache_layout_slots(const ms_cache_layout *lay)
{
    int64_t n = 0;
    for (int c = 0; c < lay->n_classes; c++) n += lay->cls[c].n_slots;
    return n;
}

int64_t ms_cache_layout_min_slots(const ms_cache_layout *lay)
{
    int64_t mn = INT64_MAX;
    for (int c = 0; c < lay->n_classes; c++) mn = MS_MIN(mn, lay->cls[c].n_slots);
    return lay->n_classes ? mn : 0;
}

/* ---- the cache ------------------------------------------------------------ */

typedef struct cls_state {
    ms_slots *slots;
    uint8_t *arena;      /* first slot of this class */
    uint8_t *pending;    /* [n_slots] ranges still in flight */
} cls_state;

struct ms_cache {
    const ms_expert_table *t;
    ms_cache_layout lay;
    ms_io *io;
    uint8_t *arena;
    uint64_t arena_bytes;
    bool mlocked, hugepages;
    int numa_nodes;
    char policy_name[64];
    char *policy_spec;
    cls_state cls[MS_CACHE_MAX_CLASSES];
    /* the current group */
    int g_layer, g_class, g_n;
    uint32_t *g_keys;    /* [max group] */
    ms_slot_ref *g_refs; /* [max group] */
    uint8_t *g_done;     /* [max group] returned by next() */
    int g_cap;
    /* failure */
    int broken;          /* first error (negative errno) */
    ms_err broken_err;
    /* stats */
    uint64_t expert_reads, prefetch_issued;
    uint64_t wait_ns;
    uint64_t submit_ns;       /* time inside ms_io_submit (blocking submission shows here) */
    uint64_t ticks;
    uint32_t *pf_keys;        /* [n_experts] prefetch scratch */
    bool *pf_mapped;
    int64_t *pf_slots;
    bool pf_stopped;          /* prefetch stopped itself */
    uint64_t pf_stopped_at;   /* token (tick) at which it did */
    uint64_t pf_used0, pf_wasted0; /* counters at the start of the judging window */
    ms_io_cqe cqe[256];
};

static uint64_t make_tag(int cls, uint32_t slot, int range)
{
    return ((uint64_t)cls << 40) | ((uint64_t)slot << 8) | (uint64_t)range;
}

static int fail(ms_cache *c, int rc, const ms_err *e)
{
    if (!c->broken) {
        c->broken = rc;
        c->broken_err = *e;
    }
    return rc;
}

/* Process completions; returns -errno on the first failed read. */
static int handle_cqes(ms_cache *c, int n, ms_err *err)
{
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const ms_io_cqe *q = &c->cqe[i];
        int k = (int)(q->tag >> 40);
        uint32_t slot = (uint32_t)((q->tag >> 8) & 0xffffffffu);
        cls_state *cs = &c->cls[k];
        if (q->res < 0) {
            if (ms_slots_state(cs->slots, slot) == MS_SLOT_LOADING) ms_slots_fail(cs->slots, slot);
            if (!rc) rc = (int)q->res;
            continue;
        }
        MS_INVARIANT(k < c->lay.n_classes && slot < (uint32_t)c->lay.cls[k].n_slots);
        MS_INVARIANT(cs->pending[slot] > 0 || ms_slots_state(cs->slots, slot) != MS_SLOT_LOADING);
        if (cs->pending[slot] && --cs->pending[slot] == 0 && ms_slots_state(cs->slots, slot) == MS_SLOT_LOADING)
            ms_slots_ready(cs->slots, slot);
    }
    if (rc < 0) {
        if (!err->code) ms_errf(err, -rc, "expert read failed");
        fail(c, rc, err);
        /* Drain: nothing may still write into the arena. */
        ms_err tmp = {0};
        while (ms_io_pending(c->io) > 0) {
            int r = ms_io_reap(c->io, c->cqe, (int)MS_ARRAY_LEN(c->cqe), 1, &tmp);
            if (r <= 0) break;
        }
    }
    return rc;
}

/* Queue the reads of one expert into a slot. */
static int queue_expert(ms_cache *c, int k, int li, int expert, uint32_t slot, ms_err *err)
{
    const ms_range *ranges = ms_expert_ranges(c->t, li, expert);
    const ms_cache_class *cl = &c->lay.cls[k];
    cls_state *cs = &c->cls[k];
    ms_io_req req[MS_MAX_EXPERT_PARTS];
    int n = 0;
    uint8_t *base = cs->arena + (uint64_t)slot * cl->slot_bytes;
    for (int r = 0; r < c->t->n_parts; r++) {
        const ms_range *rg = &ranges[r];
        if (!rg->len) continue;
        req[n++] = (ms_io_req){.file = (uint32_t)rg->file, .offset = rg->offset, .len = rg->len,
                               .dst = base + cl->range_off[r], .tag = make_tag(k, slot, r)};
    }
    cs->pending[slot] = (uint8_t)n;
    int rc = ms_io_queue(c->io, req, n, err);
    if (rc < 0) return rc;
    c->expert_reads++;
    return 0;
}

static int c_max_acquire(void *impl)
{
    ms_cache *c = impl;
    /* the schedule's wave: headroom for prefetched slots still loading */
    return ms_sched_wave(ms_cache_layout_min_slots(&c->lay), c->t->top_k);
}

static int c_acquire(void *impl, int layer, const int *ids, int n, ms_err *err)
{
    ms_cache *c = impl;
    if (c->broken) {
        *err = c->broken_err;
        return c->broken;
    }
    if (layer < 0 || layer >= c->t->n_layers || c->t->moe_index[layer] < 0)
        return ms_errf(err, EINVAL, "layer %d has no routed experts", layer);
    int li = c->t->moe_index[layer];
    if (n > c->g_cap) return ms_errf(err, EINVAL, "acquire of %d experts exceeds the cache's group size", n);
    int k = c->lay.layer_class[li];
    cls_state *cs = &c->cls[k];
    int E = c->t->n_experts;
    for (int i = 0; i < n; i++) c->g_keys[i] = (uint32_t)(li * E + ids[i]);
    int misses;
    for (;;) {
        ms_err e2 = {0};
        misses = ms_slots_acquire(cs->slots, c->g_keys, n, c->g_refs, &e2);
        if (misses != -ENOSPC) {
            if (misses < 0) {
                *err = e2;
                return misses;
            }
            break;
        }
        /* Slots are busy loading prefetches: let some finish. */
        if (ms_io_pending(c->io) == 0)
            return ms_errf(err, ENOSPC, "expert cache: %d experts requested but only %lld slots in this size class",
                           n, (long long)c->lay.cls[k].n_slots);
        uint64_t t0 = ms_now_ns();
        int r = ms_io_reap(c->io, c->cqe, (int)MS_ARRAY_LEN(c->cqe), 1, err);
        c->wait_ns += ms_now_ns() - t0;
        if (r < 0) return fail(c, r, err);
        int rc = handle_cqes(c, r, err);
        if (rc < 0) return rc;
    }
    c->g_layer = li;
    c->g_class = k;
    c->g_n = n;
    memset(c->g_done, 0, (size_t)n);
    if (misses > 0) {
        for (int i = 0; i < n; i++) {
            if (c->g_refs[i].outcome != MS_SLOT_MISS) continue;
            int rc = queue_expert(c, k, li, ids[i], c->g_refs[i].slot, err);
            if (rc < 0) {
                ms_slots_release(cs->slots, c->g_refs, n);
                c->g_n = 0;
                return fail(c, rc, err);
            }
        }
        uint64_t t0 = ms_now_ns();
        int rc = ms_io_submit(c->io, err);
        c->submit_ns += ms_now_ns() - t0;
        if (rc < 0) {
            ms_slots_release(cs->slots, c->g_refs, n);
            c->g_n = 0;
            return fail(c, rc, err);
        }
    }
    return 0;
}

static void fill_ptrs(ms_cache *c, int pos, ms_expert_ptrs *out)
{
    int k = c->g_class, li = c->g_layer;
    const ms_cache_class *cl = &c->lay.cls[k];
    int E = c->t->n_experts;
    int expert = (int)(c->g_keys[pos] - (uint32_t)(li * E));
    const ms_range *rg = ms_expert_ranges(c->t, li, expert);
    uint8_t *base = c->cls[k].arena + (uint64_t)c->g_refs[pos].slot * cl->slot_bytes;
    out->pos = pos;
    for (int r = 0; r < c->t->n_parts; r++)
        out->p[r] = rg[r].len ? base + cl->range_off[r] + rg[r].offset % c->lay.align : NULL;
}

static int c_next(void *impl, ms_expert_ptrs *out, ms_err *err)
{
    ms_cache *c = impl;
    cls_state *cs = &c->cls[c->g_class];
    /* Collect whatever completed while we computed (never blocks): slots become
     * READY sooner and the driver refills the device queue. */
    if (!c->broken && ms_io_pending(c->io) > 0) {
        int r = ms_io_reap(c->io, c->cqe, (int)MS_ARRAY_LEN(c->cqe), 0, err);
        if (r < 0) return fail(c, r, err);
        int rc = handle_cqes(c, r, err);
        if (rc < 0) return rc;
    }
    for (;;) {
        if (c->broken) {
            *err = c->broken_err;
            return c->broken;
        }
        int remaining = 0;
        for (int i = 0; i < c->g_n; i++) {
            if (c->g_done[i]) continue;
            remaining++;
            if (ms_slots_state(cs->slots, c->g_refs[i].slot) == MS_SLOT_READY) {
                MS_INVARIANT(ms_slots_pins(cs->slots, c->g_refs[i].slot) > 0); /* acquired = pinned */
                c->g_done[i] = 1;
                fill_ptrs(c, i, out);
                return i;
            }
        }
        if (!remaining) return ms_errf(err, EINVAL, "next() called more often than experts were acquired");
        uint64_t t0 = ms_now_ns();
        int r = ms_io_reap(c->io, c->cqe, (int)MS_ARRAY_LEN(c->cqe), 1, err);
        c->wait_ns += ms_now_ns() - t0;
        if (r < 0) return fail(c, r, err);
        if (r == 0 && ms_io_pending(c->io) == 0) {
            /* A slot we wait for can only stop LOADING through a completion. */
            return fail(c, ms_errf(err, EIO, "expert cache: waiting for a read that is not in flight"), err);
        }
        int rc = handle_cqes(c, r, err);
        if (rc < 0) return rc;
    }
}

static void c_release(void *impl)
{
    ms_cache *c = impl;
    if (c->g_n) ms_slots_release(c->cls[c->g_class].slots, c->g_refs, c->g_n);
    c->g_n = 0;
}

/* Judge prefetching every MS_PREFETCH_WINDOW outcomes: stop when the window had
 * more prefetched experts evicted unused than used (it then costs reads and
 * evicts useful experts for less than it saves). */
#define MS_PREFETCH_WINDOW 64

static void prefetch_judge(ms_cache *c)
{
    uint64_t used = 0, wasted = 0;
    for (int k = 0; k < c->lay.n_classes; k++) {
        const ms_slots_stats *st = ms_slots_get_stats(c->cls[k].slots);
        used += st->prefetch_used;
        wasted += st->prefetch_wasted;
    }
    uint64_t du = used - c->pf_used0, dw = wasted - c->pf_wasted0;
    if (du + dw < MS_PREFETCH_WINDOW) return;
    if (dw > du) {
        c->pf_stopped = true;
        c->pf_stopped_at = c->ticks;
    }
    c->pf_used0 = used;
    c->pf_wasted0 = wasted;
}

static void c_prefetch(void *impl, int layer, const int *ids, int n)
{
    ms_cache *c = impl;
    if (c->broken || c->pf_stopped) return;
    if (layer < 0 || layer >= c->t->n_layers || c->t->moe_index[layer] < 0) return;
    prefetch_judge(c);
    if (c->pf_stopped) return;
    int li = c->t->moe_index[layer];
    int k = c->lay.layer_class[li];
    int E = c->t->n_experts;
    /* a prediction names distinct experts of one layer: at most E */
    if (n > E) n = E;
    for (int i = 0; i < n; i++) {
        c->pf_keys[i] = (uint32_t)(li * E + ids[i]);
        c->pf_mapped[i] = ms_slots_lookup(c->cls[k].slots, c->pf_keys[i]) >= 0;
    }
    ms_err err = {0};
    int ins = ms_slots_prefetch_set(c->cls[k].slots, c->pf_keys, n, c->pf_slots, &err);
    if (ins <= 0) return; /* refused (no eligible slot) or a bad id: nothing was queued */
    for (int i = 0; i < n; i++) {
        if (c->pf_mapped[i] || c->pf_slots[i] < 0) continue;
        int rc = queue_expert(c, k, li, ids[i], (uint32_t)c->pf_slots[i], &err);
        if (rc < 0) {
            fail(c, rc, &err); /* the next acquire reports it */
            return;
        }
        c->prefetch_issued++;
    }
    int rc = ms_io_submit(c->io, &err);
    if (rc < 0) fail(c, rc, &err);
}

static void c_destroy(void *impl) { ms_cache_destroy(impl); }

static const ms_expert_src_ops cache_ops = {
    .name = "cache",
    .max_acquire = c_max_acquire,
    .acquire = c_acquire,
    .next = c_next,
    .release = c_release,
    .prefetch = c_prefetch,
    .destroy = c_destroy,
};

ms_expert_src ms_cache_source(ms_cache *c)
{
    ms_expert_src s = {&cache_ops, c};
    return s;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Fault in (and zero) every page of [p, p+len). */
static void populate(uint8_t *p, size_t len)
{
    if (madvise(p, len, MADV_POPULATE_WRITE) == 0) return;
    for (size_t i = 0; i < len; i += 4096) p[i] = 0; /* kernels before 5.14 */
}

int ms_cache_create(const ms_expert_table *t, const ms_cache_opts *o, ms_cache **out, ms_err *err)
{
    if (!o->layout || o->layout->n_moe_layers != t->n_moe_layers || o->layout->top_k != t->top_k)
        return ms_errf(err, EINVAL, "expert cache: the layout does not describe this model's experts");
    ms_cache *c = calloc(1, sizeof *c);
    if (!c) return ms_errf(err, ENOMEM, "out of memory");
    c->t = t;
    c->lay = *o->layout;
    int rc;
    /* 1. I/O over the shard files (same file indices as the expert table), with
     *    the alignment the plan sized the slots for. Deep enough that every read
     *    of a layer's misses (top-k experts x their parts in <= 1 MiB pieces) is in
     *    flight at once: the compute thread reaps only between experts, and reads
     *    still queued in the driver would wait for it. */
    ms_io_config ioc = {.backend = o->io_backend, .queue_depth = o->queue_depth ? o->queue_depth : 256,
                        .min_align = MS_MAX(c->lay.align, o->io_min_align)};
    rc = ms_io_open(&c->io, &ioc, t->files, t->n_files, err);
    if (rc < 0) goto fail;
    /* 2. the plan's split must hold for this alignment */
    if (ms_io_alignment(c->io) != c->lay.align) {
        rc = ms_errf(err, EINVAL, "expert cache: the files need %llu-byte aligned reads, the budget plan used %llu",
                     (unsigned long long)ms_io_alignment(c->io), (unsigned long long)c->lay.align);
        goto fail;
    }
    if (c->lay.used_bytes < c->lay.min_bytes || ms_cache_layout_min_slots(&c->lay) < 2 * t->top_k) {
        char a[32], b[32];
        rc = ms_errf(err, ENOMEM, "expert cache of %s is below the minimum %s (2 x top-%d experts per size class)",
                     ms_fmt_bytes(c->lay.used_bytes, a, sizeof a), ms_fmt_bytes(c->lay.min_bytes, b, sizeof b),
                     t->top_k);
        goto fail;
    }
    c->arena_bytes = c->lay.used_bytes;
    /* 3. the arena */
    c->arena = mmap(NULL, c->arena_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (c->arena == MAP_FAILED) {
        c->arena = NULL;
        rc = ms_errf(err, errno, "cannot map a %llu-byte expert cache: %s", (unsigned long long)c->arena_bytes,
                     strerror(errno));
        goto fail;
    }
    c->hugepages = madvise(c->arena, c->arena_bytes, MADV_HUGEPAGE) == 0;
    if (numa_available() >= 0 && numa_num_configured_nodes() > 1) {
        numa_interleave_memory(c->arena, c->arena_bytes, numa_all_nodes_ptr);
        c->numa_nodes = numa_num_configured_nodes();
    } else {
        c->numa_nodes = 1;
    }
    if (o->mlock) {
        if (mlock(c->arena, c->arena_bytes) < 0) {
            rc = ms_errf(err, errno, "--mlock: cannot lock %llu bytes: %s (raise RLIMIT_MEMLOCK or drop --mlock)",
                         (unsigned long long)c->arena_bytes, strerror(errno));
            goto fail;
        }
        c->mlocked = true;
    }
    /* Commit the arena now: it is the budget's to use, and faulting it in page by
     * page inside O_DIRECT submissions later stalls the reads (get_user_pages in
     * the submitting thread, THP compaction). Then register it as io_uring fixed
     * buffers (pinned once, no per-read page pinning); the I/O layer falls back
     * quietly where the kernel refuses (RLIMIT_MEMLOCK). */
    if (!c->mlocked) populate(c->arena, c->arena_bytes);
    if ((rc = ms_io_register_buffers(c->io, c->arena, c->arena_bytes, err)) < 0) goto fail;
    /* 4. slot tables and policies, one per size class */
    char spec[256];
    snprintf(spec, sizeof spec, "%s", o->policy && *o->policy ? o->policy : ms_policy_default());
    c->policy_spec = strdup(spec);
    const ms_policy_ops *pops;
    ms_policy_params pp = {0};
    if (!c->policy_spec || (rc = ms_policy_parse_spec(c->policy_spec, &pops, &pp, err)) < 0) {
        if (!c->policy_spec) rc = ms_errf(err, ENOMEM, "out of memory");
        goto fail;
    }
    if (pops->flags & MS_POLICY_NEEDS_FUTURE) {
        rc = ms_errf(err, EINVAL, "policy %s needs the future and only runs in `moestream simulate`", pops->name);
        goto fail;
    }
    pp.profile_path = o->profile_path;
    snprintf(c->policy_name, sizeof c->policy_name, "%s", pops->name);
    uint8_t *p = c->arena;
    int64_t maxg = 0;
    for (int k = 0; k < c->lay.n_classes; k++) {
        const ms_cache_class *cl = &c->lay.cls[k];
        ms_slots_cfg sc = {.n_slots = (uint32_t)cl->n_slots, .n_layers = (uint32_t)t->n_moe_layers,
                           .n_experts = (uint32_t)t->n_experts, .top_k = (uint32_t)t->top_k, .policy = pops,
                           .policy_params = &pp};
        if ((rc = ms_slots_create(&sc, &c->cls[k].slots, err)) < 0) goto fail;
        c->cls[k].arena = p;
        c->cls[k].pending = calloc((size_t)cl->n_slots, 1);
        if (!c->cls[k].pending) {
            rc = ms_errf(err, ENOMEM, "out of memory");
            goto fail;
        }
        p += (uint64_t)cl->n_slots * cl->slot_bytes;
        maxg = MS_MAX(maxg, cl->n_slots);
    }
    c->g_cap = (int)MS_MAX(maxg, t->n_experts);
    c->g_keys = malloc((size_t)c->g_cap * sizeof *c->g_keys);
    c->g_refs = malloc((size_t)c->g_cap * sizeof *c->g_refs);
    c->g_done = malloc((size_t)c->g_cap);
    c->pf_keys = malloc((size_t)t->n_experts * sizeof *c->pf_keys);
    c->pf_mapped = malloc((size_t)t->n_experts * sizeof *c->pf_mapped);
    c->pf_slots = malloc((size_t)t->n_experts * sizeof *c->pf_slots);
    if (!c->g_keys || !c->g_refs || !c->g_done || !c->pf_keys || !c->pf_mapped || !c->pf_slots) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto fail;
    }
    *out = c;
    return 0;
fail:
    ms_cache_destroy(c);
    return rc;
}

void ms_cache_destroy(ms_cache *c)
{
    if (!c) return;
    ms_io_close(c->io); /* waits for reads in flight before the arena goes */
    for (int k = 0; k < MS_CACHE_MAX_CLASSES; k++) {
        ms_slots_destroy(c->cls[k].slots);
        free(c->cls[k].pending);
    }
    if (c->arena) munmap(c->arena, c->arena_bytes);
    free(c->policy_spec);
    free(c->pf_keys);
    free(c->pf_mapped);
    free(c->pf_slots);
    free(c->g_keys);
    free(c->g_refs);
    free(c->g_done);
    free(c);
}

void ms_cache_tick(ms_cache *c)
{
    c->ticks++;
    for (int k = 0; k < c->lay.n_classes; k++) ms_slots_tick(c->cls[k].slots);
}

ms_io *ms_cache_io(ms_cache *c) { return c->io; }

const char *ms_cache_policy_name(const ms_cache *c) { return c->policy_name; }

void ms_cache_get_stats(const ms_cache *c, ms_cache_stats *st)
{
    memset(st, 0, sizeof *st);
    for (int k = 0; k < c->lay.n_classes; k++) {
        const ms_slots_stats *s = ms_slots_get_stats(c->cls[k].slots);
        st->accesses += s->accesses;
        st->hits += s->hits;
        st->hits_loading += s->hits_loading;
        st->misses += s->misses;
        st->evictions += s->evictions;
        st->prefetch_used += s->prefetch_used;
        st->prefetch_wasted += s->prefetch_wasted;
        st->prefetch_refused += s->prefetch_refused;
        st->slots += c->lay.cls[k].n_slots;
    }
    ms_io_stats io;
    ms_io_get_stats(c->io, &io);
    st->expert_reads = c->expert_reads;
    st->prefetch_issued = c->prefetch_issued;
    st->bytes_read = io.bytes_read;
    st->bytes_payload = io.bytes_payload;
    st->read_busy_s = (double)io.busy_ns * 1e-9;
    st->wait_s = (double)c->wait_ns * 1e-9;
    st->submit_s = (double)c->submit_ns * 1e-9;
    st->arena_bytes = c->arena_bytes;
    st->mlocked = c->mlocked;
    st->hugepages = c->hugepages;
    st->numa_nodes = c->numa_nodes;
    st->prefetch_stopped = c->pf_stopped;
    st->prefetch_stopped_at = c->pf_stopped_at;
}

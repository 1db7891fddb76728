/* compute.c - kernel selection and the drivers the forward pass calls:
 * ms_matvec, ms_matmul, ms_ffn, ms_mat_get_row.
 *
 * Work is split over the pool in blocks of whole rows handed out through an
 * atomic counter (dynamic scheduling: the machine may be shared). Every output
 * element is computed by exactly one call of a row kernel whose result does not
 * depend on which rows it was called with, so the output is bit-identical for
 * any thread count and any split.
 *
 * ms_matmul (n tokens) picks one of two paths by n and the weight type only
 * (never by threads):
 *   n <  gemm_min_n: per row block, the multi-token row kernels (codes unpacked
 *       once per pair of tokens; the block's weights are read from memory once
 *       and stay in cache for all n tokens). Bit-identical to per-token matvec.
 *   n >= gemm_min_n: per tile of tile_rows() rows, dequantize to f32 into the
 *       thread's scratch and call single-threaded OpenBLAS sgemm. Tile
 *       boundaries depend only on the shape, so sgemm sees identical calls for
 *       any thread count. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "kernels_impl.h"
#include "util.h"

/* ---- selection ---------------------------------------------------------- */

static bool env_force_ref(void)
{
    const char *e = getenv("MOESTREAM_FORCE_REF");
    return e && *e && strcmp(e, "0") != 0;
}

#if defined(__x86_64__)
#if defined(__clang__) && __clang_major__ < 15
/* clang 14 (the fuzz build) lacks __builtin_cpu_supports("f16c"): ask CPUID. */
#include <cpuid.h>
static bool cpu_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#else
static bool cpu_f16c(void) { return __builtin_cpu_supports("f16c"); }
#endif
#endif

const ms_kern *ms_kern_by_name(const char *name)
{
    if (!name) return NULL;
    if (!strcmp(name, "ref")) return &ms_kern_ref;
#if defined(__x86_64__)
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_f16c();
    if (!strcmp(name, "avx2")) return avx2 ? &ms_kern_avx2 : NULL;
    if (!strcmp(name, "avx512"))
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
                   ? &ms_kern_avx512
                   : NULL;
#endif
#if defined(__aarch64__)
    if (!strcmp(name, "neon")) return &ms_kern_neon;
#endif
    return NULL;
}

const ms_kern *ms_kern_select(bool force_ref)
{
    /* The prefill GEMM runs OpenBLAS on one thread per tile (our pool splits
     * the work); also when no pool is ever created. */
    openblas_set_num_threads(1);
    if (force_ref || env_force_ref()) return &ms_kern_ref;
    const ms_kern *k = ms_kern_by_name(getenv("MOESTREAM_KERNELS"));
    if (k) return k;
    static const char *const best_first[] = {"avx512", "avx2", "neon"};
    for (size_t i = 0; i < MS_ARRAY_LEN(best_first); i++)
        if ((k = ms_kern_by_name(best_first[i]))) return k;
    return &ms_kern_ref;
}

const char *ms_kern_name(const ms_kern *k)
{
    return k ? k->name : "none";
}

/* ---- helpers ------------------------------------------------------------ */

/* Below this many weight bytes a matvec runs on the calling thread only. */
#define MS_PAR_MIN_BYTES (48 * 1024)

static int nthreads_of(const ms_compute *c)
{
    return ms_pool_size(c->pool);
}

/* Rows per scheduling block: ~8 blocks per thread, at least ~16 KiB of weights,
 * a multiple of 4 rows. */
static int64_t block_rows(const ms_mat *m, int nth)
{
    size_t rb = ms_mat_row_bytes(m) + 2 * ms_mat_sb_row_bytes(m);
    int64_t min_rows = (int64_t)((16 * 1024 + rb - 1) / rb);
    int64_t b = (m->rows + nth * 8 - 1) / (nth * 8);
    if (b < min_rows) b = min_rows;
    b = MS_ALIGN_UP(b, 4);
    return b > 0 ? b : 4;
}

const float *ms_kern_prep(const ms_kern *k, const ms_mat *m, const float *x, float *xp, float *xsum)
{
    const ms_wkern *wk = ms_kern_for(k, m);
    if (wk->prep) return wk->prep(m, x, xp, xsum);
    if (m->type == MS_WT_AFFINE) k->group_sums(x, m->cols, m->group_size, xsum);
    return x;
}

/* n input vectors prepared for m's row kernel. */
typedef struct xin {
    const ms_kern *k; /* table to use: c->kern, or the reference if out of memory */
    const float *X;   /* [n, cols]: the caller's X or the permuted copy */
    const float *xs;  /* [n, ng] group sums, NULL for dense */
    int64_t ng;
    float *heap;
} xin;

/* Prepare X[n, cols] into stack[cap] if it fits, else a malloc'd buffer. If
 * that allocation fails, fall back to the reference kernels, which need no
 * buffer (the only case where output could differ from the normal path). */
static void xin_prep(xin *in, const ms_kern *k, const ms_mat *m, const float *X, int n, float *stack, size_t cap)
{
    const ms_wkern *wk = ms_kern_for(k, m);
    in->k = k;
    in->X = X;
    in->xs = NULL;
    in->heap = NULL;
    in->ng = m->type == MS_WT_AFFINE ? m->cols / m->group_size : 0;
    size_t xpn = wk->prep ? (size_t)n * (size_t)m->cols : 0, need = xpn + (size_t)n * (size_t)in->ng;
    if (need == 0) return;
    float *buf = stack;
    if (need > cap) {
        buf = in->heap = malloc(need * sizeof(float));
        if (!buf) {
            in->k = &ms_kern_ref;
            return;
        }
    }
    float *xp = buf, *xs = buf + xpn;
    for (int t = 0; t < n; t++) {
        const float *xt = X + (size_t)t * (size_t)m->cols;
        const float *r = ms_kern_prep(k, m, xt, xp + (size_t)t * (size_t)m->cols, xs + (size_t)t * (size_t)in->ng);
        if (t == 0) in->X = r == xt ? X : xp;
    }
    in->xs = in->ng ? xs : NULL;
}

/* ---- matvec / small-n matmul -------------------------------------------- */

typedef struct mv_task {
    const ms_mat *m;
    const ms_wkern *wk;
    const float *X;  /* [n, cols] */
    const float *xs; /* [n, ng] or NULL */
    float *Y;        /* [n, rows] */
    int n;
    int64_t ng;
    int64_t block, nblocks;
    _Atomic int64_t next;
} mv_task;

static void mv_block(mv_task *t, int64_t b)
{
    const ms_mat *m = t->m;
    int64_t r0 = b * t->block, r1 = MS_MIN(m->rows, r0 + t->block);
    if (t->n > 1 && t->wk->rows_n && t->xs) {
        t->wk->rows_n(m, r0, r1, t->X, t->xs, t->n, t->Y + r0, m->rows);
        return;
    }
    for (int i = 0; i < t->n; i++)
        t->wk->rows(m, r0, r1, t->X + (size_t)i * (size_t)m->cols, t->xs ? t->xs + (size_t)i * t->ng : NULL,
                    t->Y + (size_t)i * (size_t)m->rows + r0);
}

static void mv_worker(void *arg, int tid, int nth)
{
    mv_task *t = arg;
    for (;;) {
        int64_t b = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (b >= t->nblocks) break;
        mv_block(t, b);
    }
}

static void run_rows(const ms_compute *c, const ms_mat *m, const xin *in, int n, float *Y)
{
    int nth = nthreads_of(c);
    mv_task t = {.m = m, .wk = ms_kern_for(in->k, m), .X = in->X, .xs = in->xs, .Y = Y, .n = n, .ng = in->ng};
    if (nth == 1 || ms_mat_bytes(m) < MS_PAR_MIN_BYTES) {
        t.block = m->rows;
        t.nblocks = 1;
        mv_block(&t, 0);
        return;
    }
    t.block = block_rows(m, nth);
    t.nblocks = (m->rows + t.block - 1) / t.block;
    atomic_init(&t.next, 0);
    ms_pool_run(c->pool, mv_worker, &t);
}

/* Stack room for the prepared input of one vector (cols <= 8192 at group 32). */
#define MS_XIN_STACK (8192 + 256)

void ms_matvec(const ms_compute *c, const ms_mat *m, const float *x, float *y)
{
    float stack[MS_XIN_STACK];
    xin in;
    xin_prep(&in, c->kern, m, x, 1, stack, MS_ARRAY_LEN(stack));
    run_rows(c, m, &in, 1, y);
    free(in.heap);
}

/* ---- large-n matmul: dequantized tiles + sgemm --------------------------- */

/* Rows per GEMM tile (a function of the shape only): ~1 MiB of f32 weights
 * (the per-thread scratch of the pool; 20% faster sgemm than 512 KiB tiles on
 * Zen 5), a multiple of 8 rows, between 8 and 128. */
static int64_t tile_rows(const ms_mat *m)
{
    int64_t r = (1024 * 1024 / 4) / m->cols;
    r = r / 8 * 8;
    if (r < 8) r = 8;
    if (r > 128) r = 128;
    return r;
}

typedef struct mm_task {
    const ms_mat *m;
    const ms_wkern *wk;
    ms_pool *pool;
    float *heap_buf; /* tile buffer when there is no pool */
    const float *X;
    float *Y;
    int n;
    int64_t tile, ntiles;
    _Atomic int64_t next;
} mm_task;

static void mm_worker(void *arg, int tid, int nth)
{
    mm_task *t = arg;
    const ms_mat *m = t->m;
    float *buf = t->pool ? ms_pool_scratch(t->pool, tid) : t->heap_buf;
    for (;;) {
        int64_t b = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (b >= t->ntiles) break;
        int64_t r0 = b * t->tile, r1 = MS_MIN(m->rows, r0 + t->tile);
        for (int64_t r = r0; r < r1; r++) t->wk->dequant(m, r, buf + (size_t)(r - r0) * (size_t)m->cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t->n, (int)(r1 - r0), (int)m->cols, 1.0f, t->X,
                    (int)m->cols, buf, (int)m->cols, 0.0f, t->Y + r0, (int)m->rows);
    }
}

/* 0 on success, -ENOMEM if no tile buffer could be had (caller falls back). */
static int matmul_gemm(const ms_compute *c, const ms_mat *m, const float *X, int n, float *Y)
{
    mm_task t = {.m = m, .wk = ms_kern_for(c->kern, m), .pool = c->pool, .X = X, .Y = Y, .n = n};
    t.tile = tile_rows(m);
    t.ntiles = (m->rows + t.tile - 1) / t.tile;
    size_t bytes = (size_t)t.tile * (size_t)m->cols * sizeof(float);
    if (c->pool) { /* the pool's per-thread scratch (also for a 1-thread pool) */
        if (ms_pool_reserve(c->pool, bytes) < 0) return -ENOMEM;
        atomic_init(&t.next, 0);
        ms_pool_run(c->pool, mm_worker, &t);
        return 0;
    }
    t.pool = NULL;
    t.heap_buf = ms_aligned_alloc(64, MS_ALIGN_UP(bytes, 64));
    if (!t.heap_buf) return -ENOMEM;
    atomic_init(&t.next, 0);
    mm_worker(&t, 0, 1);
    free(t.heap_buf);
    return 0;
}

void ms_matmul(const ms_compute *c, const ms_mat *m, const float *X, int n, float *Y)
{
    if (n <= 0) return;
    if (n == 1) {
        ms_matvec(c, m, X, Y);
        return;
    }
    const ms_wkern *wk = ms_kern_for(c->kern, m);
    if (wk->gemm_min_n > 0 && n >= wk->gemm_min_n && matmul_gemm(c, m, X, n, Y) == 0) return;
    float stack[MS_XIN_STACK];
    xin in;
    xin_prep(&in, c->kern, m, X, n, stack, MS_ARRAY_LEN(stack));
    run_rows(c, m, &in, n, Y);
    free(in.heap);
}

void ms_mat_get_row(const ms_kern *k, const ms_mat *m, int64_t r, float *out)
{
    ms_kern_for(k, m)->dequant(m, r, out);
}

/* ---- SwiGLU FFN ------------------------------------------------------------ */

size_t ms_ffn_scratch_floats(const ms_mat *gate, int n)
{
    return 2 * (size_t)(n > 0 ? n : 0) * (size_t)gate->rows;
}

typedef struct ffn1_task {
    const ms_mat *gate, *up;
    const ms_wkern *wg, *wu;
    const float *xg, *xu, *xs_g, *xs_u;
    float *g, *u;
    const ms_act *act;
    int64_t block, nblocks;
    _Atomic int64_t next;
} ffn1_task;

static void ffn1_block(ffn1_task *t, int64_t b)
{
    int64_t r0 = b * t->block, r1 = MS_MIN(t->gate->rows, r0 + t->block);
    t->wg->rows(t->gate, r0, r1, t->xg, t->xs_g, t->g + r0);
    t->wu->rows(t->up, r0, r1, t->xu, t->xs_u, t->u + r0);
    ms_act_mul(t->g + r0, t->u + r0, (int)(r1 - r0), t->act);
}

static void ffn1_worker(void *arg, int tid, int nth)
{
    ffn1_task *t = arg;
    for (;;) {
        int64_t b = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (b >= t->nblocks) break;
        ffn1_block(t, b);
    }
}

void ms_mat_apply(const ms_compute *c, const ms_mat *m, const float *X, int n, float *Y, bool exact)
{
    if (n == 1) {
        ms_matvec(c, m, X, Y);
    } else if (exact) { /* one matvec per row: the per-row arithmetic of decode */
        for (int i = 0; i < n; i++) ms_matvec(c, m, X + (size_t)i * (size_t)m->cols, Y + (size_t)i * (size_t)m->rows);
    } else {
        ms_matmul(c, m, X, n, Y);
    }
}

void ms_ffn(const ms_compute *c, const ms_mat *gate, const ms_mat *up, const ms_mat *down, const float *X, int n,
            float *Y, float *scratch)
{
    ms_ffn_act(c, gate, up, down, X, n, Y, scratch, NULL, false);
}

void ms_ffn_act(const ms_compute *c, const ms_mat *gate, const ms_mat *up, const ms_mat *down, const float *X, int n,
                float *Y, float *scratch, const ms_act *act, bool exact)
{
    if (exact && n > 1) {
        for (int i = 0; i < n; i++)
            ms_ffn_act(c, gate, up, down, X + (size_t)i * (size_t)gate->cols, 1, Y + (size_t)i * (size_t)down->rows,
                       scratch, act, false);
        return;
    }
    if (n <= 0) return;
    const int64_t inter = gate->rows;
    float *G = scratch, *U = scratch + (size_t)n * (size_t)inter;
    if (n > 1) {
        ms_matmul(c, gate, X, n, G);
        ms_matmul(c, up, X, n, U);
        ms_act_mul(G, U, (int)((size_t)n * (size_t)inter), act);
        ms_matmul(c, down, G, n, Y);
        return;
    }
    /* One token: gate and up rows of the same range in one pass, then silu*mul. */
    float sg[MS_XIN_STACK], su[MS_XIN_STACK];
    xin ing, inu;
    xin_prep(&ing, c->kern, gate, X, 1, sg, MS_ARRAY_LEN(sg));
    xin_prep(&inu, c->kern, up, X, 1, su, MS_ARRAY_LEN(su));
    ffn1_task t = {.gate = gate, .up = up, .g = G, .u = U, .act = act};
    t.wg = ms_kern_for(ing.k, gate);
    t.wu = ms_kern_for(inu.k, up);
    t.xg = ing.X;
    t.xu = inu.X;
    t.xs_g = ing.xs;
    t.xs_u = inu.xs;
    int nth = nthreads_of(c);
    if (nth == 1 || ms_mat_bytes(gate) + ms_mat_bytes(up) < MS_PAR_MIN_BYTES) {
        t.block = inter;
        t.nblocks = 1;
        ffn1_block(&t, 0);
    } else {
        t.block = block_rows(gate, nth);
        t.nblocks = (inter + t.block - 1) / t.block;
        atomic_init(&t.next, 0);
        ms_pool_run(c->pool, ffn1_worker, &t);
    }
    free(ing.heap);
    free(inu.heap);
    ms_matvec(c, down, G, Y);
}

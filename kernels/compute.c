/* compute.c - kernel selection and the drivers the forward pass calls:
 * ms_matvec, ms_matvec_multi, ms_matmul, ms_ffn, ms_ffn_multi, ms_mat_get_row,
 * and the scratch bound ms_compute_scratch_bytes.
 *
 * Work is split over the pool in blocks of whole rows handed out through an
 * atomic counter (dynamic scheduling: the machine may be shared). Every output
 * element is computed by exactly one call of a row kernel whose result does not
 * depend on which rows it was called with, so the output is bit-identical for
 * any thread count and any split.
 *
 * Row kernels (ms_matvec, ms_matvec_multi, ms_ffn_multi, and ms_matmul below
 * gemm_min_n): per row block, the multi-token row kernels unpack each code once
 * per batch of tokens and perform each token's operations in the single-token
 * order, so every output vector is bit-identical to ms_matvec on that vector
 * alone, whatever else is in the batch; the block's weights are read from
 * memory once for all vectors.
 *
 * ms_matmul with n >= gemm_min_n (prefill): per block of the table's gemm_rows
 * rows, the table's GEMM dequantizes column blocks into packed panels in the
 * thread's scratch and multiplies them with a register-blocked micro-kernel
 * (tables without one: dequantized row tiles + single-threaded OpenBLAS
 * sgemm). Blocks depend only on the shape, so the output is bit-identical for
 * any thread count; within float rounding of the matvec. */
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

/* Rows per scheduling block: ~8 blocks per thread, between ~16 KiB and
 * ~256 KiB of weights (a block stays in L2 while the multi-token kernels make
 * several passes over it), a multiple of 4 rows. */
static int64_t block_rows(const ms_mat *m, int nth)
{
    size_t rb = ms_mat_row_bytes(m) + 2 * ms_mat_sb_row_bytes(m);
    int64_t min_rows = (int64_t)((16 * 1024 + rb - 1) / rb), max_rows = (int64_t)(256 * 1024 / rb);
    int64_t b = (m->rows + nth * 8 - 1) / (nth * 8);
    if (b > max_rows) b = max_rows;
    if (b < min_rows) b = min_rows;
    b = MS_ALIGN_UP(b, 4);
    return b > 0 ? b : 4;
}

/* Run fn(arg, block) for blocks [0, nblocks) of `block` rows over the pool, or
 * inline as one block when the matrix is small or there is one thread. */
typedef struct blocks {
    void (*fn)(void *arg, int64_t b);
    void *arg;
    int64_t nblocks;
    _Atomic int64_t next;
} blocks;

static void blocks_worker(void *arg, int tid, int nth)
{
    blocks *bl = arg;
    for (;;) {
        int64_t b = atomic_fetch_add_explicit(&bl->next, 1, memory_order_relaxed);
        if (b >= bl->nblocks) break;
        bl->fn(bl->arg, b);
    }
}

/* Blocks of block_rows(shape) rows; on the calling thread alone when the
 * matrix is small or there is one thread. */
static void run_blocks(const ms_compute *c, int64_t rows, size_t bytes, const ms_mat *shape,
                       void (*fn)(void *, int64_t), void *arg, int64_t *block)
{
    int nth = nthreads_of(c);
    bool inline_ = nth == 1 || bytes < MS_PAR_MIN_BYTES;
    *block = block_rows(shape, inline_ ? 1 : nth);
    blocks bl = {.fn = fn, .arg = arg, .nblocks = (rows + *block - 1) / *block};
    atomic_init(&bl.next, 0);
    if (inline_)
        blocks_worker(&bl, 0, 1);
    else
        ms_pool_run(c->pool, blocks_worker, &bl);
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
    const ms_kern *k; /* table to use */
    const float *X;   /* [n, cols]: the caller's X or the permuted copy */
    const float *xs;  /* [n, ng] group sums, NULL for dense */
    int64_t ng;
} xin;

/* Floats the prepared input of n vectors needs (permuted copy + group sums). */
static size_t xin_floats(const ms_kern *k, const ms_mat *m, int n)
{
    int64_t ng = m->type == MS_WT_AFFINE ? m->cols / m->group_size : 0;
    return (size_t)n * ((ms_kern_for(k, m)->prep ? (size_t)m->cols : 0) + (size_t)ng);
}

/* Room for `need` floats of prepared input: the stack buffer if it fits, else
 * the pool's input buffer (kept between calls), else a 64-byte aligned heap
 * block (*heap, to free). NULL if none could be had. */
static float *xin_room(const ms_compute *c, size_t need, float *stack, size_t cap, float **heap)
{
    *heap = NULL;
    if (need <= cap) return stack;
    float *b = ms_pool_xbuf(c->pool, need * sizeof(float));
    return b ? b : (*heap = ms_aligned_alloc(64, need * sizeof(float)));
}

/* Prepare X[n, cols] for table k into buf (xin_floats(k, m, n) floats). */
static void xin_prep(xin *in, const ms_kern *k, const ms_mat *m, const float *X, int n, float *buf)
{
    const ms_wkern *wk = ms_kern_for(k, m);
    in->k = k;
    in->X = X;
    in->xs = NULL;
    in->ng = m->type == MS_WT_AFFINE ? m->cols / m->group_size : 0;
    if (xin_floats(k, m, n) == 0) return;
    float *xp = buf, *xs = buf + (wk->prep ? (size_t)n * (size_t)m->cols : 0);
    for (int t = 0; t < n; t++) {
        const float *xt = X + (size_t)t * (size_t)m->cols;
        const float *r = ms_kern_prep(k, m, xt, xp + (size_t)t * (size_t)m->cols, xs + (size_t)t * (size_t)in->ng);
        if (t == 0) in->X = r == xt ? X : xp;
    }
    in->xs = in->ng ? xs : NULL;
}

/* The reference kernels need no prepared input (they sum groups themselves):
 * the last resort of one vector whose input fits neither stack nor heap (the
 * only case where the output can differ from the selected table's). */
static void xin_ref(xin *in, const ms_mat *m, const float *X)
{
    *in = (xin){.k = &ms_kern_ref, .X = X, .ng = m->type == MS_WT_AFFINE ? m->cols / m->group_size : 0};
}

/* ---- matvec, multi-vector matvec ------------------------------------------ */

typedef struct mv_task {
    const ms_mat *m;
    const ms_wkern *wk;
    const float *X;  /* [n, cols] */
    const float *xs; /* [n, ng] or NULL */
    float *Y;        /* [n, rows] */
    int n;
    int64_t ng, block;
} mv_task;

static void mv_block(void *arg, int64_t b)
{
    mv_task *t = arg;
    const ms_mat *m = t->m;
    int64_t r0 = b * t->block, r1 = MS_MIN(m->rows, r0 + t->block);
    if (t->n > 1 && t->wk->rows_n) {
        t->wk->rows_n(m, r0, r1, t->X, t->xs, t->n, t->Y + r0, m->rows);
        return;
    }
    for (int i = 0; i < t->n; i++)
        t->wk->rows(m, r0, r1, t->X + (size_t)i * (size_t)m->cols, t->xs ? t->xs + (size_t)i * t->ng : NULL,
                    t->Y + (size_t)i * (size_t)m->rows + r0);
}

static void run_rows(const ms_compute *c, const ms_mat *m, const xin *in, int n, float *Y)
{
    mv_task t = {.m = m, .wk = ms_kern_for(in->k, m), .X = in->X, .xs = in->xs, .Y = Y, .n = n, .ng = in->ng};
    run_blocks(c, m->rows, ms_mat_bytes(m), m, mv_block, &t, &t.block);
}

/* Stack room for the prepared input of one vector (cols <= 8192 at group 32). */
#define MS_XIN_STACK (8192 + 256)

void ms_matvec_multi(const ms_compute *c, const ms_mat *m, const float *X, int B, float *Y)
{
    if (B <= 0) return;
    /* 64-byte aligned: the kernels load the prepared input in 64-byte vectors,
     * and a misaligned buffer splits every load across two lines (the AVX-512
     * 4-bit matvec from DRAM ran 1.4x slower at some stack offsets) */
    float stack[MS_XIN_STACK] __attribute__((aligned(64))), *heap;
    float *buf = xin_room(c, xin_floats(c->kern, m, B), stack, MS_ARRAY_LEN(stack), &heap);
    xin in;
    if (buf) {
        xin_prep(&in, c->kern, m, X, B, buf);
    } else if (B > 1) { /* one vector at a time: the same bits, weights read B times */
        for (int b = 0; b < B; b++)
            ms_matvec_multi(c, m, X + (size_t)b * (size_t)m->cols, 1, Y + (size_t)b * (size_t)m->rows);
        return;
    } else {
        xin_ref(&in, m, X);
    }
    run_rows(c, m, &in, B, Y);
    free(heap);
}

void ms_matvec(const ms_compute *c, const ms_mat *m, const float *x, float *y)
{
    ms_matvec_multi(c, m, x, 1, y);
}

/* ---- large-n matmul: the table's GEMM, or dequantized tiles + sgemm -------- */

/* OpenBLAS path: rows per tile (a function of the shape only), ~1 MiB of f32
 * weights, a multiple of 8 rows, between 8 and 128. */
static int64_t blas_tile_rows(int64_t cols)
{
    int64_t r = (1024 * 1024 / 4) / cols;
    r = r / 8 * 8;
    if (r < 8) r = 8;
    if (r > 128) r = 128;
    return r;
}

/* Rows per GEMM call and floats of per-thread scratch, for table k and width cols. */
static void gemm_geometry(const ms_kern *k, int64_t cols, int64_t *tile, size_t *buf_floats)
{
    if (k->gemm) {
        *tile = k->gemm_rows;
        *buf_floats = k->gemm_buf_floats;
    } else {
        *tile = blas_tile_rows(cols);
        *buf_floats = (size_t)*tile * (size_t)cols;
    }
}

/* Most per-thread GEMM scratch over widths <= max_cols (the OpenBLAS tile is
 * largest at 2048 columns: 128 rows x 2048). */
static size_t gemm_max_floats(const ms_kern *k, int64_t max_cols)
{
    int64_t tile;
    size_t f, f2;
    gemm_geometry(k, max_cols, &tile, &f);
    gemm_geometry(k, MS_MIN(max_cols, 2048), &tile, &f2);
    return MS_MAX(f, f2);
}

typedef struct mm_task {
    const ms_mat *m;
    const ms_kern *k;
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
    const ms_wkern *wk = ms_kern_for(t->k, m);
    float *buf = t->pool ? ms_pool_scratch(t->pool, tid) : t->heap_buf;
    for (;;) {
        int64_t b = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (b >= t->ntiles) break;
        int64_t r0 = b * t->tile, r1 = MS_MIN(m->rows, r0 + t->tile);
        if (t->k->gemm) {
            t->k->gemm(m, r0, r1, t->X, t->n, t->Y, m->rows, buf);
            continue;
        }
        for (int64_t r = r0; r < r1; r++) wk->dequant(m, r, 0, m->cols, buf + (size_t)(r - r0) * (size_t)m->cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t->n, (int)(r1 - r0), (int)m->cols, 1.0f, t->X,
                    (int)m->cols, buf, (int)m->cols, 0.0f, t->Y + r0, (int)m->rows);
    }
}

/* 0 on success, -ENOMEM if no tile buffer could be had (caller falls back). */
static int matmul_gemm(const ms_compute *c, const ms_mat *m, const float *X, int n, float *Y)
{
    mm_task t = {.m = m, .k = c->kern, .pool = c->pool, .X = X, .Y = Y, .n = n};
    size_t floats;
    gemm_geometry(c->kern, m->cols, &t.tile, &floats);
    t.ntiles = (m->rows + t.tile - 1) / t.tile;
    size_t bytes = floats * sizeof(float);
    atomic_init(&t.next, 0);
    if (c->pool) { /* the pool's per-thread scratch (also for a 1-thread pool) */
        if (ms_pool_reserve(c->pool, bytes) < 0) return -ENOMEM;
        ms_pool_run(c->pool, mm_worker, &t);
        return 0;
    }
    t.heap_buf = ms_aligned_alloc(64, MS_ALIGN_UP(bytes, 64));
    if (!t.heap_buf) return -ENOMEM;
    mm_worker(&t, 0, 1);
    free(t.heap_buf);
    return 0;
}

void ms_matmul(const ms_compute *c, const ms_mat *m, const float *X, int n, float *Y)
{
    if (n <= 0) return;
    const ms_wkern *wk = ms_kern_for(c->kern, m);
    if (n > 1 && wk->gemm_min_n > 0 && n >= wk->gemm_min_n && matmul_gemm(c, m, X, n, Y) == 0) return;
    ms_matvec_multi(c, m, X, n, Y);
}

void ms_mat_get_row(const ms_kern *k, const ms_mat *m, int64_t r, float *out)
{
    ms_kern_for(k, m)->dequant(m, r, 0, m->cols, out);
}

size_t ms_compute_scratch_bytes(const ms_kern *k, int nthreads, int64_t max_cols, int max_n)
{
    if (max_n < 1) max_n = 1;
    if (nthreads < 1) nthreads = 1;
    /* Prepared inputs (heap when they do not fit the stack): two at once in
     * ms_ffn_multi, each up to max_n x (cols + cols/32) floats, the second
     * from a 16-float boundary. */
    size_t xin = (2 * (size_t)max_n * (size_t)(max_cols + max_cols / 32 + 1) + 16) * sizeof(float);
    /* GEMM tiles: one per thread, when some type has a GEMM threshold <= max_n. */
    size_t floats = gemm_max_floats(k, max_cols), gemm = 0;
    for (int i = 0; i < 3; i++)
        if (k->dense[i].gemm_min_n > 0 && k->dense[i].gemm_min_n <= max_n) gemm = floats;
    for (int b = 0; b < 9; b++)
        if (k->affine[b].gemm_min_n > 0 && k->affine[b].gemm_min_n <= max_n) gemm = floats;
    return xin + (size_t)nthreads * MS_ALIGN_UP(gemm * sizeof(float), 64);
}

/* ---- SwiGLU FFN ------------------------------------------------------------ */

size_t ms_ffn_scratch_floats(const ms_mat *gate, int n)
{
    return 2 * (size_t)(n > 0 ? n : 0) * (size_t)gate->rows;
}

/* Gate and up rows of the same block for B vectors, then silu*mul:
 * G[b, r] = silu(gate_r . x_b) * (up_r . x_b). */
typedef struct ffn1_task {
    const ms_mat *gate, *up;
    xin ig, iu;
    float *G, *U; /* [B, inter] */
    const ms_act *act; /* NULL: plain SwiGLU */
    int B;
    int64_t block;
} ffn1_task;

static void rows_of(const ms_wkern *wk, const ms_mat *m, const xin *in, int64_t r0, int64_t r1, int B, float *Y)
{
    if (B > 1 && wk->rows_n) {
        wk->rows_n(m, r0, r1, in->X, in->xs, B, Y + r0, m->rows);
        return;
    }
    for (int b = 0; b < B; b++)
        wk->rows(m, r0, r1, in->X + (size_t)b * (size_t)m->cols, in->xs ? in->xs + (size_t)b * in->ng : NULL,
                 Y + (size_t)b * (size_t)m->rows + r0);
}

static void ffn1_block(void *arg, int64_t blk)
{
    ffn1_task *t = arg;
    const int64_t inter = t->gate->rows, r0 = blk * t->block, r1 = MS_MIN(inter, r0 + t->block);
    rows_of(ms_kern_for(t->ig.k, t->gate), t->gate, &t->ig, r0, r1, t->B, t->G);
    rows_of(ms_kern_for(t->iu.k, t->up), t->up, &t->iu, r0, r1, t->B, t->U);
    for (int b = 0; b < t->B; b++)
        ms_act_mul(t->G + (size_t)b * (size_t)inter + r0, t->U + (size_t)b * (size_t)inter + r0, (int)(r1 - r0),
                   t->act);
}

static void ffn_multi(const ms_compute *c, const ms_mat *gate, const ms_mat *up, const ms_mat *down, const float *X,
                      int B, float *Y, float *scratch, const ms_act *act)
{
    if (B <= 0) return;
    const int64_t inter = gate->rows;
    float stack[2 * MS_XIN_STACK] __attribute__((aligned(64))), *heap;
    ffn1_task t = {.gate = gate, .up = up, .G = scratch, .U = scratch + (size_t)B * (size_t)inter, .act = act, .B = B};
    /* up's input starts on a cache line too: see ms_matvec_multi */
    const size_t ng = MS_ALIGN_UP(xin_floats(c->kern, gate, B), 16), nu = xin_floats(c->kern, up, B);
    float *buf = xin_room(c, ng + nu, stack, MS_ARRAY_LEN(stack), &heap);
    if (buf) {
        xin_prep(&t.ig, c->kern, gate, X, B, buf);
        xin_prep(&t.iu, c->kern, up, X, B, buf + ng);
    } else if (B > 1) { /* one vector at a time: the same bits */
        for (int b = 0; b < B; b++)
            ffn_multi(c, gate, up, down, X + (size_t)b * (size_t)gate->cols, 1, Y + (size_t)b * (size_t)down->rows,
                      scratch, act);
        return;
    } else {
        xin_ref(&t.ig, gate, X);
        xin_ref(&t.iu, up, X);
    }
    run_blocks(c, inter, ms_mat_bytes(gate) + ms_mat_bytes(up), gate, ffn1_block, &t, &t.block);
    free(heap);
    ms_matvec_multi(c, down, t.G, B, Y);
}

void ms_ffn_multi(const ms_compute *c, const ms_mat *gate, const ms_mat *up, const ms_mat *down, const float *X,
                  int B, float *Y, float *scratch)
{
    ffn_multi(c, gate, up, down, X, B, Y, scratch, NULL);
}

void ms_mat_apply(const ms_compute *c, const ms_mat *m, const float *X, int n, float *Y, bool exact)
{
    if (n == 1 || exact) { /* row kernels: each row bit-identical to ms_matvec on it alone */
        ms_matvec_multi(c, m, X, n, Y);
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
    if (n <= 0) return;
    if (n == 1 || exact) { /* row kernels: each vector bit-identical to decode's */
        ffn_multi(c, gate, up, down, X, n, Y, scratch, act);
        return;
    }
    const int64_t inter = gate->rows;
    float *G = scratch, *U = scratch + (size_t)n * (size_t)inter;
    ms_matmul(c, gate, X, n, G);
    ms_matmul(c, up, X, n, U);
    ms_act_mul(G, U, (int)((size_t)n * (size_t)inter), act);
    ms_matmul(c, down, G, n, Y);
}

/* ---- single-query attention helpers ------------------------------------------ */

void ms_rows_dot_f32(const ms_kern *k, const float *K, int64_t n, int64_t d, const float *q, float *s)
{
    if (n <= 0) return;
    ms_mat m = {.type = MS_WT_F32, .rows = n, .cols = d, .w = K};
    ms_kern_for(k, &m)->rows(&m, 0, n, q, NULL, s);
}

void ms_axpy_f32(const ms_kern *k, float *y, float a, const float *x, int64_t n)
{
    k->axpy(y, a, x, n);
}

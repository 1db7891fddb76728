/* kernels_impl.h - layout of the kernel table (ms_kern) and the internal helpers
 * shared by the kernel files (kern_ref.c, kern_avx2.c, compute.c, pool.c) and the
 * kernel benchmark / tests. Not part of the forward-pass interface (kernels.h).
 *
 * Design: one table per implementation ("ref", "avx2"), each a const static
 * object selected once by ms_kern_select. For every weight type the table holds
 * a row-range matvec and a row dequantizer (the "per-type function table"):
 *   - dense f32 / f16 / bf16 at index MS_WT_F32 / MS_WT_F16 / MS_WT_BF16;
 *   - affine b-bit at affine[b] (b = 2,3,4,5,6,8; other slots NULL).
 * A row-range kernel computes y[r - r0] for r in [r0, r1). Its result for a row
 * must not depend on r0 / r1 (the determinism contract): SIMD kernels that do
 * several rows at once perform, per row, exactly the operations of the 1-row
 * path, so any split of the rows across threads gives bit-identical output.
 *
 * Affine kernels use y = sum_g s_g * (q_g . x_g) + b_g * xsum_g, where xsum[g]
 * is the sum of x over group g, computed once per input vector (group_sums).
 */
#ifndef MS_KERNELS_IMPL_H
#define MS_KERNELS_IMPL_H

#include "kernels.h"

/* y[r - r0] = W[r, :] . x for r in [r0, r1), x as returned by the type's prep.
 * xsum: per-group sums of x ([cols / group_size], affine only). The reference
 * kernels also accept xsum == NULL (they then sum each group themselves). */
typedef void (*ms_rows_fn)(const ms_mat *m, int64_t r0, int64_t r1, const float *x, const float *xsum, float *y);
/* out[0 .. c1-c0) = W[r, c0 .. c1) as f32 (affine: c0, c1 multiples of the
 * group size). Exact: every table gives the reference's bits. */
typedef void (*ms_dequant_fn)(const ms_mat *m, int64_t r, int64_t c0, int64_t c1, float *out);
/* Prepare one input vector x[cols] for `rows`: for affine, write the group sums
 * to xsum[cols/group_size]; if the kernel reads x in a permuted order (to match
 * how it unpacks codes), write that copy to xp[cols] and return xp, else return
 * x. NULL prep = x as is (+ group sums by the table's group_sums). */
typedef const float *(*ms_prep_fn)(const ms_mat *m, const float *x, float *xp, float *xsum);

/* Rows [r0, r1) for n tokens: Y[t*ldy + (r - r0)] = W[r, :] . X_t, with X_t =
 * X + t*cols (prepared) and its group sums at XS + t*(cols/group_size). Each
 * code is unpacked once for all tokens; the result for every token is
 * bit-identical to `rows` on that token alone. */
typedef void (*ms_rows_n_fn)(const ms_mat *m, int64_t r0, int64_t r1, const float *X, const float *XS, int n, float *Y,
                             int64_t ldy);

/* The kernels of one weight type. */
typedef struct ms_wkern {
    ms_rows_fn rows;
    ms_dequant_fn dequant;
    ms_prep_fn prep;
    ms_rows_n_fn rows_n; /* optional (NULL: `rows` once per token) */
    /* ms_matmul with n >= gemm_min_n tokens dequantizes row tiles and
     * multiplies them with the table's GEMM (or OpenBLAS sgemm); below, the
     * row kernels (0 = never: the reference). The crossover is measured per
     * table and type (docs/KERNELS.md). */
    int gemm_min_n;
} ms_wkern;

/* Prefill GEMM on rows [r0, r1) (at most gemm_rows of them, any weight type):
 * Y[t*ldy + r] = W[r, :] . X_t for t < n, X in natural order ([n, cols], no
 * prep). buf: gemm_buf_floats floats of per-thread scratch (64-byte aligned).
 * Each Y element is a function of its row and token only (not of n, the tile
 * or the thread). */
typedef void (*ms_gemm_fn)(const ms_mat *m, int64_t r0, int64_t r1, const float *X, int n, float *Y, int64_t ldy,
                           float *buf);

struct ms_kern {
    const char *name;
    ms_wkern dense[3];  /* by ms_wtype: MS_WT_F32, MS_WT_F16, MS_WT_BF16 */
    ms_wkern affine[9]; /* by bits: 2,3,4,5,6,8 */
    /* xsum[g] = sum of x[g*gs .. g*gs+gs) for g < cols/gs. */
    void (*group_sums)(const float *x, int64_t cols, int gs, float *xsum);
    /* The table's own prefill GEMM (NULL: dequantized tiles + OpenBLAS sgemm),
     * its rows per call and its scratch. */
    ms_gemm_fn gemm;
    int gemm_rows;
    size_t gemm_buf_floats;
    /* Sum of n floats read sequentially (the bench's memory-bandwidth probe). */
    double (*read_sum)(const float *p, size_t n);
    /* y[i] += a * x[i] for i < n (attention's weighted sum of cached rows). */
    void (*axpy)(float *y, float a, const float *x, int64_t n);
};

/* The scalar reference table (always available). */
extern const ms_kern ms_kern_ref;
#if defined(__x86_64__) || defined(_M_X64)
/* AVX2+FMA+F16C table (kern_avx2.c); only used when the CPU has them. */
extern const ms_kern ms_kern_avx2;
/* AVX-512 F/BW/VL/DQ table (kern_avx512.c); same condition. */
extern const ms_kern ms_kern_avx512;
#endif
#if defined(__aarch64__)
/* NEON table (kern_neon.c): baseline on AArch64. */
extern const ms_kern ms_kern_neon;
#endif

/* Prepare x for m's row kernel in table k (see ms_prep_fn). */
const float *ms_kern_prep(const ms_kern *k, const ms_mat *m, const float *x, float *xp, float *xsum);

/* Kernels of m's type in table k (never NULL for a validated m). */
static inline const ms_wkern *ms_kern_for(const ms_kern *k, const ms_mat *m)
{
    return m->type == MS_WT_AFFINE ? &k->affine[m->bits] : &k->dense[m->type];
}

/* Software prefetch of the weight streams MS_PF_DIST bytes ahead, for the SIMD
 * tables (non-temporal: the weights are used once; prefetchnta on x86). The
 * hardware prefetchers stop at 4 KiB pages; without this, rows longer than ~4K
 * columns ran ~40 percent slower from DRAM (2048 x 7168 4-bit: 11 -> 19 GB/s on
 * one Zen 5 core). A prefetch never faults. */
#define MS_PF_DIST 4096
static inline __attribute__((always_inline)) void ms_prefetch_lines(const void *p, size_t n)
{
    for (size_t o = 0; o < n; o += 64) __builtin_prefetch((const char *)p + MS_PF_DIST + o, 0, 0);
}
/* One prefetch per 64-byte line of the packed weights, issued by the group
 * (index g, gbytes bytes at wg) that starts closest after a line boundary. */
static inline __attribute__((always_inline)) void ms_prefetch_group(const uint8_t *wg, int64_t g, size_t gbytes)
{
    if ((size_t)g * gbytes % 64 < gbytes) ms_prefetch_lines(wg, gbytes);
}

/* Reference scalar kernels, exported for the tests and the SIMD tails. */
float ms_ref_dot_affine_row(const ms_mat *m, int64_t r, const float *x, const float *xsum);
float ms_ref_dot_dense_row(const ms_mat *m, int64_t r, const float *x);
void ms_ref_group_sums(const float *x, int64_t cols, int gs, float *xsum);

/* Per-thread scratch owned by the pool, for kernels that need a tile buffer.
 * ms_pool_reserve grows every thread's buffer to at least `bytes` (call it on
 * the calling thread while no task runs; returns 0 or -ENOMEM). ms_pool_scratch
 * returns thread tid's buffer (64-byte aligned). */
int ms_pool_reserve(ms_pool *p, size_t bytes);
void *ms_pool_scratch(ms_pool *p, int tid);
/* The calling thread's buffer of at least `bytes` (64-byte aligned; grown as
 * needed, kept until ms_pool_destroy; NULL if p is NULL or out of memory): the
 * prepared inputs of the row kernels. Only for the thread that calls
 * ms_pool_run, outside tasks; its contents do not survive the next call. */
void *ms_pool_xbuf(ms_pool *p, size_t bytes);

#endif

/* kern_simd.h - the SIMD kernels, written once over the mappings of
 * simd_map.h and included by each instruction-set file (kern_avx2.c,
 * kern_avx512.c, kern_neon.c) after it has defined its hooks. Everything here
 * is static: each file gets its own copy compiled for its instruction set.
 *
 * Hooks the including file defines first (all always-inline; bits and gs are
 * compile-time constants after inlining):
 *   ISA_MT                    tokens per pass of the multi-token row kernel
 *   ISA_CODES_MAX             most vectors one chunk of codes unpacks to
 *   isa_dot_chunks(bits, gs)  chunks of codes per group (matvec layout)
 *   isa_dot_codes(wg, bits, gs, c, q)  unpack chunk c of the group at wg into
 *                             q[0..nq) as f32 and return nq; vector v = c*nq + j
 *                             multiplies x[v*MSV_L ..) of the prepared input
 *                             (the table's prep permutes x to match)
 *   isa_dot_overread(bits, gs)  bytes those loads may read past a group's end
 *   isa_dot_interleave(bits, gs)  P: lane i of chunk vector j is element P*i + j
 *                             of the chunk (1: natural order)
 *   isa_dq_chunk(bits), isa_dq_codes(wg, bits, c, q), isa_dq_overread(bits)
 *                             the same in natural code order (dequantization)
 *   isa_sb_to_f32: nothing - the bf16/f16 loads of the mappings do it.
 *   ISA_Q4_BLOCK (optional)   4-bit rows go in blocks of 128 codes instead
 *                             (q4_groups): isa_q4raw, isa_q4_load(p),
 *                             isa_q4_load_part(p, L), isa_q4_code(raw, k) =
 *                             vector k (lane i = code 8i + k), and
 *                             isa_q4_spread(v, gs, ng) = per-lane group values
 *
 * Affine matvec, exact f32 activations (the algebra of kernels_impl.h):
 * per group, acc = sum_v q_v * x_v into four accumulators (vector v into
 * accumulator v & 3), combined as (a0 + a1) + (a2 + a3); the row sum is
 * sum_g s_g * acc_g (FMA with the broadcast scale into two accumulators, even
 * and odd groups) + sum_g b_g * xsum_g (a vector dot of the row's biases with
 * the per-group sums of x). Every row is computed by the same instructions
 * whatever rows a call covers, and a multi-token call performs each token's
 * operations in the single-token order: results depend neither on the row
 * split nor on the other tokens. Loads that may run past a row's packs read
 * the row's last groups from a zero-padded local copy instead.
 *
 * Dequantization is exact and bit-identical to the reference: s*q then +b as
 * two roundings (msv_opaque keeps GCC from contracting them into an FMA). */
#ifndef MS_KERN_SIMD_H
#define MS_KERN_SIMD_H

#include "kernels_impl.h"
#include "quant.h"
#include "util.h"

/* ---- scales / biases, group sums ------------------------------------------- */

/* n scales or biases of dtype t -> f32 (exact). Inlined, with a partial
 * vector for the tail: rows of a few groups (a 640-wide expert row has 10)
 * convert per row, and a call plus a scalar tail cost as much as the row. */
AINL void sb_to_f32(const void *src, ms_dtype t, int64_t n, float *dst)
{
    int64_t i = 0;
    if (t == MS_DT_BF16) {
        const uint16_t *s = src;
        for (; i + MSV_L <= n; i += MSV_L) msv_store(dst + i, msv_load_bf16(s + i));
        if (i < n) msv_store_part(dst + i, msv_load_bf16_part(s + i, n - i), n - i);
    } else if (t == MS_DT_F16) {
        const uint16_t *s = src;
        for (; i + MSV_L <= n; i += MSV_L) msv_store(dst + i, msv_load_f16(s + i));
        if (i < n) msv_store_part(dst + i, msv_load_f16_part(s + i, n - i), n - i);
    } else {
        memcpy(dst, src, (size_t)n * sizeof(float));
    }
}

/* xsum[g] = sum of group g of x: two accumulators over 2*MSV_L elements. */
static void group_sums_simd(const float *x, int64_t cols, int gs, float *xsum)
{
    for (int64_t g = 0; g < cols / gs; g++) {
        const float *xg = x + g * gs;
        msv a0 = msv_load(xg), a1 = msv_load(xg + MSV_L);
        for (int j = 2 * MSV_L; j < gs; j += 2 * MSV_L) {
            a0 = msv_add(a0, msv_load(xg + j));
            a1 = msv_add(a1, msv_load(xg + j + MSV_L));
        }
        xsum[g] = msv_hsum(msv_add(a0, a1));
    }
}

/* Input in natural order: only the group sums. */
static const float *prep_natural(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_simd(x, m->cols, m->group_size, xsum);
    return x;
}

/* Permuted input for unpackers that put code per*i + s of a block of
 * MSV_L*per into lane i of vector s: xp[b + MSV_L*s + i] = x[b + per*i + s]. */
static inline void permute_blocks(const float *x, float *xp, int64_t cols, const int per)
{
    for (int64_t b = 0; b < cols; b += MSV_L * per)
        for (int s = 0; s < per; s++)
            for (int i = 0; i < MSV_L; i++) xp[b + MSV_L * s + i] = x[b + per * i + s];
}

/* ---- row tails --------------------------------------------------------------- */

/* Largest over-read is 16 bytes past at most two groups of <= 96 bytes. */
#define TAIL_BYTES (2 * 96 + 16)

/* First group read from the padded copy: the groups within `over` bytes of the
 * row's end (ng if nothing is read past a group). */
AINL int64_t tail_start(int64_t ng, size_t gbytes, int over)
{
    if (over <= 0) return ng;
    int64_t nt = (int64_t)((over + (int64_t)gbytes - 1) / (int64_t)gbytes);
    return ng > nt ? ng - nt : 0;
}
AINL void tail_copy(uint8_t *tail, const uint8_t *w, int64_t t0, int64_t ng, size_t gbytes)
{
    size_t n = (size_t)(ng - t0) * gbytes;
    memcpy(tail, w + (size_t)t0 * gbytes, n);
    memset(tail + n, 0, 16);
}

/* ---- affine matvec ------------------------------------------------------------- */

/* For T tokens: out[t] = lanes of sum_j q_j * x_t[j] over one group (x in the
 * prepared layout, token t at xg + t*ldx). Codes are unpacked once for all T. */
AINL void group_dot(const uint8_t *wg, const float *xg, int64_t ldx, const int bits, const int gs, const int T,
                    msv *out)
{
    msv a[ISA_MT][4];
    for (int t = 0; t < T; t++)
        for (int k = 0; k < 4; k++) a[t][k] = msv_zero();
    const int nc = isa_dot_chunks(bits, gs);
    for (int c = 0; c < nc; c++) {
        msv q[ISA_CODES_MAX];
        const int nq = isa_dot_codes(wg, bits, gs, c, q);
        for (int j = 0; j < nq; j++) {
            const int v = c * nq + j;
            /* An accumulator's first product is a multiply: the same value as an
             * FMA onto +0 but for the sign of a zero, which cannot reach y (its
             * accumulators start at +0), and no register copies. Opaque so that
             * GCC does not contract it with the adds below into an FMA. */
            for (int t = 0; t < T; t++) {
                const msv xv = msv_load(xg + t * ldx + v * MSV_L);
                a[t][v & 3] = v < 4 ? msv_opaque(msv_mul(q[j], xv)) : msv_fma(q[j], xv, a[t][v & 3]);
            }
        }
    }
    for (int t = 0; t < T; t++) out[t] = msv_add(msv_add(a[t][0], a[t][1]), msv_add(a[t][2], a[t][3]));
}

/* Groups whose scales/biases are converted per batch (bounds the stack use). */
#define SB_CHUNK 256

/* One affine row: its codes, scales, biases and the padded copy of its last
 * groups (for unpackers that read past a group). */
typedef struct arow {
    const uint8_t *w;
    const char *sp, *bp;
    int64_t ng, t0; /* groups; first group read from tail */
    size_t gbytes, sbsz;
    uint8_t tail[TAIL_BYTES] __attribute__((aligned(64)));
} arow;

AINL void arow_init(arow *a, const ms_mat *m, int64_t r, const int bits, const int gs, bool copy_tail)
{
    a->ng = m->cols / gs;
    a->gbytes = (size_t)gs * bits / 8;
    a->sbsz = ms_dtype_size(m->sb_dtype);
    a->w = (const uint8_t *)m->w + (size_t)r * (size_t)a->ng * a->gbytes;
    a->sp = (const char *)m->scales + (size_t)(r * a->ng) * a->sbsz;
    a->bp = (const char *)m->biases + (size_t)(r * a->ng) * a->sbsz;
    a->t0 = tail_start(a->ng, a->gbytes, isa_dot_overread(bits, gs));
    if (copy_tail && a->t0 < a->ng) tail_copy(a->tail, a->w, a->t0, a->ng, a->gbytes);
}

#ifdef ISA_Q4_BLOCK
/* 4-bit rows in blocks of 128 codes (64 bytes): vector k of a block holds
 * codes 8i + k (lane i = the block's 32-bit word i), so one block spans 128/gs
 * groups, whose scales go in one vector (isa_q4_spread). Per block and token:
 * 8 products into 4 accumulators (vector k into k & 3, combined as in
 * group_dot), then y += s * acc, y0 for even blocks and y1 for odd ones (the
 * block's index in the row, whatever the call's range). A row whose width is
 * not a multiple of 128 ends with a partial block of L = codes / 8 lanes,
 * read with masked loads: the codes, x and scales of missing lanes are 0.
 * x: group ga of token 0 in the q4_permute layout; ga is a multiple of 128/gs
 * (callers split rows at block boundaries). */
#define Q4_GPB(gs) ((gs) >= 128 ? 1 : 128 / (gs))
_Static_assert(ISA_GEMM_KC % 128 == 0, "GEMM panels start at 4-bit block boundaries");

/* One block for T tokens: out[t] = lanes of sum_k q_k * x_t,k (4 accumulators,
 * combined as in group_dot). L lanes (MSV_L: a whole block, a compile-time
 * constant there). */
AINL void q4_dot(const uint8_t *wb, const float *xb, int64_t ldx, const int L, const int T, msv *out)
{
    const isa_q4raw d = L == MSV_L ? isa_q4_load(wb) : isa_q4_load_part(wb, L);
    const float *xt[ISA_MT]; /* one base per token: constant offsets below */
    for (int t = 0; t < T; t++) xt[t] = xb + t * ldx;
    msv acc[ISA_MT][4];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        const msv q = isa_q4_code(d, k);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const float *xp = xt[t] + L * k;
            const msv xv = L == MSV_L ? msv_load(xp) : msv_load_part(xp, L);
            /* an accumulator's first product is a multiply: see group_dot */
            acc[t][k & 3] = k < 4 ? msv_opaque(msv_mul(q, xv)) : msv_fma(q, xv, acc[t][k & 3]);
        }
    }
    for (int t = 0; t < T; t++) out[t] = msv_add(msv_add(acc[t][0], acc[t][1]), msv_add(acc[t][2], acc[t][3]));
}

/* y[t] += s * (block at wb . x_t) for a whole block whose groups' values start
 * at sc. */
AINL void q4_full(const uint8_t *wb, const float *xb, int64_t ldx, const float *sc, const int gs, const int T,
                  msv *y)
{
    msv d[ISA_MT];
    q4_dot(wb, xb, ldx, MSV_L, T, d);
    const msv s = isa_q4_spread(sc, gs, Q4_GPB(gs));
    for (int t = 0; t < T; t++) y[t] = msv_fma(s, d[t], y[t]);
}

AINL void q4_groups(const arow *a, int64_t ga, int64_t gb, const float *sc, const float *x, int64_t ldx,
                    const int gs, const int T, msv *y0, msv *y1)
{
    const int gpb = Q4_GPB(gs);
    const int64_t nfull = (gb - ga) / gpb;  /* whole blocks */
    const bool odd0 = (ga * gs / 128) & 1; /* the first block's parity in the row */
    const uint8_t *w = a->w + ga * gs / 2;
    int64_t b = 0;
    if (odd0 && nfull > 0) {
        q4_full(w, x, ldx, sc, gs, T, y1);
        b = 1;
    }
    for (; b + 2 <= nfull; b += 2) { /* even block into y0, odd into y1 */
        ms_prefetch_lines(w + b * 64, 128);
        q4_full(w + b * 64, x + b * 128, ldx, sc + b * gpb, gs, T, y0);
        q4_full(w + b * 64 + 64, x + b * 128 + 128, ldx, sc + (b + 1) * gpb, gs, T, y1);
    }
    if (b < nfull) { /* a last whole block, even */
        q4_full(w + b * 64, x + b * 128, ldx, sc + b * gpb, gs, T, y0);
        b++;
    }
    const int ng = (int)(gb - ga - nfull * gpb);
    if (ng > 0) { /* the row's partial last block */
        msv d[ISA_MT];
        q4_dot(w + b * 64, x + b * 128, ldx, ng * gs / 8, T, d);
        const msv s = isa_q4_spread(sc + b * gpb, gs, ng);
        if (odd0 ^ (b & 1))
            for (int t = 0; t < T; t++) y1[t] = msv_fma(s, d[t], y1[t]);
        else
            for (int t = 0; t < T; t++) y0[t] = msv_fma(s, d[t], y0[t]);
    }
}

#endif

/* Groups [ga, gb) of a row for T tokens (ga even; sc[g - ga] = scale of g):
 * y0[t] += s_g * (q_g . x_t,g) for even g, y1[t] for odd g. Pairs of groups
 * before the tail, then one at a time. x: group ga of token 0 (token t at
 * + t*ldx). */
AINL void arow_groups(const arow *a, int64_t ga, int64_t gb, const float *sc, const float *x, int64_t ldx,
                      const int bits, const int gs, const int T, msv *y0, msv *y1)
{
#ifdef ISA_Q4_BLOCK
    if (bits == 4) {
        q4_groups(a, ga, gb, sc, x, ldx, gs, T, y0, y1);
        return;
    }
#endif
    const size_t gbytes = a->gbytes;
    const int64_t npair = MS_MAX(0, MS_MIN(gb, a->t0) - ga) & ~(int64_t)1;
    msv d[ISA_MT];
    int64_t i = 0;
    for (; i < npair; i += 2) {
        const uint8_t *wg = a->w + (ga + i) * gbytes;
        if (2 * gbytes >= 64)
            ms_prefetch_lines(wg, 2 * gbytes);
        else if ((size_t)(ga + i) * gbytes % 64 < 2 * gbytes)
            ms_prefetch_lines(wg, gbytes);
        group_dot(wg, x + i * gs, ldx, bits, gs, T, d);
        const msv s0 = msv_set1(sc[i]);
        for (int t = 0; t < T; t++) y0[t] = msv_fma(s0, d[t], y0[t]);
        group_dot(wg + gbytes, x + (i + 1) * gs, ldx, bits, gs, T, d);
        const msv s1 = msv_set1(sc[i + 1]);
        for (int t = 0; t < T; t++) y1[t] = msv_fma(s1, d[t], y1[t]);
    }
    for (; ga + i < gb; i++) {
        const int64_t g = ga + i;
        const uint8_t *wg = g < a->t0 ? a->w + g * gbytes : a->tail + (g - a->t0) * gbytes;
        ms_prefetch_group(a->w + g * gbytes, g, gbytes);
        group_dot(wg, x + i * gs, ldx, bits, gs, T, d);
        const msv s = msv_set1(sc[i]);
        for (int t = 0; t < T; t++) {
            if (g & 1)
                y1[t] = msv_fma(s, d[t], y1[t]);
            else
                y0[t] = msv_fma(s, d[t], y0[t]);
        }
    }
}

/* The bias term and the row's result for T tokens: per SB_CHUNK groups, a
 * vector dot of the biases with the group sums (scalar for the chunk's last
 * groups), then y[t*ldy] = hsum(y0 + y1) + (hsum(yb) + bt). */
AINL void arow_finish(const arow *a, ms_dtype sbdt, const float *xsum, int64_t ldxs, const int T, const msv *y0,
                      const msv *y1, float *y, int64_t ldy)
{
    float bi[SB_CHUNK];
    msv yb[ISA_MT];
    float bt[ISA_MT];
    for (int t = 0; t < T; t++) {
        yb[t] = msv_zero();
        bt[t] = 0.0f;
    }
    for (int64_t g0 = 0; g0 < a->ng; g0 += SB_CHUNK) {
        const int64_t cn = MS_MIN(SB_CHUNK, a->ng - g0);
        sb_to_f32(a->bp + g0 * a->sbsz, sbdt, cn, bi);
        for (int t = 0; t < T; t++) {
            const float *xs = xsum + t * ldxs;
            int64_t i = 0;
            for (; i + MSV_L <= cn; i += MSV_L) yb[t] = msv_fma(msv_load(bi + i), msv_load(xs + g0 + i), yb[t]);
            for (; i < cn; i++) bt[t] = __builtin_fmaf(bi[i], xs[g0 + i], bt[t]);
        }
    }
    for (int t = 0; t < T; t++) y[t * ldy] = msv_hsum(msv_add(y0[t], y1[t])) + (msv_hsum(yb[t]) + bt[t]);
}

/* Row r for T tokens: y[t*ldy] = W[r,:] . x_t, x_t = x + t*ldx (prepared),
 * group sums at xsum + t*ldxs. */
AINL void affine_row(const ms_mat *m, int64_t r, const float *x, int64_t ldx, const float *xsum, int64_t ldxs,
                     const int bits, const int gs, const int T, float *y, int64_t ldy)
{
    arow a;
    arow_init(&a, m, r, bits, gs, true);
    float sc[SB_CHUNK];
    msv y0[ISA_MT], y1[ISA_MT];
    for (int t = 0; t < T; t++) y0[t] = y1[t] = msv_zero();
    for (int64_t g0 = 0; g0 < a.ng; g0 += SB_CHUNK) {
        const int64_t cn = MS_MIN(SB_CHUNK, a.ng - g0);
        ms_prefetch_lines(a.sp + g0 * a.sbsz, (size_t)cn * a.sbsz);
        ms_prefetch_lines(a.bp + g0 * a.sbsz, (size_t)cn * a.sbsz);
        sb_to_f32(a.sp + g0 * a.sbsz, m->sb_dtype, cn, sc);
        arow_groups(&a, g0, g0 + cn, sc, x + g0 * gs, ldx, bits, gs, T, y0, y1);
    }
    arow_finish(&a, m->sb_dtype, xsum, ldxs, T, y0, y1, y, ldy);
}

/* Several tokens (T >= 2) over rows [r0, r1): the T input vectors of a long
 * row do not fit L1 next to the codes, so rows go in sub-blocks of MT_ROWS
 * and columns in chunks whose T input slices take MT_CHUNK floats; each row's
 * y0/y1 accumulators are kept between chunks (a store and load are exact, and
 * each accumulator sees the same operations in the same order as in
 * affine_row). */
#define MT_ROWS 32
#define MT_CHUNK 4096

AINL void affine_rows_mt(const ms_mat *m, int64_t r0, int64_t r1, const float *X, const float *XS, float *Y,
                         int64_t ldy, const int bits, const int gs, const int T)
{
    const int64_t ng = m->cols / gs, ldx = m->cols, ldxs = ng;
    /* groups per chunk: a multiple of 4 (even for arow_groups' pairs, whole
     * blocks for q4_groups) */
    const int64_t cg = MS_MAX(4, (MT_CHUNK / (T * gs)) & ~3);
    msv st[MT_ROWS][2][ISA_MT];
    float sc[MT_CHUNK / 32];
    arow a;
    for (int64_t rb = r0; rb < r1; rb += MT_ROWS) {
        const int64_t re = MS_MIN(r1, rb + MT_ROWS);
        for (int64_t r = rb; r < re; r++)
            for (int t = 0; t < T; t++) st[r - rb][0][t] = st[r - rb][1][t] = msv_zero();
        for (int64_t ga = 0; ga < ng; ga += cg) {
            const int64_t gb = MS_MIN(ng, ga + cg);
            for (int64_t r = rb; r < re; r++) {
                arow_init(&a, m, r, bits, gs, false);
                if (gb > a.t0) tail_copy(a.tail, a.w, a.t0, a.ng, a.gbytes);
                sb_to_f32(a.sp + ga * a.sbsz, m->sb_dtype, gb - ga, sc);
                msv y0[ISA_MT], y1[ISA_MT]; /* in registers while the chunk runs */
                for (int t = 0; t < T; t++) {
                    y0[t] = st[r - rb][0][t];
                    y1[t] = st[r - rb][1][t];
                }
                arow_groups(&a, ga, gb, sc, X + ga * gs, ldx, bits, gs, T, y0, y1);
                for (int t = 0; t < T; t++) {
                    st[r - rb][0][t] = y0[t];
                    st[r - rb][1][t] = y1[t];
                }
            }
        }
        for (int64_t r = rb; r < re; r++) {
            arow_init(&a, m, r, bits, gs, false);
            arow_finish(&a, m->sb_dtype, XS, ldxs, T, st[r - rb][0], st[r - rb][1], Y + (r - r0), ldy);
        }
    }
}

/* Rows [r0, r1) for n tokens; n == 1 is the matvec. Tokens go in batches of
 * ISA_MT, the rest in one batch of 3 or 2, or alone. Per-token results do not
 * depend on the batch. */
AINL void affine_rows(const ms_mat *m, int64_t r0, int64_t r1, const float *X, const float *XS, int n, float *Y,
                      int64_t ldy, const int bits, const int gs)
{
    const int64_t ldx = m->cols, ldxs = m->cols / gs;
    int t = 0;
    for (; t + ISA_MT <= n; t += ISA_MT)
        affine_rows_mt(m, r0, r1, X + t * ldx, XS + t * ldxs, Y + t * ldy, ldy, bits, gs, ISA_MT);
#if ISA_MT > 3
    if (n - t == 3) {
        affine_rows_mt(m, r0, r1, X + t * ldx, XS + t * ldxs, Y + t * ldy, ldy, bits, gs, 3);
        t += 3;
    }
#endif
#if ISA_MT > 2
    if (n - t >= 2) {
        affine_rows_mt(m, r0, r1, X + t * ldx, XS + t * ldxs, Y + t * ldy, ldy, bits, gs, 2);
        t += 2;
    }
#endif
    for (; t < n; t++)
        for (int64_t r = r0; r < r1; r++)
            affine_row(m, r, X + t * ldx, ldx, XS + t * ldxs, ldxs, bits, gs, 1, Y + t * ldy + (r - r0), ldy);
}

#define AFFINE_ROWS(B)                                                                                                 \
    static void rows_n_affine##B(const ms_mat *m, int64_t r0, int64_t r1, const float *X, const float *XS, int n,      \
                                 float *Y, int64_t ldy)                                                                \
    {                                                                                                                  \
        switch (m->group_size) {                                                                                       \
        case 32: affine_rows(m, r0, r1, X, XS, n, Y, ldy, B, 32); break;                                               \
        case 64: affine_rows(m, r0, r1, X, XS, n, Y, ldy, B, 64); break;                                               \
        default: affine_rows(m, r0, r1, X, XS, n, Y, ldy, B, 128); break;                                              \
        }                                                                                                              \
    }                                                                                                                  \
    static void rows_affine##B(const ms_mat *m, int64_t r0, int64_t r1, const float *x, const float *xsum, float *y)   \
    {                                                                                                                  \
        rows_n_affine##B(m, r0, r1, x, xsum, 1, y, 0);                                                                 \
    }
AFFINE_ROWS(2)
AFFINE_ROWS(3)
AFFINE_ROWS(4)
AFFINE_ROWS(5)
AFFINE_ROWS(6)
AFFINE_ROWS(8)
#undef AFFINE_ROWS

/* ---- affine dequantization (natural order, exact) ------------------------------- */

/* q*s + b with two roundings, like the reference. */
AINL msv mul_add_2r(msv q, msv s, msv b)
{
    return msv_add(msv_opaque(msv_mul(q, s)), b);
}

static void dequant_affine(const ms_mat *m, int64_t r, int64_t c0, int64_t c1, float *out)
{
    const int bits = m->bits, gs = m->group_size;
    const int64_t ng = m->cols / gs, g1 = c1 / gs;
    const size_t gbytes = (size_t)gs * bits / 8;
    const uint8_t *w = (const uint8_t *)m->w + (size_t)r * (size_t)ng * gbytes;
    const int64_t sb0 = r * ng;
    uint8_t tail[TAIL_BYTES];
    const int64_t t0 = tail_start(ng, gbytes, isa_dq_overread(bits));
    if (t0 < g1) tail_copy(tail, w, t0, ng, gbytes);
    const int K = isa_dq_chunk(bits);
    for (int64_t g = c0 / gs; g < g1; g++) {
        const msv s = msv_set1(ms_sb_get(m->scales, m->sb_dtype, sb0 + g)),
                  b = msv_set1(ms_sb_get(m->biases, m->sb_dtype, sb0 + g));
        const uint8_t *wg = g < t0 ? w + g * gbytes : tail + (g - t0) * gbytes;
        float *o = out + g * gs - c0;
        for (int c = 0; c < gs / K; c++) {
            msv q[ISA_CODES_MAX];
            const int nq = isa_dq_codes(wg, bits, c, q);
            for (int j = 0; j < nq; j++) msv_store(o + c * K + j * MSV_L, mul_add_2r(q[j], s, b));
        }
    }
}

/* ---- dense ------------------------------------------------------------------------ */

AINL msv loadw(const void *w, int64_t j, const ms_wtype t)
{
    if (t == MS_WT_F32) return msv_load((const float *)w + j);
    return t == MS_WT_BF16 ? msv_load_bf16((const uint16_t *)w + j) : msv_load_f16((const uint16_t *)w + j);
}

AINL float loadw1(const void *w, int64_t j, const ms_wtype t)
{
    /* Scalar tails: unaligned-safe loads (rows sit at any byte address). */
    if (t == MS_WT_F32) return ms_ld_f32(w, (size_t)j);
    return t == MS_WT_BF16 ? ms_bf16_to_f32(ms_ld_u16(w, (size_t)j)) : ms_f16_to_f32(ms_ld_u16(w, (size_t)j));
}

/* Tokens per pass of the dense multi-token rows: 8 accumulators per token, so
 * two tokens only where there are 32 vector registers. */
#define DENSE_MT (MSV_NREGS >= 32 ? 2 : 1)

/* Dense row dot for T tokens (x_t = x + t*ldx, y[t*ldy]): per token 8
 * accumulators over 8 vectors, then one vector at a time, then the tail (masked
 * vector, or scalar where there are no masked loads). The weights are converted
 * once for all T; each token's operations are those of T = 1. */
AINL void dense_row(const void *w, const float *x, int64_t ldx, int64_t n, const ms_wtype t, const int T, float *y,
                    int64_t ldy)
{
    msv a[DENSE_MT][8];
    for (int u = 0; u < T; u++)
        for (int k = 0; k < 8; k++) a[u][k] = msv_zero();
    int64_t j = 0;
    const size_t es = t == MS_WT_F32 ? 4 : 2;
    for (; j + 8 * MSV_L <= n; j += 8 * MSV_L) {
        ms_prefetch_lines((const char *)w + (size_t)j * es, 8 * MSV_L * es);
        for (int k = 0; k < 8; k++) {
            const msv wv = loadw(w, j + k * MSV_L, t);
            for (int u = 0; u < T; u++) a[u][k] = msv_fma(wv, msv_load(x + u * ldx + j + k * MSV_L), a[u][k]);
        }
    }
    for (; j + MSV_L <= n; j += MSV_L) {
        const msv wv = loadw(w, j, t);
        for (int u = 0; u < T; u++) a[u][0] = msv_fma(wv, msv_load(x + u * ldx + j), a[u][0]);
    }
#if MSV_MASKED_TAIL
    if (j < n) {
        const int64_t rem = n - j;
        const msv wv = t == MS_WT_F32    ? msv_load_part((const float *)w + j, rem)
                       : t == MS_WT_BF16 ? msv_load_bf16_part((const uint16_t *)w + j, rem)
                                         : msv_load_f16_part((const uint16_t *)w + j, rem);
        for (int u = 0; u < T; u++) a[u][1] = msv_fma(wv, msv_load_part(x + u * ldx + j, rem), a[u][1]);
    }
#else
    float tl[DENSE_MT] = {0.0f};
    for (; j < n; j++)
        for (int u = 0; u < T; u++) tl[u] = __builtin_fmaf(loadw1(w, j, t), x[u * ldx + j], tl[u]);
#endif
    for (int u = 0; u < T; u++) {
        const msv s0 = msv_add(msv_add(a[u][0], a[u][4]), msv_add(a[u][1], a[u][5]));
        const msv s1 = msv_add(msv_add(a[u][2], a[u][6]), msv_add(a[u][3], a[u][7]));
#if MSV_MASKED_TAIL
        y[u * ldy] = msv_hsum(msv_add(s0, s1));
#else
        y[u * ldy] = msv_hsum(msv_add(s0, s1)) + tl[u];
#endif
    }
}

/* Rows [r0, r1) for n tokens: token batches of DENSE_MT, each over the block. */
AINL void dense_rows(const ms_mat *m, int64_t r0, int64_t r1, const float *X, int n, float *Y, int64_t ldy,
                     const ms_wtype t)
{
    const size_t rb = (size_t)m->cols * (t == MS_WT_F32 ? 4 : 2);
    const int64_t ldx = m->cols;
    int u = 0;
    for (; u + DENSE_MT <= n; u += DENSE_MT)
        for (int64_t r = r0; r < r1; r++)
            dense_row((const char *)m->w + (size_t)r * rb, X + u * ldx, ldx, m->cols, t, DENSE_MT,
                      Y + u * ldy + (r - r0), ldy);
    for (; u < n; u++)
        for (int64_t r = r0; r < r1; r++)
            dense_row((const char *)m->w + (size_t)r * rb, X + u * ldx, ldx, m->cols, t, 1, Y + u * ldy + (r - r0), ldy);
}

#define DENSE_ROWS(NAME, T)                                                                                            \
    static void rows_n_##NAME(const ms_mat *m, int64_t r0, int64_t r1, const float *X, const float *XS, int n,         \
                              float *Y, int64_t ldy)                                                                   \
    {                                                                                                                  \
        dense_rows(m, r0, r1, X, n, Y, ldy, T);                                                                        \
    }                                                                                                                  \
    static void rows_##NAME(const ms_mat *m, int64_t r0, int64_t r1, const float *x, const float *xsum, float *y)      \
    {                                                                                                                  \
        dense_rows(m, r0, r1, x, 1, y, 0, T);                                                                          \
    }
DENSE_ROWS(f32, MS_WT_F32)
DENSE_ROWS(f16, MS_WT_F16)
DENSE_ROWS(bf16, MS_WT_BF16)
#undef DENSE_ROWS

static void dequant_dense(const ms_mat *m, int64_t r, int64_t c0, int64_t c1, float *out)
{
    const size_t base = (size_t)r * (size_t)m->cols + (size_t)c0;
    const int64_t n = c1 - c0;
    if (m->type == MS_WT_F32) {
        memcpy(out, (const float *)m->w + base, (size_t)n * 4);
        return;
    }
    const uint16_t *w = (const uint16_t *)m->w + base;
    const ms_wtype t = m->type;
    int64_t j = 0;
    if (t == MS_WT_BF16)
        for (; j + MSV_L <= n; j += MSV_L) msv_store(out + j, loadw(w, j, MS_WT_BF16));
    else
        for (; j + MSV_L <= n; j += MSV_L) msv_store(out + j, loadw(w, j, MS_WT_F16));
    for (; j < n; j++) out[j] = loadw1(w, j, t);
}

/* ---- prefill GEMM ------------------------------------------------------------------ */

/* Y[t, r] = sum_k X[t, k] W[r, k] for a block of rows and every token, with
 * W dequantized (exactly) into packed panels once per block of GEMM_KC columns:
 * panel p holds rows r0 + p*GEMM_NR .. + GEMM_NR, element (k, i) at k*GEMM_NR + i
 * (rows past the end are zero). The micro-kernel keeps a GEMM_MR x GEMM_NR
 * block of Y in registers (GEMM_MR tokens x ISA_GEMM_NRV vectors of rows): per
 * k, ISA_GEMM_NRV panel loads, GEMM_MR broadcasts of X, GEMM_MR * NRV FMAs.
 * Each Y element is one FMA chain over the k of a column block, starting from
 * 0, and the blocks' sums are added to Y in column order: its value depends on
 * its row and token only (not on n, the tile or the thread), within float
 * rounding of the matvec. */
#define GEMM_MR ISA_GEMM_MR
#define GEMM_NR (ISA_GEMM_NRV * MSV_L)
#define GEMM_KC ISA_GEMM_KC
#define GEMM_ROWS ISA_GEMM_ROWS
/* Packed rows x columns, then MSV_L dequantized rows. */
#define GEMM_BUF_FLOATS ((size_t)(GEMM_ROWS + MSV_L) * GEMM_KC)

/* Columns [c0, c1) of affine row r dequantized exactly (s*q then +b, the
 * reference's bits) in the matvec's code layout: per chunk of codes, vector j
 * holds elements P*i + j (P = isa_dot_interleave; 1 = natural order). The
 * fast unpacking of the matvec, for the GEMM's packing. */
AINL void dequant_dot(const ms_mat *m, int64_t r, int64_t c0, int64_t c1, float *out, const int bits, const int gs)
{
    arow a;
    arow_init(&a, m, r, bits, gs, false);
    const int64_t g0 = c0 / gs, g1 = c1 / gs;
    if (g1 > a.t0) tail_copy(a.tail, a.w, a.t0, a.ng, a.gbytes);
    float sc[GEMM_KC / 32 + MSV_L], bi[GEMM_KC / 32 + MSV_L]; /* + MSV_L: room the compiler can see for sb_to_f32 */
    sb_to_f32(a.sp + g0 * a.sbsz, m->sb_dtype, g1 - g0, sc);
    sb_to_f32(a.bp + g0 * a.sbsz, m->sb_dtype, g1 - g0, bi);
#ifdef ISA_Q4_BLOCK
    if (bits == 4) { /* c0 starts a block (GEMM_KC is a multiple of 128) */
        for (int64_t g = g0; g < g1; g += Q4_GPB(gs)) {
            const int ng = (int)MS_MIN(Q4_GPB(gs), g1 - g), L = ng * gs / 8;
            const msv s = isa_q4_spread(sc + (g - g0), gs, ng), b = isa_q4_spread(bi + (g - g0), gs, ng);
            const uint8_t *wb = a.w + g * gs / 2;
            float *o = out + g * gs - c0;
            if (L == MSV_L) {
                const isa_q4raw d = isa_q4_load(wb);
                for (int k = 0; k < 8; k++) msv_store(o + k * MSV_L, mul_add_2r(isa_q4_code(d, k), s, b));
            } else { /* the row's partial last block, in natural order (gemm_pack's tail) */
                const isa_q4raw d = isa_q4_load_part(wb, L);
                float tmp[8 * MSV_L];
                for (int k = 0; k < 8; k++) msv_store(tmp + k * MSV_L, mul_add_2r(isa_q4_code(d, k), s, b));
                for (int k = 0; k < 8; k++)
                    for (int i = 0; i < L; i++) o[8 * i + k] = tmp[k * MSV_L + i];
            }
        }
        return;
    }
#endif
    for (int64_t g = g0; g < g1; g++) {
        const msv s = msv_set1(sc[g - g0]), b = msv_set1(bi[g - g0]);
        const uint8_t *wg = g < a.t0 ? a.w + g * a.gbytes : a.tail + (g - a.t0) * a.gbytes;
        float *o = out + g * gs - c0;
        for (int c = 0; c < isa_dot_chunks(bits, gs); c++) {
            msv q[ISA_CODES_MAX];
            const int nq = isa_dot_codes(wg, bits, gs, c, q);
            for (int j = 0; j < nq; j++) msv_store(o + (c * nq + j) * MSV_L, mul_add_2r(q[j], s, b));
        }
    }
}

#define DQ_DOT(B)                                                                                                      \
    static void dequant_dot##B(const ms_mat *m, int64_t r, int64_t c0, int64_t c1, float *out)                         \
    {                                                                                                                  \
        switch (m->group_size) {                                                                                       \
        case 32: dequant_dot(m, r, c0, c1, out, B, 32); break;                                                         \
        case 64: dequant_dot(m, r, c0, c1, out, B, 64); break;                                                         \
        default: dequant_dot(m, r, c0, c1, out, B, 128); break;                                                        \
        }                                                                                                              \
    }
DQ_DOT(2)
DQ_DOT(3)
DQ_DOT(4)
DQ_DOT(5)
DQ_DOT(6)
DQ_DOT(8)
#undef DQ_DOT

/* Row dequantizer and code interleave P for the packing of m. */
static ms_dequant_fn gemm_dequant(const ms_mat *m, int *P)
{
    *P = 1;
    if (m->type != MS_WT_AFFINE) return dequant_dense;
    switch (m->group_size) {
    case 32: *P = isa_dot_interleave(m->bits, 32); break;
    case 64: *P = isa_dot_interleave(m->bits, 64); break;
    default: *P = isa_dot_interleave(m->bits, 128); break;
    }
    switch (m->bits) {
    case 2: return dequant_dot2;
    case 3: return dequant_dot3;
    case 4: return dequant_dot4;
    case 5: return dequant_dot5;
    case 6: return dequant_dot6;
    default: return dequant_dot8;
    }
}

/* Dequantize MSV_L rows at a time into tmp, transpose them into the panel:
 * with interleave P, vector j of each P*MSV_L block of tmp holds elements
 * P*i + j, i.e. panel rows base + j, base + j + P, ... */
static void gemm_pack(const ms_mat *m, int64_t r0, int64_t r1, int64_t k0, int64_t kc, float *buf, float *tmp)
{
    const int64_t nr = r1 - r0, np = (nr + GEMM_NR - 1) / GEMM_NR;
    int P;
    const ms_dequant_fn dq = gemm_dequant(m, &P);
    for (int64_t i0 = 0; i0 < np * GEMM_NR; i0 += MSV_L) {
        for (int u = 0; u < MSV_L; u++) {
            if (i0 + u < nr)
                dq(m, r0 + i0 + u, k0, k0 + kc, tmp + u * kc);
            else
                memset(tmp + u * kc, 0, (size_t)kc * sizeof(float));
        }
        float *panel = buf + (i0 / GEMM_NR) * GEMM_NR * kc + i0 % GEMM_NR;
        int64_t k = 0;
        for (; k + P * MSV_L <= kc; k += P * MSV_L)
            for (int j = 0; j < P; j++)
                msv_transpose(tmp + k + j * MSV_L, kc, panel + (k + j) * GEMM_NR, P * GEMM_NR);
        for (; k < kc; k++) /* dense rows of any width */
            for (int u = 0; u < MSV_L; u++) panel[k * GEMM_NR + u] = tmp[u * kc + k];
    }
}

/* One MR x GEMM_NR block (MR <= GEMM_MR tokens, a compile-time constant):
 * C[i*ldc + j] (+)= sum_k x_i[k] panel[k*NR + j] for j < nr rows; add = false
 * for the first column block. */
AINL void gemm_micro(const float *panel, int64_t kc, const float *x, int64_t ldx, const int MR, float *C, int64_t ldc,
                     int64_t nr, bool add)
{
    msv acc[GEMM_MR][ISA_GEMM_NRV];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < ISA_GEMM_NRV; j++) acc[i][j] = msv_zero();
    for (int64_t k = 0; k < kc; k++) {
        msv w[ISA_GEMM_NRV];
        for (int j = 0; j < ISA_GEMM_NRV; j++) w[j] = msv_load(panel + k * GEMM_NR + j * MSV_L);
        for (int i = 0; i < MR; i++) {
            const msv xb = msv_bcast(x + i * ldx + k);
            for (int j = 0; j < ISA_GEMM_NRV; j++) acc[i][j] = msv_fma(xb, w[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < ISA_GEMM_NRV; j++) {
            float *c = C + i * ldc + j * MSV_L;
            const int64_t nv = nr - j * MSV_L;
            if (nv >= MSV_L)
                msv_store(c, add ? msv_add(msv_load(c), acc[i][j]) : acc[i][j]);
            else if (nv > 0)
                msv_store_part(c, add ? msv_add(msv_load_part(c, nv), acc[i][j]) : acc[i][j], nv);
        }
}

/* The last block of tokens with its own (compile-time) count. */
static void gemm_micro_tail(const float *panel, int64_t kc, const float *x, int64_t ldx, int mr, float *C,
                            int64_t ldc, int64_t nr, bool add)
{
    switch (mr) {
#if GEMM_MR > 5
    case 5: gemm_micro(panel, kc, x, ldx, 5, C, ldc, nr, add); break;
#endif
#if GEMM_MR > 4
    case 4: gemm_micro(panel, kc, x, ldx, 4, C, ldc, nr, add); break;
#endif
    case 3: gemm_micro(panel, kc, x, ldx, 3, C, ldc, nr, add); break;
    case 2: gemm_micro(panel, kc, x, ldx, 2, C, ldc, nr, add); break;
    default: gemm_micro(panel, kc, x, ldx, 1, C, ldc, nr, add); break;
    }
}

static void gemm_simd(const ms_mat *m, int64_t r0, int64_t r1, const float *X, int n, float *Y, int64_t ldy,
                      float *buf)
{
    const int64_t K = m->cols, nr = r1 - r0, np = (nr + GEMM_NR - 1) / GEMM_NR;
    float *tmp = buf + (size_t)GEMM_ROWS * GEMM_KC;
    for (int64_t k0 = 0; k0 < K; k0 += GEMM_KC) {
        const int64_t kc = MS_MIN(GEMM_KC, K - k0);
        gemm_pack(m, r0, r1, k0, kc, buf, tmp);
        for (int t0 = 0; t0 < n; t0 += GEMM_MR)
            for (int64_t p = 0; p < np; p++) {
                const float *panel = buf + p * GEMM_NR * kc, *x = X + (size_t)t0 * K + k0;
                float *C = Y + (size_t)t0 * ldy + r0 + p * GEMM_NR;
                if (n - t0 >= GEMM_MR)
                    gemm_micro(panel, kc, x, K, GEMM_MR, C, ldy, nr - p * GEMM_NR, k0 > 0);
                else
                    gemm_micro_tail(panel, kc, x, K, n - t0, C, ldy, nr - p * GEMM_NR, k0 > 0);
            }
    }
}

/* ---- memory bandwidth probe --------------------------------------------------------- */

static double read_sum_simd(const float *p, size_t n)
{
    msv a0 = msv_zero(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 4 * MSV_L <= n; i += 4 * MSV_L) {
        a0 = msv_add(a0, msv_load(p + i));
        a1 = msv_add(a1, msv_load(p + i + MSV_L));
        a2 = msv_add(a2, msv_load(p + i + 2 * MSV_L));
        a3 = msv_add(a3, msv_load(p + i + 3 * MSV_L));
    }
    double s = msv_hsum(msv_add(msv_add(a0, a1), msv_add(a2, a3)));
    for (; i < n; i++) s += p[i];
    return s;
}

/* y += a x: one FMA per element, a partial vector (or scalar FMAs) for the tail. */
static void axpy_simd(float *y, float a, const float *x, int64_t n)
{
    const msv av = msv_set1(a);
    int64_t i = 0;
    for (; i + 4 * MSV_L <= n; i += 4 * MSV_L)
        for (int k = 0; k < 4; k++)
            msv_store(y + i + k * MSV_L, msv_fma(av, msv_load(x + i + k * MSV_L), msv_load(y + i + k * MSV_L)));
    for (; i + MSV_L <= n; i += MSV_L) msv_store(y + i, msv_fma(av, msv_load(x + i), msv_load(y + i)));
#if MSV_MASKED_TAIL
    if (i < n) msv_store_part(y + i, msv_fma(av, msv_load_part(x + i, n - i), msv_load_part(y + i, n - i)), n - i);
#else
    for (; i < n; i++) y[i] = __builtin_fmaf(a, x[i], y[i]);
#endif
}

/* The parts of a table every instruction set shares (prep and gemm_min_n differ). */
#define SIMD_AFFINE(B, PREP, GMIN) {rows_affine##B, dequant_affine, PREP, rows_n_affine##B, GMIN}
#define SIMD_DENSE(T, GMIN) {rows_##T, dequant_dense, NULL, DENSE_MT > 1 ? rows_n_##T : NULL, GMIN}
/* The table of an instruction set: its name, the prep and GEMM threshold of
 * each affine width, the GEMM thresholds of f32 / f16 / bf16 weights. */
#define SIMD_TABLE(NAME, P2, G2, P3, G3, P4, G4, P5, G5, P6, G6, P8, G8, GF32, GF16, GBF16)                           \
    {                                                                                                                  \
        .name = NAME,                                                                                                  \
        .dense = {[MS_WT_F32] = SIMD_DENSE(f32, GF32), [MS_WT_F16] = SIMD_DENSE(f16, GF16),                            \
                  [MS_WT_BF16] = SIMD_DENSE(bf16, GBF16)},                                                             \
        .affine = {[2] = SIMD_AFFINE(2, P2, G2), [3] = SIMD_AFFINE(3, P3, G3), [4] = SIMD_AFFINE(4, P4, G4),           \
                   [5] = SIMD_AFFINE(5, P5, G5), [6] = SIMD_AFFINE(6, P6, G6), [8] = SIMD_AFFINE(8, P8, G8)},          \
        .gemm = gemm_simd, .gemm_rows = GEMM_ROWS, .gemm_buf_floats = GEMM_BUF_FLOATS, .group_sums = group_sums_simd,  \
        .read_sum = read_sum_simd, .axpy = axpy_simd,                                                                  \
    }

#endif

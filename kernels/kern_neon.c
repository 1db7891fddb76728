/* kern_neon.c - AArch64 Advanced SIMD (NEON) kernels. NEON, FMA and the f16
 * conversions are baseline on AArch64, so this file needs no flags; CMake
 * builds it only for aarch64 and ms_kern_select picks it there.
 *
 * The algorithms are those of kern_avx2.c with 4-lane vectors, x in natural
 * order (no permuted copy):
 *   8 bit:    16 bytes -> vmovl u8->u16->u32 -> 16 codes;
 *   4 bit:    8 bytes, &15 and >>4, vzip -> 16 codes in order;
 *   2,3,5,6:  8 codes live in `bits` whole bytes: load 8 bytes, vqtbl1q the 2
 *             bytes holding code i into 32-bit lane i, shift right by
 *             (i*bits)&7, mask. The 8-byte load may run past the last pack of a
 *             row, so the row's last group is read from a zero-padded copy.
 * Per group four accumulators per token; s_g * acc into two row accumulators;
 * the bias term is a dot of the row's biases with the per-group sums of x.
 * Multi-token rows unpack once per pair of tokens and update each token's
 * accumulators in the single-token order (bit-identical to matvec); every row
 * is computed the same way whatever rows a call covers (determinism).
 * Dequantization is exact (s*q then +b, never fused). */
#include <arm_neon.h>
#include <string.h>

#include "kernels_impl.h"
#include "quant.h"
#include "util.h"

#define AINL static inline __attribute__((always_inline))
#define MT 2

/* Fixed-order horizontal sum. */
AINL float hsum4(float32x4_t v)
{
    float32x2_t a = vadd_f32(vget_low_f32(v), vget_high_f32(v));
    return vget_lane_f32(a, 0) + vget_lane_f32(a, 1);
}

static void sb_to_f32(const void *src, ms_dtype t, int64_t n, float *dst)
{
    int64_t i = 0;
    if (t == MS_DT_BF16) {
        const uint16_t *s = src;
        for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(s + i), 16)));
        for (; i < n; i++) dst[i] = ms_bf16_to_f32(ms_ld16(s, i));
    } else if (t == MS_DT_F16) {
        const uint16_t *s = src;
        for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(s + i))));
        for (; i < n; i++) dst[i] = ms_f16_to_f32(ms_ld16(s, i));
    } else {
        memcpy(dst, src, (size_t)n * sizeof(float));
    }
}

/* ---- code extraction ------------------------------------------------------ */

/* 8 codes (natural order) from the `bits` bytes at p (reads 8 bytes), as two
 * 4-lane vectors. */
AINL void unpack8_generic(const uint8_t *p, const int bits, uint32x4_t *lo, uint32x4_t *hi)
{
#define OFF(i) ((uint8_t)(((i)*bits) >> 3))
#define LANE(i) OFF(i), (uint8_t)(OFF(i) + 1), 0xff, 0xff
    const uint8_t il[16] = {LANE(0), LANE(1), LANE(2), LANE(3)};
    const uint8_t ih[16] = {LANE(4), LANE(5), LANE(6), LANE(7)};
#undef LANE
#undef OFF
    const int32_t sl[4] = {0, -(bits & 7), -((2 * bits) & 7), -((3 * bits) & 7)};
    const int32_t sh[4] = {-((4 * bits) & 7), -((5 * bits) & 7), -((6 * bits) & 7), -((7 * bits) & 7)};
    const uint8x16_t v = vcombine_u8(vld1_u8(p), vdup_n_u8(0));
    const uint32x4_t mask = vdupq_n_u32((1u << bits) - 1u);
    *lo = vandq_u32(vshlq_u32(vreinterpretq_u32_u8(vqtbl1q_u8(v, vld1q_u8(il))), vld1q_s32(sl)), mask);
    *hi = vandq_u32(vshlq_u32(vreinterpretq_u32_u8(vqtbl1q_u8(v, vld1q_u8(ih))), vld1q_s32(sh)), mask);
}

/* 16 codes of 8 / 4 bits as four f32 vectors (natural order). */
AINL void widen16(uint8x16_t b, float32x4_t q[4])
{
    uint16x8_t l = vmovl_u8(vget_low_u8(b)), h = vmovl_u8(vget_high_u8(b));
    q[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(l)));
    q[1] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(l)));
    q[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(h)));
    q[3] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(h)));
}

/* For T tokens: out[t] = lanes of sum_j q_j * x_t[j] over one group. */
AINL void group_dot(const uint8_t *wg, const float *xg, int64_t ldx, const int bits, const int gs, const int T,
                    float32x4_t *out)
{
    float32x4_t a[MT][4];
    for (int t = 0; t < T; t++)
        for (int k = 0; k < 4; k++) a[t][k] = vdupq_n_f32(0.0f);
    if (bits == 8 || bits == 4) {
        for (int c = 0; c < gs / 16; c++) {
            uint8x16_t b;
            if (bits == 8) {
                b = vld1q_u8(wg + 16 * c);
            } else {
                uint8x8_t p = vld1_u8(wg + 8 * c);
                uint8x8x2_t z = vzip_u8(vand_u8(p, vdup_n_u8(15)), vshr_n_u8(p, 4));
                b = vcombine_u8(z.val[0], z.val[1]);
            }
            float32x4_t q[4];
            widen16(b, q);
            for (int t = 0; t < T; t++) {
                const float *x = xg + t * ldx + 16 * c;
                for (int k = 0; k < 4; k++) a[t][k] = vfmaq_f32(a[t][k], q[k], vld1q_f32(x + 4 * k));
            }
        }
    } else {
        for (int c = 0; c < gs / 8; c++) {
            uint32x4_t lo, hi;
            unpack8_generic(wg + c * bits, bits, &lo, &hi);
            const float32x4_t ql = vcvtq_f32_u32(lo), qh = vcvtq_f32_u32(hi);
            for (int t = 0; t < T; t++) {
                const float *x = xg + t * ldx + 8 * c;
                a[t][(2 * c) & 3] = vfmaq_f32(a[t][(2 * c) & 3], ql, vld1q_f32(x));
                a[t][(2 * c + 1) & 3] = vfmaq_f32(a[t][(2 * c + 1) & 3], qh, vld1q_f32(x + 4));
            }
        }
    }
    for (int t = 0; t < T; t++) out[t] = vaddq_f32(vaddq_f32(a[t][0], a[t][1]), vaddq_f32(a[t][2], a[t][3]));
}

#define SB_CHUNK 256

AINL void affine_row(const ms_mat *m, int64_t r, const float *x, int64_t ldx, const float *xsum, int64_t ldxs,
                     const int bits, const int gs, const int T, float *y, int64_t ldy)
{
    const int64_t ng = m->cols / gs;
    const size_t gbytes = (size_t)gs * bits / 8, sbsz = ms_dtype_size(m->sb_dtype);
    const uint8_t *w = (const uint8_t *)m->w + (size_t)r * (size_t)ng * gbytes;
    const char *sp = (const char *)m->scales + (size_t)(r * ng) * sbsz;
    const char *bp = (const char *)m->biases + (size_t)(r * ng) * sbsz;
    float sc[SB_CHUNK], bi[SB_CHUNK];
    uint8_t tail[128 + 8];
    float32x4_t y0[MT], y1[MT], yb[MT], a[MT];
    float bt[MT];
    for (int t = 0; t < T; t++) {
        y0[t] = y1[t] = yb[t] = vdupq_n_f32(0.0f);
        bt[t] = 0.0f;
    }
    for (int64_t g0 = 0; g0 < ng; g0 += SB_CHUNK) {
        const int64_t cn = MS_MIN(SB_CHUNK, ng - g0);
        ms_prefetch_lines(sp + g0 * sbsz, (size_t)cn * sbsz);
        ms_prefetch_lines(bp + g0 * sbsz, (size_t)cn * sbsz);
        sb_to_f32(sp + g0 * sbsz, m->sb_dtype, cn, sc);
        sb_to_f32(bp + g0 * sbsz, m->sb_dtype, cn, bi);
        for (int64_t i = 0; i < cn; i++) {
            const int64_t g = g0 + i;
            const uint8_t *wg = w + g * gbytes;
            if (bits != 8 && bits != 4 && g == ng - 1) {
                memcpy(tail, wg, gbytes);
                memset(tail + gbytes, 0, 8);
                wg = tail;
            }
            ms_prefetch_group(w + g * gbytes, g, gbytes);
            group_dot(wg, x + g * gs, ldx, bits, gs, T, a);
            const float32x4_t s = vdupq_n_f32(sc[i]);
            for (int t = 0; t < T; t++) {
                if (i & 1)
                    y1[t] = vfmaq_f32(y1[t], s, a[t]);
                else
                    y0[t] = vfmaq_f32(y0[t], s, a[t]);
            }
        }
        for (int t = 0; t < T; t++) {
            const float *xs = xsum + t * ldxs;
            int64_t i = 0;
            for (; i + 4 <= cn; i += 4) yb[t] = vfmaq_f32(yb[t], vld1q_f32(bi + i), vld1q_f32(xs + g0 + i));
            for (; i < cn; i++) bt[t] = __builtin_fmaf(bi[i], xs[g0 + i], bt[t]);
        }
    }
    for (int t = 0; t < T; t++) y[t * ldy] = hsum4(vaddq_f32(y0[t], y1[t])) + (hsum4(yb[t]) + bt[t]);
}

AINL void affine_rows(const ms_mat *m, int64_t r0, int64_t r1, const float *X, const float *XS, int n, float *Y,
                      int64_t ldy, const int bits, const int gs)
{
    const int64_t ldx = m->cols, ldxs = m->cols / gs;
    int t = 0;
    for (; t + MT <= n; t += MT)
        for (int64_t r = r0; r < r1; r++)
            affine_row(m, r, X + t * ldx, ldx, XS + t * ldxs, ldxs, bits, gs, MT, Y + t * ldy + (r - r0), ldy);
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

static void group_sums_neon(const float *x, int64_t cols, int gs, float *xsum)
{
    for (int64_t g = 0; g < cols / gs; g++) {
        const float *xg = x + g * gs;
        float32x4_t a0 = vld1q_f32(xg), a1 = vld1q_f32(xg + 4);
        for (int j = 8; j < gs; j += 8) {
            a0 = vaddq_f32(a0, vld1q_f32(xg + j));
            a1 = vaddq_f32(a1, vld1q_f32(xg + j + 4));
        }
        xsum[g] = hsum4(vaddq_f32(a0, a1));
    }
}

static const float *prep_natural(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_neon(x, m->cols, m->group_size, xsum);
    return x;
}

/* q*s + b with two roundings (the empty asm keeps GCC from fusing them). */
AINL float32x4_t mul_add_2r(float32x4_t q, float32x4_t s, float32x4_t b)
{
    float32x4_t p = vmulq_f32(q, s);
    __asm__("" : "+w"(p));
    return vaddq_f32(p, b);
}

static void dequant_affine(const ms_mat *m, int64_t r, float *out)
{
    const int bits = m->bits, gs = m->group_size;
    const int64_t ng = m->cols / gs;
    const size_t gbytes = (size_t)gs * bits / 8, sbsz = ms_dtype_size(m->sb_dtype);
    const uint8_t *w = (const uint8_t *)m->w + (size_t)r * (size_t)ng * gbytes;
    const char *sp = (const char *)m->scales + (size_t)(r * ng) * sbsz;
    const char *bp = (const char *)m->biases + (size_t)(r * ng) * sbsz;
    uint8_t tail[128 + 8];
    for (int64_t g = 0; g < ng; g++) {
        const float32x4_t s = vdupq_n_f32(ms_sb_get(sp, m->sb_dtype, g)),
                          b = vdupq_n_f32(ms_sb_get(bp, m->sb_dtype, g));
        const uint8_t *wg = w + g * gbytes;
        float *o = out + g * gs;
        if (bits == 8 || bits == 4) {
            for (int c = 0; c < gs / 16; c++) {
                uint8x16_t bb;
                if (bits == 8) {
                    bb = vld1q_u8(wg + 16 * c);
                } else {
                    uint8x8_t p = vld1_u8(wg + 8 * c);
                    uint8x8x2_t z = vzip_u8(vand_u8(p, vdup_n_u8(15)), vshr_n_u8(p, 4));
                    bb = vcombine_u8(z.val[0], z.val[1]);
                }
                float32x4_t q[4];
                widen16(bb, q);
                for (int k = 0; k < 4; k++) vst1q_f32(o + 16 * c + 4 * k, mul_add_2r(q[k], s, b));
            }
            continue;
        }
        if (g == ng - 1) {
            memcpy(tail, wg, gbytes);
            memset(tail + gbytes, 0, 8);
            wg = tail;
        }
        for (int c = 0; c < gs / 8; c++) {
            uint32x4_t lo, hi;
            switch (bits) {
            case 2: unpack8_generic(wg + 2 * c, 2, &lo, &hi); break;
            case 3: unpack8_generic(wg + 3 * c, 3, &lo, &hi); break;
            case 5: unpack8_generic(wg + 5 * c, 5, &lo, &hi); break;
            default: unpack8_generic(wg + 6 * c, 6, &lo, &hi); break;
            }
            vst1q_f32(o + 8 * c, mul_add_2r(vcvtq_f32_u32(lo), s, b));
            vst1q_f32(o + 8 * c + 4, mul_add_2r(vcvtq_f32_u32(hi), s, b));
        }
    }
}

/* ---- dense ------------------------------------------------------------------- */

AINL float32x4_t loadw4(const void *w, int64_t j, const ms_wtype t)
{
    if (t == MS_WT_F32) return vld1q_f32((const float *)w + j);
    uint16x4_t h = vld1_u16((const uint16_t *)w + j);
    return t == MS_WT_BF16 ? vreinterpretq_f32_u32(vshll_n_u16(h, 16)) : vcvt_f32_f16(vreinterpret_f16_u16(h));
}

AINL float dense_row(const void *w, const float *x, int64_t n, const ms_wtype t)
{
    float32x4_t a[8];
    for (int k = 0; k < 8; k++) a[k] = vdupq_n_f32(0.0f);
    int64_t j = 0;
    const size_t es = t == MS_WT_F32 ? 4 : 2;
    for (; j + 32 <= n; j += 32) {
        ms_prefetch_lines((const char *)w + (size_t)j * es, 32 * es);
        for (int k = 0; k < 8; k++) a[k] = vfmaq_f32(a[k], loadw4(w, j + 4 * k, t), vld1q_f32(x + j + 4 * k));
    }
    for (; j + 4 <= n; j += 4) a[0] = vfmaq_f32(a[0], loadw4(w, j, t), vld1q_f32(x + j));
    float tl = 0.0f;
    for (; j < n; j++) {
        float wv = t == MS_WT_F32    ? ((const float *)w)[j]
                   : t == MS_WT_BF16 ? ms_bf16_to_f32(ms_ld16(w, j))
                                     : ms_f16_to_f32(ms_ld16(w, j));
        tl = __builtin_fmaf(wv, x[j], tl);
    }
    float32x4_t s0 = vaddq_f32(vaddq_f32(a[0], a[4]), vaddq_f32(a[1], a[5]));
    float32x4_t s1 = vaddq_f32(vaddq_f32(a[2], a[6]), vaddq_f32(a[3], a[7]));
    return hsum4(vaddq_f32(s0, s1)) + tl;
}

#define DENSE_ROWS(NAME, T, ES)                                                                                        \
    static void NAME(const ms_mat *m, int64_t r0, int64_t r1, const float *x, const float *xsum, float *y)             \
    {                                                                                                                  \
        for (int64_t r = r0; r < r1; r++)                                                                              \
            y[r - r0] = dense_row((const char *)m->w + (size_t)r * (size_t)m->cols * (ES), x, m->cols, T);             \
    }
DENSE_ROWS(rows_f32, MS_WT_F32, 4)
DENSE_ROWS(rows_f16, MS_WT_F16, 2)
DENSE_ROWS(rows_bf16, MS_WT_BF16, 2)

static void dequant_dense(const ms_mat *m, int64_t r, float *out)
{
    const int64_t n = m->cols;
    if (m->type == MS_WT_F32) {
        memcpy(out, (const float *)m->w + (size_t)r * (size_t)n, (size_t)n * 4);
        return;
    }
    const uint16_t *w = (const uint16_t *)m->w + (size_t)r * (size_t)n;
    const ms_wtype t = m->type;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) vst1q_f32(out + j, t == MS_WT_BF16 ? loadw4(w, j, MS_WT_BF16) : loadw4(w, j, MS_WT_F16));
    for (; j < n; j++) out[j] = t == MS_WT_BF16 ? ms_bf16_to_f32(ms_ld16(w, j)) : ms_f16_to_f32(ms_ld16(w, j));
}

static double read_sum_neon(const float *p, size_t n)
{
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vaddq_f32(a0, vld1q_f32(p + i));
        a1 = vaddq_f32(a1, vld1q_f32(p + i + 4));
        a2 = vaddq_f32(a2, vld1q_f32(p + i + 8));
        a3 = vaddq_f32(a3, vld1q_f32(p + i + 12));
    }
    double s = hsum4(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) s += p[i];
    return s;
}

/* gemm_min_n: not measured on an ARM host yet; the AVX2 values as a start. */
const ms_kern ms_kern_neon = {
    .name = "neon",
    .dense = {[MS_WT_F32] = {rows_f32, dequant_dense, NULL, NULL, 4},
              [MS_WT_F16] = {rows_f16, dequant_dense, NULL, NULL, 4},
              [MS_WT_BF16] = {rows_bf16, dequant_dense, NULL, NULL, 4}},
    .affine = {[2] = {rows_affine2, dequant_affine, prep_natural, rows_n_affine2, 32},
               [3] = {rows_affine3, dequant_affine, prep_natural, rows_n_affine3, 16},
               [4] = {rows_affine4, dequant_affine, prep_natural, rows_n_affine4, 24},
               [5] = {rows_affine5, dequant_affine, prep_natural, rows_n_affine5, 16},
               [6] = {rows_affine6, dequant_affine, prep_natural, rows_n_affine6, 16},
               [8] = {rows_affine8, dequant_affine, prep_natural, rows_n_affine8, 8}},
    .group_sums = group_sums_neon,
    .read_sum = read_sum_neon,
};

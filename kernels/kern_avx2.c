/* kern_avx2.c - AVX2 + FMA + F16C kernels (this file alone is built with
 * -mavx2 -mfma -mf16c; ms_kern_select uses it only when the CPU has all three).
 *
 * Affine matvec, exact f32 activations: per group, acc = sum_j q_j * x_j with
 * the codes converted to f32 and FMA'd against x; the row sum is
 * sum_g s_g * acc_g (vector FMA with the broadcast scale, two interleaved
 * accumulators) + sum_g b_g * xsum_g (a vector dot of the row's biases with the
 * per-group sums of x, computed once per input vector). Unpacking per width:
 *   8 bit:  vpmovzxbd of 8 bytes -> 8 codes;
 *   4 bit:  vpmovzxbd of 8 bytes, then &15 and >>4 -> 16 codes, even and odd
 *           elements; x is pre-permuted per 16-element block to match;
 *   2 bit:  vpmovzxbd of 8 bytes, 4 shift/mask pairs -> 32 codes; x permuted
 *           per 32-element block;
 *   6 bit, 3 bit (groups >= 64): 24 bytes = 8 packs of 3 bytes, one per lane
 *           (two 16-byte loads + vpshufb), then shift/mask pairs -> 32 / 64
 *           codes; x permuted per 32 / 64-element block;
 *   5 bit, 3 bit g32 (generic): 8 codes live in `bits` whole bytes: broadcast
 *           8 bytes, vpshufb the 2 bytes holding code i into lane i, vpsrlvd by
 *           (i*bits)&7, mask. The 8-byte load may run past the 3..5 bytes of
 *           the last pack, so a row's last group is copied to a padded local
 *           buffer first.
 * Every row is computed by the same code whatever rows the call covers, so
 * results do not depend on how rows are split across threads.
 *
 * Dequantization (embedding rows, prefill tiles) is exact and bit-identical to
 * the reference: s*q then +b as two roundings (no FMA contraction). */
#include <immintrin.h>
#include <string.h>

#include "kernels_impl.h"
#include "quant.h"
#include "util.h"

#define AINL static inline __attribute__((always_inline))

/* Fixed-order horizontal sum. */
AINL float hsum8(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

/* n scales or biases of dtype t -> f32 (exact). */
static void sb_to_f32(const void *src, ms_dtype t, int64_t n, float *dst)
{
    int64_t i = 0;
    if (t == MS_DT_BF16) {
        const uint16_t *s = src;
        for (; i + 8 <= n; i += 8) {
            __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + i)));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
        }
        for (; i < n; i++) dst[i] = ms_bf16_to_f32(ms_ld16(s, i));
    } else if (t == MS_DT_F16) {
        const uint16_t *s = src;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
        for (; i < n; i++) dst[i] = ms_f16_to_f32(ms_ld16(s, i));
    } else {
        memcpy(dst, src, (size_t)n * sizeof(float));
    }
}

/* ---- code extraction ------------------------------------------------------ */

/* 8 codes of a 2..6-bit pack (8 codes in `bits` bytes at p; reads 8 bytes), in
 * natural order: the matvec path for 5-bit and 3-bit g32, and dequantization. */
AINL __m256i unpack8_generic(const uint8_t *p, const int bits)
{
    uint64_t u;
    memcpy(&u, p, 8);
    __m256i v = _mm256_set1_epi64x((long long)u);
#define OFF(i) ((char)(((i)*bits) >> 3))
#define LANE(i) OFF(i), (char)(OFF(i) + 1), (char)0x80, (char)0x80
    const __m256i shuf = _mm256_setr_epi8(LANE(0), LANE(1), LANE(2), LANE(3), LANE(4), LANE(5), LANE(6), LANE(7));
#undef LANE
#undef OFF
    const __m256i sh = _mm256_setr_epi32(0, bits & 7, (2 * bits) & 7, (3 * bits) & 7, (4 * bits) & 7, (5 * bits) & 7,
                                         (6 * bits) & 7, (7 * bits) & 7);
    v = _mm256_shuffle_epi8(v, shuf);
    v = _mm256_srlv_epi32(v, sh);
    return _mm256_and_si256(v, _mm256_set1_epi32((1 << bits) - 1));
}

/* 24 bytes at p -> 8 lanes each holding one 3-byte pack (bytes 3k..3k+2):
 * two 16-byte loads (bytes 0..15 and 8..23, nothing past p+24) and a vpshufb. */
AINL __m256i load_packs24(const uint8_t *p)
{
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p)),
                                              _mm_loadu_si128((const __m128i *)(p + 8)), 1);
    const __m256i shuf = _mm256_setr_epi8(0, 1, 2, -128, 3, 4, 5, -128, 6, 7, 8, -128, 9, 10, 11, -128, /* 0..11 */
                                          4, 5, 6, -128, 7, 8, 9, -128, 10, 11, 12, -128, 13, 14, 15, -128);
    return _mm256_shuffle_epi8(v, shuf);
}

/* Widths that go through unpack8_generic (8-byte loads of 3..6-byte packs). */
AINL bool uses_generic(const int bits, const int gs)
{
    return bits == 5 || (bits == 3 && gs < 64);
}

AINL __m256i load8_u8(const uint8_t *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

/* MT: tokens per multi-token kernel call (prefill with few tokens per matrix). */
#define MT 2

/* For T tokens t: out[t] = lanes of sum_j q_j * x_t[j] over one group (x in
 * the kernel's permuted layout, token t at xg + t*ldx). The codes are unpacked
 * once for all T tokens. Four accumulators per token: the FMA latency (4
 * cycles) x 2 pipes needs >= 8 FMAs in flight, the rest comes from overlapping
 * groups. Each token's accumulators are updated in the same order whatever T
 * is, so its result is bit-identical to the single-token kernel (T = 1). */
AINL void group_dot(const uint8_t *wg, const float *xg, int64_t ldx, const int bits, const int gs, const int T,
                    __m256 *out)
{
    __m256 a[MT][4];
    for (int t = 0; t < T; t++)
        for (int k = 0; k < 4; k++) a[t][k] = _mm256_setzero_ps();
    if (bits == 8) {
        for (int c = 0; c < gs / 8; c++) {
            const __m256 q = _mm256_cvtepi32_ps(load8_u8(wg + 8 * c));
            for (int t = 0; t < T; t++)
                a[t][c & 3] = _mm256_fmadd_ps(q, _mm256_loadu_ps(xg + t * ldx + 8 * c), a[t][c & 3]);
        }
    } else if (bits == 4) {
        const __m256i m4 = _mm256_set1_epi32(15);
        for (int c = 0; c < gs / 16; c++) {
            const __m256i d = load8_u8(wg + 8 * c);
            const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(d, m4)),
                         hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(d, 4));
            for (int t = 0; t < T; t++) {
                a[t][(2 * c) & 3] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xg + t * ldx + 16 * c), a[t][(2 * c) & 3]);
                a[t][(2 * c + 1) & 3] =
                    _mm256_fmadd_ps(hi, _mm256_loadu_ps(xg + t * ldx + 16 * c + 8), a[t][(2 * c + 1) & 3]);
            }
        }
    } else if (bits == 2) {
        const __m256i m2 = _mm256_set1_epi32(3);
        for (int c = 0; c < gs / 32; c++) {
            const __m256i d = load8_u8(wg + 8 * c);
            const __m256 q0 = _mm256_cvtepi32_ps(_mm256_and_si256(d, m2));
            const __m256 q1 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(d, 2), m2));
            const __m256 q2 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(d, 4), m2));
            const __m256 q3 = _mm256_cvtepi32_ps(_mm256_srli_epi32(d, 6));
            for (int t = 0; t < T; t++) {
                const float *x = xg + t * ldx + 32 * c;
                a[t][0] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(x), a[t][0]);
                a[t][1] = _mm256_fmadd_ps(q1, _mm256_loadu_ps(x + 8), a[t][1]);
                a[t][2] = _mm256_fmadd_ps(q2, _mm256_loadu_ps(x + 16), a[t][2]);
                a[t][3] = _mm256_fmadd_ps(q3, _mm256_loadu_ps(x + 24), a[t][3]);
            }
        }
    } else if (bits == 6) {
        /* 32 codes = 8 packs of 3 bytes; lane k of vector s = element 4k+s. */
        const __m256i m6 = _mm256_set1_epi32(63);
        for (int c = 0; c < gs / 32; c++) {
            const __m256i v = load_packs24(wg + 24 * c);
            const __m256 q0 = _mm256_cvtepi32_ps(_mm256_and_si256(v, m6));
            const __m256 q1 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, 6), m6));
            const __m256 q2 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, 12), m6));
            const __m256 q3 = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 18));
            for (int t = 0; t < T; t++) {
                const float *x = xg + t * ldx + 32 * c;
                a[t][0] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(x), a[t][0]);
                a[t][1] = _mm256_fmadd_ps(q1, _mm256_loadu_ps(x + 8), a[t][1]);
                a[t][2] = _mm256_fmadd_ps(q2, _mm256_loadu_ps(x + 16), a[t][2]);
                a[t][3] = _mm256_fmadd_ps(q3, _mm256_loadu_ps(x + 24), a[t][3]);
            }
        }
    } else if (bits == 3 && gs >= 64) {
        /* 64 codes = 8 packs of 3 bytes; lane k of vector s = element 8k+s. */
        const __m256i m3 = _mm256_set1_epi32(7);
        for (int c = 0; c < gs / 64; c++) {
            const __m256i v = load_packs24(wg + 24 * c);
            for (int sh = 0; sh < 8; sh++) {
                __m256i q = sh ? _mm256_srli_epi32(v, 3 * sh) : v;
                if (sh < 7) q = _mm256_and_si256(q, m3);
                const __m256 qf = _mm256_cvtepi32_ps(q);
                for (int t = 0; t < T; t++)
                    a[t][sh & 3] = _mm256_fmadd_ps(qf, _mm256_loadu_ps(xg + t * ldx + 64 * c + 8 * sh), a[t][sh & 3]);
            }
        }
    } else {
        for (int c = 0; c < gs / 8; c++) {
            const __m256 q = _mm256_cvtepi32_ps(unpack8_generic(wg + c * bits, bits));
            for (int t = 0; t < T; t++)
                a[t][c & 3] = _mm256_fmadd_ps(q, _mm256_loadu_ps(xg + t * ldx + 8 * c), a[t][c & 3]);
        }
    }
    for (int t = 0; t < T; t++)
        out[t] = _mm256_add_ps(_mm256_add_ps(a[t][0], a[t][1]), _mm256_add_ps(a[t][2], a[t][3]));
}

/* Groups whose scales/biases are converted per batch (bounds the stack use). */
#define SB_CHUNK 256

/* Row r for T tokens: y[t*ldy] = W[r,:] . x_t, x_t = x + t*ldx (prepared),
 * group sums at xsum + t*ldxs. */
AINL void affine_row(const ms_mat *m, int64_t r, const float *x, int64_t ldx, const float *xsum, int64_t ldxs,
                     const int bits, const int gs, const int T, float *y, int64_t ldy)
{
    const int64_t ng = m->cols / gs;
    const size_t gbytes = (size_t)gs * bits / 8, sbsz = ms_dtype_size(m->sb_dtype);
    const uint8_t *w = (const uint8_t *)m->w + (size_t)r * (size_t)ng * gbytes;
    const char *sp = (const char *)m->scales + (size_t)(r * ng) * sbsz;
    const char *bp = (const char *)m->biases + (size_t)(r * ng) * sbsz;
    float sc[SB_CHUNK], bi[SB_CHUNK];
    uint8_t tail[128 + 8] __attribute__((aligned(32)));
    __m256 y0[MT], y1[MT], yb[MT], a[MT];
    float bt[MT];
    for (int t = 0; t < T; t++) {
        y0[t] = y1[t] = yb[t] = _mm256_setzero_ps();
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
            if (uses_generic(bits, gs) && g == ng - 1) { /* 8-byte loads of 3..6-byte packs */
                memcpy(tail, wg, gbytes);
                memset(tail + gbytes, 0, 8);
                wg = tail;
            }
            ms_prefetch_group(w + g * gbytes, g, gbytes);
            group_dot(wg, x + g * gs, ldx, bits, gs, T, a);
            const __m256 s = _mm256_set1_ps(sc[i]);
            for (int t = 0; t < T; t++) {
                if (i & 1)
                    y1[t] = _mm256_fmadd_ps(s, a[t], y1[t]);
                else
                    y0[t] = _mm256_fmadd_ps(s, a[t], y0[t]);
            }
        }
        for (int t = 0; t < T; t++) {
            const float *xs = xsum + t * ldxs;
            int64_t i = 0;
            for (; i + 8 <= cn; i += 8)
                yb[t] = _mm256_fmadd_ps(_mm256_loadu_ps(bi + i), _mm256_loadu_ps(xs + g0 + i), yb[t]);
            for (; i < cn; i++) bt[t] = __builtin_fmaf(bi[i], xs[g0 + i], bt[t]);
        }
    }
    for (int t = 0; t < T; t++) y[t * ldy] = hsum8(_mm256_add_ps(y0[t], y1[t])) + (hsum8(yb[t]) + bt[t]);
}

/* Rows [r0, r1) for n tokens; n == 1 is the matvec. Tokens go in batches of
 * MT, then 1 (per-token results do not depend on the batch). */
AINL void affine_rows(const ms_mat *m, int64_t r0, int64_t r1, const float *X, const float *XS, int n, float *Y,
                      int64_t ldy, const int bits, const int gs)
{
    const int64_t ldx = m->cols, ldxs = m->cols / gs;
    int t = 0;
    for (; t + MT <= n; t += MT) /* the batch's x stays in L1, the block's rows in L2 */
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

/* ---- input preparation ------------------------------------------------------ */

static void group_sums_avx2(const float *x, int64_t cols, int gs, float *xsum)
{
    for (int64_t g = 0; g < cols / gs; g++) {
        const float *xg = x + g * gs;
        __m256 a0 = _mm256_loadu_ps(xg), a1 = _mm256_loadu_ps(xg + 8);
        for (int j = 16; j < gs; j += 16) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(xg + j));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(xg + j + 8));
        }
        xsum[g] = hsum8(_mm256_add_ps(a0, a1));
    }
}

static const float *prep_natural(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_avx2(x, m->cols, m->group_size, xsum);
    return x;
}

/* 4-bit: per 16 elements, the 8 even then the 8 odd ones. */
static const float *prep_4bit(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_avx2(x, m->cols, m->group_size, xsum);
    for (int64_t b = 0; b < m->cols; b += 16) {
        __m256 lo = _mm256_loadu_ps(x + b), hi = _mm256_loadu_ps(x + b + 8);
        __m256 ev = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)); /* x0 x2 x8 x10 | x4 x6 x12 x14 */
        __m256 od = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
        ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), _MM_SHUFFLE(3, 1, 2, 0)));
        od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od), _MM_SHUFFLE(3, 1, 2, 0)));
        _mm256_storeu_ps(xp + b, ev);
        _mm256_storeu_ps(xp + b + 8, od);
    }
    return xp;
}

/* 3-bit (groups of 64, 128): per 64 elements, vector s holds elements 8i+s. */
static const float *prep_3bit(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_avx2(x, m->cols, m->group_size, xsum);
    if (m->group_size < 64) return x; /* generic path, natural order */
    for (int64_t b = 0; b < m->cols; b += 64)
        for (int s = 0; s < 8; s++)
            for (int i = 0; i < 8; i++) xp[b + 8 * s + i] = x[b + 8 * i + s];
    return xp;
}

/* 6-bit: per 32 elements, vector s holds elements 4i+s (like 2-bit). */
static const float *prep_6bit(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_avx2(x, m->cols, m->group_size, xsum);
    for (int64_t b = 0; b < m->cols; b += 32)
        for (int s = 0; s < 4; s++)
            for (int i = 0; i < 8; i++) xp[b + 8 * s + i] = x[b + 4 * i + s];
    return xp;
}

/* 2-bit: per 32 elements, vector s holds elements 4i+s. */
static const float *prep_2bit(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_avx2(x, m->cols, m->group_size, xsum);
    for (int64_t b = 0; b < m->cols; b += 32)
        for (int s = 0; s < 4; s++)
            for (int i = 0; i < 8; i++) xp[b + 8 * s + i] = x[b + 4 * i + s];
    return xp;
}

/* ---- affine dequantization (natural order, exact) ---------------------------- */

/* q*s + b with two roundings, like the reference. GCC implements the intrinsics
 * as plain vector arithmetic and would contract mul+add into an FMA (different
 * rounding); the empty asm makes the product opaque. */
AINL __m256 mul_add_2r(__m256 q, __m256 s, __m256 b)
{
    __m256 p = _mm256_mul_ps(q, s);
    __asm__("" : "+x"(p));
    return _mm256_add_ps(p, b);
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
        const __m256 s = _mm256_set1_ps(ms_sb_get(sp, m->sb_dtype, g)),
                     b = _mm256_set1_ps(ms_sb_get(bp, m->sb_dtype, g));
        const uint8_t *wg = w + g * gbytes;
        float *o = out + g * gs;
        if (bits == 8) {
            for (int c = 0; c < gs; c += 8)
                _mm256_storeu_ps(o + c, mul_add_2r(_mm256_cvtepi32_ps(load8_u8(wg + c)), s, b));
            continue;
        }
        if (g == ng - 1) {
            memcpy(tail, wg, gbytes);
            memset(tail + gbytes, 0, 8);
            wg = tail;
        }
        for (int c = 0; c < gs / 8; c++) {
            __m256i q;
            switch (bits) {
            case 2: q = unpack8_generic(wg + 2 * c, 2); break;
            case 3: q = unpack8_generic(wg + 3 * c, 3); break;
            case 4: q = unpack8_generic(wg + 4 * c, 4); break;
            case 5: q = unpack8_generic(wg + 5 * c, 5); break;
            default: q = unpack8_generic(wg + 6 * c, 6); break;
            }
            _mm256_storeu_ps(o + 8 * c, mul_add_2r(_mm256_cvtepi32_ps(q), s, b));
        }
    }
}

/* ---- dense ------------------------------------------------------------------- */

/* 8 f32 weights from 16-bit storage. */
AINL __m256 load8_bf16(const uint16_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
AINL __m256 load8_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

AINL __m256i tail_mask(int64_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

/* Dense row dot: 4 accumulators over 32 elements, then 8, then a masked tail. */
AINL float dense_row(const void *wrow, const float *x, int64_t n, const ms_wtype t)
{
#define LOADW(j)                                                                                                       \
    (t == MS_WT_F32    ? _mm256_loadu_ps((const float *)wrow + (j))                                                    \
     : t == MS_WT_BF16 ? load8_bf16((const uint16_t *)wrow + (j))                                                      \
                       : load8_f16((const uint16_t *)wrow + (j)))
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    int64_t j = 0;
    const size_t es = t == MS_WT_F32 ? 4 : 2;
    for (; j + 64 <= n; j += 64) {
        ms_prefetch_lines((const char *)wrow + (size_t)j * es, 64 * es);
        a0 = _mm256_fmadd_ps(LOADW(j), _mm256_loadu_ps(x + j), a0);
        a1 = _mm256_fmadd_ps(LOADW(j + 8), _mm256_loadu_ps(x + j + 8), a1);
        a2 = _mm256_fmadd_ps(LOADW(j + 16), _mm256_loadu_ps(x + j + 16), a2);
        a3 = _mm256_fmadd_ps(LOADW(j + 24), _mm256_loadu_ps(x + j + 24), a3);
        a4 = _mm256_fmadd_ps(LOADW(j + 32), _mm256_loadu_ps(x + j + 32), a4);
        a5 = _mm256_fmadd_ps(LOADW(j + 40), _mm256_loadu_ps(x + j + 40), a5);
        a6 = _mm256_fmadd_ps(LOADW(j + 48), _mm256_loadu_ps(x + j + 48), a6);
        a7 = _mm256_fmadd_ps(LOADW(j + 56), _mm256_loadu_ps(x + j + 56), a7);
    }
    for (; j + 8 <= n; j += 8) a0 = _mm256_fmadd_ps(LOADW(j), _mm256_loadu_ps(x + j), a0);
#undef LOADW
    if (j < n) {
        const int64_t rem = n - j;
        __m256i mk = tail_mask(rem);
        __m256 wv;
        if (t == MS_WT_F32) {
            wv = _mm256_maskload_ps((const float *)wrow + j, mk);
        } else {
            uint16_t tmp[8] = {0};
            memcpy(tmp, (const uint16_t *)wrow + j, (size_t)rem * 2);
            wv = t == MS_WT_BF16 ? load8_bf16(tmp) : load8_f16(tmp);
        }
        a1 = _mm256_fmadd_ps(wv, _mm256_maskload_ps(x + j, mk), a1);
    }
    a0 = _mm256_add_ps(_mm256_add_ps(a0, a4), _mm256_add_ps(a1, a5));
    a2 = _mm256_add_ps(_mm256_add_ps(a2, a6), _mm256_add_ps(a3, a7));
    return hsum8(_mm256_add_ps(a0, a2));
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
    int64_t j = 0;
    if (m->type == MS_WT_F32) {
        memcpy(out, (const float *)m->w + (size_t)r * (size_t)n, (size_t)n * 4);
        return;
    }
    const uint16_t *w = (const uint16_t *)m->w + (size_t)r * (size_t)n;
    if (m->type == MS_WT_BF16) {
        for (; j + 8 <= n; j += 8) _mm256_storeu_ps(out + j, load8_bf16(w + j));
        for (; j < n; j++) out[j] = ms_bf16_to_f32(ms_ld16(w, j));
    } else {
        for (; j + 8 <= n; j += 8) _mm256_storeu_ps(out + j, load8_f16(w + j));
        for (; j < n; j++) out[j] = ms_f16_to_f32(ms_ld16(w, j));
    }
}

/* ---- memory bandwidth probe ---------------------------------------------------- */

static double read_sum_avx2(const float *p, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
    }
    double s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += p[i];
    return s;
}

const ms_kern ms_kern_avx2 = {
    .name = "avx2",
    .dense = {[MS_WT_F32] = {rows_f32, dequant_dense, NULL, NULL, 4},
              [MS_WT_F16] = {rows_f16, dequant_dense, NULL, NULL, 4},
              [MS_WT_BF16] = {rows_bf16, dequant_dense, NULL, NULL, 4}},
    .affine = {[2] = {rows_affine2, dequant_affine, prep_2bit, rows_n_affine2, 32},
               [3] = {rows_affine3, dequant_affine, prep_3bit, rows_n_affine3, 16},
               [4] = {rows_affine4, dequant_affine, prep_4bit, rows_n_affine4, 24},
               [5] = {rows_affine5, dequant_affine, prep_natural, rows_n_affine5, 16},
               [6] = {rows_affine6, dequant_affine, prep_6bit, rows_n_affine6, 16},
               [8] = {rows_affine8, dequant_affine, prep_natural, rows_n_affine8, 8}},
    .group_sums = group_sums_avx2,
    .read_sum = read_sum_avx2,
};

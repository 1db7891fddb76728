/* kern_avx512.c - AVX-512 (F, BW, VL, DQ) kernels: the AVX2 algorithms with
 * 16-lane vectors (this file alone is built with the AVX-512 flags;
 * ms_kern_select uses it only when the CPU reports all four extensions).
 *
 * On CPUs with full-width 512-bit units an exact f32-activation matvec is bound
 * by the number of FMA instructions (one per 8 codes with AVX2, one per 16
 * here), so this table roughly doubles the compute ceiling of the AVX2 one.
 *
 * Affine unpacking:
 *   8 bit:    vpmovzxbd of 16 bytes -> 16 codes;
 *   4 bit:    vpmovzxbd of 16 bytes, &15 and >>4 -> 32 codes (even / odd
 *             elements); x is pre-permuted per 32-element block;
 *   6 bit g64/g128, 3 bit g128: 48 bytes = 16 packs of 3 bytes, one per lane
 *             (four 16-byte loads + vpshufb), shift/mask -> 64 / 128 codes; x
 *             permuted per 64 / 128-element block;
 *   other 2,3,5,6: 16 codes live in 2*bits whole bytes: broadcast 16 bytes to the
 *             four 128-bit lanes, vpshufb the 2 bytes holding code i into dword
 *             i, vpsrlvd by (i*bits)&7, mask. The 16-byte load may run past the
 *             end of the row, so the row's last one or two groups go through a
 *             zero-padded local copy.
 * The algebra, the determinism argument and the exact dequantization are those
 * of kern_avx2.c. */
#include <immintrin.h>
#include <string.h>

#include "kernels_impl.h"
#include "quant.h"
#include "util.h"

#define AINL static inline __attribute__((always_inline))

/* Fixed-order horizontal sum. */
AINL float hsum16(__m512 v)
{
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_shuffle_ps(b, b, 1));
    return _mm_cvtss_f32(b);
}

static void sb_to_f32(const void *src, ms_dtype t, int64_t n, float *dst)
{
    int64_t i = 0;
    if (t == MS_DT_BF16) {
        const uint16_t *s = src;
        for (; i + 16 <= n; i += 16) {
            __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(s + i)));
            _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
        }
        for (; i < n; i++) dst[i] = ms_bf16_to_f32(ms_ld16(s, i));
    } else if (t == MS_DT_F16) {
        const uint16_t *s = src;
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i))));
        for (; i < n; i++) dst[i] = ms_f16_to_f32(ms_ld16(s, i));
    } else {
        memcpy(dst, src, (size_t)n * sizeof(float));
    }
}

/* ---- code extraction ------------------------------------------------------ */

/* clang-format off */
#define OFFB(i, b) (((i) * (b)) >> 3)
#define LN(i, b) OFFB(i, b), OFFB(i, b) + 1, 0x80, 0x80
#define SHUF(b)                                                                                                   \
    {LN(0, b),  LN(1, b),  LN(2, b),  LN(3, b),  LN(4, b),  LN(5, b),  LN(6, b),  LN(7, b),                       \
     LN(8, b),  LN(9, b),  LN(10, b), LN(11, b), LN(12, b), LN(13, b), LN(14, b), LN(15, b)}
#define SHIFTS(b)                                                                                                 \
    {0,                (b) & 7,          (2 * (b)) & 7,  (3 * (b)) & 7,  (4 * (b)) & 7,  (5 * (b)) & 7,           \
     (6 * (b)) & 7,    (7 * (b)) & 7,    (8 * (b)) & 7,  (9 * (b)) & 7,  (10 * (b)) & 7, (11 * (b)) & 7,          \
     (12 * (b)) & 7,   (13 * (b)) & 7,   (14 * (b)) & 7, (15 * (b)) & 7}
static const uint8_t kShuf[9][64] __attribute__((aligned(64))) = {
    [2] = SHUF(2), [3] = SHUF(3), [4] = SHUF(4), [5] = SHUF(5), [6] = SHUF(6)};
static const int32_t kShift[9][16] __attribute__((aligned(64))) = {
    [2] = SHIFTS(2), [3] = SHIFTS(3), [4] = SHIFTS(4), [5] = SHIFTS(5), [6] = SHIFTS(6)};
#undef SHIFTS
#undef SHUF
#undef LN
#undef OFFB
/* clang-format on */

/* vpshufb pattern of load_packs48: lanes 0-2 take bytes 0-11 of their 16, lane 3
 * (loaded from p+32) bytes 4-15. */
/* clang-format off */
static const int8_t kShuf48[64] __attribute__((aligned(64))) = {
    0, 1, 2, -128,  3, 4, 5, -128,  6, 7, 8, -128,     9, 10, 11, -128,
    0, 1, 2, -128,  3, 4, 5, -128,  6, 7, 8, -128,     9, 10, 11, -128,
    0, 1, 2, -128,  3, 4, 5, -128,  6, 7, 8, -128,     9, 10, 11, -128,
    4, 5, 6, -128,  7, 8, 9, -128,  10, 11, 12, -128,  13, 14, 15, -128};
/* clang-format on */

/* 16 codes (natural order) from 2*bits bytes at p (reads 16 bytes). */
AINL __m512i unpack16_generic(const uint8_t *p, const int bits)
{
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)p));
    v = _mm512_shuffle_epi8(v, _mm512_load_si512((const void *)kShuf[bits]));
    v = _mm512_srlv_epi32(v, _mm512_load_si512((const void *)kShift[bits]));
    return _mm512_and_si512(v, _mm512_set1_epi32((1 << bits) - 1));
}

/* 48 bytes at p -> 16 lanes each holding one 3-byte pack (bytes 3k..3k+2).
 * 128-bit lane L gets packs 4L..4L+3 (bytes 12L..12L+11): loads at 0, 12, 24
 * and 32 (the last shuffled from offset 4), so nothing past p+48 is read. */
AINL __m512i load_packs48(const uint8_t *p)
{
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 12)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 24)), 2);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 32)), 3);
    return _mm512_shuffle_epi8(v, _mm512_load_si512((const void *)kShuf48));
}

/* Widths that go through unpack16_generic (16-byte loads past the packs). */
AINL bool uses_generic(const int bits, const int gs)
{
    return bits == 2 || bits == 5 || (bits == 3 && gs < 128) || (bits == 6 && gs < 64);
}

AINL __m512i load16_u8(const uint8_t *p)
{
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}

/* MT: tokens per multi-token kernel call (prefill with few tokens per matrix).
 * 2 measured best for 4-bit on Zen 5 (4 tokens x 4 accumulators spill). */
#define MT 2

/* For T tokens t: out[t] = lanes of sum_j q_j * x_t[j] over one group (x in
 * this table's layout, token t at xg + t*ldx). The codes are unpacked once and
 * used by all T tokens; each token has its own 4 accumulators, updated in the
 * same order whatever T is, so every token's result is bit-identical to the
 * single-token kernel (T = 1). */
AINL void group_dot(const uint8_t *wg, const float *xg, int64_t ldx, const int bits, const int gs, const int T,
                    __m512 *out)
{
    __m512 a[MT][4];
    for (int t = 0; t < T; t++)
        for (int k = 0; k < 4; k++) a[t][k] = _mm512_setzero_ps();
    if (bits == 8) {
        for (int c = 0; c < gs / 16; c++) {
            const __m512 q = _mm512_cvtepi32_ps(load16_u8(wg + 16 * c));
            for (int t = 0; t < T; t++)
                a[t][c & 3] = _mm512_fmadd_ps(q, _mm512_loadu_ps(xg + t * ldx + 16 * c), a[t][c & 3]);
        }
    } else if (bits == 4) {
        const __m512i m4 = _mm512_set1_epi32(15);
        for (int c = 0; c < gs / 32; c++) {
            const __m512i d = load16_u8(wg + 16 * c);
            const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(d, m4)),
                         hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(d, 4));
            for (int t = 0; t < T; t++) {
                a[t][(2 * c) & 3] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(xg + t * ldx + 32 * c), a[t][(2 * c) & 3]);
                a[t][(2 * c + 1) & 3] =
                    _mm512_fmadd_ps(hi, _mm512_loadu_ps(xg + t * ldx + 32 * c + 16), a[t][(2 * c + 1) & 3]);
            }
        }
    } else if (!uses_generic(bits, gs) && (bits == 6 || bits == 3)) {
        /* 6 bit g64/g128, 3 bit g128: 16 packs of 3 bytes hold per = 24/bits codes
         * each (64 or 128 codes); lane k of vector sh = element per*k + sh. */
        const int per = 24 / bits;
        const __m512i mask = _mm512_set1_epi32((1 << bits) - 1);
        for (int c = 0; c < gs / (16 * per); c++) {
            const __m512i v = load_packs48(wg + 48 * c);
            for (int sh = 0; sh < per; sh++) {
                __m512i q = sh ? _mm512_srli_epi32(v, bits * sh) : v;
                if (sh < per - 1) q = _mm512_and_si512(q, mask);
                const __m512 qf = _mm512_cvtepi32_ps(q);
                for (int t = 0; t < T; t++)
                    a[t][sh & 3] =
                        _mm512_fmadd_ps(qf, _mm512_loadu_ps(xg + t * ldx + 16 * per * c + 16 * sh), a[t][sh & 3]);
            }
        }
    } else {
        for (int c = 0; c < gs / 16; c++) {
            const __m512 q = _mm512_cvtepi32_ps(unpack16_generic(wg + 2 * c * bits, bits));
            for (int t = 0; t < T; t++)
                a[t][c & 3] = _mm512_fmadd_ps(q, _mm512_loadu_ps(xg + t * ldx + 16 * c), a[t][c & 3]);
        }
    }
    for (int t = 0; t < T; t++)
        out[t] = _mm512_add_ps(_mm512_add_ps(a[t][0], a[t][1]), _mm512_add_ps(a[t][2], a[t][3]));
}

#define SB_CHUNK 256

/* The generic unpack reads 16 bytes at the start of each 2*bits-byte pair of
 * packs, i.e. up to 16 - 2*bits bytes past a group's end. Groups from
 * tail_start() on are read from a zero-padded copy of the row's end instead
 * (at most 2 groups: 12 bytes of over-read vs >= 8-byte groups). */
#define TAIL_BYTES (2 * 96 + 16)
AINL int64_t tail_start(int64_t ng, size_t gbytes, int bits)
{
    int64_t over = 16 - 2 * bits, nt = (int64_t)((over + (int64_t)gbytes - 1) / (int64_t)gbytes);
    return ng > nt ? ng - nt : 0;
}
AINL void tail_copy(uint8_t *tail, const uint8_t *w, int64_t t0, int64_t ng, size_t gbytes)
{
    size_t n = (size_t)(ng - t0) * gbytes;
    memcpy(tail, w + (size_t)t0 * gbytes, n);
    memset(tail + n, 0, 16);
}

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
    uint8_t tail[TAIL_BYTES] __attribute__((aligned(64)));
    const int64_t t0 = uses_generic(bits, gs) ? tail_start(ng, gbytes, bits) : ng;
    if (t0 < ng) tail_copy(tail, w, t0, ng, gbytes);
    __m512 y0[MT], y1[MT], yb[MT], a[MT];
    float bt[MT];
    for (int t = 0; t < T; t++) {
        y0[t] = y1[t] = yb[t] = _mm512_setzero_ps();
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
            const uint8_t *wg = g < t0 ? w + g * gbytes : tail + (g - t0) * gbytes;
            ms_prefetch_group(w + g * gbytes, g, gbytes);
            group_dot(wg, x + g * gs, ldx, bits, gs, T, a);
            const __m512 s = _mm512_set1_ps(sc[i]);
            for (int t = 0; t < T; t++) {
                if (i & 1)
                    y1[t] = _mm512_fmadd_ps(s, a[t], y1[t]);
                else
                    y0[t] = _mm512_fmadd_ps(s, a[t], y0[t]);
            }
        }
        for (int t = 0; t < T; t++) {
            const float *xs = xsum + t * ldxs;
            int64_t i = 0;
            for (; i + 16 <= cn; i += 16)
                yb[t] = _mm512_fmadd_ps(_mm512_loadu_ps(bi + i), _mm512_loadu_ps(xs + g0 + i), yb[t]);
            for (; i < cn; i++) bt[t] = __builtin_fmaf(bi[i], xs[g0 + i], bt[t]);
        }
    }
    for (int t = 0; t < T; t++) y[t * ldy] = hsum16(_mm512_add_ps(y0[t], y1[t])) + (hsum16(yb[t]) + bt[t]);
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

static void group_sums_avx512(const float *x, int64_t cols, int gs, float *xsum)
{
    for (int64_t g = 0; g < cols / gs; g++) {
        const float *xg = x + g * gs;
        __m512 a0 = _mm512_loadu_ps(xg), a1 = _mm512_loadu_ps(xg + 16);
        for (int j = 32; j < gs; j += 32) {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(xg + j));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(xg + j + 16));
        }
        xsum[g] = hsum16(_mm512_add_ps(a0, a1));
    }
}

static const float *prep_natural(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_avx512(x, m->cols, m->group_size, xsum);
    return x;
}

/* 3-bit g128 and 6-bit g64/g128 (the 3-byte-pack path of group_dot): per
 * 16*per elements (per = 24/bits codes per pack), vector s holds elements
 * per*i + s; other group sizes read x in natural order. */
static const float *prep_packs48(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_avx512(x, m->cols, m->group_size, xsum);
    if (uses_generic(m->bits, m->group_size)) return x;
    const int per = 24 / m->bits;
    for (int64_t b = 0; b < m->cols; b += 16 * per)
        for (int s = 0; s < per; s++)
            for (int i = 0; i < 16; i++) xp[b + 16 * s + i] = x[b + per * i + s];
    return xp;
}

/* 4-bit: per 32 elements, the 16 even then the 16 odd ones. */
static const float *prep_4bit(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_avx512(x, m->cols, m->group_size, xsum);
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int64_t b = 0; b < m->cols; b += 32) {
        __m512 lo = _mm512_loadu_ps(x + b), hi = _mm512_loadu_ps(x + b + 16);
        _mm512_storeu_ps(xp + b, _mm512_permutex2var_ps(lo, ev, hi));
        _mm512_storeu_ps(xp + b + 16, _mm512_permutex2var_ps(lo, od, hi));
    }
    return xp;
}

/* ---- affine dequantization (natural order, exact) ---------------------------- */

/* q*s + b with two roundings (see kern_avx2.c: no FMA contraction). */
AINL __m512 mul_add_2r(__m512 q, __m512 s, __m512 b)
{
    __m512 p = _mm512_mul_ps(q, s);
    __asm__("" : "+v"(p));
    return _mm512_add_ps(p, b);
}

static void dequant_affine(const ms_mat *m, int64_t r, float *out)
{
    const int bits = m->bits, gs = m->group_size;
    const int64_t ng = m->cols / gs;
    const size_t gbytes = (size_t)gs * bits / 8, sbsz = ms_dtype_size(m->sb_dtype);
    const uint8_t *w = (const uint8_t *)m->w + (size_t)r * (size_t)ng * gbytes;
    const char *sp = (const char *)m->scales + (size_t)(r * ng) * sbsz;
    const char *bp = (const char *)m->biases + (size_t)(r * ng) * sbsz;
    uint8_t tail[TAIL_BYTES];
    const int64_t t0 = bits == 8 ? ng : tail_start(ng, gbytes, bits);
    if (t0 < ng) tail_copy(tail, w, t0, ng, gbytes);
    for (int64_t g = 0; g < ng; g++) {
        const __m512 s = _mm512_set1_ps(ms_sb_get(sp, m->sb_dtype, g)),
                     b = _mm512_set1_ps(ms_sb_get(bp, m->sb_dtype, g));
        const uint8_t *wg = g < t0 ? w + g * gbytes : tail + (g - t0) * gbytes;
        float *o = out + g * gs;
        if (bits == 8) {
            for (int c = 0; c < gs; c += 16)
                _mm512_storeu_ps(o + c, mul_add_2r(_mm512_cvtepi32_ps(load16_u8(wg + c)), s, b));
            continue;
        }
        for (int c = 0; c < gs / 16; c++) {
            __m512i q;
            switch (bits) {
            case 2: q = unpack16_generic(wg + 4 * c, 2); break;
            case 3: q = unpack16_generic(wg + 6 * c, 3); break;
            case 4: q = unpack16_generic(wg + 8 * c, 4); break;
            case 5: q = unpack16_generic(wg + 10 * c, 5); break;
            default: q = unpack16_generic(wg + 12 * c, 6); break;
            }
            _mm512_storeu_ps(o + 16 * c, mul_add_2r(_mm512_cvtepi32_ps(q), s, b));
        }
    }
}

/* ---- dense ------------------------------------------------------------------- */

AINL __m512 cvt16_bf16(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AINL __m512 loadw16(const void *w, int64_t j, const ms_wtype t)
{
    if (t == MS_WT_F32) return _mm512_loadu_ps((const float *)w + j);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + j));
    return t == MS_WT_BF16 ? cvt16_bf16(h) : _mm512_cvtph_ps(h);
}

AINL float dense_row(const void *w, const float *x, int64_t n, const ms_wtype t)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    int64_t j = 0;
    const size_t es = t == MS_WT_F32 ? 4 : 2;
    for (; j + 128 <= n; j += 128) {
        ms_prefetch_lines((const char *)w + (size_t)j * es, 128 * es);
        a0 = _mm512_fmadd_ps(loadw16(w, j, t), _mm512_loadu_ps(x + j), a0);
        a1 = _mm512_fmadd_ps(loadw16(w, j + 16, t), _mm512_loadu_ps(x + j + 16), a1);
        a2 = _mm512_fmadd_ps(loadw16(w, j + 32, t), _mm512_loadu_ps(x + j + 32), a2);
        a3 = _mm512_fmadd_ps(loadw16(w, j + 48, t), _mm512_loadu_ps(x + j + 48), a3);
        a4 = _mm512_fmadd_ps(loadw16(w, j + 64, t), _mm512_loadu_ps(x + j + 64), a4);
        a5 = _mm512_fmadd_ps(loadw16(w, j + 80, t), _mm512_loadu_ps(x + j + 80), a5);
        a6 = _mm512_fmadd_ps(loadw16(w, j + 96, t), _mm512_loadu_ps(x + j + 96), a6);
        a7 = _mm512_fmadd_ps(loadw16(w, j + 112, t), _mm512_loadu_ps(x + j + 112), a7);
    }
    for (; j + 16 <= n; j += 16) a0 = _mm512_fmadd_ps(loadw16(w, j, t), _mm512_loadu_ps(x + j), a0);
    if (j < n) {
        const __mmask16 mk = (__mmask16)((1u << (n - j)) - 1u);
        __m512 wv;
        if (t == MS_WT_F32) {
            wv = _mm512_maskz_loadu_ps(mk, (const float *)w + j);
        } else {
            __m256i h = _mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + j);
            wv = t == MS_WT_BF16 ? cvt16_bf16(h) : _mm512_cvtph_ps(h);
        }
        a1 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mk, x + j), a1);
    }
    a0 = _mm512_add_ps(_mm512_add_ps(a0, a4), _mm512_add_ps(a1, a5));
    a2 = _mm512_add_ps(_mm512_add_ps(a2, a6), _mm512_add_ps(a3, a7));
    return hsum16(_mm512_add_ps(a0, a2));
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
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(out + j, loadw16(w, j, m->type == MS_WT_BF16 ? MS_WT_BF16 : MS_WT_F16));
    for (; j < n; j++) out[j] = m->type == MS_WT_BF16 ? ms_bf16_to_f32(ms_ld16(w, j)) : ms_f16_to_f32(ms_ld16(w, j));
}

static double read_sum_avx512(const float *p, size_t n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
    }
    double s = hsum16(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < n; i++) s += p[i];
    return s;
}

const ms_kern ms_kern_avx512 = {
    .name = "avx512",
    .dense = {[MS_WT_F32] = {rows_f32, dequant_dense, NULL, NULL, 8},
              [MS_WT_F16] = {rows_f16, dequant_dense, NULL, NULL, 8},
              [MS_WT_BF16] = {rows_bf16, dequant_dense, NULL, NULL, 8}},
    .affine = {[2] = {rows_affine2, dequant_affine, prep_natural, rows_n_affine2, 32},
               [3] = {rows_affine3, dequant_affine, prep_packs48, rows_n_affine3, 24},
               [4] = {rows_affine4, dequant_affine, prep_4bit, rows_n_affine4, 32},
               [5] = {rows_affine5, dequant_affine, prep_natural, rows_n_affine5, 16},
               [6] = {rows_affine6, dequant_affine, prep_packs48, rows_n_affine6, 16},
               [8] = {rows_affine8, dequant_affine, prep_natural, rows_n_affine8, 8}},
    .group_sums = group_sums_avx512,
    .read_sum = read_sum_avx512,
};

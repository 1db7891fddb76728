/* kern_avx512.c - AVX-512 (F, BW, VL, DQ) kernels: what differs from the
 * other instruction sets (this file alone is built with the AVX-512 flags;
 * ms_kern_select uses it only when the CPU reports all four extensions). The
 * kernels themselves are kern_simd.h over the 16-lane mappings of simd_map.h.
 *
 * On CPUs with full-width 512-bit units an exact f32-activation matvec is bound
 * by the instructions per code (one FMA per 16 codes here, per 8 with AVX2),
 * so this table roughly doubles the compute ceiling of the AVX2 one.
 *
 * Affine unpacking (the isa_* hooks of kern_simd.h):
 *   8 bit:    vpmovzxbd of 16 bytes -> 16 codes;
 *   4 bit:    blocks of 128 codes (ISA_Q4_BLOCK, kern_simd.h's q4 path): one
 *             64-byte load, nibble k of every 32-bit word (>> 4k) looked up in
 *             a 16-entry table of the floats 0..15 with vpermps (the lookup is
 *             the int-to-float conversion; vpermps reads only the low 4 bits
 *             of the index) -> 8 vectors, lane i of vector k = code 8i + k; x
 *             is pre-permuted 8 ways per 128 elements. One 64-byte load and no
 *             zero-extension per 128 codes: +17-25% over vpmovzxbd + vcvtdq2ps
 *             (docs/KERNELS.md);
 *   6 bit g64/g128, 3 bit g128: 48 bytes = 16 packs of 3 bytes, one per lane
 *             (four 16-byte loads + vpshufb), shift/mask -> 64 / 128 codes; x
 *             permuted per 64 / 128-element block;
 *   other 2,3,5,6: 16 codes live in 2*bits whole bytes: broadcast 16 bytes to the
 *             four 128-bit lanes, vpshufb the 2 bytes holding code i into dword
 *             i, vpsrlvd by (i*bits)&7, mask. The 16-byte load may run past the
 *             end of the row (up to 16 - 2*bits bytes: the row's last one or two
 *             groups are read from a padded copy). Dequantization uses this
 *             generic unpacking for every width but 8. */
#define MSV_AVX512 1
#include "simd_map.h"

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

/* Widths that go through unpack16_generic in the matvec. */
AINL bool uses_generic(const int bits, const int gs)
{
    return bits == 2 || bits == 5 || (bits == 3 && gs < 128) || (bits == 6 && gs < 64);
}

AINL __m512i load16_u8(const uint8_t *p)
{
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}

/* ---- 4-bit blocks of 128 codes --------------------------------------------- */

static const float kNibble[16] __attribute__((aligned(64))) = {0, 1, 2,  3,  4,  5,  6,  7,
                                                               8, 9, 10, 11, 12, 13, 14, 15};

/* The 64 bytes of a block (isa_q4raw), or its first L 32-bit words (L < 16:
 * the row's last, partial block; the other lanes read as code 0). */
typedef __m512i isa_q4raw;
AINL isa_q4raw isa_q4_load(const uint8_t *p)
{
    /* Into a register once: GCC would otherwise fold the load into each of
     * the 7 shifts (vpsrld $n, (mem)), 8 loads of one line - harmless from L1,
     * but from DRAM they fill the load queue and cut the lines in flight
     * (q4g64 from DRAM: -33%). */
    __m512i v = _mm512_loadu_si512((const void *)p);
    __asm__("" : "+v"(v));
    return v;
}
AINL isa_q4raw isa_q4_load_part(const uint8_t *p, int L)
{
    return _mm512_maskz_loadu_epi32((__mmask16)((1u << L) - 1u), p);
}
/* Vector k (0..7) of a block: lane i = code 8i + k, as f32. */
AINL msv isa_q4_code(isa_q4raw d, const int k)
{
    const __m512 lut = _mm512_load_ps(kNibble);
    return _mm512_permutexvar_ps(k ? _mm512_srli_epi32(d, 4 * k) : d, lut);
}
/* Per-lane values of the ng groups of a block (v[j] of group j; lane i belongs
 * to group 8i/gs): lanes of missing groups are 0. */
AINL msv isa_q4_spread(const float *v, const int gs, int ng)
{
    if (gs >= 128) return _mm512_set1_ps(v[0]);
    if (gs == 64 && ng == 2) return _mm512_insertf32x8(_mm512_set1_ps(v[0]), _mm256_set1_ps(v[1]), 1);
    const __m128 g = _mm_maskz_loadu_ps((__mmask8)((1u << ng) - 1u), v);
    const __m512i idx = gs == 64 ? _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)
                                 : _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(g));
}
#define ISA_Q4_BLOCK 1

/* ---- hooks of kern_simd.h ---------------------------------------------------- */

/* Tokens per pass of the multi-token rows: 4 measured best on Zen 5 (B = 4, 8:
 * ~10% over 2 per pass for 3/4/8-bit; docs/KERNELS.md). */
#define ISA_MT 4
/* Prefill GEMM: 6 tokens x 64 rows of Y in 24 registers; 128-column panels
 * (32 KiB, in L1) of 128-row blocks. */
#define ISA_GEMM_MR 6
#define ISA_GEMM_NRV 4
#define ISA_GEMM_KC 128
#define ISA_GEMM_ROWS 128
#define ISA_CODES_MAX 8

AINL int isa_dot_chunks(const int bits, const int gs)
{
    /* 4 bit: q4_groups (ISA_Q4_BLOCK) - never through group_dot */
    if (bits != 8 && !uses_generic(bits, gs)) return gs / (16 * (24 / bits)); /* 3-byte packs */
    return gs / 16;
}

AINL int isa_dot_codes(const uint8_t *wg, const int bits, const int gs, const int c, msv *q)
{
    if (bits == 8) {
        q[0] = _mm512_cvtepi32_ps(load16_u8(wg + 16 * c));
        return 1;
    }
    if (!uses_generic(bits, gs)) {
        /* 16 packs of 3 bytes hold per = 24/bits codes each; lane k of vector
         * sh = element per*k + sh of the block. */
        const int per = 24 / bits;
        const __m512i v = load_packs48(wg + 48 * c), mask = _mm512_set1_epi32((1 << bits) - 1);
        for (int sh = 0; sh < per; sh++) {
            __m512i qi = sh ? _mm512_srli_epi32(v, bits * sh) : v;
            if (sh < per - 1) qi = _mm512_and_si512(qi, mask);
            q[sh] = _mm512_cvtepi32_ps(qi);
        }
        return per;
    }
    q[0] = _mm512_cvtepi32_ps(unpack16_generic(wg + 2 * c * bits, bits));
    return 1;
}

AINL int isa_dot_overread(const int bits, const int gs)
{
    return uses_generic(bits, gs) ? 16 - 2 * bits : 0;
}

AINL int isa_dq_chunk(const int bits)
{
    return 16;
}

AINL int isa_dq_codes(const uint8_t *wg, const int bits, const int c, msv *q)
{
    q[0] = _mm512_cvtepi32_ps(bits == 8 ? load16_u8(wg + 16 * c) : unpack16_generic(wg + 2 * c * bits, bits));
    return 1;
}

AINL int isa_dq_overread(const int bits)
{
    return bits == 8 ? 0 : 16 - 2 * bits;
}

/* Chunk vectors interleave P ways: lane i of vector j = element P*i + j of
 * the chunk (4-bit even/odd; 3-byte packs per = 24/bits ways). */
AINL int isa_dot_interleave(const int bits, const int gs)
{
    if (bits == 4) return 8; /* per 128-code block */
    return bits != 8 && !uses_generic(bits, gs) ? 24 / bits : 1;
}

#include "kern_simd.h"

/* ---- input preparation ------------------------------------------------------ */

/* 3-bit g128 and 6-bit g64/g128 (3-byte packs): per 16*per elements (per =
 * 24/bits codes per pack), vector s holds elements per*i + s; other group
 * sizes read x in natural order. */
static const float *prep_packs48(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_simd(x, m->cols, m->group_size, xsum);
    if (uses_generic(m->bits, m->group_size)) return x;
    permute_blocks(x, xp, m->cols, 24 / m->bits);
    return xp;
}

/* The q4_groups layout of x (cols elements): per block of 128, xp[b + 16k + i]
 * = x[b + 8i + k], a transpose of 16 x 8 done in three rounds of two-source
 * permutes (24 per block); a last partial block of L = n/8 lanes, xp[b + Lk +
 * i], element by element. */
static void q4_permute(const float *x, float *xp, int64_t cols)
{
    /* round 1, rows a = 2m, b = 2m+1: lane p of lo = k p/4, hi = k p/4 + 4,
     * entry p%4 = a[k], a[8+k], b[k], b[8+k] */
    const __m512i i1lo = _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
    const __m512i i1hi = _mm512_setr_epi32(4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31);
    /* round 2, vectors of rounds 1 of m and m+1: lanes 0-7 the first k of
     * each, 8-15 the second; 4 entries from a then 4 from b */
    const __m512i i2lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i i2hi = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    int64_t b = 0;
    for (; b + 128 <= cols; b += 128) {
        __m512 r1[8], r2[8];
        for (int m = 0; m < 4; m++) { /* r1[2m]: k 0-3, r1[2m+1]: k 4-7 */
            const __m512 a = _mm512_loadu_ps(x + b + 32 * m), c = _mm512_loadu_ps(x + b + 32 * m + 16);
            r1[2 * m] = _mm512_permutex2var_ps(a, i1lo, c);
            r1[2 * m + 1] = _mm512_permutex2var_ps(a, i1hi, c);
        }
        for (int h = 0; h < 2; h++)     /* rows 0-3 (h 0) and 4-7 (h 1) */
            for (int kq = 0; kq < 2; kq++) { /* k 0-3 (kq 0) or 4-7 */
                const __m512 a = r1[4 * h + kq], c = r1[4 * h + 2 + kq];
                r2[4 * h + 2 * kq] = _mm512_permutex2var_ps(a, i2lo, c);     /* k 4kq, 4kq+1 */
                r2[4 * h + 2 * kq + 1] = _mm512_permutex2var_ps(a, i2hi, c); /* k 4kq+2, 4kq+3 */
            }
        for (int v = 0; v < 4; v++) { /* round 3: rows 0-3 then 4-7 per k */
            const int k = 2 * v;
            _mm512_storeu_ps(xp + b + 16 * k, _mm512_shuffle_f32x4(r2[v], r2[4 + v], 0x44));
            _mm512_storeu_ps(xp + b + 16 * (k + 1), _mm512_shuffle_f32x4(r2[v], r2[4 + v], 0xEE));
        }
    }
    if (b < cols) {
        const int L = (int)((cols - b) / 8);
        for (int k = 0; k < 8; k++)
            for (int i = 0; i < L; i++) xp[b + L * k + i] = x[b + 8 * i + k];
    }
}

/* 4-bit: the block layout of q4_groups (kern_simd.h). */
static const float *prep_4bit(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_simd(x, m->cols, m->group_size, xsum);
    q4_permute(x, xp, m->cols);
    return xp;
}

/* gemm_min_n (2, 3, 4, 5, 6, 8 bits; f32, f16, bf16): where the GEMM overtakes the
 * multi-token rows on Zen 5 (docs/KERNELS.md). */
const ms_kern ms_kern_avx512 = SIMD_TABLE("avx512", prep_natural, 10, prep_packs48, 10, prep_4bit, 20, prep_natural, 10, prep_packs48, 12, prep_natural, 10, 12, 12, 12);

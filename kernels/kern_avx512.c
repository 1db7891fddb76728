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
 *   4 bit:    vpmovzxbd of 16 bytes, &15 and >>4 -> 32 codes (even / odd
 *             elements); x is pre-permuted per 32-element block;
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
    if (bits == 4) return gs / 32;
    if (bits != 8 && !uses_generic(bits, gs)) return gs / (16 * (24 / bits)); /* 3-byte packs */
    return gs / 16;
}

AINL int isa_dot_codes(const uint8_t *wg, const int bits, const int gs, const int c, msv *q)
{
    if (bits == 8) {
        q[0] = _mm512_cvtepi32_ps(load16_u8(wg + 16 * c));
        return 1;
    }
    if (bits == 4) {
        const __m512i d = load16_u8(wg + 16 * c), m4 = _mm512_set1_epi32(15);
        q[0] = _mm512_cvtepi32_ps(_mm512_and_si512(d, m4));
        q[1] = _mm512_cvtepi32_ps(_mm512_srli_epi32(d, 4));
        return 2;
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
    if (bits == 4) return 2;
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

/* 4-bit: per 32 elements, the 16 even then the 16 odd ones. */
static const float *prep_4bit(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_simd(x, m->cols, m->group_size, xsum);
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int64_t b = 0; b < m->cols; b += 32) {
        __m512 lo = _mm512_loadu_ps(x + b), hi = _mm512_loadu_ps(x + b + 16);
        _mm512_storeu_ps(xp + b, _mm512_permutex2var_ps(lo, ev, hi));
        _mm512_storeu_ps(xp + b + 16, _mm512_permutex2var_ps(lo, od, hi));
    }
    return xp;
}

/* gemm_min_n (2, 3, 4, 5, 6, 8 bits; f32, f16, bf16): where the GEMM overtakes the
 * multi-token rows on Zen 5 (docs/KERNELS.md). */
const ms_kern ms_kern_avx512 = SIMD_TABLE("avx512", prep_natural, 10, prep_packs48, 10, prep_4bit, 20, prep_natural, 10, prep_packs48, 12, prep_natural, 10, 12, 12, 12);

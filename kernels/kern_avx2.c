/* kern_avx2.c - AVX2 + FMA + F16C kernels: what differs from the other
 * instruction sets (this file alone is built with -mavx2 -mfma -mf16c;
 * ms_kern_select uses it only when the CPU has all three). The kernels
 * themselves are kern_simd.h over the 8-lane mappings of simd_map.h.
 *
 * Affine unpacking (the isa_* hooks of kern_simd.h), per width:
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
 *           the last pack (the row's last group is read from a padded copy).
 * Dequantization uses the generic unpacking for every width but 8. */
#define MSV_AVX2 1
#include "simd_map.h"

/* ---- code extraction ------------------------------------------------------ */

/* 8 codes of a 2..6-bit pack (8 codes in `bits` bytes at p; reads 8 bytes), in
 * natural order. */
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

/* Widths that go through unpack8_generic in the matvec. */
AINL bool uses_generic(const int bits, const int gs)
{
    return bits == 5 || (bits == 3 && gs < 64);
}

AINL __m256i load8_u8(const uint8_t *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

/* v >> (bits*k) & mask for k < n (the last one unmasked: nothing above it). */
AINL void split_codes(__m256i v, const int bits, const int n, msv *q)
{
    const __m256i mask = _mm256_set1_epi32((1 << bits) - 1);
    for (int k = 0; k < n; k++) {
        __m256i c = k ? _mm256_srli_epi32(v, bits * k) : v;
        if (k < n - 1) c = _mm256_and_si256(c, mask);
        q[k] = _mm256_cvtepi32_ps(c);
    }
}

/* ---- hooks of kern_simd.h ---------------------------------------------------- */

/* Tokens per pass of the multi-token rows: 3 (16 registers; 25% over 2 at B = 3). */
#define ISA_MT 3
/* Prefill GEMM: 5 tokens x 16 rows of Y in 10 registers (with 6 x 16, GCC 12
 * -O3 keeps a copy of every accumulator on the stack at each k: 16 registers
 * are too few); 256-column panels (16 KiB) of 64-row blocks. */
#define ISA_GEMM_MR 5
#define ISA_GEMM_NRV 2
#define ISA_GEMM_KC 256
#define ISA_GEMM_ROWS 64
#define ISA_CODES_MAX 8

AINL int isa_dot_chunks(const int bits, const int gs)
{
    switch (bits) {
    case 8: return gs / 8;
    case 4: return gs / 16;
    case 2:
    case 6: return gs / 32;
    default: return uses_generic(bits, gs) ? gs / 8 : gs / 64; /* 5; 3 */
    }
}

AINL int isa_dot_codes(const uint8_t *wg, const int bits, const int gs, const int c, msv *q)
{
    switch (bits) {
    case 8: q[0] = _mm256_cvtepi32_ps(load8_u8(wg + 8 * c)); return 1;
    case 4: split_codes(load8_u8(wg + 8 * c), 4, 2, q); return 2;  /* even, odd elements */
    case 2: split_codes(load8_u8(wg + 8 * c), 2, 4, q); return 4;  /* lane k of q[s] = element 4k+s */
    case 6: split_codes(load_packs24(wg + 24 * c), 6, 4, q); return 4; /* element 4k+s */
    default:
        if (!uses_generic(bits, gs)) {
            split_codes(load_packs24(wg + 24 * c), 3, 8, q); /* 3-bit g64/g128: element 8k+s */
            return 8;
        }
        q[0] = _mm256_cvtepi32_ps(unpack8_generic(wg + c * bits, bits));
        return 1;
    }
}

AINL int isa_dot_overread(const int bits, const int gs)
{
    return uses_generic(bits, gs) ? 8 - bits : 0;
}

AINL int isa_dq_chunk(const int bits)
{
    return 8;
}

AINL int isa_dq_codes(const uint8_t *wg, const int bits, const int c, msv *q)
{
    q[0] = _mm256_cvtepi32_ps(bits == 8 ? load8_u8(wg + 8 * c) : unpack8_generic(wg + c * bits, bits));
    return 1;
}

AINL int isa_dq_overread(const int bits)
{
    return bits == 8 ? 0 : 8 - bits;
}

/* Chunk vectors interleave P ways: lane i of vector j = element P*i + j of
 * the chunk (P = the vectors per chunk except for the natural-order widths). */
AINL int isa_dot_interleave(const int bits, const int gs)
{
    switch (bits) {
    case 8: return 1;
    case 4: return 2;
    case 2:
    case 6: return 4;
    default: return uses_generic(bits, gs) ? 1 : 8;
    }
}

#include "kern_simd.h"

/* ---- input preparation ------------------------------------------------------ */

/* 4-bit: per 16 elements, the 8 even then the 8 odd ones. */
static const float *prep_4bit(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_simd(x, m->cols, m->group_size, xsum);
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

/* 2-bit and 6-bit: per 32 elements, vector s holds elements 4i+s. */
static const float *prep_stride4(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_simd(x, m->cols, m->group_size, xsum);
    permute_blocks(x, xp, m->cols, 4);
    return xp;
}

/* 3-bit (groups of 64, 128): per 64 elements, vector s holds elements 8i+s. */
static const float *prep_3bit(const ms_mat *m, const float *x, float *xp, float *xsum)
{
    group_sums_simd(x, m->cols, m->group_size, xsum);
    if (uses_generic(3, m->group_size)) return x; /* natural order */
    permute_blocks(x, xp, m->cols, 8);
    return xp;
}

/* gemm_min_n (2, 3, 4, 5, 6, 8 bits; f32, f16, bf16): where the GEMM overtakes the
 * multi-token rows on Zen 5 (docs/KERNELS.md). */
const ms_kern ms_kern_avx2 = SIMD_TABLE("avx2", prep_stride4, 16, prep_3bit, 12, prep_4bit, 20, prep_natural, 8, prep_stride4, 12, prep_natural, 8, 8, 8, 8);

/* simd_map.h - SIMD mappings: one name per vector operation, defined for the
 * instruction set of the file that includes it (ggml's simd-mappings idea).
 *
 * An instruction-set file (kern_avx2.c, kern_avx512.c, kern_neon.c) defines
 * exactly one of MSV_AVX2, MSV_AVX512, MSV_NEON, includes this header, writes
 * what only it can do (unpacking codes, the permuted input layouts) and then
 * includes kern_simd.h, the kernels written once in terms of these names.
 *
 *   msv            f32 vector of MSV_L lanes (8 / 16 / 4)
 *   msv_zero, msv_set1, msv_load, msv_store, msv_bcast (broadcast *p)
 *   msv_add, msv_mul, msv_fma(a, b, c) = a*b + c (one rounding)
 *   msv_hsum       horizontal sum in a fixed order (part of each table's
 *                  arithmetic: never change it without re-checking hashes)
 *   msv_opaque     an empty asm on a vector: keeps GCC from contracting the
 *                  mul and add around it into an FMA
 *   msv_load_bf16, msv_load_f16  MSV_L 16-bit floats -> f32 (exact)
 *   msv_load_part, msv_store_part  the first n < MSV_L lanes (rest zero / untouched)
 *   MSV_MASKED_TAIL 1 where partial loads exist (dense row tails are vector),
 *                  0 on NEON (scalar tails)
 *   msv_transpose  an MSV_L x MSV_L block: dst[j*ldd + i] = src[i*lds + j]
 */
#ifndef MS_SIMD_MAP_H
#define MS_SIMD_MAP_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define AINL static inline __attribute__((always_inline))

#if defined(MSV_AVX512)
#include <immintrin.h>

typedef __m512 msv;
#define MSV_L 16
#define MSV_NREGS 32
#define MSV_MASKED_TAIL 1
#define msv_zero() _mm512_setzero_ps()
#define msv_set1(f) _mm512_set1_ps(f)
#define msv_load(p) _mm512_loadu_ps(p)
#define msv_store(p, v) _mm512_storeu_ps(p, v)
#define msv_bcast(p) _mm512_set1_ps(*(p))
#define msv_add(a, b) _mm512_add_ps(a, b)
#define msv_mul(a, b) _mm512_mul_ps(a, b)
#define msv_fma(a, b, c) _mm512_fmadd_ps(a, b, c)

AINL float msv_hsum(msv v)
{
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_shuffle_ps(b, b, 1));
    return _mm_cvtss_f32(b);
}
AINL msv msv_opaque(msv v)
{
    __asm__("" : "+v"(v));
    return v;
}
AINL msv msv_load_bf16(const uint16_t *p)
{
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
AINL msv msv_load_f16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
AINL msv msv_load_part(const float *p, int64_t n)
{
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
}
AINL msv msv_load_bf16_part(const uint16_t *p, int64_t n)
{
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16((__mmask16)((1u << n) - 1u), p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
AINL msv msv_load_f16_part(const uint16_t *p, int64_t n)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((__mmask16)((1u << n) - 1u), p));
}
AINL void msv_store_part(float *p, msv v, int64_t n)
{
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v);
}
AINL void msv_transpose(const float *src, int64_t lds, float *dst, int64_t ldd)
{
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * lds);
    for (int i = 0; i < 16; i += 2) { /* per 128-bit lane: rows i, i+1 interleaved */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* r[i + c], lane l: column 4l + c of rows i..i+3 */
        const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]), c = _mm512_castps_pd(t[i + 2]),
                      d = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int c = 0; c < 4; c++) { /* column 4l + c: lane l of r[c], r[4+c], r[8+c], r[12+c] */
        const __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
        const __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44),
                     u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
        _mm512_storeu_ps(dst + c * ldd, _mm512_shuffle_f32x4(u0, u2, 0x88));
        _mm512_storeu_ps(dst + (4 + c) * ldd, _mm512_shuffle_f32x4(u0, u2, 0xDD));
        _mm512_storeu_ps(dst + (8 + c) * ldd, _mm512_shuffle_f32x4(u1, u3, 0x88));
        _mm512_storeu_ps(dst + (12 + c) * ldd, _mm512_shuffle_f32x4(u1, u3, 0xDD));
    }
}

#elif defined(MSV_AVX2)
#include <immintrin.h>

typedef __m256 msv;
#define MSV_L 8
#define MSV_NREGS 16
#define MSV_MASKED_TAIL 1
#define msv_zero() _mm256_setzero_ps()
#define msv_set1(f) _mm256_set1_ps(f)
#define msv_load(p) _mm256_loadu_ps(p)
#define msv_store(p, v) _mm256_storeu_ps(p, v)
#define msv_bcast(p) _mm256_broadcast_ss(p)
#define msv_add(a, b) _mm256_add_ps(a, b)
#define msv_mul(a, b) _mm256_mul_ps(a, b)
#define msv_fma(a, b, c) _mm256_fmadd_ps(a, b, c)

AINL float msv_hsum(msv v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}
AINL msv msv_opaque(msv v)
{
    __asm__("" : "+x"(v));
    return v;
}
AINL msv msv_load_bf16(const uint16_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
AINL msv msv_load_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
AINL __m256i msv_mask_(int64_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
AINL msv msv_load_part(const float *p, int64_t n)
{
    return _mm256_maskload_ps(p, msv_mask_(n));
}
AINL msv msv_load_bf16_part(const uint16_t *p, int64_t n)
{
    uint16_t t[8] = {0};
    memcpy(t, p, (size_t)n * 2);
    return msv_load_bf16(t);
}
AINL msv msv_load_f16_part(const uint16_t *p, int64_t n)
{
    uint16_t t[8] = {0};
    memcpy(t, p, (size_t)n * 2);
    return msv_load_f16(t);
}
AINL void msv_store_part(float *p, msv v, int64_t n)
{
    _mm256_maskstore_ps(p, msv_mask_(n), v);
}
AINL void msv_transpose(const float *src, int64_t lds, float *dst, int64_t ldd)
{
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) { /* r[i + c], lane l: column 4l + c of rows i..i+3 */
        const __m256d a = _mm256_castps_pd(t[i]), b = _mm256_castps_pd(t[i + 1]), c = _mm256_castps_pd(t[i + 2]),
                      d = _mm256_castps_pd(t[i + 3]);
        r[i] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, c));
        r[i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, c));
        r[i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(b, d));
        r[i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(b, d));
    }
    for (int c = 0; c < 4; c++) {
        _mm256_storeu_ps(dst + c * ldd, _mm256_permute2f128_ps(r[c], r[4 + c], 0x20));
        _mm256_storeu_ps(dst + (4 + c) * ldd, _mm256_permute2f128_ps(r[c], r[4 + c], 0x31));
    }
}

#elif defined(MSV_NEON)
#include <arm_neon.h>

typedef float32x4_t msv;
#define MSV_L 4
#define MSV_NREGS 32
#define MSV_MASKED_TAIL 0
#define msv_zero() vdupq_n_f32(0.0f)
#define msv_set1(f) vdupq_n_f32(f)
#define msv_load(p) vld1q_f32(p)
#define msv_store(p, v) vst1q_f32(p, v)
#define msv_bcast(p) vld1q_dup_f32(p)
#define msv_add(a, b) vaddq_f32(a, b)
#define msv_mul(a, b) vmulq_f32(a, b)
#define msv_fma(a, b, c) vfmaq_f32(c, a, b)

AINL float msv_hsum(msv v)
{
    float32x2_t a = vadd_f32(vget_low_f32(v), vget_high_f32(v));
    return vget_lane_f32(a, 0) + vget_lane_f32(a, 1);
}
AINL msv msv_opaque(msv v)
{
    __asm__("" : "+w"(v));
    return v;
}
AINL msv msv_load_bf16(const uint16_t *p)
{
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}
AINL msv msv_load_f16(const uint16_t *p)
{
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}
AINL msv msv_load_part(const float *p, int64_t n)
{
    float t[4] = {0};
    memcpy(t, p, (size_t)n * sizeof(float));
    return vld1q_f32(t);
}
AINL void msv_store_part(float *p, msv v, int64_t n)
{
    float t[4];
    vst1q_f32(t, v);
    memcpy(p, t, (size_t)n * sizeof(float));
}
AINL void msv_transpose(const float *src, int64_t lds, float *dst, int64_t ldd)
{
    const float32x4x2_t p = vtrnq_f32(vld1q_f32(src), vld1q_f32(src + lds));
    const float32x4x2_t q = vtrnq_f32(vld1q_f32(src + 2 * lds), vld1q_f32(src + 3 * lds));
    vst1q_f32(dst, vcombine_f32(vget_low_f32(p.val[0]), vget_low_f32(q.val[0])));
    vst1q_f32(dst + ldd, vcombine_f32(vget_low_f32(p.val[1]), vget_low_f32(q.val[1])));
    vst1q_f32(dst + 2 * ldd, vcombine_f32(vget_high_f32(p.val[0]), vget_high_f32(q.val[0])));
    vst1q_f32(dst + 3 * ldd, vcombine_f32(vget_high_f32(p.val[1]), vget_high_f32(q.val[1])));
}

#else
#error "simd_map.h: define MSV_AVX2, MSV_AVX512 or MSV_NEON before including it"
#endif

#endif

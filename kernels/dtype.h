/* dtype.h - element types of stored tensors (the safetensors dtype strings) and
 * exact scalar conversions between bf16 / f16 / fp8-e4m3 and f32.
 *
 * Conversions are bit-exact reference versions (round-to-nearest-even on the
 * way down); SIMD code may use F16C/AVX2 but must agree with these. */
#ifndef MS_DTYPE_H
#define MS_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum ms_dtype {
    MS_DT_F32 = 0,
    MS_DT_F16,
    MS_DT_BF16,
    MS_DT_F64,
    MS_DT_U32,
    MS_DT_I32,
    MS_DT_U16,
    MS_DT_I16,
    MS_DT_U8,
    MS_DT_I8,
    MS_DT_I64,
    MS_DT_U64,
    MS_DT_BOOL,
    MS_DT_F8_E4M3,
    MS_DT_F8_E5M2,
    MS_DT_COUNT
} ms_dtype;

/* Bytes per element. */
size_t ms_dtype_size(ms_dtype t);
/* Safetensors spelling ("F32", "BF16", "F8_E4M3", ...). */
const char *ms_dtype_name(ms_dtype t);
/* Parse a safetensors dtype string; returns 0 or -EINVAL. */
int ms_dtype_parse(const char *s, ms_dtype *out);

/* Element i of an array of uint32 / uint16 / float at p, whatever p's alignment:
 * tensor data need not be aligned to its element size (mx.save_safetensors pads
 * no header, and an expert's bytes sit at their file offset inside an I/O slot). */
static inline uint32_t ms_ld_u32(const void *p, size_t i)
{
    uint32_t v;
    memcpy(&v, (const char *)p + 4 * i, 4);
    return v;
}
static inline uint16_t ms_ld_u16(const void *p, size_t i)
{
    uint16_t v;
    memcpy(&v, (const char *)p + 2 * i, 2);
    return v;
}
static inline float ms_ld_f32(const void *p, size_t i)
{
    float v;
    memcpy(&v, (const char *)p + 4 * i, 4);
    return v;
}

static inline float ms_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t ms_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static inline float ms_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400u));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t ms_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);        /* NaN */
    if (absu >= 0x47800000u) return (uint16_t)(sign | 0x7c00u);       /* overflow -> inf (>= 65536) */
    if (absu >= 0x38800000u) {                                         /* normal */
        uint32_t mant = absu + 0xfffu + ((absu >> 13) & 1u) - (112u << 23);
        if (mant >= 0x0f800000u) return (uint16_t)(sign | 0x7c00u);   /* rounded up to inf */
        return (uint16_t)(sign | (mant >> 13));
    }
    if (absu < 0x33000000u) return (uint16_t)sign;                     /* < half the smallest subnormal */
    /* subnormal */
    uint32_t e = absu >> 23;
    uint32_t m = (absu & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t half = 1u << (shift - 1);
    uint32_t rest = m & ((1u << shift) - 1);
    uint32_t r = m >> shift;
    if (rest > half || (rest == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

/* FP8 E4M3 (fn variant: no inf, 0x7f/0xff = NaN, max 448). */
static inline float ms_fp8_e4m3_to_f32(uint8_t b)
{
    uint32_t sign = (uint32_t)(b & 0x80u) << 24;
    uint32_t exp = (b >> 3) & 0xfu;
    uint32_t man = b & 0x7u;
    float f;
    if (exp == 15 && man == 7) {
        uint32_t u = sign | 0x7fc00000u;
        memcpy(&f, &u, 4);
        return f;
    }
    if (exp == 0) {
        f = (float)man * (1.0f / 512.0f); /* man * 2^-9 */
    } else {
        uint32_t u = ((exp + 127 - 7) << 23) | (man << 20);
        memcpy(&f, &u, 4);
    }
    return sign ? -f : f;
}

/* Convert n elements of type t at src to f32 (t in F32, F16, BF16, F64, F8_E4M3,
 * integer types). Returns 0 or -EINVAL for unsupported types. */
int ms_convert_to_f32(ms_dtype t, const void *src, float *dst, size_t n);

#endif

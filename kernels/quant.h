/* quant.h - MLX affine quantization: bit packing (LSB-first stream in uint32
 * words), the quantizer MLX uses (mlx ops.cpp affine_quantize, current version:
 * the extreme-magnitude end of each group is reproduced exactly; scales may be
 * negative), and a scalar dequantizer. These are the reference definitions the
 * kernels, `synth` and `quantize` all share (mlx.core.quantize, mode "affine"). */
#ifndef MS_QUANT_H
#define MS_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dtype.h"

/* Valid affine parameters. */
static inline bool ms_affine_bits_ok(int bits)
{
    return bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8;
}
static inline bool ms_affine_group_ok(int gs) { return gs == 32 || gs == 64 || gs == 128; }

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

/* Extract element j (bits wide) from a packed row. */
static inline uint32_t ms_unpack_one(const uint32_t *w, int bits, int64_t j)
{
    uint64_t bitpos = (uint64_t)j * (uint64_t)bits;
    uint32_t lo = (uint32_t)(bitpos & 31u);
    uint64_t word = bitpos >> 5;
    uint32_t v = ms_ld_u32(w, word) >> lo;
    if (lo + (uint32_t)bits > 32) v |= ms_ld_u32(w, word + 1) << (32 - lo);
    return v & ((1u << bits) - 1u);
}

/* Pack n codes (each < 2^bits) into n*bits/32 words (n*bits must be a multiple of 32). */
void ms_pack_bits(const uint8_t *q, int64_t n, int bits, uint32_t *out);
/* Unpack n codes. */
void ms_unpack_bits(const uint32_t *w, int64_t n, int bits, uint8_t *q);

/* Quantize one row of n floats (n % gs == 0) with MLX's affine algorithm: codes
 * packed into out_w (n*bits/32 words), per-group scale and bias as floats. */
void ms_affine_quantize_row(const float *x, int64_t n, int bits, int gs, uint32_t *out_w, float *scales,
                            float *biases);

/* Same, with scales and biases rounded to sb_dtype (BF16, F16 or F32) and
 * written in that dtype (what a checkpoint stores). The codes are computed with
 * the unrounded float scale, as MLX does. */
void ms_affine_quantize_row_dt(const float *x, int64_t n, int bits, int gs, ms_dtype sb_dtype, uint32_t *out_w,
                               void *scales, void *biases);

/* Dequantize one row: out[j] = scale[g] * q[j] + bias[g], in float32. */
void ms_affine_dequantize_row(const uint32_t *w, const void *scales, const void *biases, ms_dtype sb_dtype,
                              int64_t n, int bits, int gs, float *out);

/* Read element i of a scales/biases array of dtype t as float. */
static inline float ms_sb_get(const void *p, ms_dtype t, int64_t i)
{
    switch (t) {
    case MS_DT_BF16: return ms_bf16_to_f32(ms_ld_u16(p, (size_t)i));
    case MS_DT_F16: return ms_f16_to_f32(ms_ld_u16(p, (size_t)i));
    default: return ms_ld_f32(p, (size_t)i);
    }
}

#endif

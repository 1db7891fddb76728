/* quant.c - MLX affine quantize / pack / dequantize reference (see quant.h). */
#include "quant.h"

#include <math.h>
#include <string.h>

void ms_pack_bits(const uint8_t *q, int64_t n, int bits, uint32_t *out)
{
    int64_t nw = n * bits / 32;
    memset(out, 0, (size_t)nw * 4);
    for (int64_t j = 0; j < n; j++) {
        uint64_t bitpos = (uint64_t)j * (uint64_t)bits;
        uint32_t lo = (uint32_t)(bitpos & 31u);
        uint64_t word = bitpos >> 5;
        uint32_t v = q[j] & ((1u << bits) - 1u);
        out[word] |= v << lo;
        if (lo + (uint32_t)bits > 32) out[word + 1] |= v >> (32 - lo);
    }
}

void ms_unpack_bits(const uint32_t *w, int64_t n, int bits, uint8_t *q)
{
    for (int64_t j = 0; j < n; j++) q[j] = (uint8_t)ms_unpack_one(w, bits, j);
}

static void quantize_group(const float *x, int gs, int bits, uint8_t *q, float *scale_out, float *bias_out)
{
    float n_bins = (float)((1 << bits) - 1);
    float mn = x[0], mx = x[0];
    for (int i = 1; i < gs; i++) {
        mn = fminf(mn, x[i]);
        mx = fmaxf(mx, x[i]);
    }
    bool mask = fabsf(mn) > fabsf(mx);
    float s = fmaxf((mx - mn) / n_bins, 1e-7f);
    if (!mask) s = -s;
    float edge = mask ? mn : mx;
    float q0 = rintf(edge / s);
    float bias = 0.0f;
    if (q0 != 0.0f) {
        s = edge / q0;
        bias = edge;
    }
    for (int i = 0; i < gs; i++) {
        float v = rintf((x[i] - bias) / s);
        if (v < 0) v = 0;
        if (v > n_bins) v = n_bins;
        q[i] = (uint8_t)v;
    }
    *scale_out = s;
    *bias_out = bias;
}

void ms_affine_quantize_row(const float *x, int64_t n, int bits, int gs, uint32_t *out_w, float *scales,
                            float *biases)
{
    uint8_t q[128];
    int words_per_group = gs * bits / 32;
    for (int64_t g = 0; g < n / gs; g++) {
        quantize_group(x + g * gs, gs, bits, q, &scales[g], &biases[g]);
        ms_pack_bits(q, gs, bits, out_w + g * words_per_group);
    }
}

void ms_affine_quantize_row_dt(const float *x, int64_t n, int bits, int gs, ms_dtype sb_dtype, uint32_t *out_w,
                               void *scales, void *biases)
{
    uint8_t q[128];
    int words_per_group = gs * bits / 32;
    for (int64_t g = 0; g < n / gs; g++) {
        float s, b;
        quantize_group(x + g * gs, gs, bits, q, &s, &b);
        ms_pack_bits(q, gs, bits, out_w + g * words_per_group);
        switch (sb_dtype) {
        case MS_DT_BF16:
            ((uint16_t *)scales)[g] = ms_f32_to_bf16(s);
            ((uint16_t *)biases)[g] = ms_f32_to_bf16(b);
            break;
        case MS_DT_F16:
            ((uint16_t *)scales)[g] = ms_f32_to_f16(s);
            ((uint16_t *)biases)[g] = ms_f32_to_f16(b);
            break;
        default:
            ((float *)scales)[g] = s;
            ((float *)biases)[g] = b;
            break;
        }
    }
}

void ms_affine_dequantize_row(const uint32_t *w, const void *scales, const void *biases, ms_dtype sb_dtype,
                              int64_t n, int bits, int gs, float *out)
{
    for (int64_t j = 0; j < n; j++) {
        int64_t g = j / gs;
        out[j] = ms_sb_get(scales, sb_dtype, g) * (float)ms_unpack_one(w, bits, j) + ms_sb_get(biases, sb_dtype, g);
    }
}

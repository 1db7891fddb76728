/* kern_ref.c - the scalar reference kernels (`_ref`): the definition every SIMD
 * kernel is tested against, and the fallback on CPUs without AVX2/NEON.
 *
 * Plain C, compiled for the baseline ISA, float32 accumulation in a fixed
 * sequential order. Affine rows use the algebra of the format,
 *   y = sum_g s_g * (q_g . x_g) + b_g * xsum_g,
 * with the codes of one group unpacked into a small buffer first (bit-stream
 * extraction, so every width 2..8 takes the same path). */
#include "kernels_impl.h"
#include "quant.h"

void ms_ref_group_sums(const float *x, int64_t cols, int gs, float *xsum)
{
    for (int64_t g = 0; g < cols / gs; g++) {
        float s = 0.0f;
        for (int j = 0; j < gs; j++) s += x[g * gs + j];
        xsum[g] = s;
    }
}

float ms_ref_dot_affine_row(const ms_mat *m, int64_t r, const float *x, const float *xsum)
{
    const int bits = m->bits, gs = m->group_size;
    const int64_t ng = m->cols / gs;
    const uint32_t *w = (const uint32_t *)m->w + (size_t)r * (size_t)(m->cols * bits / 32);
    const int64_t sb0 = r * ng;
    uint8_t q[128];
    float acc = 0.0f;
    for (int64_t g = 0; g < ng; g++) {
        const uint32_t *wg = w + g * (gs * bits / 32); /* groups are word-aligned */
        for (int j = 0; j < gs; j++) q[j] = (uint8_t)ms_unpack_one(wg, bits, j);
        const float *xg = x + g * gs;
        float qx = 0.0f, xs = 0.0f;
        for (int j = 0; j < gs; j++) {
            qx += (float)q[j] * xg[j];
            xs += xg[j];
        }
        if (xsum) xs = xsum[g];
        float s = ms_sb_get(m->scales, m->sb_dtype, sb0 + g);
        float b = ms_sb_get(m->biases, m->sb_dtype, sb0 + g);
        acc += s * qx + b * xs;
    }
    return acc;
}

float ms_ref_dot_dense_row(const ms_mat *m, int64_t r, const float *x)
{
    const int64_t n = m->cols;
    float acc = 0.0f;
    switch (m->type) {
    case MS_WT_F32: {
        const char *w = (const char *)m->w + (size_t)r * (size_t)n * 4;
        for (int64_t j = 0; j < n; j++) acc += ms_ld_f32(w, (size_t)j) * x[j];
        break;
    }
    case MS_WT_F16: {
        const char *w = (const char *)m->w + (size_t)r * (size_t)n * 2;
        for (int64_t j = 0; j < n; j++) acc += ms_f16_to_f32(ms_ld_u16(w, (size_t)j)) * x[j];
        break;
    }
    case MS_WT_BF16: {
        const char *w = (const char *)m->w + (size_t)r * (size_t)n * 2;
        for (int64_t j = 0; j < n; j++) acc += ms_bf16_to_f32(ms_ld_u16(w, (size_t)j)) * x[j];
        break;
    }
    default: break;
    }
    return acc;
}

static void ref_rows_affine(const ms_mat *m, int64_t r0, int64_t r1, const float *x, const float *xsum, float *y)
{
    for (int64_t r = r0; r < r1; r++) y[r - r0] = ms_ref_dot_affine_row(m, r, x, xsum);
}

static void ref_rows_dense(const ms_mat *m, int64_t r0, int64_t r1, const float *x, const float *xsum, float *y)
{
    (void)xsum;
    for (int64_t r = r0; r < r1; r++) y[r - r0] = ms_ref_dot_dense_row(m, r, x);
}

/* s*q rounded to float, then + b rounded: the definition every table's
 * dequantization matches bit for bit. The volatile product keeps the compiler from
 * contracting the two into an FMA (GCC does by default where FMA exists:
 * aarch64, or x86 with -march=native). */
static inline float mul_add_2r(float s, float q, float b)
{
    volatile float p = s * q;
    return p + b;
}

static void ref_dequant_affine(const ms_mat *m, int64_t r, int64_t c0, int64_t c1, float *out)
{
    const int bits = m->bits, gs = m->group_size;
    const int64_t ng = m->cols / gs;
    const uint32_t *w = (const uint32_t *)m->w + (size_t)r * (size_t)(m->cols * bits / 32);
    for (int64_t g = c0 / gs; g < c1 / gs; g++) {
        float s = ms_sb_get(m->scales, m->sb_dtype, r * ng + g), b = ms_sb_get(m->biases, m->sb_dtype, r * ng + g);
        for (int j = 0; j < gs; j++)
            out[g * gs + j - c0] = mul_add_2r(s, (float)ms_unpack_one(w, bits, g * gs + j), b);
    }
}

static void ref_dequant_dense(const ms_mat *m, int64_t r, int64_t c0, int64_t c1, float *out)
{
    /* Unaligned-safe loads: mlx payloads sit at any address. */
    const size_t es = m->type == MS_WT_F32 ? 4 : 2;
    const char *w = (const char *)m->w + (size_t)r * (size_t)m->cols * es;
    for (int64_t j = c0; j < c1; j++) {
        switch (m->type) {
        case MS_WT_F32: out[j - c0] = ms_ld_f32(w, (size_t)j); break;
        case MS_WT_F16: out[j - c0] = ms_f16_to_f32(ms_ld_u16(w, (size_t)j)); break;
        default: out[j - c0] = ms_bf16_to_f32(ms_ld_u16(w, (size_t)j)); break;
        }
    }
}

static double ref_read_sum(const float *p, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += p[i];
    return s;
}

static void ref_axpy(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

#define REF_AFFINE                                                                                                     \
    {                                                                                                                  \
        ref_rows_affine, ref_dequant_affine                                                                            \
    }
#define REF_DENSE                                                                                                      \
    {                                                                                                                  \
        ref_rows_dense, ref_dequant_dense                                                                              \
    }

const ms_kern ms_kern_ref = {
    .name = "ref",
    .dense = {REF_DENSE, REF_DENSE, REF_DENSE},
    .affine =
        {[2] = REF_AFFINE, [3] = REF_AFFINE, [4] = REF_AFFINE, [5] = REF_AFFINE, [6] = REF_AFFINE, [8] = REF_AFFINE},
    .group_sums = ms_ref_group_sums,
    .read_sum = ref_read_sum,
    .axpy = ref_axpy,
};

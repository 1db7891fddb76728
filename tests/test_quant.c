/* test_quant.c - MLX packing test vectors for every bit width (spec mlx-quant.md
 * §5), the quantizer's worked examples (negative scales), and pack/unpack round trips. */
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "ms_test.h"
#include "quant.h"

static void check_pack(int bits, const uint8_t *q, const uint32_t *expect)
{
    uint32_t w[8];
    ms_pack_bits(q, 32, bits, w);
    for (int i = 0; i < bits; i++) assert_int_equal(w[i], expect[i]);
    uint8_t back[32];
    ms_unpack_bits(w, 32, bits, back);
    assert_memory_equal(back, q, 32);
}

static void test_pack_vectors_periodic(void **state)
{
    (void)state;
    static const uint32_t v2[] = {0xE4E4E4E4, 0xE4E4E4E4};
    static const uint32_t v3[] = {0x88FAC688, 0xC688FAC6, 0xFAC688FA};
    static const uint32_t v4[] = {0x76543210, 0xFEDCBA98, 0x76543210, 0xFEDCBA98};
    static const uint32_t v5[] = {0x8A418820, 0xC5A92839, 0xCA307B9A, 0x38BDAB49, 0xFFBBCDEB};
    static const uint32_t v6[] = {0x440C2040, 0xA2481C61, 0x3CE34C2C, 0x544D2450, 0xA6585D65, 0x7DE75C6D};
    static const uint32_t v8[] = {0x03020100, 0x07060504, 0x0B0A0908, 0x0F0E0D0C,
                                  0x13121110, 0x17161514, 0x1B1A1918, 0x1F1E1D1C};
    const uint32_t *vec[9] = {0, 0, v2, v3, v4, v5, v6, 0, v8};
    for (int bits = 2; bits <= 8; bits++) {
        if (!vec[bits]) continue;
        uint8_t q[32];
        for (int i = 0; i < 32; i++) q[i] = (uint8_t)(i % (1 << bits));
        check_pack(bits, q, vec[bits]);
    }
}

static void test_pack_vectors_nonperiodic(void **state)
{
    (void)state;
    static const uint32_t v3[] = {0x53977053, 0x70539770, 0x97705397};
    static const uint32_t v5[] = {0x4DFC4543, 0x78245BA3, 0x0753617D, 0x4B276CF4, 0xE55C7066};
    static const uint32_t v6[] = {0x9F611283, 0x90BBD2D9, 0xB2579740, 0x8F201EB3, 0x9CAB91D5, 0x71538703};
    const uint32_t *vec[7] = {0, 0, 0, v3, 0, v5, v6};
    for (int bits = 3; bits <= 6; bits++) {
        if (!vec[bits]) continue;
        uint8_t q[32];
        for (int i = 0; i < 32; i++) q[i] = (uint8_t)((7 * i + 3) % (1 << bits));
        check_pack(bits, q, vec[bits]);
    }
}

static void test_quantize_worked_examples(void **state)
{
    (void)state;
    float a[32] = {-2.25f, -2.0f, -1.5f, -1.0f, -0.5f, 0.0f, 0.25f, 1.5f};
    float b[32];
    for (int i = 0; i < 32; i++) b[i] = -a[i] + 0.0f;
    uint32_t w[4];
    float s, bias, out[32];
    ms_affine_quantize_row(a, 32, 4, 32, w, &s, &bias);
    assert_true(s == 0.25f && bias == -2.25f);
    ms_affine_dequantize_row(w, &s, &bias, MS_DT_F32, 32, 4, 32, out);
    for (int i = 0; i < 32; i++) assert_true(out[i] == a[i]);
    ms_affine_quantize_row(b, 32, 4, 32, w, &s, &bias);
    assert_true(s == -0.25f && bias == 2.25f); /* negative scale */
    static const uint32_t expect[] = {0xFA975310, 0x99999999, 0x99999999, 0x99999999};
    assert_memory_equal(w, expect, sizeof expect);
    ms_affine_dequantize_row(w, &s, &bias, MS_DT_F32, 32, 4, 32, out);
    for (int i = 0; i < 32; i++) assert_true(out[i] == b[i]);
    /* 5.4: scale 0.5, bias -4 on the periodic 4-bit row */
    uint8_t q[32];
    for (int i = 0; i < 32; i++) q[i] = (uint8_t)(i % 16);
    ms_pack_bits(q, 32, 4, w);
    s = 0.5f;
    bias = -4.0f;
    ms_affine_dequantize_row(w, &s, &bias, MS_DT_F32, 32, 4, 32, out);
    for (int i = 0; i < 32; i++) assert_true(out[i] == 0.5f * (float)(i % 16) - 4.0f);
}

static void test_quantize_error_bound(void **state)
{
    (void)state;
    /* every bit width and group size: error <= one step |scale| (MLX snaps the scale so
     * the extreme-magnitude end is exact; the other end may clamp by up to one step) */
    srand(7);
    int bitsv[] = {2, 3, 4, 5, 6, 8}, gsv[] = {32, 64, 128};
    for (int bi = 0; bi < 6; bi++)
        for (int gi = 0; gi < 3; gi++) {
            int bits = bitsv[bi], gs = gsv[gi], n = 256;
            float x[256], out[256], sc[8], bs[8];
            uint32_t w[256];
            for (int i = 0; i < n; i++) x[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
            ms_affine_quantize_row(x, n, bits, gs, w, sc, bs);
            ms_affine_dequantize_row(w, sc, bs, MS_DT_F32, n, bits, gs, out);
            for (int i = 0; i < n; i++) assert_true(fabsf(out[i] - x[i]) <= fabsf(sc[i / gs]) * 1.0001f + 1e-6f);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_vectors_periodic),
        cmocka_unit_test(test_pack_vectors_nonperiodic),
        cmocka_unit_test(test_quantize_worked_examples),
        cmocka_unit_test(test_quantize_error_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

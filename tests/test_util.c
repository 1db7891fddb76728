/* test_util.c - size / list / integer parsing and dtype conversions. */
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "ms_test.h"
#include "util.h"

static void test_parse_size(void **state)
{
    (void)state;
    ms_err err = {0};
    uint64_t v;
    assert_int_equal(ms_parse_size("110G", &v, "--ram", &err), 0);
    assert_true(v == 110ull << 30);
    assert_int_equal(ms_parse_size("512MiB", &v, "--ram", &err), 0);
    assert_true(v == 512ull << 20);
    assert_int_equal(ms_parse_size("1.5k", &v, "--ram", &err), 0);
    assert_true(v == 1536);
    assert_int_equal(ms_parse_size("4096", &v, "--ram", &err), 0);
    assert_true(v == 4096);
    const char *bad[] = {"", "G", "-1G", "12X", "1GG", "nan", "1e400"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms_err e = {0};
        assert_true(ms_parse_size(bad[i], &v, "--ram", &e) < 0);
        assert_non_null(strstr(e.msg, "--ram"));
    }
}

static void test_parse_lists(void **state)
{
    (void)state;
    ms_err err = {0};
    long long *ids;
    int n;
    assert_int_equal(ms_parse_int_list("1,2, 30", 0, 100, &ids, &n, "--tokens", &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[2], 30);
    free(ids);
    assert_true(ms_parse_int_list("1,,2", 0, 100, &ids, &n, "--tokens", &err) < 0);
    ms_err_clear(&err);
    assert_true(ms_parse_int_list("1,200", 0, 100, &ids, &n, "--tokens", &err) < 0);
    ms_err_clear(&err);
    assert_true(ms_parse_int_list("1,", 0, 100, &ids, &n, "--tokens", &err) < 0);
    uint64_t *sz;
    ms_err_clear(&err);
    assert_int_equal(ms_parse_size_list("1G,2G", &sz, &n, "--ram", &err), 0);
    assert_int_equal(n, 2);
    assert_true(sz[1] == 2ull << 30);
    free(sz);
}

static void test_dtype_conversions(void **state)
{
    (void)state;
    /* bf16 round trip and round-to-nearest-even */
    assert_true(ms_bf16_to_f32(ms_f32_to_bf16(1.0f)) == 1.0f);
    assert_int_equal(ms_f32_to_bf16(1.00390625f), 0x3f80); /* halfway: round to even (down) */
    assert_int_equal(ms_f32_to_bf16(1.01171875f), 0x3f82); /* halfway: round to even (up) */
    /* f16: every finite half round-trips through f32 exactly */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        float f = ms_f16_to_f32((uint16_t)h);
        assert_int_equal(ms_f32_to_f16(f), h);
    }
    assert_true(ms_f16_to_f32(0x3c00) == 1.0f);
    assert_true(ms_f16_to_f32(0x0001) == 5.9604644775390625e-8f);
    assert_int_equal(ms_f32_to_f16(65520.0f), 0x7c00); /* rounds to inf */
    /* fp8 e4m3: max 448, min subnormal 2^-9 */
    assert_true(ms_fp8_e4m3_to_f32(0x7e) == 448.0f);
    assert_true(ms_fp8_e4m3_to_f32(0x01) == 1.0f / 512.0f);
    assert_true(ms_fp8_e4m3_to_f32(0xb8) == -1.0f);
    ms_dtype t;
    assert_int_equal(ms_dtype_parse("F8_E4M3", &t), 0);
    assert_int_equal(t, MS_DT_F8_E4M3);
    assert_true(ms_dtype_parse("F7", &t) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_lists),
        cmocka_unit_test(test_dtype_conversions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_synth_rng.c - the seeded PRNG of src/base/rng.h: determinism per (seed,
 * stream), independence of streams, unbiased bounded integers, and the moments
 * and bounds of the normal samplers (exact and the two fast approximations). */
#include <math.h>
#include <string.h>

#include "ms_test.h"
#include "rng.h"

static void test_determinism_and_streams(void **state)
{
    (void)state;
    ms_rng a, b, c, d;
    ms_rng_seed(&a, 42, 7);
    ms_rng_seed(&b, 42, 7);
    ms_rng_seed(&c, 42, 8);
    ms_rng_seed(&d, 43, 7);
    int same_c = 0, same_d = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = ms_rng_u64(&a), y = ms_rng_u64(&b);
        assert_true(x == y);
        same_c += x == ms_rng_u64(&c);
        same_d += x == ms_rng_u64(&d);
    }
    assert_int_equal(same_c, 0);
    assert_int_equal(same_d, 0);
    /* seed 0 / stream 0 is a valid, non-degenerate state */
    ms_rng z;
    ms_rng_seed(&z, 0, 0);
    uint64_t orv = 0;
    for (int i = 0; i < 8; i++) orv |= ms_rng_u64(&z);
    assert_true(orv != 0);
    /* stream ids from names */
    assert_true(ms_hash64("model.layers.0.mlp.gate.weight") != ms_hash64("model.layers.1.mlp.gate.weight"));
    assert_true(ms_hash64("abc") == ms_hash64("abc"));
}

static void test_uniform_and_below(void **state)
{
    (void)state;
    ms_rng r;
    ms_rng_seed(&r, 1, 2);
    int hist[10] = {0};
    double s = 0;
    for (int i = 0; i < 100000; i++) {
        double u = ms_rng_uniform(&r);
        float f = ms_rng_uniformf(&r);
        assert_true(u >= 0 && u < 1);
        assert_true(f >= 0 && f < 1);
        s += u;
        uint64_t k = ms_rng_below(&r, 10);
        assert_true(k < 10);
        hist[k]++;
    }
    assert_true(fabs(s / 100000 - 0.5) < 0.01);
    for (int k = 0; k < 10; k++) assert_true(hist[k] > 9500 && hist[k] < 10500);
    for (int i = 0; i < 1000; i++) assert_true(ms_rng_below(&r, 1) == 0);
    uint64_t big = (1ull << 63) + 12345;
    for (int i = 0; i < 1000; i++) assert_true(ms_rng_below(&r, big) < big);
}

static void moments(int which, double *mean, double *var, double *kurt, double *maxabs)
{
    ms_rng r;
    ms_rng_seed(&r, 5, (uint64_t)which);
    const int n = 200000;
    double s = 0, s2 = 0, s4 = 0, mx = 0;
    for (int i = 0; i < n; i += 2) {
        double x[2];
        if (which == 0) {
            x[0] = ms_rng_normal(&r);
            x[1] = ms_rng_normal(&r);
        } else if (which == 1) {
            x[0] = ms_rng_gauss_fast(&r);
            x[1] = ms_rng_gauss_fast(&r);
        } else {
            float z[2];
            ms_rng_gauss_fast2(&r, z);
            x[0] = z[0];
            x[1] = z[1];
        }
        for (int j = 0; j < 2; j++) {
            s += x[j];
            s2 += x[j] * x[j];
            s4 += x[j] * x[j] * x[j] * x[j];
            if (fabs(x[j]) > mx) mx = fabs(x[j]);
        }
    }
    *mean = s / n;
    *var = s2 / n - *mean * *mean;
    *kurt = s4 / n / (*var * *var);
    *maxabs = mx;
}

static void test_normals(void **state)
{
    (void)state;
    double m, v, k, mx;
    moments(0, &m, &v, &k, &mx); /* exact: kurtosis 3 */
    assert_true(fabs(m) < 0.01 && fabs(v - 1) < 0.02 && fabs(k - 3) < 0.1 && mx > 3.5);
    moments(1, &m, &v, &k, &mx); /* Irwin-Hall 4: kurtosis 2.7, bounded by sqrt(12) */
    assert_true(fabs(m) < 0.01 && fabs(v - 1) < 0.02 && fabs(k - 2.7) < 0.1 && mx < 3.47);
    moments(2, &m, &v, &k, &mx);
    assert_true(fabs(m) < 0.01 && fabs(v - 1) < 0.02 && fabs(k - 2.7) < 0.1 && mx < 3.47);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism_and_streams),
        cmocka_unit_test(test_uniform_and_below),
        cmocka_unit_test(test_normals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

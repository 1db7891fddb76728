/* test_act.c - the gated FFN activations (kernels/ops.c ms_act_mul) against
 * their definitions computed here in double: plain SwiGLU, Step's clamp after
 * silu (min(silu(g), L) * clip(u, -L, L)) and DeepSeek-V4's clamp before silu
 * (silu(min(g, L)) * clip(u, -L, L)); a limit <= 0 means no clamp; and
 * ms_ffn_act with each activation equals a hand-built FFN on a small matrix. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "ms_test.h"

static double silu(double x) { return x / (1.0 + exp(-x)); }

static double ref(ms_act_kind k, double L, double g, double u)
{
    if (k == MS_ACT_SWIGLU || L <= 0) return silu(g) * u;
    double uc = fmin(fmax(u, -L), L);
    if (k == MS_ACT_SWIGLU_CLAMP_AFTER) return fmin(silu(g), L) * uc;
    return silu(fmin(g, L)) * uc;
}

static void test_act_mul(void **state)
{
    (void)state;
    enum { N = 64 };
    float g0[N], u[N];
    for (int i = 0; i < N; i++) {
        g0[i] = (float)(-6.0 + 12.0 * i / (N - 1));
        u[i] = (float)(5.0 * sin(0.7 * i));
    }
    const ms_act_kind kinds[3] = {MS_ACT_SWIGLU, MS_ACT_SWIGLU_CLAMP_AFTER, MS_ACT_SWIGLU_CLAMP_BEFORE};
    const float limits[3] = {0.0f, 1.5f, 2.0f};
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < 3; l++) {
            float g[N];
            memcpy(g, g0, sizeof g);
            ms_act a = {kinds[k], limits[l]};
            ms_act_mul(g, u, N, &a);
            int clamped = 0;
            for (int i = 0; i < N; i++) {
                double want = ref(kinds[k], limits[l], g0[i], u[i]);
                if (fabs(g[i] - want) > 1e-5 * fmax(1.0, fabs(want)))
                    fail_msg("kind %d limit %g: a(%g, %g) = %g, want %g", k, limits[l], g0[i], u[i], g[i], want);
                clamped += fabs(want - silu(g0[i]) * u[i]) > 1e-3;
            }
            /* the cases must exercise the clamps (else this test could not tell them apart) */
            if (k && limits[l] > 0) assert_true(clamped > 4);
            if (!k || limits[l] <= 0) assert_int_equal(clamped, 0);
        }
    /* NULL act = plain SwiGLU, bit for bit */
    float a[N], b[N];
    memcpy(a, g0, sizeof a);
    memcpy(b, g0, sizeof b);
    ms_act_mul(a, u, N, NULL);
    ms_silu_mul(b, u, N);
    assert_memory_equal(a, b, sizeof a);
}

static void test_ffn_act(void **state)
{
    (void)state;
    enum { D = 8, I = 16, T = 3 };
    float wg[I * D], wu[I * D], wd[D * I], x[T * D];
    for (int i = 0; i < I * D; i++) {
        wg[i] = (float)sin(0.37 * i);
        wu[i] = (float)cos(0.21 * i);
        wd[i] = (float)sin(0.11 * i + 1);
    }
    for (int i = 0; i < T * D; i++) x[i] = (float)(2 * cos(0.5 * i));
    ms_mat G = {.type = MS_WT_F32, .rows = I, .cols = D, .w = wg};
    ms_mat U = {.type = MS_WT_F32, .rows = I, .cols = D, .w = wu};
    ms_mat Dn = {.type = MS_WT_F32, .rows = D, .cols = I, .w = wd};
    ms_compute c = {ms_kern_select(true), NULL};
    float scr[2 * T * I + 64], y[T * D];
    for (int k = 0; k < 3; k++)
        for (int n = 1; n <= T; n += T - 1) { /* the one-token path and the matmul path */
            ms_act a = {(ms_act_kind)k, 1.0f};
            ms_ffn_act(&c, &G, &U, &Dn, x, n, y, scr, &a, false);
            for (int t = 0; t < n; t++)
                for (int o = 0; o < D; o++) {
                    double acc = 0;
                    for (int j = 0; j < I; j++) {
                        double g = 0, u = 0;
                        for (int i = 0; i < D; i++) {
                            g += (double)wg[j * D + i] * x[t * D + i];
                            u += (double)wu[j * D + i] * x[t * D + i];
                        }
                        acc += (double)wd[o * I + j] * ref((ms_act_kind)k, 1.0, g, u);
                    }
                    if (fabs(y[t * D + o] - acc) > 1e-4 * fmax(1, fabs(acc)))
                        fail_msg("kind %d n %d: y[%d][%d] = %g, want %g", k, n, t, o, y[t * D + o], acc);
                }
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_act_mul), cmocka_unit_test(test_ffn_act)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

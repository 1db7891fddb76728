/* test_kernels.c - the compute kernels against their references.
 *
 * Layers of checking:
 *   1. `_ref` row dot products against a naive dequantize-then-dot in double
 *      precision (dequantization by quant.c, independent of the kernels);
 *   2. the selected kernel table (AVX2 on this machine) against `_ref`, for
 *      every weight type, bit width, group size and scale dtype, odd shapes;
 *   3. ms_matvec / ms_matmul / ms_ffn drivers: agreement between paths, and
 *      bit-identical results for 1..4 threads and arbitrary row splits;
 *   4. the small ops (rmsnorm, softmax, silu*mul, RoPE, top-k, dot).
 *
 * Error measure for a dot product y = sum_j w_j x_j: |y - y_ref| / sum_j |w_j x_j|
 * (relative to the magnitude of the terms; a plain relative error is
 * meaningless when the terms cancel). Tolerance 1e-5 for all f32-accumulation
 * paths (float32 rounding over <= 4096 terms is ~sqrt(n)*6e-8 ~ 4e-6 at worst
 * in practice). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_impl.h"
#include "ms_test.h"
#include "quant.h"
#include "util.h"

#define DOT_TOL 1e-5

/* ---- fixtures ------------------------------------------------------------ */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_u64(rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [-1, 1). */
static float rng_f(rng *r)
{
    return (float)((double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

/* An owned matrix: descriptor + buffers. */
typedef struct tmat {
    ms_mat m;
    void *w, *s, *b;
} tmat;

static void tmat_free(tmat *t)
{
    free(t->w);
    free(t->s);
    free(t->b);
}

/* Random weights (with a few outliers per row so groups differ in range). */
static void fill_row(rng *r, float *row, int64_t cols)
{
    for (int64_t j = 0; j < cols; j++) row[j] = rng_f(r) * 0.1f;
    row[rng_u64(r) % cols] = 0.9f;
    row[rng_u64(r) % cols] = -0.7f;
}

static tmat make_affine(rng *r, int64_t rows, int64_t cols, int bits, int gs, ms_dtype sbdt)
{
    tmat t = {0};
    size_t sbsz = ms_dtype_size(sbdt);
    int64_t ng = cols / gs;
    /* +64 bytes of slack is NOT added: kernels must never read past the rows. */
    t.w = malloc((size_t)rows * (size_t)cols * bits / 8);
    t.s = malloc((size_t)(rows * ng) * sbsz);
    t.b = malloc((size_t)(rows * ng) * sbsz);
    float *row = malloc((size_t)cols * sizeof(float));
    assert_non_null(t.w);
    assert_non_null(row);
    for (int64_t i = 0; i < rows; i++) {
        fill_row(r, row, cols);
        ms_affine_quantize_row_dt(row, cols, bits, gs, sbdt, (uint32_t *)t.w + i * (cols * bits / 32),
                                  (char *)t.s + (size_t)(i * ng) * sbsz, (char *)t.b + (size_t)(i * ng) * sbsz);
    }
    free(row);
    t.m = (ms_mat){.type = MS_WT_AFFINE,
                   .bits = bits,
                   .group_size = gs,
                   .sb_dtype = sbdt,
                   .rows = rows,
                   .cols = cols,
                   .w = t.w,
                   .scales = t.s,
                   .biases = t.b};
    return t;
}

static tmat make_dense(rng *r, int64_t rows, int64_t cols, ms_wtype type)
{
    tmat t = {0};
    size_t es = type == MS_WT_F32 ? 4 : 2;
    t.w = malloc((size_t)(rows * cols) * es);
    assert_non_null(t.w);
    for (int64_t i = 0; i < rows * cols; i++) {
        float v = rng_f(r) * 0.5f;
        if (type == MS_WT_F32)
            ((float *)t.w)[i] = v;
        else if (type == MS_WT_F16)
            ((uint16_t *)t.w)[i] = ms_f32_to_f16(v);
        else
            ((uint16_t *)t.w)[i] = ms_f32_to_bf16(v);
    }
    t.m = (ms_mat){.type = type, .rows = rows, .cols = cols, .w = t.w};
    return t;
}

/* Independent dequantization of row r (quant.c / dtype.h only). */
static void naive_row(const ms_mat *m, int64_t r, float *out)
{
    if (m->type == MS_WT_AFFINE) {
        int64_t ng = m->cols / m->group_size;
        size_t sbsz = ms_dtype_size(m->sb_dtype);
        ms_affine_dequantize_row(
            (const uint32_t *)m->w + r * (m->cols * m->bits / 32), (const char *)m->scales + (size_t)(r * ng) * sbsz,
            (const char *)m->biases + (size_t)(r * ng) * sbsz, m->sb_dtype, m->cols, m->bits, m->group_size, out);
        return;
    }
    for (int64_t j = 0; j < m->cols; j++) {
        size_t i = (size_t)(r * m->cols + j);
        if (m->type == MS_WT_F32)
            out[j] = ((const float *)m->w)[i];
        else if (m->type == MS_WT_F16)
            out[j] = ms_f16_to_f32(((const uint16_t *)m->w)[i]);
        else
            out[j] = ms_bf16_to_f32(((const uint16_t *)m->w)[i]);
    }
}

/* y_d[r] = dot in double, mag[r] = sum |w x| (double). */
static void naive_matvec(const ms_mat *m, const float *x, double *yd, double *mag)
{
    float *row = malloc((size_t)m->cols * sizeof(float));
    for (int64_t r = 0; r < m->rows; r++) {
        naive_row(m, r, row);
        double s = 0, a = 0;
        for (int64_t j = 0; j < m->cols; j++) {
            s += (double)row[j] * (double)x[j];
            a += fabs((double)row[j] * (double)x[j]);
        }
        yd[r] = s;
        mag[r] = a;
    }
    free(row);
}

static float *rand_vec(rng *r, int64_t n)
{
    float *v = malloc((size_t)n * sizeof(float));
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++) v[i] = rng_f(r);
    return v;
}

static const int kBits[] = {2, 3, 4, 5, 6, 8};
static const int kGroups[] = {32, 64, 128};
static const ms_dtype kSb[] = {MS_DT_BF16, MS_DT_F16, MS_DT_F32};

/* Max over rows of |y - yref| / mag. */
static double max_err_vs(const float *y, const double *yref, const double *mag, int64_t n)
{
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)y[i] - yref[i]) / (mag[i] > 1e-30 ? mag[i] : 1e-30);
        if (d > e || isnan(d)) e = isnan(d) ? INFINITY : d;
    }
    return e;
}

/* Run kernel table k's row kernel for all rows of m. */
static void rows_all(const ms_kern *k, const ms_mat *m, const float *x, float *y)
{
    float *xs = malloc((size_t)(m->cols / 32 + 1) * sizeof(float)), *xp = malloc((size_t)m->cols * sizeof(float));
    const float *px = ms_kern_prep(k, m, x, xp, xs);
    ms_kern_for(k, m)->rows(m, 0, m->rows, px, m->type == MS_WT_AFFINE ? xs : NULL, y);
    free(xs);
    free(xp);
}

/* The kernel tables this CPU supports: all = with the reference first. */
static int tables(const ms_kern **out, bool with_ref)
{
    static const char *const names[] = {"ref", "avx2", "avx512", "neon"};
    int n = 0;
    for (size_t i = with_ref ? 0 : 1; i < MS_ARRAY_LEN(names); i++)
        if (ms_kern_by_name(names[i])) out[n++] = ms_kern_by_name(names[i]);
    return n;
}

/* A thread pool of n threads (the test fails if it cannot be made). */
static ms_pool *new_pool(int n)
{
    ms_err err = {0};
    ms_pool *p = ms_pool_create(n, &err);
    if (!p) fail_msg("cannot create a %d-thread pool: %s", n, err.msg);
    return p;
}

/* ---- 1. ref vs double ---------------------------------------------------- */

static void check_ref_vs_double(const ms_mat *m, rng *r)
{
    float *x = rand_vec(r, m->cols), *y = malloc((size_t)m->rows * 4), *y2 = malloc((size_t)m->rows * 4);
    double *yd = malloc((size_t)m->rows * 8), *mag = malloc((size_t)m->rows * 8);
    naive_matvec(m, x, yd, mag);
    rows_all(&ms_kern_ref, m, x, y);
    double e = max_err_vs(y, yd, mag, m->rows);
    if (e > DOT_TOL)
        fail_msg("ref vs double: type %d bits %d gs %d sb %d [%lld x %lld]: err %.3g", m->type, m->bits, m->group_size,
                 m->sb_dtype, (long long)m->rows, (long long)m->cols, e);
    /* NULL xsum (kernel computes the group sums itself) gives the same bits. */
    ms_kern_for(&ms_kern_ref, m)->rows(m, 0, m->rows, x, NULL, y2);
    assert_memory_equal(y, y2, (size_t)m->rows * 4);
    free(x);
    free(y);
    free(y2);
    free(yd);
    free(mag);
}

static void test_ref_vs_double(void **state)
{
    (void)state;
    rng r = {0x1234567};
    for (size_t b = 0; b < MS_ARRAY_LEN(kBits); b++)
        for (size_t g = 0; g < MS_ARRAY_LEN(kGroups); g++)
            for (size_t s = 0; s < MS_ARRAY_LEN(kSb); s++) {
                int64_t rows = 3 + (int64_t)(rng_u64(&r) % 17), cols = kGroups[g] * (1 + (int64_t)(rng_u64(&r) % 9));
                tmat t = make_affine(&r, rows, cols, kBits[b], kGroups[g], kSb[s]);
                check_ref_vs_double(&t.m, &r);
                tmat_free(&t);
            }
    for (int type = MS_WT_F32; type <= MS_WT_BF16; type++) {
        int64_t shapes[][2] = {{1, 1}, {5, 7}, {13, 77}, {9, 1031}, {3, 4096}};
        for (size_t i = 0; i < MS_ARRAY_LEN(shapes); i++) {
            tmat t = make_dense(&r, shapes[i][0], shapes[i][1], (ms_wtype)type);
            check_ref_vs_double(&t.m, &r);
            tmat_free(&t);
        }
    }
}

/* Spec test vector (mlx-quant.md 5.3 group B): negative scale, bias 2.25. */
static void test_spec_vector(void **state)
{
    (void)state;
    uint32_t w[4] = {0xFA975310u, 0x99999999u, 0x99999999u, 0x99999999u};
    uint16_t s = ms_f32_to_bf16(-0.25f), b = ms_f32_to_bf16(2.25f);
    ms_mat m = {.type = MS_WT_AFFINE,
                .bits = 4,
                .group_size = 32,
                .sb_dtype = MS_DT_BF16,
                .rows = 1,
                .cols = 32,
                .w = w,
                .scales = &s,
                .biases = &b};
    const float want[8] = {2.25f, 2.0f, 1.5f, 1.0f, 0.5f, 0.0f, -0.25f, -1.5f};
    const ms_kern *ks[5];
    int nk = tables(ks, true);
    for (int k = 0; k < nk; k++) {
        float out[32], x[32], y;
        ms_mat_get_row(ks[k], &m, 0, out);
        for (int j = 0; j < 32; j++) assert_true(out[j] == (j < 8 ? want[j] : 0.0f));
        for (int j = 0; j < 32; j++) x[j] = (float)(j + 1);
        ms_compute c = {ks[k], NULL};
        ms_matvec(&c, &m, x, &y);
        double e = 0;
        for (int j = 0; j < 8; j++) e += want[j] * (j + 1);
        assert_true(fabs(y - e) < 1e-5);
    }
}

/* ---- 2. selected kernels vs ref ---------------------------------------- */

static void check_opt_vs_ref(const ms_kern *k, const ms_mat *m, rng *r)
{
    float *x = rand_vec(r, m->cols), *y = malloc((size_t)m->rows * 4), *yr = malloc((size_t)m->rows * 4);
    double *yd = malloc((size_t)m->rows * 8), *mag = malloc((size_t)m->rows * 8);
    float *row = malloc((size_t)m->cols * 4), *rowr = malloc((size_t)m->cols * 4);
    naive_matvec(m, x, yd, mag);
    rows_all(&ms_kern_ref, m, x, yr);
    rows_all(k, m, x, y);
    for (int64_t i = 0; i < m->rows; i++) yd[i] = yr[i]; /* compare against _ref */
    double e = max_err_vs(y, yd, mag, m->rows);
    if (e > DOT_TOL)
        fail_msg("%s vs ref: type %d bits %d gs %d sb %d [%lld x %lld]: err %.3g", k->name, m->type, m->bits,
                 m->group_size, m->sb_dtype, (long long)m->rows, (long long)m->cols, e);
    /* Dequantization is exact: bit-identical to the reference. */
    for (int64_t i = 0; i < m->rows; i++) {
        ms_kern_for(k, m)->dequant(m, i, 0, m->cols, row);
        ms_kern_for(&ms_kern_ref, m)->dequant(m, i, 0, m->cols, rowr);
        if (memcmp(row, rowr, (size_t)m->cols * 4) != 0) {
            int64_t j = 0;
            while (row[j] == rowr[j] || (isnan(row[j]) && isnan(rowr[j]))) j++;
            fail_msg("%s dequant: type %d bits %d gs %d sb %d [%lld x %lld]: row %lld col %lld: %g != %g", k->name,
                     m->type, m->bits, m->group_size, m->sb_dtype, (long long)m->rows, (long long)m->cols, (long long)i,
                     (long long)j, row[j], rowr[j]);
        }
    }
    free(x);
    free(y);
    free(yr);
    free(yd);
    free(mag);
    free(row);
    free(rowr);
}

static void test_opt_vs_ref(void **state)
{
    (void)state;
    const ms_kern *ks[5];
    int nk = tables(ks, false);
    if (nk == 0) MST_SKIP("no SIMD kernel table on this CPU (AVX2, AVX-512 or NEON)");
    for (int ki = 0; ki < nk; ki++) {
        const ms_kern *k = ks[ki];
        rng r = {0xabcdef};
        for (size_t b = 0; b < MS_ARRAY_LEN(kBits); b++)
            for (size_t g = 0; g < MS_ARRAY_LEN(kGroups); g++)
                for (size_t s = 0; s < MS_ARRAY_LEN(kSb); s++)
                    for (int rep = 0; rep < 2; rep++) {
                        int64_t rows = 1 + (int64_t)(rng_u64(&r) % 19);
                        int64_t cols = kGroups[g] * (1 + (int64_t)(rng_u64(&r) % (rep ? 40 : 5)));
                        tmat t = make_affine(&r, rows, cols, kBits[b], kGroups[g], kSb[s]);
                        check_opt_vs_ref(k, &t.m, &r);
                        tmat_free(&t);
                    }
        for (int type = MS_WT_F32; type <= MS_WT_BF16; type++)
            for (int rep = 0; rep < 12; rep++) {
                int64_t rows = 1 + (int64_t)(rng_u64(&r) % 23),
                        cols = 1 + (int64_t)(rng_u64(&r) % (rep < 6 ? 70 : 3000));
                tmat t = make_dense(&r, rows, cols, (ms_wtype)type);
                check_opt_vs_ref(k, &t.m, &r);
                tmat_free(&t);
            }
    }
}

/* ---- 3. drivers ---------------------------------------------------------- */

/* All weight configurations exercised by the driver tests. */
static int n_configs(void)
{
    return (int)(MS_ARRAY_LEN(kBits) * MS_ARRAY_LEN(kGroups)) + 3;
}

static tmat make_config(rng *r, int i, int64_t rows, int64_t cols_mult)
{
    int na = (int)(MS_ARRAY_LEN(kBits) * MS_ARRAY_LEN(kGroups));
    if (i < na) {
        int bits = kBits[i / MS_ARRAY_LEN(kGroups)], gs = kGroups[i % MS_ARRAY_LEN(kGroups)];
        return make_affine(r, rows, gs * cols_mult, bits, gs, kSb[i % 3]);
    }
    return make_dense(r, rows, 32 * cols_mult + 3, (ms_wtype)(i - na));
}

/* ms_matvec / ms_matmul for 1..4 threads: bit-identical; matmul rows agree with
 * per-token matvec within DOT_TOL (the sgemm path), bit-identically below the
 * sgemm threshold (multi-token row kernels). */
static void test_threads_bit_identical(void **state)
{
    (void)state;
    const ms_kern *ks[5];
    int nk = tables(ks, true);
    ms_pool *pools[4];
    for (int i = 0; i < 4; i++) pools[i] = new_pool(i + 1);
    rng r = {99};
    const int ns[] = {1, 3, 8, 33};
    for (int ki = 0; ki < nk; ki++)
        for (int ci = 0; ci < n_configs(); ci++) {
            const ms_kern *k = ks[ki];
            tmat t = make_config(&r, ci, 300 + ci, 3);
            const ms_mat *m = &t.m;
            for (size_t ni = 0; ni < MS_ARRAY_LEN(ns); ni++) {
                int n = ns[ni];
                float *X = rand_vec(&r, (int64_t)n * m->cols);
                float *Y0 = malloc((size_t)n * m->rows * 4), *Y = malloc((size_t)n * m->rows * 4);
                for (int p = 0; p < 4; p++) {
                    ms_compute c = {k, pools[p]};
                    float *dst = p == 0 ? Y0 : Y;
                    memset(dst, 0xff, (size_t)n * m->rows * 4);
                    ms_matmul(&c, m, X, n, dst);
                    if (p > 0 && memcmp(Y0, Y, (size_t)n * m->rows * 4) != 0)
                        fail_msg("%s config %d n %d: %d threads differ from 1 thread", k->name, ci, n, p + 1);
                }
                /* Each token agrees with ms_matvec. */
                ms_compute c1 = {k, pools[1]};
                float *y = malloc((size_t)m->rows * 4);
                double *yd = malloc((size_t)m->rows * 8), *mag = malloc((size_t)m->rows * 8);
                /* Below the sgemm threshold every token is bit-identical to its matvec. */
                int gmin = ms_kern_for(k, m)->gemm_min_n;
                bool exact = gmin == 0 || n < gmin;
                for (int tok = 0; tok < n; tok++) {
                    ms_matvec(&c1, m, X + (size_t)tok * m->cols, y);
                    if (exact && memcmp(y, Y0 + (size_t)tok * m->rows, (size_t)m->rows * 4) != 0)
                        fail_msg("%s config %d n %d token %d: matmul not bit-identical to matvec", k->name, ci, n, tok);
                    naive_matvec(m, X + (size_t)tok * m->cols, yd, mag);
                    for (int64_t i = 0; i < m->rows; i++) yd[i] = y[i];
                    double e = max_err_vs(Y0 + (size_t)tok * m->rows, yd, mag, m->rows);
                    if (e > DOT_TOL)
                        fail_msg("%s config %d n %d token %d: matmul vs matvec err %.3g", k->name, ci, n, tok, e);
                }
                free(y);
                free(yd);
                free(mag);
                free(X);
                free(Y0);
                free(Y);
            }
            tmat_free(&t);
        }
    for (int i = 0; i < 4; i++) ms_pool_destroy(pools[i]);
}

/* Any split of the rows into ranges gives the same bits (what makes the
 * dynamic schedule deterministic). */
static void test_row_split_invariance(void **state)
{
    (void)state;
    const ms_kern *ks[5];
    int nk = tables(ks, true);
    rng r = {7};
    for (int ki = 0; ki < nk; ki++)
        for (int ci = 0; ci < n_configs(); ci++) {
            const ms_kern *k = ks[ki];
            tmat t = make_config(&r, ci, 37, 2);
            const ms_mat *m = &t.m;
            float *x = rand_vec(&r, m->cols), *y0 = malloc((size_t)m->rows * 4), *y = malloc((size_t)m->rows * 4);
            rows_all(k, m, x, y0);
            float *xs = malloc((size_t)(m->cols / 32 + 1) * 4), *xp = malloc((size_t)m->cols * 4);
            const float *px = ms_kern_prep(k, m, x, xp, xs);
            for (int rep = 0; rep < 5; rep++) {
                memset(y, 0, (size_t)m->rows * 4);
                for (int64_t r0 = 0; r0 < m->rows;) {
                    int64_t len = 1 + (int64_t)(rng_u64(&r) % 9), r1 = MS_MIN(m->rows, r0 + len);
                    ms_kern_for(k, m)->rows(m, r0, r1, px, m->type == MS_WT_AFFINE ? xs : NULL, y + r0);
                    r0 = r1;
                }
                assert_memory_equal(y0, y, (size_t)m->rows * 4);
            }
            free(xs);
            free(xp);
            free(x);
            free(y0);
            free(y);
            tmat_free(&t);
        }
}

/* ms_ffn equals its composition; 1 vs 3 threads bit-identical. */
static void test_ffn(void **state)
{
    (void)state;
    const ms_kern *ks[5];
    int nk = tables(ks, true);
    ms_pool *p1 = new_pool(1), *p3 = new_pool(3);
    rng r = {2024};
    const int D = 256, I = 192;
    for (int ki = 0; ki < nk; ki++)
        for (int ci = 0; ci < 4; ci++) {
            const ms_kern *k = ks[ki];
            tmat g = ci < 3 ? make_affine(&r, I, D, kBits[ci * 2], 64, MS_DT_BF16) : make_dense(&r, I, D, MS_WT_BF16);
            tmat u = make_affine(&r, I, D, 4, 32, MS_DT_F16);
            tmat d = make_affine(&r, D, I, 8, 64, MS_DT_BF16);
            for (int n = 1; n <= 40; n += 13) {
                float *X = rand_vec(&r, (int64_t)n * D);
                size_t sf = ms_ffn_scratch_floats(&g.m, n);
                assert_true(sf >= (size_t)(2 * n * I));
                float *scr = malloc(sf * 4), *Y1 = malloc((size_t)n * D * 4), *Y3 = malloc((size_t)n * D * 4);
                float *G = malloc((size_t)n * I * 4), *U = malloc((size_t)n * I * 4), *Ym = malloc((size_t)n * D * 4);
                ms_compute c1 = {k, p1}, c3 = {k, p3};
                ms_ffn(&c1, &g.m, &u.m, &d.m, X, n, Y1, scr);
                ms_ffn(&c3, &g.m, &u.m, &d.m, X, n, Y3, scr);
                assert_memory_equal(Y1, Y3, (size_t)n * D * 4);
                ms_matmul(&c1, &g.m, X, n, G);
                ms_matmul(&c1, &u.m, X, n, U);
                ms_silu_mul(G, U, n * I);
                ms_matmul(&c1, &d.m, G, n, Ym);
                assert_memory_equal(Y1, Ym, (size_t)n * D * 4);
                free(X);
                free(scr);
                free(Y1);
                free(Y3);
                free(G);
                free(U);
                free(Ym);
            }
            tmat_free(&g);
            tmat_free(&u);
            tmat_free(&d);
        }
    ms_pool_destroy(p1);
    ms_pool_destroy(p3);
}

/* ms_matvec_multi: every output vector bit-identical to ms_matvec on that vector
 * alone, for every table, weight type and B, on 1 and 3 threads (the serve /
 * MTP batch-invariance contract). */
static void test_matvec_multi(void **state)
{
    (void)state;
    const ms_kern *ks[5];
    int nk = tables(ks, true);
    ms_pool *pools[2] = {new_pool(1), new_pool(3)};
    rng r = {777};
    const int Bs[] = {1, 2, 3, 4, 5, 7, 8, 16, 17};
    for (int ki = 0; ki < nk; ki++)
        for (int ci = 0; ci < n_configs(); ci++) {
            const ms_kern *k = ks[ki];
            /* 300 rows x 8 or 9 groups: above the parallel threshold for most types;
             * 9 groups of 32 or 64 end 4-bit rows in a partial 128-code block */
            tmat t = make_config(&r, ci, ci & 1 ? 300 : 37, ci & 2 ? 9 : 8);
            const ms_mat *m = &t.m;
            const int Bmax = 17;
            float *X = rand_vec(&r, (int64_t)Bmax * m->cols), *Y = malloc((size_t)Bmax * m->rows * 4);
            float *y = malloc((size_t)m->rows * 4);
            for (size_t bi = 0; bi < MS_ARRAY_LEN(Bs); bi++)
                for (int p = 0; p < 2; p++) {
                    const int B = Bs[bi];
                    ms_compute c = {k, pools[p]};
                    /* a window of X shifted by B: every vector sits in batches with other companions */
                    const float *Xb = X + (size_t)(Bmax - B) * m->cols;
                    memset(Y, 0xff, (size_t)B * m->rows * 4);
                    ms_matvec_multi(&c, m, Xb, B, Y);
                    for (int b = 0; b < B; b++) {
                        ms_compute c1 = {k, pools[(p + b) & 1]};
                        ms_matvec(&c1, m, Xb + (size_t)b * m->cols, y);
                        if (memcmp(y, Y + (size_t)b * m->rows, (size_t)m->rows * 4) != 0)
                            fail_msg("%s config %d B %d vector %d (%d threads): not bit-identical to ms_matvec", k->name,
                                     ci, B, b, p ? 3 : 1);
                    }
                }
            free(X);
            free(Y);
            free(y);
            tmat_free(&t);
        }
    ms_pool_destroy(pools[0]);
    ms_pool_destroy(pools[1]);
}

/* ms_ffn_multi: every output bit-identical to the single-token ms_ffn. */
static void test_ffn_multi(void **state)
{
    (void)state;
    const ms_kern *ks[5];
    int nk = tables(ks, true);
    ms_pool *pool = new_pool(2);
    rng r = {4711};
    const int D = 512, I = 320;
    for (int ki = 0; ki < nk; ki++)
        for (int ci = 0; ci < 4; ci++) {
            const ms_kern *k = ks[ki];
            tmat g = ci < 3 ? make_affine(&r, I, D, kBits[ci * 2 + 1], 64, MS_DT_BF16) : make_dense(&r, I, D, MS_WT_F16);
            tmat u = ci < 3 ? make_affine(&r, I, D, kBits[ci * 2 + 1], 64, MS_DT_BF16) : make_dense(&r, I, D, MS_WT_F16);
            tmat d = make_affine(&r, D, I, ci == 3 ? 6 : 4, 32, MS_DT_F16);
            for (int B = 1; B <= 9; B += 2) {
                float *X = rand_vec(&r, (int64_t)B * D), *Y = malloc((size_t)B * D * 4), *y = malloc((size_t)D * 4);
                float *scr = malloc(ms_ffn_scratch_floats(&g.m, B) * 4);
                ms_compute c = {k, pool};
                ms_ffn_multi(&c, &g.m, &u.m, &d.m, X, B, Y, scr);
                for (int b = 0; b < B; b++) {
                    ms_ffn(&c, &g.m, &u.m, &d.m, X + (size_t)b * D, 1, y, scr);
                    if (memcmp(y, Y + (size_t)b * D, (size_t)D * 4) != 0)
                        fail_msg("%s ffn config %d B %d vector %d: not bit-identical to ms_ffn", k->name, ci, B, b);
                }
                free(X);
                free(Y);
                free(y);
                free(scr);
            }
            tmat_free(&g);
            tmat_free(&u);
            tmat_free(&d);
        }
    ms_pool_destroy(pool);
}

/* Prefill chunks (ms_matmul, the GEMM from gemm_min_n on, the row kernels on
 * the reference table): every token within DOT_TOL of a double-precision
 * reference, and a token's output does not depend on n or on the other tokens
 * (shapes with partial row panels and partial column blocks). */
static void test_matmul_many_tokens(void **state)
{
    (void)state;
    const ms_kern *ks[5];
    int nk = tables(ks, true);
    ms_pool *pool = new_pool(2);
    rng r = {90210};
    for (int ki = 0; ki < nk; ki++) {
        const ms_kern *k = ks[ki];
        /* 4-bit widths that end in a partial 128-code block: 17 x 64, 33 x 32 */
        tmat ts[6] = {make_affine(&r, 77, 1152, 4, 64, MS_DT_BF16), make_affine(&r, 130, 384, 3, 128, MS_DT_F16),
                      make_affine(&r, 19, 640, 8, 32, MS_DT_F32),   make_dense(&r, 61, 1003, MS_WT_BF16),
                      make_affine(&r, 70, 1088, 4, 64, MS_DT_F16),  make_affine(&r, 45, 1056, 4, 32, MS_DT_BF16)};
        for (int i = 0; i < 6; i++) {
            const ms_mat *m = &ts[i].m;
            const int n1 = 70, n2 = 41; /* both above every gemm_min_n */
            assert_true(n2 >= ms_kern_for(k, m)->gemm_min_n);
            float *X = rand_vec(&r, (int64_t)n1 * m->cols), *Y1 = malloc((size_t)n1 * m->rows * 4);
            float *Y2 = malloc((size_t)n2 * m->rows * 4);
            double *yd = malloc((size_t)m->rows * 8), *mag = malloc((size_t)m->rows * 8);
            ms_compute c = {k, pool};
            ms_matmul(&c, m, X, n1, Y1);
            ms_matmul(&c, m, X + (size_t)(n1 - n2) * m->cols, n2, Y2); /* the last n2 tokens, other positions */
            assert_memory_equal(Y1 + (size_t)(n1 - n2) * m->rows, Y2, (size_t)n2 * m->rows * 4);
            for (int tok = 0; tok < n1; tok += 3) {
                naive_matvec(m, X + (size_t)tok * m->cols, yd, mag);
                double e = max_err_vs(Y1 + (size_t)tok * m->rows, yd, mag, m->rows);
                if (e > DOT_TOL) fail_msg("%s matrix %d token %d: err %.3g vs double", k->name, i, tok, e);
            }
            free(X);
            free(Y1);
            free(Y2);
            free(yd);
            free(mag);
        }
        for (int i = 0; i < 6; i++) tmat_free(&ts[i]);
    }
    ms_pool_destroy(pool);
}

/* The scratch bound: prepared inputs only below every GEMM threshold, plus a
 * tile per thread from the lowest threshold on; grows with threads and width. */
static void test_scratch_bytes(void **state)
{
    (void)state;
    const ms_kern *ks[5];
    int nk = tables(ks, true);
    for (int ki = 0; ki < nk; ki++) {
        const ms_kern *k = ks[ki];
        int gmin = 1 << 30;
        for (int b = 2; b <= 8; b++)
            if (k->affine[b].gemm_min_n > 0) gmin = MS_MIN(gmin, k->affine[b].gemm_min_n);
        for (int t = 0; t < 3; t++)
            if (k->dense[t].gemm_min_n > 0) gmin = MS_MIN(gmin, k->dense[t].gemm_min_n);
        size_t small = ms_compute_scratch_bytes(k, 2, 7168, 1);
        assert_true(small >= 2 * (7168 + 7168 / 32) * sizeof(float)); /* gate and up inputs of one token */
        assert_true(ms_compute_scratch_bytes(k, 8, 7168, 1) == small);  /* no tiles below the thresholds */
        if (gmin == 1 << 30) continue;                                  /* ref: never a GEMM */
        size_t big2 = ms_compute_scratch_bytes(k, 2, 7168, 512), big4 = ms_compute_scratch_bytes(k, 4, 7168, 512);
        size_t tile = k->gemm ? k->gemm_buf_floats * sizeof(float) : 0;
        assert_true(big2 > ms_compute_scratch_bytes(k, 2, 7168, 1));
        assert_true(big4 - big2 >= 2 * tile && big4 > big2);
        assert_true(ms_compute_scratch_bytes(k, 2, 7168, gmin) > ms_compute_scratch_bytes(k, 2, 7168, gmin - 1) ||
                    gmin == 1);
        assert_true(ms_compute_scratch_bytes(k, 2, 16384, 512) > big2);
    }
    /* What the pool really holds after the widest calls stays within the bound. */
    rng r = {31};
    for (int ki = 0; ki < nk; ki++) {
        ms_pool *pool = new_pool(3);
        const int64_t cols = 2304;
        const int max_n = 40;
        tmat ts[3] = {make_affine(&r, 96, cols, 4, 64, MS_DT_BF16), make_affine(&r, 96, cols, 3, 32, MS_DT_F16),
                      make_dense(&r, 96, cols, MS_WT_F32)};
        float *X = rand_vec(&r, (int64_t)max_n * cols), *Y = malloc((size_t)max_n * cols * 4);
        float *scr = malloc(ms_ffn_scratch_floats(&ts[0].m, max_n) * 4);
        ms_compute c = {ks[ki], pool};
        for (int i = 0; i < 3; i++)
            for (int n = 1; n <= max_n; n += 13) {
                ms_matmul(&c, &ts[i].m, X, n, Y);
                ms_matvec_multi(&c, &ts[i].m, X, n, Y);
            }
        tmat d = make_affine(&r, cols, 96, 4, 32, MS_DT_BF16);
        ms_ffn_multi(&c, &ts[0].m, &ts[1].m, &d.m, X, max_n, Y, scr);
        size_t held = ms_pool_scratch_bytes(pool), bound = ms_compute_scratch_bytes(ks[ki], 3, cols, max_n);
        if (held > bound) fail_msg("%s: pool holds %zu bytes, bound %zu", ks[ki]->name, held, bound);
        if (ks[ki]->gemm) assert_true(held > 0); /* tiles were reserved */
        for (int i = 0; i < 3; i++) tmat_free(&ts[i]);
        tmat_free(&d);
        free(X);
        free(Y);
        free(scr);
        ms_pool_destroy(pool);
    }
}

/* Selection: best table by default, MOESTREAM_FORCE_REF wins, MOESTREAM_KERNELS
 * picks a supported table by name and is ignored otherwise. */
static void test_select(void **state)
{
    (void)state;
    unsetenv("MOESTREAM_KERNELS");
    const ms_kern *best = ms_kern_select(false);
    setenv("MOESTREAM_FORCE_REF", "1", 1);
    assert_string_equal(ms_kern_name(ms_kern_select(false)), "ref");
    setenv("MOESTREAM_FORCE_REF", "0", 1);
    assert_ptr_equal(ms_kern_select(false), best);
    unsetenv("MOESTREAM_FORCE_REF");
    assert_string_equal(ms_kern_name(ms_kern_select(true)), "ref");
    assert_null(ms_kern_by_name("sse9"));
    assert_null(ms_kern_by_name(NULL));
    setenv("MOESTREAM_KERNELS", "ref", 1);
    assert_string_equal(ms_kern_name(ms_kern_select(false)), "ref");
    setenv("MOESTREAM_KERNELS", "bogus", 1);
    assert_ptr_equal(ms_kern_select(false), best);
    unsetenv("MOESTREAM_KERNELS");
#if defined(__x86_64__)
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    assert_string_equal(ms_kern_name(best), avx512 ? "avx512" : avx2 ? "avx2" : "ref");
    if (avx2) {
        setenv("MOESTREAM_KERNELS", "avx2", 1);
        assert_string_equal(ms_kern_name(ms_kern_select(false)), "avx2");
        unsetenv("MOESTREAM_KERNELS");
    }
#elif defined(__aarch64__)
    assert_string_equal(ms_kern_name(best), "neon");
#endif
}

static void test_validate(void **state)
{
    (void)state;
    uint32_t w[64] = {0};
    uint16_t sb[8] = {0};
    ms_mat m = {.type = MS_WT_AFFINE,
                .bits = 4,
                .group_size = 64,
                .sb_dtype = MS_DT_BF16,
                .rows = 2,
                .cols = 128,
                .w = w,
                .scales = sb,
                .biases = sb};
    ms_err err = {0};
    assert_int_equal(ms_mat_validate(&m, &err), 0);
    assert_int_equal(ms_mat_row_bytes(&m), 64);
    assert_int_equal(ms_mat_sb_row_bytes(&m), 4);
    assert_int_equal(ms_mat_bytes(&m), 2 * (64 + 8));
    ms_mat v = ms_mat_rows(&m, 1, 1);
    assert_ptr_equal(v.w, (const char *)w + 64);
    assert_ptr_equal(v.scales, (const char *)sb + 4);
    assert_int_equal(v.rows, 1);
    ms_mat bad = m;
    bad.bits = 7;
    assert_int_equal(ms_mat_validate(&bad, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "bits 7"));
    bad = m;
    bad.cols = 96;
    ms_err_clear(&err);
    assert_int_equal(ms_mat_validate(&bad, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "group size"));
    bad = m;
    bad.sb_dtype = MS_DT_U8;
    ms_err_clear(&err);
    assert_int_equal(ms_mat_validate(&bad, &err), -EINVAL);
    bad = m;
    bad.group_size = 48;
    ms_err_clear(&err);
    assert_int_equal(ms_mat_validate(&bad, &err), -EINVAL);
    bad = m;
    bad.rows = 0;
    ms_err_clear(&err);
    assert_int_equal(ms_mat_validate(&bad, &err), -EINVAL);
    ms_mat d = {.type = MS_WT_BF16, .rows = 3, .cols = 5, .w = w};
    assert_int_equal(ms_mat_validate(&d, &err), 0);
    assert_int_equal(ms_mat_row_bytes(&d), 10);
    assert_int_equal(ms_mat_bytes(&d), 30);
}

/* ---- 4. small ops --------------------------------------------------------- */

static void test_small_ops(void **state)
{
    (void)state;
    rng r = {31337};
    /* rmsnorm (and in place) */
    int n = 1000;
    float *x = rand_vec(&r, n), *w = rand_vec(&r, n), *o = malloc((size_t)n * 4);
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double inv = 1.0 / sqrt(ss / n + 1e-6);
    ms_rmsnorm(o, x, w, n, 1e-6f);
    for (int i = 0; i < n; i++) assert_true(fabs(o[i] - x[i] * inv * w[i]) <= 1e-6 * (1 + fabs(x[i] * inv * w[i])));
    memcpy(o, x, (size_t)n * 4);
    ms_rmsnorm(o, o, NULL, n, 1e-6f);
    for (int i = 0; i < n; i++) assert_true(fabs(o[i] - x[i] * inv) <= 1e-6 * (1 + fabs(x[i] * inv)));
    /* softmax: matches double, sums to 1, huge inputs do not overflow */
    float sm[5] = {1000.0f, 999.0f, -5.0f, 1000.0f, 0.0f};
    double e[5], es = 0;
    for (int i = 0; i < 5; i++) es += e[i] = exp((double)sm[i] - 1000.0);
    ms_softmax(sm, 5);
    double tot = 0;
    for (int i = 0; i < 5; i++) {
        assert_true(fabs(sm[i] - e[i] / es) < 1e-6);
        tot += sm[i];
    }
    assert_true(fabs(tot - 1.0) < 1e-6);
    float masked[3] = {-INFINITY, -INFINITY, -INFINITY}, one[1] = {-3.0f};
    ms_softmax(masked, 3);
    for (int i = 0; i < 3; i++) assert_true(fabsf(masked[i] - 1.0f / 3) < 1e-7);
    ms_softmax(one, 1);
    assert_true(one[0] == 1.0f);
    /* silu * mul */
    float g[4] = {-20.0f, -1.0f, 0.0f, 3.0f}, u[4] = {2.0f, 3.0f, 4.0f, 0.5f};
    ms_silu_mul(g, u, 4);
    const double gin[4] = {-20, -1, 0, 3};
    for (int i = 0; i < 4; i++) assert_true(fabs(g[i] - gin[i] / (1 + exp(-gin[i])) * u[i]) < 1e-6);
    /* RoPE: against the formula; rotation preserves the norm of every pair */
    int d = 64;
    float *q = rand_vec(&r, d), *q2 = malloc((size_t)d * 4), cs[32], sn[32];
    for (int i = 0; i < d / 2; i++) {
        double th = 7.0 * pow(10000.0, -2.0 * i / d);
        cs[i] = (float)cos(th);
        sn[i] = (float)sin(th);
    }
    memcpy(q2, q, (size_t)d * 4);
    ms_rope_interleaved(q2, d, cs, sn);
    for (int i = 0; i < d / 2; i++) {
        double a = q[2 * i], b = q[2 * i + 1];
        assert_true(fabs(q2[2 * i] - (a * cs[i] - b * sn[i])) < 1e-6);
        assert_true(fabs(q2[2 * i + 1] - (a * sn[i] + b * cs[i])) < 1e-6);
    }
    memcpy(q2, q, (size_t)d * 4);
    ms_rope_halfsplit(q2, d, cs, sn);
    for (int i = 0; i < d / 2; i++) {
        double a = q[i], b = q[i + d / 2];
        assert_true(fabs(q2[i] - (a * cs[i] - b * sn[i])) < 1e-6);
        assert_true(fabs(q2[i + d / 2] - (a * sn[i] + b * cs[i])) < 1e-6);
        assert_true(fabs(hypot(q2[i], q2[i + d / 2]) - hypot(a, b)) < 1e-5);
    }
    /* dot */
    double dd = 0;
    for (int i = 0; i < n; i++) dd += (double)x[i] * w[i];
    assert_true(fabs(ms_dot_f32(x, w, n) - dd) < 1e-4);
    assert_true(ms_dot_f32(x, w, 0) == 0.0f);
    assert_true(ms_dot_f32(x, w, 3) == (float)(((double)x[0] * w[0] + (double)x[1] * w[1]) + (double)x[2] * w[2]) ||
                fabs(ms_dot_f32(x, w, 3) - ((double)x[0] * w[0] + (double)x[1] * w[1] + (double)x[2] * w[2])) < 1e-6);
    free(x);
    free(w);
    free(o);
    free(q);
    free(q2);
}

/* The attention helpers of every table (scalar reference included) against
 * double: row dots of n cached rows of d floats (every tail length of the
 * vector widths), and y += a x; a table's result is the same on every call. */
static void test_attention_helpers(void **state)
{
    (void)state;
    rng r = {4242};
    const ms_kern *tb[4];
    int nt = tables(tb, true);
    static const int ds[] = {1, 7, 16, 17, 64, 100, 512, 576};
    for (int ti = 0; ti < nt; ti++)
        for (size_t di = 0; di < MS_ARRAY_LEN(ds); di++) {
            int d = ds[di], n = 37;
            float *K = rand_vec(&r, n * d), *q = rand_vec(&r, d), s[37], s2[37];
            ms_rows_dot_f32(tb[ti], K, n, d, q, s);
            ms_rows_dot_f32(tb[ti], K, n, d, q, s2);
            for (int j = 0; j < n; j++) {
                double ref = 0, mag = 0;
                for (int c = 0; c < d; c++) {
                    ref += (double)K[(size_t)j * d + c] * q[c];
                    mag += fabs((double)K[(size_t)j * d + c] * q[c]);
                }
                if (fabs(s[j] - ref) > 1e-6 * (1 + mag))
                    fail_msg("%s rows_dot d=%d row %d: %.9g, double %.9g", ms_kern_name(tb[ti]), d, j, s[j], ref);
                assert_true(s[j] == s2[j]);
            }
            float *y = rand_vec(&r, d), *y0 = malloc((size_t)d * 4);
            memcpy(y0, y, (size_t)d * 4);
            ms_axpy_f32(tb[ti], y, -0.375f, q, d);
            for (int c = 0; c < d; c++) {
                double ref = (double)y0[c] - 0.375 * q[c];
                if (fabs(y[c] - ref) > 1e-6 * (1 + fabs(y0[c]) + fabs(q[c])))
                    fail_msg("%s axpy d=%d element %d: %.9g, double %.9g", ms_kern_name(tb[ti]), d, c, y[c], ref);
            }
            free(K);
            free(q);
            free(y);
            free(y0);
        }
}

static void test_topk(void **state)
{
    (void)state;
    float x[10] = {0.5f, 3.0f, -1.0f, 3.0f, NAN, 2.0f, 3.0f, -INFINITY, 0.5f, 2.5f};
    int idx[12];
    ms_topk(x, 10, 5, idx);
    const int want[5] = {1, 3, 6, 9, 5}; /* ties: lower index first */
    assert_memory_equal(idx, want, sizeof want);
    ms_topk(x, 10, 1, idx);
    assert_int_equal(idx[0], 1);
    ms_topk(x, 10, 10, idx);
    assert_int_equal(idx[7], 2); /* -1.0 */
    assert_int_equal(idx[8], 7); /* -inf */
    assert_int_equal(idx[9], 4); /* NaN last */
    ms_topk(x, 3, 5, idx);       /* k > n: padded with -1 */
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[2], 2);
    assert_int_equal(idx[3], -1);
    assert_int_equal(idx[4], -1);
    /* random: against a full sort */
    rng r = {5};
    float v[256];
    for (int rep = 0; rep < 50; rep++) {
        for (int i = 0; i < 256; i++) v[i] = (float)(rng_u64(&r) % 40); /* many ties */
        int k = 1 + rep % 9, got[9];
        ms_topk(v, 256, k, got);
        for (int i = 0; i < k; i++) {
            /* the number of elements ranking before got[i] is exactly i */
            int before = 0;
            for (int j = 0; j < 256; j++) before += v[j] > v[got[i]] || (v[j] == v[got[i]] && j < got[i]);
            assert_int_equal(before, i);
        }
    }
    /* large k (the heap path): the same rank property, with ties and NaNs */
    float *big = malloc(3000 * sizeof *big);
    int *got = malloc(600 * sizeof *got);
    for (int rep = 0; rep < 6; rep++) {
        int nb = 100 + rep * 500, k = 33 + rep * 100;
        for (int i = 0; i < nb; i++) big[i] = (rng_u64(&r) % 17 == 0) ? NAN : (float)(rng_u64(&r) % 300);
        ms_topk(big, nb, k, got);
        int m = k < nb ? k : nb;
        for (int i = 0; i < m; i++) {
            int before = 0;
            float vi = big[got[i]];
            for (int j = 0; j < nb; j++) {
                float vj = big[j];
                bool b = isnan(vi) ? (!isnan(vj) || j < got[i]) : (!isnan(vj) && (vj > vi || (vj == vi && j < got[i])));
                before += b;
            }
            assert_int_equal(before, i);
        }
        for (int i = m; i < k; i++) assert_int_equal(got[i], -1);
    }
    free(big);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_vs_double),
        cmocka_unit_test(test_spec_vector),
        cmocka_unit_test(test_opt_vs_ref),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_matmul_many_tokens),
        cmocka_unit_test(test_row_split_invariance),
        cmocka_unit_test(test_ffn),
        cmocka_unit_test(test_matvec_multi),
        cmocka_unit_test(test_ffn_multi),
        cmocka_unit_test(test_scratch_bytes),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_small_ops),
        cmocka_unit_test(test_attention_helpers),
        cmocka_unit_test(test_topk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* bench_kernels.c - `moestream bench kernels`: matvec throughput per weight type
 * against the memory bandwidth measured in the same run.
 *
 * For each kernel (4-bit g64, 8-bit g64, 5-bit g64, 3-bit g128, bf16) and shape
 * (7168x2048, 2048x7168: DeepSeek-V3 expert shapes; 4096x4096) it runs
 * ms_matvec on 1 thread and on all threads, cycling through enough copies of
 * the matrix to cover a working set larger than the caches (--mem), so every
 * call streams its weights from DRAM as decode does. The figure is GB/s of
 * weight bytes (codes + scales + biases) processed. The roofline is a
 * STREAM-like sequential read (sum) of a --mem buffer with the same threads,
 * measured in the same time window (passes alternate; the fastest call and
 * the fastest 8 MiB read chunk count). "memread" rows give the read probe
 * alone (best chunk of 5 passes).
 * --matmul adds prefill figures: ms_matmul GFLOP/s on the demo model's and
 * DeepSeek-V3 / GigaChat shapes for n = 8..512 tokens on the three paths
 * (multi-token row kernels, the table's GEMM, dequantized tiles + OpenBLAS
 * sgemm), to place gemm_min_n. --multi adds the batch-invariant decode of B
 * vectors (ms_matvec_multi, B = 1..16, weights from DRAM): time per call and
 * aggregate vectors/s against B = 1. --no-matvec skips the matvec table.
 *
 * The arena is filled so that every 16-bit word is a normal bf16 in +-[0.5, 1):
 * any bytes are valid codes, and scales / biases / bf16 weights are sane. */
#include <getopt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "kernels_impl.h"
#include "util.h"

typedef struct bk_kernel {
    const char *name;
    ms_wtype type;
    int bits, gs;
} bk_kernel;

static const bk_kernel kKernels[] = {
    {"q4g64", MS_WT_AFFINE, 4, 64},   {"q8g64", MS_WT_AFFINE, 8, 64}, {"q5g64", MS_WT_AFFINE, 5, 64},
    {"q3g128", MS_WT_AFFINE, 3, 128}, {"bf16", MS_WT_BF16, 0, 0},
};
static const int64_t kShapes[][2] = {{7168, 2048}, {2048, 7168}, {4096, 4096}};

typedef struct bk_opts {
    bool json;
    int threads;
    double seconds;
    uint64_t mem;
    const char *impl;
    bool matvec, matmul, multi;
} bk_opts;

/* ---- memory bandwidth ------------------------------------------------------ */

typedef struct read_task {
    const ms_kern *k;
    const float *buf;
    size_t n;
    double sink[64];
} read_task;

static void read_worker(void *arg, int tid, int nth)
{
    read_task *t = arg;
    size_t per = (t->n / (size_t)nth) & ~(size_t)31;
    size_t a = per * (size_t)tid, b = tid == nth - 1 ? t->n : a + per;
    t->sink[tid & 63] = t->k->read_sum(t->buf + a, b - a);
}

/* The read probe reads the arena in chunks of this size (each chunk split
 * across the threads) and times every chunk. */
#define READ_CHUNK (8u << 20)

/* One pass of the read probe over the arena; returns the best chunk's GB/s. */
static double read_pass(const ms_kern *k, ms_pool *pool, const char *arena, uint64_t bytes)
{
    double best = 0;
    for (uint64_t off = 0; off + READ_CHUNK <= bytes; off += READ_CHUNK) {
        read_task t = {.k = k, .buf = (const float *)(arena + off), .n = READ_CHUNK / sizeof(float)};
        double t0 = ms_now_s();
        ms_pool_run(pool, read_worker, &t);
        double dt = ms_now_s() - t0;
        if (dt > 0 && READ_CHUNK / dt / 1e9 > best) best = READ_CHUNK / dt / 1e9;
    }
    return best;
}

/* Best chunk of 5 passes, GB/s. */
static double measure_read(const ms_kern *k, ms_pool *pool, const char *arena, uint64_t bytes)
{
    double best = 0;
    for (int rep = 0; rep < 5; rep++) best = MS_MAX(best, read_pass(k, pool, arena, bytes));
    return best;
}

/* ---- matrices in the arena --------------------------------------------------- */

static void fill_arena(uint16_t *p, size_t nwords)
{
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < nwords; i += 4) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        for (int j = 0; j < 4 && i + j < nwords; j++)
            p[i + j] = (uint16_t)(((s >> (16 * j)) & 0x807Fu) | 0x3F00u); /* +-[0.5, 1) */
    }
}

/* Copies of a rows x cols matrix carved from the arena (up to max_copies). */
static int carve(const bk_kernel *kk, int64_t rows, int64_t cols, char *arena, uint64_t arena_bytes, ms_mat *mats,
                 int max_copies)
{
    ms_mat m = {
        .type = kk->type, .bits = kk->bits, .group_size = kk->gs, .sb_dtype = MS_DT_BF16, .rows = rows, .cols = cols};
    size_t wb = (size_t)rows * ms_mat_row_bytes(&m), sbb = (size_t)rows * ms_mat_sb_row_bytes(&m);
    size_t one = MS_ALIGN_UP(wb, 64) + 2 * MS_ALIGN_UP(sbb, 64);
    int n = 0;
    for (uint64_t off = 0; off + one <= arena_bytes && n < max_copies; off += one) {
        ms_mat c = m;
        c.w = arena + off;
        if (kk->type == MS_WT_AFFINE) {
            c.scales = arena + off + MS_ALIGN_UP(wb, 64);
            c.biases = arena + off + MS_ALIGN_UP(wb, 64) + MS_ALIGN_UP(sbb, 64);
        }
        mats[n++] = c;
    }
    return n;
}

/* One window of `seconds`: passes over all the copies of the matrix (one
 * ms_matvec each, so every call streams its weights from DRAM) alternate with
 * passes of the read probe over the arena, on the same pool. Every call and
 * every read chunk (both ~0.1-2 ms) is timed and the fastest counts: on a
 * shared machine it is the one no other process disturbed (preemption), and
 * measuring both in the same window keeps their ratio honest. */
static void time_pair(const ms_compute *c, const ms_mat *mats, int ncopies, const float *x, float *y, double seconds,
                      const char *arena, uint64_t arena_bytes, double *sec_per_call, double *read_gbps)
{
    for (int i = 0; i < ncopies; i++) ms_matvec(c, &mats[i], x, y); /* warm-up pass (page faults, pool) */
    double best = 1e30, best_read = 0, t0 = ms_now_s();
    do {
        for (int i = 0; i < ncopies; i++) {
            double p0 = ms_now_s();
            ms_matvec(c, &mats[i], x, y);
            best = MS_MIN(best, ms_now_s() - p0);
        }
        best_read = MS_MAX(best_read, read_pass(c->kern, c->pool, arena, arena_bytes));
    } while (ms_now_s() - t0 < seconds);
    *sec_per_call = best;
    *read_gbps = best_read;
}

/* ---- output ------------------------------------------------------------------ */

static void emit(const bk_opts *o, const char *impl, const char *kernel, int threads, int64_t rows, int64_t cols,
                 double gbps, double roof, double us)
{
    if (o->json) {
        printf("{\"kernel\":\"%s\",\"impl\":\"%s\",\"threads\":%d,\"rows\":%lld,\"cols\":%lld,\"gbps\":%.2f,"
               "\"roofline_gbps\":%.2f,\"us_per_call\":%.1f}\n",
               kernel, impl, threads, (long long)rows, (long long)cols, gbps, roof, us);
    } else {
        printf("%-10s %5lld x %-5lld %7d %9.2f %10.2f %7.2f %10.1f\n", kernel, (long long)rows, (long long)cols,
               threads, gbps, roof, roof > 0 ? gbps / roof : 0.0, us);
    }
    fflush(stdout);
}

/* Best time of fn over a window of `seconds` (after one warm-up call): the
 * call least disturbed by other processes. */
static double best_time(void (*fn)(void *), void *arg, double seconds)
{
    fn(arg);
    double best = 1e30, t0 = ms_now_s();
    do {
        double c0 = ms_now_s();
        fn(arg);
        best = MS_MIN(best, ms_now_s() - c0);
    } while (ms_now_s() - t0 < seconds);
    return best;
}

typedef struct mm_call {
    ms_compute c;
    const ms_mat *m;
    const float *X;
    float *Y;
    int n;
} mm_call;

static void call_matmul(void *arg)
{
    mm_call *a = arg;
    ms_matmul(&a->c, a->m, a->X, a->n, a->Y);
}

/* Prefill shapes (rows x cols): demo model (hidden 2048: attention output,
 * 1408-wide experts both ways) and DeepSeek-V3 / GigaChat experts (7168 <-> 2048). */
static const int64_t kMatmulShapes[][2] = {{2048, 2048}, {1408, 2048}, {2048, 1408}, {7168, 2048}, {2048, 7168}};
static const int kMatmulN[] = {8, 16, 32, 64, 128, 256, 512};
#define MM_NMAX 512

static void fill_x(float *X, size_t n)
{
    for (size_t i = 0; i < n; i++) X[i] = (float)((i % 1000) * 7919 % 1000) / 1000.0f - 0.5f;
}

/* Prefill: ms_matmul GFLOP/s (q4g64) on the three paths, forced through copies
 * of the table: rows (gemm_min_n 0), the table's GEMM (gemm_min_n 1), OpenBLAS
 * (no table GEMM, gemm_min_n 1). */
static void bench_matmul(const bk_opts *o, const ms_kern *k, ms_pool *pool, char *arena, uint64_t arena_bytes)
{
    const bk_kernel *kk = &kKernels[0];
    ms_kern krows = *k, kgemm = *k, kblas = *k;
    kblas.gemm = NULL;
    krows.affine[4].gemm_min_n = 0;
    kgemm.affine[4].gemm_min_n = kblas.affine[4].gemm_min_n = 1;
    const ms_kern *paths[3] = {&krows, k->gemm ? &kgemm : NULL, &kblas};
    float *X = malloc(sizeof(float) * MM_NMAX * 7168), *Y = malloc(sizeof(float) * MM_NMAX * 7168);
    if (!X || !Y) {
        free(X);
        free(Y);
        return;
    }
    fill_x(X, (size_t)MM_NMAX * 7168);
    if (!o->json)
        printf("\nprefill ms_matmul, %s, %d threads, GFLOP/s (gemm_min_n %d)\n%-13s %5s %9s %9s %9s\n", kk->name,
               ms_pool_size(pool), k->affine[4].gemm_min_n, "rows x cols", "n", "rows", "gemm", "sgemm");
    for (size_t si = 0; si < MS_ARRAY_LEN(kMatmulShapes); si++) {
        const int64_t rows = kMatmulShapes[si][0], cols = kMatmulShapes[si][1];
        ms_mat m;
        if (carve(kk, rows, cols, arena, arena_bytes, &m, 1) != 1) continue;
        for (size_t ni = 0; ni < MS_ARRAY_LEN(kMatmulN); ni++) {
            const int n = kMatmulN[ni];
            double gf[3] = {0, 0, 0};
            for (int p = 0; p < 3; p++) {
                if (!paths[p]) continue;
                mm_call a = {{paths[p], pool}, &m, X, Y, n};
                gf[p] = 2.0 * (double)rows * (double)cols * n / best_time(call_matmul, &a, o->seconds / 3) / 1e9;
            }
            if (o->json)
                printf("{\"kernel\":\"matmul_%s\",\"impl\":\"%s\",\"threads\":%d,\"rows\":%lld,\"cols\":%lld,\"n\":%d,"
                       "\"rows_gflops\":%.2f,\"gemm_gflops\":%.2f,\"sgemm_gflops\":%.2f}\n",
                       kk->name, k->name, ms_pool_size(pool), (long long)rows, (long long)cols, n, gf[0], gf[1],
                       gf[2]);
            else
                printf("%5lld x %-5lld %5d %9.1f %9.1f %9.1f\n", (long long)rows, (long long)cols, n, gf[0], gf[1],
                       gf[2]);
            fflush(stdout);
        }
    }
    free(X);
    free(Y);
}

/* Decode over B vectors: ms_matvec_multi (q4g64) cycling through DRAM copies
 * of the matrix; aggregate vectors per second relative to B = 1. */
static void bench_multi(const bk_opts *o, const ms_kern *k, ms_pool *pool, char *arena, uint64_t arena_bytes,
                        ms_mat *mats)
{
    static const int Bs[] = {1, 2, 4, 8, 16};
    static const int64_t shapes[][2] = {{2048, 7168}, {7168, 2048}};
    const bk_kernel *kk = &kKernels[0];
    float *X = malloc(sizeof(float) * 16 * 7168), *Y = malloc(sizeof(float) * 16 * 7168);
    if (!X || !Y) {
        free(X);
        free(Y);
        return;
    }
    fill_x(X, (size_t)16 * 7168);
    if (!o->json)
        printf("\ndecode of B vectors, ms_matvec_multi, %s, %d threads\n%-13s %3s %10s %10s %9s\n", kk->name,
               ms_pool_size(pool), "rows x cols", "B", "us/call", "vectors/s", "vs B=1");
    for (size_t si = 0; si < MS_ARRAY_LEN(shapes); si++) {
        const int64_t rows = shapes[si][0], cols = shapes[si][1];
        int nc = carve(kk, rows, cols, arena, arena_bytes, mats, 4096);
        if (nc < 1) continue;
        /* All B in the same window, round robin: on a shared machine every B
         * sees the same conditions, so their ratios hold. */
        double best[MS_ARRAY_LEN(Bs)];
        ms_compute c = {k, pool};
        for (size_t bi = 0; bi < MS_ARRAY_LEN(Bs); bi++) {
            best[bi] = 1e30;
            for (int i = 0; i < nc; i++) ms_matvec_multi(&c, &mats[i], X, Bs[bi], Y); /* warm-up */
        }
        double t0 = ms_now_s();
        do {
            for (size_t bi = 0; bi < MS_ARRAY_LEN(Bs); bi++)
                for (int i = 0; i < nc; i++) { /* one call per copy: weights from DRAM */
                    double c0 = ms_now_s();
                    ms_matvec_multi(&c, &mats[i], X, Bs[bi], Y);
                    best[bi] = MS_MIN(best[bi], ms_now_s() - c0);
                }
        } while (ms_now_s() - t0 < o->seconds * MS_ARRAY_LEN(Bs));
        for (size_t bi = 0; bi < MS_ARRAY_LEN(Bs); bi++) {
            const int B = Bs[bi];
            double vps = B / best[bi], base = 1.0 / best[0];
            if (o->json)
                printf("{\"kernel\":\"multi_%s\",\"impl\":\"%s\",\"threads\":%d,\"rows\":%lld,\"cols\":%lld,\"B\":%d,"
                       "\"us_per_call\":%.1f,\"vectors_per_s\":%.1f,\"speedup\":%.3f}\n",
                       kk->name, k->name, ms_pool_size(pool), (long long)rows, (long long)cols, B, best[bi] * 1e6, vps,
                       vps / base);
            else
                printf("%5lld x %-5lld %3d %10.1f %10.0f %8.2fx\n", (long long)rows, (long long)cols, B, best[bi] * 1e6,
                       vps, vps / base);
            fflush(stdout);
        }
    }
    free(X);
    free(Y);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream bench kernels [options]\n"
            "\n"
            "Matvec GB/s (weight bytes processed per second) for 4-bit g64, 8-bit g64,\n"
            "5-bit g64, 3-bit g128 and bf16 weights at 7168x2048, 2048x7168 and 4096x4096,\n"
            "on 1 thread and on all threads, next to the memory read bandwidth measured in\n"
            "the same run (the roofline). Weights are cycled through a working set larger\n"
            "than the caches so every call reads them from DRAM, as decode does.\n"
            "\n"
            "options:\n"
            "  --json          one JSON object per line: {\"kernel\",\"impl\",\"threads\",\"rows\",\n"
            "                  \"cols\",\"gbps\",\"roofline_gbps\",\"us_per_call\"}\n"
            "  --threads N     the \"all threads\" count (default: physical cores, %d here)\n"
            "  --time SEC      time window per figure (default 0.15): matvec passes over the\n"
            "                  working set alternate with read-probe passes; the fastest\n"
            "                  call and the fastest 8 MiB read chunk are reported (robust\n"
            "                  to preemption on a shared machine)\n"
            "  --mem SIZE      working set per shape and for the bandwidth probe\n"
            "                  (default 256M; make it several times the L3 size)\n"
            "  --impl NAME     kernel table: ref, avx2, avx512, neon (default: the best this CPU\n"
            "                  supports, as the runtime picks it; also MOESTREAM_KERNELS)\n"
            "  --ref           same as --impl ref (as MOESTREAM_FORCE_REF=1)\n"
            "  --matmul        also time prefill ms_matmul (q4g64, all threads) at 2048x2048,\n"
            "                  1408x2048, 2048x1408, 7168x2048, 2048x7168 for n = 8..512 tokens\n"
            "                  on the three paths: multi-token row kernels, the table's GEMM,\n"
            "                  dequantized tiles + OpenBLAS sgemm (JSON: {\"kernel\":\"matmul_q4g64\",\n"
            "                  \"rows\",\"cols\",\"n\",\"rows_gflops\",\"gemm_gflops\",\"sgemm_gflops\",...})\n"
            "  --multi         also time the batch-invariant decode of B = 1..16 vectors\n"
            "                  (ms_matvec_multi, q4g64 2048x7168 and 7168x2048, weights from\n"
            "                  DRAM; JSON: {\"kernel\":\"multi_q4g64\",\"B\",\"us_per_call\",\n"
            "                  \"vectors_per_s\",\"speedup\",...})\n"
            "  --no-matvec     skip the matvec table (with --matmul / --multi)\n"
            "  -h, --help      this help\n",
            ms_physical_cores());
}

int ms_bench_kernels(int argc, char **argv)
{
    const char *cmd = "bench kernels";
    bk_opts o = {.threads = ms_physical_cores(), .seconds = 0.15, .mem = 256ull << 20, .matvec = true};
    static const struct option lopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"threads", required_argument, NULL, 't'},
        {"time", required_argument, NULL, 's'},
        {"mem", required_argument, NULL, 'm'},
        {"ref", no_argument, NULL, 'r'},
        {"impl", required_argument, NULL, 'i'},
        {"matmul", no_argument, NULL, 'M'},
        {"multi", no_argument, NULL, 'B'},
        {"no-matvec", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ms_err err = {0};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        long long v;
        double d;
        switch (c) {
        case 'j': o.json = true; break;
        case 'r': o.impl = "ref"; break;
        case 'i': o.impl = optarg; break;
        case 'M': o.matmul = true; break;
        case 'B': o.multi = true; break;
        case 'V': o.matvec = false; break;
        case 't':
            if (ms_parse_int(optarg, 1, 1024, &v, "--threads", &err) < 0) return ms_cli_usage_error(cmd, "%s", err.msg);
            o.threads = (int)v;
            break;
        case 's':
            if (ms_parse_double(optarg, &d, "--time", &err) < 0) return ms_cli_usage_error(cmd, "%s", err.msg);
            if (!(d > 0 && d <= 60)) return ms_cli_usage_error(cmd, "--time must be in (0, 60] seconds");
            o.seconds = d;
            break;
        case 'm':
            if (ms_parse_size(optarg, &o.mem, "--mem", &err) < 0) return ms_cli_usage_error(cmd, "%s", err.msg);
            if (o.mem < (64ull << 20)) return ms_cli_usage_error(cmd, "--mem must be at least 64M");
            break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_usage_error(cmd, "bad option");
        }
    }
    if (optind < argc) return ms_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);

    const ms_kern *k = o.impl ? ms_kern_by_name(o.impl) : ms_kern_select(false);
    if (!k)
        return ms_cli_usage_error(cmd, "--impl %s: unknown or not supported by this CPU (ref, avx2, avx512, neon)",
                                  o.impl);
    ms_pool *pool1 = ms_pool_create(1, &err), *pooln = pool1 ? ms_pool_create(o.threads, &err) : NULL;
    char *arena = ms_aligned_alloc(4096, o.mem);
    float *x = malloc(sizeof(float) * 8192), *y = malloc(sizeof(float) * 8192);
    ms_mat *mats = malloc(sizeof(ms_mat) * 4096);
    int rc = 0;
    if (!pool1 || !pooln) {
        rc = ms_cli_fail(cmd, &err);
        goto out;
    }
    if (!arena || !x || !y || !mats) {
        ms_errf(&err, ENOMEM, "cannot allocate the %llu MiB working set", (unsigned long long)(o.mem >> 20));
        rc = ms_cli_fail(cmd, &err);
        goto out;
    }
    fill_arena((uint16_t *)arena, o.mem / 2);
    for (int i = 0; i < 8192; i++) x[i] = (float)((i % 1000) * 7919 % 1000) / 1000.0f - 0.5f;

    const int tcounts[2] = {1, o.threads};
    ms_pool *pools[2] = {pool1, pooln};
    const int nt = o.threads > 1 ? 2 : 1;
    if (!o.json)
        printf("moestream bench kernels: impl %s, working set %llu MiB, %.2fs per figure\n", k->name,
               (unsigned long long)(o.mem >> 20), o.seconds);
    if (o.matvec) {
        double roof[2];
        for (int t = 0; t < nt; t++) roof[t] = measure_read(k, pools[t], arena, o.mem);
        if (!o.json)
            printf("%-10s %-13s %7s %9s %10s %7s %10s\n", "kernel", "rows x cols", "threads", "GB/s", "roofline",
                   "ratio", "us/call");
        for (int t = 0; t < nt; t++)
            emit(&o, k->name, "memread", tcounts[t], 0, 0, roof[t], roof[t], (double)READ_CHUNK / (roof[t] * 1e3));
    }
    for (size_t ki = 0; o.matvec && ki < MS_ARRAY_LEN(kKernels); ki++)
        for (size_t si = 0; si < MS_ARRAY_LEN(kShapes); si++) {
            const int64_t rows = kShapes[si][0], cols = kShapes[si][1];
            int nc = carve(&kKernels[ki], rows, cols, arena, o.mem, mats, 4096);
            if (nc < 1) continue;
            for (int t = 0; t < nt; t++) {
                ms_compute cc = {k, pools[t]};
                double s, rgbps;
                time_pair(&cc, mats, nc, x, y, o.seconds, arena, o.mem, &s, &rgbps);
                double gbps = (double)ms_mat_bytes(&mats[0]) / s / 1e9;
                emit(&o, k->name, kKernels[ki].name, tcounts[t], rows, cols, gbps, rgbps, s * 1e6);
            }
        }
    if (o.matmul) bench_matmul(&o, k, pooln, arena, o.mem);
    if (o.multi) bench_multi(&o, k, pooln, arena, o.mem, mats);
out:
    free(mats);
    free(x);
    free(y);
    free(arena);
    ms_pool_destroy(pooln);
    ms_pool_destroy(pool1);
    return rc;
}

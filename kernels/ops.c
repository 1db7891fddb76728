/* ops.c - the small f32 operations of the forward pass: rmsnorm, softmax,
 * silu*mul, RoPE (interleaved and half-split), top-k and a dot product.
 *
 * Portable C built for the baseline ISA (these are not memory-bound hot loops,
 * and a fixed code path keeps results identical across machines). Reductions
 * use a fixed order (8 partial sums, or double), never a thread-dependent one. */
#include <cblas.h>
#include <math.h>

#include "kernels.h"

void ms_rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    float inv = (float)(1.0 / sqrt(ss / (n > 0 ? n : 1) + (double)eps));
    if (w)
        for (int i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
    else
        for (int i = 0; i < n; i++) out[i] = x[i] * inv;
}

void ms_softmax(float *x, int n)
{
    if (n <= 0) return;
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    if (mx == -INFINITY) { /* everything masked: uniform rather than NaN */
        for (int i = 0; i < n; i++) x[i] = 1.0f / (float)n;
        return;
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void ms_silu_mul(float *gate, const float *up, int n)
{
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void ms_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                A, lda, B, ldb, beta, C, ldc);
}

void ms_act_mul(float *gate, const float *up, int n, const ms_act *act)
{
    if (!act || act->kind == MS_ACT_SWIGLU || !(act->limit > 0)) {
        ms_silu_mul(gate, up, n);
        return;
    }
    float L = act->limit;
    if (act->kind == MS_ACT_SWIGLU_CLAMP_AFTER) {
        for (int i = 0; i < n; i++) {
            float g = gate[i], u = fminf(fmaxf(up[i], -L), L);
            gate[i] = fminf(g / (1.0f + expf(-g)), L) * u;
        }
    } else {
        for (int i = 0; i < n; i++) {
            float g = fminf(gate[i], L), u = fminf(fmaxf(up[i], -L), L);
            gate[i] = g / (1.0f + expf(-g)) * u;
        }
    }
}

void ms_rope_interleaved(float *x, int d, const float *cos_, const float *sin_)
{
    for (int i = 0; i < d / 2; i++) {
        float a = x[2 * i], b = x[2 * i + 1], c = cos_[i], s = sin_[i];
        x[2 * i] = a * c - b * s;
        x[2 * i + 1] = a * s + b * c;
    }
}

void ms_rope_halfsplit(float *x, int d, const float *cos_, const float *sin_)
{
    int h = d / 2;
    for (int i = 0; i < h; i++) {
        float a = x[i], b = x[i + h], c = cos_[i], s = sin_[i];
        x[i] = a * c - b * s;
        x[i + h] = a * s + b * c;
    }
}

/* a ranks before b: larger value, ties (and NaN vs NaN) to the lower index; NaN
 * ranks below every number. */
static inline int topk_before(float va, int ia, float vb, int ib)
{
    if (isnan(va)) return isnan(vb) ? ia < ib : 0;
    if (isnan(vb)) return 1;
    return va > vb || (va == vb && ia < ib);
}

void ms_topk(const float *x, int n, int k, int *idx)
{
    if (k <= 0) return;
    int m = k < n ? k : (n > 0 ? n : 0);
    /* Insertion into a sorted list of the best m so far: O(n*k), k is small. */
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        if (cnt == m && !topk_before(x[i], i, x[idx[m - 1]], idx[m - 1])) continue;
        int pos = cnt < m ? cnt++ : m - 1;
        while (pos > 0 && topk_before(x[i], i, x[idx[pos - 1]], idx[pos - 1])) {
            idx[pos] = idx[pos - 1];
            pos--;
        }
        idx[pos] = i;
    }
    for (int i = m; i < k; i++) idx[i] = -1; /* k > n: pad */
}

float ms_dot_f32(const float *a, const float *b, int n)
{
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    for (; i < n; i++) s[i & 7] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

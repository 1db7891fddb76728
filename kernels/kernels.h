/* kernels.h - the compute interface the forward pass uses.
 *
 * A weight matrix is described by ms_mat: a logical [rows=out, cols=in] matrix,
 * either dense (f32 / f16 / bf16) or MLX affine-quantized (b-bit codes packed
 * LSB-first into uint32 words along `cols`, one scale and one bias per group of
 * `group_size` columns; w = scale * q + bias, as mlx.core.quantize "affine").
 * The descriptor only points at memory; whoever owns the bytes (resident weights,
 * the expert cache) keeps them alive while a kernel runs.
 *
 * Kernels come in a per-type function table (ms_kern), chosen once at start-up
 * by CPU feature detection (AVX2+FMA on x86-64, NEON on aarch64, scalar `_ref`
 * otherwise). MOESTREAM_FORCE_REF=1 in the environment, or force_ref=true, picks
 * the scalar references everywhere.
 *
 * Determinism contract: every kernel's result for a given output element depends
 * only on its inputs, never on the thread count or on how rows are split, so the
 * whole forward pass is bit-identical for any --threads.
 */
#ifndef MS_KERNELS_H
#define MS_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "err.h"

typedef enum ms_wtype {
    MS_WT_F32 = 0,
    MS_WT_F16,
    MS_WT_BF16,
    MS_WT_AFFINE, /* MLX affine b-bit, see bits / group_size / sb_dtype */
    MS_WT_COUNT
} ms_wtype;

typedef struct ms_mat {
    ms_wtype type;
    int bits;            /* affine: 2,3,4,5,6,8 */
    int group_size;      /* affine: 32, 64, 128 */
    ms_dtype sb_dtype;   /* affine: dtype of scales and biases (BF16, F16 or F32) */
    int64_t rows, cols;  /* logical shape [out, in] */
    const void *w;       /* dense: [rows, cols] elements; affine: [rows, cols*bits/32] uint32 */
    const void *scales;  /* affine: [rows, cols/group_size] of sb_dtype */
    const void *biases;  /* affine: [rows, cols/group_size] of sb_dtype */
} ms_mat;

/* Bytes of one packed/dense row of w, and of one row of scales (or biases). */
size_t ms_mat_row_bytes(const ms_mat *m);
size_t ms_mat_sb_row_bytes(const ms_mat *m);
/* Total bytes of w + scales + biases. */
size_t ms_mat_bytes(const ms_mat *m);
/* A view of rows [r0, r0+n) of m (pointers advanced, rows = n). */
ms_mat ms_mat_rows(const ms_mat *m, int64_t r0, int64_t n);
/* Check that a descriptor is self-consistent (bits/group/cols); -EINVAL + message if not. */
int ms_mat_validate(const ms_mat *m, ms_err *err);

/* Thread pool: one per process, `nthreads` workers including the caller.
 * ms_pool_run runs fn(arg, tid, nth) on every thread (the caller is tid 0) and
 * returns when all have finished. Not reentrant: fn must not call ms_pool_run. */
typedef struct ms_pool ms_pool;
typedef void (*ms_task_fn)(void *arg, int tid, int nth);
ms_pool *ms_pool_create(int nthreads, ms_err *err);
void ms_pool_destroy(ms_pool *p);
int ms_pool_size(const ms_pool *p);
void ms_pool_run(ms_pool *p, ms_task_fn fn, void *arg);

/* Run fn(arg, i, tid) for every i in [0, n) on the pool's threads, each thread
 * taking the next index (dynamic schedule; pool NULL: on this thread). What fn
 * computes for an index must not depend on tid (tid selects per-thread
 * scratch only), so results do not depend on the thread count. */
typedef void (*ms_index_fn)(void *arg, int i, int tid);
void ms_pool_for(ms_pool *p, int n, ms_index_fn fn, void *arg);

/* The selected kernel table (opaque; see kernels_impl.h for its layout). */
typedef struct ms_kern ms_kern;
/* Select kernels for this CPU; force_ref (or MOESTREAM_FORCE_REF=1) picks `_ref`. */
const ms_kern *ms_kern_select(bool force_ref);
/* Name of the selected implementation ("avx2", "ref", ...). */
const char *ms_kern_name(const ms_kern *k);
/* The table called `name` ("ref", "avx2", "avx512", "neon"), or NULL if unknown
 * or not supported by this CPU. ms_kern_select picks MOESTREAM_KERNELS=<name>
 * when set to a supported table (MOESTREAM_FORCE_REF=1 still wins); otherwise
 * the best one the CPU supports (avx512 > avx2 > ref on x86-64, neon on aarch64). */
const ms_kern *ms_kern_by_name(const char *name);

/* What a compute call needs: the kernel table and the pool (pool may be NULL = run
 * on the calling thread only). */
typedef struct ms_compute {
    const ms_kern *kern;
    ms_pool *pool;
} ms_compute;

/* y[rows] = W x[cols]. */
void ms_matvec(const ms_compute *c, const ms_mat *m, const float *x, float *y);

/* Batch-invariant multi-vector matvec (decode of several sequences, MTP
 * verification): Y[b, rows] = W X[b, :] for b < B (X: [B, cols], Y: [B, rows]).
 * Contract: Y[b] is bit-identical to ms_matvec(c, m, X[b], .) for every weight
 * type and kernel table, whatever B is and whatever the other vectors are; and,
 * like every kernel here, for any thread count. Each weight row is read from
 * memory once for all B vectors (codes unpacked once per batch of 2-4 vectors),
 * so B vectors cost much less than B matvecs. Any B >= 1; B <= 0 does nothing. */
void ms_matvec_multi(const ms_compute *c, const ms_mat *m, const float *X, int B, float *Y);

/* Y[n, rows] = X[n, cols] W^T (n tokens at once; prefill). Below the table's
 * GEMM threshold (gemm_min_n, per weight type, 8-32) this is ms_matvec_multi
 * (bit-identical to per-token matvec); from it on, a GEMM on exactly
 * dequantized weights, within float rounding of the matvec (relative error
 * ~1e-6 of sum |w x|) and independent of n, of the other tokens and of the
 * thread count. */
void ms_matmul(const ms_compute *c, const ms_mat *m, const float *X, int n, float *Y);

/* Y[n, rows] = X[n, cols] W^T for a forward pass: n == 1 is ms_matvec; with
 * exact, every row is bit-identical to ms_matvec of that row alone (decode over
 * several sequences, MTP verification); otherwise ms_matmul (prefill). */
void ms_mat_apply(const ms_compute *c, const ms_mat *m, const float *X, int n, float *Y, bool exact);

/* Dequantize/convert row r of m into out[cols] (embedding lookup). */
void ms_mat_get_row(const ms_kern *k, const ms_mat *m, int64_t r, float *out);

/* The gated activation of an FFN, a = act(g, u) elementwise:
 *   MS_ACT_SWIGLU               silu(g) * u
 *   MS_ACT_SWIGLU_CLAMP_AFTER   min(silu(g), L) * clip(u, -L, L)   (Step-3.5/3.7 swiglu_limits)
 *   MS_ACT_SWIGLU_CLAMP_BEFORE  silu(min(g, L)) * clip(u, -L, L)   (DeepSeek-V4 swiglu_limit)
 * A clamped kind with limit <= 0 is plain SwiGLU. */
typedef enum ms_act_kind { MS_ACT_SWIGLU = 0, MS_ACT_SWIGLU_CLAMP_AFTER, MS_ACT_SWIGLU_CLAMP_BEFORE } ms_act_kind;
typedef struct ms_act {
    ms_act_kind kind;
    float limit;
} ms_act;

/* SwiGLU feed-forward on n tokens: Y[n, down.rows] = down( act(gate X, up X) ).
 * gate/up: [inter, D], down: [D, inter]. scratch must hold ms_ffn_scratch_floats(...)
 * floats. Used for dense MLPs, shared experts and routed experts alike; n > 1 goes
 * through ms_matmul (prefill: GEMM from its threshold on). act may be NULL (plain
 * SwiGLU). */
size_t ms_ffn_scratch_floats(const ms_mat *gate, int n);
void ms_ffn(const ms_compute *c, const ms_mat *gate, const ms_mat *up, const ms_mat *down, const float *X,
            int n, float *Y, float *scratch);
/* exact: each row computed as a one-row call would (bit-identical to n calls
 * with n = 1, whatever else is in the call): the multi-vector row kernels. */
void ms_ffn_act(const ms_compute *c, const ms_mat *gate, const ms_mat *up, const ms_mat *down, const float *X, int n,
                float *Y, float *scratch, const ms_act *act, bool exact);
/* The batch-invariant ms_ffn for B vectors (decode steps over several sequences,
 * MTP verification): Y[b] is bit-identical to ms_ffn(c, gate, up, down, X[b], 1,
 * Y[b], .) whatever B and the other vectors are (gate and up rows of one block
 * for all B vectors, silu*mul, then ms_matvec_multi for down). scratch:
 * ms_ffn_scratch_floats(gate, B) floats. */
void ms_ffn_multi(const ms_compute *c, const ms_mat *gate, const ms_mat *up, const ms_mat *down, const float *X,
                  int B, float *Y, float *scratch);

/* C[M][N] = alpha * op(A)[M][K] op(B)[K][N] + beta * C (row-major f32,
 * op = transpose when asked) on the calling thread: OpenBLAS sgemm, single
 * threaded (callers split work over the pool themselves, by shape only, so
 * results never depend on the thread count). */
void ms_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc);

/* Upper bound of the heap bytes the calls above allocate (and keep, for the
 * pool's per-thread GEMM tiles) for matrices of at most max_cols columns and
 * calls of at most max_n tokens/vectors, with table k and nthreads threads:
 * per-thread GEMM tiles (only if some weight type of k takes the GEMM at
 * max_n) plus the prepared inputs of the row kernels. What a plan counts
 * inside its RAM budget. */
size_t ms_compute_scratch_bytes(const ms_kern *k, int nthreads, int64_t max_cols, int max_n);
/* Scratch bytes the pool holds now (GEMM tiles + prepared-input buffer). */
size_t ms_pool_scratch_bytes(const ms_pool *p);

/* Small ops (f32). */
void ms_rmsnorm(float *out, const float *x, const float *w, int n, float eps); /* w may be NULL (= 1) */
void ms_softmax(float *x, int n);
void ms_silu_mul(float *gate, const float *up, int n);       /* gate[i] = silu(gate[i]) * up[i] */
void ms_act_mul(float *gate, const float *up, int n, const ms_act *act); /* gate[i] = act(gate[i], up[i]) */
/* Rotate pairs in place: interleaved (x[2i], x[2i+1]) or half-split (x[i], x[i+d/2]).
 * cos_/sin_ hold d/2 values (angle per pair, already scaled by any mscale). */
void ms_rope_interleaved(float *x, int d, const float *cos_, const float *sin_);
void ms_rope_halfsplit(float *x, int d, const float *cos_, const float *sin_);
/* Indices of the k largest values of x[n], largest first; ties -> lower index first. */
void ms_topk(const float *x, int n, int k, int *idx);
float ms_dot_f32(const float *a, const float *b, int n);

/* Single-query attention helpers, in table k's SIMD (ms_kern_ref: scalar):
 *   ms_rows_dot_f32  s[j] = K[j, :] . q for j < n (K: n rows of d floats, contiguous),
 *                    the table's dense f32 row kernel (the scores of cached keys);
 *   ms_axpy_f32      y[i] += a * x[i] for i < n (a weighted sum of cached values).
 * Deterministic for a table (no dependence on threads or on other rows). */
void ms_rows_dot_f32(const ms_kern *k, const float *K, int64_t n, int64_t d, const float *q, float *s);
void ms_axpy_f32(const ms_kern *k, float *y, float a, const float *x, int64_t n);

#endif

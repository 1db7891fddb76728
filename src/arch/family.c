/* family.c - small pieces every family file shares (declared in arch.h):
 * binding resident tensors (an f32 copy of a vector with a finiteness check, a
 * matrix view of a linear module), the step's linear (decode arithmetic per
 * row when exact, else GEMM), checking a step's
 * rows, the final norm + head, and the sigmoid router of DeepSeek-V3 and Step
 * (scores for the weights, scores + bias for the choice, optional group
 * limit). Keeping them here keeps each family file about its own model math. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "arch.h"
#include "util.h"

int ms_arch_bind_vec(const ms_model *m, const ms_resident *r, const char *name, int64_t n, float **cursor,
                     const float **out, ms_err *err)
{
    const ms_tensor *t;
    int rc = ms_model_vector(m, name, n, &t, err);
    if (rc < 0) return rc;
    float *dst = *cursor;
    ms_convert_to_f32(t->dtype, ms_resident_data(r, m, t), dst, (size_t)n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return ms_errf(err, EINVAL, "%s: tensor %s holds a non-finite value at %lld",
                           m->tt.files[t->file].path, t->name, (long long)i);
    *cursor += n;
    *out = dst;
    return 0;
}

int ms_arch_bind_mat(const ms_model *m, const ms_resident *r, const char *module, int64_t rows, int64_t cols,
                     ms_mat *out, ms_err *err)
{
    ms_linear l;
    int rc = ms_model_linear(m, module, 0, rows, cols, &l, err);
    if (rc < 0) return rc;
    *out = ms_linear_mat(&l, 0, ms_resident_data(r, m, l.w), ms_resident_data(r, m, l.scales),
                         ms_resident_data(r, m, l.biases));
    return 0;
}

void ms_arch_linear(const ms_fwd_env *env, const ms_mat *m, const float *X, int n, float *Y)
{
    ms_mat_apply(&env->compute, m, X, n, Y, env->exact);
}

int ms_arch_check_rows(const ms_batch *b, int batch, int n_seq, int ctx, int vocab, ms_err *err)
{
    if (b->n <= 0 || b->n > batch) return ms_errf(err, EINVAL, "step of %d rows (batch is %d)", b->n, batch);
    for (int t = 0; t < b->n; t++) {
        if (b->tokens[t] < 0 || b->tokens[t] >= vocab)
            return ms_errf(err, EINVAL, "token id %d is outside the vocabulary (0..%d)", b->tokens[t], vocab - 1);
        if (ms_arch_row_seq(b, t) < 0 || ms_arch_row_seq(b, t) >= n_seq)
            return ms_errf(err, EINVAL, "sequence %d of %d", ms_arch_row_seq(b, t), n_seq);
        if (b->pos[t] < 0 || b->pos[t] >= ctx)
            return ms_errf(err, ENOSPC, "context is full: position %d exceeds --ctx %d", b->pos[t], ctx);
        if (t > 0 && ms_arch_row_seq(b, t) == ms_arch_row_seq(b, t - 1) && b->pos[t] <= b->pos[t - 1])
            return ms_errf(err, EINVAL, "rows of a sequence must be in increasing position order");
    }
    return 0;
}

void ms_arch_head(const ms_fwd_env *env, const float *norm, const ms_mat *head, const ms_batch *b, const float *h,
                  float *x, float eps)
{
    int n = b->n, D = (int)head->cols, t0 = b->all_logits ? 0 : n - 1;
    for (int t = t0; t < n; t++) ms_rmsnorm(x + (size_t)(t - t0) * D, h + (size_t)t * D, norm, D, eps);
    ms_arch_linear(env, head, x, n - t0, b->logits);
}

void ms_arch_mtp_fuse(const ms_fwd_env *env, const ms_mat *embed, const float *enorm, const float *hnorm,
                      const ms_mat *eh_proj, const ms_batch *b, const float *hidden, float *x, float *cat, float *h,
                      float eps)
{
    const int n = b->n, D = (int)embed->cols;
    /* 1. [enorm(embed(x)) | hnorm(h)] per row */
    for (int t = 0; t < n; t++) {
        float *c = cat + (size_t)t * 2 * D;
        ms_mat_get_row(env->compute.kern, embed, b->tokens[t], x + (size_t)t * D);
        ms_rmsnorm(c, x + (size_t)t * D, enorm, D, eps);
        ms_rmsnorm(c + D, hidden + (size_t)t * D, hnorm, D, eps);
    }
    /* 2. the MTP block's residual stream */
    ms_arch_linear(env, eh_proj, cat, n, h);
}

void ms_route_sigmoid(const ms_sigmoid_router *r, const float *logits, const float *bias, int *ids, float *wts,
                      float *tmp)
{
    int E = r->E, K = r->K;
    float *sc = tmp, *sel = tmp + E;
    /* scores for the weights, scores + bias for the choice */
    for (int e = 0; e < E; e++) {
        sc[e] = 1.0f / (1.0f + expf(-logits[e]));
        sel[e] = sc[e] + (bias ? bias[e] : 0.0f);
    }
    /* group limit: keep the topk_group groups with the best sum of their top 2 */
    if (r->n_group > 1 && r->topk_group < r->n_group) {
        int G = r->n_group, per = E / G;
        float gs[1024];
        int keep[1024];
        for (int g = 0; g < G; g++) {
            int top2[2];
            ms_topk(sel + g * per, per, 2, top2);
            gs[g] = sel[g * per + top2[0]] + sel[g * per + top2[1]];
        }
        ms_topk(gs, G, r->topk_group, keep);
        bool kept[1024] = {0};
        for (int i = 0; i < r->topk_group; i++) kept[keep[i]] = true;
        for (int g = 0; g < G; g++)
            if (!kept[g])
                for (int e = g * per; e < (g + 1) * per; e++) sel[e] = -INFINITY;
    }
    /* top-k, weights from the unbiased scores */
    ms_topk(sel, E, K, ids);
    float sum = 0;
    for (int j = 0; j < K; j++) {
        wts[j] = sc[ids[j]];
        sum += wts[j];
    }
    if (r->norm) {
        float d = sum + 1e-20f;
        for (int j = 0; j < K; j++) wts[j] /= d;
    }
    for (int j = 0; j < K; j++) wts[j] *= (float)r->scale;
}

void ms_arch_route_sigmoid(const ms_fwd_env *env, const ms_sigmoid_router *r, const ms_mat *router, const float *bias,
                           const float *x, int n, float *rlog, float *tmp, int *ids, float *wts)
{
    ms_arch_linear(env, router, x, n, rlog);
    for (int t = 0; t < n; t++)
        ms_route_sigmoid(r, rlog + (size_t)t * r->E, bias, ids + (size_t)t * r->K, wts + (size_t)t * r->K, tmp);
}

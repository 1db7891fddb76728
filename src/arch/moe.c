/* moe.c - the MoE block (see moe.h).
 *
 * Steps of ms_moe_forward, for n tokens at one layer:
 *   1. route every token (family op); report each choice (traces)
 *   2. score the prediction made for this layer, if any
 *   3. group the (token, rank) pairs by expert (counting sort: deterministic)
 *      and list the distinct experts in the acquisition schedule's order
 *   4. per wave: acquire; during the first wave start the next-layer prefetch
 *      and compute the shared expert while reads run; then each expert as it
 *      becomes ready: gather its tokens, run its FFN, scatter to yk[token][rank];
 *      release
 *   5. combine in the router's order: routed sum, then the shared expert
 */
#include "moe.h"

#include <stdlib.h>
#include <string.h>

#include "schedule.h"
#include "util.h"

/* Every buffer of the MoE scratch: X(name, type, element count). One list
 * drives the struct, the allocation and the size report. */
#define MOE_BUFFERS(X)                                                                     \
    X(ids, int, B * K)                     /* [B][K] chosen experts, best first */        \
    X(wts, float, B * K)                   /* [B][K] their weights */                     \
    X(yk, float, B * K * D)                /* [B][K][D] output of each (token, rank) */   \
    X(xe, float, B * D)                    /* [B][D] gathered inputs of one expert */     \
    X(ye, float, B * D)                    /* [B][D] its outputs */                       \
    X(uniq, int, B * K)                    /* distinct experts of the pass, schedule order */ \
    X(cnt, int, E)                         /* [E] tokens per expert */                    \
    X(start, int, E + 1)                   /* [E+1] */                                    \
    X(list, int, B * K)                    /* (token*K + rank) grouped by expert */       \
    X(seen, uint8_t, E)                    /* [E] schedule scratch (all zero between calls) */ \
    X(pids, int, L * K)                    /* [L][K] experts predicted for each layer */  \
    X(pvalid, int, L)                      /* [L] a prediction is pending */              \
    X(ffn_scr, float, 2 * B * W + 64)      /* ms_ffn scratch for B tokens of the widest FFN */

struct ms_moe {
    ms_moe_dims d;
#define X(name, type, count) type *name;
    MOE_BUFFERS(X)
#undef X
};

#define MOE_DIMS(d)                                                                                   \
    size_t B = (size_t)MS_MAX(1, (d)->batch), K = (size_t)MS_MAX(1, (d)->K), D = (size_t)(d)->D;     \
    size_t E = (size_t)MS_MAX(1, (d)->E), L = (size_t)MS_MAX(1, (d)->n_layers);                      \
    size_t W = (size_t)MS_MAX(1, (d)->ffn_widest);                                                    \
    (void)B; (void)K; (void)D; (void)E; (void)L; (void)W

uint64_t ms_moe_bytes(const ms_moe_dims *d)
{
    MOE_DIMS(d);
    uint64_t total = 0;
#define X(name, type, count) total += (uint64_t)MS_MAX((size_t)(count), (size_t)1) * sizeof(type);
    MOE_BUFFERS(X)
#undef X
    return total;
}

void ms_moe_destroy(ms_moe *moe)
{
    if (!moe) return;
#define X(name, type, count) free(moe->name);
    MOE_BUFFERS(X)
#undef X
    free(moe);
}

int ms_moe_create(const ms_moe_dims *d, ms_moe **out, ms_err *err)
{
    ms_moe *moe = calloc(1, sizeof *moe);
    if (!moe) return ms_errf(err, ENOMEM, "out of memory");
    moe->d = *d;
    MOE_DIMS(d);
#define X(name, type, count)                                            \
    moe->name = calloc(MS_MAX((size_t)(count), (size_t)1), sizeof(type)); \
    if (!moe->name) goto oom;
    MOE_BUFFERS(X)
#undef X
    *out = moe;
    return 0;
oom:
    ms_moe_destroy(moe);
    return ms_errf(err, ENOMEM, "cannot allocate the MoE scratch for batch %d", d->batch);
}

float *ms_moe_ffn_scratch(ms_moe *moe) { return moe->ffn_scr; }

void ms_moe_prefetch(ms_moe *moe, const ms_fwd_env *env, const ms_moe_router *r, int layer)
{
    int K = moe->d.K;
    if (!env->prefetch || layer < 0 || layer >= moe->d.n_layers || moe->pvalid[layer] || !r->predict ||
        !env->experts.ops->prefetch)
        return;
    int *pid = moe->pids + (size_t)layer * K;
    if (r->predict(r->fam, env, layer, pid) != K) return;
    moe->pvalid[layer] = 1;
    if (env->on_predict) env->on_predict(env->on_predict_arg, layer, 0, pid, NULL, K);
    env->experts.ops->prefetch(env->experts.impl, layer, pid, K);
}

/* Next-layer prefetch (one token): the family's guess of layer+1's experts,
 * read behind this layer's demand reads. Called after this layer's first wave
 * is pinned, so a prefetch can never evict an expert this layer uses. */
static void prefetch_next(ms_moe *moe, const ms_fwd_env *env, const ms_moe_router *r, int layer)
{
    ms_moe_prefetch(moe, env, r, layer + 1);
}

/* Step 2: how many of the experts predicted for this layer it chose. */
static void score_prediction(ms_moe *moe, const ms_fwd_env *env, int layer, int n)
{
    if (!moe->pvalid[layer]) return;
    moe->pvalid[layer] = 0;
    if (n != 1 || !env->pred) return;
    int K = moe->d.K, correct = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) correct += moe->pids[(size_t)layer * K + i] == moe->ids[j];
    env->pred->predicted += (uint64_t)K;
    env->pred->correct += (uint64_t)correct;
}

int ms_moe_forward(ms_moe *moe, const ms_fwd_env *env, const ms_moe_router *r, const ms_moe_block *blk, int layer,
                   const float *x, const int *tokens, int n, float *out, ms_err *err)
{
    const ms_compute *cp = &env->compute;
    int E = moe->d.E, K = moe->d.K, D = moe->d.D;
    if (n < 1 || n > moe->d.batch) return ms_errf(err, EINVAL, "MoE block: %d tokens (batch is %d)", n, moe->d.batch);
    /* 1. route every token */
    int rc = r->route(r->fam, env, layer, x, tokens, n, moe->ids, moe->wts, err);
    if (rc < 0) return rc;
    for (int i = 0; i < n * K; i++)
        if (moe->ids[i] < 0 || moe->ids[i] >= E)
            return ms_errf(err, EINVAL, "layer %d: router chose expert %d (0..%d)", layer, moe->ids[i], E - 1);
    if (env->on_route)
        for (int t = 0; t < n; t++)
            env->on_route(env->on_route_arg, layer, t, moe->ids + (size_t)t * K, moe->wts + (size_t)t * K, K);
    /* 2. score the prediction made for this layer (decode) */
    score_prediction(moe, env, layer, n);
    /* 3. group (token, rank) pairs by expert; distinct experts in schedule order */
    memset(moe->cnt, 0, (size_t)E * sizeof *moe->cnt);
    for (int i = 0; i < n * K; i++) moe->cnt[moe->ids[i]]++;
    moe->start[0] = 0;
    for (int e = 0; e < E; e++) moe->start[e + 1] = moe->start[e] + moe->cnt[e];
    memset(moe->cnt, 0, (size_t)E * sizeof *moe->cnt);
    for (int i = 0; i < n * K; i++) {
        int e = moe->ids[i];
        moe->list[moe->start[e] + moe->cnt[e]++] = i;
    }
    int nu = ms_sched_union(moe->ids, n * K, moe->seen, moe->uniq);
    /* 4. experts in waves that the source can hold */
    const ms_expert_src *src = &env->experts;
    int wave = src->ops->max_acquire(src->impl);
    if (wave < 1) return ms_errf(err, EINVAL, "expert source cannot hold any expert");
    bool shared_done = !blk->sh_gate;
    for (int w0 = 0; w0 < nu; w0 += wave) {
        int nw = MS_MIN(wave, nu - w0);
        if ((rc = src->ops->acquire(src->impl, layer, moe->uniq + w0, nw, err)) < 0) return rc;
        if (w0 == 0 && env->prefetch && n == 1) prefetch_next(moe, env, r, layer);
        if (!shared_done) { /* overlaps the first wave's reads */
            ms_ffn_act(cp, blk->sh_gate, blk->sh_up, blk->sh_down, x, n, out, moe->ffn_scr, &blk->act_shared,
                       env->exact);
            shared_done = true;
        }
        for (int i = 0; i < nw; i++) {
            ms_expert_ptrs ep;
            if ((rc = src->ops->next(src->impl, &ep, err)) < 0) {
                src->ops->release(src->impl);
                return rc;
            }
            int e = moe->uniq[w0 + ep.pos];
            ms_mat g = ms_expert_mat(blk->experts, MS_PROJ_GATE, &ep);
            ms_mat u = ms_expert_mat(blk->experts, MS_PROJ_UP, &ep);
            ms_mat d = ms_expert_mat(blk->experts, MS_PROJ_DOWN, &ep);
            int ne = moe->start[e + 1] - moe->start[e];
            const int *lst = moe->list + moe->start[e];
            for (int q = 0; q < ne; q++)
                memcpy(moe->xe + (size_t)q * D, x + (size_t)(lst[q] / K) * D, (size_t)D * sizeof(float));
            ms_ffn_act(cp, &g, &u, &d, moe->xe, ne, moe->ye, moe->ffn_scr, &blk->act_routed, env->exact);
            for (int q = 0; q < ne; q++)
                memcpy(moe->yk + (size_t)lst[q] * D, moe->ye + (size_t)q * D, (size_t)D * sizeof(float));
        }
        src->ops->release(src->impl);
    }
    if (!blk->sh_gate) memset(out, 0, (size_t)n * D * sizeof(float));
    /* 5. combine in the router's order: routed sum, then the shared expert */
    for (int t = 0; t < n; t++) {
        float *o = out + (size_t)t * D;
        const float *w = moe->wts + (size_t)t * K;
        const float *y = moe->yk + (size_t)t * K * D;
        for (int i = 0; i < D; i++) {
            float acc = 0.0f;
            for (int j = 0; j < K; j++) acc += w[j] * y[(size_t)j * D + i];
            o[i] += acc;
        }
    }
    return 0;
}

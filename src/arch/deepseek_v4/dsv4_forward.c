/* dsv4_forward.c - DeepSeek-V4's state and forward pass, all in f32:
 *
 *   X[HC][D] = embed[token] in every stream
 *   for each layer, for f in (attention, MoE):
 *       pre, post, C = mixer(X)                          manifold-constrained hyper-connection
 *       x  = sum_j pre_j X_j
 *       y  = f(rmsnorm_w(x))                             dsv4_attn.c; moe.c with this router
 *       X'_k = post_k y + sum_j C[j][k] X_j
 *   h = sum_j pre_j X_j  with hc_head's pre
 *   logits = lm_head(rmsnorm(h) * norm)
 *
 * Mixer (per token): m = fn . flat(X) / rms(flat(X)) (no weight);
 * pre = sigmoid(m[0:HC] s0 + b) + eps; post = 2 sigmoid(m[HC:2HC] s1 + b);
 * C = row-softmax(m[2HC:] s2 + b) + eps, then divided by its column sums, then
 * hc_sinkhorn_iters - 1 times by row sums and column sums (each + eps).
 *
 * Router (this family's ms_moe_router): s = sqrt(softplus(gate x)); the first
 * num_hash_layers layers take tid2eid[token], the others the top-k of
 * s + e_score_correction_bias; weights are the unbiased s of the chosen
 * experts, normalized (norm_topk_prob) and scaled by routed_scaling_factor.
 * Routed and shared experts use SwiGLU clamped before silu (swiglu_limit).
 * The predict op (next-layer prefetch) is exact for hash layers and, for the
 * others, routes the current streams mixed by the next layer's hc_ffn. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsv4.h"
#include "util.h"

/* ---- state ---- */

/* Sizes the buffer list needs (names used by DSV4_BUFFERS). */
#define DSV4_DIMS(c, d, ctx_, batch_, nseq_, nth_, kvbf_)                                                           \
    size_t L = (size_t)(c)->n_layers, B = (size_t)(batch_), NTH = (size_t)(nth_), CTX = (size_t)(ctx_);          \
    size_t S = (size_t)(nseq_), Wn = (size_t)(d)->window;                                                           \
    size_t F = (kvbf_) ? 0 : 1, BF = (kvbf_) ? 1 : 0;                                                               \
    size_t D = (size_t)(c)->hidden_size, HC = (size_t)(d)->hc_mult, NM = (2 + HC) * HC;                             \
    size_t H = (size_t)(d)->n_heads, hd = (size_t)(d)->head_dim, RH = (size_t)(d)->rope_dim / 2;                    \
    size_t QL = (size_t)(d)->q_lora_rank, G = (size_t)(d)->o_groups, R = (size_t)(d)->o_lora_rank;                   \
    size_t GW = H / G * hd, IH = (size_t)(d)->index_heads, ID = (size_t)(d)->index_dim;                             \
    size_t TK = (size_t)(d)->index_topk, ED = MS_MAX(hd, ID), CW = 2 * ED;                                          \
    size_t E = (size_t)(c)->n_routed_experts, K = (size_t)(c)->n_experts_per_tok;                                   \
    size_t N_RING = 0, N_POOL = 0, N_IKEY = 0, N_ACC = 0, N_ATAG = 0, NP4 = 0, MAXK = 0;                            \
    for (size_t l_ = 0; l_ < L; l_++) {                                                                             \
        size_t r_ = (size_t)(d)->ratio[l_];                                                                         \
        N_RING += (size_t)(d)->window * hd;                                                                         \
        if (!r_) continue;                                                                                          \
        N_POOL += CTX / r_ * hd;                                                                                    \
        N_ACC += 2 * (size_t)dsv4_acc_rows((int)r_) * hd * (r_ == 4 ? 2 : 1);                                       \
        N_ATAG += (size_t)dsv4_acc_rows((int)r_);                                                                   \
        MAXK = MS_MAX(MAXK, r_ == 4 ? MS_MIN(TK, CTX / 4) : CTX / r_);                                              \
        if (r_ == 4) {                                                                                              \
            N_IKEY += CTX / 4 * ID;                                                                                 \
            N_ACC += 2 * (size_t)dsv4_acc_rows(4) * 2 * ID;                                                         \
            NP4 = CTX / 4;                                                                                          \
        }                                                                                                           \
    }                                                                                                               \
    size_t TLS = MS_ALIGN_UP((size_t)(d)->window + MAXK + 64, 16);                                                  \
    (void)F; (void)BF; (void)GW; (void)CW; (void)TLS; (void)NP4; (void)E; (void)K; (void)S; (void)Wn

/* The MoE scratch: every layer is MoE; the widest FFN is the shared expert's. */
static ms_moe_dims moe_dims(const ms_config *c, int batch)
{
    int widest = c->moe_intermediate_size * MS_MAX(1, c->n_shared_experts);
    return (ms_moe_dims){.n_layers = c->n_layers, .D = c->hidden_size, .E = c->n_routed_experts,
                         .K = c->n_experts_per_tok, .batch = batch, .ffn_widest = widest};
}

uint64_t dsv4_state_bytes(const ms_config *c, int ctx, int batch, int n_seq, int nthreads, bool kv_bf16,
                          uint64_t *kv_bytes)
{
    const ms_dsv4_config *d = c->arch;
    DSV4_DIMS(c, d, ctx, batch, MS_MAX(1, n_seq), nthreads > 0 ? nthreads : 1, kv_bf16);
    uint64_t total = 0;
#define X(name, type, count) total += (uint64_t)MS_MAX((size_t)(count), (size_t)1) * sizeof(type);
    DSV4_BUFFERS(X)
#undef X
    ms_moe_dims md = moe_dims(c, batch);
    total += ms_moe_bytes(&md);
    if (kv_bytes) {
        uint64_t part[4];
        dsv4_cache_parts(c, ctx, kv_bf16, &part[0], &part[1], &part[2], &part[3]);
        *kv_bytes = S * (part[0] + part[1] + part[2] + part[3]);
    }
    return total;
}

void dsv4_state_destroy(void *sp)
{
    dsv4_state *s = sp;
    if (!s) return;
#define X(name, type, count) free(s->name);
    DSV4_BUFFERS(X)
#undef X
    ms_moe_destroy(s->moe);
    free(s);
}

static int dsv4_route(void *fam, const ms_fwd_env *env, int layer, const float *x, const int *tokens, int n, int *ids,
                      float *wts, ms_err *err);
static int dsv4_predict(void *fam, const ms_fwd_env *env, int layer, int *ids);

int dsv4_state_create(const void *wp, int ctx, int batch, int n_seq, int nthreads, bool kv_bf16, void **out,
                      uint64_t *bytes, ms_err *err)
{
    const dsv4_weights *w = wp;
    const ms_config *c = w->c;
    const ms_dsv4_config *d = w->d;
    if (ctx <= 0 || batch <= 0 || n_seq <= 0)
        return ms_errf(err, EINVAL, "context, batch and sequences must be positive");
    dsv4_state *s = calloc(1, sizeof *s);
    if (!s) return ms_errf(err, ENOMEM, "out of memory");
    s->w = w;
    s->ctx = ctx;
    s->batch = batch;
    s->n_seq = n_seq;
    s->nth = nthreads > 0 ? nthreads : 1;
    s->kv_bf16 = kv_bf16;
    s->router = (ms_moe_router){.fam = s, .route = dsv4_route, .predict = dsv4_predict};
    DSV4_DIMS(c, d, ctx, batch, n_seq, s->nth, kv_bf16);
    s->tls_stride = TLS;
    s->seq_ring = N_RING;
    s->seq_pool = N_POOL;
    s->seq_ikey = N_IKEY;
    s->seq_acc = N_ACC;
    s->seq_atag = N_ATAG;
#define X(name, type, count)                                                                                        \
    if (!(s->name = calloc(MS_MAX((size_t)(count), (size_t)1), sizeof(type)))) goto oom;
    DSV4_BUFFERS(X)
#undef X
    /* per-layer offsets into pool, ikey, the open-window buffers and their tags */
    uint64_t po = 0, io = 0, ao = 0, to = 0;
    for (int l = 0; l < c->n_layers; l++) {
        int r = d->ratio[l];
        DSV4_POOL_OFF(s, l) = po;
        DSV4_IKEY_OFF(s, l) = io;
        DSV4_ACC_OFF(s, l) = ao;
        DSV4_ATAG_OFF(s, l) = to;
        if (r > 0) {
            po += (uint64_t)(ctx / r) * hd;
            ao += 2 * (uint64_t)dsv4_acc_rows(r) * hd * (r == 4 ? 2 : 1);
            to += (uint64_t)dsv4_acc_rows(r);
        }
        DSV4_IACC_OFF(s, l) = ao;
        if (r == 4) {
            io += (uint64_t)(ctx / 4) * ID;
            ao += 2 * (uint64_t)dsv4_acc_rows(4) * 2 * ID;
        }
    }
    for (size_t i = 0; i < S * L * Wn; i++) s->rtag[i] = -1; /* nothing held yet */
    for (size_t i = 0; i < S * N_ATAG; i++) s->atag[i] = -1;
    ms_moe_dims md = moe_dims(c, batch);
    int rc = ms_moe_create(&md, &s->moe, err);
    if (rc < 0) {
        dsv4_state_destroy(s);
        return rc;
    }
    *out = s;
    if (bytes) *bytes = dsv4_state_bytes(c, ctx, batch, n_seq, s->nth, kv_bf16, NULL);
    return 0;
oom:
    dsv4_state_destroy(s);
    return ms_errf(err, ENOMEM, "cannot allocate the caches / scratch for ctx %d, batch %d", ctx, batch);
}

/* ---- hyper-connections ---- */

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* pre[HC], post[HC] (when post), C[HC][HC] (when comb) of one token from its
 * streams xs[HC*D] and the raw mixes m[rows] = fn . xs. */
static void hc_split(const dsv4_weights *w, const dsv4_hc *hc, const float *xs, float *m, float *pre, float *post,
                     float *comb)
{
    int HC = w->HC, n = HC * w->D;
    float eps = (float)w->d->hc_eps;
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)xs[i] * xs[i];
    float inv = (float)(1.0 / sqrt(ss / n + w->c->rms_norm_eps));
    for (int j = 0; j < HC; j++) pre[j] = sigmoidf(m[j] * inv * hc->scale[0] + hc->base[j]) + eps;
    if (!post) return;
    for (int j = 0; j < HC; j++) post[j] = 2.0f * sigmoidf(m[HC + j] * inv * hc->scale[1] + hc->base[HC + j]);
    /* C: row softmax + eps, column-normalized, then Sinkhorn */
    for (int j = 0; j < HC; j++) {
        float *row = comb + (size_t)j * HC;
        for (int k = 0; k < HC; k++) row[k] = m[2 * HC + j * HC + k] * inv * hc->scale[2] + hc->base[2 * HC + j * HC + k];
        ms_softmax(row, HC);
        for (int k = 0; k < HC; k++) row[k] += eps;
    }
    for (int it = 0; it < w->d->hc_iters; it++) {
        if (it > 0)
            for (int j = 0; j < HC; j++) {
                float sum = 0;
                for (int k = 0; k < HC; k++) sum += comb[j * HC + k];
                for (int k = 0; k < HC; k++) comb[j * HC + k] /= sum + eps;
            }
        for (int k = 0; k < HC; k++) {
            float sum = 0;
            for (int j = 0; j < HC; j++) sum += comb[j * HC + k];
            for (int j = 0; j < HC; j++) comb[j * HC + k] /= sum + eps;
        }
    }
}

/* x[D] = sum_j pre_j X_j */
static void hc_combine(int HC, int D, const float *xs, const float *pre, float *x)
{
    for (int i = 0; i < D; i++) {
        float a = 0;
        for (int j = 0; j < HC; j++) a += pre[j] * xs[(size_t)j * D + i];
        x[i] = a;
    }
}

/* Before a sub-layer: mixes for n tokens, then x = sum_j pre_j X_j. */
static void hc_pre(const dsv4_weights *w, dsv4_state *s, const ms_fwd_env *env, const dsv4_hc *hc, int n)
{
    int HC = w->HC, D = w->D, NM = w->NM;
    ms_arch_linear(env, &hc->fn, s->X, n, s->mix); /* [n][NM] */
    for (int t = 0; t < n; t++) {
        const float *xs = s->X + (size_t)t * HC * D;
        hc_split(w, hc, xs, s->mix + (size_t)t * NM, s->pre + (size_t)t * HC, s->post + (size_t)t * HC,
                 s->comb + (size_t)t * HC * HC);
        hc_combine(HC, D, xs, s->pre + (size_t)t * HC, s->x + (size_t)t * D);
    }
}

/* After a sub-layer with output y: X'_k = post_k y + sum_j C[j][k] X_j. */
static void hc_post(const dsv4_weights *w, dsv4_state *s, int n)
{
    int HC = w->HC, D = w->D;
    for (int t = 0; t < n; t++) {
        float *xs = s->X + (size_t)t * HC * D;
        const float *y = s->y + (size_t)t * D, *post = s->post + (size_t)t * HC, *C = s->comb + (size_t)t * HC * HC;
        for (int k = 0; k < HC; k++)
            for (int i = 0; i < D; i++) {
                float a = post[k] * y[i];
                for (int j = 0; j < HC; j++) a += C[j * HC + k] * xs[(size_t)j * D + i];
                s->xt[(size_t)k * D + i] = a;
            }
        memcpy(xs, s->xt, (size_t)HC * D * sizeof(float));
    }
}

/* ---- router ---- */

static inline float sqrt_softplus(float x) { return sqrtf(x > 20.0f ? x : log1pf(expf(x))); }

/* One token: ids[K] and weights[K] from router logits lg[E]. */
static void route_token(const dsv4_weights *w, const dsv4_layer *ly, const float *lg, int token, int *ids, float *wts,
                        float *scr /* [2E] */)
{
    int E = w->E, K = w->K;
    float *sc = scr, *sel = scr + E;
    for (int e = 0; e < E; e++) sc[e] = sqrt_softplus(lg[e]);
    if (ly->hash) {
        for (int j = 0; j < K; j++) ids[j] = ly->tid2eid[(size_t)token * K + j];
    } else {
        for (int e = 0; e < E; e++) sel[e] = sc[e] + ly->bias[e];
        ms_topk(sel, E, K, ids);
    }
    float sum = 0;
    for (int j = 0; j < K; j++) sum += wts[j] = sc[ids[j]];
    float scale = (float)w->d->routed_scaling_factor;
    for (int j = 0; j < K; j++) wts[j] = (w->d->norm_topk_prob ? wts[j] / sum : wts[j]) * scale;
}

/* The router op (moe.h). */
static int dsv4_route(void *fam, const ms_fwd_env *env, int layer, const float *x, const int *tokens, int n, int *ids,
                      float *wts, ms_err *err)
{
    dsv4_state *s = fam;
    const dsv4_weights *w = s->w;
    if (layer < 0 || layer >= w->c->n_layers) return ms_errf(err, EINVAL, "layer %d is not a MoE layer", layer);
    const dsv4_layer *ly = &w->layers[layer];
    int E = w->E, K = w->K;
    ms_arch_linear(env, &ly->gate, x, n, s->rlog);
    for (int t = 0; t < n; t++)
        route_token(w, ly, s->rlog + (size_t)t * E, tokens[t], ids + (size_t)t * K, wts + (size_t)t * K, s->rsc);
    return 0;
}

/* The predict op (moe.h), decode: hash layers know their experts from the
 * token; other layers route the current streams as their hc_ffn and ffn_norm
 * would see them, up to this layer's MoE output. */
static int dsv4_predict(void *fam, const ms_fwd_env *env, int layer, int *ids)
{
    dsv4_state *s = fam;
    const dsv4_weights *w = s->w;
    if (layer < 0 || layer >= w->c->n_layers) return 0;
    const dsv4_layer *ly = &w->layers[layer];
    if (ly->hash) {
        memcpy(ids, ly->tid2eid + (size_t)s->cur_token * w->K, (size_t)w->K * sizeof *ids);
        return w->K;
    }
    float *m = s->pmix, *pre = s->pmix + w->NM, *x = s->px, *xn = s->px + w->D;
    const ms_compute *cp = &env->compute;
    ms_matvec(cp, &ly->hc_ffn.fn, s->X, m);
    hc_split(w, &ly->hc_ffn, s->X, m, pre, NULL, NULL);
    hc_combine(w->HC, w->D, s->X, pre, x);
    ms_rmsnorm(xn, x, ly->ffn_norm, w->D, (float)w->c->rms_norm_eps);
    ms_matvec(cp, &ly->gate, xn, s->rlog);
    route_token(w, ly, s->rlog, s->cur_token, ids, s->pwt, s->rsc);
    return w->K;
}

/* ---- forward ---- */

/* The forward pass over one step's rows (see ms_batch): each row is a token
 * of its own sequence at its own position. */
int dsv4_forward(const void *wp, void *sp, const ms_fwd_env *env, const ms_batch *b, ms_err *err)
{
    const dsv4_weights *w = wp;
    dsv4_state *s = sp;
    const ms_config *c = w->c;
    const ms_compute *cp = &env->compute;
    int n = b->n, D = w->D, HC = w->HC, RH = w->rd / 2, rc;
    float eps = (float)c->rms_norm_eps;
    if ((rc = ms_arch_check_rows(b, s->batch, s->n_seq, s->ctx, c->vocab_size, err)) < 0) return rc;
    for (int t = 0; t < n; t++) /* each row's first row of its sequence in this step */
        s->run0[t] = t > 0 && ms_arch_row_seq(b, t) == ms_arch_row_seq(b, t - 1) ? s->run0[t - 1] : t;
    if ((rc = dsv4_check_history(s, b, err)) < 0) return rc;
    /* 1. embeddings, copied into every stream; RoPE tables of the rows' positions */
    for (int t = 0; t < n; t++) {
        float *xs = s->X + (size_t)t * HC * D;
        ms_mat_get_row(cp->kern, &w->embed, b->tokens[t], xs);
        for (int j = 1; j < HC; j++) memcpy(xs + (size_t)j * D, xs, (size_t)D * sizeof(float));
    }
    s->cur_token = b->tokens[n - 1];
    /* decode: the first layer routes by token, so its experts are known now;
     * their reads overlap the first attention (later layers: next-layer prefetch) */
    if (n == 1 && w->layers[0].hash) ms_moe_prefetch(s->moe, env, &s->router, 0);
    for (int kind = 0; kind < 2; kind++)
        for (int t = 0; t < n; t++)
            for (int i = 0; i < RH; i++) {
                double a = (double)b->pos[t] * w->inv_freq[kind][i];
                s->cs[((size_t)kind * s->batch + t) * RH + i] = (float)cos(a);
                s->sn[((size_t)kind * s->batch + t) * RH + i] = (float)sin(a);
            }
    for (int l = 0; l < c->n_layers; l++) {
        const dsv4_layer *ly = &w->layers[l];
        /* 2. attention: mix the streams in, attend, mix the output back */
        hc_pre(w, s, env, &ly->hc_attn, n);
        for (int t = 0; t < n; t++) ms_rmsnorm(s->xn + (size_t)t * D, s->x + (size_t)t * D, ly->attn_norm, D, eps);
        dsv4_attention(w, s, env, l, b);
        hc_post(w, s, n);
        /* 3. MoE: the same around the routed + shared experts */
        hc_pre(w, s, env, &ly->hc_ffn, n);
        for (int t = 0; t < n; t++) ms_rmsnorm(s->xn + (size_t)t * D, s->x + (size_t)t * D, ly->ffn_norm, D, eps);
        if ((rc = ms_moe_forward(s->moe, env, &s->router, &ly->blk, l, s->xn, b->tokens, n, s->y, err)) < 0)
            return rc;
        hc_post(w, s, n);
    }
    /* 4. head: the streams mixed by hc_head (the rows whose output is
     *    wanted), final norm, lm_head */
    int t0 = b->hidden || b->all_logits ? 0 : n - 1, nl = n - t0;
    if (!b->hidden && !b->logits) return 0;
    ms_arch_linear(env, &w->hc_head.fn, s->X + (size_t)t0 * HC * D, nl, s->mix);
    for (int t = t0; t < n; t++) {
        const float *xs = s->X + (size_t)t * HC * D;
        float *pre = s->pre + (size_t)(t - t0) * HC;
        hc_split(w, &w->hc_head, xs, s->mix + (size_t)(t - t0) * HC, pre, NULL, NULL);
        hc_combine(HC, D, xs, pre, s->x + (size_t)t * D);
    }
    if (b->hidden)
        for (int t = 0; t < n; t++)
            ms_rmsnorm(b->hidden + (size_t)t * D, s->x + (size_t)t * D, w->final_norm, D, eps);
    if (b->logits) ms_arch_head(env, w->final_norm, &w->lm_head, b, s->x, s->xn, eps);
    return 0;
}

/* dsv4_attn.c - DeepSeek-V4 attention for the rows of one step (one layer);
 * a row is a token at position p of its sequence, whose caches it reads:
 *
 *   qr  = q_norm(wq_a x)                                   [q_lora]
 *   q_h = rope(rmsnorm_noweight((wq_b qr)_h))              [H][hd], last rd dims rotated at p
 *   kv  = rope(kv_norm(wkv x))                             [hd], key = value
 *   compressor (ratio r > 0): each complete window of r tokens pools into one
 *     entry: per channel softmax over the window of (wgate x + ape[p % r])
 *     weighting wkv x; ratio 4 overlaps (2d channels: the previous window's
 *     first d, this window's last d); then its norm and RoPE at the window's
 *     first position (compressed base + YaRN)
 *   indexer (ratio 4): its own compressor makes index keys k_i; for query p
 *     score_i = sum_h w_h relu(q_I,h . k_i) over the visible i < (p+1)/4,
 *     w = weights_proj(x) / sqrt(ID * IH), q_I = rope(indexer.wq_b qr); the top
 *     index_topk entries (all of them when that many or fewer are visible)
 *   keys of query p: the window max(0, p-W+1)..p, then the pooled entries
 *     (ratio 4: the indexer's; other ratios: all i < (p+1)/r)
 *   o_h = sum_j softmax_sink(q_h . k_j / sqrt(hd))_j k_j   (exp(sink_h) joins the
 *     denominator only); its last rd dims rotated back by -p
 *   y   = wo_b concat_g(wo_a[g] concat(o_h, h in group g))
 *
 * Caches (dsv4.h, one set per sequence): the step's kv stays in scratch while
 * the step attends (a row reads its sequence's earlier rows of the step from
 * there, older positions from the ring), then each sequence's last W rows go
 * into its ring. Pooled entries are written as windows complete, so a query
 * sees the entry its own token completes. Every (row, head) is one task with
 * a fixed summation order, and every linear runs through ms_arch_linear:
 * results do not depend on threads, chunking or (exact steps) on the other
 * rows of the step. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsv4.h"
#include "util.h"

/* ---- cache rows: f32, or bf16 with --kv bf16 ---- */

typedef struct rows {
    float *f;
    uint16_t *h;
    int dim;
} rows;

static inline const void *row_at(const rows *r, size_t i)
{
    return r->h ? (const void *)(r->h + i * (size_t)r->dim) : (const void *)(r->f + i * (size_t)r->dim);
}

/* Store src as row i (rounded to bf16 in a bf16 cache; src then holds the
 * rounded values, so whoever reads src sees what the cache holds). */
static void row_put(const rows *r, size_t i, float *src)
{
    if (r->h) {
        uint16_t *d = r->h + i * (size_t)r->dim;
        for (int c = 0; c < r->dim; c++) {
            d[c] = ms_f32_to_bf16(src[c]);
            src[c] = ms_bf16_to_f32(d[c]);
        }
    } else {
        memcpy(r->f + i * (size_t)r->dim, src, (size_t)r->dim * sizeof(float));
    }
}

static inline float dot_row(const float *q, const void *k, int n, bool bf16)
{
    if (!bf16) return ms_dot_f32(q, k, n);
    const uint16_t *h = k;
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += q[i + j] * ms_bf16_to_f32(h[i + j]);
    for (; i < n; i++) s[i & 7] += q[i] * ms_bf16_to_f32(h[i]);
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

/* o += a * v (8 lanes, so that the compiler vectorizes it). */
static inline void axpy_row(float *restrict o, float a, const void *restrict v, int n, bool bf16)
{
    int i = 0;
    if (!bf16) {
        const float *restrict f = v;
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++) o[i + j] += a * f[i + j];
        for (; i < n; i++) o[i] += a * f[i];
    } else {
        const uint16_t *restrict h = v;
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++) o[i + j] += a * ms_bf16_to_f32(h[i + j]);
        for (; i < n; i++) o[i] += a * ms_bf16_to_f32(h[i]);
    }
}

/* Sequence seq's caches at layer l as row stores. */
static rows ring_rows(const dsv4_weights *w, const dsv4_state *s, int seq, int l)
{
    size_t off = (size_t)seq * s->seq_ring + (size_t)l * w->W * w->hd;
    return s->kv_bf16 ? (rows){NULL, s->ring16 + off, w->hd} : (rows){s->ring + off, NULL, w->hd};
}

static rows pool_rows(const dsv4_weights *w, const dsv4_state *s, int seq, int l)
{
    size_t off = (size_t)seq * s->seq_pool + DSV4_POOL_OFF(s, l);
    return s->kv_bf16 ? (rows){NULL, s->pool16 + off, w->hd} : (rows){s->pool + off, NULL, w->hd};
}

static rows ikey_rows(const dsv4_weights *w, const dsv4_state *s, int seq, int l)
{
    size_t off = (size_t)seq * s->seq_ikey + DSV4_IKEY_OFF(s, l);
    return s->kv_bf16 ? (rows){NULL, s->ikey16 + off, w->ID} : (rows){s->ikey + off, NULL, w->ID};
}

/* Tags of sequence seq: its ring slots at layer l, its open-window rows at l. */
static int *ring_tags(const dsv4_state *s, int seq, int l)
{
    return s->rtag + ((size_t)seq * s->w->c->n_layers + (size_t)l) * s->w->W;
}

static int *acc_tags(const dsv4_state *s, int seq, int l)
{
    return s->atag + (size_t)seq * s->seq_atag + DSV4_ATAG_OFF(s, l);
}

/* ---- what a step reads from earlier steps ---- */

int dsv4_check_history(const dsv4_state *s, const ms_batch *b, ms_err *err)
{
    const dsv4_weights *w = s->w;
    for (int t = 0; t < b->n; t++) {
        int seq = ms_arch_row_seq(b, t), p = b->pos[t];
        if (s->run0[t] != t) {
            if (p != b->pos[t - 1] + 1)
                return ms_errf(err, EINVAL, "deepseek_v4: the rows of sequence %d in one step must be consecutive "
                               "positions (%d follows %d)", seq, p, b->pos[t - 1]);
            continue;
        }
        /* the first row of a sequence's run reads the earlier positions of its
         * window from the ring and of its open pooling window(s) from acc;
         * the run's later rows read the same or the run's own rows */
        for (int l = 0; l < w->c->n_layers; l++) {
            const int *rt = ring_tags(s, seq, l);
            for (int j = MS_MAX(0, p - w->W + 1); j < p; j++)
                if (rt[j % w->W] != j) goto lost;
            int r = w->layers[l].ratio;
            if (!r) continue;
            const int *at = acc_tags(s, seq, l), nrow = dsv4_acc_rows(r);
            for (int j = MS_MAX(0, (p / r - (r == 4 ? 1 : 0)) * r); j < p; j++)
                if (at[j % nrow] != j) goto lost;
            continue;
        lost:
            return ms_errf(err, EINVAL, "deepseek_v4: the caches of sequence %d no longer hold the positions before "
                           "%d that it reads (it went back further than the sliding window and the open pooling "
                           "windows keep)", seq, p);
        }
    }
    return 0;
}

/* x[rd] rotated by -angle (the inverse of ms_rope_interleaved). */
static void rope_inverse(float *x, int rd, const float *cs, const float *sn)
{
    for (int i = 0; i < rd / 2; i++) {
        float a = x[2 * i], b = x[2 * i + 1], c = cs[i], s = sn[i];
        x[2 * i] = a * c + b * s;
        x[2 * i + 1] = -a * s + b * c;
    }
}

/* cos/sin of one position with the compressed-layer frequencies. */
static void rope_at(const dsv4_weights *w, int64_t pos, float *cs, float *sn)
{
    for (int i = 0; i < w->rd / 2; i++) {
        double a = (double)pos * w->inv_freq[1][i];
        cs[i] = (float)cos(a);
        sn[i] = (float)sin(a);
    }
}

/* ---- compressor ---- */

/* Pooled entry i of compressor c from its open-window rows (kv, score:
 * [rows][width]) into out[d]. */
static void pool_entry(const dsv4_comp *c, const float *kv, const float *sc, int64_t i, float *out)
{
    int r = c->ratio, d = c->d, W = c->width;
    int cur = c->overlap ? (int)(i % 2) * r : 0, prev = c->overlap ? (int)((i + 1) % 2) * r : 0;
    bool has_prev = c->overlap && i > 0;
    int off = c->overlap ? d : 0; /* this window's channels */
    for (int ch = 0; ch < d; ch++) {
        float mx = -INFINITY;
        if (has_prev)
            for (int j = 0; j < r; j++) mx = fmaxf(mx, sc[(size_t)(prev + j) * W + ch]);
        for (int j = 0; j < r; j++) mx = fmaxf(mx, sc[(size_t)(cur + j) * W + off + ch]);
        double sum = 0, acc = 0;
        if (has_prev)
            for (int j = 0; j < r; j++) {
                float e = expf(sc[(size_t)(prev + j) * W + ch] - mx);
                sum += e;
                acc += (double)e * kv[(size_t)(prev + j) * W + ch];
            }
        for (int j = 0; j < r; j++) {
            float e = expf(sc[(size_t)(cur + j) * W + off + ch] - mx);
            sum += e;
            acc += (double)e * kv[(size_t)(cur + j) * W + off + ch];
        }
        out[ch] = (float)(acc / sum);
    }
}

/* Feed the step's rows to compressor c of layer l (indexer: the indexer's
 * compressor), each into its sequence's open windows; every window that
 * completes becomes a pooled entry in that sequence's pooled rows (index keys
 * for the indexer's). */
static void compress(const dsv4_weights *w, dsv4_state *s, const ms_fwd_env *env, const dsv4_comp *c, int l,
                     bool indexer, const ms_batch *b)
{
    int r = c->ratio, W = c->width, nrow = dsv4_acc_rows(r), RH = w->rd / 2, n = b->n;
    float *ent = s->ent, *cs = s->rot, *sn = s->rot + RH;
    /* 1. projections [n][width] */
    ms_arch_linear(env, &c->wkv, s->xn, n, s->ckv);
    ms_arch_linear(env, &c->wgate, s->xn, n, s->csc);
    for (int t = 0; t < n; t++) {
        int seq = ms_arch_row_seq(b, t);
        int64_t p = b->pos[t];
        float *acc = s->acc + (size_t)seq * s->seq_acc + (indexer ? DSV4_IACC_OFF(s, l) : DSV4_ACC_OFF(s, l));
        float *akv = acc, *asc = acc + (size_t)nrow * W;
        rows cache = indexer ? ikey_rows(w, s, seq, l) : pool_rows(w, s, seq, l);
        /* 2. the token joins its window: kv and score (+ ape[p % r]) */
        size_t slot = (size_t)(p % nrow);
        const float *ape = c->ape + (size_t)(p % r) * W;
        memcpy(akv + slot * W, s->ckv + (size_t)t * W, (size_t)W * sizeof(float));
        for (int i = 0; i < W; i++) asc[slot * W + i] = s->csc[(size_t)t * W + i] + ape[i];
        if (!indexer) acc_tags(s, seq, l)[slot] = (int)p; /* the indexer's rows hold the same positions */
        if ((p + 1) % r) continue;
        /* 3. a complete window: pool, norm, rotate at its first position */
        int64_t e = (p + 1) / r - 1;
        pool_entry(c, akv, asc, e, ent);
        ms_rmsnorm(ent, ent, c->norm, c->d, (float)w->c->rms_norm_eps);
        rope_at(w, e * r, cs, sn);
        ms_rope_interleaved(ent + c->d - w->rd, w->rd, cs, sn);
        row_put(&cache, (size_t)e, ent);
    }
}

/* ---- indexer ---- */

/* Choose each row's pooled entries (sel/nsel) at a ratio-4 layer. */
static void indexer(const dsv4_weights *w, dsv4_state *s, const ms_fwd_env *env, const dsv4_layer *ly, int l,
                    const ms_batch *b)
{
    const ms_compute *cp = &env->compute;
    int IH = w->IH, ID = w->ID, TK = w->TK, rd = w->rd, RH = rd / 2, n = b->n;
    const float *cs = s->cs + (size_t)s->batch * RH, *sn = s->sn + (size_t)s->batch * RH; /* compressed RoPE */
    /* 1. index keys of the windows this step completes */
    compress(w, s, env, &ly->icomp, l, true, b);
    /* 2. queries [n][IH][ID] (last rd dims rotated) and head weights [n][IH] */
    ms_arch_linear(env, &ly->iwq_b, s->qr, n, s->iq);
    ms_arch_linear(env, &ly->iw, s->xn, n, s->iw);
    float wscale = (float)(1.0 / sqrt((double)ID * IH));
    for (int t = 0; t < n; t++) {
        for (int h = 0; h < IH; h++)
            ms_rope_interleaved(s->iq + ((size_t)t * IH + h) * ID + ID - rd, rd, cs + (size_t)t * RH,
                                sn + (size_t)t * RH);
        for (int h = 0; h < IH; h++) s->iw[(size_t)t * IH + h] *= wscale;
    }
    /* 3. per row: score the visible entries of its sequence, keep the top ones
     *    (ascending); the same product for any rows around it */
    for (int t = 0; t < n; t++) {
        int np = (b->pos[t] + 1) / 4, *sel = s->sel + (size_t)t * TK;
        rows keys = ikey_rows(w, s, ms_arch_row_seq(b, t), l);
        if (np <= TK) {
            for (int i = 0; i < np; i++) sel[i] = i;
            s->nsel[t] = np;
            continue;
        }
        ms_mat km = {.type = keys.h ? MS_WT_BF16 : MS_WT_F32, .rows = np, .cols = ID,
                     .w = keys.h ? (const void *)keys.h : (const void *)keys.f};
        ms_matmul(cp, &km, s->iq + (size_t)t * IH * ID, IH, s->ihs); /* [IH][np] q_h . k_i */
        float *sc = s->isc, *wt = s->iw + (size_t)t * IH;
        for (int i = 0; i < np; i++) {
            float a = 0;
            for (int h = 0; h < IH; h++) a += wt[h] * fmaxf(s->ihs[(size_t)h * np + i], 0.0f);
            sc[i] = a;
        }
        ms_topk(sc, np, TK, sel);
        s->nsel[t] = TK;
        /* ascending order: the attention sums entries by position */
        for (int i = 1; i < TK; i++)
            for (int j = i; j > 0 && sel[j - 1] > sel[j]; j--) {
                int x = sel[j];
                sel[j] = sel[j - 1];
                sel[j - 1] = x;
            }
    }
}

/* ---- attention per (token, head) ---- */

typedef struct attn_task {
    const dsv4_weights *w;
    const dsv4_layer *ly;
    dsv4_state *s;
    const ms_batch *b;
    rows chunk;
    int l, kind;
    float scale;
} attn_task;

static void attn_one(attn_task *t, int idx, float *sc)
{
    const dsv4_weights *w = t->w;
    const dsv4_state *s = t->s;
    int H = w->H, hd = w->hd, Wn = w->W, RH = w->rd / 2, ti = idx / H, h = idx % H, r = t->ly->ratio;
    bool bf = s->kv_bf16;
    int seq = ms_arch_row_seq(t->b, ti), r0 = s->run0[ti];
    int64_t p = t->b->pos[ti], lo = MS_MAX(0, p - Wn + 1), p0 = t->b->pos[r0]; /* p0: the run's first position */
    rows ring = ring_rows(w, s, seq, t->l), pool = r > 0 ? pool_rows(w, s, seq, t->l) : (rows){0};
    int nwin = (int)(p - lo + 1), npk = 0;
    const int *sel = NULL;
    if (r == 4) {
        npk = s->nsel[ti];
        sel = s->sel + (size_t)ti * w->TK;
    } else if (r > 0) {
        npk = (int)((p + 1) / r);
    }
    const float *q = s->q + ((size_t)ti * H + h) * hd;
    float *o = s->o + ((size_t)ti * H + h) * hd;
    /* key j: the window first (the ring before the run, then the run's rows), then pooled entries */
#define KEY(j)                                                                                                      \
    ((j) < nwin ? (lo + (j) >= p0 ? row_at(&t->chunk, (size_t)(r0 + lo + (j) - p0))                              \
                                  : row_at(&ring, (size_t)((lo + (j)) % Wn)))                                      \
                : row_at(&pool, (size_t)(sel ? sel[(j) - nwin] : (j) - nwin)))
    int nk = nwin + npk;
    float sink = t->ly->sink[h], mx = sink;
    for (int j = 0; j < nk; j++) {
        sc[j] = t->scale * dot_row(q, KEY(j), hd, bf);
        mx = fmaxf(mx, sc[j]);
    }
    double sum = exp((double)sink - mx);
    for (int j = 0; j < nk; j++) {
        sc[j] = expf(sc[j] - mx);
        sum += sc[j];
    }
    float inv = (float)(1.0 / sum);
    memset(o, 0, (size_t)hd * sizeof *o);
    for (int j = 0; j < nk; j++) axpy_row(o, sc[j] * inv, KEY(j), hd, bf);
#undef KEY
    /* the output's rope dims rotate back by -p */
    const float *cs = s->cs + ((size_t)t->kind * s->batch + ti) * RH, *sn = s->sn + ((size_t)t->kind * s->batch + ti) * RH;
    rope_inverse(o + hd - w->rd, w->rd, cs, sn);
}

static void attn_index(void *arg, int idx, int tid)
{
    attn_task *t = arg;
    attn_one(t, idx, t->s->tls + (size_t)tid * t->s->tls_stride);
}

void dsv4_attention(const dsv4_weights *w, dsv4_state *s, const ms_fwd_env *env, int l, const ms_batch *b)
{
    const dsv4_layer *ly = &w->layers[l];
    int H = w->H, hd = w->hd, rd = w->rd, RH = rd / 2, ql = w->ql, kind = ly->ratio > 0, n = b->n;
    float eps = (float)w->c->rms_norm_eps;
    const float *cs = s->cs + (size_t)kind * s->batch * RH, *sn = s->sn + (size_t)kind * s->batch * RH;
    /* 1. queries: qr = q_norm(wq_a x); q = wq_b qr per head normed, rope dims rotated */
    ms_arch_linear(env, &ly->wq_a, s->xn, n, s->qr);
    for (int t = 0; t < n; t++) ms_rmsnorm(s->qr + (size_t)t * ql, s->qr + (size_t)t * ql, ly->q_norm, ql, eps);
    ms_arch_linear(env, &ly->wq_b, s->qr, n, s->q);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < H; h++) {
            float *qh = s->q + ((size_t)t * H + h) * hd;
            ms_rmsnorm(qh, qh, NULL, hd, eps);
            ms_rope_interleaved(qh + hd - rd, rd, cs + (size_t)t * RH, sn + (size_t)t * RH);
        }
    /* 2. the shared key/value: kv = kv_norm(wkv x), rope dims rotated */
    ms_arch_linear(env, &ly->wkv, s->xn, n, s->kv);
    rows chunk = s->kv_bf16 ? (rows){NULL, s->kv16, hd} : (rows){s->kv, NULL, hd};
    for (int t = 0; t < n; t++) {
        float *k = s->kv + (size_t)t * hd;
        ms_rmsnorm(k, k, ly->kv_norm, hd, eps);
        ms_rope_interleaved(k + hd - rd, rd, cs + (size_t)t * RH, sn + (size_t)t * RH);
        if (chunk.h) row_put(&chunk, (size_t)t, k); /* --kv bf16: the rounded copy */
    }
    /* 3. pooled entries of the windows this step completes; the indexer's picks */
    if (ly->ratio > 0) compress(w, s, env, &ly->comp, l, false, b);
    if (ly->ratio == 4) indexer(w, s, env, ly, l, b);
    /* 4. attention per (row, head) over window + pooled keys, sinks, inverse rope */
    attn_task task = {.w = w, .ly = ly, .s = s, .b = b, .chunk = chunk, .l = l, .kind = kind,
                      .scale = (float)(1.0 / sqrt((double)hd))};
    ms_pool_for(env->compute.pool, n * H, attn_index, &task);
    /* 5. each sequence's ring keeps its last W positions (rows in order: a
     *    run's last rows win), tagged with the position they hold */
    for (int t = 0; t < n; t++) {
        int seq = ms_arch_row_seq(b, t), slot = b->pos[t] % w->W;
        rows ring = ring_rows(w, s, seq, l);
        if (chunk.h) memcpy(ring.h + (size_t)slot * hd, chunk.h + (size_t)t * hd, (size_t)hd * sizeof(uint16_t));
        else memcpy(ring.f + (size_t)slot * hd, chunk.f + (size_t)t * hd, (size_t)hd * sizeof(float));
        ring_tags(s, seq, l)[slot] = b->pos[t];
    }
    /* 6. grouped output: og[g] = wo_a[g] (heads of g), y = wo_b og */
    int hpg = H / w->G, gw = hpg * hd;
    for (int g = 0; g < w->G; g++) {
        for (int t = 0; t < n; t++)
            memcpy(s->ogi + (size_t)t * gw, s->o + ((size_t)t * H + (size_t)g * hpg) * hd, (size_t)gw * sizeof(float));
        ms_mat wa = ms_mat_rows(&ly->wo_a, (int64_t)g * w->R, w->R);
        ms_arch_linear(env, &wa, s->ogi, n, s->ogr);
        for (int t = 0; t < n; t++)
            memcpy(s->og + (size_t)t * w->G * w->R + (size_t)g * w->R, s->ogr + (size_t)t * w->R,
                   (size_t)w->R * sizeof(float));
    }
    ms_arch_linear(env, &ly->wo_b, s->og, n, s->y);
}

/* dsv4_attn.c - DeepSeek-V4 attention for a chunk of n tokens at positions
 * pos0.. (one layer):
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
 * Caches (dsv4.h): the chunk's kv stays in scratch while the chunk attends
 * (earlier positions come from the ring), then the last W positions go into
 * the ring. Pooled entries are written as windows complete, so a query sees
 * the entry its own token completes. Every (token, head) is one task with a
 * fixed summation order: results do not depend on threads or chunking. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsv4.h"
#include "util.h"

void dsv4_linear(const ms_compute *cp, const ms_mat *m, const float *X, int n, float *Y)
{
    if (n == 1) ms_matvec(cp, m, X, Y);
    else ms_matmul(cp, m, X, n, Y);
}

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

/* The layer's caches as row stores. */
static rows ring_rows(const dsv4_weights *w, const dsv4_state *s, int l)
{
    size_t off = (size_t)l * w->W * w->hd;
    return s->kv_bf16 ? (rows){NULL, s->ring16 + off, w->hd} : (rows){s->ring + off, NULL, w->hd};
}

static rows pool_rows(const dsv4_weights *w, const dsv4_state *s, int l)
{
    size_t off = DSV4_POOL_OFF(s, l);
    return s->kv_bf16 ? (rows){NULL, s->pool16 + off, w->hd} : (rows){s->pool + off, NULL, w->hd};
}

static rows ikey_rows(const dsv4_weights *w, const dsv4_state *s, int l)
{
    size_t off = DSV4_IKEY_OFF(s, l);
    return s->kv_bf16 ? (rows){NULL, s->ikey16 + off, w->ID} : (rows){s->ikey + off, NULL, w->ID};
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

/* Feed the chunk's tokens to compressor c (open windows in acc); every window
 * that completes becomes a pooled entry in `cache`. */
static void compress(const dsv4_weights *w, dsv4_state *s, const ms_compute *cp, const dsv4_comp *c, float *acc,
                     const rows *cache, int n, int pos0)
{
    int r = c->ratio, W = c->width, nrow = dsv4_acc_rows(r), RH = w->rd / 2;
    float *akv = acc, *asc = acc + (size_t)nrow * W;
    float *ent = s->ent, *cs = s->rot, *sn = s->rot + RH;
    /* 1. projections [n][width] */
    dsv4_linear(cp, &c->wkv, s->xn, n, s->ckv);
    dsv4_linear(cp, &c->wgate, s->xn, n, s->csc);
    for (int t = 0; t < n; t++) {
        int64_t p = (int64_t)pos0 + t;
        /* 2. the token joins its window: kv and score (+ ape[p % r]) */
        size_t slot = (size_t)(p % nrow);
        const float *ape = c->ape + (size_t)(p % r) * W;
        memcpy(akv + slot * W, s->ckv + (size_t)t * W, (size_t)W * sizeof(float));
        for (int i = 0; i < W; i++) asc[slot * W + i] = s->csc[(size_t)t * W + i] + ape[i];
        if ((p + 1) % r) continue;
        /* 3. a complete window: pool, norm, rotate at its first position */
        int64_t e = (p + 1) / r - 1;
        pool_entry(c, akv, asc, e, ent);
        ms_rmsnorm(ent, ent, c->norm, c->d, (float)w->c->rms_norm_eps);
        rope_at(w, e * r, cs, sn);
        ms_rope_interleaved(ent + c->d - w->rd, w->rd, cs, sn);
        row_put(cache, (size_t)e, ent);
    }
}

/* ---- indexer ---- */

/* Choose each token's pooled entries (sel/nsel) at a ratio-4 layer. */
static void indexer(const dsv4_weights *w, dsv4_state *s, const ms_compute *cp, const dsv4_layer *ly, int l, int n,
                    int pos0)
{
    int IH = w->IH, ID = w->ID, TK = w->TK, rd = w->rd, RH = rd / 2;
    const float *cs = s->cs + (size_t)s->batch * RH, *sn = s->sn + (size_t)s->batch * RH; /* compressed RoPE */
    /* 1. index keys of the windows this chunk completes */
    rows keys = ikey_rows(w, s, l);
    compress(w, s, cp, &ly->icomp, s->acc + DSV4_IACC_OFF(s, l), &keys, n, pos0);
    /* 2. queries [n][IH][ID] (last rd dims rotated) and head weights [n][IH] */
    dsv4_linear(cp, &ly->iwq_b, s->qr, n, s->iq);
    dsv4_linear(cp, &ly->iw, s->xn, n, s->iw);
    float wscale = (float)(1.0 / sqrt((double)ID * IH));
    for (int t = 0; t < n; t++) {
        for (int h = 0; h < IH; h++)
            ms_rope_interleaved(s->iq + ((size_t)t * IH + h) * ID + ID - rd, rd, cs + (size_t)t * RH,
                                sn + (size_t)t * RH);
        for (int h = 0; h < IH; h++) s->iw[(size_t)t * IH + h] *= wscale;
    }
    /* 3. per token: score the visible entries, keep the top ones (ascending) */
    for (int t = 0; t < n; t++) {
        int np = (pos0 + t + 1) / 4, *sel = s->sel + (size_t)t * TK;
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
    rows ring, pool, chunk;
    int n, pos0, kind;
    float scale;
} attn_task;

static void attn_one(attn_task *t, int idx, float *sc)
{
    const dsv4_weights *w = t->w;
    const dsv4_state *s = t->s;
    int H = w->H, hd = w->hd, Wn = w->W, RH = w->rd / 2, ti = idx / H, h = idx % H, r = t->ly->ratio;
    bool bf = s->kv_bf16;
    int64_t p = (int64_t)t->pos0 + ti, lo = MS_MAX(0, p - Wn + 1);
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
    /* key j: the window first (ring before the chunk, then the chunk), then pooled entries */
#define KEY(j)                                                                                                      \
    ((j) < nwin ? (lo + (j) >= t->pos0 ? row_at(&t->chunk, (size_t)(lo + (j) - t->pos0))                         \
                                       : row_at(&t->ring, (size_t)((lo + (j)) % Wn)))                              \
                : row_at(&t->pool, (size_t)(sel ? sel[(j) - nwin] : (j) - nwin)))
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

void dsv4_attention(const dsv4_weights *w, dsv4_state *s, const ms_compute *cp, int l, int n, int pos0)
{
    const dsv4_layer *ly = &w->layers[l];
    int H = w->H, hd = w->hd, rd = w->rd, RH = rd / 2, ql = w->ql, kind = ly->ratio > 0;
    float eps = (float)w->c->rms_norm_eps;
    const float *cs = s->cs + (size_t)kind * s->batch * RH, *sn = s->sn + (size_t)kind * s->batch * RH;
    /* 1. queries: qr = q_norm(wq_a x); q = wq_b qr per head normed, rope dims rotated */
    dsv4_linear(cp, &ly->wq_a, s->xn, n, s->qr);
    for (int t = 0; t < n; t++) ms_rmsnorm(s->qr + (size_t)t * ql, s->qr + (size_t)t * ql, ly->q_norm, ql, eps);
    dsv4_linear(cp, &ly->wq_b, s->qr, n, s->q);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < H; h++) {
            float *qh = s->q + ((size_t)t * H + h) * hd;
            ms_rmsnorm(qh, qh, NULL, hd, eps);
            ms_rope_interleaved(qh + hd - rd, rd, cs + (size_t)t * RH, sn + (size_t)t * RH);
        }
    /* 2. the shared key/value: kv = kv_norm(wkv x), rope dims rotated */
    dsv4_linear(cp, &ly->wkv, s->xn, n, s->kv);
    rows chunk = s->kv_bf16 ? (rows){NULL, s->kv16, hd} : (rows){s->kv, NULL, hd};
    for (int t = 0; t < n; t++) {
        float *k = s->kv + (size_t)t * hd;
        ms_rmsnorm(k, k, ly->kv_norm, hd, eps);
        ms_rope_interleaved(k + hd - rd, rd, cs + (size_t)t * RH, sn + (size_t)t * RH);
        if (chunk.h) row_put(&chunk, (size_t)t, k); /* --kv bf16: the rounded copy */
    }
    /* 3. pooled entries of the windows this chunk completes; the indexer's picks */
    rows pool = {0};
    if (ly->ratio > 0) {
        pool = pool_rows(w, s, l);
        compress(w, s, cp, &ly->comp, s->acc + DSV4_ACC_OFF(s, l), &pool, n, pos0);
    }
    if (ly->ratio == 4) indexer(w, s, cp, ly, l, n, pos0);
    /* 4. attention per (token, head) over window + pooled keys, sinks, inverse rope */
    attn_task task = {.w = w, .ly = ly, .s = s, .ring = ring_rows(w, s, l), .pool = pool, .chunk = chunk,
                      .n = n, .pos0 = pos0, .kind = kind, .scale = (float)(1.0 / sqrt((double)hd))};
    ms_pool_for(cp->pool, n * H, attn_index, &task);
    /* 5. the ring keeps the last W positions */
    for (int t = MS_MAX(0, n - w->W); t < n; t++) {
        size_t slot = (size_t)((pos0 + t) % w->W);
        if (chunk.h) memcpy(task.ring.h + slot * hd, chunk.h + (size_t)t * hd, (size_t)hd * sizeof(uint16_t));
        else memcpy(task.ring.f + slot * hd, chunk.f + (size_t)t * hd, (size_t)hd * sizeof(float));
    }
    /* 6. grouped output: og[g] = wo_a[g] (heads of g), y = wo_b og */
    int hpg = H / w->G, gw = hpg * hd;
    for (int g = 0; g < w->G; g++) {
        for (int t = 0; t < n; t++)
            memcpy(s->ogi + (size_t)t * gw, s->o + ((size_t)t * H + (size_t)g * hpg) * hd, (size_t)gw * sizeof(float));
        ms_mat wa = ms_mat_rows(&ly->wo_a, (int64_t)g * w->R, w->R);
        dsv4_linear(cp, &wa, s->ogi, n, s->ogr);
        for (int t = 0; t < n; t++)
            memcpy(s->og + (size_t)t * w->G * w->R + (size_t)g * w->R, s->ogr + (size_t)t * w->R,
                   (size_t)w->R * sizeof(float));
    }
    dsv4_linear(cp, &ly->wo_b, s->og, n, s->y);
}

/* dsv4.h - the DeepSeek-V4 family (model_type deepseek_v4: DeepSeek-V4-Flash)
 * shared between its files:
 *
 *   dsv4_config.c   config.json keys, inspect's description, the family table
 *   dsv4_weights.c  resident weights bound and checked against the config
 *   dsv4_forward.c  state (caches + scratch, one buffer list), the forward
 *                   pass with its hyper-connections, the router ops
 *   dsv4_attn.c     attention: sliding window, compressors, indexer, sinks,
 *                   grouped output projection
 *
 * The forward pass follows deepseek-ai/DeepSeek-V4-Flash inference/model.py as
 * described in tests/data/golden/dsv4-tiny/README.md (docs/VERIFICATION.md
 * lists what was checked against what). Everything is f32. */
#ifndef MS_DSV4_H
#define MS_DSV4_H

#include <stdbool.h>
#include <stdint.h>

#include "arch.h"

/* The family's private config (cfg->arch). */
typedef struct ms_dsv4_config {
    int n_heads;             /* H: query heads; one shared key = value head */
    int head_dim;            /* hd */
    int rope_dim;            /* qk_rope_head_dim: the last rope_dim dims of q, kv and index keys rotate */
    int q_lora_rank;
    int o_groups, o_lora_rank; /* grouped low-rank output projection */
    int window;              /* sliding_window */
    int index_heads, index_dim, index_topk;
    int hc_mult, hc_iters;   /* residual streams, Sinkhorn iterations */
    double hc_eps;
    int n_hash_layers;       /* layers < this route by tid2eid[token] */
    double swiglu_limit;     /* clamp before silu, routed and shared experts (<= 0: none) */
    double routed_scaling_factor;
    bool norm_topk_prob;
    ms_rope_cfg rope;        /* rope_theta (ratio-0 layers) + the YaRN block */
    double compress_rope_theta; /* compressed layers: this base + YaRN */
    int ratio[MS_MAX_LAYERS]; /* compress_ratios (first num_hidden_layers entries) */
} ms_dsv4_config;

/* The private config of a deepseek_v4 config, NULL for other families. */
const ms_dsv4_config *ms_dsv4_config_of(const ms_config *c);

/* ---- weights ---- */

/* Hyper-connection mixer: fn [rows, hc*D], base [rows], scale [3 or 1]. */
typedef struct dsv4_hc {
    ms_mat fn;
    const float *base, *scale;
} dsv4_hc;

/* A compressor: every `ratio` tokens pool into one entry of d channels. */
typedef struct dsv4_comp {
    int ratio, d, width;     /* width = 2d when overlapping (ratio 4), else d */
    bool overlap;
    ms_mat wkv, wgate;       /* [width, D] */
    const float *ape;        /* [ratio][width] */
    const float *norm;       /* [d] */
} dsv4_comp;

typedef struct dsv4_layer {
    int ratio;               /* compress ratio: 0 none, 4 overlap + indexer, else plain pooling */
    bool hash;               /* routes by tid2eid */
    const float *attn_norm, *ffn_norm; /* [D] */
    dsv4_hc hc_attn, hc_ffn;
    ms_mat wq_a;             /* [q_lora, D] */
    const float *q_norm;     /* [q_lora] */
    ms_mat wq_b;             /* [H*hd, q_lora] */
    ms_mat wkv;              /* [hd, D] */
    const float *kv_norm;    /* [hd] */
    const float *sink;       /* [H] */
    ms_mat wo_a;             /* [G*R, (H/G)*hd] */
    ms_mat wo_b;             /* [D, G*R] */
    dsv4_comp comp;          /* ratio > 0 */
    ms_mat iwq_b;            /* [IH*ID, q_lora]   (ratio 4) */
    ms_mat iw;               /* [IH, D]           (ratio 4) */
    dsv4_comp icomp;         /* d = ID            (ratio 4) */
    ms_mat gate;             /* [E, D] router */
    const float *bias;       /* [E] e_score_correction_bias (score-routed layers) */
    const int32_t *tid2eid;  /* [vocab][K] (hash layers) */
    ms_mat sh_gate, sh_up, sh_down;
    ms_moe_block blk;
} dsv4_layer;

typedef struct dsv4_weights {
    const ms_model *m;
    const ms_config *c;
    const ms_dsv4_config *d;
    int D, HC, NM, H, hd, rd, ql, G, R, W, IH, ID, TK, E, K;
    double inv_freq[2][256]; /* [plain, compressed][rd/2] RoPE frequencies */
    ms_mat embed, lm_head;   /* [V, D] */
    const float *final_norm; /* [D] */
    dsv4_hc hc_head;         /* fn [HC, HC*D], base [HC], scale [1] */
    dsv4_layer *layers;
    void **owned;            /* f32 copies made at bind */
    int n_owned, cap_owned;
} dsv4_weights;

int dsv4_bind(const ms_model *m, const ms_resident *r, void **out, uint64_t *extra_bytes, ms_err *err);
void dsv4_unbind(void *w);

/* ---- state ---- */

/* Buffers of the state, one list for the struct, the allocation and the plan.
 * Counts use the names DSV4_DIMS defines. The caches, one set per sequence
 * (S of them, each block of a sequence at seq * N_x):
 *   ring   per layer, the last W positions' kv (slot = position % W)
 *   pool   per compressed layer, ctx/ratio pooled entries of hd
 *   ikey   per ratio-4 layer, ctx/4 pooled index keys of ID
 *   acc    per compressor, the open window(s): kv and score rows
 *          (2 * ratio rows when overlapping, ratio rows otherwise)
 *   rtag   per layer and ring slot, the position it holds (-1: none)
 *   atag   per compressed layer and open-window row, the position it holds
 *          (the indexer's compressor has the same rows as the layer's)
 * (--kv bf16 keeps ring / pool / ikey in bf16.) The tags let a step that
 * goes back in a sequence (a rejected draft, a reused prefix) check that the
 * earlier positions it reads are still there. */
#define DSV4_BUFFERS(X)                                                                        \
    X(ring, float, F * S * N_RING)    /* [S][L][W][hd] window kv */                           \
    X(pool, float, F * S * N_POOL)    /* [S] per compressed layer [ctx/r][hd] pooled kv */    \
    X(ikey, float, F * S * N_IKEY)    /* [S] per ratio-4 layer [ctx/4][ID] index keys */     \
    X(ring16, uint16_t, BF * S * N_RING) /* bf16 variants (--kv bf16) */                      \
    X(pool16, uint16_t, BF * S * N_POOL)                                                     \
    X(ikey16, uint16_t, BF * S * N_IKEY)                                                     \
    X(acc, float, S * N_ACC)          /* [S] per compressor: [rows][width] kv, then score */ \
    X(rtag, int, S * L * Wn)          /* [S][L][W] ring slot -> position */                  \
    X(atag, int, S * N_ATAG)          /* [S] per compressed layer [rows] row -> position */  \
    X(offs, uint64_t, 5 * L)          /* per layer: pool, ikey, acc, iacc, atag offsets */   \
    X(run0, int, B)                   /* [B] first row of each row's sequence in the step */ \
    X(X, float, B * HC * D)           /* [B][HC][D] residual streams */                       \
    X(xt, float, HC * D)              /* [HC][D] one token's new streams */                   \
    X(mix, float, B * NM)             /* [B][NM] hyper-connection mixes */                     \
    X(pre, float, B * HC)             /* [B][HC] */                                           \
    X(post, float, B * HC)            /* [B][HC] */                                           \
    X(comb, float, B * HC * HC)       /* [B][HC][HC] C[j][k]: stream j -> k */                \
    X(x, float, B * D)                /* [B][D] sub-layer input sum_j pre_j X_j */            \
    X(xn, float, B * D)               /* [B][D] its norm */                                   \
    X(y, float, B * D)                /* [B][D] sub-layer output */                           \
    X(qr, float, B * QL)              /* [B][q_lora] */                                       \
    X(q, float, B * H * hd)           /* [B][H][hd] */                                        \
    X(kv, float, B * hd)              /* [B][hd] the chunk's kv */                            \
    X(kv16, uint16_t, BF * B * hd)    /* [B][hd] the same in bf16 */                          \
    X(o, float, B * H * hd)           /* [B][H][hd] attention output */                       \
    X(ogi, float, B * GW)             /* [B][(H/G)*hd] one group's heads */                   \
    X(ogr, float, B * R)              /* [B][R] one group's projection */                     \
    X(og, float, B * G * R)           /* [B][G*R] */                                          \
    X(cs, float, 2 * B * RH)          /* [2][B][rd/2] cos: plain, compressed RoPE */          \
    X(sn, float, 2 * B * RH)          /* [2][B][rd/2] sin */                                  \
    X(ckv, float, B * CW)             /* [B][width] compressor kv */                          \
    X(csc, float, B * CW)             /* [B][width] compressor score */                       \
    X(iq, float, B * IH * ID)         /* [B][IH][ID] indexer queries */                       \
    X(iw, float, B * IH)              /* [B][IH] indexer head weights */                      \
    X(isc, float, NP4)                /* [ctx/4] one token's indexer scores */                \
    X(ihs, float, IH * NP4)           /* [IH][ctx/4] one token's per-head dot products */     \
    X(sel, int, B * TK)               /* [B][topk] chosen pooled entries, ascending */         \
    X(nsel, int, B)                   /* [B] */                                               \
    X(tls, float, NTH * TLS)          /* [threads][keys + 64] attention scores */             \
    X(rlog, float, B * E)             /* [B][E] router logits */                              \
    X(rsc, float, 2 * E)              /* [2][E] scores, biased scores */                      \
    X(pmix, float, NM + HC)           /* prediction: mixes, pre */                            \
    X(px, float, 2 * D)               /* prediction: input, normed */                         \
    X(pwt, float, K)                  /* prediction: weights (unused) */                      \
    X(rot, float, RH * 2)             /* cos/sin at one pooled entry's position */            \
    X(ent, float, ED)                 /* [max(hd, ID)] one pooled entry */

typedef struct dsv4_state {
    const dsv4_weights *w;
    int ctx, batch, n_seq, nth;
    bool kv_bf16;
    size_t tls_stride;
    size_t seq_ring, seq_pool, seq_ikey, seq_acc, seq_atag; /* elements per sequence */
    int cur_token;           /* the token being decoded (prediction of hash layers) */
    ms_moe *moe;
    ms_moe_router router;
#define X(name, type, count) type *name;
    DSV4_BUFFERS(X)
#undef X
} dsv4_state;

/* Per-layer offsets (elements) into a sequence's caches, from offs. */
#define DSV4_POOL_OFF(s, l) ((s)->offs[5 * (size_t)(l)])
#define DSV4_IKEY_OFF(s, l) ((s)->offs[5 * (size_t)(l) + 1])
#define DSV4_ACC_OFF(s, l) ((s)->offs[5 * (size_t)(l) + 2])
#define DSV4_IACC_OFF(s, l) ((s)->offs[5 * (size_t)(l) + 3])
#define DSV4_ATAG_OFF(s, l) ((s)->offs[5 * (size_t)(l) + 4])

/* Rows a compressor keeps for its open window(s). */
static inline int dsv4_acc_rows(int ratio) { return ratio == 4 ? 2 * ratio : ratio; }

/* The cache parts of one sequence for ctx positions, in bytes (plan / inspect). */
void dsv4_cache_parts(const ms_config *c, int ctx, bool kv_bf16, uint64_t *ring, uint64_t *pool, uint64_t *ikey,
                      uint64_t *acc);

/* y[n][D] = attention(xn[n][D]) at layer l for the step's rows (each at its
 * sequence and position; s->run0 set); updates the caches of their sequences. */
void dsv4_attention(const dsv4_weights *w, dsv4_state *s, const ms_fwd_env *env, int l, const ms_batch *b);

/* A step's rows may read these earlier positions of their sequences from the
 * caches: refused (one error line) when a ring slot or an open-window row no
 * longer holds the position a row needs (the sequence went back further than
 * the caches keep). Rows of a sequence must be consecutive positions. */
int dsv4_check_history(const dsv4_state *s, const ms_batch *b, ms_err *err);

#endif

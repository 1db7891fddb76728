/* synth_impl.h - the parts of the generator (synth.c) its per-family
 * inventories share: module roles (the recipe decides their bits), the
 * generator record of each tensor, the inventory being built, and the calls
 * that add tensors to it. synth.c walks DeepSeek-V3-style models itself;
 * synth_dsv4.c walks DeepSeek-V4 (model_type deepseek_v4). */
#ifndef MS_SYNTH_IMPL_H
#define MS_SYNTH_IMPL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "rng.h"
#include "synth.h"

typedef enum role {
    ROLE_EMBED = 0,
    ROLE_ATTN,
    ROLE_DENSE,
    ROLE_SHARED,
    ROLE_ROUTED,
    ROLE_LM_HEAD,
    ROLE_MTP_PROJ,
    ROLE_NONE, /* norms, router, router bias: never quantized */
} role;

typedef enum gen_kind {
    GEN_FLOAT = 0, /* mean + std * N(0, 1) */
    GEN_QWEIGHT,   /* uniform random codes */
    GEN_QSCALES,   /* per-group scales (random sign) */
    GEN_QBIASES,   /* -scale * (2^bits - 1) / 2, replaying the scales' stream */
    GEN_RBIAS,     /* router correction bias with the --route-skew popularity */
    GEN_TID2EID,   /* [vocab][K] int64 distinct expert ids per token (hash routing) */
} gen_kind;

typedef struct sgen {
    uint8_t kind;
    uint8_t bits;
    ms_dtype dtype;
    float mean, std;
    int layer;
    int32_t arg;   /* GEN_TID2EID: the number of experts */
    uint64_t stream;
} sgen;

typedef struct qoverride {
    char *path;
    int bits;
} qoverride;

typedef struct build {
    const ms_synth_opts *o;
    ms_stw_plan *plan;
    sgen *gens;
    int n_gens, cap_gens;
    qoverride *ov;
    int n_ov, cap_ov;
    uint64_t n_params;
    ms_err *err;
} build;

#define SALT_SCALES 0x5ca1e5b1a5e5ull

#define SHAPE2(a, c) ((const int64_t[]){(a), (c)})
#define SHAPE3(a, c, d) ((const int64_t[]){(a), (c), (d)})

/* An option or architecture number outside [lo, hi]: one error line naming it
 * (in functions with an `ms_err *err`). */
#define CHECK_RANGE(v, lo, hi, what)                                                                              \
    do {                                                                                                          \
        if ((long long)(v) < (long long)(lo) || (long long)(v) > (long long)(hi))                                 \
            return ms_errf(err, EINVAL, "%s: %lld is out of range [%lld, %lld]", what, (long long)(v),            \
                           (long long)(lo), (long long)(hi));                                                     \
    } while (0)

/* Defaults shared by the DeepSeek presets (architecture names, one shared
 * expert, every layer MoE, normalized top-k, eps 1e-6, theta 1e4 + YaRN betas
 * 32/1, BOS 0, EOS 1); everything else zero. */
void synth_arch_base(ms_synth_arch *a, const char *model_type, const char *architecture);

/* A tensor with its generator (dtype dt overrides g->dtype). */
int synth_add_tensor(build *b, const char *name, ms_dtype dt, int ndim, const int64_t *shape, const sgen *g);
/* One weight: a float tensor `path.leaf` (--dtype), or, when the recipe
 * quantizes role r, path.{weight,scales,biases}. */
int synth_add_module(build *b, const char *path, const char *leaf, role r, int layer, bool is_down, int ndim,
                     const int64_t *shape, float mean, float std);
/* A norm weight path.weight [dim]: 1 + N(0, 0.02). */
int synth_add_norm(build *b, const char *path, int64_t dim);
/* A float tensor `name` of dtype dt with values mean + std * N(0, 1) (counted as parameters). */
int synth_add_float(build *b, const char *name, ms_dtype dt, int ndim, const int64_t *shape, float mean, float std);

/* DeepSeek-V4 (synth_dsv4.c). */
bool synth_is_dsv4(const ms_synth_arch *a);
void synth_dsv4_preset(ms_synth_opts *o, bool tiny);
int synth_dsv4_validate(const ms_synth_opts *o, ms_err *err);
/* Every tensor: embeddings, layers, norm, hc_head, lm_head. */
int synth_dsv4_inventory(build *b);
/* The config.json keys (quantization blocks excepted) into c. */
void synth_dsv4_config(const ms_synth_opts *o, json_object *c);
/* tid2eid [vocab][k] int64: k distinct experts of n_experts per token. */
int synth_tid2eid(ms_rng *r, int64_t vocab, int64_t k, int n_experts, void *out, ms_err *err);

#endif

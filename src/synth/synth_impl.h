/* synth_impl.h - what synth.c shares with the family inventories beside it
 * (synth_step.c): the tensor inventory under construction (synth_build), the
 * module roles a quantization recipe assigns bits by, the adders that turn a
 * logical weight into a float tensor or an MLX weight/scales/biases triple
 * with its generator record, and the Python-json.dump-style renderer for
 * config.json. Private to src/synth. */
#ifndef MS_SYNTH_IMPL_H
#define MS_SYNTH_IMPL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "strbuf.h"
#include "synth.h"

typedef enum synth_role {
    ROLE_EMBED = 0,
    ROLE_ATTN,
    ROLE_DENSE,
    ROLE_SHARED,
    ROLE_ROUTED,
    ROLE_LM_HEAD,
    ROLE_MTP_PROJ,
    ROLE_ROUTER,    /* a quantizable router (Step's mlp.gate.gate): 8-bit g64 in every MLX recipe */
    ROLE_PROJECTOR, /* a VLM's vision projector: the recipe's default bits, no entry */
    ROLE_NONE,   /* norms, bare routers, router biases: never quantized */
} synth_role;

typedef enum gen_kind { GEN_FLOAT = 0, GEN_QWEIGHT, GEN_QSCALES, GEN_QBIASES, GEN_RBIAS } gen_kind;

/* How one tensor's bytes are generated. */
typedef struct sgen {
    uint8_t kind;
    uint8_t bits;
    ms_dtype dtype;
    float mean, std;
    int layer;
    uint64_t stream;
} sgen;

/* A per-module entry of the quantization block. */
typedef struct qoverride {
    char *path;
    int bits, group;
    bool predicate; /* written as the model's quant_predicate returns it: {group_size, bits} */
} qoverride;

typedef struct synth_build {
    const ms_synth_opts *o;
    ms_stw_plan *plan;
    sgen *gens;
    int n_gens, cap_gens;
    qoverride *ov;
    int n_ov, cap_ov;
    uint64_t n_params;
    ms_err *err;
} synth_build;

/* return an error naming the option when v is outside [lo, hi] */
#define CHECK_RANGE(v, lo, hi, what)                                                                              \
    do {                                                                                                          \
        if ((long long)(v) < (long long)(lo) || (long long)(v) > (long long)(hi))                                 \
            return ms_errf(err, EINVAL, "%s: %lld is out of range [%lld, %lld]", what, (long long)(v),            \
                           (long long)(lo), (long long)(hi));                                                     \
    } while (0)

/* x (an int call); on error return it from the function (which has an int rc) */
#define SYNTH_TRY(x)                                                                                              \
    do {                                                                                                          \
        if ((rc = (x)) < 0) return rc;                                                                            \
    } while (0)

#define SHAPE2(a, c) ((const int64_t[]){(a), (c)})
#define SHAPE3(a, c, d) ((const int64_t[]){(a), (c), (d)})

/* A tensor with its generator. */
int synth_add_tensor(synth_build *b, const char *name, ms_dtype dt, int ndim, const int64_t *shape, const sgen *g);
/* One weight of logical shape `shape` (input width last): a float tensor
 * `path.leaf` with N(mean, std) values, or, when the recipe quantizes role r,
 * path.{weight,scales,biases} of that std (and a quantization entry). */
int synth_add_module(synth_build *b, const char *path, const char *leaf, synth_role r, int layer, bool is_down,
                     int ndim, const int64_t *shape, float mean, float std);
/* A float vector path.weight (norms): N(mean, std). */
int synth_add_vector(synth_build *b, const char *path, int64_t dim, float mean, float std);
/* A router bias [E] (the skewed popularity of synth.h) stored as dt (F32 or BF16). */
int synth_add_router_bias(synth_build *b, const char *name, int layer, int64_t E, ms_dtype dt);
void synth_build_free(synth_build *b);

/* Top-level "bits" of the quantization block. */
int synth_recipe_default_bits(const ms_synth_opts *o);
/* The "quantization" block: defaults and the per-module entries, paths as written. */
json_object *synth_quant_block(const ms_synth_opts *o, const synth_build *b);

/* The step3p5 family (synth_step.c). */
bool synth_is_step(const ms_synth_arch *a);
void synth_step_preset(ms_synth_opts *o, bool tiny);
int synth_step_validate(const ms_synth_opts *o, ms_err *err);
int synth_step_inventory(synth_build *b);
json_object *synth_step_config(const ms_synth_opts *o, const synth_build *b);

#endif

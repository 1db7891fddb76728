/* expert_layout.h - the ways checkpoints store routed experts, as one table.
 *
 * A layout names, relative to a layer's MoE module (e.g. "model.layers.3.mlp"),
 * where the gate, up and down projections of the experts are:
 *
 *   id                   kind        gate / up / down                           seen in
 *   mlx-stacked          stacked     switch_mlp.{gate,up,down}_proj  [E, ...]   mlx-lm / mlx-vlm
 *   hf-per-expert        per expert  experts.<e>.{gate,up,down}_proj            HF DeepSeek, GLM, Qwen
 *   mixtral              per expert  experts.<e>.{w1,w3,w2}                     Mixtral, DeepSeek-V4 originals
 *   hf-fused             fused       experts.gate_up_proj [E, 2I, D],           transformers v5
 *                                    experts.down_proj [E, D, I]
 *   hf-stacked           stacked     {gate,up,down}_proj             [E, ...]   Step-3.5 HF (module "moe")
 *
 * Each projection contributes up to four parts to an expert: its weight, MLX
 * affine scales and biases (when quantized) and a linear bias (when the
 * checkpoint has one: `<proj>.bias`, or `<fused>_bias` for fused tensors). The
 * parts present anywhere in the model get indices in a fixed order (gate, up,
 * down; weight, scales, biases, bias), so an MLX affine model has 9 parts and a
 * bf16 one 3. Every layer must use one layout and one format per projection;
 * experts of a layer must agree in format (mixed recipes vary per layer).
 *
 * Which MoE module names to probe is the family's (ms_config.moe_modules),
 * defaulting to mlp, block_sparse_moe, moe, ffn: the probe is by tensor
 * presence, first match wins, so adding a layout is one table row. */
#ifndef MS_EXPERT_LAYOUT_H
#define MS_EXPERT_LAYOUT_H

#include "experts.h"
#include "kernels.h"
#include "safetensors.h"

typedef enum ms_expert_layout_id {
    MS_EXPERTS_MLX_STACKED = 0,
    MS_EXPERTS_HF,
    MS_EXPERTS_MIXTRAL,
    MS_EXPERTS_HF_FUSED,
    MS_EXPERTS_HF_STACKED,
} ms_expert_layout_id;

typedef enum ms_expert_layout_kind { MS_XL_STACKED, MS_XL_PER_EXPERT, MS_XL_FUSED } ms_expert_layout_kind;

enum { MS_PROJ_GATE = 0, MS_PROJ_UP = 1, MS_PROJ_DOWN = 2, MS_EXPERT_PROJS = 3 };
enum { MS_PART_W = 0, MS_PART_SCALES = 1, MS_PART_BIASES = 2, MS_PART_BIAS = 3, MS_PART_KINDS = 4 };

typedef struct ms_expert_layout {
    ms_expert_layout_id id;
    const char *name;                     /* for inspect */
    ms_expert_layout_kind kind;
    /* module paths relative to the MoE module; per expert: %d = expert index;
     * fused: gate holds gate and up ([E, 2I, D]), up is NULL */
    const char *proj[MS_EXPERT_PROJS];
} ms_expert_layout;

/* Every layout, in probe order (MS_EXPERT_LAYOUTS entries). */
extern const ms_expert_layout ms_expert_layouts[];
extern const int ms_n_expert_layouts;

#endif

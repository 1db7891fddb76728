/* fuzz_config.c - libFuzzer target: config.json text through ms_config_parse
 * and ms_qconfig_parse (the architecture numbers and the MLX quantization
 * block), then the derived queries (MoE layer map, softmax scale, per-module
 * quantization lookups) on whatever parsed.
 * Seeds: config.json of synth presets (MLX uniform / mixed recipes, HF, GLM). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "config.h"
#include "deepseek_v3.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fz_cstr(data, size);
    ms_config cfg;
    ms_err err = {0};
    if (ms_config_parse(s, "config.json", &cfg, &err) == 0) {
        int n = ms_config_n_moe_layers(&cfg);
        if (n < 0 || n > cfg.n_layers) abort();
        for (int l = 0; l < cfg.n_layers && l < 4096; l++) (void)ms_config_is_moe_layer(&cfg, l);
        const ms_ds3_config *d = ms_ds3_config_of(&cfg);
        if (d) (void)ms_ds3_softmax_scale(d);
        ms_config_free(&cfg);
    } else if (!err.msg[0]) {
        abort();
    }
    ms_qconfig q;
    ms_err e2 = {0};
    if (ms_qconfig_parse(s, "config.json", &q, &e2) == 0) {
        static const char *paths[] = {"model.embed_tokens", "lm_head", "model.layers.0.self_attn.q_proj",
                                      "model.layers.1.mlp.switch_mlp.down_proj",
                                      "language_model.model.layers.1.mlp.switch_mlp.up_proj", ""};
        ms_qparams p;
        for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) (void)ms_qconfig_lookup(&q, paths[i], &p);
        for (int i = 0; i < q.n_ov; i++) {
            if (ms_qconfig_lookup(&q, q.ov[i].path, &p) != 1) abort(); /* every override is found */
        }
        ms_qconfig_free(&q);
    } else if (!e2.msg[0]) {
        abort();
    }
    free(s);
    return 0;
}

/* fuzz_model.c - libFuzzer target: a hostile config.json in front of real
 * shards. The model directory holds symlinks to the safetensors shards and the
 * index of a generated tiny model (MS_FUZZ_MODEL, set by scripts/fuzz.sh to a
 * `moestream synth --preset tiny` directory) and the fuzz input as config.json;
 * ms_model_open must check every config number against the tensors it finds
 * (layers, experts, widths, quantization bits / group size per module) and
 * either refuse with a message or give a consistent model: then the quant table
 * and every MoE layer's expert ranges are walked and checked against the files.
 * Seeds: the config corpus (tests/fuzz/corpus/config). */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "fuzz_common.h"
#include "model.h"

static char *g_dir; /* the model directory under the scratch dir */

static void setup(void)
{
    const char *src = getenv("MS_FUZZ_MODEL");
    if (!src || !*src) {
        fprintf(stderr, "fuzz_model: set MS_FUZZ_MODEL to a `moestream synth --preset tiny` directory\n");
        exit(2);
    }
    g_dir = fz_path("model");
    if (mkdir(g_dir, 0700) != 0 && errno != EEXIST) abort();
    DIR *d = opendir(src);
    if (!d) {
        fprintf(stderr, "fuzz_model: cannot open %s\n", src);
        exit(2);
    }
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        bool st = l > 12 && !strcmp(de->d_name + l - 12, ".safetensors");
        if (!st && strcmp(de->d_name, "model.safetensors.index.json")) continue;
        char from[4096], to[4096];
        snprintf(from, sizeof from, "%s/%s", src, de->d_name);
        snprintf(to, sizeof to, "%s/%s", g_dir, de->d_name);
        unlink(to);
        if (symlink(from, to) != 0) abort();
        n += st;
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "fuzz_model: no shards in %s\n", src);
        exit(2);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_dir) setup();
    static char *cfg;
    if (!cfg) {
        size_t n = strlen(g_dir) + 16;
        cfg = malloc(n);
        snprintf(cfg, n, "%s/config.json", g_dir);
    }
    fz_write_file(cfg, data, size, NULL, 0, 0);
    ms_model m;
    ms_err err = {0};
    if (ms_model_open(g_dir, &m, &err) < 0) {
        if (!err.msg[0]) abort();
        return 0;
    }
    ms_qrow *rows = NULL;
    int nr = 0;
    ms_err e2 = {0};
    if (ms_model_quant_table(&m, &rows, &nr, &e2) == 0) free(rows);
    int moe = 0;
    for (int l = 0; l < m.cfg.n_layers; l++)
        if (ms_model_moe(&m, l)) moe++;
    /* every expert range lies inside its shard; an expert's ranges add up to its size */
    for (int i = 0; i < m.n_moe_layers; i++) {
        const ms_moe_layer *ml = &m.moe[i];
        for (int e = 0; e < m.cfg.n_routed_experts; e++) {
            uint64_t sum = 0;
            for (int r = 0; r < m.n_parts; r++) {
                const ms_range *rg = &ml->ranges[(size_t)e * m.n_parts + r];
                if (!rg->len) continue;
                if (rg->file < 0 || rg->file >= m.tt.n_files) abort();
                if (rg->offset > m.tt.files[rg->file].size || rg->len > m.tt.files[rg->file].size - rg->offset)
                    abort();
                sum += rg->len;
            }
            if (sum != ml->expert_bytes) abort();
        }
    }
    if (moe != m.n_moe_layers) abort(); /* the layer map agrees with the MoE table */
    if (m.n_moe_layers != ms_config_n_moe_layers(&m.cfg)) abort();
    ms_model_close(&m);
    return 0;
}

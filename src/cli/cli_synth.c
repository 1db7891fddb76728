/* cli_synth.c - `moestream synth`: write a generated model directory (random
 * weights, real hub layout) for tests, demos and benchmarks.
 *
 * Options are collected first and applied on top of the preset afterwards, so
 * their order on the command line does not matter. Every option error, an
 * unknown preset and an --out that cannot be written are usage errors (exit 2)
 * reported before anything is generated; failures while writing exit 1. The
 * progress bar goes to stderr (when it is a terminal, or with --progress); the
 * summary line goes to stdout. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "synth.h"
#include "util.h"

static const char *CMD = "synth";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream synth --preset NAME --out DIR [options]\n"
            "\n"
            "Write a complete model directory with random weights, in exactly the layout the\n"
            "hub uses: config.json, sharded safetensors + model.safetensors.index.json, and a\n"
            "small byte-level BPE tokenizer (tokenizer.json, tokenizer_config.json).\n"
            "  MLX format: what mlx_lm.convert writes (>= 0.30.6): stacked\n"
            "    mlp.switch_mlp.{gate,up,down}_proj, MLA split into self_attn.embed_q /\n"
            "    unembed_out, affine-quantized modules as weight (U32) + scales + biases, the\n"
            "    router mlp.gate.weight unquantized, e_score_correction_bias float32, and\n"
            "    \"quantization\" / \"quantization_config\" in config.json. A module whose input\n"
            "    width is not divisible by the group size stays unquantized (like mlx_lm).\n"
            "  HF format: per-expert mlp.experts.E.{gate,up,down}_proj.weight, kv_b_proj,\n"
            "    all floats in --dtype.\n"
            "  Step presets: MLX is mlx-vlm's step3p7 wrapper (language_model.*, mlp.switch_mlp,\n"
            "    router mlp.gate.gate 8-bit g64 + bf16 router_bias, vision tensors to ignore), HF\n"
            "    the original layout (stacked moe.{gate,up,down}_proj, share_expert, f32\n"
            "    router_bias, zero-centered norms).\n"
            "Generation streams tensor by tensor through a bounded buffer (64 MiB), so the\n"
            "model may be far larger than RAM. Same options and seed => same bytes.\n"
            "\n"
            "required:\n"
            "  --preset NAME        tiny | demo | gigachat-702b | gigachat3-10b | glm-4.7-flash | glm-tiny |\n"
            "                       step-3.7-flash | step-tiny | deepseek-v4-flash | deepseek-v4-tiny\n"
            "                         tiny           deepseek_v3, hidden 128, 4 layers (1 dense), 16 experts\n"
            "                                        top-4 in 4 groups (keep 2), ~2 MB at 4 bits (tests)\n"
            "                         demo           deepseek_v3, hidden 2048, 12 layers, 64 experts top-6,\n"
            "                                        vocab 32000, ~1.6 GB at 4 bits (README demo)\n"
            "                         gigachat-702b  DeepSeek-V3 / GigaChat3.1-702B widths (hidden 7168, 256\n"
            "                                        experts top-8, MLA 1536/512/128/64/128, 128 heads, vocab\n"
            "                                        129280) with 4 layers (1 dense + 3 MoE, ~20 GB at 4 bits);\n"
            "                                        each extra MoE layer adds ~6.3 GB; with --format hf, its\n"
            "                                        MTP layer too\n"
            "                         gigachat3-10b  GigaChat3.1-10B-A1.8B as published: bf16 HF with its MTP\n"
            "                                        layer, 26 layers, no q_lora (the known facts); hidden 1536,\n"
            "                                        64 experts of 1280 top-6 + 2 shared inferred from its\n"
            "                                        10B/1.8B totals (its config.json was not reachable): ~21 GB\n"
            "                         glm-4.7-flash  GLM-4.7-Flash geometry with its real model_type\n"
            "                                        glm4_moe_lite (no YaRN, no group routing, 1.8 scaling),\n"
            "                                        4 of its 47 layers (~1.4 GB at 4 bits); with --format hf,\n"
            "                                        its MTP layer too\n"
            "                         glm-tiny       the same family, hidden 128, 3 layers, 8 experts top-2\n"
            "                                        (tests)\n"
            "                         step-3.7-flash Step-3.7-Flash (step3p5 in the step3p7 wrapper): hidden\n"
            "                                        4096, 45 layers, full attention every 4th (64/8 heads,\n"
            "                                        theta 5e6, half rotary, llama3 x2), sliding otherwise\n"
            "                                        (96/8 heads, window 512), 288 experts of 1280 top-8 +\n"
            "                                        shared 1280 from layer 3, recipe dq4: 197B parameters,\n"
            "                                        108 GiB; --layers 12 ~25 GiB, each MoE layer ~2.5 GiB\n"
            "                         step-tiny      the same family, hidden 128, 6 layers, 16 experts top-4,\n"
            "                                        window 8, clamps that trigger, dq4 (tests)\n"
            "                         deepseek-v4-flash DeepSeek-V4-Flash in the seed's MLX layout: hidden\n"
            "                                        4096, 43 layers, 256 experts of 2048 top-6 (hash-routed\n"
            "                                        first layers), 64 heads of 512, compressed attention,\n"
            "                                        hyper-connections, recipe mixed-3-6: 284B parameters,\n"
            "                                        135 GB; --layers 8 ~24 GiB\n"
            "                         deepseek-v4-tiny  the same family at test size (tests)\n"
            "  --out DIR            output directory (created; must be empty unless --force)\n"
            "\n"
            "format and quantization:\n"
            "  --format mlx|hf      checkpoint layout (default mlx; gigachat3-10b: hf)\n"
            "  --recipe R           MLX quantization recipe (default uniform):\n"
            "                         uniform    every quantizable module at --bits\n"
            "                         mixed-8-5  routed experts 5-bit; attention, shared experts, dense\n"
            "                                    MLPs, embeddings, lm_head 8-bit (GLM-4.7-Flash 8/5 card)\n"
            "                         dq4        experts (routed + shared) 4-bit with down_proj 6-bit in\n"
            "                                    layers < 5 and 5-bit in every 5th layer; everything else\n"
            "                                    8-bit (Step-3.7-Flash DQ4 card)\n"
            "                       mixed recipes write a per-module entry for every quantized module,\n"
            "                       as mlx_lm does; the router is never quantized (deepseek_v3 keeps it\n"
            "                       a bare parameter), except Step's mlp.gate.gate: 8-bit g64 always\n"
            "                       (step presets default to dq4; --format hf makes them uniform)\n"
            "  --bits B             uniform recipe bits: 2, 3, 4, 5, 6 or 8 (default 4)\n"
            "  --group-size G       32, 64 or 128 (default 64)\n"
            "  --dtype T            bf16 | f16 | f32: float tensors and MLX scales/biases (default bf16)\n"
            "\n"
            "architecture overrides (validated):\n"
            "  --layers N           num_hidden_layers (preset default: tiny 4, demo 12, step-3.7-flash 45,\n"
            "                       step-tiny 6, glm-tiny 3, others 4)\n"
            "  --first-dense N      first_k_dense_replace (default 1; step presets: the first MoE layer)\n"
            "  --experts E          n_routed_experts\n"
            "  --top-k K            num_experts_per_tok\n"
            "  --n-group G          n_group (must divide the experts)\n"
            "  --topk-group G       topk_group\n"
            "  --vocab V            vocab_size (>= 512; the tokenizer gets exactly V ids)\n"
            "  --q-lora-rank N|null q_lora_rank; null writes plain self_attn.q_proj\n"
            "  --mtp N              append N MTP layers at index num_hidden_layers (DeepSeek-V3 names:\n"
            "                       enorm, hnorm, eh_proj, shared_head.*, embed_tokens + a full decoder\n"
            "                       layer) and set num_nextn_predict_layers = N (default 0). Runtimes\n"
            "                       must ignore them. mlx_lm drops MTP layers when converting, so with\n"
            "                       --format mlx this emulates a badly converted checkpoint.\n"
            "\n"
            "weights:\n"
            "  --seed S             PRNG seed (default 1)\n"
            "  --route-skew X       expert popularity skew through e_score_correction_bias (default 1;\n"
            "                       0 = uniform routing). At 1 with 256 experts top-8, the top 10%%\n"
            "                       of experts take ~40%% of the selections\n"
            "\n"
            "output:\n"
            "  --shard-size SIZE    max tensor bytes per shard, e.g. 5G, 512M (default 5G like mlx_lm;\n"
            "                       tiny: 512K so tests see several shards); a tensor never splits\n"
            "  --fsync              fsync every shard before closing it\n"
            "  --force              write into a non-empty directory (old model*.safetensors and the\n"
            "                       index there are removed first)\n"
            "  --dry-run            print the plan (tensors, shards, sizes) and write nothing\n"
            "  --progress           show the progress bar even when stderr is not a terminal\n"
            "  --no-progress        never show it\n"
            "  -q, --quiet          no summary line\n"
            "  -h, --help           this help\n"
            "\n"
            "Weights: embeddings N(0,1); projections std 1/sqrt(fan_in), o_proj/down_proj also\n"
            "/sqrt(2*layers); norms 1; quantized tensors are random codes with per-group\n"
            "scales/biases giving zero-mean weights of that std. Activations stay finite.\n"
            "\n"
            "examples:\n"
            "  moestream synth --preset tiny --out /tmp/tiny\n"
            "  moestream synth --preset tiny --format hf --mtp 1 --out /tmp/tiny-hf\n"
            "  moestream synth --preset gigachat-702b --layers 6 --out /data/giga6     (~33 GB)\n"
            "  moestream synth --preset step-3.7-flash --layers 12 --out /data/step12  (~25 GiB)\n");
}

typedef struct progress_state {
    bool on;
    double t0, last;
    int last_len;
    bool finished;
} progress_state;

static void progress_cb(void *ctx, uint64_t done, uint64_t total)
{
    progress_state *ps = ctx;
    if (!ps->on || ps->finished) return;
    double now = ms_now_s();
    if (done == 0) { /* the data starts now (the tokenizer was written before) */
        ps->t0 = now;
        return;
    }
    if (done < total && now - ps->last < 0.1) return;
    ps->finished = done >= total;
    ps->last = now;
    double frac = total ? (double)done / (double)total : 1.0;
    double el = now - ps->t0;
    double rate = el > 0 ? (double)done / el : 0;
    char a[32], b[32], line[160];
    ms_fmt_bytes(done, a, sizeof a);
    ms_fmt_bytes(total, b, sizeof b);
    char bar[31];
    int fill = (int)(frac * 30 + 0.5);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '-';
    bar[30] = 0;
    int n = snprintf(line, sizeof line, "synth [%s] %5.1f%%  %s / %s  %.0f MB/s", bar, frac * 100, a, b, rate / 1e6);
    if (done < total && rate > 0) {
        double eta = (double)(total - done) / rate;
        n += snprintf(line + n, sizeof line - (size_t)n, "  ETA %.0fs", eta);
    }
    int pad = ps->last_len > n ? ps->last_len - n : 0;
    fprintf(stderr, "\r%s%*s", line, pad, "");
    ps->last_len = n;
    fflush(stderr);
}

enum {
    O_PRESET = 1000, O_OUT, O_FORMAT, O_RECIPE, O_BITS, O_GS, O_DTYPE, O_LAYERS, O_FIRST_DENSE, O_EXPERTS,
    O_TOPK, O_NGROUP, O_TOPKGROUP, O_VOCAB, O_QLORA, O_MTP, O_SEED, O_SKEW, O_SHARD, O_FSYNC, O_FORCE, O_DRY,
    O_PROGRESS, O_NOPROGRESS,
};

/* Is dir missing or empty? */
static bool dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return true;
    struct dirent *de;
    bool empty = true;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            empty = false;
            break;
        }
    closedir(d);
    return empty;
}

/* mkdir -p; false + message on failure. */
static bool make_dirs(const char *dir, char *msg, size_t len)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        snprintf(msg, len, "path too long");
        return false;
    }
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(path, 0755) < 0 && errno != EEXIST) {
                snprintf(msg, len, "cannot create %s: %s", path, strerror(errno));
                return false;
            }
            *p = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(msg, len, "not a directory");
        return false;
    }
    if (access(dir, W_OK | X_OK) < 0) {
        snprintf(msg, len, "not writable: %s", strerror(errno));
        return false;
    }
    return true;
}

int cmd_synth(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"preset", required_argument, NULL, O_PRESET},
        {"out", required_argument, NULL, O_OUT},
        {"format", required_argument, NULL, O_FORMAT},
        {"recipe", required_argument, NULL, O_RECIPE},
        {"bits", required_argument, NULL, O_BITS},
        {"group-size", required_argument, NULL, O_GS},
        {"dtype", required_argument, NULL, O_DTYPE},
        {"layers", required_argument, NULL, O_LAYERS},
        {"first-dense", required_argument, NULL, O_FIRST_DENSE},
        {"experts", required_argument, NULL, O_EXPERTS},
        {"top-k", required_argument, NULL, O_TOPK},
        {"n-group", required_argument, NULL, O_NGROUP},
        {"topk-group", required_argument, NULL, O_TOPKGROUP},
        {"vocab", required_argument, NULL, O_VOCAB},
        {"q-lora-rank", required_argument, NULL, O_QLORA},
        {"mtp", required_argument, NULL, O_MTP},
        {"seed", required_argument, NULL, O_SEED},
        {"route-skew", required_argument, NULL, O_SKEW},
        {"shard-size", required_argument, NULL, O_SHARD},
        {"fsync", no_argument, NULL, O_FSYNC},
        {"force", no_argument, NULL, O_FORCE},
        {"dry-run", no_argument, NULL, O_DRY},
        {"progress", no_argument, NULL, O_PROGRESS},
        {"no-progress", no_argument, NULL, O_NOPROGRESS},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *preset = NULL, *out = NULL, *format = NULL, *recipe = NULL, *dtype = NULL, *shard = NULL,
               *qlora = NULL, *skew = NULL, *seed = NULL;
    const char *ints[O_NOPROGRESS - O_PRESET + 1] = {0}; /* raw integer option values, by id - O_PRESET */
#define INTOPT(id) ints[(id) - O_PRESET]
    bool fsync_ = false, force = false, dry = false, quiet = false;
    int progress = -1;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":hq", longopts, NULL)) != -1) {
        switch (c) {
        case O_PRESET: preset = optarg; break;
        case O_OUT: out = optarg; break;
        case O_FORMAT: format = optarg; break;
        case O_RECIPE: recipe = optarg; break;
        case O_DTYPE: dtype = optarg; break;
        case O_SHARD: shard = optarg; break;
        case O_QLORA: qlora = optarg; break;
        case O_SKEW: skew = optarg; break;
        case O_SEED: seed = optarg; break;
        case O_BITS: case O_GS: case O_LAYERS: case O_FIRST_DENSE: case O_EXPERTS: case O_TOPK: case O_NGROUP:
        case O_TOPKGROUP: case O_VOCAB: case O_MTP: INTOPT(c) = optarg; break;
        case O_FSYNC: fsync_ = true; break;
        case O_FORCE: force = true; break;
        case O_DRY: dry = true; break;
        case O_PROGRESS: progress = 1; break;
        case O_NOPROGRESS: progress = 0; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option(CMD, c, argv);
        }
    }
    if (optind < argc) return ms_cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!preset) return ms_cli_usage_error(CMD, "--preset is required (one of: %s)", ms_synth_preset_list());
    if (!out && !dry) return ms_cli_usage_error(CMD, "--out DIR is required");
    if (out && !*out) return ms_cli_usage_error(CMD, "--out: empty directory name");

    ms_err err = {0};
    ms_synth_opts o;
    if (ms_synth_preset(preset, &o, &err) < 0) return ms_cli_usage_error(CMD, "%s", err.msg);
    if (format && ms_synth_parse_format(format, &o.format, &err) < 0) return ms_cli_usage_error(CMD, "%s", err.msg);
    if (recipe && ms_synth_parse_recipe(recipe, &o.recipe, &err) < 0) return ms_cli_usage_error(CMD, "%s", err.msg);
    if (o.format == MS_SYNTH_HF && !recipe) o.recipe = MS_SYNTH_UNIFORM; /* a preset's MLX recipe (step: dq4) */
    if (o.format == MS_SYNTH_HF && (recipe || INTOPT(O_BITS) || INTOPT(O_GS)))
        return ms_cli_usage_error(CMD, "--recipe, --bits and --group-size apply to --format mlx only");
    if (INTOPT(O_BITS) && o.recipe != MS_SYNTH_UNIFORM)
        return ms_cli_usage_error(CMD, "--bits applies to --recipe uniform only (%s fixes its bit widths)",
                                  ms_synth_recipe_name(o.recipe));
    if (dtype) {
        if (!strcmp(dtype, "bf16")) o.dtype = MS_DT_BF16;
        else if (!strcmp(dtype, "f16")) o.dtype = MS_DT_F16;
        else if (!strcmp(dtype, "f32")) o.dtype = MS_DT_F32;
        else return ms_cli_usage_error(CMD, "--dtype: unknown type '%s' (expected bf16, f16 or f32)", dtype);
    }
    static const struct {
        int id;
        const char *name;
        long long lo, hi;
    } int_opts[] = {
        {O_BITS, "--bits", 1, 32},         {O_GS, "--group-size", 1, 1 << 20},
        {O_LAYERS, "--layers", 1, 1024},   {O_FIRST_DENSE, "--first-dense", 0, 1024},
        {O_EXPERTS, "--experts", 1, 65536}, {O_TOPK, "--top-k", 1, 65536},
        {O_NGROUP, "--n-group", 1, 65536}, {O_TOPKGROUP, "--topk-group", 1, 65536},
        {O_VOCAB, "--vocab", 512, 1 << 24}, {O_MTP, "--mtp", 0, 16},
    };
    for (size_t i = 0; i < MS_ARRAY_LEN(int_opts); i++) {
        const char *s = INTOPT(int_opts[i].id);
        if (!s) continue;
        long long v;
        if (ms_parse_int(s, int_opts[i].lo, int_opts[i].hi, &v, int_opts[i].name, &err) < 0)
            return ms_cli_usage_error(CMD, "%s", err.msg);
        switch (int_opts[i].id) {
        case O_BITS: o.bits = (int)v; break;
        case O_GS: o.group_size = (int)v; break;
        case O_LAYERS: o.arch.n_layers = (int)v; break;
        case O_FIRST_DENSE: o.arch.first_k_dense_replace = (int)v; break;
        case O_EXPERTS: o.arch.n_routed_experts = (int)v; break;
        case O_TOPK: o.arch.n_experts_per_tok = (int)v; break;
        case O_NGROUP: o.arch.n_group = (int)v; break;
        case O_TOPKGROUP: o.arch.topk_group = (int)v; break;
        case O_VOCAB: o.arch.vocab_size = (int)v; break;
        case O_MTP: o.arch.n_mtp = (int)v; break;
        }
    }
    /* --layers below the preset's first_k_dense_replace makes every layer dense (unless --first-dense says otherwise) */
    if (!INTOPT(O_MTP) && o.format == MS_SYNTH_HF) o.arch.n_mtp = o.arch.n_mtp_hf; /* as published */
    if (!INTOPT(O_FIRST_DENSE) && o.arch.first_k_dense_replace > o.arch.n_layers)
        o.arch.first_k_dense_replace = o.arch.n_layers;
    /* likewise deepseek_v4's hash-routed layers */
    if (o.arch.v4.n_hash_layers > o.arch.n_layers) o.arch.v4.n_hash_layers = o.arch.n_layers;
    if (qlora) {
        long long v;
        if (!strcmp(qlora, "null") || !strcmp(qlora, "0")) o.arch.q_lora_rank = 0;
        else if (ms_parse_int(qlora, 1, 1 << 16, &v, "--q-lora-rank", &err) < 0)
            return ms_cli_usage_error(CMD, "%s (or null)", err.msg);
        else o.arch.q_lora_rank = (int)v;
    }
    if (seed) {
        long long v;
        if (ms_parse_int(seed, 0, INT64_MAX, &v, "--seed", &err) < 0) return ms_cli_usage_error(CMD, "%s", err.msg);
        o.seed = (uint64_t)v;
    }
    if (skew && ms_parse_double(skew, &o.route_skew, "--route-skew", &err) < 0)
        return ms_cli_usage_error(CMD, "%s", err.msg);
    if (shard && ms_parse_size(shard, &o.shard_bytes, "--shard-size", &err) < 0)
        return ms_cli_usage_error(CMD, "%s", err.msg);
    o.fsync = fsync_;
    if (ms_synth_validate(&o, &err) < 0) return ms_cli_usage_error(CMD, "%s", err.msg);

    if (dry) {
        ms_stw_plan plan;
        ms_synth_result r;
        if (ms_synth_plan(&o, &plan, &r, &err) < 0) return ms_cli_fail(CMD, &err);
        const ms_synth_arch *a = &o.arch;
        int n_moe = 0;
        for (int l = 0; l < a->n_layers; l++) n_moe += l >= a->first_k_dense_replace && l % a->moe_layer_freq == 0;
        char q[64], b1[32], b2[32];
        if (o.format == MS_SYNTH_HF) snprintf(q, sizeof q, "hf %s", dtype ? dtype : "bf16");
        else if (o.recipe == MS_SYNTH_UNIFORM) snprintf(q, sizeof q, "mlx %d-bit g%d", o.bits, o.group_size);
        else snprintf(q, sizeof q, "mlx %s g%d", ms_synth_recipe_name(o.recipe), o.group_size);
        printf("%s (%s): %d layers (%d dense, %d MoE)%s, %d experts top-%d, hidden %d, vocab %d, %s\n", o.preset,
               a->model_type, a->n_layers, a->n_layers - n_moe, n_moe, a->n_mtp ? " + MTP" : "", a->n_routed_experts,
               a->n_experts_per_tok, a->hidden_size, a->vocab_size, q);
        printf("%d tensors, %.3f B parameters, %d shard%s, data %s (%" PRIu64 " bytes), files %s\n", r.n_tensors,
               (double)r.n_params / 1e9, r.n_shards, r.n_shards == 1 ? "" : "s",
               ms_fmt_bytes(r.tensor_bytes, b1, sizeof b1), r.tensor_bytes, ms_fmt_bytes(r.file_bytes, b2, sizeof b2));
        for (int s = 0; s < plan.n_shards; s++)
            printf("  %s  %s  %d tensors\n", plan.shards[s].name,
                   ms_fmt_bytes(plan.shards[s].file_size, b1, sizeof b1), plan.shards[s].count);
        ms_stw_plan_free(&plan);
        return 0;
    }

    char msg[4400];
    struct stat st;
    bool existed = stat(out, &st) == 0;
    if (existed && !S_ISDIR(st.st_mode)) return ms_cli_usage_error(CMD, "--out %s: exists and is not a directory", out);
    if (existed && !force && !dir_empty(out))
        return ms_cli_usage_error(CMD, "--out %s: directory is not empty (use --force to write into it)", out);
    if (!make_dirs(out, msg, sizeof msg)) return ms_cli_usage_error(CMD, "--out %s: %s", out, msg);

    progress_state ps = {.on = progress == 1 || (progress < 0 && isatty(STDERR_FILENO)), .t0 = ms_now_s()};
    o.progress = progress_cb;
    o.progress_ctx = &ps;
    ms_synth_result r;
    int rc = ms_synth_write(out, &o, &r, &err);
    if (ps.on && ps.last_len) fputc('\n', stderr);
    if (rc < 0) return ms_cli_fail(CMD, &err);
    if (!quiet) {
        char b1[32];
        char q[64];
        if (o.format == MS_SYNTH_HF) snprintf(q, sizeof q, "hf %s", dtype ? dtype : "bf16");
        else if (o.recipe == MS_SYNTH_UNIFORM) snprintf(q, sizeof q, "mlx %d-bit g%d", o.bits, o.group_size);
        else snprintf(q, sizeof q, "mlx %s g%d", ms_synth_recipe_name(o.recipe), o.group_size);
        printf("synth: wrote %s (%s) to %s: %d tensors in %d shard%s, %s in %.2f s (%.1f MB/s)\n", o.preset, q, out,
               r.n_tensors, r.n_shards, r.n_shards == 1 ? "" : "s", ms_fmt_bytes(r.file_bytes, b1, sizeof b1),
               r.seconds, r.seconds > 0 ? (double)r.file_bytes / 1e6 / r.seconds : 0.0);
    }
    return 0;
}

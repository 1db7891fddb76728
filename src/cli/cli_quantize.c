/* cli_quantize.c - `moestream quantize IN OUT`: HF bf16/f16/f32 -> MLX affine. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "quantize.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream quantize IN_DIR OUT_DIR [--bits B] [--group-size G] [--recipe R] [options]\n"
            "\n"
            "Convert a Hugging Face float checkpoint (bf16/f16/f32 safetensors, per-expert tensors) into\n"
            "an MLX affine-quantized checkpoint, the way `mlx_lm.convert -q` does: experts stacked into\n"
            "switch_mlp, kv_b_proj split into embed_q/unembed_out, MTP layers dropped, every linear whose\n"
            "input width divides by the group size quantized (router and norms stay float).\n"
            "\n"
            "  --bits B           2, 3, 4, 5, 6 or 8 (default 4)\n"
            "  --group-size G     32, 64 or 128 (default 64)\n"
            "  --recipe R         uniform (default); mixed-8-5 (8-bit everything, 5-bit routed experts);\n"
            "                     dq4 (8-bit backbone, 4-bit experts, higher-bit down_proj early);\n"
            "                     mixed_2_6, mixed_3_4, mixed_3_6, mixed_4_6 (mlx-lm's built-in mixes)\n"
            "  --dtype T          float tensors and scales: bf16, f16, f32 (default: as the source)\n"
            "  --shard-size SIZE  max bytes per shard (default 5G)\n");
}

static void progress(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    if (!isatty(2) || !total) return;
    char a[32], b[32];
    fprintf(stderr, "\rquantize: %s / %s", ms_fmt_bytes(done, a, sizeof a), ms_fmt_bytes(total, b, sizeof b));
    if (done >= total) fprintf(stderr, "\n");
}

int cmd_quantize(int argc, char **argv)
{
    static const struct option opts[] = {{"bits", required_argument, 0, 'b'},       {"group-size", required_argument, 0, 'g'},
                                         {"recipe", required_argument, 0, 'r'},     {"dtype", required_argument, 0, 'd'},
                                         {"shard-size", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'},
                                         {0}};
    ms_quantize_opts o = {.bits = 4, .group_size = 64, .recipe = "uniform", .dtype = MS_DT_COUNT,
                          .shard_bytes = 5ull << 30, .progress = progress};
    ms_err err = {0};
    long long v;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":b:g:r:d:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (ms_parse_int(optarg, 1, 64, &v, "--bits", &err) < 0) return ms_cli_usage_error("quantize", "%s", err.msg);
            o.bits = (int)v;
            break;
        case 'g':
            if (ms_parse_int(optarg, 1, 4096, &v, "--group-size", &err) < 0)
                return ms_cli_usage_error("quantize", "%s", err.msg);
            o.group_size = (int)v;
            break;
        case 'r': o.recipe = optarg; break;
        case 'd':
            if (!strcmp(optarg, "bf16")) o.dtype = MS_DT_BF16;
            else if (!strcmp(optarg, "f16")) o.dtype = MS_DT_F16;
            else if (!strcmp(optarg, "f32")) o.dtype = MS_DT_F32;
            else return ms_cli_usage_error("quantize", "--dtype %s: use bf16, f16 or f32", optarg);
            break;
        case 's':
            if (ms_parse_size(optarg, &o.shard_bytes, "--shard-size", &err) < 0)
                return ms_cli_usage_error("quantize", "%s", err.msg);
            break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("quantize", c, argv);
        }
    }
    if (argc - optind != 2) return ms_cli_usage_error("quantize", "expected IN_DIR and OUT_DIR");
    ms_quantize_result r;
    if (ms_quantize(argv[optind], argv[optind + 1], &o, &r, &err) < 0) return ms_cli_fail("quantize", &err);
    char b[32];
    fprintf(stderr, "quantize: wrote %s (%d tensors, %d shard%s, %s) in %.1f s\n", argv[optind + 1], r.n_tensors,
            r.n_shards, r.n_shards == 1 ? "" : "s", ms_fmt_bytes(r.bytes, b, sizeof b), r.seconds);
    return 0;
}

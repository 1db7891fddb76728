/* bench_prefill.c - `moestream bench prefill`: prompt-processing tok/s (the
 * time to first token) for prompts of given lengths, with the model loaded
 * once per length and the prompt run --repeat times from an empty context
 * (load time excluded; the first repeat also warms the expert cache, so out of
 * core it is reported separately as cold). Prompt ids are a fixed pseudo-random
 * sequence of the vocabulary, the same for every engine and run, so figures
 * can be set beside llama.cpp's llama-bench pp<N> on the same weights
 * (bench/peer_llamacpp.sh). Figures only; nothing passes or fails on time. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "engine.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream bench prefill --model DIR [options]\n"
            "\n"
            "Prefill tok/s (prompt tokens / time to the first token's logits) per prompt length.\n"
            "\n"
            "  --model DIR          model directory\n"
            "  --tokens LIST        prompt lengths, e.g. 512,2048 (default 512)\n"
            "  --repeat N           runs per length (default 3; min / median of the warm runs)\n"
            "  --ram SIZE           budget (default: the run default)\n"
            "  --io BACKEND         uring (default) | pread | resident | mmap\n"
            "  --batch N            prefill chunk (default: chosen from the budget, as run)\n"
            "  --threads N          compute threads (default: physical cores)\n"
            "  --json               one JSON object per length\n");
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int ms_bench_prefill(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"tokens", required_argument, 0, 't'},
        {"repeat", required_argument, 0, 'r'},  {"ram", required_argument, 0, 'R'},
        {"io", required_argument, 0, 'i'},      {"batch", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 'T'}, {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},          {0}};
    const char *model = NULL, *toks = "512", *io = "uring";
    long long repeat = 3, batch = 0, threads = 0;
    uint64_t ram = 0;
    bool json = false;
    ms_err err = {0};
    int o, bad;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":m:t:r:R:i:b:T:jh", opts, NULL)) != -1) {
        bad = 0;
        switch (o) {
        case 'm': model = optarg; break;
        case 't': toks = optarg; break;
        case 'r': bad = ms_parse_int(optarg, 1, 100, &repeat, "--repeat", &err); break;
        case 'R': bad = ms_parse_size(optarg, &ram, "--ram", &err); break;
        case 'i':
            if (strcmp(optarg, "uring") && strcmp(optarg, "pread") && strcmp(optarg, "resident") && strcmp(optarg, "mmap"))
                bad = ms_errf(&err, EINVAL, "--io %s: use uring, pread, resident or mmap", optarg);
            io = optarg;
            break;
        case 'b': bad = ms_parse_int(optarg, 1, 1 << 16, &batch, "--batch", &err); break;
        case 'T': bad = ms_parse_int(optarg, 1, 1024, &threads, "--threads", &err); break;
        case 'j': json = true; break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("bench prefill", o, argv);
        }
        if (bad < 0) return ms_cli_usage_error("bench prefill", "%s", err.msg);
    }
    if (optind != argc) return ms_cli_usage_error("bench prefill", "unexpected argument '%s'", argv[optind]);
    if (!model) return ms_cli_usage_error("bench prefill", "--model is required");
    long long *lens;
    int n_len;
    if (ms_parse_int_list(toks, 1, 1 << 20, &lens, &n_len, "--tokens", &err) < 0)
        return ms_cli_usage_error("bench prefill", "%s", err.msg);
    if (!json) printf("%-8s %-6s %-9s %12s %12s %12s\n", "tokens", "batch", "io", "cold tok/s", "min tok/s", "median tok/s");
    int rc = 0;
    for (int li = 0; li < n_len && rc == 0; li++) {
        int n = (int)lens[li];
        ms_engine_opts eo = {.ram = ram, .io = io, .threads = (int)threads, .ctx = n + 1, .batch = (int)batch};
        ms_engine *e;
        if ((rc = ms_engine_open(model, &eo, &e, &err)) < 0) break;
        int V = ms_engine_vocab(e);
        int *ids = malloc((size_t)n * sizeof *ids);
        float *lg = malloc((size_t)V * sizeof *lg);
        double *ts = malloc((size_t)repeat * sizeof *ts);
        if (!ids || !lg || !ts) rc = ms_errf(&err, ENOMEM, "out of memory");
        for (int i = 0; i < n && ids; i++) ids[i] = (int)(((uint64_t)i * 7919u + 13u) % (uint64_t)V);
        double cold = 0;
        for (int r = 0; r < repeat + 1 && rc == 0; r++) {
            ms_engine_reset(e);
            double t0 = ms_now_s();
            rc = ms_engine_eval(e, ids, n, lg, false, &err);
            double tps = (double)n / (ms_now_s() - t0);
            if (r == 0) cold = tps;
            else ts[r - 1] = tps;
        }
        if (rc == 0) {
            qsort(ts, (size_t)repeat, sizeof *ts, cmp_d);
            double med = ts[repeat / 2];
            if (json)
                printf("{\"tokens\":%d,\"batch\":%d,\"io\":\"%s\",\"threads\":%d,\"cold_tok_s\":%.3f,\"min_tok_s\":%.3f,"
                       "\"median_tok_s\":%.3f,\"max_tok_s\":%.3f}\n",
                       n, e->batch, io, e->threads, cold, ts[0], med, ts[repeat - 1]);
            else
                printf("%-8d %-6d %-9s %12.2f %12.2f %12.2f\n", n, e->batch, io, cold, ts[0], med);
            fflush(stdout);
        }
        free(ids);
        free(lg);
        free(ts);
        ms_engine_close(e);
    }
    free(lens);
    return rc < 0 ? ms_cli_fail("bench prefill", &err) : 0;
}

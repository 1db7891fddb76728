/* cli_logits.c - `moestream logits`: print the logits of a token sequence as JSON,
 * for verification against an independent implementation. By default tokens go
 * one at a time through the decode path (KV cache); --prefill sends them as one
 * chunk through the prefill path. Both must agree. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_engine.h"
#include "engine.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream logits --model DIR --tokens IDS [options]\n"
            "\n"
            "Print {\"n_vocab\":V,\"positions\":[{\"pos\":P,\"logits\":[...]}, ...]} for a token sequence.\n"
            "\n"
            "  --model DIR        model directory (config.json + safetensors)\n"
            "  --tokens IDS       comma-separated token ids, e.g. 1,2,3\n"
            "  --all-positions    logits after every position (default: the last position only)\n"
            "  --prefill          run all tokens as one chunk through the prefill path\n"
            "                     (default: one at a time through the decode path)\n"
            "  --mtp              also the MTP draft head's logits: \"mtp_positions\":[{\"pos\":t,\n"
            "                     \"logits\":[...]}] for t = 0..T-2, the draft for token t+2 from the\n"
            "                     main hidden state at t and the true token t+1 (teacher forcing)\n"
            "(--batch defaults to all tokens with --prefill, --ctx to the number of tokens)\n\n");
    ms_cli_engine_help(f);
}

int cmd_logits(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},   {"tokens", required_argument, 0, 't'},
                                         {"all-positions", no_argument, 0, 'a'}, {"prefill", no_argument, 0, 'p'},
                                         {"help", no_argument, 0, 'h'},
                                         MS_CLI_ENGINE_LONGOPTS_NO_MTP,
                                         {"mtp", no_argument, 0, 'M'},
                                         {0}};
    const char *model = NULL, *toks = NULL;
    bool all = false, prefill = false, mtp = false;
    ms_engine_opts eo = {0};
    ms_err err = {0};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":m:t:aph", opts, NULL)) != -1) {
        int h = ms_cli_engine_opt(o, optarg, &eo, &err);
        if (h < 0) return ms_cli_usage_error("logits", "%s", err.msg);
        if (h > 0) continue;
        switch (o) {
        case 'm': model = optarg; break;
        case 't': toks = optarg; break;
        case 'a': all = true; break;
        case 'p': prefill = true; break;
        case 'M': mtp = true; break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("logits", o, argv);
        }
    }
    if (optind != argc) return ms_cli_usage_error("logits", "unexpected argument '%s'", argv[optind]);
    if (!model || !toks) return ms_cli_usage_error("logits", "--model and --tokens are required");
    long long *ids64;
    int n;
    if (ms_parse_int_list(toks, 0, 1 << 30, &ids64, &n, "--tokens", &err) < 0) return ms_cli_usage_error("logits", "%s", err.msg);
    int *ids = malloc((size_t)n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = (int)ids64[i];
    free(ids64);
    if (!eo.ctx) eo.ctx = n;
    if (!prefill) eo.batch = 1;
    else if (!eo.batch) eo.batch = n;
    if (mtp) eo.mtp = 1;
    ms_engine *e;
    if (ms_engine_open(model, &eo, &e, &err) < 0) {
        free(ids);
        return ms_cli_fail("logits", &err);
    }
    int V = ms_engine_vocab(e), D = e->model.cfg.hidden_size;
    float *lg = malloc((size_t)n * V * sizeof *lg);
    float *mlg = mtp ? malloc((size_t)n * V * sizeof *mlg) : NULL;
    float *hid = malloc((size_t)n * D * sizeof *hid);
    int *pos = malloc((size_t)n * sizeof *pos);
    int rc = 0;
    if (!lg || !hid || !pos || (mtp && !mlg)) rc = ms_errf(&err, ENOMEM, "out of memory");
    for (int i = 0; i < n && rc == 0; i++) pos[i] = i;
    /* main model: one step of every token (prefill) or one step per token (decode),
     * keeping each position's final hidden state for the draft head */
    int step = prefill ? e->batch : 1;
    for (int i = 0; i < n && rc == 0; i += step) {
        int c = MS_MIN(step, n - i);
        ms_batch b = {.n = c, .tokens = ids + i, .pos = pos + i, .logits = lg + (size_t)i * V, .all_logits = true,
                      .hidden = hid + (size_t)i * D};
        rc = ms_engine_step(e, &b, false, &err);
    }
    /* draft head: row t = (token t+1, hidden at t) at position t */
    for (int i = 0; mtp && i < n - 1 && rc == 0; i += step) {
        int c = MS_MIN(step, n - 1 - i);
        ms_batch b = {.n = c, .tokens = ids + i + 1, .pos = pos + i, .logits = mlg + (size_t)i * V, .all_logits = true};
        rc = ms_engine_mtp(e, &b, hid + (size_t)i * D, false, &err);
    }
    if (rc == 0) {
        printf("{\"n_vocab\":%d,\"positions\":[", V);
        for (int p = all ? 0 : n - 1, first = 1; p < n; p++, first = 0) {
            printf("%s{\"pos\":%d,\"logits\":[", first ? "" : ",", p);
            const float *r = lg + (size_t)p * V;
            for (int v = 0; v < V; v++) printf("%s%.9g", v ? "," : "", r[v]);
            printf("]}");
        }
        printf("]");
        if (mtp) {
            printf(",\"mtp_positions\":[");
            for (int p = all ? 0 : MS_MAX(0, n - 2), first = 1; p < n - 1; p++, first = 0) {
                printf("%s{\"pos\":%d,\"logits\":[", first ? "" : ",", p);
                const float *r = mlg + (size_t)p * V;
                for (int v = 0; v < V; v++) printf("%s%.9g", v ? "," : "", r[v]);
                printf("]}");
            }
            printf("]");
        }
        printf("}\n");
    }
    free(mlg);
    free(hid);
    free(pos);
    free(lg);
    free(ids);
    ms_engine_close(e);
    return rc < 0 ? ms_cli_fail("logits", &err) : 0;
}

/* cli_plan.c - `moestream plan`: how a RAM budget splits for a model (resident,
 * KV cache, scratch, overhead, expert cache and its slots), the minimum budget,
 * and a rough tokens/s ceiling from disk bandwidth and an expected hit rate.
 * Refuses (exit 1) with the numbers when the budget is too small. */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "cli.h"
#include "model.h"
#include "plan.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream plan --model DIR [--ram SIZE] [options]\n"
            "\n"
            "Split a RAM budget into resident weights, KV cache, scratch, fixed overhead and the expert\n"
            "cache, without loading anything. Exit 1 (with the numbers) if the budget is below the minimum.\n"
            "\n"
            "  --model DIR        model directory\n"
            "  --ram SIZE         the budget (default: 85%% of MemAvailable minus 1 GiB)\n"
            "  --ctx N            context length (default min(4096, model maximum))\n"
            "  --batch N          prefill chunk in tokens (default: 512, 256 or 128, the largest whose\n"
            "                     scratch fits 1/32 of --ram; the same default as run)\n"
            "  --threads N        compute threads (default: physical cores)\n"
            "  --kv f32|bf16      KV-cache element type (default f32)\n"
            "  --disk-gbps X      device read bandwidth for the estimate (default 3.0)\n"
            "  --hit-rate H       expected expert-cache hit rate for the estimate (default: the cached\n"
            "                     fraction of the experts, what uniform routing would give; real routing\n"
            "                     is skewed and does better: measure it with `run --trace` + `simulate`)\n"
            "  --json             one JSON object\n");
}

int cmd_plan(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"ram", required_argument, 0, 'r'},
        {"ctx", required_argument, 0, 'c'},     {"batch", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 'T'}, {"disk-gbps", required_argument, 0, 'd'},
        {"hit-rate", required_argument, 0, 'H'}, {"json", no_argument, 0, 'j'},
        {"kv", required_argument, 0, 'k'},
        {"help", no_argument, 0, 'h'},          {0}};
    const char *model = NULL;
    uint64_t ram = 0;
    long long ctx = 0, batch = 0, threads = 0;
    double gbps = 3.0, hit = -1;
    bool json = false, kv_bf16 = false;
    ms_err err = {0};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":m:r:c:b:T:d:H:k:jh", opts, NULL)) != -1) {
        int bad = 0;
        switch (o) {
        case 'm': model = optarg; break;
        case 'r': bad = ms_parse_size(optarg, &ram, "--ram", &err); break;
        case 'c': bad = ms_parse_int(optarg, 1, 1 << 24, &ctx, "--ctx", &err); break;
        case 'b': bad = ms_parse_int(optarg, 1, 1 << 16, &batch, "--batch", &err); break;
        case 'T': bad = ms_parse_int(optarg, 1, 1024, &threads, "--threads", &err); break;
        case 'd':
            bad = ms_parse_double(optarg, &gbps, "--disk-gbps", &err);
            if (!bad && gbps <= 0) bad = ms_errf(&err, EINVAL, "--disk-gbps must be positive");
            break;
        case 'H':
            bad = ms_parse_double(optarg, &hit, "--hit-rate", &err);
            if (!bad && (hit < 0 || hit > 1)) bad = ms_errf(&err, EINVAL, "--hit-rate must be in [0, 1]");
            break;
        case 'j': json = true; break;
        case 'k':
            if (strcmp(optarg, "f32") && strcmp(optarg, "bf16")) bad = ms_errf(&err, EINVAL, "--kv %s: use f32 or bf16", optarg);
            kv_bf16 = !strcmp(optarg, "bf16");
            break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("plan", o, argv);
        }
        if (bad < 0) return ms_cli_usage_error("plan", "%s", err.msg);
    }
    if (optind < argc && !model) model = argv[optind++];
    if (optind != argc) return ms_cli_usage_error("plan", "unexpected argument '%s'", argv[optind]);
    if (!model) return ms_cli_usage_error("plan", "--model is required");
    ms_model m;
    if (ms_model_open(model, &m, &err) < 0) return ms_cli_fail("plan", &err);
    if (!ram) ram = ms_plan_default_budget();
    if (!ctx) ctx = MS_MIN((int64_t)4096, m.cfg.max_position_embeddings);
    ms_plan p;
    ms_plan_opts po = {.budget = ram, .ctx = (int)ctx, .batch = (int)batch, .threads = (int)threads, .kv_bf16 = kv_bf16};
    if (ms_plan_make(&m, &po, &p, &err) < 0) {
        ms_model_close(&m);
        return ms_cli_fail("plan", &err);
    }
    double frac = p.total_experts ? (double)p.expert_slots / (double)p.total_experts : 1;
    if (hit < 0) hit = frac;
    double avg_expert = p.total_experts ? (double)m.expert_bytes_total / (double)p.total_experts : 0;
    double miss_bytes = (1 - hit) * m.n_moe_layers * m.cfg.n_experts_per_tok * avg_expert;
    double tok_s = miss_bytes > 0 ? gbps * 1e9 / miss_bytes : 0;
    if (json) {
        json_object *r = json_object_new_object();
#define I(k, v) json_object_object_add(r, k, json_object_new_int64((int64_t)(v)))
        I("ram_budget_bytes", p.budget);
        I("resident_bytes", p.resident_bytes);
        I("kv_bytes", p.kv_bytes);
        I("scratch_bytes", p.scratch_bytes);
        I("overhead_bytes", p.overhead_bytes);
        I("cache_bytes", p.cache_used);
        I("expert_slots", p.expert_slots);
        I("total_experts", p.total_experts);
        I("size_classes", p.n_classes);
        I("min_ram_bytes", p.min_budget);
        I("all_fit_ram_bytes", p.all_fit_budget);
        I("ctx", p.ctx);
        I("batch", p.batch);
        I("threads", p.threads);
#undef I
        json_object_object_add(r, "fits", json_object_new_boolean(p.fits));
        json_object_object_add(r, "all_fit", json_object_new_boolean(p.all_fit));
        json_object_object_add(r, "cached_fraction", json_object_new_double(frac));
        json_object_object_add(r, "assumed_hit_rate", json_object_new_double(hit));
        json_object_object_add(r, "miss_bytes_per_token", json_object_new_double(miss_bytes));
        json_object_object_add(r, "io_bound_tok_s", json_object_new_double(tok_s));
        printf("%s\n", json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
        json_object_put(r);
    } else {
        char b[8][32];
        printf("budget         %s\n", ms_fmt_bytes(p.budget, b[0], 32));
        printf("  resident     %s  (embeddings, attention, routers, shared experts, dense layers, lm_head)\n",
               ms_fmt_bytes(p.resident_bytes, b[0], 32));
        printf("  KV cache     %s  (ctx %d)\n", ms_fmt_bytes(p.kv_bytes, b[0], 32), p.ctx);
        printf("  scratch      %s  (batch %d, %d threads)\n", ms_fmt_bytes(p.scratch_bytes, b[0], 32), p.batch,
               p.threads);
        printf("  overhead     %s  (fixed allowance)\n", ms_fmt_bytes(p.overhead_bytes, b[0], 32));
        if (p.fits)
            printf("  expert cache %s  = %lld of %lld experts (%.1f%%, %d size class%s)\n",
                   ms_fmt_bytes(p.cache_used, b[0], 32), (long long)p.expert_slots, (long long)p.total_experts,
                   100 * frac, p.n_classes, p.n_classes == 1 ? "" : "es");
        printf("minimum --ram  %s\n", ms_fmt_bytes(p.min_budget, b[0], 32));
        printf("all experts    cached from --ram %s\n", ms_fmt_bytes(p.all_fit_budget, b[0], 32));
        if (p.fits && m.n_moe_layers)
            printf("estimate       hit rate %.2f -> %s read per token -> at most %.2f tok/s at %.1f GB/s\n", hit,
                   ms_fmt_bytes((uint64_t)miss_bytes, b[0], 32), tok_s, gbps);
    }
    int rc = 0;
    if (!p.fits) {
        ms_plan_refuse(&p, &err);
        rc = ms_cli_fail("plan", &err);
    }
    ms_model_close(&m);
    return rc;
}

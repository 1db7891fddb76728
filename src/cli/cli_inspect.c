/* cli_inspect.c - `moestream inspect DIR [--json] [--ctx N]`: what a model directory
 * holds and what it needs: architecture, tensor count, resident vs routed-expert
 * bytes, bytes per expert (per layer when they differ), a quantization map like
 * the hub cards' tables, and the smallest --ram that runs it. */
#include <getopt.h>
#include <inttypes.h>
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
            "usage: moestream inspect DIR [--json] [--ctx N]\n"
            "\n"
            "Summarize a model directory (config.json + safetensors shards) without loading weights.\n"
            "\n"
            "  --json     print one JSON object (model_type, resident_bytes, expert_bytes, n_moe_layers,\n"
            "             n_experts, top_k, min_ram_bytes, quantization rows, ...)\n"
            "  --ctx N    context length used for the minimum-budget figure (default 4096)\n");
}

static const char *layout_name(const ms_expert_layout *l) { return l ? l->name : "none"; }

static const char *fmt_of(const ms_linear *l, char *buf, size_t n)
{
    if (l->type == MS_WT_AFFINE) snprintf(buf, n, "%d-bit g%d", l->bits, l->group_size);
    else snprintf(buf, n, "%s", l->type == MS_WT_F32 ? "f32" : l->type == MS_WT_F16 ? "f16" : "bf16");
    return buf;
}

int cmd_inspect(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, 0, 'j'}, {"ctx", required_argument, 0, 'c'}, {"help", no_argument, 0, 'h'}, {0}};
    bool json = false;
    long long ctx = 4096;
    ms_err err = {0};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":jc:h", opts, NULL)) != -1) {
        switch (o) {
        case 'j': json = true; break;
        case 'c':
            if (ms_parse_int(optarg, 1, 1 << 24, &ctx, "--ctx", &err) < 0) return ms_cli_usage_error("inspect", "%s", err.msg);
            break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("inspect", o, argv);
        }
    }
    if (optind != argc - 1) return ms_cli_usage_error("inspect", "expected exactly one model directory");
    const char *dir = argv[optind];
    ms_model m;
    if (ms_model_open(dir, &m, &err) < 0) return ms_cli_fail("inspect", &err);
    ms_plan plan;
    if (ms_plan_compute(&m, 0, (int)ctx, 0, 0, &plan, &err) < 0) {
        ms_model_close(&m);
        return ms_cli_fail("inspect", &err);
    }
    ms_qrow *rows = NULL;
    int nrows = 0;
    if (ms_model_quant_table(&m, &rows, &nrows, &err) < 0) {
        ms_model_close(&m);
        return ms_cli_fail("inspect", &err);
    }
    const ms_config *c = &m.cfg;
    int rc = 0;
    char b1[32], b2[32], b3[32], f0[24], f1[24], f2[24];
    if (json) {
        json_object *r = json_object_new_object();
        json_object_object_add(r, "model_type", json_object_new_string(c->model_type));
        json_object_object_add(r, "n_layers", json_object_new_int(c->n_layers));
        json_object_object_add(r, "hidden_size", json_object_new_int(c->hidden_size));
        json_object_object_add(r, "vocab_size", json_object_new_int(c->vocab_size));
        if (c->wrapper_type[0]) json_object_object_add(r, "wrapper_type", json_object_new_string(c->wrapper_type));
        json_object_object_add(r, "family", json_object_new_string(c->family->name));
        ms_strbuf ignored = {0};
        c->family->describe(c, &ignored, r); /* family fields: n_heads, ... */
        ms_sb_free(&ignored);
        json_object_object_add(r, "n_moe_layers", json_object_new_int(m.n_moe_layers));
        json_object_object_add(r, "n_experts", json_object_new_int(c->n_routed_experts));
        json_object_object_add(r, "n_shared_experts", json_object_new_int(c->n_shared_experts));
        json_object_object_add(r, "top_k", json_object_new_int(c->n_experts_per_tok));
        json_object_object_add(r, "moe_intermediate_size", json_object_new_int(c->moe_intermediate_size));
        json_object_object_add(r, "num_nextn_predict_layers", json_object_new_int(c->num_nextn_predict_layers));
        json_object_object_add(r, "n_tensors", json_object_new_int(m.tt.n_tensors));
        json_object_object_add(r, "n_files", json_object_new_int(m.tt.n_files));
        json_object_object_add(r, "expert_layout", json_object_new_string(layout_name(m.layout)));
        json_object_object_add(r, "resident_bytes", json_object_new_int64((int64_t)m.resident_bytes));
        json_object_object_add(r, "expert_bytes", json_object_new_int64((int64_t)m.expert_bytes_total));
        json_object_object_add(r, "ignored_bytes", json_object_new_int64((int64_t)m.ignored_bytes));
        json_object_object_add(r, "max_expert_bytes", json_object_new_int64((int64_t)m.max_expert_bytes));
        json_object *pl = json_object_new_array();
        for (int i = 0; i < m.n_moe_layers; i++) {
            json_object *e = json_object_new_object();
            json_object_object_add(e, "layer", json_object_new_int(m.moe[i].layer));
            json_object_object_add(e, "bytes_per_expert", json_object_new_int64((int64_t)m.moe[i].expert_bytes));
            json_object_object_add(e, "gate", json_object_new_string(fmt_of(&m.moe[i].proj[0].fmt, f0, sizeof f0)));
            json_object_object_add(e, "up", json_object_new_string(fmt_of(&m.moe[i].proj[1].fmt, f1, sizeof f1)));
            json_object_object_add(e, "down", json_object_new_string(fmt_of(&m.moe[i].proj[2].fmt, f2, sizeof f2)));
            json_object_array_add(pl, e);
        }
        json_object_object_add(r, "experts_per_layer", pl);
        json_object *q = json_object_new_array();
        for (int i = 0; i < nrows; i++) {
            json_object *e = json_object_new_object();
            json_object_object_add(e, "pattern", json_object_new_string(rows[i].pattern));
            json_object_object_add(e, "format", json_object_new_string(rows[i].format));
            json_object_object_add(e, "count", json_object_new_int(rows[i].count));
            json_object_object_add(e, "bytes", json_object_new_int64((int64_t)rows[i].bytes));
            json_object_array_add(q, e);
        }
        json_object_object_add(r, "quantization", q);
        json_object_object_add(r, "ctx", json_object_new_int((int)ctx));
        json_object_object_add(r, "kv_bytes", json_object_new_int64((int64_t)plan.kv_bytes));
        json_object_object_add(r, "min_ram_bytes", json_object_new_int64((int64_t)plan.min_budget));
        json_object_object_add(r, "all_fit_ram_bytes", json_object_new_int64((int64_t)plan.all_fit_budget));
        printf("%s\n", json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
        json_object_put(r);
    } else {
        printf("model        %s\n", dir);
        printf("model_type   %s (%d layers: %d dense + %d MoE%s)\n", c->model_type, c->n_layers,
               c->n_layers - m.n_moe_layers, m.n_moe_layers,
               c->num_nextn_predict_layers ? ", MTP layers ignored" : "");
        if (c->wrapper_type[0]) printf("wrapper      %s (text model %s)\n", c->wrapper_type, c->model_type);
        ms_strbuf desc = {0};
        json_object *ignored = json_object_new_object();
        c->family->describe(c, &desc, ignored);
        json_object_put(ignored);
        fputs(ms_sb_str(&desc), stdout);
        ms_sb_free(&desc);
        if (m.n_moe_layers)
            printf("experts      %d routed (top-%d) + %d shared, width %d, layout %s, %d parts each\n",
                   c->n_routed_experts, c->n_experts_per_tok, c->n_shared_experts, c->moe_intermediate_size,
                   layout_name(m.layout), m.n_parts);
        printf("files        %d shard(s), %d tensors\n", m.tt.n_files, m.tt.n_tensors);
        printf("resident     %s\n", ms_fmt_bytes(m.resident_bytes, b1, sizeof b1));
        printf("experts      %s (%d x %d experts)\n", ms_fmt_bytes(m.expert_bytes_total, b1, sizeof b1),
               m.n_moe_layers, c->n_routed_experts);
        if (m.ignored_bytes) printf("ignored      %s (MTP layers and unused tensors)\n", ms_fmt_bytes(m.ignored_bytes, b1, sizeof b1));
        if (m.n_moe_layers) {
            if (m.min_expert_bytes == m.max_expert_bytes) {
                printf("per expert   %s (gate %s, up %s, down %s)\n", ms_fmt_bytes(m.max_expert_bytes, b1, sizeof b1),
                       fmt_of(&m.moe[0].proj[0].fmt, f0, sizeof f0), fmt_of(&m.moe[0].proj[1].fmt, f1, sizeof f1),
                       fmt_of(&m.moe[0].proj[2].fmt, f2, sizeof f2));
            } else {
                printf("per expert   varies by layer:\n");
                for (int i = 0; i < m.n_moe_layers; i++)
                    printf("  layer %-4d %s (gate %s, up %s, down %s)\n", m.moe[i].layer,
                           ms_fmt_bytes(m.moe[i].expert_bytes, b1, sizeof b1), fmt_of(&m.moe[i].proj[0].fmt, f0, sizeof f0),
                           fmt_of(&m.moe[i].proj[1].fmt, f1, sizeof f1), fmt_of(&m.moe[i].proj[2].fmt, f2, sizeof f2));
            }
        }
        printf("\nquantization (module pattern, format, count, bytes):\n");
        for (int i = 0; i < nrows; i++)
            printf("  %-60s %-10s %6d  %s\n", rows[i].pattern, rows[i].format, rows[i].count,
                   ms_fmt_bytes(rows[i].bytes, b1, sizeof b1));
        printf("\nminimum --ram for --ctx %lld: %s (resident %s + KV %s + scratch/overhead %s + %d experts)\n", ctx,
               ms_fmt_bytes(plan.min_budget, b1, sizeof b1), ms_fmt_bytes(plan.resident_bytes, b2, sizeof b2),
               ms_fmt_bytes(plan.kv_bytes, b3, sizeof b3),
               ms_fmt_bytes(plan.scratch_bytes + plan.overhead_bytes, f0, sizeof f0), 2 * c->n_experts_per_tok);
        printf("every expert cached from --ram %s\n", ms_fmt_bytes(plan.all_fit_budget, b1, sizeof b1));
    }
    free(rows);
    ms_model_close(&m);
    return rc;
}

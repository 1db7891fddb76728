/* cli_simulate.c - `moestream simulate`: replay a routing trace through the
 * cache policies for a sweep of capacities and report hit rates (table, JSON,
 * SVG plot). The replay engine is cache/sim.c, which drives the runtime's own
 * slot core (cache/slots.c), so hit counts equal the runtime's for the same
 * trace, slots and policy. Capacities come as slot counts (--slots), as
 * fractions of all (layer, expert) pairs (--capacity), or as RAM budgets
 * (--ram + --model: the slots the runtime's budget plan gives that model). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "cli.h"
#include "model.h"
#include "plan.h"
#include "policy.h"
#include "profile.h"
#include "sim.h"
#include "svg_plot.h"
#include "trace.h"
#include "util.h"

#define CMD "simulate"
#define MAX_POLICIES 64
#define MAX_CAPS 256

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream simulate --trace FILE [capacity options] [options]\n"
            "\n"
            "Replay a routing trace (recorded by `moestream run --trace`, JSON lines or the\n"
            "binary variant, auto-detected) through cache policies and report the hit rate\n"
            "of each policy at each capacity. Model: one global cache of equal slots, forward\n"
            "passes (a token, or a prefill chunk the trace marks with \"batch\") then layers in\n"
            "order; the experts of one (pass, layer) are needed at the same time and never\n"
            "evict each other. Same engine and call sequence as the runtime's cache: a trace\n"
            "from `run` replayed with the run's slots and policy gives the run's hit count.\n"
            "Also reports expert reads per token (demand misses + prefetches) against the\n"
            "minimum, belady's misses per token at the same slots: 1.00x = nothing left to gain.\n"
            "\n"
            "capacity (one of; default --capacity 12.5%%,25%%,50%%):\n"
            "  --slots N[,N...]          cache capacities in expert slots (top_k .. n_layers x n_experts)\n"
            "  --capacity P%%[,P%%...]     capacities as percentages of n_layers x n_experts\n"
            "  --ram SIZE[,SIZE...]      RAM budgets (e.g. 64G): each is turned into expert slots\n"
            "                            by the same budget plan as `run --ram` (see `moestream plan`)\n"
            "  --model DIR               model directory for --ram (its MoE layers and experts\n"
            "                            must match the trace)\n"
            "  --ctx N, --batch N, --threads N, --kv f32|bf16\n"
            "                            with --ram: the run's settings, which the plan depends on\n"
            "                            (defaults as in `run`); give the ones the trace was run with\n"
            "\n"
            "options:\n"
            "  --trace FILE              the trace to replay (required)\n"
            "  --policy P[,P...]|all     policies to run (default all). A policy may take\n"
            "                            options: name:opt=value[:opt=value], e.g. lfu-decay:hl=64.\n"
            "                            'all' runs every policy; pin only if --profile is given.\n"
            "  --profile FILE            expert-popularity profile for the pin policy (made by\n"
            "                            --save-profile from a previous trace of the same model)\n"
            "  --save-profile FILE       write this trace's profile to FILE (then simulate as usual)\n"
            "  --prefetch                replay the trace's \"predicted\" experts as prefetches\n"
            "  --json                    print a JSON array of rows {policy, default, slots,\n"
            "                            capacity, hit_rate, hits, accesses, belady_ratio, ...,\n"
            "                            reads, reads_per_token, min_reads_per_token, reads_vs_min}\n"
            "                            instead of the table\n"
            "  --plot FILE.svg           write an SVG plot of hit rate, and of reads x the minimum,\n"
            "                            against capacity\n"
            "  -h, --help                show this help\n"
            "\n"
            "policies (default marked *):\n");
    for (size_t i = 0; i < ms_policy_count(); i++) {
        const ms_policy_ops *o = ms_policy_at(i);
        fprintf(f, "  %c %-10s %s\n", strcmp(o->name, ms_policy_default()) ? ' ' : '*', o->name, o->summary);
    }
    fprintf(f,
            "\n"
            "policy options (turnover = slots / (n_layers x top_k) tokens):\n"
            "  lfu:period=T        halve all counts every T tokens (default 1024 x n_experts / top_k; 0 = never)\n"
            "  lfu-decay:hl=H      half-life in tokens (default max(16, 2 x turnover))\n"
            "  eva-duel:hl=H       one frequency half-life instead of h0 x 1/4..32 (4 rules instead of 11)\n"
            "  eva-duel:rule=R     one rule alone, no duel: 0 eva, 1 expected time, 2 lru, 3 per-key frequency\n"
            "  eva-duel:d=0        drop the layer-cycle distance (experiments)\n"
            "  next-use:hl=H       fixed half-life in tokens (default: chosen online among\n"
            "                      h0 x 1/4..128, h0 = max(32, 2 x turnover); see docs/POLICIES.md)\n"
            "  next-use:adapt=0|1  choose the half-life online (default 1; 0 = fixed h0)\n"
            "  next-use:prior=P    smoothing toward top_k/n_experts, in tokens (default 1)\n"
            "  next-use:lift=0|1   learned recency lift for experts reused at their next turn (default 1)\n"
            "  next-use:part=0|1   strict equal per-layer partitions (default 0)\n"
            "  2q:kin=F:kout=F     A1in and ghost sizes as fractions of the slots (default 0.25, 0.5)\n"
            "  tinylfu:window=F    window fraction of the slots (default 0.01)\n"
            "  pin:frac=F:hl=H     fraction of the slots protected from the profile (default 0.5)\n"
            "\nexit status: 0 ok, 1 runtime error (bad trace, I/O), 2 usage error\n");
}

typedef struct row {
    const char *policy;
    bool is_default;
    uint32_t slots;
    ms_sim_result r;
} row;

/* Parse "12.5%,25%,50%" into slot counts of n_keys. */
static int parse_capacity(const char *s, uint32_t n_keys, uint32_t top_k, uint32_t *caps, int *n, ms_err *err)
{
    char *dup = strdup(s), *save = NULL;
    if (!dup) return ms_errf(err, ENOMEM, "out of memory");
    int rc = 0;
    *n = 0;
    if (!*s || s[0] == ',' || s[strlen(s) - 1] == ',' || strstr(s, ",,")) rc = ms_errf(err, EINVAL, "--capacity: empty item in '%s'", s);
    for (char *tok = rc ? NULL : strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        double pct = strtod(tok, &end);
        if (end == tok || (*end && strcmp(end, "%")) || !isfinite(pct) || pct <= 0 || pct > 100) {
            rc = ms_errf(err, EINVAL, "--capacity: '%s' is not a percentage in (0, 100]", tok);
            break;
        }
        double slots = round(pct / 100.0 * n_keys);
        if (slots < top_k) {
            rc = ms_errf(err, EINVAL, "--capacity: %s of %u is %.0f slots, fewer than top_k = %u", tok, n_keys, slots,
                         top_k);
            break;
        }
        if (*n == MAX_CAPS) {
            rc = ms_errf(err, EINVAL, "--capacity: more than %d values", MAX_CAPS);
            break;
        }
        caps[(*n)++] = (uint32_t)slots;
    }
    free(dup);
    return rc;
}

/* Experts a row read: demand misses plus prefetches (each prefetch that took a
 * slot is a read, used or not). */
static uint64_t row_reads(const row *rw) { return rw->r.stats.misses + rw->r.stats.prefetch_inserted; }

/* Reads as a multiple of the minimum: belady's demand misses at the same slots
 * (1.00x = nothing left to gain from eviction or prefetch). */
static double reads_vs_min(const row *rw, double min_reads)
{
    return min_reads > 0 ? (double)row_reads(rw) / min_reads : 1.0;
}

/* The capacity header line of a table. */
/* One table row per policy, one cell per capacity: hit rate and % of belady's
 * (ref = belady's hit rates), or with reads: expert reads per token and x the
 * minimum (ref = belady's misses per capacity). */
static void print_rows(const row *rows, const char *const *pols, int n_pols, int n_caps, const double *ref,
                       uint64_t n_tokens, bool reads)
{
    for (int p = 0; p < n_pols; p++) {
        char name[64];
        snprintf(name, sizeof name, "%s%s", rows[p * n_caps].is_default ? "*" : " ", pols[p]);
        printf("%-22s", name);
        for (int c2 = 0; c2 < n_caps; c2++) {
            const row *rw = &rows[p * n_caps + c2];
            char cell[48];
            if (reads)
                snprintf(cell, sizeof cell, "%.2f (%.2fx)", (double)row_reads(rw) / (double)n_tokens,
                         reads_vs_min(rw, ref[c2]));
            else
                snprintf(cell, sizeof cell, "%.3f (%3.0f%%)", rw->r.hit_rate,
                         ref[c2] > 0 ? 100.0 * rw->r.hit_rate / ref[c2] : 0.0);
            printf(" %16s", cell);
        }
        printf("\n");
    }
}

static void print_caps(const uint64_t *rams, const uint32_t *caps, int n_caps, uint32_t n_keys)
{
    printf("%-22s", rams ? "policy \\ RAM: slots" : "policy \\ slots");
    for (int c2 = 0; c2 < n_caps; c2++) {
        char h[64], b[32];
        if (rams) snprintf(h, sizeof h, "%s: %u", ms_fmt_bytes(rams[c2], b, sizeof b), caps[c2]);
        else snprintf(h, sizeof h, "%u (%.1f%%)", caps[c2], 100.0 * caps[c2] / n_keys);
        printf(" %16s", h);
    }
    printf("\n");
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

int cmd_simulate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"trace", required_argument, NULL, 't'},   {"slots", required_argument, NULL, 's'},
        {"capacity", required_argument, NULL, 'c'}, {"ram", required_argument, NULL, 'r'},
        {"model", required_argument, NULL, 'm'},   {"policy", required_argument, NULL, 'p'},
        {"profile", required_argument, NULL, 'P'}, {"save-profile", required_argument, NULL, 'S'},
        {"prefetch", no_argument, NULL, 'f'},      {"json", no_argument, NULL, 'j'},
        {"plot", required_argument, NULL, 'o'},    {"help", no_argument, NULL, 'h'},
        {"ctx", required_argument, NULL, 'C'},     {"batch", required_argument, NULL, 'B'},
        {"threads", required_argument, NULL, 'T'}, {"kv", required_argument, NULL, 'K'},
        {NULL, 0, NULL, 0},
    };
    const char *trace_path = NULL, *slots_arg = NULL, *cap_arg = NULL, *ram_arg = NULL, *model = NULL;
    const char *policy_arg = "all", *profile = NULL, *save_profile = NULL, *plot = NULL;
    bool json = false, prefetch = false, kv_bf16 = false, plan_opt = false;
    long long ctx = 0, batch = 0, threads = 0;
    ms_err perr = {0};
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        if (c > 0 && strchr("CBTK", c)) plan_opt = true;
        switch (c) {
        case 't': trace_path = optarg; break;
        case 's': slots_arg = optarg; break;
        case 'c': cap_arg = optarg; break;
        case 'r': ram_arg = optarg; break;
        case 'm': model = optarg; break;
        case 'p': policy_arg = optarg; break;
        case 'P': profile = optarg; break;
        case 'S': save_profile = optarg; break;
        case 'f': prefetch = true; break;
        case 'j': json = true; break;
        case 'o': plot = optarg; break;
        /* the run settings the budget plan depends on (same ranges as `plan`) */
        case 'C': bad = ms_parse_int(optarg, 1, 1 << 24, &ctx, "--ctx", &perr); break;
        case 'B': bad = ms_parse_int(optarg, 1, 1 << 16, &batch, "--batch", &perr); break;
        case 'T': bad = ms_parse_int(optarg, 1, 1024, &threads, "--threads", &perr); break;
        case 'K':
            if (strcmp(optarg, "f32") && strcmp(optarg, "bf16")) bad = ms_errf(&perr, EINVAL, "--kv %s: use f32 or bf16", optarg);
            kv_bf16 = !strcmp(optarg, "bf16");
            break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option(CMD, c, argv);
        }
        if (bad < 0) return ms_cli_usage_error(CMD, "%s", perr.msg);
    }
    if (optind < argc) return ms_cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!trace_path) return ms_cli_usage_error(CMD, "--trace FILE is required");
    if (!!slots_arg + !!cap_arg + !!ram_arg > 1)
        return ms_cli_usage_error(CMD, "give only one of --slots, --capacity, --ram");
    if (ram_arg && !model) return ms_cli_usage_error(CMD, "--ram needs --model DIR (the expert size comes from the model)");
    if (model && !ram_arg) return ms_cli_usage_error(CMD, "--model is only used with --ram");
    if (plan_opt && !ram_arg) return ms_cli_usage_error(CMD, "--ctx, --batch, --threads and --kv are only used with --ram");

    ms_err err = {0};
    uint64_t *rams = NULL;
    int n_rams = 0;
    if (ram_arg) {
        if (ms_parse_size_list(ram_arg, &rams, &n_rams, "--ram", &err) < 0) return ms_cli_usage_error(CMD, "%s", err.msg);
        if (n_rams > MAX_CAPS) {
            free(rams);
            return ms_cli_usage_error(CMD, "--ram: more than %d values", MAX_CAPS);
        }
    }

    /* Policy list. */
    char *pol_buf = strdup(policy_arg);
    const char *pols[MAX_POLICIES];
    int n_pols = 0;
    if (!pol_buf) {
        free(rams);
        return ms_cli_fail(CMD, &err);
    }
    if (!strcmp(policy_arg, "all")) {
        for (size_t i = 0; i < ms_policy_count() && n_pols < MAX_POLICIES; i++) {
            const ms_policy_ops *o = ms_policy_at(i);
            if ((o->flags & MS_POLICY_NEEDS_PROFILE) && !profile) continue;
            pols[n_pols++] = o->name;
        }
    } else {
        if (!*policy_arg || policy_arg[0] == ',' || policy_arg[strlen(policy_arg) - 1] == ',' || strstr(policy_arg, ",,")) {
            free(pol_buf);
            free(rams);
            return ms_cli_usage_error(CMD, "--policy: empty item in '%s'", policy_arg);
        }
        char *save = NULL;
        for (char *tok = strtok_r(pol_buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (n_pols == MAX_POLICIES) {
                free(pol_buf);
                free(rams);
                return ms_cli_usage_error(CMD, "--policy: more than %d policies", MAX_POLICIES);
            }
            /* Check the spec now: unknown names are usage errors. */
            char *tmp = strdup(tok);
            const ms_policy_ops *ops;
            ms_policy_params pp = {0};
            int rc = tmp ? ms_policy_parse_spec(tmp, &ops, &pp, &err) : -1;
            free(tmp);
            if (rc < 0) {
                free(pol_buf);
                free(rams);
                return ms_cli_usage_error(CMD, "--policy: %s", err.msg);
            }
            if ((ops->flags & MS_POLICY_NEEDS_PROFILE) && !profile) {
                int r = ms_cli_usage_error(CMD, "--policy %s needs --profile FILE", tok);
                free(pol_buf);
                free(rams);
                return r;
            }
            pols[n_pols++] = tok;
        }
    }

    ms_trace t;
    int rc = ms_trace_read(trace_path, &t, &err);
    if (rc < 0) {
        free(pol_buf);
        free(rams);
        return ms_cli_fail(CMD, &err);
    }
    const ms_trace_info *in = &t.info;
    uint32_t n_keys = in->n_layers * in->n_experts;
    uint32_t caps[MAX_CAPS];
    int n_caps = 0;
    int ret = 0;
    row *rows = NULL;
    uint32_t *keys = NULL;
    size_t n_acc = 0;
    if (slots_arg) {
        long long *v;
        /* Between one group and one slot per (layer, expert) pair (more never helps). */
        if (ms_parse_int_list(slots_arg, in->top_k, n_keys, &v, &n_caps, "--slots", &err) < 0) {
            ms_err_prefix(&err, "%s (top_k %u, %u (layer, expert) pairs): ", trace_path, in->top_k, n_keys);
            ret = ms_cli_usage_error(CMD, "%s", err.msg);
            goto done;
        }
        if (n_caps > MAX_CAPS) {
            free(v);
            ret = ms_cli_usage_error(CMD, "--slots: more than %d values", MAX_CAPS);
            goto done;
        }
        for (int i = 0; i < n_caps; i++) caps[i] = (uint32_t)v[i];
        free(v);
    } else if (ram_arg) {
        /* The model must be the one the trace was recorded with. */
        ms_model m;
        if (ms_model_open(model, &m, &err) < 0) {
            ret = ms_cli_fail(CMD, &err);
            goto done;
        }
        uint32_t ml = (uint32_t)m.n_moe_layers, me = (uint32_t)m.cfg.n_routed_experts;
        ms_model_close(&m);
        if (ml != in->n_layers || me != in->n_experts) {
            ms_errf(&err, EINVAL, "%s has %u MoE layers x %u experts but the trace %s has %u x %u", model, ml, me,
                    trace_path, in->n_layers, in->n_experts);
            ret = ms_cli_fail(CMD, &err);
            goto done;
        }
        for (int i = 0; i < n_rams; i++) {
            int64_t slots;
            if (ms_plan_expert_slots(model, rams[i], (int)ctx, (int)batch, (int)threads, kv_bf16, &slots, &err) < 0) {
                ret = ms_cli_fail(CMD, &err);
                goto done;
            }
            if (slots < in->top_k) {
                char b[32];
                ms_errf(&err, ENOSPC, "--ram %s: the expert cache holds %lld experts, fewer than top_k = %u",
                        ms_fmt_bytes(rams[i], b, sizeof b), (long long)slots, in->top_k);
                ret = ms_cli_fail(CMD, &err);
                goto done;
            }
            caps[n_caps++] = slots > n_keys ? n_keys : (uint32_t)slots; /* plan never exceeds all experts */
        }
    } else if (parse_capacity(cap_arg ? cap_arg : "12.5%,25%,50%", n_keys, in->top_k, caps, &n_caps, &err) < 0) {
        ret = ms_cli_usage_error(CMD, "%s", err.msg);
        goto done;
    }
    if (t.n_tokens == 0) {
        ms_errf(&err, EINVAL, "%s: the trace has no tokens", trace_path);
        ret = ms_cli_fail(CMD, &err);
        goto done;
    }
    if (save_profile) {
        ms_profile prof;
        if (ms_profile_from_trace(&t, &prof, &err) < 0 || ms_profile_save(&prof, save_profile, &err) < 0) {
            ms_profile_free(&prof);
            ret = ms_cli_fail(CMD, &err);
            goto done;
        }
        ms_profile_free(&prof);
    }
    if (ms_trace_keys(&t, &keys, &n_acc, &err) < 0) {
        ret = ms_cli_fail(CMD, &err);
        goto done;
    }
    rows = calloc((size_t)n_pols * n_caps, sizeof *rows);
    double *belady = calloc((size_t)2 * n_caps, sizeof *belady), *bmiss = belady + n_caps;
    if (!rows || !belady) {
        free(belady);
        ms_errf(&err, ENOMEM, "out of memory");
        ret = ms_cli_fail(CMD, &err);
        goto done;
    }
    /* Belady is the reference for "% of optimum", even when not listed. */
    ms_sim_opts so = {.profile_path = profile, .prefetch = prefetch};
    for (int c2 = 0; c2 < n_caps; c2++) {
        ms_sim_result r;
        if (ms_simulate(&t, keys, n_acc, "belady", caps[c2], &(ms_sim_opts){0}, &r, &err) < 0) {
            free(belady);
            ret = ms_cli_fail(CMD, &err);
            goto done;
        }
        belady[c2] = r.hit_rate;
        bmiss[c2] = (double)r.stats.misses; /* the fewest reads any cache of this size can do */
    }
    for (int p = 0; p < n_pols; p++)
        for (int c2 = 0; c2 < n_caps; c2++) {
            row *rw = &rows[p * n_caps + c2];
            rw->policy = pols[p];
            rw->is_default = !strcmp(pols[p], ms_policy_default());
            rw->slots = caps[c2];
            if (ms_simulate(&t, keys, n_acc, pols[p], caps[c2], &so, &rw->r, &err) < 0) {
                free(belady);
                ret = ms_cli_fail(CMD, &err);
                goto done;
            }
        }

    if (json) {
        printf("[\n");
        for (int i = 0; i < n_pols * n_caps; i++) {
            const row *rw = &rows[i];
            int c2 = i % n_caps;
            const ms_slots_stats *st = &rw->r.stats;
            printf("  {\"policy\": ");
            json_str(rw->policy);
            if (rams) printf(", \"ram_bytes\": %llu", (unsigned long long)rams[c2]);
            printf(", \"default\": %s, \"slots\": %u, \"capacity\": %.6g, \"hit_rate\": %.6f, \"hits\": %llu, "
                   "\"accesses\": %llu, \"belady_ratio\": %.6f, \"misses\": %llu, \"evictions\": %llu, "
                   "\"hits_loading\": %llu, \"prefetch_inserted\": %llu, \"prefetch_used\": %llu, "
                   "\"prefetch_wasted\": %llu, \"reads\": %llu, \"reads_per_token\": %.6f, "
                   "\"min_reads_per_token\": %.6f, \"reads_vs_min\": %.6f}%s\n",
                   rw->is_default ? "true" : "false", rw->slots, (double)rw->slots / n_keys, rw->r.hit_rate,
                   (unsigned long long)st->hits, (unsigned long long)st->accesses,
                   belady[c2] > 0 ? rw->r.hit_rate / belady[c2] : 0.0, (unsigned long long)st->misses,
                   (unsigned long long)st->evictions, (unsigned long long)st->hits_loading,
                   (unsigned long long)st->prefetch_inserted, (unsigned long long)st->prefetch_used,
                   (unsigned long long)st->prefetch_wasted, (unsigned long long)row_reads(rw),
                   (double)row_reads(rw) / (double)t.n_tokens, bmiss[c2] / (double)t.n_tokens,
                   reads_vs_min(rw, bmiss[c2]), i + 1 < n_pols * n_caps ? "," : "");
        }
        printf("]\n");
    } else {
        printf("trace: %s  model: %s\n", trace_path, in->model[0] ? in->model : "?");
        printf("  %llu tokens x %u MoE layers x top-%u of %u experts = %zu accesses, %u (layer, expert) keys\n",
               (unsigned long long)t.n_tokens, in->n_layers, in->top_k, in->n_experts, n_acc, n_keys);
        printf("hit rate (and %% of belady's offline optimum); * = default policy\n");
        print_caps(rams, caps, n_caps, n_keys);
        print_rows(rows, pols, n_pols, n_caps, belady, t.n_tokens, false);
        printf("\nexpert reads per token (demand misses + prefetches) and x the minimum (belady's misses per token)\n");
        print_caps(rams, caps, n_caps, n_keys);
        print_rows(rows, pols, n_pols, n_caps, bmiss, t.n_tokens, true);
        if (prefetch && !t.max_pred) printf("note: --prefetch given but the trace has no \"predicted\" field\n");
    }
    if (plot) {
        ms_plot_series *ser = calloc((size_t)2 * n_pols, sizeof *ser);
        double *xs = calloc((size_t)n_pols * n_caps, sizeof *xs), *ys = calloc((size_t)2 * n_pols * n_caps, sizeof *ys);
        double *yr = ys ? ys + (size_t)n_pols * n_caps : NULL; /* reads x minimum */
        if (!ser || !xs || !ys) {
            ms_errf(&err, ENOMEM, "out of memory");
        } else {
            /* Points in increasing capacity order. */
            int *ord = malloc(n_caps * sizeof *ord);
            for (int i = 0; ord && i < n_caps; i++) ord[i] = i;
            for (int i = 1; ord && i < n_caps; i++)
                for (int j = i; j > 0 && (rams ? rams[ord[j - 1]] > rams[ord[j]] : caps[ord[j - 1]] > caps[ord[j]]); j--) {
                    int tmp = ord[j];
                    ord[j] = ord[j - 1];
                    ord[j - 1] = tmp;
                }
            for (int p = 0; ord && p < n_pols; p++) {
                for (int i = 0; i < n_caps; i++) {
                    xs[p * n_caps + i] = rams ? (double)rams[ord[i]] / (1024.0 * 1024 * 1024) : caps[ord[i]];
                    ys[p * n_caps + i] = rows[p * n_caps + ord[i]].r.hit_rate;
                    yr[p * n_caps + i] = reads_vs_min(&rows[p * n_caps + ord[i]], bmiss[ord[i]]);
                }
                ser[p] = (ms_plot_series){.name = pols[p], .n = n_caps, .x = xs + p * n_caps, .y = ys + p * n_caps,
                                          .emphasize = rows[p * n_caps].is_default,
                                          .dashed = !strncmp(pols[p], "belady", 6)};
                ser[n_pols + p] = ser[p];
                ser[n_pols + p].y = yr + p * n_caps;
            }
            char title[400];
            snprintf(title, sizeof title, "Expert cache hit rate: %s (%u layers x %u experts, top-%u)",
                     in->model[0] ? in->model : trace_path, in->n_layers, in->n_experts, in->top_k);
            const char *xl = rams ? "RAM budget (GiB)" : "cache capacity (expert slots)";
            ms_plot pl[2] = {{.title = title, .xlabel = xl, .ylabel = "hit rate", .ymin = 0, .ymax = 1,
                              .n_series = n_pols, .series = ser},
                             {.title = "Expert reads per token, x the minimum (belady's misses per token)",
                              .xlabel = xl, .ylabel = "reads / minimum reads", .n_series = n_pols,
                              .series = ser + n_pols}};
            if (!ord) ms_errf(&err, ENOMEM, "out of memory");
            else ms_svg_plot_write_panels(plot, pl, 2, &err);
            free(ord);
        }
        free(ser);
        free(xs);
        free(ys);
        if (err.code) ret = ms_cli_fail(CMD, &err);
    }
    free(belady);
done:
    free(rams);
    free(rows);
    free(keys);
    free(pol_buf);
    ms_trace_free(&t);
    return ret;
}

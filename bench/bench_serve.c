/* bench_serve.c - `moestream bench serve`: what decoding several requests
 * together buys. For each budget and each concurrency C, C requests (distinct
 * prompts, the same length) go to the serving scheduler at once and decode
 * -n tokens each; cold (page cache dropped, empty expert cache) and then warm
 * (the same requests again in the same process). Reports the aggregate decode
 * tok/s (rows / time in decode steps) and per request, sequences per step,
 * expert MiB read per step and per generated token, experts read per step,
 * read GB/s, I/O wait, and the physical limit (device GB/s) / (bytes read per
 * token): the aggregate tok/s the disk allows at this sharing. The engine
 * always has max(C) sequences, so every row has the same expert cache. Each
 * configuration runs in a child process. With --mtp N every request drafts N
 * tokens per step (aggregate tok/s counts the tokens the rounds published; the
 * acceptance is in the last column; --mtp-force-accept takes every draft, the
 * ceiling a trained draft head approaches). Figures only. */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch.h"
#include "bench.h"
#include "cli.h"
#include "cli_engine.h"
#include "serve_sched.h"
#include "util.h"

typedef struct srow {
    uint64_t ram;
    int conc;
    char phase[8];
    double decode_tok_s, wall_tok_s, rows_per_step, hit_rate, mib_per_token, mib_per_step, experts_per_step, read_gbps,
        io_wait, prefill_tok_s, mtp_acceptance;
    uint64_t peak_rss, generated;
    int64_t slots;
    int ok;
    char err[512];
} srow;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream bench serve --model DIR --ram SIZE[,SIZE...] [options]\n"
            "\n"
            "C requests decoding together through the serving scheduler (one forward step for all of them,\n"
            "each routed expert read once per step), for every budget and every C: aggregate decode tok/s,\n"
            "sequences per step, expert MiB read per step and per generated token, read GB/s, I/O wait,\n"
            "and the physical limit device GB/s / bytes read per token. Cold (page cache dropped, empty\n"
            "expert cache), then warm (the same requests again).\n"
            "\n"
            "  --model DIR           model directory\n"
            "  --ram LIST            budgets, e.g. 800M,4G (required)\n"
            "  --concurrency LIST    requests decoding together (default 1,2,4,8)\n"
            "  -n N                  tokens generated per request (default 32)\n"
            "  --prompt-tokens N     prompt length of each request (default 16)\n"
            "  --io, --policy, --threads, --ctx, --batch   as in run (ctx default 512)\n"
            "  --mtp N               speculative decoding with the checkpoint's MTP head (as serve --mtp N;\n"
            "                        --batch must hold max(C) x (N+1) rows)\n"
            "  --mtp-force-accept    debug: take every draft as accepted (the output is not valid): the\n"
            "                        ceiling of a draft head that always agrees\n"
            "  --device-gbps X       device read bandwidth (default: measured on 1 GiB of expert bytes)\n"
            "  --json                JSON array of rows\n");
}

/* One phase: C requests at once; the row from the scheduler's metrics (deltas). */
static int phase(ms_sched *s, int conc, int prompt_n, int n, int vocab, srow *r, ms_err *err)
{
    ms_sched_metrics m0, m1;
    ms_sched_get_metrics(s, &m0);
    ms_sched_req *q[64];
    double t0 = ms_now_s();
    int rc = 0, k = 0;
    for (; k < conc && rc == 0; k++) {
        ms_sched_req *x = q[k] = ms_sched_req_new();
        if (!x || !(x->prompt = malloc((size_t)prompt_n * sizeof *x->prompt))) return ms_errf(err, ENOMEM, "out of memory");
        for (int i = 0; i < prompt_n; i++) x->prompt[i] = (int32_t)((i * 7919 + 13 + k * 104729) % vocab);
        x->n_prompt = prompt_n;
        x->sampling = ms_sampler_defaults();
        x->sampling.temperature = 0;
        x->max_tokens = n;
        x->ignore_eos = true;
        x->detok_flags = MS_TOK_SKIP_SPECIAL;
        rc = ms_sched_submit(s, x, err);
    }
    for (int i = 0; i < k; i++) {
        ms_sched_lock(s);
        while (rc == 0 && !q[i]->finish) ms_sched_wait(s, q[i], 100);
        if (rc == 0 && strcmp(q[i]->finish, "length")) rc = ms_errf(err, EIO, "request ended: %s %s", q[i]->finish, q[i]->error);
        ms_sched_unlock(s);
        ms_sched_release(s, q[i]);
    }
    double wall = ms_now_s() - t0;
    ms_sched_get_metrics(s, &m1);
    uint64_t rows = m1.decode_rows - m0.decode_rows, steps = m1.decode_steps - m0.decode_steps;
    uint64_t bytes = m1.decode_bytes_read - m0.decode_bytes_read, acc = m1.accesses - m0.accesses;
    double ds = m1.decode_s - m0.decode_s, ps = m1.prefill_s - m0.prefill_s;
    r->generated = m1.generated_tokens - m0.generated_tokens;
    r->decode_tok_s = ds > 0 ? (double)rows / ds : 0;
    r->wall_tok_s = wall > 0 ? (double)r->generated / wall : 0;
    r->prefill_tok_s = ps > 0 ? (double)(m1.prefill_rows - m0.prefill_rows) / ps : 0;
    r->rows_per_step = steps ? (double)rows / (double)steps : 0;
    r->hit_rate = acc ? (double)(m1.hits - m0.hits) / (double)acc : 0;
    r->mib_per_token = rows ? (double)bytes / (double)rows / 1048576.0 : 0;
    r->mib_per_step = steps ? (double)bytes / (double)steps / 1048576.0 : 0;
    r->experts_per_step = steps ? (double)(m1.decode_experts_read - m0.decode_experts_read) / (double)steps : 0;
    uint64_t drafted = m1.mtp_drafted - m0.mtp_drafted;
    r->mtp_acceptance = drafted ? (double)(m1.mtp_accepted - m0.mtp_accepted) / (double)drafted : 0;
    double busy = m1.read_busy_s - m0.read_busy_s;
    r->read_gbps = busy > 0 ? (double)(m1.bytes_read - m0.bytes_read) / busy / 1e9 : 0;
    r->io_wait = ds + ps > 0 ? (m1.io_wait_s - m0.io_wait_s) / (ds + ps) : 0;
    r->peak_rss = m1.peak_rss;
    r->slots = m1.cache_slots;
    return rc;
}

static void child(const char *model, const ms_model *m, const ms_engine_opts *base, bool force, int conc,
                  int max_conc, int prompt_n, int n, int fd)
{
    srow rows[2] = {0};
    for (int p = 0; p < 2; p++) {
        rows[p].ram = base->ram;
        rows[p].conc = conc;
        snprintf(rows[p].phase, sizeof rows[p].phase, p ? "warm" : "cold");
    }
    ms_bench_drop_model_cache(m);
    ms_engine_opts eo = *base;
    eo.n_seq = max_conc;
    ms_engine *e = NULL;
    ms_sched *s = NULL;
    ms_err err = {0};
    ms_sched_opts so = {.queue = 64, .reuse = MS_REUSE_OFF, .mtp_force_accept = force};
    if (ms_engine_open(model, &eo, &e, &err) < 0 || ms_sched_start(e, NULL, &so, &s, &err) < 0) {
        snprintf(rows[0].err, sizeof rows[0].err, "%.500s", err.msg);
        rows[1] = rows[0];
    } else {
        for (int p = 0; p < 2; p++) {
            int rc = phase(s, conc, prompt_n, n, m->cfg.vocab_size, &rows[p], &err);
            rows[p].ok = rc == 0;
            if (rc < 0) snprintf(rows[p].err, sizeof rows[p].err, "%.500s", err.msg);
        }
    }
    if (write(fd, rows, sizeof rows) != (ssize_t)sizeof rows) { /* the parent reports the row missing */
    }
    ms_sched_free(s);
    ms_engine_close(e);
}

static void print_row(const srow *r, double dev, bool json, json_object *arr, double base_tok_s)
{
    double limit = r->mib_per_token > 0 ? dev * 1e9 / (r->mib_per_token * 1048576.0) : 0;
    char rb[32], pk[32];
    if (!json) {
        printf("%-10s %4d %-5s %9.2f %9.2f %7.2fx %7.2f %6.1f%% %9.2f %9.2f %8.1f %8.2f %6.0f%% %10.1f %10s %6.0f%%\n",
               ms_fmt_bytes(r->ram, rb, 32), r->conc, r->phase, r->decode_tok_s, r->decode_tok_s / r->conc,
               base_tok_s > 0 ? r->decode_tok_s / base_tok_s : 0, r->rows_per_step, 100 * r->hit_rate, r->mib_per_token,
               r->mib_per_step, r->experts_per_step, r->read_gbps, 100 * r->io_wait, limit,
               ms_fmt_bytes(r->peak_rss, pk, 32), 100 * r->mtp_acceptance);
        return;
    }
    json_object *j = json_object_new_object();
#define D(k, v) json_object_object_add(j, k, json_object_new_double(v))
    json_object_object_add(j, "ram_bytes", json_object_new_int64((int64_t)r->ram));
    json_object_object_add(j, "concurrency", json_object_new_int(r->conc));
    json_object_object_add(j, "phase", json_object_new_string(r->phase));
    json_object_object_add(j, "generated_tokens", json_object_new_int64((int64_t)r->generated));
    json_object_object_add(j, "cache_slots", json_object_new_int64(r->slots));
    D("decode_tok_s", r->decode_tok_s);
    D("wall_tok_s", r->wall_tok_s);
    D("prefill_tok_s", r->prefill_tok_s);
    D("sequences_per_step", r->rows_per_step);
    D("hit_rate", r->hit_rate);
    D("expert_mib_per_token", r->mib_per_token);
    D("expert_mib_per_step", r->mib_per_step);
    D("experts_read_per_step", r->experts_per_step);
    D("read_gbps", r->read_gbps);
    D("io_wait_fraction", r->io_wait);
    D("device_gbps", dev);
    D("physical_limit_tok_s", limit);
    D("mtp_acceptance", r->mtp_acceptance);
#undef D
    json_object_object_add(j, "peak_rss_bytes", json_object_new_int64((int64_t)r->peak_rss));
    json_object_array_add(arr, j);
}

int ms_bench_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"ram", required_argument, 0, 'r'},
        {"concurrency", required_argument, 0, 'C'}, {"prompt-tokens", required_argument, 0, 'P'},
        {"device-gbps", required_argument, 0, 'd'}, {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},        {"mtp-force-accept", no_argument, 0, 'F'},
        MS_CLI_ENGINE_LONGOPTS,
        {0}};
    const char *model = NULL, *ram_s = NULL, *conc_s = "1,2,4,8";
    long long n = 32, prompt_n = 16;
    double dev = 0;
    bool json = false, force = false;
    ms_engine_opts eo = {.ctx = 512};
    ms_err err = {0};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":m:r:n:C:P:d:jh", opts, NULL)) != -1) {
        int h = o == MS_OPT_RAM ? 0 : ms_cli_engine_opt(o, optarg, &eo, &err), bad = 0;
        if (h < 0) return ms_cli_usage_error("bench serve", "%s", err.msg);
        if (h > 0) continue;
        switch (o) {
        case 'm': model = optarg; break;
        case MS_OPT_RAM:
        case 'r': ram_s = optarg; break;
        case 'C': conc_s = optarg; break;
        case 'n': bad = ms_parse_int(optarg, 1, 1 << 20, &n, "-n", &err); break;
        case 'P': bad = ms_parse_int(optarg, 1, 1 << 16, &prompt_n, "--prompt-tokens", &err); break;
        case 'd': bad = ms_parse_double(optarg, &dev, "--device-gbps", &err); break;
        case 'j': json = true; break;
        case 'F': force = true; break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("bench serve", o, argv);
        }
        if (bad < 0) return ms_cli_usage_error("bench serve", "%s", err.msg);
    }
    if (!model || !ram_s) return ms_cli_usage_error("bench serve", "--model and --ram are required");
    long long *concs;
    int n_conc;
    uint64_t *rams;
    int n_ram;
    if (ms_parse_int_list(conc_s, 1, 64, &concs, &n_conc, "--concurrency", &err) < 0)
        return ms_cli_usage_error("bench serve", "%s", err.msg);
    if (ms_parse_size_list(ram_s, &rams, &n_ram, "--ram", &err) < 0) {
        free(concs);
        return ms_cli_usage_error("bench serve", "%s", err.msg);
    }
    int max_conc = 1;
    for (int i = 0; i < n_conc; i++) max_conc = MS_MAX(max_conc, (int)concs[i]);
    if (eo.ctx < prompt_n + n + 1) eo.ctx = (int)(prompt_n + n + 1);
    ms_model m;
    if (ms_model_open(model, &m, &err) < 0) {
        free(concs);
        free(rams);
        return ms_cli_fail("bench serve", &err);
    }
    if (dev <= 0 && m.n_moe_layers) dev = ms_bench_device_gbps(&m);
    int rc = 0;
    json_object *arr = json_object_new_array();
    if (!json)
        printf("device %.2f GB/s (raw O_DIRECT reads of expert bytes); %lld tokens per request, prompts of %lld\n"
               "%-10s %4s %-5s %9s %9s %8s %7s %7s %9s %9s %8s %8s %7s %10s %10s %7s\n",
               dev, n, prompt_n, "ram", "conc", "phase", "agg tok/s", "per req", "vs C=1", "seq/st", "hit",
               "MiB/tok", "MiB/step", "exp/st", "read GB/s", "wait", "limit t/s", "peak RSS", "mtp acc");
    for (int a = 0; a < n_ram; a++) {
        double base[2] = {0, 0};
        for (int c = 0; c < n_conc; c++) {
            eo.ram = rams[a];
            int pfd[2];
            if (pipe(pfd) < 0) continue;
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) {
                close(pfd[0]);
                child(model, &m, &eo, force, (int)concs[c], max_conc, (int)prompt_n, (int)n, pfd[1]);
                _exit(0);
            }
            close(pfd[1]);
            srow rows[2];
            ssize_t got = read(pfd[0], rows, sizeof rows);
            close(pfd[0]);
            int status;
            waitpid(pid, &status, 0);
            if (got != (ssize_t)sizeof rows) {
                fprintf(stderr, "bench serve: concurrency %lld crashed or was killed\n", concs[c]);
                rc = 1;
                continue;
            }
            for (int p = 0; p < 2; p++) {
                if (!rows[p].ok) {
                    fprintf(stderr, "bench serve: concurrency %d: %s\n", rows[p].conc, rows[p].err);
                    rc = 1;
                    continue;
                }
                if (rows[p].conc == 1) base[p] = rows[p].decode_tok_s;
                print_row(&rows[p], dev, json, arr, base[p]);
            }
        }
    }
    if (json) printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY));
    json_object_put(arr);
    ms_model_close(&m);
    free(concs);
    free(rams);
    return rc;
}

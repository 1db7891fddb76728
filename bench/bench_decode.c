/* bench_decode.c - `moestream bench decode`: decode tokens/s, expert hit rate,
 * bytes read per token and I/O wait for each budget x backend x policy, cold
 * (page cache dropped, expert cache empty) and warm (the same prompt again in
 * the same process: the expert cache, or for mmap the page cache, is warm).
 * Each configuration runs in its own child process, so peak RSS and mappings
 * do not leak between rows. Also prints the physical limit: device GB/s /
 * bytes missed per token, with the device figure measured by a raw O_DIRECT
 * read of expert bytes (or given with --device-gbps). Figures only. */
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch.h"
#include "bench.h"
#include "bench_io_core.h"
#include "cli.h"
#include "cli_engine.h"
#include "policy.h"
#include "generate.h"
#include "model.h"
#include "sim.h"
#include "trace.h"
#include "util.h"

typedef struct drow {
    uint64_t ram;
    char io[32], policy[48], phase[8], prefetch[16];
    double decode_tok_s, prefill_tok_s, hit_rate, bytes_per_token, experts_per_token, read_gbps, io_wait, disk_per_token;
    double io_wait_s, wait_saved_s; /* I/O wait of the run (s); prefetch's estimate of what it saved */
    double min_per_token;           /* belady's misses per token, same routing and slots (0 = unknown) */
    uint64_t peak_rss, gen;
    int mtp;
    double mtp_acceptance, mtp_tokens_per_step;
    int ok;
    char err[1100];
} drow;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream bench decode --model DIR --ram SIZE[,SIZE...] [options]\n"
            "\n"
            "For every budget x backend x policy: generate from a fixed prompt, cold (page cache dropped,\n"
            "empty expert cache) and then warm (same prompt again in the same process). Reports decode\n"
            "tok/s, hit rate, experts and bytes read per token and x the minimum (x min: belady's misses\n"
            "per decode token on the same routing and slots, the fewest reads any cache of that size\n"
            "could do; prefetched reads count in ours), read GB/s, I/O wait (share of the run and\n"
            "seconds: the wait a prefetch mode saves is the none row's minus its own), peak RSS, and the\n"
            "physical limit device GB/s / bytes missed per token.\n"
            "\n"
            "  --model DIR           model directory\n"
            "  --ram LIST            budgets, e.g. 4G,8G (required)\n"
            "  --io LIST             backends, e.g. uring,mmap (default uring)\n"
            "  --policy LIST         eviction policies (default: the runtime default)\n"
            "  --prefetch LIST       prefetch modes, e.g. none,next-layer (default none)\n"
            "  --mtp LIST            MTP draft tokens, e.g. 0,1 (default 0; needs the checkpoint's MTP layer)\n"
            "  --mtp-force-accept    debug: take every draft as accepted (the output is not valid): the\n"
            "                        throughput a draft head that is always right would give\n"
            "  -n N                  tokens to generate per phase (default 32)\n"
            "  --prompt-tokens N     prompt length in tokens (default 16)\n"
            "  --threads N, --ctx N  as in run (ctx default 512)\n"
            "  --device-gbps X       device read bandwidth (default: measured on 1 GiB of expert bytes)\n"
            "  --json                JSON array of rows\n");
}

/* The minimum reads per decode token of each phase: the routing of the run
 * (traced per phase) replayed with belady at the run's slot count, counting the
 * decode passes only (the warm phase after the cold one: its cache was warm).
 * Sets rows[p].min_per_token; leaves 0 where it cannot be known. */
static void min_reads(char tpath[2][300], drow rows[2], int prompt_n, int64_t slots)
{
    ms_trace all = {0};
    ms_err err = {0};
    uint64_t start = 0;
    for (int p = 0; p < 2 && tpath[p][0] && rows[p].ok && slots > 0; p++) {
        ms_trace t;
        if (ms_trace_read(tpath[p], &t, &err) < 0) break;
        int rc = p == 0 ? (all = t, 0) : ms_trace_append(&all, &t, &err);
        if (p) ms_trace_free(&t);
        if (rc < 0) break;
        uint32_t n_keys = all.info.n_layers * all.info.n_experts;
        ms_sim_opts o = {.from_token = start + (uint64_t)prompt_n};
        ms_sim_result r;
        if (ms_simulate(&all, NULL, 0, "belady", slots > n_keys ? n_keys : (uint32_t)slots, &o, &r, &err) < 0) break;
        if (rows[p].gen) rows[p].min_per_token = (double)r.stats.misses / (double)rows[p].gen;
        start = all.n_tokens;
    }
    if (all.experts) ms_trace_free(&all);
}

/* One configuration in a child: cold then warm; two drows written to fd. */
static void child(const char *model, const ms_model *m, uint64_t ram, const char *io, const char *policy,
                  const char *prefetch, int mtp, bool force_accept, int n, int prompt_n, int threads, int ctx, int fd)
{
    drow rows[2] = {0};
    for (int p = 0; p < 2; p++) {
        rows[p].ram = ram;
        snprintf(rows[p].io, sizeof rows[p].io, "%s", io);
        snprintf(rows[p].phase, sizeof rows[p].phase, p ? "warm" : "cold");
        snprintf(rows[p].prefetch, sizeof rows[p].prefetch, "%s", prefetch ? prefetch : "none");
        rows[p].mtp = mtp;
    }
    ms_bench_drop_model_cache(m);
    ms_engine_opts eo = {.ram = ram, .io = io, .policy = policy, .prefetch = prefetch, .threads = threads, .ctx = ctx,
                         .batch = 64, .mtp = mtp};
    ms_engine *e = NULL;
    ms_err err = {0};
    int32_t *prompt = malloc((size_t)prompt_n * sizeof *prompt);
    for (int i = 0; i < prompt_n; i++) prompt[i] = (int32_t)((i * 7919 + 13) % m->cfg.vocab_size);
    /* each phase's routing, for the minimum (not with MTP: --trace records the main model only) */
    char tdir[256] = "", tpath[2][300] = {"", ""};
    int64_t slots = 0;
    const char *tmp = getenv("TMPDIR");
    snprintf(tdir, sizeof tdir, "%s/moestream-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mtp > 0 || !mkdtemp(tdir)) tdir[0] = 0;
    if (ms_engine_open(model, &eo, &e, &err) < 0) {
        snprintf(rows[0].err, sizeof rows[0].err, "%s", err.msg);
        rows[1] = rows[0];
        goto done;
    }
    for (int p = 0; p < 2; p++) {
        ms_gen_params gp = {.sampling = ms_sampler_defaults(), .max_new = n, .ignore_eos = true};
        gp.sampling.seed = 1;
        ms_gen g;
        ms_engine_reset(e);
        memset(&e->stats, 0, sizeof e->stats); /* per-phase throughput */
        if (ms_gen_init(&g, e, &gp, &err) < 0) break;
        g.mtp_force_accept = force_accept;
        if (tdir[0] && e->cache) {
            snprintf(tpath[p], sizeof tpath[p], "%s/phase%d.bin", tdir, p);
            ms_err terr = {0};
            if (ms_gen_trace_open(&g, tpath[p], &terr) < 0) tpath[p][0] = 0;
        }
        int rc = ms_gen_prompt(&g, prompt, prompt_n, &err);
        int32_t t;
        while (rc == 0 && (rc = ms_gen_next(&g, &t, &err)) > 0) rc = 0;
        ms_gen_stats st;
        ms_gen_get_stats(&g, &st);
        drow *r = &rows[p];
        if (rc < 0) snprintf(r->err, sizeof r->err, "%s", err.msg);
        r->ok = rc >= 0;
        r->decode_tok_s = st.decode_tok_s;
        r->prefill_tok_s = st.prefill_tok_s;
        r->hit_rate = st.decode_hit_rate;
        r->bytes_per_token = st.bytes_read_per_token;
        r->experts_per_token = st.experts_read_per_token;
        r->disk_per_token = st.disk_bytes_per_token;
        r->read_gbps = st.read_gbps;
        r->io_wait = st.io_wait_fraction;
        r->io_wait_s = st.io_wait_s;
        r->wait_saved_s = st.prefetch_wait_saved_s;
        r->peak_rss = st.peak_rss;
        r->gen = st.generated_tokens;
        r->mtp_acceptance = st.mtp_acceptance;
        r->mtp_tokens_per_step = st.mtp_tokens_per_step;
        snprintf(r->policy, sizeof r->policy, "%s", st.policy);
        slots = st.slots;
        ms_gen_free(&g); /* closes the trace */
    }
    min_reads(tpath, rows, prompt_n, slots);
done:
    for (int p = 0; p < 2; p++)
        if (tpath[p][0]) unlink(tpath[p]);
    if (tdir[0]) rmdir(tdir);
    if (write(fd, rows, sizeof rows) != (ssize_t)sizeof rows) { /* parent reports the row missing */
    }
    ms_engine_close(e);
    free(prompt);
}

int ms_bench_decode(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"ram", required_argument, 0, 'r'},
        {"io", required_argument, 0, 'i'},      {"policy", required_argument, 0, 'p'},
        {"prefetch", required_argument, 0, 'F'}, {"mtp", required_argument, 0, 'M'},
        {"mtp-force-accept", no_argument, 0, 'A'},
        {"prompt-tokens", required_argument, 0, 'P'}, {"threads", required_argument, 0, 'T'},
        {"ctx", required_argument, 0, 'c'},     {"device-gbps", required_argument, 0, 'd'},
        {"json", no_argument, 0, 'j'},          {"help", no_argument, 0, 'h'},
        {0}};
    const char *model = NULL, *ram_s = NULL;
    char *io_s = NULL, *pol_s = NULL, *pf_s = NULL;
    const char *mtp_s = "0";
    bool force_accept = false;
    long long n = 32, prompt_n = 16, threads = 0, ctx = 512;
    double dev = 0;
    bool json = false;
    ms_err err = {0};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":m:r:i:p:F:n:P:T:c:d:jh", opts, NULL)) != -1) {
        int bad = 0;
        switch (o) {
        case 'm': model = optarg; break;
        case 'r': ram_s = optarg; break;
        case 'i': io_s = optarg; break;
        case 'p': pol_s = optarg; break;
        case 'F': pf_s = optarg; break;
        case 'M': mtp_s = optarg; break;
        case 'A': force_accept = true; break;
        case 'n': bad = ms_parse_int(optarg, 1, 1 << 20, &n, "-n", &err); break;
        case 'P': bad = ms_parse_int(optarg, 1, 1 << 16, &prompt_n, "--prompt-tokens", &err); break;
        case 'T': bad = ms_parse_int(optarg, 1, 1024, &threads, "--threads", &err); break;
        case 'c': bad = ms_parse_int(optarg, 16, 1 << 24, &ctx, "--ctx", &err); break;
        case 'd': bad = ms_parse_double(optarg, &dev, "--device-gbps", &err); break;
        case 'j': json = true; break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("bench decode", o, argv);
        }
        if (bad < 0) return ms_cli_usage_error("bench decode", "%s", err.msg);
    }
    if (!model || !ram_s) return ms_cli_usage_error("bench decode", "--model and --ram are required");
    long long *mtps;
    int n_mtp;
    if (ms_parse_int_list(mtp_s, 0, 8, &mtps, &n_mtp, "--mtp", &err) < 0)
        return ms_cli_usage_error("bench decode", "%s", err.msg);
    if (ctx < prompt_n + 2 * n) ctx = prompt_n + 2 * n;
    uint64_t *rams;
    int n_ram;
    if (ms_parse_size_list(ram_s, &rams, &n_ram, "--ram", &err) < 0) {
        free(mtps);
        return ms_cli_usage_error("bench decode", "%s", err.msg);
    }
    char *ios[8], *pols[8], *pfs[4];
    int n_io = 0, n_pol = 0, n_pf = 0;
    char *io_copy = strdup(io_s ? io_s : "uring"), *pol_copy = pol_s ? strdup(pol_s) : NULL, *save;
    char *pf_copy = strdup(pf_s ? pf_s : "none");
    for (char *t = strtok_r(pf_copy, ",", &save); t && n_pf < 4; t = strtok_r(NULL, ",", &save)) pfs[n_pf++] = t;
    for (char *t = strtok_r(io_copy, ",", &save); t && n_io < 8; t = strtok_r(NULL, ",", &save)) ios[n_io++] = t;
    if (pol_copy)
        for (char *t = strtok_r(pol_copy, ",", &save); t && n_pol < 8; t = strtok_r(NULL, ",", &save)) pols[n_pol++] = t;
    if (!n_pol) pols[n_pol++] = NULL;
    /* every name is checked before the model is opened: one error line, nothing run */
    const char *bad = NULL;
    char why[sizeof((ms_err){0}.msg) + 64] = "";
    ms_engine_opts chk = {0};
    ms_err cerr = {0};
    for (int i = 0; i < n_io && !bad; i++)
        if (ms_cli_engine_opt(MS_OPT_IO, ios[i], &chk, &cerr) < 0) {
            bad = ios[i];
            snprintf(why, sizeof why, "%s", cerr.msg);
        }
    for (int i = 0; i < n_pol && !bad; i++) {
        if (!pols[i]) continue;
        char spec[256];
        snprintf(spec, sizeof spec, "%s", pols[i]);
        const ms_policy_ops *ops;
        ms_policy_params pp = {0};
        ms_err perr = {0};
        if (ms_policy_parse_spec(spec, &ops, &pp, &perr) < 0) {
            bad = pols[i];
            snprintf(why, sizeof why, "--policy: %s", perr.msg);
        }
    }
    for (int i = 0; i < n_pf && !bad; i++)
        if (ms_cli_engine_opt(MS_OPT_PREFETCH, pfs[i], &chk, &cerr) < 0) {
            bad = pfs[i];
            snprintf(why, sizeof why, "%s", cerr.msg);
        }
    if (bad) {
        free(mtps);
        free(rams);
        free(io_copy);
        free(pol_copy);
        free(pf_copy);
        return ms_cli_usage_error("bench decode", "%s", why);
    }
    ms_model m;
    int rc = 0;
    if (ms_model_open(model, &m, &err) < 0) {
        free(mtps);
        free(rams);
        free(io_copy);
        free(pol_copy);
        free(pf_copy);
        return ms_cli_fail("bench decode", &err);
    }
    if (dev <= 0 && m.n_moe_layers) dev = ms_bench_device_gbps(&m);
    json_object *arr = json_object_new_array();
    if (!json)
        printf("%-8s %-10s %-12s %-10s %-3s %-5s %9s %9s %7s %10s %9s %6s %10s %8s %7s %7s %10s %10s %7s\n", "io", "ram",
               "policy", "prefetch", "mtp", "phase",
               "decode/s", "prefill/s", "hit", "MiB/tok", "exp/tok", "x min", "disk MiB/t", "read GB/s", "wait", "wait s",
               "peak RSS", "limit t/s", "accept");
    for (int a = 0; a < n_ram; a++)
        for (int b = 0; b < n_io; b++)
            for (int c = 0; c < n_pol * n_pf * n_mtp; c++) {
                const char *pol = pols[c % n_pol], *pf = pfs[(c / n_pol) % n_pf];
                int mtp = (int)mtps[c / (n_pol * n_pf)];
                if (!strcmp(ios[b], "mmap") && c % (n_pol * n_pf) > 0) continue; /* no policy or prefetch for mmap */
                int pfd[2];
                if (pipe(pfd) < 0) continue;
                fflush(stdout);
                pid_t pid = fork();
                if (pid == 0) {
                    close(pfd[0]);
                    child(model, &m, rams[a], ios[b], pol, pf, mtp, force_accept, (int)n, (int)prompt_n, (int)threads,
                          (int)ctx, pfd[1]);
                    _exit(0);
                }
                close(pfd[1]);
                drow rows[2];
                ssize_t got = read(pfd[0], rows, sizeof rows);
                close(pfd[0]);
                int status;
                waitpid(pid, &status, 0);
                if (got != (ssize_t)sizeof rows) {
                    fprintf(stderr, "bench decode: configuration %s / %s crashed or was killed\n", ios[b], ram_s);
                    rc = 1;
                    continue;
                }
                for (int p = 0; p < 2; p++) {
                    drow *r = &rows[p];
                    double missed = r->bytes_per_token > 0 ? r->bytes_per_token : r->disk_per_token;
                    double limit = missed > 0 ? dev * 1e9 / missed : 0;
                    char rb[32], pk[32], vs_min[16] = "-";
                    if (r->min_per_token > 0) snprintf(vs_min, sizeof vs_min, "%.2fx", r->experts_per_token / r->min_per_token);
                    if (!r->ok) {
                        fprintf(stderr, "bench decode: %s --ram %s: %s\n", r->io, ms_fmt_bytes(r->ram, rb, 32), r->err);
                        rc = 1;
                        continue;
                    }
                    if (!json)
                        printf("%-8s %-10s %-12s %-10s %-3d %-5s %9.2f %9.2f %6.1f%% %10.2f %9.2f %6s %10.2f %8.2f %6.0f%% "
                               "%7.3f %10s %10.1f %6.0f%%\n",
                               r->io, ms_fmt_bytes(r->ram, rb, 32), r->policy, r->prefetch, r->mtp, r->phase, r->decode_tok_s,
                               r->prefill_tok_s, 100 * r->hit_rate, r->bytes_per_token / 1048576.0, r->experts_per_token,
                               vs_min, r->disk_per_token / 1048576.0, r->read_gbps, 100 * r->io_wait, r->io_wait_s,
                               ms_fmt_bytes(r->peak_rss, pk, 32), limit, 100 * r->mtp_acceptance);
                    json_object *j = json_object_new_object();
                    json_object_object_add(j, "io", json_object_new_string(r->io));
                    json_object_object_add(j, "ram_bytes", json_object_new_int64((int64_t)r->ram));
                    json_object_object_add(j, "policy", json_object_new_string(r->policy));
                    json_object_object_add(j, "phase", json_object_new_string(r->phase));
                    json_object_object_add(j, "prefetch", json_object_new_string(r->prefetch));
                    json_object_object_add(j, "decode_tok_s", json_object_new_double(r->decode_tok_s));
                    json_object_object_add(j, "prefill_tok_s", json_object_new_double(r->prefill_tok_s));
                    json_object_object_add(j, "hit_rate", json_object_new_double(r->hit_rate));
                    json_object_object_add(j, "bytes_read_per_token", json_object_new_double(r->bytes_per_token));
                    json_object_object_add(j, "experts_read_per_token", json_object_new_double(r->experts_per_token));
                    json_object_object_add(j, "min_experts_read_per_token",
                                           r->min_per_token > 0 ? json_object_new_double(r->min_per_token) : NULL);
                    json_object_object_add(j, "reads_vs_min", r->min_per_token > 0
                                                                  ? json_object_new_double(r->experts_per_token / r->min_per_token)
                                                                  : NULL);
                    json_object_object_add(j, "read_gbps", json_object_new_double(r->read_gbps));
                    json_object_object_add(j, "disk_bytes_per_token", json_object_new_double(r->disk_per_token));
                    json_object_object_add(j, "io_wait_fraction", json_object_new_double(r->io_wait));
                    json_object_object_add(j, "io_wait_s", json_object_new_double(r->io_wait_s));
                    json_object_object_add(j, "prefetch_wait_saved_s", json_object_new_double(r->wait_saved_s));
                    json_object_object_add(j, "peak_rss_bytes", json_object_new_int64((int64_t)r->peak_rss));
                    json_object_object_add(j, "device_gbps", json_object_new_double(dev));
                    json_object_object_add(j, "physical_limit_tok_s", json_object_new_double(limit));
                    json_object_object_add(j, "mtp", json_object_new_int(r->mtp));
                    json_object_object_add(j, "mtp_force_accept", json_object_new_boolean(force_accept));
                    json_object_object_add(j, "mtp_acceptance", json_object_new_double(r->mtp_acceptance));
                    json_object_object_add(j, "mtp_tokens_per_step", json_object_new_double(r->mtp_tokens_per_step));
                    json_object_array_add(arr, j);
                }
            }
    if (json) printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
    else printf("device read bandwidth %.2f GB/s; limit t/s = device GB/s / bytes missed per token (MiB/tok, or\n"
                "for mmap the disk bytes the kernel read per token, read-ahead included)\n", dev);
    json_object_put(arr);
    ms_model_close(&m);
    free(mtps);
    free(rams);
    free(io_copy);
    free(pol_copy);
    free(pf_copy);
    return rc;
}

/* bench_io.c - `moestream bench io`: expert-read GB/s through each I/O backend
 * against a raw O_DIRECT read of the same bytes at high queue depth, in the same
 * run. The workload is the model's own expert table (every range of every
 * expert, experts in shuffled order, read in layer-sized batches like the
 * runtime does); the engine is bench/bench_io_core.c. */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch.h"
#include "bench.h"
#include "bench_io_core.h"
#include "cli.h"
#include "model.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream bench io --model DIR [options]\n"
            "\n"
            "Read the model's routed experts through each I/O backend and compare with a raw O_DIRECT\n"
            "read of the same bytes (1 MiB reads, high queue depth) in the same run. The page cache is\n"
            "dropped before every run. Prints GB/s per backend and the ratio to raw.\n"
            "\n"
            "  --model DIR        model directory\n"
            "  --io LIST          backends, comma-separated (default uring,pread,mmap)\n"
            "  --max-bytes SIZE   payload per run (default 2G; a prefix of the shuffled experts)\n"
            "  --batch N          experts per batch (default: the model's top-k)\n"
            "  --queue-depth N    reads in flight (default 64)\n"
            "  --repeat N         rounds; each row keeps its best (default 2)\n"
            "  --json             JSON array of rows {backend, bytes, seconds, gbps, ratio_to_raw, ...}\n");
}

int ms_bench_model_workload(const ms_model *m, ms_bench_io_workload *w)
{
    memset(w, 0, sizeof *w);
    int E = m->cfg.n_routed_experts;
    size_t n_exp = (size_t)m->n_moe_layers * (size_t)E, nr = 0, ei = 0;
    ms_bench_io_range *ranges = malloc((n_exp ? n_exp : 1) * (size_t)(m->n_parts ? m->n_parts : 1) * sizeof *ranges);
    size_t *start = malloc((n_exp + 1) * sizeof *start);
    const char **paths = malloc((size_t)(m->tt.n_files ? m->tt.n_files : 1) * sizeof *paths);
    if (!ranges || !start || !paths) {
        free(ranges);
        free(start);
        free(paths);
        return -ENOMEM;
    }
    for (int i = 0; i < m->tt.n_files; i++) paths[i] = m->tt.files[i].path;
    for (int li = 0; li < m->n_moe_layers; li++)
        for (int e = 0; e < E; e++) {
            start[ei++] = nr;
            const ms_range *rg = ms_expert_ranges(&m->experts, li, e);
            for (int r = 0; r < m->n_parts; r++)
                if (rg[r].len) ranges[nr++] = (ms_bench_io_range){(uint32_t)rg[r].file, rg[r].offset, rg[r].len};
        }
    start[ei] = nr;
    *w = (ms_bench_io_workload){.paths = paths, .n_files = m->tt.n_files, .ranges = ranges, .n_ranges = nr,
                                .expert_start = start, .n_experts = n_exp};
    return 0;
}

void ms_bench_model_workload_free(ms_bench_io_workload *w)
{
    free((void *)w->paths);
    free((void *)w->ranges);
    free((void *)w->expert_start);
    memset(w, 0, sizeof *w);
}

int ms_bench_io(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},       {"io", required_argument, 0, 'i'},
                                         {"max-bytes", required_argument, 0, 'x'},   {"batch", required_argument, 0, 'b'},
                                         {"queue-depth", required_argument, 0, 'q'}, {"repeat", required_argument, 0, 'r'},
                                         {"json", no_argument, 0, 'j'},              {"help", no_argument, 0, 'h'},
                                         {0}};
    const char *model = NULL;
    char *io_list = NULL;
    bool json = false;
    uint64_t max_bytes = 2ull << 30;
    long long batch = 0, qd = 0, repeat = 2;
    ms_err err = {0};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":m:i:x:b:q:r:jh", opts, NULL)) != -1) {
        int bad = 0;
        switch (o) {
        case 'm': model = optarg; break;
        case 'i': io_list = optarg; break;
        case 'x': bad = ms_parse_size(optarg, &max_bytes, "--max-bytes", &err); break;
        case 'b': bad = ms_parse_int(optarg, 1, 4096, &batch, "--batch", &err); break;
        case 'q': bad = ms_parse_int(optarg, 1, 4096, &qd, "--queue-depth", &err); break;
        case 'r': bad = ms_parse_int(optarg, 1, 100, &repeat, "--repeat", &err); break;
        case 'j': json = true; break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("bench io", o, argv);
        }
        if (bad < 0) return ms_cli_usage_error("bench io", "%s", err.msg);
    }
    if (!model) return ms_cli_usage_error("bench io", "--model is required");
    ms_model m;
    if (ms_model_open(model, &m, &err) < 0) return ms_cli_fail("bench io", &err);
    if (!m.n_moe_layers) {
        ms_model_close(&m);
        ms_errf(&err, EINVAL, "%s has no routed experts", model);
        return ms_cli_fail("bench io", &err);
    }
    /* the workload: every expert's ranges, from the expert table */
    ms_bench_io_workload w;
    const char *backends[8];
    int nb = 0;
    char *list = io_list ? strdup(io_list) : NULL;
    int rc = 0;
    if (ms_bench_model_workload(&m, &w) < 0) {
        rc = ms_errf(&err, ENOMEM, "out of memory");
        goto out;
    }
    size_t n_exp = w.n_experts;
    if (list) {
        char *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t && nb < 8; t = strtok_r(NULL, ",", &save)) backends[nb++] = t;
    }
    ms_bench_io_opts bo = {.backends = nb ? backends : NULL, .n_backends = nb,
                           .batch_experts = batch ? (unsigned)batch : (unsigned)m.cfg.n_experts_per_tok,
                           .max_bytes = max_bytes, .queue_depth = (unsigned)qd, .seed = 1, .drop_global = true,
                           .repeat = (unsigned)repeat};
    ms_bench_io_row *rows = NULL;
    int n_rows = 0;
    rc = ms_bench_io_run(&w, &bo, &rows, &n_rows, &err);
    if (rc == 0) {
        if (!json) {
            char b[32];
            printf("model %s: %zu experts of %s, %u per batch\n", model, n_exp,
                   ms_fmt_bytes(m.max_expert_bytes, b, sizeof b), bo.batch_experts);
        }
        ms_bench_io_print(stdout, rows, n_rows, json);
    }
    free(rows);
out:
    free(list);
    ms_bench_model_workload_free(&w);
    ms_model_close(&m);
    return rc < 0 ? ms_cli_fail("bench io", &err) : 0;
}

double ms_bench_device_gbps(const ms_model *m)
{
    ms_bench_io_workload w;
    if (ms_bench_model_workload(m, &w) < 0) return 0;
    const char *uring[1] = {"uring"};
    ms_bench_io_opts bo = {.backends = uring, .n_backends = 1, .max_bytes = 1ull << 30, .seed = 1, .drop_global = true};
    ms_bench_io_row *rows = NULL;
    int n = 0;
    ms_err err = {0};
    double g = 0;
    if (ms_bench_io_run(&w, &bo, &rows, &n, &err) == 0 && n > 0) g = rows[0].gbps; /* rows[0] = raw */
    free(rows);
    ms_bench_model_workload_free(&w);
    return g;
}

void ms_bench_drop_model_cache(const ms_model *m)
{
    for (int i = 0; i < m->tt.n_files; i++) {
        (void)fdatasync(m->tt.files[i].fd);
        posix_fadvise(m->tt.files[i].fd, 0, 0, POSIX_FADV_DONTNEED);
    }
}

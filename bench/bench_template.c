/* bench_template.c - `moestream bench template`: chat-template parse and render times.
 * Reads a cases file in the format of tests/data/templates/cases.jsonl (one JSON object
 * per line: {"template": NAME, "input": {...}, "expected" | "error"}), loads each
 * template once from DIR/NAME.jinja, and times, --repeat times each, parsing the template
 * and rendering all its cases that are expected to render. Prints per template the
 * min / median parse time and the min / median render time per case. Figures only;
 * nothing passes or fails on time. */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "chat_template.h"
#include "cli.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: moestream bench template [--dir DIR] [--repeat N] [--json]\n"
               "\n"
               "Chat-template parse and render times (ms) for each template of a cases file.\n"
               "\n"
               "  --dir DIR      holds cases.jsonl and the NAME.jinja files it names\n"
               "                 (default tests/data/templates)\n"
               "  --repeat N     timed passes (default 20; min / median reported)\n"
               "  --json         one JSON object per template\n");
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    char name[128];
    json_object *inputs[256];
    int n;
} group;

/* cases.jsonl -> groups by template, in order of first appearance */
static int read_cases(const char *dir, group **out, int *n_out, ms_err *err)
{
    char path[4096], *txt;
    size_t len;
    snprintf(path, sizeof path, "%s/cases.jsonl", dir);
    if (ms_read_file(path, (size_t)1 << 30, &txt, &len, err) < 0) return -1;
    group *g = NULL;
    int n = 0, rc = 0;
    for (char *line = txt, *nl; rc == 0 && line < txt + len; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(txt + len - line));
        if (!nl) nl = txt + len;
        *nl = 0;
        if (line == nl) continue;
        json_object *c = json_tokener_parse(line), *t, *in;
        if (!c || !json_object_object_get_ex(c, "template", &t) || !json_object_object_get_ex(c, "input", &in)) {
            json_object_put(c);
            rc = ms_errf(err, EINVAL, "%s: a line is not a case object", path);
            break;
        }
        if (json_object_object_get_ex(c, "error", NULL)) {
            json_object_put(c);
            continue;
        }
        const char *name = json_object_get_string(t);
        int k = 0;
        while (k < n && strcmp(g[k].name, name)) k++;
        if (k == n) {
            group *ng = realloc(g, (size_t)(n + 1) * sizeof *g);
            if (!ng) rc = ms_errf(err, ENOMEM, "out of memory");
            else {
                g = ng;
                memset(&g[n], 0, sizeof g[n]);
                snprintf(g[n].name, sizeof g[n].name, "%s", name);
                n++;
            }
        }
        if (rc == 0 && g[k].n < 256) g[k].inputs[g[k].n++] = json_object_get(in);
        json_object_put(c);
    }
    free(txt);
    *out = g;
    *n_out = n;
    return rc;
}

static int bench_one(const char *dir, group *g, int repeat, bool json, ms_err *err)
{
    char path[4096], *src;
    size_t len, bytes = 0;
    snprintf(path, sizeof path, "%s/%s.jinja", dir, g->name);
    if (ms_read_file(path, (size_t)1 << 24, &src, &len, err) < 0) return -1;
    double *tp = calloc((size_t)repeat, sizeof *tp), *tr = calloc((size_t)repeat, sizeof *tr);
    ms_chat_template *ct = NULL;
    int rc = tp && tr ? 0 : ms_errf(err, ENOMEM, "out of memory");
    for (int r = 0; r < repeat && rc == 0; r++) {
        double t0 = ms_now_s();
        ms_chat_template_free(ct);
        ct = NULL;
        rc = ms_chat_template_from_text(src, len, path, &ct, err);
        tp[r] = (ms_now_s() - t0) * 1e3;
        t0 = ms_now_s();
        bytes = 0;
        for (int i = 0; i < g->n && rc == 0; i++) {
            char *out;
            size_t n;
            rc = ms_chat_template_render_input(ct, g->inputs[i], &out, &n, err);
            if (rc == 0) free(out), bytes += n;
        }
        tr[r] = (ms_now_s() - t0) * 1e3 / (g->n ? g->n : 1);
    }
    if (rc == 0) {
        qsort(tp, (size_t)repeat, sizeof *tp, cmp_d);
        qsort(tr, (size_t)repeat, sizeof *tr, cmp_d);
        size_t avg = g->n ? bytes / (size_t)g->n : 0;
        if (json)
            printf("{\"template\":\"%s\",\"bytes\":%zu,\"cases\":%d,\"parse_ms_min\":%.4f,\"parse_ms_median\":%.4f,"
                   "\"render_ms_min\":%.4f,\"render_ms_median\":%.4f,\"output_bytes_avg\":%zu}\n",
                   g->name, len, g->n, tp[0], tp[repeat / 2], tr[0], tr[repeat / 2], avg);
        else
            printf("%-18s %7zu %6d %9.3f %9.3f %10.3f %10.3f %9zu\n", g->name, len, g->n, tp[0], tp[repeat / 2], tr[0],
                   tr[repeat / 2], avg);
        fflush(stdout);
    }
    ms_chat_template_free(ct);
    free(tp);
    free(tr);
    free(src);
    return rc;
}

int ms_bench_template(int argc, char **argv)
{
    static const struct option opts[] = {{"dir", required_argument, 0, 'd'},
                                         {"repeat", required_argument, 0, 'r'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0}};
    const char *dir = "tests/data/templates";
    long long repeat = 20;
    bool json = false;
    ms_err err = {0};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":d:r:jh", opts, NULL)) != -1) {
        switch (o) {
        case 'd': dir = optarg; break;
        case 'r':
            if (ms_parse_int(optarg, 1, 100000, &repeat, "--repeat", &err) < 0)
                return ms_cli_usage_error("bench template", "%s", err.msg);
            break;
        case 'j': json = true; break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("bench template", o, argv);
        }
    }
    if (optind != argc) return ms_cli_usage_error("bench template", "unexpected argument '%s'", argv[optind]);
    group *g = NULL;
    int n = 0, rc = read_cases(dir, &g, &n, &err);
    if (rc == 0 && !json)
        printf("%-18s %7s %6s %9s %9s %10s %10s %9s\n", "template", "bytes", "cases", "parse min", "parse med",
               "render min", "render med", "out bytes");
    for (int i = 0; i < n && rc == 0; i++) rc = bench_one(dir, &g[i], (int)repeat, json, &err);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g[i].n; k++) json_object_put(g[i].inputs[k]);
    free(g);
    return rc < 0 ? ms_cli_fail("bench template", &err) : 0;
}

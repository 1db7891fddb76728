/* ms_test.c - see ms_test.h. */
#include "ms_test.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch.h"
#include "plan.h"
#include "synth.h"
#include "util.h"

char *mst_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

char *mst_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

bool mst_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

char *mst_tmpdir(const char *name)
{
    char *p = mst_fmt("%s/%s", MS_TMP_DIR, name);
    char *cmd = mst_fmt("rm -rf '%s' && mkdir -p '%s'", p, p);
    int rc = system(cmd);
    free(cmd);
    if (rc != 0) {
        free(p);
        return NULL;
    }
    return p;
}

char *mst_synth_tiny(const char *name)
{
    char *dir = mst_tmpdir(name), *out = NULL, *errs = NULL;
    if (!dir) return NULL;
    int rc = mst_run(&out, &errs, "%s synth --preset tiny --out %s", MS_BIN, dir);
    if (rc != 0) {
        fprintf(stderr, "synth failed: %s\n", errs ? errs : "");
        free(dir);
        dir = NULL;
    }
    free(out);
    free(errs);
    return dir;
}

int mst_run(char **out, char **errout, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL;
    if (vasprintf(&cmd, fmt, ap) < 0) cmd = NULL;
    va_end(ap);
    if (!cmd) return -1;
    char ofile[] = MS_TMP_DIR "/mst_outXXXXXX";
    char efile[] = MS_TMP_DIR "/mst_errXXXXXX";
    int ofd = mkstemp(ofile), efd = mkstemp(efile);
    close(ofd);
    close(efd);
    char *full = mst_fmt("(%s) >'%s' 2>'%s'", cmd, ofile, efile);
    int st = system(full);
    free(full);
    free(cmd);
    if (out) *out = mst_slurp(ofile, NULL);
    if (errout) *errout = mst_slurp(efile, NULL);
    unlink(ofile);
    unlink(efile);
    if (st == -1) return -1;
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

bool mst_in_ci(void)
{
    const char *ci = getenv("CI");
    return ci && (!strcmp(ci, "true") || !strcmp(ci, "1"));
}

void mst_skip_(const char *file, int line, const char *func, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    bool ci = mst_in_ci(), allowed = false;
    const char *allow = getenv("MS_TEST_ALLOW_SKIP");
    size_t fl = strlen(func);
    for (const char *a = allow; ci && a && (a = strstr(a, func)) != NULL; a += fl)
        allowed |= (a == allow || a[-1] == ' ' || a[-1] == ',') && (a[fl] == 0 || a[fl] == ' ' || a[fl] == ',');
    char *msg = mst_fmt("[  SKIP    ] %s %s: %s%s\n", program_invocation_short_name, func, why,
                        !ci        ? ""
                        : allowed ? " (allowed under CI by MS_TEST_ALLOW_SKIP)"
                                  : " (CI=true: a skip is a failure)");
    fputs(msg, stderr);
    int fd = open(MS_SKIP_LOG, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, msg, strlen(msg)) < 0) { /* the log is best effort; stderr has the line */
        }
        close(fd);
    }
    free(msg);
    if (ci && !allowed) _fail(file, line);
}

bool mst_have_numpy(void)
{
    static int have = -1;
    if (have < 0)
        have = access("/usr/bin/python3", X_OK) == 0 && mst_run(NULL, NULL, MST_PYTHON " -c 'import numpy'") == 0;
    return have == 1;
}

static char g_deadline_msg[256];

static void deadline_hit(int sig)
{
    (void)sig;
    ssize_t r = write(2, g_deadline_msg, strlen(g_deadline_msg));
    (void)r;
    _exit(1);
}

int mst_deadline_arm(void **state)
{
    (void)state;
    mst_deadline(MST_TEST_DEADLINE_S, "the test of the last [ RUN      ] line");
    return 0;
}

int mst_deadline_off(void **state)
{
    (void)state;
    mst_deadline(0, NULL);
    return 0;
}

void mst_deadline(unsigned seconds, const char *what)
{
    if (!seconds) {
        alarm(0);
        return;
    }
    snprintf(g_deadline_msg, sizeof g_deadline_msg, "\n%s %s did not finish within %u s (hung?)\n",
             program_invocation_short_name, what ? what : "the test", seconds);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = deadline_hit;
    sigaction(SIGALRM, &sa, NULL);
    alarm(seconds);
}

static long long json_int(json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v)) fail_msg("stats JSON has no \"%s\"", k);
    return (long long)json_object_get_int64(v);
}

void mst_check_budget_split(const char *model_dir, uint64_t ram, int ctx, int batch, int threads,
                            const char *stats_json, long long peak, bool upper, const char *what)
{
    ms_model m;
    ms_err err = {0};
#ifdef MST_ASAN
    upper = false;
#endif
    if (ms_model_open(model_dir, &m, &err) < 0) fail_msg("%s: %s", model_dir, err.msg);
    ms_plan p;
    if (ms_plan_compute(&m, ram, ctx, batch, threads, &p, &err) < 0) fail_msg("plan: %s", err.msg);
    ms_model_close(&m);
    char *text = mst_slurp(stats_json, NULL);
    if (!text) fail_msg("no stats JSON at %s", stats_json);
    json_object *st = json_tokener_parse(text);
    free(text);
    if (!st) fail_msg("%s: not JSON", stats_json);
    long long arena = json_int(st, "cache_bytes"), resident = json_int(st, "resident_bytes"),
              state = json_int(st, "state_bytes");
    if (peak < 0) peak = json_int(st, "peak_rss_bytes");
    json_object_put(st);
    const double M = 1024.0 * 1024.0;
    uint64_t fixed = p.resident_bytes + p.kv_bytes + p.scratch_bytes + p.overhead_bytes;
    uint64_t cache_max = ram > fixed ? ram - fixed : 0;
    uint64_t rest = (uint64_t)MS_MAX((long long)p.resident_bytes, resident) + p.kv_bytes + p.scratch_bytes;
    uint64_t lo = (uint64_t)resident + (uint64_t)arena, hi = rest + (uint64_t)arena + MST_RSS_SLACK;
    print_message("%s: --ram %.1f MiB: arena %.2f MiB (plan %.2f MiB, at most %.2f MiB), resident %.2f MiB, state "
                  "%.2f MiB (plan KV %.2f + scratch %.2f); peak %.2f MiB in [%.2f, %.2f%s]: %.2f MiB beyond resident + "
                  "state + arena\n",
                  what, ram / M, arena / M, p.cache_used / M, cache_max / M, resident / M, state / M, p.kv_bytes / M,
                  p.scratch_bytes / M, peak / M, lo / M, hi / M, upper ? "" : ", not checked", (peak - (double)rest - arena) / M);
    if (peak <= 0) fail_msg("%s: peak memory unknown (%lld)", what, peak);
    if ((uint64_t)arena != p.cache_used)
        fail_msg("%s: the expert arena is %lld bytes, the plan's cache split %llu", what, arena,
                 (unsigned long long)p.cache_used);
    if ((uint64_t)arena > cache_max)
        fail_msg("%s: the expert arena (%lld bytes) takes part of the fixed allowance: at most %llu", what, arena,
                 (unsigned long long)cache_max);
    if ((uint64_t)peak < lo)
        fail_msg("%s: peak %lld < resident + arena %llu: the arena is not committed?", what, peak,
                 (unsigned long long)lo);
    if (upper && (uint64_t)peak > hi)
        fail_msg("%s: peak %lld > resident + KV + scratch + arena + %llu MiB slack = %llu", what, peak,
                 MST_RSS_SLACK >> 20, (unsigned long long)hi);
}

char *mst_synth_hf(const char *name, int n_layers, int n_mtp, uint64_t seed)
{
    char *dir = mst_tmpdir(name);
    if (!dir) fail_msg("cannot make %s/%s", MS_TMP_DIR, name);
    ms_synth_opts o;
    ms_err err = {0};
    if (ms_synth_preset("tiny", &o, &err) < 0) fail_msg("synth preset: %s", err.msg);
    o.format = MS_SYNTH_HF;
    if (n_layers > 0) o.arch.n_layers = n_layers;
    o.arch.n_mtp = n_mtp;
    o.seed = seed;
    ms_synth_result r;
    if (ms_synth_write(dir, &o, &r, &err) < 0) fail_msg("synth: %s", err.msg);
    return dir;
}

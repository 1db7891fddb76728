/* test_cgroup.c - the one-budget promise under a hard memory limit.
 *
 * A generated model whose files are >= 3x the --ram budget (demo widths,
 * hidden 2048, 5 layers = 4 MoE x 64 experts, ~600 MiB) runs inside a child
 * memory cgroup whose limit is exactly the budget (the budget already holds
 * the plan's 96 MiB fixed allowance; no extra), with swap off for the group:
 *   - uring (default backend): exit 0, the same greedy tokens as a run without
 *     a limit, no OOM kill, no failed charge (failcnt / events "max" 0: a value
 *     that cannot be read is a failure, not a pass) and the group's peak usage
 *     (max_usage_in_bytes, v2 memory.peak; unknown = failure) below the limit
 *     and within the run's own parts (mst_check_budget_split: >= resident +
 *     expert arena, <= resident + KV + scratch + arena + MST_RSS_SLACK, the
 *     arena never taking the plan's fixed allowance).
 *   - mmap (the page-cache baseline) under the same limit: only reported
 *     (peak usage, failed charges, time), never a failure: it fills the limit
 *     with page cache and thrashes, which is the point of the comparison.
 *     If it finishes, its tokens must still match.
 * The model's page cache is dropped before every run, so each run pays its own
 * reads. The budget is the model's file bytes / 3 and must be >= the plan's
 * minimum (checked with `moestream plan --json`).
 *
 * A visible skip (MST_SKIP: a failure under CI=true) when not root or when no
 * writable memory cgroup is found (v1 /sys/fs/cgroup/memory/<own group>/child,
 * or v2 <own group>/child with memory.max). In a sanitizer build it runs too,
 * with the child's ASan quarantine off (ASAN_OPTIONS quarantine_size_mb=0, so
 * freed blocks go back at once) and everything above asserted except the
 * upper bound of the peak: ASan's shadow memory and allocator are not the
 * runtime's (reported instead). Child cgroups are created under this
 * process's own cgroup and removed at the end. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ms_test.h"

typedef struct cgroup {
    int version;    /* 1 or 2 */
    char path[512]; /* the child group's directory */
} cgroup;

static bool write_str(const char *dir, const char *file, const char *val)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = write(fd, val, strlen(val)) == (ssize_t)strlen(val);
    close(fd);
    return ok;
}

/* A number from a cgroup file (the first token), or -1. */
static long long read_num(const char *dir, const char *file)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    long long v = -1;
    if (fscanf(f, "%lld", &v) != 1) v = -1;
    fclose(f);
    return v;
}

/* "key value" line of a flat-keyed cgroup file (memory.events, oom_control), or -1. */
static long long read_key(const char *dir, const char *file, const char *key)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    char k[128];
    long long v, out = -1;
    while (fscanf(f, "%127s %lld", k, &v) == 2)
        if (!strcmp(k, key)) out = v;
    fclose(f);
    return out;
}

/* This process's cgroup path for the memory controller (v1) or the unified
 * hierarchy (v2: the "0::" line). */
static bool own_cgroup(int version, char *out, size_t len)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return false;
    char line[1024];
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        const char *ctrl = c1 + 1, *path = c2 + 1;
        bool match = version == 1 ? strstr(ctrl, "memory") != NULL : (line[0] == '0' && *ctrl == 0);
        if (match) {
            snprintf(out, len, "%s", strcmp(path, "/") ? path : "");
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* Create a child memory cgroup with limit `limit` (swap off); false = unavailable. */
static bool cgroup_create(cgroup *cg, const char *name, unsigned long long limit)
{
    char own[400], lim[32];
    snprintf(lim, sizeof lim, "%llu", limit);
    memset(cg, 0, sizeof *cg);
    if (access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK) == 0 && own_cgroup(1, own, sizeof own)) {
        snprintf(cg->path, sizeof cg->path, "/sys/fs/cgroup/memory%s/%s-%ld", own, name, (long)getpid());
        if (mkdir(cg->path, 0755) != 0 && errno != EEXIST) return false;
        cg->version = 1;
        write_str(cg->path, "memory.swappiness", "0");
        if (!write_str(cg->path, "memory.limit_in_bytes", lim)) goto fail;
        write_str(cg->path, "memory.memsw.limit_in_bytes", lim); /* only with swap accounting */
        write_str(cg->path, "memory.oom_control", "0");        /* OOM killer on: a kill shows */
        return true;
    }
    if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0 && own_cgroup(2, own, sizeof own)) {
        snprintf(cg->path, sizeof cg->path, "/sys/fs/cgroup%s/%s-%ld", own, name, (long)getpid());
        if (mkdir(cg->path, 0755) != 0 && errno != EEXIST) return false;
        cg->version = 2;
        if (!write_str(cg->path, "memory.max", lim)) goto fail; /* needs +memory in the parent's subtree_control */
        write_str(cg->path, "memory.swap.max", "0");
        return true;
    }
    return false;
fail:
    rmdir(cg->path);
    cg->version = 0;
    return false;
}

static void cgroup_remove(cgroup *cg)
{
    if (!cg->version) return;
    for (int i = 0; i < 50 && rmdir(cg->path) != 0 && errno == EBUSY; i++) usleep(100000);
    cg->version = 0;
}

typedef struct mem_report {
    long long peak, failcnt, oom_kill, under_oom;
} mem_report;

static mem_report cgroup_report(const cgroup *cg)
{
    mem_report r = {-1, -1, -1, -1};
    if (cg->version == 1) {
        r.peak = read_num(cg->path, "memory.max_usage_in_bytes");
        r.failcnt = read_num(cg->path, "memory.failcnt");
        r.oom_kill = read_key(cg->path, "memory.oom_control", "oom_kill");
        r.under_oom = read_key(cg->path, "memory.oom_control", "under_oom");
    } else {
        r.peak = read_num(cg->path, "memory.peak"); /* Linux >= 5.19 */
        r.failcnt = read_key(cg->path, "memory.events", "max");
        r.oom_kill = read_key(cg->path, "memory.events", "oom_kill");
        r.under_oom = read_key(cg->path, "memory.events", "oom");
    }
    return r;
}

/* fork + exec argv with stdout/stderr to files, the child first joining
 * cgroup cg (if any). Waits at most timeout_s, then SIGKILLs. Returns the wait
 * status (or -1); *secs gets the wall time, *timed_out whether it was killed. */
static int spawn(char *const argv[], const cgroup *cg, const char *out, const char *errf, int timeout_s, double *secs,
                 bool *timed_out)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    *timed_out = false;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (cg && cg->version) {
            char procs[700], me[32];
            snprintf(procs, sizeof procs, "%s/cgroup.procs", cg->path);
            snprintf(me, sizeof me, "%ld", (long)getpid());
            int fd = open(procs, O_WRONLY);
            if (fd < 0 || write(fd, me, strlen(me)) != (ssize_t)strlen(me)) _exit(120);
            close(fd);
        }
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0) _exit(121);
        dup2(o, 1);
        dup2(e, 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        execv(argv[0], argv);
        _exit(122);
    }
    int st = -1;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) break;
        if (r < 0) return -1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > timeout_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            *timed_out = true;
            break;
        }
        usleep(20000);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return st;
}

/* Drop the page cache of every file in dir (clean pages: the model was fsynced). */
static void drop_cache(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        char *p = mst_fmt("%s/%s", dir, de->d_name);
        int fd = open(p, O_RDONLY);
        if (fd >= 0) {
            fdatasync(fd);
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            close(fd);
        }
        free(p);
    }
    closedir(d);
}

static unsigned long long dir_bytes(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    unsigned long long n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name), sl = strlen(suffix);
        if (l < sl || strcmp(de->d_name + l - sl, suffix)) continue;
        char *p = mst_fmt("%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(p, &st) == 0) n += (unsigned long long)st.st_size;
        free(p);
    }
    closedir(d);
    return n;
}

static char *trim(char *s)
{
    if (!s) return s;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ')) s[--n] = 0;
    return s;
}

#define MIB (1024.0 * 1024.0)

static void test_memory_limit(void **state)
{
    (void)state;
    if (geteuid() != 0) MST_SKIP("not root: cannot create a memory cgroup");
    cgroup probe;
    if (!cgroup_create(&probe, "ms-probe", 1ull << 30))
        MST_SKIP("no writable memory cgroup (v1, or v2 with the memory controller delegated)");
#ifdef MST_ASAN
    /* freed blocks back at once: the quarantine (256 MiB by default) is ASan's, not the runtime's */
    const char *ao = getenv("ASAN_OPTIONS");
    char *asan = mst_fmt("%s%squarantine_size_mb=0", ao ? ao : "", ao && *ao ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
    free(asan);
#endif
    cgroup_remove(&probe);

    char *dir = mst_tmpdir("cgroup_model");
    assert_non_null(dir);
    char *out = NULL, *err = NULL;
    /* ~600 MiB: hidden 2048, 5 layers (1 dense + 4 MoE x 64 experts of 2.1 MiB), vocab 4096 */
    int rc = mst_run(&out, &err, "'%s' synth --preset demo --layers 5 --vocab 4096 --fsync --force -q --out '%s'",
                     MS_BIN, dir);
    if (rc != 0) fail_msg("synth failed (%d): %s", rc, err ? err : "");
    free(out);
    free(err);
    unsigned long long files = dir_bytes(dir, ".safetensors");
    /* the budget: files / 3, whole MiB; it must be a budget the plan accepts */
    unsigned long long budget = files / 3 / (1u << 20) * (1u << 20);
    const char *eng = "--ctx 256 --batch 16 --threads 2";
    rc = mst_run(&out, &err, "'%s' plan --model '%s' --ram %llu %s --json", MS_BIN, dir, budget, eng);
    assert_non_null(out);
    json_object *pj = json_tokener_parse(out);
    if (!pj) fail_msg("plan --json printed no JSON (rc %d): %s %s", rc, out, err ? err : "");
    json_object *v;
    assert_true(json_object_object_get_ex(pj, "min_ram_bytes", &v));
    unsigned long long min_ram = (unsigned long long)json_object_get_int64(v);
    assert_true(json_object_object_get_ex(pj, "expert_slots", &v));
    long long slots = json_object_get_int64(v);
    assert_true(json_object_object_get_ex(pj, "total_experts", &v));
    long long total = json_object_get_int64(v);
    json_object_put(pj);
    free(out);
    free(err);
    if (rc != 0 || budget < min_ram)
        fail_msg("budget %.1f MiB (files / 3) is below the plan's minimum %.1f MiB: make the model larger", budget / MIB,
                 min_ram / MIB);
    print_message("model: %.1f MiB of safetensors = %.2f x the budget %.1f MiB (plan minimum %.1f MiB); "
                  "expert cache %lld of %lld experts\n",
                  files / MIB, (double)files / (double)budget, budget / MIB, min_ram / MIB, slots, total);

    char ram[32], ntok[16];
    snprintf(ram, sizeof ram, "%llu", budget);
    char *sj = mst_fmt("%s/stats-uring.json", dir);
    char *o0 = mst_fmt("%s/out-free.txt", dir), *e0 = mst_fmt("%s/err-free.txt", dir);
    char *o1 = mst_fmt("%s/out-uring.txt", dir), *e1 = mst_fmt("%s/err-uring.txt", dir);
    char *o2 = mst_fmt("%s/out-mmap.txt", dir), *e2 = mst_fmt("%s/err-mmap.txt", dir);
    const int n_gen = 12, n_mmap = 4;
    snprintf(ntok, sizeof ntok, "%d", n_gen);
    char *argv_free[] = {(char *)MS_BIN, "run", "--model", dir, "--tokens", "1,2,3,4", "-n", ntok, "--temp", "0",
                         "--ram", ram, "--ctx", "256", "--batch", "16", "--threads", "2", "--io", "uring",
                         "--stats-json", sj, NULL};
    double secs;
    bool to;

    /* 1. reference: no limit */
    drop_cache(dir);
    int st = spawn(argv_free, NULL, o0, e0, 120, &secs, &to);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) fail_msg("unlimited run failed (status %d): %s", st, mst_slurp(e0, NULL));
    char *ref = trim(mst_slurp(o0, NULL));
    assert_non_null(ref);
    print_message("unlimited uring: %.1f s, tokens %s\n", secs, ref);

    /* 2. uring inside a group limited to the budget */
    cgroup cg;
    assert_true(cgroup_create(&cg, "ms-uring", budget));
    drop_cache(dir);
    st = spawn(argv_free, &cg, o1, e1, 120, &secs, &to);
    mem_report mr = cgroup_report(&cg);
    int ver = cg.version;
    cgroup_remove(&cg);
    char *errtxt = mst_slurp(e1, NULL);
    print_message("uring in cgroup v%d limit %.1f MiB: %.1f s, exit %d%s, peak usage %.1f MiB, failcnt %lld, "
                  "oom_kill %lld\n  %s",
                  ver, budget / MIB, secs, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), to ? " (timed out)" : "",
                  mr.peak / MIB, mr.failcnt, mr.oom_kill, errtxt ? errtxt : "");
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        fail_msg("uring run under the limit did not exit 0 (status %d, %s): %s", st,
                 WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? "killed: OOM?" : "error", errtxt ? errtxt : "");
    char *got = trim(mst_slurp(o1, NULL));
    assert_non_null(got);
    assert_string_equal(got, ref); /* same tokens with and without the limit */
    if (mr.oom_kill != 0) fail_msg("OOM kills in the group: %lld (-1: unreadable)", mr.oom_kill);
    if (mr.failcnt != 0) fail_msg("the group hit its limit %lld times (-1: unreadable)", mr.failcnt);
    if (mr.peak <= 0) fail_msg("the group's peak usage is unknown (%lld)", mr.peak);
    if ((unsigned long long)mr.peak >= budget)
        fail_msg("peak usage %.1f MiB reached the limit %.1f MiB", mr.peak / MIB, budget / MIB);
    mst_check_budget_split(dir, budget, 256, 16, 2, sj, mr.peak, true, "uring in the cgroup (peak: the group's)");
    free(got);
    free(errtxt);

    /* 3. the page-cache baseline under the same limit: reported, not asserted */
    snprintf(ntok, sizeof ntok, "%d", n_mmap);
    char *argv_mmap[] = {(char *)MS_BIN, "run", "--model", dir, "--tokens", "1,2,3,4", "-n", ntok, "--temp", "0",
                         "--ram", ram, "--ctx", "256", "--batch", "16", "--threads", "2", "--io", "mmap", NULL};
    if (cgroup_create(&cg, "ms-mmap", budget)) {
        drop_cache(dir);
        st = spawn(argv_mmap, &cg, o2, e2, 60, &secs, &to);
        mr = cgroup_report(&cg);
        ver = cg.version;
        cgroup_remove(&cg);
        errtxt = mst_slurp(e2, NULL);
        print_message("mmap in cgroup v%d limit %.1f MiB (%d tokens): %.1f s, exit %d%s, peak usage %.1f MiB "
                      "(%.0f%% of the limit), failcnt %lld, oom_kill %lld\n  %s",
                      ver, budget / MIB, n_mmap, secs, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
                      to ? " (timed out: thrashing)" : "", mr.peak / MIB, 100.0 * (double)mr.peak / (double)budget,
                      mr.failcnt, mr.oom_kill, errtxt ? errtxt : "");
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) { /* if it finishes, its answer is still the same */
            got = trim(mst_slurp(o2, NULL));
            assert_non_null(got);
            assert_int_equal(strncmp(got, ref, strlen(got)), 0);
            free(got);
        }
        free(errtxt);
    }
    free(ref);
    free(o0), free(e0), free(o1), free(e1), free(o2), free(e2), free(sj);
    free(dir);
}

/* The model is ~600 MiB: remove it whatever the outcome. */
static int remove_model(void **state)
{
    (void)state;
    char *rm = mst_fmt("rm -rf '%s/cgroup_model'", MS_TMP_DIR);
    int rc = system(rm);
    free(rm);
    return rc == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_memory_limit, remove_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* ms_test.h - shared helpers for the cmocka tests: run the CLI and capture its
 * output, make scratch directories, read files, locate fixtures (MS_TEST_DATA,
 * MS_SHARED_DIR, MS_BIN, MS_TMP_DIR, MS_SKIP_LOG come from tests/CMakeLists.txt),
 * skip visibly (a failure under CI=true), bound a test's wall time, and check a
 * run's memory against the budget plan. */
#ifndef MS_TEST_H
#define MS_TEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

/* Built with AddressSanitizer (gcc or clang). */
#if defined(__SANITIZE_ADDRESS__)
#define MST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MST_ASAN 1
#endif
#endif

/* Run a shell command line; capture stdout (and stderr) into malloc'd strings
 * (either pointer may be NULL). Returns the exit status (or -1 / 128+signal). */
int mst_run(char **out, char **errout, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Make (or empty) a scratch directory MS_TMP_DIR/<name>; returns a static-lifetime
 * malloc'd path. */
char *mst_tmpdir(const char *name);

/* Whole file as a malloc'd NUL-terminated string (NULL if unreadable). */
char *mst_slurp(const char *path, size_t *len);

/* True if path exists. */
bool mst_exists(const char *path);

/* `moestream synth --preset tiny` into the scratch directory MS_TMP_DIR/<name>: its
 * malloc'd path, NULL (with synth's stderr printed) if synth failed. */
char *mst_synth_tiny(const char *name);

/* printf into a malloc'd string. */
char *mst_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Skip the running test, visibly. Prints "[  SKIP    ] <binary> <test>: <reason>"
 * and appends that line to MS_SKIP_LOG (the build tree's skipped-tests.txt,
 * listed by scripts/test.sh and .ci/run). Under CI (environment CI=true or
 * CI=1) the skip is a failure instead: CI must run every test, except the tests
 * named in MS_TEST_ALLOW_SKIP (space-separated function names, set by .ci/run
 * with its reason; the log still lists them). Every test that can skip goes
 * through this, never through cmocka's skip() directly. */
#define MST_SKIP(...)                                          \
    do {                                                       \
        mst_skip_(__FILE__, __LINE__, __func__, __VA_ARGS__); \
        skip();                                                \
    } while (0)
void mst_skip_(const char *file, int line, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* True when running under CI (CI=true or CI=1 in the environment). */
bool mst_in_ci(void);

/* /usr/bin/python3 with numpy importable (checked once). The reference scripts
 * in tests/ref need it. */
bool mst_have_numpy(void);
#define MST_PYTHON "/usr/bin/python3 -B" /* no __pycache__ in the source tree */

/* The one-budget promise, measured: a `run --stats-json` of model_dir at --ram
 * ram with --ctx/--batch/--threads (f32 KV) reported its expert arena
 * ("cache_bytes"), resident and state bytes. Asserts
 *   - the arena is the plan's cache split (ms_plan_compute's cache_used) and at
 *     most ram - (resident + KV + scratch + the plan's fixed overhead
 *     allowance): the cache never takes the allowance;
 *   - resident + arena <= peak (the arena is committed up front) and, when
 *     upper, peak <= resident + KV + scratch + arena + MST_RSS_SLACK (never in
 *     an ASan build: its shadow memory and allocator are not the runtime's).
 * peak: the caller's measurement (-1: the stats' peak_rss_bytes, i.e. VmHWM).
 * Prints the figures with `what`. */
void mst_check_budget_split(const char *model_dir, uint64_t ram, int ctx, int batch, int threads,
                            const char *stats_json, long long peak, bool upper, const char *what);

/* What a run really needs beyond resident + KV + scratch + expert arena: the
 * binary and its libraries' touched pages, thread stacks, io_uring rings,
 * allocator slack (and, for a cgroup's peak, kernel memory charged to it).
 * Measured (Release, 2026-12): 5.9 MiB of VmHWM in test_stream, 1.7 MiB of
 * VmHWM and -2.5 MiB of the cgroup's peak (pages shared with the parent are not
 * charged; KV not yet written) in test_cgroup; docs/RELIABILITY.md. The plan
 * reserves 96 MiB for it: a cache that took that reserve is caught here. */
#define MST_RSS_SLACK (16ull << 20)

/* A `synth --preset tiny --format hf` model (bf16) in MS_TMP_DIR/<name>, with
 * n_layers layers (0: the preset's 4) and n_mtp MTP layers; returns the
 * directory (malloc'd). Fails the test if synth fails. */
char *mst_synth_hf(const char *name, int n_layers, int n_mtp, uint64_t seed);

/* Bound the running test's wall time: after `seconds` the process prints
 * "<what> did not finish within N s (hung?)" and exits 1, so a hang fails in
 * seconds instead of at ctest's TIMEOUT. mst_deadline(0, NULL) disarms it. One
 * deadline at a time (SIGALRM). */
void mst_deadline(unsigned seconds, const char *what);

/* A cmocka test bounded by MST_TEST_DEADLINE_S (per-test setup arms
 * mst_deadline, teardown disarms it): for tests whose failure mode is a hang
 * (a reap that never returns, a read that never completes). */
#define MST_TEST_DEADLINE_S 20
#define MST_BOUNDED_TEST(f) cmocka_unit_test_setup_teardown(f, mst_deadline_arm, mst_deadline_off)
int mst_deadline_arm(void **state);
int mst_deadline_off(void **state);

#endif

/* ms_test.h - shared helpers for the cmocka tests: run the CLI and capture its
 * output, make scratch directories, read files, locate fixtures (MS_TEST_DATA,
 * MS_BIN, MS_TMP_DIR, MS_SKIP_LOG come from tests/CMakeLists.txt), skip visibly
 * (a failure under CI=true) and bound a test's wall time. */
#ifndef MS_TEST_H
#define MS_TEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

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

/* Bound the running test's wall time: after `seconds` the process prints
 * "<what> did not finish within N s (hung?)" and exits 1, so a hang fails in
 * seconds instead of at ctest's TIMEOUT. mst_deadline(0, NULL) disarms it. One
 * deadline at a time (SIGALRM). */
void mst_deadline(unsigned seconds, const char *what);

#endif

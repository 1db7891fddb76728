/* ms_test.h - shared helpers for the cmocka tests: run the CLI and capture its
 * output, make scratch directories, read files, and locate fixtures
 * (MS_TEST_DATA, MS_SHARED_DIR, MS_BIN, MS_TMP_DIR come from tests/CMakeLists.txt). */
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

/* Integer member k of JSON object o (fails the test when absent). */
struct json_object;
int64_t mst_json_int(struct json_object *o, const char *k);

/* printf into a malloc'd string. */
char *mst_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

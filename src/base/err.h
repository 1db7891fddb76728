/* err.h - error reporting for library code.
 *
 * Library functions never exit and never print: they return 0 (or a count) on
 * success and a negative errno on failure, and fill an ms_err with one line that
 * names the file, tensor or field at fault. Only main() prints it and exits.
 *
 *     ms_err err = {0};
 *     if (ms_model_open(dir, &m, &err) < 0) { fprintf(stderr, "moestream: %s\n", err.msg); return 1; }
 */
#ifndef MS_ERR_H
#define MS_ERR_H

#include <errno.h>

typedef struct ms_err {
    int code;        /* positive errno of the first failure, 0 if none */
    char msg[1024];  /* one line, no trailing newline */
} ms_err;

/* Record an error (printf-style) and return -code. A NULL err is allowed.
 * The first error wins: a later call does not overwrite an earlier message
 * (so low-level detail is kept while callers unwind); use ms_err_prefix to add
 * context. */
int ms_errf(ms_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prepend context ("file.safetensors: ") to an existing message. */
void ms_err_prefix(ms_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void ms_err_clear(ms_err *err);

#endif

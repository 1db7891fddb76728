/* jinja.h - a Jinja2 template renderer for chat templates, exact to Hugging Face
 * transformers' apply_chat_template(..., tokenize=False).
 *
 * The environment is the one transformers builds: jinja2's ImmutableSandboxedEnvironment
 * with trim_blocks and lstrip_blocks on, keep_trailing_newline off, autoescape off, the
 * loopcontrols extension ({% break %}, {% continue %}) and {% generation %}, plus
 * transformers' `tojson` filter (json.dumps with ensure_ascii/indent/separators/
 * sort_keys), `raise_exception(msg)` and `strftime_now(fmt)`. Values print as Python
 * prints them (None, True, {'a': 1}, 1e-05). docs/TEMPLATES.md lists the supported
 * subset and the (few) differences from Jinja.
 *
 * A parsed template is immutable: several threads may render it at once. Rendering
 * is bounded (output bytes, evaluation steps, live memory, call depth) so a hostile
 * template fails with an error instead of hanging or exhausting memory. Errors are
 * one line with the template's line:column.
 */
#ifndef MS_JINJA_H
#define MS_JINJA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct json_object;
typedef struct ms_jinja ms_jinja;

typedef struct ms_jinja_opts {
    uint64_t max_output; /* bytes of rendered text (0: 64 MiB) */
    uint64_t max_steps;  /* evaluation steps: nodes, loop iterations, filter items (0: 50 M) */
    uint64_t max_memory; /* bytes of live values (0: 256 MiB) */
    int max_depth;       /* nested macro / call-block / recursive-loop calls (0: 200) */
    bool fixed_now;      /* strftime_now uses `now` instead of the clock */
    int64_t now;         /* seconds since the epoch, rendered as local time */
} ms_jinja_opts;

/* Parse a template (UTF-8; "\r\n" and "\r" read as "\n", one final newline dropped,
 * as Jinja does). name appears in error messages. */
int ms_jinja_parse(const char *src, size_t len, const char *name, ms_jinja **out, ms_err *err);
void ms_jinja_free(ms_jinja *t);

/* Render with the members of the JSON object vars as template variables (NULL: none).
 * opts may be NULL. *out is malloc'd and NUL-terminated; *len excludes the NUL.
 * Errors: -EINVAL with "name:line:col: message" (a raise_exception message is kept
 * verbatim after that prefix), -E2BIG when a limit was hit, -ENOMEM. */
int ms_jinja_render(const ms_jinja *t, struct json_object *vars, const ms_jinja_opts *opts, char **out,
                    size_t *len, ms_err *err);

/* Python's repr(float): the shortest text that reads back as f (1e-05, 1e+16, 0.1, 2.0). */
void ms_jinja_float_repr(double f, char *buf, size_t len);

#endif

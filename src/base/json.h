/* json.h - the JSON helpers every parser of ours shares (json-c underneath):
 * lookups that treat absent and null alike, typed field getters that check
 * ranges and name the field in one error line, and a whole-document parser that
 * reports line and column.
 *
 * Error lines read "<what>: field \"<key>\" ..." where `what` names the source
 * (a file path, "config.json", ...), so a bad checkpoint says exactly which file
 * and which key. */
#ifndef MS_JSON_H
#define MS_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "strbuf.h"

/* Where errors are reported: `what` names the document in messages. */
typedef struct ms_jctx {
    const char *what;
    ms_err *err;
} ms_jctx;

/* o[key], or NULL when o is not an object or has no such key. */
json_object *ms_json_get(json_object *o, const char *key);
/* Absent (NULL) or JSON null. */
bool ms_json_null(json_object *v);
/* Python's truthiness: absent/null, false, 0, "", [] and {} are false. */
bool ms_json_truthy(json_object *v);
/* An exact integer (no fraction, in int64 range). */
bool ms_json_i64(json_object *v, int64_t *out);

/* Typed fields of object o. Absent or null: *out = def, or an error when
 * required. Present with the wrong type or out of [lo, hi]: an error naming
 * the field (EINVAL / ERANGE). Integers may be written as 3.0. */
int ms_json_int(const ms_jctx *c, json_object *o, const char *key, bool required, int64_t def, int64_t lo, int64_t hi,
                int64_t *out);
int ms_json_int32(const ms_jctx *c, json_object *o, const char *key, bool required, int def, int lo, int hi, int *out);
int ms_json_num(const ms_jctx *c, json_object *o, const char *key, bool required, double def, double lo, double hi,
                double *out);
int ms_json_bool(const ms_jctx *c, json_object *o, const char *key, bool def, bool *out);
/* A string field copied into out[len] (error if it does not fit). */
int ms_json_str(const ms_jctx *c, json_object *o, const char *key, bool required, const char *def, char *out,
                size_t len);

/* Parse one complete JSON document text[0..len) (trailing whitespace allowed).
 * Errors name `what` and the line/column where parsing stopped. */
int ms_json_parse(const char *text, size_t len, const char *what, json_object **out, ms_err *err);
/* Read and parse a file of at most max_len bytes. optional: a missing file is
 * not an error (*out = NULL, returns 0). */
int ms_json_load(const char *path, size_t max_len, bool optional, json_object **out, ms_err *err);

/* json.dumps(v) as Python writes it (ensure_ascii=False): indent < 0 gives one
 * line with ", " and ": " separators; indent >= 0 pretty-prints ("," then a
 * newline and indent spaces per level). Objects nested less than sort_depth
 * deep get sorted keys (0: insertion order; json-c keeps it). Floats are
 * Python's repr (shortest round trip, 1.0 not 1). */
void ms_json_dump_py(ms_strbuf *b, json_object *v, int indent, int sort_depth);

#endif

/* json.c - shared JSON helpers (see json.h). */
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "strbuf.h"
#include "util.h"

json_object *ms_json_get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!o || !json_object_is_type(o, json_type_object)) return NULL;
    if (!json_object_object_get_ex(o, key, &v)) return NULL;
    return v;
}

bool ms_json_null(json_object *v) { return v == NULL || json_object_is_type(v, json_type_null); }

bool ms_json_truthy(json_object *v)
{
    switch (v ? json_object_get_type(v) : json_type_null) {
    case json_type_null: return false;
    case json_type_boolean: return json_object_get_boolean(v);
    case json_type_int: return json_object_get_int64(v) != 0;
    case json_type_double: return json_object_get_double(v) != 0;
    case json_type_string: return json_object_get_string_len(v) > 0;
    case json_type_array: return json_object_array_length(v) > 0;
    case json_type_object: return json_object_object_length(v) > 0;
    }
    return false;
}

bool ms_json_i64(json_object *v, int64_t *out)
{
    if (!v || !json_object_is_type(v, json_type_int)) return false;
    errno = 0;
    int64_t x = json_object_get_int64(v);
    if (errno == ERANGE) return false;
    *out = x;
    return true;
}

int ms_json_int(const ms_jctx *c, json_object *o, const char *key, bool required, int64_t def, int64_t lo, int64_t hi,
                int64_t *out)
{
    json_object *v = ms_json_get(o, key);
    if (ms_json_null(v)) {
        if (required) return ms_errf(c->err, EINVAL, "%s: missing field \"%s\"", c->what, key);
        *out = def;
        return 0;
    }
    int64_t x;
    if (json_object_is_type(v, json_type_int)) {
        x = json_object_get_int64(v);
    } else if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (d != floor(d) || fabs(d) > 9e15)
            return ms_errf(c->err, EINVAL, "%s: field \"%s\" must be an integer", c->what, key);
        x = (int64_t)d;
    } else {
        return ms_errf(c->err, EINVAL, "%s: field \"%s\" must be an integer", c->what, key);
    }
    if (x < lo || x > hi)
        return ms_errf(c->err, ERANGE, "%s: field \"%s\" = %lld is out of range [%lld, %lld]", c->what, key,
                       (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

int ms_json_int32(const ms_jctx *c, json_object *o, const char *key, bool required, int def, int lo, int hi, int *out)
{
    int64_t v;
    int rc = ms_json_int(c, o, key, required, def, lo, hi, &v);
    if (rc == 0) *out = (int)v;
    return rc;
}

int ms_json_num(const ms_jctx *c, json_object *o, const char *key, bool required, double def, double lo, double hi,
                double *out)
{
    json_object *v = ms_json_get(o, key);
    if (ms_json_null(v)) {
        if (required) return ms_errf(c->err, EINVAL, "%s: missing field \"%s\"", c->what, key);
        *out = def;
        return 0;
    }
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return ms_errf(c->err, EINVAL, "%s: field \"%s\" must be a number", c->what, key);
    double d = json_object_get_double(v);
    if (!isfinite(d) || d < lo || d > hi)
        return ms_errf(c->err, ERANGE, "%s: field \"%s\" = %g is out of range [%g, %g]", c->what, key, d, lo, hi);
    *out = d;
    return 0;
}

int ms_json_bool(const ms_jctx *c, json_object *o, const char *key, bool def, bool *out)
{
    json_object *v = ms_json_get(o, key);
    if (ms_json_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_object_is_type(v, json_type_boolean))
        return ms_errf(c->err, EINVAL, "%s: field \"%s\" must be true or false", c->what, key);
    *out = json_object_get_boolean(v);
    return 0;
}

int ms_json_str(const ms_jctx *c, json_object *o, const char *key, bool required, const char *def, char *out,
                size_t len)
{
    json_object *v = ms_json_get(o, key);
    if (ms_json_null(v)) {
        if (required) return ms_errf(c->err, EINVAL, "%s: missing field \"%s\"", c->what, key);
        snprintf(out, len, "%s", def);
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return ms_errf(c->err, EINVAL, "%s: field \"%s\" must be a string", c->what, key);
    const char *s = json_object_get_string(v);
    if (strlen(s) >= len) return ms_errf(c->err, EINVAL, "%s: field \"%s\" is too long", c->what, key);
    snprintf(out, len, "%s", s);
    return 0;
}

int ms_json_parse(const char *text, size_t len, const char *what, json_object **out, ms_err *err)
{
    *out = NULL;
    if (len > INT32_MAX) return ms_errf(err, EFBIG, "%s: JSON document too large", what);
    json_tokener *tk = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
    if (!tk) return ms_errf(err, ENOMEM, "%s: out of memory", what);
    json_object *o = json_tokener_parse_ex(tk, text, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tk);
    size_t off = json_tokener_get_parse_end(tk);
    json_tokener_free(tk);
    size_t p = off;
    /* trailing whitespace after a complete document is fine */
    while (o && je == json_tokener_success && p < len &&
           (text[p] == ' ' || text[p] == '\n' || text[p] == '\r' || text[p] == '\t'))
        p++;
    if (!o || je != json_tokener_success || p < len) {
        size_t line = 1, col = 1;
        for (size_t i = 0; i < off && i < len; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        const char *why = je == json_tokener_continue   ? "unexpected end of file"
                          : je != json_tokener_success ? json_tokener_error_desc(je)
                          : o                          ? "trailing data after the JSON document"
                                                       : "empty document";
        json_object_put(o);
        return ms_errf(err, EINVAL, "%s: invalid JSON at line %zu column %zu: %s", what, line, col, why);
    }
    *out = o;
    return 0;
}

int ms_json_load(const char *path, size_t max_len, bool optional, json_object **out, ms_err *err)
{
    *out = NULL;
    struct stat st;
    if (optional && stat(path, &st) != 0) return 0;
    char *text;
    size_t len;
    int rc = ms_read_file(path, max_len, &text, &len, err);
    if (rc < 0) return rc;
    rc = ms_json_parse(text, len, path, out, err);
    free(text);
    return rc;
}

/* ---- Python's json.dumps ---- */

/* Python repr() of a float: the shortest round-tripping digits, fixed notation
 * for exponents in [-4, 16), always with a '.' or an exponent. */
static void fmt_double(double v, char *buf, size_t len)
{
    if (!isfinite(v)) {
        snprintf(buf, len, v != v ? "NaN" : (v > 0 ? "Infinity" : "-Infinity"));
        return;
    }
    if (v == 0) {
        snprintf(buf, len, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    char e[64];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    int x = atoi(strchr(e, 'e') + 1);
    if (x >= -4 && x < 16) {
        int dec = p - 1 - x;
        if (dec < 1) dec = 1;
        snprintf(buf, len, "%.*f", dec, v);
    } else {
        snprintf(buf, len, "%s", e);
    }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Before item i of a container at `level`: Python's separators. */
static void item_sep(ms_strbuf *b, int indent, int level, size_t i)
{
    if (indent < 0) {
        if (i) ms_sb_puts(b, ", ");
        return;
    }
    if (i) ms_sb_putn(b, ",", 1);
    ms_sb_newline(b, indent, level + 1);
}

static void dump_py(ms_strbuf *b, struct json_object *v, int indent, int level, int sort_depth)
{
    char tmp[64];
    switch (json_object_get_type(v)) {
    case json_type_null: ms_sb_puts(b, "null"); break;
    case json_type_boolean: ms_sb_puts(b, json_object_get_boolean(v) ? "true" : "false"); break;
    case json_type_int:
        snprintf(tmp, sizeof tmp, "%" PRId64, json_object_get_int64(v));
        ms_sb_puts(b, tmp);
        break;
    case json_type_double:
        fmt_double(json_object_get_double(v), tmp, sizeof tmp);
        ms_sb_puts(b, tmp);
        break;
    case json_type_string: ms_sb_json_str(b, json_object_get_string(v), (size_t)json_object_get_string_len(v)); break;
    case json_type_array: {
        size_t n = json_object_array_length(v);
        if (n == 0) {
            ms_sb_puts(b, "[]");
            break;
        }
        ms_sb_putn(b, "[", 1);
        for (size_t i = 0; i < n; i++) {
            item_sep(b, indent, level, i);
            dump_py(b, json_object_array_get_idx(v, i), indent, level + 1, sort_depth);
        }
        if (indent >= 0) ms_sb_newline(b, indent, level);
        ms_sb_putn(b, "]", 1);
        break;
    }
    case json_type_object: {
        int n = json_object_object_length(v);
        if (n == 0) {
            ms_sb_puts(b, "{}");
            break;
        }
        const char **keys = malloc((size_t)n * sizeof *keys);
        if (!keys) {
            b->oom = true;
            return;
        }
        int k = 0;
        json_object_object_foreach(v, key, val)
        {
            (void)val;
            keys[k++] = key;
        }
        if (level < sort_depth) qsort(keys, (size_t)n, sizeof *keys, cmp_str);
        ms_sb_putn(b, "{", 1);
        for (int i = 0; i < n; i++) {
            item_sep(b, indent, level, (size_t)i);
            ms_sb_json_str(b, keys[i], strlen(keys[i]));
            ms_sb_puts(b, ": ");
            dump_py(b, json_object_object_get(v, keys[i]), indent, level + 1, sort_depth);
        }
        if (indent >= 0) ms_sb_newline(b, indent, level);
        ms_sb_putn(b, "}", 1);
        free(keys);
        break;
    }
    }
}

void ms_json_dump_py(ms_strbuf *b, json_object *v, int indent, int sort_depth)
{
    dump_py(b, v, indent, 0, sort_depth);
}

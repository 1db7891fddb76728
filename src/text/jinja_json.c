/* jinja_json.c - JSON at the edges of the Jinja renderer: json-c values into template
 * values (objects keep their key order, strings must be valid UTF-8) and template
 * values out as Python's json.dumps writes them (transformers' tojson filter):
 * ", " and ": " separators or the given ones, indent (a number of spaces or a string,
 * with "," as item separator), ensure_ascii (\uXXXX, surrogate pairs), sort_keys,
 * keys converted as json.dumps converts them (True -> "true", 1.5 -> "1.5"), NaN and
 * Infinity as Python writes them. Nesting is bounded (a cycle is reported as Python
 * reports it).
 */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"

/* ---- JSON ---------------------------------------------------------------------------- */

static int from_json_rec(jctx *c, json_object *j, jval *out, int depth)
{
    if (depth > JX_MAX_NEST) return jx_fail(c, NULL, "input JSON nested too deeply");
    switch (json_object_get_type(j)) {
    case json_type_null: *out = jv_none(); return 0;
    case json_type_boolean: *out = jv_bool(json_object_get_boolean(j)); return 0;
    case json_type_int: *out = jv_int(json_object_get_int64(j)); return 0;
    case json_type_double: *out = jv_float(json_object_get_double(j)); return 0;
    case json_type_string: {
        const char *s = json_object_get_string(j);
        size_t n = (size_t)json_object_get_string_len(j);
        if (!jx_utf8_valid(s, n)) return jx_fail(c, NULL, "input string is not valid UTF-8");
        return jv_str(c, s, n, out);
    }
    case json_type_array: {
        size_t n = json_object_array_length(j);
        if (jv_list(c, (uint32_t)n, LK_LIST, out) < 0) return -1;
        for (size_t i = 0; i < n; i++) {
            jval item;
            if (from_json_rec(c, json_object_array_get_idx(j, i), &item, depth + 1) < 0 ||
                jv_list_push(c, *out, item) < 0) {
                jv_dec(c, *out);
                return -1;
            }
        }
        return 0;
    }
    case json_type_object: {
        if (jv_dict(c, out) < 0) return -1;
        json_object_object_foreach(j, key, val)
        {
            jval k, v;
            if (!jx_utf8_valid(key, strlen(key))) {
                jv_dec(c, *out);
                return jx_fail(c, NULL, "input key is not valid UTF-8");
            }
            if (jv_strz(c, key, &k) < 0) {
                jv_dec(c, *out);
                return -1;
            }
            if (from_json_rec(c, val, &v, depth + 1) < 0) {
                jv_dec(c, k);
                jv_dec(c, *out);
                return -1;
            }
            if (jv_dict_set(c, out->d, k, v) < 0) {
                jv_dec(c, *out);
                return -1;
            }
        }
        return 0;
    }
    }
    *out = jv_none();
    return 0;
}

int jv_from_json(jctx *c, json_object *j, jval *out) { return from_json_rec(c, j, out, 0); }

static int json_str(jctx *c, const char *s, size_t n, bool ascii, jbuf *b)
{
    if (jx_buf_putc(c, b, '"') < 0) return -1;
    size_t i = 0, run = 0;
    while (i < n) {
        size_t start = i;
        uint32_t cp = jx_utf8_next(s, &i);
        char esc[16];
        const char *e = NULL;
        switch (cp) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        default:
            if (cp < 0x20 || (ascii && cp >= 0x7f)) {
                if (cp >= 0x10000) {
                    uint32_t v = cp - 0x10000;
                    snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
                } else {
                    snprintf(esc, sizeof esc, "\\u%04x", cp);
                }
                e = esc;
            }
        }
        if (e) {
            if (jx_buf_put(c, b, s + start - run, run) < 0 || jx_buf_put(c, b, e, strlen(e)) < 0) return -1;
            run = 0;
        } else {
            run += i - start;
        }
    }
    if (jx_buf_put(c, b, s + n - run, run) < 0) return -1;
    return jx_buf_putc(c, b, '"');
}

static int json_newline(jctx *c, const jjson_opts *o, int level, jbuf *b)
{
    if (jx_buf_putc(c, b, '\n') < 0) return -1;
    for (int i = 0; i < level; i++)
        if (jx_buf_put(c, b, o->indent, o->indent_len) < 0) return -1;
    return 0;
}

static int json_float(jctx *c, double f, jbuf *b)
{
    char tmp[64];
    if (isnan(f)) snprintf(tmp, sizeof tmp, "NaN");
    else if (isinf(f)) snprintf(tmp, sizeof tmp, f < 0 ? "-Infinity" : "Infinity");
    else jv_float_repr(f, tmp, sizeof tmp);
    return jx_buf_put(c, b, tmp, strlen(tmp));
}

/* a dict key as JSON's str: str as is, numbers/bools/None converted; NULL = TypeError */
static int json_key(jctx *c, const jnode *at, jval k, jbuf *kb)
{
    switch (k.t) {
    case JT_STR: return jx_buf_put(c, kb, k.s->s, k.s->len);
    case JT_NONE: return jx_buf_put(c, kb, "null", 4);
    case JT_BOOL: return k.b ? jx_buf_put(c, kb, "true", 4) : jx_buf_put(c, kb, "false", 5);
    case JT_INT: return jv_to_str(c, k, kb);
    case JT_FLOAT: return json_float(c, k.f, kb);
    default: return jx_fail(c, at, "TypeError: keys must be str, int, float, bool or None, not %s", jv_type_name(k));
    }
}

static int json_rec(jctx *c, const jnode *at, jval v, const jjson_opts *o, int level, jbuf *b)
{
    if (level > JX_MAX_NEST) return jx_fail(c, at, "ValueError: Circular reference detected");
    if (jx_step(c, at, 1) < 0) return -1;
    switch (v.t) {
    case JT_NONE: return jx_buf_put(c, b, "null", 4);
    case JT_BOOL: return v.b ? jx_buf_put(c, b, "true", 4) : jx_buf_put(c, b, "false", 5);
    case JT_INT: return jv_to_str(c, v, b);
    case JT_FLOAT: return json_float(c, v.f, b);
    case JT_STR: return json_str(c, v.s->s, v.s->len, o->ensure_ascii, b);
    case JT_LIST: {
        if (!jv_is_seq(v)) break;
        if (v.l->n == 0) return jx_buf_put(c, b, "[]", 2);
        if (jx_buf_putc(c, b, '[') < 0) return -1;
        for (uint32_t i = 0; i < v.l->n; i++) {
            if (i && jx_buf_put(c, b, o->item_sep, o->item_sep_len) < 0) return -1;
            if (o->indent && json_newline(c, o, level + 1, b) < 0) return -1;
            if (json_rec(c, at, v.l->v[i], o, level + 1, b) < 0) return -1;
        }
        if (o->indent && json_newline(c, o, level, b) < 0) return -1;
        return jx_buf_putc(c, b, ']');
    }
    case JT_DICT: {
        jdict *d = v.d;
        if (d->n == 0) return jx_buf_put(c, b, "{}", 2);
        uint32_t *order = jx_alloc(c, (size_t)d->n * sizeof *order);
        if (!order) return -1;
        for (uint32_t i = 0; i < d->n; i++) order[i] = i;
        int rc = 0;
        if (o->sort_keys) { /* insertion sort (stable), Python ordering of the keys */
            for (uint32_t i = 1; i < d->n && rc == 0; i++) {
                uint32_t x = order[i], j = i;
                while (j > 0) {
                    int r = 0;
                    if (jv_cmp(c, at, d->k[x], d->k[order[j - 1]], "<", &r) < 0) {
                        rc = -1;
                        break;
                    }
                    if (r >= 0) break;
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = x;
            }
        }
        if (rc == 0) rc = jx_buf_putc(c, b, '{');
        for (uint32_t i = 0; i < d->n && rc == 0; i++) {
            uint32_t e = order[i];
            jbuf kb = {0};
            if (i) rc = jx_buf_put(c, b, o->item_sep, o->item_sep_len);
            if (rc == 0 && o->indent) rc = json_newline(c, o, level + 1, b);
            if (rc == 0) rc = json_key(c, at, d->k[e], &kb);
            if (rc == 0) rc = json_str(c, kb.v ? kb.v : "", kb.n, o->ensure_ascii, b);
            jx_buf_free(&kb);
            if (rc == 0) rc = jx_buf_put(c, b, o->key_sep, o->key_sep_len);
            if (rc == 0) rc = json_rec(c, at, d->v[e], o, level + 1, b);
        }
        jx_free(c, order, (size_t)d->n * sizeof *order);
        if (rc == 0 && o->indent) rc = json_newline(c, o, level, b);
        if (rc == 0) rc = jx_buf_putc(c, b, '}');
        return rc;
    }
    default: break;
    }
    return jx_fail(c, at, "TypeError: Object of type %s is not JSON serializable", jv_type_name(v));
}

int jv_to_json(jctx *c, const jnode *at, jval v, const jjson_opts *o, jbuf *b) { return json_rec(c, at, v, o, 0, b); }

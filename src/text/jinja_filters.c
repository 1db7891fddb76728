/* jinja_filters.c - Jinja's builtin filters and tests (jinja2/filters.py, tests.py)
 * with transformers' tojson (json.dumps(x, ensure_ascii=False, indent=None,
 * separators=None, sort_keys=False)).
 *
 * Filters return what Jinja's return: map/select/reject/selectattr/rejectattr/unique/
 * items/batch/slice/reverse give one-shot iterators (LK_GEN: `|length` on them fails as
 * len(generator) does, `|list` materializes them), sort/dictsort/groupby give lists.
 * Attribute paths ("a.b.0") are resolved item-first, as environment.getitem does. Not
 * provided: random (nondeterministic), urlize, wordwrap; they fail when evaluated.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"
#include "util.h"

typedef int (*filter_fn)(jctx *c, const jnode *at, jval v, jval *args, uint32_t n, const char **kw, jval *kwv,
                         uint32_t nkw, jval *out);

#define FILTER(name) \
    static int f_##name(jctx *c, const jnode *at, jval v, jval *args, uint32_t n, const char **kw, jval *kwv, uint32_t nkw, jval *out)
#define BIND(fname, ...)                                                                          \
    static const char *const P_[] = {__VA_ARGS__};                                                \
    jval A[sizeof P_ / sizeof P_[0]];                                                             \
    if (jx_bind(c, at, fname, P_, sizeof P_ / sizeof P_[0], args, n, kw, kwv, nkw, A) < 0) return -1
#define NOARGS(fname)                                                                             \
    if (n || nkw) return jx_fail(c, at, "TypeError: %s() takes 1 positional argument but %u were given", fname, 1 + n + nkw)
#define ARG(i, dflt) (jx_given(A[i]) ? A[i] : (dflt))

static int as_int(jctx *c, const jnode *at, jval v, const char *what, int64_t *out)
{
    if (v.t == JT_INT || v.t == JT_BOOL) {
        *out = v.t == JT_BOOL ? v.b : v.i;
        return 0;
    }
    if (v.t == JT_UNDEF) return jx_undef_fail(c, at, v);
    return jx_fail(c, at, "TypeError: %s must be an integer, not %s", what, jv_type_name(v));
}

static int soft_str(jctx *c, jval v, jval *out) { return jv_stringify(c, v, out); }
static bool parse_py_float(jval s, double *out);

static int need_len(jctx *c, const jnode *at, jval v, int64_t *len)
{
    switch (v.t) {
    case JT_UNDEF: *len = 0; return 0;
    case JT_STR: *len = jv_str_ncp(v); return 0;
    case JT_DICT: *len = v.d->n; return 0;
    case JT_LIST:
        if (v.l->kind != LK_GEN) {
            *len = v.l->n;
            return 0;
        }
        break;
    case JT_OBJ:
        if (jv_is_obj(v, JO_NS) || jv_is_obj(v, JO_LOOP)) break;
        break;
    default: break;
    }
    return jx_fail(c, at, "TypeError: object of type '%s' has no len()", jv_type_name(v));
}

/* a new one-shot iterator over the items of list l (taken) */
static jval as_gen(jval l, const char *name)
{
    l.l->kind = LK_GEN;
    l.l->pyname = name;
    return l;
}

/* finish a generator filter: *out is the list of the items produced; a run-time error
 * (rc < 0) is kept in the generator and raised when iteration reaches it */
static int gen_finish(jctx *c, jval *out, int rc)
{
    if (rc < 0) {
        jstr *msg;
        if (!jx_catch(c, &msg)) {
            jv_dec(c, *out);
            return -1;
        }
        out->l->err = msg;
    }
    *out = as_gen(*out, "generator");
    return 0;
}

/* make_attrgetter: "a.b.0" looked up item-first; NONE attribute = the item itself */
static int attr_get(jctx *c, const jnode *at, jval item, jval attr, jval dflt, bool lower, jval *out)
{
    jval cur = jv_inc(item);
    if (attr.t == JT_STR) {
        const char *p = attr.s->s, *end = p + attr.s->len;
        while (p <= end) {
            const char *dot = memchr(p, '.', (size_t)(end - p));
            if (!dot) dot = end;
            jval key;
            bool digits = dot > p && dot - p < 18;
            for (const char *q = p; q < dot && digits; q++) digits = *q >= '0' && *q <= '9';
            if (digits) {
                int64_t k = 0;
                for (const char *q = p; q < dot; q++) k = k * 10 + (*q - '0');
                key = jv_int(k);
            } else if (jv_str(c, p, (size_t)(dot - p), &key) < 0) {
                jv_dec(c, cur);
                return -1;
            }
            jval next;
            int rc = jx_getitem(c, at, cur, key, &next);
            jv_dec(c, key);
            jv_dec(c, cur);
            if (rc < 0) return -1;
            cur = next;
            if (dflt.t != JT_NONE && cur.t == JT_UNDEF) {
                jv_dec(c, cur);
                cur = jv_inc(dflt);
            }
            p = dot + 1;
        }
    } else if (attr.t == JT_INT || attr.t == JT_BOOL) {
        jval next;
        int rc = jx_getitem(c, at, cur, attr, &next);
        jv_dec(c, cur);
        if (rc < 0) return -1;
        cur = next;
        if (dflt.t != JT_NONE && cur.t == JT_UNDEF) {
            jv_dec(c, cur);
            cur = jv_inc(dflt);
        }
    } else if (attr.t != JT_NONE) {
        jv_dec(c, cur);
        return jx_fail(c, at, "TypeError: attribute must be a string or an integer");
    }
    if (lower && cur.t == JT_STR) {
        jval l;
        int rc = jx_str_case(c, cur, 'l', &l);
        jv_dec(c, cur);
        if (rc < 0) return -1;
        cur = l;
    }
    *out = cur;
    return 0;
}

/* ---- sorting (stable merge sort on precomputed keys) ---------------------------------------- */

typedef struct sortctx {
    jctx *c;
    const jnode *at;
    jval *keys;
    bool reverse, failed;
} sortctx;

static bool key_less(sortctx *s, uint32_t a, uint32_t b)
{
    int r = 0;
    if (s->failed) return false;
    if (jv_cmp(s->c, s->at, s->keys[a], s->keys[b], "<", &r) < 0) {
        s->failed = true;
        return false;
    }
    return s->reverse ? r > 0 && r != 2 : r < 0;
}

static void msort(sortctx *s, uint32_t *idx, uint32_t *tmp, uint32_t n)
{
    if (n < 2) return;
    uint32_t m = n / 2;
    msort(s, idx, tmp, m);
    msort(s, idx + m, tmp, n - m);
    uint32_t i = 0, j = m, k = 0;
    while (i < m && j < n) tmp[k++] = key_less(s, idx[j], idx[i]) ? idx[j++] : idx[i++];
    while (i < m) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
}

/* items (a list value) sorted by key(attr, lower): a new list; attr may hold "a,b" (multi) */
static int sorted_by(jctx *c, const jnode *at, jval items, jval attr, bool lower, bool reverse, bool multi, jval *out)
{
    uint32_t n = items.l->n;
    if (jx_step(c, at, (uint64_t)n * 8) < 0) return -1;
    jval *keys = jx_alloc(c, (n + 1) * sizeof *keys);
    uint32_t *idx = jx_alloc(c, (n + 1) * sizeof *idx), *tmp = jx_alloc(c, (n + 1) * sizeof *tmp);
    int rc = keys && idx && tmp ? 0 : -1;
    uint32_t built = 0;
    for (; built < n && rc == 0; built++) {
        idx[built] = built;
        jval item = items.l->v[built];
        if (multi) {
            /* the sort filter's key is a list: the values of "a,b" (or of the one attribute) */
            jval pl;
            if (attr.t == JT_STR) {
                jval sep;
                if ((rc = jv_str(c, ",", 1, &sep)) < 0) break;
                rc = jx_str_split(c, at, attr, sep, -1, false, &pl);
                jv_dec(c, sep);
            } else if ((rc = jv_list(c, 1, LK_LIST, &pl)) == 0) {
                jv_list_push(c, pl, jv_inc(attr));
            }
            if (rc < 0) break;
            rc = jv_list(c, pl.l->n, LK_LIST, &keys[built]);
            for (uint32_t q = 0; q < pl.l->n && rc == 0; q++) {
                jval kv;
                rc = attr_get(c, at, item, pl.l->v[q], jv_none(), lower, &kv);
                if (rc == 0) jv_list_push(c, keys[built], kv);
            }
            jv_dec(c, pl);
            if (rc < 0) {
                if (keys[built].t == JT_LIST) jv_dec(c, keys[built]);
                break;
            }
        } else {
            rc = attr_get(c, at, item, attr, jv_none(), lower, &keys[built]);
            if (rc < 0) break;
        }
    }
    if (rc == 0) {
        sortctx s = {.c = c, .at = at, .keys = keys, .reverse = reverse};
        msort(&s, idx, tmp, n);
        if (s.failed) rc = -1;
    }
    if (rc == 0 && (rc = jv_list(c, n, LK_LIST, out)) == 0)
        for (uint32_t i = 0; i < n; i++) jv_list_push(c, *out, jv_inc(items.l->v[idx[i]]));
    if (keys) jv_dec_n(c, keys, built);
    jx_free(c, keys, (n + 1) * sizeof *keys);
    jx_free(c, idx, (n + 1) * sizeof *idx);
    jx_free(c, tmp, (n + 1) * sizeof *tmp);
    return rc;
}

/* ---- filters ----------------------------------------------------------------------------------- */

FILTER(abs)
{
    NOARGS("abs");
    if (v.t == JT_FLOAT) *out = jv_float(fabs(v.f));
    else if (v.t == JT_INT || v.t == JT_BOOL) {
        int64_t x = v.t == JT_BOOL ? v.b : v.i;
        if (x == INT64_MIN) return jx_fail(c, at, "integer result of abs() outside the 64-bit range");
        *out = jv_int(x < 0 ? -x : x);
    } else if (v.t == JT_UNDEF) return jx_undef_fail(c, at, v);
    else return jx_fail(c, at, "TypeError: bad operand type for abs(): '%s'", jv_type_name(v));
    return 0;
}

FILTER(attr)
{
    BIND("attr", "name");
    if (!jx_given(A[0]) || A[0].t != JT_STR) return jx_fail(c, at, "TypeError: attr() needs an attribute name");
    if (v.t == JT_UNDEF) return jx_undef_fail(c, at, v);
    if (v.t == JT_OBJ) return jx_getattr(c, at, v, A[0].s->s, out);
    int r = jx_method_lookup(c, v, A[0].s->s, out);
    if (r < 0) return -1;
    if (r == 0) return jv_undef_hint(c, out, "'%s object' has no attribute '%s'", jv_type_name(v), A[0].s->s);
    return 0;
}

/* batch (slices=false: rows of size_or_count) and slice (size_or_count columns), as
 * Jinja's generator functions compute them */
static int chunk_body(jctx *c, const jnode *at, jval v, int64_t k, jval fill, bool slices, jval out)
{
    jval items, row = jv_none();
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int64_t len = items.l->n;
    int rc = 0;
    if (!slices) {
        rc = jv_list(c, 0, LK_LIST, &row);
        for (int64_t i = 0; i < len && rc == 0; i++) {
            if ((int64_t)row.l->n == k) {
                rc = jv_list_push(c, out, row);
                row = jv_none();
                if (rc == 0) rc = jv_list(c, 0, LK_LIST, &row);
            }
            if (rc == 0) rc = jv_list_push(c, row, jv_inc(items.l->v[i]));
        }
        if (rc == 0 && row.l->n) {
            for (int64_t i = row.l->n; fill.t != JT_NONE && i < k && rc == 0; i++)
                if ((rc = jx_step(c, at, 1)) == 0) rc = jv_list_push(c, row, jv_inc(fill));
            if (rc == 0) rc = jv_list_push(c, out, row);
            row = jv_none();
        }
    } else if (k == 0) {
        rc = jx_fail(c, at, "ZeroDivisionError: integer division or modulo by zero");
    } else {
        int64_t per = len / k, extra = len % k, offset = 0;
        if (extra && ((extra < 0) != (k < 0))) per--, extra += k; /* Python's floor division */
        for (int64_t sn = 0; sn < k && rc == 0; sn++) {
            if ((rc = jx_step(c, at, 1)) < 0) break;
            int64_t start = offset + sn * per;
            if (sn < extra) offset++;
            int64_t end = offset + (sn + 1) * per;
            if ((rc = jv_list(c, 0, LK_LIST, &row)) < 0) break;
            for (int64_t q = start < 0 ? 0 : start; q < end && q < len && rc == 0; q++) rc = jv_list_push(c, row, jv_inc(items.l->v[q]));
            if (rc == 0 && fill.t != JT_NONE && sn >= extra) rc = jv_list_push(c, row, jv_inc(fill));
            if (rc == 0) rc = jv_list_push(c, out, row);
            row = jv_none();
        }
    }
    jv_dec(c, row);
    jv_dec(c, items);
    return rc;
}

static int chunk_list(jctx *c, const jnode *at, jval v, int64_t k, jval fill, bool slices, jval *out)
{
    if (jv_list(c, 0, LK_LIST, out) < 0) return -1;
    return gen_finish(c, out, chunk_body(c, at, v, k, fill, slices, *out));
}

FILTER(batch)
{
    BIND("batch", "linecount", "fill_with");
    int64_t k;
    if (as_int(c, at, A[0], "linecount", &k) < 0) return -1;
    return chunk_list(c, at, v, k, ARG(1, jv_none()), false, out);
}

FILTER(slice)
{
    BIND("slice", "slices", "fill_with");
    int64_t k;
    if (as_int(c, at, A[0], "slices", &k) < 0) return -1;
    return chunk_list(c, at, v, k, ARG(1, jv_none()), true, out);
}

static int str_then(jctx *c, jval v, char mode, jval *out)
{
    jval s;
    if (soft_str(c, v, &s) < 0) return -1;
    int rc = jx_str_case(c, s, mode, out);
    jv_dec(c, s);
    return rc;
}

FILTER(capitalize) { NOARGS("capitalize"); return str_then(c, v, 'c', out); }
FILTER(upper) { NOARGS("upper"); return str_then(c, v, 'u', out); }
FILTER(lower) { NOARGS("lower"); return str_then(c, v, 'l', out); }

FILTER(title)
{
    NOARGS("title");
    jval s;
    if (soft_str(c, v, &s) < 0) return -1;
    /* words begin after runs of [-\s({\[<] */
    jbuf b = {0};
    bool start = true;
    int rc = 0;
    for (size_t i = 0; i < s.s->len && rc == 0;) {
        size_t st = i;
        uint32_t cp = jx_utf8_next(s.s->s, &i);
        bool sep = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || jx_py_space(cp);
        jval one, conv;
        if ((rc = jv_str(c, s.s->s + st, i - st, &one)) < 0) break;
        rc = sep ? (conv = jv_inc(one), 0) : jx_str_case(c, one, start ? 'u' : 'l', &conv);
        jv_dec(c, one);
        if (rc < 0) break;
        rc = jx_buf_put(c, &b, conv.s->s, conv.s->len);
        jv_dec(c, conv);
        start = sep;
    }
    jv_dec(c, s);
    if (rc < 0) {
        jx_buf_free(&b);
        return -1;
    }
    return jv_str_buf(c, &b, out);
}

FILTER(center)
{
    BIND("center", "width");
    int64_t w = 80;
    if (jx_given(A[0]) && as_int(c, at, A[0], "width", &w) < 0) return -1;
    jval s;
    if (soft_str(c, v, &s) < 0) return -1;
    int rc = jx_str_pad(c, s, w, ' ', '^', out);
    jv_dec(c, s);
    return rc;
}

FILTER(length)
{
    NOARGS("length");
    int64_t len;
    if (need_len(c, at, v, &len) < 0) return -1;
    *out = jv_int(len);
    return 0;
}

FILTER(default)
{
    BIND("default", "default_value", "boolean");
    bool boolean = jx_given(A[1]) && jv_truthy(A[1]);
    if (v.t == JT_UNDEF || (boolean && !jv_truthy(v))) {
        if (jx_given(A[0])) *out = jv_inc(A[0]);
        else return jv_str(c, "", 0, out);
    } else {
        *out = jv_inc(v);
    }
    return 0;
}

FILTER(dictsort)
{
    BIND("dictsort", "case_sensitive", "by", "reverse");
    if (v.t != JT_DICT) {
        if (v.t == JT_UNDEF) return jx_undef_fail(c, at, v);
        return jx_fail(c, at, "AttributeError: '%s' object has no attribute 'items'", jv_type_name(v));
    }
    bool cs = jx_given(A[0]) && jv_truthy(A[0]), rev = jx_given(A[2]) && jv_truthy(A[2]);
    int64_t pos = 0;
    if (jx_given(A[1])) {
        if (A[1].t == JT_STR && !strcmp(A[1].s->s, "value")) pos = 1;
        else if (!(A[1].t == JT_STR && !strcmp(A[1].s->s, "key")))
            return jx_fail(c, at, "FilterArgumentError: You can only sort by either \"key\" or \"value\"");
    }
    jval items;
    if (jx_dict_items(c, v.d, &items) < 0) return -1;
    items.l->kind = LK_LIST;
    int rc = sorted_by(c, at, items, jv_int(pos), !cs, rev, false, out);
    jv_dec(c, items);
    return rc;
}

FILTER(escape) { NOARGS("escape"); return jx_escape(c, v, out); }

FILTER(forceescape)
{
    NOARGS("forceescape");
    jval s;
    if (jv_stringify(c, v, &s) < 0) return -1;
    s.fl = 0;
    int rc = jx_escape(c, s, out);
    jv_dec(c, s);
    return rc;
}

FILTER(filesizeformat)
{
    BIND("filesizeformat", "binary");
    bool binary = jx_given(A[0]) && jv_truthy(A[0]);
    double x;
    if (v.t == JT_INT || v.t == JT_BOOL) x = (double)(v.t == JT_BOOL ? v.b : v.i);
    else if (v.t == JT_FLOAT) x = v.f;
    else if (v.t == JT_STR) {
        if (!parse_py_float(v, &x)) return jx_fail(c, at, "ValueError: could not convert string to float: '%.100s'", v.s->s);
    } else return jx_fail(c, at, "TypeError: float() argument must be a string or a real number, not '%s'", jv_type_name(v));
    static const char *const dec[] = {"kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
    static const char *const bin[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"};
    double base = binary ? 1024 : 1000;
    char buf[64];
    if (x == 1) snprintf(buf, sizeof buf, "1 Byte");
    else if (x < base) snprintf(buf, sizeof buf, "%lld Bytes", (long long)x);
    else {
        int i = 0;
        double unit = base * base;
        while (i < 7 && x >= unit) {
            i++;
            unit *= base;
        }
        snprintf(buf, sizeof buf, "%.1f %s", base * x / unit, binary ? bin[i] : dec[i]);
    }
    return jv_strz(c, buf, out);
}

FILTER(first)
{
    NOARGS("first");
    if (v.t == JT_LIST && v.l->kind == LK_GEN) {
        if (v.l->pos < v.l->n) {
            *out = jv_inc(v.l->v[v.l->pos++]);
            return 0;
        }
        if (v.l->err) return jx_reraise(c, v.l->err);
        return jv_undef_hint(c, out, "No first item, sequence was empty.");
    }
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = 0;
    if (items.l->n) *out = jv_inc(items.l->v[0]);
    else rc = jv_undef_hint(c, out, "No first item, sequence was empty.");
    jv_dec(c, items);
    return rc;
}

FILTER(last)
{
    NOARGS("last");
    if (v.t == JT_LIST && v.l->kind == LK_GEN) return jx_fail(c, at, "TypeError: '%s' object is not reversible", jv_type_name(v));
    if (v.t != JT_LIST && v.t != JT_STR && v.t != JT_DICT && v.t != JT_UNDEF)
        return jx_fail(c, at, "TypeError: '%s' object is not reversible", jv_type_name(v));
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = 0;
    if (items.l->n) *out = jv_inc(items.l->v[items.l->n - 1]);
    else rc = jv_undef_hint(c, out, "No last item, sequence was empty.");
    jv_dec(c, items);
    return rc;
}

/* Python float(str): whitespace, sign, digits with '_', inf/nan */
static bool parse_py_float(jval s, double *out)
{
    const char *p = s.s->s, *end = p + s.s->len;
    while (p < end && (*p == ' ' || (*p >= 9 && *p <= 13))) p++;
    while (end > p && (end[-1] == ' ' || (end[-1] >= 9 && end[-1] <= 13))) end--;
    if (p == end || end - p > 400) return false;
    char buf[512];
    size_t n = 0;
    for (const char *q = p; q < end; q++) {
        if (*q == '_') {
            if (q == p || q + 1 == end || !(q[-1] >= '0' && q[-1] <= '9') || !(q[1] >= '0' && q[1] <= '9')) return false;
            continue;
        }
        buf[n++] = *q;
    }
    buf[n] = 0;
    const char *b = buf + (buf[0] == '+' || buf[0] == '-');
    bool special = !strcasecmp(b, "inf") || !strcasecmp(b, "infinity") || !strcasecmp(b, "nan");
    if (!special && strspn(b, "0123456789.eE+-") != strlen(b)) return false;
    if (!special && (strchr(b, 'x') || strchr(b, 'X'))) return false;
    char *e;
    *out = strtod(buf, &e);
    return *e == 0;
}

/* Python int(str, base) */
static bool parse_py_int(jval s, int64_t base, int64_t *out)
{
    const char *p = s.s->s, *end = p + s.s->len;
    while (p < end && (*p == ' ' || (*p >= 9 && *p <= 13))) p++;
    while (end > p && (end[-1] == ' ' || (end[-1] >= 9 && end[-1] <= 13))) end--;
    bool neg = false;
    if (p < end && (*p == '+' || *p == '-')) neg = *p++ == '-';
    if (p < end - 1 && p[0] == '0' && base != 10) {
        char k = (char)(p[1] | 0x20);
        if ((k == 'x' && (base == 16 || base == 0)) || (k == 'o' && (base == 8 || base == 0)) ||
            (k == 'b' && (base == 2 || base == 0))) {
            base = k == 'x' ? 16 : k == 'o' ? 8 : 2;
            p += 2;
            if (p < end && *p == '_') p++;
        }
    }
    if (base == 0) base = 10;
    if (p == end) return false;
    uint64_t v = 0;
    char prev = 0;
    for (const char *q = p; q < end; q++) {
        if (*q == '_') {
            if (prev == '_' || q == p || q + 1 == end) return false;
            prev = '_';
            continue;
        }
        int d = *q >= '0' && *q <= '9' ? *q - '0' : (*q | 0x20) >= 'a' && (*q | 0x20) <= 'z' ? (*q | 0x20) - 'a' + 10 : 99;
        if (d >= base) return false;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return false;
        v = v * (uint64_t)base + (uint64_t)d;
        prev = *q;
    }
    if (v > (uint64_t)INT64_MAX + neg) return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

FILTER(int)
{
    BIND("int", "default", "base");
    int64_t base = 10, r;
    double f;
    if (jx_given(A[1]) && as_int(c, at, A[1], "base", &base) < 0) return -1;
    jval dflt = ARG(0, jv_int(0));
    if (v.t == JT_UNDEF) return jx_undef_fail(c, at, v); /* int(Undefined) raises */
    if (v.t == JT_INT || v.t == JT_BOOL) *out = jv_int(v.t == JT_BOOL ? v.b : v.i);
    else if (v.t == JT_FLOAT || (v.t == JT_STR && !parse_py_int(v, base, &r) && parse_py_float(v, &f))) {
        double x = v.t == JT_FLOAT ? v.f : f;
        if (isinf(x)) return jx_fail(c, at, "OverflowError: cannot convert float infinity to integer");
        if (isnan(x)) *out = jv_inc(dflt);
        else if (fabs(x) >= 9.2e18) return jx_fail(c, at, "integer outside the 64-bit range");
        else *out = jv_int((int64_t)x);
    } else if (v.t == JT_STR && parse_py_int(v, base, &r)) *out = jv_int(r);
    else *out = jv_inc(dflt);
    return 0;
}

FILTER(float)
{
    BIND("float", "default");
    double f;
    if (v.t == JT_UNDEF) return jx_undef_fail(c, at, v);
    if (v.t == JT_FLOAT) *out = v;
    else if (v.t == JT_INT || v.t == JT_BOOL) *out = jv_float((double)(v.t == JT_BOOL ? v.b : v.i));
    else if (v.t == JT_STR && parse_py_float(v, &f)) *out = jv_float(f);
    else *out = jv_inc(ARG(0, jv_float(0.0)));
    return 0;
}

FILTER(format)
{
    if (n && nkw) return jx_fail(c, at, "FilterArgumentError: can't handle positional and keyword arguments at the same time");
    jval s, a;
    if (soft_str(c, v, &s) < 0) return -1;
    int rc;
    if (nkw) {
        rc = jv_dict(c, &a);
        for (uint32_t i = 0; i < nkw && rc == 0; i++) {
            jval k;
            rc = jv_strz(c, kw[i], &k);
            if (rc == 0) rc = jv_dict_set(c, a.d, k, jv_inc(kwv[i]));
        }
    } else {
        rc = jv_list(c, n, LK_TUPLE, &a);
        for (uint32_t i = 0; i < n && rc == 0; i++) jv_list_push(c, a, jv_inc(args[i]));
    }
    if (rc == 0) rc = jx_percent_format(c, at, s, a, out);
    jv_dec(c, a);
    jv_dec(c, s);
    return rc;
}

FILTER(groupby)
{
    BIND("groupby", "attribute", "default", "case_sensitive");
    bool cs = jx_given(A[2]) && jv_truthy(A[2]);
    jval items, sorted;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = sorted_by(c, at, items, ARG(0, jv_none()), !cs, false, false, &sorted);
    jv_dec(c, items);
    if (rc < 0) return -1;
    rc = jv_list(c, 0, LK_LIST, out);
    jval group = jv_none(), gkey = jv_none();
    for (uint32_t i = 0; i < sorted.l->n && rc == 0; i++) {
        jval k, kl;
        rc = attr_get(c, at, sorted.l->v[i], ARG(0, jv_none()), ARG(1, jv_none()), false, &k);
        if (rc < 0) break;
        kl = k;
        if (!cs && k.t == JT_STR) rc = jx_str_case(c, k, 'l', &kl);
        if (rc < 0) {
            jv_dec(c, k);
            break;
        }
        if (group.t == JT_NONE || !jv_eq(kl, gkey)) {
            if (group.t != JT_NONE) {
                jval pair;
                rc = jv_list(c, 2, LK_TUPLE, &pair);
                if (rc == 0) {
                    jv_list_push(c, pair, gkey);
                    jv_list_push(c, pair, group);
                    rc = jv_list_push(c, *out, pair);
                }
                group = jv_none();
            } else {
                jv_dec(c, gkey);
            }
            gkey = jv_inc(kl);
            if (rc == 0) rc = jv_list(c, 0, LK_LIST, &group);
        }
        if (kl.s != k.s) jv_dec(c, kl);
        jv_dec(c, k);
        if (rc == 0) rc = jv_list_push(c, group, jv_inc(sorted.l->v[i]));
    }
    if (rc == 0 && group.t != JT_NONE) {
        jval pair;
        rc = jv_list(c, 2, LK_TUPLE, &pair);
        if (rc == 0) {
            jv_list_push(c, pair, gkey);
            jv_list_push(c, pair, group);
            gkey = group = jv_none();
            rc = jv_list_push(c, *out, pair);
        }
    }
    jv_dec(c, group);
    jv_dec(c, gkey);
    jv_dec(c, sorted);
    if (rc < 0 && out->t == JT_LIST) jv_dec(c, *out);
    return rc;
}

FILTER(indent)
{
    BIND("indent", "width", "first", "blank");
    jval ind;
    int rc;
    if (jx_given(A[0]) && A[0].t == JT_STR) ind = jv_inc(A[0]);
    else {
        int64_t w = 4;
        if (jx_given(A[0]) && as_int(c, at, A[0], "width", &w) < 0) return -1;
        jval sp;
        if (jv_str(c, " ", 1, &sp) < 0) return -1;
        rc = jx_binop(c, at, OP_MUL, sp, jv_int(w), &ind);
        jv_dec(c, sp);
        if (rc < 0) return -1;
    }
    bool first = jx_given(A[1]) && jv_truthy(A[1]), blank = jx_given(A[2]) && jv_truthy(A[2]);
    jval s, lines;
    if (v.t != JT_STR) { /* Jinja appends "\n" to the value itself */
        jv_dec(c, ind);
        if (v.t == JT_UNDEF) return jx_undef_fail(c, at, v);
        if (jv_is_seq(v)) return jx_fail(c, at, "AttributeError: '%s' object has no attribute 'splitlines'", jv_type_name(v));
        return jx_fail(c, at, "TypeError: unsupported operand type(s) for +=: '%s' and 'str'", jv_type_name(v));
    }
    s = jv_inc(v);
    jbuf tmp = {0}, b = {0};
    rc = jx_buf_put(c, &tmp, s.s->s, s.s->len);
    if (rc == 0) rc = jx_buf_putc(c, &tmp, '\n');
    jval s2;
    if (rc == 0) rc = jv_str_buf(c, &tmp, &s2);
    else jx_buf_free(&tmp);
    if (rc == 0) {
        rc = jx_str_splitlines(c, s2, false, &lines);
        jv_dec(c, s2);
    }
    if (rc == 0) {
        if (first) rc = jx_buf_put(c, &b, ind.s->s, ind.s->len);
        for (uint32_t i = 0; i < lines.l->n && rc == 0; i++) {
            jval line = lines.l->v[i];
            if (i) rc = jx_buf_putc(c, &b, '\n');
            if (rc == 0 && i && (blank || line.s->len)) rc = jx_buf_put(c, &b, ind.s->s, ind.s->len);
            if (rc == 0) rc = jx_buf_put(c, &b, line.s->s, line.s->len);
        }
        jv_dec(c, lines);
    }
    jv_dec(c, s);
    jv_dec(c, ind);
    if (rc < 0) {
        jx_buf_free(&b);
        return -1;
    }
    return jv_str_buf(c, &b, out);
}

FILTER(items)
{
    NOARGS("items");
    if (v.t == JT_DICT) {
        if (jx_dict_items(c, v.d, out) < 0) return -1;
        return gen_finish(c, out, 0);
    }
    if (jv_list(c, 0, LK_LIST, out) < 0) return -1;
    return gen_finish(c, out, v.t == JT_UNDEF ? 0 : jx_fail(c, at, "TypeError: Can only get item pairs from a mapping."));
}

FILTER(join)
{
    BIND("join", "d", "attribute");
    jval items, sep;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    if ((jx_given(A[0]) ? soft_str(c, A[0], &sep) : jv_str(c, "", 0, &sep)) < 0) {
        jv_dec(c, items);
        return -1;
    }
    jbuf b = {0};
    int rc = jx_step(c, at, items.l->n);
    for (uint32_t i = 0; i < items.l->n && rc == 0; i++) {
        if (i) rc = jx_buf_put(c, &b, sep.s->s, sep.s->len);
        jval x = jv_inc(items.l->v[i]);
        if (rc == 0 && jx_given(A[1])) {
            jval y;
            rc = attr_get(c, at, x, A[1], jv_none(), false, &y);
            jv_dec(c, x);
            x = rc == 0 ? y : jv_none();
        }
        if (rc == 0) rc = jv_to_str(c, x, &b);
        jv_dec(c, x);
    }
    jv_dec(c, sep);
    jv_dec(c, items);
    if (rc < 0) {
        jx_buf_free(&b);
        return -1;
    }
    return jv_str_buf(c, &b, out);
}

FILTER(list)
{
    NOARGS("list");
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    if (items.l->kind == LK_LIST) {
        *out = items;
        return 0;
    }
    int rc = jv_list(c, items.l->n, LK_LIST, out);
    for (uint32_t i = 0; i < items.l->n && rc == 0; i++) jv_list_push(c, *out, jv_inc(items.l->v[i]));
    jv_dec(c, items);
    return rc;
}

/* map / select / reject / selectattr / rejectattr into *out (a list); Jinja runs these
 * lazily, so the caller turns an error into a generator that fails when consumed */
static int each_body(jctx *c, const jnode *at, jval v, jval *args, uint32_t n, const char **kw, jval *kwv, uint32_t nkw,
                     int mode, jval *out)
{
    /* mode: 0 map, 1 select, 2 reject, 3 selectattr, 4 rejectattr */
    jval attr = jv_none(), dflt = jv_none();
    int fid = -1;
    bool by_attr = false;
    uint32_t skip = 0;
    if (mode == 0) {
        if (n == 0) {
            for (uint32_t i = 0; i < nkw; i++) {
                if (!strcmp(kw[i], "attribute")) attr = kwv[i], by_attr = true;
                else if (!strcmp(kw[i], "default")) dflt = kwv[i];
                else return jx_fail(c, at, "FilterArgumentError: Unexpected keyword argument '%s'", kw[i]);
            }
            if (!by_attr) return jx_fail(c, at, "FilterArgumentError: map requires a filter argument");
        } else {
            if (args[0].t != JT_STR) return jx_fail(c, at, "TypeError: map() filter name must be a string");
            fid = jx_filter_id(args[0].s->s);
            if (fid < 0) return jx_fail(c, at, "No filter named '%s'.", args[0].s->s);
            skip = 1;
        }
    } else {
        if (mode >= 3) {
            if (n == 0) return jx_fail(c, at, "FilterArgumentError: Missing parameter for attribute name");
            attr = args[0];
            skip = 1;
        }
        if (n > skip) {
            if (args[skip].t != JT_STR) return jx_fail(c, at, "TypeError: test name must be a string");
            fid = jx_test_id(args[skip].s->s);
            if (fid < 0) return jx_fail(c, at, "No test named '%s'.", args[skip].s->s);
            skip++;
        }
    }
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = 0;
    for (uint32_t i = 0; i < items.l->n && rc == 0; i++) {
        jval item = items.l->v[i], x;
        if ((rc = jx_step(c, at, 1)) < 0) break;
        if (mode == 0) {
            if (by_attr) rc = attr_get(c, at, item, attr, dflt, false, &x);
            else rc = jx_filter(c, at, fid, item, args + skip, n - skip, kw, kwv, nkw, &x);
            if (rc == 0) rc = jv_list_push(c, *out, x);
            continue;
        }
        if (mode >= 3) rc = attr_get(c, at, item, attr, jv_none(), false, &x);
        else x = jv_inc(item);
        if (rc < 0) break;
        bool keep;
        if (fid < 0) keep = jv_truthy(x);
        else rc = jx_test(c, at, fid, x, args + skip, n - skip, kw, kwv, nkw, &keep);
        jv_dec(c, x);
        if (rc == 0 && keep == (mode == 1 || mode == 3)) rc = jv_list_push(c, *out, jv_inc(item));
    }
    jv_dec(c, items);
    return rc;
}

static int apply_each(jctx *c, const jnode *at, jval v, jval *args, uint32_t n, const char **kw, jval *kwv,
                      uint32_t nkw, int mode, jval *out)
{
    if (jv_list(c, 0, LK_LIST, out) < 0) return -1;
    int rc = jv_truthy(v) ? each_body(c, at, v, args, n, kw, kwv, nkw, mode, out) : 0;
    return gen_finish(c, out, rc);
}

FILTER(map) { return apply_each(c, at, v, args, n, kw, kwv, nkw, 0, out); }
FILTER(select) { return apply_each(c, at, v, args, n, kw, kwv, nkw, 1, out); }
FILTER(reject) { return apply_each(c, at, v, args, n, kw, kwv, nkw, 2, out); }
FILTER(selectattr) { return apply_each(c, at, v, args, n, kw, kwv, nkw, 3, out); }
FILTER(rejectattr) { return apply_each(c, at, v, args, n, kw, kwv, nkw, 4, out); }

static int min_max(jctx *c, const jnode *at, jval v, jval *args, uint32_t n, const char **kw, jval *kwv, uint32_t nkw,
                   bool want_max, jval *out)
{
    BIND(want_max ? "max" : "min", "case_sensitive", "attribute");
    bool cs = jx_given(A[0]) && jv_truthy(A[0]);
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    if (items.l->n == 0) {
        jv_dec(c, items);
        return jv_undef_hint(c, out, "No aggregated item, sequence was empty.");
    }
    int rc = 0;
    uint32_t best = 0;
    jval bk;
    if ((rc = attr_get(c, at, items.l->v[0], ARG(1, jv_none()), jv_none(), !cs, &bk)) < 0) {
        jv_dec(c, items);
        return -1;
    }
    for (uint32_t i = 1; i < items.l->n && rc == 0; i++) {
        jval k;
        int r;
        if ((rc = attr_get(c, at, items.l->v[i], ARG(1, jv_none()), jv_none(), !cs, &k)) < 0) break;
        rc = jv_cmp(c, at, k, bk, want_max ? ">" : "<", &r);
        if (rc == 0 && r != 2 && (want_max ? r > 0 : r < 0)) {
            jv_dec(c, bk);
            bk = k;
            best = i;
        } else {
            jv_dec(c, k);
        }
    }
    if (rc == 0) *out = jv_inc(items.l->v[best]);
    jv_dec(c, bk);
    jv_dec(c, items);
    return rc;
}

FILTER(max) { return min_max(c, at, v, args, n, kw, kwv, nkw, true, out); }
FILTER(min) { return min_max(c, at, v, args, n, kw, kwv, nkw, false, out); }

FILTER(pprint)
{
    NOARGS("pprint");
    jbuf b = {0};
    if (jv_repr_sorted(c, v, &b) < 0) {
        jx_buf_free(&b);
        return -1;
    }
    return jv_str_buf(c, &b, out);
}

FILTER(replace)
{
    BIND("replace", "old", "new", "count");
    if (!jx_given(A[0]) || !jx_given(A[1])) return jx_fail(c, at, "TypeError: replace() missing required arguments");
    int64_t cnt = -1;
    if (jx_given(A[2]) && A[2].t != JT_NONE && as_int(c, at, A[2], "count", &cnt) < 0) return -1;
    jval s, o, nw;
    if (soft_str(c, v, &s) < 0) return -1;
    if (soft_str(c, A[0], &o) < 0) {
        jv_dec(c, s);
        return -1;
    }
    if (soft_str(c, A[1], &nw) < 0) {
        jv_dec(c, s);
        jv_dec(c, o);
        return -1;
    }
    int rc = jx_str_replace(c, s, o, nw, cnt, out);
    jv_dec(c, s);
    jv_dec(c, o);
    jv_dec(c, nw);
    return rc;
}

FILTER(reverse)
{
    NOARGS("reverse");
    if (v.t == JT_STR) {
        jval items;
        if (jx_iter_list(c, at, v, &items) < 0) return -1;
        jbuf b = {0};
        int rc = 0;
        for (uint32_t i = items.l->n; i-- > 0 && rc == 0;) rc = jx_buf_put(c, &b, items.l->v[i].s->s, items.l->v[i].s->len);
        jv_dec(c, items);
        if (rc < 0 || jv_str_buf(c, &b, out) < 0) {
            jx_buf_free(&b);
            return -1;
        }
        out->fl = v.fl & JF_MARKUP;
        return 0;
    }
    bool gen = v.t == JT_LIST && v.l->kind == LK_GEN;
    if (v.t == JT_UNDEF && (v.fl & JF_UNSAFE)) return jx_undef_fail(c, at, v);
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = jv_list(c, items.l->n, LK_LIST, out);
    for (uint32_t i = items.l->n; i-- > 0 && rc == 0;) jv_list_push(c, *out, jv_inc(items.l->v[i]));
    jv_dec(c, items);
    if (rc < 0) return -1;
    if (!gen && v.t != JT_UNDEF)
        *out = as_gen(*out, v.t == JT_DICT ? "dict_reversekeyiterator" : "list_reverseiterator");
    return 0;
}

FILTER(round)
{
    BIND("round", "precision", "method");
    int64_t prec = 0;
    if (jx_given(A[0]) && as_int(c, at, A[0], "precision", &prec) < 0) return -1;
    const char *method = "common";
    if (jx_given(A[1])) {
        if (A[1].t != JT_STR || (strcmp(A[1].s->s, "common") && strcmp(A[1].s->s, "ceil") && strcmp(A[1].s->s, "floor")))
            return jx_fail(c, at, "FilterArgumentError: method must be common, ceil or floor");
        method = A[1].s->s;
    }
    if (!jv_is_num(v)) {
        if (v.t == JT_UNDEF) return jx_undef_fail(c, at, v);
        return jx_fail(c, at, "TypeError: type %s doesn't define __round__ method", jv_type_name(v));
    }
    if (prec > 300 || prec < -300) prec = prec > 0 ? 300 : -300;
    double x = v.t == JT_FLOAT ? v.f : (double)(v.t == JT_BOOL ? v.b : v.i), p10 = pow(10.0, (double)prec);
    if (!strcmp(method, "common")) {
        if (v.t != JT_FLOAT) {
            if (prec >= 0) {
                *out = jv_int(v.t == JT_BOOL ? v.b : v.i);
                return 0;
            }
            double r = nearbyint(x / pow(10.0, (double)-prec)) * pow(10.0, (double)-prec);
            *out = jv_int((int64_t)r);
            return 0;
        }
        if (!isfinite(x)) {
            *out = v;
            return 0;
        }
        if (prec >= 0) {
            char buf[400];
            snprintf(buf, sizeof buf, "%.*f", (int)prec, x);
            *out = jv_float(strtod(buf, NULL));
        } else {
            double q = pow(10.0, (double)-prec);
            *out = jv_float(nearbyint(x / q) * q);
        }
        return 0;
    }
    double r = (!strcmp(method, "ceil") ? ceil(x * p10) : floor(x * p10)) / p10;
    *out = jv_float(r);
    return 0;
}

FILTER(safe)
{
    NOARGS("safe");
    if (jv_stringify(c, v, out) < 0) return -1;
    if (out->fl & JF_MARKUP) return 0;
    jval m;
    if (jv_str(c, out->s->s, out->s->len, &m) < 0) return -1;
    jv_dec(c, *out);
    *out = m;
    out->fl = JF_MARKUP;
    return 0;
}

FILTER(sort)
{
    BIND("sort", "reverse", "case_sensitive", "attribute");
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = sorted_by(c, at, items, ARG(2, jv_none()), !(jx_given(A[1]) && jv_truthy(A[1])),
                       jx_given(A[0]) && jv_truthy(A[0]), true, out);
    jv_dec(c, items);
    return rc;
}

FILTER(string)
{
    NOARGS("string");
    return jv_stringify(c, v, out);
}

FILTER(striptags)
{
    NOARGS("striptags");
    jval s;
    if (jv_stringify(c, v, &s) < 0) return -1;
    jbuf t = {0};
    const char *p = s.s->s, *end = p + s.s->len;
    int rc = 0;
    while (p < end && rc == 0) { /* drop comments and tags */
        if (end - p >= 4 && !memcmp(p, "<!--", 4)) {
            const char *e = memmem(p + 4, (size_t)(end - p - 4), "-->", 3);
            if (e) {
                p = e + 3;
                continue;
            }
        }
        if (*p == '<') {
            const char *e = memchr(p + 1, '>', (size_t)(end - p - 1));
            if (e && e > p + 1) {
                p = e + 1;
                continue;
            }
        }
        rc = jx_buf_putc(c, &t, *p++);
    }
    jv_dec(c, s);
    /* collapse whitespace, then unescape the basic entities */
    jval ts, words, sp;
    if (rc == 0) rc = jv_str_buf(c, &t, &ts);
    else jx_buf_free(&t);
    if (rc < 0) return -1;
    rc = jx_str_split(c, at, ts, jv_none(), -1, false, &words);
    jv_dec(c, ts);
    if (rc < 0) return -1;
    jbuf b = {0};
    for (uint32_t i = 0; i < words.l->n && rc == 0; i++) {
        if (i) rc = jx_buf_putc(c, &b, ' ');
        if (rc == 0) rc = jx_buf_put(c, &b, words.l->v[i].s->s, words.l->v[i].s->len);
    }
    jv_dec(c, words);
    if (rc == 0) rc = jv_str_buf(c, &b, &sp);
    else jx_buf_free(&b);
    if (rc < 0) return -1;
    static const char *const ent[][2] = {{"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#34;", "\""},
                                         {"&#39;", "'"}, {"&amp;", "&"}};
    for (size_t i = 0; i < sizeof ent / sizeof ent[0] && rc == 0; i++) {
        jval a, r, nx;
        rc = jv_strz(c, ent[i][0], &a);
        if (rc == 0 && (rc = jv_strz(c, ent[i][1], &r)) < 0) jv_dec(c, a);
        if (rc == 0) {
            rc = jx_str_replace(c, sp, a, r, -1, &nx);
            jv_dec(c, a);
            jv_dec(c, r);
            jv_dec(c, sp);
            sp = rc == 0 ? nx : jv_none();
        }
    }
    if (rc < 0) {
        jv_dec(c, sp);
        return -1;
    }
    *out = sp;
    return 0;
}

FILTER(sum)
{
    BIND("sum", "attribute", "start");
    if (jx_given(A[1]) && A[1].t == JT_STR) return jx_fail(c, at, "TypeError: sum() can't sum strings [use ''.join(seq) instead]");
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    jval acc = jv_inc(ARG(1, jv_int(0)));
    int rc = 0;
    for (uint32_t i = 0; i < items.l->n && rc == 0; i++) {
        jval x, r;
        rc = attr_get(c, at, items.l->v[i], ARG(0, jv_none()), jv_none(), false, &x);
        if (rc < 0) break;
        rc = jx_binop(c, at, OP_ADD, acc, x, &r);
        jv_dec(c, x);
        jv_dec(c, acc);
        acc = rc == 0 ? r : jv_none();
    }
    jv_dec(c, items);
    if (rc < 0) {
        jv_dec(c, acc);
        return -1;
    }
    *out = acc;
    return 0;
}

FILTER(trim)
{
    BIND("trim", "chars");
    jval s;
    if (soft_str(c, v, &s) < 0) return -1;
    int rc = jx_str_strip(c, s, ARG(0, jv_none()), 'b', out);
    jv_dec(c, s);
    return rc;
}

FILTER(truncate)
{
    BIND("truncate", "length", "killwords", "end", "leeway");
    int64_t length = 255, leeway = 5, el = 3, sl;
    if (jx_given(A[0]) && as_int(c, at, A[0], "length", &length) < 0) return -1;
    if (jx_given(A[3]) && A[3].t != JT_NONE && as_int(c, at, A[3], "leeway", &leeway) < 0) return -1;
    if (jx_given(A[2]) && need_len(c, at, A[2], &el) < 0) return -1;
    if (length < el) return jx_fail(c, at, "AssertionError: expected length >= %lld, got %lld", (long long)el, (long long)length);
    if (leeway < 0) return jx_fail(c, at, "AssertionError: expected leeway >= 0, got %lld", (long long)leeway);
    if (need_len(c, at, v, &sl) < 0) return -1;
    if (sl <= length + leeway) { /* Jinja returns the value itself, not its str() */
        *out = jv_inc(v);
        return 0;
    }
    if (v.t != JT_STR || (jx_given(A[2]) && A[2].t != JT_STR))
        return jx_fail(c, at, "TypeError: truncate() needs a string (got %s)", jv_type_name(v));
    size_t cut = jv_str_off(v, length - el);
    if (!(jx_given(A[1]) && jv_truthy(A[1]))) { /* s[:length - len(end)].rsplit(" ", 1)[0] */
        size_t k = cut;
        while (k > 0 && v.s->s[k - 1] != ' ') k--;
        if (k > 0) cut = k - 1;
    }
    jbuf b = {0};
    int rc = jx_buf_put(c, &b, v.s->s, cut);
    if (rc == 0) rc = jx_given(A[2]) ? jx_buf_put(c, &b, A[2].s->s, A[2].s->len) : jx_buf_put(c, &b, "...", 3);
    if (rc == 0) return jv_str_buf(c, &b, out);
    jx_buf_free(&b);
    return -1;
}

static int unique_body(jctx *c, const jnode *at, jval v, bool cs, jval attr, jval out)
{
    jval items, seen;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = jv_list(c, 0, LK_LIST, &seen);
    for (uint32_t i = 0; i < items.l->n && rc == 0; i++) {
        jval k;
        if ((rc = attr_get(c, at, items.l->v[i], attr, jv_none(), !cs, &k)) < 0) break;
        if (!jv_hashable(k)) {
            rc = jx_fail(c, at, "TypeError: unhashable type: '%s'", jv_type_name(k));
            jv_dec(c, k);
            break;
        }
        bool dup = false;
        for (uint32_t j = 0; j < seen.l->n && !dup; j++) dup = jv_eq(seen.l->v[j], k);
        if ((rc = jx_step(c, at, seen.l->n)) < 0) {
            jv_dec(c, k);
            break;
        }
        if (dup) jv_dec(c, k);
        else if ((rc = jv_list_push(c, seen, k)) == 0) rc = jv_list_push(c, out, jv_inc(items.l->v[i]));
    }
    jv_dec(c, items);
    if (seen.t == JT_LIST) jv_dec(c, seen);
    return rc;
}

FILTER(unique)
{
    BIND("unique", "case_sensitive", "attribute");
    if (jv_list(c, 0, LK_LIST, out) < 0) return -1;
    return gen_finish(c, out, unique_body(c, at, v, jx_given(A[0]) && jv_truthy(A[0]), ARG(1, jv_none()), *out));
}

static int url_quote(jctx *c, jval v, bool for_qs, jbuf *b)
{
    jval s;
    if (jv_stringify(c, v, &s) < 0) return -1;
    int rc = 0;
    for (uint32_t i = 0; i < s.s->len && rc == 0; i++) {
        unsigned char ch = (unsigned char)s.s->s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || (ch && strchr("_.-~", ch)) ||
            (ch == '/' && !for_qs))
            rc = jx_buf_putc(c, b, (char)ch);
        else if (ch == ' ' && for_qs) rc = jx_buf_putc(c, b, '+');
        else {
            char h[4];
            snprintf(h, sizeof h, "%%%02X", ch);
            rc = jx_buf_put(c, b, h, 3);
        }
    }
    jv_dec(c, s);
    return rc;
}

FILTER(urlencode)
{
    NOARGS("urlencode");
    jbuf b = {0};
    int rc = 0;
    if (v.t == JT_STR || !(v.t == JT_LIST || v.t == JT_DICT)) rc = url_quote(c, v, false, &b);
    else {
        jval items;
        if (v.t == JT_DICT) rc = jx_dict_items(c, v.d, &items);
        else rc = jx_iter_list(c, at, v, &items);
        for (uint32_t i = 0; rc == 0 && i < items.l->n; i++) {
            jval pair;
            if ((rc = jx_iter_list(c, at, items.l->v[i], &pair)) < 0) break;
            if (pair.l->n != 2) rc = jx_fail(c, at, "ValueError: too many values to unpack (expected 2)");
            if (rc == 0 && i) rc = jx_buf_putc(c, &b, '&');
            if (rc == 0) rc = url_quote(c, pair.l->v[0], true, &b);
            if (rc == 0) rc = jx_buf_putc(c, &b, '=');
            if (rc == 0) rc = url_quote(c, pair.l->v[1], true, &b);
            jv_dec(c, pair);
        }
        if (rc == 0 || v.t == JT_DICT) jv_dec(c, items);
    }
    if (rc < 0) {
        jx_buf_free(&b);
        return -1;
    }
    return jv_str_buf(c, &b, out);
}

FILTER(wordcount)
{
    NOARGS("wordcount");
    jval s;
    if (soft_str(c, v, &s) < 0) return -1;
    int64_t words = 0;
    bool in = false;
    for (size_t i = 0; i < s.s->len;) {
        bool w = jx_word_char(jx_utf8_next(s.s->s, &i));
        if (w && !in) words++;
        in = w;
    }
    jv_dec(c, s);
    *out = jv_int(words);
    return 0;
}

FILTER(xmlattr)
{
    BIND("xmlattr", "autospace");
    if (v.t != JT_DICT) return jx_fail(c, at, "AttributeError: '%s' object has no attribute 'items'", jv_type_name(v));
    bool autospace = !jx_given(A[0]) || jv_truthy(A[0]);
    jbuf b = {0};
    int rc = 0;
    bool any = false;
    for (uint32_t i = 0; i < v.d->n && rc == 0; i++) {
        jval k = v.d->k[i], x = v.d->v[i], e;
        if (x.t == JT_NONE || x.t == JT_UNDEF) continue;
        if (k.t != JT_STR) {
            rc = jx_fail(c, at, "TypeError: xmlattr keys must be strings");
            break;
        }
        for (uint32_t q = 0; q < k.s->len && rc == 0; q++)
            if (strchr(" \t\n\r\f/>=", k.s->s[q]) && k.s->s[q]) rc = jx_fail(c, at, "ValueError: Invalid character in attribute name: '%s'", k.s->s);
        if (rc < 0) break;
        if (any) rc = jx_buf_putc(c, &b, ' ');
        any = true;
        if (rc == 0) rc = jx_escape(c, k, &e);
        if (rc == 0) {
            rc = jx_buf_put(c, &b, e.s->s, e.s->len);
            jv_dec(c, e);
        }
        if (rc == 0) rc = jx_buf_put(c, &b, "=\"", 2);
        if (rc == 0) rc = jx_escape(c, x, &e);
        if (rc == 0) {
            rc = jx_buf_put(c, &b, e.s->s, e.s->len);
            jv_dec(c, e);
        }
        if (rc == 0) rc = jx_buf_putc(c, &b, '"');
    }
    jval s;
    if (rc < 0 || jv_str_buf(c, &b, &s) < 0) {
        jx_buf_free(&b);
        return -1;
    }
    if (autospace && s.s->len) {
        jval sp, r;
        if (jv_str(c, " ", 1, &sp) < 0) {
            jv_dec(c, s);
            return -1;
        }
        rc = jx_binop(c, at, OP_ADD, sp, s, &r);
        jv_dec(c, sp);
        jv_dec(c, s);
        if (rc < 0) return -1;
        s = r;
    }
    s.fl = JF_MARKUP;
    *out = s;
    return 0;
}

FILTER(tojson)
{
    BIND("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
    jjson_opts o = {.ensure_ascii = jx_given(A[0]) && jv_truthy(A[0]), .sort_keys = jx_given(A[3]) && jv_truthy(A[3])};
    char ind[4096];
    jval indent = ARG(1, jv_none());
    if (indent.t == JT_INT || indent.t == JT_BOOL) {
        int64_t k = indent.t == JT_BOOL ? indent.b : indent.i;
        if (k > (int64_t)sizeof ind - 1) return jx_fail(c, at, "tojson indent too large");
        if (k < 0) k = 0;
        memset(ind, ' ', (size_t)k);
        ind[k] = 0;
        o.indent = ind;
        o.indent_len = (size_t)k;
    } else if (indent.t == JT_STR) {
        o.indent = indent.s->s;
        o.indent_len = indent.s->len;
    } else if (indent.t != JT_NONE) {
        return jx_fail(c, at, "TypeError: can't multiply sequence by non-int of type '%s'", jv_type_name(indent));
    }
    o.item_sep = o.indent ? "," : ", ";
    o.key_sep = ": ";
    jval sep = ARG(2, jv_none());
    if (sep.t != JT_NONE) {
        if (sep.t != JT_LIST || sep.l->n != 2 || sep.l->v[0].t != JT_STR || sep.l->v[1].t != JT_STR)
            return jx_fail(c, at, "ValueError: separators must be a pair of strings");
        o.item_sep = sep.l->v[0].s->s;
        o.key_sep = sep.l->v[1].s->s;
    }
    o.item_sep_len = strlen(o.item_sep);
    o.key_sep_len = strlen(o.key_sep);
    jbuf b = {0};
    if (v.t == JT_UNDEF && !(v.fl & JF_UNSAFE)) {
        return jx_fail(c, at, "TypeError: Object of type Undefined is not JSON serializable");
    }
    if (jv_to_json(c, at, v, &o, &b) < 0) {
        jx_buf_free(&b);
        return -1;
    }
    return jv_str_buf(c, &b, out);
}

static int unsupported(jctx *c, const jnode *at, const char *name)
{
    return jx_fail(c, at, "filter '%s' is not supported by this renderer", name);
}
FILTER(random) { return unsupported(c, at, "random"); }
FILTER(urlize) { return unsupported(c, at, "urlize"); }
FILTER(wordwrap) { return unsupported(c, at, "wordwrap"); }

static const struct {
    const char *name;
    filter_fn fn;
} filters[] = {
    {"abs", f_abs}, {"attr", f_attr}, {"batch", f_batch}, {"capitalize", f_capitalize}, {"center", f_center},
    {"count", f_length}, {"d", f_default}, {"default", f_default}, {"dictsort", f_dictsort}, {"e", f_escape},
    {"escape", f_escape}, {"filesizeformat", f_filesizeformat}, {"first", f_first}, {"float", f_float},
    {"forceescape", f_forceescape}, {"format", f_format}, {"groupby", f_groupby}, {"indent", f_indent},
    {"int", f_int}, {"items", f_items}, {"join", f_join}, {"last", f_last}, {"length", f_length}, {"list", f_list},
    {"lower", f_lower}, {"map", f_map}, {"max", f_max}, {"min", f_min}, {"pprint", f_pprint}, {"random", f_random},
    {"reject", f_reject}, {"rejectattr", f_rejectattr}, {"replace", f_replace}, {"reverse", f_reverse},
    {"round", f_round}, {"safe", f_safe}, {"select", f_select}, {"selectattr", f_selectattr}, {"slice", f_slice},
    {"sort", f_sort}, {"string", f_string}, {"striptags", f_striptags}, {"sum", f_sum}, {"title", f_title},
    {"tojson", f_tojson}, {"trim", f_trim}, {"truncate", f_truncate}, {"unique", f_unique}, {"upper", f_upper},
    {"urlencode", f_urlencode}, {"urlize", f_urlize}, {"wordcount", f_wordcount}, {"wordwrap", f_wordwrap},
    {"xmlattr", f_xmlattr},
};

int jx_filter_id(const char *name)
{
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
        if (!strcmp(filters[i].name, name)) return (int)i;
    return -1;
}

int jx_filter(jctx *c, const jnode *at, int id, jval v, jval *args, uint32_t n, const char **kw, jval *kwv,
              uint32_t nkw, jval *out)
{
    if (id < 0 || (size_t)id >= sizeof filters / sizeof filters[0]) return jx_fail(c, at, "internal: bad filter");
    if (jx_step(c, at, 1) < 0) return -1;
    *out = jv_none();
    int rc = filters[id].fn(c, at, v, args, n, kw, kwv, nkw, out);
    if (rc < 0) *out = jv_none();
    return rc;
}

/* ---- tests ----------------------------------------------------------------------------------------- */

enum {
    T_ODD, T_EVEN, T_DIVISIBLEBY, T_DEFINED, T_UNDEFINED, T_FILTER, T_TEST, T_NONE, T_BOOLEAN, T_FALSE, T_TRUE,
    T_INTEGER, T_FLOAT, T_LOWER, T_UPPER, T_STRING, T_MAPPING, T_NUMBER, T_SEQUENCE, T_ITERABLE, T_CALLABLE,
    T_SAMEAS, T_ESCAPED, T_IN, T_EQ, T_NE, T_GT, T_GE, T_LT, T_LE,
};

static const struct {
    const char *name;
    int id;
    int nargs;
} tests[] = {
    {"odd", T_ODD, 0}, {"even", T_EVEN, 0}, {"divisibleby", T_DIVISIBLEBY, 1}, {"defined", T_DEFINED, 0},
    {"undefined", T_UNDEFINED, 0}, {"filter", T_FILTER, 0}, {"test", T_TEST, 0}, {"none", T_NONE, 0},
    {"boolean", T_BOOLEAN, 0}, {"false", T_FALSE, 0}, {"true", T_TRUE, 0}, {"integer", T_INTEGER, 0},
    {"float", T_FLOAT, 0}, {"lower", T_LOWER, 0}, {"upper", T_UPPER, 0}, {"string", T_STRING, 0},
    {"mapping", T_MAPPING, 0}, {"number", T_NUMBER, 0}, {"sequence", T_SEQUENCE, 0}, {"iterable", T_ITERABLE, 0},
    {"callable", T_CALLABLE, 0}, {"sameas", T_SAMEAS, 1}, {"escaped", T_ESCAPED, 0}, {"in", T_IN, 1},
    {"==", T_EQ, 1}, {"eq", T_EQ, 1}, {"equalto", T_EQ, 1}, {"!=", T_NE, 1}, {"ne", T_NE, 1}, {">", T_GT, 1},
    {"gt", T_GT, 1}, {"greaterthan", T_GT, 1}, {"ge", T_GE, 1}, {">=", T_GE, 1}, {"<", T_LT, 1}, {"lt", T_LT, 1},
    {"lessthan", T_LT, 1}, {"<=", T_LE, 1}, {"le", T_LE, 1},
};

int jx_test_id(const char *name)
{
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!strcmp(tests[i].name, name)) return (int)i;
    return -1;
}

int jx_test(jctx *c, const jnode *at, int idx, jval v, jval *args, uint32_t n, const char **kw, jval *kwv,
            uint32_t nkw, bool *out)
{
    if (idx < 0 || (size_t)idx >= sizeof tests / sizeof tests[0]) return jx_fail(c, at, "internal: bad test");
    int id = tests[idx].id, need = tests[idx].nargs;
    if (nkw || n != (uint32_t)need)
        return jx_fail(c, at, "TypeError: test '%s' takes %d argument%s (%u given)", tests[idx].name, need,
                       need == 1 ? "" : "s", n + nkw);
    jval a = need ? args[0] : jv_none(), r;
    int cmp;
    switch (id) {
    case T_ODD:
    case T_EVEN:
    case T_DIVISIBLEBY:
        if (jx_binop(c, at, OP_MOD, v, id == T_DIVISIBLEBY ? a : jv_int(2), &r) < 0) return -1;
        *out = jv_eq(r, jv_int(id == T_ODD ? 1 : 0));
        jv_dec(c, r);
        return 0;
    case T_DEFINED: *out = v.t != JT_UNDEF; return 0;
    case T_UNDEFINED: *out = v.t == JT_UNDEF; return 0;
    case T_FILTER: *out = v.t == JT_STR && jx_filter_id(v.s->s) >= 0; return 0;
    case T_TEST: *out = v.t == JT_STR && jx_test_id(v.s->s) >= 0; return 0;
    case T_NONE: *out = v.t == JT_NONE; return 0;
    case T_BOOLEAN: *out = v.t == JT_BOOL; return 0;
    case T_FALSE: *out = v.t == JT_BOOL && !v.b; return 0;
    case T_TRUE: *out = v.t == JT_BOOL && v.b; return 0;
    case T_INTEGER: *out = v.t == JT_INT; return 0;
    case T_FLOAT: *out = v.t == JT_FLOAT; return 0;
    case T_LOWER:
    case T_UPPER: {
        jval s, m;
        if (jv_stringify(c, v, &s) < 0) return -1;
        int rc = jx_method_lookup(c, s, id == T_LOWER ? "islower" : "isupper", &m);
        jv_dec(c, s);
        if (rc < 0) return -1;
        rc = jx_call(c, at, m, NULL, 0, NULL, NULL, 0, &r);
        jv_dec(c, m);
        if (rc < 0) return -1;
        *out = jv_truthy(r);
        return 0;
    }
    case T_STRING: *out = v.t == JT_STR; return 0;
    case T_MAPPING: *out = v.t == JT_DICT; return 0;
    case T_NUMBER: *out = jv_is_num(v); return 0;
    case T_SEQUENCE:
        *out = v.t == JT_STR || v.t == JT_DICT || v.t == JT_UNDEF ||
               (v.t == JT_LIST && v.l->kind != LK_GEN && v.l->kind != LK_VIEW);
        return 0;
    case T_ITERABLE: *out = v.t == JT_STR || v.t == JT_DICT || v.t == JT_LIST || v.t == JT_UNDEF; return 0;
    case T_CALLABLE:
        *out = v.t == JT_UNDEF || jv_is_obj(v, JO_MACRO) || jv_is_obj(v, JO_FUNC) || jv_is_obj(v, JO_LOOP);
        return 0;
    case T_SAMEAS:
        if (v.t != a.t) *out = false;
        else if (v.t == JT_NONE || v.t == JT_UNDEF) *out = v.t == JT_NONE || v.s == a.s;
        else if (v.t == JT_BOOL) *out = v.b == a.b;
        else if (v.t == JT_INT) *out = v.i == a.i && v.i >= -5 && v.i <= 256; /* CPython's small-int cache */
        else if (v.t == JT_FLOAT) *out = false;
        else if (v.t == JT_STR) *out = v.s == a.s;
        else if (v.t == JT_LIST) *out = v.l == a.l;
        else if (v.t == JT_DICT) *out = v.d == a.d;
        else *out = v.o == a.o;
        return 0;
    case T_ESCAPED: *out = v.t == JT_STR && (v.fl & JF_MARKUP); return 0;
    case T_IN: return jx_contains_ok(c, at, v, a, out) ? 0 : -1;
    case T_EQ: *out = jv_eq(v, a); return 0;
    case T_NE: *out = !jv_eq(v, a); return 0;
    default: {
        const char *sym = id == T_GT ? ">" : id == T_GE ? ">=" : id == T_LT ? "<" : "<=";
        if (jv_cmp(c, at, v, a, sym, &cmp) < 0) return -1;
        *out = cmp != 2 && (id == T_GT ? cmp > 0 : id == T_GE ? cmp >= 0 : id == T_LT ? cmp < 0 : cmp <= 0);
        return 0;
    }
    }
}

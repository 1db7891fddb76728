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

#define FILTER(name) static JX_FILTER_FN(f_##name)

int jx_as_int(jctx *c, const jnode *at, jval v, const char *what, int64_t *out)
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

int jx_need_len(jctx *c, const jnode *at, jval v, int64_t *len)
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
    if (jx_given(A[0]) && jx_as_int(c, at, A[0], "width", &w) < 0) return -1;
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
    if (jx_need_len(c, at, v, &len) < 0) return -1;
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
    if (jx_given(A[1]) && jx_as_int(c, at, A[1], "base", &base) < 0) return -1;
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

FILTER(indent)
{
    BIND("indent", "width", "first", "blank");
    jval ind;
    int rc;
    if (jx_given(A[0]) && A[0].t == JT_STR) ind = jv_inc(A[0]);
    else {
        int64_t w = 4;
        if (jx_given(A[0]) && jx_as_int(c, at, A[0], "width", &w) < 0) return -1;
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
    if (jx_given(A[2]) && A[2].t != JT_NONE && jx_as_int(c, at, A[2], "count", &cnt) < 0) return -1;
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

FILTER(round)
{
    BIND("round", "precision", "method");
    int64_t prec = 0;
    if (jx_given(A[0]) && jx_as_int(c, at, A[0], "precision", &prec) < 0) return -1;
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
    if (jx_given(A[0]) && jx_as_int(c, at, A[0], "length", &length) < 0) return -1;
    if (jx_given(A[3]) && A[3].t != JT_NONE && jx_as_int(c, at, A[3], "leeway", &leeway) < 0) return -1;
    if (jx_given(A[2]) && jx_need_len(c, at, A[2], &el) < 0) return -1;
    if (length < el) return jx_fail(c, at, "AssertionError: expected length >= %lld, got %lld", (long long)el, (long long)length);
    if (leeway < 0) return jx_fail(c, at, "AssertionError: expected leeway >= 0, got %lld", (long long)leeway);
    if (jx_need_len(c, at, v, &sl) < 0) return -1;
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
    int (*fn)(JX_FILTER_ARGS);
} filters[] = {
    {"abs", f_abs}, {"attr", f_attr}, {"batch", jx_f_batch}, {"capitalize", f_capitalize}, {"center", f_center},
    {"count", f_length}, {"d", f_default}, {"default", f_default}, {"dictsort", jx_f_dictsort}, {"e", f_escape},
    {"escape", f_escape}, {"filesizeformat", f_filesizeformat}, {"first", jx_f_first}, {"float", f_float},
    {"forceescape", f_forceescape}, {"format", f_format}, {"groupby", jx_f_groupby}, {"indent", f_indent},
    {"int", f_int}, {"items", jx_f_items}, {"join", jx_f_join}, {"last", jx_f_last}, {"length", f_length}, {"list", jx_f_list},
    {"lower", f_lower}, {"map", jx_f_map}, {"max", jx_f_max}, {"min", jx_f_min}, {"pprint", f_pprint}, {"random", f_random},
    {"reject", jx_f_reject}, {"rejectattr", jx_f_rejectattr}, {"replace", f_replace}, {"reverse", jx_f_reverse},
    {"round", f_round}, {"safe", f_safe}, {"select", jx_f_select}, {"selectattr", jx_f_selectattr}, {"slice", jx_f_slice},
    {"sort", jx_f_sort}, {"string", f_string}, {"striptags", f_striptags}, {"sum", jx_f_sum}, {"title", f_title},
    {"tojson", f_tojson}, {"trim", f_trim}, {"truncate", f_truncate}, {"unique", jx_f_unique}, {"upper", f_upper},
    {"urlencode", f_urlencode}, {"urlize", f_urlize}, {"wordcount", f_wordcount}, {"wordwrap", f_wordwrap},
    {"xmlattr", f_xmlattr},
};

/* index of name in a table of structs whose first member is the name, -1 if absent */
static int name_index(const void *table, size_t n, size_t size, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(*(const char *const *)((const char *)table + i * size), name)) return (int)i;
    return -1;
}

int jx_filter_id(const char *name) { return name_index(filters, sizeof filters / sizeof filters[0], sizeof filters[0], name); }

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

int jx_test_id(const char *name) { return name_index(tests, sizeof tests / sizeof tests[0], sizeof tests[0], name); }

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

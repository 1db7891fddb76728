/* jinja_methods.c - what templates call on values and as globals, with Python's
 * semantics: str methods (split/strip/startswith/replace/find/join/...), dict methods
 * (get/items/keys/values/copy), list/tuple methods (index/count/copy), loop.cycle /
 * loop.changed, cycler and joiner objects, and the globals of transformers'
 * environment: range (capped at 100000 items by the sandbox), dict, namespace, cycler,
 * joiner, raise_exception, strftime_now.
 *
 * As in jinja2's ImmutableSandboxedEnvironment, methods that would mutate a list or a
 * dict (append, pop, update, ...) are "unsafe": looking them up gives an undefined
 * value, and calling it fails with a SecurityError. Indices and lengths count code
 * points, as Python's str does; case mapping is utf8proc's simple mapping.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <utf8proc.h>

#include "jinja_int.h"
#include "util.h"

/* ---- code point helpers ------------------------------------------------------------------ */

typedef struct cps {
    uint32_t *v;
    size_t n;
} cps;

static int cps_of(jctx *c, jval s, cps *o)
{
    o->n = 0;
    o->v = jx_alloc(c, (s.s->len + 1) * sizeof *o->v);
    if (!o->v) return -1;
    for (size_t i = 0; i < s.s->len;) o->v[o->n++] = jx_utf8_next(s.s->s, &i);
    return 0;
}

static void cps_free(jctx *c, jval s, cps *o) { jx_free(c, o->v, (s.s->len + 1) * sizeof *o->v); }

static int put_cp(jctx *c, jbuf *b, uint32_t cp)
{
    char u[4];
    return jx_buf_put(c, b, u, (size_t)ms_utf8_put(u, cp));
}

static bool is_cased(uint32_t cp)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}
static bool is_alpha(uint32_t cp)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}
static bool is_numeric(uint32_t cp)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}
static bool is_decimal(uint32_t cp) { return utf8proc_category((utf8proc_int32_t)cp) == UTF8PROC_CATEGORY_ND; }
static uint32_t to_lower(uint32_t cp) { return (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp); }
static uint32_t to_upper(uint32_t cp) { return (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp); }
static uint32_t to_title(uint32_t cp) { return (uint32_t)utf8proc_totitle((utf8proc_int32_t)cp); }

bool jx_word_char(uint32_t cp) { return cp == '_' || is_alpha(cp) || is_numeric(cp); }

/* case conversions: mode 'u' upper, 'l' lower, 's' swapcase, 't' title, 'c' capitalize */
int jx_str_case(jctx *c, jval s, char mode, jval *out)
{
    jbuf b = {0};
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < s.s->len;) {
        uint32_t cp = jx_utf8_next(s.s->s, &i), r = cp;
        switch (mode) {
        case 'u': r = to_upper(cp); break;
        case 'l': r = to_lower(cp); break;
        case 's': r = utf8proc_category((utf8proc_int32_t)cp) == UTF8PROC_CATEGORY_LU ? to_lower(cp) : to_upper(cp); break;
        case 't':
            r = prev_cased ? to_lower(cp) : to_title(cp);
            prev_cased = is_cased(cp);
            break;
        case 'c': r = first ? to_title(cp) : to_lower(cp); break;
        }
        first = false;
        if (put_cp(c, &b, r) < 0) {
            jx_buf_free(&b);
            return -1;
        }
    }
    return jv_str_buf(c, &b, out);
}

static bool in_chars(uint32_t cp, const cps *chars)
{
    if (!chars) return jx_py_space(cp);
    for (size_t i = 0; i < chars->n; i++)
        if (chars->v[i] == cp) return true;
    return false;
}

/* strip: mode 'b' both, 'l' left, 'r' right; chars NONE/undefined-missing = whitespace */
int jx_str_strip(jctx *c, jval s, jval chars, char mode, jval *out)
{
    cps set = {0}, *cs = NULL;
    if (chars.t == JT_STR) {
        if (cps_of(c, chars, &set) < 0) return -1;
        cs = &set;
    } else if (chars.t != JT_NONE && jx_given(chars)) {
        return jx_fail(c, NULL, "TypeError: strip arg must be None or str");
    }
    size_t a = 0, b = s.s->len;
    if (mode != 'r')
        while (a < b) {
            size_t j = a;
            if (!in_chars(jx_utf8_next(s.s->s, &j), cs)) break;
            a = j;
        }
    if (mode != 'l')
        while (b > a) {
            size_t st = b - 1;
            while (st > a && ((unsigned char)s.s->s[st] & 0xC0) == 0x80) st--;
            size_t j = st;
            if (!in_chars(jx_utf8_next(s.s->s, &j), cs)) break;
            b = st;
        }
    if (cs) cps_free(c, chars, &set);
    return jv_str(c, s.s->s + a, b - a, out);
}

int jx_str_replace(jctx *c, jval s, jval old, jval new, int64_t count, jval *out)
{
    jbuf b = {0};
    const char *p = s.s->s, *end = p + s.s->len;
    size_t ol = old.s->len;
    int rc = 0;
    if (count < 0) count = INT64_MAX;
    if (ol == 0) { /* new between every character */
        int64_t done = 0;
        size_t i = 0;
        while (rc == 0) {
            if (done < count) {
                rc = jx_buf_put(c, &b, new.s->s, new.s->len);
                done++;
            }
            if (i >= s.s->len) break;
            size_t st = i;
            jx_utf8_next(p, &i);
            if (rc == 0) rc = jx_buf_put(c, &b, p + st, i - st);
        }
    } else {
        while (rc == 0 && count > 0) {
            const char *hit = memmem(p, (size_t)(end - p), old.s->s, ol);
            if (!hit) break;
            rc = jx_buf_put(c, &b, p, (size_t)(hit - p));
            if (rc == 0) rc = jx_buf_put(c, &b, new.s->s, new.s->len);
            p = hit + ol;
            count--;
        }
        if (rc == 0) rc = jx_buf_put(c, &b, p, (size_t)(end - p));
    }
    if (rc < 0) {
        jx_buf_free(&b);
        return -1;
    }
    return jv_str_buf(c, &b, out);
}

/* pad to width code points: align '<' left-justify, '>' right, '^' center (Python's rule) */
int jx_str_pad(jctx *c, jval s, int64_t width, uint32_t fill, char align, jval *out)
{
    int64_t n = jv_str_ncp(s);
    if (width <= n) {
        *out = jv_inc(s);
        return 0;
    }
    if ((uint64_t)width > c->opts.max_output) return jx_fail_limit(c, NULL, "string-size");
    int64_t marg = width - n, left = align == '<' ? 0 : align == '>' ? marg : marg / 2 + (marg & width & 1);
    jbuf b = {0};
    int rc = 0;
    for (int64_t i = 0; i < left && rc == 0; i++) rc = put_cp(c, &b, fill);
    if (rc == 0) rc = jx_buf_put(c, &b, s.s->s, s.s->len);
    for (int64_t i = 0; i < marg - left && rc == 0; i++) rc = put_cp(c, &b, fill);
    if (rc < 0) {
        jx_buf_free(&b);
        return -1;
    }
    return jv_str_buf(c, &b, out);
}

/* skip forward over whitespace (space=true) or non-whitespace from i */
static size_t ws_fwd(const char *p, size_t n, size_t i, bool space)
{
    while (i < n) {
        size_t j = i;
        if (jx_py_space(jx_utf8_next(p, &j)) != space) break;
        i = j;
    }
    return i;
}

/* skip backward over whitespace (space=true) or non-whitespace ending at e */
static size_t ws_back(const char *p, size_t e, bool space)
{
    while (e > 0) {
        size_t st = e - 1;
        while (st > 0 && ((unsigned char)p[st] & 0xC0) == 0x80) st--;
        size_t j = st;
        if (jx_py_space(jx_utf8_next(p, &j)) != space) break;
        e = st;
    }
    return e;
}

/* split (right = rsplit); sep NONE = runs of whitespace */
int jx_str_split(jctx *c, const jnode *at, jval s, jval sep, int64_t maxsplit, bool right, jval *out)
{
    if (jv_list(c, 0, LK_LIST, out) < 0) return -1;
    const char *p = s.s->s;
    size_t n = s.s->len;
    int rc = 0;
    jval piece;
    if (maxsplit < 0) maxsplit = INT64_MAX;
    if (sep.t == JT_STR) {
        size_t sl = sep.s->len;
        if (sl == 0) {
            jv_dec(c, *out);
            return jx_fail(c, at, "ValueError: empty separator");
        }
        if (!right) {
            size_t i = 0;
            while (rc == 0 && maxsplit-- > 0) {
                const char *hit = memmem(p + i, n - i, sep.s->s, sl);
                if (!hit) break;
                size_t h = (size_t)(hit - p);
                rc = jv_str(c, p + i, h - i, &piece);
                if (rc == 0) rc = jv_list_push(c, *out, piece);
                i = h + sl;
            }
            if (rc == 0 && (rc = jv_str(c, p + i, n - i, &piece)) == 0) rc = jv_list_push(c, *out, piece);
        } else {
            size_t e = n;
            jval tmp;
            rc = jv_list(c, 0, LK_LIST, &tmp);
            while (rc == 0 && maxsplit-- > 0 && e >= sl) {
                size_t h = e - sl + 1, found = SIZE_MAX;
                while (h-- > 0)
                    if (!memcmp(p + h, sep.s->s, sl)) {
                        found = h;
                        break;
                    }
                if (found == SIZE_MAX) break;
                rc = jv_str(c, p + found + sl, e - found - sl, &piece);
                if (rc == 0) rc = jv_list_push(c, tmp, piece);
                e = found;
            }
            if (rc == 0 && (rc = jv_str(c, p, e, &piece)) == 0) rc = jv_list_push(c, tmp, piece);
            for (uint32_t i = tmp.l->n; rc == 0 && i-- > 0;) rc = jv_list_push(c, *out, jv_inc(tmp.l->v[i]));
            if (tmp.t == JT_LIST) jv_dec(c, tmp);
        }
    } else if (!right) { /* runs of whitespace; the rest after maxsplit keeps its trailing space */
        size_t i = 0;
        while (rc == 0 && maxsplit-- > 0) {
            i = ws_fwd(p, n, i, true);
            if (i >= n) break;
            size_t st = i;
            i = ws_fwd(p, n, i, false);
            if ((rc = jv_str(c, p + st, i - st, &piece)) == 0) rc = jv_list_push(c, *out, piece);
        }
        i = ws_fwd(p, n, i, true);
        if (rc == 0 && i < n && (rc = jv_str(c, p + i, n - i, &piece)) == 0) rc = jv_list_push(c, *out, piece);
    } else { /* rsplit: the same from the right; the rest keeps its leading space */
        jval tmp;
        size_t e = n;
        rc = jv_list(c, 0, LK_LIST, &tmp);
        while (rc == 0 && maxsplit-- > 0) {
            e = ws_back(p, e, true);
            if (e == 0) break;
            size_t st = ws_back(p, e, false);
            if ((rc = jv_str(c, p + st, e - st, &piece)) == 0) rc = jv_list_push(c, tmp, piece);
            e = st;
        }
        size_t e2 = ws_back(p, e, true);
        if (rc == 0 && e2 > 0 && (rc = jv_str(c, p, e2, &piece)) == 0) rc = jv_list_push(c, tmp, piece);
        for (uint32_t i = rc == 0 ? tmp.l->n : 0; rc == 0 && i-- > 0;) rc = jv_list_push(c, *out, jv_inc(tmp.l->v[i]));
        if (tmp.t == JT_LIST) jv_dec(c, tmp);
    }
    if (rc < 0) {
        jv_dec(c, *out);
        return -1;
    }
    return 0;
}

/* str.splitlines */
int jx_str_splitlines(jctx *c, jval s, bool keepends, jval *out)
{
    if (jv_list(c, 0, LK_LIST, out) < 0) return -1;
    const char *p = s.s->s;
    size_t n = s.s->len, i = 0, st = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        size_t j = i;
        uint32_t cp = jx_utf8_next(p, &j);
        bool brk = cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || (cp >= 0x1c && cp <= 0x1e) || cp == 0x85 ||
                   cp == 0x2028 || cp == 0x2029;
        if (!brk) {
            i = j;
            continue;
        }
        if (cp == '\r' && j < n && p[j] == '\n') j++;
        jval piece;
        rc = jv_str(c, p + st, (keepends ? j : i) - st, &piece);
        if (rc == 0) rc = jv_list_push(c, *out, piece);
        st = i = j;
    }
    if (rc == 0 && st < n) {
        jval piece;
        rc = jv_str(c, p + st, n - st, &piece);
        if (rc == 0) rc = jv_list_push(c, *out, piece);
    }
    if (rc < 0) jv_dec(c, *out);
    return rc;
}

/* ---- method table --------------------------------------------------------------------------- */

enum {
    /* str */
    M_S_CAPITALIZE = 1, M_S_CASEFOLD, M_S_CENTER, M_S_COUNT, M_S_ENDSWITH, M_S_FIND, M_S_FORMAT, M_S_INDEX,
    M_S_ISALNUM, M_S_ISALPHA, M_S_ISASCII, M_S_ISDECIMAL, M_S_ISDIGIT, M_S_ISLOWER, M_S_ISNUMERIC, M_S_ISSPACE,
    M_S_ISTITLE, M_S_ISUPPER, M_S_JOIN, M_S_LJUST, M_S_LOWER, M_S_LSTRIP, M_S_PARTITION, M_S_REMOVEPREFIX,
    M_S_REMOVESUFFIX, M_S_REPLACE, M_S_RFIND, M_S_RINDEX, M_S_RJUST, M_S_RPARTITION, M_S_RSPLIT, M_S_RSTRIP,
    M_S_SPLIT, M_S_SPLITLINES, M_S_STARTSWITH, M_S_STRIP, M_S_SWAPCASE, M_S_TITLE, M_S_UPPER, M_S_ZFILL,
    /* dict */
    M_D_GET, M_D_ITEMS, M_D_KEYS, M_D_VALUES, M_D_COPY,
    /* list / tuple */
    M_L_INDEX, M_L_COUNT, M_L_COPY,
    /* objects */
    M_LOOP_CYCLE, M_LOOP_CHANGED, M_CYC_NEXT, M_CYC_RESET, M_JOINER,
    /* globals */
    G_RANGE, G_DICT, G_NAMESPACE, G_CYCLER, G_JOINER, G_LIPSUM, G_RAISE, G_STRFTIME,
};

typedef struct mentry {
    const char *name;
    int id;
} mentry;

static const mentry str_methods[] = {
    {"capitalize", M_S_CAPITALIZE}, {"casefold", M_S_CASEFOLD}, {"center", M_S_CENTER}, {"count", M_S_COUNT},
    {"endswith", M_S_ENDSWITH}, {"find", M_S_FIND}, {"format", M_S_FORMAT}, {"index", M_S_INDEX},
    {"isalnum", M_S_ISALNUM}, {"isalpha", M_S_ISALPHA}, {"isascii", M_S_ISASCII}, {"isdecimal", M_S_ISDECIMAL},
    {"isdigit", M_S_ISDIGIT}, {"islower", M_S_ISLOWER}, {"isnumeric", M_S_ISNUMERIC}, {"isspace", M_S_ISSPACE},
    {"istitle", M_S_ISTITLE}, {"isupper", M_S_ISUPPER}, {"join", M_S_JOIN}, {"ljust", M_S_LJUST},
    {"lower", M_S_LOWER}, {"lstrip", M_S_LSTRIP}, {"partition", M_S_PARTITION}, {"removeprefix", M_S_REMOVEPREFIX},
    {"removesuffix", M_S_REMOVESUFFIX}, {"replace", M_S_REPLACE}, {"rfind", M_S_RFIND}, {"rindex", M_S_RINDEX},
    {"rjust", M_S_RJUST}, {"rpartition", M_S_RPARTITION}, {"rsplit", M_S_RSPLIT}, {"rstrip", M_S_RSTRIP},
    {"split", M_S_SPLIT}, {"splitlines", M_S_SPLITLINES}, {"startswith", M_S_STARTSWITH}, {"strip", M_S_STRIP},
    {"swapcase", M_S_SWAPCASE}, {"title", M_S_TITLE}, {"upper", M_S_UPPER}, {"zfill", M_S_ZFILL}, {NULL, 0}};
static const mentry dict_methods[] = {
    {"get", M_D_GET}, {"items", M_D_ITEMS}, {"keys", M_D_KEYS}, {"values", M_D_VALUES}, {"copy", M_D_COPY}, {NULL, 0}};
static const mentry list_methods[] = {{"index", M_L_INDEX}, {"count", M_L_COUNT}, {"copy", M_L_COPY}, {NULL, 0}};
static const mentry tuple_methods[] = {{"index", M_L_INDEX}, {"count", M_L_COUNT}, {NULL, 0}};
static const mentry globals[] = {
    {"range", G_RANGE}, {"dict", G_DICT}, {"namespace", G_NAMESPACE}, {"cycler", G_CYCLER}, {"joiner", G_JOINER},
    {"lipsum", G_LIPSUM}, {"raise_exception", G_RAISE}, {"strftime_now", G_STRFTIME}, {NULL, 0}};
/* methods the immutable sandbox refuses */
static const char *const unsafe_list[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort", NULL};
static const char *const unsafe_dict[] = {"clear", "pop", "popitem", "setdefault", "update", NULL};
/* other Python str methods (not provided here) */
static const char *const other_str[] = {"encode", "expandtabs", "format_map", "isidentifier", "isprintable",
                                        "maketrans", "translate", NULL};

static int find_m(const mentry *t, const char *name)
{
    for (; t->name; t++)
        if (!strcmp(t->name, name)) return t->id;
    return 0;
}

static bool in_list(const char *const *l, const char *name)
{
    for (; *l; l++)
        if (!strcmp(*l, name)) return true;
    return false;
}

static int make_func(jctx *c, int id, jval self, const char *name, jval *out)
{
    jfunc *f = jv_obj_new(c, JO_FUNC, sizeof *f);
    if (!f) return -1;
    f->id = id;
    f->self = jv_inc(self);
    f->name = name;
    *out = jv_obj(f);
    return 1;
}

int jx_method_lookup(jctx *c, jval obj, const char *name, jval *out)
{
    int id = 0;
    const char *kind = NULL;
    if (obj.t == JT_STR) {
        id = find_m(str_methods, name);
        if (!id && in_list(other_str, name))
            return jv_undef_hint(c, out, "str.%s() is not supported by this renderer", name) < 0 ? -1 : 1;
    } else if (obj.t == JT_DICT) {
        id = find_m(dict_methods, name);
        if (!id && in_list(unsafe_dict, name)) kind = "dict";
    } else if (obj.t == JT_LIST && obj.l->kind == LK_LIST) {
        id = find_m(list_methods, name);
        if (!id && in_list(unsafe_list, name)) kind = "list";
    } else if (obj.t == JT_LIST && obj.l->kind == LK_TUPLE) {
        id = find_m(tuple_methods, name);
    } else if (jv_is_obj(obj, JO_LOOP)) {
        id = !strcmp(name, "cycle") ? M_LOOP_CYCLE : !strcmp(name, "changed") ? M_LOOP_CHANGED : 0;
    } else if (jv_is_obj(obj, JO_CYCLER)) {
        jcycler *cy = (jcycler *)obj.o;
        if (!strcmp(name, "current")) {
            *out = cy->items ? jv_inc(cy->items->v[cy->pos]) : jv_none();
            return 1;
        }
        if (!strcmp(name, "items")) {
            *out = cy->items ? jv_inc((jval){.t = JT_LIST, .l = cy->items}) : jv_none();
            return 1;
        }
        id = !strcmp(name, "next") ? M_CYC_NEXT : !strcmp(name, "reset") ? M_CYC_RESET : 0;
    }
    if (kind) {
        if (jv_undef_hint(c, out, "access to attribute '%s' of '%s' object is unsafe.", name, kind) < 0) return -1;
        out->fl = JF_UNSAFE;
        return 1;
    }
    if (!id) return 0;
    return make_func(c, id, obj, name, out);
}

int jx_global_lookup(jctx *c, const char *name, jval *out)
{
    int id = find_m(globals, name);
    if (!id) return 0;
    return make_func(c, id, jv_none(), name, out);
}

/* ---- helpers for method bodies ---------------------------------------------------------------- */

static int need_str(jctx *c, const jnode *at, const char *fn, jval v)
{
    if (v.t == JT_STR) return 0;
    if (v.t == JT_UNDEF && v.fl != JX_MISSING) return jx_undef_fail(c, at, v);
    return jx_fail(c, at, "TypeError: %s() argument must be str, not %s", fn, jv_type_name(v));
}

static int need_int(jctx *c, const jnode *at, jval v, int64_t *out)
{
    if (v.t == JT_INT || v.t == JT_BOOL) {
        *out = v.t == JT_BOOL ? v.b : v.i;
        return 0;
    }
    if (v.t == JT_UNDEF && v.fl != JX_MISSING) return jx_undef_fail(c, at, v);
    return jx_fail(c, at, "TypeError: '%s' object cannot be interpreted as an integer", jv_type_name(v));
}

/* optional start/end (code point indices, Python slice rules) -> byte range */
static int sub_range(jctx *c, const jnode *at, jval s, jval st, jval en, size_t *a, size_t *b)
{
    int64_t n = jv_str_ncp(s), x = 0, y = n;
    if (jx_given(st) && st.t != JT_NONE) {
        if (need_int(c, at, st, &x) < 0) return -1;
        if (x < 0) x = x + n < 0 ? 0 : x + n;
        if (x > n) x = n;
    }
    if (jx_given(en) && en.t != JT_NONE) {
        if (need_int(c, at, en, &y) < 0) return -1;
        if (y < 0) y = y + n < 0 ? 0 : y + n;
        if (y > n) y = n;
    }
    if (x > y) { /* empty range: nothing matches */
        *a = 1;
        *b = 0;
        return 0;
    }
    *a = jv_str_off(s, x);
    *b = jv_str_off(s, y);
    return 0;
}

static int64_t cp_index(jval s, size_t byte_off)
{
    int64_t n = 0;
    for (size_t i = 0; i < byte_off; i++) n += ((unsigned char)s.s->s[i] & 0xC0) != 0x80;
    return n;
}

/* find/rfind/count in [a,b): returns byte offset or -1; count via *cnt */
static long find_sub(jval s, size_t a, size_t b, jval sub, bool rev, int64_t *cnt)
{
    if (a > b) return -1;
    size_t sl = sub.s->len;
    const char *p = s.s->s;
    if (cnt) {
        if (sl == 0) {
            *cnt = cp_index(s, b) - cp_index(s, a) + 1;
            return 0;
        }
        *cnt = 0;
        for (size_t i = a; i + sl <= b;) {
            const char *h = memmem(p + i, b - i, sub.s->s, sl);
            if (!h) break;
            (*cnt)++;
            i = (size_t)(h - p) + sl;
        }
        return 0;
    }
    if (sl > b - a) return -1;
    if (!rev) {
        const char *h = sl ? memmem(p + a, b - a, sub.s->s, sl) : p + a;
        return h ? (long)(h - p) : -1;
    }
    for (size_t i = b - sl + 1; i-- > a;)
        if (!memcmp(p + i, sub.s->s, sl)) return (long)i;
    return -1;
}

static int str_affix(jctx *c, const jnode *at, jval s, jval what, jval st, jval en, bool ends, bool *res)
{
    size_t a, b;
    if (sub_range(c, at, s, st, en, &a, &b) < 0) return -1;
    jval one[1] = {what};
    const jval *items = one;
    uint32_t n = 1;
    if (what.t == JT_LIST && what.l->kind == LK_TUPLE) {
        items = what.l->v;
        n = what.l->n;
    }
    *res = false;
    for (uint32_t i = 0; i < n && !*res; i++) {
        jval x = items[i];
        if (x.t != JT_STR)
            return jx_fail(c, at, "TypeError: %s first arg must be str or a tuple of str, not %s",
                           ends ? "endswith" : "startswith", jv_type_name(x));
        size_t l = x.s->len;
        if (a > b || l > b - a) continue;
        *res = !memcmp(s.s->s + (ends ? b - l : a), x.s->s, l);
    }
    return 0;
}

static int str_pred(jval s, int id)
{
    bool any = false, cased_seen = false, prev_cased = false;
    if (s.s->len == 0) return false;
    for (size_t i = 0; i < s.s->len;) {
        uint32_t cp = jx_utf8_next(s.s->s, &i);
        utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
        switch (id) {
        case M_S_ISALNUM: if (!is_alpha(cp) && !is_numeric(cp)) return false; break;
        case M_S_ISALPHA: if (!is_alpha(cp)) return false; break;
        case M_S_ISASCII: if (cp >= 0x80) return false; break;
        case M_S_ISDECIMAL:
        case M_S_ISDIGIT: if (!is_decimal(cp)) return false; break;
        case M_S_ISNUMERIC: if (!is_numeric(cp)) return false; break;
        case M_S_ISSPACE: if (!jx_py_space(cp)) return false; break;
        case M_S_ISLOWER:
            if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) return false;
            if (k == UTF8PROC_CATEGORY_LL) any = true;
            break;
        case M_S_ISUPPER:
            if (k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT) return false;
            if (k == UTF8PROC_CATEGORY_LU) any = true;
            break;
        case M_S_ISTITLE:
            if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) {
                if (prev_cased) return false;
                prev_cased = cased_seen = true;
            } else if (k == UTF8PROC_CATEGORY_LL) {
                if (!prev_cased) return false;
                prev_cased = true;
            } else {
                prev_cased = false;
            }
            break;
        }
    }
    if (id == M_S_ISLOWER || id == M_S_ISUPPER) return any;
    if (id == M_S_ISTITLE) return cased_seen;
    return true;
}

static int make_tuple3(jctx *c, jval s, size_t a, size_t b, size_t d, size_t e, jval *out)
{
    /* (s[0:a], s[b:d], s[e:]) */
    jval x, y, z;
    if (jv_str(c, s.s->s, a, &x) < 0) return -1;
    if (jv_str(c, s.s->s + b, d - b, &y) < 0) {
        jv_dec(c, x);
        return -1;
    }
    if (jv_str(c, s.s->s + e, s.s->len - e, &z) < 0) {
        jv_dec(c, x);
        jv_dec(c, y);
        return -1;
    }
    if (jv_list(c, 3, LK_TUPLE, out) < 0) {
        jv_dec(c, x);
        jv_dec(c, y);
        jv_dec(c, z);
        return -1;
    }
    jv_list_push(c, *out, x);
    jv_list_push(c, *out, y);
    jv_list_push(c, *out, z);
    return 0;
}

static int dict_view(jctx *c, jdict *d, int id, jval *out)
{
    if (jv_list(c, d->n, LK_VIEW, out) < 0) return -1;
    out->l->pyname = id == M_D_ITEMS ? "dict_items" : id == M_D_KEYS ? "dict_keys" : "dict_values";
    for (uint32_t i = 0; i < d->n; i++) {
        if (id == M_D_ITEMS) {
            jval pair;
            if (jv_list(c, 2, LK_TUPLE, &pair) < 0) {
                jv_dec(c, *out);
                return -1;
            }
            jv_list_push(c, pair, jv_inc(d->k[i]));
            jv_list_push(c, pair, jv_inc(d->v[i]));
            jv_list_push(c, *out, pair);
        } else {
            jv_list_push(c, *out, jv_inc(id == M_D_KEYS ? d->k[i] : d->v[i]));
        }
    }
    return 0;
}

int jx_dict_items(jctx *c, jdict *d, jval *out) { return dict_view(c, d, M_D_ITEMS, out); }

/* dict(**kw) / dict(mapping or pairs, **kw) into a new dict */
static int build_dict(jctx *c, const jnode *at, const char *fn, jval *args, uint32_t n, const char **kw, jval *kwv,
                      uint32_t nkw, jval *out)
{
    if (n > 1) return jx_fail(c, at, "TypeError: %s expected at most 1 argument, got %u", fn, n);
    if (jv_dict(c, out) < 0) return -1;
    int rc = 0;
    if (n == 1) {
        jval a = args[0];
        if (a.t == JT_DICT) {
            for (uint32_t i = 0; i < a.d->n && rc == 0; i++) rc = jv_dict_set(c, out->d, jv_inc(a.d->k[i]), jv_inc(a.d->v[i]));
        } else {
            jval items;
            if ((rc = jx_iter_list(c, at, a, &items)) == 0) {
                for (uint32_t i = 0; rc == 0 && i < items.l->n; i++) {
                    jval pl;
                    if ((rc = jx_iter_list(c, at, items.l->v[i], &pl)) < 0) break;
                    if (pl.l->n != 2)
                        rc = jx_fail(c, at, "ValueError: dictionary update sequence element #%u has length %u; 2 is required",
                                     i, pl.l->n);
                    else if (!jv_hashable(pl.l->v[0]))
                        rc = jx_fail(c, at, "TypeError: unhashable type: '%s'", jv_type_name(pl.l->v[0]));
                    else
                        rc = jv_dict_set(c, out->d, jv_inc(pl.l->v[0]), jv_inc(pl.l->v[1]));
                    jv_dec(c, pl);
                }
                jv_dec(c, items);
            }
        }
    }
    for (uint32_t i = 0; i < nkw && rc == 0; i++) {
        jval k;
        rc = jv_strz(c, kw[i], &k);
        if (rc == 0) rc = jv_dict_set(c, out->d, k, jv_inc(kwv[i]));
    }
    if (rc < 0) jv_dec(c, *out);
    return rc;
}

static int strftime_now(jctx *c, const jnode *at, jval fmt, jval *out)
{
    if (fmt.t != JT_STR) return jx_fail(c, at, "TypeError: strftime() argument 1 must be str, not %s", jv_type_name(fmt));
    struct timeval tv;
    time_t now;
    long usec = 0;
    if (c->opts.fixed_now) {
        now = (time_t)c->opts.now;
    } else {
        gettimeofday(&tv, NULL);
        now = tv.tv_sec;
        usec = tv.tv_usec;
    }
    struct tm tm;
    localtime_r(&now, &tm);
    /* Python handles %f (microseconds) and naive %z / %Z (empty) itself */
    jbuf f = {0}, o = {0};
    const char *p = fmt.s->s;
    int rc = 0;
    for (size_t i = 0; i < fmt.s->len && rc == 0; i++) {
        if (p[i] == '%' && i + 1 < fmt.s->len && (p[i + 1] == 'f' || p[i + 1] == 'z' || p[i + 1] == 'Z')) {
            char tmp[16] = "";
            if (p[i + 1] == 'f') snprintf(tmp, sizeof tmp, "%06ld", usec);
            rc = jx_buf_put(c, &f, tmp, strlen(tmp));
            i++;
        } else if (p[i] == '%' && i + 1 < fmt.s->len) {
            rc = jx_buf_put(c, &f, p + i, 2);
            i++;
        } else {
            rc = jx_buf_putc(c, &f, p[i]);
        }
    }
    if (rc == 0 && f.n) {
        size_t cap = f.n * 8 + 64;
        char *tmp = malloc(cap + 1);
        if (!tmp) rc = jx_fail(c, at, "out of memory");
        else {
            /* a leading space lets an empty result be told from an error */
            char *fm = malloc(f.n + 2);
            if (!fm) rc = jx_fail(c, at, "out of memory");
            else {
                fm[0] = ' ';
                memcpy(fm + 1, f.v, f.n + 1);
                size_t k = strftime(tmp, cap, fm, &tm);
                if (k == 0) rc = jx_fail(c, at, "ValueError: strftime result too long");
                else rc = jx_buf_put(c, &o, tmp + 1, k - 1);
                free(fm);
            }
            free(tmp);
        }
    }
    jx_buf_free(&f);
    if (rc < 0) {
        jx_buf_free(&o);
        return -1;
    }
    return jv_str_buf(c, &o, out);
}

static int make_range(jctx *c, const jnode *at, jval *args, uint32_t n, uint32_t nkw, jval *out)
{
    if (nkw) return jx_fail(c, at, "TypeError: range() takes no keyword arguments");
    if (n < 1 || n > 3) return jx_fail(c, at, "TypeError: range expected at least 1 argument, got %u", n);
    int64_t v[3];
    for (uint32_t i = 0; i < n; i++)
        if (need_int(c, at, args[i], &v[i]) < 0) return -1;
    int64_t start = n == 1 ? 0 : v[0], stop = n == 1 ? v[0] : v[1], step = n == 3 ? v[2] : 1;
    if (step == 0) return jx_fail(c, at, "ValueError: range() arg 3 must not be zero");
    __int128 len = 0;
    if (step > 0 && start < stop) len = ((__int128)stop - start + step - 1) / step;
    if (step < 0 && start > stop) len = ((__int128)start - stop - step - 1) / -step;
    if (len > 100000)
        return jx_fail(c, at, "OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    if (jx_step(c, at, (uint64_t)len) < 0 || jv_list(c, (uint32_t)len, LK_RANGE, out) < 0) return -1;
    out->l->r_start = start;
    out->l->r_stop = stop;
    out->l->r_step = step;
    for (int64_t i = 0; i < (int64_t)len; i++) jv_list_push(c, *out, jv_int(start + i * step));
    return 0;
}

/* ---- calls ---------------------------------------------------------------------------------- */

/* Python's message for a method called with arguments it does not take */
#define M_NOARGS(fname)                                                                           \
    if (n || nkw) return jx_fail(c, at, "TypeError: %s() takes no arguments (%u given)", fname, n + nkw)

static int str_method(jctx *c, const jnode *at, int id, const char *name, jval s, jval *args, uint32_t n,
                      const char **kw, jval *kwv, uint32_t nkw, jval *out)
{
    size_t a, b;
    if (nkw && id != M_S_SPLIT && id != M_S_RSPLIT && id != M_S_SPLITLINES && id != M_S_FORMAT) /* positional-only */
        return jx_fail(c, at, "TypeError: str.%s() takes no keyword arguments", name);
    int64_t k;
    bool r;
    switch (id) {
    case M_S_UPPER: case M_S_LOWER: case M_S_CASEFOLD: case M_S_SWAPCASE: case M_S_TITLE: case M_S_CAPITALIZE: {
        M_NOARGS(name);
        char mode = id == M_S_UPPER ? 'u' : id == M_S_SWAPCASE ? 's' : id == M_S_TITLE ? 't' : id == M_S_CAPITALIZE ? 'c' : 'l';
        return jx_str_case(c, s, mode, out);
    }
    case M_S_STRIP: case M_S_LSTRIP: case M_S_RSTRIP: {
        BIND(name, "chars");
        return jx_str_strip(c, s, A[0], id == M_S_STRIP ? 'b' : id == M_S_LSTRIP ? 'l' : 'r', out);
    }
    case M_S_SPLIT: case M_S_RSPLIT: {
        BIND(name, "sep", "maxsplit");
        int64_t ms = -1;
        if (jx_given(A[0]) && A[0].t != JT_NONE && need_str(c, at, name, A[0]) < 0) return -1;
        if (jx_given(A[1]) && need_int(c, at, A[1], &ms) < 0) return -1;
        return jx_str_split(c, at, s, jx_given(A[0]) ? A[0] : jv_none(), ms, id == M_S_RSPLIT, out);
    }
    case M_S_SPLITLINES: {
        BIND(name, "keepends");
        return jx_str_splitlines(c, s, jx_given(A[0]) && jv_truthy(A[0]), out);
    }
    case M_S_STARTSWITH: case M_S_ENDSWITH: {
        if (n < 1) return jx_fail(c, at, "TypeError: %s() takes at least 1 argument (0 given)", name);
        BIND(name, "prefix", "start", "end");
        if (str_affix(c, at, s, A[0], A[1], A[2], id == M_S_ENDSWITH, &r) < 0) return -1;
        *out = jv_bool(r);
        return 0;
    }
    case M_S_FIND: case M_S_RFIND: case M_S_INDEX: case M_S_RINDEX: case M_S_COUNT: {
        if (n < 1) return jx_fail(c, at, "TypeError: %s() takes at least 1 argument (0 given)", name);
        BIND(name, "sub", "start", "end");
        if (need_str(c, at, name, A[0]) < 0 || sub_range(c, at, s, A[1], A[2], &a, &b) < 0) return -1;
        if (id == M_S_COUNT) {
            int64_t cnt = 0;
            if (a <= b) find_sub(s, a, b, A[0], false, &cnt);
            *out = jv_int(cnt);
            return 0;
        }
        long pos = find_sub(s, a, b, A[0], id == M_S_RFIND || id == M_S_RINDEX, NULL);
        if (pos < 0 && (id == M_S_INDEX || id == M_S_RINDEX)) return jx_fail(c, at, "ValueError: substring not found");
        *out = jv_int(pos < 0 ? -1 : cp_index(s, (size_t)pos));
        return 0;
    }
    case M_S_REPLACE: {
        BIND(name, "old", "new", "count");
        int64_t cnt = -1;
        if (!jx_given(A[0]) || !jx_given(A[1])) return jx_fail(c, at, "TypeError: replace expected at least 2 arguments");
        if (need_str(c, at, name, A[0]) < 0 || need_str(c, at, name, A[1]) < 0) return -1;
        if (jx_given(A[2]) && need_int(c, at, A[2], &cnt) < 0) return -1;
        return jx_str_replace(c, s, A[0], A[1], cnt, out);
    }
    case M_S_JOIN: {
        BIND(name, "iterable");
        if (!jx_given(A[0])) return jx_fail(c, at, "TypeError: join() takes exactly one argument (0 given)");
        jval items;
        if (jx_iter_list(c, at, A[0], &items) < 0) return -1;
        jbuf buf = {0};
        int rc = 0;
        for (uint32_t i = 0; i < items.l->n && rc == 0; i++) {
            jval x = items.l->v[i];
            if (x.t != JT_STR) rc = jx_fail(c, at, "TypeError: sequence item %u: expected str instance, %s found", i, jv_type_name(x));
            if (rc == 0 && i) rc = jx_buf_put(c, &buf, s.s->s, s.s->len);
            if (rc == 0) rc = jx_buf_put(c, &buf, x.s->s, x.s->len);
        }
        jv_dec(c, items);
        if (rc < 0) {
            jx_buf_free(&buf);
            return -1;
        }
        return jv_str_buf(c, &buf, out);
    }
    case M_S_CENTER: case M_S_LJUST: case M_S_RJUST: case M_S_ZFILL: {
        uint32_t fill = ' ';
        if (id == M_S_ZFILL) {
            BIND(name, "width");
            if (need_int(c, at, A[0], &k) < 0) return -1;
            int64_t len = jv_str_ncp(s);
            if (k <= len) {
                *out = jv_inc(s);
                return 0;
            }
            jbuf buf = {0};
            size_t sign = s.s->len && (s.s->s[0] == '+' || s.s->s[0] == '-');
            int rc = jx_buf_put(c, &buf, s.s->s, sign);
            for (int64_t i = 0; i < k - len && rc == 0; i++) rc = jx_buf_putc(c, &buf, '0');
            if (rc == 0) rc = jx_buf_put(c, &buf, s.s->s + sign, s.s->len - sign);
            if (rc < 0) {
                jx_buf_free(&buf);
                return -1;
            }
            return jv_str_buf(c, &buf, out);
        }
        BIND(name, "width", "fillchar");
        if (need_int(c, at, A[0], &k) < 0) return -1;
        if (jx_given(A[1])) {
            if (A[1].t != JT_STR || jv_str_ncp(A[1]) != 1)
                return jx_fail(c, at, "TypeError: The fill character must be exactly one character long");
            size_t i = 0;
            fill = jx_utf8_next(A[1].s->s, &i);
        }
        return jx_str_pad(c, s, k, fill, id == M_S_CENTER ? '^' : id == M_S_LJUST ? '<' : '>', out);
    }
    case M_S_PARTITION: case M_S_RPARTITION: {
        BIND(name, "sep");
        if (need_str(c, at, name, A[0]) < 0) return -1;
        if (A[0].s->len == 0) return jx_fail(c, at, "ValueError: empty separator");
        long pos = find_sub(s, 0, s.s->len, A[0], id == M_S_RPARTITION, NULL);
        size_t L = s.s->len, sl = A[0].s->len;
        if (pos < 0) return id == M_S_PARTITION ? make_tuple3(c, s, L, L, L, L, out) : make_tuple3(c, s, 0, 0, 0, 0, out);
        return make_tuple3(c, s, (size_t)pos, (size_t)pos, (size_t)pos + sl, (size_t)pos + sl, out);
    }
    case M_S_REMOVEPREFIX: case M_S_REMOVESUFFIX: {
        BIND(name, "affix");
        if (need_str(c, at, name, A[0]) < 0) return -1;
        size_t l = A[0].s->len, L = s.s->len;
        if (l <= L && id == M_S_REMOVEPREFIX && !memcmp(s.s->s, A[0].s->s, l)) return jv_str(c, s.s->s + l, L - l, out);
        if (l <= L && id == M_S_REMOVESUFFIX && l && !memcmp(s.s->s + L - l, A[0].s->s, l)) return jv_str(c, s.s->s, L - l, out);
        *out = jv_inc(s);
        return 0;
    }
    case M_S_FORMAT: {
        jval tuple, kwd;
        if (jv_list(c, n, LK_TUPLE, &tuple) < 0) return -1;
        for (uint32_t i = 0; i < n; i++) jv_list_push(c, tuple, jv_inc(args[i]));
        if (jv_dict(c, &kwd) < 0) {
            jv_dec(c, tuple);
            return -1;
        }
        int rc = 0;
        for (uint32_t i = 0; i < nkw && rc == 0; i++) {
            jval key;
            rc = jv_strz(c, kw[i], &key);
            if (rc == 0) rc = jv_dict_set(c, kwd.d, key, jv_inc(kwv[i]));
        }
        if (rc == 0) rc = jx_str_format(c, at, s, tuple, kwd, out);
        jv_dec(c, tuple);
        jv_dec(c, kwd);
        return rc;
    }
    default:
        M_NOARGS(name);
        *out = jv_bool(str_pred(s, id));
        return 0;
    }
}

int jx_func_call(jctx *c, const jnode *at, jfunc *f, jval *args, uint32_t n, const char **kw, jval *kwv, uint32_t nkw,
                 jval *out)
{
    jval self = f->self;
    const char *name = f->name;
    if (f->id <= M_S_ZFILL) return str_method(c, at, f->id, name, self, args, n, kw, kwv, nkw, out);
    if (nkw && f->id <= M_L_COPY) return jx_fail(c, at, "TypeError: %s() takes no keyword arguments", name);
    switch (f->id) {
    case M_D_GET: {
        BIND("get", "key", "default");
        if (!jx_given(A[0])) return jx_fail(c, at, "TypeError: get expected at least 1 argument, got 0");
        if (!jv_hashable(A[0])) return jx_fail(c, at, "TypeError: unhashable type: '%s'", jv_type_name(A[0]));
        jval v;
        if (jv_dict_get(self.d, A[0], &v) == 0) *out = jv_inc(v);
        else *out = jx_given(A[1]) ? jv_inc(A[1]) : jv_none();
        return 0;
    }
    case M_D_ITEMS: case M_D_KEYS: case M_D_VALUES:
        M_NOARGS(name);
        return dict_view(c, self.d, f->id, out);
    case M_D_COPY: M_NOARGS(name); return build_dict(c, at, "dict", &self, 1, NULL, NULL, 0, out);
    case M_L_COPY:
        M_NOARGS(name);
        if (jv_list(c, self.l->n, LK_LIST, out) < 0) return -1;
        for (uint32_t i = 0; i < self.l->n; i++) jv_list_push(c, *out, jv_inc(self.l->v[i]));
        return 0;
    case M_L_COUNT:
    case M_L_INDEX: {
        if (n < 1) return jx_fail(c, at, "TypeError: %s() takes at least 1 argument (0 given)", name);
        BIND(name, "value", "start", "stop");
        int64_t len = self.l->n, st = 0, en = len, cnt = 0;
        if (f->id == M_L_INDEX) {
            if (jx_given(A[1]) && need_int(c, at, A[1], &st) < 0) return -1;
            if (jx_given(A[2]) && need_int(c, at, A[2], &en) < 0) return -1;
            if (st < 0) st = st + len < 0 ? 0 : st + len;
            if (en < 0) en = en + len < 0 ? 0 : en + len;
            if (en > len) en = len;
        }
        for (int64_t i = st; i < en; i++)
            if (jv_eq(self.l->v[i], A[0])) {
                if (f->id == M_L_INDEX) {
                    *out = jv_int(i);
                    return 0;
                }
                cnt++;
            }
        if (f->id == M_L_COUNT) {
            *out = jv_int(cnt);
            return 0;
        }
        jbuf rb = {0};
        jv_repr(c, A[0], &rb);
        int rc = jx_fail(c, at, "ValueError: %.200s is not in list", rb.v ? rb.v : "");
        jx_buf_free(&rb);
        return rc;
    }
    case M_LOOP_CYCLE: {
        jloop *l = (jloop *)self.o;
        if (nkw) return jx_fail(c, at, "TypeError: cycle() takes no keyword arguments");
        if (n == 0) return jx_fail(c, at, "TypeError: no items for cycling given");
        *out = jv_inc(args[l->index0 % n]);
        return 0;
    }
    case M_LOOP_CHANGED: {
        jloop *l = (jloop *)self.o;
        jval v;
        if (jv_list(c, n, LK_LIST, &v) < 0) return -1;
        for (uint32_t i = 0; i < n; i++) jv_list_push(c, v, jv_inc(args[i]));
        bool changed = !l->has_changed || !jv_eq(l->last_changed, v);
        jv_dec(c, l->last_changed);
        l->last_changed = v;
        l->has_changed = true;
        *out = jv_bool(changed);
        return 0;
    }
    case M_CYC_NEXT: {
        M_NOARGS(name);
        jcycler *cy = (jcycler *)self.o;
        if (!cy->items) return jx_fail(c, at, "cycler is gone");
        *out = jv_inc(cy->items->v[cy->pos]);
        cy->pos = (cy->pos + 1) % cy->items->n;
        return 0;
    }
    case M_CYC_RESET:
        M_NOARGS(name);
        ((jcycler *)self.o)->pos = 0;
        *out = jv_none();
        return 0;
    case M_JOINER: {
        M_NOARGS("joiner");
        jjoiner *j = (jjoiner *)self.o;
        if (!j->used) {
            j->used = true;
            return jv_str(c, "", 0, out);
        }
        *out = jv_inc(j->sep);
        return 0;
    }
    case G_RANGE: return make_range(c, at, args, n, nkw, out);
    case G_DICT: return build_dict(c, at, "dict", args, n, kw, kwv, nkw, out);
    case G_NAMESPACE: {
        jval d;
        if (build_dict(c, at, "namespace", args, n, kw, kwv, nkw, &d) < 0) return -1;
        jns *ns = jv_obj_new(c, JO_NS, sizeof *ns);
        if (!ns) {
            jv_dec(c, d);
            return -1;
        }
        ns->d = d.d;
        *out = jv_obj(ns);
        return 0;
    }
    case G_CYCLER: {
        if (nkw) return jx_fail(c, at, "TypeError: Cycler() got an unexpected keyword argument '%s'", kw[0]);
        if (n == 0) return jx_fail(c, at, "RuntimeError: at least one item has to be provided");
        jcycler *cy = jv_obj_new(c, JO_CYCLER, sizeof *cy);
        jval items;
        if (!cy || jv_list(c, n, LK_TUPLE, &items) < 0) {
            if (cy) jv_dec(c, jv_obj(cy));
            return -1;
        }
        for (uint32_t i = 0; i < n; i++) jv_list_push(c, items, jv_inc(args[i]));
        cy->items = items.l;
        *out = jv_obj(cy);
        return 0;
    }
    case G_JOINER: {
        BIND("joiner", "sep");
        jjoiner *j = jv_obj_new(c, JO_JOINER, sizeof *j);
        if (!j) return -1;
        if (jx_given(A[0])) j->sep = jv_inc(A[0]);
        else if (jv_strz(c, ", ", &j->sep) < 0) {
            j->sep = jv_none();
            jv_dec(c, jv_obj(j));
            return -1;
        }
        int rc = make_func(c, M_JOINER, jv_obj(j), "joiner", out);
        jv_dec(c, jv_obj(j));
        return rc < 0 ? -1 : 0;
    }
    case G_LIPSUM: return jx_fail(c, at, "lipsum() is not supported by this renderer");
    case G_RAISE: {
        BIND("raise_exception", "message");
        jbuf b = {0};
        if (jx_given(A[0]) && jv_to_str(c, A[0], &b) < 0) {
            jx_buf_free(&b);
            return -1;
        }
        c->raised = true;
        int rc = jx_fail(c, at, "%s", b.v ? b.v : "");
        jx_buf_free(&b);
        return rc;
    }
    case G_STRFTIME: {
        BIND("strftime_now", "format");
        if (!jx_given(A[0])) return jx_fail(c, at, "TypeError: strftime_now() missing 1 required positional argument: 'format'");
        return strftime_now(c, at, A[0], out);
    }
    }
    return jx_fail(c, at, "internal: unknown function");
}

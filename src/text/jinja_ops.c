/* jinja_ops.c - what the evaluator does to values: attribute and item lookup the way
 * jinja2's sandbox does it (obj.name tries the Python attribute, then the item;
 * obj[key] the other way round; names like __class__ are refused; a miss gives an
 * undefined value that names what was missing), slicing (which bypasses the sandbox,
 * so Python's errors surface), iteration (strings by character, dicts by key,
 * generators once), and the operators with Python's semantics: + - * / // % ** on the
 * numeric tower, str/list concatenation and repetition, str % args, Markup escaping,
 * `in`. Errors carry Python's exception names and messages.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"
#include "util.h"

/* ---- errors from values ------------------------------------------------------------------ */

int jx_undef_fail(jctx *c, const jnode *at, jval u)
{
    if (u.t != JT_UNDEF) return jx_fail(c, at, "internal: not an undefined value");
    const char *kind = (u.fl & JF_UNSAFE) ? "SecurityError" : "UndefinedError";
    if (u.s) return jx_fail(c, at, "%s: %s", kind, u.s->s);
    return jx_fail(c, at, "%s: value is undefined", kind);
}

/* "'dict object'" as Jinja's object_type_repr names it */
static const char *obj_type_repr(jval v, char *buf, size_t len)
{
    if (v.t == JT_NONE) return "None";
    if (jv_is_obj(v, JO_NS)) return "jinja2.utils.Namespace object";
    if (jv_is_obj(v, JO_LOOP)) return "jinja2.runtime.LoopContext object";
    if (jv_is_obj(v, JO_MACRO)) return "jinja2.runtime.Macro object";
    if (v.t == JT_STR && (v.fl & JF_MARKUP)) return "markupsafe.Markup object";
    snprintf(buf, len, "%s object", jv_type_name(v));
    return buf;
}

static int undef_attr(jctx *c, jval obj, const char *name, jval *out)
{
    char b[64];
    return jv_undef_hint(c, out, "'%s' has no attribute '%s'", obj_type_repr(obj, b, sizeof b), name);
}

/* ---- attributes and items ------------------------------------------------------------------ */

static bool is_dunder(const char *s)
{
    size_t l = strlen(s);
    return l > 4 && s[0] == '_' && s[1] == '_' && s[l - 2] == '_' && s[l - 1] == '_';
}

static int loop_attr(jctx *c, jloop *l, const char *name, jval *out)
{
    int64_t len = l->items ? l->items->n : 0, i = l->index0;
    if (!strcmp(name, "index")) *out = jv_int(i + 1);
    else if (!strcmp(name, "index0")) *out = jv_int(i);
    else if (!strcmp(name, "revindex")) *out = jv_int(len - i);
    else if (!strcmp(name, "revindex0")) *out = jv_int(len - i - 1);
    else if (!strcmp(name, "first")) *out = jv_bool(i == 0);
    else if (!strcmp(name, "last")) *out = jv_bool(i == len - 1);
    else if (!strcmp(name, "length")) *out = jv_int(len);
    else if (!strcmp(name, "depth")) *out = jv_int(l->depth0 + 1);
    else if (!strcmp(name, "depth0")) *out = jv_int(l->depth0);
    else if (!strcmp(name, "previtem")) {
        if (i > 0) *out = jv_inc(l->items->v[i - 1]);
        else return jv_undef_hint(c, out, "there is no previous item");
    } else if (!strcmp(name, "nextitem")) {
        if (i + 1 < len) *out = jv_inc(l->items->v[i + 1]);
        else return jv_undef_hint(c, out, "there is no next item");
    } else {
        int r = jx_method_lookup(c, jv_obj(l), name, out);
        if (r < 0) return -1;
        if (r == 0) return undef_attr(c, jv_obj(l), name, out);
    }
    return 0;
}

int jx_getattr(jctx *c, const jnode *at, jval obj, const char *name, jval *out)
{
    if (obj.t == JT_UNDEF) return jx_undef_fail(c, at, obj);
    if (is_dunder(name)) {
        char b[64];
        if (jv_undef_hint(c, out, "access to attribute '%s' of '%s' object is unsafe.", name,
                          obj_type_repr(obj, b, sizeof b)) < 0)
            return -1;
        out->fl = JF_UNSAFE;
        return 0;
    }
    if (obj.t == JT_OBJ) {
        switch ((jokind)obj.o->kind) {
        case JO_NS: {
            jns *ns = (jns *)obj.o;
            jval v;
            if (ns->d && jv_dict_gets(ns->d, name, &v) == 0) {
                *out = jv_inc(v);
                return 0;
            }
            return undef_attr(c, obj, name, out);
        }
        case JO_LOOP: return loop_attr(c, (jloop *)obj.o, name, out);
        case JO_MACRO: {
            jmacro *m = (jmacro *)obj.o;
            if (!strcmp(name, "name")) return jv_strz(c, m->is_caller ? "caller" : m->def->name, out);
            if (!strcmp(name, "arguments")) {
                if (jv_list(c, m->def->n_names, LK_TUPLE, out) < 0) return -1;
                for (uint32_t i = 0; i < m->def->n_names; i++) {
                    jval s;
                    if (jv_strz(c, m->def->names[i], &s) < 0 || jv_list_push(c, *out, s) < 0) {
                        jv_dec(c, *out);
                        return -1;
                    }
                }
                return 0;
            }
            uint32_t f = !strcmp(name, "catch_kwargs") ? NF_KWARGS : !strcmp(name, "catch_varargs") ? NF_VARARGS
                                                         : !strcmp(name, "caller")                  ? NF_CALLER
                                                                                                     : 0;
            if (f) {
                *out = jv_bool((m->def->flags & f) != 0);
                return 0;
            }
            return undef_attr(c, obj, name, out);
        }
        default: break;
        }
    }
    int r = jx_method_lookup(c, obj, name, out);
    if (r < 0) return -1;
    if (r > 0) return 0;
    if (obj.t == JT_DICT) {
        jval v;
        if (jv_dict_gets(obj.d, name, &v) == 0) {
            *out = jv_inc(v);
            return 0;
        }
    }
    return undef_attr(c, obj, name, out);
}

static int undef_item(jctx *c, jval obj, jval key, jval *out)
{
    char b[64];
    if (key.t == JT_STR) return undef_attr(c, obj, key.s->s, out);
    jbuf kb = {0};
    if (jv_repr(c, key, &kb) < 0) {
        jx_buf_free(&kb);
        return -1;
    }
    int rc = jv_undef_hint(c, out, "'%s' has no element %.200s", obj_type_repr(obj, b, sizeof b), kb.v ? kb.v : "");
    jx_buf_free(&kb);
    return rc;
}

int jx_getitem(jctx *c, const jnode *at, jval obj, jval key, jval *out)
{
    if (obj.t == JT_UNDEF) return jx_undef_fail(c, at, obj);
    bool int_key = key.t == JT_INT || key.t == JT_BOOL;
    int64_t k = key.t == JT_BOOL ? key.b : key.i;
    if (obj.t == JT_DICT) {
        jval v;
        if (jv_hashable(key) && jv_dict_get(obj.d, key, &v) == 0) {
            *out = jv_inc(v);
            return 0;
        }
    } else if (obj.t == JT_LIST && int_key && (jv_is_seq(obj) || obj.l->kind == LK_RANGE)) {
        int64_t n = obj.l->n;
        if (k < 0) k += n;
        if (k >= 0 && k < n) {
            *out = jv_inc(obj.l->v[k]);
            return 0;
        }
    } else if (obj.t == JT_STR && int_key) {
        int64_t n = jv_str_ncp(obj);
        if (k < 0) k += n;
        if (k >= 0 && k < n) {
            size_t a = jv_str_off(obj, k), b = jv_str_off(obj, k + 1);
            if (jv_str(c, obj.s->s + a, b - a, out) < 0) return -1;
            out->fl = obj.fl & JF_MARKUP;
            return 0;
        }
    }
    if (key.t == JT_STR && obj.t != JT_DICT) {
        if (is_dunder(key.s->s)) return jx_getattr(c, at, obj, key.s->s, out);
        int r = jx_method_lookup(c, obj, key.s->s, out);
        if (r != 0) return r < 0 ? -1 : 0;
        if (obj.t == JT_OBJ) return jx_getattr(c, at, obj, key.s->s, out);
    } else if (key.t == JT_STR && obj.t == JT_DICT) {
        int r = jx_method_lookup(c, obj, key.s->s, out);
        if (r != 0) return r < 0 ? -1 : 0;
    }
    return undef_item(c, obj, key, out);
}

/* Python slice indices for a sequence of length n */
static int slice_indices(jctx *c, const jnode *at, jval lo, jval hi, jval st, int64_t n, int64_t *start, int64_t *stop,
                         int64_t *step)
{
    jval p[3] = {lo, hi, st};
    int64_t v[3] = {0, 0, 1};
    bool given[3];
    for (int i = 0; i < 3; i++) {
        given[i] = p[i].t != JT_NONE;
        if (!given[i]) continue;
        if (p[i].t == JT_INT) v[i] = p[i].i;
        else if (p[i].t == JT_BOOL) v[i] = p[i].b;
        else if (p[i].t == JT_UNDEF) return jx_undef_fail(c, at, p[i]);
        else return jx_fail(c, at, "TypeError: slice indices must be integers or None");
    }
    if (given[2] && v[2] == 0) return jx_fail(c, at, "ValueError: slice step cannot be zero");
    *step = given[2] ? v[2] : 1;
    for (int i = 0; i < 2; i++) {
        int64_t x = v[i];
        if (!given[i]) x = (*step > 0) ? (i == 0 ? 0 : n) : (i == 0 ? n - 1 : -1);
        else {
            if (x < 0) {
                x += n;
                if (x < 0) x = *step > 0 ? 0 : -1;
            } else if (x >= n) {
                x = *step > 0 ? n : n - 1;
            }
        }
        if (i == 0) *start = x;
        else *stop = x;
    }
    return 0;
}

int jx_slice(jctx *c, const jnode *at, jval obj, jval lo, jval hi, jval st, jval *out)
{
    /* slices bypass the sandbox's getitem in Jinja: Python's errors surface */
    if (obj.t == JT_UNDEF) return jx_undef_fail(c, at, obj);
    if (obj.t == JT_DICT) return jx_fail(c, at, "TypeError: unhashable type: 'slice'");
    if (!(obj.t == JT_STR || jv_is_seq(obj) || (obj.t == JT_LIST && obj.l->kind == LK_RANGE)))
        return jx_fail(c, at, "TypeError: '%s' object is not subscriptable", jv_type_name(obj));
    int64_t n = obj.t == JT_LIST ? obj.l->n : jv_str_ncp(obj), start = 0, stop = 0, step = 1;
    if (slice_indices(c, at, lo, hi, st, n, &start, &stop, &step) < 0) return -1;
    if (obj.t == JT_LIST) {
        if (jv_list(c, 0, obj.l->kind == LK_TUPLE ? LK_TUPLE : LK_LIST, out) < 0) return -1;
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
            if (jx_step(c, at, 1) < 0 || jv_list_push(c, *out, jv_inc(obj.l->v[i])) < 0) {
                jv_dec(c, *out);
                return -1;
            }
        }
        return 0;
    }
    if (step == 1) {
        size_t a = jv_str_off(obj, start), b = stop > start ? jv_str_off(obj, stop) : a;
        if (jv_str(c, obj.s->s + a, b - a, out) < 0) return -1;
        out->fl = obj.fl & JF_MARKUP;
        return 0;
    }
    jbuf b = {0};
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        size_t x = jv_str_off(obj, i), y = jv_str_off(obj, i + 1);
        if (jx_step(c, at, 1) < 0 || jx_buf_put(c, &b, obj.s->s + x, y - x) < 0) {
            jx_buf_free(&b);
            return -1;
        }
    }
    if (jv_str_buf(c, &b, out) < 0) return -1;
    out->fl = obj.fl & JF_MARKUP;
    return 0;
}

int jx_iter_list(jctx *c, const jnode *at, jval v, jval *out)
{
    switch (v.t) {
    case JT_UNDEF: return jv_list(c, 0, LK_LIST, out);
    case JT_LIST:
        if (v.l->kind == LK_GEN) { /* a one-shot iterator: what is left, then it is exhausted */
            uint32_t from = v.l->pos;
            if (v.l->err) {
                v.l->pos = v.l->n;
                return jx_reraise(c, v.l->err);
            }
            if (jv_list(c, v.l->n - from, LK_LIST, out) < 0) return -1;
            for (uint32_t i = from; i < v.l->n; i++) jv_list_push(c, *out, jv_inc(v.l->v[i]));
            v.l->pos = v.l->n;
            return 0;
        }
        *out = jv_inc(v);
        return 0;
    case JT_DICT:
        if (jv_list(c, v.d->n, LK_LIST, out) < 0) return -1;
        for (uint32_t i = 0; i < v.d->n; i++) jv_list_push(c, *out, jv_inc(v.d->k[i])); /* preallocated */
        return 0;
    case JT_STR: {
        if (jx_step(c, at, (uint64_t)jv_str_ncp(v)) < 0 || jv_list(c, (uint32_t)jv_str_ncp(v), LK_LIST, out) < 0) return -1;
        for (size_t i = 0; i < v.s->len;) {
            size_t st = i;
            jx_utf8_next(v.s->s, &i);
            jval ch;
            if (jv_str(c, v.s->s + st, i - st, &ch) < 0) {
                jv_dec(c, *out);
                return -1;
            }
            ch.fl = 0; /* iterating a Markup gives plain str characters */
            jv_list_push(c, *out, ch); /* preallocated */
        }
        return 0;
    }
    default: return jx_fail(c, at, "TypeError: '%s' object is not iterable", jv_type_name(v));
    }
}

/* ---- operators ---------------------------------------------------------------------------- */

static int html_escape(jctx *c, jval s, jbuf *b)
{
    const char *p = s.s->s;
    size_t n = s.s->len, run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *e = NULL;
        switch (p[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&#34;"; break;
        case '\'': e = "&#39;"; break;
        default: run++; continue;
        }
        if (jx_buf_put(c, b, p + i - run, run) < 0 || jx_buf_put(c, b, e, strlen(e)) < 0) return -1;
        run = 0;
    }
    return jx_buf_put(c, b, p + n - run, run);
}

int jx_escape(jctx *c, jval v, jval *out)
{
    if (v.t == JT_STR && (v.fl & JF_MARKUP)) {
        *out = jv_inc(v);
        return 0;
    }
    jval s;
    if (jv_stringify(c, v, &s) < 0) return -1;
    jbuf b = {0};
    int rc = html_escape(c, s, &b);
    jv_dec(c, s);
    if (rc < 0 || jv_str_buf(c, &b, out) < 0) {
        jx_buf_free(&b);
        return -1;
    }
    out->fl = JF_MARKUP;
    return 0;
}

static int op_fail(jctx *c, const jnode *at, const char *op, jval a, jval b)
{
    return jx_fail(c, at, "TypeError: unsupported operand type(s) for %s: '%s' and '%s'", op, jv_type_name(a),
                   jv_type_name(b));
}

static int concat_seq(jctx *c, const jnode *at, jval a, jval b, jval *out)
{
    if (jx_step(c, at, (uint64_t)a.l->n + b.l->n) < 0 || jv_list(c, a.l->n + b.l->n, a.l->kind, out) < 0) return -1;
    for (uint32_t i = 0; i < a.l->n; i++) jv_list_push(c, *out, jv_inc(a.l->v[i]));
    for (uint32_t i = 0; i < b.l->n; i++) jv_list_push(c, *out, jv_inc(b.l->v[i]));
    return 0;
}

static int repeat(jctx *c, const jnode *at, jval seq, int64_t times, jval *out)
{
    if (times < 0) times = 0;
    if (seq.t == JT_STR) {
        uint64_t total;
        if (!ms_mul_u64(seq.s->len, (uint64_t)times, &total) || total > c->opts.max_output)
            return jx_fail_limit(c, at, "string-size");
        jbuf b = {0};
        for (int64_t i = 0; i < times; i++)
            if (jx_buf_put(c, &b, seq.s->s, seq.s->len) < 0) {
                jx_buf_free(&b);
                return -1;
            }
        if (jv_str_buf(c, &b, out) < 0) return -1;
        out->fl = seq.fl & JF_MARKUP;
        return 0;
    }
    uint64_t total;
    if (!ms_mul_u64(seq.l->n, (uint64_t)times, &total) || total * sizeof(jval) > c->opts.max_memory)
        return jx_fail_limit(c, at, "memory");
    if (jx_step(c, at, total) < 0 || jv_list(c, (uint32_t)total, seq.l->kind, out) < 0) return -1;
    for (int64_t i = 0; i < times; i++)
        for (uint32_t j = 0; j < seq.l->n; j++) jv_list_push(c, *out, jv_inc(seq.l->v[j]));
    return 0;
}

static int str_add(jctx *c, jval a, jval b, jval *out)
{
    bool markup = (a.fl | b.fl) & JF_MARKUP;
    jval ea = jv_inc(a), eb = jv_inc(b);
    if (markup) {
        jv_dec(c, ea);
        jv_dec(c, eb);
        if (jx_escape(c, a, &ea) < 0) return -1;
        if (jx_escape(c, b, &eb) < 0) {
            jv_dec(c, ea);
            return -1;
        }
    }
    jbuf buf = {0};
    int rc = jx_buf_put(c, &buf, ea.s->s, ea.s->len);
    if (rc == 0) rc = jx_buf_put(c, &buf, eb.s->s, eb.s->len);
    jv_dec(c, ea);
    jv_dec(c, eb);
    if (rc < 0 || jv_str_buf(c, &buf, out) < 0) {
        jx_buf_free(&buf);
        return -1;
    }
    out->fl = markup ? JF_MARKUP : 0;
    return 0;
}

static double py_floordiv(double x, double y, double *mod_out)
{
    double mod = fmod(x, y), div = (x - mod) / y, fd;
    if (mod) {
        if ((y < 0) != (mod < 0)) {
            mod += y;
            div -= 1.0;
        }
    } else {
        mod = copysign(0.0, y);
    }
    if (div) {
        fd = floor(div);
        if (div - fd > 0.5) fd += 1.0;
    } else {
        fd = copysign(0.0, x / y);
    }
    if (mod_out) *mod_out = mod;
    return fd;
}

int jx_binop(jctx *c, const jnode *at, int op, jval a, jval b, jval *out)
{
    static const char *const sym[] = {"", "+", "-", "*", "/", "//", "%", "**"};
    if (op == OP_MOD && a.t == JT_STR) return jx_percent_format(c, at, a, b, out); /* str % Undefined works */
    if (a.t == JT_UNDEF) return jx_undef_fail(c, at, a);
    if (b.t == JT_UNDEF) return jx_undef_fail(c, at, b);
    bool num = jv_is_num(a) && jv_is_num(b);
    bool ints = num && a.t != JT_FLOAT && b.t != JT_FLOAT;
    int64_t x = a.t == JT_BOOL ? a.b : a.i, y = b.t == JT_BOOL ? b.b : b.i, r;
    double fx = a.t == JT_FLOAT ? a.f : (double)x, fy = b.t == JT_FLOAT ? b.f : (double)y;
    switch (op) {
    case OP_ADD:
        if (ints) {
            if (__builtin_add_overflow(x, y, &r)) goto overflow;
            *out = jv_int(r);
            return 0;
        }
        if (num) {
            *out = jv_float(fx + fy);
            return 0;
        }
        if (a.t == JT_STR && b.t == JT_STR) return str_add(c, a, b, out);
        if (jv_is_seq(a) && jv_is_seq(b) && a.l->kind == b.l->kind) return concat_seq(c, at, a, b, out);
        if (a.t == JT_STR || a.t == JT_LIST)
            return jx_fail(c, at, "TypeError: can only concatenate %s (not \"%s\") to %s", jv_type_name(a),
                           jv_type_name(b), jv_type_name(a));
        return op_fail(c, at, "+", a, b);
    case OP_SUB:
        if (ints) {
            if (__builtin_sub_overflow(x, y, &r)) goto overflow;
            *out = jv_int(r);
            return 0;
        }
        if (num) {
            *out = jv_float(fx - fy);
            return 0;
        }
        return op_fail(c, at, "-", a, b);
    case OP_MUL:
        if (ints) {
            if (__builtin_mul_overflow(x, y, &r)) goto overflow;
            *out = jv_int(r);
            return 0;
        }
        if (num) {
            *out = jv_float(fx * fy);
            return 0;
        }
        if ((a.t == JT_STR || jv_is_seq(a)) && (b.t == JT_INT || b.t == JT_BOOL)) return repeat(c, at, a, y, out);
        if ((b.t == JT_STR || jv_is_seq(b)) && (a.t == JT_INT || a.t == JT_BOOL)) return repeat(c, at, b, x, out);
        if (a.t == JT_STR || jv_is_seq(a) || b.t == JT_STR || jv_is_seq(b))
            return jx_fail(c, at, "TypeError: can't multiply sequence by non-int of type '%s'",
                           jv_type_name(a.t == JT_STR || jv_is_seq(a) ? b : a));
        return op_fail(c, at, "*", a, b);
    case OP_DIV:
        if (!num) return op_fail(c, at, "/", a, b);
        if (fy == 0) return jx_fail(c, at, "ZeroDivisionError: division by zero");
        *out = jv_float(fx / fy);
        return 0;
    case OP_FLOORDIV:
    case OP_MOD:
        if (op == OP_MOD && a.t == JT_STR) return jx_percent_format(c, at, a, b, out);
        if (!num) return op_fail(c, at, sym[op], a, b);
        if (ints) {
            if (y == 0) return jx_fail(c, at, "ZeroDivisionError: integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) goto overflow;
            int64_t q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) {
                q--;
                m += y;
            }
            *out = jv_int(op == OP_MOD ? m : q);
            return 0;
        }
        if (fy == 0) return jx_fail(c, at, "ZeroDivisionError: float %s by zero", op == OP_MOD ? "modulo" : "floor division");
        {
            double m, q = py_floordiv(fx, fy, &m);
            *out = jv_float(op == OP_MOD ? m : q);
        }
        return 0;
    case OP_POW:
        if (!num) return op_fail(c, at, "** or pow()", a, b);
        if (ints && y >= 0) {
            int64_t acc = 1, base = x, e = y;
            while (e > 0) {
                if ((e & 1) && __builtin_mul_overflow(acc, base, &acc)) goto overflow;
                e >>= 1;
                if (e > 0 && __builtin_mul_overflow(base, base, &base)) goto overflow;
            }
            *out = jv_int(acc);
            return 0;
        }
        if (fx == 0 && fy < 0) return jx_fail(c, at, "ZeroDivisionError: 0.0 cannot be raised to a negative power");
        if (fx < 0 && fy != floor(fy)) return jx_fail(c, at, "complex results are not supported");
        *out = jv_float(pow(fx, fy));
        return 0;
    }
    return jx_fail(c, at, "internal: bad operator");
overflow:
    return jx_fail(c, at, "integer result of '%s' outside the 64-bit range (Python would use a big integer)", sym[op]);
}

bool jx_contains_ok(jctx *c, const jnode *at, jval needle, jval hay, bool *res)
{
    if (hay.t == JT_UNDEF) { /* Undefined iterates as empty */
        *res = false;
        return true;
    }
    if (hay.t == JT_STR) {
        if (needle.t != JT_STR) {
            jx_fail(c, at, "TypeError: 'in <string>' requires string as left operand, not %s", jv_type_name(needle));
            return false;
        }
        *res = needle.s->len == 0 || memmem(hay.s->s, hay.s->len, needle.s->s, needle.s->len) != NULL;
        return true;
    }
    if (hay.t == JT_LIST && hay.l->kind == LK_GEN) { /* consumes up to the match */
        *res = false;
        while (hay.l->pos < hay.l->n && !*res) *res = jv_eq(hay.l->v[hay.l->pos++], needle);
        if (!*res && hay.l->err) return jx_reraise(c, hay.l->err), false;
        return true;
    }
    if (hay.t == JT_LIST) {
        *res = false;
        for (uint32_t i = 0; i < hay.l->n && !*res; i++) *res = jv_eq(hay.l->v[i], needle);
        return jx_step(c, at, hay.l->n) == 0;
    }
    if (hay.t == JT_DICT) {
        if (!jv_hashable(needle)) {
            jx_fail(c, at, "TypeError: unhashable type: '%s'", jv_type_name(needle));
            return false;
        }
        jval v;
        *res = jv_dict_get(hay.d, needle, &v) == 0;
        return true;
    }
    jx_fail(c, at, "TypeError: argument of type '%s' is not iterable", jv_type_name(hay));
    return false;
}


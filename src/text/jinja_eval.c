/* jinja_eval.c - renders a parsed template (jinja_parse.c's AST): statements, scopes,
 * expressions, attribute/item lookup as the sandbox does it, calls of macros, call
 * blocks and recursive loops, and the public ms_jinja_render.
 *
 * Scopes follow what Jinja's compiled code does: the template body runs in one root
 * scope (whose parent holds the render variables; builtin globals come last); every
 * for-loop iteration, macro call, call-block body, with/filter/set block and {% block %}
 * gets a fresh child scope, so `set` inside them does not leak out while `if` shares
 * its scope; a macro sees its defining scope as it is when called (Python closures).
 * Namespaces are the only mutable values. Every node evaluation and loop iteration
 * costs a step; output, memory and call depth are bounded (ms_jinja_opts).
 */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"
#include "util.h"

enum { X_OK = 0, X_BREAK = 1, X_CONTINUE = 2, X_ERR = -1 };

static int exec_body(jctx *c, jnode *const *body, uint32_t n, jscope *s);

/* ---- scopes ----------------------------------------------------------------------------- */

static jscope *scope_new(jctx *c, jscope *parent)
{
    jscope *s = jv_obj_new(c, JO_SCOPE, sizeof *s);
    if (!s) return NULL;
    s->parent = parent;
    if (parent) jv_inc(jv_obj(parent));
    return s;
}

static void scope_drop(jctx *c, jscope *s)
{
    if (s) jv_dec(c, jv_obj(s));
}

/* set name (template-owned string) to v (takes the reference) */
static int scope_set(jctx *c, jscope *s, const char *name, jval v)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name)) {
            jv_dec(c, s->vals[i]);
            s->vals[i] = v;
            return 0;
        }
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 8;
        const char **nn = jx_alloc(c, cap * sizeof *nn);
        jval *nv = nn ? jx_alloc(c, cap * sizeof *nv) : NULL;
        if (!nv) {
            jx_free(c, nn, cap * sizeof *nn);
            jv_dec(c, v);
            return -1;
        }
        if (s->n) {
            memcpy(nn, s->names, s->n * sizeof *nn);
            memcpy(nv, s->vals, s->n * sizeof *nv);
        }
        jx_free(c, s->names, s->cap * sizeof *nn);
        jx_free(c, s->vals, s->cap * sizeof *nv);
        s->names = nn;
        s->vals = nv;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n++] = v;
    return 0;
}

/* set a name that is a render-time string (kept alive by the scope) */
static int scope_set_owned(jctx *c, jscope *s, jval name, jval v)
{
    jstr **o = jx_alloc(c, (s->n_owned + 1) * sizeof *o);
    if (!o) {
        jv_dec(c, v);
        return -1;
    }
    if (s->n_owned) memcpy(o, s->owned, s->n_owned * sizeof *o);
    jx_free(c, s->owned, s->n_owned * sizeof *o);
    s->owned = o;
    s->owned[s->n_owned++] = jv_inc(name).s;
    return scope_set(c, s, name.s->s, v);
}

/* names a frame starts with as undefined (jinja_scope.c) */
static int declare_undef(jctx *c, jscope *s, const char *const *names, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        bool have = false;
        for (uint32_t k = 0; k < s->n && !have; k++) have = !strcmp(s->names[k], names[i]);
        if (have) continue;
        jval u;
        if (jv_undef_hint(c, &u, "'%s' is undefined", names[i]) < 0 || scope_set(c, s, names[i], u) < 0) return -1;
    }
    return 0;
}

static bool scope_get(jscope *s, const char *name, jval *out)
{
    for (; s; s = s->parent)
        for (uint32_t i = s->n; i-- > 0;)
            if (!strcmp(s->names[i], name)) {
                *out = s->vals[i];
                return true;
            }
    return false;
}

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

static int do_slice(jctx *c, const jnode *at, jval obj, jval lo, jval hi, jval st, jval *out)
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

/* ---- calls --------------------------------------------------------------------------------- */

int jx_bind(jctx *c, const jnode *at, const char *fname, const char *const *params, uint32_t np, jval *args,
            uint32_t n, const char **kw, jval *kwv, uint32_t nkw, jval *out)
{
    if (n > np)
        return jx_fail(c, at, "TypeError: %s() takes at most %u argument%s (%u given)", fname, np, np == 1 ? "" : "s", n);
    for (uint32_t i = 0; i < np; i++) out[i] = i < n ? args[i] : (jval){.t = JT_UNDEF, .fl = JX_MISSING};
    for (uint32_t k = 0; k < nkw; k++) {
        uint32_t i = 0;
        while (i < np && strcmp(params[i], kw[k]) != 0) i++;
        if (i == np) return jx_fail(c, at, "TypeError: %s() got an unexpected keyword argument '%s'", fname, kw[k]);
        if (jx_given(out[i])) return jx_fail(c, at, "TypeError: %s() got multiple values for argument '%s'", fname, kw[k]);
        out[i] = kwv[k];
    }
    return 0;
}

static int call_macro(jctx *c, const jnode *at, jmacro *m, jval *args, uint32_t n, const char **kw, jval *kwv,
                      uint32_t nkw, jval *out)
{
    const jnode *d = m->def;
    const char *mname = m->is_caller ? "caller" : d->name;
    uint32_t np = d->n_names;
    if (n > np && !(d->flags & NF_VARARGS))
        return jx_fail(c, at, "TypeError: macro '%s' takes not more than %u argument(s)", mname, np);
    if (c->depth >= c->opts.max_depth) return jx_fail_limit(c, at, "call-depth");
    jscope *s = scope_new(c, m->closure);
    if (!s) return -1;
    jval kwargs = jv_none(), caller = jv_undef();
    if (declare_undef(c, s, d->undef, d->n_undef) < 0) {
        scope_drop(c, s);
        return -1;
    }
    bool *given = jx_alloc(c, np + 1);
    int rc = given ? 0 : -1;
    if (rc == 0 && (d->flags & NF_KWARGS)) rc = jv_dict(c, &kwargs);
    for (uint32_t i = 0; i < n && i < np && rc == 0; i++) {
        rc = scope_set(c, s, d->names[i], jv_inc(args[i]));
        given[i] = true;
    }
    for (uint32_t k = 0; k < nkw && rc == 0; k++) {
        uint32_t i = 0;
        while (i < np && strcmp(d->names[i], kw[k]) != 0) i++;
        if (i < np) {
            if (given[i]) rc = jx_fail(c, at, "TypeError: macro '%s' got multiple values for argument '%s'", mname, kw[k]);
            else {
                rc = scope_set(c, s, d->names[i], jv_inc(kwv[k]));
                given[i] = true;
            }
        } else if (!strcmp(kw[k], "caller") && (d->flags & NF_CALLER)) {
            jv_dec(c, caller);
            caller = jv_inc(kwv[k]);
        } else if (d->flags & NF_KWARGS) {
            jval key;
            rc = jv_strz(c, kw[k], &key);
            if (rc == 0) rc = jv_dict_set(c, kwargs.d, key, jv_inc(kwv[k]));
        } else {
            rc = jx_fail(c, at, "TypeError: macro '%s' takes no keyword argument '%s'", mname, kw[k]);
        }
    }
    /* defaults are evaluated in the macro's scope, after the earlier parameters */
    for (uint32_t i = 0; i < np && rc == 0; i++) {
        if (given[i]) continue;
        uint32_t first_def = np - d->n2;
        jval v;
        if (i >= first_def) rc = jx_eval(c, d->list2[i - first_def], s, &v);
        else rc = jv_undef_hint(c, &v, "parameter '%s' was not provided", d->names[i]);
        if (rc == 0) rc = scope_set(c, s, d->names[i], v);
    }
    if (rc == 0 && (d->flags & NF_VARARGS)) {
        jval va = jv_none();
        rc = jv_list(c, 0, LK_TUPLE, &va);
        for (uint32_t i = np; i < n && rc == 0; i++) rc = jv_list_push(c, va, jv_inc(args[i]));
        if (rc == 0) rc = scope_set(c, s, "varargs", va);
        else if (va.t == JT_LIST) jv_dec(c, va);
    }
    if (rc == 0 && (d->flags & NF_KWARGS)) {
        rc = scope_set(c, s, "kwargs", kwargs);
        kwargs = jv_none();
    }
    if (rc == 0 && (d->flags & NF_CALLER)) {
        if (caller.t == JT_UNDEF) rc = jv_undef_hint(c, &caller, "No caller defined");
        if (rc == 0) rc = scope_set(c, s, "caller", caller);
        caller = jv_none();
    }
    jx_free(c, given, np + 1);
    jv_dec(c, kwargs);
    jv_dec(c, caller);
    if (rc == 0) {
        jbuf buf = {0}, *saved = c->out;
        c->out = &buf;
        c->depth++;
        rc = exec_body(c, d->list, d->n, s) < 0 ? -1 : 0;
        c->depth--;
        c->out = saved;
        if (rc == 0) rc = jv_str_buf(c, &buf, out);
        else jx_buf_free(&buf);
    }
    scope_drop(c, s);
    return rc;
}

static int run_loop(jctx *c, const jnode *f, jscope *s, jval iter, int depth0, bool *iterated);

int jx_call(jctx *c, const jnode *at, jval fn, jval *args, uint32_t n, const char **kw, jval *kwv, uint32_t nkw,
            jval *out)
{
    if (jx_step(c, at, 1) < 0) return -1;
    if (fn.t == JT_UNDEF) return jx_undef_fail(c, at, fn);
    if (fn.t == JT_OBJ) {
        switch ((jokind)fn.o->kind) {
        case JO_MACRO: return call_macro(c, at, (jmacro *)fn.o, args, n, kw, kwv, nkw, out);
        case JO_FUNC: return jx_func_call(c, at, (jfunc *)fn.o, args, n, kw, kwv, nkw, out);
        case JO_LOOP: {
            jloop *l = (jloop *)fn.o;
            if (!(l->node->flags & NF_RECURSIVE))
                return jx_fail(c, at, "TypeError: Tried to call non recursive loop.  Maybe you forgot the 'recursive' modifier.");
            if (n != 1 || nkw) return jx_fail(c, at, "TypeError: loop() takes exactly one argument");
            if (c->depth >= c->opts.max_depth) return jx_fail_limit(c, at, "call-depth");
            jbuf buf = {0}, *saved = c->out;
            bool iterated;
            c->out = &buf;
            c->depth++;
            int rc = run_loop(c, l->node, l->scope, args[0], l->depth0 + 1, &iterated);
            c->depth--;
            c->out = saved;
            if (rc < 0) {
                jx_buf_free(&buf);
                return -1;
            }
            return jv_str_buf(c, &buf, out);
        }
        default: break;
        }
    }
    return jx_fail(c, at, "TypeError: '%s' object is not callable", jv_type_name(fn));
}

/* ---- expressions --------------------------------------------------------------------------- */

typedef struct callargs {
    jval *args, *kwv;
    const char **kw;
    uint32_t n, nkw;
    jval *store;       /* everything to release */
    uint32_t n_store;
    jstr **kwnames;    /* names from **kwargs (released with store) */
} callargs;

static void args_free(jctx *c, callargs *a)
{
    for (uint32_t i = 0; i < a->n; i++) jv_dec(c, a->args[i]);
    for (uint32_t i = 0; i < a->nkw; i++) jv_dec(c, a->kwv[i]);
    free(a->args);
    free(a->kwv);
    free(a->kw);
    jv_dec_n(c, a->store, a->n_store);
    free(a->store);
    *a = (callargs){0};
}

static int args_push(jctx *c, callargs *a, jval v, const char *kw)
{
    if (kw) {
        jval *nv = realloc(a->kwv, (a->nkw + 1) * sizeof *nv);
        const char **nk = nv ? realloc(a->kw, (a->nkw + 1) * sizeof *nk) : NULL;
        if (nv) a->kwv = nv;
        if (!nk) {
            jv_dec(c, v);
            return jx_fail(c, NULL, "out of memory");
        }
        a->kw = nk;
        a->kw[a->nkw] = kw;
        a->kwv[a->nkw++] = v;
        return 0;
    }
    jval *nv = realloc(a->args, (a->n + 1) * sizeof *nv);
    if (!nv) {
        jv_dec(c, v);
        return jx_fail(c, NULL, "out of memory");
    }
    a->args = nv;
    a->args[a->n++] = v;
    return 0;
}

static int eval_args(jctx *c, const jnode *e, jscope *s, callargs *a)
{
    *a = (callargs){0};
    for (uint32_t i = 0; i < e->n; i++) {
        jval v;
        if (jx_eval(c, e->list[i], s, &v) < 0 || args_push(c, a, v, NULL) < 0) return -1;
    }
    for (uint32_t i = 0; i < e->n2; i++) {
        jval v;
        if (jx_eval(c, e->list2[i], s, &v) < 0 || args_push(c, a, v, e->names[i]) < 0) return -1;
    }
    if (e->c) { /* *args */
        jval v, l;
        if (jx_eval(c, e->c, s, &v) < 0) return -1;
        int rc = jx_iter_list(c, e->c, v, &l);
        jv_dec(c, v);
        if (rc < 0) return -1;
        for (uint32_t i = 0; i < l.l->n && rc == 0; i++) rc = args_push(c, a, jv_inc(l.l->v[i]), NULL);
        jv_dec(c, l);
        if (rc < 0) return -1;
    }
    if (e->d) { /* **kwargs: the dict stays alive in store so its key strings do too */
        jval v;
        if (jx_eval(c, e->d, s, &v) < 0) return -1;
        jval *st = realloc(a->store, (a->n_store + 1) * sizeof *st);
        if (!st) {
            jv_dec(c, v);
            return jx_fail(c, e, "out of memory");
        }
        a->store = st;
        a->store[a->n_store++] = v;
        if (v.t != JT_DICT) return jx_fail(c, e->d, "TypeError: argument after ** must be a mapping, not %s", jv_type_name(v));
        for (uint32_t i = 0; i < v.d->n; i++) {
            if (v.d->k[i].t != JT_STR) return jx_fail(c, e->d, "TypeError: keywords must be strings");
            if (args_push(c, a, jv_inc(v.d->v[i]), v.d->k[i].s->s) < 0) return -1;
        }
    }
    return 0;
}

static int eval_filter(jctx *c, const jnode *e, jscope *s, jval input, jval *out)
{
    if ((int16_t)e->op < 0) return jx_fail(c, e, "No filter named '%s'.", e->name);
    callargs a;
    int rc = eval_args(c, e, s, &a);
    if (rc == 0) rc = jx_filter(c, e, (int16_t)e->op, input, a.args, a.n, a.kw, a.kwv, a.nkw, out);
    args_free(c, &a);
    return rc;
}

/* apply a chain of filters (innermost a == NULL) to v (borrowed) */
static int apply_filters(jctx *c, const jnode *f, jscope *s, jval v, jval *out)
{
    if (!f) {
        *out = jv_inc(v);
        return 0;
    }
    jval in;
    if (f->a) {
        if (apply_filters(c, f->a, s, v, &in) < 0) return -1;
    } else {
        in = jv_inc(v);
    }
    int rc = eval_filter(c, f, s, in, out);
    jv_dec(c, in);
    return rc;
}

static int eval_compare(jctx *c, const jnode *e, jscope *s, jval *out)
{
    jval left;
    if (jx_eval(c, e->a, s, &left) < 0) return -1;
    bool result = true;
    for (uint32_t i = 0; i < e->n && result; i++) {
        jval right;
        if (jx_eval(c, e->list[i], s, &right) < 0) {
            jv_dec(c, left);
            return -1;
        }
        int op = e->ops[i], r = 0;
        bool ok = true;
        switch (op) {
        case CMP_EQ: result = jv_eq(left, right); break;
        case CMP_NE: result = !jv_eq(left, right); break;
        case CMP_IN:
        case CMP_NOTIN:
            ok = jx_contains_ok(c, e, left, right, &result);
            if (op == CMP_NOTIN) result = !result;
            break;
        default: {
            static const char *const sym[] = {"", "", "", "<", "<=", ">", ">="};
            ok = jv_cmp(c, e, left, right, sym[op], &r) == 0;
            if (r == 2) result = false; /* NaN */
            else if (op == CMP_LT) result = r < 0;
            else if (op == CMP_LE) result = r <= 0;
            else if (op == CMP_GT) result = r > 0;
            else result = r >= 0;
        }
        }
        jv_dec(c, left);
        left = right;
        if (!ok) {
            jv_dec(c, left);
            return -1;
        }
    }
    jv_dec(c, left);
    *out = jv_bool(result);
    return 0;
}

static int eval_seq(jctx *c, const jnode *e, jscope *s, bool tuple, jval *out)
{
    if (jv_list(c, e->n, tuple ? LK_TUPLE : LK_LIST, out) < 0) return -1;
    for (uint32_t i = 0; i < e->n; i++) {
        jval v;
        if (jx_eval(c, e->list[i], s, &v) < 0) {
            jv_dec(c, *out);
            return -1;
        }
        jv_list_push(c, *out, v); /* preallocated */
    }
    return 0;
}

static int eval_inner(jctx *c, const jnode *e, jscope *s, jval *out)
{
    jval a, b;
    int rc;
    switch (e->kind) {
    case E_CONST: *out = e->cval; return 0;
    case E_NAME:
        if (scope_get(s, e->name, &a)) {
            *out = jv_inc(a);
            return 0;
        }
        rc = jx_global_lookup(c, e->name, out);
        if (rc != 0) return rc < 0 ? -1 : 0;
        return jv_undef_hint(c, out, "'%s' is undefined", e->name);
    case E_TUPLE:
    case E_LIST: return eval_seq(c, e, s, e->kind == E_TUPLE, out);
    case E_DICT: {
        jval d;
        if (jv_dict(c, &d) < 0) return -1;
        for (uint32_t i = 0; i < e->n; i++) {
            rc = jx_eval(c, e->list[i], s, &a);
            if (rc == 0 && !jv_hashable(a)) {
                rc = jx_fail(c, e->list[i], "TypeError: unhashable type: '%s'", jv_type_name(a));
                jv_dec(c, a);
            }
            if (rc == 0 && jx_eval(c, e->list2[i], s, &b) < 0) {
                jv_dec(c, a);
                rc = -1;
            }
            if (rc == 0) rc = jv_dict_set(c, d.d, a, b);
            if (rc < 0) {
                jv_dec(c, d);
                return -1;
            }
        }
        *out = d;
        return 0;
    }
    case E_GETATTR:
        if (jx_eval(c, e->a, s, &a) < 0) return -1;
        rc = jx_getattr(c, e, a, e->name, out);
        jv_dec(c, a);
        return rc;
    case E_GETITEM:
        if (jx_eval(c, e->a, s, &a) < 0) return -1;
        if (e->b->kind == E_SLICE) {
            jval p[3] = {jv_none(), jv_none(), jv_none()};
            const jnode *parts[3] = {e->b->a, e->b->b, e->b->c};
            rc = 0;
            for (int i = 0; i < 3 && rc == 0; i++)
                if (parts[i]) rc = jx_eval(c, parts[i], s, &p[i]);
            if (rc == 0) rc = do_slice(c, e, a, p[0], p[1], p[2], out);
            jv_dec_n(c, p, 3);
        } else {
            rc = jx_eval(c, e->b, s, &b);
            if (rc == 0) {
                rc = jx_getitem(c, e, a, b, out);
                jv_dec(c, b);
            }
        }
        jv_dec(c, a);
        return rc;
    case E_SLICE: return jx_fail(c, e, "slice outside a subscript");
    case E_CALL: {
        if (jx_eval(c, e->a, s, &a) < 0) return -1;
        callargs ca;
        rc = eval_args(c, e, s, &ca);
        if (rc == 0) rc = jx_call(c, e, a, ca.args, ca.n, ca.kw, ca.kwv, ca.nkw, out);
        args_free(c, &ca);
        jv_dec(c, a);
        return rc;
    }
    case E_FILTER:
        if (jx_eval(c, e->a, s, &a) < 0) return -1;
        rc = eval_filter(c, e, s, a, out);
        jv_dec(c, a);
        return rc;
    case E_TEST: {
        if ((int16_t)e->op < 0) return jx_fail(c, e, "No test named '%s'.", e->name);
        if (jx_eval(c, e->a, s, &a) < 0) return -1;
        callargs ca;
        bool r = false;
        rc = eval_args(c, e, s, &ca);
        if (rc == 0) rc = jx_test(c, e, (int16_t)e->op, a, ca.args, ca.n, ca.kw, ca.kwv, ca.nkw, &r);
        args_free(c, &ca);
        jv_dec(c, a);
        *out = jv_bool(r);
        return rc;
    }
    case E_NOT:
        if (jx_eval(c, e->a, s, &a) < 0) return -1;
        *out = jv_bool(!jv_truthy(a));
        jv_dec(c, a);
        return 0;
    case E_NEG:
    case E_POS:
        if (jx_eval(c, e->a, s, &a) < 0) return -1;
        if (a.t == JT_UNDEF) rc = jx_undef_fail(c, e, a);
        else if (a.t == JT_FLOAT) *out = jv_float(e->kind == E_NEG ? -a.f : a.f), rc = 0;
        else if (a.t == JT_INT || a.t == JT_BOOL) {
            int64_t v = a.t == JT_BOOL ? a.b : a.i;
            if (e->kind == E_NEG && v == INT64_MIN) rc = jx_fail(c, e, "integer result of '-' outside the 64-bit range");
            else *out = jv_int(e->kind == E_NEG ? -v : v), rc = 0;
        } else
            rc = jx_fail(c, e, "TypeError: bad operand type for unary %c: '%s'", e->kind == E_NEG ? '-' : '+', jv_type_name(a));
        jv_dec(c, a);
        return rc;
    case E_BINOP:
        if (jx_eval(c, e->a, s, &a) < 0) return -1;
        if (jx_eval(c, e->b, s, &b) < 0) {
            jv_dec(c, a);
            return -1;
        }
        rc = jx_binop(c, e, e->op, a, b, out);
        jv_dec(c, a);
        jv_dec(c, b);
        return rc;
    case E_AND:
    case E_OR:
        if (jx_eval(c, e->a, s, &a) < 0) return -1;
        if (jv_truthy(a) == (e->kind == E_OR)) {
            *out = a;
            return 0;
        }
        jv_dec(c, a);
        return jx_eval(c, e->b, s, out);
    case E_CONCAT: {
        jbuf buf = {0};
        for (uint32_t i = 0; i < e->n; i++) {
            if (jx_eval(c, e->list[i], s, &a) < 0) {
                jx_buf_free(&buf);
                return -1;
            }
            rc = jv_to_str(c, a, &buf);
            jv_dec(c, a);
            if (rc < 0) {
                jx_buf_free(&buf);
                return -1;
            }
        }
        return jv_str_buf(c, &buf, out);
    }
    case E_COMPARE: return eval_compare(c, e, s, out);
    case E_COND:
        if (jx_eval(c, e->a, s, &a) < 0) return -1;
        rc = jv_truthy(a);
        jv_dec(c, a);
        if (rc) return jx_eval(c, e->b, s, out);
        if (e->c) return jx_eval(c, e->c, s, out);
        return jv_undef_hint(c, out, "the inline if-expression on line %u evaluated to false and no else section was defined.",
                             e->line);
    case E_NSREF: return jx_fail(c, e, "namespace reference outside an assignment");
    default: return jx_fail(c, e, "internal: not an expression");
    }
}

int jx_eval(jctx *c, const jnode *e, jscope *s, jval *out)
{
    *out = jv_none();
    if (c->failed || jx_step(c, e, 1) < 0) return -1;
    int rc = eval_inner(c, e, s, out);
    if (rc < 0) {
        if (!c->failed) jx_fail(c, e, "evaluation failed");
        *out = jv_none();
    }
    return rc;
}

/* ---- statements ----------------------------------------------------------------------------- */

static int write_value(jctx *c, const jnode *at, jval v)
{
    if (c->autoescape && !(v.t == JT_STR && (v.fl & JF_MARKUP))) {
        jval e;
        if (jx_escape(c, v, &e) < 0) return -1;
        int rc = jx_buf_put(c, c->out, e.s->s, e.s->len);
        jv_dec(c, e);
        return rc;
    }
    if (v.t == JT_STR) return jx_buf_put(c, c->out, v.s->s, v.s->len);
    return jv_to_str(c, v, c->out);
}

static int assign(jctx *c, const jnode *t, jval v, jscope *s)
{
    if (t->kind == E_NAME) return scope_set(c, s, t->name, v);
    if (t->kind == E_NSREF) {
        jval ns;
        if (!scope_get(s, t->name, &ns) || !jv_is_obj(ns, JO_NS)) {
            jv_dec(c, v);
            return jx_fail(c, t, "TemplateRuntimeError: cannot assign attribute on non-namespace object");
        }
        jns *n = (jns *)ns.o;
        jval key;
        if (!n->d && jv_dict(c, &key) == 0) {
            n->d = key.d;
        }
        if (!n->d || jv_strz(c, t->text, &key) < 0) {
            jv_dec(c, v);
            return -1;
        }
        return jv_dict_set(c, n->d, key, v);
    }
    /* tuple unpacking */
    jval l;
    int rc = jx_iter_list(c, t, v, &l);
    jv_dec(c, v);
    if (rc < 0) return -1;
    if (l.l->n != t->n) {
        rc = l.l->n < t->n ? jx_fail(c, t, "ValueError: not enough values to unpack (expected %u, got %u)", t->n, l.l->n)
                           : jx_fail(c, t, "ValueError: too many values to unpack (expected %u)", t->n);
    }
    for (uint32_t i = 0; i < t->n && rc == 0; i++) rc = assign(c, t->list[i], jv_inc(l.l->v[i]), s);
    jv_dec(c, l);
    return rc;
}

/* render a frame's body into a string in a fresh scope */
static int capture(jctx *c, const jnode *f, jscope *parent, jval *out)
{
    jscope *s = scope_new(c, parent);
    if (!s) return -1;
    jbuf buf = {0}, *saved = c->out;
    c->out = &buf;
    int rc = declare_undef(c, s, f->undef, f->n_undef);
    if (rc == 0) rc = exec_body(c, f->list, f->n, s);
    c->out = saved;
    scope_drop(c, s);
    if (rc < 0) {
        jx_buf_free(&buf);
        return -1;
    }
    if (jv_str_buf(c, &buf, out) < 0) return -1;
    if (c->autoescape) out->fl = JF_MARKUP;
    return 0;
}

/* one for loop over iter (borrowed) in scope s; output goes to c->out */
static int run_loop(jctx *c, const jnode *f, jscope *s, jval iter, int depth0, bool *iterated)
{
    jval items;
    *iterated = false;
    if (jx_iter_list(c, f->b, iter, &items) < 0) return -1;
    int rc = 0;
    if (f->c) { /* for x in y if cond: filter first (loop.length counts what is left) */
        jval kept;
        if (jv_list(c, 0, LK_LIST, &kept) < 0) {
            jv_dec(c, items);
            return -1;
        }
        for (uint32_t i = 0; i < items.l->n && rc == 0; i++) {
            jscope *ts = scope_new(c, s);
            jval cond;
            rc = ts ? assign(c, f->a, jv_inc(items.l->v[i]), ts) : -1;
            if (rc == 0) rc = jx_eval(c, f->c, ts, &cond);
            if (rc == 0) {
                if (jv_truthy(cond)) rc = jv_list_push(c, kept, jv_inc(items.l->v[i]));
                jv_dec(c, cond);
            }
            scope_drop(c, ts);
        }
        jv_dec(c, items);
        items = kept;
        if (rc < 0) {
            jv_dec(c, items);
            return -1;
        }
    }
    jloop *lp = jv_obj_new(c, JO_LOOP, sizeof *lp);
    if (!lp) {
        jv_dec(c, items);
        return -1;
    }
    lp->items = items.l;
    lp->depth0 = depth0;
    lp->node = f;
    lp->scope = s;
    jv_inc(jv_obj(s));
    lp->last_changed = jv_none();
    for (uint32_t i = 0; i < items.l->n && rc == 0; i++) {
        if (jx_step(c, f, 1) < 0) {
            rc = -1;
            break;
        }
        lp->index0 = i;
        jscope *is = scope_new(c, s);
        if (!is) {
            rc = -1;
            break;
        }
        rc = declare_undef(c, is, f->undef, f->n_undef);
        if (rc == 0) rc = scope_set(c, is, "loop", jv_inc(jv_obj(lp)));
        if (rc == 0) rc = assign(c, f->a, jv_inc(items.l->v[i]), is);
        if (rc == 0) rc = exec_body(c, f->list, f->n, is);
        scope_drop(c, is);
        if (rc == X_OK) *iterated = true; /* Jinja's else runs unless some iteration ran to its end */
        if (rc == X_BREAK) {
            rc = 0;
            break;
        }
        if (rc == X_CONTINUE) rc = 0;
    }
    jv_dec(c, jv_obj(lp));
    return rc < 0 ? -1 : 0;
}

static int exec_stmt(jctx *c, const jnode *n, jscope *s)
{
    jval v, r;
    int rc;
    if (jx_step(c, n, 1) < 0) return -1;
    switch (n->kind) {
    case N_TEXT: return jx_buf_put(c, c->out, n->text, n->text_len);
    case N_OUTPUT:
        if (jx_eval(c, n->a, s, &v) < 0) return -1;
        if (n->op == 1 && v.t == JT_LIST) { /* {% print a, b %} */
            rc = 0;
            for (uint32_t i = 0; i < v.l->n && rc == 0; i++) rc = write_value(c, n, v.l->v[i]);
        } else {
            rc = write_value(c, n, v);
        }
        jv_dec(c, v);
        return rc;
    case N_IF:
        if (jx_eval(c, n->a, s, &v) < 0) return -1;
        rc = jv_truthy(v);
        jv_dec(c, v);
        return rc ? exec_body(c, n->list, n->n, s) : exec_body(c, n->list2, n->n2, s);
    case N_FOR: {
        bool iterated;
        if (jx_eval(c, n->b, s, &v) < 0) return -1;
        rc = run_loop(c, n, s, v, 0, &iterated);
        jv_dec(c, v);
        if (rc == 0 && !iterated && n->n2) {
            jscope *es = scope_new(c, s);
            rc = es ? declare_undef(c, es, n->undef2, n->n_undef2) : -1;
            if (rc == 0) rc = exec_body(c, n->list2, n->n2, es);
            scope_drop(c, es);
        }
        return rc;
    }
    case N_SET:
        if (jx_eval(c, n->b, s, &v) < 0) return -1;
        return assign(c, n->a, v, s);
    case N_SETBLOCK:
        if (capture(c, n, s, &v) < 0) return -1;
        rc = apply_filters(c, n->c, s, v, &r);
        jv_dec(c, v);
        return rc < 0 ? -1 : assign(c, n->a, r, s);
    case N_MACRO: {
        jmacro *m = jv_obj_new(c, JO_MACRO, sizeof *m);
        if (!m) return -1;
        m->def = n;
        m->closure = s;
        jv_inc(jv_obj(s));
        return scope_set(c, s, n->name, jv_obj(m));
    }
    case N_CALLBLOCK: {
        jmacro *m = jv_obj_new(c, JO_MACRO, sizeof *m);
        if (!m) return -1;
        m->def = n;
        m->closure = s;
        m->is_caller = true;
        jv_inc(jv_obj(s));
        const jnode *call = n->a;
        jval fn;
        callargs ca;
        if (jx_eval(c, call->a, s, &fn) < 0) {
            jv_dec(c, jv_obj(m));
            return -1;
        }
        rc = eval_args(c, call, s, &ca);
        if (rc == 0) rc = args_push(c, &ca, jv_obj(m), "caller");
        else jv_dec(c, jv_obj(m));
        if (rc == 0) rc = jx_call(c, call, fn, ca.args, ca.n, ca.kw, ca.kwv, ca.nkw, &v);
        args_free(c, &ca);
        jv_dec(c, fn);
        if (rc < 0) return -1;
        rc = write_value(c, n, v);
        jv_dec(c, v);
        return rc;
    }
    case N_FILTERBLOCK:
        if (capture(c, n, s, &v) < 0) return -1;
        rc = apply_filters(c, n->c, s, v, &r);
        jv_dec(c, v);
        if (rc < 0) return -1;
        rc = write_value(c, n, r);
        jv_dec(c, r);
        return rc;
    case N_WITH: {
        jscope *ws = scope_new(c, s);
        if (!ws || declare_undef(c, ws, n->undef, n->n_undef) < 0) {
            scope_drop(c, ws);
            return -1;
        }
        jval *vals = jx_alloc(c, (n->n3 + 1) * sizeof *vals);
        if (!vals) {
            scope_drop(c, ws);
            return -1;
        }
        uint32_t got = 0;
        rc = 0;
        while (got < n->n3 && rc == 0) {
            rc = jx_eval(c, n->list3[got], s, &vals[got]);
            if (rc == 0) got++;
        }
        for (uint32_t i = 0; i < got; i++) {
            if (rc == 0) rc = assign(c, n->list2[i], vals[i], ws);
            else jv_dec(c, vals[i]);
        }
        jx_free(c, vals, (n->n3 + 1) * sizeof *vals);
        if (rc == 0) rc = exec_body(c, n->list, n->n, ws);
        scope_drop(c, ws);
        return rc;
    }
    case N_BREAK: return X_BREAK;
    case N_CONTINUE: return X_CONTINUE;
    case N_SCOPE: {
        jscope *bs = scope_new(c, s);
        rc = bs ? declare_undef(c, bs, n->undef, n->n_undef) : -1;
        if (rc == 0) rc = exec_body(c, n->list, n->n, bs);
        scope_drop(c, bs);
        return rc < 0 ? -1 : rc;
    }
    case N_AUTOESCAPE: {
        if (jx_eval(c, n->a, s, &v) < 0) return -1;
        bool saved = c->autoescape;
        c->autoescape = jv_truthy(v);
        jv_dec(c, v);
        jscope *bs = scope_new(c, s);
        rc = bs ? declare_undef(c, bs, n->undef, n->n_undef) : -1;
        if (rc == 0) rc = exec_body(c, n->list, n->n, bs);
        scope_drop(c, bs);
        c->autoescape = saved;
        return rc;
    }
    case N_UNSUPPORTED: return jx_fail(c, n, "%s", n->text);
    default: return jx_fail(c, n, "internal: not a statement");
    }
}

static int exec_body(jctx *c, jnode *const *body, uint32_t n, jscope *s)
{
    for (uint32_t i = 0; i < n; i++) {
        int rc = exec_stmt(c, body[i], s);
        if (rc != X_OK) {
            if (rc < 0 && !c->failed) jx_fail(c, body[i], "evaluation failed");
            return rc;
        }
    }
    return X_OK;
}

/* ---- public: render ----------------------------------------------------------------------- */

int ms_jinja_render(const ms_jinja *t, json_object *vars, const ms_jinja_opts *opts, char **out, size_t *len,
                    ms_err *err)
{
    *out = NULL;
    if (len) *len = 0;
    ms_err local = {0};
    jctx c = {.t = t, .err = err ? err : &local};
    if (opts) c.opts = *opts;
    if (!c.opts.max_output) c.opts.max_output = 64ull << 20;
    if (!c.opts.max_steps) c.opts.max_steps = 50000000ull;
    if (!c.opts.max_memory) c.opts.max_memory = 256ull << 20;
    if (!c.opts.max_depth) c.opts.max_depth = 200;
    c.reg.next = c.reg.prev = &c.reg;
    jbuf buf = {0};
    c.out = &buf;
    int rc = 0;
    jscope *ctxs = scope_new(&c, NULL), *root = ctxs ? scope_new(&c, ctxs) : NULL;
    if (!root) rc = -1;
    if (rc == 0 && vars) {
        if (!json_object_is_type(vars, json_type_object)) {
            rc = jx_fail(&c, NULL, "template variables must be a JSON object");
        } else {
            json_object_object_foreach(vars, key, val)
            {
                jval k, v;
                if ((rc = jv_strz(&c, key, &k)) < 0) break;
                if ((rc = jv_from_json(&c, val, &v)) < 0) {
                    jv_dec(&c, k);
                    break;
                }
                rc = scope_set_owned(&c, ctxs, k, v);
                jv_dec(&c, k);
                if (rc < 0) break;
            }
        }
    }
    c.globals = ctxs;
    if (rc == 0) rc = declare_undef(&c, root, t->undef, t->n_undef);
    if (rc == 0) rc = exec_body(&c, t->body, t->n, root) < 0 ? -1 : 0;
    scope_drop(&c, root);
    scope_drop(&c, ctxs);
    jx_registry_clear(&c);
    if (rc < 0 || c.failed) {
        jx_buf_free(&buf);
        if (!c.err->code) ms_errf(c.err, EINVAL, "%s: render failed", t->name);
        return -c.err->code;
    }
    if (!buf.v) {
        buf.v = calloc(1, 1);
        if (!buf.v) return ms_errf(err, ENOMEM, "out of memory");
    }
    *out = buf.v;
    if (len) *len = buf.n;
    return 0;
}

/* jinja_eval.c - renders a parsed template (jinja_parse.c's AST): statements, scopes,
 * expressions, calls of macros, call blocks and recursive loops, and the public
 * ms_jinja_render (value operations are jinja_ops.c's).
 *
 * Scopes follow what Jinja's compiled code does: the template body runs in one root
 * scope (whose parent holds the render variables; builtin globals come last); every
 * for-loop iteration, macro call, call-block body, with/filter/set block and {% block %}
 * gets a fresh child scope, so `set` inside them does not leak out while `if` shares
 * its scope; a macro sees its defining scope as it is when called (Python closures);
 * names a frame assigns before reading start undefined (jinja_scope.c).
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
            if (rc == 0) rc = jx_slice(c, e, a, p[0], p[1], p[2], out);
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

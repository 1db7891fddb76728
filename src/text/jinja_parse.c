/* jinja_parse.c - tokens -> AST, following jinja2's parser (statements, operator
 * precedence, tuples, slices, call arguments, filters and tests), then a check pass
 * that does what Jinja's compiler rejects: unknown filters/tests outside if-statements
 * and inline ifs ("soft" frames, where they fail only when evaluated), break/continue
 * outside a loop; it also marks macros whose body uses varargs/kwargs/caller.
 *
 * Node layout (jinja_int.h's jnode):
 *   N_TEXT text            N_OUTPUT a=expr           N_IF a=test list=body list2=else
 *   N_FOR a=target b=iter c=filter-test list=body list2=else (NF_RECURSIVE)
 *   N_SET a=target b=value N_SETBLOCK a=target c=filters(innermost a=NULL) list=body
 *   N_MACRO name names=params list2=defaults(last n2 params) list=body
 *   N_CALLBLOCK a=call names/list2=params/defaults list=body
 *   N_FILTERBLOCK c=filters list=body   N_WITH list2=targets list3=values list=body
 *   N_SCOPE list=body (block, generation)   N_AUTOESCAPE a=expr list=body
 *   N_UNSUPPORTED text=message (include/import/extends: no loader, fails when reached)
 *   E_CONST cval  E_NAME name  E_NSREF name.text  E_TUPLE/E_LIST list  E_DICT list=keys list2=values
 *   E_GETATTR a.name  E_GETITEM a[b]  E_SLICE a:b:c  E_CALL a(list, names=list2, *c, **d)
 *   E_FILTER/E_TEST a|name(...) (op = id or -1)  E_NOT/E_NEG/E_POS a  E_BINOP op a b
 *   E_AND/E_OR a b  E_CONCAT list  E_COMPARE a ops[i] list[i]  E_COND b if a else c
 */
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"

#define MAX_NEST 100

typedef struct parser {
    ms_jinja *t;
    const jtok *tk;
    size_t n, i;
    ms_err *err;
    int depth;
    bool failed;
} parser;

typedef struct nvec {
    jnode **v;
    uint32_t n, cap;
} nvec;

static const jtok *cur(parser *p) { return &p->tk[p->i]; }
static const jtok *peek(parser *p) { return &p->tk[p->i + 1 < p->n ? p->i + 1 : p->i]; }
static const jtok *next(parser *p)
{
    const jtok *t = &p->tk[p->i];
    if (p->i + 1 < p->n) p->i++;
    return t;
}

static const char *describe(const jtok *t, char *buf, size_t len)
{
    static const char *const names[] = {
        [TK_EOF] = "end of template", [TK_DATA] = "template data", [TK_VAR_BEGIN] = "begin of print statement",
        [TK_VAR_END] = "end of print statement", [TK_BLOCK_BEGIN] = "begin of statement block",
        [TK_BLOCK_END] = "end of statement block", [TK_STRING] = "string", [TK_INT] = "integer", [TK_FLOAT] = "float",
        [TK_ADD] = "+", [TK_SUB] = "-", [TK_DIV] = "/", [TK_FLOORDIV] = "//", [TK_MUL] = "*", [TK_MOD] = "%",
        [TK_POW] = "**", [TK_TILDE] = "~", [TK_LBRACKET] = "[", [TK_RBRACKET] = "]", [TK_LPAREN] = "(",
        [TK_RPAREN] = ")", [TK_LBRACE] = "{", [TK_RBRACE] = "}", [TK_EQ] = "==", [TK_NE] = "!=", [TK_GT] = ">",
        [TK_GTEQ] = ">=", [TK_LT] = "<", [TK_LTEQ] = "<=", [TK_ASSIGN] = "=", [TK_DOT] = ".", [TK_COLON] = ":",
        [TK_PIPE] = "|", [TK_COMMA] = ",", [TK_SEMICOLON] = ";",
    };
    if (t->type == TK_NAME) snprintf(buf, len, "%s", t->s);
    else snprintf(buf, len, "%s", t->type < sizeof names / sizeof names[0] && names[t->type] ? names[t->type] : "?");
    return buf;
}

static void *fail_at(parser *p, uint32_t line, uint32_t col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void *fail_at(parser *p, uint32_t line, uint32_t col, const char *fmt, ...)
{
    if (p->failed) return NULL;
    p->failed = true;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ms_errf(p->err, EINVAL, "%s:%u:%u: %s", p->t->name, line, col, msg);
    return NULL;
}
#define FAIL(p, fmt, ...) fail_at((p), cur(p)->line, cur(p)->col, fmt, ##__VA_ARGS__)

static void *oom(parser *p)
{
    if (!p->failed) {
        p->failed = true;
        ms_errf(p->err, ENOMEM, "%s: out of memory", p->t->name);
    }
    return NULL;
}

static jnode *node(parser *p, int kind, const jtok *at)
{
    jnode *n = jx_arena_alloc(&p->t->arena, sizeof *n);
    if (!n) return oom(p);
    n->kind = (uint16_t)kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

static bool vpush(parser *p, nvec *v, jnode *x)
{
    if (!x) return false;
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 8;
        jnode **nv = realloc(v->v, cap * sizeof *nv);
        if (!nv) return oom(p), false;
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return true;
}

/* move a vector into the arena */
static jnode **vfinish(parser *p, nvec *v, uint32_t *n)
{
    jnode **out = NULL;
    *n = v->n;
    if (v->n) {
        out = jx_arena_alloc(&p->t->arena, v->n * sizeof *out);
        if (out) memcpy(out, v->v, v->n * sizeof *out);
        else oom(p);
    }
    free(v->v);
    *v = (nvec){0};
    return out;
}

static bool is_name(const jtok *t, const char *s) { return t->type == TK_NAME && !strcmp(t->s, s); }

static bool expect(parser *p, int type, const char *what)
{
    if (cur(p)->type == type) {
        next(p);
        return true;
    }
    char b[64];
    FAIL(p, "expected token '%s', got '%s'", what, describe(cur(p), b, sizeof b));
    return false;
}

static bool expect_name(parser *p, const char *name)
{
    if (is_name(cur(p), name)) {
        next(p);
        return true;
    }
    char b[64];
    FAIL(p, "expected token '%s', got '%s'", name, describe(cur(p), b, sizeof b));
    return false;
}

/* ---- expressions ---------------------------------------------------------------------- */

static jnode *parse_expression(parser *p, bool with_condexpr);
static jnode *parse_tuple(parser *p, bool simplified, bool with_condexpr, const char *const *extra_end,
                          bool explicit_parens, bool with_namespace);
static jnode *parse_primary(parser *p, bool with_namespace);
static jnode *parse_postfix(parser *p, jnode *n);
static jnode *parse_filter_expr(parser *p, jnode *n);
static jnode *parse_filter(parser *p, jnode *n, bool start_inline);

static bool enter(parser *p)
{
    if (++p->depth > MAX_NEST) {
        FAIL(p, "template nested too deeply (more than %d levels)", MAX_NEST);
        return false;
    }
    return true;
}

static jnode *const_node(parser *p, const jtok *at, jval v)
{
    jnode *n = node(p, E_CONST, at);
    if (n) n->cval = v;
    return n;
}

static jnode *parse_unary(parser *p, bool with_filter)
{
    if (!enter(p)) return NULL;
    const jtok *t = cur(p);
    jnode *n;
    if (t->type == TK_SUB || t->type == TK_ADD) {
        next(p);
        n = node(p, t->type == TK_SUB ? E_NEG : E_POS, t);
        if (n) n->a = parse_unary(p, false);
        if (n && !n->a) n = NULL;
    } else {
        n = parse_primary(p, false);
    }
    if (n) n = parse_postfix(p, n);
    if (n && with_filter) n = parse_filter_expr(p, n);
    p->depth--;
    return n;
}

static jnode *binop(parser *p, const jtok *at, int kind, int op, jnode *l, jnode *r)
{
    if (!l || !r) return NULL;
    jnode *n = node(p, kind, at);
    if (!n) return NULL;
    n->op = (uint16_t)op;
    n->a = l;
    n->b = r;
    return n;
}

static jnode *parse_pow(parser *p)
{
    jnode *l = parse_unary(p, true);
    while (l && cur(p)->type == TK_POW) {
        const jtok *at = next(p);
        l = binop(p, at, E_BINOP, OP_POW, l, parse_unary(p, true));
    }
    return l;
}

static jnode *parse_math2(parser *p)
{
    jnode *l = parse_pow(p);
    for (;;) {
        int ty = cur(p)->type;
        int op = ty == TK_MUL ? OP_MUL : ty == TK_DIV ? OP_DIV : ty == TK_FLOORDIV ? OP_FLOORDIV : ty == TK_MOD ? OP_MOD : 0;
        if (!l || !op) return l;
        const jtok *at = next(p);
        l = binop(p, at, E_BINOP, op, l, parse_pow(p));
    }
}

static jnode *parse_concat(parser *p)
{
    const jtok *at = cur(p);
    jnode *first = parse_math2(p);
    if (!first || cur(p)->type != TK_TILDE) return first;
    nvec v = {0};
    vpush(p, &v, first);
    while (cur(p)->type == TK_TILDE) {
        next(p);
        if (!vpush(p, &v, parse_math2(p))) {
            free(v.v);
            return NULL;
        }
    }
    jnode *n = node(p, E_CONCAT, at);
    if (!n) {
        free(v.v);
        return NULL;
    }
    n->list = vfinish(p, &v, &n->n);
    return n;
}

static jnode *parse_math1(parser *p)
{
    jnode *l = parse_concat(p);
    while (l && (cur(p)->type == TK_ADD || cur(p)->type == TK_SUB)) {
        const jtok *at = next(p);
        l = binop(p, at, E_BINOP, at->type == TK_ADD ? OP_ADD : OP_SUB, l, parse_concat(p));
    }
    return l;
}

static jnode *parse_compare(parser *p)
{
    const jtok *at = cur(p);
    jnode *first = parse_math1(p);
    if (!first) return NULL;
    nvec v = {0};
    uint8_t ops[64];
    for (;;) {
        int ty = cur(p)->type, op = 0;
        if (ty == TK_EQ) op = CMP_EQ;
        else if (ty == TK_NE) op = CMP_NE;
        else if (ty == TK_LT) op = CMP_LT;
        else if (ty == TK_LTEQ) op = CMP_LE;
        else if (ty == TK_GT) op = CMP_GT;
        else if (ty == TK_GTEQ) op = CMP_GE;
        else if (is_name(cur(p), "in")) op = CMP_IN;
        else if (is_name(cur(p), "not") && is_name(peek(p), "in")) op = CMP_NOTIN;
        if (!op) break;
        next(p);
        if (op == CMP_NOTIN) next(p);
        if (v.n >= sizeof ops) {
            free(v.v);
            return FAIL(p, "too many chained comparisons");
        }
        ops[v.n] = (uint8_t)op;
        if (!vpush(p, &v, parse_math1(p))) {
            free(v.v);
            return NULL;
        }
    }
    if (!v.n) return first;
    jnode *n = node(p, E_COMPARE, at);
    if (!n || !(n->ops = jx_arena_alloc(&p->t->arena, v.n))) {
        free(v.v);
        return oom(p);
    }
    memcpy(n->ops, ops, v.n);
    n->a = first;
    n->list = vfinish(p, &v, &n->n);
    return n;
}

static jnode *parse_not(parser *p)
{
    if (is_name(cur(p), "not")) {
        const jtok *at = next(p);
        if (!enter(p)) return NULL;
        jnode *inner = parse_not(p);
        p->depth--;
        if (!inner) return NULL;
        jnode *n = node(p, E_NOT, at);
        if (n) n->a = inner;
        return n;
    }
    return parse_compare(p);
}

static jnode *parse_and(parser *p)
{
    jnode *l = parse_not(p);
    while (l && is_name(cur(p), "and")) {
        const jtok *at = next(p);
        l = binop(p, at, E_AND, 0, l, parse_not(p));
    }
    return l;
}

static jnode *parse_or(parser *p)
{
    jnode *l = parse_and(p);
    while (l && is_name(cur(p), "or")) {
        const jtok *at = next(p);
        l = binop(p, at, E_OR, 0, l, parse_and(p));
    }
    return l;
}

static jnode *parse_condexpr(parser *p)
{
    const jtok *at = cur(p);
    jnode *e1 = parse_or(p);
    while (e1 && is_name(cur(p), "if")) {
        next(p);
        jnode *e2 = parse_or(p), *e3 = NULL;
        if (!e2) return NULL;
        if (is_name(cur(p), "else")) {
            next(p);
            if (!enter(p)) return NULL;
            e3 = parse_condexpr(p);
            p->depth--;
            if (!e3) return NULL;
        }
        jnode *n = node(p, E_COND, at);
        if (!n) return NULL;
        n->a = e2;
        n->b = e1;
        n->c = e3;
        e1 = n;
        at = cur(p);
    }
    return e1;
}

static jnode *parse_expression(parser *p, bool with_condexpr)
{
    return with_condexpr ? parse_condexpr(p) : parse_or(p);
}

static bool is_tuple_end(parser *p, const char *const *extra_end)
{
    int ty = cur(p)->type;
    if (ty == TK_VAR_END || ty == TK_BLOCK_END || ty == TK_RPAREN) return true;
    for (; extra_end && *extra_end; extra_end++)
        if (is_name(cur(p), *extra_end)) return true;
    return false;
}

static jnode *parse_tuple(parser *p, bool simplified, bool with_condexpr, const char *const *extra_end,
                          bool explicit_parens, bool with_namespace)
{
    const jtok *at = cur(p);
    nvec v = {0};
    bool is_tuple = false;
    for (;;) {
        if (v.n && !expect(p, TK_COMMA, ",")) goto bad;
        if (is_tuple_end(p, extra_end)) break;
        jnode *x = simplified ? parse_primary(p, with_namespace) : parse_expression(p, with_condexpr);
        if (!vpush(p, &v, x)) goto bad;
        if (cur(p)->type == TK_COMMA) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (v.n) {
            jnode *x = v.v[0];
            free(v.v);
            return x;
        }
        if (!explicit_parens) {
            char b[64];
            FAIL(p, "Expected an expression, got '%s'", describe(cur(p), b, sizeof b));
            goto bad;
        }
    }
    jnode *n = node(p, E_TUPLE, at);
    if (!n) goto bad;
    n->list = vfinish(p, &v, &n->n);
    return n;
bad:
    free(v.v);
    return NULL;
}

static jnode *parse_list_or_dict(parser *p, bool dict)
{
    const jtok *at = next(p);
    int close = dict ? TK_RBRACE : TK_RBRACKET;
    nvec k = {0}, v = {0};
    while (cur(p)->type != close) {
        if ((k.n || v.n) && !expect(p, TK_COMMA, ",")) goto bad;
        if (cur(p)->type == close) break;
        jnode *x = parse_expression(p, true);
        if (!x) goto bad;
        if (dict) {
            if (!vpush(p, &k, x) || !expect(p, TK_COLON, ":") || !vpush(p, &v, parse_expression(p, true))) goto bad;
        } else if (!vpush(p, &v, x)) {
            goto bad;
        }
    }
    if (!expect(p, close, dict ? "}" : "]")) goto bad;
    jnode *n = node(p, dict ? E_DICT : E_LIST, at);
    if (!n) goto bad;
    if (dict) {
        n->list = vfinish(p, &k, &n->n);
        n->list2 = vfinish(p, &v, &n->n2);
    } else {
        n->list = vfinish(p, &v, &n->n);
    }
    return n;
bad:
    free(k.v);
    free(v.v);
    return NULL;
}

static jnode *parse_primary(parser *p, bool with_namespace)
{
    const jtok *t = cur(p);
    char b[64];
    switch (t->type) {
    case TK_NAME:
        next(p);
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True")) return const_node(p, t, jv_bool(true));
        if (!strcmp(t->s, "false") || !strcmp(t->s, "False")) return const_node(p, t, jv_bool(false));
        if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) return const_node(p, t, jv_none());
        if (with_namespace && cur(p)->type == TK_DOT) {
            next(p);
            if (cur(p)->type != TK_NAME) return FAIL(p, "expected token 'name', got '%s'", describe(cur(p), b, sizeof b));
            jnode *n = node(p, E_NSREF, t);
            if (!n) return NULL;
            n->name = t->s;
            n->text = next(p)->s;
            return n;
        } else {
            jnode *n = node(p, E_NAME, t);
            if (n) n->name = t->s;
            return n;
        }
    case TK_STRING: {
        size_t total = 0, i = p->i;
        while (p->tk[i].type == TK_STRING) total += p->tk[i++].len;
        char *s = malloc(total + 1);
        if (!s) return oom(p);
        size_t o = 0;
        while (cur(p)->type == TK_STRING) {
            memcpy(s + o, cur(p)->s, cur(p)->len);
            o += cur(p)->len;
            next(p);
        }
        jval v;
        int rc = jv_str(NULL, s, o, &v);
        free(s);
        if (rc < 0) return oom(p);
        if (p->t->n_consts == p->t->cap_consts) {
            uint32_t cap = p->t->cap_consts ? p->t->cap_consts * 2 : 32;
            jval *c = realloc(p->t->consts, cap * sizeof *c);
            if (!c) {
                free(v.s);
                return oom(p);
            }
            p->t->consts = c;
            p->t->cap_consts = cap;
        }
        p->t->consts[p->t->n_consts++] = v;
        return const_node(p, t, v);
    }
    case TK_INT: next(p); return const_node(p, t, jv_int(t->i));
    case TK_FLOAT: next(p); return const_node(p, t, jv_float(t->f));
    case TK_LPAREN: {
        next(p);
        if (!enter(p)) return NULL;
        jnode *n = parse_tuple(p, false, true, NULL, true, false);
        p->depth--;
        if (!n || !expect(p, TK_RPAREN, ")")) return NULL;
        return n;
    }
    case TK_LBRACKET:
    case TK_LBRACE: {
        if (!enter(p)) return NULL;
        jnode *n = parse_list_or_dict(p, t->type == TK_LBRACE);
        p->depth--;
        return n;
    }
    default: return FAIL(p, "unexpected '%s'", describe(t, b, sizeof b));
    }
}

/* (args, kw=...) of a call, filter or test into n */
static bool parse_call_args(parser *p, jnode *n)
{
    const jtok *at = cur(p);
    if (!expect(p, TK_LPAREN, "(")) return false;
    nvec args = {0}, kwv = {0};
    const char **kwn = NULL;
    uint32_t nkw = 0;
    bool need_comma = false, ok = false;
    if (!enter(p)) return false;
    while (cur(p)->type != TK_RPAREN) {
        if (need_comma) {
            if (!expect(p, TK_COMMA, ",")) goto done;
            if (cur(p)->type == TK_RPAREN) break;
        }
        if (cur(p)->type == TK_MUL) {
            if (n->c || n->d) goto invalid;
            next(p);
            if (!(n->c = parse_expression(p, true))) goto done;
        } else if (cur(p)->type == TK_POW) {
            if (n->d) goto invalid;
            next(p);
            if (!(n->d = parse_expression(p, true))) goto done;
        } else if (cur(p)->type == TK_NAME && peek(p)->type == TK_ASSIGN) {
            if (n->d) goto invalid;
            const char *key = cur(p)->s;
            next(p);
            next(p);
            const char **nk = realloc(kwn, (nkw + 1) * sizeof *nk);
            if (!nk) {
                oom(p);
                goto done;
            }
            kwn = nk;
            kwn[nkw++] = key;
            if (!vpush(p, &kwv, parse_expression(p, true))) goto done;
        } else {
            if (n->c || n->d || nkw) goto invalid;
            if (!vpush(p, &args, parse_expression(p, true))) goto done;
        }
        need_comma = true;
    }
    if (!expect(p, TK_RPAREN, ")")) goto done;
    n->list = vfinish(p, &args, &n->n);
    n->list2 = vfinish(p, &kwv, &n->n2);
    if (nkw) {
        n->names = jx_arena_alloc(&p->t->arena, nkw * sizeof *n->names);
        if (!n->names) {
            oom(p);
            goto done;
        }
        memcpy(n->names, kwn, nkw * sizeof *kwn);
        n->n_names = nkw;
    }
    ok = !p->failed;
    goto done;
invalid:
    fail_at(p, at->line, at->col, "invalid syntax for function call expression");
done:
    p->depth--;
    free(args.v);
    free(kwv.v);
    free(kwn);
    return ok;
}

static jnode *parse_subscribed(parser *p)
{
    const jtok *at = cur(p);
    jnode *parts[3] = {NULL, NULL, NULL};
    if (cur(p)->type == TK_COLON) {
        next(p);
    } else {
        jnode *e = parse_expression(p, true);
        if (!e || cur(p)->type != TK_COLON) return e;
        next(p);
        parts[0] = e;
    }
    if (cur(p)->type != TK_COLON && cur(p)->type != TK_RBRACKET && cur(p)->type != TK_COMMA)
        if (!(parts[1] = parse_expression(p, true))) return NULL;
    if (cur(p)->type == TK_COLON) {
        next(p);
        if (cur(p)->type != TK_RBRACKET && cur(p)->type != TK_COMMA)
            if (!(parts[2] = parse_expression(p, true))) return NULL;
    }
    jnode *n = node(p, E_SLICE, at);
    if (!n) return NULL;
    n->a = parts[0];
    n->b = parts[1];
    n->c = parts[2];
    return n;
}

static jnode *parse_subscript(parser *p, jnode *obj)
{
    const jtok *t = next(p);
    char b[64];
    if (t->type == TK_DOT) {
        const jtok *a = next(p);
        if (a->type == TK_NAME) {
            jnode *n = node(p, E_GETATTR, t);
            if (!n) return NULL;
            n->a = obj;
            n->name = a->s;
            return n;
        }
        if (a->type != TK_INT) return fail_at(p, a->line, a->col, "expected name or number");
        jnode *n = node(p, E_GETITEM, t);
        if (!n) return NULL;
        n->a = obj;
        n->b = const_node(p, a, jv_int(a->i));
        return n->b ? n : NULL;
    }
    nvec v = {0};
    if (!enter(p)) return NULL;
    while (cur(p)->type != TK_RBRACKET) {
        if (v.n && !expect(p, TK_COMMA, ",")) goto bad;
        if (!vpush(p, &v, parse_subscribed(p))) goto bad;
        if (cur(p)->type == TK_EOF || cur(p)->type == TK_BLOCK_END || cur(p)->type == TK_VAR_END) {
            FAIL(p, "expected token ']', got '%s'", describe(cur(p), b, sizeof b));
            goto bad;
        }
    }
    p->depth--;
    if (!expect(p, TK_RBRACKET, "]")) goto bad2;
    jnode *n = node(p, E_GETITEM, t);
    if (!n) goto bad2;
    n->a = obj;
    if (v.n == 1) {
        n->b = v.v[0];
        free(v.v);
    } else {
        jnode *tu = node(p, E_TUPLE, t);
        if (!tu) goto bad2;
        tu->list = vfinish(p, &v, &tu->n);
        n->b = tu;
    }
    return n;
bad:
    p->depth--;
bad2:
    free(v.v);
    return NULL;
}

static jnode *parse_call(parser *p, jnode *fn)
{
    jnode *n = node(p, E_CALL, cur(p));
    if (!n) return NULL;
    n->a = fn;
    return parse_call_args(p, n) ? n : NULL;
}

static jnode *parse_postfix(parser *p, jnode *n)
{
    while (n) {
        int ty = cur(p)->type;
        if (ty == TK_DOT || ty == TK_LBRACKET) n = parse_subscript(p, n);
        else if (ty == TK_LPAREN) n = parse_call(p, n);
        else break;
    }
    return n;
}

/* a possibly dotted filter/test name */
static const char *parse_dotted(parser *p)
{
    char b[64];
    if (cur(p)->type != TK_NAME) return FAIL(p, "expected token 'name', got '%s'", describe(cur(p), b, sizeof b));
    const char *name = next(p)->s;
    while (cur(p)->type == TK_DOT) {
        next(p);
        if (cur(p)->type != TK_NAME) return FAIL(p, "expected token 'name', got '%s'", describe(cur(p), b, sizeof b));
        const char *part = next(p)->s;
        size_t l = strlen(name) + strlen(part) + 2;
        char *s = jx_arena_alloc(&p->t->arena, l);
        if (!s) return oom(p);
        snprintf(s, l, "%s.%s", name, part);
        name = s;
    }
    return name;
}

static jnode *parse_filter(parser *p, jnode *n, bool start_inline)
{
    while (cur(p)->type == TK_PIPE || start_inline) {
        if (!start_inline) next(p);
        start_inline = false;
        const jtok *at = cur(p);
        const char *name = parse_dotted(p);
        if (!name) return NULL;
        jnode *f = node(p, E_FILTER, at);
        if (!f) return NULL;
        f->a = n;
        f->name = name;
        f->op = (uint16_t)jx_filter_id(name);
        if (cur(p)->type == TK_LPAREN && !parse_call_args(p, f)) return NULL;
        n = f;
    }
    return n;
}

static jnode *parse_test(parser *p, jnode *n)
{
    const jtok *at = next(p); /* 'is' */
    bool negated = false;
    if (is_name(cur(p), "not")) {
        next(p);
        negated = true;
    }
    const char *name = parse_dotted(p);
    if (!name) return NULL;
    jnode *t = node(p, E_TEST, at);
    if (!t) return NULL;
    t->a = n;
    t->name = name;
    t->op = (uint16_t)jx_test_id(name);
    int ty = cur(p)->type;
    if (ty == TK_LPAREN) {
        if (!parse_call_args(p, t)) return NULL;
    } else if ((ty == TK_NAME || ty == TK_STRING || ty == TK_INT || ty == TK_FLOAT || ty == TK_LBRACKET ||
                ty == TK_LBRACE) &&
               !is_name(cur(p), "else") && !is_name(cur(p), "or") && !is_name(cur(p), "and")) {
        if (is_name(cur(p), "is")) return FAIL(p, "You cannot chain multiple tests with is");
        jnode *arg = parse_postfix(p, parse_primary(p, false));
        if (!arg) return NULL;
        t->list = jx_arena_alloc(&p->t->arena, sizeof *t->list);
        if (!t->list) return oom(p);
        t->list[0] = arg;
        t->n = 1;
    }
    if (!negated) return t;
    jnode *nn = node(p, E_NOT, at);
    if (nn) nn->a = t;
    return nn;
}

static jnode *parse_filter_expr(parser *p, jnode *n)
{
    while (n) {
        int ty = cur(p)->type;
        if (ty == TK_PIPE) n = parse_filter(p, n, false);
        else if (is_name(cur(p), "is")) n = parse_test(p, n);
        else if (ty == TK_LPAREN) n = parse_call(p, n);
        else break;
    }
    return n;
}

/* ---- statements ----------------------------------------------------------------------- */

static bool subparse(parser *p, const char *const *end, nvec *body);

/* body up to one of the end tags; leaves the end tag name as the current token
 * (drop_needle: consumed) */
static jnode **parse_statements(parser *p, const char *const *end, bool drop_needle, uint32_t *n)
{
    if (cur(p)->type == TK_COLON) next(p);
    if (!expect(p, TK_BLOCK_END, "end of statement block")) return NULL;
    nvec body = {0};
    if (!enter(p)) return NULL;
    bool ok = subparse(p, end, &body);
    p->depth--;
    if (!ok) {
        free(body.v);
        return NULL;
    }
    if (cur(p)->type == TK_EOF) {
        free(body.v);
        char want[256] = "";
        for (const char *const *e = end; *e; e++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s'%s'", e == end ? "" : " or ", *e);
        return FAIL(p, "Unexpected end of template. Jinja was looking for the following tags: %s.", want);
    }
    if (drop_needle) next(p);
    jnode **out = vfinish(p, &body, n);
    if (*n == 0 && !p->failed) out = jx_arena_alloc(&p->t->arena, sizeof(jnode *)); /* non-NULL: parsed */
    return p->failed ? NULL : out;
}

static jnode *parse_assign_target(parser *p, bool with_tuple, bool name_only, const char *const *extra_end,
                                  bool with_namespace)
{
    char b[64];
    jnode *t;
    if (name_only) {
        if (cur(p)->type != TK_NAME) return FAIL(p, "expected token 'name', got '%s'", describe(cur(p), b, sizeof b));
        const jtok *tk = next(p);
        t = node(p, E_NAME, tk);
        if (t) t->name = tk->s;
        return t;
    }
    const jtok *at = cur(p);
    t = with_tuple ? parse_tuple(p, true, true, extra_end, false, with_namespace) : parse_primary(p, with_namespace);
    if (!t) return NULL;
    bool ok = t->kind == E_NAME || t->kind == E_NSREF;
    if (t->kind == E_TUPLE) {
        ok = true;
        for (uint32_t i = 0; i < t->n; i++) ok &= t->list[i]->kind == E_NAME || t->list[i]->kind == E_NSREF;
    }
    if (!ok)
        return fail_at(p, at->line, at->col, "can't assign to '%s'",
                       t->kind == E_CONST ? "const" : t->kind == E_TUPLE ? "tuple" : "expression");
    return t;
}

static bool parse_signature(parser *p, jnode *n)
{
    if (!expect(p, TK_LPAREN, "(")) return false;
    const char *names[256];
    nvec defs = {0};
    uint32_t np = 0;
    while (cur(p)->type != TK_RPAREN) {
        if (np && !expect(p, TK_COMMA, ",")) goto bad;
        jnode *a = parse_assign_target(p, false, true, NULL, false);
        if (!a) goto bad;
        if (np == 256) {
            FAIL(p, "too many macro arguments");
            goto bad;
        }
        if (cur(p)->type == TK_ASSIGN) {
            next(p);
            if (!vpush(p, &defs, parse_expression(p, true))) goto bad;
        } else if (defs.n) {
            FAIL(p, "non-default argument follows default argument");
            goto bad;
        }
        names[np++] = a->name;
    }
    if (!expect(p, TK_RPAREN, ")")) goto bad;
    n->names = jx_arena_alloc(&p->t->arena, (np ? np : 1) * sizeof *n->names);
    if (!n->names) {
        oom(p);
        goto bad;
    }
    memcpy(n->names, names, np * sizeof *names);
    n->n_names = np;
    n->list2 = vfinish(p, &defs, &n->n2);
    return !p->failed;
bad:
    free(defs.v);
    return false;
}

static const char *const END_FOR[] = {"endfor", "else", NULL}, *const END_FOR2[] = {"endfor", NULL},
                        *const END_IF[] = {"elif", "else", "endif", NULL}, *const END_IF2[] = {"endif", NULL},
                        *const END_SET[] = {"endset", NULL}, *const END_MACRO[] = {"endmacro", NULL},
                        *const END_CALL[] = {"endcall", NULL}, *const END_FILTER[] = {"endfilter", NULL},
                        *const END_WITH[] = {"endwith", NULL}, *const END_BLOCK[] = {"endblock", NULL},
                        *const END_GEN[] = {"endgeneration", NULL}, *const END_AUTOESC[] = {"endautoescape", NULL},
                        *const IN_END[] = {"in", NULL}, *const REC_END[] = {"recursive", NULL};

static jnode *parse_for(parser *p, const jtok *at)
{
    jnode *n = node(p, N_FOR, at);
    if (!n) return NULL;
    if (!(n->a = parse_assign_target(p, true, false, IN_END, false)) || !expect_name(p, "in")) return NULL;
    if (!(n->b = parse_tuple(p, false, false, REC_END, false, false))) return NULL;
    if (is_name(cur(p), "if")) {
        next(p);
        if (!(n->c = parse_expression(p, true))) return NULL;
    }
    if (is_name(cur(p), "recursive")) {
        next(p);
        n->flags |= NF_RECURSIVE;
    }
    if (!(n->list = parse_statements(p, END_FOR, false, &n->n))) return NULL;
    if (!strcmp(next(p)->s, "else") && !(n->list2 = parse_statements(p, END_FOR2, true, &n->n2))) return NULL;
    return n;
}

static jnode *parse_if(parser *p, const jtok *at)
{
    jnode *top = node(p, N_IF, at), *n = top;
    while (n) {
        if (!(n->a = parse_tuple(p, false, false, NULL, false, false))) return NULL;
        if (!(n->list = parse_statements(p, END_IF, false, &n->n))) return NULL;
        const jtok *t = next(p);
        if (!strcmp(t->s, "elif")) {
            jnode *e = node(p, N_IF, cur(p));
            if (!e || !(n->list2 = jx_arena_alloc(&p->t->arena, sizeof(jnode *)))) return NULL;
            e->flags |= NF_ELIF;
            n->list2[0] = e;
            n->n2 = 1;
            n = e;
            continue;
        }
        if (!strcmp(t->s, "else") && !(n->list2 = parse_statements(p, END_IF2, true, &n->n2))) return NULL;
        break;
    }
    return top;
}

static jnode *parse_set(parser *p, const jtok *at)
{
    jnode *target = parse_assign_target(p, true, false, NULL, true);
    if (!target) return NULL;
    if (cur(p)->type == TK_ASSIGN) {
        next(p);
        jnode *n = node(p, N_SET, at);
        if (!n || !(n->b = parse_tuple(p, false, true, NULL, false, false))) return NULL;
        n->a = target;
        return n;
    }
    jnode *n = node(p, N_SETBLOCK, at);
    if (!n) return NULL;
    n->a = target;
    if (cur(p)->type == TK_PIPE && !(n->c = parse_filter(p, NULL, false))) return NULL;
    return (n->list = parse_statements(p, END_SET, true, &n->n)) ? n : NULL;
}

/* skip the rest of an include/import/extends/from tag: they need a template loader */
static jnode *parse_unsupported(parser *p, const jtok *at, const char *what)
{
    while (cur(p)->type != TK_BLOCK_END && cur(p)->type != TK_EOF) next(p);
    jnode *n = node(p, N_UNSUPPORTED, at);
    if (!n) return NULL;
    char msg[160];
    snprintf(msg, sizeof msg, "TypeError: no loader for this environment specified ({%% %s %%} needs one)", what);
    n->text = jx_arena_strdup(&p->t->arena, msg, strlen(msg));
    return n->text ? n : oom(p);
}

static jnode *parse_statement(parser *p)
{
    const jtok *t = cur(p);
    char b[64];
    if (t->type != TK_NAME) return FAIL(p, "tag name expected");
    const char *k = t->s;
    next(p);
    jnode *n;
    if (!strcmp(k, "for")) return parse_for(p, t);
    if (!strcmp(k, "if")) return parse_if(p, t);
    if (!strcmp(k, "set")) return parse_set(p, t);
    if (!strcmp(k, "macro")) {
        if (!(n = node(p, N_MACRO, t))) return NULL;
        jnode *name = parse_assign_target(p, false, true, NULL, false);
        if (!name || !parse_signature(p, n)) return NULL;
        n->name = name->name;
        return (n->list = parse_statements(p, END_MACRO, true, &n->n)) ? n : NULL;
    }
    if (!strcmp(k, "call")) {
        if (!(n = node(p, N_CALLBLOCK, t))) return NULL;
        if (cur(p)->type == TK_LPAREN) {
            if (!parse_signature(p, n)) return NULL;
        } else if (!(n->names = jx_arena_alloc(&p->t->arena, sizeof *n->names))) {
            return oom(p);
        }
        if (!(n->a = parse_expression(p, true))) return NULL;
        if (n->a->kind != E_CALL) return fail_at(p, t->line, t->col, "expected call");
        return (n->list = parse_statements(p, END_CALL, true, &n->n)) ? n : NULL;
    }
    if (!strcmp(k, "filter")) {
        if (!(n = node(p, N_FILTERBLOCK, t)) || !(n->c = parse_filter(p, NULL, true))) return NULL;
        return (n->list = parse_statements(p, END_FILTER, true, &n->n)) ? n : NULL;
    }
    if (!strcmp(k, "with")) {
        if (!(n = node(p, N_WITH, t))) return NULL;
        nvec tg = {0}, vals = {0};
        while (cur(p)->type != TK_BLOCK_END) {
            if (tg.n && !expect(p, TK_COMMA, ",")) goto with_bad;
            if (!vpush(p, &tg, parse_assign_target(p, true, false, NULL, false)) || !expect(p, TK_ASSIGN, "=") ||
                !vpush(p, &vals, parse_expression(p, true)))
                goto with_bad;
        }
        n->list2 = vfinish(p, &tg, &n->n2);
        n->list3 = vfinish(p, &vals, &n->n3);
        return (n->list = parse_statements(p, END_WITH, true, &n->n)) ? n : NULL;
    with_bad:
        free(tg.v);
        free(vals.v);
        return NULL;
    }
    if (!strcmp(k, "block")) {
        if (!(n = node(p, N_SCOPE, t))) return NULL;
        if (cur(p)->type != TK_NAME) return FAIL(p, "expected token 'name', got '%s'", describe(cur(p), b, sizeof b));
        n->name = next(p)->s;
        if (is_name(cur(p), "scoped")) next(p);
        if (is_name(cur(p), "required")) next(p);
        if (cur(p)->type == TK_SUB) return FAIL(p, "Block names in Jinja have to be valid Python identifiers");
        if (!(n->list = parse_statements(p, END_BLOCK, true, &n->n))) return NULL;
        if (is_name(cur(p), n->name)) next(p);
        return n;
    }
    if (!strcmp(k, "generation")) {
        if (!(n = node(p, N_SCOPE, t))) return NULL;
        return (n->list = parse_statements(p, END_GEN, true, &n->n)) ? n : NULL;
    }
    if (!strcmp(k, "print")) {
        nvec v = {0};
        while (cur(p)->type != TK_BLOCK_END) {
            if (v.n && !expect(p, TK_COMMA, ",")) break;
            if (!vpush(p, &v, parse_expression(p, true))) break;
        }
        if (p->failed || !(n = node(p, N_SCOPE, t))) {
            free(v.v);
            return NULL;
        }
        /* a body of outputs, run in the current scope */
        n->kind = N_OUTPUT;
        if (v.n == 1) {
            n->a = v.v[0];
            free(v.v);
        } else {
            jnode *tu = node(p, E_TUPLE, t);
            if (!tu) {
                free(v.v);
                return NULL;
            }
            tu->list = vfinish(p, &v, &tu->n);
            n->a = tu;
            n->op = 1; /* print each */
        }
        return n;
    }
    if (!strcmp(k, "autoescape")) {
        if (!(n = node(p, N_AUTOESCAPE, t)) || !(n->a = parse_expression(p, true))) return NULL;
        return (n->list = parse_statements(p, END_AUTOESC, true, &n->n)) ? n : NULL;
    }
    if (!strcmp(k, "break") || !strcmp(k, "continue")) return node(p, k[0] == 'b' ? N_BREAK : N_CONTINUE, t);
    if (!strcmp(k, "include") || !strcmp(k, "import") || !strcmp(k, "from") || !strcmp(k, "extends"))
        return parse_unsupported(p, t, k);
    return fail_at(p, t->line, t->col, "Encountered unknown tag '%s'.", k);
}

static bool subparse(parser *p, const char *const *end, nvec *body)
{
    for (;;) {
        const jtok *t = cur(p);
        if (t->type == TK_EOF) return true;
        if (t->type == TK_DATA) {
            jnode *n = node(p, N_TEXT, t);
            if (!n) return false;
            n->text = t->s;
            n->text_len = t->len;
            next(p);
            if (!vpush(p, body, n)) return false;
        } else if (t->type == TK_VAR_BEGIN) {
            next(p);
            jnode *n = node(p, N_OUTPUT, t);
            if (!n || !(n->a = parse_tuple(p, false, true, NULL, false, false))) return false;
            if (!expect(p, TK_VAR_END, "end of print statement") || !vpush(p, body, n)) return false;
        } else if (t->type == TK_BLOCK_BEGIN) {
            next(p);
            for (const char *const *e = end; e && *e; e++)
                if (is_name(cur(p), *e)) return true;
            jnode *n = parse_statement(p);
            if (!n || !vpush(p, body, n) || !expect(p, TK_BLOCK_END, "end of statement block")) return false;
        } else {
            char b[64];
            FAIL(p, "unexpected '%s'", describe(t, b, sizeof b));
            return false;
        }
    }
}

/* ---- check pass ----------------------------------------------------------------------- */

typedef struct check {
    parser *p;
    jnode *macro; /* innermost macro/call-block being checked (usage flags) */
} check;

static bool chk(check *k, jnode *n, bool soft, bool in_loop);

static bool chk_list(check *k, jnode **l, uint32_t n, bool soft, bool in_loop)
{
    for (uint32_t i = 0; i < n; i++)
        if (!chk(k, l[i], soft, in_loop)) return false;
    return true;
}

static bool chk(check *k, jnode *n, bool soft, bool in_loop)
{
    if (!n) return true;
    parser *p = k->p;
    switch (n->kind) {
    case E_FILTER:
    case E_TEST:
        if ((int16_t)n->op < 0) {
            if (!soft)
                return fail_at(p, n->line, n->col, "No %s named '%s'.", n->kind == E_FILTER ? "filter" : "test", n->name),
                       false;
            n->flags |= NF_SOFT;
        }
        break;
    case E_NAME:
        if (k->macro) {
            if (!strcmp(n->name, "varargs")) k->macro->flags |= NF_VARARGS;
            else if (!strcmp(n->name, "kwargs")) k->macro->flags |= NF_KWARGS;
            else if (!strcmp(n->name, "caller")) k->macro->flags |= NF_CALLER;
        }
        return true;
    case E_COND: soft = true; break;
    case N_BREAK:
    case N_CONTINUE:
        if (!in_loop)
            return fail_at(p, n->line, n->col, "SyntaxError: '%s' outside loop", n->kind == N_BREAK ? "break" : "continue"),
                   false;
        return true;
    case N_IF:
        return chk(k, n->a, true, in_loop) && chk_list(k, n->list, n->n, true, in_loop) &&
               chk_list(k, n->list2, n->n2, true, in_loop);
    case N_FOR:
        return chk(k, n->a, false, false) && chk(k, n->b, soft, in_loop) && chk(k, n->c, false, false) &&
               chk_list(k, n->list, n->n, false, true) && chk_list(k, n->list2, n->n2, false, in_loop);
    case N_MACRO:
    case N_CALLBLOCK: {
        if (n->kind == N_CALLBLOCK && !chk(k, n->a, soft, in_loop)) return false;
        jnode *outer = k->macro;
        k->macro = n;
        bool ok = chk_list(k, n->list2, n->n2, false, false) && chk_list(k, n->list, n->n, false, false);
        k->macro = outer;
        if (outer) outer->flags |= n->flags & (NF_VARARGS | NF_KWARGS | NF_CALLER);
        return ok;
    }
    case N_SCOPE: return chk_list(k, n->list, n->n, false, false);
    case N_SETBLOCK:
    case N_FILTERBLOCK:
        return chk(k, n->a, false, in_loop) && chk(k, n->c, false, in_loop) && chk_list(k, n->list, n->n, false, in_loop);
    case N_WITH:
        return chk_list(k, n->list3, n->n3, soft, in_loop) && chk_list(k, n->list2, n->n2, false, in_loop) &&
               chk_list(k, n->list, n->n, false, in_loop);
    case N_AUTOESCAPE: return chk(k, n->a, soft, in_loop) && chk_list(k, n->list, n->n, false, in_loop);
    default: break;
    }
    return chk(k, n->a, soft, in_loop) && chk(k, n->b, soft, in_loop) && chk(k, n->c, soft, in_loop) &&
           chk(k, n->d, soft, in_loop) && chk_list(k, n->list, n->n, soft, in_loop) &&
           chk_list(k, n->list2, n->n2, soft, in_loop) && chk_list(k, n->list3, n->n3, soft, in_loop);
}

int jx_parse(ms_jinja *t, const jtok *toks, size_t n, ms_err *err)
{
    parser p = {.t = t, .tk = toks, .n = n, .err = err};
    nvec body = {0};
    if (!subparse(&p, NULL, &body) || p.failed) {
        free(body.v);
        if (!p.failed) ms_errf(err, EINVAL, "%s: parse error", t->name);
        return -1;
    }
    t->body = vfinish(&p, &body, &t->n);
    check k = {.p = &p};
    if (p.failed || !chk_list(&k, t->body, t->n, false, false)) return -1;
    return jx_analyze_scopes(t, err);
}

/* ---- public: parse / free ------------------------------------------------------------- */

int ms_jinja_parse(const char *src, size_t len, const char *name, ms_jinja **out, ms_err *err)
{
    *out = NULL;
    ms_jinja *t = calloc(1, sizeof *t);
    if (!t) return ms_errf(err, ENOMEM, "out of memory");
    snprintf(t->name, sizeof t->name, "%s", name && *name ? name : "template");
    jtok *toks = NULL;
    size_t nt = 0;
    int rc = jx_lex(src, len, t->name, &t->arena, &toks, &nt, err);
    if (rc == 0) rc = jx_parse(t, toks, nt, err);
    free(toks);
    if (rc < 0) {
        ms_jinja_free(t);
        return err && err->code ? -err->code : -EINVAL;
    }
    *out = t;
    return 0;
}

void ms_jinja_free(ms_jinja *t)
{
    if (!t) return;
    for (uint32_t i = 0; i < t->n_consts; i++) free(t->consts[i].s);
    free(t->consts);
    jx_arena_free(&t->arena);
    free(t);
}

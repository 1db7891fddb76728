/* jinja_value.c - values of the Jinja renderer (see jinja_int.h): the render context's
 * errors, limits and memory accounting; refcounted strings, lists, ordered dicts and
 * registered objects; Python's str()/repr() (float repr = shortest round trip,
 * quoting as CPython does), equality, ordering and hashing with Python's numeric
 * tower (True == 1 == 1.0), UTF-8 helpers. JSON in and out is jinja_json.c's.
 *
 * Releasing a value never recurses: a value whose count drops to zero is pushed on a
 * pending stack that one loop drains, so a deeply nested value cannot overflow the C
 * stack. Walks that must recurse (repr, JSON, equality) stop at JX_MAX_NEST levels.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "jinja_int.h"

/* ---- errors, steps, memory, buffers ------------------------------------------------ */

int jx_fail(jctx *c, const jnode *at, const char *fmt, ...)
{
    if (c->failed) return -1;
    c->failed = true;
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at)
        ms_errf(c->err, EINVAL, "%s:%u:%u: %s", c->t->name, at->line, at->col, msg);
    else
        ms_errf(c->err, EINVAL, "%s: %s", c->t->name, msg);
    return -1;
}

int jx_fail_limit(jctx *c, const jnode *at, const char *what)
{
    if (c->failed) return -1;
    jx_fail(c, at, "template exceeds the %s limit", what);
    if (c->err) c->err->code = E2BIG;
    return -1;
}

int jx_catch(jctx *c, jstr **msg)
{
    if (!c->failed || c->err->code != EINVAL || c->raised) return 0;
    char tmp[sizeof c->err->msg];
    memcpy(tmp, c->err->msg, sizeof tmp);
    c->failed = false;
    ms_err_clear(c->err);
    jval s;
    if (jv_strz(c, tmp, &s) < 0) return 0;
    *msg = s.s;
    return 1;
}

int jx_reraise(jctx *c, const jstr *msg)
{
    if (c->failed) return -1;
    c->failed = true;
    ms_errf(c->err, EINVAL, "%s", msg->s);
    return -1;
}

int jx_step(jctx *c, const jnode *at, uint64_t n)
{
    c->steps += n;
    if (c->steps > c->opts.max_steps) return jx_fail_limit(c, at, "evaluation-step");
    return 0;
}

void *jx_alloc(jctx *c, size_t n)
{
    if (c) {
        if (c->failed) return NULL;
        if (n > c->opts.max_memory || c->mem + n > c->opts.max_memory) {
            jx_fail_limit(c, NULL, "memory");
            return NULL;
        }
    }
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        if (c && !c->failed) {
            c->failed = true;
            ms_errf(c->err, ENOMEM, "%s: out of memory", c->t->name);
        }
        return NULL;
    }
    if (c) c->mem += n;
    return p;
}

void jx_free(jctx *c, void *p, size_t n)
{
    if (!p) return;
    if (c) c->mem -= n;
    free(p);
}

int jx_buf_put(jctx *c, jbuf *b, const char *s, size_t n)
{
    if (n == 0) return 0;
    if (c->failed) return -1;
    c->out_total += n;
    if (c->out_total > c->opts.max_output) return jx_fail_limit(c, NULL, "output-size");
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *v = realloc(b->v, cap);
        if (!v) {
            c->failed = true;
            return ms_errf(c->err, ENOMEM, "%s: out of memory", c->t->name), -1;
        }
        b->v = v;
        b->cap = cap;
    }
    memcpy(b->v + b->n, s, n);
    b->n += n;
    b->v[b->n] = 0;
    return 0;
}

int jx_buf_putc(jctx *c, jbuf *b, char ch) { return jx_buf_put(c, b, &ch, 1); }

void jx_buf_free(jbuf *b)
{
    free(b->v);
    *b = (jbuf){0};
}

/* ---- UTF-8 and Python character classes ---------------------------------------------- */

uint32_t jx_utf8_next(const char *s, size_t *i)
{
    const unsigned char *u = (const unsigned char *)s + *i;
    if (u[0] < 0x80) {
        (*i)++;
        return u[0];
    }
    if (u[0] < 0xE0) {
        *i += 2;
        return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    }
    if (u[0] < 0xF0) {
        *i += 3;
        return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    }
    *i += 4;
    return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) | ((uint32_t)(u[2] & 0x3F) << 6) |
           (u[3] & 0x3F);
}

bool jx_py_space(uint32_t cp)
{
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
    switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

/* str.isprintable() of one character (repr keeps printable characters as they are) */
static bool py_printable(uint32_t cp)
{
    if (cp == ' ') return true;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return false;
    default:
        return true;
    }
}

/* ---- reference counting -------------------------------------------------------------- */

static bool heap(jval v)
{
    return v.t == JT_STR || v.t == JT_LIST || v.t == JT_DICT || v.t == JT_OBJ || (v.t == JT_UNDEF && v.s);
}

static jhdr *hdr(jval v)
{
    switch (v.t) {
    case JT_STR: case JT_UNDEF: return &v.s->h;
    case JT_LIST: return &v.l->h;
    case JT_DICT: return &v.d->h;
    default: return &v.o->h;
    }
}

jval jv_inc(jval v)
{
    if (heap(v)) {
        jhdr *h = hdr(v);
        if (h->rc >= 0) h->rc++;
    }
    return v;
}

static void obj_unlink(jobj *o)
{
    if (o->prev) {
        o->prev->next = o->next;
        o->next->prev = o->prev;
        o->prev = o->next = NULL;
    }
}

/* Drop an object's references to other values (pushing them for release). */
static void obj_clear(jctx *c, jobj *o, jval **stack, size_t *n, size_t *cap);

static void push_pending(jctx *c, jval v, jval **stack, size_t *n, size_t *cap)
{
    if (!heap(v)) return;
    jhdr *h = hdr(v);
    if (h->rc < 0 || --h->rc > 0) return;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        jval *s = realloc(*stack, nc * sizeof *s);
        if (!s) abort(); /* cannot release without memory: nothing sane left to do */
        *stack = s;
        *cap = nc;
    }
    (*stack)[(*n)++] = v;
}

static void release_all(jctx *c, jval *stack, size_t n, size_t cap)
{
    while (n > 0) {
        jval v = stack[--n];
        switch (v.t) {
        case JT_STR:
        case JT_UNDEF: jx_free(c, v.s, v.s->h.size); break;
        case JT_LIST:
            for (uint32_t i = 0; i < v.l->n; i++) push_pending(c, v.l->v[i], &stack, &n, &cap);
            if (v.l->err) push_pending(c, (jval){.t = JT_STR, .s = v.l->err}, &stack, &n, &cap);
            jx_free(c, v.l->v, (size_t)v.l->cap * sizeof(jval));
            jx_free(c, v.l, v.l->h.size);
            break;
        case JT_DICT:
            for (uint32_t i = 0; i < v.d->n; i++) {
                push_pending(c, v.d->k[i], &stack, &n, &cap);
                push_pending(c, v.d->v[i], &stack, &n, &cap);
            }
            jx_free(c, v.d->k, (size_t)v.d->cap * sizeof(jval));
            jx_free(c, v.d->v, (size_t)v.d->cap * sizeof(jval));
            jx_free(c, v.d->idx, (size_t)v.d->idx_cap * sizeof(uint32_t));
            jx_free(c, v.d, v.d->h.size);
            break;
        case JT_OBJ:
            obj_clear(c, v.o, &stack, &n, &cap);
            obj_unlink(v.o);
            jx_free(c, v.o, v.o->h.size);
            break;
        default: break;
        }
    }
    free(stack);
}

void jv_dec(jctx *c, jval v)
{
    if (!heap(v)) return;
    jhdr *h = hdr(v);
    if (h->rc < 0 || h->rc > 1) {
        if (h->rc > 1) h->rc--;
        return;
    }
    jval *stack = NULL;
    size_t n = 0, cap = 0;
    push_pending(c, v, &stack, &n, &cap);
    release_all(c, stack, n, cap);
}

void jv_dec_n(jctx *c, jval *v, size_t n)
{
    for (size_t i = 0; i < n; i++) jv_dec(c, v[i]);
}

static void obj_clear(jctx *c, jobj *o, jval **stack, size_t *n, size_t *cap)
{
    if (o->cleared) return;
    o->cleared = true;
    switch ((jokind)o->kind) {
    case JO_NS: {
        jns *ns = (jns *)o;
        if (ns->d) push_pending(c, (jval){.t = JT_DICT, .d = ns->d}, stack, n, cap);
        ns->d = NULL;
        break;
    }
    case JO_MACRO: {
        jmacro *m = (jmacro *)o;
        if (m->closure) push_pending(c, jv_obj(m->closure), stack, n, cap);
        m->closure = NULL;
        break;
    }
    case JO_FUNC: push_pending(c, ((jfunc *)o)->self, stack, n, cap); ((jfunc *)o)->self = jv_none(); break;
    case JO_LOOP: {
        jloop *l = (jloop *)o;
        if (l->items) push_pending(c, (jval){.t = JT_LIST, .l = l->items}, stack, n, cap);
        push_pending(c, l->last_changed, stack, n, cap);
        if (l->scope) push_pending(c, jv_obj(l->scope), stack, n, cap);
        l->items = NULL;
        l->scope = NULL;
        l->last_changed = jv_none();
        break;
    }
    case JO_CYCLER: {
        jcycler *cy = (jcycler *)o;
        if (cy->items) push_pending(c, (jval){.t = JT_LIST, .l = cy->items}, stack, n, cap);
        cy->items = NULL;
        break;
    }
    case JO_JOINER: push_pending(c, ((jjoiner *)o)->sep, stack, n, cap); ((jjoiner *)o)->sep = jv_none(); break;
    case JO_SCOPE: {
        jscope *s = (jscope *)o;
        if (s->parent) push_pending(c, jv_obj(s->parent), stack, n, cap);
        for (uint32_t i = 0; i < s->n; i++) push_pending(c, s->vals[i], stack, n, cap);
        for (uint32_t i = 0; i < s->n_owned; i++) push_pending(c, (jval){.t = JT_STR, .s = s->owned[i]}, stack, n, cap);
        jx_free(c, s->vals, (size_t)s->cap * sizeof(jval));
        jx_free(c, s->names, (size_t)s->cap * sizeof(char *));
        jx_free(c, s->owned, (size_t)s->n_owned * sizeof(jstr *));
        s->parent = NULL;
        s->vals = NULL;
        s->names = NULL;
        s->owned = NULL;
        s->n = s->cap = s->n_owned = 0;
        break;
    }
    }
}

void *jv_obj_new(jctx *c, jokind kind, size_t size)
{
    jobj *o = jx_alloc(c, size);
    if (!o) return NULL;
    o->h.rc = 1;
    o->h.size = (uint32_t)size;
    o->kind = (uint8_t)kind;
    o->next = c->reg.next;
    o->prev = &c->reg;
    c->reg.next->prev = o;
    c->reg.next = o;
    return o;
}

void jx_registry_clear(jctx *c)
{
    /* Objects still alive at the end may hold each other in cycles: clear them all. */
    while (c->reg.next != &c->reg) {
        jobj *o = c->reg.next;
        o->h.rc++;
        jval *stack = NULL;
        size_t n = 0, cap = 0;
        obj_clear(c, o, &stack, &n, &cap);
        release_all(c, stack, n, cap);
        obj_unlink(o);
        o->prev = o->next = NULL;
        jv_dec(c, jv_obj(o));
    }
}

/* ---- strings ------------------------------------------------------------------------- */

static jstr *str_alloc(jctx *c, size_t n)
{
    if (n > UINT32_MAX - 64 || (c && n > c->opts.max_output)) {
        if (c) jx_fail_limit(c, NULL, "string-size");
        return NULL;
    }
    size_t size = sizeof(jstr) + n + 1;
    jstr *s = jx_alloc(c, size);
    if (!s) return NULL;
    s->h.rc = c ? 1 : -1;
    s->h.size = (uint32_t)size;
    s->len = (uint32_t)n;
    s->ncp = -1;
    return s;
}

int jv_str(jctx *c, const char *p, size_t n, jval *out)
{
    jstr *s = str_alloc(c, n);
    if (!s) return -1;
    if (n) memcpy(s->s, p, n);
    *out = (jval){.t = JT_STR, .s = s};
    return 0;
}

int jv_strz(jctx *c, const char *s, jval *out) { return jv_str(c, s, strlen(s), out); }

int jv_str_buf(jctx *c, jbuf *b, jval *out)
{
    int rc = jv_str(c, b->v ? b->v : "", b->n, out);
    jx_buf_free(b);
    return rc;
}

int64_t jv_str_ncp(jval v)
{
    jstr *s = v.s;
    if (s->ncp < 0) {
        int32_t n = 0;
        for (uint32_t i = 0; i < s->len; i++) n += ((unsigned char)s->s[i] & 0xC0) != 0x80;
        if (s->h.rc < 0) return n; /* immortal: never written (shared between renders) */
        s->ncp = n;
    }
    return s->ncp;
}

size_t jv_str_off(jval v, int64_t i)
{
    jstr *s = v.s;
    if (jv_str_ncp(v) == (int64_t)s->len) return (size_t)i;
    size_t off = 0;
    for (int64_t k = 0; k < i && off < s->len; k++) {
        off++;
        while (off < s->len && ((unsigned char)s->s[off] & 0xC0) == 0x80) off++;
    }
    return off;
}

int jv_undef_hint(jctx *c, jval *out, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jval s;
    if (jv_strz(c, msg, &s) < 0) return -1;
    *out = (jval){.t = JT_UNDEF, .s = s.s};
    return 0;
}

/* ---- lists and dicts ----------------------------------------------------------------- */

int jv_list(jctx *c, uint32_t cap, int kind, jval *out)
{
    jlist *l = jx_alloc(c, sizeof *l);
    if (!l) return -1;
    l->h.rc = 1;
    l->h.size = sizeof *l;
    l->kind = (uint8_t)kind;
    if (cap) {
        l->v = jx_alloc(c, (size_t)cap * sizeof(jval));
        if (!l->v) {
            jx_free(c, l, sizeof *l);
            return -1;
        }
        l->cap = cap;
    }
    *out = (jval){.t = JT_LIST, .l = l};
    return 0;
}

int jv_list_push(jctx *c, jval lv, jval item)
{
    jlist *l = lv.l;
    if (l->n == l->cap) {
        uint32_t nc = l->cap ? l->cap * 2 : 4;
        if (nc <= l->cap) {
            jv_dec(c, item);
            return jx_fail_limit(c, NULL, "memory");
        }
        jval *v = jx_alloc(c, (size_t)nc * sizeof(jval));
        if (!v) {
            jv_dec(c, item);
            return -1;
        }
        if (l->n) memcpy(v, l->v, (size_t)l->n * sizeof(jval));
        jx_free(c, l->v, (size_t)l->cap * sizeof(jval));
        l->v = v;
        l->cap = nc;
    }
    l->v[l->n++] = item;
    return 0;
}

int jv_dict(jctx *c, jval *out)
{
    jdict *d = jx_alloc(c, sizeof *d);
    if (!d) return -1;
    d->h.rc = 1;
    d->h.size = sizeof *d;
    *out = (jval){.t = JT_DICT, .d = d};
    return 0;
}

static int dict_find(jdict *d, jval k)
{
    if (!d->idx) {
        for (uint32_t i = 0; i < d->n; i++)
            if (jv_eq(d->k[i], k)) return (int)i;
        return -1;
    }
    uint32_t mask = d->idx_cap - 1;
    for (uint32_t p = (uint32_t)jv_hash(k) & mask;; p = (p + 1) & mask) {
        uint32_t e = d->idx[p];
        if (!e) return -1;
        if (jv_eq(d->k[e - 1], k)) return (int)(e - 1);
    }
}

static int dict_reindex(jctx *c, jdict *d)
{
    uint32_t cap = 16;
    while (cap < d->n * 2 + 2) cap *= 2;
    uint32_t *idx = jx_alloc(c, (size_t)cap * sizeof *idx);
    if (!idx) return -1;
    jx_free(c, d->idx, (size_t)d->idx_cap * sizeof *idx);
    d->idx = idx;
    d->idx_cap = cap;
    for (uint32_t i = 0; i < d->n; i++) {
        uint32_t p = (uint32_t)jv_hash(d->k[i]) & (cap - 1);
        while (idx[p]) p = (p + 1) & (cap - 1);
        idx[p] = i + 1;
    }
    return 0;
}

int jv_dict_set(jctx *c, jdict *d, jval k, jval v)
{
    int i = dict_find(d, k);
    if (i >= 0) {
        jv_dec(c, k);
        jv_dec(c, d->v[i]);
        d->v[i] = v;
        return 0;
    }
    if (d->n == d->cap) {
        uint32_t nc = d->cap ? d->cap * 2 : 4;
        jval *nk = jx_alloc(c, (size_t)nc * sizeof(jval)), *nv = nk ? jx_alloc(c, (size_t)nc * sizeof(jval)) : NULL;
        if (!nv) {
            jx_free(c, nk, (size_t)nc * sizeof(jval));
            jv_dec(c, k);
            jv_dec(c, v);
            return -1;
        }
        if (d->n) {
            memcpy(nk, d->k, (size_t)d->n * sizeof(jval));
            memcpy(nv, d->v, (size_t)d->n * sizeof(jval));
        }
        jx_free(c, d->k, (size_t)d->cap * sizeof(jval));
        jx_free(c, d->v, (size_t)d->cap * sizeof(jval));
        d->k = nk;
        d->v = nv;
        d->cap = nc;
    }
    d->k[d->n] = k;
    d->v[d->n] = v;
    d->n++;
    if (d->n > 8 && (!d->idx || d->n * 2 + 2 > d->idx_cap)) return dict_reindex(c, d);
    if (d->idx) {
        uint32_t p = (uint32_t)jv_hash(k) & (d->idx_cap - 1);
        while (d->idx[p]) p = (p + 1) & (d->idx_cap - 1);
        d->idx[p] = d->n;
    }
    return 0;
}

int jv_dict_get(jdict *d, jval k, jval *out)
{
    int i = dict_find(d, k);
    if (i < 0) return -1;
    *out = d->v[i];
    return 0;
}

static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

int jv_dict_gets(jdict *d, const char *k, jval *out)
{
    size_t kl = strlen(k);
    if (!d->idx) {
        for (uint32_t i = 0; i < d->n; i++)
            if (d->k[i].t == JT_STR && d->k[i].s->len == kl && !memcmp(d->k[i].s->s, k, kl)) {
                *out = d->v[i];
                return 0;
            }
        return -1;
    }
    uint32_t mask = d->idx_cap - 1;
    for (uint32_t p = (uint32_t)str_hash(k, kl) & mask;; p = (p + 1) & mask) {
        uint32_t e = d->idx[p];
        if (!e) return -1;
        jval key = d->k[e - 1];
        if (key.t == JT_STR && key.s->len == kl && !memcmp(key.s->s, k, kl)) {
            *out = d->v[e - 1];
            return 0;
        }
    }
}

/* ---- Python semantics ---------------------------------------------------------------- */

bool jv_truthy(jval v)
{
    switch (v.t) {
    case JT_UNDEF: case JT_NONE: return false;
    case JT_BOOL: return v.b;
    case JT_INT: return v.i != 0;
    case JT_FLOAT: return v.f != 0.0;
    case JT_STR: return v.s->len > 0;
    case JT_LIST: return v.l->kind == LK_GEN || v.l->n > 0;
    case JT_DICT: return v.d->n > 0;
    default: return true;
    }
}

const char *jv_type_name(jval v)
{
    switch (v.t) {
    case JT_UNDEF: return "Undefined";
    case JT_NONE: return "NoneType";
    case JT_BOOL: return "bool";
    case JT_INT: return "int";
    case JT_FLOAT: return "float";
    case JT_STR: return (v.fl & JF_MARKUP) ? "Markup" : "str";
    case JT_LIST:
        switch ((jlkind)v.l->kind) {
        case LK_TUPLE: return "tuple";
        case LK_RANGE: return "range";
        case LK_GEN:
        case LK_VIEW: return v.l->pyname ? v.l->pyname : "generator";
        default: return "list";
        }
    case JT_DICT: return "dict";
    default:
        switch ((jokind)v.o->kind) {
        case JO_NS: return "Namespace";
        case JO_MACRO: return "Macro";
        case JO_FUNC: return "builtin_function_or_method";
        case JO_LOOP: return "LoopContext";
        case JO_CYCLER: return "Cycler";
        case JO_JOINER: return "Joiner";
        default: return "object";
        }
    }
}

void jv_float_repr(double f, char *buf, size_t len)
{
    if (isnan(f)) {
        snprintf(buf, len, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, len, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0) {
        snprintf(buf, len, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    char tmp[40];
    for (int p = 0; p < 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* tmp = [-]d[.ddd]e[+-]xx */
    char digits[24];
    int nd = 0;
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    int decpt = exp10 + 1;
    char *o = buf, *end = buf + len - 1;
#define PUTC(ch) do { if (o < end) *o++ = (ch); } while (0)
    if (neg) PUTC('-');
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            PUTC('0');
            PUTC('.');
            for (int i = 0; i < -decpt; i++) PUTC('0');
            for (int i = 0; i < nd; i++) PUTC(digits[i]);
        } else if (decpt >= nd) {
            for (int i = 0; i < nd; i++) PUTC(digits[i]);
            for (int i = nd; i < decpt; i++) PUTC('0');
            PUTC('.');
            PUTC('0');
        } else {
            for (int i = 0; i < nd; i++) {
                if (i == decpt) PUTC('.');
                PUTC(digits[i]);
            }
        }
        *o = 0;
    } else {
        PUTC(digits[0]);
        if (nd > 1) {
            PUTC('.');
            for (int i = 1; i < nd; i++) PUTC(digits[i]);
        }
        *o = 0;
        int e = decpt - 1;
        size_t used = (size_t)(o - buf);
        snprintf(o, len - used, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
#undef PUTC
}

void ms_jinja_float_repr(double f, char *buf, size_t len) { jv_float_repr(f, buf, len); }

static int repr_str(jctx *c, const jstr *s, jbuf *b)
{
    bool has_sq = memchr(s->s, '\'', s->len) != NULL, has_dq = memchr(s->s, '"', s->len) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    if (jx_buf_putc(c, b, q) < 0) return -1;
    size_t i = 0, run = 0;
    while (i < s->len) {
        size_t start = i;
        uint32_t cp = jx_utf8_next(s->s, &i);
        char esc[16];
        const char *e = NULL;
        if (cp == (uint32_t)q || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            esc[2] = 0;
            e = esc;
        } else if (cp == '\t') e = "\\t";
        else if (cp == '\n') e = "\\n";
        else if (cp == '\r') e = "\\r";
        else if (cp < 0x20 || cp == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", cp);
            e = esc;
        } else if (cp >= 0x80 && !py_printable(cp)) {
            if (cp <= 0xff) snprintf(esc, sizeof esc, "\\x%02x", cp);
            else if (cp <= 0xffff) snprintf(esc, sizeof esc, "\\u%04x", cp);
            else snprintf(esc, sizeof esc, "\\U%08x", cp);
            e = esc;
        }
        if (e) {
            if (jx_buf_put(c, b, s->s + start - run, run) < 0 || jx_buf_put(c, b, e, strlen(e)) < 0) return -1;
            run = 0;
        } else {
            run += i - start;
        }
    }
    if (jx_buf_put(c, b, s->s + s->len - run, run) < 0) return -1;
    return jx_buf_putc(c, b, q);
}

#define PF_REPR 1u
#define PF_SORTED 2u
/* containers being printed: a value met again inside itself prints as [...] / {...} */
typedef struct prt {
    const void *open[JX_MAX_NEST + 2];
    int n;
} prt;
static int str_rec(jctx *c, jval v, jbuf *b, unsigned pf, prt *p);

static bool prt_open(prt *p, const void *x)
{
    for (int i = 0; i < p->n; i++)
        if (p->open[i] == x) return true;
    return false;
}

static int seq_repr(jctx *c, jlist *l, jbuf *b, unsigned pf, prt *p)
{
    char tmp[96];
    if (l->kind == LK_RANGE) {
        if (l->r_step == 1) snprintf(tmp, sizeof tmp, "range(%lld, %lld)", (long long)l->r_start, (long long)l->r_stop);
        else snprintf(tmp, sizeof tmp, "range(%lld, %lld, %lld)", (long long)l->r_start, (long long)l->r_stop, (long long)l->r_step);
        return jx_buf_put(c, b, tmp, strlen(tmp));
    }
    if (l->kind == LK_GEN) {
        snprintf(tmp, sizeof tmp, "<%s object>", l->pyname ? l->pyname : "generator");
        return jx_buf_put(c, b, tmp, strlen(tmp));
    }
    bool tuple = l->kind == LK_TUPLE;
    if (prt_open(p, l)) return jx_buf_put(c, b, tuple ? "(...)" : "[...]", 5);
    if (p->n > JX_MAX_NEST) return jx_fail(c, NULL, "value nested too deeply to print");
    p->open[p->n++] = l;
    if (l->kind == LK_VIEW && (jx_buf_put(c, b, l->pyname, strlen(l->pyname)) < 0 || jx_buf_putc(c, b, '(') < 0)) return -1;
    if (jx_buf_putc(c, b, tuple ? '(' : '[') < 0) return -1;
    for (uint32_t i = 0; i < l->n; i++) {
        if (i && jx_buf_put(c, b, ", ", 2) < 0) return -1;
        if (str_rec(c, l->v[i], b, pf | PF_REPR, p) < 0) return -1;
    }
    if (tuple && l->n == 1 && jx_buf_putc(c, b, ',') < 0) return -1;
    if (jx_buf_putc(c, b, tuple ? ')' : ']') < 0) return -1;
    p->n--;
    return l->kind == LK_VIEW ? jx_buf_putc(c, b, ')') : 0;
}

static int dict_repr(jctx *c, jdict *d, jbuf *b, unsigned pf, prt *p)
{
    if (prt_open(p, d)) return jx_buf_put(c, b, "{...}", 5);
    if (p->n > JX_MAX_NEST) return jx_fail(c, NULL, "value nested too deeply to print");
    if (jx_buf_putc(c, b, '{') < 0) return -1;
    uint32_t *order = NULL;
    if ((pf & PF_SORTED) && d->n > 1) { /* pprint: keys in sorted order (unorderable keys keep theirs) */
        if (!(order = jx_alloc(c, d->n * sizeof *order))) return -1;
        for (uint32_t i = 0; i < d->n; i++) order[i] = i;
        bool failed = false;
        for (uint32_t i = 1; i < d->n && !failed; i++)
            for (uint32_t j = i; j > 0; j--) {
                int r = 0;
                jval x = d->k[order[j]], y = d->k[order[j - 1]];
                bool ok = (jv_is_num(x) && jv_is_num(y)) || (x.t == JT_STR && y.t == JT_STR);
                if (!ok) {
                    failed = true;
                    break;
                }
                jv_cmp(c, NULL, x, y, "<", &r);
                if (r >= 0) break;
                uint32_t t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
        if (failed)
            for (uint32_t i = 0; i < d->n; i++) order[i] = i;
    }
    int rc = 0;
    for (uint32_t q = 0; q < d->n && rc == 0; q++) {
        uint32_t i = order ? order[q] : q;
        if (q && jx_buf_put(c, b, ", ", 2) < 0) rc = -1;
        p->open[p->n++] = d;
        if (rc == 0 && (str_rec(c, d->k[i], b, pf | PF_REPR, p) < 0 || jx_buf_put(c, b, ": ", 2) < 0 ||
                        str_rec(c, d->v[i], b, pf | PF_REPR, p) < 0))
            rc = -1;
        p->n--;
    }
    if (order) jx_free(c, order, d->n * sizeof *order);
    return rc < 0 ? -1 : jx_buf_putc(c, b, '}');
}

static int str_rec(jctx *c, jval v, jbuf *b, unsigned pf, prt *p)
{
    bool repr = pf & PF_REPR;
    char tmp[64];
    if (p->n > JX_MAX_NEST) return jx_fail(c, NULL, "value nested too deeply to print");
    switch (v.t) {
    case JT_UNDEF: return repr ? jx_buf_put(c, b, "Undefined", 9) : 0;
    case JT_NONE: return jx_buf_put(c, b, "None", 4);
    case JT_BOOL: return v.b ? jx_buf_put(c, b, "True", 4) : jx_buf_put(c, b, "False", 5);
    case JT_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v.i); return jx_buf_put(c, b, tmp, strlen(tmp));
    case JT_FLOAT: jv_float_repr(v.f, tmp, sizeof tmp); return jx_buf_put(c, b, tmp, strlen(tmp));
    case JT_STR:
        if (!repr) return jx_buf_put(c, b, v.s->s, v.s->len);
        if (v.fl & JF_MARKUP) {
            if (jx_buf_put(c, b, "Markup(", 7) < 0 || repr_str(c, v.s, b) < 0) return -1;
            return jx_buf_putc(c, b, ')');
        }
        return repr_str(c, v.s, b);
    case JT_LIST: return seq_repr(c, v.l, b, pf, p);
    case JT_DICT: return dict_repr(c, v.d, b, pf, p);
    default: break;
    }
    switch ((jokind)v.o->kind) {
    case JO_NS: {
        jns *ns = (jns *)v.o;
        if (jx_buf_put(c, b, "<Namespace ", 11) < 0) return -1;
        if (ns->d ? dict_repr(c, ns->d, b, pf, p) : jx_buf_put(c, b, "{}", 2)) return -1;
        return jx_buf_putc(c, b, '>');
    }
    case JO_MACRO: {
        jmacro *m = (jmacro *)v.o;
        const char *name = m->is_caller ? "caller" : m->def->name;
        if (jx_buf_put(c, b, "<Macro '", 8) < 0 || jx_buf_put(c, b, name, strlen(name)) < 0) return -1;
        return jx_buf_put(c, b, "'>", 2);
    }
    case JO_FUNC: {
        jfunc *f = (jfunc *)v.o;
        snprintf(tmp, sizeof tmp, "<built-in method %s>", f->name);
        return jx_buf_put(c, b, tmp, strlen(tmp));
    }
    case JO_LOOP: {
        jloop *l = (jloop *)v.o;
        snprintf(tmp, sizeof tmp, "<LoopContext %lld/%u>", (long long)l->index0 + 1, l->items ? l->items->n : 0);
        return jx_buf_put(c, b, tmp, strlen(tmp));
    }
    case JO_CYCLER: return jx_buf_put(c, b, "<jinja2.utils.Cycler object>", 28);
    case JO_JOINER: return jx_buf_put(c, b, "<jinja2.utils.Joiner object>", 28);
    default: return jx_buf_put(c, b, "<object>", 8);
    }
}

static int print_value(jctx *c, jval v, jbuf *b, unsigned pf)
{
    if (v.t != JT_LIST && v.t != JT_DICT && v.t != JT_OBJ) {
        prt scalar; /* not written for scalars */
        scalar.n = 0;
        return str_rec(c, v, b, pf, &scalar);
    }
    prt *p = malloc(sizeof *p);
    if (!p) return jx_fail(c, NULL, "out of memory");
    p->n = 0;
    int rc = str_rec(c, v, b, pf, p);
    free(p);
    return rc;
}

int jv_to_str(jctx *c, jval v, jbuf *b) { return print_value(c, v, b, 0); }
int jv_repr(jctx *c, jval v, jbuf *b) { return print_value(c, v, b, PF_REPR); }
int jv_repr_sorted(jctx *c, jval v, jbuf *b) { return print_value(c, v, b, PF_REPR | PF_SORTED); }

int jv_stringify(jctx *c, jval v, jval *out)
{
    if (v.t == JT_STR) {
        *out = jv_inc(v);
        return 0;
    }
    jbuf b = {0};
    if (jv_to_str(c, v, &b) < 0) {
        jx_buf_free(&b);
        return -1;
    }
    return jv_str_buf(c, &b, out);
}

/* numbers: bool and int as int64 */
static int64_t num_i(jval v) { return v.t == JT_BOOL ? (int64_t)v.b : v.i; }

/* compare an int with a double exactly: -1, 0, 1 (2 = unordered: NaN) */
static int cmp_int_float(int64_t i, double f)
{
    if (isnan(f)) return 2;
    if (f >= 9223372036854775808.0) return -1;
    if (f < -9223372036854775808.0) return 1;
    double fl = floor(f);
    int64_t fi = (int64_t)fl;
    if (i < fi) return -1;
    if (i > fi) return 1;
    return fl == f ? 0 : -1;
}

static int num_cmp(jval a, jval b)
{
    if (a.t != JT_FLOAT && b.t != JT_FLOAT) {
        int64_t x = num_i(a), y = num_i(b);
        return x < y ? -1 : x > y;
    }
    if (a.t == JT_FLOAT && b.t == JT_FLOAT) {
        if (isnan(a.f) || isnan(b.f)) return 2;
        return a.f < b.f ? -1 : a.f > b.f;
    }
    if (a.t == JT_FLOAT) {
        int r = cmp_int_float(num_i(b), a.f);
        return r == 2 ? 2 : -r;
    }
    return cmp_int_float(num_i(a), b.f);
}

static bool eq_rec(jval a, jval b, int depth)
{
    if (depth > JX_MAX_NEST) return false;
    if (jv_is_num(a) && jv_is_num(b)) return num_cmp(a, b) == 0;
    if (a.t != b.t) return false;
    switch (a.t) {
    case JT_UNDEF: case JT_NONE: return true;
    case JT_STR: return a.s == b.s || (a.s->len == b.s->len && !memcmp(a.s->s, b.s->s, a.s->len));
    case JT_LIST:
        if (a.l->kind == LK_GEN || b.l->kind == LK_GEN) return a.l == b.l;
        if ((a.l->kind == LK_TUPLE) != (b.l->kind == LK_TUPLE) || (a.l->kind == LK_VIEW) != (b.l->kind == LK_VIEW) ||
            a.l->n != b.l->n)
            return false;
        for (uint32_t i = 0; i < a.l->n; i++)
            if (!eq_rec(a.l->v[i], b.l->v[i], depth + 1)) return false;
        return true;
    case JT_DICT:
        if (a.d->n != b.d->n) return false;
        for (uint32_t i = 0; i < a.d->n; i++) {
            jval v;
            if (jv_dict_get(b.d, a.d->k[i], &v) < 0 || !eq_rec(a.d->v[i], v, depth + 1)) return false;
        }
        return true;
    case JT_OBJ: return a.o == b.o;
    default: return false;
    }
}

bool jv_eq(jval a, jval b) { return eq_rec(a, b, 0); }

static int cmp_rec(jctx *c, const jnode *at, jval a, jval b, const char *op, int *res, int depth)
{
    if (depth > JX_MAX_NEST) return jx_fail(c, at, "values nested too deeply to compare");
    if (a.t == JT_UNDEF) return jx_undef_fail(c, at, a);
    if (b.t == JT_UNDEF) return jx_undef_fail(c, at, b);
    if (jv_is_num(a) && jv_is_num(b)) {
        int r = num_cmp(a, b);
        *res = r == 2 ? 2 : r;
        return 0;
    }
    if (a.t == JT_STR && b.t == JT_STR) {
        size_t n = a.s->len < b.s->len ? a.s->len : b.s->len;
        int r = memcmp(a.s->s, b.s->s, n);
        *res = r < 0 ? -1 : r > 0 ? 1 : a.s->len < b.s->len ? -1 : a.s->len > b.s->len;
        return 0;
    }
    if (jv_is_seq(a) && jv_is_seq(b) && a.l->kind == b.l->kind) {
        uint32_t n = a.l->n < b.l->n ? a.l->n : b.l->n;
        for (uint32_t i = 0; i < n; i++) {
            if (eq_rec(a.l->v[i], b.l->v[i], depth + 1)) continue;
            return cmp_rec(c, at, a.l->v[i], b.l->v[i], op, res, depth + 1);
        }
        *res = a.l->n < b.l->n ? -1 : a.l->n > b.l->n;
        return 0;
    }
    return jx_fail(c, at, "TypeError: '%s' not supported between instances of '%s' and '%s'", op, jv_type_name(a),
                   jv_type_name(b));
}

int jv_cmp(jctx *c, const jnode *at, jval a, jval b, const char *op, int *res)
{
    return cmp_rec(c, at, a, b, op, res, 0);
}

bool jv_hashable(jval v)
{
    if (v.t == JT_DICT || (v.t == JT_LIST && v.l->kind != LK_TUPLE && v.l->kind != LK_RANGE && v.l->kind != LK_GEN))
        return false;
    if (v.t == JT_LIST)
        for (uint32_t i = 0; i < v.l->n; i++)
            if (!jv_hashable(v.l->v[i])) return false;
    return true;
}

static uint64_t hash_rec(jval v, int depth)
{
    switch (v.t) {
    case JT_BOOL: case JT_INT: return (uint64_t)num_i(v) * 0x9E3779B97F4A7C15ull;
    case JT_FLOAT: {
        double f = v.f;
        if (f == floor(f) && f >= -9.2e18 && f <= 9.2e18) return (uint64_t)(int64_t)f * 0x9E3779B97F4A7C15ull;
        uint64_t u;
        memcpy(&u, &f, sizeof u);
        return u * 0xBF58476D1CE4E5B9ull;
    }
    case JT_STR: return str_hash(v.s->s, v.s->len);
    case JT_LIST: {
        uint64_t h = 0x345678;
        if (depth < JX_MAX_NEST)
            for (uint32_t i = 0; i < v.l->n; i++) h = (h ^ hash_rec(v.l->v[i], depth + 1)) * 1000003;
        return h;
    }
    case JT_OBJ: return (uint64_t)(uintptr_t)v.o * 0x9E3779B97F4A7C15ull;
    default: return (uint64_t)v.t * 0x9E3779B97F4A7C15ull;
    }
}

uint64_t jv_hash(jval v) { return hash_rec(v, 0); }

/* ---- UTF-8 validation ------------------------------------------------------------------------ */

bool jx_utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char b = (unsigned char)s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t min;
        if (b >= 0xC2 && b <= 0xDF) k = 1, min = 0x80;
        else if (b >= 0xE0 && b <= 0xEF) k = 2, min = 0x800;
        else if (b >= 0xF0 && b <= 0xF4) k = 3, min = 0x10000;
        else return false;
        if (n - i <= k) return false;
        for (size_t j = 1; j <= k; j++)
            if (((unsigned char)s[i + j] & 0xC0) != 0x80) return false;
        size_t t = i;
        uint32_t cp = jx_utf8_next(s, &t);
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += k + 1;
    }
    return true;
}


/* jinja_scope.c - Jinja's static scoping, so that renders match its compiled code.
 *
 * Jinja compiles every frame (the template, a for-loop body, a macro, a call block, a
 * set/filter/with block, {% block %}) into a Python function whose variables are fixed
 * at compile time (jinja2/idtracking.py). A name the frame assigns is a local of that
 * frame from its start: if the frame reads it before the first assignment (in document
 * order; a name first assigned inside an if-branch counts as read) or the name belongs to an enclosing
 * frame, it starts with the outer value; otherwise it starts undefined. That is
 * observable: a loop body or a macro that reads `x` before the enclosing frame's
 * `{% set x %}` ran sees undefined, not the render variable `x`. Every other case
 * behaves like a plain scope chain, which jinja_eval.c implements; this pass only
 * records, per frame, the names that start undefined (jnode.undef).
 */
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"

enum { M_OUTER = 0, M_UNDEF = 1, M_PARAM = 2 };

typedef struct sym {
    const char *name;
    uint8_t mode;
    bool stored;
} sym;

typedef struct syms {
    const struct syms *parent;
    sym *v;
    uint32_t n, cap;
    bool oom;
} syms;

typedef struct frame_job {
    jnode *node; /* the frame's owner (NULL: the root) */
    int kind;    /* 0 body, 1 for-else */
} frame_job;

typedef struct ctx {
    ms_jinja *t;
    frame_job *jobs; /* child frames met while walking the current frame */
    uint32_t n_jobs, cap_jobs;
    bool oom;
} ctx;

static sym *find_local(const syms *s, const char *name)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i].name, name)) return &s->v[i];
    return NULL;
}

static bool find_ref(const syms *s, const char *name)
{
    for (; s; s = s->parent)
        if (find_local(s, name)) return true;
    return false;
}

static sym *define(syms *s, const char *name, int mode)
{
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 16;
        sym *v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            s->oom = true;
            return NULL;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n] = (sym){.name = name, .mode = (uint8_t)mode};
    return &s->v[s->n++];
}

static void load(syms *s, const char *name)
{
    if (!find_ref(s, name)) define(s, name, M_OUTER);
}

static void store(syms *s, const char *name)
{
    sym *x = find_local(s, name);
    if (!x) x = define(s, name, s->parent && find_ref(s->parent, name) ? M_OUTER : M_UNDEF);
    if (x) x->stored = true;
}

static void param(syms *s, const char *name)
{
    sym *x = find_local(s, name);
    if (!x) x = define(s, name, M_PARAM);
    else x->mode = M_PARAM;
    if (x) x->stored = true;
}

static bool copy_syms(const syms *src, syms *dst)
{
    *dst = (syms){.parent = src->parent};
    if (!src->n) return true;
    dst->v = malloc(src->n * sizeof *dst->v);
    if (!dst->v) return false;
    memcpy(dst->v, src->v, src->n * sizeof *dst->v);
    dst->n = dst->cap = src->n;
    return true;
}

static void add_job(ctx *c, jnode *n, int kind)
{
    if (c->n_jobs == c->cap_jobs) {
        uint32_t cap = c->cap_jobs ? c->cap_jobs * 2 : 16;
        frame_job *j = realloc(c->jobs, cap * sizeof *j);
        if (!j) {
            c->oom = true;
            return;
        }
        c->jobs = j;
        c->cap_jobs = cap;
    }
    c->jobs[c->n_jobs++] = (frame_job){n, kind};
}

static void expr(syms *s, const jnode *e)
{
    if (!e) return;
    if (e->kind == E_NAME || e->kind == E_NSREF) {
        load(s, e->name);
        return;
    }
    expr(s, e->a);
    expr(s, e->b);
    expr(s, e->c);
    expr(s, e->d);
    for (uint32_t i = 0; i < e->n; i++) expr(s, e->list[i]);
    for (uint32_t i = 0; i < e->n2; i++) expr(s, e->list2[i]);
}

static void target(syms *s, const jnode *t)
{
    if (t->kind == E_NAME) store(s, t->name);
    else if (t->kind == E_NSREF) load(s, t->name);
    else
        for (uint32_t i = 0; i < t->n; i++) target(s, t->list[i]);
}

static void stmts(ctx *c, syms *s, jnode *const *l, uint32_t n);

/* Jinja's Symbols.branch_update: merge the branches' symbols into s; a name newly
 * assigned inside any branch starts with the outer value (jinja2 3.1 idtracking) */
static void branch_update(ctx *c, syms *s, syms *br, int nbr)
{
    uint32_t base = s->n;
    bool *pre = calloc(base + 1, 1);
    if (!pre) {
        c->oom = true;
        return;
    }
    for (uint32_t i = 0; i < base; i++) pre[i] = s->v[i].stored;
    for (int b = 0; b < nbr; b++)
        for (uint32_t i = 0; i < br[b].n; i++) {
            const sym *x = &br[b].v[i];
            sym *y = find_local(s, x->name);
            if (!y) y = define(s, x->name, x->mode);
            else y->mode = x->mode;
            if (y && x->stored) y->stored = true;
        }
    for (uint32_t i = 0; i < s->n; i++)
        if (s->v[i].stored && !(i < base && pre[i])) s->v[i].mode = M_OUTER;
    free(pre);
}

static bool is_elif(const jnode *n) { return n->n2 == 1 && n->list2[0]->kind == N_IF && (n->list2[0]->flags & NF_ELIF); }

static void visit_if(ctx *c, syms *s, jnode *n)
{
    expr(s, n->a);
    syms br[3];
    if (!copy_syms(s, &br[0]) || !copy_syms(s, &br[1]) || !copy_syms(s, &br[2])) {
        c->oom = true;
        return; /* (the copies made so far leak only on OOM, reported as an error) */
    }
    /* Jinja's branches: the body, the elifs (one branch), the else */
    stmts(c, &br[0], n->list, n->n);
    jnode *e = n;
    while (is_elif(e)) {
        e = e->list2[0];
        expr(&br[1], e->a); /* an elif is an If of its own: test, body, no else */
        syms sub[3];
        if (!copy_syms(&br[1], &sub[0]) || !copy_syms(&br[1], &sub[1]) || !copy_syms(&br[1], &sub[2])) {
            c->oom = true;
            break;
        }
        stmts(c, &sub[0], e->list, e->n);
        branch_update(c, &br[1], sub, 3);
        for (int b = 0; b < 3; b++) free(sub[b].v);
    }
    stmts(c, &br[2], e->list2, e->n2);
    branch_update(c, s, br, 3);
    for (int b = 0; b < 3; b++) free(br[b].v);
}

static void stmt(ctx *c, syms *s, jnode *n)
{
    switch (n->kind) {
    case N_OUTPUT: expr(s, n->a); break;
    case N_IF: visit_if(c, s, n); break;
    case N_FOR:
        expr(s, n->b);
        add_job(c, n, 0);
        if (n->n2) add_job(c, n, 1);
        break;
    case N_SET:
        expr(s, n->b);
        target(s, n->a);
        break;
    case N_SETBLOCK:
        target(s, n->a);
        add_job(c, n, 0);
        break;
    case N_MACRO:
        store(s, n->name);
        add_job(c, n, 0);
        break;
    case N_CALLBLOCK:
        expr(s, n->a);
        add_job(c, n, 0);
        break;
    case N_FILTERBLOCK:
        expr(s, n->c);
        add_job(c, n, 0);
        break;
    case N_WITH:
        for (uint32_t i = 0; i < n->n3; i++) expr(s, n->list3[i]);
        add_job(c, n, 0);
        break;
    case N_SCOPE:
    case N_AUTOESCAPE: add_job(c, n, 0); break;
    default: break;
    }
}

static void stmts(ctx *c, syms *s, jnode *const *l, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) stmt(c, s, l[i]);
}

static void params_of(syms *s, const jnode *t)
{
    if (t->kind == E_NAME) param(s, t->name);
    else
        for (uint32_t i = 0; i < t->n; i++) params_of(s, t->list[i]);
}

/* the names of s that start undefined, into the arena */
static int undef_names(ctx *c, const syms *s, const char ***out, uint32_t *n)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->n; i++) k += s->v[i].mode == M_UNDEF;
    *out = NULL;
    *n = 0;
    if (!k) return 0;
    const char **v = jx_arena_alloc(&c->t->arena, k * sizeof *v);
    if (!v) return -1;
    for (uint32_t i = 0; i < s->n; i++)
        if (s->v[i].mode == M_UNDEF) v[(*n)++] = s->v[i].name;
    *out = v;
    return 0;
}

static int analyze(ctx *c, const syms *parent, jnode *owner, int kind)
{
    syms s = {.parent = parent};
    uint32_t first_job = c->n_jobs;
    if (!owner) {
        stmts(c, &s, c->t->body, c->t->n);
    } else if (owner->kind == N_FOR && kind == 1) {
        stmts(c, &s, owner->list2, owner->n2);
    } else {
        switch (owner->kind) {
        case N_FOR:
            params_of(&s, owner->a);
            param(&s, "loop");
            break;
        case N_MACRO:
        case N_CALLBLOCK:
            for (uint32_t i = 0; i < owner->n_names; i++) param(&s, owner->names[i]);
            for (uint32_t i = 0; i < owner->n2; i++) expr(&s, owner->list2[i]);
            break;
        case N_WITH:
            for (uint32_t i = 0; i < owner->n2; i++) target(&s, owner->list2[i]);
            break;
        default: break;
        }
        stmts(c, &s, owner->list, owner->n);
        if (owner->kind == N_FILTERBLOCK) expr(&s, owner->c);
    }
    int rc = s.oom || c->oom ? -1 : 0;
    if (rc == 0) {
        if (!owner) rc = undef_names(c, &s, &c->t->undef, &c->t->n_undef);
        else if (kind == 1) rc = undef_names(c, &s, &owner->undef2, &owner->n_undef2);
        else rc = undef_names(c, &s, &owner->undef, &owner->n_undef);
    }
    /* child frames see this frame's complete symbols */
    uint32_t last_job = c->n_jobs;
    for (uint32_t j = first_job; j < last_job && rc == 0; j++) {
        frame_job job = c->jobs[j];
        rc = analyze(c, &s, job.node, job.kind);
    }
    c->n_jobs = first_job;
    free(s.v);
    return rc;
}

int jx_analyze_scopes(ms_jinja *t, ms_err *err)
{
    ctx c = {.t = t};
    int rc = analyze(&c, NULL, NULL, 0);
    free(c.jobs);
    if (rc < 0) return ms_errf(err, ENOMEM, "%s: out of memory", t->name), -1;
    return 0;
}

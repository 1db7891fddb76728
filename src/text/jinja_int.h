/* jinja_int.h - internals of the Jinja renderer (jinja.h), shared by its files:
 *
 *   jinja_value.c    values: refcounted strings/lists/dicts/objects, Python str()/repr(),
 *                    equality/ordering/hash
 *   jinja_json.c     JSON in (json-c) and out (json.dumps)
 *   jinja_lex.c      source -> tokens (delimiters, whitespace control, raw blocks)
 *   jinja_parse.c    tokens -> AST (Jinja's grammar and operator precedence)
 *   jinja_scope.c    Jinja's static scoping: names a frame starts with as undefined
 *   jinja_eval.c     AST -> text: statements, scopes, expressions, calls, limits
 *   jinja_ops.c      attribute/item lookup, slicing, iteration, operators
 *   jinja_filters.c  filters and tests; jinja_seqfilters.c the filters over sequences
 *   jinja_methods.c  Python methods of str/dict/list, loop/cycler/joiner, globals
 *   jinja_format.c   Python's str % args and str.format()
 *
 * Values (jval) are small tagged unions passed by value; strings, lists, dicts and
 * objects live on the heap with a reference count. Objects that can form cycles
 * (namespaces, scopes, macros, loops, cyclers, joiners) are linked into the render's
 * registry and cleared when the render ends, so cycles cannot leak. Template constants
 * are immortal (rc < 0) and never touched by renders, which keeps a parsed template
 * shareable between threads. Functions returning int give 0 or -1 (error recorded in
 * the context: the first error wins).
 */
#ifndef MS_JINJA_INT_H
#define MS_JINJA_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "jinja.h"

/* ---- values ------------------------------------------------------------------------ */

typedef enum {
    JT_UNDEF = 0, /* jinja2.Undefined; s = hint message or NULL */
    JT_NONE,
    JT_BOOL,
    JT_INT,
    JT_FLOAT,
    JT_STR,
    JT_LIST,   /* list or tuple (jlist.tuple) */
    JT_DICT,
    JT_OBJ,    /* namespace, macro, function, loop, cycler, joiner (jobj.kind) */
} jtype;

#define JX_MAX_NEST 512 /* nesting bound of the recursive walks over values (print, JSON, compare) */

#define JF_MARKUP 1u /* JT_STR: markupsafe.Markup */
#define JF_UNSAFE 2u /* JT_UNDEF: sandbox refused the attribute (using it raises SecurityError) */

typedef struct jhdr {
    int32_t rc;  /* < 0: immortal (template constant) */
    uint32_t size; /* bytes charged to the render's memory count */
} jhdr;

typedef struct jstr {
    jhdr h;
    uint32_t len;
    int32_t ncp; /* code points, -1 until computed */
    char s[];    /* NUL-terminated */
} jstr;

struct jval_s;
/* list kinds: Python's list and tuple, plus the iterables filters and methods return
 * (they print, measure and index as Python's do) */
typedef enum {
    LK_LIST = 0,
    LK_TUPLE,
    LK_GEN,   /* one-shot iterator (generator, reversed(...)): len() fails, consumed by iteration */
    LK_VIEW,  /* dict_items / dict_keys / dict_values: len() works, not subscriptable */
    LK_RANGE, /* range(start, stop, step), materialized (the sandbox caps it at 100000) */
} jlkind;

typedef struct jlist {
    jhdr h;
    uint32_t n, cap;
    uint8_t kind;       /* jlkind */
    uint32_t pos;       /* LK_GEN: items already consumed */
    const char *pyname; /* LK_GEN / LK_VIEW: Python type name ("generator", "dict_items", ...) */
    int64_t r_start, r_stop, r_step; /* LK_RANGE */
    struct jstr *err;   /* LK_GEN: a deferred error, raised when iteration gets past v[n-1] */
    struct jval_s *v;
} jlist;

typedef struct jdict {
    jhdr h;
    uint32_t n, cap;
    struct jval_s *k, *v;
    uint32_t *idx; /* open-addressing index (entries + 1) when n > 8 */
    uint32_t idx_cap;
} jdict;

typedef enum { JO_NS, JO_MACRO, JO_FUNC, JO_LOOP, JO_CYCLER, JO_JOINER, JO_SCOPE } jokind;

typedef struct jobj jobj;

typedef struct jval_s {
    uint8_t t;  /* jtype */
    uint8_t fl; /* JF_* */
    union {
        bool b;
        int64_t i;
        double f;
        jstr *s;
        jlist *l;
        jdict *d;
        jobj *o;
    };
} jval;

/* ---- AST --------------------------------------------------------------------------- */

typedef enum {
    /* statements */
    N_TEXT = 1, N_OUTPUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK, N_WITH,
    N_BREAK, N_CONTINUE, N_SCOPE, N_UNSUPPORTED, N_AUTOESCAPE,
    /* expressions */
    E_CONST, E_NAME, E_NSREF, E_TUPLE, E_LIST, E_DICT, E_GETATTR, E_GETITEM, E_SLICE, E_CALL, E_FILTER, E_TEST,
    E_NOT, E_NEG, E_POS, E_BINOP, E_AND, E_OR, E_CONCAT, E_COMPARE, E_COND,
} jnkind;

typedef enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW } jbinop;
typedef enum { CMP_EQ = 1, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN, CMP_NOTIN } jcmpop;

#define NF_RECURSIVE 1u  /* for ... recursive */
#define NF_VARARGS 2u    /* macro body uses varargs */
#define NF_KWARGS 4u     /* macro body uses kwargs */
#define NF_CALLER 8u     /* macro body uses caller */
#define NF_SOFT 16u      /* filter/test: unknown name is a run-time error (inside if) */
#define NF_ELIF 32u      /* N_IF made from an {% elif %} */

typedef struct jnode jnode;
struct jnode {
    uint16_t kind; /* jnkind */
    uint16_t op;   /* jbinop, filter/test id (-1 unknown), autoescape value */
    uint32_t flags;
    uint32_t line, col;
    jnode *a, *b, *c, *d;   /* children, meaning per kind (see jinja_parse.c) */
    jnode **list;           /* body / items / positional args / compare operands */
    uint32_t n;
    jnode **list2;          /* else body / dict values / keyword arg values / defaults */
    uint32_t n2;
    jnode **list3;          /* with: values */
    uint32_t n3;
    const char **names;     /* keyword arg names / macro params (n_names) */
    uint32_t n_names;
    uint8_t *ops;           /* compare operators (n) */
    const char *name;       /* identifier / attribute / filter or test name / macro name */
    const char *text;       /* N_TEXT data, E_NSREF attribute, N_UNSUPPORTED message */
    size_t text_len;
    jval cval;              /* E_CONST */
    /* frames (jinja_scope.c): names that start undefined when the frame is entered
     * (N_FOR: undef = body frame, undef2 = else frame) */
    const char **undef, **undef2;
    uint32_t n_undef, n_undef2;
};

/* ---- tokens ------------------------------------------------------------------------ */

typedef enum {
    TK_EOF = 0, TK_DATA, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END, TK_NAME, TK_STRING, TK_INT,
    TK_FLOAT,
    /* operators */
    TK_ADD, TK_SUB, TK_DIV, TK_FLOORDIV, TK_MUL, TK_MOD, TK_POW, TK_TILDE, TK_LBRACKET, TK_RBRACKET, TK_LPAREN,
    TK_RPAREN, TK_LBRACE, TK_RBRACE, TK_EQ, TK_NE, TK_GT, TK_GTEQ, TK_LT, TK_LTEQ, TK_ASSIGN, TK_DOT, TK_COLON,
    TK_PIPE, TK_COMMA, TK_SEMICOLON,
} jtok_type;

typedef struct jtok {
    uint8_t type;
    uint32_t line, col;
    const char *s; /* DATA text / NAME / decoded STRING (arena, NUL-terminated) */
    size_t len;
    int64_t i;     /* TK_INT */
    double f;      /* TK_FLOAT */
} jtok;

/* ---- arena (AST and tokens live as long as the template) ---------------------------- */

typedef struct jarena_blk jarena_blk;
typedef struct jarena {
    jarena_blk *head;
    size_t used, cap;
} jarena;

void *jx_arena_alloc(jarena *a, size_t n); /* zeroed, NULL on OOM */
char *jx_arena_strdup(jarena *a, const char *s, size_t n);
void jx_arena_free(jarena *a);

struct ms_jinja {
    jarena arena;
    jnode **body;
    uint32_t n;
    char name[128];
    jval *consts; /* immortal constants to free with the template */
    uint32_t n_consts, cap_consts;
    const char **undef; /* root frame: names that start undefined */
    uint32_t n_undef;
};

/* Lexer: tokens into the arena. Returns 0 or -1 with err ("name:line:col: msg"). */
int jx_lex(const char *src, size_t len, const char *name, jarena *a, jtok **toks, size_t *n_toks, ms_err *err);
/* Parser: builds t->body from the tokens. */
int jx_parse(ms_jinja *t, const jtok *toks, size_t n, ms_err *err);
/* Jinja's static scoping (idtracking.py): which names each frame starts as undefined */
int jx_analyze_scopes(ms_jinja *t, ms_err *err);

/* ---- render context ---------------------------------------------------------------- */

typedef struct jbuf {
    char *v;
    size_t n, cap;
} jbuf;

typedef struct jctx jctx;

/* Heap objects that may be part of a cycle. */
struct jobj {
    jhdr h;
    uint8_t kind;     /* jokind */
    bool cleared;
    jobj *prev, *next; /* render registry */
};

typedef struct jscope {
    jobj o;
    struct jscope *parent;
    uint32_t n, cap;
    const char **names; /* names owned by the template or by `owned` */
    jval *vals;
    jstr **owned;       /* name strings created at render time (kwargs of dict()/namespace()) */
    uint32_t n_owned;
} jscope;

typedef struct jns {
    jobj o;
    jdict *d;
} jns;

typedef struct jmacro {
    jobj o;
    const jnode *def;   /* N_MACRO or N_CALLBLOCK */
    jscope *closure;
    bool is_caller;
} jmacro;

typedef struct jfunc {
    jobj o;
    int id;      /* builtin id (jinja_methods.c) */
    jval self;   /* bound object (str for str methods, ...) */
    const char *name;
} jfunc;

typedef struct jloop {
    jobj o;
    jlist *items;
    int64_t index0;
    int depth0;
    jval last_changed; /* loop.changed() */
    bool has_changed;
    const jnode *node; /* recursive loops: the N_FOR */
    jscope *scope;     /* the scope the loop runs in (recursive calls) */
} jloop;

typedef struct jcycler {
    jobj o;
    jlist *items;
    int64_t pos;
} jcycler;

typedef struct jjoiner {
    jobj o;
    jval sep;
    bool used;
} jjoiner;

struct jctx {
    const ms_jinja *t;
    ms_jinja_opts opts;
    ms_err *err;
    bool failed;
    bool raised;        /* error came from raise_exception */
    uint64_t steps;
    uint64_t mem;
    int depth;
    jobj reg;           /* registry sentinel (circular list) */
    jbuf *out;          /* current output buffer */
    uint64_t out_total; /* bytes written to every buffer (output limit) */
    jscope *globals;
    bool autoescape;
};

/* errors: record "name:line:col: msg" (node may be NULL) and return -1 */
int jx_fail(jctx *c, const jnode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int jx_fail_limit(jctx *c, const jnode *at, const char *what);
/* Jinja evaluates generator filters lazily: a run-time error inside one is caught
 * (1, *msg = the message; the context is usable again) and raised later when the
 * generator is consumed. Limit and memory errors are not caught (0). */
int jx_catch(jctx *c, struct jstr **msg);
int jx_reraise(jctx *c, const struct jstr *msg);
/* charge one step of work */
int jx_step(jctx *c, const jnode *at, uint64_t n);

/* memory */
void *jx_alloc(jctx *c, size_t n);  /* charged, zeroed; NULL after recording an error */
void jx_free(jctx *c, void *p, size_t n);

/* buffers (not charged: output is bounded by max_output) */
int jx_buf_put(jctx *c, jbuf *b, const char *s, size_t n);
int jx_buf_putc(jctx *c, jbuf *b, char ch);
void jx_buf_free(jbuf *b);

/* ---- value API (jinja_value.c) ------------------------------------------------------ */

static inline jval jv_none(void) { return (jval){.t = JT_NONE}; }
static inline jval jv_undef(void) { return (jval){.t = JT_UNDEF}; }
static inline jval jv_bool(bool b) { return (jval){.t = JT_BOOL, .b = b}; }
static inline jval jv_int(int64_t i) { return (jval){.t = JT_INT, .i = i}; }
static inline jval jv_float(double f) { return (jval){.t = JT_FLOAT, .f = f}; }
static inline bool jv_is_str(jval v) { return v.t == JT_STR; }
static inline bool jv_is_num(jval v) { return v.t == JT_INT || v.t == JT_FLOAT || v.t == JT_BOOL; }
static inline bool jv_is_obj(jval v, jokind k) { return v.t == JT_OBJ && v.o->kind == k; }

jval jv_inc(jval v);
void jv_dec(jctx *c, jval v);
void jv_dec_n(jctx *c, jval *v, size_t n);

/* strings */
int jv_str(jctx *c, const char *s, size_t n, jval *out);
int jv_strz(jctx *c, const char *s, jval *out);
int jv_str_buf(jctx *c, jbuf *b, jval *out); /* takes the buffer's bytes */
static inline const char *jv_s(jval v) { return v.s->s; }
static inline size_t jv_len(jval v) { return v.s->len; }
int64_t jv_str_ncp(jval v); /* code points */
/* byte offset of code point i (0 <= i <= ncp) */
size_t jv_str_off(jval v, int64_t i);

/* lists / dicts */
int jv_list(jctx *c, uint32_t cap, int kind, jval *out); /* kind: jlkind */
static inline bool jv_is_seq(jval v) { return v.t == JT_LIST && (v.l->kind == LK_LIST || v.l->kind == LK_TUPLE); }
int jv_list_push(jctx *c, jval l, jval item); /* takes item's reference */
int jv_dict(jctx *c, jval *out);
int jv_dict_set(jctx *c, jdict *d, jval k, jval v); /* takes both references */
int jv_dict_get(jdict *d, jval k, jval *out);       /* borrowed; 0 found, -1 not */
int jv_dict_gets(jdict *d, const char *k, jval *out);

/* objects */
void *jv_obj_new(jctx *c, jokind kind, size_t size); /* registered, rc 1 */
static inline jval jv_obj(void *o) { return (jval){.t = JT_OBJ, .o = (jobj *)o}; }
void jx_registry_clear(jctx *c);

/* undefined values with a hint: "'x' is undefined" etc. */
int jv_undef_hint(jctx *c, jval *out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Python semantics */
bool jv_truthy(jval v);
const char *jv_type_name(jval v); /* Python type name: 'str', 'int', 'dict', 'NoneType', ... */
int jv_to_str(jctx *c, jval v, jbuf *b);  /* str(v) appended */
int jv_repr(jctx *c, jval v, jbuf *b);    /* repr(v) appended */
int jv_repr_sorted(jctx *c, jval v, jbuf *b); /* pprint.pformat(v) without line wrapping: dict keys sorted */
int jv_stringify(jctx *c, jval v, jval *out); /* str(v) as a value (strings returned as is) */
bool jv_eq(jval a, jval b);
/* a < b etc.: 0 ok (*res = -1/0/1), -1 TypeError recorded against `at` */
int jv_cmp(jctx *c, const jnode *at, jval a, jval b, const char *op, int *res);
uint64_t jv_hash(jval v);
bool jv_hashable(jval v);
void jv_float_repr(double f, char *buf, size_t len); /* Python repr(float) */
bool jx_py_space(uint32_t cp); /* str.isspace() */
/* decode one UTF-8 code point at s[*i] (valid UTF-8 assumed), advancing *i */
uint32_t jx_utf8_next(const char *s, size_t *i);
bool jx_utf8_valid(const char *s, size_t n); /* strict: no overlongs, surrogates, > U+10FFFF */

/* JSON */
int jv_from_json(jctx *c, struct json_object *j, jval *out);
typedef struct jjson_opts {
    bool ensure_ascii;
    bool sort_keys;
    const char *indent; /* NULL: none */
    size_t indent_len;
    const char *item_sep, *key_sep;
    size_t item_sep_len, key_sep_len;
} jjson_opts;
int jv_to_json(jctx *c, const jnode *at, jval v, const jjson_opts *o, jbuf *b);

/* ---- evaluation (jinja_eval.c) ------------------------------------------------------ */

int jx_eval(jctx *c, const jnode *e, jscope *s, jval *out);
/* call a value: positional args and keyword args (names[i] = values) */
int jx_call(jctx *c, const jnode *at, jval fn, jval *args, uint32_t n, const char **kw, jval *kwv, uint32_t nkw,
            jval *out);
/* obj.name (getattr semantics: attribute first, then item) and obj[key] (item first) */
int jx_getattr(jctx *c, const jnode *at, jval obj, const char *name, jval *out);
int jx_getitem(jctx *c, const jnode *at, jval obj, jval key, jval *out);
/* iterate: a new list of the items (str: characters, dict: keys); TypeError if not iterable */
int jx_iter_list(jctx *c, const jnode *at, jval v, jval *out);
/* obj[lo:hi:st] (NONE for a missing part) */
int jx_slice(jctx *c, const jnode *at, jval obj, jval lo, jval hi, jval st, jval *out);
/* an Undefined used where a value is needed: its error */
int jx_undef_fail(jctx *c, const jnode *at, jval u);
int jx_binop(jctx *c, const jnode *at, int op, jval a, jval b, jval *out);
bool jx_contains_ok(jctx *c, const jnode *at, jval needle, jval hay, bool *res);

/* ---- filters, tests, methods, globals ------------------------------------------------ */

int jx_filter_id(const char *name); /* -1 unknown */

/* filter functions: the input value, then the call's arguments */
#define JX_FILTER_ARGS jctx *c, const jnode *at, jval v, jval *args, uint32_t n, const char **kw, jval *kwv, uint32_t nkw, jval *out
#define JX_FILTER_FN(fname) int fname(JX_FILTER_ARGS)
/* bind the call's arguments to named parameters A[0..] (jx_bind) */
#define BIND(fname, ...)                                                                          \
    static const char *const P_[] = {__VA_ARGS__};                                                \
    jval A[sizeof P_ / sizeof P_[0]];                                                             \
    if (jx_bind(c, at, fname, P_, sizeof P_ / sizeof P_[0], args, n, kw, kwv, nkw, A) < 0) return -1
#define NOARGS(fname)                                                                             \
    if (n || nkw) return jx_fail(c, at, "TypeError: %s() takes 1 positional argument but %u were given", fname, 1 + n + nkw)
#define ARG(i, dflt) (jx_given(A[i]) ? A[i] : (dflt))
/* the sequence filters (jinja_seqfilters.c) */
#define JX_SEQ_FILTERS(X)                                                                                              \
    X(batch) X(slice) X(dictsort) X(first) X(last) X(groupby) X(items) X(join) X(list) X(map) X(select) X(reject)   \
        X(selectattr) X(rejectattr) X(max) X(min) X(reverse) X(sort) X(sum) X(unique)
#define JX_DECLARE_FILTER(name) JX_FILTER_FN(jx_f_##name);
JX_SEQ_FILTERS(JX_DECLARE_FILTER)
int jx_as_int(jctx *c, const jnode *at, jval v, const char *what, int64_t *out); /* int/bool, else TypeError */
int jx_need_len(jctx *c, const jnode *at, jval v, int64_t *len);                 /* Python len() */
int jx_test_id(const char *name);
int jx_filter(jctx *c, const jnode *at, int id, jval v, jval *args, uint32_t n, const char **kw, jval *kwv,
              uint32_t nkw, jval *out);
int jx_test(jctx *c, const jnode *at, int id, jval v, jval *args, uint32_t n, const char **kw, jval *kwv,
            uint32_t nkw, bool *out);

/* attribute lookup of a Python method on str/dict/list, or of a global name */
int jx_method_lookup(jctx *c, jval obj, const char *name, jval *out); /* 1 found, 0 not, -1 error */
int jx_global_lookup(jctx *c, const char *name, jval *out);          /* 1 found, 0 not */
int jx_func_call(jctx *c, const jnode *at, jfunc *f, jval *args, uint32_t n, const char **kw, jval *kwv,
                 uint32_t nkw, jval *out);
/* markupsafe.escape(): Markup stays, anything else is str()'d and HTML-escaped into Markup */
int jx_escape(jctx *c, jval v, jval *out);
/* Python's str % args, and str.format(*args (tuple), **kwargs (dict)) (jinja_format.c) */
int jx_percent_format(jctx *c, const jnode *at, jval fmt, jval args, jval *out);
int jx_str_format(jctx *c, const jnode *at, jval fmt, jval args, jval kwargs, jval *out);

/* str primitives shared by methods and filters (jinja_methods.c) */
int jx_str_case(jctx *c, jval s, char mode, jval *out); /* 'u'pper 'l'ower 's'wap 't'itle 'c'apitalize */
int jx_str_strip(jctx *c, jval s, jval chars, char mode, jval *out); /* 'b'oth 'l'eft 'r'ight */
int jx_str_replace(jctx *c, jval s, jval old, jval new_, int64_t count, jval *out);
int jx_str_pad(jctx *c, jval s, int64_t width, uint32_t fill, char align, jval *out); /* '<' '>' '^' */
int jx_str_split(jctx *c, const jnode *at, jval s, jval sep, int64_t maxsplit, bool right, jval *out);
int jx_str_splitlines(jctx *c, jval s, bool keepends, jval *out);
int jx_dict_items(jctx *c, jdict *d, jval *out); /* dict_items view of (key, value) tuples */
bool jx_word_char(uint32_t cp);                 /* regex \w */

/* Bind positional/keyword args to a signature: params[i] names, out[i] = value or JT_UNDEF
 * with fl = 0xff marking "missing". Errors name `fname`. */
#define JX_MISSING 0xffu
int jx_bind(jctx *c, const jnode *at, const char *fname, const char *const *params, uint32_t np, jval *args,
            uint32_t n, const char **kw, jval *kwv, uint32_t nkw, jval *out);
static inline bool jx_given(jval v) { return !(v.t == JT_UNDEF && v.fl == JX_MISSING); }

#endif

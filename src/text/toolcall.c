/* toolcall.c - incremental parsing of assistant output into content, reasoning and
 * tool calls (see toolcall.h).
 *
 * One state machine serves every format; an ops table gives the markers (a section
 * around all calls, the markers around one call) and the function that turns one
 * call's text into (name, arguments). Input is appended to a pending buffer; each step
 * looks for the earliest marker the current state accepts, emits the text before it,
 * and keeps back a tail that could still become a marker, so decisions never depend on
 * where the input was split. A call is decided when its end marker arrives (or, for
 * GigaChat, when its JSON object closes, or at finish); a call that does not parse is
 * put back into the content as written. Whitespace at the edges of content and
 * reasoning is held until it turns out to be inner whitespace, so it can be trimmed.
 */
#include "toolcall.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"
#include "strbuf.h"
#include "tokenizer.h"

/* ---- growable byte buffer ------------------------------------------------------------------- */

typedef struct sbuf {
    char *v;
    size_t n, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n)
{
    if (n == 0) return 0;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *v = realloc(b->v, cap);
        if (!v) return -ENOMEM;
        b->v = v;
        b->cap = cap;
    }
    memcpy(b->v + b->n, s, n);
    b->n += n;
    b->v[b->n] = 0;
    return 0;
}

static int sb_puts(sbuf *b, const char *s) { return sb_put(b, s, strlen(s)); }

static void sb_consume(sbuf *b, size_t n)
{
    memmove(b->v, b->v + n, b->n - n);
    b->n -= n;
    if (b->v) b->v[b->n] = 0;
}

static int json_dumps(json_object *o, sbuf *b);

/* ---- ops -------------------------------------------------------------------------------------- */

typedef struct ms_chat_parser parser;
typedef int (*parse_call_fn)(parser *p, const char *s, size_t n, json_object **args, char **name, char **id);

struct ms_toolcall_ops {
    const char *name;
    const char *section_begin, *section_end; /* around all calls (NULL: none) */
    const char *call_begin, *call_end;       /* around one call (call_end NULL: a JSON object) */
    const char *drop;                        /* a marker removed from content (NULL: none) */
    parse_call_fn parse;
    bool reasoning;                          /* <think>...</think> */
    bool args_as_string;                     /* the template concatenates arguments as text */
    const char *stops[4], *stops_no_tools[4];
    const char *force_open, *force_named;    /* a forced call's opening; + printf(force_named, name) */
};

#define THINK_OPEN "<think>"
#define THINK_CLOSE "</think>"

/* ---- the parser ------------------------------------------------------------------------------ */

enum { S_REASONING, S_CONTENT, S_SECTION, S_CALL };

struct ms_chat_parser {
    const ms_toolcall_ops *ops;
    json_object *tools;
    int state;
    sbuf pending;          /* input not processed yet */
    sbuf content, reasoning;
    sbuf held;             /* whitespace not yet known to be inner */
    sbuf call;             /* the current call's text (after call_begin) */
    sbuf between;          /* text between the calls of a section */
    bool content_any, reasoning_any, had_reasoning;
    size_t content_out, reasoning_out; /* delta positions */
    ms_toolcall *calls;
    size_t n_calls, cap_calls, calls_out;
    bool finished;
};

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* text for the content or reasoning stream, trimming at both ends */
static int emit(parser *p, bool reasoning, const char *s, size_t n)
{
    sbuf *dst = reasoning ? &p->reasoning : &p->content;
    bool *any = reasoning ? &p->reasoning_any : &p->content_any;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && is_ws(s[j])) j++;
        if (j > i) { /* whitespace: dropped at the start, held otherwise */
            if (*any && sb_put(&p->held, s + i, j - i) < 0) return -ENOMEM;
            i = j;
            continue;
        }
        while (j < n && !is_ws(s[j])) j++;
        if (sb_put(dst, p->held.v, p->held.n) < 0 || sb_put(dst, s + i, j - i) < 0) return -ENOMEM;
        p->held.n = 0;
        *any = true;
        i = j;
    }
    return 0;
}

/* the held whitespace turned out to be trailing */
static void drop_held(parser *p) { p->held.n = 0; }

static int switch_state(parser *p, int state)
{
    drop_held(p);
    if (state == S_REASONING) {
        p->had_reasoning = true;
        p->reasoning_any = false;
    }
    p->state = state;
    return 0;
}

/* earliest occurrence of any marker in s[0..n); *hold = bytes at the end that may begin one */
static long find_marker(const char *s, size_t n, const char *const *m, int nm, int *which, size_t *hold)
{
    long best = -1;
    *hold = 0;
    for (int k = 0; k < nm; k++) {
        if (!m[k]) continue;
        size_t ml = strlen(m[k]);
        const char *h = memmem(s, n, m[k], ml);
        if (h && (best < 0 || h - s < best)) {
            best = h - s;
            *which = k;
        }
        /* longest proper prefix of the marker that ends s */
        for (size_t l = ml - 1 < n ? ml - 1 : n; l > 0; l--)
            if (!memcmp(s + n - l, m[k], l)) {
                if (l > *hold) *hold = l;
                break;
            }
    }
    return best;
}

static int add_call(parser *p, char *name, json_object *args, char *id)
{
    if (p->n_calls == p->cap_calls) {
        size_t cap = p->cap_calls ? p->cap_calls * 2 : 4;
        ms_toolcall *c = realloc(p->calls, cap * sizeof *c);
        if (!c) return -ENOMEM;
        p->calls = c;
        p->cap_calls = cap;
    }
    ms_toolcall *c = &p->calls[p->n_calls];
    sbuf a = {0};
    int rc = json_dumps(args, &a);
    if (!id) {
        char tmp[16];
        snprintf(tmp, sizeof tmp, "call%05zu", p->n_calls % 100000);
        id = strdup(tmp);
    }
    if (rc < 0 || !id || !a.v) {
        free(a.v);
        free(id);
        free(name);
        return -ENOMEM;
    }
    *c = (ms_toolcall){.id = id, .name = name, .arguments = a.v};
    p->n_calls++;
    return 0;
}

/* a finished call's text: a call, or back into the content as written */
static int close_call(parser *p, const char *s, size_t n, bool with_end)
{
    json_object *args = NULL;
    char *name = NULL, *id = NULL;
    if (p->ops->parse(p, s, n, &args, &name, &id) == 0) {
        drop_held(p);
        int rc = add_call(p, name, args, id);
        json_object_put(args);
        return rc;
    }
    json_object_put(args);
    free(name);
    free(id);
    int rc = emit(p, false, p->ops->call_begin, strlen(p->ops->call_begin));
    if (rc == 0) rc = emit(p, false, s, n);
    if (rc == 0 && with_end && p->ops->call_end) rc = emit(p, false, p->ops->call_end, strlen(p->ops->call_end));
    return rc;
}

/* the end of a JSON object at the start of s (after whitespace): its length, 0 if not
 * closed yet; when s does not start with one, *bad is set and the whitespace length
 * returned */
static size_t json_object_end(const char *s, size_t n, bool *bad)
{
    size_t i = 0;
    *bad = false;
    while (i < n && is_ws(s[i])) i++;
    if (i == n) return 0;
    if (s[i] != '{') {
        *bad = true;
        return i;
    }
    int depth = 0;
    bool str = false, esc = false;
    for (; i < n; i++) {
        char c = s[i];
        if (str) {
            if (esc) esc = false;
            else if (c == '\\') esc = true;
            else if (c == '"') str = false;
            continue;
        }
        if (c == '"') str = true;
        else if (c == '{' || c == '[') depth++;
        else if ((c == '}' || c == ']') && --depth == 0) return i + 1;
    }
    return 0;
}

/* one step on the pending input; returns 1 if it made progress, 0 if it needs more input */
static int step(parser *p, bool final)
{
    const ms_toolcall_ops *o = p->ops;
    const char *s = p->pending.v;
    size_t n = p->pending.n, hold = 0;
    int which = -1, rc;
    long at;
    if (n == 0) return 0;
    switch (p->state) {
    case S_REASONING: {
        const char *m[] = {THINK_CLOSE};
        at = find_marker(s, n, m, 1, &which, &hold);
        size_t upto = at >= 0 ? (size_t)at : final ? n : n - hold;
        if ((rc = emit(p, true, s, upto)) < 0) return rc;
        if (at >= 0) {
            sb_consume(&p->pending, upto + strlen(THINK_CLOSE));
            switch_state(p, S_CONTENT);
            return 1;
        }
        sb_consume(&p->pending, upto);
        return upto > 0;
    }
    case S_CONTENT: {
        const char *m[4] = {o->section_begin ? o->section_begin : o->call_begin, o->drop,
                            o->reasoning && !p->content_any && !p->had_reasoning ? THINK_OPEN : NULL, NULL};
        at = find_marker(s, n, m, 3, &which, &hold);
        size_t upto = at >= 0 ? (size_t)at : final ? n : n - hold;
        if (at >= 0 && which == 2) { /* <think> opens reasoning only before any content */
            bool text_before = false;
            for (size_t i = 0; i < upto && !text_before; i++) text_before = !is_ws(s[i]);
            if (text_before) upto += strlen(THINK_OPEN), at = -1;
        }
        if ((rc = emit(p, false, s, upto)) < 0) return rc;
        if (at < 0) {
            sb_consume(&p->pending, upto);
            return upto > 0;
        }
        sb_consume(&p->pending, upto + strlen(m[which]));
        if (which == 0) { /* held whitespace stays until the call turns out valid */
            p->call.n = 0;
            p->state = o->section_begin ? S_SECTION : S_CALL;
            return 1;
        }
        if (which == 2) return switch_state(p, S_REASONING), 1;
        return 1; /* a dropped marker */
    }
    case S_SECTION: {
        const char *m[] = {o->call_begin, o->section_end};
        at = find_marker(s, n, m, 2, &which, &hold);
        size_t upto = at >= 0 ? (size_t)at : final ? n : n - hold;
        /* text between calls: whitespace separates them; anything else stays visible as
         * content (decided once the whole stretch is known) */
        if ((rc = sb_put(&p->between, s, upto)) < 0) return rc;
        if (at < 0 && !final) {
            sb_consume(&p->pending, upto);
            return upto > 0;
        }
        size_t k = 0;
        while (k < p->between.n && is_ws(p->between.v[k])) k++;
        if (k < p->between.n && (rc = emit(p, false, p->between.v, p->between.n)) < 0) return rc;
        p->between.n = 0;
        if (at < 0) {
            sb_consume(&p->pending, upto);
            return upto > 0;
        }
        sb_consume(&p->pending, upto + strlen(m[which]));
        if (which == 0) {
            p->call.n = 0;
            p->state = S_CALL;
        } else {
            p->state = S_CONTENT;
        }
        return 1;
    }
    case S_CALL: {
        if (!o->call_end) { /* a JSON object: complete when its braces balance */
            if ((rc = sb_put(&p->call, s, n)) < 0) return rc;
            sb_consume(&p->pending, n);
            bool bad;
            size_t end = json_object_end(p->call.v, p->call.n, &bad);
            if (!end && !bad) return 0;
            /* (not a JSON object: the marker and the whitespace become content, the rest is read again) */
            sbuf rest = {0};
            if (sb_put(&rest, p->call.v + end, p->call.n - end) < 0) return -ENOMEM;
            p->call.n = end;
            rc = close_call(p, p->call.v, p->call.n, false);
            p->state = S_CONTENT;
            if (rc == 0 && rest.n) { /* what follows the call is read again as content */
                sbuf tail = p->pending;
                p->pending = rest;
                rc = sb_put(&p->pending, tail.v, tail.n);
                free(tail.v);
            } else {
                free(rest.v);
            }
            return rc < 0 ? rc : 1;
        }
        const char *m[] = {o->call_end};
        at = find_marker(s, n, m, 1, &which, &hold);
        size_t upto = at >= 0 ? (size_t)at : final ? n : n - hold;
        if ((rc = sb_put(&p->call, s, upto)) < 0) return rc;
        if (at < 0) {
            sb_consume(&p->pending, upto);
            return upto > 0;
        }
        sb_consume(&p->pending, upto + strlen(o->call_end));
        rc = close_call(p, p->call.v ? p->call.v : "", p->call.n, true);
        p->call.n = 0;
        p->state = o->section_begin ? S_SECTION : S_CONTENT;
        return rc < 0 ? rc : 1;
    }
    }
    return 0;
}

static int run(parser *p, bool final)
{
    int rc;
    while ((rc = step(p, final)) > 0) {
    }
    return rc;
}

int ms_chat_parser_feed(ms_chat_parser *p, const char *text, size_t len, ms_err *err)
{
    if (p->finished) return ms_errf(err, EINVAL, "chat parser: feed after finish");
    if (sb_put(&p->pending, text, len) < 0) return ms_errf(err, ENOMEM, "out of memory");
    int rc = run(p, false);
    return rc < 0 ? ms_errf(err, -rc, "chat parser: out of memory") : 0;
}

int ms_chat_parser_finish(ms_chat_parser *p, ms_err *err)
{
    if (p->finished) return 0;
    int rc = run(p, true);
    if (rc == 0 && p->state == S_SECTION) { /* a section cut short: its loose text is content */
        size_t k = 0;
        while (k < p->between.n && is_ws(p->between.v[k])) k++;
        if (k < p->between.n) rc = emit(p, false, p->between.v, p->between.n);
        p->between.n = 0;
    }
    if (rc == 0 && p->state == S_CALL) { /* cut short (a stop token, max tokens): complete it if it parses */
        rc = close_call(p, p->call.v ? p->call.v : "", p->call.n, false);
        p->state = S_CONTENT;
    }
    drop_held(p);
    p->finished = true;
    return rc < 0 ? ms_errf(err, -rc, "chat parser: out of memory") : 0;
}

/* ---- results ------------------------------------------------------------------------------------- */

static size_t utf8_whole(const char *s, size_t n)
{
    size_t k = n;
    while (k > 0 && ((unsigned char)s[k - 1] & 0xC0) == 0x80 && n - k < 3) k--;
    if (k == 0) return n;
    unsigned char b = (unsigned char)s[k - 1];
    size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    return n - (k - 1) >= need ? n : k - 1;
}

void ms_chat_parser_delta(ms_chat_parser *p, ms_chat_delta *d)
{
    size_t cn = utf8_whole(p->content.v ? p->content.v : "", p->content.n);
    size_t rn = utf8_whole(p->reasoning.v ? p->reasoning.v : "", p->reasoning.n);
    if (p->finished) {
        cn = p->content.n;
        rn = p->reasoning.n;
    }
    *d = (ms_chat_delta){.content = p->content.v ? p->content.v + p->content_out : "",
                         .content_len = cn - p->content_out,
                         .reasoning = p->reasoning.v ? p->reasoning.v + p->reasoning_out : "",
                         .reasoning_len = rn - p->reasoning_out,
                         .first_call = p->calls_out,
                         .n_calls = p->n_calls - p->calls_out};
    p->content_out = cn;
    p->reasoning_out = rn;
    p->calls_out = p->n_calls;
}

const char *ms_chat_parser_content(const ms_chat_parser *p, size_t *len)
{
    if (len) *len = p->content.n;
    return p->content.v ? p->content.v : "";
}

const char *ms_chat_parser_reasoning(const ms_chat_parser *p, size_t *len)
{
    if (len) *len = p->reasoning.n;
    if (!p->had_reasoning) return NULL;
    return p->reasoning.v ? p->reasoning.v : "";
}

size_t ms_chat_parser_n_calls(const ms_chat_parser *p) { return p->n_calls; }
const ms_toolcall *ms_chat_parser_call(const ms_chat_parser *p, size_t i) { return i < p->n_calls ? &p->calls[i] : NULL; }

json_object *ms_chat_parser_message(const ms_chat_parser *p)
{
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string("assistant"));
    size_t cl, rl;
    const char *c = ms_chat_parser_content(p, &cl), *r = ms_chat_parser_reasoning(p, &rl);
    json_object_object_add(m, "content", cl || !p->n_calls ? json_object_new_string_len(c, (int)cl) : NULL);
    if (r) json_object_object_add(m, "reasoning_content", json_object_new_string_len(r, (int)rl));
    if (p->n_calls) {
        json_object *arr = json_object_new_array();
        for (size_t i = 0; i < p->n_calls; i++) {
            json_object *tc = json_object_new_object(), *fn = json_object_new_object();
            json_object_object_add(tc, "id", json_object_new_string(p->calls[i].id));
            json_object_object_add(tc, "type", json_object_new_string("function"));
            json_object_object_add(fn, "name", json_object_new_string(p->calls[i].name));
            json_object *args = p->ops->args_as_string ? NULL : json_tokener_parse(p->calls[i].arguments);
            json_object_object_add(fn, "arguments", args ? args : json_object_new_string(p->calls[i].arguments));
            json_object_object_add(tc, "function", fn);
            json_object_array_add(arr, tc);
        }
        json_object_object_add(m, "tool_calls", arr);
    }
    return m;
}

int ms_chat_parser_new(const ms_toolcall_ops *ops, json_object *tools, bool in_reasoning, ms_chat_parser **out,
                       ms_err *err)
{
    *out = NULL;
    parser *p = calloc(1, sizeof *p);
    if (!p) return ms_errf(err, ENOMEM, "out of memory");
    p->ops = ops;
    p->tools = tools ? json_object_get(tools) : NULL;
    p->state = S_CONTENT;
    if (in_reasoning && ops->reasoning) switch_state(p, S_REASONING);
    *out = p;
    return 0;
}

void ms_chat_parser_free(ms_chat_parser *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n_calls; i++) {
        free(p->calls[i].id);
        free(p->calls[i].name);
        free(p->calls[i].arguments);
    }
    free(p->calls);
    free(p->pending.v);
    free(p->content.v);
    free(p->reasoning.v);
    free(p->held.v);
    free(p->call.v);
    free(p->between.v);
    json_object_put(p->tools);
    free(p);
}

/* ---- JSON in json.dumps' style -------------------------------------------------------------------- */

static int dumps_str(const char *s, size_t n, sbuf *b)
{
    int rc = sb_put(b, "\"", 1);
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"') rc = sb_put(b, "\\\"", 2);
        else if (c == '\\') rc = sb_put(b, "\\\\", 2);
        else if (c == '\n') rc = sb_put(b, "\\n", 2);
        else if (c == '\r') rc = sb_put(b, "\\r", 2);
        else if (c == '\t') rc = sb_put(b, "\\t", 2);
        else if (c == '\b') rc = sb_put(b, "\\b", 2);
        else if (c == '\f') rc = sb_put(b, "\\f", 2);
        else if (c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            rc = sb_put(b, e, 6);
        } else {
            rc = sb_put(b, (const char *)&s[i], 1);
        }
    }
    return rc ? rc : sb_put(b, "\"", 1);
}

static int dumps_rec(json_object *o, sbuf *b, int depth)
{
    if (depth > 256) return -EINVAL;
    switch (json_object_get_type(o)) {
    case json_type_null: return sb_puts(b, "null");
    case json_type_boolean: return sb_puts(b, json_object_get_boolean(o) ? "true" : "false");
    case json_type_int: {
        char t[32];
        snprintf(t, sizeof t, "%lld", (long long)json_object_get_int64(o));
        return sb_puts(b, t);
    }
    case json_type_double: {
        char t[40];
        double d = json_object_get_double(o);
        if (d != d || d - d != 0) return sb_puts(b, "null"); /* inf/nan: not JSON */
        ms_jinja_float_repr(d, t, sizeof t);
        return sb_puts(b, t);
    }
    case json_type_string: return dumps_str(json_object_get_string(o), (size_t)json_object_get_string_len(o), b);
    case json_type_array: {
        int rc = sb_puts(b, "[");
        for (size_t i = 0; i < json_object_array_length(o) && rc == 0; i++) {
            if (i) rc = sb_puts(b, ", ");
            if (rc == 0) rc = dumps_rec(json_object_array_get_idx(o, i), b, depth + 1);
        }
        return rc ? rc : sb_puts(b, "]");
    }
    case json_type_object: {
        int rc = sb_puts(b, "{");
        bool first = true;
        json_object_object_foreach(o, k, v)
        {
            if (rc) break;
            if (!first) rc = sb_puts(b, ", ");
            first = false;
            if (rc == 0) rc = dumps_str(k, strlen(k), b);
            if (rc == 0) rc = sb_puts(b, ": ");
            if (rc == 0) rc = dumps_rec(v, b, depth + 1);
        }
        return rc ? rc : sb_puts(b, "}");
    }
    }
    return 0;
}

static int json_dumps(json_object *o, sbuf *b)
{
    int rc = dumps_rec(o, b, 0);
    if (rc == 0 && !b->v) rc = sb_puts(b, "{}");
    return rc;
}

/* ---- one call's text per format -------------------------------------------------------------- */

static const char *find(const char *s, size_t n, const char *m)
{
    return memmem(s, n, m, strlen(m));
}

static void trim(const char **s, size_t *n)
{
    while (*n && is_ws(**s)) (*s)++, (*n)--;
    while (*n && is_ws((*s)[*n - 1])) (*n)--;
}

/* a name: non-empty, no whitespace or markup characters */
static char *take_name(const char *s, size_t n)
{
    trim(&s, &n);
    if (!n) return NULL;
    for (size_t i = 0; i < n; i++)
        if (is_ws(s[i]) || s[i] == '<' || s[i] == '>' || s[i] == '"') return NULL;
    return strndup(s, n);
}

/* a whole JSON text s[0..n) (surrounding whitespace allowed) into *out (NULL for null) */
static bool json_text(const char *s, size_t n, json_object **out)
{
    *out = NULL;
    trim(&s, &n);
    if (!n || n > (64u << 20)) return false;
    char *copy = malloc(n + 1);
    json_tokener *tk = copy ? json_tokener_new_ex(256) : NULL;
    if (!tk) {
        free(copy);
        return false;
    }
    memcpy(copy, s, n);
    copy[n] = 0; /* the NUL ends numbers and literals */
    json_object *o = json_tokener_parse_ex(tk, copy, (int)n + 1);
    bool ok = json_tokener_get_error(tk) == json_tokener_success && (size_t)json_tokener_get_parse_end(tk) >= n;
    json_tokener_free(tk);
    free(copy);
    if (!ok) {
        json_object_put(o);
        return false;
    }
    *out = o;
    return true;
}

/* a JSON object text; NULL if it is not one */
static json_object *json_obj(const char *s, size_t n)
{
    json_object *o;
    if (json_text(s, n, &o) && json_object_is_type(o, json_type_object)) return o;
    json_object_put(o);
    return NULL;
}

/* arguments given as an object, or as a string holding an object */
static json_object *args_value(json_object *v)
{
    if (!v) return json_object_new_object();
    if (json_object_is_type(v, json_type_object)) return json_object_get(v);
    if (json_object_is_type(v, json_type_string))
        return json_obj(json_object_get_string(v), (size_t)json_object_get_string_len(v));
    return NULL;
}

/* {"name": ..., "arguments": {...}} (Hermes/Qwen3, GigaChat); "parameters" also accepted */
static int parse_json_call(parser *p, const char *s, size_t n, json_object **args, char **name, char **id)
{
    (void)p;
    (void)id;
    json_object *o = json_obj(s, n), *nm, *a = NULL;
    if (!o) return -1;
    if (!json_object_object_get_ex(o, "name", &nm) || !json_object_is_type(nm, json_type_string) ||
        !(*name = take_name(json_object_get_string(nm), (size_t)json_object_get_string_len(nm)))) {
        json_object_put(o);
        return -1;
    }
    if (!json_object_object_get_ex(o, "arguments", &a)) json_object_object_get_ex(o, "parameters", &a);
    *args = args_value(a);
    json_object_put(o);
    return *args ? 0 : -1;
}

/* DeepSeek-V3: function<｜tool▁sep｜>NAME\n```json\nARGS\n``` */
#define DS_SEP "<｜tool▁sep｜>"
static int parse_ds3(parser *p, const char *s, size_t n, json_object **args, char **name, char **id)
{
    (void)p;
    (void)id;
    const char *sep = find(s, n, DS_SEP);
    if (!sep) return -1;
    const char *r = sep + strlen(DS_SEP), *end = s + n;
    const char *nl = memchr(r, '\n', (size_t)(end - r));
    const char *fence = nl ? find(nl, (size_t)(end - nl), "```json") : NULL;
    if (!fence) return -1;
    const char *body = fence + 7, *close = NULL;
    for (const char *q = body; (q = find(q, (size_t)(end - q), "```")); q += 3) close = q; /* the last fence */
    if (!close) return -1;
    for (const char *q = close + 3; q < end; q++)
        if (!is_ws(*q)) return -1;
    if (!(*name = take_name(r, (size_t)(nl - r)))) return -1;
    *args = json_obj(body, (size_t)(close - body));
    return *args ? 0 : -1;
}

/* DeepSeek-V3.1: NAME<｜tool▁sep｜>ARGS */
static int parse_ds31(parser *p, const char *s, size_t n, json_object **args, char **name, char **id)
{
    (void)p;
    (void)id;
    const char *sep = find(s, n, DS_SEP);
    if (!sep || !(*name = take_name(s, (size_t)(sep - s)))) return -1;
    const char *a = sep + strlen(DS_SEP);
    *args = json_obj(a, (size_t)(s + n - a));
    return *args ? 0 : -1;
}

/* Kimi-K2: functions.NAME:IDX<|tool_call_argument_begin|>ARGS */
#define KIMI_ARG "<|tool_call_argument_begin|>"
static int parse_kimi(parser *p, const char *s, size_t n, json_object **args, char **name, char **id)
{
    (void)p;
    const char *sep = find(s, n, KIMI_ARG);
    if (!sep) return -1;
    const char *a = s;
    size_t al = (size_t)(sep - s);
    trim(&a, &al);
    const char *dot = memchr(a, '.', al), *colon = NULL;
    for (size_t i = al; i-- > 0;)
        if (a[i] == ':') {
            colon = a + i;
            break;
        }
    const char *nb = dot ? dot + 1 : a, *ne = colon && colon > nb ? colon : a + al;
    if (!(*name = take_name(nb, (size_t)(ne - nb)))) return -1;
    if (!(*id = strndup(a, al))) return -1;
    const char *v = sep + strlen(KIMI_ARG);
    *args = json_obj(v, (size_t)(s + n - v));
    return *args ? 0 : -1;
}

/* the JSON-schema type of parameter key of function fname in the request's tools */
static const char *param_type(parser *p, const char *fname, const char *key)
{
    if (!p->tools || !json_object_is_type(p->tools, json_type_array)) return NULL;
    for (size_t i = 0; i < json_object_array_length(p->tools); i++) {
        json_object *t = json_object_array_get_idx(p->tools, i), *f = t, *nm, *pr, *props, *k, *ty;
        json_object_object_get_ex(t, "function", &f);
        if (!f || !json_object_object_get_ex(f, "name", &nm) || strcmp(json_object_get_string(nm), fname) != 0) continue;
        if (!json_object_object_get_ex(f, "parameters", &pr) || !json_object_object_get_ex(pr, "properties", &props) ||
            !json_object_object_get_ex(props, key, &k) || !json_object_object_get_ex(k, "type", &ty))
            return NULL;
        if (json_object_is_type(ty, json_type_array)) { /* ["string", "null"]: the first non-null */
            for (size_t j = 0; j < json_object_array_length(ty); j++) {
                const char *x = json_object_get_string(json_object_array_get_idx(ty, j));
                if (x && strcmp(x, "null") != 0) return x;
            }
            return NULL;
        }
        return json_object_get_string(ty);
    }
    return NULL;
}

/* a value written as text: a string when the schema says so, else JSON if it parses */
static json_object *typed_value(parser *p, const char *fname, const char *key, const char *s, size_t n)
{
    const char *type = param_type(p, fname, key);
    if (!type || strcmp(type, "string") != 0) {
        json_object *o;
        if (json_text(s, n, &o) && (!type || !json_object_is_type(o, json_type_string)))
            return o; /* (NULL is JSON null) */
        json_object_put(o);
        const char *t = s;
        size_t tn = n;
        trim(&t, &tn);
        if (type && !strcmp(type, "boolean")) { /* Python-style True/False too */
            if (tn == 4 && !strncasecmp(t, "true", 4)) return json_object_new_boolean(1);
            if (tn == 5 && !strncasecmp(t, "false", 5)) return json_object_new_boolean(0);
        }
    }
    return json_object_new_string_len(s, (int)n);
}

/* GLM-4.5/4.6/4.7: NAME<arg_key>K</arg_key><arg_value>V</arg_value>... (newlines between allowed) */
static int parse_glm(parser *p, const char *s, size_t n, json_object **args, char **name, char **id)
{
    (void)id;
    const char *end = s + n, *k = find(s, n, "<arg_key>");
    if (!(*name = take_name(s, (size_t)((k ? k : end) - s)))) return -1;
    *args = json_object_new_object();
    while (k) {
        const char *ks = k + 9, *ke = find(ks, (size_t)(end - ks), "</arg_key>");
        if (!ke) return -1;
        const char *v = ke + 10;
        while (v < end && is_ws(*v)) v++;
        if ((size_t)(end - v) < 11 || memcmp(v, "<arg_value>", 11) != 0) return -1;
        const char *vs = v + 11, *ve = find(vs, (size_t)(end - vs), "</arg_value>");
        if (!ve) return -1;
        char *key = strndup(ks, (size_t)(ke - ks));
        if (!key) return -1;
        json_object_object_add(*args, key, typed_value(p, *name, key, vs, (size_t)(ve - vs)));
        free(key);
        const char *r = ve + 12;
        while (r < end && is_ws(*r)) r++;
        if (r == end) break;
        if ((size_t)(end - r) < 9 || memcmp(r, "<arg_key>", 9) != 0) return -1;
        k = r;
    }
    return 0;
}

/* Qwen3-Coder / Step: <function=NAME><parameter=K>\nV\n</parameter>...</function> */
static int parse_xml(parser *p, const char *s, size_t n, json_object **args, char **name, char **id)
{
    (void)id;
    const char *end = s + n, *f = s;
    while (f < end && is_ws(*f)) f++;
    if ((size_t)(end - f) < 10 || memcmp(f, "<function=", 10) != 0) return -1;
    const char *ns = f + 10, *ne = memchr(ns, '>', (size_t)(end - ns));
    if (!ne || !(*name = take_name(ns, (size_t)(ne - ns)))) return -1;
    const char *fe = find(ne, (size_t)(end - ne), "</function>");
    if (!fe) return -1;
    for (const char *q = fe + 11; q < end; q++)
        if (!is_ws(*q)) return -1;
    *args = json_object_new_object();
    const char *r = ne + 1;
    for (;;) {
        while (r < fe && is_ws(*r)) r++;
        if (r == fe) break;
        if ((size_t)(fe - r) < 11 || memcmp(r, "<parameter=", 11) != 0) return -1;
        const char *ks = r + 11, *ke = memchr(ks, '>', (size_t)(fe - ks));
        if (!ke) return -1;
        const char *vs = ke + 1, *close = find(vs, (size_t)(fe - vs), "</parameter>"), *ve = close;
        if (!close) return -1;
        if (vs < ve && *vs == '\n') vs++; /* the newlines the format puts around a value */
        if (ve > vs && ve[-1] == '\n') ve--;
        char *key = take_name(ks, (size_t)(ke - ks));
        if (!key) return -1;
        json_object_object_add(*args, key, typed_value(p, *name, key, vs, (size_t)(ve - vs)));
        free(key);
        r = close + 12;
    }
    return 0;
}

/* ---- the formats ------------------------------------------------------------------------------- */

static const ms_toolcall_ops formats[] = {
    {.name = "deepseek_v3", .section_begin = "<｜tool▁calls▁begin｜>", .section_end = "<｜tool▁calls▁end｜>",
     .call_begin = "<｜tool▁call▁begin｜>", .call_end = "<｜tool▁call▁end｜>", .parse = parse_ds3, .reasoning = true,
     .args_as_string = true, .stops = {"<｜end▁of▁sentence｜>"},
     .force_open = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>", .force_named = "%s\n```json\n"},
    {.name = "deepseek_v3_1", .section_begin = "<｜tool▁calls▁begin｜>", .section_end = "<｜tool▁calls▁end｜>",
     .call_begin = "<｜tool▁call▁begin｜>", .call_end = "<｜tool▁call▁end｜>", .parse = parse_ds31, .reasoning = true,
     .args_as_string = true, .stops = {"<｜end▁of▁sentence｜>"},
     .force_open = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>", .force_named = "%s<｜tool▁sep｜>"},
    {.name = "gigachat3_1", .call_begin = "<|function_call|>", .parse = parse_json_call, .stops = {"</s>", "<|message_sep|>"},
     .force_open = "<|function_call|>", .force_named = "{\"name\": \"%s\", \"arguments\": "},
    {.name = "gigachat3", .call_begin = "function call<|role_sep|>", .drop = "<|message_sep|>", .parse = parse_json_call,
     .stops = {"</s>"}, .stops_no_tools = {"</s>", "<|message_sep|>"}},
    {.name = "glm4", .call_begin = "<tool_call>", .call_end = "</tool_call>", .parse = parse_glm, .reasoning = true,
     .stops = {"<|user|>", "<|observation|>", "<|endoftext|>"}, .force_open = "<tool_call>", .force_named = "%s"},
    {.name = "qwen3_xml", .call_begin = "<tool_call>", .call_end = "</tool_call>", .parse = parse_xml, .reasoning = true,
     .stops = {"<|im_end|>"}, .force_open = "<tool_call>\n", .force_named = "<function=%s>\n"},
    {.name = "hermes", .call_begin = "<tool_call>", .call_end = "</tool_call>", .parse = parse_json_call, .reasoning = true,
     .stops = {"<|im_end|>"}, .force_open = "<tool_call>\n", .force_named = "{\"name\": \"%s\", \"arguments\": "},
    {.name = "kimi_k2", .section_begin = "<|tool_calls_section_begin|>", .section_end = "<|tool_calls_section_end|>",
     .call_begin = "<|tool_call_begin|>", .call_end = "<|tool_call_end|>", .parse = parse_kimi, .reasoning = true,
     .args_as_string = true, .stops = {"<|im_end|>"},
     .force_open = "<|tool_calls_section_begin|><|tool_call_begin|>", .force_named = "functions.%s:0<|tool_call_argument_begin|>"},
    {.name = "none", .call_begin = NULL, .parse = parse_json_call, .reasoning = true},
};
#define N_FORMATS (sizeof formats / sizeof formats[0])

const ms_toolcall_ops *ms_toolcall_by_name(const char *name)
{
    for (size_t i = 0; i < N_FORMATS; i++)
        if (!strcmp(formats[i].name, name)) return &formats[i];
    return NULL;
}

const ms_toolcall_ops *ms_toolcall_detect(const char *t)
{
    const char *name = "none";
    if (!t) t = "";
    if (strstr(t, "<｜tool▁calls▁begin｜>")) name = strstr(t, "```json") ? "deepseek_v3" : "deepseek_v3_1";
    else if (strstr(t, "<|function_call|>")) name = "gigachat3_1";
    else if (strstr(t, "function call") && strstr(t, "<|role_sep|>")) name = "gigachat3";
    else if (strstr(t, "<arg_key>")) name = "glm4";
    else if (strstr(t, "<tool_call>") && strstr(t, "<function=")) name = "qwen3_xml";
    else if (strstr(t, "<tool_call>")) name = "hermes";
    else if (strstr(t, "<|tool_calls_section_begin|>")) name = "kimi_k2";
    const ms_toolcall_ops *o = ms_toolcall_by_name(name);
    return o;
}

const char *ms_toolcall_name(const ms_toolcall_ops *ops) { return ops->name; }

const char *const *ms_toolcall_stop_texts(const ms_toolcall_ops *ops, bool with_tools)
{
    return with_tools || !ops->stops_no_tools[0] ? ops->stops : ops->stops_no_tools;
}

bool ms_toolcall_args_as_string(const ms_toolcall_ops *ops) { return ops->args_as_string; }

size_t ms_toolcall_stop_ids(const ms_toolcall_ops *ops, bool with_tools, const ms_tokenizer *tok, int32_t *ids,
                            size_t cap)
{
    size_t n = 0, ns;
    const int32_t *s = ms_tokenizer_stop_ids(tok, &ns);
    for (size_t i = 0; i < ns && n < cap; i++) ids[n++] = s[i];
    const char *const *texts = ops ? ms_toolcall_stop_texts(ops, with_tools) : NULL;
    for (int i = 0; texts && texts[i] && n < cap; i++) {
        int32_t id = ms_tokenizer_token_id(tok, texts[i], strlen(texts[i]));
        bool have = id < 0;
        for (size_t k = 0; k < n && !have; k++) have = ids[k] == id;
        if (!have) ids[n++] = id;
    }
    return n;
}

bool ms_toolcall_force_opening(const ms_toolcall_ops *ops, const char *name, ms_strbuf *sb)
{
    if (!ops->force_open) return false;
    ms_sb_puts(sb, ops->force_open);
    if (name) ms_sb_printf(sb, ops->force_named, name);
    return true;
}

bool ms_toolcall_prompt_in_reasoning(const ms_toolcall_ops *ops, const char *prompt, size_t len)
{
    if (!ops->reasoning) return false;
    while (len && is_ws(prompt[len - 1])) len--;
    size_t tl = strlen(THINK_OPEN);
    return len >= tl && !memcmp(prompt + len - tl, THINK_OPEN, tl);
}

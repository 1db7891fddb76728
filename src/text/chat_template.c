/* chat_template.c - DeepSeek-V3 and GigaChat3 / 3.1 prompt rendering (see chat_template.h).
 *
 * Native renderers that follow shared/spec/tokenizer-chat.md: DeepSeek joins every
 * system message with a blank line right after BOS, frames turns with <｜User｜> /
 * <｜Assistant｜> ... <｜end▁of▁sentence｜> and wraps tool calls / outputs in their
 * tokens (one tool-output run = one <｜tool▁outputs▁begin｜> ... <｜tool▁outputs▁end｜>).
 * GigaChat renders every message as role + "<|role_sep|>\n" + content +
 * "<|message_sep|>\n\n" after a developer-system message, renders tools as a
 * TypeScript namespace (json_schema_to_typescript of the checkpoint template), and
 * differs between 3.0 (separate `function call` message) and 3.1 (inline
 * <|function_call|>). Output goes to one growable buffer.
 */
#include "chat_template.h"

#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

#define DS_BOS "<\xEF\xBD\x9C" "begin\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>"
#define DS_EOS "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>"
#define DS_USER "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"
#define DS_ASSISTANT "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"
#define DS_TCS_BEGIN "<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "begin\xEF\xBD\x9C>"
#define DS_TCS_END "<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "end\xEF\xBD\x9C>"
#define DS_TC_BEGIN "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "begin\xEF\xBD\x9C>"
#define DS_TC_END "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "end\xEF\xBD\x9C>"
#define DS_TOS_BEGIN "<\xEF\xBD\x9Ctool\xE2\x96\x81outputs\xE2\x96\x81" "begin\xEF\xBD\x9C>"
#define DS_TOS_END "<\xEF\xBD\x9Ctool\xE2\x96\x81outputs\xE2\x96\x81" "end\xEF\xBD\x9C>"
#define DS_TO_BEGIN "<\xEF\xBD\x9Ctool\xE2\x96\x81output\xE2\x96\x81" "begin\xEF\xBD\x9C>"
#define DS_TO_END "<\xEF\xBD\x9Ctool\xE2\x96\x81output\xE2\x96\x81" "end\xEF\xBD\x9C>"
#define DS_TOOL_SEP "<\xEF\xBD\x9Ctool\xE2\x96\x81sep\xEF\xBD\x9C>"

#define GC_ROLE_SEP "<|role_sep|>\n"
#define GC_MSG_SEP "<|message_sep|>\n\n"
#define GC_FUNC_CALL "<|function_call|>"

/* ---- output buffer --------------------------------------------------------------- */

typedef struct {
    char *v;
    size_t n, cap;
    bool oom;
} cbuf;

static void put(cbuf *b, const char *s, size_t n)
{
    if (b->oom || n == 0) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->v, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->v = p;
        b->cap = cap;
    }
    memcpy(b->v + b->n, s, n);
    b->n += n;
    b->v[b->n] = 0;
}

static void puts_(cbuf *b, const char *s)
{
    if (s) put(b, s, strlen(s));
}

static void putf(cbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(cbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(b, tmp, (size_t)MS_MIN((size_t)n, sizeof tmp - 1));
}

/* ---- family names ---------------------------------------------------------------- */

const char *ms_chat_family_name(ms_chat_family f)
{
    switch (f) {
    case MS_CHAT_DEEPSEEK_V3: return "deepseek_v3";
    case MS_CHAT_GIGACHAT3: return "gigachat3";
    case MS_CHAT_GIGACHAT3_1: return "gigachat3.1";
    default: return "none";
    }
}

int ms_chat_family_parse(const char *s, ms_chat_family *out)
{
    if (!strcmp(s, "deepseek_v3") || !strcmp(s, "deepseek") || !strcmp(s, "deepseek-v3")) *out = MS_CHAT_DEEPSEEK_V3;
    else if (!strcmp(s, "gigachat3") || !strcmp(s, "gigachat3.0")) *out = MS_CHAT_GIGACHAT3;
    else if (!strcmp(s, "gigachat3.1")) *out = MS_CHAT_GIGACHAT3_1;
    else return -EINVAL;
    return 0;
}

/* ---- setup ----------------------------------------------------------------------- */

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

int ms_chat_template_init(ms_chat_template *ct, ms_chat_family family, const char *bos, const char *devsystem,
                          ms_err *err)
{
    memset(ct, 0, sizeof *ct);
    ct->family = family;
    ct->turn_end_id = -1;
    ct->bos = dup_or_empty(bos);
    ct->eos = strdup(DS_EOS);
    if (devsystem) ct->devsystem = strdup(devsystem);
    if (!ct->bos || !ct->eos || (devsystem && !ct->devsystem)) {
        ms_chat_template_free(ct);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    return 0;
}

void ms_chat_template_free(ms_chat_template *ct)
{
    if (!ct) return;
    free(ct->bos);
    free(ct->eos);
    free(ct->devsystem);
    free(ct->stop);
    memset(ct, 0, sizeof *ct);
    ct->turn_end_id = -1;
}

/* Skip whitespace backwards/forwards. */
static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

char *ms_chat_extract_devsystem(const char *t, size_t len)
{
    /* find "{%" [-] ws "set" ws "DEVSYSTEM" ws [-] "%}" */
    const char *end = t + len;
    for (const char *p = t; p && p < end; p++) {
        p = memmem(p, (size_t)(end - p), "{%", 2);
        if (!p) break;
        const char *q = p + 2;
        if (q < end && *q == '-') q++;
        while (q < end && is_ws(*q)) q++;
        if ((size_t)(end - q) < 3 || memcmp(q, "set", 3) != 0) continue;
        q += 3;
        if (q >= end || !is_ws(*q)) continue;
        while (q < end && is_ws(*q)) q++;
        if ((size_t)(end - q) < 9 || memcmp(q, "DEVSYSTEM", 9) != 0) continue;
        q += 9;
        while (q < end && is_ws(*q)) q++;
        bool lstrip = false;
        if (q < end && *q == '-') {
            lstrip = true;
            q++;
        }
        if ((size_t)(end - q) < 2 || memcmp(q, "%}", 2) != 0) continue; /* "set X = ..." form: not a block */
        const char *body = q + 2;
        /* find the "{%" [-] ws "endset" */
        for (const char *e = body; e && e < end; e++) {
            e = memmem(e, (size_t)(end - e), "{%", 2);
            if (!e) return NULL;
            const char *r = e + 2;
            bool rstrip = false;
            if (r < end && *r == '-') {
                rstrip = true;
                r++;
            }
            while (r < end && is_ws(*r)) r++;
            if ((size_t)(end - r) < 6 || memcmp(r, "endset", 6) != 0) continue;
            const char *b0 = body, *b1 = e;
            if (lstrip)
                while (b0 < b1 && is_ws(*b0)) b0++;
            if (rstrip)
                while (b1 > b0 && is_ws(b1[-1])) b1--;
            return strndup(b0, (size_t)(b1 - b0));
        }
        return NULL;
    }
    return NULL;
}

/* Template text: tokenizer_config.json "chat_template" (string, or a list of
 * {name, template} where "default" wins), else chat_template.jinja. */
static int read_template(const char *dir, char **out, ms_err *err)
{
    *out = NULL;
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    if (stat(p, &st) == 0) {
        char *txt;
        size_t len;
        int rc = ms_read_file(p, 64u << 20, &txt, &len, err);
        if (rc < 0) return rc;
        json_object *o = json_tokener_parse(txt);
        free(txt);
        if (!o) return ms_errf(err, EINVAL, "%s: invalid JSON", p);
        json_object *ct = NULL;
        if (json_object_object_get_ex(o, "chat_template", &ct) && ct) {
            const char *s = NULL;
            if (json_object_is_type(ct, json_type_string)) s = json_object_get_string(ct);
            else if (json_object_is_type(ct, json_type_array)) {
                for (size_t i = 0; i < json_object_array_length(ct); i++) {
                    json_object *e = json_object_array_get_idx(ct, i), *nm, *tp;
                    if (!json_object_object_get_ex(e, "template", &tp) || !json_object_is_type(tp, json_type_string))
                        continue;
                    bool dflt = json_object_object_get_ex(e, "name", &nm) && json_object_is_type(nm, json_type_string) &&
                                !strcmp(json_object_get_string(nm), "default");
                    if (!s || dflt) s = json_object_get_string(tp);
                }
            } else if (!json_object_is_type(ct, json_type_null)) {
                json_object_put(o);
                return ms_errf(err, EINVAL, "%s: chat_template: expected a string or a list of {name, template}", p);
            }
            if (s && !(*out = strdup(s))) {
                json_object_put(o);
                return ms_errf(err, ENOMEM, "out of memory");
            }
        }
        json_object_put(o);
        if (*out) return 0;
    }
    snprintf(p, sizeof p, "%s/chat_template.jinja", dir);
    if (stat(p, &st) == 0) return ms_read_file(p, 64u << 20, out, NULL, err);
    return 0;
}

static int add_stop(ms_chat_template *ct, int32_t id)
{
    if (id < 0) return 0;
    for (size_t i = 0; i < ct->n_stop; i++)
        if (ct->stop[i] == id) return 0;
    int32_t *p = realloc(ct->stop, (ct->n_stop + 1) * sizeof *p);
    if (!p) return -ENOMEM;
    ct->stop = p;
    ct->stop[ct->n_stop++] = id;
    return 0;
}

static int32_t tok_id(const ms_tokenizer *tok, const char *s) { return ms_tokenizer_token_id(tok, s, strlen(s)); }

int ms_chat_template_load(const char *dir, const ms_tokenizer *tok, ms_chat_template *ct, ms_err *err)
{
    char *tmpl = NULL;
    int rc = read_template(dir, &tmpl, err);
    if (rc < 0) return rc;
    ms_chat_family fam = MS_CHAT_NONE;
    if (tmpl) {
        if (strstr(tmpl, "<|role_sep|>")) fam = strstr(tmpl, "<|function_call|>") ? MS_CHAT_GIGACHAT3_1 : MS_CHAT_GIGACHAT3;
        else if (strstr(tmpl, DS_USER) && strstr(tmpl, DS_ASSISTANT)) fam = MS_CHAT_DEEPSEEK_V3;
    }
    if (fam == MS_CHAT_NONE) { /* no (recognised) template: the tokens tell */
        if (tok_id(tok, "<|role_sep|>") >= 0 && tok_id(tok, "<|message_sep|>") >= 0)
            fam = tok_id(tok, GC_FUNC_CALL) >= 0 ? MS_CHAT_GIGACHAT3_1 : MS_CHAT_GIGACHAT3;
        else if (tok_id(tok, DS_USER) >= 0 && tok_id(tok, DS_ASSISTANT) >= 0)
            fam = MS_CHAT_DEEPSEEK_V3;
    }
    if (fam == MS_CHAT_NONE) {
        free(tmpl);
        return ms_errf(err, ENOTSUP, "%s: no supported chat template (DeepSeek-V3, GigaChat3, GigaChat3.1) recognised "
                       "in tokenizer_config.json chat_template, chat_template.jinja or the tokenizer's special tokens "
                       "(use --raw for a plain prompt)", dir);
    }
    char *dev = NULL;
    if (tmpl && fam != MS_CHAT_DEEPSEEK_V3) dev = ms_chat_extract_devsystem(tmpl, strlen(tmpl));
    rc = ms_chat_template_init(ct, fam, ms_tokenizer_bos_str(tok), dev, err);
    free(dev);
    if (rc < 0) {
        free(tmpl);
        return rc;
    }
    if (fam == MS_CHAT_DEEPSEEK_V3 && tmpl && strstr(tmpl, "</think>") && strstr(tmpl, DS_ASSISTANT "<think>"))
        ct->r1_think = true;
    free(tmpl);
    /* stop ids: the tokenizer's stop set + the family's end tokens */
    size_t n;
    const int32_t *s = ms_tokenizer_stop_ids(tok, &n);
    for (size_t i = 0; i < n; i++)
        if (add_stop(ct, s[i]) < 0) goto oom;
    if (fam == MS_CHAT_DEEPSEEK_V3) {
        if (add_stop(ct, tok_id(tok, DS_EOS)) < 0) goto oom;
        const char *e = ms_tokenizer_eos_str(tok);
        if (e && *e) {
            free(ct->eos);
            if (!(ct->eos = strdup(e))) goto oom;
        }
    } else {
        if (add_stop(ct, tok_id(tok, "</s>")) < 0) goto oom;
        ct->turn_end_id = tok_id(tok, "<|message_sep|>");
    }
    return 0;
oom:
    ms_chat_template_free(ct);
    return ms_errf(err, ENOMEM, "out of memory");
}

size_t ms_chat_stop_ids(const ms_chat_template *ct, bool with_tools, int32_t *ids, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < ct->n_stop && n < cap; i++) ids[n++] = ct->stop[i];
    if (!with_tools && ct->turn_end_id >= 0 && n < cap) {
        bool dup = false;
        for (size_t i = 0; i < n; i++) dup |= ids[i] == ct->turn_end_id;
        if (!dup) ids[n++] = ct->turn_end_id;
    }
    return n;
}

/* ---- DeepSeek-V3 --------------------------------------------------------------------- */

static bool role_is(const ms_chat_msg *m, const char *r) { return m->role && !strcmp(m->role, r); }

static const char *after_think(const char *s)
{
    if (!s) return "";
    const char *last = NULL;
    for (const char *p = strstr(s, "</think>"); p; p = strstr(p + 1, "</think>")) last = p;
    return last ? last + 8 : s;
}

static int render_deepseek(const ms_chat_template *ct, const ms_chat_msg *m, size_t n, bool gen, cbuf *b, ms_err *err)
{
    puts_(b, ct->bos);
    bool first_sys = true;
    for (size_t i = 0; i < n; i++) {
        if (!role_is(&m[i], "system")) continue;
        if (!first_sys) puts_(b, "\n\n");
        puts_(b, m[i].content);
        first_sys = false;
    }
    bool in_tool = false, first_output = true;
    for (size_t i = 0; i < n; i++) {
        const ms_chat_msg *x = &m[i];
        if (!x->role) return ms_errf(err, EINVAL, "chat: message %zu has no role", i);
        if (role_is(x, "system")) continue;
        if (role_is(x, "user")) {
            in_tool = false;
            puts_(b, DS_USER);
            puts_(b, x->content);
        } else if (role_is(x, "assistant") && x->n_tool_calls > 0) {
            in_tool = false;
            puts_(b, DS_ASSISTANT);
            puts_(b, x->content);
            puts_(b, DS_TCS_BEGIN);
            for (size_t k = 0; k < x->n_tool_calls; k++) {
                const ms_chat_tool_call *tc = &x->tool_calls[k];
                if (!tc->name) return ms_errf(err, EINVAL, "chat: message %zu: tool call %zu has no name", i, k);
                if (k) puts_(b, "\n");
                puts_(b, DS_TC_BEGIN);
                puts_(b, tc->type ? tc->type : "function");
                puts_(b, DS_TOOL_SEP);
                puts_(b, tc->name);
                puts_(b, "\n```json\n");
                puts_(b, tc->arguments ? tc->arguments : "{}");
                puts_(b, "\n```" DS_TC_END);
            }
            puts_(b, DS_TCS_END);
            puts_(b, ct->eos);
        } else if (role_is(x, "assistant")) {
            const char *c = ct->r1_think ? after_think(x->content) : x->content;
            puts_(b, in_tool ? DS_TOS_END : DS_ASSISTANT);
            in_tool = false;
            puts_(b, c);
            puts_(b, ct->eos);
        } else if (role_is(x, "tool")) {
            if (!in_tool) first_output = true;
            in_tool = true;
            puts_(b, first_output ? DS_TOS_BEGIN DS_TO_BEGIN : "\n" DS_TO_BEGIN);
            first_output = false;
            puts_(b, x->content);
            puts_(b, DS_TO_END);
        } else
            return ms_errf(err, EINVAL, "chat: message %zu: role \"%s\" is not one of system, user, assistant, tool "
                           "(DeepSeek-V3 template)", i, x->role);
    }
    if (in_tool) puts_(b, DS_TOS_END);
    if (gen && !in_tool) puts_(b, ct->r1_think ? DS_ASSISTANT "<think>\n" : DS_ASSISTANT);
    return 0;
}

/* ---- GigaChat: JSON schema -> TypeScript ----------------------------------------------- */

/* Python str() of a JSON value, as Jinja's `~` prints it. */
static void py_str(cbuf *b, json_object *v, bool quote_strings)
{
    switch (json_object_get_type(v)) {
    case json_type_null: puts_(b, "None"); break;
    case json_type_boolean: puts_(b, json_object_get_boolean(v) ? "True" : "False"); break;
    case json_type_int: putf(b, "%lld", (long long)json_object_get_int64(v)); break;
    case json_type_double: {
        double d = json_object_get_double(v);
        char tmp[64];
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(tmp, sizeof tmp, "%.*g", prec, d);
            if (strtod(tmp, NULL) == d) break;
        }
        if (isfinite(d) && !strpbrk(tmp, ".eEn")) strcat(tmp, ".0");
        puts_(b, tmp);
        break;
    }
    case json_type_string:
        if (quote_strings) puts_(b, "'");
        put(b, json_object_get_string(v), (size_t)json_object_get_string_len(v));
        if (quote_strings) puts_(b, "'");
        break;
    case json_type_array:
        puts_(b, "[");
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            if (i) puts_(b, ", ");
            py_str(b, json_object_array_get_idx(v, i), true);
        }
        puts_(b, "]");
        break;
    case json_type_object: {
        puts_(b, "{");
        bool first = true;
        json_object_object_foreach(v, k, x)
        {
            if (!first) puts_(b, ", ");
            first = false;
            putf(b, "'%s': ", k);
            py_str(b, x, true);
        }
        puts_(b, "}");
        break;
    }
    }
}

static json_object *jget(json_object *o, const char *k)
{
    json_object *v = NULL;
    if (o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, k, &v)) return v;
    return NULL;
}

static const char *jstr(json_object *o, const char *k)
{
    json_object *v = jget(o, k);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static bool jtruthy(json_object *v)
{
    if (!v) return false;
    switch (json_object_get_type(v)) {
    case json_type_null: return false;
    case json_type_boolean: return json_object_get_boolean(v);
    case json_type_int: return json_object_get_int64(v) != 0;
    case json_type_double: return json_object_get_double(v) != 0;
    case json_type_string: return json_object_get_string_len(v) > 0;
    case json_type_array: return json_object_array_length(v) > 0;
    case json_type_object: return json_object_object_length(v) > 0;
    }
    return false;
}

/* Comment lines: every line of text that is not blank, as indent + "// " + line. */
static void comment_lines(cbuf *b, const char *indent, const char *text, bool trailing_nl, bool *any)
{
    const char *p = text;
    while (p) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        bool blank = true;
        for (size_t i = 0; i < l; i++)
            if (!strchr(" \t\r\v\f", p[i])) blank = false;
        if (!blank) {
            if (any && *any && !trailing_nl) puts_(b, "\n");
            puts_(b, indent);
            puts_(b, "// ");
            put(b, p, l);
            if (trailing_nl) puts_(b, "\n");
            if (any) *any = true;
        }
        p = nl ? nl + 1 : NULL;
    }
}

static void schema_ts(cbuf *b, json_object *s, const char *indent, int depth)
{
    if (depth > 32) {
        puts_(b, "any");
        return;
    }
    const char *ty = jstr(s, "type");
    if (ty && !strcmp(ty, "object")) {
        static const char *const extra[] = {"format", "maxItems", "maximum", "minItems", "minimum", "pattern"};
        puts_(b, "{\n");
        json_object *props = jget(s, "properties"), *req = jget(s, "required");
        char sub[256];
        snprintf(sub, sizeof sub, "%s  ", indent);
        if (props && json_object_is_type(props, json_type_object)) {
            json_object_object_foreach(props, key, val)
            {
                const char *d = jstr(val, "description");
                if (d) comment_lines(b, indent, d, true, NULL);
                if (val && json_object_is_type(val, json_type_object)) {
                    json_object_object_foreach(val, ak, av)
                    {
                        for (size_t i = 0; i < MS_ARRAY_LEN(extra); i++) {
                            if (strcmp(ak, extra[i]) != 0) continue;
                            putf(b, "%s// %s: ", indent, ak);
                            if (json_object_is_type(av, json_type_string)) {
                                puts_(b, "\"");
                                puts_(b, json_object_get_string(av));
                                puts_(b, "\"");
                            } else
                                py_str(b, av, true);
                            puts_(b, "\n");
                        }
                    }
                }
                bool required = false;
                if (req && json_object_is_type(req, json_type_array))
                    for (size_t i = 0; i < json_object_array_length(req); i++) {
                        json_object *r = json_object_array_get_idx(req, i);
                        if (r && json_object_is_type(r, json_type_string) && !strcmp(json_object_get_string(r), key))
                            required = true;
                    }
                puts_(b, indent);
                puts_(b, key);
                puts_(b, required ? ": " : "?: ");
                schema_ts(b, val, sub, depth + 1);
                puts_(b, ",");
                json_object *dv = jget(val, "default");
                bool has_default = val && json_object_is_type(val, json_type_object) &&
                                   (json_object_object_get_ex(val, "default", NULL) ||
                                    json_object_object_get_ex(val, "defalut_value", NULL));
                if (has_default) {
                    if (!json_object_object_get_ex(val, "default", NULL)) dv = jget(val, "defalut_value");
                    if (dv && json_object_is_type(dv, json_type_string)) {
                        puts_(b, " // default: \"");
                        puts_(b, json_object_get_string(dv));
                        puts_(b, "\"");
                    } else {
                        puts_(b, " // default: ");
                        if (dv) py_str(b, dv, true);
                        else puts_(b, "None");
                    }
                }
                puts_(b, "\n");
            }
        }
        json_object *ap = NULL;
        if (s && json_object_object_get_ex(s, "additionalProperties", &ap)) {
            json_object *t = NULL, *any = NULL;
            if (ap && json_object_is_type(ap, json_type_boolean) && json_object_get_boolean(ap)) {
                any = json_object_new_object();
                json_object_object_add(any, "type", json_object_new_string("any"));
                t = any;
            } else if (ap && json_object_is_type(ap, json_type_object))
                t = ap;
            if (t) {
                puts_(b, indent);
                puts_(b, "[key: string]: ");
                schema_ts(b, t, sub, depth + 1);
                puts_(b, "\n");
            }
            json_object_put(any);
        }
        size_t il = strlen(indent);
        put(b, indent, il >= 2 ? il - 2 : 0);
        puts_(b, "}");
    } else if (ty && !strcmp(ty, "string")) {
        json_object *en = jget(s, "enum");
        const char *fmt = jstr(s, "format");
        if (jtruthy(en) && json_object_is_type(en, json_type_array)) {
            for (size_t i = 0; i < json_object_array_length(en); i++) {
                if (i) puts_(b, " | ");
                puts_(b, "\"");
                py_str(b, json_object_array_get_idx(en, i), false);
                puts_(b, "\"");
            }
        } else if (fmt && (!strcmp(fmt, "date-time") || !strcmp(fmt, "date")))
            puts_(b, "Date");
        else
            puts_(b, "string");
    } else if (ty && (!strcmp(ty, "number") || !strcmp(ty, "integer"))) {
        json_object *en = jget(s, "enum");
        if (jtruthy(en) && json_object_is_type(en, json_type_array)) {
            for (size_t i = 0; i < json_object_array_length(en); i++) {
                if (i) puts_(b, " | ");
                py_str(b, json_object_array_get_idx(en, i), false);
            }
        } else
            puts_(b, "number");
    } else if (ty && !strcmp(ty, "boolean"))
        puts_(b, "boolean");
    else if (ty && !strcmp(ty, "array")) {
        json_object *it = NULL;
        if (s && json_object_object_get_ex(s, "items", &it)) {
            schema_ts(b, it, indent, depth + 1);
            puts_(b, "[]");
        } else
            puts_(b, "Array<any>");
    } else
        puts_(b, "any");
}

static int render_tools_ts(cbuf *b, const char *tools_json, ms_err *err)
{
    json_object *tools = json_tokener_parse(tools_json);
    if (!tools || !json_object_is_type(tools, json_type_array)) {
        json_object_put(tools);
        return ms_errf(err, EINVAL, "chat: tools: expected a JSON array of tool definitions");
    }
    puts_(b, "namespace functions {");
    for (size_t i = 0; i < json_object_array_length(tools); i++) {
        json_object *t = json_object_array_get_idx(tools, i);
        json_object *f = jget(t, "function");
        if (jtruthy(f)) t = f;
        const char *name = jstr(t, "name");
        if (!name) {
            json_object_put(tools);
            return ms_errf(err, EINVAL, "chat: tools[%zu]: missing \"name\"", i);
        }
        puts_(b, "\n");
        bool any = false;
        const char *d = jstr(t, "description");
        if (d && *d) comment_lines(b, "", d, false, &any);
        if (any) puts_(b, "\n");
        json_object *params = jget(t, "parameters");
        putf(b, "type %s = ", name);
        if (jtruthy(params) && jtruthy(jget(params, "properties"))) {
            puts_(b, "(_: ");
            schema_ts(b, params, "  ", 0);
            puts_(b, ") => ");
        } else
            puts_(b, "() => ");
        json_object *rp = jget(t, "return_parameters");
        if (jtruthy(rp) && jtruthy(jget(rp, "properties"))) schema_ts(b, rp, "  ", 0);
        else puts_(b, "any");
        puts_(b, ";\n");
    }
    puts_(b, "\n} // namespace functions");
    json_object_put(tools);
    return 0;
}

/* ---- GigaChat ------------------------------------------------------------------------- */

static void gc_message(cbuf *b, const char *role, const char *content)
{
    puts_(b, role);
    puts_(b, GC_ROLE_SEP);
    puts_(b, content);
}

static void gc_call_json(cbuf *b, const ms_chat_tool_call *tc)
{
    puts_(b, "{\"name\": \"");
    puts_(b, tc->name);
    puts_(b, "\", \"arguments\": ");
    puts_(b, tc->arguments ? tc->arguments : "{}");
    puts_(b, "}");
}

static int render_gigachat(const ms_chat_template *ct, const ms_chat_msg *m, size_t n, const char *tools_json, bool gen,
                           cbuf *b, ms_err *err)
{
    bool v31 = ct->family == MS_CHAT_GIGACHAT3_1;
    puts_(b, ct->bos);
    if (ct->devsystem) {
        gc_message(b, "developer system", ct->devsystem);
        puts_(b, GC_MSG_SEP);
    }
    size_t i = 0;
    if (n > 0 && role_is(&m[0], "system")) {
        gc_message(b, "system", m[0].content);
        puts_(b, GC_MSG_SEP);
        i = 1;
    }
    if (tools_json) {
        json_object *probe = json_tokener_parse(tools_json);
        bool have = probe && json_object_is_type(probe, json_type_array) && json_object_array_length(probe) > 0;
        if (!probe || !json_object_is_type(probe, json_type_array)) {
            json_object_put(probe);
            return ms_errf(err, EINVAL, "chat: tools: expected a JSON array of tool definitions");
        }
        json_object_put(probe);
        if (have) {
            puts_(b, "function descriptions" GC_ROLE_SEP);
            int rc = render_tools_ts(b, tools_json, err);
            if (rc < 0) return rc;
            puts_(b, "\n\n" GC_MSG_SEP);
        }
    }
    for (; i < n; i++) {
        const ms_chat_msg *x = &m[i];
        if (!x->role) return ms_errf(err, EINVAL, "chat: message %zu has no role", i);
        for (size_t k = 0; k < x->n_tool_calls; k++)
            if (!x->tool_calls[k].name) return ms_errf(err, EINVAL, "chat: message %zu: tool call %zu has no name", i, k);
        bool is_tool = role_is(x, "tool");
        gc_message(b, is_tool ? "function result" : x->role, x->content);
        if (v31) {
            if (x->n_tool_calls > 0) {
                puts_(b, GC_FUNC_CALL);
                gc_call_json(b, &x->tool_calls[0]);
            }
            puts_(b, GC_MSG_SEP);
        } else {
            puts_(b, GC_MSG_SEP);
            if (role_is(x, "assistant") && x->n_tool_calls > 0) {
                puts_(b, "function call" GC_ROLE_SEP);
                gc_call_json(b, &x->tool_calls[0]);
                puts_(b, GC_MSG_SEP);
            }
        }
        if (i + 1 == n && gen && !role_is(x, "assistant")) puts_(b, "assistant" GC_ROLE_SEP);
    }
    return 0;
}

int ms_chat_render(const ms_chat_template *ct, const ms_chat_msg *msgs, size_t n, const char *tools_json, bool gen,
                   char **out, size_t *out_len, ms_err *err)
{
    *out = NULL;
    cbuf b = {0};
    int rc;
    switch (ct->family) {
    case MS_CHAT_DEEPSEEK_V3: rc = render_deepseek(ct, msgs, n, gen, &b, err); break;
    case MS_CHAT_GIGACHAT3:
    case MS_CHAT_GIGACHAT3_1: rc = render_gigachat(ct, msgs, n, tools_json, gen, &b, err); break;
    default: rc = ms_errf(err, EINVAL, "chat: no chat template family set");
    }
    if (rc == 0 && b.oom) rc = ms_errf(err, ENOMEM, "out of memory");
    if (rc < 0) {
        free(b.v);
        return rc;
    }
    if (!b.v) b.v = strdup("");
    if (!b.v) return ms_errf(err, ENOMEM, "out of memory");
    *out = b.v;
    if (out_len) *out_len = b.n;
    return 0;
}

/* serve_chat.c - chat formats for the server (see serve_chat.h), on the
 * native chat-template renderer of src/text (DeepSeek-V3, GigaChat3/3.1).
 *
 * The output parser here is the server's interim one: reasoning in
 * <think>...</think> and DeepSeek-V3 tool calls
 *   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
 * It works on the whole text seen so far: everything before the earliest
 * possible marker is final, a tail that could still become a marker is held
 * back. A call that does not parse stays content (markers included). */
#include "serve_chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "json.h"
#include "strbuf.h"

struct ms_srv_chat {
    ms_chat_template ct;
    bool have;
    bool deepseek; /* tool-call format deepseek_v3 */
};

int ms_srv_chat_load(const char *model_dir, const ms_tokenizer *tok, ms_srv_chat **out, ms_err *err)
{
    ms_srv_chat *c = calloc(1, sizeof *c);
    if (!c) return ms_errf(err, ENOMEM, "out of memory");
    ms_err e2 = {0};
    if (tok && ms_chat_template_load(model_dir, tok, &c->ct, &e2) == 0 && c->ct.family != MS_CHAT_NONE) c->have = true;
    c->deepseek = c->have && c->ct.family == MS_CHAT_DEEPSEEK_V3;
    *out = c;
    return 0;
}

void ms_srv_chat_free(ms_srv_chat *c)
{
    if (!c) return;
    if (c->have) ms_chat_template_free(&c->ct);
    free(c);
}

bool ms_srv_chat_available(const ms_srv_chat *c) { return c && c->have; }

const char *ms_srv_chat_format(const ms_srv_chat *c) { return c && c->deepseek ? "deepseek_v3" : "none"; }

static const char CALLS_BEGIN[] = "<｜tool▁calls▁begin｜>", CALLS_END[] = "<｜tool▁calls▁end｜>",
                  CALL_BEGIN[] = "<｜tool▁call▁begin｜>", CALL_END[] = "<｜tool▁call▁end｜>",
                  CALL_SEP[] = "<｜tool▁sep｜>", THINK[] = "<think>", UNTHINK[] = "</think>";

static size_t arr_len(json_object *a) { return json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0; }

int ms_srv_chat_render(const ms_srv_chat *c, const ms_srv_request *r, char **prompt, size_t *len,
                       const char **forced, ms_err *err)
{
    *forced = NULL;
    if (!c->have) return ms_errf(err, ENOTSUP, "the model has no chat template: use /v1/completions");
    size_t n = json_object_array_length(r->messages), n_calls = 0;
    for (size_t i = 0; i < n; i++)
        n_calls += arr_len(ms_json_get(json_object_array_get_idx(r->messages, i), "tool_calls"));
    ms_chat_msg *msgs = calloc(n, sizeof *msgs);
    ms_chat_tool_call *calls = calloc(n_calls + 1, sizeof *calls);
    if (!msgs || !calls) {
        free(msgs);
        free(calls);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(r->messages, i), *tc = ms_json_get(m, "tool_calls");
        msgs[i].role = json_object_get_string(ms_json_get(m, "role"));
        msgs[i].content = ms_json_null(ms_json_get(m, "content")) ? NULL : json_object_get_string(ms_json_get(m, "content"));
        msgs[i].tool_calls = calls + k;
        for (size_t j = 0; j < arr_len(tc); j++, k++) {
            json_object *fn = ms_json_get(json_object_array_get_idx(tc, j), "function");
            calls[k] = (ms_chat_tool_call){.type = "function",
                                           .name = json_object_get_string(ms_json_get(fn, "name")),
                                           .arguments = json_object_get_string(ms_json_get(fn, "arguments"))};
            msgs[i].n_tool_calls++;
        }
    }
    bool tools = r->tools && r->tool_choice != MS_TOOLS_NONE;
    const char *tools_json = tools ? json_object_to_json_string_ext(r->tools, JSON_C_TO_STRING_PLAIN) : NULL;
    char *text = NULL;
    size_t tl = 0;
    int rc = ms_chat_render(&c->ct, msgs, n, tools_json, true, &text, &tl, err);
    free(msgs);
    free(calls);
    if (rc < 0) return rc;
    if (tools && (r->tool_choice == MS_TOOLS_REQUIRED || r->tool_choice == MS_TOOLS_NAMED)) {
        if (!c->deepseek) {
            free(text);
            return ms_errf(err, ENOTSUP, "tool_choice %s is not supported for this model's tool-call format (%s)",
                           r->tool_choice == MS_TOOLS_REQUIRED ? "required" : "with a function",
                           ms_srv_chat_format(c));
        }
        ms_strbuf sb = {0};
        ms_sb_putn(&sb, text, tl);
        size_t at = sb.len;
        ms_sb_printf(&sb, "%s%sfunction%s", CALLS_BEGIN, CALL_BEGIN, CALL_SEP);
        if (r->tool_choice == MS_TOOLS_NAMED) ms_sb_printf(&sb, "%s\n```json\n", r->tool_name);
        free(text);
        if ((rc = ms_sb_error(&sb, "prompt", err)) < 0) {
            ms_sb_free(&sb);
            return rc;
        }
        tl = sb.len;
        text = ms_sb_take(&sb);
        *forced = text + at;
    }
    *prompt = text;
    *len = tl;
    return 0;
}

size_t ms_srv_chat_stop_ids(const ms_srv_chat *c, bool with_tools, int32_t *ids, size_t cap)
{
    return c->have ? ms_chat_stop_ids(&c->ct, with_tools, ids, cap) : 0;
}

/* ---- the interim output parser ---- */

enum { P_CONTENT, P_REASONING, P_CALLS };

struct ms_srv_parser {
    bool tools;
    int mode;
    ms_strbuf raw;              /* everything fed */
    size_t pos;                 /* raw[0..pos) consumed */
    size_t call_start;          /* P_CALLS: where the current call's text starts */
    ms_strbuf content, reasoning;
    size_t content_sent, reasoning_sent;
    ms_srv_call *calls;
    size_t n_calls, cap_calls, calls_sent;
};

int ms_srv_parser_new(const ms_srv_chat *c, json_object *tools, const char *prompt, size_t prompt_len,
                      const char *forced, ms_srv_parser **out, ms_err *err)
{
    ms_srv_parser *p = calloc(1, sizeof *p);
    if (!p) return ms_errf(err, ENOMEM, "out of memory");
    p->tools = tools && c->deepseek;
    /* a prompt ending in <think> (R1-style generation prompt) starts in reasoning */
    size_t tl = strlen(THINK);
    while (prompt_len && (prompt[prompt_len - 1] == '\n' || prompt[prompt_len - 1] == ' ')) prompt_len--;
    if (prompt_len >= tl && !memcmp(prompt + prompt_len - tl, THINK, tl)) p->mode = P_REASONING;
    *out = p;
    if (forced) { /* the forced call opening is the answer's beginning, not output */
        int rc = ms_srv_parser_feed(p, forced, strlen(forced), err);
        ms_srv_delta d;
        ms_srv_parser_delta(p, &d);
        if (rc < 0) return rc;
    }
    return 0;
}

void ms_srv_parser_free(ms_srv_parser *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n_calls; i++) {
        free(p->calls[i].id);
        free(p->calls[i].name);
        free(p->calls[i].arguments);
    }
    free(p->calls);
    ms_sb_free(&p->raw);
    ms_sb_free(&p->content);
    ms_sb_free(&p->reasoning);
    free(p);
}

/* Length of the longest tail of s[0..n) that is a proper prefix of a marker. */
static size_t held_tail(const char *s, size_t n, const char *const *markers)
{
    size_t best = 0;
    for (const char *const *m = markers; *m; m++) {
        size_t ml = strlen(*m);
        for (size_t l = ml - 1; l > best; l--)
            if (l <= n && !memcmp(s + n - l, *m, l)) {
                best = l;
                break;
            }
    }
    return best;
}

/* Earliest marker in s[0..n): its offset (n if none), *which = its index. */
static size_t first_marker(const char *s, size_t n, const char *const *markers, int *which)
{
    size_t best = n;
    *which = -1;
    for (int i = 0; markers[i]; i++) {
        const char *f = memmem(s, n, markers[i], strlen(markers[i]));
        if (f && (size_t)(f - s) < best) {
            best = (size_t)(f - s);
            *which = i;
        }
    }
    return best;
}

/* One call: "TYPE<｜tool▁sep｜>NAME\n```json\nARGS\n```" (fences optional). */
static int add_call(ms_srv_parser *p, const char *s, size_t n)
{
    const char *sep = memmem(s, n, CALL_SEP, strlen(CALL_SEP));
    if (!sep) return -1;
    const char *name = sep + strlen(CALL_SEP), *end = s + n;
    const char *nl = memchr(name, '\n', (size_t)(end - name));
    if (!nl || nl == name) return -1;
    const char *a = nl + 1, *b = end;
    if ((size_t)(b - a) >= 7 && !memcmp(a, "```json", 7)) a += 7;
    while (b > a && (b[-1] == '\n' || b[-1] == ' ')) b--;
    if ((size_t)(b - a) >= 3 && !memcmp(b - 3, "```", 3)) b -= 3;
    while (b > a && (b[-1] == '\n' || b[-1] == ' ')) b--;
    json_object *args = NULL;
    ms_err err = {0};
    if (ms_json_parse(a, (size_t)(b - a), "arguments", &args, &err) < 0) return -1;
    bool obj = json_object_is_type(args, json_type_object);
    json_object_put(args);
    while (a < b && (*a == ' ' || *a == '\n')) a++;
    char *text = obj ? strndup(a, (size_t)(b - a)) : NULL; /* the model's own text, a JSON object */
    if (!text) return -1;
    if (p->n_calls == p->cap_calls) {
        size_t cap = p->cap_calls ? 2 * p->cap_calls : 4;
        ms_srv_call *nc = realloc(p->calls, cap * sizeof *nc);
        if (!nc) {
            free(text);
            return -1;
        }
        p->calls = nc;
        p->cap_calls = cap;
    }
    char id[32];
    snprintf(id, sizeof id, "call_%zu", p->n_calls);
    p->calls[p->n_calls++] = (ms_srv_call){.id = strdup(id), .name = strndup(name, (size_t)(nl - name)), .arguments = text};
    return 0;
}

static void step(ms_srv_parser *p, bool final)
{
    static const char *const content_m[] = {THINK, CALLS_BEGIN, NULL}, *const content_m_notools[] = {THINK, NULL},
                              *const reason_m[] = {UNTHINK, NULL}, *const calls_m[] = {CALL_END, CALLS_END, NULL};
    for (;;) {
        const char *s = p->raw.s ? p->raw.s + p->pos : "";
        size_t n = p->raw.len - p->pos;
        const char *const *m = p->mode == P_CONTENT ? (p->tools ? content_m : content_m_notools)
                               : p->mode == P_REASONING ? reason_m
                                                        : calls_m;
        int which;
        size_t at = first_marker(s, n, m, &which);
        if (p->mode == P_CALLS) {
            if (which < 0) {
                if (final) { /* unfinished calls stay content */
                    ms_sb_putn(&p->content, p->raw.s + p->call_start, p->raw.len - p->call_start);
                    p->pos = p->raw.len;
                }
                return;
            }
            if (which == 1) { /* end of the calls section */
                p->pos += at + strlen(CALLS_END);
                p->mode = P_CONTENT;
                continue;
            }
            const char *cb = memmem(p->raw.s + p->call_start, (size_t)(s + at - (p->raw.s + p->call_start)), CALL_BEGIN,
                                    strlen(CALL_BEGIN));
            const char *body = cb ? cb + strlen(CALL_BEGIN) : NULL;
            if (!body || add_call(p, body, (size_t)(s + at - body)) < 0)
                ms_sb_putn(&p->content, p->raw.s + p->call_start, (size_t)(s + at + strlen(CALL_END) - (p->raw.s + p->call_start)));
            p->pos += at + strlen(CALL_END);
            p->call_start = p->pos;
            continue;
        }
        ms_strbuf *dst = p->mode == P_CONTENT ? &p->content : &p->reasoning;
        if (which < 0) {
            size_t keep = final ? 0 : held_tail(s, n, m);
            ms_sb_putn(dst, s, n - keep);
            p->pos += n - keep;
            return;
        }
        ms_sb_putn(dst, s, at);
        p->pos += at + strlen(m[which]);
        if (p->mode == P_REASONING) p->mode = P_CONTENT;
        else if (which == 0) p->mode = P_REASONING;
        else {
            p->mode = P_CALLS;
            p->call_start = p->pos;
        }
    }
}

int ms_srv_parser_feed(ms_srv_parser *p, const char *text, size_t len, ms_err *err)
{
    ms_sb_putn(&p->raw, text, len);
    step(p, false);
    int rc = ms_sb_error(&p->raw, "answer", err);
    return rc < 0 ? rc : ms_sb_error(&p->content, "answer", err);
}

int ms_srv_parser_finish(ms_srv_parser *p, ms_err *err)
{
    step(p, true);
    return ms_sb_error(&p->content, "answer", err);
}

void ms_srv_parser_delta(ms_srv_parser *p, ms_srv_delta *d)
{
    d->content = ms_sb_str(&p->content) + p->content_sent;
    d->content_len = p->content.len - p->content_sent;
    d->reasoning = ms_sb_str(&p->reasoning) + p->reasoning_sent;
    d->reasoning_len = p->reasoning.len - p->reasoning_sent;
    d->first_call = p->calls_sent;
    d->n_calls = p->n_calls - p->calls_sent;
    p->content_sent = p->content.len;
    p->reasoning_sent = p->reasoning.len;
    p->calls_sent = p->n_calls;
}

int ms_srv_parser_call(const ms_srv_parser *p, size_t i, ms_srv_call *out)
{
    if (i >= p->n_calls) return -1;
    *out = p->calls[i];
    return 0;
}

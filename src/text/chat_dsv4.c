/* chat_dsv4.c - DeepSeek-V4's encode_messages in C (see chat_dsv4.h).
 *
 * The encoder's steps, in its order:
 *   1. merge: tool messages become <tool_result> blocks of a user turn (the
 *      previous one when it already is a merged user turn), user messages
 *      join a preceding user turn as text blocks;
 *   2. sort: a user turn's tool results follow the order of the tool_calls of
 *      the latest assistant message that made calls (stable, unknown ids 0);
 *   3. drop (thinking mode, unless keep_reasoning or any message has tools):
 *      before the last user/developer message, assistant turns lose their
 *      reasoning and developer messages go;
 *   4. render each message, then its transition: after a user/developer
 *      message that is last or followed by an assistant / latest_reminder
 *      message, <｜Assistant｜> and <think> (thinking, current turn) or </think>. */
#include "chat_dsv4.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "strbuf.h"
#include "util.h"

#define BOS "<｜begin▁of▁sentence｜>"
#define EOS "<｜end▁of▁sentence｜>"
#define USER "<｜User｜>"
#define ASSISTANT "<｜Assistant｜>"
#define REMINDER "<｜latest_reminder｜>"
#define THINK "<think>"
#define END_THINK "</think>"
#define DSML "｜DSML｜"

static const char REASONING_EFFORT_MAX[] =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root "
    "cause, rigorously stress-testing your logic against all potential paths, edge cases, and adversarial "
    "scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
    "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n";

/* TOOLS_TEMPLATE, split where the schemas go. */
static const char TOOLS_HEAD[] =
    "## Tools\n\n"
    "You have access to a set of tools to help answer the user's question. You can invoke tools by writing a "
    "\"<" DSML "tool_calls>\" block like the following:\n\n"
    "<" DSML "tool_calls>\n"
    "<" DSML "invoke name=\"$TOOL_NAME\">\n"
    "<" DSML "parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</" DSML "parameter>\n"
    "...\n"
    "</" DSML "invoke>\n"
    "<" DSML "invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</" DSML "invoke>\n"
    "</" DSML "tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other types (numbers, "
    "booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by " THINK "), you MUST output your complete reasoning inside " THINK
    "..." END_THINK " BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after " END_THINK " with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n";
static const char TOOLS_TAIL[] =
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n";

enum { R_SYSTEM, R_DEVELOPER, R_USER, R_ASSISTANT, R_TOOL, R_REMINDER };
static const char *const role_names[] = {"system", "developer", "user", "assistant", "tool", "latest_reminder"};

typedef struct block {
    bool tool;         /* <tool_result> (else text) */
    const char *text;
    const char *id;    /* tool_call_id */
} block;

/* A message after merging (and dropping). */
typedef struct pmsg {
    int role;
    const ms_dsv4_msg *m;   /* the source (NULL for a user turn made of tool results) */
    const char *reasoning;  /* NULL once dropped */
    size_t b0, nb;          /* user: its blocks */
    json_object *tools;     /* parsed tools (system / developer), NULL if none */
    json_object *format;    /* parsed response_format */
} pmsg;

typedef struct enc {
    pmsg *msgs;
    size_t n;
    block *blocks;
    size_t nb;
    json_object **owned; /* parsed JSON to release */
    size_t n_owned;
    ms_err *err;
} enc;

/* Parse JSON text of message i's field (NULL text: NULL). */
static int parse_field(enc *e, size_t i, const char *field, const char *text, json_object **out)
{
    *out = NULL;
    if (!text) return 0;
    json_object *v;
    char what[64];
    snprintf(what, sizeof what, "message %zu: %s", i, field);
    int rc = ms_json_parse(text, strlen(text), what, &v, e->err);
    if (rc < 0) return rc;
    e->owned[e->n_owned++] = v;
    *out = v;
    return 0;
}

static int role_of(const char *r)
{
    for (int i = 0; r && i < (int)MS_ARRAY_LEN(role_names); i++)
        if (!strcmp(r, role_names[i])) return i;
    return -1;
}

/* Step 1: merge tool and user messages into user turns of blocks. */
static int merge(enc *e, const ms_dsv4_msg *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const ms_dsv4_msg *m = &msgs[i];
        int role = role_of(m->role);
        if (role < 0)
            return ms_errf(e->err, EINVAL, "message %zu: unknown role \"%s\" (system, developer, user, assistant, tool, "
                                           "latest_reminder)", i, m->role ? m->role : "(null)");
        if (role == R_DEVELOPER && !(m->content && *m->content))
            return ms_errf(e->err, EINVAL, "message %zu: a developer message needs content", i);
        if (role == R_TOOL || role == R_USER) {
            e->blocks[e->nb++] = (block){role == R_TOOL, m->content ? m->content : "", m->tool_call_id};
            pmsg *last = e->n ? &e->msgs[e->n - 1] : NULL;
            if (last && last->role == R_USER) { /* join the previous user turn */
                last->nb++;
                continue;
            }
            e->msgs[e->n++] = (pmsg){.role = R_USER, .m = role == R_USER ? m : NULL, .b0 = e->nb - 1, .nb = 1};
            continue;
        }
        pmsg *p = &e->msgs[e->n++];
        *p = (pmsg){.role = role, .m = m, .reasoning = m->reasoning};
        int rc;
        if ((rc = parse_field(e, i, "tools", m->tools, &p->tools)) < 0) return rc;
        if ((rc = parse_field(e, i, "response_format", m->response_format, &p->format)) < 0) return rc;
        if (p->tools && !ms_json_truthy(p->tools)) p->tools = NULL;
        if (p->format && !ms_json_truthy(p->format)) p->format = NULL;
        if (p->tools && !json_object_is_type(p->tools, json_type_array))
            return ms_errf(e->err, EINVAL, "message %zu: tools must be a JSON array", i);
        for (size_t t = 0; p->tools && t < json_object_array_length(p->tools); t++)
            if (!json_object_is_type(ms_json_get(json_object_array_get_idx(p->tools, t), "function"), json_type_object))
                return ms_errf(e->err, EINVAL, "message %zu: tools[%zu] has no \"function\" object", i, t);
    }
    return 0;
}

/* Step 2: tool results in the order of the latest assistant's calls. */
static void sort_results(enc *e)
{
    const ms_dsv4_msg *calls = NULL; /* the latest assistant message with tool calls */
    for (size_t i = 0; i < e->n; i++) {
        pmsg *p = &e->msgs[i];
        if (p->role == R_ASSISTANT && p->m->n_tool_calls) calls = p->m;
        if (p->role != R_USER || !calls) continue;
        block *b = e->blocks + p->b0;
        size_t ntool = 0;
        for (size_t j = 0; j < p->nb; j++) ntool += b[j].tool;
        bool any_id = false;
        for (size_t c = 0; c < calls->n_tool_calls; c++) any_id |= calls->tool_calls[c].id && *calls->tool_calls[c].id;
        if (ntool < 2 || !any_id) continue;
        /* stable insertion sort of the tool blocks by call index (unknown: 0), in their own slots */
        for (size_t j = 0; j < p->nb; j++) {
            if (!b[j].tool) continue;
            for (size_t k = j; k > 0;) {
                size_t prev = k - 1;
                while (prev > 0 && !b[prev].tool) prev--;
                if (!b[prev].tool) break;
                size_t kp = 0, kk = 0;
                for (size_t c = 0; c < calls->n_tool_calls; c++) {
                    const char *id = calls->tool_calls[c].id;
                    if (!id || !*id) continue;
                    if (b[prev].id && !strcmp(id, b[prev].id)) kp = c;
                    if (b[k].id && !strcmp(id, b[k].id)) kk = c;
                }
                if (kp <= kk) break;
                block t = b[prev];
                b[prev] = b[k];
                b[k] = t;
                k = prev;
            }
        }
    }
}

static long last_user(const enc *e)
{
    for (size_t i = e->n; i-- > 0;)
        if (e->msgs[i].role == R_USER || e->msgs[i].role == R_DEVELOPER) return (long)i;
    return -1;
}

/* Step 3: drop earlier turns' reasoning (and earlier developer messages). */
static void drop_thinking(enc *e)
{
    long lu = last_user(e);
    size_t o = 0;
    for (size_t i = 0; i < e->n; i++) {
        pmsg p = e->msgs[i];
        bool keep = p.role == R_USER || p.role == R_SYSTEM || p.role == R_TOOL || p.role == R_REMINDER ||
                    (long)i >= lu;
        if (!keep && p.role == R_ASSISTANT) {
            p.reasoning = NULL;
            keep = true;
        }
        if (keep) e->msgs[o++] = p;
    }
    e->n = o;
}

static void put_tools(ms_strbuf *b, json_object *tools)
{
    ms_sb_puts(b, "\n\n");
    ms_sb_puts(b, TOOLS_HEAD);
    for (size_t t = 0; t < json_object_array_length(tools); t++) {
        if (t) ms_sb_putc(b, '\n');
        ms_json_dump_py(b, ms_json_get(json_object_array_get_idx(tools, t), "function"), -1, 0);
    }
    ms_sb_puts(b, TOOLS_TAIL);
}

static void put_format(ms_strbuf *b, json_object *format)
{
    ms_sb_puts(b, "\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n");
    ms_json_dump_py(b, format, -1, 0);
}

/* One parameter line of a DSML invoke. */
static void put_param(ms_strbuf *b, const char *key, json_object *v)
{
    bool str = json_object_is_type(v, json_type_string);
    ms_sb_printf(b, "<" DSML "parameter name=\"%s\" string=\"%s\">", key, str ? "true" : "false");
    if (str) ms_sb_putn(b, json_object_get_string(v), (size_t)json_object_get_string_len(v));
    else ms_json_dump_py(b, v, -1, 0);
    ms_sb_puts(b, "</" DSML "parameter>");
}

/* An assistant's tool calls: "\n\n<｜DSML｜tool_calls>\n" invokes "\n</｜DSML｜tool_calls>". */
static int put_tool_calls(enc *e, ms_strbuf *b, const ms_dsv4_msg *m)
{
    ms_sb_puts(b, "\n\n<" DSML "tool_calls>\n");
    for (size_t c = 0; c < m->n_tool_calls; c++) {
        const ms_dsv4_tool_call *tc = &m->tool_calls[c];
        if (c) ms_sb_putc(b, '\n');
        ms_sb_printf(b, "<" DSML "invoke name=\"%s\">\n", tc->name ? tc->name : "None");
        /* arguments: a JSON object's members in order; text that is not JSON is one string "arguments" */
        json_object *args = NULL;
        ms_err perr = {0};
        bool parsed = tc->arguments && ms_json_parse(tc->arguments, strlen(tc->arguments), "arguments", &args, &perr) == 0;
        if (parsed && !json_object_is_type(args, json_type_object)) {
            json_object_put(args);
            return ms_errf(e->err, EINVAL, "tool call %s: arguments must be a JSON object",
                           tc->name ? tc->name : "(no name)");
        }
        if (parsed) {
            bool first = true;
            json_object_object_foreach(args, key, val)
            {
                if (!first) ms_sb_putc(b, '\n');
                first = false;
                put_param(b, key, val);
            }
            json_object_put(args);
        } else {
            json_object *raw = tc->arguments ? json_object_new_string(tc->arguments) : NULL;
            put_param(b, "arguments", raw);
            json_object_put(raw);
        }
        ms_sb_puts(b, "\n</" DSML "invoke>");
    }
    ms_sb_puts(b, "\n</" DSML "tool_calls>");
    return 0;
}

/* Step 4: message i and its transition. */
static int render(enc *e, ms_strbuf *b, size_t i, const ms_dsv4_opts *o, bool drop, bool gen_prompt)
{
    const pmsg *p = &e->msgs[i];
    long lu = last_user(e);
    const char *content = p->m && p->m->content ? p->m->content : "";
    if (i == 0 && o->thinking && o->reasoning_max) ms_sb_puts(b, REASONING_EFFORT_MAX);
    switch (p->role) {
    case R_SYSTEM:
    case R_DEVELOPER:
        if (p->role == R_DEVELOPER) ms_sb_puts(b, USER);
        ms_sb_puts(b, content);
        if (p->tools) put_tools(b, p->tools);
        if (p->format) put_format(b, p->format);
        break;
    case R_USER:
        ms_sb_puts(b, USER);
        for (size_t j = 0; j < p->nb; j++) {
            const block *bl = &e->blocks[p->b0 + j];
            if (j) ms_sb_puts(b, "\n\n");
            if (bl->tool) ms_sb_puts(b, "<tool_result>");
            ms_sb_puts(b, bl->text);
            if (bl->tool) ms_sb_puts(b, "</tool_result>");
        }
        break;
    case R_REMINDER: /* the encoder formats a missing content as None */
        ms_sb_puts(b, REMINDER);
        ms_sb_puts(b, p->m->content ? p->m->content : "None");
        break;
    case R_ASSISTANT:
        if (o->thinking && (!drop || (long)i > lu)) {
            ms_sb_puts(b, p->reasoning ? p->reasoning : "");
            ms_sb_puts(b, END_THINK);
        }
        ms_sb_puts(b, content);
        if (p->m->n_tool_calls) {
            int rc = put_tool_calls(e, b, p->m);
            if (rc < 0) return rc;
        }
        ms_sb_puts(b, EOS);
        break;
    }
    /* the transition into the assistant's turn */
    if (i + 1 < e->n && e->msgs[i + 1].role != R_ASSISTANT && e->msgs[i + 1].role != R_REMINDER) return 0;
    if (p->role != R_USER && p->role != R_DEVELOPER) return 0;
    if (i + 1 == e->n && !gen_prompt) return 0;
    ms_sb_puts(b, ASSISTANT);
    ms_sb_puts(b, o->thinking && (!drop || (long)i >= lu) ? THINK : END_THINK);
    return 0;
}

int ms_chat_dsv4_render(const ms_dsv4_msg *msgs, size_t n, const ms_dsv4_opts *opts, bool add_generation_prompt,
                        char **out, size_t *out_len, ms_err *err)
{
    ms_dsv4_opts none = {0};
    const ms_dsv4_opts *o = opts ? opts : &none;
    enc e = {.err = err};
    e.msgs = calloc(n + 1, sizeof *e.msgs);
    e.blocks = calloc(n + 1, sizeof *e.blocks);
    e.owned = calloc(2 * n + 1, sizeof *e.owned);
    ms_strbuf b = {0};
    int rc = 0;
    if (!e.msgs || !e.blocks || !e.owned) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = merge(&e, msgs, n)) < 0) goto out;
    sort_results(&e);
    bool drop = !o->keep_reasoning;
    for (size_t i = 0; i < e.n; i++) drop &= !e.msgs[i].tools;
    if (o->thinking && drop) drop_thinking(&e);
    if (!o->no_bos) ms_sb_puts(&b, BOS);
    for (size_t i = 0; i < e.n && rc == 0; i++) rc = render(&e, &b, i, o, drop, add_generation_prompt);
    if (rc == 0) rc = ms_sb_error(&b, "the DeepSeek-V4 prompt", err);
    if (rc == 0) {
        if (out_len) *out_len = b.len;
        *out = ms_sb_take(&b);
        if (!*out) rc = ms_errf(err, ENOMEM, "out of memory");
    }
out:
    for (size_t i = 0; i < e.n_owned; i++) json_object_put(e.owned[i]);
    free(e.owned);
    free(e.msgs);
    free(e.blocks);
    ms_sb_free(&b);
    return rc;
}

/* ---- OpenAI-style JSON messages -> ms_dsv4_msg ---------------------------- */

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string)) return NULL;
    return json_object_get_string(v);
}

int ms_chat_dsv4_render_json(json_object *messages, json_object *tools, json_object *kwargs, bool add_generation_prompt,
                             char **out, size_t *out_len, ms_err *err)
{
    *out = NULL;
    if (!json_object_is_type(messages, json_type_array)) return ms_errf(err, EINVAL, "messages: expected a JSON array");
    size_t n = json_object_array_length(messages), total_calls = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *tc, *m = json_object_array_get_idx(messages, i);
        if (!json_object_is_type(m, json_type_object)) return ms_errf(err, EINVAL, "messages[%zu]: expected an object", i);
        if (json_object_object_get_ex(m, "tool_calls", &tc) && json_object_is_type(tc, json_type_array))
            total_calls += json_object_array_length(tc);
    }
    /* tools of the request go on the first system message (one is added when there is none) */
    const char *tools_text = tools && json_object_is_type(tools, json_type_array)
                                 ? json_object_to_json_string_ext(tools, JSON_C_TO_STRING_PLAIN)
                                 : NULL;
    bool add_system = tools_text && !(n > 0 && jstr(json_object_array_get_idx(messages, 0), "role") &&
                                      !strcmp(jstr(json_object_array_get_idx(messages, 0), "role"), "system"));
    ms_dsv4_msg *msgs = calloc(n + 1, sizeof *msgs);
    ms_dsv4_tool_call *calls = calloc(total_calls + 1, sizeof *calls);
    if (!msgs || !calls) {
        free(msgs);
        free(calls);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    size_t k = 0, c = 0;
    if (add_system) msgs[k++] = (ms_dsv4_msg){.role = "system", .content = "", .tools = tools_text};
    for (size_t i = 0; i < n; i++, k++) {
        json_object *m = json_object_array_get_idx(messages, i), *tc, *args, *rf;
        ms_dsv4_msg *d = &msgs[k];
        d->role = jstr(m, "role");
        d->content = jstr(m, "content");
        d->reasoning = jstr(m, "reasoning_content");
        d->tool_call_id = jstr(m, "tool_call_id");
        if (json_object_object_get_ex(m, "response_format", &rf) && !json_object_is_type(rf, json_type_null))
            d->response_format = json_object_to_json_string_ext(rf, JSON_C_TO_STRING_PLAIN);
        if (i == 0 && tools_text && !add_system) d->tools = tools_text;
        if (!d->role) {
            free(msgs);
            free(calls);
            return ms_errf(err, EINVAL, "messages[%zu]: \"role\" is missing", i);
        }
        if (json_object_object_get_ex(m, "tool_calls", &tc) && json_object_is_type(tc, json_type_array)) {
            d->tool_calls = calls + c;
            for (size_t j = 0; j < json_object_array_length(tc); j++, c++) {
                json_object *call = json_object_array_get_idx(tc, j), *fn = NULL;
                json_object_object_get_ex(call, "function", &fn);
                calls[c].id = jstr(call, "id");
                calls[c].name = jstr(fn, "name");
                calls[c].arguments = "{}";
                if (fn && json_object_object_get_ex(fn, "arguments", &args))
                    calls[c].arguments = json_object_is_type(args, json_type_string)
                                             ? json_object_get_string(args)
                                             : json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN);
                d->n_tool_calls++;
            }
        }
    }
    /* template kwargs: thinking (bool), thinking_mode ("thinking" | "chat"), enable_thinking
     * (bool), keep_reasoning / drop_thinking, reasoning_effort ("max") */
    ms_dsv4_opts o = {0};
    json_object *v;
    if (kwargs && json_object_is_type(kwargs, json_type_object)) {
        if (json_object_object_get_ex(kwargs, "thinking", &v) || json_object_object_get_ex(kwargs, "enable_thinking", &v))
            o.thinking = json_object_get_boolean(v);
        const char *mode = jstr(kwargs, "thinking_mode");
        if (mode) o.thinking = !strcmp(mode, "thinking");
        if (json_object_object_get_ex(kwargs, "drop_thinking", &v)) o.keep_reasoning = !json_object_get_boolean(v);
        if (json_object_object_get_ex(kwargs, "keep_reasoning", &v)) o.keep_reasoning = json_object_get_boolean(v);
        const char *effort = jstr(kwargs, "reasoning_effort");
        o.reasoning_max = effort && !strcmp(effort, "max");
    }
    int rc = ms_chat_dsv4_render(msgs, k, &o, add_generation_prompt, out, out_len, err);
    free(msgs);
    free(calls);
    return rc;
}

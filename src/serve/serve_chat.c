/* serve_chat.c - chat formats for the server (see serve_chat.h), on the
 * checkpoint's own Jinja chat template (src/text/chat_template.c) and the
 * tool-call / reasoning parsers of src/text/toolcall.c.
 *
 * The output format is detected from the template text (the "tool_use" one
 * when the request has tools). A request without tools, or with tool_choice
 * none, gets the "none" format: content and reasoning only. Forcing a call
 * (tool_choice required or a named function) appends the format's call
 * opening to the prompt; the parser is fed that opening first, so the model's
 * continuation is parsed as the inside of a call. */
#include "serve_chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "json.h"
#include "strbuf.h"
#include "toolcall.h"

struct ms_srv_chat {
    ms_chat_template *ct; /* NULL: the model has no chat template */
    json_object *kwargs;  /* server defaults (NULL: none) */
    const ms_tokenizer *tok;
    const ms_toolcall_ops *fmt, *fmt_tools;
};

int ms_srv_chat_new(ms_chat_template *ct, json_object *kwargs, const ms_tokenizer *tok, ms_srv_chat **out, ms_err *err)
{
    ms_srv_chat *c = calloc(1, sizeof *c);
    if (!c) {
        ms_chat_template_free(ct);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    c->ct = ct;
    c->kwargs = kwargs ? json_object_get(kwargs) : NULL;
    c->tok = tok;
    c->fmt = ms_toolcall_detect(ct ? ms_chat_template_text(ct, false) : NULL);
    c->fmt_tools = ms_toolcall_detect(ct ? ms_chat_template_text(ct, true) : NULL);
    *out = c;
    return 0;
}

void ms_srv_chat_free(ms_srv_chat *c)
{
    if (!c) return;
    ms_chat_template_free(c->ct);
    json_object_put(c->kwargs);
    free(c);
}

bool ms_srv_chat_available(const ms_srv_chat *c) { return c && c->ct; }

const char *ms_srv_chat_format(const ms_srv_chat *c) { return ms_toolcall_name(c->fmt_tools); }

/* The messages as the template wants them: tool-call arguments (a JSON string in
 * the OpenAI API) as mappings, as transformers passes them, where the string parses
 * as an object and the format's template does not concatenate them as text. */
static json_object *template_messages(const ms_toolcall_ops *fmt, json_object *msgs)
{
    json_object *copy = NULL;
    if (json_object_deep_copy(msgs, &copy, NULL) != 0) return NULL;
    for (size_t i = 0; !ms_toolcall_args_as_string(fmt) && i < json_object_array_length(copy); i++) {
        json_object *calls = ms_json_get(json_object_array_get_idx(copy, i), "tool_calls");
        if (!json_object_is_type(calls, json_type_array)) continue;
        for (size_t j = 0; j < json_object_array_length(calls); j++) {
            json_object *fn = ms_json_get(json_object_array_get_idx(calls, j), "function");
            json_object *args = ms_json_get(fn, "arguments"), *obj = NULL;
            const char *a = json_object_get_string(args);
            ms_err err = {0};
            if (a && ms_json_parse(a, strlen(a), "arguments", &obj, &err) == 0 && json_object_is_type(obj, json_type_object))
                json_object_object_add(fn, "arguments", obj);
            else if (obj)
                json_object_put(obj);
        }
    }
    return copy;
}

int ms_srv_chat_render(const ms_srv_chat *c, const ms_srv_request *r, char **prompt, size_t *len,
                       const char **forced, ms_err *err)
{
    *forced = NULL;
    if (!c->ct) return ms_errf(err, ENOTSUP, "the model has no chat template: use /v1/completions");
    bool tools = r->tools && r->tool_choice != MS_TOOLS_NONE;
    json_object *msgs = template_messages(tools ? c->fmt_tools : c->fmt, r->messages);
    if (!msgs) return ms_errf(err, ENOMEM, "out of memory");
    char *text = NULL;
    size_t tl = 0;
    json_object *kw = r->template_kwargs;
    if (c->kwargs && kw) { /* the server's defaults, the request's keys on top */
        json_object *merged = NULL;
        if (json_object_deep_copy(c->kwargs, &merged, NULL) != 0) {
            json_object_put(msgs);
            return ms_errf(err, ENOMEM, "out of memory");
        }
        json_object_object_foreach(r->template_kwargs, k, v) json_object_object_add(merged, k, json_object_get(v));
        kw = merged;
    } else if (c->kwargs) {
        kw = json_object_get(c->kwargs);
    } else if (kw) {
        json_object_get(kw);
    }
    int rc = ms_chat_template_render(c->ct, msgs, tools ? r->tools : NULL, kw, NULL, true, &text, &tl, err);
    json_object_put(kw);
    json_object_put(msgs);
    if (rc < 0) return rc;
    if (tools && (r->tool_choice == MS_TOOLS_REQUIRED || r->tool_choice == MS_TOOLS_NAMED)) {
        ms_strbuf sb = {0};
        ms_sb_putn(&sb, text, tl);
        free(text);
        size_t at = sb.len;
        if (!ms_toolcall_force_opening(c->fmt_tools, r->tool_choice == MS_TOOLS_NAMED ? r->tool_name : NULL, &sb)) {
            ms_sb_free(&sb);
            return ms_errf(err, ENOTSUP, "tool_choice %s is not supported for this model's tool-call format (%s)",
                           r->tool_choice == MS_TOOLS_REQUIRED ? "required" : "with a function",
                           ms_srv_chat_format(c));
        }
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
    return ms_toolcall_stop_ids(c->ct ? (with_tools ? c->fmt_tools : c->fmt) : NULL, with_tools, c->tok, ids, cap);
}

/* ---- the output parser: toolcall.h's, seen through the server's types ---- */

struct ms_srv_parser {
    ms_chat_parser *p;
};

int ms_srv_parser_new(const ms_srv_chat *c, json_object *tools, const char *prompt, size_t prompt_len,
                      const char *forced, ms_srv_parser **out, ms_err *err)
{
    ms_srv_parser *p = calloc(1, sizeof *p);
    if (!p) return ms_errf(err, ENOMEM, "out of memory");
    const ms_toolcall_ops *ops = tools ? c->fmt_tools : ms_toolcall_by_name("none");
    size_t pl = forced ? (size_t)(forced - prompt) : prompt_len; /* reasoning: the prompt before a forced call */
    int rc = ms_chat_parser_new(ops, tools, ms_toolcall_prompt_in_reasoning(ops, prompt, pl), &p->p, err);
    *out = p;
    if (rc == 0 && forced) { /* the forced call opening is the answer's beginning, not output */
        ms_chat_delta d;
        rc = ms_chat_parser_feed(p->p, forced, strlen(forced), err);
        ms_chat_parser_delta(p->p, &d);
    }
    return rc;
}

void ms_srv_parser_free(ms_srv_parser *p)
{
    if (!p) return;
    ms_chat_parser_free(p->p);
    free(p);
}

int ms_srv_parser_feed(ms_srv_parser *p, const char *text, size_t len, ms_err *err)
{
    return ms_chat_parser_feed(p->p, text, len, err);
}

int ms_srv_parser_finish(ms_srv_parser *p, ms_err *err) { return ms_chat_parser_finish(p->p, err); }

void ms_srv_parser_delta(ms_srv_parser *p, ms_srv_delta *d)
{
    ms_chat_delta cd;
    ms_chat_parser_delta(p->p, &cd);
    *d = (ms_srv_delta){.content = cd.content, .content_len = cd.content_len, .reasoning = cd.reasoning,
                        .reasoning_len = cd.reasoning_len, .first_call = cd.first_call, .n_calls = cd.n_calls};
}

int ms_srv_parser_call(const ms_srv_parser *p, size_t i, ms_srv_call *out)
{
    const ms_toolcall *tc = ms_chat_parser_call(p->p, i);
    if (!tc) return -1;
    *out = (ms_srv_call){.id = tc->id, .name = tc->name, .arguments = tc->arguments};
    return 0;
}

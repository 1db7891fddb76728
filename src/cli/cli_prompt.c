/* cli_prompt.c - chat-template options and answer printing shared by run and chat
 * (see cli_prompt.h). */
#include "cli_prompt.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int ms_cli_prompt_opt(int opt, const char *arg, ms_cli_prompt *p, ms_err *err)
{
    (void)err;
    switch (opt) {
    case MS_OPT_CHAT_TEMPLATE: p->template_file = arg; return 1;
    case MS_OPT_CHAT_KWARGS: p->kwargs_text = arg; return 1;
    case MS_OPT_TOOLS: p->tools_file = arg; return 1;
    default: return 0;
    }
}

void ms_cli_prompt_help(FILE *f)
{
    fprintf(f, "chat template:\n"
               "  --chat-template FILE         use this Jinja template instead of the model's own\n"
               "  --chat-template-kwargs JSON  extra template variables, e.g. '{\"enable_thinking\": false}'\n"
               "  --tools FILE                 tools the model may call: a JSON array of OpenAI-style tool specs\n");
}

static struct json_object *parse_json(const char *text, size_t len, const char *what, ms_err *err)
{
    json_tokener *tk = json_tokener_new_ex(256);
    json_object *o = tk ? json_tokener_parse_ex(tk, text, (int)len) : NULL;
    bool ok = tk && o && json_tokener_get_error(tk) == json_tokener_success;
    if (tk) json_tokener_free(tk);
    if (!ok) {
        json_object_put(o);
        ms_errf(err, EINVAL, "%s: invalid JSON", what);
        return NULL;
    }
    return o;
}

int ms_cli_prompt_setup(ms_cli_prompt *p, const char *model, const ms_tokenizer *tok, bool optional, ms_err *err)
{
    if (p->kwargs_text) {
        if (!(p->kwargs = parse_json(p->kwargs_text, strlen(p->kwargs_text), "--chat-template-kwargs", err))) return -EINVAL;
        if (!json_object_is_type(p->kwargs, json_type_object))
            return ms_errf(err, EINVAL, "--chat-template-kwargs: expected a JSON object, e.g. '{\"enable_thinking\": false}'");
    }
    if (p->tools_file) {
        char *txt;
        size_t len;
        int rc = ms_read_file(p->tools_file, 64u << 20, &txt, &len, err);
        if (rc < 0) return rc;
        p->tools = parse_json(txt, len, p->tools_file, err);
        free(txt);
        if (!p->tools) return -EINVAL;
        if (!json_object_is_type(p->tools, json_type_array))
            return ms_errf(err, EINVAL, "%s: expected a JSON array of tools", p->tools_file);
    }
    int rc = ms_chat_template_load(model, p->template_file, tok, &p->ct, err);
    if (rc == -ENOENT && optional && !p->template_file) {
        ms_err_clear(err);
        return 0;
    }
    if (rc < 0) return rc;
    p->format = ms_toolcall_detect(ms_chat_template_text(p->ct, p->tools != NULL));
    return 0;
}

void ms_cli_prompt_free(ms_cli_prompt *p)
{
    ms_chat_template_free(p->ct);
    json_object_put(p->kwargs);
    json_object_put(p->tools);
    p->ct = NULL;
    p->kwargs = p->tools = NULL;
}

int ms_cli_prompt_render(const ms_cli_prompt *p, json_object *messages, bool add_generation_prompt, char **out,
                         size_t *len, ms_err *err)
{
    return ms_chat_template_render(p->ct, messages, p->tools, p->kwargs, NULL, add_generation_prompt, out, len, err);
}

int ms_cli_prompt_stops(const ms_cli_prompt *p, const ms_tokenizer *tok, int32_t *ids, int cap)
{
    return (int)ms_toolcall_stop_ids(p->ct ? p->format : NULL, p->tools != NULL, tok, ids, cap > 0 ? (size_t)cap : 0);
}

void ms_cli_prompt_print(ms_chat_parser *cp, FILE *out, FILE *reasoning_out, bool *line_open)
{
    ms_chat_delta d;
    ms_chat_parser_delta(cp, &d);
    if (d.reasoning_len && reasoning_out) {
        fwrite(d.reasoning, 1, d.reasoning_len, reasoning_out);
        fflush(reasoning_out);
    }
    if (d.content_len) {
        fwrite(d.content, 1, d.content_len, out);
        *line_open = d.content[d.content_len - 1] != '\n';
    }
    for (size_t i = 0; i < d.n_calls; i++) {
        const ms_toolcall *tc = ms_chat_parser_call(cp, d.first_call + i);
        fprintf(out, "%s[tool call] %s %s %s\n", *line_open ? "\n" : "", tc->id, tc->name, tc->arguments);
        *line_open = false;
    }
    fflush(out);
}

size_t ms_cli_prompt_add_answer(json_object *conv, ms_chat_parser *cp, json_object **pending)
{
    json_object *msg = ms_chat_parser_message(cp), *calls;
    json_object_array_add(conv, msg);
    json_object_put(*pending);
    *pending = NULL;
    if (!json_object_object_get_ex(msg, "tool_calls", &calls)) return 0;
    /* a copy: answered calls leave *pending, never the message */
    if (json_object_deep_copy(calls, pending, NULL) != 0) {
        *pending = NULL; /* out of memory: the calls cannot be answered */
        return 0;
    }
    return json_object_array_length(calls);
}

int ms_cli_prompt_tool_result(json_object *conv, json_object **pending, const char *result)
{
    if (!*pending || json_object_array_length(*pending) == 0) return -1;
    json_object *call = json_object_array_get_idx(*pending, 0), *id, *fn, *name;
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string("tool"));
    if (json_object_object_get_ex(call, "id", &id)) json_object_object_add(m, "tool_call_id", json_object_get(id));
    if (json_object_object_get_ex(call, "function", &fn) && json_object_object_get_ex(fn, "name", &name))
        json_object_object_add(m, "name", json_object_get(name));
    json_object_object_add(m, "content", json_object_new_string(result));
    json_object_array_add(conv, m);
    json_object_array_del_idx(*pending, 0, 1);
    if (json_object_array_length(*pending) > 0) return 0;
    json_object_put(*pending);
    *pending = NULL;
    return 1;
}

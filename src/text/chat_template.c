/* chat_template.c - loading a checkpoint's chat template and rendering conversations
 * with it (see chat_template.h). The Jinja work is jinja.h's; this file finds the
 * template and the special tokens the way transformers does and assembles the render
 * variables.
 */
#include "chat_template.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer.h"
#include "util.h"

#define MAX_FILE (64u << 20)

/* DeepSeek-V3's template, byte-exact as its tokenizer_config.json ships it. */
const char ms_chat_template_deepseek_v3[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{"
    "% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_f"
    "irst_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_"
    "first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_"
    "sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content']"
    " %}{%- endif %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in mess"
    "ages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['"
    "content']}}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is none %}{%"
    "- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}{{'<"
    "｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['fun"
    "ction']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜to"
    "ol▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['"
    "type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']["
    "'arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%"
    "- endif %}{%- endfor %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] "
    "is not none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sent"
    "ence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜en"
    "d▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool "
    "= true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message["
    "'content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'\n<｜tool▁"
    "output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor"
    " -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not "
    "ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}";

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static json_object *parse_json_file(const char *path, ms_err *err)
{
    char *txt;
    size_t len;
    if (ms_read_file(path, MAX_FILE, &txt, &len, err) < 0) return NULL;
    json_tokener *tk = json_tokener_new_ex(512);
    json_object *o = tk ? json_tokener_parse_ex(tk, txt, (int)len) : NULL;
    bool ok = o && tk && json_tokener_get_error(tk) == json_tokener_success;
    if (tk) json_tokener_free(tk);
    free(txt);
    if (!ok) {
        json_object_put(o);
        ms_errf(err, EINVAL, "%s: invalid JSON", path);
        return NULL;
    }
    return o;
}

/* a special token value: a string, or an AddedToken dict {"content": ...}; NULL if none */
static const char *token_text(json_object *v)
{
    if (json_object_is_type(v, json_type_string)) return json_object_get_string(v);
    json_object *c;
    if (json_object_is_type(v, json_type_object) && json_object_object_get_ex(v, "content", &c) &&
        json_object_is_type(c, json_type_string))
        return json_object_get_string(c);
    return NULL;
}

/* special_tokens_map of a tokenizer_config.json object */
static int special_tokens(json_object *cfg, json_object *out, const char *path, ms_err *err)
{
    static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                       "pad_token", "cls_token", "mask_token"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_object *v;
        if (!json_object_object_get_ex(cfg, keys[i], &v) || json_object_is_type(v, json_type_null)) continue;
        const char *s = token_text(v);
        if (!s) return ms_errf(err, EINVAL, "%s: %s: expected a string or an AddedToken object", path, keys[i]);
        json_object_object_add(out, keys[i], json_object_new_string(s));
    }
    json_object *add;
    if (json_object_object_get_ex(cfg, "additional_special_tokens", &add) && json_object_is_type(add, json_type_array)) {
        json_object *arr = json_object_new_array();
        for (size_t i = 0; i < json_object_array_length(add); i++) {
            const char *s = token_text(json_object_array_get_idx(add, i));
            if (!s) {
                json_object_put(arr);
                return ms_errf(err, EINVAL, "%s: additional_special_tokens[%zu]: expected a string or an AddedToken object",
                               path, i);
            }
            json_object_array_add(arr, json_object_new_string(s));
        }
        json_object_object_add(out, "additional_special_tokens", arr);
    }
    return 0;
}

static int parse_into(ms_chat_template *ct, const char *text, const char *name, bool tool, ms_err *err)
{
    char *copy = strdup(text);
    if (!copy) return ms_errf(err, ENOMEM, "out of memory");
    ms_jinja **slot = tool ? &ct->tool_tmpl : &ct->tmpl;
    int rc = ms_jinja_parse(text, strlen(text), name, slot, err);
    if (rc < 0) {
        free(copy);
        return rc;
    }
    if (tool) ct->tool_text = copy;
    else ct->text = copy;
    return 0;
}

static ms_chat_template *ct_new(void)
{
    ms_chat_template *ct = calloc(1, sizeof *ct);
    if (!ct) return NULL;
    ct->special = json_object_new_object();
    if (!ct->special) {
        free(ct);
        return NULL;
    }
    return ct;
}

int ms_chat_template_from_text(const char *text, size_t len, const char *name, ms_chat_template **out, ms_err *err)
{
    *out = NULL;
    ms_chat_template *ct = ct_new();
    if (!ct) return ms_errf(err, ENOMEM, "out of memory");
    snprintf(ct->origin, sizeof ct->origin, "%s", name ? name : "template");
    int rc = ms_jinja_parse(text, len, ct->origin, &ct->tmpl, err);
    if (rc == 0 && !(ct->text = strndup(text, len))) rc = ms_errf(err, ENOMEM, "out of memory");
    if (rc < 0) {
        ms_chat_template_free(ct);
        return rc;
    }
    *out = ct;
    return 0;
}

/* tokenizer_config.json "chat_template": a string or [{name, template}] */
static int config_templates(json_object *cfg, const char *path, const char **dflt, const char **tool, ms_err *err)
{
    json_object *t;
    *dflt = *tool = NULL;
    if (!json_object_object_get_ex(cfg, "chat_template", &t) || json_object_is_type(t, json_type_null)) return 0;
    if (json_object_is_type(t, json_type_string)) {
        *dflt = json_object_get_string(t);
        return 0;
    }
    if (!json_object_is_type(t, json_type_array))
        return ms_errf(err, EINVAL, "%s: chat_template: expected a string or a list of {name, template}", path);
    for (size_t i = 0; i < json_object_array_length(t); i++) {
        json_object *e = json_object_array_get_idx(t, i), *nm, *tp;
        if (!json_object_object_get_ex(e, "name", &nm) || !json_object_is_type(nm, json_type_string) ||
            !json_object_object_get_ex(e, "template", &tp) || !json_object_is_type(tp, json_type_string))
            return ms_errf(err, EINVAL, "%s: chat_template[%zu]: expected {\"name\": string, \"template\": string}", path, i);
        if (!strcmp(json_object_get_string(nm), "default")) *dflt = json_object_get_string(tp);
        else if (!strcmp(json_object_get_string(nm), "tool_use")) *tool = json_object_get_string(tp);
    }
    if (!*dflt && !*tool)
        return ms_errf(err, EINVAL, "%s: chat_template: a list of named templates needs \"default\" or \"tool_use\"", path);
    return 0;
}

int ms_chat_template_load(const char *dir, const char *override_file, const ms_tokenizer *tok, ms_chat_template **out,
                          ms_err *err)
{
    *out = NULL;
    ms_chat_template *ct = ct_new();
    if (!ct) return ms_errf(err, ENOMEM, "out of memory");
    json_object *cfg = NULL;
    char path[4200], *file_text = NULL;
    const char *dflt = NULL, *tool = NULL;
    int rc = 0;
    if (dir) {
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        if (file_exists(path)) {
            if (!(cfg = parse_json_file(path, err))) rc = -EINVAL;
            else if (!json_object_is_type(cfg, json_type_object)) rc = ms_errf(err, EINVAL, "%s: expected a JSON object", path);
            if (rc == 0) rc = special_tokens(cfg, ct->special, path, err);
            if (rc == 0) rc = config_templates(cfg, path, &dflt, &tool, err);
            if (rc == 0 && (dflt || tool)) snprintf(ct->origin, sizeof ct->origin, "%s", path);
        }
    }
    if (rc == 0 && override_file) {
        rc = ms_read_file(override_file, MAX_FILE, &file_text, NULL, err);
        dflt = file_text;
        tool = NULL;
        snprintf(ct->origin, sizeof ct->origin, "%s", override_file);
    } else if (rc == 0 && dir) {
        snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
        if (file_exists(path)) { /* an independent file wins over the config's template */
            rc = ms_read_file(path, MAX_FILE, &file_text, NULL, err);
            dflt = file_text;
            snprintf(ct->origin, sizeof ct->origin, "%s", path);
        }
        snprintf(path, sizeof path, "%s/chat_template.json", dir);
        if (rc == 0 && !dflt && !tool && file_exists(path)) {
            json_object *j = parse_json_file(path, err), *t;
            if (!j) rc = -EINVAL;
            else if (json_object_object_get_ex(j, "chat_template", &t) && json_object_is_type(t, json_type_string)) {
                if (!(file_text = strdup(json_object_get_string(t)))) rc = ms_errf(err, ENOMEM, "out of memory");
                dflt = file_text;
                snprintf(ct->origin, sizeof ct->origin, "%s", path);
            }
            json_object_put(j);
        }
    }
    if (rc == 0 && !dflt && !tool && tok && ms_tokenizer_token_id(tok, "<｜User｜>", strlen("<｜User｜>")) >= 0 &&
        ms_tokenizer_token_id(tok, "<｜Assistant｜>", strlen("<｜Assistant｜>")) >= 0) {
        dflt = ms_chat_template_deepseek_v3;
        snprintf(ct->origin, sizeof ct->origin, "built-in DeepSeek-V3 template (%s has none)", dir);
    }
    if (rc == 0 && !dflt && !tool)
        rc = ms_errf(err, ENOENT,
                     "%s: no chat template (chat_template.jinja or tokenizer_config.json \"chat_template\"); "
                     "pass --chat-template FILE, or --raw",
                     dir ? dir : "(no model)");
    if (rc == 0 && dflt) rc = parse_into(ct, dflt, ct->origin, false, err);
    if (rc == 0 && tool) rc = parse_into(ct, tool, ct->origin, true, err);
    if (rc == 0 && !ct->tmpl) { /* only "tool_use": it is the default too */
        ct->tmpl = ct->tool_tmpl;
        ct->text = ct->tool_text;
        ct->tool_tmpl = NULL;
        ct->tool_text = NULL;
    }
    free(file_text);
    json_object_put(cfg);
    if (rc < 0) {
        ms_chat_template_free(ct);
        return rc;
    }
    *out = ct;
    return 0;
}

void ms_chat_template_free(ms_chat_template *ct)
{
    if (!ct) return;
    ms_jinja_free(ct->tmpl);
    ms_jinja_free(ct->tool_tmpl);
    free(ct->text);
    free(ct->tool_text);
    json_object_put(ct->special);
    free(ct);
}

const char *ms_chat_template_text(const ms_chat_template *ct, bool with_tools)
{
    return with_tools && ct->tool_text ? ct->tool_text : ct->text;
}

static void merge(json_object *dst, json_object *src)
{
    if (!src || !json_object_is_type(src, json_type_object)) return;
    json_object_object_foreach(src, k, v) json_object_object_add(dst, k, json_object_get(v));
}

int ms_chat_template_render(const ms_chat_template *ct, json_object *messages, json_object *tools, json_object *kwargs,
                            json_object *special, bool add_generation_prompt, char **out, size_t *len, ms_err *err)
{
    *out = NULL;
    if (kwargs && !json_object_is_type(kwargs, json_type_object))
        return ms_errf(err, EINVAL, "template kwargs must be a JSON object");
    if (special && !json_object_is_type(special, json_type_object))
        return ms_errf(err, EINVAL, "special_tokens must be a JSON object");
    static const char *const reserved[] = {"messages", "tools", "documents", "add_generation_prompt"};
    for (size_t i = 0; kwargs && i < sizeof reserved / sizeof reserved[0]; i++)
        if (json_object_object_get_ex(kwargs, reserved[i], NULL))
            return ms_errf(err, EINVAL, "TypeError: got multiple values for keyword argument '%s'", reserved[i]);
    json_object *vars = json_object_new_object();
    if (!vars) return ms_errf(err, ENOMEM, "out of memory");
    merge(vars, ct->special);
    merge(vars, special);
    merge(vars, kwargs);
    json_object_object_add(vars, "messages", json_object_get(messages));
    json_object_object_add(vars, "tools", json_object_get(tools));
    json_object_object_add(vars, "documents", NULL);
    json_object_object_add(vars, "add_generation_prompt", json_object_new_boolean(add_generation_prompt));
    const ms_jinja *t = tools && ct->tool_tmpl ? ct->tool_tmpl : ct->tmpl;
    int rc = ms_jinja_render(t, vars, &ct->opts, out, len, err);
    json_object_put(vars);
    return rc;
}

int ms_chat_template_render_input(const ms_chat_template *ct, json_object *input, char **out, size_t *len, ms_err *err)
{
    *out = NULL;
    if (!json_object_is_type(input, json_type_object)) return ms_errf(err, EINVAL, "input: expected a JSON object");
    json_object *messages = NULL, *tools = NULL, *kwargs = NULL, *special = NULL, *agp = NULL;
    json_object_object_get_ex(input, "messages", &messages);
    json_object_object_get_ex(input, "tools", &tools);
    json_object_object_get_ex(input, "kwargs", &kwargs);
    json_object_object_get_ex(input, "special_tokens", &special);
    json_object_object_get_ex(input, "add_generation_prompt", &agp);
    if (!messages) return ms_errf(err, EINVAL, "input: \"messages\" is missing");
    if (agp && !json_object_is_type(agp, json_type_boolean))
        return ms_errf(err, EINVAL, "input: \"add_generation_prompt\" must be true or false");
    if (kwargs && json_object_is_type(kwargs, json_type_null)) kwargs = NULL;
    if (special && json_object_is_type(special, json_type_null)) special = NULL;
    return ms_chat_template_render(ct, messages, tools, kwargs, special, agp && json_object_get_boolean(agp), out, len,
                                   err);
}

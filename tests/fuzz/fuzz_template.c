/* fuzz_template.c - libFuzzer target: a Jinja chat template through ms_jinja_parse and
 * ms_jinja_render (src/text/jinja.h). The input is the template text; bytes after a
 * first NUL, when they parse as a JSON object, replace the default variables (a chat
 * with tools, tool calls, reasoning, special tokens). Renders run with small limits
 * (steps, output, memory, depth), so a template that would loop or grow forever must
 * stop with an error; every failure must carry a message, every success a
 * NUL-terminated text of the reported length. The same template renders twice and
 * must give the same text (no state leaks between renders). Seeds: the shared real
 * templates and syntax snippets. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"

static const char DEFAULT_VARS[] =
    "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"add_generation_prompt\": true, \"documents\": null,"
    " \"enable_thinking\": false, \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": \"Weather in Москва?\"},"
    " {\"role\": \"assistant\", \"content\": null, \"reasoning_content\": \"check\", \"tool_calls\": [{\"id\": \"abc123XYZ\","
    " \"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Москва\", \"days\": 2}}}]},"
    " {\"role\": \"tool\", \"tool_call_id\": \"abc123XYZ\", \"content\": \"{\\\"t\\\": -5}\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>x</think>Snow.\"},"
    " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Thanks\"}]}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather.\","
    " \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"days\": {\"type\": \"integer\","
    " \"minimum\": 1, \"default\": 1}}, \"required\": [\"city\"]}}}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_object *dflt;
    if (!dflt) dflt = json_tokener_parse(DEFAULT_VARS);
    const char *src = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t len = nul ? (size_t)(nul - data) : size;
    json_object *vars = NULL;
    if (nul) {
        size_t vl = size - len - 1;
        char *v = malloc(vl + 1);
        memcpy(v, nul + 1, vl);
        v[vl] = 0;
        vars = json_tokener_parse(v);
        free(v);
        if (vars && !json_object_is_type(vars, json_type_object)) {
            json_object_put(vars);
            vars = NULL;
        }
    }
    ms_jinja *t = NULL;
    ms_err err = {0};
    if (ms_jinja_parse(src, len, "fuzz", &t, &err) < 0) {
        if (!err.msg[0] || t) abort();
        json_object_put(vars);
        return 0;
    }
    ms_jinja_opts o = {.max_steps = 200000, .max_output = 1 << 20, .max_memory = 64 << 20, .max_depth = 64,
                       .fixed_now = true, .now = 1768473000};
    char *out[2] = {NULL, NULL};
    size_t olen[2] = {0, 0};
    int rc[2];
    for (int i = 0; i < 2; i++) {
        ms_err e = {0};
        rc[i] = ms_jinja_render(t, vars ? vars : dflt, &o, &out[i], &olen[i], &e);
        if (rc[i] < 0 && (!e.msg[0] || out[i])) abort();
        if (rc[i] == 0 && (!out[i] || strlen(out[i]) > olen[i] || out[i][olen[i]] != 0)) abort();
    }
    if (rc[0] != rc[1]) abort();
    if (rc[0] == 0 && (olen[0] != olen[1] || memcmp(out[0], out[1], olen[0]) != 0)) abort();
    free(out[0]);
    free(out[1]);
    ms_jinja_free(t);
    json_object_put(vars);
    return 0;
}

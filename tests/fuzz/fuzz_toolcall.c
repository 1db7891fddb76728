/* fuzz_toolcall.c - libFuzzer target: assistant output through the tool-call and
 * reasoning parser (src/text/toolcall.h). The first byte picks the format and whether
 * the stream starts inside <think>, the second the piece size; the rest is the text.
 * It is parsed whole and in pieces, and both must give the same content, reasoning
 * and calls (the parser's promise), with deltas that add up to the result; every
 * call's arguments must be a JSON object. Seeds: scripted completions of each format. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "toolcall.h"

static const char *const formats[] = {"deepseek_v3", "deepseek_v3_1", "gigachat3_1", "gigachat3", "glm4",
                                      "qwen3_xml",   "hermes",        "kimi_k2",     "none"};

static ms_chat_parser *parse(const ms_toolcall_ops *ops, json_object *tools, bool think, const char *s, size_t n,
                             size_t piece, size_t *delta_content)
{
    ms_chat_parser *p;
    ms_err err = {0};
    if (ms_chat_parser_new(ops, tools, think, &p, &err) < 0) abort();
    *delta_content = 0;
    for (size_t i = 0; i < n; i += piece) {
        size_t k = n - i < piece ? n - i : piece;
        if (ms_chat_parser_feed(p, s + i, k, &err) < 0) abort();
        ms_chat_delta d;
        ms_chat_parser_delta(p, &d);
        *delta_content += d.content_len;
    }
    if (ms_chat_parser_finish(p, &err) < 0) abort();
    ms_chat_delta d;
    ms_chat_parser_delta(p, &d);
    *delta_content += d.content_len;
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_object *tools;
    if (!tools)
        tools = json_tokener_parse("[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"properties\": "
                                   "{\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"string\"}, \"c\": {\"type\": \"boolean\"}}}}}]");
    if (size < 2) return 0;
    const ms_toolcall_ops *ops = ms_toolcall_by_name(formats[(data[0] & 0x7f) % (sizeof formats / sizeof formats[0])]);
    bool think = data[0] & 0x80;
    size_t piece = (size_t)data[1] % 17 + 1;
    const char *s = (const char *)data + 2;
    size_t n = size - 2, d1, d2;
    ms_chat_parser *a = parse(ops, tools, think, s, n, n ? n : 1, &d1), *b = parse(ops, tools, think, s, n, piece, &d2);
    size_t ca, cb, ra, rb;
    const char *xa = ms_chat_parser_content(a, &ca), *xb = ms_chat_parser_content(b, &cb);
    if (ca != cb || memcmp(xa, xb, ca) || d1 != ca || d2 != cb) abort();
    const char *ya = ms_chat_parser_reasoning(a, &ra), *yb = ms_chat_parser_reasoning(b, &rb);
    if (!ya != !yb || (ya && (ra != rb || memcmp(ya, yb, ra)))) abort();
    if (ms_chat_parser_n_calls(a) != ms_chat_parser_n_calls(b)) abort();
    for (size_t i = 0; i < ms_chat_parser_n_calls(a); i++) {
        const ms_toolcall *p = ms_chat_parser_call(a, i), *q = ms_chat_parser_call(b, i);
        if (strcmp(p->name, q->name) || strcmp(p->arguments, q->arguments) || strcmp(p->id, q->id)) abort();
        json_object *o = json_tokener_parse(p->arguments);
        if (!o || !json_object_is_type(o, json_type_object)) abort();
        json_object_put(o);
    }
    json_object_put(ms_chat_parser_message(a));
    ms_chat_parser_free(a);
    ms_chat_parser_free(b);
    return 0;
}

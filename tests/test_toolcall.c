/* test_toolcall.c - tool-call and reasoning parsing (src/text/toolcall.h): scripted
 * completions of every format give the expected {content, reasoning_content,
 * tool_calls}, and the same result whether fed whole, byte by byte, or split in two at
 * every byte (inside markers and inside UTF-8 characters); deltas add up to the
 * result; malformed calls come back as content; format detection from the shared real
 * templates; schema-typed arguments; the assistant message for the next turn. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "ms_test.h"
#include "toolcall.h"

typedef struct expect_call {
    const char *name, *args;
} expect_call;

typedef struct script {
    const char *format;
    bool in_reasoning;
    const char *tools; /* JSON or NULL */
    const char *text;
    const char *content, *reasoning; /* reasoning NULL: none */
    expect_call calls[3];
} script;

static const script scripts[] = {
    {"deepseek_v3", false, NULL,
     "Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
     "{\"city\": \"Москва\", \"days\": 2}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>search_flights\n"
     "```json\n{\"route\": {\"from\": \"SVO\", \"to\": \"PEK\"}, \"passengers\": [{\"name\": \"Анна\"}]}\n```<｜tool▁call▁end｜>"
     "<｜tool▁calls▁end｜>",
     "Let me check.", NULL,
     {{"get_weather", "{\"city\": \"Москва\", \"days\": 2}"},
      {"search_flights", "{\"route\": {\"from\": \"SVO\", \"to\": \"PEK\"}, \"passengers\": [{\"name\": \"Анна\"}]}"}}},
    {"deepseek_v3", true, NULL, "The user greets me.\nI answer.\n</think>\n\nHello! 😀", "Hello! 😀",
     "The user greets me.\nI answer.", {{0}}},
    {"deepseek_v3_1", false, NULL,
     "<think>short</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}"
     "<｜tool▁call▁end｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
     "", "short", {{"get_weather", "{\"city\": \"Paris\"}"}, {"get_time", "{}"}}},
    {"gigachat3_1", false, NULL,
     "Сейчас узнаю.<|function_call|>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Москва\", \"units\": \"metric\"}}",
     "Сейчас узнаю.", NULL, {{"get_weather", "{\"city\": \"Москва\", \"units\": \"metric\"}"}}},
    {"gigachat3_1", false, NULL, "<|function_call|>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": [1, 2.5, true, null]}\"}",
     "", NULL, {{"f", "{\"a\": [1, 2.5, true, null]}"}}},
    {"gigachat3", false, NULL,
     "Сейчас.<|message_sep|>\n\nfunction call<|role_sep|>\n{\"name\": \"get_weather\", \"arguments\": {}}", "Сейчас.", NULL,
     {{"get_weather", "{}"}}},
    {"glm4", false,
     "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", "
     "\"properties\": {\"city\": {\"type\": \"string\"}, \"days\": {\"type\": \"integer\"}, \"code\": {\"type\": \"string\"}}}}}]",
     "<think>Need weather.</think>\nCalling.<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Москва</arg_value>\n"
     "<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n<arg_key>code</arg_key>\n<arg_value>007</arg_value>\n</tool_call>",
     "Calling.", "Need weather.", {{"get_weather", "{\"city\": \"Москва\", \"days\": 2, \"code\": \"007\"}"}}},
    {"glm4", true, NULL,
     "</think><tool_call>search<arg_key>route</arg_key><arg_value>{\"from\": \"SVO\"}</arg_value><arg_key>q</arg_key>"
     "<arg_value>red fox</arg_value></tool_call><tool_call>stop</tool_call>",
     "", "", {{"search", "{\"route\": {\"from\": \"SVO\"}, \"q\": \"red fox\"}"}, {"stop", "{}"}}},
    {"qwen3_xml", true,
     "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"properties\": "
     "{\"city\": {\"type\": \"string\"}, \"days\": {\"type\": [\"integer\", \"null\"]}, \"metric\": {\"type\": \"boolean\"}}}}}]",
     "\nThe city is New York.\n</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n</parameter>\n"
     "<parameter=days>\n3\n</parameter>\n<parameter=metric>\nTrue\n</parameter>\n<parameter=note>\nline 1\nline 2\n</parameter>\n"
     "</function>\n</tool_call>",
     "", "The city is New York.",
     {{"get_weather", "{\"city\": \"New York\", \"days\": 3, \"metric\": true, \"note\": \"line 1\\nline 2\"}"}}},
    {"hermes", false, NULL,
     "I'll call two tools.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
     "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"CET\"}}\n</tool_call>",
     "I'll call two tools.", NULL, {{"get_weather", "{\"city\": \"Paris\"}"}, {"get_time", "{\"tz\": \"CET\"}"}}},
    {"kimi_k2", false, NULL,
     "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": "
     "\"Paris\"}<|tool_call_end|><|tool_call_begin|>functions.get_time:1<|tool_call_argument_begin|>{}<|tool_call_end|>"
     "<|tool_calls_section_end|>",
     "", NULL, {{"get_weather", "{\"city\": \"Paris\"}"}, {"get_time", "{}"}}},
    {"none", false, NULL, "  Plain <b>text</b>, nothing else.\n", "Plain <b>text</b>, nothing else.", NULL, {{0}}},
    /* malformed calls come back as content, as written */
    {"hermes", false, NULL, "Before <tool_call>{not json}</tool_call> after", "Before <tool_call>{not json}</tool_call> after",
     NULL, {{0}}},
    {"hermes", false, NULL, "<tool_call>{\"arguments\": {}}</tool_call>", "<tool_call>{\"arguments\": {}}</tool_call>", NULL,
     {{0}}},
    {"hermes", false, NULL, "x <tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}", "x", NULL, {{"f", "{\"a\": 1}"}}},
    {"hermes", false, NULL, "x <tool_call>\n{\"name\": \"f\", \"argu", "x <tool_call>\n{\"name\": \"f\", \"argu", NULL, {{0}}},
    {"glm4", false, NULL, "<tool_call><arg_key>a</arg_key><arg_value>1</arg_value></tool_call>",
     "<tool_call><arg_key>a</arg_key><arg_value>1</arg_value></tool_call>", NULL, {{0}}},
    {"qwen3_xml", false, NULL, "<tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n</tool_call>",
     "<tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n</tool_call>", NULL, {{0}}},
    {"gigachat3_1", false, NULL, "Ok<|function_call|>not json at all", "Ok<|function_call|>not json at all", NULL, {{0}}},
    {"gigachat3_1", false, NULL, "Ok<|function_call|>{\"name\": \"f\", \"arguments\": {\"a\": \"}\"", 
     "Ok<|function_call|>{\"name\": \"f\", \"arguments\": {\"a\": \"}\"", NULL, {{0}}},
    {"deepseek_v3", false, NULL,
     "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{bad}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
     "<｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{bad}\n```<｜tool▁call▁end｜>", NULL, {{0}}},
    {"kimi_k2", false, NULL, "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0 no args<|tool_call_end|>",
     "<|tool_call_begin|>functions.f:0 no args<|tool_call_end|>", NULL, {{0}}},
    /* reasoning cut off by max tokens; <think> only opens at the start */
    {"hermes", false, NULL, "<think>\nstill thinking", "", "still thinking", {{0}}},
    {"hermes", false, NULL, "Answer <think>not reasoning</think>", "Answer <think>not reasoning</think>", NULL, {{0}}},
};

typedef struct result {
    char *content, *reasoning;
    bool has_reasoning;
    size_t n_calls;
    char *calls[4][2];
    char *delta_content, *delta_reasoning; /* concatenated deltas */
    size_t delta_calls;
} result;

static void result_free(result *r)
{
    free(r->content);
    free(r->reasoning);
    free(r->delta_content);
    free(r->delta_reasoning);
    for (size_t i = 0; i < r->n_calls && i < 4; i++) {
        free(r->calls[i][0]);
        free(r->calls[i][1]);
    }
}

static void append(char **dst, const char *s, size_t n)
{
    size_t l = *dst ? strlen(*dst) : 0;
    *dst = realloc(*dst, l + n + 1);
    memcpy(*dst + l, s, n);
    (*dst)[l + n] = 0;
}

static void take_delta(ms_chat_parser *p, result *r)
{
    ms_chat_delta d;
    ms_chat_parser_delta(p, &d);
    append(&r->delta_content, d.content, d.content_len);
    append(&r->delta_reasoning, d.reasoning, d.reasoning_len);
    assert_int_equal(d.first_call, r->delta_calls);
    r->delta_calls += d.n_calls;
}

/* parse text split at the given cut points (sorted, within (0, len)) */
static void parse_pieces(const script *s, const size_t *cuts, size_t ncuts, result *r)
{
    memset(r, 0, sizeof *r);
    const ms_toolcall_ops *ops = ms_toolcall_by_name(s->format);
    assert_non_null(ops);
    json_object *tools = s->tools ? json_tokener_parse(s->tools) : NULL;
    ms_chat_parser *p;
    ms_err err = {0};
    assert_int_equal(ms_chat_parser_new(ops, tools, s->in_reasoning, &p, &err), 0);
    json_object_put(tools); /* the parser keeps its own reference */
    size_t len = strlen(s->text), prev = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        assert_int_equal(ms_chat_parser_feed(p, s->text + prev, end - prev, &err), 0);
        take_delta(p, r);
        prev = end;
    }
    assert_int_equal(ms_chat_parser_finish(p, &err), 0);
    take_delta(p, r);
    size_t cl, rl;
    const char *c = ms_chat_parser_content(p, &cl), *rs = ms_chat_parser_reasoning(p, &rl);
    r->content = strndup(c, cl);
    r->has_reasoning = rs != NULL;
    r->reasoning = rs ? strndup(rs, rl) : NULL;
    r->n_calls = ms_chat_parser_n_calls(p);
    for (size_t i = 0; i < r->n_calls && i < 4; i++) {
        const ms_toolcall *tc = ms_chat_parser_call(p, i);
        r->calls[i][0] = strdup(tc->name);
        r->calls[i][1] = strdup(tc->arguments);
    }
    ms_chat_parser_free(p);
}

static void check_script(const script *s, const result *r)
{
    if (strcmp(r->content, s->content) != 0) fprintf(stderr, "%s: content '%s' want '%s'\n", s->format, r->content, s->content);
    assert_string_equal(r->content, s->content);
    assert_int_equal(r->has_reasoning, s->reasoning != NULL);
    if (s->reasoning) assert_string_equal(r->reasoning, s->reasoning);
    size_t want = 0;
    while (want < 3 && s->calls[want].name) want++;
    assert_int_equal(r->n_calls, want);
    for (size_t i = 0; i < want; i++) {
        assert_string_equal(r->calls[i][0], s->calls[i].name);
        if (strcmp(r->calls[i][1], s->calls[i].args) != 0) fprintf(stderr, "args %s want %s\n", r->calls[i][1], s->calls[i].args);
        assert_string_equal(r->calls[i][1], s->calls[i].args);
    }
    /* the deltas add up to the result */
    assert_string_equal(r->delta_content, r->content);
    assert_string_equal(r->delta_reasoning, r->reasoning ? r->reasoning : "");
    assert_int_equal(r->delta_calls, r->n_calls);
}

static void same_result(const result *a, const result *b)
{
    assert_string_equal(a->content, b->content);
    assert_int_equal(a->has_reasoning, b->has_reasoning);
    if (a->has_reasoning) assert_string_equal(a->reasoning, b->reasoning);
    assert_int_equal(a->n_calls, b->n_calls);
    for (size_t i = 0; i < a->n_calls && i < 4; i++) {
        assert_string_equal(a->calls[i][0], b->calls[i][0]);
        assert_string_equal(a->calls[i][1], b->calls[i][1]);
    }
}

static void test_scripts_any_split(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof scripts / sizeof scripts[0]; k++) {
        const script *s = &scripts[k];
        size_t len = strlen(s->text);
        result whole, r;
        parse_pieces(s, NULL, 0, &whole);
        check_script(s, &whole);
        for (size_t cut = 1; cut < len; cut++) { /* two pieces, cut at every byte */
            parse_pieces(s, &cut, 1, &r);
            same_result(&whole, &r);
            assert_string_equal(r.delta_content, r.content);
            result_free(&r);
        }
        size_t *all = malloc(len * sizeof *all); /* one byte at a time */
        for (size_t i = 0; i + 1 < len; i++) all[i] = i + 1;
        parse_pieces(s, all, len ? len - 1 : 0, &r);
        same_result(&whole, &r);
        check_script(s, &r);
        result_free(&r);
        free(all);
        result_free(&whole);
    }
}

/* deltas carry whole UTF-8 characters only */
static void test_delta_utf8(void **state)
{
    (void)state;
    ms_chat_parser *p;
    ms_err err = {0};
    assert_int_equal(ms_chat_parser_new(ms_toolcall_by_name("hermes"), NULL, false, &p, &err), 0);
    const char *t = "Привет";
    ms_chat_delta d;
    assert_int_equal(ms_chat_parser_feed(p, t, 3, &err), 0); /* "П" + half of "р" */
    ms_chat_parser_delta(p, &d);
    assert_int_equal(d.content_len, 2);
    assert_int_equal(ms_chat_parser_feed(p, t + 3, strlen(t) - 3, &err), 0);
    ms_chat_parser_delta(p, &d);
    assert_int_equal(d.content_len, strlen(t) - 2);
    assert_int_equal(ms_chat_parser_finish(p, &err), 0);
    assert_true(ms_chat_parser_feed(p, "x", 1, &err) < 0);
    ms_chat_parser_free(p);
}

static void test_detect(void **state)
{
    (void)state;
    static const struct {
        const char *file, *format;
    } t[] = {
        {"deepseek_v3", "deepseek_v3"}, {"deepseek_v3_1", "deepseek_v3_1"}, {"gigachat3", "gigachat3"},
        {"gigachat3_1", "gigachat3_1"}, {"glm4_6", "glm4"},                {"glm4_7_flash", "glm4"},
        {"step3_5_flash", "qwen3_xml"}, {"kimi_k2", "kimi_k2"},            {"llama3_1", "none"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char *path = mst_fmt("%s/templates/%s.jinja", MS_TEST_DATA, t[i].file);
        char *text = mst_slurp(path, NULL);
        assert_non_null(text);
        assert_string_equal(ms_toolcall_name(ms_toolcall_detect(text)), t[i].format);
        free(text);
        free(path);
    }
    assert_string_equal(ms_toolcall_name(ms_toolcall_detect("{% for m in messages %}<tool_call>{% endfor %}")), "hermes");
    assert_string_equal(ms_toolcall_name(ms_toolcall_detect(NULL)), "none");
    assert_null(ms_toolcall_by_name("nope"));
    /* stops: GigaChat 3.0 ends a turn with <|message_sep|> only without tools */
    const ms_toolcall_ops *g = ms_toolcall_by_name("gigachat3");
    assert_string_equal(ms_toolcall_stop_texts(g, true)[0], "</s>");
    assert_null(ms_toolcall_stop_texts(g, true)[1]);
    assert_string_equal(ms_toolcall_stop_texts(g, false)[1], "<|message_sep|>");
    /* a prompt ending in <think> opens reasoning */
    const ms_toolcall_ops *q = ms_toolcall_by_name("qwen3_xml");
    assert_true(ms_toolcall_prompt_in_reasoning(q, "<|im_start|>assistant\n<think>\n", 29));
    assert_false(ms_toolcall_prompt_in_reasoning(q, "<|im_start|>assistant\n", 22));
    assert_false(ms_toolcall_prompt_in_reasoning(g, "x<think>", 8));
}

static void test_message(void **state)
{
    (void)state;
    ms_chat_parser *p;
    ms_err err = {0};
    const char *t = "<think>r</think>Hi.<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": [1]}}\n</tool_call>";
    assert_int_equal(ms_chat_parser_new(ms_toolcall_by_name("hermes"), NULL, false, &p, &err), 0);
    assert_int_equal(ms_chat_parser_feed(p, t, strlen(t), &err), 0);
    assert_int_equal(ms_chat_parser_finish(p, &err), 0);
    json_object *m = ms_chat_parser_message(p);
    assert_string_equal(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN),
                        "{\"role\":\"assistant\",\"content\":\"Hi.\",\"reasoning_content\":\"r\",\"tool_calls\":[{\"id\":"
                        "\"call00000\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":{\"a\":[1]}}}]}");
    json_object_put(m);
    ms_chat_parser_free(p);
    /* DeepSeek's templates concatenate arguments: they stay a JSON string there */
    t = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    assert_int_equal(ms_chat_parser_new(ms_toolcall_by_name("deepseek_v3_1"), NULL, false, &p, &err), 0);
    assert_int_equal(ms_chat_parser_feed(p, t, strlen(t), &err), 0);
    assert_int_equal(ms_chat_parser_finish(p, &err), 0);
    m = ms_chat_parser_message(p);
    assert_string_equal(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN),
                        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call00000\",\"type\":\"function\","
                        "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}");
    json_object_put(m);
    ms_chat_parser_free(p);
}

/* the parsed message goes back through the family's real template (arguments as the
 * template wants them: text for DeepSeek/Kimi, an object elsewhere) */
static void test_roundtrip(void **state)
{
    (void)state;
    static const struct {
        const char *tmpl, *text;
    } t[] = {
        {"deepseek_v3", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                        "{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"},
        {"deepseek_v3_1", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}"
                          "<｜tool▁call▁end｜><｜tool▁calls▁end｜>"},
        {"gigachat3_1", "<|function_call|>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"},
        {"gigachat3", "<|message_sep|>\n\nfunction call<|role_sep|>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                      "\"Paris\"}}"},
        {"glm4_7_flash", "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>"},
        {"glm4_6", "<think>hm</think><tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>"},
        {"step3_5_flash", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"},
        {"kimi_k2", "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
                    "{\"city\": \"Paris\"}<|tool_call_end|><|tool_calls_section_end|>"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char *path = mst_fmt("%s/templates/%s.jinja", MS_TEST_DATA, t[i].tmpl);
        size_t len;
        char *src = mst_slurp(path, &len);
        ms_chat_template *ct;
        ms_err err = {0};
        assert_int_equal(ms_chat_template_from_text(src, len, path, &ct, &err), 0);
        const ms_toolcall_ops *ops = ms_toolcall_detect(src);
        ms_chat_parser *p;
        assert_int_equal(ms_chat_parser_new(ops, NULL, false, &p, &err), 0);
        assert_int_equal(ms_chat_parser_feed(p, t[i].text, strlen(t[i].text), &err), 0);
        assert_int_equal(ms_chat_parser_finish(p, &err), 0);
        assert_int_equal(ms_chat_parser_n_calls(p), 1);
        json_object *conv = json_tokener_parse("[{\"role\": \"user\", \"content\": \"Weather?\"}]");
        json_object_array_add(conv, ms_chat_parser_message(p));
        json_object *tool = json_tokener_parse("{\"role\": \"tool\", \"content\": \"{\\\"t\\\": 5}\"}");
        json_object_object_add(tool, "tool_call_id", json_object_new_string(ms_chat_parser_call(p, 0)->id));
        json_object_array_add(conv, tool);
        json_object *tools = json_tokener_parse("[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
                                                "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": "
                                                "{\"type\": \"string\"}}}}}]");
        char *out;
        size_t olen;
        int rc = ms_chat_template_render(ct, conv, tools, NULL, NULL, true, &out, &olen, &err);
        if (rc < 0) fprintf(stderr, "%s: %s\n", t[i].tmpl, err.msg);
        assert_int_equal(rc, 0);
        /* the call is in the prompt again: name and argument value after the user turn */
        char *u = strstr(out, "Weather?");
        assert_non_null(u);
        assert_non_null(strstr(u, "get_weather"));
        assert_non_null(strstr(u, "Paris"));
        free(out);
        json_object_put(conv);
        json_object_put(tools);
        ms_chat_parser_free(p);
        ms_chat_template_free(ct);
        free(src);
        free(path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scripts_any_split),
        cmocka_unit_test(test_delta_utf8),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_message),
        cmocka_unit_test(test_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_chat_dsv4.c - the DeepSeek-V4 prompt format against DeepSeek's own
 * encoder: tests/data/chat_dsv4/expected.json holds what encode_messages
 * returns for the conversations of gen.py there (chat and thinking modes,
 * dropped and kept reasoning, reasoning_effort max, tools with DSML tool
 * calls and tool results out of call order, developer + response_format,
 * latest_reminder, merged user turns, unicode and quotes, arguments that are
 * not JSON); each is rebuilt here with the C API and compared byte for byte.
 * Also: add_generation_prompt false, prefix stability of a reply, and bad
 * input (unknown role, empty developer message, malformed tools). And the way
 * run/chat/serve reach it: a deepseek_v4 checkpoint without a template loads
 * as the built-in encoder, and OpenAI-style JSON (tools given separately,
 * tool calls with string arguments, template kwargs) renders the same bytes. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_dsv4.h"
#include "chat_template.h"
#include "ms_test.h"

#define EXPECTED MS_TEST_DATA "/chat_dsv4/expected.json"

static const char *TOOLS = "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": "
                           "\"Weather now\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": "
                           "{\"type\": \"string\"}, \"days\": {\"type\": \"integer\"}}, \"required\": [\"city\"]}}}]";
static const ms_dsv4_tool_call CALLS[] = {
    {"a", "get_weather", "{\"city\": \"Paris\"}"},
    {"b", "get_weather", "{\"city\": \"Rome\", \"days\": 2, \"opts\": {\"unit\": \"C\", \"x\": [1, 2.5, true, null]}}"},
};

static char *expected(const char *name)
{
    char *text = mst_slurp(EXPECTED, NULL);
    assert_non_null(text);
    json_object *j = json_tokener_parse(text), *v;
    free(text);
    assert_true(json_object_object_get_ex(j, name, &v));
    char *s = strdup(json_object_get_string(v));
    json_object_put(j);
    return s;
}

static char *render(const ms_dsv4_msg *m, size_t n, const ms_dsv4_opts *o, bool gen)
{
    char *out = NULL;
    ms_err err = {0};
    if (ms_chat_dsv4_render(m, n, o, gen, &out, NULL, &err) < 0) fail_msg("%s", err.msg);
    return out;
}

static void check(const char *name, const ms_dsv4_msg *m, size_t n, const ms_dsv4_opts *o)
{
    char *want = expected(name), *got = render(m, n, o, true);
    if (strcmp(want, got)) fail_msg("%s:\nwant %s\ngot  %s", name, want, got);
    free(want);
    free(got);
}

static const ms_dsv4_msg CONV[] = {
    {.role = "system", .content = "You are helpful."},
    {.role = "user", .content = "Hi"},
    {.role = "assistant", .content = "Hello!", .reasoning = "r1"},
    {.role = "user", .content = "How are you?"},
};

static void test_modes(void **state)
{
    (void)state;
    check("chat", CONV, 4, NULL);
    check("thinking_drop", CONV, 4, &(ms_dsv4_opts){.thinking = true});
    check("thinking_keep", CONV, 4, &(ms_dsv4_opts){.thinking = true, .keep_reasoning = true});
    ms_dsv4_msg q = {.role = "user", .content = "Prove it."};
    check("thinking_max", &q, 1, &(ms_dsv4_opts){.thinking = true, .reasoning_max = true});
}

static void test_tools(void **state)
{
    (void)state;
    ms_dsv4_msg chat[] = {
        {.role = "system", .content = "sys", .tools = TOOLS},
        {.role = "user", .content = "Weather in Paris and Rome?"},
        {.role = "assistant", .content = "", .tool_calls = CALLS, .n_tool_calls = 2},
        {.role = "tool", .tool_call_id = "b", .content = "15C"},
        {.role = "tool", .tool_call_id = "a", .content = "20C"},
    };
    check("tools_chat", chat, 5, NULL);
    ms_dsv4_msg think[] = {
        {.role = "system", .content = "sys", .tools = TOOLS},
        {.role = "user", .content = "Weather in Paris?"},
        {.role = "assistant", .reasoning = "call it", .tool_calls = CALLS, .n_tool_calls = 1},
        {.role = "tool", .tool_call_id = "a", .content = "20C"},
        {.role = "user", .content = "Thanks, and Rome?"},
    };
    check("tools_thinking", think, 5, &(ms_dsv4_opts){.thinking = true});
    ms_dsv4_tool_call raw = {NULL, "f", "not json"};
    ms_dsv4_msg r[] = {
        {.role = "user", .content = "go"},
        {.role = "assistant", .content = "ok", .tool_calls = &raw, .n_tool_calls = 1},
        {.role = "tool", .content = "done"},
    };
    check("raw_args", r, 3, NULL);
}

static void test_developer_reminder_merge(void **state)
{
    (void)state;
    ms_dsv4_msg m[] = {
        {.role = "developer", .content = "Be brief.", .response_format = "{\"type\": \"json_object\"}"},
        {.role = "user", .content = "Привет \"q\"\n"},
        {.role = "latest_reminder", .content = "Remember: JSON."},
        {.role = "assistant", .content = "{}"},
        {.role = "user", .content = "a"},
        {.role = "user", .content = "b"},
    };
    check("developer", m, 6, NULL);
}

/* add_generation_prompt false drops only the final assistant opening; a
 * reply appended to the conversation extends the prompt. */
static void test_generation_prompt_and_prefix(void **state)
{
    (void)state;
    char *with = render(CONV, 4, NULL, true), *without = render(CONV, 4, NULL, false);
    size_t lw = strlen(with), lo = strlen(without);
    assert_true(lw > lo && !strncmp(with, without, lo));
    assert_string_equal(with + lo, "<｜Assistant｜></think>");
    ms_dsv4_msg more[5];
    memcpy(more, CONV, sizeof CONV);
    more[4] = (ms_dsv4_msg){.role = "assistant", .content = "Fine."};
    for (int t = 0; t < 2; t++) {
        ms_dsv4_opts o = {.thinking = t};
        char *a = render(CONV, 4, &o, true), *b = render(more, 5, &o, true);
        assert_true(!strncmp(a, b, strlen(a)));
        print_message("reply appended: ...%s\n", b + strlen(a));
        free(a);
        free(b);
    }
    free(with);
    free(without);
}

static void expect_error(const ms_dsv4_msg *m, size_t n, const char *needle)
{
    char *out = NULL;
    ms_err err = {0};
    assert_true(ms_chat_dsv4_render(m, n, NULL, true, &out, NULL, &err) < 0);
    assert_null(out);
    print_message("%s\n", err.msg);
    assert_non_null(strstr(err.msg, needle));
}

static void test_bad_input(void **state)
{
    (void)state;
    expect_error(&(ms_dsv4_msg){.role = "robot", .content = "x"}, 1, "unknown role \"robot\"");
    expect_error(&(ms_dsv4_msg){.role = "developer"}, 1, "developer message needs content");
    expect_error(&(ms_dsv4_msg){.role = "system", .tools = "[{\"type\": "}, 1, "message 0: tools");
    expect_error(&(ms_dsv4_msg){.role = "system", .tools = "{\"a\": 1}"}, 1, "tools must be a JSON array");
    expect_error(&(ms_dsv4_msg){.role = "system", .tools = "[{\"type\": \"function\"}]"}, 1, "no \"function\"");
    ms_dsv4_tool_call bad = {NULL, "f", "[1, 2]"};
    expect_error(&(ms_dsv4_msg){.role = "assistant", .tool_calls = &bad, .n_tool_calls = 1}, 1,
                 "arguments must be a JSON object");
}

/* A deepseek_v4 model directory (config.json only, no template) through the
 * chat-template API with JSON messages. */
static void test_checkpoint_json(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("dsv4_ct");
    char *cfg = mst_fmt("%s/config.json", dir);
    FILE *fp = fopen(cfg, "w");
    assert_non_null(fp);
    fputs("{\"model_type\": \"deepseek_v4\"}", fp);
    fclose(fp);
    ms_chat_template *ct = NULL;
    ms_err err = {0};
    if (ms_chat_template_load(dir, NULL, NULL, &ct, &err) < 0) fail_msg("%s", err.msg);
    assert_true(ct->dsv4);
    assert_non_null(strstr(ct->origin, "DeepSeek-V4 encoder"));
    static const struct {
        const char *name, *messages, *kwargs;
        bool tools;
    } cases[] = {
        {"chat",
         "[{\"role\":\"system\",\"content\":\"You are helpful.\"},{\"role\":\"user\",\"content\":\"Hi\"},"
         "{\"role\":\"assistant\",\"content\":\"Hello!\",\"reasoning_content\":\"r1\"},"
         "{\"role\":\"user\",\"content\":\"How are you?\"}]",
         NULL, false},
        {"thinking_drop",
         "[{\"role\":\"system\",\"content\":\"You are helpful.\"},{\"role\":\"user\",\"content\":\"Hi\"},"
         "{\"role\":\"assistant\",\"content\":\"Hello!\",\"reasoning_content\":\"r1\"},"
         "{\"role\":\"user\",\"content\":\"How are you?\"}]",
         "{\"thinking_mode\":\"thinking\"}", false},
        {"tools_chat",
         "[{\"role\":\"system\",\"content\":\"sys\"},{\"role\":\"user\",\"content\":\"Weather in Paris and Rome?\"},"
         "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
         "{\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}},"
         "{\"id\":\"b\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
         "\"{\\\"city\\\": \\\"Rome\\\", \\\"days\\\": 2, \\\"opts\\\": {\\\"unit\\\": \\\"C\\\", \\\"x\\\": [1, 2.5, true, null]}}\"}}]},"
         "{\"role\":\"tool\",\"tool_call_id\":\"b\",\"content\":\"15C\"},"
         "{\"role\":\"tool\",\"tool_call_id\":\"a\",\"content\":\"20C\"}]",
         NULL, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_object *msgs = json_tokener_parse(cases[i].messages);
        json_object *kw = cases[i].kwargs ? json_tokener_parse(cases[i].kwargs) : NULL;
        json_object *tools = cases[i].tools ? json_tokener_parse(TOOLS) : NULL;
        assert_non_null(msgs);
        char *got = NULL, *want = expected(cases[i].name);
        size_t len;
        if (ms_chat_template_render(ct, msgs, tools, kw, NULL, true, &got, &len, &err) < 0)
            fail_msg("%s: %s", cases[i].name, err.msg);
        if (strcmp(want, got)) fail_msg("%s through JSON:\nwant %s\ngot  %s", cases[i].name, want, got);
        free(got);
        free(want);
        json_object_put(msgs);
        json_object_put(kw);
        json_object_put(tools);
    }
    ms_chat_template_free(ct);
    free(cfg);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_tools),
        cmocka_unit_test(test_developer_reminder_merge),
        cmocka_unit_test(test_generation_prompt_and_prefix),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_checkpoint_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

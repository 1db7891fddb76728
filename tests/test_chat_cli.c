/* test_chat_cli.c - run and chat with chat templates: the checkpoint's own template
 * is applied by default (prefill = the rendered prompt's tokens), --chat-template,
 * --chat-template-kwargs and --tools reach the renderer, template errors are one line,
 * chat's /tool command and the tool-call bookkeeping behind it (scripted answer, next
 * prompt vs jinja2), and option misuse. Uses a tiny synth model (DeepSeek-V3's
 * template and tokens). */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "cli_prompt.h"
#include "ms_test.h"
#include "tokenizer.h"

static char *g_dir;

static int setup(void **state)
{
    (void)state;
    g_dir = mst_synth_tiny("chat_cli_tiny");
    return g_dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(g_dir);
    return 0;
}

static unsigned prefill_tokens(const char *errs)
{
    const char *p = strstr(errs, "prefill ");
    unsigned n = 0;
    if (p) sscanf(p, "prefill %u", &n);
    return n;
}

static char *write_tmp(const char *name, const char *text)
{
    char *p = mst_fmt("%s/%s", MS_TMP_DIR, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

/* run applies the model's own chat template: the prompt fed is the rendered one */
static void test_run_uses_model_template(void **state)
{
    (void)state;
    ms_chat_template *ct;
    ms_tokenizer *tok;
    ms_err err = {0};
    assert_int_equal(ms_tokenizer_load(g_dir, &tok, &err), 0);
    assert_int_equal(ms_chat_template_load(g_dir, NULL, tok, &ct, &err), 0);
    json_object *m = json_tokener_parse("[{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", "
                                        "\"content\": \"Hello there\"}]");
    char *text;
    size_t len;
    assert_int_equal(ms_chat_template_render(ct, m, NULL, NULL, NULL, true, &text, &len, &err), 0);
    int32_t *ids;
    size_t n;
    assert_int_equal(ms_tokenizer_encode(tok, text, len, 0, &ids, &n, &err), 0);
    char *out = NULL, *errs = NULL;
    assert_int_equal(mst_run(&out, &errs, "%s run --model %s --system 'Be brief.' --prompt 'Hello there' -n 3 --temp 0",
                             MS_BIN, g_dir),
                     0);
    assert_int_equal(prefill_tokens(errs), n);
    free(out);
    free(errs);
    /* --raw feeds the text itself (BOS + the words) */
    assert_int_equal(mst_run(&out, &errs, "%s run --model %s --prompt 'Hello there' --raw -n 3 --temp 0", MS_BIN, g_dir), 0);
    assert_true(prefill_tokens(errs) < n);
    free(out);
    free(errs);
    free(ids);
    free(text);
    json_object_put(m);
    ms_chat_template_free(ct);
    ms_tokenizer_free(tok);
}

static void test_run_template_options(void **state)
{
    (void)state;
    char *out = NULL, *errs = NULL;
    char *tpl = write_tmp("opts.jinja",
                          "{% if not flag %}{{ raise_exception('flag missing') }}{% endif %}"
                          "{% if tools is none or tools[0].function.name != 'get_weather' %}{{ raise_exception('no tools') }}"
                          "{% endif %}{{ bos_token }}{{ messages[-1].content }}");
    char *tools = write_tmp("tools.json", "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
                                          "\"parameters\": {\"type\": \"object\", \"properties\": {}}}}]");
    /* kwargs and tools reach the renderer */
    assert_int_equal(mst_run(&out, &errs, "%s run --model %s --chat-template %s --prompt hi -n 2", MS_BIN, g_dir, tpl), 1);
    assert_non_null(strstr(errs, "flag missing"));
    assert_int_equal(strchr(errs, '\n') - errs + 1, (long)strlen(errs)); /* one line */
    free(out);
    free(errs);
    assert_int_equal(mst_run(&out, &errs,
                             "%s run --model %s --chat-template %s --chat-template-kwargs '{\"flag\": true}' --prompt hi -n 2",
                             MS_BIN, g_dir, tpl),
                     1);
    assert_non_null(strstr(errs, "no tools"));
    free(out);
    free(errs);
    assert_int_equal(mst_run(&out, &errs,
                             "%s run --model %s --chat-template %s --chat-template-kwargs '{\"flag\": 1}' --tools %s "
                             "--prompt hi -n 2 --temp 0",
                             MS_BIN, g_dir, tpl, tools),
                     0);
    assert_int_equal(prefill_tokens(errs), 2); /* BOS + "hi" */
    free(out);
    free(errs);
    /* bad values */
    assert_int_equal(mst_run(&out, &errs, "%s run --model %s --chat-template-kwargs '[1]' --prompt hi -n 1", MS_BIN, g_dir), 1);
    assert_non_null(strstr(errs, "--chat-template-kwargs"));
    free(out);
    free(errs);
    assert_int_equal(mst_run(&out, &errs, "%s run --model %s --tools %s/none.json --prompt hi -n 1", MS_BIN, g_dir, MS_TMP_DIR), 1);
    assert_non_null(strstr(errs, "none.json"));
    free(out);
    free(errs);
    assert_int_equal(mst_run(&out, &errs, "%s run --model %s --tools %s --raw --prompt hi -n 1", MS_BIN, g_dir, tools), 2);
    free(out);
    free(errs);
    char *bad = write_tmp("bad.jinja", "{% for %}");
    assert_int_equal(mst_run(&out, &errs, "%s run --model %s --chat-template %s --prompt hi -n 1", MS_BIN, g_dir, bad), 1);
    assert_non_null(strstr(errs, "bad.jinja:1:"));
    free(out);
    free(errs);
    free(bad);
    free(tpl);
    free(tools);
}

static void test_chat_tool_command(void **state)
{
    (void)state;
    char *out = NULL, *errs = NULL;
    char *tools = write_tmp("tools2.json", "[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]");
    int rc = mst_run(&out, &errs, "printf 'hello\\n/tool 42\\nsecond\\n' | %s chat --model %s -n 4 --temp 0 --tools %s",
                     MS_BIN, g_dir, tools);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(errs, "(no tool call to answer)"));
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 2); /* two answers, no tool calls from a random model */
    free(out);
    free(errs);
    assert_int_equal(mst_run(&out, &errs, "%s chat --model %s --chat-template-kwargs nope < /dev/null", MS_BIN, g_dir), 1);
    assert_non_null(strstr(errs, "--chat-template-kwargs"));
    free(out);
    free(errs);
    free(tools);
}

/* what chat does with a tool-calling answer (in process, scripted: a random model calls
 * no tools): the calls print as lines while the text streams in pieces, the parsed
 * answer joins the conversation, /tool results answer the calls in order, and the next
 * prompt is what jinja2 renders for that conversation with DeepSeek-V3's template */
static void test_chat_tool_flow(void **state)
{
    (void)state;
    ms_err err = {0};
    ms_tokenizer *tok;
    assert_int_equal(ms_tokenizer_load(g_dir, &tok, &err), 0);
    char *tools = write_tmp("tools3.json", "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"}}]");
    ms_cli_prompt pr = {.tools_file = tools};
    assert_int_equal(ms_cli_prompt_setup(&pr, g_dir, tok, false, &err), 0);
    assert_string_equal(ms_toolcall_name(pr.format), "deepseek_v3");
    json_object *conv = json_tokener_parse("[{\"role\": \"user\", \"content\": \"Weather in Paris and Moscow?\"}]");
    const char *answer = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                         "{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>"
                         "get_weather\n```json\n{\"city\": \"Москва\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    ms_chat_parser *cp;
    assert_int_equal(ms_chat_parser_new(pr.format, pr.tools, false, &cp, &err), 0);
    char *printed = NULL;
    size_t printed_len = 0;
    FILE *out = open_memstream(&printed, &printed_len);
    bool line_open = false;
    for (size_t i = 0, n = strlen(answer); i < n; i += 3) {
        assert_int_equal(ms_chat_parser_feed(cp, answer + i, n - i < 3 ? n - i : 3, &err), 0);
        ms_cli_prompt_print(cp, out, NULL, &line_open);
    }
    assert_int_equal(ms_chat_parser_finish(cp, &err), 0);
    ms_cli_prompt_print(cp, out, NULL, &line_open);
    fclose(out);
    assert_string_equal(printed, "[tool call] call00000 get_weather {\"city\": \"Paris\"}\n"
                                 "[tool call] call00001 get_weather {\"city\": \"Москва\"}\n");
    json_object *pending = NULL;
    assert_int_equal(ms_cli_prompt_add_answer(conv, cp, &pending), 2);
    ms_chat_parser_free(cp);
    assert_int_equal(ms_cli_prompt_tool_result(conv, &pending, "18 C"), 0);
    assert_int_equal(ms_cli_prompt_tool_result(conv, &pending, "-3 C"), 1);
    assert_null(pending);
    assert_int_equal(ms_cli_prompt_tool_result(conv, &pending, "extra"), -1);
    json_object *want = json_tokener_parse(
        "[{\"role\": \"user\", \"content\": \"Weather in Paris and Moscow?\"},"
        " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": ["
        "  {\"id\": \"call00000\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": "
        "\"{\\\"city\\\": \\\"Paris\\\"}\"}},"
        "  {\"id\": \"call00001\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": "
        "\"{\\\"city\\\": \\\"Москва\\\"}\"}}]},"
        " {\"role\": \"tool\", \"tool_call_id\": \"call00000\", \"name\": \"get_weather\", \"content\": \"18 C\"},"
        " {\"role\": \"tool\", \"tool_call_id\": \"call00001\", \"name\": \"get_weather\", \"content\": \"-3 C\"}]");
    assert_non_null(want);
    assert_true(json_object_equal(conv, want));
    char *prompt;
    size_t len;
    assert_int_equal(ms_cli_prompt_render(&pr, conv, true, &prompt, &len, &err), 0);
    /* jinja2 3.1.6, transformers' environment, tests/data/templates/deepseek_v3.jinja */
    assert_string_equal(prompt,
                        "<｜begin▁of▁sentence｜><｜User｜>Weather in Paris and Moscow?<｜Assistant｜><｜tool▁calls▁begin｜>"
                        "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```"
                        "<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                        "{\"city\": \"Москва\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
                        "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>18 C<｜tool▁output▁end｜>\n<｜tool▁output▁begin｜>-3 C"
                        "<｜tool▁output▁end｜><｜tool▁outputs▁end｜>");
    free(prompt);
    free(printed);
    json_object_put(want);
    json_object_put(conv);
    ms_cli_prompt_free(&pr);
    ms_tokenizer_free(tok);
    free(tools);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_uses_model_template),
        cmocka_unit_test(test_run_template_options),
        cmocka_unit_test(test_chat_tool_command),
        cmocka_unit_test(test_chat_tool_flow),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

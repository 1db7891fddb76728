/* test_chat_template.c - DeepSeek-V3 and GigaChat3/3.1 prompt rendering, family
 * detection, DEVSYSTEM extraction, stop ids, and the `moestream tokenize` CLI. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_template.h"
#include "ms_test.h"
#include "synth_tokenizer.h"
#include "tokenizer.h"
#include "util.h"

#define DS_DIR MS_TEST_DATA "/tokenizers/deepseek_v3"
#define BOS "<｜begin▁of▁sentence｜>"
#define EOS "<｜end▁of▁sentence｜>"

static char *render(const ms_chat_template *ct, const ms_chat_msg *m, size_t n, const char *tools, bool gen)
{
    char *out = NULL;
    size_t len;
    ms_err err = {0};
    int rc = ms_chat_render(ct, m, n, tools, gen, &out, &len, &err);
    if (rc < 0) fprintf(stderr, "render: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(len, strlen(out));
    return out;
}

static void load_ds(ms_tokenizer **tok, ms_chat_template *ct)
{
    ms_err err = {0};
    assert_int_equal(ms_tokenizer_load(DS_DIR, tok, &err), 0);
    assert_int_equal(ms_chat_template_load(DS_DIR, *tok, ct, &err), 0);
    assert_int_equal(ct->family, MS_CHAT_DEEPSEEK_V3);
}

/* The documented example of the spec, byte for byte. */
static void test_deepseek_example(void **state)
{
    (void)state;
    ms_tokenizer *tok;
    ms_chat_template ct;
    load_ds(&tok, &ct);
    const ms_chat_msg m[] = {
        {.role = "system", .content = "You are a helpful assistant"},
        {.role = "user", .content = "Hello"},
        {.role = "assistant", .content = "Hi there"},
        {.role = "user", .content = "How are you?"},
    };
    char *s = render(&ct, m, 4, NULL, true);
    assert_string_equal(s, "<｜begin▁of▁sentence｜>You are a helpful assistant<｜User｜>Hello<｜Assistant｜>Hi "
                           "there<｜end▁of▁sentence｜><｜User｜>How are you?<｜Assistant｜>");
    /* it tokenizes with the special tokens as single ids and BOS first */
    int32_t *ids;
    size_t n;
    ms_err err = {0};
    assert_int_equal(ms_tokenizer_encode(tok, s, strlen(s), MS_TOK_ADD_BOS, &ids, &n, &err), 0);
    assert_int_equal(ids[0], 0);
    assert_int_not_equal(ids[1], 0);
    assert_int_equal(ids[n - 1], 128804);
    free(ids);
    free(s);
    /* several system messages are joined by a blank line; no generation prompt */
    const ms_chat_msg m2[] = {
        {.role = "system", .content = "A"}, {.role = "user", .content = "q"}, {.role = "system", .content = "B"}};
    s = render(&ct, m2, 3, NULL, false);
    assert_string_equal(s, BOS "A\n\nB<｜User｜>q");
    free(s);
    /* stop ids contain EOS (1) */
    int32_t stop[8];
    size_t ns = ms_chat_stop_ids(&ct, false, stop, 8);
    bool has1 = false;
    for (size_t i = 0; i < ns; i++) has1 |= stop[i] == 1;
    assert_true(has1);
    ms_chat_template_free(&ct);
    ms_tokenizer_free(tok);
}

static void test_deepseek_tools(void **state)
{
    (void)state;
    ms_tokenizer *tok;
    ms_chat_template ct;
    load_ds(&tok, &ct);
    const ms_chat_tool_call calls[] = {
        {.name = "get_weather", .arguments = "{\"city\": \"Paris\"}"},
        {.name = "get_time", .arguments = "{\"tz\": \"CET\"}"},
    };
    const ms_chat_msg m[] = {
        {.role = "user", .content = "Weather and time in Paris?"},
        {.role = "assistant", .content = NULL, .tool_calls = calls, .n_tool_calls = 2},
        {.role = "tool", .content = "18C"},
        {.role = "tool", .content = "12:00"},
        {.role = "assistant", .content = "18C at noon."},
        {.role = "user", .content = "Thanks"},
    };
    char *s = render(&ct, m, 6, NULL, true);
    assert_string_equal(s, BOS "<｜User｜>Weather and time in Paris?"
                               "<｜Assistant｜><｜tool▁calls▁begin｜>"
                               "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n"
                               "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{\"tz\": \"CET\"}\n```<｜tool▁call▁end｜>"
                               "<｜tool▁calls▁end｜>" EOS
                               "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>18C<｜tool▁output▁end｜>"
                               "\n<｜tool▁output▁begin｜>12:00<｜tool▁output▁end｜>"
                               "<｜tool▁outputs▁end｜>18C at noon." EOS "<｜User｜>Thanks<｜Assistant｜>");
    free(s);
    /* ending inside a tool run closes it and adds no generation prompt */
    s = render(&ct, m, 3, NULL, true);
    size_t l = strlen(s);
    const char *tail = "<｜tool▁output▁end｜><｜tool▁outputs▁end｜>";
    assert_true(l > strlen(tail) && !strcmp(s + l - strlen(tail), tail));
    free(s);
    /* an unknown role is an error naming it */
    const ms_chat_msg bad[] = {{.role = "narrator", .content = "x"}};
    char *out;
    size_t ol;
    ms_err err = {0};
    assert_true(ms_chat_render(&ct, bad, 1, NULL, true, &out, &ol, &err) < 0);
    assert_non_null(strstr(err.msg, "narrator"));
    ms_chat_template_free(&ct);
    ms_tokenizer_free(tok);
}

/* Prefix stability: the prompt of turn k is a prefix of the conversation after the reply. */
static void check_prefix(const ms_chat_template *ct)
{
    const ms_chat_msg m[] = {
        {.role = "system", .content = "sys"},
        {.role = "user", .content = "one"},
        {.role = "assistant", .content = "two"},
        {.role = "user", .content = "three"},
    };
    char *a = render(ct, m, 2, NULL, true);
    char *b = render(ct, m, 4, NULL, true);
    assert_true(strncmp(a, b, strlen(a)) == 0);
    free(a);
    free(b);
}

#define DEV_BODY "<role_description>\nRoles `a` and `b`.\n</role_description>\n\nEach turn ends with a token."

/* A GigaChat-style model directory: synth tokenizer.json + a template with DEVSYSTEM. */
static char *gigachat_dir(const char *name, bool v31)
{
    char *dir = mst_tmpdir(name);
    ms_err err = {0};
    assert_int_equal(ms_synth_tokenizer_write(dir, 512, 1, &err), 0);
    char *p = mst_fmt("%s/tokenizer_config.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"bos_token\": \"<｜begin▁of▁sentence｜>\", \"eos_token\": \"<｜end▁of▁sentence｜>\",\n"
            " \"chat_template\": \"{%%- set add_tokens = namespace(role_sep=\\\"<|role_sep|>\\\\n\\\", "
            "message_sep=\\\"<|message_sep|>\\\\n\\\\n\\\"%s) -%%}\\n{%%- set DEVSYSTEM -%%}\\n%s\\n{%%- endset -%%}\\n"
            "{{- bos_token -}}\"}\n",
            v31 ? ", function_call=\\\"<|function_call|>\\\"" : "",
            "<role_description>\\nRoles `a` and `b`.\\n</role_description>\\n\\nEach turn ends with a token.");
    fclose(f);
    free(p);
    return dir;
}

static void test_gigachat(void **state)
{
    (void)state;
    for (int v31 = 0; v31 < 2; v31++) {
        char *dir = gigachat_dir(v31 ? "chat_gc31" : "chat_gc3", v31);
        ms_tokenizer *tok;
        ms_chat_template ct;
        ms_err err = {0};
        assert_int_equal(ms_tokenizer_load(dir, &tok, &err), 0);
        assert_int_equal(ms_chat_template_load(dir, tok, &ct, &err), 0);
        assert_int_equal(ct.family, v31 ? MS_CHAT_GIGACHAT3_1 : MS_CHAT_GIGACHAT3);
        assert_non_null(ct.devsystem);
        assert_string_equal(ct.devsystem, DEV_BODY);
        const ms_chat_msg m[] = {
            {.role = "system", .content = "Be brief."},
            {.role = "user", .content = "Привет!"},
        };
        char *s = render(&ct, m, 2, NULL, true);
        assert_string_equal(s, BOS "developer system<|role_sep|>\n" DEV_BODY "<|message_sep|>\n\n"
                                   "system<|role_sep|>\nBe brief.<|message_sep|>\n\n"
                                   "user<|role_sep|>\nПривет!<|message_sep|>\n\n"
                                   "assistant<|role_sep|>\n");
        free(s);
        /* tool call: 3.0 = separate `function call` message, 3.1 = inline */
        const ms_chat_tool_call call = {.name = "get_weather", .arguments = "{\"city\": \"Moscow\"}"};
        const ms_chat_msg t[] = {
            {.role = "user", .content = "Weather?"},
            {.role = "assistant", .content = NULL, .tool_calls = &call, .n_tool_calls = 1},
            {.role = "tool", .content = "{\"t\": 5}"},
        };
        s = render(&ct, t, 3, NULL, true);
        const char *want31 = "user<|role_sep|>\nWeather?<|message_sep|>\n\n"
                             "assistant<|role_sep|>\n<|function_call|>{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                             "\"Moscow\"}}<|message_sep|>\n\n"
                             "function result<|role_sep|>\n{\"t\": 5}<|message_sep|>\n\nassistant<|role_sep|>\n";
        const char *want30 = "user<|role_sep|>\nWeather?<|message_sep|>\n\n"
                             "assistant<|role_sep|>\n<|message_sep|>\n\n"
                             "function call<|role_sep|>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                             "\"Moscow\"}}<|message_sep|>\n\n"
                             "function result<|role_sep|>\n{\"t\": 5}<|message_sep|>\n\nassistant<|role_sep|>\n";
        const char *body = strstr(s, "user<|role_sep|>");
        assert_non_null(body);
        assert_string_equal(body, v31 ? want31 : want30);
        free(s);
        /* tools as a TypeScript namespace */
        const char *tools =
            "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather now.\\nIn C.\", "
            "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": "
            "\"City name\"}, \"unit\": {\"type\": \"string\", \"enum\": [\"c\", \"f\"], \"default\": \"c\"}, \"days\": "
            "{\"type\": \"array\", \"items\": {\"type\": \"integer\"}}}, \"required\": [\"city\"]}}},"
            " {\"type\": \"function\", \"function\": {\"name\": \"ping\"}}]";
        s = render(&ct, m + 1, 1, tools, false);
        body = strstr(s, "function descriptions");
        assert_non_null(body);
        assert_string_equal(body, "function descriptions<|role_sep|>\nnamespace functions {\n"
                                  "// Weather now.\n// In C.\n"
                                  "type get_weather = (_: {\n"
                                  "  // City name\n"
                                  "  city: string,\n"
                                  "  unit?: \"c\" | \"f\", // default: \"c\"\n"
                                  "  days?: number[],\n"
                                  "}) => any;\n\n"
                                  "type ping = () => any;\n\n"
                                  "} // namespace functions\n\n<|message_sep|>\n\n"
                                  "user<|role_sep|>\nПривет!<|message_sep|>\n\n");
        free(s);
        check_prefix(&ct);
        /* stop ids: with tools the end-of-turn token is not a stop */
        int32_t a[16], b[16];
        size_t na = ms_chat_stop_ids(&ct, true, a, 16), nb = ms_chat_stop_ids(&ct, false, b, 16);
        assert_true(na >= 1);
        assert_true(nb >= na);
        ms_chat_template_free(&ct);
        ms_tokenizer_free(tok);
        free(dir);
    }
}

static void test_devsystem_extract(void **state)
{
    (void)state;
    const char *t1 = "x{% set DEVSYSTEM %}\n  body \n{% endset %}y";
    char *d = ms_chat_extract_devsystem(t1, strlen(t1));
    assert_string_equal(d, "\n  body \n");
    free(d);
    const char *t2 = "{%- set DEVSYSTEM -%}\n  body \n{%- endset -%}";
    d = ms_chat_extract_devsystem(t2, strlen(t2));
    assert_string_equal(d, "body");
    free(d);
    const char *t3 = "{% set DEVSYSTEM = 'inline' %}";
    assert_null(ms_chat_extract_devsystem(t3, strlen(t3)));
    assert_null(ms_chat_extract_devsystem("{% set X %}a{% endset %}", 24));
}

static void test_family_detection(void **state)
{
    (void)state;
    /* synth model: DeepSeek-style template */
    char *dir = mst_tmpdir("chat_synth");
    ms_err err = {0};
    assert_int_equal(ms_synth_tokenizer_write(dir, 600, 3, &err), 0);
    ms_tokenizer *tok;
    ms_chat_template ct;
    assert_int_equal(ms_tokenizer_load(dir, &tok, &err), 0);
    assert_int_equal(ms_chat_template_load(dir, tok, &ct, &err), 0);
    assert_int_equal(ct.family, MS_CHAT_DEEPSEEK_V3);
    check_prefix(&ct);
    ms_chat_template_free(&ct);
    ms_tokenizer_free(tok);
    /* no template and no known tokens: a clear error */
    char *p = mst_fmt("%s/tokenizer.json", dir);
    FILE *f = fopen(p, "w");
    fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", f);
    fclose(f);
    char *c = mst_fmt("%s/tokenizer_config.json", dir);
    unlink(c);
    assert_int_equal(ms_tokenizer_load(dir, &tok, &err), 0);
    assert_true(ms_chat_template_load(dir, tok, &ct, &err) < 0);
    assert_non_null(strstr(err.msg, "chat template"));
    ms_tokenizer_free(tok);
    ms_chat_family fam;
    assert_int_equal(ms_chat_family_parse("gigachat3.1", &fam), 0);
    assert_int_equal(fam, MS_CHAT_GIGACHAT3_1);
    assert_string_equal(ms_chat_family_name(MS_CHAT_GIGACHAT3), "gigachat3");
    free(p);
    free(c);
    free(dir);
}

/* ---- CLI ------------------------------------------------------------------------------ */

static void test_cli_tokenize(void **state)
{
    (void)state;
    char *out = NULL, *err = NULL;
    char *small = mst_tmpdir("cli_small"); /* a small tokenizer keeps the error cases fast */
    ms_err e = {0};
    assert_int_equal(ms_synth_tokenizer_write(small, 512, 1, &e), 0);
    int rc = mst_run(&out, &err,
                     "printf '%%s\\n' '{\"text\": \"Hello world\"}' '{\"text\": \"\"}' "
                     "'{\"text\": \"<｜User｜>Hi\\u0000\"}' | %s tokenize --tokenizer %s",
                     MS_BIN, DS_DIR);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "{\"ids\": [19923, 2058]}\n{\"ids\": []}\n{\"ids\": [128803, 23166, 191]}\n");
    free(out);
    free(err);
    rc = mst_run(&out, &err,
                 "printf '%%s\\n' '{\"ids\": [19923, 2058]}' '{\"ids\": [128803, 23166, 191]}' '{\"ids\": [0, 1]}' | "
                 "%s tokenize --tokenizer %s/tokenizer.json --decode",
                 MS_BIN, DS_DIR);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "{\"text\": \"Hello world\"}\n{\"text\": \"<｜User｜>Hi\\u0000\"}\n"
                             "{\"text\": \"<｜begin▁of▁sentence｜><｜end▁of▁sentence｜>\"}\n");
    free(out);
    free(err);
    /* malformed line 2: the first line is answered, then one error line naming line 2 */
    rc = mst_run(&out, &err, "printf '%%s\\n' '{\"text\": \"ok\"}' '{\"text\": 5}' '{\"text\": \"x\"}' | %s tokenize "
                             "--tokenizer %s", MS_BIN, small);
    assert_int_equal(rc, 1);
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out)); /* exactly one output line */
    assert_non_null(strstr(err, "line 2"));
    free(out);
    free(err);
    rc = mst_run(&out, &err, "printf 'not json\\n' | %s tokenize --tokenizer %s", MS_BIN, small);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "line 1"));
    assert_non_null(strstr(err, "invalid JSON"));
    free(out);
    free(err);
    rc = mst_run(&out, &err, "printf '{\"ids\": [1, -3]}\\n' | %s tokenize --tokenizer %s --decode", MS_BIN, small);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "ids[1]"));
    free(out);
    free(err);
    rc = mst_run(&out, &err, "printf '{\"ids\": [1, 999999]}\\n' | %s tokenize --tokenizer %s --decode", MS_BIN, small);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "999999"));
    free(out);
    free(err);
    /* usage errors and help */
    rc = mst_run(&out, &err, "%s tokenize < /dev/null", MS_BIN);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "--tokenizer"));
    free(out);
    free(err);
    rc = mst_run(&out, &err, "%s tokenize --tokenizer %s --bogus < /dev/null", MS_BIN, small);
    assert_int_equal(rc, 2);
    free(out);
    free(err);
    rc = mst_run(&out, &err, "%s tokenize --help", MS_BIN);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "--decode"));
    free(out);
    free(err);
    rc = mst_run(&out, &err, "%s tokenize --tokenizer %s/nonexistent < /dev/null", MS_BIN, MS_TMP_DIR);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "nonexistent"));
    free(out);
    free(err);
    free(small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deepseek_example),  cmocka_unit_test(test_deepseek_tools),
        cmocka_unit_test(test_gigachat),          cmocka_unit_test(test_devsystem_extract),
        cmocka_unit_test(test_family_detection),  cmocka_unit_test(test_cli_tokenize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

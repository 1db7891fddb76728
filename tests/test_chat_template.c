/* test_chat_template.c - chat templates from checkpoints (src/text/chat_template.h):
 * every reference case of tests/data/templates/cases.jsonl (10 real templates x 18
 * conversations, rendered by transformers' rules) byte-exact through the library and
 * through `moestream template`; where templates come from (tokenizer_config.json string
 * or named list, chat_template.jinja, --chat-template, the DeepSeek-V3 fallback, synth
 * models) and the special tokens passed with them; the CLI's errors; `moestream bench
 * template`; and the `moestream tokenize` CLI. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chat_template.h"
#include "ms_test.h"
#include "synth_tokenizer.h"
#include "tokenizer.h"
#include "util.h"

#define TPL_DIR MS_TEST_DATA "/templates"
#define DS_DIR MS_TEST_DATA "/tokenizers/deepseek_v3"
#define NOW_ARG "--now 2026-01-15T10:30:00"

static int64_t ref_now(void)
{
    struct tm tm = {.tm_year = 126, .tm_mon = 0, .tm_mday = 15, .tm_hour = 10, .tm_min = 30, .tm_isdst = -1};
    return (int64_t)mktime(&tm);
}

typedef struct refcase {
    char name[128], tmpl[64];
    json_object *obj; /* the whole line */
} refcase;

static refcase *load_cases(size_t *n)
{
    char *txt = mst_slurp(TPL_DIR "/cases.jsonl", NULL);
    assert_non_null(txt);
    refcase *v = calloc(400, sizeof *v);
    *n = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        json_object *o = json_tokener_parse(line), *t, *cv;
        assert_non_null(o);
        assert_true(json_object_object_get_ex(o, "template", &t));
        assert_true(json_object_object_get_ex(o, "conversation", &cv));
        assert_true(*n < 400);
        snprintf(v[*n].tmpl, sizeof v[*n].tmpl, "%s", json_object_get_string(t));
        snprintf(v[*n].name, sizeof v[*n].name, "%s/%s", json_object_get_string(t), json_object_get_string(cv));
        v[*n].obj = o;
        (*n)++;
    }
    free(txt);
    return v;
}

static void free_cases(refcase *v, size_t n)
{
    for (size_t i = 0; i < n; i++) json_object_put(v[i].obj);
    free(v);
}

static const char *field(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL;
}

/* the message a raise_exception case must report ("TemplateError: msg" -> "msg") */
static const char *raised_message(json_object *o)
{
    const char *kind = field(o, "error_kind"), *e = field(o, "error");
    if (!kind || strcmp(kind, "raise_exception") != 0) return NULL;
    const char *p = strstr(e, "TemplateError: ");
    return p ? p + strlen("TemplateError: ") : e;
}

static void test_reference_cases_library(void **state)
{
    (void)state;
    size_t n;
    refcase *cases = load_cases(&n);
    assert_int_equal(n, 180);
    int failed = 0, errors = 0;
    for (size_t i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.jinja", TPL_DIR, cases[i].tmpl);
        size_t len;
        char *src = mst_slurp(path, &len);
        assert_non_null(src);
        ms_chat_template *ct;
        ms_err err = {0};
        assert_int_equal(ms_chat_template_from_text(src, len, path, &ct, &err), 0);
        ct->opts.fixed_now = true;
        ct->opts.now = ref_now();
        json_object *input;
        assert_true(json_object_object_get_ex(cases[i].obj, "input", &input));
        char *out = NULL;
        size_t olen = 0;
        int rc = ms_chat_template_render_input(ct, input, &out, &olen, &err);
        const char *want = field(cases[i].obj, "expected");
        bool ok;
        if (want) {
            ok = rc == 0 && olen == strlen(want) && !memcmp(out, want, olen);
        } else {
            errors++;
            const char *msg = raised_message(cases[i].obj);
            ok = rc < 0 && out == NULL && err.msg[0] && (!msg || strstr(err.msg, msg));
        }
        if (!ok) {
            failed++;
            fprintf(stderr, "%s: rc %d %s\n", cases[i].name, rc, rc < 0 ? err.msg : "(output differs)");
        }
        free(out);
        ms_chat_template_free(ct);
        free(src);
    }
    fprintf(stderr, "%zu reference cases (%d expected errors), %d failed\n", n, errors, failed);
    assert_int_equal(failed, 0);
    assert_int_equal(errors, 13);
    free_cases(cases, n);
}

static void test_reference_cases_cli(void **state)
{
    (void)state;
    size_t n;
    refcase *cases = load_cases(&n);
    char *dir = mst_tmpdir("template_cli");
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *input;
        assert_true(json_object_object_get_ex(cases[i].obj, "input", &input));
        char *in = mst_fmt("%s/in%zu.json", dir, i);
        FILE *f = fopen(in, "w");
        fputs(json_object_to_json_string_ext(input, JSON_C_TO_STRING_PLAIN), f);
        fclose(f);
        char *out = NULL, *err = NULL;
        int rc = mst_run(&out, &err, "%s template --chat-template %s/%s.jinja --input %s " NOW_ARG, MS_BIN, TPL_DIR,
                         cases[i].tmpl, in);
        const char *want = field(cases[i].obj, "expected");
        bool ok;
        if (want) {
            ok = rc == 0 && !strcmp(out, want) && !err[0];
        } else {
            const char *msg = raised_message(cases[i].obj);
            ok = rc == 1 && !out[0] && strchr(err, '\n') == err + strlen(err) - 1 && /* one line */
                 !strncmp(err, "moestream template: ", 20) && (!msg || strstr(err, msg));
        }
        if (!ok) {
            failed++;
            fprintf(stderr, "%s: exit %d, stderr %s\n", cases[i].name, rc, err);
        }
        free(out);
        free(err);
        free(in);
    }
    assert_int_equal(failed, 0);
    free_cases(cases, n);
    free(dir);
}

/* ---- where templates come from ------------------------------------------------------------ */

static void write_file(const char *dir, const char *name, const char *text)
{
    char *p = mst_fmt("%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    free(p);
}

static char *render_dir(const char *dir, const char *override, const char *messages, const char *tools, ms_err *err)
{
    ms_chat_template *ct = NULL;
    if (ms_chat_template_load(dir, override, NULL, &ct, err) < 0) return NULL;
    json_object *m = json_tokener_parse(messages), *t = tools ? json_tokener_parse(tools) : NULL;
    char *out = NULL;
    size_t len;
    int rc = ms_chat_template_render(ct, m, t, NULL, NULL, true, &out, &len, err);
    json_object_put(m);
    json_object_put(t);
    ms_chat_template_free(ct);
    return rc == 0 ? out : NULL;
}

static void test_sources(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("template_sources");
    const char *msgs = "[{\"role\": \"user\", \"content\": \"hi\"}]";
    ms_err err = {0};
    /* a string template + special tokens as strings and AddedToken dicts */
    write_file(dir, "tokenizer_config.json",
               "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<B>\", \"lstrip\": false},"
               " \"eos_token\": \"<E>\", \"unk_token\": null, \"additional_special_tokens\": [\"<x>\", {\"content\": \"<y>\"}],"
               " \"chat_template\": \"{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}"
               "{{ unk_token is defined }}{{ additional_special_tokens }}{{ tools }}{{ documents }}{{ add_generation_prompt }}\"}");
    char *out = render_dir(dir, NULL, msgs, NULL, &err);
    assert_non_null(out);
    assert_string_equal(out, "<B>hi<E>False['<x>', '<y>']NoneNoneTrue");
    free(out);
    /* named templates: "tool_use" when tools are given (even an empty list), "default" otherwise */
    write_file(dir, "tokenizer_config.json",
               "{\"chat_template\": [{\"name\": \"default\", \"template\": \"D{{ tools }}\"},"
               " {\"name\": \"tool_use\", \"template\": \"T{{ tools | length }}\"}, {\"name\": \"rag\", \"template\": \"R\"}]}");
    out = render_dir(dir, NULL, msgs, NULL, &err);
    assert_string_equal(out, "DNone");
    free(out);
    out = render_dir(dir, NULL, msgs, "[{\"type\": \"function\"}]", &err);
    assert_string_equal(out, "T1");
    free(out);
    out = render_dir(dir, NULL, msgs, "[]", &err);
    assert_string_equal(out, "T0");
    free(out);
    /* chat_template.jinja wins over the config; --chat-template wins over both */
    write_file(dir, "chat_template.jinja", "J{{ messages[0].content }}\n");
    out = render_dir(dir, NULL, msgs, NULL, &err);
    assert_string_equal(out, "Jhi"); /* the final newline is dropped, as Jinja does */
    free(out);
    char *ovr = mst_fmt("%s/override.jinja", dir);
    write_file(dir, "override.jinja", "O{{ bos_token is defined }}");
    out = render_dir(dir, ovr, msgs, NULL, &err);
    assert_string_equal(out, "OFalse");
    free(out);
    out = render_dir(NULL, ovr, msgs, NULL, &err);
    assert_string_equal(out, "OFalse");
    free(out);
    /* errors name the file */
    write_file(dir, "bad.jinja", "{% if %}");
    char *bad = mst_fmt("%s/bad.jinja", dir);
    assert_null(render_dir(dir, bad, msgs, NULL, &err));
    assert_non_null(strstr(err.msg, "bad.jinja:1:"));
    free(bad);
    ms_err_clear(&err);
    char *p = mst_fmt("%s/chat_template.jinja", dir);
    unlink(p);
    free(p);
    write_file(dir, "tokenizer_config.json", "{\"chat_template\": 5}");
    assert_null(render_dir(dir, NULL, msgs, NULL, &err));
    assert_non_null(strstr(err.msg, "chat_template"));
    ms_err_clear(&err);
    write_file(dir, "tokenizer_config.json", "{\"eos_token\": \"</s>\"}");
    ms_chat_template *ct = NULL;
    assert_int_equal(ms_chat_template_load(dir, NULL, NULL, &ct, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "no chat template"));
    assert_null(ct);
    /* chat_template.json (processor style) */
    ms_err_clear(&err);
    write_file(dir, "chat_template.json", "{\"chat_template\": \"P{{ eos_token }}\"}");
    out = render_dir(dir, NULL, msgs, NULL, &err);
    assert_string_equal(out, "P</s>");
    free(out);
    free(ovr);
    free(dir);
}

/* synth models ship DeepSeek-V3's template; a DeepSeek tokenizer without one falls back to it */
static void test_synth_and_fallback(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("template_synth");
    ms_err err = {0};
    assert_int_equal(ms_synth_tokenizer_write(dir, 600, 3, &err), 0);
    const char *msgs = "[{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"Hello\"},"
                       " {\"role\": \"assistant\", \"content\": \"Hi\"}, {\"role\": \"user\", \"content\": \"Again\"}]";
    const char *want = "<｜begin▁of▁sentence｜>S<｜User｜>Hello<｜Assistant｜>Hi<｜end▁of▁sentence｜><｜User｜>Again<｜Assistant｜>";
    char *out = render_dir(dir, NULL, msgs, NULL, &err);
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
    /* the shipped template is DeepSeek-V3's, byte for byte */
    ms_chat_template *ct;
    assert_int_equal(ms_chat_template_load(dir, NULL, NULL, &ct, &err), 0);
    char *ref = mst_slurp(TPL_DIR "/deepseek_v3.jinja", NULL);
    assert_string_equal(ct->text, ref);
    assert_string_equal(ms_chat_template_deepseek_v3, ref);
    free(ref);
    ms_chat_template_free(ct);
    /* without a template: the built-in one, only for a tokenizer with DeepSeek's tokens */
    write_file(dir, "tokenizer_config.json", "{\"bos_token\": \"<｜begin▁of▁sentence｜>\"}");
    ms_tokenizer *tok;
    assert_int_equal(ms_tokenizer_load(dir, &tok, &err), 0);
    assert_int_equal(ms_chat_template_load(dir, NULL, tok, &ct, &err), 0);
    assert_non_null(strstr(ct->origin, "built-in"));
    json_object *m = json_tokener_parse(msgs);
    size_t len;
    assert_int_equal(ms_chat_template_render(ct, m, NULL, NULL, NULL, true, &out, &len, &err), 0);
    assert_string_equal(out, want);
    free(out);
    json_object_put(m);
    ms_chat_template_free(ct);
    ms_tokenizer_free(tok);
    assert_int_equal(ms_chat_template_load(DS_DIR, NULL, NULL, &ct, &err), 0); /* the real one: shipped */
    ms_chat_template_free(ct);
    free(dir);
}

static void test_cli_template(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("template_cli2");
    char *out = NULL, *err = NULL;
    write_file(dir, "tokenizer_config.json", "{\"bos_token\": \"<s>\", \"chat_template\": \"{{ bos_token }}{{ messages[0].content }}"
                                             "{{ flag }}{{ strftime_now('%Y-%m-%d') }}\"}");
    write_file(dir, "in.json", "{\"messages\": [{\"role\": \"user\", \"content\": \"héllo\"}], \"kwargs\": {\"flag\": false}}");
    int rc = mst_run(&out, &err, "%s template --model %s --input %s/in.json --now 2026-01-15", MS_BIN, dir, dir);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "<s>hélloFalse2026-01-15");
    free(out);
    free(err);
    /* special_tokens of the input override the model's; stdin input; MOESTREAM_NOW */
    rc = mst_run(&out, &err,
                 "echo '{\"messages\": [{\"content\": \"x\"}], \"special_tokens\": {\"bos_token\": \"[B]\"}}' | "
                 "MOESTREAM_NOW=@0 TZ=UTC %s template --model %s --input -",
                 MS_BIN, dir);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "[B]x1970-01-01");
    free(out);
    free(err);
    /* errors: one line, non-zero, nothing on stdout */
    write_file(dir, "bad.json", "{\"messages\": [}");
    rc = mst_run(&out, &err, "%s template --model %s --input %s/bad.json", MS_BIN, dir, dir);
    assert_int_equal(rc, 1);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "invalid JSON"));
    free(out);
    free(err);
    write_file(dir, "raise.jinja", "{{ raise_exception('No system role.\\nSecond line.') }}");
    rc = mst_run(&out, &err, "%s template --chat-template %s/raise.jinja --input %s/in.json", MS_BIN, dir, dir);
    assert_int_equal(rc, 1);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "No system role. Second line."));
    assert_int_equal(strchr(err, '\n') - err + 1, (long)strlen(err));
    free(out);
    free(err);
    rc = mst_run(&out, &err, "%s template --input %s/in.json", MS_BIN, dir);
    assert_int_equal(rc, 2);
    free(out);
    free(err);
    rc = mst_run(&out, &err, "%s template --model %s --input %s/in.json --now yesterday", MS_BIN, dir, dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "--now"));
    free(out);
    free(err);
    rc = mst_run(&out, &err, "%s template --model %s/missing --input %s/in.json", MS_BIN, dir, dir);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "missing"));
    free(out);
    free(err);
    rc = mst_run(&out, &err, "%s template --help", MS_BIN);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "--chat-template"));
    free(out);
    free(err);
    free(dir);
}

/* `moestream bench template`: one line per template of the cases file, every case that
 * should render counted (figures themselves are not checked) */
static void test_bench_template(void **state)
{
    (void)state;
    size_t n;
    refcase *cs = load_cases(&n);
    char *out = NULL, *err = NULL;
    int rc = mst_run(&out, &err, "%s bench template --dir %s --repeat 1 --json", MS_BIN, TPL_DIR);
    assert_int_equal(rc, 0);
    size_t lines = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        json_object *o = json_tokener_parse(line), *v;
        assert_non_null(o);
        const char *name = field(o, "template");
        assert_non_null(name);
        int expect = 0;
        for (size_t i = 0; i < n; i++)
            expect += !strcmp(cs[i].tmpl, name) && !json_object_object_get_ex(cs[i].obj, "error", NULL);
        assert_true(json_object_object_get_ex(o, "cases", &v));
        assert_int_equal(json_object_get_int(v), expect);
        assert_true(json_object_object_get_ex(o, "render_ms_median", &v));
        assert_true(json_object_get_double(v) > 0);
        json_object_put(o);
    }
    assert_int_equal(lines, 10);
    free(out);
    free(err);
    rc = mst_run(&out, &err, "%s bench template --dir %s/missing", MS_BIN, MS_TMP_DIR);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(err, "cases.jsonl"));
    free(out);
    free(err);
    free_cases(cs, n);
}

/* ---- moestream tokenize ----------------------------------------------------------------------- */

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
        cmocka_unit_test(test_reference_cases_library), cmocka_unit_test(test_reference_cases_cli),
        cmocka_unit_test(test_sources),                 cmocka_unit_test(test_synth_and_fallback),
        cmocka_unit_test(test_cli_template),            cmocka_unit_test(test_cli_tokenize),
        cmocka_unit_test(test_bench_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

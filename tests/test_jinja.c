/* test_jinja.c - the Jinja renderer (src/text/jinja.h): ~400 templates whose expected
 * output (or error) comes from jinja2 3.1 configured as transformers configures it
 * (test_jinja_cases.inc), error messages with line:column, raise_exception messages,
 * the limits that stop hostile templates (steps, output, memory, call depth, nesting),
 * cyclic values, parse-time vs run-time errors, and concurrent renders of one parsed
 * template. */
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jinja.h"
#include "ms_test.h"

static const char VARS[] =
    "{\"x\": [1, \"a\", null, true, 2.5], \"d\": {\"a\": 1, \"b\": [1, 2], \"items\": \"shadow\", \"c\": {\"e\": \"f\"}},"
    " \"s\": \"Hello, World! héllo 中文\", \"n\": null, \"i\": 7, \"f\": -3.25, \"e\": [], \"ed\": {},"
    " \"msgs\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\","
    " \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1}}}]}]}";

static const struct {
    const char *tmpl, *out, *error_type;
} cases[] = {
#include "test_jinja_cases.inc"
};

/* 2026-01-15 10:30:00 local time, the reference's fixed clock */
static int64_t ref_now(void)
{
    struct tm tm = {.tm_year = 126, .tm_mon = 0, .tm_mday = 15, .tm_hour = 10, .tm_min = 30, .tm_isdst = -1};
    return (int64_t)mktime(&tm);
}

/* render src with vars (JSON text or NULL); returns rc, *out malloc'd on success */
static int render(const char *src, const char *vars, const ms_jinja_opts *opts, char **out, ms_err *err)
{
    ms_jinja *t = NULL;
    *out = NULL;
    int rc = ms_jinja_parse(src, strlen(src), "t", &t, err);
    if (rc < 0) return rc;
    json_object *v = vars ? json_tokener_parse(vars) : NULL;
    size_t len;
    ms_jinja_opts o = {.fixed_now = true, .now = ref_now()};
    rc = ms_jinja_render(t, v, opts ? opts : &o, out, &len, err);
    if (rc == 0) assert_int_equal(len, strlen(*out));
    json_object_put(v);
    ms_jinja_free(t);
    return rc;
}

static void test_reference_cases(void **state)
{
    (void)state;
    int failed = 0;
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        char *out;
        ms_err err = {0};
        int rc = render(cases[i].tmpl, VARS, NULL, &out, &err);
        bool ok;
        if (cases[i].out) ok = rc == 0 && !strcmp(out, cases[i].out);
        else ok = rc < 0 && err.msg[0] && strstr(err.msg, "t:") == err.msg; /* an error naming the template */
        if (!ok) {
            failed++;
            fprintf(stderr, "case %zu: %s\n  want %s%s\n  got  %s\n", i, cases[i].tmpl,
                    cases[i].out ? cases[i].out : "error ", cases[i].out ? "" : cases[i].error_type,
                    rc == 0 ? out : err.msg);
        }
        free(out);
    }
    fprintf(stderr, "%zu reference cases, %d failed\n", n, failed);
    assert_int_equal(failed, 0);
    assert_true(n > 300);
}

static void expect_error(const char *src, const char *vars, const ms_jinja_opts *opts, int code, const char *needle)
{
    char *out;
    ms_err err = {0};
    int rc = render(src, vars, opts, &out, &err);
    if (rc >= 0 || !strstr(err.msg, needle)) fprintf(stderr, "%s -> rc %d, '%s' (want '%s')\n", src, rc, err.msg, needle);
    assert_true(rc < 0);
    assert_null(out);
    assert_int_equal(-rc, code);
    assert_non_null(strstr(err.msg, needle));
    assert_null(strchr(err.msg, '\n'));
}

static void test_errors(void **state)
{
    (void)state;
    /* line:column of the failing expression */
    expect_error("line 1\n  {{ x + 1 }}", "{\"x\": \"s\"}", NULL, EINVAL,
                 "t:2:8: TypeError: can only concatenate str (not \"int\") to str");
    expect_error("{% if true %}\n{{ undefined.attr }}{% endif %}", NULL, NULL, EINVAL, "t:2:");
    expect_error("{{ u.attr }}", NULL, NULL, EINVAL, "UndefinedError: 'u' is undefined");
    expect_error("{{ d.x.y }}", "{\"d\": {}}", NULL, EINVAL, "'dict object' has no attribute 'x'");
    /* raise_exception keeps the message verbatim */
    expect_error("{{ raise_exception('Only user/assistant roles: ' ~ r) }}", "{\"r\": \"tool\"}", NULL, EINVAL,
                 ": Only user/assistant roles: tool");
    /* parse errors */
    expect_error("{% frobnicate %}", NULL, NULL, EINVAL, "t:1:4: Encountered unknown tag 'frobnicate'.");
    expect_error("{% for x in y %}", NULL, NULL, EINVAL, "Unexpected end of template");
    expect_error("{{ x | nosuchfilter }}", NULL, NULL, EINVAL, "No filter named 'nosuchfilter'.");
    expect_error("{{ 'a\\xZZ' }}", NULL, NULL, EINVAL, "truncated \\x escape");
    expect_error("a\xff", NULL, NULL, EINVAL, "not valid UTF-8");
    expect_error("{% break %}", NULL, NULL, EINVAL, "'break' outside loop");
    /* invalid UTF-8 in the variables */
    ms_jinja *t;
    ms_err err = {0};
    assert_int_equal(ms_jinja_parse("{{ x }}", 7, "t", &t, &err), 0);
    json_object *v = json_object_new_object();
    json_object_object_add(v, "x", json_object_new_string_len("a\xc3", 2));
    char *out;
    assert_true(ms_jinja_render(t, v, NULL, &out, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "UTF-8"));
    json_object_put(v);
    /* a NULL error sink is allowed */
    assert_true(ms_jinja_render(t, NULL, NULL, &out, NULL, NULL) == 0);
    assert_string_equal(out, "");
    free(out);
    ms_jinja_free(t);
}

static void test_limits(void **state)
{
    (void)state;
    ms_jinja_opts small = {.max_steps = 200000, .max_output = 1 << 20, .max_memory = 16 << 20, .max_depth = 50};
    /* endless work */
    expect_error("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", NULL, &small, E2BIG,
                 "evaluation-step limit");
    /* output and string sizes */
    expect_error("{% for a in range(50000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}", NULL, &small, E2BIG,
                 "output-size limit");
    expect_error("{{ 'x' * 100000000 }}", NULL, &small, E2BIG, "string-size limit");
    expect_error("{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 NULL, &small, E2BIG, "limit");
    expect_error("{{ [0] * 100000000 }}", NULL, &small, E2BIG, "memory limit");
    /* recursion */
    expect_error("{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}", NULL, &small, E2BIG, "call-depth limit");
    expect_error("{% for a in [[1]] recursive %}{{ loop([[a]]) }}{% endfor %}", NULL, &small, E2BIG, "limit");
    /* the sandbox's range cap */
    expect_error("{{ range(100001) | length }}", NULL, NULL, EINVAL, "MAX_RANGE (100000)");
    /* nesting in the source */
    char *deep = malloc(4096);
    memset(deep, 0, 4096);
    strcpy(deep, "{{ ");
    for (int i = 0; i < 500; i++) strcat(deep, "(");
    expect_error(deep, NULL, NULL, EINVAL, "nested too deeply");
    strcpy(deep, "");
    for (int i = 0; i < 300; i++) strcat(deep, "{% if 1 %}");
    expect_error(deep, NULL, NULL, EINVAL, "nested too deeply");
    free(deep);
    /* deeply nested values: printing fails cleanly, releasing does not recurse */
    expect_error("{% set ns = namespace(a=[]) %}{% for i in range(20000) %}{% set ns.a = [ns.a] %}{% endfor %}{{ ns.a }}",
                 NULL, NULL, EINVAL, "nested too deeply");
    char *out;
    ms_err err = {0};
    assert_int_equal(render("{% set ns = namespace(a=[]) %}{% for i in range(50000) %}{% set ns.a = [ns.a] %}{% endfor %}ok",
                            NULL, NULL, &out, &err),
                     0);
    assert_string_equal(out, "ok");
    free(out);
    /* cycles through namespaces and macro closures are released at the end (ASan checks) */
    assert_int_equal(render("{% set ns = namespace() %}{% set ns.me = ns %}{% set ns.l = [ns, ns] %}"
                            "{% macro m() %}{{ ns.me is defined }}{% endmacro %}{% set ns.m = m %}{{ ns.m() }}",
                            NULL, NULL, &out, &err),
                     0);
    assert_string_equal(out, "True");
    free(out);
    assert_int_equal(render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", NULL, NULL, &out, &err), 0);
    assert_string_equal(out, "<Namespace {'me': <Namespace {...}>}>");
    free(out);
}

/* one parsed template rendered by several threads at once */
typedef struct {
    const ms_jinja *t;
    int failures;
} thread_arg;

static void *render_many(void *p)
{
    thread_arg *a = p;
    for (int i = 0; i < 200; i++) {
        json_object *v = json_tokener_parse("{\"items\": [\"a\", \"b\", \"c\"], \"k\": \"constant\"}");
        char *out;
        ms_err err = {0};
        if (ms_jinja_render(a->t, v, NULL, &out, NULL, &err) < 0 ||
            strcmp(out, "0:a-constant|1:b-constant|2:c-constantconstantconstant"))
            a->failures++;
        else
            free(out);
        json_object_put(v);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    const char *src = "{% for x in items %}{{ loop.index0 }}:{{ x ~ '-' ~ k }}{{ '|' if not loop.last }}{% endfor %}"
                      "{{ 'constant' * 2 }}";
    ms_jinja *t;
    ms_err err = {0};
    assert_int_equal(ms_jinja_parse(src, strlen(src), "t", &t, &err), 0);
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){t, 0};
        pthread_create(&th[i], NULL, render_many, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    ms_jinja_free(t);
}

/* lazily evaluated generators: an error inside one surfaces only when consumed */
static void test_lazy_generators(void **state)
{
    (void)state;
    char *out;
    ms_err err = {0};
    assert_int_equal(render("{% set g = 5 | items %}{% set h = [1, 'a'] | map('upper') %}ok{{ g is iterable }}", NULL, NULL,
                            &out, &err),
                     0);
    assert_string_equal(out, "okTrue");
    free(out);
    expect_error("{% for k, v in 5 | items %}{% endfor %}", NULL, NULL, EINVAL, "Can only get item pairs from a mapping.");
    assert_int_equal(render("{% set g = [{'a': 1}, 5] | map(attribute='a.b') %}{{ g | first }}", NULL, NULL, &out, &err),
                     0);
    assert_string_equal(out, "");
    free(out);
    expect_error("{{ [1, 'x'] | map('abs') | list }}", NULL, NULL, EINVAL, "bad operand type for abs()");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_cases), cmocka_unit_test(test_errors), cmocka_unit_test(test_limits),
        cmocka_unit_test(test_threads),         cmocka_unit_test(test_lazy_generators),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_regress_tokenizer.c - regression tests for tokenizer-loader bugs found
 * by fuzzing (tests/fuzz/fuzz_tokenizer.c).
 *
 * 1. A "Replace" normalizer whose pattern compiled but whose "content" was
 *    missing (or whose String pattern was empty) returned the error without
 *    freeing the compiled pattern / literal: a leak per failed load (found by
 *    LeakSanitizer). The error must still name the field; the ASan CI build
 *    (detect_leaks=1) fails this test if the leak comes back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_test.h"
#include "tokenizer.h"

static void expect_error(const char *name, const char *json, const char *want)
{
    char *dir = mst_tmpdir(name);
    assert_non_null(dir);
    char *path = mst_fmt("%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    ms_tokenizer *tok = NULL;
    ms_err err = {0};
    assert_true(ms_tokenizer_load(path, &tok, &err) < 0);
    assert_null(tok);
    if (!strstr(err.msg, want)) fail_msg("error '%s' does not mention '%s'", err.msg, want);
    free(path);
    free(dir);
}

#define MODEL "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}"

static void test_replace_without_content(void **state)
{
    (void)state;
    /* String pattern (malloc'd literal), then no "content" (the fuzzer's "connent") */
    expect_error("rg_tok_repl_str",
                 "{" MODEL ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", "
                 "\"prepend\": \"_\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"connent\": \"_\"}]}}",
                 "content");
    /* Regex pattern (compiled PCRE2 code), then no "content" */
    expect_error("rg_tok_repl_re",
                 "{" MODEL ", \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"\\\\s+\"}}}",
                 "content");
}

static void test_replace_empty_string_pattern(void **state)
{
    (void)state;
    expect_error("rg_tok_repl_empty",
                 "{" MODEL ", \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \"\"}, \"content\": \"x\"}}",
                 "empty String");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replace_without_content),
        cmocka_unit_test(test_replace_empty_string_pattern),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

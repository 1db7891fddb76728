/* test_regress_tokenizer.c - regression tests for tokenizer bugs found by
 * fuzzing (tests/fuzz/fuzz_tokenizer.c).
 *
 * 1. A "Replace" normalizer whose pattern compiled but whose "content" was
 *    missing (or whose String pattern was empty) returned the error without
 *    freeing the compiled pattern / literal: a leak per failed load (found by
 *    LeakSanitizer). The error must still name the field; the ASan CI build
 *    (detect_leaks=1) fails this test if the leak comes back.
 * 2. Metaspace use-after-free (below).
 * 3. A vocabulary or added-token id of 48444443 made the loader allocate and
 *    clear a dense id table of ~1 GB (a 10 s fuzz timeout; a 10^9 id meant
 *    20 GB): ids are now limited to < 2^24 and a larger one is an error naming
 *    the token.
 * 4. A pre_tokenizer Sequence of 87 Metaspace steps between Punctuation /
 *    WhitespaceSplit / Digits splits grew every piece by a "▁" per step: work
 *    quadratic in the step count (1 s per 41-byte text in release, a fuzz
 *    timeout under ASan); 40 Replace normalizers "a" -> "aa" doubled the text
 *    40 times (a hang, then out of memory). Both pipelines now stop with an error
 *    naming the step once the text grows past 64x its size (+4 KiB).
 * 5. A Replace decoder whose pattern held U+0000 was copied with strndup (cut at
 *    the NUL) but searched with its JSON length: memmem read past the copy
 *    (ASan heap-buffer-overflow while building the decoded strings at load).
 * 6. Raw ill-formed UTF-8 inside tokenizer.json strings (json-c does not check)
 *    reached the text through a Prepend normalizer, and from there PCRE2, which
 *    matches with PCRE2_NO_UTF_CHECK: a SEGV inside the JIT code. Strings that
 *    become text or split it (added tokens, Prepend, Replace content, String
 *    patterns) must be valid UTF-8, with an error naming the field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_test.h"
#include "tokenizer.h"

/* Write json as tokenizer.json in a fresh test directory; returns its path. */
static char *write_tok(const char *name, const char *json)
{
    char *dir = mst_tmpdir(name);
    assert_non_null(dir);
    char *path = mst_fmt("%s/tokenizer.json", dir);
    free(dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    return path;
}

/* A tokenizer from json that must load. */
static ms_tokenizer *load_tok(const char *name, const char *json)
{
    char *path = write_tok(name, json);
    ms_tokenizer *tok = NULL;
    ms_err err = {0};
    if (ms_tokenizer_load(path, &tok, &err) < 0) fail_msg("%s", err.msg);
    free(path);
    return tok;
}

static void expect_error(const char *name, const char *json, const char *want)
{
    char *path = write_tok(name, json);
    ms_tokenizer *tok = NULL;
    ms_err err = {0};
    assert_true(ms_tokenizer_load(path, &tok, &err) < 0);
    assert_null(tok);
    if (!strstr(err.msg, want)) fail_msg("error '%s' does not mention '%s'", err.msg, want);
    free(path);
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

/* 2. The Metaspace pre-tokenizer copied each byte of a piece from the work
 *    buffer into the same buffer through a pointer taken before the append: when
 *    the append grew (moved) the buffer, the byte was read from freed memory
 *    (ASan heap-use-after-free; garbage pieces without ASan). Texts long enough
 *    to grow the buffer must give exactly "▁" + the text with spaces as "▁". */
static void test_metaspace_buffer_growth(void **state)
{
    (void)state;
    ms_tokenizer *tok = load_tok("rg_tok_metaspace", "{" MODEL ", \"pre_tokenizer\": {\"type\": \"Metaspace\", "
                                                    "\"prepend_scheme\": \"always\", \"split\": false}}");
    ms_err err = {0};
    static const char meta[] = "\xE2\x96\x81"; /* U+2581 */
    /* letters only (every appended byte is a copied one) and words with spaces, at
     * lengths that make the buffer grow inside the copy loop */
    static const size_t lens_[] = {1, 100, 255, 300, 700, 1000, 2500, 5000};
    for (size_t li = 0; li < sizeof lens_ / sizeof lens_[0]; li++)
        for (int spaced = 0; spaced < 2; spaced++) {
            size_t n = lens_[li];
            char *text = malloc(n + 1), *want = malloc(3 + n * 3 + 1);
            assert_non_null(text);
            assert_non_null(want);
            memcpy(want, meta, 3);
            size_t w = 3;
            for (size_t i = 0; i < n; i++) {
                text[i] = spaced && i % 6 == 5 ? ' ' : (char)('a' + i % 2);
                if (text[i] == ' ') {
                    memcpy(want + w, meta, 3);
                    w += 3;
                } else {
                    want[w++] = text[i];
                }
            }
            text[n] = 0;
            char *buf = NULL;
            size_t *lens = NULL, np = 0;
            assert_int_equal(ms_tokenizer_pretokenize(tok, text, n, &buf, &lens, &np, &err), 0);
            assert_int_equal(np, 1); /* split: false -> one piece */
            assert_int_equal(lens[0], w);
            assert_memory_equal(buf, want, w);
            free(buf);
            free(lens);
            int32_t *ids = NULL;
            size_t nid = 0;
            assert_int_equal(ms_tokenizer_encode(tok, text, n, 0, &ids, &nid, &err), 0);
            free(ids);
            free(text);
            free(want);
        }
    ms_tokenizer_free(tok);
}

/* 3. huge ids are refused by name, quickly, before any table is sized by them */
static void test_huge_ids(void **state)
{
    (void)state;
    expect_error("rg_tok_huge_vocab_id",
                 "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"to\": 48444443}, \"merges\": []}}",
                 "model.vocab[\"to\"]: id 48444443 out of range");
    expect_error("rg_tok_huge_added_id",
                 "{" MODEL ", \"added_tokens\": [{\"id\": 16777216, \"content\": \"<x>\", \"special\": true}]}",
                 "id: 16777216 out of range");
}

/* 4. runaway growth through the normalizer / pre-tokenizer chains */
static char *chain(const char *head, const char *step, int n, const char *tail)
{
    size_t cap = strlen(head) + (size_t)n * (strlen(step) + 2) + strlen(tail) + 1;
    char *s = malloc(cap), *p = s;
    p += sprintf(p, "%s", head);
    for (int i = 0; i < n; i++) p += sprintf(p, "%s%s", i ? ", " : "", step);
    sprintf(p, "%s", tail);
    return s;
}

static void expect_encode_error(const char *name, const char *json, const char *text, const char *want)
{
    ms_tokenizer *tok = load_tok(name, json);
    ms_err err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    assert_true(ms_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n, &err) < 0);
    assert_null(ids);
    if (!strstr(err.msg, want)) fail_msg("error '%s' does not mention '%s'", err.msg, want);
    ms_tokenizer_free(tok);
}

static void test_runaway_growth(void **state)
{
    (void)state;
    char *j = chain("{" MODEL ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [",
                    "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"aa\"}", 40, "]}}");
    expect_encode_error("rg_tok_norm_growth", j, "ab", "normalizer step 13");
    free(j);
    j = chain("{" MODEL ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [",
              "{\"type\": \"Metaspace\"}, {\"type\": \"Punctuation\"}, {\"type\": \"WhitespaceSplit\"}", 87, "]}}");
    expect_encode_error("rg_tok_pretok_growth", j, "Hello, world! The quick brown fox 12345.", "pre_tokenizer step");
    free(j);
    /* a real-sized chain still works: NFKC of U+FDFA (3 bytes -> 33 bytes) */
    ms_tokenizer *tok = load_tok("rg_tok_nfkc_ok", "{" MODEL ", \"normalizer\": {\"type\": \"NFKC\"}}");
    ms_err err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    if (ms_tokenizer_encode(tok, "\xEF\xB7\xBA", 3, 0, &ids, &n, &err) < 0) fail_msg("%s", err.msg);
    free(ids);
    ms_tokenizer_free(tok);
}

/* 5. decoder Replace patterns / contents with U+0000 are kept whole */
static void test_decoder_replace_nul(void **state)
{
    (void)state;
    ms_tokenizer *tok = load_tok("rg_tok_dec_nul", "{" MODEL ", \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", "
          "\"pattern\": {\"String\": \"a\\u0000bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"}, "
          "\"content\": \"z\\u0000z\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \"b\"}, "
          "\"content\": \"c\\u0000c\"}]}}");
    ms_err err = {0};
    int32_t ids[] = {0, 2}; /* "a", "ab" */
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(ms_tokenizer_decode(tok, ids, 2, 0, &text, &len, &err), 0);
    /* the long pattern never matches; "b" -> "c\0c" keeps its NUL */
    assert_int_equal(len, 5);
    assert_memory_equal(text, "aac\0c", 5);
    free(text);
    ms_tokenizer_free(tok);
}

/* 6. ill-formed UTF-8 in strings that become or split text */
static void test_string_fields_utf8(void **state)
{
    (void)state;
    expect_error("rg_tok_prepend_utf8",
                 "{" MODEL ", \"normalizer\": {\"type\": \"Prepend\", \"prepend\": \"\xE2\x96 x\"}, "
                 "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, "
                 "\"behavior\": \"Isolated\"}}",
                 "normalizer.prepend: not valid UTF-8 (byte 0)");
    expect_error("rg_tok_replace_utf8",
                 "{" MODEL ", \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, "
                 "\"content\": \"ok\xC3\"}}",
                 "content: not valid UTF-8 (byte 2)");
    expect_error("rg_tok_split_utf8",
                 "{" MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \"\xE2\"}, "
                 "\"behavior\": \"Isolated\"}}",
                 "pattern.String: not valid UTF-8");
    expect_error("rg_tok_added_utf8",
                 "{" MODEL ", \"added_tokens\": [{\"id\": 3, \"content\": \"a\xE2\", \"special\": true}]}",
                 "content: not valid UTF-8 (byte 1)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replace_without_content),
        cmocka_unit_test(test_replace_empty_string_pattern),
        cmocka_unit_test(test_metaspace_buffer_growth),
        cmocka_unit_test(test_huge_ids),
        cmocka_unit_test(test_runaway_growth),
        cmocka_unit_test(test_decoder_replace_nul),
        cmocka_unit_test(test_string_fields_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

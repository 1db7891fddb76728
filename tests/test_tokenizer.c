/* test_tokenizer.c - the tokenizer against Hugging Face's own ids (DeepSeek-V3 cases),
 * streaming detokenization, special tokens, malformed tokenizer.json files, the
 * generic pre-tokenizer behaviours and the synthetic tokenizer. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_test.h"
#include "synth_tokenizer.h"
#include "tokenizer.h"
#include "util.h"

#define DS_DIR MS_TEST_DATA "/tokenizers/deepseek_v3"
#define DS_USER "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"
#define DS_ASSISTANT "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"
#define DS_BOS "<\xEF\xBD\x9C" "begin\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>"

static ms_tokenizer *ds; /* loaded once for the group */

static int setup(void **state)
{
    (void)state;
    ms_err err = {0};
    if (ms_tokenizer_load(DS_DIR, &ds, &err) < 0) {
        fprintf(stderr, "load failed: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ms_tokenizer_free(ds);
    return 0;
}

static bool valid_utf8(const char *s, size_t n)
{
    size_t i = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (i < n) {
        int l = u[i] < 0x80 ? 1 : (u[i] >> 5) == 6 ? 2 : (u[i] >> 4) == 14 ? 3 : (u[i] >> 3) == 30 ? 4 : 0;
        if (!l || i + l > n) return false;
        for (int k = 1; k < l; k++)
            if ((u[i + k] & 0xC0) != 0x80) return false;
        i += l;
    }
    return true;
}

static void check_ids(const char *name, const char *text, size_t len, json_object *want)
{
    ms_err err = {0};
    int32_t *ids;
    size_t n;
    assert_int_equal(ms_tokenizer_encode(ds, text, len, 0, &ids, &n, &err), 0);
    size_t wn = json_object_array_length(want);
    bool same = n == wn;
    for (size_t i = 0; same && i < n; i++) same = ids[i] == json_object_get_int(json_object_array_get_idx(want, i));
    if (!same) {
        fprintf(stderr, "case %s: got %zu ids, want %zu\n", name, n, wn);
        for (size_t i = 0; i < n && i < wn; i++)
            if (ids[i] != json_object_get_int(json_object_array_get_idx(want, i))) {
                fprintf(stderr, "  first difference at %zu: %d vs %d\n", i, ids[i],
                        json_object_get_int(json_object_array_get_idx(want, i)));
                break;
            }
    }
    assert_true(same);
    /* decode back to the text */
    char *back;
    size_t bl;
    assert_int_equal(ms_tokenizer_decode(ds, ids, n, 0, &back, &bl, &err), 0);
    if (bl != len || memcmp(back, text, len) != 0) fprintf(stderr, "case %s: decode differs\n", name);
    assert_true(bl == len && memcmp(back, text, len) == 0);
    free(back);
    free(ids);
}

/* Every case of cases.jsonl (ids from HF tokenizers) encodes exactly and decodes back. */
static void test_deepseek_cases(void **state)
{
    (void)state;
    FILE *f = fopen(DS_DIR "/cases.jsonl", "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    int count = 0;
    while (getline(&line, &cap, f) > 0) {
        json_object *o = json_tokener_parse(line);
        assert_non_null(o);
        json_object *jt, *ji, *jn;
        assert_true(json_object_object_get_ex(o, "text", &jt));
        assert_true(json_object_object_get_ex(o, "ids", &ji));
        assert_true(json_object_object_get_ex(o, "name", &jn));
        size_t len = (size_t)json_object_get_string_len(jt);
        const char *text = json_object_get_string(jt);
        check_ids(json_object_get_string(jn), text, len, ji);
        json_object_put(o);
        count++;
    }
    free(line);
    fclose(f);
    assert_int_equal(count, 100);
    /* U+0000 goes through the (pointer, length) API like any other character.
     * cases.jsonl has no such case; the ids follow from tokenizer.json alone: the
     * pre-tokenizer cuts "a", "\0b", "\0"; byte-level maps 0x00 to U+0100 (id 191),
     * no merge involves it, so "a" 67, U+0100 191, "b" 68, U+0100 191. */
    ms_err err = {0};
    int32_t *ids;
    size_t n;
    assert_int_equal(ms_tokenizer_encode(ds, "a\0b\0", 4, 0, &ids, &n, &err), 0);
    const int32_t want[4] = {67, 191, 68, 191};
    assert_int_equal(n, 4);
    assert_memory_equal(ids, want, sizeof want);
    char *back;
    size_t bl;
    assert_int_equal(ms_tokenizer_decode(ds, ids, n, 0, &back, &bl, &err), 0);
    assert_int_equal(bl, 4);
    assert_memory_equal(back, "a\0b\0", 4);
    free(back);
    free(ids);
}

/* U+0085 is White_Space for HF (\s): follow ids_hf_tokenizers. */
static void test_deepseek_divergent(void **state)
{
    (void)state;
    char *txt = mst_slurp(DS_DIR "/divergent.jsonl", NULL);
    assert_non_null(txt);
    json_object *o = json_tokener_parse(txt);
    assert_non_null(o);
    json_object *jt, *ji;
    assert_true(json_object_object_get_ex(o, "text", &jt));
    assert_true(json_object_object_get_ex(o, "ids_hf_tokenizers", &ji));
    check_ids("divergent", json_object_get_string(jt), (size_t)json_object_get_string_len(jt), ji);
    json_object_put(o);
    free(txt);
}

static void test_deepseek_specials(void **state)
{
    (void)state;
    assert_int_equal(ms_tokenizer_vocab_size(ds), 128815);
    assert_int_equal(ms_tokenizer_bos_id(ds), 0);
    assert_int_equal(ms_tokenizer_eos_id(ds), 1);
    assert_string_equal(ms_tokenizer_bos_str(ds), DS_BOS);
    assert_true(ms_tokenizer_add_bos(ds));
    assert_true(ms_tokenizer_is_stop(ds, 1));
    assert_false(ms_tokenizer_is_stop(ds, 0));
    assert_int_equal(ms_tokenizer_token_id(ds, DS_USER, strlen(DS_USER)), 128803);
    assert_int_equal(ms_tokenizer_token_id(ds, DS_ASSISTANT, strlen(DS_ASSISTANT)), 128804);
    assert_int_equal(ms_tokenizer_token_id(ds, "\xC4\xA0the", 5), 270); /* "Ġthe" in tokenizer.json */
    assert_int_equal(ms_tokenizer_token_id(ds, "no-such-token-xyz", 17), -1);
    assert_true(ms_tokenizer_is_special(ds, 0));
    assert_false(ms_tokenizer_is_special(ds, 128803)); /* <｜User｜> is added but not special */
    assert_true(ms_tokenizer_is_added(ds, 128803));
    size_t l;
    assert_string_equal(ms_tokenizer_token_bytes(ds, ms_tokenizer_token_id(ds, "\xC4\xA0the", 5), &l), " the");
    assert_null(ms_tokenizer_token_str(ds, 128815, &l));
    assert_null(ms_tokenizer_token_str(ds, -1, &l));
}

static void test_special_tokens_in_text(void **state)
{
    (void)state;
    ms_err err = {0};
    int32_t *ids;
    size_t n;
    const char *t = DS_BOS DS_USER "Hi" DS_ASSISTANT;
    assert_int_equal(ms_tokenizer_encode(ds, t, strlen(t), 0, &ids, &n, &err), 0);
    assert_true(n >= 4);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 128803);
    assert_int_equal(ids[n - 1], 128804);
    free(ids);
    /* MS_TOK_ADD_BOS does not double the BOS */
    assert_int_equal(ms_tokenizer_encode(ds, t, strlen(t), MS_TOK_ADD_BOS, &ids, &n, &err), 0);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 128803);
    free(ids);
    assert_int_equal(ms_tokenizer_encode(ds, "Hi", 2, MS_TOK_ADD_BOS, &ids, &n, &err), 0);
    assert_int_equal(ids[0], 0);
    assert_int_equal(n, 2);
    free(ids);
    /* special tokens as plain text when asked: BOS (special) is split into pieces */
    assert_int_equal(ms_tokenizer_encode(ds, DS_BOS, strlen(DS_BOS), MS_TOK_NO_SPECIAL, &ids, &n, &err), 0);
    assert_true(n > 1);
    for (size_t i = 0; i < n; i++) assert_int_not_equal(ids[i], 0);
    char *back;
    size_t bl;
    assert_int_equal(ms_tokenizer_decode(ds, ids, n, 0, &back, &bl, &err), 0);
    assert_string_equal(back, DS_BOS);
    free(back);
    free(ids);
    /* decode with skip-special drops BOS/EOS */
    int32_t seq[] = {0, 128803, 19923, 1};
    assert_int_equal(ms_tokenizer_decode(ds, seq, 4, MS_TOK_SKIP_SPECIAL, &back, &bl, &err), 0);
    assert_null(strstr(back, DS_BOS));
    assert_non_null(strstr(back, DS_USER));
    free(back);
    /* unknown ids and invalid UTF-8 are errors */
    int32_t badid[] = {5, 999999};
    ms_err e2 = {0};
    assert_true(ms_tokenizer_decode(ds, badid, 2, 0, &back, &bl, &e2) < 0);
    assert_non_null(strstr(e2.msg, "999999"));
    ms_err e3 = {0};
    assert_true(ms_tokenizer_encode(ds, "ab\xFF", 3, 0, &ids, &n, &e3) < 0);
    assert_non_null(strstr(e3.msg, "UTF-8"));
    assert_non_null(strstr(e3.msg, "offset 2"));
}

static int32_t byte_tok(uint8_t b)
{
    /* GPT-2 alphabet char of byte b */
    int n = 0;
    uint32_t cp = 0;
    for (int x = 0; x < 256; x++) {
        bool keep = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
        uint32_t c = keep ? (uint32_t)x : (uint32_t)(256 + n++);
        if (x == b) cp = c;
    }
    char s[4];
    int l;
    if (cp < 0x80) {
        s[0] = (char)cp;
        l = 1;
    } else {
        s[0] = (char)(0xC0 | (cp >> 6));
        s[1] = (char)(0x80 | (cp & 0x3F));
        l = 2;
    }
    return ms_tokenizer_token_id(ds, s, (size_t)l);
}

/* The streaming decoder never emits part of a UTF-8 character. */
static void test_streaming_decoder(void **state)
{
    (void)state;
    ms_err err = {0};
    ms_detok *d;
    assert_int_equal(ms_detok_new(ds, 0, &d, &err), 0);
    const char *out;
    size_t ol;
    /* U+1F600 as four single-byte tokens: nothing until the last byte */
    const uint8_t emoji[4] = {0xF0, 0x9F, 0x98, 0x80};
    for (int i = 0; i < 4; i++) {
        int32_t id = byte_tok(emoji[i]);
        assert_true(id >= 0);
        assert_int_equal(ms_detok_feed(d, id, &out, &ol, &err), 0);
        if (i < 3) assert_int_equal(ol, 0);
        else assert_true(ol == 4 && memcmp(out, emoji, 4) == 0);
    }
    /* an impossible byte comes out as U+FFFD right away; an unfinished one at flush */
    assert_int_equal(ms_detok_feed(d, byte_tok(0xFF), &out, &ol, &err), 0);
    assert_true(ol == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    assert_int_equal(ms_detok_feed(d, byte_tok(0xE2), &out, &ol, &err), 0);
    assert_int_equal(ol, 0);
    assert_int_equal(ms_detok_flush(d, &out, &ol), 0);
    assert_true(ol == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    /* every multibyte case: feed ids one by one, every chunk is valid UTF-8, the
     * concatenation is the text */
    const char *texts[] = {"Привет, мир! Как дела?", "日本語のテキストと漢字", "emoji 😀🎉👍🏽 and 👨‍👩‍👧 family",
                           "combining e\xCC\x81 a\xCC\x8A", "mixed 中文 русский العربية हिन्दी"};
    for (size_t k = 0; k < MS_ARRAY_LEN(texts); k++) {
        int32_t *ids;
        size_t n;
        assert_int_equal(ms_tokenizer_encode(ds, texts[k], strlen(texts[k]), 0, &ids, &n, &err), 0);
        ms_detok_reset(d);
        char acc[512] = "";
        size_t al = 0;
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(ms_detok_feed(d, ids[i], &out, &ol, &err), 0);
            assert_true(valid_utf8(out, ol));
            assert_true(al + ol < sizeof acc);
            memcpy(acc + al, out, ol);
            al += ol;
        }
        assert_int_equal(ms_detok_flush(d, &out, &ol), 0);
        assert_int_equal(ol, 0);
        assert_int_equal(al, strlen(texts[k]));
        assert_memory_equal(acc, texts[k], al);
        free(ids);
    }
    assert_true(ms_detok_feed(d, 200000, &out, &ol, &err) < 0);
    ms_detok_free(d);
}

/* ---- malformed files --------------------------------------------------------------- */

static void expect_load_error(const char *name, const char *json, const char *want1, const char *want2)
{
    char *dir = mst_tmpdir(name);
    char *p = mst_fmt("%s/tokenizer.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    ms_tokenizer *t = NULL;
    ms_err err = {0};
    int rc = ms_tokenizer_load(dir, &t, &err);
    if (rc >= 0 || !strstr(err.msg, want1) || (want2 && !strstr(err.msg, want2)))
        fprintf(stderr, "%s: rc=%d msg='%s' (want '%s' '%s')\n", name, rc, err.msg, want1, want2 ? want2 : "");
    assert_true(rc < 0);
    assert_null(t);
    assert_non_null(strstr(err.msg, want1));
    if (want2) assert_non_null(strstr(err.msg, want2));
    assert_non_null(strstr(err.msg, "tokenizer.json"));
    assert_null(strchr(err.msg, '\n'));
    free(p);
    free(dir);
}

#define MINI_MODEL "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}"

static void test_malformed_files(void **state)
{
    (void)state;
    expect_load_error("tok_badjson", "{\"model\": {\"type\": \"BPE\",\n \"vocab\": {\"a\": 0,, }}}", "invalid JSON", "line 2");
    expect_load_error("tok_truncated", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\"", "invalid JSON", NULL);
    expect_load_error("tok_nomodel", "{\"added_tokens\": []}", "model", "missing");
    expect_load_error("tok_wordpiece", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "model.type", "WordPiece");
    expect_load_error("tok_unigram", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "model.type", "Unigram");
    expect_load_error("tok_badmerge",
                      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\", \"a zz\"]}}",
                      "model.merges[1]", "zz");
    expect_load_error("tok_mergeresult",
                      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
                      "model.merges[0]", "merged token");
    expect_load_error("tok_mergeshape", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}",
                      "model.merges[0]", NULL);
    expect_load_error("tok_badregex",
                      "{" MINI_MODEL ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                      "\"pattern\": {\"Regex\": \"[a-\"}, \"behavior\": \"Isolated\", \"invert\": false}]}}",
                      "pre_tokenizer.pretokenizers[0].pattern.Regex", "invalid regex");
    expect_load_error("tok_badbehavior",
                      "{" MINI_MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, "
                      "\"behavior\": \"Sideways\"}}",
                      "pre_tokenizer.behavior", "Sideways");
    expect_load_error("tok_badpretok", "{" MINI_MODEL ", \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}",
                      "pre_tokenizer.type", "BertPreTokenizer");
    expect_load_error("tok_badnorm", "{" MINI_MODEL ", \"normalizer\": {\"type\": \"BertNormalizer\"}}", "normalizer.type",
                      "BertNormalizer");
    expect_load_error("tok_baddecoder", "{" MINI_MODEL ", \"decoder\": {\"type\": \"WordPiece\"}}", "decoder.type",
                      "WordPiece");
    expect_load_error("tok_vocabid", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"zero\"}, \"merges\": []}}",
                      "model.vocab", "not an integer");
    expect_load_error("tok_dupid", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}",
                      "model.vocab", "used twice");
    expect_load_error("tok_addedcontent", "{" MINI_MODEL ", \"added_tokens\": [{\"id\": 3, \"special\": true}]}",
                      "added_tokens[0].content", NULL);
    expect_load_error("tok_notobject", "[1, 2, 3]", "not a JSON object", NULL);
    /* missing file */
    ms_tokenizer *t;
    ms_err err = {0};
    assert_true(ms_tokenizer_load(MS_TMP_DIR "/no/such/dir", &t, &err) < 0);
    assert_non_null(strstr(err.msg, "no/such/dir"));
}

/* ---- generic pre-tokenizers ------------------------------------------------------------ */

static ms_tokenizer *load_json(const char *name, const char *json)
{
    char *dir = mst_tmpdir(name);
    char *p = mst_fmt("%s/tokenizer.json", dir);
    FILE *f = fopen(p, "w");
    fputs(json, f);
    fclose(f);
    ms_tokenizer *t = NULL;
    ms_err err = {0};
    if (ms_tokenizer_load(p, &t, &err) < 0) fprintf(stderr, "%s: %s\n", name, err.msg);
    free(p);
    free(dir);
    return t;
}

/* Pieces joined with '|' */
static char *pieces(ms_tokenizer *t, const char *text)
{
    char *buf;
    size_t *lens, n;
    ms_err err = {0};
    if (ms_tokenizer_pretokenize(t, text, strlen(text), &buf, &lens, &n, &err) < 0) return strdup(err.msg);
    char *o = malloc(strlen(buf) + n + 64);
    size_t k = 0, off = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) o[k++] = '|';
        memcpy(o + k, buf + off, lens[i]);
        k += lens[i];
        off += lens[i];
    }
    o[k] = 0;
    free(buf);
    free(lens);
    return o;
}

static void check_split(const char *behavior, bool invert, const char *want)
{
    char *json = mst_fmt("{" MINI_MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, "
                         "\"behavior\": \"%s\", \"invert\": %s}}",
                         behavior, invert ? "true" : "false");
    ms_tokenizer *t = load_json("tok_split", json);
    assert_non_null(t);
    char *got = pieces(t, "the-final--countdown");
    if (strcmp(got, want)) fprintf(stderr, "%s: got '%s' want '%s'\n", behavior, got, want);
    assert_string_equal(got, want);
    free(got);
    ms_tokenizer_free(t);
    free(json);
}

static void test_split_behaviors(void **state)
{
    (void)state;
    /* the examples of tokenizers' SplitDelimiterBehavior documentation */
    check_split("Removed", false, "the|final|countdown");
    check_split("Isolated", false, "the|-|final|-|-|countdown");
    check_split("MergedWithPrevious", false, "the-|final-|-|countdown");
    check_split("MergedWithNext", false, "the|-final|-|-countdown");
    check_split("Contiguous", false, "the|-|final|--|countdown");
    check_split("Removed", true, "-|-|-"); /* each String match is its own segment */
}

/* A match that needs more than PCRE2's default 32 KiB JIT stack (a capturing group
 * repeated over 100,000 characters) runs again on a growable stack: same pieces as
 * a short text would give, no error. */
static void test_regex_deep_match(void **state)
{
    (void)state;
    ms_tokenizer *t = load_json("tok_deep", "{" MINI_MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", "
                                            "\"pattern\": {\"Regex\": \"(a|b)+\"}, \"behavior\": \"Isolated\", "
                                            "\"invert\": false}}");
    assert_non_null(t);
    size_t n = 100000;
    char *txt = malloc(n + 3);
    for (size_t i = 0; i < n; i++) txt[i] = (i % 3) ? 'a' : 'b';
    memcpy(txt + n, " c", 3);
    char *buf = NULL;
    size_t *lens = NULL, np = 0;
    ms_err err = {0};
    if (ms_tokenizer_pretokenize(t, txt, n + 2, &buf, &lens, &np, &err) < 0) fail_msg("%s", err.msg);
    assert_int_equal(np, 2);
    assert_int_equal(lens[0], n);
    assert_int_equal(lens[1], 2);
    free(buf);
    free(lens);
    free(txt);
    ms_tokenizer_free(t);
}

static void test_pretokenizer_variants(void **state)
{
    (void)state;
    /* GPT-2 ByteLevel with the regex and a prefix space */
    ms_tokenizer *t = load_json("tok_bl", "{" MINI_MODEL ", \"pre_tokenizer\": {\"type\": \"ByteLevel\", "
                                          "\"add_prefix_space\": true, \"use_regex\": true}}");
    assert_non_null(t);
    char *got = pieces(t, "Hello world's  123!!");
    assert_string_equal(got, " Hello| world|'s| | 123|!!");
    free(got);
    ms_tokenizer_free(t);
    /* Digits, individual and grouped, in a Sequence */
    t = load_json("tok_digits", "{" MINI_MODEL ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                                "{\"type\": \"Digits\", \"individual_digits\": true}]}}");
    assert_non_null(t);
    got = pieces(t, "ab123c4");
    assert_string_equal(got, "ab|1|2|3|c|4");
    free(got);
    ms_tokenizer_free(t);
    t = load_json("tok_digits2", "{" MINI_MODEL ", \"pre_tokenizer\": {\"type\": \"Digits\", \"individual_digits\": false}}");
    got = pieces(t, "ab123c4");
    assert_string_equal(got, "ab|123|c|4");
    free(got);
    ms_tokenizer_free(t);
    /* Metaspace (prepend always, split) */
    t = load_json("tok_meta", "{" MINI_MODEL ", \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"_\", "
                              "\"prepend_scheme\": \"always\", \"split\": true}}");
    assert_non_null(t);
    got = pieces(t, "Hey friend  x");
    assert_string_equal(got, "_Hey|_friend|_|_x");
    free(got);
    ms_tokenizer_free(t);
    /* \s is Unicode White_Space (U+0085 yes, U+180E no), Regex Split + invert-less Removed */
    t = load_json("tok_ws", "{" MINI_MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, "
                            "\"behavior\": \"Removed\", \"invert\": false}}");
    assert_non_null(t);
    got = pieces(t, "a\xC2\x85" "b\xE1\xA0\x8E" "c\xE3\x80\x80" "d");
    assert_string_equal(got, "a|b\xE1\xA0\x8E" "c|d");
    free(got);
    ms_tokenizer_free(t);
    /* NFC normalizer + Lowercase */
    t = load_json("tok_nfc", "{" MINI_MODEL ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
                             "{\"type\": \"NFC\"}, {\"type\": \"Lowercase\"}]}}");
    assert_non_null(t);
    got = pieces(t, "E\xCC\x81T\xC3\x89");
    assert_string_equal(got, "\xC3\xA9t\xC3\xA9");
    free(got);
    ms_tokenizer_free(t);
    /* DeepSeek's own sequence */
    got = pieces(ds, "Hello world 12345 \xE4\xB8\xAD\xE6\x96\x87!\n\n  x");
    assert_string_equal(got, "Hello| world| |123|45| |\xE4\xB8\xAD\xE6\x96\x87|!\n\n| | x");
    free(got);
}

/* SentencePiece-style BPE: Metaspace, byte_fallback, Replace/ByteFallback/Fuse/Strip decoder. */
static void test_sentencepiece_style(void **state)
{
    (void)state;
    ms_tokenizer *t = load_json(
        "tok_sp",
        "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true}, {\"id\": 1, \"content\": \"<s>\", "
        "\"special\": true}],"
        "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\xE2\x96\x81\"},"
        " {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xE2\x96\x81\"}]},"
        "\"pre_tokenizer\": null,"
        "\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": "
        "\"\xE2\x96\x81\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", "
        "\"content\": \" \", \"start\": 1, \"stop\": 0}]},"
        "\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": true, \"fuse_unk\": true, "
        "\"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"<0xC3>\": 2, \"<0xA9>\": 3, \"\xE2\x96\x81\": 4, \"h\": 5, \"i\": 6, "
        "\"\xE2\x96\x81h\": 7, \"\xE2\x96\x81hi\": 8},"
        "\"merges\": [[\"\xE2\x96\x81\", \"h\"], [\"\xE2\x96\x81h\", \"i\"]]}}");
    assert_non_null(t);
    ms_err err = {0};
    int32_t *ids;
    size_t n;
    assert_int_equal(ms_tokenizer_encode(t, "hi hi\xC3\xA9", 7, 0, &ids, &n, &err), 0);
    int32_t want[] = {8, 8, 2, 3};
    assert_int_equal(n, 4);
    assert_memory_equal(ids, want, sizeof want);
    char *back;
    size_t bl;
    assert_int_equal(ms_tokenizer_decode(t, ids, n, 0, &back, &bl, &err), 0);
    assert_string_equal(back, "hi hi\xC3\xA9");
    free(back);
    free(ids);
    ms_tokenizer_free(t);
}

/* ---- synthetic tokenizer ------------------------------------------------------------------ */

static void test_synth_tokenizer(void **state)
{
    (void)state;
    const int sizes[] = {512, 1000, 32000, 129280};
    const char *text = "The quick brown fox jumps over the lazy dog. Hello, world! 12345 "
                       "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80\n";
    for (size_t k = 0; k < MS_ARRAY_LEN(sizes); k++) {
        int V = sizes[k];
        char *dir = mst_tmpdir("tok_synth");
        ms_err err = {0};
        assert_int_equal(ms_synth_tokenizer_write(dir, V, 42, &err), 0);
        ms_tokenizer *t;
        assert_int_equal(ms_tokenizer_load(dir, &t, &err), 0);
        assert_int_equal(ms_tokenizer_vocab_size(t), V);
        for (int32_t id = 0; id < V; id++) assert_non_null(ms_tokenizer_token_str(t, id, NULL)); /* no holes */
        assert_int_equal(ms_tokenizer_bos_id(t), 0);
        assert_int_equal(ms_tokenizer_eos_id(t), 1);
        assert_int_equal(ms_tokenizer_token_id(t, DS_USER, strlen(DS_USER)), V - 2);
        assert_int_equal(ms_tokenizer_token_id(t, DS_ASSISTANT, strlen(DS_ASSISTANT)), V - 1);
        assert_true(ms_tokenizer_is_stop(t, 1));
        /* common words are single tokens */
        assert_true(ms_tokenizer_token_id(t, "\xC4\xA0the", 5) >= 0);
        int32_t *ids;
        size_t n;
        assert_int_equal(ms_tokenizer_encode(t, " the", 4, 0, &ids, &n, &err), 0);
        assert_int_equal(n, 1);
        free(ids);
        assert_int_equal(ms_tokenizer_encode(t, text, strlen(text), 0, &ids, &n, &err), 0);
        assert_true(n < strlen(text)); /* merges apply */
        for (size_t i = 0; i < n; i++) assert_true(ids[i] >= 0 && ids[i] < V);
        char *back;
        size_t bl;
        assert_int_equal(ms_tokenizer_decode(t, ids, n, 0, &back, &bl, &err), 0);
        assert_string_equal(back, text);
        free(back);
        free(ids);
        /* special tokens in text */
        const char *chat = DS_BOS DS_USER "hello" DS_ASSISTANT;
        assert_int_equal(ms_tokenizer_encode(t, chat, strlen(chat), 0, &ids, &n, &err), 0);
        assert_int_equal(ids[0], 0);
        assert_int_equal(ids[1], V - 2);
        assert_int_equal(ids[n - 1], V - 1);
        free(ids);
        ms_tokenizer_free(t);
        /* deterministic per seed */
        if (V <= 32000) {
            char *a = mst_fmt("%s/tokenizer.json", dir);
            char *x = mst_slurp(a, NULL);
            char *dir2 = mst_tmpdir("tok_synth2");
            assert_int_equal(ms_synth_tokenizer_write(dir2, V, 42, &err), 0);
            char *b = mst_fmt("%s/tokenizer.json", dir2);
            char *y = mst_slurp(b, NULL);
            assert_string_equal(x, y);
            free(y);
            assert_int_equal(ms_synth_tokenizer_write(dir2, V, 43, &err), 0);
            y = mst_slurp(b, NULL);
            if (V > 2000) assert_true(strcmp(x, y) != 0);
            free(x);
            free(y);
            free(a);
            free(b);
            free(dir2);
        }
        free(dir);
    }
    ms_err err = {0};
    assert_true(ms_synth_tokenizer_write(MS_TMP_DIR, 100, 1, &err) < 0);
    assert_non_null(strstr(err.msg, "vocab_size"));
}

/* A 1 MB varied text: encode + decode round trip, with a loose time guard against
 * quadratic behaviour (figures are reported by the docs, not asserted). */
static void test_large_text(void **state)
{
    (void)state;
    size_t cap = 1 << 20;
    char *txt = malloc(cap + 64);
    size_t n = 0;
    uint64_t s = 12345;
    const char *words[] = {"the", "tokenizer", "Привет", "数据", "emoji😀", "12345", "  ", "\n", "(x)", "don't", "naïve",
                           "état", "über", "カタカナ", "—", "\t", "a_b", "foo.bar", "http://x.y/z", "!!!"};
    while (n < cap) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const char *w = words[(s >> 33) % MS_ARRAY_LEN(words)];
        size_t l = strlen(w);
        memcpy(txt + n, w, l);
        n += l;
        txt[n++] = (s >> 40) % 3 ? ' ' : (char)('a' + (s >> 45) % 26);
    }
    ms_err err = {0};
    int32_t *ids;
    size_t ni;
    double t0 = ms_now_s();
    assert_int_equal(ms_tokenizer_encode(ds, txt, n, 0, &ids, &ni, &err), 0);
    double t1 = ms_now_s();
    fprintf(stderr, "encode %zu bytes -> %zu ids: %.3f s\n", n, ni, t1 - t0);
    assert_true(t1 - t0 < 30.0);
    char *back;
    size_t bl;
    assert_int_equal(ms_tokenizer_decode(ds, ids, ni, 0, &back, &bl, &err), 0);
    assert_true(bl == n && memcmp(back, txt, n) == 0);
    free(back);
    free(ids);
    free(txt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deepseek_cases),      cmocka_unit_test(test_deepseek_divergent),
        cmocka_unit_test(test_deepseek_specials),   cmocka_unit_test(test_special_tokens_in_text),
        cmocka_unit_test(test_streaming_decoder),   cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_split_behaviors),     cmocka_unit_test(test_regex_deep_match),     cmocka_unit_test(test_pretokenizer_variants),
        cmocka_unit_test(test_sentencepiece_style), cmocka_unit_test(test_synth_tokenizer),
        cmocka_unit_test(test_large_text),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

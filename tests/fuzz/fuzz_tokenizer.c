/* fuzz_tokenizer.c - libFuzzer target: tokenizer.json through
 * ms_tokenizer_load (alone in its directory, so no tokenizer_config.json), then
 * encode fixed texts with every flag combination, decode the ids back (with and
 * without special tokens), stream them through the detokenizer, pretokenize,
 * and query every id's strings. Seeds: the synth tokenizer (byte-level BPE), a
 * SentencePiece-style (Metaspace, byte_fallback) tokenizer and small variants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "tokenizer.h"

static const char *const texts[] = {
    "Hello, world! The quick brown fox jumps over 12345 lazy dogs.",
    "  leading spaces\tand\ttabs\n\nnew lines\r\n",
    "<|begin_of_sentence|><｜User｜>hi<｜Assistant｜></s><s>[INST]",
    "Привет мир, こんにちは世界, 你好 🙂👍🏽 café naïve Å",
    "x",
    "",
};

static void use_ids(const ms_tokenizer *tok, const int32_t *ids, size_t n)
{
    for (unsigned flags = 0; flags <= MS_TOK_SKIP_SPECIAL; flags++) {
        char *text = NULL;
        size_t len = 0;
        ms_err err = {0};
        if (ms_tokenizer_decode(tok, ids, n, flags, &text, &len, &err) == 0) {
            if (strlen(text) > len) abort(); /* len counts every byte */
        } else if (!err.msg[0]) {
            abort();
        }
        free(text);
    }
    ms_detok *d = NULL;
    ms_err err = {0};
    if (ms_detok_new(tok, 0, &d, &err) == 0) {
        for (size_t i = 0; i < n; i++) {
            const char *t;
            size_t l;
            ms_err e2 = {0};
            if (ms_detok_feed(d, ids[i], &t, &l, &e2) < 0) break;
        }
        const char *t;
        size_t l;
        ms_detok_flush(d, &t, &l);
        ms_detok_free(d);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char *path;
    if (!path) path = fz_path("tokenizer.json");
    fz_write_file(path, data, size, NULL, 0, 0);
    ms_tokenizer *tok = NULL;
    ms_err err = {0};
    if (ms_tokenizer_load(path, &tok, &err) < 0) {
        if (!err.msg[0] || tok) abort();
        return 0;
    }
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        const char *s = texts[i];
        for (unsigned flags = 0; flags <= (MS_TOK_ADD_BOS | MS_TOK_NO_SPECIAL); flags++) {
            int32_t *ids = NULL;
            size_t n = 0;
            ms_err e2 = {0};
            if (ms_tokenizer_encode(tok, s, strlen(s), flags, &ids, &n, &e2) == 0) {
                for (size_t j = 0; j < n; j++)
                    if (ids[j] < 0 || ids[j] >= ms_tokenizer_vocab_size(tok)) abort(); /* ids are in range */
                use_ids(tok, ids, n);
            } else if (!e2.msg[0]) {
                abort();
            }
            free(ids);
        }
        char *buf = NULL;
        size_t *lens = NULL, n = 0;
        ms_err e3 = {0};
        (void)ms_tokenizer_pretokenize(tok, s, strlen(s), &buf, &lens, &n, &e3);
        free(buf);
        free(lens);
    }
    /* invalid UTF-8 must be refused, not crash */
    {
        static const char bad[] = "ok \xff\xfe \xc3";
        int32_t *ids = NULL;
        size_t n = 0;
        ms_err e4 = {0};
        if (ms_tokenizer_encode(tok, bad, sizeof bad - 1, 0, &ids, &n, &e4) == 0) abort();
        free(ids);
    }
    int32_t v = ms_tokenizer_vocab_size(tok);
    for (int32_t id = 0; id < v && id < 4096; id++) {
        size_t l;
        const char *s = ms_tokenizer_token_str(tok, id, &l);
        if (s && ms_tokenizer_token_id(tok, s, l) < 0) abort(); /* a defined string maps back to an id */
        (void)ms_tokenizer_token_bytes(tok, id, &l);
        (void)ms_tokenizer_is_special(tok, id);
        (void)ms_tokenizer_is_added(tok, id);
        (void)ms_tokenizer_is_stop(tok, id);
    }
    int32_t probe[] = {-1, v, v + 1, INT32_MAX, 0};
    use_ids(tok, probe, sizeof probe / sizeof probe[0]);
    for (size_t i = 0; i < 4; i++) { /* ids outside [0, vocab) are errors, never read */
        char *text = NULL;
        size_t len;
        ms_err e5 = {0};
        if (ms_tokenizer_decode(tok, &probe[i], 1, 0, &text, &len, &e5) == 0 || !e5.msg[0]) abort();
        free(text);
    }
    size_t ns;
    (void)ms_tokenizer_stop_ids(tok, &ns);
    (void)ms_tokenizer_bos_id(tok);
    (void)ms_tokenizer_eos_id(tok);
    (void)ms_tokenizer_bos_str(tok);
    (void)ms_tokenizer_eos_str(tok);
    (void)ms_tokenizer_add_bos(tok);
    ms_tokenizer_free(tok);
    return 0;
}

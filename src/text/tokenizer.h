/* tokenizer.h - Hugging Face tokenizer.json (BPE) loader, encoder and decoder.
 *
 * Implements the `tokenizers` pipeline generically from the file, not hard-coded to
 * one model: added tokens (special or not, lstrip/rstrip/single_word/normalized) are
 * matched first, leftmost-longest; the remaining text goes through the normalizer
 * (NFC/NFD/NFKC/NFKD via utf8proc, Lowercase, Replace, Prepend, Sequence), the
 * pre-tokenizer (Sequence, Split with Regex (PCRE2, \s = Unicode White_Space) or
 * String patterns and every behavior + invert, ByteLevel incl. the GPT-2 regex and
 * add_prefix_space, Digits, Metaspace, Whitespace, WhitespaceSplit, Punctuation), then
 * the BPE model (byte-level or character-level with byte_fallback, ignore_merges),
 * and ids are decoded by the ByteLevel decoder or the SentencePiece-style chain
 * (Replace, ByteFallback, Fuse, Strip, Metaspace). Anything else is refused at load
 * with an error naming the field.
 *
 * Special ids (BOS, EOS, stop set) come from tokenizer_config.json, config.json and
 * generation_config.json next to tokenizer.json. A loaded tokenizer is immutable:
 * every function taking a const ms_tokenizer * is safe to call from many threads.
 *
 *     ms_tokenizer *tok;
 *     if (ms_tokenizer_load("model_dir", &tok, &err) < 0) ...
 *     int32_t *ids; size_t n;
 *     ms_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n, &err);
 */
#ifndef MS_TOKENIZER_H
#define MS_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct ms_tokenizer ms_tokenizer;

/* Encode flags. */
enum {
    MS_TOK_ADD_BOS = 1u << 0,    /* prepend BOS unless the text already starts with it (mlx-lm rule) */
    MS_TOK_NO_SPECIAL = 1u << 1, /* special added tokens in the text are plain text (untrusted input) */
};
/* Decode flags. */
enum {
    MS_TOK_SKIP_SPECIAL = 1u << 0, /* drop special tokens from the output */
};

/* Load a tokenizer. path is a tokenizer.json file or a model directory holding one;
 * tokenizer_config.json, config.json and generation_config.json are read from the
 * same directory when present. Errors name the file and the JSON field at fault. */
int ms_tokenizer_load(const char *path, ms_tokenizer **out, ms_err *err);
void ms_tokenizer_free(ms_tokenizer *tok);

/* Encode text[0..len) (UTF-8; may contain U+0000) into a malloc'd id array (*ids,
 * *n_ids; *ids may be NULL when *n_ids is 0). No BOS unless MS_TOK_ADD_BOS.
 * Invalid UTF-8 is an error naming the byte offset. Returns 0 or -errno. */
int ms_tokenizer_encode(const ms_tokenizer *tok, const char *text, size_t len, unsigned flags, int32_t **ids,
                        size_t *n_ids, ms_err *err);

/* Normalize + pre-tokenize text (no added-token split, no BPE): the pieces BPE would
 * see, concatenated in *buf (malloc'd) with their lengths in *lens (malloc'd, *n
 * entries). For tests and debugging. */
int ms_tokenizer_pretokenize(const ms_tokenizer *tok, const char *text, size_t len, char **buf, size_t **lens,
                             size_t *n, ms_err *err);

/* Decode ids into a malloc'd NUL-terminated string (*len excludes the NUL). Bytes
 * that do not form valid UTF-8 become U+FFFD (like tokenizers' decode). Unknown ids
 * are an error. */
int ms_tokenizer_decode(const ms_tokenizer *tok, const int32_t *ids, size_t n_ids, unsigned flags, char **text,
                        size_t *len, ms_err *err);

/* Number of ids (highest defined id + 1). Ids below it may be undefined (holes). */
/* GPT-2 byte-level alphabet: the code point byte b is written as (ByteLevel). */
void ms_tokenizer_byte_alphabet(uint32_t b2c[256]);

int32_t ms_tokenizer_vocab_size(const ms_tokenizer *tok);
/* Id of a token by its exact string (added-token content or vocab entry, e.g.
 * "<｜User｜>" or "Ġthe"), -1 if none. */
int32_t ms_tokenizer_token_id(const ms_tokenizer *tok, const char *s, size_t len);
/* The token's string as written in tokenizer.json (NULL for an undefined id); NUL-terminated. */
const char *ms_tokenizer_token_str(const ms_tokenizer *tok, int32_t id, size_t *len);
/* The bytes this token decodes to on its own (NULL for an undefined id); NUL-terminated. */
const char *ms_tokenizer_token_bytes(const ms_tokenizer *tok, int32_t id, size_t *len);
bool ms_tokenizer_is_special(const ms_tokenizer *tok, int32_t id); /* special added token */
bool ms_tokenizer_is_added(const ms_tokenizer *tok, int32_t id);   /* any added token */

/* BOS / EOS ids (-1 when unknown) and the stop set (EOS of tokenizer_config, every
 * eos_token_id of config.json and generation_config.json, deduplicated). The BOS/EOS
 * strings are the literal token texts ("" when unknown); add_bos is
 * tokenizer_config.json's add_bos_token (default false). */
int32_t ms_tokenizer_bos_id(const ms_tokenizer *tok);
int32_t ms_tokenizer_eos_id(const ms_tokenizer *tok);
const char *ms_tokenizer_bos_str(const ms_tokenizer *tok);
const char *ms_tokenizer_eos_str(const ms_tokenizer *tok);
bool ms_tokenizer_add_bos(const ms_tokenizer *tok);
const int32_t *ms_tokenizer_stop_ids(const ms_tokenizer *tok, size_t *n);
bool ms_tokenizer_is_stop(const ms_tokenizer *tok, int32_t id);

/* The directory the tokenizer was loaded from (for chat-template detection). */
const char *ms_tokenizer_dir(const ms_tokenizer *tok);

/* Streaming detokenizer: feed ids one at a time, get only complete UTF-8 text out
 * (a character split across tokens is held back until it is complete; bytes that
 * can no longer become valid UTF-8 are emitted as U+FFFD). */
typedef struct ms_detok ms_detok;
int ms_detok_new(const ms_tokenizer *tok, unsigned flags, ms_detok **out, ms_err *err);
void ms_detok_free(ms_detok *d);
/* Feed one id. *text and *len receive the newly completed text (may be empty); the
 * pointer stays valid until the next call on d. */
int ms_detok_feed(ms_detok *d, int32_t id, const char **text, size_t *len, ms_err *err);
/* End of stream: whatever is held back (an incomplete character) as U+FFFD. */
int ms_detok_flush(ms_detok *d, const char **text, size_t *len);
/* Start a new stream (forget held-back bytes and the leading-space state). */
void ms_detok_reset(ms_detok *d);

#endif

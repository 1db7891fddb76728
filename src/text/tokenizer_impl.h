/* tokenizer_impl.h - the tokenizer's private data and the helpers its three
 * files share: tokenizer_load.c (tokenizer.json -> tables), tokenizer_encode.c
 * (text -> ids: added tokens, normalizers, pre-tokenizers, BPE) and
 * tokenizer.c (small vectors, UTF-8, the GPT-2 byte alphabet, lookups,
 * decoding, accessors). Not part of the public API (tokenizer.h).
 *
 * Design:
 *  - Load: json-c parses tokenizer.json; every id gets an entry (its string and the
 *    bytes it decodes to, precomputed). Strings live in one arena; a string->id hash
 *    (open addressing over ids) serves the vocab, the added tokens live in two byte
 *    tries (matched on raw text / on normalized text). Merges become a hash from the
 *    id pair (a << 32 | b) to (rank, merged id), so BPE never touches strings.
 *  - Encode: validate UTF-8; split on added tokens (leftmost-longest, trie walk);
 *    normalize each remaining segment; run the pre-tokenizer steps over a list of
 *    pieces (offset, length) into one growable work buffer (Split steps only narrow
 *    pieces, steps that add bytes append to the buffer); BPE each piece with a
 *    binary heap keyed (rank, position) exactly like tokenizers' merge_all; a
 *    per-call piece -> ids cache makes repeated words free.
 *  - Regexes are PCRE2 (UTF + UCP, JIT when available). HF uses Oniguruma, whose \s
 *    is Unicode White_Space; PCRE2's differs (U+180E), so \s / \S are rewritten to
 *    an explicit White_Space class before compiling.
 *  - Byte-level models run BPE on bytes: byte b starts as the id of the GPT-2
 *    alphabet character for b; decoding maps each token's characters back.
 */
#ifndef MS_TOKENIZER_IMPL_H
#define MS_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

#define TK_MAX_FILE (512u << 20)

typedef struct {
    char *v;
    size_t n, cap;
} tk_buf;

typedef struct {
    int32_t *v;
    size_t n, cap;
} tk_ids;

typedef struct {
    uint32_t off, len;
    bool first; /* starts at offset 0 of the whole input (Metaspace prepend_scheme "first") */
} tk_piece;

typedef struct {
    tk_piece *v;
    size_t n, cap;
} tk_pieces;

typedef struct {
    uint32_t str_off, str_len; /* token string (added content wins) in strs */
    uint32_t dec_off, dec_len; /* decoded bytes in decs */
    uint8_t flags;
} tk_entry;

typedef struct {
    uint32_t off, len; /* content in strs */
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} tk_added;

/* byte trie over added-token contents */
typedef struct {
    int32_t child, sibling; /* first child / next sibling node, -1 none */
    int32_t added;          /* index into added[] if a token ends here, else -1 */
    uint8_t byte;
} tk_trie_node;

typedef struct {
    tk_trie_node *v;
    size_t n, cap;
} tk_trie;

typedef struct {
    int kind;
    char *a, *b; /* Replace: pattern, content; Prepend: prefix */
    size_t alen, blen;
    pcre2_code *re; /* Replace with a Regex pattern */
    bool left, right;
} tk_norm;

typedef struct {
    int kind;
    pcre2_code *re;  /* regex pattern (PT_SPLIT) */
    char *lit;       /* literal String pattern (PT_SPLIT when re == NULL) */
    size_t litlen;
    int behavior;
    bool invert;
    /* Metaspace */
    char repl[8];
    int repl_len;
    int prepend; /* 0 never, 1 first, 2 always */
    bool split;
} tk_pretok;

enum { TE_DEFINED = 1, TE_ADDED = 2, TE_SPECIAL = 4 };

enum { NZ_NFC, NZ_NFD, NZ_NFKC, NZ_NFKD, NZ_LOWER, NZ_REPLACE, NZ_PREPEND, NZ_STRIP, NZ_BYTELEVEL };

enum { PT_SPLIT, PT_PREFIX_SPACE, PT_METASPACE };

enum { BH_REMOVED, BH_ISOLATED, BH_MERGED_PREV, BH_MERGED_NEXT, BH_CONTIGUOUS };

struct ms_tokenizer {
    char dir[4096];
    char path[4096];
    tk_entry *ent; /* [n_ids] */
    int32_t n_ids;
    tk_buf strs, decs;
    /* vocab string -> id (model.vocab only) */
    int32_t *vmap;
    size_t vmap_mask;
    /* merges: (a<<32|b) -> rank, id */
    uint64_t *mkey;
    int32_t *mrank, *mid;
    size_t mmask;
    size_t n_merges;
    tk_added *added;
    size_t n_added;
    tk_trie trie_raw, trie_norm;
    tk_norm *norm;
    size_t n_norm;
    tk_pretok *pre;
    size_t n_pre;
    /* model */
    bool byte_level;       /* initial symbols are bytes through the GPT-2 alphabet */
    int32_t byte_id[256];  /* byte-level: id of each byte's alphabet char; char-level: id of <0xXX> */
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;
    char *cont_prefix, *eow_suffix;
    /* decoder */
    int strip_start; /* stream-level: spaces to strip at the start of the output */
    /* specials */
    int32_t bos_id, eos_id;
    char bos_str[256], eos_str[256];
    bool add_bos;
    int32_t *stop;
    size_t n_stop;
};

/* code point -> byte (or -1) for the inverse alphabet: code points 0..323 */
#define TK_ALPHA_MAX 324

/* ---- small vectors (tokenizer.c): -ENOMEM on failure ---- */
int tk_buf_reserve(tk_buf *b, size_t extra);
int tk_buf_put(tk_buf *b, const void *p, size_t n);      /* keeps v NUL-terminated */
int tk_ids_push(tk_ids *a, int32_t id);
int tk_pieces_push(tk_pieces *a, uint32_t off, uint32_t len, bool first); /* drops empty pieces */

/* ---- UTF-8 (tokenizer.c) ---- */
/* Length of the valid UTF-8 sequence at s[0..n) (1..4), 0 if invalid, -k (k>0) if
 * the k available bytes are a valid but incomplete prefix. */
int tk_utf8_seq(const unsigned char *s, size_t n);
/* Offset of the first invalid byte, or n if s is valid UTF-8. */
size_t tk_utf8_check(const char *s, size_t n);
uint32_t tk_utf8_decode1(const unsigned char *s, int len);
/* Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s use). */
bool tk_is_white_space(uint32_t c);
/* Append s[0..n) to out, replacing ill-formed sequences by U+FFFD (maximal-subpart
 * rule, as Rust's String::from_utf8_lossy); with hold, an incomplete sequence at
 * the end is held back (its length in *hold). */
int tk_utf8_lossy(tk_buf *out, const char *s, size_t n, size_t *hold);

/* ---- lookups (tokenizer.c) ---- */
uint64_t tk_hash_bytes(const void *p, size_t n);
static inline uint64_t tk_hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static inline const char *tk_ent_str(const ms_tokenizer *t, int32_t id) { return t->strs.v + t->ent[id].str_off; }
/* vocab string -> id, or -1 */
int32_t tk_vmap_find(const ms_tokenizer *t, const char *s, size_t n);
/* merge of (a, b): its rank and the merged id */
bool tk_merge_find(const ms_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *nid);

#endif

/* tokenizer.c - Hugging Face tokenizer.json (BPE) pipeline: see tokenizer.h.
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
#include "tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <json-c/json.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "json.h"
#include "util.h"

#define TK_MAX_FILE (512u << 20)

/* ---- small vectors --------------------------------------------------------------- */

typedef struct {
    char *v;
    size_t n, cap;
} tk_buf;

static int buf_reserve(tk_buf *b, size_t extra)
{
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->v, cap);
    if (!p) return -ENOMEM;
    b->v = p;
    b->cap = cap;
    return 0;
}

static int buf_put(tk_buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n + 1) < 0) return -ENOMEM;
    if (n) memcpy(b->v + b->n, p, n);
    b->n += n;
    b->v[b->n] = 0;
    return 0;
}

typedef struct {
    int32_t *v;
    size_t n, cap;
} tk_ids;

static int ids_push(tk_ids *a, int32_t id)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) return -ENOMEM;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

typedef struct {
    uint32_t off, len;
    bool first; /* starts at offset 0 of the whole input (Metaspace prepend_scheme "first") */
} tk_piece;

typedef struct {
    tk_piece *v;
    size_t n, cap;
} tk_pieces;

static int pieces_push(tk_pieces *a, uint32_t off, uint32_t len, bool first)
{
    if (len == 0) return 0; /* tokenizers drops empty splits */
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        tk_piece *p = realloc(a->v, cap * sizeof *p);
        if (!p) return -ENOMEM;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = (tk_piece){off, len, first};
    return 0;
}

/* ---- UTF-8 ------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), 0 if invalid, -k (k>0) if
 * the k available bytes are a valid but incomplete prefix. */
static int utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return -i;
        unsigned d = s[i];
        if (i == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) return 0;
    }
    return need;
}

/* Offset of the first invalid byte, or n if s is valid UTF-8. */
static size_t utf8_check(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int l = utf8_seq(u + i, n - i);
        if (l <= 0) return i;
        i += (size_t)l;
    }
    return n;
}

static uint32_t utf8_decode1(const unsigned char *s, int len)
{
    switch (len) {
    case 1: return s[0];
    case 2: return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    case 3: return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    default: return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    }
}

/* Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s use). */
static bool is_white_space(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Append s[0..n) to out, replacing ill-formed sequences by U+FFFD (maximal-subpart
 * rule, as Rust's String::from_utf8_lossy). If hold is non-NULL, a valid but
 * incomplete sequence at the end is not emitted: its length goes to *hold. */
static int utf8_lossy(tk_buf *out, const char *s, size_t n, size_t *hold)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, start = 0;
    if (hold) *hold = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int l = utf8_seq(u + i, n - i);
        if (l > 0) {
            i += (size_t)l;
            continue;
        }
        if (l < 0 && hold) { /* incomplete at the end: hold it back */
            if (buf_put(out, s + start, i - start) < 0) return -ENOMEM;
            *hold = n - i;
            return 0;
        }
        if (buf_put(out, s + start, i - start) < 0 || buf_put(out, "\xEF\xBF\xBD", 3) < 0) return -ENOMEM;
        i += l < 0 ? (size_t)(-l) : 1; /* skip the maximal valid prefix (at least one byte) */
        start = i;
    }
    return buf_put(out, s + start, i - start);
}

/* ---- GPT-2 byte <-> unicode alphabet --------------------------------------------- */

void ms_tokenizer_byte_alphabet(uint32_t b2c[256])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        b2c[b] = keep ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

/* code point -> byte (or -1) for the inverse alphabet: code points 0..323 */
#define TK_ALPHA_MAX 324

/* ---- the tokenizer --------------------------------------------------------------- */

enum { TE_DEFINED = 1, TE_ADDED = 2, TE_SPECIAL = 4 };

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

enum { NZ_NFC, NZ_NFD, NZ_NFKC, NZ_NFKD, NZ_LOWER, NZ_REPLACE, NZ_PREPEND, NZ_STRIP, NZ_BYTELEVEL };

typedef struct {
    int kind;
    char *a, *b; /* Replace: pattern, content; Prepend: prefix */
    size_t alen, blen;
    pcre2_code *re; /* Replace with a Regex pattern */
    bool left, right;
} tk_norm;

enum { PT_SPLIT, PT_PREFIX_SPACE, PT_METASPACE };
enum { BH_REMOVED, BH_ISOLATED, BH_MERGED_PREV, BH_MERGED_NEXT, BH_CONTIGUOUS };

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

/* ---- string hashing / maps --------------------------------------------------------- */

static uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static inline uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static const char *ent_str(const ms_tokenizer *t, int32_t id) { return t->strs.v + t->ent[id].str_off; }

static int32_t vmap_find(const ms_tokenizer *t, const char *s, size_t n)
{
    if (!t->vmap) return -1;
    size_t i = hash_bytes(s, n) & t->vmap_mask;
    for (;; i = (i + 1) & t->vmap_mask) {
        int32_t id = t->vmap[i];
        if (id < 0) return -1;
        if (t->ent[id].str_len == n && memcmp(ent_str(t, id), s, n) == 0) return id;
    }
}

static bool merge_find(const ms_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *nid)
{
    if (!t->mkey) return false;
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = hash_u64(k) & t->mmask;
    for (;; i = (i + 1) & t->mmask) {
        if (t->mkey[i] == UINT64_MAX) return false;
        if (t->mkey[i] == k) {
            *rank = t->mrank[i];
            *nid = t->mid[i];
            return true;
        }
    }
}

/* ---- JSON helpers ------------------------------------------------------------------- */

typedef struct {
    const char *file;
    ms_err *err;
} tk_ctx;


static int jbool(tk_ctx *c, json_object *o, const char *key, bool dflt, bool *out, const char *where)
{
    json_object *v = ms_json_get(o, key);
    if (ms_json_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_object_is_type(v, json_type_boolean))
        return ms_errf(c->err, EINVAL, "%s: %s.%s: expected true or false", c->file, where, key);
    *out = json_object_get_boolean(v);
    return 0;
}

static int jstr(tk_ctx *c, json_object *o, const char *key, const char **s, size_t *n, const char *where)
{
    json_object *v = ms_json_get(o, key);
    if (!v || !json_object_is_type(v, json_type_string))
        return ms_errf(c->err, EINVAL, "%s: %s.%s: missing or not a string", c->file, where, key);
    *s = json_object_get_string(v);
    *n = (size_t)json_object_get_string_len(v);
    /* these strings become text (added tokens, Prepend, Replace content) that the
     * regexes later match with PCRE2_NO_UTF_CHECK: ill-formed UTF-8 is refused here */
    size_t bad = utf8_check(*s, *n);
    if (bad < *n)
        return ms_errf(c->err, EILSEQ, "%s: %s.%s: not valid UTF-8 (byte %zu)", c->file, where, key, bad);
    return 0;
}

/* ---- regexes ------------------------------------------------------------------------- */

#define TK_WS_CLASS "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* Rewrite \s and \S (outside classes) and \s (inside classes) to Unicode White_Space. */
static int regex_translate(const char *p, size_t n, tk_buf *o)
{
    bool in_class = false;
    size_t class_start = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            int rc;
            if (d == 's') rc = in_class ? buf_put(o, TK_WS_CLASS, strlen(TK_WS_CLASS)) : buf_put(o, "[" TK_WS_CLASS "]", strlen(TK_WS_CLASS) + 2);
            else if (d == 'S' && !in_class) rc = buf_put(o, "[^" TK_WS_CLASS "]", strlen(TK_WS_CLASS) + 3);
            else rc = buf_put(o, p + i, 2);
            if (rc < 0) return rc;
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            class_start = i + 1;
            if (buf_put(o, p + i, 1) < 0) return -ENOMEM;
            if (i + 1 < n && p[i + 1] == '^') {
                if (buf_put(o, "^", 1) < 0) return -ENOMEM;
                i++;
                class_start = i + 1;
            }
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { /* POSIX [:name:] */
            const char *e = memmem(p + i + 2, n - i - 2, ":]", 2);
            if (e) {
                size_t l = (size_t)(e + 2 - (p + i));
                if (buf_put(o, p + i, l) < 0) return -ENOMEM;
                i += l - 1;
                continue;
            }
        }
        if (in_class && c == ']' && i != class_start) in_class = false;
        if (buf_put(o, p + i, 1) < 0) return -ENOMEM;
    }
    return 0;
}

static int regex_compile(tk_ctx *c, const char *pat, size_t n, pcre2_code **out, const char *where)
{
    tk_buf t = {0};
    if (regex_translate(pat, n, &t) < 0 || buf_put(&t, "", 0) < 0) {
        free(t.v);
        return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
    }
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)t.v, t.n, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    free(t.v);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return ms_errf(c->err, EINVAL, "%s: %s: invalid regex: %s", c->file, where, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: interpreter otherwise */
    *out = re;
    return 0;
}

/* ---- loading: vocab, merges, added tokens ------------------------------------------- */

static int str_add(ms_tokenizer *t, const char *s, size_t n, uint32_t *off)
{
    if (t->strs.n + n + 1 > UINT32_MAX) return -EFBIG;
    *off = (uint32_t)t->strs.n;
    if (buf_put(&t->strs, s, n) < 0) return -ENOMEM;
    t->strs.n++; /* keep the NUL: strings are C strings too */
    return 0;
}

/* n bytes of s, NUL-terminated, in a new allocation (NULL on ENOMEM). */
static char *memdup0(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* Largest token id accepted: real vocabularies stay under 2^18, and the id table
 * is dense (a hostile id of 10^9 must not mean a 20 GB table). */
#define TK_MAX_ID (1 << 24)

static int ensure_ids(ms_tokenizer *t, int64_t id)
{
    if (id < t->n_ids) return 0;
    int32_t n = t->n_ids ? t->n_ids : 1024;
    while (n <= id) n *= 2;
    tk_entry *e = realloc(t->ent, (size_t)n * sizeof *e);
    if (!e) return -ENOMEM;
    memset(e + t->n_ids, 0, (size_t)(n - t->n_ids) * sizeof *e);
    t->ent = e;
    t->n_ids = n;
    return 0;
}

static int load_vocab(ms_tokenizer *t, tk_ctx *c, json_object *model, int32_t *max_id)
{
    json_object *vocab = ms_json_get(model, "vocab");
    if (!vocab || !json_object_is_type(vocab, json_type_object))
        return ms_errf(c->err, EINVAL, "%s: model.vocab: missing or not an object", c->file);
    size_t nv = (size_t)json_object_object_length(vocab);
    size_t cap = 1;
    while (cap < nv * 2 + 16) cap <<= 1;
    t->vmap = malloc(cap * sizeof *t->vmap);
    if (!t->vmap) return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
    memset(t->vmap, 0xff, cap * sizeof *t->vmap);
    t->vmap_mask = cap - 1;
    json_object_object_foreach(vocab, key, val)
    {
        if (!json_object_is_type(val, json_type_int))
            return ms_errf(c->err, EINVAL, "%s: model.vocab[\"%.64s\"]: id is not an integer", c->file, key);
        int64_t id = json_object_get_int64(val);
        if (id < 0 || id >= TK_MAX_ID)
            return ms_errf(c->err, EINVAL, "%s: model.vocab[\"%.64s\"]: id %lld out of range (0 .. %d)", c->file, key,
                           (long long)id, TK_MAX_ID - 1);
        if (ensure_ids(t, id) < 0) return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
        size_t kl = strlen(key);
        if (t->ent[id].flags & TE_DEFINED)
            return ms_errf(c->err, EINVAL, "%s: model.vocab[\"%.64s\"]: id %lld is used twice (also \"%.64s\")", c->file,
                           key, (long long)id, ent_str(t, (int32_t)id));
        uint32_t off;
        if (str_add(t, key, kl, &off) < 0) return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
        t->ent[id].str_off = off;
        t->ent[id].str_len = (uint32_t)kl;
        t->ent[id].flags = TE_DEFINED;
        size_t i = hash_bytes(key, kl) & t->vmap_mask;
        while (t->vmap[i] >= 0) i = (i + 1) & t->vmap_mask;
        t->vmap[i] = (int32_t)id;
        if (id > *max_id) *max_id = (int32_t)id;
    }
    return 0;
}

static int load_merges(ms_tokenizer *t, tk_ctx *c, json_object *model)
{
    json_object *merges = ms_json_get(model, "merges");
    if (ms_json_null(merges)) return 0;
    if (!json_object_is_type(merges, json_type_array))
        return ms_errf(c->err, EINVAL, "%s: model.merges: not an array", c->file);
    size_t nm = json_object_array_length(merges);
    size_t cap = 1;
    while (cap < nm * 2 + 16) cap <<= 1;
    t->mkey = malloc(cap * sizeof *t->mkey);
    t->mrank = malloc(cap * sizeof *t->mrank);
    t->mid = malloc(cap * sizeof *t->mid);
    if (!t->mkey || !t->mrank || !t->mid) return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
    memset(t->mkey, 0xff, cap * sizeof *t->mkey);
    t->mmask = cap - 1;
    tk_buf cat = {0};
    int rc = 0;
    for (size_t r = 0; r < nm; r++) {
        json_object *m = json_object_array_get_idx(merges, r);
        const char *a, *b;
        size_t al, bl;
        if (m && json_object_is_type(m, json_type_string)) {
            const char *s = json_object_get_string(m);
            size_t sl = (size_t)json_object_get_string_len(m);
            const char *sp = memchr(s, ' ', sl);
            if (!sp) {
                rc = ms_errf(c->err, EINVAL, "%s: model.merges[%zu]: \"%.64s\" is not two tokens separated by a space",
                             c->file, r, s);
                break;
            }
            a = s;
            al = (size_t)(sp - s);
            b = sp + 1;
            bl = sl - al - 1;
        } else if (m && json_object_is_type(m, json_type_array) && json_object_array_length(m) == 2 &&
                   json_object_is_type(json_object_array_get_idx(m, 0), json_type_string) &&
                   json_object_is_type(json_object_array_get_idx(m, 1), json_type_string)) {
            json_object *x = json_object_array_get_idx(m, 0), *y = json_object_array_get_idx(m, 1);
            a = json_object_get_string(x);
            al = (size_t)json_object_get_string_len(x);
            b = json_object_get_string(y);
            bl = (size_t)json_object_get_string_len(y);
        } else {
            rc = ms_errf(c->err, EINVAL, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", c->file, r);
            break;
        }
        int32_t ia = vmap_find(t, a, al), ib = vmap_find(t, b, bl);
        if (ia < 0 || ib < 0) {
            rc = ms_errf(c->err, EINVAL, "%s: model.merges[%zu]: token \"%.*s\" is not in model.vocab", c->file, r,
                         (int)(ia < 0 ? MS_MIN(al, 64) : MS_MIN(bl, 64)), ia < 0 ? a : b);
            break;
        }
        cat.n = 0;
        if (buf_put(&cat, a, al) < 0 || buf_put(&cat, b, bl) < 0) {
            rc = ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
            break;
        }
        int32_t nid = vmap_find(t, cat.v, cat.n);
        if (nid < 0) {
            rc = ms_errf(c->err, EINVAL, "%s: model.merges[%zu]: merged token \"%.*s\" is not in model.vocab", c->file, r,
                         (int)MS_MIN(cat.n, 64), cat.v);
            break;
        }
        uint64_t k = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
        size_t i = hash_u64(k) & t->mmask;
        while (t->mkey[i] != UINT64_MAX && t->mkey[i] != k) i = (i + 1) & t->mmask;
        if (t->mkey[i] == k) continue; /* duplicate merge: the first (lowest rank) wins */
        t->mkey[i] = k;
        t->mrank[i] = (int32_t)r;
        t->mid[i] = nid;
        t->n_merges++;
    }
    free(cat.v);
    return rc;
}

static int trie_add(tk_trie *tr, const char *s, size_t n, int32_t added)
{
    if (tr->n == 0) {
        tr->cap = 64;
        tr->v = malloc(tr->cap * sizeof *tr->v);
        if (!tr->v) return -ENOMEM;
        tr->v[0] = (tk_trie_node){-1, -1, -1, 0};
        tr->n = 1;
    }
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t ch = tr->v[node].child;
        while (ch >= 0 && tr->v[ch].byte != b) ch = tr->v[ch].sibling;
        if (ch < 0) {
            if (tr->n == tr->cap) {
                tr->cap *= 2;
                tk_trie_node *p = realloc(tr->v, tr->cap * sizeof *p);
                if (!p) return -ENOMEM;
                tr->v = p;
            }
            ch = (int32_t)tr->n++;
            tr->v[ch] = (tk_trie_node){-1, tr->v[node].child, -1, b};
            tr->v[node].child = ch;
        }
        node = ch;
    }
    if (tr->v[node].added < 0) tr->v[node].added = added; /* first definition wins */
    return 0;
}

static int load_added(ms_tokenizer *t, tk_ctx *c, json_object *root, int32_t *max_id)
{
    json_object *arr = ms_json_get(root, "added_tokens");
    if (ms_json_null(arr)) return 0;
    if (!json_object_is_type(arr, json_type_array))
        return ms_errf(c->err, EINVAL, "%s: added_tokens: not an array", c->file);
    size_t n = json_object_array_length(arr);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(arr, i);
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if (!o || !json_object_is_type(o, json_type_object))
            return ms_errf(c->err, EINVAL, "%s: %s: not an object", c->file, where);
        json_object *jid = ms_json_get(o, "id");
        if (!jid || !json_object_is_type(jid, json_type_int))
            return ms_errf(c->err, EINVAL, "%s: %s.id: missing or not an integer", c->file, where);
        int64_t id = json_object_get_int64(jid);
        if (id < 0 || id >= TK_MAX_ID)
            return ms_errf(c->err, EINVAL, "%s: %s.id: %lld out of range (0 .. %d)", c->file, where, (long long)id,
                           TK_MAX_ID - 1);
        const char *s;
        size_t sl;
        int rc = jstr(c, o, "content", &s, &sl, where);
        if (rc < 0) return rc;
        if (sl == 0) return ms_errf(c->err, EINVAL, "%s: %s.content: empty", c->file, where);
        tk_added *a = &t->added[t->n_added];
        if ((rc = jbool(c, o, "special", false, &a->special, where)) < 0 ||
            (rc = jbool(c, o, "lstrip", false, &a->lstrip, where)) < 0 ||
            (rc = jbool(c, o, "rstrip", false, &a->rstrip, where)) < 0 ||
            (rc = jbool(c, o, "single_word", false, &a->single_word, where)) < 0 ||
            (rc = jbool(c, o, "normalized", !a->special, &a->normalized, where)) < 0)
            return rc;
        if (ensure_ids(t, id) < 0 || str_add(t, s, sl, &a->off) < 0)
            return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
        a->len = (uint32_t)sl;
        a->id = (int32_t)id;
        tk_entry *e = &t->ent[id];
        e->str_off = a->off; /* the added content is the token's string */
        e->str_len = a->len;
        e->flags |= TE_DEFINED | TE_ADDED | (a->special ? TE_SPECIAL : 0);
        if (id > *max_id) *max_id = (int32_t)id;
        if (trie_add(a->normalized ? &t->trie_norm : &t->trie_raw, s, sl, (int32_t)t->n_added) < 0)
            return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
        t->n_added++;
    }
    return 0;
}

/* ---- loading: normalizer, pre-tokenizer, decoder ----------------------------------- */

static int pattern_of(tk_ctx *c, json_object *o, const char *where, pcre2_code **re, char **lit, size_t *litlen)
{
    json_object *p = ms_json_get(o, "pattern");
    char w[160];
    snprintf(w, sizeof w, "%s.pattern", where);
    if (!p || !json_object_is_type(p, json_type_object))
        return ms_errf(c->err, EINVAL, "%s: %s: missing or not an object {\"Regex\": ...} / {\"String\": ...}", c->file, w);
    json_object *rx = ms_json_get(p, "Regex"), *st = ms_json_get(p, "String");
    if (rx && json_object_is_type(rx, json_type_string)) {
        snprintf(w, sizeof w, "%s.pattern.Regex", where);
        return regex_compile(c, json_object_get_string(rx), (size_t)json_object_get_string_len(rx), re, w);
    }
    if (st && json_object_is_type(st, json_type_string)) {
        /* jstr refuses ill-formed UTF-8: a literal with a partial character
         * would split text inside a character */
        const char *sv;
        int rc = jstr(c, p, "String", &sv, litlen, w);
        if (rc < 0) return rc;
        *lit = malloc(*litlen + 1);
        if (!*lit) return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
        memcpy(*lit, sv, *litlen + 1);
        return 0;
    }
    return ms_errf(c->err, EINVAL, "%s: %s: expected a \"Regex\" or \"String\" string", c->file, w);
}

/* Free what a normalizer step owns (on error paths before it is pushed). */
static void norm_clear(tk_norm *n)
{
    free(n->a);
    free(n->b);
    pcre2_code_free(n->re);
}

/* Append n to t->norm; n's allocations move to t, or are freed on failure. */
static int push_norm(ms_tokenizer *t, tk_ctx *c, tk_norm n)
{
    tk_norm *p = realloc(t->norm, (t->n_norm + 1) * sizeof *p);
    if (!p) {
        norm_clear(&n);
        return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
    }
    t->norm = p;
    t->norm[t->n_norm++] = n;
    return 0;
}

static int load_normalizer(ms_tokenizer *t, tk_ctx *c, json_object *o, const char *where)
{
    if (ms_json_null(o)) return 0;
    const char *type;
    size_t tl;
    int rc = jstr(c, o, "type", &type, &tl, where);
    if (rc < 0) return rc;
    if (!strcmp(type, "Sequence")) {
        json_object *arr = ms_json_get(o, "normalizers");
        if (!arr || !json_object_is_type(arr, json_type_array))
            return ms_errf(c->err, EINVAL, "%s: %s.normalizers: missing or not an array", c->file, where);
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            char w[128];
            snprintf(w, sizeof w, "%s.normalizers[%zu]", where, i);
            if ((rc = load_normalizer(t, c, json_object_array_get_idx(arr, i), w)) < 0) return rc;
        }
        return 0;
    }
    tk_norm n = {0};
    if (!strcmp(type, "NFC")) n.kind = NZ_NFC;
    else if (!strcmp(type, "NFD")) n.kind = NZ_NFD;
    else if (!strcmp(type, "NFKC")) n.kind = NZ_NFKC;
    else if (!strcmp(type, "NFKD")) n.kind = NZ_NFKD;
    else if (!strcmp(type, "Lowercase")) n.kind = NZ_LOWER;
    else if (!strcmp(type, "ByteLevel")) {
        t->byte_level = true; /* same as a trailing ByteLevel pre-tokenizer without regex */
        return 0;
    } else if (!strcmp(type, "Replace")) {
        n.kind = NZ_REPLACE;
        if ((rc = pattern_of(c, o, where, &n.re, &n.a, &n.alen)) < 0) return rc;
        const char *s;
        size_t sl;
        if ((rc = jstr(c, o, "content", &s, &sl, where)) < 0) {
            norm_clear(&n); /* the pattern is ours until pushed */
            return rc;
        }
        n.b = malloc(sl + 1);
        if (!n.b) {
            norm_clear(&n);
            return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
        }
        memcpy(n.b, s, sl + 1);
        n.blen = sl;
        if (!n.re && n.alen == 0) {
            norm_clear(&n);
            return ms_errf(c->err, EINVAL, "%s: %s.pattern: empty String", c->file, where);
        }
    } else if (!strcmp(type, "Prepend")) {
        n.kind = NZ_PREPEND;
        const char *s;
        size_t sl;
        if ((rc = jstr(c, o, "prepend", &s, &sl, where)) < 0) return rc;
        n.a = malloc(sl + 1);
        if (!n.a) return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
        memcpy(n.a, s, sl + 1);
        n.alen = sl;
    } else if (!strcmp(type, "Strip")) {
        n.kind = NZ_STRIP;
        if ((rc = jbool(c, o, "strip_left", true, &n.left, where)) < 0 ||
            (rc = jbool(c, o, "strip_right", true, &n.right, where)) < 0)
            return rc;
    } else
        return ms_errf(c->err, ENOTSUP, "%s: %s.type: normalizer \"%s\" is not supported (supported: Sequence, NFC, NFD, "
                       "NFKC, NFKD, Lowercase, Replace, Prepend, Strip, ByteLevel)", c->file, where, type);
    return push_norm(t, c, n);
}

/* Append p to t->pre; p's regex / literal move to t, or are freed on failure. */
static int push_pre(ms_tokenizer *t, tk_ctx *c, tk_pretok p)
{
    tk_pretok *v = realloc(t->pre, (t->n_pre + 1) * sizeof *v);
    if (!v) {
        pcre2_code_free(p.re);
        free(p.lit);
        return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
    }
    t->pre = v;
    t->pre[t->n_pre++] = p;
    return 0;
}

static int split_regex_step(ms_tokenizer *t, tk_ctx *c, const char *re, int behavior, bool invert, const char *where)
{
    tk_pretok p = {.kind = PT_SPLIT, .behavior = behavior, .invert = invert};
    int rc = regex_compile(c, re, strlen(re), &p.re, where);
    if (rc < 0) return rc;
    return push_pre(t, c, p);
}

static int parse_behavior(tk_ctx *c, json_object *o, const char *where, int dflt, int *out)
{
    json_object *b = ms_json_get(o, "behavior");
    if (ms_json_null(b)) {
        *out = dflt;
        return 0;
    }
    const char *s = json_object_is_type(b, json_type_string) ? json_object_get_string(b) : "";
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return 0;
        }
    return ms_errf(c->err, EINVAL, "%s: %s.behavior: \"%s\" is not one of Removed, Isolated, MergedWithPrevious, "
                   "MergedWithNext, Contiguous", c->file, where, s);
}

static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int load_pretok(ms_tokenizer *t, tk_ctx *c, json_object *o, const char *where)
{
    if (ms_json_null(o)) return 0;
    if (t->byte_level)
        return ms_errf(c->err, ENOTSUP, "%s: %s: pre-tokenizers after ByteLevel are not supported", c->file, where);
    const char *type;
    size_t tl;
    int rc = jstr(c, o, "type", &type, &tl, where);
    if (rc < 0) return rc;
    if (!strcmp(type, "Sequence")) {
        json_object *arr = ms_json_get(o, "pretokenizers");
        if (!arr || !json_object_is_type(arr, json_type_array))
            return ms_errf(c->err, EINVAL, "%s: %s.pretokenizers: missing or not an array", c->file, where);
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            char w[128];
            snprintf(w, sizeof w, "%s.pretokenizers[%zu]", where, i);
            if ((rc = load_pretok(t, c, json_object_array_get_idx(arr, i), w)) < 0) return rc;
        }
        return 0;
    }
    if (!strcmp(type, "Split")) {
        tk_pretok p = {.kind = PT_SPLIT};
        if ((rc = parse_behavior(c, o, where, -1, &p.behavior)) < 0) return rc;
        if (p.behavior < 0) return ms_errf(c->err, EINVAL, "%s: %s.behavior: missing", c->file, where);
        if ((rc = jbool(c, o, "invert", false, &p.invert, where)) < 0) return rc;
        if ((rc = pattern_of(c, o, where, &p.re, &p.lit, &p.litlen)) < 0) return rc;
        return push_pre(t, c, p);
    }
    if (!strcmp(type, "ByteLevel")) {
        bool aps, use_re;
        if ((rc = jbool(c, o, "add_prefix_space", true, &aps, where)) < 0 ||
            (rc = jbool(c, o, "use_regex", true, &use_re, where)) < 0)
            return rc;
        if (aps && (rc = push_pre(t, c, (tk_pretok){.kind = PT_PREFIX_SPACE})) < 0) return rc;
        if (use_re && (rc = split_regex_step(t, c, GPT2_RE, BH_ISOLATED, false, where)) < 0) return rc;
        t->byte_level = true;
        return 0;
    }
    if (!strcmp(type, "Digits")) {
        bool ind;
        if ((rc = jbool(c, o, "individual_digits", false, &ind, where)) < 0) return rc;
        return split_regex_step(t, c, "\\p{N}", ind ? BH_ISOLATED : BH_CONTIGUOUS, false, where);
    }
    if (!strcmp(type, "Whitespace")) return split_regex_step(t, c, "\\w+|[^\\w\\s]+", BH_REMOVED, true, where);
    if (!strcmp(type, "WhitespaceSplit")) return split_regex_step(t, c, "\\s", BH_REMOVED, false, where);
    if (!strcmp(type, "Punctuation")) {
        int bh;
        if ((rc = parse_behavior(c, o, where, BH_ISOLATED, &bh)) < 0) return rc;
        return split_regex_step(t, c, "[\\p{P}\\x{21}-\\x{2F}\\x{3A}-\\x{40}\\x{5B}-\\x{60}\\x{7B}-\\x{7E}]", bh, false, where);
    }
    if (!strcmp(type, "Metaspace")) {
        tk_pretok p = {.kind = PT_METASPACE, .prepend = 2, .split = true};
        const char *r = "\xE2\x96\x81";
        size_t rl = 3;
        json_object *jr = ms_json_get(o, "replacement");
        if (jr && json_object_is_type(jr, json_type_string)) {
            r = json_object_get_string(jr);
            rl = (size_t)json_object_get_string_len(jr);
        }
        if (rl == 0 || rl >= sizeof p.repl || utf8_seq((const unsigned char *)r, rl) != (int)rl)
            return ms_errf(c->err, EINVAL, "%s: %s.replacement: must be one character", c->file, where);
        memcpy(p.repl, r, rl);
        p.repl_len = (int)rl;
        json_object *ps = ms_json_get(o, "prepend_scheme");
        if (ps && json_object_is_type(ps, json_type_string)) {
            const char *s = json_object_get_string(ps);
            if (!strcmp(s, "always")) p.prepend = 2;
            else if (!strcmp(s, "first")) p.prepend = 1;
            else if (!strcmp(s, "never")) p.prepend = 0;
            else return ms_errf(c->err, EINVAL, "%s: %s.prepend_scheme: \"%s\" is not always/first/never", c->file, where, s);
        } else {
            bool aps;
            if ((rc = jbool(c, o, "add_prefix_space", true, &aps, where)) < 0) return rc;
            p.prepend = aps ? 2 : 0;
        }
        if ((rc = jbool(c, o, "split", true, &p.split, where)) < 0) return rc;
        return push_pre(t, c, p);
    }
    return ms_errf(c->err, ENOTSUP, "%s: %s.type: pre-tokenizer \"%s\" is not supported (supported: Sequence, Split, "
                   "ByteLevel, Digits, Metaspace, Whitespace, WhitespaceSplit, Punctuation)", c->file, where, type);
}

/* Decoder description, applied per token at load (precomputed bytes) + stream strip. */
typedef struct {
    bool byte_level;
    bool byte_fallback;
    struct {
        char *pat, *content;
        size_t plen, clen;
    } repl[8];
    int n_repl;
    int strip_start;
} tk_dec;

static int load_decoder(tk_ctx *c, json_object *o, const char *where, tk_dec *d)
{
    if (ms_json_null(o)) return 0;
    const char *type;
    size_t tl;
    int rc = jstr(c, o, "type", &type, &tl, where);
    if (rc < 0) return rc;
    if (!strcmp(type, "Sequence")) {
        json_object *arr = ms_json_get(o, "decoders");
        if (!arr || !json_object_is_type(arr, json_type_array))
            return ms_errf(c->err, EINVAL, "%s: %s.decoders: missing or not an array", c->file, where);
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            char w[128];
            snprintf(w, sizeof w, "%s.decoders[%zu]", where, i);
            if ((rc = load_decoder(c, json_object_array_get_idx(arr, i), w, d)) < 0) return rc;
        }
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) d->byte_level = true;
    else if (!strcmp(type, "ByteFallback")) d->byte_fallback = true;
    else if (!strcmp(type, "Fuse")) { /* concatenation is what we do anyway */
    } else if (!strcmp(type, "Replace") || !strcmp(type, "Metaspace")) {
        if (d->n_repl == 8) return ms_errf(c->err, ENOTSUP, "%s: %s: too many Replace decoders", c->file, where);
        const char *p, *s;
        size_t pl, sl;
        if (!strcmp(type, "Replace")) {
            json_object *pat = ms_json_get(o, "pattern");
            json_object *st = ms_json_get(pat, "String");
            if (!st || !json_object_is_type(st, json_type_string))
                return ms_errf(c->err, ENOTSUP, "%s: %s.pattern: only {\"String\": ...} patterns are supported in decoders",
                               c->file, where);
            p = json_object_get_string(st);
            pl = (size_t)json_object_get_string_len(st);
            if ((rc = jstr(c, o, "content", &s, &sl, where)) < 0) return rc;
        } else {
            p = "\xE2\x96\x81";
            pl = 3;
            json_object *jr = ms_json_get(o, "replacement");
            if (jr && json_object_is_type(jr, json_type_string)) {
                p = json_object_get_string(jr);
                pl = (size_t)json_object_get_string_len(jr);
            }
            s = " ";
            sl = 1;
            json_object *ps = ms_json_get(o, "prepend_scheme");
            bool strip = true;
            if (ps && json_object_is_type(ps, json_type_string)) strip = strcmp(json_object_get_string(ps), "never") != 0;
            else if ((rc = jbool(c, o, "add_prefix_space", true, &strip, where)) < 0) return rc;
            if (strip) d->strip_start = 1;
        }
        if (pl == 0) return ms_errf(c->err, EINVAL, "%s: %s.pattern: empty", c->file, where);
        /* JSON strings may hold U+0000: copy by length (strndup would stop at it
         * while plen/clen keep the JSON length) */
        d->repl[d->n_repl].pat = memdup0(p, pl);
        d->repl[d->n_repl].content = memdup0(s, sl);
        d->repl[d->n_repl].plen = pl;
        d->repl[d->n_repl].clen = sl;
        d->n_repl++; /* counted before the check so the caller frees a half-made entry */
        if (!d->repl[d->n_repl - 1].pat || !d->repl[d->n_repl - 1].content)
            return ms_errf(c->err, ENOMEM, "out of memory");
    } else if (!strcmp(type, "Strip")) {
        const char *s;
        size_t sl;
        if ((rc = jstr(c, o, "content", &s, &sl, where)) < 0) return rc;
        json_object *st = ms_json_get(o, "start"), *sp = ms_json_get(o, "stop");
        int start = st && json_object_is_type(st, json_type_int) ? json_object_get_int(st) : 0;
        int stop = sp && json_object_is_type(sp, json_type_int) ? json_object_get_int(sp) : 0;
        if (sl != 1 || s[0] != ' ' || stop != 0 || start < 0 || start > 16)
            return ms_errf(c->err, ENOTSUP, "%s: %s: only Strip of leading spaces is supported", c->file, where);
        d->strip_start = start;
    } else
        return ms_errf(c->err, ENOTSUP, "%s: %s.type: decoder \"%s\" is not supported (supported: ByteLevel, Sequence, "
                       "Replace, ByteFallback, Fuse, Strip, Metaspace)", c->file, where, type);
    return 0;
}

/* "<0xAB>" -> 0xAB, else -1 */
static int byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char h = s[i];
        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'A' && h <= 'F' ? h - 'A' + 10 : h >= 'a' && h <= 'f' ? h - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Decoded bytes of every id, appended to t->decs. */
static int build_decoded(ms_tokenizer *t, const tk_dec *d)
{
    uint32_t b2c[256];
    int16_t c2b[TK_ALPHA_MAX];
    ms_tokenizer_byte_alphabet(b2c);
    for (int i = 0; i < TK_ALPHA_MAX; i++) c2b[i] = -1;
    for (int b = 0; b < 256; b++) c2b[b2c[b]] = (int16_t)b;
    tk_buf tmp = {0};
    for (int32_t id = 0; id < t->n_ids; id++) {
        tk_entry *e = &t->ent[id];
        if (!(e->flags & TE_DEFINED)) continue;
        const char *s = ent_str(t, id);
        size_t n = e->str_len;
        tmp.n = 0;
        bool done = false;
        if (d->byte_level) { /* all chars in the alphabet -> bytes, else the raw string */
            const unsigned char *u = (const unsigned char *)s;
            size_t i = 0;
            bool ok = true;
            while (i < n) {
                int l = utf8_seq(u + i, n - i);
                if (l <= 0) {
                    ok = false;
                    break;
                }
                uint32_t cp = utf8_decode1(u + i, l);
                if (cp >= TK_ALPHA_MAX || c2b[cp] < 0) {
                    ok = false;
                    break;
                }
                char byte = (char)c2b[cp];
                if (buf_put(&tmp, &byte, 1) < 0) goto oom;
                i += (size_t)l;
            }
            if (ok) done = true;
            else tmp.n = 0;
        }
        if (!done && d->byte_fallback && !(e->flags & TE_ADDED)) {
            int b = byte_token(s, n);
            if (b >= 0) {
                char byte = (char)b;
                if (buf_put(&tmp, &byte, 1) < 0) goto oom;
                done = true;
            }
        }
        if (!done) {
            if (buf_put(&tmp, s, n) < 0) goto oom;
            for (int r = 0; r < d->n_repl; r++) { /* Replace: literal substring substitution */
                tk_buf o = {0};
                size_t i = 0;
                while (i < tmp.n) {
                    const char *hit = memmem(tmp.v + i, tmp.n - i, d->repl[r].pat, d->repl[r].plen);
                    size_t upto = hit ? (size_t)(hit - tmp.v) : tmp.n;
                    if (buf_put(&o, tmp.v + i, upto - i) < 0) goto oom2;
                    if (!hit) break;
                    if (buf_put(&o, d->repl[r].content, d->repl[r].clen) < 0) goto oom2;
                    i = upto + d->repl[r].plen;
                }
                if (buf_put(&o, "", 0) < 0) goto oom2;
                free(tmp.v);
                tmp = o;
                continue;
            oom2:
                free(o.v);
                goto oom;
            }
        }
        if (t->decs.n + tmp.n > UINT32_MAX) goto oom;
        e->dec_off = (uint32_t)t->decs.n;
        e->dec_len = (uint32_t)tmp.n;
        if (buf_put(&t->decs, tmp.v ? tmp.v : "", tmp.n) < 0) goto oom;
        t->decs.n++; /* keep the NUL: the bytes are a C string too */
    }
    free(tmp.v);
    return 0;
oom:
    free(tmp.v);
    return -ENOMEM;
}

/* ---- loading: special ids from the config files ------------------------------------ */

static int add_stop(ms_tokenizer *t, int32_t id)
{
    for (size_t i = 0; i < t->n_stop; i++)
        if (t->stop[i] == id) return 0;
    int32_t *p = realloc(t->stop, (t->n_stop + 1) * sizeof *p);
    if (!p) return -ENOMEM;
    t->stop = p;
    t->stop[t->n_stop++] = id;
    return 0;
}

/* bos_token / eos_token: a string or {"content": ...}; returns the id or -1. */
static int token_field(ms_tokenizer *t, tk_ctx *c, json_object *cfg, const char *key, char *str, size_t strcap,
                       int32_t *id)
{
    *id = -1;
    json_object *v = ms_json_get(cfg, key);
    if (ms_json_null(v)) return 0;
    if (json_object_is_type(v, json_type_object)) v = ms_json_get(v, "content");
    if (!v || !json_object_is_type(v, json_type_string))
        return ms_errf(c->err, EINVAL, "%s: %s: expected a string or an object with \"content\"", c->file, key);
    size_t n = (size_t)json_object_get_string_len(v);
    if (n >= strcap) return ms_errf(c->err, EINVAL, "%s: %s: token string too long", c->file, key);
    memcpy(str, json_object_get_string(v), n + 1);
    *id = ms_tokenizer_token_id(t, str, n);
    return 0;
}

/* "eos_token_id": int or [int...]; calls add_stop for each and returns the first. */
static int id_field(ms_tokenizer *t, tk_ctx *c, json_object *cfg, const char *key, bool stop, int32_t *first)
{
    *first = -1;
    json_object *v = ms_json_get(cfg, key);
    if (ms_json_null(v)) return 0;
    size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 1;
    for (size_t i = 0; i < n; i++) {
        json_object *x = json_object_is_type(v, json_type_array) ? json_object_array_get_idx(v, i) : v;
        if (!x || !json_object_is_type(x, json_type_int))
            return ms_errf(c->err, EINVAL, "%s: %s: expected an integer or a list of integers", c->file, key);
        int64_t id = json_object_get_int64(x);
        if (id < 0 || id >= t->n_ids || !(t->ent[id].flags & TE_DEFINED))
            return ms_errf(c->err, EINVAL, "%s: %s: id %lld is not a token of the tokenizer", c->file, key, (long long)id);
        if (*first < 0) *first = (int32_t)id;
        if (stop && add_stop(t, (int32_t)id) < 0) return ms_errf(c->err, ENOMEM, "out of memory");
    }
    return 0;
}

static int load_specials(ms_tokenizer *t, ms_err *err)
{
    char p[4200];
    json_object *tc = NULL, *cfg = NULL, *gen = NULL;
    int rc;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", t->dir);
    if ((rc = ms_json_load(p, TK_MAX_FILE, true, &tc, err)) < 0) return rc;
    tk_ctx c = {p, err};
    int32_t bos = -1, eos = -1, x;
    if (tc) {
        if ((rc = token_field(t, &c, tc, "bos_token", t->bos_str, sizeof t->bos_str, &bos)) < 0) goto out;
        if ((rc = token_field(t, &c, tc, "eos_token", t->eos_str, sizeof t->eos_str, &eos)) < 0) goto out;
        if ((rc = jbool(&c, tc, "add_bos_token", false, &t->add_bos, "tokenizer_config")) < 0) goto out;
        if (eos >= 0 && (rc = add_stop(t, eos)) < 0) goto out;
    }
    char p2[4200];
    snprintf(p2, sizeof p2, "%s/generation_config.json", t->dir);
    if ((rc = ms_json_load(p2, TK_MAX_FILE, true, &gen, err)) < 0) goto out;
    if (gen) {
        tk_ctx g = {p2, err};
        if ((rc = id_field(t, &g, gen, "bos_token_id", false, &x)) < 0) goto out;
        if (bos < 0) bos = x;
        if ((rc = id_field(t, &g, gen, "eos_token_id", true, &x)) < 0) goto out;
        if (eos < 0) eos = x;
    }
    char p3[4200];
    snprintf(p3, sizeof p3, "%s/config.json", t->dir);
    if ((rc = ms_json_load(p3, TK_MAX_FILE, true, &cfg, err)) < 0) goto out;
    if (cfg) {
        tk_ctx g = {p3, err};
        if ((rc = id_field(t, &g, cfg, "bos_token_id", false, &x)) < 0) goto out;
        if (bos < 0) bos = x;
        if ((rc = id_field(t, &g, cfg, "eos_token_id", true, &x)) < 0) goto out;
        if (eos < 0) eos = x;
    }
    t->bos_id = bos;
    t->eos_id = eos;
    if (eos >= 0 && (rc = add_stop(t, eos)) < 0) goto out;
    if (bos >= 0 && !t->bos_str[0] && t->ent[bos].str_len < sizeof t->bos_str)
        memcpy(t->bos_str, ent_str(t, bos), t->ent[bos].str_len + 1);
    if (eos >= 0 && !t->eos_str[0] && t->ent[eos].str_len < sizeof t->eos_str)
        memcpy(t->eos_str, ent_str(t, eos), t->ent[eos].str_len + 1);
    rc = 0;
out:
    if (rc == -ENOMEM) ms_errf(err, ENOMEM, "out of memory");
    json_object_put(tc);
    json_object_put(cfg);
    json_object_put(gen);
    return rc;
}

/* ---- load ----------------------------------------------------------------------------- */

static int load_model(ms_tokenizer *t, tk_ctx *c, json_object *root)
{
    json_object *model = ms_json_get(root, "model");
    if (!model || !json_object_is_type(model, json_type_object))
        return ms_errf(c->err, EINVAL, "%s: model: missing or not an object", c->file);
    json_object *jt = ms_json_get(model, "type");
    const char *type = jt && json_object_is_type(jt, json_type_string) ? json_object_get_string(jt) : NULL;
    if (!type) { /* older files omit the type: BPE is recognised by its merges */
        if (!ms_json_get(model, "merges")) return ms_errf(c->err, EINVAL, "%s: model.type: missing", c->file);
        type = "BPE";
    }
    if (strcmp(type, "BPE") != 0)
        return ms_errf(c->err, ENOTSUP, "%s: model.type: \"%s\" is not supported (only BPE)", c->file, type);
    json_object *dp = ms_json_get(model, "dropout");
    if (!ms_json_null(dp) && json_object_get_double(dp) > 0)
        return ms_errf(c->err, ENOTSUP, "%s: model.dropout: BPE dropout is not supported", c->file);
    int rc;
    int32_t max_id = -1;
    if ((rc = load_vocab(t, c, model, &max_id)) < 0) return rc;
    if ((rc = load_merges(t, c, model)) < 0) return rc;
    if ((rc = jbool(c, model, "byte_fallback", false, &t->byte_fallback, "model")) < 0 ||
        (rc = jbool(c, model, "fuse_unk", false, &t->fuse_unk, "model")) < 0 ||
        (rc = jbool(c, model, "ignore_merges", false, &t->ignore_merges, "model")) < 0)
        return rc;
    t->unk_id = -1;
    json_object *unk = ms_json_get(model, "unk_token");
    if (!ms_json_null(unk)) {
        if (!json_object_is_type(unk, json_type_string))
            return ms_errf(c->err, EINVAL, "%s: model.unk_token: not a string", c->file);
        t->unk_id = vmap_find(t, json_object_get_string(unk), (size_t)json_object_get_string_len(unk));
        if (t->unk_id < 0)
            return ms_errf(c->err, EINVAL, "%s: model.unk_token: \"%.64s\" is not in model.vocab", c->file,
                           json_object_get_string(unk));
    }
    const char *keys[2] = {"continuing_subword_prefix", "end_of_word_suffix"};
    char **dst[2] = {&t->cont_prefix, &t->eow_suffix};
    for (int i = 0; i < 2; i++) {
        json_object *v = ms_json_get(model, keys[i]);
        if (ms_json_null(v)) continue;
        if (!json_object_is_type(v, json_type_string))
            return ms_errf(c->err, EINVAL, "%s: model.%s: not a string", c->file, keys[i]);
        if (json_object_get_string_len(v) == 0) continue;
        *dst[i] = strdup(json_object_get_string(v));
        if (!*dst[i]) return ms_errf(c->err, ENOMEM, "out of memory");
    }
    if ((rc = load_added(t, c, root, &max_id)) < 0) return rc;
    if (max_id < 0) return ms_errf(c->err, EINVAL, "%s: model.vocab: empty", c->file);
    t->n_ids = max_id + 1; /* shrink the logical size (the array may be larger) */
    return 0;
}

int ms_tokenizer_load(const char *path, ms_tokenizer **out, ms_err *err)
{
    *out = NULL;
    if (!path || !*path) return ms_errf(err, EINVAL, "tokenizer: empty path");
    ms_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return ms_errf(err, ENOMEM, "out of memory");
    t->bos_id = t->eos_id = t->unk_id = -1;
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        free(t);
        return ms_errf(err, e, "%s: %s", path, strerror(e));
    }
    int rc;
    if (S_ISDIR(st.st_mode)) {
        if (strlen(path) >= sizeof t->dir) {
            free(t);
            return ms_errf(err, ENAMETOOLONG, "%s: path too long", path);
        }
        snprintf(t->dir, sizeof t->dir, "%s", path);
        if ((rc = ms_path_join(t->path, sizeof t->path, path, "tokenizer.json", err)) < 0) {
            free(t);
            return rc;
        }
    } else {
        if (strlen(path) >= sizeof t->path) {
            free(t);
            return ms_errf(err, ENAMETOOLONG, "%s: path too long", path);
        }
        snprintf(t->path, sizeof t->path, "%s", path);
        const char *sl = strrchr(path, '/');
        if (sl) snprintf(t->dir, sizeof t->dir, "%.*s", (int)(sl == path ? 1 : sl - path), path);
        else snprintf(t->dir, sizeof t->dir, ".");
    }
    json_object *root = NULL;
    tk_ctx c = {t->path, err};
    tk_dec dec = {0};
    if ((rc = ms_json_load(t->path, TK_MAX_FILE, false, &root, err)) < 0) goto fail;
    if (!json_object_is_type(root, json_type_object)) {
        rc = ms_errf(err, EINVAL, "%s: top level is not a JSON object", t->path);
        goto fail;
    }
    if ((rc = load_model(t, &c, root)) < 0) goto fail;
    if ((rc = load_normalizer(t, &c, ms_json_get(root, "normalizer"), "normalizer")) < 0) goto fail;
    if ((rc = load_pretok(t, &c, ms_json_get(root, "pre_tokenizer"), "pre_tokenizer")) < 0) goto fail;
    if ((rc = load_decoder(&c, ms_json_get(root, "decoder"), "decoder", &dec)) < 0) goto fail;
    t->strip_start = dec.strip_start;
    if (build_decoded(t, &dec) < 0) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto fail;
    }
    /* initial symbols */
    uint32_t b2c[256];
    ms_tokenizer_byte_alphabet(b2c);
    for (int b = 0; b < 256; b++) {
        char s[8];
        if (t->byte_level) {
            int l = ms_utf8_put(s, b2c[b]);
            t->byte_id[b] = vmap_find(t, s, (size_t)l);
        } else {
            snprintf(s, sizeof s, "<0x%02X>", b);
            t->byte_id[b] = vmap_find(t, s, 6);
        }
    }
    json_object_put(root);
    root = NULL;
    if ((rc = load_specials(t, err)) < 0) goto fail;
    for (int i = 0; i < dec.n_repl; i++) {
        free(dec.repl[i].pat);
        free(dec.repl[i].content);
    }
    *out = t;
    return 0;
fail:
    for (int i = 0; i < dec.n_repl; i++) {
        free(dec.repl[i].pat);
        free(dec.repl[i].content);
    }
    json_object_put(root);
    ms_tokenizer_free(t);
    return rc;
}

void ms_tokenizer_free(ms_tokenizer *t)
{
    if (!t) return;
    free(t->ent);
    free(t->strs.v);
    free(t->decs.v);
    free(t->vmap);
    free(t->mkey);
    free(t->mrank);
    free(t->mid);
    free(t->added);
    free(t->trie_raw.v);
    free(t->trie_norm.v);
    for (size_t i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
        pcre2_code_free(t->norm[i].re);
    }
    free(t->norm);
    for (size_t i = 0; i < t->n_pre; i++) {
        pcre2_code_free(t->pre[i].re);
        free(t->pre[i].lit);
    }
    free(t->pre);
    free(t->cont_prefix);
    free(t->eow_suffix);
    free(t->stop);
    free(t);
}

/* ---- encode ----------------------------------------------------------------------------- */

/* per-call state */
typedef struct {
    const ms_tokenizer *t;
    ms_err *err;
    unsigned flags;
    tk_ids *out;
    tk_buf wb;               /* work buffer: pieces point into it */
    tk_pieces pa, pb;        /* piece lists (ping-pong) */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    /* BPE scratch */
    struct tk_sym {
        int32_t id, prev, next;
        bool dead;
    } *sym;
    size_t sym_cap;
    struct tk_heap {
        int32_t rank, pos, nid;
    } *heap;
    size_t heap_n, heap_cap;
    tk_buf tmp;
    /* piece -> ids cache */
    struct tk_centry {
        uint32_t key_off, key_len, ids_off, ids_n;
    } *cache;
    size_t cache_mask, cache_n;
    tk_buf ckeys;
    tk_ids cids;
} tk_enc;

static bool heap_less(const struct tk_heap *a, const struct tk_heap *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int heap_push(tk_enc *E, int32_t rank, int32_t pos, int32_t nid)
{
    if (E->heap_n == E->heap_cap) {
        size_t cap = E->heap_cap ? E->heap_cap * 2 : 64;
        struct tk_heap *h = realloc(E->heap, cap * sizeof *h);
        if (!h) return -ENOMEM;
        E->heap = h;
        E->heap_cap = cap;
    }
    size_t i = E->heap_n++;
    struct tk_heap x = {rank, pos, nid};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&x, &E->heap[p])) break;
        E->heap[i] = E->heap[p];
        i = p;
    }
    E->heap[i] = x;
    return 0;
}

static struct tk_heap heap_pop(tk_enc *E)
{
    struct tk_heap top = E->heap[0], x = E->heap[--E->heap_n];
    size_t i = 0, n = E->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct tk_heap *best = &x;
        if (l < n && heap_less(&E->heap[l], best)) {
            m = l;
            best = &E->heap[l];
        }
        if (r < n && heap_less(&E->heap[r], best)) m = r;
        if (m == i) break;
        E->heap[i] = E->heap[m];
        i = m;
    }
    if (n) E->heap[i] = x;
    return top;
}

static int sym_reserve(tk_enc *E, size_t n)
{
    if (n <= E->sym_cap) return 0;
    size_t cap = E->sym_cap ? E->sym_cap : 64;
    while (cap < n) cap *= 2;
    struct tk_sym *s = realloc(E->sym, cap * sizeof *s);
    if (!s) return -ENOMEM;
    E->sym = s;
    E->sym_cap = cap;
    return 0;
}

/* Initial symbols of a piece into E->sym; returns the count or -errno. */
static long initial_symbols(tk_enc *E, const char *s, size_t n)
{
    const ms_tokenizer *t = E->t;
    if (sym_reserve(E, n + 1) < 0) return -ENOMEM;
    size_t k = 0;
    if (t->byte_level) {
        for (size_t i = 0; i < n; i++) {
            int32_t id = t->byte_id[(unsigned char)s[i]];
            if (id < 0) id = t->unk_id;
            if (id < 0) continue; /* tokenizers drops what it cannot represent */
            E->sym[k++] = (struct tk_sym){id, 0, 0, false};
        }
        return (long)k;
    }
    bool last_unk = false;
    for (size_t i = 0; i < n;) {
        int l = utf8_seq((const unsigned char *)s + i, n - i);
        if (l <= 0) l = 1;
        tk_buf *b = &E->tmp;
        b->n = 0;
        if (i > 0 && t->cont_prefix && buf_put(b, t->cont_prefix, strlen(t->cont_prefix)) < 0) return -ENOMEM;
        if (buf_put(b, s + i, (size_t)l) < 0) return -ENOMEM;
        if (i + (size_t)l == n && t->eow_suffix && buf_put(b, t->eow_suffix, strlen(t->eow_suffix)) < 0) return -ENOMEM;
        int32_t id = vmap_find(t, b->v, b->n);
        if (id >= 0) {
            E->sym[k++] = (struct tk_sym){id, 0, 0, false};
            last_unk = false;
        } else if (t->byte_fallback) {
            bool all = true;
            for (int j = 0; j < l; j++)
                if (t->byte_id[(unsigned char)s[i + j]] < 0) all = false;
            if (all) {
                if (sym_reserve(E, k + (size_t)l + (n - i)) < 0) return -ENOMEM;
                for (int j = 0; j < l; j++) E->sym[k++] = (struct tk_sym){t->byte_id[(unsigned char)s[i + j]], 0, 0, false};
                last_unk = false;
            } else if (t->unk_id >= 0 && !(t->fuse_unk && last_unk)) {
                E->sym[k++] = (struct tk_sym){t->unk_id, 0, 0, false};
                last_unk = true;
            }
        } else if (t->unk_id >= 0 && !(t->fuse_unk && last_unk)) {
            E->sym[k++] = (struct tk_sym){t->unk_id, 0, 0, false};
            last_unk = true;
        }
        i += (size_t)l;
    }
    return (long)k;
}

/* BPE one piece, appending ids to out. */
static int bpe_piece(tk_enc *E, const char *s, size_t n, tk_ids *out)
{
    const ms_tokenizer *t = E->t;
    if (t->ignore_merges) {
        int32_t id;
        if (t->byte_level) {
            uint32_t b2c[256];
            ms_tokenizer_byte_alphabet(b2c);
            E->tmp.n = 0;
            for (size_t i = 0; i < n; i++) {
                char u[4];
                int l = ms_utf8_put(u, b2c[(unsigned char)s[i]]);
                if (buf_put(&E->tmp, u, (size_t)l) < 0) return -ENOMEM;
            }
            id = vmap_find(t, E->tmp.v, E->tmp.n);
        } else
            id = vmap_find(t, s, n);
        if (id >= 0) return ids_push(out, id);
    }
    long k = initial_symbols(E, s, n);
    if (k < 0) return (int)k;
    struct tk_sym *y = E->sym;
    for (long i = 0; i < k; i++) {
        y[i].prev = (int32_t)i - 1;
        y[i].next = i + 1 < k ? (int32_t)i + 1 : -1;
    }
    E->heap_n = 0;
    int32_t rank, nid;
    for (long i = 0; i + 1 < k; i++)
        if (merge_find(t, y[i].id, y[i + 1].id, &rank, &nid) && heap_push(E, rank, (int32_t)i, nid) < 0) return -ENOMEM;
    while (E->heap_n) {
        struct tk_heap h = heap_pop(E);
        struct tk_sym *a = &y[h.pos];
        if (a->dead || a->next < 0) continue;
        struct tk_sym *b = &y[a->next];
        if (!merge_find(t, a->id, b->id, &rank, &nid) || nid != h.nid) continue;
        a->id = nid;
        b->dead = true;
        a->next = b->next;
        if (b->next >= 0) y[b->next].prev = h.pos;
        if (a->prev >= 0 && merge_find(t, y[a->prev].id, a->id, &rank, &nid) && heap_push(E, rank, a->prev, nid) < 0)
            return -ENOMEM;
        if (a->next >= 0 && merge_find(t, a->id, y[a->next].id, &rank, &nid) && heap_push(E, rank, h.pos, nid) < 0)
            return -ENOMEM;
    }
    for (long i = 0; i < k;) {
        if (ids_push(out, y[i].id) < 0) return -ENOMEM;
        if (y[i].next < 0) break;
        i = y[i].next;
    }
    return 0;
}

#define TK_CACHE_MAX_KEY 64
#define TK_CACHE_MAX_N (1u << 16)

/* The cache starts small (most encode calls are a line or a chat turn) and
 * doubles at half load, up to 2 x TK_CACHE_MAX_N slots. */
static int cache_grow(tk_enc *E)
{
    size_t cap = E->cache ? 2 * (E->cache_mask + 1) : 256;
    struct tk_centry *nc = malloc(cap * sizeof *nc);
    if (!nc) return -ENOMEM;
    memset(nc, 0xff, cap * sizeof *nc);
    for (size_t j = 0; E->cache && j <= E->cache_mask; j++) {
        struct tk_centry ce = E->cache[j];
        if (ce.key_off == UINT32_MAX) continue;
        size_t i = hash_bytes(E->ckeys.v + ce.key_off, ce.key_len) & (cap - 1);
        while (nc[i].key_off != UINT32_MAX) i = (i + 1) & (cap - 1);
        nc[i] = ce;
    }
    free(E->cache);
    E->cache = nc;
    E->cache_mask = cap - 1;
    return 0;
}

static int bpe_cached(tk_enc *E, const char *s, size_t n)
{
    if (n > TK_CACHE_MAX_KEY) return bpe_piece(E, s, n, E->out);
    if (!E->cache && cache_grow(E) < 0) return -ENOMEM;
    size_t i = hash_bytes(s, n) & E->cache_mask;
    for (;; i = (i + 1) & E->cache_mask) {
        struct tk_centry *ce = &E->cache[i];
        if (ce->key_off == UINT32_MAX) break;
        if (ce->key_len == n && memcmp(E->ckeys.v + ce->key_off, s, n) == 0) {
            for (uint32_t j = 0; j < ce->ids_n; j++)
                if (ids_push(E->out, E->cids.v[ce->ids_off + j]) < 0) return -ENOMEM;
            return 0;
        }
    }
    size_t before = E->out->n;
    int rc = bpe_piece(E, s, n, E->out);
    if (rc < 0 || E->cache_n >= TK_CACHE_MAX_N || E->ckeys.n + n > UINT32_MAX / 2) return rc;
    struct tk_centry ce = {(uint32_t)E->ckeys.n, (uint32_t)n, (uint32_t)E->cids.n, (uint32_t)(E->out->n - before)};
    if (buf_put(&E->ckeys, s, n) < 0) return -ENOMEM;
    for (size_t j = before; j < E->out->n; j++)
        if (ids_push(&E->cids, E->out->v[j]) < 0) return -ENOMEM;
    if (2 * (E->cache_n + 1) > E->cache_mask + 1) { /* keep the load under 1/2 */
        if (cache_grow(E) < 0) return -ENOMEM;
        i = hash_bytes(s, n) & E->cache_mask;
        while (E->cache[i].key_off != UINT32_MAX) i = (i + 1) & E->cache_mask;
    }
    E->cache[i] = ce;
    E->cache_n++;
    return 0;
}

/* Regex / literal matches of a piece, as HF's find_matches: alternating (match?)
 * segments covering [0, n). Appends (off, len, is_match) triplets to segs. */
typedef struct {
    uint32_t off, len;
    bool match;
} tk_seg;

typedef struct {
    tk_seg *v;
    size_t n, cap;
} tk_segs;

static int segs_push(tk_segs *a, uint32_t off, uint32_t len, bool m)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        tk_seg *p = realloc(a->v, cap * sizeof *p);
        if (!p) return -ENOMEM;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = (tk_seg){off, len, m};
    return 0;
}

static int find_matches(tk_enc *E, const tk_pretok *p, const char *s, size_t n, tk_segs *segs)
{
    segs->n = 0;
    size_t prev = 0, pos = 0;
    if (n == 0) return segs_push(segs, 0, 0, false);
    if (!p->re) {
        if (p->litlen == 0) return segs_push(segs, 0, (uint32_t)n, false);
        while (pos < n) {
            const char *hit = memmem(s + pos, n - pos, p->lit, p->litlen);
            if (!hit) break;
            size_t st = (size_t)(hit - s);
            if (st != prev && segs_push(segs, (uint32_t)prev, (uint32_t)(st - prev), false) < 0) return -ENOMEM;
            if (segs_push(segs, (uint32_t)st, (uint32_t)p->litlen, true) < 0) return -ENOMEM;
            prev = pos = st + p->litlen;
        }
    } else {
        bool have_last = false;
        size_t last_end = 0;
        while (pos <= n) {
            int r = pcre2_match(p->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, E->md, E->mctx);
            if (r == PCRE2_ERROR_JIT_STACKLIMIT && !E->jstack) {
                /* the default 32 KiB JIT stack was not enough: give this call a
                 * growable one (up to 4 MiB) and match again */
                E->jstack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
                if (!E->jstack) return ms_errf(E->err, ENOMEM, "out of memory");
                pcre2_jit_stack_assign(E->mctx, NULL, E->jstack);
                continue;
            }
            if (r == PCRE2_ERROR_NOMATCH) break;
            if (r < 0) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(r, msg, sizeof msg);
                return ms_errf(E->err, EINVAL, "%s: regex match failed: %s", E->t->path, (const char *)msg);
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(E->md);
            size_t st = ov[0], en = ov[1];
            if (st == en && have_last && last_end == en) { /* empty match right after a match: skip a char */
                if (pos >= n) break;
                int l = utf8_seq((const unsigned char *)s + pos, n - pos);
                pos += l > 0 ? (size_t)l : 1;
                continue;
            }
            if (st != prev && segs_push(segs, (uint32_t)prev, (uint32_t)(st - prev), false) < 0) return -ENOMEM;
            if (segs_push(segs, (uint32_t)st, (uint32_t)(en - st), true) < 0) return -ENOMEM;
            prev = en;
            have_last = true;
            last_end = en;
            if (en == st) {
                if (en >= n) break;
                int l = utf8_seq((const unsigned char *)s + en, n - en);
                pos = en + (l > 0 ? (size_t)l : 1);
            } else
                pos = en;
        }
    }
    if (prev != n && segs_push(segs, (uint32_t)prev, (uint32_t)(n - prev), false) < 0) return -ENOMEM;
    return 0;
}

/* Apply a split behavior (tokenizers' SplitDelimiterBehavior) to one piece. */
static int split_piece(tk_enc *E, const tk_pretok *p, const tk_piece *pc, tk_segs *segs, tk_pieces *out)
{
    int rc = find_matches(E, p, E->wb.v + pc->off, pc->len, segs);
    if (rc < 0) return rc;
    if (p->invert)
        for (size_t i = 0; i < segs->n; i++) segs->v[i].match = !segs->v[i].match;
    /* merge into (start, end) ranges per behavior */
    tk_seg *v = segs->v;
    size_t n = segs->n, m = 0;
    switch (p->behavior) {
    case BH_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!v[i].match) v[m++] = v[i];
        break;
    case BH_ISOLATED:
        m = n;
        break;
    case BH_CONTIGUOUS: {
        bool prevm = false;
        for (size_t i = 0; i < n; i++) {
            if (v[i].match == prevm && m > 0) v[m - 1].len = v[i].off + v[i].len - v[m - 1].off;
            else v[m++] = v[i];
            prevm = v[i].match;
        }
        break;
    }
    case BH_MERGED_PREV: {
        bool prevm = false;
        for (size_t i = 0; i < n; i++) {
            bool im = v[i].match;
            if (im && !prevm && m > 0) v[m - 1].len = v[i].off + v[i].len - v[m - 1].off;
            else v[m++] = v[i];
            prevm = im;
        }
        break;
    }
    case BH_MERGED_NEXT: { /* walk backwards, merging a match into the segment after it */
        bool prevm = false;
        size_t w = n; /* write position from the end */
        for (size_t i = n; i-- > 0;) {
            bool im = v[i].match;
            if (im && !prevm && w < n) {
                v[w].len = v[w].off + v[w].len - v[i].off;
                v[w].off = v[i].off;
            } else
                v[--w] = v[i];
            prevm = im;
        }
        for (size_t i = w; i < n; i++) v[m++] = v[i];
        break;
    }
    }
    for (size_t i = 0; i < m; i++)
        if (pieces_push(out, pc->off + v[i].off, v[i].len, pc->first && v[i].off == 0) < 0) return -ENOMEM;
    return 0;
}

/* Growth bound of the normalizer and pre-tokenizer pipelines. Real steps grow a
 * text a little (NFKC at most ~11x in bytes, Metaspace 3x per space, a prefix),
 * but a hostile chain (40 Replace steps "a" -> "aa", 87 Metaspace steps between
 * splits) grows it exponentially or quadratically in the step count: past this
 * bound encoding stops with an error instead of running for hours. */
#define TK_GROWTH_MAX 64
#define TK_GROWTH_SLACK 4096
static inline size_t growth_limit(size_t n) { return TK_GROWTH_MAX * n + TK_GROWTH_SLACK; }

/* Metaspace: replace ' ' by the replacement char, prepend it, optionally split
 * (MergedWithNext on the replacement). New bytes go to the end of wb. */
static int metaspace_piece(tk_enc *E, const tk_pretok *p, const tk_piece *pc, tk_segs *segs, tk_pieces *out)
{
    size_t start = E->wb.n;
    bool pre = p->prepend == 2 || (p->prepend == 1 && pc->first);
    if (pre && !(pc->len >= (uint32_t)p->repl_len && memcmp(E->wb.v + pc->off, p->repl, (size_t)p->repl_len) == 0))
        if (buf_put(&E->wb, p->repl, (size_t)p->repl_len) < 0) return -ENOMEM;
    for (uint32_t i = 0; i < pc->len; i++) {
        /* copy the byte out first: appending may move wb, and the source is in wb */
        char ch = E->wb.v[pc->off + i];
        int rc = ch == ' ' ? buf_put(&E->wb, p->repl, (size_t)p->repl_len) : buf_put(&E->wb, &ch, 1);
        if (rc < 0) return -ENOMEM;
    }
    tk_piece np = {(uint32_t)start, (uint32_t)(E->wb.n - start), pc->first};
    if (!p->split) return pieces_push(out, np.off, np.len, np.first);
    tk_pretok sp = {.kind = PT_SPLIT, .lit = (char *)p->repl, .litlen = (size_t)p->repl_len, .behavior = BH_MERGED_NEXT};
    return split_piece(E, &sp, &np, segs, out);
}

/* Pre-tokenize wb[off, off+len) into E->pa. */
static int pretokenize_into(tk_enc *E, uint32_t off, uint32_t len, bool first)
{
    const ms_tokenizer *t = E->t;
    E->pa.n = 0;
    int rc = pieces_push(&E->pa, off, len, first);
    if (rc < 0) return rc;
    tk_segs segs = {0};
    const size_t wb0 = E->wb.n, limit = growth_limit(len);
    for (size_t k = 0; k < t->n_pre && rc == 0; k++) {
        const tk_pretok *p = &t->pre[k];
        E->pb.n = 0;
        for (size_t i = 0; i < E->pa.n && rc == 0; i++) {
            if (E->wb.n - wb0 > limit) {
                free(segs.v);
                return ms_errf(E->err, E2BIG, "%s: pre_tokenizer step %zu makes a %u-byte piece of text longer than %dx its "
                               "size: refusing this pre_tokenizer chain", t->path, k + 1, len, TK_GROWTH_MAX);
            }
            tk_piece pc = E->pa.v[i];
            if (p->kind == PT_SPLIT) rc = split_piece(E, p, &pc, &segs, &E->pb);
            else if (p->kind == PT_METASPACE) rc = metaspace_piece(E, p, &pc, &segs, &E->pb);
            else { /* PT_PREFIX_SPACE */
                if (E->wb.v[pc.off] == ' ') rc = pieces_push(&E->pb, pc.off, pc.len, pc.first);
                else {
                    size_t st = E->wb.n;
                    if (buf_put(&E->wb, " ", 1) < 0 || buf_reserve(&E->wb, pc.len + 1) < 0) rc = -ENOMEM;
                    else {
                        rc = buf_put(&E->wb, E->wb.v + pc.off, pc.len);
                        if (rc == 0) rc = pieces_push(&E->pb, (uint32_t)st, pc.len + 1, pc.first);
                    }
                }
            }
        }
        tk_pieces x = E->pa;
        E->pa = E->pb;
        E->pb = x;
    }
    free(segs.v);
    if (rc < 0) return rc == -ENOMEM ? ms_errf(E->err, ENOMEM, "out of memory") : rc;
    return 0;
}

/* Pre-tokenize wb[off, off+len) and BPE every piece. */
static int pretok_and_bpe(tk_enc *E, uint32_t off, uint32_t len, bool first)
{
    int rc = pretokenize_into(E, off, len, first);
    if (rc < 0) return rc;
    for (size_t i = 0; i < E->pa.n; i++) {
        rc = bpe_cached(E, E->wb.v + E->pa.v[i].off, E->pa.v[i].len);
        if (rc < 0) return ms_errf(E->err, -rc, "out of memory");
    }
    return 0;
}

/* Apply the normalizers to s[0..n) into out. */
static int normalize(tk_enc *E, const char *s, size_t n, tk_buf *out)
{
    const size_t limit = growth_limit(n);
    const ms_tokenizer *t = E->t;
    out->n = 0;
    if (buf_put(out, s, n) < 0) return -ENOMEM;
    for (size_t k = 0; k < t->n_norm; k++) {
        const tk_norm *z = &t->norm[k];
        tk_buf o = {0};
        int rc = 0;
        switch (z->kind) {
        case NZ_NFC:
        case NZ_NFD:
        case NZ_NFKC:
        case NZ_NFKD: {
            int opt = UTF8PROC_STABLE | (z->kind == NZ_NFC || z->kind == NZ_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE) |
                      (z->kind == NZ_NFKC || z->kind == NZ_NFKD ? UTF8PROC_COMPAT : 0);
            if (out->n == 0) break;
            utf8proc_uint8_t *r = NULL;
            utf8proc_ssize_t rl = utf8proc_map((const utf8proc_uint8_t *)out->v, (utf8proc_ssize_t)out->n, &r, opt);
            if (rl < 0) return ms_errf(E->err, EINVAL, "normalizer: %s", utf8proc_errmsg(rl));
            rc = buf_put(&o, r, (size_t)rl);
            free(r);
            if (rc < 0) return -ENOMEM;
            free(out->v);
            *out = o;
            continue;
        }
        case NZ_LOWER:
            for (size_t i = 0; i < out->n;) {
                int l = utf8_seq((const unsigned char *)out->v + i, out->n - i);
                if (l <= 0) l = 1;
                char u[4];
                uint32_t cp = utf8_decode1((const unsigned char *)out->v + i, l);
                int ul = ms_utf8_put(u, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
                if (buf_put(&o, u, (size_t)ul) < 0) rc = -ENOMEM;
                i += (size_t)l;
            }
            break;
        case NZ_PREPEND:
            if (out->n && (buf_put(&o, z->a, z->alen) < 0 || buf_put(&o, out->v, out->n) < 0)) rc = -ENOMEM;
            break;
        case NZ_STRIP: {
            size_t a = 0, b = out->n;
            const unsigned char *u = (const unsigned char *)out->v;
            while (z->left && a < b) {
                int l = utf8_seq(u + a, b - a);
                if (l <= 0 || !is_white_space(utf8_decode1(u + a, l))) break;
                a += (size_t)l;
            }
            while (z->right && b > a) {
                size_t q = b - 1;
                while (q > a && (u[q] & 0xC0) == 0x80) q--;
                int l = utf8_seq(u + q, b - q);
                if (l <= 0 || !is_white_space(utf8_decode1(u + q, l))) break;
                b = q;
            }
            if (buf_put(&o, out->v + a, b - a) < 0) rc = -ENOMEM;
            break;
        }
        case NZ_REPLACE: {
            tk_pretok p = {.kind = PT_SPLIT, .re = z->re, .lit = z->a, .litlen = z->alen};
            tk_segs segs = {0};
            rc = find_matches(E, &p, out->v, out->n, &segs);
            for (size_t i = 0; rc == 0 && i < segs.n && o.n <= limit; i++) {
                if (segs.v[i].match) rc = buf_put(&o, z->b, z->blen);
                else rc = buf_put(&o, out->v + segs.v[i].off, segs.v[i].len);
            }
            free(segs.v);
            break;
        }
        }
        if (rc < 0) {
            free(o.v);
            return rc == -ENOMEM ? ms_errf(E->err, ENOMEM, "out of memory") : rc;
        }
        if (o.n > limit) {
            free(o.v);
            return ms_errf(E->err, E2BIG, "%s: normalizer step %zu makes a %zu-byte text longer than %dx its size: refusing "
                           "this normalizer chain", t->path, k + 1, n, TK_GROWTH_MAX);
        }
        if (buf_put(&o, "", 0) < 0) {
            free(o.v);
            return ms_errf(E->err, ENOMEM, "out of memory");
        }
        if (z->kind != NZ_PREPEND || out->n) {
            free(out->v);
            *out = o;
        } else
            free(o.v);
    }
    return 0;
}

static bool is_word_char(uint32_t c) { return c == '_' || utf8proc_category((utf8proc_int32_t)c) <= UTF8PROC_CATEGORY_NO; }

/* Next added-token match in s[from, n) on trie tr: leftmost, then longest. Sets
 * [*ms, *me) (including lstrip/rstrip whitespace) and the added index; false if none. */
static bool next_added(const ms_tokenizer *t, const tk_trie *tr, const char *s, size_t from, size_t n, unsigned flags,
                       size_t *ms, size_t *me, int32_t *which)
{
    if (!tr->v) return false;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = from; i < n; i++) {
        if ((u[i] & 0xC0) == 0x80) continue; /* only at character starts */
        int32_t node = 0, best = -1;
        size_t best_end = 0;
        for (size_t j = i; j < n; j++) {
            int32_t ch = tr->v[node].child;
            while (ch >= 0 && tr->v[ch].byte != u[j]) ch = tr->v[ch].sibling;
            if (ch < 0) break;
            node = ch;
            int32_t a = tr->v[node].added;
            if (a >= 0 && !((flags & MS_TOK_NO_SPECIAL) && t->added[a].special)) {
                const tk_added *ad = &t->added[a];
                bool ok = true;
                if (ad->single_word) {
                    if (i > 0) {
                        size_t q = i - 1;
                        while (q > 0 && (u[q] & 0xC0) == 0x80) q--;
                        int l = utf8_seq(u + q, i - q);
                        if (l > 0 && is_word_char(utf8_decode1(u + q, l))) ok = false;
                    }
                    if (j + 1 < n) {
                        int l = utf8_seq(u + j + 1, n - j - 1);
                        if (l > 0 && is_word_char(utf8_decode1(u + j + 1, l))) ok = false;
                    }
                }
                if (ok) {
                    best = a;
                    best_end = j + 1;
                }
            }
        }
        if (best >= 0) {
            size_t a = i, b = best_end;
            if (t->added[best].lstrip)
                while (a > from) {
                    size_t q = a - 1;
                    while (q > from && (u[q] & 0xC0) == 0x80) q--;
                    int l = utf8_seq(u + q, a - q);
                    if (l <= 0 || !is_white_space(utf8_decode1(u + q, l))) break;
                    a = q;
                }
            if (t->added[best].rstrip)
                while (b < n) {
                    int l = utf8_seq(u + b, n - b);
                    if (l <= 0 || !is_white_space(utf8_decode1(u + b, l))) break;
                    b += (size_t)l;
                }
            *ms = a;
            *me = b;
            *which = best;
            return true;
        }
    }
    return false;
}

/* A segment of raw text without non-normalized added tokens. */
static int encode_segment(tk_enc *E, const char *s, size_t n, bool first)
{
    const ms_tokenizer *t = E->t;
    tk_buf norm = {0};
    const char *x = s;
    size_t xn = n;
    if (t->n_norm) {
        int rc = normalize(E, s, n, &norm);
        if (rc < 0) {
            free(norm.v);
            return rc == -ENOMEM ? ms_errf(E->err, ENOMEM, "out of memory") : rc;
        }
        x = norm.v;
        xn = norm.n;
    }
    size_t pos = 0, ms, me;
    int32_t a;
    int rc = 0;
    while (rc == 0 && pos <= xn) {
        bool hit = next_added(t, &t->trie_norm, x, pos, xn, E->flags, &ms, &me, &a);
        size_t end = hit ? ms : xn;
        if (end > pos) {
            uint32_t off = (uint32_t)E->wb.n;
            if (buf_put(&E->wb, x + pos, end - pos) < 0) rc = ms_errf(E->err, ENOMEM, "out of memory");
            else rc = pretok_and_bpe(E, off, (uint32_t)(end - pos), first && pos == 0);
        }
        if (!hit || rc < 0) break;
        if (ids_push(E->out, t->added[a].id) < 0) rc = ms_errf(E->err, ENOMEM, "out of memory");
        pos = me;
        if (pos >= xn) break;
    }
    free(norm.v);
    return rc;
}

static int enc_init(tk_enc *E)
{
    E->md = pcre2_match_data_create(4, NULL);
    E->mctx = pcre2_match_context_create(NULL);
    /* JIT matching runs on PCRE2's default 32 KiB stack; a large JIT stack (an
     * mmap per encode call) is created only if a match runs out of it. */
    E->jstack = NULL;
    if (!E->md || !E->mctx) return ms_errf(E->err, ENOMEM, "out of memory");
    return 0;
}

static void enc_fini(tk_enc *E)
{
    pcre2_match_data_free(E->md);
    pcre2_match_context_free(E->mctx);
    if (E->jstack) pcre2_jit_stack_free(E->jstack);
    free(E->wb.v);
    free(E->pa.v);
    free(E->pb.v);
    free(E->sym);
    free(E->heap);
    free(E->tmp.v);
    free(E->cache);
    free(E->ckeys.v);
    free(E->cids.v);
}

int ms_tokenizer_pretokenize(const ms_tokenizer *t, const char *text, size_t len, char **buf, size_t **lens, size_t *n,
                             ms_err *err)
{
    *buf = NULL;
    *lens = NULL;
    *n = 0;
    if (len > (size_t)INT32_MAX / 4) return ms_errf(err, EFBIG, "tokenizer: text too long (%zu bytes)", len);
    size_t bad = utf8_check(text, len);
    if (bad < len) return ms_errf(err, EILSEQ, "tokenizer: text is not valid UTF-8 (byte offset %zu)", bad);
    tk_enc E = {.t = t, .err = err};
    tk_buf norm = {0}, o = {0};
    int rc = enc_init(&E);
    if (rc == 0 && t->n_norm) rc = normalize(&E, text, len, &norm);
    const char *x = t->n_norm ? norm.v : text;
    size_t xn = t->n_norm ? norm.n : len;
    if (rc == 0 && buf_put(&E.wb, x ? x : "", xn) < 0) rc = ms_errf(err, ENOMEM, "out of memory");
    if (rc == 0) rc = pretokenize_into(&E, 0, (uint32_t)xn, true);
    size_t *l = NULL;
    if (rc == 0 && !(l = malloc((E.pa.n ? E.pa.n : 1) * sizeof *l))) rc = ms_errf(err, ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < E.pa.n; i++) {
        l[i] = E.pa.v[i].len;
        if (buf_put(&o, E.wb.v + E.pa.v[i].off, E.pa.v[i].len) < 0) rc = ms_errf(err, ENOMEM, "out of memory");
    }
    if (rc == 0 && buf_put(&o, "", 0) < 0) rc = ms_errf(err, ENOMEM, "out of memory");
    if (rc == 0) {
        *buf = o.v;
        *lens = l;
        *n = E.pa.n;
    } else {
        free(o.v);
        free(l);
    }
    free(norm.v);
    enc_fini(&E);
    return rc;
}

int ms_tokenizer_encode(const ms_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **ids,
                        size_t *n_ids, ms_err *err)
{
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return ms_errf(err, EINVAL, "tokenizer: NULL text");
    if (len > (size_t)INT32_MAX / 4) return ms_errf(err, EFBIG, "tokenizer: text too long (%zu bytes)", len);
    size_t bad = utf8_check(text, len);
    if (bad < len) return ms_errf(err, EILSEQ, "tokenizer: text is not valid UTF-8 (byte offset %zu)", bad);
    tk_ids out = {0};
    tk_enc E = {.t = t, .err = err, .flags = flags, .out = &out};
    int rc = enc_init(&E);
    if (rc < 0) goto done;
    if ((flags & MS_TOK_ADD_BOS) && t->bos_id >= 0) {
        size_t bl = strlen(t->bos_str);
        if (!(bl && len >= bl && memcmp(text, t->bos_str, bl) == 0) && ids_push(&out, t->bos_id) < 0) {
            rc = ms_errf(err, ENOMEM, "out of memory");
            goto done;
        }
    }
    size_t pos = 0, ms, me;
    int32_t a;
    while (pos < len) {
        bool hit = next_added(t, &t->trie_raw, text, pos, len, flags, &ms, &me, &a);
        size_t end = hit ? ms : len;
        if (end > pos && (rc = encode_segment(&E, text + pos, end - pos, pos == 0)) < 0) goto done;
        if (!hit) break;
        if (ids_push(&out, t->added[a].id) < 0) {
            rc = ms_errf(err, ENOMEM, "out of memory");
            goto done;
        }
        pos = me;
    }
done:
    enc_fini(&E);
    if (rc < 0) {
        free(out.v);
        return rc;
    }
    *ids = out.v;
    *n_ids = out.n;
    return 0;
}

/* ---- decode ------------------------------------------------------------------------------ */

static bool id_ok(const ms_tokenizer *t, int32_t id) { return id >= 0 && id < t->n_ids && (t->ent[id].flags & TE_DEFINED); }

int ms_tokenizer_decode(const ms_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char **text, size_t *len,
                        ms_err *err)
{
    *text = NULL;
    if (len) *len = 0;
    tk_buf raw = {0}, out = {0};
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (!id_ok(t, id)) {
            free(raw.v);
            return ms_errf(err, EINVAL, "tokenizer: token id %d (position %zu) is not in the vocabulary (size %d)", id, i,
                           t->n_ids);
        }
        if ((flags & MS_TOK_SKIP_SPECIAL) && (t->ent[id].flags & TE_SPECIAL)) continue;
        if (buf_put(&raw, t->decs.v + t->ent[id].dec_off, t->ent[id].dec_len) < 0) goto oom;
    }
    size_t skip = 0;
    while ((int)skip < t->strip_start && skip < raw.n && raw.v[skip] == ' ') skip++;
    if (utf8_lossy(&out, raw.v ? raw.v + skip : "", raw.n - skip, NULL) < 0 || buf_put(&out, "", 0) < 0) goto oom;
    free(raw.v);
    *text = out.v;
    if (len) *len = out.n;
    return 0;
oom:
    free(raw.v);
    free(out.v);
    return ms_errf(err, ENOMEM, "out of memory");
}

struct ms_detok {
    const ms_tokenizer *t;
    unsigned flags;
    tk_buf pend; /* held-back bytes of an incomplete character */
    tk_buf out;  /* text returned by the last call */
    int stripped;
    bool started;
};

int ms_detok_new(const ms_tokenizer *t, unsigned flags, ms_detok **out, ms_err *err)
{
    ms_detok *d = calloc(1, sizeof *d);
    if (!d) return ms_errf(err, ENOMEM, "out of memory");
    d->t = t;
    d->flags = flags;
    *out = d;
    return 0;
}

void ms_detok_free(ms_detok *d)
{
    if (!d) return;
    free(d->pend.v);
    free(d->out.v);
    free(d);
}

void ms_detok_reset(ms_detok *d)
{
    d->pend.n = 0;
    d->out.n = 0;
    d->stripped = 0;
    d->started = false;
}

int ms_detok_feed(ms_detok *d, int32_t id, const char **text, size_t *len, ms_err *err)
{
    const ms_tokenizer *t = d->t;
    d->out.n = 0;
    *text = "";
    *len = 0;
    if (!id_ok(t, id)) return ms_errf(err, EINVAL, "tokenizer: token id %d is not in the vocabulary (size %d)", id, t->n_ids);
    if ((d->flags & MS_TOK_SKIP_SPECIAL) && (t->ent[id].flags & TE_SPECIAL)) return 0;
    const char *b = t->decs.v + t->ent[id].dec_off;
    size_t bn = t->ent[id].dec_len;
    while (d->stripped < t->strip_start && bn && *b == ' ' && !d->started) {
        b++;
        bn--;
        d->stripped++;
    }
    if (bn) d->started = true;
    if (buf_put(&d->pend, b, bn) < 0) return ms_errf(err, ENOMEM, "out of memory");
    size_t hold;
    if (utf8_lossy(&d->out, d->pend.v ? d->pend.v : "", d->pend.n, &hold) < 0 || buf_put(&d->out, "", 0) < 0)
        return ms_errf(err, ENOMEM, "out of memory");
    memmove(d->pend.v, d->pend.v + d->pend.n - hold, hold);
    d->pend.n = hold;
    *text = d->out.v;
    *len = d->out.n;
    return 0;
}

int ms_detok_flush(ms_detok *d, const char **text, size_t *len)
{
    d->out.n = 0;
    *text = "";
    *len = 0;
    if (d->pend.n == 0) return 0;
    if (utf8_lossy(&d->out, d->pend.v, d->pend.n, NULL) < 0 || buf_put(&d->out, "", 0) < 0) return -ENOMEM;
    d->pend.n = 0;
    *text = d->out.v;
    *len = d->out.n;
    return 0;
}

/* ---- accessors ------------------------------------------------------------------------------ */

int32_t ms_tokenizer_vocab_size(const ms_tokenizer *t) { return t->n_ids; }

int32_t ms_tokenizer_token_id(const ms_tokenizer *t, const char *s, size_t n)
{
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->strs.v + t->added[i].off, s, n) == 0) return t->added[i].id;
    return vmap_find(t, s, n);
}

const char *ms_tokenizer_token_str(const ms_tokenizer *t, int32_t id, size_t *len)
{
    if (!id_ok(t, id)) return NULL;
    if (len) *len = t->ent[id].str_len;
    return ent_str(t, id);
}

const char *ms_tokenizer_token_bytes(const ms_tokenizer *t, int32_t id, size_t *len)
{
    if (!id_ok(t, id)) return NULL;
    if (len) *len = t->ent[id].dec_len;
    return t->decs.v + t->ent[id].dec_off;
}

bool ms_tokenizer_is_special(const ms_tokenizer *t, int32_t id) { return id_ok(t, id) && (t->ent[id].flags & TE_SPECIAL); }
bool ms_tokenizer_is_added(const ms_tokenizer *t, int32_t id) { return id_ok(t, id) && (t->ent[id].flags & TE_ADDED); }
int32_t ms_tokenizer_bos_id(const ms_tokenizer *t) { return t->bos_id; }
int32_t ms_tokenizer_eos_id(const ms_tokenizer *t) { return t->eos_id; }
const char *ms_tokenizer_bos_str(const ms_tokenizer *t) { return t->bos_str; }
const char *ms_tokenizer_eos_str(const ms_tokenizer *t) { return t->eos_str; }
bool ms_tokenizer_add_bos(const ms_tokenizer *t) { return t->add_bos; }
const char *ms_tokenizer_dir(const ms_tokenizer *t) { return t->dir; }

const int32_t *ms_tokenizer_stop_ids(const ms_tokenizer *t, size_t *n)
{
    *n = t->n_stop;
    return t->stop;
}

bool ms_tokenizer_is_stop(const ms_tokenizer *t, int32_t id)
{
    for (size_t i = 0; i < t->n_stop; i++)
        if (t->stop[i] == id) return true;
    return false;
}

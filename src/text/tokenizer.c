/* tokenizer.c - Hugging Face tokenizer.json (BPE): the shared pieces (small
 * vectors, UTF-8, the GPT-2 byte alphabet, vocab and merge lookups), decoding
 * (whole and streaming) and accessors. Loading is tokenizer_load.c, encoding
 * tokenizer_encode.c; the design is in tokenizer_impl.h. */
#include "tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- small vectors --------------------------------------------------------------- */

int tk_buf_reserve(tk_buf *b, size_t extra)
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

int tk_buf_put(tk_buf *b, const void *p, size_t n)
{
    if (tk_buf_reserve(b, n + 1) < 0) return -ENOMEM;
    if (n) memcpy(b->v + b->n, p, n);
    b->n += n;
    b->v[b->n] = 0;
    return 0;
}

int tk_ids_push(tk_ids *a, int32_t id)
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

int tk_pieces_push(tk_pieces *a, uint32_t off, uint32_t len, bool first)
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
int tk_utf8_seq(const unsigned char *s, size_t n)
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
size_t tk_utf8_check(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int l = tk_utf8_seq(u + i, n - i);
        if (l <= 0) return i;
        i += (size_t)l;
    }
    return n;
}

uint32_t tk_utf8_decode1(const unsigned char *s, int len)
{
    switch (len) {
    case 1: return s[0];
    case 2: return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    case 3: return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    default: return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    }
}

/* Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s use). */
bool tk_is_white_space(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Append s[0..n) to out, replacing ill-formed sequences by U+FFFD (maximal-subpart
 * rule, as Rust's String::from_utf8_lossy). If hold is non-NULL, a valid but
 * incomplete sequence at the end is not emitted: its length goes to *hold. */
int tk_utf8_lossy(tk_buf *out, const char *s, size_t n, size_t *hold)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, start = 0;
    if (hold) *hold = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int l = tk_utf8_seq(u + i, n - i);
        if (l > 0) {
            i += (size_t)l;
            continue;
        }
        if (l < 0 && hold) { /* incomplete at the end: hold it back */
            if (tk_buf_put(out, s + start, i - start) < 0) return -ENOMEM;
            *hold = n - i;
            return 0;
        }
        if (tk_buf_put(out, s + start, i - start) < 0 || tk_buf_put(out, "\xEF\xBF\xBD", 3) < 0) return -ENOMEM;
        i += l < 0 ? (size_t)(-l) : 1; /* skip the maximal valid prefix (at least one byte) */
        start = i;
    }
    return tk_buf_put(out, s + start, i - start);
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

/* ---- the tokenizer --------------------------------------------------------------- */

/* ---- string hashing / maps --------------------------------------------------------- */

uint64_t tk_hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

int32_t tk_vmap_find(const ms_tokenizer *t, const char *s, size_t n)
{
    if (!t->vmap) return -1;
    size_t i = tk_hash_bytes(s, n) & t->vmap_mask;
    for (;; i = (i + 1) & t->vmap_mask) {
        int32_t id = t->vmap[i];
        if (id < 0) return -1;
        if (t->ent[id].str_len == n && memcmp(tk_ent_str(t, id), s, n) == 0) return id;
    }
}

bool tk_merge_find(const ms_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *nid)
{
    if (!t->mkey) return false;
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = tk_hash_u64(k) & t->mmask;
    for (;; i = (i + 1) & t->mmask) {
        if (t->mkey[i] == UINT64_MAX) return false;
        if (t->mkey[i] == k) {
            *rank = t->mrank[i];
            *nid = t->mid[i];
            return true;
        }
    }
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
        if (tk_buf_put(&raw, t->decs.v + t->ent[id].dec_off, t->ent[id].dec_len) < 0) goto oom;
    }
    size_t skip = 0;
    while ((int)skip < t->strip_start && skip < raw.n && raw.v[skip] == ' ') skip++;
    if (tk_utf8_lossy(&out, raw.v ? raw.v + skip : "", raw.n - skip, NULL) < 0 || tk_buf_put(&out, "", 0) < 0) goto oom;
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
    if (tk_buf_put(&d->pend, b, bn) < 0) return ms_errf(err, ENOMEM, "out of memory");
    size_t hold;
    if (tk_utf8_lossy(&d->out, d->pend.v ? d->pend.v : "", d->pend.n, &hold) < 0 || tk_buf_put(&d->out, "", 0) < 0)
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
    if (tk_utf8_lossy(&d->out, d->pend.v, d->pend.n, NULL) < 0 || tk_buf_put(&d->out, "", 0) < 0) return -ENOMEM;
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
    return tk_vmap_find(t, s, n);
}

const char *ms_tokenizer_token_str(const ms_tokenizer *t, int32_t id, size_t *len)
{
    if (!id_ok(t, id)) return NULL;
    if (len) *len = t->ent[id].str_len;
    return tk_ent_str(t, id);
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

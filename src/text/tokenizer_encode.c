/* tokenizer_encode.c - text -> ids: added tokens first (leftmost-longest trie
 * walk), normalizers, pre-tokenizer steps over (offset, length) pieces, then BPE
 * per piece with a (rank, position) heap exactly like tokenizers' merge_all,
 * behind a per-call piece -> ids cache. Bounded: a chain that grows the text
 * past 64x its size stops with an error naming the step. */
#include "tokenizer_impl.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "util.h"

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
        int l = tk_utf8_seq((const unsigned char *)s + i, n - i);
        if (l <= 0) l = 1;
        tk_buf *b = &E->tmp;
        b->n = 0;
        if (i > 0 && t->cont_prefix && tk_buf_put(b, t->cont_prefix, strlen(t->cont_prefix)) < 0) return -ENOMEM;
        if (tk_buf_put(b, s + i, (size_t)l) < 0) return -ENOMEM;
        if (i + (size_t)l == n && t->eow_suffix && tk_buf_put(b, t->eow_suffix, strlen(t->eow_suffix)) < 0) return -ENOMEM;
        int32_t id = tk_vmap_find(t, b->v, b->n);
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
                if (tk_buf_put(&E->tmp, u, (size_t)l) < 0) return -ENOMEM;
            }
            id = tk_vmap_find(t, E->tmp.v, E->tmp.n);
        } else
            id = tk_vmap_find(t, s, n);
        if (id >= 0) return tk_ids_push(out, id);
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
        if (tk_merge_find(t, y[i].id, y[i + 1].id, &rank, &nid) && heap_push(E, rank, (int32_t)i, nid) < 0) return -ENOMEM;
    while (E->heap_n) {
        struct tk_heap h = heap_pop(E);
        struct tk_sym *a = &y[h.pos];
        if (a->dead || a->next < 0) continue;
        struct tk_sym *b = &y[a->next];
        if (!tk_merge_find(t, a->id, b->id, &rank, &nid) || nid != h.nid) continue;
        a->id = nid;
        b->dead = true;
        a->next = b->next;
        if (b->next >= 0) y[b->next].prev = h.pos;
        if (a->prev >= 0 && tk_merge_find(t, y[a->prev].id, a->id, &rank, &nid) && heap_push(E, rank, a->prev, nid) < 0)
            return -ENOMEM;
        if (a->next >= 0 && tk_merge_find(t, a->id, y[a->next].id, &rank, &nid) && heap_push(E, rank, h.pos, nid) < 0)
            return -ENOMEM;
    }
    for (long i = 0; i < k;) {
        if (tk_ids_push(out, y[i].id) < 0) return -ENOMEM;
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
        size_t i = tk_hash_bytes(E->ckeys.v + ce.key_off, ce.key_len) & (cap - 1);
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
    size_t i = tk_hash_bytes(s, n) & E->cache_mask;
    for (;; i = (i + 1) & E->cache_mask) {
        struct tk_centry *ce = &E->cache[i];
        if (ce->key_off == UINT32_MAX) break;
        if (ce->key_len == n && memcmp(E->ckeys.v + ce->key_off, s, n) == 0) {
            for (uint32_t j = 0; j < ce->ids_n; j++)
                if (tk_ids_push(E->out, E->cids.v[ce->ids_off + j]) < 0) return -ENOMEM;
            return 0;
        }
    }
    size_t before = E->out->n;
    int rc = bpe_piece(E, s, n, E->out);
    if (rc < 0 || E->cache_n >= TK_CACHE_MAX_N || E->ckeys.n + n > UINT32_MAX / 2) return rc;
    struct tk_centry ce = {(uint32_t)E->ckeys.n, (uint32_t)n, (uint32_t)E->cids.n, (uint32_t)(E->out->n - before)};
    if (tk_buf_put(&E->ckeys, s, n) < 0) return -ENOMEM;
    for (size_t j = before; j < E->out->n; j++)
        if (tk_ids_push(&E->cids, E->out->v[j]) < 0) return -ENOMEM;
    if (2 * (E->cache_n + 1) > E->cache_mask + 1) { /* keep the load under 1/2 */
        if (cache_grow(E) < 0) return -ENOMEM;
        i = tk_hash_bytes(s, n) & E->cache_mask;
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
                int l = tk_utf8_seq((const unsigned char *)s + pos, n - pos);
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
                int l = tk_utf8_seq((const unsigned char *)s + en, n - en);
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
        if (tk_pieces_push(out, pc->off + v[i].off, v[i].len, pc->first && v[i].off == 0) < 0) return -ENOMEM;
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
        if (tk_buf_put(&E->wb, p->repl, (size_t)p->repl_len) < 0) return -ENOMEM;
    for (uint32_t i = 0; i < pc->len; i++) {
        /* copy the byte out first: appending may move wb, and the source is in wb */
        char ch = E->wb.v[pc->off + i];
        int rc = ch == ' ' ? tk_buf_put(&E->wb, p->repl, (size_t)p->repl_len) : tk_buf_put(&E->wb, &ch, 1);
        if (rc < 0) return -ENOMEM;
    }
    tk_piece np = {(uint32_t)start, (uint32_t)(E->wb.n - start), pc->first};
    if (!p->split) return tk_pieces_push(out, np.off, np.len, np.first);
    tk_pretok sp = {.kind = PT_SPLIT, .lit = (char *)p->repl, .litlen = (size_t)p->repl_len, .behavior = BH_MERGED_NEXT};
    return split_piece(E, &sp, &np, segs, out);
}

/* Pre-tokenize wb[off, off+len) into E->pa. */
static int pretokenize_into(tk_enc *E, uint32_t off, uint32_t len, bool first)
{
    const ms_tokenizer *t = E->t;
    E->pa.n = 0;
    int rc = tk_pieces_push(&E->pa, off, len, first);
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
                if (E->wb.v[pc.off] == ' ') rc = tk_pieces_push(&E->pb, pc.off, pc.len, pc.first);
                else {
                    size_t st = E->wb.n;
                    if (tk_buf_put(&E->wb, " ", 1) < 0 || tk_buf_reserve(&E->wb, pc.len + 1) < 0) rc = -ENOMEM;
                    else {
                        rc = tk_buf_put(&E->wb, E->wb.v + pc.off, pc.len);
                        if (rc == 0) rc = tk_pieces_push(&E->pb, (uint32_t)st, pc.len + 1, pc.first);
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
    if (tk_buf_put(out, s, n) < 0) return -ENOMEM;
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
            rc = tk_buf_put(&o, r, (size_t)rl);
            free(r);
            if (rc < 0) return -ENOMEM;
            free(out->v);
            *out = o;
            continue;
        }
        case NZ_LOWER:
            for (size_t i = 0; i < out->n;) {
                int l = tk_utf8_seq((const unsigned char *)out->v + i, out->n - i);
                if (l <= 0) l = 1;
                char u[4];
                uint32_t cp = tk_utf8_decode1((const unsigned char *)out->v + i, l);
                int ul = ms_utf8_put(u, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
                if (tk_buf_put(&o, u, (size_t)ul) < 0) rc = -ENOMEM;
                i += (size_t)l;
            }
            break;
        case NZ_PREPEND:
            if (out->n && (tk_buf_put(&o, z->a, z->alen) < 0 || tk_buf_put(&o, out->v, out->n) < 0)) rc = -ENOMEM;
            break;
        case NZ_STRIP: {
            size_t a = 0, b = out->n;
            const unsigned char *u = (const unsigned char *)out->v;
            while (z->left && a < b) {
                int l = tk_utf8_seq(u + a, b - a);
                if (l <= 0 || !tk_is_white_space(tk_utf8_decode1(u + a, l))) break;
                a += (size_t)l;
            }
            while (z->right && b > a) {
                size_t q = b - 1;
                while (q > a && (u[q] & 0xC0) == 0x80) q--;
                int l = tk_utf8_seq(u + q, b - q);
                if (l <= 0 || !tk_is_white_space(tk_utf8_decode1(u + q, l))) break;
                b = q;
            }
            if (tk_buf_put(&o, out->v + a, b - a) < 0) rc = -ENOMEM;
            break;
        }
        case NZ_REPLACE: {
            tk_pretok p = {.kind = PT_SPLIT, .re = z->re, .lit = z->a, .litlen = z->alen};
            tk_segs segs = {0};
            rc = find_matches(E, &p, out->v, out->n, &segs);
            for (size_t i = 0; rc == 0 && i < segs.n && o.n <= limit; i++) {
                if (segs.v[i].match) rc = tk_buf_put(&o, z->b, z->blen);
                else rc = tk_buf_put(&o, out->v + segs.v[i].off, segs.v[i].len);
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
        if (tk_buf_put(&o, "", 0) < 0) {
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
                        int l = tk_utf8_seq(u + q, i - q);
                        if (l > 0 && is_word_char(tk_utf8_decode1(u + q, l))) ok = false;
                    }
                    if (j + 1 < n) {
                        int l = tk_utf8_seq(u + j + 1, n - j - 1);
                        if (l > 0 && is_word_char(tk_utf8_decode1(u + j + 1, l))) ok = false;
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
                    int l = tk_utf8_seq(u + q, a - q);
                    if (l <= 0 || !tk_is_white_space(tk_utf8_decode1(u + q, l))) break;
                    a = q;
                }
            if (t->added[best].rstrip)
                while (b < n) {
                    int l = tk_utf8_seq(u + b, n - b);
                    if (l <= 0 || !tk_is_white_space(tk_utf8_decode1(u + b, l))) break;
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
            if (tk_buf_put(&E->wb, x + pos, end - pos) < 0) rc = ms_errf(E->err, ENOMEM, "out of memory");
            else rc = pretok_and_bpe(E, off, (uint32_t)(end - pos), first && pos == 0);
        }
        if (!hit || rc < 0) break;
        if (tk_ids_push(E->out, t->added[a].id) < 0) rc = ms_errf(E->err, ENOMEM, "out of memory");
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
    size_t bad = tk_utf8_check(text, len);
    if (bad < len) return ms_errf(err, EILSEQ, "tokenizer: text is not valid UTF-8 (byte offset %zu)", bad);
    tk_enc E = {.t = t, .err = err};
    tk_buf norm = {0}, o = {0};
    int rc = enc_init(&E);
    if (rc == 0 && t->n_norm) rc = normalize(&E, text, len, &norm);
    const char *x = t->n_norm ? norm.v : text;
    size_t xn = t->n_norm ? norm.n : len;
    if (rc == 0 && tk_buf_put(&E.wb, x ? x : "", xn) < 0) rc = ms_errf(err, ENOMEM, "out of memory");
    if (rc == 0) rc = pretokenize_into(&E, 0, (uint32_t)xn, true);
    size_t *l = NULL;
    if (rc == 0 && !(l = malloc((E.pa.n ? E.pa.n : 1) * sizeof *l))) rc = ms_errf(err, ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < E.pa.n; i++) {
        l[i] = E.pa.v[i].len;
        if (tk_buf_put(&o, E.wb.v + E.pa.v[i].off, E.pa.v[i].len) < 0) rc = ms_errf(err, ENOMEM, "out of memory");
    }
    if (rc == 0 && tk_buf_put(&o, "", 0) < 0) rc = ms_errf(err, ENOMEM, "out of memory");
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
    size_t bad = tk_utf8_check(text, len);
    if (bad < len) return ms_errf(err, EILSEQ, "tokenizer: text is not valid UTF-8 (byte offset %zu)", bad);
    tk_ids out = {0};
    tk_enc E = {.t = t, .err = err, .flags = flags, .out = &out};
    int rc = enc_init(&E);
    if (rc < 0) goto done;
    if ((flags & MS_TOK_ADD_BOS) && t->bos_id >= 0) {
        size_t bl = strlen(t->bos_str);
        if (!(bl && len >= bl && memcmp(text, t->bos_str, bl) == 0) && tk_ids_push(&out, t->bos_id) < 0) {
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
        if (tk_ids_push(&out, t->added[a].id) < 0) {
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

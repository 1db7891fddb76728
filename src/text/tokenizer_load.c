/* tokenizer_load.c - tokenizer.json (+ tokenizer_config.json,
 * generation_config.json, config.json for special ids) into the tables of
 * tokenizer_impl.h: vocab, merges, added tokens (two tries), normalizer and
 * pre-tokenizer chains (PCRE2 regexes, \s rewritten to Unicode White_Space),
 * decoder (each id's decoded bytes precomputed). Every error names the file and
 * the JSON path. */
#include "tokenizer_impl.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "json.h"
#include "util.h"

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
    size_t bad = tk_utf8_check(*s, *n);
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
            if (d == 's') rc = in_class ? tk_buf_put(o, TK_WS_CLASS, strlen(TK_WS_CLASS)) : tk_buf_put(o, "[" TK_WS_CLASS "]", strlen(TK_WS_CLASS) + 2);
            else if (d == 'S' && !in_class) rc = tk_buf_put(o, "[^" TK_WS_CLASS "]", strlen(TK_WS_CLASS) + 3);
            else rc = tk_buf_put(o, p + i, 2);
            if (rc < 0) return rc;
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            class_start = i + 1;
            if (tk_buf_put(o, p + i, 1) < 0) return -ENOMEM;
            if (i + 1 < n && p[i + 1] == '^') {
                if (tk_buf_put(o, "^", 1) < 0) return -ENOMEM;
                i++;
                class_start = i + 1;
            }
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { /* POSIX [:name:] */
            const char *e = memmem(p + i + 2, n - i - 2, ":]", 2);
            if (e) {
                size_t l = (size_t)(e + 2 - (p + i));
                if (tk_buf_put(o, p + i, l) < 0) return -ENOMEM;
                i += l - 1;
                continue;
            }
        }
        if (in_class && c == ']' && i != class_start) in_class = false;
        if (tk_buf_put(o, p + i, 1) < 0) return -ENOMEM;
    }
    return 0;
}

static int regex_compile(tk_ctx *c, const char *pat, size_t n, pcre2_code **out, const char *where)
{
    tk_buf t = {0};
    if (regex_translate(pat, n, &t) < 0 || tk_buf_put(&t, "", 0) < 0) {
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
    if (tk_buf_put(&t->strs, s, n) < 0) return -ENOMEM;
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
                           key, (long long)id, tk_ent_str(t, (int32_t)id));
        uint32_t off;
        if (str_add(t, key, kl, &off) < 0) return ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
        t->ent[id].str_off = off;
        t->ent[id].str_len = (uint32_t)kl;
        t->ent[id].flags = TE_DEFINED;
        size_t i = tk_hash_bytes(key, kl) & t->vmap_mask;
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
        int32_t ia = tk_vmap_find(t, a, al), ib = tk_vmap_find(t, b, bl);
        if (ia < 0 || ib < 0) {
            rc = ms_errf(c->err, EINVAL, "%s: model.merges[%zu]: token \"%.*s\" is not in model.vocab", c->file, r,
                         (int)(ia < 0 ? MS_MIN(al, 64) : MS_MIN(bl, 64)), ia < 0 ? a : b);
            break;
        }
        cat.n = 0;
        if (tk_buf_put(&cat, a, al) < 0 || tk_buf_put(&cat, b, bl) < 0) {
            rc = ms_errf(c->err, ENOMEM, "%s: out of memory", c->file);
            break;
        }
        int32_t nid = tk_vmap_find(t, cat.v, cat.n);
        if (nid < 0) {
            rc = ms_errf(c->err, EINVAL, "%s: model.merges[%zu]: merged token \"%.*s\" is not in model.vocab", c->file, r,
                         (int)MS_MIN(cat.n, 64), cat.v);
            break;
        }
        uint64_t k = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
        size_t i = tk_hash_u64(k) & t->mmask;
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
        if (rl == 0 || rl >= sizeof p.repl || tk_utf8_seq((const unsigned char *)r, rl) != (int)rl)
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
        const char *s = tk_ent_str(t, id);
        size_t n = e->str_len;
        tmp.n = 0;
        bool done = false;
        if (d->byte_level) { /* all chars in the alphabet -> bytes, else the raw string */
            const unsigned char *u = (const unsigned char *)s;
            size_t i = 0;
            bool ok = true;
            while (i < n) {
                int l = tk_utf8_seq(u + i, n - i);
                if (l <= 0) {
                    ok = false;
                    break;
                }
                uint32_t cp = tk_utf8_decode1(u + i, l);
                if (cp >= TK_ALPHA_MAX || c2b[cp] < 0) {
                    ok = false;
                    break;
                }
                char byte = (char)c2b[cp];
                if (tk_buf_put(&tmp, &byte, 1) < 0) goto oom;
                i += (size_t)l;
            }
            if (ok) done = true;
            else tmp.n = 0;
        }
        if (!done && d->byte_fallback && !(e->flags & TE_ADDED)) {
            int b = byte_token(s, n);
            if (b >= 0) {
                char byte = (char)b;
                if (tk_buf_put(&tmp, &byte, 1) < 0) goto oom;
                done = true;
            }
        }
        if (!done) {
            if (tk_buf_put(&tmp, s, n) < 0) goto oom;
            for (int r = 0; r < d->n_repl; r++) { /* Replace: literal substring substitution */
                tk_buf o = {0};
                size_t i = 0;
                while (i < tmp.n) {
                    const char *hit = memmem(tmp.v + i, tmp.n - i, d->repl[r].pat, d->repl[r].plen);
                    size_t upto = hit ? (size_t)(hit - tmp.v) : tmp.n;
                    if (tk_buf_put(&o, tmp.v + i, upto - i) < 0) goto oom2;
                    if (!hit) break;
                    if (tk_buf_put(&o, d->repl[r].content, d->repl[r].clen) < 0) goto oom2;
                    i = upto + d->repl[r].plen;
                }
                if (tk_buf_put(&o, "", 0) < 0) goto oom2;
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
        if (tk_buf_put(&t->decs, tmp.v ? tmp.v : "", tmp.n) < 0) goto oom;
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
        memcpy(t->bos_str, tk_ent_str(t, bos), t->ent[bos].str_len + 1);
    if (eos >= 0 && !t->eos_str[0] && t->ent[eos].str_len < sizeof t->eos_str)
        memcpy(t->eos_str, tk_ent_str(t, eos), t->ent[eos].str_len + 1);
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
        t->unk_id = tk_vmap_find(t, json_object_get_string(unk), (size_t)json_object_get_string_len(unk));
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
            t->byte_id[b] = tk_vmap_find(t, s, (size_t)l);
        } else {
            snprintf(s, sizeof s, "<0x%02X>", b);
            t->byte_id[b] = tk_vmap_find(t, s, 6);
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

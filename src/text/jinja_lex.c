/* jinja_lex.c - template source -> tokens, as jinja2's lexer does it with
 * trim_blocks and lstrip_blocks on (transformers' environment).
 *
 * The source is checked as UTF-8, every "\r\n" / "\r" becomes "\n" and one final
 * newline is dropped (keep_trailing_newline=False). Text runs between tags become DATA
 * tokens after whitespace control: "{%-" / "{{-" / "{#-" strip all whitespace before
 * the tag, "-%}" / "-}}" / "-#}" all whitespace after it; trim_blocks drops the first
 * "\n" after "%}" or "#}" (not after "+%}"); lstrip_blocks drops spaces and tabs (any
 * whitespace) between a line start and "{%" / "{#" (not before "{%+" nor before "{{").
 * Inside tags, the end delimiter only counts while brackets are balanced, as in Jinja.
 * String literals are decoded like Python's unicode-escape after backslashreplace,
 * which is what Jinja does. Also the arena that owns tokens and the AST.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"

/* ---- arena --------------------------------------------------------------------------- */

struct jarena_blk {
    jarena_blk *next;
    size_t cap;
    max_align_t data[];
};

void *jx_arena_alloc(jarena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->used + n > a->cap) {
        size_t cap = n > 65536 ? n : 65536;
        jarena_blk *b = calloc(1, sizeof *b + cap);
        if (!b) return NULL;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
        a->used = 0;
        a->cap = cap;
    }
    void *p = (char *)a->head->data + a->used;
    a->used += n;
    return p;
}

char *jx_arena_strdup(jarena *a, const char *s, size_t n)
{
    char *p = jx_arena_alloc(a, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void jx_arena_free(jarena *a)
{
    jarena_blk *b = a->head;
    while (b) {
        jarena_blk *nx = b->next;
        free(b);
        b = nx;
    }
    *a = (jarena){0};
}

/* ---- lexer state --------------------------------------------------------------------- */

typedef struct lexer {
    const char *s; /* normalized source */
    size_t n, pos;
    const char *name;
    jarena *a;
    ms_err *err;
    jtok *toks;
    size_t nt, cap;
    /* line/column bookkeeping (positions are visited in increasing order) */
    size_t lc_pos;
    uint32_t lc_line, lc_col;
    char balance[256];
    int nbal;
} lexer;

static void where(lexer *L, size_t pos, uint32_t *line, uint32_t *col)
{
    if (pos < L->lc_pos) { /* rare: restart */
        L->lc_pos = 0;
        L->lc_line = 1;
        L->lc_col = 1;
    }
    for (; L->lc_pos < pos && L->lc_pos < L->n; L->lc_pos++) {
        unsigned char ch = (unsigned char)L->s[L->lc_pos];
        if (ch == '\n') {
            L->lc_line++;
            L->lc_col = 1;
        } else if ((ch & 0xC0) != 0x80) {
            L->lc_col++; /* columns count characters */
        }
    }
    *line = L->lc_line;
    *col = L->lc_col;
}

static int lex_fail(lexer *L, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int lex_fail(lexer *L, size_t pos, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    uint32_t line, col;
    where(L, pos, &line, &col);
    return ms_errf(L->err, EINVAL, "%s:%u:%u: %s", L->name, line, col, msg), -1;
}

static jtok *emit(lexer *L, int type, size_t pos)
{
    if (L->nt == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        jtok *t = realloc(L->toks, cap * sizeof *t);
        if (!t) {
            ms_errf(L->err, ENOMEM, "%s: out of memory", L->name);
            return NULL;
        }
        L->toks = t;
        L->cap = cap;
    }
    jtok *t = &L->toks[L->nt++];
    memset(t, 0, sizeof *t);
    t->type = (uint8_t)type;
    where(L, pos, &t->line, &t->col);
    return t;
}

/* Python's \s at s[i]: length of the whitespace character there, 0 if none */
static size_t space_at(const char *s, size_t n, size_t i)
{
    if (i >= n) return 0;
    size_t j = i;
    uint32_t cp = jx_utf8_next(s, &j);
    return jx_py_space(cp) ? j - i : 0;
}

static size_t skip_space(const char *s, size_t n, size_t i)
{
    size_t k;
    while ((k = space_at(s, n, i)) > 0) i += k;
    return i;
}

/* length of text after stripping trailing whitespace */
static size_t rstrip_len(const char *s, size_t n)
{
    size_t end = n;
    while (end > 0) {
        size_t st = end - 1;
        while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
        size_t j = st;
        if (!jx_py_space(jx_utf8_next(s, &j))) break;
        end = st;
    }
    return end;
}

/* Whitespace control for the text before a tag: '-' strips all trailing whitespace;
 * otherwise lstrip_blocks drops the whitespace-only tail of the last line (block and
 * comment tags, not '+', not variables). Returns the kept length. */
static size_t strip_before(const char *text, size_t n, char sign, bool is_var, bool line_starting)
{
    if (sign == '-') return rstrip_len(text, n);
    if (sign == '+' || is_var) return n;
    size_t l_pos = n;
    while (l_pos > 0 && text[l_pos - 1] != '\n') l_pos--;
    if (l_pos == 0 && !line_starting) return n;
    if (l_pos == n) return n;
    if (skip_space(text, n, l_pos) == n) return l_pos;
    return n;
}

static int emit_data(lexer *L, size_t pos, size_t len)
{
    if (len == 0) return 0;
    jtok *t = emit(L, TK_DATA, pos);
    if (!t) return -1;
    t->s = L->s + pos;
    t->len = len;
    return 0;
}

/* ---- string literals ----------------------------------------------------------------- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int put_cp(lexer *L, size_t at, char *o, size_t *on, uint32_t cp)
{
    if (cp > 0x10FFFF) return lex_fail(L, at, "illegal Unicode character in string literal");
    if (cp >= 0xD800 && cp <= 0xDFFF) return lex_fail(L, at, "string literal holds a lone surrogate (\\u%04x)", cp);
    if (cp < 0x80) o[(*on)++] = (char)cp;
    else if (cp < 0x800) {
        o[(*on)++] = (char)(0xC0 | (cp >> 6));
        o[(*on)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        o[(*on)++] = (char)(0xE0 | (cp >> 12));
        o[(*on)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[(*on)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        o[(*on)++] = (char)(0xF0 | (cp >> 18));
        o[(*on)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[(*on)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[(*on)++] = (char)(0x80 | (cp & 0x3F));
    }
    return 0;
}

/* Decode the body of a string literal (between the quotes) the way Jinja does:
 * body.encode("ascii", "backslashreplace").decode("unicode-escape"). */
static int decode_string(lexer *L, size_t at, const char *body, size_t n, jtok *t)
{
    /* 1. backslashreplace: non-ASCII characters become \xhh / \uhhhh / \Uhhhhhhhh */
    size_t cap = n * 10 + 1;
    char *asc = malloc(cap), *o = malloc(n * 4 + 8);
    if (!asc || !o) {
        free(asc);
        free(o);
        return ms_errf(L->err, ENOMEM, "%s: out of memory", L->name), -1;
    }
    size_t an = 0, on = 0;
    for (size_t i = 0; i < n;) {
        if ((unsigned char)body[i] < 0x80) {
            asc[an++] = body[i++];
            continue;
        }
        uint32_t cp = jx_utf8_next(body, &i);
        an += (size_t)snprintf(asc + an, cap - an, cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x", cp);
    }
    /* 2. unicode-escape */
    int rc = 0;
    for (size_t i = 0; i < an && rc == 0;) {
        char ch = asc[i++];
        if (ch != '\\') {
            o[on++] = ch;
            continue;
        }
        if (i >= an) {
            rc = lex_fail(L, at, "\\ at end of string literal");
            break;
        }
        char e = asc[i++];
        uint32_t cp;
        int digits = 0;
        switch (e) {
        case '\n': break;
        case '\\': o[on++] = '\\'; break;
        case '\'': o[on++] = '\''; break;
        case '"': o[on++] = '"'; break;
        case 'a': o[on++] = 7; break;
        case 'b': o[on++] = 8; break;
        case 'f': o[on++] = 12; break;
        case 'n': o[on++] = '\n'; break;
        case 'r': o[on++] = '\r'; break;
        case 't': o[on++] = '\t'; break;
        case 'v': o[on++] = 11; break;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        case 'N': rc = lex_fail(L, at, "\\N{...} escapes are not supported in string literals"); break;
        default:
            if (e >= '0' && e <= '7') {
                cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i < an && asc[i] >= '0' && asc[i] <= '7'; k++) cp = cp * 8 + (uint32_t)(asc[i++] - '0');
                rc = put_cp(L, at, o, &on, cp);
            } else {
                o[on++] = '\\';
                o[on++] = e;
            }
        }
        if (digits && rc == 0) {
            cp = 0;
            for (int k = 0; k < digits; k++) {
                int h = i < an ? hexval(asc[i]) : -1;
                if (h < 0) {
                    rc = lex_fail(L, at, "truncated \\%c escape in string literal", e);
                    break;
                }
                cp = cp * 16 + (uint32_t)h;
                i++;
            }
            if (rc == 0) rc = put_cp(L, at, o, &on, cp);
        }
    }
    if (rc == 0) {
        t->s = jx_arena_strdup(L->a, o, on);
        t->len = on;
        if (!t->s) {
            ms_errf(L->err, ENOMEM, "%s: out of memory", L->name);
            rc = -1;
        }
    }
    free(asc);
    free(o);
    return rc;
}

/* ---- tags ---------------------------------------------------------------------------- */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }

/* digits with single '_' separators ((\d+_)*\d+), returns end or i if none */
static size_t digits_us(const char *s, size_t n, size_t i)
{
    if (i >= n || !is_digit(s[i])) return i;
    while (i < n && is_digit(s[i])) {
        i++;
        if (i + 1 < n && s[i] == '_' && is_digit(s[i + 1])) i++;
    }
    return i;
}

static int lex_number(lexer *L, size_t start, size_t *end)
{
    const char *s = L->s;
    size_t n = L->n, i = start;
    char buf[128];
    /* float: not right after a '.' */
    if (!(start > 0 && s[start - 1] == '.')) {
        size_t m = digits_us(s, n, i), f = 0;
        if (m > i) {
            size_t j = m;
            bool frac = false;
            if (j + 1 < n && s[j] == '.' && is_digit(s[j + 1])) {
                j = digits_us(s, n, j + 1);
                frac = true;
            }
            if (j < n && (s[j] == 'e' || s[j] == 'E')) {
                size_t k = j + 1;
                if (k < n && (s[k] == '+' || s[k] == '-')) k++;
                size_t e = digits_us(s, n, k);
                if (e > k) f = e;
            }
            if (!f && frac) f = j;
            if (f) {
                size_t bn = 0;
                for (size_t q = start; q < f && bn + 1 < sizeof buf; q++)
                    if (s[q] != '_') buf[bn++] = s[q];
                buf[bn] = 0;
                jtok *t = emit(L, TK_FLOAT, start);
                if (!t) return -1;
                t->f = strtod(buf, NULL);
                *end = f;
                return 0;
            }
        }
    }
    /* integer */
    int base = 10;
    size_t j = i;
    if (s[i] == '0' && i + 1 < n && strchr("bBoOxX", s[i + 1]) && s[i + 1]) {
        char k = (char)(s[i + 1] | 0x20);
        base = k == 'b' ? 2 : k == 'o' ? 8 : 16;
        size_t q = i + 2;
        size_t last = q;
        while (q < n) {
            size_t r = q;
            if (s[r] == '_') r++;
            int h = r < n ? hexval(s[r]) : -1;
            if (h < 0 || h >= base) break;
            q = r + 1;
            last = q;
        }
        if (last > i + 2) j = last;
        else base = 10;
    }
    if (base == 10) {
        if (s[i] == '0') {
            j = i + 1;
            while (j < n && (s[j] == '0' || (s[j] == '_' && j + 1 < n && s[j + 1] == '0'))) j++;
        } else {
            j = digits_us(s, n, i);
        }
    }
    uint64_t v = 0;
    for (size_t q = base == 10 ? i : i + 2; q < j; q++) {
        if (s[q] == '_') continue;
        uint64_t d = (uint64_t)hexval(s[q]);
        if (v > (UINT64_MAX - d) / (uint64_t)base || v * (uint64_t)base + d > (uint64_t)INT64_MAX)
            return lex_fail(L, start, "integer literal too large (at most 2**63-1)");
        v = v * (uint64_t)base + d;
    }
    jtok *t = emit(L, TK_INT, start);
    if (!t) return -1;
    t->i = (int64_t)v;
    *end = j;
    return 0;
}

static const struct {
    const char *s;
    int type;
} ops[] = {
    {"//", TK_FLOORDIV}, {"**", TK_POW}, {"==", TK_EQ}, {"!=", TK_NE}, {">=", TK_GTEQ}, {"<=", TK_LTEQ},
    {"+", TK_ADD}, {"-", TK_SUB}, {"/", TK_DIV}, {"*", TK_MUL}, {"%", TK_MOD}, {"~", TK_TILDE},
    {"[", TK_LBRACKET}, {"]", TK_RBRACKET}, {"(", TK_LPAREN}, {")", TK_RPAREN}, {"{", TK_LBRACE},
    {"}", TK_RBRACE}, {">", TK_GT}, {"<", TK_LT}, {"=", TK_ASSIGN}, {".", TK_DOT}, {":", TK_COLON},
    {"|", TK_PIPE}, {",", TK_COMMA}, {";", TK_SEMICOLON},
};

/* Tokens of one {{ }} or {% %} tag starting at L->pos (after the opening delimiter and
 * its sign). Sets *line_starting for the text after the tag. */
static int lex_tag(lexer *L, bool is_block, bool *line_starting)
{
    const char *s = L->s;
    size_t n = L->n;
    L->nbal = 0;
    for (;;) {
        size_t i = L->pos;
        if (i >= n)
            return lex_fail(L, i, "unexpected end of template, expected '%s'", is_block ? "%}" : "}}");
        /* the end delimiter (only with balanced brackets) */
        if (L->nbal == 0) {
            char d = is_block ? '%' : '}';
            size_t e = 0;
            bool strip = false, trim = false;
            if (is_block && s[i] == '+' && i + 2 < n && s[i + 1] == '%' && s[i + 2] == '}')
                e = i + 3;
            else if (s[i] == '-' && i + 2 < n && s[i + 1] == d && s[i + 2] == '}')
                e = i + 3, strip = true;
            else if (s[i] == d && i + 1 < n && s[i + 1] == '}')
                e = i + 2, trim = is_block;
            if (e) {
                if (!emit(L, is_block ? TK_BLOCK_END : TK_VAR_END, i)) return -1;
                if (strip) e = skip_space(s, n, e);
                else if (trim && e < n && s[e] == '\n') e++;
                L->pos = e;
                *line_starting = s[e - 1] == '\n';
                return 0;
            }
        }
        size_t k = space_at(s, n, i);
        if (k) {
            L->pos = skip_space(s, n, i);
            continue;
        }
        char ch = s[i];
        if (is_digit(ch)) {
            size_t end = i;
            if (lex_number(L, i, &end) < 0) return -1;
            L->pos = end;
            continue;
        }
        if (is_name0(ch)) {
            size_t j = i + 1;
            while (j < n && (is_name0(s[j]) || is_digit(s[j]))) j++;
            jtok *t = emit(L, TK_NAME, i);
            if (!t) return -1;
            t->s = jx_arena_strdup(L->a, s + i, j - i);
            t->len = j - i;
            if (!t->s) return ms_errf(L->err, ENOMEM, "%s: out of memory", L->name), -1;
            L->pos = j;
            continue;
        }
        if (ch == '\'' || ch == '"') {
            size_t j = i + 1;
            while (j < n && s[j] != ch) j += s[j] == '\\' ? 2 : 1;
            if (j >= n) return lex_fail(L, i, "unexpected char %s (unterminated string)", ch == '"' ? "'\"'" : "\"'\"");
            jtok *t = emit(L, TK_STRING, i);
            if (!t || decode_string(L, i, s + i + 1, j - i - 1, t) < 0) return -1;
            L->pos = j + 1;
            continue;
        }
        int type = 0;
        size_t len = 0;
        for (size_t q = 0; q < sizeof ops / sizeof ops[0]; q++) {
            size_t ol = strlen(ops[q].s);
            if (i + ol <= n && !memcmp(s + i, ops[q].s, ol)) {
                type = ops[q].type;
                len = ol;
                break;
            }
        }
        if (!type) {
            size_t j = i;
            uint32_t cp = jx_utf8_next(s, &j);
            if (cp < 0x80) return lex_fail(L, i, "unexpected char '%c'", (char)cp);
            return lex_fail(L, i, "unexpected char U+%04X (names are ASCII)", cp);
        }
        if (type == TK_LPAREN || type == TK_LBRACKET || type == TK_LBRACE) {
            if (L->nbal >= (int)sizeof L->balance) return lex_fail(L, i, "brackets nested too deeply");
            L->balance[L->nbal++] = type == TK_LPAREN ? ')' : type == TK_LBRACKET ? ']' : '}';
        } else if (type == TK_RPAREN || type == TK_RBRACKET || type == TK_RBRACE) {
            if (L->nbal == 0) return lex_fail(L, i, "unexpected '%c'", ch);
            char want = L->balance[--L->nbal];
            if (want != ch) return lex_fail(L, i, "unexpected '%c', expected '%c'", ch, want);
        }
        if (!emit(L, type, i)) return -1;
        L->pos = i + len;
    }
}

/* "{%" sign? \s* "raw" \s* ("-%}" \s* | "%}") at p: returns the end, 0 if not a raw tag */
static size_t raw_begin(const char *s, size_t n, size_t p, char *sign)
{
    size_t i = p + 2;
    *sign = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) *sign = s[i++];
    i = skip_space(s, n, i);
    if (i + 3 > n || memcmp(s + i, "raw", 3) != 0) return 0;
    i = skip_space(s, n, i + 3);
    if (i + 3 <= n && s[i] == '-' && s[i + 1] == '%' && s[i + 2] == '}') return skip_space(s, n, i + 3);
    if (i + 2 <= n && s[i] == '%' && s[i + 1] == '}') return i + 2;
    return 0;
}

/* the earliest "{%" sign? \s* "endraw" \s* end at or after p */
static bool raw_end(const char *s, size_t n, size_t p, size_t *at, size_t *end, char *sign)
{
    for (size_t q = p; q + 1 < n; q++) {
        if (s[q] != '{' || s[q + 1] != '%') continue;
        size_t i = q + 2;
        char sg = 0;
        if (i < n && (s[i] == '-' || s[i] == '+')) sg = s[i++];
        i = skip_space(s, n, i);
        if (i + 6 > n || memcmp(s + i, "endraw", 6) != 0) continue;
        i = skip_space(s, n, i + 6);
        size_t e = 0;
        if (i + 3 <= n && s[i] == '+' && s[i + 1] == '%' && s[i + 2] == '}') e = i + 3;
        else if (i + 3 <= n && s[i] == '-' && s[i + 1] == '%' && s[i + 2] == '}') e = skip_space(s, n, i + 3);
        else if (i + 2 <= n && s[i] == '%' && s[i + 1] == '}') {
            e = i + 2;
            if (e < n && s[e] == '\n') e++;
        }
        if (!e) continue;
        *at = q;
        *end = e;
        *sign = sg;
        return true;
    }
    return false;
}

int jx_lex(const char *src, size_t len, const char *name, jarena *a, jtok **toks, size_t *n_toks, ms_err *err)
{
    *toks = NULL;
    *n_toks = 0;
    if (!jx_utf8_valid(src, len)) return ms_errf(err, EINVAL, "%s: template is not valid UTF-8", name), -1;
    /* newlines -> "\n", drop one final newline */
    char *s = jx_arena_alloc(a, len + 1);
    if (!s) return ms_errf(err, ENOMEM, "%s: out of memory", name), -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n > 0 && s[n - 1] == '\n') n--;
    s[n] = 0;

    lexer L = {.s = s, .n = n, .name = name, .a = a, .err = err, .lc_line = 1, .lc_col = 1};
    bool line_starting = true;
    int rc = 0;
    while (rc == 0 && L.pos < n) {
        /* the next tag start */
        size_t p = L.pos;
        int kind = 0; /* '{', '%', '#' */
        for (; p + 1 < n; p++)
            if (s[p] == '{' && (s[p + 1] == '{' || s[p + 1] == '%' || s[p + 1] == '#')) {
                kind = s[p + 1];
                break;
            }
        if (!kind) {
            rc = emit_data(&L, L.pos, n - L.pos);
            L.pos = n;
            break;
        }
        char sign = 0;
        size_t raw_e = kind == '%' ? raw_begin(s, n, p, &sign) : 0;
        if (!raw_e && p + 2 < n && (s[p + 2] == '-' || s[p + 2] == '+')) sign = s[p + 2];
        size_t keep = strip_before(s + L.pos, p - L.pos, sign, kind == '{', line_starting);
        if ((rc = emit_data(&L, L.pos, keep)) < 0) break;
        if (raw_e) {
            size_t at, end;
            char esign;
            if (!raw_end(s, n, raw_e, &at, &end, &esign)) {
                rc = lex_fail(&L, p, "missing end of raw directive");
                break;
            }
            bool ls = s[raw_e - 1] == '\n';
            size_t k = strip_before(s + raw_e, at - raw_e, esign, false, ls);
            if ((rc = emit_data(&L, raw_e, k)) < 0) break;
            L.pos = end;
            line_starting = s[end - 1] == '\n';
            continue;
        }
        size_t body = p + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            size_t q = body, e = 0;
            for (; q + 1 < n; q++) {
                if (s[q] == '+' && q + 2 < n && s[q + 1] == '#' && s[q + 2] == '}') {
                    e = q + 3;
                    break;
                }
                if (s[q] == '-' && q + 2 < n && s[q + 1] == '#' && s[q + 2] == '}') {
                    e = skip_space(s, n, q + 3);
                    break;
                }
                if (s[q] == '#' && s[q + 1] == '}') {
                    e = q + 2;
                    if (e < n && s[e] == '\n') e++;
                    break;
                }
            }
            if (!e) {
                rc = lex_fail(&L, p, "missing end of comment tag");
                break;
            }
            L.pos = e;
            line_starting = s[e - 1] == '\n';
            continue;
        }
        bool is_block = kind == '%';
        if (!emit(&L, is_block ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, p)) {
            rc = -1;
            break;
        }
        L.pos = body;
        rc = lex_tag(&L, is_block, &line_starting);
    }
    if (rc == 0 && !emit(&L, TK_EOF, n)) rc = -1;
    if (rc < 0) {
        free(L.toks);
        return -1;
    }
    *toks = L.toks;
    *n_toks = L.nt;
    return 0;
}

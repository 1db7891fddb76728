/* strbuf.c - growable string buffer (see strbuf.h). Capacity doubles from 256
 * bytes; printf formats into the free tail first and grows only when needed. */
#include "strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool ms_sb_reserve(ms_strbuf *b, size_t extra)
{
    if (b->oom) return false;
    if (extra > SIZE_MAX / 2 - b->len) {
        b->oom = true;
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
        b->oom = true;
        return false;
    }
    b->s = s;
    b->cap = cap;
    return true;
}

void ms_sb_putn(ms_strbuf *b, const char *s, size_t n)
{
    if (!ms_sb_reserve(b, n)) return;
    if (n) memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void ms_sb_puts(ms_strbuf *b, const char *s)
{
    if (s) ms_sb_putn(b, s, strlen(s));
}

void ms_sb_putc(ms_strbuf *b, char c) { ms_sb_putn(b, &c, 1); }

void ms_sb_printf(ms_strbuf *b, const char *fmt, ...)
{
    if (!ms_sb_reserve(b, 0)) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n >= b->cap - b->len) {
        if (!ms_sb_reserve(b, (size_t)n)) return;
        va_start(ap, fmt);
        vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void ms_sb_json_str(ms_strbuf *b, const char *s, size_t n)
{
    ms_sb_putc(b, '"');
    size_t run = 0; /* bytes copied as they are, flushed in one append */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", c);
                esc = u;
            }
        }
        if (!esc) continue;
        ms_sb_putn(b, s + run, i - run);
        ms_sb_puts(b, esc);
        run = i + 1;
    }
    ms_sb_putn(b, s + run, n - run);
    ms_sb_putc(b, '"');
}

void ms_sb_newline(ms_strbuf *b, int indent, int level)
{
    int n = indent * level;
    if (n < 0 || !ms_sb_reserve(b, (size_t)n + 1)) return;
    b->s[b->len++] = '\n';
    memset(b->s + b->len, ' ', (size_t)n);
    b->len += (size_t)n;
    b->s[b->len] = 0;
}

void ms_sb_truncate(ms_strbuf *b, size_t n)
{
    if (n < b->len) {
        b->len = n;
        b->s[n] = 0;
    }
}

const char *ms_sb_str(const ms_strbuf *b) { return b->s ? b->s : ""; }

char *ms_sb_take(ms_strbuf *b)
{
    char *s = b->s;
    if (!s && !b->oom) s = calloc(1, 1);
    if (b->oom) {
        free(s);
        s = NULL;
    }
    *b = (ms_strbuf){0};
    return s;
}

int ms_sb_error(const ms_strbuf *b, const char *what, ms_err *err)
{
    return b->oom ? ms_errf(err, ENOMEM, "%s: out of memory", what) : 0;
}

void ms_sb_free(ms_strbuf *b)
{
    free(b->s);
    *b = (ms_strbuf){0};
}

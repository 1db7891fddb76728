/* strbuf.h - one growable, always NUL-terminated string buffer for everything
 * that builds text (templates, JSON, safetensors headers, reports).
 *
 * Out of memory is sticky: after a failed growth every later append is a
 * no-op and `oom` stays set, so builders append freely and check once at the
 * end (ms_sb_error). An empty buffer ({0}) is valid; ms_sb_free releases it. */
#ifndef MS_STRBUF_H
#define MS_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

typedef struct ms_strbuf {
    char *s;        /* NUL-terminated text (NULL until the first append) */
    size_t len;     /* bytes, excluding the NUL */
    size_t cap;
    bool oom;       /* an allocation failed: the content is incomplete */
} ms_strbuf;

/* Make room for `extra` more bytes (and the NUL). false (and oom set) on failure. */
bool ms_sb_reserve(ms_strbuf *b, size_t extra);
void ms_sb_putn(ms_strbuf *b, const char *s, size_t n);
void ms_sb_puts(ms_strbuf *b, const char *s); /* s may be NULL (nothing appended) */
void ms_sb_putc(ms_strbuf *b, char c);
void ms_sb_printf(ms_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal of s[0..n) with quotes; control bytes escaped, other
 * bytes copied as they are (UTF-8 stays UTF-8). */
void ms_sb_json_str(ms_strbuf *b, const char *s, size_t n);
/* A newline then indent * level spaces (pretty-printed JSON). */
void ms_sb_newline(ms_strbuf *b, int indent, int level);
/* Drop everything after the first n bytes (n <= len). */
void ms_sb_truncate(ms_strbuf *b, size_t n);
/* The text, never NULL ("" for an empty buffer). */
const char *ms_sb_str(const ms_strbuf *b);
/* Take ownership of the text (malloc'd, never NULL unless oom); the buffer is reset. */
char *ms_sb_take(ms_strbuf *b);
/* -ENOMEM with a message naming `what` if an append failed, else 0. */
int ms_sb_error(const ms_strbuf *b, const char *what, ms_err *err);
void ms_sb_free(ms_strbuf *b);

#endif

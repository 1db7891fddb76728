/* util.h - small helpers shared by the CLI and the library: size and list
 * parsing ("110G", "1,2,3"), monotonic time, checked arithmetic, file slurping,
 * aligned allocation. All return negative errno + ms_err on bad input. */
#ifndef MS_UTIL_H
#define MS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MS_MAX(a, b) ((a) > (b) ? (a) : (b))
#define MS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MS_ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))

/* Parse a byte size: plain bytes or a K/M/G/T suffix (binary, 1K = 1024), with
 * an optional "B"/"iB" ("110G", "512MiB", "1.5G"). what names the option. */
int ms_parse_size(const char *s, uint64_t *out, const char *what, ms_err *err);

/* Parse a comma-separated list of sizes. *out is malloc'd. */
int ms_parse_size_list(const char *s, uint64_t **out, int *n, const char *what, ms_err *err);

/* Parse a non-negative integer (decimal) in [lo, hi]. */
int ms_parse_int(const char *s, long long lo, long long hi, long long *out, const char *what, ms_err *err);

/* Parse a comma-separated list of integers in [lo, hi]. *out is malloc'd. */
int ms_parse_int_list(const char *s, long long lo, long long hi, long long **out, int *n,
                      const char *what, ms_err *err);

/* Parse a float. */
int ms_parse_double(const char *s, double *out, const char *what, ms_err *err);

/* Format bytes as "1.50 GiB" into buf (returns buf). */
char *ms_fmt_bytes(uint64_t b, char *buf, size_t len);

/* Monotonic clock in nanoseconds / seconds. */
uint64_t ms_now_ns(void);
double ms_now_s(void);

/* Whole file into a NUL-terminated malloc'd buffer (len excludes the NUL).
 * max_len bounds what will be read (error past it). */
int ms_read_file(const char *path, size_t max_len, char **out, size_t *len, ms_err *err);

/* Overflow-checked helpers: return false on overflow. */
static inline bool ms_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool ms_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* Aligned allocation (alignment a power of two >= sizeof(void*)); NULL on failure.
 * Free with free(). */
void *ms_aligned_alloc(size_t align, size_t size);

/* Join a directory and a file name into buf; returns -ENAMETOOLONG if it does not fit. */
int ms_path_join(char *buf, size_t len, const char *dir, const char *name, ms_err *err);

/* Peak RSS of this process in bytes (VmHWM), 0 if unknown. Current RSS (VmRSS). */
/* Write code point c (< 0x110000) as UTF-8 into o[0..4); returns the byte count. */
int ms_utf8_put(char *o, uint32_t c);

uint64_t ms_peak_rss(void);
uint64_t ms_cur_rss(void);

/* Bytes this process caused to be read from storage (/proc/self/io read_bytes:
 * O_DIRECT reads and page-cache fills, including mmap faults and read-ahead). */
uint64_t ms_io_read_bytes(void);

/* MemAvailable from /proc/meminfo in bytes, 0 if unknown. */
uint64_t ms_mem_available(void);

/* Number of physical cores (falls back to online CPUs). */
int ms_physical_cores(void);

#endif

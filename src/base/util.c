/* util.c - see util.h. Parsing is strict: trailing garbage, empty items,
 * overflow and out-of-range values are errors that name the option. */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int ms_parse_size(const char *s, uint64_t *out, const char *what, ms_err *err)
{
    if (!s || !*s) return ms_errf(err, EINVAL, "%s: empty size", what);
    const char *p = s;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '-' || *p == '+') return ms_errf(err, EINVAL, "%s: invalid size '%s'", what, s);
    errno = 0;
    char *end;
    double v = strtod(p, &end);
    if (end == p || errno || !isfinite(v) || v < 0)
        return ms_errf(err, EINVAL, "%s: invalid size '%s' (expected e.g. 512M, 8G, 110G)", what, s);
    double mult = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mult = 1024.0; end++; break;
    case 'M': mult = 1024.0 * 1024; end++; break;
    case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (mult > 1 && (*end == 'i' || *end == 'I')) end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end != 0)
        return ms_errf(err, EINVAL, "%s: invalid size '%s' (expected e.g. 512M, 8G, 110G)", what, s);
    double b = v * mult;
    if (b >= 18446744073709551615.0) return ms_errf(err, ERANGE, "%s: size '%s' too large", what, s);
    *out = (uint64_t)b;
    return 0;
}

/* Split a comma list; calls item() for each element. */
static int split_list(const char *s, const char *what, ms_err *err, int (*item)(const char *, void *), void *ctx)
{
    if (!s || !*s) return ms_errf(err, EINVAL, "%s: empty list", what);
    size_t n = strlen(s);
    char *buf = malloc(n + 1);
    if (!buf) return ms_errf(err, ENOMEM, "out of memory");
    memcpy(buf, s, n + 1);
    int rc = 0;
    char *save = NULL, *p = buf;
    /* strtok would skip empty items ("1,,2"); detect them explicitly. */
    if (buf[0] == ',' || buf[n - 1] == ',' || strstr(buf, ",,")) {
        free(buf);
        return ms_errf(err, EINVAL, "%s: empty item in list '%s'", what, s);
    }
    for (char *tok = strtok_r(p, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        rc = item(tok, ctx);
        if (rc < 0) break;
    }
    free(buf);
    return rc;
}

struct list_ctx {
    void *arr;
    int n, cap;
    size_t elt;
    const char *what;
    ms_err *err;
    long long lo, hi;
};

static int list_push(struct list_ctx *c, const void *v)
{
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        void *a = realloc(c->arr, (size_t)cap * c->elt);
        if (!a) return ms_errf(c->err, ENOMEM, "out of memory");
        c->arr = a;
        c->cap = cap;
    }
    memcpy((char *)c->arr + (size_t)c->n * c->elt, v, c->elt);
    c->n++;
    return 0;
}

static int size_item(const char *tok, void *ctx)
{
    struct list_ctx *c = ctx;
    uint64_t v;
    int rc = ms_parse_size(tok, &v, c->what, c->err);
    if (rc < 0) return rc;
    return list_push(c, &v);
}

int ms_parse_size_list(const char *s, uint64_t **out, int *n, const char *what, ms_err *err)
{
    struct list_ctx c = {.elt = sizeof(uint64_t), .what = what, .err = err};
    int rc = split_list(s, what, err, size_item, &c);
    if (rc < 0) {
        free(c.arr);
        return rc;
    }
    *out = c.arr;
    *n = c.n;
    return 0;
}

int ms_parse_int(const char *s, long long lo, long long hi, long long *out, const char *what, ms_err *err)
{
    if (!s || !*s) return ms_errf(err, EINVAL, "%s: empty value", what);
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != 0) return ms_errf(err, EINVAL, "%s: '%s' is not an integer", what, s);
    if (errno == ERANGE || v < lo || v > hi)
        return ms_errf(err, ERANGE, "%s: %s is out of range [%lld, %lld]", what, s, lo, hi);
    *out = v;
    return 0;
}

static int int_item(const char *tok, void *ctx)
{
    struct list_ctx *c = ctx;
    long long v;
    while (isspace((unsigned char)*tok)) tok++;
    int rc = ms_parse_int(tok, c->lo, c->hi, &v, c->what, c->err);
    if (rc < 0) return rc;
    return list_push(c, &v);
}

int ms_parse_int_list(const char *s, long long lo, long long hi, long long **out, int *n, const char *what,
                      ms_err *err)
{
    struct list_ctx c = {.elt = sizeof(long long), .what = what, .err = err, .lo = lo, .hi = hi};
    int rc = split_list(s, what, err, int_item, &c);
    if (rc < 0) {
        free(c.arr);
        return rc;
    }
    *out = c.arr;
    *n = c.n;
    return 0;
}

int ms_parse_double(const char *s, double *out, const char *what, ms_err *err)
{
    if (!s || !*s) return ms_errf(err, EINVAL, "%s: empty value", what);
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != 0 || errno || !isfinite(v))
        return ms_errf(err, EINVAL, "%s: '%s' is not a number", what, s);
    *out = v;
    return 0;
}

char *ms_fmt_bytes(uint64_t b, char *buf, size_t len)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    if (i == 0) snprintf(buf, len, "%" PRIu64 " B", b);
    else snprintf(buf, len, "%.2f %s", v, u[i]);
    return buf;
}

uint64_t ms_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double ms_now_s(void) { return (double)ms_now_ns() * 1e-9; }

int ms_read_file(const char *path, size_t max_len, char **out, size_t *len, ms_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ms_errf(err, errno, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return ms_errf(err, e, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ms_errf(err, EINVAL, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_len) {
        close(fd);
        return ms_errf(err, EFBIG, "%s: file too large (%lld bytes, limit %zu)", path, (long long)st.st_size,
                       max_len);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return ms_errf(err, ENOMEM, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            close(fd);
            return ms_errf(err, e, "%s: read failed: %s", path, strerror(e));
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        free(buf);
        return ms_errf(err, EIO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return 0;
}

void *ms_aligned_alloc(size_t align, size_t size)
{
    void *p = NULL;
    if (size == 0) size = align;
    if (posix_memalign(&p, align, size) != 0) return NULL;
    return p;
}

int ms_path_join(char *buf, size_t len, const char *dir, const char *name, ms_err *err)
{
    int n = snprintf(buf, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len) return ms_errf(err, ENAMETOOLONG, "%s/%s: path too long", dir, name);
    return 0;
}

static uint64_t status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    uint64_t v = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtoull(line + kl + 1, NULL, 10) * 1024;
            break;
        }
    }
    fclose(f);
    return v;
}

uint64_t ms_peak_rss(void) { return status_kb("VmHWM"); }
uint64_t ms_cur_rss(void) { return status_kb("VmRSS"); }

uint64_t ms_io_read_bytes(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    if (!f) return 0;
    char line[128];
    uint64_t v = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "read_bytes:", 11) == 0) {
            v = strtoull(line + 11, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

uint64_t ms_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    uint64_t v = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "MemAvailable:", 13) == 0) {
            v = strtoull(line + 13, NULL, 10) * 1024;
            break;
        }
    }
    fclose(f);
    return v;
}

int ms_physical_cores(void)
{
    /* Count distinct (physical id, core id) pairs; fall back to online CPUs. */
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1) online = 1;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return (int)online;
    char line[256];
    int phys = -1, core = -1, n = 0;
    int seen[1024][2];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "physical id", 11) == 0) phys = atoi(strchr(line, ':') + 1);
        else if (strncmp(line, "core id", 7) == 0) {
            core = atoi(strchr(line, ':') + 1);
            bool dup = false;
            for (int i = 0; i < n; i++)
                if (seen[i][0] == phys && seen[i][1] == core) dup = true;
            if (!dup && n < 1024) {
                seen[n][0] = phys;
                seen[n][1] = core;
                n++;
            }
        }
    }
    fclose(f);
    if (n <= 0 || n > online) return (int)online;
    return n;
}

int ms_utf8_put(char *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* profile.c - see profile.h: save/load of the per-(layer, expert) selection
 * counts. Parsing is strict and names the file and line of the first problem. */
#include "profile.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define PROFILE_MAX_BYTES (64u << 20)

int ms_profile_init(ms_profile *p, uint32_t n_layers, uint32_t n_experts, uint32_t top_k, ms_err *err)
{
    memset(p, 0, sizeof *p);
    if (!n_layers || !n_experts || !top_k || top_k > n_experts || (uint64_t)n_layers * n_experts > (1u << 26))
        return ms_errf(err, EINVAL, "profile: bad geometry (n_layers %u, n_experts %u, top_k %u)", n_layers,
                       n_experts, top_k);
    p->count = calloc((size_t)n_layers * n_experts, sizeof *p->count);
    if (!p->count) return ms_errf(err, ENOMEM, "profile: out of memory");
    p->n_layers = n_layers;
    p->n_experts = n_experts;
    p->top_k = top_k;
    return 0;
}

void ms_profile_free(ms_profile *p)
{
    free(p->count);
    memset(p, 0, sizeof *p);
}

int ms_profile_save(const ms_profile *p, const char *path, ms_err *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return ms_errf(err, errno, "%s: cannot create: %s", path, strerror(errno));
    fprintf(f, "moestream-profile 1\nn_layers %u n_experts %u top_k %u tokens %" PRIu64 "\n", p->n_layers,
            p->n_experts, p->top_k, p->tokens);
    for (uint32_t l = 0; l < p->n_layers; l++)
        for (uint32_t e = 0; e < p->n_experts; e++)
            fprintf(f, "%" PRIu64 "%c", p->count[(size_t)l * p->n_experts + e], e + 1 == p->n_experts ? '\n' : ' ');
    if (ferror(f) | (fclose(f) != 0)) return ms_errf(err, EIO, "%s: write failed", path);
    return 0;
}

/* Read an unsigned decimal at *s; advance; false if none. */
static bool read_u64(const char **s, uint64_t *out)
{
    const char *p = *s;
    while (*p == ' ' || *p == '\t') p++;
    if (!isdigit((unsigned char)*p)) return false;
    uint64_t v = 0;
    while (isdigit((unsigned char)*p)) {
        if (v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + (uint64_t)(*p++ - '0');
    }
    *s = p;
    *out = v;
    return true;
}

int ms_profile_load(const char *path, ms_profile *p, ms_err *err)
{
    memset(p, 0, sizeof *p);
    char *buf;
    size_t len;
    int rc = ms_read_file(path, PROFILE_MAX_BYTES, &buf, &len, err);
    if (rc < 0) return rc;
    const char *s = buf;
    unsigned nl, ne, k;
    unsigned long long tokens;
    int used = 0;
    if (strncmp(s, "moestream-profile 1\n", 20) != 0) {
        free(buf);
        return ms_errf(err, EINVAL, "%s: line 1: not a moestream profile (expected 'moestream-profile 1')", path);
    }
    s += 20;
    if (sscanf(s, "n_layers %u n_experts %u top_k %u tokens %llu%n", &nl, &ne, &k, &tokens, &used) != 4 ||
        s[used] != '\n') {
        free(buf);
        return ms_errf(err, EINVAL, "%s: line 2: expected 'n_layers L n_experts E top_k K tokens T'", path);
    }
    s += used + 1;
    rc = ms_profile_init(p, nl, ne, k, err);
    if (rc < 0) {
        ms_err_prefix(err, "%s: ", path);
        free(buf);
        return rc;
    }
    p->tokens = tokens;
    for (uint32_t l = 0; l < nl; l++) {
        for (uint32_t e = 0; e < ne; e++) {
            if (!read_u64(&s, &p->count[(size_t)l * ne + e])) {
                ms_profile_free(p);
                free(buf);
                return ms_errf(err, EINVAL, "%s: line %u: expected %u counts", path, l + 3, ne);
            }
        }
        while (*s == ' ' || *s == '\t') s++;
        if (*s != '\n') {
            ms_profile_free(p);
            free(buf);
            return ms_errf(err, EINVAL, "%s: line %u: more than %u counts or garbage", path, l + 3, ne);
        }
        s++;
    }
    if (*s) {
        ms_profile_free(p);
        free(buf);
        return ms_errf(err, EINVAL, "%s: line %u: unexpected data after %u layers", path, nl + 3, nl);
    }
    free(buf);
    return 0;
}

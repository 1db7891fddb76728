/* strmap.c - see strmap.h. */
#include "strmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t ms_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static int grow(ms_strmap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    const char **nk = calloc(ncap, sizeof *nk);
    int64_t *nv = calloc(ncap, sizeof *nv);
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = ms_hash_str(m->keys[i]) & (ncap - 1);
        while (nk[j]) j = (j + 1) & (ncap - 1);
        nk[j] = m->keys[i];
        nv[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = nk;
    m->vals = nv;
    m->cap = ncap;
    return 0;
}

int ms_strmap_put(ms_strmap *m, const char *key, int64_t val)
{
    if ((m->len + 1) * 10 >= m->cap * 7) {
        int rc = grow(m);
        if (rc < 0) return rc;
    }
    size_t j = ms_hash_str(key) & (m->cap - 1);
    while (m->keys[j]) {
        if (strcmp(m->keys[j], key) == 0) {
            m->vals[j] = val;
            return 1;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = key;
    m->vals[j] = val;
    m->len++;
    return 0;
}

int64_t ms_strmap_get(const ms_strmap *m, const char *key)
{
    if (!m->cap) return -1;
    size_t j = ms_hash_str(key) & (m->cap - 1);
    while (m->keys[j]) {
        if (strcmp(m->keys[j], key) == 0) return m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

void ms_strmap_free(ms_strmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

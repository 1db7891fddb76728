/* strmap.h - open-addressing hash map from NUL-terminated strings to int64 values
 * (FNV-1a, linear probing, grows at 70% load). Keys are not copied: the caller
 * keeps them alive (the tensor table owns its names). */
#ifndef MS_STRMAP_H
#define MS_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct ms_strmap {
    const char **keys; /* [cap], NULL = empty */
    int64_t *vals;     /* [cap] */
    size_t cap, len;
} ms_strmap;

uint64_t ms_hash_str(const char *s);
/* Insert or replace. Returns 0, 1 if the key already existed (value replaced), or -ENOMEM. */
int ms_strmap_put(ms_strmap *m, const char *key, int64_t val);
/* Lookup: returns the value or -1 if absent. */
int64_t ms_strmap_get(const ms_strmap *m, const char *key);
void ms_strmap_free(ms_strmap *m);

#endif

/* profile.h - an expert-popularity profile learned from a previous trace of the
 * same model: how often each (layer, expert) was selected. The `pin` policy loads
 * it and protects the most popular experts. A small text file:
 *
 *     moestream-profile 1
 *     n_layers 8 n_experts 64 top_k 6 tokens 2048
 *     <n_layers lines, each n_experts counts separated by spaces>
 *
 * `moestream simulate --trace T --save-profile P` writes one. */
#ifndef MS_PROFILE_H
#define MS_PROFILE_H

#include <stdint.h>

#include "err.h"

typedef struct ms_profile {
    uint32_t n_layers, n_experts, top_k;
    uint64_t tokens;
    uint64_t *count; /* [n_layers * n_experts], key = layer * n_experts + expert */
} ms_profile;

int ms_profile_init(ms_profile *p, uint32_t n_layers, uint32_t n_experts, uint32_t top_k, ms_err *err);
void ms_profile_free(ms_profile *p);
int ms_profile_save(const ms_profile *p, const char *path, ms_err *err);
/* Strict: bad magic/version, geometry, missing or non-numeric counts, extra
 * data -> error naming the file and line. */
int ms_profile_load(const char *path, ms_profile *p, ms_err *err);

#endif

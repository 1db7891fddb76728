/* resident.h - the resident weights: every tensor the model store marked
 * MS_ROLE_RESIDENT, read into one 64-byte-aligned allocation of our own (counted
 * in the budget; the page cache is dropped behind each read). data[i] points at
 * tensor i's bytes, NULL for non-resident tensors. */
#ifndef MS_RESIDENT_H
#define MS_RESIDENT_H

#include <stdint.h>

#include "err.h"
#include "model.h"

typedef struct ms_resident {
    uint8_t *mem;
    uint64_t bytes;
    const void **data; /* [n_tensors] */
} ms_resident;

/* progress(done, total, arg) is called after each tensor (may be NULL). */
int ms_resident_load(const ms_model *m, ms_resident *r, void (*progress)(uint64_t, uint64_t, void *), void *arg,
                     ms_err *err);
void ms_resident_free(ms_resident *r);

/* Data of a tensor (NULL if not resident). */
static inline const void *ms_resident_data(const ms_resident *r, const ms_model *m, const ms_tensor *t)
{
    return t ? r->data[t - m->tt.tensors] : NULL;
}

#endif

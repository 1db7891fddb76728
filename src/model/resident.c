/* resident.c - read the resident tensors into one allocation (see resident.h). */
#include "resident.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

int ms_resident_load(const ms_model *m, ms_resident *r, void (*progress)(uint64_t, uint64_t, void *), void *arg,
                     ms_err *err)
{
    memset(r, 0, sizeof *r);
    int n = m->tt.n_tensors;
    r->data = calloc((size_t)(n ? n : 1), sizeof *r->data);
    if (!r->data) return ms_errf(err, ENOMEM, "out of memory");
    uint64_t total = 0, payload = 0;
    for (int i = 0; i < n; i++)
        if (m->role[i] == MS_ROLE_RESIDENT) {
            total += MS_ALIGN_UP(m->tt.tensors[i].nbytes, 64);
            payload += m->tt.tensors[i].nbytes;
        }
    r->mem = ms_aligned_alloc(64, total ? total : 64);
    if (!r->mem) {
        ms_resident_free(r);
        return ms_errf(err, ENOMEM, "cannot allocate %llu bytes for resident weights", (unsigned long long)total);
    }
    r->bytes = total;
    uint64_t off = 0, done = 0;
    for (int i = 0; i < n; i++) {
        if (m->role[i] != MS_ROLE_RESIDENT) continue;
        const ms_tensor *t = &m->tt.tensors[i];
        int rc = ms_tt_read(&m->tt, t, r->mem + off, true, err);
        if (rc < 0) {
            ms_resident_free(r);
            return rc;
        }
        r->data[i] = r->mem + off;
        off += MS_ALIGN_UP(t->nbytes, 64);
        done += t->nbytes;
        if (progress) progress(done, payload, arg);
    }
    return 0;
}

void ms_resident_free(ms_resident *r)
{
    free(r->mem);
    free(r->data);
    memset(r, 0, sizeof *r);
}

/* engine_mmap.c - the page-cache baseline: every file mapped read-only
 * (MAP_SHARED), a read "completes" by copying out of the mapping (page faults
 * and kernel readahead do the I/O), or with MS_IO_F_MMAP_NOCOPY by only
 * returning the address inside the mapping (what llama.cpp does: the bytes are
 * faulted in later, when the matmul touches them).
 *
 * This is the behaviour the other backends are measured against, not a way to
 * run inside a budget: the kernel's page cache grows with every expert read and
 * is not counted in the expert cache's accounting. Copies happen in submit() on
 * the driving thread. Each attempt re-checks the file size (fstat) and stops at
 * the current end, so a file truncated between reads yields a clean short read
 * (-EIO from the driver) instead of SIGBUS; a truncation racing with the copy
 * itself can still raise SIGBUS, as with any mmap reader. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "io_engine.h"
#include "util.h"

typedef struct mmap_priv {
    int n_files;
    int *fds;
    uint8_t **maps;
    uint64_t *sizes;               /* mapped length (size at open) */
    ms_io_chunk *local_head, *local_tail;
    ms_io_chunk *done_head, *done_tail;
} mmap_priv;

static void mm_free(mmap_priv *m)
{
    for (int i = 0; i < m->n_files; i++)
        if (m->maps[i]) munmap(m->maps[i], m->sizes[i]);
    free(m->fds);
    free(m->maps);
    free(m->sizes);
    free(m);
}

static int mm_init(ms_io_engine *e, const ms_io_engine_args *a, ms_err *err)
{
    mmap_priv *m = calloc(1, sizeof *m);
    size_t n = a->n_files ? (size_t)a->n_files : 1;
    if (!m || !(m->fds = calloc(n, sizeof *m->fds)) || !(m->maps = calloc(n, sizeof *m->maps)) ||
        !(m->sizes = calloc(n, sizeof *m->sizes))) {
        if (m) {
            free(m->fds);
            free(m->maps);
            free(m);
        }
        return ms_errf(err, ENOMEM, "io mmap: out of memory");
    }
    m->n_files = a->n_files;
    for (int i = 0; i < a->n_files; i++) {
        m->fds[i] = a->fds[i];
        if (a->sizes[i] == 0) continue;
        void *p = mmap(NULL, a->sizes[i], PROT_READ, MAP_SHARED, a->fds[i], 0);
        if (p == MAP_FAILED) {
            int e2 = errno;
            mm_free(m);
            return ms_errf(err, e2, "io mmap: file %d: mmap of %llu bytes: %s", i,
                           (unsigned long long)a->sizes[i], strerror(e2));
        }
        m->maps[i] = p;
        m->sizes[i] = a->sizes[i];
    }
    e->priv = m;
    return 0;
}

static void mm_queue(ms_io_engine *e, ms_io_chunk *c)
{
    mmap_priv *m = e->priv;
    c->elink = NULL;
    if (m->local_tail) m->local_tail->elink = c;
    else m->local_head = c;
    m->local_tail = c;
}

static void mm_do(mmap_priv *m, ms_io_chunk *c)
{
    struct stat st;
    if (fstat(m->fds[c->file], &st) < 0) {
        c->res = -(int64_t)errno;
        return;
    }
    uint64_t end = MS_MIN((uint64_t)st.st_size, m->sizes[c->file]);
    if (c->off >= end) {
        c->res = 0; /* end of file: the driver decides */
        return;
    }
    uint64_t n = end - c->off < c->len ? end - c->off : c->len;
    c->map = m->maps[c->file] + c->off;
    if (c->buf) memcpy(c->buf, c->map, n);
    c->res = (int64_t)n;
}

static int mm_submit(ms_io_engine *e, ms_err *err)
{
    (void)err;
    mmap_priv *m = e->priv;
    for (ms_io_chunk *c = m->local_head; c; c = c->elink) mm_do(m, c);
    if (m->local_head) {
        if (m->done_tail) m->done_tail->elink = m->local_head;
        else m->done_head = m->local_head;
        m->done_tail = m->local_tail;
    }
    m->local_head = m->local_tail = NULL;
    return 0;
}

static int mm_reap(ms_io_engine *e, ms_io_chunk **out, int max, bool wait, ms_err *err)
{
    (void)wait;
    mmap_priv *m = e->priv;
    if (m->local_head) mm_submit(e, err);
    int n = 0;
    while (n < max && m->done_head) {
        ms_io_chunk *c = m->done_head;
        m->done_head = c->elink;
        if (!m->done_head) m->done_tail = NULL;
        out[n++] = c;
    }
    return n;
}

static void mm_exit(ms_io_engine *e)
{
    if (e->priv) mm_free(e->priv);
    e->priv = NULL;
}

const ms_io_engine_ops ms_io_engine_mmap = {
    .version = MS_IO_OPS_VERSION,
    .name = "mmap",
    .caps = MS_IO_CAP_NOCHUNK,
    .init = mm_init,
    .queue = mm_queue,
    .submit = mm_submit,
    .reap = mm_reap,
    .exit = mm_exit,
};

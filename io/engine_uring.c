/* engine_uring.c - the io_uring backend (default): one SQE per read attempt,
 * one io_uring_submit per batch, completions by peeking the CQ ring.
 *
 * The ring has at least queue_depth SQ entries (the driver never has more reads
 * in flight) and the default 2x CQ entries, so neither ring can overflow. Setup
 * asks for COOP_TASKRUN | TASKRUN_FLAG (completions are posted when the driving
 * thread enters the kernel, no IPIs; liburing's peek flushes pending task work)
 * and retries without them on kernels before 5.19. The shard files are registered as fixed
 * files and the cache arena as fixed buffers (read_fixed) when the kernel
 * allows; refusals are quiet and only visible in the stats. No SQPOLL: it would
 * burn a core the compute threads need. No SINGLE_ISSUER: it ties the ring to
 * the thread that created it, and the context may be created on one thread and
 * driven from another (one at a time).
 *
 * A full SQ ring (which the queue-depth bound should prevent) is handled as
 * liburing's users do: submit what is filled and take the SQE again; if the
 * kernel still holds the ring (EBUSY/EAGAIN), the read waits in a deferral
 * list of queue_depth entries that every submit and reap drains first, so
 * queue() never loses or refuses a read. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <liburing.h>

#include "io_engine.h"
#include "util.h"

typedef struct uring_priv {
    struct io_uring ring;
    unsigned entries;
    unsigned unsubmitted;    /* SQEs filled but not yet accepted by the kernel */
    bool buffers_registered;
    struct io_uring_cqe **cqes;
    ms_io_chunk **defer;     /* [queue_depth] reads waiting for an SQE */
    unsigned n_defer, defer_cap;
} uring_priv;

static void fill_sqe(ms_io_engine *e, struct io_uring_sqe *sqe, ms_io_chunk *c)
{
    uring_priv *u = e->priv;
    int fd = e->fixed_files ? (int)c->file : c->fd;
    if (c->buf_index >= 0) io_uring_prep_read_fixed(sqe, fd, c->buf, c->len, c->off, c->buf_index);
    else io_uring_prep_read(sqe, fd, c->buf, c->len, c->off);
    if (e->fixed_files) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, c);
    u->unsubmitted++;
}

/* Move deferred reads into free SQEs, oldest first. */
static void drain_defer(ms_io_engine *e)
{
    uring_priv *u = e->priv;
    unsigned done = 0;
    while (done < u->n_defer) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
        if (!sqe) break;
        fill_sqe(e, sqe, u->defer[done++]);
    }
    memmove(u->defer, u->defer + done, (u->n_defer - done) * sizeof *u->defer);
    u->n_defer -= done;
}

static int u_init(ms_io_engine *e, const ms_io_engine_args *a, ms_err *err)
{
    uring_priv *u = calloc(1, sizeof *u);
    if (!u) return ms_errf(err, ENOMEM, "io_uring: out of memory");
    unsigned entries = 8;
    while (entries < a->queue_depth && entries < 32768) entries *= 2;
    u->entries = entries;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    int rc = io_uring_queue_init_params(entries, &u->ring, &p);
    if (rc == -EINVAL) {
        memset(&p, 0, sizeof p);
        rc = io_uring_queue_init_params(entries, &u->ring, &p);
    }
    if (rc < 0) {
        free(u);
        return ms_errf(err, -rc, "io_uring: cannot create a ring of %u entries: %s (try --io pread)", entries,
                       strerror(-rc));
    }
    u->cqes = calloc(entries * 2, sizeof *u->cqes);
    u->defer_cap = a->queue_depth ? a->queue_depth : 1;
    u->defer = calloc(u->defer_cap, sizeof *u->defer);
    if (!u->cqes || !u->defer) {
        free(u->cqes);
        free(u->defer);
        io_uring_queue_exit(&u->ring);
        free(u);
        return ms_errf(err, ENOMEM, "io_uring: out of memory");
    }
    e->priv = u;
    e->fixed_files = a->n_files > 0 && io_uring_register_files(&u->ring, a->fds, (unsigned)a->n_files) == 0;
    return 0;
}

static void u_queue(ms_io_engine *e, ms_io_chunk *c)
{
    uring_priv *u = e->priv;
    struct io_uring_sqe *sqe = u->n_defer ? NULL : io_uring_get_sqe(&u->ring);
    if (!sqe && !u->n_defer) { /* SQ full: hand the filled SQEs to the kernel, try again */
        int rc = io_uring_submit(&u->ring);
        if (rc > 0) u->unsubmitted -= MS_MIN((unsigned)rc, u->unsubmitted);
        sqe = io_uring_get_sqe(&u->ring);
    }
    if (sqe) {
        fill_sqe(e, sqe, c);
        return;
    }
    /* the driver keeps at most queue_depth reads in the engine, so this fits */
    if (u->n_defer < u->defer_cap) u->defer[u->n_defer++] = c;
}

static int u_submit(ms_io_engine *e, ms_err *err)
{
    uring_priv *u = e->priv;
    drain_defer(e);
    while (u->unsubmitted) {
        int rc = io_uring_submit(&u->ring);
        if (rc >= 0) {
            u->unsubmitted -= MS_MIN((unsigned)rc, u->unsubmitted);
            if (rc == 0) break;
            continue;
        }
        if (rc == -EINTR) continue;
        if (rc == -EAGAIN || rc == -EBUSY) break; /* kernel short of resources: next reap resubmits */
        return ms_errf(err, -rc, "io_uring_submit: %s", strerror(-rc));
    }
    return 0;
}

static int u_reap(ms_io_engine *e, ms_io_chunk **out, int max, bool wait, ms_err *err)
{
    uring_priv *u = e->priv;
    if (max > (int)u->entries * 2) max = (int)u->entries * 2;
    for (;;) {
        unsigned n = io_uring_peek_batch_cqe(&u->ring, u->cqes, (unsigned)max);
        if (n > 0) {
            for (unsigned i = 0; i < n; i++) {
                ms_io_chunk *c = io_uring_cqe_get_data(u->cqes[i]);
                c->res = u->cqes[i]->res;
                out[i] = c;
            }
            io_uring_cq_advance(&u->ring, n);
            return (int)n;
        }
        if (!wait) {
            if (u->unsubmitted || u->n_defer) u_submit(e, NULL);
            return 0;
        }
        drain_defer(e);
        /* Submits anything left over (EAGAIN earlier) and waits for one. */
        int rc = io_uring_submit_and_wait(&u->ring, 1);
        if (rc >= 0) {
            u->unsubmitted -= MS_MIN((unsigned)rc, u->unsubmitted);
            continue;
        }
        if (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY || rc == -ETIME) continue;
        return ms_errf(err, -rc, "io_uring: waiting for completions: %s", strerror(-rc));
    }
}

static int u_register_buffers(ms_io_engine *e, const struct iovec *iov, int n, ms_err *err)
{
    uring_priv *u = e->priv;
    if (u->buffers_registered) {
        io_uring_unregister_buffers(&u->ring);
        u->buffers_registered = false;
        e->fixed_buffers = false;
    }
    int rc = io_uring_register_buffers(&u->ring, iov, (unsigned)n);
    if (rc < 0) return ms_errf(err, -rc, "io_uring: registering %d buffers: %s", n, strerror(-rc));
    u->buffers_registered = true;
    e->fixed_buffers = true;
    return 0;
}

static void u_exit(ms_io_engine *e)
{
    uring_priv *u = e->priv;
    if (!u) return;
    io_uring_queue_exit(&u->ring);
    free(u->cqes);
    free(u->defer);
    free(u);
    e->priv = NULL;
}

const ms_io_engine_ops ms_io_engine_uring = {
    .version = MS_IO_OPS_VERSION,
    .name = "uring",
    .caps = MS_IO_CAP_DIRECT,
    .init = u_init,
    .queue = u_queue,
    .submit = u_submit,
    .reap = u_reap,
    .exit = u_exit,
    .register_buffers = u_register_buffers,
};

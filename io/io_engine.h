/* io_engine.h - the backend ops table behind io.h (internal to io/).
 *
 * A backend ("engine") only performs single read attempts: the driver (io.c)
 * hands it ms_io_chunk reads (file descriptor, aligned offset, length, buffer),
 * the engine performs each one once and hands it back with res = what the read
 * syscall returned (bytes, possibly short, or -errno). Everything else - request
 * splitting, queue-depth limiting, short-read resumption, EAGAIN/EINTR retries,
 * EOF detection, O_DIRECT fallback, stats - lives once in the driver, so every
 * backend has the same semantics. The ops table is versioned (MS_IO_OPS_VERSION)
 * like fio's ioengines:
 *
 *   init     create the engine for the given files (fds already open)
 *   queue    accept one read; it must not be visible to the kernel before submit
 *            (uring: fill an SQE). Never fails: the driver never queues more than
 *            the queue depth given to init.
 *   submit   start everything queued (uring: one io_uring_submit)
 *   reap     move up to max finished reads to out; wait for at least one if wait
 *            and anything is in flight. Returns the count or -errno (broken engine)
 *   exit     free; the driver has already reaped everything in flight
 *   register_buffers (optional) register fixed-buffer regions (replacing any
 *            earlier set); 0 or -errno. Sets e->fixed_buffers on success.
 * The buffered fallback needs nothing from engines: the driver clears O_DIRECT
 * on the open file description (fcntl F_SETFL), which fixed files share. */
#ifndef MS_IO_ENGINE_H
#define MS_IO_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "err.h"
#include "io.h"

typedef struct ms_io_chunk ms_io_chunk;

/* One read attempt of part of a request. */
struct ms_io_chunk {
    /* Set by the driver for each attempt. */
    int fd;              /* descriptor to read */
    uint32_t file;       /* file index (fixed-file slot) */
    bool direct;         /* fd was opened with O_DIRECT */
    uint64_t off;        /* file offset (aligned when direct) */
    uint32_t len;        /* bytes to read (<= MS_IO_MAX_CHUNK) */
    uint8_t *buf;        /* destination (aligned when direct) */
    int buf_index;       /* fixed-buffer index covering [buf, buf+len), or -1 */
    uint32_t attempt;    /* previous attempts of this chunk (fault determinism) */
    /* Set by the engine. */
    int64_t res;         /* bytes read or -errno */
    void *map;           /* mmap engine: address of file offset `off` in its mapping
                            (buf == NULL: NOCOPY, nothing is copied) */
    /* Engine-private: link for the engine's own lists while it owns the chunk. */
    ms_io_chunk *elink;
    uint64_t eval;       /* engine-private scratch (fault: ready time) */
    /* Driver bookkeeping. */
    uint32_t req;        /* owning request slot */
    uint64_t c_start;    /* chunk range relative to the request's aligned offset */
    uint64_t c_end;
    uint64_t done;       /* aligned bytes of the chunk already read */
    ms_io_chunk *next;   /* driver lists (pending FIFO, free list) */
};

typedef struct ms_io_engine ms_io_engine;

typedef struct ms_io_engine_args {
    const int *fds;          /* n_files descriptors */
    const bool *direct;      /* per file: fd has O_DIRECT */
    const uint64_t *sizes;   /* per file: size at open */
    int n_files;
    unsigned queue_depth;    /* the driver never has more reads in flight */
    unsigned n_threads;
    unsigned flags;          /* MS_IO_F_* */
    const char *spec;        /* fault engine: the spec after "fault:" */
} ms_io_engine_args;

/* Engine capabilities. */
enum {
    MS_IO_CAP_DIRECT = 1u << 0,  /* reads through the fds: open them O_DIRECT */
    MS_IO_CAP_NOCHUNK = 1u << 1, /* no benefit from splitting requests (mmap) */
};

typedef struct ms_io_engine_ops {
    int version;           /* MS_IO_OPS_VERSION */
    const char *name;
    unsigned caps;
    int (*init)(ms_io_engine *e, const ms_io_engine_args *a, ms_err *err);
    void (*queue)(ms_io_engine *e, ms_io_chunk *c);
    int (*submit)(ms_io_engine *e, ms_err *err);
    int (*reap)(ms_io_engine *e, ms_io_chunk **out, int max, bool wait, ms_err *err);
    void (*exit)(ms_io_engine *e);
    int (*register_buffers)(ms_io_engine *e, const struct iovec *iov, int n, ms_err *err);
} ms_io_engine_ops;

struct ms_io_engine {
    const ms_io_engine_ops *ops;
    void *priv;
    char name[32];         /* e.g. "fault(uring)" */
    bool fixed_files;      /* set by the engine */
    bool fixed_buffers;
};

extern const ms_io_engine_ops ms_io_engine_uring;
extern const ms_io_engine_ops ms_io_engine_pread;
extern const ms_io_engine_ops ms_io_engine_mmap;
extern const ms_io_engine_ops ms_io_engine_fault;

/* Look up a plain engine by name ("uring", "pread", "mmap"); NULL if unknown. */
const ms_io_engine_ops *ms_io_engine_find(const char *name);

/* The engine a fault spec wraps (its inner= key, default uring); NULL + err if
 * the spec names an unknown one. */
const ms_io_engine_ops *ms_io_fault_inner(const char *spec, ms_err *err);

#endif

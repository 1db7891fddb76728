/* io.h - the expert read path: batched reads of byte ranges of the model's
 * shard files into caller-owned aligned memory, behind one driver and a small
 * versioned ops table per backend (fio-engine style; see io_engine.h and
 * docs/IO.md).
 *
 *   backends  "uring" (default): liburing, O_DIRECT, fixed files + fixed buffers
 *             where the kernel allows, one io_uring_submit per batch;
 *             "pread": a pool of threads doing O_DIRECT pread (kernels that refuse
 *             io_uring); "mmap": the page-cache baseline (copy out of a MAP_SHARED
 *             mapping, or zero-copy); "fault:<spec>": wraps another backend and
 *             injects short reads, EAGAIN, EINTR, EIO and delays (tests, issue 8).
 *   driver    splits requests into reads of <= chunk_bytes, keeps at most
 *             queue_depth reads in flight (the rest wait in a FIFO and go in as
 *             reads complete), resumes short reads, retries EAGAIN/EINTR a bounded
 *             number of times, falls back to buffered reads + POSIX_FADV_DONTNEED
 *             on files that refuse O_DIRECT, and reports a request only when all
 *             of it is done (the kernel no longer writes into its buffer).
 *
 * Alignment contract (O_DIRECT): a request names a payload range (offset, len)
 * at any alignment. The driver reads the aligned superset given by ms_io_span()
 * with the context's alignment (ms_io_alignment(), >= 4096): dst must be aligned
 * to it and hold span.aligned_len bytes; the payload lands at dst +
 * span.payload_skip (also returned as ms_io_cqe.data). Every backend honours the
 * same layout, so a slot holds the same bytes whichever backend filled it.
 *
 * Threading: one ms_io is driven by one thread (queue/submit/reap/close from the
 * same thread); the pread backend's workers are internal. */
#ifndef MS_IO_H
#define MS_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Version of the backend ops table (io_engine.h); bumped on incompatible change. */
#define MS_IO_OPS_VERSION 1

/* Minimum alignment of offsets, lengths and buffers (a page). A file whose
 * filesystem asks for more (statx STATX_DIOALIGN) raises the context's. */
#define MS_IO_ALIGN_MIN 4096u

/* Defaults used when a config field is 0. */
#define MS_IO_DEFAULT_QD 64u              /* reads in flight */
#define MS_IO_DEFAULT_THREADS 8u          /* pread workers */
#define MS_IO_DEFAULT_CHUNK (1u << 20)    /* bytes per read: 1 MiB */
#define MS_IO_DEFAULT_RETRIES 64u         /* EAGAIN/EINTR/no-progress retries per read */
#define MS_IO_MAX_CHUNK (1ull << 30)      /* largest single read (and fixed-buffer piece) */

/* Environment variable: a fault spec ("short=0.3,eagain=0.2,...", see below)
 * that wraps whatever backend was chosen, unless MS_IO_F_IGNORE_ENV is set. */
#define MS_IO_FAULT_ENV "MOESTREAM_IO_FAULT"

enum {
    MS_IO_F_NO_DIRECT = 1u << 0,   /* never use O_DIRECT: buffered + DONTNEED for all files */
    MS_IO_F_MMAP_NOCOPY = 1u << 1, /* mmap backend: do not copy; cqe.data points into the
                                      mapping (valid until ms_io_close); dst may be NULL */
    MS_IO_F_IGNORE_ENV = 1u << 2,  /* ignore MOESTREAM_IO_FAULT */
};

typedef struct ms_io_config {
    /* NULL, "" or "auto": uring, or pread if the kernel refuses io_uring.
     * "uring" | "pread" | "mmap": that backend (error if unavailable).
     * "fault:<spec>": spec is comma-separated key=value:
     *     inner=uring|pread|mmap  backend wrapped (default uring)
     *     short=P      a read returns a random shorter count (bytes still correct)
     *     eagain=P     a read fails with -EAGAIN (retried by the driver)
     *     eintr=P      a read fails with -EINTR (retried by the driver)
     *     eio=P[@OFF]  a read fails with -EIO (with @OFF: only reads covering file
     *                  offset OFF, in any file); surfaces as an error
     *     nodirect=1   every read on an O_DIRECT descriptor fails with -EINVAL (a
     *                  filesystem that opens O_DIRECT but refuses it: buffered fallback)
     *     delay_us=N   each read completes 0.5N..N microseconds after submission
     *     seed=N       decisions are a hash of (seed, file, offset, length, attempt),
     *                  so a given request stream sees the same faults every run. */
    const char *backend;
    unsigned queue_depth;  /* max reads in flight; 0 = MS_IO_DEFAULT_QD */
    unsigned n_threads;    /* pread workers; 0 = MS_IO_DEFAULT_THREADS (capped at queue_depth) */
    uint64_t chunk_bytes;  /* max bytes per read, rounded up to the alignment;
                              0 = MS_IO_DEFAULT_CHUNK; capped at MS_IO_MAX_CHUNK */
    unsigned max_retries;  /* 0 = MS_IO_DEFAULT_RETRIES */
    unsigned flags;        /* MS_IO_F_* */
    uint64_t min_align;    /* alignment to use at least (a power of two <= 1 MiB;
                              0 = MS_IO_ALIGN_MIN); the files may ask for more */
} ms_io_config;

/* One read request: the payload range [offset, offset + len) of file `file`
 * (index into the paths given to ms_io_open) into dst (see the alignment
 * contract above). tag is returned untouched in the completion. */
typedef struct ms_io_req {
    uint32_t file;
    uint64_t offset;
    uint64_t len;
    void *dst;
    uint64_t tag;
} ms_io_req;

/* A finished request. res = len (payload bytes) on success, or -errno (the
 * message naming file, offset and errno went into reap's ms_err). data = where
 * the payload is: dst + payload_skip (mmap NOCOPY: inside the mapping); NULL on
 * error. */
typedef struct ms_io_cqe {
    uint64_t tag;
    int64_t res;
    void *data;
} ms_io_cqe;

/* The aligned superset of a payload range. */
typedef struct ms_io_span {
    uint64_t aligned_off;  /* offset rounded down to the alignment */
    uint64_t aligned_len;  /* bytes dst must hold (a multiple of the alignment) */
    uint64_t payload_skip; /* payload starts at dst + payload_skip */
} ms_io_span;

/* Counters since ms_io_open (or the last ms_io_stats_reset). */
typedef struct ms_io_stats {
    char backend[32];        /* "uring", "pread", "mmap", "fault(uring)", ... */
    uint64_t requests;       /* requests completed (ok or failed) */
    uint64_t errors;         /* requests that failed */
    uint64_t bytes_payload;  /* payload bytes delivered */
    uint64_t bytes_read;     /* bytes read from files (aligned supersets, re-reads included) */
    uint64_t reads;          /* read attempts issued to the backend */
    uint64_t submits;        /* backend submit calls (batches) */
    uint64_t short_reads;    /* reads that returned less than asked (resumed) */
    uint64_t retries;        /* EAGAIN / EINTR / no-progress retries */
    uint64_t busy_ns;        /* wall time with at least one read in flight */
    uint64_t wait_ns;        /* time the driving thread spent blocked in reap */
    unsigned max_inflight;   /* peak reads in flight */
    bool fixed_files;        /* uring: files registered */
    bool fixed_buffers;      /* uring: a registered region is in use */
    int buffered_files;      /* files read without O_DIRECT (buffered + DONTNEED) */
    int n_files;
} ms_io_stats;

typedef struct ms_io ms_io;

/* Open the files (O_RDONLY | O_DIRECT, else buffered) and start the backend.
 * cfg may be NULL (defaults). Errors name the file or the backend. */
int ms_io_open(ms_io **out, const ms_io_config *cfg, const char *const *paths, int n_paths,
               ms_err *err);

/* Wait for every read in flight (the kernel must stop writing into caller
 * memory before this returns), stop the backend, close the files. NULL is ok.
 * Completions not yet reaped are dropped. */
void ms_io_close(ms_io *io);

/* The alignment ms_io_open would choose for these files and this config
 * (opens the files and closes them again): what a budget plan needs to size
 * cache slots before the cache exists. */
int ms_io_probe_alignment(const ms_io_config *cfg, const char *const *paths, int n_paths, uint64_t *align,
                          ms_err *err);

/* Register a memory region (the cache arena) for fixed-buffer reads. uring
 * registers every region so far as fixed buffers in pieces of <= 1 GiB; if the
 * kernel refuses (EPERM, ENOMEM, RLIMIT_MEMLOCK, ...) plain reads are used and
 * stats.fixed_buffers stays false: that is not an error. Registering pins (and
 * faults in) the region's pages. Other backends just return 0. Must be called
 * with nothing in flight (-EBUSY otherwise). At most 64 regions. */
int ms_io_register_buffers(ms_io *io, void *base, size_t len, ms_err *err);

/* Alignment of the context (>= MS_IO_ALIGN_MIN, a power of two). */
uint64_t ms_io_alignment(const ms_io *io);

static inline void ms_io_span_align(uint64_t align, uint64_t offset, uint64_t len, ms_io_span *s)
{
    uint64_t a0 = offset / align * align;
    uint64_t a1 = (offset + len + align - 1) / align * align;
    s->aligned_off = a0;
    s->aligned_len = a1 - a0;
    s->payload_skip = offset - a0;
}

/* ms_io_span_align with the context's alignment. */
void ms_io_span_of(const ms_io *io, uint64_t offset, uint64_t len, ms_io_span *s);

/* Queue n requests (validated all first: file index, range inside the file,
 * len > 0, dst aligned; nothing is queued if one is bad). Nothing is read
 * before ms_io_submit (or ms_io_reap). Returns n or -errno. */
int ms_io_queue(ms_io *io, const ms_io_req *reqs, int n, ms_err *err);

/* Hand everything queued to the backend, as one batch (one io_uring_submit):
 * up to queue_depth reads; the rest go in as reads complete during reap.
 * Returns the number of reads handed over, or -errno. */
int ms_io_submit(ms_io *io, ms_err *err);

/* Collect finished requests into out[0..max). Blocks until at least
 * min_complete are available, or returns early with fewer when nothing more is
 * queued or in flight (min_complete = 0: poll, never blocks). Keeps the queue
 * full while it waits. Returns the count (>= 0); a failed request is a cqe with
 * res < 0 and its message in err (the first one if several). Returns -errno only
 * when the backend itself breaks. */
int ms_io_reap(ms_io *io, ms_io_cqe *out, int max, int min_complete, ms_err *err);

/* Requests queued or in flight that have not been reaped yet. */
int ms_io_pending(const ms_io *io);

/* Synchronous single read (queue + submit + wait); only with nothing pending
 * (-EBUSY otherwise). Returns len or -errno. */
int64_t ms_io_read(ms_io *io, uint32_t file, uint64_t offset, uint64_t len, void *dst, ms_err *err);

/* Files. */
int ms_io_n_files(const ms_io *io);
uint64_t ms_io_file_size(const ms_io *io, int file);   /* size at open */
bool ms_io_file_direct(const ms_io *io, int file);     /* reads bypass the page cache */
const char *ms_io_backend(const ms_io *io);            /* "uring", "pread", ... */

void ms_io_get_stats(const ms_io *io, ms_io_stats *out);
void ms_io_stats_reset(ms_io *io);
/* One line for the run's summary, e.g. "io uring (fixed files, fixed buffers):
 * 812 requests, 1.20 GiB in 0.61 s busy (2.10 GB/s), 0 short, 0 retries, all
 * files O_DIRECT" or "... 1 of 3 files without O_DIRECT (buffered + DONTNEED)". */
char *ms_io_stats_line(const ms_io *io, char *buf, size_t len);

/* True if this kernel lets this process create an io_uring (tests skip on it). */
bool ms_io_uring_available(void);

#endif

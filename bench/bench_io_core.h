/* bench_io_core.h - the engine of `moestream bench io`: expert-read bandwidth
 * through each I/O backend (io/io.h) against a raw O_DIRECT reader of the same
 * bytes, in the same run.
 *
 * A workload is a list of experts, each a list of byte ranges in the shard
 * files (the model store's expert table: 9 ranges for an MLX expert, 3 for a
 * bf16 one). Each backend reads the experts like the runtime does: a "layer"
 * batch of batch_experts experts (every part of every expert) queued and
 * submitted at once into a slot arena, reaped to the last byte, then the next
 * batch; the experts come in a shuffled order. The raw reader reads the union of
 * the same ranges (aligned, merged per file) with block-sized O_DIRECT reads at
 * raw_qd straight through io_uring: the device's figure for those bytes. The
 * page cache is dropped before every run (POSIX_FADV_DONTNEED on every file, and
 * the global drop_caches when asked and permitted). On a shared machine use
 * repeat > 1: rounds interleave raw and the backends and each row keeps its
 * best round. Figures only: nothing here passes or fails on time. */
#ifndef MS_BENCH_IO_CORE_H
#define MS_BENCH_IO_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

typedef struct ms_bench_io_range {
    uint32_t file;    /* index into the workload's paths */
    uint64_t offset;  /* payload, any alignment */
    uint64_t len;
} ms_bench_io_range;

typedef struct ms_bench_io_workload {
    const char *const *paths;
    int n_files;
    const ms_bench_io_range *ranges; /* the parts of every expert, expert after expert */
    size_t n_ranges;
    const size_t *expert_start;      /* n_experts + 1 entries: expert e = ranges[start[e], start[e+1]) */
    size_t n_experts;
} ms_bench_io_workload;

typedef struct ms_bench_io_opts {
    const char *const *backends;  /* NULL: {"uring", "pread", "mmap"} */
    int n_backends;
    unsigned batch_experts;       /* experts per layer batch; 0 = 8 */
    uint64_t max_bytes;           /* payload bytes per run (a prefix of the shuffled
                                     experts); 0 = every expert once */
    unsigned queue_depth;         /* ms_io queue depth; 0 = io default */
    unsigned n_threads;           /* pread workers; 0 = io default */
    uint64_t chunk_bytes;         /* ms_io chunk; 0 = io default */
    unsigned raw_qd;              /* raw reader queue depth; 0 = max(32, queue_depth) */
    uint64_t raw_block;           /* raw reader read size; 0 = 1 MiB */
    uint64_t seed;                /* expert order shuffle; 0 = file order */
    bool drop_global;             /* also echo 1 > /proc/sys/vm/drop_caches (root only) */
    bool no_register;             /* do not register the arena as fixed buffers */
    bool raw_expert_order;        /* add a row "raw-expert-order": the raw reader over the
                                     same spans unmerged, in the backends' order (what
                                     the access pattern alone costs) */
    unsigned repeat;              /* rounds (raw + every backend each round); each row
                                     keeps its best round; 0 = 1 */
} ms_bench_io_opts;

typedef struct ms_bench_io_row {
    char backend[32];      /* "raw", "uring", "pread", "mmap", ... */
    uint64_t bytes;        /* payload bytes (raw: bytes read) */
    uint64_t bytes_read;   /* bytes read from the files (aligned supersets) */
    uint64_t requests;     /* ranges read (raw: block reads) */
    double seconds;
    double gbps;           /* bytes / seconds / 1e9 */
    double ratio_to_raw;   /* gbps / raw gbps */
    char note[96];         /* "fixed buffers", "buffered: ...", "page cache", ... */
} ms_bench_io_row;

/* Run the raw reader and every backend over the workload. *rows (malloc'd:
 * raw first, then one per backend, then raw-expert-order if asked) and *n_rows
 * on success. */
int ms_bench_io_run(const ms_bench_io_workload *w, const ms_bench_io_opts *o, ms_bench_io_row **rows, int *n_rows,
                    ms_err *err);

/* Self-contained mode: treat one file as an MLX shard holding as many
 * DeepSeek-V3-sized 4-bit experts as fit (hidden x inter, group 64: per expert
 * gate/up/down weight + scales + biases = 9 ranges, stacked per tensor after an
 * unaligned header), then ms_bench_io_run. hidden/inter 0 = 7168/2048
 * (24.8 MB per expert). */
int ms_bench_io_file(const char *path, uint32_t hidden, uint32_t inter, const ms_bench_io_opts *o,
                     ms_bench_io_row **rows, int *n_rows, ms_err *err);

/* Print rows as a table, or as a JSON array of objects. */
void ms_bench_io_print(FILE *f, const ms_bench_io_row *rows, int n_rows, bool json);

#endif

/* st_write.h - streaming safetensors writer: sharded checkpoints of any size
 * written with a bounded buffer, in the layout mlx_lm and transformers produce.
 *
 * Two phases:
 *
 *  1. Plan. Add every tensor (name, dtype, shape) in the order its bytes will
 *     be produced. ms_stw_plan_finish assigns tensors to shards the way mlx_lm's
 *     make_shards does (a tensor goes to a new shard when it would push the
 *     current one past max_shard_bytes; a tensor never splits; a tensor larger
 *     than the limit gets a shard of its own), names them model.safetensors
 *     (one shard) or model-0000K-of-0000N.safetensors, computes every offset and
 *     renders each shard's header. Nothing is written yet, so the whole layout
 *     (sizes, file names, weight map) is known in advance.
 *
 *  2. Write. ms_stw_writer streams the tensor bytes in plan order: either pushed
 *     with ms_stw_writer_write (any chunking, spanning tensors and shards) or
 *     pulled from a fill callback by ms_stw_write_all. Each shard file is
 *     [u64 LE header length][JSON header, space-padded to a multiple of 8]
 *     [tensor data, contiguous, no gaps]; the header goes out first. Data is
 *     staged in one buffer (default 64 MiB) and written with large write(2)s.
 *     With drop_cache the writer keeps the page cache from filling with the
 *     output (writeback is started per buffer, the previous buffer waited for
 *     and dropped), so a 40 GB checkpoint streams at disk speed without
 *     evicting everything else. ms_stw_write_index writes
 *     model.safetensors.index.json ({"metadata":{"total_size":..},
 *     "weight_map":{name: file}} with sorted keys).
 *
 * Header JSON: {"__metadata__":{k: v, ...}, "<name>":{"dtype":"BF16",
 * "shape":[..],"data_offsets":[begin,end]}, ...} with tensors in data order
 * (or sorted by name, plan.sort_header_keys); offsets are relative to the data
 * area, and the data is always in plan order. A failed or aborted writer removes the
 * shard files it created. Library code: no printing; errors name the file or
 * tensor. */
#ifndef MS_ST_WRITE_H
#define MS_ST_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "err.h"

#define MS_STW_MAX_DIMS 8
#define MS_STW_MAX_META 8

typedef struct ms_stw_tensor {
    char *name;
    ms_dtype dtype;
    int ndim;
    int64_t shape[MS_STW_MAX_DIMS];
    uint64_t nbytes; /* numel * dtype size */
    int shard;       /* assigned by ms_stw_plan_finish */
    uint64_t begin;  /* data_offsets[0] inside the shard's data area */
} ms_stw_tensor;

typedef struct ms_stw_shard {
    char name[64];        /* file name inside the output directory */
    int first, count;     /* tensors [first, first + count) of the plan */
    uint64_t data_size;   /* bytes of tensor data */
    char *header;         /* JSON header, padded with spaces */
    uint64_t header_len;  /* strlen(header), a multiple of 8 */
    uint64_t file_size;   /* 8 + header_len + data_size */
} ms_stw_shard;

typedef struct ms_stw_plan {
    ms_stw_tensor *tensors;
    int n_tensors, cap_tensors;
    ms_stw_shard *shards;
    int n_shards;
    uint64_t max_shard_bytes;    /* 0 = everything in one shard */
    char *meta_key[MS_STW_MAX_META], *meta_val[MS_STW_MAX_META];
    int n_meta;
    uint64_t total_bytes;        /* sum of tensor bytes (the index's total_size) */
    bool sort_header_keys;       /* list header entries by name (MLX's writer does: its JSON
                                  * object is sorted) instead of in data order; set before finish */
    bool finished;
} ms_stw_plan;

/* Start an empty plan. max_shard_bytes bounds the tensor bytes per shard
 * (0 = no limit). */
void ms_stw_plan_init(ms_stw_plan *p, uint64_t max_shard_bytes);

/* Add a string entry to every shard's "__metadata__" (e.g. "format" -> "mlx"). */
int ms_stw_plan_meta(ms_stw_plan *p, const char *key, const char *val, ms_err *err);

/* Append a tensor. ndim in [0, MS_STW_MAX_DIMS], dims >= 0; the byte size is
 * overflow-checked. Duplicate names are reported by ms_stw_plan_finish. */
int ms_stw_plan_add(ms_stw_plan *p, const char *name, ms_dtype dtype, int ndim, const int64_t *shape, ms_err *err);

/* Assign shards and offsets, render the headers. After this the plan is
 * read-only. */
int ms_stw_plan_finish(ms_stw_plan *p, ms_err *err);

/* Sum of all shard file sizes (headers included). */
uint64_t ms_stw_plan_file_bytes(const ms_stw_plan *p);

void ms_stw_plan_free(ms_stw_plan *p);

/* Index file options. */
typedef struct ms_stw_index_opts {
    uint64_t total_parameters; /* written as metadata.total_parameters when > 0 (mlx_lm does) */
    int indent;                /* JSON indent: 4 like mlx_lm, 2 like transformers */
} ms_stw_index_opts;

/* Write dir/model.safetensors.index.json for a finished plan (opts may be NULL). */
int ms_stw_write_index(const ms_stw_plan *p, const char *dir, const ms_stw_index_opts *opts, ms_err *err);

/* Write a small text file (config.json, ...) as dir/name.tmp, then rename it
 * into place, so a reader never sees half a file. */
int ms_stw_write_text(const char *dir, const char *name, const char *text, ms_err *err);

/* ---- streaming writer ---- */

typedef void (*ms_stw_progress_fn)(void *ctx, uint64_t done_bytes, uint64_t total_bytes);

typedef struct ms_stw_writer_opts {
    size_t buffer_bytes;           /* staging buffer, default 64 MiB (clamped to [1 MiB, 1 GiB]) */
    bool fsync;                    /* fsync each shard before closing it */
    bool drop_cache;               /* keep written data out of the page cache (see top) */
    ms_stw_progress_fn progress;   /* called with 0 at open, after every buffer flush, and at the end */
    void *progress_ctx;
} ms_stw_writer_opts;

typedef struct ms_stw_writer {
    const ms_stw_plan *plan;
    ms_stw_writer_opts opts;
    char *dir;
    int fd;                 /* current shard, -1 if none open */
    int shard;              /* index of the current shard (-1 before the first) */
    uint64_t shard_left;    /* data bytes still expected for the current shard */
    uint64_t file_pos;      /* bytes written (flushed) to the current file */
    uint64_t sync_prev_begin, sync_prev_end; /* drop_cache: range whose writeback is in flight */
    uint8_t *buf;
    size_t buf_cap, buf_len;
    uint64_t done;          /* tensor bytes accepted so far */
    int n_created;          /* shard files created so far (removed on abort) */
    bool failed;
} ms_stw_writer;

/* Prepare to write a finished plan into dir (which must exist). Files are
 * created as their first bytes arrive. opts may be NULL (defaults). */
int ms_stw_writer_open(ms_stw_writer *w, const ms_stw_plan *p, const char *dir, const ms_stw_writer_opts *opts,
                       ms_err *err);

/* Append tensor bytes in plan order; chunks may span tensors and shards.
 * Writing more bytes than planned is an error. */
int ms_stw_writer_write(ms_stw_writer *w, const void *data, size_t len, ms_err *err);

/* Check that every planned byte arrived, flush, (fsync), close. On any error
 * the created files are removed. The writer is freed either way. */
int ms_stw_writer_close(ms_stw_writer *w, ms_err *err);

/* Give up: close and remove every file this writer created, free it. */
void ms_stw_writer_abort(ms_stw_writer *w);

/* Fill callback of ms_stw_write_all: produce bytes [offset, offset + len) of
 * tensor `tensor` into dst. Calls arrive in plan order with increasing offsets
 * (each tensor from offset 0 to its end, no gaps); offset is a multiple of 64
 * and len is a multiple of 64 except for a tensor's last chunk. Return 0 or a
 * negative errno (with err filled). */
typedef int (*ms_stw_fill_fn)(void *ctx, int tensor, uint64_t offset, void *dst, size_t len, ms_err *err);

/* Write a whole finished plan into dir, pulling data from fill straight into
 * the staging buffer (no extra copy). */
int ms_stw_write_all(const ms_stw_plan *p, const char *dir, const ms_stw_writer_opts *opts, ms_stw_fill_fn fill,
                     void *ctx, ms_err *err);

#endif

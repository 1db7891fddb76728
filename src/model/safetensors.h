/* safetensors.h - the tensor table of a model directory.
 *
 * A checkpoint is one model.safetensors or shards listed by
 * model.safetensors.index.json. Each shard is [u64 LE header length n][n bytes of
 * JSON header][data area]; the header maps tensor name -> {dtype, shape,
 * data_offsets [begin, end) relative to the data area} plus optional
 * "__metadata__". Parsing validates everything before anything is read: header
 * length vs file size, a sane header size, JSON shape, known dtypes, offsets
 * inside the data area, end - begin == numel * dtype size (overflow checked), no
 * overlapping tensors, no duplicate names (within a header, which json-c would
 * silently collapse, and across shards), and index entries that name tensors
 * the shard really holds.
 *
 * The result is a flat table: name -> (file, absolute offset, length, dtype,
 * shape). Nothing is mapped or read here; callers read tensors with
 * ms_tt_read (pread) or hand the ranges to the I/O layer.
 */
#ifndef MS_SAFETENSORS_H
#define MS_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "err.h"
#include "strmap.h"

#define MS_MAX_DIMS 8
#define MS_ST_MAX_HEADER (256ull << 20) /* refuse headers above 256 MiB */

typedef struct ms_st_file {
    char *path;          /* full path */
    char *name;          /* file name as in the index */
    uint64_t size;       /* file size in bytes */
    uint64_t data_start; /* 8 + header length */
    char *format;        /* __metadata__.format ("mlx", "pt", ...) or NULL */
    int fd;              /* O_RDONLY descriptor (buffered reads of resident tensors) */
} ms_st_file;

typedef struct ms_tensor {
    char *name;
    ms_dtype dtype;
    int ndim;
    int64_t shape[MS_MAX_DIMS];
    int file;          /* index into ms_tensor_table.files */
    uint64_t offset;   /* absolute byte offset in the file */
    uint64_t nbytes;
} ms_tensor;

typedef struct ms_tensor_table {
    char *dir;
    ms_st_file *files;
    int n_files;
    ms_tensor *tensors;
    int n_tensors, cap_tensors;
    ms_strmap index; /* name -> tensor index */
} ms_tensor_table;

/* Open a model directory: model.safetensors.index.json if present, else
 * model.safetensors, else every *.safetensors file in the directory (sorted). */
int ms_tt_open_dir(const char *dir, ms_tensor_table *tt, ms_err *err);

/* Parse one safetensors file and add its tensors (used by ms_tt_open_dir; exposed
 * for tests and tools). Returns the file index. */
int ms_tt_add_file(ms_tensor_table *tt, const char *path, const char *name, ms_err *err);

const ms_tensor *ms_tt_find(const ms_tensor_table *tt, const char *name);
/* printf-style lookup; returns NULL when absent. */
const ms_tensor *ms_tt_findf(const ms_tensor_table *tt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Number of elements (product of the shape). */
int64_t ms_tensor_numel(const ms_tensor *t);
/* "[E, 2048, 7168]" into buf. */
char *ms_tensor_shape_str(const ms_tensor *t, char *buf, size_t len);

/* Read `len` bytes at `off` within tensor t into dst (pread loop; EOF or short
 * file is an error naming file/tensor). drop_cache: posix_fadvise(DONTNEED) the
 * range afterwards so loading never grows the page cache. */
int ms_tt_read_range(const ms_tensor_table *tt, const ms_tensor *t, uint64_t off, uint64_t len, void *dst,
                     bool drop_cache, ms_err *err);
int ms_tt_read(const ms_tensor_table *tt, const ms_tensor *t, void *dst, bool drop_cache, ms_err *err);

void ms_tt_free(ms_tensor_table *tt);

#endif

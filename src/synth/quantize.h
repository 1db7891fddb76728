/* quantize.h - convert an HF float checkpoint to MLX affine quantization
 * (the conversion mlx_lm.convert -q does; see quantize.c). */
#ifndef MS_QUANTIZE_H
#define MS_QUANTIZE_H

#include <stdint.h>

#include "dtype.h"
#include "err.h"
#include "st_write.h"

typedef struct ms_quantize_opts {
    int bits;               /* default bits (uniform recipe) */
    int group_size;
    const char *recipe;     /* uniform | mixed-8-5 | dq4 | mixed_<lo>_<hi> (mlx-lm's mixed_3_4, ...) */
    ms_dtype dtype;         /* float output dtype; MS_DT_COUNT = keep the source's */
    uint64_t shard_bytes;   /* max tensor bytes per shard (0 = 5 GiB) */
    ms_stw_progress_fn progress;
    void *progress_ctx;
} ms_quantize_opts;

typedef struct ms_quantize_result {
    int n_tensors, n_shards;
    uint64_t bytes;
    double seconds;
} ms_quantize_result;

int ms_quantize(const char *in_dir, const char *out_dir, const ms_quantize_opts *o, ms_quantize_result *res,
                ms_err *err);

#endif

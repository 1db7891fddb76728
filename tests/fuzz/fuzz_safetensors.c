/* fuzz_safetensors.c - libFuzzer target: one safetensors shard through
 * ms_tt_add_file, then every lookup and a small read of each tensor.
 *
 * Input layout (first byte = mode):
 *   mode & 1 == 0  "header mode": the rest is the JSON header; the target writes
 *                  [u64 LE length][header][data area of (mode >> 1) * 16 KiB zeros,
 *                  a sparse hole] so offsets inside the data area can be valid
 *                  and the checks past JSON parsing (dtype x shape vs span, bounds,
 *                  overlap, duplicates) are reached;
 *   mode & 1 == 1  "raw mode": the rest is the whole file as is (length prefix,
 *                  truncation, NULs, implausible sizes).
 * Seeds: headers of the shards of `moestream synth --preset tiny` (MLX and HF). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static char *path;
    if (!path) path = fz_path("model.safetensors");
    uint8_t mode = data[0];
    data++;
    size--;
    if (mode & 1) {
        fz_write_file(path, data, size, NULL, 0, 0);
    } else {
        uint8_t len[8];
        uint64_t n = size;
        for (int i = 0; i < 8; i++) len[i] = (uint8_t)(n >> (8 * i));
        fz_write_file(path, len, 8, data, size, (uint64_t)(mode >> 1) * 16384u);
    }
    ms_tensor_table tt;
    memset(&tt, 0, sizeof tt);
    ms_err err = {0};
    int rc = ms_tt_add_file(&tt, path, "model.safetensors", &err);
    if (rc < 0) {
        if (!err.msg[0]) abort(); /* every failure must say why */
    } else {
        char buf[256];
        uint8_t dst[64];
        for (int i = 0; i < tt.n_tensors; i++) {
            const ms_tensor *t = &tt.tensors[i];
            if (ms_tt_find(&tt, t->name) != t) abort(); /* index must map names to their entries */
            ms_tensor_shape_str(t, buf, sizeof buf);
            (void)ms_tensor_numel(t);
            uint64_t l = t->nbytes < sizeof dst ? t->nbytes : sizeof dst;
            ms_err e2 = {0};
            if (ms_tt_read_range(&tt, t, 0, l, dst, false, &e2) < 0) abort(); /* validated => readable */
            if (t->nbytes && ms_tt_read_range(&tt, t, t->nbytes - 1, 2, dst, false, &e2) >= 0) abort();
        }
    }
    ms_tt_free(&tt);
    return 0;
}

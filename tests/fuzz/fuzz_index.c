/* fuzz_index.c - libFuzzer target: model.safetensors.index.json through
 * ms_tt_open_dir, in a directory that also holds two fixed, valid shards
 * (written once at start-up):
 *   model-00001-of-00002.safetensors  a.weight F32 [2, 3], a.bias BF16 [3]
 *   model-00002-of-00002.safetensors  b.weight U32 [4], b.scales F16 [1, 2]
 * so an index can name real shards and tensors, wrong shards, missing files,
 * path tricks ("../x", "a/b"), non-string entries, duplicates and so on.
 * On success every tensor lies inside its file and reads back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "safetensors.h"

static void write_shard(const char *name, const char *header, size_t data_len)
{
    char *p = fz_path(name);
    size_t hl = strlen(header);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    char *buf = malloc(hl + data_len);
    if (!buf) abort();
    memcpy(buf, header, hl);
    for (size_t i = 0; i < data_len; i++) buf[hl + i] = (char)(i * 7 + 1);
    fz_write_file(p, len, 8, buf, hl + data_len, 0);
    free(buf);
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char *index_path;
    if (!index_path) {
        write_shard("model-00001-of-00002.safetensors",
                    "{\"__metadata__\":{\"format\":\"mlx\"},"
                    "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                    "\"a.bias\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[24,30]}}",
                    30);
        write_shard("model-00002-of-00002.safetensors",
                    "{\"b.weight\":{\"dtype\":\"U32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"b.scales\":{\"dtype\":\"F16\",\"shape\":[1,2],\"data_offsets\":[16,20]}}  ",
                    20);
        index_path = fz_path("model.safetensors.index.json");
    }
    fz_write_file(index_path, data, size, NULL, 0, 0);
    ms_tensor_table tt;
    ms_err err = {0};
    int rc = ms_tt_open_dir(fz_dir(), &tt, &err);
    if (rc < 0) {
        if (!err.msg[0]) abort();
    } else {
        for (int i = 0; i < tt.n_tensors; i++) {
            const ms_tensor *t = &tt.tensors[i];
            if (t->file < 0 || t->file >= tt.n_files) abort();
            if (t->offset + t->nbytes > tt.files[t->file].size) abort();
            uint8_t buf[32];
            ms_err e2 = {0};
            if (ms_tt_read(&tt, t, buf, false, &e2) < 0) abort();
        }
    }
    ms_tt_free(&tt);
    return 0;
}

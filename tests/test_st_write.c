/* test_st_write.c - the streaming safetensors writer: plans and shard
 * assignment (mlx_lm's rule), headers parsed back with json-c (dtypes, shapes,
 * contiguous offsets, space padding to 8), data round trip through both the push
 * API (odd chunk sizes) and the fill API (chunk contract), the index file, and
 * the error paths (duplicates, too many / too few bytes, unwritable directory),
 * including removal of partial files. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ms_test.h"
#include "st_write.h"

/* Deterministic content: byte i of tensor t. */
static uint8_t pattern(int t, uint64_t i) { return (uint8_t)(t * 31 + i * 7 + (i >> 8)); }

/* ---- a strict reader for the files we wrote ---- */

typedef struct rd_tensor {
    char name[128];
    char dtype[16];
    int ndim;
    int64_t shape[8];
    uint64_t begin, end;
} rd_tensor;

typedef struct rd_file {
    uint64_t header_len, size;
    char format[16];
    rd_tensor t[64];
    int n;
    uint8_t *data; /* data area */
} rd_file;

static int cmp_begin(const void *a, const void *b)
{
    const rd_tensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Parse and check one shard: header length, padding, JSON, contiguity. */
static void read_shard(const char *path, rd_file *f)
{
    memset(f, 0, sizeof *f);
    size_t len;
    char *buf = mst_slurp(path, &len);
    assert_non_null(buf);
    assert_true(len >= 8);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)(uint8_t)buf[i] << (8 * i);
    assert_true(8 + hl <= len);
    assert_int_equal(hl % 8, 0);
    f->header_len = hl;
    f->size = len;
    char *hdr = malloc(hl + 1);
    memcpy(hdr, buf + 8, hl);
    hdr[hl] = 0;
    /* padding: only spaces after the closing brace */
    size_t end = hl;
    while (end > 0 && hdr[end - 1] == ' ') end--;
    assert_true(end > 0 && hdr[end - 1] == '}');
    assert_true(hl - end < 8);
    struct json_object *j = json_tokener_parse(hdr);
    assert_non_null(j);
    assert_true(json_object_is_type(j, json_type_object));
    json_object_object_foreach(j, key, val)
    {
        if (!strcmp(key, "__metadata__")) {
            struct json_object *fmt;
            if (json_object_object_get_ex(val, "format", &fmt))
                snprintf(f->format, sizeof f->format, "%s", json_object_get_string(fmt));
            continue;
        }
        assert_true(f->n < 64);
        rd_tensor *t = &f->t[f->n++];
        snprintf(t->name, sizeof t->name, "%s", key);
        struct json_object *dt, *sh, *off;
        assert_true(json_object_object_get_ex(val, "dtype", &dt));
        assert_true(json_object_object_get_ex(val, "shape", &sh));
        assert_true(json_object_object_get_ex(val, "data_offsets", &off));
        assert_int_equal(json_object_object_length(val), 3);
        snprintf(t->dtype, sizeof t->dtype, "%s", json_object_get_string(dt));
        t->ndim = (int)json_object_array_length(sh);
        for (int d = 0; d < t->ndim; d++) t->shape[d] = json_object_get_int64(json_object_array_get_idx(sh, d));
        assert_int_equal(json_object_array_length(off), 2);
        t->begin = (uint64_t)json_object_get_int64(json_object_array_get_idx(off, 0));
        t->end = (uint64_t)json_object_get_int64(json_object_array_get_idx(off, 1));
    }
    json_object_put(j);
    free(hdr);
    /* contiguous, no gaps, covering the whole data area */
    rd_tensor sorted[64];
    memcpy(sorted, f->t, sizeof(rd_tensor) * (size_t)f->n);
    qsort(sorted, (size_t)f->n, sizeof *sorted, cmp_begin);
    uint64_t pos = 0;
    for (int i = 0; i < f->n; i++) {
        assert_true(sorted[i].begin == pos);
        assert_true(sorted[i].end >= sorted[i].begin);
        pos = sorted[i].end;
    }
    assert_true(8 + hl + pos == len);
    f->data = malloc(pos + 1);
    memcpy(f->data, buf + 8 + hl, pos);
    free(buf);
}

static const rd_tensor *rd_find(const rd_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

/* ---- the plan used by several tests ---- */

typedef struct tdesc {
    const char *name;
    ms_dtype dt;
    int ndim;
    int64_t shape[3];
} tdesc;

static const tdesc T[] = {
    {"model.embed_tokens.weight", MS_DT_U32, 2, {40, 10}},        /* 1600 */
    {"model.norm.weight", MS_DT_BF16, 1, {64}},                    /* 128 */
    {"odd.u8", MS_DT_U8, 1, {3}},                                  /* 3: leaves the next tensor unaligned */
    {"big.f32", MS_DT_F32, 3, {2, 10, 30}},                        /* 2400: alone (> max) */
    {"scalar", MS_DT_F32, 0, {0}},                                 /* 4 */
    {"empty", MS_DT_F16, 2, {0, 5}},                               /* 0 */
    {"lm_head.scales", MS_DT_F16, 2, {7, 9}},                      /* 126 */
    {"a \"quoted\" name\\x", MS_DT_I64, 1, {5}},                   /* 40: escaping */
};
#define NT ((int)(sizeof T / sizeof T[0]))

static void make_plan(ms_stw_plan *p, uint64_t max_shard)
{
    ms_err err = {0};
    ms_stw_plan_init(p, max_shard);
    assert_int_equal(ms_stw_plan_meta(p, "format", "mlx", &err), 0);
    for (int i = 0; i < NT; i++) assert_int_equal(ms_stw_plan_add(p, T[i].name, T[i].dt, T[i].ndim, T[i].shape, &err), 0);
    assert_int_equal(ms_stw_plan_finish(p, &err), 0);
}

static void check_files(const ms_stw_plan *p, const char *dir)
{
    uint64_t total = 0;
    for (int s = 0; s < p->n_shards; s++) {
        char *path = mst_fmt("%s/%s", dir, p->shards[s].name);
        rd_file f;
        read_shard(path, &f);
        assert_string_equal(f.format, "mlx");
        assert_int_equal(f.n, p->shards[s].count);
        assert_true(f.size == p->shards[s].file_size);
        for (int i = p->shards[s].first; i < p->shards[s].first + p->shards[s].count; i++) {
            const rd_tensor *t = rd_find(&f, T[i].name);
            assert_non_null(t);
            assert_string_equal(t->dtype, ms_dtype_name(T[i].dt));
            assert_int_equal(t->ndim, T[i].ndim);
            uint64_t n = ms_dtype_size(T[i].dt);
            for (int d = 0; d < T[i].ndim; d++) {
                assert_int_equal(t->shape[d], T[i].shape[d]);
                n *= (uint64_t)T[i].shape[d];
            }
            assert_true(t->end - t->begin == n);
            for (uint64_t b = 0; b < n; b++) assert_int_equal(f.data[t->begin + b], pattern(i, b));
            total += n;
        }
        free(f.data);
        free(path);
    }
    assert_true(total == p->total_bytes);
}

static void test_plan_sharding(void **state)
{
    (void)state;
    ms_stw_plan p;
    make_plan(&p, 2000);
    /* mlx_lm make_shards: [emb 1600, norm 128, odd 3] [big 2400] [scalar, empty, scales, quoted] */
    assert_int_equal(p.n_shards, 3);
    assert_string_equal(p.shards[0].name, "model-00001-of-00003.safetensors");
    assert_string_equal(p.shards[2].name, "model-00003-of-00003.safetensors");
    assert_int_equal(p.tensors[0].shard, 0);
    assert_int_equal(p.tensors[2].shard, 0);
    assert_int_equal(p.tensors[3].shard, 1);
    assert_int_equal(p.tensors[4].shard, 2);
    assert_int_equal(p.tensors[7].shard, 2);
    assert_true(p.tensors[1].begin == 1600 && p.tensors[2].begin == 1728);
    assert_true(p.tensors[3].begin == 0 && p.tensors[3].nbytes == 2400);
    assert_true(p.total_bytes == 1600 + 128 + 3 + 2400 + 4 + 0 + 126 + 40);
    for (int s = 0; s < p.n_shards; s++) {
        assert_int_equal(p.shards[s].header_len % 8, 0);
        assert_true(p.shards[s].file_size == 8 + p.shards[s].header_len + p.shards[s].data_size);
    }
    ms_stw_plan_free(&p);
    /* unlimited: one file named model.safetensors */
    make_plan(&p, 0);
    assert_int_equal(p.n_shards, 1);
    assert_string_equal(p.shards[0].name, "model.safetensors");
    ms_stw_plan_free(&p);
    /* limit smaller than every tensor: one shard per non-empty run, never an empty leading shard */
    make_plan(&p, 1);
    assert_int_equal(p.tensors[0].shard, 0);
    assert_int_equal(p.shards[0].count, 1);
    for (int s = 0; s < p.n_shards; s++) assert_true(p.shards[s].count >= 1);
    ms_stw_plan_free(&p);
}

static void test_push_round_trip(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("stw_push");
    ms_stw_plan p;
    make_plan(&p, 2000);
    ms_err err = {0};
    ms_stw_writer w;
    ms_stw_writer_opts o = {.buffer_bytes = 1}; /* clamped to 1 MiB, then to the largest shard */
    assert_int_equal(ms_stw_writer_open(&w, &p, dir, &o, &err), 0);
    /* the byte stream of all tensors, pushed 7 bytes at a time */
    uint8_t *all = malloc(p.total_bytes);
    uint64_t k = 0;
    for (int i = 0; i < NT; i++)
        for (uint64_t b = 0; b < p.tensors[i].nbytes; b++) all[k++] = pattern(i, b);
    for (uint64_t off = 0; off < p.total_bytes; off += 7) {
        size_t n = p.total_bytes - off < 7 ? (size_t)(p.total_bytes - off) : 7;
        assert_int_equal(ms_stw_writer_write(&w, all + off, n, &err), 0);
    }
    assert_int_equal(ms_stw_writer_close(&w, &err), 0);
    check_files(&p, dir);
    free(all);
    ms_stw_plan_free(&p);
    free(dir);
}

typedef struct fill_state {
    int tensor;
    uint64_t next;
    int calls, bad;
    const ms_stw_plan *p;
} fill_state;

static int fill(void *ctx, int tensor, uint64_t offset, void *dst, size_t len, ms_err *err)
{
    fill_state *s = ctx;
    (void)err;
    if (offset == 0) {
        if (tensor <= s->tensor) s->bad++;
        s->tensor = tensor;
        s->next = 0;
    }
    if (tensor != s->tensor || offset != s->next) s->bad++;
    if (offset % 64) s->bad++;
    if (len % 64 && offset + len != s->p->tensors[tensor].nbytes) s->bad++;
    if (len == 0) s->bad++;
    for (size_t i = 0; i < len; i++) ((uint8_t *)dst)[i] = pattern(tensor, offset + i);
    s->next = offset + len;
    s->calls++;
    return 0;
}

static void progress(void *ctx, uint64_t done, uint64_t total)
{
    uint64_t *last = ctx;
    assert_true(done >= last[0] && done <= total);
    last[0] = done;
    last[1]++;
}

static void test_fill_round_trip(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("stw_fill");
    ms_stw_plan p;
    make_plan(&p, 2000);
    ms_err err = {0};
    fill_state fs = {.tensor = -1, .p = &p};
    uint64_t prog[2] = {0, 0};
    ms_stw_writer_opts o = {.fsync = true, .drop_cache = true, .progress = progress, .progress_ctx = prog};
    assert_int_equal(ms_stw_write_all(&p, dir, &o, fill, &fs, &err), 0);
    assert_int_equal(fs.bad, 0);
    assert_true(fs.calls >= NT - 2); /* zero-byte tensors get no call */
    assert_true(prog[0] == p.total_bytes);
    assert_true(prog[1] >= 2);
    check_files(&p, dir);

    /* a bigger tensor than the buffer: many chunks, all honouring the contract */
    ms_stw_plan q;
    ms_stw_plan_init(&q, 0);
    int64_t shp[2] = {3, (3 << 20) / 3 + 5}; /* ~3 MiB + 15 bytes of u8: chunks of 1 MiB */
    assert_int_equal(ms_stw_plan_add(&q, "x", MS_DT_U8, 1, (int64_t[]){1}, &err), 0);
    assert_int_equal(ms_stw_plan_add(&q, "big", MS_DT_U8, 2, shp, &err), 0);
    assert_int_equal(ms_stw_plan_finish(&q, &err), 0);
    fill_state f2 = {.tensor = -1, .p = &q};
    ms_stw_writer_opts o2 = {.buffer_bytes = 1u << 20};
    assert_int_equal(ms_stw_write_all(&q, dir, &o2, fill, &f2, &err), 0);
    assert_int_equal(f2.bad, 0);
    assert_true(f2.calls >= 4);
    char *path = mst_fmt("%s/model.safetensors", dir);
    rd_file f;
    read_shard(path, &f);
    const rd_tensor *t = rd_find(&f, "big");
    assert_non_null(t);
    for (uint64_t b = 0; b < t->end - t->begin; b += 4099) assert_int_equal(f.data[t->begin + b], pattern(1, b));
    free(f.data);
    free(path);
    ms_stw_plan_free(&q);
    ms_stw_plan_free(&p);
    free(dir);
}

static void test_index(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("stw_index");
    ms_stw_plan p;
    make_plan(&p, 2000);
    ms_err err = {0};
    ms_stw_index_opts io = {.total_parameters = 12345, .indent = 4};
    assert_int_equal(ms_stw_write_index(&p, dir, &io, &err), 0);
    char *path = mst_fmt("%s/model.safetensors.index.json", dir);
    char *txt = mst_slurp(path, NULL);
    assert_non_null(txt);
    assert_non_null(strstr(txt, "\n    \"metadata\": {\n        \"total_size\": "));
    assert_true(txt[strlen(txt) - 1] == '}'); /* mlx_lm: no trailing newline */
    struct json_object *j = json_tokener_parse(txt);
    assert_non_null(j);
    struct json_object *meta, *wm, *v;
    assert_true(json_object_object_get_ex(j, "metadata", &meta));
    assert_true(json_object_object_get_ex(meta, "total_size", &v));
    assert_true((uint64_t)json_object_get_int64(v) == p.total_bytes);
    assert_true(json_object_object_get_ex(meta, "total_parameters", &v));
    assert_int_equal(json_object_get_int64(v), 12345);
    assert_true(json_object_object_get_ex(j, "weight_map", &wm));
    assert_int_equal(json_object_object_length(wm), NT);
    const char *prev = "";
    json_object_object_foreach(wm, key, val)
    {
        assert_true(strcmp(prev, key) < 0); /* sorted */
        prev = key;
        int i = 0;
        while (i < NT && strcmp(T[i].name, key)) i++;
        assert_true(i < NT);
        assert_string_equal(json_object_get_string(val), p.shards[p.tensors[i].shard].name);
    }
    json_object_put(j);
    free(txt);
    /* transformers style: indent 2, no total_parameters, trailing newline */
    ms_stw_index_opts io2 = {.indent = 2};
    assert_int_equal(ms_stw_write_index(&p, dir, &io2, &err), 0);
    txt = mst_slurp(path, NULL);
    assert_non_null(strstr(txt, "\n  \"metadata\": {\n    \"total_size\": "));
    assert_null(strstr(txt, "total_parameters"));
    assert_true(txt[strlen(txt) - 1] == '\n');
    free(txt);
    /* write_text: atomic small file */
    assert_int_equal(ms_stw_write_text(dir, "config.json", "{\"a\": 1}", &err), 0);
    char *cpath = mst_fmt("%s/config.json", dir);
    txt = mst_slurp(cpath, NULL);
    assert_string_equal(txt, "{\"a\": 1}");
    char *tmp = mst_fmt("%s.tmp", cpath);
    assert_false(mst_exists(tmp));
    free(tmp);
    free(txt);
    free(cpath);
    free(path);
    ms_stw_plan_free(&p);
    free(dir);
}

static void test_sorted_header(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("stw_sorted");
    ms_err err = {0};
    for (int sorted = 0; sorted < 2; sorted++) {
        ms_stw_plan p;
        ms_stw_plan_init(&p, 0);
        p.sort_header_keys = sorted;
        for (int i = 0; i < NT; i++)
            assert_int_equal(ms_stw_plan_add(&p, T[i].name, T[i].dt, T[i].ndim, T[i].shape, &err), 0);
        assert_int_equal(ms_stw_plan_finish(&p, &err), 0);
        fill_state fs = {.tensor = -1, .p = &p};
        assert_int_equal(ms_stw_write_all(&p, dir, NULL, fill, &fs, &err), 0);
        char *path = mst_fmt("%s/model.safetensors", dir);
        rd_file f;
        read_shard(path, &f); /* also checks contiguity */
        assert_int_equal(f.n, NT);
        for (int i = 1; i < f.n; i++) {
            if (sorted) assert_true(strcmp(f.t[i - 1].name, f.t[i].name) < 0);
            else assert_true(f.t[i - 1].end == f.t[i].begin); /* header lists the data order */
        }
        /* the data stays in plan order either way */
        for (int i = 0; i < NT; i++) assert_true(rd_find(&f, T[i].name)->begin == p.tensors[i].begin);
        free(f.data);
        free(path);
        ms_stw_plan_free(&p);
    }
    free(dir);
}

static void test_empty_plan(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("stw_empty");
    ms_stw_plan p;
    ms_err err = {0};
    ms_stw_plan_init(&p, 100);
    assert_int_equal(ms_stw_plan_finish(&p, &err), 0);
    assert_int_equal(p.n_shards, 1);
    ms_stw_writer w;
    assert_int_equal(ms_stw_writer_open(&w, &p, dir, NULL, &err), 0);
    assert_int_equal(ms_stw_writer_close(&w, &err), 0);
    char *path = mst_fmt("%s/model.safetensors", dir);
    size_t len;
    char *buf = mst_slurp(path, &len);
    assert_int_equal(len, 16);                 /* 8 + "{}" padded to 8 */
    assert_memory_equal(buf + 8, "{}      ", 8);
    free(buf);
    free(path);
    ms_stw_plan_free(&p);
    free(dir);
}

static void test_errors(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("stw_err");
    ms_err err = {0};
    ms_stw_plan p;
    /* bad tensors */
    ms_stw_plan_init(&p, 0);
    assert_true(ms_stw_plan_add(&p, "", MS_DT_F32, 1, (int64_t[]){1}, &err) < 0);
    ms_err_clear(&err);
    assert_true(ms_stw_plan_add(&p, "neg", MS_DT_F32, 1, (int64_t[]){-1}, &err) < 0);
    assert_non_null(strstr(err.msg, "neg"));
    ms_err_clear(&err);
    assert_true(ms_stw_plan_add(&p, "dims", MS_DT_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, &err) < 0);
    ms_err_clear(&err);
    assert_true(ms_stw_plan_add(&p, "ovf", MS_DT_F32, 3, (int64_t[]){1ll << 31, 1ll << 31, 1ll << 31}, &err) < 0);
    assert_non_null(strstr(err.msg, "ovf"));
    ms_err_clear(&err);
    assert_true(ms_stw_plan_add(&p, "__metadata__", MS_DT_F32, 1, (int64_t[]){1}, &err) < 0);
    ms_err_clear(&err);
    /* duplicates are caught at finish, naming the tensor */
    assert_int_equal(ms_stw_plan_add(&p, "a.weight", MS_DT_F32, 1, (int64_t[]){4}, &err), 0);
    assert_int_equal(ms_stw_plan_add(&p, "b.weight", MS_DT_F32, 1, (int64_t[]){4}, &err), 0);
    assert_int_equal(ms_stw_plan_add(&p, "a.weight", MS_DT_F32, 1, (int64_t[]){4}, &err), 0);
    assert_true(ms_stw_plan_finish(&p, &err) < 0);
    assert_non_null(strstr(err.msg, "duplicate tensor name a.weight"));
    ms_stw_plan_free(&p);

    /* too many bytes */
    make_plan(&p, 2000);
    ms_stw_writer w;
    ms_err_clear(&err);
    assert_int_equal(ms_stw_writer_open(&w, &p, dir, NULL, &err), 0);
    uint8_t *junk = calloc(1, p.total_bytes + 10);
    assert_true(ms_stw_writer_write(&w, junk, p.total_bytes + 10, &err) < 0);
    assert_non_null(strstr(err.msg, "beyond the planned"));
    ms_err_clear(&err);
    assert_true(ms_stw_writer_close(&w, &err) < 0);
    for (int s = 0; s < p.n_shards; s++) {
        char *path = mst_fmt("%s/%s", dir, p.shards[s].name);
        assert_false(mst_exists(path)); /* cleaned up */
        free(path);
    }
    /* too few bytes: close fails naming the incomplete tensor, files removed */
    ms_err_clear(&err);
    assert_int_equal(ms_stw_writer_open(&w, &p, dir, NULL, &err), 0);
    assert_int_equal(ms_stw_writer_write(&w, junk, 1700, &err), 0);
    assert_true(ms_stw_writer_close(&w, &err) < 0);
    assert_non_null(strstr(err.msg, "model.norm.weight"));
    char *p0 = mst_fmt("%s/%s", dir, p.shards[0].name);
    assert_false(mst_exists(p0));
    free(p0);
    /* abort removes what was created */
    ms_err_clear(&err);
    assert_int_equal(ms_stw_writer_open(&w, &p, dir, NULL, &err), 0);
    assert_int_equal(ms_stw_writer_write(&w, junk, 2000, &err), 0);
    ms_stw_writer_abort(&w);
    for (int s = 0; s < p.n_shards; s++) {
        char *path = mst_fmt("%s/%s", dir, p.shards[s].name);
        assert_false(mst_exists(path));
        free(path);
    }
    free(junk);
    /* a directory that does not exist / is not writable */
    ms_err_clear(&err);
    assert_true(ms_stw_writer_open(&w, &p, "/nonexistent/dir", NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "/nonexistent/dir"));
    ms_err_clear(&err);
    assert_true(ms_stw_write_index(&p, "/nonexistent/dir", NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "/nonexistent/dir"));
    /* a fill error propagates with the tensor name and leaves nothing behind */
    ms_stw_plan_free(&p);
    free(dir);
}

static int failing_fill(void *ctx, int tensor, uint64_t offset, void *dst, size_t len, ms_err *err)
{
    (void)ctx;
    (void)offset;
    memset(dst, 0, len);
    if (tensor == 3) return ms_errf(err, EIO, "generator broke");
    return 0;
}

static void test_fill_error(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("stw_fillerr");
    ms_stw_plan p;
    make_plan(&p, 2000);
    ms_err err = {0};
    assert_true(ms_stw_write_all(&p, dir, NULL, failing_fill, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "big.f32"));
    assert_non_null(strstr(err.msg, "generator broke"));
    for (int s = 0; s < p.n_shards; s++) {
        char *path = mst_fmt("%s/%s", dir, p.shards[s].name);
        assert_false(mst_exists(path));
        free(path);
    }
    ms_stw_plan_free(&p);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_sharding), cmocka_unit_test(test_push_round_trip),
        cmocka_unit_test(test_fill_round_trip), cmocka_unit_test(test_index),
        cmocka_unit_test(test_sorted_header),  cmocka_unit_test(test_empty_plan),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_fill_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

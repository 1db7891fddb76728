/* st_write.c - streaming safetensors writer (see st_write.h).
 *
 * The plan renders every header up front; the writer then only moves bytes:
 * tensor data is staged in one buffer and flushed with write(2) when the buffer
 * is full or a shard ends. A shard file is opened when its first byte (or its
 * header, for an empty shard) is due, so at most one file is open at a time.
 * With drop_cache, each flushed range gets its writeback started
 * (sync_file_range WRITE) and the range flushed before it is waited for and
 * dropped (POSIX_FADV_DONTNEED): dirty data stays bounded by two buffers and
 * the kernel writes one buffer while the caller fills the next. */
#include "st_write.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strbuf.h"
#include "util.h"

#define STW_MAX_HEADER (100ull << 20) /* safetensors readers refuse larger headers */

/* ---- plan ---- */

void ms_stw_plan_init(ms_stw_plan *p, uint64_t max_shard_bytes)
{
    memset(p, 0, sizeof *p);
    p->max_shard_bytes = max_shard_bytes;
}

int ms_stw_plan_meta(ms_stw_plan *p, const char *key, const char *val, ms_err *err)
{
    if (p->finished) return ms_errf(err, EINVAL, "safetensors plan: metadata added after finish");
    if (!key || !*key || !val) return ms_errf(err, EINVAL, "safetensors plan: empty metadata key");
    for (int i = 0; i < p->n_meta; i++)
        if (!strcmp(p->meta_key[i], key)) {
            char *v = strdup(val);
            if (!v) return ms_errf(err, ENOMEM, "out of memory");
            free(p->meta_val[i]);
            p->meta_val[i] = v;
            return 0;
        }
    if (p->n_meta >= MS_STW_MAX_META)
        return ms_errf(err, E2BIG, "safetensors plan: more than %d metadata entries", MS_STW_MAX_META);
    char *k = strdup(key), *v = strdup(val);
    if (!k || !v) {
        free(k);
        free(v);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    p->meta_key[p->n_meta] = k;
    p->meta_val[p->n_meta] = v;
    p->n_meta++;
    return 0;
}

int ms_stw_plan_add(ms_stw_plan *p, const char *name, ms_dtype dtype, int ndim, const int64_t *shape, ms_err *err)
{
    if (p->finished) return ms_errf(err, EINVAL, "safetensors plan: tensor %s added after finish", name);
    if (!name || !*name) return ms_errf(err, EINVAL, "safetensors plan: empty tensor name");
    if (!strcmp(name, "__metadata__")) return ms_errf(err, EINVAL, "safetensors plan: reserved tensor name %s", name);
    if ((int)dtype < 0 || dtype >= MS_DT_COUNT)
        return ms_errf(err, EINVAL, "safetensors plan: tensor %s: bad dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > MS_STW_MAX_DIMS)
        return ms_errf(err, EINVAL, "safetensors plan: tensor %s: %d dims (max %d)", name, ndim, MS_STW_MAX_DIMS);
    uint64_t n = ms_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return ms_errf(err, EINVAL, "safetensors plan: tensor %s: negative dimension %" PRId64, name, shape[i]);
        if (!ms_mul_u64(n, (uint64_t)shape[i], &n))
            return ms_errf(err, EOVERFLOW, "safetensors plan: tensor %s: size overflows", name);
    }
    if (p->n_tensors == p->cap_tensors) {
        int cap = p->cap_tensors ? p->cap_tensors * 2 : 256;
        ms_stw_tensor *t = realloc(p->tensors, (size_t)cap * sizeof *t);
        if (!t) return ms_errf(err, ENOMEM, "out of memory");
        p->tensors = t;
        p->cap_tensors = cap;
    }
    ms_stw_tensor *t = &p->tensors[p->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return ms_errf(err, ENOMEM, "out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = n;
    t->shard = -1;
    p->n_tensors++;
    return 0;
}

static int cmp_name_idx(const void *a, const void *b, void *ctx)
{
    const ms_stw_tensor *t = ctx;
    return strcmp(t[*(const int *)a].name, t[*(const int *)b].name);
}

/* Tensor indices sorted by name (malloc'd). */
static int *sorted_indices(const ms_stw_plan *p)
{
    int *idx = malloc((size_t)(p->n_tensors ? p->n_tensors : 1) * sizeof *idx);
    if (!idx) return NULL;
    for (int i = 0; i < p->n_tensors; i++) idx[i] = i;
    qsort_r(idx, (size_t)p->n_tensors, sizeof *idx, cmp_name_idx, p->tensors);
    return idx;
}

static int render_header(ms_stw_plan *p, ms_stw_shard *s, ms_err *err)
{
    ms_strbuf b = {0};
    ms_sb_putn(&b, "{", 1);
    bool first = true;
    if (p->n_meta > 0) {
        ms_sb_puts(&b, "\"__metadata__\":{");
        for (int i = 0; i < p->n_meta; i++) {
            if (i) ms_sb_putn(&b, ",", 1);
            ms_sb_json_str(&b, p->meta_key[i], strlen(p->meta_key[i]));
            ms_sb_putn(&b, ":", 1);
            ms_sb_json_str(&b, p->meta_val[i], strlen(p->meta_val[i]));
        }
        ms_sb_putn(&b, "}", 1);
        first = false;
    }
    int *order = malloc((size_t)(s->count ? s->count : 1) * sizeof *order);
    if (!order) {
        free(b.s);
        return ms_errf(err, ENOMEM, "out of memory rendering safetensors header of %s", s->name);
    }
    for (int i = 0; i < s->count; i++) order[i] = s->first + i;
    if (p->sort_header_keys) qsort_r(order, (size_t)s->count, sizeof *order, cmp_name_idx, p->tensors);
    for (int k = 0; k < s->count; k++) {
        const ms_stw_tensor *t = &p->tensors[order[k]];
        if (!first) ms_sb_putn(&b, ",", 1);
        first = false;
        ms_sb_json_str(&b, t->name, strlen(t->name));
        ms_sb_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", ms_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) ms_sb_printf(&b, d ? ",%" PRId64 : "%" PRId64, t->shape[d]);
        ms_sb_printf(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", t->begin, t->begin + t->nbytes);
    }
    free(order);
    ms_sb_putn(&b, "}", 1);
    while (!b.oom && b.len % 8) ms_sb_putn(&b, " ", 1);
    if (b.oom) {
        free(b.s);
        return ms_errf(err, ENOMEM, "out of memory rendering safetensors header of %s", s->name);
    }
    if (b.len > STW_MAX_HEADER) {
        free(b.s);
        return ms_errf(err, E2BIG, "%s: header of %zu bytes exceeds the %llu MiB safetensors limit (lower the shard size)",
                       s->name, b.len, STW_MAX_HEADER >> 20);
    }
    s->header = b.s;
    s->header_len = b.len;
    s->file_size = 8 + s->header_len + s->data_size;
    return 0;
}

int ms_stw_plan_finish(ms_stw_plan *p, ms_err *err)
{
    if (p->finished) return 0;
    /* duplicates */
    int *idx = sorted_indices(p);
    if (!idx) return ms_errf(err, ENOMEM, "out of memory");
    for (int i = 1; i < p->n_tensors; i++)
        if (!strcmp(p->tensors[idx[i - 1]].name, p->tensors[idx[i]].name)) {
            int rc = ms_errf(err, EINVAL, "safetensors plan: duplicate tensor name %s", p->tensors[idx[i]].name);
            free(idx);
            return rc;
        }
    free(idx);

    /* shard assignment (mlx_lm make_shards, without its empty leading shard) */
    int n_shards = 1;
    uint64_t cur = 0, total = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        ms_stw_tensor *t = &p->tensors[i];
        bool has_any = i > 0 && p->tensors[i - 1].shard == n_shards - 1;
        if (p->max_shard_bytes && has_any && cur + t->nbytes > p->max_shard_bytes) {
            n_shards++;
            cur = 0;
        }
        t->shard = n_shards - 1;
        t->begin = cur;
        cur += t->nbytes;
        if (!ms_add_u64(total, t->nbytes, &total))
            return ms_errf(err, EOVERFLOW, "safetensors plan: total size overflows");
    }
    if (n_shards > 99999) return ms_errf(err, E2BIG, "safetensors plan: %d shards (max 99999)", n_shards);
    p->shards = calloc((size_t)n_shards, sizeof *p->shards);
    if (!p->shards) return ms_errf(err, ENOMEM, "out of memory");
    p->n_shards = n_shards;
    for (int s = 0; s < n_shards; s++) {
        ms_stw_shard *sh = &p->shards[s];
        if (n_shards == 1) snprintf(sh->name, sizeof sh->name, "model.safetensors");
        else snprintf(sh->name, sizeof sh->name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        sh->first = -1;
    }
    for (int i = 0; i < p->n_tensors; i++) {
        ms_stw_shard *sh = &p->shards[p->tensors[i].shard];
        if (sh->first < 0) sh->first = i;
        sh->count++;
        sh->data_size += p->tensors[i].nbytes;
    }
    for (int s = 0; s < n_shards; s++) {
        if (p->shards[s].first < 0) p->shards[s].first = 0;
        int rc = render_header(p, &p->shards[s], err);
        if (rc < 0) return rc;
    }
    p->total_bytes = total;
    p->finished = true;
    return 0;
}

uint64_t ms_stw_plan_file_bytes(const ms_stw_plan *p)
{
    uint64_t n = 0;
    for (int s = 0; s < p->n_shards; s++) n += p->shards[s].file_size;
    return n;
}

void ms_stw_plan_free(ms_stw_plan *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_tensors; i++) free(p->tensors[i].name);
    free(p->tensors);
    for (int s = 0; s < p->n_shards; s++) free(p->shards[s].header);
    free(p->shards);
    for (int i = 0; i < p->n_meta; i++) {
        free(p->meta_key[i]);
        free(p->meta_val[i]);
    }
    memset(p, 0, sizeof *p);
}

/* ---- files ---- */

static int write_full(int fd, const void *data, size_t len, const char *path, ms_err *err)
{
    const uint8_t *d = data;
    while (len > 0) {
        ssize_t n = write(fd, d, len > (1u << 30) ? (1u << 30) : len);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            return ms_errf(err, e, "%s: write failed: %s", path, strerror(e));
        }
        if (n == 0) return ms_errf(err, EIO, "%s: write returned 0", path);
        d += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Write a small file through name.tmp + rename, so a reader never sees half. */
static int write_text_file(const char *dir, const char *name, const char *text, size_t len, ms_err *err)
{
    char path[4096], tmp[4200];
    int rc = ms_path_join(path, sizeof path, dir, name, err);
    if (rc < 0) return rc;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        return ms_errf(err, e, "%s: cannot create: %s", tmp, strerror(e));
    }
    rc = write_full(fd, text, len, tmp, err);
    if (close(fd) < 0 && rc == 0) {
        int e = errno;
        rc = ms_errf(err, e, "%s: close failed: %s", tmp, strerror(e));
    }
    if (rc == 0 && rename(tmp, path) < 0) {
        int e = errno;
        rc = ms_errf(err, e, "%s: rename failed: %s", path, strerror(e));
    }
    if (rc < 0) unlink(tmp);
    return rc;
}

int ms_stw_write_text(const char *dir, const char *name, const char *text, ms_err *err)
{
    return write_text_file(dir, name, text, strlen(text), err);
}

int ms_stw_write_index(const ms_stw_plan *p, const char *dir, const ms_stw_index_opts *opts, ms_err *err)
{
    if (!p->finished) return ms_errf(err, EINVAL, "safetensors index: plan not finished");
    int indent = opts && opts->indent > 0 ? opts->indent : 4;
    if (indent > 16) indent = 16;
    int *idx = sorted_indices(p);
    if (!idx) return ms_errf(err, ENOMEM, "out of memory");
    ms_strbuf b = {0};
    ms_sb_putn(&b, "{", 1);
    ms_sb_newline(&b, indent, 1);
    ms_sb_puts(&b, "\"metadata\": {");
    ms_sb_newline(&b, indent, 2);
    ms_sb_printf(&b, "\"total_size\": %" PRIu64, p->total_bytes);
    if (opts && opts->total_parameters) {
        ms_sb_putn(&b, ",", 1);
        ms_sb_newline(&b, indent, 2);
        ms_sb_printf(&b, "\"total_parameters\": %" PRIu64, opts->total_parameters);
    }
    ms_sb_newline(&b, indent, 1);
    ms_sb_puts(&b, "},");
    ms_sb_newline(&b, indent, 1);
    ms_sb_puts(&b, "\"weight_map\": {");
    for (int i = 0; i < p->n_tensors; i++) {
        const ms_stw_tensor *t = &p->tensors[idx[i]];
        if (i) ms_sb_putn(&b, ",", 1);
        ms_sb_newline(&b, indent, 2);
        ms_sb_json_str(&b, t->name, strlen(t->name));
        ms_sb_puts(&b, ": ");
        ms_sb_json_str(&b, p->shards[t->shard].name, strlen(p->shards[t->shard].name));
    }
    if (p->n_tensors) ms_sb_newline(&b, indent, 1);
    ms_sb_putn(&b, "}", 1);
    ms_sb_newline(&b, indent, 0);
    ms_sb_putn(&b, "}", 1);
    if (indent == 2) ms_sb_putn(&b, "\n", 1); /* transformers ends its files with a newline, mlx_lm does not */
    free(idx);
    if (b.oom) {
        free(b.s);
        return ms_errf(err, ENOMEM, "out of memory rendering the safetensors index");
    }
    int rc = write_text_file(dir, "model.safetensors.index.json", b.s, b.len, err);
    free(b.s);
    return rc;
}

/* ---- writer ---- */

static void shard_path(const ms_stw_writer *w, int s, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", w->dir, w->plan->shards[s].name);
}

/* Cache management after [begin, end) of the current file was written. */
static int drop_cache_step(ms_stw_writer *w, uint64_t begin, uint64_t end, const char *path, ms_err *err)
{
    if (!w->opts.drop_cache || end <= begin) return 0;
    if (sync_file_range(w->fd, (off64_t)begin, (off64_t)(end - begin), SYNC_FILE_RANGE_WRITE) < 0 &&
        errno != EINVAL && errno != ENOSYS && errno != ESPIPE) {
        int e = errno;
        return ms_errf(err, e, "%s: writeback failed: %s", path, strerror(e));
    }
    if (w->sync_prev_end > w->sync_prev_begin) {
        uint64_t pb = w->sync_prev_begin, pl = w->sync_prev_end - w->sync_prev_begin;
        if (sync_file_range(w->fd, (off64_t)pb, (off64_t)pl,
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) < 0 &&
            errno != EINVAL && errno != ENOSYS && errno != ESPIPE) {
            int e = errno;
            return ms_errf(err, e, "%s: writeback failed: %s", path, strerror(e));
        }
        posix_fadvise(w->fd, (off_t)pb, (off_t)pl, POSIX_FADV_DONTNEED);
    }
    w->sync_prev_begin = begin;
    w->sync_prev_end = end;
    return 0;
}

static int stw_flush(ms_stw_writer *w, ms_err *err)
{
    if (w->buf_len == 0) return 0;
    char path[4200];
    shard_path(w, w->shard, path, sizeof path);
    int rc = write_full(w->fd, w->buf, w->buf_len, path, err);
    if (rc < 0) return rc;
    uint64_t begin = w->file_pos;
    w->file_pos += w->buf_len;
    w->buf_len = 0;
    rc = drop_cache_step(w, begin, w->file_pos, path, err);
    if (rc < 0) return rc;
    if (w->opts.progress) w->opts.progress(w->opts.progress_ctx, w->done, w->plan->total_bytes);
    return 0;
}

static int stw_begin_shard(ms_stw_writer *w, int s, ms_err *err)
{
    const ms_stw_shard *sh = &w->plan->shards[s];
    char path[4200];
    shard_path(w, s, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        return ms_errf(err, e, "%s: cannot create: %s", path, strerror(e));
    }
    w->fd = fd;
    w->shard = s;
    w->n_created = s + 1;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(sh->header_len >> (8 * i));
    int rc = write_full(fd, len8, 8, path, err);
    if (rc == 0) rc = write_full(fd, sh->header, sh->header_len, path, err);
    if (rc < 0) return rc;
    w->file_pos = 8 + sh->header_len;
    w->shard_left = sh->data_size;
    w->sync_prev_begin = w->sync_prev_end = 0;
    return 0;
}

static int stw_end_shard(ms_stw_writer *w, ms_err *err)
{
    if (w->fd < 0) return 0;
    char path[4200];
    shard_path(w, w->shard, path, sizeof path);
    int rc = stw_flush(w, err);
    if (rc < 0) return rc;
    if (w->file_pos != w->plan->shards[w->shard].file_size)
        return ms_errf(err, EIO, "%s: wrote %" PRIu64 " bytes, planned %" PRIu64, path, w->file_pos,
                       w->plan->shards[w->shard].file_size);
    if (w->opts.fsync && fsync(w->fd) < 0) {
        int e = errno;
        return ms_errf(err, e, "%s: fsync failed: %s", path, strerror(e));
    }
    if (w->opts.drop_cache) {
        if (sync_file_range(w->fd, 0, 0,
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) < 0 &&
            errno != EINVAL && errno != ENOSYS && errno != ESPIPE) {
            int e = errno;
            return ms_errf(err, e, "%s: writeback failed: %s", path, strerror(e));
        }
        posix_fadvise(w->fd, 0, 0, POSIX_FADV_DONTNEED);
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) < 0) {
        int e = errno;
        return ms_errf(err, e, "%s: close failed: %s", path, strerror(e));
    }
    return 0;
}

/* Make shard s current (ending the current one and creating any in between). */
static int stw_goto_shard(ms_stw_writer *w, int s, ms_err *err)
{
    while (w->shard < s) {
        if (w->shard >= 0 && w->shard_left > 0) {
            char path[4200];
            shard_path(w, w->shard, path, sizeof path);
            return ms_errf(err, EIO, "%s: %" PRIu64 " data bytes missing", path, w->shard_left);
        }
        int rc = stw_end_shard(w, err);
        if (rc == 0) rc = stw_begin_shard(w, w->shard + 1, err);
        if (rc < 0) return rc;
    }
    return 0;
}

int ms_stw_writer_open(ms_stw_writer *w, const ms_stw_plan *p, const char *dir, const ms_stw_writer_opts *opts,
                       ms_err *err)
{
    memset(w, 0, sizeof *w);
    w->fd = -1;
    w->shard = -1;
    if (!p->finished) return ms_errf(err, EINVAL, "safetensors writer: plan not finished");
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        int e = errno ? errno : ENOTDIR;
        return ms_errf(err, e, "%s: not a directory", dir);
    }
    w->plan = p;
    if (opts) w->opts = *opts;
    size_t cap = w->opts.buffer_bytes ? w->opts.buffer_bytes : (64u << 20);
    if (cap < (1u << 20)) cap = 1u << 20;
    if (cap > (1u << 30)) cap = 1u << 30;
    uint64_t biggest = 0;
    for (int s = 0; s < p->n_shards; s++) biggest = MS_MAX(biggest, p->shards[s].data_size);
    if (biggest < cap) cap = (size_t)MS_ALIGN_UP(MS_MAX(biggest, 4096), 4096);
    w->buf = ms_aligned_alloc(4096, cap);
    w->dir = strdup(dir);
    if (!w->buf || !w->dir) {
        free(w->buf);
        free(w->dir);
        w->buf = NULL;
        w->dir = NULL;
        return ms_errf(err, ENOMEM, "out of memory (safetensors write buffer of %zu bytes)", cap);
    }
    w->buf_cap = cap;
    if (w->opts.progress) w->opts.progress(w->opts.progress_ctx, 0, p->total_bytes);
    return 0;
}

int ms_stw_writer_write(ms_stw_writer *w, const void *data, size_t len, ms_err *err)
{
    if (w->failed) return ms_errf(err, EIO, "safetensors writer: write after an error");
    const uint8_t *d = data;
    int rc = 0;
    while (len > 0) {
        if (w->shard < 0 || w->shard_left == 0) {
            if (w->shard + 1 >= w->plan->n_shards) {
                rc = ms_errf(err, EINVAL, "safetensors writer: %zu bytes beyond the planned %" PRIu64, len,
                             w->plan->total_bytes);
                break;
            }
            rc = stw_goto_shard(w, w->shard + 1, err);
            if (rc < 0) break;
            continue;
        }
        size_t n = len;
        if (n > w->shard_left) n = (size_t)w->shard_left;
        if (n > w->buf_cap - w->buf_len) n = w->buf_cap - w->buf_len;
        memcpy(w->buf + w->buf_len, d, n);
        w->buf_len += n;
        w->shard_left -= n;
        w->done += n;
        d += n;
        len -= n;
        if (w->buf_len == w->buf_cap) {
            rc = stw_flush(w, err);
            if (rc < 0) break;
        }
    }
    if (rc < 0) w->failed = true;
    return rc;
}

static void stw_free(ms_stw_writer *w)
{
    free(w->buf);
    free(w->dir);
    w->buf = NULL;
    w->dir = NULL;
}

void ms_stw_writer_abort(ms_stw_writer *w)
{
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    if (w->dir) {
        for (int s = 0; s < w->n_created; s++) {
            char path[4200];
            shard_path(w, s, path, sizeof path);
            unlink(path);
        }
    }
    stw_free(w);
}

/* The tensor that holds stream byte `done` (for error messages). */
static const char *tensor_at(const ms_stw_plan *p, uint64_t done)
{
    uint64_t off = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        if (done < off + p->tensors[i].nbytes) return p->tensors[i].name;
        off += p->tensors[i].nbytes;
    }
    return "(end)";
}

int ms_stw_writer_close(ms_stw_writer *w, ms_err *err)
{
    int rc = 0;
    if (w->failed) rc = ms_errf(err, EIO, "safetensors writer: closed after an error");
    if (rc == 0 && w->done != w->plan->total_bytes)
        rc = ms_errf(err, EIO, "%s: only %" PRIu64 " of %" PRIu64 " data bytes written (tensor %s incomplete)", w->dir,
                     w->done, w->plan->total_bytes, tensor_at(w->plan, w->done));
    if (rc == 0) rc = stw_goto_shard(w, w->plan->n_shards - 1, err);
    if (rc == 0) rc = stw_end_shard(w, err);
    if (rc == 0 && w->opts.progress) w->opts.progress(w->opts.progress_ctx, w->done, w->plan->total_bytes);
    if (rc < 0) {
        ms_stw_writer_abort(w);
        return rc;
    }
    stw_free(w);
    return 0;
}

int ms_stw_write_all(const ms_stw_plan *p, const char *dir, const ms_stw_writer_opts *opts, ms_stw_fill_fn fill,
                     void *ctx, ms_err *err)
{
    ms_stw_writer w;
    int rc = ms_stw_writer_open(&w, p, dir, opts, err);
    if (rc < 0) return rc;
    for (int i = 0; i < p->n_tensors && rc == 0; i++) {
        const ms_stw_tensor *t = &p->tensors[i];
        rc = stw_goto_shard(&w, t->shard, err);
        uint64_t off = 0;
        while (rc == 0 && off < t->nbytes) {
            uint64_t rem = t->nbytes - off;
            size_t space = w.buf_cap - w.buf_len;
            size_t n = rem < space ? (size_t)rem : space;
            if (n < rem) n &= ~(size_t)63;
            if (n == 0) {
                rc = stw_flush(&w, err);
                continue;
            }
            rc = fill(ctx, i, off, w.buf + w.buf_len, n, err);
            if (rc < 0) {
                ms_err_prefix(err, "tensor %s: ", t->name);
                break;
            }
            w.buf_len += n;
            w.shard_left -= n;
            w.done += n;
            off += n;
            if (w.buf_len == w.buf_cap) rc = stw_flush(&w, err);
        }
    }
    if (rc < 0) {
        ms_stw_writer_abort(&w);
        return rc;
    }
    return ms_stw_writer_close(&w, err);
}

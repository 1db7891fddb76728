/* safetensors.c - parse and validate safetensors headers and the shard index
 * into a tensor table (see safetensors.h for the rules enforced). */
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "util.h"

int64_t ms_tensor_numel(const ms_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

char *ms_tensor_shape_str(const ms_tensor *t, char *buf, size_t len)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int i = 0; i < t->ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
    return buf;
}

const ms_tensor *ms_tt_find(const ms_tensor_table *tt, const char *name)
{
    int64_t i = ms_strmap_get(&tt->index, name);
    return i < 0 ? NULL : &tt->tensors[i];
}

const ms_tensor *ms_tt_findf(const ms_tensor_table *tt, const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof name) return NULL;
    return ms_tt_find(tt, name);
}

/* Count the keys of the top-level JSON object by scanning the raw text (json-c
 * keeps only the last of duplicated keys, so duplicates are found by comparing
 * this count with the parsed object's length). */
static long count_top_level_keys(const char *s, size_t n)
{
    int depth = 0;
    long keys = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
            continue;
        }
        if (c == '"') in_str = true;
        else if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') depth--;
        else if (c == ':' && depth == 1) keys++;
    }
    return keys;
}

typedef struct span {
    uint64_t b, e;
    int t;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->b != y->b) return x->b < y->b ? -1 : 1;
    if (x->e != y->e) return x->e < y->e ? -1 : 1;
    return 0;
}

static int push_tensor(ms_tensor_table *tt, ms_err *err)
{
    if (tt->n_tensors == tt->cap_tensors) {
        int cap = tt->cap_tensors ? tt->cap_tensors * 2 : 256;
        ms_tensor *n = realloc(tt->tensors, (size_t)cap * sizeof *n);
        if (!n) return ms_errf(err, ENOMEM, "out of memory");
        tt->tensors = n;
        tt->cap_tensors = cap;
    }
    memset(&tt->tensors[tt->n_tensors], 0, sizeof(ms_tensor));
    return tt->n_tensors++;
}

static int parse_entry(ms_tensor_table *tt, int fi, const char *path, const char *name, json_object *val,
                       uint64_t data_size, ms_err *err)
{
    if (!json_object_is_type(val, json_type_object))
        return ms_errf(err, EINVAL, "%s: tensor %s: header entry is not an object", path, name);
    json_object *jd, *js, *jo;
    if (!json_object_object_get_ex(val, "dtype", &jd) || !json_object_is_type(jd, json_type_string))
        return ms_errf(err, EINVAL, "%s: tensor %s: missing or non-string \"dtype\"", path, name);
    ms_dtype dt;
    if (ms_dtype_parse(json_object_get_string(jd), &dt) < 0)
        return ms_errf(err, EINVAL, "%s: tensor %s: unknown dtype \"%s\"", path, name, json_object_get_string(jd));
    if (!json_object_object_get_ex(val, "shape", &js) || !json_object_is_type(js, json_type_array))
        return ms_errf(err, EINVAL, "%s: tensor %s: missing or non-array \"shape\"", path, name);
    size_t nd = json_object_array_length(js);
    if (nd > MS_MAX_DIMS)
        return ms_errf(err, EINVAL, "%s: tensor %s: %zu dimensions (max %d)", path, name, nd, MS_MAX_DIMS);
    int64_t shape[MS_MAX_DIMS];
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        if (!ms_json_i64(json_object_array_get_idx(js, i), &shape[i]) || shape[i] < 0)
            return ms_errf(err, EINVAL, "%s: tensor %s: shape[%zu] is not a non-negative integer", path, name, i);
        if (!ms_mul_u64(numel, (uint64_t)shape[i], &numel))
            return ms_errf(err, EOVERFLOW, "%s: tensor %s: shape overflows", path, name);
    }
    if (!json_object_object_get_ex(val, "data_offsets", &jo) || !json_object_is_type(jo, json_type_array) ||
        json_object_array_length(jo) != 2)
        return ms_errf(err, EINVAL, "%s: tensor %s: \"data_offsets\" must be [begin, end]", path, name);
    int64_t b, e;
    if (!ms_json_i64(json_object_array_get_idx(jo, 0), &b) || !ms_json_i64(json_object_array_get_idx(jo, 1), &e) ||
        b < 0 || e < b)
        return ms_errf(err, EINVAL, "%s: tensor %s: invalid data_offsets", path, name);
    uint64_t need;
    if (!ms_mul_u64(numel, ms_dtype_size(dt), &need))
        return ms_errf(err, EOVERFLOW, "%s: tensor %s: byte size overflows", path, name);
    char sbuf[128];
    if ((uint64_t)(e - b) != need) {
        ms_tensor tmp = {.ndim = (int)nd};
        memcpy(tmp.shape, shape, nd * sizeof shape[0]);
        return ms_errf(err, EINVAL,
                       "%s: tensor %s: data_offsets span %lld bytes but dtype %s x shape %s needs %llu", path,
                       name, (long long)(e - b), ms_dtype_name(dt), ms_tensor_shape_str(&tmp, sbuf, sizeof sbuf),
                       (unsigned long long)need);
    }
    if ((uint64_t)e > data_size)
        return ms_errf(err, EINVAL,
                       "%s: tensor %s: data_offsets [%lld, %lld) run past the data area (%llu bytes; file truncated?)",
                       path, name, (long long)b, (long long)e, (unsigned long long)data_size);
    int ti = push_tensor(tt, err);
    if (ti < 0) return ti;
    ms_tensor *t = &tt->tensors[ti];
    t->name = strdup(name);
    if (!t->name) return ms_errf(err, ENOMEM, "out of memory");
    t->dtype = dt;
    t->ndim = (int)nd;
    memcpy(t->shape, shape, nd * sizeof shape[0]);
    t->file = fi;
    t->offset = tt->files[fi].data_start + (uint64_t)b;
    t->nbytes = (uint64_t)(e - b);
    return ti;
}

int ms_tt_add_file(ms_tensor_table *tt, const char *path, const char *name, ms_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ms_errf(err, errno, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ms_errf(err, EINVAL, "%s: not a regular file", path);
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8) {
        close(fd);
        return ms_errf(err, EINVAL, "%s: file too small to be safetensors (%llu bytes)", path,
                       (unsigned long long)size);
    }
    uint8_t lenb[8];
    posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM); /* no read-ahead past the header (it would stay cached) */
    if (pread(fd, lenb, 8, 0) != 8) {
        close(fd);
        return ms_errf(err, EIO, "%s: cannot read the header length", path);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lenb[i];
    if (hlen < 2 || hlen > MS_ST_MAX_HEADER) {
        close(fd);
        return ms_errf(err, EINVAL, "%s: implausible header length %llu (limit %llu)", path,
                       (unsigned long long)hlen, (unsigned long long)MS_ST_MAX_HEADER);
    }
    if (8 + hlen > size) {
        close(fd);
        return ms_errf(err, EINVAL, "%s: header length %llu runs past the end of the file (%llu bytes; truncated?)",
                       path, (unsigned long long)hlen, (unsigned long long)size);
    }
    char *hdr = malloc(hlen + 1);
    if (!hdr) {
        close(fd);
        return ms_errf(err, ENOMEM, "%s: out of memory for a %llu-byte header", path, (unsigned long long)hlen);
    }
    uint64_t got = 0;
    while (got < hlen) {
        ssize_t r = pread(fd, hdr + got, hlen - got, (off_t)(8 + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (uint64_t)r;
    }
    if (got != hlen) {
        free(hdr);
        close(fd);
        return ms_errf(err, EIO, "%s: short read of the header", path);
    }
    hdr[hlen] = 0;
    /* the header is read once: keep it out of the page cache */
    posix_fadvise(fd, 0, (off_t)MS_ALIGN_UP(8 + hlen, 4096), POSIX_FADV_DONTNEED);
    posix_fadvise(fd, 0, 0, POSIX_FADV_NORMAL);
    int rc = 0;
    json_object *root = NULL;
    span *spans = NULL;
    if (memchr(hdr, 0, hlen)) {
        rc = ms_errf(err, EINVAL, "%s: header contains a NUL byte", path);
        goto out;
    }
    if (hdr[0] != '{') {
        rc = ms_errf(err, EINVAL, "%s: header does not start with '{' (not a safetensors file?)", path);
        goto out;
    }
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto out;
    }
    root = json_tokener_parse_ex(tok, hdr, (int)hlen);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success) {
        rc = ms_errf(err, EINVAL, "%s: header is not valid JSON: %s", path,
                     root ? "trailing data" : json_tokener_error_desc(jerr));
        goto out;
    }
    for (size_t i = used; i < hlen; i++)
        if (hdr[i] != ' ' && hdr[i] != '\n' && hdr[i] != '\t' && hdr[i] != '\r') {
            rc = ms_errf(err, EINVAL, "%s: trailing bytes after the JSON header", path);
            goto out;
        }
    if (!json_object_is_type(root, json_type_object)) {
        rc = ms_errf(err, EINVAL, "%s: header is not a JSON object", path);
        goto out;
    }
    long nkeys = count_top_level_keys(hdr, used);
    if (nkeys != (long)json_object_object_length(root)) {
        rc = ms_errf(err, EINVAL, "%s: header has duplicate tensor names", path);
        goto out;
    }
    /* Register the file. */
    ms_st_file *nf = realloc(tt->files, (size_t)(tt->n_files + 1) * sizeof *nf);
    if (!nf) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto out;
    }
    tt->files = nf;
    int fi = tt->n_files++;
    ms_st_file *f = &tt->files[fi];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    f->name = strdup(name);
    f->size = size;
    f->data_start = 8 + hlen;
    f->fd = fd;
    fd = -1;
    if (!f->path || !f->name) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto out;
    }
    uint64_t data_size = size - f->data_start;
    int first = tt->n_tensors;
    json_object_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            json_object *fmt;
            if (json_object_is_type(val, json_type_object) && json_object_object_get_ex(val, "format", &fmt) &&
                json_object_is_type(fmt, json_type_string))
                f->format = strdup(json_object_get_string(fmt));
            continue;
        }
        int ti = parse_entry(tt, fi, path, key, val, data_size, err);
        if (ti < 0) {
            rc = ti;
            goto out;
        }
        if (ms_strmap_put(&tt->index, tt->tensors[ti].name, ti) == 1) {
            const ms_tensor *prev = ms_tt_find(tt, key);
            (void)prev;
            rc = ms_errf(err, EINVAL, "%s: tensor %s also appears in another shard", path, key);
            goto out;
        }
    }
    /* No overlapping data ranges within this file. */
    int n = tt->n_tensors - first;
    spans = malloc((size_t)(n ? n : 1) * sizeof *spans);
    if (!spans) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto out;
    }
    int ns = 0;
    for (int i = first; i < tt->n_tensors; i++)
        if (tt->tensors[i].nbytes)
            spans[ns++] = (span){tt->tensors[i].offset, tt->tensors[i].offset + tt->tensors[i].nbytes, i};
    qsort(spans, (size_t)ns, sizeof *spans, span_cmp);
    for (int i = 1; i < ns; i++)
        if (spans[i].b < spans[i - 1].e) {
            rc = ms_errf(err, EINVAL, "%s: tensors %s and %s overlap in the data area", path,
                         tt->tensors[spans[i - 1].t].name, tt->tensors[spans[i].t].name);
            goto out;
        }
    rc = fi;
out:
    free(spans);
    if (root) json_object_put(root);
    free(hdr);
    if (fd >= 0) close(fd);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int open_index(ms_tensor_table *tt, const char *dir, const char *ipath, ms_err *err)
{
    char *text = NULL;
    int rc = ms_read_file(ipath, 512u << 20, &text, NULL, err);
    if (rc < 0) return rc;
    json_object *root = json_tokener_parse(text);
    free(text);
    if (!root || !json_object_is_type(root, json_type_object)) {
        if (root) json_object_put(root);
        return ms_errf(err, EINVAL, "%s: not a valid JSON object", ipath);
    }
    json_object *wm;
    if (!json_object_object_get_ex(root, "weight_map", &wm) || !json_object_is_type(wm, json_type_object)) {
        json_object_put(root);
        return ms_errf(err, EINVAL, "%s: missing \"weight_map\" object", ipath);
    }
    /* Distinct shard names, sorted. */
    size_t n = (size_t)json_object_object_length(wm);
    char **names = calloc(n ? n : 1, sizeof *names);
    size_t nn = 0;
    rc = 0;
    json_object_object_foreach(wm, key, val)
    {
        if (!json_object_is_type(val, json_type_string)) {
            rc = ms_errf(err, EINVAL, "%s: weight_map entry %s is not a string", ipath, key);
            break;
        }
        const char *fname = json_object_get_string(val);
        if (!*fname || strchr(fname, '/') || strcmp(fname, "..") == 0) {
            rc = ms_errf(err, EINVAL, "%s: weight_map entry %s names an invalid file \"%s\"", ipath, key, fname);
            break;
        }
        bool seen = false;
        for (size_t i = 0; i < nn && !seen; i++) seen = strcmp(names[i], fname) == 0;
        if (!seen) names[nn++] = (char *)fname;
    }
    if (rc == 0 && nn == 0) rc = ms_errf(err, EINVAL, "%s: weight_map is empty", ipath);
    if (rc == 0) qsort(names, nn, sizeof *names, cmp_str);
    for (size_t i = 0; rc == 0 && i < nn; i++) {
        char p[4096];
        rc = ms_path_join(p, sizeof p, dir, names[i], err);
        if (rc == 0) rc = ms_tt_add_file(tt, p, names[i], err);
        if (rc > 0) rc = 0;
    }
    if (rc == 0) {
        json_object_object_foreach(wm, key, val)
        {
            const ms_tensor *t = ms_tt_find(tt, key);
            const char *fname = json_object_get_string(val);
            if (!t) {
                rc = ms_errf(err, EINVAL, "%s: index lists tensor %s in %s, but %s has no such tensor", ipath, key,
                             fname, fname);
                break;
            }
            if (strcmp(tt->files[t->file].name, fname) != 0) {
                rc = ms_errf(err, EINVAL, "%s: index lists tensor %s in %s, but it is in %s", ipath, key, fname,
                             tt->files[t->file].name);
                break;
            }
        }
    }
    free(names);
    json_object_put(root);
    return rc;
}

int ms_tt_open_dir(const char *dir, ms_tensor_table *tt, ms_err *err)
{
    memset(tt, 0, sizeof *tt);
    tt->dir = strdup(dir);
    if (!tt->dir) return ms_errf(err, ENOMEM, "out of memory");
    struct stat st;
    if (stat(dir, &st) < 0) return ms_errf(err, errno, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return ms_errf(err, ENOTDIR, "%s: not a directory", dir);
    char p[4096];
    int rc = ms_path_join(p, sizeof p, dir, "model.safetensors.index.json", err);
    if (rc < 0) return rc;
    if (access(p, F_OK) == 0) return open_index(tt, dir, p, err);
    rc = ms_path_join(p, sizeof p, dir, "model.safetensors", err);
    if (rc < 0) return rc;
    if (access(p, F_OK) == 0) {
        rc = ms_tt_add_file(tt, p, "model.safetensors", err);
        return rc < 0 ? rc : 0;
    }
    /* Fallback: every *.safetensors file, sorted (like mlx-lm's glob). */
    DIR *d = opendir(dir);
    if (!d) return ms_errf(err, errno, "%s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t nn = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l > 12 && strcmp(de->d_name + l - 12, ".safetensors") == 0) {
            char **nn2 = realloc(names, (nn + 1) * sizeof *names);
            if (!nn2) break;
            names = nn2;
            names[nn++] = strdup(de->d_name);
        }
    }
    closedir(d);
    if (nn == 0) {
        free(names);
        return ms_errf(err, ENOENT, "%s: no model.safetensors.index.json, model.safetensors or *.safetensors files",
                       dir);
    }
    qsort(names, nn, sizeof *names, cmp_str);
    rc = 0;
    for (size_t i = 0; i < nn; i++) {
        if (rc == 0) {
            rc = ms_path_join(p, sizeof p, dir, names[i], err);
            if (rc == 0) rc = ms_tt_add_file(tt, p, names[i], err);
            if (rc > 0) rc = 0;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int ms_tt_read_range(const ms_tensor_table *tt, const ms_tensor *t, uint64_t off, uint64_t len, void *dst,
                     bool drop_cache, ms_err *err)
{
    if (off > t->nbytes || len > t->nbytes - off)
        return ms_errf(err, EINVAL, "tensor %s: read [%llu, +%llu) outside its %llu bytes", t->name,
                       (unsigned long long)off, (unsigned long long)len, (unsigned long long)t->nbytes);
    const ms_st_file *f = &tt->files[t->file];
    uint64_t pos = t->offset + off, got = 0;
    if (drop_cache) posix_fadvise(f->fd, 0, 0, POSIX_FADV_RANDOM); /* read-ahead past the range would stay cached */
    while (got < len) {
        size_t chunk = (size_t)MS_MIN(len - got, (uint64_t)1 << 30);
        ssize_t r = pread(f->fd, (char *)dst + got, chunk, (off_t)(pos + got));
        if (r < 0) {
            if (errno == EINTR) continue;
            return ms_errf(err, errno, "%s: tensor %s: read at offset %llu failed: %s", f->path, t->name,
                           (unsigned long long)(pos + got), strerror(errno));
        }
        if (r == 0)
            return ms_errf(err, EIO, "%s: tensor %s: unexpected end of file at offset %llu (file truncated?)",
                           f->path, t->name, (unsigned long long)(pos + got));
        got += (uint64_t)r;
    }
    if (drop_cache) { /* whole pages: a partial page at either end would stay cached */
        uint64_t a = pos / 4096 * 4096;
        posix_fadvise(f->fd, (off_t)a, (off_t)(MS_ALIGN_UP(pos + len, 4096) - a), POSIX_FADV_DONTNEED);
    }
    return 0;
}

int ms_tt_read(const ms_tensor_table *tt, const ms_tensor *t, void *dst, bool drop_cache, ms_err *err)
{
    return ms_tt_read_range(tt, t, 0, t->nbytes, dst, drop_cache, err);
}

void ms_tt_free(ms_tensor_table *tt)
{
    for (int i = 0; i < tt->n_files; i++) {
        free(tt->files[i].path);
        free(tt->files[i].name);
        free(tt->files[i].format);
        if (tt->files[i].fd > 0) close(tt->files[i].fd);
    }
    for (int i = 0; i < tt->n_tensors; i++) free(tt->tensors[i].name);
    free(tt->files);
    free(tt->tensors);
    free(tt->dir);
    ms_strmap_free(&tt->index);
    memset(tt, 0, sizeof *tt);
}

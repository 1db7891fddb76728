/* trace.c - see trace.h. The JSON-lines reader parses one line at a time with
 * json-c (getline, so traces larger than memory-friendly slurps are fine), the
 * binary reader walks fixed-layout records; both append into growable arrays
 * and validate every field against the header before accepting a token. The
 * writer emits the header through json-c (string escaping) and token lines by
 * hand (integers only). */
#include "trace.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIN_MAGIC "MSTRACE1"
#define BIN_HDR_MAX (1u << 20)
#define TAG_TOKEN 1
#define TAG_TOKEN_PRED 2
#define TAG_BATCH 3

/* ------------------------------------------------------------------ header */

static int parse_header(json_object *h, const char *path, const char *where, ms_trace_info *info, ms_err *err)
{
    memset(info, 0, sizeof *info);
    if (!json_object_is_type(h, json_type_object))
        return ms_errf(err, EINVAL, "%s: %s: header is not a JSON object", path, where);
    json_object *v;
    if (!json_object_object_get_ex(h, "format", &v) || !json_object_is_type(v, json_type_string) ||
        strcmp(json_object_get_string(v), "moestream-trace") != 0)
        return ms_errf(err, EINVAL, "%s: %s: header: \"format\" must be \"moestream-trace\"", path, where);
    if (!json_object_object_get_ex(h, "version", &v) || !json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) != 1)
        return ms_errf(err, EINVAL, "%s: %s: header: \"version\" must be 1", path, where);
    static const char *const names[3] = {"n_layers", "n_experts", "top_k"};
    const int64_t max[3] = {MS_TRACE_MAX_LAYERS, MS_TRACE_MAX_EXPERTS, MS_TRACE_MAX_TOPK};
    uint32_t val[3];
    for (int i = 0; i < 3; i++) {
        if (!json_object_object_get_ex(h, names[i], &v) || !json_object_is_type(v, json_type_int))
            return ms_errf(err, EINVAL, "%s: %s: header: missing integer \"%s\"", path, where, names[i]);
        int64_t x = json_object_get_int64(v);
        if (x < 1 || x > max[i])
            return ms_errf(err, EINVAL, "%s: %s: header: \"%s\" = %" PRId64 " out of range [1, %" PRId64 "]", path,
                           where, names[i], x, max[i]);
        val[i] = (uint32_t)x;
    }
    if (val[2] > val[1])
        return ms_errf(err, EINVAL, "%s: %s: header: top_k %u > n_experts %u", path, where, val[2], val[1]);
    info->n_layers = val[0];
    info->n_experts = val[1];
    info->top_k = val[2];
    if (json_object_object_get_ex(h, "model", &v) && json_object_is_type(v, json_type_string))
        snprintf(info->model, sizeof info->model, "%s", json_object_get_string(v));
    if (json_object_object_get_ex(h, "source", &v) && json_object_is_type(v, json_type_string))
        snprintf(info->source, sizeof info->source, "%s", json_object_get_string(v));
    if (json_object_object_get_ex(h, "layers", &v)) {
        if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) != info->n_layers)
            return ms_errf(err, EINVAL, "%s: %s: header: \"layers\" must be an array of n_layers (%u) integers", path,
                           where, info->n_layers);
        info->layers = malloc(info->n_layers * sizeof *info->layers);
        if (!info->layers) return ms_errf(err, ENOMEM, "out of memory");
        for (uint32_t i = 0; i < info->n_layers; i++) {
            json_object *e = json_object_array_get_idx(v, i);
            int64_t x = json_object_is_type(e, json_type_int) ? json_object_get_int64(e) : -1;
            if (x < 0 || x > INT32_MAX) {
                free(info->layers);
                info->layers = NULL;
                return ms_errf(err, EINVAL, "%s: %s: header: \"layers\"[%u] is not a layer index", path, where, i);
            }
            info->layers[i] = (int32_t)x;
        }
    }
    return 0;
}

static json_object *header_json(const ms_trace_info *info)
{
    json_object *h = json_object_new_object();
    json_object_object_add(h, "format", json_object_new_string("moestream-trace"));
    json_object_object_add(h, "version", json_object_new_int(1));
    json_object_object_add(h, "model", json_object_new_string(info->model));
    json_object_object_add(h, "n_layers", json_object_new_int64(info->n_layers));
    json_object_object_add(h, "n_experts", json_object_new_int64(info->n_experts));
    json_object_object_add(h, "top_k", json_object_new_int64(info->top_k));
    json_object *ly = json_object_new_array();
    for (uint32_t i = 0; i < info->n_layers; i++)
        json_object_array_add(ly, json_object_new_int64(info->layers ? info->layers[i] : (int64_t)i));
    json_object_object_add(h, "layers", ly);
    if (info->source[0]) json_object_object_add(h, "source", json_object_new_string(info->source));
    return h;
}

/* ------------------------------------------------------------- token store */

typedef struct builder {
    ms_trace *t;
    uint64_t cap;
    const char *path;
    const char *unit;  /* "line" or "record", for messages */
    uint32_t left;     /* tokens of the current forward pass still to come */
    uint64_t pass_tok; /* first token of that pass */
    uint64_t pass_at;  /* its line / record number */
} builder;

static int grow(builder *b, uint32_t need_pred, ms_err *err)
{
    ms_trace *t = b->t;
    size_t per = (size_t)t->info.n_layers * t->info.top_k;
    if (t->n_tokens == b->cap) {
        uint64_t nc = b->cap ? b->cap * 2 : 1024;
        if (nc > SIZE_MAX / (per * sizeof(uint16_t)))
            return ms_errf(err, E2BIG, "%s: trace too large (%" PRIu64 " tokens)", b->path, t->n_tokens);
        uint32_t *s = realloc(t->seq, nc * sizeof *s);
        if (s) t->seq = s;
        uint32_t *p = realloc(t->pos, nc * sizeof *p);
        if (p) t->pos = p;
        uint32_t *ba = realloc(t->batch, nc * sizeof *ba);
        if (ba) t->batch = ba;
        uint16_t *e = realloc(t->experts, nc * per * sizeof *e);
        if (e) t->experts = e;
        if (!s || !p || !ba || !e) return ms_errf(err, ENOMEM, "%s: out of memory at token %" PRIu64, b->path, t->n_tokens);
        if (t->max_pred) {
            int32_t *q = realloc(t->predicted, nc * t->info.n_layers * t->max_pred * sizeof *q);
            if (!q) return ms_errf(err, ENOMEM, "%s: out of memory at token %" PRIu64, b->path, t->n_tokens);
            t->predicted = q;
        }
        b->cap = nc;
    }
    if (need_pred > t->max_pred) {
        /* Widen the prediction table (rare: first token with predictions, or a longer list). */
        size_t rows = (size_t)b->cap * t->info.n_layers;
        int32_t *q = malloc(rows * need_pred * sizeof *q);
        if (!q) return ms_errf(err, ENOMEM, "%s: out of memory for predictions", b->path);
        for (size_t r = 0; r < rows; r++)
            for (uint32_t j = 0; j < need_pred; j++)
                q[r * need_pred + j] = (t->predicted && j < t->max_pred) ? t->predicted[r * t->max_pred + j] : -1;
        free(t->predicted);
        t->predicted = q;
        t->max_pred = need_pred;
    }
    return 0;
}

/* Forward-pass bookkeeping for token t->n_tokens (about to be appended) with
 * seq, announced = its "batch" value (0 = none; 1 = alone, an error inside a
 * batch). */
static int take_batch(builder *b, uint32_t seq, uint32_t announced, uint64_t at, ms_err *err)
{
    ms_trace *t = b->t;
    uint64_t i = t->n_tokens;
    if (announced) {
        if (b->left)
            return ms_errf(err, EINVAL,
                           "%s: %s %" PRIu64 ": a batch starts inside the batch of %s %" PRIu64 " (%u tokens to come)",
                           b->path, b->unit, at, b->unit, b->pass_at, b->left);
        t->batch[i] = announced;
        b->left = announced - 1;
        b->pass_tok = i;
        b->pass_at = at;
    } else if (b->left) {
        if (seq != t->seq[b->pass_tok])
            return ms_errf(err, EINVAL, "%s: %s %" PRIu64 ": seq %u inside the batch of %s %" PRIu64 " (seq %u)",
                           b->path, b->unit, at, seq, b->unit, b->pass_at, t->seq[b->pass_tok]);
        t->batch[i] = 0;
        b->left--;
    } else {
        t->batch[i] = 1;
    }
    return 0;
}

static int batch_done(const builder *b, ms_err *err)
{
    if (b->left)
        return ms_errf(err, EINVAL, "%s: the trace ends inside the batch of %s %" PRIu64 " (%u tokens missing)",
                       b->path, b->unit, b->pass_at, b->left);
    return 0;
}

static int check_batch_len(int64_t n, const char *path, const char *unit, uint64_t at, ms_err *err)
{
    if (n < 1 || n > MS_TRACE_MAX_BATCH)
        return ms_errf(err, EINVAL, "%s: %s %" PRIu64 ": \"batch\" = %" PRId64 " out of range [1, %u]", path, unit, at,
                       n, MS_TRACE_MAX_BATCH);
    return 0;
}

/* ------------------------------------------------------------ JSON reader */

static int json_ids(json_object *arr, uint32_t want, bool exact, const ms_trace_info *info, uint32_t *out,
                    uint32_t *n_out, const char *path, uint64_t line, const char *field, uint32_t layer, ms_err *err)
{
    if (!json_object_is_type(arr, json_type_array))
        return ms_errf(err, EINVAL, "%s: line %" PRIu64 ": \"%s\"[%u] is not an array", path, line, field, layer);
    size_t n = json_object_array_length(arr);
    if (exact ? n != want : n > want)
        return ms_errf(err, EINVAL, "%s: line %" PRIu64 ": \"%s\"[%u] has %zu experts, expected %s%u", path, line,
                       field, layer, n, exact ? "" : "at most ", want);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(e, json_type_int))
            return ms_errf(err, EINVAL, "%s: line %" PRIu64 ": \"%s\"[%u][%zu] is not an integer", path, line, field,
                           layer, i);
        int64_t x = json_object_get_int64(e);
        if (x < 0 || x >= info->n_experts)
            return ms_errf(err, EINVAL, "%s: line %" PRIu64 ": \"%s\"[%u][%zu] = %" PRId64 " out of range [0, %u)",
                           path, line, field, layer, i, x, info->n_experts);
        for (size_t j = 0; j < i; j++)
            if (out[j] == (uint32_t)x)
                return ms_errf(err, EINVAL, "%s: line %" PRIu64 ": \"%s\"[%u]: expert %" PRId64 " listed twice", path,
                               line, field, layer, x);
        out[i] = (uint32_t)x;
    }
    *n_out = (uint32_t)n;
    return 0;
}

static int json_u32(json_object *tok, const char *name, uint32_t *out, const char *path, uint64_t line, ms_err *err)
{
    json_object *v;
    if (!json_object_object_get_ex(tok, name, &v) || !json_object_is_type(v, json_type_int))
        return ms_errf(err, EINVAL, "%s: line %" PRIu64 ": missing integer \"%s\"", path, line, name);
    int64_t x = json_object_get_int64(v);
    if (x < 0 || x > UINT32_MAX)
        return ms_errf(err, EINVAL, "%s: line %" PRIu64 ": \"%s\" = %" PRId64 " out of range", path, line, name, x);
    *out = (uint32_t)x;
    return 0;
}

static int json_token(builder *b, json_object *tok, uint64_t line, uint32_t *ids, ms_err *err)
{
    ms_trace *t = b->t;
    const ms_trace_info *info = &t->info;
    const char *path = b->path;
    if (!json_object_is_type(tok, json_type_object))
        return ms_errf(err, EINVAL, "%s: line %" PRIu64 ": not a JSON object", path, line);
    uint32_t seq, pos;
    int rc;
    if ((rc = json_u32(tok, "seq", &seq, path, line, err)) < 0) return rc;
    if ((rc = json_u32(tok, "pos", &pos, path, line, err)) < 0) return rc;
    json_object *ex, *pr = NULL, *bt;
    uint32_t announced = 0;
    if (json_object_object_get_ex(tok, "batch", &bt)) {
        if (!json_object_is_type(bt, json_type_int))
            return ms_errf(err, EINVAL, "%s: line %" PRIu64 ": \"batch\" is not an integer", path, line);
        int64_t x = json_object_get_int64(bt);
        if ((rc = check_batch_len(x, path, "line", line, err)) < 0) return rc;
        announced = (uint32_t)x;
    }
    if (!json_object_object_get_ex(tok, "experts", &ex) || !json_object_is_type(ex, json_type_array))
        return ms_errf(err, EINVAL, "%s: line %" PRIu64 ": missing \"experts\" array", path, line);
    if (json_object_array_length(ex) != info->n_layers)
        return ms_errf(err, EINVAL, "%s: line %" PRIu64 ": \"experts\" has %zu layers, header says %u", path, line,
                       json_object_array_length(ex), info->n_layers);
    uint32_t need_pred = 0;
    if (json_object_object_get_ex(tok, "predicted", &pr) && !json_object_is_type(pr, json_type_null)) {
        if (!json_object_is_type(pr, json_type_array) || json_object_array_length(pr) != info->n_layers)
            return ms_errf(err, EINVAL, "%s: line %" PRIu64 ": \"predicted\" must be an array of %u layers", path,
                           line, info->n_layers);
        for (uint32_t l = 0; l < info->n_layers; l++) {
            json_object *a = json_object_array_get_idx(pr, l);
            size_t n = json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
            if (n > MS_TRACE_MAX_PRED)
                return ms_errf(err, EINVAL, "%s: line %" PRIu64 ": \"predicted\"[%u] lists %zu experts (max %u)", path,
                               line, l, n, MS_TRACE_MAX_PRED);
            if (n > need_pred) need_pred = (uint32_t)n;
        }
    } else {
        pr = NULL;
    }
    if ((rc = grow(b, need_pred, err)) < 0) return rc;
    uint64_t i = t->n_tokens;
    size_t per = (size_t)info->n_layers * info->top_k;
    for (uint32_t l = 0; l < info->n_layers; l++) {
        uint32_t n;
        rc = json_ids(json_object_array_get_idx(ex, l), info->top_k, true, info, ids, &n, path, line, "experts", l, err);
        if (rc < 0) return rc;
        for (uint32_t j = 0; j < info->top_k; j++) t->experts[i * per + (size_t)l * info->top_k + j] = (uint16_t)ids[j];
    }
    if (t->max_pred) {
        int32_t *row = t->predicted + (size_t)i * info->n_layers * t->max_pred;
        for (size_t j = 0; j < (size_t)info->n_layers * t->max_pred; j++) row[j] = -1;
        if (pr) {
            for (uint32_t l = 0; l < info->n_layers; l++) {
                uint32_t n;
                rc = json_ids(json_object_array_get_idx(pr, l), MS_TRACE_MAX_PRED, false, info, ids, &n, path, line,
                              "predicted", l, err);
                if (rc < 0) return rc;
                for (uint32_t j = 0; j < n; j++) row[(size_t)l * t->max_pred + j] = (int32_t)ids[j];
            }
        }
    }
    if ((rc = take_batch(b, seq, announced, line, err)) < 0) return rc;
    t->seq[i] = seq;
    t->pos[i] = pos;
    t->n_tokens++;
    return 0;
}

/* Parse one complete line (no newline) as JSON; NULL + error if not exactly one value. */
static json_object *parse_line(json_tokener *tk, const char *s, size_t n, const char *path, uint64_t line,
                               bool last_no_nl, ms_err *err)
{
    json_tokener_reset(tk);
    json_object *o = json_tokener_parse_ex(tk, s, (int)n);
    enum json_tokener_error je = json_tokener_get_error(tk);
    if (!o || je != json_tokener_success) {
        if (o) json_object_put(o);
        if (je == json_tokener_continue || (last_no_nl && je != json_tokener_success))
            ms_errf(err, EINVAL, "%s: line %" PRIu64 ": truncated line (incomplete JSON)", path, line);
        else
            ms_errf(err, EINVAL, "%s: line %" PRIu64 ": invalid JSON (%s)", path, line, json_tokener_error_desc(je));
        return NULL;
    }
    size_t off = json_tokener_get_parse_end(tk);
    while (off < n && (s[off] == ' ' || s[off] == '\t' || s[off] == '\r')) off++;
    if (off != n) {
        json_object_put(o);
        ms_errf(err, EINVAL, "%s: line %" PRIu64 ": trailing data after the JSON object", path, line);
        return NULL;
    }
    return o;
}

static int read_jsonl(FILE *f, const char *path, ms_trace *t, ms_err *err)
{
    json_tokener *tk = json_tokener_new();
    if (!tk) return ms_errf(err, ENOMEM, "out of memory");
    builder b = {.t = t, .path = path, .unit = "line"};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0;
    int rc = 0;
    uint32_t *ids = NULL;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        bool nl = n > 0 && line[n - 1] == '\n';
        size_t len = (size_t)n - (nl ? 1 : 0);
        if (len > (size_t)INT32_MAX) {
            rc = ms_errf(err, EINVAL, "%s: line %" PRIu64 ": line too long (%zu bytes)", path, lineno, len);
            break;
        }
        if (len == 0 || (len == 1 && line[0] == '\r')) {
            rc = ms_errf(err, EINVAL, "%s: line %" PRIu64 ": empty line", path, lineno);
            break;
        }
        json_object *o = parse_line(tk, line, len, path, lineno, !nl, err);
        if (!o) {
            rc = -EINVAL;
            break;
        }
        if (lineno == 1) {
            rc = parse_header(o, path, "line 1", &t->info, err);
            if (rc == 0) {
                ids = malloc(MS_TRACE_MAX_PRED * sizeof *ids > t->info.top_k * sizeof *ids
                                 ? MS_TRACE_MAX_PRED * sizeof *ids
                                 : t->info.top_k * sizeof *ids);
                if (!ids) rc = ms_errf(err, ENOMEM, "out of memory");
            }
        } else {
            rc = json_token(&b, o, lineno, ids, err);
        }
        json_object_put(o);
        if (rc < 0) break;
    }
    if (rc == 0 && ferror(f)) rc = ms_errf(err, EIO, "%s: read error after line %" PRIu64, path, lineno);
    if (rc == 0 && lineno == 0) rc = ms_errf(err, EINVAL, "%s: empty file (no header line)", path);
    if (rc == 0) rc = batch_done(&b, err);
    free(ids);
    free(line);
    json_tokener_free(tk);
    return rc;
}

/* ----------------------------------------------------------- binary reader */

static int read_binary(FILE *f, const char *path, ms_trace *t, ms_err *err)
{
    unsigned char b4[4];
    if (fread(b4, 1, 4, f) != 4) return ms_errf(err, EINVAL, "%s: binary trace: truncated header", path);
    uint32_t hl = (uint32_t)b4[0] | (uint32_t)b4[1] << 8 | (uint32_t)b4[2] << 16 | (uint32_t)b4[3] << 24;
    if (hl == 0 || hl > BIN_HDR_MAX) return ms_errf(err, EINVAL, "%s: binary trace: header length %u invalid", path, hl);
    char *htext = malloc(hl + 1);
    if (!htext) return ms_errf(err, ENOMEM, "out of memory");
    if (fread(htext, 1, hl, f) != hl) {
        free(htext);
        return ms_errf(err, EINVAL, "%s: binary trace: truncated header", path);
    }
    htext[hl] = 0;
    json_tokener *tk = json_tokener_new();
    json_object *h = tk ? parse_line(tk, htext, hl, path, 1, false, err) : NULL;
    if (tk) json_tokener_free(tk);
    free(htext);
    if (!h) {
        ms_err_prefix(err, "binary header: ");
        return -EINVAL;
    }
    int rc = parse_header(h, path, "binary header", &t->info, err);
    json_object_put(h);
    if (rc < 0) return rc;

    const ms_trace_info *info = &t->info;
    unsigned w = info->n_experts < 255 ? 1 : 2;
    uint32_t none = w == 1 ? 0xff : 0xffff;
    size_t per = (size_t)info->n_layers * info->top_k;
    unsigned char *buf = malloc((size_t)info->n_layers * MS_TRACE_MAX_PRED * w + per * w + 16);
    uint32_t *ids = malloc((per > MS_TRACE_MAX_PRED ? per : MS_TRACE_MAX_PRED) * sizeof *ids);
    builder b = {.t = t, .path = path, .unit = "record"};
    uint64_t rec = 0;
    uint32_t announced = 0;
    uint64_t announced_at = 0;
    if (!buf || !ids) rc = ms_errf(err, ENOMEM, "out of memory");
    while (rc == 0) {
        int tag = fgetc(f);
        if (tag == EOF) break;
        rec++;
        long off = ftell(f) - 1;
        if (tag == TAG_BATCH) {
            unsigned char n4[4];
            if (fread(n4, 1, 4, f) != 4) {
                rc = ms_errf(err, EINVAL, "%s: record %" PRIu64 " (offset %ld): truncated", path, rec, off);
                break;
            }
            uint32_t n = (uint32_t)n4[0] | (uint32_t)n4[1] << 8 | (uint32_t)n4[2] << 16 | (uint32_t)n4[3] << 24;
            if (n < 2 || n > MS_TRACE_MAX_BATCH) {
                rc = ms_errf(err, EINVAL, "%s: record %" PRIu64 ": batch of %u tokens out of range [2, %u]", path, rec,
                             n, MS_TRACE_MAX_BATCH);
                break;
            }
            if (announced || b.left) {
                rc = ms_errf(err, EINVAL, "%s: record %" PRIu64 ": a batch starts inside the batch of record %" PRIu64,
                             path, rec, announced ? announced_at : b.pass_at);
                break;
            }
            announced = n;
            announced_at = rec;
            continue;
        }
        if (tag != TAG_TOKEN && tag != TAG_TOKEN_PRED) {
            rc = ms_errf(err, EINVAL, "%s: record %" PRIu64 " (offset %ld): bad tag %d", path, rec, off, tag);
            break;
        }
        unsigned char hdr[9];
        size_t hn = tag == TAG_TOKEN_PRED ? 9 : 8;
        uint32_t n_pred = 0;
        if (fread(hdr, 1, hn, f) != hn) {
            rc = ms_errf(err, EINVAL, "%s: record %" PRIu64 " (offset %ld): truncated", path, rec, off);
            break;
        }
        uint32_t seq = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
        uint32_t pos = (uint32_t)hdr[4] | (uint32_t)hdr[5] << 8 | (uint32_t)hdr[6] << 16 | (uint32_t)hdr[7] << 24;
        if (tag == TAG_TOKEN_PRED) n_pred = hdr[8];
        size_t body = (per + (size_t)info->n_layers * n_pred) * w;
        if (fread(buf, 1, body, f) != body) {
            rc = ms_errf(err, EINVAL, "%s: record %" PRIu64 " (offset %ld): truncated", path, rec, off);
            break;
        }
        if ((rc = grow(&b, n_pred, err)) < 0) break;
        uint64_t i = t->n_tokens;
        for (size_t j = 0; j < per && rc == 0; j++) {
            uint32_t x = w == 1 ? buf[j] : (uint32_t)buf[2 * j] | (uint32_t)buf[2 * j + 1] << 8;
            uint32_t l = (uint32_t)(j / info->top_k);
            if (x >= info->n_experts) {
                rc = ms_errf(err, EINVAL, "%s: record %" PRIu64 ": layer %u: expert %u out of range [0, %u)", path, rec,
                             l, x, info->n_experts);
                break;
            }
            for (size_t q = (size_t)l * info->top_k; q < j; q++)
                if (t->experts[i * per + q] == x)
                    rc = ms_errf(err, EINVAL, "%s: record %" PRIu64 ": layer %u: expert %u listed twice", path, rec, l, x);
            t->experts[i * per + j] = (uint16_t)x;
        }
        if (rc < 0) break;
        if (t->max_pred) {
            int32_t *row = t->predicted + (size_t)i * info->n_layers * t->max_pred;
            for (size_t j = 0; j < (size_t)info->n_layers * t->max_pred; j++) row[j] = -1;
            const unsigned char *pp = buf + per * w;
            for (uint32_t l = 0; l < info->n_layers && rc == 0; l++)
                for (uint32_t j = 0, m = 0; j < n_pred; j++) { /* "none" entries are dropped (as in JSON) */
                    size_t q = (size_t)l * n_pred + j;
                    uint32_t x = w == 1 ? pp[q] : (uint32_t)pp[2 * q] | (uint32_t)pp[2 * q + 1] << 8;
                    if (x == none) continue;
                    if (x >= info->n_experts) {
                        rc = ms_errf(err, EINVAL, "%s: record %" PRIu64 ": predicted expert %u out of range", path, rec, x);
                        break;
                    }
                    for (uint32_t r = 0; r < m && rc == 0; r++) /* as the JSON reader and the writer: no repeats */
                        if (row[(size_t)l * t->max_pred + r] == (int32_t)x)
                            rc = ms_errf(err, EINVAL, "%s: record %" PRIu64 ": layer %u: predicted expert %u listed twice",
                                         path, rec, l, x);
                    if (rc < 0) break;
                    row[(size_t)l * t->max_pred + m++] = (int32_t)x;
                }
        }
        if (rc < 0) break;
        if ((rc = take_batch(&b, seq, announced, announced ? announced_at : rec, err)) < 0) break;
        announced = 0;
        t->seq[i] = seq;
        t->pos[i] = pos;
        t->n_tokens++;
    }
    if (rc == 0 && ferror(f)) rc = ms_errf(err, EIO, "%s: read error", path);
    if (rc == 0 && announced)
        rc = ms_errf(err, EINVAL, "%s: the trace ends after the batch record %" PRIu64 " (no tokens follow)", path,
                     announced_at);
    if (rc == 0) rc = batch_done(&b, err);
    free(buf);
    free(ids);
    return rc;
}

int ms_trace_read(const char *path, ms_trace *t, ms_err *err)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) return ms_errf(err, errno, "%s: cannot open: %s", path, strerror(errno));
    char magic[8];
    size_t got = fread(magic, 1, 8, f);
    int rc;
    if (got == 8 && !memcmp(magic, BIN_MAGIC, 8)) {
        rc = read_binary(f, path, t, err);
    } else {
        rewind(f);
        rc = read_jsonl(f, path, t, err);
    }
    fclose(f);
    if (rc < 0) ms_trace_free(t);
    return rc;
}

int ms_trace_append(ms_trace *dst, const ms_trace *src, ms_err *err)
{
    const ms_trace_info *a = &dst->info, *b = &src->info;
    if (a->n_layers != b->n_layers || a->n_experts != b->n_experts || a->top_k != b->top_k)
        return ms_errf(err, EINVAL, "trace append: %u layers x %u experts top-%u vs %u x %u top-%u", a->n_layers,
                       a->n_experts, a->top_k, b->n_layers, b->n_experts, b->top_k);
    uint64_t n = dst->n_tokens + src->n_tokens;
    size_t row = (size_t)a->n_layers * a->top_k;
    uint32_t mp = dst->max_pred > src->max_pred ? dst->max_pred : src->max_pred;
    uint32_t *seq = malloc((n ? n : 1) * sizeof *seq), *pos = malloc((n ? n : 1) * sizeof *pos);
    uint32_t *batch = calloc(n ? n : 1, sizeof *batch);
    uint16_t *ex = malloc((n ? n : 1) * row * sizeof *ex);
    int32_t *pred = mp ? malloc(n * a->n_layers * mp * sizeof *pred) : NULL;
    if (!seq || !pos || !batch || !ex || (mp && !pred)) {
        free(seq);
        free(pos);
        free(batch);
        free(ex);
        free(pred);
        return ms_errf(err, ENOMEM, "trace append: out of memory for %llu tokens", (unsigned long long)n);
    }
    const ms_trace *parts[2] = {dst, src};
    for (uint64_t k = 0, i = 0; k < 2; k++) {
        const ms_trace *t = parts[k];
        for (uint64_t j = 0; j < t->n_tokens; j++, i++) {
            seq[i] = t->seq[j];
            pos[i] = t->pos[j];
            batch[i] = t->batch ? t->batch[j] : 1;
            memcpy(ex + i * row, t->experts + j * row, row * sizeof *ex);
            for (uint32_t l = 0; mp && l < a->n_layers; l++)
                for (uint32_t q = 0; q < mp; q++)
                    pred[(i * a->n_layers + l) * mp + q] =
                        q < t->max_pred ? t->predicted[(j * a->n_layers + l) * t->max_pred + q] : -1;
        }
    }
    free(dst->seq);
    free(dst->pos);
    free(dst->batch);
    free(dst->experts);
    free(dst->predicted);
    dst->seq = seq;
    dst->pos = pos;
    dst->batch = batch;
    dst->experts = ex;
    dst->predicted = pred;
    dst->max_pred = mp;
    dst->n_tokens = n;
    return 0;
}

void ms_trace_free(ms_trace *t)
{
    if (!t) return;
    free(t->info.layers);
    free(t->seq);
    free(t->pos);
    free(t->batch);
    free(t->experts);
    free(t->predicted);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------------ writer */

struct ms_trace_writer {
    FILE *f;
    ms_trace_format fmt;
    ms_trace_info info;
    char path[4096];
    uint64_t tokens;
    int failed;
    uint32_t announced; /* batch length to record with the next token (0 = none) */
    uint32_t left;      /* tokens of the current batch still to come */
    uint32_t pass_seq;  /* its seq */
};

int ms_trace_writer_open(const char *path, ms_trace_format fmt, const ms_trace_info *info, ms_trace_writer **out,
                         ms_err *err)
{
    *out = NULL;
    if (!info->n_layers || info->n_layers > MS_TRACE_MAX_LAYERS || !info->n_experts ||
        info->n_experts > MS_TRACE_MAX_EXPERTS || !info->top_k || info->top_k > MS_TRACE_MAX_TOPK ||
        info->top_k > info->n_experts)
        return ms_errf(err, EINVAL, "%s: trace geometry out of range (layers %u, experts %u, top_k %u)", path,
                       info->n_layers, info->n_experts, info->top_k);
    if (fmt != MS_TRACE_JSONL && fmt != MS_TRACE_BINARY) return ms_errf(err, EINVAL, "%s: unknown trace format", path);
    ms_trace_writer *w = calloc(1, sizeof *w);
    if (!w) return ms_errf(err, ENOMEM, "out of memory");
    w->fmt = fmt;
    w->info = *info;
    w->info.layers = NULL;
    snprintf(w->path, sizeof w->path, "%s", path);
    json_object *h = header_json(info);
    const char *ht = json_object_to_json_string_ext(h, JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    w->f = fopen(path, "wb");
    if (!w->f) {
        int e = errno;
        json_object_put(h);
        free(w);
        return ms_errf(err, e, "%s: cannot create: %s", path, strerror(e));
    }
    if (fmt == MS_TRACE_JSONL) {
        fprintf(w->f, "%s\n", ht);
    } else {
        uint32_t hl = (uint32_t)strlen(ht);
        unsigned char b4[4] = {hl & 0xff, hl >> 8 & 0xff, hl >> 16 & 0xff, hl >> 24};
        fwrite(BIN_MAGIC, 1, 8, w->f);
        fwrite(b4, 1, 4, w->f);
        fwrite(ht, 1, hl, w->f);
    }
    json_object_put(h);
    if (ferror(w->f)) {
        fclose(w->f);
        free(w);
        return ms_errf(err, EIO, "%s: write failed", path);
    }
    *out = w;
    return 0;
}

int ms_trace_writer_batch(ms_trace_writer *w, uint32_t n, ms_err *err)
{
    if (w->failed) return ms_errf(err, EIO, "%s: trace writer failed earlier", w->path);
    if (n < 1 || n > MS_TRACE_MAX_BATCH)
        return ms_errf(err, EINVAL, "%s: token %" PRIu64 ": batch of %u tokens (range [1, %u])", w->path, w->tokens, n,
                       MS_TRACE_MAX_BATCH);
    if (w->announced || w->left)
        return ms_errf(err, EINVAL, "%s: token %" PRIu64 ": a batch starts inside another (%u tokens to come)", w->path,
                       w->tokens, w->announced ? w->announced : w->left);
    if (n > 1) w->announced = n;
    return 0;
}

static void put_id(FILE *f, unsigned w, uint32_t x)
{
    fputc((int)(x & 0xff), f);
    if (w == 2) fputc((int)(x >> 8 & 0xff), f);
}

int ms_trace_writer_add(ms_trace_writer *w, uint32_t seq, uint32_t pos, const uint32_t *experts,
                        const int32_t *predicted, uint32_t n_pred, ms_err *err)
{
    const ms_trace_info *info = &w->info;
    if (w->failed) return ms_errf(err, EIO, "%s: trace writer failed earlier", w->path);
    if (!predicted) n_pred = 0;
    if (n_pred > MS_TRACE_MAX_PRED)
        return ms_errf(err, EINVAL, "%s: token %" PRIu64 ": %u predictions per layer (max %u)", w->path, w->tokens,
                       n_pred, MS_TRACE_MAX_PRED);
    for (uint32_t l = 0; l < info->n_layers; l++)
        for (uint32_t j = 0; j < info->top_k; j++) {
            uint32_t x = experts[(size_t)l * info->top_k + j];
            if (x >= info->n_experts)
                return ms_errf(err, EINVAL, "%s: token %" PRIu64 ": layer %u: expert %u out of range [0, %u)", w->path,
                               w->tokens, l, x, info->n_experts);
            for (uint32_t q = 0; q < j; q++)
                if (experts[(size_t)l * info->top_k + q] == x)
                    return ms_errf(err, EINVAL, "%s: token %" PRIu64 ": layer %u: expert %u twice", w->path, w->tokens,
                                   l, x);
        }
    for (size_t q = 0; q < (size_t)info->n_layers * n_pred; q++) {
        if (predicted[q] >= (int32_t)info->n_experts)
            return ms_errf(err, EINVAL, "%s: token %" PRIu64 ": predicted expert %d out of range", w->path, w->tokens,
                           predicted[q]);
        for (size_t r = q - q % n_pred; r < q; r++)
            if (predicted[q] >= 0 && predicted[r] == predicted[q])
                return ms_errf(err, EINVAL, "%s: token %" PRIu64 ": predicted expert %d twice in layer %zu", w->path,
                               w->tokens, predicted[q], q / n_pred);
    }
    if (w->left && seq != w->pass_seq)
        return ms_errf(err, EINVAL, "%s: token %" PRIu64 ": seq %u inside a batch of seq %u", w->path, w->tokens, seq,
                       w->pass_seq);
    FILE *f = w->f;
    if (w->fmt == MS_TRACE_JSONL) {
        fprintf(f, "{\"seq\":%u,\"pos\":%u,\"experts\":[", seq, pos);
        for (uint32_t l = 0; l < info->n_layers; l++) {
            fputs(l ? ",[" : "[", f);
            for (uint32_t j = 0; j < info->top_k; j++)
                fprintf(f, j ? ",%u" : "%u", experts[(size_t)l * info->top_k + j]);
            fputc(']', f);
        }
        fputc(']', f);
        if (w->announced) fprintf(f, ",\"batch\":%u", w->announced);
        if (n_pred) {
            fputs(",\"predicted\":[", f);
            for (uint32_t l = 0; l < info->n_layers; l++) {
                fputs(l ? ",[" : "[", f);
                bool first = true;
                for (uint32_t j = 0; j < n_pred; j++) {
                    int32_t x = predicted[(size_t)l * n_pred + j];
                    if (x < 0) continue;
                    fprintf(f, first ? "%d" : ",%d", x);
                    first = false;
                }
                fputc(']', f);
            }
            fputc(']', f);
        }
        fputs("}\n", f);
    } else {
        unsigned wd = info->n_experts < 255 ? 1 : 2;
        uint32_t none = wd == 1 ? 0xff : 0xffff;
        if (w->announced) {
            uint32_t n = w->announced;
            unsigned char b[5] = {TAG_BATCH, n & 0xff, n >> 8 & 0xff, n >> 16 & 0xff, n >> 24};
            fwrite(b, 1, 5, f);
        }
        fputc(n_pred ? TAG_TOKEN_PRED : TAG_TOKEN, f);
        unsigned char h[9] = {seq & 0xff, seq >> 8 & 0xff, seq >> 16 & 0xff, seq >> 24,
                              pos & 0xff, pos >> 8 & 0xff, pos >> 16 & 0xff, pos >> 24, (unsigned char)n_pred};
        fwrite(h, 1, n_pred ? 9 : 8, f);
        for (size_t q = 0; q < (size_t)info->n_layers * info->top_k; q++) put_id(f, wd, experts[q]);
        for (size_t q = 0; q < (size_t)info->n_layers * n_pred; q++)
            put_id(f, wd, predicted[q] < 0 ? none : (uint32_t)predicted[q]);
    }
    if (ferror(f)) {
        w->failed = 1;
        return ms_errf(err, EIO, "%s: write failed at token %" PRIu64, w->path, w->tokens);
    }
    if (w->announced) {
        w->left = w->announced - 1;
        w->pass_seq = seq;
        w->announced = 0;
    } else if (w->left) {
        w->left--;
    }
    w->tokens++;
    return 0;
}

int ms_trace_writer_close(ms_trace_writer *w, ms_err *err)
{
    if (!w) return 0;
    int rc = 0;
    if (ferror(w->f) | (fclose(w->f) != 0) || w->failed) rc = ms_errf(err, EIO, "%s: write failed", w->path);
    else if (w->announced || w->left)
        rc = ms_errf(err, EINVAL, "%s: closed inside a batch (%u tokens missing)", w->path,
                     w->announced ? w->announced : w->left);
    free(w);
    return rc;
}

int ms_trace_write(const ms_trace *t, const char *path, ms_trace_format fmt, ms_err *err)
{
    ms_trace_writer *w;
    int rc = ms_trace_writer_open(path, fmt, &t->info, &w, err);
    if (rc < 0) return rc;
    size_t per = (size_t)t->info.n_layers * t->info.top_k;
    uint32_t *ex = malloc(per * sizeof *ex);
    if (!ex) {
        ms_trace_writer_close(w, NULL);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    for (uint64_t i = 0; i < t->n_tokens && rc == 0; i++) {
        for (size_t j = 0; j < per; j++) ex[j] = t->experts[i * per + j];
        const int32_t *pr = t->max_pred ? t->predicted + (size_t)i * t->info.n_layers * t->max_pred : NULL;
        if (t->batch && t->batch[i] > 1 && (rc = ms_trace_writer_batch(w, t->batch[i], err)) < 0) break;
        rc = ms_trace_writer_add(w, t->seq[i], t->pos[i], ex, pr, t->max_pred, err);
    }
    free(ex);
    int rc2 = ms_trace_writer_close(w, err);
    return rc < 0 ? rc : rc2;
}

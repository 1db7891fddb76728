/* jinja_seqfilters.c - Jinja's filters over sequences: batch, slice, dictsort, first,
 * last, groupby, items, join, list, map, select, reject, selectattr, rejectattr, max,
 * min, reverse, sort, sum, unique (jinja2/filters.py), with the helpers they share:
 * attribute paths ("a.b.0", looked up item-first as environment.getitem does), a
 * stable merge sort on precomputed keys, and one-shot generators.
 *
 * Like Jinja's, map/select/reject/selectattr/rejectattr/unique/items/batch/slice give
 * generators (LK_GEN): `|length` on one fails as len(generator) does, `|list`
 * materializes it. Jinja computes them lazily; here they are computed at once and an
 * error met on the way is kept in the generator, raised only when iteration reaches
 * it (jx_catch), which is what a lazy generator would show.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"
#include "util.h"

#define FILTER(name) JX_FILTER_FN(jx_f_##name)

/* a new one-shot iterator over the items of list l (taken) */
static jval as_gen(jval l, const char *name)
{
    l.l->kind = LK_GEN;
    l.l->pyname = name;
    return l;
}

/* finish a generator filter: *out is the list of the items produced; a run-time error
 * (rc < 0) is kept in the generator and raised when iteration reaches it */
static int gen_finish(jctx *c, jval *out, int rc)
{
    if (rc < 0) {
        jstr *msg;
        if (!jx_catch(c, &msg)) {
            jv_dec(c, *out);
            return -1;
        }
        out->l->err = msg;
    }
    *out = as_gen(*out, "generator");
    return 0;
}

/* make_attrgetter: "a.b.0" looked up item-first; NONE attribute = the item itself */
static int attr_get(jctx *c, const jnode *at, jval item, jval attr, jval dflt, bool lower, jval *out)
{
    jval cur = jv_inc(item);
    if (attr.t == JT_STR) {
        const char *p = attr.s->s, *end = p + attr.s->len;
        while (p <= end) {
            const char *dot = memchr(p, '.', (size_t)(end - p));
            if (!dot) dot = end;
            jval key;
            bool digits = dot > p && dot - p < 18;
            for (const char *q = p; q < dot && digits; q++) digits = *q >= '0' && *q <= '9';
            if (digits) {
                int64_t k = 0;
                for (const char *q = p; q < dot; q++) k = k * 10 + (*q - '0');
                key = jv_int(k);
            } else if (jv_str(c, p, (size_t)(dot - p), &key) < 0) {
                jv_dec(c, cur);
                return -1;
            }
            jval next;
            int rc = jx_getitem(c, at, cur, key, &next);
            jv_dec(c, key);
            jv_dec(c, cur);
            if (rc < 0) return -1;
            cur = next;
            if (dflt.t != JT_NONE && cur.t == JT_UNDEF) {
                jv_dec(c, cur);
                cur = jv_inc(dflt);
            }
            p = dot + 1;
        }
    } else if (attr.t == JT_INT || attr.t == JT_BOOL) {
        jval next;
        int rc = jx_getitem(c, at, cur, attr, &next);
        jv_dec(c, cur);
        if (rc < 0) return -1;
        cur = next;
        if (dflt.t != JT_NONE && cur.t == JT_UNDEF) {
            jv_dec(c, cur);
            cur = jv_inc(dflt);
        }
    } else if (attr.t != JT_NONE) {
        jv_dec(c, cur);
        return jx_fail(c, at, "TypeError: attribute must be a string or an integer");
    }
    if (lower && cur.t == JT_STR) {
        jval l;
        int rc = jx_str_case(c, cur, 'l', &l);
        jv_dec(c, cur);
        if (rc < 0) return -1;
        cur = l;
    }
    *out = cur;
    return 0;
}

/* ---- sorting (stable merge sort on precomputed keys) ---------------------------------------- */

typedef struct sortctx {
    jctx *c;
    const jnode *at;
    jval *keys;
    bool reverse, failed;
} sortctx;

static bool key_less(sortctx *s, uint32_t a, uint32_t b)
{
    int r = 0;
    if (s->failed) return false;
    if (jv_cmp(s->c, s->at, s->keys[a], s->keys[b], "<", &r) < 0) {
        s->failed = true;
        return false;
    }
    return s->reverse ? r > 0 && r != 2 : r < 0;
}

static void msort(sortctx *s, uint32_t *idx, uint32_t *tmp, uint32_t n)
{
    if (n < 2) return;
    uint32_t m = n / 2;
    msort(s, idx, tmp, m);
    msort(s, idx + m, tmp, n - m);
    uint32_t i = 0, j = m, k = 0;
    while (i < m && j < n) tmp[k++] = key_less(s, idx[j], idx[i]) ? idx[j++] : idx[i++];
    while (i < m) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
}

/* items (a list value) sorted by key(attr, lower): a new list; attr may hold "a,b" (multi) */
static int sorted_by(jctx *c, const jnode *at, jval items, jval attr, bool lower, bool reverse, bool multi, jval *out)
{
    uint32_t n = items.l->n;
    if (jx_step(c, at, (uint64_t)n * 8) < 0) return -1;
    jval *keys = jx_alloc(c, (n + 1) * sizeof *keys);
    uint32_t *idx = jx_alloc(c, (n + 1) * sizeof *idx), *tmp = jx_alloc(c, (n + 1) * sizeof *tmp);
    int rc = keys && idx && tmp ? 0 : -1;
    uint32_t built = 0;
    for (; built < n && rc == 0; built++) {
        idx[built] = built;
        jval item = items.l->v[built];
        if (multi) {
            /* the sort filter's key is a list: the values of "a,b" (or of the one attribute) */
            jval pl;
            if (attr.t == JT_STR) {
                jval sep;
                if ((rc = jv_str(c, ",", 1, &sep)) < 0) break;
                rc = jx_str_split(c, at, attr, sep, -1, false, &pl);
                jv_dec(c, sep);
            } else if ((rc = jv_list(c, 1, LK_LIST, &pl)) == 0) {
                jv_list_push(c, pl, jv_inc(attr));
            }
            if (rc < 0) break;
            rc = jv_list(c, pl.l->n, LK_LIST, &keys[built]);
            for (uint32_t q = 0; q < pl.l->n && rc == 0; q++) {
                jval kv;
                rc = attr_get(c, at, item, pl.l->v[q], jv_none(), lower, &kv);
                if (rc == 0) jv_list_push(c, keys[built], kv);
            }
            jv_dec(c, pl);
            if (rc < 0) {
                if (keys[built].t == JT_LIST) jv_dec(c, keys[built]);
                break;
            }
        } else {
            rc = attr_get(c, at, item, attr, jv_none(), lower, &keys[built]);
            if (rc < 0) break;
        }
    }
    if (rc == 0) {
        sortctx s = {.c = c, .at = at, .keys = keys, .reverse = reverse};
        msort(&s, idx, tmp, n);
        if (s.failed) rc = -1;
    }
    if (rc == 0 && (rc = jv_list(c, n, LK_LIST, out)) == 0)
        for (uint32_t i = 0; i < n; i++) jv_list_push(c, *out, jv_inc(items.l->v[idx[i]]));
    if (keys) jv_dec_n(c, keys, built);
    jx_free(c, keys, (n + 1) * sizeof *keys);
    jx_free(c, idx, (n + 1) * sizeof *idx);
    jx_free(c, tmp, (n + 1) * sizeof *tmp);
    return rc;
}

/* batch (slices=false: rows of size_or_count) and slice (size_or_count columns), as
 * Jinja's generator functions compute them */
static int chunk_body(jctx *c, const jnode *at, jval v, int64_t k, jval fill, bool slices, jval out)
{
    jval items, row = jv_none();
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int64_t len = items.l->n;
    int rc = 0;
    if (!slices) {
        rc = jv_list(c, 0, LK_LIST, &row);
        for (int64_t i = 0; i < len && rc == 0; i++) {
            if ((int64_t)row.l->n == k) {
                rc = jv_list_push(c, out, row);
                row = jv_none();
                if (rc == 0) rc = jv_list(c, 0, LK_LIST, &row);
            }
            if (rc == 0) rc = jv_list_push(c, row, jv_inc(items.l->v[i]));
        }
        if (rc == 0 && row.l->n) {
            for (int64_t i = row.l->n; fill.t != JT_NONE && i < k && rc == 0; i++)
                if ((rc = jx_step(c, at, 1)) == 0) rc = jv_list_push(c, row, jv_inc(fill));
            if (rc == 0) rc = jv_list_push(c, out, row); /* consumes row */
            else jv_dec(c, row);
            row = jv_none();
        }
    } else if (k == 0) {
        rc = jx_fail(c, at, "ZeroDivisionError: integer division or modulo by zero");
    } else {
        int64_t per = len / k, extra = len % k, offset = 0;
        if (extra && ((extra < 0) != (k < 0))) per--, extra += k; /* Python's floor division */
        for (int64_t sn = 0; sn < k && rc == 0; sn++) {
            if ((rc = jx_step(c, at, 1)) < 0) break;
            int64_t start = offset + sn * per;
            if (sn < extra) offset++;
            int64_t end = offset + (sn + 1) * per;
            if ((rc = jv_list(c, 0, LK_LIST, &row)) < 0) break;
            for (int64_t q = start < 0 ? 0 : start; q < end && q < len && rc == 0; q++) rc = jv_list_push(c, row, jv_inc(items.l->v[q]));
            if (rc == 0 && fill.t != JT_NONE && sn >= extra) rc = jv_list_push(c, row, jv_inc(fill));
            if (rc == 0) rc = jv_list_push(c, out, row); /* consumes row */
            else jv_dec(c, row);
            row = jv_none();
        }
    }
    jv_dec(c, row);
    jv_dec(c, items);
    return rc;
}

static int chunk_list(jctx *c, const jnode *at, jval v, int64_t k, jval fill, bool slices, jval *out)
{
    if (jv_list(c, 0, LK_LIST, out) < 0) return -1;
    return gen_finish(c, out, chunk_body(c, at, v, k, fill, slices, *out));
}

FILTER(batch)
{
    BIND("batch", "linecount", "fill_with");
    int64_t k;
    if (jx_as_int(c, at, A[0], "linecount", &k) < 0) return -1;
    return chunk_list(c, at, v, k, ARG(1, jv_none()), false, out);
}

FILTER(slice)
{
    BIND("slice", "slices", "fill_with");
    int64_t k;
    if (jx_as_int(c, at, A[0], "slices", &k) < 0) return -1;
    return chunk_list(c, at, v, k, ARG(1, jv_none()), true, out);
}

FILTER(dictsort)
{
    BIND("dictsort", "case_sensitive", "by", "reverse");
    if (v.t != JT_DICT) {
        if (v.t == JT_UNDEF) return jx_undef_fail(c, at, v);
        return jx_fail(c, at, "AttributeError: '%s' object has no attribute 'items'", jv_type_name(v));
    }
    bool cs = jx_given(A[0]) && jv_truthy(A[0]), rev = jx_given(A[2]) && jv_truthy(A[2]);
    int64_t pos = 0;
    if (jx_given(A[1])) {
        if (A[1].t == JT_STR && !strcmp(A[1].s->s, "value")) pos = 1;
        else if (!(A[1].t == JT_STR && !strcmp(A[1].s->s, "key")))
            return jx_fail(c, at, "FilterArgumentError: You can only sort by either \"key\" or \"value\"");
    }
    jval items;
    if (jx_dict_items(c, v.d, &items) < 0) return -1;
    items.l->kind = LK_LIST;
    int rc = sorted_by(c, at, items, jv_int(pos), !cs, rev, false, out);
    jv_dec(c, items);
    return rc;
}

FILTER(first)
{
    NOARGS("first");
    if (v.t == JT_LIST && v.l->kind == LK_GEN) {
        if (v.l->pos < v.l->n) {
            *out = jv_inc(v.l->v[v.l->pos++]);
            return 0;
        }
        if (v.l->err) return jx_reraise(c, v.l->err);
        return jv_undef_hint(c, out, "No first item, sequence was empty.");
    }
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = 0;
    if (items.l->n) *out = jv_inc(items.l->v[0]);
    else rc = jv_undef_hint(c, out, "No first item, sequence was empty.");
    jv_dec(c, items);
    return rc;
}

FILTER(last)
{
    NOARGS("last");
    if (v.t == JT_LIST && v.l->kind == LK_GEN) return jx_fail(c, at, "TypeError: '%s' object is not reversible", jv_type_name(v));
    if (v.t != JT_LIST && v.t != JT_STR && v.t != JT_DICT && v.t != JT_UNDEF)
        return jx_fail(c, at, "TypeError: '%s' object is not reversible", jv_type_name(v));
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = 0;
    if (items.l->n) *out = jv_inc(items.l->v[items.l->n - 1]);
    else rc = jv_undef_hint(c, out, "No last item, sequence was empty.");
    jv_dec(c, items);
    return rc;
}

FILTER(groupby)
{
    BIND("groupby", "attribute", "default", "case_sensitive");
    bool cs = jx_given(A[2]) && jv_truthy(A[2]);
    jval items, sorted;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = sorted_by(c, at, items, ARG(0, jv_none()), !cs, false, false, &sorted);
    jv_dec(c, items);
    if (rc < 0) return -1;
    rc = jv_list(c, 0, LK_LIST, out);
    jval group = jv_none(), gkey = jv_none();
    for (uint32_t i = 0; i < sorted.l->n && rc == 0; i++) {
        jval k, kl;
        rc = attr_get(c, at, sorted.l->v[i], ARG(0, jv_none()), ARG(1, jv_none()), false, &k);
        if (rc < 0) break;
        kl = k;
        if (!cs && k.t == JT_STR) rc = jx_str_case(c, k, 'l', &kl);
        if (rc < 0) {
            jv_dec(c, k);
            break;
        }
        if (group.t == JT_NONE || !jv_eq(kl, gkey)) {
            if (group.t != JT_NONE) {
                jval pair;
                rc = jv_list(c, 2, LK_TUPLE, &pair);
                if (rc == 0) {
                    jv_list_push(c, pair, gkey);
                    jv_list_push(c, pair, group);
                    rc = jv_list_push(c, *out, pair);
                }
                group = jv_none();
            } else {
                jv_dec(c, gkey);
            }
            gkey = jv_inc(kl);
            if (rc == 0) rc = jv_list(c, 0, LK_LIST, &group);
        }
        if (kl.s != k.s) jv_dec(c, kl);
        jv_dec(c, k);
        if (rc == 0) rc = jv_list_push(c, group, jv_inc(sorted.l->v[i]));
    }
    if (rc == 0 && group.t != JT_NONE) {
        jval pair;
        rc = jv_list(c, 2, LK_TUPLE, &pair);
        if (rc == 0) {
            jv_list_push(c, pair, gkey);
            jv_list_push(c, pair, group);
            gkey = group = jv_none();
            rc = jv_list_push(c, *out, pair);
        }
    }
    jv_dec(c, group);
    jv_dec(c, gkey);
    jv_dec(c, sorted);
    if (rc < 0 && out->t == JT_LIST) jv_dec(c, *out);
    return rc;
}

FILTER(items)
{
    NOARGS("items");
    if (v.t == JT_DICT) {
        if (jx_dict_items(c, v.d, out) < 0) return -1;
        return gen_finish(c, out, 0);
    }
    if (jv_list(c, 0, LK_LIST, out) < 0) return -1;
    return gen_finish(c, out, v.t == JT_UNDEF ? 0 : jx_fail(c, at, "TypeError: Can only get item pairs from a mapping."));
}

FILTER(join)
{
    BIND("join", "d", "attribute");
    jval items, sep;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    if ((jx_given(A[0]) ? jv_stringify(c, A[0], &sep) : jv_str(c, "", 0, &sep)) < 0) {
        jv_dec(c, items);
        return -1;
    }
    jbuf b = {0};
    int rc = jx_step(c, at, items.l->n);
    for (uint32_t i = 0; i < items.l->n && rc == 0; i++) {
        if (i) rc = jx_buf_put(c, &b, sep.s->s, sep.s->len);
        jval x = jv_inc(items.l->v[i]);
        if (rc == 0 && jx_given(A[1])) {
            jval y;
            rc = attr_get(c, at, x, A[1], jv_none(), false, &y);
            jv_dec(c, x);
            x = rc == 0 ? y : jv_none();
        }
        if (rc == 0) rc = jv_to_str(c, x, &b);
        jv_dec(c, x);
    }
    jv_dec(c, sep);
    jv_dec(c, items);
    if (rc < 0) {
        jx_buf_free(&b);
        return -1;
    }
    return jv_str_buf(c, &b, out);
}

FILTER(list)
{
    NOARGS("list");
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    if (items.l->kind == LK_LIST) {
        *out = items;
        return 0;
    }
    int rc = jv_list(c, items.l->n, LK_LIST, out);
    for (uint32_t i = 0; i < items.l->n && rc == 0; i++) jv_list_push(c, *out, jv_inc(items.l->v[i]));
    jv_dec(c, items);
    return rc;
}

/* map / select / reject / selectattr / rejectattr into *out (a list); Jinja runs these
 * lazily, so the caller turns an error into a generator that fails when consumed */
static int each_body(jctx *c, const jnode *at, jval v, jval *args, uint32_t n, const char **kw, jval *kwv, uint32_t nkw,
                     int mode, jval *out)
{
    /* mode: 0 map, 1 select, 2 reject, 3 selectattr, 4 rejectattr */
    jval attr = jv_none(), dflt = jv_none();
    int fid = -1;
    bool by_attr = false;
    uint32_t skip = 0;
    if (mode == 0) {
        if (n == 0) {
            for (uint32_t i = 0; i < nkw; i++) {
                if (!strcmp(kw[i], "attribute")) attr = kwv[i], by_attr = true;
                else if (!strcmp(kw[i], "default")) dflt = kwv[i];
                else return jx_fail(c, at, "FilterArgumentError: Unexpected keyword argument '%s'", kw[i]);
            }
            if (!by_attr) return jx_fail(c, at, "FilterArgumentError: map requires a filter argument");
        } else {
            if (args[0].t != JT_STR) return jx_fail(c, at, "TypeError: map() filter name must be a string");
            fid = jx_filter_id(args[0].s->s);
            if (fid < 0) return jx_fail(c, at, "No filter named '%s'.", args[0].s->s);
            skip = 1;
        }
    } else {
        if (mode >= 3) {
            if (n == 0) return jx_fail(c, at, "FilterArgumentError: Missing parameter for attribute name");
            attr = args[0];
            skip = 1;
        }
        if (n > skip) {
            if (args[skip].t != JT_STR) return jx_fail(c, at, "TypeError: test name must be a string");
            fid = jx_test_id(args[skip].s->s);
            if (fid < 0) return jx_fail(c, at, "No test named '%s'.", args[skip].s->s);
            skip++;
        }
    }
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = 0;
    for (uint32_t i = 0; i < items.l->n && rc == 0; i++) {
        jval item = items.l->v[i], x;
        if ((rc = jx_step(c, at, 1)) < 0) break;
        if (mode == 0) {
            if (by_attr) rc = attr_get(c, at, item, attr, dflt, false, &x);
            else rc = jx_filter(c, at, fid, item, args + skip, n - skip, kw, kwv, nkw, &x);
            if (rc == 0) rc = jv_list_push(c, *out, x);
            continue;
        }
        if (mode >= 3) rc = attr_get(c, at, item, attr, jv_none(), false, &x);
        else x = jv_inc(item);
        if (rc < 0) break;
        bool keep;
        if (fid < 0) keep = jv_truthy(x);
        else rc = jx_test(c, at, fid, x, args + skip, n - skip, kw, kwv, nkw, &keep);
        jv_dec(c, x);
        if (rc == 0 && keep == (mode == 1 || mode == 3)) rc = jv_list_push(c, *out, jv_inc(item));
    }
    jv_dec(c, items);
    return rc;
}

static int apply_each(jctx *c, const jnode *at, jval v, jval *args, uint32_t n, const char **kw, jval *kwv,
                      uint32_t nkw, int mode, jval *out)
{
    if (jv_list(c, 0, LK_LIST, out) < 0) return -1;
    int rc = jv_truthy(v) ? each_body(c, at, v, args, n, kw, kwv, nkw, mode, out) : 0;
    return gen_finish(c, out, rc);
}

FILTER(map) { return apply_each(c, at, v, args, n, kw, kwv, nkw, 0, out); }
FILTER(select) { return apply_each(c, at, v, args, n, kw, kwv, nkw, 1, out); }
FILTER(reject) { return apply_each(c, at, v, args, n, kw, kwv, nkw, 2, out); }
FILTER(selectattr) { return apply_each(c, at, v, args, n, kw, kwv, nkw, 3, out); }
FILTER(rejectattr) { return apply_each(c, at, v, args, n, kw, kwv, nkw, 4, out); }

static int min_max(jctx *c, const jnode *at, jval v, jval *args, uint32_t n, const char **kw, jval *kwv, uint32_t nkw,
                   bool want_max, jval *out)
{
    BIND(want_max ? "max" : "min", "case_sensitive", "attribute");
    bool cs = jx_given(A[0]) && jv_truthy(A[0]);
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    if (items.l->n == 0) {
        jv_dec(c, items);
        return jv_undef_hint(c, out, "No aggregated item, sequence was empty.");
    }
    int rc = 0;
    uint32_t best = 0;
    jval bk;
    if ((rc = attr_get(c, at, items.l->v[0], ARG(1, jv_none()), jv_none(), !cs, &bk)) < 0) {
        jv_dec(c, items);
        return -1;
    }
    for (uint32_t i = 1; i < items.l->n && rc == 0; i++) {
        jval k;
        int r;
        if ((rc = attr_get(c, at, items.l->v[i], ARG(1, jv_none()), jv_none(), !cs, &k)) < 0) break;
        rc = jv_cmp(c, at, k, bk, want_max ? ">" : "<", &r);
        if (rc == 0 && r != 2 && (want_max ? r > 0 : r < 0)) {
            jv_dec(c, bk);
            bk = k;
            best = i;
        } else {
            jv_dec(c, k);
        }
    }
    if (rc == 0) *out = jv_inc(items.l->v[best]);
    jv_dec(c, bk);
    jv_dec(c, items);
    return rc;
}

FILTER(max) { return min_max(c, at, v, args, n, kw, kwv, nkw, true, out); }
FILTER(min) { return min_max(c, at, v, args, n, kw, kwv, nkw, false, out); }

FILTER(reverse)
{
    NOARGS("reverse");
    if (v.t == JT_STR) {
        jval items;
        if (jx_iter_list(c, at, v, &items) < 0) return -1;
        jbuf b = {0};
        int rc = 0;
        for (uint32_t i = items.l->n; i-- > 0 && rc == 0;) rc = jx_buf_put(c, &b, items.l->v[i].s->s, items.l->v[i].s->len);
        jv_dec(c, items);
        if (rc < 0 || jv_str_buf(c, &b, out) < 0) {
            jx_buf_free(&b);
            return -1;
        }
        out->fl = v.fl & JF_MARKUP;
        return 0;
    }
    bool gen = v.t == JT_LIST && v.l->kind == LK_GEN;
    if (v.t == JT_UNDEF && (v.fl & JF_UNSAFE)) return jx_undef_fail(c, at, v);
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = jv_list(c, items.l->n, LK_LIST, out);
    for (uint32_t i = items.l->n; i-- > 0 && rc == 0;) jv_list_push(c, *out, jv_inc(items.l->v[i]));
    jv_dec(c, items);
    if (rc < 0) return -1;
    if (!gen && v.t != JT_UNDEF)
        *out = as_gen(*out, v.t == JT_DICT ? "dict_reversekeyiterator" : "list_reverseiterator");
    return 0;
}

FILTER(sort)
{
    BIND("sort", "reverse", "case_sensitive", "attribute");
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = sorted_by(c, at, items, ARG(2, jv_none()), !(jx_given(A[1]) && jv_truthy(A[1])),
                       jx_given(A[0]) && jv_truthy(A[0]), true, out);
    jv_dec(c, items);
    return rc;
}

FILTER(sum)
{
    BIND("sum", "attribute", "start");
    if (jx_given(A[1]) && A[1].t == JT_STR) return jx_fail(c, at, "TypeError: sum() can't sum strings [use ''.join(seq) instead]");
    jval items;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    jval acc = jv_inc(ARG(1, jv_int(0)));
    int rc = 0;
    for (uint32_t i = 0; i < items.l->n && rc == 0; i++) {
        jval x, r;
        rc = attr_get(c, at, items.l->v[i], ARG(0, jv_none()), jv_none(), false, &x);
        if (rc < 0) break;
        rc = jx_binop(c, at, OP_ADD, acc, x, &r);
        jv_dec(c, x);
        jv_dec(c, acc);
        acc = rc == 0 ? r : jv_none();
    }
    jv_dec(c, items);
    if (rc < 0) {
        jv_dec(c, acc);
        return -1;
    }
    *out = acc;
    return 0;
}

static int unique_body(jctx *c, const jnode *at, jval v, bool cs, jval attr, jval out)
{
    jval items, seen;
    if (jx_iter_list(c, at, v, &items) < 0) return -1;
    int rc = jv_list(c, 0, LK_LIST, &seen);
    for (uint32_t i = 0; i < items.l->n && rc == 0; i++) {
        jval k;
        if ((rc = attr_get(c, at, items.l->v[i], attr, jv_none(), !cs, &k)) < 0) break;
        if (!jv_hashable(k)) {
            rc = jx_fail(c, at, "TypeError: unhashable type: '%s'", jv_type_name(k));
            jv_dec(c, k);
            break;
        }
        bool dup = false;
        for (uint32_t j = 0; j < seen.l->n && !dup; j++) dup = jv_eq(seen.l->v[j], k);
        if ((rc = jx_step(c, at, seen.l->n)) < 0) {
            jv_dec(c, k);
            break;
        }
        if (dup) jv_dec(c, k);
        else if ((rc = jv_list_push(c, seen, k)) == 0) rc = jv_list_push(c, out, jv_inc(items.l->v[i]));
    }
    jv_dec(c, items);
    if (seen.t == JT_LIST) jv_dec(c, seen);
    return rc;
}

FILTER(unique)
{
    BIND("unique", "case_sensitive", "attribute");
    if (jv_list(c, 0, LK_LIST, out) < 0) return -1;
    return gen_finish(c, out, unique_body(c, at, v, jx_given(A[0]) && jv_truthy(A[0]), ARG(1, jv_none()), *out));
}


/* engine_fault.c - fault injection (issue 8): wraps a real engine and makes
 * its read attempts fail or misbehave the way disks and kernels do, so the
 * driver's retry and error paths run in tests and under the CLI
 * (MOESTREAM_IO_FAULT=... or --io fault:...).
 *
 * Spec (comma-separated key=value, see io.h): inner, short, eagain, eintr,
 * eio=P[@OFF], nodirect, delay_us, seed. Every decision is a hash of (seed,
 * file, offset, length, attempt, kind) - not a sequential RNG - so the same
 * request stream meets the same faults whatever the completion order.
 *
 *   eagain / eintr / eio / nodirect: the attempt never reaches the inner engine;
 *       it completes with that -errno.
 *   short: the inner engine reads the whole range (the bytes are real), then the
 *       result is cut to a random count in [1, res-1]; the driver must re-read the
 *       rest (so it also exercises resuming at an unaligned count).
 *   delay_us: every attempt becomes visible 0.5..1 x delay_us after queue(), so
 *       completions also come back reordered. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io_engine.h"
#include "util.h"

typedef struct fault_spec {
    const ms_io_engine_ops *inner;
    double p_short, p_eagain, p_eintr, p_eio;
    bool eio_at_set;
    uint64_t eio_at;
    bool nodirect;
    uint64_t delay_us;
    uint64_t seed;
} fault_spec;

typedef struct fault_priv {
    fault_spec s;
    ms_io_engine inner;
    unsigned inner_inflight;
    ms_io_chunk **buf;           /* queue_depth slots for inner reaps */
    unsigned cap;
    ms_io_chunk *held;           /* completed, visible at c->eval (ns) */
} fault_priv;

enum { K_SHORT = 1, K_EAGAIN, K_EINTR, K_EIO, K_CUT, K_DELAY };

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t fhash(const fault_spec *s, const ms_io_chunk *c, int kind)
{
    uint64_t h = mix(s->seed ^ 0x5eedull);
    h = mix(h ^ c->file);
    h = mix(h ^ c->off);
    h = mix(h ^ c->len);
    h = mix(h ^ c->attempt);
    return mix(h ^ (uint64_t)kind);
}

static bool fchance(const fault_spec *s, const ms_io_chunk *c, int kind, double p)
{
    if (p <= 0) return false;
    if (p >= 1) return true;
    return (double)(fhash(s, c, kind) >> 11) * 0x1.0p-53 < p;
}

static int parse_prob(const char *key, const char *v, double *out, ms_err *err)
{
    char what[64];
    snprintf(what, sizeof what, "fault spec: %s", key);
    int rc = ms_parse_double(v, out, what, err);
    if (rc < 0) return rc;
    if (*out < 0 || *out > 1) return ms_errf(err, EINVAL, "fault spec: %s=%s: not a probability in [0, 1]", key, v);
    return 0;
}

static int parse_spec(const char *spec, fault_spec *s, ms_err *err)
{
    memset(s, 0, sizeof *s);
    s->inner = &ms_io_engine_uring;
    s->seed = 1;
    char *dup = strdup(spec ? spec : "");
    if (!dup) return ms_errf(err, ENOMEM, "fault spec: out of memory");
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(dup, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        char *eq = strchr(tok, '=');
        if (!eq) {
            rc = ms_errf(err, EINVAL, "fault spec: '%s': expected key=value", tok);
            break;
        }
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        long long n;
        if (!strcmp(k, "inner")) {
            s->inner = ms_io_engine_find(v);
            if (!s->inner) rc = ms_errf(err, EINVAL, "fault spec: inner=%s: expected uring, pread or mmap", v);
        } else if (!strcmp(k, "short")) {
            rc = parse_prob(k, v, &s->p_short, err);
        } else if (!strcmp(k, "eagain")) {
            rc = parse_prob(k, v, &s->p_eagain, err);
        } else if (!strcmp(k, "eintr")) {
            rc = parse_prob(k, v, &s->p_eintr, err);
        } else if (!strcmp(k, "eio")) {
            char *at = strchr(eq + 1, '@');
            if (at) {
                *at = 0;
                rc = ms_parse_int(at + 1, 0, INT64_MAX, &n, "fault spec: eio=P@OFFSET", err);
                s->eio_at_set = true;
                s->eio_at = (uint64_t)n;
            }
            if (rc == 0) rc = parse_prob(k, v, &s->p_eio, err);
        } else if (!strcmp(k, "nodirect")) {
            rc = ms_parse_int(v, 0, 1, &n, "fault spec: nodirect", err);
            s->nodirect = n;
        } else if (!strcmp(k, "delay_us")) {
            rc = ms_parse_int(v, 0, 10000000, &n, "fault spec: delay_us", err);
            s->delay_us = (uint64_t)n;
        } else if (!strcmp(k, "seed")) {
            rc = ms_parse_int(v, 0, INT64_MAX, &n, "fault spec: seed", err);
            s->seed = (uint64_t)n;
        } else {
            rc = ms_errf(err, EINVAL,
                         "fault spec: unknown key '%s' (expected inner, short, eagain, eintr, eio, nodirect, "
                         "delay_us, seed)",
                         k);
        }
    }
    free(dup);
    return rc;
}

const ms_io_engine_ops *ms_io_fault_inner(const char *spec, ms_err *err)
{
    fault_spec s;
    return parse_spec(spec, &s, err) < 0 ? NULL : s.inner;
}

static int f_init(ms_io_engine *e, const ms_io_engine_args *a, ms_err *err)
{
    fault_priv *f = calloc(1, sizeof *f);
    if (!f) return ms_errf(err, ENOMEM, "io fault: out of memory");
    int rc = parse_spec(a->spec, &f->s, err);
    if (rc < 0) {
        free(f);
        return rc;
    }
    f->cap = a->queue_depth ? a->queue_depth : 1;
    f->buf = calloc(f->cap, sizeof *f->buf);
    if (!f->buf) {
        free(f);
        return ms_errf(err, ENOMEM, "io fault: out of memory");
    }
    f->inner.ops = f->s.inner;
    snprintf(f->inner.name, sizeof f->inner.name, "%s", f->s.inner->name);
    rc = f->s.inner->init(&f->inner, a, err);
    if (rc < 0) {
        free(f->buf);
        free(f);
        return rc;
    }
    snprintf(e->name, sizeof e->name, "fault(%s)", f->s.inner->name);
    e->fixed_files = f->inner.fixed_files;
    e->priv = f;
    return 0;
}

static void hold(fault_priv *f, ms_io_chunk *c)
{
    c->elink = f->held;
    f->held = c;
}

static void f_queue(ms_io_engine *e, ms_io_chunk *c)
{
    fault_priv *f = e->priv;
    const fault_spec *s = &f->s;
    c->eval = ms_now_ns();
    if (s->delay_us) {
        double u = (double)(fhash(s, c, K_DELAY) >> 11) * 0x1.0p-53;
        c->eval += (uint64_t)((0.5 + 0.5 * u) * (double)s->delay_us * 1e3);
    }
    int64_t res = 0;
    if (s->nodirect && c->direct) res = -EINVAL;
    else if ((!s->eio_at_set || (c->off <= s->eio_at && s->eio_at < c->off + c->len)) &&
             fchance(s, c, K_EIO, s->p_eio))
        res = -EIO;
    else if (fchance(s, c, K_EAGAIN, s->p_eagain)) res = -EAGAIN;
    else if (fchance(s, c, K_EINTR, s->p_eintr)) res = -EINTR;
    if (res) {
        c->res = res;
        hold(f, c);
        return;
    }
    f->inner.ops->queue(&f->inner, c);
    f->inner_inflight++;
}

static int f_submit(ms_io_engine *e, ms_err *err)
{
    fault_priv *f = e->priv;
    return f->inner.ops->submit(&f->inner, err);
}

/* Pull what the inner engine finished, cut some results short, hold them. */
static int pull(fault_priv *f, bool wait, ms_err *err)
{
    if (!f->inner_inflight) return 0;
    int k = f->inner.ops->reap(&f->inner, f->buf, (int)f->cap, wait, err);
    if (k < 0) return k;
    for (int i = 0; i < k; i++) {
        ms_io_chunk *c = f->buf[i];
        if (c->res > 1 && fchance(&f->s, c, K_SHORT, f->s.p_short))
            c->res = 1 + (int64_t)(fhash(&f->s, c, K_CUT) % (uint64_t)(c->res - 1));
        hold(f, c);
    }
    f->inner_inflight -= (unsigned)k;
    return k;
}

static int f_reap(ms_io_engine *e, ms_io_chunk **out, int max, bool wait, ms_err *err)
{
    fault_priv *f = e->priv;
    for (;;) {
        int rc = pull(f, false, err);
        if (rc < 0) return rc;
        uint64_t now = ms_now_ns(), next = UINT64_MAX;
        int n = 0;
        for (ms_io_chunk **pp = &f->held; *pp && n < max;) {
            ms_io_chunk *c = *pp;
            if (c->eval <= now) {
                *pp = c->elink;
                out[n++] = c;
            } else {
                if (c->eval < next) next = c->eval;
                pp = &c->elink;
            }
        }
        if (n > 0 || !wait) return n;
        if (f->held) {
            uint64_t d = next - now;
            struct timespec ts = {(time_t)(d / 1000000000u), (long)(d % 1000000000u)};
            nanosleep(&ts, NULL);
            continue;
        }
        if (!f->inner_inflight) return 0;
        rc = pull(f, true, err);
        if (rc < 0) return rc;
    }
}

static int f_register_buffers(ms_io_engine *e, const struct iovec *iov, int n, ms_err *err)
{
    fault_priv *f = e->priv;
    if (!f->inner.ops->register_buffers) return 0;
    int rc = f->inner.ops->register_buffers(&f->inner, iov, n, err);
    e->fixed_buffers = f->inner.fixed_buffers;
    return rc;
}

static void f_exit(ms_io_engine *e)
{
    fault_priv *f = e->priv;
    if (!f) return;
    f->inner.ops->exit(&f->inner);
    free(f->buf);
    free(f);
    e->priv = NULL;
}

const ms_io_engine_ops ms_io_engine_fault = {
    .version = MS_IO_OPS_VERSION,
    .name = "fault",
    .caps = MS_IO_CAP_DIRECT, /* the driver asks the inner engine's caps */
    .init = f_init,
    .queue = f_queue,
    .submit = f_submit,
    .reap = f_reap,
    .exit = f_exit,
    .register_buffers = f_register_buffers,
};

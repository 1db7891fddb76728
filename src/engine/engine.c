/* engine.c - assemble a runnable model (see engine.h). */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "expert_cache.h"
#include "plan.h"
#include "util.h"

static void res_progress(uint64_t done, uint64_t total, void *arg)
{
    const ms_engine_opts *o = arg;
    if (o->progress) o->progress("resident weights", done, total, o->progress_arg);
}

int ms_engine_open(const char *dir, const ms_engine_opts *o, ms_engine **out, ms_err *err)
{
    ms_engine_opts def = {0};
    if (!o) o = &def;
    ms_engine *e = calloc(1, sizeof *e);
    if (!e) return ms_errf(err, ENOMEM, "out of memory");
    double t0 = ms_now_s();
    int rc = ms_model_open_mtp(dir, o->mtp > 0 ? 1 : 0, &e->model, err);
    if (rc < 0) {
        free(e);
        return rc;
    }
    const ms_config *c = &e->model.cfg;
    e->arch = ms_arch_for(c, err);
    if (!e->arch) {
        rc = -ENOTSUP;
        goto fail;
    }
    e->ctx = o->ctx > 0 ? o->ctx : (int)MS_MIN((int64_t)4096, c->max_position_embeddings);
    e->n_seq = o->n_seq > 0 ? o->n_seq : 1;
    e->mtp = o->mtp > 0 ? o->mtp : 0;
    e->threads = o->threads > 0 ? o->threads : ms_physical_cores();
    const char *io = o->io && *o->io ? o->io : "uring";
    snprintf(e->io_name, sizeof e->io_name, "%.*s", (int)strcspn(io, ":"), io);
    bool streaming = strcmp(io, "mmap") != 0 && strcmp(io, "resident") != 0;
    e->budget = o->ram ? o->ram : ms_plan_default_budget();
    /* 1. the budget must fit before anything is loaded; the plan's split (with
     *    the files' I/O alignment) is the one the expert cache gets */
    ms_plan *plan = malloc(sizeof *plan);
    if (!plan) {
        rc = ms_errf(err, ENOMEM, "out of memory");
        goto fail;
    }
    ms_plan_opts po = {.budget = e->budget, .ctx = e->ctx, .batch = o->batch, .n_seq = e->n_seq,
                       .threads = e->threads, .kv_bf16 = o->kv_bf16, .io = io, .align = o->io_align};
    rc = ms_plan_make(&e->model, &po, plan, err);
    e->plan = plan;
    if (rc < 0) goto fail;
    e->batch = plan->batch; /* the plan's choice when --batch is auto */
    if (streaming && e->model.n_moe_layers && !plan->fits) {
        rc = ms_plan_refuse(plan, err);
        goto fail;
    }
    if ((rc = ms_resident_load(&e->model, &e->res, res_progress, (void *)o, err)) < 0) goto fail;
    uint64_t extra = 0;
    if ((rc = e->arch->bind(&e->model, &e->res, &e->weights, &extra, err)) < 0) goto fail;
    e->stats.resident_bytes = e->res.bytes + extra;
    e->pool = ms_pool_create(e->threads, err);
    if (!e->pool) {
        rc = -ENOMEM;
        goto fail;
    }
    e->env.compute.kern = ms_kern_select(o->force_ref);
    e->env.compute.pool = e->pool;
    if ((rc = e->arch->state_create(e->weights, e->ctx, e->batch, e->n_seq, e->threads, o->kv_bf16, &e->state,
                                    &e->stats.state_bytes, err)) < 0)
        goto fail;
    if (e->model.n_moe_layers) {
        if (!strcmp(io, "resident") || !strcmp(io, "mmap")) {
            rc = ms_experts_mem_create(&e->model.experts, !strcmp(io, "mmap") ? MS_EXPERTS_MMAP : MS_EXPERTS_RESIDENT,
                                       &e->env.experts, &e->stats.expert_mem_bytes, err);
        } else {
            ms_cache_opts co = {.layout = &plan->layout, .io_backend = io, .queue_depth = o->queue_depth,
                                .policy = o->policy, .profile_path = o->profile, .mlock = o->mlock};
            rc = ms_cache_create(&e->model.experts, &co, &e->cache, err);
            if (rc == 0) {
                e->env.experts = ms_cache_source(e->cache);
                ms_cache_stats cs;
                ms_cache_get_stats(e->cache, &cs);
                e->stats.expert_mem_bytes = cs.arena_bytes;
            }
        }
        if (rc < 0) goto fail;
    }
    snprintf(e->prefetch_mode, sizeof e->prefetch_mode, "%s", o->prefetch && *o->prefetch ? o->prefetch : "none");
    if (strcmp(e->prefetch_mode, "none") && strcmp(e->prefetch_mode, "next-layer")) {
        rc = ms_errf(err, EINVAL, "--prefetch %s: use none or next-layer", e->prefetch_mode);
        goto fail;
    }
    e->env.prefetch = !strcmp(e->prefetch_mode, "next-layer") && e->cache;
    e->env.pred = &e->pred;
    e->stats.load_s = ms_now_s() - t0;
    *out = e;
    return 0;
fail:
    ms_engine_close(e);
    return rc;
}

void ms_engine_close(ms_engine *e)
{
    if (!e) return;
    if (e->env.experts.ops) e->env.experts.ops->destroy(e->env.experts.impl);
    if (e->state) e->arch->state_destroy(e->state);
    if (e->weights) e->arch->unbind(e->weights);
    if (e->pool) ms_pool_destroy(e->pool);
    ms_resident_free(&e->res);
    ms_model_close(&e->model);
    free(e->plan);
    free(e);
}

int ms_engine_vocab(const ms_engine *e) { return e->model.cfg.vocab_size; }

void ms_engine_reset(ms_engine *e) { e->pos = 0; }

int ms_engine_step(ms_engine *e, const ms_batch *b, bool exact, ms_err *err)
{
    if (e->cache) ms_cache_tick(e->cache);
    e->env.exact = exact;
    double t0 = ms_now_s();
    int rc = e->arch->forward(e->weights, e->state, &e->env, b, err);
    e->env.exact = false;
    if (rc < 0) return rc;
    double dt = ms_now_s() - t0;
    if (b->n == 1 || exact) {
        e->stats.decode_tokens += (uint64_t)b->n;
        e->stats.decode_s += dt;
    } else {
        e->stats.prefill_tokens += (uint64_t)b->n;
        e->stats.prefill_s += dt;
    }
    return 0;
}

int ms_engine_mtp(ms_engine *e, const ms_batch *b, const float *hidden, bool exact, ms_err *err)
{
    if (!e->mtp || !e->arch->mtp_forward) return ms_errf(err, EINVAL, "the engine was opened without --mtp");
    e->env.exact = exact;
    double t0 = ms_now_s();
    int rc = e->arch->mtp_forward(e->weights, e->state, &e->env, b, hidden, err);
    e->env.exact = false;
    if (rc < 0) return rc;
    e->stats.draft_rows += (uint64_t)b->n;
    e->stats.draft_s += ms_now_s() - t0;
    return 0;
}

int ms_engine_eval(ms_engine *e, const int *tokens, int n, float *logits, bool all_logits, ms_err *err)
{
    int V = e->model.cfg.vocab_size;
    int *pos = malloc((size_t)MS_MAX(1, MS_MIN(n, e->batch)) * sizeof *pos);
    if (!pos) return ms_errf(err, ENOMEM, "out of memory");
    int rc = 0;
    for (int i = 0; i < n && rc == 0;) {
        int chunk = MS_MIN(e->batch, n - i);
        bool last = i + chunk == n;
        if (e->pos + chunk > e->ctx) {
            rc = ms_errf(err, ENOSPC, "context is full: %d + %d tokens exceed --ctx %d", e->pos, chunk, e->ctx);
            break;
        }
        for (int j = 0; j < chunk; j++) pos[j] = e->pos + j;
        ms_batch b = {.n = chunk, .tokens = tokens + i, .pos = pos, .all_logits = all_logits};
        if (logits && all_logits) b.logits = logits + (size_t)i * V;
        else if (logits && last) b.logits = logits;
        if ((rc = ms_engine_step(e, &b, false, err)) < 0) break;
        e->pos += chunk;
        i += chunk;
    }
    free(pos);
    return rc;
}

/* mst_serve.c - see mst_serve.h. */
#include "mst_serve.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch.h"
#include "ms_test.h"
#include "plan.h"
#include "synth.h"

char *mst_serve_model(const char *name)
{
    char *dir = mst_tmpdir(name);
    ms_synth_opts o;
    ms_err err = {0};
    ms_synth_result r;
    if (!dir || ms_synth_preset("tiny", &o, &err) < 0) goto fail;
    o.arch.n_layers = 5; /* 4 MoE layers */
    o.seed = 11;
    if (ms_synth_write(dir, &o, &r, &err) < 0) goto fail;
    return dir;
fail:
    fprintf(stderr, "mst_serve_model %s: %s\n", name, err.msg);
    free(dir);
    return NULL;
}

int mst_serve_start(const char *dir, const char *const *args, pid_t *pid)
{
    char *out = mst_fmt("%s/serve.out", dir), *errf = mst_fmt("%s/serve.err", dir);
    const char *argv[64] = {MS_BIN, "serve", "--port", "0"};
    int n = 4;
    for (int i = 0; args[i] && n < 63; i++) argv[n++] = args[i];
    argv[n] = NULL;
    *pid = fork();
    if (*pid == 0) {
        if (!freopen(out, "w", stdout) || !freopen(errf, "w", stderr)) _exit(126);
        execv(MS_BIN, (char *const *)argv);
        _exit(127);
    }
    static const char tag[] = "listening on http://127.0.0.1:";
    int port = 0;
    for (int i = 0; i < 300 && !port; i++) {
        usleep(100000);
        char *s = mst_slurp(out, NULL);
        const char *at = s ? strstr(s, tag) : NULL;
        if (at) port = atoi(at + strlen(tag));
        free(s);
        if (!port && waitpid(*pid, NULL, WNOHANG) == *pid) break;
    }
    if (!port) {
        char *e = mst_slurp(errf, NULL);
        fprintf(stderr, "moestream serve did not start: %s\n", e ? e : "(no stderr)");
        free(e);
    }
    free(out);
    free(errf);
    return port;
}

int mst_serve_stop(pid_t pid, int timeout_s)
{
    int st = 0;
    kill(pid, SIGTERM);
    for (int i = 0; i < timeout_s * 10; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(100000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

mst_server mst_server_start(const char *model, const ms_tokenizer *tok, const ms_engine_opts *eo,
                            const ms_sched_opts *so)
{
    mst_server sv = {0};
    ms_err err = {0};
    if (ms_engine_open(model, eo, &sv.e, &err) < 0) fail_msg("engine: %s", err.msg);
    if (ms_sched_start(sv.e, tok, so, &sv.s, &err) < 0) fail_msg("sched: %s", err.msg);
    return sv;
}

void mst_server_stop(mst_server *sv)
{
    ms_sched_stop(sv->s);
    ms_sched_free(sv->s);
    ms_engine_close(sv->e);
}

ms_sched_req *mst_sched_request(const int32_t *prompt, int n, int max_tokens, float temp, uint64_t seed)
{
    ms_sched_req *r = ms_sched_req_new();
    assert_non_null(r);
    r->prompt = malloc((size_t)n * sizeof *r->prompt);
    assert_non_null(r->prompt);
    memcpy(r->prompt, prompt, (size_t)n * sizeof *r->prompt);
    r->n_prompt = n;
    r->sampling = ms_sampler_defaults();
    r->sampling.temperature = temp;
    r->sampling.seed = seed;
    r->max_tokens = max_tokens;
    r->ignore_eos = true;
    r->logprobs = true; /* the generated ids come back in lps */
    r->detok_flags = MS_TOK_SKIP_SPECIAL;
    return r;
}

void mst_sched_submit(const mst_server *sv, ms_sched_req *r)
{
    ms_err err = {0};
    if (ms_sched_submit(sv->s, r, &err) < 0) fail_msg("submit: %s", err.msg);
}

void mst_sched_wait_done(const mst_server *sv, ms_sched_req *r, int timeout_s)
{
    ms_sched_lock(sv->s);
    for (int i = 0; !r->finish && i < timeout_s * 10; i++) ms_sched_wait(sv->s, r, 100);
    ms_sched_unlock(sv->s);
    if (!r->finish) fail_msg("request did not finish in %d s", timeout_s);
}

char *mst_ids_str(const int32_t *ids, int n)
{
    char *s = calloc(1, (size_t)n * 12 + 1);
    assert_non_null(s);
    for (int i = 0; i < n; i++) sprintf(s + strlen(s), i ? ",%d" : "%d", ids[i]);
    return s;
}

char *mst_sched_ids(const ms_sched_req *r)
{
    int32_t *ids = malloc((size_t)(r->n_lps + 1) * sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < r->n_lps; i++) ids[i] = r->lps[i].token;
    char *s = mst_ids_str(ids, r->n_lps);
    free(ids);
    return s;
}

uint64_t mst_sched_min_budget(const char *model, int mtp_layers, int ctx, int batch, int n_seq)
{
    ms_model m;
    ms_err err = {0};
    if (ms_model_open_mtp(model, mtp_layers, &m, &err) < 0) fail_msg("%s", err.msg);
    ms_plan p;
    ms_plan_opts po = {.budget = 1ull << 40, .ctx = ctx, .batch = batch, .n_seq = n_seq, .threads = 2};
    if (ms_plan_make(&m, &po, &p, &err) < 0) fail_msg("%s", err.msg);
    ms_model_close(&m);
    return p.min_budget;
}

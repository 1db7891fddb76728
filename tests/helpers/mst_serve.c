/* mst_serve.c - see mst_serve.h. */
#include "mst_serve.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ms_test.h"
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

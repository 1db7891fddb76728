/* mst_serve.h - what the `serve` tests share: the generated model they run
 * (tiny preset, 5 layers = 4 MoE layers x 16 experts top-4, seed 11), and a
 * `moestream serve --port 0` child process whose port is read from its
 * "listening on" line. */
#ifndef MST_SERVE_H
#define MST_SERVE_H

#include <sys/types.h>

/* Generate the model into MS_TMP_DIR/<name> (replacing it); malloc'd path, NULL on failure. */
char *mst_serve_model(const char *name);

/* Start MS_BIN serve --port 0 <args...> (NULL-terminated) with stdout and
 * stderr in dir/serve.out and dir/serve.err. Returns the port, 0 if it did not
 * start within 30 s (stderr printed). */
int mst_serve_start(const char *dir, const char *const *args, pid_t *pid);

/* SIGTERM, then wait up to timeout_s: the exit status, -1 if it had to be killed. */
int mst_serve_stop(pid_t pid, int timeout_s);

#endif

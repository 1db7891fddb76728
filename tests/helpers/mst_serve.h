/* mst_serve.h - what the `serve` tests share: the generated model they run
 * (tiny preset, 5 layers = 4 MoE layers x 16 experts top-4, seed 11), and a
 * `moestream serve --port 0` child process whose port is read from its
 * "listening on" line. */
#ifndef MST_SERVE_H
#define MST_SERVE_H

#include <stdint.h>
#include <sys/types.h>

#include "engine.h"
#include "serve_sched.h"
#include "tokenizer.h"

/* Generate the model into MS_TMP_DIR/<name> (replacing it); malloc'd path, NULL on failure. */
char *mst_serve_model(const char *name);

/* Start MS_BIN serve --port 0 <args...> (NULL-terminated) with stdout and
 * stderr in dir/serve.out and dir/serve.err. Returns the port, 0 if it did not
 * start within 30 s (stderr printed). */
int mst_serve_start(const char *dir, const char *const *args, pid_t *pid);

/* SIGTERM, then wait up to timeout_s: the exit status, -1 if it had to be killed. */
int mst_serve_stop(pid_t pid, int timeout_s);

/* The scheduler in-process (test_serve_sched, test_serve_mtp): an engine and
 * its scheduler; the test fails on any error. */
typedef struct mst_server {
    ms_engine *e;
    ms_sched *s;
} mst_server;

mst_server mst_server_start(const char *model, const ms_tokenizer *tok, const ms_engine_opts *eo,
                            const ms_sched_opts *so);
void mst_server_stop(mst_server *sv);

/* The plan's minimum --ram for n_seq sequences (mtp_layers: the MTP layer too). */
uint64_t mst_sched_min_budget(const char *model, int mtp_layers, int ctx, int batch, int n_seq);

/* A request for n prompt ids: defaults sampling at temp/seed, ignore_eos, the
 * generated ids recorded as log-probs (see mst_sched_ids), plain text. */
ms_sched_req *mst_sched_request(const int32_t *prompt, int n, int max_tokens, float temp, uint64_t seed);
void mst_sched_submit(const mst_server *sv, ms_sched_req *r);
/* Wait up to timeout_s for r to finish (the test fails otherwise). */
void mst_sched_wait_done(const mst_server *sv, ms_sched_req *r, int timeout_s);
/* ids as "a,b,c" (malloc'd); r's generated ids likewise. */
char *mst_ids_str(const int32_t *ids, int n);
char *mst_sched_ids(const ms_sched_req *r);

#endif

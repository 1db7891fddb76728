/* cli_engine.h - the options every model-running command shares (run, chat,
 * logits, bench decode): budget, I/O backend, policy, threads, context, batch.
 * Commands put MS_CLI_ENGINE_LONGOPTS in their getopt_long table and pass
 * unknown option codes to ms_cli_engine_opt. */
#ifndef MS_CLI_ENGINE_H
#define MS_CLI_ENGINE_H

#include <getopt.h>
#include <stdio.h>

#include "engine.h"

enum {
    MS_OPT_RAM = 1000,
    MS_OPT_IO,
    MS_OPT_QD,
    MS_OPT_POLICY,
    MS_OPT_PROFILE,
    MS_OPT_MLOCK,
    MS_OPT_THREADS,
    MS_OPT_CTX,
    MS_OPT_BATCH,
    MS_OPT_REF,
    MS_OPT_PREFETCH,
    MS_OPT_KV,
    MS_OPT_MTP,
};

#define MS_CLI_ENGINE_LONGOPTS MS_CLI_ENGINE_LONGOPTS_NO_MTP, {"mtp", required_argument, 0, MS_OPT_MTP}
/* The shared options without --mtp (for a command that gives --mtp its own meaning). */
#define MS_CLI_ENGINE_LONGOPTS_NO_MTP                                                                   \
    {"ram", required_argument, 0, MS_OPT_RAM}, {"io", required_argument, 0, MS_OPT_IO},                \
        {"queue-depth", required_argument, 0, MS_OPT_QD}, {"policy", required_argument, 0, MS_OPT_POLICY}, \
        {"profile", required_argument, 0, MS_OPT_PROFILE}, {"mlock", no_argument, 0, MS_OPT_MLOCK},       \
        {"threads", required_argument, 0, MS_OPT_THREADS}, {"ctx", required_argument, 0, MS_OPT_CTX},     \
        {"batch", required_argument, 0, MS_OPT_BATCH}, {"ref-kernels", no_argument, 0, MS_OPT_REF},   \
        {"prefetch", required_argument, 0, MS_OPT_PREFETCH}, {"kv", required_argument, 0, MS_OPT_KV}

/* Handle one engine option; returns 1 if handled, 0 if not an engine option,
 * -1 on a bad value (message in err). */
int ms_cli_engine_opt(int opt, const char *arg, ms_engine_opts *o, ms_err *err);

/* The --help text of the shared options. */
void ms_cli_engine_help(FILE *f);

/* A stderr progress printer for loading (only when stderr is a terminal). */
void ms_cli_progress(const char *what, uint64_t done, uint64_t total, void *arg);

#endif

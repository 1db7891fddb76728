/* cli_sampling.h - what run, chat and serve share besides the engine options:
 * the sampling options (one table, one parser, one help text, validated before
 * the model loads) and the SIGINT flag that stops a generation.
 * Commands put MS_CLI_SAMPLING_LONGOPTS in their getopt_long table and pass
 * unknown option codes to ms_cli_sampling_opt, as with cli_engine.h. */
#ifndef MS_CLI_SAMPLING_H
#define MS_CLI_SAMPLING_H

#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include "err.h"
#include "sampler.h"

enum {
    MS_OPT_TEMP = 1100,
    MS_OPT_TOPK,
    MS_OPT_TOPP,
    MS_OPT_MINP,
    MS_OPT_REP,
    MS_OPT_REPN,
    MS_OPT_SEED,
};

#define MS_CLI_SAMPLING_LONGOPTS                                                                           \
    {"temp", required_argument, 0, MS_OPT_TEMP}, {"top-k", required_argument, 0, MS_OPT_TOPK},             \
        {"top-p", required_argument, 0, MS_OPT_TOPP}, {"min-p", required_argument, 0, MS_OPT_MINP},         \
        {"repeat-penalty", required_argument, 0, MS_OPT_REP},                                              \
        {"repeat-last-n", required_argument, 0, MS_OPT_REPN}, {"seed", required_argument, 0, MS_OPT_SEED}

/* Handle one sampling option; 1 if handled, 0 if not a sampling option, -1 on
 * a bad value (message in err). */
int ms_cli_sampling_opt(int opt, const char *arg, ms_sampler_params *p, ms_err *err);

/* Validate a complete set (before loading a model): 0 or -EINVAL with err. */
int ms_cli_sampling_check(const ms_sampler_params *p, ms_err *err);

/* The --help text of the sampling options (defaults from ms_sampler_defaults). */
void ms_cli_sampling_help(FILE *f);

/* Install the SIGINT handler (no SA_RESTART: a blocking read returns EINTR)
 * and return the flag it sets. A signal handler can only reach a
 * process-wide flag: this is the one such global of the CLI. The caller clears
 * it (= 0) whenever a new generation starts. */
volatile sig_atomic_t *ms_cli_sigint_install(void);
/* The same flag without installing the handler (to hand to a generator that
 * is set up before the handler goes in). */
volatile sig_atomic_t *ms_cli_sigint_flag(void);

#endif

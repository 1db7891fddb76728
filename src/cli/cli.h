/* cli.h - the subcommands of the moestream CLI. Each lives in src/cli_<name>.c,
 * parses its own options (getopt_long), prints its own --help, and returns the
 * process exit code (0 ok, 1 runtime error, 2 usage error). main() only
 * dispatches. Errors are printed as one line: "moestream <cmd>: <message>". */
#ifndef MS_CLI_H
#define MS_CLI_H

#include "err.h"

int cmd_synth(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_simulate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Print "moestream <cmd>: <err->msg>" to stderr and return 1. */
int ms_cli_fail(const char *cmd, const ms_err *err);
/* Print "moestream <cmd>: <fmt...>" + a hint to run --help, return 2. */
int ms_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The usage error for what getopt_long returned as c (':' = a missing value, with
 * an optstring starting with ':' and opterr = 0; else an unknown option). */
int ms_cli_bad_option(const char *cmd, int c, char **argv);

#endif

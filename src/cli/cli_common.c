/* cli_common.c - error printing shared by the subcommands (see cli.h). */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>

#include "cli.h"

int ms_cli_fail(const char *cmd, const ms_err *err)
{
    fprintf(stderr, "moestream %s: %s\n", cmd, err && err->msg[0] ? err->msg : "failed");
    return 1;
}

int ms_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "moestream %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see moestream %s --help)\n", cmd);
    va_end(ap);
    return 2;
}

int ms_cli_bad_option(const char *cmd, int c, char **argv)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    if (c == ':') return ms_cli_usage_error(cmd, "option %s needs a value", arg);
    return ms_cli_usage_error(cmd, "unknown option '%s'", arg);
}

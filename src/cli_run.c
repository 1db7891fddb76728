/* cli_run.c - `moestream run` (not implemented yet: placeholder that fails clearly). */
#include <stdio.h>

#include "cli.h"

int cmd_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "moestream run: not implemented yet\n");
    return 1;
}

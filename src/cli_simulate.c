/* cli_simulate.c - `moestream simulate` (not implemented yet: placeholder that fails clearly). */
#include <stdio.h>

#include "cli.h"

int cmd_simulate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "moestream simulate: not implemented yet\n");
    return 1;
}

/* cli_inspect.c - `moestream inspect` (not implemented yet: placeholder that fails clearly). */
#include <stdio.h>

#include "cli.h"

int cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "moestream inspect: not implemented yet\n");
    return 1;
}

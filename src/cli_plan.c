/* cli_plan.c - `moestream plan` (not implemented yet: placeholder that fails clearly). */
#include <stdio.h>

#include "cli.h"

int cmd_plan(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "moestream plan: not implemented yet\n");
    return 1;
}

/* cli_synth.c - `moestream synth` (not implemented yet: placeholder that fails clearly). */
#include <stdio.h>

#include "cli.h"

int cmd_synth(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "moestream synth: not implemented yet\n");
    return 1;
}

/* cli_quantize.c - `moestream quantize` (not implemented yet: placeholder that fails clearly). */
#include <stdio.h>

#include "cli.h"

int cmd_quantize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "moestream quantize: not implemented yet\n");
    return 1;
}

/* cli_tokenize.c - `moestream tokenize` (not implemented yet: placeholder that fails clearly). */
#include <stdio.h>

#include "cli.h"

int cmd_tokenize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "moestream tokenize: not implemented yet\n");
    return 1;
}

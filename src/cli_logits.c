/* cli_logits.c - `moestream logits` (not implemented yet: placeholder that fails clearly). */
#include <stdio.h>

#include "cli.h"

int cmd_logits(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "moestream logits: not implemented yet\n");
    return 1;
}

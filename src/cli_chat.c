/* cli_chat.c - `moestream chat` (not implemented yet: placeholder that fails clearly). */
#include <stdio.h>

#include "cli.h"

int cmd_chat(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "moestream chat: not implemented yet\n");
    return 1;
}

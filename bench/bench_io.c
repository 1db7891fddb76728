/* bench_io.c - `moestream bench io` (not implemented yet: placeholder that fails clearly). */
#include <stdio.h>

#include "bench.h"

int ms_bench_io(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "moestream bench io: not implemented yet\n");
    return 1;
}

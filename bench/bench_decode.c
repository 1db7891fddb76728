/* bench_decode.c - `moestream bench decode` (not implemented yet: placeholder that fails clearly). */
#include <stdio.h>

#include "bench.h"

int ms_bench_decode(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "moestream bench decode: not implemented yet\n");
    return 1;
}

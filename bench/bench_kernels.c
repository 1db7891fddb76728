/* bench_kernels.c - `moestream bench kernels` (not implemented yet: placeholder that fails clearly). */
#include <stdio.h>

#include "bench.h"

int ms_bench_kernels(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "moestream bench kernels: not implemented yet\n");
    return 1;
}

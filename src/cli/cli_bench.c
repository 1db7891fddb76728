/* cli_bench.c - `moestream bench kernels|io|decode|prefill|serve|template`: dispatch to bench/. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream bench <what> [options]   (moestream bench <what> --help)\n"
            "\n"
            "  kernels   quantized matvec GB/s per weight type vs the measured memory bandwidth\n"
            "  io        expert-read GB/s per I/O backend vs a raw O_DIRECT read of the same bytes\n"
            "  decode    decode tok/s, hit rate and bytes/token per RAM budget, cold and warm\n"
            "  prefill   prompt-processing tok/s (time to first token) per prompt length\n"
            "  serve     aggregate decode tok/s and expert MiB read per token at 1, 2, 4, 8 concurrent requests\n"
            "  template  chat-template parse and render times per template\n");
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "kernels")) return ms_bench_kernels(argc - 1, argv + 1);
    if (!strcmp(argv[1], "io")) return ms_bench_io(argc - 1, argv + 1);
    if (!strcmp(argv[1], "decode")) return ms_bench_decode(argc - 1, argv + 1);
    if (!strcmp(argv[1], "prefill")) return ms_bench_prefill(argc - 1, argv + 1);
    if (!strcmp(argv[1], "serve")) return ms_bench_serve(argc - 1, argv + 1);
    if (!strcmp(argv[1], "template")) return ms_bench_template(argc - 1, argv + 1);
    return ms_cli_usage_error("bench", "unknown benchmark '%s'", argv[1]);
}

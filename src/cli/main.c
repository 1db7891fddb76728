/* main.c - moestream CLI entry point: dispatch to a subcommand (see cli.h). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"run", cmd_run, "generate text or token ids from a prompt, streaming experts from disk"},
    {"chat", cmd_chat, "interactive multi-turn chat (keeps the KV cache between turns)"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server; concurrent requests share expert reads"},
    {"logits", cmd_logits, "print the logits of a token sequence as JSON (verification)"},
    {"plan", cmd_plan, "split a RAM budget into resident weights, KV cache and expert cache"},
    {"inspect", cmd_inspect, "summarize a model directory: architecture, bytes, quantization"},
    {"synth", cmd_synth, "generate a model directory with random weights in hub formats"},
    {"quantize", cmd_quantize, "convert an HF bf16/f16/f32 checkpoint to MLX affine quantization"},
    {"tokenize", cmd_tokenize, "encode/decode JSON lines with a tokenizer.json"},
    {"template", cmd_template, "render a conversation with a model's chat template (Jinja, as transformers)"},
    {"simulate", cmd_simulate, "replay a routing trace through cache policies (hit rates, plot)"},
    {"bench", cmd_bench, "benchmarks: kernels, io, decode"},
};

static void usage(FILE *f)
{
    fprintf(f,
            "moestream - run Mixture-of-Experts models larger than RAM, streaming experts from NVMe\n"
            "\n"
            "usage: moestream <command> [options]     (moestream <command> --help for details)\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f,
            "\n"
            "environment:\n"
            "  MOESTREAM_FORCE_REF=1        use the scalar reference kernels everywhere\n"
            "  MOESTREAM_KERNELS=NAME       pick a kernel table: avx512, avx2, neon, ref (if the CPU has it)\n"
            "  MOESTREAM_IO_FAULT=SPEC      inject I/O faults into any backend (testing; see docs/IO.md)\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("moestream 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "moestream: unknown command '%s' (see moestream --help)\n", cmd);
    return 2;
}

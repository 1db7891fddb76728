/* cli_engine.c - shared engine options of the model-running commands (see cli_engine.h). */
#include "cli_engine.h"

#include <string.h>
#include <unistd.h>

#include "util.h"

int ms_cli_engine_opt(int opt, const char *arg, ms_engine_opts *o, ms_err *err)
{
    long long v;
    switch (opt) {
    case MS_OPT_RAM:
        if (ms_parse_size(arg, &o->ram, "--ram", err) < 0) return -1;
        if (o->ram == 0) {
            ms_errf(err, EINVAL, "--ram 0: the budget must be a size (e.g. 8G); leave --ram out for the default");
            return -1;
        }
        return 1;
    case MS_OPT_IO:
        if (strcmp(arg, "uring") && strcmp(arg, "pread") && strcmp(arg, "mmap") && strcmp(arg, "resident") &&
            strcmp(arg, "auto") && strncmp(arg, "fault:", 6)) {
            ms_errf(err, EINVAL, "--io: unknown backend '%s' (uring, pread, mmap, resident, fault:<spec>)", arg);
            return -1;
        }
        o->io = arg;
        return 1;
    case MS_OPT_QD:
        if (ms_parse_int(arg, 1, 4096, &v, "--queue-depth", err) < 0) return -1;
        o->queue_depth = (unsigned)v;
        return 1;
    case MS_OPT_POLICY: o->policy = arg; return 1;
    case MS_OPT_PROFILE: o->profile = arg; return 1;
    case MS_OPT_MLOCK: o->mlock = true; return 1;
    case MS_OPT_THREADS:
        if (ms_parse_int(arg, 1, 1024, &v, "--threads", err) < 0) return -1;
        o->threads = (int)v;
        return 1;
    case MS_OPT_CTX:
        if (ms_parse_int(arg, 1, 1 << 24, &v, "--ctx", err) < 0) return -1;
        o->ctx = (int)v;
        return 1;
    case MS_OPT_BATCH:
        if (ms_parse_int(arg, 1, 1 << 16, &v, "--batch", err) < 0) return -1;
        o->batch = (int)v;
        return 1;
    case MS_OPT_REF: o->force_ref = true; return 1;
    case MS_OPT_KV:
        if (strcmp(arg, "f32") && strcmp(arg, "bf16")) {
            ms_errf(err, EINVAL, "--kv %s: use f32 or bf16", arg);
            return -1;
        }
        o->kv_bf16 = !strcmp(arg, "bf16");
        return 1;
    case MS_OPT_MTP:
        if (ms_parse_int(arg, 0, 8, &v, "--mtp", err) < 0) return -1;
        o->mtp = (int)v;
        return 1;
    case MS_OPT_PREFETCH:
        if (strcmp(arg, "none") && strcmp(arg, "next-layer")) {
            ms_errf(err, EINVAL, "--prefetch %s: use none or next-layer", arg);
            return -1;
        }
        o->prefetch = arg;
        return 1;
    default: return 0;
    }
}

void ms_cli_engine_help(FILE *f)
{
    fprintf(f,
            "memory and I/O:\n"
            "  --ram SIZE         the one budget for resident weights + KV cache + scratch + expert cache\n"
            "                     (K/M/G/T suffixes; default: 85%% of MemAvailable minus 1 GiB). The\n"
            "                     run refuses, with the numbers, a budget below the minimum (see `plan`).\n"
            "  --io BACKEND       uring (default): O_DIRECT reads through io_uring into the expert cache;\n"
            "                     auto: uring, or pread where the kernel refuses io_uring;\n"
            "                     pread: the same with a thread pool of preads (kernels without io_uring);\n"
            "                     mmap: the page-cache baseline (like llama.cpp): experts used in place\n"
            "                     from mapped files; NOT bounded by --ram (the kernel's page cache is\n"
            "                     the cache), for comparison only;\n"
            "                     resident: read every expert into RAM at start-up (needs it all to fit);\n"
            "                     fault:<spec>: uring with injected faults (testing, see docs/IO.md;\n"
            "                     MOESTREAM_IO_FAULT=<spec> wraps any backend the same way)\n"
            "  --queue-depth N    reads in flight (default 256)\n"
            "  --policy NAME      expert-cache eviction policy (default: the simulator's default; see\n"
            "                     `moestream simulate --help` for the list)\n"
            "  --profile FILE     routing profile for the `pin` policy\n"
            "  --mlock            lock the expert cache in RAM (and register it as io_uring fixed buffers)\n"
            "  --prefetch MODE    none (default) or next-layer: during decode, apply layer L+1's router\n"
            "                     to the hidden state after layer L's attention and read its predicted\n"
            "                     experts behind layer L's demand reads; it stops itself when more\n"
            "                     prefetched experts are evicted unused than used. Output is unchanged.\n"
            "compute:\n"
            "  --threads N        compute threads (default: physical cores)\n"
            "  --ctx N            context length: KV-cache positions (default min(4096, model maximum))\n"
            "  --batch N          prefill chunk in tokens (default: 512, 256 or 128, the largest whose\n"
            "                     scratch fits 1/32 of --ram)\n"
            "  --kv f32|bf16      KV-cache element type (default f32; bf16 halves it, logits change slightly)\n"
            "  --ref-kernels      scalar reference kernels (same as MOESTREAM_FORCE_REF=1)\n"
            "  --mtp N            speculative decoding with the checkpoint's own MTP draft head: N draft\n"
            "                     tokens per step (0 = off, default), verified together in one forward\n"
            "                     pass; greedy output is bit-identical to --mtp 0, sampling keeps the\n"
            "                     same distribution. The MTP layer's experts share the --ram budget.\n");
}

void ms_cli_progress(const char *what, uint64_t done, uint64_t total, void *arg)
{
    (void)arg;
    if (!isatty(2) || !total) return;
    static const int W = 30;
    int filled = (int)((double)done / (double)total * W);
    char bar[64];
    for (int i = 0; i < W; i++) bar[i] = i < filled ? '#' : '.';
    bar[W] = 0;
    char a[32], b[32];
    fprintf(stderr, "\rloading %s [%s] %s / %s", what, bar, ms_fmt_bytes(done, a, sizeof a),
            ms_fmt_bytes(total, b, sizeof b));
    if (done >= total) fprintf(stderr, "\n");
}

/* fuzz_trace.c - libFuzzer target: a routing trace (JSON lines or the binary
 * "MSTRACE1" form, auto-detected) through ms_trace_read; a trace that parses is
 * written back in both encodings with ms_trace_write and read again, and must
 * come back identical (tokens, experts, predictions, batches, header numbers);
 * a small one is also replayed by the simulator (passes, unions, waves).
 * Seeds: traces of `moestream run --trace` on the tiny model (both encodings,
 * with and without next-layer predictions) and hand-made edge cases. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "sim.h"
#include "trace.h"

static void same(const ms_trace *a, const ms_trace *b)
{
    if (a->n_tokens != b->n_tokens || a->info.n_layers != b->info.n_layers || a->info.n_experts != b->info.n_experts ||
        a->info.top_k != b->info.top_k || a->max_pred != b->max_pred)
        abort();
    if (strcmp(a->info.model, b->info.model) || strcmp(a->info.source, b->info.source)) abort();
    for (uint32_t l = 0; l < a->info.n_layers; l++) { /* NULL layers = 0..n_layers-1 (the writer spells it out) */
        int32_t la = a->info.layers ? a->info.layers[l] : (int32_t)l;
        int32_t lb = b->info.layers ? b->info.layers[l] : (int32_t)l;
        if (la != lb) abort();
    }
    size_t ne = (size_t)a->n_tokens * a->info.n_layers * a->info.top_k;
    if (ne && memcmp(a->experts, b->experts, ne * sizeof *a->experts)) abort();
    if (a->n_tokens && (memcmp(a->seq, b->seq, a->n_tokens * sizeof *a->seq) ||
                        memcmp(a->pos, b->pos, a->n_tokens * sizeof *a->pos) ||
                        memcmp(a->batch, b->batch, a->n_tokens * sizeof *a->batch)))
        abort();
    size_t np = (size_t)a->n_tokens * a->info.n_layers * a->max_pred;
    if (np && memcmp(a->predicted, b->predicted, np * sizeof *a->predicted)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char *path, *out_bin, *out_jsonl;
    if (!path) {
        path = fz_path("in.trace");
        out_bin = fz_path("out.bin");
        out_jsonl = fz_path("out.jsonl");
    }
    fz_write_file(path, data, size, NULL, 0, 0);
    ms_trace t;
    ms_err err = {0};
    if (ms_trace_read(path, &t, &err) < 0) {
        if (!err.msg[0] || t.n_tokens || t.experts) abort(); /* failure frees everything */
        return 0;
    }
    for (uint64_t i = 0; i < t.n_tokens; i++)
        for (uint32_t l = 0; l < t.info.n_layers; l++) {
            const uint16_t *ex = ms_trace_experts(&t, i, l);
            for (uint32_t k = 0; k < t.info.top_k; k++)
                if (ex[k] >= t.info.n_experts) abort(); /* validated ids only */
        }
    /* the simulator's schedule (passes, unions, waves) on what was read */
    size_t nk = (size_t)t.info.n_layers * t.info.n_experts;
    if (nk <= (1u << 16) && t.n_tokens * t.info.n_layers * t.info.top_k <= (1u << 16)) {
        uint32_t *keys;
        size_t n;
        ms_err e2 = {0};
        if (ms_trace_keys(&t, &keys, &n, &e2) < 0) abort();
        if (n > t.n_tokens * t.info.n_layers * t.info.top_k) abort();
        const uint32_t caps[2] = {t.info.top_k, t.info.top_k + 1};
        for (int c = 0; c < 2; c++) {
            ms_sim_result r;
            if (caps[c] > nk) continue;
            if (ms_simulate(&t, keys, n, c ? "next-use" : "lru", caps[c], NULL, &r, &e2) < 0) abort();
            if (r.stats.accesses != n || r.stats.hits > n) abort();
        }
        free(keys);
    }
    const char *outs[2] = {out_bin, out_jsonl};
    const ms_trace_format fmts[2] = {MS_TRACE_BINARY, MS_TRACE_JSONL};
    for (int i = 0; i < 2; i++) {
        ms_err e2 = {0};
        if (ms_trace_write(&t, outs[i], fmts[i], &e2) < 0) abort(); /* what was read can be written */
        ms_trace u;
        if (ms_trace_read(outs[i], &u, &e2) < 0) abort(); /* and read back */
        same(&t, &u);
        ms_trace_free(&u);
    }
    ms_trace_free(&t);
    return 0;
}

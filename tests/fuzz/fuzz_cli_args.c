/* fuzz_cli_args.c - libFuzzer target: the CLI's argument parsers on arbitrary
 * strings: sizes (--ram), size lists (bench --ram 1G,2G), integer lists
 * (--tokens), integers with bounds, doubles (--temp), the shared engine options
 * (ms_cli_engine_opt: --ram, --io, --queue-depth, --threads, --ctx, --batch,
 * --prefetch), eviction policy specs (--policy name:opt=value) and fault-
 * injection specs (--io fault:...). Input: byte 0 picks the parser, the rest
 * is the argument (a C string). Properties checked: a failure always has a
 * message; a success gives values inside the documented bounds. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli_engine.h"
#include "fuzz_common.h"
#include "io_engine.h"
#include "policy.h"
#include "util.h"

/* A policy created from a fuzzed spec must keep its contract: with every slot
 * resident and eligible, victim() names a resident slot (or, under
 * MS_POLICY_VICTIM_FIRST, MS_POLICY_USE_EMPTY only while a slot is empty).
 * 3 layers x 16 experts, top-4, 8 slots, a fixed skewed access stream. */
static bool all_eligible(const void *ctx, uint32_t slot)
{
    const int64_t *key_of = ctx;
    return key_of[slot] >= 0;
}

static void drive_policy(const ms_policy_ops *ops, ms_policy_params *p)
{
    if (ops->flags & (MS_POLICY_NEEDS_FUTURE | MS_POLICY_NEEDS_PROFILE)) return;
    enum { L = 3, E = 16, K = 4, S = 8 };
    p->n_layers = L;
    p->n_experts = E;
    p->top_k = K;
    p->n_slots = S;
    ms_policy pol;
    ms_err err = {0};
    if (ms_policy_create(ops, p, &pol, &err) < 0) {
        if (!err.msg[0]) abort();
        return;
    }
    int64_t key_of[S], slot_of[L * E];
    for (int i = 0; i < S; i++) key_of[i] = -1;
    for (int i = 0; i < L * E; i++) slot_of[i] = -1;
    uint64_t x = 12345;
    for (uint64_t tok = 0; tok < 40; tok++) {
        if (ops->on_tick) ops->on_tick(pol.state, tok);
        for (uint32_t l = 0; l < L; l++) {
            uint32_t chosen[K];
            int nc = 0;
            while (nc < K) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                uint32_t e = (uint32_t)((x >> 33) % E);
                e = e * e / E; /* skewed toward low ids */
                bool dup = false;
                for (int j = 0; j < nc; j++) dup |= chosen[j] == e;
                if (!dup) chosen[nc++] = e;
            }
            uint32_t keys[K];
            for (int j = 0; j < K; j++) keys[j] = l * E + chosen[j];
            if (ops->on_group) ops->on_group(pol.state, keys, K); /* as ms_slots_acquire does */
            for (int j = 0; j < K; j++) {
                uint32_t key = keys[j];
                if (slot_of[key] >= 0) {
                    ops->on_hit(pol.state, (uint32_t)slot_of[key], key);
                    continue;
                }
                uint32_t n_empty = 0;
                int64_t empty = -1;
                for (int i = 0; i < S; i++)
                    if (key_of[i] < 0) {
                        n_empty++;
                        if (empty < 0) empty = i;
                    }
                int64_t slot = empty;
                if (n_empty == 0 || (ops->flags & MS_POLICY_VICTIM_FIRST)) {
                    int64_t v = ops->victim(pol.state, key, (ops->flags & MS_POLICY_VICTIM_FIRST) ? n_empty : 0,
                                            all_eligible, key_of);
                    if (v == MS_POLICY_USE_EMPTY) {
                        if (n_empty == 0) abort();
                    } else {
                        if (v < 0 || v >= S || key_of[v] < 0) abort(); /* a resident slot exists: name one */
                        ops->on_evict(pol.state, (uint32_t)v, (uint32_t)key_of[v]);
                        slot_of[key_of[v]] = -1;
                        key_of[v] = -1;
                        slot = v;
                    }
                }
                ops->on_insert(pol.state, (uint32_t)slot, key, false);
                key_of[slot] = key;
                slot_of[key] = slot;
            }
        }
    }
    ms_policy_destroy(&pol);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned sel = data[0];
    char *s = fz_cstr(data + 1, size - 1);
    ms_err err = {0};
    int rc = 0;
    switch (sel % 9) {
    case 0: {
        uint64_t v;
        rc = ms_parse_size(s, &v, "--ram", &err);
        break;
    }
    case 1: {
        uint64_t *v = NULL;
        int n = 0;
        rc = ms_parse_size_list(s, &v, &n, "--ram", &err);
        if (rc == 0 && (n < 1 || !v)) abort();
        free(v);
        break;
    }
    case 2: {
        long long *v = NULL;
        int n = 0;
        rc = ms_parse_int_list(s, 0, INT32_MAX, &v, &n, "--tokens", &err);
        if (rc == 0) {
            if (n < 1 || !v) abort();
            for (int i = 0; i < n; i++)
                if (v[i] < 0 || v[i] > INT32_MAX) abort();
        }
        free(v);
        break;
    }
    case 3: {
        long long v;
        rc = ms_parse_int(s, -5, 1 << 24, &v, "-n", &err);
        if (rc == 0 && (v < -5 || v > 1 << 24)) abort();
        break;
    }
    case 4: {
        double v;
        rc = ms_parse_double(s, &v, "--temp", &err);
        if (rc == 0 && !(v == v)) abort(); /* never NaN */
        break;
    }
    case 5: {
        ms_engine_opts o;
        memset(&o, 0, sizeof o);
        int opt = MS_OPT_RAM + (int)((sel / 9) % (MS_OPT_PREFETCH - MS_OPT_RAM + 1));
        int h = ms_cli_engine_opt(opt, s, &o, &err);
        if (h == 0) abort(); /* every engine option code is handled */
        rc = h < 0 ? -1 : 0;
        break;
    }
    case 6: {
        const ms_policy_ops *ops = NULL;
        ms_policy_params p;
        memset(&p, 0, sizeof p);
        rc = ms_policy_parse_spec(s, &ops, &p, &err);
        if (rc == 0 && !ops) abort();
        if (rc == 0) drive_policy(ops, &p);
        break;
    }
    case 7: {
        const ms_io_engine_ops *in = ms_io_fault_inner(s, &err);
        rc = in ? 0 : -1;
        break;
    }
    case 8: {
        char buf[32];
        uint64_t v;
        if (ms_parse_size(s, &v, "--ram", &err) == 0) {
            ms_fmt_bytes(v, buf, sizeof buf);
            if (!memchr(buf, 0, sizeof buf)) abort();
        }
        rc = 0;
        err.msg[0] = 'x';
        break;
    }
    }
    if (rc < 0 && !err.msg[0]) abort(); /* every failure says why */
    free(s);
    return 0;
}

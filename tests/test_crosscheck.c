/* test_crosscheck.c - the runtime's logits against an independent reference.
 *
 * tests/ref/ds3_ref.py is a numpy float64 DeepSeek-V3 forward pass written only from
 * the specs (naive MLA, its own safetensors reader and MLX dequantizer). Each case here
 * generates a small checkpoint on the fly into MS_TMP_DIR (`moestream synth`, optionally
 * `moestream quantize`, the independent Python MLX writer tests/ref/ckpt_write.py, or a
 * config.json edit), runs `moestream logits --all-positions` through several runtime
 * paths (decode, prefill, chunked prefill, minimum RAM budget, the AVX2 and the
 * scalar kernel tables), and has ds3_ref.py compare every output with the
 * cross-check rule: the same top-1 token at every position and |logit - ref| <=
 * tol * max(1, |ref|), tol = 2e-5 (1e-4 with tied embeddings, whose logits are
 * ~50x larger): the errors measured are <= 2.5e-6 (5.4e-5 tied), docs/VERIFICATION.md,
 * so the bound has ~8x margin and a regression of one order of magnitude fails.
 * The sensitivity test shows the rule fails on deliberately wrong references (wrong
 * RoPE pairing, no group limit, biased expert weights). The full matrix (30+ cases)
 * is tests/ref/run_cases.py. The Step-3.5/3.7 family has its own reference,
 * tests/ref/step_ref.py (golden step-tiny, its layouts, generated cases; with
 * --mtp also the draft head's teacher-forced logits, test_step_mtp). Without
 * /usr/bin/python3 + numpy every test is a visible skip (a failure under CI=true). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ms_test.h"

#define PY MST_PYTHON
#define REF_DIR MS_TEST_DATA "/../ref"
#define TINY_VOCAB 512
#define TOL "2e-5"      /* relative; see the top of the file */
#define TOL_TIED "1e-4" /* tied embeddings: logits ~50 */

/* One cross-check case. */
typedef struct {
    const char *name;
    const char *synth;    /* extra `moestream synth --preset tiny` arguments (a --preset here wins) */
    const char *convert;  /* NULL, "quantize <args>" or "py <ckpt_write.py args>" */
    const char *edit;     /* edit_config.py arguments, or NULL */
    int ntok;             /* prompt length */
    unsigned seed;        /* token ids seed */
    const char *modes[6]; /* extra `logits` arguments per runtime run ("@minram": the
                           * plan's minimum --ram for this prompt; a leading
                           * "MOESTREAM_KERNELS=x" goes to the environment); NULL-terminated */
    const char *tol;      /* NULL = TOL */
} xc_case; /* the reference is ds3_ref.py, or step_ref.py for a case named "step..."; a case named
            * "step-mtp..." runs step_ref.py --mtp (its modes pass --mtp to `logits`) and the draft
            * rows are checked too */

#define NEED_PYTHON(state)                                                                         \
    do {                                                                                           \
        (void)(state);                                                                             \
        if (!mst_have_numpy()) MST_SKIP("/usr/bin/python3 with numpy not found (python3-numpy)"); \
    } while (0)

/* Comma-separated token ids in [0, vocab) from a small LCG. */
static char *make_tokens(int n, unsigned seed, int vocab)
{
    char *s = malloc((size_t)n * 8 + 1);
    size_t len = 0;
    uint64_t x = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        len += (size_t)sprintf(s + len, "%s%d", i ? "," : "", (int)((x >> 33) % (uint64_t)vocab));
    }
    return s;
}

/* Run a command line, failing the test (with its stderr) if it exits non-zero. */
static char *run_ok(const char *what, const char *cmd)
{
    char *out = NULL, *err = NULL;
    int rc = mst_run(&out, &err, "%s", cmd);
    if (rc != 0) print_message("%s failed (exit %d): %s\n%s\n%s\n", what, rc, cmd, out ? out : "", err ? err : "");
    free(err);
    assert_int_equal(rc, 0);
    return out;
}

/* The plan's minimum --ram (bytes) for a decode run of ntok tokens. */
static long long min_ram(const char *model, int ntok)
{
    char *cmd = mst_fmt("%s plan --model %s --ctx %d --batch 1 --json", MS_BIN, model, ntok);
    char *out = run_ok("plan", cmd);
    const char *p = strstr(out, "\"min_ram_bytes\":");
    assert_non_null(p);
    long long v = atoll(p + strlen("\"min_ram_bytes\":"));
    assert_true(v > 0);
    free(out);
    free(cmd);
    return v;
}

/* Build the case's checkpoint in MS_TMP_DIR/crosscheck-<name>/model; returns the
 * directory (malloc'd) and the model path in *model. */
static char *build_model(const xc_case *c, char **model)
{
    char *sub = mst_fmt("crosscheck-%s", c->name);
    char *dir = mst_tmpdir(sub);
    free(sub);
    assert_non_null(dir);
    *model = mst_fmt("%s/model", dir);
    char *src = c->convert ? mst_fmt("%s/src", dir) : strdup(*model);
    char *cmd = mst_fmt("%s synth --preset tiny --out %s -q --no-progress %s", MS_BIN, src, c->synth);
    free(run_ok("synth", cmd));
    free(cmd);
    if (c->convert && strncmp(c->convert, "quantize ", 9) == 0) {
        cmd = mst_fmt("%s quantize %s %s %s", MS_BIN, src, *model, c->convert + 9);
        free(run_ok("quantize", cmd));
        free(cmd);
    } else if (c->convert && strncmp(c->convert, "py ", 3) == 0) {
        cmd = mst_fmt("%s %s/ckpt_write.py %s %s %s", PY, REF_DIR, src, *model, c->convert + 3);
        free(run_ok("ckpt_write.py", cmd));
        free(cmd);
    } else if (c->convert && strncmp(c->convert, "step ", 5) == 0) { /* step_ckpt.py MODE [args] */
        const char *mode = c->convert + 5, *args = strchr(mode, ' ');
        cmd = mst_fmt("%s %s/step_ckpt.py %.*s %s %s %s", PY, REF_DIR, args ? (int)(args - mode) : (int)strlen(mode),
                      mode, src, *model, args ? args : "");
        free(run_ok("step_ckpt.py", cmd));
        free(cmd);
    }
    if (c->edit) {
        cmd = mst_fmt("%s %s/edit_config.py %s %s", PY, REF_DIR, *model, c->edit);
        free(run_ok("edit_config.py", cmd));
        free(cmd);
    }
    free(src);
    return dir;
}

/* Runtime logits for every mode, then one ds3_ref.py run comparing all of them. */
static void run_case(const xc_case *c)
{
    char *model;
    char *dir = build_model(c, &model);
    char *toks = make_tokens(c->ntok, c->seed, TINY_VOCAB);
    size_t cap = 4096, len = 0;
    char *compare = calloc(1, cap);
    for (int m = 0; m < 6 && c->modes[m]; m++) {
        const char *mode = c->modes[m], *env = "";
        char *envbuf = NULL;
        if (!strncmp(mode, "MOESTREAM_KERNELS=", 18)) { /* "MOESTREAM_KERNELS=x [args]" */
            size_t el = strcspn(mode, " ");
            env = envbuf = strndup(mode, el);
            mode += el + (mode[el] == ' ');
        }
        /* "@minram [args]"; with --mtp the draft layer adds resident weights and a KV layer (as test_mtp) */
        char *extra = strncmp(mode, "@minram", 7) == 0
                          ? mst_fmt("--ram %lld%s", min_ram(model, c->ntok) + (strstr(mode, "--mtp") ? 4ll << 20 : 0),
                                    mode + 7)
                          : strdup(mode);
        char *cmd = mst_fmt("%s %s logits --model %s --tokens %s --all-positions %s > %s/rt%d.json", env, MS_BIN, model,
                            toks, extra, dir, m);
        free(run_ok("moestream logits", cmd));
        free(cmd);
        free(extra);
        free(envbuf);
        len += (size_t)snprintf(compare + len, cap - len, " --compare %s/rt%d.json", dir, m);
        assert_true(len < cap);
    }
    char *out = NULL, *err = NULL;
    const char *ref = strncmp(c->name, "step", 4) ? "ds3_ref.py" : "step_ref.py";
    bool mtp = strncmp(c->name, "step-mtp", 8) == 0;
    int rc = mst_run(&out, &err, "%s %s/%s %s --tokens %s --stats --tol %s%s%s", PY, REF_DIR, ref, model, toks,
                     c->tol ? c->tol : TOL, mtp ? " --mtp" : "", compare);
    print_message("%s (%d tokens, tol %s):\n%s  stats: %s", c->name, c->ntok, c->tol ? c->tol : TOL, out ? out : "",
                  err ? err : "");
    for (int m = 0; m < 6 && c->modes[m]; m++) print_message("  rt%d = logits %s\n", m, c->modes[m][0] ? c->modes[m] : "(decode)");
    assert_int_equal(rc, 0);
    /* one "ok" line per runtime output */
    int n_ok = 0;
    for (const char *p = out; (p = strstr(p, ".json: ok ")) != NULL; p++) n_ok++;
    int n_modes = 0;
    while (n_modes < 6 && c->modes[n_modes]) n_modes++;
    assert_int_equal(n_ok, n_modes);
    if (mtp) { /* one "(mtp): ok" line per output too */
        int n_mtp = 0;
        for (const char *p = out; (p = strstr(p, ".json (mtp): ok ")) != NULL; p++) n_mtp++;
        assert_int_equal(n_mtp, n_modes);
    }
    free(out);
    free(err);
    free(compare);
    free(toks);
    free(model);
    free(dir);
}

/* ---- the reference itself ------------------------------------------------------------ */

/* Bit unpacking against the worked vectors of mlx-quant.md section 5. */
static void test_ref_selftest(void **state)
{
    NEED_PYTHON(state);
    char *out = run_ok("ds3_ref.py --selftest", PY " " REF_DIR "/ds3_ref.py --selftest");
    assert_non_null(strstr(out, "selftest ok"));
    free(out);
}

/* The reference reproduces the golden llama.cpp logits of ds3-tiny (to ~1e-6, checked
 * at 1e-5 relative here), and the runtime agrees with it through decode and prefill. */
static void test_golden_ds3_tiny(void **state)
{
    NEED_PYTHON(state);
    const char *g = MS_TEST_DATA "/golden/ds3-tiny";
    const char *toks = "1,75,104,111,32,119,97,115,32,116,104,101,114,101,46,13";
    char *dir = mst_tmpdir("crosscheck-golden");
    char *cmd = mst_fmt("%s logits --model %s --tokens %s --all-positions > %s/d.json && "
                        "%s logits --model %s --tokens %s --all-positions --prefill > %s/p.json",
                        MS_BIN, g, toks, dir, MS_BIN, g, toks, dir);
    free(run_ok("moestream logits", cmd));
    free(cmd);
    cmd = mst_fmt("%s %s/ds3_ref.py %s --tokens %s --tol 1e-5 --compare %s/ref.json", PY, REF_DIR, g, toks, g);
    char *out = run_ok("ds3_ref.py vs ref.json", cmd);
    print_message("reference vs golden: %s", out);
    assert_non_null(strstr(out, "ref.json: ok "));
    free(out);
    free(cmd);
    cmd = mst_fmt("%s %s/ds3_ref.py %s --tokens %s --tol %s --compare %s/d.json --compare %s/p.json", PY, REF_DIR, g,
                  toks, TOL, dir, dir);
    out = run_ok("ds3_ref.py vs runtime", cmd);
    print_message("runtime vs reference: %s", out);
    assert_non_null(strstr(out, "d.json: ok "));
    assert_non_null(strstr(out, "p.json: ok "));
    free(out);
    free(cmd);
    free(dir);
}

/* ---- cases the golden file does not cover -------------------------------------------- */

/* HF bf16, group-limited routing (16 experts in 4 groups, keep 2, top-4), an MTP layer
 * that must be ignored; decode, one-chunk prefill and prefill in chunks of 5. */
static void test_hf_group_routing_mtp(void **state)
{
    NEED_PYTHON(state);
    xc_case c = {"hf-group-mtp", "--format hf --seed 11 --mtp 1", NULL, NULL, 32, 1,
                 {"", "--prefill", "--prefill --batch 5", NULL}, NULL};
    run_case(&c);
}

/* q_lora_rank null (plain q_proj), 5 layers, YaRN factor 8 over an original context of
 * 32 positions, 160 positions (well past it). */
static void test_hf_qlora_null_yarn_long(void **state)
{
    NEED_PYTHON(state);
    xc_case c = {"hf-qnull-yarn", "--format hf --seed 14 --q-lora-rank null --layers 5", NULL,
                 "rope_scaling.original_max_position_embeddings=32 rope_scaling.factor=8.0", 160, 2,
                 {"", "--prefill --batch 64", NULL}, NULL};
    run_case(&c);
}

/* transformers-v5 rope_parameters spelling, mscale != mscale_all_dim (the cos/sin
 * magnitude factor g != 1), rms_norm_eps 0.25 (the q_a/kv_a norms must keep 1e-6),
 * norm_topk_prob false, routed_scaling_factor 1.7. */
static void test_hf_config_variants(void **state)
{
    NEED_PYTHON(state);
    xc_case c = {"hf-config-variants", "--format hf --seed 16", NULL,
                 "rope_scaling.original_max_position_embeddings=16 rope_scaling.mscale_all_dim=0.707 "
                 "--rope-parameters rms_norm_eps=0.25 norm_topk_prob=false routed_scaling_factor=1.7",
                 64, 3, {"", "--prefill", NULL}, NULL};
    run_case(&c);
}

/* MLX uniform 4-bit g64 (quantized embeddings and lm_head, embed_q / unembed_out,
 * stacked experts), also with the smallest RAM budget the plan allows. */
static void test_mlx_q4(void **state)
{
    NEED_PYTHON(state);
    xc_case c = {"mlx-q4", "--format mlx --seed 21 --bits 4 --group-size 64", NULL, NULL, 32, 4,
                 {"", "--prefill", "@minram", NULL}, NULL};
    run_case(&c);
}

/* MLX mixed 8/5-bit with per-module config entries, sharded with an index; and 3-bit
 * g128 with f16 scales (embed_q stays unquantized: its input width 64 < 128). */
static void test_mlx_mixed_and_3bit(void **state)
{
    NEED_PYTHON(state);
    xc_case a = {"mlx-mixed-8-5", "--format mlx --seed 27 --recipe mixed-8-5", NULL, NULL, 32, 5,
                 {"", "--prefill", NULL}, NULL};
    run_case(&a);
    xc_case b = {"mlx-q3-g128-f16", "--format mlx --seed 23 --bits 3 --group-size 128 --dtype f16", NULL, NULL, 32, 6,
                 {"", "--prefill", NULL}, NULL};
    run_case(&b);
}

/* `moestream quantize` of an HF synth model with MTP: dq4 recipe (8-bit backbone, 4-bit
 * experts, 6/5-bit down_proj), 6 layers. */
static void test_quantize_dq4(void **state)
{
    NEED_PYTHON(state);
    xc_case c = {"quantize-dq4", "--format hf --seed 34 --layers 6 --mtp 1", "quantize --recipe dq4", NULL, 32, 7,
                 {"", "--prefill", NULL}, NULL};
    run_case(&c);
}

/* A checkpoint the project's code did not write: tests/ref/ckpt_write.py, legacy MLX
 * layout (quantized kv_b_proj, mlx_lm < 0.30.6) at 5-bit g32, with router biases that
 * leave fewer than k positive candidates in the kept groups (-inf vs 0 masking). */
static void test_python_written_legacy_mlx(void **state)
{
    NEED_PYTHON(state);
    xc_case c = {"pywrite-legacy", "--format hf --seed 52", "py --bits 5 --group-size 32 --legacy-kvb --bias-shift -2",
                 NULL, 32, 8, {"", "--prefill", NULL}, NULL};
    run_case(&c);
}

/* Tied embeddings (lm_head = embed_tokens; N(0,1) rows make logits of ~50, so
 * float32 rounding is ~50x larger: tol 1e-4), 8-bit MLX written by ckpt_write.py. */
static void test_python_written_tied(void **state)
{
    NEED_PYTHON(state);
    xc_case c = {"pywrite-q8-tied", "--format hf --seed 54", "py --bits 8 --tie", NULL, 32, 33,
                 {"", "--prefill", NULL}, TOL_TIED};
    run_case(&c);
}

/* The AVX2 kernels end to end (on an AVX-512 host the default table is avx512, so
 * nothing else runs them outside test_kernels), and the scalar reference table, by
 * MOESTREAM_KERNELS, on quantized 4-bit weights through decode and prefill.
 * test_kernels (test_select) checks the variable selects exactly that table. */
static void test_kernel_tables(void **state)
{
    NEED_PYTHON(state);
#if defined(__x86_64__)
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")))
        MST_SKIP("this CPU has no AVX2+FMA+F16C: the avx2 table cannot run");
#else
    MST_SKIP("not x86-64: no AVX2 table");
#endif
    xc_case c = {"kernel-tables", "--format mlx --seed 25 --bits 4 --group-size 64", NULL, NULL, 32, 10,
                 {"MOESTREAM_KERNELS=avx2", "MOESTREAM_KERNELS=avx2 --prefill --batch 7", "MOESTREAM_KERNELS=ref",
                  "MOESTREAM_KERNELS=ref --prefill", NULL},
                 NULL};
    run_case(&c);
}

/* The rule can fail: references with a deliberate bug disagree with the runtime. */
static void test_sensitivity(void **state)
{
    NEED_PYTHON(state);
    xc_case c = {"sensitivity", "--format hf --seed 61", NULL, NULL, 24, 9, {"", NULL}, NULL};
    run_case(&c); /* the correct reference agrees (asserted inside) */
    char *dir = mst_fmt("%s/crosscheck-sensitivity", MS_TMP_DIR);
    char *toks = make_tokens(c.ntok, c.seed, TINY_VOCAB);
    const char *muts[] = {"rope-half", "no-group-limit", "group-top1", "bias-in-weights", "no-shared", "no-mscale"};
    for (size_t i = 0; i < sizeof muts / sizeof muts[0]; i++) {
        char *out = NULL;
        int rc = mst_run(&out, NULL, "%s %s/ds3_ref.py %s/model --tokens %s --mutate %s --compare %s/rt0.json", PY,
                         REF_DIR, dir, toks, muts[i], dir);
        print_message("mutation %s: %s", muts[i], out ? out : "");
        assert_int_equal(rc, 1);
        assert_non_null(strstr(out, ": FAIL "));
        free(out);
    }
    free(toks);
    free(dir);
}

/* ---- Step-3.5/3.7-Flash (tests/ref/step_ref.py, step_ckpt.py) ------------------------ */

#define STEP_GOLDEN MS_TEST_DATA "/golden/step-tiny"
#define STEP_TOKENS "1,86,119,104,115,48,54,49,58,61,35,122,108,113,103,114,122,35,59,47,35,106,100,119,104,47,35,102," \
                    "111,100,112,115"

/* The Step reference reproduces the golden step-tiny logits (ref.json has 7 significant
 * digits: 5e-7), agrees with the runtime, and each deliberate deviation the golden README
 * lists as a sensitivity run makes it disagree with the runtime. */
static void test_step_golden(void **state)
{
    NEED_PYTHON(state);
    char *dir = mst_tmpdir("crosscheck-step-golden");
    char *cmd = mst_fmt("%s logits --model %s --tokens %s --all-positions > %s/d.json", MS_BIN, STEP_GOLDEN,
                        STEP_TOKENS, dir);
    free(run_ok("moestream logits", cmd));
    free(cmd);
    cmd = mst_fmt("%s %s/step_ref.py %s --tokens %s --stats --tol 1e-6 --compare %s/ref.json", PY, REF_DIR, STEP_GOLDEN,
                  STEP_TOKENS, STEP_GOLDEN);
    char *out = NULL, *err = NULL;
    int rc = mst_run(&out, &err, "%s", cmd);
    print_message("step_ref vs golden (tol 1e-6): %s  stats: %s", out, err);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(err, "\"clamped\": 2601")); /* the golden README's clamp counts */
    free(out);
    free(err);
    free(cmd);
    cmd = mst_fmt("%s %s/step_ref.py %s --tokens %s --tol 5e-6 --compare %s/d.json", PY, REF_DIR, STEP_GOLDEN,
                  STEP_TOKENS, dir);
    out = run_ok("step_ref.py vs runtime", cmd);
    print_message("runtime vs step_ref (tol 5e-6): %s", out);
    free(out);
    free(cmd);
    const char *muts[] = {"no-window",   "window-plus-1",    "no-clamp", "clamp-before-silu", "no-llama3",
                          "full-rotary", "rope-interleaved", "no-gate",  "bias-in-weights"};
    for (size_t i = 0; i < sizeof muts / sizeof muts[0]; i++) {
        out = NULL;
        rc = mst_run(&out, NULL, "%s %s/step_ref.py %s --tokens %s --mutate %s --compare %s/d.json", PY, REF_DIR,
                     STEP_GOLDEN, STEP_TOKENS, muts[i], dir);
        print_message("mutation %s: %s", muts[i], out ? out : "");
        assert_int_equal(rc, 1);
        free(out);
    }
    free(dir);
}

/* The golden checkpoint rewritten as mlx-lm step3p5 (text config at the top, model.*
 * names, f32 router_bias): bit-identical logits to the wrapper; and as the original HF
 * checkpoint (dequantized f32, .moe.* / share_expert names, zero-centered norms, 3 shards):
 * the golden logits through decode and prefill, and wrong without the +1 on the norms. */
static void test_step_layouts(void **state)
{
    NEED_PYTHON(state);
    char *dir = mst_tmpdir("crosscheck-step-layouts");
    char *cmd = mst_fmt("%s %s/step_ckpt.py unwrap %s %s/lm && %s %s/step_ckpt.py hf %s %s/hf --shards 3", PY,
                        REF_DIR, STEP_GOLDEN, dir, PY, REF_DIR, STEP_GOLDEN, dir);
    free(run_ok("step_ckpt.py", cmd));
    free(cmd);
    cmd = mst_fmt("%s logits --model %s --tokens %s --all-positions > %s/w.json && "
                  "%s logits --model %s/lm --tokens %s --all-positions > %s/lm.json && cmp %s/w.json %s/lm.json && "
                  "%s logits --model %s/hf --tokens %s --all-positions > %s/hf.json && "
                  "%s logits --model %s/hf --tokens %s --all-positions --prefill --batch 6 > %s/hf6.json",
                  MS_BIN, STEP_GOLDEN, STEP_TOKENS, dir, MS_BIN, dir, STEP_TOKENS, dir, dir, dir, MS_BIN, dir,
                  STEP_TOKENS, dir, MS_BIN, dir, STEP_TOKENS, dir);
    free(run_ok("logits of the three layouts", cmd));
    free(cmd);
    cmd = mst_fmt("%s %s/compare_logits.py %s/ref.json %s/hf.json --tol 1e-5 && "
                  "%s %s/compare_logits.py %s/ref.json %s/hf6.json --tol 1e-5",
                  PY, REF_DIR, STEP_GOLDEN, dir, PY, REF_DIR, STEP_GOLDEN, dir);
    char *out = run_ok("HF layout vs golden", cmd);
    print_message("original HF layout vs golden (tol 1e-5):\n%s", out);
    free(out);
    free(cmd);
    out = NULL;
    int rc = mst_run(&out, NULL, "%s %s/step_ref.py %s/hf --tokens %s --mutate no-norm-plus-1 --compare %s/hf.json", PY,
                     REF_DIR, dir, STEP_TOKENS, dir);
    print_message("mutation no-norm-plus-1: %s", out ? out : "");
    assert_int_equal(rc, 1);
    free(out);
    free(dir);
}

/* Generated step models (synth --preset step-tiny: 6 layers, full every 4th, window 8,
 * clamps that trigger, bf16 router_bias in the wrapper) against step_ref.py. */
static void test_step_synth(void **state)
{
    NEED_PYTHON(state);
    /* the step3p7 wrapper, DQ4, 5 shards; 40 positions = 5 windows; smallest budget */
    xc_case a = {"step-mlx", "--preset step-tiny --seed 5", NULL, NULL, 40, 11,
                 {"", "--prefill --batch 7", "@minram", NULL}, NULL};
    run_case(&a);
    /* original HF layout with an MTP layer, window 5, sharded */
    xc_case b = {"step-hf-mtp", "--preset step-tiny --format hf --mtp 1 --seed 6 --shard-size 200K", NULL,
                 "sliding_window=5", 48, 12, {"", "--prefill --batch 11", NULL}, NULL};
    run_case(&b);
    /* mlx-lm layout (unwrapped), 10 layers, window 16, other thetas / rotary shares / clamps */
    xc_case c = {"step-lm-deep", "--preset step-tiny --layers 10 --seed 7", "step unwrap",
                 "sliding_window=16 "
                 "swiglu_limits=[0,0,0.9,null,2.5,0,0.6,0,0,1.2,0,0,0] "
                 "swiglu_limits_shared=[0.7,0,0,1.1,0,0,0,0.5,0,0,0,0,0] "
                 "rope_theta=[50000,10000,20000,10000,500000,10000,10000,30000,5000,10000,1,1,1] "
                 "partial_rotary_factors=[0.25,1,0.5,1,0.75,1,1,1,0.5,1,1,1,1] "
                 "moe_router_scaling_factor=1.7",
                 36, 13, {"", "--prefill --batch 9", NULL}, NULL};
    run_case(&c);
    /* uniform 3-bit g32 with f16 scales (the router stays 8-bit g64), norm_expert_weight false */
    xc_case d = {"step-q3", "--preset step-tiny --recipe uniform --bits 3 --group-size 32 --dtype f16 --seed 8",
                 NULL, "text_config.norm_expert_weight=false", 24, 14, {"", "--prefill", NULL}, NULL};
    run_case(&d);
}

/* The Step MTP draft head (`logits --all-positions --mtp`: row t = the draft for token t+2
 * from the pre-norm hidden state at t and token t+1) against step_ref.py --mtp, written
 * from vLLM's / SGLang's step3p5_mtp: an HF step-tiny with one MTP layer (17 tensors,
 * its own head), window 5, a clamp on the MTP layer's dense MLP (list entry N = 6 only,
 * so a runtime reading another entry differs), decode, prefill chunks and the minimum
 * budget, same rule and tolerance as the main logits. Then the rule fails on deliberately
 * wrong references: hidden state after the final norm, concat order swapped, the main
 * lm_head instead of the layer's own head. */
static void test_step_mtp(void **state)
{
    NEED_PYTHON(state);
    xc_case c = {"step-mtp", "--preset step-tiny --format hf --mtp 1 --seed 9", NULL,
                 "sliding_window=5 swiglu_limits_shared=[0,0,0,0,0,1.0,0.6,0,0]", 40, 15,
                 {"--mtp", "--mtp --prefill --batch 7", "@minram --mtp", NULL}, NULL};
    run_case(&c);
    char *model, *dir = build_model(&c, &model), *toks = make_tokens(c.ntok, c.seed, TINY_VOCAB);
    char *cmd = mst_fmt("%s logits --model %s --tokens %s --all-positions --mtp > %s/rt0.json", MS_BIN, model, toks, dir);
    free(run_ok("moestream logits", cmd));
    free(cmd);
    static const char *const muts[] = {"mtp-post-norm", "mtp-concat-swapped", "mtp-main-head"};
    for (size_t i = 0; i < sizeof muts / sizeof muts[0]; i++) {
        char *out = NULL;
        int rc = mst_run(&out, NULL, "%s %s/step_ref.py %s --tokens %s --mtp --tol %s --mutate %s --compare %s/rt0.json",
                         PY, REF_DIR, model, toks, TOL, muts[i], dir);
        print_message("mutation %s: %s", muts[i], out ? out : "");
        assert_int_equal(rc, 1);
        assert_non_null(out);
        assert_non_null(strstr(out, "rt0.json: ok "));      /* the main logits are untouched */
        assert_non_null(strstr(out, "rt0.json (mtp): FAIL")); /* the draft rows are not */
        free(out);
    }
    free(toks);
    free(model);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_selftest),
        cmocka_unit_test(test_golden_ds3_tiny),
        cmocka_unit_test(test_hf_group_routing_mtp),
        cmocka_unit_test(test_hf_qlora_null_yarn_long),
        cmocka_unit_test(test_hf_config_variants),
        cmocka_unit_test(test_mlx_q4),
        cmocka_unit_test(test_mlx_mixed_and_3bit),
        cmocka_unit_test(test_quantize_dq4),
        cmocka_unit_test(test_python_written_legacy_mlx),
        cmocka_unit_test(test_python_written_tied),
        cmocka_unit_test(test_kernel_tables),
        cmocka_unit_test(test_sensitivity),
        cmocka_unit_test(test_step_golden),
        cmocka_unit_test(test_step_layouts),
        cmocka_unit_test(test_step_synth),
        cmocka_unit_test(test_step_mtp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#!/usr/bin/python3
"""run_cases.py - the full cross-check matrix: generate checkpoints with `moestream synth`
(and `moestream quantize`), run `moestream logits --all-positions` through the decode
path and with --prefill, run ds3_ref.py on the same tokens, and compare with the rule of
compare_logits.py (same top-1 everywhere, |d| <= tol*max(1,|ref|)).

Design: each case is data (synth arguments, an optional quantize step, an optional
config.json edit, token count and seed); the driver writes everything under --work, one
directory per case, and prints one row per case plus a markdown table (--md) for
docs/VERIFICATION.md. The golden ds3-tiny case compares the reference with ref.json too.

Each case runs five runtime paths (MODES: decode, prefill, prefill in chunks of 7, decode
at the plan's minimum --ram, decode with the scalar reference kernels). --mutations also
runs every ds3_ref.py mutation against the decode output and reports which cases detect
it; --big adds the GB-sized real-geometry cases (BIG_CASES).

Usage: run_cases.py --bin build/moestream --work /tmp/xc [--only NAME[,NAME]] [--md FILE]
                    [--mutations] [--big]
Exit 0 when every case is within tolerance, 1 otherwise.
"""
import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import compare_logits  # noqa: E402
import ds3_ref  # noqa: E402


def cfg_edit(**kv):
    """config.json edit: set keys (None deletes)."""
    def f(c):
        for k, v in kv.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
    return f


def short_ctx(orig, factor=4.0):
    """YaRN with a small original context so that long prompts run past it."""
    def f(c):
        c["rope_scaling"] = dict(c["rope_scaling"], original_max_position_embeddings=orig, factor=factor)
    return f


def to_rope_parameters(c):
    """transformers-v5 spelling: rope_theta and rope_scaling folded into rope_parameters."""
    rs = dict(c.pop("rope_scaling"))
    rs["rope_type"] = rs.pop("type")
    rs["rope_theta"] = c.pop("rope_theta")
    c["rope_parameters"] = rs


def chain(*fs):
    def f(c):
        for g in fs:
            g(c)
    return f


# name, synth args, conversion (None = use the synth output directly; a list = `moestream
# quantize` arguments; ("py", args) = tests/ref/ckpt_write.py, the independent writer),
# config edit, n tokens, token seed
CASES = [
    ("hf-bf16-g4k2", ["--format", "hf", "--seed", "11"], None, None, 32, 1),
    ("hf-bf16-e32-g8k3-top6", ["--format", "hf", "--seed", "12", "--experts", "32", "--n-group", "8",
                               "--topk-group", "3", "--top-k", "6"], None, None, 32, 2),
    ("hf-f32-g2k1-2dense", ["--format", "hf", "--dtype", "f32", "--seed", "13", "--n-group", "2", "--topk-group", "1",
                            "--first-dense", "2", "--layers", "5"], None, None, 32, 3),
    ("hf-bf16-qlora-null", ["--format", "hf", "--seed", "14", "--q-lora-rank", "null"], None, None, 32, 4),
    ("hf-bf16-yarn-long-300", ["--format", "hf", "--seed", "15", "--layers", "6"], None, short_ctx(64, 8.0), 300, 5),
    ("hf-bf16-rope-parameters", ["--format", "hf", "--seed", "16"], None, chain(short_ctx(32), to_rope_parameters), 80, 6),
    ("hf-bf16-mtp1", ["--format", "hf", "--seed", "17", "--mtp", "1"], None, None, 32, 7),
    ("mlx-q4-g64", ["--format", "mlx", "--seed", "21", "--bits", "4", "--group-size", "64"], None, None, 32, 8),
    ("mlx-q8-g32", ["--format", "mlx", "--seed", "22", "--bits", "8", "--group-size", "32"], None, None, 32, 9),
    ("mlx-q3-g128", ["--format", "mlx", "--seed", "23", "--bits", "3", "--group-size", "128"], None, None, 32, 10),
    ("mlx-q2-g32", ["--format", "mlx", "--seed", "24", "--bits", "2", "--group-size", "32"], None, None, 32, 11),
    ("mlx-q5-g64-f16", ["--format", "mlx", "--seed", "25", "--bits", "5", "--dtype", "f16"], None, None, 32, 12),
    ("mlx-q6-g32-f32", ["--format", "mlx", "--seed", "26", "--bits", "6", "--group-size", "32", "--dtype", "f32"],
     None, None, 32, 13),
    ("mlx-mixed-8-5", ["--format", "mlx", "--seed", "27", "--recipe", "mixed-8-5"], None, None, 32, 14),
    ("mlx-dq4-6layers", ["--format", "mlx", "--seed", "28", "--recipe", "dq4", "--layers", "6"], None, None, 32, 15),
    ("mlx-q4-qlora-null-yarn-200", ["--format", "mlx", "--seed", "29", "--q-lora-rank", "null"], None,
     short_ctx(48), 200, 16),
    ("mlx-q4-mtp1", ["--format", "mlx", "--seed", "30", "--mtp", "1"], None, None, 32, 17),
    ("quantize-q4-g64", ["--format", "hf", "--seed", "31"], ["--bits", "4", "--group-size", "64"], None, 32, 18),
    ("quantize-q8-g128-mtp", ["--format", "hf", "--seed", "32", "--mtp", "1"], ["--bits", "8", "--group-size", "128"],
     None, 32, 19),
    ("quantize-mixed-8-5", ["--format", "hf", "--seed", "33"], ["--recipe", "mixed-8-5"], None, 32, 20),
    ("quantize-dq4", ["--format", "hf", "--seed", "34", "--layers", "6"], ["--recipe", "dq4"], None, 32, 21),
    ("quantize-mixed_3_6-f32", ["--format", "hf", "--seed", "35", "--dtype", "f32"], ["--recipe", "mixed_3_6"], None,
     32, 22),
    # config.json variants of the same weights (each changes the math the runtime must follow)
    ("hf-bf16-no-rope-scaling", ["--format", "hf", "--seed", "41"], None, cfg_edit(rope_scaling=None), 48, 24),
    ("hf-bf16-yarn-mscale-0.707", ["--format", "hf", "--seed", "42"], None,
     chain(short_ctx(16), lambda c: c["rope_scaling"].update(mscale=1.0, mscale_all_dim=0.707)), 64, 25),
    ("hf-bf16-yarn-defaults", ["--format", "hf", "--seed", "43"], None,
     chain(short_ctx(16), lambda c: [c["rope_scaling"].pop(k) for k in ("beta_fast", "beta_slow", "mscale",
                                                                       "mscale_all_dim")]), 64, 26),
    ("hf-bf16-deepseek_yarn-rope_type", ["--format", "hf", "--seed", "44"], None,
     chain(short_ctx(16, 16.0), lambda c: c["rope_scaling"].update(rope_type="deepseek_yarn", type=None)
           or c["rope_scaling"].pop("type")), 64, 27),
    ("hf-bf16-eps0.5-nonorm-rsf1.7", ["--format", "hf", "--seed", "45"], None,
     cfg_edit(rms_norm_eps=0.5, norm_topk_prob=False, routed_scaling_factor=1.7), 32, 28),
    ("hf-bf16-all-moe", ["--format", "hf", "--seed", "46", "--first-dense", "0", "--layers", "3"], None, None, 32, 29),
    # checkpoints written by the independent Python writer (not by the project's code)
    ("pywrite-q4-g64", ["--format", "hf", "--seed", "51", "--mtp", "1"], ("py", ["--bits", "4"]), None, 32, 30),
    ("pywrite-legacy-kvb-q3-g32", ["--format", "hf", "--seed", "52"],
     ("py", ["--bits", "3", "--group-size", "32", "--legacy-kvb"]), None, 32, 31),
    ("pywrite-q6-g128-qconfig-only", ["--format", "hf", "--seed", "53"],
     ("py", ["--bits", "6", "--group-size", "128", "--quant-config-only"]), None, 32, 32),
    ("pywrite-q8-tied", ["--format", "hf", "--seed", "54"], ("py", ["--bits", "8", "--tie"]), None, 32, 33),
    ("pywrite-q8-negative-bias", ["--format", "hf", "--seed", "55"], ("py", ["--bits", "8", "--bias-shift", "-2"]),
     None, 32, 34),
    ("pywrite-hf-fused-experts-f16-mtp", ["--format", "hf", "--seed", "56", "--mtp", "1"],
     ("py", ["--format", "hf", "--fused-experts", "--dtype", "f16"]), None, 32, 35),
    ("pywrite-hf-moe-layer-freq-2", ["--format", "hf", "--seed", "57", "--layers", "5"],
     ("py", ["--format", "hf", "--moe-layer-freq", "2"]), None, 32, 36),
    ("pywrite-mlx-moe-layer-freq-2-q5", ["--format", "hf", "--seed", "58", "--layers", "5"],
     ("py", ["--moe-layer-freq", "2", "--bits", "5", "--group-size", "32"]), None, 32, 37),
    ("hf-bf16-top1", ["--format", "hf", "--seed", "59", "--top-k", "1"], None, None, 32, 38),
    ("mlx-q4-yarn-1100", ["--format", "mlx", "--seed", "91", "--layers", "3"], None, short_ctx(64, 32.0), 1100, 91),
    ("quantize-q3-g32-qlora-null", ["--format", "hf", "--seed", "36", "--q-lora-rank", "null"],
     ["--bits", "3", "--group-size", "32"], None, 32, 23),
]

# --big: the real DeepSeek-V3 / GigaChat3 widths (hidden 7168, 128 heads, MLA 1536/512/
# 128/64/128, YaRN factor 40 over 4096) with few experts and layers; GB-sized, minutes each
BIG_CASES = [
    ("big-giga-mlx-q4-3layers", ["--preset", "gigachat-702b", "--format", "mlx", "--layers", "3", "--first-dense", "1",
                                 "--experts", "16", "--n-group", "8", "--topk-group", "4", "--top-k", "8",
                                 "--vocab", "1024", "--seed", "7"], None, None, 12, 77),
    ("big-giga-hf-bf16-qnull-mtp", ["--preset", "gigachat-702b", "--format", "hf", "--layers", "2", "--first-dense", "0",
                                    "--experts", "16", "--n-group", "4", "--topk-group", "2", "--top-k", "6",
                                    "--vocab", "1024", "--q-lora-rank", "null", "--mtp", "1", "--seed", "8"],
     None, None, 10, 78),
]

GOLDEN_TOKENS = [1, 75, 104, 111, 32, 119, 97, 115, 32, 116, 104, 101, 114, 101, 46, 13]


def sh(cmd, out=None):
    with open(out, "w") if out else open(os.devnull, "w") as f:
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), p.returncode, p.stderr.strip()))


def build_case(binp, work, name, synth, quant, edit):
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    src = d + "-src" if quant else d
    shutil.rmtree(src, ignore_errors=True)
    preset = [] if "--preset" in synth else ["--preset", "tiny"]
    sh([binp, "synth", "--out", src, "-q", "--no-progress"] + preset + synth)
    if quant and quant[0] == "py":
        sh([sys.executable, os.path.join(HERE, "ckpt_write.py"), src, d] + quant[1])
    elif quant:
        sh([binp, "quantize", src, d] + quant)
    if edit:
        p = os.path.join(d, "config.json")
        with open(p) as f:
            c = json.load(f)
        edit(c)
        with open(p, "w") as f:
            json.dump(c, f, indent=2)
    return d


def min_ram(binp, model, n):
    p = subprocess.run([binp, "plan", "--model", model, "--ctx", str(n), "--batch", "1", "--json"],
                       stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(p.stdout)["min_ram_bytes"]


# runtime paths compared with the reference: name -> extra `moestream logits` arguments
MODES = [("decode", []), ("prefill", ["--prefill"]), ("prefill-b7", ["--prefill", "--batch", "7"]),
         ("decode-min-ram", None), ("decode-ref-kernels", ["--ref-kernels"])]


def run_case(binp, model, tokens, golden=None, mutations=False, outdir=None):
    tk = ",".join(map(str, tokens))
    outdir = outdir or model
    row = {}
    t0 = time.time()
    m = ds3_ref.Model(model)
    ref, st = m.forward(tokens)
    row["ref_s"] = time.time() - t0
    row["route_margin"] = min(st.route_margin, st.group_margin)
    row["notes"] = m.w.notes
    for mode, extra in MODES:
        if extra is None:
            extra = ["--ram", str(min_ram(binp, model, len(tokens)))]
        out = os.path.join(outdir, "logits-%s.json" % mode)
        sh([binp, "logits", "--model", model, "--tokens", tk, "--all-positions"] + extra, out)
        row[mode] = compare_logits.compare(ref, compare_logits.load(out), 1e-3)
    if golden:
        row["golden"] = compare_logits.compare(compare_logits.load(golden), ref, 1e-3)
    if mutations:
        # which deliberate deviations would this case catch? (the runtime's decode output
        # against the mutated reference must then fail the tolerance rule)
        rt = compare_logits.load(os.path.join(outdir, "logits-decode.json"))
        row["mutations"] = {}
        for mu in ds3_ref.MUTATIONS:
            mref, _ = ds3_ref.Model(model, [mu]).forward(tokens)
            row["mutations"][mu] = compare_logits.compare(mref, rt, 1e-3)
    return row


def main(argv):
    ap = argparse.ArgumentParser(description="cross-check moestream logits against ds3_ref.py over many checkpoints")
    ap.add_argument("--bin", required=True, help="the moestream binary")
    ap.add_argument("--work", required=True, help="scratch directory for the generated models")
    ap.add_argument("--only", help="comma-separated case names")
    ap.add_argument("--golden", default=os.path.join(HERE, "..", "data", "golden", "ds3-tiny"),
                    help="ds3-tiny directory with ref.json (default tests/data/golden/ds3-tiny; '' to skip)")
    ap.add_argument("--md", help="also write a markdown table here")
    ap.add_argument("--big", action="store_true", help="also the GB-sized real-geometry cases (minutes, ~8 GB disk)")
    ap.add_argument("--mutations", action="store_true",
                    help="also run every ds3_ref.py mutation and report which cases detect it")
    a = ap.parse_args(argv)
    os.makedirs(a.work, exist_ok=True)
    only = set(a.only.split(",")) if a.only else None
    rows, ok = [], True
    if a.golden and os.path.isdir(a.golden) and (not only or "golden-ds3-tiny" in only):
        gd = os.path.join(a.work, "golden-ds3-tiny")
        os.makedirs(gd, exist_ok=True)
        r = run_case(a.bin, a.golden, GOLDEN_TOKENS, os.path.join(a.golden, "ref.json"), a.mutations, gd)
        rows.append(("golden-ds3-tiny", len(GOLDEN_TOKENS), r))
    for name, synth, quant, edit, n, seed in CASES + (BIG_CASES if a.big else []):
        if only and name not in only:
            continue
        d = build_case(a.bin, a.work, name, synth, quant, edit)
        with open(os.path.join(d, "config.json")) as f:
            V = json.load(f)["vocab_size"]
        rng = random.Random(seed)
        r = run_case(a.bin, d, [rng.randrange(V) for _ in range(n)], None, a.mutations and not name.startswith("big-"))
        rows.append((name, n, r))
    md = ["| case | tokens | " + " | ".join(m for m, _ in MODES) + " | top-1 | min routing margin | min top-2 gap |",
          "|---|---|" + "---|" * len(MODES) + "---|---|---|"]
    for name, n, r in rows:
        good = all(r[m]["ok"] for m, _ in MODES) and r.get("golden", {"ok": True})["ok"]
        ok &= good
        rm = "-" if math.isinf(r["route_margin"]) else "%.2e" % r["route_margin"]
        print("%-32s %4d %s route_margin=%s ref %.1fs" % (name, n, "ok" if good else "FAIL", rm, r["ref_s"]))
        for m, _ in MODES:
            print("    %-20s %s" % (m, compare_logits.describe(r[m])))
        if "golden" in r:
            print("    %-20s %s" % ("ref vs ref.json", compare_logits.describe(r["golden"])))
        for note in r["notes"][:3]:
            print("    note: %s" % note)
        t1 = "equal" if not any(r[m]["top1_mismatch"] for m, _ in MODES) else "DIFFERS"
        md.append("| %s | %d | " % (name, n) + " | ".join("%.1e" % r[m]["max_abs"] for m, _ in MODES) +
                  " | %s | %s | %.1e |" % (t1, rm, r["decode"]["min_top2_gap"]))
    if a.mutations:
        md += ["", "| deliberate deviation | cases that detect it |", "|---|---|"]
        print("mutations (a case detects one when the runtime's decode logits fail against the mutated reference):")
        rows_m = [row for row in rows if "mutations" in row[2]]
        for mu, desc in ds3_ref.MUTATIONS.items():
            det = [name for name, _, r in rows_m if not r["mutations"][mu]["ok"]]
            print("    %-16s %2d/%d  %s" % (mu, len(det), len(rows_m), ",".join(det)))
            miss = [name for name, _, r in rows_m if r["mutations"][mu]["ok"]]
            md.append("| %s (%s) | %d of %d%s |" % (
                mu, desc, len(det), len(rows_m),
                (": " + ", ".join(det)) if len(det) <= len(rows_m) // 2 else
                (" (all but %s)" % ", ".join(miss)) if miss else ""))
    if a.md:
        with open(a.md, "w") as f:
            f.write("\n".join(md) + "\n")
    print("%d cases, %s" % (len(rows), "all within tolerance" if ok else "SOME FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

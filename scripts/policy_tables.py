#!/usr/bin/env python3
"""policy_tables.py - the policy comparison tables of docs/POLICIES.md.

Runs `moestream simulate --json` on each trace at 6.25 / 12.5 / 25 / 50 / 75%
capacity (--capacity) with every policy (or --policy LIST) and prints, in
Markdown:
  - one table per trace: hit rate and % of Belady's hit rate (unless --compact);
  - the default against the others: per trace and capacity the default's hit
    rate, next-use's (the previous default), LRU's, the best other policy's,
    the default's margin over that best, and the default's expert reads per
    token as a multiple of the minimum (Belady's misses per token);
  - a summary: mean / worst % of Belady per policy over all traces.

    python3 scripts/policy_tables.py [--moestream build/moestream] [--policy P,..]
                                     [--capacity 6.25%,..] [--compact] TRACE...

A trace's name in the output is its file name without .jsonl / .trace.jsonl / .bin.
"""
import argparse
import json
import os
import subprocess
import sys


def name_of(path):
    b = os.path.basename(path)
    for suf in (".trace.jsonl", ".jsonl", ".bin"):
        if b.endswith(suf):
            return b[: -len(suf)]
    return b


def run(exe, path, caps, policy):
    out = subprocess.run([exe, "simulate", "--trace", path, "--capacity", caps, "--policy", policy, "--json"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"policy_tables.py: simulate failed on {path}: {out.stderr.strip()}")
    rows = json.loads(out.stdout)
    hdr = subprocess.run([exe, "simulate", "--trace", path, "--slots", str(rows[0]["slots"]), "--policy", "lru"],
                         capture_output=True, text=True).stdout
    geo = next((l.strip() for l in hdr.splitlines() if "tokens x" in l), "")
    return rows, geo.split(" = ")[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moestream", default="build/moestream")
    ap.add_argument("--policy", default="all")
    ap.add_argument("--capacity", default="6.25%,12.5%,25%,50%,75%")
    ap.add_argument("--compact", action="store_true", help="no per-trace tables")
    ap.add_argument("traces", nargs="+")
    a = ap.parse_args()
    summary = {}  # policy -> capacity -> [ratios]
    order = []
    versus = []  # (trace, capacity, default, next-use, lru, best name, best, default reads x min)
    for path in a.traces:
        rows, geo = run(a.moestream, path, a.capacity, a.policy)
        caps = sorted({(r["slots"], r["capacity"]) for r in rows})
        pols = []
        for r in rows:
            if r["policy"] not in pols:
                pols.append(r["policy"])
        pols = [p for p in pols if p != "belady"] + (["belady"] if "belady" in pols else [])
        cell = {(r["policy"], r["slots"]): r for r in rows}
        if not a.compact:
            print(f"**{name_of(path)}** ({geo})\n")
            print("| policy | " + " | ".join(f"{s} slots ({100 * c:g}%)" for s, c in caps) + " |")
            print("|---|" + "---|" * len(caps))
        for p in pols:
            default = any(cell[(p, s)]["default"] for s, _ in caps)
            label = f"**{p}**" if default else p
            cs = []
            for s, c in caps:
                r = cell[(p, s)]
                cs.append(f"{r['hit_rate']:.3f} ({100 * r['belady_ratio']:.0f}%)")
                summary.setdefault(p, {}).setdefault(c, []).append(100 * r["belady_ratio"])
            if p not in order:
                order.append(p)
            if not a.compact:
                print(f"| {label} | " + " | ".join(cs) + " |")
        if not a.compact:
            print()
        for s, c in caps:
            here = [cell[(p, s)] for p in pols if p != "belady"]
            d = next((r for r in here if r["default"]), None)
            if not d:
                continue
            others = [r for r in here if not r["default"]]
            best = max(others, key=lambda r: r["hit_rate"]) if others else d
            get = lambda name: next((r["hit_rate"] for r in here if r["policy"] == name), float("nan"))
            versus.append((name_of(path), c, d, get("next-use"), get("lru"), best))
    if versus:
        d0 = versus[0][2]["policy"]
        print(f"**The default ({d0}) against the others**: hit rate of the default, of next-use (the previous "
              f"default), of LRU and of the best other policy; the default's margin over that best; the default's "
              f"expert reads per token as a multiple of the minimum (Belady's misses per token).\n")
        print(f"| trace | capacity | {d0} | next-use | lru | best other | margin | reads x min |")
        print("|---|---|---|---|---|---|---|---|")
        worst = min(v[2]["hit_rate"] - v[5]["hit_rate"] for v in versus)
        below_lru = min(v[2]["hit_rate"] - v[4] for v in versus)
        for t, c, d, nu, lru, best in versus:
            print(f"| {t} | {100 * c:g}% | {d['hit_rate']:.3f} | {nu:.3f} | {lru:.3f} | {best['hit_rate']:.3f} "
                  f"({best['policy']}) | {d['hit_rate'] - best['hit_rate']:+.3f} | {d['reads_vs_min']:.2f}x |")
        print(f"\nWorst margin {worst:+.4f}; default minus LRU at least {below_lru:+.4f}.\n")
    caps = sorted({c for p in summary for c in summary[p]})
    n = len(a.traces)
    print(f"**Summary: hit rate as % of Belady, mean / worst over the {n} traces**\n")
    print("| policy | " + " | ".join(f"{100 * c:g}%" for c in caps) + " |")
    print("|---|" + "---|" * len(caps))
    for p in [q for q in order if q != "belady"] + (["belady"] if "belady" in order else []):
        v = summary[p]
        print(f"| {p} | " + " | ".join(f"{sum(v[c]) / len(v[c]):.1f} / {min(v[c]):.1f}" for c in caps) + " |")


if __name__ == "__main__":
    main()

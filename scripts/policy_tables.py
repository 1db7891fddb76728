#!/usr/bin/env python3
"""policy_tables.py - the policy comparison tables of docs/POLICIES.md.

Runs `moestream simulate --json` on each trace at 12.5 / 25 / 50% capacity with
every policy (or --policy LIST) and prints, in Markdown, one table per trace
(hit rate and % of Belady's hit rate) and a summary of the mean / worst % of
Belady per policy over all traces.

    python3 scripts/policy_tables.py [--moestream build/moestream] [--policy P,..] TRACE...

A trace's name in the output is its file name without .jsonl / .trace.jsonl.
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moestream", default="build/moestream")
    ap.add_argument("--policy", default="all")
    ap.add_argument("--capacity", default="12.5%,25%,50%")
    ap.add_argument("traces", nargs="+")
    a = ap.parse_args()
    summary = {}  # policy -> capacity -> [ratios]
    order = []
    for path in a.traces:
        out = subprocess.run([a.moestream, "simulate", "--trace", path, "--capacity", a.capacity,
                              "--policy", a.policy, "--json"], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"policy_tables.py: simulate failed on {path}: {out.stderr.strip()}")
        rows = json.loads(out.stdout)
        hdr = subprocess.run([a.moestream, "simulate", "--trace", path, "--slots", str(rows[0]["slots"]),
                              "--policy", "lru"], capture_output=True, text=True).stdout
        geo = next((l.strip() for l in hdr.splitlines() if "tokens x" in l), "")
        caps = sorted({(r["slots"], r["capacity"]) for r in rows})
        pols = []
        for r in rows:
            if r["policy"] not in pols:
                pols.append(r["policy"])
        pols = [p for p in pols if p != "belady"] + (["belady"] if "belady" in pols else [])
        cell = {(r["policy"], r["slots"]): r for r in rows}
        print(f"**{name_of(path)}** ({geo.split(' = ')[0]})\n")
        print("| policy | " + " | ".join(f"{s} slots ({100 * c:.1f}%)" for s, c in caps) + " |")
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
            print(f"| {label} | " + " | ".join(cs) + " |")
        print()
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

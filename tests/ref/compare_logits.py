#!/usr/bin/python3
"""compare_logits.py - compare two per-position logits files with the cross-check rule:
at every position the same top-1 token and |a - ref| <= tol * max(1, |ref|) everywhere.

Reads either the `moestream logits --all-positions` format
    {"n_vocab":V,"positions":[{"pos":p,"logits":[...]}, ...]}
or the golden ref.json format {"tokens":[...],"n_vocab":V,"logits":[[...], ...]}.
With key="mtp_positions" (`logits --mtp`: the draft head's rows) or "mtp_logits" (ref.json)
the draft logits are read instead.
The first file is the reference. Prints one summary line; a top-1 mismatch is reported
with the reference's top-1/top-2 gap at that position (a near-tie there is a sensitivity
case, not necessarily a bug). Exit 0 within tolerance, 1 otherwise, 2 usage error.

Usage: compare_logits.py REF.json OTHER.json [--tol 1e-3]
"""
import argparse
import json
import sys

import numpy as np


class CompareError(Exception):
    pass


def load(path, key="positions"):
    """-> float64 array [positions, vocab] (positions in file order, checked to be 0..n-1);
    key "mtp_positions" reads the draft head's rows of the same format."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        raise CompareError("%s: %s" % (path, e))
    if key != "positions":
        if isinstance(d.get(key), list):
            pos = [p.get("pos") for p in d[key]]
            rows = [p.get("logits") for p in d[key]]
        elif isinstance(d.get("mtp_logits"), list):
            pos, rows = list(range(len(d["mtp_logits"]))), d["mtp_logits"]
        else:
            raise CompareError("%s: no \"%s\" (run logits with --mtp)" % (path, key))
        if pos != list(range(len(pos))):
            raise CompareError("%s: %s are not 0..%d in order" % (path, key, len(pos) - 1))
    elif isinstance(d.get("positions"), list):
        pos = [p.get("pos") for p in d["positions"]]
        rows = [p.get("logits") for p in d["positions"]]
        if pos != list(range(len(pos))):
            raise CompareError("%s: positions are not 0..%d in order" % (path, len(pos) - 1))
    elif isinstance(d.get("logits"), list):
        rows = d["logits"]
    else:
        raise CompareError("%s: neither \"positions\" nor \"logits\"" % path)
    try:
        a = np.array(rows, dtype=np.float64)
    except ValueError:
        raise CompareError("%s: ragged logits rows" % path)
    if a.ndim != 2 or a.shape[0] == 0:
        raise CompareError("%s: no logits" % path)
    if "n_vocab" in d and d["n_vocab"] != a.shape[1]:
        raise CompareError("%s: n_vocab %s but rows of %d" % (path, d["n_vocab"], a.shape[1]))
    return a


def compare(ref, other, tol):
    """-> dict with ok, max_abs, worst_ratio (max |d|/(tol*max(1,|ref|))), top1 mismatches."""
    if ref.shape != other.shape:
        return {"ok": False, "shape": (ref.shape, other.shape)}
    d = np.abs(other - ref)
    bound = tol * np.maximum(1.0, np.abs(ref))
    ratio = d / bound
    bad = np.argwhere(~(d <= bound))  # NaN counts as bad
    t1r, t1o = ref.argmax(axis=1), other.argmax(axis=1)
    srt = np.sort(ref, axis=1)
    gaps = srt[:, -1] - srt[:, -2] if ref.shape[1] > 1 else np.full(ref.shape[0], np.inf)
    mism = [(int(p), int(t1r[p]), int(t1o[p]), float(gaps[p])) for p in np.nonzero(t1r != t1o)[0]]
    worst = np.unravel_index(np.nanargmax(np.where(np.isnan(d), np.inf, d)), d.shape)
    return {"ok": len(bad) == 0 and not mism, "max_abs": float(np.nanmax(d)) if not np.isnan(d).all() else float("nan"),
            "max_ratio": float(np.nanmax(ratio)), "worst": (int(worst[0]), int(worst[1])), "n_bad": int(len(bad)),
            "top1_mismatch": mism, "positions": ref.shape[0], "min_top2_gap": float(gaps.min())}


def describe(r):
    if "shape" in r:
        return "FAIL shape %s vs %s" % r["shape"]
    s = "%s positions=%d max_abs=%.3g (pos %d tok %d) max_ratio=%.3g bad=%d top1_mismatch=%d min_top2_gap=%.3g" % (
        "ok" if r["ok"] else "FAIL", r["positions"], r["max_abs"], r["worst"][0], r["worst"][1], r["max_ratio"],
        r["n_bad"], len(r["top1_mismatch"]), r["min_top2_gap"])
    for p, a, b, g in r["top1_mismatch"][:5]:
        s += " [pos %d ref %d got %d gap %.3g]" % (p, a, b, g)
    return s


def check_files(ref, files, tol, prog, note="", key="positions"):
    """Each file against the reference logits ref: one line "FILE: ok|FAIL ...<note>" ("FILE (mtp):
    ..." for the draft rows, key "mtp_positions"); returns the exit code (0 all within tolerance,
    1 otherwise or on an unreadable file)."""
    rc = 0
    for f in files:
        try:
            other = load(f, key)
        except CompareError as e:
            print("%s: %s" % (prog, e), file=sys.stderr)
            return 1
        r = compare(ref, other, tol)
        print("%s%s: %s%s" % (f, "" if key == "positions" else " (mtp)", describe(r), note))
        if not r["ok"]:
            rc = 1
    return rc


def main(argv):
    ap = argparse.ArgumentParser(description="compare per-position logits against a reference")
    ap.add_argument("ref")
    ap.add_argument("other")
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args(argv)
    try:
        r = compare(load(a.ref), load(a.other), a.tol)
    except CompareError as e:
        print("compare_logits: %s" % e, file=sys.stderr)
        return 1
    print(describe(r))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

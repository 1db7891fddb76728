#!/usr/bin/env python3
"""trace_locality.py - how much an online cache policy can hope for on a routing trace.

Reads a moestream trace (JSON lines, v1) and prints the statistics that bound what an
eviction policy can learn online, next to the simulator's numbers:

  skew      share of selections that go to the top 25% of each layer's experts
            (0.25 = uniform routing);
  reuse     P(a (layer, expert) used by a token is used by the next token), against
            top_k / n_experts for routing without temporal locality;
  xlayer    precision of predicting layer l+1's top-k experts of a token from its layer-l
            experts, with co-occurrence counts learned online from the earlier tokens
            (against the online top-k by popularity alone, and chance = top_k / n_experts):
            a signal for prefetch, not for eviction;
  static    the hit rate of the best *static* set of (layer, expert) slots chosen with
            hindsight over the whole trace, at 12.5 / 25 / 50% capacity: any policy that
            only learns popularity stays near it; beating it needs temporal locality.

usage: python3 scripts/trace_locality.py TRACE.jsonl [TRACE.jsonl ...]
Needs numpy (Debian: python3-numpy). Binary traces: convert with the simulator first.
"""
import json
import sys

import numpy as np


def load(path):
    with open(path) as f:
        h = json.loads(f.readline())
        toks = [json.loads(l)["experts"] for l in f if l.strip()]
    L, E, K = h["n_layers"], h["n_experts"], h["top_k"]
    X = np.zeros((len(toks), L, E), bool)
    for t, ex in enumerate(toks):
        for l, e in enumerate(ex):
            X[t, l, e] = True
    return L, E, K, X


def analyse(path):
    L, E, K, X = load(path)
    T = X.shape[0]
    p = X.mean(0)  # (L, E) selection frequency
    skew = np.mean([np.sort(p[l])[::-1][: E // 4].sum() / K for l in range(L)])
    reuse = (X[1:] & X[:-1]).sum() / max(1, X[:-1].sum())
    # cross-layer: online co-occurrence counts C[l, i, j] (i at layer l, j at l+1)
    C = np.zeros((L - 1, E, E))
    F = np.zeros((L, E))  # online popularity, the baseline predictor
    hit = hit_pop = n = 0
    for t in range(T):
        for l in range(L - 1):
            if t >= 32:  # after a short warm-up
                sc = C[l][X[t, l]].sum(0)
                pred = np.argsort(-sc, kind="stable")[:K]
                hit += X[t, l + 1, pred].sum()
                hit_pop += X[t, l + 1, np.argsort(-F[l + 1], kind="stable")[:K]].sum()
                n += K
            C[l] += np.outer(X[t, l], X[t, l + 1])
        F += X[t]
    cnt = np.sort(X.sum(0).ravel())[::-1]
    static = [cnt[: int(L * E * f)].sum() / cnt.sum() for f in (0.125, 0.25, 0.5)]
    name = path.rsplit("/", 1)[-1]
    print(f"{name}: {T} tokens, {L} layers x {E} experts, top-{K}")
    print(f"  skew    top-25% experts carry {skew:.3f} of selections (uniform 0.250)")
    print(f"  reuse   next-token reuse {reuse:.3f} (no locality {K / E:.3f})")
    print(f"  xlayer  layer l -> l+1 top-{K} precision {hit / max(1, n):.3f} "
          f"(popularity alone {hit_pop / max(1, n):.3f}, chance {K / E:.3f})")
    print("  static  best hindsight static set: " +
          " / ".join(f"{s:.3f}" for s in static) + " at 12.5 / 25 / 50%")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__.split("\n\n")[-2])
    for p in sys.argv[1:]:
        analyse(p)

#!/usr/bin/env python3
"""gen_traces.py - synthetic MoE routing traces (moestream trace v1, JSON lines)
with known structure, for evaluating cache policies beyond the one real trace.

Kinds (all deterministic for a given --seed):
  uniform   every (token, layer) picks top-k experts uniformly: no policy can beat
            capacity/n_keys; checks that nothing is "tuned" to skew.
  zipf      static per-layer Zipf(s) popularity (own random permutation per layer).
  drift     zipf whose popularity ranking drifts: small random swaps every token and
            a partial reshuffle at each document boundary (topic change).
  topics    documents of 200-800 tokens, each with one of M topics; a topic has its
            own per-layer preferred experts mixed with the global popularity.
  vocab     token-identity driven routing (like real routers): tokens come from a
            Zipf vocabulary with bursty reuse of recent tokens; each vocabulary
            entry has fixed per-layer expert preferences, so layers are correlated
            through the token and repeated tokens route alike.
  bursty    decode-like temporal locality: each expert of the previous token is
            kept with probability q, the rest drawn from Zipf popularity.
Top-k sampling without replacement uses the Gumbel-top-k trick on log-weights
(what a noisy softmax router does).

Derived real-ish traces from an existing trace (--derive FILE):
  --layers A-B     keep only MoE layers A..B
  --reverse        tokens in reverse order
  --seq-order P    sequences reordered by a permutation seed P
"""
import argparse
import json
import math
import random
import sys


def gumbel_topk(rng, logw, k):
    keyed = [(lw - math.log(-math.log(rng.random() or 1e-300)), i) for i, lw in enumerate(logw)]
    keyed.sort(reverse=True)
    return [i for _, i in keyed[:k]]


def zipf_logw(n, s, rng):
    perm = list(range(n))
    rng.shuffle(perm)
    logw = [0.0] * n
    for rank, e in enumerate(perm):
        logw[e] = -s * math.log(rank + 1)
    return logw, perm


def header(args, kind, extra=""):
    return {"format": "moestream-trace", "version": 1, "model": f"synthetic-{kind}",
            "n_layers": args.layers, "n_experts": args.experts, "top_k": args.top_k,
            "layers": list(range(args.layers)),
            "source": f"scripts/gen_traces.py --kind {kind} --seed {args.seed} {extra}".strip()}


def generate(args):
    rng = random.Random(args.seed)
    L, E, K, T = args.layers, args.experts, args.top_k, args.tokens
    kind = args.kind
    out = []
    zl = [zipf_logw(E, args.skew, rng) for _ in range(L)]
    logw = [z[0] for z in zl]
    ranks = [z[1] for z in zl]  # ranks[l][r] = expert at rank r
    seq, pos = 0, 0
    doc_len = rng.randint(200, 800)
    # topics
    M = 8
    topic_w = [[zipf_logw(E, args.skew * 1.5, rng)[0] for _ in range(L)] for _ in range(M)]
    topic = rng.randrange(M)
    # vocab
    V = 4 * E
    vocab_pref = None
    if kind == "vocab":
        vocab_pref = []
        for _ in range(V):
            prefs = []
            for l in range(L):
                lw = [logw[l][e] * 0.5 for e in range(E)]
                for e in rng.sample(range(E), K):
                    lw[e] += 3.0 + rng.random()
                prefs.append(lw)
            vocab_pref.append(prefs)
        vocab_logp = zipf_logw(V, 1.0, rng)[0]
    recent = []
    prev = None
    for t in range(T):
        if pos >= doc_len:
            seq, pos = seq + 1, 0
            doc_len = rng.randint(200, 800)
            topic = rng.randrange(M)
            if kind == "drift":
                for l in range(L):  # reshuffle part of the head
                    head = ranks[l][: E // 4]
                    rng.shuffle(head)
                    ranks[l][: E // 4] = head
        if kind == "drift":
            for l in range(L):
                i, j = rng.randrange(E), rng.randrange(E)
                ranks[l][i], ranks[l][j] = ranks[l][j], ranks[l][i]
                if t % 8 == 0 or pos == 0:
                    for r, e in enumerate(ranks[l]):
                        logw[l][e] = -args.skew * math.log(r + 1)
        experts = []
        if kind == "vocab":
            if recent and rng.random() < 0.35:
                tok = rng.choice(recent[-64:])
            else:
                tok = gumbel_topk(rng, vocab_logp, 1)[0]
            recent.append(tok)
        for l in range(L):
            if kind == "uniform":
                ex = rng.sample(range(E), K)
            elif kind in ("zipf", "drift"):
                ex = gumbel_topk(rng, logw[l], K)
            elif kind == "topics":
                mix = [math.log(0.4 * math.exp(logw[l][e]) + 0.6 * math.exp(topic_w[topic][l][e])) for e in range(E)]
                ex = gumbel_topk(rng, mix, K)
            elif kind == "vocab":
                ex = gumbel_topk(rng, vocab_pref[tok][l], K)
            elif kind == "bursty":
                keep = [e for e in (prev[l] if prev else []) if rng.random() < args.keep]
                lw = list(logw[l])
                for e in keep:
                    lw[e] = -1e9
                ex = keep + gumbel_topk(rng, lw, K - len(keep))
            else:
                sys.exit(f"unknown kind {kind}")
            experts.append(ex)
        prev = experts
        out.append({"seq": seq, "pos": pos, "experts": experts})
        pos += 1
    return header(args, kind, f"--skew {args.skew}"), out


def derive(args):
    with open(args.derive) as f:
        hdr = json.loads(f.readline())
        toks = [json.loads(line) for line in f if line.strip()]
    if args.layer_range:
        a, b = (int(x) for x in args.layer_range.split("-"))
        for t in toks:
            t["experts"] = t["experts"][a: b + 1]
        hdr["n_layers"] = b - a + 1
        hdr["layers"] = hdr.get("layers", list(range(len(toks[0]["experts"]))))[a: b + 1] if "layers" in hdr else list(range(b - a + 1))
    if args.seq_order is not None:
        seqs = sorted({t["seq"] for t in toks})
        random.Random(args.seq_order).shuffle(seqs)
        order = {s: i for i, s in enumerate(seqs)}
        toks.sort(key=lambda t: (order[t["seq"]], t["pos"]))
    if args.reverse:
        toks.reverse()
    hdr["source"] = f"derived from {hdr.get('model', '?')} trace by scripts/gen_traces.py"
    return hdr, [{"seq": t["seq"], "pos": t["pos"], "experts": t["experts"]} for t in toks]


def write_binary(path, hdr, toks):
    """The binary variant (cache/trace.h): MSTRACE1, u32 LE header length, the
    header JSON, then per token: tag 1, u32 seq, u32 pos, ids (u8 if fewer than
    255 experts, else u16 LE). About 4x smaller than JSON lines."""
    import struct
    h = json.dumps(hdr).encode()
    wide = hdr["n_experts"] >= 255
    with open(path, "wb") as f:
        f.write(b"MSTRACE1" + struct.pack("<I", len(h)) + h)
        for t in toks:
            ids = [e for layer in t["experts"] for e in layer]
            f.write(struct.pack("<BII", 1, t["seq"], t["pos"]))
            f.write(struct.pack("<%dH" % len(ids), *ids) if wide else bytes(ids))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="zipf")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--skew", type=float, default=0.8, help="Zipf exponent of popularity (default 0.8)")
    ap.add_argument("--keep", type=float, default=0.3, help="bursty: P(keep an expert of the previous token)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--derive", help="derive from an existing trace instead of generating")
    ap.add_argument("--layers-range", dest="layer_range")
    ap.add_argument("--reverse", action="store_true")
    ap.add_argument("--seq-order", type=int)
    ap.add_argument("-o", "--out", required=True, help="output; a .bin name writes the binary variant")
    args = ap.parse_args()
    hdr, toks = derive(args) if args.derive else generate(args)
    if args.out.endswith(".bin"):
        write_binary(args.out, hdr, toks)
        return
    with open(args.out, "w") as f:
        f.write(json.dumps(hdr) + "\n")
        for t in toks:
            f.write(json.dumps(t, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()

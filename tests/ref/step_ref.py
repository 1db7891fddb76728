#!/usr/bin/python3
"""step_ref.py - numpy (float64) reference forward pass for Step-3.5/3.7-Flash checkpoints
(mlx-lm step3p5, mlx-vlm's step3p7 wrapper, original HF layout), written from
/work/shared/spec/other-archs.md section B with its errata and the upstream MLX model code
it cites, to cross-check the C runtime's logits (src/arch/step3p5.c).

Design: the safetensors reader and the MLX affine dequantizer are ds3_ref.py's (the same
spec, mlx-quant.md); everything Step-specific is here: config defaults of the loader that
wrote the checkpoint (mlx-lm for step3p5, mlx-vlm for step3p7, errata 5), per-layer lists cut
to num_hidden_layers, tensor names of the three layouts, +1 on the norms of an original HF
checkpoint (errata 10), and a whole-sequence forward pass: attention with explicit causal
and sliding-window masks over all positions at once (no KV cache, no ring), so it shares no
algorithm with the runtime's cache and chunking.

Output, --compare, --tol, --stats and the exit codes are those of ds3_ref.py.
--mutate M applies one deliberate deviation (MUTATIONS), for sensitivity checks only.

--mtp: also the draft logits of the first MTP layer (model layer N = num_hidden_layers),
teacher forced, with the meaning ds3-mtp-draft's README gives them for DeepSeek-V3:
mtp_logits[t] (t = 0 .. T-2) = the draft for token t+2 from the main model's hidden state
at t and the true token t+1. Step's MTP as vLLM's step3p5_mtp.py / SGLang's step3p5_mtp.py
define it (docs/ARCHITECTURE.md "MTP"): h_t is the residual stream after the last layer
*before* the final norm; u_t = eh_proj([enorm(embed(tokens[t+1])) | hnorm(h_t)]); y = layer
N's decoder block (config entry N of every per-layer list: type, heads, RoPE, clamps; dense
unless moe_layers_enum lists N) over u_0.. with causal (and sliding) masks, RoPE position t;
logits = head(shared_head.norm(y)) with the layer's own head (transformer.shared_head.output,
or shared_head.head; the main lm_head only if it has none). Zero-centered norms get +1 in a
vanilla HF checkpoint like every other norm. --compare then also checks each file's
"mtp_positions" (`moestream logits --all-positions --mtp`) against them.

Usage: step_ref.py MODEL_DIR --tokens 1,2,3 [--out F] [--stats] [--compare F [--tol 1e-3]]
                   [--mutate M] [--mtp]
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_logits  # noqa: E402
from ds3_ref import Model as Ds3Model  # noqa: E402
from ds3_ref import RefError, Weights, emit, parse_tokens, rmsnorm, silu  # noqa: E402

MUTATIONS = {
    "no-window": "sliding layers see every earlier position",
    "window-plus-1": "sliding layers see window + 1 positions",
    "no-clamp": "swiglu limits ignored",
    "clamp-before-silu": "silu(min(gate, L)) instead of min(silu(gate), L)",
    "no-llama3": "rope_scaling ignored",
    "full-rotary": "partial_rotary_factors ignored (every dim rotated)",
    "rope-interleaved": "RoPE pairs (2i, 2i+1) instead of (i, i + rd/2)",
    "no-gate": "head-wise attention gate ignored",
    "no-norm-plus-1": "zero-centered HF norms used as stored",
    "bias-in-weights": "expert weights from score + router_bias",
    "mtp-post-norm": "MTP: main hidden state taken after the final norm",
    "mtp-concat-swapped": "MTP: [hnorm(h) | enorm(e)] into eh_proj",
    "mtp-main-head": "MTP: the main lm_head instead of the layer's own head",
    "mtp-full-attention": "MTP: the block attends to every earlier slot (its sliding window ignored)",
}


class StepConfig:
    """The text model's config with the defaults of the loader that wrote it."""

    def __init__(self, model_dir):
        path = os.path.join(model_dir, "config.json")
        with open(path) as f:
            doc = json.load(f)
        self.doc = doc
        tc = doc.get("text_config")
        self.vlm = isinstance(tc, dict) and doc.get("model_type") == "step3p7"
        c = tc if isinstance(tc, dict) else doc
        if c.get("model_type", "step3p5") != "step3p5":
            raise RefError("%s: model_type %s is not step3p5" % (path, c.get("model_type")))

        def req(k, vlm_default):
            if c.get(k) is None:
                if self.vlm:
                    return vlm_default
                raise RefError("%s: field %s missing" % (path, k))
            return c[k]

        self.V = c["vocab_size"]
        self.D = c["hidden_size"]
        self.N = c["num_hidden_layers"]
        self.n_mtp = int(c.get("num_nextn_predict_layers") or 0)
        NA = self.N + self.n_mtp                              # main layers + MTP layers (list entries N + k)
        self.hd = req("head_dim", 128)
        self.eps = float(c.get("rms_norm_eps", 1e-5))
        self.tie = bool(c.get("tie_word_embeddings", False))
        heads, kv = req("num_attention_heads", 64), req("num_attention_groups", 8)
        lt = (c.get("layer_types") or [])[:NA]
        if lt and len(lt) < NA:                               # the MTP entries missing: main layers only
            NA = len(lt)
        self.NA = NA
        self.sliding = [t == "sliding_attention" for t in lt] if lt else [l % 2 == 0 for l in range(NA)]
        self.types = lt if lt else ["full_attention"] * NA
        other = c.get("attention_other_setting") or {}
        self.heads = [other["num_attention_heads"] if s and other else heads for s in self.sliding]
        self.kv = [other["num_attention_groups"] if s and other else kv for s in self.sliding]
        if self.vlm:
            self.window = c.get("sliding_window")
        else:
            self.window = c["sliding_window"] if "sliding_window" in c else 512
        th = c.get("rope_theta", 10000.0)
        self.theta = [float(th[l]) for l in range(min(NA, len(th)))] if isinstance(th, list) else [float(th)] * NA
        prf = c.get("partial_rotary_factors") or []
        self.rope_dims = [int(self.hd * (prf[l] if l < len(prf) else 1.0)) for l in range(NA)]
        yot = c.get("yarn_only_types") or []
        rs = c.get("rope_scaling")
        self.scaling = [None if (yot and self.types[l] not in yot) else rs for l in range(NA)]
        self.gate = bool(c.get("use_head_wise_attn_gate", not self.vlm))

        def limits(key):
            v = c.get(key) or []
            return [float(v[l] or 0) if l < len(v) else 0.0 for l in range(NA)]

        self.lim_routed, self.lim_shared = limits("swiglu_limits"), limits("swiglu_limits_shared")
        enum = c.get("moe_layers_enum")
        if enum is None:
            moe = set(range(3, min(45, self.N))) if self.vlm else set(range(1, self.N))
        elif isinstance(enum, str):
            moe = {int(i) for i in enum.split(",") if i.strip()} if (enum.strip() or self.vlm) else set(range(1, self.N))
        else:
            moe = set(enum)
        self.moe = [l in moe for l in range(NA)]
        self.E = c.get("moe_num_experts", 288)
        self.K = c.get("moe_top_k", 8)
        self.M = c.get("moe_intermediate_size", 1280)
        self.S = c.get("share_expert_dim", 1280)
        if self.vlm and c.get("share_expert_dims") is not None:
            self.S = c["share_expert_dims"]
        self.I = c.get("intermediate_size", 11264)
        self.rsf = float(c.get("moe_router_scaling_factor", 1.0 if self.vlm else 3.0))
        self.norm_w = bool(c.get("norm_expert_weight", True))


def inv_freq(dims, base, scaling, mut):
    """mlx-lm initialize_rope: nn.RoPE (default / linear) or Llama3RoPE; 1 / period."""
    period = base ** (np.arange(0, dims, 2, dtype=np.float64) / dims)
    if scaling is None or "no-llama3" in mut:
        return 1.0 / period
    typ = scaling.get("type") or scaling.get("rope_type", "default")
    if typ == "linear":
        return 1.0 / period / scaling["factor"]
    if typ != "llama3":
        if typ == "default":
            return 1.0 / period
        raise RefError("rope type %s is not supported by this reference" % typ)
    f = scaling["factor"]
    lo, hi = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
    L0 = scaling.get("original_max_position_embeddings", 8192)
    wl = 2 * np.pi * period
    period = np.where(wl > L0 / lo, period * f, period)
    medium = (wl > L0 / hi) & (wl < L0 / lo)
    smooth = (L0 / wl - lo) / (hi - lo)
    period = np.where(medium, period / ((1 - smooth) / f + smooth), period)
    return 1.0 / period


def rope(x, pos, inv, rd, interleaved):
    """Rotate the first rd dims of x [T, heads, hd] by pos * inv: pairs (i, i + rd/2)."""
    ang = pos[:, None].astype(np.float64) * inv[None, :]                # [T, rd/2]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    out = x.copy()
    if interleaved:
        a, b = x[..., 0:rd:2], x[..., 1:rd:2]
        out[..., 0:rd:2], out[..., 1:rd:2] = a * c - b * s, a * s + b * c
    else:
        h = rd // 2
        a, b = x[..., :h], x[..., h:rd]
        out[..., :h], out[..., h:rd] = a * c - b * s, a * s + b * c
    return out


class Stats:
    def __init__(self):
        self.route_margin, self.route_where, self.clamped = math.inf, None, 0


class Model:
    def __init__(self, model_dir, mutations=()):
        self.mut = frozenset(mutations)                       # names checked by argparse (MUTATIONS)
        self.cfg = StepConfig(model_dir)
        self.w = Weights(model_dir, self.cfg.doc)
        st = self.w.st
        self.P = "language_model." if st.has("language_model.model.embed_tokens.weight") else ""
        pairs = [(".moe.gate_proj.", ".mlp.switch_mlp.gate_proj."), (".moe.up_proj.", ".mlp.switch_mlp.up_proj."),
                 (".moe.down_proj.", ".mlp.switch_mlp.down_proj."), (".moe.gate.", ".mlp.gate.gate."),
                 (".moe.router_bias", ".mlp.gate.router_bias"), (".share_expert.", ".mlp.share_expert.")]
        self.vanilla = any(a in k and b not in k for k in st.entries for a, b in pairs)

    def name(self, n):
        return self.P + n

    def linear(self, x, path, n_in, n_out):
        return Ds3Model.linear(self, x, self.name(path), n_in, n_out)  # dequantizes in blocks of rows

    def norm(self, name, n):
        v = self.w.vector(self.name(name), n)
        return v + 1.0 if self.vanilla and "no-norm-plus-1" not in self.mut else v

    def alt(self, mlx, hf, suffix=".weight"):
        return mlx if self.w.st.has(self.name(mlx + suffix)) or not self.w.st.has(self.name(hf + suffix)) else hf

    def act(self, g, u, limit, st):
        if limit > 0 and "no-clamp" not in self.mut:
            st.clamped += int((silu(g) > limit).sum() + (np.abs(u) > limit).sum())
            if "clamp-before-silu" in self.mut:
                return silu(np.minimum(g, limit)) * np.clip(u, -limit, limit)
            return np.minimum(silu(g), limit) * np.clip(u, -limit, limit)
        return silu(g) * u

    def mlp(self, x, p, width, limit, st):
        D = self.cfg.D
        h = self.act(self.linear(x, p + "gate_proj", D, width), self.linear(x, p + "up_proj", D, width), limit, st)
        return self.linear(h, p + "down_proj", width, D)

    def attention(self, l, x, pos, lc=None):
        """Layer l's attention (weights of layer l, list entries of layer lc, default l)."""
        c = self.cfg
        p = "model.layers.%d.self_attn." % l
        lc = l if lc is None else lc
        T, H, KV, hd, rd = x.shape[0], c.heads[lc], c.kv[lc], c.hd, c.rope_dims[lc]
        q = self.linear(x, p + "q_proj", c.D, H * hd).reshape(T, H, hd)
        k = self.linear(x, p + "k_proj", c.D, KV * hd).reshape(T, KV, hd)
        v = self.linear(x, p + "v_proj", c.D, KV * hd).reshape(T, KV, hd)
        q = rmsnorm(q, self.norm(p + "q_norm.weight", hd), c.eps)
        k = rmsnorm(k, self.norm(p + "k_norm.weight", hd), c.eps)
        if "full-rotary" in self.mut:
            rd = hd
        inv = inv_freq(rd, c.theta[lc], c.scaling[lc], self.mut)
        q = rope(q, pos, inv, rd, "rope-interleaved" in self.mut)
        k = rope(k, pos, inv, rd, "rope-interleaved" in self.mut)
        kh = np.repeat(k, H // KV, axis=1)                                  # query head h -> KV head h // (H/KV)
        vh = np.repeat(v, H // KV, axis=1)
        score = np.einsum("thd,shd->hts", q, kh) / math.sqrt(hd)
        i, j = np.arange(T)[:, None], np.arange(T)[None, :]
        visible = j <= i
        if c.sliding[lc] and c.window and "no-window" not in self.mut:
            w = c.window + (1 if "window-plus-1" in self.mut else 0)
            visible &= j > i - w
        score = np.where(visible[None], score, -np.inf)
        score -= score.max(axis=-1, keepdims=True)
        pr = np.exp(score)
        pr /= pr.sum(axis=-1, keepdims=True)
        o = np.einsum("hts,shd->thd", pr, vh)                               # [T, H, hd]
        if c.gate and "no-gate" not in self.mut:
            o = o * (1.0 / (1.0 + np.exp(-self.linear(x, p + "g_proj", c.D, H))))[..., None]
        return self.linear(o.reshape(T, H * hd), p + "o_proj", H * hd, c.D)

    def moe(self, l, x, st):
        c, w = self.cfg, self.w
        pre = "model.layers.%d." % l
        router = self.alt(pre + "mlp.gate.gate", pre + "moe.gate")
        bias_name = self.alt(pre + "mlp.gate.router_bias", pre + "moe.router_bias", "")
        s = 1.0 / (1.0 + np.exp(-self.linear(x, router, c.D, c.E)))       # [T, E]
        bias = w.vector(self.name(bias_name), c.E) if w.st.has(self.name(bias_name)) else np.zeros(c.E)
        sel = s + bias
        idx = np.argsort(-sel, axis=1, kind="stable")[:, :c.K]
        for t in range(x.shape[0]):
            srt = np.sort(sel[t])[::-1]
            if c.K < c.E and srt[c.K - 1] - srt[c.K] < st.route_margin:
                st.route_margin, st.route_where = srt[c.K - 1] - srt[c.K], (l, t)
        wts = np.take_along_axis(sel if "bias-in-weights" in self.mut else s, idx, axis=1)
        if c.norm_w:
            wts = wts / (wts.sum(axis=1, keepdims=True) + 1e-20)
        wts = wts * c.rsf
        ex = self.alt(pre + "mlp.switch_mlp.gate_proj", pre + "moe.gate_proj")[: -len(".gate_proj")]
        y = np.zeros_like(x)
        for e in np.unique(idx):
            tok, slot = np.nonzero(idx == e)
            xe = x[tok]
            Wg = w.get(self.name(ex + ".gate_proj"), c.D, (c.E, c.M, c.D), (int(e),))
            Wu = w.get(self.name(ex + ".up_proj"), c.D, (c.E, c.M, c.D), (int(e),))
            Wd = w.get(self.name(ex + ".down_proj"), c.M, (c.E, c.D, c.M), (int(e),))
            he = self.act(xe @ Wg.T, xe @ Wu.T, c.lim_routed[l], st)
            y[tok] += wts[tok, slot][:, None] * (he @ Wd.T)
        sh = self.alt(pre + "mlp.share_expert.gate_proj", pre + "share_expert.gate_proj")[: -len("gate_proj")]
        return y + self.mlp(x, sh, c.S, c.lim_shared[l], st)

    def block(self, l, h, pos, st, lc=None):
        """Decoder layer l over the whole sequence h [T, D] (list entries of layer lc, default l)."""
        c = self.cfg
        lc = l if lc is None else lc
        p = "model.layers.%d." % l
        h = h + self.attention(l, rmsnorm(h, self.norm(p + "input_layernorm.weight", c.D), c.eps), pos, lc)
        x = rmsnorm(h, self.norm(p + "post_attention_layernorm.weight", c.D), c.eps)
        return h + (self.moe(l, x, st) if c.moe[lc] else self.mlp(x, p + "mlp.", c.I, c.lim_shared[lc], st))

    def embed(self, tokens):
        c, w = self.cfg, self.w
        tok = np.asarray(tokens, dtype=np.int64)
        if tok.size == 0 or tok.min() < 0 or tok.max() >= c.V:
            raise RefError("token ids must be in [0, %d)" % c.V)
        uniq, inv = np.unique(tok, return_inverse=True)
        return w.get(self.name("model.embed_tokens"), c.D, (c.V, c.D), (uniq,))[inv]

    def head(self, h):
        c, w = self.cfg, self.w
        if w.has_module(self.name("lm_head")):
            return self.linear(h, "lm_head", c.D, c.V)
        if c.tie:
            return self.linear(h, "model.embed_tokens", c.D, c.V)
        raise RefError("%s: tensor %slm_head.weight missing" % (w.dir, self.P))

    def forward(self, tokens):
        """-> logits [T, V], stats; self.h_pre = the residual stream after the last layer (before the final norm)."""
        c = self.cfg
        st = Stats()
        h = self.embed(tokens)
        pos = np.arange(len(tokens))
        for l in range(c.N):
            h = self.block(l, h, pos, st)
        self.h_pre = h
        self.h_post = rmsnorm(h, self.norm("model.norm.weight", c.D), c.eps)
        return self.head(self.h_post), st

    def forward_mtp(self, tokens, st):
        """The first MTP layer's teacher-forced draft logits [T-1, V] (see the top of the file);
        forward() first."""
        c, w = self.cfg, self.w
        N, D = c.N, c.D
        if c.n_mtp < 1 or c.NA <= N:
            raise RefError("--mtp: num_nextn_predict_layers is %d and the per-layer lists have %d entries" %
                           (c.n_mtp, c.NA))
        T = len(tokens)
        if T < 2:
            raise RefError("--mtp needs at least 2 tokens")
        p = "model.layers.%d." % N
        hid = (self.h_post if "mtp-post-norm" in self.mut else self.h_pre)[: T - 1]
        e = rmsnorm(self.embed(tokens[1:]), self.norm(p + "enorm.weight", D), c.eps)
        hn = rmsnorm(hid, self.norm(p + "hnorm.weight", D), c.eps)
        cat = np.concatenate([hn, e] if "mtp-concat-swapped" in self.mut else [e, hn], axis=1)
        u = self.linear(cat, p + "eh_proj", 2 * D, D)
        if "mtp-full-attention" in self.mut:
            c.sliding[N] = False
        y = self.block(N, u, np.arange(T - 1), st)
        hn_name = self.alt(p + "transformer.shared_head.norm", p + "shared_head.norm")
        y = rmsnorm(y, self.norm(hn_name + ".weight", D), c.eps)
        head = self.alt(p + "transformer.shared_head.output", p + "shared_head.head")
        if "mtp-main-head" in self.mut or not w.has_module(self.name(head)):
            return self.head(y)
        return self.linear(y, head, D, c.V)


def main(argv):
    ap = argparse.ArgumentParser(description="numpy float64 Step-3.5/3.7-Flash reference logits (all positions)")
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--out")
    ap.add_argument("--stats", action="store_true")
    ap.add_argument("--compare", action="append", default=[])
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--mutate", action="append", default=[], choices=sorted(MUTATIONS))
    ap.add_argument("--mtp", action="store_true", help="also the first MTP layer's draft logits (see the top)")
    a = ap.parse_args(argv)
    tokens = parse_tokens(ap, a.tokens)
    mtp = None
    try:
        m = Model(a.model, a.mutate)
        logits, st = m.forward(tokens)
        if a.mtp:
            mtp = m.forward_mtp(tokens, st)
    except (RefError, OSError, ValueError, KeyError) as e:
        print("step_ref: %s" % e, file=sys.stderr)
        return 1
    gap = emit(a, logits)
    if a.stats:
        print(json.dumps({"tokens": len(tokens), "min_route_margin": None if math.isinf(st.route_margin) else st.route_margin,
                          "route_margin_at": st.route_where, "clamped": st.clamped, "min_top2_gap": gap,
                          "vanilla_hf": m.vanilla, "notes": m.w.notes}), file=sys.stderr)
    note = "" if math.isinf(st.route_margin) else " route_margin=%.3g" % st.route_margin
    rc = compare_logits.check_files(logits, a.compare, a.tol, "step_ref", note)
    if mtp is not None:
        if a.stats:
            srt = np.sort(mtp, axis=1)
            print(json.dumps({"mtp_min_top2_gap": float((srt[:, -1] - srt[:, -2]).min())}), file=sys.stderr)
        if not a.compare and not a.out:
            sys.stdout.write('{"mtp_logits":%s}\n' % json.dumps(mtp.tolist()))
        rc |= compare_logits.check_files(mtp, a.compare, a.tol, "step_ref", note, key="mtp_positions")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

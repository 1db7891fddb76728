#!/usr/bin/python3
"""ds3_ref.py - independent numpy (float64) reference forward pass for DeepSeek-V3-family
checkpoints (model_type deepseek_v3), written only from /work/shared/spec/deepseek-v3.md
and /work/shared/spec/mlx-quant.md, to cross-check the C runtime's logits.

Design: a self-contained loader (safetensors single file or sharded with an index; HF
per-expert, HF-v5 fused or MLX stacked expert layout; kv_b_proj or the MLX embed_q /
unembed_out split; MLX affine dequantization for any bit width 2..8 and group size,
decoded as an LSB-first bit stream with np.unpackbits; FP8 e4m3 block scales) turns every
weight into float64, and a straightforward whole-sequence causal forward pass in the
NAIVE MLA form (k_nope / v expanded per head, standard attention) computes the logits of
every position. Bits and group size of a quantized tensor come from its shapes (the
logical input width is known from config.json) and are cross-checked against the
"quantization" block of config.json. Layers >= num_hidden_layers (MTP) are never read.

Output (stdout, or --out FILE) has the format of `moestream logits --all-positions`:
    {"n_vocab":V,"positions":[{"pos":p,"logits":[...]}, ...]}
--stats prints one JSON line to stderr with sensitivity figures: the smallest routing
margin (k-th minus (k+1)-th biased router score among the candidates, and the
topk_group-th minus (topk_group+1)-th group score) and the smallest top-1/top-2 logit gap.
--compare FILE compares against another logits file (see compare_logits.py) and exits
0 when within tolerance, 1 otherwise.

--selftest checks the bit unpacking against the worked vectors of mlx-quant.md section 5.
--mutate M applies one deliberate deviation from the spec (MUTATIONS below), only to
measure which bugs the cross-check cases can detect.

Usage: ds3_ref.py MODEL_DIR --tokens 1,2,3 [--out F] [--out-golden F] [--stats] [--compare F [--tol 1e-3]]
                  [--mutate M]
       ds3_ref.py --selftest
Exit codes: 0 ok, 1 runtime error / comparison failed, 2 usage error.
"""
import argparse
import json
import math
import mmap
import os
import struct
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_logits  # noqa: E402  (same directory)


class RefError(Exception):
    """A one-line error naming the file / tensor / field at fault."""


# --------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------

_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"), "U32": np.dtype("<u4"), "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "BOOL": np.dtype("u1"),
    "F8_E4M3": np.dtype("u1"),
}


def _fp8_e4m3_table():
    """float64 value of each FP8 E4M3 byte (sign 1, exponent 4 with bias 7, mantissa 3;
    exponent 0 is subnormal; 0x7f / 0xff are NaN, there is no infinity)."""
    t = np.zeros(256)
    for b in range(256):
        s = -1.0 if b & 0x80 else 1.0
        e = (b >> 3) & 0xF
        m = b & 7
        if e == 15 and m == 7:
            t[b] = float("nan")
        elif e == 0:
            t[b] = s * (m / 8.0) * 2.0 ** -6
        else:
            t[b] = s * (1.0 + m / 8.0) * 2.0 ** (e - 7)
    return t


class SafeTensors:
    """All tensors of a model directory: name -> (file, dtype string, shape, byte range).
    Reads model.safetensors.index.json when present (the weight map decides which shard
    holds a tensor), else every *.safetensors file in the directory."""

    def __init__(self, model_dir):
        self.dir = model_dir
        self.entries = {}
        self._maps = {}
        idx = os.path.join(model_dir, "model.safetensors.index.json")
        if os.path.exists(idx):
            with open(idx) as f:
                wm = json.load(f).get("weight_map")
            if not isinstance(wm, dict):
                raise RefError("%s: no weight_map" % idx)
            files = sorted(set(wm.values()))
            for fn in files:
                self._scan(fn, wanted={k for k, v in wm.items() if v == fn})
            missing = [k for k in wm if k not in self.entries]
            if missing:
                raise RefError("%s: tensor %s is not in %s" % (idx, missing[0], wm[missing[0]]))
        else:
            files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
            if not files:
                raise RefError("%s: no .safetensors file" % model_dir)
            for fn in files:
                self._scan(fn, wanted=None)

    def _scan(self, fn, wanted):
        path = os.path.join(self.dir, fn)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise RefError("%s: truncated header" % path)
            (n,) = struct.unpack("<Q", head)
            size = os.fstat(f.fileno()).st_size
            if n > size - 8:
                raise RefError("%s: header length %d beyond the file" % (path, n))
            hdr = json.loads(f.read(n))
            self._maps[fn] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        base = 8 + n
        for name, e in hdr.items():
            if name == "__metadata__":
                continue
            if wanted is not None and name not in wanted:
                continue
            dt = e["dtype"]
            if dt not in _DTYPES:
                raise RefError("%s: tensor %s: unsupported dtype %s" % (path, name, dt))
            a, b = e["data_offsets"]
            nbytes = int(np.prod(e["shape"], dtype=np.int64)) * _DTYPES[dt].itemsize
            if b - a != nbytes or base + b > size:
                raise RefError("%s: tensor %s: bad data_offsets" % (path, name))
            if name in self.entries:
                raise RefError("%s: tensor %s also in %s" % (path, name, self.entries[name][0]))
            self.entries[name] = (fn, dt, tuple(e["shape"]), base + a, base + b)

    def has(self, name):
        return name in self.entries

    def dtype(self, name):
        return self.entries[name][1]

    def shape(self, name):
        return self.entries[name][2]

    def raw(self, name):
        """The stored array (BF16 as uint16 bits, F8 as bytes) in its stored dtype."""
        fn, dt, shape, a, b = self.entries[name]
        return np.frombuffer(self._maps[fn], dtype=_DTYPES[dt], count=(b - a) // _DTYPES[dt].itemsize,
                             offset=a).reshape(shape)

    def floats(self, name):
        """A float tensor as float64 (BF16 widened exactly)."""
        dt = self.dtype(name)
        r = self.raw(name)
        if dt == "BF16":
            return (r.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        if dt in ("F32", "F16", "F64"):
            return r.astype(np.float64)
        if dt == "F8_E4M3":
            return _fp8_e4m3_table()[r]
        raise RefError("%s: tensor %s: dtype %s is not a float type" % (self.dir, name, dt))


# --------------------------------------------------------------------------------------
# weights: float, FP8 block-scaled, MLX affine quantized
# --------------------------------------------------------------------------------------

def unpack_bits(words_u32, bits, n_in):
    """MLX packed rows -> unsigned integers. words: [..., n_in*bits/32] uint32; the row is
    one little-endian LSB-first bit stream, element j at stream bits [j*bits, (j+1)*bits)."""
    lead = words_u32.shape[:-1]
    rows = np.ascontiguousarray(words_u32).view(np.uint8).reshape(-1, words_u32.shape[-1] * 4)
    out = np.empty((rows.shape[0], n_in), dtype=np.uint8)
    weights = (np.uint8(1) << np.arange(bits, dtype=np.uint8))
    step = max(1, (1 << 22) // (n_in * bits))                         # bound the bit array to ~4 MB
    for r in range(0, rows.shape[0], step):
        bitarr = np.unpackbits(rows[r:r + step], axis=-1, bitorder="little")   # [rows, n_in*bits]
        out[r:r + step] = (bitarr.reshape(-1, n_in, bits) * weights).sum(axis=-1, dtype=np.uint8)
    return out.reshape(lead + (n_in,))


# mlx-quant.md 5.1 / 5.2: packed words of q[i] = i mod 2^bits and q[i] = (7i+3) mod 2^bits
_PACK_VECTORS = {
    (2, 0): [0xE4E4E4E4, 0xE4E4E4E4],
    (3, 0): [0x88FAC688, 0xC688FAC6, 0xFAC688FA],
    (4, 0): [0x76543210, 0xFEDCBA98, 0x76543210, 0xFEDCBA98],
    (5, 0): [0x8A418820, 0xC5A92839, 0xCA307B9A, 0x38BDAB49, 0xFFBBCDEB],
    (6, 0): [0x440C2040, 0xA2481C61, 0x3CE34C2C, 0x544D2450, 0xA6585D65, 0x7DE75C6D],
    (8, 0): [0x03020100, 0x07060504, 0x0B0A0908, 0x0F0E0D0C, 0x13121110, 0x17161514, 0x1B1A1918, 0x1F1E1D1C],
    (3, 1): [0x53977053, 0x70539770, 0x97705397],
    (5, 1): [0x4DFC4543, 0x78245BA3, 0x0753617D, 0x4B276CF4, 0xE55C7066],
    (6, 1): [0x9F611283, 0x90BBD2D9, 0xB2579740, 0x8F201EB3, 0x9CAB91D5, 0x71538703],
}


def selftest():
    """Unpacking against the spec's worked vectors, and 5.3 group B (negative scale)."""
    for (bits, pat), words in _PACK_VECTORS.items():
        i = np.arange(32)
        want = (i if pat == 0 else 7 * i + 3) % (1 << bits)
        got = unpack_bits(np.array([words], dtype=np.uint32), bits, 32)[0]
        if not np.array_equal(got, want):
            raise RefError("selftest: %d-bit pattern %d unpacks to %s" % (bits, pat, got.tolist()))
    q = unpack_bits(np.array([[0xFA975310, 0x99999999, 0x99999999, 0x99999999]], dtype=np.uint32), 4, 32)[0]
    w = -0.25 * q + 2.25
    want = np.array([2.25, 2.0, 1.5, 1.0, 0.5, 0.0, -0.25, -1.5] + [0.0] * 24)
    if not np.array_equal(w, want):
        raise RefError("selftest: negative-scale group dequantizes to %s" % w.tolist())


class Weights:
    """Tensor access by module path, always returning float64 [..., out, in]."""

    def __init__(self, model_dir, cfg):
        self.st = SafeTensors(model_dir)
        self.dir = model_dir
        q = cfg.get("quantization")
        if not isinstance(q, dict):
            qc = cfg.get("quantization_config")
            q = qc if isinstance(qc, dict) and "quant_method" not in qc and ("bits" in qc or "group_size" in qc) else None
        self.qcfg = q or {}
        self.notes = []  # config/shape disagreements (trust the shapes)

    def has_module(self, path):
        return self.st.has(path + ".weight") or self.st.has(path)

    def _quant_params(self, path):
        e = self.qcfg.get(path)
        if e is None and path.startswith("language_model."):
            e = self.qcfg.get(path[len("language_model."):])
        if isinstance(e, dict):
            return e.get("bits", self.qcfg.get("bits", 4)), e.get("group_size", self.qcfg.get("group_size", 64)), \
                e.get("mode", self.qcfg.get("mode", "affine"))
        return self.qcfg.get("bits", 4), self.qcfg.get("group_size", 64), self.qcfg.get("mode", "affine")

    def get(self, path, n_in, shape=None, sel=None):
        """Module `path` (no .weight suffix) whose logical input width is n_in; returns
        float64 [..., out, n_in]; checks the logical shape of the whole tensor when given.
        sel (a tuple indexing the leading axes, e.g. (e,) for one stacked expert or
        (slice(r0, r1),) for a block of rows) dequantizes only that part."""
        wname = path + ".weight"
        if not self.st.has(wname) and self.st.has(path) and not self.st.has(path + ".scales"):
            wname = path                   # a bare parameter (transformers-v5 fused experts)
        if not self.st.has(wname):
            raise RefError("%s: tensor %s missing" % (self.dir, wname))
        quant = self.st.has(path + ".scales")
        full = self.st.shape(wname)[:-1] + (n_in,) if quant else self.st.shape(wname)
        if full[-1] != n_in:
            raise RefError("%s: tensor %s: input width %d, config says %d" % (self.dir, wname, full[-1], n_in))
        if shape is not None and tuple(full) != tuple(shape):
            raise RefError("%s: tensor %s: logical shape %s, expected %s" % (self.dir, wname, list(full), list(shape)))
        if quant:
            return self._dequant_affine(path, n_in, sel)
        sinv = path + ".weight_scale_inv"
        if self.st.has(sinv):
            w = self._fp8_blocks(self.st.floats(wname), self.st.floats(sinv), wname)
            return w if sel is None else w[sel]
        if sel is None:
            return self.st.floats(wname)
        r = self.st.raw(wname)[sel]
        if self.st.dtype(wname) == "BF16":
            return (r.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        if self.st.dtype(wname) == "F8_E4M3":
            return _fp8_e4m3_table()[r]
        return r.astype(np.float64)

    def _fp8_blocks(self, w, sinv, name):
        if w.ndim != 2:
            raise RefError("%s: tensor %s: block scales on a %d-d tensor" % (self.dir, name, w.ndim))
        o, i = w.shape
        bo, bi = (o + 127) // 128, (i + 127) // 128
        if sinv.shape != (bo, bi):
            raise RefError("%s: tensor %s: weight_scale_inv shape %s, expected %s" % (self.dir, name, list(sinv.shape), [bo, bi]))
        return w * np.repeat(np.repeat(sinv, 128, axis=0), 128, axis=1)[:o, :i]

    def _dequant_affine(self, path, n_in, sel=None):
        wname, sname, bname = path + ".weight", path + ".scales", path + ".biases"
        if self.st.dtype(wname) != "U32":
            raise RefError("%s: tensor %s: quantized weight must be U32, is %s" % (self.dir, wname, self.st.dtype(wname)))
        if not self.st.has(bname):
            raise RefError("%s: tensor %s missing (only affine quantization is supported)" % (self.dir, bname))
        wq = self.st.raw(wname)
        sc = self.st.floats(sname)
        bi = self.st.floats(bname)
        packed, ngroups = wq.shape[-1], sc.shape[-1]
        if sc.shape != wq.shape[:-1] + (ngroups,) or bi.shape != sc.shape:
            raise RefError("%s: tensor %s: scales/biases shape %s/%s do not match weight %s"
                           % (self.dir, wname, list(sc.shape), list(bi.shape), list(wq.shape)))
        if (packed * 32) % n_in or n_in % ngroups:
            raise RefError("%s: tensor %s: %d packed words / %d groups do not fit input width %d"
                           % (self.dir, wname, packed, ngroups, n_in))
        bits, gs = packed * 32 // n_in, n_in // ngroups
        if bits not in (2, 3, 4, 5, 6, 8):
            raise RefError("%s: tensor %s: %d bits per weight is not an MLX width" % (self.dir, wname, bits))
        cb, cg, mode = self._quant_params(path)
        if mode != "affine":
            raise RefError("%s: module %s: quantization mode %s is not supported" % (self.dir, path, mode))
        if (cb, cg) != (bits, gs):
            note = "%s: shapes say %d-bit g%d, config says %d-bit g%d" % (path, bits, gs, cb, cg)
            if note not in self.notes:
                self.notes.append(note)
        if sel is not None:
            wq, sc, bi = wq[sel], sc[sel], bi[sel]
        q = unpack_bits(wq, bits, n_in).astype(np.float64)            # [..., out, n_in]
        qg = q.reshape(q.shape[:-1] + (ngroups, gs))
        return (qg * sc[..., None] + bi[..., None]).reshape(q.shape)

    def vector(self, name, n):
        if not self.st.has(name):
            raise RefError("%s: tensor %s missing" % (self.dir, name))
        v = self.st.floats(name)
        if v.shape != (n,):
            raise RefError("%s: tensor %s: shape %s, expected [%d]" % (self.dir, name, list(v.shape), n))
        return v

    def bias(self, path, n):
        """Optional additive linear bias."""
        return self.vector(path + ".bias", n) if self.st.has(path + ".bias") else None


# --------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------

class Config:
    def __init__(self, model_dir):
        path = os.path.join(model_dir, "config.json")
        try:
            with open(path) as f:
                c = json.load(f)
        except (OSError, ValueError) as e:
            raise RefError("%s: %s" % (path, e))
        if isinstance(c.get("text_config"), dict) and "hidden_size" not in c:
            c = dict(c["text_config"], **{k: v for k, v in c.items() if k.startswith("quantization")})
        self.raw = c
        self.path = path

        def req(k):
            if c.get(k) is None:
                raise RefError("%s: field %s missing" % (path, k))
            return c[k]

        mt = c.get("model_type", "deepseek_v3")
        if mt != "deepseek_v3":
            raise RefError("%s: model_type %s is not deepseek_v3" % (path, mt))
        self.V = req("vocab_size")
        self.D = req("hidden_size")
        self.N = req("num_hidden_layers")
        self.H = req("num_attention_heads")
        self.q_lora = c.get("q_lora_rank")
        self.kv_lora = req("kv_lora_rank")
        self.nope = req("qk_nope_head_dim")
        self.rope = req("qk_rope_head_dim")
        self.vdim = req("v_head_dim")
        self.inter = c.get("intermediate_size")
        self.moe_inter = c.get("moe_intermediate_size")
        self.E = c.get("n_routed_experts") or 0
        self.n_shared = c.get("n_shared_experts") or 0
        self.k = c.get("num_experts_per_tok") or 0
        self.n_group = c.get("n_group") or 1
        self.topk_group = c.get("topk_group") or 1
        self.norm_topk = bool(c.get("norm_topk_prob", True))
        self.rsf = float(c.get("routed_scaling_factor", 1.0))
        self.first_dense = c.get("first_k_dense_replace") or 0
        self.freq = c.get("moe_layer_freq") or 1
        self.eps = float(c.get("rms_norm_eps", 1e-6))
        self.tie = bool(c.get("tie_word_embeddings", False))
        sf = c.get("scoring_func", "sigmoid")
        if sf != "sigmoid":
            raise RefError("%s: scoring_func %s is not sigmoid" % (path, sf))
        if self.rope % 2:
            raise RefError("%s: qk_rope_head_dim %d is odd" % (path, self.rope))
        if self.E and (self.E % self.n_group or self.topk_group > self.n_group or self.k > self.E):
            raise RefError("%s: n_routed_experts %d / n_group %d / topk_group %d / k %d inconsistent"
                           % (path, self.E, self.n_group, self.topk_group, self.k))
        # RoPE: rope_theta + rope_scaling, or transformers-v5 rope_parameters
        rp = c.get("rope_parameters") if isinstance(c.get("rope_parameters"), dict) else {}
        self.theta = float(c.get("rope_theta") or rp.get("rope_theta") or 10000.0)
        rs = c.get("rope_scaling")
        if not isinstance(rs, dict):
            rs = rp if rp else None
        self.yarn = None
        if rs is not None:
            typ = rs.get("type", rs.get("rope_type"))
            if typ in ("yarn", "deepseek_yarn"):
                self.yarn = rs
            elif typ not in (None, "default"):
                raise RefError("%s: rope type %s is not supported (yarn only)" % (path, typ))

    def is_moe(self, l):
        return self.E > 0 and l >= self.first_dense and l % self.freq == 0


# --------------------------------------------------------------------------------------
# RoPE / YaRN (deepseek-v3.md 3.4-3.6)
# --------------------------------------------------------------------------------------

def _get_m(f, m):
    return 1.0 if f <= 1 else 0.1 * m * math.log(f) + 1.0


def rope_tables(cfg, mut=frozenset()):
    """inv_freq [rope/2], magnitude factor g, softmax scale."""
    d, base = cfg.rope, cfg.theta
    e = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    scale = (cfg.nope + cfg.rope) ** -0.5
    if cfg.yarn is None or "no-yarn" in mut:
        return e, 1.0, scale
    y = cfg.yarn
    f = float(y.get("factor", 1.0))
    L0 = float(y.get("original_max_position_embeddings", 4096))
    bf = float(y.get("beta_fast", 32) if y.get("beta_fast") is not None else 32)
    bs = float(y.get("beta_slow", 1) if y.get("beta_slow") is not None else 1)
    ms = float(y.get("mscale", 1) if y.get("mscale") is not None else 1)
    msa = float(y.get("mscale_all_dim", 0) if y.get("mscale_all_dim") is not None else 0)

    def corr(r):
        return d * math.log(L0 / (2 * math.pi * r)) / (2 * math.log(base))

    low = max(math.floor(corr(bf)), 0)
    high = min(math.ceil(corr(bs)), d - 1)
    if low == high:
        high += 0.001
    i = np.arange(d // 2, dtype=np.float64)
    ramp = np.clip((i - low) / (high - low), 0.0, 1.0)
    keep = 1.0 - ramp
    inv = e * keep + (e / f) * (1.0 - keep)
    g = 1.0 if "no-g" in mut else _get_m(f, ms) / _get_m(f, msa)
    if msa != 0 and f > 1 and "no-mscale" not in mut:
        m = 0.1 * msa * math.log(f) + 1.0
        scale *= m * m
    return inv, g, scale


def apply_rope(x, pos, inv, g, half=False):
    """Interleaved pairs (x[2i], x[2i+1]) rotated by pos*inv[i]; x: [T, ..., rope].
    half=True is the WRONG (NeoX, rotate_half without permutation) pairing (x[i], x[i+d/2]),
    only for the sensitivity check."""
    ang = pos[:, None].astype(np.float64) * inv[None, :]               # [T, rope/2]
    c, s = np.cos(ang) * g, np.sin(ang) * g
    shp = (x.shape[0],) + (1,) * (x.ndim - 2) + (inv.shape[0],)
    c, s = c.reshape(shp), s.reshape(shp)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    if half:
        n = x.shape[-1] // 2
        x0, x1 = x[..., :n], x[..., n:]
        return np.concatenate([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(z):
    return z / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.route_margin = math.inf      # k-th minus (k+1)-th candidate score
        self.route_where = None
        self.group_margin = math.inf      # topk_group-th minus next group score
        self.group_where = None


# Deliberate deviations from the spec, for measuring which bug classes the cross-check
# cases can detect (run_cases.py --mutations). Never used for reference numbers.
MUTATIONS = {
    "no-group-limit": "router ignores n_group/topk_group",
    "zero-mask": "router masks dropped groups with 0 instead of -inf",
    "group-top1": "group score = the group's best expert instead of the sum of its top 2",
    "bias-in-weights": "expert weights taken from the biased scores",
    "no-norm-topk": "top-k weights not renormalized",
    "no-rsf": "routed_scaling_factor not applied",
    "no-shared": "shared experts skipped",
    "rope-half": "RoPE pairs (i, i+d/2) instead of interleaved (2i, 2i+1)",
    "no-yarn": "plain RoPE frequencies and no mscale",
    "no-mscale": "softmax scale without the YaRN mscale^2",
    "no-g": "YaRN cos/sin magnitude factor ignored",
    "lora-eps-config": "q_a/kv_a layernorms use rms_norm_eps instead of 1e-6",
    "mtp-as-layer": "MTP layer N run as one more decoder layer",
}


class Model:
    def __init__(self, model_dir, mutations=()):
        self.mut = frozenset(mutations)
        for m in self.mut:
            if m not in MUTATIONS:
                raise RefError("unknown mutation %s" % m)
        self.cfg = Config(model_dir)
        self.w = Weights(model_dir, self.cfg.raw)
        self.inv, self.g, self.scale = rope_tables(self.cfg, self.mut)
        self.lora_eps = self.cfg.eps if "lora-eps-config" in self.mut else 1e-6

    # -- pieces -------------------------------------------------------------------------
    def linear(self, x, path, n_in, n_out):
        rows = max(1, (1 << 22) // n_in)                       # dequantize <= 32 MB of float64 at a time
        if rows >= n_out:
            y = x @ self.w.get(path, n_in, (n_out, n_in)).T
        else:
            y = np.empty(x.shape[:-1] + (n_out,))
            for r in range(0, n_out, rows):
                W = self.w.get(path, n_in, (n_out, n_in), (slice(r, r + rows),))
                y[..., r:r + rows] = x @ W.T
        b = self.w.bias(path, n_out)
        return y if b is None else y + b

    def attention(self, l, x, pos):
        c, w = self.cfg, self.w
        p = "model.layers.%d.self_attn." % l
        T, H, nope, rope, kvl, vd = x.shape[0], c.H, c.nope, c.rope, c.kv_lora, c.vdim
        if c.q_lora:
            cq = rmsnorm(self.linear(x, p + "q_a_proj", c.D, c.q_lora), w.vector(p + "q_a_layernorm.weight", c.q_lora), self.lora_eps)
            q = self.linear(cq, p + "q_b_proj", c.q_lora, H * (nope + rope))
        else:
            q = self.linear(x, p + "q_proj", c.D, H * (nope + rope))
        q = q.reshape(T, H, nope + rope)
        q_nope, q_pe = q[..., :nope], apply_rope(q[..., nope:], pos, self.inv, self.g, "rope-half" in self.mut)
        kv = self.linear(x, p + "kv_a_proj_with_mqa", c.D, kvl + rope)
        ckv = rmsnorm(kv[:, :kvl], w.vector(p + "kv_a_layernorm.weight", kvl), self.lora_eps)   # [T, kvl]
        k_pe = apply_rope(kv[:, kvl:], pos, self.inv, self.g, "rope-half" in self.mut)                          # [T, rope]
        if w.has_module(p + "kv_b_proj"):
            kvb = w.get(p + "kv_b_proj", kvl, (H * (nope + vd), kvl)).reshape(H, nope + vd, kvl)
            W_UK, W_UV = kvb[:, :nope, :], kvb[:, nope:, :]
        else:
            W_UK = np.swapaxes(w.get(p + "embed_q", nope, (H, kvl, nope)), 1, 2)      # [H, nope, kvl]
            W_UV = w.get(p + "unembed_out", kvl, (H, vd, kvl))                         # [H, vd, kvl]
        k_nope = np.einsum("tc,hnc->thn", ckv, W_UK)                                   # [T, H, nope]
        v = np.einsum("tc,hvc->thv", ckv, W_UV)                                        # [T, H, vd]
        score = (np.einsum("thn,shn->hts", q_nope, k_nope) + np.einsum("thr,sr->hts", q_pe, k_pe)) * self.scale
        causal = np.triu(np.ones((T, T), dtype=bool), 1)
        score = np.where(causal[None], -np.inf, score)
        score -= score.max(axis=-1, keepdims=True)
        pr = np.exp(score)
        pr /= pr.sum(axis=-1, keepdims=True)
        o = np.einsum("hts,shv->thv", pr, v).reshape(T, H * vd)
        return self.linear(o, p + "o_proj", H * vd, c.D)

    def mlp(self, x, p, width):
        D = self.cfg.D
        return self.linear(silu(self.linear(x, p + "gate_proj", D, width)) * self.linear(x, p + "up_proj", D, width),
                           p + "down_proj", width, D)

    def route(self, l, x, stats):
        """-> (idx [T,k], weights [T,k]) exactly as deepseek-v3.md 3.8, with -inf masking."""
        c, w = self.cfg, self.w
        p = "model.layers.%d.mlp.gate" % l
        Wg = w.get(p, c.D, (c.E, c.D))
        bias_name = p + ".e_score_correction_bias"
        bias = w.vector(bias_name, c.E) if w.st.has(bias_name) else np.zeros(c.E)
        s = 1.0 / (1.0 + np.exp(-(x @ Wg.T)))                                          # [T, E]
        T = x.shape[0]
        idx = np.zeros((T, c.k), dtype=np.int64)
        for t in range(T):
            sel = s[t] + bias
            if c.n_group > 1 and "no-group-limit" not in self.mut:
                grp = sel.reshape(c.n_group, c.E // c.n_group)
                gscore = np.sort(grp, axis=1)[:, ::-1][:, :1 if "group-top1" in self.mut else 2].sum(axis=1)
                order = np.argsort(-gscore, kind="stable")
                keep = order[:c.topk_group]
                if c.topk_group < c.n_group:
                    gm = gscore[order[c.topk_group - 1]] - gscore[order[c.topk_group]]
                    if gm < stats.group_margin:
                        stats.group_margin, stats.group_where = gm, (l, t)
                mask = np.ones(c.n_group, dtype=bool)
                mask[keep] = False
                sel = np.where(np.repeat(mask, c.E // c.n_group), 0.0 if "zero-mask" in self.mut else -np.inf, sel)
            order = np.argsort(-sel, kind="stable")
            idx[t] = order[:c.k]
            if c.k < c.E and np.isfinite(sel[order[c.k]]):
                m = sel[order[c.k - 1]] - sel[order[c.k]]
                if m < stats.route_margin:
                    stats.route_margin, stats.route_where = m, (l, t)
        wts = np.take_along_axis(s + bias if "bias-in-weights" in self.mut else s, idx, axis=1)
        if c.norm_topk and "no-norm-topk" not in self.mut:
            wts = wts / (wts.sum(axis=1, keepdims=True) + 1e-20)
        return idx, wts if "no-rsf" in self.mut else wts * c.rsf

    def moe(self, l, x, stats):
        c, w = self.cfg, self.w
        p = "model.layers.%d.mlp." % l
        D, F = c.D, c.moe_inter
        idx, wts = self.route(l, x, stats)
        if w.has_module(p + "switch_mlp.gate_proj"):                 # MLX stacked [E, out, in]
            def expert(e):
                return (w.get(p + "switch_mlp.gate_proj", D, (c.E, F, D), (e,)),
                        w.get(p + "switch_mlp.up_proj", D, (c.E, F, D), (e,)),
                        w.get(p + "switch_mlp.down_proj", F, (c.E, D, F), (e,)))
        elif w.has_module(p + "experts.gate_up_proj"):             # transformers v5 fused
            def expert(e):
                gu = w.get(p + "experts.gate_up_proj", D, (c.E, 2 * F, D), (e,))
                return gu[:F], gu[F:], w.get(p + "experts.down_proj", F, (c.E, D, F), (e,))
        else:                                                        # HF per expert
            def expert(e):
                return tuple(w.get(p + "experts.%d.%s" % (e, n), i, (o, i))
                             for n, o, i in (("gate_proj", F, D), ("up_proj", F, D), ("down_proj", D, F)))
        y = np.zeros_like(x)
        for e in np.unique(idx):
            Wg, Wu, Wd = expert(int(e))
            tok, slot = np.nonzero(idx == e)
            xe = x[tok]
            he = silu(xe @ Wg.T) * (xe @ Wu.T)
            y[tok] += wts[tok, slot][:, None] * (he @ Wd.T)
        if c.n_shared and "no-shared" not in self.mut:
            y += self.mlp(x, p + "shared_experts.", c.n_shared * F)
        return y

    # -- whole pass ---------------------------------------------------------------------
    def forward(self, tokens):
        c, w = self.cfg, self.w
        stats = Stats()
        tok = np.asarray(tokens, dtype=np.int64)
        if tok.size == 0 or tok.min() < 0 or tok.max() >= c.V:
            raise RefError("token ids must be in [0, %d)" % c.V)
        uniq, inv = np.unique(tok, return_inverse=True)
        h = w.get("model.embed_tokens", c.D, (c.V, c.D), (uniq,))[inv]              # [T, D]
        pos = np.arange(len(tokens))
        n_layers = c.N
        if "mtp-as-layer" in self.mut and w.st.has("model.layers.%d.input_layernorm.weight" % c.N):
            n_layers += 1
        for l in range(n_layers):
            p = "model.layers.%d." % l
            h = h + self.attention(l, rmsnorm(h, w.vector(p + "input_layernorm.weight", c.D), c.eps), pos)
            x = rmsnorm(h, w.vector(p + "post_attention_layernorm.weight", c.D), c.eps)
            h = h + (self.moe(l, x, stats) if c.is_moe(l) else self.mlp(x, p + "mlp.", c.inter))
        h = rmsnorm(h, w.vector("model.norm.weight", c.D), c.eps)
        if w.has_module("lm_head"):
            return self.linear(h, "lm_head", c.D, c.V), stats
        if c.tie:
            return self.linear(h, "model.embed_tokens", c.D, c.V), stats
        raise RefError("%s: tensor lm_head.weight missing" % w.dir)


def parse_tokens(ap, text):
    """--tokens "1,2,3" -> [1, 2, 3] (a usage error otherwise)."""
    try:
        return [int(t) for t in text.split(",") if t.strip() != ""]
    except ValueError:
        ap.error("--tokens: not a comma-separated list of integers")


def emit(a, logits):
    """The logits JSON to --out, else to stdout unless only comparing or writing --out-golden; returns the smallest
    top-1/top-2 logit gap over the positions."""
    if a.out:
        with open(a.out, "w") as f:
            f.write(logits_json(logits))
    elif not a.compare and not getattr(a, "out_golden", None):
        sys.stdout.write(logits_json(logits))
    srt = np.sort(logits, axis=1)
    return float((srt[:, -1] - srt[:, -2]).min()) if logits.shape[1] > 1 else math.inf


def logits_json(logits):
    rows = ",".join('{"pos":%d,"logits":[%s]}' % (p, ",".join("%.12g" % v for v in r)) for p, r in enumerate(logits))
    return '{"n_vocab":%d,"positions":[%s]}\n' % (logits.shape[1], rows)


def main(argv):
    ap = argparse.ArgumentParser(description="numpy float64 DeepSeek-V3 reference logits (all positions)")
    ap.add_argument("model", nargs="?", help="model directory (config.json + safetensors)")
    ap.add_argument("--tokens", help="comma-separated token ids")
    ap.add_argument("--selftest", action="store_true", help="check the bit unpacking against the spec's vectors and exit")
    ap.add_argument("--out", help="write the logits JSON here instead of stdout")
    ap.add_argument("--out-golden", help="also write the golden ref.json format {tokens, n_vocab, logits} here")
    ap.add_argument("--stats", action="store_true", help="print sensitivity figures as one JSON line on stderr")
    ap.add_argument("--compare", action="append", default=[],
                    help="logits JSON to check against the reference (repeatable); exit 1 if out of tolerance")
    ap.add_argument("--tol", type=float, default=1e-3, help="relative tolerance: |d| <= tol*max(1,|ref|) (default 1e-3)")
    ap.add_argument("--mutate", action="append", default=[], choices=sorted(MUTATIONS),
                    help="apply a deliberate deviation (sensitivity checks only; never for reference numbers)")
    a = ap.parse_args(argv)
    if a.selftest:
        try:
            selftest()
        except RefError as e:
            print("ds3_ref: %s" % e, file=sys.stderr)
            return 1
        print("selftest ok: %d packing vectors, negative-scale dequant" % len(_PACK_VECTORS))
        return 0
    if not a.model or not a.tokens:
        ap.error("MODEL and --tokens are required")
    tokens = parse_tokens(ap, a.tokens)
    try:
        m = Model(a.model, a.mutate)
        logits, st = m.forward(tokens)
    except RefError as e:
        print("ds3_ref: %s" % e, file=sys.stderr)
        return 1
    if a.out_golden:
        with open(a.out_golden, "w") as f:
            f.write('{"tokens":[%s],"n_vocab":%d,"logits":[%s]}\n' % (
                ",".join(str(t) for t in tokens), logits.shape[1],
                ",".join("[%s]" % ",".join("%.12g" % v for v in r) for r in logits)))
    gap = emit(a, logits)
    summary = {"tokens": len(tokens), "min_route_margin": st.route_margin, "route_margin_at": st.route_where,
               "min_group_margin": st.group_margin, "group_margin_at": st.group_where, "min_top2_gap": gap,
               "notes": m.w.notes}
    if a.stats:
        print(json.dumps(summary, default=lambda v: None if v in (math.inf,) else v).replace("Infinity", "null"),
              file=sys.stderr)
    note = "" if math.isinf(st.route_margin) else " route_margin=%.3g" % min(st.route_margin, st.group_margin)
    return compare_logits.check_files(logits, a.compare, a.tol, "ds3_ref", note)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

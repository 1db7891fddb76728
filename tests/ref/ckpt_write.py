#!/usr/bin/python3
"""ckpt_write.py - an independent checkpoint writer, so that the runtime's loader is also
checked against files the project's own synth/quantize did not write.

Design: read a float HF DeepSeek-V3 directory through ds3_ref.SafeTensors, rebuild the
tensor tree the way mlx_lm's sanitize + quantize_model do (mlx-quant.md, deepseek-v3.md
section 6): per-expert tensors stacked into mlp.switch_mlp.*, MTP layers (index >=
num_hidden_layers) dropped, kv_b_proj split into embed_q / unembed_out (or kept as the
legacy quantized kv_b_proj of mlx_lm < 0.30.6 with --legacy-kvb), and every Linear /
Embedding / stacked / per-head weight whose input width divides by the group size
quantized with the current MLX affine algorithm (mlx-quant.md 3.1: the extreme-magnitude
end reproduced exactly, possibly negative scales) and packed as an LSB-first bit stream.
Router weights, norms and e_score_correction_bias stay float. Scales/biases and floats
are written as bf16 (round to nearest even), e_score_correction_bias as f32, in shards
with model.safetensors.index.json and name-sorted headers.

--format hf instead writes HF float tensors (--dtype), optionally as the transformers-v5
fused expert parameters (--fused-experts); MTP layers are kept there.
Options for corner cases: --moe-layer-freq N turns MoE layers with l % N != 0 into
dense MLPs (random weights) and sets moe_layer_freq; --quant-config-only (MLX) writes
only "quantization_config" (no "quantization" key); --bias-shift X adds X to e_score_correction_bias of every expert
but 0 and 1 (with X = -2 the kept groups hold only 2 candidates with a positive biased
score, fewer than k: masking dropped groups with 0 instead of -inf then picks differently);
--tie drops lm_head and sets tie_word_embeddings.
--recipe picks the bits per module (MLX), written as per-module config entries:
  uniform     --bits everywhere
  mixed-8-5   routed experts (switch_mlp) 5, everything else 8
  dq4         routed and shared experts: gate/up 4, down_proj 6 in layers < 5, 5 in
              every 5th layer after, else 4; everything else 8
  mixed_L_H   mlx-lm's mixed_2_6 / 3_4 / 3_6 / 4_6 as mlx-quant.md states them: L bits,
              H for lm_head and for v_proj / v_a_proj / v_b_proj / down_proj in layers
              i < N/8, i >= 7N/8 or (i - N/8) % 3 == 2 (N = num_hidden_layers; i = 0
              for modules outside the layers)

Usage: ckpt_write.py SRC_HF_DIR OUT_DIR [--format mlx|hf] [--bits 4] [--group-size 64]
                     [--recipe R] [--legacy-kvb] [--quant-config-only] [--fused-experts]
                     [--dtype bf16] [--shard-size BYTES] [--bias-shift X] [--tie]
                     [--moe-layer-freq N]
"""
import argparse
import json
import os
import re
import shutil
import struct
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ds3_ref  # noqa: E402


def to_bf16_bits(a):
    """float64/float32 -> bf16 bit patterns (uint16), round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def quantize(w, bits, gs):
    """MLX affine quantization of w [..., out, in] along the last axis, exactly as
    mlx-quant.md 3.1 states it: float32 arithmetic, q from the float32 scale and bias,
    then scales and biases stored as bf16 (round to nearest even).
    -> (packed uint32 [..., out, in*bits/32], scales bf16 bits, biases bf16 bits)."""
    f32 = np.float32
    n = f32((1 << bits) - 1)
    shp = w.shape
    g = np.asarray(w, dtype=np.float32).reshape(-1, shp[-1] // gs, gs)
    wmax, wmin = g.max(axis=-1), g.min(axis=-1)
    mask = np.abs(wmin) > np.abs(wmax)
    s = np.maximum((wmax - wmin) / n, f32(1e-7))
    s = np.where(mask, s, -s)
    edge = np.where(mask, wmin, wmax)
    q0 = np.rint(edge / s)
    s = np.where(q0 != 0, edge / np.where(q0 != 0, q0, f32(1)), s)
    b = np.where(q0 != 0, edge, f32(0))
    q = np.clip(np.rint((g - b[..., None]) / s[..., None]), 0, n).astype(np.uint8)
    sb, bb = to_bf16_bits(s), to_bf16_bits(b)
    # LSB-first bit stream: element j at bits [j*bits, (j+1)*bits), bit k of the value first
    qbits = ((q.reshape(-1, shp[-1])[..., None] >> np.arange(bits, dtype=np.uint8)) & 1).astype(np.uint8)
    packed = np.packbits(qbits.reshape(-1, shp[-1] * bits), axis=-1, bitorder="little")
    words = packed.view("<u4").reshape(shp[:-1] + (shp[-1] * bits // 32,))
    return words, sb.reshape(shp[:-1] + (shp[-1] // gs,)), bb.reshape(shp[:-1] + (shp[-1] // gs,))


def write_shards(out, tensors, shard_size):
    """tensors: name -> (dtype string, np array); name-sorted, split into shards."""
    names = sorted(tensors)
    shards, cur, size = [], [], 0
    for nm in names:
        nb = tensors[nm][1].nbytes
        if cur and size + nb > shard_size:
            shards.append(cur)
            cur, size = [], 0
        cur.append(nm)
        size += nb
    shards.append(cur)
    wm, total = {}, 0
    for i, group in enumerate(shards):
        fn = "model.safetensors" if len(shards) == 1 else "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        hdr, off = {"__metadata__": {"format": "mlx"}}, 0
        for nm in group:
            dt, arr = tensors[nm]
            hdr[nm] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + arr.nbytes]}
            off += arr.nbytes
            wm[nm] = fn
        hj = json.dumps(hdr, separators=(",", ":"), sort_keys=True).encode()
        hj += b" " * (-len(hj) % 8)
        with open(os.path.join(out, fn), "wb") as f:
            f.write(struct.pack("<Q", len(hj)))
            f.write(hj)
            for nm in group:
                f.write(np.ascontiguousarray(tensors[nm][1]).tobytes())
        total += off
    if len(shards) > 1:
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wm.items()))}, f, indent=2)


def transform(a, cfg, st):
    """Source tensors (float64) after the layout-independent edits: MTP and inv_freq
    dropped (MLX only), --moe-layer-freq, --bias-shift, --tie. Returns (tensors, config)."""
    raw = dict(cfg.raw)
    floats = {}
    layer_re = re.compile(r"model\.layers\.(\d+)\.")
    for nm in st.entries:
        m = layer_re.match(nm)
        if a.format == "mlx" and m and int(m.group(1)) >= cfg.N:
            continue                                   # MTP dropped like mlx_lm
        if "rotary_emb.inv_freq" in nm:
            continue
        floats[nm] = st.floats(nm)
    rng = np.random.default_rng(1234)
    for l in range(cfg.N):
        p = "model.layers.%d.mlp." % l
        if a.moe_layer_freq > 1 and cfg.is_moe(l) and l % a.moe_layer_freq != 0:
            # this layer becomes a dense SwiGLU MLP of intermediate_size (random weights)
            for nm in [k for k in floats if k.startswith(p)]:
                del floats[nm]
            D, I = cfg.D, cfg.inter
            floats[p + "gate_proj.weight"] = rng.standard_normal((I, D)) / np.sqrt(D)
            floats[p + "up_proj.weight"] = rng.standard_normal((I, D)) / np.sqrt(D)
            floats[p + "down_proj.weight"] = rng.standard_normal((D, I)) / np.sqrt(I) / np.sqrt(2 * cfg.N)
        if a.bias_shift and p + "gate.e_score_correction_bias" in floats:
            b = floats[p + "gate.e_score_correction_bias"].copy()
            b[2:] += a.bias_shift
            floats[p + "gate.e_score_correction_bias"] = b
    if a.moe_layer_freq > 1:
        raw["moe_layer_freq"] = a.moe_layer_freq
    if a.tie:
        floats.pop("lm_head.weight", None)
        raw["tie_word_embeddings"] = True
    return floats, raw


def recipe_bits(a, cfg, mod):
    """Bits of module path `mod` under --recipe (see the top of the file)."""
    m = re.match(r"model\.layers\.(\d+)\.", mod)
    layer = int(m.group(1)) if m else 0
    r = a.recipe
    if r == "uniform":
        return a.bits
    if r == "mixed-8-5":
        return 5 if ".switch_mlp." in mod else 8
    if r == "dq4":
        if ".switch_mlp." in mod or ".shared_experts." in mod:
            if mod.endswith("down_proj"):
                return 6 if layer < 5 else 5 if layer % 5 == 0 else 4
            return 4
        return 8
    m = re.fullmatch(r"mixed_(\d)_(\d)", r)
    if not m:
        raise SystemExit("ckpt_write: --recipe %s: uniform, mixed-8-5, dq4 or mixed_L_H" % r)
    lo, hi, n = int(m.group(1)), int(m.group(2)), cfg.N
    more = layer < n // 8 or layer >= 7 * n // 8 or (layer - n // 8) % 3 == 2
    if "lm_head" in mod:
        return hi
    if more and any(k in mod for k in ("v_proj", "v_a_proj", "v_b_proj", "down_proj")):
        return hi
    return lo


def recipe_default_bits(a):
    """Top-level "bits" of the config block (modules without an entry use it)."""
    m = re.fullmatch(r"mixed_(\d)_(\d)", a.recipe)
    return {"mixed-8-5": 5, "dq4": 4}.get(a.recipe, int(m.group(1)) if m else a.bits)


def to_mlx(a, cfg, floats, raw):
    """mlx_lm sanitize + quantize_model: stacked experts, MLA split, affine quantization."""
    gs = a.group_size
    entries = {}
    for l in range(cfg.N):
        p = "model.layers.%d.mlp." % l
        for proj in ("gate_proj", "up_proj", "down_proj"):
            keys = [p + "experts.%d.%s.weight" % (e, proj) for e in range(cfg.E)]
            if keys and keys[0] in floats:
                floats[p + "switch_mlp.%s.weight" % proj] = np.stack([floats.pop(k) for k in keys])
        kvb = "model.layers.%d.self_attn.kv_b_proj.weight" % l
        if kvb in floats and not a.legacy_kvb:
            W = floats.pop(kvb).reshape(cfg.H, cfg.nope + cfg.vdim, cfg.kv_lora)
            floats["model.layers.%d.self_attn.embed_q.weight" % l] = np.ascontiguousarray(np.swapaxes(W[:, :cfg.nope], 1, 2))
            floats["model.layers.%d.self_attn.unembed_out.weight" % l] = np.ascontiguousarray(W[:, cfg.nope:])
    out = {}
    for nm, arr in floats.items():
        mod = nm[:-len(".weight")] if nm.endswith(".weight") else None
        quantizable = (mod is not None and arr.ndim >= 2 and not mod.endswith("mlp.gate")
                       and arr.shape[-1] % gs == 0)
        if quantizable:
            bits = recipe_bits(a, cfg, mod)
            if a.recipe != "uniform":
                entries[mod] = {"group_size": gs, "bits": bits, "mode": "affine"}
            wq, sc, bi = quantize(arr, bits, gs)
            out[nm] = ("U32", wq)
            out[mod + ".scales"] = ("BF16", sc)
            out[mod + ".biases"] = ("BF16", bi)
        elif nm.endswith("e_score_correction_bias"):
            out[nm] = ("F32", arr.astype("<f4"))
        else:
            out[nm] = ("BF16", to_bf16_bits(arr))
    q = {"group_size": gs, "bits": recipe_default_bits(a), "mode": "affine"}
    q.update(sorted(entries.items()))
    if not a.quant_config_only:
        raw["quantization"] = q
    raw["quantization_config"] = dict(q)
    return out


def to_hf(a, cfg, floats, raw):
    """HF float layout in --dtype; --fused-experts writes the transformers-v5 parameters
    mlp.experts.gate_up_proj [E, 2F, D] (gate rows first) and mlp.experts.down_proj [E, D, F]."""
    if a.fused_experts:
        for l in range(cfg.N + 8):
            p = "model.layers.%d.mlp.experts." % l
            if p + "0.gate_proj.weight" not in floats:
                continue
            E = len([k for k in floats if k.startswith(p) and k.endswith(".gate_proj.weight")])
            g = [floats.pop(p + "%d.gate_proj.weight" % e) for e in range(E)]
            u = [floats.pop(p + "%d.up_proj.weight" % e) for e in range(E)]
            floats[p + "gate_up_proj"] = np.stack([np.concatenate([g[e], u[e]]) for e in range(E)])
            floats[p + "down_proj"] = np.stack([floats.pop(p + "%d.down_proj.weight" % e) for e in range(E)])
    out = {}
    for nm, arr in floats.items():
        if nm.endswith("e_score_correction_bias"):
            out[nm] = ("F32", arr.astype("<f4"))
        elif a.dtype == "bf16":
            out[nm] = ("BF16", to_bf16_bits(arr))
        elif a.dtype == "f16":
            out[nm] = ("F16", arr.astype("<f2"))
        else:
            out[nm] = ("F32", arr.astype("<f4"))
    raw["torch_dtype"] = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[a.dtype]
    return out


def main(argv):
    ap = argparse.ArgumentParser(description="rewrite a float HF DeepSeek-V3 checkpoint as MLX (quantized) or HF")
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--format", choices=["mlx", "hf"], default="mlx")
    ap.add_argument("--bits", type=int, default=4, choices=[2, 3, 4, 5, 6, 8], help="mlx: bits (default 4)")
    ap.add_argument("--group-size", type=int, default=64, choices=[32, 64, 128], help="mlx: group size (default 64)")
    ap.add_argument("--recipe", default="uniform", help="mlx: bits per module (see the top of the file)")
    ap.add_argument("--legacy-kvb", action="store_true", help="mlx: keep a quantized kv_b_proj (mlx_lm < 0.30.6)")
    ap.add_argument("--quant-config-only", action="store_true", help="mlx: only quantization_config in config.json")
    ap.add_argument("--fused-experts", action="store_true", help="hf: transformers-v5 fused expert parameters")
    ap.add_argument("--dtype", choices=["bf16", "f16", "f32"], default="bf16", help="hf: float dtype (default bf16)")
    ap.add_argument("--shard-size", type=int, default=1 << 20, help="bytes per shard (default 1 MiB)")
    ap.add_argument("--bias-shift", type=float, default=0.0, help="add X to the router bias of experts 2..E-1")
    ap.add_argument("--tie", action="store_true", help="drop lm_head, set tie_word_embeddings")
    ap.add_argument("--moe-layer-freq", type=int, default=1, help="MoE layers l %% N != 0 become dense (random weights)")
    a = ap.parse_args(argv)
    try:
        cfg = ds3_ref.Config(a.src)
        st = ds3_ref.SafeTensors(a.src)
    except ds3_ref.RefError as e:
        print("ckpt_write: %s" % e, file=sys.stderr)
        return 1
    floats, raw = transform(a, cfg, st)
    out = (to_mlx if a.format == "mlx" else to_hf)(a, cfg, floats, raw)
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    write_shards(a.out, out, a.shard_size)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(raw, f, indent=2, sort_keys=True)
    for extra in ("tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(a.src, extra)):
            shutil.copy(os.path.join(a.src, extra), a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

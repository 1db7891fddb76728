#!/usr/bin/python3
"""step_ckpt.py - rewrite a Step-3.7-Flash checkpoint in mlx-vlm's step3p7 wrapper layout
into the other layouts the runtime must load, for the cross-check cases (numpy only; the
tensors are re-read with ds3_ref.py's reader and written as new safetensors files):

  unwrap   mlx-lm `step3p5`: config = text_config + the quantization blocks with the
           "language_model." prefix dropped from their keys; tensors language_model.model.*
           -> model.*, language_model.lm_head -> lm_head; vision tensors dropped;
           router_bias as F32 (mlx-lm's cast_predicate keeps it float32). Values unchanged.
  hf       the original HF checkpoint: every MLX-quantized weight dequantized to F32 (exact:
           w = scale * q + bias), names .mlp.switch_mlp.X -> .moe.X, .mlp.gate.gate -> .moe.gate,
           .mlp.gate.router_bias -> .moe.router_bias, .mlp.share_expert. -> .share_expert.,
           every *norm*.weight stored zero-centered (w - 1, exact in F32), config without
           quantization (text_config for a wrapper). A loader must add the 1 back.

Options: --shards N splits the tensors over N files with an index (default 1, no index).
Usage: step_ckpt.py unwrap|hf SRC_DIR DST_DIR [--shards N]
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ds3_ref import RefError, Weights  # noqa: E402

_ST = {"F32": "<f4", "BF16": "<u2", "F16": "<f2", "U32": "<u4"}


def write_safetensors(dst, tensors, shards, fmt):
    """tensors: list of (name, dtype string, array); one file, or `shards` files + index."""
    os.makedirs(dst, exist_ok=True)
    groups = [tensors[i::shards] for i in range(shards)] if shards > 1 else [tensors]
    wm, total = {}, 0
    for i, group in enumerate(groups):
        fn = "model.safetensors" if shards == 1 else "model-%05d-of-%05d.safetensors" % (i + 1, shards)
        hdr, off, blobs = {"__metadata__": {"format": fmt}}, 0, []
        for name, dt, arr in group:
            b = np.ascontiguousarray(arr, dtype=_ST[dt]).tobytes()
            hdr[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
            blobs.append(b)
            off += len(b)
            wm[name] = fn
            total += len(b)
        h = json.dumps(hdr, separators=(",", ":")).encode()
        h += b" " * (-len(h) % 8)
        with open(os.path.join(dst, fn), "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h)
            for b in blobs:
                f.write(b)
    if shards > 1:
        with open(os.path.join(dst, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)


def hf_name(n):
    for a, b in ((".mlp.switch_mlp.", ".moe."), (".mlp.gate.gate.", ".moe.gate."),
                 (".mlp.gate.router_bias", ".moe.router_bias"), (".mlp.share_expert.", ".share_expert.")):
        if a in n:
            return n.replace(a, b)
    return n


def convert(mode, src, dst, shards):
    with open(os.path.join(src, "config.json")) as f:
        doc = json.load(f)
    text = doc.get("text_config") if isinstance(doc.get("text_config"), dict) else doc
    w = Weights(src, doc)
    st = w.st
    out = []
    for name in sorted(st.entries):
        if not (name.startswith("language_model.") or name.startswith("model.") or name.startswith("lm_head")):
            continue                                           # vision tower, projector
        new = name[len("language_model."):] if name.startswith("language_model.") else name
        dt = st.dtype(name)
        if mode == "unwrap":
            arr = st.raw(name)
            if new.endswith("router_bias"):
                arr, dt = st.floats(name).astype(np.float32), "F32"
            out.append((new, dt, arr))
            continue
        if name.endswith(".scales") or name.endswith(".biases"):
            continue
        if dt == "U32":                                        # quantized module: dequantize
            arr = w.get(name[: -len(".weight")], _input_width(text, new)).astype(np.float32)
        else:
            arr = st.floats(name).astype(np.float32)
            if new.endswith(".weight") and "norm" in new:
                arr = arr - np.float32(1.0)                   # zero-centered, as HF stores it
        out.append((hf_name(new), "F32", arr))
    write_safetensors(dst, out, shards, "mlx" if mode == "unwrap" else "pt")
    cfg = dict(text)
    if mode == "unwrap":
        for k in ("quantization", "quantization_config"):
            q = doc.get(k)
            if isinstance(q, dict):
                cfg[k] = {(kk[len("language_model."):] if kk.startswith("language_model.") else kk): v
                          for kk, v in q.items()}
    for k in ("eos_token_id", "bos_token_id"):
        if cfg.get(k) is None and doc.get(k) is not None:
            cfg[k] = doc[k]
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def _input_width(text, name):
    """The logical input width of a quantized module from the config (the packed width
    alone does not say it): hidden_size, or the expert / shared / dense width for a
    down_proj, or the attention width for o_proj."""
    D = text["hidden_size"]
    if name.endswith("down_proj.weight"):
        if ".switch_mlp." in name:
            return text["moe_intermediate_size"]
        if ".share_expert." in name:
            return text.get("share_expert_dim", 1280)
        return text["intermediate_size"]
    if name.endswith("o_proj.weight"):
        layer = int(name.split(".")[2])
        lt = text.get("layer_types") or []
        other = text.get("attention_other_setting") or {}
        sliding = lt[layer] == "sliding_attention" if lt else layer % 2 == 0
        heads = other["num_attention_heads"] if sliding and other else text["num_attention_heads"]
        return heads * text["head_dim"]
    return D


def main(argv):
    ap = argparse.ArgumentParser(description="rewrite a step3p7 wrapper checkpoint as mlx-lm step3p5 or original HF")
    ap.add_argument("mode", choices=("unwrap", "hf"))
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--shards", type=int, default=1)
    a = ap.parse_args(argv)
    try:
        convert(a.mode, a.src, a.dst, max(1, a.shards))
    except (RefError, OSError, ValueError, KeyError) as e:
        print("step_ckpt: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

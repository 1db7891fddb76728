#!/usr/bin/python3
"""compare_ckpt.py - are two MLX checkpoints the same model, byte for byte?

Used to hold `moestream quantize` against the independent quantizer ckpt_write.py:
the shard layout and the header's key order may differ (they are not part of the
format), everything else may not. Checks:
  * the same tensor names, and for each the same dtype, shape and data bytes;
  * config.json equal outside the quantization blocks;
  * "quantization" and "quantization_config" equal as each tool wrote them (mlx-lm
    writes the same dict twice), and between the two checkpoints the same
    effective parameters for every quantized module (a module with <name>.scales:
    its per-module entry, else the top-level defaults; "mode" absent = "affine"),
    checked against the shapes (bits = 32 * packed words / input width).
Prints one line per difference (at most 20) and a summary; exit 0 when identical,
1 when not, 2 on a usage or read error.

Usage: compare_ckpt.py A_DIR B_DIR
"""
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ds3_ref  # noqa: E402

QKEYS = ("quantization", "quantization_config")


def effective(cfg, st):
    """module -> (bits, group_size, mode) for every module with a .scales tensor."""
    q = cfg.get("quantization") or cfg.get("quantization_config") or {}
    out = {}
    for nm in st.entries:
        if not nm.endswith(".scales"):
            continue
        mod = nm[: -len(".scales")]
        e = q.get(mod, True)
        e = q if e is True else e
        if not isinstance(e, dict):
            raise ds3_ref.RefError("module %s has scales but config entry %r" % (mod, e))
        bits, gs = e.get("bits", q.get("bits")), e.get("group_size", q.get("group_size"))
        packed = st.entries[mod + ".weight"][2][-1]
        n_in = st.entries[nm][2][-1] * gs
        if packed * 32 != n_in * bits:
            raise ds3_ref.RefError("module %s: %d-bit in the config, %d words for %d inputs in the file"
                                   % (mod, bits, packed, n_in))
        out[mod] = (bits, gs, e.get("mode", q.get("mode", "affine")))
    return out


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    diffs = []
    try:
        sts = [ds3_ref.SafeTensors(d) for d in argv]
        cfgs = []
        for d in argv:
            with open(os.path.join(d, "config.json")) as f:
                cfgs.append(json.load(f))
        a, b = sts
        for nm in sorted(set(a.entries) | set(b.entries)):
            if nm not in a.entries or nm not in b.entries:
                diffs.append("%s: only in %s" % (nm, argv[0] if nm in a.entries else argv[1]))
                continue
            fa, dta, sha, s0, e0 = a.entries[nm]
            fb, dtb, shb, s1, e1 = b.entries[nm]
            if (dta, sha) != (dtb, shb):
                diffs.append("%s: %s %s vs %s %s" % (nm, dta, list(sha), dtb, list(shb)))
            elif a._maps[fa][s0:e0] != b._maps[fb][s1:e1]:
                x, y = a._maps[fa][s0:e0], b._maps[fb][s1:e1]
                n = sum(1 for i in range(len(x)) if x[i] != y[i])
                first = next(i for i in range(len(x)) if x[i] != y[i])
                diffs.append("%s: %d of %d bytes differ (first at byte %d)" % (nm, n, len(x), first))
        for i, c in enumerate(cfgs):
            if all(k in c for k in QKEYS) and c[QKEYS[0]] != c[QKEYS[1]]:
                diffs.append("%s: quantization and quantization_config differ" % argv[i])
        rest = [{k: v for k, v in c.items() if k not in QKEYS} for c in cfgs]
        for k in sorted(set(rest[0]) | set(rest[1])):
            if rest[0].get(k) != rest[1].get(k):
                diffs.append("config.json %s: %r vs %r" % (k, rest[0].get(k), rest[1].get(k)))
        ea, eb = effective(cfgs[0], a), effective(cfgs[1], b)
        for mod in sorted(set(ea) & set(eb)):
            if ea[mod] != eb[mod]:
                diffs.append("%s: (bits, group_size, mode) %s vs %s" % (mod, ea[mod], eb[mod]))
    except (ds3_ref.RefError, OSError, ValueError, KeyError) as e:
        print("compare_ckpt: %s" % e, file=sys.stderr)
        return 2
    for d in diffs[:20]:
        print(d)
    quant = len(ea)
    print("%s: %d tensors, %d quantized modules (bits %s): %s" % (
        "identical" if not diffs else "DIFFERENT", len(a.entries), quant,
        ",".join(str(x) for x in sorted({v[0] for v in ea.values()})),
        "same bytes, same config" if not diffs else "%d differences" % len(diffs)))
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env bash
# make_seeds.sh - regenerate the seed corpora of the fuzz targets under
# tests/fuzz/corpus/<target>/ from models written by `moestream synth --preset
# tiny` (MLX uniform / mixed / dq4, f16 g32 8-bit, HF bf16 with MTP, HF f32),
# traces of `moestream run --trace` (both encodings, with and without
# next-layer predictions), plus a few crafted edge cases.
#   usage: tests/fuzz/make_seeds.sh [path/to/moestream]   (default build-rel/moestream)
# Needs python3. Seeds are small (headers only, never tensor data).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${1:-$root/build-rel/moestream}"
[ -x "$bin" ] || { echo "make_seeds.sh: no moestream binary at $bin (build first or pass it)" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
"$bin" synth --preset tiny --out m-mlx -q
"$bin" synth --preset tiny --recipe mixed-8-5 --out m-mix -q
"$bin" synth --preset tiny --recipe dq4 --out m-dq4 -q
"$bin" synth --preset tiny --q-lora-rank null --dtype f16 --bits 8 --group-size 32 --out m-f16 -q
"$bin" synth --preset tiny --format hf --mtp 1 --out m-hf -q
"$bin" synth --preset tiny --format hf --dtype f32 --out m-hf32 -q
"$bin" run --model m-mlx --tokens 1,2,3 -n 6 --temp 0 --trace tr.jsonl --quiet >/dev/null
"$bin" run --model m-mlx --tokens 1,2,3 -n 6 --temp 0 --trace tr.bin --quiet >/dev/null
"$bin" run --model m-mlx --tokens 1,2 -n 4 --temp 0 --prefetch next-layer --trace trp.jsonl --quiet >/dev/null
"$bin" run --model m-mlx --tokens 1,2 -n 4 --temp 0 --prefetch next-layer --trace trp.bin --quiet >/dev/null
python3 "$root/tests/fuzz/make_seeds.py" "$work" "$root/tests/fuzz/corpus"

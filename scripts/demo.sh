#!/usr/bin/env bash
# The README's first command: install, build, generate the ~1.6 GB demo model
# (random weights, MLX 4-bit layout, 11 MoE layers x 64 experts) and run the main
# job on it with a 1 GiB budget, so only part of the experts fit in RAM and the
# rest stream from disk. DEMO_DIR (default ./demo-model) and RAM (default 1G)
# can be overridden.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
DEMO_DIR=${DEMO_DIR:-demo-model}
RAM=${RAM:-1G}
[ -f "$DEMO_DIR/config.json" ] || ./build/moestream synth --preset demo --out "$DEMO_DIR"
./build/moestream inspect "$DEMO_DIR" | head -9
./build/moestream plan --model "$DEMO_DIR" --ram "$RAM"
./build/moestream run --model "$DEMO_DIR" --ram "$RAM" -n 64 --prompt "Why is the sky blue?" \
  --stats-json "$DEMO_DIR/last-run.json"

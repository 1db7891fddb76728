#!/usr/bin/env bash
# The README's second command: install, build, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cd build && ctest --output-on-failure -j"$(nproc)"

#!/usr/bin/env bash
# mutants.sh - do the tests catch these bugs? Each mutation is one deliberate,
# one-line bug applied to a copy of the committed tree (git HEAD; the working
# tree is never touched), built in Release and run through the whole ctest
# suite; the mutation is caught when at least one test fails.
#
#   usage: scripts/mutants.sh [NAME...]     (default: every mutation below)
#   env:   MUTANTS_DIR (default /tmp/moestream-mutants): trees, builds, logs
#
# Prints one markdown row per mutation: name, what it does, the failing tests
# (or "NOT CAUGHT"). Exit 1 if any mutation was not caught (or its pattern no
# longer matches the code: then the row says so), 0 otherwise.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${MUTANTS_DIR:-/tmp/moestream-mutants}"

# name | file | sed script (must change exactly one line) | description
mutations=(
  "cache-takes-allowance|src/engine/plan.c|0,/p->cache_bytes = o->budget - fixed;/s//p->cache_bytes = o->budget - fixed + p->overhead_bytes;/|the expert cache also takes the plan's fixed 96 MiB allowance"
  "one-size-class|cache/expert_cache.c|s/lay->layer_class\[li\] = (uint8_t)c;/lay->layer_class[li] = 0;/|every MoE layer mapped to expert size class 0 (ms_cache_layout_init)"
  "group-score-top1|src/arch/deepseek_v3.c|s/gs\[g\] = sel\[g \* per + top2\[0\]\] + sel\[g \* per + top2\[1\]\];/gs[g] = sel[g * per + top2[0]];/|router group score from the group's top-1 instead of the sum of its top 2 (route_token)"
)

want=("$@")
status=0
mkdir -p "$work"
echo "| mutation | bug | tests that fail |"
echo "|---|---|---|"
for m in "${mutations[@]}"; do
  IFS='|' read -r name file expr desc <<<"$m"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $name "* ]]; then continue; fi
  dir="$work/$name"
  rm -rf "$dir"; mkdir -p "$dir/src"
  (cd "$root" && git archive HEAD) | tar -x -C "$dir/src"
  before=$(md5sum "$dir/src/$file" | cut -d' ' -f1)
  sed -i "$expr" "$dir/src/$file"
  changed=$(diff <(cd "$root" && git show "HEAD:$file") "$dir/src/$file" | grep -c '^>')
  if [ "$before" = "$(md5sum "$dir/src/$file" | cut -d' ' -f1)" ] || [ "$changed" != 1 ]; then
    echo "| $name | $desc | PATTERN NOT FOUND in $file ($changed lines changed): update scripts/mutants.sh |"
    status=1; continue
  fi
  # ../shared beside the copy, as beside the checkout (tests read the FLAME trace from it)
  [ -e "$root/../shared" ] && ln -sfn "$(cd "$root/../shared" && pwd)" "$dir/shared"
  if ! { cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
         cmake --build "$dir/build" -j"$(nproc)" >"$dir/build.log" 2>&1; }; then
    echo "| $name | $desc | caught at build time (see $dir/build.log) |"; continue
  fi
  (cd "$dir/build" && ctest -j"$(nproc)" >"$dir/ctest.log" 2>&1)
  failed=""
  for t in $(sed -n 's/^[[:space:]]*[0-9]* - \([a-z_0-9]*\) (.*/\1/p' "$dir/ctest.log" | sort -u); do
    # which cmocka tests inside it: run it again alone
    subs=""
    if [ -x "$dir/build/tests/$t" ]; then
      subs=$(cd "$dir/build/test-tmp" && "../tests/$t" 2>&1 | sed -n 's/^\[  FAILED  \] \(test_[a-z_0-9]*\)$/\1/p' |
             sort -u | paste -sd' ' -)
    fi
    failed="${failed:+$failed, }$t${subs:+ ($subs)}"
  done
  if [ -z "$failed" ]; then
    echo "| $name | $desc | NOT CAUGHT |"; status=1
  else
    echo "| $name | $desc | $failed |"
  fi
done
exit "$status"

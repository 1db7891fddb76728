#!/usr/bin/env bash
# fuzz.sh - build the libFuzzer targets (tests/fuzz/, clang + ASan + UBSan) and
# run each for a given time, one after another, then print a summary table.
#
#   usage: scripts/fuzz.sh TARGET|all SECONDS [extra libFuzzer flags...]
#          scripts/fuzz.sh report      (the results table docs/RELIABILITY.md quotes)
#   targets: safetensors index config model tokenizer trace cli_args template toolcall serve_request
#   env: FUZZ_BUILD (default build-fuzz), FUZZ_RSS_MB (default 2048),
#        FUZZ_NO_BUILD=1 to skip the build step, MOESTREAM=path/to/moestream
#        (the `model` target needs a tiny synth model; it is generated once into
#        FUZZ_BUILD/model-tiny with MOESTREAM, else build-rel/ or build/moestream).
#
# Each target starts from a copy of its committed seeds (tests/fuzz/corpus/T)
# in FUZZ_BUILD/corpus/T (the committed seeds are never modified), with the
# dictionary tests/fuzz/dict/T.dict, -max_len per target, -timeout=10 (a slower
# input counts as a hang), -rss_limit_mb, leak detection on (ASan LeakSanitizer).
# Findings land in FUZZ_BUILD/artifacts/T/ (crash-*, timeout-*, leak-*, oom-*);
# reproduce one with FUZZ_BUILD/fuzz_T FILE. One row per target run (date,
# commit, target, execs, exec/s, seconds, crashes, hangs, leaks, OOMs, peak RSS)
# is appended to the committed tests/fuzz/results.tsv (FUZZ_RESULTS to write
# elsewhere); `report` sums it per target and commit into a markdown table.
# Exit status: 0 if nothing was found, 1 if any target found something, 2 on
# usage errors.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
all_targets="safetensors index config model tokenizer trace cli_args template toolcall serve_request"
usage() { sed -n 3,13p "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
results="${FUZZ_RESULTS:-$root/tests/fuzz/results.tsv}"
if [ "${1:-}" = report ]; then
  # one row per (target, commit): runs, execs, seconds, findings; newest commit first per target
  awk -F'\t' 'NR > 1 { k = $3 "\t" $2; if (!(k in runs)) order[++n] = k; runs[k]++; ex[k] += $4; sec[k] += $6;
                        f[k] += $7 + $8 + $9 + $10; if ($1 > last[k]) last[k] = $1 }
       END { print "| target | commit | runs | last run | execs | seconds | exec/s | crashes+hangs+leaks+OOMs |";
             print "|---|---|---|---|---|---|---|---|";
             for (i = 1; i <= n; i++) { k = order[i]; split(k, a, "\t");
               printf "| `%s` | %s | %d | %s | %d | %d | %.0f | %d |\n", a[1], a[2], runs[k], last[k], ex[k], sec[k],
                      sec[k] ? ex[k] / sec[k] : 0, f[k] } }' "$results"
  exit 0
fi
[ $# -ge 2 ] || usage
what="$1"; secs="$2"; shift 2
case "$secs" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a positive integer, got '$secs'" >&2; exit 2;; esac
[ "$secs" -gt 0 ] || { echo "fuzz.sh: SECONDS must be > 0" >&2; exit 2; }
if [ "$what" = all ]; then targets="$all_targets"; else
  targets="$what"
  case " $all_targets " in *" $what "*) ;; *) echo "fuzz.sh: unknown target '$what' (all, $all_targets)" >&2; exit 2;; esac
fi
build="${FUZZ_BUILD:-$root/build-fuzz}"
rss="${FUZZ_RSS_MB:-2048}"

if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
  command -v clang >/dev/null || { echo "fuzz.sh: clang not found (apt-get install clang)" >&2; exit 2; }
  CC=clang cmake -S "$root/tests/fuzz" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 2
  cmake --build "$build" -j"$(nproc)" >/dev/null || { echo "fuzz.sh: build failed" >&2; exit 2; }
fi

max_len() {
  case "$1" in
    safetensors) echo 16384 ;;  # shard headers of the tiny model are < 7 KiB
    index) echo 8192 ;;
    config) echo 8192 ;;
    model) echo 8192 ;;
    tokenizer) echo 32768 ;;    # the synth tokenizer.json is 14.5 KiB
    trace) echo 16384 ;;
    cli_args) echo 512 ;;
    serve_request) echo 8192 ;;
    template) echo 16384 ;;     # the largest shared template (GigaChat3) is 14 KiB
    toolcall) echo 4096 ;;
  esac
}

found=0
printf 'target\texecs\texec_per_s\tseconds\tcrashes\thangs\tleaks\tooms\tpeak_rss_mb\n' >"$build/summary.tsv"
for t in $targets; do
  exe="$build/fuzz_$t"
  [ -x "$exe" ] || { echo "fuzz.sh: $exe missing" >&2; exit 2; }
  corpus="$build/corpus/$t"; art="$build/artifacts/$t"; log="$build/logs/$t.log"
  mkdir -p "$corpus" "$art" "$(dirname "$log")"
  cp -n "$root/tests/fuzz/corpus/$t/"* "$corpus/" 2>/dev/null || true
  dict=(); [ -f "$root/tests/fuzz/dict/$t.dict" ] && dict=(-dict="$root/tests/fuzz/dict/$t.dict")
  if [ "$t" = model ]; then
    dict=(-dict="$root/tests/fuzz/dict/config.dict")
    if [ ! -f "$build/model-tiny/config.json" ]; then
      ms="${MOESTREAM:-}"
      for c in "$root/build-rel/moestream" "$root/build/moestream"; do [ -z "$ms" ] && [ -x "$c" ] && ms="$c"; done
      [ -n "$ms" ] || { echo "fuzz.sh: the model target needs a moestream binary (MOESTREAM=...)" >&2; exit 2; }
      "$ms" synth --preset tiny --force -q --out "$build/model-tiny" || exit 2
    fi
    export MS_FUZZ_MODEL="$build/model-tiny"
  fi
  before=$(ls "$art" | wc -l)
  echo "== fuzz_$t for ${secs}s (max_len $(max_len "$t"), log $log)"
  start=$(date +%s); touch "$build/logs/.start-$t"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$exe" "$corpus" -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb="$rss" \
      -malloc_limit_mb="$rss" -print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" "$@" >"$log" 2>&1
  rc=$?
  el=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  prss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  new=$(( $(ls "$art" | wc -l) - before ))
  # findings of this run only (artifacts of earlier runs stay in the folder)
  found() { find "$art" -maxdepth 1 -name "$1-*" -newer "$build/logs/.start-$t" | wc -l; }
  c=$(found crash); h=$(found timeout); l=$(found leak); o=$(found oom)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${execs:-?}" "${eps:-?}" "$el" "$c" "$h" "$l" "$o" "${prss:-?}" \
    >>"$build/summary.tsv"
  [ -s "$results" ] || printf 'date\tcommit\ttarget\texecs\texec_per_s\tseconds\tcrashes\thangs\tleaks\tooms\tpeak_rss_mb\n' >"$results"
  rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
  git -C "$root" diff --quiet HEAD -- src io cache kernels policies tests/fuzz ':(exclude)tests/fuzz/results.tsv' 2>/dev/null || rev="$rev+dirty"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$rev" "$t" "${execs:-0}" \
    "${eps:-0}" "$el" "$c" "$h" "$l" "$o" "${prss:-?}" >>"$results"
  if [ "$rc" -ne 0 ] || [ "$new" -gt 0 ]; then
    found=1
    echo "!! fuzz_$t: exit $rc, $new new artifact(s) in $art:"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -5
  fi
done
echo
column -t -s $'\t' "$build/summary.tsv"
exit "$found"

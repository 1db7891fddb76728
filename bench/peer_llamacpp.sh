#!/usr/bin/env bash
# peer_llamacpp.sh - moestream and llama.cpp side by side on the same weights.
#
#   bench/peer_llamacpp.sh LLAMA_BUILD_DIR MODEL_DIR MODEL.gguf [LIMIT]
#
# LLAMA_BUILD_DIR: a llama.cpp build (bin/llama-bench), made outside this tree.
# MODEL.gguf: MODEL_DIR converted with ../shared/tools/mlx2gguf.py (for identical
# routing use a copy of the model whose config.json has n_group 1, topk_group 1).
# Runs, with THREADS (default 2) threads:
#   resident:    prefill of 512 and 2048 tokens, decode of 32 tokens
#                (llama-bench pp512/pp2048/tg32; moestream bench prefill
#                --io resident and bench decode --io resident, warm rows)
#   out of core: with LIMIT (e.g. 8704M) the same prefill of 2048 tokens and
#                decode inside bench/limited.sh LIMIT (a memory cgroup): llama.cpp
#                reads through mmap, moestream through its cache with
#                --ram LIMIT minus 512 MiB for the kernel
# and prints one table with the ratios (moestream / llama.cpp). Figures only.
# RESIDENT=0 skips the resident rows and runs only the out-of-core ones (LIMIT
# required): for a model larger than the host's RAM, which cannot run resident.
# OOC_TOKENS (default 2048) is the out-of-core prefill length (small for a smoke test).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
[ $# -ge 3 ] || { sed -n 3,19p "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
LB="$1"; MODEL="$2"; GGUF="$3"; LIMIT="${4:-}"
THREADS="${THREADS:-2}"
RESIDENT="${RESIDENT:-1}"
OOC_TOKENS="${OOC_TOKENS:-2048}"
MS="${MOESTREAM:-$root/build/moestream}"
bench="$LB/bin/llama-bench"
[ -x "$bench" ] || { echo "peer_llamacpp.sh: $bench not found (build llama.cpp first)" >&2; exit 2; }
[ -x "$MS" ] || { echo "peer_llamacpp.sh: $MS not found (bash scripts/build.sh)" >&2; exit 2; }
[ "$RESIDENT" = 1 ] || [ -n "$LIMIT" ] || { echo "peer_llamacpp.sh: RESIDENT=0 needs LIMIT" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

llama_ts() { # $1 = json file, $2 = n_prompt, $3 = n_gen: average tok/s
  python3 -c "import json,sys; r=[x for x in json.load(open('$1')) if x['n_prompt']==$2 and x['n_gen']==$3]; print('%.2f'%r[0]['avg_ts'] if r else 'nan')"
}
ms_prefill() { # $1 = json lines, $2 = tokens: median tok/s
  python3 -c "import json; r=[json.loads(l) for l in open('$1') if l.strip()]; r=[x for x in r if x['tokens']==$2]; print('%.2f'%r[0]['median_tok_s'] if r else 'nan')"
}
ms_decode() { # $1 = bench decode json: the warm row's decode tok/s
  python3 -c "import json; r=[x for x in json.load(open('$1')) if x.get('phase')=='warm']; print('%.2f'%r[0]['decode_tok_s'] if r else 'nan')"
}
timed() { # $1 = label, rest = command: runs it, prints its wall time to stderr
  local label="$1" t0 rc=0; shift; t0=$(date +%s.%N)
  "$@" || rc=$?
  python3 -c "print('%s: wall %.1f s' % ('$label', $(date +%s.%N) - $t0))" >&2
  return $rc
}
ratio() { python3 -c "a,b=float('$1'),float('$2'); print('%.2fx'%(a/b) if b>0 and a==a else '-')"; }

printf '%-34s %12s %12s %8s\n' "setup" "llama.cpp" "moestream" "ratio"
if [ "$RESIDENT" = 1 ]; then
  echo "resident, $THREADS threads:" >&2
  "$bench" -m "$GGUF" -p 512,2048 -n 32 -t "$THREADS" -o json > "$tmp/llama.json"
  "$MS" bench prefill --model "$MODEL" --tokens 512,2048 --io resident --threads "$THREADS" --repeat 3 --json \
    > "$tmp/ms_prefill.json"
  "$MS" bench decode --model "$MODEL" --ram 64G --io resident -n 32 --prompt-tokens 16 --threads "$THREADS" --json \
    > "$tmp/ms_decode.json"
  for n in 512 2048; do
    a=$(ms_prefill "$tmp/ms_prefill.json" $n); b=$(llama_ts "$tmp/llama.json" $n 0)
    printf '%-34s %12s %12s %8s\n' "resident prefill $n tok/s" "$b" "$a" "$(ratio "$a" "$b")"
  done
  a=$(ms_decode "$tmp/ms_decode.json"); b=$(llama_ts "$tmp/llama.json" 0 32)
  printf '%-34s %12s %12s %8s\n' "resident decode tok/s" "$b" "$a" "$(ratio "$a" "$b")"
fi

if [ -n "$LIMIT" ]; then
  ram=$(( $(numfmt --from=iec "$LIMIT") - (512 << 20) ))
  echo "out of core: cgroup $LIMIT, moestream --ram $(numfmt --to=iec $ram)" >&2
  timed "llama.cpp out of core" bash "$here/limited.sh" "$LIMIT" "$bench" -m "$GGUF" -p "$OOC_TOKENS" -n 32 -t "$THREADS" -r 1 -o json > "$tmp/llama_ooc.json"
  timed "moestream prefill out of core" bash "$here/limited.sh" "$LIMIT" "$MS" bench prefill --model "$MODEL" --tokens "$OOC_TOKENS" --ram "$ram" --io uring \
    --threads "$THREADS" --repeat 1 --json > "$tmp/ms_prefill_ooc.json"
  timed "moestream decode out of core" bash "$here/limited.sh" "$LIMIT" "$MS" bench decode --model "$MODEL" --ram "$ram" --io uring -n 32 \
    --prompt-tokens 16 --threads "$THREADS" --json > "$tmp/ms_decode_ooc.json"
  echo "moestream prefill out of core: $(cat "$tmp/ms_prefill_ooc.json")" >&2
  a=$(ms_prefill "$tmp/ms_prefill_ooc.json" "$OOC_TOKENS"); b=$(llama_ts "$tmp/llama_ooc.json" "$OOC_TOKENS" 0)
  printf '%-34s %12s %12s %8s\n' "cgroup $LIMIT prefill $OOC_TOKENS tok/s" "$b" "$a" "$(ratio "$a" "$b")"
  a=$(ms_decode "$tmp/ms_decode_ooc.json"); b=$(llama_ts "$tmp/llama_ooc.json" 0 32)
  printf '%-34s %12s %12s %8s\n' "cgroup $LIMIT decode tok/s" "$b" "$a" "$(ratio "$a" "$b")"
fi

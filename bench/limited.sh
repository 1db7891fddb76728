#!/usr/bin/env bash
# Run a command inside a memory-limited cgroup (v1 memory controller or v2),
# to emulate a host with LIMIT of RAM: `bench/limited.sh 8G moestream bench decode ...`.
# Prints the cgroup's peak usage and OOM/failure counters afterwards. Needs root.
set -euo pipefail
LIMIT=$1; shift
bytes=$(numfmt --from=iec "$LIMIT")
name=moestream-bench-$$
if [ -d /sys/fs/cgroup/memory ] && [ -w /sys/fs/cgroup/memory ]; then
  cg=/sys/fs/cgroup/memory/$name
  mkdir "$cg"
  echo "$bytes" > "$cg/memory.limit_in_bytes"
  [ -f "$cg/memory.memsw.limit_in_bytes" ] && echo "$bytes" > "$cg/memory.memsw.limit_in_bytes" || true
  set +e
  sh -c "echo \$\$ > $cg/cgroup.procs; exec \"\$@\"" sh "$@"
  rc=$?
  set -e
  echo "cgroup v1 limit $LIMIT: max_usage $(numfmt --to=iec "$(cat "$cg/memory.max_usage_in_bytes")"), failcnt $(cat "$cg/memory.failcnt"), oom_kill $(grep -E '^oom_kill ' "$cg/memory.oom_control" | cut -d' ' -f2)" >&2
  rmdir "$cg" 2>/dev/null || true
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  cg=/sys/fs/cgroup/$name
  mkdir "$cg"
  echo "$bytes" > "$cg/memory.max"
  echo 0 > "$cg/memory.swap.max" 2>/dev/null || true
  set +e
  sh -c "echo \$\$ > $cg/cgroup.procs; exec \"\$@\"" sh "$@"
  rc=$?
  set -e
  echo "cgroup v2 limit $LIMIT: peak $(numfmt --to=iec "$(cat "$cg/memory.peak" 2>/dev/null || echo 0)"), events: $(tr '\n' ' ' < "$cg/memory.events")" >&2
  rmdir "$cg" 2>/dev/null || true
else
  echo "no writable cgroup memory controller" >&2
  exit 2
fi
exit $rc

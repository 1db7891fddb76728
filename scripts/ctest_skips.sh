#!/usr/bin/env bash
# ctest_skips.sh BUILD_DIR [ctest args...] - run ctest in BUILD_DIR (all tests,
# -j nproc, output on failure), then list every skipped test with its reason
# from BUILD_DIR/skipped-tests.txt (tests/helpers MST_SKIP appends one line per
# skip; the file is emptied first). Exit status: ctest's.
set -uo pipefail
b="$1"; shift
rm -f "$b/skipped-tests.txt"
(cd "$b" && ctest --output-on-failure -j"$(nproc)" "$@")
rc=$?
if [ -s "$b/skipped-tests.txt" ]; then
  echo "== $(wc -l <"$b/skipped-tests.txt") skipped test(s) in $b${CI:+ (CI=$CI)}:"
  cat "$b/skipped-tests.txt"
else
  echo "== no test skipped in $b"
fi
exit "$rc"

#!/bin/sh
# bench_smoke.sh: the bench harness runs (no timings are checked): the matmul
# row in --quick mode writes a JSON row with a value, and a misspelt row is an
# error naming the known ones. Prints TAP.
# Usage: tests/bench_smoke.sh [path/to/deepdance]   (default: $DD_BIN or ./deepdance)
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-${DD_BIN:-./deepdance}}
echo "1..2"
if [ ! -x build/bench/sgemm ]; then
    echo "ok 1 # SKIP build/bench/sgemm is not built (make tests-build or make bench)"
    echo "ok 2 # SKIP build/bench/sgemm is not built"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if "$BIN" bench/run.lua --quick --only matmul --json "$tmp/r.json" >"$tmp/out" 2>&1 &&
   "$BIN" -e "local r = dd.json.decode(io.open('$tmp/r.json'):read('a'))[1]
              assert(r.id == 'matmul' and r.value > 0 and r.peer > 0 and r.ratio > 0 and r.peak_rss_mb > 0)" \
       >>"$tmp/out" 2>&1; then
    echo "ok 1 - bench/run.lua --quick --only matmul writes a matmul row"
else
    echo "not ok 1 - bench/run.lua --quick --only matmul writes a matmul row"
    sed 's/^/# /' "$tmp/out"
fi

if "$BIN" bench/run.lua --only matmull >"$tmp/out2" 2>&1; then
    echo "not ok 2 - an unknown row is an error (it ran)"
elif grep -q "unknown row 'matmull' (known: matmul, conv, ingest" "$tmp/out2"; then
    echo "ok 2 - an unknown row is an error naming the known rows"
else
    echo "not ok 2 - an unknown row is an error naming the known rows"
    sed 's/^/# /' "$tmp/out2"
fi

#!/usr/bin/env bash
# asan.sh: CI's sanitizer pass. Builds build-asan/ (make asan-build, see
# mk/sanitize.mk: gcc -fsanitize=address,undefined, separate from build/) and
# runs every C test and every Lua spec against it: any out-of-bounds access,
# use after free, leak at exit or undefined behaviour fails the suite. All of
# them, not a subset: under the sanitizers they take about 80 s on 2 cores
# (most spec time is spent in ffmpeg and other child processes, which are not
# slowed down). One TAP line per test binary or spec file; the detail of a
# failure is printed as TAP comments.
cd "$(dirname "$0")/.." || exit 2
n=0
tap() { n=$((n + 1)); echo "$1 $n - $2"; }

if ! out=$(make -s --no-print-directory asan-build 2>&1); then
    echo "$out" | tail -30 | sed 's/^/# /'
    tap "not ok" "asan: make asan-build failed"
    exit 1
fi
export DEEPDANCE_HOME=$PWD
export ASAN_OPTIONS=detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# run NAME COMMAND...: one TAP line for a TAP-speaking command.
run() {
    local name=$1; shift
    local out rc pass fail
    out=$("$@" 2>&1)
    rc=$?
    pass=$(grep -cE '^ok [0-9]+' <<<"$out")
    fail=$(grep -cE '^not ok [0-9]+' <<<"$out")
    if [ $rc -eq 0 ] && [ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]; then
        tap ok "asan: $name ($pass passed)"
    else
        grep -vE '^ok [0-9]+' <<<"$out" | tail -60 | sed 's/^/# /'
        tap "not ok" "asan: $name ($pass passed, $fail failed, exit $rc)"
    fi
}

for t in build-asan/tests/test_*; do
    CMOCKA_MESSAGE_OUTPUT=TAP run "$t" "$t"
done
for spec in tests/lua/*_spec.lua; do
    run "$spec" build-asan/deepdance /usr/bin/busted -o TAP "$spec"
done

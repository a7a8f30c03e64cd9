#!/usr/bin/env bash
# Runs every test suite and prints one closing line "N passed, N failed".
# Suites speak TAP: C kernel tests (cmocka, build/tests/test_*), Lua tests
# (busted under ./deepdance, tests/lua/*_spec.lua) and shell tests (tests/*.sh).
# Usage: tests/run.sh [c|lua|sh]...   (default: all)
# DD_BIN (default ./deepdance) and DD_BUILD (default build, for DD_BUILD/tests/)
# point it at another build, e.g. the sanitizer build of `make test-asan`.
cd "$(dirname "$0")/.." || exit 2
which=("$@")
[ ${#which[@]} -eq 0 ] && which=(c lua sh)
passed=0 failed=0 skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Counts TAP lines of one suite's output; a suite that exits non-zero without
# reporting a failure (a crash, a missing binary) counts as one failure.
run_suite() {
    local name=$1; shift
    echo "== $name"
    "$@" >"$log" 2>&1
    local rc=$?
    cat "$log"
    local ok notok skip
    # TAP: "ok N", "not ok N"; either with "# SKIP" is a skip, not a result.
    ok=$(grep -E '^ok [0-9]+' "$log" | grep -cvE '# ?SKIP')
    notok=$(grep -E '^not ok [0-9]+' "$log" | grep -cvE '# ?SKIP')
    skip=$(grep -E '^(not )?ok [0-9]+' "$log" | grep -cE '# ?SKIP')
    passed=$((passed + ok))
    failed=$((failed + notok))
    skipped=$((skipped + skip))
    if [ "$rc" -ne 0 ] && [ "$notok" -eq 0 ]; then
        echo "not ok - $name exited with status $rc without reporting a failure"
        failed=$((failed + 1))
    fi
}

export DD_TEST_SEED=${DD_TEST_SEED:-1234}
echo "test seed: $DD_TEST_SEED"
for w in "${which[@]}"; do
    case $w in
    c)
        for t in "${DD_BUILD:-build}"/tests/test_*; do
            [ -x "$t" ] && CMOCKA_MESSAGE_OUTPUT=TAP run_suite "$t" "$t"
        done ;;
    lua)
        run_suite "busted tests/lua" "${DD_BIN:-./deepdance}" /usr/bin/busted -o TAP --pattern=_spec tests/lua ;;
    sh)
        for t in tests/*.sh; do
            [ "$t" = tests/run.sh ] && continue
            [ -x "$t" ] && run_suite "$t" "$t"
        done ;;
    esac
done
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]

#!/usr/bin/env bash
# fuzz_smoke.sh: the CI smoke of the libFuzzer harnesses (fuzz/, mk/fuzz.mk).
# Builds build-fuzz/ (ASan + UBSan + coverage, clang), then for each harness
# replays the committed seeds and every past finding (fuzz/regressions/NAME/)
# and fuzzes a fixed number of runs from the test seed. Prints one TAP line
# per harness; skips when clang or its libFuzzer runtime is missing.
# Long campaigns are `make fuzz FUZZ_SECONDS=...` (docs/reliability.md).
cd "$(dirname "$0")/.." || exit 2
n=0
tap() { n=$((n + 1)); echo "$1 $n - $2"; }

probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' > "$probe/p.c"
if ! command -v "${FUZZ_CC:-clang}" >/dev/null 2>&1 ||
   ! "${FUZZ_CC:-clang}" -fsanitize=fuzzer,address -o "$probe/p" "$probe/p.c" >/dev/null 2>&1; then
    tap ok "fuzz smoke # SKIP clang with the libFuzzer runtime is not installed (apt-get install clang libclang-rt-14-dev)"
    exit 0
fi
if ! out=$(make -s --no-print-directory fuzz-build 2>&1); then
    echo "$out" | tail -20 | sed 's/^/# /'
    tap "not ok" "fuzz smoke: make fuzz-build failed"
    exit 1
fi

# runs per harness: enough to exercise every harness's paths, a few seconds each
declare -A RUNS=([safetensors]=20000 [png]=20000 [checkpoint]=3000 [tensor]=3000 [video]=300)
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
seed=${DD_TEST_SEED:-1234}
for bin in build-fuzz/fuzz_*; do
    name=${bin#build-fuzz/fuzz_}
    runs=${RUNS[$name]:-2000}
    limit=512 leaks=1
    [ "$name" = video ] && limit=2560       # as fuzz/run.sh
    case $name in tensor|checkpoint) leaks=0 ;; esac
    new=$(mktemp -d)
    crashes=build-fuzz/crashes/smoke-$name
    mkdir -p "$crashes"
    dirs=("$new" "fuzz/corpus/$name")
    [ -d "fuzz/regressions/$name" ] && dirs+=("fuzz/regressions/$name")
    # checkpoints are safetensors files: the reader's findings go through dd.load too
    [ "$name" = checkpoint ] && [ -d fuzz/regressions/safetensors ] && dirs+=(fuzz/regressions/safetensors)
    dict=()
    [ -f "fuzz/$name.dict" ] && dict=(-dict="fuzz/$name.dict")
    start=$SECONDS
    out=$("$bin" -seed="$seed" -runs="$runs" -max_total_time=120 -timeout=25 -rss_limit_mb=2560 \
          -malloc_limit_mb=$limit -detect_leaks=$leaks -artifact_prefix="$crashes/" "${dict[@]}" "${dirs[@]}" 2>&1)
    rc=$?
    rm -rf "$new"
    nreg=0
    [ ${#dirs[@]} -gt 2 ] && nreg=$(find "${dirs[@]:2}" -type f | wc -l)
    if [ $rc -eq 0 ]; then
        tap ok "fuzz_$name: seeds and $nreg past findings replayed, $runs runs in $((SECONDS - start)) s"
    else
        echo "$out" | grep -vE '^#[0-9]+|^INFO:' | tail -40 | sed 's/^/# /'
        tap "not ok" "fuzz_$name: crashed (exit $rc); input saved in $crashes/"
    fi
done

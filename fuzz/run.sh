#!/usr/bin/env bash
# run.sh NAME SECONDS [libFuzzer options...]: runs build-fuzz/fuzz_NAME for
# SECONDS under `nice -n 10`, over the committed seeds fuzz/corpus/NAME plus
# what earlier runs found (build-fuzz/corpus/NAME, where new inputs go), with
# fuzz/NAME.dict when there is one. A crash, leak, UB report or timeout stops
# the run with a non-zero status and leaves the input in build-fuzz/crashes/NAME/;
# so does any single allocation above 512 MB (-malloc_limit_mb), except for
# video: FFmpeg's demuxers allocate what a file declares (a 225-byte APNG
# made avformat_open_input ask for 664 MB, never touched), so there only the
# resident size counts.
set -u
cd "$(dirname "$0")/.." || exit 2
name=$1 seconds=$2
shift 2
bin=${FUZZ_BUILD:-build-fuzz}/fuzz_$name   # FUZZ_BUILD: another build of the harnesses (mk/fuzz.mk)
[ -x "$bin" ] || { echo "run.sh: $bin is not built (make fuzz-build)" >&2; exit 2; }
mkdir -p "build-fuzz/corpus/$name" "build-fuzz/crashes/$name"
malloc_limit=512 leaks=1
[ "$name" = video ] && malloc_limit=2560
case $name in tensor|checkpoint) leaks=0 ;; esac   # see fuzz_tensor.c: leaks are checked at exit only
dict=()
[ -f "fuzz/$name.dict" ] && dict=(-dict="fuzz/$name.dict")
# Only deepdance is instrumented: leaks inside FFmpeg/libpng/OpenBLAS are still reported.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec nice -n 10 "$bin" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -malloc_limit_mb="$malloc_limit" -detect_leaks=$leaks -print_final_stats=1 \
    -artifact_prefix="build-fuzz/crashes/$name/" "${dict[@]}" "$@" \
    "build-fuzz/corpus/$name" "fuzz/corpus/$name"

#!/usr/bin/env bash
# Crash safety, full disk: every writer (dd.save, dd.nn.save, image.save,
# FrameWriter:save, the video writer, CSVLogger, dd.fit's checkpoint) meets a
# full disk, raises an error that names the file and the reason, and leaves the
# file it was replacing as it was; with room again, dd.fit resumes and ends
# exactly as an uninterrupted run. The disk is a 2 MB tmpfs filled up (root),
# else a file-size limit (ulimit -f, SIGXFSZ ignored so write() fails with EFBIG).
cd "$(dirname "$0")/.." || exit 2
DD=$(realpath "${DD_BIN:-./deepdance}")
tmp=$(mktemp -d /tmp/dd-crash-disk.XXXXXX)
disk=$tmp/disk
mkdir -p "$disk" "$tmp/ref"
how=ulimit  # DD_DISK_FULL=ulimit forces the fallback
if [ "${DD_DISK_FULL:-}" != ulimit ] && [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=2m dd-crash-disk "$disk" 2>/dev/null; then how=tmpfs; fi
cleanup() {
    [ $how = tmpfs ] && umount "$disk"
    rm -rf "$tmp"
}
trap cleanup EXIT

n=0 failed=0
# Runs one phase of tests/crash/disk.lua and numbers its PASS/FAIL lines as TAP.
phase() {
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    while IFS= read -r line; do
        case $line in
        PASS*) n=$((n + 1)); echo "ok $n - ${line#PASS }" ;;
        FAIL*) n=$((n + 1)); echo "not ok $n - ${line#FAIL }"; failed=1 ;;
        *) echo "# $line" ;;
        esac
    done <<<"$out"
    if [ $rc -ne 0 ]; then n=$((n + 1)); echo "not ok $n - disk.lua $2 exited with status $rc"; failed=1; fi
}

echo "# full disk by $how"
phase "$DD" tests/crash/disk.lua prepare "$disk"
if [ $how = tmpfs ]; then
    cat /dev/zero >"$disk/filler" 2>/dev/null # fills the tmpfs: the next write finds ENOSPC
    phase "$DD" tests/crash/disk.lua full "$disk"
    rm -f "$disk/filler"
else
    phase bash -c 'trap "" XFSZ; ulimit -f 1; exec "$@"' limited "$DD" tests/crash/disk.lua full "$disk"
fi
phase "$DD" tests/crash/disk.lua after "$disk" "$tmp/ref"
echo "1..$n"
exit $failed

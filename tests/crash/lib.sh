# tests/crash/lib.sh: shared by tests/crash_kill.sh and tests/crash_sigint.sh (sourced
# from the repository root). A small autoencoder run (experiments/train_autoencoder.lua,
# 8 epochs of 11 batches on 48 frames of 48x64) is the training both interrupt.
DD=$(realpath "${DD_BIN:-./deepdance}")
tmp=$(mktemp -d /tmp/dd-crash.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
RANDOM=${DD_TEST_SEED:-1234}
n=0 failed=0

# check "description" cond...: one TAP line
check() {
    local what=$1
    shift
    n=$((n + 1))
    if "$@"; then echo "ok $n - $what"; else echo "not ok $n - $what"; failed=1; fi
}

"$DD" tests/crash/tools.lua frames "$tmp/frames.safetensors" || exit 1

# train OUT [--resume]: the command under test. train_bg: the same in the
# background, with $pid the deepdance process itself (not a subshell).
train_cmd() {
    local out=$1
    shift
    cmd=("$DD" experiments/train_autoencoder.lua --data "$tmp/frames.safetensors" --out "$out" --epochs 8
        --batch-size 4 --filters 4 --latent 8 --progress lines --seed 3 "$@")
}
train() { train_cmd "$@"; "${cmd[@]}"; }
train_bg() {
    local log=$1
    shift
    train_cmd "$@"
    "${cmd[@]}" >"$log" 2>&1 &
    pid=$!
}
# reap: waits for $pid quietly (no "Killed" notice from the shell); rc = its status
reap() {
    { wait "$pid"; } 2>/dev/null
    rc=$?
    pid=
}

# checkpoint_state PATH: "none", "E" (after epoch E) or "E+B" (in epoch E after batch B)
checkpoint_state() {
    "$DD" -e "local ok, h = pcall(dd.safetensors_header, '$1')
      if not ok then print(tostring(h):find('cannot open') and 'none' or 'unreadable') return end
      local fit = dd.json.decode(h.__metadata__.meta).fit
      print(fit.partial and (fit.partial.epoch .. '+' .. fit.partial.step) or fit.epoch)"
}

# The line a resumed run prints for a checkpoint state.
resume_line() {
    case $1 in
    none) echo "resume: no checkpoint at" ;;
    *+*) echo "in epoch ${1%+*} after batch ${1#*+} of" ;;
    *) echo "after epoch $1" ;;
    esac
}

mtime() { stat -c %y "$1" 2>/dev/null || echo none; }

# wait_checkpoint PATH OLD: until the file's mtime differs from OLD or the
# background process $pid has ended (60 s at most). Returns 1 when it ended.
wait_checkpoint() {
    local i
    for ((i = 0; i < 6000; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        [ "$(mtime "$1")" != "$2" ] && return 0
        sleep 0.01
    done
    return 0
}

# compare A B: the finished runs are the same (tests/crash/tools.lua compare)
compare() { "$DD" tests/crash/tools.lua compare "$1" "$2" >"$tmp/compare.txt" 2>&1 || { sed 's/^/# /' "$tmp/compare.txt"; return 1; }; }

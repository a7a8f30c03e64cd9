#!/bin/sh
# sweep_local.sh: `deepdance sweep` on this machine, as a user runs it: a
# 6-trial sweep with 2 workers prints its leaderboard and a second run does
# nothing new; at most 2 trials run at a time; a sweep killed with SIGKILL
# leaves no trial running and continues where it stopped; shards 0/2 and 1/2
# collected equal the unsharded sweep. Prints TAP. About 15 s.
# Usage: tests/sweep_local.sh [path/to/deepdance]   (default: ./deepdance)
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-${DEEPDANCE_BIN:-./deepdance}}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac

T=$(mktemp -d)
RUNNER=
cleanup() {
    [ -n "$RUNNER" ] && kill -9 "$RUNNER" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

echo "1..7"
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
    shift
    for f in "$@"; do [ -f "$f" ] && sed 's/^/# /' "$f"; done
}
# rows of a results.csv without the header
rows() { tail -n +2 "$1" | wc -l | tr -d ' '; }
# a results.csv without its seconds column (timings differ between runs)
no_seconds() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds") s = i }
             { out = ""; for (i = 1; i <= NF; i++) if (i != s) out = out (out == "" ? "" : ",") $i; print out }' "$1"
}
starts() { grep -c "== deepdance sweep: start" "$1"; }

# 1. the shipped toy sweep: 6 trials, 2 workers
"$BIN" sweep experiments/sweeps/quadratic.lua --out "$T/q" --workers 2 >"$T/q1.txt" 2>&1
rc=$?
board=$(grep -cE '^[1-6] +trial-000[1-6] ' "$T/q1.txt")
if [ $rc -eq 0 ] && grep -q "6 to run, 2 at a time" "$T/q1.txt" && grep -q "6 trials: 6 ok" "$T/q1.txt" &&
    grep -qE '^rank +trial +loss +status +x +y$' "$T/q1.txt" && [ "$board" = 6 ] && [ "$(rows "$T/q/results.csv")" = 6 ]; then
    ok "a 6-trial sweep with 2 workers finishes and prints its leaderboard"
else
    not_ok "a 6-trial sweep with 2 workers finishes and prints its leaderboard (rc $rc, $board rows)" "$T/q1.txt"
fi

# 2. a second run starts nothing: same logs, same results
cat "$T"/q/trial-*/log.txt | md5sum >"$T/logs_before"
cp "$T/q/results.csv" "$T/results_before.csv"
"$BIN" sweep experiments/sweeps/quadratic.lua --out "$T/q" --workers 2 >"$T/q2.txt" 2>&1
rc=$?
cat "$T"/q/trial-*/log.txt | md5sum >"$T/logs_after"
if [ $rc -eq 0 ] && grep -q "6 done; nothing to run" "$T/q2.txt" && ! grep -q '^\[' "$T/q2.txt" &&
    cmp -s "$T/logs_before" "$T/logs_after" && cmp -s "$T/results_before.csv" "$T/q/results.csv" &&
    [ "$(grep -cE '^[1-6] +trial-' "$T/q2.txt")" = 6 ]; then
    ok "a second run does nothing new and prints the same leaderboard"
else
    not_ok "a second run does nothing new (rc $rc)" "$T/q2.txt"
fi

# A trial that notes when it runs (CLOCK_MONOTONIC is one clock for every
# process) and sleeps per epoch, so runs overlap and can be killed midway.
cat >"$T/timed.lua" <<'EOF'
local p = dd.cli.parser("timed.lua")
p:option("--x"):convert(tonumber)
p:option("--epochs", "", "1"):convert(math.tointeger)
p:option("--sleep", "", "0.4"):convert(tonumber)
p:option("--out")
local o = dd.cli.parse(p, arg)
local f = io.open(o.out .. "/times", "a")
f:write(("start %.6f\n"):format(dd.clock()))
f:close()
for epoch = 1, o.epochs do
  dd.process.sleep(o.sleep)
  dd.report{ epoch = epoch, loss = (o.x - 1) ^ 2 + 1 / epoch }
end
f = io.open(o.out .. "/times", "a")
f:write(("end %.6f\n"):format(dd.clock()))
f:close()
EOF
cat >"$T/timed_spec.lua" <<EOF
return { script = "$T/timed.lua", args = { out = "{trial_dir}", epochs = tonumber(os.getenv("EPOCHS") or "1") },
         space = { x = { 0, 0.5, 1, 1.5, 2, 2.5 } }, metric = "loss", workers = 2 }
EOF

# 3. never more than 2 trials at a time, and 2 did run together
"$BIN" sweep "$T/timed_spec.lua" --out "$T/t" >"$T/t.txt" 2>&1
rc=$?
cat "$T"/t/trial-*/times | sort -k2 -n | awk '
    $1 == "start" { now++; if (now > most) most = now }
    $1 == "end" { now-- }
    END { print most + 0 }' >"$T/most"
most=$(cat "$T/most")
if [ $rc -eq 0 ] && [ "$most" = 2 ]; then
    ok "2 workers run 2 trials at a time, never more"
else
    not_ok "2 workers run 2 trials at a time, never more (rc $rc, at most $most at once)" "$T/t.txt"
fi

# 4. SIGKILL the runner mid-sweep: its trials die with it; a rerun continues
EPOCHS=4 "$BIN" sweep "$T/timed_spec.lua" --out "$T/k" >"$T/k1.txt" 2>&1 &
RUNNER=$!
i=0
while [ "$(ls "$T"/k/trial-*/result.json 2>/dev/null | wc -l)" -lt 2 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.5
kill -9 "$RUNNER"
wait "$RUNNER" 2>/dev/null
RUNNER=
sleep 0.5
finished=$(ls "$T"/k/trial-*/result.json 2>/dev/null | wc -l | tr -d ' ')
left=$(pgrep -f "$T/timed.lua" | wc -l | tr -d ' ')
if [ "$finished" -ge 2 ] && [ "$finished" -lt 6 ] && [ "$left" = 0 ]; then
    ok "a killed sweep leaves no trial running ($finished of 6 finished)"
else
    not_ok "a killed sweep leaves no trial running ($finished of 6 finished, $left trials still running)" "$T/k1.txt"
fi

# 5. ... and the rerun runs only what had not finished
ls "$T"/k/trial-*/result.json | sed 's#/result.json##' >"$T/done_before"
EPOCHS=4 "$BIN" sweep "$T/timed_spec.lua" --out "$T/k" >"$T/k2.txt" 2>&1
rc=$?
reran=0
while read -r d; do [ "$(starts "$d/log.txt")" = 1 ] || reran=$((reran + 1)); done <"$T/done_before"
if [ $rc -eq 0 ] && grep -q "6 trials; $finished done; $((6 - finished)) to run" "$T/k2.txt" && [ $reran = 0 ] &&
    grep -q "6 trials: 6 ok" "$T/k2.txt" && [ "$(rows "$T/k/results.csv")" = 6 ]; then
    ok "a killed sweep continues where it stopped"
else
    not_ok "a killed sweep continues where it stopped (rc $rc, $reran finished trials ran again)" "$T/k2.txt"
fi

# 6. shards 0/2 and 1/2, run at the same time, then --collect == the unsharded sweep
"$BIN" sweep experiments/sweeps/quadratic.lua --out "$T/s" --shard 0/2 --workers 1 >"$T/s0.txt" 2>&1 &
s0=$!
"$BIN" sweep experiments/sweeps/quadratic.lua --out "$T/s" --shard 1/2 --workers 1 >"$T/s1.txt" 2>&1
rc1=$?
wait $s0
rc0=$?
rm -f "$T/s/results.csv"
"$BIN" sweep experiments/sweeps/quadratic.lua --out "$T/s" --collect >"$T/c.txt" 2>&1
rc=$?
no_seconds "$T/q/results.csv" >"$T/whole.csv"
no_seconds "$T/s/results.csv" >"$T/sharded.csv"
if [ $rc0 -eq 0 ] && [ $rc1 -eq 0 ] && [ $rc -eq 0 ] && grep -q "3 of them" "$T/s0.txt" &&
    grep -q "6 trials: 6 ok" "$T/c.txt" && cmp -s "$T/whole.csv" "$T/sharded.csv"; then
    ok "shards 0/2 and 1/2 collected equal the unsharded sweep"
else
    not_ok "shards 0/2 and 1/2 collected equal the unsharded sweep (rc $rc0 $rc1 $rc)" "$T/s0.txt" "$T/s1.txt" "$T/c.txt"
    diff "$T/whole.csv" "$T/sharded.csv" | sed 's/^/# /'
fi

# 7. the command line is strict and helps
"$BIN" sweep experiments/sweeps/quadratic.lua --wokers 2 >"$T/bad.txt" 2>&1
rc_bad=$?
"$BIN" sweep --help >"$T/help.txt" 2>&1
rc_help=$?
if [ $rc_bad -ne 0 ] && grep -q "unknown option '--wokers'" "$T/bad.txt" && [ $rc_help -eq 0 ] &&
    grep -q -- "--retry-failed" "$T/help.txt" && grep -q -- "--slurm" "$T/help.txt"; then
    ok "deepdance sweep rejects a misspelt option and prints its help"
else
    not_ok "deepdance sweep rejects a misspelt option and prints its help" "$T/bad.txt" "$T/help.txt"
fi

[ $failed -eq 0 ]

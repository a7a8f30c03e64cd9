#!/bin/sh
# sweep_slurm.sh: `deepdance sweep --slurm` through a real single-node Slurm.
# Starts munged, slurmctld and slurmd on localhost from a temporary directory
# with its own slurm.conf (nothing of the machine's configuration is used or
# changed), submits the toy sweep as a job array, waits for it, collects, and
# checks the results equal the same sweep run locally. Stops every daemon it
# started, also on failure. Needs root (the daemons and jobs run as root) and
# the Debian packages slurm-wlm and munge (mk/sweep.mk adds them to make deps).
# Prints TAP. About 25 s; at most about 2 minutes when Slurm never runs the jobs.
# Usage: tests/sweep_slurm.sh [path/to/deepdance]   (default: ./deepdance)
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-${DEEPDANCE_BIN:-./deepdance}}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac

if [ "$(id -u)" != 0 ]; then
    echo "1..1"
    echo "ok 1 # SKIP not root"
    exit 0
fi
for cmd in munged slurmctld slurmd sbatch squeue sinfo scancel; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        echo "1..1"
        echo "ok 1 # SKIP $cmd not installed (make deps installs slurm-wlm and munge)"
        exit 0
    fi
done

T=$(mktemp -d /tmp/ddslurm.XXXXXX)
chmod 755 "$T"
export SLURM_CONF="$T/slurm.conf"
NODE=$(hostname -s 2>/dev/null || echo localhost)
CPUS=$(nproc)
# Ports of our own, away from the defaults (6817/6818) a real Slurm may use.
PORT=$((20000 + ($$ % 5000) * 2))

dump_logs() {
    for f in "$T"/log/*.log "$T"/runs/*/slurm/shard-*.log; do
        [ -f "$f" ] || continue
        echo "# --- $f"
        tail -n 15 "$f" | sed 's/^/# /'
    done
}

stop_pidfile() { # stops the daemon whose pid is in $1, waiting up to 5 s
    [ -f "$1" ] || return 0
    pid=$(cat "$1")
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || return 0
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null
    return 0
}

cleanup() {
    scancel --quiet --user=root 2>/dev/null
    stop_pidfile "$T/slurmd.pid"
    stop_pidfile "$T/slurmctld.pid"
    stop_pidfile "$T/munge/munged.pid"
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

echo "1..4"
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
    shift
    for f in "$@"; do [ -f "$f" ] && sed 's/^/# /' "$f"; done
}
no_seconds() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds") s = i }
             { out = ""; for (i = 1; i <= NF; i++) if (i != s) out = out (out == "" ? "" : ",") $i; print out }' "$1"
}

# --- the cluster: munge, then slurmctld and slurmd -------------------------
mkdir -p "$T/munge" "$T/state" "$T/spool" "$T/log" "$T/runs"
chown munge:munge "$T/munge" 2>/dev/null
chmod 700 "$T/munge"
dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$T/munge/munge.key"
chown munge:munge "$T/munge/munge.key" 2>/dev/null
cat >"$SLURM_CONF" <<EOF
# A one-node cluster for tests/sweep_slurm.sh; everything under $T.
ClusterName=ddtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$T/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
PlugStackConfig=/dev/null
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=300
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=dd Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

started=1
munged --force --socket="$T/munge/munge.socket" --key-file="$T/munge/munge.key" --log-file="$T/log/munged.log" \
    --pid-file="$T/munge/munged.pid" --seed-file="$T/munge/munged.seed" >"$T/log/start.log" 2>&1 || started=0
[ $started = 1 ] && { slurmctld -i -f "$SLURM_CONF" >>"$T/log/start.log" 2>&1 || started=0; }
[ $started = 1 ] && { slurmd -f "$SLURM_CONF" -N "$NODE" >>"$T/log/start.log" 2>&1 || started=0; }
state=
i=0
while [ $started = 1 ] && [ $i -lt 60 ]; do
    state=$(sinfo -h -o %T 2>/dev/null)
    [ "$state" = idle ] && break
    sleep 0.5
    i=$((i + 1))
done
if [ "$state" = idle ]; then
    ok "a one-node Slurm (munged, slurmctld, slurmd) runs on localhost"
else
    not_ok "a one-node Slurm (munged, slurmctld, slurmd) runs on localhost (node state '$state')" "$T/log/start.log"
    dump_logs
    exit 1
fi

# --- the sweep as a job array, then --collect --------------------------------
"$BIN" sweep experiments/sweeps/quadratic.lua --out "$T/runs/local" >"$T/local.txt" 2>&1
"$BIN" sweep experiments/sweeps/quadratic.lua --out "$T/runs/q" --slurm --partition dd --shards 3 --time 5 \
    >"$T/submit.txt" 2>&1
rc=$?
job=$(cat "$T/runs/q/slurm/job_id" 2>/dev/null)
if [ $rc -eq 0 ] && [ -n "$job" ] && grep -q "submitted job $job" "$T/submit.txt" &&
    grep -q -- "--array=0-2" "$T/runs/q/slurm/sweep.sbatch" && grep -q -- "--partition=dd" "$T/runs/q/slurm/sweep.sbatch"; then
    ok "--slurm writes an sbatch --array script (3 shards) and submits it (job $job)"
else
    not_ok "--slurm writes an sbatch --array script and submits it (rc $rc)" "$T/submit.txt" "$T/runs/q/slurm/sweep.sbatch"
fi
i=0
while [ -n "$job" ] && [ -n "$(squeue -h -j "$job" 2>/dev/null)" ] && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
rm -f "$T/runs/q/results.csv" # each shard wrote its view; --collect makes the whole one
"$BIN" sweep experiments/sweeps/quadratic.lua --out "$T/runs/q" --collect >"$T/collect.txt" 2>&1
rc=$?
no_seconds "$T/runs/local/results.csv" >"$T/local.csv"
no_seconds "$T/runs/q/results.csv" >"$T/slurm.csv" 2>/dev/null
logs=$(ls "$T"/runs/q/slurm/shard-*.log 2>/dev/null | wc -l | tr -d ' ')
if [ $rc -eq 0 ] && grep -q "6 trials: 6 ok" "$T/collect.txt" && [ "$logs" = 3 ] &&
    grep -q "shard 2/3: 2 of them" "$T/runs/q/slurm/shard-2.log" && cmp -s "$T/local.csv" "$T/slurm.csv"; then
    ok "the array's 3 tasks ran the 6 trials; --collect equals the sweep run locally"
else
    not_ok "the array's 3 tasks ran the 6 trials; --collect equals the sweep run locally (rc $rc, $logs task logs)" \
        "$T/collect.txt"
    diff "$T/local.csv" "$T/slurm.csv" | sed 's/^/# /'
    dump_logs
fi

# --- --wait: submit, wait for the array, collect in one command --------------
timeout 45 "$BIN" sweep experiments/sweeps/quadratic.lua --out "$T/runs/w" --slurm --shards 2 --wait >"$T/wait.txt" 2>&1
rc=$?
no_seconds "$T/runs/w/results.csv" >"$T/wait.csv" 2>/dev/null
if [ $rc -eq 0 ] && grep -q "waiting for it to end" "$T/wait.txt" && grep -q "6 trials: 6 ok" "$T/wait.txt" &&
    cmp -s "$T/local.csv" "$T/wait.csv"; then
    ok "--slurm --wait submits, waits for the array and prints the collected leaderboard"
else
    not_ok "--slurm --wait submits, waits for the array and prints the collected leaderboard (rc $rc)" "$T/wait.txt"
    dump_logs
fi

[ $failed -eq 0 ]

#!/usr/bin/env bash
# Crash safety, SIGKILL: a training run (experiments/train_autoencoder.lua) is
# killed with SIGKILL at random moments after each new checkpoint (sometimes
# while one is being written), then started again with the same command plus
# --resume, until it finishes. Every kill must leave a checkpoint that loads,
# every restart must continue from it, and the finished run must equal an
# uninterrupted one exactly: history.json and history.csv (but the times),
# last.safetensors and best.safetensors bit for bit.
cd "$(dirname "$0")/.." || exit 2
. tests/crash/lib.sh

train "$tmp/straight" >"$tmp/straight.log" 2>&1
check "the uninterrupted run finishes" test $? -eq 0

ck=$tmp/killed/last.safetensors
kills=0 bad_kills=0 bad_restarts=0 finished=0 resume=()
for ((cycle = 1; cycle <= 30 && !finished; cycle++)); do
    state=$(checkpoint_state "$ck")
    old=$(mtime "$ck")
    train_bg "$tmp/cycle$cycle.log" "$tmp/killed" "${resume[@]}"
    if wait_checkpoint "$ck" "$old"; then
        sleep "0.0$((RANDOM % 10))$((RANDOM % 10))" # 0 to 99 ms into the next epoch or save
        kill -KILL "$pid" 2>/dev/null
    fi
    reap
    if [ $rc -eq 0 ]; then
        finished=1
    elif [ $rc -eq 137 ]; then
        kills=$((kills + 1))
        case $(checkpoint_state "$ck") in none | unreadable) bad_kills=$((bad_kills + 1)) ;; esac
    else
        echo "# cycle $cycle ended with status $rc:"
        sed 's/^/#   /' "$tmp/cycle$cycle.log"
        break
    fi
    if [ ${#resume[@]} -gt 0 ] && ! grep -qF "$(resume_line "$state")" "$tmp/cycle$cycle.log"; then
        bad_restarts=$((bad_restarts + 1))
        echo "# cycle $cycle did not continue from the checkpoint ($state):"
        sed 's/^/#   /' "$tmp/cycle$cycle.log"
    fi
    resume=(--resume)
done
torn=$(find "$tmp/killed" -name '.*.tmp.*' | wc -l)
echo "# $kills kills in $((cycle - 1)) runs; $torn of them during a checkpoint or file write (its temporary file is left)"
check "every SIGKILL left a checkpoint that loads ($kills kills)" test $kills -gt 0 -a $bad_kills -eq 0
check "every restart with --resume continued from the last checkpoint" test $bad_restarts -eq 0
check "the killed and resumed run finishes" test $finished -eq 1
check "it equals the uninterrupted run (history but times, last and best weights, bit for bit)" \
    compare "$tmp/straight" "$tmp/killed"
echo "1..$n"
exit $failed

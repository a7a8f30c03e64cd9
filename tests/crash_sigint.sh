#!/usr/bin/env bash
# Crash safety, Ctrl-C: SIGINT at random moments of a training run
# (experiments/train_autoencoder.lua), then the same command plus --resume,
# until it finishes. Each SIGINT must stop the run between two batches with a
# checkpoint of exactly that point (mid-epoch) and a one-line message naming
# it, status 1 and no traceback; each restart continues from it; the finished
# run equals an uninterrupted one exactly. One cycle sends two SIGINTs at
# 2 ms apart: the second kills (status 130) unless the first was already handled.
# A SIGINT after training (while the script draws its plots) ends the script
# with "interrupted!", no traceback, the final checkpoint saved.
cd "$(dirname "$0")/.." || exit 2
. tests/crash/lib.sh

train "$tmp/straight" >"$tmp/straight.log" 2>&1
check "the uninterrupted run finishes" test $? -eq 0

ck=$tmp/stopped/last.safetensors
stops=0 mid_epoch=0 late=0 doubles=0 bad_stops=0 bad_restarts=0 finished=0 resume=()
for ((cycle = 1; cycle <= 30 && !finished; cycle++)); do
    state=$(checkpoint_state "$ck")
    old=$(mtime "$ck")
    train_bg "$tmp/cycle$cycle.log" "$tmp/stopped" "${resume[@]}"
    double=$((cycle == 2))
    if wait_checkpoint "$ck" "$old"; then
        sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
        kill -INT "$pid" 2>/dev/null
        [ $double = 1 ] && sleep 0.002 && kill -INT "$pid" 2>/dev/null
    fi
    reap
    log=$tmp/cycle$cycle.log
    if [ $rc -eq 0 ]; then
        finished=1
    elif [ $rc -eq 130 ] && [ $double = 1 ]; then
        doubles=$((doubles + 1)) # killed by the second SIGINT: the checkpoint before must still load
        case $(checkpoint_state "$ck") in none | unreadable) bad_stops=$((bad_stops + 1)) ;; esac
    elif [ $rc -eq 1 ] && grep -q "interrupted!$" "$log" && ! grep -q "traceback" "$log" &&
        [ "$(checkpoint_state "$ck")" = 8 ]; then
        late=$((late + 1)) # after dd.fit returned (recon sheet, plots): training was done and saved
    elif [ $rc -eq 1 ] && grep -q "interrupted (Ctrl-C)" "$log" && ! grep -q "traceback" "$log"; then
        stops=$((stops + 1))
        now=$(checkpoint_state "$ck")
        # the message names where it stopped, and the checkpoint holds exactly that point
        where=$(grep -o "interrupted (Ctrl-C) [^;]*" "$log")
        case $where in
        *"in epoch "*) expect="${where#*in epoch }" expect="${expect%% *}+$(echo "$where" | sed 's/.*after batch \([0-9]*\).*/\1/')"
            mid_epoch=$((mid_epoch + 1)) ;;
        *) expect="${where##* }" ;;
        esac
        if [ "$now" != "$expect" ] || ! grep -q "saved $ck: resume=true continues" "$log"; then
            bad_stops=$((bad_stops + 1))
            echo "# cycle $cycle: checkpoint $now, message: $where"
        fi
    else
        bad_stops=$((bad_stops + 1))
        echo "# cycle $cycle ended with status $rc:"
        sed 's/^/#   /' "$log"
    fi
    if [ ${#resume[@]} -gt 0 ] && ! grep -qF "$(resume_line "$state")" "$log"; then
        bad_restarts=$((bad_restarts + 1))
        echo "# cycle $cycle did not continue from the checkpoint ($state):"
        sed 's/^/#   /' "$log"
    fi
    resume=(--resume)
done
echo "# $stops clean stops ($mid_epoch mid-epoch), $late after training, $doubles killed by a second SIGINT, in $((cycle - 1)) runs"
check "every SIGINT stopped the run with a checkpoint of where it stopped, status 1, no traceback ($stops stops)" \
    test $stops -gt 0 -a $bad_stops -eq 0
check "every restart with --resume continued from the last checkpoint, mid-epoch ones too" test $bad_restarts -eq 0
check "the interrupted and resumed run finishes" test $finished -eq 1
check "it equals the uninterrupted run (history but times, last and best weights, bit for bit)" \
    compare "$tmp/straight" "$tmp/stopped"
echo "1..$n"
exit $failed

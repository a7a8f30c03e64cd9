#!/bin/sh
# repl_tmux.sh: drives the REPL in a real terminal (tmux) and checks what a
# user sees: results, errors, history recall, Tab completion, Ctrl-C and
# Ctrl-D. Prints TAP; exits non-zero if any check fails.
# Usage: tests/repl_tmux.sh [path/to/deepdance]   (default: ./deepdance)
set -u

cd "$(dirname "$0")/.." || exit 1
BIN=${1:-${DEEPDANCE_BIN:-./deepdance}}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac

if ! command -v tmux >/dev/null 2>&1; then
    echo "1..0 # SKIP tmux not installed"
    exit 0
fi
if [ ! -x "$BIN" ]; then
    echo "1..1"
    echo "not ok 1 - $BIN is built"
    exit 1
fi

TMPDIR_TEST=$(mktemp -d)
HIST=$TMPDIR_TEST/history
STATUS=$TMPDIR_TEST/status
# A private server (-L) with no user config (-f) so the test neither touches
# nor depends on the user's tmux.
SOCKET=ddrepl$$
TMUX_CMD="tmux -L $SOCKET -f /dev/null"
PANE=dd1

cleanup() {
    $TMUX_CMD kill-server >/dev/null 2>&1
    rm -rf "$TMPDIR_TEST"
}
trap cleanup EXIT INT TERM

n=0
failed=0
ok() {
    n=$((n + 1))
    echo "ok $n - $1"
}
not_ok() {
    n=$((n + 1))
    failed=$((failed + 1))
    echo "not ok $n - $1"
    echo "# --- screen ---"
    screen | sed 's/^/# /'
}
check() {  # check NAME COMMAND...: one TAP line from the command's status
    name=$1
    shift
    if "$@"; then ok "$name"; else not_ok "$name"; fi
}

# The pane's shell writes the exit status to a file: tmux's own
# #{pane_dead_status} is sometimes never filled in (the child left unreaped).
start() {
    rm -f "$STATUS"
    $TMUX_CMD new-session -d -s $PANE -x 100 -y 40 \
        "env DEEPDANCE_HISTORY='$HIST' '$BIN'; echo \$? >'$STATUS'" || exit 1
    # Keep the screen after the process exits, for the failure report.
    $TMUX_CMD set-option -t $PANE remain-on-exit on >/dev/null
}
screen() { $TMUX_CMD capture-pane -p -J -S -1000 -t $PANE 2>/dev/null; }
keys() { $TMUX_CMD send-keys -t $PANE "$@"; }
text() { $TMUX_CMD send-keys -t $PANE -l "$1"; }

# Polls every 0.05 s for up to 5 s.
wait_for() {  # wait_for CMD...: until the command succeeds
    i=0
    while [ $i -lt 100 ]; do
        "$@" && return 0
        sleep 0.05
        i=$((i + 1))
    done
    return 1
}
has_text() { screen | grep -qF -- "$1"; }
# The last non-blank screen line is exactly $1, trailing spaces aside (so the
# prompts "> " and ">> " read as ">" and ">>").
last_line_is() { [ "$(screen | sed 's/[[:space:]]*$//' | grep -v '^$' | tail -n 1)" = "$1" ]; }
# Typing only once the prompt is up keeps keys from reaching the terminal
# while Lua runs, where a Ctrl-C would flush them from the input queue.
prompt() { wait_for last_line_is "${1:->}" || echo "# timed out waiting for the prompt"; }
line() { prompt; text "$1"; keys Enter; }
# The number of screen lines exactly equal to $1 is at least $2.
has_lines() { [ "$(screen | grep -cxF -- "$1")" -ge "$2" ]; }
exited_ok() { [ -s "$STATUS" ] && [ "$(cat "$STATUS")" = 0 ]; }

start
check "banner is shown" wait_for has_text "type dd.<TAB> to explore, Ctrl-D to quit"

prompt
line '1+41'
check "expression prints its value" wait_for has_lines 42 1

line 'error("boom-from-test")'
line '"still" .. "-alive"'
check "error is reported" wait_for has_lines 'stdin:1: boom-from-test' 1
check "REPL answers after an error" wait_for has_lines still-alive 1

prompt
keys Up Enter
check "Up-arrow recalls and reruns the last line" wait_for has_lines still-alive 2

prompt
text 'type(dd.matm'; keys Tab; text ') .. "-completed"'; keys Enter
check "Tab completes dd.matm to dd.matmul" wait_for has_text '> type(dd.matmul) .. "-completed"'
check "completed name evaluates" wait_for has_lines function-completed 1

line 's = "hello"'
prompt
text 's:up'; keys Tab; text '() .. "-method"'; keys Enter
check "Tab completes a string method after ':'" wait_for has_lines HELLO-method 1

line 't = dd.zeros(2, 3)'
prompt
text 't:nu'; keys Tab; text '() .. "-numel"'; keys Enter
check "Tab completes a tensor method after ':'" wait_for has_lines 6-numel 1

prompt
text 'str'; keys Tab; text '.rep("ab", 2) .. "-global"'; keys Enter
check "Tab completes a global name" wait_for has_lines abab-global 1

line 'for i = 1, 2 do'
prompt '>>'
text 'print("loop" .. i)'; keys Enter
prompt '>>'
text 'end'; keys Enter
check "multi-line statement runs" wait_for has_lines loop2 1

line 'while true do end'
wait_for last_line_is '> while true do end' >/dev/null
sleep 0.2
keys C-c
check "Ctrl-C interrupts a running loop" wait_for has_text "interrupted!"
line '2+2'
check "REPL evaluates after the interrupt" wait_for has_lines 4 1

prompt
text '12345'
# Ctrl-C flushes the terminal's unread input, so let the keys land first.
wait_for last_line_is '> 12345' >/dev/null
keys C-c
wait_for last_line_is '>' >/dev/null
line '3+3'
check "Ctrl-C at the prompt discards the line" wait_for has_lines 6 1

line 'for i = 1, 3 do'
prompt '>>'
keys C-c
line '7*7'
check "Ctrl-C at the continuation prompt drops the chunk" wait_for has_lines 49 1

prompt
keys C-d
check "Ctrl-D exits with status 0" wait_for exited_ok

check "history file holds the session's lines" grep -qxF '"still" .. "-alive"' "$HIST"
check "a repeated line is stored once" [ "$(grep -cxF '"still" .. "-alive"' "$HIST")" -eq 1 ]

# A new session starts with the history of the previous one.
# (A second session, not a restart: killing the last session stops the
# server, and a client racing with that shutdown fails.)
PANE=dd2
start
prompt
keys Up Enter
check "history persists across sessions" wait_for has_lines 49 1
prompt
keys C-d
wait_for exited_ok >/dev/null

echo "1..$n"
[ $failed -eq 0 ]

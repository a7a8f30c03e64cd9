#!/usr/bin/env bash
# valgrind.sh: valgrind memcheck over the C tests of tensors and layers, the
# normal (-O3) build in build/tests/ (it finds what ASan cannot: reads of
# uninitialised memory). Any memcheck error, or a leak that is definitely
# lost, fails the binary. One TAP line per binary.
# `make test` runs the quick ones (~20 s); `make valgrind` (VALGRIND_ALL=1)
# adds the convolution, LSTM and mask tests, about 2.5 minutes more on 2 cores
# because OpenBLAS and the gradient checks run 50x slower under valgrind.
# Skips when valgrind is not installed.
cd "$(dirname "$0")/.." || exit 2
n=0
tap() { n=$((n + 1)); echo "$1 $n - $2"; }
if ! command -v valgrind >/dev/null 2>&1; then
    tap ok "valgrind # SKIP valgrind is not installed (apt-get install valgrind)"
    exit 0
fi
tests=(test_tensor test_loss test_optim test_mdn test_vision)
[ -n "${VALGRIND_ALL:-}" ] && tests+=(test_conv test_lstm test_masks)
supp=()
[ -f tests/valgrind.supp ] && supp=(--suppressions=tests/valgrind.supp)
for t in "${tests[@]}"; do
    bin=build/tests/$t
    if [ ! -x "$bin" ]; then
        tap "not ok" "valgrind: $bin is not built (make tests-build)"
        continue
    fi
    start=$SECONDS
    out=$(CMOCKA_MESSAGE_OUTPUT=TAP valgrind --error-exitcode=99 --leak-check=full \
          --errors-for-leak-kinds=definite --track-origins=yes "${supp[@]}" "$bin" 2>&1)
    rc=$?
    pass=$(grep -cE '^ok [0-9]+' <<<"$out")
    if [ $rc -eq 0 ]; then
        tap ok "valgrind: $t clean ($pass tests, $((SECONDS - start)) s)"
    else
        grep -vE '^ok [0-9]+' <<<"$out" | tail -60 | sed 's/^/# /'
        tap "not ok" "valgrind: $t (exit $rc: memcheck errors or failed tests)"
    fi
done

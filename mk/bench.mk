# mk/bench.mk: benchmark targets besides `make bench` (in the Makefile).
#   make bench-quick           a smoke of every row but batch 128 (under 2 minutes);
#                              results in build/bench/results-partial.json
#   make bench-row ROW=NAME    one row at full repetitions (matmul, ingest, ae_train32,
#                              ae_train128, seq_train128, decoder64, generate, memory)
# The PyTorch peer (python3-torch) is optional and not installed by deps: rows
# without it say so.

.PHONY: bench-quick bench-row

bench-quick: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench/sgemm
	./deepdance bench/run.lua --quick

bench-row: deps
	@test -n "$(ROW)" || { echo "bench-row: give ROW=NAME"; exit 2; }
	@$(MAKE) --no-print-directory all $(BUILD)/bench/sgemm
	./deepdance bench/run.lua --only $(ROW)

# tests/bench_smoke.sh runs the matmul row, which needs the reference binary.
tests-build: $(BUILD)/bench/sgemm

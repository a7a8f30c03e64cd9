# mk/sweep.mk: hyperparameter sweeps (docs/sweeps.md).
#   make test-sweep    only the sweep tests: the busted spec, tests/sweep_local.sh and
#                      tests/sweep_slurm.sh (a real one-node Slurm on localhost, as root)
# The Slurm test needs the daemons and clients (slurmctld, slurmd, sbatch, squeue:
# Debian's slurm-wlm pulls them in) and munge for their authentication.

DEB_TEST += slurm-wlm munge

.PHONY: test-sweep

test-sweep: deps
	@$(MAKE) --no-print-directory all
	./deepdance /usr/bin/busted -o TAP tests/lua/sweep_spec.lua
	tests/sweep_local.sh
	tests/sweep_slurm.sh

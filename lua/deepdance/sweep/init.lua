-- deepdance.sweep: hyperparameter sweeps (docs/sweeps.md). The parts, in the
-- order they build on each other:
--   space.lua   distributions, grid expansion, deterministic draws, shards
--   spec.lua    spec files, their checks, the trials' command lines
--   store.lua   the sweep's files: results, metrics, leaderboard
--   report.lua  dd.report and the successive-halving (ASHA) decision
--   runner.lua  running trials as processes here; collecting results
--   slurm.lua   the same as a Slurm job array
-- command.lua is `deepdance sweep`, the command line on top.
local dd = ...
local sweep = {}
for _, part in ipairs({ "space", "spec", "store", "report", "runner", "slurm" }) do
  assert(loadfile(dd.home .. "/lua/deepdance/sweep/" .. part .. ".lua"))(dd, sweep)
end
dd.sweep = sweep
return sweep

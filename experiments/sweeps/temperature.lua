-- Generation temperature of a mixture-density (MDN) sequence model: too cold
-- and the dance freezes, too hot and the frames stop looking like a dancer.
-- Each trial generates from a random and a real seed window at one
-- temperature and reports motion ratio, plausibility and their trade-off
-- `score` = plausibility x min(1, motion ratio) (trial_temperature.lua).
-- Needs a run with ae/ and an MDN sequence model (make demo: runs/demo/seq_mdn):
--   deepdance sweep experiments/sweeps/temperature.lua --out runs/temperature
local demo = os.getenv("DEMO") or "runs/demo"
return {
  script = "experiments/sweeps/trial_temperature.lua",
  args = { run = demo, seq = demo .. "/seq_mdn", out = "{trial_dir}", steps = 300 },
  space = { temperature = { 0.25, 0.5, 0.75, 1.0, 1.5, 2.0 } },
  metric = "score",
  goal = "max",
  workers = 2,
}

-- A sweep over the toy quadratic trial: a 3-point grid in y crossed with
-- draws of x, 6 trials, 2 at a time. Runs in a few seconds:
--   deepdance sweep experiments/sweeps/quadratic.lua --out runs/quadratic
return {
  script = "experiments/sweeps/trial_quadratic.lua",
  args = { epochs = 5 },
  space = {
    x = dd.sweep.uniform(-1, 3),
    y = { -3, -2, 0 },
  },
  trials = 6,
  seed = 7,
  metric = "loss",
  goal = "min",
  workers = 2,
}

-- Sequence model width x learning rate: three LSTM widths (grid) crossed
-- with learning rates drawn log-uniformly, 2 draws each (6 trials), on the
-- latents of a trained autoencoder. Successive halving (ASHA) compares the
-- trials' val_loss at epochs 2 and 6 and stops the worse two thirds; the
-- rest train to 18 epochs. train_sequence.lua trains with dd.fit, which
-- reports every epoch to the sweep by itself; --resume makes a trial that
-- was killed with its sweep continue from its last epoch.
-- Needs a trained run (make demo makes runs/demo; DEMO=dir picks another):
--   deepdance sweep experiments/sweeps/sequence_width_lr.lua --out runs/seq_width_lr
--   deepdance -e 'dd.runs.load("runs/seq_width_lr").best:model()'
local demo = os.getenv("DEMO") or "runs/demo"
return {
  script = "experiments/train_sequence.lua",
  args = {
    ae = demo .. "/ae", data = demo .. "/data/frames.safetensors", out = "{trial_dir}",
    variant = "notebook", progress = "lines", resume = true,
  },
  space = {
    units = { "128,64,64", "256,128,128", "512,256,256" },
    lr = dd.sweep.log_uniform(1e-4, 3e-3),
  },
  trials = 6,
  seed = 1,
  metric = "val_loss",
  goal = "min",
  workers = 2,
  budget = { resource = "epoch", min = 2, max = 18, eta = 3, option = "epochs" },
}

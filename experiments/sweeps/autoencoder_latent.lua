-- Autoencoder latent size: 16, 32, 64 and 128 numbers per frame (the paper's
-- is 128), each trained the same way for 8 epochs; val_loss ranks them.
-- Autoencoder training is the heaviest step, so one trial at a time with
-- every core (threads = cores // workers). --resume lets a killed sweep
-- continue each trial from its last epoch.
--   deepdance sweep experiments/sweeps/autoencoder_latent.lua --out runs/ae_latent
--   deepdance -e 'dd.runs.compare{"runs/ae_latent"}'
local demo = os.getenv("DEMO") or "runs/demo"
return {
  script = "experiments/train_autoencoder.lua",
  args = {
    data = demo .. "/data/frames.safetensors", out = "{trial_dir}", epochs = 8, loss = "bce",
    output_bias = "mean", progress = "lines", resume = true,
  },
  space = { latent = { 16, 32, 64, 128 } },
  metric = "val_loss",
  goal = "min",
  workers = 1,
}

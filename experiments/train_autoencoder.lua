-- experiments/train_autoencoder.lua: trains the Deep Dance autoencoder on a
-- frame cache as the original notebook did (dd.dance.train_autoencoder): MSE,
-- Adam, batch 128, the last 10% for validation, ReduceLROnPlateau on
-- val_binary_accuracy, 27 epochs. OUT gets best.safetensors, last.safetensors
-- (resumable: run again with --resume after a kill), history.csv,
-- history.json, autoencoder.json, recon.png and curves.png.
--   deepdance experiments/train_autoencoder.lua --data data/clip.safetensors --out runs/r/ae
if not dd.dance then assert(loadfile(dd.home .. "/lua/deepdance/dance/init.lua"))(dd) end -- until init.lua loads it

local p = dd.cli.parser("train_autoencoder.lua", "Train the frame autoencoder on a uint8 frame cache.")
p:option("--data", "frame cache (.safetensors, from experiments/ingest.lua)"):count(1)
p:option("--out", "run directory for the autoencoder (e.g. runs/R/ae)"):count(1)
p:option("--epochs", "total epochs (a resumed run counts the ones done)", "27"):convert(math.tointeger)
p:option("--batch-size", "frames per step", "128"):convert(math.tointeger)
p:option("--lr", "Adam learning rate", "1e-3"):convert(tonumber)
p:option("--validation-split", "fraction of frames at the end held out for validation", "0.1"):convert(tonumber)
p:option("--latent", "latent size", "128"):convert(math.tointeger)
p:option("--filters", "convolution filters", "32"):convert(math.tointeger)
p:option("--seed", "random seed (weights and shuffling)", "1"):convert(math.tointeger)
p:option("--lr-patience", "ReduceLROnPlateau patience in epochs", "20"):convert(math.tointeger)
p:option("--min-lr", "ReduceLROnPlateau floor", "1e-4"):convert(tonumber)
p:option("--max-frames", "train on the first N frames only"):convert(math.tointeger)
p:option("--progress", "bar, lines or none (default: bar on a terminal)"):choices{ "bar", "lines", "none" }
p:option("--loss", "mse (the original's), bce, or either plus a Dice loss on the silhouette", "mse")
  :choices{ "mse", "bce", "bce+dice", "mse+dice" }
p:option("--output-bias", "zero (the original's) or mean: start the output at the frames' mean brightness", "zero")
  :choices{ "zero", "mean" }
p:option("--variant", "original (the paper's layer table) or strided (ours: sharper, 5x fewer FLOPs)", "original")
  :choices{ "original", "strided" }
p:option("--norm", "none (the original's) or batch: batch normalisation after every convolution and hidden dense layer", "none")
  :choices{ "none", "batch" }
p:option("--lr-schedule", "plateau (the original's ReduceLROnPlateau) or cosine (down to --min-lr over the epochs)", "plateau")
  :choices{ "plateau", "cosine" }
p:flag("--flip", "augment: mirror each training frame with probability 1/2")
p:option("--shift-x", "augment: shift training frames by up to N pixels left or right", "0"):convert(math.tointeger)
p:option("--shift-y", "augment: shift training frames by up to N pixels up or down", "0"):convert(math.tointeger)
p:flag("--normalize-code", "after training, rescale best.safetensors so the code has an RMS of 1 (same reconstructions)")
p:flag("--resume", "continue OUT/last.safetensors")
local o = dd.cli.parse(p, arg)
if not o then return end

local t0 = dd.clock()
local history = dd.dance.train_autoencoder{
  data = o.data, out = o.out, epochs = o.epochs, batch_size = o.batch_size, lr = o.lr,
  validation_split = o.validation_split, latent = o.latent, filters = o.filters, seed = o.seed,
  resume = o.resume, progress = o.progress, lr_patience = o.lr_patience, min_lr = o.min_lr,
  max_frames = o.max_frames, loss = o.loss, output_bias = o.output_bias, variant = o.variant,
  lr_schedule = o.lr_schedule, flip = o.flip, shift_x = o.shift_x, shift_y = o.shift_y,
  normalize_code = o.normalize_code, norm = o.norm,
}
local last = history.rows[#history.rows]
if last then
  local parts = {}
  for _, k in ipairs({ "loss", "binary_accuracy", "iou", "val_loss", "val_binary_accuracy", "val_iou" }) do
    if last[k] ~= nil then parts[#parts + 1] = ("%s %.5g"):format(k, last[k]) end
  end
  print(("train_autoencoder: %d epochs in %.1f s; last epoch: %s"):format(#history.epoch, dd.clock() - t0,
    table.concat(parts, ", ")))
end

-- experiments/train_sequence.lua: trains the next-latent model of Deep Dance
-- (dd.dance.train_sequence): encodes every frame of a cache with a trained
-- autoencoder (cached in OUT/latents.safetensors), windows the latents and
-- fits the notebook, paper or mdn variant. OUT gets best.safetensors,
-- last.safetensors (resumable), history.csv, sequence.json and curves.png.
--   deepdance experiments/train_sequence.lua --ae runs/r/ae --data data/clip.safetensors --out runs/r/seq \
--     --variant notebook --split 13000 --epochs 900
if not dd.dance then assert(loadfile(dd.home .. "/lua/deepdance/dance/init.lua"))(dd) end -- until init.lua loads it

local p = dd.cli.parser("train_sequence.lua", "Train the sequence model on the latents of a frame cache.")
p:option("--ae", "autoencoder run directory (its best.safetensors)"):count(1)
p:option("--data", "frame cache (.safetensors, from experiments/ingest.lua)"):count(1)
p:option("--out", "run directory for the sequence model"):count(1)
p:option("--variant", "notebook (3 LSTMs, the published model), paper (4 LSTMs) or mdn (mixture head)", "notebook")
  :choices{ "notebook", "paper", "mdn" }
p:option("--look-back", "latents in each input window", "10"):convert(math.tointeger)
p:option("--split", "training latents: a count (13000, the original's) or a fraction (0.9)", "0.9"):convert(tonumber)
p:option("--epochs", "total epochs (a resumed run counts the ones done)", "100"):convert(math.tointeger)
p:option("--batch-size", "windows per step", "128"):convert(math.tointeger)
p:option("--lr", "Adam learning rate", "1e-3"):convert(tonumber)
p:option("--lr-schedule", "constant, or cosine: from --lr down to --min-lr over the epochs, batch by batch", "constant")
  :choices{ "constant", "cosine" }
p:option("--min-lr", "cosine: the last learning rate", "0"):convert(tonumber)
p:option("--seed", "random seed (weights, shuffling, noise)", "1"):convert(math.tointeger)
p:option("--mixtures", "mdn: Gaussian components"):convert(math.tointeger)
p:option("--head-init", "zero (Keras's) or data: the output bias starts at the targets' mean (and the MDN's sigmas at their std)", "zero")
  :choices{ "zero", "data" }
p:option("--min-sigma", "mdn: floor of each component's standard deviations (default 0: none)"):convert(tonumber)
p:option("--units", "LSTM sizes, comma-separated (default: the variant's)")
p:option("--dropout", "dropout between layers (default 0.2)"):convert(tonumber)
p:option("--autocondition", "k: alternate k ground-truth and k self-generated inputs (0: off)", "0"):convert(math.tointeger)
p:option("--autocondition-fraction", "fraction of batches auto-conditioned", "1"):convert(tonumber)
p:option("--noise", "std of Gaussian noise added to training inputs", "0"):convert(tonumber)
p:option("--patience", "stop after this many epochs without a better val_loss"):convert(math.tointeger)
p:option("--progress", "bar, lines or none (default: bar on a terminal)"):choices{ "bar", "lines", "none" }
p:flag("--mirror", "also train on the training frames mirrored left-right (twice the windows; validation stays real)")
p:flag("--resume", "continue OUT/last.safetensors")
local o = dd.cli.parse(p, arg)
if not o then return end

local units
if o.units then
  units = {}
  for u in o.units:gmatch("[^,]+") do
    local n = math.tointeger(tonumber(u))
    if not n or n < 1 then error("train_sequence: --units must be positive integers separated by commas, got " .. o.units, 0) end
    units[#units + 1] = n
  end
end
if o.split and o.split >= 1 then o.split = math.tointeger(o.split) or error("train_sequence: --split >= 1 must be an integer", 0) end

local t0 = dd.clock()
local history = dd.dance.train_sequence{
  ae_dir = o.ae, data = o.data, out = o.out, variant = o.variant, look_back = o.look_back, split = o.split,
  epochs = o.epochs, batch_size = o.batch_size, lr = o.lr, lr_schedule = o.lr_schedule, min_lr = o.min_lr,
  seed = o.seed, mixtures = o.mixtures,
  min_sigma = o.min_sigma, head_init = o.head_init, units = units,
  dropout = o.dropout, autocondition = o.autocondition, autocondition_fraction = o.autocondition_fraction,
  noise = o.noise, patience = o.patience, mirror = o.mirror or nil, resume = o.resume, progress = o.progress,
}
local n = #history.epoch
if n > 0 then
  local best = 1
  for i, v in ipairs(history.val_loss) do
    if v < history.val_loss[best] then best = i end
  end
  print(("%d epochs (%.1f s in this run); best val_loss %.6g at epoch %d (val_acc %.4f); %s/best.safetensors"):format(n,
    dd.clock() - t0, history.val_loss[best], history.epoch[best], history.val_acc[best], o.out))
end

-- deepdance.dance autoencoder: training and loading the frame autoencoder as
-- the original notebook did (../shared/reference/original-implementation.md).
--   local history, ae = dd.dance.train_autoencoder{data = "data/clip.safetensors", out = "runs/r/ae"}
--   local ae = dd.dance.load_autoencoder("runs/r/ae")   -- eval mode; ae.encoder, ae.decoder, ae.latent, ae.options
--
-- Training: MSE, Adam with Keras's defaults, batch 128, the last 10% of the
-- frames (unshuffled) for validation, ReduceLROnPlateau on
-- val_binary_accuracy (factor 0.1, patience 20, min lr 1e-4), 27 epochs.
-- Logged: loss, binary_accuracy (what Keras called "acc" for a one-channel
-- image output: the fraction of pixels with target == round(prediction), so
-- grey edge pixels never count) and iou (mean IoU of the dark masks), each
-- for the training and the validation part. The frame cache stays uint8:
-- dd.fit asks it for one float batch at a time.
--
-- The run directory OUT holds:
--   best.safetensors   the model of the epoch with the lowest val_loss; meta
--                      {epoch, logs, model_options = {latent, filters, height, width}}
--   last.safetensors   dd.fit's resumable checkpoint after every epoch (model,
--                      optimizer, history, RNG); the model options are in its
--                      callback state, and in autoencoder.json
--   autoencoder.json   the run's settings: model options, data, split, training options
--   history.csv        one row per epoch (CSVLogger); history.json the same as JSON
--   recon.png          8 held-out frames (top) over their reconstructions (bottom)
--   curves.png         loss, binary accuracy and IoU per epoch, train and validation
local dd, dance = ...
local util = assert(loadfile(dd.home .. "/lua/deepdance/dance/util.lua"))(dd)

local CONFIG_FILE = "autoencoder.json"

local function build_model(options)
  local copy = {}
  for k, v in pairs(options) do copy[k] = v end
  return dofile(dd.home .. "/models/autoencoder.lua")(copy)
end

-- The first `limit` frames of a FrameSet as a dataset (dd.fit only ever asks for 1..size()).
local function first_frames(fs, limit)
  if limit >= #fs then return fs end
  return {
    size = function() return limit end,
    batch = function(_, indices) return fs:batch(indices) end,
  }
end

-- n evenly spaced indices in first..last.
local function spread(first, last, n)
  local out = {}
  local count = math.min(n, last - first + 1)
  for k = 1, count do
    out[k] = count == 1 and first or first + math.floor((k - 1) * (last - first) / (count - 1) + 0.5)
  end
  return out
end

---------------------------------------------------------------------------
-- The reconstruction sheet
---------------------------------------------------------------------------

--- recon_sheet(ae, frames, indices, path): originals in the top row, their
-- reconstructions below (eval mode), grey padding between frames.
local function recon_sheet(ae, frames, indices, path)
  local x = frames:batch(indices)
  local y = dd.predict{ model = ae, x = x, batch_size = #indices }
  local tiles = {}
  for k = 1, #indices do tiles[k] = x[k] end
  for k = 1, #indices do tiles[#indices + k] = y[k] end
  dd.image.save(path, dd.image.grid(tiles, { cols = #indices, pad = 2, pad_value = 0.5 }))
end

---------------------------------------------------------------------------
-- Code normalization
---------------------------------------------------------------------------

-- Rescales the code so that its root mean square over the given frames is 1,
-- without changing what the autoencoder computes: the encoder's last Linear
-- (a ReLU after it: relu(a)/s = relu(a/s) for s > 0) is divided by s, the
-- decoder's first Linear multiplied by s. One scale for all latents keeps
-- their relative sizes (a per-latent scale blew up the rarely active ones:
-- the sequence model's validation loss was 4x its training loss). The
-- paper's uniform [0, 1) random seed and the sequence models' inputs then
-- have the scale of real codes (unnormalized, the strided autoencoder's
-- codes have an RMS near 10 and the LSTM gates saturate). Returns s.
local function normalize_code(model, fs, n_train)
  local enc_last = model.encoder.modules[#model.encoder.modules]
  local dec_first = model.decoder.modules[1]
  if enc_last.kind ~= "Linear" or dec_first.kind ~= "Linear" then
    error("normalize_code: the encoder must end and the decoder start with a Linear layer", 0)
  end
  local z = dd.predict{ model = model.encoder, x = first_frames(fs, n_train), batch_size = 64 }
  local s = math.sqrt((z * z):mean())
  if not (s > 1e-12) then return 1 end -- a dead code: nothing to scale
  enc_last.weight:div_(s)
  enc_last.bias:div_(s)
  dec_first.weight:mul_(s)
  return s
end

---------------------------------------------------------------------------
-- train_autoencoder
---------------------------------------------------------------------------

local TRAIN_OPTIONS = { "data", "out", "epochs", "batch_size", "lr", "validation_split", "latent", "filters", "seed",
  "resume", "progress", "output", "lr_patience", "min_lr", "max_frames", "loss", "output_bias", "variant", "lr_schedule",
  "flip", "shift_x", "shift_y", "normalize_code", "norm" }

-- output_bias='mean': the decoder's last convolution (before its Sigmoid)
-- starts at the training frames' mean brightness, and the encoder's first
-- convolution treats that brightness as zero. Silhouettes are mostly white:
-- from sigmoid(0) = 0.5 the first updates push every decoder ReLU negative and
-- the model can die into a constant white image (PyTorch does the same with
-- this architecture on such data); starting at the mean avoids that.
local function start_at_mean(model, fs, n_train)
  local sum, count, chunk = 0, 0, 64
  for first = 1, n_train, chunk do
    local idx = {}
    for i = first, math.min(n_train, first + chunk - 1) do idx[#idx + 1] = i end
    local b = fs:batch(idx)
    sum, count = sum + b:sum(), count + b:numel()
  end
  local mean = math.min(math.max(sum / count, 1e-3), 1 - 1e-3)
  -- The encoder's first convolution starts by mapping a background of the
  -- mean brightness to zero (bias = -mean * the sum of each filter's
  -- weights), as if the input were centred: the white background no longer
  -- fills every first-layer feature map with a constant. On the demo data
  -- this raises held-out IoU after one epoch from 0.455 to 0.486 (BCE) and
  -- from 0.490 to 0.508 (BCE + Dice).
  local first = model.encoder.modules[1]
  if first.kind == "Conv2d" and first.bias then -- (none before a BatchNorm, which centres anyway)
    local w = first.weight
    for k = 1, w:size(1) do first.bias[k] = -mean * w[k]:sum() end
  end
  local modules = model.decoder.modules
  local last = modules[#modules]
  if last.kind == "Sigmoid" then last = modules[#modules - 1] end -- an unfused decoder
  last.bias:fill(math.log(mean / (1 - mean)))
  return mean
end

-- 'mse' (the original's), 'bce', or either plus a soft Dice loss on the dark
-- silhouette (DiceLoss foreground 0): Dice counts the dancer's few pixels as
-- much as the whole white background, so shapes form early instead of the
-- blank mean frame.
local function make_loss(name)
  local base = name:match("^bce") and dd.nn.BCELoss() or dd.nn.MSELoss()
  if not name:match("%+dice$") then return base end
  return dd.nn.SumLoss{ base, dd.nn.DiceLoss{ foreground = 0 } }
end

--- train_autoencoder{data=PATH, out=DIR, epochs=27, batch_size=128, lr=1e-3, validation_split=0.1,
--   latent=128, filters=32, seed=1, resume=false, progress=, output=io.stdout, lr_patience=20,
--   min_lr=1e-4, max_frames=, loss='mse'|'bce'|'bce+dice'|'mse+dice', output_bias='zero'|'mean',
--   variant='original'|'strided', lr_schedule='plateau'|'cosine', flip=false, shift_x=0, shift_y=0,
--   normalize_code=false, norm='none'|'batch'}
--   -> history, model
-- normalize_code: after training, best.safetensors is rescaled so that the
-- code has an RMS of 1 over the training frames (the same reconstructions;
-- see normalize_code above). The returned model is the last epoch's, unscaled.
-- flip, shift_x, shift_y: augment the training frames (dd.data.augment: a
-- random mirror, shifts up to that many pixels, white fill), as Keras's
-- ImageDataGenerator would; the validation frames are left as they are.
-- norm='batch': a BatchNorm2d after every convolution but the output's and
-- a BatchNorm1d after the 512-unit dense layers (see models/autoencoder.lua).
-- lr_schedule: 'plateau' is the original's ReduceLROnPlateau (lr_patience,
-- min_lr); 'cosine' decays lr to min_lr along half a cosine over the epochs,
-- batch by batch (dd.callbacks.CosineDecay), which suits a fixed budget.
-- The defaults are the original's (MSE, zero biases); loss='bce' and
-- output_bias='mean' train much faster on mostly-white silhouettes.
-- The model comes back in eval mode with the weights of the last epoch (best.safetensors
-- holds the best one).
dance.train_autoencoder = util.public(function(opts)
  local fn = "dd.dance.train_autoencoder"
  local o = util.options(fn, opts, TRAIN_OPTIONS)
  if o.data == nil then error(fn .. ": option 'data' is required (a frame cache written by experiments/ingest.lua)", 0) end
  if o.out == nil then error(fn .. ": option 'out' is required (the run directory)", 0) end
  local data = util.check(fn, "data", o.data, "string")
  local out = util.check(fn, "out", o.out, "string"):gsub("/+$", "")
  local epochs = util.check(fn, "epochs", o.epochs, "integer", 27)
  local batch_size = util.check(fn, "batch_size", o.batch_size, "integer", 128)
  local lr = util.check(fn, "lr", o.lr, "positive", 1e-3)
  local latent = util.check(fn, "latent", o.latent, "integer", 128)
  local filters = util.check(fn, "filters", o.filters, "integer", 32)
  local resume = util.check(fn, "resume", o.resume, "boolean", false)
  local lr_patience = util.check(fn, "lr_patience", o.lr_patience, "count", 20)
  local min_lr = util.check(fn, "min_lr", o.min_lr, "nonneg", 1e-4)
  local max_frames = util.check(fn, "max_frames", o.max_frames, "integer", nil)
  local loss_name = util.choice(fn, "loss", o.loss, { "mse", "bce", "bce+dice", "mse+dice" }, "mse")
  local output_bias = util.choice(fn, "output_bias", o.output_bias, { "zero", "mean" }, "zero")
  local variant = util.choice(fn, "variant", o.variant, { "original", "strided" }, "original")
  local norm = util.choice(fn, "norm", o.norm, { "none", "batch" }, "none")
  local lr_schedule = util.choice(fn, "lr_schedule", o.lr_schedule, { "plateau", "cosine" }, "plateau")
  local flip = util.check(fn, "flip", o.flip, "boolean", false)
  local shift_x = util.check(fn, "shift_x", o.shift_x, "count", 0)
  local shift_y = util.check(fn, "shift_y", o.shift_y, "count", 0)
  local normalize = util.check(fn, "normalize_code", o.normalize_code, "boolean", false)
  local split = o.validation_split
  if split == nil then split = 0.1 end
  if type(split) ~= "number" or split < 0 or split >= 1 then
    error(("%s: option 'validation_split' must be a number in [0, 1), got %s"):format(fn, util.describe(split)), 0)
  end
  local seed = o.seed
  if seed == nil then seed = 1 end
  if math.type(seed) ~= "integer" then error(("%s: option 'seed' must be an integer, got %s"):format(fn, util.describe(seed)), 0) end
  local output = o.output or io.stdout
  local quiet = o.progress == "none"
  local function say(text) if not quiet then output:write(text, "\n") end end

  local fs = dd.data.frames(data)
  if fs.channels ~= 1 then
    error(("%s: %s has %d channels per frame; the autoencoder takes silhouettes with 1"):format(fn, data, fs.channels), 0)
  end
  if fs.height % 8 ~= 0 or fs.width % 8 ~= 0 then
    error(("%s: %s has frames of %dx%d; the autoencoder needs height and width that are multiples of 8"):format(fn, data,
      fs.height, fs.width), 0)
  end
  local n = max_frames and math.min(max_frames, #fs) or #fs
  local n_train = math.floor(n * (1 - split))
  if n_train < 1 or (split > 0 and n_train >= n) then
    error(("%s: validation_split=%g of %d frames leaves %d for training and %d for validation"):format(fn, split, n,
      n_train, n - n_train), 0)
  end

  local model_options = { latent = latent, filters = filters, height = fs.height, width = fs.width, variant = variant }
  if norm ~= "none" then model_options.norm = norm end -- (older runs have no norm)
  local config = {
    model_options = model_options, data = data, frames = n, n_train = n_train, n_val = n - n_train,
    validation_split = split, epochs = epochs, batch_size = batch_size, lr = lr, seed = seed,
    lr_patience = lr_patience, min_lr = min_lr, max_frames = max_frames, loss = loss_name, output_bias = output_bias,
    lr_schedule = lr_schedule, flip = flip, shift_x = shift_x, shift_y = shift_y, normalize_code = normalize,
  }
  util.mkdir(fn, out)
  local config_path = out .. "/" .. CONFIG_FILE
  if resume and util.exists(config_path) then
    local ok, saved = pcall(dd.json.decode, util.read_file(config_path))
    if ok and type(saved) == "table" and util.canonical(saved.model_options) ~= util.canonical(model_options) then
      error(("%s: %s was trained with model options %s; this run asks for %s"):format(fn, config_path,
        util.canonical(saved.model_options), util.canonical(model_options)), 0)
    end
  end
  util.write_file(fn, config_path, dd.json.encode(config, { indent = true }))

  dd.manual_seed(seed) -- the weights and the shuffling (a resumed run restores the RNG instead)
  local model = build_model(model_options)
  if output_bias == "mean" and not (resume and util.exists(out .. "/last.safetensors")) then
    say(("autoencoder: output starts at the mean brightness %.3f"):format(start_at_mean(model, fs, n_train)))
  end
  local optimizer = dd.optim.Adam{ model:parameters(), lr = lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-7 }
  local validate = split > 0
  local monitor_acc = validate and "val_binary_accuracy" or "binary_accuracy"
  -- best.safetensors carries the model options, so load_autoencoder can rebuild the network
  local monitor = validate and "val_loss" or "loss"
  local best = dd.callbacks.ModelCheckpoint{ dir = out, monitor = monitor, mode = "min", save_last = false,
                                             meta = { monitor = monitor, model_options = model_options } }
  -- augmentation touches the training frames only, never the validation split
  local train_x = first_frames(fs, n)
  if flip or shift_x > 0 or shift_y > 0 then
    train_x = dd.data.augment(train_x, { flip = flip, shift_x = shift_x, shift_y = shift_y, only_first = n_train })
  end
  local history = dd.fit{
    model = model, loss = make_loss(loss_name), optimizer = optimizer,
    x = train_x, y = "x",
    batch_size = batch_size, epochs = epochs, validation_split = split,
    metrics = { "binary_accuracy", "iou" },
    callbacks = {
      lr_schedule == "cosine" and dd.callbacks.CosineDecay{ lr = lr, min_lr = math.min(min_lr, lr) }
        or dd.callbacks.ReduceLROnPlateau{ monitor = monitor_acc, factor = 0.1, patience = lr_patience, min_lr = min_lr,
                                           verbose = not quiet },
      best,
      dd.callbacks.CSVLogger{ out .. "/history.csv" },
    },
    checkpoint_dir = out, resume = resume, progress = o.progress, output = output,
  }
  util.write_file(fn, out .. "/history.json", dd.json.encode(dd.json.safe(history), { indent = true }))
  model:eval()
  model.options = model_options

  -- normalize_code: best.safetensors gets the rescaled code, once (its meta
  -- then holds code_scale; a resumed run that writes a new best redoes it).
  local best_path = out .. "/best.safetensors"
  if normalize and util.exists(best_path) then
    local meta = util.checkpoint_meta(best_path) or {}
    if meta.code_scale == nil then
      local ae = dance.load_autoencoder(best_path)
      meta.code_scale = normalize_code(ae, fs, n_train)
      dd.nn.save(best_path, ae, { meta = meta })
      say(("autoencoder: code normalized in %s (divided by its RMS over the training frames, %.4g)"):format(
        best_path, meta.code_scale))
    end
  end

  -- The sheet shows the best model on held-out frames (the training part when there is none).
  local shown = dance.load_autoencoder(out)
  local first = validate and n_train + 1 or 1
  recon_sheet(shown, fs, spread(first, n, 8), out .. "/recon.png")
  if #history.epoch > 0 then
    local plotted, err = pcall(dance.plot_curves, history, out .. "/curves.png",
      { title = ("autoencoder %s (%s, latent %d, filters %d)"):format(out, variant, latent, filters),
        metrics = { "loss", "binary_accuracy", "iou" } })
    if not plotted then output:write("train_autoencoder: no curves plotted: ", tostring(err), "\n") end
  end
  local last = history.rows[#history.rows]
  if last then
    say(("autoencoder: best epoch %d (%s %.5g); wrote %s/{best,last}.safetensors, history.csv, history.json, recon.png, curves.png")
      :format(shown.meta.epoch or 0, best.monitor, best.best, out))
  end
  return history, model
end)

---------------------------------------------------------------------------
-- load_autoencoder
---------------------------------------------------------------------------

-- The model options saved in dd.fit's last.safetensors through the callback state.
local function options_from_fit_state(meta)
  local fit = meta and meta.fit
  for _, cb in ipairs(fit and fit.callbacks or {}) do
    local saved = type(cb.state) == "table" and type(cb.state.meta) == "table" and cb.state.meta.model_options
    if cb.kind == "s:ModelCheckpoint" and type(saved) == "table" then
      local options = {}
      for k, v in pairs(saved) do
        -- dd.fit's exact packing keeps integers as they are and strings as "s:text"
        if type(v) == "string" and v:sub(1, 2) == "s:" then v = v:sub(3)
        elseif math.type(v) ~= "integer" then return nil end
        options[k] = v
      end
      return options
    end
  end
  return nil
end

--- load_autoencoder(dir_or_file [, {which='best'}]) -> model in eval mode with
-- .encoder, .decoder, .latent, .options (the model options), .meta (the checkpoint's
-- meta: epoch, logs) and .path. 'best' falls back to last.safetensors when a run
-- has no best yet.
dance.load_autoencoder = util.public(function(path, opts)
  local fn = "dd.dance.load_autoencoder"
  if type(path) ~= "string" or path == "" then
    error(("%s: expected a run directory or a checkpoint path, got %s"):format(fn, util.describe(path)), 0)
  end
  opts = util.options(fn, opts, { "which" })
  local which = util.choice(fn, "which", opts.which, { "best", "last" }, "best")
  local file, dir
  if path:match("%.safetensors$") then
    file, dir = path, util.dirname(path) or "."
  else
    dir = path:gsub("/+$", "")
    file = dir .. "/" .. which .. ".safetensors"
    if which == "best" and not util.exists(file) then file = dir .. "/last.safetensors" end
  end
  if not util.exists(file) then
    error(("%s: no checkpoint at %s (train one with dd.dance.train_autoencoder)"):format(fn, file), 0)
  end
  local meta = util.checkpoint_meta(file) or {}
  local options = type(meta.model_options) == "table" and meta.model_options or options_from_fit_state(meta)
  if not options then
    local text = util.read_file(dir .. "/" .. CONFIG_FILE)
    local ok, saved = pcall(dd.json.decode, text or "")
    if not (text and ok and type(saved) == "table" and type(saved.model_options) == "table") then
      error(("%s: %s has no model options in its metadata and there is no readable %s/%s"):format(fn, file, dir,
        CONFIG_FILE), 0)
    end
    options = saved.model_options
  end
  local model = build_model(options)
  dd.nn.load(file, model)
  model:eval()
  model.options, model.path = options, file
  model.meta = { epoch = meta.epoch or (meta.fit and meta.fit.epoch), logs = meta.logs }
  return model
end)

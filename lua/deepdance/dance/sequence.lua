-- deepdance.dance sequence: training and loading the next-latent model.
--   local history, model = dd.dance.train_sequence{ae_dir = "runs/r/ae", data = "data/clip.safetensors",
--     out = "runs/r/seq", variant = "notebook", split = 13000, epochs = 900}
--   local seq = dd.dance.load_sequence("runs/r/seq")   -- eval mode, seq.look_back, seq.variant, seq.latent
--
-- Data (as the original notebook): every frame is encoded once (cached in
-- OUT/latents.safetensors); the first `split` latents are the training part
-- and the rest the validation part, each cut into its own windows of
-- look_back inputs and the next latent as target, so no window straddles the
-- split. Windows are built per batch from the latents (dd.dance.window_set),
-- never stored ten times over.
--
-- mirror = true (not in the original): the training part mirrored left-right
-- (every frame flipped, encoded once, cached in OUT/latents_flip.safetensors)
-- is a second training sequence with windows of its own: twice the training
-- windows, validation on the real frames as before. On the demo's 2160
-- frames it lowers the notebook model's best validation loss from 0.124 to
-- 0.112 and lifts its decoded next-frame IoU above the repeat-last-frame
-- baseline on every seed tried (docs/pipeline.md). An epoch takes twice as
-- long.
--
-- Auto-conditioning (Li et al. 2018), option autocondition = k: in a training
-- window of L inputs (positions 1..L, oldest first), positions are taken in
-- runs of k: positions 1..k ground truth, k+1..2k generated, 2k+1..3k ground
-- truth, ... (with L = 10, k = 5: the last five inputs are the model's own).
-- A generated position p is the model's prediction from the L inputs before
-- it, themselves ground truth or already generated, exactly the generation
-- loop's sliding window; inputs before the window are ground truth (the
-- first latent repeated where the sequence has not started yet). The
-- predictions are made in eval mode (no dropout) before the training step,
-- outside the graph, so gradients flow only through the final prediction of
-- the ground-truth target. The mdn variant feeds back samples at temperature
-- 1 (what its generation does); the others their output. Each generated
-- position costs one forward pass of the batch, so k = 5, L = 10 makes an
-- epoch about twice as slow (notebook model, 2 cores: 4.6 s -> 9.0 s for 10
-- batches of 128); autocondition_fraction = f conditions a fixed,
-- deterministic fraction f of the batches (chosen from each batch's first
-- sample index, so a resumed run makes the same choices). Validation is
-- always on ground-truth windows.
local dd, dance = ...
local util = assert(loadfile(dd.home .. "/lua/deepdance/dance/util.lua"))(dd)

local VARIANTS = { "notebook", "paper", "mdn" }

-- The model of models/sequence.lua for model_options (the checkpoint's copy).
local function build_model(model_options)
  local build = dofile(dd.home .. "/models/sequence.lua")
  local copy = {}
  for k, v in pairs(model_options) do copy[k] = v end
  return build(copy)
end

---------------------------------------------------------------------------
-- Windows as a dataset, with auto-conditioning and input noise
---------------------------------------------------------------------------

local WindowSet = {}
WindowSet.__index = WindowSet

function WindowSet:size() return self.count end

-- (B, ...) rows of a buffer kept across batches.
local function buffer(self, name, B, ...)
  local buf = self[name]
  if not buf or buf:size(1) < B then
    buf = dd.zeros(B, ...)
    self[name] = buf
  end
  return buf:size(1) == B and buf or buf:narrow(1, 1, B)
end

-- Rows first..first+n-1 of the latents, row `start` (where the sequence
-- begins) repeated for indices before it.
local function copy_rows(dst, latents, first, n, start)
  if first >= start then
    dst:copy(latents:narrow(1, first, n))
    return
  end
  for j = 1, n do dst[j] = latents[math.max(start, first + j - 1)] end
end

-- Sample i's target row and the first row of its sequence.
function WindowSet:row(i)
  for _, s in ipairs(self.segments) do
    if i <= s.offset + s.count then return s.first + (i - s.offset) - 1, s.start end
  end
  error(("dd.dance.window_set: sample %s out of range 1..%d"):format(tostring(i), self.count), 0)
end

function WindowSet:is_conditioned(indices)
  if self.autocondition == 0 then return false end
  if self.autocondition_fraction >= 1 then return true end
  return (indices[1] * 0.6180339887498949) % 1 < self.autocondition_fraction
end

-- Replaces the generated positions of x (B, L, D) by the model's predictions.
function WindowSet:condition(x, indices)
  local B, L, D, k = #indices, self.look_back, self.latent, self.autocondition
  local model = self.model
  local ext = buffer(self, "ext", B, 2 * L, D)
  for b, i in ipairs(indices) do
    local t, start = self:row(i)
    copy_rows(ext[b], self.latents, t - 2 * L, 2 * L, start)
  end
  local ctx = buffer(self, "ctx", B, L, D)
  local was_training = model.training
  model:eval()
  local ok, err = pcall(function()
    for p = 1, L do
      if ((p - 1) // k) % 2 == 1 then
        ctx:copy(ext:narrow(2, p, L))
        local out = model:forward(ctx)
        local pred = model.mdn and model.mdn:sample(out, self.mdn_temperature) or out
        ext:select(2, L + p):copy(pred)
      end
    end
  end)
  if was_training ~= false then model:train() end
  if not ok then error(err, 0) end
  x:copy(ext:narrow(2, L + 1, L))
end

--- ws:batch(indices) -> (B, L, D): sample i is the window before its target row
-- (first + i - 1 for one sequence).
function WindowSet:batch(indices)
  local B, L, D = #indices, self.look_back, self.latent
  local x = buffer(self, "x", B, L, D)
  if self:is_conditioned(indices) then
    self:condition(x, indices)
  else
    for b, i in ipairs(indices) do x[b] = self.latents:narrow(1, self:row(i) - L, L) end
  end
  if self.noise > 0 then x:add_(dd.randn(B, L, D):mul_(self.noise)) end
  return x
end

--- ws:targets() -> a dataset of the targets: batch(indices) -> (B, D).
function WindowSet:targets()
  local ws = self
  return {
    size = function() return ws.count end,
    batch = function(self, indices)
      local y = buffer(self, "y", #indices, ws.latent)
      for b, i in ipairs(indices) do y[b] = ws.latents[ws:row(i)] end
      return y
    end,
  }
end

--- dd.dance.window_set{latents=, look_back=10, first=, last=, segments=, model=, autocondition=0,
--   autocondition_fraction=1, noise=0, mdn_temperature=1} -> dataset (size, batch, targets)
-- The windows whose targets are latents first..last (default: look_back+1..N).
-- segments = {{a1, b1}, {a2, b2}, ...} instead: rows a..b of the latents are
-- sequences of their own (the real dance and its mirror, say), cut into the
-- windows with targets a+L..b of each; no window reaches across a segment's
-- start, auto-conditioning's context included.
dance.window_set = util.public(function(opts)
  local fn = "dd.dance.window_set"
  local o = util.options(fn, opts, { "latents", "look_back", "first", "last", "segments", "model", "autocondition",
    "autocondition_fraction", "noise", "mdn_temperature" })
  local z = o.latents
  if not util.is_tensor(z) or z:dim() ~= 2 then
    error(("%s: option 'latents' must be an (N, D) Tensor, got %s"):format(fn, util.describe(z)), 0)
  end
  z = z:contiguous()
  local L = util.check(fn, "look_back", o.look_back, "integer", 10)
  local n = z:size(1)
  local segments = {}
  if o.segments ~= nil then
    if o.first ~= nil or o.last ~= nil then error(fn .. ": give 'segments' or 'first'/'last', not both", 0) end
    if type(o.segments) ~= "table" or #o.segments == 0 then
      error(("%s: option 'segments' must be a list of {first_row, last_row} pairs, got %s"):format(fn,
        util.describe(o.segments)), 0)
    end
    local count = 0
    for k, seg in ipairs(o.segments) do
      local a, b = type(seg) == "table" and seg[1], type(seg) == "table" and seg[2]
      if math.type(a) ~= "integer" or math.type(b) ~= "integer" or a < 1 or b > n or b - a < L then
        error(("%s: segment %d must be {first_row, last_row} within 1..%d holding more than look_back = %d rows, got %s"):format(
          fn, k, n, L, type(seg) == "table" and ("{%s, %s}"):format(tostring(a), tostring(b)) or util.describe(seg)), 0)
      end
      segments[k] = { first = a + L, count = b - a - L + 1, start = a, offset = count }
      count = count + b - a - L + 1
    end
  else
    local first = util.check(fn, "first", o.first, "integer", L + 1)
    local last = util.check(fn, "last", o.last, "integer", n)
    if first < L + 1 or last > n or last < first then
      error(("%s: targets %d..%d must lie in %d..%d (look_back %d, %d latents)"):format(fn, first, last, L + 1, n, L, n), 0)
    end
    segments[1] = { first = first, count = last - first + 1, start = 1, offset = 0 }
  end
  local last_seg = segments[#segments]
  local self = setmetatable({
    latents = z, look_back = L, latent = z:size(2), segments = segments, count = last_seg.offset + last_seg.count,
    autocondition = util.check(fn, "autocondition", o.autocondition, "count", 0),
    autocondition_fraction = util.check(fn, "autocondition_fraction", o.autocondition_fraction, "fraction", 1),
    noise = util.check(fn, "noise", o.noise, "nonneg", 0),
    mdn_temperature = util.check(fn, "mdn_temperature", o.mdn_temperature, "nonneg", 1),
    model = o.model,
  }, WindowSet)
  if self.autocondition > 0 then
    if not (type(o.model) == "table" and type(o.model.forward) == "function") then
      error(fn .. ": autocondition needs the model being trained (option 'model')", 0)
    end
    if self.autocondition >= L then
      error(("%s: autocondition = %d leaves no generated input in a window of %d (it must be < look_back)"):format(fn,
        self.autocondition, L), 0)
    end
  end
  return self
end)

---------------------------------------------------------------------------
-- train_sequence
---------------------------------------------------------------------------

local TRAIN_OPTIONS = { "ae_dir", "ae", "data", "latents", "out", "variant", "look_back", "split", "epochs",
  "batch_size", "lr", "seed", "mixtures", "min_sigma", "head_init", "units", "dropout", "recurrent_activation", "autocondition",
  "autocondition_fraction", "noise", "patience", "resume", "progress", "output", "encode_batch_size", "lr_schedule", "min_lr",
  "mirror" }

local function mdn_metrics(model)
  local mse = dd.nn.MSELoss()
  return {
    acc = function(p, t) return dd.metrics.categorical_accuracy(model.mdn:mean(p), t) end,
    mse = function(p, t) return mse:forward(model.mdn:mean(p), t) end,
  }
end

-- head_init = 'data': the output layer's bias starts at what predicting
-- nothing would say, the training targets' mean per latent (for the MDN,
-- every component's mean, and its log sigma at the targets' standard
-- deviation per latent), as the autoencoder's output starts at the mean
-- brightness. From zeros (Keras's default, 'zero') the first epochs only
-- learn those offsets; on a code whose latents vary little around large
-- means, an MDN starting at sigma = 1 hardly learned at all (docs/pipeline.md).
local function init_head(model, variant, targets, min_sigma)
  local D = targets:size(2)
  local mean = targets:mean(1):view(-1)
  local std = (targets - mean:view(1, D)):square():mean(1):view(-1):sqrt()
  if variant == "mdn" then
    local head = model.mdn
    local K = head.bias:numel() // (1 + 2 * D)
    local f = min_sigma or 0
    local ls = (std - f):clamp(1e-4, math.huge):log() -- log sigma = log(f + exp(raw)) = log(std)
    for j = 0, K - 1 do
      head.bias:narrow(1, K + j * D + 1, D):copy(mean)
      head.bias:narrow(1, K + K * D + j * D + 1, D):copy(ls)
    end
  else
    local last = model.modules[#model.modules - 1] -- the Linear before the ReLU
    last.bias:copy(mean)
  end
end

-- The number of latents in the training part.
local function split_count(fn, split, n, L)
  local n_train
  if split == nil then split = 0.9 end
  if math.type(split) == "integer" then
    n_train = split
  elseif type(split) == "number" and split > 0 and split < 1 then
    n_train = math.floor(n * split)
  else
    error(("%s: option 'split' must be an integer count of training latents or a fraction in (0, 1), got %s"):format(fn,
      util.describe(split)), 0)
  end
  if n_train < L + 1 or n - n_train < L + 1 then
    error(("%s: split %s of %d latents gives %d for training and %d for validation; each part needs more than look_back = %d"):format(
      fn, tostring(split), n, n_train, n - n_train, L), 0)
  end
  return n_train
end

dance.train_sequence = util.public(function(opts)
  local fn = "dd.dance.train_sequence"
  local o = util.options(fn, opts, TRAIN_OPTIONS)
  if o.out == nil then error(fn .. ": option 'out' is required (the run directory)", 0) end
  local out = util.check(fn, "out", o.out, "string"):gsub("/+$", "")
  local variant = util.choice(fn, "variant", o.variant, VARIANTS, "notebook")
  local L = util.check(fn, "look_back", o.look_back, "integer", 10)
  local epochs = util.check(fn, "epochs", o.epochs, "integer", 1)
  local batch_size = util.check(fn, "batch_size", o.batch_size, "integer", 128)
  local lr = util.check(fn, "lr", o.lr, "positive", 1e-3)
  local lr_schedule = util.choice(fn, "lr_schedule", o.lr_schedule, { "constant", "cosine" }, "constant")
  local min_lr = util.check(fn, "min_lr", o.min_lr, "nonneg", 0)
  local mixtures = util.check(fn, "mixtures", o.mixtures, "integer", 5)
  local patience = util.check(fn, "patience", o.patience, "count", nil)
  local resume = util.check(fn, "resume", o.resume, "boolean", false)
  local autocondition = util.check(fn, "autocondition", o.autocondition, "count", 0)
  local mirror = util.check(fn, "mirror", o.mirror, "boolean", false)
  local output = o.output or io.stdout
  if o.seed ~= nil and math.type(o.seed) ~= "integer" then
    error(("%s: option 'seed' must be an integer, got %s"):format(fn, util.describe(o.seed)), 0)
  end
  for _, k in ipairs{ "mixtures", "min_sigma" } do
    if o[k] ~= nil and variant ~= "mdn" then
      error(("%s: option '%s' is for the mdn variant, not '%s'"):format(fn, k, variant), 0)
    end
  end
  local min_sigma = util.check(fn, "min_sigma", o.min_sigma, "nonneg", nil)
  local head_init = util.choice(fn, "head_init", o.head_init, { "zero", "data" }, "zero")

  util.mkdir(fn, out)
  local latents
  if o.latents ~= nil then
    if o.ae ~= nil or o.ae_dir ~= nil or o.data ~= nil then error(fn .. ": give 'latents' or 'ae_dir'/'ae' and 'data', not both", 0) end
    if mirror then error(fn .. ": 'mirror' encodes the mirrored frames: give 'ae_dir'/'ae' and 'data', not 'latents'", 0) end
    latents = o.latents
    if not util.is_tensor(latents) or latents:dim() ~= 2 then
      error(("%s: option 'latents' must be an (N, D) Tensor, got %s"):format(fn, util.describe(latents)), 0)
    end
  else
    latents = dance.prepare_latents{ ae_dir = o.ae_dir, ae = o.ae, data = o.data, out = out,
                                     batch_size = o.encode_batch_size, output = output }
  end
  local n, D = latents:size(1), latents:size(2)
  local n_train = split_count(fn, o.split, n, L)
  -- mirror: the training part's mirror image is a second training sequence
  -- (rows n+1..n+n_train of `all`); validation stays on the real frames
  local all, train_segments = latents, { { 1, n_train } }
  if mirror then
    local flipped = dance.prepare_latents{ ae_dir = o.ae_dir, ae = o.ae, data = o.data, out = out, flip = true,
                                           batch_size = o.encode_batch_size, output = output }
    all = dd.zeros(n + n_train, D)
    all:narrow(1, 1, n):copy(latents)
    all:narrow(1, n + 1, n_train):copy(flipped:narrow(1, 1, n_train))
    train_segments[2] = { n + 1, n + n_train }
  end

  local model_options = { variant = variant, latent = D, units = o.units, dropout = o.dropout,
                          recurrent_activation = o.recurrent_activation,
                          mixtures = variant == "mdn" and mixtures or nil,
                          min_sigma = min_sigma ~= 0 and min_sigma or nil }
  local info = { model_options = model_options, look_back = L, variant = variant, latent = D, n_train = n_train,
                 n_latents = n, autocondition = autocondition, noise = o.noise or 0, head_init = head_init,
                 lr_schedule = lr_schedule, min_lr = lr_schedule == "cosine" and min_lr or nil, mirror = mirror or nil,
                 ae_dir = o.ae_dir, data = type(o.data) == "string" and o.data or nil }
  local info_path = out .. "/sequence.json"
  if resume and util.exists(info_path) then
    local ok, saved = pcall(dd.json.decode, util.read_file(info_path))
    if ok and type(saved) == "table" and util.canonical(saved.model_options) ~= util.canonical(model_options) then
      error(("%s: %s was trained with model options %s; this run asks for %s"):format(fn, info_path,
        util.canonical(saved.model_options), util.canonical(model_options)), 0)
    end
  end
  util.write_file(fn, info_path, dd.json.encode(info))

  if o.seed ~= nil then dd.manual_seed(o.seed) end
  local model = build_model(model_options)
  local train_x = dance.window_set{ latents = all, look_back = L, segments = train_segments, model = model,
    autocondition = autocondition, autocondition_fraction = o.autocondition_fraction, noise = o.noise }
  if head_init == "data" then
    local targets, at = dd.zeros(train_x:size(), D), 1
    for _, seg in ipairs(train_segments) do -- the rows after each segment's first look_back
      local count = seg[2] - seg[1] - L + 1
      targets:narrow(1, at, count):copy(all:narrow(1, seg[1] + L, count))
      at = at + count
    end
    init_head(model, variant, targets, min_sigma)
  end
  local val_x = dance.window_set{ latents = latents, look_back = L, first = n_train + L + 1, last = n }

  -- best.safetensors carries what load_sequence needs to rebuild the model
  local checkpoint = dd.callbacks.ModelCheckpoint{ dir = out, monitor = "val_loss", mode = "min", save_last = false,
                                                   meta = info }
  local callbacks = { checkpoint, dd.callbacks.CSVLogger{ out .. "/history.csv" } }
  if patience then callbacks[#callbacks + 1] = dd.callbacks.EarlyStopping{ monitor = "val_loss", patience = patience } end
  if lr_schedule == "cosine" then callbacks[#callbacks + 1] = dd.callbacks.CosineDecay{ lr = lr, min_lr = math.min(min_lr, lr) } end

  local history = dd.fit{
    model = model,
    loss = variant == "mdn" and dd.nn.MDNLoss{ mixtures = mixtures } or dd.nn.MSELoss(),
    optimizer = dd.optim.Adam{ model:parameters(), lr = lr },
    x = train_x, y = train_x:targets(),
    validation_data = { val_x, val_x:targets() },
    batch_size = batch_size, epochs = epochs,
    metrics = variant == "mdn" and mdn_metrics(model) or { "acc" },
    callbacks = callbacks, checkpoint_dir = out, resume = resume,
    progress = o.progress, output = output,
  }
  if type(dance.plot_curves) == "function" and #history.epoch > 0 then
    local ok, err = pcall(dance.plot_curves, history, out .. "/curves.png",
      { title = ("sequence model (%s), %s"):format(variant, out) })
    if not ok and output then output:write("train_sequence: no curves plotted: ", tostring(err), "\n") end
  end
  model:eval()
  model.look_back, model.latent = L, D
  return history, model
end)

---------------------------------------------------------------------------
-- load_sequence
---------------------------------------------------------------------------

--- load_sequence(dir_or_file [, {which='best'}]) -> model (eval mode; .look_back, .variant, .latent), info
-- 'best' falls back to last.safetensors when a run has no best yet; the model
-- options come from the checkpoint's meta, else from DIR/sequence.json.
dance.load_sequence = util.public(function(path, opts)
  local fn = "dd.dance.load_sequence"
  if type(path) ~= "string" or path == "" then error(("%s: expected a run directory or a checkpoint path, got %s"):format(fn,
    util.describe(path)), 0) end
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
  if not util.exists(file) then error(("%s: no checkpoint at %s"):format(fn, file), 0) end
  local info = util.checkpoint_meta(file)
  if not (info and info.model_options) then
    local text = util.read_file(dir .. "/sequence.json")
    local ok, saved = pcall(dd.json.decode, text or "")
    if not (text and ok and type(saved) == "table" and saved.model_options) then
      error(("%s: %s has no model options in its metadata and there is no readable %s/sequence.json"):format(fn, file, dir), 0)
    end
    info = saved
  end
  local model = build_model(info.model_options)
  dd.nn.load(file, model)
  model:eval()
  model.look_back, model.latent, model.dir, model.checkpoint = info.look_back, info.model_options.latent, dir, file
  -- the sampling temperature dd.dance.calibrate_temperature chose, if it ran
  local text = util.read_file(dir .. "/temperature.json")
  if text then
    local ok, cal = pcall(dd.json.decode, text)
    if not (ok and type(cal) == "table" and type(cal.temperature) == "number" and cal.temperature >= 0) then
      error(("%s: %s/temperature.json is not a calibration (expected an object with a number 'temperature' >= 0)"):format(fn, dir), 0)
    end
    if cal.sigma_temperature ~= nil and not (type(cal.sigma_temperature) == "number" and cal.sigma_temperature >= 0) then
      error(("%s: %s/temperature.json has a 'sigma_temperature' that is not a number >= 0"):format(fn, dir), 0)
    end
    model.temperature, model.sigma_temperature = cal.temperature, cal.sigma_temperature
  end
  return model, info
end)

-- deepdance.dance generate: new dances from a trained sequence model.
--   local z = dd.dance.generate{ae = ae, seq = seq, seed = "random", steps = 100}   -- (100, latent)
--   local frames = dd.dance.decode(ae, dd.dance.interpolate(z, 10))
--   dd.dance.write_video(frames, "dance.mp4", {fps = 60, scale = 2})
--
-- The loop is the paper's: predict the next latent from the last look_back
-- ones, append it, drop the oldest. Two ways to run it:
--   window = 'sliding'   exactly the paper: a forward pass over the last L
--                        latents for every prediction (the LSTM state starts
--                        from zero each time);
--   window = 'stateful'  (default) the LSTMs step once per prediction and
--                        keep their state: the seed warms the state, then
--                        each prediction costs one step. The first prediction
--                        is the same as the sliding window's; later ones see
--                        the whole history instead of the last L latents, so
--                        they differ (the model was trained on windows of L).
-- Modes: 'deterministic' feeds back the output itself (mdn: the mean of the
-- most probable component, T = 0); 'sample' draws from the mixture at
-- `temperature` (mdn only, default 1; 'auto': the one dd.dance.calibrate_temperature
-- chose for the model, seq.temperature), which picks the component, and
-- `sigma_temperature` (default: the same; with 'auto' the calibrated one,
-- seq.sigma_temperature), which scales the spread around its mean, and adds
-- Gaussian noise of std `noise` (any variant). The default is 'sample' for
-- an mdn model or when noise or temperature is given, else 'deterministic'
-- (the paper's loop). Every draw comes from dd's generator:
-- dd.manual_seed(s) before generate repeats a dance.
-- A model whose last layer is a ReLU (notebook, paper) can only produce
-- latents >= 0, so noisy predictions are clamped at 0 before going back in.
local dd, dance = ...
local util = assert(loadfile(dd.home .. "/lua/deepdance/dance/util.lua"))(dd)

---------------------------------------------------------------------------
-- The model as a stepped trunk and a head
---------------------------------------------------------------------------

-- Splits a Sequential into its LSTMs (Dropout is identity in eval mode) and
-- the modules after the last LSTM (the head).
local function split_model(fn, seq)
  local mods = rawget(seq, "modules")
  if type(mods) ~= "table" then error(fn .. ": 'seq' must be a Sequential model (models/sequence.lua)", 0) end
  local last = 0
  for i, m in ipairs(mods) do
    if m.kind == "LSTM" then last = i end
  end
  if last == 0 then error(fn .. ": 'seq' has no LSTM layer", 0) end
  local lstms, head, mdn = {}, {}, nil
  for i = 1, last do
    local kind = mods[i].kind
    if kind == "LSTM" then lstms[#lstms + 1] = mods[i]
    elseif kind ~= "Dropout" then
      error(("%s: window='stateful' steps LSTM and Dropout layers before the head; layer %d is %s (use window='sliding')"):format(
        fn, i, tostring(kind)), 0)
    end
  end
  for i = last + 1, #mods do
    head[#head + 1] = mods[i]
    if mods[i].kind == "MDN" then mdn = mods[i] end
  end
  return { lstms = lstms, head = head, mdn = mdn, relu_out = #mods > 0 and mods[#mods].kind == "ReLU" }
end

-- The latent size: the first LSTM's input size.
local function latent_size(parts) return parts.lstms[1].weight_ih_l0:size(2) end

---------------------------------------------------------------------------
-- Seeds
---------------------------------------------------------------------------

local function need_ae(fn, ae, what)
  if not (type(ae) == "table" and ae.encoder) then
    error(("%s: a seed from %s needs 'ae' (the autoencoder that encodes the frames)"):format(fn, what), 0)
  end
end

-- L consecutive frames of a FrameSet from `start`, encoded.
local function encode_frames(fn, ae, fs, start, L, what)
  need_ae(fn, ae, what)
  if start < 1 or start + L - 1 > #fs then
    error(("%s: %s: frames %d..%d are out of range (the cache has %d frames)"):format(fn, what, start, start + L - 1, #fs), 0)
  end
  local idx = {}
  for i = 1, L do idx[i] = start + i - 1 end
  return dance.encode(ae, fs:batch(idx))
end

-- A video into a temporary frame cache of the autoencoder's frame size
-- (dd.dance.ingest when there is one, else experiments/ingest.lua).
local function ingest_video(fn, ae, path, frames_needed)
  need_ae(fn, ae, "a video")
  local shape = ae.encoder.input_shape
  if not (type(shape) == "table" and #shape == 3) then
    error(fn .. ": ae.encoder.input_shape must be {1, H, W} to ingest a video seed at the autoencoder's size", 0)
  end
  local dir = os.tmpname()
  os.remove(dir)
  util.mkdir(fn, dir)
  local cache = dir .. "/seed.safetensors"
  local ok, err = pcall(function()
    if type(dance.ingest) == "function" then
      dance.ingest{ video = path, out = cache, height = shape[2], width = shape[3], limit = frames_needed }
    else
      local cmd = table.concat({ util.quote(dd.home .. "/deepdance"), util.quote(dd.home .. "/experiments/ingest.lua"),
        "--video", util.quote(path), "--out", util.quote(cache), "--height", tostring(shape[2]), "--width",
        tostring(shape[3]), "--limit", tostring(frames_needed), "--preview", util.quote(dir .. "/preview.png"),
        ">&2" }, " ")
      if not os.execute(cmd) then error(("ingesting %s failed (%s)"):format(path, cmd), 0) end
    end
  end)
  local fs = ok and dd.data.frames(cache)
  os.execute("rm -rf " .. util.quote(dir))
  if not ok then error(fn .. ": " .. tostring(err), 0) end
  return fs
end

-- The seed window (L, D) from the `seed` option.
local function make_seed(fn, o, L, D)
  local seed = o.seed == nil and "random" or o.seed
  if util.is_tensor(seed) then
    local s = seed
    if s:dim() == 3 and s:size(1) == 1 then s = s:select(1, 1) end
    if s:dim() ~= 2 or s:size(1) ~= L or s:size(2) ~= D then
      error(("%s: a seed Tensor must be (%d, %d) (look_back, latent), got %s"):format(fn, L, D, util.describe(seed)), 0)
    end
    return s:contiguous()
  end
  if type(seed) ~= "string" then
    error(("%s: option 'seed' must be 'random', 'index:N', 'frames:PATH[:start]', 'video:PATH[:start]' or an (L, D) Tensor, got %s"):format(
      fn, util.describe(seed)), 0)
  end
  if seed == "random" then return dd.rand(L, D) end
  local index = seed:match("^index:(%d+)$")
  if index then
    index = math.tointeger(tonumber(index))
    if o.latents ~= nil then
      local z = o.latents
      if not util.is_tensor(z) or z:dim() ~= 2 or z:size(2) ~= D then
        error(("%s: option 'latents' must be an (N, %d) Tensor, got %s"):format(fn, D, util.describe(z)), 0)
      end
      if index < 1 or index + L - 1 > z:size(1) then
        error(("%s: seed %s: latents %d..%d are out of range (%d latents)"):format(fn, seed, index, index + L - 1, z:size(1)), 0)
      end
      return z:narrow(1, index, L):clone()
    end
    local data = o.data
    if type(data) == "string" then data = dd.data.frames(data) end
    if data == nil then error(("%s: seed '%s' needs 'data' (a FrameSet or frame cache path) or 'latents'"):format(fn, seed), 0) end
    return encode_frames(fn, o.ae, data, index, L, "seed '" .. seed .. "'")
  end
  local kind, rest = seed:match("^(%a+):(.+)$")
  if kind == "frames" or kind == "video" then
    local path, start = rest:match("^(.*):(%d+)$")
    if not path or (kind == "video" and util.exists(rest)) then path, start = rest, 1 end
    start = math.tointeger(tonumber(start))
    if start < 1 then error(("%s: seed '%s': the start frame is 1-based"):format(fn, seed), 0) end
    local fs
    if kind == "frames" then
      fs = dd.data.frames(path)
    else
      if not util.exists(path) then error(("%s: seed '%s': no file %s"):format(fn, seed, path), 0) end
      fs = ingest_video(fn, o.ae, path, start + L - 1)
    end
    return encode_frames(fn, o.ae, fs, start, L, "seed '" .. seed .. "'")
  end
  error(("%s: unknown seed '%s' (known: 'random', 'index:N', 'frames:PATH[:start]', 'video:PATH[:start]', or an (L, D) Tensor)"):format(
    fn, seed), 0)
end

---------------------------------------------------------------------------
-- generate
---------------------------------------------------------------------------

local GENERATE_OPTIONS = { "ae", "seq", "seed", "steps", "mode", "temperature", "sigma_temperature", "noise", "window",
  "data", "latents", "look_back" }

dance.generate = util.public(function(opts)
  local fn = "dd.dance.generate"
  local o = util.options(fn, opts, GENERATE_OPTIONS)
  local seq = o.seq
  if not (type(seq) == "table" and type(seq.forward) == "function") then
    error(("%s: option 'seq' must be a sequence model (dd.dance.load_sequence), got %s"):format(fn, util.describe(seq)), 0)
  end
  local parts = split_model(fn, seq)
  local L = util.check(fn, "look_back", o.look_back or seq.look_back, "integer", nil)
  if not L then error(fn .. ": the look-back is unknown: seq.look_back is not set (pass look_back=)", 0) end
  local D = latent_size(parts)
  local steps = util.check(fn, "steps", o.steps, "integer", 100)
  local window = util.choice(fn, "window", o.window, { "stateful", "sliding" }, "stateful")
  local noise = util.check(fn, "noise", o.noise, "nonneg", 0)
  local auto = o.temperature == "auto"
  local temperature = util.temperature(fn, "temperature", util.check(fn, "temperature", o.temperature, "temperature", nil), o.seq)
  local sigma_temperature = util.check(fn, "sigma_temperature", o.sigma_temperature, "nonneg", nil)
  if sigma_temperature ~= nil and not parts.mdn then
    error(fn .. ": sigma_temperature is for a model with an MDN head (variant 'mdn'); the others take noise=", 0)
  end
  if sigma_temperature == nil and auto then sigma_temperature = o.seq.sigma_temperature end
  local sampling = parts.mdn or noise > 0 or temperature ~= nil
  local mode = util.choice(fn, "mode", o.mode, { "deterministic", "sample" }, sampling and "sample" or "deterministic")
  if mode == "deterministic" and (noise > 0 or temperature ~= nil) then
    error(("%s: mode='deterministic' takes neither noise nor temperature (got %s); use mode='sample'"):format(fn,
      noise > 0 and ("noise=" .. noise) or ("temperature=" .. temperature)), 0)
  end
  if temperature ~= nil and not parts.mdn then
    error(fn .. ": temperature is for a model with an MDN head (variant 'mdn'); the others take noise=", 0)
  end
  if mode == "deterministic" and o.sigma_temperature ~= nil then
    error(("%s: mode='deterministic' takes no sigma_temperature (got %g); use mode='sample'"):format(fn, sigma_temperature), 0)
  end
  temperature = mode == "sample" and (temperature or 1) or 0
  if sigma_temperature == nil then sigma_temperature = temperature end
  local seed = make_seed(fn, o, L, D)

  -- The next latent (1, D) from the head's output, a new tensor.
  local function predict(out)
    local z
    if parts.mdn then z = parts.mdn:sample(out, temperature, sigma_temperature) else z = out:clone() end
    if noise > 0 then
      z:add_(dd.randn(1, D):mul_(noise))
      if parts.relu_out then z:clamp_(0, nil) end
    end
    return z
  end

  local was_training = seq.training
  seq:eval()
  local preds = dd.zeros(steps, D)
  local ok, err = pcall(function()
    if window == "sliding" then
      local hist = dd.zeros(L + steps, D)
      hist:narrow(1, 1, L):copy(seed)
      for s = 1, steps do
        local z = predict(seq:forward(hist:narrow(1, s, L):view(1, L, D)))
        hist:narrow(1, L + s, 1):copy(z)
      end
      preds:copy(hist:narrow(1, L + 1, steps))
    else
      for _, lstm in ipairs(parts.lstms) do lstm:reset_state() end
      local function step(x)
        for _, lstm in ipairs(parts.lstms) do x = lstm:step(x) end
        for _, m in ipairs(parts.head) do x = m:forward(x) end
        return x
      end
      local out
      for t = 1, L do out = step(seed:narrow(1, t, 1)) end
      for s = 1, steps do
        local z = predict(out)
        preds:narrow(1, s, 1):copy(z)
        if s < steps then out = step(z) end
      end
      for _, lstm in ipairs(parts.lstms) do lstm:reset_state() end
    end
  end)
  if was_training then seq:train() end
  if not ok then error(err, 0) end
  return preds
end)

--- interpolate(latents (N, D), k) -> ((N-1)*k + 1, D): k-1 evenly spaced
-- linear interpolants between consecutive latents (k = 1: a copy).
dance.interpolate = util.public(function(latents, k)
  local fn = "dd.dance.interpolate"
  if not util.is_tensor(latents) or latents:dim() ~= 2 or latents:size(1) < 1 then
    error(("%s: latents must be an (N, D) Tensor, got %s"):format(fn, util.describe(latents)), 0)
  end
  if math.type(k) ~= "integer" or k < 1 then error(("%s: k must be an integer >= 1, got %s"):format(fn, util.describe(k)), 0) end
  local n, D = latents:size(1), latents:size(2)
  local out = dd.zeros((n - 1) * k + 1, D)
  if n > 1 then
    local a, b = latents:narrow(1, 1, n - 1), latents:narrow(1, 2, n - 1)
    local diff = b - a
    local grid = out:narrow(1, 1, (n - 1) * k):view(n - 1, k, D)
    for j = 0, k - 1 do grid:select(2, j + 1):copy(a + diff * (j / k)) end
  end
  out:narrow(1, (n - 1) * k + 1, 1):copy(latents:narrow(1, n, 1))
  return out
end)

---------------------------------------------------------------------------
-- Videos
---------------------------------------------------------------------------

local VideoWriter = {}
VideoWriter.__index = VideoWriter

--- vw:write(frames) with frames (N, C, H, W) or one (C, H, W), C = 1 or 3, in [0, 1].
function VideoWriter:write(frames)
  if util.is_tensor(frames) and frames:dim() == 3 then frames = frames:unsqueeze(1) end
  if not util.is_tensor(frames) or frames:dim() ~= 4 or (frames:size(2) ~= 1 and frames:size(2) ~= 3) then
    error(("dd.dance.video_writer: write: frames must be (N, 1 or 3, H, W), got %s"):format(util.describe(frames)), 2)
  end
  local H, W = frames:size(3), frames:size(4)
  local oh, ow = math.max(1, math.floor(H * self.scale + 0.5)), math.max(1, math.floor(W * self.scale + 0.5))
  for i = 1, frames:size(1) do
    local f = frames[i]
    if oh ~= H or ow ~= W then f = dd.vision.resize(f, oh, ow, { filter = self.filter }) end
    if f:size(1) == 1 then f = f:expand(3, oh, ow) end
    self.writer:write(f)
    self.n = self.n + 1
  end
  return self
end

function VideoWriter:close()
  self.writer:close()
  return self.n
end

--- video_writer(path, {fps=30, scale=2, filter='area', crf=}) -> writer with write(frames) and close().
-- The format follows the extension (dd.video.writer): .mp4 (H.264) or .gif.
-- Frames are upscaled by `scale` with dd.vision.resize ('area': at integer
-- scales every pixel becomes a sharp block; 'bilinear': smooth) and grey is
-- repeated into RGB; nothing is drawn on them.
dance.video_writer = util.public(function(path, opts)
  local fn = "dd.dance.video_writer"
  if type(path) ~= "string" or path == "" then error(("%s: expected a path, got %s"):format(fn, util.describe(path)), 0) end
  opts = util.options(fn, opts, { "fps", "scale", "filter", "crf" })
  local vopts = { fps = util.check(fn, "fps", opts.fps, "positive", 30) }
  if opts.crf ~= nil and not path:match("%.gif$") then vopts.crf = opts.crf end
  local dir = util.dirname(path)
  if dir and dir ~= "" then util.mkdir(fn, dir) end
  return setmetatable({
    writer = dd.video.writer(path, vopts), n = 0, path = path,
    scale = util.check(fn, "scale", opts.scale, "positive", 2),
    filter = util.choice(fn, "filter", opts.filter, { "area", "bilinear" }, "area"),
  }, VideoWriter)
end)

--- write_video(frames (N, 1, H, W), path, {fps=30, scale=2, filter='area', crf=}) -> frames written
dance.write_video = util.public(function(frames, path, opts)
  local w = dance.video_writer(path, opts)
  local ok, err = pcall(w.write, w, frames)
  if not ok then error(err, 0) end
  return w:close()
end)

--- contact_sheet(frames (N, C, H, W), path, {count=24, cols=6}) -> writes a PNG of `count` evenly spaced frames.
dance.contact_sheet = util.public(function(frames, path, opts)
  local fn = "dd.dance.contact_sheet"
  opts = util.options(fn, opts, { "count", "cols" })
  local count = util.check(fn, "count", opts.count, "integer", 24)
  local n = frames:size(1)
  local picks = {}
  for k = 1, math.min(count, n) do
    local i = math.min(count, n) == 1 and 1 or math.floor((k - 1) * (n - 1) / (math.min(count, n) - 1) + 0.5) + 1
    picks[k] = frames[i]
  end
  dd.image.save(path, dd.image.grid(picks, { cols = util.check(fn, "cols", opts.cols, "integer", 6), pad = 2, pad_value = 0.6 }))
end)

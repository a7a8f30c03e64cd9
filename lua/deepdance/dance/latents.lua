-- deepdance.dance latents: frames to latents and back, and the windows the
-- sequence model learns from.
--   local z = dd.dance.encode(ae, frames)        -- frames: a FrameSet or (N, 1, H, W) -> (N, latent)
--   local f = dd.dance.decode(ae, z)             -- (N, latent) -> (N, 1, H, W)
--   local x, y = dd.dance.windows(z, 10)         -- x (N-10, 10, latent), y (N-10, latent)
--   local z, reused = dd.dance.prepare_latents{ae_dir = "runs/r/ae", data = "data/clip.safetensors", out = "runs/r/seq"}
-- Encoding and decoding run in batches in eval mode through dd.predict, so a
-- uint8 frame cache is converted to float one batch at a time.
local dd, dance = ...
local util = assert(loadfile(dd.home .. "/lua/deepdance/dance/util.lua"))(dd)

local function check_ae(fn, ae, part)
  local m = type(ae) == "table" and ae[part]
  if not (m and type(m.forward) == "function") then
    error(("%s: 'ae' must be an autoencoder with ae.%s (a module), got %s"):format(fn, part, util.describe(ae)), 0)
  end
  return m
end

local function is_frameset(v)
  return type(v) == "userdata" and not util.is_tensor(v) and type(v.batch) == "function" and type(v.size) == "function"
end

--- encode(ae, frames [, {batch_size=64, flip=false}]) -> (N, latent)
-- flip: every frame mirrored left-right before it is encoded (the mirrored
-- dance of train_sequence's `mirror`), one batch at a time.
dance.encode = util.public(function(ae, frames, opts)
  local fn = "dd.dance.encode"
  local encoder = check_ae(fn, ae, "encoder")
  opts = util.options(fn, opts, { "batch_size", "flip" })
  local bs = util.check(fn, "batch_size", opts.batch_size, "integer", 64)
  local flip = util.check(fn, "flip", opts.flip, "boolean", false)
  if util.is_tensor(frames) then
    if frames:dim() ~= 4 then error(("%s: frames must be (N, C, H, W), got %s"):format(fn, util.describe(frames)), 0) end
  elseif not is_frameset(frames) then
    error(("%s: frames must be a FrameSet (dd.data.frames) or an (N, C, H, W) Tensor, got %s"):format(fn,
      util.describe(frames)), 0)
  end
  local x = frames
  if flip and util.is_tensor(frames) then -- already in memory: mirrored in one call
    x = dd.vision.flip_shift(frames, { flip = true })
  elseif flip then -- a frame cache: mirrored one batch at a time
    x = {
      size = function() return #frames end,
      batch = function(_, indices) return dd.vision.flip_shift(frames:batch(indices), { flip = true }) end,
    }
  end
  return dd.predict{ model = encoder, x = x, batch_size = bs }
end)

--- decode(ae, latents [, {batch_size=64}]) -> (N, 1, H, W)
dance.decode = util.public(function(ae, latents, opts)
  local fn = "dd.dance.decode"
  local decoder = check_ae(fn, ae, "decoder")
  opts = util.options(fn, opts, { "batch_size" })
  local bs = util.check(fn, "batch_size", opts.batch_size, "integer", 64)
  if not util.is_tensor(latents) or latents:dim() ~= 2 then
    error(("%s: latents must be an (N, latent) Tensor, got %s"):format(fn, util.describe(latents)), 0)
  end
  return dd.predict{ model = decoder, x = latents, batch_size = bs }
end)

--- windows(latents, look_back) -> x (N-L, L, D), y (N-L, D):
-- x[i] = latents[i .. i+L-1] and y[i] = latents[i+L]: the L latents before
-- index t predict t. Both are new tensors (x holds L copies of the data).
dance.windows = util.public(function(latents, look_back)
  local fn = "dd.dance.windows"
  if not util.is_tensor(latents) or latents:dim() ~= 2 then
    error(("%s: latents must be an (N, D) Tensor, got %s"):format(fn, util.describe(latents)), 0)
  end
  if math.type(look_back) ~= "integer" or look_back < 1 then
    error(("%s: look_back must be an integer >= 1, got %s"):format(fn, util.describe(look_back)), 0)
  end
  local n, d, L = latents:size(1), latents:size(2), look_back
  if n <= L then error(("%s: %d latents give no window of %d inputs and a target"):format(fn, n, L), 0) end
  local x = dd.zeros(n - L, L, d)
  for j = 1, L do x:select(2, j):copy(latents:narrow(1, j, n - L)) end
  return x, latents:narrow(1, L + 1, n - L):clone()
end)

---------------------------------------------------------------------------
-- The latents of a run, cached in OUT/latents.safetensors
---------------------------------------------------------------------------
-- The cache is reused when it was made from the same autoencoder checkpoint
-- and the same frame cache. A checkpoint is recognised by its header (its
-- metadata, which holds the RNG state at save time) plus the sum and the sum
-- of squares of every tensor, so a checkpoint saved again after any training
-- is told apart without hashing megabytes in Lua.

local function checkpoint_fingerprint(path)
  local tensors, meta = dd.load(path)
  local keys, parts = {}, {}
  for k in pairs(tensors) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local t = tensors[k]
    parts[#parts + 1] = ("%s:%s:%.9g:%.9g"):format(k, table.concat(t:shape(), "x"), t:sum(), (t * t):sum())
  end
  parts[#parts + 1] = util.canonical(meta)
  return util.fnv1a(table.concat(parts, "\n"))
end

local function frames_fingerprint(path)
  local header = dd.safetensors_header(path)
  return util.fnv1a(tostring(util.file_size(path)) .. "\n" .. util.canonical(header))
end

--- prepare_latents{ae_dir=, ae=, data=, out=, batch_size=64, flip=false, output=io.stdout} -> latents (N, D), reused
-- ae_dir: the autoencoder's run directory (its best.safetensors); ae: an
-- autoencoder already loaded (otherwise dd.dance.load_autoencoder(ae_dir)).
-- data: a frame cache path (or a FrameSet, which is never cached).
-- out: where latents.safetensors goes (optional: without it nothing is cached).
-- flip: the frames mirrored left-right (dd.dance.encode's flip), cached apart
-- in latents_flip.safetensors.
dance.prepare_latents = util.public(function(opts)
  local fn = "dd.dance.prepare_latents"
  local o = util.options(fn, opts, { "ae_dir", "ae", "data", "out", "batch_size", "flip", "output" })
  local output = o.output or io.stdout
  local function say(text) if output then output:write(text, "\n") end end
  if o.data == nil then error(fn .. ": option 'data' is required (a frame cache path or a FrameSet)", 0) end
  if o.ae == nil and o.ae_dir == nil then error(fn .. ": give 'ae_dir' (or a loaded 'ae')", 0) end
  local flip = util.check(fn, "flip", o.flip, "boolean", false)
  -- The checkpoint dd.dance.load_autoencoder(ae_dir) reads: best, else last.
  local ae_ck
  if o.ae_dir then
    local dir = util.check(fn, "ae_dir", o.ae_dir, "string"):gsub("/+$", "")
    ae_ck = dir .. "/best.safetensors"
    if not util.exists(ae_ck) then ae_ck = dir .. "/last.safetensors" end
    if not util.exists(ae_ck) then error(("%s: no autoencoder checkpoint in %s (best or last.safetensors)"):format(fn, dir), 0) end
  end

  local data_path = type(o.data) == "string" and o.data or nil
  local want
  if ae_ck and data_path then
    want = { ae_checkpoint = ae_ck, ae_fingerprint = checkpoint_fingerprint(ae_ck), data = data_path,
             data_fingerprint = frames_fingerprint(data_path), view = flip and "flip" or "plain" }
  end
  local cache = o.out and (o.out:gsub("/+$", "") .. "/" .. (flip and "latents_flip.safetensors" or "latents.safetensors"))
  if cache and want and util.exists(cache) then
    local ok, tensors, meta = pcall(dd.load, cache)
    if ok and tensors.latents and meta.format == "deepdance-latents" and meta.ae_fingerprint == want.ae_fingerprint
        and meta.data_fingerprint == want.data_fingerprint and (meta.view or "plain") == want.view then
      say(("latents: reusing %s (%d x %d)"):format(cache, tensors.latents:size(1), tensors.latents:size(2)))
      return tensors.latents, true
    end
    say(("latents: %s was made from another autoencoder checkpoint or frame cache; encoding again"):format(cache))
  end

  local ae = o.ae
  if ae == nil then
    if type(dance.load_autoencoder) ~= "function" then
      error(fn .. ": dd.dance.load_autoencoder is not available (lua/deepdance/dance/autoencoder.lua); pass a loaded 'ae'", 0)
    end
    ae = dance.load_autoencoder(o.ae_dir)
  end
  local frames = data_path and dd.data.frames(data_path) or o.data
  local t0 = dd.clock()
  say(("latents: encoding %d frames%s..."):format(#frames, flip and " mirrored" or ""))
  local latents = dance.encode(ae, frames, { batch_size = o.batch_size, flip = flip })
  say(("latents: %d x %d in %.1f s"):format(latents:size(1), latents:size(2), dd.clock() - t0))
  if cache then
    util.mkdir(fn, util.dirname(cache) or ".")
    local meta = { format = "deepdance-latents", frames = tostring(latents:size(1)), latent = tostring(latents:size(2)) }
    for k, v in pairs(want or {}) do meta[k] = v end
    dd.save(cache, { latents = latents }, meta)
  end
  return latents, false
end)

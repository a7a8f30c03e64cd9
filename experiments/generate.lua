-- experiments/generate.lua: a new dance from a trained autoencoder and sequence
-- model (dd.dance.generate): seed window, the predict-append-drop loop,
-- optional interpolation, decoded frames upscaled into an MP4 (and a GIF),
-- a contact sheet PNG and the generated latents next to the video.
--   deepdance experiments/generate.lua --ae runs/r/ae --seq runs/r/seq --seed random --steps 100 \
--     --interpolate 10 --out runs/r/gen/dance.mp4 --gif runs/r/gen/dance.gif
-- Seeds: random (uniform [0,1), the original's), index:N (latents N..N+L-1 of
-- the training data: --data, else the run's latents.safetensors),
-- frames:PATH[:start] (a frame cache), video:PATH[:start] (ingested first).
-- Frames are decoded and written in batches, so a long video never exists
-- whole as float; a GIF, however, keeps every frame (3 bytes a pixel) until
-- it is closed.
if not dd.dance then assert(loadfile(dd.home .. "/lua/deepdance/dance/init.lua"))(dd) end -- until init.lua loads it

local p = dd.cli.parser("generate.lua", "Generate a dance video with a trained autoencoder and sequence model.")
p:option("--ae", "autoencoder run directory (or checkpoint)"):count(1)
p:option("--seq", "sequence model run directory (or checkpoint)"):count(1)
p:option("--out", "output video (.mp4 or .gif)"):count(1)
p:option("--seed", "random | index:N | frames:PATH[:start] | video:PATH[:start]", "random")
p:option("--steps", "latents to predict", "100"):convert(math.tointeger)
p:option("--interpolate", "K: decode K-1 interpolated latents between predictions (1: none)", "1"):convert(math.tointeger)
p:option("--mode", "deterministic or sample (default: sample for mdn or with --noise/--temperature)"):choices{ "deterministic", "sample" }
p:option("--temperature", "mdn sampling temperature (sample mode), or auto: the one experiments/calibrate.lua chose")
  :convert(function(s) return s == "auto" and s or tonumber(s) end)
p:option("--sigma-temperature", "mdn: the spread of a draw, apart from the component's temperature (default: --temperature's; with --temperature auto, the calibrated one)")
  :convert(tonumber)
p:option("--noise", "sample mode: std of Gaussian noise added to each prediction"):convert(tonumber)
p:option("--window", "stateful (fast: LSTM state carried) or sliding (the paper's loop)", "stateful")
  :choices{ "stateful", "sliding" }
p:option("--fps", "output frame rate (default: 6 per step, times --interpolate)"):convert(tonumber)
p:option("--scale", "upscaling factor of the frames", "2"):convert(tonumber)
p:option("--filter", "upscaling filter: area (sharp blocks) or bilinear (smooth)", "area"):choices{ "area", "bilinear" }
p:option("--gif", "also write an animated GIF here")
p:option("--data", "frame cache for index:N seeds (default: the --seq run's latents.safetensors)")
p:option("--rng-seed", "random seed of the seed window and of sampling (default: from the clock, printed)")
  :convert(math.tointeger)
p:option("--batch-size", "frames decoded per batch", "64"):convert(math.tointeger)
p:option("--sheet", "contact sheet PNG (default: next to --out, _sheet.png)")
p:option("--latents-out", "generated latents (.safetensors; default: next to --out, _latents.safetensors)")
local o = dd.cli.parse(p, arg)
if not o then return end

local function fail(msg) error("generate: " .. msg, 0) end
if o.steps < 1 then fail("--steps must be >= 1") end
if o.interpolate < 1 then fail("--interpolate must be >= 1") end
local stem = o.out:gsub("%.[%w]+$", "")
local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
for _, path in ipairs({ o.out, o.gif, o.sheet, o.latents_out }) do
  local dir = path and path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" and not os.execute("mkdir -p " .. quote(dir)) then fail("cannot create directory " .. dir) end
end

local rng_seed = o.rng_seed or (os.time() % 1000000)
dd.manual_seed(rng_seed)
local ae = dd.dance.load_autoencoder(o.ae)
local seq, info = dd.dance.load_sequence(o.seq)
print(("sequence model: %s variant, look-back %d, latent %d; rng seed %d"):format(seq.variant, seq.look_back,
  seq.latent, rng_seed))

local gen = { ae = ae, seq = seq, seed = o.seed, steps = o.steps, mode = o.mode, temperature = o.temperature,
              sigma_temperature = o.sigma_temperature, noise = o.noise, window = o.window }
if o.seed:match("^index:") then
  if o.data then
    gen.data = o.data
  else
    local dir = o.seq:match("%.safetensors$") and (o.seq:match("^(.*)/[^/]*$") or ".") or o.seq:gsub("/+$", "")
    local ok, tensors = pcall(dd.load, dir .. "/latents.safetensors")
    if not ok then fail(("seed %s needs --data (no latents cache in %s)"):format(o.seed, dir)) end
    gen.latents = tensors.latents
  end
end

local t0 = dd.clock()
local z = dd.dance.generate(gen)
local t_gen = dd.clock() - t0
dd.save(o.latents_out or (stem .. "_latents.safetensors"), { latents = z },
  { seed = o.seed, steps = tostring(o.steps), mode = o.mode or "", window = o.window, rng_seed = tostring(rng_seed) })

-- How much the dance still moves: the mean absolute change of the latent per
-- step at the start and at the end (a deterministic regressor tends to freeze).
local function motion(first, count)
  if count < 1 then return 0 / 0 end
  return (z:narrow(1, first + 1, count) - z:narrow(1, first, count)):abs():mean()
end
local tenth = math.max(1, (o.steps - 1) // 10)
print(("%d steps in %.2f s (%s window); latent change per step: first 10%% %.4g, last 10%% %.4g"):format(o.steps, t_gen,
  o.window, motion(1, math.min(tenth, o.steps - 1)), motion(math.max(1, o.steps - tenth), math.min(tenth, o.steps - 1))))

local frames_z = dd.dance.interpolate(z, o.interpolate)
local total = frames_z:size(1)
local fps = o.fps or 6 * o.interpolate
local writers = { dd.dance.video_writer(o.out, { fps = fps, scale = o.scale, filter = o.filter }) }
if o.gif then writers[2] = dd.dance.video_writer(o.gif, { fps = math.min(fps, 50), scale = o.scale, filter = o.filter }) end

-- 24 evenly spaced frames for the contact sheet, collected while writing.
local picks, want = {}, {}
local count = math.min(24, total)
for k = 1, count do
  want[count == 1 and 1 or math.floor((k - 1) * (total - 1) / (count - 1) + 0.5) + 1] = k
end
local t1 = dd.clock()
for first = 1, total, o.batch_size do
  local n = math.min(o.batch_size, total - first + 1)
  local frames = dd.dance.decode(ae, frames_z:narrow(1, first, n), { batch_size = o.batch_size })
  for _, w in ipairs(writers) do w:write(frames) end
  for i = 1, n do
    if want[first + i - 1] then picks[want[first + i - 1]] = frames[i]:clone() end
  end
end
for _, w in ipairs(writers) do w:close() end
local sheet = o.sheet or (stem .. "_sheet.png")
dd.image.save(sheet, dd.image.grid(picks, { cols = 6, pad = 2, pad_value = 0.6 }))
print(("%d frames at %g fps decoded and written in %.1f s -> %s%s (contact sheet %s)"):format(total, fps,
  dd.clock() - t1, o.out, o.gif and (", " .. o.gif) or "", sheet))

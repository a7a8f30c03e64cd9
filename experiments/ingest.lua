-- experiments/ingest.lua: a video to a frame cache, as the paper prepared its
-- data: frames sampled at --fps exactly like `ffmpeg -vf fps=N`, cropped (or
-- padded) to 5:3, background removed (the paper's r+g+b > 230 rule, or a
-- median background model for a static camera), shrunk to 120x200 with an
-- antialiasing area filter (edges keep grey values, as in the original) and
-- stored as uint8 (N, 1, 120, 200) with metadata, plus a contact sheet PNG.
--   deepdance experiments/ingest.lua --video clip.mp4 --out data/clip.safetensors
local p = dd.cli.parser("ingest.lua", "Decode a video into a uint8 silhouette frame cache.")
p:option("--video", "input video (any container/codec FFmpeg decodes)"):count(1)
p:option("--out", "output frame cache (.safetensors)"):count(1)
p:option("--fps", "frames sampled per second", "3"):convert(tonumber)
p:option("--background", "threshold (the paper's rule) or median (static camera)", "threshold")
  :choices{ "threshold", "median" }
p:option("--sum-above", "threshold rule: r+g+b above this (0-765) is background", "230"):convert(tonumber)
p:option("--threshold", "median rule: difference from the background that counts as dancer", "0.12"):convert(tonumber)
p:option("--samples", "median rule: frames sampled for the background model", "40"):convert(tonumber)
p:option("--height", "output height", "120"):convert(tonumber)
p:option("--width", "output width", "200"):convert(tonumber)
p:option("--fit", "reach the output aspect by crop or pad (or stretch)", "crop"):choices{ "crop", "pad", "stretch" }
p:option("--limit", "stop after this many frames (0: all)", "0"):convert(tonumber)
p:option("--preview", "contact sheet PNG (default: next to --out)")
local o = dd.cli.parse(p, arg)
if not o then return end

local v = dd.video.open(o.video)
local H, W = o.height, o.width
-- The silhouette rule runs at twice the output size: thresholding there and
-- then area-shrinking gives the antialiased edges the original had. FFmpeg's
-- scaler shrinks each frame straight to the working size (so full-size frames
-- are never converted), then a centred crop (a view) or a white pad gives 5:3.
local WH, WW = 2 * H, 2 * W
local dh, dw = WH, WW
if o.fit ~= "stretch" then
  local s = (o.fit == "crop" and math.max or math.min)(WH / v.height, WW / v.width)
  dh, dw = math.max(1, math.floor(v.height * s + 0.5)), math.max(1, math.floor(v.width * s + 0.5))
  if o.fit == "crop" then dh, dw = math.max(dh, WH), math.max(dw, WW) else dh, dw = math.min(dh, WH), math.min(dw, WW) end
end
local function working(frame)
  if dh == WH and dw == WW then return frame end
  if o.fit == "crop" then
    return frame:narrow(2, (dh - WH) // 2 + 1, WH):narrow(3, (dw - WW) // 2 + 1, WW)
  end
  local canvas = dd.ones(frame:size(1), WH, WW)
  canvas:narrow(2, (WH - dh) // 2 + 1, dh):narrow(3, (WW - dw) // 2 + 1, dw):copy(frame)
  return canvas
end

local background
if o.background == "median" then
  io.stderr:write(("building a median background from %d frames...\n"):format(o.samples))
  local bg = dd.vision.background_model(v, { samples = o.samples })
  background = working(dd.vision.resize(bg, dh, dw, { filter = "area" }))
end

local writer = dd.data.frame_writer{ channels = 1, height = H, width = W }
local expected = math.max(1, math.floor(v.duration * o.fps + 0.5))
if o.limit > 0 then expected = math.min(expected, o.limit) end
local t0, last_print = dd.clock(), 0
local function progress(n, final)
  local now = dd.clock()
  if not final and now - last_print < 0.5 then return end
  last_print = now
  local rate = n / math.max(now - t0, 1e-9)
  local eta = math.max(expected - n, 0) / math.max(rate, 1e-9)
  local width = 30
  local filled = math.min(width, math.floor(width * n / expected))
  io.stderr:write(("\r%5d/%d [%s%s] %.1f frames/s, ETA %ds  "):format(n, expected, string.rep("=", filled),
    string.rep(".", width - filled), rate, math.floor(eta + 0.5)))
  if final then io.stderr:write("\n") end
end

for frame in v:frames{ fps = o.fps, size = { dh, dw } } do
  local f = working(frame)
  local mask
  if background then
    mask = dd.vision.silhouette(f, { method = "median", background = background, threshold = o.threshold })
  else
    mask = dd.vision.silhouette(f, { method = "threshold", sum_above = o.sum_above })
  end
  writer:add(dd.vision.resize(mask, H, W, { filter = "area" }))
  progress(writer.n)
  if o.limit > 0 and writer.n >= o.limit then break end
end
v:close()
progress(writer.n, true)
if writer.n == 0 then error("ingest: " .. o.video .. " gave no frames at " .. o.fps .. " fps", 0) end

local dir = o.out:match("^(.*)/[^/]*$")
if dir then os.execute("mkdir -p '" .. dir .. "'") end
writer:save(o.out, { source = o.video, fps = o.fps, method = o.background, height = H, width = W,
                     fit = o.fit, frames = writer.n, format = "deepdance-frames" })

-- Contact sheet: 24 frames spread over the clip.
local fs = dd.data.frames(o.out)
local picks = {}
for k = 1, math.min(24, #fs) do picks[k] = fs:get(math.floor((k - 1) * (#fs - 1) / math.max(23, 1)) + 1) end
local preview = o.preview or (o.out:gsub("%.safetensors$", "") .. "_preview.png")
dd.image.save(preview, dd.image.grid(picks, { cols = 6, pad = 2, pad_value = 0.6 }))
print(("%d frames of %dx%d in %.1f s -> %s (preview %s)"):format(writer.n, H, W, dd.clock() - t0, o.out, preview))

-- experiments/synth_video.lua: renders the synthetic dance video, the default
-- training data when no real dance video is at hand. A black humanoid
-- silhouette dances a random choreography (lua/deepdance/dancer.lua) over a
-- bright, moving stage backdrop; the paper's rule (r + g + b > 230 is
-- background) separates them exactly. H.264 through libavcodec (dd.video).
-- One seed gives one video, frame for frame.
--
--   deepdance experiments/synth_video.lua --minutes 10 --seed 1 --out data/synthetic_dance.mp4
--   deepdance experiments/synth_video.lua --minutes 1 --no-video --preview docs/img/synthetic_dancer.png
local dancer = require "deepdance.dancer"

local USAGE = [[
usage: deepdance experiments/synth_video.lua [options]
  --minutes M        length of the video in minutes (default 10)
  --seed S           integer seed: the choreography, tempo and backdrop (default 1)
  --out PATH         the video to write, .mp4 (default data/synthetic_dance.mp4)
  --fps F            frames per second (default 30)
  --width W          frame width in pixels (default 640)
  --height H         frame height in pixels (default 360)
  --crf Q            H.264 quality, 0 (lossless) .. 51 (default 18)
  --preview PATH     also write a contact sheet PNG: 24 frames sampled evenly
  --silhouettes PATH also write those frames after the paper's threshold, at 120x200
  --no-video         write only the PNGs
  --help             this text]]

-- name -> kind; every option but the flags takes one value
local KNOWN = {minutes = "number", seed = "integer", out = "string", fps = "number", width = "integer",
               height = "integer", crf = "integer", preview = "string", silhouettes = "string",
               ["no-video"] = "flag", help = "flag"}

local function fail(msg) error("synth_video: " .. msg, 0) end

local function known_list()
  local names = {}
  for k in pairs(KNOWN) do names[#names + 1] = "--" .. k end
  table.sort(names)
  return table.concat(names, ", ")
end

local function parse_args(argv)
  local o = {minutes = 10, seed = 1, out = "data/synthetic_dance.mp4", fps = 30, width = 640, height = 360, crf = 18}
  local i = 1
  while argv[i] do
    local name = argv[i]:match("^%-%-([%w%-]+)$")
    local kind = name and KNOWN[name]
    if not kind then fail(("unknown option '%s' (known: %s)"):format(argv[i], known_list())) end
    if kind == "flag" then
      o[name] = true
      i = i + 1
    else
      local v = argv[i + 1]
      if v == nil then fail(("option --%s needs a value"):format(name)) end
      if kind == "string" then
        o[name] = v
      else
        local n = tonumber(v)
        if not n or (kind == "integer" and math.type(n) ~= "integer") then
          fail(("option --%s needs %s, got '%s'"):format(name, kind == "integer" and "an integer" or "a number", v))
        end
        o[name] = n
      end
      i = i + 2
    end
  end
  if o.help then return o end
  if not (o.minutes > 0) then fail(("--minutes must be > 0, got %s"):format(o.minutes)) end
  if not (o.fps > 0 and o.fps <= 240) then fail(("--fps must be in (0, 240], got %s"):format(o.fps)) end
  if o.width < 64 or o.height < 64 or o.width % 2 ~= 0 or o.height % 2 ~= 0 then
    fail(("--width and --height must be even and >= 64 (H.264 4:2:0), got %dx%d"):format(o.width, o.height))
  end
  if o.crf < 0 or o.crf > 51 then fail(("--crf must be in 0..51, got %d"):format(o.crf)) end
  if o["no-video"] and not (o.preview or o.silhouettes) then
    fail("--no-video needs --preview or --silhouettes (otherwise there is nothing to write)")
  end
  return o
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function make_parent_dir(path)
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then os.execute("mkdir -p " .. shell_quote(dir)) end
end

local o = parse_args(arg)
if o.help then print(USAGE) return end
local video = dancer.video{seed = o.seed, width = o.width, height = o.height, fps = o.fps}
local nframes = math.max(1, math.floor(o.minutes * 60 * o.fps + 0.5))
io.stderr:write(("synth_video: seed %d, %d frames (%.2f min at %g fps), %dx%d, %.1f BPM\n")
  :format(o.seed, nframes, nframes / o.fps / 60, o.fps, o.width, o.height, video.choreo.bpm))

-- Contact sheets: 24 frames sampled evenly, as the video shows them and as the
-- paper's pipeline sees them (thresholded, then shrunk to 120x200).
if o.preview or o.silhouettes then
  local thumbs, sils = {}, {}
  for i = 0, 23 do
    local frame = video:frame(math.floor(i * (nframes - 1) / 23 + 0.5))
    local tw = 256
    thumbs[#thumbs + 1] = dd.vision.resize(frame, math.floor(tw * o.height / o.width + 0.5), tw, {filter = "area"})
    local sil = dd.vision.silhouette(frame, {method = "threshold", sum_above = 230})
    sils[#sils + 1] = dd.vision.resize(sil, 120, 200, {filter = "area"})
  end
  if o.preview then
    make_parent_dir(o.preview)
    dd.image.save(o.preview, dd.image.grid(thumbs, {cols = 6, pad = 4, pad_value = 1}))
    io.stderr:write("synth_video: wrote ", o.preview, "\n")
  end
  if o.silhouettes then
    make_parent_dir(o.silhouettes)
    dd.image.save(o.silhouettes, dd.image.grid(sils, {cols = 6, pad = 4, pad_value = 0.5}))
    io.stderr:write("synth_video: wrote ", o.silhouettes, "\n")
  end
end

if not o["no-video"] then
  make_parent_dir(o.out)
  local writer = dd.video.writer(o.out, {fps = o.fps, crf = o.crf})
  local canvas = dd.zeros(3, o.height, o.width)
  local t0 = dd.clock()
  local last = t0
  for k = 0, nframes - 1 do
    video:render(canvas, k)
    writer:write(canvas)
    local now = dd.clock()
    if now - last >= 2 or k == nframes - 1 then
      last = now
      local rate = (k + 1) / (now - t0)
      io.stderr:write(("\rsynth_video: frame %d/%d (%.1f%%)  %.0f fps  ETA %.0f s   ")
        :format(k + 1, nframes, 100 * (k + 1) / nframes, rate, (nframes - k - 1) / rate))
    end
  end
  writer:close()
  io.stderr:write(("\nsynth_video: wrote %s in %.1f s\n"):format(o.out, dd.clock() - t0))
end

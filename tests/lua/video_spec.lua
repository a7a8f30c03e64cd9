-- video_spec.lua: dd.video against the ffmpeg command-line tool. Clips in
-- several containers and codecs are made with `ffmpeg -f lavfi -i testsrc2`
-- into a temporary directory; every frame dd.video samples at R fps must match
-- what `ffmpeg -i clip -vf fps=R -f rawvideo -pix_fmt rgb24 -` gives: the same
-- count, the same instants, pixels within 3/255 mean absolute difference.
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/video_spec.lua

local helpers = dofile("tests/lua/support/helpers.lua")
local quote = helpers.quote

-- Runs a shell command; returns its stdout and whether it exited 0.
local function run(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  return out, ok == true
end

local function ffmpeg(args)
  local out, ok = run("ffmpeg -nostdin -hide_banner -loglevel error -y " .. args .. " 2>&1")
  assert(ok, "ffmpeg " .. args .. " failed: " .. out)
end

local slurp = helpers.slurp
local spit = helpers.spit

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- The message of f(...), which must fail.
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains

-- ffmpeg's frames: raw RGB24 bytes, and the times from framecrc.
local function ffmpeg_raw(path, vf)
  local vfarg = vf and ("-vf " .. quote(vf) .. " ") or ""
  local out, ok = run("ffmpeg -nostdin -v error -i " .. quote(path) .. " " .. vfarg .. "-f rawvideo -pix_fmt rgb24 -")
  assert(ok, "ffmpeg could not decode " .. path)
  return out
end

local function ffmpeg_times(path, vf)
  local out, ok = run("ffmpeg -nostdin -v error -i " .. quote(path) .. " -vf " .. quote(vf) ..
                      " -f framecrc -pix_fmt rgb24 -")
  assert(ok, "ffmpeg could not decode " .. path)
  local num, den = out:match("#tb 0: (%d+)/(%d+)")
  local times = {}
  for pts in out:gmatch("\n0,%s*%-?%d+,%s*(%-?%d+),") do
    times[#times + 1] = tonumber(pts) * tonumber(num) / tonumber(den)
  end
  return times
end

-- Mean absolute difference, in 1/255 units, between a (3, H, W) tensor in
-- [0, 1] and the RGB24 frame at byte offset `off` of `bytes`.
local function mad(t, bytes, off, H, W)
  local tt = t:totable()
  local byte, abs = string.byte, math.abs
  local s = 0
  for c = 1, 3 do
    local plane = tt[c]
    for y = 1, H do
      local row = plane[y]
      local base = off + (y - 1) * W * 3 + c
      for x = 1, W do s = s + abs(row[x] * 255 - byte(bytes, base + (x - 1) * 3)) end
    end
  end
  return s / (H * W * 3)
end

-- ffprobe's view of the first video stream: a table of "key=value" from -of flat.
local function probe(path)
  local out = run("ffprobe -v error -select_streams v:0 -show_entries " ..
                  "stream=codec_name,width,height,avg_frame_rate,nb_frames,duration:" ..
                  "stream_side_data=rotation:format=duration -of flat " .. quote(path))
  local p = {}
  for k, v in out:gmatch("([%w_%.]+)=\"?([^\"\n]*)\"?") do p[k] = v end
  local num, den = (p["streams.stream.0.avg_frame_rate"] or "0/1"):match("(%d+)/(%d+)")
  return {
    codec = p["streams.stream.0.codec_name"],
    width = tonumber(p["streams.stream.0.width"]),
    height = tonumber(p["streams.stream.0.height"]),
    fps = tonumber(den) > 0 and tonumber(num) / tonumber(den) or 0,
    nb_frames = tonumber(p["streams.stream.0.nb_frames"]),
    duration = tonumber(p["streams.stream.0.duration"]) or tonumber(p["format.duration"]),
    rotation = tonumber(p["streams.stream.0.side_data_list.side_data.0.rotation"]) or 0,
  }
end

local dir

-- Every clip: name -> ffmpeg arguments after the input. testsrc2 has sharp
-- colour edges, the hard case for chroma handling.
local SRC = "-f lavfi -i testsrc2=size=320x240:rate=30 -t 4 "
local CLIPS = {
  {"h264.mp4", SRC .. "-c:v libx264 -pix_fmt yuv420p"},
  {"vp9.webm", SRC .. "-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 500k"},
  {"mpeg4.avi", SRC .. "-c:v mpeg4 -q:v 4"},
  {"ffv1.mkv", SRC .. "-c:v ffv1"},
  {"anim.gif", "-f lavfi -i testsrc2=size=320x240:rate=10 -t 4"},
  {"odd.mkv", "-f lavfi -i testsrc2=size=320x240:rate=25 -t 4 -vf scale=321:241 -c:v ffv1 -pix_fmt yuv420p"},
  -- 30 fps for 1 s, then 10 fps: variable frame rate, timestamps kept as is.
  {"vfr.mkv", "-t 3 -f lavfi -i testsrc2=size=320x240:rate=30 " ..
              "-vf \"setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'\" -fps_mode vfr -c:v libx264 -pix_fmt yuv420p"},
  -- MPEG-TS starts at 1.4 s: times count from the container's start.
  {"h264.ts", SRC .. "-c:v libx264 -pix_fmt yuv420p"},
  {"ntsc.mp4", "-f lavfi -i testsrc2=size=320x240:rate=30000/1001 -t 4 -c:v libx264 -pix_fmt yuv420p"},
}
-- Segment decoding (frames{workers = n}) needs H.264 with IDR frames often
-- enough: a key frame every half second, 10 s. "ps_same.mp4" and
-- "ps_new.mp4" are two such clips joined, the second with its parameter sets
-- inside the packets too (dump_extra): the same sets as the container's, or
-- new ones (main profile) that segment decoders skipping those packets would
-- miss: there they must hand over to one decoder.
local GOP = "-f lavfi -i testsrc2=size=320x240:rate=30 -t 10 -c:v libx264 -pix_fmt yuv420p -g 15 "
CLIPS[#CLIPS + 1] = {"gop.mp4", GOP}
-- Rotated copies of h264.mp4 (display matrix written by the mp4 muxer).
local ROTATED = {"rot90.mp4", "rot180.mp4", "rot270.mp4"}

setup(function()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. quote(dir)))
  for _, c in ipairs(CLIPS) do ffmpeg(c[2] .. " " .. quote(dir .. "/" .. c[1])) end
  for name, extra in pairs{ps_same = "", ps_new = "-profile:v main "} do
    ffmpeg(GOP .. extra .. "-bsf:v dump_extra=freq=keyframe " .. quote(dir .. "/" .. name .. "_2.mp4"))
    spit(dir .. "/" .. name .. ".txt", "file 'gop.mp4'\nfile '" .. name .. "_2.mp4'\n")
    ffmpeg("-f concat -safe 0 -i " .. quote(dir .. "/" .. name .. ".txt") .. " -c copy " ..
           quote(dir .. "/" .. name .. ".mp4"))
  end
  for _, name in ipairs(ROTATED) do
    local deg = name:match("rot(%d+)")
    ffmpeg("-i " .. quote(dir .. "/h264.mp4") .. " -c copy -metadata:s:v:0 rotate=" .. deg .. " " ..
           quote(dir .. "/" .. name))
  end
end)

teardown(function()
  if dir and dir:match("^/tmp/") then os.execute("rm -rf " .. quote(dir)) end
end)

-- Samples the clip with dd.video at fps and with ffmpeg; checks count, times, pixels.
local function check_against_ffmpeg(name, fps, opts)
  local path = dir .. "/" .. name
  local v = dd.video.open(path)
  local H, W = v.height, v.width
  local ref = ffmpeg_raw(path, "fps=" .. fps)
  local times = ffmpeg_times(path, "fps=" .. fps)
  local fs = W * H * 3
  assert.are.equal(0, #ref % fs)
  local n, worst = 0, 0
  for frame, t in v:frames{fps = fps, workers = opts and opts.workers} do
    n = n + 1
    assert.are.same({3, H, W}, frame:shape())
    if n <= #ref // fs then
      worst = math.max(worst, mad(frame, ref, (n - 1) * fs, H, W))
      assert.is_true(math.abs(t - times[n]) < 1e-6,
                     string.format("%s frame %d at %.6f s, ffmpeg at %.6f s", name, n, t, times[n]))
    end
  end
  assert.are.equal(#ref // fs, n, name .. ": frame count at fps=" .. fps)
  assert.are.equal(#times, n)
  assert.is_true(worst <= 3, string.format("%s: mean absolute difference %.3f/255 > 3/255", name, worst))
  if opts and opts.skipped then
    assert.is_true(v.frames_skipped > 0, name .. ": expected undecoded non-reference frames")
  end
  if opts and opts.decoders then assert.are.equal(opts.decoders, v.decoders, name .. ": decoders") end
  v:close()
end

describe("dd.video.open + frames{fps = 3} match ffmpeg -vf fps=3", function()
  for _, c in ipairs(CLIPS) do
    it(c[1], function() check_against_ffmpeg(c[1], 3, {skipped = c[1]:match("^h264") ~= nil}) end)
  end
  for _, name in ipairs(ROTATED) do
    it(name .. " (rotation applied as ffmpeg's autorotate does)", function() check_against_ffmpeg(name, 3) end)
  end
end)

describe("other rates", function()
  it("fps = 1 and 7.5 on H.264 with B-frames", function()
    check_against_ffmpeg("h264.mp4", 1)
    check_against_ffmpeg("h264.mp4", 7.5)
  end)
  it("fps = 7.5 on the variable-frame-rate clip", function() check_against_ffmpeg("vfr.mkv", 7.5) end)
  it("fps = 2 on the GIF and fps = 29.97 on the NTSC clip", function()
    check_against_ffmpeg("anim.gif", 2)
    check_against_ffmpeg("ntsc.mp4", 29.97)
  end)
end)

-- Every sampled frame and time of path at fps with the given workers.
local function sample_all(path, fps, workers)
  local v = dd.video.open(path)
  local frames, times = {}, {}
  for f, t in v:frames{fps = fps, workers = workers} do
    frames[#frames + 1], times[#times + 1] = f, t
  end
  return frames, times, v
end

local function assert_same_frames(a, ta, b, tb, what)
  assert.are.equal(#a, #b, what .. ": frame count")
  for i = 1, #a do
    assert.are.equal(ta[i], tb[i], what .. ": time of frame " .. i)
    assert.are.equal(0, (a[i] - b[i]):abs():max(), what .. ": pixels of frame " .. i)
  end
end

describe("frames{workers = n}: segment decoders", function()
  it("run on an H.264 clip with frequent IDR frames and match ffmpeg at 1, 3 and 7.5 fps", function()
    for _, fps in ipairs{1, 3, 7.5} do check_against_ffmpeg("gop.mp4", fps, {workers = 2, decoders = 2}) end
    check_against_ffmpeg("gop.mp4", 3, {workers = 3, decoders = 3})
  end)
  it("give the frames of one decoder bit for bit, and decode and skip the same frames", function()
    local path = dir .. "/gop.mp4"
    for _, fps in ipairs{3, 7.5} do
      local a, ta, va = sample_all(path, fps, 0)
      local b, tb, vb = sample_all(path, fps, 2)
      assert.are.equal(1, va.decoders)
      assert.are.equal(2, vb.decoders)
      assert_same_frames(a, ta, b, tb, "gop.mp4 at " .. fps .. " fps")
      assert.are.equal(va.frames_decoded, vb.frames_decoded)
      assert.are.equal(va.frames_skipped, vb.frames_skipped)
      assert.are.equal(300, vb.frames_decoded + vb.frames_skipped)
    end
  end)
  it("are not used where they cannot help: one decoder for sampling above half the rate, other codecs, few key frames",
     function()
    for _, c in ipairs{{"gop.mp4", 20}, {"vp9.webm", 3}, {"h264.mp4", 3}} do
      local _, _, v = sample_all(dir .. "/" .. c[1], c[2], 2)
      assert.are.equal(1, v.decoders, c[1] .. " at " .. c[2] .. " fps")
    end
  end)
  it("keep going through packets that repeat the container's parameter sets", function()
    check_against_ffmpeg("ps_same.mp4", 3, {workers = 2, decoders = 2})
  end)
  it("hand over to one decoder mid-way at new parameter sets, with nothing lost or repeated", function()
    local path = dir .. "/ps_new.mp4"
    local v = dd.video.open(path)
    local it = v:frames{fps = 3, workers = 2}
    local first, t1 = it()
    assert.are.equal(2, v.decoders)
    local b, tb = {first}, {t1}
    for f, t in it do b[#b + 1], tb[#tb + 1] = f, t end
    assert.are.equal(1, v.decoders)
    local a, ta = sample_all(path, 3, 0)
    assert.are.equal(60, #a)
    assert_same_frames(a, ta, b, tb, "ps_new.mp4")
    check_against_ffmpeg("ps_new.mp4", 3, {workers = 2, decoders = 1})
  end)
  it("give one decoder's frames on damaged clips, handing over where frames were concealed", function()
    -- One frame thread: with several, FFmpeg's concealment of a damaged
    -- frame depends on timing, so the reference itself would vary.
    dd.video.set_decoder_threads(1)
    local bytes = slurp(dir .. "/gop.mp4")
    local handed_over = 0
    for k, at in ipairs{0.2, 0.35, 0.5, 0.65, 0.8, 0.9} do
      local pos = math.floor(#bytes * at)
      local junk = {}
      for i = 1, 200 do junk[i] = string.char((i * 37 + k * 101) % 256) end
      local path = dir .. "/damaged" .. k .. ".mp4"
      spit(path, bytes:sub(1, pos) .. table.concat(junk) .. bytes:sub(pos + 201))
      local a, ta = sample_all(path, 3, 0)
      local b, tb, v = sample_all(path, 3, 2)
      assert_same_frames(a, ta, b, tb, "damaged at " .. at)
      if v.decoders == 1 then handed_over = handed_over + 1 end
    end
    dd.video.set_decoder_threads(0)
    assert.is_true(handed_over >= 3, "only " .. handed_over .. " of 6 damaged clips handed over")
  end)
  it("read() after frames{} goes on with the frame after the last one handed out", function()
    local path = dir .. "/gop.mp4"
    local all = {}
    local r = dd.video.open(path)
    for f in r.read, r do all[#all + 1] = f end
    for _, workers in ipairs{0, 2} do
      local v = dd.video.open(path)
      local it = v:frames{fps = 3, workers = workers}
      for _ = 1, 5 do it() end
      -- output k (from 0) at 3 fps shows source frame 10k + 4 of 30 fps
      local f, t = v:read()
      assert.is_true(math.abs(t - 45 / 30) < 1e-6, "workers " .. workers .. ": read() after 5 frames gave t = " .. t)
      assert.are.equal(0, (f - all[46]):abs():max())
      local _, t2 = v:read()
      assert.is_true(math.abs(t2 - 46 / 30) < 1e-6)
    end
  end)
  it("stop cleanly when superseded or closed mid-way", function()
    local path = dir .. "/gop.mp4"
    local a, ta = sample_all(path, 3, 0)
    local v = dd.video.open(path)
    local it = v:frames{fps = 3, workers = 2}
    it(); it()
    local b, tb = {}, {}
    for f, t in v:frames{fps = 3, workers = 2} do b[#b + 1], tb[#tb + 1] = f, t end
    assert_same_frames(a, ta, b, tb, "a second frames{}")
    assert_contains(error_of(it), "superseded")
    local it3 = v:frames{fps = 3, workers = 2}
    it3()
    v:seek(1)
    local _, t = v:read()
    assert.is_true(math.abs(t - 1) < 1e-6)
    local it4 = v:frames{fps = 3, workers = 2}
    it4()
    v:close()
    assert_contains(error_of(it4), "closed")
  end)
  it("checks workers", function()
    local v = dd.video.open(dir .. "/gop.mp4")
    assert_contains(error_of(v.frames, v, {fps = 3, workers = 9}), "workers")
    assert_contains(error_of(v.frames, v, {fps = 3, workers = -1}), "workers")
    assert_contains(error_of(v.frames, v, {fps = 3, workers = "two"}), "workers")
    assert_contains(error_of(dd.video.set_decoder_threads, -1), "set_decoder_threads: n")
  end)
end)

describe("metadata", function()
  for _, name in ipairs{"h264.mp4", "vp9.webm", "mpeg4.avi", "ffv1.mkv", "anim.gif", "odd.mkv", "h264.ts",
                        "ntsc.mp4", "rot90.mp4", "rot180.mp4"} do
    it(name .. " agrees with ffprobe", function()
      local path = dir .. "/" .. name
      local v = dd.video.open(path)
      local p = probe(path)
      assert.are.equal(p.codec, v.codec)
      local rot = (360 - p.rotation) % 360
      assert.are.equal(rot, v.rotation)
      if rot == 90 or rot == 270 then
        assert.are.equal(p.height, v.width)
        assert.are.equal(p.width, v.height)
      else
        assert.are.equal(p.width, v.width)
        assert.are.equal(p.height, v.height)
      end
      assert.is_true(math.abs(p.fps - v.fps) < 1e-9, string.format("fps %s vs ffprobe %s", v.fps, p.fps))
      assert.is_true(math.abs(p.duration - v.duration) < 1e-3)
      if p.nb_frames then
        assert.are.equal(p.nb_frames, v.frame_count)
      else
        assert.are.equal(math.floor(p.duration * p.fps + 0.5), v.frame_count)
      end
    end)
  end
end)

describe("frames{size = {h, w}}", function()
  it("scales straight to the requested size like ffmpeg's scale=W:H:flags=area", function()
    local path = dir .. "/h264.mp4"
    local v = dd.video.open(path)
    local ref = ffmpeg_raw(path, "fps=3,scale=160:120:flags=area")
    local n, worst = 0, 0
    for frame in v:frames{fps = 3, size = {120, 160}} do
      assert.are.same({3, 120, 160}, frame:shape())
      worst = math.max(worst, mad(frame, ref, n * 160 * 120 * 3, 120, 160))
      n = n + 1
    end
    assert.are.equal(#ref // (160 * 120 * 3), n)
    assert.is_true(worst <= 3, "MAD " .. worst)
  end)
  it("is in the displayed orientation for a rotated clip", function()
    local v = dd.video.open(dir .. "/rot90.mp4")
    local frame = v:frames{fps = 3, size = {160, 120}}()
    assert.are.same({3, 160, 120}, frame:shape())
  end)
end)

describe("read and seek", function()
  it("read returns every frame in order, then nil", function()
    local path = dir .. "/h264.mp4"
    local v = dd.video.open(path)
    local ref = ffmpeg_raw(path)
    local fs = 320 * 240 * 3
    local n = 0
    while true do
      local frame, t = v:read()
      if not frame then break end
      assert.is_true(math.abs(t - n / 30) < 1e-6)
      if n % 40 == 0 then assert.is_true(mad(frame, ref, n * fs, 240, 320) <= 3) end
      n = n + 1
    end
    assert.are.equal(#ref // fs, n)
    assert.is_nil(v:read())
  end)
  for _, name in ipairs{"h264.mp4", "vp9.webm", "h264.ts", "anim.gif"} do
    it("seek(s) then read returns the frame on screen at s: " .. name, function()
      local path = dir .. "/" .. name
      local v = dd.video.open(path)
      local ref = ffmpeg_raw(path)
      local rate = v.fps
      local fs = 320 * 240 * 3
      for _, s in ipairs{2.0, 1.01, 3.99, 0, 0.5} do
        v:seek(s)
        local frame, t = v:read()
        local k = math.floor(s * rate + 1e-6)
        assert.is_true(math.abs(t - k / rate) < 2e-3, string.format("seek(%s) gave t = %s", s, t))
        assert.is_true(mad(frame, ref, k * fs, 240, 320) <= 3, "pixels after seek(" .. s .. ")")
        local _, t2 = v:read()
        if (k + 1) / rate < 4 - 1e-3 then
          assert.is_true(math.abs(t2 - (k + 1) / rate) < 2e-3, "the frame after seek(" .. s .. ")")
        else
          assert.is_nil(t2)
        end
      end
      v:seek(10)
      assert.is_nil(v:read())
    end)
  end
  it("a new frames{} starts from the beginning and supersedes older iterators", function()
    local v = dd.video.open(dir .. "/ffv1.mkv")
    local it1 = v:frames{fps = 3}
    local _, t1 = it1()
    local _, t2 = it1()
    assert.are.equal(0, t1)
    assert.is_true(math.abs(t2 - 1 / 3) < 1e-9)
    local it2 = v:frames{fps = 3}
    local _, t3 = it2()
    assert.are.equal(0, t3)
    assert_contains(error_of(it1), "superseded")
    v:read()
    assert_contains(error_of(it2), "superseded")
  end)
end)

describe("closing", function()
  it("methods after close raise 'video is closed'; fields stay readable", function()
    local v = dd.video.open(dir .. "/ffv1.mkv")
    v:close()
    assert_contains(error_of(v.read, v), "video is closed")
    assert_contains(error_of(v.frames, v, {fps = 3}), "video is closed")
    assert_contains(error_of(v.seek, v, 1), "video is closed")
    assert.are.equal(320, v.width)
    v:close()   -- twice is fine
  end)
  it("works as a to-be-closed variable", function()
    local v
    do
      local w <close> = dd.video.open(dir .. "/ffv1.mkv")
      v = w
      assert.is_not_nil(v:read())
    end
    assert_contains(error_of(v.read, v), "video is closed")
  end)
  it("checks its arguments strictly", function()
    local v = dd.video.open(dir .. "/ffv1.mkv")
    assert_contains(error_of(v.frames, v, {fsp = 3}), "unknown option 'fsp' (known: fps, size, workers)")
    assert_contains(error_of(v.frames, v, {fps = -1}), "fps must be a positive number")
    assert_contains(error_of(v.frames, v, {size = {10}}), "size must be a table {height, width}")
    assert_contains(error_of(v.frames, v, {size = {10, 0}}), "size[2] (width) must be in [1, 16384]")
    assert_contains(error_of(v.seek, v, "soon"), "expected a time in seconds")
    assert_contains(error_of(dd.video.open, 42), "expected a path string")
    assert_contains(error_of(v.read, 42), "Video expected")
  end)
end)

describe("bad input", function()
  it("a missing file", function()
    local path = dir .. "/missing.mp4"
    local e = error_of(dd.video.open, path)
    assert_contains(e, path)
    assert_contains(e, "No such file or directory")
  end)
  it("a text file named .mp4", function()
    local path = dir .. "/text.mp4"
    spit(path, "this is not a video\n")
    local e = error_of(dd.video.open, path)
    assert_contains(e, path)
    assert_contains(e, "Invalid data found when processing input")
  end)
  it("random bytes", function()
    local path = dir .. "/random.mkv"
    local seed = 12345
    local bytes = {}
    for i = 1, 50000 do
      seed = (seed * 1103515245 + 12345) % 2147483648
      bytes[i] = string.char(seed >> 16 & 255)
    end
    spit(path, table.concat(bytes))
    local e = error_of(dd.video.open, path)
    assert_contains(e, path)
  end)
  it("an audio-only file", function()
    local path = dir .. "/sine.m4a"
    ffmpeg("-f lavfi -i sine -t 1 " .. quote(path))
    local e = error_of(dd.video.open, path)
    assert_contains(e, path)
    assert_contains(e, "no video stream: Stream not found")
  end)
  it("a truncated MP4 with the index at the end: an error", function()
    local full = slurp(dir .. "/h264.mp4")
    local path = dir .. "/trunc_end.mp4"
    spit(path, full:sub(1, #full * 3 // 10))
    local e = error_of(dd.video.open, path)
    assert_contains(e, path)
    assert_contains(e, "moov atom not found")
  end)
  it("a truncated MP4 with the index first: the frames that are there, as ffmpeg", function()
    local fast = dir .. "/fast.mp4"
    ffmpeg("-i " .. quote(dir .. "/h264.mp4") .. " -c copy -movflags +faststart " .. quote(fast))
    local full = slurp(fast)
    local path = dir .. "/trunc_fast.mp4"
    spit(path, full:sub(1, #full * 3 // 10))
    local v = dd.video.open(path)
    local n = 0
    for _ in v:frames{fps = 3} do n = n + 1 end
    local ref = run("ffmpeg -nostdin -v quiet -i " .. quote(path) .. " -vf fps=3 -f rawvideo -pix_fmt rgb24 -")
    assert.are.equal(#ref // (320 * 240 * 3), n)
    assert.is_true(n > 0 and n < 12)
  end)
  it("a file that disappears while open: errors naming it until it is back", function()
    local path = dir .. "/gone.mkv"
    os.execute("cp " .. quote(dir .. "/ffv1.mkv") .. " " .. quote(path))
    local v = dd.video.open(path)
    assert.is_not_nil(v:read())
    os.rename(path, path .. ".away")
    local e = error_of(v.frames, v, {fps = 3})   -- frames{} restarts by reopening
    assert_contains(e, path)
    assert_contains(e, "No such file or directory")
    assert_contains(error_of(v.read, v), "could not be reopened")
    os.rename(path .. ".away", path)
    v:seek(0)
    local _, t = v:read()
    assert.are.equal(0, t)
  end)
  it("a stream of garbage behind a valid header: an error, not a crash", function()
    local full = slurp(dir .. "/fast.mp4")
    local at = full:find("mdat", 1, true)
    local seed = 7
    local junk = {}
    for i = 1, #full - at - 67 do
      seed = (seed * 1103515245 + 12345) % 2147483648
      junk[i] = string.char(seed >> 16 & 255)
    end
    local path = dir .. "/garbage.mp4"
    spit(path, full:sub(1, at + 67) .. table.concat(junk))
    local v = dd.video.open(path)
    local e = error_of(function() for _ in v:frames{fps = 3} do end end)
    assert_contains(e, path)
    assert_contains(e, "no frame could be decoded")
  end)
end)

-- A smooth moving pattern: what lossy codecs and palettes handle well.
local function pattern(k, H, W, channels)
  local t = {}
  for c = 1, channels or 3 do
    local plane = {}
    for y = 1, H do
      local row = {}
      for x = 1, W do
        row[x] = 0.5 + 0.35 * math.sin(x / 40 + k / 6 + c) * math.cos(y / 30 - k / 9 + 2 * c)
      end
      plane[y] = row
    end
    t[c] = plane
  end
  return dd.tensor(t)
end

local function temp_files_in(d)
  local out = run("ls -A " .. quote(d))
  local n = 0
  for name in out:gmatch("[^\n]+") do
    if name:match("%.tmp%.") then n = n + 1 end
  end
  return n
end

describe("dd.video.writer", function()
  local frames = {}
  setup(function()
    for k = 1, 15 do frames[k] = pattern(k, 96, 128) end
  end)

  it("writes H.264 MP4 that reads back with the same size, rate, count and pixels", function()
    local path = dir .. "/out.mp4"
    local w = dd.video.writer(path, {fps = 12, crf = 18})
    for k = 1, #frames do w:write(frames[k]) end
    w:close()
    local v = dd.video.open(path)
    assert.are.equal("h264", v.codec)
    assert.are.equal(128, v.width)
    assert.are.equal(96, v.height)
    assert.are.equal(12, v.fps)
    assert.are.equal(#frames, v.frame_count)
    local p = probe(path)
    assert.are.equal(#frames, p.nb_frames)
    local n = 0
    for frame, t in v:frames() do
      n = n + 1
      assert.is_true(math.abs(t - (n - 1) / 12) < 1e-6)
      local d = (frame - frames[n]):abs():mean() * 255
      assert.is_true(d <= 3, string.format("frame %d: MAD %.3f/255", n, d))
    end
    assert.are.equal(#frames, n)
    assert.are.equal(0, temp_files_in(dir))
  end)

  it("pads odd sizes to even by repeating the last row and column", function()
    local path = dir .. "/odd_out.mp4"
    local w = dd.video.writer(path, {fps = 5})
    local f = pattern(1, 51, 75)
    w:write(f)
    w:write(f)
    w:close()
    local v = dd.video.open(path)
    assert.are.equal(76, v.width)
    assert.are.equal(52, v.height)
    local back = v:read()
    assert.is_true((back:narrow(2, 1, 51):narrow(3, 1, 75) - f):abs():mean() * 255 <= 3)
  end)

  it("writes an animated GIF with one palette, within palette error", function()
    local path = dir .. "/out.gif"
    local w = dd.video.writer(path, {fps = 10})
    for k = 1, #frames do w:write(frames[k]) end
    w:close()
    local v = dd.video.open(path)
    assert.are.equal("gif", v.codec)
    assert.are.equal(128, v.width)
    assert.are.equal(96, v.height)
    assert.are.equal(10, v.fps)
    local n = 0
    for frame in v:frames() do
      n = n + 1
      local d = (frame - frames[n]):abs():mean() * 255
      assert.is_true(d <= 6, string.format("frame %d: MAD %.3f/255", n, d))
    end
    assert.are.equal(#frames, n)
  end)

  it("accepts grey (1, H, W) frames and strided views", function()
    local path = dir .. "/grey.mp4"
    local w = dd.video.writer(path, {fps = 5})
    local grey = pattern(3, 64, 80, 1)
    w:write(grey)
    local wide = pattern(4, 80, 64)
    w:write(wide:transpose(2, 3))   -- a (3, 64, 80) view with swapped strides
    w:close()
    local v = dd.video.open(path)
    local a = v:read()
    for c = 1, 3 do
      assert.is_true((a:narrow(1, c, 1) - grey):abs():mean() * 255 <= 3)
    end
    local b = v:read()
    assert.is_true((b - wide:transpose(2, 3)):abs():mean() * 255 <= 3)
  end)

  it("leaves an existing file untouched when a write fails", function()
    local path = dir .. "/keep.mp4"
    spit(path, "precious")
    local w = dd.video.writer(path, {fps = 10})
    w:write(frames[1])
    local e = error_of(w.write, w, pattern(1, 50, 60))
    assert_contains(e, path)
    assert_contains(e, "frame of size 50x60 (HxW) differs from the first frame's 96x128")
    assert_contains(error_of(w.close, w), "an earlier write failed")
    assert.are.equal("precious", slurp(path))
    assert.are.equal(0, temp_files_in(dir))
  end)

  it("leaves nothing behind when a writer is dropped unclosed or closed by an error", function()
    local path = dir .. "/never.mp4"
    do
      local w = dd.video.writer(path, {fps = 10})
      w:write(frames[1])
    end
    collectgarbage()
    collectgarbage()
    assert.is_false(exists(path))
    local ok = pcall(function()
      local w <close> = dd.video.writer(path, {fps = 10})
      w:write(frames[1])
      error("boom")
    end)
    assert.is_false(ok)
    assert.is_false(exists(path))
    assert.are.equal(0, temp_files_in(dir))
    do
      local w <close> = dd.video.writer(path, {fps = 10})
      w:write(frames[1])
    end
    assert.is_true(exists(path))
  end)

  it("names the path when it cannot be written", function()
    local path = dir .. "/no/such/dir/out.mp4"
    local e = error_of(dd.video.writer, path, {fps = 10})
    assert_contains(e, path)
    assert_contains(e, "No such file or directory")
    e = error_of(dd.video.writer, dir, {fps = 10})
    assert_contains(e, "unknown video file extension")
    os.execute("mkdir -p " .. quote(dir .. "/adir.mp4"))
    assert_contains(error_of(dd.video.writer, dir .. "/adir.mp4", {fps = 10}), "is a directory")
  end)

  it("checks its arguments strictly", function()
    local path = dir .. "/args.mp4"
    assert_contains(error_of(dd.video.writer, path, {fsp = 10}), "unknown option 'fsp' (known: fps, crf, preset)")
    assert_contains(error_of(dd.video.writer, path, {fps = 0}), "fps must be a number in (0, 1000]")
    assert_contains(error_of(dd.video.writer, path, {crf = 60}), "crf must be in [0, 51]")
    assert_contains(error_of(dd.video.writer, dir .. "/x.gif", {crf = 20}), "not to GIF")
    assert_contains(error_of(dd.video.writer, dir .. "/x.avi"), "unknown video file extension")
    local w = dd.video.writer(path, {fps = 10})
    assert_contains(error_of(w.write, w, dd.zeros(2, 8, 8)), "expected (3, H, W) or (1, H, W)")
    assert_contains(error_of(w.close, w), "an earlier write failed")
    w = dd.video.writer(path, {fps = 10})
    assert_contains(error_of(w.close, w), "no frames were written")
    assert_contains(error_of(w.close, w), "video writer is closed")
    assert.is_false(exists(path))
  end)
end)

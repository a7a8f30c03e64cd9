-- dancer_spec.lua: the synthetic dancer (lua/deepdance/dancer.lua) and its
-- generator script: one seed gives one video; the backdrop always passes the
-- paper's background rule and the dancer never does; the dancer stays in
-- frame with feet on the floor and bones of constant length; it moves, and
-- different seeds dance differently.
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/dancer_spec.lua
local seed = tonumber(os.getenv("DD_TEST_SEED") or "1234")
print("# dancer_spec seed: " .. seed)

local dancer = require "deepdance.dancer"

local helpers = dofile("tests/lua/support/helpers.lua")
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains

-- The paper's rule on 8-bit values: 1 where r + g + b > 230 (background).
local function background_mask(frame)
  return dd.sum(frame:mul(255):round(), 1):gt(230)
end

-- Frame indices spread over the first `minutes` of video, fixed by the seed.
local function sample_frames(n, minutes, fps, s)
  local rng = dancer.rng(s)
  local ks = {}
  for i = 1, n do ks[i] = rng:below(math.floor(minutes * 60 * fps)) end
  return ks
end

describe("determinism", function()
  it("renders frame k identically from fresh state, in any visiting order", function()
    local a = dancer.video{seed = seed, width = 160, height = 96}
    local b = dancer.video{seed = seed, width = 160, height = 96}
    local late = b:frame(5000)         -- b generates its choreography up to frame 5000 first
    for _, k in ipairs{0, 1, 137, 999} do
      assert.equal(0, a:frame(k):sub(b:frame(k)):abs():max(), "frame " .. k)
    end
    assert.equal(0, a:frame(5000):sub(late):abs():max())
  end)

  it("does not depend on dd's global generator", function()
    local a = dancer.video{seed = seed, width = 96, height = 64}
    dd.manual_seed(seed + 1)
    dd.rand(100)
    local b = dancer.video{seed = seed, width = 96, height = 64}
    assert.equal(0, a:frame(321):sub(b:frame(321)):abs():max())
  end)

  it("dances differently for different seeds", function()
    local sequences = {}
    for s = 1, 4 do
      local v = dancer.video{seed = seed + s, width = 96, height = 64}
      v:pose(60)  -- a minute of choreography
      local names = {}
      for i = 1, 10 do names[i] = v.choreo.segments[i].name end
      sequences[s] = table.concat(names, " ")
    end
    for i = 1, 4 do
      for j = i + 1, 4 do assert.are_not.equal(sequences[i], sequences[j]) end
    end
    local a = dancer.video{seed = seed, width = 96, height = 64}:frame(200)
    local b = dancer.video{seed = seed + 1, width = 96, height = 64}:frame(200)
    assert.is_true(a:sub(b):abs():max() > 0.1)
  end)

  it("uses every move of the library over a long sequence, none twice in a row", function()
    local v = dancer.video{seed = seed, width = 96, height = 64}
    v:pose(20 * 60)
    local seen, count = {}, 0
    local segs = v.choreo.segments
    for i, s in ipairs(segs) do
      if not seen[s.name] then seen[s.name], count = true, count + 1 end
      if i > 1 then assert.are_not.equal(segs[i - 1].name, s.name) end
    end
    assert.equal(#dancer.move_names, count)
  end)
end)

describe("the paper's threshold rule", function()
  it("calls every backdrop pixel background, with margin (r + g + b >= 300)", function()
    local v = dancer.video{seed = seed, width = 320, height = 180}
    for _, k in ipairs(sample_frames(12, 10, 30, seed)) do
      local bg = v:frame(k, {dancer = false})
      local low = dd.sum(bg, 1):min() * 255
      assert(low >= 300, ("frame %d: darkest backdrop pixel has r+g+b = %.1f"):format(k, low))
    end
  end)

  it("leaves a black dancer on white: nothing dark outside the dancer, the dancer solid", function()
    local W, H = 320, 180
    local v = dancer.video{seed = seed, width = W, height = H}
    for _, k in ipairs(sample_frames(8, 10, 30, seed + 7)) do
      local dark = background_mask(v:frame(k)):neg():add(1)  -- 1 = dancer
      local shapes = v:shapes(k / v.fps)
      local b = dancer.bounds(shapes)
      local x0, y0 = math.max(0, math.floor(b[1]) - 1), math.max(0, math.floor(b[2]) - 1)
      local x1, y1 = math.min(W, math.ceil(b[3]) + 1), math.min(H, math.ceil(b[4]) + 1)
      local inside = dark:narrow(1, y0 + 1, y1 - y0):narrow(2, x0 + 1, x1 - x0):sum()
      assert.equal(dark:sum(), inside, "dark pixels outside the dancer's box in frame " .. k)
      -- the silhouette alone, on white: pixels at least half covered
      local alone = dd.ones(3, H, W)
      dd.draw.shapes(alone, shapes, {0, 0, 0})
      local area = alone:select(1, 1):lt(0.5):sum()
      local black = dark:sum()
      assert(area > 0.01 * W * H, "dancer area " .. area)
      assert(black >= 0.9 * area and black <= area * 1.02,
        ("frame %d: %d pixels thresholded black, silhouette covers %d"):format(k, black, area))
    end
  end)
end)

describe("the dancer's body", function()
  local B = dancer.body
  local function dist(a, b)
    return math.sqrt((a[1] - b[1]) ^ 2 + (a[2] - b[2]) ^ 2 + ((a[3] or 0) - (b[3] or 0)) ^ 2)
  end

  it("stays inside the frame over hundreds of sampled frames", function()
    local W, H = 640, 360
    local v = dancer.video{seed = seed, width = W, height = H}
    for _, k in ipairs(sample_frames(400, 15, 30, seed + 1)) do
      local b = dancer.bounds(v:shapes(k / 30))
      assert(b[1] >= 1 and b[2] >= 1 and b[3] <= W - 1 and b[4] <= H - 1,
        ("frame %d: dancer box (%.1f, %.1f)-(%.1f, %.1f) leaves the %dx%d frame"):format(k, b[1], b[2], b[3], b[4], W, H))
    end
  end)

  it("stands about 70% of the frame tall", function()
    local view = {scale = 252, cx = 320, ground = 342}
    local b = dancer.bounds(dancer.shapes(dancer.solve(dancer.neutral()), view))
    local height = b[4] - b[2]
    assert(height > 0.95 * 252 and height < 1.05 * 252, "standing height " .. height)
  end)

  it("keeps bones at their lengths and feet on the floor except in the air", function()
    local v = dancer.video{seed = seed, width = 640, height = 360}
    local grounded = 0
    for _, k in ipairs(sample_frames(300, 15, 30, seed + 2)) do
      local pose, name = v:pose(k / 30)
      local J = dancer.solve(pose)
      for _, side in ipairs{"l", "r"} do
        local function bone(a, b, len)
          local d = dist(J[side .. a], J[side .. b])
          assert(math.abs(d - len) < 1e-6, ("frame %d (%s): %s%s-%s%s is %.4f long, not %.4f"):format(k, name, side, a, side, b, d, len))
        end
        bone("hip", "knee", B.thigh)
        bone("knee", "ankle", B.shin)
        bone("shoulder", "elbow", B.upper_arm)
        bone("elbow", "wrist", B.forearm)
        bone("wrist", "hand", B.hand)
      end
      if pose.jump < 1e-9 and math.min(pose.lfy, pose.rfy) < 1e-9 then
        -- the lower ankle at its height above the floor: the foot stands on it
        local low = math.min(J.lankle[2], J.rankle[2])
        assert(math.abs(low - B.ankle_h) < 1e-6, ("frame %d (%s): lower ankle at %.4f"):format(k, name, low))
        grounded = grounded + 1
      end
    end
    assert(grounded > 100, "grounded frames: " .. grounded)
  end)

  it("moves: the silhouette changes between frames a beat apart, and every move moves", function()
    local W, H = 160, 90
    local v = dancer.video{seed = seed, width = W, height = H}
    local beat = 60 / v.choreo.bpm
    local changed, total = 0, 0
    for _, k in ipairs(sample_frames(20, 5, 30, seed + 3)) do
      local t = k / 30
      local a = background_mask(v:frame(k))
      local b = background_mask(v:frame(math.floor((t + beat) * 30 + 0.5)))
      changed = changed + a:sub(b):abs():sum()
      total = total + (H * W - a:sum())
    end
    -- pixels that change, per pixel of dancer
    assert(changed / total > 0.25, ("mean change a beat apart: %.3f of the dancer's area"):format(changed / total))
    -- each move on its own: joints travel over four beats
    for _, name in ipairs(dancer.move_names) do
      local path = 0
      local prev
      for i = 0, 32 do
        local J = dancer.solve(dancer.moves[name].fn(i / 8, {amp = 1, variant = 1, dist = 0.4}))
        if prev then
          for _, j in ipairs{"lhand", "rhand", "lankle", "rankle", "head"} do path = path + dist(J[j], prev[j]) end
        end
        prev = J
      end
      assert(path > 0.5, ("move %s: joints travel only %.3f body heights in 4 beats"):format(name, path))
    end
  end)

  it("turns: yaw narrows the silhouette", function()
    local view = {scale = 200, cx = 320, ground = 300}
    local pose = dancer.neutral()
    pose.ls, pose.rs = math.pi / 2, math.pi / 2   -- arms out
    local front = dancer.bounds(dancer.shapes(dancer.solve(pose), view))
    pose.yaw = math.pi / 2
    local side = dancer.bounds(dancer.shapes(dancer.solve(pose), view))
    assert.is_true((side[3] - side[1]) < 0.5 * (front[3] - front[1]))
  end)
end)

describe("options", function()
  it("dancer.video refuses unknown options and bad values", function()
    assert_contains(error_of(dancer.video, {seed = 1, colour = 2}), "dancer.video: unknown option 'colour'")
    assert_contains(error_of(dancer.video, {seed = 1.5}), "dancer.video: seed must be an integer, got 1.5")
    assert_contains(error_of(dancer.video, {seed = 1, width = 8}), "width and height must be integers >= 16")
  end)

  local function run(args)
    local p = io.popen("./deepdance experiments/synth_video.lua " .. args .. " 2>&1")
    local out = p:read("a")
    local ok = p:close()
    return ok, out
  end

  it("the generator script names an unknown option and the known ones", function()
    local ok, out = run("--minute 1")
    assert.is_falsy(ok)
    assert_contains(out, "unknown option '--minute' (known: --crf, --fps, --height, --help, --minutes")
    ok, out = run("--seed x")
    assert.is_falsy(ok)
    assert_contains(out, "option --seed needs an integer, got 'x'")
  end)

  it("the generator script writes an H.264 video and a contact sheet", function()
    local dir = os.tmpname()
    os.remove(dir)
    local ok, out = run(("--minutes 0.02 --seed 3 --width 128 --height 72 --fps 25 --out %s/v.mp4 --preview %s/sheet.png")
      :format(dir, dir))
    assert(ok, out)
    local v = dd.video.open(dir .. "/v.mp4")
    assert.equal(128, v.width)
    assert.equal(72, v.height)
    assert.equal("h264", v.codec)
    -- after H.264, the paper's rule still finds the dancer where it was drawn
    local ref = dancer.video{seed = 3, width = 128, height = 72, fps = 25}
    local n = 0
    for frame in v:frames() do
      local dark = background_mask(frame):neg():add(1):sum()
      local want = background_mask(ref:frame(n)):neg():add(1):sum()
      assert(math.abs(dark - want) <= 0.05 * want + 3, ("decoded frame %d: %d dark pixels, rendered %d"):format(n, dark, want))
      n = n + 1
    end
    v:close()
    assert.equal(30, n)  -- 0.02 min at 25 fps
    local sheet = dd.image.load(dir .. "/sheet.png")
    assert.equal(3, sheet:size(1))
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)

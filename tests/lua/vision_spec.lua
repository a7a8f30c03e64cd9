-- vision_spec.lua: dd.vision.silhouette, background_model, morph, components,
-- resize and to_grey against hand-worked values and double-precision reference
-- loops written here (area resampling integrates the input rectangle in 2-D;
-- bilinear enlarging is PyTorch's align_corners=false formula; antialiased
-- bilinear shrinking is compared with PIL when /usr/bin/python3 has it).
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/vision_spec.lua
local seed = tonumber(os.getenv("DD_TEST_SEED") or "1234")
print("# vision_spec seed: " .. seed)

local helpers = dofile("tests/lua/support/helpers.lua")
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains

local function flat(t) return t:contiguous():view(t:numel()):totable() end

-- largest |a[i] - b[i]| and where
local function max_diff(a, b)
  assert(#a == #b, ("lengths differ: %d vs %d"):format(#a, #b))
  local m, at = 0, 0
  for i = 1, #a do
    local d = math.abs(a[i] - b[i])
    if d > m then m, at = d, i end
  end
  return m, at
end

-- The mean of src (flat, row-major (ih, iw)) over each output pixel's
-- rectangle of the window [y0, y0+sh) x [x0, x0+sw), integrated in 2-D.
local function area_ref(src, ih, iw, oh, ow, y0, x0, sh, sw)
  y0, x0, sh, sw = y0 or 0, x0 or 0, sh or ih, sw or iw
  local out, sy, sx = {}, sh / oh, sw / ow
  for oy = 0, oh - 1 do
    local ya, yb = y0 + oy * sy, y0 + (oy + 1) * sy
    for ox = 0, ow - 1 do
      local xa, xb = x0 + ox * sx, x0 + (ox + 1) * sx
      local acc, area = 0, 0
      for iy = math.floor(ya), math.min(math.ceil(yb), ih) - 1 do
        local cy = math.min(yb, iy + 1) - math.max(ya, iy)
        if cy > 0 then
          for ix = math.floor(xa), math.min(math.ceil(xb), iw) - 1 do
            local cx = math.min(xb, ix + 1) - math.max(xa, ix)
            if cx > 0 then
              acc = acc + cy * cx * src[iy * iw + ix + 1]
              area = area + cy * cx
            end
          end
        end
      end
      out[#out + 1] = acc / area
    end
  end
  return out
end

before_each(function()
  dd.manual_seed(seed)
  math.randomseed(seed)
end)

describe("vision.silhouette (threshold)", function()
  it("applies r + g + b > 230 on 8-bit values: exactly 230 is the dancer", function()
    local function px(r, g, b) return {r / 255, g / 255, b / 255} end
    -- 2x3 pixels: sums 230, 231, 0 / 765, 229, 300
    local pixels = {{px(100, 100, 30), px(100, 100, 31), px(0, 0, 0)},
                    {px(255, 255, 255), px(229, 0, 0), px(100, 100, 100)}}
    local planes = {}
    for c = 1, 3 do
      planes[c] = {}
      for y = 1, 2 do
        planes[c][y] = {}
        for x = 1, 3 do planes[c][y][x] = pixels[y][x][c] end
      end
    end
    local s = dd.vision.silhouette(dd.tensor(planes))
    assert.same({{{0, 1, 0}, {1, 0, 1}}}, s:totable())
    -- the threshold is an option
    assert.same({{{1, 1, 0}, {1, 0, 1}}}, dd.vision.silhouette(dd.tensor(planes), {sum_above = 229}):totable())
  end)

  it("counts a grey value three times", function()
    -- 3 * 76 = 228 (dancer), 3 * 77 = 231 (background)
    local g = dd.tensor{{{76 / 255, 77 / 255}}}
    assert.same({{{0, 1}}}, dd.vision.silhouette(g, {method = "threshold"}):totable())
  end)

  it("handles batches and strided input", function()
    local x = dd.rand(4, 3, 5, 6)
    local all = dd.vision.silhouette(x)
    assert.same({4, 1, 5, 6}, all:shape())
    for i = 1, 4 do
      assert.equal(0, (all:select(1, i) - dd.vision.silhouette(x:select(1, i))):abs():max())
    end
    local hwc = dd.rand(5, 6, 3)
    assert.equal(0, (dd.vision.silhouette(hwc:permute(3, 1, 2)) -
                     dd.vision.silhouette(hwc:permute(3, 1, 2):contiguous())):abs():max())
    -- crops (rows of unit stride, read in place) of RGB and grey, single and batched
    for _, c in ipairs{3, 1} do
      local big = dd.rand(3, c, 9, 11)
      for _, v in ipairs{big:narrow(3, 2, 6):narrow(4, 3, 7), big:select(1, 2):narrow(2, 4, 5):narrow(3, 1, 10)} do
        assert.is_false(v:is_contiguous())
        assert.equal(0, (dd.vision.silhouette(v, {sum_above = 380}) -
                         dd.vision.silhouette(v:contiguous(), {sum_above = 380})):abs():max())
      end
    end
  end)

  it("checks its arguments", function()
    assert_contains(error_of(dd.vision.silhouette, dd.zeros(2, 4, 4)),
      "vision.silhouette: method 'threshold' needs 1 or 3 channels, got shape (2,4,4)")
    assert_contains(error_of(dd.vision.silhouette, dd.zeros(3, 4, 4), {background = dd.zeros(3, 4, 4)}),
      "vision.silhouette: unknown option 'background' (known: method, sum_above)")
    assert_contains(error_of(dd.vision.silhouette, dd.zeros(3, 4, 4), {method = "otsu"}),
      "vision.silhouette: option 'method' must be one of 'threshold', 'median', got 'otsu'")
    assert_contains(error_of(dd.vision.silhouette, dd.zeros(4, 4)),
      "vision.silhouette: frame must be (C,H,W) or (N,C,H,W), got shape (4,4)")
    assert_contains(error_of(dd.vision.silhouette, "frame"), "vision.silhouette: frame must be a Tensor, got string")
    assert_contains(error_of(dd.vision.silhouette, dd.zeros(3, 4, 4), {method = "median"}),
      "vision.silhouette: method 'median' needs option 'background'")
    assert_contains(error_of(dd.vision.silhouette, dd.zeros(3, 4, 4), {method = "median", background = dd.zeros(3, 4, 5)}),
      "vision.silhouette: background has shape (3,4,5) but the frame has shape (3,4,4)")
    assert_contains(error_of(dd.vision.silhouette, dd.zeros(3, 4, 4), {method = "median", background = dd.zeros(3, 4, 4), open = -1}),
      "vision.silhouette: option 'open' must be in [0, 1000], got -1")
  end)
end)

describe("vision.resize", function()
  it("area: matches a 2-D integration on random sizes with non-integer ratios", function()
    for trial = 1, 12 do
      local ih, iw = math.random(1, 30), math.random(1, 30)
      local oh, ow = math.random(1, 30), math.random(1, 30)
      local x = dd.rand(ih, iw)
      local got = flat(dd.vision.resize(x, oh, ow))
      local d, at = max_diff(got, area_ref(flat(x), ih, iw, oh, ow))
      assert(d < 2e-6, ("%dx%d -> %dx%d: difference %g at %d"):format(ih, iw, oh, ow, d, at))
    end
  end)

  it("area: 120x200 from 480x800 (the paper's 4x reduction)", function()
    local x = dd.rand(1, 480, 800)
    local got = dd.vision.resize(x, 120, 200)
    assert.same({1, 120, 200}, got:shape())
    assert(max_diff(flat(got), area_ref(flat(x), 480, 800, 120, 200)) < 2e-6)
  end)

  it("area: 120x200 from 360x640 with fit='crop' is the centred 360x600 window", function()
    local x = dd.rand(1, 360, 640)
    local got = dd.vision.resize(x, 120, 200, {fit = "crop"})
    assert(max_diff(flat(got), area_ref(flat(x), 360, 640, 120, 200, 0, 20, 360, 600)) < 2e-6)
    -- the same as cropping first (the window is whole pixels here)
    local cropped = dd.vision.resize(x:narrow(3, 21, 600), 120, 200)
    assert.equal(0, (got - cropped):abs():max())
  end)

  it("area: 120x200 from 360x640 with fit='pad' fits 113x200 and pads with white", function()
    -- 360x640 scaled by 200/640 is 112.5 rows -> 113, placed at row floor((120 - 113) / 2) = 3
    local x = dd.rand(2, 360, 640)
    local got = dd.vision.resize(x, 120, 200, {fit = "pad"})
    assert.same({2, 120, 200}, got:shape())
    assert.equal(1, got:narrow(2, 1, 3):min())
    assert.equal(1, got:narrow(2, 117, 4):min())
    for c = 1, 2 do
      local content = flat(got:select(1, c):narrow(1, 4, 113))
      assert(max_diff(content, area_ref(flat(x:select(1, c)), 360, 640, 113, 200)) < 2e-6)
    end
    -- pad_value, and padding on the sides for a tall input
    local tall = dd.vision.resize(dd.zeros(1, 100, 50), 20, 20, {fit = "pad", pad_value = 0.25})
    assert.equal(0.25, tall:narrow(3, 1, 5):max())
    assert.equal(0, tall:narrow(3, 6, 10):max())
    assert.equal(0.25, tall:narrow(3, 16, 5):min())
  end)

  it("area: resizes every plane of an (N,C,H,W) batch", function()
    local x = dd.rand(2, 3, 9, 13)
    local got = dd.vision.resize(x, 4, 5)
    assert.same({2, 3, 4, 5}, got:shape())
    for n = 1, 2 do
      for c = 1, 3 do
        local want = area_ref(flat(x:select(1, n):select(1, c)), 9, 13, 4, 5)
        assert(max_diff(flat(got:select(1, n):select(1, c)), want) < 2e-6)
      end
    end
  end)

  it("bilinear: enlarging matches align_corners=false bilinear", function()
    local ih, iw, oh, ow = 5, 7, 11, 16
    local x = dd.rand(ih, iw)
    local src = flat(x)
    local function coord(o, n_in, n_out)
      local s = math.max((o + 0.5) * n_in / n_out - 0.5, 0)
      local i0 = math.min(math.floor(s), n_in - 1)
      return i0, math.min(i0 + 1, n_in - 1), s - i0
    end
    local want = {}
    for oy = 0, oh - 1 do
      local y0, y1, fy = coord(oy, ih, oh)
      for ox = 0, ow - 1 do
        local x0, x1, fx = coord(ox, iw, ow)
        local function at(y, xx) return src[y * iw + xx + 1] end
        want[#want + 1] = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * ((1 - fx) * at(y1, x0) + fx * at(y1, x1))
      end
    end
    assert(max_diff(flat(dd.vision.resize(x, oh, ow, {filter = "bilinear"})), want) < 2e-6)
  end)

  it("bilinear: shrinking antialiases like PIL", function()
    local ok_pil = os.execute("/usr/bin/python3 -c 'import PIL, numpy' 2>/dev/null")
    if not ok_pil then
      pending("PIL and numpy are not available to /usr/bin/python3")
      return
    end
    local ih, iw, oh, ow = 23, 37, 7, 10
    local x = dd.rand(ih, iw)
    local values = table.concat(flat(x), " ")
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
import numpy as np
from PIL import Image
a = np.array([float(v) for v in "%s".split()], dtype=np.float32).reshape(%d, %d)
out = np.asarray(Image.fromarray(a, "F").resize((%d, %d), Image.BILINEAR))
print(" ".join(repr(float(v)) for v in out.ravel()))
]]):format(values, ih, iw, ow, oh))
    f:close()
    local p = io.popen("/usr/bin/python3 " .. script)
    local out = p:read("a")
    p:close()
    os.remove(script)
    local want = {}
    for v in out:gmatch("%S+") do want[#want + 1] = tonumber(v) end
    local d = max_diff(flat(dd.vision.resize(x, oh, ow, {filter = "bilinear"})), want)
    assert(d < 1e-5, "difference from PIL: " .. d)
  end)

  it("keeps a constant image constant with every filter and fit", function()
    local x = dd.full({3, 17, 29}, 0.375)
    for _, filter in ipairs{"area", "bilinear"} do
      for _, fit in ipairs{"stretch", "crop", "pad"} do
        local y = dd.vision.resize(x, 11, 13, {filter = filter, fit = fit, pad_value = 0.375})
        assert(math.abs(y:max() - 0.375) < 1e-6 and math.abs(y:min() - 0.375) < 1e-6, filter .. " " .. fit)
      end
    end
  end)

  it("checks its arguments", function()
    assert_contains(error_of(dd.vision.resize, dd.zeros(4, 4), 2, 2, {filter = "lanczos"}),
      "vision.resize: option 'filter' must be one of 'area', 'bilinear', got 'lanczos'")
    assert_contains(error_of(dd.vision.resize, dd.zeros(4, 4), 2, 2, {fit = "fill"}),
      "vision.resize: option 'fit' must be one of 'stretch', 'crop', 'pad', got 'fill'")
    assert_contains(error_of(dd.vision.resize, dd.zeros(4, 4), 2, 2, {size = 3}),
      "vision.resize: unknown option 'size' (known: filter, fit, pad_value)")
    assert_contains(error_of(dd.vision.resize, dd.zeros(4), 2, 2),
      "vision.resize: input must be (H,W), (C,H,W) or (N,C,H,W), got shape (4,)")
    assert_contains(error_of(dd.vision.resize, dd.zeros(1, 0, 4), 2, 2), "vision.resize: input is empty (shape (1,0,4))")
    assert_contains(error_of(dd.vision.resize, dd.zeros(4, 4), 0, 2), "vision.resize: height must be in [1, 1048576], got 0")
    assert_contains(error_of(dd.vision.resize, dd.zeros(4, 4), 2, 2.5), "vision.resize: width must be an integer")
  end)
end)

describe("vision.to_grey", function()
  it("uses BT.601 luma and ignores alpha", function()
    local rgb = dd.tensor{{{1, 0}}, {{0, 1}}, {{0, 0.5}}}
    local g = dd.vision.to_grey(rgb):totable()
    assert.is_true(math.abs(g[1][1][1] - 0.299) < 1e-6)
    assert.is_true(math.abs(g[1][1][2] - (0.587 + 0.057)) < 1e-6)
    local rgba = dd.tensor{{{1, 0}}, {{0, 1}}, {{0, 0.5}}, {{0.3, 0.9}}}
    assert.equal(0, (dd.vision.to_grey(rgba) - dd.vision.to_grey(rgb)):abs():max())
    assert.same({2, 1, 1, 2}, dd.vision.to_grey(dd.rand(2, 3, 1, 2)):shape())
    assert_contains(error_of(dd.vision.to_grey, dd.zeros(2, 3, 3)),
      "vision.to_grey: expected 1, 3 or 4 (RGBA: alpha ignored) channels, got shape (2,3,3)")
  end)
end)

describe("vision.morph", function()
  local block = {{0, 0, 0, 0, 0}, {0, 1, 1, 1, 0}, {0, 1, 1, 1, 0}, {0, 1, 1, 1, 0}, {0, 0, 0, 0, 0}}
  local dot = {{0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}, {0, 0, 1, 0, 0}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}}
  local plus = {{0, 0, 0, 0, 0}, {0, 0, 1, 0, 0}, {0, 1, 1, 1, 0}, {0, 0, 1, 0, 0}, {0, 0, 0, 0, 0}}

  it("dilates, erodes, opens and closes hand-made masks", function()
    assert.same(block, dd.vision.morph(dd.tensor(dot), "dilate", 1):totable())
    assert.same(plus, dd.vision.morph(dd.tensor(dot), "dilate", 1, {shape = "disc"}):totable())
    assert.same(dot, dd.vision.morph(dd.tensor(block), "erode", 1):totable())
    local zeros = dd.zeros(5, 5):totable()
    assert.same(zeros, dd.vision.morph(dd.tensor(dot), "open", 1):totable())   -- speckle removed
    local holed = dd.tensor(block)
    holed:set(3, 3, 0)
    assert.same(block, dd.vision.morph(holed, "close", 1):totable())          -- hole filled
    assert.same(block, dd.vision.morph(dd.tensor(block), "close", 1):totable()) -- gap to the border kept
    assert.same(dot, dd.vision.morph(dd.tensor(dot), "dilate", 0):totable())
  end)

  it("works on dark foregrounds (silhouettes) and batches", function()
    local inverted = (1 - dd.tensor(dot)):view(1, 5, 5)
    local got = dd.vision.morph(inverted, "dilate", 1, {foreground = "dark"})
    assert.same({(1 - dd.tensor(block)):totable()}, got:totable())
    local b = dd.zeros(2, 1, 5, 5)
    b:select(1, 1):select(1, 1):copy(dd.tensor(dot))
    b:select(1, 2):select(1, 1):copy(dd.tensor(block))
    local m = dd.vision.morph(b, "erode", 1)
    assert.same({{dd.zeros(5, 5):totable()}, {dot}}, m:totable())
  end)

  it("checks its arguments", function()
    assert_contains(error_of(dd.vision.morph, dd.zeros(5, 5), "thin", 1),
      "vision.morph: op must be 'erode', 'dilate', 'open' or 'close', got 'thin'")
    assert_contains(error_of(dd.vision.morph, dd.zeros(5, 5), "open", -1), "vision.morph: radius must be in [0, 1000], got -1")
    assert_contains(error_of(dd.vision.morph, dd.zeros(5, 5), "open", 1, {shape = "diamond"}),
      "vision.morph: option 'shape' must be one of 'square', 'disc', got 'diamond'")
    assert_contains(error_of(dd.vision.morph, dd.zeros(5, 5), "open", 1, {foreground = 1}),
      "vision.morph: option 'foreground' must be one of 'light', 'dark', got number")
    assert_contains(error_of(dd.vision.morph, dd.zeros(5, 5), "open", 1, {radius = 1}),
      "vision.morph: unknown option 'radius' (known: shape, foreground)")
  end)
end)

describe("vision.components", function()
  it("labels 8-connected components in raster order with their areas", function()
    local mask = dd.tensor{{1, 0, 0, 1, 1},
                           {0, 1, 0, 0, 0},
                           {0, 0, 0, 1, 0},
                           {1, 1, 0, 0, 1},
                           {1, 0, 0, 0, 0}}
    local labels, count, areas = dd.vision.components(mask)
    assert.equal(4, count)
    assert.same({2, 2, 2, 3}, areas)
    assert.same({{1, 0, 0, 2, 2},
                 {0, 1, 0, 0, 0},
                 {0, 0, 0, 3, 0},
                 {4, 4, 0, 0, 3},
                 {4, 0, 0, 0, 0}}, labels:totable())
  end)

  it("finds the dancer of a silhouette with foreground='dark'", function()
    local s = dd.ones(1, 6, 6)
    s:narrow(2, 2, 3):narrow(3, 2, 2):fill(0)
    s:set(1, 6, 6, 0)
    local labels, count, areas = dd.vision.components(s, {foreground = "dark"})
    assert.equal(2, count)
    assert.same({6, 1}, areas)
    assert.same({1, 6, 6}, labels:shape())
    local _, none = dd.vision.components(dd.zeros(3, 3))
    assert.equal(0, none)
  end)

  it("checks its arguments", function()
    assert_contains(error_of(dd.vision.components, dd.zeros(3, 4, 4)),
      "vision.components: mask must be (H,W) or (1,H,W), got shape (3,4,4)")
    assert_contains(error_of(dd.vision.components, dd.zeros(4, 4), {connectivity = 4}),
      "vision.components: unknown option 'connectivity' (known: foreground)")
  end)
end)

-- A scene: static textured background (3, H, W), a dark disc moving left to
-- right, gaussian noise; returns frames, the background and the true masks
-- (1 = background, 0 = dancer, like a silhouette).
local function scene(n, h, w, radius, noise)
  local bg = {}
  for c = 1, 3 do
    bg[c] = {}
    for y = 1, h do
      bg[c][y] = {}
      for x = 1, w do
        bg[c][y][x] = 0.55 + 0.2 * math.sin(x / 5 + c) * math.cos(y / 7) + 0.05 * math.random()
      end
    end
  end
  local background = dd.tensor(bg)
  local frames, truth = {}, {}
  for i = 1, n do
    local cx, cy = 1 + radius + (w - 2 * radius - 1) * (i - 1) / (n - 1), h / 2 + 5 * math.sin(i)
    local f, m = background:clone(), dd.ones(1, h, w)
    for y = 1, h do
      for x = 1, w do
        if (x - cx) ^ 2 + (y - cy) ^ 2 <= radius * radius then
          for c = 1, 3 do f:set(c, y, x, 0.1 + 0.05 * c) end
          m:set(1, y, x, 0)
        end
      end
    end
    if noise > 0 then f = (f + dd.randn(3, h, w) * noise):clamp(0, 1) end
    frames[i], truth[i] = f, m
  end
  return frames, background, truth
end

-- IoU of the dancers (values < 0.5) of two silhouettes
local function iou_dark(a, b)
  local da, db = a:lt(0.5), b:lt(0.5)
  local inter = (da * db):sum()
  local union = da:sum() + db:sum() - inter
  return inter / union
end

describe("vision.background_model", function()
  it("recovers the background exactly from frames with a moving square", function()
    -- 8-bit levels, an odd number of frames: the median is one of the samples
    local bg = (dd.rand(3, 12, 16) * 255):floor() / 255
    local frames = {}
    for i = 1, 7 do
      local f = bg:clone()
      f:narrow(2, 3, 4):narrow(3, 2 * i - 1, 4):fill(0)  -- covers each pixel in at most 2 of 7 frames
      frames[i] = f
    end
    local model = dd.vision.background_model(frames)
    assert.same({3, 12, 16}, model:shape())
    assert.equal(0, (model - bg):abs():max())
    -- the same from an (N,C,H,W) tensor and from a function(i, n)
    local all = dd.zeros(7, 3, 12, 16)
    for i = 1, 7 do all:select(1, i):copy(frames[i]) end
    assert.equal(0, (dd.vision.background_model(all) - bg):abs():max())
    local calls = {}
    local from_fn = dd.vision.background_model(function(i, n)
      calls[#calls + 1] = i .. "/" .. n
      return frames[i]
    end, {samples = 7})
    assert.equal(0, (from_fn - bg):abs():max())
    assert.same({"1/7", "2/7", "3/7", "4/7", "5/7", "6/7", "7/7"}, calls)
  end)

  it("samples evenly: list indices and video times", function()
    -- 10 frames whose value is their index; 5 samples take frames 2, 4, 6, 8, 10
    -- ((i + 0.5) * 10 / 5 -> 1, 3, 5, 7, 9 zero-based): the median is frame 6
    local frames = {}
    for i = 1, 10 do frames[i] = dd.full({1, 1, 1}, i / 255) end
    assert.equal(dd.tensor(6 / 255):item(), dd.vision.background_model(frames, {samples = 5}):item())
    -- by default every frame is used: the median of 1..10 is 5.5
    assert.is_true(math.abs(dd.vision.background_model(frames):item() - 5.5 / 255) < 1e-7)
    -- a video (duck-typed: duration, seek, read) is sampled at the middle of n equal spans
    local seeks = {}
    local video = {duration = 10, pos = 0}
    function video:seek(t) seeks[#seeks + 1] = t; self.pos = t end
    function video:read() return dd.full({1, 2, 2}, math.floor(self.pos) / 255), self.pos end
    local m = dd.vision.background_model(video, {samples = 4})
    assert.same({1.25, 3.75, 6.25, 8.75}, seeks)
    assert.same({1, 2, 2}, m:shape())
    -- median of 1, 3, 6, 8 (even count): mean of 3 and 6
    assert.is_true(math.abs(m:get(1, 1, 1) - 4.5 / 255) < 1e-7)
  end)

  it("reads a dd.video reader directly", function()
    if not (dd.video and dd.video.open) then
      pending("dd.video is not built in")
      return
    end
    local base = os.tmpname()
    local path = base .. ".mp4"
    -- 2 s of one flat colour (YUV 4:2:0 H.264: the decoded RGB is close to it, not exact)
    assert(os.execute("ffmpeg -v error -y -f lavfi -i color=c=0x4080c0:size=64x48:rate=10:duration=2 " ..
      "-pix_fmt yuv420p " .. path), "ffmpeg failed")
    local v = dd.video.open(path)
    local bg = dd.vision.background_model(v, {samples = 5})
    v:close()
    os.remove(path)
    os.remove(base)
    assert.same({3, 48, 64}, bg:shape())
    local want = {0x40 / 255, 0x80 / 255, 0xc0 / 255}
    for c = 1, 3 do
      local plane = bg:select(1, c)
      assert.is_true(math.abs(plane:mean() - want[c]) < 4 / 255, ("channel %d: %g"):format(c, plane:mean()))
    end
  end)

  it("checks its arguments", function()
    local f = {dd.zeros(3, 4, 4), dd.zeros(3, 4, 4), dd.zeros(3, 5, 4)}
    assert_contains(error_of(dd.vision.background_model, f),
      "vision.background_model: sample 3 has shape (3,5,4) but sample 1 has shape (3,4,4)")
    assert_contains(error_of(dd.vision.background_model, {dd.zeros(3, 4, 4), "x"}),
      "vision.background_model: sample 2 is not a Tensor but string")
    assert_contains(error_of(dd.vision.background_model, {dd.zeros(3, 4, 4)}, {samples = 2}),
      "vision.background_model: option 'samples' must be in [1, 1], got 2")
    assert_contains(error_of(dd.vision.background_model, {dd.zeros(3, 4, 4)}, {n = 2}),
      "vision.background_model: unknown option 'n' (known: samples)")
    assert_contains(error_of(dd.vision.background_model, {}), "vision.background_model: no frames given")
    assert_contains(error_of(dd.vision.background_model, 3),
      "vision.background_model: expected a list of frames, an (N,C,H,W) tensor, a video (seek, read, duration) or a function(i, n), got number")
    local eof = {duration = 2, seek = function() end, read = function() return nil end}
    assert_contains(error_of(dd.vision.background_model, eof, {samples = 2}),
      "vision.background_model: the video returned no frame after seek(0.5")
    -- an error raised by the source itself comes through
    assert_contains(error_of(dd.vision.background_model, function() error("decoder broke") end), "decoder broke")
  end)
end)

describe("vision.silhouette (median)", function()
  it("finds a moving dark blob over a textured background (IoU > 0.95)", function()
    local frames, _, truth = scene(20, 60, 80, 8, 0.02)
    -- salt and pepper on top: isolated pixels for the opening and min_area to remove
    for i = 1, #frames do
      for _ = 1, 15 do
        frames[i]:select(2, math.random(1, 60)):select(2, math.random(1, 80)):fill(math.random(0, 1))
      end
    end
    local bg = dd.vision.background_model(frames)
    -- the video path gives the same model: 3 fps, sampled at the middle of each 1/3 s
    local video = {duration = #frames / 3, i = 1}
    function video:seek(t) self.i = math.floor(t * 3) + 1 end
    function video:read() return frames[self.i], (self.i - 1) / 3 end
    assert.equal(0, (dd.vision.background_model(video, {samples = #frames}) - bg):abs():max())
    local worst = 1
    for _, i in ipairs{1, 7, 14, 20} do
      local s = dd.vision.silhouette(frames[i], {method = "median", background = bg})
      assert.same({1, 60, 80}, s:shape())
      assert.equal(60 * 80, s:eq(0):sum() + s:eq(1):sum())
      worst = math.min(worst, iou_dark(s, truth[i]))
    end
    print(("# median silhouette: worst IoU %.4f"):format(worst))
    assert.is_true(worst > 0.95, "IoU " .. worst)
    -- a batch gives the same silhouettes
    local batch = dd.zeros(2, 3, 60, 80)
    batch:select(1, 1):copy(frames[3])
    batch:select(1, 2):copy(frames[9])
    local sb = dd.vision.silhouette(batch, {method = "median", background = bg})
    assert.equal(0, (sb:select(1, 2) - dd.vision.silhouette(frames[9], {method = "median", background = bg})):abs():max())
  end)

  it("removes components below min_area, as a fraction or in pixels", function()
    -- background 1; frame with a 5x5 dark square (25 px) and a 2x2 one (4 px) in 20x20 = 400 px
    local bg = dd.ones(1, 20, 20)
    local f = dd.ones(1, 20, 20)
    f:narrow(2, 3, 5):narrow(3, 3, 5):fill(0)
    f:narrow(2, 14, 2):narrow(3, 14, 2):fill(0)
    local function dancers(opts)
      opts.method, opts.background, opts.open, opts.close = "median", bg, 0, 0
      return dd.vision.silhouette(f, opts):eq(0):sum()
    end
    assert.equal(29, dancers{min_area = 0})
    assert.equal(25, dancers{min_area = 5})          -- pixels
    assert.equal(25, dancers{min_area = 0.0125})     -- 5 of 400 pixels
    assert.equal(29, dancers{min_area = 0.01})       -- 4 of 400: the small one stays
    assert.equal(0, dancers{min_area = 26})
    -- threshold: a difference of exactly 0.5 is not above 0.5
    local half = dd.full({1, 20, 20}, 0.5)
    assert.equal(0, dd.vision.silhouette(half, {method = "median", background = bg, threshold = 0.5}):eq(0):sum())
    assert.equal(400, dd.vision.silhouette(half, {method = "median", background = bg, threshold = 0.4}):eq(0):sum())
  end)
end)

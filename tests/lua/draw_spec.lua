-- draw_spec.lua: dd.draw, the antialiased rasterizer (src/raster.c): ink
-- (summed coverage) against exact areas, edge values, union painting, the
-- tiled fast path against the per-pixel formula, clipping at the canvas
-- edges, backdrops and lights, and argument errors.
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/draw_spec.lua
local seed = tonumber(os.getenv("DD_TEST_SEED") or "1234")
print("# draw_spec seed: " .. seed)

local draw = dd.draw
local pi = math.pi

local helpers = dofile("tests/lua/support/helpers.lua")
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains

local function assert_near(expected, actual, rel, what)
  assert(math.abs(actual - expected) <= rel * math.abs(expected),
    ("%s: expected %.4f within %.2f%%, got %.4f"):format(what or "value", expected, rel * 100, actual))
end

-- Ink of a white shape on black: summed coverage of one channel.
local function ink(h, w, f)
  local c = dd.zeros(3, h, w)
  f(c)
  return c:select(1, 1):sum(), c
end

local WHITE = {1, 1, 1}

describe("shape coverage", function()
  it("a filled circle's ink is pi r^2 within 1%", function()
    for _, case in ipairs{{20, 40.3, 41.7}, {7.5, 30, 30}, {33, 50.5, 49.25}} do
      local r, cx, cy = case[1], case[2], case[3]
      local total = ink(100, 100, function(c) draw.circle(c, cx, cy, r, WHITE) end)
      assert_near(pi * r * r, total, 0.01, ("circle r=%g"):format(r))
    end
  end)

  it("a rotated ellipse's ink is pi rx ry within 1%", function()
    local total = ink(120, 120, function(c) draw.ellipse(c, 60.2, 58.9, 40, 18, 0.6, WHITE) end)
    assert_near(pi * 40 * 18, total, 0.01, "ellipse")
  end)

  it("a capsule's ink is 2 r L + pi r^2 within 1%, a tapered one between its bounds", function()
    local r, L = 9, 50
    local angle = 0.7
    local x1, y1 = 30, 25
    local x2, y2 = x1 + L * math.cos(angle), y1 + L * math.sin(angle)
    local total = ink(100, 100, function(c) draw.capsule(c, x1, y1, x2, y2, r, r, WHITE) end)
    assert_near(2 * r * L + pi * r * r, total, 0.01, "capsule")
    -- round cone with radii 12 and 4: its area lies between the trapezoid
    -- plus the two half-discs and the hull of the two full discs
    local tapered = ink(100, 100, function(c) draw.capsule(c, 20, 50, 80, 50, 12, 4, WHITE) end)
    local trapezoid = (12 + 4) * 60
    assert(tapered > trapezoid + pi * (16 + 144) / 2 * 0.9 and tapered < trapezoid + pi * (144 + 16),
      "tapered capsule ink " .. tapered)
  end)

  it("a polygon's ink is its area (exact for pixel-aligned edges, 1% otherwise)", function()
    local rect = ink(64, 64, function(c) draw.polygon(c, {10, 12, 50, 12, 50, 30, 10, 30}, WHITE) end)
    assert.is_true(math.abs(rect - 40 * 18) < 1e-3, "rectangle ink " .. rect)
    -- a concave "L" (area 30*10 + 10*20 = 500) given clockwise and counter-clockwise
    local L = {5.5, 5.5, 15.5, 5.5, 15.5, 25.5, 35.5, 25.5, 35.5, 35.5, 5.5, 35.5}
    local rev = {}
    for i = #L - 1, 1, -2 do rev[#rev + 1] = L[i]; rev[#rev + 1] = L[i + 1] end
    local a = ink(48, 48, function(c) draw.polygon(c, L, WHITE) end)
    local b = ink(48, 48, function(c) draw.polygon(c, rev, WHITE) end)
    assert_near(500, a, 0.01, "L polygon")
    assert_near(a, b, 1e-6, "reversed L polygon")
    local tri = ink(64, 64, function(c) draw.polygon(c, {3.3, 4.1, 60.2, 20.7, 20.4, 58.8}, WHITE) end)
    local area = 0.5 * math.abs((60.2 - 3.3) * (58.8 - 4.1) - (20.4 - 3.3) * (20.7 - 4.1))
    assert_near(area, tri, 0.01, "triangle")
  end)

  it("antialiases: edge pixels strictly between 0 and 1, inside exactly 1, outside exactly 0", function()
    local _, c = ink(64, 64, function(c) draw.circle(c, 32.3, 31.6, 20, WHITE) end)
    local plane = c:select(1, 1)
    local partial = plane:gt(0):mul(plane:lt(1)):sum()
    -- the edge of a circle crosses about 2 pi r pixels
    assert(partial > 2 * pi * 20 * 0.8 and partial < 2 * pi * 20 * 1.6, "edge pixels: " .. partial)
    assert.equal(1, c:get(1, 33, 33))    -- centre
    assert.equal(0, c:get(1, 1, 1))      -- far corner
    local v = c:get(1, 32, 33 + 20)      -- pixel (x = 52, y = 31): straddles the right edge
    assert(v > 0 and v < 1, "edge value " .. v)
  end)

  it("paints a list of shapes as one union, without double ink where they overlap", function()
    local r, d = 15, 12
    local total = ink(80, 80, function(c)
      draw.shapes(c, {{"circle", 34, 40, r}, {"circle", 34 + d, 40, r}}, WHITE)
    end)
    local lens = 2 * r * r * math.acos(d / (2 * r)) - (d / 2) * math.sqrt(4 * r * r - d * d)
    assert_near(2 * pi * r * r - lens, total, 0.01, "union of two circles")
    -- every kind in one list
    local all = ink(80, 80, function(c)
      draw.shapes(c, {{"circle", 10, 10, 4}, {"ellipse", 40, 10, 8, 4, 0}, {"capsule", 10, 40, 30, 40, 3, 3},
                      {"polygon", {50, 50, 70, 50, 70, 70}}}, WHITE)
    end)
    assert_near(pi * 16 + pi * 32 + (2 * 3 * 20 + pi * 9) + 200, all, 0.015, "four kinds")
  end)

  it("the tiled fast path equals the per-pixel distance formula", function()
    -- a big circle and a long capsule cover many whole tiles inside and outside
    local cx, cy, r = 61.3, 47.8, 37.5
    local _, c = ink(100, 128, function(c) draw.circle(c, cx, cy, r, WHITE) end)
    local ax, ay, bx, by, rr = 5.5, 90.2, 120.7, 8.9, 6.25
    local _, k = ink(100, 128, function(c) draw.capsule(c, ax, ay, bx, by, rr, rr, WHITE) end)
    local worst = 0
    for y = 0, 99, 3 do
      for x = 0, 127 do
        local px, py = x + 0.5, y + 0.5
        local want = math.min(1, math.max(0, 0.5 - (math.sqrt((px - cx) ^ 2 + (py - cy) ^ 2) - r)))
        worst = math.max(worst, math.abs(c:get(1, y + 1, x + 1) - want))
        local ex, ey = bx - ax, by - ay
        local t = math.min(1, math.max(0, ((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey)))
        local dist = math.sqrt((px - ax - t * ex) ^ 2 + (py - ay - t * ey) ^ 2) - rr
        want = math.min(1, math.max(0, 0.5 - dist))
        worst = math.max(worst, math.abs(k:get(1, y + 1, x + 1) - want))
      end
    end
    -- float32 in C against doubles here; a wrongly skipped tile would be off by up to 1
    assert(worst < 1e-3, "largest difference " .. worst)
  end)

  it("composites a colour at its opacity over what is there", function()
    local c = dd.ones(3, 20, 20)
    draw.polygon(c, {0, 0, 20, 0, 20, 20, 0, 20}, {0.2, 0.4, 0.6, 0.5})
    assert.is_true(math.abs(c:get(1, 5, 5) - 0.6) < 1e-6)
    assert.is_true(math.abs(c:get(2, 5, 5) - 0.7) < 1e-6)
    assert.is_true(math.abs(c:get(3, 5, 5) - 0.8) < 1e-6)
  end)
end)

describe("clipping", function()
  it("draws the visible part of shapes that cross the canvas edges", function()
    -- centred on the top-left corner: a quarter of the disc is inside
    local q = ink(50, 50, function(c) draw.circle(c, 0, 0, 30, WHITE) end)
    assert_near(pi * 900 / 4, q, 0.01, "quarter disc")
    -- half across the right edge
    local h = ink(50, 50, function(c) draw.circle(c, 50, 25, 12, WHITE) end)
    assert_near(pi * 144 / 2, h, 0.01, "half disc")
    -- a rectangle hanging over the bottom edge keeps the inside part
    local r = ink(40, 40, function(c) draw.polygon(c, {10, 30, 20, 30, 20, 55, 10, 55}, WHITE) end)
    assert.is_true(math.abs(r - 100) < 1e-3, "clipped rectangle " .. r)
  end)

  it("ignores shapes entirely outside, however far, without touching memory", function()
    for _, f in ipairs{
      function(c) draw.circle(c, -100, -100, 20, WHITE) end,
      function(c) draw.circle(c, 1e9, 5, 1e3, WHITE) end,
      function(c) draw.capsule(c, -1e20, -1e20, -1e19, -1e19, 5, 5, WHITE) end,
      function(c) draw.ellipse(c, 30, -500, 40, 20, 1, WHITE) end,
      function(c) draw.polygon(c, {100, 100, 200, 100, 150, 200}, WHITE) end,
      function(c) draw.shapes(c, {}, WHITE) end,
      function(c) draw.glow(c, -500, -500, 100, WHITE, 1) end,
    } do
      local total = ink(16, 24, f)
      assert.equal(0, total)
    end
    -- and a disc covering the whole canvas fills all of it
    assert.equal(16 * 24, (ink(16, 24, function(c) draw.circle(c, 12, 8, 1e6, WHITE) end)))
  end)

  it("works on 1x1 and thin canvases", function()
    assert.equal(1, (ink(1, 1, function(c) draw.circle(c, 0.5, 0.5, 3, WHITE) end)))
    local line = ink(1, 50, function(c) draw.capsule(c, -10, 0.5, 60, 0.5, 2, 2, WHITE) end)
    assert.equal(50, line)
  end)
end)

describe("backdrops and lights", function()
  it("linear gradients blend between their end colours and clamp beyond", function()
    local c = dd.zeros(3, 11, 4)
    draw.linear_gradient(c, 0, 0.5, 0, 10.5, {1, 0, 0.5}, {0, 1, 0.5})
    assert.is_true(math.abs(c:get(1, 1, 2) - 1) < 1e-6)     -- row 0 centre is at the start
    assert.is_true(math.abs(c:get(1, 6, 2) - 0.5) < 1e-6)   -- half way
    assert.is_true(math.abs(c:get(2, 11, 1) - 1) < 1e-6)    -- the end
    assert.is_true(math.abs(c:get(3, 4, 3) - 0.5) < 1e-6)
    -- a diagonal gradient clamps past its ends
    draw.linear_gradient(c, 1, 1, 3, 3, {0, 0, 0}, {1, 1, 1})
    assert.equal(0, c:get(1, 1, 1))
    assert.equal(1, c:get(1, 11, 4))
  end)

  it("radial gradients go from the inner colour at the centre to the outer one at the radius", function()
    local c = dd.zeros(3, 21, 21)
    draw.radial_gradient(c, 10.5, 10.5, 10, {1, 1, 1}, {0, 0, 0})
    assert.equal(1, c:get(1, 11, 11))
    assert.equal(0, c:get(1, 1, 1))
    assert.is_true(math.abs(c:get(1, 11, 16) - 0.5) < 1e-6)
  end)

  it("lights only brighten and never pass 1", function()
    dd.manual_seed(seed)
    local base = dd.rand(3, 60, 80)
    local c = base:clone()
    draw.glow(c, 40, 30, 25, {1, 0.5, 0.2}, 0.8)
    draw.beam(c, 10, -5, 1.2, 0.3, {0.3, 1, 1}, 1, 0.4)
    assert.is_true(c:sub(base):min() >= 0)
    assert.is_true(c:max() <= 1)
    assert.is_true(c:sub(base):max() > 0.3)
    -- a beam pointing down lights below its source and nothing behind or beside it
    local b = dd.zeros(3, 40, 40)
    draw.beam(b, 20, 10, pi / 2, 0.2, {1, 1, 1}, 1, 0.3)
    assert.is_true(b:get(1, 30, 21) > 0.5)   -- straight below
    assert.equal(0, b:get(1, 5, 21))         -- above the source
    assert.equal(0, b:get(1, 15, 5))         -- far to the side
    assert.equal(0, b:narrow(2, 1, 10):sum())
  end)

  it("fill sets every pixel", function()
    local c = dd.zeros(3, 5, 7)
    draw.fill(c, {0.25, 0.5, 0.75})
    assert.equal(0.25 * 35 + 0.5 * 35 + 0.75 * 35, c:sum())
  end)
end)

describe("argument errors", function()
  it("names the canvas' shape when it is not a contiguous (3,H,W) tensor", function()
    assert_contains(error_of(draw.circle, dd.zeros(4, 5), 1, 1, 1, WHITE),
      "draw.circle: canvas must have shape (3,H,W), got (4,5)")
    assert_contains(error_of(draw.circle, dd.zeros(4, 5, 6), 1, 1, 1, WHITE),
      "draw.circle: canvas must have shape (3,H,W), got (4,5,6)")
    assert_contains(error_of(draw.shapes, dd.zeros(3, 6, 5):transpose(2, 3), {}, WHITE),
      "draw.shapes: canvas must be contiguous, got a strided view of shape (3,5,6)")
    assert_contains(error_of(draw.fill, "canvas", WHITE), "draw.fill: canvas must be a (3,H,W) Tensor, got string")
  end)

  it("checks numbers, radii and colours", function()
    local c = dd.zeros(3, 8, 8)
    assert_contains(error_of(draw.circle, c, 1, "y", 1, WHITE), "draw.circle: cy must be a number, got string")
    assert_contains(error_of(draw.circle, c, 1, 0 / 0, 1, WHITE), "draw.circle: cy must be a finite number")
    assert_contains(error_of(draw.circle, c, 1, 1, -2, WHITE), "draw.circle: r must be >= 0, got -2")
    assert_contains(error_of(draw.capsule, c, 1, 1, 2, 2, 1, -1, WHITE), "draw.capsule: r2 must be >= 0")
    assert_contains(error_of(draw.circle, c, 1, 1, 1, {255, 0, 0}),
      "draw.circle: color component 1 must be in [0, 1], got 255")
    assert_contains(error_of(draw.circle, c, 1, 1, 1, {1, 1}), "draw.circle: color must have 3 or 4 values")
    assert_contains(error_of(draw.circle, c, 1, 1, 1, "red"), "draw.circle: color must be a table {r, g, b [, a]}")
    assert_contains(error_of(draw.circle, c, 1, 1, 1, WHITE, 5), "draw.circle: expected 5 arguments, got 6")
    assert_contains(error_of(draw.linear_gradient, c, 0, 0, 1, 1, {1, 1, 1, 1}, WHITE),
      "draw.linear_gradient: color0 must have 3 values")
    assert_contains(error_of(draw.glow, c, 1, 1, 1, WHITE, 2), "draw.glow: intensity must be in [0")
    assert_contains(error_of(draw.beam, c, 1, 1, 1, 2, WHITE, 1), "draw.beam: spread (half-angle, radians) must be in (0, 1.5]")
  end)

  it("checks polygons and shape lists, naming the failing entry", function()
    local c = dd.zeros(3, 8, 8)
    assert_contains(error_of(draw.polygon, c, {1, 2, 3, 4, 5}, WHITE),
      "draw.polygon: xy must hold an even number (at least 6) of coordinates, got 5")
    assert_contains(error_of(draw.polygon, c, {1, 2, 3, 4, 5, "z"}, WHITE),
      "draw.polygon: xy coordinate 6 must be a number, got string")
    assert_contains(error_of(draw.shapes, c, {{"circle", 1, 1, 1}, {"square", 1, 1, 1}}, WHITE),
      "draw.shapes: shape 2: unknown kind 'square' (known: circle, ellipse, capsule, polygon)")
    assert_contains(error_of(draw.shapes, c, {{"capsule", 1, 1, 2, 2, 1}}, WHITE),
      "draw.shapes: shape 1 (capsule) must have 6 numbers after its kind, got 5")
    assert_contains(error_of(draw.shapes, c, {{"ellipse", 1, 1, 1, -1, 0}}, WHITE),
      "draw.shapes: shape 1 (ellipse) ry must be >= 0")
    assert_contains(error_of(draw.shapes, c, {{"polygon", {0, 0, 1, 1}}}, WHITE),
      "draw.shapes: shape 1 (polygon) must hold an even number (at least 6) of coordinates, got 4")
    assert_contains(error_of(draw.shapes, c, {42}, WHITE), "draw.shapes: shape 1 must be a table {kind, ...}, got number")
    assert_contains(error_of(draw.shapes, c, {{7, 1, 1, 1}}, WHITE), "draw.shapes: shape 1: kind must be a string")
    assert_contains(error_of(draw.shapes, c, nil, WHITE), "draw.shapes: list must be a table of shapes, got nil")
  end)

  it("leaves the canvas untouched when an argument is wrong", function()
    local c = dd.zeros(3, 8, 8)
    pcall(draw.shapes, c, {{"circle", 4, 4, 3}, {"circle", 4, 4, "x"}}, WHITE)
    assert.equal(0, c:sum())
  end)
end)

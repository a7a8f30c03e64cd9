-- image_spec.lua: dd.image.load/save/grid/ascii/show.
-- Reference PNGs of every colour type, bit depth, palette/tRNS combination and
-- Adam7 interlacing come from an independent encoder (tests/support/make_pngs.py,
-- Python standard library); decoded values must match sample / (2^bits - 1)
-- exactly. Saved files are also decoded by that script's own decoder.
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/image_spec.lua
local seed = tonumber(os.getenv("DD_TEST_SEED") or "1234")
print("# image_spec seed: " .. seed)

local PYTHON = "/usr/bin/python3"
local HELPER = "tests/support/make_pngs.py"

local helpers = dofile("tests/lua/support/helpers.lua")
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  assert(ok, "command failed: " .. cmd .. "\n" .. out)
  return out
end

local slurp = helpers.slurp
local spit = helpers.spit

-- float32 rounding of a double, to compare with what a tensor stores
local function f32(x) return (string.unpack("<f", string.pack("<f", x))) end

-- "C H W MAX\nsamples..." (make_pngs.py's format) -> shape, max, samples
local function parse_expected(text)
  local c, h, w, top, rest = text:match("^(%d+) (%d+) (%d+) (%d+)\n(.*)$")
  local samples = {}
  for v in rest:gmatch("%d+") do samples[#samples + 1] = tonumber(v) end
  return {tonumber(c), tonumber(h), tonumber(w)}, tonumber(top), samples
end

-- Exact comparison of a tensor with samples / top; returns the first mismatch.
local function mismatch(t, shape, top, samples)
  local got = t:shape()
  if #got ~= 3 or got[1] ~= shape[1] or got[2] ~= shape[2] or got[3] ~= shape[3] then
    return ("shape (%s), expected (%s)"):format(table.concat(got, ","), table.concat(shape, ","))
  end
  local flat = t:contiguous():view(t:numel()):totable()
  if #flat ~= #samples then return ("%d values, expected %d"):format(#flat, #samples) end
  for i, k in ipairs(samples) do
    if flat[i] ~= f32(k / top) then
      return ("value %d is %.9g, expected %d/%d = %.9g"):format(i, flat[i], k, top, f32(k / top))
    end
  end
  return nil
end

local dir

setup(function()
  dir = sh("mktemp -d"):gsub("%s+$", "")
  sh(("%s %s make %s %d"):format(PYTHON, HELPER, dir, seed))
end)

teardown(function()
  if dir and dir:match("^/tmp/") then os.execute("rm -rf '" .. dir .. "'") end
end)

before_each(function()
  dd.manual_seed(seed)
  math.randomseed(seed)
end)

describe("image.load", function()
  local cases = {
    -- name, colour reported, file bits, interlaced
    {"grey1", "grey", 1}, {"grey2", "grey", 2}, {"grey4", "grey", 4}, {"grey8", "grey", 8}, {"grey16", "grey", 16},
    {"grey_alpha8", "grey+alpha", 8}, {"grey_alpha16", "grey+alpha", 16},
    {"rgb8", "rgb", 8}, {"rgb16", "rgb", 16}, {"rgba8", "rgba", 8}, {"rgba16", "rgba", 16},
    {"palette1", "palette", 1}, {"palette2", "palette", 2}, {"palette4", "palette", 4}, {"palette8", "palette", 8},
    {"palette8_trns", "palette", 8}, {"palette2_trns", "palette", 2},
    {"grey8_trns", "grey", 8}, {"grey2_trns", "grey", 2}, {"grey16_trns", "grey", 16}, {"rgb8_trns", "rgb", 8},
    {"grey1_interlaced", "grey", 1, true}, {"grey8_interlaced", "grey", 8, true},
    {"rgb8_interlaced", "rgb", 8, true}, {"rgba16_interlaced", "rgba", 16, true},
    {"palette4_interlaced", "palette", 4, true}, {"tiny_interlaced", "rgba", 8, true},
    {"one_pixel", "rgb", 16, true},
  }
  for _, case in ipairs(cases) do
    local name, color, bits, interlaced = case[1], case[2], case[3], case[4] or false
    it("decodes " .. name .. " exactly", function()
      local shape, top, samples = parse_expected(slurp(dir .. "/" .. name .. ".txt"))
      local t, info = dd.image.load(dir .. "/" .. name .. ".png")
      local bad = mismatch(t, shape, top, samples)
      assert(bad == nil, name .. ": " .. tostring(bad))
      assert.equal(color, info.color)
      assert.equal(bits, info.bits)
      assert.equal(bits == 16 and 16 or 8, info.sample_bits)
      assert.equal(interlaced, info.interlaced)
    end)
  end

  it("expands palettes and colour keys as documented", function()
    -- the shapes spell out the channel rules: palette -> RGB, palette + tRNS -> RGBA,
    -- grey + key -> grey+alpha, RGB + key -> RGBA
    assert.same({3, 8, 12}, dd.image.load(dir .. "/palette8.png"):shape())
    assert.same({4, 8, 12}, dd.image.load(dir .. "/palette8_trns.png"):shape())
    assert.same({2, 8, 8}, dd.image.load(dir .. "/grey8_trns.png"):shape())
    assert.same({4, 6, 8}, dd.image.load(dir .. "/rgb8_trns.png"):shape())
    -- the colour key: transparent exactly where the pixel equals it (at least twice)
    local t = dd.image.load(dir .. "/grey8_trns.png")
    local alpha = t:select(1, 2)
    local zeros = alpha:eq(0):sum()
    assert.is_true(zeros >= 2)
    assert.equal(64, zeros + alpha:eq(1):sum())
  end)

  local broken = {
    {"bad_crc", "libpng: IDAT: CRC error"},
    {"bad_ihdr_crc", "libpng: IHDR: CRC error"},
    {"bad_idat", "libpng: IDAT: "},
    {"bad_zlib", "libpng: IDAT: incorrect header check"},
    {"truncated", "file is cut short"},
    {"no_iend", "file is cut short"},
    {"not_png", "not a PNG file"},
    {"empty", "not a PNG file"},
    {"missing", "cannot open: No such file or directory"},
  }
  for _, case in ipairs(broken) do
    it("reports " .. case[1] .. " with the path and the reason, and carries on", function()
      local path = dir .. "/" .. case[1] .. ".png"
      local err = error_of(dd.image.load, path)
      assert_contains(err, "image.load: '" .. path .. "': ")
      assert_contains(err, case[2])
      -- the process survives and the next load works
      local shape, top, samples = parse_expected(slurp(dir .. "/rgb8.txt"))
      assert.is_nil(mismatch(dd.image.load(dir .. "/rgb8.png"), shape, top, samples))
    end)
  end

  it("survives many failed loads (nothing leaks into later calls)", function()
    for _ = 1, 200 do
      pcall(dd.image.load, dir .. "/bad_crc.png")
      pcall(dd.image.load, dir .. "/truncated.png")
    end
    assert.same({3, 5, 11}, dd.image.load(dir .. "/rgb8.png"):shape())
  end)

  it("checks its arguments", function()
    assert_contains(error_of(dd.image.load, 42), "image.load: path must be a string, got number")
    assert_contains(error_of(dd.image.load), "image.load: expected (path), got 0 arguments")
    assert_contains(error_of(dd.image.load, dir), "image.load: '" .. dir .. "': cannot read")
  end)
end)

describe("image.save", function()
  -- random k / (2^bits - 1) values round-trip exactly
  local function levels(shape, top)
    return (dd.rand(table.unpack(shape)) * (top + 1)):floor():clamp(0, top) / top
  end

  for _, bits in ipairs{8, 16} do
    local top = (1 << bits) - 1
    for _, shape in ipairs{{1, 5, 7}, {2, 6, 3}, {3, 4, 9}, {4, 7, 5}, {6, 8}} do
      local name = ("%d-bit (%s)"):format(bits, table.concat(shape, ","))
      it("round-trips " .. name .. " exactly, and an independent decoder agrees", function()
        local t = levels(shape, top)
        local path = dir .. "/rt.png"
        dd.image.save(path, t, bits == 16 and {bits = 16} or nil)
        local back, info = dd.image.load(path)
        local want = #shape == 2 and t:view(1, shape[1], shape[2]) or t
        assert.same(want:shape(), back:shape())
        assert.equal(0, (back - want):abs():max())
        assert.equal(bits, info.bits)
        -- the file itself, decoded by make_pngs.py
        local dshape, dtop, samples = parse_expected(sh(("%s %s decode %s"):format(PYTHON, HELPER, path)))
        assert.equal(top, dtop)
        assert.is_nil(mismatch(want, dshape, dtop, samples))
      end)
    end
  end

  it("clamps to [0, 1] and rounds to the nearest level", function()
    local v = {-0.5, 0, 10.4 / 255, 10.6 / 255, 0.2, 1, 1.7, 254.5001 / 255}
    local want = {0, 0, 10, 11, 51, 255, 255, 255}
    local path = dir .. "/clamp.png"
    dd.image.save(path, dd.tensor{v})
    local back = dd.image.load(path):view(#v):totable()
    for i = 1, #v do assert.equal(f32(want[i] / 255), back[i]) end
  end)

  it("saves a strided view in logical order", function()
    local t = levels({5, 3}, 255)
    local path = dir .. "/view.png"
    dd.image.save(path, t:t())
    assert.equal(0, (dd.image.load(path):view(3, 5) - t:t()):abs():max())
  end)

  it("replaces a file atomically and keeps the old one when saving fails", function()
    local path = dir .. "/keep.png"
    local old = levels({3, 4, 4}, 255)
    dd.image.save(path, old)
    local before = slurp(path)
    local bad = levels({3, 4, 4}, 255)
    bad:set(2, 3, 4, 0 / 0)  -- found in the middle of writing the rows
    local err = error_of(dd.image.save, path, bad)
    assert_contains(err, "image.save: '" .. path .. "': value NaN at channel 2, row 3, column 4")
    assert.equal(before, slurp(path))
    -- no temporary file is left behind
    local listing = sh("ls -a " .. dir)
    assert.is_nil(listing:find(".keep.png.tmp", 1, true))
    -- a good save replaces it
    local new = levels({3, 4, 4}, 255)
    dd.image.save(path, new)
    assert.equal(0, (dd.image.load(path) - new):abs():max())
  end)

  it("names the path when the directory is missing", function()
    local err = error_of(dd.image.save, dir .. "/no/such/dir/x.png", dd.zeros(1, 2, 2))
    assert_contains(err, "image.save: ")
    assert_contains(err, dir .. "/no/such/dir/")
    assert_contains(err, "No such file or directory")
  end)

  it("checks its arguments", function()
    local p = dir .. "/args.png"
    assert_contains(error_of(dd.image.save, p, dd.zeros(5, 2, 2)),
      "image.save: image must be (C,H,W) with C in 1..4 or (H,W), got shape (5,2,2)")
    assert_contains(error_of(dd.image.save, p, dd.zeros(2)), "got shape (2,)")
    assert_contains(error_of(dd.image.save, p, dd.zeros(3, 0, 2)), "image.save: image is empty (shape (3,0,2))")
    assert_contains(error_of(dd.image.save, p, dd.zeros(2, 2), {bits = 12}),
      "image.save: option 'bits' must be 8 or 16, got 12")
    assert_contains(error_of(dd.image.save, p, dd.zeros(2, 2), {bit = 16}),
      "image.save: unknown option 'bit' (known: bits)")
    assert_contains(error_of(dd.image.save, p, "x"), "image.save: image must be a Tensor, got string")
    assert_contains(error_of(dd.image.save, 1, dd.zeros(2, 2)), "image.save: path must be a string, got number")
  end)
end)

describe("image.grid", function()
  it("tiles frames row by row with padding", function()
    -- three 1x2x2 frames, 2 columns, pad 1: (1, 2*(2+1)+1, 2*(2+1)+1) = (1, 7, 7)
    local f = {dd.full({1, 2, 2}, 0.1), dd.full({1, 2, 2}, 0.2), dd.full({1, 2, 2}, 0.3)}
    local g = dd.image.grid(f, {cols = 2, pad = 1, pad_value = 0.9})
    assert.same({1, 7, 7}, g:shape())
    local P, a, b, c = f32(0.9), f32(0.1), f32(0.2), f32(0.3)
    local want = {
      {P, P, P, P, P, P, P},
      {P, a, a, P, b, b, P},
      {P, a, a, P, b, b, P},
      {P, P, P, P, P, P, P},
      {P, c, c, P, P, P, P},
      {P, c, c, P, P, P, P},
      {P, P, P, P, P, P, P},
    }
    assert.same({want}, g:totable())
  end)

  it("defaults to a square-ish sheet with pad 2 of white", function()
    local f = {}
    for i = 1, 5 do f[i] = dd.zeros(3, 4, 6) end
    local g = dd.image.grid(f)  -- ceil(sqrt(5)) = 3 columns, 2 rows
    assert.same({3, 2 * (4 + 2) + 2, 3 * (6 + 2) + 2}, g:shape())
    assert.equal(1, g:max())
    assert.equal(5 * 3 * 4 * 6, g:eq(0):sum())
  end)

  it("promotes grey to RGB and adds an opaque alpha when mixed", function()
    local grey = dd.full({1, 2, 2}, 0.5)
    local rgb = dd.tensor{{{0.1, 0.1}, {0.1, 0.1}}, {{0.2, 0.2}, {0.2, 0.2}}, {{0.3, 0.3}, {0.3, 0.3}}}
    local g = dd.image.grid({grey, rgb, dd.zeros(2, 2)}, {cols = 3, pad = 0})
    assert.same({3, 2, 6}, g:shape())
    for c = 1, 3 do
      assert.equal(f32(0.5), g:get(c, 1, 1))
      assert.equal(f32(({0.1, 0.2, 0.3})[c]), g:get(c, 2, 4))
      assert.equal(0, g:get(c, 1, 6))
    end
    local rgba = dd.image.grid({grey, dd.full({4, 2, 2}, 0.25)}, {pad = 0})
    assert.same({4, 2, 4}, rgba:shape())
    assert.equal(1, rgba:get(4, 1, 1))   -- grey had no alpha: opaque
    assert.equal(0.25, rgba:get(4, 1, 3))
  end)

  it("accepts an (N,C,H,W) tensor", function()
    local batch = dd.rand(4, 1, 3, 3)
    local a = dd.image.grid(batch, {cols = 2})
    local list = {}
    for i = 1, 4 do list[i] = batch:select(1, i) end
    assert.equal(0, (a - dd.image.grid(list, {cols = 2})):abs():max())
  end)

  it("names the offending frame and shapes", function()
    assert_contains(error_of(dd.image.grid, {dd.zeros(3, 4, 4), dd.zeros(3, 4, 4), dd.zeros(3, 5, 4)}),
      "image.grid: frame 3 has shape (3,5,4) but frame 1 has shape (3,4,4)")
    assert_contains(error_of(dd.image.grid, {dd.zeros(3, 4, 4), "x"}), "image.grid: frame 2 must be a Tensor, got string")
    assert_contains(error_of(dd.image.grid, {dd.zeros(3, 4, 4), dd.zeros(5, 4, 4)}),
      "image.grid: frame 2 must be (C,H,W) with C in 1..4 or (H,W), got shape (5,4,4)")
    assert_contains(error_of(dd.image.grid, {}), "image.grid: no frames given")
    assert_contains(error_of(dd.image.grid, {dd.zeros(1, 2, 2)}, {padding = 1}),
      "image.grid: unknown option 'padding' (known: cols, pad, pad_value)")
    assert_contains(error_of(dd.image.grid, {dd.zeros(1, 2, 2)}, {cols = 0}),
      "image.grid: option 'cols' must be in [1, 1048576], got 0")
  end)
end)

describe("image.ascii and image.show", function()
  it("maps brightness onto the ramp, one character per cell", function()
    -- 2 rows x 10 columns, width 10: 1 text row (a character is two pixels tall)
    local row = {}
    for i = 0, 9 do row[#row + 1] = (i + 0.5) / 10 end
    local t = dd.tensor{row, row}
    assert.equal(" .:-=+*#%@\n", dd.image.ascii(t, {width = 10, mode = "plain"}))
  end)

  it("shrinks with area averaging to the width, keeping the aspect", function()
    -- 4x8 black left half, white right half; width 4 -> 4 columns, 4*4/8/2 = 1 row
    local t = dd.zeros(1, 4, 8)
    t:narrow(3, 5, 4):fill(1)
    assert.equal("  @@\n", dd.image.ascii(t, {width = 4, mode = "plain"}))
    -- never enlarges
    assert.equal("  @@\n", dd.image.ascii(dd.tensor{{0, 0, 1, 1}, {0, 0, 1, 1}}, {width = 50, mode = "plain"}))
  end)

  it("draws upper-half blocks in 24-bit colour", function()
    -- (3, 2, 1): red over blue, one cell
    local t = dd.tensor{{{1}, {0}}, {{0}, {0}}, {{0}, {1}}}
    assert.equal("\27[38;2;255;0;0m\27[48;2;0;0;255m\u{2580}\27[0m\n", dd.image.ascii(t, {mode = "truecolor"}))
    -- an odd last row keeps the terminal's background; alpha composites over white
    local ga = dd.tensor{{{0}}, {{0.5}}}  -- grey 0 at half opacity -> 0.5
    assert.equal("\27[38;2;128;128;128m\27[49m\u{2580}\27[0m\n", dd.image.ascii(ga, {mode = "truecolor"}))
  end)

  it("show prints what ascii returns", function()
    local script = dir .. "/show.lua"
    spit(script, [[
      local t = dd.tensor{{0, 0.3, 0.6, 0.95}, {0.1, 0.4, 0.7, 1}}
      io.write("[", dd.image.ascii(t, {width = 4, mode = "plain"}), "]")
      io.flush()
      io.write("[") io.flush()
      local r = dd.image.show(t, {width = 4, mode = "plain"})
      io.write("]", tostring(r))
    ]])
    local out = sh("./deepdance " .. script)
    local a, b, r = out:match("^%[(.-)%]%[(.-)%](.*)$")
    assert.is_not_nil(a, out)
    assert.equal(a, b)
    assert.equal("nil", r)
  end)

  it("checks its arguments", function()
    assert_contains(error_of(dd.image.ascii, dd.zeros(1, 2, 2), {mode = "sixel"}),
      "image.ascii: option 'mode' must be one of 'auto', 'truecolor', 'plain', got 'sixel'")
    assert_contains(error_of(dd.image.show, dd.zeros(1, 2, 2), {width = 0}),
      "image.show: option 'width' must be in [1, 100000], got 0")
    assert_contains(error_of(dd.image.ascii, dd.zeros(1, 2, 2), {colour = true}),
      "image.ascii: unknown option 'colour' (known: width, mode)")
    assert_contains(error_of(dd.image.show, dd.zeros(2, 2, 2, 2)), "image.show: image must be (C,H,W)")
  end)
end)

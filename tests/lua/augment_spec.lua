-- augment_spec.lua: dd.vision.flip_shift against a plain Lua loop, and
-- dd.data.augment (draws from dd's generator, leaves samples past only_first
-- alone, strict options).
local helpers = dofile("tests/lua/support/helpers.lua")
local error_of, assert_contains = helpers.error_of, helpers.assert_contains
local seed = tonumber(os.getenv("DD_TEST_SEED") or "1234")
print("# augment_spec seed: " .. seed)

-- out[c][r][j] = in[c][r - dy][src(j - dx)] or fill, src(k) = flip and W+1-k or k (1-based)
local function reference(x, flip, dx, dy, fill)
  local C, H, W = x:size(1), x:size(2), x:size(3)
  local out = dd.zeros(C, H, W)
  for c = 1, C do
    for r = 1, H do
      for j = 1, W do
        local sr, sj = r - dy, j - dx
        local v = fill
        if sr >= 1 and sr <= H and sj >= 1 and sj <= W then v = x:get(c, sr, flip and W + 1 - sj or sj) end
        out:set(c, r, j, v)
      end
    end
  end
  return out
end

describe("dd.vision.flip_shift", function()
  it("matches a plain loop for every flip and shift, per image", function()
    dd.manual_seed(seed)
    local x = dd.rand(4, 2, 5, 7)
    local cases = { { false, 0, 0 }, { true, 0, 0 }, { false, 3, -2 }, { true, -7, 5 } }
    local flips, dxs, dys = {}, {}, {}
    for i, c in ipairs(cases) do flips[i], dxs[i], dys[i] = c[1], c[2], c[3] end
    local y = dd.vision.flip_shift(x, { flip = flips, dx = dxs, dy = dys, fill = 0.25 })
    for i, c in ipairs(cases) do
      assert.equal(0, (y[i] - reference(x[i], c[1], c[2], c[3], 0.25)):abs():max(), "image " .. i)
    end
    -- one value for all, 3-d and 2-d images, a non-contiguous input
    local one = dd.vision.flip_shift(x, { flip = true, dx = 1 })
    for i = 1, 4 do assert.equal(0, (one[i] - reference(x[i], true, 1, 0, 1)):abs():max()) end
    assert.equal(0, (dd.vision.flip_shift(x[2], { dy = 2 }) - reference(x[2], false, 0, 2, 1)):abs():max())
    local plane = dd.vision.flip_shift(x[1][1], { flip = 1 })
    assert.same({ 5, 7 }, plane:shape())
    local t = x:transpose(3, 4)
    assert.equal(0, (dd.vision.flip_shift(t, { dx = 2 }) - dd.vision.flip_shift(t:contiguous(), { dx = 2 })):abs():max())
    -- the input is left alone
    assert.equal(0, (dd.vision.flip_shift(x) - x):abs():max())
  end)

  it("refuses bad arguments, naming the option, the expected and the actual value", function()
    local x = dd.zeros(2, 1, 3, 4)
    assert_contains(error_of(dd.vision.flip_shift, x, { dx = 5 }), "option 'dx' must be in [-4, 4], got 5")
    assert_contains(error_of(dd.vision.flip_shift, x, { dy = { 1 } }), "option 'dy' lists 1 values for 2 images")
    assert_contains(error_of(dd.vision.flip_shift, x, { dx = 0.5 }), "option 'dx' must be an integer, got 0.5")
    assert_contains(error_of(dd.vision.flip_shift, x, { flip = { true, "no" } }), "option 'flip' (an entry) must be a boolean (or 0/1)")
    assert_contains(error_of(dd.vision.flip_shift, x, { flip = 2 }), "option 'flip' must be in [0, 1], got 2")
    assert_contains(error_of(dd.vision.flip_shift, x, { shift = 1 }), "unknown option 'shift' (known: flip, dx, dy, fill)")
    assert_contains(error_of(dd.vision.flip_shift, x, 3), "vision.flip_shift: opts must be a table, got number")
    assert_contains(error_of(dd.vision.flip_shift, "x"), "input must be a Tensor, got string")
    assert_contains(error_of(dd.vision.flip_shift, dd.zeros(3)), "must be (H,W), (C,H,W) or (N,C,H,W), got shape (3,)")
  end)
end)

describe("dd.data.augment", function()
  local source = {
    size = function() return 6 end,
    batch = function(_, idx)
      local b = dd.zeros(#idx, 1, 4, 10)
      -- column 4 marks sample i; mirrored it is column 7, and shifts of 2 keep both inside
      for k, i in ipairs(idx) do b[k]:fill(1):narrow(3, 4, 1):fill(i / 10) end
      return b
    end,
  }

  it("mirrors and shifts the first only_first samples with draws from dd's generator", function()
    local aug = dd.data.augment(source, { flip = true, shift_x = 2, shift_y = 1, only_first = 4 })
    assert.equal(6, aug:size())
    dd.manual_seed(seed)
    local a = aug:batch({ 1, 2, 3, 4, 5, 6 })
    dd.manual_seed(seed)
    local b = aug:batch({ 1, 2, 3, 4, 5, 6 })
    assert.equal(0, (a - b):abs():max()) -- the same seed, the same augmentation
    local plain = source:batch({ 5, 6 })
    assert.equal(0, (a:narrow(1, 5, 2) - plain):abs():max()) -- past only_first: untouched
    -- over many draws every sample is sometimes moved or mirrored, and the marked column keeps its value
    local moved = 0
    for _ = 1, 20 do
      local x = aug:batch({ 1, 2, 3, 4 })
      local orig = source:batch({ 1, 2, 3, 4 })
      for k = 1, 4 do
        if (x[k] - orig[k]):abs():max() > 0 then moved = moved + 1 end
        assert.near(k / 10, x[k]:min(), 1e-7)
      end
    end
    assert(moved > 40, "only " .. moved .. " of 80 samples changed")
    -- no options: the batches of the source itself
    assert.equal(0, (dd.data.augment(source):batch({ 3 }) - source:batch({ 3 })):abs():max())
  end)

  it("draws for the augmented samples only: a validation batch leaves the generator alone", function()
    local aug = dd.data.augment(source, { flip = true, shift_x = 2, only_first = 4 })
    dd.manual_seed(seed)
    local before = dd.rng_state()
    aug:batch({ 5, 6 })
    assert.equal(before, dd.rng_state())
    -- a mixed batch draws what the augmented samples alone would
    dd.manual_seed(seed)
    local mixed = aug:batch({ 5, 2, 6, 3 })
    local after_mixed = dd.rng_state()
    dd.manual_seed(seed)
    local alone = aug:batch({ 2, 3 })
    assert.equal(after_mixed, dd.rng_state())
    assert.equal(0, (mixed[2] - alone[1]):abs():max())
    assert.equal(0, (mixed[4] - alone[2]):abs():max())
  end)

  it("checks its source and options", function()
    assert_contains(error_of(dd.data.augment, 5), "dd.data.augment: source must be a dataset with size() and batch(indices)")
    assert_contains(error_of(dd.data.augment, source, { flip = "yes" }), "option 'flip' must be a boolean, got 'yes'")
    assert_contains(error_of(dd.data.augment, source, { shift_x = -1 }), "option 'shift_x' must be an integer >= 0, got -1")
    assert_contains(error_of(dd.data.augment, source, { only_first = 7 }), "only_first (7) is beyond the source's 6 samples")
    assert_contains(error_of(dd.data.augment, source, { mirror = true }), "unknown option 'mirror'")
  end)
end)

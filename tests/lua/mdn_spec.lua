-- mdn_spec.lua: dd.nn.MDN from Lua: sizes, the raw output layout, sampling,
-- the mixture mean and error messages. The loss and the sampling statistics
-- are checked in tests/c/test_mdn.c.
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/mdn_spec.lua

local SEED = tonumber(os.getenv("DD_TEST_SEED") or "") or 1234
print("# mdn_spec: seed " .. SEED .. " (DD_TEST_SEED)")

local helpers = dofile("tests/lua/support/helpers.lua")
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains
local max_diff = helpers.max_diff

local function shape_str(t)
  return table.concat(t:shape(), "x")
end

-- K = 3 mixtures over D = 2 dimensions, two rows, written out by hand:
-- [3 logits | 3 x 2 means | 3 x 2 log sigmas]
local OUT = {
  {0.1, 2.0, -1.0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0},
  {1.0, 0.5, 1.0, 7, 8, 9, 10, 11, 12, -1, -1, -1, -1, -1, -1},
}

describe("dd.nn.MDN", function()
  before_each(function()
    dd.manual_seed(SEED)
  end)

  it("is a Linear map to K*(1+2D) raw outputs", function()
    local m = dd.nn.MDN{16, 2, 3}
    assert.are.equal(15 * (16 + 1), m:num_parameters())
    assert.are.equal("15x16", shape_str(m.weight))
    assert.are.equal("15", shape_str(m.bias))
    local x = dd.randn(4, 16)
    local y = m:forward(x)
    assert.are.equal("4x15", shape_str(y))
    local lin = dd.nn.Linear{16, 15}
    lin:load_state_dict(m:state_dict())
    assert.is_true(max_diff(y, lin:forward(x)) < 1e-6)
    assert.are.equal("4x16", shape_str(m:backward(x, dd.randn(4, 15))))
    -- (..., in) works like Linear
    assert.are.equal("2x3x15", shape_str(m:forward(dd.randn(2, 3, 16))))
  end)

  it("min_sigma floors the log sigmas smoothly: log(min_sigma + exp(raw)), the rest untouched", function()
    local K, D, f = 3, 2, 0.2
    local m = dd.nn.MDN{6, D, K, min_sigma = f}
    local lin = dd.nn.Linear{6, K * (1 + 2 * D)}
    lin:load_state_dict(m:state_dict())
    local x = dd.randn(5, 6) * 4
    local raw, y = lin:forward(x):clone(), m:forward(x)
    for r = 1, 5 do
      for i = 1, K * (1 + 2 * D) do
        local want = raw:get(r, i)
        if i > K * (1 + D) then want = math.log(f + math.exp(want)) end
        assert(math.abs(y:get(r, i) - want) <= 1e-5 * (1 + math.abs(want)), ("out[%d][%d]"):format(r, i))
      end
    end
    -- backward: the linear map's gradients of dy scaled by exp(raw) / (f + exp(raw)) on the log sigmas
    local dy = dd.randn(5, K * (1 + 2 * D))
    local dz = dy:clone()
    for r = 1, 5 do
      for i = K * (1 + D) + 1, K * (1 + 2 * D) do
        local e = math.exp(raw:get(r, i))
        dz:set(r, i, dy:get(r, i) * e / (f + e))
      end
    end
    m:zero_grad()
    lin:zero_grad()
    local dx = m:backward(x, dy):clone()
    assert.is_true(max_diff(dx, lin:backward(x, dz)) < 1e-5)
    assert.is_true(max_diff(m:parameters()[1].grad, lin:parameters()[1].grad) < 1e-4)
    assert.are.equal("MDN(6, 2, 3, min_sigma=0.2)", tostring(m))
    assert_contains(error_of(function() dd.nn.MDN{4, 2, 3, min_sigma = -1} end), "min_sigma must be in [0, 1000], got -1")
  end)

  describe("sample", function()
    it("at temperature 0 returns the most probable component's mean (first on ties)", function()
      local m = dd.nn.MDN{4, 2, 3}
      local y = m:sample(dd.tensor(OUT), 0)
      assert.are.equal("2x2", shape_str(y))
      assert.are.equal(0, max_diff(y, dd.tensor{{3, 4}, {7, 8}}))
    end)

    it("repeats under dd.manual_seed and moves with the temperature", function()
      local m = dd.nn.MDN{4, 2, 3}
      local out = dd.tensor(OUT)
      dd.manual_seed(11)
      local a = m:sample(out, 1.0)
      dd.manual_seed(11)
      local b = m:sample(out)  -- the default temperature is 1
      assert.are.equal(0, max_diff(a, b))
      assert.is_true(max_diff(m:sample(out, 1.0), a) > 0)
    end)

    it("draws around mu with spread sigma * sqrt(T) (K = 1)", function()
      local m = dd.nn.MDN{4, 1, 1}
      local n = 20000
      local out = dd.zeros(n, 3)
      out:narrow(2, 2, 1):fill(2.5)                 -- mu
      out:narrow(2, 3, 1):fill(math.log(0.8))       -- log sigma
      local y = m:sample(out, 0.25)
      local mean = y:mean()
      local sd = math.sqrt(((y - mean) * (y - mean)):sum() / (n - 1))
      -- sd of the mean 0.4/141 = 0.003; relative sd of sd 0.5%
      assert(math.abs(mean - 2.5) < 0.02, "mean " .. mean)
      assert(math.abs(sd - 0.4) < 0.02, "std " .. sd)
      -- a sigma temperature of its own: the spread is sigma * sqrt(sigma_temperature)
      local z = m:sample(out, 1, 0.04)
      local zm = z:mean()
      local zsd = math.sqrt(((z - zm) * (z - zm)):sum() / (n - 1))
      assert(math.abs(zm - 2.5) < 0.01, "mean " .. zm)
      assert(math.abs(zsd - 0.16) < 0.008, "std with sigma_temperature 0.04: " .. zsd)
    end)
  end)

  it("mean is sum_k softmax(logits)_k mu_k", function()
    local m = dd.nn.MDN{4, 2, 3}
    local y = m:mean(dd.tensor(OUT))
    for r = 1, 2 do
      local l = OUT[r]
      local z = math.exp(l[1]) + math.exp(l[2]) + math.exp(l[3])
      for e = 1, 2 do
        local want = 0
        for k = 1, 3 do want = want + math.exp(l[k]) / z * l[3 + (k - 1) * 2 + e] end
        assert(math.abs(y:get(r, e) - want) < 1e-5, ("mean[%d][%d] = %g, want %g"):format(r, e, y:get(r, e), want))
      end
    end
  end)

  describe("errors", function()
    it("name the expected width K*(1+2D) and the actual one", function()
      local m = dd.nn.MDN{4, 2, 3}
      local err = error_of(function() m:sample(dd.zeros(2, 14), 1) end)
      assert_contains(err, "MDN: sample: out of shape (2,14) must be (batch, 15): K*(1+2D) with K=3 mixtures, D=2, got width 14")
      assert_contains(error_of(function() m:mean(dd.zeros(15)) end), "mean: out of shape (15,) must be 2-d (batch, 15)")
    end)

    it("refuse a negative or non-numeric temperature", function()
      local m = dd.nn.MDN{4, 2, 3, name = "head"}
      local out = dd.tensor(OUT)
      assert_contains(error_of(function() m:sample(out, -1) end),
        "MDN 'head': sample: temperature must be a finite number >= 0, got -1")
      assert_contains(error_of(function() m:sample(out, "hot") end), "temperature must be a number, got string")
      assert_contains(error_of(function() m:sample(out, 1, -0.5) end),
        "MDN 'head': sample: sigma_temperature must be a finite number >= 0, got -0.5")
      assert_contains(error_of(function() m:sample(out, 1, "low") end), "sigma_temperature must be a number, got string")
    end)

    it("check the options and the input", function()
      assert_contains(error_of(function() dd.nn.MDN{4, 0, 3} end), "out_features and mixtures must be >= 1")
      assert_contains(error_of(function() dd.nn.MDN{4, 2} end), "option 'mixtures' is required")
      assert_contains(error_of(function() dd.nn.MDN{4, 2, 3}:forward(dd.randn(2, 5)) end), "must have 4 features")
    end)
  end)
end)

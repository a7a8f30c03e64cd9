-- loss_spec.lua: dd.nn.MSELoss, dd.nn.BCELoss, dd.nn.MDNLoss through their
-- bindings: hand-computed numbers, gradients, the owned gradient buffer, and
-- error messages. The kernels' own tests are in tests/c/test_loss.c.
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/loss_spec.lua
local seed = tonumber(os.getenv("DD_TEST_SEED") or "1234")
print("# loss_spec seed: " .. seed)

local helpers = dofile("tests/lua/support/helpers.lua")
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains

local function assert_close(a, b, tol, what)
  a, b = a:contiguous():view(-1):totable(), b:contiguous():view(-1):totable()
  assert.equal(#b, #a, what)
  for i = 1, #a do
    if math.abs(a[i] - b[i]) > tol * (1 + math.abs(b[i])) then
      error(("%s: element %d is %.9g, expected %.9g"):format(what or "tensor", i, a[i], b[i]), 2)
    end
  end
end

local function f32(x) return (string.unpack("<f", string.pack("<f", x))) end

-- Central differences of loss:forward at every element of y (float32 steps).
local function numeric_grad(loss, y, t, h)
  local g = dd.zeros(table.unpack(y:shape()))
  local yf, gf = y:view(-1), g:view(-1)
  for i = 1, yf:numel() do
    local v = yf:get(i)
    yf:set(i, v + h)
    local up, hu = loss:forward(y, t), yf:get(i) - v
    yf:set(i, v - h)
    local down, hd = loss:forward(y, t), v - yf:get(i)
    yf:set(i, v)
    gf:set(i, (up - down) / (hu + hd))
  end
  return g
end

before_each(function() dd.manual_seed(seed) end)

describe("MSELoss", function()
  local y = dd.tensor{{1, 2}, {3, 4}}
  local t = dd.tensor{{0, 2}, {5, 4}}

  it("computes mean and sum by hand", function()
    assert.near(1.25, dd.nn.MSELoss():forward(y, t), 1e-12)        -- (1 + 0 + 4 + 0) / 4
    assert.near(5, dd.nn.MSELoss{ reduction = "sum" }:forward(y, t), 1e-12)
    assert.near(1.25, dd.nn.MSELoss()(y, t), 1e-12)                -- callable
  end)

  it("backward gives 2 (y - t) [/ n]", function()
    assert.same({{0.5, 0}, {-1, 0}}, dd.nn.MSELoss():backward(y, t):totable())
    assert.same({{2, 0}, {-4, 0}}, dd.nn.MSELoss{ reduction = "sum" }:backward(y, t):totable())
  end)

  it("matches finite differences", function()
    local yy, tt = dd.randn(3, 4), dd.randn(3, 4)
    local loss = dd.nn.MSELoss()
    assert_close(loss:backward(yy, tt), numeric_grad(loss, yy, tt, 1e-2), 1e-3, "MSE gradient")
  end)

  it("returns its own buffer, reused while the shape stays", function()
    local loss = dd.nn.MSELoss()
    local d1 = loss:backward(y, t)
    local d2 = loss:backward(y * 2, t)
    assert.equal(d1, d2)                            -- the same Tensor object, overwritten
    assert.same({{1, 1}, {0.5, 2}}, d1:totable())
    assert.equal(d1, loss.grad)
    local d3 = loss:backward(dd.zeros(3), dd.ones(3))
    assert.are_not.equal(d1, d3)
    assert.same({3}, d3:shape())
  end)

  it("accepts non-contiguous inputs", function()
    local a, b = dd.randn(3, 5), dd.randn(5, 3)
    local loss = dd.nn.MSELoss()
    assert.near(loss:forward(a:t():contiguous(), b), loss:forward(a:t(), b), 1e-12)
  end)

  it("names both shapes when they differ, and checks options", function()
    local err = error_of(dd.nn.MSELoss().forward, dd.nn.MSELoss(), dd.zeros(2, 3), dd.zeros(3, 2))
    assert_contains(err, "MSELoss:forward: prediction has shape (2,3) but target has shape (3,2)")
    err = error_of(dd.nn.MSELoss().backward, dd.nn.MSELoss(), dd.zeros(4), dd.zeros(4, 1))
    assert_contains(err, "MSELoss:backward: prediction has shape (4,) but target has shape (4,1)")
    assert_contains(error_of(dd.nn.MSELoss().forward, dd.nn.MSELoss(), {}, dd.zeros(1)), "prediction (argument 1) must be a Tensor, got table")
    assert_contains(error_of(dd.nn.MSELoss, { reduce = "sum" }), "MSELoss: unknown option 'reduce' (known: reduction)")
    assert_contains(error_of(dd.nn.MSELoss, { reduction = "none" }), "option 'reduction' must be 'mean' or 'sum', got 'none'")
    assert_contains(error_of(function() dd.nn.MSELoss().reduction = "sum" end), "cannot be assigned")
    assert.equal("mean", dd.nn.MSELoss().reduction)
    assert.equal("MSELoss", dd.nn.MSELoss().kind)
  end)
end)

describe("BCELoss", function()
  it("computes the mean by hand", function()
    local y, t = dd.tensor{0.8, 0.1}, dd.tensor{1, 0}
    local want = -(math.log(f32(0.8)) + math.log(1 - f32(0.1))) / 2
    assert.near(want, dd.nn.BCELoss():forward(y, t), 1e-12)
    assert.near(want * 2, dd.nn.BCELoss{ reduction = "sum" }:forward(y, t), 1e-12)
    -- grey targets: -(0.3 log 0.6 + 0.7 log 0.4)
    local g = dd.nn.BCELoss():forward(dd.tensor{0.6}, dd.tensor{0.3})
    assert.near(-(f32(0.3) * math.log(f32(0.6)) + (1 - f32(0.3)) * math.log(1 - f32(0.6))), g, 1e-12)
  end)

  it("clips predictions to [eps, 1 - eps] (Keras) and the gradient is 0 there", function()
    local loss = dd.nn.BCELoss()
    assert.near(-math.log(f32(1e-7)), loss:forward(dd.tensor{0}, dd.tensor{1}), 1e-9)
    assert.near(-math.log(f32(1e-7)), loss:forward(dd.tensor{1}, dd.tensor{0}), 1e-6)
    assert.near(-math.log(0.1), dd.nn.BCELoss{ eps = 0.1 }:forward(dd.tensor{0.02}, dd.tensor{1}), 1e-7)
    assert.same({0, 0, 0}, loss:backward(dd.tensor{0, 1, -3}, dd.tensor{1, 0, 0.5}):totable())
  end)

  it("backward gives (p - t) / (p (1 - p)) / n and matches finite differences", function()
    local d = dd.nn.BCELoss():backward(dd.tensor{0.8, 0.1}, dd.tensor{1, 0})
    assert_close(d, dd.tensor{(0.8 - 1) / (0.8 * 0.2) / 2, 0.1 / (0.1 * 0.9) / 2}, 1e-6, "by hand")
    local y = dd.rand(4, 3) * 0.9 + 0.05
    local t = dd.rand(4, 3)
    local loss = dd.nn.BCELoss()
    assert_close(loss:backward(y, t), numeric_grad(loss, y, t, 1e-3), 2e-3, "BCE gradient")
  end)

  it("checks shapes and options", function()
    assert_contains(error_of(dd.nn.BCELoss().forward, dd.nn.BCELoss(), dd.zeros(2), dd.zeros(3)),
      "BCELoss:forward: prediction has shape (2,) but target has shape (3,)")
    assert_contains(error_of(dd.nn.BCELoss, { epsilon = 1e-7 }), "BCELoss: unknown option 'epsilon' (known: reduction, eps)")
    assert_contains(error_of(dd.nn.BCELoss, { eps = 0.5 }), "option 'eps' must be in [0, 0.5)")
    assert_contains(error_of(dd.nn.BCELoss, "sum"), "BCELoss: expected an options table, got string")
    assert.near(1e-7, dd.nn.BCELoss().eps, 1e-13)
  end)
end)

describe("DiceLoss", function()
  -- The definition as a plain loop in double, per sample (the first dimension).
  local function dice_ref(y, t, fg, smooth)
    local n = y:size(1)
    local yf, tf = y:contiguous():view(n, -1):totable(), t:contiguous():view(n, -1):totable()
    local total = 0
    for s = 1, n do
      local i, sum = 0, 0
      for k = 1, #yf[s] do
        local p, g = yf[s][k], tf[s][k]
        if fg == 0 then p, g = 1 - p, 1 - g end
        i, sum = i + p * g, sum + p + g
      end
      total = total + 1 - (2 * i + smooth) / (sum + smooth)
    end
    return total / n, total
  end

  it("computes the score by hand: a perfect match is 0, no overlap is near 1", function()
    local t = dd.tensor{ { 1, 1, 0, 0 } }
    assert.near(0, dd.nn.DiceLoss():forward(t, t), 1e-12)
    assert.near(1 - 1 / 5, dd.nn.DiceLoss():forward(dd.tensor{ { 0, 0, 1, 1 } }, t), 1e-12)
    -- dark foreground: the zeros of t are the shape
    assert.near(0, dd.nn.DiceLoss{ foreground = 0 }:forward(t, t), 1e-12)
    assert.near(1 - (2 * 0.5 + 1) / (0.5 + 2 + 1), dd.nn.DiceLoss{ foreground = 0 }:forward(dd.tensor{ { 1, 1, 0.5, 1 } }, t), 1e-7)
  end)

  it("matches a reference loop, per sample, mean and sum, both foregrounds", function()
    local y, t = dd.rand(4, 1, 5, 6), (dd.rand(4, 1, 5, 6) - 0.6):sign() * 0.5 + 0.5
    for _, fg in ipairs({ 0, 1 }) do
      for _, smooth in ipairs({ 1, 0.01 }) do
        local mean, sum = dice_ref(y, t, fg, smooth)
        assert.near(mean, dd.nn.DiceLoss{ foreground = fg, smooth = smooth }:forward(y, t), 1e-6)
        assert.near(sum, dd.nn.DiceLoss{ foreground = fg, smooth = smooth, reduction = "sum" }:forward(y, t), 1e-5)
      end
    end
  end)

  it("backward matches finite differences", function()
    local y, t = dd.rand(3, 2, 4), (dd.rand(3, 2, 4) - 0.5):sign() * 0.5 + 0.5
    for _, fg in ipairs({ 0, 1 }) do
      local loss = dd.nn.DiceLoss{ foreground = fg }
      assert_close(loss:backward(y, t), numeric_grad(loss, y, t, 1e-3), 2e-3, "Dice gradient, foreground " .. fg)
    end
  end)

  it("checks shapes and options", function()
    local l = dd.nn.DiceLoss()
    assert_contains(error_of(l.forward, l, dd.zeros(2, 3), dd.zeros(3, 2)), "DiceLoss:forward: prediction has shape (2,3) but target has shape (3,2)")
    assert_contains(error_of(l.forward, l, dd.zeros(0, 3), dd.zeros(0, 3)), "first (sample) dimension of at least 1")
    assert_contains(error_of(dd.nn.DiceLoss, { foreground = 2 }), "option 'foreground' must be 1 (high values) or 0 (low values), got 2")
    assert_contains(error_of(dd.nn.DiceLoss, { smooth = 0 }), "option 'smooth' must be a positive number, got 0")
    assert_contains(error_of(dd.nn.DiceLoss, { smoth = 1 }), "DiceLoss: unknown option 'smoth' (known: reduction, smooth, foreground)")
    assert.equal("DiceLoss(reduction='mean', smooth=1, foreground=0)", tostring(dd.nn.DiceLoss{ foreground = 0 }))
    assert.equal(0, dd.nn.DiceLoss{ foreground = 0 }.foreground)
  end)
end)

describe("SumLoss", function()
  it("adds weighted values and gradients of its losses", function()
    local y, t = dd.rand(3, 1, 4, 5) * 0.9 + 0.05, (dd.rand(3, 1, 4, 5) - 0.5):sign() * 0.5 + 0.5
    local bce, dice = dd.nn.BCELoss(), dd.nn.DiceLoss{ foreground = 0 }
    local l = dd.nn.SumLoss{ bce, dice, weights = { 1, 0.25 } }
    assert.near(bce:forward(y, t) + 0.25 * dice:forward(y, t), l:forward(y, t), 1e-12)
    assert_close(l:backward(y, t), bce:backward(y, t):clone() + dice:backward(y, t) * 0.25, 1e-7, "gradient")
    assert_close(l:backward(y, t), numeric_grad(l, y, t, 1e-3), 3e-3, "finite differences")
    assert.equal("SumLoss(MSELoss(reduction='mean') + 2 * MSELoss(reduction='sum'))",
      tostring(dd.nn.SumLoss{ dd.nn.MSELoss(), dd.nn.MSELoss{ reduction = "sum" }, weights = { 1, 2 } }))
  end)

  it("refuses what is not a loss, bad weights and unknown options", function()
    assert_contains(error_of(dd.nn.SumLoss, {}), "SumLoss: expected at least one loss")
    assert_contains(error_of(dd.nn.SumLoss, { dd.nn.MSELoss(), 3 }), "SumLoss: entry 2 is not a loss (forward, backward), got number")
    assert_contains(error_of(dd.nn.SumLoss, { dd.nn.MSELoss(), weights = { "x" } }), "SumLoss: weight 1 must be a number, got x")
    assert_contains(error_of(dd.nn.SumLoss, { dd.nn.MSELoss(), weights = { 1, 2 } }), "SumLoss: 2 weights for 1 losses")
    assert_contains(error_of(dd.nn.SumLoss, { dd.nn.MSELoss(), weight = { 1 } }), "SumLoss: unknown option 'weight'")
  end)
end)

describe("MDNLoss", function()
  local half_log_2pi = 0.5 * math.log(2 * math.pi)

  it("computes the NLL of a one-component Gaussian by hand", function()
    local loss = dd.nn.MDNLoss{ mixtures = 1 }
    -- K = 1, D = 1: [logit | mu | log sigma]
    assert.near(half_log_2pi, loss:forward(dd.tensor{{0, 0, 0}}, dd.tensor{{0}}), 1e-7)
    assert.near(half_log_2pi + 0.5, loss:forward(dd.tensor{{5, 0, 0}}, dd.tensor{{1}}), 1e-7)
    -- sigma = e: z = 1/e, -log N = 0.5 z^2 + 1 + 0.5 log 2 pi; mean over 2 samples
    local y = dd.tensor{{0, 0, 1}, {0, 2, 0}}
    local want = ((0.5 * math.exp(-2) + 1 + half_log_2pi) + (half_log_2pi)) / 2
    assert.near(want, loss:forward(y, dd.tensor{{1}, {2}}), 1e-6)
  end)

  it("two equal components give the same NLL as one", function()
    local one = dd.nn.MDNLoss{ mixtures = 1 }:forward(dd.tensor{{0, 0.5, -0.3}}, dd.tensor{{0.2}})
    local two = dd.nn.MDNLoss{ mixtures = 2 }:forward(dd.tensor{{1, 1, 0.5, 0.5, -0.3, -0.3}}, dd.tensor{{0.2}})
    assert.near(one, two, 1e-6)
  end)

  it("backward matches finite differences and does not accumulate across calls", function()
    local k, d = 3, 2
    local y = dd.randn(4, k * (1 + 2 * d)) * 0.5
    local t = dd.randn(4, d)
    local loss = dd.nn.MDNLoss{ mixtures = k }
    local g1 = loss:backward(y, t):clone()
    local g2 = loss:backward(y, t)
    assert.same(g1:totable(), g2:totable())
    assert_close(g1, numeric_grad(loss, y, t, 1e-2), 5e-3, "MDN gradient")
  end)

  it("requires mixtures and names the expected width", function()
    assert_contains(error_of(dd.nn.MDNLoss), "MDNLoss: option 'mixtures' (the number of components K) is required")
    assert_contains(error_of(dd.nn.MDNLoss, { mixtures = 2, dims = 3 }), "unknown option 'dims' (known: mixtures)")
    assert_contains(error_of(dd.nn.MDNLoss, { mixtures = 0 }), "option 'mixtures' must be in [1,")
    local loss = dd.nn.MDNLoss{ mixtures = 2 }
    assert_contains(error_of(loss.forward, loss, dd.zeros(4, 13), dd.zeros(4, 3)),
      "prediction (4,13) has width 13, expected K*(1+2D) = 2*(1+2*3) = 14 for mixtures=2 and a target of width D=3")
    assert_contains(error_of(loss.backward, loss, dd.zeros(4, 14), dd.zeros(5, 3)),
      "MDNLoss:backward: prediction (4,14) and target (5,3) must be (N, K*(1+2D)) and (N, D)")
    assert.equal(2, loss.mixtures)
    assert.equal("MDNLoss(mixtures=2)", tostring(loss))
  end)
end)

-- batchnorm_spec.lua: BatchNorm1d and BatchNorm2d through Lua: forward and
-- backward in training and evaluation against loops written here (in
-- double precision), the running statistics, buffers in state_dict but not
-- in parameters(), thread-count independence, a checkpoint round trip, and
-- the text of every error. Finite differences: gradcheck_cases.lua;
-- PyTorch: fixtures_spec.lua.
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/batchnorm_spec.lua

local SEED = math.tointeger(tonumber(os.getenv("DD_TEST_SEED") or "1234")) or 1234
print("# batchnorm_spec: seed " .. SEED .. " (DD_TEST_SEED)")

local nn = dd.nn
local helpers = dofile("tests/lua/support/helpers.lua")
local error_of, assert_contains = helpers.error_of, helpers.assert_contains

local function flat(t) return t:contiguous():view(-1):totable() end

local ACT = {
  linear = { f = function(z) return z end, d = function() return 1 end },
  relu = { f = function(z) return z > 0 and z or 0 end, d = function(y) return y > 0 and 1 or 0 end },
  tanh = { f = math.tanh or function(z) local e = math.exp(2 * z) return (e - 1) / (e + 1) end,
           d = function(y) return 1 - y * y end },
}

-- The layer's whole contract by loops over (N, C, S): returns y, dx, dgamma,
-- dbeta, running mean and variance after the call.
local function reference(x, dy, g, b, rm, rv, o)
  local shape = x:shape()
  local n, c = shape[1], shape[2]
  local s = x:numel() // (n * c)
  local X, DY = flat(x), flat(dy)
  local act = ACT[o.act or "linear"]
  local y, dx, dg, db = {}, {}, {}, {}
  local rm2, rv2 = {}, {}
  local function at(i, ch, k) return ((i - 1) * c + ch - 1) * s + k end
  for ch = 1, c do
    local m = n * s
    local mu, var
    if o.training then
      local sum = 0
      for i = 1, n do for k = 1, s do sum = sum + X[at(i, ch, k)] end end
      mu = sum / m
      local sq = 0
      for i = 1, n do for k = 1, s do sq = sq + (X[at(i, ch, k)] - mu) ^ 2 end end
      var = sq / m
      rm2[ch] = (1 - o.momentum) * rm[ch] + o.momentum * mu
      rv2[ch] = (1 - o.momentum) * rv[ch] + o.momentum * sq / (m - 1)
    else
      mu, var = rm[ch], rv[ch]
      rm2[ch], rv2[ch] = rm[ch], rv[ch]
    end
    local is = 1 / math.sqrt(var + o.eps)
    local sdz, sdzx = 0, 0
    local dz = {}
    for i = 1, n do
      for k = 1, s do
        local j = at(i, ch, k)
        local xh = (X[j] - mu) * is
        y[j] = act.f(g[ch] * xh + b[ch])
        dz[j] = DY[j] * act.d(y[j])
        sdz, sdzx = sdz + dz[j], sdzx + dz[j] * xh
      end
    end
    dg[ch], db[ch] = sdzx, sdz
    for i = 1, n do
      for k = 1, s do
        local j = at(i, ch, k)
        local xh = (X[j] - mu) * is
        dx[j] = o.training and g[ch] * is * (dz[j] - sdz / m - xh * sdzx / m) or g[ch] * is * dz[j]
      end
    end
  end
  return y, dx, dg, db, rm2, rv2
end

local function assert_close(got, want, tol, what)
  assert.are.equal(#want, #got, what .. ": length")
  for i = 1, #want do
    local e = math.abs(got[i] - want[i])
    assert(e <= tol * (1 + math.abs(want[i])), ("%s[%d]: got %.8g, want %.8g"):format(what, i, got[i], want[i]))
  end
end

local function run_case(make, shape, o)
  dd.manual_seed(SEED)
  local m = make()
  local c = shape[2]
  m.weight:copy(dd.rand(c) + 0.5)
  m.bias:copy(dd.randn(c))
  m.running_mean:copy(dd.randn(c))
  m.running_var:copy(dd.rand(c) + 0.5)
  local g, b, rm, rv = flat(m.weight), flat(m.bias), flat(m.running_mean), flat(m.running_var)
  local x = dd.randn(table.unpack(shape)) * (o.scale or 3) + (o.offset or 2)
  local dy = dd.randn(table.unpack(shape))
  if not o.training then m:eval() end
  local y = m:forward(x)
  m:zero_grad()
  local dx = m:backward(x, dy)
  local wy, wdx, wdg, wdb, wrm, wrv = reference(x, dy, g, b, rm, rv, o)
  assert_close(flat(y), wy, 1e-5, "y")
  assert_close(flat(dx), wdx, 1e-4, "dx")
  assert_close(flat(m.weight_grad or m:parameters()[1].grad), wdg, 1e-4, "dweight")
  assert_close(flat(m:parameters()[2].grad), wdb, 1e-4, "dbias")
  assert_close(flat(m.running_mean), wrm, 1e-6, "running_mean")
  assert_close(flat(m.running_var), wrv, 1e-6, "running_var")
end

describe("BatchNorm against loops", function()
  local opts = { eps = 1e-5, momentum = 0.1 }
  local function with(t) local r = {} for k, v in pairs(opts) do r[k] = v end for k, v in pairs(t) do r[k] = v end return r end
  it("BatchNorm2d, training", function()
    run_case(function() return nn.BatchNorm2d{3} end, { 4, 3, 5, 6 }, with{ training = true })
  end)
  it("BatchNorm2d, evaluation", function()
    run_case(function() return nn.BatchNorm2d{3} end, { 4, 3, 5, 6 }, with{ training = false })
  end)
  it("BatchNorm2d, fused ReLU, eps and momentum given", function()
    run_case(function() return nn.BatchNorm2d{2, activation = "relu", eps = 1e-3, momentum = 0.3} end, { 3, 2, 4, 7 },
      { training = true, act = "relu", eps = 1e-3, momentum = 0.3 })
  end)
  it("BatchNorm2d, fused tanh, evaluation", function()
    run_case(function() return nn.BatchNorm2d{2, activation = "tanh"} end, { 3, 2, 4, 7 }, with{ training = false, act = "tanh" })
  end)
  it("BatchNorm2d, a large mean over a small spread (no cancellation in the variance)", function()
    run_case(function() return nn.BatchNorm2d{3} end, { 4, 3, 5, 6 }, with{ training = true, scale = 0.01, offset = 300 })
  end)
  it("BatchNorm1d on (N, C) and (N, C, L)", function()
    run_case(function() return nn.BatchNorm1d{5} end, { 8, 5 }, with{ training = true })
    run_case(function() return nn.BatchNorm1d{4} end, { 3, 4, 6 }, with{ training = true })
  end)
  it("a large input is split over threads with the same bits", function()
    dd.manual_seed(SEED)
    local x, dy = dd.randn(8, 16, 30, 40), dd.randn(8, 16, 30, 40)
    local outs = {}
    for _, threads in ipairs{ 1, 2 } do
      local old = dd.get_num_threads()
      dd.set_num_threads(threads)
      local m = nn.BatchNorm2d{16, activation = "relu"}
      local y = m:forward(x):clone()
      local dx = m:backward(x, dy):clone()
      outs[threads] = { y, dx, m:parameters()[1].grad:clone(), m.running_var:clone() }
      dd.set_num_threads(old)
    end
    for i = 1, 4 do assert.are.equal(0, (outs[1][i] - outs[2][i]):abs():max()) end
  end)
end)

describe("BatchNorm state", function()
  it("weight and bias are parameters; the running statistics are buffers", function()
    local m = nn.BatchNorm2d{4}
    assert.are.equal(8, m:num_parameters())
    local names = {}
    for _, p in ipairs(m:parameters()) do names[#names + 1] = p.name end
    assert.are.same({ "weight", "bias" }, names)
    local keys = {}
    for k in pairs(m:state_dict()) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.are.same({ "bias", "running_mean", "running_var", "weight" }, keys)
    assert.are.equal(0, m.running_mean:abs():max())
    assert.are.equal(4, m.running_var:sum())
    local plain = nn.BatchNorm1d{3, affine = false}
    assert.are.equal(0, plain:num_parameters())
    assert.are.equal(0, #plain:parameters())
  end)

  it("an optimizer steps the parameters, never the running statistics", function()
    -- The batch's statistics do not depend on the layer's parameters, so
    -- after k steps of momentum 0.1 from 0 the running mean is exactly
    -- (1 - 0.9^k) of the batch mean; weight decay on it would pull it to 0.
    dd.manual_seed(SEED)
    local m = nn.BatchNorm1d{4, activation = "relu"}
    local opt = dd.optim.Adam{ m:parameters(), lr = 0.1, weight_decay = 0.5 }
    local x, t = dd.randn(16, 4) + 3, dd.randn(16, 4)
    local loss = nn.MSELoss()
    local w0 = m.weight:clone()
    for _ = 1, 5 do
      m:zero_grad()
      local y = m:forward(x)
      loss:forward(y, t)
      m:backward(x, loss:backward(y, t))
      opt:step()
    end
    assert(m.weight:sub(w0):abs():max() > 0.1, "Adam moved the weight")
    local want = x:mean(1):view(-1) * (1 - 0.9 ^ 5)
    assert(m.running_mean:sub(want):abs():max() < 1e-5, "running mean " .. tostring(m.running_mean))
  end)

  it("evaluation does not move the running statistics", function()
    local m = nn.BatchNorm2d{2}:eval()
    m:forward(dd.randn(3, 2, 4, 4) + 5)
    assert.are.equal(0, m.running_mean:abs():max())
    assert.are.equal(2, m.running_var:sum())
  end)

  it("a checkpoint keeps the running statistics", function()
    dd.manual_seed(SEED)
    local m = nn.Sequential{ nn.Conv2d{1, 3}, nn.BatchNorm2d{3} }
    m:forward(dd.randn(2, 1, 6, 6) * 2 + 1)
    local path = os.tmpname()
    dd.nn.save(path, m)
    local m2 = nn.Sequential{ nn.Conv2d{1, 3}, nn.BatchNorm2d{3} }
    dd.nn.load(path, m2)
    os.remove(path)
    assert.are.equal(0, (m2.modules[2].running_mean - m.modules[2].running_mean):abs():max())
    assert.are.equal(0, (m2.modules[2].running_var - m.modules[2].running_var):abs():max())
    assert(m.modules[2].running_var:sum() ~= 3, "running_var moved")
  end)
end)

describe("BatchNorm errors", function()
  it("options", function()
    assert_contains(error_of(nn.BatchNorm2d, { 0 }), "BatchNorm2d", "num_features must be in [1,", "got 0")
    assert_contains(error_of(nn.BatchNorm2d, {}), "BatchNorm2d", "num_features")
    assert_contains(error_of(nn.BatchNorm2d, { 3, eps = 0 }), "eps must be in (0, 1), got 0")
    assert_contains(error_of(nn.BatchNorm1d, { 3, momentum = 1.5 }), "BatchNorm1d", "momentum must be in [0, 1], got 1.5")
    assert_contains(error_of(nn.BatchNorm2d, { 3, activation = "swish" }), "unknown activation 'swish'", "relu")
    assert_contains(error_of(nn.BatchNorm2d, { 3, affine = "yes" }), "affine")
    assert_contains(error_of(nn.BatchNorm2d, { 3, track = true }), "unknown option 'track'", "momentum")
  end)
  it("shapes", function()
    local m2, m1 = nn.BatchNorm2d{3}, nn.BatchNorm1d{3}
    assert_contains(error_of(m2.forward, m2, dd.randn(2, 3, 4)), "BatchNorm2d", "4-d (N, C, H, W)", "(2,3,4)")
    assert_contains(error_of(m2.forward, m2, dd.randn(2, 4, 3, 3)), "input has 4 channels, layer expects 3", "(2,4,3,3)")
    assert_contains(error_of(m1.forward, m1, dd.randn(2, 3, 4, 5)), "BatchNorm1d", "2-d (N, C) or 3-d (N, C, L)", "(2,3,4,5)")
    assert_contains(error_of(m1.forward, m1, dd.randn(1, 3)), "more than 1 value per channel", "(1,3)", "eval()")
    m1:eval()
    assert.are.same({ 1, 3 }, m1:forward(dd.randn(1, 3)):shape())
    m2:forward(dd.randn(2, 3, 4, 4))
    assert_contains(error_of(m2.backward, m2, dd.randn(2, 3, 4, 4), dd.randn(2, 3, 4, 5)), "gradient has shape (2,3,4,5)")
    assert_contains(error_of(m2.load_state_dict, m2, { weight = dd.ones(3), bias = dd.zeros(3), running_mean = dd.zeros(4),
      running_var = dd.ones(3) }), "'running_mean' has shape (4,), expected (3,)")
    assert_contains(error_of(m2.load_state_dict, m2, { weight = dd.ones(3), bias = dd.zeros(3), running_mean = dd.zeros(3) }),
      "missing 'running_var'")
  end)
end)

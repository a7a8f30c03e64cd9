-- optim_spec.lua: dd.optim.SGD / Adam / RMSprop and dd.nn.clip_grad_norm.
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/optim_spec.lua
local seed = tonumber(os.getenv("DD_TEST_SEED") or "1234")
print("# optim_spec seed: " .. seed)

local helpers = dofile("tests/lua/support/helpers.lua")
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains

local function flat(t) return t:contiguous():view(-1):totable() end

local function assert_close(a, b, tol, what)
  a, b = flat(a), flat(b)
  assert.equal(#b, #a, what)
  for i = 1, #a do
    if math.abs(a[i] - b[i]) > tol * (1 + math.abs(b[i])) then
      error(("%s: element %d is %.9g, expected %.9g"):format(what or "tensor", i, a[i], b[i]), 2)
    end
  end
end

-- A noise-free linear regression problem: y = x W^T + b.
local function regression(n_in, n_out, rows)
  local x = dd.randn(rows, n_in)
  local w = dd.randn(n_out, n_in)
  local b = dd.randn(n_out)
  local y = x:matmul(w:t()) + b:view(1, n_out):expand(rows, n_out)
  return x, y:contiguous()
end

local function train(model, opt, x, y, steps)
  local loss = dd.nn.MSELoss()
  local first, last
  for i = 1, steps do
    opt:zero_grad()
    local out = model:forward(x)
    last = loss:forward(out, y)
    first = first or last
    model:backward(x, loss:backward(out, y))
    opt:step()
  end
  return first, last
end

before_each(function() dd.manual_seed(seed) end)

describe("optimizers train a linear regression", function()
  local cases = {
    { "SGD", function(p) return dd.optim.SGD{ p, lr = 0.1 } end },
    { "SGD momentum", function(p) return dd.optim.SGD{ p, lr = 0.05, momentum = 0.9 } end },
    { "SGD nesterov + weight decay", function(p) return dd.optim.SGD{ p, lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 1e-6 } end },
    { "Adam (keras eps)", function(p) return dd.optim.Adam{ p, lr = 0.05 } end },
    { "Adam (torch eps, amsgrad)", function(p) return dd.optim.Adam{ p, lr = 0.05, eps_mode = "torch", amsgrad = true } end },
    { "RMSprop", function(p) return dd.optim.RMSprop{ p, lr = 0.01 } end },
    { "RMSprop centered + momentum", function(p) return dd.optim.RMSprop{ p, lr = 0.003, centered = true, momentum = 0.9 } end },
  }
  for _, case in ipairs(cases) do
    it(case[1] .. " drives the loss down more than 100x", function()
      local x, y = regression(5, 3, 64)
      local m = dd.nn.Linear{5, 3}
      local first, last = train(m, case[2](m:parameters()), x, y, 400)
      assert(last < first / 100, ("%s: loss %.6g -> %.6g"):format(case[1], first, last))
    end)
  end

  it("trains a two-layer Sequential (parameters of several layers in one buffer)", function()
    local x = dd.randn(64, 4)
    local y = (x:narrow(2, 1, 1) * x:narrow(2, 2, 1)):contiguous()
    local m = dd.nn.Sequential{ dd.nn.Linear{4, 32}, dd.nn.Tanh(), dd.nn.Linear{32, 1} }
    local first, last = train(m, dd.optim.Adam{ m:parameters(), lr = 0.01 }, x, y, 500)
    assert(last < first / 20, ("loss %.6g -> %.6g"):format(first, last))
  end)
end)

describe("flat parameter buffers", function()
  it("keep the values and the layer trains on the flat storage", function()
    local m = dd.nn.Linear{3, 2}
    local before = m.weight:clone()
    local bias_before = m.bias:clone()
    local opt = dd.optim.SGD{ m:parameters(), lr = 0.5 }
    assert.same(before:totable(), m.weight:totable())
    assert.same(bias_before:totable(), m.bias:totable())
    local p = m:parameters()
    assert.is_true(p[1].value:is_contiguous() and p[2].grad:is_contiguous())
    -- a known gradient: the step must land in the tensors the layer uses
    local x = dd.tensor{{1, 2, 3}}
    opt:zero_grad()
    m:forward(x)
    m:backward(x, dd.tensor{{1, -1}})
    assert.same({{1, 2, 3}, {-1, -2, -3}}, p[1].grad:totable())
    opt:step()
    local expected_w = before - dd.tensor{{1, 2, 3}, {-1, -2, -3}} * 0.5
    assert_close(m.weight, expected_w, 1e-6, "weight after one step")
    -- forward sees the updated weights
    local y = m:forward(x)
    local want = x:matmul(expected_w:t()) + (bias_before - dd.tensor{1, -1} * 0.5):view(1, 2)
    assert_close(y, want, 1e-6, "forward after the step")
    -- zero_grad clears the layer's own gradient tensors
    opt:zero_grad()
    assert.same({{0, 0, 0}, {0, 0, 0}}, m:parameters()[1].grad:totable())
  end)

  it("a second optimizer over the same parameters shares the buffer", function()
    local m = dd.nn.Linear{3, 2}
    local a = dd.optim.SGD{ m:parameters(), lr = 1 }
    local b = dd.optim.SGD{ m:parameters(), lr = 1 }
    m:parameters()[1].grad:fill(1)
    a:step()
    b:step() -- both still valid: each moves the weights by -1
    local w = m.weight:clone()
    m:parameters()[1].grad:fill(0)
    a:step()
    assert.same(w:totable(), m.weight:totable())
  end)

  it("an optimizer over a contiguous part reuses it; a scattered part breaks the first one", function()
    local s = dd.nn.Sequential{ dd.nn.Linear{2, 2}, dd.nn.Linear{2, 2} }
    local p = s:parameters()
    local whole = dd.optim.SGD{ p, lr = 0.1 }
    local tail = dd.optim.SGD{ { p[3], p[4] }, lr = 0.1 } -- back to back in whole's buffer
    whole:step()
    tail:step()
    local scattered = dd.optim.SGD{ { p[1], p[3] }, lr = 0.1 } -- copied into a new buffer
    scattered:step()
    assert_contains(error_of(whole.step, whole), "no longer lives in this optimizer's flat buffer")
    assert_contains(error_of(whole.step, whole), "'1.weight'")
  end)
end)

describe("optimizer fields", function()
  it("lr is writable and takes effect; other fields are read-only", function()
    local m = dd.nn.Linear{2, 1}
    local opt = dd.optim.SGD{ m:parameters(), lr = 0.1 }
    local g = m:parameters()[1].grad
    g:fill(1)
    opt.lr = 0
    local w = m.weight:clone()
    opt:step()
    assert.same(w:totable(), m.weight:totable())
    opt.lr = 0.5
    assert.equal(0.5, opt.lr)
    opt:step()
    assert_close(m.weight, w - 0.5, 1e-7, "after lr=0.5")
    assert.equal(2, opt.step_count)
    assert.equal("SGD", opt.kind)
    assert.equal(0, opt.momentum)
    assert.is_false(opt.nesterov)
    assert_contains(error_of(function() opt.momentum = 0.9 end), "field 'momentum' is read-only (only lr can be assigned)")
    assert_contains(error_of(function() opt.step_count = 3 end), "read-only")
    assert_contains(error_of(function() opt.lrr = 3 end), "unknown field 'lrr'")
    assert_contains(error_of(function() opt.lr = -1 end), "'lr' must be in [0, inf], got -1")
    assert_contains(error_of(function() opt.lr = "x" end), "'lr' must be a number, got string")
    local adam = dd.optim.Adam{ m:parameters() }
    assert.equal(1e-3, adam.lr)
    assert.equal(0.9, adam.beta1)
    assert.equal(0.999, adam.beta2)
    assert.equal(1e-7, adam.eps)
    assert.equal("keras", adam.eps_mode)
    assert.is_false(adam.amsgrad)
    local rms = dd.optim.RMSprop{ m:parameters() }
    assert.equal(0.9, rms.rho)
    assert.equal(1e-7, rms.eps)
    assert.is_false(rms.centered)
    assert.equal(3, rms:num_parameters())
    assert.equal(#m:parameters(), #rms:params())
    assert.equal(m:parameters()[1].value, rms:params()[1].value)
    assert_contains(tostring(rms), "RMSprop(lr=0.001, rho=0.9")
  end)
end)

describe("state_dict / load_state_dict", function()
  local kinds = {
    { "SGD", function(p) return dd.optim.SGD{ p, lr = 0.05, momentum = 0.9, nesterov = true } end },
    { "Adam", function(p) return dd.optim.Adam{ p, lr = 0.01, amsgrad = true } end },
    { "RMSprop", function(p) return dd.optim.RMSprop{ p, lr = 0.01, centered = true, momentum = 0.5 } end },
  }
  for _, kind in ipairs(kinds) do
    it(kind[1] .. ": a restored optimizer takes the identical next steps", function()
      local x, y = regression(4, 2, 16)
      local m = dd.nn.Linear{4, 2}
      local opt = kind[2](m:parameters())
      train(m, opt, x, y, 5)
      local saved_model = {}
      for k, v in pairs(m:state_dict()) do saved_model[k] = v:clone() end
      local sd = opt:state_dict()
      assert.equal(5, sd.step)
      assert.equal(kind[1], sd.kind)
      train(m, opt, x, y, 3)
      local want = m.weight:clone()
      -- rewind: a fresh model and optimizer from the saved state
      local m2 = dd.nn.Linear{4, 2}
      m2:load_state_dict(saved_model)
      local opt2 = kind[2](m2:parameters())
      opt2.lr = 123 -- restored by load_state_dict
      opt2:load_state_dict(sd)
      assert.equal(opt.lr, opt2.lr)
      assert.equal(5, opt2.step_count)
      train(m2, opt2, x, y, 3)
      assert.same(want:totable(), m2.weight:totable())
      assert.equal(8, opt2.step_count)
    end)
  end

  it("state_dict is a snapshot, not a view", function()
    local m = dd.nn.Linear{2, 2}
    local opt = dd.optim.Adam{ m:parameters() }
    m:parameters()[1].grad:fill(1)
    local sd = opt:state_dict()
    opt:step()
    assert.same({0, 0, 0, 0, 0, 0}, sd.m:totable())
    assert.are_not.same(sd.m:totable(), opt:state_dict().m:totable())
  end)

  it("refuses mismatched state, naming what mismatches", function()
    local m = dd.nn.Linear{2, 2}
    local opt = dd.optim.Adam{ m:parameters() }
    local sd = opt:state_dict()
    local function with(changes)
      local t = {}
      for k, v in pairs(sd) do t[k] = v end
      for k, v in pairs(changes) do t[k] = v ~= "nil" and v or nil end
      return t
    end
    assert_contains(error_of(opt.load_state_dict, opt, with{ m = dd.zeros(5) }), "'m' has 5 elements (shape (5,)), the parameters have 6")
    assert_contains(error_of(opt.load_state_dict, opt, with{ v = "nil" }), "missing state 'v'")
    assert_contains(error_of(opt.load_state_dict, opt, with{ step = "nil" }), "missing 'step'")
    assert_contains(error_of(opt.load_state_dict, opt, with{ kind = "SGD" }), "the state is of a SGD optimizer, this one is Adam")
    assert_contains(error_of(opt.load_state_dict, opt, with{ bogus = 1 }), "unexpected entry 'bogus' (known: kind, step, lr, beta1")
    assert_contains(error_of(opt.load_state_dict, opt, with{ amsgrad = true }), "the state has amsgrad=true, this optimizer amsgrad=false")
    assert_contains(error_of(opt.load_state_dict, opt, with{ v_max = dd.zeros(6) }), "unexpected state 'v_max'")
    assert_contains(error_of(opt.load_state_dict, opt, with{ beta1 = 2 }), "'beta1' must be in [0, 1), got 2")
    local sgd = dd.optim.SGD{ m:parameters(), lr = 0.1 }
    local ssd = sgd:state_dict()
    ssd.momentum = 0.9
    assert_contains(error_of(sgd.load_state_dict, sgd, ssd), "need 'momentum_buffer' but this optimizer was built without it")
    -- nothing changed by the failed loads
    assert.equal(0, opt.step_count)
    assert.same(sd.m:totable(), opt:state_dict().m:totable())
  end)
end)

describe("dd.nn.clip_grad_norm", function()
  local function two_params()
    local a = { name = "a", value = dd.zeros(2), grad = dd.tensor{3, 4} }
    local b = { name = "b", value = dd.zeros(1), grad = dd.tensor{12} }
    return { a, b }
  end

  it("returns the total norm and scales by max_norm / (norm + 1e-6)", function()
    local p = two_params()
    assert.near(13, dd.nn.clip_grad_norm(p, 6.5), 1e-12)
    local c = 6.5 / (13 + 1e-6)
    assert_close(p[1].grad, dd.tensor{3 * c, 4 * c}, 1e-7)
    assert_close(p[2].grad, dd.tensor{12 * c}, 1e-7)
    -- below the limit: untouched
    p = two_params()
    assert.near(13, dd.nn.clip_grad_norm(p, 100), 1e-12)
    assert.same({3, 4}, p[1].grad:totable())
  end)

  it("works on flat parameters, on an optimizer, and on strided grads", function()
    local m = dd.nn.Linear{2, 1}
    local opt = dd.optim.SGD{ m:parameters(), lr = 1 }
    m:parameters()[1].grad:copy(dd.tensor{{3, 4}})
    m:parameters()[2].grad:fill(0)
    assert.near(5, dd.nn.clip_grad_norm(m:parameters(), 1), 1e-12)
    assert.near(1, dd.nn.clip_grad_norm(opt, 10), 1e-6) -- already clipped to 1: unchanged
    assert.near(1, dd.nn.clip_grad_norm(opt, 0.5), 1e-6) -- the norm before clipping
    assert_close(m:parameters()[1].grad, dd.tensor{{0.3, 0.4}}, 1e-6)
    local g = dd.tensor{{3, 0}, {4, 0}}:t() -- not contiguous
    assert.near(5, dd.nn.clip_grad_norm({ { grad = g } }, 2.5), 1e-12)
    assert_close(g, dd.tensor{{1.5, 2}, {0, 0}}, 1e-6)
  end)

  it("counts a gradient listed twice once", function()
    local p = two_params()
    assert.near(13, dd.nn.clip_grad_norm({ p[1], p[2], p[1] }, 100), 1e-12)
  end)

  it("checks its arguments", function()
    assert_contains(error_of(dd.nn.clip_grad_norm, two_params()), "max_norm must be a number, got no value")
    assert_contains(error_of(dd.nn.clip_grad_norm, { { grad = 1 } }, 1), "params[1]: grad must be a Tensor, got number")
    assert_contains(error_of(dd.nn.clip_grad_norm, 3, 1), "params must be a list like m:parameters() or an Optimizer")
  end)
end)

describe("optimizer construction is strict", function()
  local m
  before_each(function() m = dd.nn.Linear{3, 2} end)

  it("names unknown options and the known ones", function()
    local err = error_of(dd.optim.Adam, { m:parameters(), lr = 1e-3, betas = { 0.9, 0.99 } })
    assert_contains(err, "Adam: unknown option 'betas' (known: params, lr, beta1, beta2, eps, weight_decay, amsgrad, eps_mode)")
    assert_contains(error_of(dd.optim.SGD, { m:parameters(), lr = 0.1, momentun = 0.9 }), "unknown option 'momentun'")
    assert_contains(error_of(dd.optim.RMSprop, { m:parameters(), alpha = 0.9 }),
      "known: params, lr, rho, eps, momentum, centered, weight_decay")
  end)

  it("checks types, ranges and combinations", function()
    assert_contains(error_of(dd.optim.SGD, { m:parameters() }), "SGD: option 'lr' is required")
    assert_contains(error_of(dd.optim.Adam, { m:parameters(), beta2 = 1 }), "option 'beta2' must be in [0, 1), got 1")
    assert_contains(error_of(dd.optim.Adam, { m:parameters(), amsgrad = 1 }), "option 'amsgrad' must be a boolean, got number")
    assert_contains(error_of(dd.optim.Adam, { m:parameters(), eps_mode = "pytorch" }), "option 'eps_mode' must be 'keras' or 'torch', got 'pytorch'")
    assert_contains(error_of(dd.optim.SGD, { m:parameters(), lr = 0.1, nesterov = true }), "nesterov=true needs momentum > 0 and dampening = 0")
    assert_contains(error_of(dd.optim.RMSprop, { m:parameters(), momentum = -1 }), "option 'momentum' must be in [0, inf], got -1")
  end)

  it("checks the params list", function()
    assert_contains(error_of(dd.optim.Adam, m:parameters()), "bare parameter list: write Adam{model:parameters(), lr=...}")
    assert_contains(error_of(dd.optim.Adam, { lr = 1 }), "params is required")
    assert_contains(error_of(dd.optim.Adam, { {} }), "params is empty")
    assert_contains(error_of(dd.optim.Adam, { m:parameters(), params = m:parameters() }), "params given twice")
    local p = m:parameters()
    assert_contains(error_of(dd.optim.Adam, { { p[1], p[2], p[1] } }), "params[3] ('weight') is given twice: it is (or shares memory with) params[1] ('weight')")
    local bad = { name = "w", value = dd.zeros(2, 3), grad = dd.zeros(3, 2) }
    assert_contains(error_of(dd.optim.Adam, { { bad } }), "params[1] ('w'): grad has shape (3,2) but value has shape (2,3)")
    local strided = { name = "s", value = dd.zeros(3, 2):t(), grad = dd.zeros(2, 3) }
    assert_contains(error_of(dd.optim.Adam, { { strided } }), "params[1] ('s'): value is not contiguous")
    local shared = dd.zeros(4)
    assert_contains(error_of(dd.optim.Adam, { { { name = "a", value = shared, grad = shared } } }), "value and grad share memory")
    local big = dd.zeros(10)
    local views = { { name = "x", value = big:narrow(1, 1, 6), grad = dd.zeros(6) }, { name = "y", value = big:narrow(1, 5, 2), grad = dd.zeros(2) } }
    assert_contains(error_of(dd.optim.Adam, { views }), "params[2] ('y') is given twice: it is (or shares memory with) params[1] ('x')")
    assert_contains(error_of(dd.optim.Adam, { { { name = "n", value = 1, grad = dd.zeros(1) } } }), "params[1] ('n'): value must be a Tensor, got number")
  end)
end)

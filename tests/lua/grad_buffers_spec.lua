-- Gradient buffers: a C layer's backward can write dx into a tensor it is
-- given (`into`), and Sequential passes its layers two shared buffers in turn
-- (nested Sequentials use their parent's pair), so the autoencoder does not
-- keep one input gradient per layer. The gradients must be exactly those of
-- plain layer-by-layer backward, and neither the caller's dy nor x may be
-- touched.
local h = dofile("tests/lua/support/helpers.lua")
local nn = dd.nn
local seed = tonumber(os.getenv("DD_TEST_SEED") or "1234")

local function model()
  return nn.Sequential{
    nn.Sequential{
      nn.Conv2d{2, 4, padding = "same", activation = "relu"}, nn.MaxPool2d{2},
      nn.Conv2d{4, 4, padding = "same"}, nn.Tanh(), nn.Flatten(), nn.Linear{4 * 4 * 5, 6},
    },
    nn.Sequential{
      nn.Linear{6, 3 * 4 * 5, activation = "relu"}, nn.Reshape{3, 4, 5}, nn.Upsample{2},
      nn.ConvTranspose2d{3, 2, padding = "same", activation = "sigmoid"},
    },
  }
end

-- The leaf layers in order.
local function leaves(m, out)
  out = out or {}
  for _, c in ipairs(m.modules) do
    if getmetatable(c) == getmetatable(m) then leaves(c, out) else out[#out + 1] = c end
  end
  return out
end

describe("gradient buffers (seed " .. seed .. ")", function()
  it("Sequential's shared buffers give exactly the gradients of layer-by-layer backward", function()
    dd.manual_seed(seed)
    local a = model()
    local b = model()
    b:load_state_dict(a:state_dict())
    local x, dy = dd.randn(3, 2, 8, 10), dd.randn(3, 2, 8, 10)
    local x0, dy0 = x:clone(), dy:clone()

    a:forward(x)
    local dxa = a:backward(x, dy)

    local layers, inputs, hcur = leaves(b), {}, x
    for i, l in ipairs(layers) do inputs[i] = hcur; hcur = l:forward(hcur) end
    local g = dy
    for i = #layers, 1, -1 do g = layers[i]:backward(inputs[i], g) end

    assert.are.equal(0, h.max_diff(dxa, g))
    local pa, pb = a:parameters(), b:parameters()
    assert.are.equal(#pb, #pa)
    for i = 1, #pa do
      assert.are.equal(pb[i].name, pa[i].name)
      assert.are.equal(0, h.max_diff(pa[i].grad, pb[i].grad), pa[i].name)
    end
    assert.are.equal(0, h.max_diff(x, x0))
    assert.are.equal(0, h.max_diff(dy, dy0))
    -- and again: a second step reuses the buffers and still agrees
    a:zero_grad()
    local dxa2 = a:backward(x, dy)
    assert.are.equal(0, h.max_diff(dxa2, g))
  end)

  it("Sequential's layers take turns with two buffers: layers 1 and 3 share one", function()
    dd.manual_seed(seed)
    local m = nn.Sequential{ nn.Conv2d{2, 2, padding = "same"}, nn.Conv2d{2, 2, padding = "same"},
                             nn.Conv2d{2, 2, padding = "same"} }
    local x = dd.randn(1, 2, 5, 5)
    m:forward(x)
    m:backward(x, dd.randn(1, 2, 5, 5))
    local g1, g2, g3 = m[1].grad_input, m[2].grad_input, m[3].grad_input
    g3:fill(7)
    assert.are.equal(7, g1:get(1, 1, 1, 1))
    assert.are_not.equal(7, g2:get(1, 1, 1, 1))
  end)

  it("a layer's backward writes into a given tensor of the input's shape and returns it", function()
    dd.manual_seed(seed)
    local l = nn.Conv2d{2, 3, padding = "same", activation = "relu"}
    local x, dy = dd.randn(2, 2, 6, 7), dd.randn(2, 3, 6, 7)
    l:forward(x)
    local plain = l:backward(x, dy):clone()
    local into = dd.zeros(2, 2, 6, 7)
    local got = l:backward(x, dy, into)
    assert.are.equal(into, got)
    assert.are.equal(0, h.max_diff(into, plain))
  end)

  it("refuses an 'into' of another shape, not contiguous, sharing memory, or not a tensor", function()
    local l = nn.Linear{3, 2}
    local x, dy = dd.randn(4, 3), dd.randn(4, 2)
    l:forward(x)
    h.assert_contains(h.error_of(l.backward, l, x, dy, dd.zeros(4, 2)),
      "Linear: backward: 'into' must be a contiguous tensor of the input's shape (4,3), got (4,2)")
    h.assert_contains(h.error_of(l.backward, l, x, dy, dd.zeros(3, 4):t()), "got (4,3) (not contiguous)")
    h.assert_contains(h.error_of(l.backward, l, x, dy, x), "'into' shares memory with the input")
    h.assert_contains(h.error_of(l.backward, l, x, dy, "buffer"), "Tensor expected, got string")
  end)
end)

describe("backward without an input gradient (seed " .. seed .. ")", function()
  -- One model per first layer kind that can skip dx, and one that cannot.
  local cases = {
    { name = "Conv2d first (nested)", make = model, x = function() return dd.randn(3, 2, 8, 10) end,
      dy = function() return dd.randn(3, 2, 8, 10) end },
    { name = "LSTM stack", make = function()
        return nn.Sequential{ nn.LSTM{5, 7, num_layers = 2, dropout = 0.3}, nn.Linear{7, 3} }
      end, x = function() return dd.randn(4, 6, 5) end, dy = function() return dd.randn(4, 6, 3) end },
    { name = "Linear", make = function() return nn.Sequential{ nn.Linear{5, 4, activation = "tanh"}, nn.Linear{4, 2} } end,
      x = function() return dd.randn(3, 5) end, dy = function() return dd.randn(3, 2) end },
    { name = "ReLU first (cannot skip)", make = function() return nn.Sequential{ nn.ReLU(), nn.Linear{5, 2} } end,
      x = function() return dd.randn(3, 5) end, dy = function() return dd.randn(3, 2) end },
  }
  for _, case in ipairs(cases) do
    it("gives the same parameter gradients and returns nothing: " .. case.name, function()
      dd.manual_seed(seed)
      local a = case.make()
      local b = case.make()
      b:load_state_dict(a:state_dict())
      a:train(); b:train()
      local x, dy = case.x(), case.dy()
      dd.manual_seed(seed + 1) -- the same dropout masks in both
      a:forward(x)
      dd.manual_seed(seed + 1)
      b:forward(x)
      assert.is_nil(a:backward(x, dy, false))
      assert.is_not_nil(b:backward(x, dy))
      local pa, pb = a:parameters(), b:parameters()
      for i = 1, #pa do assert.are.equal(0, h.max_diff(pa[i].grad, pb[i].grad), pa[i].name) end
    end)
  end
end)

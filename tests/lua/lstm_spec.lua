-- lstm_spec.lua: dd.nn.LSTM from Lua: the notebook's parameter counts,
-- PyTorch-style state dicts, stepping for generation, and error messages.
-- The kernels themselves are checked in tests/c/test_lstm.c.
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/lstm_spec.lua

local SEED = tonumber(os.getenv("DD_TEST_SEED") or "") or 1234
print("# lstm_spec: seed " .. SEED .. " (DD_TEST_SEED)")

local helpers = dofile("tests/lua/support/helpers.lua")
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains
local max_diff = helpers.max_diff

local function shape_str(t)
  return table.concat(t:shape(), "x")
end

describe("dd.nn.LSTM", function()
  before_each(function()
    dd.manual_seed(SEED)
  end)

  describe("parameters", function()
    it("count like the notebook's Keras model", function()
      local a = dd.nn.LSTM{128, 512}:num_parameters()
      local b = dd.nn.LSTM{512, 256}:num_parameters()
      local c = dd.nn.LSTM{256, 256}:num_parameters()
      assert.are.equal(1312768, a)
      assert.are.equal(787456, b)
      assert.are.equal(525312, c)
      -- with the Dense 256 -> 128 head: the notebook's total
      assert.are.equal(2658432, a + b + c + dd.nn.Linear{256, 128}:num_parameters())
    end)

    it("are named and shaped like PyTorch's, with one bias per layer", function()
      local m = dd.nn.LSTM{3, 5, num_layers = 2}
      local sd = m:state_dict()
      local names = {}
      for k in pairs(sd) do names[#names + 1] = k end
      table.sort(names)
      assert.are.same({"bias_l0", "bias_l1", "weight_hh_l0", "weight_hh_l1", "weight_ih_l0", "weight_ih_l1"}, names)
      assert.are.equal("20x3", shape_str(sd.weight_ih_l0))
      assert.are.equal("20x5", shape_str(sd.weight_ih_l1))
      assert.are.equal("20x5", shape_str(sd.weight_hh_l0))
      assert.are.equal("20", shape_str(sd.bias_l1))
      assert.are.equal((20 * 3 + 20 * 5 + 20) + (20 * 5 + 20 * 5 + 20), m:num_parameters())
    end)

    it("start with the forget-gate bias at 1 (unit_forget_bias)", function()
      local b = dd.nn.LSTM{3, 4}.bias_l0
      for i = 1, 16 do
        assert.are.equal((i >= 5 and i <= 8) and 1 or 0, b:get(i))
      end
      local z = dd.nn.LSTM{3, 4, unit_forget_bias = false}.bias_l0
      assert.are.equal(0, z:abs():max())
    end)
  end)

  describe("load_state_dict", function()
    local function torch_like(H, in_)
      return {
        weight_ih_l0 = dd.randn(4 * H, in_),
        weight_hh_l0 = dd.randn(4 * H, H),
        bias_ih_l0 = dd.randn(4 * H),
        bias_hh_l0 = dd.randn(4 * H),
      }
    end

    it("accepts PyTorch's bias_ih + bias_hh pair and sums it", function()
      local m = dd.nn.LSTM{3, 4}
      local sd = torch_like(4, 3)
      m:load_state_dict(sd)
      assert.are.equal(0, max_diff(m.weight_ih_l0, sd.weight_ih_l0))
      assert.are.equal(0, max_diff(m.weight_hh_l0, sd.weight_hh_l0))
      assert.is_true(max_diff(m.bias_l0, sd.bias_ih_l0 + sd.bias_hh_l0) < 1e-6)
    end)

    it("accepts its own state dict", function()
      local a, b = dd.nn.LSTM{3, 4, num_layers = 2}, dd.nn.LSTM{3, 4, num_layers = 2}
      b:load_state_dict(a:state_dict())
      local x = dd.randn(2, 3, 3)
      assert.are.equal(0, max_diff(a:forward(x), b:forward(x)))
    end)

    it("names a missing entry", function()
      local sd = torch_like(4, 3)
      sd.weight_hh_l0 = nil
      assert_contains(error_of(function() dd.nn.LSTM{3, 4}:load_state_dict(sd) end), "missing 'weight_hh_l0'")
      sd = torch_like(4, 3)
      sd.bias_hh_l0 = nil
      assert_contains(error_of(function() dd.nn.LSTM{3, 4}:load_state_dict(sd) end),
        "missing 'bias_l0' (or the pair 'bias_ih_l0' + 'bias_hh_l0')")
    end)

    it("names an extra entry", function()
      local sd = torch_like(4, 3)
      sd.weight_ih_l1 = dd.randn(16, 4)
      assert_contains(error_of(function() dd.nn.LSTM{3, 4}:load_state_dict(sd) end), "unexpected entry 'weight_ih_l1'")
    end)

    it("names a mis-shaped entry with both shapes", function()
      local sd = torch_like(4, 3)
      sd.weight_ih_l0 = dd.randn(16, 5)
      assert_contains(error_of(function() dd.nn.LSTM{3, 4}:load_state_dict(sd) end),
        "'weight_ih_l0' has shape (16,5), expected (16,3)")
      sd = torch_like(4, 3)
      sd.bias_hh_l0 = dd.randn(12)
      assert_contains(error_of(function() dd.nn.LSTM{3, 4}:load_state_dict(sd) end), "'bias_hh_l0' has shape (12,), expected (16,)")
    end)
  end)

  describe("forward and backward", function()
    it("return the whole sequence or the last step", function()
      local seq = dd.nn.LSTM{3, 5, num_layers = 2}
      local last = dd.nn.LSTM{3, 5, num_layers = 2, return_sequences = false}
      last:load_state_dict(seq:state_dict())
      local x = dd.randn(4, 6, 3)
      local ys = seq:forward(x)
      local yl = last:forward(x)
      assert.are.equal("4x6x5", shape_str(ys))
      assert.are.equal("4x5", shape_str(yl))
      assert.are.equal(0, max_diff(yl, ys:select(2, 6)))
      local dx = last:backward(x, dd.randn(4, 5))
      assert.are.equal("4x6x3", shape_str(dx))
      assert.is_true(last.weight_hh_l1 ~= nil)
      local g = 0
      for _, p in ipairs(last:parameters()) do g = g + p.grad:abs():sum() end
      assert.is_true(g > 0)
      last:zero_grad()
      for _, p in ipairs(last:parameters()) do assert.are.equal(0, p.grad:abs():max()) end
    end)

    it("applies dropout between layers in training only, repeatably", function()
      local m = dd.nn.LSTM{3, 6, num_layers = 2, dropout = 0.5}
      local x = dd.randn(3, 4, 3)
      dd.manual_seed(7)
      local a = m:forward(x):clone()
      dd.manual_seed(7)
      local b = m:forward(x):clone()
      assert.are.equal(0, max_diff(a, b))
      m:eval()
      local e1 = m:forward(x):clone()
      local e2 = m:forward(x):clone()
      assert.are.equal(0, max_diff(e1, e2))
      assert.is_true(max_diff(a, e1) > 1e-3)
      -- one layer: nothing to drop between
      local one = dd.nn.LSTM{3, 6, dropout = 0.5}
      local t = one:forward(x):clone()
      one:eval()
      assert.are.equal(0, max_diff(t, one:forward(x)))
    end)

    -- The batch is split over the threads (nn_lstm.c, lstm_forward_block):
    -- any thread count gives the same numbers up to the order of the weight
    -- gradients' sums, a repeat gives the same bits, and a thread count
    -- changed between forward and backward is followed.
    it("agree on 1 and 2 threads, odd batches and sizes, dropout on", function()
      local x, dy = dd.randn(5, 4, 3), dd.randn(5, 4, 7)
      local template = dd.nn.LSTM{3, 7, num_layers = 3, dropout = 0.3}:state_dict()
      local function run(fwd_threads, bwd_threads)
        local old = dd.get_num_threads()
        local m = dd.nn.LSTM{3, 7, num_layers = 3, dropout = 0.3}
        m:load_state_dict(template)
        dd.manual_seed(11)
        dd.set_num_threads(fwd_threads)
        local y = m:forward(x):clone()
        dd.set_num_threads(bwd_threads)
        local dx = m:backward(x, dy):clone()
        dd.set_num_threads(old)
        local out = { y, dx }
        for _, p in ipairs(m:parameters()) do out[#out + 1] = p.grad:clone() end
        return out
      end
      local one, two, again, shrunk = run(1, 1), run(2, 2), run(2, 2), run(2, 1)
      for i = 1, #one do
        local scale = math.max(1, one[i]:abs():max())
        assert.is_true(max_diff(one[i], two[i]) <= 1e-5 * scale, "tensor " .. i .. " differs between 1 and 2 threads")
        assert.are.equal(0, max_diff(two[i], again[i]))
        assert.are.equal(0, max_diff(two[i], shrunk[i]))
      end
    end)
  end)

  describe("stepping", function()
    -- forward in evaluation mode; step in training mode, which it must ignore
    local function check_steps(m, x)
      local B, T = x:shape()[1], x:shape()[2]
      m:eval()
      local y = m:forward(x):clone()
      m:train()
      m:reset_state()
      for t = 1, T do
        local yt = m:step(x:select(2, t))
        assert.are.equal(B .. "x" .. m.weight_hh_l0:shape()[2], shape_str(yt))
        local d = max_diff(yt, y:select(2, t))
        assert(d < 1e-6, ("step %d differs from forward by %g"):format(t, d))
      end
    end

    it("equals forward at every step (sigmoid and hard sigmoid, 3 layers with dropout)", function()
      for _, act in ipairs{"sigmoid", "hard_sigmoid"} do
        check_steps(dd.nn.LSTM{4, 6, num_layers = 3, dropout = 0.3, recurrent_activation = act}, dd.randn(3, 8, 4))
      end
      check_steps(dd.nn.LSTM{4, 6}, dd.randn(1, 5, 4))
    end)

    it("keeps state between steps, and state()/set_state() restore it", function()
      local m = dd.nn.LSTM{3, 5, num_layers = 2}
      assert.is_nil(m:state())
      local xs = {}
      for i = 1, 6 do xs[i] = dd.randn(2, 3) end
      m:step(xs[1])
      m:step(xs[2])
      local s = m:state()
      assert.are.equal(2, #s.h)
      assert.are.equal(2, #s.c)
      assert.are.equal("2x5", shape_str(s.h[2]))
      local ya = {}
      for i = 3, 6 do ya[i] = m:step(xs[i]) end
      assert.is_true(max_diff(ya[6], s.h[2]) > 0) -- the copies did not move with the state
      m:set_state(s)
      for i = 3, 6 do
        assert.are.equal(0, max_diff(m:step(xs[i]), ya[i]))
      end
      -- set_state(nil) and reset_state() both start again from zeros
      m:set_state(nil)
      assert.is_nil(m:state())
      local first = m:step(xs[1]):clone()
      m:reset_state()
      assert.are.equal(0, max_diff(m:step(xs[1]), first))
    end)

    it("refuses a changed batch until reset_state, naming both sizes", function()
      local m = dd.nn.LSTM{3, 5}
      m:step(dd.randn(2, 3))
      local err = error_of(function() m:step(dd.randn(3, 3)) end)
      assert_contains(err, "input has batch 3, the state holds batch 2")
      m:reset_state()
      assert.are.equal("3x5", shape_str(m:step(dd.randn(3, 3))))
    end)

    it("checks set_state's table", function()
      local m = dd.nn.LSTM{3, 5, num_layers = 2}
      assert_contains(error_of(function() m:set_state(3) end), "expected a table {h = {...}, c = {...}} or nil")
      assert_contains(error_of(function() m:set_state{h = {dd.zeros(1, 5)}, c = {dd.zeros(1, 5), dd.zeros(1, 5)}} end),
        "'h' must be a list of 2 tensors (one per layer), got 1 entries")
      assert_contains(error_of(function()
        m:set_state{h = {dd.zeros(2, 5), dd.zeros(2, 4)}, c = {dd.zeros(2, 5), dd.zeros(2, 5)}}
      end), "h[2] has shape (2,4), expected (2,5)")
      assert_contains(error_of(function()
        m:set_state{h = {dd.zeros(2, 5), dd.zeros(2, 5)}, c = {dd.zeros(2, 5), dd.zeros(2, 5)}, x = 1}
      end), "unexpected entry 'x'")
      m:set_state{h = {dd.ones(2, 5), dd.zeros(2, 5)}, c = {dd.zeros(2, 5), dd.zeros(2, 5)}}
      assert.are.equal(1, m:state().h[1]:min())
    end)
  end)

  describe("errors", function()
    it("name the expected and the actual feature count", function()
      local m = dd.nn.LSTM{3, 5}
      assert_contains(error_of(function() m:forward(dd.randn(2, 4, 7)) end), "has 7 features, expected 3 (input_size)")
      assert_contains(error_of(function() m:step(dd.randn(2, 4)) end), "has 4 features, expected 3 (input_size)")
    end)

    it("refuse a 2-d input to forward", function()
      local err = error_of(function() dd.nn.LSTM{3, 5}:forward(dd.randn(4, 3)) end)
      assert_contains(err, "LSTM: input of shape (4,3) must be 3-d (batch, time, features)")
    end)

    it("prefix the layer's name", function()
      local m = dd.nn.LSTM{3, 5, name = "seq1"}
      assert_contains(error_of(function() m:forward(dd.randn(4, 3)) end), "LSTM 'seq1': input of shape")
      assert_contains(error_of(function() m:step(dd.randn(4)) end), "LSTM 'seq1': step: input of shape (4,) must be 2-d (batch, features)")
    end)

    it("list the known recurrent activations", function()
      assert_contains(error_of(function() dd.nn.LSTM{3, 5, recurrent_activation = "relu"} end),
        "unknown recurrent_activation 'relu' (known: sigmoid, hard_sigmoid)")
    end)

    it("check the other options", function()
      assert_contains(error_of(function() dd.nn.LSTM{3, 5, num_layers = 9} end), "num_layers must be in [1, 5]")
      assert_contains(error_of(function() dd.nn.LSTM{3, 5, dropout = 1} end), "dropout must be in [0, 1), got 1")
      assert_contains(error_of(function() dd.nn.LSTM{3, 5, hidden = 4} end), "unknown option 'hidden'")
      assert_contains(error_of(function() dd.nn.LSTM{3, 5, recurrent_init = "eye"} end), "unknown recurrent_init 'eye'")
    end)

    it("refuse an LSTM method on another kind", function()
      local lin = dd.nn.Linear{3, 5}
      local step = dd.nn.LSTM{3, 5}.step
      assert_contains(error_of(function() step(lin, dd.randn(1, 3)) end), "expected a LSTM layer, got Linear")
    end)
  end)
end)

-- conv_spec.lua: Conv2d, ConvTranspose2d, MaxPool2d and Upsample through Lua:
-- constructors, parameter shapes and counts of the original autoencoder,
-- output shapes, forward/backward against loops written here, gradient
-- accumulation, and the text of every error. The kernels themselves are
-- tested against reference loops and finite differences in tests/c/test_conv.c.
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/conv_spec.lua

local SEED = math.tointeger(tonumber(os.getenv("DD_TEST_SEED") or "1234")) or 1234
print("# conv_spec: seed " .. SEED .. " (DD_TEST_SEED)")

local nn = dd.nn

local function shape_of(t)
  return table.concat(t:shape(), "x")
end

-- The error message of f(...), which must fail.
local helpers = dofile("tests/lua/support/helpers.lua")
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains

local function max_abs_diff(a, b)
  return (a - b):abs():max()
end

-- Direct Conv2d of a (N, C, H, W) tensor with stride 1, the given top/left
-- padding and output size, read element by element: a check independent of
-- the C kernels.
local function conv2d_by_loops(x, w, b, pad_top, pad_left, oh, ow)
  local n, c, h, wd = table.unpack(x:shape())
  local k, _, kh, kw = table.unpack(w:shape())
  local y = dd.zeros(n, k, oh, ow)
  for i = 1, n do
    for o = 1, k do
      for r = 1, oh do
        for q = 1, ow do
          local acc = b and b:get(o) or 0
          for ci = 1, c do
            for a = 1, kh do
              for e = 1, kw do
                local iy, ix = r - pad_top + a - 1, q - pad_left + e - 1
                if iy >= 1 and iy <= h and ix >= 1 and ix <= wd then
                  acc = acc + w:get(o, ci, a, e) * x:get(i, ci, iy, ix)
                end
              end
            end
          end
          y:set(i, o, r, q, acc)
        end
      end
    end
  end
  return y
end

before_each(function()
  dd.manual_seed(SEED)
end)

describe("Conv2d", function()
  it("has PyTorch's parameter layout and the autoencoder's counts", function()
    local m = nn.Conv2d{1, 32, kernel_size = 3}
    assert.are.same({ 32, 1, 3, 3 }, m.weight:shape())
    assert.are.same({ 32 }, m.bias:shape())
    assert.are.equal(320, m:num_parameters())
    assert.are.equal(9248, nn.Conv2d{32, 32}:num_parameters())
    assert.are.equal(2312, nn.Conv2d{32, 8}:num_parameters())
    local nb = nn.Conv2d{3, 4, bias = false}
    assert.are.equal(108, nb:num_parameters())
    assert.is_nil(nb.bias)
    assert.are.equal(1, #nb:parameters())
    local names = {}
    for _, p in ipairs(m:parameters()) do names[#names + 1] = p.name end
    assert.are.same({ "weight", "bias" }, names)
  end)

  it("draws Keras' glorot_uniform weights and zero biases", function()
    local m = nn.Conv2d{32, 32}
    local bound = math.sqrt(6 / (32 * 9 + 32 * 9))
    local wmax = m.weight:abs():max()
    assert(wmax <= bound and wmax > 0.95 * bound, ("max |w| %g, glorot bound %g"):format(wmax, bound))
    assert.are.equal(0, m.bias:abs():max())
  end)

  it("keeps the size with 'same' padding and shrinks it with padding 0", function()
    local m = nn.Conv2d{1, 32}
    assert.are.same({ 8, 32, 120, 200 }, m:output_shape{8, 1, 120, 200})
    assert.are.same({ 2, 4, 5, 7 }, nn.Conv2d{3, 4, padding = 0}:output_shape{2, 3, 7, 9})
    assert.are.same({ 2, 4, 7, 9 }, nn.Conv2d{3, 4, padding = "valid", kernel_size = 1}:output_shape{2, 3, 7, 9})
    assert.are.same({ 1, 4, 4, 5 }, nn.Conv2d{3, 4, stride = 2}:output_shape{1, 3, 7, 9})
    assert.are.same({ 1, 4, 3, 3 }, nn.Conv2d{3, 4, stride = 3, padding = 1, dilation = 2}:output_shape{1, 3, 9, 9})
  end)

  it("computes the convolution: 'same' with an even kernel pads bottom and right", function()
    for _, k in ipairs({ 3, 2 }) do
      local m = nn.Conv2d{2, 3, kernel_size = k}
      m.bias:copy(dd.randn(3))
      local x = dd.randn(2, 2, 4, 5)
      local y = m:forward(x)
      local pad = (k - 1) // 2 -- TensorFlow: the odd pixel goes to the end
      local want = conv2d_by_loops(x, m.weight, m.bias, pad, pad, 4, 5)
      assert(max_abs_diff(y, want) < 1e-5, "kernel " .. k .. ": off by " .. max_abs_diff(y, want))
    end
  end)

  it("backward: returns dx, accumulates gradients until zero_grad", function()
    local m = nn.Conv2d{3, 4}
    local x = dd.randn(2, 3, 6, 5)
    local y = m:forward(x)
    local dy = dd.randn(2, 4, 6, 5)
    local dx = m:backward(x, dy)
    assert.are.same({ 2, 3, 6, 5 }, dx:shape())
    local g = m:parameters()
    local dw1, db1 = g[1].grad:clone(), g[2].grad:clone()
    -- the bias gradient is dy summed over batch and pixels
    for o = 1, 4 do
      local s = dy:select(2, o):sum()
      assert(math.abs(db1:get(o) - s) < 1e-4 * (1 + math.abs(s)), "db[" .. o .. "]")
    end
    -- the input gradient is the adjoint: <conv(x'), dy> - <b-part> = <x', dx>
    local x2 = dd.randn(2, 3, 6, 5)
    local lhs = (m:forward(x2) * dy):sum() - (m.bias:view(1, 4, 1, 1) * dy):sum()
    local rhs = (x2 * dx):sum()
    assert(math.abs(lhs - rhs) < 1e-3 * (1 + math.abs(lhs)), ("adjoint: %g vs %g"):format(lhs, rhs))
    m:forward(x)
    m:backward(x, dy)
    assert(max_abs_diff(g[1].grad, dw1 * 2) < 1e-4, "weight gradients accumulate")
    assert(max_abs_diff(g[2].grad, db1 * 2) < 1e-4, "bias gradients accumulate")
    m:zero_grad()
    assert.are.equal(0, g[1].grad:abs():max())
    assert.are.equal(y:shape()[2], 4)
  end)

  it("names the layer and both shapes in its errors", function()
    local m = nn.Conv2d{32, 32}
    assert_contains(error_of(m.forward, m, dd.randn(2, 3, 8, 8)),
      "Conv2d", "input has 3 channels, layer expects 32", "(2,3,8,8)")
    assert_contains(error_of(m.forward, m, dd.randn(32, 8, 8)), "Conv2d", "4-d input", "(32,8,8)")
    local named = nn.Conv2d{32, 32, name = "enc2"}
    assert_contains(error_of(named.forward, named, dd.randn(1, 3, 8, 8)),
      "Conv2d 'enc2': input has 3 channels, layer expects 32")
    local big = nn.Conv2d{1, 1, kernel_size = 5, padding = 0}
    assert_contains(error_of(big.forward, big, dd.randn(1, 1, 3, 9)),
      "Conv2d", "(1,1,3,9)", "output height would be 0", "height 3", "kernel extent 5")
    assert_contains(error_of(big.output_shape, big, { 1, 1, 9, 2 }), "output width would be 0", "width 2")
    local y = m:forward(dd.randn(1, 32, 4, 4))
    assert_contains(error_of(m.backward, m, dd.randn(1, 32, 4, 4), dd.randn(1, 32, 4, 5)),
      "Conv2d", "(1,32,4,5)", "(1,32,4,4)")
    assert.are.same({ 1, 32, 4, 4 }, y:shape())
  end)

  it("refuses bad options by name", function()
    assert_contains(error_of(nn.Conv2d, { 1, 2, kernal_size = 3 }), "Conv2d", "unknown option 'kernal_size'")
    assert_contains(error_of(nn.Conv2d, { 1, 2, padding = "full" }),
      "Conv2d", "unknown padding 'full'", "'same'", "'valid'")
    assert_contains(error_of(nn.Conv2d, { 1, 2, kernel_size = 0 }), "Conv2d", "kernel_size must be >= 1, got 0")
    assert_contains(error_of(nn.Conv2d, { 1, 2, stride = 0 }), "stride must be >= 1, got 0")
    assert_contains(error_of(nn.Conv2d, { 1, 2, dilation = 0 }), "dilation must be >= 1, got 0")
    assert_contains(error_of(nn.Conv2d, { 1, 2, padding = -1 }), "padding must be >= 0, got -1")
    assert_contains(error_of(nn.Conv2d, { 0, 2 }), "in_channels must be >= 1, got 0")
    assert_contains(error_of(nn.Conv2d, { 1 }), "Conv2d", "out_channels", "required")
    assert_contains(error_of(nn.Conv2d, { 1, 2, padding = 1.5 }), "padding", "1.5")
  end)
end)

describe("ConvTranspose2d", function()
  it("has PyTorch's (in, out, kh, kw) layout and the decoder's counts", function()
    local m = nn.ConvTranspose2d{4, 32}
    assert.are.same({ 4, 32, 3, 3 }, m.weight:shape())
    assert.are.same({ 32 }, m.bias:shape())
    assert.are.equal(1184, m:num_parameters())
    assert.are.equal(148, nn.ConvTranspose2d{4, 4}:num_parameters())
    assert.are.equal(9248, nn.ConvTranspose2d{32, 32}:num_parameters())
    local last = nn.ConvTranspose2d{32, 1}
    assert.are.equal(289, last:num_parameters())
    assert.are.same({ 32, 1, 3, 3 }, last.weight:shape())
    -- Keras' fans for Conv2DTranspose: fan_in = out*9, fan_out = in*9
    local bound = math.sqrt(6 / (32 * 9 + 4 * 9))
    local wmax = m.weight:abs():max()
    assert(wmax <= bound and wmax > 0.9 * bound, ("max |w| %g, glorot bound %g"):format(wmax, bound))
  end)

  it("follows PyTorch's output size and Keras' 'same'", function()
    assert.are.same({ 1, 32, 17, 27 }, nn.ConvTranspose2d{4, 32}:output_shape{1, 4, 15, 25})
    assert.are.same({ 1, 32, 15, 25 }, nn.ConvTranspose2d{4, 32, padding = "same"}:output_shape{1, 4, 15, 25})
    assert.are.same({ 1, 32, 15, 25 }, nn.ConvTranspose2d{4, 32, padding = 1}:output_shape{1, 4, 15, 25})
    assert.are.same({ 1, 8, 30, 50 }, nn.ConvTranspose2d{4, 8, stride = 2, padding = "same"}:output_shape{1, 4, 15, 25})
    assert.are.same({ 1, 8, 30, 50 }, nn.ConvTranspose2d{4, 8, kernel_size = 1, stride = 2, padding = "same"}:output_shape{1, 4, 15, 25})
    -- (15-1)*2 - 2*1 + 3 + 1 = 30
    assert.are.same({ 1, 8, 30, 50 }, nn.ConvTranspose2d{4, 8, stride = 2, padding = 1, output_padding = 1}:output_shape{1, 4, 15, 25})
  end)

  it("is the adjoint of Conv2d with the same weights", function()
    local conv = nn.Conv2d{3, 5, bias = false, stride = 2, padding = 1}
    local convt = nn.ConvTranspose2d{5, 3, bias = false, stride = 2, padding = 1}
    convt.weight:copy(conv.weight)
    local x, g = dd.randn(2, 3, 7, 9), dd.randn(2, 5, 4, 5)
    local lhs = (conv:forward(x) * g):sum()
    local xt = convt:forward(g)
    assert.are.same({ 2, 3, 7, 9 }, xt:shape())
    local rhs = (x * xt):sum()
    assert(math.abs(lhs - rhs) < 1e-4 * (1 + math.abs(lhs)), ("%g vs %g"):format(lhs, rhs))
  end)

  it("backward gives dx of the input's shape and the bias gradient as dy's sums", function()
    local m = nn.ConvTranspose2d{4, 32, padding = "same"}
    local x = dd.randn(2, 4, 15, 25)
    m:forward(x)
    local dy = dd.randn(2, 32, 15, 25)
    local dx = m:backward(x, dy)
    assert.are.same({ 2, 4, 15, 25 }, dx:shape())
    local db = m:parameters()[2].grad
    for o = 1, 32, 7 do
      local s = dy:select(2, o):sum()
      assert(math.abs(db:get(o) - s) < 1e-4 * (1 + math.abs(s)), "db[" .. o .. "]")
    end
  end)

  it("names the layer and the sizes in its errors", function()
    local m = nn.ConvTranspose2d{4, 32}
    assert_contains(error_of(m.forward, m, dd.randn(1, 32, 15, 25)),
      "ConvTranspose2d", "input has 32 channels, layer expects 4", "(1,32,15,25)")
    assert_contains(error_of(m.forward, m, dd.randn(4, 15, 25)), "ConvTranspose2d", "4-d input", "(4,15,25)")
    local shrink = nn.ConvTranspose2d{1, 1, kernel_size = 1, padding = 2}
    assert_contains(error_of(shrink.forward, shrink, dd.randn(1, 1, 2, 9)),
      "ConvTranspose2d", "(1,1,2,9)", "output height would be -2")
    assert_contains(error_of(nn.ConvTranspose2d, { 4, 4, stride = 2, output_padding = 2 }),
      "ConvTranspose2d", "output_padding must be smaller than stride or dilation", "output_padding 2 with stride 2")
    assert_contains(error_of(nn.ConvTranspose2d, { 4, 4, padding = "same", stride = 2, output_padding = 1 }),
      "output_padding must be 0 with padding='same'")
    assert_contains(error_of(nn.ConvTranspose2d, { 4, 4, padding = "full" }), "unknown padding 'full'", "'same'")
    assert_contains(error_of(nn.ConvTranspose2d, { 4, 4, outpadding = 1 }), "unknown option 'outpadding'")
  end)
end)

describe("MaxPool2d", function()
  it("halves 120x200 to 60x100 (floor mode) and has no parameters", function()
    local m = nn.MaxPool2d{2}
    assert.are.equal(0, m:num_parameters())
    assert.are.same({ 8, 32, 60, 100 }, m:output_shape{8, 32, 120, 200})
    assert.are.same({ 8, 32, 15, 25 }, m:output_shape{8, 32, 30, 50})
    assert.are.same({ 1, 1, 3, 4 }, m:output_shape{1, 1, 7, 9})
    assert.are.same({ 1, 1, 5, 7 }, nn.MaxPool2d{3, stride = 1}:output_shape{1, 1, 7, 9})
    assert.are.same({ 1, 1, 4, 5 }, nn.MaxPool2d{3, stride = 2, padding = 1}:output_shape{1, 1, 7, 9})
  end)

  it("takes window maxima and routes the gradient to them", function()
    local m = nn.MaxPool2d{2}
    local x = dd.randn(2, 3, 6, 8)
    local y = m:forward(x)
    for _, idx in ipairs({ { 1, 1, 1, 1 }, { 2, 3, 3, 4 }, { 1, 2, 2, 3 } }) do
      local i, c, r, q = table.unpack(idx)
      local want = math.max(x:get(i, c, 2 * r - 1, 2 * q - 1), x:get(i, c, 2 * r - 1, 2 * q),
        x:get(i, c, 2 * r, 2 * q - 1), x:get(i, c, 2 * r, 2 * q))
      assert.are.equal(want, y:get(i, c, r, q))
    end
    local dy = dd.randn(2, 3, 3, 4)
    local dx = m:backward(x, dy)
    assert.are.same({ 2, 3, 6, 8 }, dx:shape())
    assert(math.abs(dx:sum() - dy:sum()) < 1e-4)
    assert.are.equal(y:get(2, 3, 3, 4) == x:get(2, 3, 6, 8) and dy:get(2, 3, 3, 4) or 0, dx:get(2, 3, 6, 8))
  end)

  it("refuses bad options and inputs by name", function()
    assert_contains(error_of(nn.MaxPool2d, { 2, stride = "two" }),
      "MaxPool2d", "stride must be an integer >= 1 or 'kernel_size'", "'two'")
    assert_contains(error_of(nn.MaxPool2d, { 0 }), "MaxPool2d", "kernel_size must be in [1,", "got 0")
    assert_contains(error_of(nn.MaxPool2d, { 3, padding = 2 }), "padding must be at most half of kernel_size")
    assert_contains(error_of(nn.MaxPool2d, { 2, size = 2 }), "unknown option 'size'")
    local m = nn.MaxPool2d{3}
    assert_contains(error_of(m.forward, m, dd.randn(1, 4, 2, 9)),
      "MaxPool2d", "(1,4,2,9)", "output height would be 0")
    assert_contains(error_of(m.forward, m, dd.randn(4, 9, 9)), "MaxPool2d", "4-d input", "(4,9,9)")
  end)
end)

describe("Upsample", function()
  it("doubles 15x25 to 30x50 by repeating pixels", function()
    local m = nn.Upsample{}
    assert.are.equal(0, m:num_parameters())
    assert.are.same({ 8, 32, 30, 50 }, m:output_shape{8, 32, 15, 25})
    assert.are.same({ 1, 2, 9, 12 }, nn.Upsample{3}:output_shape{1, 2, 3, 4})
    local x = dd.randn(1, 2, 3, 4)
    local y = m:forward(x)
    for r = 1, 6 do
      for q = 1, 8 do
        assert.are.equal(x:get(1, 2, (r + 1) // 2, (q + 1) // 2), y:get(1, 2, r, q))
      end
    end
    local dy = dd.randn(1, 2, 6, 8)
    local dx = m:backward(x, dy)
    local want = dy:get(1, 1, 3, 5) + dy:get(1, 1, 3, 6) + dy:get(1, 1, 4, 5) + dy:get(1, 1, 4, 6)
    assert(math.abs(dx:get(1, 1, 2, 3) - want) < 1e-5)
  end)

  it("refuses other modes and scales by name", function()
    assert_contains(error_of(nn.Upsample, { mode = "bilinear" }), "Upsample", "unknown mode 'bilinear'", "'nearest'")
    assert_contains(error_of(nn.Upsample, { 0 }), "Upsample", "scale_factor must be", "got 0")
    assert_contains(error_of(nn.Upsample, { 1.5 }), "scale_factor", "1.5")
    local m = nn.Upsample{}
    assert_contains(error_of(m.forward, m, dd.randn(32, 15, 25)), "Upsample", "4-d input", "(32,15,25)")
  end)
end)

describe("the original autoencoder's convolutional stacks", function()
  it("encode 120x200x1 to 15x25x8 and decode 15x25x4 to 120x200x1", function()
    local enc = {
      nn.Conv2d{1, 32}, nn.Conv2d{32, 32}, nn.MaxPool2d{2},
      nn.Conv2d{32, 32}, nn.Conv2d{32, 32}, nn.MaxPool2d{2},
      nn.Conv2d{32, 32}, nn.Conv2d{32, 32}, nn.MaxPool2d{2},
      nn.Conv2d{32, 32}, nn.Conv2d{32, 8},
    }
    local dec = {
      nn.ConvTranspose2d{4, 4, padding = "same"}, nn.ConvTranspose2d{4, 32, padding = "same"}, nn.Upsample{2},
      nn.ConvTranspose2d{32, 32, padding = "same"}, nn.ConvTranspose2d{32, 32, padding = "same"}, nn.Upsample{2},
      nn.ConvTranspose2d{32, 32, padding = "same"}, nn.ConvTranspose2d{32, 32, padding = "same"}, nn.Upsample{2},
      nn.ConvTranspose2d{32, 32, padding = "same"}, nn.ConvTranspose2d{32, 32, padding = "same"},
      nn.ConvTranspose2d{32, 1, padding = "same"},
    }
    local function run(stack, shape)
      local params = 0
      for _, m in ipairs(stack) do
        shape = m:output_shape(shape)
        params = params + m:num_parameters()
      end
      return shape, params
    end
    local s, p = run(enc, { 1, 1, 120, 200 })
    assert.are.same({ 1, 8, 15, 25 }, s)
    assert.are.equal(1660296 - 1536512 - 65664, p) -- the encoder without its two Dense layers
    s, p = run(dec, { 1, 4, 15, 25 })
    assert.are.same({ 1, 1, 120, 200 }, s)
    assert.are.equal(892657 - 66048 - 769500, p)
    -- and one real pass through the decoder's convolutions
    local x = dd.randn(1, 4, 15, 25)
    for _, m in ipairs(dec) do x = m:forward(x) end
    assert.are.equal("1x1x120x200", shape_of(x))
  end)
end)

describe("dd.set_conv_direct", function()
  it("switches stride-1 convolutions between the direct kernels and im2col + GEMM, same results", function()
    assert.is_true(dd.get_conv_direct())
    local function pass(m, x)
      m:zero_grad()
      local y = m:forward(x):clone()
      dd.manual_seed(SEED + 1)
      local dy = dd.randn(table.unpack(y:shape()))
      local dx = m:backward(x, dy):clone()
      return y, dx, m:parameters()[1].grad:clone()
    end
    for _, make in ipairs{
      function() return nn.Conv2d{8, 12, activation = "relu"} end,
      function() return nn.ConvTranspose2d{8, 8, padding = "same"} end,
    } do
      dd.manual_seed(SEED)
      local m = make()
      local x = dd.randn(2, 8, 9, 29)
      local y1, dx1, dw1 = pass(m, x)
      assert.is_true(dd.set_conv_direct(false)) -- returns the previous setting
      local ok, y2, dx2, dw2 = pcall(pass, m, x)
      dd.set_conv_direct(true)
      assert(ok, y2)
      assert.is_true(max_abs_diff(y1, y2) < 1e-4)
      assert.is_true(max_abs_diff(dx1, dx2) < 1e-4)
      assert.is_true(max_abs_diff(dw1, dw2) < 1e-3)
      assert.is_true(max_abs_diff(y1, y2) > 0 or max_abs_diff(dw1, dw2) > 0) -- two paths, not one
    end
    assert_contains(error_of(dd.set_conv_direct, 1), "set_conv_direct: on must be a boolean, got 1")
    assert_contains(error_of(dd.set_conv_direct), "got no value")
    assert.is_true(dd.get_conv_direct())
  end)
end)

-- The original's models as declared in models/: exact parameter counts,
-- summaries, and errors that name the failing layer deep inside.
describe("models/autoencoder.lua", function()
  local ae = dofile("models/autoencoder.lua"){}
  it("has the original's 2,552,953 parameters (encoder 1,660,296 + decoder 892,657)", function()
    assert.are.equal(1660296, ae.encoder:num_parameters())
    assert.are.equal(892657, ae.decoder:num_parameters())
    assert.are.equal(2552953, ae:num_parameters())
  end)
  it("maps (N, 1, 120, 200) to a 128-d code and back", function()
    assert.are.same({ 3, 128 }, ae.encoder:output_shape{ 3, 1, 120, 200 })
    assert.are.same({ 3, 1, 120, 200 }, ae:output_shape{ 3, 1, 120, 200 })
  end)
  it("prints a Keras-style summary with output shapes and the total", function()
    local s = tostring(ae.encoder)
    assert.truthy(s:find("(N, 32, 120, 200)", 1, true))
    assert.truthy(s:find("(N, 8, 15, 25)", 1, true))
    assert.truthy(s:find("Total params: 1,660,296", 1, true))
  end)
  it("reports a shape mismatch deep inside with the layer's index, kind and both shapes", function()
    local ok, err = pcall(ae.forward, ae, dd.zeros(2, 3, 120, 200))
    assert.is_false(ok)
    assert.truthy(err:find("in layer 1 (Sequential 'encoder')", 1, true), err)
    assert.truthy(err:find("in layer 1 (Conv2d)", 1, true), err)
    assert.truthy(err:find("(2,3,120,200)", 1, true), err)
    assert.truthy(err:find("3 channels", 1, true), err)
    assert.truthy(err:find("expects 1", 1, true), err)
  end)
  it("rejects unknown options", function()
    local ok, err = pcall(dofile("models/autoencoder.lua"), { latnet = 64 })
    assert.is_false(ok)
    assert.truthy(err:find("unknown option 'latnet'", 1, true), err)
  end)
end)

describe("models/autoencoder.lua variant='strided'", function()
  local ae = dofile("models/autoencoder.lua"){ variant = "strided" }
  it("maps (N, 1, 120, 200) to a 128-d code and back without a 3x3 convolution at full resolution", function()
    assert.are.same({ 3, 128 }, ae.encoder:output_shape{ 3, 1, 120, 200 })
    assert.are.same({ 3, 1, 120, 200 }, ae:output_shape{ 3, 1, 120, 200 })
    assert.are.equal(3208688, ae.encoder:num_parameters())
    assert.are.equal(3181553, ae.decoder:num_parameters())
    local s = tostring(ae)
    assert.truthy(s:find("Conv2d(1, 16, kernel_size=3, stride=2", 1, true), s)
    assert.truthy(s:find("(N, 16, 15, 25)", 1, true), s)
    assert.truthy(s:find("ConvTranspose2d(32, 1, kernel_size=4, stride=2, padding=1, activation='sigmoid')", 1, true), s)
  end)
  it("rejects an unknown variant, naming the known ones", function()
    local ok, err = pcall(dofile("models/autoencoder.lua"), { variant = "wide" })
    assert.is_false(ok)
    assert.truthy(err:find("unknown variant 'wide' (known: original, strided)", 1, true), err)
  end)
end)

describe("models/autoencoder.lua norm='batch'", function()
  it("normalises every convolution but the output's and the hidden dense layers, whose biases go", function()
    for _, variant in ipairs{ "original", "strided" } do
      local plain = dofile("models/autoencoder.lua"){ variant = variant }
      local ae = dofile("models/autoencoder.lua"){ variant = variant, norm = "batch" }
      local convs, bn2, bn1, extra = 0, 0, 0, 0
      for _, part in ipairs{ ae.encoder, ae.decoder } do
        for i, m in ipairs(part.modules) do
          if m.kind == "BatchNorm2d" or m.kind == "BatchNorm1d" then
            local prev = part.modules[i - 1]
            if m.kind == "BatchNorm2d" then
              bn2 = bn2 + 1
              assert.truthy(prev.kind == "Conv2d" or prev.kind == "ConvTranspose2d", prev.kind)
            else
              bn1 = bn1 + 1
              assert.equal("Linear", prev.kind)
              assert.equal(512, m.weight:numel())
            end
            assert.is_nil(prev.bias)
            assert.truthy(tostring(m):find("activation='relu'", 1, true), tostring(m))
            extra = extra + m:num_parameters() - m.weight:numel() -- 2C per layer, less the dropped bias (C)
          elseif m.kind == "Conv2d" or m.kind == "ConvTranspose2d" then
            convs = convs + 1
          end
        end
      end
      assert.are.equal(convs - 1, bn2, variant)
      assert.are.equal(2, bn1, variant) -- the 512-unit layers of the encoder and the decoder
      assert.are.equal(plain:num_parameters() + extra, ae:num_parameters(), variant)
      assert.are.same({ 2, 1, 120, 200 }, ae:output_shape{ 2, 1, 120, 200 })
      assert.are.equal("batch", ae.norm)
      -- the code's own layers keep their bias: normalize_code rescales them
      assert.equal("Linear", ae.encoder.modules[#ae.encoder.modules].kind)
      assert.truthy(ae.encoder.modules[#ae.encoder.modules].bias)
      assert.equal("Linear", ae.decoder.modules[1].kind)
    end
  end)
  it("rejects an unknown norm", function()
    local ok, err = pcall(dofile("models/autoencoder.lua"), { norm = "layer" })
    assert.is_false(ok)
    assert.truthy(err:find("unknown norm 'layer' (known: none, batch)", 1, true), err)
  end)
end)

describe("models/sequence.lua", function()
  it("notebook variant has 2,658,432 parameters", function()
    assert.are.equal(2658432, dofile("models/sequence.lua"){ variant = "notebook" }:num_parameters())
  end)
  it("paper variant has four LSTM layers", function()
    local m = dofile("models/sequence.lua"){ variant = "paper" }
    local n = 0
    for _, l in ipairs(m.modules) do if l.kind == "LSTM" then n = n + 1 end end
    assert.are.equal(4, n)
    assert.are.same({ 5, 128 }, m:output_shape{ 5, 10, 128 })
  end)
  it("mdn variant ends in a mixture-density head", function()
    local m = dofile("models/sequence.lua"){ variant = "mdn", mixtures = 5 }
    assert.are.equal("MDN", m.modules[#m.modules].kind)
    assert.are.same({ 5, 5 * (1 + 2 * 128) }, m:output_shape{ 5, 10, 128 })
  end)
  it("a wrong latent width names layer 1, the LSTM and both sizes", function()
    local m = dofile("models/sequence.lua"){}
    local ok, err = pcall(m.forward, m, dd.zeros(2, 10, 64))
    assert.is_false(ok)
    assert.truthy(err:find("in layer 1 (LSTM)", 1, true), err)
    assert.truthy(err:find("128", 1, true) and err:find("64", 1, true), err)
  end)
end)

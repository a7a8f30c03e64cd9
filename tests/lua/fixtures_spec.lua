-- PyTorch reference fixtures (tests/make_fixtures.py, run with Debian's
-- python3-torch): every layer kind in several configurations, the losses,
-- ten Adam steps, and the original's three full models. Tensors are compared
-- by relative error ||a - b|| / ||b|| <= 1e-4.
local TOL = 1e-4

local function rel(a, b)
  local num = (a - b):square():sum()
  local den = b:square():sum()
  return math.sqrt(num) / math.max(math.sqrt(den), 1e-12)
end

local function close(a, b, what)
  assert.are.same(b:shape(), a:shape(), what .. ": shape")
  local e = rel(a, b)
  assert(e <= TOL, string.format("%s: relative error %.3g > %g", what, e, TOL))
end

local layers, lmeta = dd.load("tests/fixtures/layers.safetensors")
local extra, emeta = dd.load("tests/fixtures/layers_extra.safetensors")

-- Every case of a layers file: load the parameters, compare the output, the
-- input gradient and every parameter gradient.
local function layer_cases(title, layers, cases)
  describe(title, function()
    for _, c in ipairs(cases) do
      it(c.name .. " (" .. c.kind .. ")", function()
        local opts = {}
        for k, v in pairs(c.opts) do opts[k] = v end
        local m = dd.nn[c.kind](opts)
        local sd = {}
        for _, p in ipairs(c.params) do sd[p] = layers[c.name .. ".param." .. p] end
        m:load_state_dict(sd)
        local x = layers[c.name .. ".x"]
        close(m:forward(x), layers[c.name .. ".y"], "output")
        m:zero_grad()
        close(m:backward(x, layers[c.name .. ".dy"]), layers[c.name .. ".dx"], "input gradient")
        local grads = {}
        for _, p in ipairs(m:parameters()) do grads[p.name] = p.grad end
        for _, p in ipairs(c.params) do
          local g = grads[p]
          if not g then -- PyTorch's bias pair: both halves get the summed bias's gradient
            g = grads[(p:gsub("bias_[ih][ih]_", "bias_"))]
          end
          close(g, layers[c.name .. ".grad." .. p], "gradient of " .. p)
        end
      end)
    end
  end)
end

layer_cases("PyTorch fixtures: layers", layers, dd.json.decode(lmeta.cases))
layer_cases("PyTorch fixtures: more layers", extra, dd.json.decode(emeta.cases))


-- A training step (batch statistics; running statistics updated), then
-- evaluation with the updated running statistics, on one layer.
describe("PyTorch fixtures: batch normalisation", function()
  for _, c in ipairs(dd.json.decode(emeta.bn_cases)) do
    it(c.name .. " (" .. c.kind .. ")", function()
      local m = dd.nn[c.kind](c.opts)
      local sd = {}
      for _, p in ipairs{ "weight", "bias", "running_mean", "running_var" } do sd[p] = extra[c.name .. ".param." .. p] end
      m:load_state_dict(sd)
      for _, mode in ipairs{ "train", "eval" } do
        local k = c.name .. "." .. mode .. "."
        m:train(mode == "train")
        m:zero_grad()
        local x = extra[k .. "x"]
        close(m:forward(x), extra[k .. "y"], mode .. " output")
        close(m:backward(x, extra[k .. "dy"]), extra[k .. "dx"], mode .. " input gradient")
        close(m:parameters()[1].grad, extra[k .. "grad.weight"], mode .. " gradient of weight")
        close(m:parameters()[2].grad, extra[k .. "grad.bias"], mode .. " gradient of bias")
        close(m.running_mean, extra[k .. "running_mean"], mode .. " running_mean")
        close(m.running_var, extra[k .. "running_var"], mode .. " running_var")
      end
    end)
  end
end)

local ot, ometa = dd.load("tests/fixtures/optim.safetensors")

describe("PyTorch fixtures: losses", function()
  it("MSELoss", function()
    local l = dd.nn.MSELoss()
    assert.is_true(math.abs(l:forward(ot["mse.y"], ot["mse.target"]) - ot["mse.loss"]:item()) <= 1e-6)
    close(l:backward(ot["mse.y"], ot["mse.target"]), ot["mse.dy"], "MSE gradient")
  end)
  it("BCELoss", function()
    local l = dd.nn.BCELoss()
    local v = l:forward(ot["bce.y"], ot["bce.target"])
    assert(math.abs(v - ot["bce.loss"]:item()) <= 1e-5 * math.abs(v), "BCE value " .. v)
    close(l:backward(ot["bce.y"], ot["bce.target"]), ot["bce.dy"], "BCE gradient")
  end)
  it("DiceLoss, foreground 0 (written out in torch ops)", function()
    local l = dd.nn.DiceLoss{ foreground = 0 }
    local v = l:forward(ot["dice.y"], ot["dice.target"])
    assert(math.abs(v - ot["dice.loss"]:item()) <= 1e-5 * math.abs(v), "Dice value " .. v)
    close(l:backward(ot["dice.y"], ot["dice.target"]), ot["dice.dy"], "Dice gradient")
  end)
  it("MDNLoss (written out in torch ops)", function()
    local info = dd.json.decode(ometa.mdn)
    local l = dd.nn.MDNLoss{mixtures = info.mixtures}
    local v = l:forward(ot["mdn.out"], ot["mdn.target"])
    assert(math.abs(v - ot["mdn.loss"]:item()) <= 1e-5 * math.abs(v), "MDN value " .. v)
    close(l:backward(ot["mdn.out"], ot["mdn.target"]), ot["mdn.dout"], "MDN gradient")
  end)
end)

describe("PyTorch fixtures: optimizer", function()
  it("ten Adam steps match torch.optim.Adam (eps_mode='torch')", function()
    local m = dd.nn.Sequential{dd.nn.Linear{5, 8}, dd.nn.ReLU(), dd.nn.Linear{8, 3}}
    m:load_state_dict{["1.weight"] = ot["adam.init.0.weight"], ["1.bias"] = ot["adam.init.0.bias"],
                      ["3.weight"] = ot["adam.init.2.weight"], ["3.bias"] = ot["adam.init.2.bias"]}
    local opt = dd.optim.Adam{m:parameters(), lr = 1e-2, eps = 1e-7, eps_mode = "torch"}
    local loss = dd.nn.MSELoss()
    local x, y = ot["adam.x"], ot["adam.y"]
    for step = 1, 10 do
      opt:zero_grad()
      local out = m:forward(x)
      local l = loss:forward(out, y)
      assert(math.abs(l - ot["adam.losses"]:get(step)) <= 1e-5 * math.abs(l), "loss at step " .. step)
      m:backward(x, loss:backward(out, y))
      opt:step()
    end
    local sd = m:state_dict()
    close(sd["1.weight"], ot["adam.final.0.weight"], "weight 1 after 10 steps")
    close(sd["1.bias"], ot["adam.final.0.bias"], "bias 1 after 10 steps")
    close(sd["3.weight"], ot["adam.final.2.weight"], "weight 3 after 10 steps")
    close(sd["3.bias"], ot["adam.final.2.bias"], "bias 3 after 10 steps")
  end)
end)

-- The full models: parameters and inputs from the generator's formula,
-- offset + scale * (2u - 1), u = frac(sin(12.9898 i + 78.233 salt) * 43758.5453),
-- in double rounded to float32 (see formula_fill in tests/make_fixtures.py).
local function formula_fill(t, salt, scale, offset)
  local flat = t:view(-1)
  offset = offset or 0
  local sin, floor = math.sin, math.floor
  for i = 0, flat:numel() - 1 do
    local h = sin(i * 12.9898 + salt * 78.233) * 43758.5453
    flat:set(i + 1, offset + scale * (2 * (h - floor(h)) - 1))
  end
  return t
end

local function glorot(fan_in, fan_out) return math.sqrt(6 / (fan_in + fan_out)) end

-- Mirrors model_params() of the generator: weighted layers in order, salts 1, 2, ...
local function fill_model(seq, salt)
  for _, m in ipairs(seq.modules) do
    local kind = m.kind
    if kind == "Conv2d" or kind == "ConvTranspose2d" or kind == "Linear" then
      local w = m.weight
      local s = w:shape()
      local fan_in, fan_out
      if kind == "Linear" then fan_in, fan_out = s[2], s[1]
      elseif kind == "Conv2d" then fan_in, fan_out = s[2] * 9, s[1] * 9
      else fan_in, fan_out = s[2] * 9, s[1] * 9 end
      formula_fill(w, salt, glorot(fan_in, fan_out))
      formula_fill(m.bias, salt + 0.25, 0.05, 0.02)
      salt = salt + 1
    end
  end
end

local mt = dd.load("tests/fixtures/models.safetensors")
local SAMPLES = 256

local function check_model(name, model, x)
  local y = model:forward(x)
  close(y, mt[name .. ".y"], name .. " output")
  model:zero_grad()
  local dy = formula_fill(dd.zeros(table.unpack(y:shape())), 0.5, 1.0)
  close(model:backward(x, dy), mt[name .. ".dx"], name .. " input gradient")
  for _, p in ipairs(model:parameters()) do
    local g = p.grad:contiguous():view(-1)
    local n = g:numel()
    local sample = dd.zeros(SAMPLES)
    for j = 0, SAMPLES - 1 do sample:set(j + 1, g:get((j * n) // SAMPLES + 1)) end
    close(sample, mt[name .. ".gsample." .. p.name], name .. " gradient of " .. p.name .. " (sampled)")
    local norm = math.sqrt(g:square():sum())
    local ref = mt[name .. ".gnorm." .. p.name]:item()
    assert(math.abs(norm - ref) <= TOL * ref, ("%s gradient norm of %s: %g vs %g"):format(name, p.name, norm, ref))
  end
end

describe("PyTorch fixtures: the original models", function()
  local ae = dofile("models/autoencoder.lua"){}
  it("encoder: output, input gradient, every parameter gradient", function()
    fill_model(ae.encoder, 1.0)
    check_model("encoder", ae.encoder, formula_fill(dd.zeros(2, 1, 120, 200), 0.1, 0.5, 0.5))
  end)
  it("decoder: output, input gradient, every parameter gradient", function()
    fill_model(ae.decoder, 20.0)
    check_model("decoder", ae.decoder, formula_fill(dd.zeros(2, 128), 0.2, 1.0, 0.5))
  end)
  it("sequence model (notebook, hard-sigmoid LSTMs, dropout off)", function()
    local seq = dofile("models/sequence.lua"){}
    seq:eval()
    local salt = 40.0
    for _, idx in ipairs{1, 3, 5} do
      local l = seq[idx]
      local s = l.weight_ih_l0:shape()
      local H = s[1] // 4
      formula_fill(l.weight_ih_l0, salt, glorot(s[2], 4 * H))
      formula_fill(l.weight_hh_l0, salt + 0.5, 1 / math.sqrt(H))
      formula_fill(l.bias_l0, salt + 0.75, 0.1)
      salt = salt + 1
    end
    formula_fill(seq[7].weight, salt, glorot(256, 128))
    formula_fill(seq[7].bias, salt + 0.25, 0.05, 0.02)
    check_model("sequence", seq, formula_fill(dd.zeros(4, 10, 128), 0.3, 0.5, 0.5))
  end)
end)

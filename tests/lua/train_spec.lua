-- End to end: a tiny convolutional autoencoder on a small synthetic set
-- (dark discs on white, like silhouettes) must lower its loss at least
-- tenfold in a few seconds, and one seed must give one loss curve.
local seed = tonumber(os.getenv("DD_TEST_SEED") or "1234")

local function discs(n, h, w)
  local x = dd.ones(n, 1, h, w)
  for i = 1, n do
    local cy, cx, r = 3 + dd.rand(1):item() * (h - 6), 3 + dd.rand(1):item() * (w - 6), 2 + dd.rand(1):item() * 3
    for y = 1, h do
      for xx = 1, w do
        local d = math.sqrt((y - cy) ^ 2 + (xx - cx) ^ 2)
        x:set(i, 1, y, xx, math.min(1, math.max(0, d - r + 0.5)))
      end
    end
  end
  return x
end

local function tiny_ae()
  local nn = dd.nn
  return nn.Sequential{
    nn.Conv2d{1, 8, padding = "same"}, nn.ReLU(), nn.MaxPool2d{2},
    nn.Conv2d{8, 8, padding = "same"}, nn.ReLU(), nn.MaxPool2d{2},
    nn.Flatten(), nn.Linear{8 * 4 * 4, 16}, nn.ReLU(),
    nn.Linear{16, 8 * 4 * 4}, nn.ReLU(), nn.Reshape{8, 4, 4},
    nn.Upsample{2}, nn.ConvTranspose2d{8, 8, padding = "same"}, nn.ReLU(),
    nn.Upsample{2}, nn.ConvTranspose2d{8, 1, padding = "same"}, nn.Sigmoid(),
  }
end

local function train(steps)
  dd.manual_seed(seed)
  local x = discs(32, 16, 16)
  local model = tiny_ae()
  local opt = dd.optim.Adam{model:parameters(), lr = 3e-3}
  local loss = dd.nn.MSELoss()
  local curve = {}
  for step = 1, steps do
    local idx = dd.randperm(32)
    local batch = dd.zeros(16, 1, 16, 16)
    for i = 1, 16 do batch[i] = x[idx:get(i)] end
    opt:zero_grad()
    local y = model:forward(batch)
    curve[step] = loss:forward(y, batch)
    model:backward(batch, loss:backward(y, batch))
    opt:step()
  end
  return curve
end

describe("training a tiny autoencoder (seed " .. seed .. ")", function()
  it("lowers the loss at least tenfold in seconds", function()
    local t0 = dd.clock()
    local curve = train(400)
    local first, last = curve[1], 0
    for i = #curve - 9, #curve do last = last + curve[i] / 10 end
    assert(last * 10 <= first, ("loss went from %.4f to %.4f"):format(first, last))
    assert(dd.clock() - t0 < 60, "took " .. (dd.clock() - t0) .. " s")
  end)
  it("repeats the same loss curve for the same seed", function()
    local a, b = train(20), train(20)
    for i = 1, 20 do assert.are.equal(a[i], b[i]) end
  end)
end)

-- experiments/demo.lua: a small real example until the Deep Dance pipeline
-- lands: a convolutional autoencoder learns 32x32 silhouettes of discs and
-- bars, prints its loss per epoch, and saves a checkpoint and its history.
-- Usage: deepdance experiments/demo.lua [--epochs N] [--seed S] [--out DIR]
local opts = { epochs = 8, seed = 1, out = "runs/demo" }
local i = 1
while arg[i] do
  local k, v = arg[i]:match("^%-%-(%w+)$"), arg[i + 1]
  if not k or opts[k] == nil or v == nil then
    error(("demo: unknown or incomplete option '%s' (known: --epochs N, --seed S, --out DIR)"):format(arg[i]), 0)
  end
  opts[k] = type(opts[k]) == "number" and assert(tonumber(v), "--" .. k .. " needs a number") or v
  i = i + 2
end
dd.manual_seed(opts.seed)
os.execute("mkdir -p " .. opts.out)

-- Data: 512 dark shapes on white.
local N, S = 512, 32
local x = dd.ones(N, 1, S, S)
for n = 1, N do
  local cy, cx = 6 + dd.rand(1):item() * (S - 12), 6 + dd.rand(1):item() * (S - 12)
  local r, bar = 3 + dd.rand(1):item() * 5, dd.rand(1):item() < 0.5
  for y = 1, S do
    for xx = 1, S do
      local d = bar and math.max(math.abs(y - cy) - r, math.abs(xx - cx) - 1.5) or math.sqrt((y - cy) ^ 2 + (xx - cx) ^ 2) - r
      x:set(n, 1, y, xx, math.min(1, math.max(0, d + 0.5)))
    end
  end
end

local nn = dd.nn
local model = nn.Sequential{
  nn.Conv2d{1, 16, padding = "same"}, nn.ReLU(), nn.MaxPool2d{2},
  nn.Conv2d{16, 16, padding = "same"}, nn.ReLU(), nn.MaxPool2d{2},
  nn.Flatten(), nn.Linear{16 * 8 * 8, 32},  -- a linear bottleneck: a ReLU here can die and freeze the model
  nn.Linear{32, 16 * 8 * 8}, nn.ReLU(), nn.Reshape{16, 8, 8},
  nn.Upsample{2}, nn.ConvTranspose2d{16, 16, padding = "same"}, nn.ReLU(),
  nn.Upsample{2}, nn.ConvTranspose2d{16, 1, padding = "same"}, nn.Sigmoid(),
  input_shape = { 1, S, S }, name = "demo_autoencoder",
}
-- Start the output at the data's mean brightness (mostly white): from 0.5 the
-- first updates push every decoder ReLU negative and the model dies into a
-- constant image (PyTorch does the same with this architecture).
local mean = x:mean()
model[#model - 1].bias:fill(math.log(mean / (1 - mean)))
print(model)
local opt = dd.optim.Adam{model:parameters(), lr = 1e-3}
local mse = nn.MSELoss()
local B = 32
local history = {}
local t0 = dd.clock()
for epoch = 1, opts.epochs do
  local perm, total, acc = dd.randperm(N), 0, 0
  for b = 0, N // B - 1 do
    local batch = dd.zeros(B, 1, S, S)
    for k = 1, B do batch[k] = x[perm:get(b * B + k)] end
    opt:zero_grad()
    local y = model:forward(batch)
    total = total + mse:forward(y, batch)
    acc = acc + dd.metrics.binary_accuracy(y, batch)
    model:backward(batch, mse:backward(y, batch))
    opt:step()
  end
  history[epoch] = { epoch = epoch, loss = total / (N // B), acc = acc / (N // B) }
  print(("epoch %2d  loss %.5f  binary acc %.4f  %.1f s"):format(epoch, history[epoch].loss, history[epoch].acc, dd.clock() - t0))
end
dd.nn.save(opts.out .. "/model.safetensors", model, { optimizer = opt, meta = { epochs = opts.epochs } })
local f = assert(io.open(opts.out .. "/history.json", "w"))
f:write(dd.json.encode(history, { indent = true }), "\n")
f:close()
print("wrote " .. opts.out .. "/model.safetensors and " .. opts.out .. "/history.json")

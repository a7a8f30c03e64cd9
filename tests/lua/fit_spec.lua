-- fit_spec.lua: dd.fit, dd.evaluate, dd.predict, dd.callbacks and the progress
-- display: history shape and averaging, the validation split, shuffling and
-- determinism, dataset sources, every callback, resume (in process and after a
-- real SIGKILL of a child process), strict options.
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/fit_spec.lua
local seed = tonumber(os.getenv("DD_TEST_SEED") or "1234")
print("# fit_spec seed: " .. seed)

local nn = dd.nn

local helpers = dofile("tests/lua/support/helpers.lua")
local quote = helpers.quote
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains
local slurp = helpers.slurp

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function snapshot(model)
  local out = {}
  for k, v in pairs(model:state_dict()) do out[k] = v:contiguous():view(-1):totable() end
  return out
end

-- Exact equality of two lists of numbers, naming the first difference.
local function assert_same_numbers(a, b, what)
  assert.equal(#a, #b, what .. ": lengths differ")
  for i = 1, #a do
    if a[i] ~= b[i] then error(("%s: element %d is %.17g, expected %.17g"):format(what, i, b[i], a[i]), 2) end
  end
end

-- An output sink for progress='lines'/'bar' that keeps the text.
local function sink()
  local s = { text = "" }
  function s:write(t) self.text = self.text .. t end
  return s
end

-- A small regression problem: y = x1 * x2 + 0.5 x3.
local function regression(n)
  local x = dd.randn(n, 3)
  local y = (x:narrow(2, 1, 1) * x:narrow(2, 2, 1) + x:narrow(2, 3, 1) * 0.5):contiguous()
  return x, y
end

local function mlp(dropout)
  local layers = { nn.Linear{3, 16}, nn.Tanh() }
  if dropout then layers[#layers + 1] = nn.Dropout{dropout} end
  layers[#layers + 1] = nn.Linear{16, 1}
  return nn.Sequential(layers)
end

-- A module that records what it sees and passes its input through.
local function probe(log)
  local p = { training = true, kind = "Probe" }
  function p:forward(x)
    log[#log + 1] = { training = self.training, rows = x:size(1), tensor = x, values = x:contiguous():view(-1):totable() }
    return x
  end
  function p:backward(_, dy) return dy end
  function p:parameters() return {} end
  function p:state_dict() return {} end
  function p:load_state_dict() return self end
  function p:zero_grad() return self end
  function p:train(on) self.training = on ~= false; return self end
  function p:eval() return self:train(false) end
  function p:num_parameters() return 0 end
  function p:output_shape(s) return s end
  return p
end

-- A stand-in for the uint8 frame cache: samples are Lua arrays of bytes,
-- batch(indices) converts only those samples to float in [0, 1] and records
-- every request.
local function byte_dataset(samples, shape, requests)
  local ds = {}
  function ds:size() return #samples end
  function ds:batch(indices)
    requests[#requests + 1] = { table.unpack(indices) }
    local out = dd.zeros(#indices, table.unpack(shape))
    local flat = out:view(#indices, -1)
    for j, i in ipairs(indices) do
      local bytes = samples[i]
      for k = 1, #bytes do flat:set(j, k, bytes[k] / 255) end
    end
    return out
  end
  return ds
end

-- Dark discs on white, as bytes: n samples of 1 x s x s.
local function disc_bytes(n, s)
  local samples = {}
  for i = 1, n do
    local cy, cx, r = 3 + dd.rand(1):item() * (s - 6), 3 + dd.rand(1):item() * (s - 6), 2 + dd.rand(1):item() * 2.5
    local bytes = {}
    for y = 1, s do
      for x = 1, s do
        local d = math.sqrt((y - cy) ^ 2 + (x - cx) ^ 2)
        bytes[#bytes + 1] = math.floor(255 * math.min(1, math.max(0, d - r + 0.5)) + 0.5)
      end
    end
    samples[i] = bytes
  end
  return samples
end

-- A tiny conv autoencoder for 1 x 16 x 16 frames.
local function tiny_ae()
  return nn.Sequential{
    nn.Conv2d{1, 8, padding = "same"}, nn.ReLU(), nn.MaxPool2d{2},
    nn.Conv2d{8, 8, padding = "same"}, nn.ReLU(), nn.MaxPool2d{2},
    nn.Flatten(), nn.Linear{8 * 4 * 4, 16},
    nn.Linear{16, 8 * 4 * 4}, nn.ReLU(), nn.Reshape{8, 4, 4},
    nn.Upsample{2}, nn.ConvTranspose2d{8, 8, padding = "same"}, nn.ReLU(),
    nn.Upsample{2}, nn.ConvTranspose2d{8, 1, padding = "same"}, nn.Sigmoid(),
  }
end

-- A metric that returns values[epoch] whatever the model does, with the
-- callback that tells it the epoch (put it first in the callbacks list).
local function scripted_metric(values)
  local epoch = 0
  local tracker = { on_epoch_begin = function(_, _, e) epoch = e end }
  return function() return values[epoch] end, tracker
end

local dir
before_each(function()
  dd.manual_seed(seed)
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. quote(dir)))
end)
after_each(function()
  if dir and dir:match("^/tmp/") then os.execute("rm -rf " .. quote(dir)) end
end)

describe("dd.fit", function()
  it("trains and returns a Keras-shaped history with sample-weighted means", function()
    local x, y = regression(50)
    local m = mlp()
    local opt = dd.optim.Adam{ m:parameters(), lr = 0.02 }
    local batches = {}
    local recorder = { on_batch_end = function(_, _, b, logs) batches[#batches + 1] = logs end }
    local E = 20
    local h = dd.fit{ model = m, loss = nn.MSELoss(), optimizer = opt, x = x, y = y, batch_size = 16, epochs = E,
      validation_split = 0.2, metrics = { "acc", mae = function(p, t) return (p - t):abs():mean() end },
      callbacks = { recorder }, progress = "none" }
    local keys = {}
    for k in pairs(h) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "acc", "epoch", "loss", "lr", "mae", "rows", "time", "val_acc", "val_loss", "val_mae" }, keys)
    for e = 1, E do
      assert.equal(e, h.epoch[e])
      assert.equal(0.02, h.lr[e])
    end
    for _, k in ipairs({ "epoch", "loss", "acc", "mae", "val_loss", "val_acc", "val_mae", "lr", "time", "rows" }) do
      assert.equal(E, #h[k], k)
    end
    assert.equal(h.val_loss[4], h.rows[4].val_loss)
    assert.equal(4, h.rows[4].epoch)
    assert(h.loss[E] < h.loss[1] / 2, ("loss %.4f -> %.4f"):format(h.loss[1], h.loss[E]))
    -- 40 training samples in batches of 16, 16 and 8: the epoch loss weights them by size
    assert.equal(3 * E, #batches)
    local sum, mae = 0, 0
    for b = 3 * E - 2, 3 * E do
      sum = sum + batches[b].loss * batches[b].size
      mae = mae + batches[b].mae * batches[b].size
    end
    assert.same({ 16, 16, 8 }, { batches[3 * E - 2].size, batches[3 * E - 1].size, batches[3 * E].size })
    assert.near(sum / 40, h.loss[E], 1e-12)
    assert.near(mae / 40, h.mae[E], 1e-12)
    -- validation: the last 10 samples with the final weights, in eval mode
    local last = dd.evaluate{ model = m, loss = nn.MSELoss(), x = x:narrow(1, 41, 10), y = y:narrow(1, 41, 10),
      metrics = { "acc" } }
    assert.near(last.loss, h.val_loss[E], 1e-6)
    assert.equal(last.acc, h.val_acc[E])
  end)

  it("validates on the last samples unshuffled, trains on the rest, in the right modes", function()
    local log = {}
    local x = (dd.arange(20) + 1):view(20, 1):contiguous()
    local lin = nn.Linear{1, 1}
    local m = nn.Sequential{ probe(log), lin }
    local h = dd.fit{ model = m, loss = nn.MSELoss(), optimizer = dd.optim.SGD{ m:parameters(), lr = 1e-3 }, x = x,
      batch_size = 4, epochs = 2, validation_split = 0.25, progress = "none" }
    assert.equal(2, #h.val_loss)
    -- per epoch: 15 training samples (4 batches), then 5 validation ones (2 batches)
    assert.equal(12, #log)
    for e = 0, 1 do
      local seen = {}
      for b = 1, 4 do
        local rec = log[e * 6 + b]
        assert.is_true(rec.training, "training batch in train mode")
        for _, v in ipairs(rec.values) do seen[#seen + 1] = v end
      end
      table.sort(seen)
      assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 }, seen)
      local v1, v2 = log[e * 6 + 5], log[e * 6 + 6]
      assert.is_false(v1.training)
      assert.is_false(v2.training)
      assert.same({ 4, 1 }, { v1.rows, v2.rows })
      assert.same({ 16, 17, 18, 19, 20 }, { v1.values[1], v1.values[2], v1.values[3], v1.values[4], v2.values[1] })
    end
    assert.is_true(m.training, "the model is back in train mode")
    -- full training batches reuse one buffer; the last, smaller one is a view of it
    assert.is_true(rawequal(log[1].tensor, log[2].tensor) and rawequal(log[2].tensor, log[3].tensor))
    assert.is_false(rawequal(log[3].tensor, log[4].tensor))
  end)

  it("shuffles with the seed: same seed, same curve; another seed, another curve; shuffle=false keeps order", function()
    local function run(s, shuffle)
      dd.manual_seed(seed)
      local x, y = regression(64)
      local m = mlp(0.2)
      local opt = dd.optim.Adam{ m:parameters(), lr = 0.01 }
      dd.manual_seed(s)
      return dd.fit{ model = m, loss = nn.MSELoss(), optimizer = opt, x = x, y = y, batch_size = 8, epochs = 4,
        validation_split = 0.25, shuffle = shuffle, progress = "none" }
    end
    local a, b, c = run(seed, true), run(seed, true), run(seed + 1, true)
    assert_same_numbers(a.loss, b.loss, "loss")
    assert_same_numbers(a.val_loss, b.val_loss, "val_loss")
    assert.are_not.equal(a.loss[1], c.loss[1])
    -- the order samples are seen in, per epoch of 10 samples
    local function orders(shuffle)
      local log = {}
      local m = nn.Sequential{ probe(log), nn.Linear{1, 1} }
      dd.fit{ model = m, loss = nn.MSELoss(), optimizer = dd.optim.SGD{ m:parameters(), lr = 1e-3 },
        x = (dd.arange(10) + 1):view(10, 1):contiguous(), batch_size = 3, epochs = 2, shuffle = shuffle,
        progress = "none" }
      local out = { {}, {} }
      for b, rec in ipairs(log) do
        for _, v in ipairs(rec.values) do table.insert(out[b <= 4 and 1 or 2], v) end
      end
      return out
    end
    local sorted = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }
    assert.same({ sorted, sorted }, orders(false))
    local shuffled = orders(true)
    assert.are_not.same(sorted, shuffled[1])
    assert.are_not.same(shuffled[1], shuffled[2])
    for e = 1, 2 do
      table.sort(shuffled[e])
      assert.same(sorted, shuffled[e])
    end
  end)

  it("trains a conv autoencoder from a uint8-like dataset asked only for batch-sized index lists", function()
    local requests = {}
    local ds = byte_dataset(disc_bytes(48, 16), { 1, 16, 16 }, requests)
    local ae = tiny_ae()
    local mean = 0.8
    ae[#ae - 1].bias:fill(math.log(mean / (1 - mean)))
    local t0 = dd.clock()
    local h = dd.fit{ model = ae, loss = nn.MSELoss(), optimizer = dd.optim.Adam{ ae:parameters(), lr = 3e-3 },
      x = ds, y = "x", batch_size = 8, epochs = 15, validation_split = 1 / 6, metrics = { "acc", "iou" },
      progress = "none" }
    assert(h.loss[15] < h.loss[1] / 2, ("loss %.4f -> %.4f"):format(h.loss[1], h.loss[15]))
    assert.equal(15, #h.val_acc)
    assert.equal(15, #h.val_iou)
    assert(h.acc[15] > 0.5 and h.acc[15] <= 1, "acc is binary accuracy for (N,1,H,W): " .. h.acc[15])
    -- 40 train + 8 validation samples per epoch, never more than a batch per request
    local requested, val_seen = 0, {}
    for _, r in ipairs(requests) do
      assert(#r >= 1 and #r <= 8, "a request of " .. #r .. " samples")
      requested = requested + #r
      for _, i in ipairs(r) do if i > 40 then val_seen[#val_seen + 1] = i end end
    end
    assert.equal(15 * 48, requested)
    assert.same({ 41, 42, 43, 44, 45, 46, 47, 48 }, { table.unpack(val_seen, 1, 8) })
    assert(dd.clock() - t0 < 20, "took " .. (dd.clock() - t0) .. " s")
    -- a target function and validation_data work with datasets too
    local calls = 0
    local h2 = dd.fit{ model = ae, loss = nn.MSELoss(), optimizer = dd.optim.Adam{ ae:parameters(), lr = 1e-3 },
      x = ds, y = function(indices, xb) calls = calls + 1; assert.equal(#indices, xb:size(1)); return xb end,
      validation_data = { ds }, batch_size = 16, epochs = 1, progress = "none" }
    assert.equal(3, calls)
    assert.equal(1, #h2.val_loss)
  end)
end)

describe("callbacks", function()
  -- A fast fit of a linear model on 8 samples for callback tests.
  local function quick(epochs, callbacks, extra)
    local x, y = regression(8)
    local m = nn.Linear{3, 1}
    local opt = dd.optim.SGD{ m:parameters(), lr = 1 }
    local opts = { model = m, loss = nn.MSELoss(), optimizer = opt, x = x, y = y, batch_size = 8, epochs = epochs,
      callbacks = callbacks, progress = "none" }
    for k, v in pairs(extra or {}) do opts[k] = v end
    local h = dd.fit(opts)
    return h, m, opt
  end

  it("ReduceLROnPlateau lowers lr after patience, honours cooldown, min_lr and mode", function()
    local score, tracker = scripted_metric({ 1, 1, 1, 1, 1, 1, 1, 1 })
    local plateau = dd.callbacks.ReduceLROnPlateau{ monitor = "score", patience = 2, factor = 0.5, verbose = false }
    local h, _, opt = quick(8, { tracker, plateau }, { metrics = { score = score } })
    assert.same({ 1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.125 }, h.lr)
    assert.equal(0.125, opt.lr)
    score, tracker = scripted_metric({ 1, 1, 1, 1, 1, 1, 1, 1 })
    h = quick(8, { tracker, dd.callbacks.ReduceLROnPlateau{ monitor = "score", patience = 2, factor = 0.5,
      cooldown = 2, verbose = false } }, { metrics = { score = score } })
    assert.same({ 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25 }, h.lr)
    score, tracker = scripted_metric({ 1, 1, 1, 1, 1, 1, 1, 1 })
    h = quick(8, { tracker, dd.callbacks.ReduceLROnPlateau{ monitor = "score", patience = 1, factor = 0.5,
      min_lr = 0.3, verbose = false } }, { metrics = { score = score } })
    assert.same({ 1, 1, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3 }, h.lr)
    -- 'auto' reads "..._acc" as higher-is-better; improvements below min_delta do not count
    local rising, t2 = scripted_metric({ 0.1, 0.2, 0.3, 0.4, 0.5, 0.6 })
    h = quick(6, { t2, dd.callbacks.ReduceLROnPlateau{ monitor = "my_acc", patience = 1, verbose = false } },
      { metrics = { my_acc = rising } })
    assert.same({ 1, 1, 1, 1, 1, 1 }, h.lr)
    local creeping, t3 = scripted_metric({ 1, 0.99999, 0.99998, 0.99997 })
    h = quick(4, { t3, dd.callbacks.ReduceLROnPlateau{ monitor = "score", patience = 1, factor = 0.1,
      min_delta = 1e-4, verbose = false } }, { metrics = { score = creeping } })
    assert.near(0.01, h.lr[4], 1e-15)
  end)

  it("CosineDecay lowers lr batch by batch along half a cosine, and a resumed run continues the curve", function()
    local used = {}
    local recorder = { on_batch_end = function(_, ctx) used[#used + 1] = ctx.optimizer.lr end }
    local h = quick(4, { recorder, dd.callbacks.CosineDecay{ lr = 0.5, min_lr = 0.1 } }, { batch_size = 4 })
    assert.equal(8, #used) -- 4 epochs of 2 batches
    for s = 0, 7 do
      assert.near(0.1 + 0.4 * (1 + math.cos(math.pi * s / 8)) / 2, used[s + 1], 1e-15)
    end
    assert.equal(0.5, used[1])
    assert.near(0.1, h.lr[4], 1e-15) -- logged at the end of the last epoch: the floor
    local dir = os.tmpname()
    os.remove(dir)
    dd.manual_seed(seed)
    local straight = quick(4, { dd.callbacks.CosineDecay{ lr = 0.5 } }, { batch_size = 4, checkpoint_dir = dir .. "/a" })
    -- a run of 4 epochs that dies at the start of epoch 3, then resumed
    local dying = true
    dd.manual_seed(seed)
    local crash = { on_epoch_begin = function(_, _, epoch) if dying and epoch == 3 then error("killed", 0) end end }
    assert.equal("killed", error_of(quick, 4, { crash, dd.callbacks.CosineDecay{ lr = 0.5 } },
      { batch_size = 4, checkpoint_dir = dir .. "/b" }))
    dying = false
    dd.manual_seed(seed)
    local resumed = quick(4, { crash, dd.callbacks.CosineDecay{ lr = 0.5 } }, { batch_size = 4, checkpoint_dir = dir .. "/b",
      resume = true })
    os.execute("rm -rf " .. quote(dir))
    assert_same_numbers(straight.lr, resumed.lr, "lr")
    assert_same_numbers(straight.loss, resumed.loss, "loss")
    assert_contains(error_of(dd.callbacks.CosineDecay, {}), "CosineDecay: option 'lr' is required")
    assert_contains(error_of(dd.callbacks.CosineDecay, { lr = 0.1, min_lr = 0.2 }), "min_lr (0.2) must not exceed lr (0.1)")
    assert_contains(error_of(dd.callbacks.CosineDecay, { lr = 0.1, floor = 0 }), "unknown option 'floor' (known: lr, min_lr)")
  end)

  it("EarlyStopping stops after patience and restore_best_weights restores the best epoch", function()
    for _, restore in ipairs({ true, false }) do
      local score, tracker = scripted_metric({ 1, 0.5, 0.6, 0.7, 0.8, 0.9 })
      local weights = {}
      local keep = { on_epoch_end = function(_, ctx, e) weights[e] = snapshot(ctx.model) end }
      local out = sink()
      local h, m = quick(6, { tracker, keep, dd.callbacks.EarlyStopping{ monitor = "score", patience = 2,
        restore_best_weights = restore } }, { metrics = { score = score }, progress = "lines", output = out })
      assert.same({ 1, 2, 3, 4 }, h.epoch)
      assert.same(restore and weights[2] or weights[4], snapshot(m))
      assert.are_not.same(weights[2], weights[4])
      assert_contains(out.text, "Epoch 4: EarlyStopping: no improvement of score for 2 epochs")
    end
  end)

  it("ModelCheckpoint writes best and last atomically and they load", function()
    local score, tracker = scripted_metric({ 3, 1, 2, 0.5, 4 })
    local weights = {}
    local keep = { on_epoch_end = function(_, ctx, e) weights[e] = snapshot(ctx.model) end }
    local ck = dir .. "/mc"
    local _, m, opt = quick(5, { tracker, keep, dd.callbacks.ModelCheckpoint{ ck, monitor = "score" } },
      { metrics = { score = score } })
    local best_model = nn.Linear{3, 1}
    local meta = dd.nn.load(ck .. "/best.safetensors", best_model)
    assert.equal(4, meta.epoch)
    assert.equal(0.5, meta.logs.score)
    assert.same(weights[4], snapshot(best_model))
    local last_model = nn.Linear{3, 1}
    local last_opt = dd.optim.SGD{ last_model:parameters(), lr = 0.1 }
    meta = dd.nn.load(ck .. "/last.safetensors", last_model, last_opt)
    assert.equal(5, meta.epoch)
    assert.same(snapshot(m), snapshot(last_model))
    assert.equal(opt.step_count, last_opt.step_count)
    local listing = io.popen("ls -a " .. quote(ck)):read("a")
    assert.is_nil(listing:find("tmp", 1, true), "no temporary files left: " .. listing)
  end)

  it("CSVLogger writes a header and one row per epoch", function()
    local score, tracker = scripted_metric({ 3, 1, 2 })
    local h = quick(3, { tracker, dd.callbacks.CSVLogger{ dir .. "/log.csv" } }, { metrics = { score = score } })
    local lines = {}
    for line in slurp(dir .. "/log.csv"):gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(4, #lines)
    assert.equal("epoch,loss,score,lr,time", lines[1])
    for e = 1, 3 do
      local cells = {}
      for c in lines[e + 1]:gmatch("[^,]+") do cells[#cells + 1] = c end
      assert.equal(tostring(e), cells[1])
      assert.near(h.loss[e], tonumber(cells[2]), 1e-9 * math.abs(h.loss[e]))
      assert.equal(({ 3, 1, 2 })[e], tonumber(cells[3]))
    end
    assert.is_false(file_exists(dir .. "/log.csv.tmp"))
  end)

  it("checks their options strictly", function()
    assert_contains(error_of(dd.callbacks.ReduceLROnPlateau, { pateince = 3 }),
      "ReduceLROnPlateau: unknown option 'pateince' (known: monitor, factor, patience, min_lr, mode, min_delta, cooldown, verbose)")
    assert_contains(error_of(dd.callbacks.ReduceLROnPlateau, { factor = 1 }), "option 'factor' must be a number in (0, 1), got 1")
    assert_contains(error_of(dd.callbacks.EarlyStopping, { patience = 1.5 }), "option 'patience' must be an integer >= 0, got 1.5")
    assert_contains(error_of(dd.callbacks.EarlyStopping, { mode = "maximum" }), "option 'mode' must be 'auto', 'min' or 'max', got 'maximum'")
    assert_contains(error_of(dd.callbacks.ModelCheckpoint, {}), "ModelCheckpoint: option 'dir' is required")
    assert_contains(error_of(dd.callbacks.CSVLogger, { "a.csv", path = "b.csv" }), "option 'path' given twice")
    assert_contains(error_of(dd.callbacks.CSVLogger, { "a.csv", sep = ";" }), "unknown option 'sep' (known: path, separator)")
    -- the error points at the caller's line
    local function make() local cb = dd.callbacks.EarlyStopping{ bogus = 1 }; return cb end
    assert_contains(error_of(make), "fit_spec.lua:")
    local err = error_of(quick, 1, { dd.callbacks.EarlyStopping{ monitor = "val_acc" } })
    assert_contains(err, "EarlyStopping: monitor 'val_acc' is not logged by this run (logged: loss, lr, time)")
  end)
end)

describe("resume", function()
  -- A run with everything that carries state across epochs: shuffling,
  -- dropout (the RNG), Adam, ReduceLROnPlateau that fires every epoch once
  -- its best is set, EarlyStopping holding best weights (tensors in its
  -- state) and a CSV log.
  local function run(epochs, ckdir, init_seed, csv, extra)
    dd.manual_seed(seed)
    local x, y = regression(60)
    dd.manual_seed(init_seed)
    local m = mlp(0.25)
    local opt = dd.optim.Adam{ m:parameters(), lr = 0.02 }
    local opts = { model = m, loss = nn.MSELoss(), optimizer = opt, x = x, y = y, batch_size = 16,
      epochs = epochs, validation_split = 0.2, metrics = { "acc" }, checkpoint_dir = ckdir, resume = true,
      progress = "none", callbacks = {
        dd.callbacks.ReduceLROnPlateau{ patience = 1, factor = 0.7, min_delta = 0.05, verbose = false },
        dd.callbacks.EarlyStopping{ patience = 100, restore_best_weights = true },
        dd.callbacks.CSVLogger{ csv },
      } }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return dd.fit(opts), m, opt
  end

  local function csv_without_time(path)
    return (slurp(path):gsub(",[^,\n]*\n", "\n"))
  end

  it("3 epochs, then a fresh model and optimizer resumed for 3 more, equal 6 straight epochs exactly", function()
    local straight, ms, os_ = run(6, dir .. "/a", seed, dir .. "/a.csv")
    local first = run(3, dir .. "/b", seed, dir .. "/b.csv")
    assert.equal(3, #first.loss)
    -- a torn ending: the CSV got a row for epoch 4 before the kill, the checkpoint did not
    local f = assert(io.open(dir .. "/b.csv", "a"))
    f:write("4,9,9,9,9,9,9\n")
    f:close()
    local out = sink()
    local resumed, mr, or_ = run(6, dir .. "/b", seed + 77, dir .. "/b.csv", { progress = "lines", output = out })
    assert_contains(out.text, "resume: continuing " .. dir .. "/b/last.safetensors after epoch 3")
    for _, k in ipairs({ "loss", "val_loss", "acc", "val_acc", "lr" }) do
      assert_same_numbers(straight[k], resumed[k], k)
    end
    assert(straight.lr[6] < straight.lr[1], "ReduceLROnPlateau fired: " .. table.concat(straight.lr, ", "))
    assert.same({ 1, 2, 3, 4, 5, 6 }, resumed.epoch)
    assert.same(snapshot(ms), snapshot(mr))
    assert.same(os_:state_dict().m:totable(), or_:state_dict().m:totable())
    assert.equal(os_.step_count, or_.step_count)
    assert.equal(csv_without_time(dir .. "/a.csv"), csv_without_time(dir .. "/b.csv"))
    -- one side file for EarlyStopping's best weights, the current one
    local listing = io.popen("ls " .. quote(dir .. "/b")):read("a")
    assert.equal("callbacks-epoch0006.safetensors\nlast.safetensors\n", listing)
  end)

  it("keeps EarlyStopping's stop and best weights across a resume", function()
    local function es_run(epochs, ckdir)
      dd.manual_seed(seed)
      local x, y = regression(8)
      local m = nn.Linear{3, 1}
      local score, tracker = scripted_metric({ 1, 0.5, 0.6, 0.7, 0.8, 0.9 })
      local h = dd.fit{ model = m, loss = nn.MSELoss(), optimizer = dd.optim.SGD{ m:parameters(), lr = 0.5 }, x = x,
        y = y, batch_size = 4, epochs = epochs, metrics = { score = score }, checkpoint_dir = ckdir, resume = true,
        progress = "none", callbacks = { tracker,
          dd.callbacks.EarlyStopping{ monitor = "score", patience = 2, restore_best_weights = true, verbose = false } } }
      return h, m
    end
    local hs, ms = es_run(6, dir .. "/s")
    es_run(3, dir .. "/r")
    local hr, mr = es_run(6, dir .. "/r")
    assert.same({ 1, 2, 3, 4 }, hs.epoch)
    assert.same(hs.epoch, hr.epoch)
    assert.same(snapshot(ms), snapshot(mr))
    -- resuming a run that has stopped trains no more
    local again, ma = es_run(6, dir .. "/r")
    assert.same({ 1, 2, 3, 4 }, again.epoch)
    assert.same(snapshot(ms), snapshot(ma))
  end)

  it("starts fresh without a checkpoint, refuses to overwrite one, and rejects a different run", function()
    local x, y = regression(8)
    local m = nn.Linear{3, 1}
    local function fit(extra)
      local opts = { model = m, loss = nn.MSELoss(), optimizer = dd.optim.SGD{ m:parameters(), lr = 0.1 }, x = x, y = y,
        epochs = 1, checkpoint_dir = dir .. "/c", progress = "lines", output = sink() }
      for k, v in pairs(extra) do opts[k] = v end
      dd.fit(opts)
      return opts.output.text
    end
    assert_contains(fit{ resume = true }, "resume: no checkpoint at " .. dir .. "/c/last.safetensors, starting from epoch 1")
    assert_contains(error_of(fit, {}), "last.safetensors exists: pass resume=true to continue that run")
    assert_contains(error_of(fit, { resume = true, metrics = { "acc" } }), "logged {loss, lr, time}; this run logs {loss, acc, lr, time}")
    assert_contains(error_of(fit, { resume = true, callbacks = { dd.callbacks.CSVLogger{ dir .. "/x.csv" } } }),
      "was saved with callbacks {}; this run has {CSVLogger}")
    local other = nn.Linear{3, 2}
    assert_contains(error_of(dd.fit, { model = other, loss = nn.MSELoss(), optimizer = dd.optim.SGD{ other:parameters(), lr = 0.1 },
      x = x, y = dd.zeros(8, 2), epochs = 2, checkpoint_dir = dir .. "/c", resume = true, progress = "none" }),
      "does not match the model")
    assert_contains(error_of(fit, { resume = true, epochs = 2, optimizer = dd.optim.Adam{ m:parameters() } }),
      "dd.fit: resume: dd.nn.load: " .. dir .. "/c/last.safetensors: optimizer: Adam:load_state_dict: unexpected entry")
  end)

  it("continues a child process killed by SIGKILL mid-epoch exactly like an uninterrupted one", function()
    local script = dir .. "/train.lua"
    local f = assert(io.open(script, "w"))
    f:write(([=[
      local out, mode = arg[1], arg[2]
      dd.manual_seed(%d)
      local x = dd.randn(60, 3)
      local y = (x:narrow(2, 1, 1) * x:narrow(2, 2, 1)):contiguous()
      local m = dd.nn.Sequential{ dd.nn.Linear{3, 16}, dd.nn.Tanh(), dd.nn.Dropout{0.25}, dd.nn.Linear{16, 1} }
      local opt = dd.optim.Adam{ m:parameters(), lr = 0.02 }
      local killer = { on_batch_end = function(_, ctx, batch)
        if mode == "kill" and ctx.epoch == 4 and batch == 2 then os.execute("kill -KILL $PPID") end
      end }
      local h = dd.fit{ model = m, loss = dd.nn.MSELoss(), optimizer = opt, x = x, y = y, batch_size = 16, epochs = 6,
        validation_split = 0.2, checkpoint_dir = out .. "/ck", resume = true, progress = "lines",
        callbacks = { killer, dd.callbacks.ReduceLROnPlateau{ patience = 1, factor = 0.7, min_delta = 0.05 },
          dd.callbacks.CSVLogger{ out .. "/log.csv" } } }
      local lines = {}
      for _, k in ipairs({ "epoch", "loss", "val_loss", "lr" }) do
        local cells = {}
        for i, v in ipairs(h[k]) do cells[i] = ("%%.17g"):format(v) end
        lines[#lines + 1] = k .. " " .. table.concat(cells, " ")
      end
      local f = assert(io.open(out .. "/history.txt", "w"))
      f:write(table.concat(lines, "\n"), "\n")
      f:close()
      dd.save(out .. "/final.safetensors", m:state_dict())
    ]=]):format(seed))
    f:close()
    local bin = dd.home .. "/deepdance"
    local function child(out, mode)
      os.execute("mkdir -p " .. quote(out))
      local ok, how, code = os.execute(("timeout -s KILL 60 %s %s %s %s >>%s 2>&1"):format(quote(bin), quote(script),
        quote(out), mode, quote(out .. "/stdout.txt")))
      return ok, how, code
    end
    local ok, how, code = child(dir .. "/straight", "run")
    assert(ok, ("uninterrupted child failed (%s %s): %s"):format(how, code, slurp(dir .. "/straight/stdout.txt")))
    ok, how, code = child(dir .. "/killed", "kill")
    assert.is_falsy(ok)
    assert.equal(137, code) -- the shell's status for a child killed by SIGKILL
    assert.is_false(file_exists(dir .. "/killed/history.txt"))
    local meta = dd.nn.load(dir .. "/killed/ck/last.safetensors", dd.nn.Sequential{ dd.nn.Linear{3, 16}, dd.nn.Tanh(),
      dd.nn.Dropout{0.25}, dd.nn.Linear{16, 1} })
    assert.equal(3, meta.fit.epoch)
    ok, how, code = child(dir .. "/killed", "run")
    assert(ok, ("resumed child failed (%s %s): %s"):format(how, code, slurp(dir .. "/killed/stdout.txt")))
    assert_contains(slurp(dir .. "/killed/stdout.txt"), "after epoch 3")
    assert.equal(slurp(dir .. "/straight/history.txt"), slurp(dir .. "/killed/history.txt"))
    local a, b = dd.load(dir .. "/straight/final.safetensors"), dd.load(dir .. "/killed/final.safetensors")
    for k, v in pairs(a) do assert.same(v:totable(), b[k]:totable(), k) end
    assert.equal(csv_without_time(dir .. "/straight/log.csv"), csv_without_time(dir .. "/killed/log.csv"))
  end)
end)

describe("dd.evaluate and dd.predict", function()
  it("predict batches a Tensor or a dataset in eval mode; evaluate averages over samples", function()
    local x, y = regression(37)
    local m = mlp(0.5)
    local p = dd.predict{ model = m, x = x, batch_size = 10 }
    m:eval()
    local whole = m:forward(x):clone()
    m:train()
    assert.same({ 37, 1 }, p:shape())
    assert.same(whole:totable(), p:totable())
    assert.is_true(m.training)
    local requests = {}
    local samples = {}
    for i = 1, 37 do samples[i] = { math.floor(i * 6.5) % 256, (i * 37) % 256, i } end
    local ds = byte_dataset(samples, { 3 }, requests)
    local pd = dd.predict{ model = m, x = ds, batch_size = 16 }
    assert.same({ 16, 16, 5 }, { #requests[1], #requests[2], #requests[3] })
    local xd = dd.zeros(37, 3)
    for i = 1, 37 do xd[i] = dd.tensor(samples[i]) / 255 end
    m:eval()
    assert.same(m:forward(xd):totable(), pd:totable())
    local r = dd.evaluate{ model = m, loss = nn.MSELoss(), x = x, y = y, batch_size = 8 }
    assert.near(nn.MSELoss():forward(m:forward(x), y), r.loss, 1e-6)
    assert.is_false(m.training, "evaluate puts back the mode it found")
  end)
end)

describe("progress", function()
  local function fit(mode)
    local x, y = regression(40)
    local m = nn.Linear{3, 1}
    local out = sink()
    dd.fit{ model = m, loss = nn.MSELoss(), optimizer = dd.optim.SGD{ m:parameters(), lr = 0.1 }, x = x, y = y,
      batch_size = 8, epochs = 2, validation_split = 0.25, metrics = { "acc" }, progress = mode, output = out }
    return out.text
  end

  it("prints one line per epoch in 'lines' mode, a bar in 'bar' mode, nothing in 'none'", function()
    local text = fit("lines")
    local lines = {}
    for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal("Training on 30 samples, validating on 10, 2 epochs of 4 batches", lines[1])
    assert.equal(3, #lines)
    assert.truthy(lines[2]:match("^Epoch 1/2 %- %d+%.%ds %- loss: [%d.e-]+ %- acc: [%d.]+ %- val_loss: [%d.e-]+ %- val_acc: [%d.]+ %- lr: 0%.1$"),
      lines[2])
    assert.is_nil(text:find("\r", 1, true))
    local bar = fit("bar")
    assert_contains(bar, "\rEpoch 2/2 4/4 [====================] - ETA: 0s - loss: ")
    assert.truthy(bar:find("\rEpoch 2/2 %- %d+%.%ds %- loss: .* %- lr: 0%.1\n$"))
    assert.equal("", fit("none"))
    assert.equal("0.0123", dd.progress.format_value(0.012345))
    assert.equal("1.2345e-04", dd.progress.format_value(0.00012345))
  end)
end)

describe("strict options", function()
  local x, y = regression(10)
  local m = nn.Linear{3, 1}
  local function fit(changes)
    local opts = { model = m, loss = nn.MSELoss(), optimizer = dd.optim.SGD{ m:parameters(), lr = 0.1 }, x = x, y = y,
      progress = "none" }
    for k, v in pairs(changes) do opts[k] = v ~= "nil" and v or nil end
    local h = dd.fit(opts) -- not a tail call, so errors name this line
    return h
  end

  it("names unknown options and the known ones, at the caller's line", function()
    local err = error_of(fit, { epoch = 3 })
    assert_contains(err, "dd.fit: unknown option 'epoch' (known: model, loss, optimizer, x, y, batch_size, epochs, "
      .. "validation_split, validation_data, shuffle, metrics, callbacks, checkpoint_dir, resume, progress, output)")
    assert_contains(err, "fit_spec.lua:")
    assert_contains(error_of(dd.evaluate, { model = m, x = x, metrics = { "acc" }, batch = 3 }),
      "dd.evaluate: unknown option 'batch' (known: model, loss, x, y, batch_size, metrics)")
    assert_contains(error_of(dd.predict, { model = m, x = x, y = y }), "dd.predict: unknown option 'y' (known: model, x, batch_size)")
  end)

  it("checks types and values", function()
    assert_contains(error_of(fit, { batch_size = 0 }), "option 'batch_size' must be an integer >= 1, got 0")
    assert_contains(error_of(fit, { epochs = "3" }), "option 'epochs' must be an integer >= 1, got '3'")
    assert_contains(error_of(fit, { validation_split = 1 }), "option 'validation_split' must be a number in [0, 1), got 1")
    assert_contains(error_of(fit, { validation_split = 0.95 }), "validation_split=0.95 of 10 samples leaves 0 for training and 10 for validation")
    assert_contains(error_of(fit, { shuffle = 1 }), "option 'shuffle' must be a boolean, got 1")
    assert_contains(error_of(fit, { model = "nil" }), "dd.fit: option 'model' is required")
    assert_contains(error_of(fit, { loss = dd.nn.Linear{1, 1} ~= nil and 3 }), "option 'loss' must be a loss like dd.nn.MSELoss()")
    assert_contains(error_of(fit, { optimizer = {} }), "option 'optimizer' must be an optimizer like dd.optim.Adam")
    assert_contains(error_of(fit, { x = "frames" }), "x must be a Tensor (samples first) or a dataset with size() and batch(indices), got 'frames'")
    assert_contains(error_of(fit, { y = dd.zeros(9, 1) }), "y has 9 samples but x has 10")
    assert_contains(error_of(fit, { y = "y" }), "y must be a Tensor, a dataset, a function or 'x', got 'y'")
    assert_contains(error_of(fit, { metrics = { "accuracy2" } }), "unknown metric 'accuracy2' (known: acc, accuracy, binary_accuracy, categorical_accuracy, iou")
    assert_contains(error_of(fit, { metrics = { function() return 1 end } }), "metrics[1] is a function without a name")
    assert_contains(error_of(fit, { metrics = { val_x = function() return 1 end } }), "metric name 'val_x' is reserved")
    assert_contains(error_of(fit, { callbacks = { { on_epoch_ends = function() end } } }), "callbacks[1] has an unknown hook 'on_epoch_ends'")
    assert_contains(error_of(fit, { validation_split = 0.5, validation_data = { x, y } }), "give validation_split or validation_data, not both")
    assert_contains(error_of(fit, { validation_data = { x, y, 3 } }), "option 'validation_data' must be {x} or {x, y}")
    assert_contains(error_of(fit, { resume = true }), "resume=true needs checkpoint_dir")
    assert_contains(error_of(fit, { progress = "fancy" }), "option 'progress' must be 'bar', 'lines' or 'none', got 'fancy'")
    local bad = { size = function() return 10 end, batch = function(_, idx) return dd.zeros(#idx + 1, 3) end }
    assert_contains(error_of(fit, { x = bad, y = "x" }), "dd.fit: x:batch() was asked for 10 samples and returned a Tensor of shape (11,3)")
    assert_contains(error_of(fit, { metrics = { bad = function() return "high" end } }), "dd.fit: metric 'bad' returned 'high', expected a number")
  end)
end)

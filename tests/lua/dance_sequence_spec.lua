-- dance_sequence_spec.lua: the sequence half of dd.dance: latents and windows,
-- train_sequence (notebook, mdn, auto-conditioning, the latents cache),
-- load_sequence, generate (stateful and sliding, modes, seeds), interpolate
-- and the video writers. Tiny stand-ins keep it fast: a dense 8x8-frame
-- "autoencoder", LSTMs of 16 units, an 8-d sine-wave latent trajectory.
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/dance_sequence_spec.lua

local SEED = tonumber(os.getenv("DD_TEST_SEED") or "") or 1234
print("# dance_sequence_spec: seed " .. SEED .. " (DD_TEST_SEED)")

if not (dd.dance and dd.dance.train_sequence) then
  assert(loadfile(dd.home .. "/lua/deepdance/dance/init.lua"))(dd)
end

local helpers = dofile("tests/lua/support/helpers.lua")
local quote = helpers.quote
local max_diff = helpers.max_diff
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local tmpdirs = {}
local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. quote(d)))
  tmpdirs[#tmpdirs + 1] = d
  return d
end

-- An 8-d periodic trajectory: every latent is predictable from the ten before it.
local function sine_latents(n, d, period)
  local z = dd.zeros(n, d)
  for t = 1, n do
    for j = 1, d do z:set(t, j, 0.5 + 0.4 * math.sin(2 * math.pi * t / period + 0.7 * j)) end
  end
  return z
end

-- A stand-in autoencoder for 8x8 grey frames with an 8-d latent.
local function fake_ae()
  local nn = dd.nn
  local encoder = nn.Sequential{ nn.Flatten(), nn.Linear{64, 8}, nn.ReLU(), input_shape = {1, 8, 8} }
  local decoder = nn.Sequential{ nn.Linear{8, 64}, nn.Sigmoid(), nn.Reshape{1, 8, 8}, input_shape = {8} }
  encoder:eval()
  decoder:eval()
  return { encoder = encoder, decoder = decoder, latent = 8 }
end

-- A frame cache of n 8x8 frames: a bright square moving over a dark field.
local function write_frames(path, n)
  local w = dd.data.frame_writer{ channels = 1, height = 8, width = 8 }
  for i = 1, n do
    local f = dd.full({1, 8, 8}, 0.1)
    local r, c = (i % 5) + 1, ((i * 2) % 5) + 1
    f:narrow(2, r, 3):narrow(3, c, 3):fill(0.9)
    w:add(f)
  end
  w:save(path, { format = "deepdance-frames" })
  return dd.data.frames(path)
end

-- A run directory with 60 16x24 frames (a dark square moving on white) in
-- DIR/f.safetensors and a small untrained autoencoder in DIR/ae: dir, ae.
local function ae_run()
  local dir = tmpdir()
  local w = dd.data.frame_writer{ channels = 1, height = 16, width = 24 }
  for i = 1, 60 do
    local f = dd.ones(1, 16, 24)
    f:narrow(2, 2 + i % 6, 8):narrow(3, 2 + (i * 3) % 12, 8):fill(0)
    w:add(f)
  end
  w:save(dir .. "/f.safetensors", { format = "deepdance-frames" })
  local options = { filters = 4, latent = 8, height = 16, width = 24 }
  local ae = dofile(dd.home .. "/models/autoencoder.lua")(options)
  os.execute("mkdir -p " .. quote(dir .. "/ae"))
  dd.nn.save(dir .. "/ae/best.safetensors", ae, { meta = { epoch = 1, model_options = options } })
  return dir, ae
end

local function small_seq(variant, extra)
  local opts = { variant = variant, latent = 8, units = {16, 16} }
  for k, v in pairs(extra or {}) do opts[k] = v end
  local m = dofile(dd.home .. "/models/sequence.lua")(opts)
  m:eval()
  m.look_back = 10
  return m
end

local quiet = { write = function() end }

teardown(function()
  for _, d in ipairs(tmpdirs) do
    if d:match("^/tmp/") then os.execute("rm -rf " .. quote(d)) end
  end
end)

before_each(function() dd.manual_seed(SEED) end)

-- n frames written to a cache in a new directory, as a FrameSet and as one
-- Tensor, and the stand-in autoencoder: dir, fs, frames, ae.
local function cached_frames(n)
  local dir = tmpdir()
  local fs = write_frames(dir .. "/f.safetensors", n)
  local all = {}
  for i = 1, n do all[i] = i end
  return dir, fs, fs:batch(all), fake_ae()
end

describe("dd.dance latents", function()
  it("windows: the L latents before t predict t", function()
    local z = dd.arange(60):view(20, 3):contiguous()
    local x, y = dd.dance.windows(z, 4)
    assert.are.same({16, 4, 3}, x:shape())
    assert.are.same({16, 3}, y:shape())
    for i = 1, 16 do
      assert.are.equal(0, max_diff(x[i], z:narrow(1, i, 4)))
      assert.are.equal(0, max_diff(y[i], z[i + 4]))
    end
    assert_contains(error_of(dd.dance.windows, z, 20), "no window")
  end)

  it("encode and decode run in batches, the same as one forward pass", function()
    local _, fs, frames, ae = cached_frames(37)
    local z = dd.dance.encode(ae, fs, { batch_size = 8 })
    assert.are.same({37, 8}, z:shape())
    assert.is_true(max_diff(z, ae.encoder:forward(frames)) < 1e-6)
    -- another batch size is another GEMM shape: OpenBLAS's kernels may round
    -- the tail rows differently (1 ulp with OPENBLAS_CORETYPE=Haswell); the
    -- same batch size repeats bit for bit
    assert.is_true(max_diff(z, dd.dance.encode(ae, frames, { batch_size = 5 })) < 1e-6)
    assert.are.equal(0, max_diff(z, dd.dance.encode(ae, frames, { batch_size = 8 })))
    local back = dd.dance.decode(ae, z, { batch_size = 6 })
    assert.are.same({37, 1, 8, 8}, back:shape())
    assert.is_true(max_diff(back, ae.decoder:forward(z)) < 1e-6)
    assert_contains(error_of(dd.dance.encode, ae, fs, { batchsize = 3 }), "unknown option 'batchsize'")
  end)

  it("encode flip=true mirrors every frame before encoding; prepare_latents caches the mirror apart", function()
    local dir, fs, frames, ae = cached_frames(37)
    local want = ae.encoder:forward(dd.vision.flip_shift(frames, { flip = true })):clone()
    local z = dd.dance.encode(ae, fs, { batch_size = 8, flip = true })
    assert.is_true(max_diff(z, want) < 1e-6)
    assert.is_true(max_diff(dd.dance.encode(ae, frames, { batch_size = 8, flip = true }), want) < 1e-6)
    local plain = dd.dance.encode(ae, fs, { batch_size = 8 })
    assert.is_true(max_diff(z, plain) > 1e-3, "the frames are not mirror images of themselves")
    assert_contains(error_of(dd.dance.encode, ae, fs, { flip = "yes" }), "option 'flip'")
    -- the two caches live side by side and each is reused
    local ae_dir = dir .. "/ae"
    os.execute("mkdir -p " .. quote(ae_dir))
    dd.nn.save(ae_dir .. "/best.safetensors", dd.nn.Sequential{ ae.encoder, ae.decoder }, { meta = { epoch = 1 } })
    local args = { ae_dir = ae_dir, ae = ae, data = dir .. "/f.safetensors", out = dir .. "/seq", output = quiet }
    local p1 = dd.dance.prepare_latents(args)
    args.flip = true
    local f1, reused_f1 = dd.dance.prepare_latents(args)
    local f2, reused_f2 = dd.dance.prepare_latents(args)
    args.flip = nil
    local p2, reused_p2 = dd.dance.prepare_latents(args)
    assert.is_false(reused_f1)
    assert.is_true(reused_f2 and reused_p2)
    assert.is_true(exists(dir .. "/seq/latents_flip.safetensors"))
    assert.is_true(max_diff(f1, want) < 1e-6)
    assert.are.equal(0, max_diff(f1, f2))
    assert.are.equal(0, max_diff(p1, p2))
  end)

  it("window_set segments: each segment is a sequence of its own, no window crosses its start", function()
    local z = sine_latents(60, 8, 23)
    local L = 4
    local ws = dd.dance.window_set{ latents = z, look_back = L, segments = { { 1, 30 }, { 31, 60 } } }
    assert.are.equal(52, ws:size()) -- targets 5..30 and 35..60
    local y = ws:targets()
    local idx = {}
    for i = 1, 52 do idx[i] = i end
    local x, t = ws:batch(idx):clone(), y:batch(idx):clone()
    for i = 1, 52 do
      local row = i <= 26 and i + L or i - 26 + 30 + L
      assert.are.equal(0, max_diff(t[i], z[row]), "target of sample " .. i)
      assert.are.equal(0, max_diff(x[i], z:narrow(1, row - L, L)), "window of sample " .. i)
    end
    -- one segment is the plain window set
    local one = dd.dance.window_set{ latents = z, look_back = L, segments = { { 1, 60 } } }
    local plain = dd.dance.window_set{ latents = z, look_back = L }
    assert.are.equal(plain:size(), one:size())
    assert.are.equal(0, max_diff(one:batch{ 1, 17, 56 }, plain:batch{ 1, 17, 56 }))
    -- auto-conditioning's context before a segment's start is that start repeated:
    -- sample 27 (target 35, window 31..34), k = 2: its position 3 is predicted
    -- from ext rows 3..6 of rows 27..34 clamped to 31, i.e. rows 31, 31, 31, 32
    local model = small_seq("notebook")
    model.look_back = L
    model:train()
    local ac = dd.dance.window_set{ latents = z, look_back = L, segments = { { 1, 30 }, { 31, 60 } }, model = model,
                                    autocondition = 2 }
    local xa = ac:batch{ 27 }:clone()
    model:eval()
    local ctx = dd.zeros(1, L, 8)
    ctx[1][1], ctx[1][2], ctx[1][3], ctx[1][4] = z[31], z[31], z[31], z[32]
    local want = model:forward(ctx):clone()
    assert.is_true(max_diff(xa[1][3], want[1]) < 1e-6)
    assert.are.equal(0, max_diff(xa[1][1], z[31]))
    assert.are.equal(0, max_diff(xa[1][2], z[32]))
    assert_contains(error_of(dd.dance.window_set, { latents = z, look_back = L, first = 5, segments = { { 1, 30 } } }),
      "not both")
    assert_contains(error_of(dd.dance.window_set, { latents = z, look_back = L, segments = { { 1, 30 }, { 31, 34 } } }),
      "segment 2 must be {first_row, last_row} within 1..60 holding more than look_back = 4 rows, got {31, 34}")
    assert_contains(error_of(dd.dance.window_set, { latents = z, look_back = L, segments = { { 1, 61 } } }), "segment 1")
    assert_contains(error_of(dd.dance.window_set, { latents = z, look_back = L, segments = {} }), "option 'segments'")
  end)

  it("the latents cache is reused until the autoencoder checkpoint changes", function()
    local dir = tmpdir()
    write_frames(dir .. "/f.safetensors", 30)
    local ae = fake_ae()
    local ae_dir = dir .. "/ae"
    os.execute("mkdir -p " .. quote(ae_dir))
    local encoder_and_decoder = dd.nn.Sequential{ ae.encoder, ae.decoder }
    dd.nn.save(ae_dir .. "/best.safetensors", encoder_and_decoder, { meta = { epoch = 1 } })
    local args = { ae_dir = ae_dir, ae = ae, data = dir .. "/f.safetensors", out = dir .. "/seq", output = quiet }
    local z1, reused1 = dd.dance.prepare_latents(args)
    local z2, reused2 = dd.dance.prepare_latents(args)
    assert.is_false(reused1)
    assert.is_true(reused2)
    assert.are.equal(0, max_diff(z1, z2))
    -- the same header (same RNG state and meta) but other weights: encoded again
    local state = dd.rng_state()
    ae.encoder[2].weight:mul_(2)
    dd.set_rng_state(state)
    dd.nn.save(ae_dir .. "/best.safetensors", encoder_and_decoder, { meta = { epoch = 1 } })
    local z3, reused3 = dd.dance.prepare_latents(args)
    assert.is_false(reused3)
    assert.is_true(max_diff(z1, z3) > 1e-3)
  end)
end)

describe("dd.dance.train_sequence", function()
  it("learns a sine-wave trajectory with the notebook variant, and load_sequence restores it", function()
    local out = tmpdir() .. "/seq"
    local z = sine_latents(400, 8, 23)
    local history, model = dd.dance.train_sequence{ latents = z, out = out, units = {16, 16}, epochs = 12,
      batch_size = 32, lr = 3e-3, split = 320, seed = SEED, progress = "none", output = quiet }
    local v = history.val_loss
    assert.are.equal(12, #v)
    assert(v[#v] < 0.5 * v[1], ("val_loss %g -> %g did not halve"):format(v[1], v[#v]))
    assert.is_number(history.val_acc[1])
    for _, f in ipairs({ "best.safetensors", "last.safetensors", "history.csv", "sequence.json" }) do
      assert(exists(out .. "/" .. f), "missing " .. f)
    end
    local seq, info = dd.dance.load_sequence(out)
    assert.are.equal(10, seq.look_back)
    assert.are.equal("notebook", seq.variant)
    assert.are.equal(8, seq.latent)
    assert.are.same({16, 16}, info.model_options.units)
    assert.is_false(seq.training)
    -- the best epoch's weights: its validation loss is the minimum
    local val = dd.dance.window_set{ latents = z, look_back = 10, first = 331, last = 400 }
    local r = dd.evaluate{ model = seq, loss = dd.nn.MSELoss(), x = val, y = val:targets(), batch_size = 64 }
    local best = math.huge
    for _, x in ipairs(v) do best = math.min(best, x) end
    assert.is_true(math.abs(r.loss - best) < 1e-5)
  end)

  it("learns with the mdn variant (negative log-likelihood falls)", function()
    local out = tmpdir() .. "/mdn"
    local z = sine_latents(400, 8, 23)
    local history = dd.dance.train_sequence{ latents = z, out = out, variant = "mdn", mixtures = 3, units = {16, 16},
      epochs = 10, batch_size = 32, lr = 3e-3, split = 0.8, seed = SEED, progress = "none", output = quiet }
    local v = history.val_loss
    assert(v[#v] < v[1] - 2, ("mdn val_loss %g -> %g"):format(v[1], v[#v]))
    assert(history.val_mse[#history.val_mse] < history.val_mse[1], "mixture-mean MSE did not fall")
    local seq = dd.dance.load_sequence(out)
    assert.are.equal("mdn", seq.variant)
    assert.is_not_nil(seq.mdn)
  end)

  it("lr_schedule='cosine' decays the learning rate from lr to min_lr over the run; 'constant' keeps it", function()
    local z = sine_latents(200, 4, 23)
    local function run(extra)
      local args = { latents = z, out = tmpdir() .. "/lr", units = {8}, epochs = 4, batch_size = 16, lr = 1e-2,
        split = 160, seed = SEED, progress = "none", output = quiet }
      for k, v in pairs(extra) do args[k] = v end
      local history = dd.dance.train_sequence(args)
      return history, dd.json.decode(io.open(args.out .. "/sequence.json"):read("a"))
    end
    local h, info = run{ lr_schedule = "cosine", min_lr = 1e-4 }
    assert.are.equal("cosine", info.lr_schedule)
    assert.are.equal(1e-4, info.min_lr)
    for e = 2, 4 do assert(h.lr[e] < h.lr[e - 1], ("lr rose at epoch %d: %g -> %g"):format(e, h.lr[e - 1], h.lr[e])) end
    assert(h.lr[4] < 2e-4 and h.lr[4] >= 1e-4, "last epoch's lr near min_lr, got " .. h.lr[4])
    local hc, infoc = run{}
    assert.are.equal("constant", infoc.lr_schedule)
    for e = 1, 4 do assert.are.equal(1e-2, hc.lr[e]) end
    assert_contains(error_of(dd.dance.train_sequence, { latents = z, out = tmpdir(), lr_schedule = "step" }),
      "lr_schedule")
    assert_contains(error_of(dd.dance.train_sequence, { latents = z, out = tmpdir(), min_lr = -1 }), "min_lr")
  end)

  it("head_init='data' starts the output at the targets' mean (and the MDN's sigmas at their std), min_sigma floors them",
    function()
    -- latents with large offsets and small, unequal spreads, one of them constant
    local z = sine_latents(200, 4, 23) * dd.tensor{ 0.1, 0.3, 0.05, 0 } + dd.tensor{ 2, 5, 1, 0 }
    local L, n_train = 10, 160
    local targets = z:narrow(1, L + 1, n_train - L)
    local mean = targets:mean(1):view(-1)
    local std = (targets - mean:view(1, 4)):square():mean(1):view(-1):sqrt()
    local function trained(variant, extra)
      local args = { latents = z, out = tmpdir() .. "/" .. variant, variant = variant, units = {8}, epochs = 1,
        batch_size = 16, lr = 1e-12, split = n_train, seed = SEED, progress = "none", output = quiet, head_init = "data" }
      for k, v in pairs(extra or {}) do args[k] = v end
      local _, model = dd.dance.train_sequence(args)
      return model
    end
    local nb = trained("notebook")
    assert(max_diff(nb.modules[#nb.modules - 1].bias, mean) < 1e-5, "notebook bias = the targets' mean")
    local f = 0.01
    local mdn = trained("mdn", { mixtures = 2, min_sigma = f })
    local out = mdn:forward(z:narrow(1, 1, L):view(1, L, 4))
    mdn.mdn:zero_grad()
    local K, D = 2, 4
    for j = 0, K - 1 do
      local mu = out:narrow(2, K + j * D + 1, D):view(-1)
      local sigma = out:narrow(2, K + K * D + j * D + 1, D):view(-1):exp()
      -- the weights are Glorot-small against these offsets: the outputs sit near the biases
      assert(max_diff(mu, mean) < 0.5, "component " .. j .. " mean")
      for e = 1, D do
        local want = math.max(std:get(e), f)
        assert(math.abs(math.log(sigma:get(e)) - math.log(want)) < 0.7,
          ("component %d sigma[%d] = %g, want about %g"):format(j, e, sigma:get(e), want))
        assert(sigma:get(e) >= f * (1 - 1e-5), "floored at min_sigma")
      end
    end
    assert_contains(error_of(dd.dance.train_sequence, { latents = z, out = tmpdir(), head_init = "mean" }), "head_init")
    assert_contains(error_of(dd.dance.train_sequence, { latents = z, out = tmpdir(), min_sigma = 0.1 }), "mdn variant")
  end)

  it("auto-conditioning replaces the generated positions by the model's own predictions", function()
    local z = sine_latents(200, 8, 23)
    local model = small_seq("notebook")
    model:train()
    local k, L = 2, 10
    local ac = dd.dance.window_set{ latents = z, look_back = L, model = model, autocondition = k }
    local gt = dd.dance.window_set{ latents = z, look_back = L }
    local idx = { 15, 3, 40 }
    local xa, xg = ac:batch(idx):clone(), gt:batch(idx):clone()
    assert.is_true(model.training, "the model is back in training mode")
    for p = 1, L do
      local d = max_diff(xa:select(2, p), xg:select(2, p))
      if ((p - 1) // k) % 2 == 0 then
        assert.are.equal(0, d, "position " .. p .. " is ground truth")
      else
        assert(d > 1e-4, "position " .. p .. " is generated")
      end
    end
    -- sample 15 is the window 15..24 before target 25; its position 3 (latent 17)
    -- is predicted in eval mode from latents 7..16, all ground truth
    model:eval()
    local want = model:forward(z:narrow(1, 7, L):view(1, L, 8)):clone()
    assert.is_true(max_diff(xa[1][3], want[1]) < 1e-6)
    -- training with it runs and learns
    local out = tmpdir() .. "/ac"
    local history = dd.dance.train_sequence{ latents = sine_latents(400, 8, 23), out = out, units = {16, 16},
      epochs = 6, batch_size = 32, lr = 3e-3, split = 320, seed = SEED, autocondition = 5, noise = 0.01,
      progress = "none", output = quiet }
    assert(history.val_loss[6] < history.val_loss[1], "val_loss fell with auto-conditioning")
    assert_contains(error_of(dd.dance.window_set, { latents = z, look_back = 10, model = model, autocondition = 10 }),
      "must be < look_back")
  end)

  it("encodes a frame cache with the autoencoder of ae_dir, caches the latents and resumes", function()
    if not dd.dance.load_autoencoder then
      pending("dd.dance.load_autoencoder (lua/deepdance/dance/autoencoder.lua) is not there")
      return
    end
    local dir, ae = ae_run()
    local lines = {}
    local capture = { write = function(_, ...) lines[#lines + 1] = table.concat({ ... }) end }
    local args = { ae_dir = dir .. "/ae", data = dir .. "/f.safetensors", out = dir .. "/seq", units = {16, 16},
      split = 40, epochs = 2, batch_size = 16, seed = SEED, progress = "none", output = capture }
    local h1 = dd.dance.train_sequence(args)
    local cached = dd.load(dir .. "/seq/latents.safetensors").latents
    ae:eval()
    assert.are.same({60, 8}, cached:shape())
    local frames = dd.data.frames(dir .. "/f.safetensors")
    assert.is_true(max_diff(cached:narrow(1, 1, 5), ae.encoder:forward(frames:batch{1, 2, 3, 4, 5})) < 1e-5)
    args.resume, args.epochs = true, 3
    lines = {}
    local h2 = dd.dance.train_sequence(args)
    assert.are.same({1, 2, 3}, h2.epoch)
    assert.are.equal(h1.val_loss[2], h2.val_loss[2])
    assert_contains(table.concat(lines, "\n"), "latents: reusing")
  end)

  it("mirror=true trains on the mirrored training frames too, validation on the real ones", function()
    local dir, ae = ae_run()
    local lines = {}
    local args = { ae_dir = dir .. "/ae", data = dir .. "/f.safetensors", out = dir .. "/seq", units = {16, 16},
      split = 40, epochs = 1, batch_size = 16, seed = SEED, progress = "lines", mirror = true,
      output = { write = function(_, ...) lines[#lines + 1] = table.concat({ ... }) end } }
    dd.dance.train_sequence(args)
    local text = table.concat(lines, "\n")
    -- 40 training latents give 30 windows, and 30 more mirrored; 20 validation latents 10
    assert_contains(text, "Training on 60 samples, validating on 10")
    local flipped = dd.load(dir .. "/seq/latents_flip.safetensors").latents
    ae:eval()
    local frames = dd.data.frames(dir .. "/f.safetensors")
    local want = ae.encoder:forward(dd.vision.flip_shift(frames:batch{ 3, 4 }, { flip = true }))
    assert.is_true(max_diff(flipped:narrow(1, 3, 2), want) < 1e-5)
    local info = dd.json.decode(io.open(dir .. "/seq/sequence.json"):read("a"))
    assert.is_true(info.mirror)
    assert.are.equal(40, info.n_train)
    args.mirror, lines = nil, {}
    args.out = dir .. "/plain"
    dd.dance.train_sequence(args)
    assert_contains(table.concat(lines, "\n"), "Training on 30 samples, validating on 10")
    assert_contains(error_of(dd.dance.train_sequence, { latents = sine_latents(50, 8, 23), out = tmpdir(), mirror = true }),
      "'mirror' encodes the mirrored frames: give 'ae_dir'/'ae' and 'data', not 'latents'")
    assert_contains(error_of(dd.dance.train_sequence, { latents = sine_latents(50, 8, 23), out = tmpdir(), mirror = 1 }),
      "option 'mirror'")
  end)

  it("a resumed run with auto-conditioning and noise continues exactly", function()
    local z = sine_latents(300, 8, 23)
    local function run(out, epochs, resume)
      return dd.dance.train_sequence{ latents = z, out = out, variant = "mdn", mixtures = 2, units = {16, 16},
        epochs = epochs, batch_size = 32, split = 240, seed = SEED, autocondition = 5, autocondition_fraction = 0.5,
        noise = 0.02, resume = resume, progress = "none", output = quiet }
    end
    local a, b = tmpdir() .. "/a", tmpdir() .. "/b"
    local straight = run(a, 4)
    run(b, 2)
    dd.manual_seed(SEED + 1)
    local resumed = run(b, 4, true)
    assert.are.same(straight.loss, resumed.loss)
    assert.are.same(straight.val_loss, resumed.val_loss)
  end)

  it("refuses unknown options and impossible splits", function()
    local z = sine_latents(50, 8, 23)
    assert_contains(error_of(dd.dance.train_sequence, { latents = z, out = tmpdir(), epoch = 3 }), "unknown option 'epoch'")
    assert_contains(error_of(dd.dance.train_sequence, { latents = z, out = tmpdir(), split = 45, output = quiet }),
      "each part needs more than look_back")
    assert_contains(error_of(dd.dance.train_sequence, { latents = z, out = tmpdir(), mixtures = 3 }), "mdn variant")
  end)
end)

describe("dd.dance.generate", function()
  it("stateful and sliding windows agree on the first prediction", function()
    for _, variant in ipairs({ "notebook", "mdn", "paper" }) do
      local seq = small_seq(variant, variant == "paper" and { units = {16, 16, 12} } or nil)
      local seed = dd.rand(10, 8)
      local a = dd.dance.generate{ seq = seq, seed = seed, steps = 6, window = "stateful", mode = "deterministic" }
      local b = dd.dance.generate{ seq = seq, seed = seed, steps = 6, window = "sliding", mode = "deterministic" }
      assert.are.same({6, 8}, a:shape())
      assert(max_diff(a[1], b[1]) < 1e-5, variant .. ": first predictions differ by " .. max_diff(a[1], b[1]))
      -- sliding is exactly the paper's loop: a forward pass over the last 10 latents
      local hist = dd.zeros(16, 8)
      hist:narrow(1, 1, 10):copy(seed)
      for s = 1, 6 do
        local out = seq:forward(hist:narrow(1, s, 10):view(1, 10, 8))
        hist[10 + s] = seq.mdn and seq.mdn:sample(out, 0)[1] or out[1]
      end
      assert.are.equal(0, max_diff(b, hist:narrow(1, 11, 6)))
    end
  end)

  it("deterministic generation repeats exactly; sampling repeats with the seed and differs without", function()
    local seq = small_seq("notebook")
    local seed = dd.rand(10, 8)
    local a = dd.dance.generate{ seq = seq, seed = seed, steps = 20 }
    local b = dd.dance.generate{ seq = seq, seed = seed, steps = 20 }
    assert.are.equal(0, max_diff(a, b))
    local function noisy(s)
      dd.manual_seed(s)
      return dd.dance.generate{ seq = seq, seed = "random", steps = 20, noise = 0.05 }
    end
    local n1, n2, n3 = noisy(7), noisy(7), noisy(8)
    assert.are.equal(0, max_diff(n1, n2))
    assert.is_true(max_diff(n1, n3) > 1e-3)
    assert.is_true(n1:min() >= 0, "a ReLU model's noisy latents are clamped at 0")

    local mdn = small_seq("mdn", { mixtures = 3 })
    local function sampled(s, window)
      dd.manual_seed(s)
      return dd.dance.generate{ seq = mdn, seed = seed, steps = 20, temperature = 0.8, window = window }
    end
    local m1, m2, m3 = sampled(7), sampled(7), sampled(8)
    assert.are.equal(0, max_diff(m1, m2))
    assert.is_true(max_diff(m1, m3) > 1e-3)
    assert.are.equal(0, max_diff(sampled(9, "sliding"), sampled(9, "sliding")))
  end)

  it("mdn at temperature 0 is the deterministic mode", function()
    local mdn = small_seq("mdn", { mixtures = 4 })
    local seed = dd.rand(10, 8)
    for _, window in ipairs({ "stateful", "sliding" }) do
      local det = dd.dance.generate{ seq = mdn, seed = seed, steps = 15, mode = "deterministic", window = window }
      dd.manual_seed(99)
      local t0 = dd.dance.generate{ seq = mdn, seed = seed, steps = 15, mode = "sample", temperature = 0, window = window }
      assert.are.equal(0, max_diff(det, t0))
    end
  end)

  it("seeds: random draws through dd's generator, index:N and frames:PATH[:start] encode real frames", function()
    local seq = small_seq("notebook")
    dd.manual_seed(5)
    local r1 = dd.dance.generate{ seq = seq, seed = "random", steps = 3 }
    dd.manual_seed(5)
    local want = dd.dance.generate{ seq = seq, seed = dd.rand(10, 8), steps = 3 }
    assert.are.equal(0, max_diff(r1, want))

    local dir = tmpdir()
    local fs = write_frames(dir .. "/f.safetensors", 30)
    local ae = fake_ae()
    local z = dd.dance.encode(ae, fs)
    local from_latents = dd.dance.generate{ seq = seq, seed = z:narrow(1, 7, 10), steps = 4 }
    local by_index = dd.dance.generate{ ae = ae, seq = seq, seed = "index:7", data = fs, steps = 4 }
    local by_latents = dd.dance.generate{ seq = seq, seed = "index:7", latents = z, steps = 4 }
    local by_frames = dd.dance.generate{ ae = ae, seq = seq, seed = "frames:" .. dir .. "/f.safetensors:7", steps = 4 }
    assert.is_true(max_diff(by_index, from_latents) < 1e-6)
    assert.are.equal(0, max_diff(by_latents, from_latents))
    assert.is_true(max_diff(by_frames, from_latents) < 1e-6)
    local first = dd.dance.generate{ ae = ae, seq = seq, seed = "frames:" .. dir .. "/f.safetensors", steps = 4 }
    assert.is_true(max_diff(first, dd.dance.generate{ seq = seq, seed = z:narrow(1, 1, 10), steps = 4 }) < 1e-6)

    assert_contains(error_of(dd.dance.generate, { seq = seq, seed = "index:25", latents = z }), "out of range")
    assert_contains(error_of(dd.dance.generate, { seq = seq, seed = "bogus" }), "unknown seed 'bogus'")
    assert_contains(error_of(dd.dance.generate, { seq = seq, seed = "index:3" }), "needs 'data'")
    assert_contains(error_of(dd.dance.generate, { seq = seq, mode = "deterministic", noise = 0.1 }), "mode='deterministic' takes neither")
    assert_contains(error_of(dd.dance.generate, { seq = seq, mode = "sample", temperature = 0.5 }), "MDN head")
    assert_contains(error_of(dd.dance.generate, { seq = seq, step = 3 }), "unknown option 'step'")
  end)

  it("video:PATH seeds go through the ingest pipeline", function()
    local dir = tmpdir()
    local w = dd.video.writer(dir .. "/clip.mp4", { fps = 3 })
    for i = 1, 14 do
      local f = dd.ones(3, 48, 80)
      f:narrow(2, 4 + 2 * i, 16):narrow(3, 10 + 3 * i, 12):fill(0)
      w:write(f)
    end
    w:close()
    local cache = dir .. "/ingested.safetensors"
    assert(os.execute(table.concat({ quote(dd.home .. "/deepdance"), quote(dd.home .. "/experiments/ingest.lua"),
      "--video", quote(dir .. "/clip.mp4"), "--out", quote(cache), "--height 8 --width 8 --preview",
      quote(dir .. "/p.png"), ">/dev/null 2>&1" }, " ")))
    local seq, ae = small_seq("notebook"), fake_ae()
    local via_video = dd.dance.generate{ ae = ae, seq = seq, seed = "video:" .. dir .. "/clip.mp4:3", steps = 3 }
    local via_frames = dd.dance.generate{ ae = ae, seq = seq, seed = "frames:" .. cache .. ":3", steps = 3 }
    assert.are.equal(0, max_diff(via_video, via_frames))
  end)
end)

describe("dd.dance.interpolate and videos", function()
  it("interpolate puts k-1 evenly spaced latents between neighbours", function()
    local z = dd.tensor{ {0, 10}, {1, 20}, {3, 0} }
    local out = dd.dance.interpolate(z, 4)
    assert.are.same({9, 2}, out:shape())
    local want = { {0, 10}, {0.25, 12.5}, {0.5, 15}, {0.75, 17.5}, {1, 20}, {1.5, 15}, {2, 10}, {2.5, 5}, {3, 0} }
    assert.is_true(max_diff(out, dd.tensor(want)) < 1e-6)
    assert.are.equal(0, max_diff(dd.dance.interpolate(z, 1), z))
    assert.are.same({1, 2}, dd.dance.interpolate(z:narrow(1, 1, 1), 10):shape())
    assert.are.equal(991, dd.dance.interpolate(dd.rand(100, 3), 10):size(1))
  end)

  it("write_video writes an mp4 and a gif that read back with every frame, upscaled", function()
    local dir = tmpdir()
    local frames = dd.rand(12, 1, 8, 12)
    frames:narrow(3, 1, 4):fill(0)
    for _, ext in ipairs({ "mp4", "gif" }) do
      local path = dir .. "/dance." .. ext
      assert.are.equal(12, dd.dance.write_video(frames, path, { fps = 6, scale = 2 }))
      local v = dd.video.open(path)
      local n, first = 0, nil
      for f in v:frames() do
        n = n + 1
        first = first or f
      end
      v:close()
      assert.are.equal(12, n, ext)
      assert.are.same({3, 16, 24}, first:shape())
      -- the black band survives the encoder: rows 1..8 are dark
      assert.is_true(first:narrow(2, 1, 8):mean() < 0.1, ext)
    end
    assert_contains(error_of(dd.dance.write_video, frames, dir .. "/x.mp4", { fsp = 3 }), "unknown option 'fsp'")
    dd.dance.contact_sheet(frames, dir .. "/sheet.png", { count = 6, cols = 3 })
    local sheet = dd.image.load(dir .. "/sheet.png")
    assert.are.same({1, 2 * (8 + 2) + 2, 3 * (12 + 2) + 2}, sheet:shape())
  end)
end)

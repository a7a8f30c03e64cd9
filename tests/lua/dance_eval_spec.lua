-- dance_eval_spec.lua: the evaluation half of dd.dance: dd.masks (bit-packed
-- masks against plain Lua loops), plot_curves / plot_lines (real PNGs through
-- gnuplot, sizes, atomic writes, errors), train_autoencoder / load_autoencoder
-- on a tiny frame cache (files, history, the reconstruction sheet, exact
-- reloading, resume), and evaluate on a tiny run (every report field, and the
-- numbers recomputed independently).
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/dance_eval_spec.lua

local SEED = tonumber(os.getenv("DD_TEST_SEED") or "") or 1234
print("# dance_eval_spec: seed " .. SEED .. " (DD_TEST_SEED)")

if not (dd.dance and dd.dance.evaluate) then
  assert(loadfile(dd.home .. "/lua/deepdance/dance/init.lua"))(dd)
end

local helpers = dofile("tests/lua/support/helpers.lua")
local quote = helpers.quote
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local slurp = helpers.slurp

local function ls(dir)
  local p = io.popen("ls -A " .. quote(dir))
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  return names
end

local tmpdirs = {}
local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. quote(d)))
  tmpdirs[#tmpdirs + 1] = d
  return d
end

teardown(function()
  for _, d in ipairs(tmpdirs) do os.execute("rm -rf " .. quote(d)) end
end)

-- Per-sample lists of a (N, ...) tensor.
local function rows(t)
  local n = t:size(1)
  return t:contiguous():view(n, -1):totable()
end

local function in_mask(v, threshold, fg)
  if fg == "light" then return v > threshold end
  return v < threshold
end

local function ref_iou(a, b, threshold, fg)
  local inter, union = 0, 0
  for i = 1, #a do
    local ma, mb = in_mask(a[i], threshold, fg), in_mask(b[i], threshold, fg)
    if ma and mb then inter = inter + 1 end
    if ma or mb then union = union + 1 end
  end
  return union == 0 and 1 or inter / union
end

-- n evenly spaced integers in first..last, as evaluate picks them.
local function evenly(first, last, n)
  local count = math.min(n, last - first + 1)
  local out = {}
  for k = 1, count do
    out[k] = count == 1 and first or first + math.floor((k - 1) * (last - first) / (count - 1) + 0.5)
  end
  return out
end

local function range(a, b)
  local out = {}
  for i = a, b do out[#out + 1] = i end
  return out
end

-- n frames of H x W: a dark ellipse (radii ry, rx) moving over white, with grey edges.
local function write_blobs(path, n, H, W, ry, rx)
  local w = dd.data.frame_writer{ channels = 1, height = H, width = W }
  for i = 1, n do
    local f = dd.ones(1, H, W)
    local cy, cx = (H + 1) / 2 + 0.15 * H * math.sin(i / 5), (W + 1) / 2 + 0.2 * W * math.cos(i / 7)
    for y = 1, H do
      for x = 1, W do
        local d = ((y - cy) / ry) ^ 2 + ((x - cx) / rx) ^ 2
        if d < 1 then f:set(1, y, x, 0) elseif d < 1.25 then f:set(1, y, x, 0.5) end
      end
    end
    w:add(f)
  end
  w:save(path, { format = "deepdance-frames" })
  return dd.data.frames(path)
end

---------------------------------------------------------------------------
describe("dd.masks", function()
  it("packs masks exactly as the float rule says, both polarities, any layout", function()
    dd.manual_seed(SEED)
    local t = dd.rand(5, 1, 7, 9)
    t:set(1, 1, 1, 1, 0.5) -- exactly the threshold: never foreground
    for _, fg in ipairs({ "dark", "light" }) do
      local m = dd.masks.pack(t, { threshold = 0.5, foreground = fg })
      assert.equal(5, #m)
      assert.equal(63, m.pixels)
      assert.same({ 1, 7, 9 }, m.shape)
      assert.equal(fg, m.foreground)
      local bits, counts, want = rows(m:to_tensor()), m:counts():totable(), rows(t)
      for i = 1, 5 do
        local c = 0
        for p = 1, 63 do
          local expect = in_mask(want[i][p], 0.5, fg) and 1 or 0
          assert.equal(expect, bits[i][p], ("mask %d pixel %d"):format(i, p))
          c = c + expect
        end
        assert.equal(c, counts[i])
      end
    end
    -- a non-contiguous view packs like its contiguous copy
    local v = dd.rand(4, 6, 3):transpose(2, 3)
    assert.same(rows(dd.masks.pack(v:contiguous()):to_tensor()), rows(dd.masks.pack(v):to_tensor()))
  end)

  it("finds the best IoU and the first index reaching it, as a plain loop does", function()
    dd.manual_seed(SEED + 1)
    for _, fg in ipairs({ "dark", "light" }) do
      local ref = dd.rand(9, 1, 5, 13)
      local gen = dd.rand(7, 1, 5, 13)
      gen[2] = ref[4]         -- an exact copy: IoU 1 at index 4
      ref[6] = ref[4]         -- a later duplicate must not win the tie
      gen[5]:fill(fg == "dark" and 1 or 0) -- an empty mask: IoU 0 against non-empty references
      local best, index = dd.masks.best_iou(dd.masks.pack(gen, { foreground = fg }), dd.masks.pack(ref, { foreground = fg }))
      local g, r = rows(gen), rows(ref)
      for i = 1, 7 do
        local top, at = -1, 0
        for j = 1, 9 do
          local v = ref_iou(g[i], r[j], 0.5, fg)
          if v > top then top, at = v, j end
        end
        assert(math.abs(best:get(i) - top) < 1e-7, ("%s mask %d: best %.9g, reference %.9g"):format(fg, i, best:get(i), top))
        assert.equal(at, index:get(i))
      end
      assert.equal(1, best:get(2))
      assert.equal(4, index:get(2))
      assert.equal(0, best:get(5))
    end
    -- two empty masks are identical: IoU 1
    local b = dd.masks.best_iou(dd.masks.pack(dd.ones(1, 2, 2)), dd.masks.pack(dd.ones(3, 2, 2)))
    assert.equal(1, b:get(1))
  end)

  it("measures the fraction of pixels that change between consecutive masks", function()
    dd.manual_seed(SEED + 2)
    local t = dd.rand(6, 1, 9, 11)
    local c = dd.masks.change_fraction(dd.masks.pack(t))
    assert.same({ 5 }, c:shape())
    local r = rows(t)
    for i = 1, 5 do
      local diff = 0
      for p = 1, 99 do
        if in_mask(r[i][p], 0.5, "dark") ~= in_mask(r[i + 1][p], 0.5, "dark") then diff = diff + 1 end
      end
      assert(math.abs(c:get(i) - diff / 99) < 1e-7)
    end
    assert.same({ 0 }, dd.masks.change_fraction(dd.masks.pack(dd.rand(1, 4))):shape())
  end)

  it("refuses bad arguments with messages that name the problem", function()
    assert_contains(error_of(dd.masks.pack, dd.rand(3)), "masks must be (N, ...)")
    assert_contains(error_of(dd.masks.pack, 3), "expected a Tensor")
    assert_contains(error_of(dd.masks.pack, dd.rand(2, 2), { thresold = 0.5 }), "unknown option 'thresold'")
    assert_contains(error_of(dd.masks.pack, dd.rand(2, 2), { foreground = "grey" }), "'dark' or 'light'")
    assert_contains(error_of(dd.masks.pack, dd.zeros(0, 4)), "empty")
    local a, b = dd.masks.pack(dd.rand(2, 1, 4, 4)), dd.masks.pack(dd.rand(2, 1, 4, 5))
    assert_contains(error_of(dd.masks.best_iou, a, b), "(1,4,4)")
    assert_contains(error_of(dd.masks.best_iou, a, dd.rand(2, 1, 4, 4)), "MaskSet")
    assert_contains(error_of(dd.masks.change_fraction, {}), "MaskSet")
  end)
end)

---------------------------------------------------------------------------
describe("dd.dance.plot_curves and plot_lines", function()
  local history = {
    epoch = { 1, 2, 3, 4, 5 }, loss = { 0.3, 0.1, 0.05, 0.02, 0.01 }, val_loss = { 0.35, 0.12, 0.06, 0.03, 0.02 },
    binary_accuracy = { 0.8, 0.9, 0.93, 0.95, 0.96 }, val_binary_accuracy = { 0.79, 0.88, 0.92, 0.94, 0.95 },
  }

  it("draws a PNG of the requested size and leaves no temporary file", function()
    local dir = tmpdir()
    local path = dir .. "/curves.png"
    assert.equal(path, dd.dance.plot_curves(history, path, { title = "test's curves" }))
    local img = dd.image.load(path)
    assert.same({ 3, 720, 960 }, img:shape())
    -- a real chart: dark ink (axes, text) and coloured lines on white
    assert(img:min() < 0.2, "no dark pixels: no axes or labels")
    assert(img:mean() > 0.8, "mostly white background expected")
    dd.dance.plot_curves(history, path, { width = 640, height = 480, metrics = { "loss" } })
    assert.same({ 3, 480, 640 }, dd.image.load(path):shape())
    assert.same({ "curves.png" }, ls(dir))
  end)

  it("takes Keras's 'acc' for any accuracy dd.fit logged, and single epochs", function()
    local dir = tmpdir()
    local h = { epoch = { 1 }, loss = { 0.5 }, categorical_accuracy = { 0.3 } }
    dd.dance.plot_curves(h, dir .. "/one.png")
    assert.same({ 3, 720, 960 }, dd.image.load(dir .. "/one.png"):shape())
  end)

  it("refuses bad histories and options, naming the problem", function()
    local path = tmpdir() .. "/x.png"
    assert_contains(error_of(dd.dance.plot_curves, 3, path), "history must be")
    assert_contains(error_of(dd.dance.plot_curves, { loss = { 1 } }, path), "no 'epoch'")
    assert_contains(error_of(dd.dance.plot_curves, { epoch = {} }, path), "empty")
    assert_contains(error_of(dd.dance.plot_curves, { epoch = { 1, 2 }, loss = { 1 } }, path), "history.loss has 1 values")
    assert_contains(error_of(dd.dance.plot_curves, { epoch = { 1, 2 }, loss = { 1, "x" } }, path), "list of numbers")
    assert_contains(error_of(dd.dance.plot_curves, { epoch = { 1 }, loss = { 1 } }, path), "no 'acc' series")
    assert_contains(error_of(dd.dance.plot_curves, history, path, { titel = "x" }), "unknown option 'titel'")
    assert_contains(error_of(dd.dance.plot_curves, history, path, { gnuplot = "/nonexistent/gnuplot" }), "gnuplot-nox")
    assert.is_false(exists(path))
  end)

  it("keeps the old file when gnuplot fails", function()
    local dir = tmpdir()
    local path = dir .. "/curves.png"
    dd.dance.plot_curves(history, path)
    local before = slurp(path)
    assert_contains(error_of(dd.dance.plot_curves, history, path, { gnuplot = "false" }), "gnuplot failed")
    assert.equal(before, slurp(path))
    assert.same({ "curves.png" }, ls(dir))
  end)

  it("plot_lines draws lists and tensors, and checks its series", function()
    local dir = tmpdir()
    dd.dance.plot_lines({ { name = "a", y = { 1, 3, 2 } }, { name = "b", y = dd.tensor{ 2, 1, 0.5 }, x = { 0, 1, 2 } } },
      dir .. "/lines.png", { title = "t", xlabel = "step", ylabel = "v", width = 400, height = 300 })
    assert.same({ 3, 300, 400 }, dd.image.load(dir .. "/lines.png"):shape())
    assert_contains(error_of(dd.dance.plot_lines, {}, dir .. "/x.png"), "non-empty list")
    assert_contains(error_of(dd.dance.plot_lines, { { y = {} } }, dir .. "/x.png"), "series[1].y")
    assert_contains(error_of(dd.dance.plot_lines, { { y = { 1, 2 }, x = { 1 } } }, dir .. "/x.png"), "series[1].x")
    assert_contains(error_of(dd.dance.plot_lines, { { y = { 1 }, z = 1 } }, dir .. "/x.png"), "unknown option 'z'")
    assert_contains(error_of(dd.dance.plot_lines, { { y = { 0, 1 } } }, dir .. "/x.png", { logy = true }), "positive")
  end)
end)

---------------------------------------------------------------------------
describe("dd.dance.train_autoencoder and load_autoencoder", function()
  local dir, data, history, model

  local function train(extra)
    local opts = { data = data, out = dir .. "/ae", epochs = 2, batch_size = 16, latent = 8, filters = 4,
                   seed = SEED, progress = "none" }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return dd.dance.train_autoencoder(opts)
  end

  setup(function()
    dir = tmpdir()
    data = dir .. "/frames.safetensors"
    write_blobs(data, 80, 16, 24, 4, 3)
    history, model = train()
  end)

  it("writes best, last, history, settings, the reconstruction sheet and the curves", function()
    for _, name in ipairs({ "best.safetensors", "last.safetensors", "history.csv", "history.json", "autoencoder.json",
                            "recon.png", "curves.png" }) do
      assert(exists(dir .. "/ae/" .. name), "missing " .. name)
    end
    assert.same({ 1, 2 }, history.epoch)
    for _, k in ipairs({ "loss", "binary_accuracy", "iou", "val_loss", "val_binary_accuracy", "val_iou", "lr" }) do
      assert.equal(2, #history[k], "history." .. k)
    end
    local csv = slurp(dir .. "/ae/history.csv")
    assert_contains(csv, "epoch,loss,binary_accuracy,iou,val_loss,val_binary_accuracy,val_iou,lr,time")
    local _, lines = csv:gsub("\n", "")
    assert.equal(3, lines)
    local saved = dd.json.decode(slurp(dir .. "/ae/history.json"))
    assert.same({ 1, 2 }, saved.epoch)
    assert.equal(history.val_loss[2], saved.val_loss[2])
    local cfg = dd.json.decode(slurp(dir .. "/ae/autoencoder.json"))
    assert.same({ latent = 8, filters = 4, height = 16, width = 24, variant = "original" }, cfg.model_options)
    assert.equal(72, cfg.n_train) -- the last 10% held out, unshuffled
    assert.same({ 3, 720, 960 }, dd.image.load(dir .. "/ae/curves.png"):shape())
    -- the original's schedule: ReduceLROnPlateau on val_binary_accuracy, in fit's resumable checkpoint
    local meta = dd.json.decode(dd.safetensors_header(dir .. "/ae/last.safetensors").__metadata__.meta)
    assert.equal("s:ReduceLROnPlateau", meta.fit.callbacks[1].kind)
  end)

  it("shows 8 held-out frames over their reconstructions by the best model", function()
    local sheet = dd.image.load(dir .. "/ae/recon.png")
    -- 2 rows and 8 columns of 16x24 tiles with 2 pixels of padding
    assert.same({ 1, 2 * 18 + 2, 8 * 26 + 2 }, sheet:shape())
    local fs = dd.data.frames(data)
    local best = dd.dance.load_autoencoder(dir .. "/ae")
    local x = fs:batch({ 73, 80 })
    local y = best:forward(x)
    local function tile(row, col) return sheet:narrow(2, 2 + (row - 1) * 18 + 1, 16):narrow(3, 2 + (col - 1) * 26 + 1, 24) end
    assert(((tile(1, 1) - x[1]):abs():max()) < 1e-6, "top-left tile is not held-out frame 73")
    assert(((tile(1, 8) - x[2]):abs():max()) < 1e-6, "top-right tile is not frame 80")
    assert(((tile(2, 1) - y[1]):abs():max()) <= 0.5 / 255 + 1e-6, "bottom-left tile is not the reconstruction of frame 73")
  end)

  it("reloads the model that produced the outputs, exactly", function()
    local fs = dd.data.frames(data)
    local x = fs:batch({ 1, 40, 80 })
    local last = dd.dance.load_autoencoder(dir .. "/ae", { which = "last" })
    assert.is_false(last.training)
    assert.equal(0, (last:forward(x) - model:forward(x)):abs():max())
    assert.same({ latent = 8, filters = 4, height = 16, width = 24, variant = "original" }, last.options)
    assert.equal(8, last.latent)
    assert.equal(2, last.meta.epoch)
    assert.same({ 3, 8 }, last.encoder:forward(x):shape())
    -- best: exactly the tensors of best.safetensors
    local best = dd.dance.load_autoencoder(dir .. "/ae")
    local tensors = dd.load(dir .. "/ae/best.safetensors")
    for k, v in pairs(best:state_dict()) do
      assert.equal(0, (v - tensors["model." .. k]):abs():max(), k)
    end
    local meta_epoch = dd.json.decode(dd.safetensors_header(dir .. "/ae/best.safetensors").__metadata__.meta).epoch
    assert.equal(meta_epoch, best.meta.epoch)
    local lowest = history.val_loss[1] <= history.val_loss[2] and 1 or 2
    assert.equal(lowest, best.meta.epoch)
  end)

  it("falls back to last.safetensors, which carries the model options too", function()
    local copy = tmpdir()
    assert(os.execute(("cp %s %s/"):format(quote(dir .. "/ae/last.safetensors"), quote(copy))))
    local m = dd.dance.load_autoencoder(copy)
    assert.equal(copy .. "/last.safetensors", m.path)
    assert.same({ latent = 8, filters = 4, height = 16, width = 24, variant = "original" }, m.options)
    local x = dd.data.frames(data):batch({ 5 })
    assert.equal(0, (m:forward(x) - model:forward(x)):abs():max())
  end)

  it("trains and reloads the strided variant, and refuses to resume it as the original", function()
    local h, m = train({ out = dir .. "/ae_strided", variant = "strided", epochs = 1 })
    assert.same({ 1 }, h.epoch)
    local back = dd.dance.load_autoencoder(dir .. "/ae_strided", { which = "last" })
    assert.same({ latent = 8, filters = 4, height = 16, width = 24, variant = "strided" }, back.options)
    assert.equal("strided", back.variant)
    local x = dd.data.frames(data):batch({ 3, 77 })
    assert.equal(0, (back:forward(x) - m:forward(x)):abs():max())
    assert_contains(error_of(train, { out = dir .. "/ae_strided", resume = true, epochs = 2 }), "model options")
    assert_contains(error_of(train, { out = dir .. "/x", variant = "wide" }), "variant")
  end)

  it("trains and reloads a batch-normalised autoencoder with its running statistics", function()
    local h, m = train({ out = dir .. "/ae_bn", variant = "strided", norm = "batch", epochs = 1 })
    assert.same({ 1 }, h.epoch)
    local back = dd.dance.load_autoencoder(dir .. "/ae_bn", { which = "last" })
    assert.same({ latent = 8, filters = 4, height = 16, width = 24, variant = "strided", norm = "batch" }, back.options)
    local bn = back.encoder.modules[2]
    assert.equal("BatchNorm2d", bn.kind)
    assert(bn.running_var:sum() ~= bn.running_var:numel(), "the running variance was trained and saved")
    assert.is_false(bn.training)
    local x = dd.data.frames(data):batch({ 3, 77 })
    assert.equal(0, (back:forward(x) - m:forward(x)):abs():max())
    assert_contains(error_of(train, { out = dir .. "/x", norm = "group" }), "norm")
  end)

  it("normalize_code rescales best.safetensors to a code of unit RMS, same reconstructions, once", function()
    local out = dir .. "/ae_norm"
    train({ out = out, epochs = 2 })
    local fs = dd.data.frames(data)
    local x = fs:batch({ 2, 30, 75 })
    local plain = dd.dance.load_autoencoder(out)
    local y0 = plain:forward(x):clone()
    train({ out = out, epochs = 2, resume = true, normalize_code = true })
    local normed = dd.dance.load_autoencoder(out)
    assert((normed:forward(x) - y0):abs():max() < 1e-5, "the reconstructions changed")
    local meta = dd.json.decode(dd.safetensors_header(out .. "/best.safetensors").__metadata__.meta)
    local z0 = dd.dance.encode(plain, x)
    assert.near(0, (dd.dance.encode(normed, x) * meta.code_scale - z0):abs():max(), 1e-4 * meta.code_scale)
    local idx = {}
    for i = 1, 72 do idx[i] = i end -- the training frames
    local z = dd.dance.encode(normed, fs:batch(idx))
    assert(z:abs():max() > 0, "a dead code: nothing was checked")
    assert.near(1, math.sqrt((z * z):mean()), 1e-4)
    -- a second run finds it done and leaves the file alone
    local before = slurp(out .. "/best.safetensors")
    train({ out = out, epochs = 2, resume = true, normalize_code = true })
    assert.equal(before, slurp(out .. "/best.safetensors"))
  end)

  it("continues a run with resume=true and refuses to overwrite one without it", function()
    assert_contains(error_of(train), "resume=true")
    local h = train({ epochs = 3, resume = true })
    assert.same({ 1, 2, 3 }, h.epoch)
    assert.equal(history.loss[2], h.loss[2])
    assert_contains(error_of(train, { resume = true, latent = 16, epochs = 4 }), "model options")
  end)

  it("refuses bad options", function()
    assert_contains(error_of(dd.dance.train_autoencoder, { data = data }), "'out' is required")
    assert_contains(error_of(dd.dance.train_autoencoder, { data = data, out = dir .. "/x", epoch = 3 }), "unknown option 'epoch'")
    assert_contains(error_of(dd.dance.train_autoencoder, { data = dir .. "/none.safetensors", out = dir .. "/x" }), "none.safetensors")
    assert_contains(error_of(dd.dance.train_autoencoder, { data = data, out = dir .. "/x", validation_split = 1 }), "validation_split")
    assert_contains(error_of(dd.dance.load_autoencoder, dir .. "/nothing"), "no checkpoint")
  end)
end)

---------------------------------------------------------------------------
describe("dd.dance.evaluate", function()
  local dir, data, report, L, n_train
  local STEPS, REFS, MOTION, PLAUSIBLE = 40, 30, 12, 0.85

  setup(function()
    dir = tmpdir()
    data = dir .. "/frames.safetensors"
    write_blobs(data, 96, 16, 24, 6, 5)
    -- A tiny autoencoder can collapse to the blank mean frame (dead ReLU latents), which would make
    -- every mask empty and the checks below vacuous: retrain from another seed (at most 3 times).
    for try = 0, 2 do
      os.execute("rm -rf " .. quote(dir .. "/run/ae"))
      local h = dd.dance.train_autoencoder{ data = data, out = dir .. "/run/ae", epochs = 30, batch_size = 8, lr = 3e-3,
                                            latent = 16, filters = 8, seed = SEED + 101 * try, progress = "none" }
      if h.val_iou[#h.val_iou] > 0.3 then break end
    end
    dd.dance.train_sequence{ ae_dir = dir .. "/run/ae", data = data, out = dir .. "/run/seq", variant = "notebook",
                             units = { 16, 16 }, look_back = 4, split = 0.75, epochs = 3, batch_size = 16, seed = SEED,
                             progress = "none", output = { write = function() end } }
    L, n_train = 4, 72
    report = dd.dance.evaluate{ run = dir .. "/run", data = data, steps = STEPS, references = REFS, motion_steps = MOTION,
                                plausible_iou = PLAUSIBLE, seed = 5, output = false }
  end)

  it("writes report.json with every field, and report.md", function()
    local r = dd.json.decode(slurp(dir .. "/run/report.json"))
    assert(r.autoencoder.iou.mean > 0.3, "the tiny autoencoder did not learn: the other checks would be vacuous")
    for _, model in ipairs({ "autoencoder", "sequence" }) do
      local t = r.paper_table[model]
      for _, source in ipairs({ "paper", "notebook" }) do
        for _, k in ipairs({ "epoch", "acc", "loss", "val_acc", "val_loss" }) do
          assert.is_number(t[source][k], ("paper_table.%s.%s.%s"):format(model, source, k))
        end
      end
      for _, which in ipairs({ "last", "best" }) do
        for _, k in ipairs({ "epoch", "acc", "loss", "val_acc", "val_loss" }) do
          assert.is_number(t.run[which][k], ("paper_table.%s.run.%s.%s"):format(model, which, k))
        end
      end
    end
    assert.equal(0.00727, r.paper_table.autoencoder.notebook.loss)
    assert.equal(853, r.paper_table.sequence.paper.epoch)
    assert.equal("binary_accuracy", r.paper_table.autoencoder.run.last.acc_name)
    assert.equal("acc", r.paper_table.sequence.run.last.acc_name)
    assert.equal(30, r.paper_table.autoencoder.run.last.epoch)
    assert.is_string(r.meanings.autoencoder_acc)
    assert.is_string(r.meanings.sequence_acc)

    for _, k in ipairs({ "frames", "binary_accuracy", "mse", "reconstruction_motion", "reconstruction_plausibility" }) do
      assert.is_number(r.autoencoder[k], "autoencoder." .. k)
    end
    assert.is_number(r.autoencoder.iou.mean)
    assert.equal(10, r.autoencoder.frames) -- frames 87..96

    local nf = r.next_frame
    assert.equal(96 - (n_train + L), nf.windows)
    assert.is_number(nf.repeat_last_frame.mean)
    assert.is_number(nf.autoencoder_ceiling.mean)
    assert.equal(2, #nf.by_mode)
    assert.equal("deterministic", nf.by_mode[1].mode)
    assert_contains(nf.by_mode[2].mode, "sample")
    for _, m in ipairs(nf.by_mode) do
      assert.is_number(m.iou.mean)
      assert.is_number(m.beats_baseline)
    end

    local g = r.generation
    assert.is_number(g.real_motion)
    assert.equal(REFS, g.reference_frames)
    assert.equal(4, #g.runs) -- 2 modes x 2 seeds
    local seen = {}
    for _, run in ipairs(g.runs) do
      for _, k in ipairs({ "motion", "motion_ratio", "plausibility", "plausibility_late" }) do
        assert.is_number(run[k], ("%s/%s: %s"):format(run.mode, run.seed, k))
      end
      assert.is_number(run.best_iou.mean)
      assert.is_string(run.verdict)
      assert(exists(dir .. "/run/" .. run.sheet), "missing " .. run.sheet)
      seen[run.mode .. "|" .. run.seed] = true
    end
    assert(seen["deterministic|random"] and seen["deterministic|real " .. (n_train + 1)], "missing deterministic runs")
    assert(exists(dir .. "/run/eval/motion.png"))

    local md = slurp(dir .. "/run/report.md")
    for _, part in ipairs({ "## The paper's table", "| autoencoder | paper (published table) | 27 |", "0.00727",
                            "| sequence | original notebook (final log) | 853 |", "## Autoencoder on held-out frames",
                            "baseline: repeat the last frame", "## Long-run generation", "motion ratio", "plausibility",
                            "binary accuracy" }) do
      assert_contains(md, part)
    end
  end)

  it("computes its numbers as an independent recomputation does", function()
    local fs = dd.data.frames(data)
    -- real motion: every consecutive pair of real frames
    local sum = 0
    for i = 1, 95 do
      local a, b = rows(fs:batch({ i }))[1], rows(fs:batch({ i + 1 }))[1]
      local diff = 0
      for p = 1, #a do if (a[p] < 0.5) ~= (b[p] < 0.5) then diff = diff + 1 end end
      sum = sum + diff / #a
    end
    assert(math.abs(report.generation.real_motion - sum / 95) < 1e-6)

    -- held-out autoencoder IoU: the best model on frames 87..96
    local ae = dd.dance.load_autoencoder(dir .. "/run/ae")
    local x = fs:batch(range(87, 96))
    local mean_iou = dd.metrics.iou(ae:forward(x), x)
    assert(math.abs(report.autoencoder.iou.mean - mean_iou) < 1e-5,
      ("held-out IoU %.6f, recomputed %.6f"):format(report.autoencoder.iou.mean, mean_iou))

    -- the baseline: IoU of frames t - 1 and t over the sequence model's validation targets
    local targets = range(n_train + L + 1, 96)
    local prev = {}
    for k, t in ipairs(targets) do prev[k] = t - 1 end
    local base = dd.metrics.iou(fs:batch(prev), fs:batch(targets))
    assert(math.abs(report.next_frame.repeat_last_frame.mean - base) < 1e-6)

    -- the deterministic next-frame prediction: windows of the L latents before each target, decoded
    local seq = dd.dance.load_sequence(dir .. "/run/seq")
    local latents = dd.load(dir .. "/run/seq/latents.safetensors").latents
    local x = dd.zeros(#targets, L, latents:size(2))
    for k, t in ipairs(targets) do x[k] = latents:narrow(1, t - L, L) end
    local pred = dd.dance.decode(ae, seq:forward(x):clone())
    local _, per = dd.metrics.iou(pred, fs:batch(targets))
    local _, per_base = dd.metrics.iou(fs:batch(prev), fs:batch(targets))
    local sum_iou, wins = 0, 0
    for k = 1, #targets do
      sum_iou = sum_iou + per:get(k)
      if per:get(k) > per_base:get(k) then wins = wins + 1 end
    end
    local det = report.next_frame.by_mode[1]
    assert(math.abs(det.iou.mean - sum_iou / #targets) < 1e-6)
    assert.equal(wins / #targets, det.beats_baseline)

    -- generation from the real seed, both modes: motion and plausibility by plain loops. evaluate
    -- seeds dd's generator with seed * 1000 + (the seed's place in the list) before each run.
    local refs = rows(fs:batch(evenly(1, n_train, REFS)))
    local checked = 0
    for _, run in ipairs(report.generation.runs) do
      if run.seed ~= "random" then
        local mode = run.mode == "deterministic" and report.settings.modes[1] or report.settings.modes[2]
        dd.manual_seed(5 * 1000 + 2)
        local z = dd.dance.generate{ seq = seq, seed = run.seed_spec, steps = STEPS, mode = mode.mode, noise = mode.noise,
                                     window = "sliding", latents = latents }
        local frames = rows(dd.dance.decode(ae, z))
        local changes = {}
        for i = 1, STEPS - 1 do
          local diff = 0
          for p = 1, #frames[i] do if (frames[i][p] < 0.5) ~= (frames[i + 1][p] < 0.5) then diff = diff + 1 end end
          changes[i] = diff / #frames[i]
        end
        local late = 0
        for i = STEPS - MOTION, STEPS - 1 do late = late + changes[i] end
        assert(math.abs(run.motion - late / MOTION) < 1e-6,
          ("%s: motion %.6f, recomputed %.6f"):format(run.mode, run.motion, late / MOTION))
        assert(math.abs(run.motion_ratio - run.motion / report.generation.real_motion) < 1e-9)
        local plausible, best_sum = 0, 0
        for i = 1, STEPS do
          local top = 0
          for _, ref in ipairs(refs) do top = math.max(top, ref_iou(frames[i], ref, 0.5, "dark")) end
          if top >= PLAUSIBLE then plausible = plausible + 1 end
          best_sum = best_sum + top
        end
        assert.equal(plausible / STEPS, run.plausibility)
        assert(math.abs(run.best_iou.mean - best_sum / STEPS) < 1e-6)
        checked = checked + 1
      end
    end
    assert.equal(2, checked)
  end)

  it("reports an MDN model's sampling at a temperature next to its deterministic mode", function()
    dd.dance.train_sequence{ ae_dir = dir .. "/run/ae", data = data, out = dir .. "/run/seq_mdn", variant = "mdn",
                             mixtures = 2, units = { 8 }, look_back = 4, split = 0.75, epochs = 1, batch_size = 16,
                             seed = SEED, progress = "none", output = { write = function() end } }
    local r = dd.dance.evaluate{ run = dir .. "/run", seq = dir .. "/run/seq_mdn", out = dir .. "/mdn", data = data,
                                 steps = 12, references = 10, motion_steps = 5, seeds = { "random" }, temperature = 0.5,
                                 images = false, output = false }
    assert.equal(2, #r.generation.runs)
    assert.equal("deterministic", r.generation.runs[1].mode)
    assert.equal("sample T=0.5", r.generation.runs[2].mode)
    assert.equal("mdn", r.settings.variant)
    assert(exists(dir .. "/mdn/report.json") and exists(dir .. "/mdn/report.md"))
    assert.is_false(exists(dir .. "/mdn/eval"))
  end)

  it("calibrate_temperature keeps the largest margin, records it, and temperature='auto' uses it", function()
    local seq_dir = dir .. "/run/seq_cal"
    dd.dance.train_sequence{ ae_dir = dir .. "/run/ae", data = data, out = seq_dir, variant = "mdn",
                             mixtures = 2, units = { 8 }, look_back = 4, split = 0.75, epochs = 1, batch_size = 16,
                             seed = SEED, progress = "none", output = { write = function() end } }
    -- before calibration 'auto' has nothing to stand for
    local seq = dd.dance.load_sequence(seq_dir)
    assert.is_nil(seq.temperature)
    local ae = dd.dance.load_autoencoder(dir .. "/run/ae")
    assert_contains(error_of(dd.dance.generate, { ae = ae, seq = seq, steps = 3, temperature = "auto" }),
      seq_dir .. "/temperature.json is missing")
    local bars = { min_plausibility = 0.6, min_motion = 0.2, max_motion = 2 }
    local c = dd.dance.calibrate_temperature{ run = dir .. "/run", seq = seq_dir, data = data, temperatures = { 1.5, 0.2, 0.8 },
      steps = 12, references = 10, motion_steps = 5, min_plausibility = bars.min_plausibility, min_motion = bars.min_motion,
      max_motion = bars.max_motion, output = false }
    local saved = dd.json.decode(slurp(seq_dir .. "/temperature.json"))
    assert.equal(c.temperature, saved.temperature)
    assert.equal(3, #saved.candidates)
    -- validation seeds: a random window and a real one inside the training part (n_train latents)
    assert.same({ "random", "index:36" }, { saved.seeds[1].seed, saved.seeds[2].seed })
    local best
    for i, cand in ipairs(saved.candidates) do
      assert.equal(({ 1.5, 0.2, 0.8 })[i], cand.temperature)
      assert.equal(2, #cand.runs)
      local m = math.huge
      for _, run in ipairs(cand.runs) do
        assert(run.plausibility >= 0 and run.plausibility <= 1 and run.motion_ratio >= 0)
        m = math.min(m, run.plausibility - bars.min_plausibility, run.motion_ratio - bars.min_motion,
                     bars.max_motion - run.motion_ratio)
      end
      assert(math.abs(cand.margin - m) < 1e-12, ("candidate %d: margin %.17g, recomputed %.17g"):format(i, cand.margin, m))
      if not best or m > best.margin or (m == best.margin and cand.temperature < best.temperature) then best = cand end
    end
    assert.equal(best.temperature, saved.temperature)
    assert.equal(best.margin >= 0, saved.inside)
    -- reuse=true: the same checkpoint and settings take the saved calibration, other settings make a new one
    local args = { run = dir .. "/run", seq = seq_dir, data = data, temperatures = { 1.5, 0.2, 0.8 }, steps = 12,
      references = 10, motion_steps = 5, min_plausibility = bars.min_plausibility, min_motion = bars.min_motion,
      max_motion = bars.max_motion, reuse = true }
    local lines = {}
    args.output = { write = function(_, text) lines[#lines + 1] = text end }
    local again = dd.dance.calibrate_temperature(args)
    assert.equal(saved.created, again.created)
    assert_contains(table.concat(lines), "calibrate: reusing " .. seq_dir .. "/temperature.json")
    args.temperatures, args.output = { 0.2, 0.8 }, false
    assert.equal(2, #dd.dance.calibrate_temperature(args).candidates)
    args.temperatures = { 1.5, 0.2, 0.8 }
    assert.equal(3, #dd.dance.calibrate_temperature(args).candidates)
    -- the model carries it from now on
    seq = dd.dance.load_sequence(seq_dir)
    assert.equal(saved.temperature, seq.temperature)
    dd.manual_seed(3)
    local auto = dd.dance.generate{ ae = ae, seq = seq, steps = 5, temperature = "auto" }
    dd.manual_seed(3)
    local fixed = dd.dance.generate{ ae = ae, seq = seq, steps = 5, temperature = saved.temperature }
    assert.equal(0, (auto - fixed):abs():max())
    local r = dd.dance.evaluate{ run = dir .. "/run", seq = seq_dir, out = dir .. "/cal", data = data, steps = 12,
                                 references = 10, motion_steps = 5, seeds = { "random" }, temperature = "auto",
                                 images = false, output = false }
    assert.equal(("sample T=%g (calibrated)"):format(saved.temperature), r.generation.runs[2].mode)
    -- a file that is not a calibration is named
    local f = assert(io.open(seq_dir .. "/temperature.json", "w"))
    f:write('{"temperature": "hot"}')
    f:close()
    assert_contains(error_of(dd.dance.load_sequence, seq_dir), "temperature.json is not a calibration")
  end)

  it("calibrate_temperature with sigma_temperatures searches pairs, and 'auto' samples with both", function()
    local seq_dir = dir .. "/run/seq_sigma"
    dd.dance.train_sequence{ ae_dir = dir .. "/run/ae", data = data, out = seq_dir, variant = "mdn",
                             mixtures = 2, units = { 8 }, look_back = 4, split = 0.75, epochs = 1, batch_size = 16,
                             seed = SEED, progress = "none", output = { write = function() end } }
    local bars = { min_plausibility = 0.6, min_motion = 0.2, max_motion = 2 }
    local c = dd.dance.calibrate_temperature{ run = dir .. "/run", seq = seq_dir, data = data, temperatures = { 0.8, 0.3 },
      sigma_temperatures = { 0.05, 0.5 }, repeats = 2, steps = 12, references = 10, motion_steps = 5,
      min_plausibility = bars.min_plausibility, min_motion = bars.min_motion, max_motion = bars.max_motion, output = false }
    local saved = dd.json.decode(slurp(seq_dir .. "/temperature.json"))
    assert.equal(4, #saved.candidates)
    local pairs_seen, best = {}, nil
    for _, cand in ipairs(saved.candidates) do
      pairs_seen[#pairs_seen + 1] = ("%g/%g"):format(cand.temperature, cand.sigma_temperature)
      assert.equal(4, #cand.runs)   -- 2 seeds x 2 repeats
      if not best or cand.margin > best.margin then best = cand end
    end
    assert.same({ "0.8/0.05", "0.8/0.5", "0.3/0.05", "0.3/0.5" }, pairs_seen)
    assert.equal(c.margin, best.margin)
    assert.equal(saved.sigma_temperature, c.sigma_temperature)
    assert.is_number(saved.sigma_temperature)
    -- the model carries both; 'auto' draws with both, an explicit T alone spreads with T
    local seq = dd.dance.load_sequence(seq_dir)
    assert.equal(saved.temperature, seq.temperature)
    assert.equal(saved.sigma_temperature, seq.sigma_temperature)
    local ae = dd.dance.load_autoencoder(dir .. "/run/ae")
    local function gen(o)
      dd.manual_seed(3)
      o.ae, o.seq, o.steps = ae, seq, 6
      return dd.dance.generate(o)
    end
    local auto = gen{ temperature = "auto" }
    assert.equal(0, (auto - gen{ temperature = saved.temperature, sigma_temperature = saved.sigma_temperature }):abs():max())
    if saved.sigma_temperature ~= saved.temperature then
      assert.is_true((auto - gen{ temperature = saved.temperature }):abs():max() > 0)
    end
    -- sigma_temperature 0: every draw is a component's mean, so it equals the model's own means
    local means = gen{ temperature = 0.7, sigma_temperature = 0 }
    assert.equal(0, (means - gen{ temperature = 0.7, sigma_temperature = 0 }):abs():max())
    local r = dd.dance.evaluate{ run = dir .. "/run", seq = seq_dir, out = dir .. "/sigma", data = data, steps = 12,
                                 references = 10, motion_steps = 5, seeds = { "random" }, temperature = "auto",
                                 images = false, output = false }
    assert.equal(("sample T=%g sigma T=%g (calibrated)"):format(saved.temperature, saved.sigma_temperature),
                 r.generation.runs[2].mode)
    -- errors name the option
    local cal = dd.dance.calibrate_temperature
    assert_contains(error_of(cal, { run = dir .. "/run", seq = seq_dir, sigma_temperatures = {} }), "'sigma_temperatures' must be a non-empty list")
    assert_contains(error_of(cal, { run = dir .. "/run", seq = seq_dir, sigma_temperatures = { 0.1, -1 } }), "sigma_temperatures[2]")
    assert_contains(error_of(cal, { run = dir .. "/run", seq = seq_dir, repeats = 0 }), "option 'repeats' must be an integer >= 1, got 0")
    assert_contains(error_of(dd.dance.generate, { ae = ae, seq = seq, steps = 2, sigma_temperature = -1 }), "sigma_temperature")
    assert_contains(error_of(dd.dance.generate, { ae = ae, seq = seq, steps = 2, mode = "deterministic", sigma_temperature = 0.1 }),
      "mode='deterministic' takes no sigma_temperature")
    local f = assert(io.open(seq_dir .. "/temperature.json", "w"))
    f:write('{"temperature": 0.5, "sigma_temperature": "low"}')
    f:close()
    assert_contains(error_of(dd.dance.load_sequence, seq_dir), "'sigma_temperature' that is not a number >= 0")
  end)

  it("calibrate_temperature refuses what it cannot calibrate", function()
    local cal = dd.dance.calibrate_temperature
    assert_contains(error_of(cal, {}), "'run' is required")
    assert_contains(error_of(cal, { run = dir .. "/run", temperatures = {} }), "non-empty list")
    assert_contains(error_of(cal, { run = dir .. "/run", temperatures = { -1 } }), "temperatures[1]")
    assert_contains(error_of(cal, { run = dir .. "/run", min_motion = 2, max_motion = 1 }), "'max_motion' (1) must be above")
    assert_contains(error_of(cal, { run = dir .. "/run", steps = 1 }), "at least 2")
    assert_contains(error_of(cal, { run = dir .. "/run", stepz = 1 }), "unknown option 'stepz'")
    assert_contains(error_of(cal, { run = dir .. "/run", data = data, output = false }), "a temperature is for a model with an MDN head")
  end)

  it("refuses bad options before computing anything", function()
    assert_contains(error_of(dd.dance.evaluate, {}), "'run' is required")
    assert_contains(error_of(dd.dance.evaluate, { run = dir .. "/run", step = 3 }), "unknown option 'step'")
    assert_contains(error_of(dd.dance.evaluate, { run = dir .. "/run", temperature = 0.5, output = false }), "MDN head")
    assert_contains(error_of(dd.dance.evaluate, { run = dir .. "/run", modes = { "greedy" }, output = false }), "modes[1]")
    assert_contains(error_of(dd.dance.evaluate, { run = dir .. "/run", seeds = { "index:x" }, output = false }), "seeds[1]")
  end)
end)

-- deepdance.dance evaluate: what a trained run is worth, next to what the
-- paper reported.
--   local report = dd.dance.evaluate{run = "runs/r", data = "data/clip.safetensors", steps = 1000}
--   -- writes runs/r/report.json, runs/r/report.md and pictures in runs/r/eval/
--
-- A run directory holds ae/ (dd.dance.train_autoencoder) and seq/
-- (dd.dance.train_sequence). The report has:
--   paper_table   the Keras table of the paper (epoch, acc, loss, val_acc,
--                 val_loss) for both models: this run's last epoch and best
--                 checkpoint, the paper's and the notebook's numbers. "acc" is
--                 binary accuracy for the autoencoder and categorical accuracy
--                 for the sequence model (Keras chose by output shape); neither
--                 says much about quality, hence the rest.
--   autoencoder   held-out frames (the autoencoder's validation split): IoU of
--                 the dark silhouette masks (< 0.5) of frame and reconstruction.
--   next_frame    the sequence model's validation windows: IoU of the decoded
--                 predicted next latent against the true next frame, next to
--                 the baseline "repeat the last frame" (IoU of frames t and
--                 t + 1) and the autoencoder's own ceiling (the decoded true
--                 next latent).
--   generation    `steps` predictions from a random seed window and from a real
--                 one, for each mode (deterministic: the paper's loop; sample:
--                 temperature for an MDN head, noise otherwise):
--                 motion ratio = mean fraction of pixels whose mask changes
--                 between consecutive frames over the last 200 steps, divided by
--                 the same on the real frames (about 0: the dance froze);
--                 plausibility = fraction of generated frames whose best mask
--                 IoU against 1000 training frames is at least 0.7.
-- Masks are bit-packed (dd.masks) so 1000 x 1000 IoUs of 24,000 pixels take
-- a fraction of a second.
local dd, dance = ...
local util = assert(loadfile(dd.home .. "/lua/deepdance/dance/util.lua"))(dd)

---------------------------------------------------------------------------
-- Published numbers and what the metrics mean
---------------------------------------------------------------------------

-- The paper's table, and the notebook's final log (../shared/reference/original-implementation.md).
local PUBLISHED = {
  autoencoder = {
    paper = { epoch = 27, acc = 0.964, loss = 0.007, val_acc = 0.964, val_loss = 0.007 },
    notebook = { epoch = 27, acc = 0.9647, loss = 0.00727, val_acc = 0.9648, val_loss = 0.00755 },
  },
  sequence = {
    paper = { epoch = 853, acc = 0.800, loss = 0.048, val_acc = 0.799, val_loss = 0.049 },
    notebook = { epoch = 853, acc = 0.800, loss = 0.0483, val_acc = 0.800, val_loss = 0.0499 },
  },
}

local MEANINGS = {
  autoencoder_acc = "Keras binary accuracy (the autoencoder's output has one channel): the fraction of pixels "
    .. "with target == round(prediction). Grey antialiased edge pixels never count as correct, and a blank white "
    .. "frame already scores the background's share, so 0.96 says little about the dancer.",
  sequence_acc = "Keras categorical accuracy (the sequence model's output has 128 values): the fraction of "
    .. "windows whose predicted latent has its largest component at the same index as the true next latent's. "
    .. "It ignores the other 127 values.",
  loss = "Mean squared error (the training objective of both models; for an MDN head, its negative log-likelihood).",
  iou = "Intersection over union of the dancer masks (pixels < 0.5: the dark silhouette), per frame, 1 when both are empty.",
  motion_ratio = "Mean fraction of pixels whose mask changes between consecutive generated frames over the last "
    .. "steps, divided by the same mean over consecutive real frames. About 1 moves like the data; near 0 the "
    .. "generation froze on a pose.",
  plausibility = "Fraction of generated frames whose best mask IoU against the sampled training frames is at "
    .. "least the threshold: does each frame look like some real pose?",
}

---------------------------------------------------------------------------
-- Small helpers
---------------------------------------------------------------------------

local function say(o, text) if o.output then o.output:write(text, "\n") end end

-- n evenly spaced integers in first..last (all of them when there are fewer).
local function evenly(first, last, n)
  local count = math.min(n, last - first + 1)
  local out = {}
  for k = 1, count do
    out[k] = count == 1 and first or first + math.floor((k - 1) * (last - first) / (count - 1) + 0.5)
  end
  return out
end

local function range(first, last)
  local out = {}
  for i = first, last do out[#out + 1] = i end
  return out
end

-- {mean, median, p10, p90, min, max} of a list of numbers (or a 1-d Tensor).
local function summary(values)
  if util.is_tensor(values) then values = values:totable() end
  local n = #values
  if n == 0 then return { n = 0 } end
  local sorted, sum = {}, 0
  for i, v in ipairs(values) do sorted[i], sum = v, sum + v end
  table.sort(sorted)
  local function q(p) return sorted[math.min(n, math.max(1, math.floor(p * (n - 1) + 0.5) + 1))] end
  return { n = n, mean = sum / n, median = q(0.5), p10 = q(0.1), p90 = q(0.9), min = sorted[1], max = sorted[n] }
end

local function mean_of(t) return t:numel() > 0 and t:sum() / t:numel() or 0 end

local function fraction_at_least(t, threshold)
  local hits, list = 0, t:totable()
  for _, v in ipairs(list) do if v >= threshold then hits = hits + 1 end end
  return #list > 0 and hits / #list or 0
end

local function read_json(path)
  local text = util.read_file(path)
  if not text then return nil end
  local ok, v = pcall(dd.json.decode, text)
  return ok and type(v) == "table" and v or nil
end

-- A CSVLogger file as a list of rows {column = number}.
local function read_csv(path)
  local text = util.read_file(path)
  if not text then return nil end
  local rows, header = {}, nil
  for line in text:gmatch("[^\n]+") do
    local cells = {}
    for cell in (line .. ","):gmatch("([^,]*),") do cells[#cells + 1] = cell end
    if not header then
      header = cells
    else
      local row = {}
      for i, k in ipairs(header) do row[k] = tonumber(cells[i]) end
      rows[#rows + 1] = row
    end
  end
  return rows
end

local function file_safe(name) return (name:gsub("[^%w%-%.]+", "_")) end

---------------------------------------------------------------------------
-- The paper's table
---------------------------------------------------------------------------

-- epoch, acc, loss, val_acc, val_loss of a logged row; acc under the name it was logged as.
local function keras_row(row, acc_names)
  if not row then return nil end
  local out = { epoch = row.epoch, loss = row.loss, val_loss = row.val_loss }
  for _, name in ipairs(acc_names) do
    if row[name] ~= nil and out.acc == nil then
      out.acc, out.val_acc, out.acc_name = row[name], row["val_" .. name], name
    end
  end
  return out
end

-- This run's rows for one model: the last epoch of history.csv and the best checkpoint's epoch.
local function trained_rows(dir, acc_names)
  local rows = read_csv(dir .. "/history.csv")
  local entry = { dir = dir }
  if rows and #rows > 0 then
    entry.epochs = #rows
    entry.last = keras_row(rows[#rows], acc_names)
  end
  local best_path = dir .. "/best.safetensors"
  local meta = util.exists(best_path) and util.checkpoint_meta(best_path) or nil
  if meta and meta.logs then
    local logs = {}
    for k, v in pairs(meta.logs) do logs[k] = tonumber(v) or v end
    logs.epoch = meta.epoch
    entry.best = keras_row(logs, acc_names)
  end
  return entry
end

---------------------------------------------------------------------------
-- Masks of real frames
---------------------------------------------------------------------------

local MASK = { threshold = 0.5, foreground = "dark" }

-- Mean change fraction between consecutive frames first..last of the cache,
-- in chunks (the frames never exist all at once as float).
local function real_motion(fs, first, last, chunk)
  local sum, count, a = 0, 0, first
  while a < last do
    local b = math.min(last, a + chunk - 1)
    local change = dd.masks.change_fraction(dd.masks.pack(fs:batch(range(a, b)), MASK))
    sum, count = sum + change:sum(), count + change:numel()
    a = b -- the next chunk starts at this one's last frame: every pair counted once
  end
  return count > 0 and sum / count or 0, count
end

---------------------------------------------------------------------------
-- A run's models, frames and reference masks
---------------------------------------------------------------------------

-- The options run (required), ae and seq: the run's directories.
local function run_dirs(fn, o)
  if o.run == nil then error(fn .. ": option 'run' is required (a directory with ae/ and seq/)", 0) end
  local run = util.check(fn, "run", o.run, "string"):gsub("/+$", "")
  local ae_dir = util.check(fn, "ae", o.ae, "string", run .. "/ae"):gsub("/+$", "")
  local seq_dir = util.check(fn, "seq", o.seq, "string", run .. "/seq"):gsub("/+$", "")
  return run, ae_dir, seq_dir
end

-- The options of generation runs and their measures, shared by evaluate and
-- calibrate_temperature; name prefixes the lines written to output.
local function generation_cfg(fn, o, name)
  return {
    steps = util.check(fn, "steps", o.steps, "integer", 1000),
    window = util.choice(fn, "window", o.window, { "sliding", "stateful" }, "sliding"),
    references = util.check(fn, "references", o.references, "integer", 1000),
    plausible_iou = util.check(fn, "plausible_iou", o.plausible_iou, "fraction", 0.7),
    motion_steps = util.check(fn, "motion_steps", o.motion_steps, "integer", 200),
    batch_size = util.check(fn, "batch_size", o.batch_size, "integer", 64),
    output = o.output == nil and io.stdout or o.output, name = name,
  }
end

-- The option seed: any integer, 1 by default.
local function seed_option(fn, o)
  local seed = o.seed == nil and 1 or o.seed
  if math.type(seed) ~= "integer" then error(("%s: option 'seed' must be an integer, got %s"):format(fn, util.describe(o.seed)), 0) end
  return seed
end

-- The autoencoder (and its autoencoder.json), the sequence model when seq_dir
-- has one (has_seq, seq, info; or the seq, info given, already loaded from
-- it), the frame cache (data, fs) and the latents of every frame
-- (train_sequence's cache in seq_dir is reused when it matches).
local function open_run(fn, o, cfg, ae_dir, seq_dir, seq, info)
  local r = { ae = dance.load_autoencoder(ae_dir), ae_config = read_json(ae_dir .. "/autoencoder.json") or {} }
  if seq then
    r.has_seq, r.seq, r.info = true, seq, info
  else
    r.has_seq = util.exists(seq_dir .. "/best.safetensors") or util.exists(seq_dir .. "/last.safetensors")
    if r.has_seq then r.seq, r.info = dance.load_sequence(seq_dir) end
  end
  local data = o.data or (r.info and r.info.data) or r.ae_config.data
  if data == nil then error(fn .. ": option 'data' is required (the frame cache the run was trained on)", 0) end
  r.data = util.check(fn, "data", data, "string")
  r.fs = dd.data.frames(r.data)
  if r.has_seq then
    r.latents = dance.prepare_latents{ ae = r.ae, ae_dir = ae_dir, data = r.data, out = seq_dir,
                                       batch_size = cfg.batch_size, output = cfg.output or { write = function() end } }
  end
  return r
end

-- Reference masks (cfg.references training frames spread evenly over the
-- training part) and the real frames' motion: masks, count, motion, pairs.
local function references(cfg, r)
  local N = #r.fs
  local n_train_frames = r.has_seq and r.info.n_train or r.ae_config.n_train or math.floor(N * 0.9)
  local ref_idx = evenly(1, math.max(1, math.min(n_train_frames, N)), cfg.references)
  local refs = dd.masks.pack(r.fs:batch(ref_idx), MASK)
  local real, pairs_counted = real_motion(r.fs, 1, N, 512)
  say(cfg, ("%s: %d reference frames; real motion %.4f over %d pairs"):format(cfg.name, #ref_idx, real, pairs_counted))
  return refs, #ref_idx, real, pairs_counted
end

---------------------------------------------------------------------------
-- The autoencoder on held-out frames
---------------------------------------------------------------------------

-- IoU, binary accuracy and MSE of reconstructions of frames first..last
-- (decoded from their latents), plus their motion and plausibility.
local function heldout_autoencoder(o, ae, fs, latents, first, last, refs)
  local ious, best, acc_sum, mse_sum, change_sum, changes = {}, {}, 0, 0, 0, 0
  local prev_mask_chunk_last
  local a = first
  while a <= last do
    local b = math.min(last, a + o.batch_size * 4 - 1)
    local idx = range(a, b)
    local x = fs:batch(idx)
    local z = latents and latents:narrow(1, a, b - a + 1) or dance.encode(ae, x, { batch_size = o.batch_size })
    local y = dance.decode(ae, z, { batch_size = o.batch_size })
    local _, per = dd.metrics.iou(y, x, MASK)
    for _, v in ipairs(per:totable()) do ious[#ious + 1] = v end
    local n = b - a + 1
    acc_sum = acc_sum + dd.metrics.binary_accuracy(y, x) * n
    mse_sum = mse_sum + dd.nn.MSELoss():forward(y, x) * n
    local masks = dd.masks.pack(y, MASK)
    local b_iou = dd.masks.best_iou(masks, refs)
    for _, v in ipairs(b_iou:totable()) do best[#best + 1] = v end
    local change = dd.masks.change_fraction(masks)
    change_sum, changes = change_sum + change:sum(), changes + change:numel()
    if prev_mask_chunk_last then -- the pair that straddles two chunks
      local pair = dd.zeros(2, y:size(2), y:size(3), y:size(4))
      pair[1] = prev_mask_chunk_last
      pair[2] = y[1]
      local c = dd.masks.change_fraction(dd.masks.pack(pair, MASK))
      change_sum, changes = change_sum + c:sum(), changes + 1
    end
    prev_mask_chunk_last = y[y:size(1)]:clone()
    a = b + 1
  end
  local n = last - first + 1
  local iou = summary(ious)
  local plausible = 0
  for _, v in ipairs(best) do if v >= o.plausible_iou then plausible = plausible + 1 end end
  return {
    frames = n, first = first, last = last,
    iou = iou, binary_accuracy = acc_sum / n, mse = mse_sum / n,
    reconstruction_motion = changes > 0 and change_sum / changes or 0,
    reconstruction_plausibility = plausible / n,
  }
end

---------------------------------------------------------------------------
-- Next-frame prediction on the sequence model's validation windows
---------------------------------------------------------------------------

-- The next latent from the model's output for a mode (deterministic: the
-- output itself, or an MDN's most probable mean; sample: as dd.dance.generate).
local function next_latent(seq, out, mode)
  local z
  if seq.mdn then
    local t = mode.mode == "sample" and (mode.temperature or 1) or 0
    z = seq.mdn:sample(out, t, mode.mode == "sample" and mode.sigma_temperature or t)
  else
    z = out:clone()
  end
  if mode.noise and mode.noise > 0 then
    z:add_(dd.randn(z:size(1), z:size(2)):mul_(mode.noise))
    if not seq.mdn then z:clamp_(0, nil) end
  end
  return z
end

local function next_frame(o, ae, seq, info, fs, latents, modes)
  local L, n = info.look_back, latents:size(1)
  local n_train = info.n_train
  -- targets n_train + L + 1 .. n, as train_sequence's validation windows
  local targets = evenly(n_train + L + 1, n, o.max_windows)
  if #targets == 0 then return { skipped = "the sequence model's validation part has no window" } end
  local B, D = #targets, latents:size(2)
  local x = dd.zeros(B, L, D)
  for k, t in ipairs(targets) do x[k] = latents:narrow(1, t - L, L) end
  local prev_idx = {}
  for k, t in ipairs(targets) do prev_idx[k] = t - 1 end

  local section = { windows = B, first_target = targets[1], last_target = targets[B], look_back = L, by_mode = {} }
  local truth = fs:batch(targets)
  local _, base = dd.metrics.iou(fs:batch(prev_idx), truth, MASK)
  section.repeat_last_frame = summary(base)
  local true_z = dd.zeros(B, D)
  for k, t in ipairs(targets) do true_z[k] = latents[t] end
  local _, ceiling = dd.metrics.iou(dance.decode(ae, true_z, { batch_size = o.batch_size }), truth, MASK)
  section.autoencoder_ceiling = summary(ceiling)

  local base_list = base:totable()
  for i, mode in ipairs(modes) do
    dd.manual_seed(o.seed * 1000 + 500 + i)
    local was_training = seq.training
    seq:eval()
    local preds = dd.zeros(B, D)
    for a = 1, B, o.batch_size do
      local m = math.min(o.batch_size, B - a + 1)
      preds:narrow(1, a, m):copy(next_latent(seq, seq:forward(x:narrow(1, a, m)), mode))
    end
    if was_training then seq:train() end
    local _, per = dd.metrics.iou(dance.decode(ae, preds, { batch_size = o.batch_size }), truth, MASK)
    local wins, list = 0, per:totable()
    for k, v in ipairs(list) do if v > base_list[k] then wins = wins + 1 end end
    section.by_mode[#section.by_mode + 1] = { mode = mode.name, iou = summary(list), beats_baseline = wins / B }
  end
  return section
end

---------------------------------------------------------------------------
-- Long-run generation
---------------------------------------------------------------------------

local function generation_run(o, ae, seq, latents, refs, mode, seed_spec, j)
  -- seeded per seed, not per mode: every mode starts from the same 'random' window
  dd.manual_seed(o.seed * 1000 + j)
  local t0 = dd.clock()
  local z = dance.generate{ ae = ae, seq = seq, seed = seed_spec.seed, steps = o.steps, mode = mode.mode,
    temperature = mode.temperature, sigma_temperature = mode.sigma_temperature, noise = mode.noise, window = o.window,
    latents = latents }
  local frames = dance.decode(ae, z, { batch_size = o.batch_size })
  local masks = dd.masks.pack(frames, MASK)
  local change = dd.masks.change_fraction(masks)
  local w = math.min(o.motion_steps, change:numel())
  local late = w > 0 and change:narrow(1, change:numel() - w + 1, w) or change
  local best = dd.masks.best_iou(masks, refs)
  local late_best = best:narrow(1, math.max(1, best:numel() - w), math.min(best:numel(), w + 1))
  local run = {
    mode = mode.name, seed = seed_spec.name, seed_spec = seed_spec.seed, steps = o.steps,
    motion = mean_of(late), motion_all = mean_of(change),
    plausibility = fraction_at_least(best, o.plausible_iou),
    plausibility_late = fraction_at_least(late_best, o.plausible_iou),
    best_iou = summary(best),
    seconds = dd.clock() - t0,
  }
  local stem = file_safe(("%s_%s"):format(mode.name, seed_spec.name))
  if o.images then
    dance.contact_sheet(frames, o.eval_dir .. "/" .. stem .. ".png", { count = 24, cols = 8 })
    run.sheet = "eval/" .. stem .. ".png"
  end
  if o.video then
    dance.write_video(frames, o.eval_dir .. "/" .. stem .. ".mp4", { fps = 6, scale = 2 })
    run.video = "eval/" .. stem .. ".mp4"
  end
  return run, change
end

---------------------------------------------------------------------------
-- report.md
---------------------------------------------------------------------------

local function num(v, digits)
  if type(v) ~= "number" then return "—" end
  if v ~= v then return "nan" end
  return ("%." .. (digits or 4) .. "f"):format(v)
end

local function int(v) return type(v) == "number" and ("%d"):format(math.floor(v)) or "—" end

local function sci(v)
  if type(v) ~= "number" then return "—" end
  if v ~= 0 and math.abs(v) < 1e-2 then return ("%.3g"):format(v) end
  return ("%.4f"):format(v)
end

local function render_md(r)
  local out = {}
  local function line(s) out[#out + 1] = s or "" end
  line("# Evaluation of " .. r.run)
  line()
  line(("Data: `%s` (%d frames of %dx%d). Written %s."):format(r.data, r.frames, r.height, r.width, r.created))
  line()
  line("## The paper's table")
  line()
  line("| model | source | epoch | acc | loss | val_acc | val_loss |")
  line("|---|---|---|---|---|---|---|")
  for _, model in ipairs({ "autoencoder", "sequence" }) do
    local t = r.paper_table[model]
    local function row(source, v)
      if v then
        line(("| %s | %s | %s | %s | %s | %s | %s |"):format(model, source, int(v.epoch), num(v.acc), sci(v.loss),
          num(v.val_acc), sci(v.val_loss)))
      end
    end
    row("paper (published table)", t.paper)
    row("original notebook (final log)", t.notebook)
    row("this run, last epoch", t.run and t.run.last)
    row("this run, best checkpoint (evaluated)", t.run and t.run.best)
    if not (t.run and (t.run.last or t.run.best)) then line(("| %s | this run | — | — | — | — | — |"):format(model)) end
  end
  line()
  line("What the columns mean:")
  line()
  line("- **acc, autoencoder**: " .. MEANINGS.autoencoder_acc)
  line("- **acc, sequence model**: " .. MEANINGS.sequence_acc)
  line("- **loss**: " .. MEANINGS.loss)
  line()
  line("The paper publishes only this table; the measures below have no published counterpart.")
  line()

  line("## Autoencoder on held-out frames")
  line()
  local a = r.autoencoder
  if a.skipped then
    line("Skipped: " .. a.skipped)
  else
    line(("Frames %d..%d (the autoencoder's validation split, %d frames). Masks: pixels < 0.5."):format(a.first, a.last, a.frames))
    line()
    line("| measure | value |")
    line("|---|---|")
    line(("| mask IoU, mean | %s |"):format(num(a.iou.mean)))
    line(("| mask IoU, median / 10th percentile / min | %s / %s / %s |"):format(num(a.iou.median), num(a.iou.p10), num(a.iou.min)))
    line(("| binary accuracy (Keras acc) | %s |"):format(num(a.binary_accuracy)))
    line(("| MSE | %s |"):format(sci(a.mse)))
  end
  line()

  line("## Next-frame prediction")
  line()
  local nf = r.next_frame
  if nf.skipped then
    line("Skipped: " .. nf.skipped)
  else
    line(("The sequence model's validation windows: %d targets, latents %d..%d, look-back %d. Each prediction is decoded "
      .. "and its mask compared with the true next frame's."):format(nf.windows, nf.first_target, nf.last_target, nf.look_back))
    line()
    line("| predictor | mean IoU | median IoU | beats repeating the last frame |")
    line("|---|---|---|---|")
    for _, m in ipairs(nf.by_mode) do
      line(("| model, %s | %s | %s | %s of windows |"):format(m.mode, num(m.iou.mean), num(m.iou.median), num(m.beats_baseline, 3)))
    end
    line(("| baseline: repeat the last frame | %s | %s | |"):format(num(nf.repeat_last_frame.mean), num(nf.repeat_last_frame.median)))
    line(("| ceiling: the autoencoder's reconstruction of the true next frame | %s | %s | |"):format(
      num(nf.autoencoder_ceiling.mean), num(nf.autoencoder_ceiling.median)))
  end
  line()

  line("## Long-run generation")
  line()
  local g = r.generation
  if g.skipped then
    line("Skipped: " .. g.skipped)
  else
    line(("%d steps per run, window '%s'. Motion: the last %d steps against the real frames' %s (reconstructed held-out "
      .. "frames: %s). Plausibility: best IoU >= %s against %d training frames (reconstructed held-out frames: %s)."):format(
      g.steps, g.window, g.motion_steps, num(g.real_motion), num(r.autoencoder.reconstruction_motion),
      num(g.plausible_iou, 2), g.reference_frames, num(r.autoencoder.reconstruction_plausibility, 3)))
    line()
    line("| mode | seed | motion ratio | motion (last steps) | plausibility | plausibility (last steps) | mean best IoU | verdict |")
    line("|---|---|---|---|---|---|---|---|")
    for _, run in ipairs(g.runs) do
      line(("| %s | %s | %s | %s | %s | %s | %s | %s |"):format(run.mode, run.seed, num(run.motion_ratio, 3), num(run.motion),
        num(run.plausibility, 3), num(run.plausibility_late, 3), num(run.best_iou.mean), run.verdict))
    end
    line()
    line("- **motion ratio**: " .. MEANINGS.motion_ratio)
    line("- **plausibility**: " .. MEANINGS.plausibility)
    line(("- verdict: 'frozen' when the motion ratio is below %s, 'implausible' when plausibility is below 0.5."):format(
      num(g.frozen_below, 2)))
    local sheets = {}
    for _, run in ipairs(g.runs) do
      if run.sheet then sheets[#sheets + 1] = ("[%s, %s](%s)"):format(run.mode, run.seed, run.sheet) end
    end
    if #sheets > 0 then line("- contact sheets (24 frames spread over each run): " .. table.concat(sheets, ", ")) end
    if g.motion_plot then line(("- motion per step: [%s](%s)"):format(g.motion_plot, g.motion_plot)) end
  end
  line()
  line("Modes: " .. r.settings.modes_text .. ".")
  line()
  return table.concat(out, "\n")
end

---------------------------------------------------------------------------
-- evaluate
---------------------------------------------------------------------------

local EVAL_OPTIONS = { "run", "ae", "seq", "data", "out", "steps", "modes", "temperature", "noise", "seeds", "window",
  "references", "plausible_iou", "motion_steps", "max_windows", "max_heldout", "batch_size", "seed", "images", "video",
  "frozen_below", "output" }

-- Modes as {name, mode, temperature, noise}: 'deterministic', 'sample', or tables.
local function resolve_modes(fn, o, seq, default_noise)
  local mdn = seq.mdn ~= nil
  local list = o.modes or { "deterministic", "sample" }
  if type(list) ~= "table" or #list == 0 then
    error(("%s: option 'modes' must be a non-empty list, got %s"):format(fn, util.describe(list)), 0)
  end
  if o.temperature ~= nil and not mdn then
    error(fn .. ": option 'temperature' is for a sequence model with an MDN head (variant 'mdn'); this one takes noise=", 0)
  end
  local out, seen = {}, {}
  for i, m in ipairs(list) do
    local spec
    if m == "deterministic" then
      spec = { mode = "deterministic" }
    elseif m == "sample" then
      spec = mdn and { mode = "sample", temperature = o.temperature or 1 } or { mode = "sample", noise = o.noise or default_noise }
    elseif type(m) == "table" then
      util.options(("%s: modes[%d]"):format(fn, i), m, { "mode", "temperature", "sigma_temperature", "noise", "name" })
      spec = { mode = util.choice(fn, ("modes[%d].mode"):format(i), m.mode, { "deterministic", "sample" }, "sample"),
               temperature = util.check(fn, ("modes[%d].temperature"):format(i), m.temperature, "temperature", nil),
               sigma_temperature = util.check(fn, ("modes[%d].sigma_temperature"):format(i), m.sigma_temperature,
                 "nonneg", nil),
               noise = util.check(fn, ("modes[%d].noise"):format(i), m.noise, "nonneg", nil), name = m.name }
      if spec.mode == "sample" and mdn and spec.temperature == nil then spec.temperature = o.temperature or 1 end
      if spec.mode == "sample" and not mdn and spec.noise == nil then spec.noise = o.noise or default_noise end
    else
      error(("%s: modes[%d] must be 'deterministic', 'sample' or {mode=, temperature=, sigma_temperature=, noise=, "
        .. "name=}, got %s"):format(fn, i,
        util.describe(m)), 0)
    end
    spec.calibrated = spec.temperature == "auto" or nil
    if spec.temperature ~= nil and not mdn then
      error(("%s: modes[%d]: temperature is for a sequence model with an MDN head; this one takes noise="):format(fn, i), 0)
    end
    if spec.sigma_temperature ~= nil and not (mdn and spec.mode == "sample") then
      error(("%s: modes[%d]: sigma_temperature is for sampling from an MDN head"):format(fn, i), 0)
    end
    spec.temperature = util.temperature(fn, ("modes[%d].temperature"):format(i), spec.temperature, seq)
    if spec.calibrated and spec.sigma_temperature == nil then spec.sigma_temperature = seq.sigma_temperature end
    if not spec.name then
      spec.name = spec.mode
      if spec.temperature then spec.name = spec.name .. (" T=%g"):format(spec.temperature) end
      if spec.sigma_temperature and spec.sigma_temperature ~= spec.temperature then
        spec.name = spec.name .. (" sigma T=%g"):format(spec.sigma_temperature)
      end
      if spec.calibrated then spec.name = spec.name .. " (calibrated)" end
      if spec.noise and spec.noise > 0 then spec.name = spec.name .. (" noise=%.3g"):format(spec.noise) end
    end
    if seen[spec.name] then error(("%s: two modes are named '%s'"):format(fn, spec.name), 0) end
    seen[spec.name] = true
    out[#out + 1] = spec
  end
  return out
end

-- Seeds as {name, seed}: 'random', 'real' (the first validation window), 'index:N'.
local function resolve_seeds(fn, o, first_real)
  local list = o.seeds or { "random", "real" }
  if type(list) ~= "table" or #list == 0 then
    error(("%s: option 'seeds' must be a non-empty list, got %s"):format(fn, util.describe(list)), 0)
  end
  local out = {}
  for i, s in ipairs(list) do
    if s == "random" then out[i] = { name = "random", seed = "random" }
    elseif s == "real" then out[i] = { name = ("real %d"):format(first_real), seed = ("index:%d"):format(first_real) }
    elseif type(s) == "string" and s:match("^index:%d+$") then out[i] = { name = "real " .. s:sub(7), seed = s }
    else
      error(("%s: seeds[%d] must be 'random', 'real' or 'index:N', got %s"):format(fn, i, util.describe(s)), 0)
    end
  end
  return out
end

--- evaluate{run=DIR, data=PATH, steps=1000, modes={'deterministic', 'sample'}, temperature=1, noise=,
--   seeds={'random', 'real'}, window='sliding', references=1000, plausible_iou=0.7, motion_steps=200,
--   max_windows=2000, max_heldout=2000, batch_size=64, seed=1, images=true, video=false,
--   frozen_below=0.1, ae=DIR/ae, seq=DIR/seq, out=DIR, output=io.stdout} -> report
-- Writes OUT/report.json and OUT/report.md (and OUT/eval/*.png). output=false is silent.
dance.evaluate = util.public(function(opts)
  local fn = "dd.dance.evaluate"
  local o = util.options(fn, opts, EVAL_OPTIONS)
  local run, ae_dir, seq_dir = run_dirs(fn, o)
  local cfg = generation_cfg(fn, o, "evaluate")
  cfg.max_windows = util.check(fn, "max_windows", o.max_windows, "integer", 2000)
  cfg.max_heldout = util.check(fn, "max_heldout", o.max_heldout, "integer", 2000)
  cfg.images = util.check(fn, "images", o.images, "boolean", true)
  cfg.video = util.check(fn, "video", o.video, "boolean", false)
  cfg.frozen_below = util.check(fn, "frozen_below", o.frozen_below, "nonneg", 0.1)
  util.check(fn, "temperature", o.temperature, "temperature", nil)
  util.check(fn, "noise", o.noise, "nonneg", nil)
  cfg.seed = seed_option(fn, o)
  local out_dir = util.check(fn, "out", o.out, "string", run):gsub("/+$", "")
  cfg.eval_dir = out_dir .. "/eval"
  local t_start = dd.clock()

  -- Models and data
  local r = open_run(fn, o, cfg, ae_dir, seq_dir)
  local ae, ae_config, has_seq, seq, info, data, fs, latents = r.ae, r.ae_config, r.has_seq, r.seq, r.info, r.data,
    r.fs, r.latents
  local N = #fs
  util.mkdir(fn, out_dir)
  if cfg.images or cfg.video then util.mkdir(fn, cfg.eval_dir) end

  local report = {
    run = run, data = data, frames = N, height = fs.height, width = fs.width, created = os.date("!%Y-%m-%dT%H:%M:%SZ"),
    published = PUBLISHED, meanings = MEANINGS,
    paper_table = {
      autoencoder = { paper = PUBLISHED.autoencoder.paper, notebook = PUBLISHED.autoencoder.notebook,
                      run = trained_rows(ae_dir, { "binary_accuracy", "acc", "accuracy" }) },
      sequence = { paper = PUBLISHED.sequence.paper, notebook = PUBLISHED.sequence.notebook,
                   run = has_seq and trained_rows(seq_dir, { "acc", "categorical_accuracy", "accuracy" }) or nil },
    },
    checkpoints = { autoencoder = ae.path, autoencoder_epoch = ae.meta.epoch },
  }
  if has_seq then report.checkpoints.sequence, report.checkpoints.sequence_variant = seq_dir, seq.variant end

  -- Modes and seeds are checked before the long computations start. The
  -- sampling noise of a regression head defaults to half the latents' mean std.
  local modes, seeds, mean_std
  if has_seq then
    local lat_train = latents:narrow(1, 1, math.min(info.n_train, latents:size(1)))
    local centred = lat_train - lat_train:mean(1)
    mean_std = math.sqrt((centred * centred):mean())
    modes = resolve_modes(fn, o, seq, 0.5 * mean_std)
    seeds = resolve_seeds(fn, o, info.n_train + 1)
  end

  local refs, n_refs, real, pairs_counted = references(cfg, r)

  -- Autoencoder on its held-out frames
  local ho_first = ae_config.n_train and ae_config.n_train + 1 or math.floor(N * 0.9) + 1
  local ho_last = math.min(N, ae_config.frames or N)
  if ho_first > ho_last then ho_first = 1 end -- trained without validation: all frames
  if ho_last - ho_first + 1 > cfg.max_heldout then ho_first = ho_last - cfg.max_heldout + 1 end
  local t0 = dd.clock()
  report.autoencoder = heldout_autoencoder(cfg, ae, fs, latents, ho_first, ho_last, refs)
  say(cfg, ("evaluate: autoencoder held-out IoU %.4f over %d frames (%.1f s)"):format(report.autoencoder.iou.mean,
    report.autoencoder.frames, dd.clock() - t0))

  if not has_seq then
    report.next_frame = { skipped = "no sequence model in " .. seq_dir }
    report.generation = { skipped = "no sequence model in " .. seq_dir }
    report.settings = { modes_text = "none", steps = cfg.steps }
  else
    local names = {}
    for _, m in ipairs(modes) do names[#names + 1] = "'" .. m.name .. "'" end
    report.settings = {
      steps = cfg.steps, window = cfg.window, references = n_refs, plausible_iou = cfg.plausible_iou,
      motion_steps = cfg.motion_steps, seed = cfg.seed, latent_std = mean_std, modes = modes, seeds = seeds,
      variant = seq.variant, look_back = info.look_back, sequence_n_train = info.n_train,
      modes_text = table.concat(names, ", ") .. (seq.mdn and " (MDN head: sample draws at the temperature)"
        or (" (a regression head: sample adds Gaussian noise to each prediction; default std = 0.5 x the latents' mean std %.3g)"):format(mean_std)),
    }

    t0 = dd.clock()
    report.next_frame = next_frame(cfg, ae, seq, info, fs, latents, modes)
    say(cfg, ("evaluate: next-frame IoU on %d windows (%.1f s)"):format(report.next_frame.windows or 0, dd.clock() - t0))

    local gen = { steps = cfg.steps, window = cfg.window, motion_steps = cfg.motion_steps, real_motion = real,
                  real_pairs = pairs_counted, plausible_iou = cfg.plausible_iou, reference_frames = n_refs,
                  frozen_below = cfg.frozen_below, runs = {} }
    local plot_series = {}
    for j, s in ipairs(seeds) do
      for _, mode in ipairs(modes) do
        local r, change = generation_run(cfg, ae, seq, latents, refs, mode, s, j)
        r.motion_ratio = real > 0 and r.motion / real or nil
        local verdict = {}
        if r.motion_ratio and r.motion_ratio < cfg.frozen_below then verdict[#verdict + 1] = "frozen" end
        if r.plausibility < 0.5 then verdict[#verdict + 1] = "implausible" end
        r.verdict = #verdict > 0 and table.concat(verdict, ", ") or "moving, plausible"
        gen.runs[#gen.runs + 1] = r
        if change:numel() > 0 then plot_series[#plot_series + 1] = { name = r.mode .. ", " .. r.seed, y = change } end
        say(cfg, ("evaluate: %s from %s: motion ratio %s, plausibility %.3f (%.1f s)"):format(r.mode, r.seed,
          r.motion_ratio and ("%.3f"):format(r.motion_ratio) or "n/a", r.plausibility, r.seconds))
      end
    end
    if cfg.images and #plot_series > 0 and type(dance.plot_lines) == "function" then
      local flat = {}
      for i = 1, cfg.steps - 1 do flat[i] = real end
      plot_series[#plot_series + 1] = { name = "real frames (mean)", y = flat }
      local ok, err = pcall(dance.plot_lines, plot_series, cfg.eval_dir .. "/motion.png",
        { title = "fraction of mask pixels changing per step", xlabel = "step", ylabel = "change fraction" })
      if ok then gen.motion_plot = "eval/motion.png" else say(cfg, "evaluate: no motion plot: " .. tostring(err)) end
    end
    report.generation = gen
  end
  report.seconds = dd.clock() - t_start

  util.write_file(fn, out_dir .. "/report.json", dd.json.encode(report, { indent = true }))
  util.write_file(fn, out_dir .. "/report.md", render_md(report))
  say(cfg, ("evaluate: wrote %s/report.json and %s/report.md (%.1f s)"):format(out_dir, out_dir, report.seconds))
  return report
end)

---------------------------------------------------------------------------
-- Choosing the sampling temperature on validation seeds
---------------------------------------------------------------------------

local CALIBRATE_OPTIONS = { "run", "ae", "seq", "data", "temperatures", "sigma_temperatures", "steps", "min_plausibility",
  "min_motion", "max_motion", "plausible_iou", "references", "motion_steps", "window", "batch_size", "seed", "repeats",
  "reuse", "output" }

-- How the temperature is chosen, for the record.
local CRITERION = "the temperature (and sigma temperature) with the largest margin: for each, the smallest of "
  .. "plausibility - min_plausibility, motion_ratio - min_motion and max_motion - motion_ratio over its validation runs; "
  .. "the lower temperature on a tie, then the lower sigma temperature"

--- calibrate_temperature{run=DIR, seq=DIR/seq, ae=DIR/ae, data=, temperatures={0.5, 0.6, 0.7, 0.8, 0.9},
--   sigma_temperatures=nil, repeats=1, steps=1000, min_plausibility=0.8, min_motion=0.5, max_motion=1.5,
--   plausible_iou=0.7, references=1000,
--   motion_steps=200, window='sliding', batch_size=64, seed=1, reuse=false, output=io.stdout} -> calibration
-- Picks an MDN's sampling temperature the way a learning rate is picked: on
-- validation runs, not on the ones evaluate reports. For every temperature it
-- generates `steps` frames from a random window (a random stream of its own)
-- and from a real window in the middle of the training part (evaluate's
-- 'real' seed is the first held-out window), measures motion ratio and
-- plausibility as evaluate does, and keeps the temperature that stays
-- farthest inside the bars (CRITERION). Runs shorter than evaluate's
-- mislead: a sampler slows down over a long run, so 250 steps overstate its
-- motion. Writes SEQ/temperature.json (atomically); dd.dance.load_sequence
-- reads it as model.temperature, and temperature='auto' (generate, evaluate,
-- the experiment scripts) uses it. reuse=true returns the calibration already
-- in SEQ/temperature.json when it was made for the same checkpoint (path,
-- size, epoch) with the same settings, without generating anything.
-- sigma_temperatures (a list of numbers >= 0) searches the spread of the
-- draw apart from the choice of component: every pair (T, sigma T) is a
-- candidate, and the chosen sigma temperature is saved next to the
-- temperature (model.sigma_temperature; 'auto' uses both). Without it the
-- spread follows T, as in World Models. repeats runs each seed that many
-- times (streams of their own): a margin over more runs is less a matter of
-- luck, and the more candidates, the more luck a single pair of runs has.
dance.calibrate_temperature = util.public(function(opts)
  local fn = "dd.dance.calibrate_temperature"
  local o = util.options(fn, opts, CALIBRATE_OPTIONS)
  local run, ae_dir, seq_dir = run_dirs(fn, o)
  -- a list option of temperatures: non-empty, every one a number >= 0
  local function temperature_list(name, list)
    if type(list) ~= "table" or #list == 0 then
      error(("%s: option '%s' must be a non-empty list of numbers >= 0, got %s"):format(fn, name, util.describe(list)), 0)
    end
    for i, t in ipairs(list) do util.check(fn, ("%s[%d]"):format(name, i), t, "nonneg") end
    return list
  end
  local temps = temperature_list("temperatures", o.temperatures or { 0.5, 0.6, 0.7, 0.8, 0.9 })
  local sigmas = o.sigma_temperatures ~= nil and temperature_list("sigma_temperatures", o.sigma_temperatures) or nil
  local cfg = generation_cfg(fn, o, "calibrate")
  cfg.min_plausibility = util.check(fn, "min_plausibility", o.min_plausibility, "fraction", 0.8)
  cfg.min_motion = util.check(fn, "min_motion", o.min_motion, "nonneg", 0.5)
  cfg.max_motion = util.check(fn, "max_motion", o.max_motion, "positive", 1.5)
  cfg.images, cfg.video = false, false
  if cfg.steps < 2 then error(("%s: option 'steps' must be at least 2 (motion needs a pair of frames), got %d"):format(fn, cfg.steps), 0) end
  if cfg.max_motion <= cfg.min_motion then
    error(("%s: option 'max_motion' (%g) must be above 'min_motion' (%g)"):format(fn, cfg.max_motion, cfg.min_motion), 0)
  end
  cfg.seed = seed_option(fn, o)
  local repeats = util.check(fn, "repeats", o.repeats, "integer", 1)
  local reuse = util.check(fn, "reuse", o.reuse, "boolean", false)

  -- what the calibration is of, and with what: a saved one with both equal is reused
  if not (util.exists(seq_dir .. "/best.safetensors") or util.exists(seq_dir .. "/last.safetensors")) then
    error(("%s: no sequence model in %s"):format(fn, seq_dir), 0)
  end
  local seq, info = dance.load_sequence(seq_dir)
  local of = { checkpoint = seq.checkpoint, bytes = util.file_size(seq.checkpoint), epoch = info.epoch }
  local settings = { temperatures = temps, sigma_temperatures = sigmas, steps = cfg.steps,
    min_plausibility = cfg.min_plausibility,
    min_motion = cfg.min_motion, max_motion = cfg.max_motion, plausible_iou = cfg.plausible_iou,
    references = cfg.references, motion_steps = cfg.motion_steps, window = cfg.window, seed = cfg.seed,
    repeats = repeats > 1 and repeats or nil }
  local path = seq_dir .. "/temperature.json"
  if reuse and util.exists(path) then
    local ok, saved = pcall(dd.json.decode, util.read_file(path) or "")
    if ok and type(saved) == "table" and util.canonical(saved.of) == util.canonical(of)
        and util.canonical(saved.settings) == util.canonical(settings) then
      say(cfg, ("calibrate: reusing %s (temperature %g)"):format(path, saved.temperature))
      return saved
    end
  end

  local r = open_run(fn, o, cfg, ae_dir, seq_dir, seq, info)
  if not r.seq.mdn then
    error(("%s: %s is a '%s' model; a temperature is for a model with an MDN head (variant 'mdn')"):format(fn, seq_dir,
      tostring(r.seq.variant)), 0)
  end
  local refs, _, real = references(cfg, r)
  if real <= 0 then error(("%s: the real frames of %s do not move (motion 0): no motion ratio to calibrate on"):format(fn, r.data), 0) end
  local n_train = math.min(r.info.n_train, r.latents:size(1))
  local seeds = { { name = "random", seed = "random" } }
  local middle = math.max(r.info.look_back, n_train // 2)
  if middle <= n_train then seeds[2] = { name = ("real %d"):format(middle), seed = ("index:%d"):format(middle) } end

  local t0 = dd.clock()
  local candidates, chosen = {}, nil
  for _, t in ipairs(temps) do
    for _, st in ipairs(sigmas or { false }) do
      local sigma = st or nil
      local c = { temperature = t, sigma_temperature = sigma, runs = {}, margin = math.huge }
      local label = sigma and ("T=%g sigma T=%g"):format(t, sigma) or ("T=%g"):format(t)
      for rep = 1, repeats do
        for k, s in ipairs(seeds) do
          -- streams 700 + k (then 710 + k, ...): apart from evaluate's (1, 2, ...) at the same seed
          local g = generation_run(cfg, r.ae, r.seq, r.latents, refs,
            { mode = "sample", temperature = t, sigma_temperature = sigma, name = "calibrate" }, s, 690 + 10 * rep + k)
          local ratio = g.motion / real
          c.runs[#c.runs + 1] = { seed = s.name, motion_ratio = ratio, plausibility = g.plausibility }
          c.margin = math.min(c.margin, g.plausibility - cfg.min_plausibility, ratio - cfg.min_motion, cfg.max_motion - ratio)
          say(cfg, ("calibrate: %s from %s: motion ratio %.3f, plausibility %.3f (%.1f s)"):format(label, s.name, ratio,
            g.plausibility, g.seconds))
        end
      end
      candidates[#candidates + 1] = c
      if not chosen or c.margin > chosen.margin or (c.margin == chosen.margin and (t < chosen.temperature or
          (t == chosen.temperature and (sigma or t) < (chosen.sigma_temperature or chosen.temperature)))) then
        chosen = c
      end
    end
  end
  local calibration = {
    temperature = chosen.temperature, sigma_temperature = chosen.sigma_temperature, margin = chosen.margin,
    inside = chosen.margin >= 0, criterion = CRITERION,
    settings = settings, of = of, real_motion = real, seeds = seeds, candidates = candidates,
    seconds = dd.clock() - t0, created = os.date("!%Y-%m-%dT%H:%M:%SZ"),
  }
  util.write_file(fn, path, dd.json.encode(calibration, { indent = true }))
  say(cfg, ("calibrate: temperature %g%s, margin %.3f%s; wrote %s/temperature.json (%.1f s)"):format(chosen.temperature,
    chosen.sigma_temperature and (", sigma temperature %g"):format(chosen.sigma_temperature) or "",
    chosen.margin, chosen.margin >= 0 and "" or " (no temperature kept every run inside the bars)", seq_dir,
    calibration.seconds))
  return calibration
end)

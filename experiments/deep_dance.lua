-- experiments/deep_dance.lua: the whole Deep Dance experiment, each step a
-- library call you can also run alone (experiments/*.lua):
--   video (the built-in synthetic dancer unless --video) -> ingest (3 fps,
--   background removal, 120x200 uint8 cache) -> autoencoder -> sequence
--   models (the paper's deterministic regressor, and an MDN that samples) ->
--   generated dances (MP4 + GIF) -> evaluation (report.json, report.md).
-- Every step skips or resumes what a previous run of the same --out finished,
-- so a killed pipeline is continued by running the same command again.
--   deepdance experiments/deep_dance.lua --preset demo --out runs/demo
local p = dd.cli.parser("deep_dance.lua", "Run the Deep Dance pipeline end to end.")
p:option("--video", "a dance video (default: render the synthetic shadow dancer)")
p:option("--background", "threshold (the paper's rule) or median (static camera)", "threshold"):choices{ "threshold", "median" }
p:option("--preset", "demo (minutes, for `make demo`), paper (the original's scale) or smoke (seconds, for tests)", "demo")
  :choices{ "demo", "paper", "smoke" }
p:option("--out", "run directory", "runs/deep_dance")
p:option("--seed", "one seed for the whole run (video, weights, shuffling, sampling)", "1"):convert(math.tointeger)
p:option("--minutes", "length of the synthetic video (default: the preset's)"):convert(tonumber)
p:option("--ae-epochs", "autoencoder epochs (default: the preset's; the demo's 34 fit in 10 minutes; "
  .. "use a new --out: finished steps are reused)")
  :convert(math.tointeger)
p:option("--seq-epochs", "sequence-model epochs (default: the preset's)"):convert(math.tointeger)
p:option("--progress", "bar, lines or none"):choices{ "bar", "lines", "none" }
local o = dd.cli.parse(p, arg)
if not o then return end

-- The scales. demo: small enough to finish in minutes on 2 cores, so it
-- trades the original's model for ours where that learns more per second:
-- the strided autoencoder (no 3x3 convolution at full resolution, 16
-- filters) with batch normalisation, BCE + Dice, the output started at the
-- mean brightness, a cosine learning-rate decay, mirrored and shifted
-- training frames, 12 minutes of video (2160 frames: with 4 the autoencoder
-- overfits, train IoU 0.75 against 0.63 held out) rendered at the 3 fps the
-- ingest keeps (the same frames as from 6 fps, in 60% of the time), and a
-- code normalized to unit RMS for the sequence models, whose output layers
-- start at the data's mean and spread; the notebook model also trains on
-- the mirror image of the training dance (twice the windows: without it,
-- its validation loss stops falling after 14 epochs and it predicts the next
-- frame worse than repeating the last one); the MDN (10 components) has its
-- sigmas floored and its training inputs jittered, which keeps its samples on
-- plausible poses, its learning rate decays along a cosine, and its sampling
-- temperature is calibrated on validation runs, the component's apart from
-- the spread's (docs/pipeline.md has the measurements).
-- paper: the original, layer for layer and setting for setting.
local PRESETS = {
  demo = {
    minutes = 12, video_fps = 3,
    ae = { epochs = 34, batch_size = 16, filters = 16, latent = 128, loss = "bce+dice", output_bias = "mean", lr = 1e-3,
           variant = "strided", lr_schedule = "cosine", min_lr = 1e-5, flip = true, shift_x = 16, normalize_code = true,
           norm = "batch" },
    seq = { epochs = 20, batch_size = 64, split = 0.9, patience = 8, head_init = "data" },
    notebook = { mirror = true },
    mdn = { mixtures = 10, min_sigma = 0.2, noise = 0.25, lr_schedule = "cosine", min_lr = 1e-5 },
    calibrate = { temperatures = { 0.6, 0.65, 0.7, 0.8 }, sigma_temperatures = { 0.1, 0.2, 0.3 } },
    steps = 1000, video_steps = 200, interpolate = 4, temperature = "auto",
  },
  smoke = {
    minutes = 0.4, video_fps = 6,
    ae = { epochs = 1, batch_size = 8, filters = 4, latent = 16, loss = "bce", output_bias = "mean", lr = 1e-3 },
    seq = { epochs = 2, batch_size = 16, split = 0.8, units = { 16, 16 } },
    notebook = { mirror = true },
    mdn = { mixtures = 2 },
    calibrate = { temperatures = { 0.5, 1.0 }, steps = 12, references = 20, motion_steps = 6 },
    steps = 40, video_steps = 12, interpolate = 2, temperature = "auto",
  },
  paper = {
    minutes = 80, video_fps = 30,
    ae = { epochs = 27, batch_size = 128, filters = 32, latent = 128, loss = "mse", output_bias = "zero", lr = 1e-3 },
    seq = { epochs = 1000, batch_size = 128, split = 13000, patience = 50 },
    mdn = { mixtures = 5 },
    calibrate = {},
    steps = 1000, video_steps = 100, interpolate = 10, temperature = "auto",
  },
}
local P = PRESETS[o.preset]
local out = o.out:gsub("/+$", "")
local t_start = dd.clock()
local function exists(path) local f = io.open(path) if f then f:close() return true end return false end
local function step(name) io.stdout:write(("\n== %s  (%.0f s)\n"):format(name, dd.clock() - t_start)); io.stdout:flush() end
local function sh(cmd)
  local ok, why, code = os.execute(cmd)
  if not ok then error(("deep_dance: step failed (%s %s): %s"):format(why, tostring(code), cmd), 0) end
end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
-- this very binary, for the steps run as commands and the side-by-side jobs
local exe = dd.process.executable()
local deepdance = q(exe)
sh("mkdir -p " .. q(out .. "/data"))

-- Runs each job's calls (dd.dance.<fn>(opts), in order) for every job at once,
-- each job in its own process on one thread, with its output in job.log,
-- printed when it ends. The two sequence models (and then their evaluations)
-- run side by side this way: an LSTM training at batch 64 runs 1.6x faster on
-- two threads than on one (1011 against 633 sequences/s), so two one-thread
-- jobs at once still beat two two-thread jobs one after the other. Each job
-- seeds itself, so the results do not depend on which finishes first. If
-- one fails (or on Ctrl-C) the others are stopped and the error names its log.
local function run_side_by_side(jobs)
  local pids, job_of = {}, {}
  for _, j in ipairs(jobs) do
    os.remove(j.log) -- (spawn appends: a rerun's log holds that run only)
    local code = ("dd.manual_seed(%d)"):format(o.seed)
    for _, c in ipairs(j.calls) do code = code .. ("; dd.dance.%s(dd.json.decode(%q))"):format(c.fn, dd.json.encode(c.opts)) end
    local pid = dd.process.spawn{ argv = { exe, "-e", code }, output = j.log,
                                  env = { DEEPDANCE_NUM_THREADS = "1", OPENBLAS_NUM_THREADS = "1" } }
    pids[#pids + 1], job_of[pid] = pid, j
  end
  local ok, err = pcall(function()
    while #pids > 0 do
      local pid, code = dd.process.wait(pids, 1.0)
      if pid then
        for i, p in ipairs(pids) do if p == pid then table.remove(pids, i) break end end
        local j = job_of[pid]
        local f = io.open(j.log)
        io.stdout:write(("-- %s (%s)\n"):format(j.name, j.log), f and f:read("a") or "", "\n")
        if f then f:close() end
        io.stdout:flush()
        if code ~= 0 then
          error(("deep_dance: %s failed (exit status %d); its output is in %s"):format(j.name, code, j.log), 0)
        end
      end
    end
  end)
  if not ok then
    for _, pid in ipairs(pids) do dd.process.kill(pid, "TERM") end
    for _ = 1, #pids do if not dd.process.wait(pids, 5) then break end end
    error(err, 0)
  end
end

-- 1. The video.
local video = o.video
if not video then
  video = out .. "/data/synthetic_dance.mp4"
  step("synthetic video")
  if exists(video) then print("reusing " .. video)
  else
    sh(("%s %s --minutes %s --seed %d --fps %d --out %s"):format(deepdance, q(dd.home .. "/experiments/synth_video.lua"),
      tostring(o.minutes or P.minutes), o.seed, P.video_fps, q(video)))
  end
end

-- 2. Frames at 3 fps, background removed, 120x200 uint8.
local frames = out .. "/data/frames.safetensors"
step("ingest")
if exists(frames) then print("reusing " .. frames)
else
  sh(("%s %s --video %s --fps 3 --background %s --out %s"):format(deepdance, q(dd.home .. "/experiments/ingest.lua"),
    q(video), o.background, q(frames)))
end

-- 3. The autoencoder.
step("autoencoder")
local ae_opts = { data = frames, out = out .. "/ae", seed = o.seed, resume = true, progress = o.progress }
for k, v in pairs(P.ae) do ae_opts[k] = v end
ae_opts.epochs = o.ae_epochs or ae_opts.epochs
dd.dance.train_autoencoder(ae_opts)
local ae = dd.dance.load_autoencoder(out .. "/ae")

-- 4. Sequence models: the paper's (notebook) regressor and the MDN sampler,
-- side by side. The latents are encoded once, here, for both.
local seqs = { { name = "notebook", dir = out .. "/seq" }, { name = "mdn", dir = out .. "/seq_mdn" } }
step("sequence models: " .. seqs[1].name .. " and " .. seqs[2].name)
local jobs = {}
for _, s in ipairs(seqs) do
  sh("mkdir -p " .. q(s.dir))
  dd.dance.prepare_latents{ ae_dir = out .. "/ae", data = frames, out = s.dir }
  local so = { ae_dir = out .. "/ae", data = frames, out = s.dir, variant = s.name, seed = o.seed, resume = true,
               progress = o.progress }
  for k, v in pairs(P.seq) do so[k] = v end
  so.epochs = o.seq_epochs or so.epochs
  for k, v in pairs(P[s.name] or {}) do so[k] = v end -- P.notebook, P.mdn
  local calls = { { fn = "train_sequence", opts = so } }
  -- the MDN's sampling temperature, chosen on validation runs right after
  -- training (dd.dance.calibrate_temperature); an earlier run's is reused
  -- when it was made for the same checkpoint with the same settings
  if s.name == "mdn" and P.temperature == "auto" then
    local co = { run = out, ae = out .. "/ae", seq = s.dir, data = frames, seed = o.seed, reuse = true }
    for k, v in pairs(P.calibrate or {}) do co[k] = v end
    calls[2] = { fn = "calibrate_temperature", opts = co }
  end
  jobs[#jobs + 1] = { name = "sequence model " .. s.name, calls = calls, log = s.dir .. "/train.log" }
end
run_side_by_side(jobs)

-- 5. Dances: the paper's deterministic loop from a random seed, and sampling
-- at the preset's temperature: 'auto', the one calibrate_temperature chose
-- above (on validation runs: a random window of its own stream and a window
-- in the middle of the training part; evaluate reports other runs).
step("generate")
sh("mkdir -p " .. q(out .. "/gen"))
local fs = dd.data.frames(frames)
local videos = {}
for _, g in ipairs{
  { name = "deterministic", seq = out .. "/seq", mode = "deterministic" },
  { name = "sampling", seq = out .. "/seq_mdn", mode = "sample", temperature = P.temperature or 1.0 },
} do
  dd.manual_seed(o.seed)
  local seq = dd.dance.load_sequence(g.seq)
  local lat = dd.dance.generate{ ae = ae, seq = seq, seed = "random", steps = P.video_steps, mode = g.mode,
                                 temperature = g.temperature, data = fs }
  local frames_out = dd.dance.decode(ae, dd.dance.interpolate(lat, P.interpolate))
  local mp4 = ("%s/gen/dance_%s.mp4"):format(out, g.name)
  local gif = ("%s/gen/dance_%s.gif"):format(out, g.name)
  dd.dance.write_video(frames_out, mp4, { fps = 3 * P.interpolate, scale = 2 })
  dd.dance.write_video(frames_out, gif, { fps = 3 * P.interpolate, scale = 1 })
  videos[#videos + 1] = { name = g.name, mp4 = mp4, gif = gif }
  print(("%s: %d steps -> %s, %s"):format(g.name, P.video_steps, mp4, gif))
end

-- 6. Evaluation: one report per sequence model (side by side), then one summary.
step("evaluate: " .. seqs[1].name .. " and " .. seqs[2].name)
jobs = {}
for _, s in ipairs(seqs) do
  -- the MDN samples at the preset's temperature (the videos', 'auto': the
  -- calibrated one), next to the paper's deterministic loop (other
  -- temperatures: experiments/evaluate.lua --temperature, docs/pipeline.md);
  -- the notebook model runs the paper's loop and noise injection (the defaults)
  local modes = nil
  if s.name == "mdn" then modes = { "deterministic", { mode = "sample", temperature = P.temperature or 1 } } end
  sh("mkdir -p " .. q(s.dir .. "/eval"))
  jobs[#jobs + 1] = { name = "evaluation of " .. s.name, log = s.dir .. "/eval/evaluate.log", calls = { { fn = "evaluate",
    opts = { run = out, ae = out .. "/ae", seq = s.dir, data = frames, out = s.dir .. "/eval", steps = P.steps,
             seed = o.seed, modes = modes } } } }
end
run_side_by_side(jobs)
local summary = { preset = o.preset, seed = o.seed, video = video, frames = #fs, seconds = dd.clock() - t_start,
                  videos = videos, reports = {} }
for _, s in ipairs(seqs) do summary.reports[s.name] = s.dir .. "/eval/report.json" end
local f = assert(io.open(out .. "/report.json.tmp", "w"))
f:write(dd.json.encode(summary, { indent = true }), "\n")
f:close()
assert(os.rename(out .. "/report.json.tmp", out .. "/report.json"))
local md = { "# Deep Dance run: " .. out, "",
  ("preset %s, seed %d, %d frames from %s, %.0f s in all."):format(o.preset, o.seed, #fs, video, dd.clock() - t_start), "" }
for _, s in ipairs(seqs) do
  local text = io.open(s.dir .. "/eval/report.md")
  md[#md + 1] = "## Sequence model: " .. s.name
  md[#md + 1] = ""
  if text then md[#md + 1] = (text:read("a"):gsub("^#", "###")); text:close() end
end
md[#md + 1] = "## Videos"
for _, v in ipairs(videos) do md[#md + 1] = ("- %s: [%s](%s), [%s](%s)"):format(v.name, v.mp4, v.mp4, v.gif, v.gif) end
f = assert(io.open(out .. "/report.md.tmp", "w"))
f:write(table.concat(md, "\n"), "\n")
f:close()
assert(os.rename(out .. "/report.md.tmp", out .. "/report.md"))

step("done")
print("videos:")
for _, v in ipairs(videos) do print("  " .. v.mp4 .. "  " .. v.gif) end
print("plots:   " .. out .. "/ae/curves.png  " .. out .. "/ae/recon.png  " .. out .. "/seq/curves.png")
print("report:  " .. out .. "/report.md  " .. out .. "/report.json")

-- bench/run.lua: `make bench`. Each row is measured side by side with its peer
-- in the same run; prints a table and writes bench/results.json.
--   deepdance bench/run.lua [--quick] [--only ROW] [--json PATH]
-- ROW: matmul, conv, ingest, ae_train32, ae_train128, seq_train128, decoder64,
-- generate, memory (the autoencoder's batch-32 training peak memory).
-- A full run writes bench/results.json; --quick (a smoke, under 2 minutes)
-- and --only write build/bench/results-partial.json so the record is kept
-- (--json PATH: there instead).
--
-- How a row is measured (the machine is shared and noisy):
-- - every repetition of ours runs in its own child process
--   (`deepdance bench/run.lua --child ROW ...`), so its peak RSS (VmHWM) is the
--   row's alone; every repetition of the PyTorch peer in its own
--   `/usr/bin/python3 bench/peer_torch.py ROW ...` (RSS from getrusage);
-- - inside a child: one warm-up, then the best of N repetitions;
-- - the peer's thread setting is chosen first: torch threads 1 and 2 x
--   OPENBLAS_NUM_THREADS 1 and 2, one child each (the variable must be set
--   before torch is imported); the fastest setting wins and is timed again;
-- - then rounds alternate ours and the peer (ours first in odd rounds, the
--   peer first in even ones), and the best of each side is kept.
-- ratio is always "how many times better deepdance is": ours/peer for a
-- rate, peer/ours for seconds and MiB.
local home = dd.home

local function usage_error(msg)
  error("bench: " .. msg .. " (usage: deepdance bench/run.lua [--quick] [--only ROW] [--json PATH])", 0)
end

local opts = { quick = false }
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    local function value()
      i = i + 1
      if arg[i] == nil then usage_error(a .. " needs a value") end
      return arg[i]
    end
    if a == "--quick" then opts.quick = true
    elseif a == "--only" then opts.only = value()
    elseif a == "--json" then opts.json = value()
    elseif a == "--child" then opts.child = value()            -- internal: one measurement of ours
    elseif a == "--reps" then opts.reps = math.tointeger(tonumber(value()))
    elseif a == "--frames" then opts.frames = math.tointeger(tonumber(value()))
    elseif a == "--out" then opts.out = value()
    else usage_error("unknown option " .. a .. " (known: --quick, --only ROW, --json PATH)") end
    i = i + 1
  end
end

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_json(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local ok, v = pcall(dd.json.decode, s)
  return ok and v or nil
end

local function write_json(path, value)
  local f = assert(io.open(path .. ".tmp", "w"))
  f:write(dd.json.encode(value, { indent = true }), "\n")
  f:close()
  assert(os.rename(path .. ".tmp", path))
end

local function peak_rss_mb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local kb = s:match("VmHWM:%s*(%d+)")
  return kb and tonumber(kb) / 1024
end

---------------------------------------------------------------------------
-- FLOPs
---------------------------------------------------------------------------
-- Multiply-accumulates of one forward pass of one sample, layer by layer
-- (shapes from each module's output_shape):
--   Conv2d           output H*W  x weight numel (K*C*R*S)
--   ConvTranspose2d  input H*W   x weight numel (C*K*R*S): each input pixel is
--                    scattered through the whole kernel (stride 1 'same': the
--                    same count as the convolution it equals)
--   Linear           weight numel x the positions it is applied at
--   LSTM             time steps x (numel W_ih + numel W_hh): the four gates'
--                    input and recurrent products at every step
-- A FLOP is 2 x a MAC. Activations, pooling, upsampling, biases, the loss and
-- the optimizer are left out (well under 1% of the products here). A training
-- step counts 3 x the forward FLOPs: the backward pass does two products of
-- the forward's size per layer (input gradient and weight gradient); the
-- first layer's input gradient is counted too (under 0.5% of the total here).
local function param(m, name)
  for _, p in ipairs(m:parameters()) do
    if p.name == name then return p.value end
  end
end

local function prod(shape, from)
  local n = 1
  for i = from, #shape do n = n * shape[i] end
  return n
end

local function forward_macs(model, shape)
  local macs = 0
  local function walk(m)
    local mods = type(m) == "table" and rawget(m, "modules")
    if mods then
      for _, c in ipairs(mods) do walk(c) end
      return
    end
    local out = m:output_shape(shape)
    local kind = m.kind
    if kind == "Conv2d" then macs = macs + prod(out, 3) * param(m, "weight"):numel()
    elseif kind == "ConvTranspose2d" then macs = macs + prod(shape, 3) * param(m, "weight"):numel()
    elseif kind == "Linear" then macs = macs + prod(shape, 2) // shape[#shape] * param(m, "weight"):numel()
    elseif kind == "LSTM" then
      macs = macs + shape[2] * (param(m, "weight_ih_l0"):numel() + param(m, "weight_hh_l0"):numel())
    elseif #m:parameters() > 0 then
      io.stderr:write("bench: FLOPs of a ", tostring(kind), " layer are not counted\n")
    end
    shape = out
  end
  walk(model)
  return macs
end

---------------------------------------------------------------------------
-- Our side: one child process measures one row
---------------------------------------------------------------------------

local function autoencoder()
  dd.manual_seed(1)
  return dofile(home .. "/models/autoencoder.lua"){}
end

local function sequence()
  dd.manual_seed(1)
  return dofile(home .. "/models/sequence.lua"){ variant = "notebook" }
end

local function best_of(reps, fn)
  fn() -- warm-up
  local best = math.huge
  for _ = 1, reps do
    local t0 = dd.clock()
    fn()
    best = math.min(best, dd.clock() - t0)
  end
  return best
end

-- One training step: zero_grad, forward, MSE, backward, Adam.
local function train_seconds(model, x, y, reps)
  model:train()
  local opt = dd.optim.Adam{ model:parameters(), lr = 1e-3 }
  local mse = dd.nn.MSELoss()
  return best_of(reps, function()
    opt:zero_grad()
    local out = model:forward(x)
    mse:forward(out, y)
    model:backward(x, mse:backward(out, y), false) -- as the peer: no input gradient
    opt:step()
  end)
end

-- The generation loop of experiments/generate.lua with an untrained model:
-- a random seed window, the stateful predict-append loop (dd.dance.generate),
-- the latents decoded 64 at a time, upscaled 2x and written to an MP4 at
-- 6 fps (dd.dance.video_writer's defaults: H.264 crf 18, preset medium).
local function generate(ae, seq, frames, path)
  local z = dd.dance.generate{ ae = ae, seq = seq, seed = "random", steps = frames, look_back = 10 }
  local w = dd.dance.video_writer(path, { fps = 6, scale = 2 })
  for first = 1, frames, 64 do
    local n = math.min(64, frames - first + 1)
    w:write(dd.dance.decode(ae, z:narrow(1, first, n), { batch_size = 64 }))
  end
  w:close()
end

local child = {}

child.matmul = function(reps)
  local n = 1024
  local a, b = dd.rand(n, n), dd.rand(n, n)
  local t = best_of(reps, function() return dd.matmul(a, b) end)
  return { seconds = t, items = 1, flops = 2 * n ^ 3 }
end

-- Ingest of a 10-minute 640x360 30 fps H.264 clip at 3 fps to 120x200
-- silhouettes: experiments/ingest.lua itself, everything included. The parent
-- times the whole child process, like the ffmpeg command it is compared with.
child.ingest = function()
  arg = { "--video", home .. "/build/bench/clip10.mp4", "--out", home .. "/build/bench/clip10.safetensors" }
  dofile(home .. "/experiments/ingest.lua")
  return { items = 1 }
end

local function ae_train(n)
  return function(reps)
    local ae = autoencoder()
    local x = dd.rand(n, 1, 120, 200)
    return { seconds = train_seconds(ae, x, x, reps), items = n, params = ae:num_parameters(),
             flops = 3 * 2 * n * forward_macs(ae, { 1, 1, 120, 200 }) }
  end
end
child.ae_train32, child.ae_train128 = ae_train(32), ae_train(128)

child.seq_train128 = function(reps)
  local seq = sequence()
  local x, y = dd.rand(128, 10, 128), dd.rand(128, 128)
  return { seconds = train_seconds(seq, x, y, reps), items = 128, params = seq:num_parameters(),
           flops = 3 * 2 * 128 * forward_macs(seq, { 1, 10, 128 }) }
end

-- One Conv2d 32->32 3x3 'same' + ReLU at 120x200 (the autoencoder's
-- full-size layer), forward and backward with the input gradient on 8 images:
-- the direct kernels (src/conv_direct.c), or im2col + GEMM.
local function conv_pass(direct)
  return function(reps)
    dd.set_conv_direct(direct)
    dd.manual_seed(1)
    local m = dd.nn.Conv2d{ 32, 32, activation = "relu" }
    local x, dy = dd.rand(8, 32, 120, 200), dd.randn(8, 32, 120, 200)
    local t = best_of(reps, function()
      m:zero_grad()
      m:forward(x)
      m:backward(x, dy)
    end)
    return { seconds = t, items = 8, flops = 3 * 2 * 8 * (32 * 32 * 9) * (120 * 200) }
  end
end
child.conv_direct, child.conv_gemm = conv_pass(true), conv_pass(false)

child.decoder64 = function(reps)
  local ae = autoencoder()
  ae:eval()
  local z = dd.rand(64, 128)
  local t = best_of(reps, function() return ae.decoder:forward(z) end)
  return { seconds = t, items = 64, params = ae.decoder:num_parameters(),
           flops = 2 * 64 * forward_macs(ae.decoder, { 1, 128 }) }
end

-- FLOPs: the decoder for every frame, and one step of the three LSTMs and the
-- head per prediction (plus the 10 seed steps); H.264 encoding is not counted.
child.generate = function(reps, frames)
  if not dd.dance then assert(loadfile(home .. "/lua/deepdance/dance/init.lua"))(dd) end
  local ae, seq = autoencoder(), sequence()
  ae:eval()
  seq:eval()
  local path = assert(opts.out, "bench: --child needs --out") .. ".mp4"
  generate(ae, seq, 64, path) -- warm-up, as short as the peer's
  local best = math.huge
  for _ = 1, reps do
    local t0 = dd.clock()
    generate(ae, seq, frames, path)
    best = math.min(best, dd.clock() - t0)
  end
  local t = best
  os.remove(path)
  local step_macs = forward_macs(seq, { 1, 1, 128 })
  return { seconds = t, items = frames, params = ae:num_parameters() + seq:num_parameters(),
           flops = 2 * (frames * forward_macs(ae.decoder, { 1, 128 }) + (frames + 10) * step_macs) }
end

if opts.child then
  local fn = child[opts.child]
  if not fn then usage_error("unknown child row " .. opts.child) end
  local baseline = peak_rss_mb()
  local r = fn(opts.reps or 1, opts.frames)
  r.peak_rss_mb, r.baseline_rss_mb, r.threads = peak_rss_mb(), baseline, dd.get_num_threads()
  write_json(assert(opts.out, "bench: --child needs --out"), r)
  return
end

---------------------------------------------------------------------------
-- The parent: rows, peers, rounds
---------------------------------------------------------------------------

local build = home .. "/build/bench"
-- Our children run on the same binary as this script.
local self_exe = dd.process and dd.process.executable and dd.process.executable() or (home .. "/deepdance")
os.execute("mkdir -p " .. quote(build))
local tmp = build .. "/tmp." .. tostring(os.time()) .. "." .. tostring(math.random(1 << 30))
-- Runs a child with its stderr in a log (progress bars would clutter the
-- table); the log is shown when the child fails.
local function sh(cmd)
  local log = tmp .. ".log"
  local t0 = dd.clock()
  local ok = os.execute(cmd .. " 2> " .. quote(log))
  local wall = dd.clock() - t0
  if not ok then
    local f = io.open(log)
    if f then io.stderr:write(f:read("a")); f:close() end
  end
  os.remove(log)
  return ok, wall
end

-- One run of ours: a child process; returns its result table.
local function run_ours(row, reps, frames)
  local out = tmp .. ".ours.json"
  os.remove(out)
  local cmd = table.concat({ quote(self_exe), quote(home .. "/bench/run.lua"), "--child", row,
    "--reps", tostring(reps), frames and ("--frames " .. frames) or "", "--out", quote(out), "> /dev/null" }, " ")
  local ok, wall = sh(cmd)
  local r = ok and read_json(out)
  os.remove(out)
  if not r then error("bench: our child failed: " .. cmd, 0) end
  r.wall = wall
  return r
end

local SETTINGS = { { threads = 1, blas = 1 }, { threads = 1, blas = 2 }, { threads = 2, blas = 1 }, { threads = 2, blas = 2 } }
local function setting_name(s) return ("torch threads %d, OPENBLAS_NUM_THREADS %d"):format(s.threads, s.blas) end

local torch_note      -- why there is no peer at all
local peer_error      -- the last failure of a peer child
do
  local ok = os.execute("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1")
  if not ok then torch_note = "PyTorch not installed (/usr/bin/python3 cannot import torch; apt-get install python3-torch): no peer" end
end

-- One run of the peer at one setting; nil and a note when it failed.
local function run_peer(row, s, reps, frames)
  if torch_note then return nil end
  local out = tmp .. ".peer.json"
  os.remove(out)
  -- the peer gets OpenBLAS's own idle spinning, not the limit ./deepdance sets for itself (src/main.c)
  local cmd = table.concat({ "env -u OPENBLAS_THREAD_TIMEOUT OPENBLAS_NUM_THREADS=" .. s.blas, "/usr/bin/python3",
    quote(home .. "/bench/peer_torch.py"),
    row, "--threads", tostring(s.threads), "--reps", tostring(reps), frames and ("--frames " .. frames) or "",
    "--video", quote(tmp .. ".peer.mp4"), "--out", quote(out) }, " ")
  local ok = sh(cmd)
  local r = ok and read_json(out)
  os.remove(out)
  if not r then
    peer_error = "the PyTorch peer failed: " .. cmd
    io.stderr:write("bench: ", peer_error, "\n")
    return nil
  end
  if r.skip then torch_note = r.skip; return nil end
  return r
end

-- The machine's practical peak: the best 2-thread cblas_sgemm GFLOP/s seen in
-- this run (bench/sgemm.c, n = 1024 and 2048).
local peak = 0
local function sgemm(n, reps, threads)
  local p = assert(io.popen(("%s/sgemm %d %d %d"):format(build, n, reps, threads)))
  local r = dd.json.decode(p:read("a"))
  p:close()
  if threads == 2 then peak = math.max(peak, r.gflops) end
  return r.gflops
end

-- The 1-minute load average when a row started: how busy the shared machine was.
local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return nil end
  local l = tonumber(f:read("a"):match("^(%S+)"))
  f:close()
  return l
end

local rows, notes = {}, {}
local row_load
local function add(row)
  row.loadavg = row_load
  rows[#rows + 1] = row
end

-- Row specifications. kind: 'rate' (items/s) or 'time' (seconds).
local SPECS = {
  ae_train32 = { name = "autoencoder training, batch 32", unit = "images/s", kind = "rate", reps = 3 },
  -- Batch 128 takes the peer's setting from batch 32 (same layers; trying all
  -- four settings at batch 128 would add minutes to every run).
  ae_train128 = { name = "autoencoder training, batch 128", unit = "images/s", kind = "rate", reps = 2,
                  select = "ae_train32" },
  -- Its children take seconds and single runs of it moved the ratio by 0.3
  -- (session 6), so it alternates four rounds instead of two.
  seq_train128 = { name = "sequence model training, batch 128", unit = "sequences/s",
                   kind = "rate", reps = 5, rounds = 4 },
  decoder64 = { name = "decoder inference, batch 64", unit = "frames/s", kind = "rate", reps = 5 },
  -- The setting is chosen on 256 frames, then 1800 are timed.
  generate = { name = "generation of %d frames to an MP4", unit = "s", kind = "time", reps = 1,
               frames = 1800, select_frames = 256 },
}

local winners = {}       -- selection key -> {setting=, tried=}
local winner_order = {}  -- the keys in the order they were chosen
local row_baselines = {} -- row -> process RSS before any work {ours=, peer=} (MiB)

-- Runs the peer's `row` at every setting once (warm-up + reps) and returns the
-- fastest setting and the runs. Cached under `key`. nil when there is no peer.
local function select_setting(key, row, reps, frames)
  if winners[key] then return winners[key].setting, {} end
  if opts.quick then -- a smoke: one setting, the one that won most rows in full runs
    winners[key] = { setting = SETTINGS[1] }
    return SETTINGS[1], {}
  end
  local best, runs = nil, {}
  for _, s in ipairs(SETTINGS) do
    local r = run_peer(row, s, reps, frames)
    if torch_note then return nil, runs end
    if r then -- a setting whose child failed is left out (peer_error says which)
      r.setting = s
      runs[#runs + 1] = r
      io.stderr:write(("bench:   peer %s (%s): %.3f s\n"):format(key, setting_name(s), r.seconds))
      if not best or r.seconds < best.seconds then best = r end
    end
  end
  if not best then return nil, runs end
  winners[key] = { setting = best.setting, tried = runs }
  winner_order[#winner_order + 1] = key
  return best.setting, runs
end

local function model_row(id)
  local spec = SPECS[id]
  local reps = opts.quick and 1 or spec.reps
  local frames = spec.frames and (opts.quick and 192 or spec.frames)
  io.stderr:write("bench: ", id, "\n")
  -- Choose the peer's setting. Runs made at the row's own size count.
  local setting, selection
  if spec.select then
    setting = select_setting(spec.select, spec.select, 1)
  elseif spec.select_frames and not opts.quick then
    setting = select_setting(id .. "@" .. spec.select_frames, id, 1, spec.select_frames)
  else
    setting, selection = select_setting(id, id, reps, frames)
  end
  local peer_runs = {}
  for _, r in ipairs(selection or {}) do
    if r.setting == setting then peer_runs[#peer_runs + 1] = r end
  end
  local ours_runs = {}
  local rounds = opts.quick and 1 or (spec.rounds or 2)
  for round = 1, rounds do
    local function ours() ours_runs[#ours_runs + 1] = run_ours(id, reps, frames) end
    local function peer()
      if not setting then return end
      local r = run_peer(id, setting, reps, frames)
      if r then peer_runs[#peer_runs + 1] = r end
    end
    if round % 2 == 1 then ours(); peer() else peer(); ours() end
  end
  local function best(runs)
    local b, rss = nil, nil
    for _, r in ipairs(runs) do
      if not b or r.seconds < b.seconds then b = r end
      rss = math.max(rss or 0, r.peak_rss_mb or 0)
    end
    return b, rss
  end
  local o, o_rss = best(ours_runs)
  local p, p_rss = best(peer_runs)
  row_baselines[id] = { ours = o.baseline_rss_mb, peer = p and p.baseline_rss_mb }
  local function value(r)
    if not r then return nil end
    return spec.kind == "rate" and r.items / r.seconds or r.seconds
  end
  local row = { id = id, name = spec.name:format(frames), unit = spec.unit, value = value(o), peer = value(p),
                gflops = o.flops and o.flops / o.seconds * 1e-9, peak_rss_mb = o_rss,
                peer_peak_rss_mb = p_rss, runs = #ours_runs, peer_runs = #peer_runs }
  if p then
    row.ratio = spec.kind == "rate" and row.value / row.peer or row.peer / row.value
    row.peer_gflops = o.flops and o.flops / p.seconds * 1e-9
    row.peer_setting = setting_name(setting)
    if o.params and p.params and o.params ~= p.params then
      notes[#notes + 1] = ("%s: parameter counts differ (ours %d, PyTorch %d)"):format(id, o.params, p.params)
    end
  else
    row.note = torch_note or peer_error
  end
  add(row)
  return row, o_rss, p_rss, setting
end

local function add_peak_fractions()
  for _, r in ipairs(rows) do
    if r.gflops and peak > 0 then
      r.peak_fraction = r.gflops / peak
      if r.peer_gflops then r.peer_peak_fraction = r.peer_gflops / peak end
    end
  end
end

local benches = {}

-- dd.matmul (a child of ours) against bench/sgemm.c (a direct cblas_sgemm at
-- our thread count), 1024 x 1024, alternating.
benches.matmul = function()
  io.stderr:write("bench: matmul\n")
  local reps = opts.quick and 3 or 10
  local ours, peer, threads = nil, 0, nil
  for round = 1, opts.quick and 1 or 3 do
    local r = run_ours("matmul", reps)
    threads = r.threads
    if not ours or r.seconds < ours.seconds then ours = r end
    peer = math.max(peer, sgemm(1024, reps, threads))
  end
  local gflops = ours.flops / ours.seconds * 1e-9
  add { id = "matmul", name = ("dd.matmul vs cblas_sgemm, 1024x1024, %d threads"):format(threads),
        unit = "GFLOP/s", value = gflops, peer = peer, ratio = gflops / peer, gflops = gflops,
        peak_rss_mb = ours.peak_rss_mb }
end

-- The direct convolution kernels against our own im2col + GEMM path
-- (dd.set_conv_direct(false)) on the autoencoder's full-size layer: both are
-- children of ours, alternating; the "peer" column is the GEMM path.
benches.conv = function()
  io.stderr:write("bench: conv\n")
  local reps = opts.quick and 1 or 5
  local direct, gemm
  for round = 1, opts.quick and 1 or 3 do
    local function d()
      local r = run_ours("conv_direct", reps)
      if not direct or r.seconds < direct.seconds then direct = r end
    end
    local function g()
      local r = run_ours("conv_gemm", reps)
      if not gemm or r.seconds < gemm.seconds then gemm = r end
    end
    if round % 2 == 1 then d(); g() else g(); d() end
  end
  add { id = "conv", name = "Conv2d 32->32 3x3 120x200 b8, direct vs im2col", unit = "images/s",
        value = direct.items / direct.seconds, peer = gemm.items / gemm.seconds, ratio = gemm.seconds / direct.seconds,
        gflops = direct.flops / direct.seconds * 1e-9, peer_gflops = gemm.flops / gemm.seconds * 1e-9,
        peak_rss_mb = direct.peak_rss_mb, peer_peak_rss_mb = gemm.peak_rss_mb,
        peer_setting = "ours with dd.set_conv_direct(false): im2col + OpenBLAS sgemm" }
end

-- Ingest (experiments/ingest.lua in a child of ours) against
-- `ffmpeg -i clip -vf fps=3,scale=200:120 -f rawvideo -y /dev/null`, alternating.
benches.ingest = function()
  io.stderr:write("bench: ingest\n")
  local clip = build .. "/clip10.mp4"
  if not io.open(clip) then
    io.stderr:write("bench: making a 10-minute test clip (once)...\n")
    assert(os.execute("ffmpeg -loglevel error -f lavfi -i testsrc2=size=640x360:rate=30 -t 600 -c:v libx264 " ..
      "-preset veryfast -pix_fmt yuv420p -y " .. quote(clip .. ".tmp.mp4") .. " && mv " .. quote(clip .. ".tmp.mp4") ..
      " " .. quote(clip)), "bench: cannot make the test clip")
  end
  local ours, peer, rss = math.huge, math.huge, 0
  for round = 1, opts.quick and 1 or 3 do
    local function o()
      local r = run_ours("ingest", 1)
      ours, rss = math.min(ours, r.wall), math.max(rss, r.peak_rss_mb)
    end
    local function p()
      local ok, t = sh("ffmpeg -loglevel error -i " .. quote(clip) .. " -vf fps=3,scale=200:120 -f rawvideo -y /dev/null")
      if not ok then error("bench: the ffmpeg command failed", 0) end
      peer = math.min(peer, t)
    end
    if round % 2 == 1 then o(); p() else p(); o() end
  end
  add { id = "ingest", name = "ingest 10 min at 3 fps vs ffmpeg CLI", unit = "s", value = ours,
        peer = peer, ratio = peer / ours, peak_rss_mb = rss }
end

benches.ae_train32 = function()
  local row, ours_rss, peer_rss, setting = model_row("ae_train32")
  add { id = "memory", name = "peak memory, autoencoder training batch 32", unit = "MiB",
        value = ours_rss, peer = peer_rss, ratio = peer_rss and peer_rss / ours_rss, peak_rss_mb = ours_rss,
        baseline_rss_mb = row_baselines.ae_train32.ours, peer_baseline_rss_mb = row_baselines.ae_train32.peer,
        peer_setting = setting and setting_name(setting), note = row.note }
end
benches.memory = benches.ae_train32
benches.ae_train128 = function() model_row("ae_train128") end
benches.seq_train128 = function() model_row("seq_train128") end
benches.decoder64 = function() model_row("decoder64") end
benches.generate = function() model_row("generate") end

local ORDER = { "matmul", "conv", "ingest", "ae_train32", "ae_train128", "seq_train128", "decoder64", "generate" }
if opts.only and not benches[opts.only] then
  usage_error("unknown row '" .. opts.only .. "' (known: " .. table.concat(ORDER, ", ") .. ", memory)")
end
local t_start, load_start = dd.clock(), loadavg()
if not io.open(build .. "/sgemm") then error("bench: " .. build .. "/sgemm is not built (make bench builds it)", 0) end
sgemm(2048, 3, 2)
for _, id in ipairs(ORDER) do
  sgemm(1024, 10, 2) -- the peak is sampled between rows: the best moment of a noisy machine counts
  local wanted = opts.only == id or (opts.only == "memory" and id == "ae_train32")
  -- --quick leaves out batch 128 (about a minute for the two sides) unless asked for.
  if wanted or (not opts.only and not (opts.quick and id == "ae_train128")) then
    row_load = loadavg()
    local t0 = dd.clock()
    benches[id]()
    io.stderr:write(("bench: %s took %.0f s (load average %.1f at its start)\n"):format(id, dd.clock() - t0, row_load or 0))
  end
end
sgemm(1024, 10, 2)
add_peak_fractions()

-- Table and JSON.
local function fmt(v, w, d)
  return v and string.format("%" .. w .. "." .. (d or 2) .. "f", v) or string.rep(" ", w - 1) .. "-"
end
print(("practical peak (best 2-thread cblas_sgemm in this run): %.1f GFLOP/s"):format(peak))
print(string.format("%-48s %-11s %10s %10s %7s %8s %6s %8s", "benchmark", "unit", "deepdance", "peer",
  "ratio", "GFLOP/s", "peak", "RSS MiB"))
for _, r in ipairs(rows) do
  print(string.format("%-48s %-11s %s %s %s %s %s %s", r.name, r.unit, fmt(r.value, 10), fmt(r.peer, 10),
    fmt(r.ratio, 7), fmt(r.gflops, 8, 1), fmt(r.peak_fraction, 6), fmt(r.peak_rss_mb, 8, 0)))
end
for _, r in ipairs(rows) do
  if r.peer_setting and r.id ~= "memory" then
    print(("  %s: peer at %s (%.1f GFLOP/s, peak RSS %.0f MiB)"):format(r.id, r.peer_setting, r.peer_gflops or 0,
      r.peer_peak_rss_mb or 0))
  end
end
for _, key in ipairs(winner_order) do
  local w = winners[key]
  if w.tried then
    local parts = {}
    for _, t in ipairs(w.tried) do parts[#parts + 1] = ("%d/%d %.3fs"):format(t.setting.threads, t.setting.blas, t.seconds) end
    print(("  settings tried for %s (torch threads/OpenBLAS threads: best seconds): %s"):format(key, table.concat(parts, ", ")))
  end
end
if torch_note then print("  note: " .. torch_note) end
for _, n in ipairs(notes) do print("  note: " .. n) end
print(("ratio > 1: deepdance is better. Wall time of the bench: %.0f s; 1-minute load average %.1f at the start, %.1f at the end (%d cores)")
  :format(dd.clock() - t_start, load_start or 0, loadavg() or 0, dd.process and dd.process.cores and dd.process.cores() or 0))

local path = opts.json or ((opts.quick or opts.only) and (build .. "/results-partial.json") or (home .. "/bench/results.json"))
write_json(path, rows)
print("wrote " .. path:gsub("^" .. home:gsub("%p", "%%%0") .. "/", ""))

-- bench/run.lua: `make bench`. Measures each row side by side with its peer in
-- the same run, prints a table and writes bench/results.json.
-- Usage: deepdance bench/run.lua [--quick] [--only NAME]
local opts = { quick = false, only = nil }
local i = 1
while arg and arg[i] do
  local a = arg[i]
  if a == "--quick" then opts.quick = true
  elseif a == "--only" then i = i + 1; opts.only = arg[i]
  else error("bench: unknown option " .. a .. " (known: --quick, --only NAME)") end
  i = i + 1
end

local home = dd.home
local rows = {}

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

local function peak_rss_mb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a"); f:close()
  local kb = s:match("VmHWM:%s*(%d+)")
  return kb and tonumber(kb) / 1024
end

local function add(row)
  row.peak_rss_mb = row.peak_rss_mb or peak_rss_mb()
  rows[#rows + 1] = row
end

local benches = {}

-- dd.matmul against a direct cblas_sgemm call (bench/sgemm.c), 1024 x 1024.
benches.matmul = function()
  local n, reps = 1024, opts.quick and 3 or 10
  local threads = dd.get_num_threads()
  local p = io.popen(string.format("%s/build/bench/sgemm %d %d %d", home, n, reps, threads))
  local peer = dd.json.decode(p:read("a")); p:close()
  local a, b = dd.rand(n, n), dd.rand(n, n)
  local t = best_of(reps, function() return dd.matmul(a, b) end)
  local gflops = 2 * n ^ 3 / t * 1e-9
  add { name = "matmul 1024x1024 (dd.matmul vs cblas_sgemm)", unit = "GFLOP/s", value = gflops,
        peer = peer.gflops, ratio = gflops / peer.gflops, gflops = gflops,
        peak_fraction = gflops / peer.gflops }
end

-- Ingest of a 10-minute 640x360 30 fps H.264 clip at 3 fps to 120x200
-- silhouettes (experiments/ingest.lua, everything included) against
-- `ffmpeg -i clip -vf fps=3,scale=200:120 -f rawvideo -y /dev/null`.
-- Runs alternate (ours, ffmpeg, ours, ...) so machine noise hits both; best of each.
local function sh_time(cmd)
  local t0 = dd.clock()
  local ok = os.execute(cmd)
  if not ok then error("bench: command failed: " .. cmd) end
  return dd.clock() - t0
end

benches.ingest = function()
  local clip = home .. "/build/bench/clip10.mp4"
  if not io.open(clip) then
    io.stderr:write("bench: making a 10-minute test clip (once)...\n")
    sh_time("ffmpeg -loglevel error -f lavfi -i testsrc2=size=640x360:rate=30 -t 600 -c:v libx264 -preset veryfast " ..
            "-pix_fmt yuv420p -y " .. clip .. ".tmp.mp4 && mv " .. clip .. ".tmp.mp4 " .. clip)
  end
  local reps = opts.quick and 1 or 3
  local ours, peer = math.huge, math.huge
  for _ = 1, reps do
    ours = math.min(ours, sh_time(home .. "/deepdance " .. home .. "/experiments/ingest.lua --video " .. clip ..
      " --out " .. home .. "/build/bench/clip10.safetensors > /dev/null 2>&1"))
    peer = math.min(peer, sh_time("ffmpeg -loglevel error -i " .. clip ..
      " -vf fps=3,scale=200:120 -f rawvideo -y /dev/null"))
  end
  add { name = "ingest 10 min at 3 fps (ingest.lua vs ffmpeg CLI)", unit = "s", value = ours, peer = peer,
        ratio = peer / ours }
end

-- The original autoencoder (models/autoencoder.lua), Adam + MSE, one training
-- step on a fixed batch of 32; and decoder inference at batch 64. The PyTorch
-- peer rows are added with issue 7; until then these rows have no peer.
benches.autoencoder = function()
  dd.manual_seed(1)
  local ae = dofile(home .. "/models/autoencoder.lua"){}
  local opt = dd.optim.Adam{ ae:parameters(), lr = 1e-3 }
  local mse = dd.nn.MSELoss()
  local x = dd.rand(32, 1, 120, 200)
  local reps = opts.quick and 2 or 4
  local t = best_of(reps, function()
    opt:zero_grad()
    local y = ae:forward(x)
    mse:forward(y, x)
    ae:backward(x, mse:backward(y, x))
    opt:step()
  end)
  -- forward 0.75 + 1.2 GFLOP per image (encoder + decoder), a step about 3x that
  local gflops = 32 * 3 * 1.95 / t
  add { name = "autoencoder training, batch 32 (Adam, MSE)", unit = "images/s", value = 32 / t, gflops = gflops }
  ae:eval()
  local z = dd.rand(64, 128)
  local td = best_of(reps, function() return ae.decoder:forward(z) end)
  add { name = "decoder inference, batch 64", unit = "frames/s", value = 64 / td, gflops = 64 * 1.2 / td }
end

local order = { "matmul", "ingest", "autoencoder" }
for _, name in ipairs(order) do
  if not opts.only or opts.only == name then benches[name]() end
end

-- Table and JSON.
local function fmt(v, w) return v and string.format("%" .. w .. ".2f", v) or string.rep(" ", w - 1) .. "-" end
print(string.format("%-52s %-10s %10s %10s %8s %9s", "benchmark", "unit", "value", "peer", "ratio", "rss MiB"))
for _, r in ipairs(rows) do
  print(string.format("%-52s %-10s %s %s %s %s", r.name, r.unit, fmt(r.value, 10), fmt(r.peer, 10),
    fmt(r.ratio, 8), fmt(r.peak_rss_mb, 9)))
end
local f = assert(io.open(home .. "/bench/results.json.tmp", "w"))
f:write(dd.json.encode(rows, { indent = true }), "\n")
f:close()
assert(os.rename(home .. "/bench/results.json.tmp", home .. "/bench/results.json"))
print("wrote bench/results.json")

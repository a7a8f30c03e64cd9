-- tests/crash/disk.lua: the Lua side of tests/crash_disk_full.sh. Each phase runs in
-- its own process; "full" runs with the disk full (a small tmpfs filled up, or a
-- file-size limit). Prints "PASS what" or "FAIL what: why" per check.
--   disk.lua prepare DIR    files written with room to spare, and 1 epoch of dd.fit
--   disk.lua full DIR       every writer fails with the path and the reason, and
--                           leaves the previous file as it was; so does dd.fit
--   disk.lua after DIR REF  with room again, resume=true finishes the run; REF is an
--                           uninterrupted run's folder (made here), the histories must match
local mode, dir = arg[1], arg[2]

local function check(what, ok, why)
  print((ok and "PASS %s" or "FAIL %s: %s"):format(what, tostring(why)))
  io.stdout:flush()
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The small model and data of the training checks; fit(dir, epochs) -> history or error.
local function fit(ckdir, epochs)
  dd.manual_seed(21)
  local x = dd.randn(64, 3)
  local y = (x:narrow(2, 1, 1) * x:narrow(2, 2, 1)):contiguous()
  local m = dd.nn.Sequential{ dd.nn.Linear{3, 32}, dd.nn.Tanh(), dd.nn.Dropout{0.2}, dd.nn.Linear{32, 1} }
  local opt = dd.optim.Adam{ m:parameters(), lr = 0.01 }
  return pcall(dd.fit, { model = m, loss = dd.nn.MSELoss(), optimizer = opt, x = x, y = y, batch_size = 16,
    epochs = epochs, validation_split = 0.25, checkpoint_dir = ckdir, resume = true, progress = "none" })
end

local function history_text(h)
  local lines = {}
  for _, k in ipairs({ "epoch", "loss", "val_loss", "lr" }) do
    local cells = {}
    for i, v in ipairs(h[k]) do cells[i] = ("%.17g"):format(v) end
    lines[#lines + 1] = k .. " " .. table.concat(cells, " ")
  end
  return table.concat(lines, "\n")
end

local function checkpoint_epoch(path)
  local ok, header = pcall(dd.safetensors_header, path)
  if not ok then return nil, header end
  local meta = dd.json.decode(header.__metadata__.meta)
  return meta.fit.epoch
end

-- What each writer puts in its file first (small) and then tries (big).
local small_t, big_t = dd.ones(2, 2), dd.randn(512, 512)
local small_m = dd.nn.Sequential{ dd.nn.Linear{2, 2} }
local big_m = dd.nn.Sequential{ dd.nn.Linear{512, 512} }
local function frames(n, h, w)
  local fw = dd.data.frame_writer{ channels = 1, height = h, width = w }
  for _ = 1, n do fw:add(dd.rand(1, h, w)) end
  return fw
end
local function video(path, n, size)
  local w = dd.video.writer(path, { fps = 5, crf = 0, preset = "ultrafast" })
  for _ = 1, n do w:write(dd.rand(3, size, size)) end
  w:close()
end
-- n rows, written at once (as a resumed run rewrites the rows before its checkpoint)
local function csv_rows(path, n)
  local log = dd.callbacks.CSVLogger{ path }
  local rows = {}
  for e = 1, n do rows[e] = { epoch = e, loss = 1 / e, val_loss = 2 / e, lr = 0.001, time = 0.5 } end
  local ctx = { log_keys = { "loss", "val_loss", "lr", "time" }, history = { rows = rows } }
  log:on_train_begin(ctx)
  log:on_epoch_end(ctx, n + 1, { epoch = n + 1, loss = 0, val_loss = 0, lr = 0.001, time = 0.5 })
end

local WRITERS = {
  { "dd.save", "t.safetensors",
    function(p) dd.save(p, { t = small_t }) end, function(p) dd.save(p, { t = big_t }) end,
    function(p) return dd.load(p).t:totable()[2][2] == 1 end },
  { "dd.nn.save", "m.safetensors",
    function(p) dd.nn.save(p, small_m) end, function(p) dd.nn.save(p, big_m) end,
    function(p) return dd.load(p)["model.1.weight"]:size(1) == 2 end },
  { "dd.image.save", "i.png",
    function(p) dd.image.save(p, dd.ones(3, 4, 4)) end, function(p) dd.image.save(p, dd.rand(3, 512, 512)) end,
    function(p) return dd.image.load(p):shape()[2] == 4 end },
  { "FrameWriter:save", "f.safetensors",
    function(p) frames(1, 4, 4):save(p) end, function(p) frames(8, 128, 128):save(p) end,
    function(p) return #dd.data.frames(p) == 1 end },
  { "dd.video.writer", "v.mp4",
    function(p) video(p, 2, 16) end, function(p) video(p, 8, 256) end,
    function(p) local v = dd.video.open(p) local ok = v.width == 16 v:close() return ok end },
  { "CSVLogger", "log.csv",
    function(p) csv_rows(p, 2) end, function(p) csv_rows(p, 2000) end,
    function(p) local s = slurp(p) return s and select(2, s:gsub("\n", "")) == 4 end },
}

if mode == "prepare" then
  for _, w in ipairs(WRITERS) do
    local path = dir .. "/" .. w[2]
    local ok, err = pcall(w[3], path)
    if ok then ok, err = pcall(w[5], path) end
    check(w[1] .. " writes " .. w[2] .. " with room to spare", ok and err, err)
  end
  local ok, err = fit(dir .. "/ck", 1)
  check("dd.fit writes its epoch-1 checkpoint", ok and checkpoint_epoch(dir .. "/ck/last.safetensors") == 1, err)
elseif mode == "full" then
  for _, w in ipairs(WRITERS) do
    local path = dir .. "/" .. w[2]
    local ok, err = pcall(w[4], path)
    err = tostring(err)
    local reason = err:match("No space left on device") or err:match("File too large")
    check(("%s on a full disk raises an error naming %s and the reason"):format(w[1], w[2]),
      not ok and err:find(w[2], 1, true) and reason, ok and "it returned" or err)
    local intact, why = pcall(w[5], path)
    check(w[1] .. " on a full disk leaves the previous " .. w[2] .. " as it was", intact and why, why)
  end
  local ok, err = fit(dir .. "/ck", 3)
  err = tostring(err)
  print("dd.fit said: " .. err)
  check("dd.fit on a full disk raises an error naming last.safetensors and the reason",
    not ok and err:find("ck/last.safetensors", 1, true) and (err:match("No space left on device") or err:match("File too large")),
    ok and "it returned" or err)
  local epoch, why = checkpoint_epoch(dir .. "/ck/last.safetensors")
  check("dd.fit on a full disk leaves the epoch-1 checkpoint as it was", epoch == 1, epoch or why)
elseif mode == "after" then
  local ref = arg[3]
  local left = io.popen("find " .. dir .. " -name '*.tmp*'"):read("a")
  check("no temporary file is left behind", left == "", left)
  local ok, h = fit(dir .. "/ck", 3)
  local ok_ref, h_ref = fit(ref .. "/ck", 3)
  check("with room again, resume=true finishes the run", ok and ok_ref, ok and h_ref or h)
  if ok and ok_ref then
    check("the resumed run's history equals an uninterrupted run's", history_text(h) == history_text(h_ref),
      history_text(h) .. "\n  vs\n" .. history_text(h_ref))
  end
else
  error("usage: disk.lua prepare|full|after DIR [REF]")
end

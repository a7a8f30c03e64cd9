-- deepdance.runs: finished work as Lua tables, for the REPL.
--
--   local s = dd.runs.load("runs/lr_sweep")      -- a sweep (deepdance sweep --out runs/lr_sweep)
--   s.best.name, s.best.value, s.best.options    -- the best trial
--   s.trials[3].history.val_loss                 -- what trial 3 reported, per epoch
--   local model = s.best:model()                 -- its best checkpoint, rebuilt, in eval mode
--   local r = dd.runs.load("runs/demo/ae")       -- one training run: history, settings, model()
--   dd.runs.compare{"runs/demo/seq", "runs/demo/seq_mdn"}   -- side by side
--
-- A history is column-oriented like dd.fit's: history.epoch, history.loss,
-- ... (lists), plus history.rows (one table per epoch or report).
local dd = ...

local runs = {}

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function read_json(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local ok, v = pcall(dd.json.decode, text)
  return ok and type(v) == "table" and v or nil
end

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Column-oriented history from rows.
local function history_of(rows)
  local h, keys, seen = { rows = rows }, {}, {}
  for _, row in ipairs(rows) do
    for k in pairs(row) do
      if not seen[k] then
        seen[k] = true
        keys[#keys + 1] = k
      end
    end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    h[k] = {}
    for i, row in ipairs(rows) do h[k][i] = row[k] end
  end
  h.columns = keys
  return h
end

local function read_history(dir)
  local _, rows = dd.sweep.store.read_csv(dir .. "/history.csv")
  if rows then return history_of(rows) end
  local j = read_json(dir .. "/history.json")
  if j and type(j.rows) == "table" then return history_of(j.rows) end
  if j and type(j.epoch) == "table" then
    local rows = {}
    for i in ipairs(j.epoch) do
      local row = {}
      for k, col in pairs(j) do
        if type(col) == "table" and col[i] ~= nil and type(col[i]) ~= "table" then row[k] = col[i] end
      end
      rows[i] = row
    end
    return history_of(rows)
  end
  return history_of({})
end

-- The directories under dir (itself included, two levels down) that hold a best.safetensors.
local function checkpoint_dirs(dir)
  local found = {}
  if exists(dir .. "/best.safetensors") then found[1] = dir end
  local p = io.popen("find " .. quote(dir) .. " -mindepth 2 -maxdepth 3 -name best.safetensors 2>/dev/null | sort")
  if p then
    for line in p:lines() do found[#found + 1] = line:match("^(.*)/best%.safetensors$") end
    p:close()
  end
  return found
end

--- dd.runs.model(dir) -> the model of the run directory's best checkpoint,
-- rebuilt from the settings saved next to it (autoencoder.json or
-- sequence.json, or the checkpoint's own model options), in eval mode.
function runs.model(dir)
  local fn = "dd.runs.model"
  if type(dir) ~= "string" then error(("%s: expected a run directory, got %s"):format(fn, type(dir)), 2) end
  if exists(dir .. "/autoencoder.json") then return dd.dance.load_autoencoder(dir) end
  if exists(dir .. "/sequence.json") then return dd.dance.load_sequence(dir) end
  local file = dir .. "/best.safetensors"
  if not exists(file) then error(("%s: no best.safetensors in %s"):format(fn, dir), 2) end
  local header = dd.safetensors_header(file)
  local meta_text = header.__metadata__ and header.__metadata__.meta
  local ok, meta = pcall(dd.json.decode, meta_text or "")
  local options = ok and type(meta) == "table" and meta.model_options
  if type(options) == "table" and options.variant then return dd.dance.load_sequence(file) end
  if type(options) == "table" and options.latent then return dd.dance.load_autoencoder(file) end
  error(("%s: %s has no recipe to rebuild its model (no autoencoder.json or sequence.json next to it, no " ..
    "model_options in its metadata): build the model yourself and dd.nn.load(%q, model)"):format(fn, file, file), 2)
end

-- Methods shared by runs and trials.
local Run = {}
Run.__index = Run

--- run:model() -> the best checkpoint of this run (or of the one run inside a trial's directory)
function Run:model()
  local dirs = checkpoint_dirs(self.dir)
  if #dirs == 0 then
    error(("dd.runs: %s has no best.safetensors (is its script saving checkpoints into {trial_dir}?)"):format(self.dir), 2)
  end
  return runs.model(dirs[1])
end

--- run:best(key [, mode]) -> best value of history[key] and its row ('min' unless key looks like an accuracy)
function Run:best(key, mode)
  local col = self.history[key]
  if not col then return nil end
  mode = mode or ((key:find("acc", 1, true) or key:find("iou", 1, true)) and "max" or "min")
  local best, at
  for i, v in ipairs(col) do
    if type(v) == "number" and v == v and (best == nil or (mode == "max" and v > best) or (mode == "min" and v < best)) then
      best, at = v, i
    end
  end
  return best, at and self.history.rows[at]
end

local function load_trial(dir, info)
  local store = dd.sweep.store
  local trial = info or read_json(dir .. "/trial.json") or {}
  local result = read_json(dir .. "/result.json")
  local _, rows = store.read_csv(dir .. "/metrics.csv")
  local t = setmetatable({
    kind = "trial", dir = dir, id = trial.id, name = trial.name or dir:match("([^/]+)$"), options = trial.options or {},
    command = trial.command, result = result, status = result and result.status or "not run", value = result and result.value,
    error = result and result.error, seconds = result and result.seconds, history = history_of(rows or {}),
  }, Run)
  return t
end

local function load_sweep(dir, info)
  local store = dd.sweep.store
  local s = {
    kind = "sweep", dir = dir, info = info, metric = info.metric, goal = info.goal, trials = {}, budget = info.budget,
    option_keys = info.option_keys or {},
  }
  local results = {}
  for id = 1, info.trials or 0 do
    local tdir = ("%s/trial-%04d"):format(dir, id)
    local t = load_trial(tdir)
    t.id, t.name = id, ("trial-%04d"):format(id)
    s.trials[id] = t
    if t.result then
      results[#results + 1] = { id = id, name = t.name, status = t.status, value = t.value, resource = t.result.resource,
        trial = t }
    end
  end
  s.ranked = {}
  for i, r in ipairs(store.rank(results, s.goal or "min")) do
    r.trial.rank = i
    s.ranked[i] = r.trial
  end
  s.best = s.ranked[1]
  local _, result_rows = store.read_csv(dir .. "/results.csv")
  s.results = result_rows or {}
  return setmetatable(s, { __index = { compare = function(self, opts)
    local o = { self }
    for k, v in pairs(opts or {}) do o[k] = v end
    return runs.compare(o)
  end } })
end

--- dd.runs.load(dir) -> a sweep (OUT of deepdance sweep: .trials, .ranked,
-- .best, .metric, .results), a trial (TRIAL/trial.json: .options, .history,
-- .status, .value) or a training run (.history, .info, :model()).
function runs.load(dir)
  local fn = "dd.runs.load"
  if type(dir) ~= "string" or dir == "" then error(("%s: expected a directory, got %s"):format(fn, type(dir)), 2) end
  dir = dir:gsub("/+$", "")
  local info = read_json(dir .. "/sweep.json")
  if info and info.format == "deepdance-sweep" then return load_sweep(dir, info) end
  if exists(dir .. "/trial.json") then return load_trial(dir) end
  local settings = read_json(dir .. "/autoencoder.json") or read_json(dir .. "/sequence.json")
  local history = read_history(dir)
  if not settings and #history.rows == 0 and not exists(dir .. "/best.safetensors") then
    error(("%s: %s is neither a sweep (sweep.json), a trial (trial.json) nor a training run (history.csv, " ..
      "best.safetensors)"):format(fn, dir), 2)
  end
  local options = {}
  for k, v in pairs(settings or {}) do
    if type(v) ~= "table" then options[k] = v end
  end
  return setmetatable({ kind = "run", dir = dir, name = dir, info = settings, options = options, history = history,
    status = #history.rows > 0 and "ok" or "no history" }, Run)
end

local function show(v)
  if v == nil then return "-" end
  if math.type(v) == "float" then return v ~= v and "nan" or ("%.4g"):format(v) end
  return tostring(v)
end

--- dd.runs.compare{run_or_dir, ..., keys = {"val_loss", ...}, output = io.stdout}
-- -> rows: prints one line per run (a sweep stands for its trials, best
-- first): the best of each key over its history, the epochs it ran, and the
-- options that differ between the runs.
function runs.compare(opts)
  local fn = "dd.runs.compare"
  if type(opts) ~= "table" then error(("%s: expected a table {run, run, ..., keys =}, got %s"):format(fn, type(opts)), 2) end
  for k in pairs(opts) do
    if math.type(k) ~= "integer" and k ~= "keys" and k ~= "output" then
      error(("%s: unknown option '%s' (known: keys, output; runs by position)"):format(fn, tostring(k)), 2)
    end
  end
  local list, metric = {}, nil
  for i, item in ipairs(opts) do
    local r = type(item) == "string" and runs.load(item) or item
    if type(r) ~= "table" or not r.kind then error(("%s: run %d is not a directory or a loaded run"):format(fn, i), 2) end
    if r.kind == "sweep" then
      metric = metric or r.metric
      for _, t in ipairs(r.ranked) do list[#list + 1] = t end
      for _, t in ipairs(r.trials) do
        if not t.result then list[#list + 1] = t end
      end
    else
      list[#list + 1] = r
    end
  end
  if #list == 0 then error(fn .. ": nothing to compare", 2) end
  local keys = opts.keys
  if keys == nil then
    keys = {}
    local skip = { epoch = true, time = true, lr = true }
    for _, k in ipairs(list[1].history.columns or {}) do
      local everywhere = not skip[k]
      for _, r in ipairs(list) do
        if not r.history[k] then everywhere = false end
      end
      if everywhere and #keys < 6 then keys[#keys + 1] = k end
    end
    if metric then
      for i, k in ipairs(keys) do if k == metric then table.remove(keys, i) break end end
      table.insert(keys, 1, metric)
    end
  end
  -- options that every run has and whose values differ
  local option_keys, seen = {}, {}
  for _, r in ipairs(list) do
    for k in pairs(r.options or {}) do
      if not seen[k] then
        seen[k] = true
        option_keys[#option_keys + 1] = k
      end
    end
  end
  table.sort(option_keys)
  local differing = {}
  for _, k in ipairs(option_keys) do
    local first, differs, everywhere = show(list[1].options[k]), false, true
    for _, r in ipairs(list) do
      if r.options[k] == nil then everywhere = false end
      if show(r.options[k]) ~= first then differs = true end
    end
    if differs and everywhere then differing[#differing + 1] = k end
  end

  local header = { "run", "status", "epochs" }
  for _, k in ipairs(keys) do header[#header + 1] = "best " .. k end
  for _, k in ipairs(differing) do header[#header + 1] = k end
  local rows, lines = {}, { header }
  for _, r in ipairs(list) do
    local row = { run = r.name, status = r.status, epochs = #r.history.rows, options = r.options }
    local line = { r.name, r.status, tostring(#r.history.rows) }
    for _, k in ipairs(keys) do
      row[k] = r:best(k)
      line[#line + 1] = show(row[k])
    end
    for _, k in ipairs(differing) do line[#line + 1] = show(r.options[k]) end
    rows[#rows + 1] = row
    lines[#lines + 1] = line
  end
  local widths = {}
  for _, line in ipairs(lines) do
    for j, cell in ipairs(line) do widths[j] = math.max(widths[j] or 0, #cell) end
  end
  local output = opts.output or io.stdout
  for _, line in ipairs(lines) do
    for j, cell in ipairs(line) do
      line[j] = j < #line and cell .. (" "):rep(widths[j] - #cell) or cell
    end
    output:write(table.concat(line, "  "), "\n")
  end
  return rows
end

dd.runs = runs
return runs

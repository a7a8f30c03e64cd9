-- deepdance.sweep spec: loading a sweep spec file and turning a trial's
-- options into the command line of its script.
--
-- A spec is a Lua file returning
--   { script = "experiments/train_sequence.lua",     -- the trial script
--     args = { data = "...", out = "{trial_dir}" },  -- fixed options of every trial
--     space = { lr = dd.sweep.log_uniform(1e-4, 1e-2), units = {"64", "128"} },
--     trials = 8, seed = 1,                          -- random search: 8 draws (default: the grid size)
--     metric = "val_loss", goal = "min",             -- what dd.report'ed value ranks trials
--     summary = "best",                              -- a trial's value: its best or its last report
--     workers = 2, threads = nil,                    -- trials at a time; threads per trial
--     budget = { resource = "epoch", min = 1, max = 27, eta = 3, option = "epochs" } }  -- ASHA
-- Option names become flags: lr -> --lr, look_back -> --look-back; true is a
-- bare flag, false leaves the flag out. "{trial_dir}", "{trial}" and
-- "{sweep_dir}" in a string value are replaced per trial.
local dd, sweep = ...

local KNOWN = { "script", "args", "space", "trials", "seed", "metric", "goal", "summary", "workers", "threads",
  "budget" }
local BUDGET_KNOWN = { "resource", "min", "max", "eta", "option", "min_trials" }

local function describe(v)
  if type(v) == "string" then return ("'%s'"):format(v) end
  if type(v) == "number" then return tostring(v) end
  return "a " .. type(v)
end

local function strict(fn, what, t, known)
  local is_known = {}
  for _, k in ipairs(known) do is_known[k] = true end
  for k in pairs(t) do
    if not is_known[k] then
      error(("%s: unknown %s '%s' (known: %s)"):format(fn, what, tostring(k), table.concat(known, ", ")), 0)
    end
  end
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

--- dd.sweep.rungs(budget) -> the resource values at which ASHA compares
-- trials: min, min*eta, min*eta^2, ... below max.
function sweep.rungs(budget)
  local rungs, r = {}, budget.min
  while r < budget.max do
    rungs[#rungs + 1] = r
    r = r * budget.eta
  end
  return rungs
end

local function check_budget(fn, b)
  if b == nil then return nil end
  if type(b) ~= "table" then error(("%s: 'budget' must be a table {resource=, min=, max=, eta=}, got %s"):format(fn, describe(b)), 0) end
  strict(fn, "budget key", b, BUDGET_KNOWN)
  local out = { resource = b.resource or "epoch", min = b.min or 1, max = b.max, eta = b.eta or 3, option = b.option }
  if type(out.resource) ~= "string" or out.resource == "" then
    error(("%s: budget.resource must be the name of a reported value like 'epoch', got %s"):format(fn, describe(out.resource)), 0)
  end
  if not (type(out.min) == "number" and out.min > 0) then
    error(("%s: budget.min must be a number > 0, got %s"):format(fn, describe(out.min)), 0)
  end
  if not (type(out.max) == "number" and out.max > out.min) then
    error(("%s: budget.max must be a number > budget.min (%s), got %s"):format(fn, tostring(out.min), describe(out.max)), 0)
  end
  if not (type(out.eta) == "number" and out.eta > 1) then
    error(("%s: budget.eta must be a number > 1 (3 keeps the best third at each rung), got %s"):format(fn, describe(out.eta)), 0)
  end
  if out.option ~= nil and not (type(out.option) == "string" and out.option ~= "") then
    error(("%s: budget.option must be the name of the script's option that takes budget.max, got %s"):format(fn, describe(out.option)), 0)
  end
  out.min_trials = b.min_trials or math.ceil(out.eta)
  if math.type(out.min_trials) ~= "integer" or out.min_trials < 1 then
    error(("%s: budget.min_trials must be an integer >= 1, got %s"):format(fn, describe(out.min_trials)), 0)
  end
  return out
end

--- dd.sweep.check_spec(t [, where]) -> a checked copy with defaults filled in.
function sweep.check_spec(t, where)
  local fn = where or "dd.sweep"
  if type(t) ~= "table" then error(("%s: a sweep spec must be a table, got %s"):format(fn, describe(t)), 0) end
  strict(fn, "spec key", t, KNOWN)
  local s = {}
  if type(t.script) ~= "string" or t.script == "" then
    error(("%s: 'script' must be the path of the trial script, got %s"):format(fn, describe(t.script)), 0)
  end
  s.script = t.script
  s.args = t.args or {}
  if type(s.args) ~= "table" then error(("%s: 'args' must be a table of option = value, got %s"):format(fn, describe(s.args)), 0) end
  s.space = t.space
  sweep.check_space(s.space, fn)
  s.seed = t.seed or 1
  if math.type(s.seed) ~= "integer" then error(("%s: 'seed' must be an integer, got %s"):format(fn, describe(s.seed)), 0) end
  s.trials = t.trials
  if s.trials ~= nil and (math.type(s.trials) ~= "integer" or s.trials < 1) then
    error(("%s: 'trials' must be an integer >= 1, got %s"):format(fn, describe(s.trials)), 0)
  end
  if type(t.metric) ~= "string" or t.metric == "" then
    error(("%s: 'metric' must name the reported value that ranks trials (e.g. 'val_loss'), got %s"):format(fn, describe(t.metric)), 0)
  end
  s.metric = t.metric
  s.goal = t.goal or "min"
  if s.goal ~= "min" and s.goal ~= "max" then error(("%s: 'goal' must be 'min' or 'max', got %s"):format(fn, describe(s.goal)), 0) end
  s.summary = t.summary or "best"
  if s.summary ~= "best" and s.summary ~= "last" then
    error(("%s: 'summary' must be 'best' or 'last', got %s"):format(fn, describe(s.summary)), 0)
  end
  for _, k in ipairs({ "workers", "threads" }) do
    if t[k] ~= nil and (math.type(t[k]) ~= "integer" or t[k] < 1) then
      error(("%s: '%s' must be an integer >= 1, got %s"):format(fn, k, describe(t[k])), 0)
    end
    s[k] = t[k]
  end
  s.budget = check_budget(fn, t.budget)
  -- the trials' command lines must be buildable, and must not set an option twice
  for k, v in pairs(s.args) do
    if math.type(k) ~= "integer" and s.space[k] ~= nil then
      error(("%s: option '%s' is both in 'args' and in 'space'"):format(fn, k), 0)
    end
    if s.budget and s.budget.option == k then
      error(("%s: option '%s' is in 'args' but budget.option sets it to budget.max"):format(fn, k), 0)
    end
    if type(v) == "table" then error(("%s: args.%s must be a string, a number or a boolean, got a table"):format(fn, tostring(k)), 0) end
  end
  if s.budget and s.budget.option and s.space[s.budget.option] ~= nil then
    error(("%s: option '%s' is in 'space' but budget.option sets it to budget.max"):format(fn, s.budget.option), 0)
  end
  return s
end

--- dd.sweep.load_spec(path) -> checked spec, with .path and .script resolved:
-- a relative script is looked up in the current directory, then next to the
-- spec, then in the runtime's home.
function sweep.load_spec(path)
  local fn = "dd.sweep.load_spec"
  if type(path) ~= "string" then error(("%s: expected the path of a spec file, got %s"):format(fn, describe(path)), 2) end
  if not exists(path) then error(("sweep: no spec file %s"):format(path), 0) end
  local env = setmetatable({}, { __index = _G })
  local chunk, err = loadfile(path, "t", env)
  if not chunk then error(("sweep: cannot load the spec %s: %s"):format(path, err), 0) end
  local ok, t = pcall(chunk)
  if not ok then error(("sweep: the spec %s raised an error: %s"):format(path, tostring(t)), 0) end
  local s = sweep.check_spec(t, "sweep spec " .. path)
  s.path = path
  if s.script:sub(1, 1) ~= "/" and not exists(s.script) then
    for _, base in ipairs({ dirname(path), dd.home }) do
      if exists(base .. "/" .. s.script) then
        s.script = base .. "/" .. s.script
        break
      end
    end
  end
  if not exists(s.script) then error(("sweep spec %s: no trial script %s"):format(path, s.script), 0) end
  return s
end

---------------------------------------------------------------------------
-- Command lines
---------------------------------------------------------------------------

--- dd.sweep.format_value(v) -> text that reads back as exactly v: integers as
-- integers, floats as the shortest of %.15g..%.17g that round-trips.
function sweep.format_value(v)
  if math.type(v) == "integer" then return ("%d"):format(v) end
  if math.type(v) == "float" then
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return ("%.1f"):format(v) end
    for prec = 15, 17 do
      local s = ("%." .. prec .. "g"):format(v)
      if tonumber(s) == v then return s end
    end
  end
  return tostring(v)
end

local function substitute(s, vars)
  return (s:gsub("{([%w_]+)}", function(name) return vars[name] end))
end

--- dd.sweep.command_line(spec, trial, vars) -> the script's arguments (a list
-- of strings): positional args first, then --name value in sorted order
-- (--name=value when the value starts with '-').
-- vars: {trial_dir=, trial=, sweep_dir=} for the placeholders.
function sweep.command_line(spec, trial, vars)
  local named, list = {}, {}
  for k, v in pairs(spec.args) do
    if math.type(k) ~= "integer" then named[k] = v end
  end
  for k, v in pairs(trial.options) do named[k] = v end
  if spec.budget and spec.budget.option then named[spec.budget.option] = spec.budget.max end
  for _, v in ipairs(spec.args) do
    list[#list + 1] = type(v) == "string" and substitute(v, vars) or sweep.format_value(v)
  end
  local keys = {}
  for k in pairs(named) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v, flag = named[k], "--" .. k:gsub("_", "-")
    if v == true then
      list[#list + 1] = flag
    elseif v ~= false then
      local text = type(v) == "string" and substitute(v, vars) or sweep.format_value(v)
      if text:sub(1, 1) == "-" then -- --y=-3: a bare -3 would read as an option
        list[#list + 1] = flag .. "=" .. text
      else -- two words, which every script's parser takes
        list[#list + 1] = flag
        list[#list + 1] = text
      end
    end
  end
  return list
end

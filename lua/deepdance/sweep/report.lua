-- deepdance.sweep report: dd.report, how a trial tells its sweep how it is
-- doing, and the successive-halving (ASHA) decision it gets back.
--
--   for epoch = 1, o.epochs do
--     local loss = train_one_epoch()
--     if not dd.report{epoch = epoch, val_loss = loss} then break end  -- stopped early
--   end
--
-- Outside a sweep (no DD_SWEEP_TRIAL_DIR in the environment) dd.report does
-- nothing and returns true, so a trial script runs on its own unchanged.
-- Inside one, every report is a row of TRIAL/metrics.csv. A report that
-- carries a value of the budget's resource (say epoch 3) at or past a rung
-- compares the trial with every other trial of the sweep that reached that
-- rung (their metrics.csv, possibly written on other nodes): a trial not in
-- the best 1/eta stops. That is the stopping form of asynchronous successive
-- halving (ASHA): no trial waits for another, so workers never idle.
--
-- Inside a trial, dd.fit reports each epoch's logs by itself, and a stopped
-- trial ends its dd.fit after that epoch: any dd.fit script is sweepable
-- without changes.
local dd, sweep = ...
local store = sweep.store

--- dd.sweep.asha_promotes(value, others, {eta=3, goal='min', min_trials=3})
-- -> promoted, rank, kept: whether `value` is among the best max(1, n // eta)
-- of the n = #others + 1 values at a rung. With fewer than min_trials values
-- every trial goes on (too few to judge). Ties go to the trial asking.
function sweep.asha_promotes(value, others, opts)
  local eta, goal, min_trials = opts.eta or 3, opts.goal or "min", opts.min_trials or 1
  local n = #others + 1
  local rank = 1
  for _, v in ipairs(others) do
    if store.better(v, value, goal) then rank = rank + 1 end
  end
  local kept = math.max(1, math.floor(n / eta))
  if n < min_trials then return true, rank, n end
  return rank <= kept, rank, kept
end

-- The trial this process runs, from DD_SWEEP_TRIAL_DIR; nil outside a sweep.
local current
local function trial_state()
  if current ~= nil then return current or nil end
  local dir = os.getenv("DD_SWEEP_TRIAL_DIR")
  if not dir or dir == "" then
    current = false
    return nil
  end
  local info = store.read_json(dir .. "/trial.json")
  if not info then error(("dd.report: DD_SWEEP_TRIAL_DIR is %s but %s/trial.json is missing or damaged"):format(dir, dir), 0) end
  local rows = store.read_metrics(dir)
  current = {
    dir = dir, sweep_dir = dir:match("^(.*)/[^/]+$") or ".", info = info, rows = rows,
    resource = info.budget and info.budget.resource or "epoch", pruned = store.read_json(dir .. "/pruned.json"),
  }
  return current
end

-- The metric at the first row at or past `rung` of each other trial that got there.
local function values_at_rung(state, rung)
  local values, resource, metric = {}, state.resource, state.info.metric
  for id = 1, state.info.trials do
    if id ~= state.info.id then
      local rows = store.read_metrics(("%s/trial-%04d"):format(state.sweep_dir, id))
      for _, row in ipairs(rows) do
        local r = row[resource]
        if type(r) == "number" and r >= rung then
          if type(row[metric]) == "number" then values[#values + 1] = row[metric] end
          break
        end
      end
    end
  end
  return values
end

local function check_row(row)
  if type(row) ~= "table" then error(("dd.report: expected a table of name = value, got %s"):format(type(row)), 3) end
  local copy = {}
  for k, v in pairs(row) do
    if type(k) ~= "string" or not k:match("^[%a_][%w_%.%-]*$") then
      error(("dd.report: names must be identifiers like 'val_loss', got %s"):format(tostring(k)), 3)
    end
    local t = type(v)
    if t ~= "number" and t ~= "string" and t ~= "boolean" then
      error(("dd.report: '%s' must be a number, a string or a boolean, got a %s"):format(k, t), 3)
    end
    copy[k] = v
  end
  return copy
end

--- dd.report{name = value, ...} -> true to go on, false when the sweep's
-- successive halving stopped this trial (then stop: a further report is an error).
function sweep.report(row)
  local values = check_row(row)
  local state = trial_state()
  if not state then return true end
  if state.pruned then
    error(("dd.report: this trial was stopped at %s %s by successive halving; stop when dd.report returns false")
      :format(state.resource, tostring(state.pruned.rung)), 2)
  end
  local resource, now = state.resource, values[state.resource]
  local before = 0
  if type(now) == "number" then
    -- a restarted trial reports its epochs again: they replace the old rows
    local kept = {}
    for _, r in ipairs(state.rows) do
      if type(r[resource]) ~= "number" or r[resource] < now then kept[#kept + 1] = r end
    end
    state.rows = kept
    for _, r in ipairs(kept) do
      if type(r[resource]) == "number" and r[resource] > before then before = r[resource] end
    end
  end
  state.rows[#state.rows + 1] = values
  store.write_metrics(state.dir, state.rows, resource)

  local budget, value = state.info.budget, values[state.info.metric]
  if not (budget and type(now) == "number" and type(value) == "number") then return true end
  for _, rung in ipairs(sweep.rungs(budget)) do
    if before < rung and rung <= now then
      local others = values_at_rung(state, rung)
      local promoted, rank, kept = sweep.asha_promotes(value, others,
        { eta = budget.eta, goal = state.info.goal, min_trials = budget.min_trials })
      if not promoted then
        state.pruned = { rung = rung, [resource] = now, value = value, rank = rank, kept = kept, competitors = #others + 1 }
        store.write_json(state.dir .. "/pruned.json", state.pruned)
        io.stdout:write(("dd.report: stopped by successive halving at %s %s: %s %s ranks %d of %d, the best %d go on\n")
          :format(resource, sweep.format_value(rung), state.info.metric, sweep.format_value(value), rank,
            #others + 1, kept))
        io.stdout:flush()
        return false
      end
    end
  end
  return true
end

--- dd.sweep.in_trial() -> whether this process is a sweep's trial
function sweep.in_trial() return trial_state() ~= nil end

-- Inside a trial, dd.fit reports every epoch's numeric logs and stops after
-- the epoch in which successive halving stopped the trial.
local fit = dd.fit
if type(fit) == "function" and os.getenv("DD_SWEEP_TRIAL_DIR") then
  local reporter = { kind = "SweepReport" }
  function reporter.on_epoch_end(_, ctx, epoch, logs)
    local row = { epoch = epoch }
    for k, v in pairs(logs) do
      if type(v) == "number" then row[k] = v end
    end
    if not sweep.report(row) then ctx.stop_training = true end
  end
  dd.fit = function(opts)
    if type(opts) == "table" and (opts.callbacks == nil or type(opts.callbacks) == "table") then
      local copy = {}
      for k, v in pairs(opts) do copy[k] = v end
      copy.callbacks = {}
      for i, cb in ipairs(opts.callbacks or {}) do copy.callbacks[i] = cb end
      copy.callbacks[#copy.callbacks + 1] = reporter
      opts = copy
    end
    return fit(opts)
  end
end

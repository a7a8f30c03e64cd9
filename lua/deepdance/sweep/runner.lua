-- deepdance.sweep runner: runs a sweep's trials on this machine, each as its
-- own `deepdance` process, `workers` at a time, and collects the results.
--
--   local summary = dd.sweep.run{spec = dd.sweep.load_spec("s.lua"), out = "runs/s", workers = 2}
--
-- Each trial gets threads = cores // workers (DEEPDANCE_NUM_THREADS and
-- OPENBLAS_NUM_THREADS in its environment), so workers x threads never
-- exceeds the cores. A trial with a result.json is done and is skipped; one
-- without (never started, or killed with the runner) starts again in the
-- same directory, where a script that resumes (dd.fit with resume = true)
-- continues from its last epoch. Failed trials are kept as failed until
-- retry_failed. When the runner dies, its trials get SIGTERM (dd.process).
local dd, sweep = ...
local store = sweep.store

local function say(out, fmt, ...)
  out:write(fmt:format(...), "\n")
  out:flush()
end

-- The tail of a trial's log since its last start, for failed trials.
local function log_tail(path, max_lines)
  local text = store.read(path) or ""
  local start = 1
  for pos in text:gmatch("()== deepdance sweep: start") do start = pos end
  text = text:sub(start)
  local lines = {}
  for line in text:gmatch("[^\n]*") do lines[#lines + 1] = line end
  while #lines > 0 and lines[#lines] == "" do lines[#lines] = nil end
  local first = math.max(2, #lines - max_lines + 1)
  return table.concat(lines, "\n", first, #lines)
end

--- dd.sweep.info(spec, trials) -> what OUT/sweep.json holds
function sweep.info(spec, trials, option_keys)
  return {
    format = "deepdance-sweep", version = 1, spec = spec.path, script = spec.script, metric = spec.metric,
    goal = spec.goal, summary = spec.summary, seed = spec.seed, trials = #trials, budget = spec.budget,
    option_keys = option_keys,
  }
end

-- Threads per trial: the spec's or the caller's, else cores // workers.
-- Under Slurm the task's CPUs (SLURM_CPUS_PER_TASK) are the cores.
function sweep.plan_threads(workers, threads, cores)
  cores = cores or math.tointeger(tonumber(os.getenv("SLURM_CPUS_PER_TASK") or "")) or dd.process.cores()
  if workers > cores then workers = cores end
  threads = threads or math.max(1, cores // workers)
  if workers * threads > cores then threads = math.max(1, cores // workers) end
  return workers, threads, cores
end

-- The value a trial is ranked by: its best (or last) report of the metric.
local function summarize(rows, metric, goal, summary)
  local value, resource_row
  for _, row in ipairs(rows) do
    local v = row[metric]
    if type(v) == "number" then
      if summary == "last" or value == nil or store.better(v, value, goal) then value = v end
    end
    resource_row = row
  end
  return value, resource_row
end

-- Reads what the trial left and writes its result.json.
local function finish(out, spec, trial, code, seconds)
  local dir = store.trial_dir(out, trial)
  local rows = store.read_metrics(dir)
  local value, last = summarize(rows, spec.metric, spec.goal, spec.summary)
  local resource_key = spec.budget and spec.budget.resource or "epoch"
  local pruned = store.read_json(dir .. "/pruned.json")
  local r = {
    id = trial.id, name = trial.name, status = "ok", metric = spec.metric, value = value, exit_code = code,
    seconds = math.floor(seconds * 1000 + 0.5) / 1000, reports = #rows, last = last, resource = last and last[resource_key],
  }
  if pruned then
    r.status, r.pruned = "pruned", pruned
  elseif code ~= 0 then
    r.status, r.error = "failed", log_tail(dir .. "/log.txt", 20)
    if r.error == "" then r.error = ("exited with code %d and printed nothing"):format(code) end
  elseif value == nil then
    r.status = "failed"
    r.error = ("the trial ended without reporting '%s' (call dd.report{%s = ...}, or train with dd.fit)"):format(
      spec.metric, spec.metric)
  end
  store.write_json(dir .. "/result.json", r)
  r.options = trial.options
  return r
end

local function argv_text(argv)
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = a:find("[%s'\"]") and ("'" .. a:gsub("'", "'\\''") .. "'") or a end
  return table.concat(parts, " ")
end

-- The trial's command line with the placeholders left in, so the same trial
-- reads the same whether OUT was given as a relative or an absolute path.
local function template(spec, trial)
  return argv_text(sweep.command_line(spec, trial, { trial_dir = "{trial_dir}", trial = "{trial}", sweep_dir = "{sweep_dir}" }))
end

local function basename(path) return (path:match("([^/]+)$")) end

-- A trial directory made by another spec would mix two sweeps' results:
-- every trial of this run that has a trial.json must have the same script
-- and options.
local function check_same_trials(spec, out, trials)
  for _, t in ipairs(trials) do
    local dir = store.trial_dir(out, t)
    local old = store.read_json(dir .. "/trial.json")
    local now = template(spec, t)
    if old and (basename(tostring(old.script)) ~= basename(spec.script) or old.template ~= now) then
      error(("sweep: %s was run as\n  %s %s\nbut the spec now gives\n  %s %s\nuse another --out, or remove %s to run it anew")
        :format(dir, tostring(old.script), tostring(old.template), spec.script, now, dir), 0)
    end
  end
end

local function runner_lock(out, shard_name)
  local path = ("%s/.runner-%s.pid"):format(out, shard_name)
  local pid = math.tointeger(tonumber(store.read(path) or ""))
  if pid and pid ~= dd.process.pid() and dd.process.alive(pid) then
    local cmd = store.read(("/proc/%d/cmdline"):format(pid)) or ""
    if cmd:find("sweep", 1, true) then
      error(("sweep: another runner (pid %d) is working on %s (%s); wait for it or stop it"):format(pid, out,
        shard_name), 0)
    end
  end
  store.write(path, tostring(dd.process.pid()))
  return path
end

--- dd.sweep.plan(spec, out, {shard = {i, n}, retry_failed = false})
-- -> trials (all), mine (this shard's), todo (to run), done, failed
function sweep.plan(spec, out, opts)
  opts = opts or {}
  local trials, option_keys = sweep.expand(spec.space, { trials = spec.trials, seed = spec.seed })
  local mine = opts.shard and sweep.shard(trials, opts.shard[1], opts.shard[2]) or trials
  local todo, done, failed = {}, {}, {}
  for _, t in ipairs(mine) do
    local r = store.read_json(store.trial_dir(out, t) .. "/result.json")
    if r and (r.status == "ok" or r.status == "pruned") then
      done[#done + 1] = t
    elseif r and r.status == "failed" and not opts.retry_failed then
      failed[#failed + 1] = t
    else
      todo[#todo + 1] = t
    end
  end
  return trials, mine, todo, done, failed, option_keys
end

--- dd.sweep.collect{spec=, out=, output=io.stdout, top=20, quiet=false}
-- -> ranked results, missing trials: rewrites OUT/results.csv from every
-- trial's result.json (all shards) and prints the leaderboard.
function sweep.collect(opts)
  local spec, out, output = opts.spec, opts.out, opts.output or io.stdout
  local trials, option_keys = sweep.expand(spec.space, { trials = spec.trials, seed = spec.seed })
  local info = sweep.info(spec, trials, option_keys)
  store.mkdir(out)
  store.write_json(out .. "/sweep.json", info)
  local results, missing = store.results(out, trials)
  local ranked = store.rank(results, spec.goal)
  store.write_results(out, info, ranked)
  if not opts.quiet then
    local counts = { ok = 0, pruned = 0, failed = 0 }
    for _, r in ipairs(ranked) do counts[r.status] = (counts[r.status] or 0) + 1 end
    local parts = { ("%d ok"):format(counts.ok) }
    if counts.pruned > 0 then parts[#parts + 1] = ("%d stopped early"):format(counts.pruned) end
    if counts.failed > 0 then parts[#parts + 1] = ("%d failed"):format(counts.failed) end
    if #missing > 0 then parts[#parts + 1] = ("%d not run yet"):format(#missing) end
    say(output, "sweep %s: %d trials: %s (%s, %s)", out, #trials, table.concat(parts, ", "), spec.metric, spec.goal)
    if #ranked > 0 then say(output, "%s", store.leaderboard(info, ranked, store.differing(ranked, option_keys), opts.top)) end
    if #missing > 0 and #missing <= 10 then
      local names = {}
      for i, t in ipairs(missing) do names[i] = t.name end
      say(output, "not run yet: %s", table.concat(names, ", "))
    end
    say(output, "results: %s/results.csv", out)
  end
  return ranked, missing
end

--- dd.sweep.run{spec=, out=, workers=, threads=, shard={i, n}, retry_failed=false,
--   output=io.stdout, top=20} -> {ran=, ok=, failed=, pruned=, skipped=, ranked=, missing=}
function sweep.run(opts)
  local spec, out, output = opts.spec, opts.out, opts.output or io.stdout
  local shard_name = opts.shard and ("shard-%d-of-%d"):format(opts.shard[1], opts.shard[2]) or "all"
  local trials, mine, todo, done, failed, option_keys = sweep.plan(spec, out, opts)
  local workers, threads, cores = sweep.plan_threads(opts.workers or spec.workers or 1, opts.threads or spec.threads)
  check_same_trials(spec, out, mine)
  store.mkdir(out)
  local lock = runner_lock(out, shard_name)
  local info = sweep.info(spec, trials, option_keys)
  store.write_json(out .. "/sweep.json", info)

  local where = opts.shard and (" (shard %d/%d: %d of them)"):format(opts.shard[1], opts.shard[2], #mine) or ""
  local extra = #failed > 0 and (", %d failed earlier (--retry-failed reruns them)"):format(#failed) or ""
  local how = #todo == 0 and "nothing to run" or ("%d to run, %d at a time x %d thread%s (%d cores)"):format(#todo,
    math.min(workers, #todo), threads, threads == 1 and "" or "s", cores)
  say(output, "sweep %s: %d trials%s; %d done%s; %s", out, #trials, where, #done, extra, how)

  local exe = dd.process.executable()
  local running, order = {}, {} -- pid -> {trial, start}; pids in start order
  local summary = { ran = 0, ok = 0, failed = 0, pruned = 0, skipped = #done + #failed }

  local function start(trial)
    local dir = store.trial_dir(out, trial)
    local args = sweep.command_line(spec, trial, { trial_dir = dir, trial = tostring(trial.id), sweep_dir = out })
    store.mkdir(dir)
    for _, f in ipairs({ "result.json", "pruned.json" }) do os.remove(dir .. "/" .. f) end
    store.write_json(dir .. "/trial.json", {
      id = trial.id, name = trial.name, trials = #trials, options = trial.options, script = spec.script,
      command = argv_text(args), template = template(spec, trial), metric = spec.metric, goal = spec.goal,
      budget = spec.budget, threads = threads,
    })
    local log = io.open(dir .. "/log.txt", "ab")
    if log then
      log:write(("== deepdance sweep: start %s: %s %s\n"):format(os.date("!%Y-%m-%dT%H:%M:%SZ"), spec.script,
        argv_text(args)))
      log:close()
    end
    local argv = { exe, spec.script }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local pid = dd.process.spawn{
      argv = argv, output = dir .. "/log.txt",
      env = { DD_SWEEP_TRIAL_DIR = dir, DEEPDANCE_NUM_THREADS = tostring(threads),
              OPENBLAS_NUM_THREADS = tostring(threads), OMP_NUM_THREADS = tostring(threads) },
    }
    running[pid] = { trial = trial, start = dd.clock() }
    order[#order + 1] = pid
  end

  local function reap(pid, code)
    local job = running[pid]
    running[pid] = nil
    for i, p in ipairs(order) do
      if p == pid then table.remove(order, i) break end
    end
    local r = finish(out, spec, job.trial, code, dd.clock() - job.start)
    summary.ran = summary.ran + 1
    summary[r.status] = summary[r.status] + 1
    local value = r.value ~= nil and ("%s %s"):format(spec.metric, ("%.6g"):format(r.value)) or "no " .. spec.metric
    local note = ""
    if r.status == "pruned" then
      note = (" at %s %s"):format(spec.budget.resource, sweep.format_value(r.pruned.rung))
    elseif r.status == "failed" then
      note = ": " .. (store.short_error(r.error) or "")
    end
    say(output, "[%d/%d] %s %s%s, %s (%.1f s)", summary.ran, #todo, job.trial.name, r.status, note, value,
      r.seconds)
    sweep.collect{ spec = spec, out = out, quiet = true } -- results.csv stays current if the sweep is killed
  end

  local ok, err = pcall(function()
    local next_trial = 1
    while next_trial <= #todo or #order > 0 do
      while #order < workers and next_trial <= #todo do
        start(todo[next_trial])
        next_trial = next_trial + 1
      end
      local pid, code = dd.process.wait(order, 1.0) -- wakes each second so Ctrl-C is seen
      if pid then reap(pid, code) end
    end
  end)
  if not ok then
    -- stop what runs: those trials have no result and run again next time
    for _, pid in ipairs(order) do dd.process.kill(pid, "TERM") end
    for _ = 1, #order do
      local pid = dd.process.wait(order, 5)
      if not pid then break end
      running[pid] = nil
      for i, p in ipairs(order) do if p == pid then table.remove(order, i) break end end
    end
    for _, pid in ipairs(order) do dd.process.kill(pid, "KILL") end
    os.remove(lock)
    if tostring(err):find("interrupted!", 1, true) then
      err = ("sweep %s: interrupted; %d trials finished in this run, the ones that were running start again on the next"):format(
        out, summary.ran)
    end
    error(err, 0)
  end
  os.remove(lock)

  summary.ranked, summary.missing = sweep.collect{ spec = spec, out = out, output = output, top = opts.top,
    quiet = opts.quiet }
  if opts.shard and #summary.missing > 0 and not opts.quiet then
    say(output, "shard %d/%d is done; run with --collect once every shard has finished", opts.shard[1], opts.shard[2])
  end
  return summary
end

-- sweep_spec.lua: dd.sweep (spaces, deterministic draws, grids, shards,
-- specs, command lines, ranking, successive halving) and the runner with real
-- trial processes (experiments/sweeps/trial_quadratic.lua and small scripts
-- written here), dd.report inside dd.fit, dd.runs. Each runner test takes
-- well under a second per trial.
local helpers = dofile("tests/lua/support/helpers.lua")
local error_of, assert_contains, slurp, spit, quote = helpers.error_of, helpers.assert_contains, helpers.slurp,
  helpers.spit, helpers.quote

local TRIAL = "experiments/sweeps/trial_quadratic.lua"

local function tempdir()
  local p = assert(io.popen("mktemp -d"))
  local dir = p:read("l")
  p:close()
  return dir
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Collects what the runner prints.
local function sink()
  local s = { text = "" }
  function s:write(...)
    for _, x in ipairs({ ... }) do self.text = self.text .. tostring(x) end
    return self
  end
  function s:flush() end
  return s
end

local function spec_of(t)
  local s = dd.sweep.check_spec(t)
  s.path = "(test)"
  return s
end

-- results.csv without the seconds column (timings differ between runs)
local function results_without_seconds(out)
  local header, rows = dd.sweep.store.read_csv(out .. "/results.csv")
  local keep = {}
  for _, k in ipairs(header) do
    if k ~= "seconds" then keep[#keep + 1] = k end
  end
  return dd.sweep.store.csv_text(keep, rows)
end

describe("dd.sweep spaces", function()
  it("draws each distribution inside its range", function()
    local u, l, i, c = dd.sweep.uniform(-2, 3), dd.sweep.log_uniform(1e-4, 1e-1), dd.sweep.int_range(2, 5),
      dd.sweep.choice{ "a", "b", "c" }
    local seen_int, seen_choice, decades = {}, {}, {}
    for k = 1, 400 do
      local x = dd.sweep.unit(1, k, "x")
      assert.is_true(x >= 0 and x < 1)
      local a = u:draw(x)
      assert.is_true(a >= -2 and a < 3)
      local b = l:draw(x)
      assert.is_true(b >= 1e-4 and b <= 1e-1)
      decades[math.floor(math.log(b, 10))] = true
      local n = i:draw(x)
      assert.are.equal("integer", math.type(n))
      assert.is_true(n >= 2 and n <= 5)
      seen_int[n] = true
      seen_choice[c:draw(x)] = true
    end
    -- every integer and every choice turns up; log_uniform spreads over the decades
    for n = 2, 5 do assert.is_true(seen_int[n]) end
    for _, v in ipairs({ "a", "b", "c" }) do assert.is_true(seen_choice[v]) end
    for d = -4, -2 do assert.is_true(decades[d], "decade 1e" .. d) end
  end)

  it("rejects bad ranges with the values in the message", function()
    assert_contains(error_of(dd.sweep.uniform, 3, 1), "uniform", "a < b", "3 and 1")
    assert_contains(error_of(dd.sweep.log_uniform, 0, 1), "0 < a < b")
    assert_contains(error_of(dd.sweep.int_range, 1.5, 3), "integers")
    assert_contains(error_of(dd.sweep.choice, {}), "non-empty list")
    assert_contains(error_of(dd.sweep.choice, { {} }), "value 1")
  end)

  it("draws the same values for the same seed, other values for another seed", function()
    local space = { lr = dd.sweep.log_uniform(1e-4, 1e-2), width = dd.sweep.int_range(16, 512) }
    local a = dd.sweep.expand(space, { trials = 8, seed = 5 })
    local b = dd.sweep.expand(space, { trials = 8, seed = 5 })
    local c = dd.sweep.expand(space, { trials = 8, seed = 6 })
    local differs = false
    for k = 1, 8 do
      assert.are.equal(a[k].options.lr, b[k].options.lr)
      assert.are.equal(a[k].options.width, b[k].options.width)
      if a[k].options.lr ~= c[k].options.lr then differs = true end
    end
    assert.is_true(differs)
    -- a draw depends on (seed, trial, key) alone: more trials or another key change nothing
    local more = dd.sweep.expand({ lr = space.lr, width = space.width, extra = dd.sweep.uniform(0, 1) },
      { trials = 20, seed = 5 })
    for k = 1, 8 do assert.are.equal(a[k].options.lr, more[k].options.lr) end
  end)

  it("crosses lists into a grid, last key fastest, and names the trials", function()
    local trials, keys = dd.sweep.expand{ a = { 1, 2 }, b = { "x", "y", "z" } }
    assert.are.same({ "a", "b" }, keys)
    assert.are.equal(6, #trials)
    local got = {}
    for k, t in ipairs(trials) do got[k] = t.options.a .. t.options.b end
    assert.are.same({ "1x", "1y", "1z", "2x", "2y", "2z" }, got)
    assert.are.equal("trial-0001", trials[1].name)
    assert.are.equal(6, dd.sweep.grid_size{ a = { 1, 2 }, b = { "x", "y", "z" } })
  end)

  it("gives every grid point the same number of draws", function()
    local trials = dd.sweep.expand({ a = { 1, 2, 3 }, lr = dd.sweep.uniform(0, 1) }, { trials = 9 })
    local count, lrs = {}, {}
    for _, t in ipairs(trials) do
      count[t.options.a] = (count[t.options.a] or 0) + 1
      lrs[t.options.lr] = true
    end
    assert.are.same({ 3, 3, 3 }, count)
    local n = 0
    for _ in pairs(lrs) do n = n + 1 end
    assert.are.equal(9, n)
  end)

  it("refuses more trials than a pure grid has points", function()
    assert_contains(error_of(dd.sweep.expand, { a = { 1, 2 } }, { trials = 3 }), "trials = 3", "only 2 points",
      "space.seed")
    assert_contains(error_of(dd.sweep.expand, { a = 5 }), "space.a", "non-empty list", "distribution")
  end)

  it("splits trials into disjoint shards that cover the sweep", function()
    local trials = dd.sweep.expand({ x = dd.sweep.uniform(0, 1) }, { trials = 11 })
    local seen = {}
    for i = 0, 2 do
      for _, t in ipairs(dd.sweep.shard(trials, i, 3)) do
        assert.is_nil(seen[t.id])
        seen[t.id] = i
      end
    end
    for id = 1, 11 do assert.are.equal((id - 1) % 3, seen[id]) end
    assert.are.same({ 1, 4 }, { dd.sweep.parse_shard("1/4") })
    assert_contains(error_of(dd.sweep.parse_shard, "4/4"), "0 <= I < N", "'4/4'")
    assert_contains(error_of(dd.sweep.parse_shard, "a/2"), "--shard")
  end)
end)

describe("dd.sweep specs and command lines", function()
  it("checks specs strictly", function()
    local base = { script = TRIAL, space = { x = { 1 } }, metric = "loss" }
    local function with(k, v)
      local t = {}
      for a, b in pairs(base) do t[a] = b end
      t[k] = v
      return t
    end
    assert_contains(error_of(dd.sweep.check_spec, with("metrc", "loss")), "unknown spec key 'metrc'", "metric")
    assert_contains(error_of(dd.sweep.check_spec, with("goal", "up")), "'goal' must be 'min' or 'max'")
    assert_contains(error_of(dd.sweep.check_spec, with("args", { x = 2 })), "'x' is both in 'args' and in 'space'")
    assert_contains(error_of(dd.sweep.check_spec, with("budget", { max = 9, eta = 1 })), "budget.eta")
    assert_contains(error_of(dd.sweep.check_spec, with("budget", { maxi = 9 })), "unknown budget key 'maxi'")
    assert_contains(error_of(dd.sweep.check_spec, with("workers", 0)), "'workers' must be an integer >= 1")
    local s = dd.sweep.check_spec(base)
    assert.are.equal("min", s.goal)
    assert.are.equal("best", s.summary)
    assert.are.same({ 1, 3, 9 }, dd.sweep.rungs({ min = 1, max = 27, eta = 3 }))
  end)

  it("loads a spec file and finds its script", function()
    local dir = tempdir()
    spit(dir .. "/s.lua", 'return {script = "experiments/sweeps/trial_quadratic.lua", space = {x = dd.sweep.uniform(0, 1)}, trials = 2, metric = "loss"}')
    local s = dd.sweep.load_spec(dir .. "/s.lua")
    assert.are.equal(TRIAL, s.script)
    spit(dir .. "/bad.lua", 'return {script = "nowhere.lua", space = {x = {1}}, metric = "loss"}')
    assert_contains(error_of(dd.sweep.load_spec, dir .. "/bad.lua"), "no trial script nowhere.lua")
    assert_contains(error_of(dd.sweep.load_spec, dir .. "/missing.lua"), "no spec file")
    os.execute("rm -rf " .. quote(dir))
  end)

  it("turns options into exact flags, --name=value for values that start with '-'", function()
    local s = spec_of{ script = TRIAL, args = { "pos", out = "{trial_dir}/run", resume = true, quiet = false, n = 3 },
      space = { look_back = { -2 }, lr = dd.sweep.uniform(0, 1) }, trials = 1, metric = "loss",
      budget = { max = 9, option = "epochs" } }
    local trial = dd.sweep.expand(s.space, { trials = 1 })[1]
    local argv = dd.sweep.command_line(s, trial, { trial_dir = "runs/s/trial-0001" })
    assert.are.same({ "pos", "--epochs", "9", "--look-back=-2", "--lr", dd.sweep.format_value(trial.options.lr), "--n", "3",
      "--out", "runs/s/trial-0001/run", "--resume" }, argv)
    assert.are.equal(trial.options.lr, tonumber(argv[6]))
    assert.are.equal("0.1", dd.sweep.format_value(0.1))
    assert.are.equal("3", dd.sweep.format_value(3))
    assert.are.equal("2.0", dd.sweep.format_value(2.0))
  end)
end)

describe("dd.sweep ranking and successive halving", function()
  it("ranks finished trials by value, then stopped ones, then failed ones; NaN last", function()
    local ranked = dd.sweep.store.rank({
      { id = 1, status = "failed" }, { id = 2, status = "ok", value = 0 / 0 }, { id = 3, status = "ok", value = 2 },
      { id = 4, status = "pruned", value = 0.5, resource = 1 }, { id = 5, status = "ok", value = 1 },
      { id = 6, status = "pruned", value = 3, resource = 3 },
    }, "min")
    local ids = {}
    for i, r in ipairs(ranked) do ids[i] = r.id end
    assert.are.same({ 5, 3, 2, 6, 4, 1 }, ids)
    local up = dd.sweep.store.rank({ { id = 1, status = "ok", value = 1 }, { id = 2, status = "ok", value = 2 } }, "max")
    assert.are.equal(2, up[1].id)
  end)

  it("keeps the best 1/eta at a rung, and everyone while too few got there", function()
    local p = dd.sweep.asha_promotes
    assert.is_true(p(1.0, {}, { eta = 3, min_trials = 3 }))
    assert.is_true(p(9.0, { 1.0 }, { eta = 3, min_trials = 3 }))   -- 2 < min_trials
    assert.is_false(p(9.0, { 1.0, 2.0 }, { eta = 3, min_trials = 3 }))
    assert.is_true(p(0.5, { 1.0, 2.0 }, { eta = 3, min_trials = 3 }))
    local ok, rank, kept = p(3.5, { 1, 2, 3, 4, 5, 6, 7, 8 }, { eta = 3, min_trials = 3 })
    assert.is_false(ok)
    assert.are.same({ 4, 3 }, { rank, kept })
    assert.is_true(p(2.5, { 1, 2, 3, 4, 5, 6, 7, 8 }, { eta = 3, min_trials = 3 }))
    assert.is_true(p(2.0, { 1, 2, 3, 4, 5, 6, 7, 8 }, { eta = 3 })) -- ties go to the trial asking
    assert.is_true(p(9, { 1, 2 }, { eta = 3, goal = "max", min_trials = 3 }))
    assert.is_false(p(0 / 0, { 1, 2 }, { eta = 3, min_trials = 3 }))
  end)

  it("leaves dd.report a no-op outside a sweep", function()
    assert.is_true(dd.report{ epoch = 1, loss = 0.5 })
    assert_contains(error_of(dd.report, { loss = {} }), "'loss' must be a number")
    assert.is_false(dd.sweep.in_trial())
  end)

  it("prints a leaderboard with the options that differ", function()
    local info = { metric = "loss", option_keys = { "a", "b" } }
    local ranked = dd.sweep.store.rank({
      { id = 1, name = "trial-0001", status = "ok", value = 2, options = { a = 1, b = "same" } },
      { id = 2, name = "trial-0002", status = "ok", value = 1, options = { a = 2, b = "same" } },
      { id = 3, name = "trial-0003", status = "failed", exit_code = 1, error = "x\ndeepdance: it broke\nstack traceback:",
        options = { a = 3, b = "same" } },
    }, "min")
    local differing = dd.sweep.store.differing(ranked, info.option_keys)
    assert.are.same({ "a" }, differing)
    local text = dd.sweep.store.leaderboard(info, ranked, differing)
    local lines = {}
    for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(4, #lines)
    assert.truthy(lines[1]:match("^rank%s+trial%s+loss%s+status%s+a$"))
    assert.truthy(lines[2]:match("^1%s+trial%-0002%s+1%s+ok%s+2$"))
    assert.truthy(lines[4]:match("trial%-0003.*failed.*it broke"))
    assert.is_nil(text:find("same", 1, true))
  end)
end)

describe("dd.sweep runner", function()
  local dir
  before_each(function() dir = tempdir() end)
  after_each(function() os.execute("rm -rf " .. quote(dir)) end)

  it("runs every trial once, writes results.csv best first, and skips finished trials on a rerun", function()
    local spec = spec_of{ script = TRIAL, args = { epochs = 3 }, space = { x = dd.sweep.uniform(-1, 3), y = { -2, 0 } },
      trials = 4, seed = 2, metric = "loss", workers = 2 }
    local out = dir .. "/s"
    local o1 = sink()
    local s1 = dd.sweep.run{ spec = spec, out = out, output = o1 }
    assert.are.same({ 4, 4, 0 }, { s1.ran, s1.ok, s1.failed })
    assert_contains(o1.text, "4 to run, 2 at a time x 1 thread", "rank  trial", "results: " .. out .. "/results.csv")
    local _, rows = dd.sweep.store.read_csv(out .. "/results.csv")
    assert.are.equal(4, #rows)
    local trials = dd.sweep.expand(spec.space, { trials = 4, seed = 2 })
    for i, row in ipairs(rows) do
      assert.are.equal(i, row.rank)
      local t = trials[tonumber(row.trial:match("%d+"))]
      local expected = (t.options.x - 1) ^ 2 + (t.options.y + 2) ^ 2 + 1 / 3
      assert.is_true(math.abs(row.loss - expected) < 1e-12, row.trial)
      assert.are.equal(t.options.x, row.x)
      if i > 1 then assert.is_true(rows[i - 1].loss <= row.loss) end
    end
    local metrics = dd.sweep.store.read_csv(out .. "/trial-0001/metrics.csv")
    assert.are.same({ "epoch", "loss" }, metrics)
    local _, starts = slurp(out .. "/trial-0001/log.txt"):gsub("== deepdance sweep: start", "")
    assert.are.equal(1, starts)
    local log_before = slurp(out .. "/trial-0002/log.txt")

    local o2 = sink()
    local s2 = dd.sweep.run{ spec = spec, out = out, output = o2 }
    assert.are.same({ 0, 4 }, { s2.ran, s2.skipped })
    assert_contains(o2.text, "4 done; nothing to run", "rank  trial")
    assert.are.equal(log_before, slurp(out .. "/trial-0002/log.txt"))
  end)

  it("records a failed trial with the tail of its error, keeps it on reruns, and retries it when asked", function()
    -- fails on its first run, succeeds on the next: a flaky trial
    local script = dir .. "/flaky.lua"
    spit(script, [[
local p = dd.cli.parser("flaky.lua"); p:option("--x"):convert(tonumber); p:option("--out")
local o = dd.cli.parse(p, arg)
local mark = o.out .. "/tried"
local f = io.open(mark)
if not f and o.x > 1 then
  io.open(mark, "w"):close()
  error("flaky: x = " .. o.x .. " is too big today", 0)
end
dd.report{epoch = 1, loss = o.x}
]])
    local spec = spec_of{ script = script, args = { out = "{trial_dir}" }, space = { x = { 0.5, 2 } }, metric = "loss" }
    local out = dir .. "/f"
    local s1 = dd.sweep.run{ spec = spec, out = out, output = sink() }
    assert.are.same({ 1, 1 }, { s1.ok, s1.failed })
    local r = dd.sweep.store.read_json(out .. "/trial-0002/result.json")
    assert.are.equal("failed", r.status)
    assert.are.equal(1, r.exit_code)
    assert_contains(r.error, "flaky: x = 2 is too big today")
    local _, rows = dd.sweep.store.read_csv(out .. "/results.csv")
    assert.are.equal("failed", rows[2].status)
    assert.are.equal("flaky: x = 2 is too big today", rows[2].error)

    local s2 = dd.sweep.run{ spec = spec, out = out, output = sink() }
    assert.are.equal(0, s2.ran)
    local s3 = dd.sweep.run{ spec = spec, out = out, output = sink(), retry_failed = true }
    assert.are.same({ 1, 1 }, { s3.ran, s3.ok })
    assert.are.equal("ok", dd.sweep.store.read_json(out .. "/trial-0002/result.json").status)
  end)

  it("fails a trial that never reports the metric, and refuses a changed spec in the same directory", function()
    local spec = spec_of{ script = TRIAL, args = { epochs = 1, out = "{trial_dir}" }, space = { x = { 1 } },
      metric = "val_loss" }
    local out = dir .. "/m"
    local s = dd.sweep.run{ spec = spec, out = out, output = sink() }
    assert.are.equal(1, s.failed)
    assert_contains(dd.sweep.store.read_json(out .. "/trial-0001/result.json").error, "without reporting 'val_loss'")
    local changed = spec_of{ script = TRIAL, args = { epochs = 2, out = "{trial_dir}" }, space = { x = { 1 } },
      metric = "val_loss" }
    assert_contains(error_of(dd.sweep.run, { spec = changed, out = out, output = sink() }),
      "trial-0001 was run as", "--epochs 1", "--epochs 2", "another --out")
    -- the same directory spelt another way (relative, absolute) is the same sweep
    local again = dd.sweep.run{ spec = spec, out = dir .. "/./m", output = sink(), retry_failed = true }
    assert.are.equal(1, again.ran)
  end)

  it("gives the same results.csv from two shards as from one run", function()
    local spec = spec_of{ script = TRIAL, args = { epochs = 2 }, space = { x = dd.sweep.uniform(-1, 3), y = { -2, 0, 1 } },
      trials = 6, seed = 4, metric = "loss", workers = 2 }
    dd.sweep.run{ spec = spec, out = dir .. "/whole", output = sink() }
    local o = sink()
    local s0 = dd.sweep.run{ spec = spec, out = dir .. "/parts", shard = { 0, 2 }, output = o }
    assert.are.equal(3, s0.ran)
    assert_contains(o.text, "shard 0/2: 3 of them", "3 not run yet", "--collect")
    dd.sweep.run{ spec = spec, out = dir .. "/parts", shard = { 1, 2 }, output = sink() }
    os.remove(dir .. "/parts/results.csv")
    local ranked, missing = dd.sweep.collect{ spec = spec, out = dir .. "/parts", output = sink() }
    assert.are.same({ 6, 0 }, { #ranked, #missing })
    assert.are.equal(results_without_seconds(dir .. "/whole"), results_without_seconds(dir .. "/parts"))
  end)

  it("stops hopeless trials early with successive halving", function()
    local spec = spec_of{ script = TRIAL, space = { x = dd.sweep.uniform(-3, 5) }, trials = 9, seed = 11, metric = "loss",
      workers = 1, budget = { min = 1, max = 9, eta = 3, option = "epochs" } }
    local out = dir .. "/a"
    local s = dd.sweep.run{ spec = spec, out = out, output = sink() }
    assert.is_true(s.pruned >= 3, "pruned " .. s.pruned)
    assert.are.equal(9, s.ok + s.pruned)
    -- every decision is what asha_promotes says given the trials before it (one worker: a fixed order)
    local rows_of = {}
    for id = 1, 9 do rows_of[id] = dd.sweep.store.read_metrics(("%s/trial-%04d"):format(out, id)) end
    local function at(id, rung)
      for _, row in ipairs(rows_of[id]) do
        if row.epoch >= rung then return row.loss end
      end
    end
    for id = 1, 9 do
      local r = dd.sweep.store.read_json(("%s/trial-%04d/result.json"):format(out, id))
      local stopped_at
      for _, rung in ipairs({ 1, 3 }) do
        if at(id, rung) and not stopped_at then
          local others = {}
          for j = 1, id - 1 do others[#others + 1] = at(j, rung) end
          if not dd.sweep.asha_promotes(at(id, rung), others, { eta = 3, min_trials = 3 }) then stopped_at = rung end
        end
      end
      if stopped_at then
        assert.are.equal("pruned", r.status, "trial " .. id)
        assert.are.equal(stopped_at, r.pruned.rung)
        assert.are.equal(stopped_at, #rows_of[id])
      else
        assert.are.equal("ok", r.status, "trial " .. id)
        assert.are.equal(9, #rows_of[id])
      end
    end
    local _, rows = dd.sweep.store.read_csv(out .. "/results.csv")
    assert.are.equal("ok", rows[1].status)
    assert.are.equal("pruned", rows[9].status)
  end)

  it("has dd.fit report every epoch and end a stopped trial after that epoch", function()
    local script = dir .. "/fit_trial.lua"
    spit(script, [[
local p = dd.cli.parser("fit_trial.lua"); p:option("--lr"):convert(tonumber); p:option("--epochs"):convert(math.tointeger)
local o = dd.cli.parse(p, arg)
dd.manual_seed(1)
local x = dd.randn(64, 4)
local y = dd.matmul(x, dd.tensor{{1}, {-2}, {0.5}, {3}})
local net = dd.nn.Linear{4, 1}
dd.fit{model = net, loss = dd.nn.MSELoss(), optimizer = dd.optim.SGD{net:parameters(), lr = o.lr}, x = x, y = y,
       epochs = o.epochs, batch_size = 16, validation_split = 0.25, progress = "none"}
print("fit returned")
]])
    local spec = spec_of{ script = script, space = { lr = { 0.1, 1e-6 } }, metric = "val_loss", workers = 1,
      budget = { min = 1, max = 4, eta = 2, min_trials = 2, option = "epochs" } }
    local out = dir .. "/fit"
    local s = dd.sweep.run{ spec = spec, out = out, output = sink() }
    assert.are.same({ 1, 1 }, { s.ok, s.pruned })
    local header, rows = dd.sweep.store.read_csv(out .. "/trial-0001/metrics.csv")
    assert.are.equal("epoch", header[1])
    assert_contains(table.concat(header, ","), "val_loss", "loss", "lr")
    assert.are.equal(4, #rows)
    -- the slow learner stops after the epoch of its rung and its script goes on normally
    local stopped = dd.sweep.store.read_json(out .. "/trial-0002/result.json")
    assert.are.same({ "pruned", 0 }, { stopped.status, stopped.exit_code })
    assert.is_true(#dd.sweep.store.read_metrics(out .. "/trial-0002") < 4)
    assert_contains(slurp(out .. "/trial-0002/log.txt"), "stopped by successive halving", "fit returned")
  end)

  it("loads a sweep, its trials and their histories with dd.runs", function()
    local spec = spec_of{ script = TRIAL, args = { epochs = 3 }, space = { x = { 3, 1, 2 } }, metric = "loss",
      workers = 2 }
    local out = dir .. "/r"
    dd.sweep.run{ spec = spec, out = out, output = sink() }
    local s = dd.runs.load(out)
    assert.are.equal("sweep", s.kind)
    assert.are.same({ "loss", "min", 3 }, { s.metric, s.goal, #s.trials })
    assert.are.equal("trial-0002", s.best.name)
    assert.are.equal(1, s.best.options.x)
    assert.are.same({ 1, 2, 3 }, s.best.history.epoch)
    assert.is_true(math.abs(s.best.history.loss[3] - (4 + 1 / 3)) < 1e-12) -- (1 - 1)^2 + (0 + 2)^2 + 1/3
    assert.are.equal(s.best.value, s.results[1].loss)
    local t = dd.runs.load(out .. "/trial-0003")
    assert.are.equal("trial", t.kind)
    assert.are.equal(2, t.options.x)
    local o = sink()
    local rows = dd.runs.compare{ out, output = o }
    assert.are.same({ "trial-0002", "trial-0003", "trial-0001" }, { rows[1].run, rows[2].run, rows[3].run })
    assert_contains(o.text, "best loss", "x")
    assert_contains(error_of(s.best.model, s.best), "no best.safetensors")
    assert_contains(error_of(dd.runs.load, dir), "neither a sweep")
  end)
end)

describe("dd.sweep on Slurm", function()
  it("writes one array task per shard with the resources of its trials", function()
    local spec = spec_of{ script = TRIAL, space = { x = { 1, 2, 3, 4, 5 } }, metric = "loss" }
    spec.path = "/abs/spec.lua"
    local text = dd.sweep.slurm_script{ spec = spec, spec_path = "/abs/spec.lua", out = "/abs/runs/s", shards = 5,
      workers = 1, threads = 2, partition = "gpu", time = "0:10:00", exe = "/usr/bin/deepdance", cwd = "/abs" }
    assert_contains(text, "#!/bin/sh\n", "#SBATCH --array=0-4\n", "#SBATCH --cpus-per-task=2\n", "#SBATCH --partition=gpu\n",
      "#SBATCH --time=0:10:00\n", "#SBATCH --output=/abs/runs/s/slurm/shard-%a.log", "cd /abs || exit 1",
      'exec /usr/bin/deepdance sweep /abs/spec.lua --out /abs/runs/s --shard "$SLURM_ARRAY_TASK_ID/5" --workers 1 --threads 2')
  end)

  it("submits the script with sbatch and keeps the job id", function()
    local dir = tempdir()
    local fake = dir .. "/sbatch"
    spit(fake, "#!/bin/sh\necho \"$@\" > " .. quote(dir .. "/args") .. "\necho 4242\n")
    os.execute("chmod +x " .. quote(fake))
    spit(dir .. "/spec.lua", ('return {script = %q, space = {x = {1, 2, 3}}, metric = "loss"}'):format(TRIAL))
    local o = sink()
    local job = dd.sweep.slurm_submit{ spec = dd.sweep.load_spec(dir .. "/spec.lua"), out = dir .. "/out", shards = 2,
      sbatch = fake, output = o }
    assert.are.equal("4242", job)
    assert.are.equal("4242\n", slurp(dir .. "/out/slurm/job_id"))
    assert_contains(slurp(dir .. "/args"), "--parsable", dir .. "/out/slurm/sweep.sbatch")
    assert_contains(slurp(dir .. "/out/slurm/sweep.sbatch"), "--array=0-1", '--shard "$SLURM_ARRAY_TASK_ID/2"')
    assert_contains(o.text, "submitted job 4242", "--collect")
    os.execute("rm -rf " .. quote(dir))
  end)
end)

describe("dd.process", function()
  it("runs a program with its environment and output file, and returns its exit code", function()
    local dir = tempdir()
    local pid = dd.process.spawn{ argv = { "sh", "-c", 'echo "$A $B $HOME"; echo err >&2; exit 3' },
      env = { A = "one", B = 2, HOME = false }, output = dir .. "/out.txt" }
    local done, code = dd.process.wait({ pid }, 10)
    assert.are.same({ pid, 3 }, { done, code })
    assert.are.equal("one 2 \nerr\n", slurp(dir .. "/out.txt"))
    os.execute("rm -rf " .. quote(dir))
  end)

  it("waits for whichever ends first, times out, and reports signals as 128 + N", function()
    local slow = dd.process.spawn{ argv = { "sleep", "30" } }
    local fast = dd.process.spawn{ argv = { "true" } }
    local done, code = dd.process.wait({ slow, fast }, 10)
    assert.are.same({ fast, 0 }, { done, code })
    assert.is_nil(dd.process.wait(slow, 0.05))
    assert.is_true(dd.process.alive(slow))
    assert.is_true(dd.process.kill(slow, "TERM"))
    assert.are.same({ slow, 143 }, { dd.process.wait(slow, 10) })
    assert.is_false(dd.process.alive(slow))
  end)

  it("names what cannot run", function()
    assert_contains(error_of(dd.process.spawn, { argv = { "no-such-program-here" } }),
      "cannot run 'no-such-program-here': No such file or directory")
    assert_contains(error_of(dd.process.spawn, { argv = { "true" }, dir = "/no/such/dir" }), "cannot run 'true' in /no/such/dir")
    assert_contains(error_of(dd.process.spawn, { argv = { "true" }, output = "/no/such/dir/log" }), "cannot open /no/such/dir/log")
    assert_contains(error_of(dd.process.spawn, { argv = {} }), "'argv' is empty")
    assert_contains(error_of(dd.process.spawn, { argv = { "true" }, bogus = 1 }), "unknown option 'bogus' (known: argv, env, output, dir)")
    assert_contains(error_of(dd.process.kill, 1, "NOPE"), "unknown signal 'NOPE'")
    assert.is_true(dd.process.cores() >= 1)
    assert.truthy(dd.process.executable():match("deepdance$"))
  end)
end)

-- deepdance sweep: the command line of sweeps (`deepdance sweep SPEC.lua ...`
-- runs this script; src/main.c maps the word "sweep" to it).
--   deepdance sweep experiments/sweeps/quadratic_spec.lua --out runs/q --workers 2
--   deepdance sweep SPEC --out runs/q --shard 0/2          # half of the trials
--   deepdance sweep SPEC --out runs/q --collect            # merge shards, print the leaderboard
--   deepdance sweep SPEC --out runs/q --slurm --partition gpu --wait
local p = dd.cli.parser("deepdance sweep", "Run a hyperparameter sweep: every trial is a run of the spec's script " ..
  "in OUT/trial-NNNN/; OUT/results.csv ranks them. Running it again skips finished trials.")
p:argument("spec", "the sweep spec (a Lua file returning {script=, args=, space=, metric=, ...})")
p:option("--out", "the sweep's directory (default: runs/<spec name>)")
p:option("--workers", "trials at a time on this machine (default: the spec's, else 1)"):convert(math.tointeger)
p:option("--threads", "threads per trial (default: cores // workers)"):convert(math.tointeger)
p:option("--shard", "I/N: run only shard I (0-based) of N, e.g. one node's share")
p:flag("--retry-failed", "run the trials that failed before again")
p:flag("--collect", "run nothing: merge every trial's result into results.csv and print the leaderboard")
p:flag("--list", "run nothing: print each trial's options and state")
p:option("--top", "leaderboard rows to print", "20"):convert(math.tointeger)
p:flag("--slurm", "submit the sweep as a Slurm job array (one task per shard) instead of running it here")
p:option("--partition", "--slurm: the partition")
p:option("--shards", "--slurm: array tasks (default: one per trial)"):convert(math.tointeger)
p:option("--time", "--slurm: time limit per task (sbatch --time)")
p:option("--mem", "--slurm: memory per task (sbatch --mem)")
p:flag("--wait", "--slurm: wait for the array to end, then collect")
p:flag("--dry-run", "--slurm: write and print the batch script, submit nothing")
p:option("--sbatch", "--slurm: the sbatch command", "sbatch")
local o = dd.cli.parse(p, arg)
if not o then return end

local function positive(name, v)
  if v ~= nil and (math.type(v) ~= "integer" or v < 1) then
    error(("deepdance sweep: --%s must be an integer >= 1, got %s"):format(name, tostring(v)), 0)
  end
end
positive("workers", o.workers)
positive("threads", o.threads)
positive("top", o.top)
positive("shards", o.shards)
for _, name in ipairs({ "partition", "shards", "time", "mem", "dry_run", "wait" }) do
  if o[name] and not o.slurm then
    error(("deepdance sweep: --%s goes with --slurm"):format(name:gsub("_", "-")), 0)
  end
end

local spec = dd.sweep.load_spec(o.spec)
local out = o.out or ("runs/" .. (o.spec:match("([^/]+)$"):gsub("%.lua$", "")))
out = out:gsub("/+$", "")

if o.list then
  local trials, mine, todo, done, failed = dd.sweep.plan(spec, out, { shard = o.shard and { dd.sweep.parse_shard(o.shard) } })
  local state = {}
  for _, t in ipairs(done) do state[t.id] = "done" end
  for _, t in ipairs(failed) do state[t.id] = "failed" end
  for _, t in ipairs(todo) do state[t.id] = "to run" end
  for _, t in ipairs(mine) do
    local keys, parts = {}, {}
    for k in pairs(t.options) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. dd.sweep.format_value(t.options[k]) end
    print(("%s  %-7s %s"):format(t.name, state[t.id], table.concat(parts, " ")))
  end
  print(("%d of %d trials"):format(#mine, #trials))
elseif o.collect then
  dd.sweep.collect{ spec = spec, out = out, top = o.top }
elseif o.slurm then
  if o.shard then error("deepdance sweep: --shard and --slurm do not mix: --slurm makes one array task per shard", 0) end
  dd.sweep.slurm_submit{
    spec = spec, out = out, shards = o.shards, workers = o.workers, threads = o.threads, partition = o.partition,
    time = o.time, mem = o.mem, retry_failed = o.retry_failed, wait = o.wait, dry_run = o.dry_run, sbatch = o.sbatch,
    top = o.top,
  }
else
  dd.sweep.run{
    spec = spec, out = out, workers = o.workers, threads = o.threads, retry_failed = o.retry_failed, top = o.top,
    shard = o.shard and { dd.sweep.parse_shard(o.shard) },
  }
end

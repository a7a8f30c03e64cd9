-- deepdance.sweep slurm: a sweep as a Slurm job array, one array task per
-- shard. Task i runs `deepdance sweep SPEC --out OUT --shard i/N` on its
-- node; every task writes into the same OUT (a shared file system), and
-- `--collect` (or --wait) merges the results when the array is done.
--
--   OUT/slurm/sweep.sbatch    the batch script (submitted with sbatch --parsable)
--   OUT/slurm/job_id          the array's job id
--   OUT/slurm/shard-N.log     each task's runner output
local dd, sweep = ...
local store = sweep.store

local function quote(s)
  s = tostring(s)
  if s:match("^[%w%./_%-:=+,@%%]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function cwd()
  local env = os.getenv("PWD")
  local p = io.popen("pwd")
  local dir = p and p:read("l")
  if p then p:close() end
  return dir or env or "."
end

local function absolute(path, base)
  if path:sub(1, 1) == "/" then return path end
  path = path:gsub("^%./", "")
  return base .. "/" .. path
end

--- dd.sweep.slurm_script{spec=, spec_path=, out=, shards=, workers=1, threads=,
--   partition=, time=, mem=, retry_failed=, exe=, cwd=} -> text of the batch script
function sweep.slurm_script(o)
  local threads = o.threads or o.spec.threads or 1
  local workers = o.workers or 1
  local name = (o.out:match("([^/]+)/*$") or "sweep"):gsub("[^%w_%-%.]", "_")
  local lines = {
    "#!/bin/sh",
    "# deepdance sweep as a Slurm job array: task i runs shard i of " .. o.shards .. ".",
    "# Written by `deepdance sweep --slurm`; collect with `deepdance sweep SPEC --out OUT --collect`.",
    "#SBATCH --job-name=dd-" .. name,
    ("#SBATCH --array=0-%d"):format(o.shards - 1),
    "#SBATCH --ntasks=1",
    ("#SBATCH --cpus-per-task=%d"):format(workers * threads),
    "#SBATCH --output=" .. o.out .. "/slurm/shard-%a.log",
  }
  if o.partition then lines[#lines + 1] = "#SBATCH --partition=" .. o.partition end
  if o.time then lines[#lines + 1] = "#SBATCH --time=" .. o.time end
  if o.mem then lines[#lines + 1] = "#SBATCH --mem=" .. o.mem end
  lines[#lines + 1] = "cd " .. quote(o.cwd) .. " || exit 1"
  local cmd = { quote(o.exe), "sweep", quote(o.spec_path), "--out", quote(o.out),
    '--shard "$SLURM_ARRAY_TASK_ID/' .. o.shards .. '"', "--workers", tostring(workers), "--threads", tostring(threads) }
  if o.retry_failed then cmd[#cmd + 1] = "--retry-failed" end
  lines[#lines + 1] = "exec " .. table.concat(cmd, " ")
  return table.concat(lines, "\n") .. "\n"
end

--- dd.sweep.slurm_submit{spec=, out=, shards=, workers=, threads=, partition=, time=, mem=,
--   retry_failed=, wait=false, dry_run=false, sbatch="sbatch", output=io.stdout}
-- -> job id (nil with dry_run). With wait, returns after the array has ended
-- and the results are collected.
function sweep.slurm_submit(o)
  local output = o.output or io.stdout
  local here = cwd()
  local trials = sweep.expand(o.spec.space, { trials = o.spec.trials, seed = o.spec.seed })
  local shards = o.shards or #trials
  if shards > #trials then shards = #trials end
  local out = absolute(o.out, here)
  store.mkdir(out .. "/slurm")
  local text = sweep.slurm_script{
    spec = o.spec, spec_path = absolute(o.spec.path, here), out = out, shards = shards, workers = o.workers,
    threads = o.threads, partition = o.partition, time = o.time, mem = o.mem, retry_failed = o.retry_failed,
    exe = dd.process.executable(), cwd = here,
  }
  local script = out .. "/slurm/sweep.sbatch"
  store.write(script, text)
  local sbatch = o.sbatch or "sbatch"
  local cmd = ("%s --parsable%s %s"):format(sbatch, o.wait and " --wait" or "", quote(script))
  if o.dry_run then
    output:write(text, "would run: ", cmd, "\n")
    return nil
  end
  output:write(("sweep %s: submitting %d trials as a Slurm array of %d tasks (%s)\n"):format(out, #trials, shards,
    script))
  output:flush()
  local p = io.popen(cmd .. " 2>&1")
  if not p then error("sweep --slurm: cannot run " .. sbatch, 0) end
  local job, lines = nil, {}
  for line in p:lines() do
    lines[#lines + 1] = line
    job = job or line:match("^(%d+)")
    if job and #lines == 1 then
      store.write(out .. "/slurm/job_id", job .. "\n")
      output:write(("submitted job %s%s\n"):format(job, o.wait and "; waiting for it to end" or ""))
      output:flush()
    end
  end
  local ok, _, code = p:close()
  if not job then
    error(("sweep --slurm: %s failed (exit code %s): %s"):format(sbatch, tostring(code), table.concat(lines, "\n")), 0)
  end
  if not o.wait then
    output:write(("when it is done: deepdance sweep %s --out %s --collect   (squeue -j %s shows it)\n"):format(
      o.spec.path, o.out, job))
    return job
  end
  if not ok then output:write(("sbatch --wait: job %s ended with exit code %s\n"):format(job, tostring(code))) end
  sweep.collect{ spec = o.spec, out = o.out, output = output, top = o.top }
  return job
end

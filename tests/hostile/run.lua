-- tests/hostile/run.lua: the parent side of the hostile-script test. Runs
-- tests/hostile/probes.lua in child ./deepdance processes (in a scratch folder,
-- under a 4 GB address-space limit so huge allocations fail as they would on a
-- small machine, with a time limit), restarts a child that died after the
-- probe that killed it, and prints TAP: one line per target (function or
-- method), failing when a probe crashed the process, hung, or raised something
-- other than a string message.
--   ./deepdance tests/hostile/run.lua [first-target [last-target]]
-- Environment: HOSTILE_KEEP=1 keeps the scratch folder.
local root = dd.home
-- the children run the same binary as this script
local bin = arg[-1] or (root .. "/deepdance")
if bin:sub(1, 1) ~= "/" then bin = os.getenv("PWD") .. "/" .. bin end
local probes = root .. "/tests/hostile/probes.lua"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return out
end

-- tmpfs when there is one: atomic writes fsync, which costs milliseconds on a disk
local base = os.execute("test -d /dev/shm -a -w /dev/shm") and "/dev/shm" or "/tmp"
local dir = sh("mktemp -d -p " .. base .. " dd-hostile.XXXXXX"):gsub("%s+$", "")
-- HOSTILE_NO_HUGE=1 (ASan builds, which need a huge address space): no limit, no 2^31 sizes
local limit = os.getenv("HOSTILE_NO_HUGE") and "true" or "ulimit -v 4000000"
local function child(args, redirect)
  return ("cd %s && %s && exec timeout -s KILL %d %s %s %s </dev/null %s"):format(quote(dir), limit,
    args:match("^run") and 300 or 60, quote(bin), quote(probes), args, redirect or "2>&1")
end

local setup = sh(child("setup"))
if not setup:find("setup done", 1, true) then
  print("not ok 1 - hostile probes: setup failed: " .. setup:gsub("\n", " | "))
  os.exit(1)
end

-- Targets and their probe ranges.
local targets, total = {}, 0
for line in sh(child("list", "2>/dev/null")):gmatch("[^\n]+") do
  local first, count, name = line:match("^target (%d+) (%d+) (.+)$")
  if first then
    local skip
    name, skip = name:match("^(.-) # SKIP (.*)$")
    if not name then name = line:match("^target %d+ %d+ (.+)$") end
    targets[#targets + 1] = { first = tonumber(first), count = tonumber(count), name = name, skip = skip, bad = {},
      calls = 0, returned = 0, raised = 0 }
  end
  total = tonumber(line:match("^total (%d+)")) or total
end
if #targets == 0 then
  print("not ok 1 - hostile probes: listing failed: " .. sh(child("list")):gsub("\n", " | "))
  os.exit(1)
end
local lo, hi = tonumber(arg[1]) or 1, tonumber(arg[2]) or #targets
local function target_of(i)
  for t = lo, hi do
    local r = targets[t]
    if i >= r.first and i < r.first + r.count then return t end
  end
end

local function describe(i) return sh(child("describe " .. i, "2>/dev/null")):gsub("%s+$", "") end

-- Runs children until every probe from targets lo..hi ran.
local t0 = dd.clock()
local next_probe, last_probe = targets[lo].first, targets[hi].first + targets[hi].count - 1
local crashes, slow, restarts = 0, {}, 0
while next_probe <= last_probe and restarts < 300 do
  local p = io.popen(child("run " .. next_probe, "3>&1 >/dev/null 2>" .. quote(dir .. "/stderr.txt")))
  local last, in_gc, done = nil, nil, false
  for line in p:lines() do
    local kind, rest = line:match("^(%u+) ?(.*)$")
    if kind == "P" then
      last, in_gc = tonumber(rest), nil
      if last > last_probe then break end
    elseif kind == "G" then
      in_gc = tonumber(rest)
    elseif kind == "T" then
      local t, calls, returned, raised, ms, named = rest:match("^(%d+) (%d+) (%d+) (%d+) %d+ (%d+) (%d+)")
      local r = targets[tonumber(t)]
      r.calls, r.returned, r.raised = r.calls + calls, r.returned + returned, r.raised + raised
      r.ms, r.named = (r.ms or 0) + ms, (r.named or 0) + named
      in_gc = nil
    elseif kind == "B" then
      local t, text = rest:match("^(%d+) %d+ (.*)$")
      table.insert(targets[tonumber(t)].bad, text)
    elseif kind == "S" then
      local i, ms = rest:match("^(%d+) (%d+)")
      slow[#slow + 1] = ("%s (%s ms)"):format(describe(i), ms)
    elseif kind == "DONE" then
      done = true
    end
  end
  local _, how, code = p:close()
  if done or (last and last > last_probe) then break end
  -- The child died: blame the probe it had started (or the collection after a target).
  -- what the child said as it died: a sanitizer's report or Lua's last words
  local errtext = sh("grep -m 12 -E 'runtime error|ERROR|SUMMARY|#[0-4] |PANIC|deepdance:' " ..
    quote(dir .. "/stderr.txt") .. " | cut -c1-200"):gsub("\n", " | ")
  local status = ("%s %s"):format(how, tostring(code))
  if in_gc then
    table.insert(targets[in_gc].bad, ("the garbage collection after the probes crashed the process (%s): %s"):format(status, errtext))
    crashes = crashes + 1
    next_probe = targets[in_gc].first + targets[in_gc].count
  elseif last then
    local t = target_of(last)
    local r = targets[t]
    table.insert(r.bad, ("CRASH (%s) in %s: %s"):format(status, describe(last), errtext))
    crashes = crashes + 1
    r.crashes = (r.crashes or 0) + 1
    -- after three crashes in one target, its other probes are skipped
    next_probe = r.crashes < 3 and last + 1 or r.first + r.count
  else
    print("not ok 1 - hostile probes: a child died before its first probe (" .. status .. "): " .. errtext)
    os.exit(1)
  end
  restarts = restarts + 1
end

local n, calls, raised, failed = 0, 0, 0, 0
for t = lo, hi do
  local r = targets[t]
  n = n + 1
  calls, raised = calls + r.calls, raised + r.raised
  if r.skip then
    print(("ok %d - %s # SKIP not called with hostile arguments: %s"):format(n, r.name, r.skip))
  elseif #r.bad == 0 and r.calls == r.count then
    print(("ok %d - %s: %d hostile calls, %d raised, %d returned"):format(n, r.name, r.calls, r.raised, r.returned))
  else
    failed = failed + 1
    local why = #r.bad > 0 and r.bad or { ("only %d of %d probes ran"):format(r.calls, r.count) }
    print(("not ok %d - %s: %s"):format(n, r.name, why[1]))
    for k = 2, math.min(#why, 5) do print("#   " .. why[k]) end
    if #why > 5 then print(("#   ... and %d more"):format(#why - 5)) end
  end
end
for _, s in ipairs(slow) do print("# slow probe: " .. s) end
local by_time = {}
for t = lo, hi do by_time[#by_time + 1] = targets[t] end
table.sort(by_time, function(a, b) return (a.ms or 0) > (b.ms or 0) end)
local slowest = {}
for i = 1, math.min(5, #by_time) do slowest[i] = ("%s %.1f s"):format(by_time[i].name, (by_time[i].ms or 0) / 1000) end
print("# slowest targets: " .. table.concat(slowest, ", "))
-- How many error messages name the function that raised them (the rest come
-- from deeper: a Lua function's callee, a container's layer, ...).
local named, raised_all, unnamed = 0, 0, {}
for t = lo, hi do
  local r = targets[t]
  named, raised_all = named + (r.named or 0), raised_all + r.raised
  if r.raised >= 20 and (r.named or 0) < r.raised / 2 then unnamed[#unnamed + 1] = r.name end
end
local listed = table.concat(unnamed, ", ", 1, math.min(#unnamed, 12)) .. (#unnamed > 12 and (" and %d more"):format(#unnamed - 12) or "")
print(("# messages naming the function called: %d of %d (%.0f%%); under half for %d targets: %s"):format(named,
  raised_all, 100 * named / math.max(raised_all, 1), #unnamed, #unnamed > 0 and listed or "none"))
print(("# hostile probes: %d targets, %d calls (%d raised a Lua error), %d crashes, %d restarts, %.1f s"):format(n,
  calls, raised, crashes, restarts, dd.clock() - t0))
print("1.." .. n)
if os.getenv("HOSTILE_KEEP") then print("# scratch folder kept: " .. dir) else sh("rm -rf " .. quote(dir)) end
os.exit(failed == 0 and 0 or 1)

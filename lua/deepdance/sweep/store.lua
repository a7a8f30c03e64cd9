-- deepdance.sweep store: a sweep's files, read and written in one place.
--
--   OUT/sweep.json              the spec as run (script, metric, goal, budget, trials, seed, option keys)
--   OUT/results.csv             every finished trial, best first (rank, trial, status, metric, ..., options)
--   OUT/trial-NNNN/trial.json   the trial: id, options, command line, threads, budget (written at start)
--   OUT/trial-NNNN/log.txt      the trial's output, appended across restarts
--   OUT/trial-NNNN/metrics.csv  one row per dd.report, written by the trial
--   OUT/trial-NNNN/pruned.json  written by dd.report when successive halving stops the trial
--   OUT/trial-NNNN/result.json  written by the runner when the trial process ends
-- Every file is replaced atomically (temporary file, then rename), so a
-- reader on another node, or after a kill, sees a whole file or the old one.
local dd, sweep = ...

local store = {}
sweep.store = store

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function store.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

function store.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

local tmp_count = 0
function store.write(path, text)
  tmp_count = tmp_count + 1
  local tmp = ("%s.tmp.%d.%d"):format(path, dd.process.pid(), tmp_count)
  local f, err = io.open(tmp, "wb")
  if not f then error(("sweep: cannot write %s: %s"):format(tmp, tostring(err)), 0) end
  local ok, werr = f:write(text)
  local closed, cerr = f:close()
  if not (ok and closed) then
    os.remove(tmp)
    error(("sweep: cannot write %s: %s"):format(path, tostring(werr or cerr)), 0)
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    error(("sweep: cannot rename %s to %s: %s"):format(tmp, path, tostring(rerr)), 0)
  end
end

function store.mkdir(dir)
  if not os.execute("mkdir -p " .. quote(dir)) then error(("sweep: cannot create directory %s"):format(dir), 0) end
end

function store.read_json(path)
  local text = store.read(path)
  if not text then return nil end
  local ok, v = pcall(dd.json.decode, text)
  if ok and type(v) == "table" then return v end
  return nil
end

function store.write_json(path, t) store.write(path, dd.json.encode(dd.json.safe(t), { indent = true }) .. "\n") end

function store.trial_dir(out, trial) return out .. "/" .. (trial.name or ("trial-%04d"):format(trial.id)) end

---------------------------------------------------------------------------
-- CSV
---------------------------------------------------------------------------

local function csv_field(v)
  if v == nil then return "" end
  local s = type(v) == "number" and sweep.format_value(v) or tostring(v)
  if s:find('[,"\r\n]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end
store.csv_field = csv_field

local function csv_split(line)
  local fields, i, n = {}, 1, #line
  while i <= n + 1 do
    if line:sub(i, i) == '"' then
      local buf, j = {}, i + 1
      while j <= n do
        local c = line:sub(j, j)
        if c == '"' then
          if line:sub(j + 1, j + 1) == '"' then
            buf[#buf + 1] = '"'
            j = j + 2
          else
            j = j + 1
            break
          end
        else
          buf[#buf + 1] = c
          j = j + 1
        end
      end
      fields[#fields + 1] = table.concat(buf)
      i = j + 1 -- past the comma
    else
      local j = line:find(",", i, true) or n + 1
      fields[#fields + 1] = line:sub(i, j - 1)
      i = j + 1
    end
  end
  return fields
end

-- Lines of a CSV text, keeping newlines inside quoted fields.
local function csv_lines(text)
  local lines, cur, quotes = {}, {}, 0
  for line in text:gmatch("([^\n]*)\n?") do
    cur[#cur + 1] = line
    local _, q = line:gsub('"', "")
    quotes = quotes + q
    if quotes % 2 == 0 then
      local whole = table.concat(cur, "\n")
      if whole ~= "" then lines[#lines + 1] = whole end
      cur, quotes = {}, 0
    end
  end
  return lines
end

--- store.read_csv(path) -> header (list), rows (list of tables; numeric text
-- becomes numbers, "nan"/"inf" included) or nil when the file is missing.
function store.read_csv(path)
  local text = store.read(path)
  if not text then return nil end
  local lines = csv_lines(text:gsub("\r", ""))
  if #lines == 0 then return {}, {} end
  local header = csv_split(lines[1])
  local rows = {}
  for i = 2, #lines do
    local fields, row = csv_split(lines[i]), {}
    for j, name in ipairs(header) do
      local s = fields[j]
      if s ~= nil and s ~= "" then
        local x = tonumber(s)
        if x == nil and (s == "nan" or s == "-nan") then x = 0 / 0 end
        if x == nil and s == "inf" then x = math.huge end
        if x == nil and s == "-inf" then x = -math.huge end
        row[name] = x == nil and s or x
      end
    end
    rows[#rows + 1] = row
  end
  return header, rows
end

function store.csv_text(header, rows)
  local names = {}
  for i, k in ipairs(header) do names[i] = csv_field(k) end
  local out = { table.concat(names, ",") }
  for _, row in ipairs(rows) do
    local f = {}
    for i, k in ipairs(header) do f[i] = csv_field(row[k]) end
    out[#out + 1] = table.concat(f, ",")
  end
  return table.concat(out, "\n") .. "\n"
end

---------------------------------------------------------------------------
-- Metrics (one row per dd.report)
---------------------------------------------------------------------------

function store.read_metrics(dir)
  local header, rows = store.read_csv(dir .. "/metrics.csv")
  return rows or {}, header or {}
end

-- Columns: `first` (the budget resource, or epoch), then the rest in the
-- order they first appeared.
function store.write_metrics(dir, rows, first)
  local header, seen = {}, {}
  local function add(k)
    if not seen[k] then
      seen[k] = true
      header[#header + 1] = k
    end
  end
  for _, row in ipairs(rows) do
    if row[first] ~= nil then add(first) end
  end
  for _, row in ipairs(rows) do
    local keys = {}
    for k in pairs(row) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do add(k) end
  end
  store.write(dir .. "/metrics.csv", store.csv_text(header, rows))
end

---------------------------------------------------------------------------
-- Results
---------------------------------------------------------------------------

local function is_nan(v) return v ~= v end

--- store.better(a, b, goal): whether value a ranks before value b. NaN and
-- nil rank after every number.
function store.better(a, b, goal)
  local bad_a, bad_b = type(a) ~= "number" or is_nan(a), type(b) ~= "number" or is_nan(b)
  if bad_a or bad_b then return not bad_a and bad_b end
  if goal == "max" then return a > b end
  return a < b
end

local STATUS_ORDER = { ok = 1, pruned = 2, failed = 3 }

--- store.rank(results, goal) -> results sorted best first: finished trials by
-- value, then pruned ones (furthest first, then by value), then failed ones;
-- ties by trial id. Each gets .rank.
function store.rank(results, goal)
  local list = {}
  for _, r in ipairs(results) do list[#list + 1] = r end
  table.sort(list, function(a, b)
    local sa, sb = STATUS_ORDER[a.status] or 4, STATUS_ORDER[b.status] or 4
    if sa ~= sb then return sa < sb end
    if a.status == "pruned" and (a.resource or 0) ~= (b.resource or 0) then return (a.resource or 0) > (b.resource or 0) end
    if store.better(a.value, b.value, goal) then return true end
    if store.better(b.value, a.value, goal) then return false end
    return a.id < b.id
  end)
  for i, r in ipairs(list) do r.rank = i end
  return list
end

--- store.results(out, trials) -> the result.json of each trial that has one
-- (with .options from the trial), and the list of trials without one.
function store.results(out, trials)
  local results, missing = {}, {}
  for _, t in ipairs(trials) do
    local r = store.read_json(store.trial_dir(out, t) .. "/result.json")
    if r then
      r.id, r.name, r.options = t.id, t.name, t.options
      results[#results + 1] = r
    else
      missing[#missing + 1] = t
    end
  end
  return results, missing
end

--- store.differing(trials, keys) -> the option keys whose values are not all equal
function store.differing(trials, keys)
  local out = {}
  for _, k in ipairs(keys) do
    local first, differs = nil, false
    for i, t in ipairs(trials) do
      local v = sweep.format_value(t.options[k])
      if i == 1 then first = v elseif v ~= first then differs = true end
    end
    if differs then out[#out + 1] = k end
  end
  return out
end

-- The line that says what went wrong: the runtime's "deepdance: <error>"
-- line when there is one, else the last line that is not a traceback.
local function short_error(text)
  if type(text) ~= "string" then return nil end
  local said = text:match("\ndeepdance: ([^\n]+)") or text:match("^deepdance: ([^\n]+)")
  if said then return said end
  local last
  for line in text:gmatch("[^\n]+") do
    if line:match("%S") and not line:match("^%s*%[C%]") and not line:match("^stack traceback") and not line:match("^%s+") then
      last = line
    end
  end
  return last
end
store.short_error = short_error

--- store.write_results(out, info, ranked): OUT/results.csv
function store.write_results(out, info, ranked)
  local header = { "rank", "trial", "status", info.metric }
  if info.budget then header[#header + 1] = info.budget.resource end
  for _, k in ipairs(info.option_keys) do header[#header + 1] = k end
  header[#header + 1] = "seconds"
  header[#header + 1] = "error"
  local rows = {}
  for _, r in ipairs(ranked) do
    local row = { rank = r.rank, trial = r.name, status = r.status, [info.metric] = r.value, seconds = r.seconds }
    if info.budget then row[info.budget.resource] = r.resource end
    for _, k in ipairs(info.option_keys) do row[k] = r.options[k] end
    row.error = r.status == "failed" and short_error(r.error) or nil
    rows[#rows + 1] = row
  end
  store.write(out .. "/results.csv", store.csv_text(header, rows))
end

local function show(v)
  if v == nil then return "-" end
  if math.type(v) == "float" then
    if v ~= v then return "nan" end
    return ("%.4g"):format(v)
  end
  return tostring(v)
end

--- store.leaderboard(info, ranked, differing [, top]) -> text: best first,
-- the metric, the status and the options that differ between trials.
function store.leaderboard(info, ranked, differing, top)
  top = top or 20
  local header = { "rank", "trial", info.metric, "status" }
  if info.budget then header[#header + 1] = info.budget.resource end
  for _, k in ipairs(differing) do header[#header + 1] = k end
  local rows = { header }
  for i, r in ipairs(ranked) do
    if i > top then break end
    local row = { tostring(r.rank), r.name, show(r.value), r.status }
    if info.budget then row[#row + 1] = show(r.resource) end
    for _, k in ipairs(differing) do row[#row + 1] = show(r.options[k]) end
    if r.status == "failed" then
      local e = short_error(r.error) or ("exit code " .. tostring(r.exit_code))
      if #e > 70 then e = e:sub(1, 67) .. "..." end
      row[#row + 1] = e
    end
    rows[#rows + 1] = row
  end
  local widths = {}
  for _, row in ipairs(rows) do
    for j, cell in ipairs(row) do
      if j <= #header then widths[j] = math.max(widths[j] or 0, #cell) end
    end
  end
  local lines = {}
  for _, row in ipairs(rows) do
    local cells = {}
    for j, cell in ipairs(row) do
      cells[j] = j <= #header and j < #row and cell .. (" "):rep(widths[j] - #cell) or cell
    end
    lines[#lines + 1] = table.concat(cells, "  ")
  end
  if #ranked > top then lines[#lines + 1] = ("... %d more in results.csv"):format(#ranked - top) end
  return table.concat(lines, "\n")
end

return store

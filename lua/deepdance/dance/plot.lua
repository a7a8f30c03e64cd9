-- deepdance.dance.plot: training curves and line charts as PNG files, drawn by
-- gnuplot (Debian package gnuplot-nox).
--
--   dd.dance.plot_curves(history, "runs/r/ae/curves.png", {title = "autoencoder"})
--   dd.dance.plot_lines({{name = "motion", y = {...}}}, "motion.png", {xlabel = "step"})
--
-- plot_curves draws one panel per metric (default: loss, then the accuracy
-- dd.fit logged), each with the training series and the validation series
-- ("val_" prefix) against the epoch, axes with ticks and labels, and a legend.
-- The chart is rendered with the pngcairo terminal when this gnuplot has it
-- (antialiased), else the libgd png terminal. gnuplot writes a temporary file
-- next to the target, which is renamed over it only when complete, so a
-- failed plot never leaves a torn or half-written PNG.
local dd, dance = ...
local util = assert(loadfile(dd.home .. "/lua/deepdance/dance/util.lua"))(dd)

local describe = util.describe

---------------------------------------------------------------------------
-- gnuplot
---------------------------------------------------------------------------

-- Which terminal each gnuplot program has, asked once per program.
local terminals = {}

local function shell_ok(cmd)
  local ok, how, code = os.execute(cmd)
  return ok == true or (how == "exit" and code == 0)
end

local function gnuplot_terminal(fn, program)
  if terminals[program] then return terminals[program] end
  if not shell_ok(("command -v %s >/dev/null 2>&1"):format(util.quote(program))) then
    error(("%s: gnuplot is not installed ('%s' not found); on Debian: apt-get install gnuplot-nox"):format(fn, program), 0)
  end
  local term = shell_ok(("%s -e 'set terminal pngcairo' >/dev/null 2>&1"):format(util.quote(program))) and "pngcairo" or "png"
  terminals[program] = term
  return term
end

-- A string as a gnuplot single-quoted literal ('' stands for ').
local function gq(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

-- A number as gnuplot data: NaN and infinities are written as NaN, which
-- gnuplot leaves out of the line.
local function datum(v)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then return "NaN" end
  return ("%.10g"):format(v)
end

local function temp_path(path)
  return ("%s.tmp-%d-%06d.png"):format(path, math.floor(dd.clock() * 1000) % 1000000000, math.random(0, 999999))
end

-- Runs the script through gnuplot into a temporary file, then renames it over path.
local function render(fn, program, script_body, path, width, height)
  local term = gnuplot_terminal(fn, program)
  local dir = util.dirname(path)
  if dir and dir ~= "" then util.mkdir(fn, dir) end
  local tmp_png = temp_path(path)
  local header
  if term == "pngcairo" then
    header = ("set terminal pngcairo size %d,%d noenhanced font 'Sans,10' background rgb 'white'\n"):format(width, height)
  else
    header = ("set terminal png size %d,%d noenhanced background rgb 'white'\n"):format(width, height)
  end
  local script = header .. ("set output %s\n"):format(gq(tmp_png)) .. script_body .. "unset output\n"
  local script_path, log_path = os.tmpname(), os.tmpname()
  local f = assert(io.open(script_path, "wb"))
  f:write(script)
  f:close()
  local ok = shell_ok(("%s %s >%s 2>&1"):format(util.quote(program), util.quote(script_path), util.quote(log_path)))
  local log = util.read_file(log_path) or ""
  os.remove(script_path)
  os.remove(log_path)
  local size = util.file_size(tmp_png)
  if not ok or not size or size == 0 then
    os.remove(tmp_png)
    error(("%s: gnuplot failed to draw %s: %s"):format(fn, path, log ~= "" and log:gsub("%s+$", "") or "no output"), 0)
  end
  local renamed, err = os.rename(tmp_png, path)
  if not renamed then
    os.remove(tmp_png)
    error(("%s: cannot rename %s to %s: %s"):format(fn, tmp_png, path, tostring(err)), 0)
  end
  return path
end

-- A gnuplot datablock: rows of numbers, one column per series.
local function datablock(name, columns, rows)
  local lines = { ("$%s << EOD"):format(name) }
  for i = 1, rows do
    local cells = {}
    for c, col in ipairs(columns) do cells[c] = datum(col[i]) end
    lines[#lines + 1] = table.concat(cells, " ")
  end
  lines[#lines + 1] = "EOD"
  return table.concat(lines, "\n") .. "\n"
end

local function all_positive(...)
  for _, list in ipairs({ ... }) do
    for _, v in ipairs(list) do
      if type(v) == "number" and v == v and v <= 0 then return false end
    end
  end
  return true
end

local function is_number_list(v)
  if type(v) ~= "table" then return false end
  for k, x in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > #v or type(x) ~= "number" then return false end
  end
  return true
end

local function size_options(fn, o)
  return util.check(fn, "width", o.width, "integer", 960), util.check(fn, "height", o.height, "integer", 720)
end

---------------------------------------------------------------------------
-- plot_curves
---------------------------------------------------------------------------

-- 'acc' is Keras's name; dd.fit logs it under the name it was asked for.
local ALIASES = { acc = { "acc", "accuracy", "binary_accuracy", "categorical_accuracy" } }

local function history_keys(history)
  local keys = {}
  for k, v in pairs(history) do
    if type(k) == "string" and k ~= "epoch" and k ~= "rows" and type(v) == "table" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return table.concat(keys, ", ")
end

-- The history's name for a requested metric (the first alias it has).
local function resolve_metric(fn, history, name)
  for _, candidate in ipairs(ALIASES[name] or { name }) do
    if history[candidate] ~= nil or history["val_" .. candidate] ~= nil then return candidate end
  end
  error(("%s: the history has no '%s' series (it has: %s)"):format(fn, name, history_keys(history)), 0)
end

local function check_series(fn, history, key, n)
  local s = history[key]
  if s == nil then return nil end
  if not is_number_list(s) then error(("%s: history.%s must be a list of numbers, got %s"):format(fn, key, describe(s)), 0) end
  if #s ~= n then
    error(("%s: history.%s has %d values but history.epoch has %d"):format(fn, key, #s, n), 0)
  end
  return s
end

--- plot_curves(history, path [, {title=, metrics={'loss', 'acc'}, width=960, height=720, gnuplot='gnuplot'}]) -> path
-- history: what dd.fit returns (or history.json read back): epoch = {...} and
-- one list per logged key. One panel per metric, stacked; the loss panel (any
-- panel whose values are all positive and span more than a factor of 20) uses
-- a logarithmic y axis.
function dance.plot_curves(history, path, opts)
  local fn = "plot_curves"
  local ok, err = pcall(function()
    local o = util.options(fn, opts, { "title", "metrics", "width", "height", "gnuplot" })
    if type(history) ~= "table" then error(("%s: history must be the table dd.fit returns, got %s"):format(fn, describe(history)), 0) end
    if type(path) ~= "string" or path == "" then error(("%s: path must be a file name, got %s"):format(fn, describe(path)), 0) end
    local title = o.title ~= nil and util.check(fn, "title", o.title, "string") or nil
    local width, height = size_options(fn, o)
    local program = util.check(fn, "gnuplot", o.gnuplot, "string", "gnuplot")
    local metrics = o.metrics or { "loss", "acc" }
    if type(metrics) ~= "table" or #metrics == 0 or #metrics > 4 then
      error(("%s: option 'metrics' must be a list of 1 to 4 names, got %s"):format(fn, describe(metrics)), 0)
    end

    local epochs = history.epoch
    if epochs == nil then
      error(("%s: history has no 'epoch' list (it has: %s); pass what dd.fit returns"):format(fn, history_keys(history)), 0)
    end
    if not is_number_list(epochs) then error(("%s: history.epoch must be a list of numbers, got %s"):format(fn, describe(epochs)), 0) end
    local n = #epochs
    if n == 0 then error(fn .. ": the history is empty (no epochs to plot)", 0) end

    local columns, panels = { epochs }, {}
    for i, requested in ipairs(metrics) do
      if type(requested) ~= "string" then error(("%s: metrics[%d] must be a name, got %s"):format(fn, i, describe(requested)), 0) end
      local key = resolve_metric(fn, history, requested)
      local train, val = check_series(fn, history, key, n), check_series(fn, history, "val_" .. key, n)
      local panel = { name = key }
      if train then columns[#columns + 1] = train; panel.train = #columns end
      if val then columns[#columns + 1] = val; panel.val = #columns end
      panel.train_values, panel.val_values = train or {}, val or {}
      panels[#panels + 1] = panel
    end

    local lo, hi = math.huge, -math.huge
    for _, e in ipairs(epochs) do lo, hi = math.min(lo, e), math.max(hi, e) end
    local lines = { datablock("curves", columns, n) }
    -- a fixed left margin keeps the panels' x axes aligned whatever their tick labels
    lines[#lines + 1] = "set grid lc rgb '#dddddd'\nset key outside right top box\nset lmargin 12\n"
    lines[#lines + 1] = "set style line 1 lc rgb '#1f77b4' lw 2 pt 7 ps 0.5\nset style line 2 lc rgb '#d62728' lw 2 pt 5 ps 0.5\n"
    if lo == hi then
      lines[#lines + 1] = ("set xrange [%s:%s]\n"):format(datum(lo - 1), datum(hi + 1))
    else
      lines[#lines + 1] = ("set xrange [%s:%s]\n"):format(datum(lo), datum(hi))
    end
    if hi - lo <= 15 then lines[#lines + 1] = "set xtics 1\n" end
    lines[#lines + 1] = ("set multiplot layout %d,1%s\n"):format(#panels, title and (" title %s font ',12'"):format(gq(title)) or "")
    for _, p in ipairs(panels) do
      local lmin, lmax = math.huge, -math.huge
      for _, list in ipairs({ p.train_values, p.val_values }) do
        for _, v in ipairs(list) do
          if v == v and v < math.huge and v > -math.huge then lmin, lmax = math.min(lmin, v), math.max(lmax, v) end
        end
      end
      local log = lmin > 0 and lmax / lmin > 20 and all_positive(p.train_values, p.val_values)
      -- a margin for the data on linear axes; log axes already round out to decades
      lines[#lines + 1] = log and "set logscale y\nset offsets 0, 0, 0, 0\n"
        or "unset logscale y\nset offsets 0, 0, graph 0.05, graph 0.05\n"
      lines[#lines + 1] = ("set title %s\nset xlabel 'epoch'\nset ylabel %s\n"):format(gq(p.name), gq(p.name))
      local plots = {}
      if p.train then plots[#plots + 1] = ("$curves using 1:%d with linespoints ls 1 title 'train'"):format(p.train) end
      if p.val then plots[#plots + 1] = ("$curves using 1:%d with linespoints ls 2 title 'validation'"):format(p.val) end
      lines[#lines + 1] = "plot " .. table.concat(plots, ", ") .. "\n"
    end
    lines[#lines + 1] = "unset multiplot\n"
    render(fn, program, table.concat(lines), path, width, height)
  end)
  if not ok then error(err, 2) end
  return path
end

---------------------------------------------------------------------------
-- plot_lines
---------------------------------------------------------------------------

local function to_list(v)
  if util.is_tensor(v) then return v:contiguous():view(-1):totable() end
  return v
end

--- plot_lines(series, path [, {title=, xlabel=, ylabel=, logy=false, width=960, height=540, gnuplot='gnuplot'}]) -> path
-- series: a list of {name=, y={...} or a 1-d Tensor, x={...} (default 1..#y)}.
function dance.plot_lines(series, path, opts)
  local fn = "plot_lines"
  local ok, err = pcall(function()
    local o = util.options(fn, opts, { "title", "xlabel", "ylabel", "logy", "width", "height", "gnuplot" })
    if type(series) ~= "table" or #series == 0 then
      error(("%s: series must be a non-empty list of {name=, y=, x=}, got %s"):format(fn, describe(series)), 0)
    end
    if type(path) ~= "string" or path == "" then error(("%s: path must be a file name, got %s"):format(fn, describe(path)), 0) end
    local width = util.check(fn, "width", o.width, "integer", 960)
    local height = util.check(fn, "height", o.height, "integer", 540)
    local program = util.check(fn, "gnuplot", o.gnuplot, "string", "gnuplot")
    local logy = util.check(fn, "logy", o.logy, "boolean", false)
    for _, k in ipairs({ "title", "xlabel", "ylabel" }) do
      if o[k] ~= nil then util.check(fn, k, o[k], "string") end
    end

    local blocks, plots = {}, {}
    for i, s in ipairs(series) do
      if type(s) ~= "table" then error(("%s: series[%d] must be a table {name=, y=, x=}, got %s"):format(fn, i, describe(s)), 0) end
      util.options(("%s: series[%d]"):format(fn, i), s, { "name", "x", "y" })
      local y, x = to_list(s.y), to_list(s.x)
      if not is_number_list(y) or #y == 0 then
        error(("%s: series[%d].y must be a non-empty list of numbers or a Tensor, got %s"):format(fn, i, describe(s.y)), 0)
      end
      if x == nil then
        x = {}
        for j = 1, #y do x[j] = j end
      elseif not is_number_list(x) or #x ~= #y then
        error(("%s: series[%d].x must be a list of %d numbers like y, got %s"):format(fn, i, #y, describe(s.x)), 0)
      end
      if logy and not all_positive(y) then
        error(("%s: logy needs positive values; series[%d] has a value <= 0"):format(fn, i), 0)
      end
      local name = s.name ~= nil and tostring(s.name) or ("series " .. i)
      blocks[#blocks + 1] = datablock("s" .. i, { x, y }, #y)
      plots[#plots + 1] = ("$s%d using 1:2 with lines lw 2 title %s"):format(i, gq(name))
    end
    local lines = blocks
    lines[#lines + 1] = "set grid lc rgb '#dddddd'\nset key outside right top box\nset offsets 0, 0, graph 0.05, graph 0.05\n"
    if logy then lines[#lines + 1] = "set logscale y\n" end
    if o.title then lines[#lines + 1] = ("set title %s\n"):format(gq(o.title)) end
    if o.xlabel then lines[#lines + 1] = ("set xlabel %s\n"):format(gq(o.xlabel)) end
    if o.ylabel then lines[#lines + 1] = ("set ylabel %s\n"):format(gq(o.ylabel)) end
    lines[#lines + 1] = "plot " .. table.concat(plots, ", ") .. "\n"
    render(fn, program, table.concat(lines), path, width, height)
  end)
  if not ok then error(err, 2) end
  return path
end

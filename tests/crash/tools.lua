-- tests/crash/tools.lua: helpers of the crash-safety tests (tests/crash_*.sh).
--   tools.lua frames PATH       a small frame cache: 48 silhouettes of 48x64 (discs that move)
--   tools.lua compare A B       compares two autoencoder run folders: history.json and
--                               history.csv without the time column, and every tensor of
--                               last.safetensors and best.safetensors, exactly (bit for bit);
--                               prints "same" or what differs, and exits 1 when something does
local mode = arg[1]

if mode == "frames" then
  dd.manual_seed(11)
  local fw = dd.data.frame_writer{ channels = 1, height = 48, width = 64 }
  for i = 1, 48 do
    local canvas = dd.ones(3, 48, 64)
    dd.draw.circle(canvas, 16 + (i % 12) * 3, 24, 8 + (i % 3) * 2, { 0, 0, 0 })
    dd.draw.circle(canvas, 50 - (i % 7) * 3, 10 + (i % 9) * 3, 5, { 0, 0, 0 })
    fw:add(canvas:narrow(1, 1, 1))
  end
  fw:save(arg[2])
  return
end

assert(mode == "compare", "usage: tools.lua frames PATH | compare A B")
local a, b = arg[2], arg[3]
local differences = {}
local function differ(what) differences[#differences + 1] = what end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- history.json: every column but time, and every row without its time
local ha, hb = dd.json.decode(assert(slurp(a .. "/history.json"))), dd.json.decode(assert(slurp(b .. "/history.json")))
for _, h in ipairs({ ha, hb }) do
  h.time = nil
  for _, row in ipairs(h.rows or {}) do row.time = nil end
end
-- keys sorted, numbers in full: equal text means equal histories
local function canonical(v)
  if type(v) == "number" then return math.type(v) == "integer" and tostring(v) or ("%.17g"):format(v) end
  if type(v) ~= "table" then return ("%q"):format(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. canonical(v[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end
local ja, jb = canonical(ha), canonical(hb)
if ja ~= jb then differ(("history.json: %s\n  vs %s"):format(ja, jb)) end

-- history.csv without its last column (time)
local function csv_without_time(path)
  local lines = {}
  for line in assert(slurp(path)):gmatch("[^\n]+") do lines[#lines + 1] = line:gsub(",[^,]*$", "") end
  return table.concat(lines, "\n")
end
local ca, cb = csv_without_time(a .. "/history.csv"), csv_without_time(b .. "/history.csv")
if ca ~= cb then differ(("history.csv:\n%s\n  vs\n%s"):format(ca, cb)) end

for _, file in ipairs({ "last.safetensors", "best.safetensors" }) do
  local ta, tb = dd.load(a .. "/" .. file), dd.load(b .. "/" .. file)
  for name, t in pairs(ta) do
    local u = tb[name]
    if not u then
      differ(("%s: %s only in %s"):format(file, name, a))
    elseif table.concat(t:shape(), ",") ~= table.concat(u:shape(), ",") or (t - u):abs():max() ~= 0 then
      differ(("%s: tensor %s differs"):format(file, name))
    end
  end
  for name in pairs(tb) do if not ta[name] then differ(("%s: %s only in %s"):format(file, name, b)) end end
end

if #differences == 0 then
  print("same")
else
  print(table.concat(differences, "\n"))
  os.exit(1)
end

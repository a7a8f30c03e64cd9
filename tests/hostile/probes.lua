-- tests/hostile/probes.lua: the child side of the hostile-script test (tests/hostile.sh
-- runs tests/hostile/run.lua, which drives this file in child processes).
--
-- Calls every function and method exported to Lua with hostile arguments: no
-- arguments, nil, wrong types, other userdata types, negative, zero and
-- enormous integers, NaN and infinities, strings that are not paths, tables
-- that lie about their length, objects after close() or after their __gc ran,
-- and mutations of valid calls (templates.lua) one argument or option at a
-- time. Each call must return or raise a Lua error with a string message; a
-- crash kills this process, and the parent reports the probe it was running.
--
--   probes.lua setup            writes the files fixtures read (run in an empty folder)
--   probes.lua list             prints "target <first> <count> <name>" per target, then "total <n>"
--   probes.lua run <first>      runs probes from <first>, reporting on file descriptor 3:
--                               "P <i>" before probe i, "G <t>" before target t's garbage
--                               collection, "T <t> <calls> <returned> <raised> <bad> <ms> <named>"
--                               after it (named: messages that name the function called),
--                               "B <t> <i> <text>" for a bad result, "S <i> <ms>" for a slow
--                               probe, "DONE" at the end
--   probes.lua describe <i>     prints what probe i calls
-- Probes are data (target, pattern, position, value label), realised against
-- fixtures rebuilt for every target, so a restarted child runs the same calls.
local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local templates = assert(loadfile(HERE .. "/templates.lua"))()

---------------------------------------------------------------------------
-- Fixtures: one object of every type, rebuilt for each target
---------------------------------------------------------------------------

local sink = { write = function() end, flush = function() end }

-- Every userdata type, made then destroyed by its own __gc (as a hostile
-- script can call it through getmetatable): methods on it must still raise.
local function collected(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__gc) == "function" then mt.__gc(v) end
  return v
end

-- Opening videos costs milliseconds: the closed and freed ones are made once
-- per process (nothing changes them), the open one is rewound when it can be.
local media = {}

local function fixtures()
  local F = {}
  dd.manual_seed(7)
  F.T0 = dd.tensor(2.5)
  F.Tempty = dd.zeros(0)
  F.Tempty2 = dd.zeros(0, 3)
  F.T1 = dd.randn(4)
  F.T23 = dd.randn(2, 3)
  F.T32 = dd.randn(3, 2)
  F.T4d = dd.rand(2, 1, 8, 8)
  F.Timg = dd.rand(3, 8, 8)
  F.Tseq = dd.randn(2, 5, 3)
  F.Tview = dd.randn(3, 4):transpose(1, 2)
  F.Texp = dd.randn(1, 3):expand(4, 3)
  F.Tnan = dd.full({ 2, 3 }, 0 / 0)
  F.Tgc = collected(dd.randn(2, 3))

  local nn = dd.nn
  F.linear = nn.Linear{3, 4}
  F.relu = nn.ReLU()
  F.sigmoid = nn.Sigmoid()
  F.tanh = nn.Tanh()
  F.hardsigmoid = nn.HardSigmoid()
  F.dropout = nn.Dropout{0.5}
  F.flatten = nn.Flatten()
  F.reshape = nn.Reshape{2, 2}
  F.conv = nn.Conv2d{1, 2, kernel_size = 3}
  F.deconv = nn.ConvTranspose2d{2, 1, kernel_size = 3, stride = 2, padding = "same"}
  F.maxpool = nn.MaxPool2d{2}
  F.batchnorm = nn.BatchNorm2d{1, activation = "relu"}
  F.batchnorm1d = nn.BatchNorm1d{3}
  F.upsample = nn.Upsample{2}
  F.lstm = nn.LSTM{3, 4}
  F.mdn = nn.MDN{4, 3, 2}
  F.layer_gc = collected(nn.Linear{3, 4})
  F.seq = nn.Sequential{ nn.Linear{3, 4}, nn.ReLU(), nn.Linear{4, 2} }

  F.mse = nn.MSELoss()
  F.bce = nn.BCELoss()
  F.mdnloss = nn.MDNLoss{ mixtures = 2 }
  F.sgd = dd.optim.SGD{ F.linear:parameters(), lr = 0.1 }
  F.adam = dd.optim.Adam{ F.seq:parameters() }
  F.rmsprop = dd.optim.RMSprop{ F.conv:parameters() }
  F.optim_gc = collected(dd.optim.SGD{ nn.Linear{2, 2}:parameters(), lr = 0.1 })

  if not (media.vid and pcall(media.vid.seek, media.vid, 0)) then media.vid = dd.video.open("clip.mp4") end
  F.vid = media.vid
  if not media.vid_closed then
    media.vid_closed = dd.video.open("clip.mp4")
    media.vid_closed:close()
    media.vid_gc = collected(dd.video.open("clip.mp4"))
    media.writer_closed = dd.video.writer("closed.mp4", { fps = 5 })
    media.writer_closed:write(F.Timg)
    media.writer_closed:close()
    media.writer_gc = collected(dd.video.writer("gc.mp4", { fps = 5 }))
  end
  F.vid_closed, F.vid_gc, F.writer_closed, F.writer_gc = media.vid_closed, media.vid_gc, media.writer_closed, media.writer_gc
  F.writer = dd.video.writer("out.mp4", { fps = 5 })
  F.gif_writer = dd.video.writer("out.gif", { fps = 5 })
  F.fs = dd.data.frames("frames.safetensors")
  F.fs_gc = collected(dd.data.frames("frames.safetensors"))
  F.fw = dd.data.frame_writer{ channels = 1, height = 8, width = 8 }
  F.fw_gc = collected(dd.data.frame_writer{ channels = 1, height = 8, width = 8 })
  F.masks = dd.masks.pack(F.T4d)

  F.progress = dd.progress.new{ mode = "lines", output = sink }
  F.plateau = dd.callbacks.ReduceLROnPlateau{ monitor = "loss" }
  F.early = dd.callbacks.EarlyStopping{ monitor = "loss" }
  F.modelcheckpoint = dd.callbacks.ModelCheckpoint{ "mc", monitor = "loss" }
  F.csvlogger = dd.callbacks.CSVLogger{ "log.csv" }
  F.json_object = dd.json.decode("{}")
  F.file = io.tmpfile()
  return F
end

---------------------------------------------------------------------------
-- Hostile values, by label (order matters: probes refer to them by index)
---------------------------------------------------------------------------

local evil_mt = {
  __index = function(_, k) error("evil __index(" .. tostring(k) .. ")") end,
  __len = function() return 1 << 62 end,
  __newindex = function() error("evil __newindex") end,
}

local function deep(n)
  local t = {}
  for _ = 1, n do t = { t } end
  return t
end

local VALUES = {
  { "nil", function() return nil end },
  { "'x'", function() return "x" end },
  { "''", function() return "" end },
  { "'.'", function() return "." end },
  { "'no/such/dir/f.safetensors'", function() return "no/such/dir/f.safetensors" end },
  { "'f.png'", function() return "f.png" end },
  { "'a\\0b'", function() return "a\0b" end },
  { "long string", function() return string.rep("a", 5000) end },
  { "{}", function() return {} end },
  { "{1,2,3}", function() return { 1, 2, 3 } end },
  { "{-1,-1}", function() return { -1, -1 } end },
  { "{2^62,2^62}", function() return { 1 << 62, 1 << 62 } end },
  { "{nan}", function() return { 0 / 0 } end },
  { "{{1,2},{3}}", function() return { { 1, 2 }, { 3 } } end },
  { "{'x',true}", function() return { "x", true } end },
  { "{x=1}", function() return { x = 1 } end },
  { "deep table", function() return deep(200) end },
  { "evil table", function() return setmetatable({}, evil_mt) end },
  { "true", function() return true end },
  { "false", function() return false end },
  { "function", function() return function() end end },
  { "raising function", function() return function() error("raised by a hostile callback") end end },
  { "coroutine", function() return coroutine.create(function() end) end },
  { "0", function() return 0 end },
  { "1", function() return 1 end },
  { "-1", function() return -1 end },
  -- (HOSTILE_NO_HUGE=1: a run without the address-space limit, e.g. under ASan)
  { "2^31", function() return os.getenv("HOSTILE_NO_HUGE") and (1 << 40) + 1 or 1 << 31 end },
  { "2^62", function() return 1 << 62 end },
  { "mininteger", function() return math.mininteger end },
  { "maxinteger", function() return math.maxinteger end },
  { "0.5", function() return 0.5 end },
  { "-0.5", function() return -0.5 end },
  { "2.0^62", function() return 2.0 ^ 62 end },
  { "1e300", function() return 1e300 end },
  { "-0.0", function() return -0.0 end },
  { "nan", function() return 0 / 0 end },
  { "inf", function() return math.huge end },
  { "-inf", function() return -math.huge end },
  { "T0", function(F) return F.T0 end },
  { "Tempty", function(F) return F.Tempty end },
  { "Tempty(0,3)", function(F) return F.Tempty2 end },
  { "T(4)", function(F) return F.T1 end },
  { "T(2,3)", function(F) return F.T23 end },
  { "T(2,1,8,8)", function(F) return F.T4d end },
  { "T(3,8,8)", function(F) return F.Timg end },
  { "T(2,5,3)", function(F) return F.Tseq end },
  { "transposed T", function(F) return F.Tview end },
  { "expanded T", function(F) return F.Texp end },
  { "NaN T", function(F) return F.Tnan end },
  { "freed T", function(F) return F.Tgc end },
  { "Linear", function(F) return F.linear end },
  { "LSTM", function(F) return F.lstm end },
  { "freed Linear", function(F) return F.layer_gc end },
  { "Sequential", function(F) return F.seq end },
  { "MSELoss", function(F) return F.mse end },
  { "Adam", function(F) return F.adam end },
  { "freed SGD", function(F) return F.optim_gc end },
  { "Video", function(F) return F.vid end },
  { "closed Video", function(F) return F.vid_closed end },
  { "freed Video", function(F) return F.vid_gc end },
  { "VideoWriter", function(F) return F.writer end },
  { "closed VideoWriter", function(F) return F.writer_closed end },
  { "freed VideoWriter", function(F) return F.writer_gc end },
  { "FrameSet", function(F) return F.fs end },
  { "freed FrameSet", function(F) return F.fs_gc end },
  { "FrameWriter", function(F) return F.fw end },
  { "freed FrameWriter", function(F) return F.fw_gc end },
  { "MaskSet", function(F) return F.masks end },
  { "file", function(F) return F.file end },
}
local NVALUES = #VALUES

---------------------------------------------------------------------------
-- Targets: every function reachable from dd, every method of every object
---------------------------------------------------------------------------

-- Method names the C bindings register ({"name", fn} in luaL_Reg tables):
-- userdata whose __index is a function can only be asked name by name.
local function c_method_names()
  local names, seen = {}, {}
  local p = io.popen("ls " .. HERE .. "/../../src/bind_*.c")
  for path in p:lines() do
    local f = assert(io.open(path))
    for name in f:read("a"):gmatch('{%s*"([%a_][%w_]*)"%s*,%s*[%a_][%w_]*%s*}') do
      if not seen[name] then seen[name], names[#names + 1] = true, name end
    end
    f:close()
  end
  p:close()
  table.sort(names)
  return names
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do if type(k) == "string" then keys[#keys + 1] = k end end
  table.sort(keys)
  return keys
end

-- The objects whose methods are targets, by fixture name. Tensor methods are
-- also dd.Tensor.<name>, swept with every self; here they run on the odd
-- shapes (0-d, empty, expanded).
local OBJECTS = { "T0", "Tempty", "Texp", "linear", "relu", "sigmoid", "tanh", "hardsigmoid", "dropout",
  "flatten", "reshape", "conv", "deconv", "maxpool", "batchnorm", "batchnorm1d", "upsample", "lstm", "mdn", "seq", "mse",
  "bce", "mdnloss", "sgd",
  "adam", "rmsprop", "vid", "vid_closed", "writer", "gif_writer", "writer_closed", "fs", "fw", "masks", "progress",
  "plateau", "early", "modelcheckpoint", "csvlogger" }

-- Functions not called with hostile arguments, and why. They get hand-written
-- hostile calls in tests/lua/hostile_spec.lua instead.
local EXCLUDED = {
  ["dd.process.kill"] = "signals any pid it is given (1 is init, 2 some other process)",
  ["dd.process.spawn"] = "runs the program it is given",
  ["dd.process.sleep"] = "blocks for as long as it is asked (2^62 s)",
}

-- Methods whose work depends on the object's kind (a layer's forward, ...).
local KIND_SPECIFIC = { forward = true, backward = true, output_shape = true, load_state_dict = true, step = true,
  write = true, close = true, sample = true, mean = true, set_state = true }

-- targets[i] = {name=, get=function(F) -> fn, self} (self nil for plain functions)
local function build_targets(F)
  local targets, seen_fn, aliases = {}, {}, {}
  local function add(name, get)
    local fn = get(F)
    targets[#targets + 1] = { name = name, get = get, skip = EXCLUDED[name], lua = debug.getinfo(fn, "S").what == "Lua" }
  end

  -- 1. every function in the dd tree (each function once, under its first path)
  local visited = {}
  local function walk(t, path)
    if visited[t] then return end
    visited[t] = true
    for _, k in ipairs(sorted_keys(t)) do
      local v = rawget(t, k)
      local name = path .. "." .. k
      if type(v) == "function" and seen_fn[v] then
        aliases[name] = seen_fn[v]
      elseif type(v) == "function" then
        seen_fn[v] = #targets + 1
        local segs = {}
        for s in name:gmatch("[^.]+") do segs[#segs + 1] = s end
        add(name, function()
          local x = _G
          for _, s in ipairs(segs) do x = rawget(x, s) end
          return x
        end)
      elseif type(v) == "table" then
        walk(v, name)
      end
    end
  end
  walk(dd, "dd")

  -- 2. metamethods of every userdata type in the registry
  local reg = debug.getregistry()
  for _, mtname in ipairs(sorted_keys(reg)) do
    local mt = reg[mtname]
    if mtname:match("^dd%.") and type(mt) == "table" then
      for _, k in ipairs(sorted_keys(mt)) do
        local v = rawget(mt, k)
        if type(v) == "function" and not seen_fn[v] then
          seen_fn[v] = #targets + 1
          add(mtname .. "." .. k, function() return rawget(debug.getregistry()[mtname], k) end)
        end
      end
    end
  end

  -- 3. methods of each object, called on that object
  local candidates = c_method_names()
  for _, oname in ipairs(OBJECTS) do
    local obj = F[oname]
    local names, seen = {}, {}
    local function consider(k)
      if type(k) ~= "string" or seen[k] then return end
      local ok, v = pcall(function() return obj[k] end)
      if ok and type(v) == "function" then seen[k], names[#names + 1] = true, k end
    end
    for _, k in ipairs(candidates) do consider(k) end
    local t = obj
    for _ = 1, 4 do -- Lua objects: own fields and the __index chain
      if type(t) == "table" then for _, k in ipairs(sorted_keys(t)) do consider(k) end end
      local mt = getmetatable(t)
      t = mt and mt.__index
      if type(t) ~= "table" then break end
    end
    table.sort(names)
    for _, k in ipairs(names) do
      add(oname .. ":" .. k, function(G) return G[oname][k], G[oname] end)
      local t, fn = targets[#targets], obj[k]
      t.method = true
      -- the same C function on another object of a kind: the first gets every
      -- pattern, the others (but for what depends on the kind) a few
      t.light = seen_fn[fn] ~= nil and not KIND_SPECIFIC[k]
      seen_fn[fn] = seen_fn[fn] or #targets
    end
  end
  return targets, aliases
end

---------------------------------------------------------------------------
-- Probes
---------------------------------------------------------------------------
-- Generic patterns (fn with self: self is prepended), each over every value v:
local PATTERNS = {
  { "f(v)", function(v) return { v, n = 1 } end },
  { "f(v, v)", function(v) return { v, v, n = 2 } end },
  { "f(T(2,3), v)", function(v, F) return { F.T23, v, n = 2 } end },
  { "f(v, T(2,3))", function(v, F) return { v, F.T23, n = 2 } end },
  { "f(1, v)", function(v) return { 1, v, n = 2 } end },
  { "f(v, 1)", function(v) return { v, 1, n = 2 } end },
  { "f('x', v)", function(v) return { "x", v, n = 2 } end },
  { "f(T(2,3), T(2,3), v)", function(v, F) return { F.T23, F.T23, v, n = 3 } end },
  { "f(2, 3, v)", function(v) return { 2, 3, v, n = 3 } end },
}

local LUA_PATTERNS = 3 -- how many of them functions written in Lua (and repeats) get

-- Methods are also called without their object: f(v) and f(v, T(2,3)).
local SELFLESS = {
  { "self = v", function(v) return { v, n = 1 } end },
  { "self = v, T(2,3)", function(v, F) return { v, F.T23, n = 2 } end },
}

-- A probe: {t = target index, pat = pattern index | 0 for f(), v = value index}
-- or {t =, tpl = template index, at = mutation (see template_mutations), v =}.
local function sorted_option_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  return keys
end

-- The mutations of a template's argument list: {pos} replaces argument pos,
-- {pos, key} replaces a field of a table argument, {"extra"} appends one.
local function template_mutations(args)
  local out = {}
  for pos = 1, args.n do
    out[#out + 1] = { pos }
    local a = args[pos]
    if type(a) == "table" and getmetatable(a) == nil then
      for _, k in ipairs(sorted_option_keys(a)) do out[#out + 1] = { pos, k } end
      out[#out + 1] = { pos, "bogus_option" }
    end
  end
  out[#out + 1] = { "extra" }
  return out
end

-- Which templates belong to which target (templates may name an alias).
local function templates_by_target(targets, aliases)
  local by_name = {}
  for name, i in pairs(aliases) do by_name[name] = i end
  for i, t in ipairs(targets) do by_name[t.name] = i end
  local tpl_of = {}
  for ti, tpl in ipairs(templates) do
    local t = by_name[tpl[1]]
    if not t then error("templates.lua: no target named " .. tpl[1]) end
    tpl_of[t] = tpl_of[t] or {}
    table.insert(tpl_of[t], ti)
  end
  return tpl_of
end

-- The probes of target t, in order. Made one target at a time: hundreds of
-- thousands of them alive at once would make every garbage collection slow.
local function target_probes(F, targets, tpl_of, t)
  local probes = {}
  if targets[t].skip then return probes end
  -- templates first: the generic probes may leave the fixtures closed or failed
  for _, ti in ipairs(tpl_of[t] or {}) do
    local args = templates[ti][2](F)
    probes[#probes + 1] = { t = t, tpl = ti } -- the valid call itself
    for _, at in ipairs(template_mutations(args)) do
      for v = 1, NVALUES do probes[#probes + 1] = { t = t, tpl = ti, at = at, v = v } end
    end
  end
  probes[#probes + 1] = { t = t, pat = 0 }
  -- Lua functions reach C only through the functions swept here: fewer patterns
  for pat = 1, (targets[t].lua or targets[t].light) and LUA_PATTERNS or #PATTERNS do
    for v = 1, NVALUES do probes[#probes + 1] = { t = t, pat = pat, v = v } end
  end
  if targets[t].method then -- a method called on something else
    for pat = 1, #SELFLESS do
      for v = 1, NVALUES do probes[#probes + 1] = { t = t, pat = -pat, v = v } end
    end
  end
  return probes
end

-- ranges[t] = {first probe number, count}
local function probe_ranges(F, targets, tpl_of)
  local ranges, next_first = {}, 1
  for t = 1, #targets do
    local n = #target_probes(F, targets, tpl_of, t)
    ranges[t] = { next_first, n }
    next_first = next_first + n
  end
  return ranges, next_first - 1
end

-- Realises a probe against fixtures F: fn, args (args.n set).
local function realise(p, F, targets)
  local fn, self = targets[p.t].get(F)
  local args
  local v = p.v and VALUES[p.v][2](F)
  if p.tpl then
    args = templates[p.tpl][2](F)
    local at = p.at
    if at and at[1] == "extra" then
      args.n = args.n + 1
      args[args.n] = v
    elseif at and at[2] ~= nil then
      args[at[1]][at[2]] = v
    elseif at then
      args[at[1]] = v
    end
  elseif p.pat == 0 then
    args = { n = 0 }
  elseif p.pat < 0 then
    args, self = SELFLESS[-p.pat][2](v, F), nil
  else
    args = PATTERNS[p.pat][2](v, F)
  end
  if self ~= nil then
    table.insert(args, 1, self)
    args.n = args.n + 1
  end
  return fn, args
end

local function describe(p, targets)
  local name = targets[p.t].name
  local v = p.v and VALUES[p.v][1]
  if p.tpl then
    local tpl = templates[p.tpl]
    local s = ("%s template %q"):format(name, tpl.text or "?")
    local at = p.at
    if not at then return s .. " as is" end
    if at[1] == "extra" then return s .. " with an extra argument " .. v end
    if at[2] ~= nil then return ("%s with argument %d's field [%s] = %s"):format(s, at[1], tostring(at[2]), v) end
    return ("%s with argument %d = %s"):format(s, at[1], v)
  end
  if p.pat == 0 then return name .. " with no arguments" end
  if p.pat < 0 then return ("%s called with %s, v = %s"):format(name, SELFLESS[-p.pat][1], v) end
  return ("%s: %s with v = %s"):format(name, PATTERNS[p.pat][1], v)
end

---------------------------------------------------------------------------
-- Modes
---------------------------------------------------------------------------

local mode = arg[1]

if mode == "setup" then
  dd.manual_seed(1)
  local w = dd.video.writer("clip.mp4", { fps = 5 })
  for _ = 1, 4 do w:write(dd.rand(3, 16, 16)) end
  w:close()
  local fw = dd.data.frame_writer{ channels = 1, height = 8, width = 8 }
  for _ = 1, 5 do fw:add(dd.rand(1, 8, 8)) end
  fw:save("frames.safetensors")
  dd.save("tensors.safetensors", { a = dd.randn(2, 3), b = dd.zeros(0) }, { note = "x" })
  dd.image.save("img.png", dd.rand(3, 8, 8))
  local m = dd.nn.Sequential{ dd.nn.Linear{3, 4}, dd.nn.ReLU(), dd.nn.Linear{4, 2} }
  dd.nn.save("model.safetensors", m, { optimizer = dd.optim.Adam{ m:parameters() }, meta = { epoch = 1 } })
  print("setup done")
  return
end

local F = fixtures()
local targets, aliases = build_targets(F)
local tpl_of = templates_by_target(targets, aliases)
local ranges, total = probe_ranges(F, targets, tpl_of)
collectgarbage("collect")

-- The target holding probe number i.
local function target_of(i)
  for t, r in ipairs(ranges) do
    if i >= r[1] and i < r[1] + r[2] then return t end
  end
end

if mode == "list" then
  for t, r in ipairs(ranges) do
    print(("target %d %d %s%s"):format(r[1], r[2], targets[t].name, targets[t].skip and " # SKIP " .. targets[t].skip or ""))
  end
  print("total " .. total)
  return
end

if mode == "describe" then
  local i = tonumber(arg[2])
  local t = target_of(i)
  local p = t and target_probes(F, targets, tpl_of, t)[i - ranges[t][1] + 1]
  print(p and describe(p, targets) or ("no probe " .. tostring(arg[2])))
  return
end

assert(mode == "run", "usage: probes.lua setup|list|run <first>|describe <i>")
local report = assert(io.open("/dev/fd/3", "w"))
report:setvbuf("line")
local first = tonumber(arg[2]) or 1

-- A bad result: an error whose value is not a string, or an empty or
-- garbled message.
local function bad_error(err)
  if type(err) ~= "string" then return "raised a " .. type(err) .. " instead of a message" end
  if err == "" then return "raised an empty message" end
  if err:find("(null)", 1, true) then return "message holds (null): " .. err end
  return nil
end

-- Calls fn through a field of its own name, as scripts do (dd.abs(x), t:narrow(...)),
-- so that Lua's messages name it ("bad argument #1 to 'abs'") as they would there.
local callers = {}
local function call_as(name, fn, args)
  local make = callers[name]
  if not make then
    make = name:match("^[%a_][%w_]*$") and load(("local h = {} return function(fn, ...) h.%s = fn return h.%s(...) end")
      :format(name, name)) or function() return function(fn, ...) return fn(...) end end
    make = make()
    callers[name] = make
  end
  return make(fn, table.unpack(args, 1, args.n))
end

local t = target_of(first)
while t do
  local r = ranges[t]
  local stats = { calls = 0, returned = 0, raised = 0, bad = 0, named = 0 }
  local started = dd.clock()
  -- does a message name what was called? ("narrow" for dd.Tensor.narrow, "Linear"
  -- or "forward" for linear:forward; metamethods count as named)
  local short = targets[t].name:match("[%.:]([%w_]+)$") or targets[t].name
  local kind = targets[t].name:match("^dd%.%a+%.(%u%w*)") or ""
  local built, G = true, nil
  if r[2] > 0 then built, G = pcall(fixtures) end
  local probes = built and target_probes(G, targets, tpl_of, t) or {}
  if not built then
    report:write(("B %d 0 fixtures failed: %s\n"):format(t, tostring(G)))
    stats.bad = 1
  else
    for i = math.max(first, r[1]), r[1] + r[2] - 1 do
      local p = probes[i - r[1] + 1]
      report:write("P ", i, "\n")
      local t0 = dd.clock()
      local ok, err = pcall(function()
        local fn, args = realise(p, G, targets)
        return call_as(short, fn, args)
      end)
      local ms = (dd.clock() - t0) * 1000
      if ms > 500 then report:write(("S %d %.0f\n"):format(i, ms)) end
      stats.calls = stats.calls + 1
      if ok then
        stats.returned = stats.returned + 1
      else
        stats.raised = stats.raised + 1
        if type(err) == "string" and (err:find(short, 1, true) or short:match("^__")
            or (kind ~= "" and err:find(kind, 1, true))) then
          stats.named = stats.named + 1
        end
        local why = bad_error(err)
        if not why and p.tpl and not p.at then why = "the template itself raised: " .. err end
        if why then
          stats.bad = stats.bad + 1
          report:write(("B %d %d %s: %s\n"):format(t, i, describe(p, targets), why:gsub("\n", " | ")))
        end
      end
    end
  end
  report:write("G ", t, "\n")
  G, probes = nil, nil
  collectgarbage("collect")
  collectgarbage("collect")
  report:write(("T %d %d %d %d %d %.0f %d\n"):format(t, stats.calls, stats.returned, stats.raised, stats.bad,
    (dd.clock() - started) * 1000, stats.named))
  t = t + 1
  if not ranges[t] then t = nil end
end
report:write("DONE\n")
report:close()

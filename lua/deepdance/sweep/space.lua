-- deepdance.sweep space: what a sweep searches over, and the trials it makes.
--
--   space = { lr = dd.sweep.log_uniform(1e-4, 1e-2),   -- drawn
--             units = {64, 128, 256},                   -- a grid axis: every value
--             dropout = dd.sweep.choice{0, 0.2} }       -- drawn from a list
--
-- Lists are crossed into a grid (keys in sorted order, the last varying
-- fastest); distributions are drawn. Trial i takes grid point
-- ((i - 1) % G) + 1, so `trials = k * G` gives every grid point k draws.
-- Each draw is a pure function of (seed, trial, key): the same spec gives
-- the same trials on any machine, in any shard, in any order, and adding a
-- key to the space leaves the other keys' draws as they were.
local dd, sweep = ...

local Distribution = {}
Distribution.__index = Distribution

local function is_distribution(v) return getmetatable(v) == Distribution end

local function finite(v) return type(v) == "number" and v == v and v > -math.huge and v < math.huge end

local function describe(v)
  if type(v) == "string" then return ("'%s'"):format(v) end
  if type(v) == "number" then return tostring(v) end
  return "a " .. type(v)
end

--- dd.sweep.uniform(a, b): a float drawn evenly from [a, b).
function sweep.uniform(a, b)
  if not (finite(a) and finite(b) and a < b) then
    error(("dd.sweep.uniform: expected finite numbers a < b, got %s and %s"):format(describe(a), describe(b)), 2)
  end
  return setmetatable({ kind = "uniform", a = a, b = b }, Distribution)
end

--- dd.sweep.log_uniform(a, b): a float whose log is drawn evenly: as many
-- draws between 1e-4 and 1e-3 as between 1e-3 and 1e-2.
function sweep.log_uniform(a, b)
  if not (finite(a) and finite(b) and a > 0 and a < b) then
    error(("dd.sweep.log_uniform: expected finite numbers 0 < a < b, got %s and %s"):format(describe(a), describe(b)), 2)
  end
  return setmetatable({ kind = "log_uniform", a = a, b = b }, Distribution)
end

--- dd.sweep.int_range(a, b): an integer drawn evenly from a..b (both included).
function sweep.int_range(a, b)
  if not (math.type(a) == "integer" and math.type(b) == "integer" and a <= b) then
    error(("dd.sweep.int_range: expected integers a <= b, got %s and %s"):format(describe(a), describe(b)), 2)
  end
  return setmetatable({ kind = "int_range", a = a, b = b }, Distribution)
end

local function check_value(fn, v, where)
  local t = type(v)
  if not (t == "string" or t == "boolean" or finite(v)) then
    error(("%s: %s must be a string, a finite number or a boolean, got %s"):format(fn, where, describe(v)), 3)
  end
end

--- dd.sweep.choice{v1, v2, ...}: one of the values, drawn evenly (a plain list
-- in the space would instead try every value).
function sweep.choice(values)
  if type(values) ~= "table" or #values == 0 then
    error(("dd.sweep.choice: expected a non-empty list of values, got %s"):format(describe(values)), 2)
  end
  local copy = {}
  for i, v in ipairs(values) do
    check_value("dd.sweep.choice", v, ("value %d"):format(i))
    copy[i] = v
  end
  return setmetatable({ kind = "choice", values = copy }, Distribution)
end

function Distribution:__tostring()
  if self.kind == "choice" then
    local parts = {}
    for i, v in ipairs(self.values) do parts[i] = tostring(v) end
    return "choice{" .. table.concat(parts, ", ") .. "}"
  end
  return ("%s(%s, %s)"):format(self.kind, tostring(self.a), tostring(self.b))
end

sweep.is_distribution = is_distribution

---------------------------------------------------------------------------
-- Deterministic draws
---------------------------------------------------------------------------
-- splitmix64 over Lua's wrapping 64-bit integers: a well-mixed number from
-- (seed, trial, key) alone, so no draw depends on any other.

local function mix(x)
  x = (x ~ (x >> 30)) * -4658895280553007687 -- 0xbf58476d1ce4e5b9
  x = (x ~ (x >> 27)) * -7723592293110705685 -- 0x94d049bb133111eb
  return x ~ (x >> 31)
end

local function fnv1a(s)
  local h = -3750763034362895579 -- 0xcbf29ce484222325
  for i = 1, #s do h = (h ~ s:byte(i)) * 1099511628211 end
  return h
end

--- unit(seed, trial, key) -> a float in [0, 1), the same for the same arguments.
local function unit(seed, trial, key)
  local x = mix(mix(mix(seed + -7046029254386353131) + trial) + fnv1a(key))
  return (x >> 11) * 2.0 ^ -53
end
sweep.unit = unit

function Distribution:draw(u)
  if self.kind == "uniform" then return self.a + u * (self.b - self.a) end
  if self.kind == "log_uniform" then
    local la, lb = math.log(self.a), math.log(self.b)
    return math.min(math.exp(la + u * (lb - la)), self.b)
  end
  if self.kind == "int_range" then return self.a + math.floor(u * (self.b - self.a + 1)) end
  return self.values[math.floor(u * #self.values) + 1]
end

---------------------------------------------------------------------------
-- Trials
---------------------------------------------------------------------------

--- dd.sweep.check_space(space, fn) -> sorted keys, grid keys, drawn keys
function sweep.check_space(space, fn)
  fn = fn or "dd.sweep"
  if type(space) ~= "table" then error(("%s: 'space' must be a table of option = values, got %s"):format(fn, describe(space)), 0) end
  local keys, grid, drawn = {}, {}, {}
  for k in pairs(space) do
    if type(k) ~= "string" or not k:match("^[%a_][%w_%-]*$") then
      error(("%s: space keys must be option names like 'lr' or 'batch_size', got %s"):format(fn, describe(k)), 0)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = space[k]
    if is_distribution(v) then
      drawn[#drawn + 1] = k
    elseif type(v) == "table" and getmetatable(v) == nil and #v > 0 then
      for i, x in ipairs(v) do check_value(fn, x, ("space.%s[%d]"):format(k, i)) end
      local n = 0
      for _ in pairs(v) do n = n + 1 end
      if n ~= #v then error(("%s: space.%s must be a list of values, got a table with other keys"):format(fn, k), 0) end
      grid[#grid + 1] = k
    else
      error(("%s: space.%s must be a non-empty list (a grid axis) or a distribution (dd.sweep.uniform, " ..
        "log_uniform, int_range, choice), got %s"):format(fn, k, describe(v)), 0)
    end
  end
  return keys, grid, drawn
end

--- dd.sweep.grid_size(space) -> the number of grid points (1 with no lists)
function sweep.grid_size(space)
  local _, grid = sweep.check_space(space)
  local n = 1
  for _, k in ipairs(grid) do n = n * #space[k] end
  return n
end

--- dd.sweep.expand(space, {trials=, seed=1}) -> list of {id=, name='trial-0001', options={...}}
-- trials defaults to the grid size. Without distributions, more trials than
-- grid points would only repeat themselves, so that is an error.
function sweep.expand(space, opts)
  local fn = "dd.sweep.expand"
  opts = opts or {}
  local keys, grid, drawn = sweep.check_space(space, fn)
  local sizes, G = {}, 1
  for i, k in ipairs(grid) do
    sizes[i] = #space[k]
    G = G * sizes[i]
  end
  local seed = opts.seed or 1
  if math.type(seed) ~= "integer" then error(("%s: seed must be an integer, got %s"):format(fn, describe(seed)), 0) end
  local n = opts.trials or G
  if math.type(n) ~= "integer" or n < 1 then error(("%s: trials must be an integer >= 1, got %s"):format(fn, describe(n)), 0) end
  if #drawn == 0 and n > G then
    error(("%s: trials = %d but the grid has only %d points and nothing is drawn: the extra trials would repeat " ..
      "the same options (add a seed axis, e.g. space.seed = {1, 2}, to repeat runs)"):format(fn, n, G), 0)
  end
  local trials = {}
  for id = 1, n do
    local options, point = {}, (id - 1) % G
    for i = #grid, 1, -1 do -- the last key varies fastest
      options[grid[i]] = space[grid[i]][point % sizes[i] + 1]
      point = point // sizes[i]
    end
    for _, k in ipairs(drawn) do options[k] = space[k]:draw(unit(seed, id, k)) end
    trials[id] = { id = id, name = ("trial-%04d"):format(id), options = options }
  end
  return trials, keys
end

--- dd.sweep.shard(trials, i, n) -> the trials of shard i (0-based) of n: every
-- n-th trial starting at i + 1, so shards are disjoint, cover every trial and
-- do not depend on what ran before.
function sweep.shard(trials, i, n)
  if not (math.type(i) == "integer" and math.type(n) == "integer" and n >= 1 and i >= 0 and i < n) then
    error(("dd.sweep.shard: expected 0 <= i < n, got i = %s, n = %s"):format(describe(i), describe(n)), 2)
  end
  local mine = {}
  for _, t in ipairs(trials) do
    if (t.id - 1) % n == i then mine[#mine + 1] = t end
  end
  return mine
end

--- dd.sweep.parse_shard("1/4") -> 1, 4
function sweep.parse_shard(text)
  local i, n = tostring(text):match("^(%d+)/(%d+)$")
  i, n = math.tointeger(tonumber(i)), math.tointeger(tonumber(n))
  if not (i and n and n >= 1 and i < n) then
    error(("--shard must be I/N with 0 <= I < N (e.g. 0/4), got '%s'"):format(tostring(text)), 0)
  end
  return i, n
end

-- deepdance.dance.util: small helpers shared by latents.lua, sequence.lua and
-- generate.lua (strict options, type checks, files). Returned as a table, not
-- part of dd.dance: `local util = assert(loadfile(dir .. "util.lua"))(dd)`.
local dd = ...
local util = {}

local TENSOR_MT = getmetatable(dd.zeros(0))
function util.is_tensor(v) return getmetatable(v) == TENSOR_MT end

function util.describe(v)
  if util.is_tensor(v) then return ("a Tensor of shape (%s)"):format(table.concat(v:shape(), ",")) end
  if type(v) == "string" then return ("'%s'"):format(v) end
  if type(v) == "number" then return tostring(v) end
  return "a " .. type(v)
end

--- options(fn, opts, known) -> opts: an unknown key is an error naming it and the known ones.
function util.options(fn, opts, known)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error(("%s: expected a table of options, got %s"):format(fn, util.describe(opts)), 0) end
  local is_known = {}
  for _, k in ipairs(known) do is_known[k] = true end
  for k in pairs(opts) do
    if not is_known[k] then
      error(("%s: unknown option '%s' (known: %s)"):format(fn, tostring(k), table.concat(known, ", ")), 0)
    end
  end
  return opts
end

-- check(fn, name, value, kind, default) -> value or default; kinds below.
local KINDS = {
  integer = { "an integer >= 1", function(v) return math.type(v) == "integer" and v >= 1 end },
  count = { "an integer >= 0", function(v) return math.type(v) == "integer" and v >= 0 end },
  positive = { "a number > 0", function(v) return type(v) == "number" and v > 0 and v < math.huge end },
  number = { "a finite number", function(v) return type(v) == "number" and v == v and math.abs(v) < math.huge end },
  nonneg = { "a number >= 0", function(v) return type(v) == "number" and v >= 0 and v < math.huge end },
  fraction = { "a number in (0, 1]", function(v) return type(v) == "number" and v > 0 and v <= 1 end },
  string = { "a non-empty string", function(v) return type(v) == "string" and v ~= "" end },
  boolean = { "a boolean", function(v) return type(v) == "boolean" end },
  tensor = { "a Tensor", util.is_tensor },
  -- a sampling temperature, or 'auto': the one dd.dance.calibrate_temperature
  -- chose for the model (util.temperature turns it into the number)
  temperature = { "a number >= 0 or 'auto'",
                  function(v) return v == "auto" or (type(v) == "number" and v >= 0 and v < math.huge) end },
}

function util.check(fn, name, v, kind, default)
  if v == nil then return default end
  local k = KINDS[kind] or error("util.check: unknown kind " .. tostring(kind))
  if not k[2](v) then error(("%s: option '%s' must be %s, got %s"):format(fn, name, k[1], util.describe(v)), 0) end
  return v
end

-- The number a checked temperature option stands for with the sequence model
-- seq (dd.dance.load_sequence): 'auto' is its calibrated temperature.
function util.temperature(fn, name, v, seq)
  if v ~= "auto" then return v end
  if type(seq) == "table" and seq.temperature then return seq.temperature end
  local where = type(seq) == "table" and seq.dir and (seq.dir .. "/temperature.json") or "temperature.json in its run directory"
  error(("%s: option '%s' is 'auto' but the sequence model has no calibrated temperature (%s is missing: "
    .. "experiments/calibrate.lua or dd.dance.calibrate_temperature writes it)"):format(fn, name, where), 0)
end

function util.choice(fn, name, v, choices, default)
  if v == nil then return default end
  for _, c in ipairs(choices) do
    if v == c then return v end
  end
  local quoted = {}
  for i, c in ipairs(choices) do quoted[i] = "'" .. c .. "'" end
  error(("%s: option '%s' must be one of %s, got %s"):format(fn, name, table.concat(quoted, ", "), util.describe(v)), 0)
end

-- Runs f(...) and re-raises its error at the caller of the public function.
function util.public(f)
  return function(...)
    local res = table.pack(pcall(f, ...))
    if not res[1] then error(res[2], 2) end
    return table.unpack(res, 2, res.n)
  end
end

function util.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function util.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

function util.mkdir(fn, dir)
  if not os.execute("mkdir -p " .. util.quote(dir)) then error(("%s: cannot create directory '%s'"):format(fn, dir), 0) end
end

function util.dirname(path) return path:match("^(.*)/[^/]*$") end

function util.file_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

-- 64-bit FNV-1a of a string, as 16 hex digits: a cheap fingerprint.
function util.fnv1a(s)
  local h = 0xcbf29ce484222325
  for i = 1, #s do
    h = h ~ s:byte(i)
    h = h * 0x100000001b3
  end
  return ("%016x"):format(h)
end

-- A text form of a value with table keys sorted, stable across processes
-- (pairs order is not): for fingerprints.
function util.canonical(v)
  if type(v) ~= "table" then return type(v) == "string" and ("%q"):format(v) or tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. util.canonical(v[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- Writes text to path through a temporary file renamed over it.
function util.write_file(fn, path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error(("%s: cannot write %s: %s"):format(fn, tmp, tostring(err)), 0) end
  -- a full disk shows in write or only in close (the flush): never rename a torn file
  local written, werr = f:write(text)
  local closed, cerr = f:close()
  if not written or not closed then
    os.remove(tmp)
    error(("%s: cannot write %s: %s (%s left as it was)"):format(fn, tmp, tostring(werr or cerr), path), 0)
  end
  local ok, rerr = os.rename(tmp, path)
  if not ok then error(("%s: cannot rename %s to %s: %s"):format(fn, tmp, path, tostring(rerr)), 0) end
end

function util.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

-- The caller's meta table of a deepdance checkpoint (dd.nn.save's `meta`),
-- read from the header only; nil when it has none.
function util.checkpoint_meta(path)
  local header = dd.safetensors_header(path)
  local text = header.__metadata__ and header.__metadata__.meta
  if not text then return nil end
  local ok, meta = pcall(dd.json.decode, text)
  if ok and type(meta) == "table" then return meta end
  return nil
end

return util

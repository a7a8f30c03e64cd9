-- deepdance: the Lua side of the runtime. The C core has already filled `dd`
-- (tensors, math, I/O); this file adds what is clearer in Lua.
local dd = ...

-- dd.inspect(v): a readable one-level view of tables, used by the REPL.
function dd.inspect(v, depth)
  depth = depth or 1
  if type(v) ~= "table" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  local parts, n = {}, #v
  for i = 1, n do
    parts[#parts + 1] = depth > 0 and type(v[i]) == "table" and dd.inspect(v[i], depth - 1) or tostring(v[i])
  end
  for _, k in ipairs(keys) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      local val = v[k]
      local s = depth > 0 and type(val) == "table" and dd.inspect(val, depth - 1) or tostring(val)
      local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. tostring(k) .. "]"
      parts[#parts + 1] = key .. " = " .. s
    end
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end


assert(loadfile(dd.home .. "/lua/deepdance/nn.lua"))(dd)
assert(loadfile(dd.home .. "/lua/deepdance/checkpoint.lua"))(dd)
assert(loadfile(dd.home .. "/lua/deepdance/fit.lua"))(dd)
assert(loadfile(dd.home .. "/lua/deepdance/data.lua"))(dd)
assert(loadfile(dd.home .. "/lua/deepdance/cli.lua"))(dd)
assert(loadfile(dd.home .. "/lua/deepdance/dance/init.lua"))(dd)
assert(loadfile(dd.home .. "/lua/deepdance/sweep/init.lua"))(dd)
dd.report = dd.sweep.report -- a trial's progress, for its sweep (docs/sweeps.md)
assert(loadfile(dd.home .. "/lua/deepdance/runs.lua"))(dd)

return dd

-- deepdance.nn: containers and model utilities on top of the C layers.
--
-- A module is anything with forward(x) -> y, backward(x, dy) -> dx,
-- parameters(), state_dict(), load_state_dict(t [, opts]), zero_grad(),
-- train(), eval(), num_parameters() and output_shape(shape). C layers
-- (dd.nn.Linear, dd.nn.Conv2d, ...) are modules; so is Sequential, so
-- containers nest.
local dd = ...
local nn = dd.nn

-- The kind of a module, for messages and summaries.
local function kind_of(m)
  return m.kind or (getmetatable(m) and getmetatable(m).__name) or type(m)
end

local function label_of(m)
  local name = m.name
  return name and (kind_of(m) .. " '" .. name .. "'") or kind_of(m)
end

-- "in layer 3 (Conv2d): input ..." without repeating the layer's own prefix.
local function prefixed(i, m, err)
  err = tostring(err)
  local label = label_of(m)
  if err:sub(1, #label + 2) == label .. ": " then err = err:sub(#label + 3) end
  return string.format("in layer %d (%s): %s", i, label, err)
end

local function is_module(m)
  local t = type(m)
  return (t == "table" or t == "userdata") and type(m.forward) == "function" and type(m.backward) == "function"
end

local Sequential = { kind = "Sequential" }
Sequential.__name = "Sequential"

function Sequential.__index(self, k)
  if math.type(k) == "integer" then return rawget(self, "modules")[k] end
  return Sequential[k]
end

function Sequential.__len(self) return #self.modules end

local seq_options = { name = true, input_shape = true }

--- dd.nn.Sequential{m1, m2, ..., name=, input_shape=}: runs modules in order.
-- input_shape (without the batch dimension) lets tostring() print a summary.
function nn.Sequential(spec)
  spec = spec or {}
  if type(spec) ~= "table" then error("Sequential: expected a table of modules, got " .. type(spec), 2) end
  local self = setmetatable({ modules = {}, training = true }, Sequential)
  for k, v in pairs(spec) do
    if math.type(k) ~= "integer" and not seq_options[k] then
      error(string.format("Sequential: unknown option '%s' (known: name, input_shape, and modules as the array part)", tostring(k)), 2)
    end
  end
  for i = 1, #spec do
    if not is_module(spec[i]) then
      error(string.format("Sequential: entry %d is not a module (got %s)", i, type(spec[i])), 2)
    end
    self.modules[i] = spec[i]
  end
  self.name = spec.name
  self.input_shape = spec.input_shape
  return self
end

function Sequential:add(m)
  if not is_module(m) then error("Sequential:add: expected a module, got " .. type(m), 2) end
  self.modules[#self.modules + 1] = m
  return self
end

--- forward(x) -> y. Keeps each layer's input for backward.
function Sequential:forward(x)
  local inputs = self._inputs or {}
  self._inputs = inputs
  for i, m in ipairs(self.modules) do
    inputs[i] = x
    local ok, y = pcall(m.forward, m, x)
    if not ok then error(prefixed(i, m, y), 2) end
    x = y
  end
  for i = #self.modules + 1, #inputs do inputs[i] = nil end
  self.output = x
  return x
end

-- Gradient buffers. Layer i's input gradient is needed only until layer
-- i-1 has read it, so a Sequential passes its C layers two shared buffers in
-- turn (backward's `into`) instead of letting each keep its own, as Torch7's
-- optnet did: for the autoencoder at batch 32 that is two 98 MB buffers
-- instead of one per layer (about 700 MB). A nested Sequential uses its
-- parent's pair. Consequence: after backward, only the Sequential's own
-- grad_input is meaningful; the layers' grad_input fields hold views of the
-- shared buffers, overwritten by later layers.
local TENSOR_MT = getmetatable(dd.zeros(0))
local function grad_buffer(pool, k, n)
  local buf = pool[k]
  if not buf or buf:numel() < n then
    buf = dd.zeros(n)
    pool[k] = buf
  end
  return buf
end

--- backward(x, dy [, false]) -> dx, after forward(x); accumulates parameter
-- gradients. dx is valid until the next backward of this model. With false
-- the caller wants no dx (x is data, as in training): the first layer skips
-- its input gradient where it can, and nothing is returned.
function Sequential:backward(x, dy, want_dx)
  local no_dx = want_dx == false
  local inputs = self._inputs
  if not inputs or inputs[1] ~= x then
    if not inputs then error("Sequential: backward called before forward", 2) end
    -- A different x: run forward again so every layer's saved state is for x.
    self:forward(x)
    inputs = self._inputs
  end
  local pool = rawget(self, "_grad_pool")
  if not pool then pool = {}; self._grad_pool = pool end
  -- which pool buffer holds dy: nil for the caller's tensor, or the one a
  -- parent Sequential says its gradient is in
  local cur = rawget(self, "_grad_dy_buffer")
  for i = #self.modules, 1, -1 do
    local m, xi = self.modules[i], inputs[i]
    local ok, dx
    if getmetatable(m) == Sequential then
      m._grad_pool, m._grad_dy_buffer = pool, cur
      if no_dx and i == 1 then ok, dx = pcall(m.backward, m, xi, dy, false)
      else ok, dx = pcall(m.backward, m, xi, dy) end
      m._grad_dy_buffer = nil
      if ok then cur = m._grad_last end
    elseif no_dx and i == 1 and type(m) == "userdata" then
      ok, dx = pcall(m.backward, m, xi, dy, false)
    elseif type(m) == "userdata" and getmetatable(xi) == TENSOR_MT and xi:is_contiguous() and xi:numel() > 0 then
      local k = cur == 1 and 2 or 1
      local into = grad_buffer(pool, k, xi:numel()):narrow(1, 1, xi:numel()):view(xi:size())
      ok, dx = pcall(m.backward, m, xi, dy, into)
      cur = k
    else
      ok, dx = pcall(m.backward, m, xi, dy)
      cur = nil
    end
    if not ok then error(prefixed(i, m, dx), 2) end
    dy = dx
  end
  if no_dx then dy, cur = nil, nil end
  self._grad_last = cur
  self.grad_input = dy
  return dy
end

function Sequential:parameters()
  local out = {}
  for i, m in ipairs(self.modules) do
    for _, p in ipairs(m:parameters()) do
      out[#out + 1] = { name = i .. "." .. p.name, value = p.value, grad = p.grad }
    end
  end
  return out
end

function Sequential:state_dict()
  local out = {}
  for i, m in ipairs(self.modules) do
    for k, v in pairs(m:state_dict()) do out[i .. "." .. k] = v end
  end
  return out
end

--- load_state_dict(t [, {strict=true}]): keys "<index>.<name>", 1-based.
function Sequential:load_state_dict(t, opts)
  if type(t) ~= "table" then error("load_state_dict: expected a table of tensors, got " .. type(t), 2) end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "strict" then error("load_state_dict: unknown option '" .. tostring(k) .. "' (known: strict)", 2) end
  end
  local strict = opts.strict ~= false
  local parts = {}
  for k, v in pairs(t) do
    local i, rest = tostring(k):match("^(%d+)%.(.+)$")
    i = tonumber(i)
    if not i or not self.modules[i] then
      if strict then error("load_state_dict: unexpected entry '" .. tostring(k) .. "'", 2) end
    else
      parts[i] = parts[i] or {}
      parts[i][rest] = v
    end
  end
  for i, m in ipairs(self.modules) do
    local ok, err = pcall(m.load_state_dict, m, parts[i] or {}, { strict = strict })
    if not ok then
      -- name the full key: "'weight'" inside layer 3 is "'3.weight'" here
      err = tostring(err):gsub("'([^']+)'", function(key) return "'" .. i .. "." .. key .. "'" end, 1)
      error("load_state_dict: " .. prefixed(i, m, (err:gsub("^load_state_dict: ", ""))), 2)
    end
  end
  return self
end

function Sequential:zero_grad()
  for _, m in ipairs(self.modules) do m:zero_grad() end
  return self
end

function Sequential:train(on)
  if on == nil then on = true end
  self.training = on
  for _, m in ipairs(self.modules) do m:train(on) end
  return self
end

function Sequential:eval() return self:train(false) end

function Sequential:num_parameters()
  local n = 0
  for _, m in ipairs(self.modules) do n = n + m:num_parameters() end
  return n
end

function Sequential:output_shape(shape)
  for i, m in ipairs(self.modules) do
    local ok, s = pcall(m.output_shape, m, shape)
    if not ok then error(prefixed(i, m, s), 2) end
    shape = s
  end
  return shape
end

function Sequential:reset_parameters()
  for _, m in ipairs(self.modules) do
    if m.reset_parameters then m:reset_parameters() end
  end
  return self
end

local function group(n)
  local s = tostring(math.tointeger(n) or n)
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end

local function shape_text(shape)
  local parts = { "N" }
  for i = 2, #shape do parts[#parts + 1] = tostring(shape[i]) end
  return "(" .. table.concat(parts, ", ") .. ")"
end

-- Rows {name, output shape, params} of a module for a given input shape,
-- nested containers expanded with dotted indices.
local function summary_rows(m, shape, prefix, rows)
  for i, sub in ipairs(m.modules) do
    local label = prefix .. i
    if getmetatable(sub) == Sequential then
      shape = summary_rows(sub, shape, label .. ".", rows)
    else
      local ok, out = pcall(sub.output_shape, sub, shape)
      if not ok then error(prefixed(i, sub, out), 0) end
      local named = sub.name and (sub.name .. " ") or ""
      rows[#rows + 1] = { label .. " " .. named .. tostring(sub), shape_text(out), sub:num_parameters() }
      shape = out
    end
  end
  return shape
end

--- summary(input_shape) -> text: Keras-style table for an input shape
-- given without the batch dimension, e.g. {1, 120, 200}.
function Sequential:summary(input_shape)
  input_shape = input_shape or self.input_shape
  if type(input_shape) ~= "table" then
    error("summary: expected an input shape without the batch dimension, e.g. {1, 120, 200}", 2)
  end
  local shape = { 1 }
  for i, s in ipairs(input_shape) do shape[i + 1] = s end
  local rows = {}
  local ok, err = pcall(summary_rows, self, shape, "", rows)
  if not ok then error("summary: " .. tostring(err), 2) end
  local w1 = 30
  for _, r in ipairs(rows) do w1 = math.max(w1, #r[1] + 2) end
  local line = string.rep("_", w1 + 40)
  local out = {
    string.format('Model: "%s"', self.name or "sequential"), line,
    string.format("%-" .. w1 .. "s%-26s%14s", "Layer (type)", "Output Shape", "Param #"),
    string.rep("=", w1 + 40),
  }
  local total = 0
  for _, r in ipairs(rows) do
    out[#out + 1] = string.format("%-" .. w1 .. "s%-26s%14s", r[1], r[2], group(r[3]))
    total = total + r[3]
  end
  out[#out + 1] = string.rep("=", w1 + 40)
  out[#out + 1] = "Total params: " .. group(total)
  out[#out + 1] = line
  return table.concat(out, "\n")
end

function Sequential:__tostring()
  if self.input_shape then
    local ok, s = pcall(self.summary, self, self.input_shape)
    if ok then return s end
  end
  local parts = {}
  for i, m in ipairs(self.modules) do parts[#parts + 1] = "  (" .. i .. ") " .. tostring(m):gsub("\n", "\n  ") end
  return "Sequential {\n" .. table.concat(parts, "\n") .. "\n}"
end

--- dd.nn.SumLoss{loss1, loss2, ..., weights={w1, w2, ...}}: the weighted sum
-- of losses on the same prediction and target (weights default to 1), e.g.
-- dd.nn.SumLoss{dd.nn.BCELoss(), dd.nn.DiceLoss{foreground = 0}}.
-- backward returns a new tensor, the weighted sum of their gradients.
local SumLoss = {}
SumLoss.__index = SumLoss

function nn.SumLoss(spec)
  if type(spec) ~= "table" then error("SumLoss: expected a table of losses, got " .. type(spec), 2) end
  for k in pairs(spec) do
    if math.type(k) ~= "integer" and k ~= "weights" then
      error(("SumLoss: unknown option '%s' (known: weights, and losses as the array part)"):format(tostring(k)), 2)
    end
  end
  if #spec < 1 then error("SumLoss: expected at least one loss", 2) end
  local weights = spec.weights or {}
  if type(weights) ~= "table" then error("SumLoss: option 'weights' must be a table of numbers, got " .. type(weights), 2) end
  local self = setmetatable({ losses = {}, weights = {} }, SumLoss)
  for i = 1, #spec do
    local l = spec[i]
    local ok = pcall(function() return l.forward and l.backward end)
    if not ok or not (l.forward and l.backward) then
      error(("SumLoss: entry %d is not a loss (forward, backward), got %s"):format(i, type(l)), 2)
    end
    local w = weights[i] == nil and 1 or weights[i]
    if type(w) ~= "number" or w ~= w then
      error(("SumLoss: weight %d must be a number, got %s"):format(i, tostring(w)), 2)
    end
    self.losses[i], self.weights[i] = l, w
  end
  if #weights > #spec then error(("SumLoss: %d weights for %d losses"):format(#weights, #spec), 2) end
  return self
end

function SumLoss:forward(y, t)
  local total = 0
  for i, l in ipairs(self.losses) do total = total + self.weights[i] * l:forward(y, t) end
  return total
end
SumLoss.__call = SumLoss.forward

function SumLoss:backward(y, t)
  local g
  for i, l in ipairs(self.losses) do
    local gi = l:backward(y, t)
    if i == 1 then
      g = gi * self.weights[i]
    else
      g:add_(gi * self.weights[i])
    end
  end
  return g
end

function SumLoss:__tostring()
  local parts = {}
  for i, l in ipairs(self.losses) do
    parts[i] = (self.weights[i] == 1 and "" or ("%g * "):format(self.weights[i])) .. tostring(l)
  end
  return "SumLoss(" .. table.concat(parts, " + ") .. ")"
end

nn.is_module = is_module
nn.Sequential_class = Sequential
return nn

-- deepdance.checkpoint: dd.nn.save / dd.nn.load, a model with (optionally) its
-- optimizer, the caller's metadata and the RNG state in one safetensors file,
-- written atomically by dd.save.
--
-- File layout:
--   tensors   "model.<state_dict key>"      every entry of model:state_dict()
--             "optimizer.<key>"             the tensors of opt:state_dict()
--   metadata  format = "deepdance-checkpoint", version = "1",
--             model_keys = number of model tensors (as text),
--             optimizer = JSON of the optimizer's scalars (kind, step, lr, ...), when saved,
--             meta = JSON of the caller's meta table, when given,
--             rng_state = dd.rng_state() at save time.
local dd = ...

local FORMAT, VERSION = "deepdance-checkpoint", "1"
local TENSOR_MT = getmetatable(dd.zeros(0))

local function is_tensor(v) return getmetatable(v) == TENSOR_MT end

-- "(2,3)", and "(2,)" for one dimension, as the C side prints shapes.
local function shape_text(t)
  local s = t:shape()
  return "(" .. table.concat(s, ",") .. (#s == 1 and ",)" or ")")
end

-- Strict option tables: an unknown key is an error naming it and the known ones.
local function check_options(fn, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(("%s: options must be a table, got %s"):format(fn, type(opts)), 3) end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for name in pairs(known) do names[#names + 1] = name end
      table.sort(names)
      error(("%s: unknown option '%s' (known: %s)"):format(fn, tostring(k), table.concat(names, ", ")), 3)
    end
  end
  return opts
end

local function has_method(v, name)
  local t = type(v)
  return (t == "table" or t == "userdata") and type(v[name]) == "function"
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

--- dd.nn.save(path, model [, {optimizer=opt, meta={...}}])
-- model: anything with state_dict(). meta: a JSON-encodable table.
function dd.nn.save(path, model, opts)
  local fn = "dd.nn.save"
  if type(path) ~= "string" then error(fn .. ": path must be a string, got " .. type(path), 2) end
  if not has_method(model, "state_dict") then
    error(fn .. ": model must have a state_dict() method, got " .. type(model), 2)
  end
  opts = check_options(fn, opts, { optimizer = true, meta = true })
  local tensors, nmodel = {}, 0
  for k, v in pairs(model:state_dict()) do
    if not is_tensor(v) then error(("%s: model entry '%s' is not a Tensor (%s)"):format(fn, tostring(k), type(v)), 2) end
    tensors["model." .. k] = v
    nmodel = nmodel + 1
  end
  local metadata = { format = FORMAT, version = VERSION, model_keys = tostring(nmodel), rng_state = dd.rng_state() }
  if opts.optimizer ~= nil then
    if not has_method(opts.optimizer, "state_dict") then
      error(fn .. ": optimizer must have a state_dict() method, got " .. type(opts.optimizer), 2)
    end
    local scalars = {}
    for k, v in pairs(opts.optimizer:state_dict()) do
      if is_tensor(v) then tensors["optimizer." .. k] = v else scalars[k] = v end
    end
    metadata.optimizer = dd.json.encode(scalars)
  end
  if opts.meta ~= nil then
    if type(opts.meta) ~= "table" then error(fn .. ": meta must be a table, got " .. type(opts.meta), 2) end
    local ok, text = pcall(dd.json.encode, opts.meta)
    if not ok then error(fn .. ": meta cannot be stored as JSON: " .. tostring(text), 2) end
    metadata.meta = text
  end
  local ok, err = pcall(dd.save, path, tensors, metadata)
  if not ok then error(fn .. ": " .. tostring(err):gsub("^dd%.save: ", ""), 2) end
end

-- Compares the file's model entries with the model's own (no change made):
-- missing, unexpected and mis-shaped keys are named.
local function check_model(path, file_sd, model_sd)
  local missing, extra, shapes = {}, {}, {}
  for _, k in ipairs(sorted_keys(model_sd)) do
    local f = file_sd[k]
    if f == nil then
      missing[#missing + 1] = "'" .. k .. "'"
    elseif is_tensor(model_sd[k]) and shape_text(f) ~= shape_text(model_sd[k]) then
      shapes[#shapes + 1] = ("'%s' is %s in the file, %s in the model"):format(k, shape_text(f), shape_text(model_sd[k]))
    end
  end
  for _, k in ipairs(sorted_keys(file_sd)) do
    if model_sd[k] == nil then extra[#extra + 1] = "'" .. k .. "'" end
  end
  local problems = {}
  if #missing > 0 then problems[#problems + 1] = "missing " .. table.concat(missing, ", ") end
  if #extra > 0 then problems[#problems + 1] = "unexpected " .. table.concat(extra, ", ") end
  if #shapes > 0 then problems[#problems + 1] = table.concat(shapes, "; ") end
  if #problems > 0 then
    error(("dd.nn.load: %s does not match the model: %s"):format(path, table.concat(problems, "; ")), 3)
  end
end

local function decode(path, what, text)
  local ok, v = pcall(dd.json.decode, text)
  if not ok or type(v) ~= "table" then
    error(("dd.nn.load: %s: the '%s' metadata is damaged (%s)"):format(path, what,
      ok and ("a " .. type(v) .. ", expected an object") or tostring(v)), 3)
  end
  return v
end

--- dd.nn.load(path, model [, opt] [, {restore_rng=false}]) -> meta
-- Loads the model (strictly: every entry present and of the right shape) and
-- the optimizer when given; returns the saved meta table plus meta.rng_state.
-- The RNG is restored only with restore_rng=true. Everything is checked
-- before the model or the optimizer changes.
function dd.nn.load(path, model, opt, opts)
  local fn = "dd.nn.load"
  if type(path) ~= "string" then error(fn .. ": path must be a string, got " .. type(path), 2) end
  if not has_method(model, "load_state_dict") then
    error(fn .. ": model must have state_dict() and load_state_dict() methods, got " .. type(model), 2)
  end
  if opts == nil and type(opt) == "table" and getmetatable(opt) == nil and opt.load_state_dict == nil then
    opt, opts = nil, opt -- dd.nn.load(path, model, {restore_rng=true})
  end
  if opt ~= nil and not has_method(opt, "load_state_dict") then
    error(fn .. ": optimizer must have a load_state_dict() method, got " .. type(opt), 2)
  end
  opts = check_options(fn, opts, { restore_rng = true })

  local ok, tensors, metadata = pcall(dd.load, path)
  if not ok then error(fn .. ": cannot read checkpoint: " .. tostring(tensors):gsub("^dd%.load: ", ""), 2) end
  if metadata.format ~= FORMAT then
    error(("%s: %s is not a deepdance checkpoint (its metadata has %s, expected format=%s)"):format(fn, path,
      metadata.format and ("format=" .. metadata.format) or "no 'format'", FORMAT), 2)
  end
  if metadata.version ~= VERSION then
    error(("%s: %s is checkpoint version %s; this runtime reads version %s"):format(fn, path,
      tostring(metadata.version), VERSION), 2)
  end
  local model_sd, opt_sd, nmodel = {}, {}, 0
  for k, v in pairs(tensors) do
    local mk = k:match("^model%.(.+)$")
    local ok_ = k:match("^optimizer%.(.+)$")
    if mk then
      model_sd[mk] = v
      nmodel = nmodel + 1
    elseif ok_ then
      opt_sd[ok_] = v
    else
      error(("%s: %s: unexpected tensor '%s' (expected model.* and optimizer.* only)"):format(fn, path, k), 2)
    end
  end
  if tostring(nmodel) ~= metadata.model_keys then
    error(("%s: %s is damaged: its metadata says %s model tensors, it holds %d"):format(fn, path,
      tostring(metadata.model_keys), nmodel), 2)
  end
  check_model(path, model_sd, model:state_dict())
  local meta = metadata.meta and decode(path, "meta", metadata.meta) or {}
  local rng_state = metadata.rng_state
  if opts.restore_rng and not (type(rng_state) == "string" and rng_state:match("^%x+$") and #rng_state == 64) then
    error(("%s: %s has no valid rng_state to restore (got %s)"):format(fn, path, tostring(rng_state)), 2)
  end

  if opt ~= nil then
    if metadata.optimizer == nil then
      error(("%s: %s has no optimizer state (it was saved without {optimizer=...})"):format(fn, path), 2)
    end
    for k, v in pairs(decode(path, "optimizer", metadata.optimizer)) do
      if opt_sd[k] ~= nil then error(("%s: %s is damaged: optimizer entry '%s' is both a tensor and a scalar"):format(fn, path, k), 2) end
      opt_sd[k] = v
    end
    local ok2, err = pcall(opt.load_state_dict, opt, opt_sd)
    if not ok2 then error(("%s: %s: optimizer: %s"):format(fn, path, tostring(err)), 2) end
  end
  local ok3, err = pcall(model.load_state_dict, model, model_sd)
  if not ok3 then error(("%s: %s: model: %s"):format(fn, path, tostring(err)), 2) end

  meta.rng_state = rng_state
  if opts.restore_rng then dd.set_rng_state(rng_state) end
  return meta
end

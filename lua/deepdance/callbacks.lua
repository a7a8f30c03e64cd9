-- deepdance.callbacks: what dd.fit calls around epochs and batches, Keras style.
--
-- A callback is any table with some of these hooks (all optional):
--   on_train_begin(ctx)                 once per dd.fit call, after a resume has restored ctx.history
--   on_epoch_begin(ctx, epoch)
--   on_batch_end(ctx, batch, logs)      logs = {size=, loss=, <metric>=} of that one batch
--   on_epoch_end(ctx, epoch, logs)      logs = the epoch's row of the history
--   on_train_end(ctx)
--   state_dict() -> table               what a resumed run needs (numbers, strings, booleans,
--   load_state_dict(t)                  tables, Tensors); saved in every fit checkpoint
-- ctx has model, optimizer, history, epoch, epochs, initial_epoch, log_keys (the keys every
-- epoch's logs will have), checkpoint_dir, stop_training (set true to stop after this epoch)
-- and print(text) (a line that does not tear the progress bar).
--
-- Provided: ReduceLROnPlateau, EarlyStopping, ModelCheckpoint, CSVLogger (Keras 2
-- semantics). This file also returns the helpers dd.fit shares with it: strict
-- option checks and the exact JSON packing of saved state.
local dd = ...

local callbacks = {}
dd.callbacks = callbacks
local util = {}

local TENSOR_MT = getmetatable(dd.zeros(0))
function util.is_tensor(v) return getmetatable(v) == TENSOR_MT end

-- Hooks dd.fit knows; any other on_* function on a callback is a misspelling.
util.HOOKS = { on_train_begin = true, on_epoch_begin = true, on_batch_end = true, on_epoch_end = true, on_train_end = true }

---------------------------------------------------------------------------
-- Strict options
---------------------------------------------------------------------------

-- Checks raise without a position (level 0); public functions run them
-- through util.public, which re-raises at the caller's line.
function util.public(f)
  return function(...)
    local ok, result = pcall(f, ...)
    if not ok then error(result, 2) end
    return result
  end
end

--- util.options(fn, opts, known [, positional]) -> opts
-- known: the option names in the order the message lists them. positional:
-- names for opts[1], opts[2], ... (e.g. {"path"}), copied into the named keys.
function util.options(fn, opts, known, positional)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error(("%s: expected a table of options, got %s"):format(fn, type(opts)), 0) end
  local out, is_known = {}, {}
  for _, k in ipairs(known) do is_known[k] = true end
  for k, v in pairs(opts) do
    local name = k
    if math.type(k) == "integer" and positional and positional[k] then
      name = positional[k]
      if opts[name] ~= nil then error(("%s: option '%s' given twice (by position and by name)"):format(fn, name), 0) end
    end
    if not is_known[name] then
      error(("%s: unknown option '%s' (known: %s)"):format(fn, tostring(k), table.concat(known, ", ")), 0)
    end
    out[name] = v
  end
  return out
end

-- Type checks shared by dd.fit and the callbacks: each returns the value (or
-- the default when nil) or raises "fn: option 'name' must be ..., got ...".
local function got(v)
  if type(v) == "string" then return ("'%s'"):format(v) end
  if type(v) == "number" then return tostring(v) end
  return "a " .. type(v)
end

function util.check(fn, name, v, kind, default)
  if v == nil then return default end
  local ok
  if kind == "number" then ok = type(v) == "number" and v == v
  elseif kind == "nonneg" then ok = type(v) == "number" and v >= 0
  elseif kind == "count" then ok = math.type(v) == "integer" and v >= 0
  elseif kind == "positive integer" then ok = math.type(v) == "integer" and v >= 1
  elseif kind == "fraction" then ok = type(v) == "number" and v >= 0 and v < 1
  elseif kind == "factor" then ok = type(v) == "number" and v > 0 and v < 1
  elseif kind == "boolean" then ok = type(v) == "boolean"
  elseif kind == "string" then ok = type(v) == "string" and v ~= ""
  elseif kind == "mode" then ok = v == "auto" or v == "min" or v == "max"
  else error("util.check: unknown kind " .. tostring(kind)) end
  if not ok then
    local want = ({
      number = "a number", nonneg = "a number >= 0", count = "an integer >= 0",
      ["positive integer"] = "an integer >= 1", fraction = "a number in [0, 1)", factor = "a number in (0, 1)",
      boolean = "a boolean", string = "a non-empty string", mode = "'auto', 'min' or 'max'",
    })[kind]
    error(("%s: option '%s' must be %s, got %s"):format(fn, name, want, got(v)), 0)
  end
  return v
end

---------------------------------------------------------------------------
-- Exact JSON packing of saved state
---------------------------------------------------------------------------
-- JSON text drops the last bit of some doubles (cJSON prints 15 digits when
-- they compare equal within an epsilon) and cannot hold inf or NaN, yet a
-- resumed run must continue with bit-identical numbers. So packed state keeps
-- integers and booleans as they are, turns floats into strings ("%.17g",
-- "inf", "-inf", "nan"), prefixes strings with "s:", and moves Tensors into
-- `tensors` under a path, leaving "t:<path>" in their place.

function util.pack(v, tensors, path)
  local t = type(v)
  if t == "number" then
    if math.type(v) == "integer" then return v end
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
    return ("%.17g"):format(v)
  elseif t == "string" then
    return "s:" .. v
  elseif t == "boolean" then
    return v
  elseif util.is_tensor(v) then
    if not tensors then error(("cannot save a Tensor at '%s' here"):format(path), 0) end
    tensors[path] = v:contiguous()
    return "t:" .. path
  elseif t == "table" then
    local out = {}
    for k, x in pairs(v) do
      if type(k) ~= "string" and math.type(k) ~= "integer" then
        error(("cannot save a table key of type %s at '%s'"):format(type(k), path), 0)
      end
      out[k] = util.pack(x, tensors, path .. "/" .. tostring(k))
    end
    return out
  end
  error(("cannot save a %s at '%s'"):format(t, path), 0)
end

function util.unpack(v, tensors)
  if type(v) == "string" then
    local kind, rest = v:sub(1, 2), v:sub(3)
    if kind == "s:" then return rest end
    if kind == "t:" then
      local tensor = tensors and tensors[rest]
      if not tensor then error(("saved state refers to a missing tensor '%s'"):format(rest), 0) end
      return tensor
    end
    if v == "nan" then return 0 / 0 end
    if v == "inf" then return math.huge end
    if v == "-inf" then return -math.huge end
    local x = tonumber(v)
    if not x then error(("saved state holds an unreadable value %q"):format(v), 0) end
    return x + 0.0
  elseif type(v) == "table" then
    local out = {}
    for k, x in pairs(v) do out[k] = util.unpack(x, tensors) end
    return out
  end
  return v
end

-- A JSON-encodable copy for human-read metadata (logs, histories): JSON
-- cannot hold NaN or infinities, so they become text; tables are copied
-- recursively. Also dd.json.safe.
function util.json_safe(v)
  if type(v) == "number" and (v ~= v or v == math.huge or v == -math.huge) then return tostring(v) end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = util.json_safe(x) end
  return out
end
dd.json.safe = util.json_safe

---------------------------------------------------------------------------
-- Monitoring a logged quantity
---------------------------------------------------------------------------

-- 'auto' is 'max' for accuracies and IoU ("acc", "val_binary_accuracy", "val_iou"), else 'min'.
local function resolve_mode(monitor, mode)
  if mode ~= "auto" then return mode end
  return (monitor:find("acc", 1, true) or monitor:find("iou", 1, true)) and "max" or "min"
end

-- Whether `current` improves on `best` by more than min_delta. NaN never improves.
local function improves(mode, current, best, min_delta)
  if mode == "min" then return current < best - min_delta end
  return current > best + min_delta
end

local function worst(mode) return mode == "min" and math.huge or -math.huge end

local function require_monitor(name, ctx, monitor)
  for _, k in ipairs(ctx.log_keys) do
    if k == monitor then return end
  end
  error(("%s: monitor '%s' is not logged by this run (logged: %s)"):format(name, monitor,
    table.concat(ctx.log_keys, ", ")), 0)
end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

function util.mkdir(fn, dir)
  local ok = os.execute("mkdir -p " .. quote(dir))
  if not ok then error(("%s: cannot create directory '%s'"):format(fn, dir), 0) end
end

---------------------------------------------------------------------------
-- ReduceLROnPlateau
---------------------------------------------------------------------------
local ReduceLROnPlateau = { kind = "ReduceLROnPlateau" }
ReduceLROnPlateau.__index = ReduceLROnPlateau

--- dd.callbacks.ReduceLROnPlateau{monitor='val_loss', factor=0.1, patience=10,
--   min_lr=0, mode='auto', min_delta=1e-4, cooldown=0, verbose=true}
-- After `patience` epochs without an improvement of more than min_delta,
-- lr = max(lr * factor, min_lr), then `cooldown` epochs without counting.
callbacks.ReduceLROnPlateau = util.public(function(opts)
  local fn = "ReduceLROnPlateau"
  opts = util.options(fn, opts, { "monitor", "factor", "patience", "min_lr", "mode", "min_delta", "cooldown", "verbose" })
  local self = setmetatable({
    monitor = util.check(fn, "monitor", opts.monitor, "string", "val_loss"),
    factor = util.check(fn, "factor", opts.factor, "factor", 0.1),
    patience = util.check(fn, "patience", opts.patience, "count", 10),
    min_lr = util.check(fn, "min_lr", opts.min_lr, "nonneg", 0),
    min_delta = util.check(fn, "min_delta", opts.min_delta, "nonneg", 1e-4),
    cooldown = util.check(fn, "cooldown", opts.cooldown, "count", 0),
    verbose = util.check(fn, "verbose", opts.verbose, "boolean", true),
  }, ReduceLROnPlateau)
  self.mode = resolve_mode(self.monitor, util.check(fn, "mode", opts.mode, "mode", "auto"))
  self.best, self.wait, self.cooldown_counter = worst(self.mode), 0, 0
  return self
end)

function ReduceLROnPlateau:on_train_begin(ctx)
  require_monitor(self.kind, ctx, self.monitor)
  self.best, self.wait, self.cooldown_counter = worst(self.mode), 0, 0
end

function ReduceLROnPlateau:on_epoch_end(ctx, epoch, logs)
  local current = logs[self.monitor]
  if self.cooldown_counter > 0 then
    self.cooldown_counter = self.cooldown_counter - 1
    self.wait = 0
  end
  if improves(self.mode, current, self.best, self.min_delta) then
    self.best, self.wait = current, 0
  elseif self.cooldown_counter == 0 then
    self.wait = self.wait + 1
    if self.wait >= self.patience then
      local old = ctx.optimizer.lr
      if old > self.min_lr then
        local new = math.max(old * self.factor, self.min_lr)
        ctx.optimizer.lr = new
        if self.verbose then
          ctx.print(("Epoch %d: ReduceLROnPlateau reducing learning rate to %g."):format(epoch, new))
        end
        self.cooldown_counter, self.wait = self.cooldown, 0
      end
    end
  end
end

function ReduceLROnPlateau:state_dict()
  return { best = self.best, wait = self.wait, cooldown_counter = self.cooldown_counter }
end

function ReduceLROnPlateau:load_state_dict(t)
  self.best, self.wait, self.cooldown_counter = t.best, t.wait, t.cooldown_counter
end

---------------------------------------------------------------------------
-- CosineDecay
---------------------------------------------------------------------------
local CosineDecay = { kind = "CosineDecay" }
CosineDecay.__index = CosineDecay

--- dd.callbacks.CosineDecay{lr=, min_lr=0}: the learning rate follows half a
-- cosine over the whole run, batch by batch (Keras's CosineDecay schedule,
-- SGDR without restarts): before step s of S = epochs x batches per epoch it
-- is min_lr + (lr - min_lr) (1 + cos(pi s / S)) / 2, from lr down to min_lr.
-- It keeps no state of its own: the step comes from the epoch and batch, so
-- a resumed run continues the same curve.
callbacks.CosineDecay = util.public(function(opts)
  local fn = "CosineDecay"
  opts = util.options(fn, opts, { "lr", "min_lr" })
  if opts.lr == nil then error(fn .. ": option 'lr' is required (the learning rate at the start)", 0) end
  local self = setmetatable({
    lr = util.check(fn, "lr", opts.lr, "nonneg"),
    min_lr = util.check(fn, "min_lr", opts.min_lr, "nonneg", 0),
  }, CosineDecay)
  if self.min_lr > self.lr then
    error(("%s: min_lr (%g) must not exceed lr (%g)"):format(fn, self.min_lr, self.lr), 0)
  end
  return self
end)

function CosineDecay:rate(ctx, epoch, step)
  local total = ctx.epochs * ctx.steps_per_epoch
  local s = (epoch - 1) * ctx.steps_per_epoch + step
  return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * math.min(s, total) / total)) / 2
end

function CosineDecay:on_epoch_begin(ctx, epoch) ctx.optimizer.lr = self:rate(ctx, epoch, 0) end
function CosineDecay:on_batch_end(ctx, step) ctx.optimizer.lr = self:rate(ctx, ctx.epoch, step) end

---------------------------------------------------------------------------
-- EarlyStopping
---------------------------------------------------------------------------
local EarlyStopping = { kind = "EarlyStopping" }
EarlyStopping.__index = EarlyStopping

--- dd.callbacks.EarlyStopping{monitor='val_loss', patience=0, min_delta=0,
--   mode='auto', restore_best_weights=false, verbose=true}
-- Stops after `patience` epochs without an improvement of more than
-- min_delta; restore_best_weights puts back the weights of the best epoch
-- when it stops (Keras 2). The best weights are part of its saved state, so a
-- resumed run can still restore them (fit keeps them next to its checkpoint).
callbacks.EarlyStopping = util.public(function(opts)
  local fn = "EarlyStopping"
  opts = util.options(fn, opts, { "monitor", "patience", "min_delta", "mode", "restore_best_weights", "verbose" })
  local self = setmetatable({
    monitor = util.check(fn, "monitor", opts.monitor, "string", "val_loss"),
    patience = util.check(fn, "patience", opts.patience, "count", 0),
    min_delta = util.check(fn, "min_delta", opts.min_delta, "nonneg", 0),
    restore_best_weights = util.check(fn, "restore_best_weights", opts.restore_best_weights, "boolean", false),
    verbose = util.check(fn, "verbose", opts.verbose, "boolean", true),
  }, EarlyStopping)
  self.mode = resolve_mode(self.monitor, util.check(fn, "mode", opts.mode, "mode", "auto"))
  self:reset()
  return self
end)

function EarlyStopping:reset()
  self.best, self.best_epoch, self.wait, self.stopped_epoch, self.best_weights = worst(self.mode), 0, 0, 0, nil
end

function EarlyStopping:on_train_begin(ctx)
  require_monitor(self.kind, ctx, self.monitor)
  self:reset()
end

-- Copies the model's tensors into self.best_weights (allocated once).
local function snapshot(model, into)
  into = into or {}
  for k, v in pairs(model:state_dict()) do
    if into[k] then into[k]:copy(v) else into[k] = v:clone() end
  end
  return into
end

function EarlyStopping:on_epoch_end(ctx, epoch, logs)
  local current = logs[self.monitor]
  if improves(self.mode, current, self.best, self.min_delta) then
    self.best, self.best_epoch, self.wait = current, epoch, 0
    if self.restore_best_weights then self.best_weights = snapshot(ctx.model, self.best_weights) end
    return
  end
  self.wait = self.wait + 1
  if self.wait >= self.patience then
    self.stopped_epoch = epoch
    ctx.stop_training = true
    local restored = self.restore_best_weights and self.best_weights
    if restored then ctx.model:load_state_dict(self.best_weights) end
    if self.verbose then
      ctx.print(("Epoch %d: EarlyStopping: no improvement of %s for %d epochs%s."):format(epoch, self.monitor,
        self.wait, restored and ("; restored the weights of epoch %d"):format(self.best_epoch) or ""))
    end
  end
end

function EarlyStopping:state_dict()
  return { best = self.best, best_epoch = self.best_epoch, wait = self.wait, stopped_epoch = self.stopped_epoch,
    best_weights = self.best_weights }
end

function EarlyStopping:load_state_dict(t)
  self.best, self.best_epoch, self.wait, self.stopped_epoch = t.best, t.best_epoch, t.wait, t.stopped_epoch
  self.best_weights = t.best_weights
end

---------------------------------------------------------------------------
-- ModelCheckpoint
---------------------------------------------------------------------------
local ModelCheckpoint = { kind = "ModelCheckpoint" }
ModelCheckpoint.__index = ModelCheckpoint

--- dd.callbacks.ModelCheckpoint{dir, monitor='val_loss', mode='auto', save_best=true, save_last=true, meta=}
-- DIR/best.safetensors: the model at the best epoch so far (meta: epoch, logs,
-- plus the entries of `meta`, e.g. the options that rebuild the model; they
-- are also kept in the callback's state, so dd.fit's last.safetensors has them).
-- DIR/last.safetensors: model and optimizer after every epoch. Both through
-- dd.nn.save, so each write is atomic. When DIR is dd.fit's checkpoint_dir,
-- fit's own last.safetensors (a superset) is the one written.
callbacks.ModelCheckpoint = util.public(function(opts)
  local fn = "ModelCheckpoint"
  opts = util.options(fn, opts, { "dir", "monitor", "mode", "save_best", "save_last", "verbose", "meta" }, { "dir" })
  if opts.dir == nil then error(fn .. ": option 'dir' is required (a directory for best.safetensors and last.safetensors)", 0) end
  if opts.meta ~= nil and type(opts.meta) ~= "table" then
    error(("%s: option 'meta' must be a table, got %s"):format(fn, got(opts.meta)), 0)
  end
  local self = setmetatable({
    dir = util.check(fn, "dir", opts.dir, "string"):gsub("/+$", ""),
    monitor = util.check(fn, "monitor", opts.monitor, "string", "val_loss"),
    save_best = util.check(fn, "save_best", opts.save_best, "boolean", true),
    save_last = util.check(fn, "save_last", opts.save_last, "boolean", true),
    verbose = util.check(fn, "verbose", opts.verbose, "boolean", false),
    meta = opts.meta,
  }, ModelCheckpoint)
  self.mode = resolve_mode(self.monitor, util.check(fn, "mode", opts.mode, "mode", "auto"))
  self.best = worst(self.mode)
  return self
end)

function ModelCheckpoint:on_train_begin(ctx)
  if self.save_best then require_monitor(self.kind, ctx, self.monitor) end
  util.mkdir(self.kind, self.dir)
  self.best = worst(self.mode)
end

function ModelCheckpoint:on_epoch_end(ctx, epoch, logs)
  local meta = { epoch = epoch, logs = util.json_safe(logs) }
  for k, v in pairs(self.meta or {}) do meta[k] = v end
  if self.save_best and improves(self.mode, logs[self.monitor], self.best, 0) then
    self.best = logs[self.monitor]
    dd.nn.save(self.dir .. "/best.safetensors", ctx.model, { meta = meta })
    if self.verbose then
      ctx.print(("Epoch %d: %s improved to %s, saved %s/best.safetensors"):format(epoch, self.monitor,
        dd.progress.format_value(self.best), self.dir))
    end
  end
  if self.save_last and self.dir ~= ctx.checkpoint_dir then
    dd.nn.save(self.dir .. "/last.safetensors", ctx.model, { optimizer = ctx.optimizer, meta = meta })
  end
end

function ModelCheckpoint:state_dict() return { best = self.best, meta = self.meta } end
function ModelCheckpoint:load_state_dict(t) self.best = t.best end

---------------------------------------------------------------------------
-- CSVLogger
---------------------------------------------------------------------------
local CSVLogger = { kind = "CSVLogger" }
CSVLogger.__index = CSVLogger

--- dd.callbacks.CSVLogger{path, separator=','}: one row per epoch, columns
-- epoch then the history's keys, header once. Every write replaces the whole
-- file (a temporary file renamed over it), so a kill never leaves a torn row.
-- A resumed run rewrites the rows of the epochs before the checkpoint from
-- the restored history, then appends: no duplicated or missing rows.
callbacks.CSVLogger = util.public(function(opts)
  local fn = "CSVLogger"
  opts = util.options(fn, opts, { "path", "separator" }, { "path" })
  if opts.path == nil then error(fn .. ": option 'path' is required (the CSV file to write)", 0) end
  return setmetatable({
    path = util.check(fn, "path", opts.path, "string"),
    separator = util.check(fn, "separator", opts.separator, "string", ","),
  }, CSVLogger)
end)

local function csv_value(v)
  if math.type(v) == "float" then return ("%.10g"):format(v) end
  return tostring(v)
end

function CSVLogger:row(values)
  local cells = {}
  for i, k in ipairs(self.columns) do cells[i] = csv_value(values[k]) end
  return table.concat(cells, self.separator)
end

function CSVLogger:on_train_begin(ctx)
  self.columns = { "epoch" }
  for _, k in ipairs(ctx.log_keys) do self.columns[#self.columns + 1] = k end
  self.lines = { table.concat(self.columns, self.separator) }
  for _, row in ipairs(ctx.history.rows) do self.lines[#self.lines + 1] = self:row(row) end
end

function CSVLogger:on_epoch_end(ctx, epoch, logs)
  self.lines[#self.lines + 1] = self:row(logs)
  local tmp = self.path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then error("CSVLogger: cannot write " .. tostring(err), 0) end
  -- a full disk shows in write or only in close (the flush): never rename a torn file
  local written, werr = f:write(table.concat(self.lines, "\n"), "\n")
  local closed, cerr = f:close()
  if not written or not closed then
    os.remove(tmp)
    error(("CSVLogger: cannot write %s: %s (%s left as it was)"):format(tmp, tostring(werr or cerr), self.path), 0)
  end
  local ok, rerr = os.rename(tmp, self.path)
  if not ok then error(("CSVLogger: cannot rename %s to %s: %s"):format(tmp, self.path, tostring(rerr)), 0) end
end

return util

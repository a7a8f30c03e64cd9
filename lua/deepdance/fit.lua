-- deepdance.fit: dd.fit, the Keras-style training loop, with dd.evaluate and dd.predict.
--
--   local history = dd.fit{
--     model = ae, loss = dd.nn.MSELoss(), optimizer = dd.optim.Adam{ae:parameters()},
--     x = frames, batch_size = 128, epochs = 30, validation_split = 0.1, metrics = {"acc"},
--     callbacks = {dd.callbacks.ReduceLROnPlateau{monitor = "val_acc", patience = 20, min_lr = 1e-4}},
--     checkpoint_dir = "runs/ae", resume = true,
--   }
--   print(history.val_loss[#history.val_loss])
--
-- Read top to bottom: options; data sources (Tensors or datasets, batches
-- gathered on the fly); metrics and the history; one epoch of training; the
-- validation pass; the checkpoint that makes a killed run resumable; dd.fit
-- itself; dd.evaluate and dd.predict. docs/fit.md is the user's page.
local dd = ...
local util = assert(loadfile(dd.home .. "/lua/deepdance/callbacks.lua"))(dd)
assert(loadfile(dd.home .. "/lua/deepdance/progress.lua"))(dd)

local is_tensor, check = util.is_tensor, util.check

---------------------------------------------------------------------------
-- Arguments
---------------------------------------------------------------------------

local function has_methods(v, ...)
  local t = type(v)
  if t ~= "table" and t ~= "userdata" then return false end
  for _, name in ipairs({ ... }) do
    if type(v[name]) ~= "function" then return false end
  end
  return true
end

local function is_dataset(v) return not is_tensor(v) and has_methods(v, "size", "batch") end

local function describe(v)
  if is_tensor(v) then return "a Tensor" end
  if type(v) == "string" then return ("'%s'"):format(v) end
  return "a " .. type(v)
end

local function check_model(fn, model)
  if model == nil then error(fn .. ": option 'model' is required", 0) end
  if not has_methods(model, "forward", "backward", "state_dict") then
    error(("%s: option 'model' must be a module (forward, backward, state_dict), got %s"):format(fn, describe(model)), 0)
  end
end

local function check_loss(fn, loss, required)
  if loss == nil and not required then return end
  if not has_methods(loss, "forward", "backward") then
    error(("%s: option 'loss' must be a loss like dd.nn.MSELoss() (forward, backward), got %s"):format(fn,
      loss == nil and "nothing" or describe(loss)), 0)
  end
end

---------------------------------------------------------------------------
-- Data sources
---------------------------------------------------------------------------
-- A source hands out batches by 1-based sample indices: src.n samples and
-- src:take(indices) -> Tensor (#indices, ...). A Tensor source copies rows into
-- one buffer kept across steps (a run of consecutive rows of a contiguous
-- Tensor is a view instead: validation, predict, shuffle=false). A dataset
-- (anything with size() and batch(indices), like the uint8 frame cache
-- dd.data.frames) builds each batch itself, so the whole set never exists as float.

local TensorSource = {}
TensorSource.__index = TensorSource

local DatasetSource = {}
DatasetSource.__index = DatasetSource

local function consecutive(indices)
  for j = 2, #indices do
    if indices[j] ~= indices[j - 1] + 1 then return false end
  end
  return true
end

function TensorSource:take(indices)
  local k, t = #indices, self.t
  if self.contiguous and consecutive(indices) then return t:narrow(1, indices[1], k) end
  if not self.buf or self.buf:size(1) < k then
    local shape = t:shape()
    shape[1] = k
    self.buf = dd.zeros(table.unpack(shape))
  end
  local batch = self.buf:size(1) == k and self.buf or self.buf:narrow(1, 1, k)
  for j = 1, k do batch[j] = t[indices[j]] end
  return batch
end

function DatasetSource:take(indices)
  local batch = self.ds:batch(indices)
  if not is_tensor(batch) then
    error(("%s: %s:batch() returned %s, expected a Tensor"):format(self.fn, self.what, describe(batch)), 0)
  end
  if batch:dim() < 1 or batch:size(1) ~= #indices then
    error(("%s: %s:batch() was asked for %d samples and returned a Tensor of shape (%s)"):format(self.fn, self.what, #indices,
      table.concat(batch:shape(), ",")), 0)
  end
  return batch
end

local function make_source(fn, v, what)
  if is_tensor(v) then
    if v:dim() < 1 or v:size(1) < 1 then
      error(("%s: %s must have samples along its first dimension, got shape (%s)"):format(fn, what,
        table.concat(v:shape(), ",")), 0)
    end
    return setmetatable({ t = v, n = v:size(1), contiguous = v:is_contiguous() }, TensorSource)
  elseif is_dataset(v) then
    local n = v:size()
    if math.type(n) ~= "integer" or n < 1 then
      error(("%s: %s:size() must return an integer >= 1, got %s"):format(fn, what, describe(n)), 0)
    end
    return setmetatable({ ds = v, n = n, what = what, fn = fn }, DatasetSource)
  end
  error(("%s: %s must be a Tensor (samples first) or a dataset with size() and batch(indices), got %s"):format(fn,
    what, describe(v)), 0)
end

-- The target of a batch, as a function(indices, xbatch) -> Tensor:
-- y = nil, "x" or x itself is the input batch (autoencoding: built once), a
-- function is called, a Tensor or dataset is a second source of the same length.
local function make_target(fn, y, x, n, what)
  if y == nil or y == "x" or rawequal(y, x) then return function(_, xb) return xb end end
  if type(y) == "function" then
    return function(indices, xb)
      local yb = y(indices, xb)
      if not is_tensor(yb) then error(("%s: the %s function returned %s, expected a Tensor"):format(fn, what, describe(yb)), 0) end
      return yb
    end
  end
  if type(y) == "string" then error(("%s: %s must be a Tensor, a dataset, a function or 'x', got '%s'"):format(fn, what, y), 0) end
  local src = make_source(fn, y, what)
  if src.n ~= n then error(("%s: %s has %d samples but x has %d"):format(fn, what, src.n, n), 0) end
  return function(indices) return src:take(indices) end
end

-- Batch b (1-based) of `order`, a Lua array of sample indices.
local function batch_indices(order, b, batch_size)
  local first = (b - 1) * batch_size + 1
  local out = {}
  for i = first, math.min(first + batch_size - 1, #order) do out[#out + 1] = order[i] end
  return out
end

local function range(first, last)
  local out = {}
  for i = first, last do out[#out + 1] = i end
  return out
end

---------------------------------------------------------------------------
-- Metrics and the history
---------------------------------------------------------------------------

-- Keras's "acc": binary accuracy when the output has one value per sample
-- position (last dimension 1, or an (N, 1, H, W) image), else categorical.
local function accuracy(pred, target)
  local s = pred:shape()
  if s[#s] == 1 or (#s == 4 and s[2] == 1) then return dd.metrics.binary_accuracy(pred, target) end
  return dd.metrics.categorical_accuracy(pred, target)
end

local METRICS = {
  binary_accuracy = function(p, t) return dd.metrics.binary_accuracy(p, t) end,
  categorical_accuracy = function(p, t) return dd.metrics.categorical_accuracy(p, t) end,
  acc = accuracy,
  accuracy = accuracy,
  iou = function(p, t) return (dd.metrics.iou(p, t)) end,
}
local METRIC_NAMES = "acc, accuracy, binary_accuracy, categorical_accuracy, iou"
local RESERVED = { epoch = true, rows = true, loss = true, lr = true, time = true }

--- metrics = {"acc", "iou", psnr = function(pred, target) ... end} -> {{name=, fn=}, ...}
-- (named ones after the listed ones, sorted by name).
local function resolve_metrics(fn, spec)
  if spec == nil then return {} end
  if type(spec) ~= "table" then error(("%s: option 'metrics' must be a table, got %s"):format(fn, describe(spec)), 0) end
  local out, named = {}, {}
  for k, v in pairs(spec) do
    if math.type(k) == "integer" then
      if type(v) == "function" then
        error(("%s: metrics[%d] is a function without a name: write metrics = {name = fn}"):format(fn, k), 0)
      elseif not METRICS[v] then
        error(("%s: unknown metric %s (known: %s, or name = function(pred, target))"):format(fn, describe(v), METRIC_NAMES), 0)
      end
    elseif type(k) == "string" and type(v) == "function" then
      named[#named + 1] = k
    else
      error(("%s: metrics.%s must be a function(pred, target) -> number, got %s"):format(fn, tostring(k), describe(v)), 0)
    end
  end
  for i = 1, #spec do out[#out + 1] = { name = spec[i], fn = METRICS[spec[i]], owner = fn } end
  table.sort(named)
  for _, k in ipairs(named) do out[#out + 1] = { name = k, fn = spec[k], owner = fn } end
  local seen = {}
  for _, m in ipairs(out) do
    if RESERVED[m.name] or m.name:match("^val_") or seen[m.name] then
      error(("%s: metric name '%s' is reserved or given twice"):format(fn, m.name), 0)
    end
    seen[m.name] = true
  end
  return out
end

local function metric_value(m, pred, target)
  local v = m.fn(pred, target)
  if type(v) ~= "number" then error(("%s: metric '%s' returned %s, expected a number"):format(m.owner, m.name, describe(v)), 0) end
  return v
end

-- The keys of every epoch's logs, in display order.
local function log_keys(metrics, validate)
  local keys = { "loss" }
  for _, m in ipairs(metrics) do keys[#keys + 1] = m.name end
  if validate then
    keys[#keys + 1] = "val_loss"
    for _, m in ipairs(metrics) do keys[#keys + 1] = "val_" .. m.name end
  end
  keys[#keys + 1] = "lr"
  keys[#keys + 1] = "time"
  return keys
end

-- Keras's History.history shape, {epoch = {1, 2}, loss = {...}, ...}, plus
-- rows = {{epoch = 1, loss = ...}, ...}.
local function new_history(keys)
  local h = { epoch = {}, rows = {} }
  for _, k in ipairs(keys) do h[k] = {} end
  return h
end

local function history_append(h, keys, logs)
  h.epoch[#h.epoch + 1] = logs.epoch
  for _, k in ipairs(keys) do h[k][#h[k] + 1] = logs[k] end
  h.rows[#h.rows + 1] = logs
end

-- Sample-weighted running means: a batch of n samples counts n times.
local function add_weighted(sums, name, value, n) sums[name] = (sums[name] or 0) + value * n end

local function means(sums, seen)
  local out = {}
  for k, v in pairs(sums) do out[k] = v / seen end
  return out
end

---------------------------------------------------------------------------
-- One epoch of training, and a pass without training
---------------------------------------------------------------------------

local function call_hooks(run, hook, ...)
  for _, cb in ipairs(run.callbacks) do
    if cb[hook] then cb[hook](cb, run.ctx, ...) end
  end
end

-- The epoch's sample order: shuffled by the generator in the state rng (the
-- state before the epoch's draw, so a mid-epoch checkpoint can draw it again).
local function epoch_order(run, rng)
  if not run.shuffle then return run.train_order end
  local now = dd.rng_state()
  if rng ~= now then dd.set_rng_state(rng) end
  local order = dd.randperm(#run.train_order):totable()
  if rng ~= now then dd.set_rng_state(now) end
  return order
end

-- Trains one epoch, or the rest of one from `resume` (a mid-epoch checkpoint:
-- {step=, rng_order=, sums=, seen=}). Returns the epoch's logs; or, when a
-- Ctrl-C came (dd.interrupted(), polled between batches), nil and where it
-- stopped, in the form `resume` takes.
local function train_epoch(run, epoch, resume)
  local model, opt, loss = run.model, run.optimizer, run.loss
  local rng_order = resume and resume.rng_order or dd.rng_state()
  local order = epoch_order(run, rng_order)
  local steps = (#order + run.batch_size - 1) // run.batch_size
  local sums, seen = resume and resume.sums or {}, resume and resume.seen or 0
  local shown = { "loss" }
  for _, m in ipairs(run.metrics) do shown[#shown + 1] = m.name end

  if model.train then model:train() end
  run.progress:epoch_begin(epoch, run.epochs, steps)
  for step = resume and resume.step + 1 or 1, steps do
    local indices = batch_indices(order, step, run.batch_size)
    local xb = run.x:take(indices)
    local yb = run.target(indices, xb)
    local n = #indices

    opt:zero_grad()
    local out = model:forward(xb)
    local batch_logs = { size = n, loss = loss:forward(out, yb) }
    for _, m in ipairs(run.metrics) do batch_logs[m.name] = metric_value(m, out, yb) end
    model:backward(xb, loss:backward(out, yb), false) -- the data needs no gradient
    opt:step()

    seen = seen + n
    for _, k in ipairs(shown) do add_weighted(sums, k, batch_logs[k], n) end
    run.progress:update(step, shown, means(sums, seen))
    call_hooks(run, "on_batch_end", step, batch_logs)
    if step < steps and dd.interrupted() then
      return nil, { epoch = epoch, step = step, steps = steps, rng_order = rng_order, sums = sums, seen = seen }
    end
  end
  return means(sums, seen)
end

-- Mean loss and metrics over `order` in eval mode (validation, dd.evaluate).
local function evaluate_set(model, loss, metrics, x, target, order, batch_size)
  if model.eval then model:eval() end
  local sums, seen = {}, 0
  for b = 1, (#order + batch_size - 1) // batch_size do
    local indices = batch_indices(order, b, batch_size)
    local xb = x:take(indices)
    local yb = target(indices, xb)
    local out = model:forward(xb)
    local n = #indices
    if loss then add_weighted(sums, "loss", loss:forward(out, yb), n) end
    for _, m in ipairs(metrics) do add_weighted(sums, m.name, metric_value(m, out, yb), n) end
    seen = seen + n
  end
  return means(sums, seen)
end

---------------------------------------------------------------------------
-- Checkpoint: DIR/last.safetensors after every epoch
---------------------------------------------------------------------------
-- The model and optimizer tensors, and in the metadata (meta.fit, packed
-- exactly, see callbacks.lua) everything else a killed run needs to continue
-- as if never stopped: the epoch, the history, each callback's state, the
-- exact lr, whether training had stopped, and (dd.nn.save adds it) the RNG
-- state at the end of the epoch. Tensors in callback states (EarlyStopping's
-- best weights) go to DIR/callbacks-epochN.safetensors, written first; the
-- previous one is removed only once the new checkpoint names the new file.
-- A Ctrl-C stops training between two batches with a checkpoint of the epochs
-- done plus `partial`: how far the epoch got (see train_epoch), so that a
-- resumed run finishes it exactly as an uninterrupted one would have.

local CHECKPOINT = "last.safetensors"

local function save_checkpoint(run, epoch, partial)
  local ctx, dir = run.ctx, run.checkpoint_dir
  local states = {}
  for i, cb in ipairs(run.callbacks) do
    states[i] = { kind = cb.kind or "callback", state = cb.state_dict and cb:state_dict() or {} }
  end
  local columns = {}
  for _, k in ipairs(run.keys) do columns[k] = ctx.history[k] end
  local side = partial and ("callbacks-epoch%04d-batch%d.safetensors"):format(partial.epoch, partial.step)
    or ("callbacks-epoch%04d.safetensors"):format(epoch)
  local tensors = {}
  local ok, packed = pcall(util.pack, {
    epoch = epoch, stopped = ctx.stop_training, lr = run.optimizer.lr,
    keys = run.keys, history_epochs = ctx.history.epoch, columns = columns, callbacks = states,
    batch_size = run.batch_size, n_train = #run.train_order, shuffle = run.shuffle,
    callback_tensors = side, partial = partial,
  }, tensors, "")
  if not ok then error("dd.fit: checkpoint: a callback state " .. packed, 0) end
  -- A failed write (a full disk) leaves the previous checkpoint whole: say so,
  -- with the writer's own message (path and reason) but not its position.
  local function write(f, ...)
    local written, err = pcall(f, ...)
    if not written then
      error(("dd.fit: checkpoint not saved: %s"):format(tostring(err):gsub("^[^:\n]*:%d+: ", "")), 0)
    end
  end
  if next(tensors) then
    write(dd.save, dir .. "/" .. side, tensors, { format = "deepdance-fit-callbacks", epoch = tostring(epoch) })
  else
    packed.callback_tensors, side = nil, nil
  end
  write(dd.nn.save, dir .. "/" .. CHECKPOINT, run.model, { optimizer = run.optimizer, meta = { fit = packed } })
  if run.side_file and run.side_file ~= side then os.remove(dir .. "/" .. run.side_file) end
  run.side_file = side
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Restores model, optimizer, RNG, history and callback states from
-- DIR/last.safetensors; returns the saved epoch, or nil when there is none.
-- The saved run is checked against this one before anything changes.
local function load_checkpoint(run)
  local fn, ctx = "dd.fit: resume", run.ctx
  local path = run.checkpoint_dir .. "/" .. CHECKPOINT
  if not file_exists(path) then
    ctx.print(("resume: no checkpoint at %s, starting from epoch 1"):format(path))
    return nil
  end
  local header = dd.safetensors_header(path)
  local text = header.__metadata__ and header.__metadata__.meta
  local ok, meta = pcall(dd.json.decode, text or "")
  if not ok or type(meta) ~= "table" or type(meta.fit) ~= "table" then
    error(("%s: %s was not written by dd.fit (no fit state in its metadata)"):format(fn, path), 0)
  end
  local side = meta.fit.callback_tensors and util.unpack(meta.fit.callback_tensors)
  local tensors = side and dd.load(run.checkpoint_dir .. "/" .. side) or nil
  local s = util.unpack(meta.fit, tensors)

  local saved, now = table.concat(s.keys, ", "), table.concat(run.keys, ", ")
  if saved ~= now then
    error(("%s: %s logged {%s}; this run logs {%s} (same metrics and validation needed)"):format(fn, path, saved, now), 0)
  end
  local kinds_saved, kinds_now = {}, {}
  for i, st in ipairs(s.callbacks) do kinds_saved[i] = st.kind end
  for i, cb in ipairs(run.callbacks) do kinds_now[i] = cb.kind or "callback" end
  if table.concat(kinds_saved, ", ") ~= table.concat(kinds_now, ", ") then
    error(("%s: %s was saved with callbacks {%s}; this run has {%s}"):format(fn, path,
      table.concat(kinds_saved, ", "), table.concat(kinds_now, ", ")), 0)
  end
  for _, field in ipairs({ "batch_size", "n_train", "shuffle" }) do
    local now_value = field == "n_train" and #run.train_order or run[field]
    if s[field] ~= now_value and s.partial then
      error(("%s: %s stopped in the middle of epoch %d with %s = %s; this run has %s (finish that epoch with the same data and options)")
        :format(fn, path, s.partial.epoch, field, tostring(s[field]), tostring(now_value)), 0)
    elseif s[field] ~= now_value then
      ctx.print(("resume: %s was %s in the saved run and is %s now; the continued run will differ from an uninterrupted one")
        :format(field, tostring(s[field]), tostring(now_value)))
    end
  end

  local loaded, err = pcall(dd.nn.load, path, run.model, run.optimizer, { restore_rng = true })
  if not loaded then error(("%s: %s"):format(fn, tostring(err):gsub("^[^:\n]*:%d+: ", "")), 0) end
  run.optimizer.lr = s.lr -- the exact double (the optimizer's JSON may round the last bit)
  for i, e in ipairs(s.history_epochs) do
    local row = { epoch = e }
    for _, k in ipairs(run.keys) do row[k] = s.columns[k][i] end
    history_append(ctx.history, run.keys, row)
  end
  run.saved_states = s.callbacks
  run.side_file = side
  run.partial = s.partial
  ctx.stop_training = s.stopped
  if s.partial then
    ctx.print(("resume: continuing %s in epoch %d after batch %d of %d"):format(path, s.partial.epoch, s.partial.step,
      s.partial.steps))
  else
    ctx.print(("resume: continuing %s after epoch %d"):format(path, s.epoch))
  end
  return s.epoch
end

-- Ctrl-C during dd.fit: the error it raises is this object, not a string, so
-- that the runtime prints its message without a traceback and a caller can
-- tell it apart: err.interrupted == true, err.checkpoint (nil without
-- checkpoint_dir), err.epoch, err.batch (nil when it stopped at an epoch's end).
local Interrupted = { __name = "dd.fit interruption" }
Interrupted.__index = Interrupted
Interrupted.__tostring = function(e) return e.message end

-- Saves a mid-epoch checkpoint (at = {epoch=, step=, ...} from train_epoch) or
-- none (at = {epoch=}: the epoch's own checkpoint is written), then raises.
local function interrupted(run, at)
  local saved
  if run.checkpoint_dir then
    if at.step then save_checkpoint(run, at.epoch - 1, at) end
    saved = run.checkpoint_dir .. "/" .. CHECKPOINT
  end
  run.progress:clear()
  local where = at.step and ("in epoch %d after batch %d of %d"):format(at.epoch, at.step, at.steps)
    or ("after epoch %d"):format(at.epoch)
  error(setmetatable({
    interrupted = true, checkpoint = saved, epoch = at.epoch, batch = at.step,
    message = ("dd.fit: interrupted (Ctrl-C) %s; %s"):format(where,
      saved and ("saved %s: resume=true continues from there"):format(saved) or "nothing saved (no checkpoint_dir)"),
  }, Interrupted), 0)
end

---------------------------------------------------------------------------
-- dd.fit
---------------------------------------------------------------------------

local FIT_OPTIONS = { "model", "loss", "optimizer", "x", "y", "batch_size", "epochs", "validation_split",
  "validation_data", "shuffle", "metrics", "callbacks", "checkpoint_dir", "resume", "progress", "output" }

-- Checks every option and builds the run: sources, the train/validation
-- split, metrics, callbacks, the progress display and the callbacks' ctx.
local function prepare(opts)
  local fn = "dd.fit"
  local o = util.options(fn, opts, FIT_OPTIONS)
  check_model(fn, o.model)
  check_loss(fn, o.loss, true)
  if not has_methods(o.optimizer, "step", "zero_grad", "state_dict", "load_state_dict") or type(o.optimizer.lr) ~= "number" then
    error(("%s: option 'optimizer' must be an optimizer like dd.optim.Adam{model:parameters()}, got %s"):format(fn,
      o.optimizer == nil and "nothing" or describe(o.optimizer)), 0)
  end
  if o.x == nil then error(fn .. ": option 'x' is required (a Tensor with samples first, or a dataset)", 0) end
  local run = {
    model = o.model, loss = o.loss, optimizer = o.optimizer,
    batch_size = check(fn, "batch_size", o.batch_size, "positive integer", 32),
    epochs = check(fn, "epochs", o.epochs, "positive integer", 1),
    shuffle = check(fn, "shuffle", o.shuffle, "boolean", true),
    checkpoint_dir = o.checkpoint_dir and check(fn, "checkpoint_dir", o.checkpoint_dir, "string"):gsub("/+$", ""),
    resume = check(fn, "resume", o.resume, "boolean", false),
  }
  local split = check(fn, "validation_split", o.validation_split, "fraction", 0)
  if run.resume and not run.checkpoint_dir then error(fn .. ": resume=true needs checkpoint_dir", 0) end
  if o.progress ~= nil and not dd.progress.modes[o.progress] then
    error(("%s: option 'progress' must be 'bar', 'lines' or 'none', got %s"):format(fn, describe(o.progress)), 0)
  end
  if o.output ~= nil and not has_methods(o.output, "write") then
    error(("%s: option 'output' must have a write method (like io.stdout), got %s"):format(fn, describe(o.output)), 0)
  end

  -- Data: validation_split takes the last samples, unshuffled (Keras).
  run.x = make_source(fn, o.x, "x")
  run.target = make_target(fn, o.y, o.x, run.x.n, "y")
  local n_train = run.x.n
  if o.validation_data ~= nil then
    if split > 0 then error(fn .. ": give validation_split or validation_data, not both", 0) end
    local vd = o.validation_data
    local shape_ok = type(vd) == "table" and vd[1] ~= nil and #vd <= 2
    for k in pairs(shape_ok and vd or {}) do
      if math.type(k) ~= "integer" or k < 1 or k > #vd then shape_ok = false end
    end
    if not shape_ok then
      error(("%s: option 'validation_data' must be {x} or {x, y}, got %s"):format(fn, describe(vd)), 0)
    end
    run.val_x = make_source(fn, vd[1], "validation_data[1]")
    run.val_target = make_target(fn, vd[2], vd[1], run.val_x.n, "validation_data[2]")
    run.val_order = range(1, run.val_x.n)
  elseif split > 0 then
    n_train = math.floor(run.x.n * (1 - split))
    if n_train < 1 or n_train >= run.x.n then
      error(("%s: validation_split=%g of %d samples leaves %d for training and %d for validation"):format(fn, split,
        run.x.n, n_train, run.x.n - n_train), 0)
    end
    run.val_x, run.val_target, run.val_order = run.x, run.target, range(n_train + 1, run.x.n)
  end
  run.train_order = range(1, n_train)

  run.metrics = resolve_metrics(fn, o.metrics)
  run.keys = log_keys(run.metrics, run.val_x ~= nil)
  run.callbacks = o.callbacks or {}
  if type(run.callbacks) ~= "table" then error(("%s: option 'callbacks' must be a list, got %s"):format(fn, describe(run.callbacks)), 0) end
  for i, cb in pairs(run.callbacks) do
    if math.type(i) ~= "integer" or i < 1 or i > #run.callbacks or type(cb) ~= "table" then
      error(("%s: callbacks must be a list of callback tables, got %s at [%s]"):format(fn, describe(cb), tostring(i)), 0)
    end
    local mt = getmetatable(cb)
    for _, t in ipairs({ cb, mt and type(mt.__index) == "table" and mt.__index or {} }) do
      for k, v in pairs(t) do
        if type(k) == "string" and k:match("^on_") and type(v) == "function" and not util.HOOKS[k] then
          error(("%s: callbacks[%d] has an unknown hook '%s' (known: on_train_begin, on_epoch_begin, on_batch_end, on_epoch_end, on_train_end)"):format(fn, i, k), 0)
        end
      end
    end
  end

  run.progress = dd.progress.new{ mode = o.progress, output = o.output }
  run.ctx = {
    model = run.model, optimizer = run.optimizer, history = new_history(run.keys), stop_training = false,
    epochs = run.epochs, initial_epoch = 0, log_keys = run.keys, checkpoint_dir = run.checkpoint_dir,
    steps_per_epoch = (#run.train_order + run.batch_size - 1) // run.batch_size,
    print = function(text) run.progress:message(text) end,
  }
  return run
end

--- dd.fit{model=, loss=, optimizer=, x=, y=, batch_size=32, epochs=1,
--   validation_split=0 | validation_data={x, y}, shuffle=true, metrics={...},
--   callbacks={...}, checkpoint_dir=, resume=false, progress=, output=io.stdout} -> history
function dd.fit(opts)
  local ok, run = pcall(prepare, opts)
  if not ok then error(run, 2) end
  local ctx, model = run.ctx, run.model
  local was_training = model.training

  if run.checkpoint_dir then
    util.mkdir("dd.fit", run.checkpoint_dir)
    if run.resume then
      ctx.initial_epoch = load_checkpoint(run) or 0
    elseif file_exists(run.checkpoint_dir .. "/" .. CHECKPOINT) then
      error(("dd.fit: %s/%s exists: pass resume=true to continue that run, or use another checkpoint_dir"):format(
        run.checkpoint_dir, CHECKPOINT), 2)
    end
  end
  if ctx.initial_epoch == 0 and not run.partial then
    local val = run.val_order and (", validating on %d"):format(#run.val_order) or ""
    ctx.print(("Training on %d samples%s, %d epochs of %d batches"):format(#run.train_order, val, run.epochs,
      (#run.train_order + run.batch_size - 1) // run.batch_size))
  end

  for i, cb in ipairs(run.callbacks) do
    if cb.on_train_begin then cb:on_train_begin(ctx) end
    if run.saved_states and cb.load_state_dict then cb:load_state_dict(run.saved_states[i].state) end
  end
  if ctx.stop_training then
    ctx.print(("resume: the saved run had stopped after epoch %d; nothing to train"):format(ctx.initial_epoch))
  elseif ctx.initial_epoch >= run.epochs then
    ctx.print(("resume: the saved run already reached epoch %d of %d"):format(ctx.initial_epoch, run.epochs))
  end

  -- Ctrl-C only sets a flag from here on, looked at between batches and after
  -- each checkpoint; put back however fit ends (an error keeps its traceback).
  local deferred = dd.defer_interrupts(true)
  local restore <close> = setmetatable({}, { __close = function(_, err)
    if err ~= nil then dd.interrupted() end -- an error is on its way: let it through
    dd.defer_interrupts(deferred)
  end })

  for epoch = ctx.initial_epoch + 1, run.epochs do
    if ctx.stop_training then break end
    ctx.epoch = epoch
    local t0 = dd.clock()
    local resume = run.partial
    run.partial = nil
    if not resume then call_hooks(run, "on_epoch_begin", epoch) end -- a resumed epoch had its begin

    local logs, stopped = train_epoch(run, epoch, resume)
    if stopped then interrupted(run, stopped) end
    if run.val_x then
      for k, v in pairs(evaluate_set(model, run.loss, run.metrics, run.val_x, run.val_target, run.val_order, run.batch_size)) do
        logs["val_" .. k] = v
      end
    end
    logs.epoch, logs.lr, logs.time = epoch, run.optimizer.lr, dd.clock() - t0

    history_append(ctx.history, run.keys, logs)
    local shown = {}
    for _, k in ipairs(run.keys) do if k ~= "time" then shown[#shown + 1] = k end end
    run.progress:epoch_end(shown, logs, logs.time)
    call_hooks(run, "on_epoch_end", epoch, logs)
    if run.checkpoint_dir then save_checkpoint(run, epoch) end
    if dd.interrupted() then interrupted(run, { epoch = epoch }) end
  end

  call_hooks(run, "on_train_end")
  if was_training == false and model.eval then model:eval() elseif model.train then model:train() end
  return ctx.history
end

---------------------------------------------------------------------------
-- dd.evaluate and dd.predict
---------------------------------------------------------------------------

-- Runs f with the model in eval mode, then puts back the mode it had.
local function in_eval_mode(model, f)
  local was_training = model.training
  if model.eval then model:eval() end
  local ok, result = pcall(f)
  if was_training ~= false and model.train then model:train() end
  if not ok then error(result, 0) end
  return result
end

-- The checked arguments of dd.evaluate and dd.predict.
local function eval_args(fn, opts, known)
  local o = util.options(fn, opts, known)
  check_model(fn, o.model)
  check_loss(fn, o.loss, false)
  if o.x == nil then error(fn .. ": option 'x' is required", 0) end
  local x = make_source(fn, o.x, "x")
  return o, x, check(fn, "batch_size", o.batch_size, "positive integer", 32)
end

--- dd.evaluate{model=, loss=, x=, y=, batch_size=32, metrics={...}} -> {loss=, <metric>=}
-- Sample-weighted means over x in eval mode. y as in dd.fit.
local function evaluate_args(fn, opts)
  local o, x, batch_size = eval_args(fn, opts, { "model", "loss", "x", "y", "batch_size", "metrics" })
  local target, metrics = make_target(fn, o.y, o.x, x.n, "y"), resolve_metrics(fn, o.metrics)
  if not o.loss and #metrics == 0 then error(fn .. ": nothing to compute: give loss= or metrics=", 0) end
  return o, x, batch_size, target, metrics
end

function dd.evaluate(opts)
  local ok, o, x, batch_size, target, metrics = pcall(evaluate_args, "dd.evaluate", opts)
  if not ok then error(o, 2) end
  return in_eval_mode(o.model, function()
    return evaluate_set(o.model, o.loss, metrics, x, target, range(1, x.n), batch_size)
  end)
end

--- dd.predict{model=, x=, batch_size=32} -> Tensor (N, ...) of the model's outputs, in eval mode.
function dd.predict(opts)
  local ok, o, x, batch_size = pcall(eval_args, "dd.predict", opts, { "model", "x", "batch_size" })
  if not ok then error(o, 2) end
  return in_eval_mode(o.model, function()
    local out
    for b = 1, (x.n + batch_size - 1) // batch_size do
      local first = (b - 1) * batch_size + 1
      local y = o.model:forward(x:take(range(first, math.min(first + batch_size - 1, x.n))))
      if not out then
        local shape = y:shape()
        shape[1] = x.n
        out = dd.zeros(table.unpack(shape))
      end
      out:narrow(1, first, y:size(1)):copy(y)
    end
    return out
  end)
end

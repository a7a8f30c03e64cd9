-- deepdance.progress: the per-epoch progress display of dd.fit, Keras style.
--
--   mode 'bar'   a bar rewritten in place with '\r' while the epoch runs,
--                  Epoch 3/20 12/40 [======>.............] - ETA: 3s - loss: 0.0123 - acc: 0.9512
--                then one line per epoch:
--                  Epoch 3/20 - 4.2s - loss: 0.0121 - acc: 0.9520 - val_loss: 0.0130 - lr: 0.001
--   mode 'lines' only the epoch lines, plus a batch line at most every 30 s (logs, CI, pipes)
--   mode 'none'  nothing at all
--
-- The default is the DD_PROGRESS environment variable when set, else 'bar' when
-- standard output is a terminal (TERM set, not "dumb", and `test -t 1` true for
-- the inherited stdout) and 'lines' otherwise.
local dd = ...

local progress = {}
dd.progress = progress

progress.modes = { bar = true, lines = true, none = true }

local BAR_WIDTH = 20
local BAR_EVERY = 0.1   -- seconds between bar redraws
local LINE_EVERY = 30   -- seconds between batch lines in 'lines' mode

local default_mode_cache

--- dd.progress.default_mode() -> 'bar' | 'lines' | 'none'
function progress.default_mode()
  local env = os.getenv("DD_PROGRESS")
  if env and env ~= "" then
    if not progress.modes[env] then
      error(("DD_PROGRESS must be 'bar', 'lines' or 'none', got '%s'"):format(env), 2)
    end
    return env
  end
  if default_mode_cache == nil then
    local term = os.getenv("TERM")
    -- os.execute's shell inherits our stdout, so `test -t 1` asks about it.
    local tty = term and term ~= "" and term ~= "dumb" and os.execute("test -t 1") == true
    default_mode_cache = tty and "bar" or "lines"
  end
  return default_mode_cache
end

--- Keras's number format: 4 decimals, or scientific below 1e-3.
function progress.format_value(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
  if v == 0 or math.abs(v) >= 1e-3 then return ("%.4f"):format(v) end
  return ("%.4e"):format(v)
end

local function format_lr(v) return ("%g"):format(v) end

local function format_seconds(s)
  if s >= 3600 then return ("%d:%02d:%02d"):format(s // 3600, s % 3600 // 60, math.floor(s % 60)) end
  if s >= 60 then return ("%d:%02d"):format(s // 60, math.floor(s % 60)) end
  return ("%ds"):format(math.floor(s + 0.5))
end

-- " - loss: 0.0123 - acc: 0.9512" from an ordered list of names and a table of values.
local function values_text(names, values)
  local parts = {}
  for _, name in ipairs(names) do
    local v = values[name]
    if v ~= nil then
      local text = name == "lr" and format_lr(v) or progress.format_value(v)
      parts[#parts + 1] = " - " .. name .. ": " .. text
    end
  end
  return table.concat(parts)
end

local Progress = {}
Progress.__index = Progress

--- dd.progress.new{mode=, output=io.stdout} -> a display. output is anything
-- with write(self, text) (and optionally flush(self)).
function progress.new(opts)
  opts = opts or {}
  local mode = opts.mode or progress.default_mode()
  if not progress.modes[mode] then
    error(("progress: mode must be 'bar', 'lines' or 'none', got %s"):format(tostring(mode)), 2)
  end
  return setmetatable({ mode = mode, out = opts.output or io.stdout, shown = 0 }, Progress)
end

function Progress:write(text)
  self.out:write(text)
  if self.out.flush then self.out:flush() end
end

-- Erases the bar being shown, if any, so the next text starts a clean line.
function Progress:clear()
  if self.shown > 0 then
    self:write("\r" .. string.rep(" ", self.shown) .. "\r")
    self.shown = 0
  end
end

--- message(text): a line of its own (callbacks' notices, resume status).
function Progress:message(text)
  if self.mode == "none" then return end
  self:clear()
  self:write(text .. "\n")
end

--- epoch_begin(epoch, epochs, steps): a new epoch of `steps` batches starts.
function Progress:epoch_begin(epoch, epochs, steps)
  self.epoch, self.epochs, self.steps = epoch, epochs, steps
  self.t0 = dd.clock()
  self.last_draw = -math.huge
  self.last_line = self.t0
end

--- update(step, names, values): `step` batches done; running averages in values.
function Progress:update(step, names, values)
  if self.mode == "none" then return end
  local now = dd.clock()
  local elapsed = now - self.t0
  local eta = step > 0 and elapsed / step * (self.steps - step) or 0
  local head = ("Epoch %d/%d"):format(self.epoch, self.epochs)
  if self.mode == "bar" then
    if step < self.steps and now - self.last_draw < BAR_EVERY then return end
    self.last_draw = now
    local done = self.steps > 0 and math.floor(BAR_WIDTH * step / self.steps) or BAR_WIDTH
    local bar = string.rep("=", done)
    if done < BAR_WIDTH then bar = (done > 0 and bar:sub(1, -2) .. ">" or ">") .. string.rep(".", BAR_WIDTH - math.max(done, 1)) end
    local width = #tostring(self.steps)
    local text = ("%s %" .. width .. "d/%d [%s] - ETA: %s%s"):format(head, step, self.steps, bar,
      format_seconds(eta), values_text(names, values))
    self:write("\r" .. text .. string.rep(" ", math.max(0, self.shown - #text)))
    self.shown = #text
  elseif self.mode == "lines" and step < self.steps and now - self.last_line >= LINE_EVERY then
    self.last_line = now
    self:write(("%s batch %d/%d - ETA: %s%s\n"):format(head, step, self.steps, format_seconds(eta),
      values_text(names, values)))
  end
end

--- epoch_end(names, logs, seconds): the epoch's one line.
function Progress:epoch_end(names, logs, seconds)
  if self.mode == "none" then return end
  self:clear()
  self:write(("Epoch %d/%d - %.1fs%s\n"):format(self.epoch, self.epochs, seconds, values_text(names, logs)))
end

progress.Progress = Progress
return progress

-- deepdance.data: datasets on top of the C frame caches (dd.data.frames).
--   local train = dd.data.augment(dd.data.frames("data/clip.safetensors"),
--                                 {flip = true, shift_x = 12, only_first = 1944})
--   dd.fit{x = train, y = "x", ...}
-- A dataset is anything with size() and batch(indices) -> (B, ...) Tensor.
local dd = ...
local util = assert(loadfile(dd.home .. "/lua/deepdance/dance/util.lua"))(dd)

local Augmented = {}
Augmented.__index = Augmented

function Augmented:size() return self.n end

-- Per sample: a mirror with probability 1/2, a shift uniform in
-- -shift..shift pixels; samples after only_first pass through unchanged and
-- draw nothing, so a validation pass does not move the training draws.
-- Every draw comes from dd's generator, so dd.manual_seed repeats the
-- augmentation and dd.fit's checkpoints (which keep the generator) resume it.
function Augmented:batch(indices)
  local b = self.source:batch(indices)
  if util.is_tensor(indices) then indices = indices:totable() end
  local B = #indices
  local on = 0
  for k = 1, B do if indices[k] <= self.only_first then on = on + 1 end end
  if on == 0 then return b end -- (no draws: validation batches leave the generator alone)
  local draws = dd.rand(3, on)
  local flip, dx, dy, d = {}, {}, {}, 0
  for k = 1, B do
    if indices[k] <= self.only_first then
      d = d + 1
      flip[k] = self.flip and draws:get(1, d) < 0.5
      dx[k] = math.floor(draws:get(2, d) * (2 * self.shift_x + 1)) - self.shift_x
      dy[k] = math.floor(draws:get(3, d) * (2 * self.shift_y + 1)) - self.shift_y
    else
      flip[k], dx[k], dy[k] = false, 0, 0
    end
  end
  return dd.vision.flip_shift(b, { flip = flip, dx = dx, dy = dy, fill = self.fill })
end

--- dd.data.augment(source, {flip=false, shift_x=0, shift_y=0, fill=1, only_first=size}) -> dataset
-- Random geometric augmentation of image batches (B, C, H, W) for dd.fit, as
-- Keras's ImageDataGenerator(horizontal_flip, width_shift_range,
-- height_shift_range, fill_mode='constant') does: each sample of each batch
-- is mirrored left-right with probability 1/2 (flip) and moved by a whole
-- number of pixels drawn uniformly in [-shift_x, shift_x] and [-shift_y,
-- shift_y]; uncovered pixels get fill (1: the white background of
-- silhouettes). Samples with an index above only_first are returned as they
-- are, so a validation split at the end of the same source stays clean.
-- With y = "x" (autoencoding) the target is the augmented input.
dd.data.augment = util.public(function(source, opts)
  local fn = "dd.data.augment"
  if not (type(source) == "table" or type(source) == "userdata") or type(source.batch) ~= "function"
     or type(source.size) ~= "function" then
    error(("%s: source must be a dataset with size() and batch(indices) (e.g. dd.data.frames), got %s"):format(fn,
      util.describe(source)), 0)
  end
  local o = util.options(fn, opts, { "flip", "shift_x", "shift_y", "fill", "only_first" })
  local n = source:size()
  local self = setmetatable({
    source = source, n = n,
    flip = util.check(fn, "flip", o.flip, "boolean", false),
    shift_x = util.check(fn, "shift_x", o.shift_x, "count", 0),
    shift_y = util.check(fn, "shift_y", o.shift_y, "count", 0),
    fill = util.check(fn, "fill", o.fill, "number", 1),
    only_first = util.check(fn, "only_first", o.only_first, "count", n),
  }, Augmented)
  if self.only_first > n then
    error(("%s: only_first (%d) is beyond the source's %d samples"):format(fn, self.only_first, n), 0)
  end
  return self
end)

-- deepdance.dance: the Deep Dance pipeline as a library, dd.dance.
--   latents.lua      encode frames to latents, decode back, windows for the sequence model
--   sequence.lua     train_sequence / load_sequence (notebook, paper, mdn; auto-conditioning)
--   generate.lua     generate (stateful or sliding window), interpolate, write_video
--   autoencoder.lua  train_autoencoder / load_autoencoder
--   evaluate.lua     quality measures
--   plot.lua         plot_curves
-- Each file receives (dd, dance) and adds its functions to `dance`. The files
-- are written by different people at different times, so one that is not there
-- yet is skipped; a file that is there but fails to load is an error.
local dd = ...
local dance = dd.dance or {}
dd.dance = dance

local FILES = { "latents", "sequence", "generate", "autoencoder", "evaluate", "plot" }
local dir = dd.home .. "/lua/deepdance/dance/"

for _, name in ipairs(FILES) do
  local path = dir .. name .. ".lua"
  local f = io.open(path, "rb")
  if f then
    f:close()
    assert(loadfile(path))(dd, dance)
  end
end

return dance

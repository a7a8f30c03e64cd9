-- experiments/calibrate.lua: chooses an MDN sequence model's sampling
-- temperature on validation runs (dd.dance.calibrate_temperature) and writes
-- SEQ/temperature.json, which --temperature auto (generate.lua, evaluate.lua)
-- then uses. Each temperature costs two runs of --steps generated frames.
--   deepdance experiments/calibrate.lua --run runs/r --seq runs/r/seq_mdn --temperatures 0.5,0.6,0.7,0.8,0.9
if not dd.dance then assert(loadfile(dd.home .. "/lua/deepdance/dance/init.lua"))(dd) end -- until init.lua loads it

local p = dd.cli.parser("calibrate.lua", "Choose an MDN model's sampling temperature on validation runs.")
p:option("--run", "run directory holding ae/ (and seq/)"):count(1)
p:option("--seq", "the MDN sequence model's directory (default: RUN/seq)")
p:option("--data", "frame cache (default: the one the run was trained on)")
p:option("--temperatures", "comma-separated candidates", "0.5,0.6,0.7,0.8,0.9")
p:option("--steps", "generated steps per validation run (as long as the evaluation's: shorter runs overstate motion)", "1000")
  :convert(math.tointeger)
p:option("--min-plausibility", "the plausibility bar", "0.8"):convert(tonumber)
p:option("--min-motion", "the lower motion-ratio bar", "0.5"):convert(tonumber)
p:option("--max-motion", "the upper motion-ratio bar", "1.5"):convert(tonumber)
p:option("--seed", "random seed of the validation runs", "1"):convert(math.tointeger)
local o = dd.cli.parse(p, arg)
if not o then return end

local temps = {}
for item in o.temperatures:gmatch("[^,]+") do
  local t = tonumber(item)
  if not t then error(("calibrate.lua: --temperatures: '%s' is not a number"):format(item), 0) end
  temps[#temps + 1] = t
end
dd.dance.calibrate_temperature{ run = o.run, seq = o.seq, data = o.data, temperatures = temps, steps = o.steps,
  min_plausibility = o.min_plausibility, min_motion = o.min_motion, max_motion = o.max_motion, seed = o.seed }

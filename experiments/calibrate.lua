-- experiments/calibrate.lua: chooses an MDN sequence model's sampling
-- temperature on validation runs (dd.dance.calibrate_temperature) and writes
-- SEQ/temperature.json, which --temperature auto (generate.lua, evaluate.lua)
-- then uses. Each temperature costs two runs of --steps generated frames
-- (times --repeats, and times the number of --sigma-temperatures: with them
-- every pair is a candidate, the component's temperature and the spread's).
--   deepdance experiments/calibrate.lua --run runs/r --seq runs/r/seq_mdn --temperatures 0.5,0.6,0.7,0.8,0.9
--   deepdance experiments/calibrate.lua --run runs/r --seq runs/r/seq_mdn --temperatures 0.6,0.65,0.7 --sigma-temperatures 0.1,0.2,0.3
if not dd.dance then assert(loadfile(dd.home .. "/lua/deepdance/dance/init.lua"))(dd) end -- until init.lua loads it

local p = dd.cli.parser("calibrate.lua", "Choose an MDN model's sampling temperature on validation runs.")
p:option("--run", "run directory holding ae/ (and seq/)"):count(1)
p:option("--seq", "the MDN sequence model's directory (default: RUN/seq)")
p:option("--data", "frame cache (default: the one the run was trained on)")
p:option("--temperatures", "comma-separated candidates", "0.5,0.6,0.7,0.8,0.9")
p:option("--sigma-temperatures", "comma-separated candidates for the spread of a draw (default: the temperature's own)")
p:option("--repeats", "runs per validation seed and candidate", "1"):convert(math.tointeger)
p:option("--steps", "generated steps per validation run (as long as the evaluation's: shorter runs overstate motion)", "1000")
  :convert(math.tointeger)
p:option("--min-plausibility", "the plausibility bar", "0.8"):convert(tonumber)
p:option("--min-motion", "the lower motion-ratio bar", "0.5"):convert(tonumber)
p:option("--max-motion", "the upper motion-ratio bar", "1.5"):convert(tonumber)
p:option("--seed", "random seed of the validation runs", "1"):convert(math.tointeger)
local o = dd.cli.parse(p, arg)
if not o then return end

local function numbers(flag, text)
  if not text then return nil end
  local list = {}
  for item in text:gmatch("[^,]+") do
    local t = tonumber(item)
    if not t then error(("calibrate.lua: %s: '%s' is not a number"):format(flag, item), 0) end
    list[#list + 1] = t
  end
  return list
end
dd.dance.calibrate_temperature{ run = o.run, seq = o.seq, data = o.data, temperatures = numbers("--temperatures", o.temperatures),
  sigma_temperatures = numbers("--sigma-temperatures", o.sigma_temperatures), repeats = o.repeats, steps = o.steps,
  min_plausibility = o.min_plausibility, min_motion = o.min_motion, max_motion = o.max_motion, seed = o.seed }

-- experiments/sweeps/trial_temperature.lua: one generation temperature of an
-- MDN sequence model, measured as dd.dance.evaluate measures generation
-- (motion ratio against the real frames, plausibility against training
-- frames), from a random and from a real seed window. Reports the means and
-- score = plausibility x min(1, motion ratio): high only when the dance both
-- moves and stays dancer-shaped.
--   deepdance experiments/sweeps/trial_temperature.lua --run runs/demo --seq runs/demo/seq_mdn \
--     --temperature 0.8 --out runs/t08
local p = dd.cli.parser("trial_temperature.lua", "Measure generation at one sampling temperature.")
p:option("--run", "run directory holding ae/"):count(1)
p:option("--seq", "the MDN sequence model's run directory (default: RUN/seq)")
p:option("--temperature", "sampling temperature"):count(1):convert(tonumber)
p:option("--steps", "generated steps per seed window", "300"):convert(math.tointeger)
p:option("--seed", "random seed of the generation", "1"):convert(math.tointeger)
p:option("--out", "where report.json goes"):count(1)
local o = dd.cli.parse(p, arg)
if not o then return end

local report = dd.dance.evaluate{
  run = o.run, seq = o.seq, out = o.out, steps = o.steps, seed = o.seed, modes = { "sample" },
  temperature = o.temperature, seeds = { "random", "real" }, motion_steps = math.min(200, o.steps // 2),
  max_windows = 200, max_heldout = 200, references = 500, images = false,
}
local runs = report.generation and report.generation.runs or {}
if #runs == 0 then error("trial_temperature: the evaluation made no generation runs", 0) end
local motion, plausibility = 0, 0
for _, r in ipairs(runs) do
  motion = motion + (r.motion_ratio or 0) / #runs
  plausibility = plausibility + r.plausibility / #runs
end
local score = plausibility * math.min(1, motion)
print(("temperature %g: motion ratio %.3f, plausibility %.3f, score %.3f"):format(o.temperature, motion, plausibility, score))
dd.report{ temperature = o.temperature, motion_ratio = motion, plausibility = plausibility, score = score }

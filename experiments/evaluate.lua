-- experiments/evaluate.lua: the quality report of a trained run
-- (dd.dance.evaluate): the paper's Keras table for both models next to the
-- published numbers, held-out autoencoder IoU, next-frame IoU against
-- repeating the last frame, and long-run generation (motion ratio and
-- plausibility) in the deterministic mode and the sampling mode side by side.
-- Writes RUN/report.json, RUN/report.md and pictures in RUN/eval/.
--   deepdance experiments/evaluate.lua --run runs/r --data data/clip.safetensors --steps 1000
if not dd.dance then assert(loadfile(dd.home .. "/lua/deepdance/dance/init.lua"))(dd) end -- until init.lua loads it

local p = dd.cli.parser("evaluate.lua", "Evaluate a trained run (RUN/ae and RUN/seq) and write RUN/report.{json,md}.")
p:option("--run", "run directory holding ae/ and seq/"):count(1)
p:option("--data", "frame cache (default: the one the run was trained on)")
p:option("--out", "where report.json, report.md and eval/ go (default: --run)")
p:option("--steps", "generated steps per run", "1000"):convert(math.tointeger)
p:option("--modes", "comma-separated: deterministic, sample", "deterministic,sample")
p:option("--temperature", "sampling temperature (MDN head), or auto: the one experiments/calibrate.lua chose")
  :convert(function(s) return s == "auto" and s or tonumber(s) end)
p:option("--noise", "sampling noise std (regression head; default 0.5 x the latents' std)"):convert(tonumber)
p:option("--seeds", "comma-separated: random, real, index:N", "random,real")
p:option("--window", "sliding (the paper's loop) or stateful", "sliding"):choices{ "sliding", "stateful" }
p:option("--references", "training frames for plausibility", "1000"):convert(math.tointeger)
p:option("--plausible-iou", "best IoU that counts a generated frame as plausible", "0.7"):convert(tonumber)
p:option("--motion-steps", "last steps over which motion is measured", "200"):convert(math.tointeger)
p:option("--max-windows", "validation windows for next-frame IoU", "2000"):convert(math.tointeger)
p:option("--max-heldout", "held-out frames for the autoencoder IoU", "2000"):convert(math.tointeger)
p:option("--batch-size", "frames per decoder batch", "64"):convert(math.tointeger)
p:option("--seed", "random seed of the generation runs", "1"):convert(math.tointeger)
p:flag("--video", "also write each generated run as an MP4 (6 fps)")
p:flag("--no-images", "no contact sheets or motion plot")
local o = dd.cli.parse(p, arg)
if not o then return end

local function list(text)
  local out = {}
  for item in text:gmatch("[^,]+") do out[#out + 1] = item:match("^%s*(.-)%s*$") end
  return out
end

dd.dance.evaluate{
  run = o.run, data = o.data, out = o.out, steps = o.steps, modes = list(o.modes), temperature = o.temperature,
  noise = o.noise, seeds = list(o.seeds), window = o.window, references = o.references,
  plausible_iou = o.plausible_iou, motion_steps = o.motion_steps, max_windows = o.max_windows,
  max_heldout = o.max_heldout, batch_size = o.batch_size, seed = o.seed, video = o.video, images = not o.no_images,
}
local f = assert(io.open((o.out or o.run):gsub("/+$", "") .. "/report.md", "rb"))
io.write("\n", f:read("a"), "\n")
f:close()

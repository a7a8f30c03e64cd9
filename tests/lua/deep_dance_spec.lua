-- The whole pipeline end to end at the 'smoke' scale (seconds): synthetic
-- video, ingest, autoencoder, both sequence models, generated MP4/GIF, reports;
-- a second run of the same command reuses what the first one finished.
local function exists(p) local f = io.open(p) if f then f:close() return true end return false end

describe("experiments/deep_dance.lua --preset smoke", function()
  local out = os.tmpname()
  os.remove(out)
  local cmd = ("%s/deepdance experiments/deep_dance.lua --preset smoke --out %s --progress none > %s.log 2>&1")
    :format(dd.home, out, out)
  teardown(function() os.execute("rm -rf '" .. out .. "' '" .. out .. ".log'") end)

  it("produces the videos, plots and reports", function()
    assert.is_true(os.execute(cmd), io.open(out .. ".log") and io.open(out .. ".log"):read("a"))
    for _, f in ipairs{ "data/synthetic_dance.mp4", "data/frames.safetensors", "ae/best.safetensors", "ae/recon.png",
                        "ae/curves.png", "seq/best.safetensors", "seq_mdn/best.safetensors", "seq_mdn/temperature.json", "gen/dance_deterministic.mp4",
                        "gen/dance_deterministic.gif", "gen/dance_sampling.mp4", "gen/dance_sampling.gif",
                        "seq/eval/report.json", "seq_mdn/eval/report.json", "report.json", "report.md" } do
      assert.is_true(exists(out .. "/" .. f), "missing " .. f)
    end
    -- the presets train the notebook model on the mirrored dance too, not the MDN
    assert.is_true(exists(out .. "/seq/latents_flip.safetensors"))
    assert.is_true(dd.json.decode(io.open(out .. "/seq/sequence.json"):read("a")).mirror)
    assert.is_nil(dd.json.decode(io.open(out .. "/seq_mdn/sequence.json"):read("a")).mirror)
    local v = dd.video.open(out .. "/gen/dance_sampling.mp4")
    assert.are.equal(11 * 2 + 1, v.frame_count) -- 12 steps, 1 interpolant between each pair
    local report = dd.json.decode(io.open(out .. "/report.json"):read("a"))
    assert.are.equal("smoke", report.preset)
    -- the MDN is evaluated at the temperature calibrated for it
    local t = dd.json.decode(io.open(out .. "/seq_mdn/temperature.json"):read("a")).temperature
    local mdn = dd.json.decode(io.open(out .. "/seq_mdn/eval/report.json"):read("a"))
    assert.are.equal(("sample T=%g (calibrated)"):format(t), mdn.generation.runs[2].mode)
  end)

  it("a second run reuses the finished steps", function()
    local t0 = dd.clock()
    assert.is_true(os.execute(cmd))
    local log = io.open(out .. ".log"):read("a")
    assert.truthy(log:find("reusing " .. out .. "/data/synthetic_dance.mp4", 1, true), log)
    assert.truthy(log:find("reusing " .. out .. "/data/frames.safetensors", 1, true), log)
    local mdn_log = io.open(out .. "/seq_mdn/train.log"):read("a")
    assert.truthy(mdn_log:find("calibrate: reusing " .. out .. "/seq_mdn/temperature.json", 1, true), mdn_log)
    assert(dd.clock() - t0 < 60)
  end)
end)

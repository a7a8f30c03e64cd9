-- checkpoint_spec.lua: dd.nn.save / dd.nn.load: round trips of model,
-- optimizer, meta and RNG state; strict model matching; damaged, foreign and
-- missing files. Run from the repo root:
--   ./deepdance /usr/bin/busted -o TAP tests/lua/checkpoint_spec.lua
local seed = tonumber(os.getenv("DD_TEST_SEED") or "1234")
print("# checkpoint_spec seed: " .. seed)

local helpers = dofile("tests/lua/support/helpers.lua")
local quote = helpers.quote
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains
local slurp = helpers.slurp
local spit = helpers.spit

local function snapshot(sd)
  local out = {}
  for k, v in pairs(sd) do
    out[k] = (getmetatable(v) == getmetatable(dd.zeros(0))) and v:totable() or v
  end
  return out
end

-- A few training steps so the optimizer has non-trivial state.
local function train(m, opt, steps)
  local loss = dd.nn.MSELoss()
  for _ = 1, steps do
    local x = dd.randn(8, 3)
    local y = dd.randn(8, 2)
    opt:zero_grad()
    local out = m:forward(x)
    loss:forward(out, y)
    m:backward(x, loss:backward(out, y))
    opt:step()
  end
end

local dir
before_each(function()
  dd.manual_seed(seed)
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. quote(dir)))
end)
after_each(function() os.execute("rm -rf " .. quote(dir)) end)

describe("dd.nn.save / dd.nn.load", function()
  it("round-trips model, optimizer and meta exactly", function()
    local path = dir .. "/ck.safetensors"
    local m = dd.nn.Linear{3, 2}
    local opt = dd.optim.Adam{ m:parameters(), lr = 0.01, amsgrad = true }
    train(m, opt, 4)
    opt.lr = 0.002 -- a changed lr is part of the state
    local want_model, want_opt = snapshot(m:state_dict()), snapshot(opt:state_dict())
    dd.nn.save(path, m, { optimizer = opt, meta = { epoch = 3, tag = "warm", losses = { 0.5, 0.25 } } })
    -- perturb both
    train(m, opt, 3)
    opt.lr = 1
    m.weight:fill(7)
    local meta = dd.nn.load(path, m, opt)
    assert.same(want_model, snapshot(m:state_dict()))
    assert.same(want_opt, snapshot(opt:state_dict()))
    assert.equal(0.002, opt.lr)
    assert.equal(4, opt.step_count)
    assert.equal(3, meta.epoch)
    assert.equal("warm", meta.tag)
    assert.same({ 0.5, 0.25 }, meta.losses)
    assert.matches("^%x+$", meta.rng_state)
    assert.equal(64, #meta.rng_state)
  end)

  it("resumed training takes the same steps as uninterrupted training", function()
    local path = dir .. "/resume.safetensors"
    local m = dd.nn.Linear{3, 2}
    local opt = dd.optim.RMSprop{ m:parameters(), lr = 0.01, momentum = 0.9, centered = true }
    train(m, opt, 3)
    dd.nn.save(path, m, { optimizer = opt })
    local rng = dd.rng_state()
    train(m, opt, 3)
    local want = m.weight:totable()
    -- a fresh process would build new objects: do the same
    local m2 = dd.nn.Linear{3, 2}
    local opt2 = dd.optim.RMSprop{ m2:parameters(), lr = 0.01, momentum = 0.9, centered = true }
    dd.nn.load(path, m2, opt2)
    dd.set_rng_state(rng)
    train(m2, opt2, 3)
    assert.same(want, m2.weight:totable())
  end)

  it("restores the RNG only when asked", function()
    local path = dir .. "/rng.safetensors"
    local m = dd.nn.Linear{2, 2}
    dd.nn.save(path, m)
    local after_save = dd.rand(5):totable()
    local meta = dd.nn.load(path, m)
    assert.are_not.same(after_save, dd.rand(5):totable())
    dd.nn.load(path, m, nil, { restore_rng = true })
    assert.same(after_save, dd.rand(5):totable())
    dd.nn.load(path, m, { restore_rng = true }) -- options in the optimizer's place
    assert.same(after_save, dd.rand(5):totable())
    dd.set_rng_state(meta.rng_state)
    assert.same(after_save, dd.rand(5):totable())
  end)

  it("stores the documented layout", function()
    local path = dir .. "/layout.safetensors"
    local m = dd.nn.Linear{3, 2}
    local opt = dd.optim.SGD{ m:parameters(), lr = 0.1, momentum = 0.9 }
    dd.nn.save(path, m, { optimizer = opt, meta = { epoch = 1 } })
    local h = dd.safetensors_header(path)
    assert.same({ 2, 3 }, h["model.weight"].shape)
    assert.same({ 2 }, h["model.bias"].shape)
    assert.same({ 8 }, h["optimizer.momentum_buffer"].shape)
    local md = h.__metadata__
    assert.equal("deepdance-checkpoint", md.format)
    assert.equal("1", md.version)
    assert.equal("2", md.model_keys)
    local o = dd.json.decode(md.optimizer)
    assert.equal("SGD", o.kind)
    assert.equal(0.1, o.lr)
    assert.equal(0, o.step)
    assert.same({ epoch = 1 }, dd.json.decode(md.meta))
  end)

  it("works with Sequential models", function()
    local path = dir .. "/seq.safetensors"
    local s = dd.nn.Sequential{ dd.nn.Linear{3, 4}, dd.nn.ReLU(), dd.nn.Linear{4, 2} }
    local want = snapshot(s:state_dict())
    dd.nn.save(path, s)
    assert.is_not_nil(dd.safetensors_header(path)["model.3.weight"])
    for _, p in ipairs(s:parameters()) do p.value:fill(0) end
    dd.nn.load(path, s)
    assert.same(want, snapshot(s:state_dict()))
  end)

  it("is strict about the model: missing, unexpected and mis-shaped entries are named", function()
    local path = dir .. "/strict.safetensors"
    dd.nn.save(path, dd.nn.Linear{3, 2})
    local err = error_of(dd.nn.load, path, dd.nn.Linear{3, 4})
    assert_contains(err, path .. " does not match the model")
    assert_contains(err, "'weight' is (2,3) in the file, (4,3) in the model")
    assert_contains(err, "'bias' is (2,) in the file, (4,) in the model")
    assert_contains(error_of(dd.nn.load, path, dd.nn.Linear{3, 2, bias = false}), "unexpected 'bias'")
    local nobias = dir .. "/nobias.safetensors"
    dd.nn.save(nobias, dd.nn.Linear{3, 2, bias = false})
    assert_contains(error_of(dd.nn.load, nobias, dd.nn.Linear{3, 2}), "missing 'bias'")
  end)

  it("checks the optimizer part, and changes nothing when it fails", function()
    local path = dir .. "/noopt.safetensors"
    local m = dd.nn.Linear{3, 2}
    dd.nn.save(path, m)
    local opt = dd.optim.Adam{ m:parameters() }
    assert_contains(error_of(dd.nn.load, path, m, opt), path .. " has no optimizer state (it was saved without {optimizer=...})")
    local withopt = dir .. "/adam.safetensors"
    dd.nn.save(withopt, m, { optimizer = opt })
    local before = m.weight:totable()
    local m2 = dd.nn.Linear{3, 2}
    local want = m2.weight:totable()
    local sgd = dd.optim.SGD{ m2:parameters(), lr = 0.1 }
    local err = error_of(dd.nn.load, withopt, m2, sgd)
    assert_contains(err, withopt .. ": optimizer: ")
    assert_contains(err, "unexpected entry")
    assert.same(want, m2.weight:totable()) -- the model was not loaded either
    assert.are_not.same(before, want)
  end)

  it("names the path and the problem for missing, truncated, corrupt and foreign files", function()
    local m = dd.nn.Linear{3, 2}
    local missing = dir .. "/nope.safetensors"
    assert_contains(error_of(dd.nn.load, missing, m), "dd.nn.load: cannot read checkpoint: " .. missing)
    assert_contains(error_of(dd.nn.load, missing, m), "No such file")

    local good = dir .. "/good.safetensors"
    dd.nn.save(good, m, { optimizer = dd.optim.Adam{ m:parameters() } })
    local bytes = slurp(good)
    local truncated = dir .. "/truncated.safetensors"
    spit(truncated, bytes:sub(1, #bytes - 10))
    local err = error_of(dd.nn.load, truncated, m)
    assert_contains(err, "dd.nn.load: cannot read checkpoint: " .. truncated)

    local corrupt = dir .. "/corrupt.safetensors"
    spit(corrupt, bytes:sub(1, 8) .. ("#"):rep(#bytes - 8))
    assert_contains(error_of(dd.nn.load, corrupt, m), "cannot read checkpoint: " .. corrupt)

    local junk = dir .. "/junk.safetensors"
    spit(junk, "not a checkpoint at all")
    assert_contains(error_of(dd.nn.load, junk, m), "cannot read checkpoint: " .. junk)

    local foreign = dir .. "/foreign.safetensors"
    dd.save(foreign, { weight = dd.zeros(2, 3), bias = dd.zeros(2) }, { producer = "torch" })
    assert_contains(error_of(dd.nn.load, foreign, m),
      foreign .. " is not a deepdance checkpoint (its metadata has no 'format', expected format=deepdance-checkpoint)")

    local future = dir .. "/future.safetensors"
    dd.save(future, { ["model.weight"] = dd.zeros(2, 3), ["model.bias"] = dd.zeros(2) },
      { format = "deepdance-checkpoint", version = "2", model_keys = "2" })
    assert_contains(error_of(dd.nn.load, future, m), future .. " is checkpoint version 2; this runtime reads version 1")

    local short = dir .. "/short.safetensors"
    dd.save(short, { ["model.weight"] = dd.zeros(2, 3) }, { format = "deepdance-checkpoint", version = "1", model_keys = "2" })
    assert_contains(error_of(dd.nn.load, short, m), short .. " is damaged: its metadata says 2 model tensors, it holds 1")

    local badmeta = dir .. "/badmeta.safetensors"
    dd.save(badmeta, { ["model.weight"] = dd.zeros(2, 3), ["model.bias"] = dd.zeros(2) },
      { format = "deepdance-checkpoint", version = "1", model_keys = "2", meta = "{oops" })
    assert_contains(error_of(dd.nn.load, badmeta, m), badmeta .. ": the 'meta' metadata is damaged")
  end)

  it("checks its arguments strictly", function()
    local m = dd.nn.Linear{2, 2}
    local path = dir .. "/args.safetensors"
    assert_contains(error_of(dd.nn.save, path, m, { optimiser = 1 }), "dd.nn.save: unknown option 'optimiser' (known: meta, optimizer)")
    assert_contains(error_of(dd.nn.save, path, m, { meta = { f = print } }), "dd.nn.save: meta cannot be stored as JSON")
    assert_contains(error_of(dd.nn.save, path, {}), "model must have a state_dict() method")
    assert_contains(error_of(dd.nn.save, dir .. "/no/such/dir/x.safetensors", m), "dd.nn.save: ")
    dd.nn.save(path, m)
    assert_contains(error_of(dd.nn.load, path, m, nil, { restore = true }), "dd.nn.load: unknown option 'restore' (known: restore_rng)")
    assert_contains(error_of(dd.nn.load, path, m, 5), "optimizer must have a load_state_dict() method")
  end)
end)

-- Ctrl-C, from the runtime's flag to dd.fit's mid-epoch checkpoint, in child
-- processes that send SIGINT to themselves at an exact point (dd.process.kill).
-- tests/crash_sigint.sh does the same from outside at random moments.
local helpers = dofile("tests/lua/support/helpers.lua")
local assert_contains, slurp, spit, quote = helpers.assert_contains, helpers.slurp, helpers.spit, helpers.quote

local bin = dd.process.executable()
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. quote(dir))

-- Runs a script in a child deepdance; returns its exit status and output.
local function run(script, ...)
  local path = dir .. "/script.lua"
  spit(path, script)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = quote(a) end
  local p = io.popen(("cd %s && %s %s %s 2>&1; echo \"status $?\""):format(quote(dir), quote(bin), quote(path),
    table.concat(args, " ")))
  local out = p:read("a")
  p:close()
  return tonumber(out:match("status (%d+)%s*$")), out:gsub("status %d+%s*$", "")
end

local CTRL_C = "dd.process.kill(dd.process.pid(), 'INT')\n"

describe("Ctrl-C", function()
  teardown(function() os.execute("rm -rf " .. quote(dir)) end)

  it("deferred, it only sets a flag: dd.interrupted() takes it once, restoring raises one left pending", function()
    local status, out = run([[
      print("before", dd.defer_interrupts(true))
      ]] .. CTRL_C .. [[
      print("polled", dd.interrupted(), dd.interrupted())
      ]] .. CTRL_C .. [[
      print("restored", pcall(dd.defer_interrupts, false))
      print("again", dd.defer_interrupts(false))
      print("hook", pcall(function() ]] .. CTRL_C .. [[ for _ = 1, 100 do end end))]])
    assert.equal(0, status, out)
    assert_contains(out, "before\tfalse", "polled\ttrue\tfalse", "restored\tfalse\tinterrupted!", "again\tfalse")
    assert(out:find("hook\tfalse\t[^\n]*interrupted!"), out) -- not deferred: the usual error, at once
  end)

  it("a second Ctrl-C before the poll kills the process (the way out of a stuck call)", function()
    local status, out = run("dd.defer_interrupts(true)\n" .. CTRL_C .. CTRL_C .. "print('survived')")
    assert.equal(130, status, out)
    assert.is_nil(out:find("survived", 1, true))
  end)

  it("stops dd.fit between batches; without checkpoint_dir nothing is saved, and the handler is put back", function()
    local status, out = run([[
      dd.manual_seed(1)
      local m = dd.nn.Linear{2, 1}
      local stop = { on_batch_end = function(_, ctx, batch) if ctx.epoch == 2 and batch == 3 then ]] .. CTRL_C .. [[ end end }
      local ok, err = pcall(dd.fit, { model = m, loss = dd.nn.MSELoss(), optimizer = dd.optim.SGD{ m:parameters(), lr = 0.1 },
        x = dd.randn(40, 2), y = dd.randn(40, 1), batch_size = 8, epochs = 3, progress = "none", callbacks = { stop } })
      print(getmetatable(err) ~= nil, err.interrupted, err.epoch, err.batch, err.checkpoint)
      print(tostring(err))
      print("after", pcall(function() ]] .. CTRL_C .. [[ for _ = 1, 100 do end end))]])
    assert.equal(0, status, out)
    assert_contains(out, "true\ttrue\t2\t3\tnil",
      "dd.fit: interrupted (Ctrl-C) in epoch 2 after batch 3 of 5; nothing saved (no checkpoint_dir)")
    assert(out:find("after\tfalse\t[^\n]*interrupted!"), out)
  end)

  it("mid-epoch: saves where it stopped, says so in one line, and resume=true ends exactly as an uninterrupted run", function()
    local script = [[
      local out, stop_at = arg[1], tonumber(arg[2])
      dd.manual_seed(3)
      local x = dd.randn(60, 3)
      local y = (x:narrow(2, 1, 1) * x:narrow(2, 2, 1)):contiguous()
      local m = dd.nn.Sequential{ dd.nn.Linear{3, 16}, dd.nn.Tanh(), dd.nn.Dropout{0.25}, dd.nn.Linear{16, 1} }
      local stop = { on_batch_end = function(_, ctx, batch)
        if stop_at and ctx.epoch * 100 + batch == stop_at then ]] .. CTRL_C .. [[ end
      end }
      local h = dd.fit{ model = m, loss = dd.nn.MSELoss(), optimizer = dd.optim.Adam{ m:parameters(), lr = 0.02 },
        x = x, y = y, batch_size = 8, epochs = 5, validation_split = 0.2, checkpoint_dir = out, resume = true,
        progress = "lines", callbacks = { stop, dd.callbacks.ReduceLROnPlateau{ patience = 1, factor = 0.5, min_delta = 0.05 },
          dd.callbacks.EarlyStopping{ patience = 10, restore_best_weights = true } } }
      local cells = {}
      for _, k in ipairs({ "loss", "val_loss", "lr" }) do
        for _, v in ipairs(h[k]) do cells[#cells + 1] = ("%.17g"):format(v) end
      end
      print("history " .. table.concat(cells, " "))
      local w = m:state_dict()["1.weight"]
      print("weights " .. table.concat(w:view(w:numel()):totable(), " "))]]
    local status, straight = run(script, dir .. "/a")
    assert.equal(0, status, straight)
    status, out = run(script, dir .. "/b", "304") -- epoch 3, after batch 4 of 6
    assert.equal(1, status, out)
    assert_contains(out, "dd.fit: interrupted (Ctrl-C) in epoch 3 after batch 4 of 6; saved " .. dir
      .. "/b/last.safetensors: resume=true continues from there")
    assert.is_nil(out:find("traceback", 1, true), out)
    local meta = dd.json.decode(dd.safetensors_header(dir .. "/b/last.safetensors").__metadata__.meta)
    assert.equal(2, meta.fit.epoch)
    assert.same({ 3, 4, 6 }, { meta.fit.partial.epoch, meta.fit.partial.step, meta.fit.partial.steps })
    assert.equal("s:callbacks-epoch0003-batch4.safetensors", meta.fit.callback_tensors)

    status, out = run(script, dir .. "/b")
    assert.equal(0, status, out)
    assert_contains(out, "resume: continuing " .. dir .. "/b/last.safetensors in epoch 3 after batch 4 of 6")
    assert.equal(straight:match("history [^\n]*"), out:match("history [^\n]*"))
    assert.equal(straight:match("weights [^\n]*"), out:match("weights [^\n]*"))
    assert.is_nil(io.open(dir .. "/b/callbacks-epoch0003-batch4.safetensors"), "the mid-epoch side file is replaced")
  end)

  it("a mid-epoch checkpoint resumes only with the batch size and data it stopped with", function()
    local script = [[
      local bs, stop = tonumber(arg[1]), arg[2]
      dd.manual_seed(3)
      local m = dd.nn.Linear{2, 1}
      local cb = { on_batch_end = function(_, ctx, batch) if stop and ctx.epoch == 1 and batch == 2 then ]] .. CTRL_C .. [[ end end }
      dd.fit{ model = m, loss = dd.nn.MSELoss(), optimizer = dd.optim.SGD{ m:parameters(), lr = 0.1 }, x = dd.randn(40, 2),
        y = dd.randn(40, 1), batch_size = bs, epochs = 2, progress = "none", checkpoint_dir = "ck", resume = true, callbacks = { cb } }]]
    local status, out = run(script, "8", "stop")
    assert.equal(1, status, out)
    status, out = run(script, "10")
    assert.equal(1, status, out)
    assert_contains(out, "ck/last.safetensors stopped in the middle of epoch 1 with batch_size = 8; this run has 10")
  end)
end)

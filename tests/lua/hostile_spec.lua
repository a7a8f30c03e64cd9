-- Hostile scripts, the cases by hand (the sweep over every function is tests/hostile.sh):
-- the crashes the sweep found, each run in a child process so a regression fails
-- by name instead of killing busted; requests for tensors larger than memory,
-- which must raise before touching memory; and what error messages say.
local helpers = dofile("tests/lua/support/helpers.lua")
local error_of, assert_contains, quote = helpers.error_of, helpers.assert_contains, helpers.quote

local bin = dd.process and dd.process.executable() or dd.home .. "/deepdance"

-- Runs Lua code in a child deepdance; returns its status and output.
local function child(code)
  local p = io.popen(("%s -e %s 2>&1; echo \"status $?\""):format(quote(bin), quote(code)))
  local out = p:read("a")
  p:close()
  local status = tonumber(out:match("status (%d+)%s*$"))
  return status, out:gsub("status %d+%s*$", "")
end

-- The process must survive and the call raise an error holding `expected`.
local function survives(code, expected)
  local status, out = child(("local ok, err = pcall(function() %s end)\n"
    .. "assert(not ok, 'expected an error')\nio.write(tostring(err))"):format(code))
  assert(status == 0, ("the child died (status %s): %s"):format(tostring(status), out))
  assert_contains(out, expected)
end

describe("hostile scripts: crashes found by the sweep", function()
  it("a Layer after a direct __gc call raises instead of crashing", function()
    survives([[local l = dd.nn.Linear{3, 4}; getmetatable(l).__gc(l); return l:forward(dd.zeros(2, 3))]],
      "Layer has been freed")
    survives([[local l = dd.nn.Linear{3, 4}; getmetatable(l).__gc(l); return l.training]], "Layer has been freed")
    survives([[local l = dd.nn.Linear{3, 4}; getmetatable(l).__gc(l); getmetatable(l).__gc(l);
      return dd.nn.Sequential{ l }:train()]], "Layer has been freed")
  end)

  it("an Optimizer after a direct __gc call raises instead of crashing", function()
    survives([[local o = dd.optim.Adam{ dd.nn.Linear{2, 2}:parameters() }; getmetatable(o).__gc(o); return o:step()]],
      "Optimizer has been freed")
    survives([[local o = dd.optim.SGD{ dd.nn.Linear{2, 2}:parameters(), lr = 0.1 }; getmetatable(o).__gc(o);
      return dd.nn.clip_grad_norm(o, 1)]], "Optimizer has been freed")
  end)

  it("a FrameSet or FrameWriter after __gc raises; their __gc checks its argument", function()
    survives([[local fw = dd.data.frame_writer{ channels = 1, height = 2, width = 2 }
      fw:add(dd.zeros(1, 2, 2)); fw:save(os.tmpname())
      local gc = getmetatable(fw).__gc; gc(fw); return fw:add(dd.zeros(1, 2, 2))]], "FrameWriter has been freed")
    survives([[local path = os.tmpname(); local fw = dd.data.frame_writer{ channels = 1, height = 2, width = 2 }
      fw:add(dd.zeros(1, 2, 2)); fw:save(path); local fs = dd.data.frames(path); os.remove(path)
      getmetatable(fs).__gc(fs); return fs:get(1)]], "FrameSet has been freed")
    survives([[local fs = dd.data.frame_writer{ channels = 1, height = 2, width = 2 }; return getmetatable(fs).__gc()]],
      "dd.FrameWriter expected, got no value")
    survives([[dd.json.encode{} -- makes the JsonBox type
      return debug.getregistry()["dd.JsonBox"].__gc(dd.zeros(2))]], "dd.JsonBox expected")
  end)

  it("an optimizer state with an absurd step count is refused (step() overflowed)", function()
    survives([[local o = dd.optim.Adam{ dd.nn.Linear{2, 2}:parameters() }; local s = o:state_dict()
      s.step = math.maxinteger; return o:load_state_dict(s)]], "Adam:load_state_dict: 'step' must be in [0, 9007199254740992], got 9223372036854775807")
  end)

  it("terminal previews of odd shapes stay inside their buffers", function()
    local status, out = child([[io.write(dd.image.ascii(dd.randn(2, 3), { width = 10, mode = "plain" }))
      io.write(dd.image.ascii(dd.full({ 3, 1, 7 }, 0 / 0), { width = 1 }))]])
    assert(status == 0, out)
  end)
end)

describe("hostile scripts: tensors larger than memory", function()
  -- Resident memory in kB, to show that nothing was touched.
  local function rss()
    local f = io.open("/proc/self/status")
    local kb = f and tonumber(f:read("a"):match("VmRSS:%s*(%d+)"))
    if f then f:close() end
    return kb or 0
  end

  it("raises before allocating: constructors, views made whole, layers, resizes", function()
    local huge = 1 << 39 -- 2 TiB of floats, more than any machine this runs on
    local before = rss()
    local t0 = dd.clock()
    local cases = {
      { function() return dd.zeros{ 1 << 40, 1 << 20 } end, "zeros: shape (1099511627776,1048576) is too large" },
      { function() return dd.zeros(huge) end, "zeros: shape (549755813888,) needs 2097152.0 MiB, more than this machine's" },
      { function() return dd.ones(huge) end, "ones:" },
      { function() return dd.full({ huge }, 1) end, "full:" },
      { function() return dd.rand(1 << 20, 1 << 20) end, "rand:" },
      { function() return dd.randn(1 << 20, 1 << 20) end, "randn:" },
      { function() return dd.arange(0, 2 ^ 40) end, "arange:" },
      { function() return dd.randperm(huge) end, "randperm:" },
      { function() return dd.tensor(0):expand(1 << 20, 1 << 20):contiguous() end, "expand:" },
      { function() return dd.zeros(1, 1):expand(1 << 20, 1 << 20) + 1 end, "" },
      { function() return dd.nn.Linear{ 1 << 20, 1 << 20 } end, "Linear" },
      { function() return dd.nn.LSTM{ 1 << 20, 1 << 20 } end, "LSTM" },
      { function() return dd.vision.resize(dd.zeros(1, 2, 2), 1 << 20, 1 << 20) end, "resize: " },
      { function() return dd.zeros(1 << 20, 1):matmul(dd.zeros(1, 1 << 20)) end, "matmul" },
    }
    for i, c in ipairs(cases) do
      local ok, err = pcall(c[1])
      assert(not ok, ("case %d returned"):format(i))
      assert_contains(tostring(err), c[2])
      assert(tostring(err):find("too large") or tostring(err):find("more than this machine") or tostring(err):find("at most"),
        ("case %d: %s"):format(i, tostring(err)))
    end
    assert(dd.clock() - t0 < 5, "refusing took too long: something was touched")
    assert(rss() - before < 200 * 1024, ("resident memory grew by %d kB"):format(rss() - before))
  end)
end)

describe("hostile scripts: error messages name the function, what it expected and what it got", function()
  it("for a sample of misuses", function()
    local t = dd.randn(2, 3)
    local cases = {
      { function() return dd.abs("x") end, "bad argument #1 to 'abs' (Tensor expected, got string)" },
      { function() return t:narrow(3, 1, 1) end, "narrow: dimension 3 out of range for a 2-d tensor" },
      { function() return t:narrow(1, 0 / 0, 1) end, "narrow: start must be an integer, got" },
      { function() return dd.matmul(t, t) end, "matmul: shapes (2,3) and (2,3) do not match" },
      { function() return t:view(4, 2) end, "view: shape (4,2) has 8 elements, tensor of shape (2,3) has 6" },
      { function() return dd.zeros(-1) end, "zeros: size 1 must be a non-negative integer, got -1" },
      { function() return dd.nn.Linear{ 3, "x" } end, "Linear: option 'out_features' must be an integer, got string" },
      { function() return dd.nn.Linear{ 3, 4 }:forward(dd.zeros(2, 5)) end,
        "Linear: input of shape (2,5) must have 3 features in its last dimension" },
      { function() return dd.video.open(42) end, "dd.video.open: expected a path string as argument 1, got number" },
      { function() return dd.load("no/such.safetensors") end,
        "dd.load: no/such.safetensors: cannot open: No such file or directory" },
      { function() return dd.image.save("x.png", dd.zeros(5, 2, 2)) end,
        "image.save: image must be (C,H,W) with C in 1..4 or (H,W), got shape (5,2,2)" },
      { function() return dd.vision.resize(dd.zeros(3, 4, 4), -1, 2) end,
        "vision.resize: height must be in [1, 1048576], got -1" },
      { function() local x = dd.ones(2); getmetatable(x).__gc(x); return x:sum() end, "Tensor has been freed" },
      { function() return dd.defer_interrupts("yes") end, "defer_interrupts: expected a boolean, got string" },
    }
    for _, c in ipairs(cases) do assert_contains(error_of(c[1]), c[2]) end
  end)

  it("dd.process functions the sweep leaves out refuse hostile pids, signals and durations", function()
    if not dd.process then return end
    assert_contains(error_of(dd.process.kill, -1), "dd.process.kill: pid")
    assert_contains(error_of(dd.process.kill, 0), "dd.process.kill: pid")
    assert_contains(error_of(dd.process.kill, 1 << 62), "dd.process.kill: pid")
    assert_contains(error_of(dd.process.kill, 2 ^ 31, "KILL"), "dd.process.kill: pid")
    assert_contains(error_of(dd.process.kill, dd.process.pid(), "NOPE"), "unknown signal 'NOPE'")
    assert_contains(error_of(dd.process.kill, dd.process.pid(), 1 << 40), "dd.process.kill: signal")
    assert_contains(error_of(dd.process.sleep, -1), "dd.process.sleep: seconds must be a finite number >= 0")
    assert_contains(error_of(dd.process.sleep, 0 / 0), "dd.process.sleep: seconds must be a finite number >= 0")
    assert_contains(error_of(dd.process.sleep, math.huge), "dd.process.sleep: seconds must be a finite number >= 0")
    assert_contains(error_of(dd.process.wait, 1, 0 / 0), "dd.process.wait: timeout must be")
    assert_contains(error_of(dd.process.spawn, { argv = {} }), "dd.process.spawn: option 'argv' is empty")
    assert_contains(error_of(dd.process.spawn, { argv = { "x", {} } }), "argv[2] must be a string")
    assert_contains(error_of(dd.process.spawn, "x"), "dd.process.spawn")
  end)
end)

-- tensor_errors_spec.lua: every tensor function and method given bad input
-- must raise a Lua error that names the function, what it expected and the
-- value it got, and the runtime must carry on afterwards (no crash, no abort,
-- no huge allocation). Messages are matched as plain substrings.
-- Run: ./deepdance /usr/bin/busted -o TAP tests/lua/tensor_errors_spec.lua

-- The error message of f(), or a failure when f does not raise. The result of
-- a call that wrongly succeeds is never printed (it may be a 2^50-element view).
local function error_of(f)
  local ok, err = pcall(f)
  if ok then error("expected an error, got none", 3) end
  return tostring(err)
end

-- f must raise an error whose message contains every given substring.
local function expect_error(f, ...)
  local msg = error_of(f)
  for _, s in ipairs{...} do
    if not msg:find(s, 1, true) then
      error(string.format("error message %q does not contain %q", msg, s), 2)
    end
  end
  return msg
end

local function rss_mib()
  local f = io.open("/proc/self/statm")
  if not f then return nil end
  local _, resident = f:read("n", "n")
  f:close()
  return resident * 4096 / 2 ^ 20
end

local BAD_TYPES = { -- value, the type name the message must show
  {nil, "nil"}, {"x", "string"}, {{}, "table"}, {true, "boolean"}, {io.stdout, "userdata"},
}

describe("constructors reject bad sizes", function()
  local CONSTRUCTORS = {"zeros", "ones", "rand", "randn"}

  for _, name in ipairs(CONSTRUCTORS) do
    local f = dd[name]

    it(name .. " with wrong types", function()
      for _, bt in ipairs(BAD_TYPES) do
        local v, tn = bt[1], bt[2]
        if tn ~= "table" then
          expect_error(function() return f(v) end, name, "size 1", "non-negative integer", tn)
          expect_error(function() return f(2, v) end, name, "size 2", tn)
          if v ~= nil then -- {2, nil} is just {2}
            expect_error(function() return f{2, v} end, name, "size 2", tn)
          end
        end
      end
      expect_error(function() return f(2, {3}) end, name, "size 2", "table")
      expect_error(function() return f{{2}} end, name, "size 1", "table")
    end)

    it(name .. " with negative, NaN, infinite and fractional sizes", function()
      expect_error(function() return f(-1) end, name, "size 1", "-1")
      expect_error(function() return f(3, -2) end, name, "size 2", "-2")
      expect_error(function() return f{3, -2} end, name, "size 2", "-2")
      expect_error(function() return f(0 / 0) end, name, "size 1", "nan")
      expect_error(function() return f{0 / 0} end, name, "size 1", "nan")
      expect_error(function() return f(math.huge) end, name, "size 1", "inf")
      expect_error(function() return f(2, -math.huge) end, name, "size 2", "-inf")
      expect_error(function() return f(2.5) end, name, "size 1", "2.5")
      expect_error(function() return f{2, 2.5} end, name, "size 2", "2.5")
    end)

    it(name .. " with 9 dimensions", function()
      expect_error(function() return f(1, 1, 1, 1, 1, 1, 1, 1, 1) end, name, "at most 8 dimensions", "got 9")
      expect_error(function() return f{1, 1, 1, 1, 1, 1, 1, 1, 1} end, name, "at most 8 dimensions", "got 9")
    end)

    it(name .. "(1e12, 1e12) and other overflowing shapes name the size", function()
      expect_error(function() return f(1e12, 1e12) end, name, "1000000000000")
      expect_error(function() return f(2 ^ 62) end, name, "4611686018427387904")
      expect_error(function() return f(2 ^ 63) end, name, "9.22")
      expect_error(function() return f(1e6, 1e6, 1e6) end, name, "1000000")
      expect_error(function() return f(2 ^ 32, 2 ^ 32) end, name, "4294967296")
    end)
  end

  it("zeros/ones/rand/randn{1e12, 1e12} (table form) name the function and the size", function()
    for _, name in ipairs(CONSTRUCTORS) do
      expect_error(function() return dd[name]{1e12, 1e12} end, name, "1000000000000")
    end
  end)

  it("zeros/ones/rand/randn(2^40) are refused naming the function and the size, without allocating", function()
    local before = rss_mib()
    for _, name in ipairs(CONSTRUCTORS) do
      expect_error(function() return dd[name](2 ^ 40) end, name, "1099511627776")
      expect_error(function() return dd[name]{2 ^ 40} end, name, "1099511627776")
    end
    if before then assert.is_true(rss_mib() - before < 100) end
  end)

  it("absurd sizes never allocate", function()
    local before = rss_mib()
    for _ = 1, 3 do
      for _, name in ipairs(CONSTRUCTORS) do
        pcall(dd[name], 1e12, 1e12)
        pcall(dd[name], {1e12, 1e12})
        pcall(dd[name], 2 ^ 40)
      end
      pcall(dd.full, {1e12, 1e12}, 1)
      pcall(dd.arange, 2 ^ 40)
      pcall(dd.randperm, 2 ^ 40)
    end
    if before then assert.is_true(rss_mib() - before < 100, "resident memory grew") end
  end)
end)

describe("dd.tensor rejects bad tables", function()
  it("wrong argument types", function()
    for _, bt in ipairs(BAD_TYPES) do
      if bt[2] ~= "table" then
        expect_error(function() return dd.tensor(bt[1]) end, "tensor", "expected", bt[2])
      end
    end
    expect_error(function() return dd.tensor() end, "tensor", "no value")
  end)

  it("non-numeric elements name their position", function()
    expect_error(function() return dd.tensor{1, "a"} end, "tensor", "element [2]", "number", "string")
    expect_error(function() return dd.tensor{{1, 2}, {3, true}} end, "tensor", "element [2][2]", "number", "boolean")
    expect_error(function() return dd.tensor{"1"} end, "tensor", "element [1]", "string")
    expect_error(function() return dd.tensor{1, {2}} end, "tensor", "element [2]", "number", "table")
    expect_error(function() return dd.tensor{{1, 2}, 3} end, "tensor", "element [2]", "table", "number")
    expect_error(function() return dd.tensor{io.stdout} end, "tensor", "element [1]", "userdata")
  end)

  it("ragged tables name the lengths", function()
    expect_error(function() return dd.tensor{{1, 2}, {3}} end, "tensor", "ragged", "2", "1")
    expect_error(function() return dd.tensor{{1}, {2, 3}} end, "tensor", "ragged", "1", "2")
    expect_error(function() return dd.tensor{{{1, 2}}, {{3}}} end, "tensor", "ragged")
  end)

  it("a ragged table whose first row is empty", function()
    expect_error(function() return dd.tensor{{}, {1, 2}} end, "tensor", "ragged")
  end)

  it("nesting deeper than 8 levels (and self-reference)", function()
    expect_error(function() return dd.tensor{{{{{{{{{1}}}}}}}}} end, "tensor", "8")
    local loop = {}
    loop[1] = loop
    expect_error(function() return dd.tensor(loop) end, "tensor", "8")
  end)
end)

describe("other constructors and runtime functions", function()
  it("full", function()
    expect_error(function() return dd.full(5, 1) end, "full", "shape must be a table", "number")
    expect_error(function() return dd.full(nil, 1) end, "full", "shape must be a table", "nil")
    expect_error(function() return dd.full({2}, "x") end, "full", "value must be a number", "string")
    expect_error(function() return dd.full({2}) end, "full", "value must be a number", "no value")
    expect_error(function() return dd.full({-1}, 0) end, "full", "size 1", "-1")
    expect_error(function() return dd.full({2, 2.5}, 0) end, "full", "size 2", "2.5")
    expect_error(function() return dd.full({"x"}, 0) end, "full", "size 1", "string")
    expect_error(function() return dd.full({1, 1, 1, 1, 1, 1, 1, 1, 1}, 0) end, "full", "at most 8 dimensions", "got 9")
  end)

  it("full with an absurd shape names the function and the size", function()
    expect_error(function() return dd.full({1e12, 1e12}, 0) end, "full", "1000000000000")
  end)

  it("arange", function()
    expect_error(function() return dd.arange() end, "arange", "1 to 3", "got 0")
    expect_error(function() return dd.arange(1, 2, 3, 4) end, "arange", "1 to 3", "got 4")
    expect_error(function() return dd.arange("x") end, "arange", "argument 1", "number", "string")
    expect_error(function() return dd.arange(1, nil) end, "arange", "argument 2", "nil")
    expect_error(function() return dd.arange(1, 2, {}) end, "arange", "argument 3", "table")
    expect_error(function() return dd.arange(0, 1, 0) end, "arange", "step", "0")
    expect_error(function() return dd.arange(0 / 0) end, "arange", "finite", "nan")
    expect_error(function() return dd.arange(math.huge) end, "arange", "finite", "inf")
    expect_error(function() return dd.arange(0, 1, -math.huge) end, "arange", "finite", "-inf")
  end)

  it("arange with too many elements names the count", function()
    expect_error(function() return dd.arange(0, 1e13) end, "arange", "10000000000000")
    expect_error(function() return dd.arange(2 ^ 40) end, "arange", "1099511627776")
  end)

  it("randperm", function()
    expect_error(function() return dd.randperm() end, "randperm", "integer", "no value")
    expect_error(function() return dd.randperm("x") end, "randperm", "integer", "string")
    expect_error(function() return dd.randperm(2.5) end, "randperm", "integer", "2.5")
    expect_error(function() return dd.randperm(-1) end, "randperm", "-1")
    expect_error(function() return dd.randperm(0 / 0) end, "randperm", "nan")
    expect_error(function() return dd.randperm(2 ^ 41) end, "randperm", "2199023255552")
  end)

  it("randperm(2^40) names the function and the size", function()
    expect_error(function() return dd.randperm(2 ^ 40) end, "randperm", "1099511627776")
  end)

  it("manual_seed", function()
    expect_error(function() return dd.manual_seed() end, "manual_seed", "integer", "no value")
    expect_error(function() return dd.manual_seed("x") end, "manual_seed", "integer", "string")
    expect_error(function() return dd.manual_seed({}) end, "manual_seed", "integer", "table")
  end)

  it("manual_seed with a fractional seed shows the value", function()
    expect_error(function() return dd.manual_seed(2.5) end, "manual_seed", "integer", "2.5")
  end)

  it("set_rng_state", function()
    expect_error(function() return dd.set_rng_state() end, "set_rng_state", "64 hex digits", "no value")
    expect_error(function() return dd.set_rng_state({}) end, "set_rng_state", "64 hex digits", "table")
    expect_error(function() return dd.set_rng_state("abc") end, "set_rng_state", "64 hex digits", "abc")
    expect_error(function() return dd.set_rng_state(string.rep("g", 64)) end, "set_rng_state", "gggg")
    expect_error(function() return dd.set_rng_state(string.rep("0", 64)) end, "set_rng_state", "all-zero")
    expect_error(function() return dd.set_rng_state(dd.rng_state() .. "0") end, "set_rng_state", "64 hex digits")
  end)

  it("set_num_threads", function()
    expect_error(function() return dd.set_num_threads(0) end, "set_num_threads", "[1, 1024]", "got 0")
    expect_error(function() return dd.set_num_threads(-1) end, "set_num_threads", "got -1")
    expect_error(function() return dd.set_num_threads(1025) end, "set_num_threads", "got 1025")
    expect_error(function() return dd.set_num_threads(2.5) end, "set_num_threads", "integer", "2.5")
    expect_error(function() return dd.set_num_threads("x") end, "set_num_threads", "integer", "string")
    expect_error(function() return dd.set_num_threads() end, "set_num_threads", "integer", "no value")
  end)
end)

describe("methods called on something that is not a Tensor", function()
  local names = {}
  for k in pairs(dd.Tensor) do names[#names + 1] = k end
  table.sort(names)

  it("dd.Tensor.sum(5)", function()
    expect_error(function() return dd.Tensor.sum(5) end, "sum", "Tensor expected", "number")
  end)

  for _, name in ipairs(names) do
    it("dd.Tensor." .. name .. " with a non-Tensor self", function()
      -- Called through a field so the message can name the method.
      local call = assert(load("return dd.Tensor." .. name .. "(...)"))
      for _, bt in ipairs{{5, "number"}, {"x", "string"}, {nil, "nil"}, {{}, "table"}, {io.stdout, "FILE*"}} do
        local msg = expect_error(function() return call(bt[1], 1) end, name, "Tensor")
        local tn = bt[2]
        if not (msg:find(tn, 1, true) or (tn == "FILE*" and msg:find("userdata", 1, true))) then
          error(string.format("dd.Tensor.%s(%s): message %q does not name the type", name, tn, msg))
        end
      end
    end)
  end

  it("metamethods with a non-Tensor operand", function()
    local mt = getmetatable(dd.ones(1))
    expect_error(function() return mt.__tostring(5) end, "Tensor expected", "number")
    expect_error(function() return mt.__len(5) end, "Tensor expected", "number")
    expect_error(function() return mt.__newindex(5, 1, 1) end, "Tensor expected", "number")
    expect_error(function() return mt.__index(5, 1) end, "Tensor expected", "number")
    expect_error(function() return mt.__unm(5) end, "Tensor expected", "number")
    expect_error(function() return mt.__gc("x") end, "Tensor expected", "string")
  end)

  it("a tensor freed by a direct __gc call raises instead of crashing", function()
    local t = dd.ones(2, 2)
    local v = t:narrow(1, 1, 1)
    local gc = getmetatable(t).__gc
    gc(t)
    gc(t) -- twice is harmless
    expect_error(function() return t:sum() end, "freed")
    expect_error(function() return #t end, "freed")
    expect_error(function() return t[1] end, "freed")
    expect_error(function() return t + 1 end, "Tensor")
    expect_error(function() return dd.matmul(t, t) end, "freed")
    assert.are.equal("tensor(<freed>)", tostring(t))
    assert.are.equal(2, v:sum()) -- the view still owns the storage
  end)
end)

describe("shape and element access errors", function()
  local t
  before_each(function() t = dd.zeros(2, 3) end)

  it("size with bad dimensions", function()
    expect_error(function() return t:size(0) end, "size", "dimension 0 out of range for a 2-d tensor")
    expect_error(function() return t:size(3) end, "size", "dimension 3 out of range for a 2-d tensor")
    expect_error(function() return t:size(-3) end, "size", "dimension -3 out of range for a 2-d tensor")
    expect_error(function() return t:size("x") end, "size", "dimension must be an integer", "string")
    expect_error(function() return dd.tensor(1):size(1) end, "size", "out of range for a 0-d tensor")
  end)

  it("get and set with the wrong number of indices", function()
    expect_error(function() return t:get(1) end, "get", "2-d tensor needs 2 indices, got 1")
    expect_error(function() return t:get(1, 1, 1) end, "get", "needs 2 indices, got 3")
    expect_error(function() return t:get() end, "get", "needs 2 indices, got 0")
    expect_error(function() return dd.tensor(1):get(1) end, "get", "0-d tensor needs 0 indices, got 1")
    expect_error(function() return t:set(1, 5) end, "set", "needs 2 indices, got 1")
    expect_error(function() return t:set(1, 1, 1, 5) end, "set", "needs 2 indices, got 3")
    expect_error(function() return t:set() end, "set", "value")
  end)

  it("get and set with bad index types", function()
    expect_error(function() return t:get(1, "x") end, "get", "index 2", "integer", "string")
    expect_error(function() return t:get(1.5, 1) end, "get", "index 1", "integer", "1.5")
    expect_error(function() return t:get(nil, 1) end, "get", "index 1", "nil")
    expect_error(function() return t:set(1, {}, 2) end, "set", "index 2", "table")
    expect_error(function() return t:set(1, 1, "x") end, "set", "value must be a number", "string")
    expect_error(function() return t:set(1, 1, nil) end, "set", "value must be a number", "nil")
  end)

  it("get and set with out-of-range indices name the index and the size", function()
    expect_error(function() return t:get(0, 1) end, "get", "index 0", "dimension 1", "size 2")
    expect_error(function() return t:get(3, 1) end, "get", "index 3", "dimension 1", "size 2")
    expect_error(function() return t:get(1, 4) end, "get", "index 4", "dimension 2", "size 3")
    expect_error(function() return t:get(1, -4) end, "get", "index -4", "dimension 2", "size 3")
    expect_error(function() return t:set(-3, 1, 0) end, "set", "index -3", "dimension 1", "size 2")
    expect_error(function() return t:set(1, 2 ^ 62, 0) end, "set", "dimension 2", "size 3")
  end)

  it("item on a tensor without exactly one element names the count", function()
    expect_error(function() return t:item() end, "item", "exactly one element", "6")
    expect_error(function() return dd.zeros(0):item() end, "item", "exactly one element", "0")
  end)

  it("#t and t[i] on a 0-d tensor", function()
    expect_error(function() return #dd.tensor(1) end, "0-d")
    expect_error(function() return dd.tensor(1)[1] end, "index", "0-d")
    expect_error(function() local z = dd.tensor(1); z[1] = 2 end, "newindex", "0-d")
  end)

  it("t[i] with out-of-range or non-integer i", function()
    expect_error(function() return t[0] end, "index", "index 0 out of range", "size 2")
    expect_error(function() return t[3] end, "index", "index 3 out of range", "size 2")
    expect_error(function() return t[-3] end, "index", "index -3 out of range", "size 2")
    expect_error(function() return t[1.5] end, "index", "integer", "1.5")
    expect_error(function() return t[1][4] end, "index", "index 4", "size 3")
  end)

  it("t[i] = v with bad i or v", function()
    expect_error(function() t[0] = 1 end, "newindex", "index 0", "size 2")
    expect_error(function() t[3] = 1 end, "newindex", "index 3", "size 2")
    expect_error(function() t[1.5] = 1 end, "newindex", "integer", "1.5")
    expect_error(function() t[1] = "x" end, "newindex", "value must be a number", "string")
    expect_error(function() t[1] = {} end, "newindex", "value must be a number", "table")
    expect_error(function() t[1] = dd.zeros(4) end, "newindex", "(4,)", "(3,)")
    expect_error(function() t.foo = 1 end, "newindex", "foo")
    expect_error(function() t.sum = 1 end, "newindex", "sum")
  end)

  it("calling a method that does not exist", function()
    expect_error(function() return t:no_such_method() end, "no_such_method")
  end)
end)

describe("view method errors", function()
  local t
  before_each(function() t = dd.zeros(2, 3) end)

  it("narrow", function()
    expect_error(function() return t:narrow(3, 1, 1) end, "narrow", "dimension 3 out of range for a 2-d tensor")
    expect_error(function() return t:narrow(0, 1, 1) end, "narrow", "dimension 0 out of range for a 2-d tensor")
    expect_error(function() return t:narrow(-3, 1, 1) end, "narrow", "dimension -3 out of range")
    expect_error(function() return t:narrow("x", 1, 1) end, "narrow", "dimension must be an integer", "string")
    expect_error(function() return t:narrow(1, 0, 1) end, "narrow", "start", "[1, 3]", "got 0")
    expect_error(function() return t:narrow(1, 4, 0) end, "narrow", "start", "[1, 3]", "got 4")
    expect_error(function() return t:narrow(1, 1.5, 1) end, "narrow", "start", "integer", "1.5")
    expect_error(function() return t:narrow(1) end, "narrow", "start", "no value")
    expect_error(function() return t:narrow(1, 1, 3) end, "narrow", "length", "[0, 2]", "got 3")
    expect_error(function() return t:narrow(1, 2, 2) end, "narrow", "length", "[0, 1]", "got 2")
    expect_error(function() return t:narrow(1, 1, -1) end, "narrow", "length", "got -1")
    expect_error(function() return t:narrow(1, 1, "x") end, "narrow", "length", "string")
  end)

  it("a fractional dimension is reported with its value", function()
    expect_error(function() return t:narrow(2.5, 1, 1) end, "narrow", "dimension", "2.5")
    expect_error(function() return t:select(1.5, 1) end, "select", "dimension", "1.5")
  end)

  it("select", function()
    expect_error(function() return t:select(3, 1) end, "select", "dimension 3 out of range for a 2-d tensor")
    expect_error(function() return t:select(0, 1) end, "select", "dimension 0 out of range")
    expect_error(function() return t:select(1, 0) end, "select", "index 0 out of range for dimension 1 of size 2")
    expect_error(function() return t:select(1, 3) end, "select", "index 3 out of range for dimension 1 of size 2")
    expect_error(function() return t:select(2, -4) end, "select", "index -4 out of range for dimension 2 of size 3")
    expect_error(function() return t:select(1, "x") end, "select", "index must be an integer", "string")
    expect_error(function() return t:select(1, 1.5) end, "select", "index must be an integer", "1.5")
    expect_error(function() return dd.tensor(1):select(1, 1) end, "select", "0-d")
  end)

  it("transpose and t", function()
    expect_error(function() return t:transpose(1, 3) end, "transpose", "dimension 3 out of range for a 2-d tensor")
    expect_error(function() return t:transpose(0, 1) end, "transpose", "dimension 0 out of range")
    expect_error(function() return t:transpose(1, "x") end, "transpose", "dimension must be an integer", "string")
    expect_error(function() return dd.zeros(2, 3, 4):transpose() end, "transpose", "dimension", "no value")
    expect_error(function() return dd.zeros(3):t() end, "transpose", "dimension")
  end)

  it("permute", function()
    expect_error(function() return t:permute(1) end, "permute", "2-d tensor needs 2 dimensions, got 1")
    expect_error(function() return t:permute(1, 2, 3) end, "permute", "needs 2 dimensions, got 3")
    expect_error(function() return t:permute{2} end, "permute", "needs 2 dimensions, got 1")
    expect_error(function() return t:permute(1, 1) end, "permute", "dimension 1 repeated")
    expect_error(function() return t:permute(2, -1) end, "permute", "dimension 2 repeated")
    expect_error(function() return t:permute(1, 3) end, "permute", "dimension 3 out of range for a 2-d tensor")
    expect_error(function() return t:permute(1, "x") end, "permute", "dimension must be an integer", "string")
    expect_error(function() return t:permute(1, 1, 1, 1, 1, 1, 1, 1, 1) end, "permute", "got 9")
  end)

  it("view of a non-contiguous tensor", function()
    expect_error(function() return t:t():view(6) end, "view", "(3,2)", "not contiguous")
    expect_error(function() return t:narrow(2, 1, 2):view(4) end, "view", "(2,2)", "not contiguous")
    expect_error(function() return dd.ones(3, 1):expand(3, 4):view(12) end, "view", "(3,4)", "not contiguous")
  end)

  it("view and reshape with bad sizes", function()
    for _, m in ipairs{"view", "reshape"} do
      expect_error(function() return t[m](t, -1, -1) end, m, "only one size may be -1")
      expect_error(function() return t[m](t, -2, 3) end, m, "size 1", "-2")
      expect_error(function() return t[m](t, 3, "x") end, m, "size 2", "string")
      expect_error(function() return t[m](t, 2.5) end, m, "size 1", "2.5")
      expect_error(function() return t[m](t, 0 / 0) end, m, "size 1", "nan")
      expect_error(function() return t[m](t, {6, {}}) end, m, "size 2", "table")
      expect_error(function() return t[m](t, 1, 1, 1, 1, 1, 1, 1, 1, 6) end, m, "at most 8 dimensions", "got 9")
      expect_error(function() return t[m](t, 2 ^ 40, 2 ^ 40) end, m, "too large")
    end
  end)

  it("view and reshape with a mismatched element count name both shapes and counts", function()
    for _, m in ipairs{"view", "reshape"} do
      expect_error(function() return t[m](t, 4, 2) end, m, "(4,2)", "8", "(2,3)", "6")
      expect_error(function() return t[m](t, 7) end, m, "(7,)", "7", "6")
      expect_error(function() return t[m](t, 4, -1) end, m, "-1", "6", "(4,1)")
      expect_error(function() return t[m](t, 0, -1) end, m, "-1", "6")
    end
  end)

  it("unsqueeze and squeeze", function()
    expect_error(function() return t:unsqueeze(0) end, "unsqueeze", "dimension 0 out of range")
    expect_error(function() return t:unsqueeze(4) end, "unsqueeze", "dimension 4 out of range")
    expect_error(function() return t:unsqueeze(-4) end, "unsqueeze", "dimension -4 out of range")
    expect_error(function() return t:unsqueeze("x") end, "unsqueeze", "dimension must be an integer", "string")
    expect_error(function() return t:unsqueeze() end, "unsqueeze", "no value")
    expect_error(function() return dd.zeros(1, 1, 1, 1, 1, 1, 1, 1):unsqueeze(1) end, "unsqueeze", "already has 8 dimensions")
    expect_error(function() return t:squeeze(3) end, "squeeze", "dimension 3 out of range for a 2-d tensor")
    expect_error(function() return t:squeeze(-3) end, "squeeze", "dimension -3 out of range")
    expect_error(function() return t:squeeze("x") end, "squeeze", "dimension must be an integer", "string")
  end)

  it("expand", function()
    expect_error(function() return t:expand(4, 3) end, "expand", "cannot expand shape (2,3) to (4,3)")
    expect_error(function() return t:expand(2, 4) end, "expand", "(2,3)", "(2,4)")
    expect_error(function() return t:expand(3) end, "expand", "1 sizes given for a 2-d tensor")
    expect_error(function() return t:expand() end, "expand", "0 sizes given for a 2-d tensor")
    expect_error(function() return t:expand(2, "x") end, "expand", "size 2", "string")
    expect_error(function() return t:expand(2, -2) end, "expand", "size 2", "-2")
    expect_error(function() return t:expand(2, 3.5) end, "expand", "size 2", "3.5")
    expect_error(function() return t:expand(1, 1, 1, 1, 1, 1, 1, 2, 3) end, "expand", "at most 8 dimensions", "got 9")
    expect_error(function() return dd.ones(1):expand(2 ^ 50) end, "expand", "1125899906842624")
  end)

  it("expand to an absurd size in table form names the size", function()
    expect_error(function() return dd.ones(1):expand{2 ^ 50} end, "expand", "1125899906842624")
    expect_error(function() return dd.ones(1, 1):expand{2 ^ 32, 2 ^ 32} end, "expand", "4294967296")
  end)

  it("copy and fill", function()
    expect_error(function() return t:copy(5) end, "copy", "Tensor expected", "number")
    expect_error(function() return t:copy() end, "copy", "Tensor expected", "no value")
    expect_error(function() return t:copy(io.stdout) end, "copy", "Tensor expected")
    expect_error(function() return t:fill("x") end, "fill", "value must be a number", "string")
    expect_error(function() return t:fill() end, "fill", "value must be a number", "no value")
    expect_error(function() return t:fill({}) end, "fill", "table")
  end)

  it("copy with a different number of elements names both shapes and counts", function()
    expect_error(function() return t:copy(dd.zeros(4)) end, "copy", "(4,)", "4", "(2,3)", "6")
  end)
end)

describe("math errors", function()
  local BINARY = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "lt", "le", "gt", "ge", "eq", "ne"}
  local a, b
  before_each(function() a, b = dd.zeros(2, 3), dd.zeros(4) end)

  for _, name in ipairs(BINARY) do
    it(name .. ", " .. name .. "_ and dd." .. name .. " with mismatched shapes and wrong types", function()
      local want = name .. ": shapes (2,3) and (4,) do not broadcast (dimension 2: 3 vs 4)"
      expect_error(function() return a[name](a, b) end, want)
      expect_error(function() return dd[name](a, b) end, want)
      expect_error(function() return dd[name](b, a) end, name .. ": shapes (4,) and (2,3) do not broadcast")
      expect_error(function() return a[name .. "_"](a, b) end, name .. "_: shapes (2,3) and (4,) do not broadcast")
      expect_error(function() return a[name .. "_"](a, dd.zeros(4, 2, 3)) end,
        name .. "_: operand of shape (4,2,3) does not broadcast to the tensor's shape (2,3)")
      expect_error(function() return a[name .. "_"](a, dd.zeros(2, 1, 1)) end, name .. "_", "(2,1,1)", "(2,3)")
      for _, bt in ipairs(BAD_TYPES) do
        expect_error(function() return a[name](a, bt[1]) end, name, "expected a Tensor or a number", bt[2])
        expect_error(function() return a[name .. "_"](a, bt[1]) end, name .. "_", "expected a Tensor or a number", bt[2])
      end
      expect_error(function() return dd[name](1, 2) end, name, "expected a Tensor operand", "number and number")
      expect_error(function() return dd[name]("x", a) end, name, "expected a Tensor or a number", "string")
      expect_error(function() return dd[name]() end, name, "Tensor", "no value")
    end)
  end

  it("operators with mismatched shapes and wrong operands", function()
    local ops = {
      ["+"] = function(x, y) return x + y end, ["-"] = function(x, y) return x - y end,
      ["*"] = function(x, y) return x * y end, ["/"] = function(x, y) return x / y end,
      ["^"] = function(x, y) return x ^ y end,
    }
    for sym, op in pairs(ops) do
      expect_error(function() return op(a, b) end, sym .. ": shapes (2,3) and (4,) do not broadcast")
      expect_error(function() return op(dd.zeros(3, 1, 2), dd.zeros(4, 3)) end, sym, "(3,1,2)", "(4,3)")
      expect_error(function() return op(a, "x") end, sym, "expected a Tensor or a number", "string")
      expect_error(function() return op("x", a) end, sym, "expected a Tensor or a number", "string")
      expect_error(function() return op(a, {}) end, sym, "table")
      expect_error(function() return op({}, a) end, sym, "table")
      expect_error(function() return op(a, true) end, sym, "boolean")
      expect_error(function() return op(io.stdout, a) end, sym, "userdata")
    end
  end)

  it("clamp and clamp_", function()
    for _, m in ipairs{"clamp", "clamp_"} do
      expect_error(function() return a[m](a) end, m, "at least one of min and max")
      expect_error(function() return a[m](a, 2, 1) end, m, "min 2", "greater than max 1")
      expect_error(function() return a[m](a, "x") end, m, "min must be a number or nil", "string")
      expect_error(function() return a[m](a, nil, {}) end, m, "max must be a number or nil", "table")
    end
  end)

  for _, name in ipairs{"sum", "mean", "max", "min", "argmax", "argmin"} do
    it(name .. " with bad dimensions and empty input", function()
      expect_error(function() return a[name](a, 3) end, name .. ": dimension 3 out of range for a 2-d tensor")
      expect_error(function() return a[name](a, 0) end, name .. ": dimension 0 out of range for a 2-d tensor")
      expect_error(function() return a[name](a, -3) end, name .. ": dimension -3 out of range for a 2-d tensor")
      expect_error(function() return a[name](a, "x") end, name, "dimension must be an integer", "string")
      expect_error(function() return a[name](a, {}) end, name, "dimension must be an integer", "table")
      expect_error(function() return dd.tensor(1)[name](dd.tensor(1), 1) end, name, "0-d")
      local call = assert(load("return dd." .. name .. "(...)")) -- a field call, so Lua can name it
      expect_error(function() return call(5) end, name, "Tensor expected", "number")
      if name ~= "sum" then
        expect_error(function() return dd.zeros(0)[name](dd.zeros(0)) end, name, "empty")
        expect_error(function() return dd.zeros(2, 0)[name](dd.zeros(2, 0), 2) end, name, "dimension 2 is empty")
      end
    end)

  end

  it("sum/mean/max/min/argmax/argmin with a fractional dimension show the value", function()
    for _, name in ipairs{"sum", "mean", "max", "min", "argmax", "argmin"} do
      expect_error(function() return a[name](a, 1.5) end, name, "dimension", "1.5")
    end
  end)

  it("matmul with mismatched shapes, wrong ranks and wrong types", function()
    expect_error(function() return dd.matmul(dd.zeros(3, 4), dd.zeros(5, 2)) end, "matmul: shapes (3,4) and (5,2) do not match")
    expect_error(function() return dd.matmul(dd.zeros(2, 3, 4), dd.zeros(3, 4, 5)) end,
      "matmul: shapes (2,3,4) and (3,4,5) do not match")
    expect_error(function() return dd.matmul(dd.zeros(2, 3, 4), dd.zeros(2, 5, 5)) end, "matmul: shapes (2,3,4) and (2,5,5)")
    expect_error(function() return dd.matmul(dd.zeros(2, 3, 4), dd.zeros(5, 6)) end, "matmul: shapes (2,3,4) and (5,6)")
    expect_error(function() return dd.matmul(dd.zeros(3), dd.zeros(3)) end,
      "matmul: expected 2-d x 2-d, 3-d x 3-d or 3-d x 2-d tensors, got (3,) and (3,)")
    expect_error(function() return dd.matmul(dd.zeros(3, 4), dd.zeros(2, 4, 5)) end, "matmul", "(3,4)", "(2,4,5)")
    expect_error(function() return dd.matmul(dd.zeros(1, 2, 3, 4), dd.zeros(4, 5)) end, "matmul", "(1,2,3,4)")
    expect_error(function() return dd.matmul(dd.tensor(1), dd.tensor(1)) end, "matmul", "()")
    expect_error(function() return dd.matmul(dd.zeros(2, 2)) end, "matmul", "Tensor expected", "no value")
    expect_error(function() return dd.matmul(nil, dd.zeros(2, 2)) end, "matmul", "Tensor expected", "nil")
    expect_error(function() return dd.matmul(dd.zeros(2, 2), 5) end, "matmul", "Tensor expected", "number")
    expect_error(function() return dd.matmul({{1}}, dd.zeros(1, 1)) end, "matmul", "Tensor expected", "table")
    expect_error(function() return dd.zeros(2, 2):matmul("x") end, "matmul", "Tensor expected", "string")
  end)
end)

describe("after all these errors", function()
  it("the runtime still works", function()
    collectgarbage()
    local t = dd.ones(2, 2)
    assert.are.equal(4, t:sum())
    assert.are.same({{2, 2}, {2, 2}}, dd.matmul(t, t):totable())
    assert.are.equal(0, select(2, pcall(dd.zeros, -1)):find("zeros", 1, true) and 0 or 1)
  end)
end)

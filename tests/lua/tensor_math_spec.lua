-- tensor_math_spec.lua: tensor math from Lua: operators and methods with
-- NumPy broadcasting, in-place forms, element-wise functions, reductions and
-- matmul, checked against hand-computed values and plain Lua loops in double.
-- Run: ./deepdance /usr/bin/busted -o TAP tests/lua/tensor_math_spec.lua
local SEED = math.tointeger(tonumber(os.getenv("DD_TEST_SEED") or "1234")) or 1234
print("# tensor_math_spec: test seed " .. SEED .. " (DD_TEST_SEED)")

local function f32(x) return (string.unpack("<f", string.pack("<f", x))) end

local function flat(t, out)
  out = out or {}
  if type(t) ~= "table" then out[#out + 1] = t; return out end
  for i = 1, #t do flat(t[i], out) end
  return out
end

-- got (a tensor) equals want (nested table) elementwise: exactly after
-- rounding want to float32, or within rtol relative when rtol is given.
local function assert_values(got, want, rtol, what)
  local g, w = flat(got:totable()), flat(want)
  assert.are.equal(#w, #g, (what or "") .. ": element count")
  for i = 1, #w do
    local x, y = g[i], w[i]
    local ok
    if y ~= y then ok = x ~= x
    elseif rtol then ok = x == f32(y) or math.abs(x - y) <= rtol * math.abs(y)
    else ok = x == f32(y) end
    if not ok then
      error(string.format("%s: element %d is %.9g, want %.9g", what or "values", i, x, y), 2)
    end
  end
end

local A = {{1, 2, 3}, {4, 5, 6}}
local B = {{6, 5, 4}, {3, 2, 1}}

-- Elementwise reference over two same-shaped nested tables.
local function map2(a, b, f)
  if type(a) ~= "table" then return f(a, b) end
  local r = {}
  for i = 1, #a do r[i] = map2(a[i], type(b) == "table" and b[i] or b, f) end
  return r
end

local function b2n(c) return c and 1 or 0 end
local REF = {
  add = function(x, y) return x + y end,
  sub = function(x, y) return x - y end,
  mul = function(x, y) return x * y end,
  div = function(x, y) return x / y end,
  pow = function(x, y) return x ^ y end,
  maximum = function(x, y) return math.max(x, y) end,
  minimum = function(x, y) return math.min(x, y) end,
  lt = function(x, y) return b2n(x < y) end,
  le = function(x, y) return b2n(x <= y) end,
  gt = function(x, y) return b2n(x > y) end,
  ge = function(x, y) return b2n(x >= y) end,
  eq = function(x, y) return b2n(x == y) end,
  ne = function(x, y) return b2n(x ~= y) end,
}
local BINARY = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "lt", "le", "gt", "ge", "eq", "ne"}

describe("binary operators", function()
  it("+ - * / ^ on same-shaped tensors", function()
    local a, b = dd.tensor(A), dd.tensor(B)
    assert.are.same({{7, 7, 7}, {7, 7, 7}}, (a + b):totable())
    assert.are.same({{-5, -3, -1}, {1, 3, 5}}, (a - b):totable())
    assert.are.same({{6, 10, 12}, {12, 10, 6}}, (a * b):totable())
    assert_values(a / b, {{1 / 6, 0.4, 0.75}, {4 / 3, 2.5, 6}}, nil, "a / b")
    assert.are.same({{1, 32, 81}, {64, 25, 6}}, (a ^ b):totable())
    assert.are.same({{-1, -2, -3}, {-4, -5, -6}}, (-a):totable())
    assert.are.same(A, a:totable()) -- operands unchanged
  end)

  it("numbers on either side", function()
    local t = dd.tensor{1, 2, 4}
    assert.are.same({2, 3, 5}, (t + 1):totable())
    assert.are.same({2, 3, 5}, (1 + t):totable())
    assert.are.same({0, 1, 3}, (t - 1):totable())
    assert.are.same({9, 8, 6}, (10 - t):totable())
    assert.are.same({2, 4, 8}, (t * 2):totable())
    assert.are.same({2, 4, 8}, (2 * t):totable())
    assert.are.same({0.5, 1, 2}, (t / 2):totable())
    assert.are.same({1, 0.5, 0.25}, (1 / t):totable())
    assert.are.same({1, 4, 16}, (t ^ 2):totable())
    assert.are.same({2, 4, 16}, (2 ^ t):totable())
    assert_values(t ^ 0.5, {1, math.sqrt(2), 2}, 1e-6, "t ^ 0.5")
    assert.are.same({}, (dd.tensor(3) + 0):shape())
    assert.are.equal(4, (dd.tensor(3) + 1):item())
  end)

  it("broadcasts like NumPy", function()
    local col = dd.tensor{{1}, {2}, {3}}
    local row = dd.tensor{{10, 20, 30, 40}}
    assert.are.same({{11, 21, 31, 41}, {12, 22, 32, 42}, {13, 23, 33, 43}}, (col + row):totable())
    assert.are.same({{-9, -19, -29, -39}, {-8, -18, -28, -38}, {-7, -17, -27, -37}}, (col - row):totable())
    assert.are.same({{101, 202, 303}, {104, 205, 306}}, (dd.tensor(A) + dd.tensor{100, 200, 300}):totable())
    assert.are.same({{0, 0, 0}, {3, 3, 3}}, (dd.tensor(A) - dd.tensor{{1}, {1}} - dd.tensor{0, 1, 2}):totable())
    local x = dd.arange(6):view(2, 1, 3)
    local y = dd.arange(4):view(4, 1) * 10
    local z = x + y
    assert.are.same({2, 4, 3}, z:shape())
    for i = 1, 2 do for j = 1, 4 do for k = 1, 3 do
      assert.are.equal((i - 1) * 3 + (k - 1) + (j - 1) * 10, z:get(i, j, k))
    end end end
    assert.are.same({{3, 4}, {5, 6}}, (dd.tensor(2) + dd.tensor{{1, 2}, {3, 4}}):totable())
    assert.are.same({2, 2}, (dd.tensor{{1, 2}, {3, 4}} * dd.tensor(2)):shape())
  end)

  it("broadcasts with empty and stride-0 operands", function()
    assert.are.same({0, 3}, (dd.zeros(0, 3) + dd.ones(3)):shape())
    assert.are.same({2, 0}, (dd.zeros(2, 0) * dd.ones(1)):shape())
    assert.are.same({2, 0}, (dd.zeros(2, 1) + dd.zeros(0)):shape())
    local e = dd.tensor{{1}, {2}}:expand(2, 3)
    assert.are.same({{2, 3, 4}, {3, 4, 5}}, (e + dd.tensor{1, 2, 3}):totable())
    assert.are.same({{1, 1, 1}, {4, 4, 4}}, (e * e):totable())
  end)

  it("reads non-contiguous operands in logical order", function()
    local a, b = dd.tensor(A), dd.tensor(B)
    assert.are.same((a * b):t():totable(), (a:t() * b:t()):totable())
    assert.are.same((a + 1):narrow(2, 2, 2):totable(), (a:narrow(2, 2, 2) + 1):totable())
    assert.are.same({{1, 4}, {2, 5}, {3, 6}}, (a:t() + dd.zeros(3, 1)):totable())
  end)

  it("every binary method matches a Lua reference, with tensors and numbers, in all forms", function()
    local a, b = dd.tensor(A), dd.tensor(B)
    for _, name in ipairs(BINARY) do
      local want = map2(A, B, REF[name])
      assert_values(a[name](a, b), want, 1e-6, "a:" .. name .. "(b)")
      assert_values(dd[name](a, b), want, 1e-6, "dd." .. name .. "(a, b)")
      assert_values(a[name](a, 2), map2(A, 2, REF[name]), 1e-6, "a:" .. name .. "(2)")
      assert_values(dd[name](2, a), map2(A, A, function(x) return REF[name](2, x) end), 1e-6, "dd." .. name .. "(2, a)")
      assert_values(a[name](a, dd.tensor{3, 2, 1}), map2(A, {{3, 2, 1}, {3, 2, 1}}, REF[name]), 1e-6,
        "a:" .. name .. "(row)")
    end
  end)

  it("comparisons give 0/1 as integers", function()
    local a = dd.tensor{1, 2, 3}
    assert.are.same({1, 0, 0}, a:lt(2):totable())
    assert.are.same({1, 1, 0}, a:le(2):totable())
    assert.are.same({0, 0, 1}, a:gt(2):totable())
    assert.are.same({0, 1, 1}, a:ge(2):totable())
    assert.are.same({0, 1, 0}, a:eq(2):totable())
    assert.are.same({1, 0, 1}, a:ne(2):totable())
    assert.are.equal("integer", math.type(a:lt(2):get(1)))
  end)

  it("maximum and minimum propagate NaN", function()
    local nan = 0 / 0
    local m = dd.tensor{nan, 1, 3}:maximum(dd.tensor{1, nan, 2}):totable()
    assert.is_true(m[1] ~= m[1] and m[2] ~= m[2] and m[3] == 3)
    local n = dd.tensor{nan, 1, 3}:minimum(dd.tensor{1, nan, 2}):totable()
    assert.is_true(n[1] ~= n[1] and n[2] ~= n[2] and n[3] == 2)
  end)

  it("division by zero follows IEEE", function()
    local r = (dd.tensor{1, -1, 0} / 0):totable()
    assert.are.equal(math.huge, r[1])
    assert.are.equal(-math.huge, r[2])
    assert.is_true(r[3] ~= r[3])
  end)
end)

describe("in-place operations", function()
  it("every NAME_ returns self and equals NAME", function()
    for _, name in ipairs(BINARY) do
      local t = dd.tensor(A)
      local want = dd.tensor(A)[name](dd.tensor(A), dd.tensor(B)):totable()
      assert.are.equal(t, t[name .. "_"](t, dd.tensor(B)))
      assert.are.same(want, t:totable(), name .. "_ with a tensor")
      local u = dd.tensor(A)
      assert.are.equal(u, u[name .. "_"](u, 2))
      assert.are.same(dd.tensor(A)[name](dd.tensor(A), 2):totable(), u:totable(), name .. "_ with a number")
      local v = dd.tensor(A)
      v[name .. "_"](v, dd.tensor{3, 2, 1}) -- broadcast operand
      assert.are.same(dd.tensor(A)[name](dd.tensor(A), dd.tensor{3, 2, 1}):totable(), v:totable(), name .. "_ with a row")
    end
  end)

  it("in-place on a view writes through to the base", function()
    local b = dd.tensor(A)
    b:narrow(2, 1, 1):mul_(0)
    assert.are.same({{0, 2, 3}, {0, 5, 6}}, b:totable())
    b:t()[3]:add_(10) -- column 3
    assert.are.same({{0, 2, 13}, {0, 5, 16}}, b:totable())
    b[1]:sub_(dd.tensor{1, 1, 1})
    assert.are.same({{-1, 1, 12}, {0, 5, 16}}, b:totable())
  end)

  it("in-place with an operand overlapping self", function()
    local t = dd.arange(9):view(3, 3)
    local want = (t + t:t()):totable()
    t:add_(t:t())
    assert.are.same(want, t:totable())
    local u = dd.arange(4)
    u:add_(u)
    assert.are.same({0, 2, 4, 6}, u:totable())
    local r = dd.arange(6):view(2, 3)
    r:sub_(r[1]) -- row 1 broadcast over r, while row 1 itself changes
    assert.are.same({{0, 0, 0}, {3, 3, 3}}, r:totable())
    local s = dd.arange(6):view(2, 3)
    s:mul_(s:select(2, 3):unsqueeze(2)) -- column 3 broadcast over columns
    assert.are.same({{0, 2, 4}, {15, 20, 25}}, s:totable())
  end)

  it("in-place on a non-contiguous tensor with a number", function()
    local b = dd.arange(6):view(2, 3)
    b:t():mul_(2):add_(1)
    assert.are.same({{1, 3, 5}, {7, 9, 11}}, b:totable())
  end)
end)

local function tanh_ref(x) local e = math.exp(2 * x); return (e - 1) / (e + 1) end
local UNARY = {
  neg = {function(x) return -x end, -10, 10},
  exp = {math.exp, -20, 20},
  log = {math.log, 1e-3, 100},
  sqrt = {math.sqrt, 0, 100},
  abs = {math.abs, -10, 10},
  tanh = {tanh_ref, -9, 9},
  sigmoid = {function(x) return 1 / (1 + math.exp(-x)) end, -30, 30},
  relu = {function(x) return x > 0 and x or 0 end, -10, 10},
  sin = {math.sin, -10, 10},
  cos = {math.cos, -10, 10},
  floor = {math.floor, -10, 10},
  ceil = {math.ceil, -10, 10},
  round = {function(x) -- half to even
    local f = math.floor(x)
    local d = x - f
    if d > 0.5 or (d == 0.5 and f % 2 == 1) then return f + 1 end
    return f
  end, -10, 10},
  sign = {function(x) return x > 0 and 1 or x < 0 and -1 or 0 end, -10, 10},
  square = {function(x) return x * x end, -10, 10},
}

describe("element-wise functions", function()
  it("hand-computed values", function()
    assert.are.same({1}, dd.tensor{0}:exp():totable())
    assert.is_true(math.abs(dd.tensor{1}:exp():item() - math.exp(1)) < 1e-6)
    assert.are.same({0}, dd.tensor{1}:log():totable())
    assert.are.same({-math.huge}, dd.tensor{0}:log():totable())
    assert.are.same({0, 2, 3}, dd.tensor{0, 4, 9}:sqrt():totable())
    assert.are.same({3, 0, 2}, dd.tensor{-3, 0, 2}:abs():totable())
    assert.are.same({0}, dd.tensor{0}:tanh():totable())
    assert.are.same({0.5}, dd.tensor{0}:sigmoid():totable())
    assert.are.same({0, 0, 2}, dd.tensor{-1, 0, 2}:relu():totable())
    assert.are.same({0, 1}, {dd.tensor{0}:sin():item(), dd.tensor{0}:cos():item()})
    assert.are.same({-2, 1, 2}, dd.tensor{-1.5, 1, 2.9}:floor():totable())
    assert.are.same({-1, 1, 3}, dd.tensor{-1.5, 1, 2.1}:ceil():totable())
    assert.are.same({0, 2, 2, 0, -2, 2, 3}, dd.tensor{0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6}:round():totable())
    assert.are.same({-1, 0, 1}, dd.tensor{-3, 0, 2}:sign():totable())
    assert.are.same({9, 0, 4}, dd.tensor{-3, 0, 2}:square():totable())
    assert.are.same({3, 0, -2}, dd.tensor{-3, 0, 2}:neg():totable())
    local s = dd.tensor{-1000, 1000}:sigmoid():totable() -- no overflow to NaN
    assert.are.same({0, 1}, s)
  end)

  it("every function matches Lua's math in double (2e-6 relative) and has _ and dd. forms", function()
    dd.manual_seed(SEED)
    for name, spec in pairs(UNARY) do
      local ref, lo, hi = spec[1], spec[2], spec[3]
      local x = dd.rand(7, 9) * (hi - lo) + lo
      local xs = x:totable()
      local want = map2(xs, xs, function(v) return ref(v) end)
      assert_values(x[name](x), want, 2e-6, name)
      assert_values(dd[name](x), want, 2e-6, "dd." .. name)
      assert_values(x:t()[name](x:t()), x[name](x):t():totable(), nil, name .. " on a transposed view")
      local y = x:clone()
      assert.are.equal(y, y[name .. "_"](y))
      assert_values(y, want, 2e-6, name .. "_")
      local v = x:clone()
      v:t()[name .. "_"](v:t()) -- in place through a non-contiguous view
      assert_values(v, want, 2e-6, name .. "_ on a transposed view")
    end
  end)

  it("clamp with both, one or the other bound, in all forms", function()
    local t = dd.tensor{-2, -0.5, 0.5, 2}
    assert.are.same({-1, -0.5, 0.5, 1}, t:clamp(-1, 1):totable())
    assert.are.same({-2, -0.5, 0, 0}, t:clamp(nil, 0):totable())
    assert.are.same({0, 0, 0.5, 2}, t:clamp(0):totable())
    assert.are.same({0, 0, 0.5, 1}, dd.clamp(t, 0, 1):totable())
    assert.are.same({-2, -0.5, 0.5, 2}, t:totable())
    assert.are.equal(t, t:clamp_(-1, 1))
    assert.are.same({-1, -0.5, 0.5, 1}, t:totable())
    local b = dd.arange(6):view(2, 3)
    b:t():clamp_(1, 4)
    assert.are.same({{1, 1, 2}, {3, 4, 4}}, b:totable())
  end)
end)

describe("reductions", function()
  local a
  before_each(function() a = dd.tensor{{1, 5, 3}, {4, 2, 6}} end)

  it("over all elements return Lua numbers (argmax/argmin 1-based)", function()
    assert.are.equal(21, a:sum())
    assert.are.equal("integer", math.type(a:sum()))
    assert.are.equal(3.5, a:mean())
    assert.are.equal(6, a:max())
    assert.are.equal(1, a:min())
    assert.are.equal(6, a:argmax())
    assert.are.equal(1, a:argmin())
    assert.are.equal("integer", math.type(a:argmax()))
    assert.are.equal(21, dd.sum(a))
    assert.are.equal(f32(0.1) + f32(0.2), dd.tensor{0.1, 0.2}:sum())
  end)

  it("over a dimension return tensors, with keepdim", function()
    assert.are.same({5, 7, 9}, a:sum(1):totable())
    assert.are.same({9, 12}, a:sum(2):totable())
    assert.are.same({9, 12}, a:sum(-1):totable())
    assert.are.same({{5, 7, 9}}, a:sum(1, true):totable())
    assert.are.same({{9}, {12}}, a:sum(2, true):totable())
    assert.are.same({2.5, 3.5, 4.5}, a:mean(1):totable())
    assert.are.same({{3}, {4}}, a:mean(2, true):totable())
    assert.are.same({3}, dd.sum(a, 1):shape())
  end)

  it("max and min over a dimension return values and 1-based indices", function()
    local v, i = a:max(2)
    assert.are.same({5, 6}, v:totable())
    assert.are.same({2, 3}, i:totable())
    assert.are.equal("integer", math.type(i:get(1)))
    v, i = a:max(1)
    assert.are.same({4, 5, 6}, v:totable())
    assert.are.same({2, 1, 2}, i:totable())
    v, i = a:min(-1)
    assert.are.same({1, 2}, v:totable())
    assert.are.same({1, 2}, i:totable())
    v, i = a:min(1, true)
    assert.are.same({{1, 2, 3}}, v:totable())
    assert.are.same({{1, 2, 1}}, i:totable())
    v, i = dd.max(a, 2, true)
    assert.are.same({{5}, {6}}, v:totable())
    assert.are.same({{2}, {3}}, i:totable())
  end)

  it("argmax and argmin over a dimension are 1-based", function()
    assert.are.same({2, 3}, a:argmax(2):totable())
    assert.are.same({2, 1, 2}, a:argmax(1):totable())
    assert.are.same({1, 2, 1}, a:argmin(1):totable())
    assert.are.same({1, 2}, a:argmin(-1):totable())
    assert.are.same({{2}, {3}}, a:argmax(2, true):totable())
    assert.are.equal(1, select("#", a:argmax(2)))
  end)

  it("ties go to the first index", function()
    local t = dd.tensor{3, 1, 3, 1}
    assert.are.equal(1, t:argmax())
    assert.are.equal(2, t:argmin())
    local _, i = dd.tensor{{2, 2}}:max(2)
    assert.are.same({1}, i:totable())
  end)

  it("read non-contiguous views in logical order", function()
    local b = dd.tensor{{1, 9}, {8, 2}}
    assert.are.equal(3, b:t():argmax()) -- b:t() is {{1, 8}, {9, 2}}
    assert.are.equal(2, b:argmax())
    assert.are.same(a:sum(2):totable(), a:t():sum(1):totable())
    local v, i = a:t():max(2)
    assert.are.same({4, 5, 6}, v:totable())
    assert.are.same({2, 1, 2}, i:totable())
    assert.are.equal(5 + 2, a:narrow(2, 2, 1):sum())
  end)

  it("match a Lua loop on a random 3-d view for every dim and keepdim", function()
    dd.manual_seed(SEED)
    local x = dd.randn(3, 4, 5):permute(2, 3, 1) -- (4, 5, 3), non-contiguous
    local xt = x:totable()
    local dims = {4, 5, 3}
    for d = 1, 3 do
      for _, keep in ipairs{false, true} do
        local s = x:sum(d, keep)
        local m = x:mean(d, keep)
        local mx, imx = x:max(d, keep)
        local mn, imn = x:min(d, keep)
        local am = x:argmax(d, keep)
        for i = 1, dims[1] do for j = 1, dims[2] do for k = 1, dims[3] do
          local idx = {i, j, k}
          if idx[d] == 1 then
            local sum, best, besti, worst, worsti = 0, -math.huge, 0, math.huge, 0
            for r = 1, dims[d] do
              idx[d] = r
              local v = xt[idx[1]][idx[2]][idx[3]]
              sum = sum + v
              if v > best then best, besti = v, r end
              if v < worst then worst, worsti = v, r end
            end
            local o = {i, j, k}
            if keep then o[d] = 1 else table.remove(o, d) end
            local function at(t) return t:get(table.unpack(o)) end
            assert.is_true(math.abs(at(s) - sum) <= 1e-6 * (1 + math.abs(sum)), "sum dim " .. d)
            assert.is_true(math.abs(at(m) - sum / dims[d]) <= 1e-6 * (1 + math.abs(sum)), "mean dim " .. d)
            assert.are.equal(best, at(mx))
            assert.are.equal(besti, at(imx))
            assert.are.equal(worst, at(mn))
            assert.are.equal(worsti, at(imn))
            assert.are.equal(besti, at(am))
          end
        end end end
      end
    end
  end)

  it("empty tensors: sum is 0, sum over an empty dim gives zeros", function()
    assert.are.equal(0, dd.zeros(0):sum())
    assert.are.same({0, 0, 0}, dd.zeros(0, 3):sum(1):totable())
    assert.are.same({0, 1}, dd.zeros(0, 3):sum(2, true):shape())
  end)

  it("NaN propagates through max, min and their indices", function()
    local t = dd.tensor{1, 0 / 0, 3}
    local m = t:max()
    assert.is_true(m ~= m)
    assert.are.equal(2, t:argmax())
    assert.are.equal(2, t:argmin())
    local v, i = dd.tensor{{1, 0 / 0, 3}}:max(2)
    assert.is_true(v:item() ~= v:item())
    assert.are.equal(2, i:item())
  end)

  it("sums in double: 2^24 + 1 ones count exactly", function()
    local n = 2 ^ 24 + 1
    assert.are.equal(math.tointeger(n), dd.ones(n):sum())
    assert.are.equal(1, dd.ones(n):mean())
  end)
end)

-- c = a @ b for nested tables, in double.
local function matmul_ref(a, b)
  local c, mag = {}, {}
  for i = 1, #a do
    c[i], mag[i] = {}, {}
    for j = 1, #b[1] do
      local s, m = 0, 0
      for k = 1, #b do s = s + a[i][k] * b[k][j]; m = m + math.abs(a[i][k] * b[k][j]) end
      c[i][j], mag[i][j] = s, m
    end
  end
  return c, mag
end

-- |got - ref| <= 1e-5 * sum |a||b| per entry (float32 accumulation over k).
local function assert_matmul(got, a, b, what)
  local ref, mag = matmul_ref(a, b)
  local g = got:totable()
  assert.are.equal(#ref, #g, what .. ": rows")
  for i = 1, #ref do
    assert.are.equal(#ref[i], #g[i], what .. ": cols")
    for j = 1, #ref[i] do
      if not (math.abs(g[i][j] - ref[i][j]) <= 1e-5 * mag[i][j]) then
        error(string.format("%s: [%d][%d] = %.9g, want %.9g", what, i, j, g[i][j], ref[i][j]), 2)
      end
    end
  end
end

describe("matmul", function()
  it("2-d x 2-d gives integers for integral results", function()
    local c = dd.matmul(dd.tensor{{1, 2}, {3, 4}}, dd.tensor{{5}, {6}})
    assert.are.same({2, 1}, c:shape())
    assert.are.equal(39, c:totable()[2][1])
    assert.are.equal("integer", math.type(c:totable()[2][1]))
    assert.are.same({{17}, {39}}, c:totable())
    assert.are.same({{58, 64}, {139, 154}},
      dd.matmul(dd.tensor{{1, 2, 3}, {4, 5, 6}}, dd.tensor{{7, 8}, {9, 10}, {11, 12}}):totable())
    assert.are.same({{58, 64}, {139, 154}},
      dd.tensor{{1, 2, 3}, {4, 5, 6}}:matmul(dd.tensor{{7, 8}, {9, 10}, {11, 12}}):totable())
  end)

  it("batched 3-d x 3-d and 3-d x 2-d", function()
    local a = dd.arange(12):view(2, 2, 3)
    local b = dd.arange(12):view(2, 3, 2)
    local c = dd.matmul(a, b)
    assert.are.same({2, 2, 2}, c:shape())
    for p = 1, 2 do assert_matmul(c[p], a[p]:totable(), b[p]:totable(), "batch " .. p) end
    local w = dd.tensor{{1, 0}, {0, 1}, {1, 1}}
    local d = dd.matmul(a, w)
    assert.are.same({2, 2, 2}, d:shape())
    assert.are.same({{{2, 3}, {8, 9}}, {{14, 15}, {20, 21}}}, d:totable())
  end)

  it("transposed, narrowed and strided operands", function()
    dd.manual_seed(SEED)
    local a = dd.randn(7, 5)
    local b = dd.randn(6, 7)
    local at, bt = a:totable(), b:totable()
    assert_matmul(dd.matmul(a:t(), b:t()), a:t():totable(), b:t():totable(), "a^T b^T")
    assert_matmul(dd.matmul(b, a), bt, at, "b a")
    local big = dd.randn(9, 12)
    local n1 = big:narrow(1, 2, 6):narrow(2, 3, 7) -- (6, 7), row stride 12
    assert_matmul(dd.matmul(n1, a), n1:totable(), at, "narrowed a")
    local strided = dd.randn(7, 10):narrow(2, 1, 10):view(7, 5, 2):select(3, 1) -- (7, 5), column stride 2
    assert_matmul(dd.matmul(b, strided), bt, strided:totable(), "strided b")
    local e = dd.randn(1, 5):expand(4, 5) -- stride-0 rows
    assert_matmul(dd.matmul(e, a:t()), e:totable(), a:t():totable(), "expanded a")
    local x3 = dd.randn(5, 3, 4):transpose(1, 2) -- (3, 5, 4), batch from the middle dim
    local w = dd.randn(4, 2)
    local c3 = dd.matmul(x3, w)
    for p = 1, 3 do assert_matmul(c3[p], x3[p]:totable(), w:totable(), "permuted batch " .. p) end
  end)

  -- one row goes to sgemv (tensor_math.c, blas_sgemm): every layout of both
  -- operands, with strides that must reach it as increments; one column and
  -- one of each next to it
  it("one row or one column, plain, transposed and strided (the matrix-vector path)", function()
    dd.manual_seed(SEED)
    local function layouts(r, c) -- (r, c) operands: contiguous, transposed storage, a strided slice of each
      return { dd.randn(r, c), dd.randn(c, r):t(), dd.randn(r, c + 3):narrow(2, 2, c), dd.randn(c, r + 2):narrow(2, 2, r):t() }
    end
    for _, s in ipairs{ { 1, 9, 7 }, { 7, 9, 1 }, { 1, 9, 1 }, { 1, 1, 5 } } do
      local m, k, n = s[1], s[2], s[3]
      for i, a in ipairs(layouts(m, k)) do
        for j, b in ipairs(layouts(k, n)) do
          assert_matmul(dd.matmul(a, b), a:totable(), b:totable(), ("(%d,%d)x(%d,%d), layouts %d, %d"):format(m, k, k, n, i, j))
        end
      end
    end
  end)

  it("random shapes match a Lua triple loop", function()
    dd.manual_seed(SEED)
    math.randomseed(SEED)
    for _ = 1, 20 do
      local m, k, n = math.random(1, 12), math.random(1, 40), math.random(1, 12)
      local a, b = dd.randn(m, k), dd.randn(k, n)
      assert_matmul(dd.matmul(a, b), a:totable(), b:totable(), string.format("(%d,%d)x(%d,%d)", m, k, k, n))
    end
  end)

  it("k = 0 gives zeros, m = 0 or n = 0 gives empty results", function()
    assert.are.same({{0, 0, 0}, {0, 0, 0}}, dd.matmul(dd.zeros(2, 0), dd.zeros(0, 3)):totable())
    assert.are.same({0, 3}, dd.matmul(dd.zeros(0, 4), dd.zeros(4, 3)):shape())
    assert.are.same({2, 0}, dd.matmul(dd.zeros(2, 4), dd.zeros(4, 0)):shape())
    assert.are.same({3, 2, 2}, dd.matmul(dd.zeros(3, 2, 0), dd.zeros(3, 0, 2)):shape())
    assert.are.equal(0, dd.matmul(dd.ones(3, 2, 0), dd.ones(0, 2)):abs():sum())
  end)

  it("gives the same result with 1 and 2 BLAS threads", function()
    dd.manual_seed(SEED)
    local a, b = dd.randn(96, 80), dd.randn(80, 70)
    local n = dd.get_num_threads()
    dd.set_num_threads(1)
    local c1 = dd.matmul(a, b)
    dd.set_num_threads(2)
    local c2 = dd.matmul(a, b)
    dd.set_num_threads(n)
    assert.is_true((c1 - c2):abs():max() <= 1e-4)
    assert_matmul(c2, a:totable(), b:totable(), "2 threads")
  end)
end)

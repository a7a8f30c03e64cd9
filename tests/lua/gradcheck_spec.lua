-- Finite-difference gradient checks for every layer kind, driven by one table:
-- each row builds a module and an input; the input gradient and every
-- parameter gradient must match central differences (see support/gradcheck.lua).
local gradcheck = dofile("tests/lua/support/gradcheck.lua")
local seed = tonumber(os.getenv("DD_TEST_SEED") or "1234")
local TOL = 5e-3

-- Inputs pushed away from 0 so kinks (ReLU, max) are not within eps.
local function away_from_zero(...)
  local x = dd.randn(...)
  return x + x:sign() * 0.1
end

local cases = {
  { "Linear", function() return dd.nn.Linear{5, 3} end, function() return dd.randn(4, 5) end },
  { "Linear 3-d input", function() return dd.nn.Linear{5, 3} end, function() return dd.randn(2, 3, 5) end },
  { "Linear no bias", function() return dd.nn.Linear{4, 6, bias = false} end, function() return dd.randn(1, 4) end },
  { "ReLU", function() return dd.nn.ReLU() end, function() return away_from_zero(3, 7) end },
  { "Sigmoid", function() return dd.nn.Sigmoid() end, function() return dd.randn(3, 7) end },
  { "Tanh", function() return dd.nn.Tanh() end, function() return dd.randn(3, 7) end },
  { "HardSigmoid", function() return dd.nn.HardSigmoid() end,
    function() return dd.randn(3, 7) * 1.5 end },
  { "Dropout (train)", function() return dd.nn.Dropout{0.3} end, function() return dd.randn(4, 9) end },
  { "Flatten", function() return dd.nn.Flatten() end, function() return dd.randn(2, 3, 4, 5) end },
  { "Reshape", function() return dd.nn.Reshape{4, 3, 5} end, function() return dd.randn(2, 60) end },
  { "Sequential MLP", function()
      return dd.nn.Sequential{dd.nn.Linear{6, 8}, dd.nn.Tanh(), dd.nn.Linear{8, 3}, dd.nn.Sigmoid()}
    end, function() return dd.randn(5, 6) end },
}

-- Kinds that land in their own files register more rows here.
local extra = io.open("tests/lua/support/gradcheck_cases.lua") and dofile("tests/lua/support/gradcheck_cases.lua") or {}
for _, c in ipairs(extra) do cases[#cases + 1] = c end

describe("finite-difference gradients (seed " .. seed .. ")", function()
  for _, case in ipairs(cases) do
    it(case[1], function()
      dd.manual_seed(seed)
      local m = case[2]()
      local x = case[3]()
      local errs = gradcheck.check(m, x, { seed = seed })
      for name, err in pairs(errs) do
        assert(err <= TOL, string.format("%s: gradient of %s off by %.3g (tolerance %g)", case[1], name, err, TOL))
      end
    end)
  end
end)

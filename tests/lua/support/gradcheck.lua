-- gradcheck: finite-difference check of a module's input gradient and every
-- parameter gradient, for the table-driven gradcheck_spec.
--
-- The loss is L = sum(y * r) with a fixed random r, so a gradient that is
-- right in total but wrong per element (a transposed or shifted index) fails.
-- Central differences in float32 with eps = 1e-2; for up to `samples`
-- coordinates per tensor the numerical and analytic values are compared as
-- vectors: ||a - n|| / max(||a||, ||n||). A correct float32 gradient lands
-- near 1e-4; a wrong one near 1. The random state is re-seeded before every
-- forward so stochastic layers (dropout) draw the same mask each time.
local M = {}

local function loss_of(m, x, r, seed)
  dd.manual_seed(seed)
  local y = m:forward(x)
  return (y * r):sum()
end

local function rel_err(a, n)
  local num, da, dn = 0, 0, 0
  for i = 1, #a do
    num = num + (a[i] - n[i]) ^ 2
    da = da + a[i] ^ 2
    dn = dn + n[i] ^ 2
  end
  return math.sqrt(num) / math.max(math.sqrt(da), math.sqrt(dn), 1e-6)
end

-- Picks up to k flat indices of a tensor with n elements, spread out.
local function pick(n, k)
  local out = {}
  if n <= k then
    for i = 1, n do out[i] = i end
  else
    for i = 1, k do out[i] = math.floor((i - 1) * n / k) + 1 end
  end
  return out
end

--- check(m, x, opts) -> {input = err, [param name] = err, ...}
-- opts: eps (1e-2), samples (24), seed (1).
function M.check(m, x, opts)
  opts = opts or {}
  local eps, samples, seed = opts.eps or 1e-2, opts.samples or 24, opts.seed or 1
  dd.manual_seed(seed)
  local y = m:forward(x)
  local r = dd.randn(table.unpack(y:shape()))
  -- analytic
  m:zero_grad()
  loss_of(m, x, r, seed)
  local dx = m:backward(x, r):clone()
  local results = {}
  local function numeric(t, analytic_flat)
    local flat = t:view(-1)
    local idx = pick(flat:numel(), samples)
    local a, n = {}, {}
    for j, i in ipairs(idx) do
      local v = flat:get(i)
      flat:set(i, v + eps)
      local lp = loss_of(m, x, r, seed)
      flat:set(i, v - eps)
      local lm = loss_of(m, x, r, seed)
      flat:set(i, v)
      n[j] = (lp - lm) / (2 * eps)
      a[j] = analytic_flat:get(i)
    end
    return rel_err(a, n)
  end
  local grads = {}
  for _, p in ipairs(m:parameters()) do grads[#grads + 1] = { p.name, p.value, p.grad:clone():view(-1) } end
  results.input = numeric(x, dx:contiguous():view(-1))
  for _, g in ipairs(grads) do results[g[1]] = numeric(g[2], g[3]) end
  return results
end

return M

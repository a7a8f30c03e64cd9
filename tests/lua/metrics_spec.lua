-- metrics_spec.lua: dd.metrics.binary_accuracy, categorical_accuracy and iou
-- on small hand-made inputs whose answers are worked out in the comments.
-- Run from the repo root: ./deepdance /usr/bin/busted -o TAP tests/lua/metrics_spec.lua
local seed = tonumber(os.getenv("DD_TEST_SEED") or "1234")
print("# metrics_spec seed: " .. seed)

local helpers = dofile("tests/lua/support/helpers.lua")
local error_of = helpers.error_of
local assert_contains = helpers.assert_contains

before_each(function() dd.manual_seed(seed) end)

describe("binary_accuracy", function()
  it("counts target == (pred > threshold), grey targets never match", function()
    local pred = dd.tensor{0.2, 0.7, 0.5, 0.9}
    local target = dd.tensor{0, 1, 1, 0.5}
    -- 0.2 -> 0 == 0 yes; 0.7 -> 1 == 1 yes; 0.5 -> 0 (not > 0.5) ~= 1; 0.9 -> 1 ~= 0.5 (grey)
    assert.equal(0.5, dd.metrics.binary_accuracy(pred, target))
    -- threshold 0.4: 0.5 -> 1 == 1 now matches
    assert.equal(0.75, dd.metrics.binary_accuracy(pred, target, 0.4))
  end)

  it("works on images, including strided views", function()
    local pred = dd.tensor{{{0.1, 0.9}, {0.6, 0.4}}}   -- (1, 2, 2)
    local target = dd.tensor{{{0, 1}, {0, 0}}}
    assert.equal(0.75, dd.metrics.binary_accuracy(pred, target))
    local p = dd.rand(3, 4)
    local t = dd.rand(4, 3):gt(0.5)
    assert.equal(dd.metrics.binary_accuracy(p:t():contiguous(), t), dd.metrics.binary_accuracy(p:t(), t))
  end)

  it("names both shapes on a mismatch", function()
    assert_contains(error_of(dd.metrics.binary_accuracy, dd.zeros(2, 3), dd.zeros(3, 2)),
      "binary_accuracy: pred has shape (2,3) but target has shape (3,2)")
    assert_contains(error_of(dd.metrics.binary_accuracy, dd.zeros(2), dd.zeros(2), "x"), "threshold must be a number, got string")
    assert_contains(error_of(dd.metrics.binary_accuracy, dd.zeros(0), dd.zeros(0)), "are empty")
    assert_contains(error_of(dd.metrics.binary_accuracy, 1, dd.zeros(2)), "pred must be a Tensor, got number")
  end)
end)

describe("categorical_accuracy", function()
  it("compares row argmaxes, the first maximum winning ties", function()
    local pred = dd.tensor{{0.1, 0.7, 0.2}, {0.5, 0.5, 0}, {0, 0, 1}}
    local target = dd.tensor{{0, 1, 0}, {0, 1, 0}, {1, 0, 0}}
    -- row 1: 2 == 2; row 2: tie -> 1 ~= 2; row 3: 3 ~= 1
    assert.near(1 / 3, dd.metrics.categorical_accuracy(pred, target), 1e-15)
    local target2 = dd.tensor{{0, 1, 0}, {1, 0, 0}, {0, 0, 1}}
    assert.equal(1, dd.metrics.categorical_accuracy(pred, target2))
  end)

  it("names both shapes on a mismatch", function()
    assert_contains(error_of(dd.metrics.categorical_accuracy, dd.zeros(4, 128), dd.zeros(4, 127)),
      "categorical_accuracy: pred has shape (4,128) but target has shape (4,127)")
    assert_contains(error_of(dd.metrics.categorical_accuracy, dd.tensor(1), dd.tensor(1)), "pred must have a class dimension, e.g. (N, C)")
  end)
end)

describe("iou", function()
  -- two 2x2 samples; the dancer is dark (< 0.5)
  local a = dd.tensor{{{0, 0}, {1, 1}}, {{1, 1}, {1, 1}}}
  local b = dd.tensor{{{0, 1}, {1, 1}}, {{1, 1}, {1, 1}}}

  it("averages per-sample |A and B| / |A or B|; both empty counts 1", function()
    -- sample 1: A = {1,2}, B = {1}: 1 / 2; sample 2: both empty: 1
    local mean, per = dd.metrics.iou(a, b)
    assert.equal(0.75, mean)
    assert.same({0.5, 1}, per:totable())
  end)

  it("foreground='light' and threshold change the masks", function()
    -- light: sample 1: A = {3,4}, B = {2,3,4}: 2/3; sample 2: A = B = all: 1
    local mean, per = dd.metrics.iou(a, b, { foreground = "light" })
    assert.near((2 / 3 + 1) / 2, mean, 1e-15)
    assert.near(2 / 3, per:get(1), 1e-7)
    local g = dd.tensor{{0.3, 0.6}}
    local h = dd.tensor{{0.3, 0.3}}
    assert.equal(0.5, (dd.metrics.iou(g, h)))                   -- dark < 0.5: {1} vs {1,2}
    assert.equal(1, (dd.metrics.iou(g, h, { threshold = 0.7 }))) -- dark < 0.7: {1,2} vs {1,2}
  end)

  it("checks shapes and options", function()
    assert_contains(error_of(dd.metrics.iou, dd.zeros(2, 4, 4), dd.zeros(2, 4, 5)),
      "iou: a has shape (2,4,4) but b has shape (2,4,5)")
    assert_contains(error_of(dd.metrics.iou, a, b, { fg = "dark" }), "iou: unknown option 'fg' (known: threshold, foreground)")
    assert_contains(error_of(dd.metrics.iou, a, b, { foreground = "black" }), "option 'foreground' must be 'dark' or 'light', got 'black'")
    assert_contains(error_of(dd.metrics.iou, a, b, 0.5), "options must be a table, got number")
  end)
end)

-- Rows of the table-driven gradient check for the spatial and recurrent
-- kinds (see gradcheck_spec.lua): {label, make module, make input}.
local function away_from_zero(...)
  local x = dd.randn(...)
  return x + x:sign() * 0.1
end

-- Distinct values with gaps much wider than eps, so a max never changes
-- hands under the finite-difference probe.
local function spread(...)
  local x = dd.randn(...)
  local n = x:numel()
  local perm = dd.randperm(n)
  local flat = x:view(-1)
  for i = 1, n do flat:set(i, (perm:get(i) - n / 2) * 0.05) end
  return x
end

return {
  { "Conv2d same 3x3", function() return dd.nn.Conv2d{2, 3, kernel_size = 3, padding = "same"} end,
    function() return dd.randn(2, 2, 5, 6) end },
  { "Conv2d stride 2 pad 1", function() return dd.nn.Conv2d{2, 2, kernel_size = 3, stride = 2, padding = 1} end,
    function() return dd.randn(1, 2, 7, 6) end },
  { "Conv2d dilation 2", function() return dd.nn.Conv2d{1, 2, kernel_size = 3, dilation = 2} end,
    function() return dd.randn(2, 1, 7, 7) end },
  { "ConvTranspose2d same", function() return dd.nn.ConvTranspose2d{3, 2, kernel_size = 3, padding = "same"} end,
    function() return dd.randn(2, 3, 4, 5) end },
  { "ConvTranspose2d stride 2 output_padding 1",
    function() return dd.nn.ConvTranspose2d{2, 2, kernel_size = 3, stride = 2, padding = 1, output_padding = 1} end,
    function() return dd.randn(1, 2, 3, 4) end },
  -- fused activations: smooth ones, so the finite differences see no kink
  { "Conv2d same 3x3, activation tanh",
    function() return dd.nn.Conv2d{2, 3, kernel_size = 3, padding = "same", activation = "tanh"} end,
    function() return dd.randn(2, 2, 5, 6) end },
  { "ConvTranspose2d same, activation sigmoid",
    function() return dd.nn.ConvTranspose2d{3, 2, kernel_size = 3, padding = "same", activation = "sigmoid"} end,
    function() return dd.randn(2, 3, 4, 5) end },
  { "Linear, activation tanh", function() return dd.nn.Linear{5, 3, activation = "tanh"} end,
    function() return dd.randn(4, 5) end },
  { "MaxPool2d 2x2", function() return dd.nn.MaxPool2d{2} end, function() return spread(2, 2, 6, 7) end },
  { "MaxPool2d 3x3 stride 2 pad 1", function() return dd.nn.MaxPool2d{kernel_size = 3, stride = 2, padding = 1} end,
    function() return spread(1, 2, 7, 6) end },
  { "Upsample 2", function() return dd.nn.Upsample{2} end, function() return dd.randn(2, 2, 3, 4) end },
  { "LSTM sigmoid, 2 layers", function() return dd.nn.LSTM{3, 4, num_layers = 2} end,
    function() return dd.randn(2, 5, 3) end },
  { "LSTM last step only", function() return dd.nn.LSTM{3, 5, return_sequences = false} end,
    function() return dd.randn(3, 4, 3) end },
  { "LSTM dropout between layers (train)", function() return dd.nn.LSTM{3, 4, num_layers = 2, dropout = 0.3} end,
    function() return dd.randn(2, 3, 3) end },
  { "MDN head", function() return dd.nn.MDN{4, 2, 3} end, function() return dd.randn(5, 4) end },
  { "MDN head, min_sigma 0.3", function() return dd.nn.MDN{4, 2, 3, min_sigma = 0.3} end,
    function() return dd.randn(5, 4) end },
  { "BatchNorm2d (train)", function()
      local m = dd.nn.BatchNorm2d{3}
      m.weight:copy(dd.rand(3) + 0.5)
      m.bias:copy(dd.randn(3))
      return m
    end, function() return dd.randn(3, 3, 3, 4) * 2 + 1 end },
  { "BatchNorm1d (train), activation tanh", function() return dd.nn.BatchNorm1d{4, activation = "tanh"} end,
    function() return dd.randn(6, 4) end },
  { "BatchNorm1d 3-d (eval)", function()
      local m = dd.nn.BatchNorm1d{2}
      m.running_mean:copy(dd.randn(2))
      m.running_var:copy(dd.rand(2) + 0.5)
      return m:eval()
    end, function() return dd.randn(3, 2, 5) end },
  { "Sequential conv net", function()
      return dd.nn.Sequential{dd.nn.Conv2d{1, 3, padding = "same"}, dd.nn.Tanh(),
        dd.nn.Conv2d{3, 2, kernel_size = 3, stride = 2, padding = 1}, dd.nn.Flatten(), dd.nn.Linear{2 * 3 * 3, 4}}
    end, function() return dd.randn(2, 1, 6, 6) end },
}

-- models/sequence.lua: the next-latent model, (N, 10, 128) -> (N, 128).
--   local seq = dofile("models/sequence.lua"){variant = "notebook"}
-- Variants (../shared/reference/original-implementation.md):
--   notebook  LSTM 512, 256, 256 (last step) + Dense 128 ReLU, hard-sigmoid gates,
--             20% dropout between: 2,658,432 parameters (the published numbers)
--   paper     four LSTM layers of 256 with 20% dropout, as the paper's text says
--   mdn       the notebook trunk with a mixture-density head (sampling keeps it dancing);
--             min_sigma (default 0: none) floors its sigmas (dd.nn.MDN)
return function(opts)
  opts = opts or {}
  local known = { variant = true, latent = true, dropout = true, mixtures = true, units = true,
                  recurrent_activation = true, min_sigma = true }
  for k in pairs(opts) do
    if not known[k] then
      error("sequence: unknown option '" .. tostring(k) .. "' (known: variant, latent, dropout, mixtures, units, recurrent_activation, min_sigma)", 2)
    end
  end
  local nn = dd.nn
  local variant = opts.variant or "notebook"
  local latent, p = opts.latent or 128, opts.dropout or 0.2
  local act = opts.recurrent_activation or "hard_sigmoid"
  local units
  if variant == "notebook" or variant == "mdn" then units = opts.units or { 512, 256, 256 }
  elseif variant == "paper" then units = opts.units or { 256, 256, 256, 256 }
  else error("sequence: unknown variant '" .. tostring(variant) .. "' (known: notebook, paper, mdn)", 2) end

  local layers, cin = {}, latent
  for i, u in ipairs(units) do
    local last = i == #units
    layers[#layers + 1] = nn.LSTM{cin, u, return_sequences = not last, recurrent_activation = act}
    layers[#layers + 1] = nn.Dropout{p}
    cin = u
  end
  local head
  if variant == "mdn" then
    head = nn.MDN{cin, latent, opts.mixtures or 5, min_sigma = opts.min_sigma or 0}
    layers[#layers + 1] = head
  else
    layers[#layers + 1] = nn.Linear{cin, latent}
    layers[#layers + 1] = nn.ReLU()
  end
  layers.name = "sequence_" .. variant
  layers.input_shape = { 10, latent }
  local model = nn.Sequential(layers)
  model.variant, model.mdn = variant, variant == "mdn" and head or nil
  return model
end

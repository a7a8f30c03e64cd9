-- models/autoencoder.lua: the Deep Dance convolutional autoencoder.
--   local ae = dofile("models/autoencoder.lua"){latent = 128}
-- ae.encoder maps (N, 1, 120, 200) to (N, latent); ae.decoder maps back;
-- ae:forward(x) runs both. The default is the original's layer table
-- (../shared/reference/original-implementation.md): 8 convolutions, 9
-- transposed convolutions, 2,552,953 parameters; every conv and dense
-- layer has its activation fused (ReLU; Sigmoid on the last).
return function(opts)
  opts = opts or {}
  local known = { latent = true, filters = true, height = true, width = true }
  for k in pairs(opts) do
    if not known[k] then error("autoencoder: unknown option '" .. tostring(k) .. "' (known: latent, filters, height, width)", 2) end
  end
  local nn = dd.nn
  local latent, f = opts.latent or 128, opts.filters or 32
  local H, W = opts.height or 120, opts.width or 200
  if H % 8 ~= 0 or W % 8 ~= 0 then error(("autoencoder: height and width must be multiples of 8, got %dx%d"):format(H, W), 2) end
  local h, w = H // 8, W // 8

  -- Each convolution and dense layer carries its activation, as the original
  -- Keras layers do (activation='relu'); fused, it costs no extra pass.
  local function conv(cin, cout) return nn.Conv2d{cin, cout, kernel_size = 3, padding = "same", activation = "relu"} end
  local function deconv(cin, cout, act)
    return nn.ConvTranspose2d{cin, cout, kernel_size = 3, padding = "same", activation = act or "relu"}
  end
  local function dense(i, o) return nn.Linear{i, o, activation = "relu"} end

  local encoder = nn.Sequential{
    conv(1, f), conv(f, f), nn.MaxPool2d{2},
    conv(f, f), conv(f, f), nn.MaxPool2d{2},
    conv(f, f), conv(f, f), nn.MaxPool2d{2},
    conv(f, f), conv(f, 8),
    nn.Flatten(),
    dense(8 * h * w, 512), dense(512, latent),
    name = "encoder", input_shape = { 1, H, W },
  }
  local decoder = nn.Sequential{
    dense(latent, 512), dense(512, 4 * h * w),
    nn.Reshape{4, h, w},
    deconv(4, 4), deconv(4, f), nn.Upsample{2},
    deconv(f, f), deconv(f, f), nn.Upsample{2},
    deconv(f, f), deconv(f, f), nn.Upsample{2},
    deconv(f, f), deconv(f, f),
    deconv(f, 1, "sigmoid"),
    name = "decoder", input_shape = { latent },
  }
  local ae = nn.Sequential{ encoder, decoder, name = "autoencoder", input_shape = { 1, H, W } }
  ae.encoder, ae.decoder, ae.latent = encoder, decoder, latent
  return ae
end

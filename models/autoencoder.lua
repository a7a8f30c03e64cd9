-- models/autoencoder.lua: the Deep Dance convolutional autoencoder.
--   local ae = dofile("models/autoencoder.lua"){latent = 128}
-- ae.encoder maps (N, 1, H, W) to (N, latent); ae.decoder maps back;
-- ae:forward(x) runs both. Two variants:
--   original  (the default) the original's layer table
--             (../shared/reference/original-implementation.md): 8 convolutions,
--             9 transposed convolutions, 2,552,953 parameters at 120x200.
--   strided   ours: the encoder halves the resolution with stride-2
--             convolutions and widens as it goes (16, 32, 64 channels); the
--             decoder starts from a 16-channel 15x25 map instead of 4 and
--             ends in a stride-2 transposed convolution, so no 3x3
--             convolution runs at full resolution. It reaches sharper
--             silhouettes (thin arms) in fewer steps at a fifth of the
--             original's FLOPs (docs/pipeline.md has the measurements).
-- Every conv and dense layer has its activation fused (ReLU; Sigmoid on the
-- last); the latent goes through a ReLU in both, as in the original, so the
-- notebook's sequence model (Dense 128 + ReLU) can predict it.
-- norm = 'batch' puts a BatchNorm2d (ReLU fused) after every convolution
-- but the output one and a BatchNorm1d after the two 512-unit dense layers,
-- whose biases it makes redundant (bias = false), in either variant; 'none'
-- (the default) is the original's plain stack.
local KNOWN = { latent = true, filters = true, height = true, width = true, variant = true, norm = true }

return function(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not KNOWN[k] then
      error("autoencoder: unknown option '" .. tostring(k) .. "' (known: latent, filters, height, width, variant, norm)", 2)
    end
  end
  local nn = dd.nn
  local variant = opts.variant or "original"
  if variant ~= "original" and variant ~= "strided" then
    error("autoencoder: unknown variant '" .. tostring(variant) .. "' (known: original, strided)", 2)
  end
  local norm = opts.norm or "none"
  if norm ~= "none" and norm ~= "batch" then
    error("autoencoder: unknown norm '" .. tostring(norm) .. "' (known: none, batch)", 2)
  end
  local latent, f = opts.latent or 128, opts.filters or 32
  local H, W = opts.height or 120, opts.width or 200
  if H % 8 ~= 0 or W % 8 ~= 0 then error(("autoencoder: height and width must be multiples of 8, got %dx%d"):format(H, W), 2) end
  local h, w = H // 8, W // 8

  -- A convolution and its ReLU, or with norm = 'batch' the convolution
  -- (no bias) and a BatchNorm2d with the ReLU: a pair that stack() splices in.
  local function normed(make, cout, act)
    if norm == "none" or act == "sigmoid" then return make(true, act or "relu") end
    return { pair = true, make(false, "linear"), nn.BatchNorm2d{cout, activation = act or "relu"} }
  end
  local function stack(items)
    local out = {}
    for _, m in ipairs(items) do
      if type(m) == "table" and m.pair then
        out[#out + 1], out[#out + 2] = m[1], m[2]
      else
        out[#out + 1] = m
      end
    end
    return nn.Sequential(out)
  end
  local function conv(cin, cout, stride, k)
    return normed(function(bias, act)
      return nn.Conv2d{cin, cout, kernel_size = k or 3, stride = stride or 1, padding = "same", bias = bias, activation = act}
    end, cout)
  end
  local function deconv(cin, cout, act)
    return normed(function(bias, a)
      return nn.ConvTranspose2d{cin, cout, kernel_size = 3, padding = "same", bias = bias, activation = a}
    end, cout, act)
  end
  -- The 512-unit dense layers get a BatchNorm1d too; the encoder's last
  -- Linear (to the latent) keeps its bias and plain ReLU, so the code's
  -- scale stays the encoder's to set (normalize_code divides that layer and
  -- multiplies the decoder's first by one scale).
  local function dense(i, o, hidden)
    if norm == "none" or not hidden then return nn.Linear{i, o, activation = "relu"} end
    return { pair = true, nn.Linear{i, o, bias = false}, nn.BatchNorm1d{o, activation = "relu"} }
  end

  local encoder, decoder
  if variant == "original" then
    encoder = stack{
      conv(1, f), conv(f, f), nn.MaxPool2d{2},
      conv(f, f), conv(f, f), nn.MaxPool2d{2},
      conv(f, f), conv(f, f), nn.MaxPool2d{2},
      conv(f, f), conv(f, 8),
      nn.Flatten(),
      dense(8 * h * w, 512, true), dense(512, latent),
    }
    decoder = stack{
      dense(latent, 512, true), dense(512, 4 * h * w),
      nn.Reshape{4, h, w},
      deconv(4, 4), deconv(4, f), nn.Upsample{2},
      deconv(f, f), deconv(f, f), nn.Upsample{2},
      deconv(f, f), deconv(f, f), nn.Upsample{2},
      deconv(f, f), deconv(f, f),
      deconv(f, 1, "sigmoid"),
    }
  else
    -- f = 32: 16 channels at 1/2, 32 at 1/4, 64 at 1/8 of the resolution.
    local f1, f2, f3 = math.max(1, f // 2), f, 2 * f
    encoder = stack{
      conv(1, f1, 2), conv(f1, f2),        -- H/2
      conv(f2, f2, 2), conv(f2, f3),       -- H/4
      conv(f3, f3, 2), conv(f3, 16, 1, 1), -- H/8, 16 channels
      nn.Flatten(),
      dense(16 * h * w, 512, true), dense(512, latent),
    }
    decoder = stack{
      dense(latent, 512, true), dense(512, 16 * h * w),
      nn.Reshape{16, h, w},
      conv(16, f3), nn.Upsample{2},        -- H/4
      conv(f3, f2), nn.Upsample{2},        -- H/2
      conv(f2, f2),
      nn.ConvTranspose2d{f2, 1, kernel_size = 4, stride = 2, padding = 1, activation = "sigmoid"},
    }
  end
  encoder.name, encoder.input_shape = "encoder", { 1, H, W }
  decoder.name, decoder.input_shape = "decoder", { latent }
  local ae = nn.Sequential{ encoder, decoder, name = "autoencoder", input_shape = { 1, H, W } }
  ae.encoder, ae.decoder, ae.latent, ae.variant, ae.norm = encoder, decoder, latent, variant, norm
  return ae
end

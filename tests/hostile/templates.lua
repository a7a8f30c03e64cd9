-- tests/hostile/templates.lua: valid calls of the C bindings that probes.lua
-- mutates one argument (or one option-table field) at a time, so hostile
-- values reach the checks behind the first argument. Each entry is
-- {target, text, function(F) -> args}: target as `probes.lua list` names it
-- (methods, "obj:name", get their object prepended), F the fixtures. Every
-- template must itself succeed: the test fails when one raises.
local T = {}
local function add(target, text, make)
  T[#T + 1] = { target, function(F)
    local args = make(F)
    args.n = args.n or #args
    return args
  end, text = text }
end

-- Tensor constructors and functions
add("dd.tensor", "dd.tensor{{1, 2}, {3, 4}}", function() return { { { 1, 2 }, { 3, 4 } } } end)
add("dd.zeros", "dd.zeros(2, 3)", function() return { 2, 3 } end)
add("dd.zeros", "dd.zeros{2, 3}", function() return { { 2, 3 } } end)
add("dd.ones", "dd.ones(2, 3)", function() return { 2, 3 } end)
add("dd.full", "dd.full({2, 3}, 1.5)", function() return { { 2, 3 }, 1.5 } end)
add("dd.arange", "dd.arange(1, 10, 2)", function() return { 1, 10, 2 } end)
add("dd.rand", "dd.rand(2, 3)", function() return { 2, 3 } end)
add("dd.randn", "dd.randn(2, 3)", function() return { 2, 3 } end)
add("dd.randperm", "dd.randperm(5)", function() return { 5 } end)
add("dd.matmul", "dd.matmul(T(2,3), T(3,2))", function(F) return { F.T23, F.T32 } end)
add("dd.matmul", "dd.matmul(T(2,5,3), T(3,2))", function(F) return { F.Tseq, F.T32 } end)
add("dd.Tensor.add", "dd.add(T(2,3), T(2,3))", function(F) return { F.T23, F.T23 } end)
add("dd.Tensor.add_", "T(2,3):add_(1)", function(F) return { F.T23:clone(), 1 } end)
add("dd.Tensor.pow", "dd.pow(T(2,3), 2)", function(F) return { F.T23, 2 } end)
add("dd.Tensor.clamp", "dd.clamp(T(2,3), -1, 1)", function(F) return { F.T23, -1, 1 } end)
add("dd.Tensor.clamp_", "T:clamp_(-1, 1)", function(F) return { F.T23:clone(), -1, 1 } end)
add("dd.Tensor.maximum", "dd.maximum(T(2,3), T(3))", function(F) return { F.T23, dd.zeros(3) } end)
add("dd.Tensor.sum", "dd.sum(T(2,3), 2)", function(F) return { F.T23, 2 } end)
add("dd.Tensor.mean", "dd.mean(T(2,3), 1)", function(F) return { F.T23, 1 } end)
add("dd.Tensor.max", "dd.max(T(2,3), 2)", function(F) return { F.T23, 2 } end)
add("dd.Tensor.min", "dd.min(T(2,3), -1)", function(F) return { F.T23, -1 } end)
add("dd.Tensor.argmax", "dd.argmax(T(2,3), 2)", function(F) return { F.T23, 2 } end)
add("dd.Tensor.eq", "dd.eq(T(2,3), 0)", function(F) return { F.T23, 0 } end)

-- Tensor methods (self first: the generic probes call them on other selves)
add("dd.Tensor.narrow", "T(2,3):narrow(2, 1, 2)", function(F) return { F.T23, 2, 1, 2 } end)
add("dd.Tensor.select", "T(2,3):select(1, 2)", function(F) return { F.T23, 1, 2 } end)
add("dd.Tensor.transpose", "T(2,3):transpose(1, 2)", function(F) return { F.T23, 1, 2 } end)
add("dd.Tensor.permute", "T(2,3):permute(2, 1)", function(F) return { F.T23, 2, 1 } end)
add("dd.Tensor.view", "T(2,3):view(3, 2)", function(F) return { F.T23, 3, 2 } end)
add("dd.Tensor.view", "T(2,3):view{-1, 2}", function(F) return { F.T23, { -1, 2 } } end)
add("dd.Tensor.reshape", "T(2,3):reshape(6)", function(F) return { F.T23, 6 } end)
add("dd.Tensor.unsqueeze", "T(2,3):unsqueeze(1)", function(F) return { F.T23, 1 } end)
add("dd.Tensor.squeeze", "T(2,3):squeeze(1)", function(F) return { F.T23, 1 } end)
add("dd.Tensor.expand", "T(2,3):expand(4, 2, 3)", function(F) return { F.T23, 4, 2, 3 } end)
add("dd.Tensor.get", "T(2,3):get(2, 3)", function(F) return { F.T23, 2, 3 } end)
add("dd.Tensor.set", "T(2,3):set(2, 3, 1.5)", function(F) return { F.T23:clone(), 2, 3, 1.5 } end)
add("dd.Tensor.size", "T(2,3):size(2)", function(F) return { F.T23, 2 } end)
add("dd.Tensor.stride", "T(2,3):stride(1)", function(F) return { F.T23, 1 } end)
add("dd.Tensor.copy", "T(2,3):copy(T(2,3))", function(F) return { F.T23:clone(), dd.ones(2, 3) } end)
add("dd.Tensor.fill", "T(2,3):fill(2)", function(F) return { F.T23:clone(), 2 } end)
add("dd.Tensor.matmul", "T(2,3):matmul(T(3,2))", function(F) return { F.T23, F.T32 } end)
add("dd.Tensor.add", "T(2,3):add(T(3))", function(F) return { F.T23, dd.ones(3) } end)
add("dd.Tensor.max", "T(2,3):max(1)", function(F) return { F.T23, 1 } end)
add("dd.Tensor.__index", "t[2]", function(F) return { F.T23, 2 } end)
add("dd.Tensor.__newindex", "t[2] = T(3)", function(F) return { F.T23:clone(), 2, dd.ones(3) } end)
add("dd.Tensor.__add", "t + t", function(F) return { F.T23, F.T23 } end)
add("dd.Tensor.__pow", "t ^ 2", function(F) return { F.T23, 2 } end)

-- Layers: construction with every option, forward, backward
add("dd.nn.Linear", "Linear{3, 4, bias = true}", function() return { { 3, 4, bias = true } } end)
add("dd.nn.Conv2d", "Conv2d{1, 2, kernel_size = 3, stride = 1, padding = 'same'}",
  function() return { { 1, 2, kernel_size = 3, stride = 1, padding = "same" } } end)
add("dd.nn.ConvTranspose2d", "ConvTranspose2d{2, 1, kernel_size = 3, stride = 2, padding = 'same'}",
  function() return { { 2, 1, kernel_size = 3, stride = 2, padding = "same" } } end)
add("dd.nn.MaxPool2d", "MaxPool2d{2, stride = 2}", function() return { { 2, stride = 2 } } end)
add("dd.nn.BatchNorm2d", "BatchNorm2d{4, eps = 1e-5, momentum = 0.1, affine = true, activation = 'relu'}",
  function() return { { 4, eps = 1e-5, momentum = 0.1, affine = true, activation = "relu" } } end)
add("dd.nn.BatchNorm1d", "BatchNorm1d{3, momentum = 0.5}", function() return { { 3, momentum = 0.5 } } end)
add("dd.nn.Upsample", "Upsample{2}", function() return { { 2 } } end)
add("dd.nn.Dropout", "Dropout{0.5}", function() return { { 0.5 } } end)
add("dd.nn.Reshape", "Reshape{2, 2}", function() return { { 2, 2 } } end)
add("dd.nn.LSTM", "LSTM{3, 4, return_sequences = true, recurrent_activation = 'hard_sigmoid'}",
  function() return { { 3, 4, return_sequences = true, recurrent_activation = "hard_sigmoid" } } end)
add("dd.nn.MDN", "MDN{4, 3, 2}", function() return { { 4, 3, 2 } } end)
add("dd.nn.MSELoss", "MSELoss{reduction = 'sum'}", function() return { { reduction = "sum" } } end)
add("dd.nn.BCELoss", "BCELoss{eps = 1e-7}", function() return { { eps = 1e-7 } } end)
add("dd.nn.MDNLoss", "MDNLoss{mixtures = 2}", function() return { { mixtures = 2 } } end)

add("linear:forward", "Linear:forward(T(2,3))", function(F) return { F.T23 } end)
add("linear:backward", "Linear:backward(T(2,3), T(2,4))", function(F)
  F.linear:forward(F.T23)
  return { F.T23, dd.ones(2, 4) }
end)
add("linear:output_shape", "Linear:output_shape{2, 3}", function() return { { 2, 3 } } end)
add("linear:load_state_dict", "Linear:load_state_dict(state_dict())", function(F) return { F.linear:state_dict() } end)
add("relu:forward", "ReLU:forward(T(2,3))", function(F) return { F.T23 } end)
add("relu:backward", "ReLU:backward(T(2,3), T(2,3))", function(F)
  F.relu:forward(F.T23)
  return { F.T23, dd.ones(2, 3) }
end)
add("dropout:forward", "Dropout:forward(T(2,3))", function(F) return { F.T23 } end)
add("reshape:forward", "Reshape{2,2}:forward(T(3,4))", function() return { dd.ones(3, 4) } end)
add("flatten:forward", "Flatten:forward(T(2,1,8,8))", function(F) return { F.T4d } end)
add("conv:forward", "Conv2d:forward(T(2,1,8,8))", function(F) return { F.T4d } end)
add("conv:backward", "Conv2d:backward(T(2,1,8,8), dy)", function(F)
  local y = F.conv:forward(F.T4d)
  return { F.T4d, dd.ones(table.unpack(y:shape())) }
end)
add("conv:output_shape", "Conv2d:output_shape{2, 1, 8, 8}", function() return { { 2, 1, 8, 8 } } end)
add("deconv:forward", "ConvTranspose2d:forward(T(2,2,4,4))", function() return { dd.rand(2, 2, 4, 4) } end)
add("deconv:backward", "ConvTranspose2d:backward(x, dy)", function(F)
  local x = dd.rand(2, 2, 4, 4)
  local y = F.deconv:forward(x)
  return { x, dd.ones(table.unpack(y:shape())) }
end)
add("maxpool:forward", "MaxPool2d:forward(T(2,1,8,8))", function(F) return { F.T4d } end)
add("maxpool:backward", "MaxPool2d:backward(x, dy)", function(F)
  F.maxpool:forward(F.T4d)
  return { F.T4d, dd.ones(2, 1, 4, 4) }
end)
add("batchnorm:forward", "BatchNorm2d:forward(T(2,1,8,8))", function(F) return { F.T4d } end)
add("batchnorm:backward", "BatchNorm2d:backward(x, dy)", function(F)
  F.batchnorm:forward(F.T4d)
  return { F.T4d, dd.ones(2, 1, 8, 8) }
end)
add("batchnorm:load_state_dict", "BatchNorm2d:load_state_dict{...}", function()
  return { { weight = dd.ones(1), bias = dd.zeros(1), running_mean = dd.zeros(1), running_var = dd.ones(1) } }
end)
add("batchnorm1d:forward", "BatchNorm1d:forward(T(4,3))", function() return { dd.rand(4, 3) } end)
add("upsample:forward", "Upsample:forward(T(2,1,8,8))", function(F) return { F.T4d } end)
add("upsample:backward", "Upsample:backward(x, dy)", function(F)
  F.upsample:forward(F.T4d)
  return { F.T4d, dd.ones(2, 1, 16, 16) }
end)
add("lstm:forward", "LSTM:forward(T(2,5,3))", function(F) return { F.Tseq } end)
add("lstm:backward", "LSTM:backward(x, dy)", function(F)
  local y = F.lstm:forward(F.Tseq)
  return { F.Tseq, dd.ones(table.unpack(y:shape())) }
end)
add("lstm:step", "LSTM:step(T(2,3))", function(F) return { F.T23 } end)
add("lstm:set_state", "LSTM:set_state(state())", function(F)
  F.lstm:step(F.T23)
  return { F.lstm:state() }
end)
add("mdn:forward", "MDN:forward(T(2,4))", function() return { dd.ones(2, 4) } end)
add("mdn:sample", "MDN:sample(out, 0.5)", function(F) return { F.mdn:forward(dd.ones(2, 4)):clone(), 0.5 } end)
add("mdn:mean", "MDN:mean(out)", function(F) return { F.mdn:forward(dd.ones(2, 4)):clone() } end)
add("dd.nn.init.orthogonal", "init.orthogonal(T(3,4), 4, 3)", function() return { dd.zeros(3, 4), 4, 3 } end)

-- Losses, optimizers, metrics
add("mse:forward", "MSELoss:forward(T(2,3), T(2,3))", function(F) return { F.T23, dd.zeros(2, 3) } end)
add("mse:backward", "MSELoss:backward(T(2,3), T(2,3))", function(F) return { F.T23, dd.zeros(2, 3) } end)
add("bce:forward", "BCELoss:forward(p, t)", function() return { dd.full({ 2, 3 }, 0.5), dd.ones(2, 3) } end)
add("mdnloss:forward", "MDNLoss:forward(out, t)", function(F)
  return { F.mdn:forward(dd.ones(2, 4)):clone(), dd.zeros(2, 3) }
end)
add("mdnloss:backward", "MDNLoss:backward(out, t)", function(F)
  return { F.mdn:forward(dd.ones(2, 4)):clone(), dd.zeros(2, 3) }
end)
add("dd.Loss.__call", "MSELoss(T(2,3), T(2,3))", function(F) return { F.mse, F.T23, dd.zeros(2, 3) } end)
add("dd.optim.SGD", "SGD{params, lr = 0.1, momentum = 0.9, nesterov = true}", function(F)
  return { { F.linear:parameters(), lr = 0.1, momentum = 0.9, nesterov = true } }
end)
add("dd.optim.Adam", "Adam{params, lr = 1e-3, beta1 = 0.9, beta2 = 0.999}", function(F)
  return { { F.linear:parameters(), lr = 1e-3, beta1 = 0.9, beta2 = 0.999 } }
end)
add("dd.optim.RMSprop", "RMSprop{params, lr = 1e-3, rho = 0.9}", function(F)
  return { { F.linear:parameters(), lr = 1e-3, rho = 0.9 } }
end)
add("adam:load_state_dict", "Adam:load_state_dict(state_dict())", function(F)
  F.adam:step()
  return { F.adam:state_dict() }
end)
add("dd.Optimizer.__newindex", "opt.lr = 0.5", function(F) return { F.sgd, "lr", 0.5 } end)
add("dd.nn.clip_grad_norm", "clip_grad_norm(opt, 1)", function(F) return { F.adam, 1 } end)
add("dd.nn.clip_grad_norm", "clip_grad_norm(params, 1)", function(F) return { F.linear:parameters(), 1 } end)
add("dd.metrics.binary_accuracy", "binary_accuracy(p, t, 0.5)", function(F) return { F.T23, F.T23, 0.5 } end)
add("dd.metrics.categorical_accuracy", "categorical_accuracy(p, t)", function(F) return { F.T23, F.T23 } end)
add("dd.metrics.iou", "iou(a, b, {threshold = 0.5, foreground = 'dark'})", function(F)
  return { F.T4d, F.T4d, { threshold = 0.5, foreground = "dark" } }
end)
add("dd.masks.pack", "masks.pack(T(2,1,8,8), {threshold = 0.5, foreground = 'dark'})", function(F)
  return { F.T4d, { threshold = 0.5, foreground = "dark" } }
end)
add("dd.masks.best_iou", "masks.best_iou(m, m)", function(F) return { F.masks, F.masks } end)
add("dd.masks.change_fraction", "masks.change_fraction(m)", function(F) return { F.masks } end)

-- Files
add("dd.save", "dd.save('t.safetensors', {a = T}, {k = 'v'})", function(F)
  return { "t.safetensors", { a = F.T23, b = F.Tview }, { k = "v" } }
end)
add("dd.load", "dd.load('tensors.safetensors')", function() return { "tensors.safetensors" } end)
add("dd.safetensors_header", "dd.safetensors_header('tensors.safetensors')", function() return { "tensors.safetensors" } end)
add("dd.nn.save", "dd.nn.save('m.safetensors', seq, {optimizer = adam, meta = {epoch = 1}})", function(F)
  return { "m.safetensors", F.seq, { optimizer = F.adam, meta = { epoch = 1 } } }
end)
add("dd.nn.load", "dd.nn.load('model.safetensors', seq, adam, {restore_rng = true})", function(F)
  return { "model.safetensors", F.seq, F.adam, { restore_rng = true } }
end)
add("dd.json.encode", "json.encode{a = {1, 2}, b = 'x'}", function() return { { a = { 1, 2 }, b = "x" } } end)
add("dd.json.decode", "json.decode('{\"a\": [1, 2]}')", function() return { '{"a": [1, 2]}' } end)
add("dd.set_rng_state", "set_rng_state(rng_state())", function() return { dd.rng_state() } end)
add("dd.data.frame_writer", "data.frame_writer{channels = 1, height = 8, width = 8}",
  function() return { { channels = 1, height = 8, width = 8 } } end)
add("fw:add", "fw:add(T(1,8,8))", function() return { dd.rand(1, 8, 8) } end)
add("fw:save", "fw:save('f.safetensors', {k = 'v'})", function() return { "f.safetensors", { k = "v" } } end)
add("fs:get", "fs:get(2)", function() return { 2 } end)
add("fs:batch", "fs:batch{1, 3}", function() return { { 1, 3 } } end)
add("fs:batch", "fs:batch(dd.tensor{1, 3})", function() return { dd.tensor{ 1, 3 } } end)

-- Images and drawing
add("dd.image.save", "image.save('i.png', T(3,8,8), {bits = 16})", function(F) return { "i.png", F.Timg, { bits = 16 } } end)
add("dd.image.load", "image.load('img.png')", function() return { "img.png" } end)
add("dd.image.grid", "image.grid({T, T}, {cols = 2, pad = 2, pad_value = 1})", function(F)
  return { { F.Timg, F.Timg }, { cols = 2, pad = 2, pad_value = 1 } }
end)
add("dd.image.ascii", "image.ascii(T(3,8,8), {width = 10, mode = 'plain'})", function(F)
  return { F.Timg, { width = 10, mode = "plain" } }
end)
add("dd.draw.circle", "draw.circle(canvas, 4, 4, 2, {1, 0, 0})", function() return { dd.zeros(3, 8, 8), 4, 4, 2, { 1, 0, 0 } } end)
add("dd.draw.ellipse", "draw.ellipse(canvas, 4, 4, 3, 2, 0.5, {1, 0, 0})",
  function() return { dd.zeros(3, 8, 8), 4, 4, 3, 2, 0.5, { 1, 0, 0 } } end)
add("dd.draw.capsule", "draw.capsule(canvas, 1, 1, 6, 6, 1, 2, {1, 1, 1})",
  function() return { dd.zeros(3, 8, 8), 1, 1, 6, 6, 1, 2, { 1, 1, 1 } } end)
add("dd.draw.polygon", "draw.polygon(canvas, {1, 1, 6, 1, 3, 6}, {1, 1, 1})",
  function() return { dd.zeros(3, 8, 8), { 1, 1, 6, 1, 3, 6 }, { 1, 1, 1 } } end)
add("dd.draw.shapes", "draw.shapes(canvas, {{'circle', 4, 4, 2}, {'polygon', {1, 1, 6, 1, 3, 6}}}, {1, 1, 1})",
  function() return { dd.zeros(3, 8, 8), { { "circle", 4, 4, 2 }, { "polygon", { 1, 1, 6, 1, 3, 6 } } }, { 1, 1, 1 } } end)
add("dd.draw.fill", "draw.fill(canvas, {0.5, 0.5, 0.5})", function() return { dd.zeros(3, 8, 8), { 0.5, 0.5, 0.5 } } end)
add("dd.draw.linear_gradient", "draw.linear_gradient(canvas, 0, 0, 8, 8, {0, 0, 0}, {1, 1, 1})",
  function() return { dd.zeros(3, 8, 8), 0, 0, 8, 8, { 0, 0, 0 }, { 1, 1, 1 } } end)
add("dd.draw.radial_gradient", "draw.radial_gradient(canvas, 4, 4, 3, {1, 1, 1}, {0, 0, 0})",
  function() return { dd.zeros(3, 8, 8), 4, 4, 3, { 1, 1, 1 }, { 0, 0, 0 } } end)
add("dd.draw.glow", "draw.glow(canvas, 4, 4, 3, {1, 1, 1}, 0.5)", function() return { dd.zeros(3, 8, 8), 4, 4, 3, { 1, 1, 1 }, 0.5 } end)
add("dd.draw.beam", "draw.beam(canvas, 4, 0, 1.5, 0.3, {1, 1, 1}, 0.8, 0.3)",
  function() return { dd.zeros(3, 8, 8), 4, 0, 1.5, 0.3, { 1, 1, 1 }, 0.8, 0.3 } end)

-- Vision
add("dd.vision.silhouette", "vision.silhouette(T(3,8,8), {method = 'threshold', sum_above = 230})",
  function(F) return { F.Timg, { method = "threshold", sum_above = 230 } } end)
add("dd.vision.silhouette", "vision.silhouette(frame, {method = 'median', background = bg, ...})", function(F)
  return { F.Timg, { method = "median", background = dd.zeros(3, 8, 8), threshold = 0.1, open = 1, close = 1,
    min_area = 0.01, shape = "disc" } }
end)
add("dd.vision.background_model", "vision.background_model({T, T, T}, {samples = 2})",
  function(F) return { { F.Timg, F.Timg, F.Timg }, { samples = 2 } } end)
add("dd.vision.background_model", "vision.background_model(video, {samples = 2})",
  function(F) return { F.vid, { samples = 2 } } end)
add("dd.vision.morph", "vision.morph(mask, 'open', 1, {shape = 'disc', foreground = 'dark'})",
  function(F) return { F.T4d, "open", 1, { shape = "disc", foreground = "dark" } } end)
add("dd.vision.components", "vision.components(T(8,8), {foreground = 'light'})",
  function() return { dd.rand(8, 8), { foreground = "light" } } end)
add("dd.vision.resize", "vision.resize(T(3,8,8), 4, 6, {filter = 'area', fit = 'pad', pad_value = 1})",
  function(F) return { F.Timg, 4, 6, { filter = "area", fit = "pad", pad_value = 1 } } end)
add("dd.vision.to_grey", "vision.to_grey(T(3,8,8))", function(F) return { F.Timg } end)

-- Video
add("dd.video.open", "video.open('clip.mp4')", function() return { "clip.mp4" } end)
add("dd.video.writer", "video.writer('v.mp4', {fps = 5, crf = 30, preset = 'ultrafast'})",
  function() return { "v.mp4", { fps = 5, crf = 30, preset = "ultrafast" } } end)
add("vid:frames", "vid:frames{fps = 2, size = {4, 6}}", function() return { { fps = 2, size = { 4, 6 } } } end)
add("vid:seek", "vid:seek(0.3)", function() return { 0.3 } end)
add("writer:write", "w:write(T(3,8,8))", function(F) return { F.Timg } end)
add("gif_writer:write", "gif:write(T(1,8,8))", function() return { dd.rand(1, 8, 8) } end)

return T

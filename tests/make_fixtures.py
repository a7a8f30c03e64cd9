#!/usr/bin/env python3
"""make_fixtures.py: reference values from PyTorch for tests/lua/fixtures_spec.lua.

Run with Debian's PyTorch:  /usr/bin/python3 tests/make_fixtures.py
Writes tests/fixtures/layers.safetensors, models.safetensors and optim.safetensors
(float32, plain safetensors written with json + struct). The __metadata__ entry
"cases" is JSON: for each case its kind, the deepdance constructor options and
which tensors it holds. Per case <c>:
    <c>.x            input            <c>.param.<name>  parameters (PyTorch names)
    <c>.y            output           <c>.dy            upstream gradient
    <c>.dx           input gradient   <c>.grad.<name>   parameter gradients
Layers are computed in float64 and stored as float32, so the reference is
exact to float32 rounding. The three full models of the original (encoder,
decoder, sequence model) are too large to store whole: their parameters and
inputs come from a formula both sides evaluate in double precision
(formula_fill below, mirrored in the spec), and only outputs, input gradients
and, per parameter gradient, 256 evenly spaced entries plus the L2 norm are stored.
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(1234)
torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")


def write_safetensors(path, tensors, metadata):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name].detach().cpu().numpy().astype("<f4"))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    print(f"wrote {path}: {len(tensors)} tensors, {offset / 1e6:.2f} MB")


def f32(t):
    """Rounds to float32 and back: inputs and parameters are stored as float32,
    so the reference must be computed from exactly those values."""
    return t.to(torch.float32).to(torch.float64)


def hard_sigmoid(x):
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


def lstm_ref(x, layers, recurrent="sigmoid", return_sequences=True):
    """x (B, T, F); layers: list of (w_ih (4H, in), w_hh (4H, H), bias (4H)).
    Gate order i, f, g, o as PyTorch; written out so hard_sigmoid is possible."""
    act = torch.sigmoid if recurrent == "sigmoid" else hard_sigmoid
    h_seq = x
    for w_ih, w_hh, b in layers:
        B, T, _ = h_seq.shape
        H = w_hh.shape[1]
        h = torch.zeros(B, H, dtype=x.dtype)
        c = torch.zeros(B, H, dtype=x.dtype)
        outs = []
        for t in range(T):
            g = h_seq[:, t] @ w_ih.T + h @ w_hh.T + b
            i, f, gg, o = g.split(H, dim=1)
            c = act(f) * c + act(i) * torch.tanh(gg)
            h = act(o) * torch.tanh(c)
            outs.append(h)
        h_seq = torch.stack(outs, dim=1)
    return h_seq if return_sequences else h_seq[:, -1]


cases, tensors = [], {}


def add_case(name, kind, opts, x, params, fn, extra=None):
    """Runs fn(x, params) in float64, stores x, params, y, dy, dx and grads."""
    x = f32(x).requires_grad_(True)
    params = {k: f32(v).requires_grad_(True) for k, v in params.items()}
    y = fn(x, params)
    dy = f32(torch.randn_like(y))
    y.backward(dy)
    tensors[f"{name}.x"] = x
    tensors[f"{name}.y"] = y
    tensors[f"{name}.dy"] = dy
    tensors[f"{name}.dx"] = x.grad
    for k, v in params.items():
        tensors[f"{name}.param.{k}"] = v
        tensors[f"{name}.grad.{k}"] = v.grad
    case = {"name": name, "kind": kind, "opts": opts, "params": sorted(params)}
    if extra:
        case.update(extra)
    cases.append(case)


def tf_same_pads(size, k, s, d=1):
    out = -(-size // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


# ---- Linear ----
for name, (n, i, o, bias) in {"linear": (4, 5, 3, True), "linear_b1": (1, 7, 2, True),
                              "linear_nobias": (3, 4, 6, False)}.items():
    p = {"weight": torch.randn(o, i)}
    if bias:
        p["bias"] = torch.randn(o)
    add_case(name, "Linear", {"in_features": i, "out_features": o, "bias": bias}, torch.randn(n, i), p,
             lambda x, p: F.linear(x, p["weight"], p.get("bias")))

# ---- Conv2d ----
conv_cases = {
    # name: (N, C, H, W, K, k, stride, padding, dilation)
    "conv_same3": (2, 3, 8, 10, 4, 3, 1, "same", 1),
    "conv_pad1_s2": (1, 2, 9, 7, 3, 3, 2, 1, 1),
    "conv_k5_pad2": (2, 1, 11, 6, 2, 5, 1, 2, 1),
    "conv_same_even": (1, 2, 6, 7, 3, 2, 1, "same", 1),
    "conv_same_s2": (2, 3, 9, 8, 2, 3, 2, "same", 1),
    "conv_dil2": (1, 2, 10, 9, 3, 3, 1, "same", 2),
    "conv_valid_k1": (3, 4, 5, 5, 2, 1, 1, 0, 1),
    "conv_orig_32": (1, 32, 15, 25, 32, 3, 1, "same", 1),
}
for name, (N, C, H, W, K, k, s, pad, d) in conv_cases.items():
    def conv(x, p, s=s, pad=pad, k=k, d=d):
        if pad == "same":
            t, b = tf_same_pads(x.shape[2], k, s, d)
            l, r = tf_same_pads(x.shape[3], k, s, d)
            x = F.pad(x, (l, r, t, b))
            pad = 0
        return F.conv2d(x, p["weight"], p["bias"], stride=s, padding=pad, dilation=d)
    add_case(name, "Conv2d", {"in_channels": C, "out_channels": K, "kernel_size": k, "stride": s,
                              "padding": pad, "dilation": d},
             torch.randn(N, C, H, W), {"weight": torch.randn(K, C, k, k) * 0.3, "bias": torch.randn(K)}, conv)

# ---- ConvTranspose2d ----
convt_cases = {
    # name: (N, Cin, H, W, Cout, k, stride, padding, output_padding)
    "convt_same3": (2, 4, 5, 6, 3, 3, 1, "same", 0),
    "convt_s2_p1_op1": (1, 2, 4, 5, 3, 3, 2, 1, 1),
    "convt_k4_s2_p1": (2, 3, 3, 4, 2, 4, 2, 1, 0),
    "convt_k2_s2": (1, 2, 3, 3, 2, 2, 2, 0, 0),
    "convt_same_s2": (2, 2, 4, 3, 3, 3, 2, "same", 0),
    "convt_orig_4_32": (1, 4, 15, 25, 32, 3, 1, "same", 0),
}
for name, (N, C, H, W, K, k, s, pad, op) in convt_cases.items():
    def convt(x, p, s=s, pad=pad, op=op, k=k):
        if pad == "same":  # Keras: output = input * stride, TF's pad split (more at the end)
            y = F.conv_transpose2d(x, p["weight"], p["bias"], stride=s)
            total = max(k - s, 0)
            b = total // 2
            return y[:, :, b:b + x.shape[2] * s, b:b + x.shape[3] * s]
        return F.conv_transpose2d(x, p["weight"], p["bias"], stride=s, padding=pad, output_padding=op)
    opts = {"in_channels": C, "out_channels": K, "kernel_size": k, "stride": s, "padding": pad}
    if op:
        opts["output_padding"] = op
    add_case(name, "ConvTranspose2d", opts, torch.randn(N, C, H, W),
             {"weight": torch.randn(C, K, k, k) * 0.3, "bias": torch.randn(K)}, convt)

# ---- pooling, upsampling, activations, reshaping ----
add_case("maxpool2", "MaxPool2d", {"kernel_size": 2}, torch.randn(2, 3, 7, 9), {},
         lambda x, p: F.max_pool2d(x, 2))
add_case("maxpool3_s2_p1", "MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, torch.randn(1, 2, 8, 7), {},
         lambda x, p: F.max_pool2d(x, 3, 2, 1))
add_case("upsample2", "Upsample", {"scale_factor": 2}, torch.randn(2, 3, 4, 5), {},
         lambda x, p: F.interpolate(x, scale_factor=2, mode="nearest"))
add_case("upsample3", "Upsample", {"scale_factor": 3}, torch.randn(1, 2, 3, 2), {},
         lambda x, p: F.interpolate(x, scale_factor=3, mode="nearest"))
add_case("relu", "ReLU", {}, torch.randn(3, 8), {}, lambda x, p: F.relu(x))
add_case("sigmoid", "Sigmoid", {}, torch.randn(3, 8) * 3, {}, lambda x, p: torch.sigmoid(x))
add_case("tanh", "Tanh", {}, torch.randn(3, 8) * 2, {}, lambda x, p: torch.tanh(x))
add_case("hardsigmoid", "HardSigmoid", {}, torch.randn(3, 8) * 3, {}, lambda x, p: hard_sigmoid(x))
add_case("flatten", "Flatten", {}, torch.randn(2, 3, 4, 5), {}, lambda x, p: x.flatten(1))
add_case("reshape", "Reshape", {"c": 4, "h": 15, "w": 25}, torch.randn(2, 1500), {}, lambda x, p: x.view(2, 4, 15, 25))

# ---- LSTM ----
def lstm_params(in_size, H, layers, pair=False):
    p = {}
    for k in range(layers):
        n_in = in_size if k == 0 else H
        p[f"weight_ih_l{k}"] = torch.randn(4 * H, n_in) * 0.4
        p[f"weight_hh_l{k}"] = torch.randn(4 * H, H) * 0.4
        if pair:
            p[f"bias_ih_l{k}"] = torch.randn(4 * H) * 0.3
            p[f"bias_hh_l{k}"] = torch.randn(4 * H) * 0.3
        else:
            p[f"bias_l{k}"] = torch.randn(4 * H) * 0.3
    return p


def lstm_fn(layers, recurrent, return_sequences, pair=False):
    def fn(x, p):
        ls = []
        for k in range(layers):
            b = p[f"bias_ih_l{k}"] + p[f"bias_hh_l{k}"] if pair else p[f"bias_l{k}"]
            ls.append((p[f"weight_ih_l{k}"], p[f"weight_hh_l{k}"], b))
        return lstm_ref(x, ls, recurrent, return_sequences)
    return fn


for name, (B, T, Fi, H, L, rec, rs, pair) in {
    "lstm_sigmoid": (3, 5, 4, 6, 1, "sigmoid", True, False),
    "lstm_hard_2layer": (2, 7, 3, 5, 2, "hard_sigmoid", True, False),
    "lstm_hard_last": (4, 6, 5, 4, 1, "hard_sigmoid", False, False),
    "lstm_b1_t1": (1, 1, 3, 2, 1, "sigmoid", True, False),
    "lstm_torch_pair": (2, 4, 3, 5, 2, "sigmoid", True, True),
}.items():
    add_case(name, "LSTM", {"input_size": Fi, "hidden_size": H, "num_layers": L, "recurrent_activation": rec,
                            "return_sequences": rs},
             torch.randn(B, T, Fi), lstm_params(Fi, H, L, pair), lstm_fn(L, rec, rs, pair))

# Cross-check the written-out LSTM against torch.nn.LSTM (sigmoid gates).
_ref = torch.nn.LSTM(4, 6, num_layers=2, batch_first=True)
_x = torch.randn(3, 5, 4)
_ls = [(getattr(_ref, f"weight_ih_l{k}"), getattr(_ref, f"weight_hh_l{k}"),
        getattr(_ref, f"bias_ih_l{k}") + getattr(_ref, f"bias_hh_l{k}")) for k in range(2)]
assert torch.allclose(_ref(_x)[0], lstm_ref(_x, _ls), atol=1e-12), "lstm_ref disagrees with torch.nn.LSTM"

write_safetensors(os.path.join(OUT, "layers.safetensors"), tensors,
                  {"cases": json.dumps(cases), "torch": torch.__version__, "generator": "tests/make_fixtures.py"})

# ---- losses and Adam ----
cases, tensors = [], {}
y = f32(torch.rand(4, 6)).requires_grad_(True)
t = f32(torch.rand(4, 6))
mse = F.mse_loss(y, t)
mse.backward()
tensors.update({"mse.y": y, "mse.target": t, "mse.loss": mse.reshape(1), "mse.dy": y.grad})
y2 = f32(torch.rand(4, 6) * 0.98 + 0.01).requires_grad_(True)
t2 = f32((torch.rand(4, 6) > 0.5).double())
bce = F.binary_cross_entropy(y2, t2)
bce.backward()
tensors.update({"bce.y": y2, "bce.target": t2, "bce.loss": bce.reshape(1), "bce.dy": y2.grad})

# MDN negative log-likelihood written in torch ops: per sample [K logits | K*D means | K*D log sigmas].
K, D, N = 3, 2, 5
out = f32(torch.randn(N, K * (1 + 2 * D))).requires_grad_(True)
tgt = f32(torch.randn(N, D))
logits, mu, ls = out[:, :K], out[:, K:K + K * D].view(N, K, D), out[:, K + K * D:].view(N, K, D)
logp = (-0.5 * ((tgt[:, None, :] - mu) / ls.exp()) ** 2 - ls - 0.5 * math.log(2 * math.pi)).sum(-1)
nll = -(torch.log_softmax(logits, 1) + logp).logsumexp(1).mean()
nll.backward()
tensors.update({"mdn.out": out, "mdn.target": tgt, "mdn.loss": nll.reshape(1), "mdn.dout": out.grad})
meta = {"mdn": json.dumps({"mixtures": K, "dim": D})}

# Ten Adam steps (torch.optim.Adam, eps 1e-7) on a small MLP with MSE, in float32 like deepdance.
torch.set_default_dtype(torch.float32)
mlp = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
xb, yb = torch.randn(16, 5), torch.randn(16, 3)
for k, v in mlp.state_dict().items():
    tensors[f"adam.init.{k}"] = v.clone()
opt = torch.optim.Adam(mlp.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-7)
losses = []
for step in range(10):
    opt.zero_grad()
    loss = F.mse_loss(mlp(xb), yb)
    loss.backward()
    opt.step()
    losses.append(loss.item())
for k, v in mlp.state_dict().items():
    tensors[f"adam.final.{k}"] = v.clone()
tensors["adam.x"], tensors["adam.y"] = xb, yb
tensors["adam.losses"] = torch.tensor(losses)

# Soft Dice on dark shapes (foreground = low values), written out in torch ops,
# smooth 1, mean over the 3 samples; drawn last so the tensors above keep their values.
y3 = f32(torch.rand(3, 1, 6, 5)).requires_grad_(True)
t3 = f32((torch.rand(3, 1, 6, 5) > 0.7).double())
p3, g3 = 1 - y3, 1 - t3
inter = (p3 * g3).flatten(1).sum(1)
total = p3.flatten(1).sum(1) + g3.flatten(1).sum(1)
dice = (1 - (2 * inter + 1) / (total + 1)).mean()
dice.backward()
tensors.update({"dice.y": y3, "dice.target": t3, "dice.loss": dice.reshape(1), "dice.dy": y3.grad})
write_safetensors(os.path.join(OUT, "optim.safetensors"), tensors, meta)

# ---- the original's full models, formula parameters ----
torch.set_default_dtype(torch.float64)


def formula_fill(shape, salt, scale, offset=0.0):
    """offset + scale * (2u - 1) with u = frac(sin(12.9898 i + 78.233 salt) * 43758.5453)
    for flat index i: a hash, so values have no structure that makes near-ties
    (max-pool) or near-zeros (ReLU) common. Double, then float32; the spec
    evaluates the same expression in Lua and rounds the same way."""
    n = int(np.prod(shape)) if len(shape) else 1
    i = np.arange(n, dtype=np.float64)
    h = np.sin(i * 12.9898 + salt * 78.233) * 43758.5453
    u = h - np.floor(h)
    v = offset + scale * (2.0 * u - 1.0)
    return torch.from_numpy(v.astype(np.float32).astype(np.float64)).view(*shape)


def glorot(shape, fan_in, fan_out):
    return math.sqrt(6.0 / (fan_in + fan_out))


SAMPLES = 256


def conditioning(x, params, fn, dy):
    """Largest relative difference between PyTorch in float32 and in float64
    over the output, input gradient and parameter gradients. A fixture is only
    meaningful if float32 itself reproduces it: asserted below."""
    worst = 0.0
    res = {}
    for dt in (torch.float64, torch.float32):
        xx = x.to(dt).clone().requires_grad_(True)
        ps = {k: v.to(dt).clone().requires_grad_(True) for k, v in params.items()}
        y = fn(xx, ps)
        y.backward(dy.to(dt))
        res[dt] = [y.detach().double(), xx.grad.double()] + [ps[k].grad.double() for k in sorted(ps)]
    for a, b in zip(res[torch.float32], res[torch.float64]):
        worst = max(worst, ((a - b).norm() / b.norm().clamp_min(1e-30)).item())
    return worst


def store_model(name, x, params, fn):
    with torch.no_grad():
        yshape = tuple(fn(x[:1], params).shape[1:])
    dy = formula_fill((x.shape[0],) + yshape, 0.5, 1.0)
    worst = conditioning(x, params, fn, dy)
    print(f"{name}: PyTorch float32 vs float64, worst relative difference {worst:.2e}")
    assert worst < 2e-5, f"{name}: the fixture is ill-conditioned in float32 ({worst:.2e})"
    x = x.clone().requires_grad_(True)
    ps = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    y = fn(x, ps)
    y.backward(dy)
    mt = {f"{name}.y": y, f"{name}.dx": x.grad}
    for k, v in ps.items():
        g = v.grad.flatten()
        idx = (np.arange(SAMPLES) * g.numel()) // SAMPLES
        mt[f"{name}.gsample.{k}"] = g[idx]
        mt[f"{name}.gnorm.{k}"] = g.norm().reshape(1)
    return mt


def conv_same(x, w, b):
    return F.conv2d(x, w, b, padding=1)


def convt_same(x, w, b):
    return F.conv_transpose2d(x, w, b, padding=1)


# Encoder: 8 convolutions, as deepdance's models/autoencoder.lua declares it (1-based Sequential indices).
enc_layers = [("conv", 1, 32), ("conv", 32, 32), ("pool",), ("conv", 32, 32), ("conv", 32, 32), ("pool",),
              ("conv", 32, 32), ("conv", 32, 32), ("pool",), ("conv", 32, 32), ("conv", 32, 8), ("flatten",),
              ("linear", 3000, 512), ("linear", 512, 128)]
dec_layers = [("linear", 128, 512), ("linear", 512, 1500), ("reshape",), ("convt", 4, 4), ("convt", 4, 32), ("up",),
              ("convt", 32, 32), ("convt", 32, 32), ("up",), ("convt", 32, 32), ("convt", 32, 32), ("up",),
              ("convt", 32, 32), ("convt", 32, 32), ("convt_out", 32, 1)]


def model_params(layers, salt0):
    """Parameters keyed like deepdance's flat Sequential: each weighted layer carries
    its activation (activation='relu', fused), so every layer advances the index by 1."""
    params, spec, idx, salt = {}, [], 1, salt0
    for layer in layers:
        kind = layer[0]
        if kind in ("conv", "convt", "convt_out", "linear"):
            cin, cout = layer[1], layer[2]
            if kind == "linear":
                wshape, fi, fo = (cout, cin), cin, cout
            elif kind == "conv":
                wshape, fi, fo = (cout, cin, 3, 3), cin * 9, cout * 9
            else:
                wshape, fi, fo = (cin, cout, 3, 3), cout * 9, cin * 9
            params[f"{idx}.weight"] = formula_fill(wshape, salt, glorot(wshape, fi, fo))
            params[f"{idx}.bias"] = formula_fill((cout,), salt + 0.25, 0.05, 0.02)
            spec.append((kind, idx))
            idx += 1
            salt += 1
        else:
            spec.append((kind, idx))
            idx += 1
    return params, spec


def run_model(spec, x, p):
    for kind, idx in spec:
        if kind == "conv":
            x = F.relu(conv_same(x, p[f"{idx}.weight"], p[f"{idx}.bias"]))
        elif kind == "convt":
            x = F.relu(convt_same(x, p[f"{idx}.weight"], p[f"{idx}.bias"]))
        elif kind == "convt_out":
            x = torch.sigmoid(convt_same(x, p[f"{idx}.weight"], p[f"{idx}.bias"]))
        elif kind == "linear":
            x = F.relu(F.linear(x, p[f"{idx}.weight"], p[f"{idx}.bias"]))
        elif kind == "pool":
            x = F.max_pool2d(x, 2)
        elif kind == "up":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        elif kind == "flatten":
            x = x.flatten(1)
        elif kind == "reshape":
            x = x.view(x.shape[0], 4, 15, 25)
    return x


tensors = {}
enc_p, enc_spec = model_params(enc_layers, 1.0)
dec_p, dec_spec = model_params(dec_layers, 20.0)
x_img = formula_fill((2, 1, 120, 200), 0.1, 0.5, 0.5)
tensors.update(store_model("encoder", x_img, enc_p, lambda x, p: run_model(enc_spec, x, p)))
z = formula_fill((2, 128), 0.2, 1.0, 0.5)
tensors.update(store_model("decoder", z, dec_p, lambda x, p: run_model(dec_spec, x, p)))

# Notebook sequence model, dropout off (evaluation): LSTM 128->512, 512->256, 256->256 (last step), Dense 128 ReLU.
seq_p, salt = {}, 40.0
seq_layout = [(1, 128, 512), (3, 512, 256), (5, 256, 256)]
for idx, cin, H in seq_layout:
    seq_p[f"{idx}.weight_ih_l0"] = formula_fill((4 * H, cin), salt, glorot(None, cin, 4 * H))
    seq_p[f"{idx}.weight_hh_l0"] = formula_fill((4 * H, H), salt + 0.5, 1.0 / math.sqrt(H))
    seq_p[f"{idx}.bias_l0"] = formula_fill((4 * H,), salt + 0.75, 0.1)
    salt += 1
seq_p["7.weight"] = formula_fill((128, 256), salt, glorot(None, 256, 128))
seq_p["7.bias"] = formula_fill((128,), salt + 0.25, 0.05, 0.02)


def run_seq(x, p):
    for n, (idx, _, _) in enumerate(seq_layout):
        x = lstm_ref(x, [(p[f"{idx}.weight_ih_l0"], p[f"{idx}.weight_hh_l0"], p[f"{idx}.bias_l0"])],
                     "hard_sigmoid", return_sequences=(n < 2))
    return F.relu(F.linear(x, p["7.weight"], p["7.bias"]))


x_seq = formula_fill((4, 10, 128), 0.3, 0.5, 0.5)
tensors.update(store_model("sequence", x_seq, seq_p, run_seq))
write_safetensors(os.path.join(OUT, "models.safetensors"), tensors,
                  {"samples": str(SAMPLES), "torch": torch.__version__, "generator": "tests/make_fixtures.py"})

# ---- batch normalisation: training step (batch statistics, running
# statistics updated) then evaluation (running statistics) ----
torch.manual_seed(4321)
cases, bn_cases, tensors = [], [], {}


def add_bn_case(name, kind, opts, x, act=None):
    C = x.shape[1]
    mod = {"BatchNorm1d": torch.nn.BatchNorm1d, "BatchNorm2d": torch.nn.BatchNorm2d}[kind](
        C, eps=opts.get("eps", 1e-5), momentum=opts.get("momentum", 0.1)).double()
    with torch.no_grad():
        mod.weight.copy_(f32(torch.rand(C) + 0.5))
        mod.bias.copy_(f32(torch.randn(C)))
        mod.running_mean.copy_(f32(torch.randn(C)))
        mod.running_var.copy_(f32(torch.rand(C) + 0.5))
    fn = (lambda t: F.relu(mod(t))) if act == "relu" else mod
    tensors[f"{name}.param.weight"] = mod.weight.detach().clone()
    tensors[f"{name}.param.bias"] = mod.bias.detach().clone()
    tensors[f"{name}.param.running_mean"] = mod.running_mean.clone()
    tensors[f"{name}.param.running_var"] = mod.running_var.clone()
    for mode in ("train", "eval"):
        mod.train(mode == "train")
        mod.zero_grad()
        xi = f32(x).requires_grad_(True)
        y = fn(xi)
        dy = f32(torch.randn_like(y))
        y.backward(dy)
        tensors[f"{name}.{mode}.x"] = xi
        tensors[f"{name}.{mode}.y"] = y
        tensors[f"{name}.{mode}.dy"] = dy
        tensors[f"{name}.{mode}.dx"] = xi.grad
        tensors[f"{name}.{mode}.grad.weight"] = mod.weight.grad.clone()
        tensors[f"{name}.{mode}.grad.bias"] = mod.bias.grad.clone()
        tensors[f"{name}.{mode}.running_mean"] = mod.running_mean.clone()
        tensors[f"{name}.{mode}.running_var"] = mod.running_var.clone()
    o = dict(opts)
    o["num_features"] = C
    if act:
        o["activation"] = act
    bn_cases.append({"name": name, "kind": kind, "opts": o})


add_bn_case("bn2d", "BatchNorm2d", {}, torch.randn(4, 3, 5, 6) * 2 + 1)
add_bn_case("bn2d_relu_m03", "BatchNorm2d", {"momentum": 0.3, "eps": 1e-3}, torch.randn(2, 4, 7, 3), act="relu")
add_bn_case("bn1d", "BatchNorm1d", {}, torch.randn(8, 5) * 0.5 - 2)
add_bn_case("bn1d_3d", "BatchNorm1d", {}, torch.randn(3, 4, 6))


# ---- the MDN head with a floor on sigma: log sigma = log(min_sigma + exp(raw)) ----
def mdn_head(k, d, min_sigma):
    def fn(x, p):
        raw = F.linear(x, p["weight"], p["bias"])
        if min_sigma == 0:
            return raw
        head, ls = raw[:, : k * (1 + d)], raw[:, k * (1 + d):]
        return torch.cat([head, torch.log(min_sigma + torch.exp(ls))], dim=1)
    return fn


for name, k, d, f in (("mdn_plain", 3, 2, 0.0), ("mdn_min_sigma", 3, 4, 0.1)):
    opts = {"in_features": 5, "out_features": d, "mixtures": k}
    if f:
        opts["min_sigma"] = f
    W = k * (1 + 2 * d)
    add_case(name, "MDN", opts, torch.randn(6, 5), {"weight": torch.randn(W, 5), "bias": torch.randn(W)},
             mdn_head(k, d, f))
write_safetensors(os.path.join(OUT, "layers_extra.safetensors"), tensors,
                  {"cases": json.dumps(cases), "bn_cases": json.dumps(bn_cases), "torch": torch.__version__,
                   "generator": "tests/make_fixtures.py"})

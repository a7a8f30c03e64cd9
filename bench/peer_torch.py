#!/usr/bin/python3
"""bench/peer_torch.py: the PyTorch peer of bench/run.lua's model rows.

One row, one thread setting per process (OPENBLAS_NUM_THREADS must be set
before torch is imported, so bench/run.lua sets it in our environment):

    OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/peer_torch.py ROW \
        --threads 2 --reps 3 --out result.json

ROW is ae_train32, ae_train128, seq_train128, decoder64 or generate. Writes
{"seconds": best, "items": ..., "peak_rss_mb": ..., "baseline_rss_mb": ...,
"params": ...} to --out as JSON (baseline: the peak RSS once torch is
imported), or {"skip": reason} when torch cannot be imported.

The models are the same layer tables as models/autoencoder.lua and
models/sequence.lua (variant 'notebook'):
- Keras 'same' 3x3 stride-1 convolutions: Conv2d(padding=1); the transposed
  ones: ConvTranspose2d(padding=1); Upsample: nearest; Glorot-uniform weights,
  zero biases.
- LSTM: torch's nn.LSTM (one layer per module, so dropout sits between them as
  in ours). Its gates use the logistic sigmoid: torch has no hard-sigmoid
  recurrent activation, and a hand-written LSTM cell in Python would be an
  unfair peer. nn.LSTM has two biases (b_ih, b_hh) where Keras has one:
  b_hh is fixed at zero and not trained, so both models train the same
  2,658,432 parameters.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time


def peak_rss_mb():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def glorot(model, nn):
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def autoencoder(torch, nn, latent=128, f=32, H=120, W=200):
    h, w = H // 8, W // 8

    def conv(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]

    def deconv(cin, cout, act=True):
        return [nn.ConvTranspose2d(cin, cout, 3, padding=1)] + ([nn.ReLU()] if act else [])

    pool, up = nn.MaxPool2d(2), lambda: nn.Upsample(scale_factor=2, mode="nearest")
    encoder = nn.Sequential(
        *conv(1, f), *conv(f, f), pool,
        *conv(f, f), *conv(f, f), nn.MaxPool2d(2),
        *conv(f, f), *conv(f, f), nn.MaxPool2d(2),
        *conv(f, f), *conv(f, 8),
        nn.Flatten(),
        nn.Linear(8 * h * w, 512), nn.ReLU(), nn.Linear(512, latent), nn.ReLU())
    decoder = nn.Sequential(
        nn.Linear(latent, 512), nn.ReLU(), nn.Linear(512, 4 * h * w), nn.ReLU(),
        nn.Unflatten(1, (4, h, w)),
        *deconv(4, 4), *deconv(4, f), up(),
        *deconv(f, f), *deconv(f, f), up(),
        *deconv(f, f), *deconv(f, f), up(),
        *deconv(f, f), *deconv(f, f),
        *deconv(f, 1, act=False), nn.Sigmoid())
    ae = nn.Sequential(encoder, decoder)
    glorot(ae, nn)
    return ae, encoder, decoder


def sequence(torch, nn, latent=128, units=(512, 256, 256), p=0.2):
    """The 'notebook' model: LSTM 512, 256, 256 (last step), Dense 128 ReLU, 20% dropout after each LSTM."""
    class SequenceModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstms = nn.ModuleList()
            cin = latent
            for u in units:
                lstm = nn.LSTM(cin, u, batch_first=True)
                nn.init.xavier_uniform_(lstm.weight_ih_l0)
                nn.init.orthogonal_(lstm.weight_hh_l0)
                nn.init.zeros_(lstm.bias_ih_l0)
                nn.init.zeros_(lstm.bias_hh_l0)
                lstm.bias_hh_l0.requires_grad_(False)  # Keras has one bias
                self.lstms.append(lstm)
                cin = u
            self.drop = nn.Dropout(p)
            self.head = nn.Linear(cin, latent)
            nn.init.xavier_uniform_(self.head.weight)
            nn.init.zeros_(self.head.bias)

        def forward(self, x):  # x is (N, T, latent)
            for lstm in self.lstms:
                x, _ = lstm(x)
                x = self.drop(x)
            return torch.relu(self.head(x[:, -1]))

        def step(self, x, state):
            """One time step for generation: x is (1, 1, latent); state a list of (h, c)."""
            for i, lstm in enumerate(self.lstms):
                x, state[i] = lstm(x, state[i])
            return torch.relu(self.head(x[:, -1]))

    return SequenceModel()


def n_trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def best_of(reps, fn, warmup=1):
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def train_row(torch, nn, model, x, y, reps):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    mse = nn.MSELoss()
    model.train()

    def step():
        opt.zero_grad()
        loss = mse(model(x), y)
        loss.backward()
        opt.step()

    return best_of(reps, step)


def generate(torch, nn, ae_decoder, seq, steps, out, batch=64, fps=6, scale=2, look_back=10, latent=128):
    """The loop of lua/deepdance/dance/generate.lua (window 'stateful', deterministic)
    and experiments/generate.lua: warm the LSTM state on a random seed window,
    predict-append `steps` latents, decode them in batches of 64, upscale 2x
    (nearest: what the 'area' filter does at an integer scale) and encode H.264
    (libx264 crf 18, preset medium, yuv420p, as dd.video.writer) through the
    ffmpeg CLI, fed raw grey frames on a pipe."""
    H, W = 120 * scale, 200 * scale
    enc = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{W}x{H}",
         "-r", str(fps), "-i", "-", "-c:v", "libx264", "-crf", "18", "-preset", "medium",
         "-pix_fmt", "yuv420p", "-movflags", "+faststart", out],
        stdin=subprocess.PIPE)
    with torch.no_grad():
        seed = torch.rand(look_back, latent)
        state = [None] * len(seq.lstms)
        for t in range(look_back):
            z = seq.step(seed[t].view(1, 1, latent), state)
        preds = torch.empty(steps, latent)
        for s in range(steps):
            preds[s] = z[0]
            if s < steps - 1:
                z = seq.step(z.view(1, 1, latent), state)
        for first in range(0, steps, batch):
            frames = ae_decoder(preds[first:first + batch])
            frames = nn.functional.interpolate(frames, scale_factor=scale, mode="nearest")
            enc.stdin.write((frames * 255 + 0.5).clamp_(0, 255).to(torch.uint8).numpy().tobytes())
    enc.stdin.close()
    if enc.wait() != 0:
        raise RuntimeError("ffmpeg failed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("row", choices=["ae_train32", "ae_train128", "seq_train128", "decoder64", "generate"])
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions after one warm-up (best is kept)")
    ap.add_argument("--frames", type=int, default=1800, help="generate: frames to generate")
    ap.add_argument("--video", default="/tmp/peer_torch_generate.mp4", help="generate: output video")
    ap.add_argument("--out", required=True, help="result JSON file")
    a = ap.parse_args()

    def write(result):
        with open(a.out + ".tmp", "w") as f:
            json.dump(result, f)
        os.replace(a.out + ".tmp", a.out)

    try:
        import torch
        import torch.nn as nn
    except ImportError as e:
        write({"skip": f"PyTorch is not installed ({e}); apt-get install python3-torch"})
        return

    baseline = peak_rss_mb()  # the interpreter and torch, before any model
    torch.manual_seed(1)
    torch.set_num_threads(a.threads)
    result = {"torch": torch.__version__, "threads": a.threads,
              "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}
    if a.row in ("ae_train32", "ae_train128"):
        n = 32 if a.row == "ae_train32" else 128
        ae, _, _ = autoencoder(torch, nn)
        x = torch.rand(n, 1, 120, 200)
        result.update(seconds=train_row(torch, nn, ae, x, x, a.reps), items=n, params=n_trainable(ae))
    elif a.row == "seq_train128":
        seq = sequence(torch, nn)
        x, y = torch.rand(128, 10, 128), torch.rand(128, 128)
        result.update(seconds=train_row(torch, nn, seq, x, y, a.reps), items=128, params=n_trainable(seq))
    elif a.row == "decoder64":
        _, _, dec = autoencoder(torch, nn)
        dec.eval()
        z = torch.rand(64, 128)

        def infer():
            with torch.no_grad():
                dec(z)
        result.update(seconds=best_of(a.reps, infer), items=64, params=n_trainable(dec))
    else:
        ae, _, dec = autoencoder(torch, nn)
        seq = sequence(torch, nn)
        dec.eval()
        seq.eval()
        # Warm-up: a short loop, so first-call costs (allocator, oneDNN primitives) are not timed.
        generate(torch, nn, dec, seq, 64, a.video)
        best = float("inf")
        for _ in range(a.reps):
            t0 = time.perf_counter()
            generate(torch, nn, dec, seq, a.frames, a.video)
            best = min(best, time.perf_counter() - t0)
        os.remove(a.video)
        result.update(seconds=best, items=a.frames, params=n_trainable(ae) + n_trainable(seq))
    result["peak_rss_mb"], result["baseline_rss_mb"] = peak_rss_mb(), baseline
    write(result)


if __name__ == "__main__":
    sys.exit(main())

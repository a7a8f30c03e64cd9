#!/usr/bin/env bash
# make_corpus.sh: regenerates the committed seed corpora fuzz/corpus/<name>/
# from deepdance's own writers (dd.save, dd.nn.save, dd.image.save,
# dd.video.writer), the independent test helpers (tests/interop_safetensors.py,
# tests/support/make_pngs.py) and the ffmpeg CLI. Small valid files only:
# the fuzzer does the breaking. Run from anywhere after `make`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/corpus
rm -rf "$out"
mkdir -p "$out"/{safetensors,checkpoint,png,video,tensor}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- safetensors: dd.save, a checkpoint, every dtype from the Python writer
./deepdance - "$out/safetensors" <<'LUA'
local dir = arg[1]
dd.manual_seed(1)
dd.save(dir .. "/two.safetensors", {w = dd.randn(2, 3), b = dd.ones(3)}, {step = 12, note = "seed"})
dd.save(dir .. "/scalar_empty.safetensors", {s = dd.tensor(2.5), e = dd.zeros(0), z = dd.zeros(2, 0)})
dd.save(dir .. "/none.safetensors", {})
dd.save(dir .. "/meta_only.safetensors", {}, {a = "1", b = "two"})
dd.save(dir .. "/nd.safetensors", {x = dd.arange(24):view(1, 2, 3, 4)})
local net = dd.nn.Sequential{dd.nn.Linear{3, 2}}
local opt = dd.optim.Adam{net:parameters(), lr = 1e-3}
dd.nn.save(dir .. "/checkpoint.safetensors", net, {optimizer = opt, meta = {epoch = 1, name = "seed"}})
LUA
python3 tests/interop_safetensors.py write "$out/safetensors/dtypes.safetensors"

# ---- checkpoint: dd.nn.save of fuzz_checkpoint.c's model (Linear 3 -> 2 in a
# Sequential, Adam), with and without optimizer and meta; a plain tensor file
./deepdance - "$out/checkpoint" <<'LUA'
local dir = arg[1]
dd.manual_seed(3)
local net = dd.nn.Sequential{dd.nn.Linear{3, 2}}
local opt = dd.optim.Adam{net:parameters(), lr = 1e-3}
dd.nn.save(dir .. "/full.safetensors", net, {optimizer = opt, meta = {epoch = 2, losses = {0.5, 0.25}, tag = "seed"}})
dd.nn.save(dir .. "/model_only.safetensors", net)
dd.save(dir .. "/plain.safetensors", {w = dd.ones(2, 2)}, {note = "not a checkpoint"})
LUA

# ---- png: deepdance's writer (1-4 channels, 8 and 16 bits) and every
# colour type / depth / interlacing of the independent encoder
./deepdance - "$out/png" <<'LUA'
local dir = arg[1]
dd.manual_seed(2)
for c = 1, 4 do
  for _, bits in ipairs{8, 16} do
    dd.image.save(("%s/dd_c%d_%d.png"):format(dir, c, bits), dd.rand(c, 3, 5), {bits = bits})
  end
end
LUA
mkdir -p "$tmp/png"
python3 tests/support/make_pngs.py make "$tmp/png" 1 >/dev/null
for f in "$tmp"/png/*.png; do
  case $(basename "$f") in bad_*|no_iend*|not_png*|empty*) continue ;; esac
  cp "$f" "$out/png/"
done

# ---- video: tiny clips in the containers and codecs FFmpeg decodes most,
# and deepdance's own writer
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=${SIZE:-16x16}:rate=5:duration=1" "$@"; }
ff -c:v libx264 -preset ultrafast -pix_fmt yuv420p "$out/video/h264.mp4"
ff -c:v libx264 -preset ultrafast -pix_fmt yuv420p -bf 2 -g 3 "$out/video/h264_bframes.mkv"
ff -c:v libx264 -preset ultrafast -pix_fmt yuv420p -f mpegts "$out/video/h264.ts"
ffmpeg -nostdin -loglevel error -y -i "$out/video/h264.mp4" -c copy -metadata:s:v:0 rotate=90 "$out/video/rotated.mp4"
ff -c:v mpeg4 -q:v 5 "$out/video/mpeg4.avi"
ff -c:v mjpeg -q:v 5 "$out/video/mjpeg.avi"
ff -c:v ffv1 "$out/video/ffv1.mkv"
ff -c:v libvpx-vp9 -deadline realtime -b:v 50k "$out/video/vp9.webm"
ff -c:v gif "$out/video/ffmpeg.gif"
ff -pix_fmt yuv420p "$out/video/raw.y4m"
SIZE=8x8 ff -pix_fmt rgb24 -f apng "$out/video/anim.apng"
./deepdance - "$out/video" <<'LUA'
local dir = arg[1]
for _, ext in ipairs{"mp4", "gif"} do
  local w = dd.video.writer(dir .. "/dd." .. ext, {fps = 4})
  for i = 1, 4 do w:write(dd.full({3, 12, 16}, i / 5)) end
  w:close()
end
LUA

# ---- tensor: programs for fuzz_tensor.c's push_value (opcodes 0-2 table of
# n, 3 n copies, 4-8 small integer, 9 raw double, 10 special number,
# 11 extreme integer, 12 string, 13 nil/boolean, 14 Tensor, 15 metatable)
t() { printf "$2" > "$out/tensor/$1"; }
t vector      '\x00\x03\x04\x01\x04\x02\x04\x03'
t matrix      '\x00\x02\x00\x02\x04\x01\x04\x02\x00\x02\x04\x03\x04\x04'
t cube        '\x03\x04\x03\x03\x03\x02\x04\x07'
t deep        '\x03\x01\x03\x01\x03\x01\x03\x01\x03\x01\x03\x01\x03\x01\x03\x01\x03\x01\x04\x01'
t specials    '\x00\x05\x0a\x00\x0a\x01\x0a\x02\x0a\x05\x0b\x00'
t double      '\x00\x01\x09\x3f\xf0\x00\x00\x00\x00\x00\x01'
t scalar      '\x04\x05'
t tensor      '\x0e\x02'
t ragged      '\x00\x02\x00\x01\x04\x01\x00\x02\x04\x01\x04\x02'
t empty_rows  '\x00\x02\x00\x00\x00\x00'
t hole        '\x00\x03\x04\x01\x0d\x00\x04\x02'
t string      '\x00\x02\x04\x01\x0c\x01'
t metatable   '\x0f\x02\x04\x01\x04\x02'
for d in "$out"/*; do echo "$(basename "$d"): $(ls "$d" | wc -l) files, $(du -sb "$d" | cut -f1) bytes"; done

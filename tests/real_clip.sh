#!/bin/sh
# real_clip.sh: the whole pipeline on real footage, at the smoke scale: a
# static-camera clip (OpenCV's vtest.avi from Debian's opencv-doc, fetched by
# experiments/fetch_real_clip.sh) with --background median must give a frame
# cache of every sampled frame (79.5 s at 3 fps: 239), dark figures on a white
# background, a trained autoencoder, a generated MP4 that decodes, and the
# reports. Prints TAP.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${DD_BIN:-./deepdance}
echo "1..3"
clip=data/real/vtest.avi
if ! experiments/fetch_real_clip.sh "$clip" >/dev/null; then
    echo "not ok 1 - fetch the real clip (experiments/fetch_real_clip.sh failed)"
    echo "not ok 2 - pipeline on the real clip # not run"
    echo "not ok 3 - its frames are silhouettes # not run"
    exit 0
fi
echo "ok 1 - fetch the real clip"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if "$BIN" experiments/deep_dance.lua --preset smoke --video "$clip" --background median --out "$out/r" \
       --progress none >"$out/log" 2>&1 &&
   "$BIN" -e "
     local out = '$out/r'
     for _, f in ipairs{'ae/best.safetensors', 'gen/dance_sampling.mp4', 'gen/dance_deterministic.gif', 'report.md'} do
       assert(io.open(out .. '/' .. f), 'missing ' .. f)
     end
     local v = dd.video.open(out .. '/gen/dance_sampling.mp4')
     local n = 0
     for frame in v:frames() do n = n + 1 end
     assert(n == v.frame_count and n > 10, ('the MP4 decodes to %d of %d frames'):format(n, v.frame_count))
   " >>"$out/log" 2>&1; then
    echo "ok 2 - deep_dance.lua --video vtest.avi --background median: autoencoder, MP4, GIF, report"
else
    echo "not ok 2 - deep_dance.lua --video vtest.avi --background median"
    tail -n 30 "$out/log" | sed 's/^/# /'
fi
if "$BIN" -e "
     local fs = dd.data.frames('$out/r/data/frames.safetensors')
     assert(#fs == 239, ('expected 239 frames (79.5 s at 3 fps), got %d'):format(#fs))
     assert(fs.height == 120 and fs.width == 200, ('frames are %dx%d'):format(fs.height, fs.width))
     local b = fs:batch{1, 60, 120, 180, 239}
     local dark = b:lt(0.5):mean()
     -- people cover a few percent of the square; an unremoved background would be far darker
     assert(dark > 0.002 and dark < 0.15, ('dark fraction %g: not figures on a white background'):format(dark))
   " >"$out/log3" 2>&1; then
    echo "ok 3 - the median background leaves dark figures on white (239 frames of 120x200)"
else
    echo "not ok 3 - the median background leaves dark figures on white"
    sed 's/^/# /' "$out/log3"
fi

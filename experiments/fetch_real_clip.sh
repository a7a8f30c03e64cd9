#!/usr/bin/env bash
# experiments/fetch_real_clip.sh [DEST]: a real static-camera clip for the
# pipeline's `--background median` path. No dance video can be downloaded
# here, so this takes the one real static-camera footage Debian ships:
# OpenCV's sample vtest.avi (768x576, 10 fps, 79.5 s of people walking across
# a square, fixed camera), from the opencv-doc package. The package is
# downloaded, not installed (no root needed): only the clip is extracted.
# DEST defaults to data/real/vtest.avi; an existing file is kept.
set -euo pipefail
dest=${1:-data/real/vtest.avi}
[ -s "$dest" ] && { echo "$dest"; exit 0; }
member=./usr/share/doc/opencv-doc/examples/data/vtest.avi
mkdir -p "$(dirname "$dest")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download opencv-doc >/dev/null 2>&1); then
    # An outdated package list names a version the mirror no longer has.
    if [ "$(id -u)" = 0 ]; then apt-get update -qq; fi
    (cd "$work" && apt-get download opencv-doc >/dev/null) || {
        echo "fetch_real_clip: 'apt-get download opencv-doc' failed; run 'sudo apt-get update' and try again" >&2; exit 1; }
fi
dpkg-deb --fsys-tarfile "$work"/opencv-doc_*.deb | tar -xO "$member" > "$work/clip.avi"
[ -s "$work/clip.avi" ] || { echo "fetch_real_clip: $member is not in the opencv-doc package" >&2; exit 1; }
mv "$work/clip.avi" "$dest"
echo "$dest"

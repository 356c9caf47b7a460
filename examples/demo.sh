#!/usr/bin/env bash
# The main job on the embedded model: encode an image progressively, decode a prefix, decode
# everything and check the result is bit-exact.  Run from the repository root after
# `cargo build --release`.
set -euo pipefail
B=${B:-./target/release/ddpm-codec}
IMG=${1:-examples/images/cifar_test_0.png}
OUT=${OUT:-/tmp/ddpm-demo}
mkdir -p "$OUT"
"$B" encode "$IMG" -o "$OUT/img.ddpc" --report "$OUT/report.json"
"$B" info "$OUT/img.ddpc" | tail -n 25
"$B" decode "$OUT/img.ddpc" --max-steps 10 -o "$OUT/prefix10.png"
"$B" decode "$OUT/img.ddpc" --max-bytes 1200 -o "$OUT/first1200bytes.png"
"$B" decode "$OUT/img.ddpc" -o "$OUT/exact.png"
"$B" decode "$OUT/img.ddpc" --max-steps 10 --recon ddim -o "$OUT/prefix10_ddim.png"
echo "outputs in $OUT (exact.png: the decoder verified the pixel checksum of the lossless decode)"

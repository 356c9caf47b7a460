#!/usr/bin/env bash
# Session 9: the README's stream figures with the fused PFR scorer (same model 533317f2…, format 5),
# in two one-thread lanes, then the 768x512 photo on two threads. Run from the repository root
# after `cargo build --release --bin ddpm-codec --examples`; PHOTOS is the folder written by
# `python3 bench/photos/make_crops.py ../shared/data/photos PHOTOS`. (The bounds, `nll`, do not
# depend on the coder: bench/nll/session8/ stays.)
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10}
PHOTOS=${PHOTOS:-runs/photos}
B=./target/release/ddpm-codec
export RAYON_NUM_THREADS=1
mkdir -p bench/lossless_500_session9 bench/rd500_session9 bench/rd30_k1000_session9 \
  bench/photo_crops_session9 bench/photo768_session9 bench/rcc
lane_a() {
  $B -q --threads 1 bench-lossless "$DATA" --limit 500 --bitsback --json bench/lossless_500_session9/lossless.json > bench/lossless_500_session9/table.txt
  mkdir -p "$PHOTOS/crops" && cp "$PHOTOS"/*crop*.png "$PHOTOS/crops/"
  $B -q --threads 1 bench-lossless "$PHOTOS/crops" --json bench/photo_crops_session9/lossless.json > bench/photo_crops_session9/table.txt
}
lane_b() {
  $B -q --threads 1 rd "$DATA" --limit 500 --classical --csv bench/rd500_session9/rd.csv --json bench/rd500_session9/rd.json --plot bench/rd500_session9/rd.png > bench/rd500_session9/summary.txt
  ./target/release/examples/rcc_sweep "$DATA" 100 50 learned "12:3:17:0.25:1.2:1" > bench/rcc/default_100img_k50_session9.csv
  ./target/release/examples/rcc_sweep "$DATA" 20 1000 learned "12:3:17:0.25:1.2:1" > bench/rcc/default_20img_k1000_session9.csv
  $B -q --threads 1 rd "$DATA" --limit 30 --steps 1000 --classical --csv bench/rd30_k1000_session9/rd.csv --json bench/rd30_k1000_session9/rd.json --plot bench/rd30_k1000_session9/rd.png > bench/rd30_k1000_session9/summary.txt
}
lane_a > bench/session9/lane_a.log 2>&1 &
A=$!
lane_b > bench/session9/lane_b.log 2>&1 &
Bp=$!
wait $A $Bp
export RAYON_NUM_THREADS=2
cp "$PHOTOS/flower_768x512.png" runs/flower_768x512.png
/usr/bin/time -v $B -q --threads 2 encode runs/flower_768x512.png -o runs/flower.ddpc --report bench/photo768_session9/encode_report.json 2> bench/photo768_session9/time_encode.txt
/usr/bin/time -v $B -q --threads 2 decode runs/flower.ddpc -o runs/flower_dec.png 2> bench/photo768_session9/time_decode.txt
cmp <(python3 -c "from PIL import Image; import sys; print(Image.open(sys.argv[1]).tobytes().hex())" runs/flower_768x512.png) \
    <(python3 -c "from PIL import Image; import sys; print(Image.open(sys.argv[1]).tobytes().hex())" runs/flower_dec.png) && echo "photo: decode bit-exact" > bench/photo768_session9/check.txt
# afterwards, alone on one core beside the fresh-clone CI: lossless at K = 1000 on the first 500
# $B -q --threads 1 bench-lossless "$DATA" --limit 500 --steps 1000 --json bench/lossless_500_k1000_session9/lossless.json > bench/lossless_500_k1000_session9/table.txt
# and on the first 100 (the figure quoted in the README):
# $B -q --threads 1 bench-lossless "$DATA" --limit 100 --steps 1000 --json bench/lossless_100_k1000_session9/lossless.json > bench/lossless_100_k1000_session9/table.txt

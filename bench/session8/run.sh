#!/usr/bin/env bash
# Session 8: every README figure of the shipped model (learned variance, format 5, archive v2), in two
# one-thread lanes (balanced: ≈ 45 min each), then the 768x512 photo on two threads. Run from the repository root after
# `cargo build --release --bin ddpm-codec --examples`; PHOTOS is the folder written by
# `python3 bench/photos/make_crops.py ../shared/data/photos PHOTOS`.
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10}
PHOTOS=${PHOTOS:-runs/photos}
B=./target/release/ddpm-codec
export RAYON_NUM_THREADS=1
mkdir -p bench/nll/session8 bench/lossless_500_session8 bench/rd500_session8 bench/rd30_k1000_session8 \
  bench/photo_crops_session8 bench/photo768_session8 bench/rcc
lane_a() {
  $B -q --threads 1 bench-lossless "$DATA" --limit 500 --bitsback --json bench/lossless_500_session8/lossless.json > bench/lossless_500_session8/table.txt
  ./target/release/examples/rcc_sweep "$DATA" 100 50 learned "12:3:17" > bench/rcc/default_100img_k50_session8.csv
  ./target/release/examples/rcc_sweep "$DATA" 20 1000 learned "12:3:17" > bench/rcc/default_20img_k1000_session8.csv
  $B -q --threads 1 rd "$DATA" --limit 30 --steps 1000 --classical --csv bench/rd30_k1000_session8/rd.csv --json bench/rd30_k1000_session8/rd.json --plot bench/rd30_k1000_session8/rd.png > bench/rd30_k1000_session8/summary.txt
}
lane_b() {
  for v in learned optimal large small; do
    for k in 20 50 100; do
      $B -q --threads 1 nll --data "$DATA" --limit 100 --steps $k --variance $v --batch 100 --json bench/nll/session8/exact_100_k${k}_$v.json > bench/nll/session8/exact_100_k${k}_$v.txt
    done
  done
  for v in learned optimal large; do
    $B -q --threads 1 nll --data "$DATA" --steps 1000 --mode random-t --variance $v --json bench/nll/session8/random_t_10000_k1000_$v.json > bench/nll/session8/random_t_10000_k1000_$v.txt
  done
  $B -q --threads 1 rd "$DATA" --limit 500 --classical --csv bench/rd500_session8/rd.csv --json bench/rd500_session8/rd.json --plot bench/rd500_session8/rd.png > bench/rd500_session8/summary.txt
  mkdir -p "$PHOTOS/crops" && cp "$PHOTOS"/*crop*.png "$PHOTOS/crops/"
  $B -q --threads 1 bench-lossless "$PHOTOS/crops" --json bench/photo_crops_session8/lossless.json > bench/photo_crops_session8/table.txt
}
lane_a > bench/session8/lane_a.log 2>&1 &
A=$!
lane_b > bench/session8/lane_b.log 2>&1 &
Bp=$!
wait $A $Bp
mkdir -p "$PHOTOS/photo768" && cp "$PHOTOS/flower_768x512.png" "$PHOTOS/photo768/"
export RAYON_NUM_THREADS=2
/usr/bin/time -v $B -q --threads 2 encode "$PHOTOS/photo768/flower_768x512.png" -o runs/flower.ddpc --report bench/photo768_session8/encode_report.json 2> bench/photo768_session8/time_encode.txt
/usr/bin/time -v $B -q --threads 2 decode runs/flower.ddpc -o runs/flower_dec.png 2> bench/photo768_session8/time_decode.txt
cmp <(python3 -c "from PIL import Image; import sys; print(Image.open(sys.argv[1]).tobytes().hex())" "$PHOTOS/photo768/flower_768x512.png") \
    <(python3 -c "from PIL import Image; import sys; print(Image.open(sys.argv[1]).tobytes().hex())" runs/flower_dec.png) && echo "photo: decode bit-exact" > bench/photo768_session8/check.txt
# the paper's figures with the shipped model (README "What the prior knows")
cargo run -q --release --example progressive_generation -- -o assets/figures/progressive_generation.png
cargo run -q --release --example shared_latent -- examples/images/cifar_test_1.png -o assets/figures/shared_latent.png
cargo run -q --release --example interpolate -- examples/images/cifar_test_2.png examples/images/cifar_test_5.png --t 250,500,750 -o assets/figures/interpolate.png

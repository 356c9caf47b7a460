#!/usr/bin/env bash
# Session 15's measurements (format 10: the residual blocks' 3×3 convolutions by Winograd
# F(2×2, 3×3), 64-byte aligned kernel buffers). Run from the repository root after
# `cargo build --release --bins --examples` and
# `python3 bench/photos/make_crops.py ../shared/data/photos runs/photos`; DATA is the CIFAR-10
# folder (test split). Lanes A and B ran side by side (one thread each); the speed checks ran
# alone on the otherwise idle machine. O: session 14's binary (format 9, built from ceb241b in a
# worktree: `git worktree add /tmp/s14wt ceb241b && cd /tmp/s14wt && cargo build --release`),
# decoding session 14's own photo stream runs/s14/f50.ddpc.
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10}
B=./target/release/ddpm-codec
S=./target/release/examples/rcc_sweep
O=${O:-/tmp/ddpm-codec-s14}
mkdir -p bench/rcc/session15 bench/lossless_500_session15 bench/lossless_500_k1000_session15 bench/rd500_session15 bench/rd500_k1000_session15 runs/s15
# --- lane A: K = 50 ---
lane_a() {
  $B -q --threads 1 bench-lossless "$DATA" --limit 500 --json bench/lossless_500_session15/lossless.json > bench/lossless_500_session15/table.txt 2> bench/lossless_500_session15/err.txt
  $B -q --threads 1 rd "$DATA" --limit 500 --classical --csv bench/rd500_session15/rd.csv --json bench/rd500_session15/rd.json --plot bench/rd500_session15/rd.png > bench/rd500_session15/summary.txt
  RAYON_NUM_THREADS=1 $S "$DATA" 500 50 learned "16:2:17" > bench/rcc/session15/default_500img_k50.csv
}
# --- lane B: K = 1000 ---
lane_b() {
  $B -q --threads 1 bench-lossless "$DATA" --limit 500 --steps 1000 --json bench/lossless_500_k1000_session15/lossless.json > bench/lossless_500_k1000_session15/table.txt 2> bench/lossless_500_k1000_session15/err.txt
  $B -q --threads 1 rd "$DATA" --limit 500 --steps 1000 --classical --csv bench/rd500_k1000_session15/rd.csv --json bench/rd500_k1000_session15/rd.json --plot bench/rd500_k1000_session15/rd.png > bench/rd500_k1000_session15/summary.txt
  RAYON_NUM_THREADS=1 $S "$DATA" 500 1000 learned "16:2:17" > bench/rcc/session15/default_500img_k1000.csv
}
if [ "${SKIP_LANES:-0}" != 1 ]; then
  lane_a & lane_b & wait
fi
[ "${ONLY_LANES:-0}" = 1 ] && exit 0
# --- idle machine: speed, this build and session 14's alternately (one thread, first 30) ---
mkdir -p bench/session15/speed_k50_30 bench/session15/speed_k1000_30 bench/photo768_session15 bench/photo_crops_session15 runs/crops
for n in 1 2 3 4; do
  $B -q --threads 1 bench-lossless "$DATA" --limit 30 --json bench/session15/speed_k50_30/run$n.json > bench/session15/speed_k50_30/table$n.txt
  $O -q --threads 1 bench-lossless "$DATA" --limit 30 --json bench/session15/speed_k50_30/session14_run$n.json > /dev/null
done
for n in 1 2; do
  $B -q --threads 1 bench-lossless "$DATA" --limit 30 --steps 1000 --json bench/session15/speed_k1000_30/run$n.json > bench/session15/speed_k1000_30/table$n.txt
  $O -q --threads 1 bench-lossless "$DATA" --limit 30 --steps 1000 --json bench/session15/speed_k1000_30/session14_run$n.json > /dev/null
done
python3 bench/session14/speed_summary.py bench/session15/speed_k50_30/*.json bench/session15/speed_k1000_30/*.json > bench/session15/speed_summary.txt
# (the speed block was run again with SPEED_ONLY=1 after the last code change, which kept the bytes)
[ "${SPEED_ONLY:-0}" = 1 ] && exit 0
# the network alone, one thread (batch 16) and two (batch 64), this build and session 14's
# bench_infer (OI, built at ceb241b) alternately, three times each
OI=${OI:-/tmp/bench_infer_base}
for n in 1 2 3; do
  for th in 1 2; do
    bt=$([ $th = 1 ] && echo 16 || echo 64)
    echo "threads $th batch $bt session15 $(RAYON_NUM_THREADS=$th ./target/release/examples/bench_infer --model models/default --batch $bt --secs 3 --backends fast)"
    echo "threads $th batch $bt session14 $(RAYON_NUM_THREADS=$th $OI --model models/default --batch $bt --secs 3 --backends fast)"
  done
done > bench/session15/network_speed.txt
# the photo at the default K (two threads): two encodes; four decodes, each followed by session
# 14's decoder on its own stream
for n in 1 2; do
  /usr/bin/time -v $B -q --threads 2 encode runs/photos/flower_768x512.png -o runs/s15/f50.ddpc > bench/photo768_session15/encode_$n.txt 2> bench/photo768_session15/encode_time_$n.txt
done
for n in 1 2 3 4; do
  /usr/bin/time -v $B -q --threads 2 decode runs/s15/f50.ddpc -o runs/s15/f50_$n.png > bench/photo768_session15/decode_$n.txt 2> bench/photo768_session15/decode_time_$n.txt
  /usr/bin/time -v $O -q --threads 2 decode runs/s14/f50.ddpc -o runs/s15/f50_s14.png > /dev/null 2> bench/photo768_session15/session14_decoder_time_$n.txt
done
$B info runs/s15/f50.ddpc > bench/photo768_session15/info.txt
for n in 1 2 3 4; do
  python3 -c "from PIL import Image; import sys; a=Image.open(sys.argv[1]).convert('RGB'); b=Image.open(sys.argv[2]).convert('RGB'); print(sys.argv[1], 'bit-exact' if a.tobytes()==b.tobytes() else 'DIFFERENT')" runs/s15/f50_$n.png runs/photos/flower_768x512.png
done > bench/photo768_session15/pixels.txt
# the odd-sized crops and the one-image check
cp runs/photos/*_crop_*.png runs/crops/
$B -q --threads 1 bench-lossless runs/crops --json bench/photo_crops_session15/lossless.json > bench/photo_crops_session15/table.txt
{ echo '$ ddpm-codec encode examples/images/cifar_test_0.png -o c0.ddpc'; $B --threads 1 encode examples/images/cifar_test_0.png -o runs/s15/c0.ddpc 2>&1;
  echo '$ ddpm-codec info c0.ddpc'; $B info runs/s15/c0.ddpc;
  echo '$ ddpm-codec decode c0.ddpc -o c0.png'; $B --threads 2 decode runs/s15/c0.ddpc -o runs/s15/c0d.png 2>&1;
  python3 -c "from PIL import Image; import sys; print('pixels bit-exact' if Image.open(sys.argv[1]).convert('RGB').tobytes()==Image.open(sys.argv[2]).convert('RGB').tobytes() else 'DIFFERENT')" runs/s15/c0d.png examples/images/cifar_test_0.png; } > bench/session15/cifar_test_0.txt

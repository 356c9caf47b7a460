#!/usr/bin/env bash
# Session 11's measurements (format 7: the long-chain preset, D per tile). Run from the
# repository root after `cargo build --release --bins --examples` and
# `python3 bench/photos/make_crops.py ../shared/data/photos runs/photos`; DATA is the CIFAR-10
# folder (test split).
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10}
B=./target/release/ddpm-codec
S=./target/release/examples/rcc_sweep
mkdir -p bench/rcc/session11 bench/lossless_500_k1000_session11 bench/photo768_k1000_session11 bench/rd30_k1000_session11 bench/photo_crops_k1000_session11 runs/s11
# format 6's chunk sweep at K = 1000 and K = 100 (run at cd37faf, D = 24 explicit)
#   $S "$DATA" 20 1000 learned "12:3:17:0.25:1.2:1:24,14:2:17:0.25:1.3:1:24,13:3:17:0.25:1.25:1:24,12:3:17:0.25:1.3:1:24,12:3:17:0.25:1.4:1:24,14:3:17:0.25:1.2:1:24,16:1:17:0.25:1.5:1:24,15:2:17:0.25:1.4:1:24" > bench/rcc/session11/chunks_20img_k1000_format6.csv
#   $S "$DATA" 20 100 learned "12:3:17:0.25:1.2:1:24,14:2:17:0.25:1.3:1:24" > bench/rcc/session11/chunks_20img_k100_format6.csv
# format 7's default at K = 1000 (first 20) and the unchanged K = 50 default
$S "$DATA" 20 1000 learned "14:2:17" > bench/rcc/session11/default_20img_k1000.csv
$S "$DATA" 20 50 learned "12:3:17" > bench/rcc/session11/default_20img_k50.csv
# K = 1000 lossless on the first 500, classical codecs in the same run, bit-exact round trips
$B -q --threads 1 bench-lossless "$DATA" --limit 500 --steps 1000 --json bench/lossless_500_k1000_session11/lossless.json > bench/lossless_500_k1000_session11/table.txt 2> bench/lossless_500_k1000_session11/err.txt
# the 768x512 photo at K = 1000, one thread (beside the 500-image run)
/usr/bin/time -v $B -q --threads 1 encode runs/photos/flower_768x512.png -o runs/s11/f1000.ddpc --steps 1000 > bench/photo768_k1000_session11/encode.txt 2> bench/photo768_k1000_session11/encode_time.txt
$B info runs/s11/f1000.ddpc > bench/photo768_k1000_session11/info.txt
/usr/bin/time -v $B -q --threads 1 decode runs/s11/f1000.ddpc -o runs/s11/f1000.png > bench/photo768_k1000_session11/decode.txt 2> bench/photo768_k1000_session11/decode_time.txt
python3 -c "from PIL import Image; import sys; a=Image.open(sys.argv[1]).convert('RGB'); b=Image.open(sys.argv[2]).convert('RGB'); print('bit-exact' if a.tobytes()==b.tobytes() else 'DIFFERENT')" runs/s11/f1000.png runs/photos/flower_768x512.png > bench/photo768_k1000_session11/pixels.txt
# RD at K = 1000 on the first 30; the odd-sized crops at K = 1000
$B -q --threads 1 rd "$DATA" --limit 30 --steps 1000 --classical --csv bench/rd30_k1000_session11/rd.csv --json bench/rd30_k1000_session11/rd.json --plot bench/rd30_k1000_session11/rd.png > bench/rd30_k1000_session11/summary.txt
mkdir -p runs/crops && cp runs/photos/*_crop_*.png runs/crops/
$B -q --threads 1 bench-lossless runs/crops --steps 1000 --json bench/photo_crops_k1000_session11/lossless.json > bench/photo_crops_k1000_session11/table.txt
# RD at K = 1000 on the first 500, and the channel simulation of both defaults on the first 500
$B -q --threads 1 rd "$DATA" --limit 500 --steps 1000 --classical --csv bench/rd500_k1000_session11/rd.csv --json bench/rd500_k1000_session11/rd.json --plot bench/rd500_k1000_session11/rd.png > bench/rd500_k1000_session11/summary.txt
RAYON_NUM_THREADS=1 $S "$DATA" 500 50 learned "12:3:17" > bench/rcc/session11/default_500img_k50.csv
RAYON_NUM_THREADS=1 $S "$DATA" 500 1000 learned "14:2:17" > bench/rcc/session11/default_500img_k1000.csv
# (the fuzz run: bench/fuzz_session11/README.md; the idle K = 1000 speed check:
#  bench/session11/speed_k1000_30/, commands in bench/README.md)

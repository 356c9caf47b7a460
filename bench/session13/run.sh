#!/usr/bin/env bash
# Session 13's measurements (the int8 scorer, the block search, format 8: 16-bit chunks at every
# K). Run from the repository root after `cargo build --release --bins --examples` and
# `python3 bench/photos/make_crops.py ../shared/data/photos runs/photos`; DATA is the CIFAR-10
# folder (test split). Two one-thread lanes (A and B) ran side by side; the speed checks ran
# alone on the idle machine.
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10}
B=./target/release/ddpm-codec
S=./target/release/examples/rcc_sweep
mkdir -p bench/rcc/session13 bench/lossless_500_session13 bench/lossless_500_k1000_session13 bench/rd500_session13 bench/rd500_k1000_session13 runs/s13
# --- tuning (bench/rcc/README.md § Session 13) ---
# the early-stopped search (a patch, not landed): early_stop_experiment.patch on efefedf
#   $S "$DATA" 20 50 learned "12:3:17:0.25:1.2:1:0:x,12:3:17:0.25:1.2:1:0:0,…" > bench/rcc/session13/early_stop_20img_k50.csv
# chunk sizes with the int8 scorer (the final code), K = 50 and K = 1000, and the deferral target
RAYON_NUM_THREADS=1 $S "$DATA" 20 50 learned "12:3:17:0.25:1.2:1:0:f32,12:3:17:0.25:1.2:1:0:int8,13:3:17:0.25:1.25:1:0:int8,14:2:17:0.25:1.2:1:0:int8,14:2:17:0.25:1.3:1:0:int8,14:3:17:0.25:1.3:1:0:int8,15:2:17:0.25:1.4:1:0:int8,16:1:17:0.25:1.5:1:0:int8,16:2:17:0.25:1.3:1:0:int8,16:2:17:0.25:1.4:1:0:int8,16:2:17:0.25:1.5:1:0:int8,16:2:17:0.25:1.4:1:0:f32,16:2:18:0.25:1.4:1:0:int8,16:3:18:0.25:1.4:1:0:int8,18:2:19:0.25:1.5:1:0:int8" > bench/rcc/session13/chunks_20img_k50.csv
RAYON_NUM_THREADS=1 $S "$DATA" 20 1000 learned "14:2:17:0.25:1.3:1:24:int8,16:2:17:0.25:1.4:1:24:int8,16:2:17:0.25:1.5:1:24:int8,14:2:17:0.25:1.3:1:24:f32" > bench/rcc/session13/chunks_20img_k1000_int8.csv
RAYON_NUM_THREADS=1 $S "$DATA" 20 1000 learned "16:2:17:0.25:1.4:1:32,16:2:17:0.25:1.4:1:16" > bench/rcc/session13/defer_20img_k1000.csv
# the scorers side by side on the idle machine (the final code)
RAYON_NUM_THREADS=1 $S "$DATA" 20 50 learned "12:3:17:0.25:1.2:1:0:f32,12:3:17:0.25:1.2:1:0:int8,16:2:17:0.25:1.4:1:0:f32,16:2:17:0.25:1.4:1:0:int8" > bench/rcc/session13/scorer_ab_20img_k50.csv
# --- lane A: K = 50 ---
$B -q --threads 1 bench-lossless "$DATA" --limit 500 --json bench/lossless_500_session13/lossless.json > bench/lossless_500_session13/table.txt 2> bench/lossless_500_session13/err.txt
$B -q --threads 1 rd "$DATA" --limit 500 --classical --csv bench/rd500_session13/rd.csv --json bench/rd500_session13/rd.json --plot bench/rd500_session13/rd.png > bench/rd500_session13/summary.txt
RAYON_NUM_THREADS=1 $S "$DATA" 500 50 learned "16:2:17" > bench/rcc/session13/default_500img_k50.csv
# --- lane B: K = 1000 ---
$B -q --threads 1 bench-lossless "$DATA" --limit 500 --steps 1000 --json bench/lossless_500_k1000_session13/lossless.json > bench/lossless_500_k1000_session13/table.txt 2> bench/lossless_500_k1000_session13/err.txt
$B -q --threads 1 rd "$DATA" --limit 500 --steps 1000 --classical --csv bench/rd500_k1000_session13/rd.csv --json bench/rd500_k1000_session13/rd.json --plot bench/rd500_k1000_session13/rd.png > bench/rd500_k1000_session13/summary.txt
RAYON_NUM_THREADS=1 $S "$DATA" 500 1000 learned "16:2:17" > bench/rcc/session13/default_500img_k1000.csv
# --- idle machine: speed (this binary and session 12's, built from efefedf in a worktree as $O) ---
O=${O:-/tmp/base/target/release/ddpm-codec}
mkdir -p bench/session13/speed_k50_30 bench/session13/speed_k1000_30 bench/photo768_session13 bench/photo_crops_session13 runs/crops
$B -q --threads 1 bench-lossless "$DATA" --limit 30 --json bench/session13/speed_k50_30/lossless.json > bench/session13/speed_k50_30/table.txt
$O -q --threads 1 bench-lossless "$DATA" --limit 30 --json bench/session13/speed_k50_30/session12_code_efefedf.json > /dev/null
$B -q --threads 1 bench-lossless "$DATA" --limit 30 --steps 1000 --json bench/session13/speed_k1000_30/lossless.json > bench/session13/speed_k1000_30/table.txt
$O -q --threads 1 bench-lossless "$DATA" --limit 30 --steps 1000 --json bench/session13/speed_k1000_30/session12_code_efefedf.json > /dev/null
$B -q --threads 1 bench-lossless "$DATA" --limit 30 --json bench/session13/speed_k50_30/repeat.json > /dev/null
$O -q --threads 1 bench-lossless "$DATA" --limit 30 --json bench/session13/speed_k50_30/repeat_session12_code_efefedf.json > /dev/null
# the photo at the default K (two threads), bit-exact check; session 12's binary the same way (runs/ only)
/usr/bin/time -v $B -q --threads 2 encode runs/photos/flower_768x512.png -o runs/s13/f50.ddpc > bench/photo768_session13/encode.txt 2> bench/photo768_session13/encode_time.txt
$B info runs/s13/f50.ddpc > bench/photo768_session13/info.txt
/usr/bin/time -v $B -q --threads 2 decode runs/s13/f50.ddpc -o runs/s13/f50.png > bench/photo768_session13/decode.txt 2> bench/photo768_session13/decode_time.txt
python3 -c "from PIL import Image; import sys; a=Image.open(sys.argv[1]).convert('RGB'); b=Image.open(sys.argv[2]).convert('RGB'); print('bit-exact' if a.tobytes()==b.tobytes() else 'DIFFERENT')" runs/s13/f50.png runs/photos/flower_768x512.png > bench/photo768_session13/pixels.txt
# the odd-sized crops and the one-image check
cp runs/photos/*_crop_*.png runs/crops/
$B -q --threads 1 bench-lossless runs/crops --json bench/photo_crops_session13/lossless.json > bench/photo_crops_session13/table.txt

#!/usr/bin/env bash
# Session 14's measurements (format 9: the refitted index exponent; the int8 scorer on AMX; the
# decoder's serial work across the threads). Run from the repository root after
# `cargo build --release --bins --examples` and
# `python3 bench/photos/make_crops.py ../shared/data/photos runs/photos`; DATA is the CIFAR-10
# folder (test split). Lanes A and B ran side by side (one thread each); the speed checks ran
# alone on the otherwise idle machine. O: session 13's binary (built from eefdf95 in a worktree).
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10}
B=./target/release/ddpm-codec
S=./target/release/examples/rcc_sweep
O=${O:-/tmp/base13/target/release/ddpm-codec}
mkdir -p bench/rcc/session14 bench/lossless_500_session14 bench/lossless_500_k1000_session14 bench/rd500_session14 bench/rd500_k1000_session14 runs/s14
# --- the index exponent (bench/rcc/README.md § Session 14): indices dumped with
#     bench/rcc/session14/dump_indices.patch applied (DUMP_IDX=1, stderr), then
#     python3 bench/rcc/session14/fit_index_exponent.py … > bench/rcc/session14/fit_output.txt
# first 20 at K = 50, format 9 (compare session 13's chunks_20img_k50.csv row 16:2:17:…:int8)
RAYON_NUM_THREADS=1 $S "$DATA" 20 50 learned "16:2:17" > bench/rcc/session14/default_20img_k50.csv
# --- lane A: K = 50 ---
lane_a() {
  $B -q --threads 1 bench-lossless "$DATA" --limit 500 --json bench/lossless_500_session14/lossless.json > bench/lossless_500_session14/table.txt 2> bench/lossless_500_session14/err.txt
  $B -q --threads 1 rd "$DATA" --limit 500 --classical --csv bench/rd500_session14/rd.csv --json bench/rd500_session14/rd.json --plot bench/rd500_session14/rd.png > bench/rd500_session14/summary.txt
  RAYON_NUM_THREADS=1 $S "$DATA" 500 50 learned "16:2:17" > bench/rcc/session14/default_500img_k50.csv
}
# --- lane B: K = 1000 ---
lane_b() {
  $B -q --threads 1 bench-lossless "$DATA" --limit 500 --steps 1000 --json bench/lossless_500_k1000_session14/lossless.json > bench/lossless_500_k1000_session14/table.txt 2> bench/lossless_500_k1000_session14/err.txt
  $B -q --threads 1 rd "$DATA" --limit 500 --steps 1000 --classical --csv bench/rd500_k1000_session14/rd.csv --json bench/rd500_k1000_session14/rd.json --plot bench/rd500_k1000_session14/rd.png > bench/rd500_k1000_session14/summary.txt
  RAYON_NUM_THREADS=1 $S "$DATA" 500 1000 learned "16:2:17" > bench/rcc/session14/default_500img_k1000.csv
}
if [ "${SKIP_LANES:-0}" != 1 ]; then
  lane_a & lane_b & wait
fi
# --- idle machine: speed, AMX on and off alternately (the same bytes) ---
mkdir -p bench/session14/speed_k50_30 bench/session14/speed_k1000_30 bench/photo768_session14 bench/photo_crops_session14 runs/crops
$B -q --threads 1 bench-lossless "$DATA" --limit 30 --json bench/session14/speed_k50_30/lossless.json > bench/session14/speed_k50_30/table.txt
DDPM_CODEC_AMX=0 $B -q --threads 1 bench-lossless "$DATA" --limit 30 --json bench/session14/speed_k50_30/amx_off.json > /dev/null
$B -q --threads 1 bench-lossless "$DATA" --limit 30 --json bench/session14/speed_k50_30/repeat.json > /dev/null
DDPM_CODEC_AMX=0 $B -q --threads 1 bench-lossless "$DATA" --limit 30 --json bench/session14/speed_k50_30/repeat_amx_off.json > /dev/null
for n in 3 4; do  # two more pairs, run after the photo block below
  $B -q --threads 1 bench-lossless "$DATA" --limit 30 --json bench/session14/speed_k50_30/repeat$n.json > /dev/null
  DDPM_CODEC_AMX=0 $B -q --threads 1 bench-lossless "$DATA" --limit 30 --json bench/session14/speed_k50_30/repeat${n}_amx_off.json > /dev/null
done
$B -q --threads 1 bench-lossless "$DATA" --limit 30 --steps 1000 --json bench/session14/speed_k1000_30/lossless.json > bench/session14/speed_k1000_30/table.txt
DDPM_CODEC_AMX=0 $B -q --threads 1 bench-lossless "$DATA" --limit 30 --steps 1000 --json bench/session14/speed_k1000_30/amx_off.json > /dev/null
python3 bench/session14/speed_summary.py bench/session14/speed_k50_30/*.json bench/session14/speed_k1000_30/*.json > bench/session14/speed_summary.txt
# the photo at the default K (two threads), twice, bit-exact check; session 13's decoder on its
# own stream (runs/s13/f50.ddpc, format 8) between the two decodes
for n in 1 2; do
  /usr/bin/time -v $B -q --threads 2 encode runs/photos/flower_768x512.png -o runs/s14/f50.ddpc > bench/photo768_session14/encode_$n.txt 2> bench/photo768_session14/encode_time_$n.txt
  /usr/bin/time -v $B -q --threads 2 decode runs/s14/f50.ddpc -o runs/s14/f50.png > bench/photo768_session14/decode_$n.txt 2> bench/photo768_session14/decode_time_$n.txt
  if [ $n = 1 ]; then
    /usr/bin/time -v $O -q --threads 2 decode runs/s13/f50.ddpc -o runs/s14/f50_s13.png > /dev/null 2> bench/photo768_session14/session13_decoder_time.txt
  fi
done
# (two more decodes at the end of the session, after the fresh-clone CI run)
for n in 3 4; do
  /usr/bin/time -v $B -q --threads 2 decode runs/s14/f50.ddpc -o runs/s14/f50_$n.png > bench/photo768_session14/decode_$n.txt 2> bench/photo768_session14/decode_time_$n.txt
done
$B info runs/s14/f50.ddpc > bench/photo768_session14/info.txt
python3 -c "from PIL import Image; import sys; a=Image.open(sys.argv[1]).convert('RGB'); b=Image.open(sys.argv[2]).convert('RGB'); print('bit-exact' if a.tobytes()==b.tobytes() else 'DIFFERENT')" runs/s14/f50.png runs/photos/flower_768x512.png > bench/photo768_session14/pixels.txt
# the odd-sized crops and the one-image check
cp runs/photos/*_crop_*.png runs/crops/
$B -q --threads 1 bench-lossless runs/crops --json bench/photo_crops_session14/lossless.json > bench/photo_crops_session14/table.txt
{ echo '$ ddpm-codec encode examples/images/cifar_test_0.png -o c0.ddpc'; $B --threads 1 encode examples/images/cifar_test_0.png -o runs/s14/c0.ddpc 2>&1;
  echo '$ ddpm-codec info c0.ddpc'; $B info runs/s14/c0.ddpc;
  echo '$ ddpm-codec decode c0.ddpc -o c0.png'; $B decode runs/s14/c0.ddpc -o runs/s14/c0d.png 2>&1;
  cmp runs/s14/c0d.png examples/images/cifar_test_0.png > /dev/null 2>&1 || python3 -c "from PIL import Image; import sys; print('pixels bit-exact' if Image.open(sys.argv[1]).convert('RGB').tobytes()==Image.open(sys.argv[2]).convert('RGB').tobytes() else 'DIFFERENT')" runs/s14/c0d.png examples/images/cifar_test_0.png; } > bench/session14/cifar_test_0.txt

#!/usr/bin/env bash
# Session 10's measurements (format 6: deferred steps). Run from the repository root after
# `cargo build --release --bins --examples`; DATA is the CIFAR-10 folder (test split).
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10}
B=./target/release/ddpm-codec
S=./target/release/examples/rcc_sweep
mkdir -p bench/lossless_500_k1000_session10 bench/rcc/session10
# K = 1000 lossless on the first 500, classical codecs in the same run, bit-exact round trips
$B -q --threads 1 bench-lossless "$DATA" --limit 500 --steps 1000 --json bench/lossless_500_k1000_session10/lossless.json > bench/lossless_500_k1000_session10/table.txt
# format 6 at the default D of each K (first 20, learned variance; a 7th field would set D)
for K in 50 1000; do
  $S "$DATA" 20 $K learned "12:3:17:0.25:1.2:1" > bench/rcc/session10/default_20img_k${K}.csv
done
# (plain_20img_k{100,200,400}.csv are format 5's, run at b11973c with the same command; the
#  proto_*.csv come from bench/rcc/session10/prototype_defer_plan.patch, rcc/README.md)
# RD at K = 1000 on the first 30, and the K = 50 speed check (idle)
$B -q --threads 1 rd "$DATA" --limit 30 --steps 1000 --classical --csv bench/rd30_k1000_session10/rd.csv --json bench/rd30_k1000_session10/rd.json --plot bench/rd30_k1000_session10/rd.png > bench/rd30_k1000_session10/summary.txt
$B -q --threads 1 bench-lossless "$DATA" --limit 30 --json bench/session10/speed_k50_30/lossless.json > bench/session10/speed_k50_30/table.txt
# K = 100 with the deferral on the first 100 (D = 24 is the default above K = 50)
$S "$DATA" 100 100 learned "12:3:17:0.25:1.2:1:24,12:3:17:0.25:1.2:1:32" > bench/rcc/session10/defer_100img_k100_d24_d32.csv
$S "$DATA" 100 100 learned "12:3:17:0.25:1.2:1:16" > bench/rcc/session10/defer_100img_k100_d16.csv

#!/bin/bash
B=${B:-target/release/ddpm-codec}
D=${D:-../shared/data/cifar10}
for v in small large; do for k in 20 35 50 100; do
  s=$(date +%s.%N)
  $B -q bench-lossless $D --limit 16 --steps $k --variance $v --no-verify --json bench/defaults/ksweep_${k}_$v.json > bench/defaults/ksweep_${k}_$v.txt 2>&1
  e=$(date +%s.%N)
  echo "K=$k var=$v secs=$(echo "$e - $s" | bc) $(grep -E 'ddpm-codec ' bench/defaults/ksweep_${k}_$v.txt | head -1) ideal $(grep ideal bench/defaults/ksweep_${k}_$v.txt | awk '{print $2}')"
done; done

#!/bin/bash
# lane: K N settings...
K=$1; N=$2; shift 2
for s in "$@"; do
  tag=$(echo "$s" | tr ':' '_')
  DDPM_DUMP_IDX=1 RAYON_NUM_THREADS=1 ./target/release/examples/rcc_sweep ../shared/data/cifar10 $N $K learned "$s" > runs/s9idx/k${K}_$tag.csv 2> runs/s9idx/k${K}_$tag.idx
  gzip -f runs/s9idx/k${K}_$tag.idx
done

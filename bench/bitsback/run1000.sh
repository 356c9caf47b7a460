#!/bin/bash
# The 1000-image measurement (binary of commit 27df9f8 + default latent_bits 2 given explicitly).
B=/tmp/bb/ddpm-codec-v4
D=/work/wt-bb/bench/bitsback
cd /tmp/bb/k
echo "start $(date -u)"
/usr/bin/time -f "pack wall_s %e" $B -q pack /work/shared/data/cifar10 --limit 1000 --latent-bits 2 -o /tmp/bb/k/cifar1000.ddpa --report $D/pack_1000.json
/usr/bin/time -f "unpack wall_s %e" $B -q unpack /tmp/bb/k/cifar1000.ddpa -o /tmp/bb/k/out1000 --report $D/unpack_1000.json
echo "unpack rc $?"
/usr/bin/time -f "nll wall_s %e" $B -q nll --data /work/shared/data/cifar10 --limit 1000 --steps 50 --spacing dense --variance large --json $D/nll_1000.json
echo "end $(date -u)"

#!/usr/bin/env bash
# U-Net inference speed: Rust (candle = before, FastUNet = fast path) vs PyTorch fp32, on the
# same weights, batch sizes and thread counts, measured alternately in one run; writes
# bench/infer.md. Weights: $MODEL (dir with model.safetensors + config.json), else an f32
# export of runs/small/ckpt.pt, else random weights of train/configs/small.json.
#
#   bench/run_infer_bench.sh                 # ~3 minutes
#   ROUNDS=5 SECS=2 bench/run_infer_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
MODEL=${MODEL:-}
DESC="weights from \`$MODEL\`"
if [ -z "$MODEL" ]; then
  MODEL=$(mktemp -d /tmp/ddpm_bench_model.XXXXXX)
  if [ -f runs/small/ckpt.pt ]; then
    python3 train/export.py --run runs/small --out "$MODEL" --dtype f32
    DESC="EMA weights of runs/small/ckpt.pt ($(tr -d '\n ' < "$MODEL/train_info.json"))"
  else
    python3 train/bench_infer.py --make-random train/configs/small.json --out "$MODEL"
    DESC="random-init weights of train/configs/small.json"
  fi
fi
cargo build --release --example bench_infer
python3 train/bench_infer.py --model "$MODEL" --rust-bin target/release/examples/bench_infer \
  --batches "${BATCHES:-1,16,64}" --threads "${THREADS:-1,2}" \
  --rounds "${ROUNDS:-3}" --secs "${SECS:-1.5}" --md bench/infer.md --desc "$DESC"

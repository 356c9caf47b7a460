#!/usr/bin/env bash
# Codec wall/CPU seconds, fast path vs candle ("before"), at the default steps.
# Usage: bench/codec_timing.sh IMAGE... (writes lines to stdout; needs GNU time)
set -euo pipefail
B=${B:-target/release/ddpm-codec}
for img in "$@"; do
  for net in fast candle; do
    f=/tmp/timing_${net}_$(basename "$img" .png)
    /usr/bin/time -f "$(basename "$img") $net encode wall_s %e cpu_s %U+%S" "$B" -q --network $net encode "$img" -o $f.ddpc
    /usr/bin/time -f "$(basename "$img") $net decode wall_s %e cpu_s %U+%S" "$B" -q --network $net decode $f.ddpc -o $f.png
    python3 -c "
import sys; from PIL import Image; import numpy as np
a=np.asarray(Image.open(sys.argv[1]).convert('RGB')); b=np.asarray(Image.open(sys.argv[2]).convert('RGB'))
print('  bit-exact' if a.shape==b.shape and (a==b).all() else '  MISMATCH')" "$img" $f.png
    ls -l $f.ddpc | awk '{print "  bytes", $5}'
  done
done

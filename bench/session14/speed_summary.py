"""Per-image encode and decode seconds of bench-lossless JSON files (medians, sums, ratios)."""
import json, statistics as st, sys
for f in sys.argv[1:]:
    p = json.load(open(f))["per_image"]
    e = [x["encode_seconds"] for x in p]
    d = [x["decode_seconds"] for x in p]
    print(f"{f}: {len(p)} images, encode median {st.median(e):.3f} s (sum {sum(e):.2f}), decode median {st.median(d):.3f} s (sum {sum(d):.2f}); encode/decode {st.median(e) / st.median(d):.2f}x by medians, {sum(e) / sum(d):.2f}x by sums")

#!/usr/bin/env python3
"""Writes the test vectors of format/vectors/ straight from format/SPEC.md (version 10).

Independent of the Rust code on purpose: if the reader and this script disagree, one of them
departs from the spec. Standard library only. Run from any directory:

    python3 format/vectors/make_vectors.py
"""
import hashlib
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = 10


def crc(b: bytes) -> int:
    return zlib.crc32(b) & 0xFFFFFFFF  # CRC-32/ISO-HDLC


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v == 0:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def stream(*, lossless, channels, kind, variance, width, height, k, model_id, params=None,
           taus=None, words, check=None):
    """SPEC § 1. channels: 0 grey, 1 RGB, 2 RGBA; kind: 0 explicit, 1 even, 2 quadratic;
    variance 0..3 (0 small, 1 large, 2 optimal, 3 learned); params: None (defaults) or a dict of the § 3 group."""
    flags = lossless | channels << 1 | (8 if params else 0) | kind << 4 | variance << 6
    h = b"DDPC" + bytes([VERSION, flags]) + varint(width) + varint(height) + varint(k) + bytes(model_id)
    if params:
        h += varint(params["t_max"]) + varint(params["batch_tiles"]) + varint(params["seed"])
        h += varint(params["chunk_bits_q8"])
        h += bytes([params["margin_bits"], params["min_log2"], params["max_log2"]])
        h += varint(params["skip_below_q8"])
        h += varint(params["defer_q8"])
    if kind == 0:
        prev = 0
        for t in taus:
            h += varint(t - prev)
            prev = t
    body = b"".join(struct.pack("<I", w) for w in words)
    if check is None:  # lossy: CRC of the body
        check = crc(body)
    h += varint(len(words)) + struct.pack("<I", check)
    h += struct.pack("<I", crc(h))
    return h, body


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    print(f"| `{name}` | {hashlib.sha256(data).hexdigest()} | {len(data)} |")


PARAMS = dict(t_max=1000, batch_tiles=16, seed=0x0123456789ABCDEF, chunk_bits_q8=2048,
              margin_bits=6, min_log2=8, max_log2=16, skip_below_q8=64,
              defer_q8=6144)
WORDS = [0xDEADBEEF, 0x00000001, 0x12345678, 0xCAFEBABE, 0x00000000]
IMAGE_CRC = crc(bytes(range(18)))  # a 3 x 2 RGB image with samples 0..17

h, body = stream(lossless=1, channels=1, kind=0, variance=0, width=3, height=2, k=3,
                 model_id=[0, 1, 2, 3], params=PARAMS, taus=[10, 500, 1000], words=WORDS,
                 check=IMAGE_CRC)
valid = h + body
print(f"valid.ddpc header {len(h)} bytes")
write("valid.ddpc", valid)
write("truncated.ddpc", valid[:-6])  # 3 whole words and 2 bytes of the fourth
c = bytearray(valid)
c[6] ^= 0x01  # width 3 -> 2
write("corrupt_header.ddpc", bytes(c))

h, body = stream(lossless=0, channels=1, kind=0, variance=0, width=3, height=2, k=3,
                 model_id=[0, 1, 2, 3], params=PARAMS, taus=[10, 500, 1000], words=WORDS)
lossy = h + body
write("valid_lossy.ddpc", lossy)
c = bytearray(lossy)
c[len(h) + 4] ^= 0x80  # body word 1, low byte
write("corrupt_body.ddpc", bytes(c))

words = [(0x9E3779B9 * n) & 0xFFFFFFFF for n in range(1, 9)]
h, body = stream(lossless=1, channels=1, kind=2, variance=2, width=32, height=32, k=50,
                 model_id=[0xAB, 0xCD, 0xEF, 0x01], words=words, check=0x12345678)
print(f"valid_default.ddpc header {len(h)} bytes")
write("valid_default.ddpc", h + body)

# complete version-9, -8, -7, -6, -5, -4 and -3 files (the container of version 10 with version byte 9, 8, 7, 6,
# 5, 4 or 3; at K = 50 with default parameters their headers are the same bytes): refused by
# version
old = VERSION
for VERSION in (9, 8, 7, 6, 5, 4, 3):
    h, body = stream(lossless=1, channels=1, kind=2, variance=2, width=32, height=32, k=50,
                     model_id=[0xAB, 0xCD, 0xEF, 0x01], words=words, check=0x12345678)
    write(f"version{VERSION}.ddpc", h + body)
VERSION = old

# the first bytes of a version-2 file (magic, version 2, header_len 80)
write("version2.ddpc", b"DDPC" + bytes([2]) + struct.pack("<I", 80) + bytes(20))

#!/usr/bin/env python3
"""Writes the test vectors of format/vectors/ straight from format/SPEC.md.

Independent of the Rust code on purpose: if the reader and this script disagree, one of them
departs from the spec. Standard library only. Run from any directory:

    python3 format/vectors/make_vectors.py
"""
import hashlib
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def crc(b: bytes) -> int:
    return zlib.crc32(b) & 0xFFFFFFFF  # CRC-32/ISO-HDLC


def exp_golomb(values):
    bits = ""
    for v in values:
        x = v + 1
        n = x.bit_length()
        bits += "0" * (n - 1) + format(x, "b")
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))


# The image the lossless step would decode: 3 x 2 RGB, samples 0..17.
PIXELS = bytes(range(18))

TAUS = [10, 500, 1000]
WORDS = [0xDEADBEEF, 0x00000001, 0x12345678, 0xCAFEBABE, 0x00000000]
# packets (P = (K - 1) + 1 = 3): 1000 -> 500, 500 -> 10, lossless pixels given x_10
WORDS_NEEDED = [1, 3, 5]


def valid_stream() -> bytes:
    body = b"".join(struct.pack("<I", w) for w in WORDS)
    k = len(TAUS)
    fields = bytes(range(32))                          # model_sha256
    fields += struct.pack("<II", 3, 2)                 # width, height
    fields += struct.pack("<BB", 3, 0)                 # channels = RGB, colour_mode = RGB
    fields += struct.pack("<HHHH", 32, 16, 1000, k)    # tile_size, batch_tiles, t_max, K
    fields += struct.pack("<%dH" % k, *TAUS)           # taus
    fields += struct.pack("<B", 0)                     # variance = small
    fields += struct.pack("<H", 8 * 256)               # chunk_bits_q8 (B = 8 bits)
    fields += struct.pack("<BBB", 6, 8, 16)            # margin, min/max log2 candidates
    fields += struct.pack("<H", 64)                    # skip_below_q8 (0.25 bits)
    fields += struct.pack("<Q", 0x0123456789ABCDEF)    # seed
    fields += struct.pack("<B", 1)                     # flags: lossless
    fields += struct.pack("<III", len(WORDS), crc(body), crc(PIXELS))
    assert len(fields) == 79 + 2 * k
    head = b"DDPC" + bytes([1]) + struct.pack("<I", len(fields)) + fields
    head += struct.pack("<I", crc(head))
    deltas = [WORDS_NEEDED[0]] + [b - a for a, b in zip(WORDS_NEEDED, WORDS_NEEDED[1:])]
    table = exp_golomb(deltas)
    tab = struct.pack("<I", len(table)) + table
    tab += struct.pack("<I", crc(tab))
    return head + tab + body


def main():
    valid = valid_stream()
    body_at = len(valid) - 4 * len(WORDS)
    files = {
        "valid.ddpc": valid,
        # Cut after 2 whole words and 2 bytes of the third.
        "truncated.ddpc": valid[: body_at + 2 * 4 + 2],
        # Bit 0 of the width's first byte flipped (width 3 -> 2): header CRC mismatch.
        "corrupt_header.ddpc": bytearray(valid),
        # Bit 7 of body word 1's first byte flipped: body CRC mismatch.
        "corrupt_body.ddpc": bytearray(valid),
    }
    files["corrupt_header.ddpc"][9 + 32] ^= 0x01
    files["corrupt_body.ddpc"][body_at + 4] ^= 0x80
    for name, data in files.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(bytes(data))
        print(f"{hashlib.sha256(bytes(data)).hexdigest()}  {name}  ({len(data)} bytes)")
    print(f"body offset {body_at}, body crc 0x{crc(valid[body_at:]):08x}, "
          f"pixel crc 0x{crc(PIXELS):08x}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the test vectors of format/vectors/ straight from format/SPEC.md (version 2).

Independent of the Rust code on purpose: if the reader and this script disagree, one of them
departs from the spec. Standard library only. Run from any directory:

    python3 format/vectors/make_vectors.py
"""
import hashlib
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = 2


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


# ---------------------------------------------------------------- schedules (SPEC.md § 2)

def round_half_even(n: int, d: int) -> int:
    q, r = divmod(n, d)
    if 2 * r > d:
        return q + 1
    if 2 * r == d:
        return q + (q & 1)
    return q


def strictly_increasing(r, t):
    v = []
    prev = 0
    for x in r:                      # forward pass: v_i = max(r_i, v_{i-1} + 1), v_0 = 0
        prev = max(x, prev + 1)
        v.append(prev)
    v[-1] = t                        # backward pass: v_K = T, v_i = min(v_i, v_{i+1} - 1)
    for i in range(len(v) - 2, -1, -1):
        v[i] = min(v[i], v[i + 1] - 1)
    return v


def even_taus(t, k):
    assert 1 <= k <= t
    return strictly_increasing([round_half_even(i * t, k) for i in range(1, k + 1)], t)


def quadratic_taus(t, k):
    assert 1 <= k <= t
    return strictly_increasing([round_half_even(t * i * i, k * k) for i in range(1, k + 1)], t)


def schedule_kind(t, taus):
    """The canonical code: 1 (even), else 2 (quadratic), else 0 (explicit)."""
    k = len(taus)
    if 1 <= k <= t and taus == even_taus(t, k):
        return 1
    if 1 <= k <= t and taus == quadratic_taus(t, k):
        return 2
    return 0


# ---------------------------------------------------------------- streams

# The image the lossless step would decode: 3 x 2 RGB, samples 0..17.
PIXELS = bytes(range(18))

# valid.ddpc: explicit taus (schedule_kind 0).
T_MAX = 1000
TAUS = [10, 500, 1000]
WORDS = [0xDEADBEEF, 0x00000001, 0x12345678, 0xCAFEBABE, 0x00000000]
# packets (P = (K - 1) + 1 = 3): 1000 -> 500, 500 -> 10, lossless pixels given x_10
WORDS_NEEDED = [1, 3, 5]

# valid_quadratic.ddpc: K = 20 quadratic steps (schedule_kind 2), taus not stored.
Q_K = 20
Q_TAUS = quadratic_taus(T_MAX, Q_K)
Q_WORDS = [(0x9E3779B9 * (i + 1)) & 0xFFFFFFFF for i in range(8)]
# P = (20 - 1) + 1 = 20 packets; some steps skipped (no words), last entry = body_words.
Q_WORDS_NEEDED = [1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 8]


def stream(taus, words, words_needed, variance, seed) -> bytes:
    body = b"".join(struct.pack("<I", w) for w in words)
    k = len(taus)
    kind = schedule_kind(T_MAX, taus)
    fields = bytes(range(32))                          # model_sha256
    fields += struct.pack("<II", 3, 2)                 # width, height
    fields += struct.pack("<BB", 3, 0)                 # channels = RGB, colour_mode = RGB
    fields += struct.pack("<HHHH", 32, 16, T_MAX, k)   # tile_size, batch_tiles, t_max, K
    fields += struct.pack("<B", kind)                  # schedule_kind
    if kind == 0:
        fields += struct.pack("<%dH" % k, *taus)       # taus, only for schedule_kind 0
    fields += struct.pack("<B", variance)              # variance
    fields += struct.pack("<H", 8 * 256)               # chunk_bits_q8 (B = 8 bits)
    fields += struct.pack("<BBB", 6, 8, 16)            # margin, min/max log2 candidates
    fields += struct.pack("<H", 64)                    # skip_below_q8 (0.25 bits)
    fields += struct.pack("<Q", seed)                  # seed
    fields += struct.pack("<B", 1)                     # flags: lossless
    fields += struct.pack("<III", len(words), crc(body), crc(PIXELS))
    s = 2 * k if kind == 0 else 0
    assert len(fields) == 80 + s
    head = b"DDPC" + bytes([VERSION]) + struct.pack("<I", len(fields)) + fields
    head += struct.pack("<I", crc(head))
    assert len(words_needed) == (k - 1) + 1 and words_needed[-1] == len(words)
    deltas = [words_needed[0]] + [b - a for a, b in zip(words_needed, words_needed[1:])]
    table = exp_golomb(deltas)
    tab = struct.pack("<I", len(table)) + table
    tab += struct.pack("<I", crc(tab))
    print(f"schedule_kind {kind}, header_len {len(fields)}, table_len {len(table)} "
          f"({table.hex(' ').upper()}), body offset {len(head) + len(tab)}, "
          f"body crc 0x{crc(body):08X}")
    return head + tab + body


def main():
    assert even_taus(1000, 3) == [333, 667, 1000]
    assert quadratic_taus(1000, 3) == [111, 444, 1000]
    assert schedule_kind(T_MAX, TAUS) == 0
    assert schedule_kind(T_MAX, Q_TAUS) == 2
    valid = stream(TAUS, WORDS, WORDS_NEEDED, variance=0, seed=0x0123456789ABCDEF)
    quad = stream(Q_TAUS, Q_WORDS, Q_WORDS_NEEDED, variance=1, seed=0xFEDCBA9876543210)
    body_at = len(valid) - 4 * len(WORDS)
    files = {
        "valid.ddpc": valid,
        "valid_quadratic.ddpc": quad,
        # Cut after 2 whole words and 2 bytes of the third.
        "truncated.ddpc": valid[: body_at + 2 * 4 + 2],
        # Bit 0 of the width's first byte flipped (width 3 -> 2): header CRC mismatch.
        "corrupt_header.ddpc": bytearray(valid),
        # Bit 7 of body word 1's first byte flipped: body CRC mismatch.
        "corrupt_body.ddpc": bytearray(valid),
    }
    files["corrupt_header.ddpc"][9 + 32] ^= 0x01
    files["corrupt_body.ddpc"][body_at + 4] ^= 0x80
    print(f"corrupt_header: byte {9 + 32}; corrupt_body: byte {body_at + 4}")
    print(f"quadratic taus (T = {T_MAX}, K = {Q_K}): {Q_TAUS}")
    for name, data in files.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(bytes(data))
        print(f"{hashlib.sha256(bytes(data)).hexdigest()}  {name}  ({len(data)} bytes)")
    print(f"pixel crc 0x{crc(PIXELS):08X}")


if __name__ == "__main__":
    main()

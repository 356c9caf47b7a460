#!/usr/bin/env python3
"""Independent check of `ddpm-codec unpack` output against the CIFAR-10 test batch.

Decodes the PNGs with the standard library only (zlib + PNG filters; 8-bit RGB, non-interlaced,
as the image crate writes them) and compares every pixel with test_batch.bin.
Usage: verify_unpacked.py CIFAR_DIR OUT_DIR N
"""
import struct, sys, zlib

def read_png(path):
    b = open(path, 'rb').read()
    assert b[:8] == b'\x89PNG\r\n\x1a\n', path
    at, idat, w = 8, b'', None
    while at < len(b):
        n, = struct.unpack('>I', b[at:at + 4]); t = b[at + 4:at + 8]; d = b[at + 8:at + 8 + n]
        if t == b'IHDR':
            w, h, depth, ctype, _, _, inter = struct.unpack('>IIBBBBB', d)
            assert (depth, ctype, inter) == (8, 2, 0), (path, depth, ctype, inter)
        elif t == b'IDAT':
            idat += d
        at += 12 + n
    raw, bpp, stride = zlib.decompress(idat), 3, 3 * w
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            c = prev[i - bpp] if i >= bpp else 0
            up = prev[i]
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + up) & 255
            elif f == 3: line[i] = (line[i] + (a + up) // 2) & 255
            elif f == 4:
                p = a + up - c; pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
        out += line; prev = line
    return w, h, bytes(out)

cifar, outdir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(f'{cifar}/test_batch.bin', 'rb').read()
bad = 0
for i in range(n):
    rec = data[i * 3073 + 1:(i + 1) * 3073]
    rgb = bytes(rec[c * 1024 + p] for p in range(1024) for c in range(3))
    w, h, px = read_png(f'{outdir}/cifar10-test-{i:05d}.png')
    if (w, h) != (32, 32) or px != rgb:
        bad += 1
print(f'{n} images checked against test_batch.bin: {n - bad} identical, {bad} different')
sys.exit(1 if bad else 0)

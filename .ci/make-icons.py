#!/usr/bin/env python3
# Makes public/icon-*.png and apple-touch-icon.png (the web app manifest's
# icons) from the design of public/favicon.svg; standard library only.
#   python3 .ci/make-icons.py public
# Renders public/favicon.svg's design (an indigo rounded square, a white
# locker door with its knob) as PNG icons for the web app manifest.
import struct, zlib, sys

def render(n, maskable=False):
    s = n / 32.0
    # maskable icons keep the motif within the central 80% safe zone
    inset = 0.1 * n if maskable else 0.0
    k = (n - 2 * inset) / n
    def inside_round_rect(x, y, x0, y0, w, h, r):
        if x < x0 or y < y0 or x > x0 + w or y > y0 + h:
            return False
        cx = min(max(x, x0 + r), x0 + w - r)
        cy = min(max(y, y0 + r), y0 + h - r)
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    indigo = (0x4f, 0x46, 0xe5, 255)
    white = (255, 255, 255, 255)
    clear = (0, 0, 0, 0)
    rows = []
    for py in range(n):
        row = bytearray([0])
        for px in range(n):
            x, y = px + 0.5, py + 0.5
            if maskable:
                bg = indigo
            else:
                bg = indigo if inside_round_rect(x, y, 0, 0, n, n, 6 * s) else clear
            # motif coordinates in the 32-unit design
            u = ((x - inset) / k) / s
            v = ((y - inset) / k) / s
            c = bg
            outer = inside_round_rect(u, v, 8 - 1.25, 7 - 1.25, 16 + 2.5, 18 + 2.5, 3.25)
            inner = inside_round_rect(u, v, 8 + 1.25, 7 + 1.25, 16 - 2.5, 18 - 2.5, 0.75)
            if outer and not inner:
                c = white
            if (u - 20) ** 2 + (v - 16) ** 2 <= 1.8 ** 2:
                c = white
            row += bytes(c)
        rows.append(bytes(row))
    raw = b"".join(rows)
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", n, n, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))

out = sys.argv[1]
open(f"{out}/icon-192.png", "wb").write(render(192))
open(f"{out}/icon-512.png", "wb").write(render(512))
open(f"{out}/icon-maskable-512.png", "wb").write(render(512, maskable=True))
open(f"{out}/apple-touch-icon.png", "wb").write(render(180, maskable=True))

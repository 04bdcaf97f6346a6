"""A latency CDF chart as a PNG, drawn in pure Python (zlib + struct; no plotting library).

Its one job is `write_cdf_png(path, series, title)`: CDF polylines on a log-scale latency axis,
grid lines, axis labels in a built-in 3x5 pixel font, and a legend of colored swatches. Series are
(label, color, dashed, samples in ns). It must not measure anything.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

__all__ = ["write_cdf_png"]

Color = tuple[int, int, int]
Series = tuple[str, Color, bool, Sequence[int]]

W, H = 960, 620
LEGEND_ROWS = 3
LEFT, RIGHT, TOP, BOTTOM = 80, 930, 56, 480
GRID, AXIS, TEXT = (226, 226, 226), (60, 60, 60), (30, 30, 30)
SCALE = 2  # each font pixel is 2x2

# 3x5 glyphs, rows top to bottom (letters drawn as capitals).
_FONT = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    "a": "010101111101101",
    "b": "110101110101110",
    "c": "011100100100011",
    "d": "110101101101110",
    "e": "111100110100111",
    "f": "111100110100100",
    "g": "011100101101011",
    "h": "101101111101101",
    "i": "111010010010111",
    "j": "001001001101010",
    "k": "101101110101101",
    "l": "100100100100111",
    "m": "101111111101101",
    "n": "110101101101101",
    "o": "010101101101010",
    "p": "110101110100100",
    "q": "010101101110011",
    "r": "110101110101101",
    "s": "011100010001110",
    "t": "111010010010010",
    "u": "101101101101111",
    "v": "101101101101010",
    "w": "101101111111101",
    "x": "101101010101101",
    "y": "101101010010010",
    "z": "111001010100111",
    ".": "000000000000010",
    "%": "101001010100101",
    "(": "001010010010001",
    ")": "100010010010100",
    "-": "000000111000000",
    "/": "001001010100100",
    ":": "000010000010000",
    "=": "000111000111000",
    ",": "000000000010100",
    " ": "000000000000000",
}


class Canvas:
    def __init__(self, w: int, h: int) -> None:
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def dot(self, x: int, y: int, c: Color, size: int = 1) -> None:
        for dy in range(size):
            for dx in range(size):
                xx, yy = x + dx, y + dy
                if 0 <= xx < self.w and 0 <= yy < self.h:
                    i = (yy * self.w + xx) * 3
                    self.px[i : i + 3] = bytes(c)

    def rect(self, x0: int, y0: int, x1: int, y1: int, c: Color) -> None:
        for y in range(y0, y1):
            for x in range(x0, x1):
                self.dot(x, y, c)

    def line(
        self, x0: int, y0: int, x1: int, y1: int, c: Color, width: int = 1, dash: int = 0, phase: int = 0
    ) -> int:
        """Bresenham; `dash` > 0 draws `dash` pixels on, `dash` off, starting at `phase`.
        Returns the phase to continue a polyline with."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err, n = dx + dy, phase
        while True:
            if not dash or (n // dash) % 2 == 0:
                self.dot(x0 - width // 2, y0 - width // 2, c, width)
            n += 1
            if x0 == x1 and y0 == y1:
                return n
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, s: str, c: Color = TEXT, anchor: str = "left") -> None:
        width = len(s) * 4 * SCALE - SCALE
        x = x - width if anchor == "right" else x - width // 2 if anchor == "center" else x
        for ch in s.lower():
            bits = _FONT.get(ch, _FONT[" "])
            for k, b in enumerate(bits):
                if b == "1":
                    self.dot(x + (k % 3) * SCALE, y + (k // 3) * SCALE, c, SCALE)
            x += 4 * SCALE

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3 : (y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        ihdr = struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def _label_us(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.3g} ms"
    return f"{v:g} us"


def write_cdf_png(path: Path, series: Sequence[Series], title: str) -> None:
    data = [(label, color, dashed, sorted(s)) for label, color, dashed, s in series if s]
    if not data:
        raise ValueError("nothing to plot")
    lo_us = min(s[0] for *_, s in data) / 1000
    hi_us = max(s[min(len(s) - 1, math.ceil(0.999 * len(s)))] for *_, s in data) / 1000
    d0, d1 = math.floor(math.log10(lo_us)), math.ceil(math.log10(hi_us))
    if d1 == d0:
        d1 += 1

    def px_x(us: float) -> int:
        t = (math.log10(max(us, 10**d0)) - d0) / (d1 - d0)
        return LEFT + round(min(1.0, t) * (RIGHT - LEFT))

    def px_y(q: float) -> int:
        return BOTTOM - round(q * (BOTTOM - TOP))

    cv = Canvas(W, H)
    cv.text(W // 2, 16, title, anchor="center")
    for d in range(d0, d1 + 1):  # vertical grid at 1, 2, 5 per decade; labels at 1 (and all if narrow)
        for m in (1, 2, 5):
            v = m * 10**d
            if 10**d0 <= v <= 10**d1:
                x = px_x(v)
                cv.line(x, TOP, x, BOTTOM, GRID)
                if m == 1 or (d1 - d0 <= 2):
                    at = "right" if x >= RIGHT - 20 else "center"
                    cv.text(x + (8 if at == "right" else 0), BOTTOM + 10, _label_us(v), anchor=at)
    for k in range(5):
        y = px_y(k / 4)
        cv.line(LEFT, y, RIGHT, y, GRID)
        cv.text(LEFT - 8, y - 5, f"{25 * k}%", anchor="right")
    cv.line(LEFT, TOP, LEFT, BOTTOM, AXIS, 2)
    cv.line(LEFT, BOTTOM, RIGHT, BOTTOM, AXIS, 2)
    cv.text((LEFT + RIGHT) // 2, BOTTOM + 34, "latency (log scale)", anchor="center")
    cv.text(LEFT - 8, TOP - 24, "share of requests", anchor="left")

    for _label, color, dashed, s in data:
        n = len(s)
        pts = [
            (px_x(s[min(n - 1, round(q * (n - 1)))] / 1000), px_y(q)) for q in (i / 400 for i in range(401))
        ]
        phase = 0
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            if (x0, y0) != (x1, y1):
                phase = cv.line(x0, y0, x1, y1, color, 3, dash=8 if dashed else 0, phase=phase) - 1

    # The legend sits under the x axis, two columns, so it never hides a curve.
    for i, (label, color, dashed, s) in enumerate(data):
        lx = LEFT + 20 + (i // LEGEND_ROWS) * 440
        y = BOTTOM + 62 + 22 * (i % LEGEND_ROWS)
        if dashed:
            cv.line(lx, y + 5, lx + 28, y + 5, color, 4, dash=6)
        else:
            cv.rect(lx, y, lx + 28, y + 10, color)
        p50 = s[(len(s) - 1) // 2] / 1000
        cv.text(lx + 40, y, f"{label}  p50 {_label_us(round(p50))}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv.png())

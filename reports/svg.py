"""Small SVG helpers shared by the chart and the route: escaping, number formatting, linear
scales and "nice" ticks. Pure: strings out, no I/O, no scripts."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

__all__ = ["SVG_FONTS", "Scale", "attr", "el", "fmt", "nice_ticks", "points", "text"]


# The report's one font family (Latin and Han), named on each <svg>: an SVG renderer does not
# always inherit the page's CSS.
SVG_FONTS = "Noto Sans CJK SC, Noto Sans CJK, DejaVu Sans, sans-serif"


def fmt(v: float) -> str:
    """A coordinate with at most 1 decimal (enough at 1000 units wide; keeps the SVG small)."""
    r = round(v, 1)
    return str(int(r)) if r == int(r) else str(r)


def attr(**kw: object) -> str:
    """``name="value"`` pairs; ``_`` in names becomes ``-`` (``stroke_width``), None skipped,
    a trailing ``_`` dropped (``class_``)."""
    parts = []
    for k, v in kw.items():
        if v is None:
            continue
        name = k.rstrip("_").replace("_", "-")
        value = fmt(v) if isinstance(v, float) else str(v)
        parts.append(f"{name}={quoteattr(value)}")
    return " ".join(parts)


def el(tag: str, **kw: object) -> str:
    """An empty element ``<tag .../>``."""
    return f"<{tag} {attr(**kw)}/>"


def text(x: float, y: float, content: str, **kw: object) -> str:
    """A ``<text>`` element with escaped content."""
    return f"<text {attr(x=float(x), y=float(y), **kw)}>{escape(content)}</text>"


def points(xy: Iterable[tuple[float, float]]) -> str:
    """The ``points`` attribute of a polyline or polygon."""
    return " ".join(f"{fmt(x)},{fmt(y)}" for x, y in xy)


@dataclass(frozen=True, slots=True)
class Scale:
    """Linear map of the domain [d0, d1] onto the range [r0, r1] (either may be reversed)."""

    d0: float
    d1: float
    r0: float
    r1: float

    def __call__(self, v: float) -> float:
        if self.d1 == self.d0:
            return (self.r0 + self.r1) / 2.0
        return self.r0 + (v - self.d0) * (self.r1 - self.r0) / (self.d1 - self.d0)

    def clamp(self, v: float) -> float:
        lo, hi = min(self.r0, self.r1), max(self.r0, self.r1)
        return min(hi, max(lo, self(v)))


def nice_ticks(lo: float, hi: float, max_ticks: int = 8) -> list[float]:
    """Round values (1, 2 or 5 x 10^k apart) covering [lo, hi], at most ``max_ticks``."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        return [lo]
    raw = (hi - lo) / max(1, max_ticks - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    v = first
    while v <= hi + 1e-9 * step:
        out.append(round(v, 10))
        v += step
    return out

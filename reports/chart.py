"""The report's temperature chart as inline SVG: the product temperature of every custody leg
(mean line in a min-max envelope, so a short spike stays visible), the air temperature, the
profile's band, excursions shaded red and unmonitored time (data gaps, docks) shaded grey, leg
boundaries numbered, the time axis in the reader's zone. Pure: a string from a
``ShipmentReport``; no scripts, fonts or external references.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from coldchain.series import Buckets
from reports.model import Clock, ShipmentReport
from reports.svg import SVG_FONTS, Scale, attr, el, nice_ticks, points, text

__all__ = [
    "CHART_HEIGHT",
    "CHART_WIDTH",
    "ChartFrame",
    "bucket_runs",
    "chart_frame",
    "temperature_chart",
    "time_ticks",
]

CHART_WIDTH = 1000
CHART_HEIGHT = 380
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 76, 30, 70

# Tick steps for the time axis, seconds; each divides the next larger day-or-longer unit.
_TICK_STEPS_S = (
    600,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    28 * 86400,
)
_DAY_S = 86400

PRODUCT = "#1f4e79"
ENVELOPE = "#9ecae1"
AIR = "#d9822b"
BAND = "#dcefd5"
BAND_EDGE = "#3c763d"
EXCURSION = "#d62728"
GAP = "#8c8c8c"


def _ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def time_ticks(t0_ms: int, t1_ms: int, clock: Clock, max_ticks: int = 8) -> list[tuple[int, str]]:
    """Tick times in [t0_ms, t1_ms] on round local times of ``clock``'s zone (whole hours,
    local midnights), at most about ``max_ticks``, with labels: ``MM-DD HH:MM`` where the date
    changes, ``HH:MM`` otherwise, ``MM-DD`` for steps of a day or more."""
    span_s = max(1, t1_ms - t0_ms) / 1000.0
    step = next((s for s in _TICK_STEPS_S if span_s / s <= max_ticks), _TICK_STEPS_S[-1])
    start = clock.local(t0_ms)
    ticks: list[int] = []
    if step < _DAY_S:
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
        into = (start - midnight).total_seconds()
        t = _ms(midnight + timedelta(seconds=math.ceil(into / step) * step))
        while t <= t1_ms:
            ticks.append(t)
            t += step * 1000
    else:
        day = datetime(start.year, start.month, start.day, tzinfo=clock.tz)
        if _ms(day) < t0_ms:
            day += timedelta(days=1)
        while _ms(day) <= t1_ms:
            ticks.append(_ms(day))
            day += timedelta(days=step // _DAY_S)
    out = []
    prev = None
    for t in ticks:
        local = clock.local(t)
        if step >= _DAY_S:
            label = local.strftime("%m-%d")
        elif local.date() != prev:
            label = local.strftime("%m-%d %H:%M")
        else:
            label = local.strftime("%H:%M")
        prev = local.date()
        out.append((t, label))
    return out


def bucket_runs(
    b: Buckets, resolution_s: int, gaps: Sequence[tuple[int, int]] | None = None
) -> list[range]:
    """Index ranges of buckets to join with one line. With ``gaps`` (the leg's unmonitored
    stretches, ``LegReport.gaps``) the line breaks exactly where the product was unmonitored
    between two buckets, so buckets finer than the readings still make one line while a data
    gap is never bridged. Without them, any missing bucket breaks it."""
    runs: list[range] = []
    start = 0
    step = resolution_s * 1000
    holes = sorted(gaps or ())
    j = 0  # buckets and gaps are both in time order: one sweep

    def broken(i: int) -> bool:
        nonlocal j
        prev_end, cur = b.t_ms[i - 1] + step, b.t_ms[i]
        if gaps is None:
            return cur > prev_end
        while j < len(holes) and holes[j][1] <= prev_end:
            j += 1
        return j < len(holes) and holes[j][0] < cur

    for i in range(1, len(b.t_ms) + 1):
        if i == len(b.t_ms) or broken(i):
            runs.append(range(start, i))
            start = i
    return [r for r in runs if len(r)]


@dataclass(frozen=True, slots=True)
class ChartFrame:
    """The chart's coordinate system: ``x`` maps epoch ms, ``y`` degrees Celsius."""

    t0_ms: int
    t1_ms: int
    x: Scale
    y: Scale
    top: float
    bottom: float
    left: float
    right: float


def _values(report: ShipmentReport) -> list[float]:
    out: list[float] = []
    for leg in report.legs:
        out += leg.series.product.min_c + leg.series.product.max_c + leg.series.air.mean_c
    out += [v for v in (report.low_c, report.high_c) if v is not None]
    return out


def chart_frame(report: ShipmentReport) -> ChartFrame | None:
    """The frame for ``report``: time from the first leg's start to the last leg's end (or
    the trace's time), temperatures covering the data and the band with a margin; None
    without legs."""
    if report.start_ms is None or report.end_ms is None:
        return None
    t0, t1 = report.start_ms, max(report.end_ms, report.start_ms + 60_000)
    values = _values(report) or [0.0, 10.0]
    lo, hi = min(values), max(values)
    pad = max(1.0, 0.08 * (hi - lo))
    left, right = float(_LEFT), float(CHART_WIDTH - _RIGHT)
    top, bottom = float(_TOP), float(CHART_HEIGHT - _BOTTOM)
    return ChartFrame(
        t0,
        t1,
        Scale(t0, t1, left, right),
        Scale(lo - pad, hi + pad, bottom, top),
        top,
        bottom,
        left,
        right,
    )


def _span_rect(f: ChartFrame, a_ms: int, b_ms: int, **kw: object) -> str | None:
    x0, x1 = f.x.clamp(a_ms), f.x.clamp(b_ms)
    if x1 - x0 < 0.05:
        return None
    return el("rect", x=x0, y=f.top, width=max(0.6, x1 - x0), height=f.bottom - f.top, **kw)


def _series(
    f: ChartFrame, b: Buckets, res_s: int, lo_ms: int, hi_ms: int, gaps: Sequence[tuple[int, int]]
) -> Iterable[str]:
    half = res_s * 500

    def x(i: int) -> float:
        return f.x(min(hi_ms, max(lo_ms, b.t_ms[i] + half)))

    for run in bucket_runs(b, res_s, gaps):
        if len(run) == 1:
            i = run[0]
            yield el(
                "line",
                x1=x(i),
                x2=x(i),
                y1=f.y(b.min_c[i]),
                y2=f.y(b.max_c[i]),
                stroke=ENVELOPE,
                stroke_width="3",
                class_="envelope",
            )
            yield el("circle", cx=x(i), cy=f.y(b.mean_c[i]), r="2", fill=PRODUCT, class_="mean")
            continue
        hull = [(x(i), f.y(b.max_c[i])) for i in run]
        hull += [(x(i), f.y(b.min_c[i])) for i in reversed(run)]
        yield el(
            "polygon",
            points=points(hull),
            fill=ENVELOPE,
            fill_opacity="0.55",
            stroke="none",
            class_="envelope",
        )
        line = [(x(i), f.y(b.mean_c[i])) for i in run]
        yield el(
            "polyline",
            points=points(line),
            fill="none",
            stroke=PRODUCT,
            stroke_width="1.6",
            class_="mean",
        )


def _air(
    f: ChartFrame, b: Buckets, res_s: int, lo_ms: int, hi_ms: int, gaps: Sequence[tuple[int, int]]
) -> Iterable[str]:
    half = res_s * 500
    for run in bucket_runs(b, res_s, gaps):
        line = [(f.x(min(hi_ms, max(lo_ms, b.t_ms[i] + half))), f.y(b.mean_c[i])) for i in run]
        if len(line) == 1:
            line.append((line[0][0] + 0.8, line[0][1]))
        yield el(
            "polyline",
            points=points(line),
            fill="none",
            stroke=AIR,
            stroke_width="1",
            stroke_dasharray="4 3",
            class_="air",
        )


def _band(f: ChartFrame, report: ShipmentReport) -> Iterable[str]:
    low, high = report.low_c, report.high_c
    if low is None and high is None:
        return
    y_hi = f.top if high is None else f.y.clamp(high)
    y_lo = f.bottom if low is None else f.y.clamp(low)
    yield el(
        "rect",
        x=f.left,
        y=y_hi,
        width=f.right - f.left,
        height=max(0.0, y_lo - y_hi),
        fill=BAND,
        class_="band",
    )
    for limit, word in ((high, "max"), (low, "min")):
        if limit is None:
            continue
        y = f.y.clamp(limit)
        yield el(
            "line",
            x1=f.left,
            x2=f.right,
            y1=y,
            y2=y,
            stroke=BAND_EDGE,
            stroke_width="1",
            stroke_dasharray="6 3",
            class_="limit",
        )
        yield text(f.right + 4, y + 4, f"{word} {limit:g} °C", font_size="11", fill=BAND_EDGE)


def _grid(f: ChartFrame) -> Iterable[str]:
    for v in nice_ticks(f.y.d0, f.y.d1, 7):
        y = f.y(v)
        yield el("line", x1=f.left, x2=f.right, y1=y, y2=y, stroke="#e4e4e4", stroke_width="1")


def _axes(f: ChartFrame, clock: Clock) -> Iterable[str]:
    for v in nice_ticks(f.y.d0, f.y.d1, 7):
        yield text(f.left - 6, f.y(v) + 4, f"{v:g}", font_size="11", text_anchor="end", fill="#333")
    yield text(14, (f.top + f.bottom) / 2, "°C", font_size="12", fill="#333")
    for t, label in time_ticks(f.t0_ms, f.t1_ms, clock):
        x = f.x(t)
        yield el("line", x1=x, x2=x, y1=f.bottom, y2=f.bottom + 5, stroke="#333")
        yield text(
            x,
            f.bottom + 18,
            label,
            font_size="11",
            text_anchor="middle",
            fill="#333",
            class_="tick",
        )
    yield el(
        "rect",
        x=f.left,
        y=f.top,
        width=f.right - f.left,
        height=f.bottom - f.top,
        fill="none",
        stroke="#666",
        stroke_width="1",
    )


def _legend(f: ChartFrame, report: ShipmentReport) -> Iterable[str]:
    y = f.bottom + 44
    items: list[tuple[str, str]] = [
        ("line", "product temperature (mean per bucket)"),
        ("envelope", "product min-max"),
        ("air", "air"),
        ("band", "profile band"),
        ("excursion", "excursion"),
        ("gap", "unmonitored"),
    ]
    x = f.left
    for kind, label in items:
        if kind == "line":
            yield el("line", x1=x, x2=x + 18, y1=y - 4, y2=y - 4, stroke=PRODUCT, stroke_width="2")
        elif kind == "air":
            yield el(
                "line",
                x1=x,
                x2=x + 18,
                y1=y - 4,
                y2=y - 4,
                stroke=AIR,
                stroke_width="1.5",
                stroke_dasharray="4 3",
            )
        else:
            fill = {"envelope": ENVELOPE, "band": BAND, "excursion": EXCURSION, "gap": GAP}[kind]
            opacity = {"excursion": "0.25", "gap": "0.3"}.get(kind, "1")
            yield el("rect", x=x, y=y - 10, width=18, height=11, fill=fill, fill_opacity=opacity)
        yield text(x + 23, y, label, font_size="11", fill="#333")
        x += 30 + 6.2 * len(label)


def temperature_chart(report: ShipmentReport, clock: Clock) -> str:
    """The chart as one ``<svg>`` element (viewBox ``CHART_WIDTH`` x ``CHART_HEIGHT``; it
    scales to its container). Without legs: a short note instead of axes."""
    f = chart_frame(report)
    head = (
        f'<svg class="chart" id="temperature-chart" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" '
        f'font-family="{SVG_FONTS}" '
        f'role="img" {attr(aria_label=f"Temperature of shipment {report.shipment_id} over time")}>'
    )
    if f is None:
        return head + text(20, 40, "No custody legs: nothing to chart.", font_size="14") + "</svg>"
    parts = [head, "<title>Product temperature against the profile band</title>"]
    parts += _band(f, report)
    parts += _grid(f)
    for leg in report.legs:
        for a, b in leg.stats.gaps:
            rect = _span_rect(f, a, b, fill=GAP, fill_opacity="0.3", class_="gap")
            if rect:
                parts.append(rect)
    for item in report.excursions:
        e = item.excursion
        if not item.temperature:
            continue
        end = e.end_ms if e.end_ms is not None else f.t1_ms
        rect = _span_rect(
            f, e.start_ms, end, fill=EXCURSION, fill_opacity="0.22", class_="excursion"
        )
        if rect:
            parts.append(rect)
            parts.append(
                text(
                    f.x.clamp(e.start_ms) + 2,
                    f.top + 12,
                    item.label,
                    font_size="11",
                    fill=EXCURSION,
                    font_weight="bold",
                )
            )
    for leg in report.legs:
        s, lo, hi = leg.series, leg.stats.leg.from_ms, _leg_end(leg.stats.leg.to_ms, f.t1_ms)
        parts += _air(f, s.air, s.resolution_s, lo, hi, leg.stats.gaps)
        parts += _series(f, s.product, s.resolution_s, lo, hi, leg.stats.gaps)
    parts += _leg_marks(f, report)
    parts += _axes(f, clock)
    parts += _legend(f, report)
    parts.append("</svg>")
    return "".join(parts)


def _leg_end(to_ms: int | None, t1: int) -> int:
    return t1 if to_ms is None else to_ms


def _leg_marks(f: ChartFrame, report: ShipmentReport) -> Iterable[str]:
    for leg in report.legs:
        a = leg.stats.leg.from_ms
        b = _leg_end(leg.stats.leg.to_ms, f.t1_ms)
        xa, xb = f.x.clamp(a), f.x.clamp(b)
        if leg.number > 1:
            yield el(
                "line",
                x1=xa,
                x2=xa,
                y1=f.top - 12,
                y2=f.bottom,
                stroke="#444",
                stroke_width="0.8",
                stroke_dasharray="2 2",
                class_="leg-edge",
            )
        if xb - xa >= 14:
            yield text(
                (xa + xb) / 2,
                f.top - 6,
                f"leg {leg.number}" if xb - xa > 60 else str(leg.number),
                font_size="11",
                text_anchor="middle",
                fill="#222",
                class_="leg-label",
            )

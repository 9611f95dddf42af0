"""Render a ``ShipmentReport`` as one self-contained HTML page, and the same page as PDF.

The HTML has everything inline (stylesheet, SVG chart and route) and references nothing
outside itself: no scripts, fonts, images or links to fetch, and a Content-Security-Policy
``default-src 'none'`` that would block any. The PDF is that HTML laid out by WeasyPrint
(pango; fonts through fontconfig, Noto Sans CJK for Han characters), with every URL fetch
refused. Pure but for WeasyPrint's font lookup: no network, no files written.
"""

from __future__ import annotations

import importlib.resources
import re
from datetime import datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from reports.chart import temperature_chart
from reports.model import Clock, ShipmentReport
from reports.route import route_map

__all__ = ["format_duration", "localise_times", "render_report_html", "render_report_pdf"]

_VERDICT_TEXT = {
    "compliant": "The product stayed within its profile's limits and the record has no holes.",
    "excursion": "The product was outside its profile's limits (reasons below).",
    "incomplete": "No excursion was found, but the record has holes (reasons below): "
    "compliance cannot be shown.",
}


def format_duration(seconds: float | None) -> str:
    """``1 h 05 min``, ``12 min``, ``40 s``, ``0``; "" for None."""
    if seconds is None:
        return ""
    s = round(seconds)
    if s == 0:
        return "0"
    if s < 60:
        return f"{s} s"
    minutes = round(s / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours:02d} h"


_UTC_TIME = re.compile(r"\b(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z)")


def localise_times(text: str, clock: Clock) -> str:
    """``text`` with each RFC 3339 UTC time in it (``2026-09-21T14:48:20Z``, as the verdict's
    reasons give them) written in ``clock``'s zone instead."""

    def local(match: re.Match[str]) -> str:
        t = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
        return clock.time(round(t.timestamp() * 1000), seconds=True)

    return _UTC_TIME.sub(local, text)


def _celsius(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def _until(clock: Clock, from_ms: int, to_ms: int | None, ref_ms: int) -> str:
    """The end of a span after its start: only the time when it is the same local day."""
    if to_ms is None:
        return "still there"
    if clock.local(from_ms).date() == clock.local(to_ms).date():
        return clock.local(to_ms).strftime("%H:%M")
    return clock.time(to_ms, ref_ms=ref_ms)


def _band(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{low:g} to {high:g} °C"
    if high is not None:
        return f"at most {high:g} °C"
    if low is not None:
        return f"at least {low:g} °C"
    return "no temperature range in this profile"


def _resolution(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}-hour"
    if seconds % 60 == 0:
        return f"{seconds // 60}-minute"
    return f"{seconds}-second"


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def _css() -> str:
    return (importlib.resources.files("reports") / "templates" / "report.css").read_text("utf-8")


def render_report_html(report: ShipmentReport) -> str:
    """The report as a complete HTML document (UTF-8 text). ``report.zone`` must be a valid
    IANA time zone (``ZoneInfoNotFoundError`` otherwise)."""
    clock = Clock(report.zone)
    route = route_map(report)
    context: dict[str, Any] = {
        "r": report,
        "clock": clock,
        "css": Markup(_css()),
        "chart": Markup(temperature_chart(report, clock)),
        "route": Markup(route) if route is not None else None,
        "verdict_word": report.verdict.upper(),
        "verdict_text": _VERDICT_TEXT[report.verdict],
        "band_text": _band(report.low_c, report.high_c),
        "resolution_text": _resolution(report.resolution_s),
        "open_end": bool(report.legs) and report.legs[-1].stats.leg.to_ms is None,
        "c": _celsius,
        "dur": format_duration,
        "reasons": [localise_times(x, clock) for x in report.reasons],
        "until": lambda a, b: _until(clock, a, b, report.printed_ms),
    }
    return _environment().get_template("report.html.j2").render(context)


def _refuse_fetch(url: str, *_args: object, **_kwargs: object) -> dict[str, Any]:
    # The page is self-contained; a fetch would mean something external slipped in.
    raise ValueError(f"the report fetches nothing, refused: {url[:80]}")


def render_report_pdf(report: ShipmentReport, html: str | None = None) -> bytes:
    """The same report as PDF (A4) bytes, laid out by WeasyPrint from ``render_report_html``
    (or from ``html`` already rendered for this report)."""
    import weasyprint  # heavy (pango, fonts): loaded on the first PDF only

    page = html if html is not None else render_report_html(report)
    document = weasyprint.HTML(string=page, url_fetcher=_refuse_fetch)
    return bytes(document.write_pdf())

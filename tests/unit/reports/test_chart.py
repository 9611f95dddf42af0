"""The temperature chart's geometry: local-time ticks, line runs broken at holes, and the SVG's
band, excursion and gap shading placed at the right coordinates (read back from the SVG)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from coldchain.series import Buckets
from reports.chart import bucket_runs, chart_frame, temperature_chart, time_ticks
from reports.model import Clock
from reports.svg import Scale, nice_ticks
from tests.unit.reports.sample import GAP, SPIKE, T0, m, sample_report

HOUR = 3_600_000


def _svg(zone: str = "Asia/Shanghai") -> ET.Element:
    report = sample_report(zone)
    return ET.fromstring(temperature_chart(report, Clock(zone)))


def _close(a: str | None, b: float) -> bool:
    return a is not None and abs(float(a) - b) <= 0.06  # coordinates carry one decimal


def test_time_ticks_fall_on_round_local_times() -> None:
    # 2026-09-22T00:00Z is 08:00 in Shanghai: 6-hourly ticks at 12:00, 18:00, 00:00 local.
    shanghai = Clock("Asia/Shanghai")
    ticks = time_ticks(T0 + HOUR, T0 + 30 * HOUR, shanghai, max_ticks=6)
    assert [label for _, label in ticks] == [
        "09-22 12:00",
        "18:00",
        "09-23 00:00",
        "06:00",
        "12:00",
    ]
    assert ticks[0][0] == T0 + 4 * HOUR  # 12:00 local = 04:00 UTC
    # In UTC the same span ticks at 06:00, 12:00, ... UTC.
    utc = time_ticks(T0 + HOUR, T0 + 30 * HOUR, Clock("UTC"), max_ticks=6)
    assert utc[0] == (T0 + 6 * HOUR, "09-22 06:00")
    # A 20-day span ticks at local midnights, every few days.
    days = time_ticks(T0, T0 + 20 * 24 * HOUR, shanghai)
    assert all(shanghai.local(t).strftime("%H:%M") == "00:00" for t, _ in days)
    assert len(days) <= 8 and days[0][1] == "09-23"


def test_runs_break_where_a_bucket_is_missing() -> None:
    b = Buckets(t_ms=(0, 600_000, 1_200_000, 3_000_000, 3_600_000, 6_000_000))
    assert bucket_runs(b, 600) == [range(0, 3), range(3, 5), range(5, 6)]
    assert bucket_runs(Buckets(), 600) == []


def test_with_the_legs_gaps_runs_break_only_where_it_was_unmonitored() -> None:
    # 10-second buckets of one-a-minute readings: every other bucket is empty, yet each reading
    # holds until the next: one line. A 15-minute gap between 180 s and 1080 s breaks it.
    b = Buckets(t_ms=(0, 60_000, 120_000, 180_000, 1_080_000, 1_140_000))
    assert bucket_runs(b, 10, gaps=()) == [range(0, 6)]
    assert bucket_runs(b, 10, gaps=((240_000, 1_080_000),)) == [range(0, 4), range(4, 6)]
    # A gap inside one bucket's own span does not break the line between buckets.
    assert bucket_runs(b, 600, gaps=((10_000, 50_000),)) == [range(0, 6)]


def test_scales_and_ticks() -> None:
    s = Scale(0.0, 10.0, 100.0, 0.0)  # reversed range, like a y axis
    assert (s(0.0), s(10.0), s(2.5)) == (100.0, 0.0, 75.0)
    assert s.clamp(20.0) == 0.0 and s.clamp(-5.0) == 100.0
    # 8.7 over 6 intervals is 1.45 a step: rounded up to 2, from the first multiple inside.
    assert nice_ticks(-1.3, 7.4, 7) == [0.0, 2.0, 4.0, 6.0]
    assert nice_ticks(0.0, 100.0, 6) == [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]


def test_band_sits_between_the_profile_limits() -> None:
    report = sample_report()
    frame = chart_frame(report)
    assert frame is not None
    band = next(_svg().iter("rect"))  # drawn first, under everything
    assert band.get("class") == "band"
    # 0..4 degC: the band's top is y(4), its bottom y(0).
    assert _close(band.get("y"), frame.y(4.0))
    assert _close(band.get("height"), frame.y(0.0) - frame.y(4.0))
    assert _close(band.get("x"), frame.left) and _close(band.get("width"), frame.right - frame.left)


def test_a_frozen_band_without_a_lower_limit_reaches_the_bottom() -> None:
    report = replace(sample_report(), low_c=None, high_c=-18.0)
    frame = chart_frame(report)
    assert frame is not None
    band = next(r for r in ET.fromstring(temperature_chart(report, Clock("UTC"))).iter("rect"))
    assert _close(band.get("y"), frame.y.clamp(-18.0))
    assert _close(band.get("height"), frame.bottom - frame.y.clamp(-18.0))


def test_excursions_and_gaps_are_shaded_where_they_happened() -> None:
    report = sample_report()
    frame = chart_frame(report)
    assert frame is not None
    svg = _svg()
    shaded = [r for r in svg.iter("rect") if r.get("class") == "excursion"]
    # Only the temperature excursion (E2, the range spike) is red; the door and custody gap are
    # not temperature excursions.
    (spike,) = shaded
    assert _close(spike.get("x"), frame.x(SPIKE.start_ms))
    assert SPIKE.end_ms is not None
    assert _close(spike.get("width"), frame.x(SPIKE.end_ms) - frame.x(SPIKE.start_ms))
    labels = [t.text for t in svg.iter("text")]
    assert "E2" in labels and "E1" not in labels
    # Grey: every listed gap of every leg (two docks and the store's 30-minute hole).
    gaps = [r for r in svg.iter("rect") if r.get("class") == "gap"]
    expected = [g for leg in report.legs for g in leg.stats.gaps]
    assert len(gaps) == len(expected) == 3
    for rect, (a, b) in zip(gaps, expected, strict=True):
        assert _close(rect.get("x"), frame.x(a)) and _close(
            rect.get("width"), frame.x(b) - frame.x(a)
        )
    assert GAP.start_ms >= m(490)  # the custody gap lies inside the docks' grey


def test_the_spike_survives_in_the_envelope() -> None:
    report = sample_report()
    frame = chart_frame(report)
    assert frame is not None
    svg = _svg()
    envelopes = [p for p in svg.iter("polygon") if p.get("class") == "envelope"]
    means = [p for p in svg.iter("polyline") if p.get("class") == "mean"]
    # One run each for legs 1 and 5, two for leg 4 (its 30-minute hole breaks the line).
    assert len(envelopes) == len(means) == 4
    top = min(float(xy.split(",")[1]) for xy in (envelopes[0].get("points") or "").split())
    peak = max(report.legs[0].series.product.max_c)
    assert top == pytest.approx(frame.y(peak), abs=0.06)
    assert frame.y(peak) < frame.y(4.0)  # drawn above the band's top


def test_axis_labels_are_local_and_nothing_is_fetched() -> None:
    text = temperature_chart(sample_report(), Clock("Asia/Shanghai"))
    assert "09-22 12:00" in text and "max 4 °C" in text and "min 0 °C" in text
    for needle in ("http:", "https:", "href", "<script", "url("):
        assert needle not in text
    assert "No custody legs" in temperature_chart(replace(sample_report(), legs=()), Clock("UTC"))

"""The route map's geometry: the projection keeps the aspect and the track inside the map, the
scale bar is true, nearby cities are labelled in English and Chinese, excursion starts are
marked where they happened."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from coldchain.series import ExcursionStart, LegSeries, Track
from reports.route import (
    PLACES,
    ROUTE_HEIGHT,
    ROUTE_WIDTH,
    map_frame,
    route_map,
    scale_bar_km,
)
from tests.unit.reports.sample import SPIKE, m, sample_report


def _pts(attr: str | None) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in (p.split(",") for p in (attr or "").split())]


def test_projection_keeps_the_aspect_and_fits() -> None:
    lats, lons = [23.0, 23.5], [113.0, 116.7]
    f = map_frame(lats, lons)
    x0, y0 = f.project(23.0, 113.0)
    x1, y1 = f.project(23.5, 116.7)
    # 3.7 degrees of longitude at ~23.25 N are 3.7 * cos(23.25) = 3.40 "latitude degrees" wide.
    k = math.cos(math.radians(23.25))
    assert (x1 - x0) / (y0 - y1) == pytest.approx(3.7 * k / 0.5, rel=1e-9)
    for x, y in ((x0, y0), (x1, y1)):
        assert 0 < x < ROUTE_WIDTH and 0 < y < ROUTE_HEIGHT
    # North is up, east is right.
    assert y1 < y0 and x1 > x0
    # A parked truck still gets a map of at least a quarter degree.
    parked = map_frame([23.1], [113.2])
    assert parked.km_per_px * (ROUTE_HEIGHT - 80) >= 0.25 * 111.32 * 0.999


def test_scale_bar_is_a_round_distance_that_fits() -> None:
    assert scale_bar_km(0.5) == 50.0  # 0.5 km/px * 160 px = 80 km -> 50
    assert scale_bar_km(0.03) == 2.0  # 4.8 km -> 2
    assert scale_bar_km(2.0) == 200.0  # 320 km -> 200


def test_the_track_its_ends_and_the_excursion_start_are_drawn() -> None:
    report = sample_report()
    svg = ET.fromstring(route_map(report) or "")
    tracks = [p for p in svg.iter("polyline") if p.get("class") == "track"]
    assert len(tracks) == 2  # legs 1 and 5 are the vehicle legs with positions
    first = _pts(tracks[0].get("points"))
    assert len(first) == len(report.legs[0].series.track)
    assert all(0 < x < ROUTE_WIDTH and 0 < y < ROUTE_HEIGHT for x, y in first)
    # Shantou (start of leg 1) lies east of Guangzhou (its end).
    assert first[0][0] > first[-1][0]
    marks = [c for c in svg.iter("circle") if c.get("class") == "excursion-start"]
    (mark,) = marks
    labels = [t.text for t in svg.iter("text")]
    assert "E2" in labels  # the spike is E2 in the report
    # The mark sits between the track's ends (it started on the way).
    assert first[-1][0] < float(mark.get("cx") or 0) < first[0][0]
    assert report.legs[0].series.excursion_starts[0].excursion_id == SPIKE.id


def test_cities_near_the_route_are_named_in_english_and_chinese() -> None:
    svg = route_map(sample_report()) or ""
    for name in ("Shantou 汕头", "Guangzhou 广州", "Shenzhen 深圳"):
        assert name in svg
    assert "Shanghai" not in svg  # 1,200 km away: not on this map
    assert {p.name for p in PLACES} >= {
        "Jieyang", "Shantou", "Guangzhou", "Shenzhen", "Nantong", "Shanghai",
    }  # fmt: skip


def test_a_short_track_far_from_any_city_is_drawn_without_names() -> None:
    lone = LegSeries(600, "product", track=Track((m(0), m(10)), (40.0, 40.01), (90.0, 90.01)))
    report = sample_report()
    legs = (replace(report.legs[0], series=lone),)
    svg = route_map(replace(report, legs=legs, excursions=())) or ""
    assert 'class="track"' in svg and 'class="place"' not in svg


def test_a_track_near_one_city_brings_it_into_view() -> None:
    # A few km west of Nantong: the city is outside the track's box but close.
    near = LegSeries(
        600,
        "product",
        track=Track((m(0), m(10)), (31.95, 31.96), (120.60, 120.62)),
        excursion_starts=(ExcursionStart("x", m(5), 31.955, 120.61),),
    )
    report = sample_report()
    svg = route_map(replace(report, legs=(replace(report.legs[0], series=near),))) or ""
    assert "Nantong 南通" in svg


def test_no_positions_no_map() -> None:
    report = sample_report()
    bare = tuple(replace(leg, series=LegSeries(600)) for leg in report.legs)
    assert route_map(replace(report, legs=bare)) is None

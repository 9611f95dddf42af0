"""The report's route map as inline SVG, drawn offline: the GPS track of each vehicle leg, where
it started and ended, where excursions started, and for orientation the bundled cities near it
(``PLACES``, names in English and Chinese) with a scale bar and north arrow. No map tiles,
fonts or scripts: a plain equirectangular projection around the track's middle latitude (true
to scale at this size, a few hundred km). Pure: a string from a ``ShipmentReport``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reports.model import ShipmentReport
from reports.svg import SVG_FONTS, attr, el, points, text

__all__ = [
    "PLACES",
    "ROUTE_HEIGHT",
    "ROUTE_WIDTH",
    "MapFrame",
    "Place",
    "map_frame",
    "route_map",
    "scale_bar_km",
]

ROUTE_WIDTH = 1000
ROUTE_HEIGHT = 520
_MARGIN = 40.0
_KM_PER_DEG = 111.32
# The smallest area shown (degrees of latitude): a truck waiting at a dock is not a dot filling
# the page.
_MIN_SPAN_DEG = 0.25
# A city this close to the track's middle is brought into view for orientation.
_NEAREST_CITY_KM = 150.0

LEG_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2")
EXCURSION = "#d62728"


@dataclass(frozen=True, slots=True)
class Place:
    name: str
    name_zh: str
    lat: float
    lon: float


# City centres on and near the simulated routes (WGS 84; public gazetteer coordinates).
PLACES: tuple[Place, ...] = (
    Place("Jieyang", "揭阳", 23.5497, 116.3728),
    Place("Shantou", "汕头", 23.3541, 116.6819),
    Place("Chaozhou", "潮州", 23.6567, 116.6226),
    Place("Shanwei", "汕尾", 22.7862, 115.3750),
    Place("Huizhou", "惠州", 23.1115, 114.4152),
    Place("Dongguan", "东莞", 23.0205, 113.7518),
    Place("Guangzhou", "广州", 23.1291, 113.2644),
    Place("Foshan", "佛山", 23.0215, 113.1214),
    Place("Shenzhen", "深圳", 22.5431, 114.0579),
    Place("Hong Kong", "香港", 22.3193, 114.1694),
    Place("Nantong", "南通", 31.9802, 120.8943),
    Place("Suzhou", "苏州", 31.2990, 120.5853),
    Place("Shanghai", "上海", 31.2304, 121.4737),
)


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2.0 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class MapFrame:
    """Equirectangular projection onto the SVG: ``project(lat, lon) -> (x, y)``; ``km_per_px``
    along the parallel of ``lat0``."""

    lat0: float
    lon0: float
    px_per_deg: float
    cx: float
    cy: float
    km_per_px: float

    def project(self, lat: float, lon: float) -> tuple[float, float]:
        k = math.cos(math.radians(self.lat0))
        return (
            self.cx + (lon - self.lon0) * k * self.px_per_deg,
            self.cy - (lat - self.lat0) * self.px_per_deg,
        )


def map_frame(
    lats: Sequence[float],
    lons: Sequence[float],
    width: float = ROUTE_WIDTH,
    height: float = ROUTE_HEIGHT,
) -> MapFrame:
    """The frame showing every (lat, lon) with a margin, aspect kept (x scaled by the cosine of
    the middle latitude), at least ``_MIN_SPAN_DEG`` high. ``lats``/``lons`` non-empty."""
    lat_lo, lat_hi, lon_lo, lon_hi = min(lats), max(lats), min(lons), max(lons)
    lat0, lon0 = (lat_lo + lat_hi) / 2.0, (lon_lo + lon_hi) / 2.0
    k = math.cos(math.radians(lat0))
    span_y = max(lat_hi - lat_lo, _MIN_SPAN_DEG)
    span_x = max((lon_hi - lon_lo) * k, _MIN_SPAN_DEG * k)
    usable_w, usable_h = width - 2 * _MARGIN, height - 2 * _MARGIN
    px = min(usable_w / span_x, usable_h / span_y)
    km_per_px = _KM_PER_DEG / px
    return MapFrame(lat0, lon0, px, width / 2.0, height / 2.0, km_per_px)


def scale_bar_km(km_per_px: float, target_px: float = 160.0) -> float:
    """A round distance (1, 2 or 5 x 10^k km) drawn at most ``target_px`` long."""
    raw = km_per_px * target_px
    mag = 10 ** math.floor(math.log10(raw))
    return max(m * mag for m in (1, 2, 5) if m * mag <= raw)


def _track_points(report: ShipmentReport) -> list[tuple[float, float]]:
    out = []
    for leg in report.legs:
        out += list(zip(leg.series.track.lat, leg.series.track.lon, strict=True))
        out += [(x.lat, x.lon) for x in leg.series.excursion_starts]
    return out


def _nearby(lats: list[float], lons: list[float]) -> list[Place]:
    """The places inside the track's box (grown by a third), or the nearest if none is."""
    lat_lo, lat_hi, lon_lo, lon_hi = min(lats), max(lats), min(lons), max(lons)
    gy = max((lat_hi - lat_lo) / 3.0, 0.1)
    gx = max((lon_hi - lon_lo) / 3.0, 0.1)
    inside = [
        p
        for p in PLACES
        if lat_lo - gy <= p.lat <= lat_hi + gy and lon_lo - gx <= p.lon <= lon_hi + gx
    ]
    if inside:
        return inside
    mid_lat, mid_lon = (lat_lo + lat_hi) / 2.0, (lon_lo + lon_hi) / 2.0
    nearest = min(PLACES, key=lambda p: _km(mid_lat, mid_lon, p.lat, p.lon))
    return [nearest] if _km(mid_lat, mid_lon, nearest.lat, nearest.lon) <= _NEAREST_CITY_KM else []


def route_map(report: ShipmentReport) -> str | None:
    """The map as one ``<svg>`` element (viewBox ``ROUTE_WIDTH`` x ``ROUTE_HEIGHT``), or None
    when no leg has a position with a GNSS fix."""
    track = _track_points(report)
    if not track:
        return None
    lats, lons = [p[0] for p in track], [p[1] for p in track]
    places = _nearby(lats, lons)
    frame = map_frame(lats + [p.lat for p in places], lons + [p.lon for p in places])
    label = f"Route of shipment {report.shipment_id}"
    parts = [
        f'<svg class="route" id="route-map" viewBox="0 0 {ROUTE_WIDTH} {ROUTE_HEIGHT}" '
        f'font-family="{SVG_FONTS}" '
        f'role="img" {attr(aria_label=label)}>',
        "<title>GPS track of the vehicle legs</title>",
        el(
            "rect",
            x=0,
            y=0,
            width=ROUTE_WIDTH,
            height=ROUTE_HEIGHT,
            fill="#f7f9fb",
            stroke="#666",
            stroke_width="1",
        ),
    ]
    parts += _places(frame, places)
    parts += _tracks(frame, report)
    parts += _legend(report)
    parts += _decorations(frame)
    parts.append("</svg>")
    return "".join(parts)


def _places(frame: MapFrame, places: Iterable[Place]) -> Iterable[str]:
    for p in places:
        x, y = frame.project(p.lat, p.lon)
        yield el("circle", cx=x, cy=y, r="4", fill="#555", class_="place")
        # Labels near the right edge go to the left of their dot, so they stay on the map.
        right = x > ROUTE_WIDTH * 0.78
        yield text(
            x - 7 if right else x + 7,
            y - 6,
            f"{p.name} {p.name_zh}",
            font_size="14",
            fill="#333",
            text_anchor="end" if right else "start",
            class_="place-name",
        )


def _tracks(frame: MapFrame, report: ShipmentReport) -> Iterable[str]:
    labels = {e.excursion.id: e.label for e in report.excursions}
    for leg in report.legs:
        t = leg.series.track
        if not len(t):
            continue
        colour = LEG_COLOURS[(leg.number - 1) % len(LEG_COLOURS)]
        xy = [frame.project(lat, lon) for lat, lon in zip(t.lat, t.lon, strict=True)]
        if len(xy) > 1:
            yield el(
                "polyline",
                points=points(xy),
                fill="none",
                stroke=colour,
                stroke_width="2.5",
                stroke_linejoin="round",
                class_="track",
            )
        (x0, y0), (x1, y1) = xy[0], xy[-1]
        yield el(
            "circle",
            cx=x0,
            cy=y0,
            r="5",
            fill="#fff",
            stroke=colour,
            stroke_width="2.5",
            class_="track-start",
        )
        yield el("rect", x=x1 - 4.5, y=y1 - 4.5, width=9, height=9, fill=colour, class_="track-end")
        for mark in leg.series.excursion_starts:
            x, y = frame.project(mark.lat, mark.lon)
            yield el(
                "circle",
                cx=x,
                cy=y,
                r="6",
                fill=EXCURSION,
                fill_opacity="0.85",
                stroke="#fff",
                stroke_width="1.5",
                class_="excursion-start",
            )
            yield text(
                x + 8,
                y + 4,
                labels.get(mark.excursion_id, "excursion"),
                font_size="12",
                fill=EXCURSION,
                font_weight="bold",
            )


def _legend(report: ShipmentReport) -> Iterable[str]:
    """A key in the top-left corner: each vehicle leg's colour, its number and vehicle."""
    shown = [leg for leg in report.legs if len(leg.series.track)]
    if not shown:
        return
    width = 12 + 7.2 * max(len(f"leg {g.number} {g.stats.leg.asset_id}") for g in shown) + 40
    yield el(
        "rect",
        x=10,
        y=10,
        width=width,
        height=10 + 18 * len(shown),
        fill="#fff",
        fill_opacity="0.85",
        stroke="#bbb",
        class_="route-legend",
    )
    for i, leg in enumerate(shown):
        colour = LEG_COLOURS[(leg.number - 1) % len(LEG_COLOURS)]
        y = 26 + 18 * i
        yield el("line", x1=18, x2=44, y1=y - 4, y2=y - 4, stroke=colour, stroke_width="3")
        yield text(50, y, f"leg {leg.number} {leg.stats.leg.asset_id}", font_size="12", fill="#222")


def _decorations(frame: MapFrame) -> Iterable[str]:
    km = scale_bar_km(frame.km_per_px)
    length = km / frame.km_per_px
    x0, y0 = 24.0, ROUTE_HEIGHT - 22.0
    yield el(
        "line",
        x1=x0,
        x2=x0 + length,
        y1=y0,
        y2=y0,
        stroke="#222",
        stroke_width="2",
        class_="scale-bar",
    )
    for x in (x0, x0 + length):
        yield el("line", x1=x, x2=x, y1=y0 - 5, y2=y0 + 1, stroke="#222", stroke_width="2")
    yield text(
        x0 + length / 2, y0 - 8, f"{km:g} km", font_size="12", text_anchor="middle", fill="#222"
    )
    ax, ay = ROUTE_WIDTH - 30.0, 50.0
    yield el("polygon", points=points([(ax, ay - 22), (ax - 7, ay), (ax + 7, ay)]), fill="#222")
    yield text(ax, ay + 16, "N", font_size="13", text_anchor="middle", fill="#222")

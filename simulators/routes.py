"""Where the trucks drive: real city coordinates, expressway waypoints, great-circle motion and a
GNSS receiver's errors (correlated noise, 2D fixes, short fix losses in tunnels and cuttings).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

__all__ = [
    "CITIES",
    "GpsReading",
    "GpsReceiver",
    "LatLon",
    "Route",
    "bearing_deg",
    "destination",
    "haversine_km",
    "road_path",
]

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True, slots=True)
class LatLon:
    lat: float
    lon: float


# City centres (logistics parks are within a few km, which GNSS noise does not care about).
CITIES: dict[str, LatLon] = {
    "jieyang": LatLon(23.5497, 116.3728),
    "shantou": LatLon(23.3541, 116.6819),
    "guangzhou": LatLon(23.1291, 113.2644),
    "shenzhen": LatLon(22.5431, 114.0579),
    "nantong": LatLon(31.9802, 120.8943),
    "shanghai": LatLon(31.2304, 121.4737),
}

# Expressway corridors between the cities, so a track follows the road's general line instead of
# cutting across the sea (Shantou-Guangzhou runs along the coast via Shanwei and Huizhou;
# Nantong-Shanghai crosses the Yangtze on the Sutong bridge).
_CORRIDORS: dict[tuple[str, str], tuple[LatLon, ...]] = {
    ("jieyang", "shantou"): (LatLon(23.4580, 116.5300),),
    ("shantou", "guangzhou"): (
        LatLon(23.2460, 116.3580),  # Chaoyang
        LatLon(22.9870, 115.8450),  # Lufeng area
        LatLon(22.7860, 115.3750),  # Shanwei
        LatLon(22.8900, 114.9200),  # Haifeng-Huidong
        LatLon(23.1115, 114.4152),  # Huizhou
        LatLon(23.0430, 113.7500),  # Dongguan
        LatLon(23.1070, 113.4600),  # Huangpu
    ),
    ("shenzhen", "guangzhou"): (
        LatLon(22.7200, 113.9000),  # Bao'an
        LatLon(22.9500, 113.6900),  # Humen
        LatLon(23.0500, 113.5000),  # Panyu
    ),
    ("shantou", "shenzhen"): (
        LatLon(23.2460, 116.3580),
        LatLon(22.9870, 115.8450),
        LatLon(22.7860, 115.3750),
        LatLon(22.7800, 114.7000),  # Huidong
        LatLon(22.6700, 114.3300),  # Longgang
    ),
    ("nantong", "shanghai"): (
        LatLon(31.7800, 120.9800),  # Sutong bridge
        LatLon(31.6400, 121.0500),  # Changshu east
        LatLon(31.4570, 121.1300),  # Taicang
        LatLon(31.3300, 121.3000),  # Jiading
    ),
}


def haversine_km(a: LatLon, b: LatLon) -> float:
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(a: LatLon, b: LatLon) -> float:
    """Initial great-circle bearing from a to b, degrees clockwise from north in [0, 360)."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dl = math.radians(b.lon - a.lon)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def destination(a: LatLon, bearing: float, distance_km: float) -> LatLon:
    """The point distance_km from a along the great circle leaving at bearing."""
    d = distance_km / EARTH_RADIUS_KM
    th = math.radians(bearing)
    p1, l1 = math.radians(a.lat), math.radians(a.lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(th))
    l2 = l1 + math.atan2(
        math.sin(th) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    return LatLon(math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0)


def road_path(origin: str, dest: str) -> list[LatLon]:
    """City-to-city waypoints, both ends included; unknown pairs drive the great circle."""
    a, b = CITIES[origin], CITIES[dest]
    if (origin, dest) in _CORRIDORS:
        mid = list(_CORRIDORS[(origin, dest)])
    elif (dest, origin) in _CORRIDORS:
        mid = list(reversed(_CORRIDORS[(dest, origin)]))
    else:
        mid = []
    return [a, *mid, b]


class Route:
    """A polyline with cumulative distances, for 'where am I after driving s km'."""

    def __init__(self, points: list[LatLon]) -> None:
        if len(points) < 2:
            raise ValueError("a route needs at least two points")
        self.points = points
        self.cum_km = [0.0]
        for a, b in itertools.pairwise(points):
            self.cum_km.append(self.cum_km[-1] + haversine_km(a, b))

    @property
    def length_km(self) -> float:
        return self.cum_km[-1]

    def locate(self, s_km: float) -> tuple[LatLon, float]:
        """Position and heading (of the segment being driven) after s_km along the route."""
        s = min(max(s_km, 0.0), self.length_km)
        i = 0
        while i < len(self.cum_km) - 2 and self.cum_km[i + 1] < s:
            i += 1
        a, b = self.points[i], self.points[i + 1]
        heading = bearing_deg(a, b)
        here = destination(a, heading, s - self.cum_km[i])
        # Follow the great circle's local heading, not the segment's initial one.
        local = bearing_deg(here, b) if haversine_km(here, b) > 1e-3 else heading
        return here, local


@dataclass(frozen=True, slots=True)
class GpsReading:
    fix: str  # "none" | "2d" | "3d"
    lat: float | None
    lon: float | None
    hdop: float | None


class GpsReceiver:
    """A phone-grade GNSS receiver: ~4 m error that wanders slowly, occasional fix loss.

    Errors are a first-order Gauss-Markov process (correlation ~1 min) because real position
    errors drift with the satellite geometry instead of jumping independently every fix.
    """

    def __init__(
        self,
        rng: random.Random,
        sigma_m: float = 4.0,
        loss_probability: float = 0.004,
        mean_loss_samples: float = 3.0,
    ) -> None:
        self._rng = rng
        self._sigma_m = sigma_m
        self._loss_p = loss_probability
        self._mean_loss = mean_loss_samples
        self._east_m = 0.0
        self._north_m = 0.0
        self._lost_for = 0

    def read(self, true_pos: LatLon, dt_s: float) -> GpsReading:
        rng = self._rng
        if self._lost_for > 0:
            self._lost_for -= 1
            return GpsReading("none", None, None, None)
        if rng.random() < self._loss_p:
            self._lost_for = max(0, round(rng.expovariate(1.0 / self._mean_loss)) - 1)
            return GpsReading("none", None, None, None)
        rho = math.exp(-dt_s / 60.0)
        kick = self._sigma_m * math.sqrt(1.0 - rho * rho)
        self._east_m = rho * self._east_m + rng.gauss(0.0, kick)
        self._north_m = rho * self._north_m + rng.gauss(0.0, kick)
        two_d = rng.random() < 0.03
        hdop = round(rng.uniform(0.7, 1.4) * (2.5 if two_d else 1.0), 1)
        scale = 2.5 if two_d else 1.0
        lat = true_pos.lat + scale * self._north_m / 111_320.0
        lon = true_pos.lon + scale * self._east_m / (111_320.0 * math.cos(math.radians(lat)))
        return GpsReading("2d" if two_d else "3d", round(lat, 6), round(lon, 6), hdop)

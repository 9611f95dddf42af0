"""Downsampled temperature series and GPS tracks of a trace, and the limits that bound them.

A trace carries, per custody leg, the product and air temperature as buckets of
``resolution_s`` with the minimum, maximum and mean of each bucket (so a 10-minute spike
survives a 1-hour bucket in its maximum), and for vehicle legs the GPS track as one position
per bucket plus the positions where the leg's excursions started. The database aggregates
(InfluxQL ``GROUP BY time``); this module holds the shapes and the arithmetic that bounds a
read: ``choose_resolution`` refuses a resolution that would give a leg more than
``MAX_BUCKETS_PER_LEG`` buckets. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from coldchain.exceptions import ColdchainError

__all__ = [
    "DEFAULT_BUCKETS_PER_LEG",
    "MAX_BUCKETS_PER_LEG",
    "MAX_RESOLUTION_S",
    "MIN_RESOLUTION_S",
    "NICE_RESOLUTIONS_S",
    "Buckets",
    "ExcursionStart",
    "LegSeries",
    "TraceRefused",
    "Track",
    "choose_resolution",
    "page_windows",
]

# Below 10 s a bucket holds at most one reading of any real logger: no downsampling left.
MIN_RESOLUTION_S = 10
MAX_RESOLUTION_S = 86_400
# The default resolution gives the longest leg at most about this many buckets.
DEFAULT_BUCKETS_PER_LEG = 500
# A caller's resolution may not give any leg more (a 7-day leg at 2 min is 5040: refused).
MAX_BUCKETS_PER_LEG = 5000
# The steps the default picks from: each divides a day, so buckets align with local hours in
# whole-hour time zones.
NICE_RESOLUTIONS_S = (
    10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1200, 1800,
    3600, 7200, 10800, 14400, 21600, 43200, 86400,
)  # fmt: skip


class TraceRefused(ColdchainError):
    """The trace asked for is too large to read within the documented bounds (HTTP 422): the
    message names the limit and what to ask for instead."""


def choose_resolution(leg_spans_ms: Sequence[int], requested_s: int | None) -> int:
    """The bucket width in seconds for legs spanning ``leg_spans_ms`` (ms each).

    ``requested_s`` None: the smallest of ``NICE_RESOLUTIONS_S`` giving the longest leg at most
    ``DEFAULT_BUCKETS_PER_LEG`` buckets. Otherwise it must lie in
    [``MIN_RESOLUTION_S``, ``MAX_RESOLUTION_S``] and give no leg more than
    ``MAX_BUCKETS_PER_LEG`` buckets. Raises ``TraceRefused`` naming the smallest resolution
    that would do, or ``ValueError`` for a resolution out of its bounds.
    """
    longest_s = max((max(0, s) for s in leg_spans_ms), default=0) / 1000.0
    if requested_s is None:
        wanted = longest_s / DEFAULT_BUCKETS_PER_LEG
        for step in NICE_RESOLUTIONS_S:
            if step >= wanted:
                return step
        requested_s = MAX_RESOLUTION_S
    if not MIN_RESOLUTION_S <= requested_s <= MAX_RESOLUTION_S:
        raise ValueError(
            f"resolution_s must be within {MIN_RESOLUTION_S}..{MAX_RESOLUTION_S}, got {requested_s}"
        )
    buckets = math.ceil(longest_s / requested_s) + 1  # +1: buckets align to the epoch
    if buckets > MAX_BUCKETS_PER_LEG:
        need = math.ceil(longest_s / (MAX_BUCKETS_PER_LEG - 1))
        if need > MAX_RESOLUTION_S:
            raise TraceRefused(
                f"the longest custody leg spans {longest_s / 86_400:.0f} days: more than "
                f"{MAX_BUCKETS_PER_LEG} buckets even at resolution_s={MAX_RESOLUTION_S}; "
                "ask for the trace as of an earlier time (at=...)"
            )
        raise TraceRefused(
            f"resolution_s={requested_s} gives the longest custody leg "
            f"({longest_s / 3600:.1f} h) {buckets} buckets, more than {MAX_BUCKETS_PER_LEG}: "
            f"use resolution_s >= {need}, or leave it out for the default"
        )
    return requested_s


def page_windows(
    t_ms: Sequence[int], n: Sequence[int], from_ms: int, to_ms: int, page_rows: int
) -> list[tuple[int, int]]:
    """[start, stop) time windows covering [from_ms, to_ms] (the last stops at to_ms + 1),
    each holding at most ``page_rows`` values by the counts ``n`` of the buckets starting at
    ``t_ms`` (in order, as ``Buckets``), unless one bucket alone holds more: windows split only
    at bucket starts. So a stream of a leg reads a bounded range per request."""
    windows: list[tuple[int, int]] = []
    start, held = from_ms, 0
    for t, count in zip(t_ms, n, strict=True):
        if held and held + count > page_rows and t > start:
            windows.append((start, t))
            start, held = t, 0
        held += count
    windows.append((start, to_ms + 1))
    return windows


@dataclass(frozen=True, slots=True)
class Buckets:
    """Temperature buckets, as columns of equal length, in time order: ``t_ms`` the bucket's
    start (buckets align to multiples of the resolution since the epoch, so the first and last
    may reach past the leg), ``min_c``/``max_c``/``mean_c`` over the plausible readings in it,
    ``n`` how many. Empty buckets are left out: a hole in ``t_ms`` is a hole in the data."""

    t_ms: tuple[int, ...] = ()
    min_c: tuple[float, ...] = ()
    max_c: tuple[float, ...] = ()
    mean_c: tuple[float, ...] = ()
    n: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.t_ms)


@dataclass(frozen=True, slots=True)
class Track:
    """GPS positions with a fix, one per bucket (the bucket's last), as columns: ``t_ms`` the
    bucket's start, ``lat``/``lon`` in degrees (WGS 84)."""

    t_ms: tuple[int, ...] = ()
    lat: tuple[float, ...] = ()
    lon: tuple[float, ...] = ()

    def __len__(self) -> int:
        return len(self.t_ms)


@dataclass(frozen=True, slots=True)
class ExcursionStart:
    """Where the vehicle was when an excursion started: the last position with a fix at or
    before the start (within ``timeseries.reads.POSITION_LOOKBACK_MS``), ``t_ms`` that
    position's own time."""

    excursion_id: str
    t_ms: int
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class LegSeries:
    """One leg's downsampled view: ``product`` and ``air`` temperature buckets, the probe role
    its statistics used (``control_probe``: ``product``, else ``air``, None without readings),
    and for a vehicle the ``track`` and ``excursion_starts``."""

    resolution_s: int
    control_probe: str | None = None
    product: Buckets = field(default_factory=Buckets)
    air: Buckets = field(default_factory=Buckets)
    track: Track = field(default_factory=Track)
    excursion_starts: tuple[ExcursionStart, ...] = ()

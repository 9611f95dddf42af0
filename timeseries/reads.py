"""Reading telemetry back from InfluxDB: the rules engine's batch mode and traces.

``read_samples`` rebuilds the contract's ``Sample`` objects of one asset over a window from the
stored points, so the batch evaluator gets exactly the input the streaming one got: one code
path (samples -> observations) for both.

For traces every read is bounded: buckets and tracks are aggregated by InfluxDB (``GROUP BY
time``, so at most span / resolution rows), ``stream_control_values`` pages through raw
readings ``page_rows`` at a time (keyset on time), so the exact statistics of a leg of any
length take constant memory, and an excursion's position is one row. Each is a ``Read``
(statement + parser); ``run_all`` sends several in one request.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

from coldchain.contract import CompartmentState, Position, Sample
from coldchain.exceptions import StoreError
from coldchain.series import Buckets, ExcursionStart, Track
from timeseries.client import InfluxClient, Series

__all__ = [
    "PAGE_ROWS",
    "POSITION_LOOKBACK_MS",
    "Read",
    "buckets_read",
    "implausible",
    "page_read",
    "position_read",
    "quote_ident",
    "quote_str",
    "read_clock_jumps",
    "read_samples",
    "run_all",
    "stream_control_values",
    "track_read",
]

T = TypeVar("T")

# Raw rows per InfluxDB request when streaming a leg (~1.5 MB of JSON; a 1-year leg at one
# reading a minute is 11 requests).
PAGE_ROWS = 50_000
# How far before an excursion's start its position may lie (a GNSS outage in a tunnel).
POSITION_LOOKBACK_MS = 30 * 60_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Fix = Literal["none", "2d", "3d"]
_FIXES: dict[Any, Fix] = {"none": "none", "2d": "2d", "3d": "3d"}


def quote_str(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_ident(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _window(asset_id: str, from_ms: int, to_ms: int) -> str:
    return (
        f"WHERE {quote_ident('asset')} = {quote_str(asset_id)}"
        f" AND time >= {from_ms}ms AND time <= {to_ms}ms"
    )


def read_samples(client: InfluxClient, asset_id: str, from_ms: int, to_ms: int) -> list[Sample]:
    """The asset's samples in [from_ms, to_ms], in device-time order (temperatures, doors,
    reefer mode and setpoint, speed and GNSS fix: what the rules read)."""
    where = _window(asset_id, from_ms, to_ms)
    temps: dict[int, dict[str, float]] = defaultdict(dict)
    comps: dict[int, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    speeds: dict[int, tuple[float | None, Fix]] = {}
    q = (
        f'SELECT "temp_c" FROM "temperature" {where} GROUP BY "sensor";'
        f'SELECT "open" FROM "door" {where} GROUP BY "compartment";'
        f'SELECT "mode", "setpoint_c" FROM "reefer" {where} GROUP BY "compartment";'
        f'SELECT "speed_kmh", "fix" FROM "position" {where}'
    )
    for series in client.query(q):
        for rec in series.records():
            t = int(rec["time"])
            if series.name == "temperature":
                temps[t][series.tags["sensor"]] = float(rec["temp_c"])
            elif series.name == "door":
                comps[t][series.tags["compartment"]]["door_open"] = bool(rec["open"])
            elif series.name == "reefer":
                state = comps[t][series.tags["compartment"]]
                if rec.get("mode") is not None:
                    state["mode"] = rec["mode"]
                if rec.get("setpoint_c") is not None:
                    state["setpoint_c"] = float(rec["setpoint_c"])
            elif series.name == "position":
                v = rec.get("speed_kmh")
                fix = rec.get("fix")
                speeds[t] = (None if v is None else float(v), _FIXES.get(fix, "3d"))
    out = []
    for t in sorted(temps.keys() | comps.keys() | speeds.keys()):
        # model_construct: these values passed validation on the way in.
        out.append(
            Sample.model_construct(
                ts=_EPOCH + timedelta(milliseconds=t),
                seq=0,
                temps_c=temps.get(t, {}),
                position=Position.model_construct(speed_kmh=speeds[t][0], fix=speeds[t][1])
                if t in speeds
                else None,
                compartments={
                    c: CompartmentState.model_construct(**kw) for c, kw in comps.get(t, {}).items()
                },
                power=None,
                signal_dbm=None,
            )
        )
    return out


def read_clock_jumps(
    client: InfluxClient, asset_id: str, from_ms: int, to_ms: int
) -> list[tuple[int, int]]:
    """Forward jumps of the asset's device clocks in [from_ms, to_ms], as the rules engine
    wrote them live (``clock`` points): ``(device time after the jump, jump ms)`` in order."""
    q = f'SELECT "jump_ms" FROM "clock" {_window(asset_id, from_ms, to_ms)}'
    out = []
    for series in client.query(q):
        for rec in series.records():
            if rec.get("jump_ms") is not None:
                out.append((int(rec["time"]), int(rec["jump_ms"])))
    return sorted(out)


def _compartment(asset_id: str, compartment_id: str, from_ms: int, to_ms: int) -> str:
    return (
        f"{_window(asset_id, from_ms, to_ms)}"
        f" AND {quote_ident('compartment')} = {quote_str(compartment_id)}"
    )


def _plausible(plausible_c: tuple[float, float] | None) -> str:
    if plausible_c is None:
        return ""
    return f' AND "temp_c" >= {float(plausible_c[0])!r} AND "temp_c" <= {float(plausible_c[1])!r}'


@dataclass(frozen=True, slots=True)
class Read(Generic[T]):
    """One InfluxQL statement and how to read its result: several go in one request
    (``run_all``), which saves a round trip each on a busy machine."""

    statement: str
    parse: Callable[[list[Series]], T]


def run_all(client: InfluxClient, reads: Sequence[Read[Any]]) -> list[Any]:
    """Every read's parsed result, in order, from one InfluxDB request."""
    if not reads:
        return []
    results = client.query_each(";".join(r.statement for r in reads))
    if len(results) != len(reads):
        raise StoreError(f"InfluxDB answered {len(results)} results to {len(reads)} statements")
    return [r.parse(res) for r, res in zip(reads, results, strict=True)]


def buckets_read(
    asset_id: str,
    compartment_id: str,
    from_ms: int,
    to_ms: int,
    resolution_s: int,
    plausible_c: tuple[float, float] | None = None,
) -> Read[dict[str, Buckets]]:
    """The compartment's temperatures in [from_ms, to_ms] as buckets of ``resolution_s``, per
    probe role (``{"product": Buckets, "air": Buckets}``, a role without readings absent):
    min, max, mean and count per bucket, of the values inside ``plausible_c`` if given. At most
    (to_ms - from_ms) / resolution_s + 1 rows per role: InfluxDB aggregates.

    A condition on the value makes InfluxDB 1.x aggregate point by point (about three times
    slower) and an implausible value is rare: read without ``plausible_c`` first, and again
    with it only if ``implausible`` says a bucket holds one (as ``api.trace`` does)."""
    return Read(
        'SELECT min("temp_c"), max("temp_c"), mean("temp_c"), count("temp_c")'
        f' FROM "temperature" {_compartment(asset_id, compartment_id, from_ms, to_ms)}'
        f'{_plausible(plausible_c)} GROUP BY time({int(resolution_s)}s), "probe" fill(none)',
        _buckets,
    )


def implausible(buckets: dict[str, Buckets], plausible_c: tuple[float, float] | None) -> bool:
    """Whether some bucket's minimum or maximum lies outside ``plausible_c``."""
    if plausible_c is None:
        return False
    lo, hi = plausible_c
    return any(len(b) and (min(b.min_c) < lo or max(b.max_c) > hi) for b in buckets.values())


def _buckets(found: list[Series]) -> dict[str, Buckets]:
    out: dict[str, Buckets] = {}
    for series in found:
        rows = [r for r in series.values if r[4]]
        out[series.tags.get("probe", "")] = Buckets(
            t_ms=tuple(int(r[0]) for r in rows),
            min_c=tuple(float(r[1]) for r in rows),
            max_c=tuple(float(r[2]) for r in rows),
            mean_c=tuple(float(r[3]) for r in rows),
            n=tuple(int(r[4]) for r in rows),
        )
    return out


def _rows(found: list[Series]) -> list[list[Any]]:
    return [row for series in found for row in series.values]


def page_read(
    asset_id: str,
    compartment_id: str,
    probe: str,
    start_ms: int,
    stop_ms: int,
    page_rows: int = PAGE_ROWS,
) -> Read[list[list[Any]]]:
    """One page of ``stream_control_values``: at most ``page_rows`` rows ``(ts_ms, temp_c)`` of
    the ``probe``-role probes in [start_ms, stop_ms), in time order."""
    return Read(
        f'SELECT "temp_c" FROM "temperature" WHERE {quote_ident("asset")} = {quote_str(asset_id)}'
        f" AND {quote_ident('compartment')} = {quote_str(compartment_id)}"
        f" AND {quote_ident('probe')} = {quote_str(probe)}"
        # "<= stop - 1", not "< stop": the last window stops 1 ms after the leg, which may be
        # past the last instant InfluxDB can hold.
        f" AND time >= {int(start_ms)}ms AND time <= {int(stop_ms) - 1}ms"
        f" ORDER BY time LIMIT {int(page_rows)}",
        _rows,
    )


def stream_control_values(
    client: InfluxClient,
    asset_id: str,
    compartment_id: str,
    probe: str,
    from_ms: int,
    to_ms: int,
    plausible_c: tuple[float, float] | None = None,
    page_rows: int = PAGE_ROWS,
    first_page: list[list[Any]] | None = None,
    windows: Sequence[tuple[int, int]] | None = None,
) -> Iterator[tuple[int, float]]:
    """Every value inside ``plausible_c`` of the compartment's ``probe``-role probes in
    [from_ms, to_ms], ``(ts_ms, temp_c)`` in time order (probes sharing an instant follow each
    other: see ``coldchain.trace.instant_means``), fetched ``page_rows`` at a time.

    ``windows`` ([start, stop) covering the span, e.g. ``coldchain.series.page_windows`` from
    the bucket counts) bound each request's time range as well: InfluxDB 1.x opens every shard
    a query's range covers, LIMIT or not, so a year in one range costs ~0.3 s a page before
    the first row. ``first_page``: the first window's first page, already fetched
    (``page_read``). Within a window, keyset paging on time: a full page's last instant may
    continue on the next page, so its rows are held back and the next page starts at that
    instant. Memory: one page. Implausible values are dropped here, not in the query (a
    condition on the value slows InfluxDB down more than the few it removes). Raises
    StoreError if more than ``page_rows`` values share one instant (a corrupt tag set)."""
    lo, hi = plausible_c if plausible_c is not None else (-math.inf, math.inf)
    rows = first_page
    for start, stop in windows or ((from_ms, to_ms + 1),):
        while True:
            if rows is None:
                read = page_read(asset_id, compartment_id, probe, start, stop, page_rows)
                (rows,) = run_all(client, [read])
            full = len(rows) >= page_rows
            last = rows[-1][0] if rows else None
            complete = [row for row in rows if row[0] != last] if full else rows
            if full and not complete:
                raise StoreError(
                    f"more than {page_rows} temperature values at one instant on "
                    f"{asset_id}/{compartment_id} ({last} ms): cannot page through them"
                )
            for t, temp in complete:
                if lo <= temp <= hi:
                    yield int(t), float(temp)
            rows = None
            if not full:
                break
            start = int(last)  # type: ignore[arg-type]


# Positions without a GNSS fix are not places: never drawn, never a marker.
_WITH_FIX = f"{quote_ident('fix')} <> 'none'"


def _track(found: list[Series]) -> Track:
    rows = [r for r in _rows(found) if r[1] is not None and r[2] is not None]
    return Track(
        t_ms=tuple(int(r[0]) for r in rows),
        lat=tuple(float(r[1]) for r in rows),
        lon=tuple(float(r[2]) for r in rows),
    )


def track_read(asset_id: str, from_ms: int, to_ms: int, resolution_s: int) -> Read[Track]:
    """The asset's GPS track in [from_ms, to_ms]: the last position with a fix in each bucket of
    ``resolution_s`` (buckets without one are left out)."""
    return Read(
        'SELECT last("lat"), last("lon") FROM "position"'
        f" {_window(asset_id, from_ms, to_ms)} AND {_WITH_FIX}"
        f" GROUP BY time({int(resolution_s)}s) fill(none)",
        _track,
    )


def position_read(
    asset_id: str, excursion_id: str, start_ms: int, lookback_ms: int = POSITION_LOOKBACK_MS
) -> Read[ExcursionStart | None]:
    """Where the asset was when an excursion started: its last position with a fix at or before
    ``start_ms`` and at most ``lookback_ms`` earlier (None without one). One row."""

    def parse(found: list[Series]) -> ExcursionStart | None:
        for t, lat, lon in _rows(found)[:1]:
            if lat is not None and lon is not None:
                return ExcursionStart(excursion_id, int(t), float(lat), float(lon))
        return None

    return Read(
        f'SELECT "lat", "lon" FROM "position" {_window(asset_id, start_ms - lookback_ms, start_ms)}'
        f" AND {_WITH_FIX} ORDER BY time DESC LIMIT 1",
        parse,
    )

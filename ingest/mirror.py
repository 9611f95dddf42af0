"""The registry mirror: registry facts the dashboards need, copied into InfluxDB so that every
dashboard query stays InfluxQL (docs/dashboards.md, "Registry mirror").

Every pass (``interval_s``, default 30 s) writes:

- ``excursion_state`` (tags asset, compartment, rule; time = the excursion's start): the
  current state of each excursion whose registry row changed since the last pass, by the
  rules engine or by an acknowledgement through the API/CLI (both stamp ``updated_ms``);
- ``excursion_open`` (same tags; time = the pass's snapshot minute): one point per open
  excursion, and a last point with ``open`` false for one that closed (at the minute its
  closure was recorded), so a range ending at any time shows what was open then, however long
  ago it began;
- ``asset_status`` (tags asset, kind; snapshot minute): per asset, open excursions by severity
  and the worst one's rank (0 none, 1 info, 2 warning, 3 critical), also when none is open;
- ``compartment_limit`` (tags asset, compartment, kind), ``device_limit`` (tags asset, device,
  kind): the profile in force, its range band and its data-gap limit (``gap_limit_s``; for a
  device the smallest of its asset's compartments); ``site`` (tags asset, kind): a store's fixed
  location from the fleet; ``dead_letter`` (tag reason): dead letters held in the spool.

Guarantees:
- Idempotent: every point has a fixed time (the excursion's start, or the snapshot minute), so
  writing it again overwrites it; passes may repeat freely.
- Crash-safe without state of its own: the first pass after a start re-mirrors every excursion
  changed in the last ``resync_s`` (default 30 days) and every open one; later passes re-read
  changes from ``overlap_s`` (default 5 min) before the newest change already mirrored, so a
  row committed late, or stamped by a process whose clock lags by less than that, is still
  mirrored (rows read again and unchanged since are not written again).
- Nothing here is on the ingest hot path: a failed pass (registry or InfluxDB down) is logged,
  counted, and retried at the next pass from the same point.
- Lag: a change reaches InfluxDB within one ``interval_s`` (plus the write).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from coldchain.fleet import Fleet
from coldchain.lineprotocol import FieldValue, format_fields, series_key
from coldchain.rules.kinds import gap_cap_ms, gap_spec
from coldchain.rules.profiles import ProfileSet, RangeRule
from registry import Registry
from registry.records import ExcursionRecord, ProfileAssignment

__all__ = [
    "SEVERITY_RANK",
    "SNAPSHOT_MS",
    "CompartmentLimit",
    "RegistryMirror",
    "compartment_limits",
    "excursion_open_line",
    "excursion_state_line",
    "snapshot_lines",
]

log = logging.getLogger("coldchain.ingest.mirror")

SEVERITY_RANK: dict[str, int] = {"info": 1, "warning": 2, "critical": 3}
SNAPSHOT_MS = 60_000  # snapshots are floored to the minute: one point per minute per series
_PAGE = 5_000


class CompartmentLimit(NamedTuple):
    """The profile in force for a compartment, its range band (degC, None: open-ended) and its
    data-gap limit in seconds (coldchain.rules.kinds.gap_cap_ms: 10 min in transport, 30 min
    in storage unless the profile says otherwise)."""

    profile: str
    band_min_c: float | None
    band_max_c: float | None
    gap_limit_s: float


def compartment_limits(
    fleet: Fleet, profiles: ProfileSet, assignments: Iterable[ProfileAssignment], now_ms: int
) -> dict[tuple[str, str], CompartmentLimit]:
    """(asset, compartment) -> its limits at ``now_ms``: the newest registry assignment at or
    before ``now_ms``, else the fleet file's profile. An unknown profile gives no band and the
    default gap limit."""
    current: dict[tuple[str, str], str] = {}
    for a in sorted(assignments, key=lambda a: a.from_ms):
        if a.from_ms <= now_ms:
            current[(a.asset_id, a.compartment_id)] = a.profile
    out: dict[tuple[str, str], CompartmentLimit] = {}
    for asset in fleet.assets.values():
        for comp in asset.compartments:
            name = current.get((asset.id, comp.id), comp.profile)
            profile = profiles.get(name)
            band = None
            if profile is not None:
                band = next((r for r in profile.rules if isinstance(r, RangeRule)), None)
            cap_ms = gap_cap_ms(gap_spec(profile) if profile else None, asset.kind)
            out[(asset.id, comp.id)] = CompartmentLimit(
                name,
                band.min_c if band else None,
                band.max_c if band else None,
                cap_ms / 1000.0,
            )
    return out


def _tags(rec: ExcursionRecord) -> dict[str, str | None]:
    e = rec.excursion
    return {"asset": e.asset_id, "compartment": e.compartment_id, "rule": e.rule}


def excursion_state_line(rec: ExcursionRecord) -> str:
    """The ``excursion_state`` point of one excursion, at its start (ms)."""
    e = rec.excursion
    fields: dict[str, FieldValue] = {
        "id": e.id,
        "kind": e.kind,
        "severity": e.severity,
        "severity_rank": SEVERITY_RANK.get(e.severity, 0),
        "status": e.status,
        "open": e.status == "open",
        "end_ms": e.end_ms,
        "peak_c": e.peak_c,
        "degree_minutes": e.degree_minutes,
        "detected_late": e.detected_late,
        "superseded": e.superseded,
        "detail": e.detail[:500],
        "ack_by": rec.ack_by,
        "ack_ms": rec.ack_ms,
        "ack_count": rec.ack_count,
        "updated_ms": rec.updated_ms,
    }
    return f"{series_key('excursion_state', _tags(rec))} {format_fields(fields)} {e.start_ms}"


def excursion_open_line(rec: ExcursionRecord, at_ms: int | None = None) -> str:
    """The ``excursion_open`` snapshot point of one excursion at ``at_ms``; ``open`` false for
    one that is closed, recovered or superseded (the snapshot that ends it). Without
    ``at_ms``: the minute its row last changed (``updated_ms``), at or after every snapshot
    that still saw it open, so a re-mirror after a restart writes it where it was."""
    e = rec.excursion
    if at_ms is None:
        at_ms = rec.updated_ms - rec.updated_ms % SNAPSHOT_MS
    fields: dict[str, FieldValue] = {
        "id": e.id,
        "open": e.status == "open" and not e.superseded,
        "kind": e.kind,
        "severity": e.severity,
        "severity_rank": SEVERITY_RANK.get(e.severity, 0),
        "status": e.status,
        "start_ms": e.start_ms,
        "peak_c": e.peak_c,
        "ack_by": rec.ack_by,
        "acknowledged": rec.ack_ms is not None,
    }
    return f"{series_key('excursion_open', _tags(rec))} {format_fields(fields)} {at_ms}"


def snapshot_lines(
    fleet: Fleet,
    open_now: Iterable[ExcursionRecord],
    limits: Mapping[tuple[str, str], CompartmentLimit],
    at_ms: int,
    dead_letters: Mapping[str, int] | None = None,
) -> list[str]:
    """``asset_status`` per asset, ``compartment_limit``, ``device_limit``, ``site`` and
    ``dead_letter`` points at ``at_ms`` (excursions not in ``fleet`` count for no asset)."""
    counts: dict[str, dict[str, int]] = {a: {} for a in fleet.assets}
    for rec in open_now:
        per = counts.get(rec.excursion.asset_id)
        if per is not None:
            per[rec.excursion.severity] = per.get(rec.excursion.severity, 0) + 1
    lines: list[str] = []
    for asset in fleet.assets.values():
        per = counts[asset.id]
        worst = max(per, key=lambda s: SEVERITY_RANK.get(s, 0), default=None)
        status: dict[str, FieldValue] = {
            "open_excursions": sum(per.values()),
            "open_critical": per.get("critical", 0),
            "open_warning": per.get("warning", 0),
            "open_info": per.get("info", 0),
            "worst_rank": SEVERITY_RANK.get(worst, 0) if worst else 0,
            "worst_severity": worst or "none",
        }
        tags: dict[str, str | None] = {"asset": asset.id, "kind": asset.kind}
        lines.append(f"{series_key('asset_status', tags)} {format_fields(status)} {at_ms}")
        if asset.location is not None:
            site: dict[str, FieldValue] = {
                "lat": asset.location.lat,
                "lon": asset.location.lon,
                "name": asset.name or asset.id,
            }
            lines.append(f"{series_key('site', tags)} {format_fields(site)} {at_ms}")
        gaps = []
        for comp in asset.compartments:
            limit = limits.get((asset.id, comp.id))
            if limit is None:
                continue
            gaps.append(limit.gap_limit_s)
            key = series_key(
                "compartment_limit", {"asset": asset.id, "compartment": comp.id, "kind": asset.kind}
            )
            values: dict[str, FieldValue] = {
                "profile": limit.profile,
                "band_min_c": limit.band_min_c,
                "band_max_c": limit.band_max_c,
                "gap_limit_s": limit.gap_limit_s,
            }
            lines.append(f"{key} {format_fields(values)} {at_ms}")
        for device in asset.devices if gaps else ():
            key = series_key(
                "device_limit", {"asset": asset.id, "device": device, "kind": asset.kind}
            )
            lines.append(f"{key} {format_fields({'gap_limit_s': min(gaps)})} {at_ms}")
    for reason, held in sorted((dead_letters or {}).items()):
        key = series_key("dead_letter", {"reason": reason})
        lines.append(f"{key} {format_fields({'held': held})} {at_ms}")
    return lines


class RegistryMirror:
    """One mirror: ``pass_once()`` now, or ``run(stopping)`` every ``interval_s`` until set.

    ``write`` takes line protocol (ms precision) and raises on failure (InfluxClient.write);
    ``profiles`` are the rules engine's; ``dead_letter_counts`` (optional) gives the spool's
    letters held per reason. See the module docstring for the guarantees.
    """

    def __init__(
        self,
        registry: Registry,
        fleet: Fleet,
        write: Callable[[bytes], None],
        profiles: ProfileSet,
        *,
        clock_ms: Callable[[], int],
        interval_s: float = 30.0,
        overlap_s: float = 300.0,
        resync_s: float = 30 * 86_400.0,
        dead_letter_counts: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self._registry = registry
        self.fleet = fleet
        self._write = write
        self._profiles = profiles
        self._clock_ms = clock_ms
        self.interval_s = interval_s
        self._overlap_ms = round(overlap_s * 1000)
        self._resync_ms = round(resync_s * 1000)
        self._dead_letter_counts = dead_letter_counts
        self._newest_ms: int | None = None  # newest updated_ms mirrored; None: resync
        # id -> updated_ms already mirrored, for the rows the overlap reads again
        self._seen: dict[str, int] = {}
        self.passes = 0
        self.failures = 0
        self.points = 0

    def pass_once(self) -> int:
        """One pass; returns the points written. Raises what the registry or the writer
        raises (then the next pass starts from the same point)."""
        now = self._clock_ms()
        at = now - now % SNAPSHOT_MS
        reg = self._registry
        if self._newest_ms is None:
            since = now - self._resync_ms
        else:
            since = self._newest_ms - self._overlap_ms
        first_since = since
        changed: dict[str, ExcursionRecord] = {}
        while True:
            page = reg.excursions_updated_since(since, limit=_PAGE)
            changed.update(
                (r.excursion.id, r) for r in page if self._seen.get(r.excursion.id) != r.updated_ms
            )
            if len(page) < _PAGE:
                break
            # A full page: go on from its newest change (>=: the boundary ms is read again;
            # a page of one single ms moves on past it).
            last = page[-1].updated_ms
            since = last if last > since else since + 1
        open_now = reg.find_excursions(status="open", superseded=False)
        lines = [excursion_state_line(r) for r in changed.values()]
        open_ids = {r.excursion.id for r in open_now}
        # Changed and not open any more: the snapshot that ends it in excursion_open. First:
        # an excursion of the same rule and compartment opening in the same minute has the
        # same series and time, and the later line of a batch wins.
        lines += [excursion_open_line(r) for i, r in changed.items() if i not in open_ids]
        lines += [excursion_open_line(r, at) for r in open_now]
        limits = compartment_limits(self.fleet, self._profiles, reg.profile_history(), now)
        dead = self._dead_letter_counts() if self._dead_letter_counts else None
        lines += snapshot_lines(self.fleet, open_now, limits, at, dead)
        self._write("\n".join(lines).encode())
        self._seen = {i: ms for i, ms in self._seen.items() if ms >= first_since}
        self._seen.update((i, r.updated_ms) for i, r in changed.items())
        newest = max((r.updated_ms for r in changed.values()), default=None)
        if newest is not None:
            self._newest_ms = max(newest, self._newest_ms or newest)
        elif self._newest_ms is None:
            self._newest_ms = now - self._overlap_ms
        self.passes += 1
        self.points += len(lines)
        return len(lines)

    def stats(self) -> dict[str, object]:
        """Counters for ``/metrics``: passes done, passes failed, points written."""
        return {
            "mirror_passes": self.passes,
            "mirror_failures": self.failures,
            "mirror_points": self.points,
        }

    def run(self, stopping: threading.Event) -> None:
        """Pass every ``interval_s`` until ``stopping`` is set; a failed pass is logged and
        retried at the next one."""
        while True:
            try:
                self.pass_once()
            except Exception as exc:  # registry or InfluxDB down: retried next pass
                self.failures += 1
                log.warning("registry mirror pass failed, retrying: %s", exc)
            if stopping.wait(self.interval_s):
                return

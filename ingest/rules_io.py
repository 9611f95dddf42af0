"""What the evaluate stage takes in and puts out: its work items, the alert payload and the
InfluxDB lines it writes (``excursion`` annotations, ``clock`` jumps). Pure formatting."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from coldchain.contract import Sample
from coldchain.fleet import Fleet
from coldchain.lineprotocol import format_fields, series_key
from coldchain.rules import Change

__all__ = [
    "Accepted",
    "CustodyChange",
    "FleetUpdate",
    "Heartbeat",
    "Pending",
    "RecomputeRequest",
    "alert_key",
    "alert_payload",
    "clock_line",
    "excursion_line",
]


class Accepted(NamedTuple):
    """Validated samples of one message, and the spool row that holds their points.

    ``device_id`` and ``received_ms`` (the receive time on the ingest clock) let the stage
    watch the device's clock and its rewrites; without them the samples are only evaluated.
    (A NamedTuple: one is made per message on the hot path, ~1 us cheaper than a frozen
    dataclass.)
    """

    asset_id: str
    samples: Sequence[Sample]
    row_id: int
    device_id: str = ""
    received_ms: int | None = None
    # A rules worker: the receiving ingest process's fleet clock reference (ms, <= 0).
    ref_ms: int | None = None
    # The message as received (a reference, not a copy), when it was accepted whole (no unit
    # rejected): a rules child process parses it again instead of being sent the samples
    # (ingest.rules_child). Never forwarded.
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """An ingest process (``source``) has forwarded everything it received before
    ``received_ms`` (its clock): a rules worker's watermark. Never reaches the engine."""

    source: str
    received_ms: int
    row_id: int = 0


@dataclass(frozen=True, slots=True)
class CustodyChange:
    """A load/unload/handover scan: cumulative budgets of the compartment restart."""

    asset_id: str
    compartment_id: str
    ts_ms: int
    row_id: int = 0


@dataclass(frozen=True, slots=True)
class FleetUpdate:
    """A reloaded fleet, in order with the samples: those submitted before it were validated
    against the old fleet, those after against this one. ``row_id``: the spool row after the
    last one submitted before it."""

    fleet: Fleet
    row_id: int


@dataclass(frozen=True, slots=True)
class RecomputeRequest:
    """Recompute every compartment of an asset from InfluxDB from ``from_ms`` (device time;
    < 0: from what the checkpoint holds for it) up to at least ``to_ms`` (the newest device
    time acknowledged before the restart; None: unknown, everything stored), holding its new
    samples until then. Sent by an ingest process that restarted with acknowledged samples it
    had not forwarded yet."""

    asset_id: str
    from_ms: int
    row_id: int = 0
    to_ms: int | None = None


@dataclass
class Pending:
    """A compartment to recompute from InfluxDB from ``from_ms`` once the writer has passed
    spool row ``need_row``. ``hold``: its streaming state misses acknowledged samples (after a
    restart or a spill), so new samples of its asset wait for the recompute instead.
    ``to_ms``: the newest device time the recompute must cover (the stage reads up to it or to
    what it has been fed for the asset, whichever is newer, never samples it has not been fed
    yet); None: unknown (e.g. spilled messages), so it reads everything stored."""

    from_ms: int
    need_row: int
    hold: bool = False
    asked_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    to_ms: int | None = None

    def widen(self, from_ms: int, need_row: int, hold: bool, to_ms: int | None = None) -> None:
        self.from_ms = min(self.from_ms, from_ms)
        self.need_row = max(self.need_row, need_row)
        self.hold = self.hold or hold
        self.to_ms = None if to_ms is None or self.to_ms is None else max(self.to_ms, to_ms)


def alert_key(change: Change) -> str:
    """The idempotency key of a change's notification: ``<excursion id>:<change>``; a receiver
    keeps one notification per key (docs/rules.md 13).

    ``opened``, ``closed``, ``recovered`` and ``superseded`` happen at most once per excursion.
    ``escalated`` can happen once per severity it rises to (``:escalated:critical``), and a
    late-data merge can report ``updated`` several times (``:updated:<digest of the new
    state>``, 12 hex digits of SHA-256): the same change recomputed after a restart gets the
    same key, a different one another key.
    """
    e = change.excursion
    key = f"{e.id}:{change.kind}"
    if change.kind == "escalated":
        return f"{key}:{e.severity}"
    if change.kind == "updated":
        state = json.dumps(asdict(e), sort_keys=True, separators=(",", ":"), default=str)
        return f"{key}:{hashlib.sha256(state.encode()).hexdigest()[:12]}"
    return key


def alert_payload(change: Change) -> bytes:
    """The alert: which change, its idempotency ``key`` (``alert_key``) and the excursion as
    the registry now holds it."""
    body = {"v": 1, "change": change.kind, "key": alert_key(change), **asdict(change.excursion)}
    return json.dumps(body, separators=(",", ":")).encode()


def excursion_line(change: Change) -> str:
    """An ``excursion`` point at the excursion's start: Grafana annotations read these."""
    e = change.excursion
    key = series_key(
        "excursion", {"asset": e.asset_id, "compartment": e.compartment_id, "rule": e.rule}
    )
    fields = format_fields(
        {
            "id": e.id,
            "kind": e.kind,
            "severity": e.severity,
            "status": e.status,
            "change": change.kind,
            "end_ms": e.end_ms,
            "duration_s": e.duration_s,
            "peak_c": e.peak_c,
            "degree_minutes": e.degree_minutes,
            "out_of_range_s": e.out_of_range_s,
            "returned_ms": e.returned_ms,
            "detected_late": e.detected_late,
            "detail": e.detail[:500],
        }
    )
    return f"{key} {fields} {e.start_ms}"


def clock_line(asset_id: str, device_id: str, ts_ms: int, jump_ms: int, offset_ms: int) -> str:
    """A ``clock`` point: the device clock jumped forward by ``jump_ms`` just before device
    time ``ts_ms`` (a recompute reads these back, docs/rules.md 4.6)."""
    key = series_key("clock", {"asset": asset_id, "device": device_id})
    return f"{key} {format_fields({'jump_ms': jump_ms, 'offset_ms': offset_ms})} {ts_ms}"

"""Custody scan sequences, the pure part: which scans cannot have happened, and the checks one
scan must pass against the fleet and the clock.

One definition for every way a scan arrives (docs/api.md, "Custody events"; docs/registry.md,
"Custody legs"):

- the HTTP write API refuses a scan at once when it is impossible given what is recorded (409)
  or does not fit the fleet or the clock (422);
- MQTT handheld scans may arrive late and out of order, so they are stored whatever the
  sequence; the trace flags a sequence that is still impossible once every scan it depends on
  has been in for a grace period (``settled_problems``), as a custody-integrity reason.

Scans are judged in the order ``registry.derive_legs`` builds legs in: device time, then at the
same millisecond ``unload`` < ``handover`` < ``load`` < ``deliver``, then arrival (``order``).
What is impossible (each a ``SequenceProblem`` ``code``):

- ``unload_not_loaded``: an unload from an asset the shipment is not loaded on (never loaded,
  on a dock already, on another asset, or in another compartment of that asset);
- ``deliver_not_in_custody``: a delivery of a shipment nobody had taken custody of;
- ``after_delivery``: any scan after the shipment was delivered to its consignee (a scan that
  resumes custody is flagged once, then judged as moving the shipment).

A load into a compartment while the shipment is elsewhere is not flagged: a transfer scanned
only at the destination is common, and the legs still follow the scans.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from coldchain.fleet import Fleet

__all__ = [
    "ACTION_ORDER",
    "DEFAULT_GRACE_MS",
    "CustodyScan",
    "ProblemCode",
    "SequenceProblem",
    "fleet_problem",
    "sequence_problems",
    "settled_problems",
    "time_problem",
]

# Same-millisecond order: a transfer scanned at once is out, passed on, in, signed for.
ACTION_ORDER = {"unload": 0, "handover": 1, "load": 2, "deliver": 3}

# How long every scan a problem depends on must have been in before the trace flags it: late
# MQTT scans (a handheld out of coverage, a resumed session) usually arrive within minutes.
DEFAULT_GRACE_MS = 3_600_000

ProblemCode = Literal["unload_not_loaded", "deliver_not_in_custody", "after_delivery"]


@dataclass(frozen=True, slots=True)
class CustodyScan:
    """One custody scan as the sequence check sees it.

    ``order`` breaks ties at the same instant and action (the registry's row id: arrival
    order); ``received_ms`` is the wall-clock time it was recorded; ``ref`` names it in
    messages (the caller's event id, or ``#<row id>``).
    """

    action: Literal["load", "unload", "handover", "deliver"]
    asset_id: str
    compartment_id: str | None
    ts_ms: int
    order: int
    received_ms: int
    ref: str


@dataclass(frozen=True, slots=True)
class SequenceProblem:
    """A scan that cannot have happened after the ones before it; ``message`` says why."""

    code: ProblemCode
    scan: CustodyScan
    message: str

    @property
    def key(self) -> tuple[str, int]:
        """Identity across recomputations (the message may change as scans arrive)."""
        return self.code, self.scan.order

    def reason(self) -> str:
        """The trace's verdict reason for this problem."""
        return f"custody integrity ({self.code}): {self.message}"


def _sort_key(scan: CustodyScan) -> tuple[int, int, int]:
    return scan.ts_ms, ACTION_ORDER[scan.action], scan.order


def _place(asset_id: str, compartment_id: str | None) -> str:
    return f"the dock of {asset_id}" if compartment_id is None else f"{asset_id}/{compartment_id}"


def _what(scan: CustodyScan) -> str:
    if scan.action == "unload":
        comp = scan.compartment_id
        where = f"from {scan.asset_id}" + ("" if comp is None else f"/{comp}")
    else:
        preposition = "into" if scan.action == "load" else "at"
        where = f"{preposition} {_place(scan.asset_id, scan.compartment_id)}"
    return f"{scan.action} {scan.ref} {where} at {_utc(scan.ts_ms)}"


def sequence_problems(scans: Iterable[CustodyScan]) -> list[SequenceProblem]:
    """Every scan of one shipment that cannot have happened (see the module docstring), in
    the order the scans are judged. Pure; ``scans`` in any order."""
    problems: list[SequenceProblem] = []
    # Where the shipment is: (asset, compartment or None for the dock, since); None: nowhere.
    where: tuple[str, str | None, int] | None = None
    delivered_at: int | None = None
    for scan in sorted(scans, key=_sort_key):
        if delivered_at is not None:
            problems.append(
                SequenceProblem(
                    "after_delivery",
                    scan,
                    f"{_what(scan)}: the shipment was delivered at {_utc(delivered_at)}",
                )
            )
            delivered_at = None
        if scan.action == "unload":
            problem = _unload_problem(scan, where)
            if problem is not None:
                problems.append(SequenceProblem("unload_not_loaded", scan, problem))
            where = (scan.asset_id, None, scan.ts_ms)
        elif scan.action == "deliver":
            if where is None and not _has_problem(problems, scan):
                problems.append(
                    SequenceProblem(
                        "deliver_not_in_custody",
                        scan,
                        f"{_what(scan)}: no scan before it took custody of the shipment",
                    )
                )
            where, delivered_at = None, scan.ts_ms
        else:
            where = (scan.asset_id, scan.compartment_id, scan.ts_ms)
    return problems


def _has_problem(problems: Sequence[SequenceProblem], scan: CustodyScan) -> bool:
    """True if ``scan`` already has a problem (one reason per scan is enough)."""
    return any(p.scan is scan for p in problems)


def _unload_problem(scan: CustodyScan, where: tuple[str, str | None, int] | None) -> str | None:
    if where is None:
        return f"{_what(scan)}: the shipment was not loaded anywhere"
    asset, comp, since = where
    if asset != scan.asset_id:
        place = f"on the dock of {asset}" if comp is None else f"in {asset}/{comp}"
        return (
            f"{_what(scan)}: the shipment was not on {scan.asset_id} "
            f"(it was {place} since {_utc(since)})"
        )
    if comp is None:
        return (
            f"{_what(scan)}: the shipment was not loaded on {scan.asset_id} "
            f"(it was on its dock since {_utc(since)}: unloaded already)"
        )
    if scan.compartment_id is not None and scan.compartment_id != comp:
        return (
            f"{_what(scan)}: the shipment was in {asset}/{comp} since {_utc(since)}, "
            f"not in {scan.compartment_id}"
        )
    return None


def settled_problems(
    scans: Sequence[CustodyScan], *, at_ms: int, now_ms: int, grace_ms: int = DEFAULT_GRACE_MS
) -> list[SequenceProblem]:
    """The problems of the scans up to device time ``at_ms`` that later scans can no longer be
    expected to resolve: every scan up to and including the impossible one (in judging order)
    was received at least ``grace_ms`` before the wall-clock ``now_ms``. A missing scan that
    arrives late is simply included next time, and the problem it explains goes away."""
    considered = sorted((s for s in scans if s.ts_ms <= at_ms), key=_sort_key)
    position = {id(s): i for i, s in enumerate(considered)}
    latest: list[int] = []
    newest = None
    for s in considered:
        newest = s.received_ms if newest is None else max(newest, s.received_ms)
        latest.append(newest)
    return [
        p
        for p in sequence_problems(considered)
        if now_ms - latest[position[id(p.scan)]] >= grace_ms
    ]


def fleet_problem(
    asset_id: str, compartment_id: str | None, fleet: Fleet
) -> tuple[str, str] | None:
    """(field, what is wrong) if the scan names an asset or compartment the fleet does not
    have, else None; the same rule as MQTT scans (ingest/events.py)."""
    asset = fleet.assets.get(asset_id)
    if asset is None:
        return "asset_id", f"asset {asset_id!r} is not registered in the fleet"
    if compartment_id is not None and not fleet.has_compartment(asset_id, compartment_id):
        known = ", ".join(c.id for c in asset.compartments) or "none"
        return (
            "compartment_id",
            f"compartment {compartment_id!r} is not a compartment of {asset_id} (it has {known})",
        )
    return None


def time_problem(
    ts_ms: int, now_ms: int, *, max_future_skew_s: float, max_age_s: float
) -> str | None:
    """What is wrong with a scan's device time against the clock ``now_ms``, or None: more than
    ``max_future_skew_s`` ahead (a clock difference is tolerated, the future is not), or older
    than ``max_age_s``; the window MQTT events are held to (COLDCHAIN_VALIDATION__*)."""
    if ts_ms > now_ms + max_future_skew_s * 1000.0:
        return (
            f"{_utc(ts_ms)} is {(ts_ms - now_ms) / 1000.0:.0f} s after the server's clock "
            f"({_utc(now_ms)}); at most {max_future_skew_s:.0f} s ahead is accepted"
        )
    if ts_ms < now_ms - max_age_s * 1000.0:
        return (
            f"{_utc(ts_ms)} is more than {max_age_s:.0f} s ({max_age_s / 86400:g} days) before "
            f"the server's clock ({_utc(now_ms)}); older events are not accepted"
        )
    return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(ms: int) -> str:
    t = _EPOCH + timedelta(milliseconds=ms)
    return t.isoformat(timespec="milliseconds" if ms % 1000 else "seconds").replace("+00:00", "Z")

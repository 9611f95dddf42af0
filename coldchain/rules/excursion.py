"""The excursion record: what the rules engine reports and the registry stores.

This is the contract between the pure evaluator (coldchain.rules), the registry store
(registry/) and the alerts. Ids are deterministic so a recomputation after late data upserts the
same row instead of adding a new one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Excursion", "ExcursionStatus", "RuleKind", "Severity", "excursion_id"]

RuleKind = Literal[
    "range",
    "hard_limit",
    "cumulative",
    "mkt",
    "data_gap",
    "custody_gap",
    "door_open",
    "setpoint",
    "sensor_fault",
    "clock_skew",  # device evidence: compartment_id holds the device id (docs/rules.md 4.10)
]
Severity = Literal["info", "warning", "critical"]
# open: still going; closed: ended; recovered: a data gap that a late backlog filled.
ExcursionStatus = Literal["open", "closed", "recovered"]


def excursion_id(asset_id: str, compartment_id: str, rule: str, start_ms: int) -> str:
    """Deterministic id of an excursion: the same (asset, compartment, rule, start) -> same id."""
    key = f"{asset_id}\x1f{compartment_id}\x1f{rule}\x1f{start_ms}".encode()
    return hashlib.sha256(key).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Excursion:
    """One broken-chain event on one compartment (or zone) for one rule.

    Times are epoch milliseconds UTC of *device* time, except ``detected_ms`` (ingest wall clock
    when the engine first reported it). ``end_ms`` is None while open; it is the *alarm's* end
    (with a clear delay and hysteresis, the first sample of the clearing run). ``degree_minutes``
    is the time integral of how far beyond the limit the temperature was (degC x min), the usual
    severity measure; ``peak_c`` the worst temperature seen.

    For temperature-limit rules (range, hard limit, cumulative) ``out_of_range_s`` is the known
    time in seconds the value was actually beyond the limits from ``start_ms`` to ``end_ms`` (to
    the latest observation while open), and ``returned_ms`` the device time of the sample with
    which it last came back within them (None while still outside). Both are None for every
    other kind (docs/rules.md, section 3).
    """

    asset_id: str
    compartment_id: str
    rule: str  # the rule's name within its profile, e.g. "range", "hard_high", "gap"
    kind: RuleKind
    severity: Severity
    status: ExcursionStatus
    start_ms: int
    end_ms: int | None
    detected_ms: int
    detected_late: bool = False
    peak_c: float | None = None
    degree_minutes: float = 0.0
    profile: str = ""
    detail: str = ""
    id: str = field(default="")
    # True when a recomputation after late data showed this excursion never happened as reported
    # (e.g. its start moved): kept for the audit trail, status "closed", hidden by consumers.
    superseded: bool = False
    out_of_range_s: float | None = None
    returned_ms: int | None = None

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(
                self,
                "id",
                excursion_id(self.asset_id, self.compartment_id, self.rule, self.start_ms),
            )

    @property
    def duration_s(self) -> float | None:
        return None if self.end_ms is None else (self.end_ms - self.start_ms) / 1000.0

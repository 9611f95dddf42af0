"""What every rule kind shares: the open-excursion track and the rule interface.

A rule sees each observation once, through ``step(c, obs, held, held_any)``:

1. *advance*: account the interval ``[c.ts, obs.ts)`` with the values held from before
   (``c.hi``, ``c.door``...): ``held`` ms of it are covered by a temperature recording
   (sample-and-hold capped at the gap limit), ``held_any`` ms by door/reefer state;
2. *observe*: look at the new values in ``obs`` (``None`` = not reported, keep the held value).

Rules report lifecycle changes through ``c.emit``; nothing is reported for a reading that
changes no excursion's lifecycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coldchain.rules.excursion import Excursion, RuleKind, Severity
from coldchain.rules.readings import Observation

if TYPE_CHECKING:
    from coldchain.rules.evaluator import CompartmentEvaluator

__all__ = ["SEVERITY_RANK", "Rule", "Track"]

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
_MIN = 60_000.0


class Track:
    """An excursion in progress (mutable while open; reported as frozen ``Excursion``s)."""

    __slots__ = (
        "detail",
        "detected",
        "dm",
        "late",
        "oor",
        "over",
        "peak",
        "ret",
        "severity",
        "start",
    )

    def __init__(
        self,
        start: int,
        severity: Severity,
        detected: int,
        peak: float | None = None,
        over: float = 0.0,
        dm: float = 0.0,
        detail: str = "",
        late: bool = False,
        oor: int = 0,
        ret: int = -1,
    ) -> None:
        self.start = start
        self.severity: Severity = severity
        self.detected = detected
        self.peak = peak
        self.over = over  # how far beyond the limit the peak was (degC)
        self.dm = dm  # degree-minutes beyond the limit
        self.detail = detail
        self.late = late  # set by a late-data merge: reported after the fact
        self.oor = oor  # ms of known time actually beyond the limits (limit rules)
        self.ret = ret  # device ms the value last came back within the limits; -1: not back

    def dump(self) -> list[Any]:
        return [
            self.start,
            self.severity,
            self.detected,
            self.peak,
            self.over,
            self.dm,
            self.detail,
            self.late,
            self.oor,
            self.ret,
        ]

    @classmethod
    def load(cls, d: list[Any] | None) -> Track | None:
        if d is None:
            return None
        start, severity, detected, peak, over, dm, detail, late = d[:8]
        oor, ret = d[8:10] if len(d) >= 10 else (0, -1)  # checkpoints before issue 9
        return cls(
            int(start),
            severity,
            int(detected),
            peak,
            float(over),
            float(dm),
            str(detail),
            late,
            int(oor),
            int(ret),
        )


class Rule:
    """Base of every rule kind. Subclasses keep their state in ``__slots__``.

    ``limits``: the rule judges temperatures against limits, so its excursions carry
    ``out_of_range_s`` and ``returned_ms`` (from ``Track.oor`` / ``Track.ret``).
    """

    __slots__ = ("kind", "name", "severity", "tr")
    limits = False

    def __init__(self, name: str, kind: RuleKind, severity: Severity) -> None:
        self.name = name
        self.kind: RuleKind = kind
        self.severity: Severity = severity
        self.tr: Track | None = None

    # -- hot path -------------------------------------------------------------------------
    def step(self, c: CompartmentEvaluator, obs: Observation, held: int, held_any: int) -> None:
        raise NotImplementedError

    def tick(self, c: CompartmentEvaluator, now_ms: int) -> None:
        """Wall-clock progress with no new data (only the data-gap rule reacts)."""

    # -- lifecycle helpers ----------------------------------------------------------------
    def _open(self, c: CompartmentEvaluator, tr: Track) -> None:
        if c.late:  # proved by data for a time already reported as a data gap
            tr.late = True
        self.tr = tr
        c.emit("opened", self, tr, "open", None)

    def _close(self, c: CompartmentEvaluator, end: int) -> None:
        tr = self.tr
        if tr is not None:
            self.tr = None
            c.emit("closed", self, tr, "closed", end)

    def _escalate(self, c: CompartmentEvaluator, tr: Track) -> None:
        if tr.severity != "critical":
            tr.severity = "critical"
            c.emit("escalated", self, tr, "open", None)

    def open_excursion(self, c: CompartmentEvaluator) -> Excursion | None:
        tr = self.tr
        return None if tr is None else c.excursion(self, tr, "open", None)

    # -- checkpoint -----------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {"tr": None if self.tr is None else self.tr.dump()}

    def load(self, d: dict[str, Any]) -> None:
        self.tr = Track.load(d.get("tr"))


def minutes(ms: float) -> float:
    return ms / _MIN

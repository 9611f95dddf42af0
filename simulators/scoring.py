"""Score what a run raised against what its scenario says it must raise. Pure: no I/O.

A scenario's faults and planned transfers declare ``expect`` (simulators/scenario.py,
``Expectation``): the excursion kinds each must raise, where, and when. ``expectations``
resolves them to absolute times; ``score`` matches the evidence a run raised (excursions,
custody gaps: anything with a kind, an asset, a compartment and a start) against them:

- an excursion **matches** an expectation when kind and asset are equal, the compartment is
  the expected one (or none was named), its start lies in the expected start window and, if an
  end window is given, its end in that (an excursion still open ends at the run's end); each
  window is widened by one sample interval of the asset on both sides (a device samples with its
  own phase, so an edge moves by up to one interval);
- **found**: expectations matched by at least one excursion. The pairing maximises found
  (bipartite matching), so one excursion never stands in for two expectations;
- **missed**: expectations nothing matched (declared, not raised);
- **false_alarms**: excursions that match no expectation, or more than an expectation's
  ``max_count`` (default 1: an alarm storm on one episode is one found plus false alarms).

Times are epoch milliseconds UTC, as in ``coldchain.rules.Excursion``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simulators.scenario import Expectation, Scenario, StoreSpec, TruckSpec

__all__ = [
    "Evidence",
    "Expected",
    "Score",
    "evidence_from",
    "expectations",
    "format_offset",
    "score",
]


@dataclass(frozen=True, slots=True)
class Expected:
    """One resolved expectation: windows absolute and already widened by ``tolerance_ms``."""

    cause: str  # which fault or transfer declared it, e.g. "faults.0 door_open truck-st-01/main"
    kind: str
    asset_id: str
    compartment_id: str | None  # None: any compartment of the asset
    start_ms: tuple[int, int]
    end_ms: tuple[int, int] | None
    max_count: int
    tolerance_ms: int


@dataclass(frozen=True, slots=True)
class Evidence:
    """One thing a run raised (an excursion, a custody gap); ``end_ms`` None while open."""

    kind: str
    asset_id: str
    compartment_id: str
    start_ms: int
    end_ms: int | None
    id: str = ""
    rule: str = ""
    severity: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Score:
    """The outcome: ``matches[i]`` are the evidence explained by ``expected[i]``."""

    expected: tuple[Expected, ...]
    matches: tuple[tuple[Evidence, ...], ...]
    false_alarm_list: tuple[Evidence, ...]
    t0_ms: int = 0
    raised: int = 0

    @property
    def found(self) -> int:
        return sum(1 for m in self.matches if m)

    @property
    def missed_list(self) -> tuple[Expected, ...]:
        return tuple(x for x, m in zip(self.expected, self.matches, strict=True) if not m)

    @property
    def missed(self) -> int:
        return len(self.missed_list)

    @property
    def false_alarms(self) -> int:
        return len(self.false_alarm_list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the counts under ``found``, ``missed``, ``false_alarms``, and the detail
        (times as offsets from the run's start, ``13h39m``, the scenario file's notation)."""
        return {
            "expected": len(self.expected),
            "raised": self.raised,
            "found": self.found,
            "missed": self.missed,
            "false_alarms": self.false_alarms,
            "missed_expectations": [self._expected(x) for x in self.missed_list],
            "false_alarm_excursions": [self._evidence(e) for e in self.false_alarm_list],
            "found_expectations": [
                self._expected(x) | {"excursion_ids": [e.id for e in m]}
                for x, m in zip(self.expected, self.matches, strict=True)
                if m
            ],
        }

    def _offset(self, ms: int | None) -> str | None:
        return None if ms is None else format_offset((ms - self.t0_ms) / 1000.0)

    def _expected(self, x: Expected) -> dict[str, Any]:
        tol = x.tolerance_ms
        return {
            "cause": x.cause,
            "kind": x.kind,
            "asset": x.asset_id,
            "compartment": x.compartment_id,
            "start": [self._offset(x.start_ms[0] + tol), self._offset(x.start_ms[1] - tol)],
            "end": None
            if x.end_ms is None
            else [self._offset(x.end_ms[0] + tol), self._offset(x.end_ms[1] - tol)],
            "tolerance_s": tol / 1000.0,
        }

    def _evidence(self, e: Evidence) -> dict[str, Any]:
        return {
            "id": e.id,
            "kind": e.kind,
            "rule": e.rule,
            "severity": e.severity,
            "asset": e.asset_id,
            "compartment": e.compartment_id,
            "start": self._offset(e.start_ms),
            "end": self._offset(e.end_ms),
            "detail": e.detail,
        }


def format_offset(seconds: float) -> str:
    """48600.0 -> ``"13h30m"``; seconds shown only when there are some: ``"6h09m55s"``."""
    sign = "-" if seconds < 0 else ""
    total = round(abs(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{h}h{m:02d}m" + (f"{s:02d}s" if s else "")


def _sensor_compartment(scenario: Scenario, asset_id: str, sensor_id: str) -> str | None:
    specs: list[TruckSpec | StoreSpec] = [*scenario.trucks, *scenario.stores]
    for spec in specs:
        if spec.id != asset_id:
            continue
        units = spec.compartments if isinstance(spec, TruckSpec) else spec.zones
        for c in units:
            if any(c.sensor_id(p) == sensor_id for p in c.probes):
                return str(c.id)
    return None


def expectations(scenario: Scenario, start: datetime) -> list[Expected]:
    """Every expectation of ``scenario`` for a run starting at ``start`` (aware UTC)."""
    t0 = round(start.timestamp() * 1000)
    out: list[Expected] = []

    def add(cause: str, x: Expectation, default_asset: str, default_comp: str | None) -> None:
        asset = x.asset or default_asset
        # An expectation naming another asset names its own compartment (or means any).
        comp = x.compartment
        if comp is None and asset == default_asset:
            comp = default_comp
        tol = round(scenario.sample_interval_of(asset) * 1000)

        def window(w: tuple[float, float]) -> tuple[int, int]:
            return t0 + round(w[0] * 1000) - tol, t0 + round(w[1] * 1000) + tol

        out.append(
            Expected(
                cause=cause,
                kind=x.kind,
                asset_id=asset,
                compartment_id=comp,
                start_ms=window(x.start_s),
                end_ms=None if x.end_s is None else window(x.end_s),
                max_count=x.max_count,
                tolerance_ms=tol,
            )
        )

    for i, f in enumerate(scenario.faults):
        comp = f.compartment
        if comp is None and f.sensor is not None:
            comp = _sensor_compartment(scenario, f.asset, f.sensor)
        where = f"{f.asset}/{comp}" if comp else f.asset
        for x in f.expect:
            add(f"faults.{i} {f.kind} {where}", x, f.asset, comp)
    for t in scenario.trucks:
        for i, stop in enumerate(t.route.stops):
            for what in ("load", "unload"):
                for k, tr in enumerate(getattr(stop, what)):
                    cause = f"trucks.{t.id}.route.stops.{i}.{what}.{k} {tr.shipment}"
                    for x in tr.expect:
                        dock = f"dock:{tr.shipment}" if x.kind == "custody_gap" else None
                        add(cause, x, tr.store or t.id, dock)
    return out


def _matches(x: Expected, e: Evidence, run_end_ms: int) -> bool:
    if (e.kind, e.asset_id) != (x.kind, x.asset_id):
        return False
    if x.compartment_id is not None and e.compartment_id != x.compartment_id:
        return False
    if not x.start_ms[0] <= e.start_ms <= x.start_ms[1]:
        return False
    if x.end_ms is not None:
        end = e.end_ms if e.end_ms is not None else run_end_ms
        if not x.end_ms[0] <= end <= x.end_ms[1]:
            return False
    return True


def score(
    expected: Sequence[Expected], raised: Iterable[Evidence], *, t0_ms: int, run_end_ms: int
) -> Score:
    """Match ``raised`` against ``expected`` (see the module docstring)."""
    evidence = sorted(raised, key=lambda e: (e.start_ms, e.asset_id, e.compartment_id, e.id))
    fits = [[j for j, e in enumerate(evidence) if _matches(x, e, run_end_ms)] for x in expected]
    # Kuhn's augmenting paths: the most expectations each paired with its own evidence.
    owner: dict[int, int] = {}  # evidence index -> expectation index

    def augment(i: int, seen: set[int]) -> bool:
        for j in fits[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(expected)):
        augment(i, set())
    assigned: list[list[int]] = [[] for _ in expected]
    for j, i in owner.items():
        assigned[i].append(j)
    # The rest of the evidence: explained by an expectation it fits that has room left.
    false_alarms: list[Evidence] = []
    for j, e in enumerate(evidence):
        if j in owner:
            continue
        room = [
            i
            for i in range(len(expected))
            if j in fits[i] and len(assigned[i]) < expected[i].max_count
        ]
        if room:
            assigned[room[0]].append(j)
        else:
            false_alarms.append(e)
    return Score(
        expected=tuple(expected),
        matches=tuple(tuple(evidence[j] for j in sorted(a)) for a in assigned),
        false_alarm_list=tuple(false_alarms),
        t0_ms=t0_ms,
        raised=len(evidence),
    )


def evidence_from(items: Iterable[Mapping[str, Any]]) -> list[Evidence]:
    """Evidence from excursion dicts (``dataclasses.asdict(Excursion)``, the API's JSON),
    each id once: the registry's excursions and a trace's custody gaps may overlap."""
    seen: dict[str, Evidence] = {}
    for d in items:
        key = str(d.get("id") or (d["asset_id"], d["compartment_id"], d["rule"], d["start_ms"]))
        if key in seen or d.get("superseded"):
            continue
        seen[key] = Evidence(
            kind=str(d["kind"]),
            asset_id=str(d["asset_id"]),
            compartment_id=str(d["compartment_id"]),
            start_ms=int(d["start_ms"]),
            end_ms=None if d.get("end_ms") is None else int(d["end_ms"]),
            id=str(d.get("id", "")),
            rule=str(d.get("rule", "")),
            severity=str(d.get("severity", "")),
            detail=str(d.get("detail", "")),
        )
    return list(seen.values())

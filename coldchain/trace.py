"""Shipment traceability, the pure part: per custody leg statistics, custody gaps, a verdict.

"What happened to shipment X, where, and who held it": the registry supplies the custody legs
and excursions, InfluxDB the temperatures; this module only computes (no I/O), so the API, the
demo report and tests share one definition.

Semantics (docs/rules.md, section 14): a reading holds until the next one, for at most
``cap_ms`` (the data-gap limit); time beyond the cap is unmonitored. Statistics are
time-weighted over the leg, from plausible readings only (``control_series``). A leg without a
compartment (dock, handover) is unmonitored by definition; unmonitored time longer than the
allowed dwell (consecutive dock legs, e.g. across a handover, add up) is a ``custody_gap``
excursion. The verdict's reasons say how long the product was out of range, when it came back,
and which door events may explain it: a door explains an excursion, it never hides one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from coldchain.rules.excursion import Excursion
from coldchain.rules.mkt import MktAccumulator

__all__ = [
    "DEFAULT_DOCK_LIMIT_MS",
    "MAX_GAPS_PER_LEG",
    "Leg",
    "LegAccumulator",
    "LegReport",
    "ShipmentTrace",
    "Verdict",
    "control_series",
    "custody_gaps",
    "instant_means",
    "leg_report",
    "verdict",
]

Verdict = Literal["compliant", "excursion", "incomplete"]

# Product left unmonitored on a dock or in a handover for longer than this breaks the chain.
DEFAULT_DOCK_LIMIT_MS = 30 * 60_000

# A pathological leg (a reading every 11 min against a 10 min cap for a year) lists only this
# many gaps; its unmonitored time still counts every one.
MAX_GAPS_PER_LEG = 1000

# Excursion kinds that say the product was too warm or too cold (as opposed to evidence gaps).
_TEMPERATURE_KINDS = frozenset({"range", "hard_limit", "cumulative", "mkt"})
_EVIDENCE_KINDS = frozenset({"data_gap", "custody_gap"})


def control_series(
    by_role: Mapping[str, Mapping[int, Sequence[float]]],
    plausible_c: tuple[float, float] | None = None,
) -> list[tuple[int, float]]:
    """A compartment's product temperature over time, ``(ts_ms, temp_c)`` in order, from its
    probe values grouped by probe role (``"product"``/``"air"``) and instant: the mean of the
    product probes at each instant, or of the air probes when the window has no product value
    (the rules' "control probe" choice). Values outside ``plausible_c`` (the profile's
    implausible limits, ``coldchain.rules.plausible_limits``) are dropped first: they are
    evidence of a sensor fault, not a temperature (docs/rules.md, section 1)."""

    def clean(per_ts: Mapping[int, Sequence[float]]) -> dict[int, list[float]]:
        out: dict[int, list[float]] = {}
        for t, values in per_ts.items():
            kept = [
                v for v in values if plausible_c is None or plausible_c[0] <= v <= plausible_c[1]
            ]
            if kept:
                out[t] = kept
        return out

    chosen = clean(by_role.get("product", {})) or clean(by_role.get("air", {}))
    return [(t, sum(v) / len(v)) for t, v in sorted(chosen.items())]


@dataclass(frozen=True, slots=True)
class Leg:
    asset_id: str
    compartment_id: str | None
    from_ms: int
    to_ms: int | None


@dataclass(frozen=True, slots=True)
class LegReport:
    leg: Leg
    readings: int = 0
    min_c: float | None = None
    max_c: float | None = None
    mean_c: float | None = None
    mkt_c: float | None = None
    monitored_s: float = 0.0
    unmonitored_s: float = 0.0
    out_of_range_s: float = 0.0
    excursion_ids: tuple[str, ...] = ()
    # Unmonitored stretches [from_ms, to_ms) inside the leg (no reading holds there), in order;
    # at most MAX_GAPS_PER_LEG of them are listed (unmonitored_s counts them all).
    gaps: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ShipmentTrace:
    shipment_id: str
    profile: str
    legs: list[LegReport]
    excursions: list[Excursion]
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)


class LegAccumulator:
    """Streaming statistics of one leg: feed the compartment's control series ``(ts_ms,
    temp_c)`` in time order with ``add`` (one value per instant: ``instant_means``), then
    ``report``. Memory is constant whatever the number of readings (only the gaps list grows,
    to at most ``max_gaps`` entries), so a year-long leg streams in pages
    (``timeseries.reads.stream_control_values``).

    Semantics: a reading holds until the next one, for at most ``cap_ms``; readings before the
    leg count only for the time they hold into it (the last reading before the load is what
    the compartment held when the product went in). ``end_ms`` closes a leg still open
    (``leg.to_ms`` None). The holes where no reading holds are the leg's ``gaps``.
    """

    __slots__ = (
        "_gaps",
        "_high",
        "_low",
        "_max_gaps",
        "_pending",
        "cap_ms",
        "covered_ms",
        "hi_seen",
        "leg",
        "lo_seen",
        "mkt",
        "monitored_s",
        "n",
        "out_s",
        "start_ms",
        "stop_ms",
        "weighted",
    )

    def __init__(
        self,
        leg: Leg,
        *,
        end_ms: int,
        cap_ms: int,
        low_c: float | None,
        high_c: float | None,
        max_gaps: int = MAX_GAPS_PER_LEG,
    ) -> None:
        self.leg = leg
        self.start_ms = leg.from_ms
        self.stop_ms = leg.to_ms if leg.to_ms is not None else end_ms
        self.cap_ms = cap_ms
        self._low, self._high = low_c, high_c
        self._max_gaps = max_gaps
        self._pending: tuple[int, float] | None = None
        self._gaps: list[tuple[int, int]] = []
        self.covered_ms = self.start_ms  # time before this is held by a reading or a gap
        self.mkt = MktAccumulator()
        self.n = 0
        self.lo_seen: float | None = None
        self.hi_seen: float | None = None
        self.weighted = self.monitored_s = self.out_s = 0.0

    def add(self, ts_ms: int, temp_c: float) -> None:
        """The next instant's value (``ts_ms`` after the previous one's)."""
        self._run(((ts_ms, temp_c),), final=False)

    def extend(self, series: Iterable[tuple[int, float]]) -> None:
        """The next instants' values, in time order."""
        self._run(series, final=False)

    def _run(self, series: Iterable[tuple[int, float]], *, final: bool) -> None:
        # The hot loop of a trace (a reading each pass): the state lives in locals and is
        # written back once, which makes it about twice as fast as a method call per reading.
        start, stop, cap = self.start_ms, self.stop_ms, self.cap_ms
        low = -math.inf if self._low is None else self._low
        high = math.inf if self._high is None else self._high
        gaps, max_gaps, mkt_add = self._gaps, self._max_gaps, self.mkt.add
        pending, covered = self._pending, self.covered_ms
        n, lo_seen, hi_seen = self.n, self.lo_seen, self.hi_seen
        weighted, monitored, out = self.weighted, self.monitored_s, self.out_s
        items: Iterable[tuple[int, float | None]] = series
        if final:
            items = ((stop, None),)  # the last value holds until the leg's end
        for nxt, value in items:
            if pending is not None:
                t, temp = pending
                if start <= t < stop:
                    n += 1
                    lo_seen = temp if lo_seen is None or temp < lo_seen else lo_seen
                    hi_seen = temp if hi_seen is None or temp > hi_seen else hi_seen
                held_from = t if t > start else start
                held_to = min(nxt, t + cap, stop)
                if held_to > held_from:
                    if held_from > covered and len(gaps) < max_gaps:
                        gaps.append((covered, held_from))
                    covered = held_to
                    w = (held_to - held_from) / 1000.0
                    monitored += w
                    weighted += temp * w
                    mkt_add(temp, w)
                    if temp < low or temp > high:
                        out += w
            pending = None if value is None else (nxt, value)
        self._pending, self.covered_ms = pending, covered
        self.n, self.lo_seen, self.hi_seen = n, lo_seen, hi_seen
        self.weighted, self.monitored_s, self.out_s = weighted, monitored, out

    def _gap_until(self, t: int) -> None:
        if t > self.covered_ms and len(self._gaps) < self._max_gaps:
            self._gaps.append((self.covered_ms, t))
        self.covered_ms = max(self.covered_ms, t)

    def report(self, excursions: Iterable[Excursion] = ()) -> LegReport:
        """The leg's statistics; ``excursions`` overlapping it are listed by id."""
        if self._pending is not None:
            self._run((), final=True)
        leg, start, stop = self.leg, self.start_ms, self.stop_ms
        span_s = max(0, stop - start) / 1000.0
        ids = _overlapping_ids(excursions, start, stop)
        if leg.compartment_id is None:
            whole = ((start, stop),) if stop > start else ()
            return LegReport(leg, unmonitored_s=span_s, excursion_ids=ids, gaps=whole)
        self._gap_until(stop)
        monitored = self.monitored_s
        return LegReport(
            leg,
            readings=self.n,
            min_c=self.lo_seen,
            max_c=self.hi_seen,
            mean_c=self.weighted / monitored if monitored else None,
            mkt_c=self.mkt.value,
            monitored_s=monitored,
            unmonitored_s=max(0.0, span_s - monitored),
            out_of_range_s=self.out_s,
            excursion_ids=ids,
            gaps=tuple(self._gaps),
        )


def _overlapping_ids(excursions: Iterable[Excursion], start: int, stop: int) -> tuple[str, ...]:
    return tuple(
        e.id for e in excursions if e.start_ms < stop and (e.end_ms is None or e.end_ms >= start)
    )


def instant_means(rows: Iterable[tuple[int, float]]) -> Iterator[tuple[int, float]]:
    """``(ts_ms, temp_c)`` rows in time order (several probes may share an instant) as one
    value per instant, their mean: the control value when a compartment has several probes of
    the chosen role (as ``control_series``). Streams: holds one instant at a time."""
    cur_t: int | None = None
    total, count = 0.0, 0
    for t, v in rows:
        if t != cur_t:
            if cur_t is not None:
                yield cur_t, total / count
            cur_t, total, count = t, 0.0, 0
        total += v
        count += 1
    if cur_t is not None:
        yield cur_t, total / count


def leg_report(
    leg: Leg,
    series: Iterable[tuple[int, float]],
    *,
    end_ms: int,
    cap_ms: int,
    low_c: float | None,
    high_c: float | None,
    excursions: Iterable[Excursion] = (),
) -> LegReport:
    """Statistics of one leg from its compartment's series ``(ts_ms, temp_c)`` in time order
    (``LegAccumulator`` states the semantics; this is it over a whole series at once)."""
    acc = LegAccumulator(leg, end_ms=end_ms, cap_ms=cap_ms, low_c=low_c, high_c=high_c)
    if leg.compartment_id is not None:
        acc.extend(series)
    return acc.report(excursions)


def custody_gaps(
    shipment_id: str,
    legs: Iterable[Leg],
    *,
    now_ms: int,
    limit_ms: int = DEFAULT_DOCK_LIMIT_MS,
    profile: str = "",
) -> list[Excursion]:
    """A ``custody_gap`` excursion for every unmonitored stretch longer than ``limit_ms``
    (``legs`` in time order, as ``registry.derive_legs`` gives them).

    A stretch is a run of consecutive unmonitored legs (a truck's dock, then the store's dock
    after the handover, ...): the product is just as unmonitored across a handover, so the time
    adds up. The excursion starts when the limit is exceeded and belongs to the asset that held
    the shipment at that moment. Ids are deterministic (asset, ``dock:<shipment>``, rule,
    start), so computing them again gives the same excursions.
    """
    out = []
    for run in _unmonitored_runs(legs):
        first, last = run[0], run[-1]
        end = last.to_ms if last.to_ms is not None else now_ms
        if end - first.from_ms <= limit_ms:
            continue
        start = first.from_ms + limit_ms
        # Who held the shipment when the allowed time ran out.
        holder = next(leg for leg in reversed(run) if leg.from_ms <= start)
        where = " then ".join(dict.fromkeys(leg.asset_id for leg in run))
        out.append(
            Excursion(
                asset_id=holder.asset_id,
                compartment_id=f"dock:{shipment_id}",
                rule="custody_gap",
                kind="custody_gap",
                severity="critical" if end - first.from_ms > 2 * limit_ms else "warning",
                status="open" if last.to_ms is None else "closed",
                start_ms=start,
                end_ms=last.to_ms,
                detected_ms=now_ms,
                profile=profile,
                detail=(
                    f"shipment {shipment_id} unmonitored at {where} for "
                    f"{(end - first.from_ms) / 60_000:.0f} min (allowed {limit_ms / 60_000:.0f})"
                ),
            )
        )
    return out


def _unmonitored_runs(legs: Iterable[Leg]) -> list[list[Leg]]:
    """Consecutive unmonitored legs (each starting where the previous one ended), grouped."""
    runs: list[list[Leg]] = []
    prev: Leg | None = None
    for leg in legs:
        if leg.compartment_id is None:
            if prev is not None and prev.compartment_id is None and prev.to_ms == leg.from_ms:
                runs[-1].append(leg)
            else:
                runs.append([leg])
        prev = leg
    return runs


def verdict(
    legs: Sequence[LegReport],
    excursions: Iterable[Excursion],
    integrity: Sequence[str] = (),
) -> tuple[Verdict, list[str]]:
    """``excursion`` if the product was out of its limits, else ``incomplete`` if the evidence
    has holes (data or custody gaps, a monitored leg without readings, a custody sequence that
    cannot have happened), else ``compliant``.

    A temperature excursion's reason names how long the product was out of range, when it came
    back, its detail and the door events of that compartment overlapping it
    (docs/rules.md, section 14). ``integrity`` are custody-integrity reasons
    (``coldchain.custody.SequenceProblem.reason``, settled past their grace period): listed
    after the temperature reasons, and enough on their own to make the evidence incomplete."""
    reasons: list[str] = []
    exc = [e for e in excursions if not e.superseded and e.status != "recovered"]
    temp = [e for e in exc if e.kind in _TEMPERATURE_KINDS and e.severity != "info"]
    doors = [e for e in exc if e.kind == "door_open"]
    for e in temp:
        reasons.append(_temperature_reason(e, doors))
    if temp:
        return "excursion", reasons + list(integrity)
    for e in exc:
        if e.kind in _EVIDENCE_KINDS:
            reasons.append(f"{e.kind} on {e.asset_id}/{e.compartment_id}: {e.detail}")
    for r in legs:
        if r.leg.compartment_id is not None and r.readings == 0:
            reasons.append(f"no readings on {r.leg.asset_id}/{r.leg.compartment_id}")
    reasons.extend(integrity)
    return ("incomplete", reasons) if reasons else ("compliant", reasons)


def _temperature_reason(e: Excursion, doors: Sequence[Excursion]) -> str:
    text = f"{e.kind} {e.rule} on {e.asset_id}/{e.compartment_id} ({e.severity})"
    facts = []
    if e.out_of_range_s is not None:
        facts.append(f"out of range {e.out_of_range_s:.0f} s")
    if e.returned_ms is not None:
        facts.append(f"back within limits at {_utc(e.returned_ms)}")
    if facts:
        text += ": " + ", ".join(facts)
    if e.detail:
        text += f"; {e.detail}"
    end = e.end_ms
    for d in doors:
        if (
            d.asset_id == e.asset_id
            and d.compartment_id == e.compartment_id
            and (end is None or d.start_ms < end)
            and (d.end_ms is None or d.end_ms >= e.start_ms)
        ):
            until = "still open" if d.end_ms is None else _utc(d.end_ms)
            text += f"; door_open {d.rule} {_utc(d.start_ms)} to {until}"
    return text


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(ms: int) -> str:
    """RFC 3339 UTC (``2026-01-05T00:26:00Z``; milliseconds only when there are some)."""
    t = _EPOCH + timedelta(milliseconds=ms)
    return t.isoformat(timespec="milliseconds" if ms % 1000 else "seconds").replace("+00:00", "Z")

"""Normalized per-compartment inputs of the evaluator.

Ingest hands over validated ``coldchain.contract.Sample``s per asset; ``observations_from_sample``
splits one into an ``Observation`` per compartment: device time in epoch ms, the probe values in
the compartment's sensor order, and the derived values the rules read (max/min/mean of the
*control* probes - product probes when the compartment has any reading, else air probes - the
all-probe extremes, and the spread between probes of the same kind). Everything on the hot path is
plain ints, floats, bools and tuples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from coldchain.contract.checks import ts_ms
from coldchain.contract.telemetry import Sample
from coldchain.fleet import Asset, Compartment

__all__ = [
    "STATIONARY_KMH",
    "CompartmentSpec",
    "Observation",
    "make_observation",
    "merge_observations",
    "observations_from_sample",
    "prepare",
    "specs_for",
]

STATIONARY_KMH = 3.0  # a vehicle slower than this is at a stop (loading stop for door rules)


class CompartmentSpec:
    """What the evaluator needs to know about one compartment: its sensors and asset kind."""

    __slots__ = (
        "air_idx",
        "asset_id",
        "asset_kind",
        "compartment_id",
        "index",
        "probes",
        "product_idx",
        "sensor_ids",
    )

    def __init__(
        self,
        asset_id: str,
        compartment_id: str,
        asset_kind: str,
        sensors: Sequence[tuple[str, str]],
    ) -> None:
        self.asset_id = asset_id
        self.compartment_id = compartment_id
        self.asset_kind = asset_kind
        self.sensor_ids: tuple[str, ...] = tuple(s for s, _ in sensors)
        self.probes: tuple[str, ...] = tuple(p for _, p in sensors)
        self.index: dict[str, int] = {s: i for i, s in enumerate(self.sensor_ids)}
        self.product_idx = tuple(i for i, p in enumerate(self.probes) if p == "product")
        self.air_idx = tuple(i for i, p in enumerate(self.probes) if p != "product")

    @classmethod
    def of(cls, asset: Asset, comp: Compartment) -> CompartmentSpec:
        return cls(asset.id, comp.id, asset.kind, [(s.id, s.probe) for s in comp.sensors])

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset_id,
            "compartment": self.compartment_id,
            "kind": self.asset_kind,
            "sensors": [[s, p] for s, p in zip(self.sensor_ids, self.probes, strict=True)],
        }


_SPEC_CACHE: dict[int, tuple[Asset, dict[str, CompartmentSpec]]] = {}


def specs_for(asset: Asset) -> dict[str, CompartmentSpec]:
    """Compartment specs of an asset (cached per Asset object; assets are frozen)."""
    hit = _SPEC_CACHE.get(id(asset))
    if hit is not None and hit[0] is asset:
        return hit[1]
    specs = {c.id: CompartmentSpec.of(asset, c) for c in asset.compartments}
    if len(_SPEC_CACHE) > 10_000:
        _SPEC_CACHE.clear()
    _SPEC_CACHE[id(asset)] = (asset, specs)
    return specs


class Observation:
    """One compartment at one device instant. ``None`` means "not reported" (held from before)."""

    __slots__ = (
        "amax",
        "amin",
        "custody",
        "defrost",
        "door",
        "hi",
        "lo",
        "mean",
        "nofix",
        "setpoint",
        "spread",
        "stationary",
        "temps",
        "ts",
    )

    def __init__(
        self,
        ts: int,
        temps: tuple[float | None, ...],
        hi: float | None,
        lo: float | None,
        mean: float | None,
        amax: float | None,
        amin: float | None,
        spread: float,
        door: bool | None,
        setpoint: float | None,
        defrost: bool | None,
        stationary: bool | None,
        custody: bool,
        nofix: bool = False,
    ) -> None:
        self.ts = ts
        self.temps = temps
        self.hi = hi
        self.lo = lo
        self.mean = mean
        self.amax = amax
        self.amin = amin
        self.spread = spread
        self.door = door
        self.setpoint = setpoint
        self.defrost = defrost
        self.stationary = stationary
        self.custody = custody
        # A position without a GNSS fix: speed unknown (``stationary`` is then None).
        self.nofix = nofix

    def __repr__(self) -> str:
        return (
            f"Observation(ts={self.ts}, temps={self.temps}, door={self.door}, "
            f"setpoint={self.setpoint}, defrost={self.defrost}, stationary={self.stationary}, "
            f"nofix={self.nofix}, custody={self.custody})"
        )

    def key(self) -> tuple[Any, ...]:
        return (
            self.ts,
            self.temps,
            self.door,
            self.setpoint,
            self.defrost,
            self.stationary,
            self.custody,
            self.nofix,
        )


def _extent(
    temps: tuple[float | None, ...], idx: tuple[int, ...]
) -> tuple[float, float, float, int]:
    """(max, min, sum, count) of the reported probes at ``idx``; (0, 0, 0, 0) when none."""
    hi = lo = total = 0.0
    n = 0
    for i in idx:
        v = temps[i]
        if v is None:
            continue
        if n == 0:
            hi = lo = v
        elif v > hi:
            hi = v
        elif v < lo:
            lo = v
        total += v
        n += 1
    return hi, lo, total, n


def _derive(
    spec: CompartmentSpec, temps: tuple[float | None, ...]
) -> tuple[float | None, float | None, float | None, float | None, float | None, float]:
    """(hi, lo, mean) of the control probes, (max, min) of all probes, same-kind spread."""
    p_hi, p_lo, p_sum, p_n = _extent(temps, spec.product_idx)
    a_hi, a_lo, a_sum, a_n = _extent(temps, spec.air_idx)
    spread = 0.0
    if p_n > 1:
        spread = p_hi - p_lo
    if a_n > 1 and a_hi - a_lo > spread:
        spread = a_hi - a_lo
    if p_n:
        if a_n:
            return (
                p_hi,
                p_lo,
                p_sum / p_n,
                p_hi if p_hi > a_hi else a_hi,
                p_lo if p_lo < a_lo else a_lo,
                spread,
            )
        return p_hi, p_lo, p_sum / p_n, p_hi, p_lo, spread
    if a_n:
        return a_hi, a_lo, a_sum / a_n, a_hi, a_lo, spread
    return None, None, None, None, None, spread


def make_observation(
    spec: CompartmentSpec,
    ts: int,
    temps_by_sensor: Mapping[str, float],
    *,
    door_open: bool | None = None,
    setpoint_c: float | None = None,
    mode: str | None = None,
    speed_kmh: float | None = None,
    fix: str | None = None,
    custody: bool = False,
) -> Observation:
    """Build an observation from plain values (e.g. read back from InfluxDB for a recompute).

    Sensors not registered on the compartment are ignored. ``custody=True`` marks a custody
    change at ``ts`` (resets cumulative budgets); it may come with no temperatures at all.
    ``fix="none"`` (a position without a GNSS fix) makes the speed unknown whatever
    ``speed_kmh`` says: ``stationary`` is None and ``nofix`` set; the evaluator keeps a stop
    known from a fix like any held state, for at most the gap limit, then counts the vehicle as
    moving (docs/rules.md section 1).
    """
    temps = tuple(temps_by_sensor.get(s) for s in spec.sensor_ids)
    hi, lo, mean, amax, amin, spread = _derive(spec, temps)
    if spec.asset_kind == "store":
        stationary: bool | None = True
    elif fix == "none":
        # Unknown speed must not grant a moving truck the loading allowances.
        stationary = None
    elif speed_kmh is None:
        stationary = None
    else:
        stationary = speed_kmh < STATIONARY_KMH
    defrost = None if mode is None else mode == "defrost"
    return Observation(
        ts,
        temps,
        hi,
        lo,
        mean,
        amax,
        amin,
        spread,
        door_open,
        setpoint_c,
        defrost,
        stationary,
        custody,
        fix == "none" and spec.asset_kind != "store",
    )


def observations_from_sample(asset: Asset, sample: Sample) -> dict[str, Observation]:
    """Split a validated sample into one observation per compartment it reports on.

    A compartment gets an observation when the sample carries a temperature of one of its
    sensors or a state (door/reefer) for it; unknown sensors are ignored (ingest rejects them).
    """
    ts = ts_ms(sample)
    pos = sample.position
    speed = pos.speed_kmh if pos is not None else None
    fix = pos.fix if pos is not None else None
    out: dict[str, Observation] = {}
    temps_c = sample.temps_c
    states = sample.compartments
    for comp_id, spec in specs_for(asset).items():
        state = states.get(comp_id)
        if state is None and temps_c.keys().isdisjoint(spec.sensor_ids):  # a set test in C
            continue
        out[comp_id] = make_observation(
            spec,
            ts,
            temps_c,
            door_open=state.door_open if state is not None else None,
            setpoint_c=state.setpoint_c if state is not None else None,
            mode=state.mode if state is not None else None,
            speed_kmh=speed,
            fix=fix,
        )
    return out


def merge_observations(spec: CompartmentSpec, a: Observation, b: Observation) -> Observation:
    """Two observations of the same instant (a redelivery, or split messages): ``b`` wins."""
    temps = tuple(vb if vb is not None else va for va, vb in zip(a.temps, b.temps, strict=True))
    hi, lo, mean, amax, amin, spread = _derive(spec, temps)
    return Observation(
        b.ts,
        temps,
        hi,
        lo,
        mean,
        amax,
        amin,
        spread,
        b.door if b.door is not None else a.door,
        b.setpoint if b.setpoint is not None else a.setpoint,
        b.defrost if b.defrost is not None else a.defrost,
        b.stationary if b.stationary is not None else a.stationary,
        a.custody or b.custody,
        (b.nofix or a.nofix) and b.stationary is None and a.stationary is None,
    )


def prepare(spec: CompartmentSpec, observations: Iterable[Observation]) -> list[Observation]:
    """Sort by device time and merge same-instant duplicates: the evaluator's input order."""
    ordered = sorted(observations, key=lambda o: o.ts)
    out: list[Observation] = []
    for o in ordered:
        if out and out[-1].ts == o.ts:
            out[-1] = merge_observations(spec, out[-1], o)
        else:
            out.append(o)
    return out

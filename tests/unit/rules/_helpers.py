"""Builders shared by the rules tests: compartments, profiles, observation series."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from coldchain.rules import (
    BatchResult,
    CompartmentSpec,
    Excursion,
    Observation,
    Profile,
    evaluate,
    load_presets,
    make_observation,
    parse_profiles,
)

T0 = 19_676 * 86_400_000  # 2023-11-15T00:00:00Z, a UTC midnight (MKT buckets align)
MIN = 60_000


def spec(
    kind: str = "vehicle",
    sensors: Sequence[tuple[str, str]] = (("p1", "product"),),
    asset: str = "truck-1",
    comp: str = "front",
) -> CompartmentSpec:
    return CompartmentSpec(asset, comp, kind, sensors)


def profile(*rules: dict[str, Any], name: str = "test") -> Profile:
    return parse_profiles({"profiles": {name: {"rules": list(rules)}}})[name]


def preset(name: str, *rules: str) -> Profile:
    """The packaged preset ``name`` cut down to ``rules`` (all of them when none are named)."""
    full = load_presets()[name]
    keep = tuple(r for r in full.rules if not rules or r.name in rules)
    assert len(keep) == (len(rules) or len(full.rules)), (name, rules)
    return Profile(name=name, rules=keep)


def at(minute: float) -> int:
    return T0 + round(minute * MIN)


def obs(
    sp: CompartmentSpec,
    minute: float,
    *temps: float | None,
    door: bool | None = None,
    setpoint: float | None = None,
    mode: str | None = None,
    speed: float | None = None,
    custody: bool = False,
) -> Observation:
    values = {s: t for s, t in zip(sp.sensor_ids, temps, strict=False) if t is not None}
    return make_observation(
        sp,
        at(minute),
        values,
        door_open=door,
        setpoint_c=setpoint,
        mode=mode,
        speed_kmh=speed,
        custody=custody,
    )


def series(
    sp: CompartmentSpec, values: Iterable[float], step_min: float = 1.0, start_min: float = 0.0
) -> list[Observation]:
    return [obs(sp, start_min + i * step_min, v) for i, v in enumerate(values)]


def run(
    sp: CompartmentSpec,
    prof: Profile,
    observations: Iterable[Observation],
    until_min: float | None = None,
) -> BatchResult:
    return evaluate(sp, prof, observations, until_ms=None if until_min is None else at(until_min))


def only(res: BatchResult, rule: str | None = None) -> list[Excursion]:
    return sorted(
        (e for e in res.excursions.values() if rule is None or e.rule == rule),
        key=lambda e: e.start_ms,
    )


def kinds(res: BatchResult) -> list[str]:
    return [c.kind for c in res.changes]


# Every rule kind, with short delays so random series exercise all of them.
ALL_RULES: tuple[dict[str, Any], ...] = (
    {
        "name": "range",
        "kind": "range",
        "min_c": 2.0,
        "max_c": 8.0,
        "delay_min": 3,
        "clear_delay_min": 2,
        "hysteresis_c": 0.3,
        "defrost_suppress_min": 5,
        "door_extra_delay_min": 2,
        "escalate": {"after_min": 10, "degree_minutes": 20, "peak_beyond_c": 6},
    },
    {"name": "hard_high", "kind": "hard_limit", "max_c": 15.0, "hysteresis_c": 0.5},
    {"name": "hard_low", "kind": "hard_limit", "min_c": 0.0, "inclusive": True},
    {
        "name": "heat_single",
        "kind": "range",
        "max_c": 12.0,
        "inclusive": True,
        "delay_min": 5,
        "severity": "critical",
    },
    {"name": "heat_cum", "kind": "cumulative", "above_c": 9.0, "budget_min": 15, "window_h": 2},
    {"name": "cold_cum", "kind": "cumulative", "below_c": 1.0, "budget_min": 6},
    {"name": "mkt", "kind": "mkt", "max_c": 8.0, "window_h": 1, "min_coverage": 0.3, "buckets": 12},
    {
        "name": "gap",
        "kind": "data_gap",
        "transport_min": 10,
        "storage_min": 30,
        "escalate_after_min": 20,
    },
    {"name": "door", "kind": "door_open", "max_open_min": 3, "loading_max_open_min": 6},
    {"name": "setpoint", "kind": "setpoint", "min_c": 2.0, "max_c": 8.0, "delay_min": 2},
    {
        "name": "stuck",
        "kind": "sensor_fault",
        "check": "stuck",
        "stuck_samples": 4,
        "stuck_min": 3,
        "product_move_c": 2.0,
        "product_move_min": 2,
    },
    {
        "name": "implausible",
        "kind": "sensor_fault",
        "check": "implausible",
        "min_c": -5,
        "max_c": 20,
    },
    {
        "name": "disagree",
        "kind": "sensor_fault",
        "check": "disagree",
        "max_spread_c": 2.0,
        "delay_min": 2,
    },
)

TWO_PROBES = (("p1", "product"), ("a1", "air"), ("a2", "air"))

"""Throughput of the streaming rules evaluator; prints ONE JSON object.

A "reading" is one probe temperature. The series is realistic: 1-minute samples, 3 probes per
compartment (1 product, 2 air), mostly in range with excursions, door openings, defrosts, gaps
and setpoint changes, so every rule does real work (opens, escalates, closes) and the checkpoint
is not trivially empty. All rules of a profile are active: ``pharma_2_8`` (range, 2 hard
limits, MKT, data gap, door, setpoint, 3 sensor-fault checks) plus the WHO cumulative rule, i.e.
every rule kind.

Measured in the same run, so the ratio is meaningful on a noisy machine:

* ``baseline``: a bare Python loop reading every reading and comparing it to one threshold;
* ``evaluator``: ``CompartmentEvaluator.feed`` on pre-normalized observations, interleaved over
  many compartments (what the rules cost);
* ``end_to_end``: ``RulesEngine.feed(asset, sample)`` from validated contract Samples
  (normalization + rules: what ingest pays per sample).

The second part (``alert_latency``, see bench/alert_latency.py) runs real mosquitto, influxd and
one ingest process and times the reading that completes a range delay to its MQTT alert, beside
the broker's own round trip.

Bounded: well under a minute. Usage:
``uv run --frozen python bench/rules.py [--quick] [--no-alerts]``.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coldchain.contract import CompartmentState, Position, Sample
from coldchain.fleet import Asset, Compartment, SensorSpec
from coldchain.rules import (
    CompartmentEvaluator,
    Observation,
    Profile,
    ProfileSet,
    RulesEngine,
    load_presets,
    make_observation,
    specs_for,
)

T0 = 19_676 * 86_400_000
MIN = 60_000
TARGET = 200_000.0


def bench_profile() -> Profile:
    presets = load_presets()
    pharma = presets["pharma_2_8"]
    who = presets["who_indicator"]
    cumulative = next(r for r in who.rules if r.kind == "cumulative")
    return Profile(
        name="bench_all", description="every rule kind", rules=(*pharma.rules, cumulative)
    )


def fleet(n_assets: int) -> list[Asset]:
    return [
        Asset(
            id=f"truck-{i}",
            kind="vehicle",
            devices=(f"dev-{i}",),
            compartments=tuple(
                Compartment(
                    id=c,
                    profile="bench_all",
                    sensors=(
                        SensorSpec(id=f"{c}-p", probe="product"),
                        SensorSpec(id=f"{c}-a1", probe="air"),
                        SensorSpec(id=f"{c}-a2", probe="air"),
                    ),
                )
                for c in ("front", "rear")
            ),
        )
        for i in range(n_assets)
    ]


def temperature(rng: random.Random, minute: int, phase: int) -> float:
    m = (minute + phase) % 1440
    if 600 <= m < 640:  # a 40-minute excursion a day
        return 9.5 + rng.random()
    if 1000 <= m < 1003:  # a short spike beyond the hard limit
        return 16.0
    return 5.0 + rng.uniform(-1.5, 1.5)


def make_samples(asset: Asset, n: int, rng: random.Random) -> list[Sample]:
    phase = rng.randrange(1440)
    out = []
    minute = 0
    for seq in range(n):
        minute += 1 if rng.random() > 0.002 else 15  # occasional data gap
        m = (minute + phase) % 1440
        temps: dict[str, float] = {}
        states = {}
        for comp in asset.compartments:
            t = temperature(rng, minute, phase)
            temps[f"{comp.id}-p"] = round(t, 2)
            temps[f"{comp.id}-a1"] = round(t - 1.0 + rng.uniform(-0.3, 0.3), 2)
            temps[f"{comp.id}-a2"] = round(t - 1.2 + rng.uniform(-0.3, 0.3), 2)
            states[comp.id] = CompartmentState(
                door_open=(300 <= m < 310),
                setpoint_c=5.0 if m < 1200 else 12.0,
                mode="defrost" if 700 <= m < 720 else "cooling",
            )
        out.append(
            Sample(
                ts=datetime.fromtimestamp((T0 + minute * MIN) / 1000, tz=UTC),
                seq=seq,
                temps_c=temps,
                position=Position(lat=48.0, lon=11.0, speed_kmh=0.0 if 300 <= m < 330 else 60.0),
                compartments=states,
            )
        )
    return out


def best_of(runs: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _alert_latency() -> Any:
    """bench/alert_latency.py, loaded by path: bench/ingest.py and bench/simulators.py would
    shadow the packages of the same name if bench/ stayed first on sys.path."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    spec = importlib.util.spec_from_file_location("alert_latency", here / "alert_latency.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    quick = "--quick" in sys.argv
    n_assets, per_asset, runs = (10, 2000, 2) if quick else (20, 3000, 3)
    rng = random.Random(42)
    profile = bench_profile()
    profiles = ProfileSet([profile])
    assets = fleet(n_assets)
    samples = {a.id: make_samples(a, per_asset, rng) for a in assets}
    # interleave assets like a live broker does
    stream: list[tuple[str, Sample]] = [
        (a.id, samples[a.id][i]) for i in range(per_asset) for a in assets
    ]
    observations: list[tuple[tuple[str, str], Observation]] = []
    for asset_id, s in stream:
        asset = next(a for a in assets if a.id == asset_id)
        specs = specs_for(asset)
        for comp_id, spec in specs.items():
            values = {k: v for k, v in s.temps_c.items() if k in spec.index}
            st = s.compartments[comp_id]
            speed = s.position.speed_kmh if s.position else None
            observations.append(
                (
                    (asset_id, comp_id),
                    make_observation(
                        spec,
                        int(s.ts.timestamp() * 1000),
                        values,
                        door_open=st.door_open,
                        setpoint_c=st.setpoint_c,
                        mode=st.mode,
                        speed_kmh=speed,
                    ),
                )
            )
    n_obs = len(observations)
    n_readings = sum(sum(1 for t in o.temps if t is not None) for _, o in observations)

    def baseline() -> None:
        hits = 0
        for _, o in observations:
            for t in o.temps:
                if t is not None and t > 8.0:
                    hits += 1

    changes_seen: list[int] = []

    def evaluator() -> None:
        evs: dict[tuple[str, str], CompartmentEvaluator] = {}
        for a in assets:
            for comp_id, spec in specs_for(a).items():
                evs[(a.id, comp_id)] = CompartmentEvaluator(spec, profile)
        n = 0
        for key, o in observations:
            r = evs[key].feed(o)
            if r:
                n += len(r)  # type: ignore[arg-type]
        changes_seen.append(n)

    engines: list[RulesEngine] = []

    def end_to_end() -> None:
        eng = RulesEngine(assets, profiles)
        for asset_id, s in stream:
            eng.feed(asset_id, s)
        engines.append(eng)

    t_base = best_of(runs, baseline)
    t_eval = best_of(runs, evaluator)
    t_e2e = best_of(max(1, runs - 1), end_to_end)
    checkpoint_bytes = len(json.dumps(engines[-1].checkpoint()))
    eval_rps = n_readings / t_eval
    result = {
        "benchmark": "rules.streaming",
        "python": platform.python_version(),
        "profile": profile.name,
        "rules_active": [r.name for r in profile.rules],
        "compartments": len(assets) * 2,
        "observations": n_obs,
        "readings": n_readings,
        "readings_per_observation": round(n_readings / n_obs, 2),
        "lifecycle_changes": changes_seen[-1],
        "baseline_readings_per_s": round(n_readings / t_base),
        "evaluator_readings_per_s": round(eval_rps),
        "evaluator_observations_per_s": round(n_obs / t_eval),
        "end_to_end_readings_per_s": round(n_readings / t_e2e),
        "end_to_end_samples_per_s": round(len(stream) / t_e2e),
        "evaluator_vs_baseline": round(t_base / t_eval, 4),
        "target_readings_per_s": TARGET,
        "meets_target": eval_rps >= TARGET,
        "checkpoint_bytes": checkpoint_bytes,
        "runs": runs,
    }
    if "--no-alerts" not in sys.argv:
        result["alert_latency"] = _alert_latency().measure(trials=10 if quick else 30)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

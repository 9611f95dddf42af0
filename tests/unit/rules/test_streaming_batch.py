"""One evaluator, two modes: streaming in chunks (with checkpoints) == batch; order and
redelivery inside a batch change nothing; a restart resumes open excursions exactly."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldchain.contract import CompartmentState, Position, Sample
from coldchain.fleet import Asset, Compartment, SensorSpec
from coldchain.rules import (
    Change,
    CompartmentEvaluator,
    Observation,
    ProfileSet,
    RecomputeNeeded,
    RulesEngine,
    evaluate,
    fold,
    make_observation,
)

from ._helpers import ALL_RULES, T0, TWO_PROBES, preset, profile, spec

PROFILE = profile(*ALL_RULES, name="all")

temp = st.one_of(
    st.floats(min_value=-3, max_value=25, allow_nan=False).map(lambda v: round(v, 1)),
    st.sampled_from([4.0, 8.0, 8.3, 0.0, 12.0, 15.0]),
)
# A series is a list of regimes (a steady level held for a while, with a little noise), so that
# delays, budgets and windows are actually reached, plus single odd samples and gaps.
regime = st.tuples(
    st.integers(1, 40),  # samples in the regime
    st.sampled_from([30, 60, 60, 120, 700, 1300]),  # seconds between samples
    temp,  # product level
    temp,  # air level
    st.sampled_from([0.0, 0.0, 0.2, 3.0]),  # noise amplitude
    st.sampled_from([None, True, False]),
    st.sampled_from([None, 5.0, -18.0]),
    st.sampled_from([None, "cooling", "defrost"]),
    st.sampled_from([None, 0.0, 50.0]),
    st.sampled_from([False] * 9 + [True]),  # custody change at the regime start
    st.sampled_from([False, False, True]),  # product probe missing
    st.integers(0, 2**16),  # noise seed
)


def expand(regimes: list[tuple]) -> list[tuple]:  # type: ignore[type-arg]
    steps = []
    for n, dt, p, a, noise, door, sp_c, mode, speed, custody, no_p, seed in regimes:
        rng = random.Random(seed)
        for i in range(n):
            jitter = round(rng.uniform(-noise, noise), 1) if noise else 0.0
            steps.append(
                (
                    dt,
                    None if no_p else round(p + jitter, 1),
                    round(a - jitter, 1),
                    None if rng.random() < 0.2 else round(a + 0.5, 1),
                    door,
                    sp_c,
                    mode,
                    speed,
                    custody and i == 0,
                )
            )
    return steps


def build(steps: list[tuple]) -> list[Observation]:  # type: ignore[type-arg]
    sp = spec(sensors=TWO_PROBES)
    out = []
    ts = T0
    for dt, p1, a1, a2, door, sp_c, mode, speed, custody in steps:
        ts += dt * 1000
        values = {k: v for k, v in (("p1", p1), ("a1", a1), ("a2", a2)) if v is not None}
        out.append(
            make_observation(
                sp,
                ts,
                values,
                door_open=door,
                setpoint_c=sp_c,
                mode=mode,
                speed_kmh=speed,
                custody=custody,
            )
        )
    return out


def stream(observations: list[Observation], cuts: list[int]) -> list[Change]:
    sp = spec(sensors=TWO_PROBES)
    ev = CompartmentEvaluator(sp, PROFILE)
    changes: list[Change] = []
    for i, o in enumerate(observations):
        if i in cuts:  # restart: checkpoint through JSON into a brand-new evaluator
            saved = json.loads(json.dumps(ev.dump()))
            ev = CompartmentEvaluator(sp, PROFILE)
            ev.load(saved)
        r = ev.feed(o)
        assert not isinstance(r, RecomputeNeeded)
        changes.extend(r)
    return changes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(regime, min_size=1, max_size=25),
    st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=6),
)
def test_streaming_in_chunks_equals_batch(regimes: list[tuple], fractions: list[float]) -> None:  # type: ignore[type-arg]
    observations = build(expand(regimes))
    cuts = [int(f * len(observations)) for f in fractions]
    batch = evaluate(spec(sensors=TWO_PROBES), PROFILE, observations)
    streamed = stream(observations, cuts)
    assert streamed == batch.changes
    assert fold(streamed) == batch.excursions


def test_random_long_series_exercises_every_rule() -> None:
    # Not a tautology guard: the property above is only meaningful if the profile fires.
    rng = random.Random(11)
    steps = []
    for _ in range(6000):
        warm = rng.random() < 0.3
        steps.append(
            (
                rng.choice([30, 60, 60, 60, 900]),
                round(rng.uniform(9, 16) if warm else rng.uniform(-1, 8), 1),
                round(rng.uniform(-1, 25), 1),
                rng.choice([None, 4.0, 4.0, 30.0]),
                rng.choice([None, True, False, False]),
                rng.choice([None, 5.0, -18.0]),
                rng.choice([None, "cooling", "defrost"]),
                rng.choice([None, 0.0, 50.0]),
                rng.random() < 0.01,
            )
        )
    observations = build(steps)
    batch = evaluate(spec(sensors=TWO_PROBES), PROFILE, observations)
    fired = {e.rule for e in batch.excursions.values()}
    # Every profile rule, and the data-gap rule's per-probe watch (docs/rules.md 4.6).
    assert fired - {r["name"] for r in ALL_RULES} <= {"silent.a1", "silent.a2"}
    assert fired >= {r["name"] for r in ALL_RULES}
    assert stream(observations, [100, 2500, 5999]) == batch.changes


def test_only_lifecycle_changes_are_reported() -> None:
    sp = spec()
    ev = CompartmentEvaluator(sp, profile(*ALL_RULES[:1]))
    reports = []
    for m in range(120):  # two hours outside range: opened, escalated - nothing per reading
        r = ev.feed(make_observation(sp, T0 + m * 60_000, {"p1": 9.0}))
        assert isinstance(r, list)
        reports.extend(r)
    assert [c.kind for c in reports] == ["opened", "escalated"]


# --- through the engine, with real contract Samples ---------------------------------------

ASSET = Asset(
    id="truck-1",
    kind="vehicle",
    devices=("dev-1",),
    compartments=(
        Compartment(
            id="front",
            profile="all",
            sensors=(SensorSpec(id="p1", probe="product"), SensorSpec(id="a1", probe="air")),
        ),
        Compartment(id="rear", profile="all", sensors=(SensorSpec(id="p2", probe="product"),)),
    ),
)


def sample(i: int, p1: float, p2: float, door: bool = False) -> Sample:
    return Sample(
        ts=datetime.fromtimestamp((T0 + i * 60_000) / 1000, tz=UTC),
        seq=i,
        temps_c={"p1": p1, "a1": p1 - 1.0, "p2": p2},
        position=Position(lat=48.1, lon=11.5, speed_kmh=40.0),
        compartments={
            "front": CompartmentState(door_open=door, setpoint_c=5.0, mode="cooling"),
            "rear": CompartmentState(door_open=False, setpoint_c=-18.0, mode="cooling"),
        },
    )


def engine() -> RulesEngine:
    return RulesEngine([ASSET], ProfileSet([PROFILE]))


def messages() -> list[list[Sample]]:
    rng = random.Random(5)
    out, batch = [], []
    for i in range(400):
        p1 = 10.0 if 50 <= i < 90 else (16.0 if 200 <= i < 203 else 5.0 + rng.random())
        p2 = 0.5 if 120 <= i < 140 else 4.0 + rng.random()
        batch.append(sample(i, round(p1, 2), round(p2, 2), door=(300 <= i < 310)))
        if rng.random() < 0.2:
            out.append(batch)
            batch = []
    out.append(batch)
    return out


def test_duplicates_and_order_inside_a_batch_change_nothing() -> None:
    clean = engine()
    clean_changes = []
    for msg in messages():
        res = clean.feed("truck-1", msg)
        assert res.recompute == []
        clean_changes.extend(res.changes)
    assert len(fold(clean_changes)) >= 5

    rng = random.Random(9)
    dirty = engine()
    dirty_changes = []
    for msg in messages():
        redelivered = msg + rng.sample(msg, k=len(msg) // 2)  # at-least-once redelivery
        rng.shuffle(redelivered)
        res = dirty.feed("truck-1", redelivered)
        assert res.recompute == []
        dirty_changes.extend(res.changes)
        again = dirty.feed("truck-1", msg[-1])  # the whole last sample, redelivered alone
        assert again.changes == [] and again.recompute == []
    assert fold(dirty_changes) == fold(clean_changes)
    assert dirty_changes == clean_changes


def test_checkpoint_mid_excursion_resumes_identically() -> None:
    msgs = messages()
    whole = engine()
    expected = [c for m in msgs for c in whole.feed("truck-1", m).changes]

    first = engine()
    got = []
    cut = next(i for i, m in enumerate(msgs) if m and m[-1].seq > 70)  # inside the 50..90 run
    for m in msgs[: cut + 1]:
        got.extend(first.feed("truck-1", m).changes)
    open_now = first.open_excursions()
    assert any(e.rule == "range" for e in open_now)
    saved = json.dumps(first.checkpoint())

    second = engine()
    second.restore(json.loads(saved))
    assert second.open_excursions() == open_now
    # the last sample before the restart, redelivered after it, is still recognised
    redelivered = second.feed("truck-1", msgs[cut][-1])
    assert redelivered.changes == [] and redelivered.recompute == []
    for m in msgs[cut + 1 :]:
        got.extend(second.feed("truck-1", m).changes)
    assert got == expected


def test_issue9_examples_stream_with_a_checkpoint_at_every_sample() -> None:
    """The new state (out-of-range time, door-held-back runs, stuck evidence, implausible
    values) survives a checkpoint anywhere: streaming restarted at every sample == batch."""
    sp = spec(sensors=(("a1", "air"), ("p1", "product")))
    prof = preset("frozen")
    seq = []
    for m in range(215):
        air = -8.0 if 30 <= m < 60 else -20.5 + (m % 4) * 0.5
        if m < 120:  # frozen through a defrost (stuck), one power-on value at 100
            product = 85.0 if m == 100 else -20.0
        elif m < 155:  # 35 min warm with the door open at a stop: held back, then recorded
            product = -15.0
        elif m < 170:
            product = -20.5
        else:  # dithering across the -12 hard limit
            product = -16.0 + (m % 2) * 5
        seq.append(
            make_observation(
                sp,
                T0 + m * 60_000,
                {"a1": air, "p1": product},
                door_open=m < 20 or 120 <= m < 155,
                mode="defrost" if 30 <= m < 60 else "cooling",
                speed_kmh=0.0,
            )
        )
    batch = evaluate(sp, prof, seq)
    rules = sorted((e.rule, e.status) for e in batch.excursions.values())
    assert rules == [
        ("door", "closed"),
        ("door", "closed"),
        ("hard_high", "open"),
        ("implausible", "closed"),
        ("range", "closed"),
        ("range", "open"),
        ("stuck", "closed"),
    ]
    ev = CompartmentEvaluator(sp, prof)
    streamed: list[Change] = []
    for o in seq:
        saved = json.loads(json.dumps(ev.dump()))
        ev = CompartmentEvaluator(sp, prof)
        ev.load(saved)
        r = ev.feed(o)
        assert not isinstance(r, RecomputeNeeded)
        streamed.extend(r)
    assert streamed == batch.changes

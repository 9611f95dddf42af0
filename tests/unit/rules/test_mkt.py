"""Mean kinetic temperature: formula, hand-computed values, stability, and the MKT rule."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from coldchain.rules import (
    CompartmentSpec,
    MktAccumulator,
    Observation,
    mean_kinetic_temperature,
)

from ._helpers import at, obs, only, profile, run, spec

K = 10_000.0


def naive(temps: list[float], weights: list[float]) -> float:
    num = sum(w * math.exp(-K / (t + 273.15)) for t, w in zip(temps, weights, strict=True))
    return K / -math.log(num / sum(weights)) - 273.15


def test_hand_computed_two_hours_at_5_one_hour_at_25() -> None:
    # By hand, with T1 = 278.15 K (5 degC, weight 2 h) and T2 = 298.15 K (25 degC, 1 h):
    #   a1 = 10000 / 278.15 = 35.951825     a2 = 10000 / 298.15 = 33.540164
    #   mean = (2 e^-a1 + 1 e^-a2) / 3 = e^-a2 (2 e^-(a1 - a2) + 1) / 3
    #   a1 - a2 = 2.411660, e^-2.411660 = 0.089665, (2 x 0.089665 + 1) / 3 = 0.393110
    #   ln(mean) = -33.540164 + ln(0.393110) = -33.540164 - 0.933663 = -34.473827
    #   MKT = 10000 / 34.473827 = 290.0751 K = 16.925 degC
    # (the arithmetic mean is 11.67 degC: the hour at 25 dominates)
    got = mean_kinetic_temperature([5.0, 25.0], [2.0, 1.0])
    assert got == pytest.approx(16.925, abs=0.001)
    assert got == pytest.approx(naive([5.0, 25.0], [2.0, 1.0]), abs=1e-9)


def test_constant_temperature_gives_that_temperature() -> None:
    for t in (-25.0, 0.0, 5.0, 25.0, 40.0):
        assert mean_kinetic_temperature([t] * 100) == pytest.approx(t, abs=1e-9)


def test_a_spike_raises_mkt_above_the_arithmetic_mean() -> None:
    temps = [5.0] * 23 + [30.0]
    mean = sum(temps) / len(temps)
    mkt = mean_kinetic_temperature(temps)
    assert mkt > mean + 1.0
    assert mkt < max(temps)


def test_mkt_never_below_mean_for_random_series() -> None:
    rng = random.Random(7)
    for _ in range(50):
        temps = [rng.uniform(-20, 40) for _ in range(30)]
        weights = [rng.uniform(0.1, 5) for _ in range(30)]
        mean = sum(t * w for t, w in zip(temps, weights, strict=True)) / sum(weights)
        assert mean_kinetic_temperature(temps, weights) >= mean - 1e-9


def test_numerically_stable_where_the_naive_formula_fails() -> None:
    # dH/R = 1e6 K: exp(-1e6/T) underflows to 0 for every T, the naive formula divides by log 0
    temps = [-80.0, -70.0] * 1000
    with pytest.raises((ValueError, ZeroDivisionError)):
        num = sum(math.exp(-1e6 / (t + 273.15)) for t in temps)
        _ = 1e6 / -math.log(num / len(temps))
    got = mean_kinetic_temperature(temps, dh_r_k=1e6)
    assert -80.0 < got < -70.0
    # a long series (1 year of minutes) at a constant value stays exact
    n = 525_600
    assert mean_kinetic_temperature([4.0] * n) == pytest.approx(4.0, abs=1e-9)


def test_accumulator_matches_the_batch_formula() -> None:
    rng = random.Random(3)
    acc = MktAccumulator(ref_c=8.0)
    temps, weights = [], []
    for _ in range(5000):
        t, w = rng.uniform(-30, 60), rng.uniform(0.5, 2)
        acc.add(t, w)
        temps.append(t)
        weights.append(w)
    assert acc.value == pytest.approx(mean_kinetic_temperature(temps, weights), abs=1e-9)


def _day(sp: CompartmentSpec, temp_for_minute: Callable[[int], float]) -> list[Observation]:
    return [obs(sp, m, temp_for_minute(m)) for m in range(0, 24 * 60 + 31)]


MKT = {"name": "mkt", "kind": "mkt", "max_c": 8.0, "window_h": 24}


def test_mkt_rule_opens_when_the_24h_mkt_exceeds_the_limit() -> None:
    sp = spec()
    # 22 h at 6 degC, 2 h at 20 degC: mean 7.17 (inside), MKT about 8.8 (> 8)
    hot = run(sp, profile(MKT), _day(sp, lambda m: 20.0 if 600 <= m < 720 else 6.0))
    [exc] = only(hot)
    assert exc.kind == "mkt" and exc.status == "open"
    assert exc.start_ms == at(24 * 60)  # first full window ends at midnight
    expected = mean_kinetic_temperature([6.0, 20.0], [22.0, 2.0])
    assert expected > 8.0
    assert exc.peak_c == pytest.approx(expected, abs=1e-6)


def test_mkt_rule_quiet_when_within_the_limit_and_before_a_full_window() -> None:
    sp = spec()
    cool = run(sp, profile(MKT), _day(sp, lambda m: 20.0 if 600 <= m < 630 else 6.0))
    assert only(cool) == []  # 30 min at 20: MKT about 6.5
    part = [obs(sp, m, 30.0) for m in range(0, 23 * 60)]
    assert only(run(sp, profile(MKT), part)) == []  # hot, but not yet observed for 24 h


def test_mkt_rule_window_value_equals_the_formula_over_the_trailing_24h() -> None:
    from coldchain.rules import CompartmentEvaluator
    from coldchain.rules.kinds.mkt import MktKind

    sp = spec()
    prof = profile({**MKT, "max_c": 60.0})  # never alarms: we read the value
    ev = CompartmentEvaluator(sp, prof)
    rng = random.Random(2)
    minutes = 3 * 24 * 60 + 37
    temps = [round(rng.uniform(-5, 30) if rng.random() < 0.1 else rng.uniform(2, 8), 2)]
    for _ in range(minutes - 1):
        temps.append(temps[-1] if rng.random() < 0.5 else round(rng.uniform(0, 12), 2))
    for m, t in enumerate(temps):
        ev.feed(obs(sp, m, t))
    rule = next(r for r in ev.rules if isinstance(r, MktKind))
    # the last evaluated bucket ends at the last 15-minute boundary before the last sample
    end = (minutes - 1) // 15 * 15
    window = temps[end - 24 * 60 : end]
    assert rule.value() == pytest.approx(mean_kinetic_temperature(window), abs=1e-9)

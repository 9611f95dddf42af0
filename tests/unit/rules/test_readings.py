"""Normalization of contract Samples into per-compartment observations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coldchain.contract import CompartmentState, Position, Sample
from coldchain.fleet import Asset, Compartment, SensorSpec
from coldchain.rules import make_observation, observations_from_sample, prepare, specs_for

from ._helpers import T0, obs, spec

ASSET = Asset(
    id="truck-1",
    kind="vehicle",
    devices=("d",),
    compartments=(
        Compartment(
            id="front",
            profile="chilled",
            sensors=(
                SensorSpec(id="p1", probe="product"),
                SensorSpec(id="p2", probe="product"),
                SensorSpec(id="a1", probe="air"),
            ),
        ),
        Compartment(id="rear", profile="frozen", sensors=(SensorSpec(id="a2", probe="air"),)),
        Compartment(id="mid", profile="frozen", sensors=(SensorSpec(id="a3", probe="air"),)),
    ),
)


def test_sample_splits_into_compartments_with_derived_values() -> None:
    s = Sample(
        ts=datetime.fromtimestamp(T0 / 1000 + 1.234, tz=UTC),
        seq=1,
        temps_c={"p1": 3.0, "p2": 5.0, "a1": 9.0, "a2": -19.0},
        position=Position(lat=1.0, lon=2.0, speed_kmh=0.5),
        compartments={"front": CompartmentState(door_open=True, setpoint_c=2.0, mode="defrost")},
    )
    out = observations_from_sample(ASSET, s)
    assert set(out) == {"front", "rear"}  # "mid" reported nothing
    f = out["front"]
    assert f.ts == T0 + 1234
    assert (f.hi, f.lo, f.mean) == (5.0, 3.0, 4.0)  # product probes control
    assert (f.amax, f.amin, f.spread) == (9.0, 3.0, 2.0)
    assert (f.door, f.setpoint, f.defrost, f.stationary) == (True, 2.0, True, True)
    r = out["rear"]
    assert (r.hi, r.door, r.defrost, r.stationary) == (-19.0, None, None, True)


def test_prepare_sorts_and_merges_same_instant() -> None:
    sp = specs_for(ASSET)["front"]
    a = obs(sp, 1, 3.0, None, None)
    b = obs(sp, 1, None, 5.0, None, door=True)
    c = obs(sp, 0, 4.0, 4.0, 4.0)
    out = prepare(sp, [a, b, c, a])
    assert [o.ts for o in out] == [c.ts, a.ts]
    assert out[1].temps == (3.0, 5.0, None) and out[1].door is True and out[1].hi == 5.0
    assert prepare(spec(), []) == []


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["air", "product"]),
            st.one_of(st.none(), st.floats(min_value=-50, max_value=50, allow_nan=False)),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_derived_values_match_their_definition(probes: list[tuple[str, float | None]]) -> None:
    sp = spec(sensors=[(f"s{i}", kind) for i, (kind, _) in enumerate(probes)])
    values = {f"s{i}": v for i, (_, v) in enumerate(probes) if v is not None}
    o = make_observation(sp, T0, values)
    product = [v for k, v in probes if k == "product" and v is not None]
    air = [v for k, v in probes if k == "air" and v is not None]
    control = product or air
    if not control:
        assert (o.hi, o.lo, o.mean, o.amax, o.amin) == (None, None, None, None, None)
    else:
        assert (o.hi, o.lo) == (max(control), min(control))
        assert o.mean == pytest.approx(sum(control) / len(control))
        assert (o.amax, o.amin) == (max(product + air), min(product + air))
    spreads = [max(g) - min(g) for g in (product, air) if len(g) > 1]
    assert o.spread == (max(spreads) if spreads else 0.0)

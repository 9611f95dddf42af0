"""A reloaded fleet applied to a running engine (RulesEngine.apply_fleet; docs/operations.md,
"Onboarding without restarts")."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from coldchain.contract import Sample
from coldchain.exceptions import ProfileError
from coldchain.fleet import Asset, Compartment, SensorSpec
from coldchain.rules import Change, RulesEngine, load_presets

from ._helpers import MIN, at

WALL = 5_000_000_000_000


def _truck(
    asset_id: str, *compartments: str, profile: str = "frozen", extra: bool = False
) -> Asset:
    return Asset(
        id=asset_id,
        kind="vehicle",
        devices=(f"{asset_id}-tcu",),
        compartments=tuple(
            Compartment(
                id=c,
                profile=profile,
                sensors=(SensorSpec(id=f"{c}-air", probe="air"), SensorSpec(id=f"{c}-prod"))
                + ((SensorSpec(id=f"{c}-extra"),) if extra else ()),
            )
            for c in compartments
        ),
    )


def _sample(minute: float, temps: dict[str, float]) -> Sample:
    return Sample(ts=datetime.fromtimestamp(at(minute) / 1000, tz=UTC), seq=0, temps_c=temps)


def _feed(eng: RulesEngine, asset_id: str, minutes: range, temps: dict[str, float]) -> list[Change]:
    out: list[Change] = []
    for m in minutes:
        out += eng.feed(asset_id, _sample(m, temps), WALL + m * MIN).changes
        out += eng.tick_asset(asset_id, at(m), WALL + m * MIN)
    return out


def _warm_rear_and_cold_front(eng: RulesEngine) -> list[Change]:
    # rear at -5 degC: above the frozen hard limit of -12 degC from the first reading
    temps = {"front-air": -21.0, "front-prod": -20.0, "rear-air": -5.0, "rear-prod": -5.0}
    return _feed(eng, "truck-1", range(0, 5), temps)


def test_a_removed_compartment_closes_its_excursions_and_leaves_no_phantom_gap() -> None:
    eng = RulesEngine([_truck("truck-1", "front", "rear")], load_presets())
    opened = _warm_rear_and_cold_front(eng)
    assert {(c.kind, c.excursion.compartment_id) for c in opened} >= {("opened", "rear")}
    open_rear = {e.id for e in eng.open_excursions() if e.compartment_id == "rear"}
    assert open_rear

    changes = eng.apply_fleet([_truck("truck-1", "front")], WALL + 5 * MIN)

    assert {c.excursion.id for c in changes} == open_rear
    assert all(c.kind == "closed" for c in changes)
    assert all("compartment removed from the fleet" in c.excursion.detail for c in changes)
    assert all(c.excursion.end_ms == at(4) for c in changes)  # its last evaluated time
    assert not [e for e in eng.open_excursions() if e.compartment_id == "rear"]
    # Hours of silence later: the front's gap opens, the removed rear's never does.
    later = eng.tick_asset("truck-1", at(240), WALL + 240 * MIN)
    gaps = {(c.excursion.compartment_id, c.excursion.kind) for c in later}
    assert gaps == {("front", "data_gap")}
    saved = eng.checkpoint()["compartments"]
    assert [c["compartment"] for c in saved] == ["front"]


def test_a_removed_asset_stops_ticking_and_a_new_one_is_evaluated() -> None:
    eng = RulesEngine([_truck("truck-1", "front")], load_presets())
    _feed(eng, "truck-1", range(0, 3), {"front-air": -21.0, "front-prod": -20.0})
    with pytest.raises(ProfileError):
        eng.feed("truck-2", _sample(3, {"main-air": -5.0}), WALL)

    assert eng.apply_fleet([_truck("truck-2", "main")], WALL) == []

    assert eng.tick_asset("truck-1", at(240), WALL + 240 * MIN) == []
    changes = _feed(eng, "truck-2", range(3, 6), {"main-air": -5.0, "main-prod": -5.0})
    assert ("opened", "hard_high") in {(c.kind, c.excursion.rule) for c in changes}


def test_unchanged_compartments_keep_their_state_and_open_excursions() -> None:
    eng = RulesEngine([_truck("truck-1", "front", "rear")], load_presets())
    _warm_rear_and_cold_front(eng)
    before = {(a, c): eng.evaluator(a, c) for a, c in [("truck-1", "front"), ("truck-1", "rear")]}
    open_before = sorted(e.id for e in eng.open_excursions())

    changes = eng.apply_fleet([_truck("truck-1", "front", "rear"), _truck("truck-9", "main")], WALL)

    assert changes == []
    assert sorted(e.id for e in eng.open_excursions()) == open_before
    for key, ev in before.items():
        assert eng.evaluator(*key) is ev


def test_a_changed_profile_or_sensor_set_restarts_the_rules_but_keeps_the_gap_clock() -> None:
    eng = RulesEngine([_truck("truck-1", "front", "rear")], load_presets())
    _warm_rear_and_cold_front(eng)
    ts_before = eng.evaluator("truck-1", "rear").ts

    changes = eng.apply_fleet([_truck("truck-1", "front", "rear", profile="chilled")], WALL)

    assert changes and all(c.kind == "closed" for c in changes)
    assert all("profile changed in the fleet" in c.excursion.detail for c in changes)
    rear = eng.evaluator("truck-1", "rear")
    assert rear.profile.name == "chilled"
    assert rear.ts == ts_before

    eng.apply_fleet([_truck("truck-1", "front", "rear", profile="chilled", extra=True)], WALL)
    rear = eng.evaluator("truck-1", "rear")
    assert "rear-extra" in rear.spec.sensor_ids
    assert rear.ts == ts_before  # the gap clock carried over


def test_an_unknown_profile_is_refused_and_changes_nothing() -> None:
    eng = RulesEngine([_truck("truck-1", "front")], load_presets())
    _feed(eng, "truck-1", range(0, 3), {"front-air": -21.0, "front-prod": -20.0})
    ev = eng.evaluator("truck-1", "front")

    with pytest.raises(ProfileError, match="no-such-profile"):
        eng.apply_fleet([_truck("truck-2", "main", profile="no-such-profile")], WALL)

    assert eng.evaluator("truck-1", "front") is ev
    with pytest.raises(ProfileError):
        eng.feed("truck-2", _sample(3, {"main-air": -5.0}), WALL)

"""Profile presets, YAML loading with precise errors, assignment history."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldchain.exceptions import ConfigError, ProfileError
from coldchain.fleet import Asset, Compartment, SensorSpec
from coldchain.rules import (
    ProfileAssignment,
    RulesEngine,
    load_presets,
    load_profiles,
    parse_profiles,
    profile_at,
)
from coldchain.rules.profiles import CumulativeRule, DataGapRule, MktRule, RangeRule

from ._helpers import T0, at, obs, spec


def test_presets_have_the_documented_limits() -> None:
    ps = load_presets()
    assert ps.names == ["chilled", "controlled_room", "frozen", "pharma_2_8", "who_indicator"]

    def rule(profile: str, name: str):  # type: ignore[no-untyped-def]
        return next(r for r in ps[profile].rules if r.name == name)

    assert (rule("frozen", "range").min_c, rule("frozen", "range").max_c) == (None, -18.0)
    assert (rule("chilled", "range").min_c, rule("chilled", "range").max_c) == (0.0, 4.0)
    assert (rule("pharma_2_8", "range").min_c, rule("pharma_2_8", "range").max_c) == (2.0, 8.0)
    room = rule("controlled_room", "range")
    assert (room.min_c, room.max_c) == (15.0, 25.0)
    mkt_cold, mkt_room = rule("pharma_2_8", "mkt"), rule("controlled_room", "mkt")
    assert isinstance(mkt_cold, MktRule) and isinstance(mkt_room, MktRule)
    assert (mkt_cold.window_h, mkt_room.window_h, mkt_cold.dh_r_k) == (24, 720, 10_000)
    heat = rule("who_indicator", "heat_45_single")
    assert isinstance(heat, RangeRule)
    assert (heat.max_c, heat.inclusive, heat.delay_min) == (45.0, True, 60)
    cum = rule("who_indicator", "heat_30_cumulative")
    assert isinstance(cum, CumulativeRule)
    assert (cum.above_c, cum.inclusive, cum.budget_min) == (30.0, True, 600)
    freeze = rule("who_indicator", "freeze_single")
    assert isinstance(freeze, RangeRule)
    assert (freeze.min_c, freeze.inclusive, freeze.delay_min) == (-0.5, True, 60)
    gap = rule("frozen", "gap")
    assert isinstance(gap, DataGapRule) and (gap.transport_min, gap.storage_min) == (10, 30)


def test_load_from_file_and_merge_over_presets(tmp_path: Path) -> None:
    f = tmp_path / "profiles.yaml"
    f.write_text(
        "version: 1\nprofiles:\n  chilled:\n    rules:\n"
        "      - {name: range, kind: range, min_c: 1, max_c: 5}\n"
        "  ice_cream:\n    rules:\n      - {name: range, kind: range, max_c: -22}\n"
    )
    mine = load_profiles(f)
    both = load_presets().merged(mine)
    assert "ice_cream" in both and "frozen" in both
    assert both["chilled"].rules[0].max_c == 5  # type: ignore[union-attr]
    # What ingest and the API load from COLDCHAIN_PROFILES_PATH: the same merge.
    configured = load_presets(f)
    assert configured.names == both.names
    assert configured["chilled"].rules[0].max_c == 5  # type: ignore[union-attr]
    assert load_presets()["chilled"].rules[0].max_c == 4  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        ({"name": "range", "kind": "range", "max_c": "warm"}, "profiles.p.rules.0.max_c", "warm"),
        ({"name": "range", "kind": "range", "min_c": 8, "max_c": 2}, "profiles.p.rules.0", None),
        ({"name": "range", "kind": "ranj", "max_c": 2}, "profiles.p.rules.0", None),
        (
            {"name": "gap", "kind": "data_gap", "transport_min": -1},
            "profiles.p.rules.0.transport_min",
            -1,
        ),
        ({"name": "range", "kind": "range", "max_c": 8, "delay": 5}, "profiles.p.rules.0.delay", 5),
    ],
)
def test_errors_name_the_field_and_the_bad_value(body: dict, field: str, value: object) -> None:  # type: ignore[type-arg]
    with pytest.raises(ProfileError) as info:
        parse_profiles({"profiles": {"p": {"rules": [body]}}}, source="mine.yaml")
    err = info.value
    assert isinstance(err, ConfigError)
    assert err.option == field
    if value is not None:
        assert err.value == value
    assert "mine.yaml" in str(err)


def test_duplicate_rule_names_and_unreadable_file(tmp_path: Path) -> None:
    rules = [{"name": "r", "kind": "range", "max_c": 8}, {"name": "r", "kind": "range", "max_c": 9}]
    with pytest.raises(ProfileError, match="duplicate rule names"):
        parse_profiles({"profiles": {"p": {"rules": rules}}})
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path / "missing.yaml")
    assert info.value.option == "file"


def test_assignment_history_picks_the_newest_in_force() -> None:
    hist = [
        ProfileAssignment(asset="t", compartment="c", profile="chilled", from_ms=100, by="ops"),
        ProfileAssignment(
            asset="t",
            compartment="c",
            profile="frozen",
            from_ms=200,
            by="ops",
            reason="reconfigured for ice cream",
        ),
        ProfileAssignment(asset="t", compartment="x", profile="pharma_2_8", from_ms=0, by="ops"),
    ]
    assert profile_at(hist, "t", "c", 50, default="d") == "d"
    assert profile_at(hist, "t", "c", 100) == "chilled"
    assert profile_at(hist, "t", "c", 199) == "chilled"
    assert profile_at(hist, "t", "c", 200) == "frozen"


def test_engine_assignment_change_closes_old_excursions_and_switches_rules() -> None:
    asset = Asset(
        id="truck-1",
        kind="vehicle",
        devices=("d",),
        compartments=(
            Compartment(
                id="front", profile="chilled", sensors=(SensorSpec(id="p1", probe="product"),)
            ),
        ),
    )
    eng = RulesEngine([asset], load_presets())
    sp = spec()
    res = eng.feed_observations("truck-1", "front", [obs(sp, m, -20.0) for m in range(0, 30)])
    assert any(c.excursion.rule == "range" for c in res.changes)  # -20 is too cold for chilled
    changes = eng.assign(
        ProfileAssignment(
            asset="truck-1",
            compartment="front",
            profile="frozen",
            from_ms=at(30),
            by="dispatcher",
            reason="now carries frozen goods",
        )
    )
    closed = {c.excursion.rule: c.excursion for c in changes}
    assert closed["range"].status == "closed" and closed["range"].end_ms == at(30)
    assert "profile changed to frozen" in closed["range"].detail
    res = eng.feed_observations("truck-1", "front", [obs(sp, m, -20.0) for m in range(30, 90)])
    assert res.changes == []  # -20 is fine for frozen
    assert eng.profile_for("truck-1", "front", at(31)).name == "frozen"
    assert eng.profile_for("truck-1", "front", T0).name == "chilled"


def test_unknown_profile_in_the_fleet_fails_early() -> None:
    asset = Asset(
        id="t",
        kind="store",
        devices=("d",),
        compartments=(
            Compartment(id="z", profile="nope", sensors=(SensorSpec(id="s", probe="air"),)),
        ),
    )
    with pytest.raises(ProfileError, match="unknown profile"):
        RulesEngine([asset], load_presets())

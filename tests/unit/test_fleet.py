"""The fleet registry: YAML loading, lookups, and errors that name the offending entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from coldchain.exceptions import RegistryError
from coldchain.fleet import Fleet, load_fleet
from tests.unit.support import STORE, TRUCK, fleet


def asset(aid: str, devices: list[str], comps: list[tuple[str, list[str]]]) -> dict[str, Any]:
    return {
        "id": aid,
        "kind": "vehicle",
        "devices": devices,
        "compartments": [
            {"id": cid, "profile": "chilled", "sensors": [{"id": s} for s in sensors]}
            for cid, sensors in comps
        ],
    }


def write(tmp_path: Path, assets: list[dict[str, Any]]) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"assets": assets}), encoding="utf-8")
    return path


def test_load_and_lookups(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [asset("truck-1", ["dev-1"], [("front", ["t1", "t2"]), ("rear", ["t3"])])],
    )
    f = load_fleet(path)
    a = f.asset_of("dev-1")
    assert a is not None and a.id == "truck-1" and a.kind == "vehicle"
    assert f.asset_of("dev-2") is None
    assert f.sensor("truck-1", "t3") == ("rear", "air")
    assert f.sensor("truck-1", "nope") is None and f.sensor("other", "t1") is None
    assert f.has_compartment("truck-1", "rear") and not f.has_compartment("truck-1", "x")
    assert f.device_ids == ["dev-1"]


def test_yaml_round_trip(tmp_path: Path) -> None:
    original = fleet()
    path = tmp_path / "f.yaml"
    path.write_text(original.to_yaml(), encoding="utf-8")
    again = load_fleet(path)
    assert list(again.assets.values()) == [TRUCK, STORE]
    assert again.device_ids == ["dev-1", "gw-1", "gw-2"]


def _error(tmp_path: Path, assets: list[dict[str, Any]]) -> str:
    path = write(tmp_path, assets)
    with pytest.raises(RegistryError) as info:
        load_fleet(path)
    message = str(info.value)
    assert str(path) in message  # every error names the file
    return message


def test_duplicate_asset_names_it(tmp_path: Path) -> None:
    msg = _error(
        tmp_path, [asset("a1", ["d1"], [("c", ["s"])]), asset("a1", ["d2"], [("c", ["s"])])]
    )
    assert "duplicate asset id 'a1'" in msg


def test_device_on_two_assets_names_both(tmp_path: Path) -> None:
    msg = _error(
        tmp_path, [asset("a1", ["d1"], [("c", ["s"])]), asset("a2", ["d1"], [("c", ["s"])])]
    )
    assert "'d1'" in msg and "'a1'" in msg and "'a2'" in msg


def test_duplicate_device_within_an_asset_names_it(tmp_path: Path) -> None:
    msg = _error(tmp_path, [asset("a1", ["d1", "d1"], [("c", ["s"])])])
    assert "assets.0" in msg and "asset a1: duplicate device id(s) ['d1']" in msg


def test_duplicate_sensor_names_it(tmp_path: Path) -> None:
    msg = _error(tmp_path, [asset("a1", ["d1"], [("c1", ["s1", "s2"]), ("c2", ["s2"])])])
    assert "assets.0" in msg and "asset a1: duplicate sensor id(s) ['s2']" in msg


def test_duplicate_compartment_names_it(tmp_path: Path) -> None:
    msg = _error(tmp_path, [asset("a1", ["d1"], [("c1", ["s1"]), ("c1", ["s2"])])])
    assert "asset a1: duplicate compartment id(s) ['c1']" in msg


def test_schema_errors_name_the_path(tmp_path: Path) -> None:
    bad = asset("a1", ["d1"], [("c1", ["s1"])])
    bad["compartments"][0]["sensors"][0]["probe"] = "soil"
    msg = _error(tmp_path, [bad])
    assert "assets.0.compartments.0.sensors.0.probe" in msg and "'soil'" in msg
    msg = _error(tmp_path, [asset("a 1", ["d1"], [("c1", ["s1"])])])
    assert "assets.0.id" in msg and "'a 1'" in msg


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"missing\.yaml"):
        load_fleet(tmp_path / "missing.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text("assets: [\n", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"bad\.yaml"):
        load_fleet(path)


def test_fleet_constructor_rejects_duplicates_directly() -> None:
    with pytest.raises(RegistryError, match="'truck-1'"):
        Fleet([TRUCK, TRUCK])


def test_an_asset_may_give_its_gln(tmp_path: Path) -> None:
    store = asset("store-1", ["gw-1"], [("zone-a", ["s1"])]) | {"kind": "store"}
    path = write(tmp_path, [store | {"gln": "4012345000115"}, asset("t1", ["d1"], [("c", ["s"])])])
    f = load_fleet(path)
    assert f.assets["store-1"].gln == "4012345000115" and f.assets["t1"].gln is None
    # Round trip; an asset without a GLN writes no gln key (the demo fleet file is unchanged).
    text = f.to_yaml()
    assert text.count("gln:") == 1
    path.write_text(text, encoding="utf-8")
    assert load_fleet(path).assets == f.assets


def test_a_bad_gln_is_refused_with_the_reason(tmp_path: Path) -> None:
    bad = asset("s1", ["d1"], [("c", ["s"])])
    msg = _error(tmp_path, [bad | {"gln": "4012345000116"}])
    assert "assets.0.gln" in msg and "check digit" in msg
    # Unquoted in YAML a GLN is a number and a leading zero would be lost.
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "assets:\n- id: s1\n  kind: store\n  gln: 4012345000115\n  devices: [d1]\n"
        "  compartments: [{id: c, profile: chilled, sensors: [{id: s}]}]\n",
        encoding="utf-8",
    )
    with pytest.raises(RegistryError, match="quoted string"):
        load_fleet(path)


def test_a_store_may_give_its_location_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    store = asset("store-1", ["gw-1"], [("zone-a", ["s1"])]) | {"kind": "store"}
    path = write(tmp_path, [store | {"location": {"lat": 23.13, "lon": 113.26}}])
    f = load_fleet(path)
    loc = f.assets["store-1"].location
    assert loc is not None and (loc.lat, loc.lon) == (23.13, 113.26)
    path.write_text(f.to_yaml(), encoding="utf-8")
    assert load_fleet(path).assets == f.assets
    msg = _error(tmp_path, [store | {"location": {"lat": 123.0, "lon": 113.26}}])
    assert "assets.0.location.lat" in msg
    msg = _error(tmp_path, [store | {"location": {"lat": 23.1, "long": 113.2}}])
    assert "assets.0.location" in msg

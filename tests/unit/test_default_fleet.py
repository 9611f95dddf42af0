"""The default ``COLDCHAIN_FLEET_PATH`` exists and is the demo scenario's fleet, so
``coldchain ingest`` and ``coldchain api`` start with no configuration beside
``coldchain simulate demo``."""

from __future__ import annotations

from pathlib import Path

from coldchain.fleet import load_fleet
from coldchain.settings import Settings
from simulators import library_scenario

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_fleet_file_is_the_demo_scenarios_fleet() -> None:
    path = ROOT / Settings().fleet_path
    assert path.is_file(), path
    text = path.read_text(encoding="utf-8")
    expected = library_scenario("demo").fleet().to_yaml()
    # Regenerate with the command in the file's header when the demo scenario changes.
    assert text.split("\n", 2)[2] == expected
    assert load_fleet(path).assets.keys() == library_scenario("demo").fleet().assets.keys()

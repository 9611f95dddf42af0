"""Reloading the fleet file: a changed file is checked and handed over once, a bad one is
refused with a health problem naming it while the fleet in force stays (ingest.fleet_watch)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from coldchain.fleet import load_fleet
from coldchain.rules import load_presets
from ingest.fleet_watch import FleetWatch, check_profiles
from ingest.health import Health

FLEET = """
assets:
  - id: truck-1
    kind: vehicle
    devices: [tcu-1]
    compartments:
      - id: main
        profile: {profile}
        sensors: [{{id: p1, probe: product}}]
"""
SECOND = """
  - id: truck-2
    kind: vehicle
    devices: [tcu-2]
    compartments:
      - id: main
        profile: chilled
        sensors: [{id: p1, probe: product}]
"""


def _write(path: Path, text: str) -> None:
    """Written as an operator should: a new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _watch(tmp_path: Path, health: Health) -> tuple[Path, FleetWatch]:
    path = tmp_path / "fleet.yaml"
    _write(path, FLEET.format(profile="frozen"))
    profiles = load_presets()
    watch = FleetWatch(
        path,
        health,
        threading.Event(),
        current=load_fleet(path),
        interval_s=0,
        check=lambda fleet: check_profiles(fleet, profiles),
    )
    return path, watch


def test_a_changed_file_is_handed_over_once(tmp_path: Path) -> None:
    health = Health()
    path, watch = _watch(tmp_path, health)
    assert watch.poll() is None and watch.take() is None  # nothing changed yet

    _write(path, FLEET.format(profile="frozen") + SECOND)
    fleet = watch.poll()

    assert fleet is not None and fleet.asset_of("tcu-2") is not None
    assert watch.take() is fleet
    assert watch.take() is None
    assert watch.stats() == {"fleet_reloads": 1, "fleet_rejected": 0, "fleet_devices": 2}
    assert health.ok


def test_a_bad_file_is_refused_and_named_until_it_is_fixed(tmp_path: Path) -> None:
    health = Health()
    path, watch = _watch(tmp_path, health)

    _write(path, FLEET.format(profile="frozen") + SECOND.replace("tcu-2", "tcu-1"))
    assert watch.poll() is None
    problem = health.problems()["fleet_rejected"]
    assert str(path) in problem and "tcu-1" in problem and "stays in force" in problem

    _write(path, FLEET.format(profile="no-such-profile"))
    assert watch.poll() is None
    assert "unknown profile 'no-such-profile'" in health.problems()["fleet_rejected"]

    _write(path, "assets: [")  # half written
    assert watch.poll() is None
    assert watch.take() is None
    assert watch.stats()["fleet_rejected"] == 3

    _write(path, FLEET.format(profile="frozen") + SECOND)
    assert watch.poll() is not None
    assert health.ok


def test_putting_the_old_file_back_clears_the_problem_without_a_reload(tmp_path: Path) -> None:
    health = Health()
    path, watch = _watch(tmp_path, health)
    _write(path, "assets: 3")
    watch.poll()
    assert not health.ok

    _write(path, FLEET.format(profile="frozen"))
    assert watch.poll() is None
    assert health.ok
    assert watch.stats()["fleet_reloads"] == 0


def test_a_request_rereads_even_when_the_stat_is_unchanged(tmp_path: Path) -> None:
    health = Health()
    path, watch = _watch(tmp_path, health)
    st = path.stat()
    text = FLEET.format(profile="frozen").replace("id: p1", "id: p2")
    path.write_text(text, encoding="utf-8")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and mtime put back

    assert watch.poll() is None  # the stat did not change
    fleet = watch.poll(force=True)
    assert fleet is not None
    assert fleet.sensor("truck-1", "p2") == ("main", "product")


def test_the_thread_reloads_on_request_and_stops(tmp_path: Path) -> None:
    health = Health()
    path = tmp_path / "fleet.yaml"
    _write(path, FLEET.format(profile="frozen"))
    stopping = threading.Event()
    watch = FleetWatch(path, health, stopping, interval_s=0)
    thread = threading.Thread(target=watch.run)
    thread.start()
    try:
        _write(path, FLEET.format(profile="frozen") + SECOND)
        watch.request()
        deadline = threading.Event()
        for _ in range(600):
            if watch.take() is not None:
                break
            deadline.wait(0.05)
        else:
            raise AssertionError("no reload within 30 s")
    finally:
        stopping.set()
        watch.request()
        thread.join(10)
    assert not thread.is_alive()


def test_a_request_puts_in_force_a_file_changed_before_watching_began(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    _write(path, FLEET.format(profile="frozen"))
    loaded = load_fleet(path)
    _write(path, FLEET.format(profile="frozen") + SECOND)  # while the service was starting
    watch = FleetWatch(path, Health(), threading.Event(), current=loaded, interval_s=0)
    assert watch.poll() is None  # polls notice changes from their start on
    fleet = watch.poll(force=True)  # SIGHUP compares with the fleet in force
    assert fleet is not None and fleet.asset_of("tcu-2") is not None


def test_a_request_with_the_fleet_in_force_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    _write(path, FLEET.format(profile="frozen"))
    watch = FleetWatch(path, Health(), threading.Event(), current=load_fleet(path))
    _write(path, "# reformatted\n" + FLEET.format(profile="frozen"))
    assert watch.poll() is None and watch.poll(force=True) is None
    assert watch.stats()["fleet_reloads"] == 0

"""The registry mirror (ingest/mirror.py) against a real, migrated SQLite registry: what it
writes for new, acknowledged and closed excursions, after a restart, and for late commits."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldchain.fleet import Asset, Compartment, Fleet, Location, SensorSpec
from coldchain.rules import load_presets
from coldchain.rules.excursion import Excursion
from ingest.mirror import SNAPSHOT_MS, RegistryMirror, compartment_limits
from registry import Registry, open_registry, upgrade

T0 = 1_800_000_000_000  # the registry's and the mirror's wall clock at the start


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


FLEET = Fleet(
    [
        Asset(
            id="truck-1",
            kind="vehicle",
            devices=("tcu-1",),
            compartments=(
                Compartment(id="c1", profile="chilled", sensors=(SensorSpec(id="c1-air"),)),
                Compartment(id="c2", profile="frozen", sensors=(SensorSpec(id="c2-air"),)),
            ),
        ),
        Asset(
            id="store-1",
            kind="store",
            name="Store one",
            devices=("gw-1",),
            compartments=(Compartment(id="z1", profile="frozen", sensors=(SensorSpec(id="z"),)),),
            location=Location(lat=23.1, lon=113.3),
        ),
    ]
)


def _exc(**kw: object) -> Excursion:
    base: dict[str, object] = {
        "asset_id": "truck-1",
        "compartment_id": "c1",
        "rule": "range",
        "kind": "range",
        "severity": "warning",
        "status": "open",
        "start_ms": T0 - 7 * 86_400_000,  # began a week ago
        "end_ms": None,
        "detected_ms": T0 - 7 * 86_400_000 + 60_000,
        "peak_c": 9.5,
        "degree_minutes": 12.5,
        "profile": "chilled",
        "detail": "above 4.0 degC",
    }
    base.update(kw)
    return Excursion(**base)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reg(tmp_path: Path, clock: Clock) -> Iterator[Registry]:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    with open_registry(url, clock=clock) as registry:
        yield registry


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, body: bytes) -> None:
        self.batches.append(body.decode().split("\n"))

    def last(self, measurement: str) -> list[str]:
        return [x for x in self.batches[-1] if x.startswith(measurement + ",")]


def _mirror(reg: Registry, clock: Clock, sink: Sink, **kw: object) -> RegistryMirror:
    counts = {"unknown_device": 3}
    return RegistryMirror(
        reg, FLEET, sink, load_presets(), clock_ms=clock, dead_letter_counts=lambda: counts, **kw
    )  # type: ignore[arg-type]


def test_a_week_old_open_excursion_is_in_every_snapshot(reg: Registry, clock: Clock) -> None:
    sink = Sink()
    exc = _exc()
    reg.upsert_excursion(exc)
    mirror = _mirror(reg, clock, sink)
    mirror.pass_once()
    at = T0 - T0 % SNAPSHOT_MS
    [state] = sink.last("excursion_state")
    assert state.startswith("excursion_state,asset=truck-1,compartment=c1,rule=range ")
    assert state.endswith(f" {exc.start_ms}")  # keyed by the excursion's start: idempotent
    assert f'id="{exc.id}"' in state and 'status="open"' in state and "open=true" in state
    [snap] = sink.last("excursion_open")
    assert snap.endswith(f" {at}") and "open=true" in snap and "severity_rank=2i" in snap
    statuses = {x.split(" ")[0]: x for x in sink.last("asset_status")}
    truck = statuses["asset_status,asset=truck-1,kind=vehicle"]
    assert "open_warning=1i" in truck and "worst_rank=2i" in truck
    assert 'worst_severity="none"' in statuses["asset_status,asset=store-1,kind=store"]
    # The next pass, an hour later: nothing changed, the excursion is still in the snapshot.
    clock.now += 3_600_000
    mirror.pass_once()
    assert sink.last("excursion_state") == []
    [snap] = sink.last("excursion_open")
    assert snap.endswith(f" {at + 3_600_000}") and "open=true" in snap


def test_acknowledgement_made_elsewhere_reaches_the_next_pass(reg: Registry, clock: Clock) -> None:
    sink = Sink()
    exc = _exc()
    reg.upsert_excursion(exc)
    mirror = _mirror(reg, clock, sink)
    mirror.pass_once()
    clock.now += 30_000
    reg.acknowledge_excursion(exc.id, by="operator-li", comment="product moved")
    mirror.pass_once()
    [state] = sink.last("excursion_state")
    assert 'ack_by="operator-li"' in state and f"ack_ms={clock.now}i" in state
    assert 'ack_by="operator-li"' in sink.last("excursion_open")[0]


def test_a_closed_excursion_gets_a_closing_snapshot(reg: Registry, clock: Clock) -> None:
    sink = Sink()
    exc = _exc(severity="critical")
    reg.upsert_excursion(exc)
    mirror = _mirror(reg, clock, sink)
    mirror.pass_once()
    clock.now += 60_000
    reg.upsert_excursion(dataclasses.replace(exc, status="closed", end_ms=T0))
    mirror.pass_once()
    [snap] = sink.last("excursion_open")
    assert "open=false" in snap and 'status="closed"' in snap
    closed_at = T0 + 60_000  # the registry recorded the closure then: its minute
    assert snap.endswith(f" {closed_at - closed_at % SNAPSHOT_MS}")
    # A restart a day later re-mirrors the closure where it was, not at the restart.
    clock.now += 86_400_000
    again = Sink()
    _mirror(reg, clock, again).pass_once()
    assert again.last("excursion_open") == [snap]
    truck = next(x for x in sink.last("asset_status") if "truck-1" in x)
    assert "open_critical=0i" in truck and "worst_rank=0i" in truck
    [state] = sink.last("excursion_state")
    assert f"end_ms={T0}i" in state and "open=false" in state


def test_a_restart_re_mirrors_and_repeats_are_identical(reg: Registry, clock: Clock) -> None:
    exc = _exc()
    reg.upsert_excursion(exc)
    first = Sink()
    _mirror(reg, clock, first).pass_once()
    clock.now += 5_000  # same snapshot minute
    again = Sink()
    _mirror(reg, clock, again).pass_once()  # a new process: no state carried over
    assert sorted(again.batches[0]) == sorted(first.batches[0])


def test_a_change_committed_late_within_the_overlap_is_mirrored(
    reg: Registry, clock: Clock
) -> None:
    sink = Sink()
    a, b = _exc(), _exc(compartment_id="c2", rule="hard_high", kind="hard_limit")
    reg.upsert_excursion(a)
    mirror = _mirror(reg, clock, sink, overlap_s=300)
    mirror.pass_once()
    # Another process stamps its change 2 minutes behind the newest change already mirrored.
    clock.now -= 120_000
    reg.upsert_excursion(b)
    clock.now += 150_000
    mirror.pass_once()
    ids = {x.split('id="')[1].split('"')[0] for x in sink.last("excursion_state")}
    assert b.id in ids


def test_limits_sites_and_dead_letters(reg: Registry, clock: Clock) -> None:
    sink = Sink()
    _mirror(reg, clock, sink).pass_once()
    limits = {x.split(" ")[0]: x for x in sink.last("compartment_limit")}
    chilled = limits["compartment_limit,asset=truck-1,compartment=c1,kind=vehicle"]
    assert 'profile="chilled"' in chilled and "band_min_c=0," in chilled
    assert "band_max_c=4," in chilled and "gap_limit_s=600," in chilled
    assert (
        "gap_limit_s=1800," in limits["compartment_limit,asset=store-1,compartment=z1,kind=store"]
    )
    [dev] = [x for x in sink.last("device_limit") if "tcu-1" in x]
    assert "gap_limit_s=600 " in dev
    [site] = sink.last("site")
    assert site.startswith("site,asset=store-1,kind=store ") and "lat=23.1" in site
    assert sink.last("dead_letter") == [
        f"dead_letter,reason=unknown_device held=3i {T0 - T0 % SNAPSHOT_MS}"
    ]


def test_a_profile_reassignment_changes_the_band(reg: Registry) -> None:
    from registry.records import ProfileAssignment

    later = ProfileAssignment(1, "truck-1", "c1", "frozen", T0 - 1000, "ops", "re-use", T0)
    limits = compartment_limits(FLEET, load_presets(), [later], T0)
    assert limits[("truck-1", "c1")].profile == "frozen"
    assert limits[("truck-1", "c1")].band_max_c == -18.0
    before = compartment_limits(FLEET, load_presets(), [later], T0 - 2000)
    assert before[("truck-1", "c1")].profile == "chilled"


def test_one_closing_and_another_opening_in_the_same_minute(reg: Registry, clock: Clock) -> None:
    sink = Sink()
    old = _exc()
    reg.upsert_excursion(old)
    mirror = _mirror(reg, clock, sink)
    mirror.pass_once()
    clock.now += 1_000
    reg.upsert_excursion(dataclasses.replace(old, status="closed", end_ms=T0))
    new = _exc(start_ms=T0, detected_ms=T0)
    reg.upsert_excursion(new)
    mirror.pass_once()
    snaps = sink.last("excursion_open")  # same series, same minute: the last line wins
    assert f'id="{new.id}"' in snaps[-1] and "open=true" in snaps[-1]
    assert any(f'id="{old.id}"' in x and "open=false" in x for x in snaps[:-1])


def test_a_failed_write_loses_nothing_and_is_counted(reg: Registry, clock: Clock) -> None:
    from coldchain.exceptions import StoreError

    sink = Sink()
    down = False

    def write(body: bytes) -> None:
        if down:
            raise StoreError("InfluxDB unreachable")
        sink(body)

    exc = _exc()
    reg.upsert_excursion(exc)
    mirror = _mirror(reg, clock, write)  # type: ignore[arg-type]
    mirror.pass_once()  # the first pass works...
    clock.now += 30_000
    reg.acknowledge_excursion(exc.id, by="operator-li")
    sink.batches.clear()
    stopping = threading.Event()
    stopping.set()  # run() makes one pass, then sees the event
    down = True
    mirror.run(stopping)  # ...the second fails: logged, counted, not raised
    assert mirror.stats()["mirror_passes"] == 1 and mirror.stats()["mirror_failures"] == 1
    down = False
    clock.now += 30_000
    mirror.pass_once()  # the acknowledgement is mirrored by the next pass that works
    [state] = sink.last("excursion_state")
    assert 'ack_by="operator-li"' in state

"""``coldchain deadletters list|replay`` without a running ingest: listing, a device not in the
fleet file refused, letters queued and reported as waiting for ingest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from ingest.spool import DeadLetter, Spool
from simulators.loadgen import make_fleet


@pytest.fixture
def spool_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(make_fleet(1).to_yaml(), encoding="utf-8")
    path = tmp_path / "spool.sqlite3"
    monkeypatch.setenv("COLDCHAIN_FLEET_PATH", str(fleet))
    monkeypatch.setenv("COLDCHAIN_SPOOL__PATH", str(path))
    spool = Spool(path)
    letters = [
        DeadLetter(
            1_700_000_000_000 + i,
            f"coldchain/v1/devices/{dev}/telemetry",
            dev,
            "unknown_device",
            "device_id",
            repr(dev),
            "device is not registered",
            f'{{"n": {i}}}'.encode(),
        )
        for i, dev in enumerate(["load-dev-0000", "load-dev-0000", "stranger"])
    ]
    spool.append([], letters)
    spool.close()
    return path


def test_list_filters_by_device(spool_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deadletters", "list", "--device", "load-dev-0000", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["device_id"], r["reason"], r["replay"]) for r in rows] == [
        ("load-dev-0000", "unknown_device", "")
    ] * 2
    assert main(["deadletters", "list", "--since", "2023-11-14T22:13:20.002Z"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "device=stranger" in out[0]


def test_replay_refuses_a_device_the_fleet_file_does_not_list(
    spool_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deadletters", "replay", "--device", "stranger"]) == 2
    assert "'stranger' is not in the fleet file" in capsys.readouterr().out
    spool = Spool(spool_path)
    try:
        assert spool.queued_replays(10) == []
    finally:
        spool.close()


def test_replay_queues_and_says_when_no_ingest_took_them(
    spool_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["deadletters", "replay", "--device", "load-dev-0000", "--wait-s", "0", "--json"]
    assert main(argv) == 1
    counts = json.loads(capsys.readouterr().out)
    assert (counts["letters"], counts["queued_now"], counts["still_queued"]) == (2, 2, 2)
    assert main(argv) == 1
    again = json.loads(capsys.readouterr().out)
    assert (again["queued_now"], again["still_queued"], again["replayed"]) == (0, 2, 0)

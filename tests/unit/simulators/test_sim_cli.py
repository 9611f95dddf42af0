"""``coldchain simulate`` without a broker: dry run, truth and fleet files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from coldchain.contract import parse_message
from coldchain.fleet import load_fleet
from simulators import GroundTruth


def test_dry_run_prints_the_stream_and_writes_truth_and_fleet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth_path, fleet_path = tmp_path / "truth.json", tmp_path / "fleet.yaml"
    argv = ["simulate", "door_left_open", "--dry-run", "--start", "2026-07-01T16:00:00Z"]
    rc = main([*argv, "--truth", str(truth_path), "--write-fleet", str(fleet_path)])
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    telemetry = [x for x in lines if x["topic"].endswith("/telemetry")]
    assert len(telemetry) == 360  # 6 h at one sample a minute
    assert lines[0]["time"].startswith("2026-07-01T16:0")
    parse_message(json.dumps(telemetry[0]["payload"]))
    truth = GroundTruth.read(truth_path)
    assert truth.data["devices"]["truck-gs-01-tcu"]["samples"] == 360
    assert load_fleet(fleet_path).device_ids == ["truck-gs-01-tcu"]


def test_same_seed_same_output_and_bad_scenarios_fail_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "defrost", "--dry-run", "--start", "2026-07-01T16:00:00Z", "--seed", "5"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out == first
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nduration: 1h\ntrucks: []\nstores: []\n")
    assert main(["simulate", str(bad), "--dry-run"]) == 2
    assert "needs at least one truck or store" in capsys.readouterr().err

"""``coldchain shipments|custody|excursions``: the write operations from the command line, on the
same service layer as the API. Most cases run ``cli.main.main`` in-process (fast); a few run
the installed ``coldchain`` entry point, as a person would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from coldchain.rules.excursion import Excursion
from registry import open_registry, upgrade
from tests.unit.support import fleet


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith("COLDCHAIN_"):
            monkeypatch.delenv(name)
    (tmp_path / "fleet.yaml").write_text(fleet().to_yaml())
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    values = {"COLDCHAIN_FLEET_PATH": str(tmp_path / "fleet.yaml"), "COLDCHAIN_REGISTRY_URL": url}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def _recent(minutes_ago: int) -> str:
    t = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


CREATE = [
    "shipments", "create", "--id", "PO-7/1", "--profile", "chilled", "--shipper", "ACME",
    "--quantity", "12", "--unit", "pallets", "--destination", "上海",
    "--planned-departure", "2026-09-21T08:00:00+08:00",
]  # fmt: skip


def test_shipments_create_update_cancel_list_show(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    created = run_json(capsys, *CREATE, "--by", "ana")
    assert (created["created"], created["quantity"], created["destination"]) == (
        True,
        12.0,
        "上海",
    )
    assert created["planned_departure_ms"] == 1_789_977_600_000 - 8 * 3_600_000
    code, out, _ = run(capsys, *CREATE)
    assert code == 0 and "already registered with these details" in out
    code, _, err = run(capsys, *CREATE[:-2], "--planned-departure", "2026-09-22T08:00:00Z")
    assert code == 2
    assert err.strip() == (
        "coldchain shipments: shipment 'PO-7/1' already exists with other details: "
        'planned_departure is "2026-09-21T00:00:00Z" in the stored shipment, '
        '"2026-09-22T08:00:00Z" here'
    )
    updated = run_json(
        capsys, "shipments", "update", "PO-7/1", "--consignee", "DC 2", "--clear", "quantity"
    )
    assert (updated["changed"], updated["consignee"], updated["quantity"], updated["unit"]) == (
        True,
        "DC 2",
        None,
        None,
    )
    code, _, err = run(capsys, "shipments", "update", "PO-7/1", "--shipper", "Other")
    assert (code, "shipper of shipment 'PO-7/1' cannot change" in err) == (2, True)
    run_json(capsys, *CREATE[:3], "PO-8", *CREATE[4:])
    listed = run_json(capsys, "shipments", "list", "--shipper", "ACME", "--limit", "1")
    assert [s["id"] for s in listed["items"]] == ["PO-7/1"] and listed["next_cursor"]
    more = run_json(
        capsys, "shipments", "list", "--shipper", "ACME", "--limit", "1",
        "--cursor", listed["next_cursor"],
    )  # fmt: skip
    assert [s["id"] for s in more["items"]] == ["PO-8"] and more["next_cursor"] is None
    code, out, _ = run(capsys, "shipments", "list")
    assert code == 0 and out.splitlines()[1].startswith("PO-7/1 ")
    cancelled = run_json(capsys, "shipments", "cancel", "PO-8", "--reason", "withdrawn")
    assert (cancelled["status"], cancelled["cancelled_by"]) == (
        "cancelled",
        "cli:" + (cancelled["cancelled_by"].removeprefix("cli:")),
    )
    code, out, _ = run(capsys, "shipments", "show", "PO-7/1")
    assert code == 0 and "consignee    DC 2" in out and "legs:" in out
    code, _, err = run(capsys, "shipments", "show", "NOPE")
    assert (code, err.strip()) == (2, "coldchain shipments: shipment 'NOPE' not found")
    code, _, err = run(capsys, "shipments", "list", "--created-from", "yesterday")
    assert code == 2 and "--created-from 'yesterday'" in err
    with open_registry(env["COLDCHAIN_REGISTRY_URL"]) as reg:
        actors = {e.actor for e in reg.audit_entries(entity="shipment", entity_id="PO-7/1")}
    assert "ana" in actors and any(a.startswith("cli:") for a in actors)


def test_custody_record_validates_like_the_api(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_json(capsys, *CREATE)
    base = ["custody", "record", "--event-id", "e1", "--shipment", "PO-7/1", "--asset", "truck-1"]
    ts = _recent(10)
    event = run_json(
        capsys, *base, "--action", "load", "--compartment", "front", "--ts", ts, "--actor", "d"
    )
    assert (event["created"], event["source"], event["event_id"]) == (True, "api", "e1")
    code, out, _ = run(
        capsys, *base, "--action", "load", "--compartment", "front", "--ts", ts, "--actor", "d"
    )
    assert code == 0 and "already recorded (the same event)" in out
    other = [*base[:3], "e2", *base[4:], "--actor", "d"]
    failures = [
        (["--action", "load", "--compartment", "middle", "--ts", _recent(5)],
         "compartment 'middle' is not a compartment of truck-1 (it has front, rear)"),
        (["--action", "unload", "--compartment", "rear", "--ts", _recent(5)],
         "cannot have happened: unload 'e2' from truck-1/rear"),
        (["--action", "load", "--ts", "2026-09-21T14:00:00"],
         "field 'ts': Input should have timezone info"),
    ]  # fmt: skip
    for extra, message in failures:
        code, _, err = run(capsys, *other, *extra)
        assert code == 2 and message in err, (extra, err)


def test_excursions_ack_history_and_list(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    exc = Excursion(
        asset_id="truck-1",
        compartment_id="front",
        rule="range",
        kind="range",
        severity="critical",
        status="closed",
        start_ms=1_790_000_000_000,
        end_ms=1_790_000_600_000,
        detected_ms=1_790_000_000_000,
    )
    with open_registry(env["COLDCHAIN_REGISTRY_URL"]) as reg:
        reg.upsert_excursion(exc)
    code, out, _ = run(capsys, "excursions", "list", "--unacknowledged")
    assert code == 0 and exc.id in out
    first = run_json(
        capsys, "excursions", "ack", exc.id, "--disposition", "quarantined",
        "--root-cause", "compressor", "--by", "ana",
    )  # fmt: skip
    assert (first["seq"], first["by"], first["role"], first["key_id"]) == (1, "ana", "admin", None)
    code, out, _ = run(capsys, "excursions", "ack", exc.id, "--disposition", "released")
    assert code == 0 and out.startswith(f"acknowledgement 2 of excursion {exc.id} recorded")
    history = run_json(capsys, "excursions", "history", exc.id)
    assert [(a["seq"], a["disposition"]) for a in history] == [(1, "quarantined"), (2, "released")]
    code, out, _ = run(capsys, "excursions", "history", exc.id)
    assert "root cause: compressor" in out
    (listed,) = run_json(capsys, "excursions", "list")
    assert (listed["ack_count"], listed["acknowledgement"]["seq"]) == (2, 2)
    assert run_json(capsys, "excursions", "list", "--unacknowledged") == []
    code, _, err = run(capsys, "excursions", "ack", "nope", "--disposition", "released")
    assert (code, err.strip()) == (2, "coldchain excursions: excursion 'nope' not found")


def _entry_point() -> str:
    path = Path(sys.executable).parent / "coldchain"
    assert path.exists(), f"the coldchain entry point is not installed at {path}"
    return str(path)


def test_through_the_installed_entry_point(env: dict[str, str]) -> None:
    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_entry_point(), *argv], capture_output=True, text=True, timeout=120, env=os.environ
        )

    ok = cli(*CREATE, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["id"] == "PO-7/1"
    bad = cli("shipments", "create", "--id", "PO 9", "--profile", "chilled", "--shipper", "A")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith(
        "coldchain shipments: field 'id': Value error, shipment id contains U+0020 SPACE"
    )

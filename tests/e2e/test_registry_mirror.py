"""The registry mirror inside a running ingest, against real influxd and a real registry: an
excursion that opened a week ago is on today's dashboards, an acknowledgement made by the CLI
(another process) reaches InfluxDB, and a change made while ingest was down is mirrored after
the restart."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from coldchain.rules.excursion import Excursion
from coldchain.settings import Settings
from deploy.launcher import Services
from ingest.service import IngestService
from registry import open_registry
from simulators import library_scenario
from tests.harness import spine_settings
from timeseries.client import InfluxClient

pytestmark = pytest.mark.e2e

WEEK_MS = 7 * 86_400_000


def _wait(probe: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout_s:.0f} s: {what}")


def _records(client: InfluxClient, query: str) -> list[dict[str, Any]]:
    return [r for s in client.query(query) for r in s.records()]


def _service(settings: Settings) -> IngestService:
    service = IngestService(settings, library_scenario("demo").fleet())
    service.start()
    return service


def test_mirror_in_ingest_follows_the_registry(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    settings = spine_settings(services, unique_name, tmp_path).model_copy(
        update={"mirror_interval_s": 0.5}
    )
    fleet = library_scenario("demo").fleet()
    settings.fleet_path.write_text(fleet.to_yaml(), encoding="utf-8")
    now = int(time.time() * 1000)
    exc = Excursion(
        "truck-jy-01", "front", "range", "range", "critical", "open",
        now - WEEK_MS, None, now - WEEK_MS + 60_000, peak_c=-9.0, profile="frozen",
    )  # fmt: skip
    with open_registry(settings.registry_url) as reg:
        reg.upsert_excursion(exc)
    client = InfluxClient(settings.influx)
    service = _service(settings)
    try:
        today = (
            'SELECT last("open") AS "open", last("id") AS "id" FROM "excursion_open" '
            'WHERE time > now() - 5m GROUP BY "asset"'
        )
        rows = _wait(lambda: _records(client, today), "the week-old excursion in today's snapshot")
        assert rows == [{"time": rows[0]["time"], "open": True, "id": exc.id}]
        status = _records(
            client,
            'SELECT last("worst_rank") AS "rank" FROM "asset_status" '
            "WHERE \"asset\" = 'truck-jy-01' AND time > now() - 5m",
        )
        assert status[0]["rank"] == 3
        stores = _records(client, 'SELECT "lat", "lon" FROM "site" WHERE time > now() - 5m')
        assert stores and all(r["lat"] and r["lon"] for r in stores)
        # An acknowledgement by an operator through the CLI, a process of its own.
        cli = Path(sys.executable).with_name("coldchain")
        subprocess.run(
            [str(cli), "excursions", "ack", exc.id, "--disposition", "quarantined",
             "--by", "operator-wang", "--registry-url", settings.registry_url,
             "--fleet", str(settings.fleet_path)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        state = f'SELECT "ack_by" FROM "excursion_state" WHERE "id" = \'{exc.id}\''
        _wait(
            lambda: [r for r in _records(client, state) if r["ack_by"] == "operator-wang"],
            "the CLI's acknowledgement in excursion_state",
        )
    finally:
        service.stop()
    # Closed while ingest is down: the restarted mirror (no state kept) still sees it.
    with open_registry(settings.registry_url) as reg:
        reg.upsert_excursion(replace(exc, status="closed", end_ms=now))
    service = _service(settings)
    try:
        closed = f'SELECT "status", "open" FROM "excursion_state" WHERE "id" = \'{exc.id}\''
        _wait(
            lambda: [r for r in _records(client, closed) if r["status"] == "closed"],
            "the closure made while ingest was down",
        )
        _wait(
            lambda: [r for r in _records(client, today) if r["open"] is False],
            "the closing snapshot in excursion_open",
        )
    finally:
        service.stop()
        client.close()

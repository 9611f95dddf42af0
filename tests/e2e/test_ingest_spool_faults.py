"""The spool under faults that are not ingest's own, with a real ``coldchain ingest``, mosquitto
and influxd (issue 8, failure 6): deleted while ingest was stopped, damaged, disk full.

Each is detected, said in the log and on ``/healthz``/``/metrics``, recovered from where it can
be without an operator, and nothing is acknowledged that is not durable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from deploy.launcher import Services
from registry import open_registry
from simulators.loadgen import LoadMessage, LoadPublisher, SeededLoad, make_fleet
from tests.e2e.ingest_process import ROOT, IngestProcess
from tests.harness import expected_readings, spine_settings, stored_counts, wait_for

pytestmark = pytest.mark.e2e


def _messages(n_assets: int, per_device: int, seed: int) -> list[LoadMessage]:
    fleet = make_fleet(n_assets)
    start = int(time.time() * 1000) - 20_000_000
    return list(SeededLoad(fleet, seed=seed).messages(per_device, start, batch_every=7))


def _publish(services: Services, name: str, messages: list[LoadMessage]) -> None:
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{name}")
    try:
        for m in messages:
            pub.publish(m.topic, m.payload)
        assert pub.flush(60)
    finally:
        pub.close()


def _want(messages: list[LoadMessage]) -> dict[str, int]:
    return {asset: len(r) for asset, r in expected_readings(messages).items()}


def _all_stored(services: Services, database: str, want: dict[str, int]) -> bool:
    return stored_counts(services, database) == want


def test_spool_deleted_while_stopped_is_reported_until_accepted(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    settings = spine_settings(services, unique_name, tmp_path)
    settings.fleet_path.write_text(make_fleet(4).to_yaml())
    ingest = IngestProcess(settings, tmp_path / "ingest.log").start()
    messages = _messages(4, 40, seed=1)
    first, later = messages[:80], messages[80:]

    def recorded() -> int:
        with open_registry(settings.registry_url) as reg:
            record = reg.spool_identity(settings.mqtt.client_id)
        return record.high_water if record is not None else 0

    try:
        _publish(services, unique_name, first)
        db = settings.influx.database
        assert wait_for(lambda: _all_stored(services, db, _want(first)), 60)
        assert wait_for(lambda: ingest.metrics()["spool_depth_messages"] == 0, 30)
        assert ingest.healthz() == (200, "ok\n")
        # Housekeeping records how far the spool's row ids went.
        assert wait_for(lambda: recorded() >= len(first), 30)
        assert ingest.sigterm(30) == 0
        high_water = recorded()
        for side in tmp_path.glob("spool.sqlite3*"):
            if not side.name.endswith(".reserve"):
                side.unlink()  # an operator "cleans up" while ingest is stopped
        ingest.start()
        status, body = ingest.healthz()
        assert status == 503 and body.startswith("spool_replaced: ")
        assert "not the one ingest client" in body and "are lost" in body
        assert f"row ids up to at least {high_water}" in body
        assert ingest.metrics()["spool_replaced"] == 1
        assert "SPOOL REPLACED" in ingest.log.read_text()
        # It keeps running: what the broker holds is still delivered.
        _publish(services, unique_name, later)
        assert wait_for(lambda: _all_stored(services, db, _want(messages)), 60)
        assert ingest.healthz()[0] == 503  # until an operator accepts it
        accepted = subprocess.run(
            [sys.executable, "-m", "cli.main", "spool", "accept", "--by", "test-operator"],
            env={**os.environ, **ingest.env},
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert accepted.returncode == 0 and "accepted spool_replaced" in accepted.stdout
        assert wait_for(lambda: ingest.healthz() == (200, "ok\n"), 30)
    finally:
        ingest.kill()


def test_damaged_spool_is_moved_aside_salvaged_and_ingest_starts(
    fresh_services: Services, unique_name: str, tmp_path: Path
) -> None:
    services = fresh_services
    settings = spine_settings(services, unique_name, tmp_path)
    settings.fleet_path.write_text(make_fleet(4).to_yaml())
    ingest = IngestProcess(settings, tmp_path / "ingest.log").start()
    messages = _messages(4, 150, seed=3)
    spool = settings.spool.path
    try:
        services.influxd.stop()  # what ingest acknowledges now stays in the spool
        _publish(services, unique_name, messages)
        assert wait_for(lambda: ingest.metrics()["acked_messages"] >= len(messages), 60)
        assert ingest.sigterm(30) == 0
        rows = len(messages)
        size = spool.stat().st_size
        with spool.open("r+b") as f:  # a torn write: the last pages are garbage
            f.seek(size - 2 * 4096)
            f.write(os.urandom(2 * 4096))
        services.influxd.start()
        ingest.start()  # no raw sqlite3 traceback, no crash loop
        status, body = ingest.healthz()
        assert status == 503 and body.startswith("spool_corrupt: ")
        moved = sorted(tmp_path.glob("spool.sqlite3.corrupt-*"))
        assert moved and str(moved[0]) in body and moved[0].stat().st_size == size
        assert ingest.metrics()["spool_corrupt"] == 1
        log = ingest.log.read_text()
        assert "is damaged" in log and "Traceback" not in log
        salvaged = int(body.split(" rows salvaged")[0].rsplit(", ", 1)[1])
        assert 0 < salvaged < rows
        # The salvaged rows reach InfluxDB; the rest is in the moved file, named in the log.
        assert wait_for(lambda: ingest.metrics()["written_messages"] >= salvaged, 60)
        assert sum(stored_counts(services, settings.influx.database).values()) > 0
    finally:
        ingest.kill()


@contextmanager
def _small_disk(path: Path, size_mb: int) -> Iterator[Path]:
    """A real, small filesystem (tmpfs) at ``path``: ENOSPC for real, no emulation."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path: Path) -> Path:
    filler = path / "filler"
    with filler.open("wb") as f:
        chunk = b"\0" * (1 << 20)
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    return filler


@pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a tmpfs needs root (scripts/test.sh runs as root)"
)
def test_full_disk_then_space_back_resumes_without_an_operator(
    fresh_services: Services, unique_name: str, tmp_path: Path
) -> None:
    services = fresh_services
    with _small_disk(tmp_path / "disk", 48) as disk:
        settings = spine_settings(services, unique_name, tmp_path)
        # Only the spool on the small disk: nothing else may take the space the reserve frees.
        spool = settings.spool.model_copy(update={"path": disk / "spool.sqlite3"})
        settings = settings.model_copy(update={"spool": spool})
        settings.fleet_path.write_text(make_fleet(8).to_yaml())
        ingest = IngestProcess(
            settings, tmp_path / "ingest.log", COLDCHAIN_SPOOL__RESERVE_MB="8"
        ).start()
        messages = _messages(8, 300, seed=4)
        third = len(messages) // 3
        pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
        try:
            assert (disk / "spool.sqlite3.reserve").stat().st_size == 8 << 20
            services.influxd.stop()
            for m in messages[:third]:
                pub.publish(m.topic, m.payload)
            assert pub.flush(60)
            assert wait_for(lambda: ingest.metrics()["acked_messages"] >= third, 60)
            filler = _fill(disk)  # the disk is full now
            for m in messages[third:]:
                pub.publish(m.topic, m.payload)  # the broker takes them; ingest cannot spool
            assert wait_for(lambda: "spool_unwritable: " in ingest.healthz()[1], 60)
            assert "disk full" in ingest.healthz()[1]
            acked = ingest.metrics()["acked_messages"]
            time.sleep(3.0)
            assert ingest.metrics()["acked_messages"] == acked  # nothing acked while full
            assert ingest.metrics()["spool_errors"] >= 1
            # InfluxDB back, the disk still full: the released reserve lets the spool drain.
            services.influxd.start()
            assert wait_for(lambda: ingest.metrics()["written_messages"] >= third // 2, 60)
            filler.unlink()  # space again: ingest resumes by itself
            assert pub.flush(120)
            want = _want(messages)
            db = settings.influx.database
            assert wait_for(lambda: stored_counts(services, db) == want, 120)
            assert wait_for(lambda: ingest.healthz() == (200, "ok\n"), 60)
            assert (disk / "spool.sqlite3.reserve").exists()
        finally:
            pub.close()
            ingest.kill()

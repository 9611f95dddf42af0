"""The spool's guards without services: identity, damaged files, the disk reserve, the watch.

(Against real services, with a real full disk and a real ``coldchain ingest``, they are tested
in tests/e2e/test_ingest_durability.py.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coldchain.exceptions import SpoolCorrupt, SpoolError, SpoolFull
from ingest.metrics import IngestMetrics
from ingest.spool import Spool, SpooledMessage
from ingest.spool_guard import DiskReserve, SpoolWatch, check_identity, open_spool
from registry import Registry, open_registry, upgrade


def _msgs(n: int, width: int = 200) -> list[SpooledMessage]:
    return [
        SpooledMessage(i, "dev-1", [f'm,d=dev-1 v={i}i,pad="{"x" * width}" {i}']) for i in range(n)
    ]


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    return open_registry(url)


def test_identity_survives_reopen_and_high_water_only_grows(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path)
    first_id = spool.spool_id
    assert len(first_id) == 32 and spool.high_water() == 0
    last = spool.append(_msgs(5), [])
    spool.delete_through(1, last)  # the rows are gone, the sequence is not
    assert spool.high_water() == 5
    spool.close()
    again = Spool(path)
    assert again.spool_id == first_id and again.high_water() == 5
    again.close()
    path.unlink()
    assert Spool(path).spool_id != first_id  # a new file is a new spool


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(SpoolCorrupt):
        Spool(path)
    spool, recovery = open_spool(path)
    assert recovery is not None and recovery.salvaged_rows == 0
    assert recovery.moved_to.read_bytes() == b"this is not SQLite" * 100  # kept for recovery
    assert recovery.moved_to.name.startswith("spool.sqlite3.corrupt-")
    assert spool.append(_msgs(1), []) == 1  # a working, fresh spool
    spool.close()


def test_a_damaged_page_is_moved_aside_and_readable_rows_salvaged(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path)
    spool.append(_msgs(400), [])
    spool.close()  # checkpoints the WAL into the file
    size = path.stat().st_size
    with path.open("r+b") as f:  # scribble over the last pages (the newest rows)
        f.seek(size - 3 * 4096)
        f.write(os.urandom(3 * 4096))
    spool, recovery = open_spool(path)
    assert recovery is not None and "malformed" in recovery.reason
    assert recovery is not None and 0 < recovery.salvaged_rows < 400
    assert spool.depth()[0] == recovery.salvaged_rows
    batch = spool.peek(10)
    assert batch is not None and batch.rows[0][2] == _msgs(1)[0].lines[0]
    assert recovery.moved_to.exists()
    spool.close()


def test_first_start_registers_the_spool(tmp_path: Path, registry: Registry) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    verdict = check_identity(registry, "ingest-1", spool, None)
    assert verdict.problem is None
    record = registry.spool_identity("ingest-1")
    assert record is not None and record.spool_id == spool.spool_id and record.problem is None
    assert check_identity(registry, "ingest-1", spool, None).problem is None  # same spool again


def test_a_deleted_spool_is_reported_until_accepted(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path)
    check_identity(registry, "ingest-1", spool, None)
    spool.append(_msgs(30), [])
    assert registry.advance_spool_high_water("ingest-1", spool.spool_id, spool.high_water())
    old_id = spool.spool_id
    spool.close()
    for side in path.parent.glob("spool.sqlite3*"):
        side.unlink()  # deleted while ingest was stopped
    fresh = Spool(path)
    verdict = check_identity(registry, "ingest-1", fresh, None)
    assert verdict.problem == "spool_replaced"
    assert old_id in verdict.detail and "up to at least 30" in verdict.detail
    # Still reported at the next start: only an operator clears it.
    assert check_identity(registry, "ingest-1", fresh, None).problem == "spool_replaced"
    registry.accept_spool("ingest-1", by="operator", comment="checked InfluxDB")
    assert check_identity(registry, "ingest-1", fresh, None).problem is None
    actions = [e.action for e in registry.audit_entries(entity="ingest")]
    assert actions == ["spool.register", "spool.register", "spool.accept"]


def test_an_older_copy_of_the_same_spool_is_reported(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path)
    check_identity(registry, "ingest-1", spool, None)
    spool.close()
    backup = tmp_path / "backup.sqlite3"
    backup.write_bytes(path.read_bytes())
    spool = Spool(path)
    spool.append(_msgs(10), [])
    registry.advance_spool_high_water("ingest-1", spool.spool_id, spool.high_water())
    spool.close()
    os.replace(backup, path)  # restored from the backup taken before the 10 rows
    restored = Spool(path)
    verdict = check_identity(registry, "ingest-1", restored, None)
    assert verdict.problem == "spool_replaced" and "older copy" in verdict.detail


def test_disk_reserve_takes_and_releases_real_space(tmp_path: Path) -> None:
    reserve = DiskReserve(tmp_path / "spool.sqlite3.reserve", 1 << 20)
    assert not reserve.held and reserve.take() and reserve.held
    assert os.stat(reserve.path).st_blocks * 512 >= 1 << 20  # allocated, not sparse
    assert reserve.release() and not reserve.path.exists() and not reserve.held
    assert not reserve.release()
    off = DiskReserve(tmp_path / "none", 0)
    assert off.held and off.take() and not off.release() and not off.path.exists()


def test_watch_holds_the_problem_until_the_reserve_is_back(tmp_path: Path) -> None:
    metrics = IngestMetrics()
    reserve = DiskReserve(tmp_path / "r", 1 << 16)
    assert reserve.take()
    watch = SpoolWatch(metrics, reserve)
    watch.failed(SpoolFull("database or disk is full"), "append")
    assert not reserve.held and not reserve.path.exists()  # given back to the filesystem
    assert "disk full" in metrics.health.problems()["spool_unwritable"]
    assert metrics.spool_errors == 1
    watch.ok("append")  # the reserve is not back: still unwritable
    assert not metrics.health.ok
    assert watch.ready()  # space is there: the reserve is taken back
    watch.ok("append")
    assert metrics.health.ok
    watch.failed(SpoolError("disk I/O error"), "writer")
    assert reserve.held and "writer failed" in metrics.health.problems()["spool_unwritable"]
    watch.ok("append")  # another user's success does not clear the writer's failure
    assert not metrics.health.ok
    watch.ok("writer")
    assert metrics.health.ok
    watch.failed(SpoolCorrupt("database disk image is malformed"), "writer")
    assert set(metrics.health.problems()) == {"spool_unwritable", "spool_corrupt"}
    assert "restart ingest" in metrics.health.problems()["spool_corrupt"]

"""The durable spool: group commit, ids, peek sizing, dead letters, durability across reopen."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from coldchain.exceptions import StoreError
from ingest.spool import DeadLetter, Spool, SpooledMessage


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "spool.sqlite3"  # the parent directory is created on open


@pytest.fixture
def spool(path: Path) -> Iterator[Spool]:
    s = Spool(path, synchronous="NORMAL")
    yield s
    s.close()


def msg(n_points: int, device: str = "dev-1", received_ms: int = 1000) -> SpooledMessage:
    return SpooledMessage(
        received_ms, device, [f"m,d={device} v={i}i {i}" for i in range(n_points)]
    )


def dead(payload: bytes = b"{}", reason: Any = "malformed_json") -> DeadLetter:
    return DeadLetter(
        5, "coldchain/v1/devices/d/telemetry", "d", reason, "f.0", "'x'", "bad", payload
    )


def test_append_peek_delete_depth(spool: Spool) -> None:
    assert spool.depth() == (0, 0) and spool.peek(100) is None
    spool.append([msg(2), msg(3, "dev-2")], [])
    assert spool.depth() == (2, 5)
    batch = spool.peek(100)
    assert batch is not None
    assert (batch.first_id, batch.last_id, batch.n_points) == (1, 2, 5)
    assert batch.body().decode().split("\n") == msg(2).lines + msg(3, "dev-2").lines
    spool.delete_through(batch.first_id, batch.first_id)
    assert spool.depth() == (1, 3)
    spool.delete_through(batch.first_id, batch.last_id)
    assert spool.depth() == (0, 0) and spool.peek(100) is None


def test_peek_after_id_and_order(spool: Spool) -> None:
    spool.append([msg(1) for _ in range(5)], [])
    batch = spool.peek(2, after_id=2)
    assert batch is not None and [r[0] for r in batch.rows] == [3, 4]


@pytest.mark.parametrize(
    ("sizes", "max_points", "expected_rows"),
    [
        ([1] * 30, 10, 10),  # one-point rows fill the whole budget
        ([3] * 10, 10, 3),  # never exceed the budget once a row is in
        ([3] * 10, 9, 3),
        ([50, 1, 1], 10, 1),  # an oversize row still goes, alone
        ([4, 50, 1], 10, 1),
        ([1, 1], 0, 1),  # at least one row
        ([2] * 4, 1000, 4),
    ],
)
def test_peek_sizes_batches_by_points(
    spool: Spool, sizes: list[int], max_points: int, expected_rows: int
) -> None:
    spool.append([msg(n) for n in sizes], [])
    batch = spool.peek(max_points)
    assert batch is not None
    assert len(batch.rows) == expected_rows
    assert batch.n_points == sum(sizes[:expected_rows])
    assert batch.n_points <= max_points or expected_rows == 1


def test_failed_insert_leaves_nothing(spool: Spool) -> None:
    spool.append([msg(1)], [])
    with pytest.raises(StoreError, match="spool append failed"):
        # The dead letter violates NOT NULL after the messages were inserted: all rolls back.
        spool.append([msg(2), msg(3)], [dead(), dead(reason=None)])
    assert spool.depth() == (1, 1)
    assert spool.dead_letters() == []
    spool.append([msg(4)], [dead()])  # the connection is usable again
    assert spool.depth() == (2, 5)


class _FailingDb:
    """Delegates to the real connection but raises a non-sqlite error on the dead-letter insert."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def executemany(self, sql: str, rows: Any) -> Any:
        if "dead_letters" in sql:
            raise KeyboardInterrupt
        return self._db.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_interrupted_append_rolls_back_and_does_not_wedge(spool: Spool) -> None:
    real = spool._db
    spool._db = _FailingDb(real)  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        spool.append([msg(2)], [dead()])
    spool._db = real
    assert not real.in_transaction
    assert spool.depth() == (0, 0)
    spool.append([msg(1)], [])
    assert spool.depth() == (1, 1)


def test_rows_survive_reopen_and_are_visible_to_other_connections(path: Path) -> None:
    s = Spool(path)
    s.append([msg(2)], [dead()])
    with closing(
        sqlite3.connect(path)
    ) as other:  # committed means visible to a new connection at once
        assert other.execute("SELECT COUNT(*) FROM spool").fetchone() == (1,)
    s.close()
    reopened = Spool(path)
    try:
        assert reopened.depth() == (1, 2)
        assert len(reopened.dead_letters()) == 1
        batch = reopened.peek(10)
        assert batch is not None and batch.body().decode().split("\n") == msg(2).lines
    finally:
        reopened.close()


def test_ids_are_never_reused_after_delete(path: Path) -> None:
    s = Spool(path)
    s.append([msg(1), msg(1), msg(1)], [])
    s.delete_through(1, 3)
    s.append([msg(1)], [])
    batch = s.peek(10)
    assert batch is not None and batch.first_id == 4
    s.delete_through(4, 4)
    s.close()
    s = Spool(path)  # nor after reopening an empty spool
    s.append([msg(1)], [])
    batch = s.peek(10)
    s.close()
    assert batch is not None and batch.first_id == 5


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(StoreError, match="cannot open spool"):
        Spool(tmp_path / "dir.sqlite3")


def test_the_rules_journal_outlives_the_writers_deletes_until_pruned(path: Path) -> None:
    spool = Spool(path, synchronous="NORMAL", rules_journal=True)
    try:
        spool.append([msg(1, "a")], [])  # no device time: not journaled
        last = spool.append(
            [
                SpooledMessage(1, "a", ["x v=1i 5"], from_ms=500),
                SpooledMessage(1, "b", ["x v=1i 7"], from_ms=700),
                SpooledMessage(1, "a", ["x v=1i 3"], from_ms=300),
            ],
            [],
        )
        assert last == 4
        spool.delete_through(1, last)  # the writer put everything in InfluxDB
        assert spool.depth() == (0, 0)
        assert spool.journal_since(0) == {"a": 300, "b": 700}
        assert spool.journal_since(3) == {"a": 300}  # rows after a checkpoint at row 3
        spool.prune_journal(3)
        assert spool.journal_since(0) == {"a": 300}
        spool.prune_journal(4)
        assert spool.journal_since(0) == {}
    finally:
        spool.close()
    # Off by default: nothing journaled.
    plain = Spool(path, synchronous="NORMAL")
    try:
        plain.append([SpooledMessage(1, "a", ["x v=1i 5"], from_ms=500)], [])
        assert plain.journal_since(0) == {}
    finally:
        plain.close()


def test_the_rules_journal_knows_how_far_each_device_reached(path: Path) -> None:
    spool = Spool(path, synchronous="NORMAL", rules_journal=True)
    try:
        spool.append(
            [
                SpooledMessage(1, "a", ["x v=1i 5"], from_ms=500, to_ms=900),  # a backlog
                SpooledMessage(1, "b", ["x v=1i 7"], from_ms=700, to_ms=700),
                SpooledMessage(1, "a", ["x v=1i 3"], from_ms=300, to_ms=300),
            ],
            [],
        )
        assert spool.journal_newest_since(0) == {"a": 900, "b": 700}
        assert spool.journal_newest_since(2) == {"a": 300}
        assert spool.journal_since(0) == {"a": 300, "b": 700}
    finally:
        spool.close()


def test_a_journal_from_before_to_ms_gets_the_column_and_says_unknown(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE rules_journal (row_id INTEGER PRIMARY KEY, device_id TEXT NOT NULL,"
        " from_ms INTEGER NOT NULL);"
        "INSERT INTO rules_journal VALUES (50, 'a', 500);"
    )
    db.close()
    spool = Spool(path, synchronous="NORMAL", rules_journal=True)
    try:
        spool.append([SpooledMessage(1, "b", ["x v=1i 7"], from_ms=700, to_ms=800)], [])
        assert spool.journal_since(0) == {"a": 500, "b": 700}
        # The old row does not say how far it reached: a restart reads everything for "a".
        assert spool.journal_newest_since(0) == {"a": None, "b": 800}
    finally:
        spool.close()

"""The spool's dead-letter store: every rejected byte recoverable, each payload stored once,
retention pruning, and the move from spools that kept payloads inline (cut at 64 KiB)."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import cast

import pytest

from ingest.spool import DeadLetter, Spool, SpooledMessage

TOPIC = "coldchain/v1/devices/d/telemetry"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "spool.sqlite3"


@pytest.fixture
def spool(path: Path) -> Iterator[Spool]:
    s = Spool(path, synchronous="NORMAL")
    yield s
    s.close()


def letter(
    payload: bytes, field: str = "f", reason: str = "out_of_range", received_ms: int = 5
) -> DeadLetter:
    return DeadLetter(received_ms, TOPIC, "d", reason, field, "'x'", "bad", payload)


def pid(row: dict[str, object]) -> int:
    return cast(int, row["payload_id"])


def payload_rows(path: Path) -> list[tuple[int, str, int, int]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(
            "SELECT id, sha256, size, length(payload) FROM dead_letter_payloads ORDER BY id"
        ).fetchall()


def test_a_large_payload_is_kept_whole_and_once_for_all_its_letters(
    spool: Spool, path: Path
) -> None:
    """A 5,000-sample backlog with bad values: every letter references the full payload."""
    payload = bytes(range(256)) * 4000  # ~1 MB, binary: bytes, not text
    letters = [letter(payload, f"samples[{i}].temps_c.c1-air") for i in (17, 2500, 4999)]
    spool.append([SpooledMessage(5, "d", ["m v=1 1"])], letters)
    rows = spool.dead_letters()
    assert [r["field"] for r in rows] == [d.field for d in letters]
    assert {r["payload_id"] for r in rows} == {rows[0]["payload_id"]}
    assert {r["payload_size"] for r in rows} == {len(payload)}
    assert {r["payload_sha256"] for r in rows} == {hashlib.sha256(payload).hexdigest()}
    [(_, sha, size, stored)] = payload_rows(path)
    assert (sha, size, stored) == (hashlib.sha256(payload).hexdigest(), len(payload), len(payload))
    got = spool.dead_letter_payload(pid(rows[0]))
    assert got == payload


def test_distinct_payloads_get_their_own_rows_and_a_redelivery_shares_one(
    spool: Spool, path: Path
) -> None:
    a, b = b'{"a": NaN}', b'{"b": 1e400}'
    spool.append([], [letter(a), letter(b)])
    spool.append([], [letter(bytes(a))])  # the same bytes again (a QoS 1 redelivery)
    rows = spool.dead_letters()
    assert len(rows) == 3 and rows[0]["payload_id"] == rows[2]["payload_id"]
    assert rows[0]["payload_id"] != rows[1]["payload_id"]
    assert len(payload_rows(path)) == 2
    assert spool.dead_letter_payload(pid(rows[1])) == b


def test_listing_keeps_its_columns(spool: Spool) -> None:
    spool.append([], [letter(b"{}", "samples[3].ts", "naive_timestamp")])
    [row] = spool.dead_letters()
    assert {k: row[k] for k in ("topic", "device_id", "reason", "field", "value", "detail")} == {
        "topic": TOPIC,
        "device_id": "d",
        "reason": "naive_timestamp",
        "field": "samples[3].ts",
        "value": "'x'",
        "detail": "bad",
    }
    assert spool.dead_letter_counts() == {"naive_timestamp": 1}


def test_prune_deletes_old_letters_and_payloads_no_letter_references(
    spool: Spool, path: Path
) -> None:
    old_only, shared = b"old", b"shared"
    spool.append([], [letter(old_only, received_ms=1_000), letter(shared, received_ms=1_000)])
    spool.append([], [letter(shared, received_ms=9_000)])
    assert spool.prune_dead_letters(before_ms=5_000) == 2
    [row] = spool.dead_letters()
    assert row["received_ms"] == 9_000
    assert spool.dead_letter_payload(pid(row)) == shared
    assert [r[2] for r in payload_rows(path)] == [len(shared)]
    assert spool.prune_dead_letters(before_ms=5_000) == 0


def test_prune_can_be_bounded_oldest_first(spool: Spool) -> None:
    spool.append([], [letter(f"p{i}".encode(), received_ms=1_000 + i) for i in range(5)])
    assert spool.prune_dead_letters(before_ms=5_000, max_letters=3) == 3
    assert [r["received_ms"] for r in spool.dead_letters()] == [1_003, 1_004]


def test_a_spool_with_a_retention_prunes_on_append(path: Path) -> None:
    now_ms = int(time.time() * 1000)
    day_ms = 86_400_000
    with closing(Spool(path, "NORMAL")) as keep_all:
        keep_all.append([], [letter(b"ancient", received_ms=now_ms - 40 * day_ms)])
        keep_all.append([], [letter(b"recent", received_ms=now_ms - 10 * day_ms)])
        assert len(keep_all.dead_letters()) == 2  # no retention: nothing pruned
    with closing(Spool(path, "NORMAL", dead_letter_retention_days=30)) as s:
        s.append([SpooledMessage(now_ms, "d", ["m v=1 1"])], [])
        assert [r["received_ms"] for r in s.dead_letters()] == [now_ms - 10 * day_ms]
        assert len(payload_rows(path)) == 1


_INLINE_SCHEMA = """
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, received_ms INTEGER NOT NULL, topic TEXT NOT NULL,
    device_id TEXT, reason TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
    detail TEXT NOT NULL, payload_size INTEGER NOT NULL, payload_sha256 TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX dead_letters_reason ON dead_letters (reason);
"""


def test_a_spool_with_inline_payloads_is_moved_on_open(path: Path) -> None:
    big = b"x" * 100_000
    with closing(sqlite3.connect(path)) as db:
        db.executescript(_INLINE_SCHEMA)
        rows = [
            (1, "malformed_json", "", big, big[:65536]),
            (2, "out_of_range", "samples.3.ts", b"{}", b"{}"),
            (3, "not_finite", "samples.4.ts", big, big[:65536]),
        ]
        db.executemany(
            "INSERT INTO dead_letters (received_ms, topic, device_id, reason, field, value,"
            " detail, payload_size, payload_sha256, payload) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                (ms, TOPIC, "d", reason, field, "v", "det", len(full), sha, cut)
                for ms, reason, field, full, cut in rows
                for sha in [hashlib.sha256(full).hexdigest()]
            ],
        )
        db.commit()
    with closing(Spool(path)) as s:
        letters = s.dead_letters()
        assert [(r["id"], r["reason"], r["payload_size"]) for r in letters] == [
            (1, "malformed_json", 100_000),
            (2, "out_of_range", 2),
            (3, "not_finite", 100_000),
        ]
        assert letters[0]["payload_id"] == letters[2]["payload_id"]
        # What the old store kept is kept: its first 64 KiB (shorter than payload_size).
        assert s.dead_letter_payload(pid(letters[0])) == big[:65536]
        s.append([], [letter(b"new")])
        assert len(s.dead_letters()) == 4
    with closing(Spool(path)) as again:  # a second open finds nothing to move
        assert len(again.dead_letters()) == 4

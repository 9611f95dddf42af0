"""The alert outbox: queued with the change it reports (one transaction), once per key and
channel, due rows oldest first, delivery and failed attempts recorded."""

from __future__ import annotations

import json

import pytest

from coldchain.exceptions import RecordRejected
from coldchain.rules.excursion import Excursion
from registry import OutboxMessage, Registry


def _exc(**kw: object) -> Excursion:
    base: dict[str, object] = {
        "asset_id": "truck-1",
        "compartment_id": "c1",
        "rule": "range",
        "kind": "range",
        "severity": "warning",
        "status": "open",
        "start_ms": 10_000,
        "end_ms": None,
        "detected_ms": 70_000,
        "peak_c": 9.5,
        "degree_minutes": 1.25,
        "profile": "chilled",
        "detail": "above 4.0 degC for 60 s",
    }
    base.update(kw)
    return Excursion(**base)  # type: ignore[arg-type]


def _msg(exc: Excursion, change: str = "opened", body: str = "") -> OutboxMessage:
    key = f"{exc.id}:{change}"
    payload = body or json.dumps({"key": key, "change": change, "id": exc.id})
    return OutboxMessage(key, "mqtt", f"coldchain/v1/alerts/{exc.asset_id}", payload)


def test_a_change_queues_its_alert_in_the_same_call(reg: Registry) -> None:
    exc = _exc()
    reg.upsert_excursions([exc], checkpoints={"rules": {"n": 1}}, alerts=[_msg(exc)])
    rows = reg.outbox_entries()
    assert [(r.key, r.channel, r.topic, r.attempts, r.delivered) for r in rows] == [
        (f"{exc.id}:opened", "mqtt", "coldchain/v1/alerts/truck-1", 0, False)
    ]
    assert json.loads(rows[0].payload)["key"] == f"{exc.id}:opened"
    assert rows[0].next_attempt_ms == rows[0].created_ms  # due at once


def test_queuing_the_same_key_twice_is_a_no_op(reg: Registry) -> None:
    exc = _exc()
    first = _msg(exc, body='{"first":true}')
    reg.upsert_excursions([exc], alerts=[first])
    # A restart recording the same change again, and a direct enqueue: still one row, unchanged.
    reg.upsert_excursions([exc], alerts=[_msg(exc, body='{"second":true}')])
    reg.enqueue_alerts([_msg(exc, body='{"third":true}'), _msg(exc, body='{"third":true}')])
    rows = reg.outbox_entries()
    assert [(r.key, r.payload) for r in rows] == [(first.key, '{"first":true}')]
    # Another change of the same excursion is another key.
    closed = _exc(status="closed", end_ms=90_000)
    reg.upsert_excursions([closed], alerts=[_msg(closed, "closed")])
    assert [r.key for r in reg.outbox_entries()] == [first.key, f"{exc.id}:closed"]


def test_a_failed_transaction_records_neither_the_change_nor_its_alert(reg: Registry) -> None:
    exc = _exc()
    with pytest.raises(RecordRejected):  # the checkpoint is refused inside the transaction
        reg.upsert_excursions([exc], checkpoints={"rules": {"x": object()}}, alerts=[_msg(exc)])
    assert reg.get_excursion(exc.id) is None
    assert reg.outbox_entries() == []
    bad = OutboxMessage("k", "pager", "t", "{}")  # type: ignore[arg-type]
    with pytest.raises(RecordRejected, match="unknown channel 'pager'"):
        reg.upsert_excursions([exc], alerts=[bad])
    assert reg.get_excursion(exc.id) is None  # the bad alert took its change with it
    with pytest.raises(RecordRejected, match="key must have"):
        reg.enqueue_alerts([OutboxMessage("", "mqtt", "t", "{}")])
    assert reg.outbox_entries() == []


def test_due_rows_oldest_first_and_delivery_and_retries_recorded(reg: Registry) -> None:
    excs = [_exc(start_ms=10_000 + i) for i in range(3)]
    reg.upsert_excursions(excs, alerts=[_msg(e) for e in excs])
    rows = reg.outbox_entries()
    assert [r.key for r in reg.due_alerts("mqtt")] == [r.key for r in rows]
    assert [r.key for r in reg.due_alerts("mqtt", limit=2)] == [r.key for r in rows[:2]]
    assert reg.due_alerts("mqtt", now_ms=rows[0].created_ms - 1) == []  # not due yet

    reg.mark_alerts_delivered([rows[0].id])
    reg.mark_alert_failed(rows[1].id, "no PUBACK within 10 s", retry_at_ms=5_000_000)
    due = reg.due_alerts("mqtt", now_ms=4_999_999)
    assert [r.key for r in due] == [rows[2].key]  # delivered: gone; failed: later
    later = reg.due_alerts("mqtt", now_ms=5_000_000)
    assert [r.key for r in later] == [rows[1].key, rows[2].key]
    failed = later[0]
    assert (failed.attempts, failed.last_error, failed.next_attempt_ms) == (
        1,
        "no PUBACK within 10 s",
        5_000_000,
    )
    reg.mark_alert_failed(rows[1].id, "again", retry_at_ms=6_000_000)
    assert reg.outbox_entries(pending=True)[0].attempts == 2

    delivered = reg.outbox_entries(pending=False)
    assert [r.key for r in delivered] == [rows[0].key] and delivered[0].delivered
    first_time = delivered[0].delivered_ms
    reg.mark_alerts_delivered([rows[0].id])  # a repeat keeps the first delivery time
    reg.mark_alert_failed(rows[0].id, "late failure", retry_at_ms=0)  # ignored once delivered
    again = reg.outbox_entries(pending=False)[0]
    assert (again.delivered_ms, again.attempts, again.last_error) == (first_time, 0, "")

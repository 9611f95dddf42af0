"""The alert outbox: queued with the change it reports (one transaction), once per key; routed
once into per-channel deliveries; claims leased so two deliverers never hold the same row;
delivery and failed attempts recorded; an acknowledgement queues its own alert."""

from __future__ import annotations

import json

import pytest

from coldchain.exceptions import RecordRejected
from coldchain.rules.excursion import Excursion
from registry import ChannelDelivery, Fanout, OutboxMessage, Registry


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
    return OutboxMessage(key, payload)


def test_a_change_queues_its_alert_in_the_same_call(reg: Registry) -> None:
    exc = _exc()
    reg.upsert_excursions([exc], checkpoints={"rules": {"n": 1}}, alerts=[_msg(exc)])
    rows = reg.outbox_entries()
    assert [(r.key, r.routed_ms) for r in rows] == [(f"{exc.id}:opened", None)]
    assert json.loads(rows[0].payload)["key"] == f"{exc.id}:opened"
    assert rows[0].route_after_ms == rows[0].created_ms  # due at once


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
    bad = OutboxMessage("k", "")
    with pytest.raises(RecordRejected, match="empty payload for key 'k'"):
        reg.upsert_excursions([exc], alerts=[bad])
    assert reg.get_excursion(exc.id) is None  # the bad alert took its change with it
    with pytest.raises(RecordRejected, match="key must have"):
        reg.enqueue_alerts([OutboxMessage("", "{}")])
    assert reg.outbox_entries() == []


def _routed(reg: Registry, n: int, channels: tuple[str, ...] = ("mqtt", "hook")) -> list[int]:
    excs = [_exc(start_ms=10_000 + i) for i in range(n)]
    reg.upsert_excursions(excs, alerts=[_msg(e) for e in excs])
    entries = reg.unrouted_alerts()
    assert len(entries) == n
    now = entries[0].created_ms
    for e in entries:
        assert reg.route_alert(e.id, [Fanout(ch, now) for ch in channels], now_ms=now)
    return [e.id for e in entries]


def test_routing_happens_once_and_creates_one_row_per_channel(reg: Registry) -> None:
    exc = _exc()
    reg.upsert_excursions([exc], alerts=[_msg(exc)])
    (entry,) = reg.unrouted_alerts()
    assert reg.unrouted_alerts(now_ms=entry.created_ms - 1) == []  # not due yet
    timer = OutboxMessage(f"{exc.id}:unacknowledged:oncall", "{}", route_after_ms=9_000_000)
    fanout = [Fanout("mqtt", 100), Fanout("hook", 200), Fanout("chat", 300, dropped="quiet")]
    assert reg.route_alert(entry.id, fanout, [timer], now_ms=50)
    # A second deliverer that read the same entry loses the race and writes nothing.
    assert not reg.route_alert(entry.id, [Fanout("mqtt", 100), Fanout("other", 1)], [timer])
    rows = reg.alert_deliveries()
    assert [(r.channel, r.state, r.next_attempt_ms, r.last_error) for r in rows] == [
        ("mqtt", "pending", 100, ""),
        ("hook", "pending", 200, ""),
        ("chat", "dropped", 300, "quiet"),
    ]
    # The escalation timer is an entry of its own, due later.
    assert [e.key for e in reg.unrouted_alerts(now_ms=8_999_999)] == []
    assert [e.key for e in reg.unrouted_alerts(now_ms=9_000_000)] == [timer.key]
    with pytest.raises(RecordRejected, match="bad channel name"):
        reg.route_alert(entry.id, [Fanout("", 1)])


def test_claims_are_leased_and_outcomes_recorded(reg: Registry) -> None:
    _routed(reg, 3)
    now = reg.alert_deliveries()[0].next_attempt_ms
    first = reg.claim_alert_deliveries("mqtt", owner="a", lease_ms=60_000, now_ms=now, limit=2)
    assert [d.attempts for d in first] == [1, 1] and first[0].lease_owner.startswith("a:")
    # Another deliverer gets only what is not leased; then nothing.
    second = reg.claim_alert_deliveries("mqtt", owner="b", lease_ms=60_000, now_ms=now)
    assert len(second) == 1 and second[0].id not in {d.id for d in first}
    assert reg.claim_alert_deliveries("mqtt", owner="b", lease_ms=60_000, now_ms=now) == []
    # The other channel's rows are separate.
    assert len(reg.claim_alert_deliveries("hook", owner="b", lease_ms=1, now_ms=now)) == 3

    reg.finish_alert_deliveries([first[0]], [(first[1], "HTTP 503", now + 5_000)], now_ms=now)
    done, failed = (next(r for r in reg.alert_deliveries() if r.id == first[i].id) for i in (0, 1))
    assert (done.state, done.delivered_ms, done.lease_owner) == ("delivered", now, None)
    assert (failed.state, failed.last_error, failed.next_attempt_ms) == (
        "pending",
        "HTTP 503",
        now + 5_000,
    )
    assert reg.claim_alert_deliveries("mqtt", owner="c", lease_ms=1, now_ms=now + 4_999) == []
    again = reg.claim_alert_deliveries("mqtt", owner="c", lease_ms=1, now_ms=now + 5_000)
    assert [(d.id, d.attempts) for d in again] == [(failed.id, 2)]


def test_a_lease_that_ran_out_is_taken_over_and_the_late_outcome_ignored(reg: Registry) -> None:
    _routed(reg, 1, ("mqtt",))
    now = reg.alert_deliveries()[0].next_attempt_ms
    (dead,) = reg.claim_alert_deliveries("mqtt", owner="a", lease_ms=1_000, now_ms=now)
    assert reg.claim_alert_deliveries("mqtt", owner="b", lease_ms=1_000, now_ms=now + 999) == []
    (taken,) = reg.claim_alert_deliveries("mqtt", owner="b", lease_ms=1_000, now_ms=now + 1_000)
    assert taken.attempts == 2 and taken.lease_owner != dead.lease_owner
    # The first holder wakes up late: its outcome no longer applies.
    reg.finish_alert_deliveries([], [(dead, "late", now + 99_000)], now_ms=now + 1_001)
    row: ChannelDelivery = reg.alert_deliveries()[0]
    assert (row.lease_owner, row.last_error) == (taken.lease_owner, "")
    reg.finish_alert_deliveries([taken], now_ms=now + 1_002)
    reg.finish_alert_deliveries([], [(taken, "after delivery", 0)])  # ignored once delivered
    row = reg.alert_deliveries()[0]
    assert (row.state, row.delivered_ms, row.last_error) == ("delivered", now + 1_002, "")


def test_a_restarted_deliverer_releases_only_its_own_leases(reg: Registry) -> None:
    _routed(reg, 3, ("mqtt",))
    now = reg.alert_deliveries()[0].next_attempt_ms
    mine = reg.claim_alert_deliveries(
        "mqtt", owner="ingest-1", lease_ms=600_000, now_ms=now, limit=2
    )
    other = reg.claim_alert_deliveries("mqtt", owner="ingest-10", lease_ms=600_000, now_ms=now)
    assert len(mine) == 2 and len(other) == 1
    assert reg.release_alert_leases("ingest-1") == 2  # not ingest-10's, whose name it prefixes
    again = reg.claim_alert_deliveries("mqtt", owner="ingest-1", lease_ms=1, now_ms=now + 1)
    assert sorted(d.id for d in again) == sorted(d.id for d in mine)
    assert reg.release_alert_leases("nobody") == 0


def test_an_acknowledgement_queues_its_alert_in_its_transaction(reg: Registry) -> None:
    exc = _exc(severity="critical")
    reg.upsert_excursions([exc])
    reg.record_acknowledgement(exc.id, by="ops", comment="door shut", disposition="released")
    reg.record_acknowledgement(exc.id, by="qa", disposition="released")
    entries = reg.outbox_entries()
    assert [e.key for e in entries] == [f"{exc.id}:acknowledged:1", f"{exc.id}:acknowledged:2"]
    body = json.loads(entries[0].payload)
    assert (body["change"], body["id"], body["severity"]) == ("acknowledged", exc.id, "critical")
    assert body["acknowledgement"]["by"] == "ops"
    assert body["acknowledgement"]["comment"] == "door shut"
    # A refused acknowledgement queues nothing.
    with pytest.raises(RecordRejected):
        reg.record_acknowledgement(exc.id, by="ops", disposition="bogus")  # type: ignore[arg-type]
    assert len(reg.outbox_entries()) == 2


def test_0009_brings_queued_mqtt_alerts_along_and_back(registry_url: str) -> None:
    from sqlalchemy import text

    from registry import make_engine, open_registry, upgrade
    from registry.migrate import downgrade

    upgrade(registry_url, "0008")
    engine = make_engine(registry_url)
    cols = "key, channel, topic, payload, created_ms, attempts, next_attempt_ms, delivered_ms"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO alert_outbox ({cols}, last_error) VALUES "
                "('e1:opened', 'mqtt', 'coldchain/v1/alerts/t1', '{\"asset_id\":\"t1\"}', "
                "1000, 1, 1000, 1500, ''), "
                "('e1:closed', 'mqtt', 'coldchain/v1/alerts/t1', '{\"asset_id\":\"t1\"}', "
                "2000, 3, 9000, NULL, 'no PUBACK within 10 s')"
            )
        )
    upgrade(registry_url)
    with open_registry(registry_url) as reg:
        entries = reg.outbox_entries()
        assert [(e.key, e.created_ms, e.route_after_ms, e.routed_ms) for e in entries] == [
            ("e1:opened", 1000, 1000, 1000),
            ("e1:closed", 2000, 2000, 2000),
        ]
        rows = reg.alert_deliveries()
        assert [
            (r.key, r.channel, r.state, r.attempts, r.next_attempt_ms, r.last_error) for r in rows
        ] == [
            ("e1:opened", "mqtt", "delivered", 1, 1000, ""),
            ("e1:closed", "mqtt", "pending", 3, 9000, "no PUBACK within 10 s"),
        ]
        # New entries get fresh ids after the copied ones.
        reg.enqueue_alerts([OutboxMessage("e2:opened", "{}")])
        assert reg.outbox_entries()[-1].id > entries[-1].id
    downgrade(registry_url, "0008")
    with engine.connect() as conn:
        back = conn.execute(text(f"SELECT {cols}, last_error FROM alert_outbox ORDER BY id")).all()
    engine.dispose()
    assert [tuple(r) for r in back[:2]] == [
        (
            "e1:opened",
            "mqtt",
            "coldchain/v1/alerts/t1",
            '{"asset_id":"t1"}',
            1000,
            1,
            1000,
            1500,
            "",
        ),
        (
            "e1:closed",
            "mqtt",
            "coldchain/v1/alerts/t1",
            '{"asset_id":"t1"}',
            2000,
            3,
            9000,
            None,
            "no PUBACK within 10 s",
        ),
    ]


def _one(reg: Registry, start_ms: int, fanout: list[Fanout]) -> int:
    exc = _exc(start_ms=start_ms)
    reg.upsert_excursions([exc], alerts=[_msg(exc)])
    (entry,) = reg.unrouted_alerts()
    assert reg.route_alert(entry.id, fanout, now_ms=0)
    return entry.id


def _finish(reg: Registry, entry_id: int, failed_channel: str = "") -> None:
    rows = [r for r in reg.alert_deliveries(state="pending") if r.outbox_id == entry_id]
    claimed = [
        d
        for r in rows
        for d in reg.claim_alert_deliveries(r.channel, owner="a", lease_ms=60_000, now_ms=0)
        if d.outbox_id == entry_id
    ]
    ok = [d for d in claimed if d.channel != failed_channel]
    failed = [(d, "HTTP 503", 10**12) for d in claimed if d.channel == failed_channel]
    reg.finish_alert_deliveries(ok, failed, now_ms=0)


def test_pruning_deletes_only_finished_notifications_older_than_the_cutoff(reg: Registry) -> None:
    both = [Fanout("mqtt", 0), Fanout("hook", 0)]
    done = _one(reg, 1, both)
    _finish(reg, done)
    dropped = _one(reg, 2, [Fanout("mqtt", 0), Fanout("hook", 0, dropped="quiet hours")])
    _finish(reg, dropped)
    retrying = _one(reg, 3, both)
    _finish(reg, retrying, failed_channel="hook")  # still pending: kept
    timer = OutboxMessage("x:unacknowledged:oncall", "{}", route_after_ms=10**12)
    reg.enqueue_alerts([timer])  # an escalation timer not due yet: unrouted, kept
    entries = {e.id: e for e in reg.outbox_entries()}
    cutoff = entries[retrying].created_ms + 1
    recent = _one(reg, 4, both)  # finished, but queued after the cutoff
    _finish(reg, recent)
    assert reg.prune_alerts(entries[done].created_ms) == 0  # nothing finished before that

    assert reg.prune_alerts(cutoff, limit=1) == 1  # a batch at a time
    assert reg.prune_alerts(cutoff) == 1
    assert reg.prune_alerts(cutoff) == 0
    left = {e.id for e in reg.outbox_entries()}
    assert left == {retrying, recent, next(e.id for e in entries.values() if e.key == timer.key)}
    assert {r.outbox_id for r in reg.alert_deliveries()} == {retrying, recent}
    # The excursions they told of stay.
    assert len(reg.find_excursions(asset_id="truck-1")) == 4

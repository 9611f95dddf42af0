"""``ingest.outbox``: idempotency keys, and the delivery rounds over a real registry with a
scripted publish (which PUBACKs arrive). The broker end to end: tests/e2e/test_alert_outbox.py."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldchain.alerts import default_routing
from coldchain.rules import Change, Excursion
from ingest.channels import MqttSender
from ingest.outbox import AlertDelivery, alert_message, backoff_s
from ingest.rules_io import alert_key, alert_payload
from registry import ChannelDelivery, Registry, open_registry, upgrade

T0 = 1_790_000_000_000


def _exc(**kw: object) -> Excursion:
    base: dict[str, object] = {
        "asset_id": "truck-1",
        "compartment_id": "c1",
        "rule": "range",
        "kind": "range",
        "severity": "warning",
        "status": "open",
        "start_ms": T0,
        "end_ms": None,
        "detected_ms": T0 + 60_000,
        "peak_c": 9.5,
        "degree_minutes": 1.25,
        "profile": "chilled",
        "detail": "above 4.0 degC",
    }
    base.update(kw)
    return Excursion(**base)  # type: ignore[arg-type]


def test_keys_are_one_per_change_and_stable() -> None:
    e = _exc()
    assert alert_key(Change("opened", e)) == f"{e.id}:opened"
    assert alert_key(Change("closed", e)) == f"{e.id}:closed"
    # Escalation can happen once per severity reached.
    crit = dataclasses.replace(e, severity="critical")
    assert alert_key(Change("escalated", crit)) == f"{e.id}:escalated:critical"
    # Updates: one key per resulting state, the same when recomputed again.
    up1 = alert_key(Change("updated", dataclasses.replace(e, peak_c=10.0)))
    up2 = alert_key(Change("updated", dataclasses.replace(e, peak_c=11.0)))
    assert up1.startswith(f"{e.id}:updated:") and len(up1) == len(e.id) + len(":updated:") + 12
    assert up1 != up2
    assert up1 == alert_key(Change("updated", dataclasses.replace(e, peak_c=10.0)))
    body = json.loads(alert_payload(Change("opened", e)))
    assert (body["key"], body["change"], body["id"]) == (f"{e.id}:opened", "opened", e.id)
    msg = alert_message(Change("opened", e))
    assert (msg.key, msg.route_after_ms) == (body["key"], None)
    assert json.loads(msg.payload) == body


def test_backoff_doubles_up_to_its_ceiling() -> None:
    assert [backoff_s(n, 30.0) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 4, 8, 16, 30, 30]
    assert [backoff_s(n, 0.5, 0.1) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.5, 0.5]


class _Handle:
    def __init__(self, acked: bool) -> None:
        self.acked = acked

    def wait_for_publish(self, timeout: float | None = None) -> None:
        return None

    def is_published(self) -> bool:
        return self.acked


class _Broker:
    """Records publishes; acknowledges them unless told to stay silent or to refuse."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, object]]] = []
        self.ack = True
        self.refuse = False

    def publish(self, topic: str, payload: bytes) -> _Handle:
        if self.refuse:
            raise RuntimeError("The client is not currently connected.")
        self.sent.append((topic, json.loads(payload)))
        return _Handle(self.ack)


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    clock = _Clock()
    with open_registry(url, clock=clock) as registry:
        registry.test_clock = clock  # type: ignore[attr-defined]
        yield registry


def _stage(
    reg: Registry,
    broker: _Broker,
    *,
    connected: object = lambda: True,
    hold_s: float = 0.0,
    retry_max_s: float = 300.0,
    retention_days: float = 0.0,
) -> AlertDelivery:
    mqtt = MqttSender("mqtt", broker.publish, connected, 0.01)  # type: ignore[arg-type]
    clock: _Clock = reg.test_clock  # type: ignore[attr-defined]
    return AlertDelivery(
        reg,
        default_routing(),
        {"mqtt": mqtt},
        clock_ms=clock,
        hold_s=hold_s,
        retry_max_s=retry_max_s,
        retention_days=retention_days,
    )


def _mqtt_row(reg: Registry) -> ChannelDelivery:
    (row,) = reg.alert_deliveries(channel="mqtt")
    return row


def _record(reg: Registry, *changes: Change) -> None:
    reg.upsert_excursions(
        [c.excursion for c in changes], alerts=[alert_message(c) for c in changes]
    )


def test_acknowledged_alerts_are_marked_and_never_sent_again(reg: Registry) -> None:
    clock: _Clock = reg.test_clock  # type: ignore[attr-defined]
    broker = _Broker()
    d = _stage(reg, broker)
    e = _exc()
    _record(reg, Change("opened", e))
    assert d.deliver_round() == 2  # routed, then sent
    assert [(t, b["key"]) for t, b in broker.sent] == [
        ("coldchain/v1/alerts/truck-1", f"{e.id}:opened")
    ]
    assert reg.alert_deliveries(state="pending") == []
    assert _mqtt_row(reg).delivered
    clock.now += 3_600_000
    assert d.deliver_round() == 0 and len(broker.sent) == 1
    assert d.stats()["alerts_delivered"] == 1


def test_an_unacknowledged_alert_is_retried_with_backoff_until_acknowledged(
    reg: Registry,
) -> None:
    clock: _Clock = reg.test_clock  # type: ignore[attr-defined]
    broker = _Broker()
    d = _stage(reg, broker, retry_max_s=2)
    e = _exc()
    _record(reg, Change("opened", e))
    broker.ack = False  # the broker never sends the PUBACK
    assert d.deliver_round() == 2
    row = _mqtt_row(reg)
    assert (row.attempts, row.delivered, row.last_error) == (1, False, "no PUBACK within 0.01 s")
    assert row.next_attempt_ms == T0 + 1000
    assert row.lease_owner is None  # the lease is given back with the outcome
    assert d.deliver_round() == 0  # not due before its backoff
    broker.refuse = True  # disconnected: paho refuses the publish
    clock.now += 1000
    assert d.deliver_round() == 1
    row = _mqtt_row(reg)
    assert (row.attempts, row.next_attempt_ms) == (2, clock.now + 2000)
    assert "not currently connected" in row.last_error
    clock.now += 2000
    broker.refuse, broker.ack = False, True
    assert d.deliver_round() == 1
    assert _mqtt_row(reg).delivered and _mqtt_row(reg).attempts == 3
    # Every send carried the same key: the receiver keeps one.
    assert {b["key"] for _, b in broker.sent} == {f"{e.id}:opened"}
    assert len(broker.sent) == 2


def test_nothing_is_attempted_while_disconnected(reg: Registry) -> None:
    broker, up = _Broker(), [False]
    d = _stage(reg, broker, connected=lambda: up[0])
    _record(reg, Change("opened", _exc()))
    assert d.deliver_round() == 1 and broker.sent == []  # routed only
    assert _mqtt_row(reg).attempts == 0  # not counted as a failed attempt
    up[0] = True
    assert d.deliver_round() == 1 and len(broker.sent) == 1


def test_hold_delays_routing_and_the_first_attempt(reg: Registry) -> None:
    clock: _Clock = reg.test_clock  # type: ignore[attr-defined]
    broker = _Broker()
    d = _stage(reg, broker, hold_s=5)
    _record(reg, Change("opened", _exc()))
    assert d.deliver_round() == 0 and broker.sent == []
    assert reg.alert_deliveries() == []
    clock.now += 5000
    assert d.deliver_round() == 2 and len(broker.sent) == 1


class _Broken:
    """A channel with a bug: its send raises."""

    name = "broken"
    timeout_s = 1.0

    def ready(self) -> bool:
        return True

    def send(self, deliveries: object) -> list[str]:
        raise KeyError("asset_id")

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_channel_that_raises_costs_only_its_own_rows(reg: Registry) -> None:
    from coldchain.alerts import parse_routing

    clock: _Clock = reg.test_clock  # type: ignore[attr-defined]
    broker = _Broker()
    routing = parse_routing(
        {
            "channels": {
                "mqtt": {"type": "mqtt"},
                "broken": {"type": "webhook", "url": "http://127.0.0.1:9/"},
            },
            "routes": [{"name": "all", "channels": ["mqtt", "broken"]}],
        }
    )
    mqtt = MqttSender("mqtt", broker.publish, lambda: True, 0.01)  # type: ignore[arg-type]
    d = AlertDelivery(reg, routing, {"mqtt": mqtt, "broken": _Broken()}, clock_ms=clock)
    _record(reg, Change("opened", _exc()))
    d.deliver_round()
    rows = {r.channel: r for r in reg.alert_deliveries()}
    assert rows["mqtt"].delivered and len(broker.sent) == 1
    broken = rows["broken"]
    assert (broken.state, broken.attempts, broken.lease_owner) == ("pending", 1, None)
    assert broken.last_error == "KeyError: 'asset_id'"
    assert broken.next_attempt_ms == clock.now + 1000


def test_delivered_alerts_past_the_retention_are_pruned_and_pending_ones_kept(
    reg: Registry,
) -> None:
    clock: _Clock = reg.test_clock  # type: ignore[attr-defined]
    broker = _Broker()
    d = _stage(reg, broker, retention_days=31)
    sent, unsent = _exc(), _exc(start_ms=T0 + 1)
    _record(reg, Change("opened", sent))
    assert d.deliver_round() == 2
    broker.ack = False
    _record(reg, Change("opened", unsent))
    d.deliver_round()  # routed, sent, never acknowledged: pending
    clock.now += 30 * 86_400_000
    d._prune()
    assert len(reg.outbox_entries()) == 2 and d.stats()["alerts_pruned"] == 0
    clock.now += 2 * 86_400_000
    d._next_prune = 0.0  # as an hour later
    d._prune()
    assert [e.key for e in reg.outbox_entries()] == [f"{unsent.id}:opened"]
    assert d.stats()["alerts_pruned"] == 1
    assert len(reg.find_excursions(asset_id="truck-1")) == 2  # the record itself stays

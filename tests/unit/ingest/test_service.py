"""``ingest.service.process_delivery``: one delivery -> (spooled message | None, dead letters)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from coldchain.contract import Limits, PointEncoder
from ingest.consumer import Delivery
from ingest.service import process_delivery
from tests.unit.support import NOW_MS, TOPIC, batch, dumps, fleet, sample, single

LIMITS = Limits(max_future_skew_s=300.0, max_sample_age_s=86400.0)


def deliver(payload: bytes, topic: str = TOPIC, max_bytes: int = 1 << 20) -> Any:
    d = Delivery(topic=topic, payload=payload, mid=1, qos=1, received_ms=NOW_MS, generation=0)
    f = fleet()
    return process_delivery(d, f, PointEncoder(f), LIMITS, max_bytes)


def test_good_message_is_encoded() -> None:
    msg, dead, *_ = deliver(dumps(single(temps_c={"t-front-air": 4.0})))
    assert dead == []
    assert msg is not None and (msg.received_ms, msg.device_id) == (NOW_MS, "dev-1")
    assert msg.lines[0].startswith("temperature,asset=truck-1,compartment=front,")
    assert msg.lines[-1].startswith("device,asset=truck-1,device=dev-1 ")


def test_rejected_message_is_one_dead_letter_with_the_raw_payload() -> None:
    payload = b'{"v": 1, "device_id": "dev-1", "ts": "x"'
    msg, dead, *_ = deliver(payload)
    assert msg is None
    [dl] = dead
    assert (dl.topic, dl.device_id, dl.reason, dl.payload) == (
        TOPIC,
        "dev-1",
        "malformed_json",
        payload,
    )
    assert dl.received_ms == NOW_MS


def test_unknown_device_and_bad_topic() -> None:
    msg, dead, *_ = deliver(
        dumps(single(device_id="ghost")), "coldchain/v1/devices/ghost/telemetry"
    )
    assert msg is None and [d.reason for d in dead] == ["unknown_device"]
    msg, dead, *_ = deliver(dumps(single()), "somewhere/else")
    assert msg is None and [(d.reason, d.device_id) for d in dead] == [("bad_topic", None)]


def test_batch_with_one_bad_sample() -> None:
    raw = batch([sample(-2, 1, temps_c={"t-front-air": 3.0}), sample(900, 2), sample(-1, 3)])
    msg, dead, *_ = deliver(dumps(raw))
    assert msg is not None
    assert sum(line.startswith("temperature,") for line in msg.lines) == 1
    assert "samples=2i" in msg.lines[-1] and "seq=3i" in msg.lines[-1]
    [dl] = dead
    assert (dl.reason, dl.field) == ("future_timestamp", "samples.1.ts")
    # The dead letter keeps the offending sample, not the whole batch.
    assert json.loads(dl.payload)["seq"] == 2


def test_single_sample_failing_registry_check_is_not_spooled() -> None:
    msg, dead, *_ = deliver(dumps(single(temps_c={"unknown": 1.0})))
    assert msg is None and [d.reason for d in dead] == ["unknown_sensor"]


def test_oversize_payload_never_raises() -> None:
    payload = b"x" * (10 * 1024 * 1024)
    msg, dead, *_ = deliver(payload)
    assert msg is None and dead[0].reason == "payload_too_large"
    assert hashlib.sha256(dead[0].payload).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_a_message_carries_its_oldest_device_time_for_the_rules_journal() -> None:
    raw = batch([sample(-60, 1, temps_c={"t-front-air": 3.0}), sample(-120, 2), sample(-1, 3)])
    msg, *_ = deliver(dumps(raw))
    assert msg is not None and msg.from_ms == NOW_MS - 120_000

"""``ingest.pipeline.process_delivery``: one delivery -> (spooled message | None, dead letters)."""

from __future__ import annotations

import hashlib
from typing import Any

from coldchain.contract import Limits, PointEncoder
from ingest.consumer import Delivery
from ingest.pipeline import process_delivery
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
    payload = dumps(raw)
    msg, dead, *_ = deliver(payload)
    assert msg is not None
    assert sum(line.startswith("temperature,") for line in msg.lines) == 1
    assert "samples=2i" in msg.lines[-1] and "seq=3i" in msg.lines[-1]
    [dl] = dead
    assert (dl.reason, dl.field) == ("future_timestamp", "samples[1].ts")
    # The dead letter keeps the whole payload: every rejected byte is recoverable.
    assert dl.payload == payload


def test_one_bad_value_costs_that_value_only() -> None:
    """Issue 8, item 3: a -127.0 (disconnected DS18B20) in sample 2 of a backlog."""
    samples = [
        sample(-10 + i, i, temps_c={"t-front-air": 3.0, "t-front-prod": 3.5}) for i in range(5)
    ]
    samples[2]["temps_c"]["t-front-air"] = -127.0
    samples[3]["position"] = {"lat": 123.0, "lon": 4.0}
    payload = dumps(batch(samples))
    msg, dead, asset_id, accepted = deliver(payload)
    assert msg is not None and asset_id == "truck-1"
    temps = [line for line in msg.lines if line.startswith("temperature,")]
    assert len(temps) == 9  # 10 values, one rejected
    assert [s.seq for s in accepted] == [0, 1, 2, 3, 4]
    assert accepted[2].temps_c == {"t-front-prod": 3.5} and accepted[3].position is None
    assert [(d.reason, d.field, d.value) for d in dead] == [
        ("out_of_range", "samples[2].temps_c.t-front-air", "-127.0"),
        ("out_of_range", "samples[3].position.lat", "123.0"),
    ]
    assert all(d.payload is payload for d in dead)


def test_single_sample_keeps_its_registered_probes() -> None:
    msg, dead, *_ = deliver(dumps(single(temps_c={"unknown": 1.0, "t-front-air": 2.0})))
    assert msg is not None and sum(x.startswith("temperature,") for x in msg.lines) == 1
    assert [(d.reason, d.field) for d in dead] == [("unknown_sensor", "temps_c.unknown")]


def test_single_sample_with_only_unregistered_probes_stores_its_device_line() -> None:
    msg, dead, *_ = deliver(dumps(single(temps_c={"unknown": 1.0})))
    assert msg is not None and [x.split(",")[0] for x in msg.lines] == ["device"]
    assert [d.reason for d in dead] == ["unknown_sensor"]


def test_no_fix_position_is_stored_without_a_place_or_a_speed() -> None:
    """Issue 9, item 3: ``fix: none`` -> a ``position`` point with fix="none" and no lat, lon
    or speed; the sample the rules see has them None."""
    position = {"lat": 0, "lon": 0, "speed_kmh": 0, "fix": "none", "hdop": 99.9}
    msg, dead, _, accepted = deliver(dumps(single(temps_c={"t-front-air": 2.0}, position=position)))
    assert dead == [] and msg is not None
    [line] = [x for x in msg.lines if x.startswith("position,")]
    assert line.split(" ")[1] == 'fix="none",hdop=99.9'
    pos = accepted[0].position
    assert pos is not None and (pos.lat, pos.lon, pos.speed_kmh) == (None, None, None)


def test_oversize_payload_never_raises() -> None:
    payload = b"x" * (10 * 1024 * 1024)
    msg, dead, *_ = deliver(payload)
    assert msg is None and dead[0].reason == "payload_too_large"
    assert hashlib.sha256(dead[0].payload).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_a_message_carries_its_oldest_device_time_for_the_rules_journal() -> None:
    raw = batch([sample(-60, 1, temps_c={"t-front-air": 3.0}), sample(-120, 2), sample(-1, 3)])
    msg, *_ = deliver(dumps(raw))
    assert msg is not None and msg.from_ms == NOW_MS - 120_000

"""Stage 2: registry and clock checks per unit; one bad unit never rejects its neighbours."""

from __future__ import annotations

from typing import Any

import pytest

from coldchain.contract import Limits
from coldchain.exceptions import TelemetryRejected
from ingest.decode import decode
from ingest.validate import validate
from tests.unit.support import NOW_MS, TRUCK, batch, dumps, fleet, sample, single

LIMITS = Limits(max_future_skew_s=300.0, max_sample_age_s=86400.0)


def run(payload: dict[str, Any] | bytes, topic_device: str = "dev-1") -> Any:
    topic = f"coldchain/v1/devices/{topic_device}/telemetry"
    raw = payload if isinstance(payload, bytes) else dumps(payload)
    return validate(decode(topic, raw, 1 << 20), fleet(), NOW_MS, LIMITS)


def test_good_single_sample() -> None:
    v = run(single(temps_c={"t-front-air": 3.0}, compartments={"front": {"door_open": True}}))
    assert v.device_id == "dev-1" and v.asset == TRUCK
    assert [s.seq for s in v.samples] == [1] and v.rejected == []


def test_unknown_device() -> None:
    with pytest.raises(TelemetryRejected) as info:
        run(single(device_id="ghost-9"), topic_device="ghost-9")
    exc = info.value
    assert (exc.reason, exc.device_id, exc.field, exc.value) == (
        "unknown_device",
        "ghost-9",
        "device_id",
        "'ghost-9'",
    )


@pytest.mark.parametrize(
    ("bad", "reason", "field"),
    [
        (sample(301, 2), "future_timestamp", "samples[1].ts"),
        (sample(-86401, 2), "stale_timestamp", "samples[1].ts"),
    ],
)
def test_a_time_outside_the_window_rejects_its_sample_alone(
    bad: dict[str, Any], reason: str, field: str
) -> None:
    good_before = sample(-20, 1, temps_c={"t-front-air": 3.0})
    good_after = sample(-10, 3, temps_c={"t-rear-air": -19.0})
    v = run(batch([good_before, bad, good_after]))
    assert [s.seq for s in v.samples] == [1, 3]
    [exc] = v.rejected
    assert (exc.reason, exc.field, exc.device_id) == (reason, field, "dev-1")


@pytest.mark.parametrize(
    ("extra", "reason", "field"),
    [
        ({"temps_c": {"t-front-air": 3.0, "s-a": 1.0}}, "unknown_sensor", "samples[1].temps_c.s-a"),
        (
            {"temps_c": {"t-front-air": 3.0}, "compartments": {"zone-a": {}}},
            "unknown_compartment",
            "samples[1].compartments.zone-a",
        ),
    ],
)
def test_an_unregistered_probe_or_compartment_costs_only_its_value(
    extra: dict[str, Any], reason: str, field: str
) -> None:
    v = run(batch([sample(-20, 1), sample(-15, 2, **extra), sample(-10, 3)]))
    assert [s.seq for s in v.samples] == [1, 2, 3]
    assert v.samples[1].temps_c == {"t-front-air": 3.0} and v.samples[1].compartments == {}
    [exc] = v.rejected
    assert (exc.reason, exc.field) == (reason, field)


def test_decode_and_registry_rejections_keep_payload_positions() -> None:
    """Sample 1 is cut by decode, so the registry check of payload sample 2 is at index 1 of
    the decoded samples: its path must still say samples[2]."""
    v = run(
        batch(
            [
                sample(-20, 1),
                sample(-15, 2, ts="2026-11-23T17:59:00"),
                sample(-10, 3, temps_c={"nope": 1.0}),
                sample(500, 4),
            ]
        )
    )
    assert [s.seq for s in v.samples] == [1, 3]
    assert [(e.reason, e.field) for e in v.rejected] == [
        ("naive_timestamp", "samples[1].ts"),
        ("unknown_sensor", "samples[2].temps_c.nope"),
        ("future_timestamp", "samples[3].ts"),
    ]


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [
        ({"offset_s": 3600}, "future_timestamp", "ts"),
        ({"offset_s": -90000}, "stale_timestamp", "ts"),
    ],
)
def test_single_sample_with_a_bad_time_is_rejected_whole(
    fields: dict[str, Any], reason: str, field: str
) -> None:
    v = run(single(temps_c={"t-front-air": 3.0}, **fields))
    assert v.samples == []
    assert [(e.reason, e.field) for e in v.rejected] == [(reason, field)]


def test_single_sample_keeps_its_registered_probes() -> None:
    v = run(single(temps_c={"t-front-air": 3.0, "nope": 1.0}))
    assert [s.temps_c for s in v.samples] == [{"t-front-air": 3.0}]
    assert [(e.reason, e.field) for e in v.rejected] == [("unknown_sensor", "temps_c.nope")]


def test_every_sample_bad_leaves_nothing() -> None:
    v = run(batch([sample(1000, 1), sample(2000, 2)]))
    assert v.samples == [] and [e.field for e in v.rejected] == ["samples[0].ts", "samples[1].ts"]


def test_second_device_of_an_asset() -> None:
    v = run(single(device_id="gw-2", temps_c={"s-a": 5.0}), topic_device="gw-2")
    assert v.asset.id == "store-1" and len(v.samples) == 1

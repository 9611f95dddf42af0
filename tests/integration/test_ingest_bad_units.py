"""Issue 8, item 3 on real mosquitto and influxd: one bad value must not drop a backlog.

A 5,000-sample backlog (QoS 1, ~750 KB) with bad units in the middle goes through the ingest
service: every other sample and value is in InfluxDB, the dead letters name each bad unit, and
the full payload (not a 64 KiB prefix) is recoverable byte for byte from the spool.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from coldchain.contract import device_topic
from deploy.launcher import Services
from ingest.service import IngestService
from ingest.spool import Spool
from simulators.loadgen import LoadPublisher, make_fleet
from tests.harness import spine_settings, stored_points, wait_for

pytestmark = pytest.mark.integration

DEVICE, ASSET = "load-dev-0000", "load-truck-0000"
N = 5000


def _iso(ms: int) -> str:
    secs, rest = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rest:03d}Z"


def _backlog(start_ms: int) -> tuple[dict[str, Any], dict[tuple[str, int], float]]:
    samples = []
    readings: dict[tuple[str, int], float] = {}
    for i in range(N):
        ts = start_ms + i * 10_000
        air, prod = round(-19.0 + (i % 50) / 100, 2), round(-18.0 - (i % 30) / 100, 2)
        samples.append(
            {
                "ts": _iso(ts),
                "seq": i,
                "temps_c": {"c1-air": air, "c1-prod": prod},
                "position": {"lat": 23.5 + i / 1e5, "lon": 116.3, "speed_kmh": 60.0},
            }
        )
        readings[("c1-air", ts)] = air
        readings[("c1-prod", ts)] = prod
    return {"v": 1, "device_id": DEVICE, "samples": samples}, readings


def _count(services: Services, db: str, query: str) -> int:
    res = services.influxd.query(query, db)
    series = res["results"][0].get("series", [])  # type: ignore[index]
    return int(series[0]["values"][0][1]) if series else 0


def test_one_bad_value_costs_only_its_unit_in_a_5000_sample_backlog(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    fleet = make_fleet(1)
    settings = spine_settings(services, unique_name, tmp_path)
    start_ms = (int(time.time()) - 2 * 86_400) * 1000
    backlog, readings = _backlog(start_ms)
    samples = backlog["samples"]

    def ts(i: int) -> int:
        return start_ms + i * 10_000

    # The bad units, and what each must cost.
    samples[1000]["temps_c"]["c1-air"] = -127.0  # a disconnected DS18B20: that value
    del readings[("c1-air", ts(1000))]
    samples[2000]["temps_c"]["c1-prod"] = "__NAN__"  # a NaN literal: that value
    del readings[("c1-prod", ts(2000))]
    samples[2500]["position"]["lat"] = 123.0  # a bad lat: the position, not the temperatures
    samples[3000]["ts"] = samples[3000]["ts"].rstrip("Z")  # a naive ts: that sample
    del readings[("c1-air", ts(3000))], readings[("c1-prod", ts(3000))]
    samples[3500]["temps_c"]["c1-air"] = 400.0
    del readings[("c1-air", ts(3500))]
    samples[4000]["temps_c"]["c1-air"] = "__DUP__"  # "c1-air": -19.0, "c1-air": 99.0
    del readings[("c1-air", ts(4000))]
    samples[4500]["temps_c"]["c1-prod"] = "__HUGE__"  # 10^400 written as an integer
    del readings[("c1-prod", ts(4500))]
    payload = (
        json.dumps(backlog)
        .replace('"__NAN__"', "NaN")
        .replace('"c1-air": "__DUP__"', '"c1-air": -19.0, "c1-air": 99.0')
        .replace('"__HUGE__"', "1" + "0" * 400)
        .encode()
    )
    assert len(payload) > 10 * 65536  # far beyond what the old store kept

    # A single-sample message with one bad probe keeps its good probe and its position.
    single_ts = ts(N) + 10_000
    single = {
        "v": 1,
        "device_id": DEVICE,
        "ts": _iso(single_ts),
        "seq": N,
        "temps_c": {"c1-air": 400.0, "c1-prod": -18.2},
        "position": {"lat": 24.0, "lon": 116.0, "speed_kmh": 0.0},
    }
    readings[("c1-prod", single_ts)] = -18.2
    single_payload = json.dumps(single).encode()

    service = IngestService(settings, fleet)
    service.start()
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    try:
        pub.publish(device_topic(DEVICE), payload)
        pub.publish(device_topic(DEVICE), single_payload)
        assert pub.flush(60)
        assert wait_for(lambda: service.metrics.received_messages >= 2, 60)
        assert service.wait_drained(120)
        letters = service.dead_letters()
    finally:
        pub.close()
        service.stop()

    db = settings.influx.database
    assert stored_points(services, db, ASSET) == readings  # every other value, exactly
    positions = _count(services, db, 'SELECT count("lat") FROM "position"')
    assert positions == N - 2 + 1  # less sample 2500's position and sample 3000; plus single
    devices = _count(services, db, 'SELECT count("seq") FROM "device"')
    assert devices == 2  # one device line per message

    assert [(d["reason"], d["field"], d["device_id"]) for d in letters] == [
        ("out_of_range", "samples[1000].temps_c.c1-air", DEVICE),
        ("not_finite", "samples[2000].temps_c.c1-prod", DEVICE),
        ("out_of_range", "samples[2500].position.lat", DEVICE),
        ("naive_timestamp", "samples[3000].ts", DEVICE),
        ("out_of_range", "samples[3500].temps_c.c1-air", DEVICE),
        ("duplicate_key", "samples[4000].temps_c.c1-air", DEVICE),
        ("number_too_large", "samples[4500].temps_c.c1-prod", DEVICE),
        ("out_of_range", "temps_c.c1-air", DEVICE),
    ]
    assert letters[0]["value"] == "-127.0" and letters[5]["value"] == "[-19.0, 99.0]"

    # Every rejected byte is recoverable: one stored payload per message, whole.
    backlog_ids = {d["payload_id"] for d in letters[:7]}
    assert len(backlog_ids) == 1 and letters[7]["payload_id"] not in backlog_ids
    with closing(Spool(settings.spool.path)) as spool:
        stored = spool.dead_letter_payload(int(str(letters[0]["payload_id"])))
        assert stored == payload
        assert spool.dead_letter_payload(int(str(letters[7]["payload_id"]))) == single_payload
    assert letters[0]["payload_size"] == len(payload)
    assert letters[0]["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert service.stats()["dead_letters"] == {
        "out_of_range": 4,
        "not_finite": 1,
        "naive_timestamp": 1,
        "duplicate_key": 1,
        "number_too_large": 1,
    }


def _run(
    services: Services, unique_name: str, tmp_path: Path, payloads: list[bytes]
) -> list[dict[str, object]]:
    settings = spine_settings(services, unique_name, tmp_path)
    service = IngestService(settings, make_fleet(1))
    service.start()
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    try:
        for p in payloads:
            pub.publish(device_topic(DEVICE), p)
        assert pub.flush(60)
        assert wait_for(lambda: service.metrics.received_messages >= len(payloads), 60)
        assert service.wait_drained(60)
        return service.dead_letters()
    finally:
        pub.close()
        service.stop()


def test_rejection_reasons_name_what_is_wrong(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    """Issue 8, item 8: a leap second, non-ASCII digits, 10^400 written as an integer, a UTF-8
    BOM and UTF-16 each get the reason that names them (not out_of_range, not_finite,
    malformed_json)."""
    now_ms = int(time.time()) * 1000
    good = {
        "v": 1,
        "device_id": DEVICE,
        "ts": _iso(now_ms),
        "seq": 1,
        "temps_c": {"c1-air": -18.5, "c1-prod": -18.0},
    }
    text = json.dumps(good)
    cases = [
        (text.replace(_iso(now_ms), "2016-12-31T23:59:60Z").encode(), "leap_second", "ts"),
        (
            text.replace(_iso(now_ms)[:4], "\u0662\u0660\u0662\u0666").encode(),
            "invalid_timestamp",
            "ts",
        ),
        (text.replace("-18.5", "1" + "0" * 400).encode(), "number_too_large", "temps_c.c1-air"),
        (b"\xef\xbb\xbf" + text.encode(), "bad_encoding", ""),
        (text.encode("utf-16"), "bad_encoding", ""),
        (text.encode("utf-32-be"), "bad_encoding", ""),
    ]
    letters = _run(services, unique_name, tmp_path, [c[0] for c in cases])
    assert [(d["reason"], d["field"]) for d in letters] == [(c[1], c[2]) for c in cases]
    assert [d["value"] for d in letters[3:]] == [
        "'UTF-8 with byte order mark'",
        "'UTF-16LE'",
        "'UTF-32BE'",
    ]
    assert "ASCII" in str(letters[1]["detail"]) and "leap second" in str(letters[0]["detail"])


def test_duplicate_keys_are_rejected_not_last_one_wins(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    """Issue 8, item 7: ``"c1-air":-18.5,"c1-air":99.0`` stored 99. Now neither is stored, the
    letter keeps both, and the rest of the message lands."""
    ts_ms = int(time.time()) * 1000
    raw = (
        f'{{"v":1,"device_id":"{DEVICE}","ts":"{_iso(ts_ms)}","seq":7,'
        '"temps_c":{"c1-air":-18.5,"c1-prod":-18.0,"c1-air":99.0}}'
    ).encode()
    letters = _run(services, unique_name, tmp_path, [raw])
    assert [(d["reason"], d["field"], d["value"]) for d in letters] == [
        ("duplicate_key", "temps_c.c1-air", "[-18.5, 99.0]")
    ]
    assert stored_points(services, unique_name, ASSET) == {("c1-prod", ts_ms): -18.0}

"""The InfluxDB write stage against a real influxd: accepted, rejected, unreachable, bisected."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldchain.exceptions import StoreError, WriteRejected
from coldchain.settings import InfluxSettings
from deploy.launcher import Services, free_port
from ingest.spool import Spool, SpooledMessage
from ingest.write import SpoolDrainer
from timeseries.client import InfluxClient

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000


def _count(services: Services, db: str) -> int:
    res = services.influxd.query('SELECT count("temp_c") FROM "temperature"', db)
    series = res["results"][0].get("series", [])  # type: ignore[index]
    return int(series[0]["values"][0][1]) if series else 0


@pytest.mark.parametrize("gzip", [True, False])
def test_write_creates_database_and_points_are_idempotent(
    services: Services, unique_name: str, gzip: bool
) -> None:
    writer = InfluxClient(InfluxSettings(url=services.influxd.url, database=unique_name, gzip=gzip))
    body = "\n".join(
        f"temperature,asset=a1,sensor=s{i % 3} temp_c={i / 10} {T0 + i * 1000}" for i in range(300)
    ).encode()
    writer.create_database()
    writer.write(body)
    writer.write(body)  # at-least-once delivery: the second write must not add points
    writer.close()
    assert _count(services, unique_name) == 300


def test_bad_line_is_rejected_for_good(services: Services, unique_name: str) -> None:
    writer = InfluxClient(InfluxSettings(url=services.influxd.url, database=unique_name))
    writer.create_database()
    with pytest.raises(WriteRejected) as info:
        writer.write(b"temperature,asset=a1 temp_c= 1")
    assert info.value.status == 400
    writer.close()


def test_unreachable_influx_is_a_transient_store_error() -> None:
    writer = InfluxClient(
        InfluxSettings(url=f"http://127.0.0.1:{free_port()}", database="x", timeout_s=1.0)
    )
    with pytest.raises(StoreError) as info:
        writer.write(b"m f=1 1")
    assert not isinstance(info.value, WriteRejected)
    assert "unreachable" in str(info.value)


def test_drainer_bisects_to_the_bad_row_and_writes_the_rest(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    settings = InfluxSettings(url=services.influxd.url, database=unique_name, batch_max_points=50)
    spool = Spool(tmp_path / "spool.sqlite3")
    rows = [
        SpooledMessage(
            T0, "d1", [f"temperature,asset=a1,sensor=s1 temp_c={i} {T0 + i * 1000}" for i in (k,)]
        )
        for k in range(40)
    ]
    # A field-type conflict InfluxDB refuses (temp_c was a float; now a string).
    rows[17] = SpooledMessage(T0, "d1", [f'temperature,asset=a1,sensor=s1 temp_c="x" {T0 + 1}'])
    spool.append(rows, [])
    writer = InfluxClient(settings)
    writer.create_database()
    written: list[tuple[int, int]] = []
    drainer = SpoolDrainer(spool, writer, settings, lambda m, p: written.append((m, p)))
    while drainer.drain_once():
        pass
    assert spool.depth() == (0, 0)
    assert _count(services, unique_name) == 39
    letters = spool.dead_letters()
    assert [dl["reason"] for dl in letters] == ["influx_rejected"]
    assert "field type conflict" in str(letters[0]["detail"])
    assert sum(m for m, _ in written) == 40
    writer.close()
    spool.close()


def test_query_returns_series_with_tags_and_ms_times(services: Services, unique_name: str) -> None:
    client = InfluxClient(InfluxSettings(url=services.influxd.url, database=unique_name))
    client.create_database()
    client.write(
        b"temperature,asset=a1,sensor=s1 temp_c=-18.5 1790000000000\n"
        b"temperature,asset=a2,sensor=s1 temp_c=3.25 1790000001000"
    )
    series = client.query('SELECT "temp_c" FROM "temperature" GROUP BY "asset"')
    assert [(s.tags["asset"], s.records()) for s in series] == [
        ("a1", [{"time": 1790000000000, "temp_c": -18.5}]),
        ("a2", [{"time": 1790000001000, "temp_c": 3.25}]),
    ]
    with pytest.raises(StoreError, match="error parsing query"):
        client.query("SELECT FROM WHERE")
    client.close()

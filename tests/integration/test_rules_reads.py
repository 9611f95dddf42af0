"""What a rules recompute reads back from a real influxd: the GNSS fix of each position (no
fix = unknown speed, docs/rules.md section 1) and the clock jumps written live (4.6, 4.10)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from coldchain.contract import PointEncoder, Position, Sample
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from coldchain.rules import observations_from_sample
from coldchain.settings import InfluxSettings
from deploy.launcher import Services
from ingest.rules_io import clock_line
from timeseries.client import InfluxClient
from timeseries.reads import read_clock_jumps, read_samples

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000
TRUCK = Asset(
    id="truck-1",
    kind="vehicle",
    devices=("dev-1",),
    compartments=(Compartment(id="main", profile="chilled", sensors=(SensorSpec(id="p1"),)),),
)


def _sample(minute: int, position: Position) -> Sample:
    ts = datetime.fromtimestamp((T0 + minute * 60_000) / 1000, tz=UTC)
    return Sample(ts=ts, seq=minute, temps_c={"p1": 3.0}, position=position)


def test_a_recompute_reads_the_fix_and_the_clock_jumps(
    services: Services, unique_name: str
) -> None:
    client = InfluxClient(InfluxSettings(url=services.influxd.url, database=unique_name))
    samples = [
        _sample(0, Position(lat=31.0, lon=121.0, speed_kmh=0.0)),
        _sample(1, Position(fix="none", speed_kmh=0.0)),
        _sample(2, Position(fix="none")),
    ]
    lines = PointEncoder(Fleet([TRUCK])).encode("dev-1", TRUCK, samples, T0 + 200_000)
    lines.append(clock_line("truck-1", "dev-1", T0 + 120_000, 600_000, -2_000))
    try:
        client.create_database()
        client.write("\n".join(lines).encode())
        back = read_samples(client, "truck-1", T0, T0 + 300_000)
        jumps = read_clock_jumps(client, "truck-1", T0, T0 + 300_000)
        assert read_clock_jumps(client, "truck-1", T0, T0 + 60_000) == []
    finally:
        client.close()
    observed = [observations_from_sample(TRUCK, s)["main"] for s in back]
    assert [(o.stationary, o.nofix) for o in observed] == [
        (True, False),
        (None, True),
        (None, True),
    ]
    assert jumps == [(T0 + 120_000, 600_000)]

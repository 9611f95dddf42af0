"""A rules worker reloads the fleet file as ingest does (docs/operations.md, "Onboarding without
restarts"), on the launcher's mosquitto: forwarded items (ingest.forward's wire format) of an
asset added to the file are evaluated, not refused, also before the worker's next poll of the
file (an ingest process may have reloaded it first); a file that does not check is refused and
the fleet in force stays.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from coldchain.contract import Sample
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from coldchain.rules import partition_of, rules_topic
from coldchain.settings import RulesSettings
from deploy.launcher import Services
from ingest.forward import encode_forwarded
from ingest.rules_io import Accepted
from ingest.rules_worker import RulesWorker
from registry import open_registry
from tests.e2e.faults_support.probes import discard_session
from tests.harness import spine_settings, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 2
OLD, NEW = "truck-b", "van-1"  # partitions 0 and 1 of 2
MINUTES = 33  # 6 degC from minute 10: the chilled range excursion opens at minute 30


def _asset(asset_id: str, profile: str = "chilled") -> Asset:
    sensors = (SensorSpec(id="main-air", probe="air"), SensorSpec(id="main-prod"))
    return Asset(
        id=asset_id,
        kind="vehicle",
        devices=(f"{asset_id}-tcu",),
        compartments=(Compartment(id="main", profile=profile, sensors=sensors),),
    )


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")  # renamed into place, as docs/operations.md asks
    tmp.write_text(text)
    tmp.replace(path)


def _items(asset_id: str, start: datetime) -> list[bytes]:
    """A minute apart, received now: in range, then out of range from minute 10."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    out = []
    for i in range(MINUTES):
        temp = (6.0 if i >= 10 else 3.0) + 0.1 * (i % 3)
        sample = Sample(ts=start + timedelta(minutes=i), seq=i, temps_c={"main-prod": temp})
        item = Accepted(asset_id, [sample], i + 1, f"{asset_id}-tcu", now_ms)
        out.append(encode_forwarded(item))
    return out


def _publish(port: int, client_id: str, topic: str, payloads: list[bytes]) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    connected = threading.Event()
    c.on_connect = lambda *_: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert connected.wait(10)
        for p in payloads:
            c.publish(topic, p, qos=1).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def test_an_asset_added_to_the_fleet_file_is_evaluated_by_the_worker(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    assert [partition_of(a, PARTITIONS) for a in (OLD, NEW)] == [0, 1]
    settings = spine_settings(services, unique_name, tmp_path)
    _write(settings.fleet_path, Fleet([_asset(OLD)]).to_yaml())
    # Polled once an hour: only the catch-up on an unknown asset, or SIGHUP, reloads here.
    settings = settings.model_copy(
        update={
            "fleet_reload_s": 3600.0,
            "rules": RulesSettings(partitions=PARTITIONS, reorder_s=0.2, checkpoint_s=0.2),
        }
    )
    prefix = f"{unique_name}-rules"[:50]
    worker = RulesWorker(settings, Fleet([_asset(OLD)]), [0, 1], client_id_prefix=prefix)
    worker.start(wait_connected_s=30)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=MINUTES)
    port = services.mosquitto.port
    try:
        # A file that does not check (unknown profile): refused, the fleet in force stays.
        _write(settings.fleet_path, Fleet([_asset(OLD), _asset(NEW, "nope")]).to_yaml())
        worker.reload_fleet()
        assert wait_for(lambda: worker.stats()["fleet_rejected"] == 1, 30), worker.stats()
        assert not worker.metrics.health.ok
        _publish(port, f"{unique_name}-fwd0", rules_topic(1), _items(NEW, start)[:1])
        assert wait_for(lambda: worker.stats()["rules_partition_1_refused"] == 1, 30)

        # Added to the file, then its items come before the worker's next poll.
        _write(settings.fleet_path, Fleet([_asset(OLD), _asset(NEW)]).to_yaml())
        _publish(port, f"{unique_name}-fwd1", rules_topic(1), _items(NEW, start))

        def opened() -> bool:
            with open_registry(settings.registry_url) as reg:
                found = [r.excursion for r in reg.find_excursions(asset_id=NEW)]
            return [(e.rule, e.status) for e in found if e.rule == "range"] == [("range", "open")]

        assert wait_for(opened, 60, 0.2), worker.stats()
        s = worker.stats()
        assert s["rules_partition_1_refused"] == 1  # only the one sent under the bad file
        assert s["rules_partition_1_received"] == MINUTES + 1
        assert s["fleet_reloads"] == 1 and worker.metrics.health.ok
        assert wait_for(lambda: worker.stats()["rules_partition_1_acked"] == MINUTES, 30)
    finally:
        worker.stop()
        for k in range(PARTITIONS):
            discard_session(port, f"{prefix}-{k}")

"""Rules workers on production's broker (client ids bound to usernames): mosquitto from deploy/
(launcher) with the password file and ACL written by ``coldchain broker users
--rules-partitions 2`` from the demo fleet.

A worker owning partitions 0 and 1 with ``rules.partition_users`` logs each partition in as
``coldchain-rules-<k>``: each keeps its own session (connected once, never taken over) and
evaluates the items the ingest user forwards to it (wire items, then a real forward-mode
IngestService fed by devices). The ACL keeps partitions and devices apart.
Connections and takeovers are read from the broker's own log (``log_type notice``).

"Never arrives" is checked with a later message on a path that does arrive: mosquitto routes
a connection's messages in order, and the earlier publisher's PUBACK came first.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from cli.main import main as coldchain
from coldchain.contract import Sample
from coldchain.fleet import load_fleet
from coldchain.rules import partition_of, rules_client_id, rules_topic
from coldchain.settings import RulesSettings, Settings
from deploy.broker_users import RULES_SECRET_KEY
from deploy.launcher import Mosquitto, Services
from ingest.forward import encode_forwarded
from ingest.rules_io import Accepted
from ingest.rules_worker import RulesWorker
from ingest.service import IngestService
from tests.harness import spine_settings, wait_for
from tests.integration.test_broker_isolation import (
    DEV_A,
    DEV_B,
    INGEST,
    Broker,
    Client,
    telemetry,
)

pytestmark = pytest.mark.integration

FLEET = Path(__file__).resolve().parents[2] / "fleet" / "demo.yaml"
PARTITIONS = 2
# Chilled compartments (2-8 degC) of the demo fleet, one in each of the 2 partitions.
ASSETS = {0: "truck-nt-01", 1: "truck-st-01"}
PER_PARTITION = 20


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    root = tmp_path_factory.mktemp("broker")
    conf = root / "config"
    conf.mkdir()
    args = ["broker", "users", "--fleet", str(FLEET), "--passwd", str(conf / "passwd")]
    args += ["--acl", str(conf / "acl"), "--secrets", str(conf / "secrets.yaml")]
    assert coldchain([*args, "--rules-partitions", str(PARTITIONS)]) == 0
    m = Mosquitto(root / "mosquitto", password_file=conf / "passwd", acl_file=conf / "acl")
    m.start()
    try:
        # Client ids are bound to usernames on this broker: the production configuration.
        assert "use_username_as_clientid true" in m.config_path.read_text()
        secrets = yaml.safe_load((conf / "secrets.yaml").read_text())
        yield Broker(m, secrets, tls=None)  # type: ignore[arg-type]  # no TLS listener here
    finally:
        m.cleanup()


def _broker_log(broker: Broker) -> str:
    return (broker.mosquitto.data_dir / "mosquitto.log").read_text(errors="replace")


def _connections(log: str, client_id: str) -> int:
    """How many connections the broker accepted for ``client_id`` (mosquitto 2's notice)."""
    return len(re.findall(rf"New client connected from \S+ as {re.escape(client_id)} ", log))


def _takeovers(log: str, client_id: str) -> int:
    return log.count(f"Client {client_id} already connected, closing old connection.")


def _items(asset_id: str, start: datetime) -> list[bytes]:
    """``PER_PARTITION`` forwarded messages of in-band chilled readings (5 degC), a minute
    apart, as an ingest process forwards them (ingest.forward's wire format)."""
    device = f"{asset_id}-tcu"
    out = []
    for i in range(PER_PARTITION):
        ts = start + timedelta(minutes=i)
        sample = Sample(ts=ts, seq=i, temps_c={"main-air": 5.0, "main-prod": 5.0})
        item = Accepted(asset_id, [sample], i + 1, device, int(ts.timestamp() * 1000))
        out.append(encode_forwarded(item))
    return out


def _worker_settings(
    services: Services, broker: Broker, name: str, root: Path, *, partition_users: bool
) -> Settings:
    base = spine_settings(services, name, root)
    shutil.copyfile(FLEET, base.fleet_path)
    mqtt = base.mqtt.model_copy(
        update={
            "port": broker.mosquitto.port,
            # Without partition users every partition logs in as the same user.
            "username": None if partition_users else rules_client_id(0),
            "password": broker.secrets[RULES_SECRET_KEY],
            "probe_interval_s": 0.5,
        }
    )
    rules = RulesSettings(partitions=PARTITIONS, partition_users=partition_users)
    return base.model_copy(update={"mqtt": mqtt, "rules": rules})


def test_partition_users_keep_one_session_each_and_get_their_forwarded_items(
    broker: Broker, services: Services, unique_name: str, tmp_path: Path
) -> None:
    assert {k: partition_of(a, PARTITIONS) for k, a in ASSETS.items()} == {0: 0, 1: 1}
    settings = _worker_settings(services, broker, unique_name, tmp_path, partition_users=True)
    worker = RulesWorker(settings, load_fleet(FLEET), [0, 1])
    before = _broker_log(broker)
    ingest = Client(broker, INGEST, client_id=INGEST)
    worker.start(wait_connected_s=30)
    try:
        assert ingest.connected()
        start = datetime.now(UTC) - timedelta(minutes=PER_PARTITION)
        for k, asset in ASSETS.items():
            assert all(ingest.publish(rules_topic(k), p) for p in _items(asset, start))

        def done() -> bool:
            s = worker.stats()
            return all(
                s[f"rules_partition_{k}_acked"] == PER_PARTITION
                and s[f"rules_partition_{k}_mqtt_probes_returned"] >= 2  # type: ignore[operator]
                for k in ASSETS
            )

        # Each partition got its own items, evaluated and checkpointed them (then acked), and
        # its liveness probes come back (the ACL lets each partition user probe itself).
        assert wait_for(done, 60), worker.stats()
        s = worker.stats()
        assert [s[f"rules_partition_{k}_received"] for k in ASSETS] == [PER_PARTITION] * 2
        assert [s[f"rules_partition_{k}_refused"] for k in ASSETS] == [0, 0]
        assert worker.metrics.health.ok, worker.metrics.health.problems()
        # One more round after several probe intervals: still the first connections.
        for k, asset in ASSETS.items():
            assert ingest.publish(rules_topic(k), _items(asset, start + timedelta(hours=1))[0])
        assert wait_for(
            lambda: all(
                worker.stats()[f"rules_partition_{k}_acked"] == PER_PARTITION + 1 for k in ASSETS
            ),
            60,
        ), worker.stats()
        log = _broker_log(broker)[len(before) :]  # this test's part of the broker's log
        for k in ASSETS:
            assert _connections(log, rules_client_id(k)) == 1, log
            assert _takeovers(log, rules_client_id(k)) == 0, log
        assert _connections(log, INGEST) == 1 and _takeovers(log, INGEST) == 0, log
    finally:
        worker.stop()
        ingest.close()


def test_a_forward_mode_ingest_feeds_the_partition_users(
    broker: Broker, services: Services, unique_name: str, tmp_path: Path
) -> None:
    """The real path: devices publish telemetry, an IngestService (rules.mode=forward, its own
    broker user: write-only on the rules topics) stores and forwards it, and the worker's two
    partition users each get their asset's readings."""
    fleet = load_fleet(FLEET)
    devices = {0: DEV_B, 1: DEV_A}  # truck-gs-01 is in partition 0, truck-jy-01 in 1
    assert [partition_of(a, PARTITIONS) for a in ("truck-gs-01", "truck-jy-01")] == [0, 1]
    assert {k: d.removesuffix("-tcu") for k, d in devices.items()} == {
        0: "truck-gs-01",
        1: "truck-jy-01",
    }
    worker_settings = _worker_settings(
        services, broker, unique_name, tmp_path, partition_users=True
    )
    ingest_mqtt = worker_settings.mqtt.model_copy(
        update={
            "username": INGEST,
            "password": broker.secrets[INGEST],
            "client_id": INGEST,
            "share_group": "",
        }
    )
    ingest_rules = worker_settings.rules.model_copy(update={"mode": "forward"})
    ingest_settings = worker_settings.model_copy(
        update={"mqtt": ingest_mqtt, "rules": ingest_rules}
    )
    before = _broker_log(broker)
    worker = RulesWorker(worker_settings, fleet, [0, 1])
    service = IngestService(ingest_settings, fleet)
    worker.start(wait_connected_s=30)
    service.start(wait_connected_s=30)
    senders = {k: Client(broker, d) for k, d in devices.items()}
    now = datetime.now(UTC)
    try:
        for k, device in devices.items():
            assert senders[k].connected()
            for seq in range(3):
                ts = now - timedelta(minutes=3 - seq)
                body = {"v": 1, "device_id": device, "ts": ts.isoformat(), "seq": seq}
                body["temps_c"] = {"front-air": -18.0, "front-prod": -18.5}
                assert senders[k].publish(telemetry(device), json.dumps(body).encode())
        assert wait_for(
            lambda: all(worker.stats()[f"rules_partition_{k}_acked"] == 3 for k in devices), 60
        ), (worker.stats(), service.metrics.snapshot())
        assert [worker.stats()[f"rules_partition_{k}_refused"] for k in devices] == [0, 0]
        assert service.dead_letters() == []
        log = _broker_log(broker)[len(before) :]
        for name in (rules_client_id(0), rules_client_id(1), INGEST):
            assert _connections(log, name) == 1 and _takeovers(log, name) == 0, log
    finally:
        for c in senders.values():
            c.close()
        service.stop()
        worker.stop()


def test_without_partition_users_the_partitions_take_each_others_session(
    broker: Broker, services: Services, unique_name: str, tmp_path: Path
) -> None:
    """The failure partition users fix, shown on the same broker: one user for both
    partitions, so both connections get its name as client id and keep closing each other."""
    name = f"{unique_name}-shared"
    settings = _worker_settings(services, broker, name, tmp_path, partition_users=False)
    worker = RulesWorker(settings, load_fleet(FLEET), [0, 1])
    worker.start(wait_connected_s=1)
    try:
        shared = rules_client_id(0)
        assert wait_for(lambda: _takeovers(_broker_log(broker), shared) >= 3, 60)
    finally:
        worker.stop()


def test_a_partition_user_reads_only_its_partition_and_devices_cannot_forward(
    broker: Broker,
) -> None:
    rules0 = Client(broker, rules_client_id(0), password=broker.secrets[RULES_SECRET_KEY])
    rules1 = Client(broker, rules_client_id(1), password=broker.secrets[RULES_SECRET_KEY])
    ingest = Client(broker, INGEST, client_id=INGEST)
    device = Client(broker, DEV_A)
    try:
        assert all(c.connected() for c in (rules0, rules1, ingest, device))
        rules0.subscribe(rules_topic(0), rules_topic(1), "coldchain/v1/rules/#")
        rules1.subscribe(rules_topic(1))
        # The ingest user forwards to both partitions: only partition 1's user gets item 1.
        assert ingest.publish(rules_topic(1), b"for-1")
        assert ingest.publish(rules_topic(0), b"for-0")
        assert wait_for(lambda: b"for-0" in rules0.payloads(), 30)
        assert wait_for(lambda: b"for-1" in rules1.payloads(), 30)
        assert rules0.payloads() == [b"for-0"]
        # A device cannot forward (forge samples) onto either partition's topic.
        device.publish(rules_topic(0), b"forged-0")
        device.publish(rules_topic(1), b"forged-1")
        assert device.publish(telemetry(DEV_A), b"own")  # PUBACK: the forgeries were routed
        assert ingest.publish(rules_topic(0), b"later-0")
        assert ingest.publish(rules_topic(1), b"later-1")
        assert wait_for(lambda: b"later-0" in rules0.payloads(), 30)
        assert wait_for(lambda: b"later-1" in rules1.payloads(), 30)
        assert rules0.payloads() == [b"for-0", b"later-0"]
        assert rules1.payloads() == [b"for-1", b"later-1"]
        # Nor publish as a partition user: a partition user cannot forward either.
        assert rules1.publish(rules_topic(0), b"from-1")
        assert ingest.publish(rules_topic(0), b"last-0")
        assert wait_for(lambda: b"last-0" in rules0.payloads(), 30)
        assert b"from-1" not in rules0.payloads()
    finally:
        for c in (rules0, rules1, ingest, device):
            c.close()

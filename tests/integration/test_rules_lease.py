"""Fencing leases of the rules partitions (ingest/lease.py) with real ``RulesWorker`` instances
on the launcher's mosquitto and influxd, with the registry on SQLite and on PostgreSQL.

Two workers for the same partition: only the lease holder evaluates, checkpoints and connects
its MQTT session (the broker never sees the session taken over); the other waits with
``partition_leased_elsewhere`` naming the holder, and takes over once the holder stopped
without releasing (a death) and its lease expired. A worker whose lease was taken from it
behind its back writes nothing more, stops the partition and reports exit status 1, with
which ``coldchain rules`` exits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import update

from coldchain.contract import Sample
from coldchain.fleet import load_fleet
from coldchain.rules import partition_of, rules_client_id, rules_topic
from coldchain.settings import RulesSettings, Settings
from deploy.launcher import Services
from ingest.forward import encode_forwarded
from ingest.lease import PARTITION_LEASED_ELSEWHERE
from ingest.rules_io import Accepted
from ingest.rules_worker import PARTITION_LEASE_LOST, RulesWorker, partition_checkpoint_key
from registry import Registry, open_registry
from registry.models import LeaseRow
from registry.outbox import Fanout, OutboxMessage
from tests.harness import settings_env, spine_settings, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "fleet" / "demo.yaml"
PARTITIONS = 2
ASSET = "truck-nt-01"  # chilled (2-8 degC), in partition 0 of 2
LEASE = partition_checkpoint_key(0)
BATCH = 10


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(
    request: pytest.FixtureRequest, services: Services, unique_name: str, tmp_path: Path
) -> Settings:
    base = spine_settings(services, unique_name, tmp_path)
    shutil.copyfile(FLEET, base.fleet_path)
    update_: dict[str, object] = {
        "rules": RulesSettings(
            mode="forward", partitions=PARTITIONS, checkpoint_s=0.2, reorder_s=0.2, lease_ttl_s=5
        ),
        "mqtt": base.mqtt.model_copy(update={"probe_interval_s": 0.5}),
    }
    if request.param == "postgresql":
        update_["registry_url"] = request.getfixturevalue("pg_registry_url")
    return base.model_copy(update=update_)


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    with open_registry(settings.registry_url) as reg:
        yield reg


class _Publisher:
    """An ingest process's forwarding, by hand: QoS 1 items on partition 0's topic."""

    def __init__(self, port: int, client_id: str) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._seq = 0
        self._start = datetime.now(UTC) - timedelta(hours=2)

    def batch(self, n: int = BATCH, temp_c: float = 5.0) -> None:
        """``n`` chilled readings (in band at 5 degC) of ASSET, a minute apart, after the
        last."""
        for _ in range(n):
            self._seq += 1
            ts = self._start + timedelta(minutes=self._seq)
            temps = {"main-air": temp_c, "main-prod": temp_c}
            sample = Sample(ts=ts, seq=self._seq, temps_c=temps)
            rec = int(ts.timestamp() * 1000)
            item = Accepted(ASSET, [sample], self._seq, f"{ASSET}-tcu", rec)
            info = self.client.publish(rules_topic(0), encode_forwarded(item), qos=1)
            info.wait_for_publish(30)
            assert info.is_published()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _worker(settings: Settings, prefix: str, owner: str) -> RulesWorker:
    return RulesWorker(
        settings, load_fleet(settings.fleet_path), [0], client_id_prefix=prefix, lease_owner=owner
    )


def _stat(worker: RulesWorker, name: str) -> int:
    value = worker.stats()[name]
    assert isinstance(value, int), (name, value)
    return value


def _takeovers(services: Services, client_id: str) -> int:
    log = (services.mosquitto.data_dir / "mosquitto.log").read_text(errors="replace")
    return log.count(f"Client {client_id} already connected, closing old connection.")


def test_one_worker_evaluates_a_partition_and_the_other_takes_over_after_the_ttl(
    settings: Settings, registry: Registry, services: Services, unique_name: str
) -> None:
    assert partition_of(ASSET, PARTITIONS) == 0
    prefix = f"{unique_name}-rules"
    a = _worker(settings, prefix, "worker-a")
    b = _worker(settings, prefix, "worker-b")
    publisher = _Publisher(services.mosquitto.port, f"{unique_name}-ingest")
    try:
        a.start(wait_connected_s=30)
        b.start(wait_connected_s=0)
        assert (_stat(a, "rules_partition_0_active"), _stat(b, "rules_partition_0_active")) == (
            1,
            0,
        )
        lease = registry.get_lease(LEASE)
        assert lease is not None and (lease.owner, lease.token) == ("worker-a", 1)
        waiting = b.metrics.health.problems()
        assert "worker-a" in waiting[PARTITION_LEASED_ELSEWHERE], waiting

        publisher.batch()
        assert wait_for(lambda: _stat(a, "rules_partition_0_acked") == BATCH, 60), a.stats()
        # A's evaluation is checkpointed under its token; B saw and evaluated nothing.
        left_by_a = registry.load_checkpoint(LEASE)
        assert left_by_a is not None
        assert _stat(b, "rules_partition_0_received") == 0 and _stat(b, "rules_evaluated") == 0
        assert PARTITION_LEASED_ELSEWHERE in b.metrics.health.problems()

        # A dies: stopped without releasing its lease. What comes meanwhile waits in the
        # partition's session until B holds the lease (after the TTL) and connects.
        a.stop(release_leases=False)
        publisher.batch()
        assert wait_for(lambda: _stat(b, "rules_partition_0_acked") == BATCH, 60), b.stats()
        lease = registry.get_lease(LEASE)
        assert lease is not None and (lease.owner, lease.token) == ("worker-b", 2)
        assert PARTITION_LEASED_ELSEWHERE not in b.metrics.health.problems()
        assert _stat(b, "rules_partition_0_received") == BATCH  # only what A never acked
        assert _stat(a, "rules_partition_0_acked") == BATCH  # A did nothing more
        # B resumed from A's checkpoint and moved it on.
        assert registry.load_checkpoint(LEASE) != left_by_a
        # One connection at a time: the broker never had to take the session from anyone.
        assert _takeovers(services, rules_client_id(0, prefix)) == 0
    finally:
        publisher.close()
        a.stop()
        b.stop()
    # A clean stop releases the lease (B's), keeping its token for the next owner to pass.
    lease = registry.get_lease(LEASE)
    assert lease is not None and (lease.owner, lease.token) == (None, 2)
    assert a.exit_status() is None and b.exit_status() is None


def test_a_standby_worker_leaves_the_active_workers_alert_claims_alone(
    settings: Settings, registry: Registry, unique_name: str
) -> None:
    """A standby for the same partitions has the active worker's outbox owner name
    (``<prefix>-<partitions>``); a deliverer starting releases its name's claims as a dead
    incarnation's. So a standby must not deliver until it holds a lease, or it frees the
    active worker's in-flight alerts and they go out twice."""
    prefix = f"{unique_name}-rules"
    # The active worker, in another process: it holds the lease and has an alert in flight.
    assert registry.acquire_lease(LEASE, "worker-a", ttl_ms=600_000).held_by("worker-a")
    key = f"{unique_name}-exc:opened"
    registry.enqueue_alerts([OutboxMessage(key, '{"v": 1}')])
    entry = next(e for e in registry.unrouted_alerts(limit=1000) if e.key == key)
    assert registry.route_alert(entry.id, [Fanout("mqtt", 0)])
    claimed = registry.claim_alert_deliveries("mqtt", owner=f"{prefix}-0", lease_ms=600_000)
    assert [c.key for c in claimed] == [key]

    standby = _worker(settings, prefix, "worker-b")
    standby.start(wait_connected_s=0)
    try:
        assert "worker-a" in standby.metrics.health.problems()[PARTITION_LEASED_ELSEWHERE]
    finally:
        standby.stop(release_leases=False)  # joins every thread it started
    # Still worker-a's claim: nobody else can take it before its lease runs out.
    assert registry.claim_alert_deliveries("mqtt", owner="probe", lease_ms=1_000) == []
    assert standby.stats()["alerts_delivered"] == 0


def test_a_worker_whose_lease_was_taken_writes_nothing_more_and_exits_non_zero(
    settings: Settings, registry: Registry, services: Services, unique_name: str
) -> None:
    # Renewals far apart, so what meets the new token is the worker's next write.
    slow = settings.rules.model_copy(update={"lease_ttl_s": 600.0, "lease_renew_s": 300.0})
    a = _worker(settings.model_copy(update={"rules": slow}), f"{unique_name}-rules", "worker-a")
    publisher = _Publisher(services.mosquitto.port, f"{unique_name}-ingest")
    try:
        a.start(wait_connected_s=30)
        publisher.batch()
        assert wait_for(lambda: _stat(a, "rules_partition_0_acked") == BATCH, 60), a.stats()
        assert wait_for(a.idle, 60)
        before = registry.load_checkpoint(LEASE)
        # Worker A stalls past its expiry (as in a long pause) and worker "intruder" takes the
        # lease: its expiry is moved back by hand, then the lease is acquired as usual.
        with registry.engine.begin() as conn:
            conn.execute(update(LeaseRow).where(LeaseRow.name == LEASE).values(expires_ms=0))
        taken = registry.acquire_lease(LEASE, "intruder", ttl_ms=600_000)
        assert taken.held_by("intruder") and taken.token == 2

        publisher.batch(temp_c=15.0)  # A evaluates these: an excursion, refused with its state
        assert wait_for(lambda: a.exit_status() == 1, 60), a.stats()
        problems = a.metrics.health.problems()
        assert "intruder" in problems[PARTITION_LEASE_LOST], problems
        assert _stat(a, "rules_partition_0_active") == 0
        assert not a._part(0).source.connected.is_set()
        assert _stat(a, "rules_partition_0_acked") == BATCH  # nothing new acknowledged
        assert registry.load_checkpoint(LEASE) == before
        assert registry.find_excursions(asset_id=ASSET) == []
        assert registry.outbox_entries() == []
        a.stop()
        # A former owner releases nothing.
        lease = registry.get_lease(LEASE)
        assert lease is not None and (lease.owner, lease.token) == ("intruder", 2)

        # The intruder goes away cleanly; the next owner gets what A never acknowledged from
        # the broker and records the excursion A could not.
        assert registry.release_lease(taken.fence())
        c = _worker(settings, f"{unique_name}-rules", "worker-c")
        c.start(wait_connected_s=30)
        try:
            assert wait_for(lambda: _stat(c, "rules_partition_0_acked") == BATCH, 60), c.stats()
            assert wait_for(lambda: registry.find_excursions(asset_id=ASSET) != [], 60)
            assert registry.outbox_entries() != []
            lease = registry.get_lease(LEASE)
            assert lease is not None and (lease.owner, lease.token) == ("worker-c", 3)
        finally:
            c.stop()
    finally:
        publisher.close()
        a.stop()


# The command's wiring, not the registry: one backend is enough.
@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_coldchain_rules_exits_1_when_its_lease_is_taken(
    settings: Settings, registry: Registry, unique_name: str, tmp_path: Path
) -> None:
    """The command as a service manager runs it: after a takeover it stops and exits 1 (to be
    restarted as a standby), printing its counters."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLDCHAIN_")}
    env |= settings_env(settings) | {
        "COLDCHAIN_RULES__PARTITIONS": str(PARTITIONS),
        "COLDCHAIN_RULES__LEASE_TTL_S": "3",
        "COLDCHAIN_MQTT__PROBE_INTERVAL_S": "0.5",
    }
    cmd = [sys.executable, "-m", "cli.main", "rules", "--partitions", "0"]
    cmd += ["--client-id-prefix", f"{unique_name}-rules"]
    log = tmp_path / "rules.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
        try:

            def holds() -> bool:
                lease = registry.get_lease(LEASE)
                return lease is not None and (lease.owner or "").startswith(f"{unique_name}-")

            assert wait_for(holds, 60), log.read_text()
            with registry.engine.begin() as conn:
                conn.execute(update(LeaseRow).where(LeaseRow.name == LEASE).values(expires_ms=0))
            assert registry.acquire_lease(LEASE, "intruder", ttl_ms=600_000).token == 2
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == 1, log.read_text()
    stats = json.loads(out)
    assert stats["rules_lease_losses"] == 1 and stats["rules_partition_0_active"] == 0
    assert "partition_lease_lost" in log.read_text()
    lease = registry.get_lease(LEASE)
    assert lease is not None and lease.owner == "intruder"  # it released nothing

"""Scale-out keeps the rules right (issue 12 item 1): the demo scenario through three ingest
processes (one shared subscription, ``rules.mode=forward``) and two ``coldchain rules``
workers finds exactly the excursions one ingest process with in-process rules finds, and
queues one alert per (excursion, change); again with a worker SIGKILLed mid-run and restarted,
and with an ingest process SIGKILLed mid-run and restarted. The registry is the launcher's
PostgreSQL (each run its own database: tests/pg_databases.py); the registry suite covers SQLite.

Every process runs on one replay clock (``tests/e2e/scale_support.py``): silence and detection
are judged on the replay's time, as in ``coldchain demo``. The replay is the demo scenario's
hours 5h50m to 10h05m at 600x, 25.5 s of publishing per run: the coverage hole (6h-7h30m) and
its backlog (data gaps opened on silence, then recovered), the stuck probe (detected at 9h), the
wrong setpoint (its setpoint excursion opened at 8h and closed at 10h, range and hard-limit ones
opened), the custody scans of 6h33m-9h49m, and assets with excursions in both workers'
partitions. Faster, a process stalled for a moment on this shared 2-core machine (well under a
second) would already be silent for longer than the 10 min data-gap limit on the replay's clock,
in one run and not the other. The processes are forked by one ``Zygote`` per module, which has
imported what they need: a start costs milliseconds, not seconds of CPU.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from pprint import pformat
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from cli.demo import _register_shipments
from coldchain.rules import partition_of
from coldchain.settings import InfluxSettings, MqttSettings, Settings, SpoolSettings
from deploy.launcher import Services
from registry import open_registry
from simulators import Scenario, library_scenario
from simulators.device import SimMessage
from simulators.publish import replay_window, run_live
from tests.e2e.faults_support.probes import discard_session
from tests.e2e.scale_support import Proc, SharedWall, Zygote
from tests.harness import settings_env, subscribe_alerts, wait_for
from tests.pg_databases import PgDatabases

pytestmark = pytest.mark.e2e

SPEEDUP = 600.0
FROM_S = 5 * 3600 + 50 * 60
TO_S = 10 * 3600 + 5 * 60
# The kill comes with the first message of this scenario time: in the backlog's wake.
KILL_AT_S = 7 * 3600 + 45 * 60
SEED = 7
PARTITIONS = 4
OWNERS = {"rules-a": "0,1", "rules-b": "2,3"}
# Only used without heartbeats (none here): the workers' fallback reorder window and lag.
REORDER_S = 0.5
SILENCE_LAG_MS = int(0.6 * SPEEDUP * 1000)

ExcursionKey = tuple[str, str, str, int, int | None, str, bool]
CustodyKey = tuple[str, str, str, str | None, int]  # shipment, action, asset, compartment, ts


def _scenario() -> Scenario:
    return library_scenario("demo").model_copy(update={"duration_s": float(TO_S)})


@dataclass
class Outcome:
    excursions: Counter[ExcursionKey]
    outbox: Counter[str]  # idempotency key -> rows
    undelivered: list[str]
    received: Counter[str]  # idempotency key -> alerts the subscriber got
    custody: Counter[CustodyKey]  # scans recorded in the registry
    notes: dict[str, Any] = field(default_factory=dict)


class _Alerts:
    """Every alert published during the run, by idempotency key."""

    def __init__(self, port: int, name: str) -> None:
        self.keys: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._c = subscribe_alerts(port, f"alerts-{name}", self._on_message)

    def _on_message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.keys[json.loads(msg.payload)["key"]] += 1

    def close(self) -> Counter[str]:
        self._c.disconnect()
        self._c.loop_stop()
        with self._lock:
            return Counter(self.keys)


def _run(
    services: Services,
    zygote: Zygote,
    registry_url: str,
    root: Path,
    name: str,
    *,
    ingests: int,
    forward: bool,
    fault: str | None = None,
) -> Outcome:
    """One replay of the scenario on an empty migrated registry; ``fault``: "kill_worker" or
    "kill_ingest" at ``KILL_AT_S``."""
    root.mkdir(parents=True)
    scenario = _scenario()
    fleet = scenario.fleet()
    (root / "fleet.yaml").write_text(fleet.to_yaml())
    start, end = replay_window(scenario)
    replay_start = start + timedelta(seconds=FROM_S)
    base = Settings(
        fleet_path=root / "fleet.yaml",
        registry_url=registry_url,
        mqtt=MqttSettings(port=services.mosquitto.port, client_id="x", share_group=name),
        influx=InfluxSettings(url=services.influxd.url, database=name, retry_max_s=1.0),
        spool=SpoolSettings(path=root / "spool.sqlite3"),
    )
    with open_registry(base.registry_url) as reg:
        _register_shipments(reg, scenario, start)
    env = settings_env(base) | {
        "COLDCHAIN_RULES__MODE": "forward" if forward else "inprocess",
        "COLDCHAIN_RULES__PARTITIONS": str(PARTITIONS),
        "COLDCHAIN_RULES__CHECKPOINT_S": "0.5",
        "COLDCHAIN_RULES__REORDER_S": str(REORDER_S),
        # A SIGKILLed worker's partitions are taken over once its leases expire: the
        # restarted worker (a new lease owner) waits this long at most.
        "COLDCHAIN_RULES__LEASE_TTL_S": "5",
    }
    go = root / "go"
    wall = SharedWall(root / "wall.json")
    wall.start()
    clock = [
        f"--wall={wall.path}",
        f"--start-ms={int(replay_start.timestamp() * 1000)}",
        f"--end-ms={int(end.timestamp() * 1000)}",
        f"--speedup={SPEEDUP}",
        f"--go={go}",
    ]
    procs: dict[str, Proc] = {}
    for i in range(ingests):
        pname = f"ingest-{i}"
        penv = env | {
            "COLDCHAIN_MQTT__CLIENT_ID": f"{name}-{pname}",
            "COLDCHAIN_SPOOL__PATH": str(root / f"spool-{i}.sqlite3"),
        }
        procs[pname] = Proc(zygote, pname, "ingest", penv, clock, root)
    if forward:
        for wname, owned in OWNERS.items():
            procs[wname] = Proc(
                zygote,
                wname,
                "rules",
                env | {"COLDCHAIN_MQTT__CLIENT_ID": f"{name}-{wname}"},
                clock,
                root,
                f"--partitions={owned}",
                f"--client-id-prefix={name}-rules",
                f"--silence-lag-ms={SILENCE_LAG_MS}",
            )
    alerts = _Alerts(services.mosquitto.port, name)
    notes: dict[str, Any] = {}
    try:
        for p in procs.values():  # start in parallel, then wait for each
            p.launch()
        for p in procs.values():
            p.wait_ready()
        published = [0]
        victim = {"kill_worker": "rules-b", "kill_ingest": "ingest-1"}.get(fault or "")
        killer_done = threading.Event()

        def on_publish(msg: SimMessage) -> None:
            if published[0] == 0:
                tmp = go.with_suffix(".tmp")  # renamed into place: never read half written
                tmp.write_text(repr(wall()))
                tmp.replace(go)
            published[0] += 1
            if victim and msg.t_s >= KILL_AT_S and "kill" not in notes:
                notes["kill"] = msg.t_s
                threading.Thread(target=_kill_and_restart, daemon=True).start()

        def _kill_and_restart() -> None:
            # The replay (every process's clock and the publisher) pauses while the process is
            # down and until every process settled after its restart: its downtime must not
            # read as devices' silence, nor samples published meanwhile reach InfluxDB before a
            # recompute the restart caused reads it back (found there, their excursions would
            # be detected_late); both would differ from the reference run by how long a restart
            # and its recomputes take on this machine.
            assert victim is not None
            wall.pause()
            procs[victim].kill()
            notes["killed_at_message"] = published[0]
            time.sleep(1.0)
            procs[victim].start()
            if procs[victim].role == "rules":  # evaluating again once its leases expired
                leased = wait_for(
                    lambda: procs[victim].status().get("rules_partitions_waiting") == 0, 60
                )
                if not leased:
                    notes["leases_not_taken_after_restart"] = procs[victim].status()
            if not _settled(procs, 60):
                notes["unsettled_after_restart"] = {n: p.status() for n, p in procs.items()}
            wall.resume()
            killer_done.set()

        stats = run_live(
            scenario,
            host="127.0.0.1",
            port=services.mosquitto.port,
            seed=SEED,
            speedup=SPEEDUP,
            start=start,
            on_publish=on_publish,
            from_s=FROM_S,
            wall=wall,
        )
        notes["published"] = stats.to_dict()
        if victim:
            assert killer_done.wait(120), "the killed process did not come back"
            assert "unsettled_after_restart" not in notes, pformat(notes)
            assert "leases_not_taken_after_restart" not in notes, pformat(notes)
        if not _settled(procs, 120):
            # Say which process is not idle and what it holds, not a truncated dict.
            detail = {
                n: {
                    k: v
                    for k, v in p.status().items()
                    if k == "idle"
                    or k.endswith(("_unacked", "_received", "_depth", "buffered"))
                    or k.startswith(("rules_watermark", "received_messages"))
                }
                for n, p in procs.items()
            }
            pytest.fail("the processes did not settle within 120 s:\n" + pformat(detail))
        notes["status"] = {n: p.status() for n, p in procs.items()}
    finally:
        for p in procs.values():  # all at once: each checkpoints and exits
            p.signal_stop()
        for p in procs.values():
            assert p.wait_gone(30), f"{p.name} did not exit on SIGTERM"
        received = alerts.close()
        for cid in [f"{name}-{n}" for n in procs] + [
            f"{name}-rules-{k}" for k in range(PARTITIONS)
        ]:
            discard_session(services.mosquitto.port, cid)
    with open_registry(base.registry_url) as reg:
        excursions = Counter(
            (
                e.rule,
                e.asset_id,
                e.compartment_id,
                e.start_ms,
                e.end_ms,
                e.status,
                e.detected_late,
            )
            for e in (r.excursion for r in reg.find_excursions(superseded=False))
        )
        outbox = reg.outbox_entries()
        deliveries = reg.alert_deliveries()
        custody = Counter(
            (e.shipment_id, e.action, e.asset_id, e.compartment_id, e.ts_ms)
            for sh in scenario.shipments
            for e in reg.custody_events(sh.id)
            if e.source == "mqtt"  # the scans the devices sent, not the dispatcher's
        )
    # Not delivered: an entry no deliverer routed yet, or a channel's delivery still pending.
    undelivered = [o.key for o in outbox if o.routed_ms is None]
    undelivered += [d.key for d in deliveries if d.state != "delivered"]
    return Outcome(
        excursions,
        Counter(o.key for o in outbox),
        undelivered,
        received,
        custody,
        notes,
    )


def _settled(procs: dict[str, Proc], timeout_s: float) -> bool:
    """Every process idle, with nothing moving between them, for three polls in a row."""
    streak, last = 0, None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = {n: p.status() for n, p in procs.items()}
        moving = tuple(
            (n, s.get("received_messages"), s.get("rules_forwarded"), s.get("rules_evaluated"))
            for n, s in sorted(status.items())
        ) + tuple(
            (n, k, v) for n, s in sorted(status.items()) for k, v in s.items() if "_received" in k
        )
        idle = all(s.get("idle") for s in status.values())
        streak = streak + 1 if idle and moving == last else 0
        if streak >= 3:
            return True
        last = moving
        time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    z = Zygote(tmp_path_factory.mktemp("zygote") / "zygote.log")
    try:
        yield z
    finally:
        z.close()


@pytest.fixture(scope="module")
def reference(
    services: Services,
    zygote: Zygote,
    pg_databases: PgDatabases,
    tmp_path_factory: pytest.TempPathFactory,
) -> Outcome:
    """One ingest process with the rules in process: what scale-out must reproduce."""
    root = tmp_path_factory.mktemp("scale") / "reference"
    db, url = pg_databases.take()
    try:
        return _run(services, zygote, url, root, "scale_ref", ingests=1, forward=False)
    finally:
        pg_databases.give_back(db)


def test_the_partitions_give_each_worker_assets() -> None:
    fleet = _scenario().fleet()
    for owned in OWNERS.values():
        parts = {int(k) for k in owned.split(",")}
        assert [a for a in fleet.assets if partition_of(a, PARTITIONS) in parts]


def _check(out: Outcome, ref: Outcome, *, exact_alerts: bool) -> None:
    assert ref.excursions and max(ref.excursions.values()) == 1
    kinds = {k[0] for k in ref.excursions}
    assert {"gap", "range"} <= kinds, kinds  # the coverage hole and the warm-ups are in it
    missing = ref.excursions - out.excursions
    extra = out.excursions - ref.excursions
    diff = [f"missing {k}" for k in sorted(missing)] + [f"extra   {k}" for k in sorted(extra)]
    assert not diff, "\n" + "\n".join(diff)
    assert out.custody == ref.custody
    # One alert per (excursion, change): the outbox holds each key once, all delivered, and
    # the subscriber got every key (a repeat only ever under the same key).
    assert max(out.outbox.values()) == 1
    assert out.undelivered == []
    assert set(out.received) == set(out.outbox)
    if exact_alerts:
        assert set(out.outbox) == set(ref.outbox)
        return
    # After a kill, late data makes recomputes: an excursion streaming saw may be superseded
    # (announced as such) and a kept one updated. Every excursion of the reference is still
    # announced, and an excursion only this run announced was superseded.
    ids = {k.split(":")[0] for k in out.outbox}
    ref_ids = {k.split(":")[0] for k in ref.outbox}
    assert ref_ids <= ids, sorted(ref_ids - ids)
    superseded = {k.split(":")[0] for k in out.outbox if k.endswith(":superseded")}
    assert ids - ref_ids <= superseded, sorted(ids - ref_ids - superseded)


def test_reference_run_is_complete(reference: Outcome) -> None:
    assert reference.undelivered == []
    assert set(reference.received) == set(reference.outbox)
    assert max(reference.outbox.values()) == 1
    # What the window is chosen to hold: data gaps recovered by the backlog, excursions opened
    # and closed, in assets of both workers' partitions, and the custody scans of 6h33m-9h49m.
    statuses = {k[5] for k in reference.excursions}
    assert {"recovered", "closed", "open"} <= statuses, statuses
    for owned in OWNERS.values():
        parts = {int(k) for k in owned.split(",")}
        assert [k for k in reference.excursions if partition_of(k[1], PARTITIONS) in parts]
    assert sum(reference.custody.values()) >= 10, reference.custody
    assert max(reference.custody.values()) == 1


@pytest.mark.parametrize("fault", [None, "kill_worker", "kill_ingest"])
def test_three_ingests_and_two_workers_find_what_one_process_finds(
    services: Services,
    zygote: Zygote,
    pg_registry_url: str,
    tmp_path: Path,
    reference: Outcome,
    fault: str | None,
) -> None:
    name = f"scale_{fault or 'plain'}"
    out = _run(
        services,
        zygote,
        pg_registry_url,
        tmp_path / name,
        name,
        ingests=3,
        forward=True,
        fault=fault,
    )
    if fault:
        assert "killed_at_message" in out.notes
    _check(out, reference, exact_alerts=fault is None)

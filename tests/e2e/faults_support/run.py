"""One fault run end to end, and what it is judged on.

A run: a fresh registry (migrated, with the plan's shipments) and spool, one ``coldchain ingest``
process, the alert watcher and the ``/healthz`` poller, the publisher sending the plan at a
steady rate; at 40 % of the messages the fault is injected (it returns when the fault is over);
then the run settles (every acknowledged reading in InfluxDB, or nothing moving any more),
ingest is stopped with SIGTERM and the outcome is read back: InfluxDB point by point, the
registry's excursions and custody scans, the alerts seen, the health polls.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from coldchain.settings import Settings
from deploy.launcher import Influxd, Mosquitto, free_port
from registry import open_registry, upgrade
from tests.e2e.faults_support.outcome import Outcome, ReadingKey, excursion_key
from tests.e2e.faults_support.plan import Plan
from tests.e2e.faults_support.probes import (
    AlertWatcher,
    HealthProbe,
    IngestProcess,
    Publisher,
    discard_session,
)

__all__ = ["Fault", "Run", "production_env", "run_case", "setting"]

_ids = itertools.count(1)
REPO = Path(__file__).resolve().parents[3]


@dataclass
class Run:
    """Everything a fault may touch while it is injected."""

    name: str
    plan: Plan
    mosquitto: Mosquitto
    influxd: Influxd
    root: Path
    var: Path  # spool and registry live here
    database: str
    ingest: IngestProcess
    health: HealthProbe
    publisher: Publisher
    # (start, end) monotonic: when /healthz must be red at least once (None: no expectation)
    fault_window: tuple[float, float] | None = None
    marks: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def spool_path(self) -> Path:
        return self.var / "spool.sqlite3"

    @property
    def registry_path(self) -> Path:
        return self.var / "registry.sqlite3"

    def start_ingest(self) -> None:
        """Start ``coldchain ingest`` and wait until it is ready. The metrics port is picked
        free beforehand, but another process on the machine may take it meanwhile: then it
        is started again on another port."""
        for attempt in range(3):
            try:
                self.ingest.start()
                return
            except AssertionError as exc:
                if "Address already in use" not in str(exc) or attempt == 2:
                    raise
            port = free_port()
            self.ingest.env["COLDCHAIN_METRICS_PORT"] = str(port)
            self.health.set_port(port)

    def mark(self, label: str) -> float:
        self.marks[label] = t = time.monotonic()
        return t

    def stored(self) -> dict[ReadingKey, float]:
        return stored_readings(self.influxd, self.database, self.plan.asset_ids)


class Fault:
    """A fault: ``prepare`` before anything starts, ``inject`` at 40 % (returns when the fault
    is over and sets ``run.fault_window``), ``cleanup`` at the end whatever happened."""

    name = "none"
    # The design loses nothing: losses must be 0 and everything must match the baseline.
    covered = True
    # /healthz stays red by design until an operator acts (a replaced or corrupt spool): the
    # run reads it once at the end instead of waiting 30 s for a recovery that cannot come.
    stays_red = False

    def prepare(self, run: Run) -> None:
        pass

    def inject(self, run: Run) -> None:
        pass

    def cleanup(self, run: Run) -> None:
        pass


def stored_readings(influxd: Influxd, database: str, assets: list[str]) -> dict[ReadingKey, float]:
    """Every temperature point of ``assets``: {(asset, sensor, ts_ms): temp_c}."""
    out: dict[ReadingKey, float] = {}
    for asset in assets:
        try:
            res = influxd.query(
                f'SELECT "temp_c" FROM "temperature" WHERE "asset" = \'{asset}\' GROUP BY "sensor"',
                database,
            )
        except Exception:  # database not there yet, or influxd down
            return out
        results: list[dict[str, Any]] = res.get("results", [])  # type: ignore[assignment]
        for result in results:
            assert not result.get("partial"), "InfluxDB truncated the read-back"
            for series in result.get("series", []):
                sensor = series["tags"]["sensor"]
                for t, v in series["values"]:
                    out[(asset, sensor, int(t))] = float(v)
    return out


# What a test run sets itself, whatever production says: addresses, paths, credentials, the
# client id (one session per run) and the metrics port.
_RUN_OWN = frozenset(
    {
        "COLDCHAIN_FLEET_PATH",
        "COLDCHAIN_REGISTRY_URL",
        "COLDCHAIN_METRICS_PORT",
        "COLDCHAIN_SPOOL__PATH",
        "COLDCHAIN_MQTT__HOST",
        "COLDCHAIN_MQTT__PORT",
        "COLDCHAIN_MQTT__USERNAME",
        "COLDCHAIN_MQTT__PASSWORD",
        "COLDCHAIN_MQTT__CLIENT_ID",
        "COLDCHAIN_INFLUX__URL",
        "COLDCHAIN_INFLUX__DATABASE",
        "COLDCHAIN_INFLUX__TOKEN",
        "COLDCHAIN_INFLUX__USERNAME",
        "COLDCHAIN_INFLUX__PASSWORD",
    }
)


def production_env() -> dict[str, str]:
    """The ingest service's other ``COLDCHAIN_*`` settings in deploy/compose.yaml (e.g. its
    share group): a fault run is configured as production runs ingest."""
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    env = compose["services"]["ingest"].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {
        k: "" if v is None else str(v)
        for k, v in env.items()
        if k.startswith("COLDCHAIN_") and k not in _RUN_OWN and "${" not in str(v)
    }


def setting(section: str, name: str, env: dict[str, str]) -> Any:
    """The value ingest will use for ``section.name``: from ``env``, else the default; None
    when this version of coldchain has no such setting."""
    model = Settings.model_fields[section].annotation
    assert isinstance(model, type) and issubclass(model, BaseModel), section
    field_info = model.model_fields.get(name)
    if field_info is None:
        return None
    raw = env.get(f"COLDCHAIN_{section.upper()}__{name.upper()}")
    return field_info.default if raw is None else type(field_info.default)(raw)


def _env(run: Run, metrics_port: int) -> dict[str, str]:
    return {
        "COLDCHAIN_MQTT__SHARE_GROUP": run.name,
        **production_env(),
        "COLDCHAIN_FLEET_PATH": str(run.root / "fleet.yaml"),
        "COLDCHAIN_REGISTRY_URL": f"sqlite:///{run.registry_path}",
        "COLDCHAIN_METRICS_PORT": str(metrics_port),
        "COLDCHAIN_MQTT__PORT": str(run.mosquitto.port),
        "COLDCHAIN_MQTT__CLIENT_ID": f"ingest-{run.name}",
        "COLDCHAIN_INFLUX__URL": run.influxd.url,
        "COLDCHAIN_INFLUX__DATABASE": run.database,
        # The operator default is 30 s; 5 s keeps a run short after InfluxDB returns.
        "COLDCHAIN_INFLUX__RETRY_MAX_S": "5",
        # The operator default is 15 s; a broker fault lasts 3 s past it (faults._broker_down_s).
        "COLDCHAIN_MQTT__DISCONNECTED_GRACE_S": "5",
        "COLDCHAIN_SPOOL__PATH": str(run.spool_path),
    }


def run_case(
    name: str,
    plan: Plan,
    mosquitto: Mosquitto,
    influxd: Influxd,
    root: Path,
    fault: Fault,
    *,
    rate: float,
    fault_fraction: float = 0.4,
    settle_timeout_s: float = 120.0,
    on_fault: Callable[[Run], None] | None = None,
) -> Outcome:
    """Run the plan through real services with ``fault`` injected at ``fault_fraction``."""
    tag = f"f{next(_ids)}_{name}"[:40]
    root.mkdir(parents=True, exist_ok=True)
    (root / "fleet.yaml").write_text(plan.fleet.to_yaml())
    metrics_port = free_port()
    run = Run(
        tag,
        plan,
        mosquitto,
        influxd,
        root,
        root / "var",
        tag,
        IngestProcess({}, root / "ingest.log", root / "ingest.out"),
        HealthProbe(metrics_port),
        Publisher(
            mosquitto.port,
            f"pub-{tag}",
            [(m.topic, m.payload) for m in plan.messages],
            rate,
            hold_at=plan.tail_index,
        ),
    )
    run.ingest.env |= _env(run, metrics_port)
    run.var.mkdir(parents=True, exist_ok=True)
    watcher = AlertWatcher(mosquitto.port, f"alerts-{tag}", set(plan.asset_ids))
    fault.prepare(run)
    try:
        _init_registry(run)
        watcher.start()
        run.start_ingest()
        run.mark("ingest_ready")
        run.health.start()
        run.publisher.start()
        at = plan.fault_index(fault_fraction)
        assert run.publisher.wait_published(at, 300), "publisher stalled before the fault"
        run.mark("fault")
        run.notes["fault_at_message"] = run.publisher.published
        fault.inject(run)
        run.mark("fault_over")
        if on_fault is not None:
            on_fault(run)
        hold = plan.tail_index
        assert run.publisher.wait_published(hold, 300), "publisher stalled"
        run.publisher.wait_acked(hold, 300)
        run.mark("published_main")
        _settle(run, _acked_so_far(plan, hold), settle_timeout_s)
        run.mark("tail")
        run.publisher.release()
        ack_times = run.publisher.result()
        run.mark("published")
        _settle(run, ack_times, settle_timeout_s)
        run.mark("settled")
        watcher.wait_quiet(2.0, 30.0)
        run.notes["healthz_final"] = _final_health(run, 0.0 if fault.stays_red else 30.0)
        run.health.stop()
        rc, stop_s = run.ingest.terminate()
        run.notes["final_stop"] = {"exit_code": rc, "seconds": round(stop_s, 2)}
        run.mark("stopped")
        excursions, custody = _read_registry(run)
        return Outcome(
            case=name,
            plan=plan,
            ack_times=ack_times,
            stored=run.stored(),
            excursions=excursions,
            custody=custody,
            alerts=watcher.snapshot(),
            health=list(run.health.samples),
            fault_window=run.fault_window,
            marks=dict(run.marks),
            notes=run.notes,
            ingest_log=run.ingest.log_tail(None),
            final_stats=run.ingest.final_stats(),
        )
    finally:
        # Every step runs even if one fails: a tmpfs left mounted or an ingest left running
        # would outlive the test.
        with contextlib.ExitStack() as cleanup:
            if mosquitto.running:
                cleanup.callback(discard_session, mosquitto.port, f"ingest-{tag}")
            cleanup.callback(fault.cleanup, run)
            cleanup.callback(watcher.close)
            if run.ingest.running:
                cleanup.callback(run.ingest.terminate, 30)
            cleanup.callback(run.publisher.stop)
            cleanup.callback(run.health.stop)


def _init_registry(run: Run) -> None:
    """``coldchain init`` and the shipments an operator registers before the scans come."""
    url = f"sqlite:///{run.registry_path}"
    upgrade(url)
    with open_registry(url) as reg:
        for shipment in run.plan.shipments:
            reg.create_shipment(shipment, profile="chilled", actor="faults-test")


def _acked_so_far(plan: Plan, hold: int) -> list[float | None]:
    """Stand-in ack times for the messages before the hold (all sent; settling only needs
    which ones to wait for)."""
    return [0.0 if i < hold else None for i in range(len(plan.messages))]


def _settle(run: Run, ack_times: list[float | None], timeout_s: float) -> None:
    """Wait until InfluxDB holds every acknowledged reading, or until nothing moves for 10 s
    (a run that lost readings never gets there)."""
    want = {
        (a, s, ts)
        for m, t in zip(run.plan.messages, ack_times, strict=True)
        if t is not None
        for a, s, ts, _ in m.readings
    }
    deadline = time.monotonic() + timeout_s
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        have = run.stored()
        if want <= have.keys():
            break
        if len(have) != last:
            last, last_change = len(have), time.monotonic()
        elif time.monotonic() - last_change > 10.0:
            break
        time.sleep(0.5)
    # The rules run behind the writes: give them the same chance (spool drained, queue empty).
    deadline = min(deadline, time.monotonic() + 30)
    while time.monotonic() < deadline:
        m = run.health.metrics()
        if not m or m.get("spool_depth_messages", 1) == 0:
            break
        time.sleep(0.2)


def _final_health(run: Run, wait_s: float) -> int | None:
    """/healthz once the run settled, waiting up to ``wait_s`` for it to come back by itself."""
    deadline = time.monotonic() + wait_s
    status, _ = run.health.poll()
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        status, _ = run.health.poll()
    return status


def _read_registry(
    run: Run,
) -> tuple[dict[str, tuple[Any, ...]], Counter[tuple[str, str, str, str | None, int]]]:
    url = f"sqlite:///{run.registry_path}"
    excursions: dict[str, tuple[Any, ...]] = {}
    custody: Counter[tuple[str, str, str, str | None, int]] = Counter()
    with open_registry(url) as reg:
        for asset in run.plan.asset_ids:
            for rec in reg.find_excursions(asset_id=asset, limit=100_000):
                e = rec.excursion
                excursions[e.id] = excursion_key(e)
        for shipment in run.plan.shipments:
            for ev in reg.custody_events(shipment):
                custody[(ev.shipment_id, ev.action, ev.asset_id, ev.compartment_id, ev.ts_ms)] += 1
    return excursions, custody

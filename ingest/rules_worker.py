"""A rules worker (``coldchain rules``): the rules engine for the partitions it owns.

Each owned partition ``k`` is one MQTT connection with the fixed client id
``<prefix>-<k>`` (default ``coldchain-rules-<k>``), a persistent session
(``clean_session=False``) subscribed QoS 1 to ``coldchain/v1/rules/<k>``, and one
``EvaluateStage`` with its own engine and its own registry checkpoint ``rules-partition-<k>``.
With ``rules.partition_users`` each connection authenticates as its client id (the broker user
``coldchain-rules-<k>`` of ``coldchain broker users --rules-partitions N``) with the shared
``mqtt.password``: a broker that takes the username as client id then still gives every
partition its own session.
The broker queues the partition's items while no owner is connected. One owner at a time is
enforced by a fencing lease per partition in the registry (``ingest.lease``): a worker
acquires it before it resumes and subscribes (else it waits, raising the health problem
``partition_leased_elsewhere``), renews it, and every checkpoint save and excursion upsert it
makes for the partition carries the lease's fencing token. A worker that loses a lease (taken
over after it failed to renew for ``rules.lease_ttl_s``, e.g. stalled) stops that partition,
raises ``partition_lease_lost`` and exits non-zero (``exit_status``; ``coldchain rules``
returns it): its service manager restarts it, and the new process waits for the lease like any
standby. A clean stop releases the leases.

Guarantees:
- Every asset is evaluated in one place: ingest forwards its samples to its partition only
  (``ingest.forward``), once they are in InfluxDB.
- A forwarded item is acknowledged to the broker only after a checkpoint covering it is
  committed (its changes, alerts queued in the outbox and the partition's engine state, in
  one registry transaction): a worker killed at any point gets everything after its last
  checkpoint again. What it had already evaluated comes back as late or repeated data (exact
  repeats are dropped, older samples make the compartment recompute from InfluxDB), so the
  excursion ids, which hash the rule and the start, repeat instead of doubling.
- A partition's checkpoint is written by its lease holder only (a stale fencing token's writes
  are refused whole: ``LeaseLost``); a start resumes from it (``EvaluateStage.resume``),
  including its pending recomputes, once the lease is held.
- Items are evaluated in ingest receive-time order after a reorder buffer of
  ``rules.reorder_s`` (``ingest.rules_order``), and data gaps are judged on receive times
  ``rules.silence_lag_ms`` behind the clock: what one process with its rules in process would
  find, as long as forwarding (InfluxDB write, broker hop) takes less than both.
- Alerts: the outbox is delivered by every worker once it holds a partition's lease (a standby
  delivers nothing: it shares the active worker's outbox owner name; ``ingest.outbox``): at
  least once, a repeat always under the same idempotency key ``<excursion id>:<change>``.
- The fleet file reloads as in ingest (``ingest.fleet_watch``: every ``fleet_reload_s``, at
  once on ``reload_fleet()``/SIGHUP; a file that does not check is refused and the fleet in
  force stays), applied in order with the items. An item of an asset the fleet in force does
  not know first makes the worker look at the file again (an ingest process may have reloaded
  it first): an asset added to the fleet is evaluated from its first forwarded item.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable

from coldchain.exceptions import ColdchainError, WriteRejected
from coldchain.fleet import Fleet
from coldchain.rules import RULES_CLIENT_ID_PREFIX, partition_of, rules_client_id, rules_topic
from coldchain.settings import Settings
from ingest.channels import PublishHandle
from ingest.consumer import Delivery, MqttSource
from ingest.fleet_watch import FleetWatch, check_profiles
from ingest.forward import decode_forwarded
from ingest.lease import FencedRegistry, LeaseKeeper
from ingest.metrics import IngestMetrics, MetricsServer
from ingest.outbox import build_alert_delivery
from ingest.rules_io import Heartbeat
from ingest.rules_order import OrderedStage
from ingest.service import build_engine
from ingest.watchdog import guarded
from registry import Fence, Registry, open_registry, wall_clock_ms
from timeseries.client import InfluxClient

__all__ = ["PARTITION_LEASE_LOST", "RulesWorker", "partition_checkpoint_key"]

log = logging.getLogger("coldchain.rules.worker")

# Forwarded samples are in InfluxDB before they are sent: a recompute never waits for a writer.
_ALL_WRITTEN = sys.maxsize
PARTITION_LEASE_LOST = "partition_lease_lost"


def partition_checkpoint_key(partition: int) -> str:
    """The registry checkpoint key of one partition (written by its owner only), also the name
    of its fencing lease."""
    return f"rules-partition-{partition}"


def _owner_name(prefix: str) -> str:
    """A lease owner name unique per process: the restarted worker is another owner."""
    return f"{prefix}@{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Partition:
    """One owned partition: its MQTT session, its rules stage and the unacknowledged items."""

    def __init__(self, worker: RulesWorker, k: int, client_id: str) -> None:
        self.k = k
        self._worker = worker
        s = worker.settings
        update: dict[str, object] = {"client_id": client_id, "share_group": ""}
        if s.rules.partition_users:
            # The broker binds client ids to usernames (use_username_as_clientid): each
            # partition is its own user, so its session stays its own.
            update["username"] = client_id
        mqtt = s.mqtt.model_copy(update=update)
        self.source = MqttSource(
            mqtt, self._deliver, (), clock_ms=worker.clock_ms, topics=(rules_topic(k),)
        )
        self.influx = InfluxClient(s.influx)
        # Its checkpoint saves and excursion upserts carry the partition's fencing token.
        self.fenced = FencedRegistry(
            worker.registry.engine,
            clock=wall_clock_ms,
            name=partition_checkpoint_key(k),
            lost=lambda fence, exc: worker.leases.report_lost(k, fence, exc),
        )
        self.stage = OrderedStage(
            build_engine(s, worker.fleet, worker.registry),
            worker.fleet,
            self.fenced,
            self.influx,
            annotate=worker.annotate,
            written_through=lambda: _ALL_WRITTEN,
            clock_ms=worker.clock_ms,
            prune_journal=self._ack_through,
            alerts_queued=lambda: worker.alerts.wake(),  # created after the partitions
            checkpoint_key=partition_checkpoint_key(k),
            checkpoint_s=s.rules.checkpoint_s,
            reorder_s=s.rules.reorder_s,
            lag_ms=worker.silence_lag_ms,
        )
        self._lock = threading.Lock()
        self._seq = 0
        self._unacked: deque[tuple[int, Delivery]] = deque()
        self.received_total = 0
        self.acked_total = 0
        self.rejected_total = 0
        self.active = False  # evaluating: its lease is held, its stage and session started
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def activate(self, fence: Fence) -> None:
        """Once its lease is held (the lease keeper's thread): resume from the checkpoint the
        previous owner left, start the stage, connect (the broker delivers what it queued).
        StoreError if the checkpoint cannot be read (the keeper releases and retries)."""
        self.fenced.fence = fence
        self.stage.resume(0)
        health = self._worker.metrics.health
        self._thread = guarded(f"rules-{self.k}", self.stage.run, health, self.stopping)
        self._thread.start()
        self.source.start()
        self.active = True

    def stop_stage(self) -> None:
        """Ask the stage to stop (quick: what is queued becomes recomputes in the checkpoint)."""
        self.stopping.set()
        if self.active:
            self.stage.stop(catch_up=False)

    def join_stage(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def stop_source(self, timeout_s: float) -> None:
        if self.active:
            self.source.stop(timeout_s=timeout_s)

    def _deliver(self, d: Delivery) -> None:
        """paho's thread: number the item, keep the delivery for its ack, queue the item."""
        with self._lock:
            self._seq += 1
            seq = self._seq
        try:
            item = decode_forwarded(d.payload, seq)
            if isinstance(item, Heartbeat):  # a watermark: acknowledged at once
                self.stage.heartbeat(item)
                self.source.ack(d)
                return
            self.received_total += 1
            if item.asset_id not in self._worker.fleet.assets:
                self._worker.catch_up_fleet()  # ingest may have reloaded the file first
            if item.asset_id not in self._worker.fleet.assets:
                raise ValueError(f"asset {item.asset_id!r} is not in this worker's fleet")
            if partition_of(item.asset_id, self._worker.partitions) != self.k:
                raise ValueError(
                    f"asset {item.asset_id!r} is not in partition {self.k} of "
                    f"{self._worker.partitions}: rules.partitions differs between processes"
                )
        except ValueError as exc:
            # Cannot be evaluated here, ever: acknowledged so it does not block the partition.
            self.rejected_total += 1
            log.error("partition %d: forwarded item refused: %s", self.k, exc)
            self.source.ack(d)
            return
        with self._lock:
            self._unacked.append((seq, d))
        self.stage.submit(item)

    def _ack_through(self, seq: int) -> None:
        """The stage's thread, after a checkpoint covering items up to ``seq``: ack them (not
        those still in the reorder buffer)."""
        buffered = self.stage.buffered_min_row()
        if buffered is not None:
            seq = min(seq, buffered - 1)
        while True:
            with self._lock:
                if not self._unacked or self._unacked[0][0] > seq:
                    return
                _, d = self._unacked.popleft()
            self.acked_total += self.source.ack(d)

    def unacked(self) -> int:
        return len(self._unacked)

    def stats(self) -> dict[str, object]:
        return {
            f"rules_partition_{self.k}_received": self.received_total,
            f"rules_partition_{self.k}_acked": self.acked_total,
            f"rules_partition_{self.k}_refused": self.rejected_total,
            f"rules_partition_{self.k}_unacked": len(self._unacked),
            f"rules_partition_{self.k}_active": int(self.active),
            # Liveness probes this partition's connection got back (its ACL lets it probe).
            f"rules_partition_{self.k}_mqtt_probes_returned": self.source.stats()[
                "mqtt_probes_returned"
            ],
        }


class RulesWorker:
    """``start()``, then ``stop()``: the rules for ``owned`` partitions of ``settings.rules``.

    ``clock_ms``: the clock data gaps and detection times are judged on (a replay passes its
    simulated clock); ``silence_lag_ms`` defaults to ``settings.rules.silence_lag_ms``;
    ``lease_owner`` names this worker in the partitions' leases (default
    ``<prefix>@<host>:<pid>:<random>``, unique per process). ``exit_status()`` is 1 once a
    partition's lease was lost (then stop the worker and exit with it), else None.
    Raises ValueError with no partition, or with ``rules.partition_users`` and a client-id
    prefix other than the broker users' ``coldchain-rules``.
    """

    def __init__(
        self,
        settings: Settings,
        fleet: Fleet,
        owned: list[int],
        clock_ms: Callable[[], int] = wall_clock_ms,
        *,
        client_id_prefix: str = RULES_CLIENT_ID_PREFIX,
        silence_lag_ms: int | None = None,
        lease_owner: str | None = None,
    ) -> None:
        if not owned:
            raise ValueError("a rules worker needs at least one partition")
        if settings.rules.partition_users and client_id_prefix != RULES_CLIENT_ID_PREFIX:
            raise ValueError(
                f"rules.partition_users: the broker users are {RULES_CLIENT_ID_PREFIX}-<k> "
                f"(coldchain broker users --rules-partitions), not {client_id_prefix}-<k>"
            )
        self.settings = settings
        self.fleet = fleet
        self.partitions = settings.rules.partitions
        self.clock_ms = clock_ms
        lag = settings.rules.silence_lag_ms if silence_lag_ms is None else silence_lag_ms
        self.silence_lag_ms = lag
        self.metrics = IngestMetrics()
        self._stopping = threading.Event()
        self.registry: Registry = open_registry(settings.registry_url)
        self._annotations = InfluxClient(settings.influx)
        self._annotate_lock = threading.Lock()
        self._unwritten: list[str] = []
        a = settings.alerts
        self._parts = [_Partition(self, k, rules_client_id(k, client_id_prefix)) for k in owned]
        self._exit_status: int | None = None
        self.leases = LeaseKeeper(
            self.registry,
            lease_owner or _owner_name(client_id_prefix),
            {p.k: partition_checkpoint_key(p.k) for p in self._parts},
            ttl_s=settings.rules.lease_ttl_s,
            renew_s=settings.rules.lease_renew_interval_s,
            health=self.metrics.health,
            acquired=self._activate,
            lost=self._lost,
        )
        # Routed and delivered like ingest's (docs/alerts.md); leases keep workers from
        # sending the same delivery at once. MQTT alerts go out on an evaluating partition's
        # connection (a partition waiting for its lease is not connected).
        self.alerts = build_alert_delivery(
            a,
            self.registry,
            publish=self._publish_alert,
            connected=lambda: self._alert_source() is not None,
            clock_ms=wall_clock_ms,
            owner=f"{client_id_prefix}-{'-'.join(str(k) for k in owned)}",
        )
        for p in self._parts:
            p.source.health = self.metrics.health
            self.metrics.sources.extend([p.stage.stats, p.stats])
        self.metrics.sources.extend([self.alerts.stats, self.leases.stats])
        profiles = self._parts[0].stage.engine.profiles
        self._fleet_lock = threading.Lock()
        self._fleet_wake = threading.Event()
        self._fleet_watch = FleetWatch(
            settings.fleet_path,
            self.metrics.health,
            self._stopping,
            current=fleet,
            interval_s=settings.fleet_reload_s,
            check=lambda new: check_profiles(new, profiles),
        )
        self.metrics.sources.append(self._fleet_watch.stats)
        self._threads: dict[str, threading.Thread] = {}
        self._alerts_lock = threading.Lock()
        self._server: MetricsServer | None = None

    @property
    def owned(self) -> list[int]:
        return [p.k for p in self._parts]

    def start(self, wait_connected_s: float = 10.0) -> None:
        """Acquire the partitions' leases; each partition whose lease is held resumes from its
        checkpoint and connects (the broker delivers what it queued meanwhile). A partition
        leased elsewhere starts once its lease is this worker's (the lease keeper's thread)."""
        health = self.metrics.health
        if self.settings.metrics_port:
            self._server = MetricsServer(self.metrics, self.settings.metrics_port)
            self._server.start()
        self.leases.round()  # what is free now starts before start() returns
        self._threads["leases"] = guarded("leases", self.leases.run, health, self._stopping)
        self._threads["leases"].start()
        self._threads["fleet"] = guarded("fleet", self._watch_fleet, health, self._stopping)
        self._threads["fleet"].start()
        deadline = time.monotonic() + wait_connected_s
        for p in self._parts:
            if not p.active:
                log.warning("partition %d: waiting for its lease", p.k)
            elif not p.source.wait_connected(max(0.0, deadline - time.monotonic())):
                log.warning("partition %d: MQTT not connected yet; paho keeps retrying", p.k)

    def exit_status(self) -> int | None:
        """1 once a partition's lease was lost (the worker stopped evaluating it), else None."""
        return self._exit_status

    def _activate(self, k: int, fence: Fence) -> None:
        if self._stopping.is_set():
            raise ColdchainError("the worker is stopping")
        self._part(k).activate(fence)
        self._start_alerts()

    def _start_alerts(self) -> None:
        """Alert delivery starts with the first partition this worker holds, not before: its
        outbox owner name (prefix + owned partitions) is shared by a standby for the same
        partitions, and a deliverer starting releases its name's claims as a dead
        incarnation's (``Registry.release_alert_leases``). Holding a lease proves the previous
        holder is gone; a standby that started delivering would free the active worker's
        in-flight claims and send them again."""
        with self._alerts_lock:
            if "alerts" in self._threads or self._stopping.is_set():
                return
            t = guarded("alerts", self.alerts.run, self.metrics.health, self._stopping)
            self._threads["alerts"] = t
            t.start()

    def _lost(self, k: int, reason: str) -> None:
        """The lease keeper's thread: another owner holds ``k`` now. Its connection goes first
        (it would take the new owner's session back on every reconnect), then its stage, whose
        writes are refused meanwhile. Nothing is released: the lease is not ours."""
        p = self._part(k)
        p.stopping.set()
        p.stop_source(timeout_s=2.0)
        p.stop_stage()
        p.join_stage(5.0)
        p.active = False
        self.metrics.health.raise_problem(
            PARTITION_LEASE_LOST,
            f"partition {k} stopped: {reason}; restart the worker (it exits non-zero)",
        )
        self._exit_status = 1

    def _part(self, k: int) -> _Partition:
        return next(p for p in self._parts if p.k == k)

    def _alert_source(self) -> MqttSource | None:
        for p in self._parts:
            if p.active and p.source.connected.is_set():
                return p.source
        return None

    def _publish_alert(self, topic: str, payload: bytes) -> PublishHandle:
        source = self._alert_source() or self._parts[0].source
        return source.publish(topic, payload)

    def stop(self, timeout_s: float = 8.0, *, release_leases: bool = True) -> None:
        """Checkpoint every evaluating partition (without catching up), acknowledge what the
        checkpoint covers, disconnect, then release the leases so the next owner starts at
        once; the rest comes back from the broker to the next owner. ``release_leases=False``
        keeps them (as a crash would: another worker takes over after ``rules.lease_ttl_s``)."""
        deadline = time.monotonic() + timeout_s
        self._stopping.set()
        self._fleet_wake.set()
        self.leases.stop()
        if "leases" in self._threads:
            self._threads["leases"].join(max(0.1, deadline - time.monotonic() - 1.0))
        for p in self._parts:
            p.stop_stage()
        for p in self._parts:
            p.join_stage(max(0.1, deadline - time.monotonic() - 1.0))
        self.alerts.stop()
        with self._alerts_lock:  # none starts after this (``_stopping`` is set)
            alerts = self._threads.get("alerts")
        if alerts is not None:
            alerts.join(max(0.1, deadline - time.monotonic() - 1.0))
        else:  # never held a partition: its channels were never used by a round
            self.alerts.close()
        for p in self._parts:
            p.stop_source(timeout_s=max(0.1, min(2.0, deadline - time.monotonic())))
        if release_leases:
            self.leases.release_all()
        if self._server is not None:
            self._server.stop()
        self._flush_annotations()
        for p in self._parts:
            p.influx.close()
        self._annotations.close()
        self.registry.close()

    def reload_fleet(self) -> None:
        """Re-read the fleet file now (SIGHUP; safe from a signal handler: sets an event)."""
        self._fleet_wake.set()

    def catch_up_fleet(self) -> None:
        """Put in force the fleet file's content if the file changed since it was last read
        (a stat when it did not). Called for an item of an unknown asset, before refusing it."""
        self._poll_fleet(force=False)

    def _watch_fleet(self) -> None:
        interval = self.settings.fleet_reload_s
        while not self._stopping.is_set():
            forced = self._fleet_wake.wait(interval or None)
            self._fleet_wake.clear()
            if self._stopping.is_set():
                return
            self._poll_fleet(force=forced)

    def _poll_fleet(self, *, force: bool) -> None:
        with self._fleet_lock:  # the watch thread and paho's threads
            self._fleet_watch.poll(force=force)
            fleet = self._fleet_watch.take()
            if fleet is None:
                return
            self.fleet = fleet
            for p in self._parts:  # applied in order with the items submitted after it
                p.stage.update_fleet(fleet)

    def idle(self) -> bool:
        """Nothing queued or pending in any evaluating partition, and every item
        acknowledged."""
        return all(p.stage.idle() and not p.unacked() for p in self._parts if p.active)

    def stats(self) -> dict[str, object]:
        return self.metrics.snapshot()

    def annotate(self, lines: list[str]) -> None:
        """Excursion and clock annotations straight to InfluxDB (a worker has no spool); kept
        and retried with the next ones while InfluxDB fails (the registry holds the truth)."""
        with self._annotate_lock:
            self._unwritten.extend(lines)
        self._flush_annotations()

    def _flush_annotations(self) -> None:
        with self._annotate_lock:
            lines, self._unwritten = self._unwritten, []
            if not lines:
                return
            try:
                self._annotations.write("\n".join(lines).encode())
            except WriteRejected as exc:  # refused for good: retrying would block the rest
                log.error("annotations refused by InfluxDB (%d lines): %s", len(lines), exc)
            except ColdchainError as exc:
                log.warning("annotations not written yet (%d lines): %s", len(lines), exc)
                self._unwritten = lines + self._unwritten[-100_000:]

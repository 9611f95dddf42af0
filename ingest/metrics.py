"""Ingest counters, exposed as a dict (``stats()``) and to Prometheus over HTTP.

The exposition is ``prometheus_client``'s (text format 0.0.4, or OpenMetrics when the scraper
asks for it): a collector turns each snapshot into metric families named
``coldchain_ingest_<key>``. Monotonic counts are counters (``_total`` appended, as Prometheus
names counters); current values (depths, lags, flags) are gauges; a dict becomes one labelled
family (``reason`` for dead letters, ``problem`` for health problems). The process's own CPU
and memory are ``process_*`` (prometheus_client's process collector). docs/operations.md,
"What to watch", lists them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from ingest.health import Health

__all__ = ["COUNTERS", "IngestMetrics", "MetricsServer"]

PREFIX = "coldchain_ingest_"

# Snapshot keys that only grow while the process runs: Prometheus counters. Any other key is a
# gauge (a value that may go down), so a stage adding a figure never exposes a shrinking counter.
COUNTERS = frozenset(
    {
        "received_messages",
        "replayed_messages",
        "accepted_messages",
        "annotation_messages",
        "accepted_samples",
        "spooled_points",
        "acked_messages",
        "stale_acks_dropped",
        "written_messages",
        "written_points",
        "write_errors",
        "dead_letters",
        "spool_errors",
        "spool_replaced",
        "spool_corrupt",
        "registry_errors",
        "rules_evaluated",
        "rules_changes",
        "rules_recomputes",
        "rules_errors",
        "rules_spilled",
        "rules_changes_rejected",
        "rules_rewrites",
        "rules_redeliveries",
        "rules_clock_jumps",
        "rules_held",
        "rules_child_revalidation_mismatches",
        "rules_child_restarts",
        "mqtt_probes_returned",
        "mqtt_resubscribes",
        "alerts_delivered",
        "alerts_pruned",
        "alerts_failed_attempts",
        "alerts_errors",
        "fleet_reloads",
        "fleet_rejected",
    }
)
# Derived sums Prometheus computes itself (``sum(coldchain_ingest_dead_letters_total)``).
_NOT_EXPOSED = frozenset({"dead_letters_total"})
_LABELS = {"dead_letters": "reason", "health_problems": "problem"}


class _SnapshotCollector:
    """A prometheus_client collector over ``IngestMetrics.snapshot()``, read at each scrape."""

    def __init__(self, metrics: IngestMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for key, value in self._metrics.snapshot().items():
            if key in _NOT_EXPOSED or value is None:  # None: not measured yet, no sample
                continue
            name, doc = PREFIX + key, f"coldchain ingest: {key.replace('_', ' ')}"
            family: CounterMetricFamily | GaugeMetricFamily
            if isinstance(value, dict):
                label = _LABELS.get(key, "name")
                family = (
                    CounterMetricFamily(name, doc, labels=[label])
                    if key in COUNTERS
                    else GaugeMetricFamily(name, doc, labels=[label])
                )
                for item, n in sorted(value.items()):
                    family.add_metric([str(item)], float(n))
            elif isinstance(value, bool | int | float):
                cls = CounterMetricFamily if key in COUNTERS else GaugeMetricFamily
                family = cls(name, doc, value=float(value))
            else:
                continue  # not a number: stats() only
            yield family


class IngestMetrics:
    """Each counter has a single writer thread, so plain increments are safe under the GIL.

    Spool depth is derived (backlog at start + spooled - written), not a counter, because two
    threads move it: the pipeline adds and the writer removes.
    """

    def __init__(self, spool_backlog_messages: int = 0) -> None:
        self.spool_backlog_messages = spool_backlog_messages
        self.received_messages = 0
        self.replayed_messages = 0  # dead letters replayed (ingest.replay): not from the broker
        self.accepted_messages = 0
        self.annotation_messages = 0  # spool rows of excursion points, from the rules thread
        self.accepted_samples = 0
        self.spooled_points = 0
        self.acked_messages = 0
        self.stale_acks_dropped = 0
        self.written_messages = 0
        self.written_points = 0
        self.write_errors = 0
        self.dead_letters: Counter[str] = Counter()
        self.receive_lag_s = 0.0
        # Durability faults (docs/operations.md): spool writes that failed (disk full, I/O),
        # spools found replaced or damaged at start-up, registry calls that failed and were
        # retried with the acks held.
        self.spool_errors = 0
        self.spool_replaced = 0
        self.spool_corrupt = 0
        self.registry_errors = 0
        self.health = Health()
        # Other stages' counters (e.g. the rules stage's ``stats``), merged into the snapshot.
        self.sources: list[Callable[[], dict[str, object]]] = []
        # This process's prometheus_client registry (its own, not the library's global one, so
        # several services in one process do not clash): the snapshot and ``process_*``.
        self.registry = CollectorRegistry()
        self.registry.register(_SnapshotCollector(self))
        ProcessCollector(registry=self.registry)

    @property
    def spool_depth_messages(self) -> int:
        return (
            self.spool_backlog_messages
            + self.accepted_messages
            + self.annotation_messages
            - self.written_messages
        )

    def snapshot(self) -> dict[str, object]:
        data = {
            k: v
            for k, v in vars(self).items()
            if k not in ("dead_letters", "health", "sources", "registry")
        }
        data["spool_depth_messages"] = self.spool_depth_messages
        data["dead_letters"] = dict(self.dead_letters)
        data["dead_letters_total"] = sum(self.dead_letters.values())
        problems = self.health.problems()
        data["healthy"] = int(not problems)
        data["health_problems"] = dict.fromkeys(sorted(problems), 1)
        for source in self.sources:
            data |= source()
        return data

    def prometheus(self) -> str:
        """The Prometheus text exposition (format 0.0.4) of the snapshot."""
        return generate_latest(self.registry).decode()


class MetricsServer:
    """``GET /metrics`` (Prometheus, via prometheus_client) and ``GET /healthz`` on a loopback
    port."""

    def __init__(self, metrics: IngestMetrics, port: int, host: str = "127.0.0.1") -> None:
        m = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status = 200
                if self.path == "/metrics":
                    encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                    body = encoder(m.registry)
                elif self.path == "/healthz":
                    problems = m.health.problems()
                    text = "".join(f"{k}: {v}\n" for k, v in sorted(problems.items()))
                    body, ctype = (text or "ok\n").encode(), "text/plain; charset=utf-8"
                    status = 503 if problems else 200
                else:
                    self.send_error(404, "try /metrics or /healthz")
                    return
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="metrics"
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

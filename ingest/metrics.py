"""Ingest counters, exposed as a dict (``stats()``) and in Prometheus text format over HTTP."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ingest.health import Health

__all__ = ["IngestMetrics", "MetricsServer"]


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
            k: v for k, v in vars(self).items() if k not in ("dead_letters", "health", "sources")
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
        out = []
        for key, value in self.snapshot().items():
            if isinstance(value, dict):
                label = "problem" if key == "health_problems" else "reason"
                for name, n in sorted(value.items()):
                    out.append(f'coldchain_ingest_{key}{{{label}="{name}"}} {n}')
            elif value is None:
                continue  # not measured yet (e.g. no probe returned): no sample, not "None"
            else:
                out.append(
                    f"coldchain_ingest_{key} {int(value) if isinstance(value, bool) else value}"
                )
        return "\n".join(out) + "\n"


class MetricsServer:
    """``GET /metrics`` (Prometheus) and ``GET /healthz`` on a loopback port."""

    def __init__(self, metrics: IngestMetrics, port: int, host: str = "127.0.0.1") -> None:
        m = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status = 200
                if self.path == "/metrics":
                    body, ctype = m.prometheus().encode(), "text/plain; version=0.0.4"
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

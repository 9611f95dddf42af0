"""Running a long-lived service until SIGTERM or SIGINT: ``coldchain ingest`` and ``coldchain
rules`` share it, so both stop the same way (bounded by ``--stop-timeout-s``) and print their
final counters as one JSON line on stdout."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

from ingest.heap import settle_heap

__all__ = ["Service", "serve"]


class Service(Protocol):
    """What ``serve`` runs: started once, stopped within ``timeout_s`` seconds, counted."""

    def start(self) -> None: ...

    def stop(self, *, timeout_s: float) -> None: ...

    def stats(self) -> dict[str, Any]: ...


def serve(
    service: Service,
    banner: str,
    *,
    stop_timeout_s: float,
    on_hangup: Callable[[], None] | None = None,
    exit_status: Callable[[], int | None] | None = None,
) -> int:
    """Start ``service``, print ``banner`` on stderr, wait for SIGTERM/SIGINT, stop it within
    ``stop_timeout_s`` and print its stats as JSON; SIGHUP calls ``on_hangup`` when given.
    Returns the exit status: 0, or what ``exit_status()`` (checked every second) returned once
    it was not None (the service gave up on its own; it is stopped the same way). The heap is
    settled first (``ingest.heap.settle_heap``)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if on_hangup is not None:
        signal.signal(signal.SIGHUP, lambda *_: on_hangup())
    settle_heap()  # what start-up built lives as long as the process
    service.start()
    print(banner, file=sys.stderr, flush=True)
    status: int | None = None
    while not stop.wait(1.0):
        if exit_status is not None and (status := exit_status()) is not None:
            break
    service.stop(timeout_s=stop_timeout_s)
    print(json.dumps(service.stats(), sort_keys=True, default=str), flush=True)
    return status or 0

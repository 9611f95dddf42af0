"""Running a long-lived service until SIGTERM or SIGINT: ``coldchain ingest`` and ``coldchain
rules`` share it, so both stop the same way (bounded by ``--stop-timeout-s``) and print their
final counters as one JSON line on stdout."""

from __future__ import annotations

import gc
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Service", "serve", "settle_heap"]


class Service(Protocol):
    """What ``serve`` runs: started once, stopped within ``timeout_s`` seconds, counted."""

    def start(self) -> None: ...

    def stop(self, *, timeout_s: float) -> None: ...

    def stats(self) -> dict[str, Any]: ...


def settle_heap() -> int:
    """Collect once, then move every object alive into the collector's permanent generation
    (``gc.freeze``); returns how many objects are frozen.

    Why: a full (generation 2) collection walks every tracked object and holds the GIL, so
    every thread stops meanwhile. A built service holds ~130k objects (fleet, settings,
    SQLAlchemy, paho, httpx) that live as long as the process; walking them took 100-300 ms a
    pass on the 2-core test machine under load, the largest part of ingest's p99 latency
    (bench/ingest.py, ``latency.breakdown.gc``). Frozen objects are still freed by reference
    counting; only cycles among them are no longer looked for (none are expected: they are
    the process's own long-lived structures). Call it once the service is built, before it
    starts taking work.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def serve(
    service: Service,
    banner: str,
    *,
    stop_timeout_s: float,
    on_hangup: Callable[[], None] | None = None,
) -> int:
    """Start ``service``, print ``banner`` on stderr, wait for SIGTERM/SIGINT, stop it within
    ``stop_timeout_s`` and print its stats as JSON; SIGHUP calls ``on_hangup`` when given.
    Returns the exit status (0). The heap built so far is frozen first (``settle_heap``)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if on_hangup is not None:
        signal.signal(signal.SIGHUP, lambda *_: on_hangup())
    settle_heap()
    service.start()
    print(banner, file=sys.stderr, flush=True)
    while not stop.wait(1.0):
        pass
    service.stop(timeout_s=stop_timeout_s)
    print(json.dumps(service.stats(), sort_keys=True, default=str), flush=True)
    return 0

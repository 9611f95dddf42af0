"""Ingest's threads never stop silently.

Guarantee: a thread started with ``guarded`` that raises, or returns while the service is not
stopping, raises a named health problem (``pipeline_dead``, ``writer_dead``, ``rules_dead``,
...) with the exception, and logs the traceback once. ``/healthz`` then answers 503 until the
process is restarted (a liveness probe on ``/healthz`` does that): a dead stage is not retried
in place, since what killed it is a defect, not a condition that passes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ingest.health import Health

__all__ = ["guarded"]

log = logging.getLogger("coldchain.ingest.watchdog")


def guarded(
    name: str,
    target: Callable[[], None],
    health: Health,
    stopping: threading.Event,
    *,
    problem: str | None = None,
) -> threading.Thread:
    """A daemon thread named ``ingest-<name>`` running ``target``; its death raises
    ``problem`` (default ``<name>_dead``)."""
    key = problem or f"{name}_dead"

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            log.exception("ingest %s thread died", name)
            health.raise_problem(
                key, f"the {name} thread died: {type(exc).__name__}: {exc}; restart ingest"
            )
            return
        if not stopping.is_set():
            log.error("ingest %s thread exited while the service was running", name)
            health.raise_problem(key, f"the {name} thread exited unexpectedly; restart ingest")

    return threading.Thread(target=run, name=f"ingest-{name}", daemon=True)

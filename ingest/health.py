"""Process health: named problems that any ingest thread can raise and clear.

Guarantees:
- ``/healthz`` is red (HTTP 503, one ``name: reason`` line per problem) while at least one
  problem is raised, green (200 ``ok``) otherwise; a problem stays raised until the component
  that raised it clears it (it recovered) or the process exits.
- Thread-safe: any thread may ``raise_problem``/``clear`` at any time; readers get a copy.
- Every change is logged once (raised at ERROR, cleared at WARNING), not once per check, so a
  problem that persists does not flood the log.

Problem names are stable identifiers documented in docs/operations.md (for example
``mqtt_not_receiving``, ``spool_unwritable``, ``registry_unavailable``, ``pipeline_dead``).
"""

from __future__ import annotations

import logging
import threading

__all__ = ["Health"]

log = logging.getLogger("coldchain.ingest.health")


class Health:
    """The set of currently raised problems: ``{name: reason}``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problems: dict[str, str] = {}

    def raise_problem(self, name: str, reason: str) -> None:
        """Mark the process unhealthy for ``name`` (a stable identifier) with a human reason."""
        with self._lock:
            before = self._problems.get(name)
            self._problems[name] = reason
        if before != reason:
            log.error("unhealthy: %s: %s", name, reason)

    def clear(self, name: str) -> None:
        """``name`` recovered; a no-op when it was not raised."""
        with self._lock:
            was = self._problems.pop(name, None)
        if was is not None:
            log.warning("recovered: %s (was: %s)", name, was)

    def problems(self) -> dict[str, str]:
        """A copy of the raised problems, ``{name: reason}``; empty when healthy."""
        with self._lock:
            return dict(self._problems)

    @property
    def ok(self) -> bool:
        with self._lock:
            return not self._problems

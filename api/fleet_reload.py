"""The API process follows the fleet file, as ingest does (docs/operations.md, "Onboarding
without restarts"): a new asset can get shipments, traces and reports without a restart.

Guarantees:
- The file is looked at every ``fleet_reload_s`` seconds (``ingest.fleet_watch.FleetWatch``:
  stat, then SHA-256, then a full check: the fleet schema and every compartment's profile). A
  file that does not check is refused and logged; the fleet in force stays.
- A checked fleet is put in force by ``wire(fleet)``, which rebuilds the request-facing
  services on it and swaps them into the app: requests that start afterwards use the new fleet,
  a request already running finishes on the one it started with.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Container
from pathlib import Path

from coldchain.fleet import Fleet
from ingest.fleet_watch import FleetWatch, check_profiles
from ingest.health import Health

__all__ = ["FleetReload"]

log = logging.getLogger("coldchain.api.fleet")


class FleetReload:
    """``start()`` a daemon thread that polls ``path`` every ``interval_s`` (> 0) seconds and
    calls ``wire(fleet)`` with each new checked fleet; ``stop()``. ``problems()`` is what the
    last refused file left (empty once a good one is in force)."""

    def __init__(
        self,
        path: Path,
        current: Fleet,
        profiles: Container[str],
        wire: Callable[[Fleet], None],
        *,
        interval_s: float,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._stopping = threading.Event()
        self._health = Health()
        self._interval_s = interval_s
        self._wire = wire
        self._watch = FleetWatch(
            path,
            self._health,
            self._stopping,
            current=current,
            interval_s=interval_s,
            check=lambda fleet: check_profiles(fleet, profiles),
        )
        self._thread = threading.Thread(target=self._run, name="api-fleet-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5.0)

    def problems(self) -> dict[str, str]:
        return dict(self._health.problems())

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self._watch.poll()
                fleet = self._watch.take()
                if fleet is not None:
                    self._wire(fleet)
                    log.warning("API: fleet reloaded (%d assets)", len(fleet.assets))
            except Exception:  # the fleet in force stays; the next poll tries again
                log.exception("API: fleet reload failed; the fleet in force stays")

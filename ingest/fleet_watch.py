"""Reloading the fleet file while ingest runs (docs/operations.md, "Onboarding without
restarts").

Guarantees:
- The file is looked at every ``interval_s`` (its size, mtime and inode; on a change its
  SHA-256) and read at once on ``request()`` (SIGHUP). A file that holds the fleet in force
  (same content, or the same fleet written differently) changes nothing.
- A new content is checked in full off the hot path (YAML, the fleet schema, devices registered
  twice, and each compartment's profile known to the rules) before anything uses it. A file that
  fails is refused: the fleet in force stays, the log says why at ERROR and ``/healthz`` is red
  with ``fleet_rejected: <file>: <problem>`` until the file is fixed (or put back), so a
  half-written file or a typo never takes devices out of service.
- A checked fleet is handed over once (``take()``); the pipeline swaps it in between two groups,
  so every message of a group is validated against one fleet.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Container
from pathlib import Path

from coldchain.exceptions import ColdchainError
from coldchain.fleet import Fleet, parse_fleet
from ingest.health import Health

__all__ = ["FleetWatch", "check_profiles"]

log = logging.getLogger("coldchain.ingest.fleet")

PROBLEM = "fleet_rejected"


def check_profiles(fleet: Fleet, profiles: Container[str]) -> None:
    """Raise ColdchainError naming the first compartment whose profile is not in ``profiles``
    (the presets plus ``COLDCHAIN_PROFILES_PATH``)."""
    for asset in fleet.assets.values():
        for comp in asset.compartments:
            if comp.profile not in profiles:
                raise ColdchainError(
                    f"assets.{asset.id}.compartments.{comp.id}.profile: unknown profile "
                    f"{comp.profile!r} (not a preset nor in COLDCHAIN_PROFILES_PATH)"
                )


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


class FleetWatch:
    """Run ``run()`` in its own thread; ``take()`` from the pipeline between groups.

    ``check(fleet)`` raises ColdchainError for a fleet the service cannot use (e.g.
    ``check_profiles``). ``interval_s`` 0: only ``request()`` reloads.
    """

    def __init__(
        self,
        path: Path,
        health: Health,
        stopping: threading.Event,
        *,
        current: Fleet | None = None,
        interval_s: float = 5.0,
        check: Callable[[Fleet], None] = lambda fleet: None,
    ) -> None:
        """``current``: the fleet in force (loaded from ``path`` at start)."""
        self.path = path
        self._health = health
        self._stopping = stopping
        self._interval_s = interval_s
        self._check = check
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._ready: Fleet | None = None
        # Changes are noticed from here on; a request (SIGHUP) compares the file's fleet with
        # the one in force instead, so it also puts in force a file that changed before.
        self._stat = _stat(path)
        self._sha = self._digest()
        self._in_force = None if current is None else current.to_yaml()
        self.reloads_total = 0
        self.rejected_total = 0
        self.devices = 0 if current is None else len(current.device_ids)

    def _digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def request(self) -> None:
        """Reload now (safe from a signal handler: it only sets an event); also wakes ``run``
        to see that the service stops."""
        self._wake.set()

    def take(self) -> Fleet | None:
        """The newly checked fleet, once (the caller puts it in force: it counts as reloaded
        from now); None when there is none."""
        if self._ready is None:  # read without the lock: the pipeline's hot path
            return None
        with self._lock:
            fleet, self._ready = self._ready, None
        if fleet is not None:
            self.reloads_total += 1
            self.devices = len(fleet.device_ids)
        return fleet

    def stats(self) -> dict[str, object]:
        """Reloads put in force, files refused, devices of the fleet in force."""
        return {
            "fleet_reloads": self.reloads_total,
            "fleet_rejected": self.rejected_total,
            "fleet_devices": self.devices,
        }

    def run(self) -> None:
        while not self._stopping.is_set():
            forced = self._wake.wait(self._interval_s or None)
            self._wake.clear()
            if self._stopping.is_set():
                return
            self.poll(force=forced)

    def poll(self, *, force: bool = False) -> Fleet | None:
        """Look at the file once (``force``: read it even if its stat did not change); returns
        the fleet it made ready, if any."""
        stat = _stat(self.path)
        if stat == self._stat and not force:
            return None
        self._stat = stat
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            self._refuse(f"cannot read it: {exc}")
            return None
        sha = hashlib.sha256(data).hexdigest()
        if sha == self._sha and not force:
            self._health.clear(PROBLEM)  # put back as it was: nothing to do
            return None
        try:
            fleet = parse_fleet(data.decode("utf-8"), self.path)
            self._check(fleet)
        except (ColdchainError, UnicodeDecodeError) as exc:
            self._refuse(str(exc).removeprefix(f"fleet file {self.path}: "))
            return None
        self._sha = sha
        self._health.clear(PROBLEM)
        text = fleet.to_yaml()
        if text == self._in_force:
            log.warning("fleet file %s re-read: the fleet in force, unchanged", self.path)
            return None
        with self._lock:
            self._ready = fleet
        self._in_force = text
        log.warning(
            "fleet file %s reloaded: %d assets, %d devices; applied from the next group",
            self.path,
            len(fleet.assets),
            len(fleet.device_ids),
        )
        return fleet

    def _refuse(self, why: str) -> None:
        self.rejected_total += 1
        self._health.raise_problem(
            PROBLEM, f"{self.path}: {why}; the fleet loaded before stays in force"
        )

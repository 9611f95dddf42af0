"""What the rules stage (ingest.evaluate) writes: excursion changes with the checkpoint and their
alerts, integrity evidence, the checkpoint alone, and the rules journal's prune after one.

Guarantees:
- Changes, the checkpoint that covers them and their alerts go in one registry transaction;
  changes the registry did not take (it failed) stay queued, in order, and the next round
  retries them whole. Changes refused for good (a constraint) are counted and logged, never
  retried: they would block every later change.
- Integrity evidence is recorded before any checkpoint moves past it.
- The journal is pruned through a saved checkpoint's ``fed_through`` at most once per
  ``checkpoint_s`` (each prune is a spool transaction; for a rules worker, its MQTT
  acknowledgement); a prune skipped for that reason is owed (``prune_owed``) and done later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from coldchain.exceptions import ColdchainError, RecordRejected
from coldchain.rules import Change, Rewrite
from ingest.outbox import alert_message
from ingest.rules_io import excursion_line
from registry import Registry

__all__ = ["RulesRecorder"]

log = logging.getLogger("coldchain.ingest.evaluate")


class RulesRecorder:
    """One stage's writes under checkpoint ``key``. ``dirty``: the engine moved since the last
    checkpoint written (the stage sets it); ``unapplied`` and ``evidence`` are queued writes."""

    def __init__(
        self,
        registry: Registry,
        key: str,
        *,
        prune_journal: Callable[[int], None],
        alerts_queued: Callable[[], None],
        annotate: Callable[[list[str]], None],
        checkpoint_s: float,
    ) -> None:
        self._registry = registry
        self._key = key
        self._prune_journal = prune_journal
        self._alerts_queued = alerts_queued
        self._annotate = annotate
        self._checkpoint_s = checkpoint_s
        self.unapplied: list[Change] = []
        self.evidence: list[Rewrite] = []
        self.dirty = False
        self.pruned = (0, 0.0)  # (row, monotonic time) of the last journal prune
        self.saved_fed = 0  # fed_through of the last checkpoint saved
        self.changes_total = 0
        self.rejected_total = 0

    def prune_owed(self) -> bool:
        return self.saved_fed > self.pruned[0]

    def flush_evidence(self) -> None:
        """Integrity evidence to the registry (before any checkpoint moves past it)."""
        if not self.evidence:
            return
        try:
            self._registry.record_rewrites(self.evidence)
        except RecordRejected as exc:
            self.rejected_total += len(self.evidence)
            log.error("registry refused %d rewrite records: %s", len(self.evidence), exc)
        self.evidence = []

    def apply(self, changes: list[Change], state: Callable[[], dict[str, object]]) -> None:
        """Record ``changes`` (and those still queued) with the checkpoint ``state()`` and their
        alerts in one transaction, then announce them. Raises ColdchainError (kept queued)."""
        self.unapplied.extend(changes)
        self.flush_evidence()
        if not self.unapplied:
            return
        changes, self.unapplied = self.unapplied, []
        checkpoint = state()
        try:
            self._registry.upsert_excursions(
                [c.excursion for c in changes],
                checkpoints={self._key: checkpoint},
                alerts=[alert_message(c) for c in changes],
            )
        except RecordRejected as exc:
            self.rejected_total += len(changes)
            log.error("registry refused %d excursion changes: %s", len(changes), exc)
            return
        except ColdchainError:
            self.unapplied = changes + self.unapplied
            raise
        self.dirty = False
        self.after_checkpoint(checkpoint)
        self._alerts_queued()
        self._annotate([excursion_line(c) for c in changes])
        self.changes_total += len(changes)

    def save_checkpoint(self, state: Callable[[], dict[str, object]], prune: bool = False) -> None:
        """The checkpoint alone (after the evidence); ``prune``: prune the journal now."""
        self.flush_evidence()
        checkpoint = state()
        self._registry.save_checkpoint(self._key, checkpoint)
        self.dirty = False
        self.after_checkpoint(checkpoint, prune)

    def after_checkpoint(self, state: Mapping[str, object], force: bool = False) -> None:
        """The journal is not needed through the checkpoint's ``fed_through`` any more (at
        most one prune per checkpoint interval unless ``force``)."""
        fed = state.get("fed_through")
        if isinstance(fed, int):
            self.saved_fed = max(self.saved_fed, fed)
        row, at = self.pruned
        mono = time.monotonic()
        if isinstance(fed, int) and fed > row and (force or mono - at >= self._checkpoint_s):
            try:
                self._prune_journal(fed)
                self.pruned = (fed, mono)
            except ColdchainError as exc:  # only costs a longer recompute after a restart
                log.warning("rules journal prune failed: %s", exc)

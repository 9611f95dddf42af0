"""``Registry`` methods for rules-engine checkpoints (not audited; registry/checkpoints.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from registry import checkpoints
from registry.facade.base import RegistryBase, require_text
from registry.leases import Fence, check_fence

__all__ = ["CheckpointMethods", "save_checkpoint_in"]


def save_checkpoint_in(session: Session, key: str, state: Mapping[str, Any], now: int) -> None:
    """Save one checkpoint in the caller's transaction (RecordRejected: blank key, non-JSON)."""
    require_text(key, "checkpoint key")
    checkpoints.save(session, key, state, now)


class CheckpointMethods(RegistryBase):
    def save_checkpoints(
        self, states: Mapping[str, Mapping[str, Any]], *, fence: Fence | None = None
    ) -> None:
        """Save several checkpoints in one transaction (JSON-able dicts; else RecordRejected).

        ``fence``: only while that lease is held under its token, checked in the same
        transaction (registry/leases.py); else LeaseLost and nothing is saved."""
        now = self._clock()
        with self._read("saving checkpoints") as session, session.begin():
            if fence is not None:
                check_fence(session, fence)
            for key, state in states.items():
                save_checkpoint_in(session, key, state, now)

    def save_checkpoint(
        self, key: str, state: Mapping[str, Any], *, fence: Fence | None = None
    ) -> None:
        self.save_checkpoints({key: state}, fence=fence)

    def load_checkpoint(self, key: str) -> dict[str, Any] | None:
        with self._read("loading a checkpoint") as session:
            return checkpoints.load(session, key)

    def load_checkpoints(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """All checkpoints whose key starts with ``prefix`` (all of them by default)."""
        with self._read("loading checkpoints") as session:
            return checkpoints.load_prefix(session, prefix)

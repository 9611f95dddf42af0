"""Auditing reads: a regulator's trace, report or export is an entry of the read chain.

Routes take the dependency, start the entry once the shipment is known to be visible, compute
the answer meanwhile, and wait for the entry before returning::

    @router.get("/shipments/{shipment_id:path}/report.pdf")
    def report_pdf(shipment_id: str, res: Res, principal: Authed, audit_read: AuditRead):
        visible_shipment(res.registry, principal, shipment_id)          # 404 off scope
        with audit_read.begin(principal, "report.pdf", shipment_id, tz=tz):
            pdf = ...                                  # overlaps the append
        return Response(pdf, ...)                      # the entry is committed here (or 503)

(``audit_read(principal, what, target, **detail)`` does both at once, for an answer that
costs nothing to compute.) The entry records the *request*: it is committed before any answer
leaves, so nothing is served that the log does not show; a request that then fails is still
recorded (an access attempt is worth keeping). If the registry cannot record it the request
fails (503). The append runs on a small thread pool so it overlaps the trace's own reads (an
audited read then costs little more than the unaudited one even while ingest writes: the
appends of concurrent readers share commits, registry/audit_trail.py). Reads by other roles
are not recorded (issue 10: regulator reads), nor any by an app built with
``audit_reads=False`` (the benchmark's baseline).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Annotated, Any

from fastapi import Depends, Request

from api.auth import Principal
from registry import AuditEntry, AuditTrail

__all__ = ["AUDITED_READ_ROLES", "AuditRead", "PendingRead", "ReadAudit", "read_audit"]

AUDITED_READ_ROLES = frozenset({"regulator"})


class PendingRead:
    """A read entry being appended; ``wait()`` returns once it is committed (or raises its
    StoreError/RecordRejected). A no-op for reads that are not audited. As a context manager
    it waits on leaving, also when the block raised (the attempt is committed before the
    error answer)."""

    def __init__(self, future: Future[AuditEntry] | None) -> None:
        self._future = future

    def wait(self) -> AuditEntry | None:
        return None if self._future is None else self._future.result()

    def __enter__(self) -> PendingRead:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wait()


class ReadAudit:
    """``begin(principal, what, target, **detail)``: start recording that ``principal`` read
    ``what`` (``trace``, ``trace.csv``, ``report.html``, ``report.pdf``, ``epcis``) of shipment
    ``target``. The entry: actor = the key id, action ``read.<what>``, entity ``shipment``,
    payload {key_id, role, what, **detail} (JSON values: the request's parameters)."""

    def __init__(self, trail: AuditTrail | None, workers: int = 8) -> None:
        self._trail = trail  # None: reads are not audited (benchmark baseline)
        self._pool = (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read-audit")
            if trail is not None
            else None
        )

    def begin(self, principal: Principal, what: str, target: str, **detail: Any) -> PendingRead:
        if self._trail is None or self._pool is None or principal.role not in AUDITED_READ_ROLES:
            return PendingRead(None)
        return PendingRead(
            self._pool.submit(
                self._trail.record_read,
                actor=principal.actor,
                action=f"read.{what}",
                entity="shipment",
                entity_id=target,
                payload={"key_id": principal.key_id, "role": principal.role, "what": what} | detail,
            )
        )

    def __call__(self, principal: Principal, what: str, target: str, **detail: Any) -> None:
        self.begin(principal, what, target, **detail).wait()

    def close(self) -> None:
        """Finish the appends under way (the app's shutdown)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def read_audit(request: Request) -> ReadAudit:
    """The app's ReadAudit (set by its lifespan)."""
    return request.app.state.read_audit  # type: ignore[no-any-return]


AuditRead = Annotated[ReadAudit, Depends(read_audit)]

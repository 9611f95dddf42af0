"""Auditing reads: a regulator's trace, report or export is an entry of the read chain.

Routes take the dependency and call it once they have the answer, before returning it::

    @router.get("/shipments/{shipment_id:path}/report.pdf")
    def report_pdf(shipment_id: str, res: Res, principal: Authed, audit_read: AuditRead):
        shipment = visible_shipment(res.registry, principal, shipment_id)   # 404 off scope
        pdf = ...
        audit_read(principal, "report.pdf", shipment_id, tz=tz)
        return Response(pdf, ...)

``audit_read`` returns once the entry is committed (registry/audit_trail.py, group commit), so
no answer leaves that the log does not show; if the registry cannot record it the request fails
(503). Reads by other roles are not recorded (issue 10: regulator reads), nor, in the
benchmark, reads by an app built with ``audit_reads=False``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from api.auth import Principal
from registry import AuditTrail

__all__ = ["AUDITED_READ_ROLES", "AuditRead", "ReadAudit", "read_audit"]

AUDITED_READ_ROLES = frozenset({"regulator"})


class ReadAudit:
    """``audit_read(principal, what, target, **detail)``: record that ``principal`` read
    ``what`` (``trace``, ``trace.csv``, ``report.html``, ``report.pdf``, ``epcis``) of shipment
    ``target``. The entry: actor = the key id, action ``read.<what>``, entity ``shipment``,
    payload {key_id, role, what, **detail} (JSON values; the request's parameters)."""

    def __init__(self, trail: AuditTrail | None) -> None:
        self._trail = trail  # None: reads are not audited (benchmark baseline)

    def __call__(self, principal: Principal, what: str, target: str, **detail: Any) -> None:
        if self._trail is None or principal.role not in AUDITED_READ_ROLES:
            return
        self._trail.record_read(
            actor=principal.actor,
            action=f"read.{what}",
            entity="shipment",
            entity_id=target,
            payload={"key_id": principal.key_id, "role": principal.role, "what": what} | detail,
        )


def read_audit(request: Request) -> ReadAudit:
    """The app's ReadAudit (set by its lifespan)."""
    return request.app.state.read_audit  # type: ignore[no-any-return]


AuditRead = Annotated[ReadAudit, Depends(read_audit)]

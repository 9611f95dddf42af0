"""Identifiers: every stored shipment, asset and compartment id brought in line with
coldchain.identifiers (one definition for the telemetry contract, the registry and the API).

Before this revision the registry took any non-blank string up to 128 characters as a shipment
id and up to 64 as an asset or compartment id, while MQTT custody scans took only 64 characters
without ``/`` or ``:``; an id with a space or a newline could be stored and then neither fetched
nor traced. The schema does not change (shipment ids stay ``String(128)``; the rules are checked
by the code, which no portable CHECK constraint could express). What this revision does, in one
transaction:

- a shipment id that breaks the rules is **renamed** to the nearest legal id: surrounding
  whitespace dropped, then every character outside GS1 character set 82 percent-encoded as
  UTF-8 (RFC 3986 section 2.1: ``"LOT 7"`` -> ``"LOT%207"``), then, if the ``/`` structure is
  still not a clean path (empty, ``.`` or ``..`` segment, a last segment ``trace``), every
  ``/`` encoded as ``%2F``. Its custody events follow. The audit log gets a
  ``shipment.rename`` entry ``{"from", "to"}`` (actor ``migration-0003``), so the old id stays
  findable and the hash chain records the change;
- an asset or compartment id of a custody event or profile assignment with surrounding
  whitespace is trimmed (audit entries ``custody.repair_ids`` / ``profile.repair_ids``);
- anything else it cannot repair (an id over the length limit after encoding, a rename onto an
  existing id, an asset id that is not an identifier even trimmed, a repair that would duplicate
  another custody event) stops the migration with every offending row named, and nothing
  changes: correct those rows by hand and run ``coldchain init`` again.

A database whose ids already fit (every database written through coldchain's own clients since
the fleet file and MQTT existed) is only read. Downgrading changes nothing back: the renames are
facts recorded in the audit log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from alembic import op

from coldchain.exceptions import RecordRejected
from coldchain.identifiers import (
    SHIPMENT_ID_CHARS,
    identifier_problem,
    is_identifier,
    shipment_id_problem,
)
from registry.audit import canonical_json, entry_hash

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTOR = "migration-0003"
_MAX_LISTED = 20

# The tables as this revision knows them (not the ORM models, which later revisions change).
_shipments = sa.table(
    "shipments",
    sa.column("id", sa.String),
    sa.column("profile", sa.String),
    sa.column("description", sa.Text),
    sa.column("origin", sa.String),
    sa.column("destination", sa.String),
    sa.column("created_ms", sa.BigInteger),
)
_custody = sa.table(
    "custody_events",
    sa.column("id", sa.Integer),
    sa.column("shipment_id", sa.String),
    sa.column("action", sa.String),
    sa.column("asset_id", sa.String),
    sa.column("compartment_id", sa.String),
    sa.column("ts_ms", sa.BigInteger),
)
_profiles = sa.table(
    "profile_assignments",
    sa.column("id", sa.Integer),
    sa.column("asset_id", sa.String),
    sa.column("compartment_id", sa.String),
)
_audit = sa.table(
    "audit_log",
    sa.column("seq", sa.BigInteger),
    sa.column("ts_ms", sa.BigInteger),
    sa.column("actor", sa.String),
    sa.column("action", sa.String),
    sa.column("entity", sa.String),
    sa.column("entity_id", sa.String),
    sa.column("payload", sa.Text),
    sa.column("prev_hash", sa.String),
    sa.column("hash", sa.String),
)
_head = sa.table(
    "audit_head", sa.column("id", sa.Integer), sa.column("seq", sa.BigInteger), sa.column("hash")
)


def repaired_shipment_id(value: str) -> str | None:
    """The legal id a stored shipment id becomes (itself if it is legal), None if none fits."""
    text = value.strip()
    if not text:
        return None
    if shipment_id_problem(text) is None:
        return text
    encoded = "".join(ch if ch in SHIPMENT_ID_CHARS else quote(ch, safe="") for ch in text)
    if shipment_id_problem(encoded) is not None:
        encoded = encoded.replace("/", "%2F")
        if encoded in (".", ".."):
            encoded = encoded.replace(".", "%2E")
    return encoded if shipment_id_problem(encoded) is None else None


def repaired_identifier(value: str | None) -> str | None:
    """A stored asset/compartment id trimmed if that makes it legal; None if nothing does."""
    if value is None:
        return None
    trimmed = value.strip()
    return trimmed if is_identifier(trimmed) else None


class _Audit:
    """Appends entries to the hash chain inside the migration's transaction."""

    def __init__(self, conn: sa.Connection, now_ms: int) -> None:
        self._conn = conn
        self._now = now_ms
        # The writers' lock first, as every registry writer takes it (registry/audit.py).
        conn.execute(sa.update(_head).where(_head.c.id == 1).values(seq=_head.c.seq))
        row = conn.execute(sa.select(_head.c.seq, _head.c.hash).where(_head.c.id == 1)).one()
        self._seq, self._hash = int(row.seq), str(row.hash)

    def append(self, action: str, entity: str, entity_id: str, payload: dict[str, Any]) -> None:
        seq = self._seq + 1
        text = canonical_json(payload)
        digest = entry_hash(
            self._hash,
            seq=seq,
            ts_ms=self._now,
            actor=ACTOR,
            action=action,
            entity=entity,
            entity_id=entity_id,
            payload=text,
        )
        self._conn.execute(
            sa.insert(_audit).values(
                seq=seq,
                ts_ms=self._now,
                actor=ACTOR,
                action=action,
                entity=entity,
                entity_id=entity_id,
                payload=text,
                prev_hash=self._hash,
                hash=digest,
            )
        )
        self._conn.execute(sa.update(_head).where(_head.c.id == 1).values(seq=seq, hash=digest))
        self._seq, self._hash = seq, digest


def _plan_renames(ids: list[str], problems: list[str]) -> dict[str, str]:
    taken = set(ids)
    renames: dict[str, str] = {}
    for sid in sorted(ids):
        problem = shipment_id_problem(sid)
        if problem is None:
            continue
        new = repaired_shipment_id(sid)
        if new is None:
            problems.append(f"shipment {sid!r}: its id {problem}, and no repair fits")
        elif new in taken:
            problems.append(f"shipment {sid!r}: its id {problem}; the repaired id {new!r} is taken")
        else:
            renames[sid] = new
            taken.add(new)
    return renames


def _id_repairs(
    rows: Sequence[Any], table: str, problems: list[str]
) -> dict[int, dict[str, tuple[str, str]]]:
    """Row id -> {column: (old, new)} for the asset/compartment ids that need trimming."""
    repairs: dict[int, dict[str, tuple[str, str]]] = {}
    for row in rows:
        for column in ("asset_id", "compartment_id"):
            value = getattr(row, column)
            if value is None or is_identifier(value):
                continue
            new = repaired_identifier(value)
            if new is None:
                problems.append(
                    f"{table} row {row.id}: {column} {value!r} {identifier_problem(value)}"
                )
            else:
                repairs.setdefault(row.id, {})[column] = (value, new)
    return repairs


def upgrade() -> None:
    conn = op.get_bind()
    problems: list[str] = []
    renames = _plan_renames([r.id for r in conn.execute(sa.select(_shipments.c.id))], problems)
    custody_rows = conn.execute(sa.select(_custody)).all()
    custody_fix = _id_repairs(custody_rows, "custody_events", problems)
    profile_rows = conn.execute(sa.select(_profiles)).all()
    profile_fix = _id_repairs(profile_rows, "profile_assignments", problems)
    # A repaired custody event must not become a copy of another (their unique key).
    keys = {(r.shipment_id, r.action, r.ts_ms, r.asset_id): r.id for r in custody_rows}
    for row in custody_rows:
        if row.id not in custody_fix and row.shipment_id not in renames:
            continue
        asset = custody_fix.get(row.id, {}).get("asset_id", (row.asset_id, row.asset_id))[1]
        key = (renames.get(row.shipment_id, row.shipment_id), row.action, row.ts_ms, asset)
        other = keys.get(key)
        if other is not None and other != row.id:
            problems.append(f"custody_events row {row.id}: repaired, it would repeat row {other}")
    if problems:
        more = len(problems) - _MAX_LISTED
        listed = "; ".join(problems[:_MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")
        raise RecordRejected(
            f"registry migration 0003 (identifiers) stopped and changed nothing: {listed}. "
            "Correct or remove these rows by hand, then run `coldchain init` again "
            "(docs/registry.md, 'Migrations', '0003: identifiers')."
        )
    if not (renames or custody_fix or profile_fix):
        return
    audit = _Audit(conn, time.time_ns() // 1_000_000)
    for old, new in sorted(renames.items()):
        row = conn.execute(sa.select(_shipments).where(_shipments.c.id == old)).one()
        conn.execute(sa.insert(_shipments).values(dict(row._mapping) | {"id": new}))
        conn.execute(
            sa.update(_custody).where(_custody.c.shipment_id == old).values(shipment_id=new)
        )
        conn.execute(sa.delete(_shipments).where(_shipments.c.id == old))
        audit.append("shipment.rename", "shipment", new, {"from": old, "to": new})
    by_id = {r.id: r for r in custody_rows}
    for row_id, changes in sorted(custody_fix.items()):
        conn.execute(
            sa.update(_custody)
            .where(_custody.c.id == row_id)
            .values({column: new for column, (_, new) in changes.items()})
        )
        shipment = renames.get(by_id[row_id].shipment_id, by_id[row_id].shipment_id)
        payload = {"custody_event_id": row_id} | _changes(changes)
        audit.append("custody.repair_ids", "shipment", shipment, payload)
    profiles = {r.id: r for r in profile_rows}
    for row_id, changes in sorted(profile_fix.items()):
        conn.execute(
            sa.update(_profiles)
            .where(_profiles.c.id == row_id)
            .values({column: new for column, (_, new) in changes.items()})
        )
        row = profiles[row_id]
        asset = changes.get("asset_id", (row.asset_id, row.asset_id))[1]
        comp = changes.get("compartment_id", (row.compartment_id, row.compartment_id))[1]
        payload = {"profile_assignment_id": row_id} | _changes(changes)
        audit.append("profile.repair_ids", "compartment", f"{asset}/{comp}", payload)


def _changes(changes: dict[str, tuple[str, str]]) -> dict[str, Any]:
    return {column: {"from": old, "to": new} for column, (old, new) in changes.items()}


def downgrade() -> None:
    # Nothing to undo in the schema; renamed ids stay renamed (the audit log says what they were).
    pass

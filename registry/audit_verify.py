"""Verification of everything the audit log vouches for, in one database snapshot.

``verify_all`` checks, in this order:

1. the writes chain (``audit_log``): every link, the head row, the anchor if given;
2. the reads chain (``audit_read_log``): the same;
3. the records (registry/audit_records.py): every row of every protected table against the
   latest digest the writes chain holds for it: a row edited, inserted or deleted outside the
   registry is named. Skipped when the writes chain itself is broken (its digests cannot be
   trusted then; the chain's problem is the one to fix);
4. the guards (registry/audit_guard.py): every append-only / head trigger present and
   unaltered.

The report lists every problem found, the first bad row first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import audit, audit_guard, audit_records
from registry.records import ChainReport

__all__ = ["MAX_LISTED", "AuditReport", "verify_all"]

MAX_LISTED = 20  # record problems listed one by one; the rest are counted
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What ``Registry.verify_audit`` found. ``problems`` is empty iff all is well; its first
    item names the first bad row."""

    writes: ChainReport
    reads: ChainReport
    records_checked: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [str(self.writes), str(self.reads)]
        if self.writes.ok:
            lines.append(f"records: {self.records_checked} rows compared with the writes chain")
        if self.ok:
            lines.append("audit intact")
        else:
            lines.append(f"audit NOT intact: {len(self.problems)} problem(s), first: ")
            lines[-1] += self.problems[0]
            lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def verify_all(
    session: Session,
    *,
    anchor: tuple[int, str] | None = None,
    reads_anchor: tuple[int, str] | None = None,
) -> AuditReport:
    """Verify chains, guards and records (module doc). Read-only."""
    # table -> key json -> (seq, digest or None for deleted): the latest audited state.
    audited: dict[str, dict[str, tuple[int, str | None]]] = {}

    def collect(seq: int, payload: str) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            return  # cannot happen for an intact entry written by the registry
        items = body.get(audit.RECORDS_KEY) if isinstance(body, dict) else None
        for item in items or ():
            table = audited.setdefault(str(item["table"]), {})
            table[audit_records.key_json(item["key"])] = (seq, item["sha256"])

    writes = audit.verify_chain(session, anchor=anchor, chain=audit.WRITES, on_entry=collect)
    reads = audit.verify_chain(session, anchor=reads_anchor, chain=audit.READS)
    problems = [f"writes chain, {_chain_problem(writes)}"] if not writes.ok else []
    if not reads.ok:
        problems.append(f"reads chain, {_chain_problem(reads)}")
    checked = 0
    if writes.ok:
        checked, record_problems = _compare_records(session, audited)
        problems += record_problems
    else:
        problems.append("records not compared with the tables: the writes chain is broken")
    problems += audit_guard.check_guards(session.connection())
    return AuditReport(writes, reads, checked, tuple(problems))


def _chain_problem(report: ChainReport) -> str:
    return f"seq {report.bad_seq}: {report.problem}"


def _compare_records(
    session: Session, audited: dict[str, dict[str, tuple[int, str | None]]]
) -> tuple[int, list[str]]:
    problems: list[str] = []
    extra = 0
    checked = 0

    def found(problem: str) -> None:
        nonlocal extra
        if len(problems) < MAX_LISTED:
            problems.append(problem)
        else:
            extra += 1

    for table in audit_records.protected_tables():
        latest = audited.get(table.name, {})
        pk = list(table.primary_key.columns)
        result = session.execute(select(table).order_by(*pk))
        seen: set[str] = set()
        while batch := result.mappings().fetchmany(_CHUNK):
            for row in batch:
                checked += 1
                values = [row[c.name] for c in pk]
                key = audit_records.key_json(values)
                seen.add(key)
                label = f"{table.name} row {_shown(values)}"
                last = latest.get(key)
                if last is None:
                    found(f"{label}: not in the audit log (written outside the registry)")
                    continue
                seq, digest = last
                if digest is None:
                    found(f"{label}: deleted at writes seq {seq} but present again")
                elif digest != audit_records.row_digest(table.name, row):
                    found(
                        f"{label}: differs from its last audited state (writes seq {seq}): "
                        "edited outside the registry"
                    )
        for key, (seq, digest) in sorted(latest.items(), key=lambda item: item[1][0]):
            if digest is not None and key not in seen:
                found(
                    f"{table.name} row {_shown(json.loads(key))}: audited at writes seq {seq} "
                    "but missing (deleted outside the registry)"
                )
    if extra:
        problems.append(f"... and {extra} more rows that do not match the audit log")
    return checked, problems


def _shown(values: list[object]) -> str:
    text = ", ".join(repr(v) for v in values)
    return text if len(text) <= 140 else text[:137] + "..."

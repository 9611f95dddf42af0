"""Late data: merge a recomputed window with what was reported before.

After a device backlog lands in a window that streaming already evaluated, the window is
recomputed in batch from the stored series. ``merge`` compares the excursions reported before
(from the registry) with the recomputed ones and yields only the upserts:

* same id, same content                        -> nothing;
* same id, changed (end, severity, peak...)    -> ``closed`` / ``escalated`` / ``updated``,
  keeping the original ``detected_ms`` and ``detected_late`` (``escalated`` then ``closed``
  when it rose and ended inside the window);
* new id starting inside the window            -> ``opened`` (then ``escalated`` if it rose,
  ``closed`` if already over) with ``detected_late=True`` and ``detected_ms=now_ms``;
* previously reported data gap, gone now       -> ``recovered`` (the backlog filled it);
* previously reported other excursion, gone    -> ``superseded`` (status closed,
  ``superseded=True``): e.g. its start moved earlier because the backlog showed an earlier onset.

Excursions that start before ``from_ms`` lie before the window, where the recompute's history
is truncated (it starts ``lookback`` earlier from a fresh state). There, a recomputed excursion
only updates an identical id, or *continues* a previously reported excursion of the same rule
that was still open (``continuations``): the recompute could not see its true start, so the
previous start (and id) is kept and the recomputed end/status/severity applied. An excursion
whose condition began before the window but which opened inside it (a rule's delay elapsed at
or after ``from_ms``: the recompute's ``detected_ms``) is new, announced like one starting in
the window. A previous open
excursion before the window that the recompute neither reproduces nor continues is closed at
``from_ms``. Closed previous excursions before the window are never touched.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import replace

from coldchain.rules.evaluator import Change, ChangeKind
from coldchain.rules.excursion import Excursion

__all__ = ["continuations", "merge"]

_SEV = {"info": 0, "warning": 1, "critical": 2}


def _content(e: Excursion) -> tuple[object, ...]:
    return (
        e.status,
        e.end_ms,
        e.severity,
        e.peak_c,
        e.degree_minutes,
        e.detail,
        e.superseded,
        e.out_of_range_s,
        e.returned_ms,
    )


def continuations(
    previous: Iterable[Excursion], recomputed: Iterable[Excursion], from_ms: int
) -> dict[str, Excursion]:
    """Recomputed id -> the previous open excursion it continues (see module doc)."""
    prev = {e.id: e for e in previous}
    rec = {e.id: e for e in recomputed}
    orphans = sorted(
        (r for r in rec.values() if r.start_ms < from_ms and r.id not in prev),
        key=lambda r: (r.start_ms, r.id),
    )
    out: dict[str, Excursion] = {}
    for p in sorted(prev.values(), key=lambda e: (e.start_ms, e.id)):
        if p.status != "open" or p.start_ms >= from_ms or p.id in rec:
            continue
        for r in orphans:
            if r.rule == p.rule and r.start_ms >= p.start_ms and r.id not in out:
                out[r.id] = p
                break
    return out


def _continue(r: Excursion, p: Excursion) -> Excursion:
    return replace(
        r,
        start_ms=p.start_ms,
        id=p.id,
        detected_ms=p.detected_ms,
        detected_late=p.detected_late,
        severity=r.severity if _SEV[r.severity] >= _SEV[p.severity] else p.severity,
        degree_minutes=max(r.degree_minutes, p.degree_minutes),
        out_of_range_s=_max_or_none(r.out_of_range_s, p.out_of_range_s),
    )


def _max_or_none(a: float | None, b: float | None) -> float | None:
    """The larger known value: a continuation's recompute saw only part of the history."""
    if a is None or b is None:
        return a if b is None else b
    return max(a, b)


def merge(
    previous: Iterable[Excursion],
    recomputed: Iterable[Excursion],
    *,
    from_ms: int,
    now_ms: int,
    escalated: Collection[str] = (),
) -> list[Change]:
    """The upserts that turn ``previous`` into the recomputed truth for the window from
    ``from_ms`` on. Pure; ordered by (start_ms, id). ``escalated``: ids of recomputed
    excursions whose severity rose during the recompute (a new one is then announced opened,
    escalated, and closed if over, as streaming would have)."""
    prev = {e.id: e for e in previous}
    rec = {e.id: e for e in recomputed}
    cont = continuations(prev.values(), rec.values(), from_ms)
    out: list[Change] = []
    for eid, r in rec.items():
        p = prev.get(eid)
        if p is None and eid in cont:
            p = cont[eid]
            r = _continue(r, p)
        if p is None:
            # Before the window the history is truncated: an unreported excursion the recompute
            # opens there is not announced. One whose condition began before the window but that
            # opened inside it (its delay elapsed at ``detected_ms``, a batch evaluation's device
            # time) is new: streaming could not have announced it, and the recomputed state
            # carries it on, so it must exist before its later changes do.
            if r.start_ms < from_ms and r.detected_ms < from_ms:
                continue
            found = replace(r, detected_ms=now_ms, detected_late=True)
            # A new excursion is announced as opened, also when the recompute finds it over
            # already: then closed (or recovered) follows, so receivers see every lifecycle
            # change a live evaluation would have sent (one notification per change).
            out.append(Change("opened", found))
            if eid in escalated:
                out.append(Change("escalated", found))
            if r.status != "open":
                kind: ChangeKind = "recovered" if r.status == "recovered" else "closed"
                out.append(Change(kind, found))
            continue
        merged = replace(r, detected_ms=p.detected_ms, detected_late=p.detected_late)
        if _content(merged) == _content(p):
            continue
        if merged.status != p.status and merged.status in ("closed", "recovered"):
            kind = "closed" if merged.status == "closed" else "recovered"
            if _SEV[merged.severity] > _SEV[p.severity]:
                # It rose and ended inside the window: both changes, as streaming sends them.
                out.append(Change("escalated", merged))
        elif _SEV[merged.severity] > _SEV[p.severity]:
            kind = "escalated"
        else:
            kind = "updated"
        out.append(Change(kind, merged))
    continued = {p.id for p in cont.values()}
    for eid, p in prev.items():
        if eid in rec or eid in continued:
            continue
        if p.start_ms < from_ms:
            if p.status == "open":
                out.append(
                    Change(
                        "closed",
                        replace(
                            p,
                            status="closed",
                            end_ms=from_ms,
                            detail=_note(p.detail, "not confirmed by recomputation"),
                        ),
                    )
                )
            continue
        end = p.end_ms if p.end_ms is not None else p.start_ms
        if p.kind == "data_gap":
            if p.status != "recovered":
                out.append(
                    Change(
                        "recovered",
                        replace(
                            p,
                            status="recovered",
                            end_ms=end,
                            detail=_note(p.detail, "filled by a late backlog"),
                        ),
                    )
                )
        elif not p.superseded:
            out.append(
                Change(
                    "superseded",
                    replace(
                        p,
                        status="closed",
                        end_ms=end,
                        superseded=True,
                        detail=_note(p.detail, "superseded after late data"),
                    ),
                )
            )
    out.sort(key=lambda c: (c.excursion.start_ms, c.excursion.id))
    return out


def _note(detail: str, note: str) -> str:
    return f"{detail}; {note}" if detail else note

"""What one fault run produced, and its report against the baseline run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.e2e.faults_support.plan import Plan

__all__ = ["Outcome", "ReadingKey", "compare", "excursion_key"]

ReadingKey = tuple[str, str, int]  # (asset, sensor, ts_ms)


@dataclass
class Outcome:
    """What one run produced, as read back after it settled."""

    case: str
    plan: Plan
    ack_times: list[float | None]
    stored: dict[ReadingKey, float]
    excursions: dict[str, tuple[Any, ...]]  # id -> compared fields
    custody: Counter[tuple[str, str, str, str | None, int]]
    alerts: list[tuple[float, dict[str, Any], bool]]
    health: list[tuple[float, int | None, str]]
    fault_window: tuple[float, float] | None
    marks: dict[str, float]
    notes: dict[str, Any]
    ingest_log: str
    final_stats: dict[str, Any]

    def acked_readings(self, until: float | None = None) -> dict[ReadingKey, float]:
        out: dict[ReadingKey, float] = {}
        for m, t in zip(self.plan.messages, self.ack_times, strict=True):
            if t is not None and (until is None or t <= until):
                for asset, sensor, ts, temp in m.readings:
                    out[(asset, sensor, ts)] = temp
        return out

    def acked_custody(self) -> set[tuple[str, str, str, str | None, int]]:
        return {
            m.custody
            for m, t in zip(self.plan.messages, self.ack_times, strict=True)
            if t is not None and m.custody is not None
        }

    def lost(self) -> list[ReadingKey]:
        """Readings the broker acknowledged that InfluxDB does not hold with their value."""
        return sorted(k for k, v in self.acked_readings().items() if self.stored.get(k) != v)

    def alert_counts(self) -> Counter[tuple[str, str]]:
        """(excursion id, change) -> times ingest published it (broker redeliveries to the
        watcher, flagged DUP, are the broker's doing and not counted)."""
        return Counter((a["id"], a["change"]) for _, a, dup in self.alerts if not dup)

    def alert_repeats(self) -> tuple[dict[str, int], list[str]]:
        """Alerts ingest published more than once, by idempotency ``key``: ({key: times},
        [keys whose repeats differ in content]). A receiver keeps one notification per key, so
        an identical repeat is the outbox's at-least-once delivery, not a second alert."""
        seen: dict[str, list[dict[str, Any]]] = {}
        for _, a, dup in self.alerts:
            if not dup:
                seen.setdefault(str(a.get("key")), []).append(a)
        repeated = {k: len(v) for k, v in seen.items() if len(v) > 1}
        differ = sorted(k for k in repeated if any(a != seen[k][0] for a in seen[k][1:]))
        return repeated, differ


def excursion_key(e: Any) -> tuple[Any, ...]:
    """What must be equal between a fault run and the baseline (not wall-clock fields:
    ``detected_ms``, ``detected_late``)."""
    return (
        e.asset_id,
        e.compartment_id,
        e.rule,
        e.kind,
        e.start_ms,
        e.end_ms,
        e.status,
        e.severity,
        None if e.peak_c is None else round(e.peak_c, 2),
        round(e.degree_minutes, 2),
        e.superseded,
    )


def compare(out: Outcome, baseline: Outcome | None) -> dict[str, Any]:
    """The run's report: losses, duplicates, health, and differences from the baseline."""
    lost = out.lost()
    acked = out.acked_readings()
    alerts = out.alert_counts()
    dup_alerts = {f"{k[0]}:{k[1]}": n for k, n in alerts.items() if n > 1}
    repeated_keys, repeats_differing = out.alert_repeats()
    custody_acked = out.acked_custody()
    lost_custody = sorted(c for c in custody_acked if out.custody.get(c, 0) == 0)
    dup_custody = sorted(c for c, n in out.custody.items() if n > 1)
    red: list[tuple[float, int | None, str]] = []
    if out.fault_window is not None:
        t0, t1 = out.fault_window
        red = [s for s in out.health if t0 <= s[0] <= t1 and s[1] != 200]
    report: dict[str, Any] = {
        "case": out.case,
        "messages": len(out.plan.messages),
        "acked_messages": sum(t is not None for t in out.ack_times),
        "readings_acked": len(acked),
        "readings_stored": sum(1 for k in acked if k in out.stored),
        "lost_readings": len(lost),
        "lost_custody_scans": len(lost_custody),
        "duplicate_custody_scans": len(dup_custody),
        "excursions": len(out.excursions),
        "alerts": sum(alerts.values()),
        "duplicate_alerts": dup_alerts,
        "alerts_repeated_by_key": repeated_keys,
        "alerts_repeats_differing": repeats_differing,
        "alerts_redelivered_by_broker": sum(dup for *_, dup in out.alerts),
        "healthz_red_during_fault": bool(red) if out.fault_window is not None else None,
        "healthz_red_reasons": sorted({s[2].strip() for s in red if s[2].strip()})[:5],
        "healthz_final": out.notes.get("healthz_final"),
        **{k: v for k, v in out.notes.items() if not k.startswith("_") and k != "healthz_final"},
    }
    if baseline is not None:
        b_alerts = baseline.alert_counts()
        report["excursions_missing_vs_baseline"] = sorted(
            baseline.excursions.keys() - out.excursions.keys()
        )
        report["excursions_extra_vs_baseline"] = sorted(
            out.excursions.keys() - baseline.excursions.keys()
        )
        report["excursions_differing_vs_baseline"] = sorted(
            i
            for i in baseline.excursions.keys() & out.excursions.keys()
            if baseline.excursions[i] != out.excursions[i]
        )
        report["alerts_missing_vs_baseline"] = sorted(
            f"{i}:{c}" for i, c in b_alerts.keys() - alerts.keys()
        )
        report["alerts_extra_vs_baseline"] = sorted(
            f"{i}:{c}" for i, c in alerts.keys() - b_alerts.keys()
        )
    t_ready = out.marks.get("ingest_ready", 0.0)
    report["timeline_s"] = {k: round(v - t_ready, 2) for k, v in out.marks.items()}
    if lost:
        report["lost_examples"] = [list(k) for k in lost[:5]]
    return report

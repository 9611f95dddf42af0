"""The demo summary as text for a terminal: telemetry accounting, excursions, shipment traces,
and the score against the scenario's expectations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["render"]


def _t(ms: int | None) -> str:
    if ms is None:
        return "now"
    return datetime.fromtimestamp(ms / 1000.0, UTC).strftime("%m-%d %H:%M")


def _c(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def render(s: dict[str, Any]) -> str:
    out: list[str] = []
    w = s["window"]
    out.append(f"coldchain demo: scenario {s['scenario']}, device time {w['start']} .. {w['end']}")
    out.append(f"finished in {s['wall_s']} s; times below are UTC")
    out.append("")
    out.append("Telemetry: readings published vs stored in InfluxDB (distinct sensor x time)")
    out.append(f"  {'asset':<16} {'published':>10} {'stored':>10}  ")
    for a in s["assets"]:
        mark = "ok" if a["match"] else "MISMATCH"
        out.append(
            f"  {a['asset']:<16} {a['readings_published']:>10} {a['readings_stored']:>10}  {mark}"
        )
    dead = s["dead_letters"]
    out.append(
        "Dead letters: "
        + (", ".join(f"{k} {v}" for k, v in sorted(dead.items())) if dead else "none")
    )
    out.append("")
    out.append(f"Faults injected by the simulator ({len(s['faults'])}):")
    for f in s["faults"]:
        where = f"{f.get('asset_id', '')}/{f.get('compartment_id') or '*'}"
        out.append(f"  {f['kind']:<22} {where:<24} {f.get('start', '')} .. {f.get('end', '')}")
    out.append("")
    exc = s["excursions"]
    out.append(f"Excursions found by the rules engine ({len(exc)}):")
    for e in exc:
        late = " detected late" if e["detected_late"] else ""
        out.append(
            f"  {e['asset'] + '/' + e['compartment']:<24} {e['rule']:<12} {e['severity']:<8}"
            f" {e['status']:<9} {_t(e['start_ms'])} .. {_t(e['end_ms'])}"
            f" peak {_c(e['peak_c'])}{late}"
        )
    out.append("")
    out.append("Shipment traceability:")
    for tr in s["shipments"]:
        out.append(f"  {tr['shipment_id']} ({tr['profile']}): {tr['verdict'].upper()}")
        for r in tr["legs"]:
            leg = r["leg"]
            where = f"{leg['asset_id']}/{leg['compartment_id'] or 'dock (unmonitored)'}"
            line = f"    {_t(leg['from_ms'])} .. {_t(leg['to_ms'])}  {where:<34}"
            if leg["compartment_id"] is not None:
                line += (
                    f" n={r['readings']:<4} min {_c(r['min_c'])} max {_c(r['max_c'])}"
                    f" mean {_c(r['mean_c'])} MKT {_c(r['mkt_c'])}"
                    f" out of range {r['out_of_range_s'] / 60:.0f} min"
                )
            else:
                line += f" {r['unmonitored_s'] / 60:.0f} min unmonitored"
            out.append(line)
        for reason in tr["reasons"]:
            out.append(f"    - {reason}")
    out.append("")
    out.extend(_score(s["score"]))
    out.append("")
    a = s["audit"]
    state = "intact" if a["intact"] else "BROKEN"
    out.append(f"Audit log: {a['entries']} entries, hash chain {state}, head {a['head'][:16]}")
    return "\n".join(out)


def _score(sc: dict[str, Any]) -> list[str]:
    out = [
        f"Score against the scenario's expectations: {sc['expected']} expected, "
        f"{sc['found']} found, {sc['missed']} missed, {sc['false_alarms']} false alarms "
        f"({sc['raised']} raised; times from the start, windows +- one sample)"
    ]
    for x in sc["missed_expectations"]:
        where = f"{x['asset']}/{x['compartment'] or '*'}"
        end = "" if x["end"] is None else f", ending {x['end'][0]}..{x['end'][1]}"
        out.append(
            f"  MISSED       {x['kind']:<12} {where:<24} starting {x['start'][0]}..{x['start'][1]}"
            f"{end} (for {x['cause']})"
        )
    for e in sc["false_alarm_excursions"]:
        where = f"{e['asset']}/{e['compartment']}"
        out.append(
            f"  FALSE ALARM  {e['kind']:<12} {where:<24} {e['start']} .. {e['end'] or 'open'}"
            f" {e['rule']} {e['severity']}: {e['detail']}"
        )
    return out

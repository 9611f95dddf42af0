"""A shipment trace as CSV: one row per custody leg, every row complete on its own.

FSMA 204 asks for traceability records as an electronic sortable spreadsheet; so each row
repeats the shipment and profile, times are RFC 3339 UTC (they sort as text), and each leg
carries its own verdict. The leg's excursions are listed by id, and - in the same order - with
the time each was actually out of range and when it last came back within the limits
(``na`` for kinds without temperature limits, or still outside). Pure: no I/O.
"""

from __future__ import annotations

import csv
import io

from api.times import rfc3339
from coldchain.rules.excursion import Excursion
from coldchain.trace import LegReport, ShipmentTrace, Verdict, verdict

__all__ = ["CSV_COLUMNS", "leg_verdicts", "trace_to_csv"]

CSV_COLUMNS = (
    "shipment_id",
    "profile",
    "leg",  # 1, 2, ... in time order
    "asset_id",
    "compartment_id",  # empty: on the asset's dock, unmonitored
    "from",
    "to",  # empty: still in custody there
    "readings",
    "min_c",
    "max_c",
    "mean_c",
    "mkt_c",
    "monitored_s",
    "unmonitored_s",
    "out_of_range_s",
    "excursion_ids",  # space-separated
    "excursion_out_of_range_s",  # space-separated, aligned with excursion_ids; na: none
    "excursion_returned",  # space-separated RFC 3339, aligned with excursion_ids; na: none
    "verdict",
)

_NA = "na"  # in an aligned list: the excursion has no such value

# A cell starting with one of these is a formula to a spreadsheet; ids come from outside.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str | None) -> str:
    if value is None:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _num(value: float | None) -> str:
    return "" if value is None else str(round(value, 3))


def _leg_excursions(report: LegReport, trace: ShipmentTrace, at_ms: int) -> list[Excursion]:
    """The excursions that concern this leg: the leg's own, and for a dock leg the custody
    gaps that overlap it (a gap is the shipment's, spanning dock legs, so no leg lists it)."""
    by_id = {e.id: e for e in trace.excursions}
    found = [by_id[i] for i in report.excursion_ids if i in by_id]
    leg = report.leg
    if leg.compartment_id is None:
        stop = leg.to_ms if leg.to_ms is not None else at_ms
        found += [
            e
            for e in trace.excursions
            if e.kind == "custody_gap"
            and e.start_ms < stop
            and (e.end_ms is None or e.end_ms > leg.from_ms)
        ]
    return found


def leg_verdicts(trace: ShipmentTrace, at_ms: int) -> list[Verdict]:
    """Each leg judged alone with the shipment's rule (``coldchain.trace.verdict``); ``at_ms``
    is the time the trace was taken at (it closes an open leg)."""
    return [verdict([r], _leg_excursions(r, trace, at_ms))[0] for r in trace.legs]


def _aligned(values: list[str]) -> str:
    return " ".join(values)


def trace_to_csv(trace: ShipmentTrace, at_ms: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out)  # RFC 4180: CRLF line ends, quoting as needed
    writer.writerow(CSV_COLUMNS)
    for i, r in enumerate(trace.legs, start=1):
        found = _leg_excursions(r, trace, at_ms)
        writer.writerow(
            [
                _text(trace.shipment_id),
                _text(trace.profile),
                i,
                _text(r.leg.asset_id),
                _text(r.leg.compartment_id),
                rfc3339(r.leg.from_ms),
                rfc3339(r.leg.to_ms),
                r.readings,
                _num(r.min_c),
                _num(r.max_c),
                _num(r.mean_c),
                _num(r.mkt_c),
                _num(r.monitored_s),
                _num(r.unmonitored_s),
                _num(r.out_of_range_s),
                " ".join(e.id for e in found),
                _aligned([_num(e.out_of_range_s) or _NA for e in found]),
                _aligned([rfc3339(e.returned_ms) or _NA for e in found]),
                verdict([r], found)[0],
            ]
        )
    return out.getvalue()

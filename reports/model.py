"""The report a regulator takes away, as data: what ``render_report_html`` and
``render_report_pdf`` print, built by ``api.report.ReportService`` (or any caller) from a trace.

Times stay epoch ms UTC in the model; ``Clock`` formats them in the zone the reader asked for
(IANA name, e.g. ``Asia/Shanghai``), and the page states that zone. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from coldchain.rules.excursion import Excursion
from coldchain.series import LegSeries
from coldchain.trace import LegReport, Verdict

__all__ = [
    "TEMPERATURE_KINDS",
    "Acknowledgement",
    "Clock",
    "ReportExcursion",
    "ReportLeg",
    "ShipmentReport",
]

# Excursion kinds that say the product was too warm or too cold (shaded red on the chart).
TEMPERATURE_KINDS = frozenset({"range", "hard_limit", "cumulative", "mkt"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock:
    """Formats epoch ms in one IANA time zone. ``zone`` must be a valid key
    (``zoneinfo.ZoneInfo``; the API validates it first, 422 otherwise)."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self.tz = ZoneInfo(zone)

    def local(self, ms: int) -> datetime:
        return (_EPOCH + timedelta(milliseconds=ms)).astimezone(self.tz)

    def offset(self, ms: int) -> str:
        """``UTC+08:00`` at that instant."""
        off = self.local(ms).utcoffset() or timedelta(0)
        sign = "-" if off < timedelta(0) else "+"
        minutes = abs(int(off.total_seconds())) // 60
        return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"

    def time(self, ms: int | None, *, seconds: bool = False, ref_ms: int | None = None) -> str:
        """``2026-09-21 22:13`` (with ``seconds`` ``22:13:20``); "" for None. When the zone's
        offset then differs from its offset at ``ref_ms`` (summer time), the offset is added."""
        if ms is None:
            return ""
        text = self.local(ms).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
        if ref_ms is not None and self.offset(ms) != self.offset(ref_ms):
            text += f" ({self.offset(ms)})"
        return text


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """One acknowledgement of an excursion: who, when (epoch ms), what they said, the root cause
    they found and what they decided for the product (``disposition``: released, quarantined,
    destroyed, ...; None for acknowledgements recorded before dispositions existed). ``seq``:
    its place in the excursion's history (1, 2, ...; 0 when unknown)."""

    by: str
    at_ms: int
    comment: str = ""
    root_cause: str = ""
    disposition: str | None = None
    seq: int = 0


@dataclass(frozen=True, slots=True)
class ReportExcursion:
    """Excursion ``E<number>`` of the report with every acknowledgement, oldest first (a later
    one never replaces an earlier: the report shows the history). ``recorded`` False: computed
    by the trace (a custody gap), so there is no registry record to acknowledge."""

    number: int
    excursion: Excursion
    acknowledgements: tuple[Acknowledgement, ...] = ()
    recorded: bool = True

    @property
    def label(self) -> str:
        return f"E{self.number}"

    @property
    def temperature(self) -> bool:
        return self.excursion.kind in TEMPERATURE_KINDS


@dataclass(frozen=True, slots=True)
class ReportLeg:
    """Custody leg ``number`` (1, 2, ...): its exact statistics, its downsampled series and
    track, who held it (``asset_name`` from the fleet, ``scanned_by`` the person whose scan
    began it), its verdict judged alone, and the numbers of its excursions."""

    number: int
    stats: LegReport
    series: LegSeries
    asset_kind: str = "vehicle"
    asset_name: str = ""
    scanned_by: str = ""
    verdict: Verdict = "compliant"
    excursion_numbers: tuple[int, ...] = ()

    @property
    def monitored(self) -> bool:
        return self.stats.leg.compartment_id is not None


@dataclass(frozen=True, slots=True)
class ShipmentReport:
    """Everything one report shows. ``facts`` are the shipment record's fields as
    (label, text) in order; ``low_c``/``high_c`` the profile's range (the chart's band);
    ``at_ms`` the device time the trace is as of; ``printed_ms`` when the report was made;
    ``audit_seq``/``audit_hash`` the registry's audit-chain head then, so a printed report can
    be matched to the record (``coldchain`` verifies a chain against such an anchor)."""

    shipment_id: str
    profile: str
    verdict: Verdict
    reasons: tuple[str, ...]
    legs: tuple[ReportLeg, ...]
    excursions: tuple[ReportExcursion, ...]
    at_ms: int
    printed_ms: int
    zone: str
    resolution_s: int
    audit_seq: int
    audit_hash: str
    status: str = ""
    facts: tuple[tuple[str, str], ...] = ()
    profile_description: str = ""
    low_c: float | None = None
    high_c: float | None = None
    generator: str = "coldchain"
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def start_ms(self) -> int | None:
        return self.legs[0].stats.leg.from_ms if self.legs else None

    @property
    def end_ms(self) -> int | None:
        """The end of the last leg, or ``at_ms`` while it is open."""
        if not self.legs:
            return None
        last = self.legs[-1].stats.leg
        return last.to_ms if last.to_ms is not None else self.at_ms

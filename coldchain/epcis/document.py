"""A shipment as a GS1 EPCIS 2.0 JSON-LD ``EPCISDocument`` (docs/epcis.md).

Pure: a ``ShipmentRecord`` in, a JSON-able dict out. Every event is an ``ObjectEvent`` on the
shipment (``action`` OBSERVE) whose ``eventID`` is its GS1 canonical hash (``hashing.py``):

- one per custody scan, with a CBV business step chosen from the action and the kind of asset
  (``biz_step``), readPoint the compartment (or the asset's dock), bizLocation the asset;
- one ``sensor_reporting`` event per monitored leg at its end (or at ``as_of_ms`` while open),
  whose ``sensorElementList`` holds the leg's aggregates as GS1 recommends for a period
  (EPCIS 2.0 sensor data: ``minValue``/``maxValue``/``meanValue`` in ``CEL`` between
  ``startTime`` and ``endTime``), flagged ``ALARM_CONDITION`` when a temperature excursion
  touched the leg (``ERROR_CONDITION`` for a data gap or sensor fault without one);
- dispositions (CBV 2.0 vocabulary): ``non_conformant`` once a temperature excursion (one
  that makes the trace's verdict "excursion") has begun, else ``in_transit`` with a carrier
  and ``conformant`` in a store or delivered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from coldchain.epcis.gs1 import (
    gln_uri,
    is_gln,
    is_sscc,
    sscc_epc_urn,
    sscc_uri,
)
from coldchain.epcis.hashing import EPCIS_CONTEXT_URL, event_hash
from coldchain.epcis.records import CustodyRecord, ShipmentRecord
from coldchain.exceptions import ConfigError
from coldchain.rules.excursion import Excursion
from coldchain.trace import LegReport, verdict

if TYPE_CHECKING:
    from coldchain.fleet import Asset, Fleet

__all__ = ["COLDCHAIN_NS", "EPCIS_CONTEXT", "biz_step", "epcis_document"]

COLDCHAIN_NS = "https://coldchain.dev/ns/epcis/"
"""Namespace of coldchain's few EPCIS extension fields (``coldchain:actor``, ...)."""
EPCIS_CONTEXT: tuple[str, dict[str, str]] = (EPCIS_CONTEXT_URL, {"coldchain": COLDCHAIN_NS})
"""The ``@context`` of exported documents: GS1's EPCIS 2.0 context and coldchain's prefix."""

AssetKind = Literal["vehicle", "store"]
# Same order as registry.custody.derive_legs at one millisecond (a transfer scanned at once).
_ACTION_ORDER = {"unload": 0, "handover": 1, "load": 2, "deliver": 3}
_ERROR_KINDS = frozenset({"data_gap", "sensor_fault"})
_BASE = re.compile(
    r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*$"
)


def biz_step(action: str, kind: AssetKind, *, compartment: bool, moves: bool = True) -> str:
    """The CBV 2.0 business step (``bizStep`` vocabulary) of a custody scan.

    ``kind`` is the kind of the scan's asset, ``compartment`` whether the scan names one,
    ``moves`` whether it changes where the shipment is (a handover where it already stands only
    changes hands). The table is in docs/epcis.md; raises ``ValueError`` on an unknown action.
    """
    if action == "load":
        if kind == "vehicle":
            return "loading"
        return "storing" if compartment else "receiving"
    if action == "unload":
        return "unloading" if kind == "vehicle" else "staging_outbound"
    if action == "handover":
        if not moves:
            return "accepting"
        return "shipping" if kind == "vehicle" else "receiving"
    if action == "deliver":
        return "receiving"
    raise ValueError(f"unknown custody action {action!r}")


class _Names:
    """URIs of the shipment, assets, compartments, profiles and parties (docs/epcis.md)."""

    def __init__(self, base_uri: str, fleet: Fleet | None, sscc_prefix_length: int | None):
        base = base_uri.rstrip("/")
        if not _BASE.match(base):
            raise ConfigError(
                "epcis base_uri", base_uri, "must be an http(s) URI without query or fragment"
            )
        if sscc_prefix_length is not None and not 6 <= sscc_prefix_length <= 12:
            raise ConfigError(
                "epcis sscc_company_prefix_length", sscc_prefix_length, "must be 6..12"
            )
        self.base = base
        self.assets: dict[str, Asset] = dict(fleet.assets) if fleet is not None else {}
        self.sscc_prefix_length = sscc_prefix_length

    def _own(self, *segments: str) -> str:
        # Segments come in pairs whose first is a word no GS1 Digital Link uses as a key
        # (unlike "party" or "gln"), so the event hash never mistakes these URIs for GS1 keys.
        return self.base + "".join("/" + quote(s, safe="") for s in segments)

    def shipment(self, shipment_id: str) -> str:
        if is_sscc(shipment_id):
            if self.sscc_prefix_length is not None:
                return sscc_epc_urn(shipment_id, self.sscc_prefix_length)
            return sscc_uri(shipment_id)
        return self._own("shipment", shipment_id)

    def kind(self, asset_id: str) -> AssetKind:
        asset = self.assets.get(asset_id)
        # An asset missing from the fleet is taken for a vehicle, as the trace does.
        return asset.kind if asset is not None else "vehicle"

    def location(self, asset_id: str, compartment_id: str | None = None) -> str:
        asset = self.assets.get(asset_id)
        gln = asset.gln if asset is not None else None
        if gln is not None:
            try:
                return gln_uri(gln, compartment_id)
            except ValueError:
                pass  # a compartment id a GLN extension cannot carry: coldchain's URI instead
        if compartment_id is None:
            return self._own("asset", asset_id)
        return self._own("asset", asset_id, "compartment", compartment_id)

    def profile(self, profile: str) -> str:
        return self._own("profile", profile)

    def party(self, party: str) -> str:
        return f"https://id.gs1.org/417/{party}" if is_gln(party) else self._own("org", party)


class _Clock:
    """Epoch ms -> EPCIS ``eventTime`` and ``eventTimeZoneOffset`` in one zone."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz

    def at(self, ts_ms: int) -> datetime:
        seconds, millis = divmod(ts_ms, 1000)
        moment = datetime.fromtimestamp(seconds, UTC) + timedelta(milliseconds=millis)
        return moment.astimezone(self.tz)

    def time(self, ts_ms: int) -> str:
        return self.at(ts_ms).isoformat(timespec="milliseconds")

    def offset(self, ts_ms: int) -> str:
        delta = self.at(ts_ms).utcoffset() or timedelta(0)
        minutes, seconds = divmod(int(delta.total_seconds()), 60)
        if seconds:
            raise ConfigError("epcis tz", self.tz, "an EPCIS offset is whole minutes")
        sign = "-" if minutes < 0 else "+"
        return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _temperature(e: Excursion) -> bool:
    """Would this excursion alone make the trace's verdict "excursion"? (coldchain.trace)"""
    return verdict([], [e])[0] == "excursion"


def _c(value: float) -> float:
    """A temperature in the document: 0.01 degC, no negative zero."""
    return round(value, 2) + 0.0


class _Builder:
    def __init__(self, record: ShipmentRecord, names: _Names, clock: _Clock) -> None:
        self.record = record
        self.names = names
        self.clock = clock
        self.epc = names.shipment(record.shipment_id)
        starts = [e.start_ms for e in record.excursions if _temperature(e)]
        self.touched_ms = min(starts) if starts else None

    def disposition(self, ts_ms: int, holder: AssetKind | None) -> str:
        if self.touched_ms is not None and self.touched_ms <= ts_ms:
            return "non_conformant"
        return "in_transit" if holder == "vehicle" else "conformant"

    def _event(self, ts_ms: int, fields: dict[str, Any]) -> dict[str, Any]:
        event = {
            "type": "ObjectEvent",
            "eventTime": self.clock.time(ts_ms),
            "eventTimeZoneOffset": self.clock.offset(ts_ms),
            "epcList": [self.epc],
            "action": "OBSERVE",
            **fields,
        }
        return {
            "type": "ObjectEvent",
            "eventID": event_hash(event, context=list(EPCIS_CONTEXT)),
        } | event

    def custody(self, scans: Iterable[CustodyRecord]) -> list[tuple[int, int, dict[str, Any]]]:
        out: list[tuple[int, int, dict[str, Any]]] = []
        where: tuple[str, str | None] | None = None  # where the shipment is, as derive_legs
        for scan in scans:
            kind = self.names.kind(scan.asset_id)
            target = (scan.asset_id, None if scan.action == "unload" else scan.compartment_id)
            step = biz_step(
                scan.action,
                kind,
                compartment=scan.compartment_id is not None,
                moves=target != where,
            )
            delivered = scan.action == "deliver"
            fields: dict[str, Any] = {
                "bizStep": step,
                "disposition": self.disposition(scan.ts_ms, None if delivered else kind),
                "readPoint": {"id": self.names.location(scan.asset_id, scan.compartment_id)},
            }
            if not delivered:  # with the consignee now: where that is, coldchain does not know
                fields["bizLocation"] = {"id": self.names.location(scan.asset_id)}
            fields.update(self._parties(first=not out, delivered=delivered))
            fields["coldchain:custodyAction"] = scan.action
            fields["coldchain:actor"] = scan.actor
            out.append((scan.ts_ms, 1, self._event(scan.ts_ms, fields)))
            where = None if delivered else target
        return out

    def _parties(self, *, first: bool, delivered: bool) -> dict[str, Any]:
        # The transfer from shipper to consignee, stated where it starts and where it ends.
        if not (first or delivered):
            return {}
        out: dict[str, Any] = {}
        if self.record.shipper:
            out["sourceList"] = [
                {"type": "owning_party", "source": self.names.party(self.record.shipper)}
            ]
        if self.record.consignee:
            out["destinationList"] = [
                {"type": "owning_party", "destination": self.names.party(self.record.consignee)}
            ]
        return out

    def sensor(self, report: LegReport) -> tuple[int, int, dict[str, Any]] | None:
        leg = report.leg
        if leg.compartment_id is None:
            return None  # a dock: nothing measured it
        end = leg.to_ms if leg.to_ms is not None else self.record.as_of_ms
        ids = set(report.excursion_ids)
        touching = [e for e in self.record.excursions if e.id in ids]
        aggregate: dict[str, Any] = {"type": "Temperature"}
        if report.min_c is not None and report.max_c is not None:
            aggregate["minValue"] = _c(report.min_c)
            aggregate["maxValue"] = _c(report.max_c)
        if report.mean_c is not None:
            aggregate["meanValue"] = _c(report.mean_c)
        aggregate["uom"] = "CEL"
        if any(_temperature(e) for e in touching):
            aggregate["exception"] = "ALARM_CONDITION"
        elif report.readings == 0 or any(e.kind in _ERROR_KINDS for e in touching):
            aggregate["exception"] = "ERROR_CONDITION"
        if report.mkt_c is not None:
            aggregate["coldchain:meanKineticTemperature"] = _c(report.mkt_c)
        aggregate["coldchain:readingCount"] = report.readings
        aggregate["coldchain:outOfRangeSeconds"] = round(report.out_of_range_s, 3)
        aggregate["coldchain:unmonitoredSeconds"] = round(report.unmonitored_s, 3)
        kind = self.names.kind(leg.asset_id)
        fields = {
            "bizStep": "sensor_reporting",
            "disposition": self.disposition(end, kind),
            "readPoint": {"id": self.names.location(leg.asset_id, leg.compartment_id)},
            "bizLocation": {"id": self.names.location(leg.asset_id)},
            "sensorElementList": [
                {
                    "sensorMetadata": {
                        "startTime": self.clock.time(leg.from_ms),
                        "endTime": self.clock.time(end),
                        "bizRules": self.names.profile(self.record.profile),
                    },
                    "sensorReport": [aggregate],
                }
            ],
        }
        return (end, 0, self._event(end, fields))


def epcis_document(
    record: ShipmentRecord,
    *,
    base_uri: str,
    fleet: Fleet | None = None,
    tz: tzinfo = UTC,
    sscc_company_prefix_length: int | None = None,
    creation_ms: int | None = None,
) -> dict[str, Any]:
    """The shipment as an EPCIS 2.0 JSON-LD ``EPCISDocument`` (a JSON-able dict).

    ``base_uri`` (``https://coldchain.example/id``) roots the URIs of what has no GS1 key:
    ``<base>/shipment/<id>``, ``<base>/asset/<id>[/compartment/<id>]``,
    ``<base>/profile/<name>``, ``<base>/org/<party>`` (each id percent-encoded). A shipment id
    that is an SSCC becomes ``https://id.gs1.org/00/<sscc>``, or its EPC URI
    ``urn:epc:id:sscc:...`` when ``sscc_company_prefix_length`` (6..12) is given; an asset
    with a ``gln`` in ``fleet`` becomes ``https://id.gs1.org/414/<gln>`` and its compartments
    ``.../254/<compartment>``. Assets missing from ``fleet`` count as vehicles. Times are
    written in ``tz`` (a ``zoneinfo.ZoneInfo``; default UTC) with their offset;
    ``creationDate`` is ``creation_ms`` (default ``record.as_of_ms``), so the same record gives
    the same document. Events are in time order; identical scans appear once.

    Raises ``ConfigError`` for a bad ``base_uri``, prefix length or zone.
    """
    names = _Names(base_uri, fleet, sscc_company_prefix_length)
    clock = _Clock(tz)
    builder = _Builder(record, names, clock)
    scans = sorted(
        dict.fromkeys(s for s in record.custody if s.ts_ms <= record.as_of_ms),
        key=lambda s: (s.ts_ms, _ACTION_ORDER[s.action]),
    )
    timed = builder.custody(scans)
    for report in record.legs:
        sensor = builder.sensor(report)
        if sensor is not None:
            timed.append(sensor)
    timed.sort(key=lambda t: (t[0], t[1]))  # stable: scans keep their order
    events: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _, _, event in timed:
        if event["eventID"] not in seen:
            seen.add(event["eventID"])
            events.append(event)
    return {
        "@context": [EPCIS_CONTEXT_URL, {"coldchain": COLDCHAIN_NS}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": clock.time(record.as_of_ms if creation_ms is None else creation_ms),
        "epcisBody": {"eventList": events},
    }

"""Records as JSON-able dicts: the shapes the HTTP API answers with and ``--json`` prints.

Times stay integer epoch milliseconds UTC (``*_ms``), as everywhere in coldchain's JSON.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from registry import Acknowledgement, CustodyEvent, CustodyLeg, ExcursionRecord, Shipment

__all__ = [
    "acknowledgement_view",
    "acknowledgements_path",
    "custody_event_view",
    "excursion_view",
    "shipment_view",
]


def shipment_view(
    s: Shipment, legs: list[CustodyLeg], *, with_legs: bool = False
) -> dict[str, Any]:
    """Every field of the shipment, ``custody`` (where it is now: asset, compartment (None:
    the asset's dock, unmonitored), since when; None unless in custody) and, ``with_legs``,
    every custody leg."""
    here = legs[-1] if legs and legs[-1].to_ms is None and s.status == "in_custody" else None
    custody: dict[str, Any] | None = None
    if here is not None:
        custody = {
            "asset_id": here.asset_id,
            "compartment_id": here.compartment_id,
            "from_ms": here.from_ms,
        }
    view = asdict(s) | {"custody": custody}
    if with_legs:
        view["legs"] = [asdict(leg) for leg in legs]
    return view


def custody_event_view(e: CustodyEvent) -> dict[str, Any]:
    return asdict(e)


def acknowledgement_view(a: Acknowledgement) -> dict[str, Any]:
    return asdict(a)


def acknowledgements_path(excursion_id: str) -> str:
    """Where an excursion's acknowledgement history is served."""
    return f"/v1/excursions/{excursion_id}/acknowledgements"


def excursion_view(r: ExcursionRecord, latest: Acknowledgement | None) -> dict[str, Any]:
    """The excursion's fields, the latest acknowledgement (flat ``ack_*`` as before, and whole
    as ``acknowledgement``), how many there are and where the history is."""
    return asdict(r.excursion) | {
        "updated_ms": r.updated_ms,
        "acknowledged": r.acknowledged,
        "ack_by": r.ack_by,
        "ack_ms": r.ack_ms,
        "ack_comment": r.ack_comment,
        "ack_disposition": r.ack_disposition,
        "ack_count": r.ack_count,
        "acknowledgement": None if latest is None else acknowledgement_view(latest),
        "acknowledgements_url": acknowledgements_path(r.excursion.id),
    }

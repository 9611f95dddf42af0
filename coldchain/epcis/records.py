"""What the EPCIS export reads: one shipment's facts, custody scans, leg statistics, excursions.

Plain values, so any adapter can fill them: the API from the registry and the trace, the demo
from its own run, a test by hand. ``ShipmentRecord.from_trace`` builds one from a
``coldchain.trace.ShipmentTrace`` and the registry's custody events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, cast, get_args

from coldchain.contract.events import CustodyAction
from coldchain.rules.excursion import Excursion
from coldchain.trace import LegReport, ShipmentTrace

__all__ = ["CustodyRecord", "ShipmentRecord"]

_ACTIONS = frozenset(get_args(CustodyAction))


class _CustodyLike(Protocol):
    @property
    def action(self) -> str: ...
    @property
    def ts_ms(self) -> int: ...
    @property
    def asset_id(self) -> str: ...
    @property
    def compartment_id(self) -> str | None: ...
    @property
    def actor(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CustodyRecord:
    """One custody scan (docs/registry.md, "Custody legs"): ``action`` at ``ts_ms`` (epoch ms
    UTC, device time) on ``asset_id``/``compartment_id`` (None: the asset's dock), by ``actor``
    (who scanned or took custody). Raises ``ValueError`` on an unknown action or empty id."""

    action: CustodyAction
    ts_ms: int
    asset_id: str
    compartment_id: str | None
    actor: str

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ValueError(f"custody action {self.action!r} is not one of {sorted(_ACTIONS)}")
        if not self.asset_id:
            raise ValueError("a custody scan names its asset")
        if self.compartment_id == "":
            raise ValueError("compartment_id is None (the asset's dock) or a compartment id")

    @classmethod
    def of(cls, event: _CustodyLike) -> CustodyRecord:
        """From any custody event with these attributes (``registry.records.CustodyEvent``)."""
        action = event.action
        if action not in _ACTIONS:
            raise ValueError(f"custody action {action!r} is not one of {sorted(_ACTIONS)}")
        return cls(
            cast(CustodyAction, action),
            event.ts_ms,
            event.asset_id,
            event.compartment_id,
            event.actor,
        )


@dataclass(frozen=True, slots=True)
class ShipmentRecord:
    """A shipment as the EPCIS export sees it, as of ``as_of_ms`` (epoch ms UTC: the trace's
    "now"; an open leg ends there, scans after it are left out).

    ``custody``: its scans in any order (ties at one millisecond keep the given order after the
    registry's unload < handover < load < deliver; a scan given twice counts once). ``legs``:
    per-leg statistics from ``coldchain.trace.leg_report`` (temperatures in degC) as of
    ``as_of_ms``: none reaches past it (``ValueError`` otherwise). ``excursions``: those that
    touched its legs, as ``ShipmentTrace.excursions``. ``shipper``/``consignee``: parties (a
    13-digit GLN or a name), exported as the owning parties when given.
    """

    shipment_id: str
    profile: str
    as_of_ms: int
    custody: tuple[CustodyRecord, ...] = ()
    legs: tuple[LegReport, ...] = ()
    excursions: tuple[Excursion, ...] = ()
    shipper: str | None = None
    consignee: str | None = None

    def __post_init__(self) -> None:
        if not self.shipment_id:
            raise ValueError("a shipment record needs the shipment id")
        if not self.profile:
            raise ValueError(f"shipment {self.shipment_id!r}: the product profile is empty")
        for report in self.legs:
            leg = report.leg
            if leg.to_ms is not None and leg.to_ms < leg.from_ms:
                raise ValueError(
                    f"shipment {self.shipment_id!r}: a leg on {leg.asset_id!r} ends "
                    f"({leg.to_ms}) before it starts ({leg.from_ms})"
                )
            if max(leg.from_ms, leg.from_ms if leg.to_ms is None else leg.to_ms) > self.as_of_ms:
                raise ValueError(
                    f"shipment {self.shipment_id!r}: a leg on {leg.asset_id!r} reaches past "
                    f"as_of_ms {self.as_of_ms} (as of then it is open: to_ms None)"
                )

    @classmethod
    def from_trace(
        cls,
        trace: ShipmentTrace,
        custody: Iterable[_CustodyLike],
        *,
        as_of_ms: int,
        shipper: str | None = None,
        consignee: str | None = None,
    ) -> ShipmentRecord:
        """From a computed trace (legs, excursions) and the shipment's custody events."""
        return cls(
            shipment_id=trace.shipment_id,
            profile=trace.profile,
            as_of_ms=as_of_ms,
            custody=tuple(CustodyRecord.of(e) for e in custody),
            legs=tuple(trace.legs),
            excursions=tuple(trace.excursions),
            shipper=shipper,
            consignee=consignee,
        )

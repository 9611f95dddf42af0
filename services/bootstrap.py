"""The one place the write services are wired: the HTTP API's lifespan and the CLI both call
``build_services`` (the CLI through ``open_services``), so both get the same rules with the same
dependencies (registry, fleet, product profiles, clock, validation limits)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cache

from coldchain.fleet import Fleet, load_fleet
from coldchain.rules import ProfileSet, load_presets
from coldchain.settings import Settings, ValidationSettings
from registry import Registry, open_registry, wall_clock_ms
from services.custody import CustodyLimits, CustodyService
from services.excursions import ExcursionService
from services.shipments import ShipmentService

__all__ = ["Services", "build_services", "open_services"]


@dataclass(frozen=True, slots=True)
class Services:
    registry: Registry
    shipments: ShipmentService
    custody: CustodyService
    excursions: ExcursionService


def build_services(
    registry: Registry,
    *,
    fleet: Fleet | Callable[[], Fleet],
    profiles: ProfileSet,
    validation: ValidationSettings,
    clock_ms: Callable[[], int] = wall_clock_ms,
) -> Services:
    """The services on these dependencies. ``fleet`` may be a loader, called once when a
    custody event first needs it."""
    fleet_of: Callable[[], Fleet] = (lambda: fleet) if isinstance(fleet, Fleet) else cache(fleet)
    limits = CustodyLimits(validation.max_future_skew_s, validation.max_sample_age_s)
    return Services(
        registry=registry,
        shipments=ShipmentService(registry, profiles),
        custody=CustodyService(registry, fleet_of, clock_ms, limits),
        excursions=ExcursionService(registry),
    )


@contextmanager
def open_services(
    settings: Settings,
    *,
    registry: Registry | None = None,
    clock_ms: Callable[[], int] = wall_clock_ms,
) -> Iterator[Services]:
    """Services on the registry of ``settings`` (opened here and closed on exit unless given),
    its fleet file (read when first needed) and product profiles. Raises ColdchainError (e.g.
    StoreError: the registry is not migrated, run `coldchain init`)."""
    with ExitStack() as stack:
        if registry is None:
            registry = stack.enter_context(open_registry(settings.registry_url))
        yield build_services(
            registry,
            fleet=lambda: load_fleet(settings.fleet_path),
            profiles=load_presets(settings.profiles_path),
            validation=settings.validation,
            clock_ms=clock_ms,
        )

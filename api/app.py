"""The HTTP API's app factory (FastAPI). Nothing connects at import time or in ``create_app``:
the registry and InfluxDB clients are opened by the app's lifespan, or passed in (tests, and
``coldchain api``, which opens them first so a bad setting fails with a one-line message).

    app = create_app(load_settings())                    # opens and closes its own clients
    app = create_app(settings, registry=reg, influx=db)  # uses these; the caller closes them
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, closing, contextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

import coldchain
from api.audit import ReadAudit
from api.auth import refuse_open_off_loopback
from api.epcis import EpcisExporter
from api.epcis import router as epcis_router
from api.errors import install_error_handlers
from api.fleet_reload import FleetReload
from api.methods import guard_sub_resources
from api.params import path_control_character
from api.report import ReportService
from api.report_routes import router as report_router
from api.routes import Resources, router
from api.routes_write import router as write_router
from api.trace import TraceService
from coldchain.fleet import Fleet, load_fleet
from coldchain.rules import ProfileSet, load_presets
from coldchain.settings import Settings
from registry import Registry, open_registry, wall_clock_ms
from services import build_services
from timeseries.client import InfluxClient

__all__ = ["Backends", "create_app", "open_backends"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backends:
    registry: Registry
    influx: InfluxClient
    fleet: Fleet
    profiles: ProfileSet


@contextmanager
def open_backends(
    settings: Settings,
    *,
    registry: Registry | None = None,
    influx: InfluxClient | None = None,
    fleet: Fleet | None = None,
    profiles: ProfileSet | None = None,
) -> Iterator[Backends]:
    """The given backends, and the others opened from ``settings``; on exit, closes only what
    it opened. Raises ColdchainError (e.g. the registry is not migrated: run `coldchain init`)."""
    with ExitStack() as stack:
        if profiles is None:
            profiles = load_presets(settings.profiles_path)
        if fleet is None:
            # The trace needs each asset's kind (vehicle or store) for its data-gap limit.
            fleet = load_fleet(settings.fleet_path)
        if registry is None:
            registry = stack.enter_context(open_registry(settings.registry_url))
        if influx is None:
            influx = stack.enter_context(closing(InfluxClient(settings.influx)))
        yield Backends(registry, influx, fleet, profiles)


def healthz() -> dict[str, str]:
    """Liveness: the process answers (no key needed; it checks no backend)."""
    return {"status": "ok"}


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    influx: InfluxClient | None = None,
    fleet: Fleet | None = None,
    profiles: ProfileSet | None = None,
    clock_ms: Callable[[], int] = wall_clock_ms,
    audit_reads: bool = True,
) -> FastAPI:
    """The app; ``audit_reads=False`` leaves regulator reads out of the read chain (only for
    the benchmark's same-run baseline, bench/api_audit.py)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with open_backends(
            settings, registry=registry, influx=influx, fleet=fleet, profiles=profiles
        ) as b:

            def wire(fleet: Fleet) -> None:
                """The request-facing services on ``fleet``, swapped in for new requests."""
                tracer = TraceService(
                    b.registry,
                    b.influx,
                    fleet,
                    b.profiles,
                    max_readings=settings.api.trace_max_readings,
                    clock_ms=clock_ms,
                    custody_grace_ms=round(settings.validation.custody_grace_s * 1000),
                )
                reporter = ReportService(tracer, b.registry, fleet, b.profiles)
                app.state.resources = Resources(b.registry, tracer, clock_ms, reporter)
                app.state.epcis = EpcisExporter(tracer, b.registry, fleet, settings.epcis)
                # The write services: the same wiring as the CLI's (services/bootstrap.py).
                app.state.services = build_services(
                    b.registry,
                    fleet=fleet,
                    profiles=b.profiles,
                    validation=settings.validation,
                    clock_ms=clock_ms,
                )

            wire(b.fleet)
            # A fleet read from the file follows it (a fleet passed in is the caller's).
            reload = None
            if fleet is None and settings.fleet_reload_s > 0:
                reload = FleetReload(
                    settings.fleet_path,
                    b.fleet,
                    b.profiles,
                    wire,
                    interval_s=settings.fleet_reload_s,
                )
                reload.start()
            app.state.fleet_reload = reload
            app.state.read_audit = read_audit = ReadAudit(b.registry.trail if audit_reads else None)
            # Open (no key anywhere) only on loopback: ConfigError otherwise.
            refuse_open_off_loopback(settings.api.host, settings.api.keys, b.registry)
            if not settings.api.keys and not b.registry.keys.any():
                log.warning(
                    "no API keys (none in the registry, COLDCHAIN_API__KEYS empty): the API on "
                    "%s:%s is open to anyone who can reach it, with every role; for local use "
                    "only (create one: coldchain keys create)",
                    settings.api.host,
                    settings.api.port,
                )
            try:
                yield
            finally:
                if reload is not None:
                    reload.stop()
                read_audit.close()

    app = FastAPI(
        title="coldchain",
        version=coldchain.__version__,
        description="Shipment traceability: custody, temperatures, excursions (docs/api.md).",
        lifespan=lifespan,
    )
    app.state.api_keys = dict(settings.api.keys)
    install_error_handlers(app)

    @app.middleware("http")
    async def refuse_control_characters(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        problem = path_control_character(request.scope["path"])
        if problem is not None:
            return JSONResponse({"detail": problem}, status_code=422)
        return await call_next(request)

    app.get("/healthz", tags=["health"])(healthz)
    # The report, EPCIS and write routes first: the shipment route's "{shipment_id:path}" would
    # match them.
    app.include_router(report_router)
    app.include_router(epcis_router)
    app.include_router(write_router)
    app.include_router(router)
    # 405 with the right Allow for the methods a shipment sub-resource does not have (before
    # the shipment routes, which would take ".../cancel" for an id).
    guard_sub_resources(app)
    return app

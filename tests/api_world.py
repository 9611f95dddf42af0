"""A small, real world for whole-API tests (the authorisation matrix, the schemathesis run): a
migrated SQLite registry, a real InfluxDB database with readings and a GPS track, two shippers'
shipments on the same reefer compartment one after the other, one excursion during each, and a
key of every role in every state (valid, expired, revoked), regulators scoped to one shipper.

Every clock (the registry's, the app's, the custody checks') is one injectable ``Clock``, so
keys can be made to expire and custody events posted "now" without reading the wall clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI

from api import create_app
from coldchain.contract.events import CustodyAction
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from coldchain.rules import load_presets
from coldchain.rules.excursion import Excursion
from coldchain.settings import ApiSettings, InfluxSettings, Settings
from deploy.launcher import Services
from registry import Registry, open_registry, upgrade
from timeseries.client import InfluxClient

__all__ = [
    "FLEET",
    "KEY_STATES",
    "MIN",
    "NOW_MS",
    "ROLE_COLUMNS",
    "SHIPMENT_A",
    "SHIPMENT_B",
    "SHIPPER_A",
    "SHIPPER_B",
    "T0_MS",
    "Clock",
    "World",
    "api_world",
]

MIN = 60_000
T0_MS = 1_790_000_000_000  # 2026-09-21T14:13:20Z: shipment A is loaded
NOW_MS = T0_MS + 6 * 60 * MIN  # the server's clock while the tests run
SHIPPER_A, SHIPPER_B = "ACME Foods", "Globex"
SHIPMENT_A, SHIPMENT_B = "PO-2026/0042", "GLX-7"

FLEET = Fleet(
    [
        Asset(
            id="truck-1",
            kind="vehicle",
            devices=("tcu-1",),
            compartments=(
                Compartment(
                    id="c1",
                    profile="chilled",
                    sensors=(
                        SensorSpec(id="c1-prod", probe="product"),
                        SensorSpec(id="c1-air", probe="air"),
                    ),
                ),
            ),
        ),
        Asset(
            id="store-1",
            kind="store",
            devices=("gw-1",),
            compartments=(
                Compartment(id="zone-a", profile="chilled", sensors=(SensorSpec(id="za-prod"),)),
            ),
        ),
    ]
)

# The principals of the matrix: each role, and a regulator whose scope holds the shipment asked
# for ("regulator_in") or not ("regulator_out", scoped to the other shipper).
ROLE_COLUMNS = ("admin", "operator", "integrator", "regulator_in", "regulator_out")
# A key's state: valid, past its expiry, revoked.
KEY_STATES = ("valid", "expired", "revoked")


class Clock:
    """A settable clock in epoch ms (the registry's and the app's)."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class World:
    registry: Registry
    influx: InfluxClient
    clock: Clock
    app: FastAPI
    # (column, state) -> token, column in ROLE_COLUMNS, state in KEY_STATES.
    tokens: dict[tuple[str, str], str]
    excursion_a: str  # on truck-1/c1 while shipment A was in it
    excursion_b: str  # the same compartment later, with shipment B in it
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def token(self, column: str, state: str = "valid") -> str:
        return self.tokens[(column, state)]

    def fresh_shipment(self, shipper: str = SHIPPER_A, prefix: str = "MX") -> str:
        """A new registered shipment (no custody yet) of ``shipper``; its id."""
        sid = f"{prefix}-{next(self._ids)}"
        self.registry.create_shipment(sid, profile="chilled", actor="test", shipper=shipper)
        return sid

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"


def _readings(t0_ms: int, now_ms: int) -> list[str]:
    """truck-1/c1 every 5 min, 4 degC but 9 degC during each shipment's excursion; its GPS
    track; store-1/zone-a at 3 degC."""
    lines = []
    for i, t in enumerate(range(t0_ms, now_ms, 5 * MIN)):
        minute = (t - t0_ms) // MIN
        hot = 60 <= minute < 80 or 250 <= minute < 270
        lines.append(
            "temperature,asset=truck-1,compartment=c1,probe=product,sensor=c1-prod "
            f"temp_c={9.0 if hot else 4.0} {t}"
        )
        lines.append(
            f"temperature,asset=truck-1,compartment=c1,probe=air,sensor=c1-air temp_c=2.5 {t}"
        )
        lines.append(
            f'position,asset=truck-1 fix="3d",lat={23.35 - i * 0.002},lon={116.68 - i * 0.01} {t}'
        )
        lines.append(
            "temperature,asset=store-1,compartment=zone-a,probe=product,sensor=za-prod "
            f"temp_c=3.0 {t}"
        )
    return lines


def _excursion(start_min: int, end_min: int) -> Excursion:
    return Excursion(
        "truck-1",
        "c1",
        "range",
        "range",
        "warning",
        "closed",
        T0_MS + start_min * MIN,
        T0_MS + end_min * MIN,
        T0_MS + start_min * MIN,
        peak_c=9.0,
        profile="chilled",
    )


def _seed(registry: Registry) -> tuple[str, str]:
    registry.create_shipment(SHIPMENT_A, profile="chilled", actor="test", shipper=SHIPPER_A)
    registry.create_shipment(SHIPMENT_B, profile="chilled", actor="test", shipper=SHIPPER_B)
    # A: truck-1/c1, its dock, then store-1/zone-a (still there). B: truck-1/c1 after A left.
    scans: tuple[tuple[str, CustodyAction, str, str | None, int], ...] = (
        (SHIPMENT_A, "load", "truck-1", "c1", 0),
        (SHIPMENT_A, "unload", "truck-1", None, 120),
        (SHIPMENT_A, "load", "store-1", "zone-a", 130),
        (SHIPMENT_B, "load", "truck-1", "c1", 200),
    )
    for sid, action, asset, compartment, minute in scans:
        registry.record_custody_event(
            sid, action, asset, compartment, ts_ms=T0_MS + minute * MIN, actor="driver Li"
        )
    ex_a, ex_b = _excursion(60, 80), _excursion(250, 270)
    registry.upsert_excursions([ex_a, ex_b])
    return ex_a.id, ex_b.id


def _keys(registry: Registry, clock: Clock) -> dict[tuple[str, str], str]:
    scopes: dict[str, dict[str, list[str]]] = {
        "regulator_in": {"shippers": [SHIPPER_A]},
        "regulator_out": {"shippers": [SHIPPER_B]},
    }
    tokens: dict[tuple[str, str], str] = {}
    for column in ROLE_COLUMNS:
        role = "regulator" if column.startswith("regulator") else column
        for state in KEY_STATES:
            # An expiry must be after "now" when the key is made: made an hour ago, expired
            # a minute later.
            clock.now_ms = NOW_MS - 60 * MIN
            expires = clock.now_ms + MIN if state == "expired" else None
            key, token = registry.keys.create(
                role,
                created_by="test",
                name=f"{column} {state}",
                expires_ms=expires,
                **scopes.get(column, {}),
            )
            if state == "revoked":
                registry.keys.revoke(key.key_id, by="test", reason="matrix")
            tokens[(column, state)] = token
    clock.now_ms = NOW_MS
    return tokens


@contextmanager
def api_world(services: Services, database: str, root: Path) -> Iterator[World]:
    """The world, its app (not started: wrap it in a TestClient), closed on exit."""
    clock = Clock(NOW_MS)
    influx = InfluxClient(InfluxSettings(url=services.influxd.url, database=database))
    influx.create_database()
    influx.write("\n".join(_readings(T0_MS - 30 * MIN, NOW_MS)).encode())
    url = f"sqlite:///{root / 'registry.sqlite3'}"
    upgrade(url)
    registry = open_registry(url, clock=clock)
    try:
        ex_a, ex_b = _seed(registry)
        tokens = _keys(registry, clock)
        app = create_app(
            Settings(fleet_path=root / "none.yaml", api=ApiSettings(keys={})),
            registry=registry,
            influx=influx,
            fleet=FLEET,
            profiles=load_presets(),
            clock_ms=clock,
        )
        yield World(registry, influx, clock, app, tokens, ex_a, ex_b)
    finally:
        registry.close()
        influx.close()

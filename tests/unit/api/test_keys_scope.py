"""Registry API keys over HTTP: valid, invalid, expired and revoked keys; a regulator's scope
(404 off scope, excursions only from its shipments' custody legs); regulator reads audited.

No InfluxDB: shipments here have only dock legs (unmonitored), which a trace does not read
temperatures for.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from api import create_app
from api.auth import Principal, is_loopback, require_role
from api.scope import in_scope
from api.times import rfc3339
from coldchain.exceptions import ConfigError
from coldchain.fleet import Fleet
from coldchain.rules import ProfileSet
from coldchain.rules.excursion import Excursion
from coldchain.settings import ApiSettings, Settings
from registry import KeyScope, Registry, Shipment, wall_clock_ms
from tests.unit.support import STORE
from timeseries.client import InfluxClient

T = 1_790_000_000_000
MIN = 60_000
UNKNOWN = {"detail": "the X-API-Key header does not hold a known API key"}


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class Apps:
    registry: Registry
    clock: Clock
    make: Callable[..., FastAPI]


@pytest.fixture
def apps(registry: Registry, influx: InfluxClient, profiles: ProfileSet, tmp_path: Path) -> Apps:
    clock = Clock(T + 100 * MIN)

    def make(env_keys: dict[str, str] | None = None, **kwargs: Any) -> FastAPI:
        settings = Settings(fleet_path=tmp_path / "none.yaml", api=ApiSettings(keys=env_keys or {}))
        app = create_app(
            settings,
            registry=registry,
            influx=influx,
            # store-1 a store: its dock legs read nothing from InfluxDB (a vehicle's read
            # its GPS track).
            fleet=Fleet([STORE]),
            profiles=profiles,
            clock_ms=clock,
            **kwargs,
        )

        @app.post("/v1/write")
        def write(p: Annotated[Principal, Depends(require_role("admin", "operator"))]) -> str:
            return p.role

        return app

    return Apps(registry, clock, make)


@pytest.fixture
def client(apps: Apps) -> Iterator[TestClient]:
    with TestClient(apps.make()) as c:
        yield c


def _key(registry: Registry, role: str = "regulator", **kwargs: Any) -> tuple[str, str]:
    key, token = registry.keys.create(role, created_by="test", **kwargs)
    return key.key_id, token


def _h(token: str) -> dict[str, str]:
    return {"X-API-Key": token}


def _ship(
    registry: Registry, sid: str, legs: list[tuple[str, str | None, int]], shipper: str = ""
) -> None:
    registry.create_shipment(sid, profile="chilled", actor="test", shipper=shipper)
    for asset, compartment, minute in legs:
        registry.record_custody_event(
            sid, "load", asset, compartment, ts_ms=T + minute * MIN, actor="d"
        )


# -- authentication -------------------------------------------------------------------------


def test_each_role_gets_its_rights_and_bad_keys_get_401(apps: Apps, client: TestClient) -> None:
    tokens = {
        role: _key(apps.registry, role)[1]
        for role in ("admin", "operator", "integrator", "regulator")
    }
    for role, token in tokens.items():
        assert client.get("/v1/shipments", headers=_h(token)).status_code == 200, role
        r = client.post("/v1/write", headers=_h(token))
        assert r.status_code == (200 if role in ("admin", "operator") else 403), role
    good = tokens["admin"]
    other = tokens["operator"]
    for bad in (
        good[:-1] + ("A" if good[-1] != "A" else "B"),  # wrong secret
        good[:17] + other[17:],  # this key's id with another key's secret
        "cck_0123456789ab_" + good[17:],  # unknown id
        good + " ",
        "not-a-key",
    ):
        r = client.get("/v1/shipments", headers=_h(bad))
        assert (r.status_code, r.json()) == (401, UNKNOWN), bad
        assert r.headers["WWW-Authenticate"] == 'APIKey header="X-API-Key"'
    r = client.get("/v1/shipments")
    assert r.status_code == 401 and r.json()["detail"].startswith("missing API key")


def test_an_expired_key_is_401_from_its_expiry_on(apps: Apps, client: TestClient) -> None:
    expiry = wall_clock_ms() + 10**9  # the registry refuses an expiry already past
    key_id, token = _key(apps.registry, expires_ms=expiry)
    apps.clock.now_ms = expiry - 1
    assert client.get("/v1/shipments", headers=_h(token)).status_code == 200
    apps.clock.now_ms = expiry
    r = client.get("/v1/shipments", headers=_h(token))
    assert (r.status_code, r.json()) == (
        401,
        {"detail": f"API key {key_id} expired at {rfc3339(expiry)}"},
    )
    assert client.get("/v1/shipments/X/trace", headers=_h(token)).status_code == 401


def test_a_revoked_key_is_401_at_once(apps: Apps, client: TestClient) -> None:
    key_id, token = _key(apps.registry, "admin")
    assert client.get("/v1/excursions", headers=_h(token)).status_code == 200
    apps.registry.keys.revoke(key_id, by="test")
    r = client.get("/v1/excursions", headers=_h(token))
    assert r.status_code == 401
    assert r.json()["detail"].startswith(f"API key {key_id} was revoked at ")


def test_development_keys_from_the_variable_still_work_beside_registry_keys(
    apps: Apps,
) -> None:
    _key_id, token = _key(apps.registry, "operator")
    with TestClient(apps.make({"dev-key": "admin"})) as c:
        assert c.post("/v1/write", headers=_h("dev-key")).json() == "admin"
        assert c.post("/v1/write", headers=_h(token)).json() == "operator"
        assert c.get("/v1/shipments", headers=_h("dev-kez")).json() == UNKNOWN


def test_open_on_loopback_until_the_first_key_then_never_again(apps: Apps) -> None:
    with TestClient(apps.make()) as c:
        assert c.post("/v1/write").json() == "admin"  # no key anywhere: open, everyone admin
        key_id, token = _key(apps.registry, "operator")
        assert c.post("/v1/write").status_code == 401  # closed without a restart
        assert c.post("/v1/write", headers=_h(token)).json() == "operator"
        apps.registry.keys.revoke(key_id, by="test")
        assert c.post("/v1/write").status_code == 401  # revoking every key does not reopen


def test_the_app_refuses_to_start_open_off_loopback(
    registry: Registry, influx: InfluxClient, profiles: ProfileSet, tmp_path: Path
) -> None:
    settings = Settings(fleet_path=tmp_path / "none.yaml", api=ApiSettings(host="0.0.0.0"))
    app = create_app(settings, registry=registry, influx=influx, fleet=Fleet([]), profiles=profiles)
    with pytest.raises(ConfigError, match=r"COLDCHAIN_API__HOST='0\.0\.0\.0'"), TestClient(app):
        pass
    _key(registry, "admin")
    with TestClient(app) as c:  # with a key it starts, and wants the key
        assert c.get("/v1/shipments").status_code == 401


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("", False),
        ("api.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# -- scope ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WithShipper:
    id: str
    shipper: str | None


def test_in_scope_reads_the_shipper_if_there_is_one_and_the_explicit_list() -> None:
    scoped = Principal("k", "regulator", KeyScope(shippers=("ACME",), shipments=("S9",)))
    plain = Shipment("S1", "chilled", "", "", "", 0)
    assert not in_scope(scoped, plain)  # no shipper field: only the list can match
    assert in_scope(scoped, Shipment("S9", "chilled", "", "", "", 0))
    assert in_scope(scoped, WithShipper("S1", "ACME"))
    assert not in_scope(scoped, WithShipper("S1", "Other"))
    assert not in_scope(scoped, WithShipper("S1", None))
    assert in_scope(scoped, WithShipper("S9", "Other"))
    nothing = Principal("k", "regulator", KeyScope())
    assert not in_scope(nothing, WithShipper("S1", "ACME"))
    for unrestricted in (
        Principal("k", "regulator", None),
        Principal("k", "operator", None),
        Principal(None, "admin", None),
    ):
        assert in_scope(unrestricted, WithShipper("S1", "Other"))


def test_a_scoped_regulator_gets_404_for_other_shipments(apps: Apps, client: TestClient) -> None:
    for sid in ("S1", "S2", "S3"):
        _ship(apps.registry, sid, [("store-1", None, 0)])
    _kid, token = _key(apps.registry, shipments=["S1", "S3", "S-never-created"])
    _admin, admin = _key(apps.registry, "admin")
    for suffix in ("", "/trace", "/trace.csv"):
        assert client.get(f"/v1/shipments/S1{suffix}", headers=_h(token)).status_code == 200
        off = client.get(f"/v1/shipments/S2{suffix}", headers=_h(token))
        unknown = client.get(f"/v1/shipments/S404{suffix}", headers=_h(token))
        assert (off.status_code, off.json()) == (404, {"detail": "shipment 'S2' not found"})
        assert unknown.status_code == 404  # the same answer: off scope looks unknown
        assert client.get(f"/v1/shipments/S2{suffix}", headers=_h(admin)).status_code == 200
    listed = client.get("/v1/shipments", headers=_h(token)).json()
    assert [s["id"] for s in listed] == ["S1", "S3"]
    page = client.get("/v1/shipments", params={"limit": 1}, headers=_h(token)).json()
    nxt = client.get("/v1/shipments", params={"limit": 1, "after": "S1"}, headers=_h(token)).json()
    assert [s["id"] for s in page + nxt] == ["S1", "S3"]


def test_a_shipper_scope_pages_through_shipments_with_a_shipper(
    apps: Apps, client: TestClient
) -> None:
    """The listing keeps its filters and paging (``after`` and the cursor) within the scope."""
    shippers = {f"S{i:02d}": ("ACME" if i % 3 == 0 else "Other") for i in range(12)}
    for sid, shipper in shippers.items():
        _ship(apps.registry, sid, [("store-1", None, 0)], shipper=shipper)
    _kid, token = _key(apps.registry, shippers=["ACME"], shipments=["S01"])
    ids: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"after": after} if after else {})
        page = client.get("/v1/shipments", params=params, headers=_h(token)).json()
        ids += [p["id"] for p in page]
        if len(page) < 2:
            break
        after = page[-1]["id"]
    assert ids == ["S00", "S01", "S03", "S06", "S09"]
    # The cursor pages the same way; a filter narrows the scope, never widens it.
    cursor_ids: list[str] = []
    params = {"limit": 2}
    while True:
        answer = client.get("/v1/shipments", params=params, headers=_h(token))
        cursor_ids += [p["id"] for p in answer.json()]
        if "X-Next-Cursor" not in answer.headers:
            break
        params = {"limit": 2, "cursor": answer.headers["X-Next-Cursor"]}
    assert cursor_ids == ids
    other = client.get("/v1/shipments", params={"shipper": "Other"}, headers=_h(token)).json()
    assert [p["id"] for p in other] == ["S01"]
    assert client.get("/v1/shipments/S03", headers=_h(token)).status_code == 200
    assert client.get("/v1/shipments/S04", headers=_h(token)).status_code == 404


def _exc(asset: str, comp: str, start: int, end: int | None, rule: str = "range") -> Excursion:
    return Excursion(
        asset,
        comp,
        rule,
        "range",
        "warning",
        "open" if end is None else "closed",
        T + start * MIN,
        None if end is None else T + end * MIN,
        T + start * MIN,
    )


def test_a_regulator_sees_only_excursions_on_its_shipments_legs(
    apps: Apps, client: TestClient
) -> None:
    # S1 (in scope) in truck-1/c1 from 10 to 20, then on store-1's dock; S2 (another shipper)
    # in the same compartment from 20 on, and S3 in store-1/z1.
    _ship(apps.registry, "S1", [("truck-1", "c1", 10), ("store-1", None, 20)])
    _ship(apps.registry, "S2", [("truck-1", "c1", 20)])
    _ship(apps.registry, "S3", [("store-1", "z1", 0)])
    during = _exc("truck-1", "c1", 12, 14)
    across = _exc("truck-1", "c1", 18, 22, rule="hard_high")
    after = _exc("truck-1", "c1", 25, 30)
    elsewhere = _exc("store-1", "z1", 15, 16)
    before = _exc("truck-1", "c1", 1, 5)
    nobody = _exc("truck-9", "c1", 12, 14)  # no shipment was ever there
    apps.registry.upsert_excursions([during, across, after, elsewhere, before, nobody])
    _kid, scoped = _key(apps.registry, shipments=["S1"])
    _kid, unscoped = _key(apps.registry)
    _kid, admin = _key(apps.registry, "admin")

    def ids(token: str, **params: Any) -> list[str]:
        r = client.get("/v1/excursions", params=params, headers=_h(token))
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()]

    assert ids(scoped) == [during.id, across.id]
    assert ids(unscoped) == [during.id, elsewhere.id, across.id, after.id]  # never truck-9
    everything = sorted(
        [before, during, nobody, elsewhere, across, after], key=lambda e: (e.start_ms, e.id)
    )
    assert ids(admin) == [e.id for e in everything]
    assert ids(scoped, limit=1) == [during.id]
    assert ids(scoped, status="closed", **{"from": "2026-09-21T14:28:20Z"}) == [across.id]
    assert ids(scoped, asset_id="store-1") == []
    assert ids(unscoped, asset_id="store-1", compartment_id="z1") == [elsewhere.id]


# -- read audit -----------------------------------------------------------------------------


def test_regulator_traces_are_audited_with_the_key_id(apps: Apps, client: TestClient) -> None:
    _ship(apps.registry, "S1", [("store-1", None, 0)])
    _ship(apps.registry, "S2", [("store-1", None, 0)])
    key_id, token = _key(apps.registry, shipments=["S1"])
    _admin, admin = _key(apps.registry, "admin")
    assert client.get("/v1/shipments/S1/trace", headers=_h(token)).status_code == 200
    at = "2026-09-21T15:00:00Z"
    assert client.get(f"/v1/shipments/S1/trace.csv?at={at}", headers=_h(token)).status_code == 200
    assert client.get("/v1/shipments/S2/trace", headers=_h(token)).status_code == 404
    assert client.get("/v1/shipments/S2/trace", headers=_h(admin)).status_code == 200
    trace, csv = apps.registry.trail.read_entries()
    assert (trace.actor, trace.action, trace.entity, trace.entity_id) == (
        key_id,
        "read.trace",
        "shipment",
        "S1",
    )
    assert (csv.action, csv.entity_id) == ("read.trace.csv", "S1")
    assert '"at_ms":1790002800000' in csv.payload and '"role":"regulator"' in csv.payload
    assert token not in trace.payload + csv.payload
    assert apps.registry.trail.verify().ok


def test_no_regulator_read_is_served_that_the_log_cannot_record(
    apps: Apps, client: TestClient, registry: Registry
) -> None:
    _ship(apps.registry, "S1", [("store-1", None, 0)])
    _kid, token = _key(apps.registry)
    db = str(registry.engine.url.database)
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER audit_read_head_no_delete")
        conn.execute("DELETE FROM audit_read_head")
    r = client.get("/v1/shipments/S1/trace", headers=_h(token))
    assert r.status_code == 503 and "verdict" not in r.text


def test_an_app_without_read_auditing_records_nothing(apps: Apps) -> None:
    _ship(apps.registry, "S1", [("store-1", None, 0)])
    _kid, token = _key(apps.registry)
    with TestClient(apps.make(audit_reads=False)) as c:
        assert c.get("/v1/shipments/S1/trace", headers=_h(token)).status_code == 200
    assert apps.registry.trail.read_entries() == []


def test_a_regulator_read_that_fails_later_stays_recorded_as_an_attempt(
    apps: Apps, client: TestClient
) -> None:
    # A monitored leg makes the trace ask InfluxDB, whose port is closed here: 503.
    _ship(apps.registry, "S1", [("truck-1", "c1", 0)])
    key_id, token = _key(apps.registry)
    r = client.get("/v1/shipments/S1/trace", headers=_h(token))
    assert r.status_code == 503
    (entry,) = apps.registry.trail.read_entries()
    assert (entry.actor, entry.action, entry.entity_id) == (key_id, "read.trace", "S1")

"""API keys and roles, and the mapping of errors to HTTP answers (no InfluxDB needed).

Tests loop over cases inside one app where they can: building an app costs more than a request.
"""

from __future__ import annotations

import logging
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from api.auth import Caller, require_role
from coldchain.exceptions import RecordRejected, StoreError
from registry import Registry
from tests.unit.api.conftest import KEYS, NOW_MS, MakeApp

ADMIN = {"X-API-Key": "key-admin"}
MISSING = {"detail": "missing API key: send it in the X-API-Key header"}
UNKNOWN = {"detail": "the X-API-Key header does not hold a known API key"}


@pytest.fixture(autouse=True)
def shipment(registry: Registry) -> None:
    registry.create_shipment("S1", profile="chilled", actor="test")


def test_every_role_may_read_and_nobody_else(client: TestClient) -> None:
    reads = ["/v1/shipments", "/v1/shipments/S1", "/v1/shipments/S1/trace", "/v1/excursions"]
    for path in reads:
        for key in KEYS:
            assert client.get(path, headers={"X-API-Key": key}).status_code == 200, (path, key)
        r = client.get(path)
        assert (r.status_code, r.json()) == (401, MISSING), path
        assert r.headers["WWW-Authenticate"] == 'APIKey header="X-API-Key"'
        for bad in ("nope", "KEY-ADMIN", "key-admi"):
            r = client.get(path, headers={"X-API-Key": bad})
            assert (r.status_code, r.json()) == (401, UNKNOWN), (path, bad)
    r = client.get("/v1/shipments/S1/trace.csv")
    assert (r.status_code, r.json()) == (401, MISSING)


def test_healthz_needs_no_key(client: TestClient) -> None:
    r = client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def _role_app(make_app: MakeApp, keys: dict[str, str] | None = None) -> FastAPI:
    app = make_app(keys)

    @app.post("/v1/write")
    def write(caller: Annotated[Caller, Depends(require_role("admin", "operator"))]) -> str:
        return caller.role

    return app


def test_require_role(make_app: MakeApp) -> None:
    cases: list[tuple[str | None, int, object]] = [
        ("key-admin", 200, "admin"),
        ("key-operator", 200, "operator"),
        ("key-reg", 403, {"detail": "role 'regulator' may not do this; allowed: admin, operator"}),
        ("wrong", 401, UNKNOWN),
        (None, 401, MISSING),
    ]
    with TestClient(_role_app(make_app)) as c:
        for key, status, answer in cases:
            r = c.post("/v1/write", headers={"X-API-Key": key} if key else {})
            assert (r.status_code, r.json()) == (status, answer), key


def test_without_keys_the_api_is_open_says_so_and_everyone_is_admin(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="api.app"),
        TestClient(_role_app(make_app, {})) as c,
    ):
        assert c.get("/v1/shipments").status_code == 200
        assert c.post("/v1/write", headers={"X-API-Key": "anything"}).json() == "admin"
    assert any("no API keys" in m for m in caplog.messages)


@pytest.mark.parametrize("roles", [(), ("admin", "root")])
def test_require_role_refuses_unknown_roles_at_declaration(roles: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="require_role needs roles among"):
        require_role(*roles)  # type: ignore[arg-type]


# -- errors -------------------------------------------------------------------------------


def test_unknown_shipment_is_404(client: TestClient) -> None:
    for suffix in ("", "/trace", "/trace.csv"):
        r = client.get(f"/v1/shipments/NOPE-1{suffix}", headers=ADMIN)
        assert (r.status_code, r.json()) == (404, {"detail": "shipment 'NOPE-1' not found"})


def test_bad_at_is_422_naming_parameter_and_value(client: TestClient) -> None:
    cases = [
        ("2026-03-01T12:00:00", "'2026-03-01T12:00:00' has no UTC offset"),
        ("yesterday", "'yesterday' is not an RFC 3339 date-time"),
        ("1790000000000", "'1790000000000' is not an RFC 3339 date-time"),
        # An unencoded "+" arrives as a space (raw URL below: httpx's params= would encode it).
        ("2026-03-01T12:00:00+01:00", "send a '+' offset as %2B"),
        ("2026-02-30T12:00:00Z", "day is out of range for month"),
    ]
    for at, message in cases:
        for suffix in ("/trace", "/trace.csv"):
            r = client.get(f"/v1/shipments/S1{suffix}?at={at}", headers=ADMIN)
            detail = r.json()["detail"]
            assert r.status_code == 422, at
            assert detail.startswith("query parameter 'at': ") and message in detail, detail
    r = client.get("/v1/shipments/S1/trace?at=2026-03-01T13:00:00%2B01:00", headers=ADMIN)
    assert r.status_code == 200 and r.json()["at_ms"] == 1_772_366_400_000


def test_bad_excursion_filters_are_422(client: TestClient) -> None:
    r = client.get("/v1/excursions", params={"status": "bogus"}, headers=ADMIN)
    assert (r.status_code, r.json()) == (
        422,
        {
            "detail": "query parameter 'status': Input should be 'open', 'closed' or "
            "'recovered' (got 'bogus')"
        },
    )
    r = client.get(
        "/v1/excursions",
        params={"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
        headers=ADMIN,
    )
    assert r.status_code == 422 and "'from' (2026-03-02T00:00:00Z) must be before" in r.text
    r = client.get("/v1/excursions", params={"to": "soon"}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["detail"].startswith("query parameter 'to': 'soon'")
    r = client.get("/v1/excursions", params={"limit": "0"}, headers=ADMIN)
    assert r.status_code == 422 and "query parameter 'limit'" in r.text


def test_store_outage_is_503_without_internals(client: TestClient, registry: Registry) -> None:
    # The app's InfluxDB client points at a closed port; a monitored leg makes the trace ask
    # (loaded an hour ago: a leg open since 1970 would be refused as too long, 422, unasked).
    registry.record_custody_event(
        "S1", "load", "truck-1", "c1", ts_ms=NOW_MS - 3_600_000, actor="driver"
    )
    r = client.get("/v1/shipments/S1/trace", headers=ADMIN)
    assert (r.status_code, r.json()) == (
        503,
        {"detail": "a backing store (registry or InfluxDB) is unavailable; retry later"},
    )


def test_unknown_profile_is_a_server_configuration_error(
    client: TestClient, registry: Registry
) -> None:
    registry.create_shipment("S2", profile="unobtainium", actor="test")
    r = client.get("/v1/shipments/S2/trace", headers=ADMIN)
    assert r.status_code == 500
    assert r.json()["detail"].startswith("server configuration error: profile='unobtainium'")


def test_rejected_record_is_409_and_anything_else_a_bare_500(make_app: MakeApp) -> None:
    app = make_app()

    @app.get("/v1/reject")
    def reject() -> None:
        raise RecordRejected("custody event for unknown shipment 'X'")

    @app.get("/v1/broken")
    def broken() -> None:
        raise ZeroDivisionError("secret internals")

    @app.get("/v1/flaky")
    def flaky() -> None:
        raise StoreError("registry on sqlite:///var/x failed: database is locked")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/v1/reject", headers=ADMIN)
        assert (r.status_code, r.json()) == (
            409,
            {"detail": "rejected by the registry: custody event for unknown shipment 'X'"},
        )
        r = c.get("/v1/broken", headers=ADMIN)
        assert (r.status_code, r.json()) == (500, {"detail": "internal server error"})
        r = c.get("/v1/flaky", headers=ADMIN)
        assert r.status_code == 503 and "sqlite" not in r.text

"""The authorisation matrix (tests/api_matrix.py), cell by cell, against the real app on a real
SQLite registry and a real InfluxDB (the traces and reports read it): every endpoint the app
serves x every principal (each role, a regulator in and out of scope) x every key state (valid,
expired, revoked), plus no key and an unknown key.

What a cell checks beyond the status: a 401 says why (missing, unknown, expired, revoked key);
an out-of-scope 404, and a 403 for a write, is word for word the answer for an id that does not
exist (nothing leaks);
a listing shows the target record or hides it; a refused write wrote nothing and an admitted
one did; a trace, report or export read by a regulator is one entry of the read chain naming
its key, and nobody else's read (nor a refused one) is. No cell may be a 5xx.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from api import create_app
from api.times import rfc3339
from coldchain.settings import Settings
from deploy.launcher import Services
from tests.api_matrix import MATRIX, PENDING, app_endpoints
from tests.api_world import (
    KEY_STATES,
    MIN,
    NOW_MS,
    ROLE_COLUMNS,
    SHIPMENT_A,
    SHIPPER_A,
    World,
    api_world,
)

pytestmark = pytest.mark.integration

# The endpoints of this code's app (no service needed to list them).
SERVED = app_endpoints(create_app(Settings()))
UNKNOWN_SHIPMENT = "PO-2026/9999"
UNKNOWN_EXCURSION = "ffffffffffffffffffffffff"
_n = itertools.count(1)


@dataclass
class Call:
    method: str
    url: str
    body: dict[str, Any] | None = None
    # Listings: the record the row's "200" / "200 hidden" is about.
    target: str | None = None
    # Writes: whether the request took effect (asked after the answer).
    took_effect: Callable[[], bool] | None = None
    # Out-of-scope reads: the same request for a record that does not exist.
    unknown: Call | None = None
    # A regulator's read of this is audited (api/audit.py): the read chain's action.
    audited: str | None = None


def _s(sid: str) -> str:
    return "/v1/shipments/" + quote(sid, safe="/:")


def _shipment_read(sub: str, audited: str | None = None) -> Callable[[World], Call]:
    def build(_w: World) -> Call:
        unknown = Call("GET", _s(UNKNOWN_SHIPMENT) + sub)
        return Call("GET", _s(SHIPMENT_A) + sub, unknown=unknown, audited=audited)

    return build


def _excursion_read(sub: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        return Call(
            "GET",
            f"/v1/excursions/{w.excursion_a}{sub}",
            unknown=Call("GET", f"/v1/excursions/{UNKNOWN_EXCURSION}{sub}"),
        )

    return build


def _public(path: str) -> Callable[[World], Call]:
    return lambda _w: Call("GET", path)


def _create_shipment(w: World) -> Call:
    sid = w.unique("NEW")
    body = {"id": sid, "profile": "chilled", "shipper": SHIPPER_A, "description": "matrix"}
    return Call(
        "POST", "/v1/shipments", body, took_effect=lambda: bool(w.registry.get_shipment(sid))
    )


def _patch_shipment(w: World) -> Call:
    sid = w.fresh_shipment()

    def changed() -> bool:
        shipment = w.registry.get_shipment(sid)
        return shipment is not None and shipment.description == "patched"

    unknown = Call("PATCH", _s(UNKNOWN_SHIPMENT), {"description": "patched"})
    return Call("PATCH", _s(sid), {"description": "patched"}, took_effect=changed, unknown=unknown)


def _cancel_shipment(w: World) -> Call:
    sid = w.fresh_shipment()

    def cancelled() -> bool:
        shipment = w.registry.get_shipment(sid)
        return shipment is not None and shipment.cancelled_ms is not None

    unknown = Call("POST", _s(UNKNOWN_SHIPMENT) + "/cancel", {"reason": "matrix"})
    return Call(
        "POST", _s(sid) + "/cancel", {"reason": "matrix"}, took_effect=cancelled, unknown=unknown
    )


def _custody_event(w: World) -> Call:
    sid, event_id = w.fresh_shipment(), f"urn:matrix:{next(_n)}"
    body = {
        "event_id": event_id,
        "shipment_id": sid,
        "action": "load",
        "asset_id": "truck-1",
        "compartment_id": "c1",
        "ts": rfc3339(NOW_MS - 10 * MIN),
        "actor": "driver Li",
    }
    return Call(
        "POST",
        "/v1/custody-events",
        body,
        took_effect=lambda: w.registry.custody_event_by_id(event_id) is not None,
    )


def _acknowledge(w: World) -> Call:
    before = len(w.registry.excursion_acknowledgements(w.excursion_a))
    body = {"disposition": "quarantined", "comment": "matrix"}
    return Call(
        "POST",
        f"/v1/excursions/{w.excursion_a}/acknowledgements",
        body,
        took_effect=lambda: len(w.registry.excursion_acknowledgements(w.excursion_a)) > before,
        unknown=Call("POST", f"/v1/excursions/{UNKNOWN_EXCURSION}/acknowledgements", body),
    )


REQUESTS: dict[tuple[str, str], Callable[[World], Call]] = {
    ("GET", "/healthz"): _public("/healthz"),
    ("GET", "/openapi.json"): _public("/openapi.json"),
    ("GET", "/docs"): _public("/docs"),
    ("GET", "/docs/oauth2-redirect"): _public("/docs/oauth2-redirect"),
    ("GET", "/redoc"): _public("/redoc"),
    ("POST", "/v1/shipments"): _create_shipment,
    ("GET", "/v1/shipments"): lambda _w: Call("GET", "/v1/shipments?limit=1000", target=SHIPMENT_A),
    ("GET", "/v1/shipments/{shipment_id}"): _shipment_read(""),
    ("PATCH", "/v1/shipments/{shipment_id}"): _patch_shipment,
    ("POST", "/v1/shipments/{shipment_id}/cancel"): _cancel_shipment,
    ("GET", "/v1/shipments/{shipment_id}/trace"): _shipment_read("/trace", "read.trace"),
    ("GET", "/v1/shipments/{shipment_id}/trace.csv"): _shipment_read(
        "/trace.csv", "read.trace.csv"
    ),
    ("GET", "/v1/shipments/{shipment_id}/report.html"): _shipment_read(
        "/report.html", "read.report.html"
    ),
    ("GET", "/v1/shipments/{shipment_id}/report.pdf"): _shipment_read(
        "/report.pdf", "read.report.pdf"
    ),
    ("GET", "/v1/shipments/{shipment_id}/epcis"): _shipment_read("/epcis", "read.epcis"),
    ("POST", "/v1/custody-events"): _custody_event,
    ("GET", "/v1/custody-events"): lambda _w: Call(
        "GET",
        "/v1/custody-events?shipment_id=" + quote(SHIPMENT_A, safe=""),
        unknown=Call("GET", "/v1/custody-events?shipment_id=" + quote(UNKNOWN_SHIPMENT, safe="")),
    ),
    ("GET", "/v1/excursions"): lambda w: Call(
        "GET", "/v1/excursions?include_superseded=true", target=w.excursion_a
    ),
    ("GET", "/v1/excursions/{excursion_id}"): _excursion_read(""),
    ("POST", "/v1/excursions/{excursion_id}/acknowledgements"): _acknowledge,
    ("GET", "/v1/excursions/{excursion_id}/acknowledgements"): _excursion_read("/acknowledgements"),
}


@pytest.fixture(scope="module")
def world(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("matrix")
    with api_world(services, "authz_matrix", root) as w:
        yield w


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with TestClient(world.app) as c:
        yield c


def test_every_endpoint_has_a_row_and_a_request() -> None:
    assert SERVED - set(MATRIX) == set(), "endpoints without an expectation in tests/api_matrix.py"
    assert set(MATRIX) - SERVED <= PENDING, "rows for endpoints the app does not serve"
    assert set(REQUESTS) == set(MATRIX)


def _id_of(item: dict[str, Any]) -> str:
    return str(item["id"])


def _ask(client: TestClient, call: Call, token: str | None) -> Any:
    headers = {} if token is None else {"X-API-Key": token}
    return client.request(call.method, call.url, json=call.body, headers=headers)


def _check(
    client: TestClient,
    world: World,
    build: Callable[[World], Call],
    token: str | None,
    expected: str,
    why: str | None = None,
) -> str | None:
    """What is wrong with this cell's answer, or None."""
    call = build(world)
    reads_before = world.registry.trail.heads()["reads"][0]
    r = _ask(client, call, token)
    status = str(r.status_code)
    if call.audited is not None:
        entries = world.registry.trail.read_entries(entity_id=SHIPMENT_A, after_seq=reads_before)
        key_id = token[4:16] if token is not None and token.startswith("cck_") else None
        regulator = key_id is not None and any(
            world.token(c, "valid") == token for c in ("regulator_in", "regulator_out")
        )
        want = [(key_id, call.audited)] if regulator and status == "200" else []
        if [(e.actor, e.action) for e in entries] != want:
            return f"read chain got {[(e.actor, e.action) for e in entries]}, expected {want}"
    if status != expected.split()[0]:
        return f"got {status}, expected {expected}: {r.text[:200]}"
    if status == "401":
        detail = r.json()["detail"]
        if why is not None and why not in detail:
            return f"401 {detail!r} does not say {why!r}"
        if r.headers.get("WWW-Authenticate") != 'APIKey header="X-API-Key"':
            return "401 without its WWW-Authenticate challenge"
    if call.target is not None and status == "200":
        listed = call.target in {_id_of(item) for item in r.json()}
        if listed != (expected == "200"):
            return f"{call.target} {'listed' if listed else 'missing'}; expected {expected}"
    if call.took_effect is not None and call.took_effect() != status.startswith("2"):
        return f"{status} but the write {'took' if status[0] != '2' else 'did not take'} effect"
    if status in ("403", "404") and call.unknown is not None:
        # Refused the same way as for a record that does not exist: the answer leaks nothing.
        unknown = _ask(client, call.unknown, token)
        this = r.json()["detail"].replace(SHIPMENT_A, "?").replace(world.excursion_a, "?")
        other = (
            unknown.json()["detail"].replace(UNKNOWN_SHIPMENT, "?").replace(UNKNOWN_EXCURSION, "?")
        )
        if (str(unknown.status_code), other) != (status, this):
            return f"{status} {r.text!r} differs from an unknown id's: {unknown.text!r}"
    return None


@pytest.mark.parametrize("endpoint", sorted(set(MATRIX) & SERVED), ids=lambda e: f"{e[0]} {e[1]}")
def test_authorisation_matrix(endpoint: tuple[str, str], world: World, client: TestClient) -> None:
    row, build = MATRIX[endpoint], REQUESTS[endpoint]
    problems: list[str] = []
    for column in ROLE_COLUMNS:
        for state in KEY_STATES:
            expected = row.outcome(column) if state == "valid" else row.outcome("bad_key")
            why = {"expired": "expired at", "revoked": "was revoked at"}.get(state)
            found = _check(client, world, build, world.token(column, state), expected, why)
            if found:
                problems.append(f"{column} ({state} key): {found}")
    for token, why in (
        (None, "missing API key"),
        ("cck_0123456789ab_" + "A" * 43, "does not hold a known API key"),
        ("not-a-key", "does not hold a known API key"),
    ):
        found = _check(client, world, build, token, row.outcome("bad_key"), why)
        if found:
            problems.append(f"{'no key' if token is None else 'unknown key'}: {found}")
    assert not problems, "\n".join(problems)

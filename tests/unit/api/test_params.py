"""Every path and query parameter of the API (issue 9, item 10): a shipment id with '/' is
fetched, and a client's mistake - a malformed id, a time outside what can be stored or not yet
come, a bad limit, an unknown or repeated parameter - is a 422 naming parameter, value and
problem, never a 404 or a 5xx. The app's InfluxDB is a closed port: a trace that reached it
would answer 503, so a 422 here also proves nothing was asked of the store."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from registry import Registry
from tests.unit.api.conftest import NOW_MS

ADMIN = {"X-API-Key": "key-admin"}
SID = "PO-2026/0042:A"
PATHS = ("", "/trace", "/trace.csv")


@pytest.fixture(autouse=True)
def shipments(registry: Registry) -> None:
    registry.create_shipment(SID, profile="chilled", actor="test")
    registry.create_shipment("S1", profile="chilled", actor="test")
    # A monitored leg: a trace of S1 would ask InfluxDB (the closed port: 503).
    registry.record_custody_event("S1", "load", "truck-1", "c1", ts_ms=NOW_MS - 60_000, actor="d")


def _detail(client: TestClient, url: str) -> tuple[int, str]:
    r = client.get(url, headers=ADMIN)
    return r.status_code, str(r.json().get("detail", "")) if r.status_code != 200 else ""


def test_a_shipment_id_with_slash_is_fetched_raw_or_percent_encoded(client: TestClient) -> None:
    for form in (SID, quote(SID, safe=""), quote(SID, safe="/")):
        one = client.get(f"/v1/shipments/{form}", headers=ADMIN)
        assert one.status_code == 200 and one.json()["id"] == SID, form
        trace = client.get(f"/v1/shipments/{form}/trace", headers=ADMIN)
        assert trace.status_code == 200 and trace.json()["shipment_id"] == SID, form
        csv = client.get(f"/v1/shipments/{form}/trace.csv", headers=ADMIN)
        assert csv.status_code == 200, form
        assert csv.headers["content-disposition"] == (
            'attachment; filename="trace-PO-2026_0042_A.csv"'
        )
    page = client.get("/v1/shipments", params={"after": "PO-2026/0042"}, headers=ADMIN)
    assert [s["id"] for s in page.json()] == [SID, "S1"]
    # A well-formed id nobody registered is still a 404, on every route.
    for suffix in PATHS:
        assert _detail(client, f"/v1/shipments/PO-2026/0043{suffix}") == (
            404,
            "shipment 'PO-2026/0043' not found",
        )


BAD_IDS = [
    (
        "SHP%201",
        "'SHP 1' is not a shipment id: it contains U+0020 SPACE (whitespace) at position 4",
    ),
    ("S" * 129, "is not a shipment id: it is 129 characters long; at most 128 are allowed"),
    ("a%2F%2Fb", "'a//b' is not a shipment id: it has an empty path segment"),
    ("a/%2E%2E/b", "'a/../b' is not a shipment id: it has a '..' path segment"),
    ("%C3%A9t%C3%A9", "it contains U+00E9 LATIN SMALL LETTER E WITH ACUTE (not ASCII)"),
]


def test_malformed_shipment_ids_are_422_on_every_route(client: TestClient) -> None:
    for raw, message in BAD_IDS:
        for suffix in PATHS:
            status, detail = _detail(client, f"/v1/shipments/{raw}{suffix}")
            assert status == 422, (raw, suffix, detail)
            assert detail.startswith("path parameter 'shipment_id': ") and message in detail
    status, detail = _detail(client, "/v1/shipments/")
    assert (status, detail) == (
        422,
        "path parameter 'shipment_id': '' is not a shipment id: it is empty",
    )
    status, detail = _detail(client, "/v1/shipments?after=S%0A")
    assert status == 422 and detail.startswith("query parameter 'after': 'S\\n' is not a shipment")


def test_a_control_character_anywhere_in_the_path_is_422(client: TestClient) -> None:
    """Routing never sees it: ".*" stops at a newline (a 404 hiding the mistake) and "$"
    matches before a trailing one (".../trace%0A" would be served as ".../trace")."""
    for url in ("/v1/shipments/truck%0A1", "/v1/shipments/S1/trace%0A", "/v1/excursions%0A"):
        for suffix in ("", "/trace"):
            status, detail = _detail(client, url + suffix)
            assert status == 422, url
            assert "contains U+000A (a control character) at position" in detail
    status, detail = _detail(client, "/v1/shipments/S%091/trace.csv")
    assert (status, detail) == (
        422,
        "request path '/v1/shipments/S\\t1/trace.csv' contains U+0009 (a control character) "
        "at position 16; no id of this API has one",
    )


def test_malformed_asset_and_compartment_filters_are_422(client: TestClient) -> None:
    for name in ("asset_id", "compartment_id"):
        status, detail = _detail(client, f"/v1/excursions?{name}=truck-1%0A")
        assert (status, detail) == (
            422,
            f"query parameter {name!r}: 'truck-1\\n' is not an identifier: it contains U+000A "
            "at position 8; only letters, digits, '.', '_' and '-' are allowed there",
        )
    status, detail = _detail(client, "/v1/excursions?asset_id=" + "t" * 65)
    assert status == 422 and "is 65 characters long; at most 64 are allowed" in detail
    assert client.get("/v1/excursions?asset_id=truck-1", headers=ADMIN).json() == []


def test_times_beyond_what_can_be_stored_are_422_not_503(client: TestClient) -> None:
    """InfluxDB keeps 64-bit nanoseconds (1677-09-21..2262-04-11): a time beyond used to reach
    the store, fail there and answer 503 "retry later" forever."""
    late, early = "2262-04-12T00:00:00Z", "1600-01-01T00:00:00Z"
    for value, side in ((late, "after the last"), (early, "before the first")):
        for suffix in ("/trace", "/trace.csv"):
            status, detail = _detail(client, f"/v1/shipments/S1{suffix}?at={value}")
            assert status == 422, (suffix, value, detail)
            assert detail.startswith(f"query parameter 'at': '{value}' is {side} instant")
        for name in ("from", "to"):
            status, detail = _detail(client, f"/v1/excursions?{name}={value}")
            assert status == 422 and detail.startswith(f"query parameter {name!r}: '{value}'")
    assert _detail(client, "/v1/excursions?from=1677-09-21T00:12:43.146Z")[0] == 200
    assert _detail(client, "/v1/excursions?to=2262-04-11T23:47:16.854Z")[0] == 200


def test_an_at_not_yet_come_is_422(client: TestClient) -> None:
    # The app's clock is NOW_MS = 2026-09-21T14:13:20Z; 300 s of clock difference is allowed.
    for suffix in ("/trace", "/trace.csv"):
        status, detail = _detail(client, f"/v1/shipments/{SID}{suffix}?at=2026-09-21T14:18:21Z")
        assert status == 422 and detail == (
            "query parameter 'at': '2026-09-21T14:18:21Z' is 301 s after the server's clock "
            "(2026-09-21T14:13:20Z); a trace is as of a time that has come (at most 300 s "
            "ahead, for clock differences)"
        )
        r = client.get(f"/v1/shipments/{SID}{suffix}?at=2026-09-21T14:18:20Z", headers=ADMIN)
        assert r.status_code == 200


def test_bad_limits_and_flags_are_422(client: TestClient) -> None:
    cases = [
        (
            "/v1/shipments?limit=0",
            "query parameter 'limit': Input should be greater than or equal to 1",
        ),
        (
            "/v1/shipments?limit=1001",
            "query parameter 'limit': Input should be less than or equal to 1000",
        ),
        ("/v1/shipments?limit=ten", "query parameter 'limit': Input should be a valid integer"),
        (
            "/v1/excursions?limit=10001",
            "query parameter 'limit': Input should be less than or equal to 10000",
        ),
        ("/v1/excursions?limit=-1", "query parameter 'limit'"),
        (
            "/v1/excursions?include_superseded=maybe",
            "query parameter 'include_superseded': Input should be a valid boolean",
        ),
        ("/v1/excursions?status=", "query parameter 'status'"),
    ]
    for url, message in cases:
        status, detail = _detail(client, url)
        assert status == 422 and detail.startswith(message), (url, detail)


def test_unknown_and_repeated_query_parameters_are_422(client: TestClient) -> None:
    cases = [
        (
            "/v1/excursions?form=2026-01-01T00:00:00Z",
            "unknown query parameter 'form'; this endpoint takes acknowledged, asset_id, "
            "compartment_id, from, include_superseded, limit, status, to",
        ),
        (
            "/v1/shipments/S1/trace?as_of=2026-01-01T00:00:00Z",
            "unknown query parameter 'as_of'; this endpoint takes at, resolution_s",
        ),
        (
            "/v1/shipments/S1/report.pdf?zone=Asia/Shanghai",
            "unknown query parameter 'zone'; this endpoint takes at, tz",
        ),
        (
            "/v1/shipments/S1?at=2026-01-01T00:00:00Z",
            "unknown query parameter 'at'; this endpoint takes no query parameters",
        ),
        (
            "/v1/excursions?asset_id=a&asset_id=b",
            "query parameter 'asset_id' is given more than once",
        ),
        ("/v1/shipments?limit=1&limit=2", "query parameter 'limit' is given more than once"),
    ]
    for url, message in cases:
        assert _detail(client, url) == (422, message), url
    # The API key is checked first: a stranger learns nothing about the parameters.
    assert client.get("/v1/excursions?form=x").status_code == 401

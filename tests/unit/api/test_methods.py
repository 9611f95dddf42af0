"""405 answers: ``Allow`` lists every method of the resource (not of the first route that
matched), and a shipment sub-resource is never read as part of a shipment id."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

ADMIN = {"X-API-Key": "key-admin"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/v1/custody-events", "GET, POST"),
        ("PUT", "/v1/excursions/e1/acknowledgements", "GET, POST"),
        ("DELETE", "/v1/shipments/PO-2026/0042", "GET, PATCH"),
        ("DELETE", "/v1/shipments", "GET, POST"),
        # Before the shipment routes could take "X/cancel" or "X/trace" for an id:
        ("PATCH", "/v1/shipments/PO-2026/0042/cancel", "POST"),
        ("GET", "/v1/shipments/PO-2026/0042/cancel", "POST"),
        ("PATCH", "/v1/shipments/PO-2026/0042/trace", "GET"),
        ("POST", "/v1/shipments/PO-2026/0042/trace.csv", "GET"),
        ("PATCH", "/v1/shipments/PO-2026/0042/report.html", "GET"),
        ("DELETE", "/v1/shipments/PO-2026/0042/report.pdf", "GET"),
        ("POST", "/healthz", "GET"),
    ],
)
def test_a_method_the_resource_lacks_is_405_naming_those_it_has(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    r = client.request(method, path, headers=ADMIN)
    assert r.status_code == 405, r.text
    assert r.headers["Allow"] == allow
    assert r.json() == {"detail": f"Method Not Allowed; this resource allows {allow}"}


def test_a_shipment_id_never_ends_in_a_sub_resource(client: TestClient) -> None:
    for name in ("cancel", "report.html", "report.pdf", "epcis", "trace"):
        r = client.post(
            "/v1/shipments",
            json={"id": f"PO-1/{name}", "profile": "chilled", "shipper": "ACME"},
            headers=ADMIN,
        )
        assert r.status_code == 422, r.text
        assert f"ends in '/{name}', reserved for the API's sub-resources" in r.json()["detail"]


def test_unknown_paths_are_still_404(client: TestClient) -> None:
    r = client.delete("/v2/nothing", headers=ADMIN)
    assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})

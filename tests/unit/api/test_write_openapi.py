"""The write endpoints' OpenAPI declarations (bodies, response models, error answers with the
app's one error body) and answers that match them."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from api.schemas import ShipmentDetailOut, ShipmentOut

# The fixture client, used by name (hence the F811s below).
from tests.unit.api.test_write_api import BODY, INT, REG, _event, client  # noqa: F401


def test_openapi_declares_bodies_models_and_error_answers(client: TestClient) -> None:  # noqa: F811
    spec = client.get("/openapi.json").json()
    error = {"$ref": "#/components/schemas/ErrorBody"}
    read = {"200", "401", "404", "422", "503"}
    body = {"400", "401", "403", "422", "503"}  # a body that is not JSON: 400
    expected = {
        ("post", "/v1/shipments"): body | {"200", "201", "409"},
        ("get", "/v1/shipments"): {"200", "401", "422", "503"},
        ("patch", "/v1/shipments/{shipment_id}"): body | {"200", "404", "409"},
        ("post", "/v1/shipments/{shipment_id}/cancel"): body | {"200", "404", "409"},
        ("post", "/v1/custody-events"): body | {"200", "201", "409"},
        ("get", "/v1/custody-events"): read,
        ("get", "/v1/excursions"): {"200", "401", "422", "503"},
        ("get", "/v1/excursions/{excursion_id}"): read,
        ("post", "/v1/excursions/{excursion_id}/acknowledgements"): body | {"201", "404"},
        ("get", "/v1/excursions/{excursion_id}/acknowledgements"): read,
        ("get", "/v1/shipments/{shipment_id}"): read,
        ("get", "/v1/shipments/{shipment_id}/trace"): read,
        ("get", "/v1/shipments/{shipment_id}/trace.csv"): read,
        ("get", "/v1/shipments/{shipment_id}/report.html"): read,
        ("get", "/v1/shipments/{shipment_id}/report.pdf"): read,
    }
    for (method, path), codes in expected.items():
        operation = spec["paths"][path][method]
        assert set(operation["responses"]) == codes, (method, path)
        for code in codes - {"200", "201"}:
            schema = operation["responses"][code]["content"]["application/json"]["schema"]
            assert schema == error, (method, path, code)
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    # Any /v1 operation, one added later included: what every route can answer, and a 404 where
    # the path names a record.
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not path.startswith("/v1/"):
                continue
            declared = set(operation["responses"])
            assert {"401", "422", "503"} <= declared, (method, path)
            assert "{" not in path or "404" in declared, (method, path)
    # Every error is {"detail": "<sentence>"}: FastAPI's list-of-errors model is declared nowhere.
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    # Time parameters are RFC 3339 date-times, ids carry their pattern.
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for p in operation.get("parameters", []):
                if p["name"] in {"at", "from", "to"} or p["name"].endswith(("_from", "_to")):
                    assert p["schema"]["format"] == "date-time", (method, path, p["name"])
                if p["name"] in {"shipment_id", "excursion_id", "asset_id", "compartment_id"}:
                    assert "pattern" in p["schema"], (method, path, p["name"])
    create = spec["components"]["schemas"]["ShipmentCreate"]
    assert create["additionalProperties"] is False
    assert set(create["required"]) == {"id", "profile", "shipper"}
    departure = create["properties"]["planned_departure"]["anyOf"][0]
    assert departure["format"] == "date-time"
    listing = spec["paths"]["/v1/shipments"]["get"]
    assert set(listing["responses"]["200"]["headers"]) == {"Link", "X-Next-Cursor"}
    # The shipment id's rules are stated in the schema (GS1 character set 82 pattern).
    assert (
        "pattern"
        in spec["components"]["schemas"]["CustodyEventCreate"]["properties"]["shipment_id"]
    )


def test_listing_answers_match_the_declared_models(client: TestClient) -> None:  # noqa: F811
    client.post("/v1/shipments", json=BODY, headers=INT)
    client.post("/v1/custody-events", json=_event(), headers=INT)
    listed = client.get("/v1/shipments", headers=REG).json()
    detail = client.get("/v1/shipments/PO-2026/0042", headers=REG).json()
    TypeAdapter(list[ShipmentOut]).validate_python(listed)
    ShipmentDetailOut.model_validate(detail)
    assert {k: v for k, v in detail.items() if k != "legs"} == listed[0]

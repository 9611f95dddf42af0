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
    expected = {
        ("post", "/v1/shipments"): {"200", "201", "401", "403", "409", "422"},
        ("get", "/v1/shipments"): {"200", "401", "422"},
        ("patch", "/v1/shipments/{shipment_id}"): {"200", "401", "403", "404", "409", "422"},
        ("post", "/v1/shipments/{shipment_id}/cancel"): {"200", "401", "403", "404", "409", "422"},
        ("post", "/v1/custody-events"): {"200", "201", "401", "403", "409", "422"},
        ("get", "/v1/custody-events"): {"200", "401", "404", "422"},
        ("get", "/v1/excursions/{excursion_id}"): {"200", "401", "404", "422"},
        ("post", "/v1/excursions/{excursion_id}/acknowledgements"): {
            "201", "401", "403", "404", "422"
        },
        ("get", "/v1/excursions/{excursion_id}/acknowledgements"): {"200", "401", "404", "422"},
    }  # fmt: skip
    for (method, path), codes in expected.items():
        operation = spec["paths"][path][method]
        assert set(operation["responses"]) == codes, (method, path)
        for code in codes - {"200", "201"}:
            schema = operation["responses"][code]["content"]["application/json"]["schema"]
            assert schema == error, (method, path, code)
    create = spec["components"]["schemas"]["ShipmentCreate"]
    assert create["additionalProperties"] is False
    assert set(create["required"]) == {"id", "profile", "shipper"}
    departure = create["properties"]["planned_departure"]["anyOf"][0]
    assert departure["format"] == "date-time"
    listing = spec["paths"]["/v1/shipments"]["get"]
    params = {p["name"]: p["schema"] for p in listing["parameters"]}
    for name in ("created_from", "created_to", "active_from", "active_to"):
        assert params[name]["format"] == "date-time", name
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

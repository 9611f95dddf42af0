"""docs/api.md's roles table is the authorisation matrix the integration test asks of the app
(tests/api_matrix.py), and the matrix has a row for every endpoint the app serves."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from api import create_app
from coldchain.settings import Settings
from tests.api_matrix import MATRIX, PENDING, app_endpoints, render_markdown

DOCS = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def test_docs_roles_table_is_the_matrix() -> None:
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(
        r"<!-- roles-matrix:begin[^>]*-->\n(.*?)\n<!-- roles-matrix:end -->", text, re.S
    )
    assert found is not None, "docs/api.md lost its roles-matrix markers"
    assert found.group(1) == render_markdown(), (
        "docs/api.md's roles table differs from tests/api_matrix.py: "
        "paste `uv run python -m tests.api_matrix` between the markers"
    )


def test_every_endpoint_the_app_serves_has_a_row() -> None:
    served = app_endpoints(create_app(Settings()))
    assert served - set(MATRIX) == set(), "add a row to tests/api_matrix.py"
    assert set(MATRIX) - served <= PENDING
    assert ("GET", "/v1/shipments/{shipment_id}") in served  # path convertors are read right


def test_a_body_that_is_not_text_is_400_and_bad_json_422(client: TestClient) -> None:
    admin = {"X-API-Key": "key-admin", "Content-Type": "application/json"}
    r = client.post("/v1/shipments", content=b"\xff", headers=admin)
    assert (r.status_code, r.json()) == (
        400,
        {"detail": "request body is not JSON text: it is not UTF-8 (RFC 8259 section 8.1)"},
    )
    r = client.post("/v1/shipments", content=b'{"id": ', headers=admin)
    assert (r.status_code, r.json()) == (
        422,
        {"detail": "request body is not valid JSON: Expecting value at character 7"},
    )

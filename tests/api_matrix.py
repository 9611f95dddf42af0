"""The authorisation matrix: for every endpoint of the API, what each kind of caller gets.

One row per endpoint (method and OpenAPI path); one column per principal: each role, and a
regulator whose scope holds the shipment asked for (``regulator_in``) or not
(``regulator_out``, scoped to another shipper). A request with no key, an unknown key, or any
role's expired or revoked key gets 401 from every ``/v1`` endpoint and what everyone gets from a
public one: that is a column of its own (``bad_key``).

Outcomes: a status code; ``200 hidden`` is a listing answered 200 without the other shipper's
record (the shipment, or the excursion during its custody), where ``200`` on a listing means the
record is in it. tests/integration/test_api_authz_matrix.py asks every cell of the real app;
docs/api.md's roles table is ``render_markdown()`` (tests/unit/api/test_roles_table.py checks
it). Print it with ``uv run python -m tests.api_matrix``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from api.methods import endpoints

__all__ = [
    "COLUMNS",
    "MATRIX",
    "PENDING",
    "Row",
    "app_endpoints",
    "render_markdown",
]

# The principals, in the table's order; "bad_key" stands for no key, an unknown key, and an
# expired or revoked key of every role.
COLUMNS = ("admin", "operator", "integrator", "regulator_in", "regulator_out", "bad_key")
_TITLES = {
    "admin": "admin",
    "operator": "operator",
    "integrator": "integrator",
    "regulator_in": "regulator, in scope",
    "regulator_out": "regulator, out of scope",
    "bad_key": "no, unknown, expired or revoked key",
}


@dataclass(frozen=True)
class Row:
    admin: str
    operator: str
    integrator: str
    regulator_in: str
    regulator_out: str
    bad_key: str = "401"

    def outcome(self, column: str) -> str:
        return str(getattr(self, column))


def _public() -> Row:
    return Row("200", "200", "200", "200", "200", bad_key="200")


def _read() -> Row:
    # Every role reads; a regulator sees only the shipments of its scope: 404 for another
    # shipper's, as for an unknown id (a 403 would confirm the id exists).
    return Row("200", "200", "200", "200", "404")


def _listing() -> Row:
    return Row("200", "200", "200", "200", "200 hidden")


def _business_write(created: str = "200") -> Row:
    # Integrators (and admins) write shipments and custody; a regulator never writes: 403
    # whether or not the shipment is in its scope or exists, so the answer leaks nothing.
    return Row(created, "403", created, "403", "403")


MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/healthz"): _public(),
    ("GET", "/openapi.json"): _public(),
    ("GET", "/docs"): _public(),
    ("GET", "/docs/oauth2-redirect"): _public(),
    ("GET", "/redoc"): _public(),
    ("POST", "/v1/shipments"): _business_write("201"),
    ("GET", "/v1/shipments"): _listing(),
    ("GET", "/v1/shipments/{shipment_id}"): _read(),
    ("PATCH", "/v1/shipments/{shipment_id}"): _business_write(),
    ("POST", "/v1/shipments/{shipment_id}/cancel"): _business_write(),
    ("GET", "/v1/shipments/{shipment_id}/trace"): _read(),
    ("GET", "/v1/shipments/{shipment_id}/trace.csv"): _read(),
    ("GET", "/v1/shipments/{shipment_id}/report.html"): _read(),
    ("GET", "/v1/shipments/{shipment_id}/report.pdf"): _read(),
    ("GET", "/v1/shipments/{shipment_id}/epcis"): _read(),
    ("POST", "/v1/custody-events"): _business_write("201"),
    ("GET", "/v1/custody-events"): _read(),
    ("GET", "/v1/excursions"): _listing(),
    ("GET", "/v1/excursions/{excursion_id}"): _read(),
    # Operators (and admins) acknowledge; integrators and regulators may not.
    ("POST", "/v1/excursions/{excursion_id}/acknowledgements"): Row(
        "201", "201", "403", "403", "403"
    ),
    ("GET", "/v1/excursions/{excursion_id}/acknowledgements"): _read(),
}

# Rows for endpoints being built on another branch: their cells are asked once the route
# exists; until then only they may be missing from the app. Empty when every branch is in.
PENDING: frozenset[tuple[str, str]] = frozenset()


def app_endpoints(app: FastAPI) -> set[tuple[str, str]]:
    """(method, OpenAPI-style path) of every endpoint the app serves; HEAD (which Starlette
    adds beside GET) and the 405 guards of api/methods.py left out."""
    return {
        (method, path.replace(":path}", "}"))
        for path, methods in endpoints(app).items()
        for method in methods
        if method != "HEAD"
    }


def _cell(outcome: str) -> str:
    return {"200 hidden": "200, without the other shipper's"}.get(outcome, outcome)


def render_markdown() -> str:
    """The matrix as the Markdown table of docs/api.md (no trailing newline)."""
    lines = [
        "| endpoint | " + " | ".join(_TITLES[c] for c in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for (method, path), row in MATRIX.items():
        cells = " | ".join(_cell(row.outcome(c)) for c in COLUMNS)
        lines.append(f"| `{method} {path}` | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_markdown())

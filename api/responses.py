"""The error body every error answer has (api/errors.py writes it) and the OpenAPI declaration
of a route's error answers, so the schema states what a client can get back."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["V1_ERRORS", "ErrorBody", "error_responses"]


class ErrorBody(BaseModel):
    """Every error answer: one sentence saying what is wrong."""

    detail: str = Field(description="what is wrong, naming the field or parameter and the value")


_WHEN = {
    400: "the body is not text (not UTF-8), so it cannot be JSON",
    401: "no API key, or not a known, active one (missing, unknown, expired, revoked)",
    403: "the key's role may not call this endpoint",
    404: "the record named in the path does not exist",
    409: "contradicts what is stored (the message says what)",
    422: "a field or parameter is invalid (the message names it, the value and the rule)",
    503: "the registry or InfluxDB is unavailable (or a regulator's read could not be "
    "audited); retry later",
}
# RFC 9110 section 11.6.1: a 401 carries a challenge (api/auth.py sends it).
_HEADERS = {
    401: {
        "WWW-Authenticate": {
            "description": 'the challenge: APIKey header="X-API-Key"',
            "schema": {"type": "string"},
        }
    }
}


# Stated outright: with only ``model``, FastAPI declares an error under the route's own media
# type (text/csv, application/ld+json, ...), while every error answer is application/json.
_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with ``ErrorBody`` (application/json, whatever
    the route's own media type) and when it happens."""
    return {
        code: {"model": ErrorBody, "description": _WHEN[code], "content": _JSON}
        | ({"headers": _HEADERS[code]} if code in _HEADERS else {})
        for code in codes
    }


# What any /v1 route can answer, declared on each /v1 router so a route added later is covered:
# no or a bad key (every route authenticates), an unknown or repeated query parameter (every
# route is strict, api/params.py), a store down. A route adds its own 400/403/404/409.
V1_ERRORS = error_responses(401, 422, 503)

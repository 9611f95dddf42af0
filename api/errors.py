"""Errors to HTTP, at the adapter: every error answer is JSON ``{"detail": "<message>"}``.

coldchain's exceptions map to status codes here, so the routes raise domain errors and never
build error responses. Nothing answers with a stack trace: an unexpected error is a bare 500
(the server logs the traceback), a store outage a 503 whose message stays in the log (it names
internal hosts).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from api.methods import method_not_allowed
from api.trace import ShipmentNotFound
from coldchain.exceptions import (
    ColdchainError,
    ConfigError,
    RecordConflict,
    RecordInvalid,
    RecordNotFound,
    RecordRejected,
    StoreError,
)
from coldchain.series import TraceRefused

__all__ = ["install_error_handlers"]

log = logging.getLogger(__name__)


def _answer(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _bounded(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ShipmentNotFound)
    return _answer(404, f"shipment {exc.shipment_id!r} not found")


# FastAPI's words when a body cannot even be decoded as text (not UTF-8): a 400.
_UNREADABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's and FastAPI's own HTTP errors, as ``{"detail": ...}``; a 405 lists what the
    path allows (api/methods.py), an undecodable body says what is wrong with it."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        answer = method_not_allowed(request)
        if answer is not None:
            return answer
    if exc.status_code == 400 and exc.detail == _UNREADABLE_BODY:
        return _answer(400, "request body is not JSON text: it is not UTF-8 (RFC 8259 section 8.1)")
    return await http_exception_handler(request, exc)


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's default is a list of pydantic errors; one sentence per error naming the
    # parameter and the value is what a person (or a log) can act on.
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            # loc is ("body", <character offset>): not a parameter.
            loc = err.get("loc", ())
            at = f" at character {loc[1]}" if len(loc) > 1 else ""
            reason = (err.get("ctx") or {}).get("error", "JSON decode error")
            parts.append(f"request body is not valid JSON: {reason}{at}")
            continue
        loc = [str(p) for p in err.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])!r}" if len(loc) > 1 else "request"
        got = "" if err.get("type") == "missing" else f" (got {_bounded(err.get('input'))})"
        parts.append(f"{where}: {err.get('msg', 'invalid')}{got}")
    return _answer(422, "; ".join(parts) or "invalid request")


async def _refused(_request: Request, exc: Exception) -> JSONResponse:
    # A trace too large for one request: the caller must ask for less (the message says how),
    # so a 4xx, never a 503 "retry later".
    return _answer(422, str(exc))


async def _rejected(_request: Request, exc: Exception) -> JSONResponse:
    # Unknown reference, contradictory duplicate, constraint: retrying will not help.
    return _answer(409, f"rejected by the registry: {exc}")


async def _record_invalid(_request: Request, exc: Exception) -> JSONResponse:
    # The values are wrong whatever is stored (the message names the field and the rule).
    return _answer(422, str(exc))


async def _record_conflict(_request: Request, exc: Exception) -> JSONResponse:
    # Contradicts what is stored: the message says what (differing fields, the sequence).
    return _answer(409, str(exc))


async def _record_not_found(_request: Request, exc: Exception) -> JSONResponse:
    return _answer(404, str(exc))


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: store unavailable: %s", request.method, request.url.path, exc)
    return _answer(503, "a backing store (registry or InfluxDB) is unavailable; retry later")


async def _misconfigured(request: Request, exc: Exception) -> JSONResponse:
    # E.g. a shipment naming a product profile this server does not know: the server's
    # configuration, not the request, has to change.
    log.error("%s %s: configuration: %s", request.method, request.url.path, exc)
    return _answer(500, f"server configuration error: {exc}")


async def _failed(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return _answer(500, "internal server error")


async def _unexpected(_request: Request, _exc: Exception) -> JSONResponse:
    # Starlette re-raises after this answer, so the server still logs the traceback.
    return _answer(500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    # Starlette picks the handler of the most specific class in the exception's MRO.
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ShipmentNotFound, _not_found)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(RecordRejected, _rejected)
    app.add_exception_handler(TraceRefused, _refused)
    app.add_exception_handler(RecordInvalid, _record_invalid)
    app.add_exception_handler(RecordConflict, _record_conflict)
    app.add_exception_handler(RecordNotFound, _record_not_found)
    app.add_exception_handler(StoreError, _unavailable)
    app.add_exception_handler(ConfigError, _misconfigured)
    app.add_exception_handler(ColdchainError, _failed)
    app.add_exception_handler(Exception, _unexpected)

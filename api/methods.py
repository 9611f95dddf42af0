"""405 Method Not Allowed that tells the truth (RFC 9110 section 15.5.6: ``Allow`` lists the
methods the *resource* supports, not those of the first route whose path matched).

Two things make Starlette's own 405 wrong here:

- a path served by several routes (``GET`` and ``POST /v1/custody-events``): Starlette answers
  ``Allow`` from the first route only; ``method_not_allowed`` recomputes it from every route
  whose path matches (api/errors.py answers Starlette's 405 with it);
- shipment sub-resources under a path-style id (``/v1/shipments/{id}/cancel``): ``PATCH`` there
  would reach ``PATCH /v1/shipments/{id}`` with the id ``X/cancel`` (a 422, or worse). Shipment
  ids never end in a sub-resource's name (coldchain.identifiers), so ``guard_sub_resources``
  puts, before every route, one that answers 405 for the methods a sub-resource does not have
  (a sub-resource added later, such as ``/epcis``, is guarded as soon as its route exists).

``endpoints(app)`` lists the app's routes and methods, FastAPI's included routers flattened (the
authorisation matrix test enumerates the API with it).
"""

from __future__ import annotations

from collections import defaultdict

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.responses import Response
from starlette.routing import Route, compile_path

__all__ = ["endpoints", "guard_sub_resources", "method_not_allowed"]

_SHIPMENT = "/v1/shipments/{shipment_id:path}/"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _not_allowed(allowed: frozenset[str]) -> Response:
    return JSONResponse(
        {"detail": f"Method Not Allowed; this resource allows {', '.join(sorted(allowed))}"},
        status_code=405,
        headers={"Allow": ", ".join(sorted(allowed))},
    )


class _SubResourceGuard(Route):
    """Answers 405 for every method its sub-resource does not have (hidden from OpenAPI)."""

    def __init__(self, path: str, allowed: frozenset[str]) -> None:
        async def endpoint(_request: Request) -> Response:
            return _not_allowed(allowed)

        super().__init__(
            path, endpoint, methods=sorted(_METHODS - allowed), include_in_schema=False
        )


def endpoints(app: FastAPI) -> dict[str, set[str]]:
    """Every route path of the app (``{x:path}`` convertors kept) -> its methods, the
    sub-resource guards left out (FastAPI's included routers flattened)."""
    by_path: dict[str, set[str]] = defaultdict(set)
    for context in iter_route_contexts(app.routes):
        if context.path and not isinstance(context.original_route, _SubResourceGuard):
            by_path[context.path] |= set(context.methods or ())
    return by_path


def guard_sub_resources(app: FastAPI) -> None:
    """Put a ``_SubResourceGuard`` before the routes for every shipment sub-resource path
    (``/v1/shipments/{shipment_id:path}/<name>``) the app has. Call once all routes are in."""
    guards = [
        _SubResourceGuard(path, frozenset(methods))
        for path, methods in sorted(endpoints(app).items())
        if path.startswith(_SHIPMENT)
    ]
    app.router.routes[:0] = guards


def method_not_allowed(request: Request) -> Response | None:
    """The 405 for ``request`` (a method its path does not have), with ``Allow`` listing every
    method of every route the path matches; None if no route matches it (a 404 then)."""
    allowed: set[str] = set()
    path = request.scope["path"]
    for route_path, methods in endpoints(request.app).items():
        if compile_path(route_path)[0].match(path):
            allowed |= methods
    return _not_allowed(frozenset(allowed)) if allowed else None

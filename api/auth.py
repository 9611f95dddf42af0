"""API keys and roles: who is calling, and may they do this.

Keys come from ``COLDCHAIN_API__KEYS`` (key -> role). With no key configured the API is open
and every caller is treated as ``admin``: for local use only (the app logs a warning at
start-up). Every endpoint depends on ``authenticate``; an endpoint that only some roles may
call depends on ``require_role(...)`` instead.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, get_args

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from coldchain.settings import ApiRole

__all__ = ["API_KEY_HEADER", "ROLES", "Caller", "authenticate", "require_role"]

API_KEY_HEADER = "X-API-Key"
ROLES: tuple[ApiRole, ...] = get_args(ApiRole)

# auto_error=False: a missing key is answered below with our own message (and the OpenAPI page
# still offers an "Authorize" button for the header).
_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
# RFC 9110 wants a challenge with every 401; there is no registered scheme for API keys.
_CHALLENGE = {"WWW-Authenticate": f'APIKey header="{API_KEY_HEADER}"'}


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller. ``key_id`` is a short fingerprint of the key, safe to log
    (never the key); None when the API runs open."""

    role: ApiRole
    key_id: str | None


def _match(presented: str, keys: Mapping[str, ApiRole]) -> ApiRole | None:
    # Compare against every key in constant time, so response time does not reveal how much
    # of a guess was right.
    found: ApiRole | None = None
    for key, role in keys.items():
        if hmac.compare_digest(presented.encode(), key.encode()):
            found = role
    return found


def authenticate(
    request: Request, key: Annotated[str | None, Security(_key_header)] = None
) -> Caller:
    keys: Mapping[str, ApiRole] = request.app.state.api_keys
    if not keys:
        return Caller("admin", None)
    if key is None:
        raise HTTPException(
            401, f"missing API key: send it in the {API_KEY_HEADER} header", _CHALLENGE
        )
    role = _match(key, keys)
    if role is None:
        raise HTTPException(
            401, f"the {API_KEY_HEADER} header does not hold a known API key", _CHALLENGE
        )
    return Caller(role, hashlib.sha256(key.encode()).hexdigest()[:8])


def require_role(*roles: ApiRole) -> Callable[..., Caller]:
    """A dependency admitting only callers with one of ``roles`` (403 for the others)::

    @router.post("/...")
    def write(caller: Annotated[Caller, Depends(require_role("admin", "operator"))]): ...
    """
    unknown = [r for r in roles if r not in ROLES]
    if not roles or unknown:
        # A typo here would lock everyone out (or no one): fail when the route is declared.
        raise ValueError(f"require_role needs roles among {ROLES}, got {roles}")
    allowed = ", ".join(roles)

    def dependency(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        if caller.role not in roles:
            raise HTTPException(403, f"role {caller.role!r} may not do this; allowed: {allowed}")
        return caller

    return dependency

"""API keys and roles: who is calling (a ``Principal``), and may they do this.

Keys live in the registry (``coldchain keys create``; registry/keys.py): a token
``cck_<key id>_<secret>`` is looked up by its key id and its SHA-256 compared in constant time;
a revoked or expired key is refused (401). ``COLDCHAIN_API__KEYS`` (key -> role) still works,
for development: such keys never expire, have no scope and are named ``env-<8 hex>``.

With no key at all (none in the registry, ever, and none in the variable) the API is open and
every caller is ``admin``: allowed only on a loopback address (``refuse_open_off_loopback``;
``coldchain api`` and the app's start-up refuse anything else). Once any key was created the
API is never open again, even if every key is revoked.

Every endpoint depends on ``authenticate``; an endpoint that only some roles may call depends
on ``require_role(...)`` instead. A regulator's scope is applied by api/scope.py.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, get_args

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from api.times import rfc3339
from coldchain.exceptions import ConfigError
from coldchain.settings import ApiRole
from registry import KeyScope, Registry

__all__ = [
    "API_KEY_HEADER",
    "ROLES",
    "Authed",
    "Caller",
    "Principal",
    "authenticate",
    "is_loopback",
    "refuse_open_off_loopback",
    "require_role",
]

API_KEY_HEADER = "X-API-Key"
ROLES: tuple[ApiRole, ...] = get_args(ApiRole)
_KEY_PREFIX = "cck_"

# auto_error=False: a missing key is answered below with our own message (and the OpenAPI page
# still offers an "Authorize" button for the header).
_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
# RFC 9110 wants a challenge with every 401; there is no registered scheme for API keys.
_CHALLENGE = {"WWW-Authenticate": f'APIKey header="{API_KEY_HEADER}"'}


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller.

    ``key_id``: the registry key's id, ``env-<8 hex>`` for a key from ``COLDCHAIN_API__KEYS``
    (a fingerprint, never the key), None when the API runs open. ``scope``: for a regulator
    key, which shipments it may see (None: all; api/scope.py).
    """

    key_id: str | None
    role: ApiRole
    scope: KeyScope | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller: the key id (never the secret)."""
        return self.key_id if self.key_id is not None else "open-api"


# The name routes used before principals had a scope.
Caller = Principal


def _match(presented: str, keys: Mapping[str, ApiRole]) -> ApiRole | None:
    # Compare against every key in constant time, so response time does not reveal how much
    # of a guess was right.
    found: ApiRole | None = None
    for key, role in keys.items():
        if hmac.compare_digest(presented.encode(), key.encode()):
            found = role
    return found


def _registry(request: Request) -> Registry:
    return request.app.state.resources.registry  # type: ignore[no-any-return]


def _is_open(request: Request) -> bool:
    """No key anywhere. The registry is asked until it has one; from then on never again
    (keys are never deleted, so the answer cannot go back)."""
    state = request.app.state
    if state.api_keys or getattr(state, "keys_exist", False):
        return False
    if _registry(request).keys.any():
        state.keys_exist = True
        return False
    return True


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(401, detail, _CHALLENGE)


def authenticate(
    request: Request, key: Annotated[str | None, Security(_key_header)] = None
) -> Principal:
    """The caller's principal; 401 (with the reason) for a missing, unknown, revoked or
    expired key."""
    if _is_open(request):
        return Principal(None, "admin")
    if key is None:
        raise _unauthorised(f"missing API key: send it in the {API_KEY_HEADER} header")
    if key.startswith(_KEY_PREFIX):
        record = _registry(request).keys.lookup(key)
        if record is not None:
            now_ms: int = request.app.state.resources.clock_ms()
            status = record.status(now_ms)
            if status == "revoked":
                raise _unauthorised(
                    f"API key {record.key_id} was revoked at {rfc3339(record.revoked_ms)}"
                )
            if status == "expired":
                raise _unauthorised(
                    f"API key {record.key_id} expired at {rfc3339(record.expires_ms)}"
                )
            return Principal(record.key_id, record.role, record.scope)
    else:
        role = _match(key, request.app.state.api_keys)
        if role is not None:
            return Principal("env-" + hashlib.sha256(key.encode()).hexdigest()[:8], role)
    raise _unauthorised(f"the {API_KEY_HEADER} header does not hold a known API key")


Authed = Annotated[Principal, Depends(authenticate)]


def require_role(*roles: ApiRole) -> Callable[..., Principal]:
    """A dependency admitting only callers with one of ``roles`` (403 for the others)::

    @router.post("/...")
    def write(caller: Annotated[Principal, Depends(require_role("admin", "operator"))]): ...
    """
    unknown = [r for r in roles if r not in ROLES]
    if not roles or unknown:
        # A typo here would lock everyone out (or no one): fail when the route is declared.
        raise ValueError(f"require_role needs roles among {ROLES}, got {roles}")
    allowed = ", ".join(roles)

    def dependency(caller: Authed) -> Principal:
        if caller.role not in roles:
            raise HTTPException(403, f"role {caller.role!r} may not do this; allowed: {allowed}")
        return caller

    return dependency


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address) is reachable from this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # "", "0.0.0.0"-like names, hostnames: assume reachable from outside


def refuse_open_off_loopback(host: str, env_keys: Mapping[str, str], registry: Registry) -> None:
    """ConfigError naming ``COLDCHAIN_API__HOST`` if the API would serve everyone as admin (no
    key in the registry or the variable) on an address other machines can reach."""
    if env_keys or is_loopback(host) or registry.keys.any():
        return
    raise ConfigError(
        "COLDCHAIN_API__HOST",
        host,
        "no API key exists, so the API would serve everyone as admin; it serves open only on a "
        "loopback address (127.0.0.1, ::1, localhost). Create a key with `coldchain keys "
        "create --role admin` (or, for development, set COLDCHAIN_API__KEYS), or listen on "
        "127.0.0.1",
    )
